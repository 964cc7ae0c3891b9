/* Method "ggml": results lie on the exact ggml grid (their bytes dequantize to
 * the result's values bit for bit), the full-H solvers beat rounding onto the
 * same H-weighted grids, calibration-free and identity-H runs work, the
 * offsets survive the .qerr container, and bad input gets a status. */
#include "io/ggml_blocks.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const tnames[] = {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0",
                                     "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"};
#define NT 10

/* The bytes of r dequantize (codec) to qerr_result_dequantize's values. */
static void assert_on_grid(const qerr_result *r, int type) {
    const int64_t rows = qerr_result_rows(r), cols = qerr_result_cols(r);
    const size_t rb = qerr__ggml_row_bytes(type, cols);
    uint8_t *bytes = malloc(rb * (size_t)rows);
    float *a = malloc(sizeof(float) * (size_t)(rows * cols)),
          *b = malloc(sizeof(float) * (size_t)(rows * cols));
    assert_int_equal(qerr__ggml_encode_result(r, type, bytes, rb * (size_t)rows), QERR_OK);
    assert_int_equal(qerr_result_dequantize(r, a, (size_t)(rows * cols)), QERR_OK);
    for (int64_t i = 0; i < rows; i++)
        assert_int_equal(qerr__ggml_dequantize_row(type, bytes + (size_t)i * rb, cols, b + i * cols),
                         QERR_OK);
    assert_memory_equal(a, b, sizeof(float) * (size_t)(rows * cols));
    free(bytes);
    free(a);
    free(b);
}

static void test_on_grid_every_type(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(8, 512, 21);
    qerr_calib *c = tu_correlated_calib(1024, 512, 0.4, 5);
    for (int t = 0; t < NT; t++) {
        static const char *const solvers[] = {"rtn", "gptq", "quantease"};
        for (int s = 0; s < 3; s++) {
            char spec[96];
            snprintf(spec, sizeof spec, "ggml:type=%s,solver=%s", tnames[t], solvers[s]);
            qerr_result *r = tu_quantize(spec, w, c);
            assert_on_grid(r, qerr__ggml_type_from_name(tnames[t]));
            double bpw = 8.0 * (double)qerr__ggml_block_bytes(qerr__ggml_type_from_name(tnames[t])) /
                         (double)qerr__ggml_block_elems(qerr__ggml_type_from_name(tnames[t]));
            assert_true(fabs(qerr_result_bits_per_weight(r) - bpw) < 1e-12);
            qerr_result_free(r);
        }
    }
    qerr_calib_free(c);
    qerr_tensor_free(w);
}

/* GPTQ on the grid beats rounding onto the H-weighted grids, QuantEase
 * sweeps never lose to their GPTQ start, at every k-quant and Q4_0. */
static void test_objective_order(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(32, 512, 8);
    qerr_calib *c = tu_correlated_calib(2048, 512, 0.5, 9);
    static const char *const types[] = {"q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q4_0"};
    for (int t = 0; t < 6; t++) {
        double e[3];
        static const char *const solvers[] = {"rtn", "gptq", "quantease"};
        for (int s = 0; s < 3; s++) {
            char spec[96];
            snprintf(spec, sizeof spec, "ggml:type=%s,solver=%s", types[t], solvers[s]);
            qerr_result *r = tu_quantize(spec, w, c);
            e[s] = tu_layer_error(w, r, c);
            qerr_result_free(r);
        }
        print_message("%s: rtn %.3e gptq %.3e quantease %.3e\n", types[t], e[0], e[1], e[2]);
        assert_true(e[1] < 0.8 * e[0]);
        assert_true(e[2] <= e[1] * (1 + 1e-6));
    }
    /* refit rounds are kept only when they lower the objective */
    qerr_result *r0 = tu_quantize("ggml:type=q3_k,sweeps=3", w, c);
    qerr_result *r1 = tu_quantize("ggml:type=q3_k,sweeps=3,refit=2", w, c);
    double e0 = tu_layer_error(w, r0, c), e1 = tu_layer_error(w, r1, c), kept;
    assert_int_equal(qerr_result_diag(r1, "refit_rounds", &kept), QERR_OK);
    print_message("q3_k sweeps=3: %.4e, with refit=2: %.4e (%g rounds kept)\n", e0, e1, kept);
    assert_true(e1 <= e0 * (1 + 1e-6));
    assert_true(kept == 0 || e1 < e0);
    assert_on_grid(r1, QERR_GGML_Q3_K);
    qerr_result_free(r0);
    qerr_result_free(r1);
    qerr_calib_free(c);
    qerr_tensor_free(w);
}

/* The H-weighted fit (solver=rtn) beats the unweighted fit when the input
 * scales differ a lot between columns. */
