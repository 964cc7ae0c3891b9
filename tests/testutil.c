#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <sys/stat.h>

static uint64_t next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double unif(uint64_t *s) { return (double)(next(s) >> 11) * 0x1.0p-53; }
static double gauss(uint64_t *s) {
    double u = unif(s) + 1e-300, v = unif(s);
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

void tu_random(float *x, int64_t n, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(2 * unif(&seed) - 1);
}

double *tu_random_d(int64_t n, uint64_t seed, double scale, double shift) {
    float *f = malloc(sizeof(float) * (size_t)n);
    double *d = malloc(sizeof(double) * (size_t)n);
    assert_non_null(f);
    assert_non_null(d);
    tu_random(f, n, seed);
    for (int64_t i = 0; i < n; i++) d[i] = shift + scale * f[i];
    free(f);
    return d;
}

float *tu_correlated_rows(int64_t n_rows, int64_t cols, double strength, uint64_t seed) {
    float *A = malloc(sizeof(float) * (size_t)(cols * cols));
    float *Z = malloc(sizeof(float) * (size_t)(n_rows * cols));
    float *X = calloc((size_t)(n_rows * cols), sizeof(float));
    assert_non_null(A);
    assert_non_null(Z);
    assert_non_null(X);
    for (int64_t i = 0; i < cols * cols; i++) A[i] = (float)(strength * gauss(&seed) / sqrt((double)cols));
    for (int64_t i = 0; i < cols; i++) A[i * cols + i] += 1.0f;
    /* per-column scales spread over two decades, like real activations */
    for (int64_t i = 0; i < n_rows * cols; i++)
        Z[i] = (float)(gauss(&seed) * pow(10.0, (double)((i % cols) % 7) / 3.0));
    for (int64_t r = 0; r < n_rows; r++)
        for (int64_t k = 0; k < cols; k++) {
            float z = Z[r * cols + k];
            for (int64_t c = 0; c < cols; c++) X[r * cols + c] += z * A[k * cols + c];
        }
    free(A);
    free(Z);
    return X;
}

qerr_calib *tu_correlated_calib(int64_t n_rows, int64_t cols, double strength, uint64_t seed) {
    float *X = tu_correlated_rows(n_rows, cols, strength, seed);
    qerr_calib *c = NULL;
    assert_int_equal(qerr_calib_create(&c, cols), QERR_OK);
    assert_int_equal(qerr_calib_add_f32(c, X, n_rows), QERR_OK);
    free(X);
    return c;
}

qerr_tensor *tu_weight(int64_t rows, int64_t cols, uint64_t seed) {
    int64_t shape[2] = {rows, cols};
    qerr_tensor *t = NULL;
    assert_int_equal(qerr_tensor_create(&t, QERR_DTYPE_F32, 2, shape), QERR_OK);
    float *w = qerr_tensor_data(t);
    for (int64_t i = 0; i < rows * cols; i++) {
        double v = 0.02 * gauss(&seed);
        if (unif(&seed) < 0.005) v *= 8; /* a few outliers */
        w[i] = (float)v;
    }
    return t;
}

const char *tu_shared_data(void) {
    static char path[4096];
    const char *env = getenv("QERR_SHARED_DATA");
    const char *cands[] = {env, "../shared/data", "../../shared/data", "../../../shared/data"};
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
        if (!cands[i]) continue;
        struct stat st;
        char probe[4200];
        snprintf(probe, sizeof probe, "%s/README.md", cands[i]);
        if (stat(probe, &st) == 0) {
            snprintf(path, sizeof path, "%s", cands[i]);
            return path;
        }
    }
    return NULL;
}

qerr_result *tu_quantize(const char *spec, const qerr_tensor *w, const qerr_calib *c) {
    qerr_plan *p = NULL;
    int rc = qerr_plan_parse(&p, spec);
    if (rc != QERR_OK) fail_msg("plan '%s': %s", spec, qerr_last_error());
    qerr_result *r = NULL;
    rc = qerr_quantize(NULL, p, w, c, &r);
    if (rc != QERR_OK) fail_msg("quantize '%s': %s", spec, qerr_last_error());
    qerr_plan_free(p);
    return r;
}

double tu_layer_error(const qerr_tensor *w, const qerr_result *r, const qerr_calib *c) {
    double e = NAN;
    assert_int_equal(qerr_result_diag(r, "layer_error", &e), QERR_OK);
    (void)w;
    (void)c;
    return e;
}

double tu_fd_error_step(double (*loss)(void *), void *ctx, double *param, int64_t n,
                        const double *grad, double h) {
    double gmax = 0, worst = 0;
    for (int64_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(grad[i]));
    for (int64_t i = 0; i < n; i++) {
        double p = param[i];
        param[i] = p + h;
        double fp = loss(ctx);
        param[i] = p - h;
        double fm = loss(ctx);
        param[i] = p;
        double e = fabs((fp - fm) / (2 * h) - grad[i]) / fmax(fabs(grad[i]), 1e-2 * gmax + 1e-300);
        worst = fmax(worst, e);
    }
    return worst;
}

double tu_fd_error(double (*loss)(void *), void *ctx, double *param, int64_t n,
                   const double *grad) {
    return tu_fd_error_step(loss, ctx, param, n, grad, 1e-5);
}
