/* ggml block codecs: names and sizes, hand-made blocks with known values,
 * random bytes against a second, loop-for-loop transcription of ggml's
 * dequantize_row_* (written from ggml's public source, independent of the
 * codec's unpacking), pack/unpack round trips, and bad input. */
#include "testggml.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float h2f(const uint8_t *p) { return qerr__f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* ---- ggml's loops, transcribed ------------------------------------------ */
static void ref_q4_0(const uint8_t *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / 32; i++, x += 18) {
        const float d = h2f(x);
        for (int j = 0; j < 16; j++) {
            const int x0 = (x[2 + j] & 0x0F) - 8, x1 = (x[2 + j] >> 4) - 8;
            y[i * 32 + j] = x0 * d;
            y[i * 32 + j + 16] = x1 * d;
        }
    }
}

static void ref_q5_1(const uint8_t *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / 32; i++, x += 24) {
        const float d = h2f(x), m = h2f(x + 2);
        uint32_t qh;
        memcpy(&qh, x + 4, 4);
        for (int j = 0; j < 16; j++) {
            const uint8_t xh_0 = ((qh >> (j + 0)) << 4) & 0x10;
            const uint8_t xh_1 = ((qh >> (j + 12))) & 0x10;
            const int x0 = (x[8 + j] & 0x0F) | xh_0, x1 = (x[8 + j] >> 4) | xh_1;
            y[i * 32 + j] = x0 * d + m;
            y[i * 32 + j + 16] = x1 * d + m;
        }
    }
}

static void ref_q8_0(const uint8_t *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / 32; i++, x += 34) {
        const float d = h2f(x);
        for (int j = 0; j < 32; j++) y[i * 32 + j] = (int8_t)x[2 + j] * d;
    }
}

static void ref_q2_k(const uint8_t *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / 256; i++, x += 84) {
        const float d = h2f(x + 80), min = h2f(x + 82);
        const uint8_t *q = x + 16;
        int is = 0;
        for (int n = 0; n < 256; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; ++j) {
                uint8_t sc = x[is++];
                float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                for (int l = 0; l < 16; ++l) *y++ = dl * ((int8_t)((q[l] >> shift) & 3)) - ml;
                sc = x[is++];
                dl = d * (sc & 0xF), ml = min * (sc >> 4);
                for (int l = 0; l < 16; ++l) *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3)) - ml;
                shift += 2;
            }
            q += 32;
        }
    }
}

static void ref_q3_k(const uint8_t *x, float *y, int64_t k) {
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    uint32_t aux[4];
    const int8_t *scales = (const int8_t *)aux;
    for (int64_t i = 0; i < k / 256; i++, x += 110) {
        const float d_all = h2f(x + 108);
        const uint8_t *q = x + 32, *hm = x;
        uint8_t m = 1;
        memcpy(aux, x + 96, 12);
        uint32_t tmp = aux[2];
        aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
        aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
        aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
        aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
        int is = 0;
        for (int n = 0; n < 256; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; ++j) {
                float dl = d_all * (scales[is++] - 32);
                for (int l = 0; l < 16; ++l)
                    *y++ = dl * ((int8_t)((q[l + 0] >> shift) & 3) - ((hm[l + 0] & m) ? 0 : 4));
                dl = d_all * (scales[is++] - 32);
                for (int l = 0; l < 16; ++l)
                    *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
                shift += 2;
                m <<= 1;
            }
            q += 32;
        }
    }
}

static void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

