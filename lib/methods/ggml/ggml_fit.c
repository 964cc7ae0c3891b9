/* Weighted fit of one ggml block's grid. Three steps: a continuous
 * (scale, offset) per sub-block by weighted least squares over a sweep of
 * candidate ranges; d (and dmin) in float16 from a few candidate top levels;
 * then, d fixed, each sub-block's integer scale (and offset) from its
 * neighbours of the rounded value, every candidate judged by the weighted
 * error of the values actually representable, codes re-rounded each time. */
#include "ggml_fit.h"

#include <math.h>
#include <string.h>

void qerr__ggml_bgrid(const qerr_ggml_grid *g, const qerr_ggml_block *b, qerr_ggml_bgrid *out) {
    qerr__ggml_block_scales(g, b, out->s, out->m);
}

/* Round to nearest even without a libm call (|x| < 2^22; the callers clamp
 * first). */
static inline float round_ne(float x) { return (x + 12582912.0f) - 12582912.0f; }

/* Weighted error of x on the grid (s, m), codes rounded (by the reciprocal:
 * this only ranks candidates, the stored codes are rounded exactly). */
static double sub_error(const qerr_ggml_grid *g, const float *x, const float *w, int n, float s,
                        float m) {
    if (s == 0.0f) {
        double e = 0;
        for (int i = 0; i < n; i++) {
            float d = x[i] - qerr__ggml_value(g, s, m, g->zero);
            e += (double)w[i] * (double)d * (double)d;
        }
        return e;
    }
    const float inv = 1.0f / s, lo = (float)-g->zero, hi = (float)(g->maxq - g->zero);
    const float mm = g->has_min ? m : 0.0f;
    float e = 0;
    for (int i = 0; i < n; i++) {
        float t = (x[i] + mm) * inv;
        t = t < lo ? lo : t > hi ? hi : t;
        float d = x[i] - (s * round_ne(t) - mm);
        e += w[i] * d * d;
    }
    return (double)e;
}

/* Least-squares (s, m) for fixed integer levels q (y = s q - m, m >= 0), or
 * s alone (y = s q) when !with_min. */
static void ls_fit(const float *x, const float *w, const int *q, int n, bool with_min, float *s,
                   float *m) {
    double A = 0, B = 0, C = 0, X = 0, Y = 0;
    for (int i = 0; i < n; i++) {
        double wi = w[i], qi = q[i];
        A += wi; B += wi * qi; C += wi * qi * qi; X += wi * x[i]; Y += wi * x[i] * qi;
    }
    *m = 0;
    *s = C > 0 ? (float)(Y / C) : 0.0f;
    if (!with_min) return;
    double det = A * C - B * B;
    if (det > 0) {
        double ss = (Y * A - X * B) / det, mm = (B * Y - C * X) / det;
        if (mm >= 0) {
            *s = (float)ss;
            *m = (float)mm;
        }
    }
}

/* Continuous sub-block fit: levels from a sweep of ranges, LS for each. */
static void fit_sub(const qerr_ggml_grid *g, const float *x, const float *w, int n, float *s_out,
                    float *m_out) {
    float xmin = 0, xmax = 0, amax = 0, xam = 0;
    for (int i = 0; i < n; i++) {
        if (x[i] < xmin) xmin = x[i];
        if (x[i] > xmax) xmax = x[i];
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), xam = x[i];
    }
    *s_out = 0;
    *m_out = g->has_min ? -xmin : 0;
    if (amax == 0) return;
    double best = sub_error(g, x, w, n, *s_out, *m_out);
    int q[256];
    const int lo = -g->zero, hi = g->maxq - g->zero;
    /* without offsets the largest magnitude goes to either end of the
     * asymmetric code range (the scale may be negative: d is signed) */
    for (int cand = 0; cand < (g->has_min ? 21 : 42); cand++) {
        const int is = cand % 21 - 10;
        float iscale;
        if (g->has_min) iscale = ((float)g->maxq + 0.1f * (float)is) / (xmax - xmin);
        else iscale = ((float)(cand < 21 ? lo : hi) + 0.1f * (float)is) / xam;
        if (!(iscale > 0) && !(iscale < 0)) continue;
        for (int i = 0; i < n; i++) {
            float v = g->has_min ? (x[i] - xmin) * iscale : x[i] * iscale;
            float vlo = g->has_min ? 0.0f : (float)lo, vhi = g->has_min ? (float)g->maxq : (float)hi;
            q[i] = (int)round_ne(v < vlo ? vlo : v > vhi ? vhi : v);
        }
        float s, m;
        ls_fit(x, w, q, n, g->has_min, &s, &m);
        if (g->has_min && s < 0) continue;
        double e = sub_error(g, x, w, n, s, m);
        if (e < best) {
            best = e;
            *s_out = s;
            *m_out = m;
        }
    }
}

static int clampi(long v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : (int)v; }

