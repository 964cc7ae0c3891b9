/* scale_dtype=f16: every scale of rtn, gptq, quantease and quantease_outlier
 * is a float16 value, fitted before the codes are chosen (RTN's codes are
 * the nearest points of the float16 grid); zero points stay integers in the
 * codes' range, also for ranges beyond float16's; the default (f32) is
 * unchanged; bad values are refused. */
#include "testutil.h"
#include "core/internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_f16(float s) { return qerr__f16_to_f32(qerr__f32_to_f16(s)) == s; }

typedef struct {
    int64_t rows, cols, groups;
    float *scales;
    int32_t *zeros;
    uint8_t *codes;
} grid_view;

static grid_view view(const qerr_result *r) {
    grid_view g = {qerr_result_rows(r), qerr_result_cols(r), qerr_result_groups(r), NULL, NULL,
                   NULL};
    size_t ng = (size_t)(g.rows * g.groups), nw = (size_t)(g.rows * g.cols);
    g.scales = malloc(ng * sizeof *g.scales);
    g.zeros = malloc(ng * sizeof *g.zeros);
    g.codes = malloc(nw);
    assert_true(g.scales && g.zeros && g.codes);
    assert_int_equal(qerr_result_scales(r, g.scales, ng), QERR_OK);
    assert_int_equal(qerr_result_zeros(r, g.zeros, ng), QERR_OK);
    assert_int_equal(qerr_result_codes(r, g.codes, nw), QERR_OK);
    return g;
}

static void unview(grid_view *g) {
    free(g->scales);
    free(g->zeros);
    free(g->codes);
}

/* How many scales are not float16 values; fails on a zero point outside
 * the codes' range or a scale that is not positive and finite. */
static int64_t inexact_scales(const qerr_result *r) {
    grid_view g = view(r);
    const int32_t maxq = (1 << qerr_result_bits(r)) - 1;
    int64_t n = 0;
    for (int64_t i = 0; i < g.rows * g.groups; i++) {
        if (!(g.scales[i] > 0 && isfinite(g.scales[i])))
            fail_msg("scale %lld is %g", (long long)i, (double)g.scales[i]);
        if (g.zeros[i] < 0 || g.zeros[i] > maxq)
            fail_msg("zero point %lld is %d", (long long)i, g.zeros[i]);
        n += !is_f16(g.scales[i]);
    }
    unview(&g);
    return n;
}

static void every_scale_is_float16(void **state) {
    (void)state;
    const int64_t rows = 64, cols = 256;
    qerr_tensor *w = tu_weight(rows, cols, 11);
    qerr_calib *c = tu_correlated_calib(1024, cols, 0.5, 12);
    const char *const plans[] = {
        "rtn:bits=4,group_size=64",
        "rtn:bits=3,group_size=-1,clip_search=1",
        "rtn:bits=4,group_size=32,symmetric=1",
        "gptq:bits=4,group_size=64",
        "gptq:bits=3,group_size=64,act_order=1,static_groups=1",
        "gptq:bits=4,group_size=-1,clip_search=1,symmetric=1",
        "gptq:bits=2,group_size=32,act_order=1",
        "quantease:bits=4,group_size=64,iterations=4",
        "quantease:bits=3,group_size=64,init=gptq,iterations=3",
        "quantease_outlier:bits=3,group_size=64,iterations=4",
        "quantease_outlier:bits=4,group_size=64,iterations=3,outlier_mode=structured",
    };
    for (size_t i = 0; i < sizeof plans / sizeof plans[0]; i++) {
        char spec[256];
        snprintf(spec, sizeof spec, "%s,scale_dtype=f16", plans[i]);
        qerr_result *f32 = tu_quantize(plans[i], w, c), *f16 = tu_quantize(spec, w, c);
        const int64_t before = inexact_scales(f32), after = inexact_scales(f16);
        const double e32 = tu_layer_error(w, f32, c), e16 = tu_layer_error(w, f16, c);
        print_message("  %-72s %4lld -> %lld scales off float16, layer error %.6g -> %.6g\n",
                      plans[i], (long long)before, (long long)after, e32, e16);
        assert_true(before > 0); /* so the check can fail */
        assert_int_equal(after, 0);
        /* rounding a scale moves it by at most 2^-11: the error barely moves */
        assert_true(fabs(e16 - e32) <= 0.05 * e32);
        qerr_result_free(f32);
        qerr_result_free(f16);
    }
    qerr_calib_free(c);
    qerr_tensor_free(w);
}

/* RTN's codes are the nearest points of the float16 grid: chosen after the
 * scale was rounded, not before (with 8 bits, codes up to 255 steps from the
 * zero point move with a scale change of 2^-12: some differ from the float32
 * grid's, so rounding the scales afterwards would fail here). */
