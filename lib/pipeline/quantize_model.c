/* qerr_model_quantize: true-sequential calibration and quantization.
 * Per decoder layer: capture the inputs of q/k/v (one calibration set),
 * quantize q, k, v; rerun the layer with them to capture o_proj's input,
 * quantize it; rerun to capture gate/up's input, quantize both; rerun to
 * capture down_proj's input, quantize it; finally run the quantized layer to
 * produce the next layer's inputs. Once q/k/v/o are final, h1 = X + attention
 * is kept, so the down_proj capture and the final pass run only the MLP.
 * lm_head stays float unless an override pattern names it (then it is
 * calibrated on the final normed states).
 * A block-wise plan (method with quantize_block, e.g. flatquant) instead
 * hands each whole decoder block to the method, with both the float-path
 * and the quantized-path inputs; see quantize_block_layer. */
#include "deployed.h"
#include "overrides.h"
#include "../io/qstream.h"
#include "quantize_budget.h"
#include "../methods/method.h"
#include "../train/train.h" /* the block types handed to quantize_block */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tap points: the stage that captures each linear layer's input. */
static const int stage_of[QERR_LIN_COUNT] = {
    QERR_LIN_Q, QERR_LIN_Q, QERR_LIN_Q, QERR_LIN_O, QERR_LIN_GATE, QERR_LIN_GATE, QERR_LIN_DOWN,
};

typedef struct {
    qerr_ctx *ctx;
    const qerr_model *m;
    const qerr_plan *plan;
    const qerr_overrides *ov;
    qerr_qmodel *q;
    int64_t done, total; /* tensors, for progress */
    float *h1;           /* rows x hidden: the layer's X + attention(X) */
    bool h1_valid;       /* h1 holds the current layer's final attention */
    float *x_fp;         /* block-wise plans: the float path's hidden states */
} pipeline;

typedef struct {
    qerr_calib *calib;
    int lin;
} tap_state;

static int capture(void *user, int lin, const float *rows, int64_t nrows, int64_t cols) {
    tap_state *t = user;
    if (lin != t->lin) return QERR_OK;
    const double t0 = qerr__now();
    int rc = qerr_calib_add_f32(t->calib, rows, nrows);
    qerr__phase_times.gram += qerr__now() - t0;
    return rc;
}

/* Plan for tensor `name`, NULL to keep it float. */
static const qerr_plan *plan_for(const pipeline *p, const char *name, bool is_head) {
    const qerr_override *o = qerr__overrides_match(p->ov, name);
    if (o) return o->plan;
    /* a block-wise plan quantizes whole blocks only (quantize_block_layer);
     * in a block that overrides sent down the layer path the rest stays float */
    return is_head || qerr__plan_is_blockwise(p->plan) ? NULL : p->plan;
}

/* A copy of plan with ragged_groups=1 when group_size does not divide cols
 * (logged at INFO); *out stays NULL when the plan fits as it is. */
static int ragged_plan(const pipeline *p, const qerr_plan *plan, const char *name, int64_t cols,
                       qerr_plan **out) {
    *out = NULL;
    int64_t g, ragged;
    if (qerr_plan_get_int(plan, "group_size", &g) != QERR_OK ||
        qerr_plan_get_int(plan, "ragged_groups", &ragged) != QERR_OK) {
        qerr__clear_error();
        return QERR_OK;
    }
    if (g <= 0 || ragged == 1 || cols % g == 0) return QERR_OK;
    QERR_TRY(qerr_plan_clone(plan, out));
    int rc = qerr_plan_set_int(*out, "ragged_groups", 1);
    if (rc != QERR_OK) {
        qerr_plan_free(*out);
        *out = NULL;
        return rc;
    }
    /* a warning, not info: the grid differs from the one asked for */
    qerr__log(p->ctx, QERR_LOG_WARN,
              "%s: group_size=%lld does not divide its %lld columns; using ragged_groups=1 "
              "(last group shorter)",
              name, (long long)g, (long long)cols);
    return QERR_OK;
}

/* Quantize W [rows, cols] named `name`; *deq gets the dequantized weight
 * (malloc'd; set even if the progress callback then cancels) and the result
 * goes into the qmodel. */
