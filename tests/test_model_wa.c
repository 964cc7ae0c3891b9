/* Weight-activation quantized models through the library: FlatQuant run by
 * qerr_model_quantize (block-wise slot), saved and loaded through the
 * container, applied, and scored by qerr_model_perplexity must reproduce an
 * independent evaluation made here from the trainer itself (train, fold,
 * RTN, qerr__flatquant_deployed_forward on the block engine): same codes,
 * same perplexity to 1e-5, at W4A16, W4A4 and W4A4KV4. Also: W4A4 FlatQuant beats the W4A4 RTN
 * baseline, overrides keep whole blocks float, and a model without run-time
 * state keeps the float forward bit for bit. */
#include "testutil.h"
#include "model_testutil.h"

#include "methods/flatquant/flatquant.h"

#include <math.h>
#include <stdlib.h>
#include <unistd.h>

static const int64_t NSEQ = 8, SEQ = 64; /* calibration windows */
static const int64_t CTX = 256, NWIN = 8; /* evaluation: 8 windows of 256 */

typedef struct {
    qerr_model *m;
    uint32_t *calib, *eval;
    int64_t nc, ne;
} fixture;

static void load(fixture *f, const char *data) {
    char path[1024];
    snprintf(path, sizeof path, "%s/stories260k", data);
    assert_int_equal(qerr_model_load(&f->m, path), QERR_OK);
    snprintf(path, sizeof path, "%s/stories260k/calib.u32", data);
    assert_int_equal(qerr_tokens_read(path, &f->calib, &f->nc), QERR_OK);
    snprintf(path, sizeof path, "%s/stories260k/eval.u32", data);
    assert_int_equal(qerr_tokens_read(path, &f->eval, &f->ne), QERR_OK);
    assert_true(f->ne >= NWIN * CTX);
}

static void unload(fixture *f) {
    qerr_model_free(f->m);
    qerr_free(f->calib);
    qerr_free(f->eval);
}

static double lib_ppl(const qerr_model *m, const uint32_t *eval, int64_t ne) {
    double ppl = 0;
    assert_int_equal(qerr_model_perplexity(NULL, m, eval, ne, CTX, NWIN, &ppl, NULL, NULL),
                     QERR_OK);
    return ppl;
}

/* Quantize with `spec`, round-trip through the container, apply to a fresh
 * copy of the model. */
static qerr_model *quantize_apply(const fixture *f, const char *data, const char *spec,
                                  const char *overrides, qerr_qmodel **qout) {
    qerr_ctx *ctx;
    assert_int_equal(qerr_ctx_create(&ctx), QERR_OK);
    qerr_qmodel *q = NULL;
    int rc = qerr_model_quantize(ctx, f->m, spec, overrides, f->calib, f->nc, NSEQ, SEQ, &q);
    if (rc != QERR_OK) fail_msg("%s: %s", spec, qerr_last_error());
    qerr_ctx_free(ctx);
    char *dir = mt_tempdir(), path[1100];
    assert_non_null(dir);
    snprintf(path, sizeof path, "%s/q.qerr", dir);
    assert_int_equal(qerr_qmodel_save(q, path), QERR_OK);
    qerr_qmodel_free(q);
    assert_int_equal(qerr_qmodel_load(&q, path), QERR_OK);
    unlink(path);
    rmdir(dir);
    free(dir);
    qerr_model *m;
    snprintf(path, sizeof path, "%s/stories260k", data);
    assert_int_equal(qerr_model_load(&m, path), QERR_OK);
    assert_int_equal(qerr_model_apply(m, q), QERR_OK);
    if (qout) *qout = q;
    else qerr_qmodel_free(q);
    return m;
}

/* The calibration windows qerr_model_quantize draws (seeded offsets). */
static void draw(const fixture *f, uint64_t seed, uint32_t *out) {
    qerr_rng rng;
    qerr__rng_seed(&rng, seed);
    const uint64_t span = (uint64_t)(f->nc - SEQ) + 1;
    for (int64_t s = 0; s < NSEQ; s++)
        memcpy(out + s * SEQ, f->calib + qerr__rng_next(&rng) % span, (size_t)SEQ * 4);
}

typedef struct {
    qerr_flatquant_folded f;
    float *wq[QERR_LIN_COUNT];
} dep_layer;

