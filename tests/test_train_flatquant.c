/* FlatQuant block training on a real block of stories260k: training lowers
 * the block MSE (first epoch -> last, and init -> final, and beats plain RTN
 * fake-quantization); the folded, quantized block run as an engine would
 * (online X P, per-token activation quantization) reproduces the trained
 * block; bad input gets a clear status. */
#include "testutil.h"

#include "methods/method.h"
#include "methods/flatquant/flatquant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    qerr_model *m;
    qerr_block_config cfg;
    qerr_block_weights_f w;
    float *x;
    int64_t nseq, seq;
} fixture;

/* Float inputs of block `layer` for nseq windows of seq calibration tokens. */
static void load(fixture *f, const char *dir, const char *model, int64_t layer, int64_t nseq,
                 int64_t seq) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, model);
    assert_int_equal(qerr_model_load(&f->m, path), QERR_OK);
    snprintf(path, sizeof path, "%s/%s/calib.u32", dir, model);
    uint32_t *tok;
    int64_t ntok;
    assert_int_equal(qerr_tokens_read(path, &tok, &ntok), QERR_OK);
    assert_true(ntok >= nseq * seq);
    f->nseq = nseq;
    f->seq = seq;
    qerr__block_config_from_model(&f->m->cfg, &f->cfg);
    f->x = malloc(sizeof(float) * (size_t)(nseq * seq * f->cfg.hidden));
    assert_int_equal(qerr__embed(f->m, tok, nseq * seq, f->x), QERR_OK);
    qerr_layer_weights lw;
    for (int64_t l = 0; l < layer; l++) {
        qerr__model_layer(f->m, l, &lw);
        assert_int_equal(qerr__layer_forward(NULL, &f->m->cfg, &lw, f->x, nseq, seq, NULL, NULL, -1),
                         QERR_OK);
    }
    qerr__model_layer(f->m, layer, &lw);
    qerr__block_weights_from_layer(&lw, &f->w);
    qerr_free(tok);
}

static void unload(fixture *f) {
    free(f->x);
    qerr_model_free(f->m);
}

static void run(const char *dir, int64_t layer, int a_bits, int kv_bits, int epochs) {
    fixture f;
    load(&f, dir, "stories260k", layer, 16, 64);
    qerr_flatquant_opts o;
    qerr__flatquant_opts_default(&o);
    o.a_bits = a_bits;
    o.kv_bits = kv_bits;
    o.epochs = epochs;
    qerr_flatquant_block *b;
    assert_int_equal(qerr__flatquant_train_block(NULL, &f.cfg, &f.w, f.x, f.nseq, f.seq, &o, &b),
                     QERR_OK);
    print_message("stories260k block %lld W4A%dKV%d, %d epochs x %lld steps (%.1f s): block MSE "
                  "rtn %.4g, init %.4g, epoch 1 %.4g, epoch %d %.4g, final %.4g\n",
                  (long long)layer, a_bits, kv_bits, epochs, (long long)(f.nseq / o.batch), b->seconds,
                  b->mse_rtn, b->mse_init, b->epoch_mse[0], epochs, b->epoch_mse[epochs - 1],
                  b->mse_final);
    assert_true(b->epoch_mse[epochs - 1] < b->epoch_mse[0]);
    assert_true(b->mse_final < b->mse_init);
    assert_true(b->mse_final < b->mse_rtn);

    /* fold, quantize, run as deployed; compare with the trained block */
    qerr_flatquant_folded fo;
    assert_int_equal(qerr__flatquant_fold(b, &f.w, &fo), QERR_OK);
    float *wq[QERR_LIN_COUNT];
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        int64_t rows, cols;
        qerr__block_linear_shape(&f.cfg, l, &rows, &cols);
        qerr_result *r;
        assert_int_equal(qerr__flatquant_rtn(fo.w[l], rows, cols, 4, -1, &r), QERR_OK);
        wq[l] = malloc(sizeof(float) * (size_t)(rows * cols));
        assert_int_equal(qerr_result_dequantize(r, wq[l], (size_t)(rows * cols)), QERR_OK);
        qerr_result_free(r);
    }
    qerr_block_cache_f *c;
    const int64_t bs = 4, n = bs * f.seq * f.cfg.hidden;
    assert_int_equal(qerr__block_cache_create_f(&f.cfg, bs, f.seq, &c), QERR_OK);
    float *yt = malloc(sizeof(float) * (size_t)n), *yd = malloc(sizeof(float) * (size_t)n);
    assert_int_equal(qerr__block_forward_f(c, &f.w, NULL, f.x, yt), QERR_OK);
    assert_int_equal(qerr__flatquant_deployed_forward(&f.cfg, &fo, (const float *const *)wq, c,
                                                      f.x, yd),
                     QERR_OK);
    float *yq = malloc(sizeof(float) * (size_t)n);
    assert_int_equal(qerr__flatquant_block_forward(b, &f.w, c, f.x, yq), QERR_OK);
    double mse = 0, gap = 0, ref = 0;
    for (int64_t i = 0; i < n; i++) {
        mse += ((double)yd[i] - yt[i]) * ((double)yd[i] - yt[i]);
        ref += ((double)yq[i] - yt[i]) * ((double)yq[i] - yt[i]);
        gap += ((double)yd[i] - yq[i]) * ((double)yd[i] - yq[i]);
    }
    mse /= (double)n;
    ref /= (double)n;
    gap /= (double)n;
    print_message("  first batch: trained block MSE %.4g, deployed (folded, RTN-quantized, "
                  "online X P) %.4g, mean sq. gap deployed vs trained %.3g\n",
                  ref, mse, gap);
    /* the deployed block reproduces the trained one: the gap is far below
     * the quantization error (a few codes round the other way after the
     * float64 fold) */
    assert_true(gap < 1e-3 * ref);
    assert_true(mse < b->mse_rtn);
    free(yq);
    free(yt); free(yd);
    qerr__block_cache_free_f(c);
    for (int l = 0; l < QERR_LIN_COUNT; l++) free(wq[l]);
    qerr__flatquant_folded_free(&fo);
    qerr__flatquant_block_free(b);
    unload(&f);
}

