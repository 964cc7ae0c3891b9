/* Weight-activation quantized layers in the model forward. A block-wise
 * method such as FlatQuant stores, next to its seven quantized weights, the
 * online Kronecker factors of the four linear inputs, the activation and KV
 * clip factors and the folded norms (extras of its results). After
 * qerr_model_apply the layer keeps them as run-time state and runs as
 * deployed: qerr__flatquant_deployed_forward on the block engine, i.e.
 * online X P, per-token activation quantization, K/V quantization, folded
 * norms, with the applied (dequantized) weights. OmniQuant/CQE W*A* layers
 * (extras "let.input_norm" / "let.post_attention_norm") run the same forward
 * with no online transform. Layers without state run the plain float
 * forward, unchanged. */
#include "deployed.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Scratch budget of one chunk of windows in the deployed forward, in floats
 * (~64 MB, as the float forward). */
#define DEPLOY_CHUNK_FLOATS ((int64_t)16 << 20)

struct qerr_layer_rt {
    qerr_flatquant_folded f; /* w[] unused: the model's applied weights are used */
};

void qerr__layer_rt_free(qerr_layer_rt *rt) {
    if (!rt) return;
    qerr__flatquant_folded_free(&rt->f);
    free(rt);
}

/* Extra `name` of r with exactly `numel` floats, or a format error. */
static int get_extra(const qerr_result *r, const char *lin, const char *name, int64_t numel,
                     const float **data) {
    for (int i = 0; r && i < qerr_result_extra_count(r); i++) {
        const char *n;
        int nd;
        int64_t sh[QERR_MAX_DIMS];
        const float *d;
        if (qerr_result_extra(r, i, &n, &nd, sh, &d) != QERR_OK || strcmp(n, name) != 0) continue;
        int64_t cnt = 1;
        for (int k = 0; k < nd; k++) cnt *= sh[k];
        QERR_CHECK(cnt == numel, QERR_E_FORMAT, "%s: extra '%s' has %lld values, expected %lld",
                   lin, name, (long long)cnt, (long long)numel);
        *data = d;
        return QERR_OK;
    }
    return qerr__fail(QERR_E_FORMAT, "%s: extra '%s' is missing", lin, name);
}

static bool has_extra(const qerr_result *r, const char *name) {
    for (int i = 0; r && i < qerr_result_extra_count(r); i++) {
        const char *n;
        if (qerr_result_extra(r, i, &n, NULL, NULL, NULL) == QERR_OK && strcmp(n, name) == 0)
            return true;
    }
    return false;
}

/* Stored clip factors are sigmoid(raw); the quantizers take the raw value. */
static double raw_of_factor(float f) { return qerr__clip_raw_of_factor(f); }

static int plan_bits(const qerr_result *r, const char *key, int64_t *v) {
    qerr_plan *p = NULL;
    const char *spec = qerr_result_plan(r);
    QERR_CHECK(spec, QERR_E_FORMAT, "flatquant layer: its result has no plan");
    QERR_TRY(qerr_plan_parse(&p, spec));
    int rc = qerr_plan_get_int(p, key, v);
    qerr_plan_free(p);
    return rc;
}

/* OmniQuant/CQE weight-activation layers (lib/methods/omniquant/omniquant_let.c): the
 * LET scales are folded into the norms and weights, so the state is the
 * folded norms, no online transform, the per-token quantizer at a_bits with
 * its clip at "none", and no K/V quantizer. */
static int let_rt(const qerr_model_config *cfg, const qerr_result *const r[7],
                  qerr_layer_rt **out) {
    QERR_CHECK(r[QERR_LIN_GATE], QERR_E_FORMAT,
               "let layer: gate_proj is not quantized with the rest of its block");
    int64_t a_bits;
    QERR_TRY(plan_bits(r[QERR_LIN_Q], "a_bits", &a_bits));
    QERR_CHECK((a_bits >= 2 && a_bits <= 8) || a_bits == 16, QERR_E_FORMAT,
               "let layer: a_bits=%lld", (long long)a_bits);
    const float *ln1, *ln2;
    QERR_TRY(get_extra(r[QERR_LIN_Q], "q_proj", "let.input_norm", cfg->hidden, &ln1));
    QERR_TRY(get_extra(r[QERR_LIN_GATE], "gate_proj", "let.post_attention_norm", cfg->hidden,
                       &ln2));
    qerr_layer_rt *rt = qerr__calloc(1, sizeof *rt);
    QERR_CHECK(rt, QERR_E_NOMEM, "let layer: out of memory");
    int rc = qerr__folded_norms_only(ln1, ln2, cfg->hidden, (int)a_bits, cfg->head_dim, &rt->f);
    if (rc != QERR_OK) {
        free(rt);
        return rc;
    }
    *out = rt;
    return QERR_OK;
}