static void test_weighted_fit(void **state) {
    (void)state;
    const int64_t n = 256;
    double *H = calloc((size_t)(n * n), sizeof(double));
    for (int64_t j = 0; j < n; j++) H[j * n + j] = (j % 16 == 0) ? 100.0 : 0.01;
    qerr_calib *ch, *ci;
    assert_int_equal(qerr_calib_from_gram(&ch, H, n, 1000), QERR_OK);
    for (int64_t j = 0; j < n; j++) H[j * n + j] = 1.0;
    assert_int_equal(qerr_calib_from_gram(&ci, H, n, 1000), QERR_OK);
    qerr_tensor *w = tu_weight(16, n, 4);
    qerr_result *rw = tu_quantize("ggml:type=q3_k,solver=rtn", w, ch);
    qerr_result *ru = tu_quantize("ggml:type=q3_k,solver=rtn", w, ci);
    qerr_result *rn = tu_quantize("ggml:type=q3_k", w, NULL);
    double ew = tu_layer_error(w, rw, ch), eu = tu_layer_error(w, ru, ch);
    print_message("weighted fit %.3e, unweighted %.3e\n", ew, eu);
    assert_true(ew < 0.7 * eu);
    /* no calibration = identity weights: same as H = I */
    uint8_t *a = malloc(16 * n), *b = malloc(16 * n);
    qerr_result_codes(ru, a, 16 * n);
    qerr_result_codes(rn, b, 16 * n);
    assert_memory_equal(a, b, 16 * n);
    assert_on_grid(rn, QERR_GGML_Q3_K);
    free(a); free(b);
    qerr_result_free(rw); qerr_result_free(ru); qerr_result_free(rn);
    qerr_tensor_free(w);
    qerr_calib_free(ch);
    qerr_calib_free(ci);
    free(H);
}

/* Identity H through the full solvers (tensors without calibration). */
static void test_identity_gram(void **state) {
    (void)state;
    const int64_t n = 256;
    double *H = calloc((size_t)(n * n), sizeof(double));
    for (int64_t j = 0; j < n; j++) H[j * n + j] = 1.0;
    qerr_calib *c;
    assert_int_equal(qerr_calib_from_gram(&c, H, n, 1), QERR_OK);
    qerr_tensor *w = tu_weight(8, n, 6);
    qerr_result *r = tu_quantize("ggml:type=q4_k,solver=quantease", w, c);
    assert_on_grid(r, QERR_GGML_Q4_K);
    qerr_result_free(r);
    qerr_calib_free(c);
    /* H = 0 (every column dead): still a valid result on the grid */
    memset(H, 0, sizeof(double) * (size_t)(n * n));
    assert_int_equal(qerr_calib_from_gram(&c, H, n, 1), QERR_OK);
    r = tu_quantize("ggml:type=q5_k,solver=quantease,refit=1", w, c);
    assert_on_grid(r, QERR_GGML_Q5_K);
    qerr_result_free(r);
    qerr_tensor_free(w);
    qerr_calib_free(c);
    free(H);
}

static void test_container_keeps_offsets(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(4, 256, 2);
    qerr_result *r = tu_quantize("ggml:type=q2_k", w, NULL);
    qerr_qmodel *q, *back;
    assert_int_equal(qerr_qmodel_create(&q), QERR_OK);
    float *a = malloc(4 * 256 * 4), *b = malloc(4 * 256 * 4), *m = malloc(4 * 16 * 4);
    assert_int_equal(qerr_result_dequantize(r, a, 4 * 256), QERR_OK);
    assert_int_equal(qerr_result_mins(r, m, 4 * 16), QERR_OK);
    bool any = false;
    for (int i = 0; i < 64; i++) any |= m[i] != 0;
    assert_true(any);
    assert_int_equal(qerr_qmodel_add(q, "x.weight", r), QERR_OK);
    char path[] = "/tmp/qerr_ggml_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(qerr_qmodel_save(q, path), QERR_OK);
    assert_int_equal(qerr_qmodel_load(&back, path), QERR_OK);
    remove(path);
    const qerr_result *rb;
    assert_int_equal(qerr_qmodel_get(back, "x.weight", &rb), QERR_OK);
    assert_int_equal(qerr_result_dequantize(rb, b, 4 * 256), QERR_OK);
    assert_memory_equal(a, b, 4 * 256 * 4);
    assert_on_grid(rb, QERR_GGML_Q2_K);
    /* a result without offsets reads them as 0 */
    qerr_result *plain = tu_quantize("rtn:bits=4", w, NULL);
    assert_int_equal(qerr_result_mins(plain, m, 4), QERR_OK);
    for (int i = 0; i < 4; i++) assert_true(m[i] == 0.0f);
    assert_int_equal(qerr_result_mins(plain, m, 3), QERR_E_SHAPE);
    qerr_result_free(plain);
    free(a); free(b); free(m);
    qerr_qmodel_free(q);
    qerr_qmodel_free(back);
    qerr_tensor_free(w);
}

static void test_bad_input(void **state) {
    (void)state;
    qerr_plan *p = NULL;
    assert_int_not_equal(qerr_plan_parse(&p, "ggml:type=q4_k_m"), QERR_OK);
    assert_non_null(strstr(qerr_last_error(), "q4_k_m"));
    assert_int_equal(qerr_plan_parse(&p, "ggml:type=q4_k"), QERR_OK);
    qerr_tensor *w = tu_weight(4, 288, 1);
    qerr_result *r = NULL;
    assert_int_equal(qerr_quantize(NULL, p, w, NULL, &r), QERR_E_SHAPE);
    assert_null(r);
    assert_non_null(strstr(qerr_last_error(), "256"));
    qerr_tensor_free(w);
    w = tu_weight(4, 256, 1);
    ((float *)qerr_tensor_data(w))[17] = NAN;
    assert_int_equal(qerr_quantize(NULL, p, w, NULL, &r), QERR_E_NONFINITE);
    assert_null(r);
    qerr_tensor_free(w);
    qerr_plan_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_on_grid_every_type),
        cmocka_unit_test(test_objective_order),
        cmocka_unit_test(test_weighted_fit),
        cmocka_unit_test(test_identity_gram),
        cmocka_unit_test(test_container_keeps_offsets),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