static void w4a16_block(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(dir);
    run(dir, 2, 16, 16, 15);
}

static void w4a4_block(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(dir);
    run(dir, 2, 4, 16, 15);
}

static void w4a4kv4_block(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(dir);
    run(dir, 2, 4, 4, 15);
}

/* The recipe at a larger scale, for docs/flatquant.md; runs only with
 * QERR_FLATQUANT_LONG=1 (about a minute per setting). */
static void tiny_llama_block(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(dir);
    if (!getenv("QERR_FLATQUANT_LONG")) {
        print_message("[  SKIP    ] set QERR_FLATQUANT_LONG=1 to run\n");
        skip();
    }
    const int abits[2] = {16, 4};
    for (int k = 0; k < 2; k++) {
        fixture f;
        load(&f, dir, "tiny-llama", 3, 32, 256);
        qerr_flatquant_opts o;
        qerr__flatquant_opts_default(&o);
        o.a_bits = abits[k];
        qerr_flatquant_block *b;
        assert_int_equal(
            qerr__flatquant_train_block(NULL, &f.cfg, &f.w, f.x, f.nseq, f.seq, &o, &b), QERR_OK);
        print_message("tiny-llama block 3 W4A%d (32 x 256 tokens, batch 4, 15 epochs, %.1f s): "
                      "rtn %.5g init %.5g final %.5g; per epoch:",
                      abits[k], b->seconds, b->mse_rtn, b->mse_init, b->mse_final);
        for (int e = 0; e < b->epochs_done; e++) print_message(" %.5g", b->epoch_mse[e]);
        print_message("\n");
        assert_true(b->epoch_mse[b->epochs_done - 1] < b->epoch_mse[0]);
        qerr__flatquant_block_free(b);
        unload(&f);
    }
}

extern const qerr_method qerr__flatquant_method;

/* The method's block-level entry: plan keys -> trained, folded, quantized
 * results with the online factors and folded norms attached. */
