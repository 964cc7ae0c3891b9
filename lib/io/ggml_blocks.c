/* ggml's block formats: the byte layout of every quantized type (ggml's
 * ggml-common.h) mapped to one common form (qerr_ggml_block), and the
 * dequantization in exactly ggml's float operations, so that the values are
 * bit for bit those of ggml's dequantize_row_*. This file is compiled with
 * -ffp-contract=off: a fused multiply-add would change the last bit. */
#include "ggml_blocks.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

typedef struct {
    int type;
    const char *name;
    int elems;
    size_t bytes;
} type_info;

static const type_info types[] = {
    {QERR_GGML_F32, "F32", 1, 4},       {QERR_GGML_F16, "F16", 1, 2},
    {QERR_GGML_Q4_0, "Q4_0", 32, 18},   {QERR_GGML_Q4_1, "Q4_1", 32, 20},
    {QERR_GGML_Q5_0, "Q5_0", 32, 22},   {QERR_GGML_Q5_1, "Q5_1", 32, 24},
    {QERR_GGML_Q8_0, "Q8_0", 32, 34},   {QERR_GGML_Q2_K, "Q2_K", 256, 84},
    {QERR_GGML_Q3_K, "Q3_K", 256, 110}, {QERR_GGML_Q4_K, "Q4_K", 256, 144},
    {QERR_GGML_Q5_K, "Q5_K", 256, 176}, {QERR_GGML_Q6_K, "Q6_K", 256, 210},
};
#define NTYPES (int)(sizeof types / sizeof types[0])

static const type_info *find_type(int type) {
    for (int i = 0; i < NTYPES; i++)
        if (types[i].type == type) return &types[i];
    return NULL;
}

int qerr__ggml_type_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < NTYPES; i++) {
        const char *a = types[i].name, *b = name;
        while (*a && *b && toupper((unsigned char)*b) == *a) a++, b++;
        if (!*a && !*b) return types[i].type;
    }
    return -1;
}

const char *qerr__ggml_type_name(int type) {
    const type_info *t = find_type(type);
    return t ? t->name : NULL;
}

int64_t qerr__ggml_block_elems(int type) {
    const type_info *t = find_type(type);
    return t ? t->elems : 0;
}

size_t qerr__ggml_block_bytes(int type) {
    const type_info *t = find_type(type);
    return t ? t->bytes : 0;
}

size_t qerr__ggml_row_bytes(int type, int64_t n) {
    const type_info *t = find_type(type);
    if (!t || n < 0 || n % t->elems) return 0;
    return (size_t)(n / t->elems) * t->bytes;
}

