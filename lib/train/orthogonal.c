/* Kronecker factors P = U diag(s) V^T with Cayley-orthogonal U, V, their
 * analytic inverse-transpose P^-T = U diag(1/s) V^T, the backward through
 * both (one LU solve per factor), and the choice of n1 x n2. */
#include "train.h"

#include <cblas.h>
#include <lapacke.h>
#include <stdlib.h>
#include <string.h>

int qerr__svd_factor_init(qerr_svd_factor *f, int64_t n) {
    memset(f, 0, sizeof *f);
    QERR_CHECK(n >= 1 && n <= 16384, QERR_E_RANGE, "transform factor of size %lld", (long long)n);
    size_t nn = (size_t)(n * n);
    f->n = n;
    f->raw_u = qerr__calloc(nn, sizeof(double));
    f->raw_v = qerr__calloc(nn, sizeof(double));
    f->sigma = qerr__calloc((size_t)n, sizeof(double));
    f->u = qerr__calloc(nn, sizeof(double));
    f->v = qerr__calloc(nn, sizeof(double));
    f->p = qerr__calloc(nn, sizeof(double));
    f->pinvt = qerr__calloc(nn, sizeof(double));
    f->lu_u = qerr__calloc(nn, sizeof(double));
    f->lu_v = qerr__calloc(nn, sizeof(double));
    f->piv_u = qerr__calloc((size_t)n, sizeof(int));
    f->piv_v = qerr__calloc((size_t)n, sizeof(int));
    if (!f->raw_u || !f->raw_v || !f->sigma || !f->u || !f->v || !f->p || !f->pinvt || !f->lu_u ||
        !f->lu_v || !f->piv_u || !f->piv_v) {
        qerr__svd_factor_free(f);
        return qerr__fail(QERR_E_NOMEM, "out of memory for a %lld x %lld transform factor",
                          (long long)n, (long long)n);
    }
    for (int64_t i = 0; i < n; i++) f->sigma[i] = 1.0;
    return qerr__svd_factor_update(f);
}

void qerr__svd_factor_randomize(qerr_svd_factor *f, qerr_rng *rng, double scale) {
    for (int64_t i = 0; i < f->n * f->n; i++) {
        f->raw_u[i] = scale * qerr__rng_normal(rng);
        f->raw_v[i] = scale * qerr__rng_normal(rng);
    }
    for (int64_t i = 0; i < f->n; i++) f->sigma[i] = 1.0;
}

void qerr__svd_factor_free(qerr_svd_factor *f) {
    if (!f) return;
    free(f->raw_u); free(f->raw_v); free(f->sigma); free(f->u); free(f->v); free(f->p);
    free(f->pinvt); free(f->lu_u); free(f->lu_v); free(f->piv_u); free(f->piv_v);
    memset(f, 0, sizeof *f);
}

/* Q = (I - A/2)^-1 (I + A/2), A = L - L^T from the strict lower part of raw;
 * keeps the LU factors of I - A/2. */
static int cayley(int64_t n, const double *raw, double *q, double *lu, int *piv) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double a = i > j ? raw[i * n + j] : (i < j ? -raw[j * n + i] : 0.0);
            double id = i == j ? 1.0 : 0.0;
            lu[i * n + j] = id - 0.5 * a;
            q[i * n + j] = id + 0.5 * a;
        }
    lapack_int info = LAPACKE_dgetrf(LAPACK_ROW_MAJOR, (lapack_int)n, (lapack_int)n, lu,
                                     (lapack_int)n, piv);
    /* I - A/2 with A skew is never singular; a failure means NaN input */
    QERR_CHECK(info == 0, QERR_E_NUMERIC, "Cayley transform: LU failed (info %d)", (int)info);
    info = LAPACKE_dgetrs(LAPACK_ROW_MAJOR, 'N', (lapack_int)n, (lapack_int)n, lu, (lapack_int)n,
                          piv, q, (lapack_int)n);
    QERR_CHECK(info == 0, QERR_E_NUMERIC, "Cayley transform: solve failed (info %d)", (int)info);
    return QERR_OK;
}