/* With d and dmin fixed: best integer sc/mn per sub-block among the
 * neighbours of the rounded continuous ones; returns the total error. */
static double choose_ints(const qerr_ggml_grid *g, const float *x, const float *w,
                          const float *sc, const float *mc, qerr_ggml_block *b) {
    const float d = qerr__f16_to_f32(b->d), dm = qerr__f16_to_f32(b->dmin);
    double total = 0;
    for (int k = 0; k < g->nsub; k++) {
        const float *xk = x + k * g->sub, *wk = w + k * g->sub;
        long c0 = d != 0 ? lrintf(sc[k] / d) : 0, m0 = dm != 0 && g->has_min ? lrintf(mc[k] / dm) : 0;
        double best = INFINITY;
        int rad = g->sc_lo == g->sc_hi ? 0 : 1, mrad = g->has_min && g->mn_lo != g->mn_hi ? 1 : 0;
        for (long c = c0 - rad; c <= c0 + rad; c++)
            for (long mm = m0 - mrad; mm <= m0 + mrad; mm++) {
                int ci = clampi(c, g->sc_lo, g->sc_hi);
                int mi = g->has_min ? clampi(mm, g->mn_lo, g->mn_hi) : 0;
                float s = d * (float)ci, m = g->has_min ? dm * (float)mi : 0.0f;
                double e = sub_error(g, xk, wk, g->sub, s, m);
                if (e < best) {
                    best = e;
                    b->sc[k] = (int16_t)ci;
                    b->mn[k] = (int16_t)mi;
                }
            }
        total += best;
    }
    return total;
}

static void round_codes(const qerr_ggml_grid *g, const float *x, qerr_ggml_block *b) {
    qerr_ggml_bgrid bg;
    qerr__ggml_bgrid(g, b, &bg);
    for (int e = 0; e < g->elems; e++) {
        int k = e / g->sub;
        b->q[e] = (uint8_t)qerr__ggml_code(g, bg.s[k], bg.m[k], x[e]);
    }
}

void qerr__ggml_fit_block(const qerr_ggml_grid *g, const float *x, const float *w,
                          qerr_ggml_block *b) {
    float sc[16], mc[16];
    memset(b, 0, sizeof *b);
    for (int k = 0; k < g->nsub; k++) fit_sub(g, x + k * g->sub, w + k * g->sub, g->sub, &sc[k], &mc[k]);
    if (g->sc_lo == g->sc_hi) { /* legacy: d = s, dmin = m directly (and neighbours) */
        b->sc[0] = 1;
        b->mn[0] = g->has_min ? 1 : 0;
        uint16_t d0 = qerr__f32_to_f16(sc[0]), m0 = g->has_min ? qerr__f32_to_f16(mc[0]) : 0;
        double best = INFINITY;
        qerr_ggml_block t = *b;
        for (int dd = -1; dd <= 1; dd++)
            for (int dm = g->has_min ? -1 : 0; dm <= (g->has_min ? 1 : 0); dm++) {
                t.d = (uint16_t)(d0 + dd);
                t.dmin = (uint16_t)(m0 + dm);
                if (!isfinite(qerr__f16_to_f32(t.d)) || !isfinite(qerr__f16_to_f32(t.dmin))) continue;
                double e = sub_error(g, x, w, g->sub, qerr__f16_to_f32(t.d),
                                     g->has_min ? qerr__f16_to_f32(t.dmin) : 0.0f);
                if (e < best) best = e, b->d = t.d, b->dmin = t.dmin;
            }
        round_codes(g, x, b);
        return;
    }
    /* the sub-block scale of largest magnitude sets d; offsets likewise */
    float smax = 0, mmax = 0;
    for (int k = 0; k < g->nsub; k++) {
        if (fabsf(sc[k]) > fabsf(smax)) smax = sc[k];
        if (g->has_min && mc[k] > mmax) mmax = mc[k];
    }
    double best = INFINITY;
    qerr_ggml_block t = *b;
    for (int ti = 0; ti < 4; ti++) {
        /* the largest scale lands on the top level (or, on signed grids,
         * the bottom one: ggml maps it to -32 / -128), or one to two below */
        int top = g->sc_lo < 0 ? (ti % 2 ? g->sc_lo + ti / 2 : g->sc_hi - ti / 2) : g->sc_hi - ti;
        if (top == 0) continue;
        t.d = smax != 0 ? qerr__f32_to_f16(smax / (float)top) : 0;
        if (!isfinite(qerr__f16_to_f32(t.d))) continue;
        for (int mi = 0; mi < (g->has_min ? 3 : 1); mi++) {
            t.dmin = g->has_min && mmax > 0 ? qerr__f32_to_f16(mmax / (float)(g->mn_hi - mi)) : 0;
            double e = choose_ints(g, x, w, sc, mc, &t);
            if (e < best) {
                best = e;
                *b = t;
            }
        }
    }
    round_codes(g, x, b);
}