static int quantize_one(pipeline *p, const char *name, const qerr_plan *plan, const float *W,
                        int64_t rows, int64_t cols, const qerr_calib *calib, const char *stage,
                        float **deq) {
    *deq = NULL;
    qerr_plan *fixed = NULL;
    QERR_TRY(ragged_plan(p, plan, name, cols, &fixed));
    qerr_tensor *t = NULL;
    const int64_t shape[2] = {rows, cols};
    int rc = qerr_tensor_wrap(&t, QERR_DTYPE_F32, 2, shape, (void *)W);
    qerr_result *r = NULL;
    const double t0 = qerr__now();
    const double diag0 = qerr__phase_times.diag;
    if (rc == QERR_OK) rc = qerr_quantize(p->ctx, fixed ? fixed : plan, t, calib, &r);
    qerr__phase_times.solve += qerr__now() - t0 - (qerr__phase_times.diag - diag0);
    if (rc != QERR_OK) {
        char why[512]; /* copied: the message buffer is rewritten by qerr__fail */
        snprintf(why, sizeof why, "%s", qerr_last_error());
        rc = qerr__fail(rc, "%s: %s", name, why);
    }
    qerr_tensor_free(t);
    qerr_plan_free(fixed);
    float *out = NULL;
    if (rc == QERR_OK) {
        out = qerr__malloc2((size_t)rows, (size_t)cols * sizeof(float));
        rc = out ? qerr_result_dequantize(r, out, (size_t)(rows * cols))
                 : qerr__fail(QERR_E_NOMEM, "%s: out of memory", name);
    }
    if (rc == QERR_OK) {
        double err = 0.0;
        qerr_result_diag(r, "layer_error", &err);
        qerr__log(p->ctx, QERR_LOG_INFO, "%s: %s, layer error %.6g, %.2f s", stage,
                  qerr_result_plan(r), err, qerr__now() - t0);
        rc = qerr_qmodel_add(p->q, name, r); /* takes r, also on failure */
        r = NULL;
    }
    qerr_result_free(r);
    if (rc != QERR_OK) {
        free(out);
        return rc;
    }
    *deq = out;
    p->done++;
    return qerr__progress(p->ctx, stage, (double)p->done / (double)p->total);
}

static bool plan_needs_calib(const qerr_plan *plan) {
    return plan && (plan->method->needs_calib || plan->method->wants_calib);
}

typedef struct {
    const float *w[QERR_LIN_COUNT]; /* current weights (float or dequantized) */
    float *owned[QERR_LIN_COUNT];
} layer_state;

static void set_weights(const layer_state *ls, const qerr_layer_weights *base,
                        qerr_layer_weights *w) {
    *w = *base;
    w->q = ls->w[QERR_LIN_Q];
    w->k = ls->w[QERR_LIN_K];
    w->v = ls->w[QERR_LIN_V];
    w->o = ls->w[QERR_LIN_O];
    w->gate = ls->w[QERR_LIN_GATE];
    w->up = ls->w[QERR_LIN_UP];
    w->down = ls->w[QERR_LIN_DOWN];
}

/* Quantize the linear layers of one stage (those tapped at `stage`). */
static int run_stage(pipeline *p, int64_t l, int stage, layer_state *ls,
                     const qerr_layer_weights *base, float *X, int64_t nwin, int64_t T) {
    const qerr_model_config *c = &p->m->cfg;
    char names[QERR_LIN_COUNT][160];
    const qerr_plan *plans[QERR_LIN_COUNT] = {0};
    bool any = false, need = false;
    for (int lin = 0; lin < QERR_LIN_COUNT; lin++) {
        if (stage_of[lin] != stage) continue;
        snprintf(names[lin], sizeof names[lin], "model.layers.%lld.%s.weight", (long long)l,
                 qerr__lin_names[lin]);
        plans[lin] = plan_for(p, names[lin], false);
        any |= plans[lin] != NULL;
        need |= plan_needs_calib(plans[lin]);
    }
    if (!any) return QERR_OK;
    qerr_calib *calib = NULL;
    if (need) {
        int64_t r, in;
        qerr__lin_shape(c, stage, &r, &in);
        QERR_TRY(qerr_calib_create(&calib, in));
        qerr_layer_weights w;
        set_weights(ls, base, &w);
        tap_state ts = {calib, stage};
        /* q/k/v/o are final once the gate/up stage runs: save h1 then, and
         * start the down_proj pass from it instead of rerunning attention. */
        float *save = NULL;
        const float *from = NULL;
        if (stage == QERR_LIN_GATE || (stage == QERR_LIN_DOWN && !p->h1_valid)) save = p->h1;
        else if (stage == QERR_LIN_DOWN) from = p->h1;
        int rc = qerr__layer_forward_ex(p->ctx, c, &w, X, nwin, T, capture, &ts, stage, save,
                                        from);
        if (rc == QERR_OK && save) p->h1_valid = true;
        if (rc != QERR_OK) {
            qerr_calib_free(calib);
            return rc;
        }
    }
    int rc = QERR_OK;
    for (int lin = 0; lin < QERR_LIN_COUNT && rc == QERR_OK; lin++) {
        if (stage_of[lin] != stage || !plans[lin]) continue;
        int64_t rows, cols;
        qerr__lin_shape(c, lin, &rows, &cols);
        char label[192];
        snprintf(label, sizeof label, "layer %lld/%lld %s", (long long)l + 1,
                 (long long)c->layers, qerr__lin_names[lin]);
        float *deq = NULL;
        rc = quantize_one(p, names[lin], plans[lin], ls->w[lin], rows, cols,
                          plan_needs_calib(plans[lin]) ? calib : NULL, label, &deq);
        if (deq) { /* also when the progress callback cancelled after it */
            ls->owned[lin] = deq;
            ls->w[lin] = deq;
        }
    }
    qerr_calib_free(calib);
    return rc;
}