static void rtn_codes_follow_the_float16_grid(void **state) {
    (void)state;
    const int64_t rows = 32, cols = 128, gs = 32;
    qerr_tensor *w = tu_weight(rows, cols, 21);
    const float *x = qerr_tensor_data(w);
    qerr_result *r = tu_quantize("rtn:bits=8,group_size=32,scale_dtype=f16", w, NULL);
    qerr_result *r32 = tu_quantize("rtn:bits=8,group_size=32", w, NULL);
    grid_view g = view(r), g32 = view(r32);
    int64_t differ = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            int64_t k = i * g.groups + j / gs;
            float v = nearbyintf(x[i * cols + j] / g.scales[k]) + (float)g.zeros[k];
            int want = v < 0 ? 0 : v > 255 ? 255 : (int)v;
            assert_int_equal(g.codes[i * cols + j], want);
            differ += g.codes[i * cols + j] != g32.codes[i * cols + j];
        }
    print_message("  %lld of %lld codes differ from the float32 grid's\n", (long long)differ,
                  (long long)(rows * cols));
    assert_true(differ > 0);
    unview(&g);
    unview(&g32);
    qerr_result_free(r);
    qerr_result_free(r32);
    qerr_tensor_free(w);
}

/* Ranges past float16's: scales clamped to 2^-24 .. 65504, zero points kept
 * in the codes' range, every value finite. */
static void ranges_beyond_float16(void **state) {
    (void)state;
    const int64_t rows = 4, cols = 16;
    float x[4 * 16];
    for (int64_t j = 0; j < cols; j++) {
        float t = (float)(j - 5) / 10.0f;
        x[j] = t * 1e-12f;              /* range far below float16's smallest subnormal */
        x[cols + j] = t * 4e6f;         /* scale far above 65504 */
        x[2 * cols + j] = t * 1e-4f;    /* subnormal float16 scales */
        x[3 * cols + j] = (float)j * 3e5f; /* asymmetric past 65504: zero point clamped */
    }
    const int64_t shape[2] = {rows, cols};
    qerr_tensor *w;
    assert_int_equal(qerr_tensor_from_data(&w, QERR_DTYPE_F32, 2, shape, x), QERR_OK);
    for (int sym = 0; sym < 2; sym++) {
        char spec[96];
        snprintf(spec, sizeof spec, "rtn:bits=4,symmetric=%d,scale_dtype=f16", sym);
        qerr_result *r = tu_quantize(spec, w, NULL);
        assert_int_equal(inexact_scales(r), 0);
        grid_view g = view(r);
        for (int64_t i = 0; i < rows; i++)
            assert_true(g.scales[i] >= 5.9604644775390625e-8f && g.scales[i] <= 65504.0f);
        assert_true(g.scales[0] == 5.9604644775390625e-8f);
        assert_true(g.scales[1] == 65504.0f);
        float deq[4 * 16];
        assert_int_equal(qerr_result_dequantize(r, deq, (size_t)(rows * cols)), QERR_OK);
        for (int64_t k = 0; k < rows * cols; k++) assert_true(isfinite(deq[k]));
        unview(&g);
        qerr_result_free(r);
    }
    qerr_tensor_free(w);
}

static void default_is_float32_and_unchanged(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(16, 64, 31);
    qerr_result *a = tu_quantize("rtn:bits=4,group_size=32", w, NULL);
    qerr_result *b = tu_quantize("rtn:bits=4,group_size=32,scale_dtype=f32", w, NULL);
    grid_view ga = view(a), gb = view(b);
    assert_memory_equal(ga.scales, gb.scales, (size_t)(16 * 2) * sizeof(float));
    assert_memory_equal(ga.codes, gb.codes, 16 * 64);
    assert_non_null(strstr(qerr_result_plan(a), "scale_dtype=f32"));
    unview(&ga);
    unview(&gb);
    qerr_result_free(a);
    qerr_result_free(b);
    qerr_tensor_free(w);
    qerr_plan *p;
    assert_int_equal(qerr_plan_parse(&p, "gptq:scale_dtype=f16"), QERR_OK);
    char v[16];
    assert_int_equal(qerr_plan_get_string(p, "scale_dtype", v, sizeof v), QERR_OK);
    assert_string_equal(v, "f16");
    qerr_plan_free(p);
}

static void bad_values_are_refused(void **state) {
    (void)state;
    qerr_plan *p = NULL;
    const char *const bad[] = {"rtn:scale_dtype=f8", "gptq:scale_dtype=F16",
                               "quantease:scale_dtype=1", "rtn:scale_dtype=bf16"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(qerr_plan_parse(&p, bad[i]), QERR_E_RANGE);
        assert_null(p);
        assert_non_null(strstr(qerr_last_error(), "f32|f16"));
    }
    assert_int_equal(qerr_plan_parse(&p, "rtn:scale_dtype="), QERR_E_INVALID_ARG);
    assert_int_equal(qerr_plan_parse(&p, "omniquant:scale_dtype=f16"), QERR_E_UNKNOWN_KEY);
    assert_int_equal(qerr_plan_create(&p, "rtn"), QERR_OK);
    assert_int_equal(qerr_plan_set_int(p, "scale_dtype", 1), QERR_E_INVALID_ARG);
    qerr_plan_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_scale_is_float16),
        cmocka_unit_test(rtn_codes_follow_the_float16_grid),
        cmocka_unit_test(ranges_beyond_float16),
        cmocka_unit_test(default_is_float32_and_unchanged),
        cmocka_unit_test(bad_values_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
