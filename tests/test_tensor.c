/* Tensors: create / wrap / from_data, accessors, and the float16 / bfloat16
 * conversions against known bit patterns and exhaustively. */
#include "testutil.h"
#include "core/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint32_t bits_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float float_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static void test_create_wrap_copy(void **state) {
    (void)state;
    int64_t shape[3] = {2, 3, 4};
    qerr_tensor *t = NULL;
    assert_int_equal(qerr_tensor_create(&t, QERR_DTYPE_BF16, 3, shape), QERR_OK);
    assert_int_equal(qerr_tensor_ndim(t), 3);
    assert_int_equal(qerr_tensor_dim(t, 0), 2);
    assert_int_equal(qerr_tensor_dim(t, 2), 4);
    assert_int_equal(qerr_tensor_dim(t, 3), -1);
    assert_int_equal(qerr_tensor_dim(t, -1), -1);
    assert_int_equal(qerr_tensor_dtype(t), QERR_DTYPE_BF16);
    assert_int_equal(qerr_tensor_numel(t), 24);
    assert_int_equal(qerr_tensor_nbytes(t), 48);
    const uint16_t *z = qerr_tensor_data(t);
    for (int i = 0; i < 24; i++) assert_int_equal(z[i], 0); /* zero-filled */
    qerr_tensor_free(t);

    float src[6] = {1, 2, 3, 4, 5, 6};
    int64_t s2[2] = {2, 3};
    qerr_tensor *copy = NULL, *view = NULL;
    assert_int_equal(qerr_tensor_from_data(&copy, QERR_DTYPE_F32, 2, s2, src), QERR_OK);
    assert_int_equal(qerr_tensor_wrap(&view, QERR_DTYPE_F32, 2, s2, src), QERR_OK);
    assert_ptr_equal(qerr_tensor_data(view), src);
    assert_ptr_not_equal(qerr_tensor_data(copy), src);
    src[4] = 50;
    assert_true(((float *)qerr_tensor_data(view))[4] == 50.0f); /* borrowed */
    assert_true(((float *)qerr_tensor_data(copy))[4] == 5.0f);  /* copied */
    qerr_tensor *f = NULL;
    assert_int_equal(qerr_tensor_to_f32(view, &f), QERR_OK);
    assert_ptr_not_equal(qerr_tensor_data(f), src); /* a copy even from f32 */
    assert_memory_equal(qerr_tensor_data(f), src, sizeof src);
    assert_int_equal(qerr_tensor_ndim(f), 2);
    assert_int_equal(qerr_tensor_dim(f, 1), 3);
    qerr_tensor_free(f);
    qerr_tensor_free(view); /* must not free src */
    qerr_tensor_free(copy);
    assert_true(src[0] == 1.0f);

    assert_int_equal(qerr_dtype_size(QERR_DTYPE_F32), 4);
    assert_int_equal(qerr_dtype_size(QERR_DTYPE_F16), 2);
    assert_int_equal(qerr_dtype_size(QERR_DTYPE_BF16), 2);
    assert_string_equal(qerr_dtype_name(QERR_DTYPE_F16), "f16");
    assert_string_equal(qerr_dtype_name(QERR_DTYPE_BF16), "bf16");
    assert_string_equal(qerr_dtype_name(QERR_DTYPE_F32), "f32");
}

/* float16 bit pattern -> exact value */
static const struct { uint16_t h; float v; } f16_known[] = {
    {0x0000, 0.0f},
    {0x3c00, 1.0f},
    {0xc000, -2.0f},
    {0x3555, 0.333251953125f},
    {0x7bff, 65504.0f},             /* largest finite */
    {0x0400, 0x1p-14f},             /* smallest normal */
    {0x0001, 0x1p-24f},             /* smallest subnormal */
    {0x03ff, 1023 * 0x1p-24f},      /* largest subnormal */
    {0x8005, -5 * 0x1p-24f},        /* negative subnormal */
    {0x7c00, INFINITY},
    {0xfc00, -INFINITY},
};

