/* libqerr's ggml block codecs against ggml itself: ggml's dequantize_row_*
 * (from a ggml shared library named by $QERR_GGML_LIB, e.g. the
 * libggml-base.so that npm's node-llama-cpp ships) must give bit for bit
 * the values libqerr computes, on libqerr's encodings, on random bytes, and on
 * ggml's own quantizer's output. Skipped when $QERR_GGML_LIB is not set. */
#include "testggml.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*dequant_fn)(const void *x, float *y, int64_t k);
typedef size_t (*quantize_chunk_fn)(int type, const float *src, void *dst, int64_t start,
                                    int64_t nrows, int64_t n_per_row, const float *imatrix);
typedef void (*fp16_row_fn)(const uint16_t *x, float *y, int64_t n);

static void *ggml_lib;

static void *need_lib(void) {
    const char *path = getenv("QERR_GGML_LIB");
    if (!path || !*path) {
        print_message("[  SKIP    ] set QERR_GGML_LIB to a libggml-base.so to run\n");
        return NULL;
    }
    if (!ggml_lib) ggml_lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!ggml_lib) fail_msg("cannot dlopen %s: %s", path, dlerror());
    return ggml_lib;
}

static dequant_fn ggml_dequant(int type) {
    char name[64], lower[8];
    const char *tn = qerr__ggml_type_name(type);
    size_t i = 0;
    for (; tn[i]; i++) lower[i] = tn[i] == 'K' ? 'K' : (char)(tn[i] >= 'A' && tn[i] <= 'Z' ? tn[i] + 32 : tn[i]);
    lower[i] = 0;
    snprintf(name, sizeof name, "dequantize_row_%s", lower);
    dequant_fn f = (dequant_fn)dlsym(ggml_lib, name);
    if (!f) fail_msg("ggml has no %s", name);
    return f;
}

/* Number of values whose bits differ. */
static int64_t bit_diffs(const float *a, const float *b, int64_t n) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], 4) != 0;
    return d;
}

/* Random bytes with finite float16 d/dmin: every block layout bit matters. */
static void test_random_bytes(void **state) {
    (void)state;
    if (!need_lib()) skip();
    const int64_t n = 4096;
    for (int t = 0; t < TG_NQ; t++) {
        size_t rb = qerr__ggml_row_bytes(tg_qtypes[t], n);
        uint8_t *buf = malloc(rb);
        float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
        tg_random_row(tg_qtypes[t], buf, rb, 0x9e3779b97f4a7c15ull * (uint64_t)(t + 1));
        ggml_dequant(tg_qtypes[t])(buf, a, n);
        assert_int_equal(qerr__ggml_dequantize_row(tg_qtypes[t], buf, n, b), QERR_OK);
        int64_t d = bit_diffs(a, b, n);
        print_message("random bytes %-5s: %lld of %lld values differ\n",
                      qerr__ggml_type_name(tg_qtypes[t]), (long long)d, (long long)n);
        assert_int_equal(d, 0);
        free(buf); free(a); free(b);
    }
}

/* libqerr's "ggml" results: their bytes dequantized by ggml equal
 * qerr_result_dequantize bit for bit; ggml's own quantizer (with an imatrix)
 * dequantizes identically in both. */
static void test_results_and_ggml_quantizer(void **state) {
    (void)state;
    if (!need_lib()) skip();
    quantize_chunk_fn qchunk = (quantize_chunk_fn)dlsym(ggml_lib, "ggml_quantize_chunk");
    assert_non_null(qchunk);
    const int64_t rows = 16, cols = 512;
    qerr_tensor *w = tu_weight(rows, cols, 7);
    qerr_calib *c = tu_correlated_calib(2048, cols, 0.3, 11);
    const float *W = qerr_tensor_data(w);
    float *imat = malloc(cols * sizeof(float));
    for (int64_t j = 0; j < cols; j++) imat[j] = 1.0f + (float)(j % 7);
    static const char *solvers[] = {"rtn", "gptq", "quantease"};
    for (int t = 0; t < TG_NQ; t++) {
        size_t rb = qerr__ggml_row_bytes(tg_qtypes[t], cols);
        uint8_t *bytes = malloc(rb * rows);
        float *a = malloc(rows * cols * sizeof(float)), *b = malloc(rows * cols * sizeof(float));
        for (int sv = 0; sv < 3; sv++) {
            char spec[128], lower[8];
            snprintf(spec, sizeof spec, "ggml:type=%s,solver=%s", tg_lower(tg_qtypes[t], lower),
                     solvers[sv]);
            qerr_result *r = tu_quantize(spec, w, c);
            assert_int_equal(qerr__ggml_encode_result(r, tg_qtypes[t], bytes, rb * rows), QERR_OK);
            assert_int_equal(qerr_result_dequantize(r, a, rows * cols), QERR_OK);
            dequant_fn f = ggml_dequant(tg_qtypes[t]);
            for (int64_t i = 0; i < rows; i++) f(bytes + i * rb, b + i * cols, cols);
            int64_t d = bit_diffs(a, b, rows * cols);
            print_message("%-34s: ggml's dequantization differs in %lld of %lld values\n", spec,
                          (long long)d, (long long)(rows * cols));
            assert_int_equal(d, 0);
            qerr_result_free(r);
        }
        size_t got = qchunk(tg_qtypes[t], W, bytes, 0, rows, cols, imat);
        assert_int_equal(got, rb * rows);
        dequant_fn f = ggml_dequant(tg_qtypes[t]);
        for (int64_t i = 0; i < rows; i++) {
            f(bytes + i * rb, a + i * cols, cols);
            assert_int_equal(qerr__ggml_dequantize_row(tg_qtypes[t], bytes + i * rb, cols, b + i * cols),
                             QERR_OK);
        }
        assert_int_equal(bit_diffs(a, b, rows * cols), 0);
        free(bytes); free(a); free(b);
    }
    free(imat);
    qerr_calib_free(c);
    qerr_tensor_free(w);
}

static void test_f16(void **state) {
    (void)state;
    if (!need_lib()) skip();
    fp16_row_fn f = (fp16_row_fn)dlsym(ggml_lib, "ggml_fp16_to_fp32_row");
    assert_non_null(f);
    uint16_t *h = malloc(65536 * 2);
    float *a = malloc(65536 * 4), *b = malloc(65536 * 4);
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    f(h, a, 65536);
    assert_int_equal(qerr__ggml_dequantize_row(QERR_GGML_F16, h, 65536, b), QERR_OK);
    int64_t d = 0;
    for (int i = 0; i < 65536; i++)
        if (!(isnan(a[i]) && isnan(b[i]))) d += memcmp(&a[i], &b[i], 4) != 0;
    print_message("F16: %lld of 65536 values differ (NaN payloads aside)\n", (long long)d);
    assert_int_equal(d, 0);
    free(h); free(a); free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_results_and_ggml_quantizer),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (ggml_lib) dlclose(ggml_lib);
    return rc;
}