/* The reference: every block trained on float inputs by the trainer, folded,
 * rounded; its codes must equal the qmodel's; then the perplexity of the
 * deployed blocks on the block engine, one chunk of NWIN windows. */
static double reference_ppl(const fixture *f, const char *spec, const qerr_qmodel *q) {
    const qerr_model *m = f->m;
    qerr_block_config cfg;
    qerr__block_config_from_model(&m->cfg, &cfg);
    qerr_plan *plan;
    assert_int_equal(qerr_plan_parse(&plan, spec), QERR_OK);
    qerr_flatquant_opts o;
    assert_int_equal(qerr__flatquant_opts_from_plan(plan, qerr__default_ctx()->seed, &o),
                     QERR_OK);
    qerr_plan_free(plan);
    const int64_t L = m->cfg.layers, d = cfg.hidden, V = m->cfg.vocab;
    uint32_t *tok = malloc(sizeof(uint32_t) * (size_t)(NSEQ * SEQ));
    float *X = malloc(sizeof(float) * (size_t)(NSEQ * SEQ * d));
    draw(f, qerr__default_ctx()->seed, tok);
    assert_int_equal(qerr__embed(m, tok, NSEQ * SEQ, X), QERR_OK);
    dep_layer *dl = calloc((size_t)L, sizeof *dl);
    for (int64_t l = 0; l < L; l++) {
        qerr_layer_weights lw;
        qerr_block_weights_f w;
        qerr__model_layer(m, l, &lw);
        qerr__block_weights_from_layer(&lw, &w);
        qerr_flatquant_block *b;
        assert_int_equal(qerr__flatquant_train_block(NULL, &cfg, &w, X, NSEQ, SEQ, &o, &b),
                         QERR_OK);
        assert_int_equal(qerr__flatquant_fold(b, &w, &dl[l].f), QERR_OK);
        qerr__flatquant_block_free(b);
        for (int k = 0; k < QERR_LIN_COUNT; k++) {
            int64_t r, c;
            qerr__block_linear_shape(&cfg, k, &r, &c);
            qerr_result *res;
            assert_int_equal(qerr__flatquant_rtn(dl[l].f.w[k], r, c, o.w_bits, o.w_group, &res),
                             QERR_OK);
            dl[l].wq[k] = malloc(sizeof(float) * (size_t)(r * c));
            assert_int_equal(qerr_result_dequantize(res, dl[l].wq[k], (size_t)(r * c)), QERR_OK);
            char name[160];
            snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)l,
                     qerr__lin_names[k]);
            const qerr_result *got;
            assert_int_equal(qerr_qmodel_get(q, name, &got), QERR_OK);
            assert_memory_equal(got->codes, res->codes, (size_t)(r * c)); /* same training */
            assert_memory_equal(got->scales, res->scales, (size_t)(r * res->groups) * 4);
            qerr_result_free(res);
        }
        assert_int_equal(qerr__layer_forward(NULL, &m->cfg, &lw, X, NSEQ, SEQ, NULL, NULL, -1),
                         QERR_OK);
    }
    free(X);
    free(tok);
    /* perplexity of the deployed model */
    qerr_block_cache_f *c;
    assert_int_equal(qerr__block_cache_create_f(&cfg, NWIN, CTX, &c), QERR_OK);
    X = malloc(sizeof(float) * (size_t)(NWIN * CTX * d));
    float *Y = malloc(sizeof(float) * (size_t)(NWIN * CTX * d));
    float *logits = malloc(sizeof(float) * (size_t)(CTX * V));
    assert_int_equal(qerr__embed(m, f->eval, NWIN * CTX, X), QERR_OK);
    for (int64_t l = 0; l < L; l++) {
        assert_int_equal(qerr__flatquant_deployed_forward(&cfg, &dl[l].f,
                                                          (const float *const *)dl[l].wq, c, X, Y),
                         QERR_OK);
        float *t = X;
        X = Y;
        Y = t;
    }
    double nll = 0;
    for (int64_t w = 0; w < NWIN; w++) {
        assert_int_equal(qerr__head(m, X + w * CTX * d, CTX, logits), QERR_OK);
        for (int64_t t = 0; t + 1 < CTX; t++) {
            const float *z = logits + t * V;
            double mx = z[0], s = 0;
            for (int64_t v = 1; v < V; v++) mx = fmax(mx, z[v]);
            for (int64_t v = 0; v < V; v++) s += exp((double)z[v] - mx);
            nll += log(s) + mx - (double)z[f->eval[w * CTX + t + 1]];
        }
    }
    qerr__block_cache_free_f(c);
    free(X);
    free(Y);
    free(logits);
    for (int64_t l = 0; l < L; l++) {
        for (int k = 0; k < QERR_LIN_COUNT; k++) free(dl[l].wq[k]);
        qerr__flatquant_folded_free(&dl[l].f);
    }
    free(dl);
    return exp(nll / (double)(NWIN * (CTX - 1)));
}

