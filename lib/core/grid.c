/* The uniform min-max grid of GPTQ/QuantEase, with GPTQ's MSE clip search. */
#include "internal.h"

#include <float.h>
#include <math.h>

qerr_grid qerr__grid_make(int bits, bool sym) {
    qerr_grid g = {bits, (1 << bits) - 1, sym, false};
    return g;
}

/* s (positive, finite) as the nearest float16 value, kept inside float16's
 * positive range: 2^-24 (smallest subnormal) .. 65504 (largest finite). */
static float f16_scale(float s) {
    float h = qerr__f16_to_f32(qerr__f32_to_f16(s));
    if (!(h > 0.0f)) return 5.9604644775390625e-8f;
    if (!(h <= 65504.0f)) return 65504.0f;
    return h;
}

void qerr__grid_from_range(const qerr_grid *g, float xmin, float xmax, float *scale,
                           int32_t *zero) {
    if (xmin > 0) xmin = 0;
    if (xmax < 0) xmax = 0;
    if (g->sym) {
        float m = fmaxf(-xmin, xmax);
        xmax = m;
        if (xmin < 0) xmin = -m;
    }
    if (xmin == 0 && xmax == 0) {
        xmin = -1;
        xmax = 1;
    }
    float s = (xmax - xmin) / (float)g->maxq;
    /* A range of subnormal width would give s = 0 (or a subnormal s whose
     * reciprocal overflows); the smallest normal float keeps x / s finite
     * and z = round(-xmin / s) inside [0, maxq]. */
    if (!(s >= FLT_MIN)) s = FLT_MIN;
    if (g->f16_scale) {
        /* the zero point follows the stored scale; a scale clamped to 65504
         * (ranges past float16's) would push it beyond the codes */
        s = f16_scale(s);
        *scale = s;
        float z = g->sym ? (float)((g->maxq + 1) / 2) : nearbyintf(-xmin / s);
        *zero = (int32_t)fminf(fmaxf(z, 0.0f), (float)g->maxq);
        return;
    }
    *scale = s;
    *zero = g->sym ? (g->maxq + 1) / 2 : (int32_t)nearbyintf(-xmin / s);
}

/* sum |q(x) - x|^2.4 for one candidate range */
static double clip_error(const qerr_grid *g, const float *x, int64_t n, int64_t stride, float s,
                         int32_t z) {
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i * stride];
        float d = fabsf(qerr__grid_round(g, v, s, z) - v);
        e += pow((double)d, 2.4);
    }
    return e;
}

void qerr__grid_fit(const qerr_grid *g, const float *x, int64_t n, int64_t stride,
                    bool clip_search, float *scale, int32_t *zero) {
    float xmin = 0, xmax = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i * stride];
        if (v < xmin) xmin = v;
        if (v > xmax) xmax = v;
    }
    qerr__grid_from_range(g, xmin, xmax, scale, zero);
    if (!clip_search || (xmin == 0 && xmax == 0)) return;
    if (g->sym) { /* the loop shrinks the symmetric range as GPTQ does */
        float m = fmaxf(-xmin, xmax);
        xmax = m;
        if (xmin < 0) xmin = -m;
    }
    double best = clip_error(g, x, n, stride, *scale, *zero);
    const int steps = 100, max_i = 80; /* grid 100, maxshrink 0.8 */
    for (int i = 1; i < max_i; i++) {
        float p = 1.0f - (float)i / (float)steps;
        float s;
        int32_t z;
        qerr__grid_from_range(g, p * xmin, p * xmax, &s, &z);
        double e = clip_error(g, x, n, stride, s, z);
        if (e < best) {
            best = e;
            *scale = s;
            *zero = z;
        }
    }
}