int qerr__svd_factor_update(qerr_svd_factor *f) {
    const int64_t n = f->n;
    for (int64_t i = 0; i < n; i++)
        QERR_CHECK(isfinite(f->sigma[i]) && f->sigma[i] != 0.0, QERR_E_NUMERIC,
                   "transform factor: singular value %lld is %g", (long long)i, f->sigma[i]);
    QERR_TRY(cayley(n, f->raw_u, f->u, f->lu_u, f->piv_u));
    QERR_TRY(cayley(n, f->raw_v, f->v, f->lu_v, f->piv_v));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double p = 0, q = 0;
            for (int64_t k = 0; k < n; k++) {
                double uv = f->u[i * n + k] * f->v[j * n + k];
                p += uv * f->sigma[k];
                q += uv / f->sigma[k];
            }
            f->p[i * n + j] = p;
            f->pinvt[i * n + j] = q;
        }
    return QERR_OK;
}

/* g_raw (+=) from dL/dQ for Q = Cayley(raw): dA = 1/2 M^-T gQ (I + Q)^T. */
static int cayley_backward(int64_t n, const double *q, const double *lu, const int *piv,
                           const double *gq, double *g_raw, double *z, double *ga) {
    memcpy(z, gq, sizeof(double) * (size_t)(n * n));
    lapack_int info = LAPACKE_dgetrs(LAPACK_ROW_MAJOR, 'T', (lapack_int)n, (lapack_int)n, lu,
                                     (lapack_int)n, piv, z, (lapack_int)n);
    QERR_CHECK(info == 0, QERR_E_NUMERIC, "Cayley backward: solve failed (info %d)", (int)info);
    memcpy(ga, z, sizeof(double) * (size_t)(n * n));
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)n, 1.0, z, (int)n,
                q, (int)n, 1.0, ga, (int)n);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < i; j++) g_raw[i * n + j] += 0.5 * (ga[i * n + j] - ga[j * n + i]);
    return QERR_OK;
}

int qerr__svd_factor_backward(const qerr_svd_factor *f, const double *gp, const double *gpinvt,
                              double *g_raw_u, double *g_raw_v, double *g_sigma) {
    const int64_t n = f->n, nn = n * n;
    double *buf = qerr__calloc((size_t)(6 * nn), sizeof(double));
    QERR_CHECK(buf, QERR_E_NOMEM, "transform backward: out of memory");
    double *gu = buf, *gv = buf + nn, *w = buf + 2 * nn, *wt = buf + 3 * nn, *z = buf + 4 * nn,
           *ga = buf + 5 * nn;
    for (int pass = 0; pass < 2; pass++) {
        const double *g = pass == 0 ? gp : gpinvt;
        if (!g) continue;
        /* P = U S V^T (pass 0) or U S^-1 V^T (pass 1): W = G V, Wt = G^T U */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0, g,
                    (int)n, f->v, (int)n, 0.0, w, (int)n);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0, g,
                    (int)n, f->u, (int)n, 0.0, wt, (int)n);
        for (int64_t k = 0; k < n; k++) {
            double s = pass == 0 ? f->sigma[k] : 1.0 / f->sigma[k];
            double d = 0;
            for (int64_t i = 0; i < n; i++) {
                gu[i * n + k] += w[i * n + k] * s;
                gv[i * n + k] += wt[i * n + k] * s;
                d += f->u[i * n + k] * w[i * n + k];
            }
            if (g_sigma)
                g_sigma[k] += pass == 0 ? d : -d / (f->sigma[k] * f->sigma[k]);
        }
    }
    int rc = QERR_OK;
    if (g_raw_u) rc = cayley_backward(n, f->u, f->lu_u, f->piv_u, gu, g_raw_u, z, ga);
    if (rc == QERR_OK && g_raw_v) rc = cayley_backward(n, f->v, f->lu_v, f->piv_v, gv, g_raw_v, z, ga);
    free(buf);
    return rc;
}

void qerr__decompose_dim(int64_t n, int64_t *n1, int64_t *n2) {
    int64_t a = 1;
    for (int64_t d = 1; d * d <= n; d++)
        if (n % d == 0) a = d;
    *n1 = a;
    *n2 = n / a;
}
