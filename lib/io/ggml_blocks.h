/* ggml's block formats (the quantized tensor types of GGUF files): sizes,
 * names, the bytes of one block, and dequantization that is bit for bit
 * ggml's dequantize_row_*. Formats only: choosing the codes is the "ggml"
 * method's job (lib/methods/ggml/). Never installed. */
#ifndef QERR_GGML_BLOCKS_H
#define QERR_GGML_BLOCKS_H

#include "../core/internal.h"

/* ggml's own type numbers. */
enum {
    QERR_GGML_F32 = 0,
    QERR_GGML_F16 = 1,
    QERR_GGML_Q4_0 = 2,
    QERR_GGML_Q4_1 = 3,
    QERR_GGML_Q5_0 = 6,
    QERR_GGML_Q5_1 = 7,
    QERR_GGML_Q8_0 = 8,
    QERR_GGML_Q2_K = 10,
    QERR_GGML_Q3_K = 11,
    QERR_GGML_Q4_K = 12,
    QERR_GGML_Q5_K = 13,
    QERR_GGML_Q6_K = 14,
};

int qerr__ggml_type_from_name(const char *name); /* "q4_k" / "Q4_K" -> 12, -1 unknown */
const char *qerr__ggml_type_name(int type);      /* "Q4_K"; NULL when unknown */
int64_t qerr__ggml_block_elems(int type);        /* 1, 32 or 256; 0 when unknown */
size_t qerr__ggml_block_bytes(int type);         /* bytes per block; 0 when unknown */
size_t qerr__ggml_row_bytes(int type, int64_t n); /* 0 if n % block != 0 */
/* dst[0..n) = ggml's dequantization of one row of n elements at src. */
int qerr__ggml_dequantize_row(int type, const void *src, int64_t n, float *dst);
/* A "ggml" method result's rows x cols matrix in ggml's bytes, row by row;
 * QERR_E_INVALID_ARG when r is not on that type's grid. */
int qerr__ggml_encode_result(const qerr_result *r, int type, void *dst, size_t dst_size);

/* ---- the grid of a quantized type, for the quantizer ----------------------
 * Every quantized type is the same shape: a block of `elems` values in
 * sub-blocks of `sub` values; sub-block k has scale s_k = d * sc_k and
 * offset m_k = dmin * mn_k (d, dmin float16, sc_k / mn_k small integers),
 * and value e is s_k * (q_e - zero) - m_k with the code q_e in 0..maxq.
 * Types without offsets have has_min false (m_k is not subtracted at all).
 * The legacy types have one sub-block with sc = 1 (and mn = 1 for Q4_1 and
 * Q5_1, whose stored min is -dmin). */
typedef struct qerr_ggml_grid {
    int type;
    int elems, sub, nsub; /* block values, sub-block values, sub-blocks */
    int bits, maxq, zero;
    int sc_lo, sc_hi;     /* range of sc_k */
    bool has_min;
    int mn_lo, mn_hi;     /* range of mn_k when has_min */
} qerr_ggml_grid;
/* The grid of a quantized type; false for F32, F16 and unknown types. */
bool qerr__ggml_grid(int type, qerr_ggml_grid *g);

/* One block in that common form. */
typedef struct qerr_ggml_block {
    uint16_t d, dmin; /* float16 bits */
    int16_t sc[16], mn[16];
    uint8_t q[256];
} qerr_ggml_block;

/* The bytes of one block from its common form (values assumed in range). */
void qerr__ggml_pack(const qerr_ggml_grid *g, const qerr_ggml_block *b, void *dst);
void qerr__ggml_unpack(const qerr_ggml_grid *g, const void *src, qerr_ggml_block *b);
/* Sub-block scales and offsets as ggml computes them (float16 times int in
 * float32); offsets are 0 without has_min. */
void qerr__ggml_block_scales(const qerr_ggml_grid *g, const qerr_ggml_block *b, float *s,
                             float *m);
/* The block's values exactly as ggml dequantizes them. */
void qerr__ggml_block_values(const qerr_ggml_grid *g, const qerr_ggml_block *b, float *y);

#endif /* QERR_GGML_BLOCKS_H */