/* Block-wise path for layer l (no override names any of its tensors): the
 * method quantizes the whole block from x_fp (float path) and X (quantized
 * path); results are stored under the usual names, with their extras; X
 * advances through the deployed block (online transforms when the results
 * carry them, else the dequantized weights) and x_fp through the float one. */
static int quantize_block_layer(pipeline *p, int64_t l, float *X, int64_t nwin, int64_t T) {
    const qerr_model_config *c = &p->m->cfg;
    qerr_block_config bc;
    qerr__block_config_from_model(c, &bc);
    qerr_layer_weights base, nb[QERR_BLOCK_LOOKAHEAD];
    qerr_block_weights_f w, nw[QERR_BLOCK_LOOKAHEAD];
    qerr__model_layer_peek(p->m, l, &base); /* acquired by quantize_layer */
    qerr__block_weights_from_layer(&base, &w);
    /* as for layer plans: a group_size that does not divide some linear's
     * input width turns on ragged_groups for the block */
    qerr_plan *fixed = NULL;
    for (int lin = 0; lin < QERR_LIN_COUNT && !fixed; lin++) {
        int64_t rows, cols;
        char name[160];
        qerr__block_linear_shape(&bc, lin, &rows, &cols);
        snprintf(name, sizeof name, "model.layers.%lld.%s", (long long)l, qerr__lin_names[lin]);
        QERR_TRY(ragged_plan(p, p->plan, name, cols, &fixed));
    }
    const qerr_plan *plan = fixed ? fixed : p->plan;
    qerr_block_call call = {p->ctx, plan, &bc, &w, p->x_fp, X, {NULL}, l, c->layers, nwin, T};
    int rc = QERR_OK;
    int64_t ahead = 0; /* the next layers' weights, acquired for the method */
    for (int k = 0; rc == QERR_OK && k < QERR_BLOCK_LOOKAHEAD && l + 1 + k < c->layers; k++) {
        rc = qerr__model_layer_acquire(p->m, l + 1 + k, &nb[k]);
        if (rc != QERR_OK) break;
        ahead++;
        qerr__block_weights_from_layer(&nb[k], &nw[k]);
        call.next[k] = &nw[k];
    }
    qerr_result *res[QERR_LIN_COUNT] = {0};
    float *deq[QERR_LIN_COUNT] = {0};
    qerr_layer_rt *rt = NULL;
    const double t0 = qerr__now();
    if (rc == QERR_OK) rc = p->plan->method->quantize_block(&call, res);
    for (int64_t k = 0; k < ahead; k++) qerr__model_layer_release(p->m, l + 1 + k);
    if (rc != QERR_OK) {
        qerr_plan_free(fixed);
        char why[512];
        snprintf(why, sizeof why, "%s", qerr_last_error());
        return qerr__fail(rc, "model.layers.%lld: %s", (long long)l, why);
    }
    char spec[1024];
    size_t need = 0;
    rc = qerr_plan_to_string(plan, spec, sizeof spec, &need);
    qerr_plan_free(fixed);
    plan = NULL;
    for (int lin = 0; lin < QERR_LIN_COUNT && rc == QERR_OK; lin++) {
        int64_t rows = qerr_result_rows(res[lin]), cols = qerr_result_cols(res[lin]);
        if (!res[lin]->plan && (res[lin]->plan = malloc(strlen(spec) + 1)))
            memcpy(res[lin]->plan, spec, strlen(spec) + 1); /* as qerr_quantize stamps it */
        deq[lin] = qerr__malloc2((size_t)rows, (size_t)cols * sizeof(float));
        rc = deq[lin] && res[lin]->plan
                 ? qerr_result_dequantize(res[lin], deq[lin], (size_t)(rows * cols))
                 : qerr__fail(QERR_E_NOMEM, "model.layers.%lld: out of memory", (long long)l);
    }
    if (rc == QERR_OK) rc = qerr__layer_rt_from_results(c, (const qerr_result *const *)res, &rt);
    double mse = NAN;
    if (rc == QERR_OK) qerr_result_diag(res[QERR_LIN_Q], "block_mse_final", &mse);
    for (int lin = 0; lin < QERR_LIN_COUNT; lin++) {
        char name[160];
        snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)l,
                 qerr__lin_names[lin]);
        if (rc == QERR_OK) rc = qerr_qmodel_add(p->q, name, res[lin]); /* takes it */
        else qerr_result_free(res[lin]);
        res[lin] = NULL;
    }
    if (rc == QERR_OK) {
        qerr__clear_error();
        qerr__log(p->ctx, QERR_LOG_INFO, "layer %lld/%lld: %s, block mse %.6g, %.2f s",
                  (long long)l + 1, (long long)c->layers, spec, mse, qerr__now() - t0);
        qerr_layer_weights wq = base;
        wq.q = deq[QERR_LIN_Q]; wq.k = deq[QERR_LIN_K]; wq.v = deq[QERR_LIN_V];
        wq.o = deq[QERR_LIN_O]; wq.gate = deq[QERR_LIN_GATE]; wq.up = deq[QERR_LIN_UP];
        wq.down = deq[QERR_LIN_DOWN];
        rc = rt ? qerr__layer_rt_forward(c, rt, &wq, X, nwin, T)
                : qerr__layer_forward(p->ctx, c, &wq, X, nwin, T, NULL, NULL, -1);
    }
    if (rc == QERR_OK)
        rc = qerr__layer_forward(p->ctx, c, &base, p->x_fp, nwin, T, NULL, NULL, -1);
    qerr__layer_rt_free(rt);
    for (int lin = 0; lin < QERR_LIN_COUNT; lin++) free(deq[lin]);
    if (rc != QERR_OK) return rc;
    p->done += QERR_LIN_COUNT;
    char label[64];
    snprintf(label, sizeof label, "layer %lld/%lld", (long long)l + 1, (long long)c->layers);
    return qerr__progress(p->ctx, label, (double)p->done / (double)p->total);
}

