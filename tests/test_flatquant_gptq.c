/* FlatQuant with weight_quantizer=gptq on stories260k: after training and
 * folding, GPTQ (H of each weight's transformed, activation-quantized input,
 * true-sequential in the block) replaces RTN. The result keeps FlatQuant's
 * extras, round-trips through the container, applies, lies on a symmetric
 * 4-bit grid, and its perplexity is no worse than RTN's on the same
 * transforms (same seed, so the training is identical) at W4A16 and W4A4. */
#include "testutil.h"
#include "model_testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const int64_t NSEQ = 8, SEQ = 64; /* calibration windows */
static const int64_t CTX = 256, NWIN = 8; /* evaluation: 8 windows of 256 */

static qerr_model *load_model(const char *data) {
    char path[1024];
    snprintf(path, sizeof path, "%s/stories260k", data);
    qerr_model *m;
    assert_int_equal(qerr_model_load(&m, path), QERR_OK);
    return m;
}

static uint32_t *load_tokens(const char *data, const char *file, int64_t *n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/stories260k/%s", data, file);
    uint32_t *t;
    assert_int_equal(qerr_tokens_read(path, &t, n), QERR_OK);
    return t;
}

/* Quantize, save, load back. */
static qerr_qmodel *quantize_roundtrip(const qerr_model *m, const char *spec, const uint32_t *calib,
                                       int64_t nc) {
    qerr_ctx *ctx;
    assert_int_equal(qerr_ctx_create(&ctx), QERR_OK);
    qerr_qmodel *q = NULL;
    int rc = qerr_model_quantize(ctx, m, spec, NULL, calib, nc, NSEQ, SEQ, &q);
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
    return q;
}

static double ppl_of(const char *data, const qerr_qmodel *q, const uint32_t *eval, int64_t ne) {
    qerr_model *m = load_model(data);
    assert_int_equal(qerr_model_apply(m, q), QERR_OK);
    double ppl = 0;
    assert_int_equal(qerr_model_perplexity(NULL, m, eval, ne, CTX, NWIN, &ppl, NULL, NULL),
                     QERR_OK);
    qerr_model_free(m);
    return ppl;
}

/* Every gptq result: 4 bits, zero 8 (symmetric), codes in [0, 15],
 * dequantized = scale * (code - 8), the same extras as the RTN twin, and the
 * weight_gptq diagnostic set. Returns the summed codes that differ from RTN. */
static int64_t check_grid(const qerr_qmodel *qg, const qerr_qmodel *qr) {
    assert_int_equal(qerr_qmodel_count(qg), qerr_qmodel_count(qr));
    int64_t differ = 0;
    for (int k = 0; k < qerr_qmodel_count(qg); k++) {
        const char *name = qerr_qmodel_name(qg, k);
        const qerr_result *g, *r;
        assert_int_equal(qerr_qmodel_get(qg, name, &g), QERR_OK);
        assert_int_equal(qerr_qmodel_get(qr, name, &r), QERR_OK);
        assert_int_equal(qerr_result_bits(g), 4);
        assert_int_equal(qerr_result_extra_count(g), qerr_result_extra_count(r));
        double flag = -1;
        assert_int_equal(qerr_result_diag(g, "weight_gptq", &flag), QERR_OK);
        assert_true(flag == 1);
        const int64_t rows = qerr_result_rows(g), cols = qerr_result_cols(g);
        const int64_t ng = qerr_result_groups(g), gs = qerr_result_group_size(g);
        uint8_t *cg = malloc((size_t)(rows * cols)), *cr = malloc((size_t)(rows * cols));
        float *s = malloc((size_t)(rows * ng) * sizeof(float));
        int32_t *z = malloc((size_t)(rows * ng) * sizeof(int32_t));
        float *dq = malloc((size_t)(rows * cols) * sizeof(float));
        assert_true(cg && cr && s && z && dq);
        assert_int_equal(qerr_result_codes(g, cg, (size_t)(rows * cols)), QERR_OK);
        assert_int_equal(qerr_result_codes(r, cr, (size_t)(rows * cols)), QERR_OK);
        assert_int_equal(qerr_result_scales(g, s, (size_t)(rows * ng)), QERR_OK);
        assert_int_equal(qerr_result_zeros(g, z, (size_t)(rows * ng)), QERR_OK);
        assert_int_equal(qerr_result_dequantize(g, dq, (size_t)(rows * cols)), QERR_OK);
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                int64_t e = i * ng + j / gs;
                assert_int_equal(z[e], 8);
                assert_true(cg[i * cols + j] <= 15);
                float want = s[e] * (float)((int)cg[i * cols + j] - 8);
                assert_true(fabsf(dq[i * cols + j] - want) <= 1e-6f * fabsf(s[e]) * 8);
                differ += cg[i * cols + j] != cr[i * cols + j];
            }
        free(cg);
        free(cr);
        free(s);
        free(z);
        free(dq);
    }
    return differ;
}

static void gptq_vs_rtn(const char *wa) {
    TU_REQUIRE_SHARED(data);
    qerr_model *m = load_model(data);
    int64_t nc, ne;
    uint32_t *calib = load_tokens(data, "calib.u32", &nc);
    uint32_t *eval = load_tokens(data, "eval.u32", &ne);
    assert_true(ne >= NWIN * CTX);
    char spec_r[160], spec_g[160];
    snprintf(spec_r, sizeof spec_r, "flatquant:bits=4,%s,epochs=2", wa);
    snprintf(spec_g, sizeof spec_g, "%s,weight_quantizer=gptq", spec_r);
    qerr_qmodel *qr = quantize_roundtrip(m, spec_r, calib, nc);
    qerr_qmodel *qg = quantize_roundtrip(m, spec_g, calib, nc);
    int64_t differ = check_grid(qg, qr);
    double pr = ppl_of(data, qr, eval, ne), pg = ppl_of(data, qg, eval, ne);
    double fp = 0;
    assert_int_equal(qerr_model_perplexity(NULL, m, eval, ne, CTX, NWIN, &fp, NULL, NULL), QERR_OK);
    print_message("%s: ppl float %.4f, rtn %.4f, gptq %.4f (%lld codes differ)\n", wa, fp, pr, pg,
                  (long long)differ);
    assert_true(differ > 0); /* GPTQ really ran */
    assert_true(pg <= pr * (1 + 1e-3));
    assert_true(pg > fp * 0.99);
    qerr_qmodel_free(qr);
    qerr_qmodel_free(qg);
    qerr_free(calib);
    qerr_free(eval);
    qerr_model_free(m);
}

static void w4a16_gptq_not_worse(void **state) {
    (void)state;
    gptq_vs_rtn("a_bits=16");
}

static void w4a4_gptq_not_worse(void **state) {
    (void)state;
    gptq_vs_rtn("a_bits=4");
}

/* An unknown weight_quantizer is a plan error, not a crash. */
static void bad_choice_rejected(void **state) {
    (void)state;
    qerr_plan *p = NULL;
    assert_int_not_equal(qerr_plan_parse(&p, "flatquant:weight_quantizer=awq"), QERR_OK);
    assert_null(p);
    assert_int_equal(qerr_plan_parse(&p, "flatquant:weight_quantizer=gptq"), QERR_OK);
    qerr_plan_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(w4a16_gptq_not_worse),
        cmocka_unit_test(w4a4_gptq_not_worse),
        cmocka_unit_test(bad_choice_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
