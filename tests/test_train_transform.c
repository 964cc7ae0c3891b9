/* Kronecker transform and its Cayley/SVD factors: forward against the dense
 * Kronecker product, backward against central differences in float64, the
 * analytic inverse against the identity, and the n1 x n2 choice. */
#include "testutil.h"

#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

static double *rnd(int64_t n, uint64_t seed) {
    float *f = malloc(sizeof(float) * (size_t)n);
    double *d = malloc(sizeof(double) * (size_t)n);
    tu_random(f, n, seed);
    for (int64_t i = 0; i < n; i++) d[i] = f[i];
    free(f);
    return d;
}

typedef struct { int64_t rows, n1, n2; double *p1, *p2, *c, *x, *y, *r; } kr_ctx;
static double kr_loss(void *p) {
    kr_ctx *k = p;
    int64_t n = k->n1 * k->n2;
    assert_int_equal(qerr__kron_fwd_d(k->rows, k->n1, k->n2, k->p1, k->p2, k->c, k->x, k->y), 0);
    double s = 0;
    for (int64_t i = 0; i < k->rows * n; i++) s += k->y[i] * k->r[i];
    return s;
}

static void kron_forward_backward(void **state) {
    (void)state;
    const int64_t rows = 4, n1 = 3, n2 = 5, n = 15;
    kr_ctx k = {rows, n1, n2, rnd(9, 1), rnd(25, 2), rnd(n, 3), rnd(rows * n, 4),
                rnd(rows * n, 0), rnd(rows * n, 5)};
    for (int64_t j = 0; j < n; j++) k.c[j] += 1.5;
    kr_loss(&k);
    /* dense: y = (x .* c) (P1 (x) P2), (P1 (x) P2)[i1*n2+i2][j1*n2+j2] = P1[i1][j1] P2[i2][j2] */
    double worst = 0;
    for (int64_t t = 0; t < rows; t++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t i = 0; i < n; i++)
                s += k.x[t * n + i] * k.c[i] * k.p1[(i / n2) * n1 + j / n2] *
                     k.p2[(i % n2) * n2 + j % n2];
            worst = fmax(worst, fabs(s - k.y[t * n + j]));
        }
    print_message("kron vs dense: %.1e\n", worst);
    assert_true(worst < 1e-13);
    double *gx = malloc(sizeof(double) * rows * n), *g1 = calloc(9, sizeof(double)),
           *g2 = calloc(25, sizeof(double)), *gc = calloc(n, sizeof(double));
    assert_int_equal(qerr__kron_bwd_d(rows, n1, n2, k.p1, k.p2, k.c, k.x, k.r, gx, g1, g2, gc), 0);
    double ex = tu_fd_error(kr_loss, &k, k.x, rows * n, gx), e1 = tu_fd_error(kr_loss, &k, k.p1, 9, g1),
           e2 = tu_fd_error(kr_loss, &k, k.p2, 25, g2), ec = tu_fd_error(kr_loss, &k, k.c, n, gc);
    print_message("kron backward: gx %.1e gP1 %.1e gP2 %.1e gc %.1e\n", ex, e1, e2, ec);
    assert_true(ex < 1e-6 && e1 < 1e-6 && e2 < 1e-6 && ec < 1e-6);
    /* the float variant agrees with the double one */
    float p1f[9], p2f[25], cf[15], xf[60], yf[60];
    for (int i = 0; i < 9; i++) p1f[i] = (float)k.p1[i];
    for (int i = 0; i < 25; i++) p2f[i] = (float)k.p2[i];
    for (int i = 0; i < 15; i++) cf[i] = (float)k.c[i];
    for (int i = 0; i < 60; i++) xf[i] = (float)k.x[i];
    assert_int_equal(qerr__kron_fwd_f(rows, n1, n2, p1f, p2f, cf, xf, yf), 0);
    for (int i = 0; i < 60; i++) assert_true(fabs(yf[i] - k.y[i]) < 1e-5);
    free(k.p1); free(k.p2); free(k.c); free(k.x); free(k.y); free(k.r);
    free(gx); free(g1); free(g2); free(gc);
}

typedef struct { qerr_svd_factor f; double *r1, *r2; } svd_ctx;
static double svd_loss(void *p) {
    svd_ctx *s = p;
    assert_int_equal(qerr__svd_factor_update(&s->f), 0);
    double L = 0;
    for (int64_t i = 0; i < s->f.n * s->f.n; i++) L += s->f.p[i] * s->r1[i] + s->f.pinvt[i] * s->r2[i];
    return L;
}

