/* Cholesky of H^-1 with deterministic damping escalation; lambda_max. */
#include "internal.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* H = R R^T with R upper triangular (a "UL" Cholesky) is the ordinary lower
 * Cholesky of the reversed matrix, reversed back. Then H^-1 = R^-T R^-1, so
 * U = R^-1 is the upper Cholesky factor of H^-1: one potrf and one trtri
 * (2n^3/3 flops) instead of potrf + potri + potrf. */
static int upper_chol_of_inverse(double *A, int64_t n) {
    /* Row-major A, reversed (i -> n-1-i, j -> n-1-j), is the same memory read
     * backwards; LAPACK on the reversed array in place. */
    int64_t nn = n * n;
    for (int64_t i = 0; i < nn / 2; i++) {
        double t = A[i];
        A[i] = A[nn - 1 - i];
        A[nn - 1 - i] = t;
    }
    lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)n, A, (lapack_int)n);
    if (info != 0) return info > 0 ? 1 : -1;
    info = LAPACKE_dtrtri(LAPACK_ROW_MAJOR, 'L', 'N', (lapack_int)n, A, (lapack_int)n);
    if (info != 0) return info > 0 ? 1 : -1;
    /* A holds L^-1 of the reversed matrix (lower); reverse back -> upper. */
    for (int64_t i = 0; i < nn / 2; i++) {
        double t = A[i];
        A[i] = A[nn - 1 - i];
        A[nn - 1 - i] = t;
    }
    /* Clear the strictly lower part (LAPACK leaves the input there). */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < i; j++) A[i * n + j] = 0.0;
    return 0;
}

int qerr__chol_inverse_upper(double *H, int64_t n, double damp, double *damp_used,
                             int *fallbacks) {
    double mean_diag = 0;
    for (int64_t i = 0; i < n; i++) mean_diag += H[i * n + i];
    mean_diag /= (double)n;
    QERR_CHECK(isfinite(mean_diag) && mean_diag > 0, QERR_E_NOT_PD,
               "Hessian has a non-positive mean diagonal (%g)", mean_diag);
    double *A = qerr__malloc2((size_t)(n * n), sizeof(double));
    QERR_CHECK(A, QERR_E_NOMEM, "cannot allocate a %lldx%lld matrix", (long long)n, (long long)n);
    *fallbacks = 0;
    double d = damp;
    for (int attempt = 0; attempt < 5; attempt++) {
        memcpy(A, H, (size_t)(n * n) * sizeof(double));
        double add = d * mean_diag;
        if (add == 0 && attempt > 0) add = 1e-6 * mean_diag; /* damp=0 escalates from 1e-6 */
        for (int64_t i = 0; i < n; i++) A[i * n + i] += add;
        if (upper_chol_of_inverse(A, n) == 0 &&
            qerr__find_nonfinite_f64(A, n * n) < 0) {
            memcpy(H, A, (size_t)(n * n) * sizeof(double));
            free(A);
            *damp_used = add / mean_diag;
            return QERR_OK;
        }
        (*fallbacks)++;
        d = (add / mean_diag) * 10.0;
    }
    free(A);
    return qerr__fail(QERR_E_NOT_PD,
                      "Hessian is not positive definite even with damp=%g (5 tries from %g)",
                      d / 10.0, damp);
}

double qerr__lambda_max(const double *H, int64_t n, int iters, uint64_t seed) {
    double *v = qerr__malloc2((size_t)n, sizeof(double));
    double *w = qerr__malloc2((size_t)n, sizeof(double));
    if (!v || !w) {
        free(v);
        free(w);
        /* Gershgorin bound: always >= lambda_max, so a safe step size. */
        double best = 0;
        for (int64_t i = 0; i < n; i++) {
            double s = 0;
            for (int64_t j = 0; j < n; j++) s += fabs(H[i * n + j]);
            if (s > best) best = s;
        }
        return best;
    }
    qerr_rng r;
    qerr__rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) v[i] = qerr__rng_normal(&r);
    double lambda = 0;
    for (int it = 0; it < iters; it++) {
        double nv = cblas_dnrm2((int)n, v, 1);
        if (nv == 0) break;
        cblas_dscal((int)n, 1.0 / nv, v, 1);
        cblas_dsymv(CblasRowMajor, CblasUpper, (int)n, 1.0, H, (int)n, v, 1, 0.0, w, 1);
        lambda = cblas_ddot((int)n, v, 1, w, 1);
        double *t = v;
        v = w;
        w = t;
    }
    free(v);
    free(w);
    return lambda;
}