static void ref_q45_k(const uint8_t *x, float *y, int64_t k, bool five) {
    const size_t bytes = five ? 176 : 144;
    for (int64_t i = 0; i < k / 256; i++, x += bytes) {
        const float d = h2f(x), min = h2f(x + 2);
        const uint8_t *sc = x + 4, *qh = x + 16, *q = x + (five ? 48 : 16);
        int is = 0;
        uint8_t u1 = 1, u2 = 2, s, mm;
        for (int j = 0; j < 256; j += 64) {
            scale_min_k4(is + 0, sc, &s, &mm);
            const float d1 = d * s, m1 = min * mm;
            scale_min_k4(is + 1, sc, &s, &mm);
            const float d2 = d * s, m2 = min * mm;
            for (int l = 0; l < 32; ++l)
                *y++ = d1 * ((q[l] & 0xF) + (five && (qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l)
                *y++ = d2 * ((q[l] >> 4) + (five && (qh[l] & u2) ? 16 : 0)) - m2;
            q += 32;
            is += 2;
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}

static void ref_q6_k(const uint8_t *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / 256; i++, x += 210) {
        const float d = h2f(x + 208);
        const uint8_t *ql = x, *qh = x + 128;
        const int8_t *sc = (const int8_t *)(x + 192);
        for (int n = 0; n < 256; n += 128) {
            for (int l = 0; l < 32; ++l) {
                int is = l / 16;
                const int8_t q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

static void test_against_transcription(void **state) {
    (void)state;
    struct { int type; void (*f)(const uint8_t *, float *, int64_t); } refs[] = {
        {QERR_GGML_Q4_0, ref_q4_0}, {QERR_GGML_Q5_1, ref_q5_1}, {QERR_GGML_Q8_0, ref_q8_0},
        {QERR_GGML_Q2_K, ref_q2_k}, {QERR_GGML_Q3_K, ref_q3_k}, {QERR_GGML_Q6_K, ref_q6_k},
    };
    const int64_t n = 2048;
    float *a = malloc(n * 4), *b = malloc(n * 4);
    uint8_t *buf = malloc((size_t)n * 2); /* more than any type needs */
    for (int rep = 0; rep < 3; rep++) {
        for (size_t t = 0; t < sizeof refs / sizeof refs[0]; t++) {
            tg_random_row(refs[t].type, buf, qerr__ggml_row_bytes(refs[t].type, n), 77 + t + 100 * rep);
            refs[t].f(buf, a, n);
            assert_int_equal(qerr__ggml_dequantize_row(refs[t].type, buf, n, b), QERR_OK);
            assert_memory_equal(a, b, n * 4);
        }
        for (int five = 0; five < 2; five++) {
            int type = five ? QERR_GGML_Q5_K : QERR_GGML_Q4_K;
            tg_random_row(type, buf, qerr__ggml_row_bytes(type, n), 5 + five + 100 * rep);
            ref_q45_k(buf, a, n, five);
            assert_int_equal(qerr__ggml_dequantize_row(type, buf, n, b), QERR_OK);
            assert_memory_equal(a, b, n * 4);
        }
    }
    free(a); free(b); free(buf);
}

/* A hand-made Q4_0 and Q4_K block with values known in closed form. */
static void test_known_blocks(void **state) {
    (void)state;
    uint8_t q40[18] = {0x00, 0x40}; /* d = 2.0 */
    for (int j = 0; j < 16; j++) q40[2 + j] = (uint8_t)(j | (15 - j) << 4);
    float y[256];
    assert_int_equal(qerr__ggml_dequantize_row(QERR_GGML_Q4_0, q40, 32, y), QERR_OK);
    for (int j = 0; j < 16; j++) {
        assert_true(y[j] == 2.0f * (float)(j - 8));
        assert_true(y[16 + j] == 2.0f * (float)(7 - j));
    }
    /* Q4_K: d = 1, dmin = 0.5, sub-block j has scale j + 1 and min 2j;
     * every nibble is 3, so value = (j + 1) * 3 - 0.5 * 2j = 2j + 3 */
    uint8_t q4k[144] = {0x00, 0x3c, 0x00, 0x38};
    for (int j = 0; j < 8; j++) {
        int ls = j + 1, lm = 2 * j;
        if (j < 4) {
            q4k[4 + j] = (uint8_t)ls;
            q4k[4 + j + 4] = (uint8_t)lm;
        } else {
            q4k[4 + j + 4] = (uint8_t)((ls & 0xF) | (lm & 0xF) << 4);
            q4k[4 + j - 4] |= (uint8_t)((ls >> 4) << 6);
            q4k[4 + j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    memset(q4k + 16, 0x33, 128);
    assert_int_equal(qerr__ggml_dequantize_row(QERR_GGML_Q4_K, q4k, 256, y), QERR_OK);
    for (int e = 0; e < 256; e++) assert_true(y[e] == (float)(2 * (e / 32) + 3));
}

static void test_pack_round_trip(void **state) {
    (void)state;
    uint64_t s = 12345;
    for (int t = 0; t < TG_NQ; t++) {
        qerr_ggml_grid g;
        assert_true(qerr__ggml_grid(tg_qtypes[t], &g));
        for (int rep = 0; rep < 20; rep++) {
            qerr_ggml_block b, c;
            memset(&b, 0, sizeof b);
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            b.d = (uint16_t)(s >> 40);
            b.dmin = g.has_min ? (uint16_t)(s >> 20) : 0;
            for (int k = 0; k < g.nsub; k++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                b.sc[k] = (int16_t)(g.sc_lo + (int)((s >> 33) % (uint64_t)(g.sc_hi - g.sc_lo + 1)));
                b.mn[k] = g.has_min ? (int16_t)(g.mn_lo + (int)((s >> 45) % (uint64_t)(g.mn_hi - g.mn_lo + 1))) : 0;
            }
            for (int e = 0; e < g.elems; e++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                b.q[e] = (uint8_t)((s >> 37) & (uint64_t)g.maxq);
            }
            uint8_t bytes[256];
            qerr__ggml_pack(&g, &b, bytes);
            qerr__ggml_unpack(&g, bytes, &c);
            assert_int_equal(b.d, c.d);
            if (g.has_min) assert_int_equal(b.dmin, c.dmin);
            assert_memory_equal(b.sc, c.sc, (size_t)g.nsub * 2);
            if (g.has_min) assert_memory_equal(b.mn, c.mn, (size_t)g.nsub * 2);
            assert_memory_equal(b.q, c.q, (size_t)g.elems);
        }
    }
}

static void test_names_and_sizes(void **state) {
    (void)state;
    static const size_t bytes[] = {18, 20, 22, 24, 34, 84, 110, 144, 176, 210};
    for (int t = 0; t < TG_NQ; t++) assert_int_equal(qerr__ggml_block_bytes(tg_qtypes[t]), bytes[t]);
    assert_int_equal(qerr__ggml_type_from_name("q4_k"), 12);
    assert_int_equal(qerr__ggml_type_from_name("Q4_K"), 12);
    assert_int_equal(qerr__ggml_type_from_name("f16"), 1);
    assert_int_equal(qerr__ggml_type_from_name("q4_k_m"), -1);
    assert_int_equal(qerr__ggml_type_from_name("q4"), -1);
    assert_int_equal(qerr__ggml_type_from_name(NULL), -1);
    assert_string_equal(qerr__ggml_type_name(QERR_GGML_Q6_K), "Q6_K");
    assert_null(qerr__ggml_type_name(4));
    assert_int_equal(qerr__ggml_block_elems(QERR_GGML_Q8_0), 32);
    assert_int_equal(qerr__ggml_block_elems(QERR_GGML_F32), 1);
    assert_int_equal(qerr__ggml_row_bytes(QERR_GGML_Q4_K, 512), 288);
    assert_int_equal(qerr__ggml_row_bytes(QERR_GGML_Q4_K, 300), 0);
    assert_int_equal(qerr__ggml_row_bytes(QERR_GGML_F16, 3), 6);
    assert_int_equal(qerr__ggml_row_bytes(99, 256), 0);
}

static void test_bad_input(void **state) {
    (void)state;
    uint8_t buf[256] = {0};
    float y[256];
    assert_int_equal(qerr__ggml_dequantize_row(99, buf, 32, y), QERR_E_INVALID_ARG);
    assert_non_null(strstr(qerr_last_error(), "unknown tensor type"));
    assert_int_equal(qerr__ggml_dequantize_row(QERR_GGML_Q4_K, buf, 100, y), QERR_E_SHAPE);
    assert_non_null(strstr(qerr_last_error(), "256"));
    /* an RTN result is not on a ggml grid */
    qerr_tensor *w = tu_weight(4, 256, 3);
    qerr_result *r = tu_quantize("rtn:bits=4,group_size=32", w, NULL);
    uint8_t out[4 * 144];
    assert_int_equal(qerr__ggml_encode_result(r, QERR_GGML_Q4_K, out, sizeof out),
                     QERR_E_INVALID_ARG);
    assert_non_null(strstr(qerr_last_error(), "Q4_K"));
    assert_int_equal(qerr__ggml_encode_result(r, QERR_GGML_F16, out, sizeof out),
                     QERR_E_INVALID_ARG);
    qerr_result_free(r);
    qerr_tensor_free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_sizes),
        cmocka_unit_test(test_known_blocks),
        cmocka_unit_test(test_against_transcription),
        cmocka_unit_test(test_pack_round_trip),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