int qerr__layer_rt_from_results(const qerr_model_config *cfg, const qerr_result *const r[7],
                                qerr_layer_rt **out) {
    *out = NULL;
    const bool let = r[QERR_LIN_Q] && has_extra(r[QERR_LIN_Q], "let.input_norm");
    if (!let && (!r[QERR_LIN_Q] || !has_extra(r[QERR_LIN_Q], "flatquant.p1"))) return QERR_OK;
    char why[160];
    QERR_CHECK(!qerr__config_has_extras(cfg, why, sizeof why), QERR_E_UNSUPPORTED,
               "deployed %s layer: the block engine does not compute a %s",
               let ? "weight-activation" : "flatquant", why);
    if (let) return let_rt(cfg, r, out);
    static const int lin_of_t[QERR_FQB_T] = {QERR_LIN_Q, QERR_LIN_O, QERR_LIN_GATE,
                                             QERR_LIN_DOWN};
    for (int t = 0; t < QERR_FQB_T; t++)
        QERR_CHECK(r[lin_of_t[t]], QERR_E_FORMAT,
                   "flatquant layer: %s is not quantized with the rest of its block",
                   qerr__lin_names[lin_of_t[t]]);
    int64_t a_bits, kv_bits;
    QERR_TRY(plan_bits(r[QERR_LIN_Q], "a_bits", &a_bits));
    QERR_TRY(plan_bits(r[QERR_LIN_Q], "kv_bits", &kv_bits));
    qerr_layer_rt *rt = qerr__calloc(1, sizeof *rt);
    QERR_CHECK(rt, QERR_E_NOMEM, "flatquant layer: out of memory");
    qerr_flatquant_folded *f = &rt->f;
    f->a_bits = (int)a_bits;
    f->kv_bits = (int)kv_bits;
    f->head_dim = (int)cfg->head_dim;
    qerr_block_config bc;
    qerr__block_config_from_model(cfg, &bc);
    int rc = QERR_OK;
    for (int t = 0; t < QERR_FQB_T && rc == QERR_OK; t++) {
        const qerr_result *rr = r[lin_of_t[t]];
        const char *lin = qerr__lin_names[lin_of_t[t]];
        int64_t n1, n2, cols = qerr_result_cols(rr);
        qerr__decompose_dim(cols, &n1, &n2);
        const float *p1, *p2, *clip;
        rc = get_extra(rr, lin, "flatquant.p1", n1 * n1, &p1);
        if (rc == QERR_OK) rc = get_extra(rr, lin, "flatquant.p2", n2 * n2, &p2);
        if (rc == QERR_OK) rc = get_extra(rr, lin, "flatquant.act_clip", 2, &clip);
        if (rc != QERR_OK) break;
        f->p1[t] = qerr__malloc2((size_t)(n1 * n1), sizeof(float));
        f->p2[t] = qerr__malloc2((size_t)(n2 * n2), sizeof(float));
        if (!f->p1[t] || !f->p2[t]) {
            rc = qerr__fail(QERR_E_NOMEM, "flatquant layer: out of memory");
            break;
        }
        memcpy(f->p1[t], p1, (size_t)(n1 * n1) * sizeof(float));
        memcpy(f->p2[t], p2, (size_t)(n2 * n2) * sizeof(float));
        f->act_clip[t][0] = raw_of_factor(clip[0]);
        f->act_clip[t][1] = raw_of_factor(clip[1]);
    }
    const float *ln1 = NULL, *ln2 = NULL;
    if (rc == QERR_OK)
        rc = get_extra(r[QERR_LIN_Q], "q_proj", "flatquant.input_norm", cfg->hidden, &ln1);
    if (rc == QERR_OK)
        rc = get_extra(r[QERR_LIN_GATE], "gate_proj", "flatquant.post_attention_norm",
                       cfg->hidden, &ln2);
    if (rc == QERR_OK) {
        f->ln1 = qerr__malloc2((size_t)cfg->hidden, sizeof(float));
        f->ln2 = qerr__malloc2((size_t)cfg->hidden, sizeof(float));
        if (f->ln1 && f->ln2) {
            memcpy(f->ln1, ln1, (size_t)cfg->hidden * sizeof(float));
            memcpy(f->ln2, ln2, (size_t)cfg->hidden * sizeof(float));
        } else {
            rc = qerr__fail(QERR_E_NOMEM, "flatquant layer: out of memory");
        }
    }
    for (int v = 0; v < 2; v++) {
        f->kv_clip[v][0] = f->kv_clip[v][1] = 40.0;
        const int lin = v ? QERR_LIN_V : QERR_LIN_K;
        const float *clip;
        if (rc == QERR_OK && kv_bits < 16) {
            QERR_CHECK(r[lin], QERR_E_FORMAT, "flatquant layer: %s is missing",
                       qerr__lin_names[lin]);
            rc = get_extra(r[lin], qerr__lin_names[lin], "flatquant.kv_clip", 2, &clip);
            if (rc == QERR_OK) {
                f->kv_clip[v][0] = raw_of_factor(clip[0]);
                f->kv_clip[v][1] = raw_of_factor(clip[1]);
            }
        }
    }
    if (rc != QERR_OK) {
        qerr__layer_rt_free(rt);
        return rc;
    }
    *out = rt;
    return QERR_OK;
}