static void check_against_trainer(const char *spec) {
    TU_REQUIRE_SHARED(data);
    fixture f;
    load(&f, data);
    qerr_qmodel *q;
    qerr_model *m = quantize_apply(&f, data, spec, NULL, &q);
    assert_int_equal(qerr_qmodel_count(q), 5 * 7);
    assert_non_null(m->rt);
    for (int64_t l = 0; l < m->cfg.layers; l++) assert_non_null(m->rt[l]);
    double got = lib_ppl(m, f.eval, f.ne), want = reference_ppl(&f, spec, q);
    print_message("%s: library %.6f, trainer's deployed blocks %.6f, float %.6f\n", spec, got,
                  want, lib_ppl(f.m, f.eval, f.ne));
    assert_true(fabs(got - want) <= 1e-5 * want);
    qerr_qmodel_free(q);
    qerr_model_free(m);
    unload(&f);
}

static void flatquant_w4a16_matches_trainer(void **state) {
    (void)state;
    check_against_trainer("flatquant:bits=4,epochs=2");
}

static void flatquant_w4a4_matches_trainer(void **state) {
    (void)state;
    check_against_trainer("flatquant:bits=4,a_bits=4,epochs=2");
}

static void flatquant_w4a4kv4_matches_trainer(void **state) {
    (void)state;
    check_against_trainer("flatquant:bits=4,a_bits=4,kv_bits=4,epochs=1");
}

/* The W4A4 RTN baseline is FlatQuant with nothing learned: identity
 * transforms, no scales, no clipping, 0 epochs (symmetric per-channel
 * weights, symmetric per-token activations). */
static void w4a4_flatquant_beats_rtn(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(data);
    fixture f;
    load(&f, data);
    qerr_model *rtn = quantize_apply(
        &f, data, "flatquant:bits=4,a_bits=4,epochs=0,lwc=0,lac=0,diag=0,init=identity", NULL,
        NULL);
    qerr_model *fq = quantize_apply(&f, data, "flatquant:bits=4,a_bits=4,epochs=3", NULL, NULL);
    double p_rtn = lib_ppl(rtn, f.eval, f.ne), p_fq = lib_ppl(fq, f.eval, f.ne);
    double p_fp = lib_ppl(f.m, f.eval, f.ne);
    print_message("W4A4: float %.4f, RTN %.4f, FlatQuant %.4f\n", p_fp, p_rtn, p_fq);
    assert_true(p_fq < p_rtn);
    assert_true(p_fp < p_fq);
    qerr_model_free(rtn);
    qerr_model_free(fq);
    unload(&f);
}

/* An override sends a block down the layer path: "float" keeps its tensors
 * float, the block-wise plan never quantizes a lone tensor, and the other
 * blocks are still block-wise. */
static void overrides_keep_blocks_float(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(data);
    fixture f;
    load(&f, data);
    qerr_qmodel *q;
    qerr_model *m = quantize_apply(&f, data, "flatquant:bits=4,a_bits=4,epochs=0",
                                   "model.layers.1.mlp.*=float;model.layers.3.*=rtn:bits=4", &q);
    /* block 1: attention float too (lone tensors), block 3: rtn */
    assert_int_equal(qerr_qmodel_count(q), 3 * 7 + 7);
    const qerr_result *r;
    assert_int_equal(qerr_qmodel_get(q, "model.layers.1.self_attn.q_proj.weight", &r),
                     QERR_E_NOT_FOUND);
    assert_int_equal(qerr_qmodel_get(q, "model.layers.3.self_attn.q_proj.weight", &r), QERR_OK);
    assert_non_null(strstr(qerr_result_plan(r), "rtn:"));
    assert_non_null(m->rt);
    assert_null(m->rt[1]);
    assert_null(m->rt[3]);
    assert_non_null(m->rt[0]);
    assert_non_null(m->rt[4]);
    qerr__clear_error();
    /* a flatquant override on one tensor is refused with a reason */
    qerr_qmodel *bad = NULL;
    assert_int_equal(qerr_model_quantize(NULL, f.m, "rtn:bits=4", "*.q_proj.weight=flatquant",
                                         f.calib, f.nc, NSEQ, SEQ, &bad),
                     QERR_E_UNSUPPORTED);
    assert_non_null(strstr(qerr_last_error(), "block-wise"));
    assert_null(bad);
    qerr_qmodel_free(q);
    qerr_model_free(m);
    unload(&f);
}