bool qerr__ggml_grid(int type, qerr_ggml_grid *g) {
    memset(g, 0, sizeof *g);
    g->type = type;
    g->elems = 32;
    g->sub = 32;
    g->sc_lo = g->sc_hi = 1;
    switch (type) {
    case QERR_GGML_Q4_0: g->bits = 4; g->zero = 8; break;
    case QERR_GGML_Q4_1: g->bits = 4; g->has_min = true; g->mn_lo = g->mn_hi = 1; break;
    case QERR_GGML_Q5_0: g->bits = 5; g->zero = 16; break;
    case QERR_GGML_Q5_1: g->bits = 5; g->has_min = true; g->mn_lo = g->mn_hi = 1; break;
    case QERR_GGML_Q8_0: g->bits = 8; g->zero = 128; break;
    case QERR_GGML_Q2_K:
        g->elems = 256; g->sub = 16; g->bits = 2; g->sc_lo = 0; g->sc_hi = 15;
        g->has_min = true; g->mn_lo = 0; g->mn_hi = 15;
        break;
    case QERR_GGML_Q3_K:
        g->elems = 256; g->sub = 16; g->bits = 3; g->zero = 4; g->sc_lo = -32; g->sc_hi = 31;
        break;
    case QERR_GGML_Q4_K:
    case QERR_GGML_Q5_K:
        g->elems = 256; g->bits = type == QERR_GGML_Q4_K ? 4 : 5; g->sc_lo = 0; g->sc_hi = 63;
        g->has_min = true; g->mn_lo = 0; g->mn_hi = 63;
        break;
    case QERR_GGML_Q6_K:
        g->elems = 256; g->sub = 16; g->bits = 6; g->zero = 32; g->sc_lo = -128; g->sc_hi = 127;
        break;
    default:
        return false;
    }
    g->nsub = g->elems / g->sub;
    g->maxq = (1 << g->bits) - 1;
    return true;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* The 12-byte 6-bit scale/min packing of Q4_K and Q5_K. */
static void pack_scales_k4(const qerr_ggml_block *b, uint8_t *s) {
    for (int j = 0; j < 8; j++) {
        unsigned ls = (unsigned)b->sc[j], lm = (unsigned)b->mn[j];
        if (j < 4) {
            s[j] = (uint8_t)ls;
            s[j + 4] = (uint8_t)lm;
        } else {
            s[j + 4] = (uint8_t)((ls & 0xF) | (lm & 0xF) << 4);
            s[j - 4] |= (uint8_t)((ls >> 4) << 6);
            s[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
}

static void unpack_scales_k4(const uint8_t *s, qerr_ggml_block *b) {
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            b->sc[j] = s[j] & 63;
            b->mn[j] = s[j + 4] & 63;
        } else {
            b->sc[j] = (int16_t)((s[j + 4] & 0xF) | (s[j - 4] >> 6) << 4);
            b->mn[j] = (int16_t)((s[j + 4] >> 4) | (s[j] >> 6) << 4);
        }
    }
}

/* Q3_K's 16 six-bit scales (stored as sc + 32) in 12 bytes. */
static void pack_scales_q3(const qerr_ggml_block *b, uint8_t *s) {
    memset(s, 0, 12);
    for (int j = 0; j < 16; j++) {
        unsigned l = (unsigned)(b->sc[j] + 32);
        if (j < 8) s[j] = (uint8_t)(l & 0xF);
        else s[j - 8] |= (uint8_t)((l & 0xF) << 4);
        s[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
    }
}

static void unpack_scales_q3(const uint8_t *s, qerr_ggml_block *b) {
    for (int j = 0; j < 16; j++) {
        unsigned lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
        unsigned hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        b->sc[j] = (int16_t)((int)(lo | hi << 4) - 32);
    }
}

/* Legacy 32-value types: [d][min][qh][qs] with the parts a type has. */
static void pack_legacy(const qerr_ggml_grid *g, const qerr_ggml_block *b, uint8_t *o) {
    put16(o, b->d);
    o += 2;
    if (g->has_min) { /* ggml stores +min, the common form subtracts dmin */
        put16(o, (uint16_t)(b->dmin ^ 0x8000));
        o += 2;
    }
    if (g->bits == 8) {
        for (int j = 0; j < 32; j++) o[j] = (uint8_t)(b->q[j] ^ 0x80); /* int8 = q - 128 */
        return;
    }
    if (g->bits == 5) {
        uint32_t qh = 0;
        for (int j = 0; j < 32; j++) qh |= (uint32_t)((b->q[j] >> 4) & 1) << j;
        for (int k = 0; k < 4; k++) o[k] = (uint8_t)(qh >> (8 * k));
        o += 4;
    }
    for (int j = 0; j < 16; j++) o[j] = (uint8_t)((b->q[j] & 0xF) | (b->q[j + 16] & 0xF) << 4);
}

static void unpack_legacy(const qerr_ggml_grid *g, const uint8_t *p, qerr_ggml_block *b) {
    b->d = get16(p);
    p += 2;
    b->sc[0] = 1;
    b->dmin = 0;
    b->mn[0] = 0;
    if (g->has_min) {
        b->dmin = (uint16_t)(get16(p) ^ 0x8000);
        b->mn[0] = 1;
        p += 2;
    }
    if (g->bits == 8) {
        for (int j = 0; j < 32; j++) b->q[j] = (uint8_t)(p[j] ^ 0x80);
        return;
    }
    uint32_t qh = 0;
    if (g->bits == 5) {
        qh = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        p += 4;
    }
    for (int j = 0; j < 16; j++) {
        b->q[j] = (uint8_t)((p[j] & 0xF) | ((qh >> j) & 1) << 4);
        b->q[j + 16] = (uint8_t)((p[j] >> 4) | ((qh >> (j + 16)) & 1) << 4);
    }
}

/* Q2_K and Q3_K share the 2-bit layout: value e = 128n + 32j + l sits in
 * byte 32n + l of qs at bits 2j; Q3_K's third bit in hmask[l] bit 4n + j. */
static void pack_low2(const qerr_ggml_block *b, uint8_t *qs, uint8_t *hmask) {
    uint8_t lo[64] = {0}, hi[32] = {0};
    for (int e = 0; e < 256; e++) {
        int n = e / 128, j = (e % 128) / 32, l = e % 32;
        lo[32 * n + l] |= (uint8_t)((b->q[e] & 3) << (2 * j));
        hi[l] |= (uint8_t)(((b->q[e] >> 2) & 1) << (4 * n + j));
    }
    memcpy(qs, lo, sizeof lo);
    if (hmask) memcpy(hmask, hi, sizeof hi);
}

static void unpack_low2(const uint8_t *qs, const uint8_t *hmask, qerr_ggml_block *b) {
    for (int e = 0; e < 256; e++) {
        int n = e / 128, j = (e % 128) / 32, l = e % 32;
        unsigned v = (qs[32 * n + l] >> (2 * j)) & 3;
        if (hmask) v |= ((hmask[l] >> (4 * n + j)) & 1u) << 2;
        b->q[e] = (uint8_t)v;
    }
}

/* Q4_K and Q5_K: value e = 64j + 32h + l in qs[32j + l] (low nibble for
 * h = 0, high for h = 1); Q5_K's fifth bit in qh[l] bit 2j + h. */
static void pack_nibbles_k(const qerr_ggml_block *b, uint8_t *qs, uint8_t *qh) {
    memset(qs, 0, 128);
    if (qh) memset(qh, 0, 32);
    for (int e = 0; e < 256; e++) {
        int j = e / 64, h = (e % 64) / 32, l = e % 32;
        qs[32 * j + l] |= (uint8_t)((b->q[e] & 0xF) << (4 * h));
        if (qh) qh[l] |= (uint8_t)(((b->q[e] >> 4) & 1) << (2 * j + h));
    }
}

static void unpack_nibbles_k(const uint8_t *qs, const uint8_t *qh, qerr_ggml_block *b) {
    for (int e = 0; e < 256; e++) {
        int j = e / 64, h = (e % 64) / 32, l = e % 32;
        unsigned v = (qs[32 * j + l] >> (4 * h)) & 0xF;
        if (qh) v |= ((qh[l] >> (2 * j + h)) & 1u) << 4;
        b->q[e] = (uint8_t)v;
    }
}

/* Q6_K: value e = 128n + 32k + l: low nibble in ql[64n + 32(k&1) + l]
 * (high nibble for k >= 2), two high bits in qh[32n + l] at bits 2k. */
static void pack_q6(const qerr_ggml_block *b, uint8_t *ql, uint8_t *qh) {
    memset(ql, 0, 128);
    memset(qh, 0, 64);
    for (int e = 0; e < 256; e++) {
        int n = e / 128, k = (e % 128) / 32, l = e % 32;
        ql[64 * n + 32 * (k & 1) + l] |= (uint8_t)((b->q[e] & 0xF) << (4 * (k >> 1)));
        qh[32 * n + l] |= (uint8_t)((b->q[e] >> 4) << (2 * k));
    }
}

static void unpack_q6(const uint8_t *ql, const uint8_t *qh, qerr_ggml_block *b) {
    for (int e = 0; e < 256; e++) {
        int n = e / 128, k = (e % 128) / 32, l = e % 32;
        unsigned lo = (ql[64 * n + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 0xF;
        unsigned hi = (qh[32 * n + l] >> (2 * k)) & 3;
        b->q[e] = (uint8_t)(lo | hi << 4);
    }
}

void qerr__ggml_pack(const qerr_ggml_grid *g, const qerr_ggml_block *b, void *dst) {
    uint8_t *o = dst;
    switch (g->type) {
    case QERR_GGML_Q2_K: /* scales[16] qs[64] d dmin */
        for (int k = 0; k < 16; k++) o[k] = (uint8_t)(b->sc[k] | b->mn[k] << 4);
        pack_low2(b, o + 16, NULL);
        put16(o + 80, b->d);
        put16(o + 82, b->dmin);
        return;
    case QERR_GGML_Q3_K: /* hmask[32] qs[64] scales[12] d */
        pack_low2(b, o + 32, o);
        pack_scales_q3(b, o + 96);
        put16(o + 108, b->d);
        return;
    case QERR_GGML_Q4_K: /* d dmin scales[12] qs[128] */
    case QERR_GGML_Q5_K: /* d dmin scales[12] qh[32] qs[128] */
        put16(o, b->d);
        put16(o + 2, b->dmin);
        memset(o + 4, 0, 12);
        pack_scales_k4(b, o + 4);
        if (g->type == QERR_GGML_Q4_K) pack_nibbles_k(b, o + 16, NULL);
        else pack_nibbles_k(b, o + 48, o + 16);
        return;
    case QERR_GGML_Q6_K: /* ql[128] qh[64] scales[16] d */
        pack_q6(b, o, o + 128);
        for (int k = 0; k < 16; k++) o[192 + k] = (uint8_t)(int8_t)b->sc[k];
        put16(o + 208, b->d);
        return;
    default:
        pack_legacy(g, b, o);
    }
}

void qerr__ggml_unpack(const qerr_ggml_grid *g, const void *src, qerr_ggml_block *b) {
    const uint8_t *p = src;
    memset(b->mn, 0, sizeof b->mn);
    b->dmin = 0;
    switch (g->type) {
    case QERR_GGML_Q2_K:
        for (int k = 0; k < 16; k++) {
            b->sc[k] = p[k] & 0xF;
            b->mn[k] = p[k] >> 4;
        }
        unpack_low2(p + 16, NULL, b);
        b->d = get16(p + 80);
        b->dmin = get16(p + 82);
        return;
    case QERR_GGML_Q3_K:
        unpack_low2(p + 32, p, b);
        unpack_scales_q3(p + 96, b);
        b->d = get16(p + 108);
        return;
    case QERR_GGML_Q4_K:
    case QERR_GGML_Q5_K:
        b->d = get16(p);
        b->dmin = get16(p + 2);
        unpack_scales_k4(p + 4, b);
        if (g->type == QERR_GGML_Q4_K) unpack_nibbles_k(p + 16, NULL, b);
        else unpack_nibbles_k(p + 48, p + 16, b);
        return;
    case QERR_GGML_Q6_K:
        unpack_q6(p, p + 128, b);
        for (int k = 0; k < 16; k++) b->sc[k] = (int8_t)p[192 + k];
        b->d = get16(p + 208);
        return;
    default:
        unpack_legacy(g, p, b);
    }
}

void qerr__ggml_block_scales(const qerr_ggml_grid *g, const qerr_ggml_block *b, float *s,
                             float *m) {
    const float d = qerr__f16_to_f32(b->d), dmin = qerr__f16_to_f32(b->dmin);
    for (int k = 0; k < g->nsub; k++) {
        s[k] = d * (float)b->sc[k];
        m[k] = g->has_min ? dmin * (float)b->mn[k] : 0.0f;
    }
}

void qerr__ggml_block_values(const qerr_ggml_grid *g, const qerr_ggml_block *b, float *y) {
    float s[16], m[16];
    qerr__ggml_block_scales(g, b, s, m);
    for (int e = 0; e < g->elems; e++) {
        int k = e / g->sub;
        float v = s[k] * (float)((int)b->q[e] - g->zero);
        y[e] = g->has_min ? v - m[k] : v;
    }
}

int qerr__ggml_dequantize_row(int type, const void *src, int64_t n, float *dst) {
    const type_info *t = find_type(type);
    QERR_CHECK(t, QERR_E_INVALID_ARG, "ggml: unknown tensor type %d", type);
    QERR_CHECK(n >= 0 && n % t->elems == 0, QERR_E_SHAPE,
               "ggml: a %s row of %lld values is not a whole number of %d-value blocks", t->name,
               (long long)n, t->elems);
    QERR_CHECK(src && dst, QERR_E_INVALID_ARG, "ggml: NULL buffer");
    if (type == QERR_GGML_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return QERR_OK;
    }
    const uint8_t *p = src;
    if (type == QERR_GGML_F16) {
        for (int64_t i = 0; i < n; i++) dst[i] = qerr__f16_to_f32(get16(p + 2 * i));
        return QERR_OK;
    }
    qerr_ggml_grid g;
    qerr__ggml_grid(type, &g);
    qerr_ggml_block b;
    for (int64_t i = 0; i < n / t->elems; i++) {
        qerr__ggml_unpack(&g, p + (size_t)i * t->bytes, &b);
        qerr__ggml_block_values(&g, &b, dst + i * t->elems);
    }
    return QERR_OK;
}

/* ---- a result back to its block form ---------------------------------------
 * A result of the "ggml" method stores each sub-block's s_k = d * sc_k and
 * m_k = dmin * mn_k as floats. Every such product is exact in float32
 * (11-bit float16 mantissa times an integer below 2^8), so d is the float16
 * s_k / sc_k for the sub-block with the largest |s_k|: trying every sc in
 * range there finds a (d, sc) that reproduces all s_k bit for bit whenever
 * one exists. Any such decomposition dequantizes identically. */

static uint32_t fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static bool try_factor(const float *s, int n, int stride, uint16_t d, int lo, int hi,
                       int16_t *out) {
    const float df = qerr__f16_to_f32(d);
    if (!isfinite(df)) return false;
    for (int k = 0; k < n; k++) {
        float v = s[k * stride];
        long c = df != 0.0f ? lrintf(v / df) : lo;
        if (c < lo) c = lo;
        if (c > hi) c = hi;
        if (fbits(df * (float)c) != fbits(v)) return false;
        out[k] = (int16_t)c;
    }
    return true;
}

/* Find d (float16) and sc[k] in [lo, hi] with d * sc[k] == s[k] bitwise. */
static bool factor(const float *s, int n, int stride, int lo, int hi, uint16_t *d,
                   int16_t *sc) {
    int kmax = 0;
    for (int k = 1; k < n; k++)
        if (fabsf(s[k * stride]) > fabsf(s[kmax * stride])) kmax = k;
    const float smax = s[kmax * stride];
    if (smax == 0.0f) { /* all zero: any d of the zeros' sign with sc = 0 (or 1) */
        static const uint16_t cand[] = {0x3c00, 0xbc00, 0x0000, 0x8000};
        for (int i = 0; i < 4; i++)
            if (try_factor(s, n, stride, cand[i], lo, hi, sc)) return (*d = cand[i]), true;
        return false;
    }
    const int cmax = hi > -lo ? hi : -lo;
    for (int c = cmax; c >= 1; c--)
        for (int cc = c; cc >= -c; cc -= 2 * c) {
            if (cc < lo || cc > hi) continue;
            uint16_t dd = qerr__f32_to_f16(smax / (float)cc);
            if (try_factor(s, n, stride, dd, lo, hi, sc)) return (*d = dd), true;
        }
    return false;
}

int qerr__ggml_encode_result(const qerr_result *r, int type, void *dst, size_t dst_size) {
    QERR_CHECK(r && dst, QERR_E_INVALID_ARG, "ggml encode: NULL argument");
    qerr_ggml_grid g;
    QERR_CHECK(qerr__ggml_grid(type, &g), QERR_E_INVALID_ARG,
               "ggml encode: type %d is not a quantized ggml type", type);
    const char *tn = qerr__ggml_type_name(type);
    size_t rb = qerr__ggml_row_bytes(type, r->cols);
    QERR_CHECK(rb > 0, QERR_E_SHAPE, "ggml encode: %lld columns are not a multiple of %s's %d",
               (long long)r->cols, tn, g.elems);
    QERR_CHECK(dst_size >= rb * (size_t)r->rows, QERR_E_SHAPE,
               "ggml encode: %zu bytes given, %zu needed", dst_size, rb * (size_t)r->rows);
    QERR_CHECK(r->bits == g.bits && r->group_size == g.sub && r->g_idx_trivial &&
                   r->n_outliers == 0 && r->n_extras == 0,
               QERR_E_INVALID_ARG,
               "ggml encode: the result (%d bits, groups of %lld%s%s) is not on %s's grid "
               "(%d bits, groups of %d)",
               r->bits, (long long)r->group_size, r->g_idx_trivial ? "" : ", reordered",
               r->n_outliers ? ", outliers" : "", tn, g.bits, g.sub);
    const int64_t per_row = r->cols / g.elems;
    qerr_ggml_block b;
    memset(&b, 0, sizeof b);
    for (int64_t i = 0; i < r->rows; i++)
        for (int64_t blk = 0; blk < per_row; blk++) {
            const int64_t g0 = i * r->groups + blk * g.nsub;
            for (int k = 0; k < g.nsub; k++)
                QERR_CHECK(r->zeros[g0 + k] == g.zero, QERR_E_INVALID_ARG,
                           "ggml encode: row %lld block %lld: zero point %d, %s has %d",
                           (long long)i, (long long)blk, r->zeros[g0 + k], tn, g.zero);
            QERR_CHECK(factor(r->scales + g0, g.nsub, 1, g.sc_lo, g.sc_hi, &b.d, b.sc),
                       QERR_E_INVALID_ARG,
                       "ggml encode: row %lld block %lld: the scales are not a float16 times "
                       "%s's integers %d..%d",
                       (long long)i, (long long)blk, tn, g.sc_lo, g.sc_hi);
            if (g.has_min) {
                QERR_CHECK(r->mins && factor(r->mins + g0, g.nsub, 1, g.mn_lo, g.mn_hi, &b.dmin,
                                             b.mn),
                           QERR_E_INVALID_ARG,
                           "ggml encode: row %lld block %lld: the offsets are not a float16 "
                           "times %s's integers %d..%d",
                           (long long)i, (long long)blk, tn, g.mn_lo, g.mn_hi);
            } else if (r->mins) {
                for (int k = 0; k < g.nsub; k++)
                    QERR_CHECK(fbits(r->mins[g0 + k]) == 0, QERR_E_INVALID_ARG,
                               "ggml encode: row %lld block %lld: %s has no offsets",
                               (long long)i, (long long)blk, tn);
            }
            memcpy(b.q, r->codes + i * r->cols + blk * g.elems, (size_t)g.elems);
            qerr__ggml_pack(&g, &b, (uint8_t *)dst + (size_t)i * rb + (size_t)blk *
                                                      qerr__ggml_block_bytes(type));
        }
    return QERR_OK;
}
