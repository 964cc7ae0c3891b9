/* RTN: the grid of every group (min-max, symmetric, clip search), packed
 * codes, and the storage cost the layout implies. */
#include "testutil.h"
#include "core/internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    qerr_result *r;
    int64_t rows, cols, groups, gs;
    int bits;
    uint8_t *codes;
    float *scales, *deq;
    int32_t *zeros, *gidx;
} unpacked;

static unpacked unpack(qerr_result *r) {
    unpacked u = {r, qerr_result_rows(r), qerr_result_cols(r), qerr_result_groups(r),
                  qerr_result_group_size(r), qerr_result_bits(r), NULL, NULL, NULL, NULL, NULL};
    size_t nw = (size_t)(u.rows * u.cols), ng = (size_t)(u.rows * u.groups);
    u.codes = malloc(nw);
    u.deq = malloc(nw * sizeof(float));
    u.scales = malloc(ng * sizeof(float));
    u.zeros = malloc(ng * sizeof(int32_t));
    u.gidx = malloc((size_t)u.cols * sizeof(int32_t));
    assert_true(u.codes && u.deq && u.scales && u.zeros && u.gidx);
    assert_int_equal(qerr_result_codes(r, u.codes, nw), QERR_OK);
    assert_int_equal(qerr_result_dequantize(r, u.deq, nw), QERR_OK);
    assert_int_equal(qerr_result_scales(r, u.scales, ng), QERR_OK);
    assert_int_equal(qerr_result_zeros(r, u.zeros, ng), QERR_OK);
    assert_int_equal(qerr_result_g_idx(r, u.gidx, (size_t)u.cols), QERR_OK);
    return u;
}

static void release(unpacked *u) {
    free(u->codes);
    free(u->deq);
    free(u->scales);
    free(u->zeros);
    free(u->gidx);
    qerr_result_free(u->r);
}

static qerr_result *rtn(const char *fmt, int bits, int64_t gs, int sym, int clip,
                        const qerr_tensor *w) {
    char spec[128];
    snprintf(spec, sizeof spec, fmt, bits, (long long)gs, sym, clip);
    return tu_quantize(spec, w, NULL);
}
#define SPEC "rtn:bits=%d,group_size=%lld,symmetric=%d,clip_search=%d"

/* every value is s * (q - z) of its group, q in [0, 2^b - 1] */
static void test_on_grid(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(6, 48, 1);
    for (int bits = 2; bits <= 8; bits++)
        for (int gi = 0; gi < 2; gi++)
            for (int sym = 0; sym < 2; sym++)
                for (int clip = 0; clip < 2; clip++) {
                    unpacked u = unpack(rtn(SPEC, bits, gi ? 16 : -1, sym, clip, w));
                    assert_int_equal(u.bits, bits);
                    assert_int_equal(u.gs, gi ? 16 : 48);
                    assert_int_equal(u.groups, gi ? 3 : 1);
                    for (int64_t i = 0; i < u.rows; i++)
                        for (int64_t j = 0; j < u.cols; j++) {
                            int32_t g = u.gidx[j];
                            assert_int_equal(g, j / u.gs);
                            int q = u.codes[i * u.cols + j];
                            assert_true(q <= (1 << bits) - 1);
                            float s = u.scales[i * u.groups + g];
                            int32_t z = u.zeros[i * u.groups + g];
                            assert_true(s > 0);
                            assert_true(u.deq[i * u.cols + j] == s * (float)(q - z));
                        }
                    release(&u);
                }
    qerr_tensor_free(w);
}

/* min-max grid: the range of the group plus 0, z = round(-min / s), every
 * value within half a step; symmetric: z = 2^(b-1) */