/* Whether any override names a linear of layer l. */
static bool layer_overridden(const pipeline *p, int64_t l) {
    for (int lin = 0; lin < QERR_LIN_COUNT; lin++) {
        char name[160];
        snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)l,
                 qerr__lin_names[lin]);
        if (qerr__overrides_match(p->ov, name)) return true;
    }
    return false;
}

static int layer_path(pipeline *p, int64_t l, float *X, int64_t nwin, int64_t T) {
    qerr_layer_weights base;
    qerr__model_layer_peek(p->m, l, &base); /* acquired by quantize_layer */
    if (p->x_fp) /* block-wise plan, overridden block: layer path, float path advances too */
        QERR_TRY(qerr__layer_forward(p->ctx, &p->m->cfg, &base, p->x_fp, nwin, T, NULL, NULL, -1));
    layer_state ls = {{base.q, base.k, base.v, base.o, base.gate, base.up, base.down}, {0}};
    static const int stages[] = {QERR_LIN_Q, QERR_LIN_O, QERR_LIN_GATE, QERR_LIN_DOWN};
    int rc = QERR_OK;
    p->h1_valid = false;
    for (size_t s = 0; s < sizeof stages / sizeof stages[0] && rc == QERR_OK; s++)
        rc = run_stage(p, l, stages[s], &ls, &base, X, nwin, T);
    if (rc == QERR_OK) { /* the quantized layer feeds the next one */
        qerr_layer_weights w;
        set_weights(&ls, &base, &w);
        rc = qerr__layer_forward_ex(p->ctx, &p->m->cfg, &w, X, nwin, T, NULL, NULL, -1, NULL,
                                    p->h1_valid ? p->h1 : NULL);
    }
    for (int lin = 0; lin < QERR_LIN_COUNT; lin++) free(ls.owned[lin]);
    return rc;
}

