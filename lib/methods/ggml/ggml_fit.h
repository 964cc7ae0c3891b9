/* Fitting one ggml block's grid (float16 d and dmin, integer sub-block
 * scales and offsets) to weighted values, and rounding values onto a fixed
 * block grid. Shared by the "ggml" method's solvers. */
#ifndef QERR_GGML_FIT_H
#define QERR_GGML_FIT_H

#include "../../io/ggml_blocks.h"

/* A block grid in float form: s[k], m[k] exactly as ggml dequantizes them. */
typedef struct qerr_ggml_bgrid {
    float s[16], m[16];
} qerr_ggml_bgrid;

/* Choose b->d, b->dmin, b->sc, b->mn (and the codes b->q by rounding) for
 * values x[0..elems) with importance w[0..elems) (>= 0) to make
 * sum w (x - y)^2 small, y being the block's dequantized values. */
void qerr__ggml_fit_block(const qerr_ggml_grid *g, const float *x, const float *w,
                          qerr_ggml_block *b);
/* Float form of b's grid. */
void qerr__ggml_bgrid(const qerr_ggml_grid *g, const qerr_ggml_block *b, qerr_ggml_bgrid *out);
/* Nearest code of x on sub-block k of a block grid, and its value (computed
 * as ggml dequantizes: s * (q - zero), then minus m). */
static inline int qerr__ggml_code(const qerr_ggml_grid *g, float s, float m, float x) {
    if (s == 0.0f) return g->zero;
    float v = __builtin_nearbyintf((x + m) / s) + (float)g->zero;
    if (!(v > 0.0f)) return 0; /* also NaN */
    if (v > (float)g->maxq) return g->maxq;
    return (int)v;
}
static inline float qerr__ggml_value(const qerr_ggml_grid *g, float s, float m, int q) {
    float v = s * (float)(q - g->zero);
    return g->has_min ? v - m : v;
}

#endif /* QERR_GGML_FIT_H */
