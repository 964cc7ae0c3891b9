/* Fake quantizers with STE and learnable clipping. A straight-through
 * gradient is, by definition, the exact gradient of the surrogate in which
 * each round(u) is frozen as u + (round(u0) - u0) and each clamped code is a
 * constant, both taken at the evaluation point. This test writes that
 * surrogate independently and compares the library's backward (to x and to
 * the clip parameters) with its central differences in float64, for every
 * mode x clip style, per group and shared. */
#include "testutil.h"

#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    qerr_fq_spec sp;
    int64_t rows, cols, g, ng;
    double *x, *clip, *r;
    /* frozen at the base point */
    double *delta, *z0;
    int *code; /* INT32_MIN = in range, else the clamped code */
} sur_ctx;

static double sig(double v) { return 1 / (1 + exp(-v)); }
static double clampd(double v, double lo, double hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* Surrogate loss; with `freeze` set it records delta, z and clamped codes. */
static double sur_loss(sur_ctx *c, bool freeze, double *yout) {
    const qerr_fq_spec *sp = &c->sp;
    double L = 0;
    for (int64_t r = 0; r < c->rows; r++)
        for (int64_t k = 0; k < c->ng; k++) {
            int64_t c0 = k * c->g, m = c0 + c->g < c->cols ? c->g : c->cols - c0;
            const double *x = c->x + r * c->cols + c0;
            const double *ab = sp->clip == QERR_FQ_CLIP_NONE ? NULL
                               : sp->shared                  ? c->clip
                                                             : c->clip + 2 * (r * c->ng + k);
            double sa = ab ? sig(ab[0]) : 1, sb = ab ? sig(ab[1]) : 1;
            double mx = x[0], mn = x[0];
            for (int64_t i = 1; i < m; i++) { mx = fmax(mx, x[i]); mn = fmin(mn, x[i]); }
            double xp[64];
            for (int64_t i = 0; i < m; i++)
                xp[i] = sp->clip == QERR_FQ_CLIP_CLAMP ? clampd(x[i], sb * mn, sa * mx) : x[i];
            double M = xp[0], N = xp[0];
            for (int64_t i = 1; i < m; i++) { M = fmax(M, xp[i]); N = fmin(N, xp[i]); }
            if (sp->mode != QERR_FQ_ASYM) { M = fmax(M, 0); N = fmin(N, 0); }
            double xmax = M, xmin = N;
            if (sp->clip == QERR_FQ_CLIP_SCALE) { xmax = sa * M; xmin = sb * N; }
            double s, z, lo, hi;
            if (sp->mode == QERR_FQ_SYM) {
                hi = (1 << (sp->bits - 1)) - 1;
                lo = -hi - 1;
                s = fmax(fmax(xmax, -xmin), 1e-5) / hi;
                z = 0;
            } else {
                lo = 0;
                hi = (1 << sp->bits) - 1;
                s = clampd((xmax - xmin) / hi, 1e-5, 1e4);
                if (freeze) c->z0[r * c->ng + k] = clampd(nearbyint(-xmin / s), -1e4, 1e4);
                z = c->z0[r * c->ng + k];
            }
            for (int64_t i = 0; i < m; i++) {
                int64_t e = r * c->cols + c0 + i;
                double u = xp[i] / s, y;
                if (freeze) {
                    double q = nearbyint(u) + z;
                    c->delta[e] = nearbyint(u) - u;
                    c->code[e] = q < lo ? (int)lo : q > hi ? (int)hi : INT32_MIN;
                }
                if (c->code[e] == INT32_MIN) y = xp[i] + s * c->delta[e];
                else y = s * (c->code[e] - z);
                if (yout) yout[e] = y;
                L += y * c->r[e];
            }
        }
    return L;
}

static double sur_loss_fn(void *p) { return sur_loss(p, false, NULL); }

#define FD_STEP 1e-7 /* small: the surrogate is only locally smooth */

static void check_one(int mode, int clip, bool shared, int64_t group, int bits, uint64_t seed) {
    sur_ctx c;
    memset(&c, 0, sizeof c);
    c.sp = (qerr_fq_spec){bits, mode, clip, group, shared};
    c.rows = 3;
    c.cols = 20;
    c.g = group > 0 && group < c.cols ? group : c.cols;
    c.ng = (c.cols + c.g - 1) / c.g;
    int64_t n = c.rows * c.cols, np = qerr__fq_clip_pairs(&c.sp, c.rows, c.cols);
    assert_int_equal(qerr__fq_check(&c.sp, c.cols), QERR_OK);
    float *f = malloc(sizeof(float) * (size_t)(2 * n));
    tu_random(f, 2 * n, seed);
    c.x = malloc(sizeof(double) * (size_t)n);
    c.r = malloc(sizeof(double) * (size_t)n);
    c.delta = malloc(sizeof(double) * (size_t)n);
    c.code = malloc(sizeof(int) * (size_t)n);
    c.z0 = calloc((size_t)(c.rows * c.ng), sizeof(double));
    c.clip = calloc((size_t)(2 * np + 2), sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        c.x[i] = f[i] + (i % 7 == 0 ? 0.6 * f[n + i] : 0); /* a few larger values */
        c.r[i] = f[n + i];
    }
    if (mode == QERR_FQ_ASYM) /* OmniQuant's range need not hold 0: shift a row */
        for (int64_t j = 0; j < c.cols; j++) c.x[c.cols + j] += 1.5;
    for (int64_t i = 0; i < 2 * np; i++) c.clip[i] = 1.0 + 0.3 * (double)(i % 5); /* 0.73..0.9 */
    double *y = malloc(sizeof(double) * (size_t)n), *ys = malloc(sizeof(double) * (size_t)n);
    qerr__fq_fwd_d(&c.sp, c.rows, c.cols, c.clip, c.x, y);
    sur_loss(&c, true, ys);
    double fwd = 0;
    for (int64_t i = 0; i < n; i++) fwd = fmax(fwd, fabs(y[i] - ys[i]));
    double *gx = malloc(sizeof(double) * (size_t)n), *gc = calloc((size_t)(2 * np + 2), sizeof(double));
    assert_int_equal(qerr__fq_bwd_d(&c.sp, c.rows, c.cols, c.clip, c.x, c.r, gx, gc), QERR_OK);
    double ex = tu_fd_error_step(sur_loss_fn, &c, c.x, n, gx, FD_STEP);
    double ec = np ? tu_fd_error_step(sur_loss_fn, &c, c.clip, 2 * np, gc, FD_STEP) : 0;
    int clamped = 0;
    for (int64_t i = 0; i < n; i++) clamped += c.code[i] != INT32_MIN;
    print_message("mode %d clip %d shared %d group %lld: fwd %.1e gx %.2e gclip %.2e (%d codes "
                  "clamped)\n",
                  mode, clip, shared, (long long)group, fwd, ex, ec, clamped);
    assert_true(fwd < 1e-12);
    assert_true(ex < 1e-5);
    assert_true(ec < 1e-5);
    if (clip != QERR_FQ_CLIP_NONE) { /* the clip parameters do get a gradient */
        double s = 0;
        for (int64_t i = 0; i < 2 * np; i++) s += fabs(gc[i]);
        assert_true(s > 0);
    }
    free(f); free(c.x); free(c.r); free(c.delta); free(c.code); free(c.z0); free(c.clip);
    free(y); free(ys); free(gx); free(gc);
}

static void ste_gradients(void **state) {
    (void)state;
    const int modes[] = {QERR_FQ_SYM, QERR_FQ_ASYM, QERR_FQ_ASYM0};
    const int clips[] = {QERR_FQ_CLIP_NONE, QERR_FQ_CLIP_SCALE, QERR_FQ_CLIP_CLAMP};
    uint64_t seed = 100;
    for (int mi = 0; mi < 3; mi++)
        for (int ci = 0; ci < 3; ci++)
            for (int sh = 0; sh < 2; sh++) {
                check_one(modes[mi], clips[ci], sh == 1, -1, 4, seed++);
                check_one(modes[mi], clips[ci], sh == 1, 8, 3, seed++); /* ragged groups */
            }
}

/* Forward semantics against the grids of algorithms.md §0.2. */
static void grids(void **state) {
    (void)state;
    double x[8] = {-0.7, 0.35, 0.1, -0.2, 0.69, 0.0, 0.05, -0.33}, y[8];
    /* FlatQuant sym int4: s = 0.7/7 = 0.1, codes in [-8, 7] */
    qerr_fq_spec sym = {4, QERR_FQ_SYM, QERR_FQ_CLIP_NONE, -1, false};
    qerr__fq_fwd_d(&sym, 1, 8, NULL, x, y);
    for (int i = 0; i < 8; i++) {
        double q = y[i] / 0.1;
        assert_true(fabs(q - nearbyint(q)) < 1e-9 && q >= -8 && q <= 7);
        assert_true(fabs(y[i] - x[i]) <= 0.05 + 1e-12);
    }
    /* OmniQuant asym int2 on [1, 4]: s = 1, z = -1, values {1, 2, 3, 4} */
    double a[4] = {1.0, 2.4, 2.6, 4.0}, b[4];
    qerr_fq_spec asym = {2, QERR_FQ_ASYM, QERR_FQ_CLIP_NONE, -1, false};
    qerr__fq_fwd_d(&asym, 1, 4, NULL, a, b);
    assert_true(b[0] == 1.0 && b[1] == 2.0 && b[2] == 3.0 && b[3] == 4.0);
    /* LAC at sigmoid = 0.5 halves the range: absmax 0.35, s = 0.05, the
     * extremes are clamped to codes 7 and -8 */
    double clip[2] = {0.0, 0.0};
    qerr_fq_spec lac = {4, QERR_FQ_SYM, QERR_FQ_CLIP_SCALE, -1, true};
    qerr__fq_fwd_d(&lac, 1, 8, clip, x, y);
    assert_true(fabs(y[4] - 0.35) < 1e-12 && fabs(y[0] + 0.4) < 1e-12);
    /* bad settings */
    qerr_fq_spec bad = {1, QERR_FQ_SYM, QERR_FQ_CLIP_NONE, -1, false};
    assert_int_equal(qerr__fq_check(&bad, 8), QERR_E_RANGE);
    bad.bits = 4;
    bad.mode = 9;
    assert_int_equal(qerr__fq_check(&bad, 8), QERR_E_INVALID_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(ste_gradients), cmocka_unit_test(grids)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