static void test_minmax(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(8, 64, 2);
    float *wd = qerr_tensor_data(w);
    for (int j = 0; j < 16; j++) wd[j] = 0.01f + 0.001f * (float)j; /* an all-positive group */
    for (int bits = 2; bits <= 8; bits++)
        for (int sym = 0; sym < 2; sym++) {
            unpacked u = unpack(rtn(SPEC, bits, 16, sym, 0, w));
            const int maxq = (1 << bits) - 1;
            for (int64_t i = 0; i < u.rows; i++)
                for (int64_t k = 0; k < u.groups; k++) {
                    const float *x = wd + i * 64 + k * 16;
                    float lo = 0, hi = 0;
                    for (int j = 0; j < 16; j++) {
                        lo = fminf(lo, x[j]);
                        hi = fmaxf(hi, x[j]);
                    }
                    float s = u.scales[i * u.groups + k];
                    int32_t z = u.zeros[i * u.groups + k];
                    if (sym) {
                        assert_int_equal(z, 1 << (bits - 1));
                        float m = fmaxf(-lo, hi);
                        float want = lo < 0 ? 2 * m / (float)maxq : m / (float)maxq;
                        assert_float_equal(s, want, 1e-6 * want);
                        continue;
                    }
                    assert_float_equal(s, (hi - lo) / (float)maxq, 1e-6 * s);
                    assert_int_equal(z, (int32_t)nearbyintf(-lo / s));
                    for (int j = 0; j < 16; j++) {
                        float d = fabsf(x[j] - u.deq[i * 64 + k * 16 + j]);
                        assert_true(d <= 0.5f * s * (1 + 1e-5f));
                        /* the same code as rounding by hand */
                        float c = fminf(fmaxf(nearbyintf(x[j] / s) + (float)z, 0), (float)maxq);
                        assert_int_equal(u.codes[i * 64 + k * 16 + j], (int)c);
                    }
                }
            release(&u);
        }
    qerr_tensor_free(w);
}

static double clip_objective(const float *x, const float *q, int n) {
    double e = 0;
    for (int j = 0; j < n; j++) e += pow(fabs((double)x[j] - (double)q[j]), 2.4);
    return e;
}

/* the clip search only ever lowers each group's sum |w - q|^2.4 */
static void test_clip_search(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(16, 128, 3);
    const float *wd = qerr_tensor_data(w);
    for (int bits = 2; bits <= 8; bits += 3)
        for (int sym = 0; sym < 2; sym++) {
            unpacked a = unpack(rtn(SPEC, bits, 32, sym, 0, w));
            unpacked b = unpack(rtn(SPEC, bits, 32, sym, 1, w));
            double total_a = 0, total_b = 0;
            for (int i = 0; i < 16; i++)
                for (int k = 0; k < 4; k++) {
                    int o = i * 128 + k * 32;
                    double ea = clip_objective(wd + o, a.deq + o, 32);
                    double eb = clip_objective(wd + o, b.deq + o, 32);
                    assert_true(eb <= ea * (1 + 1e-9));
                    /* a clipped range is never wider than the min-max one */
                    assert_true(b.scales[i * 4 + k] <= a.scales[i * 4 + k] * (1 + 1e-6f));
                    total_a += ea;
                    total_b += eb;
                }
            if (bits <= 5) assert_true(total_b < total_a); /* it helps at low bit widths */
            release(&a);
            release(&b);
        }
    qerr_tensor_free(w);
}

/* packed rows start on a byte boundary, codes LSB-first */
static void test_packed(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(5, 37, 4);
    for (int bits = 2; bits <= 8; bits++) {
        unpacked u = unpack(rtn(SPEC, bits, -1, 0, 0, w));
        size_t row_bytes = (size_t)(37 * bits + 7) / 8;
        size_t size = qerr_result_packed_size(u.r);
        assert_int_equal(size, 5 * row_bytes);
        uint8_t *p = malloc(size + 1);
        assert_non_null(p);
        p[size] = 0xa5; /* must stay untouched */
        assert_int_equal(qerr_result_packed(u.r, p, size), QERR_OK);
        assert_int_equal(p[size], 0xa5);
        for (int i = 0; i < 5; i++) {
            const uint8_t *row = p + (size_t)i * row_bytes;
            for (int j = 0; j < 37; j++) {
                unsigned v = 0;
                for (int b = 0; b < bits; b++) {
                    size_t bit = (size_t)j * (size_t)bits + (size_t)b;
                    v |= (unsigned)((row[bit / 8] >> (bit % 8)) & 1) << b;
                }
                assert_int_equal(v, u.codes[i * 37 + j]);
            }
            /* padding bits at the end of a row are zero */
            for (size_t bit = 37 * (size_t)bits; bit < row_bytes * 8; bit++)
                assert_int_equal((row[bit / 8] >> (bit % 8)) & 1, 0);
        }
        free(p);
        release(&u);
    }
    qerr_tensor_free(w);
}