/* omniquant / cqe with scope=block go through the same slot: whole blocks,
 * trained on x_q with the next blocks' float weights (cross-layer), plain
 * results (no run-time state); scope=layer keeps the layer path. */
static void omniquant_block_scope(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(data);
    fixture f;
    load(&f, data);
    static const char *const specs[] = {
        "omniquant:bits=4,scope=block,epochs=1,cross_layer=1,lookahead=2",
        "cqe:bits=4,scope=block,epochs=1",
    };
    for (int k = 0; k < 2; k++) {
        qerr_qmodel *q;
        qerr_model *m = quantize_apply(&f, data, specs[k], NULL, &q);
        assert_int_equal(qerr_qmodel_count(q), 5 * 7);
        assert_null(m->rt);
        const qerr_result *r;
        double mse = -1;
        assert_int_equal(qerr_qmodel_get(q, "model.layers.4.mlp.down_proj.weight", &r), QERR_OK);
        assert_int_equal(qerr_result_diag(r, "block_mse_final", &mse), QERR_OK);
        assert_true(mse >= 0 && isfinite(mse));
        double p = lib_ppl(m, f.eval, f.ne), fp = lib_ppl(f.m, f.eval, f.ne);
        print_message("%s: ppl %.4f (float %.4f), last block mse %.4g\n", specs[k], p, fp, mse);
        assert_true(p > fp && p < 2 * fp);
        qerr_qmodel_free(q);
        qerr_model_free(m);
    }
    unload(&f);
}

/* No run-time state: the forward is the float one, bit for bit. */
static void plain_results_keep_float_forward(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(data);
    fixture f;
    load(&f, data);
    qerr_qmodel *q;
    qerr_model *m = quantize_apply(&f, data, "rtn:bits=8", NULL, &q);
    assert_null(m->rt);
    const int64_t d = m->cfg.hidden, rows = 2 * 32;
    float *a = malloc(sizeof(float) * (size_t)(rows * d)), *b = malloc(sizeof(float) * (size_t)(rows * d));
    assert_int_equal(qerr__embed(m, f.eval, rows, a), QERR_OK);
    memcpy(b, a, sizeof(float) * (size_t)(rows * d));
    for (int64_t l = 0; l < m->cfg.layers; l++) {
        qerr_layer_weights w;
        qerr__model_layer(m, l, &w);
        assert_int_equal(qerr__layer_forward(NULL, &m->cfg, &w, a, 2, 32, NULL, NULL, -1), QERR_OK);
        assert_int_equal(qerr__model_layer_run(NULL, m, l, b, 2, 32), QERR_OK);
    }
    assert_memory_equal(a, b, sizeof(float) * (size_t)(rows * d));
    /* applying a plain qmodel over a FlatQuant one drops the state again */
    qerr_qmodel *fq;
    qerr_model *m2 = quantize_apply(&f, data, "flatquant:bits=4,epochs=0", NULL, &fq);
    assert_non_null(m2->rt);
    assert_int_equal(qerr_model_apply(m2, q), QERR_OK);
    for (int64_t l = 0; l < m2->cfg.layers; l++) assert_null(m2->rt[l]);
    free(a);
    free(b);
    qerr_qmodel_free(q);
    qerr_qmodel_free(fq);
    qerr_model_free(m);
    qerr_model_free(m2);
    unload(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(flatquant_w4a16_matches_trainer),
        cmocka_unit_test(flatquant_w4a4_matches_trainer),
        cmocka_unit_test(flatquant_w4a4kv4_matches_trainer),
        cmocka_unit_test(w4a4_flatquant_beats_rtn),
        cmocka_unit_test(overrides_keep_blocks_float),
        cmocka_unit_test(plain_results_keep_float_forward),
        cmocka_unit_test(omniquant_block_scope),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