static void method_entry(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(dir);
    const qerr_method *m = &qerr__flatquant_method;
    qerr_plan plan;
    memset(&plan, 0, sizeof plan);
    plan.method = m;
    for (int i = 0; i < m->nparams; i++) plan.values[i] = m->params[i].def;
    qerr_flatquant_opts o;
    assert_int_equal(qerr__flatquant_opts_from_plan(&plan, 0, &o), QERR_OK);
    assert_true(o.w_bits == 4 && o.a_bits == 16 && o.epochs == 15 && o.batch == 4 &&
                o.lr == 5e-3 && o.clip_lr == 5e-2 && o.lwc && o.lac && o.diag && !o.identity_init);
    for (int i = 0; i < m->nparams; i++) {
        if (strcmp(m->params[i].key, "epochs") == 0) plan.values[i] = 4;
        if (strcmp(m->params[i].key, "a_bits") == 0) plan.values[i] = 4;
    }
    fixture f;
    load(&f, dir, "stories260k", 1, 8, 64);
    qerr_result *r[QERR_LIN_COUNT];
    assert_int_equal(
        qerr__flatquant_quantize_block(NULL, &plan, &f.cfg, &f.w, f.x, f.nseq, f.seq, r), QERR_OK);
    const int extras[QERR_LIN_COUNT] = {4, 0, 0, 3, 4, 0, 3};
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        assert_non_null(r[l]);
        assert_int_equal(qerr_result_bits(r[l]), 4);
        assert_int_equal(qerr_result_extra_count(r[l]), extras[l]);
        double rtn, fin;
        assert_int_equal(qerr_result_diag(r[l], "block_mse_rtn", &rtn), QERR_OK);
        assert_int_equal(qerr_result_diag(r[l], "block_mse_final", &fin), QERR_OK);
        assert_true(fin < rtn);
        /* codes use the symmetric grid: zero point 2^(b-1) */
        size_t nz = (size_t)(qerr_result_rows(r[l]) * qerr_result_groups(r[l]));
        int32_t *z = malloc(sizeof(int32_t) * nz);
        assert_int_equal(qerr_result_zeros(r[l], z, nz), QERR_OK);
        for (size_t k = 0; k < nz; k++) assert_int_equal(z[k], 8);
        free(z);
        qerr_result_free(r[l]);
    }
    /* layer-level use is refused with a reason */
    qerr_result *one = (void *)1;
    qerr_method_call call = {qerr__default_ctx(), &plan, f.w.w[0], 64, 64, NULL, 0, NULL};
    assert_int_equal(m->quantize(&call, &one), QERR_E_UNSUPPORTED);
    assert_null(one);
    unload(&f);
}

static void bad_input(void **state) {
    (void)state;
    const qerr_block_config cfg = {8, 12, 4, 2, 4, 1e-5, 10000.0};
    float w0[256] = {0}, ln[8] = {1, 1, 1, 1, 1, 1, 1, 1}, x[80] = {0};
    qerr_block_weights_f w;
    for (int l = 0; l < QERR_LIN_COUNT; l++) w.w[l] = w0;
    w.ln1 = w.ln2 = ln;
    qerr_flatquant_opts o;
    qerr__flatquant_opts_default(&o);
    qerr_flatquant_block *b = (void *)1;
    assert_int_equal(qerr__flatquant_train_block(NULL, &cfg, &w, x, 0, 10, &o, &b),
                     QERR_E_INVALID_ARG);
    assert_null(b);
    assert_non_null(strstr(qerr_last_error(), "no calibration data"));
    o.w_bits = 9;
    assert_int_equal(qerr__flatquant_train_block(NULL, &cfg, &w, x, 1, 10, &o, &b), QERR_E_RANGE);
    o.w_bits = 4;
    o.a_bits = 12;
    assert_int_equal(qerr__flatquant_train_block(NULL, &cfg, &w, x, 1, 10, &o, &b), QERR_E_RANGE);
    o.a_bits = 16;
    qerr_block_config prime = cfg;
    prime.inter = 13; /* down_proj input cannot be factored */
    assert_int_equal(qerr__flatquant_train_block(NULL, &prime, &w, x, 1, 10, &o, &b), QERR_E_SHAPE);
    x[3] = NAN;
    assert_int_equal(qerr__flatquant_train_block(NULL, &cfg, &w, x, 1, 10, &o, &b),
                     QERR_E_NONFINITE);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_input),
        cmocka_unit_test(w4a16_block),
        cmocka_unit_test(w4a4_block),
        cmocka_unit_test(w4a4kv4_block),
        cmocka_unit_test(method_entry),
        cmocka_unit_test(tiny_llama_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
