/* Cholesky of H^-1 with deterministic damping escalation; lambda_max. */
#include "internal.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* H = R R^T with R upper triangular (a "UL" Cholesky) is the ordinary
 * Cholesky of the reversed matrix P H P (P reverses the index order), reversed
 * back. Then H^-1 = R^-T R^-1, so U = R^-1 is the upper Cholesky factor of
 * H^-1: one potrf and one trtri (2n^3/3 flops) instead of GPTQ's
 * potrf + potri + potrf.
 *
 * Memory layout: the row-major matrix read backwards is P H P, and a
 * row-major array read as column-major is its transpose, which for a
 * symmetric matrix is itself. So LAPACK runs column-major in place (no
 * LAPACKE transposition copies) on the upper triangle of that view, which
 * leaves the other triangle holding H for a retry. */

static void reverse(double *A, int64_t nn) {
    for (int64_t i = 0, k = nn - 1; i < k; i++, k--) {
        double t = A[i];
        A[i] = A[k];
        A[k] = t;
    }
}

/* Rebuild the damped, reversed matrix from the untouched triangle: column-
 * major upper (= row-major lower) gets the mirror of row-major upper. */
static void restore_reversed(double *A, int64_t n, const double *diag, double add) {
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < i; j++) A[i * n + j] = A[j * n + i];
        A[i * n + i] = diag[n - 1 - i] + add;
    }
}

/* A pivot this small relative to its diagonal entry means H is singular to
 * working precision: the factor would be finite but meaningless. */
#define PIVOT_RTOL 1e-12

/* Factor the reversed, damped matrix in A; 0 on success. */
static int factor_reversed(double *A, int64_t n, const double *diag, double add) {
    lapack_int info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'U', (lapack_int)n, A, (lapack_int)n);
    if (info != 0) return 1;
    for (int64_t i = 0; i < n; i++) {
        double p = A[i * n + i], d = diag[n - 1 - i] + add;
        if (!(p * p > PIVOT_RTOL * d)) return 1;
    }
    info = LAPACKE_dtrtri_work(LAPACK_COL_MAJOR, 'U', 'N', (lapack_int)n, A, (lapack_int)n);
    if (info != 0) return 1;
    /* The factor lives in row-major lower; every entry must be finite. */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++)
            if (!isfinite(A[i * n + j])) return 1;
    return 0;
}

int qerr__chol_inverse_upper(double *H, int64_t n, double damp, double *damp_used,
                             int *fallbacks) {
    *fallbacks = 0;
    QERR_CHECK(n >= 1 && n <= INT32_MAX, QERR_E_SHAPE, "Hessian size %lld is out of range",
               (long long)n);
    double *diag = qerr__malloc2((size_t)n, sizeof(double));
    QERR_CHECK(diag, QERR_E_NOMEM, "out of memory for a Hessian of %lld columns", (long long)n);
    double mean_diag = 0;
    for (int64_t i = 0; i < n; i++) {
        diag[i] = H[i * n + i];
        mean_diag += diag[i];
    }
    mean_diag /= (double)n;
    if (!(isfinite(mean_diag) && mean_diag > 0)) {
        free(diag);
        return qerr__fail(QERR_E_NOT_PD, "Hessian has a non-positive mean diagonal (%g)",
                          mean_diag);
    }
    const int64_t nn = n * n;
    reverse(H, nn);
    double d = damp;
    for (int attempt = 0; attempt < 5; attempt++) {
        double add = d * mean_diag;
        if (add == 0 && attempt > 0) add = 1e-6 * mean_diag; /* damp=0 escalates from 1e-6 */
        if (attempt == 0) {
            for (int64_t i = 0; i < n; i++) H[i * n + i] += add;
        } else {
            restore_reversed(H, n, diag, add);
        }
        if (factor_reversed(H, n, diag, add) == 0) {
            /* H holds, row-major lower, the factor of the reversed matrix;
             * reverse back (-> upper) and clear the strictly lower part. */
            reverse(H, nn);
            for (int64_t i = 1; i < n; i++) memset(H + i * n, 0, (size_t)i * sizeof(double));
            free(diag);
            *damp_used = add / mean_diag;
            return QERR_OK;
        }
        (*fallbacks)++;
        d = (add / mean_diag) * 10.0;
    }
    free(diag);
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
