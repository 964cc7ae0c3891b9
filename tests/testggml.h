/* Helpers of the ggml codec tests (test_ggml_blocks.c, test_ggml_peer.c,
 * test_ggml_method.c). Header-only: each test is one executable. */
#ifndef QERR_TEST_GGML_H
#define QERR_TEST_GGML_H

#include "io/ggml_blocks.h"
#include "testutil.h"

static const int tg_qtypes[] = {QERR_GGML_Q4_0, QERR_GGML_Q4_1, QERR_GGML_Q5_0, QERR_GGML_Q5_1,
                                QERR_GGML_Q8_0, QERR_GGML_Q2_K, QERR_GGML_Q3_K, QERR_GGML_Q4_K,
                                QERR_GGML_Q5_K, QERR_GGML_Q6_K};
#define TG_NQ (int)(sizeof tg_qtypes / sizeof tg_qtypes[0])

/* n random bytes of `type` blocks whose float16 fields (d, dmin) are finite
 * and moderate (exponent below 0x1e), so every other bit is random. */
static inline void tg_random_row(int type, uint8_t *buf, size_t n, uint64_t seed) {
    seed |= 1;
    for (size_t i = 0; i < n; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        buf[i] = (uint8_t)seed;
    }
    qerr_ggml_grid g;
    qerr__ggml_grid(type, &g);
    const size_t bb = qerr__ggml_block_bytes(type);
    for (size_t o = 0; o < n; o += bb) {
        qerr_ggml_block b;
        qerr__ggml_unpack(&g, buf + o, &b);
        b.d &= 0xBBFF;
        b.dmin &= 0xBBFF;
        qerr__ggml_pack(&g, &b, buf + o);
    }
}

/* The plan word of a type: "Q4_K" -> "q4_k" (out holds 8 bytes). */
static inline const char *tg_lower(int type, char *out) {
    const char *tn = qerr__ggml_type_name(type);
    int i = 0;
    for (; tn[i] && i < 7; i++) out[i] = (char)(tn[i] >= 'A' && tn[i] <= 'Z' ? tn[i] + 32 : tn[i]);
    out[i] = 0;
    return out;
}

#endif