static void svd_factor(void **state) {
    (void)state;
    const int64_t n = 6;
    svd_ctx s;
    assert_int_equal(qerr__svd_factor_init(&s.f, n), 0);
    for (int64_t i = 0; i < n * n; i++) /* init is the identity */
        assert_true(s.f.p[i] == (i % (n + 1) == 0 ? 1.0 : 0.0));
    qerr_rng rng;
    qerr__rng_seed(&rng, 7);
    qerr__svd_factor_randomize(&s.f, &rng, 0.5);
    for (int64_t i = 0; i < n; i++) s.f.sigma[i] = 0.6 + 0.2 * (double)i;
    assert_int_equal(qerr__svd_factor_update(&s.f), 0);
    /* U orthogonal, P (P^-T)^T = I */
    double eo = 0, ei = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double uu = 0, pi = 0;
            for (int64_t k = 0; k < n; k++) {
                uu += s.f.u[k * n + i] * s.f.u[k * n + j];
                pi += s.f.p[i * n + k] * s.f.pinvt[j * n + k];
            }
            eo = fmax(eo, fabs(uu - (i == j)));
            ei = fmax(ei, fabs(pi - (i == j)));
        }
    print_message("U^T U - I %.1e, P P^-1 - I %.1e\n", eo, ei);
    assert_true(eo < 1e-13 && ei < 1e-13);
    s.r1 = rnd(n * n, 8);
    s.r2 = rnd(n * n, 9);
    double *gu = calloc(n * n, sizeof(double)), *gv = calloc(n * n, sizeof(double)),
           *gs = calloc(n, sizeof(double));
    assert_int_equal(qerr__svd_factor_backward(&s.f, s.r1, s.r2, gu, gv, gs), 0);
    /* the upper triangle and diagonal of the raw parameters are unused */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i; j < n; j++) assert_true(gu[i * n + j] == 0 && gv[i * n + j] == 0);
    double eu = tu_fd_error(svd_loss, &s, s.f.raw_u, n * n, gu);
    double ev = tu_fd_error(svd_loss, &s, s.f.raw_v, n * n, gv);
    double es = tu_fd_error(svd_loss, &s, s.f.sigma, n, gs);
    print_message("Cayley/SVD backward: raw_u %.1e raw_v %.1e sigma %.1e\n", eu, ev, es);
    assert_true(eu < 1e-6 && ev < 1e-6 && es < 1e-6);
    /* a zero singular value is an error, not a division by zero */
    s.f.sigma[2] = 0;
    assert_int_equal(qerr__svd_factor_update(&s.f), QERR_E_NUMERIC);
    qerr__svd_factor_free(&s.f);
    free(s.r1); free(s.r2); free(gu); free(gv); free(gs);
}

static void decompose(void **state) {
    (void)state;
    const int64_t tab[][3] = {{4096, 64, 64},   {5120, 64, 80},   {8192, 64, 128},
                              {11008, 86, 128}, {13824, 108, 128}, {14336, 112, 128},
                              {28672, 128, 224}, {3584, 56, 64},   {18944, 128, 148},
                              {64, 8, 8},       {256, 16, 16},    {768, 24, 32},
                              {7, 1, 7}};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        int64_t a, b;
        qerr__decompose_dim(tab[i][0], &a, &b);
        assert_int_equal(a, tab[i][1]);
        assert_int_equal(b, tab[i][2]);
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Run-time cost of x -> x P for 256 tokens: Kronecker form against a dense
 * n x n matrix (docs/flatquant.md). A measurement: QERR_FLATQUANT_LONG=1. */
static void kron_cost(void **state) {
    (void)state;
    if (!getenv("QERR_FLATQUANT_LONG")) {
        print_message("[  SKIP    ] set QERR_FLATQUANT_LONG=1 to run\n");
        skip();
    }
    const int64_t rows = 256, sizes[] = {1024, 4096, 11008};
    for (int k = 0; k < 3; k++) {
        int64_t n = sizes[k], n1, n2;
        qerr__decompose_dim(n, &n1, &n2);
        float *x = malloc(sizeof(float) * (size_t)(rows * n)), *y = malloc(sizeof(float) * (size_t)(rows * n));
        float *p1 = malloc(sizeof(float) * (size_t)(n1 * n1)), *p2 = malloc(sizeof(float) * (size_t)(n2 * n2));
        float *P = malloc(sizeof(float) * (size_t)(n * n));
        assert_non_null(P);
        tu_random(x, rows * n, 1);
        tu_random(p1, n1 * n1, 2);
        tu_random(p2, n2 * n2, 3);
        tu_random(P, n * n, 4);
        double t0 = now_s();
        int reps = 0;
        while (now_s() - t0 < 0.5 || reps < 3) {
            assert_int_equal(qerr__kron_fwd_f(rows, n1, n2, p1, p2, NULL, x, y), 0);
            reps++;
        }
        double tk = (now_s() - t0) / reps;
        t0 = now_s();
        int dreps = 0;
        while (now_s() - t0 < 0.5 || dreps < 2) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)n, (int)n, 1, x,
                        (int)n, P, (int)n, 0, y, (int)n);
            dreps++;
        }
        double td = (now_s() - t0) / dreps;
        print_message("n = %lld (%lld x %lld), %lld tokens: Kronecker %.3f ms, dense %.3f ms "
                      "(%.1fx); parameters %lld vs %lld\n",
                      (long long)n, (long long)n1, (long long)n2, (long long)rows, 1e3 * tk,
                      1e3 * td, td / tk, (long long)(n1 * n1 + n2 * n2), (long long)(n * n));
        free(x); free(y); free(p1); free(p2); free(P);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(kron_forward_backward),
                                       cmocka_unit_test(svd_factor), cmocka_unit_test(decompose),
                                       cmocka_unit_test(kron_cost)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