/* Layer l's float32 weights are resident only while it is quantized. */
static int quantize_layer(pipeline *p, int64_t l, float *X, int64_t nwin, int64_t T) {
    const qerr_phase_times before = qerr__phase_times;
    const double t0 = qerr__now();
    qerr_layer_weights base;
    QERR_TRY(qerr__model_layer_acquire(p->m, l, &base));
    int rc = p->x_fp && !layer_overridden(p, l) ? quantize_block_layer(p, l, X, nwin, T)
                                                : layer_path(p, l, X, nwin, T);
    qerr__model_layer_release(p->m, l);
    /* the rest of the layer's time: forward passes (and weight conversion) */
    qerr_phase_times *pt = &qerr__phase_times;
    pt->forward += qerr__now() - t0 - (pt->gram - before.gram) - (pt->solve - before.solve) -
                   (pt->diag - before.diag);
    return rc;
}

/* lm_head, only when an override names it: calibrated on final normed states. */
static int quantize_head(pipeline *p, const qerr_plan *plan, float *X, int64_t rows) {
    const qerr_model_config *c = &p->m->cfg;
    qerr__rmsnorm(X, rows, c->hidden, qerr__model_data(p->m, "model.norm.weight"), c->rms_eps);
    qerr_calib *calib = NULL;
    if (plan_needs_calib(plan)) {
        QERR_TRY(qerr_calib_create(&calib, c->hidden));
        int rc = qerr_calib_add_f32(calib, X, rows);
        if (rc != QERR_OK) {
            qerr_calib_free(calib);
            return rc;
        }
    }
    float *deq = NULL;
    int rc = quantize_one(p, "lm_head.weight", plan, qerr__model_data(p->m, "lm_head.weight"),
                          c->vocab, c->hidden, calib, "lm_head", &deq);
    free(deq);
    qerr_calib_free(calib);
    return rc;
}

/* nsamples windows of seqlen tokens at seeded random offsets. */
static int draw_windows(const qerr_ctx *ctx, const uint32_t *tokens, int64_t count,
                        int64_t nsamples, int64_t seqlen, uint32_t *out) {
    qerr_rng rng;
    qerr__rng_seed(&rng, ctx->seed);
    const uint64_t span = (uint64_t)(count - seqlen) + 1;
    for (int64_t s = 0; s < nsamples; s++) {
        const int64_t start = (int64_t)(qerr__rng_next(&rng) % span);
        memcpy(out + s * seqlen, tokens + start, (size_t)seqlen * sizeof *out);
    }
    return QERR_OK;
}

static int set_meta(qerr_qmodel *q, const char *plan, const char *overrides, int64_t nsamples,
                    int64_t seqlen, uint64_t seed) {
    char buf[64];
    QERR_TRY(qerr_qmodel_set_meta(q, "quantize.plan", plan));
    QERR_TRY(qerr_qmodel_set_meta(q, "quantize.overrides", overrides ? overrides : ""));
    snprintf(buf, sizeof buf, "%lld", (long long)nsamples);
    QERR_TRY(qerr_qmodel_set_meta(q, "quantize.nsamples", buf));
    snprintf(buf, sizeof buf, "%lld", (long long)seqlen);
    QERR_TRY(qerr_qmodel_set_meta(q, "quantize.seqlen", buf));
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)seed);
    QERR_TRY(qerr_qmodel_set_meta(q, "quantize.seed", buf));
    return qerr_qmodel_set_meta(q, "quantize.lm_head", "float unless an override names it");
}

typedef struct {
    const char *path;
    const char *const *meta; /* key, value, ..., NULL */
    bool resume;
} stream_args;

/* X = embeddings of the calibration windows, a slice at a time so that a
 * spilled X never becomes resident as a whole. */
static int embed_chunked(const qerr_model *m, const uint32_t *tok, int64_t rows, float *X) {
    const int64_t d = m->cfg.hidden, step = 1 << 14;
    for (int64_t r0 = 0; r0 < rows; r0 += step) {
        const int64_t n = rows - r0 < step ? rows - r0 : step;
        QERR_TRY(qerr__embed(m, tok + r0, n, X + r0 * d));
        qerr__big_release(X + r0 * d, (size_t)(n * d) * sizeof(float));
    }
    return QERR_OK;
}

static double gib(int64_t bytes) { return (double)bytes / (double)(1 << 30); }

/* Under ctx->max_memory: keep the activations in memory if everything fits,
 * else spill them to a temporary file if the rest fits, else refuse before
 * any work, saying what the run needs. */