static void test_bits_per_weight(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(4, 256, 5);
    for (int bits = 2; bits <= 8; bits++)
        for (int sym = 0; sym < 2; sym++)
            for (int gi = 0; gi < 2; gi++) {
                int64_t gs = gi ? 128 : -1, groups = gi ? 2 : 1;
                unpacked u = unpack(rtn(SPEC, bits, gs, sym, 0, w));
                /* codes packed + one float16 scale per group + zeros packed at
                 * `bits` each unless every zero is the symmetric 2^(b-1) */
                double bytes = 4.0 * ceil(256.0 * bits / 8) + 4.0 * (double)groups * 2;
                if (!sym) bytes += ceil(4.0 * (double)groups * bits / 8);
                double want = bytes * 8 / (4.0 * 256);
                assert_float_equal(qerr_result_bits_per_weight(u.r), want, 1e-12);
                release(&u);
            }
    unpacked u = unpack(rtn(SPEC, 4, 128, 0, 0, w));
    assert_float_equal(qerr_result_bits_per_weight(u.r), 4 + 16.0 / 128 + 4.0 / 128, 1e-12);
    release(&u);
    qerr_tensor_free(w);
}

/* threads, dtype: the same codes */
static void test_invariance(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(40, 64, 6);
    float *wd = qerr_tensor_data(w);
    for (int i = 0; i < 40 * 64; i++) /* values a float16 holds exactly */
        wd[i] = qerr__f16_to_f32(qerr__f32_to_f16(wd[i]));
    qerr_plan *p = NULL;
    assert_int_equal(qerr_plan_parse(&p, "rtn:bits=3,group_size=16,clip_search=1"), QERR_OK);
    qerr_ctx *c1 = NULL, *c2 = NULL;
    assert_int_equal(qerr_ctx_create(&c1), QERR_OK);
    assert_int_equal(qerr_ctx_create(&c2), QERR_OK);
    assert_int_equal(qerr_ctx_set_threads(c1, 1), QERR_OK);
    assert_int_equal(qerr_ctx_set_threads(c2, 3), QERR_OK);
    uint16_t h[40 * 64];
    for (int i = 0; i < 40 * 64; i++) h[i] = qerr__f32_to_f16(wd[i]);
    qerr_tensor *hw = NULL;
    int64_t shape[2] = {40, 64};
    assert_int_equal(qerr_tensor_wrap(&hw, QERR_DTYPE_F16, 2, shape, h), QERR_OK);
    qerr_result *r[3] = {NULL, NULL, NULL};
    assert_int_equal(qerr_quantize(c1, p, w, NULL, &r[0]), QERR_OK);
    assert_int_equal(qerr_quantize(c2, p, w, NULL, &r[1]), QERR_OK);
    assert_int_equal(qerr_quantize(c2, p, hw, NULL, &r[2]), QERR_OK);
    uint8_t a[40 * 64], b[40 * 64];
    float s1[40 * 4], s2[40 * 4];
    assert_int_equal(qerr_result_codes(r[0], a, sizeof a), QERR_OK);
    assert_int_equal(qerr_result_scales(r[0], s1, 160), QERR_OK);
    for (int k = 1; k < 3; k++) {
        assert_int_equal(qerr_result_codes(r[k], b, sizeof b), QERR_OK);
        assert_memory_equal(a, b, sizeof a);
        assert_int_equal(qerr_result_scales(r[k], s2, 160), QERR_OK);
        assert_memory_equal(s1, s2, sizeof s1);
    }
    for (int k = 0; k < 3; k++) qerr_result_free(r[k]);
    qerr_tensor_free(hw);
    qerr_ctx_free(c1);
    qerr_ctx_free(c2);
    qerr_plan_free(p);
    qerr_tensor_free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_on_grid),   cmocka_unit_test(test_minmax),
        cmocka_unit_test(test_clip_search), cmocka_unit_test(test_packed),
        cmocka_unit_test(test_bits_per_weight), cmocka_unit_test(test_invariance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