int qerr__layer_rt_forward(const qerr_model_config *cfg, const qerr_layer_rt *rt,
                           const qerr_layer_weights *w, float *X, int64_t nwin, int64_t T) {
    QERR_CHECK(nwin >= 1 && T >= 1 && T <= INT32_MAX / 2, QERR_E_INVALID_ARG,
               "deployed layer: %lld windows of %lld tokens", (long long)nwin, (long long)T);
    qerr_block_config bc;
    qerr__block_config_from_model(cfg, &bc);
    const int64_t d = cfg->hidden, qd = cfg->heads * cfg->head_dim;
    const int64_t kvd = cfg->kv_heads * cfg->head_dim;
    /* what the block cache and the transform scratch hold per window */
    const int64_t per_win = T * (12 * d + 8 * qd + 8 * kvd + 8 * cfg->inter) +
                            2 * cfg->heads * T * T;
    int64_t nw = DEPLOY_CHUNK_FLOATS / per_win;
    if (nw < 1) nw = 1;
    if (nw > nwin) nw = nwin;
    const float *const wq[QERR_LIN_COUNT] = {w->q, w->k, w->v, w->o, w->gate, w->up, w->down};
    float *Y = qerr__malloc2((size_t)(nw * T), (size_t)d * sizeof(float));
    QERR_CHECK(Y, QERR_E_NOMEM, "deployed layer: out of memory");
    qerr_block_cache_f *cache = NULL;
    int rc = QERR_OK;
    for (int64_t w0 = 0; w0 < nwin && rc == QERR_OK; w0 += nw) {
        const int64_t n = nwin - w0 < nw ? nwin - w0 : nw;
        rc = qerr__block_cache_fit_f(&bc, n, T, &cache); /* last chunk may be shorter */
        if (rc != QERR_OK) break;
        float *x = X + w0 * T * d;
        rc = qerr__flatquant_deployed_forward(&bc, &rt->f, wq, cache, x, Y);
        if (rc == QERR_OK) memcpy(x, Y, (size_t)(n * T * d) * sizeof(float));
    }
    qerr__block_cache_free_f(cache);
    free(Y);
    return rc;
}

const qerr_layer_rt_ops qerr__deployed_rt_ops = {qerr__layer_rt_forward, qerr__layer_rt_free};