static int plan_memory(const char *fn, const qerr_ctx *cx, const qerr_model *m, bool blockwise,
                       int64_t nsamples, int64_t seqlen, bool *spill) {
    qerr_run_budget b;
    qerr__run_budget(m, blockwise, nsamples, seqlen, &b);
    const int64_t in_mem = qerr__budget_total(&b, false), spilled = qerr__budget_total(&b, true);
    const int64_t budget = cx->max_memory > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)cx->max_memory;
    *spill = in_mem > budget;
    if (spilled > budget)
        return qerr__fail(QERR_E_NOMEM,
                          "%s: needs about %.2f GiB even with the calibration activations in a "
                          "temporary file (layer weights %.2f, dequantized copies %.2f, H %.2f, "
                          "solver %.2f, results %.2f, other %.2f GiB), more than the memory "
                          "budget of %.2f GiB",
                          fn, gib(spilled), gib(b.layer_bytes), gib(b.deq_bytes),
                          gib(b.gram_bytes), gib(b.solver_bytes), gib(b.results_bytes),
                          gib(b.fixed_bytes), gib(budget));
    if (*spill)
        qerr__log(cx, QERR_LOG_INFO,
                  "memory: %.2f GiB needed with the calibration activations in memory, budget "
                  "%.2f GiB: %d x %.2f GiB of activations go to a temporary file",
                  gib(in_mem), gib(budget), b.n_act, gib(b.act_bytes));
    return QERR_OK;
}

/* Fingerprint of what the file depends on besides its metadata record
 * (which the stream compares itself): model shapes and leading bytes,
 * calibration windows, thread count. */
static uint32_t run_key(const qerr_ctx *ctx, const qerr_model *m, const uint32_t *calib_tok,
                        int64_t rows) {
    const uint32_t parts[4] = {qerr__model_fingerprint(m),
                               qerr__crc32(calib_tok, (size_t)rows * sizeof *calib_tok),
                               (uint32_t)qerr__ctx_threads(ctx), (uint32_t)rows};
    return qerr__crc32(parts, sizeof parts);
}

/* Wall-time diagnostics ("seconds", "sweep_seconds") differ from run to
 * run; a streamed file leaves them out so that it is reproducible (a resumed
 * run writes the same bytes). The results are the pipeline's own. */
static void drop_timings(qerr_qmodel *q) {
    for (int i = 0; i < qerr_qmodel_count(q); i++) {
        const qerr_result *cr;
        if (qerr_qmodel_get(q, qerr_qmodel_name(q, i), &cr) != QERR_OK) continue;
        qerr_result *r = (qerr_result *)cr;
        int k = 0;
        for (int d = 0; d < r->n_diag; d++) {
            const char *n = r->diag[d].name;
            const size_t len = strlen(n);
            if (len >= 7 && strcmp(n + len - 7, "seconds") == 0) continue;
            r->diag[k++] = r->diag[d];
        }
        r->n_diag = k;
    }
    qerr__clear_error();
}

/* Hand one finished unit's results to the file and start an empty set. */
static int flush_unit(pipeline *p, qerr_qstream *qs, int64_t unit) {
    drop_timings(p->q);
    QERR_TRY(qerr__qstream_unit_done(qs, p->q, unit));
    qerr_qmodel_free(p->q);
    p->q = NULL;
    return qerr_qmodel_create(&p->q);
}

/* Resume: advance X (and the float path) through finished layer l exactly as
 * the run that quantized it did, from the results stored in the file. */
static int replay_layer(pipeline *p, qerr_qstream *qs, int64_t l, float *X, int64_t nwin,
                        int64_t T) {
    const qerr_model_config *c = &p->m->cfg;
    qerr_qmodel *lq = NULL;
    QERR_TRY(qerr__qstream_replay(qs, l, c->layers, &lq));
    qerr_layer_weights base, wq;
    int rc = qerr__model_layer_acquire(p->m, l, &base);
    if (rc != QERR_OK) {
        qerr_qmodel_free(lq);
        return rc;
    }
    wq = base;
    const float **slot[QERR_LIN_COUNT] = {&wq.q, &wq.k, &wq.v, &wq.o, &wq.gate, &wq.up, &wq.down};
    const qerr_result *r[QERR_LIN_COUNT] = {0};
    float *deq[QERR_LIN_COUNT] = {0};
    for (int lin = 0; lin < QERR_LIN_COUNT && rc == QERR_OK; lin++) {
        char name[160];
        snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)l,
                 qerr__lin_names[lin]);
        if (qerr_qmodel_get(lq, name, &r[lin]) != QERR_OK) {
            r[lin] = NULL;
            continue;
        }
        const int64_t rows = qerr_result_rows(r[lin]), cols = qerr_result_cols(r[lin]);
        deq[lin] = qerr__malloc2((size_t)rows, (size_t)cols * sizeof(float));
        rc = deq[lin] ? qerr_result_dequantize(r[lin], deq[lin], (size_t)(rows * cols))
                      : qerr__fail(QERR_E_NOMEM, "--resume: out of memory");
        *slot[lin] = deq[lin];
        p->done++;
    }
    qerr__clear_error();
    const bool block = p->x_fp && !layer_overridden(p, l);
    qerr_layer_rt *rt = NULL;
    if (rc == QERR_OK && block) rc = qerr__layer_rt_from_results(c, r, &rt);
    if (rc == QERR_OK)
        rc = rt ? qerr__layer_rt_forward(c, rt, &wq, X, nwin, T)
                : qerr__layer_forward(p->ctx, c, &wq, X, nwin, T, NULL, NULL, -1);
    if (rc == QERR_OK && p->x_fp)
        rc = qerr__layer_forward(p->ctx, c, &base, p->x_fp, nwin, T, NULL, NULL, -1);
    qerr__layer_rt_free(rt);
    for (int lin = 0; lin < QERR_LIN_COUNT; lin++) free(deq[lin]);
    qerr__model_layer_release(p->m, l);
    qerr_qmodel_free(lq);
    return rc;
}