static void test_f16_known(void **state) {
    (void)state;
    const size_t n = sizeof f16_known / sizeof f16_known[0];
    uint16_t h[16];
    for (size_t i = 0; i < n; i++) h[i] = f16_known[i].h;
    h[n] = 0x7e00;     /* quiet NaN */
    h[n + 1] = 0x8000; /* -0 */
    int64_t shape[1] = {(int64_t)n + 2};
    qerr_tensor *t = NULL, *f = NULL;
    assert_int_equal(qerr_tensor_wrap(&t, QERR_DTYPE_F16, 1, shape, h), QERR_OK);
    assert_int_equal(qerr_tensor_to_f32(t, &f), QERR_OK);
    const float *v = qerr_tensor_data(f);
    for (size_t i = 0; i < n; i++) {
        assert_true(bits_of(v[i]) == bits_of(f16_known[i].v));
        assert_int_equal(qerr__f32_to_f16(f16_known[i].v), f16_known[i].h);
    }
    assert_true(isnan(v[n]));
    assert_true(bits_of(v[n + 1]) == 0x80000000u);
    qerr_tensor_free(f);
    qerr_tensor_free(t);

    /* float32 -> float16 rounding: nearest, ties to even */
    assert_int_equal(qerr__f32_to_f16(1.0f + 0x1p-11f), 0x3c00);          /* tie -> even (down) */
    assert_int_equal(qerr__f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);      /* tie -> even (up) */
    assert_int_equal(qerr__f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01); /* above the tie */
    assert_int_equal(qerr__f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(qerr__f32_to_f16(65520.0f), 0x7c00);                  /* rounds to inf */
    assert_int_equal(qerr__f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(qerr__f32_to_f16(-1e10f), 0xfc00);
    assert_int_equal(qerr__f32_to_f16(0x1p-25f), 0x0000);                  /* tie -> 0 */
    assert_int_equal(qerr__f32_to_f16(0x1p-25f * 1.0000001f), 0x0001);
    assert_int_equal(qerr__f32_to_f16(3 * 0x1p-25f), 0x0002);              /* tie -> even */
    assert_int_equal(qerr__f32_to_f16(1023.5f * 0x1p-24f), 0x0400);        /* carry into normal */
    assert_int_equal(qerr__f32_to_f16(1e-9f), 0x0000);
    assert_int_equal(qerr__f32_to_f16(-1e-9f), 0x8000);
    assert_int_equal(qerr__f32_to_f16(-0.0f), 0x8000);
    uint16_t nan_h = qerr__f32_to_f16(NAN);
    assert_int_equal(nan_h & 0x7c00, 0x7c00);
    assert_int_not_equal(nan_h & 0x03ff, 0);
    /* a NaN whose payload lives only in the dropped low bits stays NaN */
    uint16_t low_nan = qerr__f32_to_f16(float_of(0x7f800001u));
    assert_int_equal(low_nan & 0x7c00, 0x7c00);
    assert_int_not_equal(low_nan & 0x03ff, 0);
}

static void test_f16_exhaustive(void **state) {
    (void)state;
    /* every pattern round-trips (NaNs stay NaN) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = qerr__f16_to_f32((uint16_t)h);
        bool is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (is_nan) {
            assert_true(isnan(f));
            continue;
        }
        if (qerr__f32_to_f16(f) != h) fail_msg("f16 0x%04x does not round-trip", h);
    }
    /* random float32 values in the f16 range round to the nearest pattern,
     * ties to even: compare with both neighbours */
    uint64_t s = 99;
    for (int k = 0; k < 200000; k++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t u = (uint32_t)(s >> 32);
        uint32_t e = 103 + (uint32_t)(s >> 20) % 40; /* 2^-24 .. 2^15 */
        float x = float_of((u & 0x807fffffu) | (e << 23));
        uint16_t h = qerr__f32_to_f16(x);
        double v = qerr__f16_to_f32(h), ax = fabs((double)x);
        if ((h & 0x7c00) == 0x7c00) { /* overflow: only from at least 65520 */
            assert_true(ax >= 65520.0);
            continue;
        }
        double err = fabs((double)x - v);
        uint16_t mag = h & 0x7fff;
        for (int d = -1; d <= 1; d += 2) {
            int nb = (int)mag + d;
            if (nb < 0 || nb > 0x7bff) continue;
            double vn = qerr__f16_to_f32((uint16_t)((h & 0x8000) | nb));
            double en = fabs((double)x - vn);
            assert_true(err <= en);
            if (err == en) assert_int_equal(mag & 1, 0); /* tie: even mantissa */
        }
    }
}

static void test_bf16(void **state) {
    (void)state;
    assert_int_equal(qerr__f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(qerr__f32_to_bf16(-2.0f), 0xc000);
    assert_int_equal(qerr__f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);            /* tie -> even */
    assert_int_equal(qerr__f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);        /* tie -> even */
    assert_int_equal(qerr__f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81); /* above */
    assert_int_equal(qerr__f32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(qerr__f32_to_bf16(-INFINITY), 0xff80);
    assert_int_equal(qerr__f32_to_bf16(float_of(0x7f7fffffu)), 0x7f80);    /* FLT_MAX -> inf */
    assert_int_equal(qerr__f32_to_bf16(float_of(0x00010000u)), 0x0001);    /* subnormal, exact */
    assert_int_equal(qerr__f32_to_bf16(float_of(0x00018000u)), 0x0002);    /* subnormal tie */
    assert_int_equal(qerr__f32_to_bf16(-0.0f), 0x8000);
    uint16_t nan_b = qerr__f32_to_bf16(float_of(0x7f800001u)); /* payload in low bits only */
    assert_int_equal(nan_b & 0x7f80, 0x7f80);
    assert_int_not_equal(nan_b & 0x7f, 0);

    uint16_t b[5] = {0x3f80, 0xc000, 0x0001, 0x7f80, 0x7fc0};
    int64_t shape[1] = {5};
    qerr_tensor *t = NULL, *f = NULL;
    assert_int_equal(qerr_tensor_wrap(&t, QERR_DTYPE_BF16, 1, shape, b), QERR_OK);
    assert_int_equal(qerr_tensor_to_f32(t, &f), QERR_OK);
    const float *v = qerr_tensor_data(f);
    assert_true(v[0] == 1.0f);
    assert_true(v[1] == -2.0f);
    assert_true(bits_of(v[2]) == 0x00010000u);
    assert_true(isinf(v[3]) && v[3] > 0);
    assert_true(isnan(v[4]));
    qerr_tensor_free(f);
    qerr_tensor_free(t);
    for (uint32_t h = 0; h < 65536; h++) {
        float x = qerr__bf16_to_f32((uint16_t)h);
        if (isnan(x)) continue;
        if (qerr__f32_to_bf16(x) != h) fail_msg("bf16 0x%04x does not round-trip", h);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_wrap_copy),
        cmocka_unit_test(test_f16_known),
        cmocka_unit_test(test_f16_exhaustive),
        cmocka_unit_test(test_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