/* The pipeline; with `sa` each finished unit goes to its file instead of
 * staying in *out (which then receives nothing). */
static int run(const char *fn, qerr_ctx *ctx, const qerr_model *m, const char *plan_spec,
               const char *overrides, const uint32_t *tokens, int64_t count, int64_t nsamples,
               int64_t seqlen, const stream_args *sa, qerr_qmodel **out) {
    QERR_CHECK(m && plan_spec && tokens, QERR_E_INVALID_ARG, "%s: NULL argument", fn);
    QERR_CHECK(nsamples >= 1 && nsamples <= (1 << 20), QERR_E_RANGE,
               "%s: nsamples=%lld is outside 1..2^20", fn, (long long)nsamples);
    QERR_CHECK(seqlen >= 1 && seqlen <= (1 << 20), QERR_E_RANGE,
               "%s: seqlen=%lld is outside 1..2^20", fn, (long long)seqlen);
    QERR_CHECK(count >= seqlen, QERR_E_RANGE, "%s: %lld calibration tokens < seqlen=%lld", fn,
               (long long)count, (long long)seqlen);
    for (int64_t i = 0; i < count; i++)
        QERR_CHECK(tokens[i] < (uint64_t)m->cfg.vocab, QERR_E_RANGE,
                   "%s: calibration token %lld has id %u, outside the vocabulary of %lld", fn,
                   (long long)i, tokens[i], (long long)m->cfg.vocab);
    const qerr_ctx *cx = ctx ? ctx : qerr__default_ctx();
    QERR_TRY(qerr__config_check_window(&m->cfg, seqlen, fn));
    qerr_plan *plan = NULL;
    QERR_TRY(qerr_plan_parse(&plan, plan_spec));
    qerr_overrides ov;
    int rc = qerr__overrides_parse(overrides, &ov);
    if (rc != QERR_OK) {
        qerr_plan_free(plan);
        return rc;
    }
    const int64_t rows = nsamples * seqlen, d = m->cfg.hidden;
    const size_t act = (size_t)rows * (size_t)d * sizeof(float);
    bool spill = false; /* the activations go to a temporary file */
    if (sa && cx->max_memory)
        rc = plan_memory(fn, cx, m, qerr__plan_is_blockwise(plan), nsamples, seqlen, &spill);
    const char *force = getenv("QERR_TEST_SPILL"); /* test hook: spill whatever the budget */
    if (sa && force && strcmp(force, "1") == 0) spill = true;
    uint32_t *calib_tok = qerr__malloc2((size_t)rows, sizeof *calib_tok);
    float *X = NULL, *h1 = NULL;
    qerr_qmodel *q = NULL;
    if (rc == QERR_OK && !calib_tok)
        rc = qerr__fail(QERR_E_NOMEM, "%s: out of memory for %lld rows", fn, (long long)rows);
    if (rc == QERR_OK) rc = qerr__big_alloc(act, spill, "calibration activations", (void **)&X);
    if (rc == QERR_OK) rc = qerr__big_alloc(act, spill, "calibration activations", (void **)&h1);
    if (rc == QERR_OK) rc = qerr_qmodel_create(&q);
    if (rc == QERR_OK) rc = set_meta(q, plan_spec, overrides, nsamples, seqlen, cx->seed);
    for (int k = 0; rc == QERR_OK && sa && sa->meta && sa->meta[k] && sa->meta[k + 1]; k += 2)
        rc = qerr_qmodel_set_meta(q, sa->meta[k], sa->meta[k + 1]);
    if (rc == QERR_OK) rc = draw_windows(cx, tokens, count, nsamples, seqlen, calib_tok);
    if (rc == QERR_OK) rc = embed_chunked(m, calib_tok, rows, X);
    const qerr_plan *head_plan = plan_for(&(pipeline){.plan = plan, .ov = &ov},
                                          "lm_head.weight", true);
    pipeline p = {(qerr_ctx *)cx, m, plan, &ov, q, 0, 0, h1, false, NULL};
    if (rc == QERR_OK && qerr__plan_is_blockwise(plan)) {
        rc = qerr__big_alloc(act, spill, "calibration activations", (void **)&p.x_fp);
        if (rc == QERR_OK) rc = embed_chunked(m, calib_tok, rows, p.x_fp);
    }
    for (int64_t l = 0; l < m->cfg.layers; l++) {
        char name[160];
        if (p.x_fp && !layer_overridden(&p, l)) {
            p.total += QERR_LIN_COUNT;
            continue;
        }
        for (int lin = 0; lin < QERR_LIN_COUNT; lin++) {
            snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)l,
                     qerr__lin_names[lin]);
            p.total += plan_for(&p, name, false) != NULL;
        }
    }
    p.total += head_plan != NULL;
    if (p.total == 0) p.total = 1;
    qerr_qstream *qs = NULL;
    int64_t units_done = 0; /* resumed: layers (then lm_head) already in the file */
    if (rc == QERR_OK && sa) {
        const uint32_t key = run_key(cx, m, calib_tok, rows);
        rc = qerr__qstream_open(&qs, cx, sa->path, q, key, sa->resume, &units_done);
        if (rc == QERR_OK) rc = qerr_qmodel_create(&p.q); /* one unit's results at a time */
    }
    for (int64_t l = 0; rc == QERR_OK && l < m->cfg.layers; l++) {
        if (l < units_done) {
            rc = replay_layer(&p, qs, l, X, nsamples, seqlen);
            continue;
        }
        rc = quantize_layer(&p, l, X, nsamples, seqlen);
        if (rc == QERR_OK && qs) rc = flush_unit(&p, qs, l);
    }
    if (rc == QERR_OK && head_plan && units_done <= m->cfg.layers) {
        rc = quantize_head(&p, head_plan, X, rows);
        if (rc == QERR_OK && qs) rc = flush_unit(&p, qs, m->cfg.layers);
    }
    if (rc == QERR_OK && qs) rc = qerr__qstream_finish(qs);
    qerr__qstream_close(qs);
    if (qs) qerr_qmodel_free(p.q);
    free(calib_tok);
    qerr__big_free(X);
    qerr__big_free(h1);
    qerr__big_free(p.x_fp);
    qerr__overrides_free(&ov);
    qerr_plan_free(plan);
    if (rc != QERR_OK || sa) {
        qerr_qmodel_free(q);
        return rc;
    }
    *out = q;
    qerr__clear_error();
    return QERR_OK;
}

int qerr_model_quantize(qerr_ctx *ctx, const qerr_model *m, const char *plan_spec,
                        const char *overrides, const uint32_t *tokens, int64_t count,
                        int64_t nsamples, int64_t seqlen, qerr_qmodel **out) {
    static const char fn[] = "qerr_model_quantize";
    QERR_CHECK(out, QERR_E_INVALID_ARG, "%s: out is NULL", fn);
    *out = NULL;
    return run(fn, ctx, m, plan_spec, overrides, tokens, count, nsamples, seqlen, NULL, out);
}

int qerr_model_quantize_file(qerr_ctx *ctx, const qerr_model *m, const char *plan_spec,
                             const char *overrides, const uint32_t *tokens, int64_t count,
                             int64_t nsamples, int64_t seqlen, const char *const *meta,
                             const char *path, unsigned flags) {
    static const char fn[] = "qerr_model_quantize_file";
    QERR_CHECK(path && *path, QERR_E_INVALID_ARG, "%s: path is NULL or empty", fn);
    QERR_CHECK((flags & ~(unsigned)QERR_QUANTIZE_RESUME) == 0, QERR_E_INVALID_ARG,
               "%s: unknown flags 0x%x", fn, flags);
    const stream_args sa = {path, meta, (flags & QERR_QUANTIZE_RESUME) != 0};
    int rc = run(fn, ctx, m, plan_spec, overrides, tokens, count, nsamples, seqlen, &sa, NULL);
    if (rc == QERR_OK) qerr__clear_error();
    return rc;
}
