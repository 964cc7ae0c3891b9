/* Kronecker transform x -> (x .* c)(P1 (x) P2), templated on R (see
 * real_def.h); included twice by kron.c. No include guard on purpose. */

/* a (=) x .* c, or a copy of x. */
static void TR_(kron_scale)(int64_t rows, int64_t n, const R *c, const R *x, R *a) {
    if (!c) {
        memcpy(a, x, sizeof(R) * (size_t)(rows * n));
        return;
    }
    for (int64_t t = 0; t < rows; t++)
        for (int64_t j = 0; j < n; j++) a[t * n + j] = x[t * n + j] * c[j];
}

int TR_(qerr__kron_fwd)(int64_t rows, int64_t n1, int64_t n2, const R *p1, const R *p2,
                        const R *c, const R *x, R *y) {
    const int64_t n = n1 * n2;
    QERR_CHECK(rows >= 0 && n1 >= 1 && n2 >= 1 && rows * n1 <= INT32_MAX, QERR_E_RANGE,
               "Kronecker transform: %lld rows of %lld x %lld", (long long)rows, (long long)n1,
               (long long)n2);
    R *a = qerr__malloc2((size_t)(2 * rows * n), sizeof(R));
    QERR_CHECK(a, QERR_E_NOMEM, "Kronecker transform: out of memory for %lld rows",
               (long long)rows);
    R *b = a + rows * n;
    TR_(kron_scale)(rows, n, c, x, a);
    /* B = X P2 for every token at once, then Y_t = P1^T B_t */
    TR_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(rows * n1), (int)n2, (int)n2, 1, a,
            (int)n2, p2, (int)n2, 0, b, (int)n2);
    for (int64_t t = 0; t < rows; t++)
        TR_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n1, (int)n2, (int)n1, 1, p1,
                (int)n1, b + t * n, (int)n2, 0, y + t * n, (int)n2);
    free(a);
    return QERR_OK;
}

int TR_(qerr__kron_bwd)(int64_t rows, int64_t n1, int64_t n2, const R *p1, const R *p2,
                        const R *c, const R *x, const R *gy, R *gx, double *gp1, double *gp2,
                        double *gc) {
    const int64_t n = n1 * n2;
    QERR_CHECK(rows >= 0 && n1 >= 1 && n2 >= 1 && rows * n1 <= INT32_MAX, QERR_E_RANGE,
               "Kronecker backward: %lld rows of %lld x %lld", (long long)rows, (long long)n1,
               (long long)n2);
    R *a = qerr__malloc2((size_t)(3 * rows * n + n1 * n1 + n2 * n2), sizeof(R));
    QERR_CHECK(a, QERR_E_NOMEM, "Kronecker backward: out of memory for %lld rows",
               (long long)rows);
    R *z = a + rows * n, *gxs = z + rows * n, *t1 = gxs + rows * n, *t2 = t1 + n1 * n1;
    TR_(kron_scale)(rows, n, c, x, a);
    /* Z_t = P1 G_t */
    for (int64_t t = 0; t < rows; t++)
        TR_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n1, (int)n2, (int)n1, 1, p1,
                (int)n1, gy + t * n, (int)n2, 0, z + t * n, (int)n2);
    if (gp2) { /* dP2 = sum_t A_t^T Z_t */
        TR_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n2, (int)n2, (int)(rows * n1), 1,
                a, (int)n2, z, (int)n2, 0, t2, (int)n2);
        for (int64_t i = 0; i < n2 * n2; i++) gp2[i] += (double)t2[i];
    }
    if (gp1) { /* dP1 = sum_t B_t G_t^T with B_t = A_t P2 (gxs as scratch) */
        TR_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(rows * n1), (int)n2, (int)n2, 1,
                a, (int)n2, p2, (int)n2, 0, gxs, (int)n2);
        memset(t1, 0, sizeof(R) * (size_t)(n1 * n1));
        for (int64_t t = 0; t < rows; t++)
            TR_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n1, (int)n1, (int)n2, 1,
                    gxs + t * n, (int)n2, gy + t * n, (int)n2, 1, t1, (int)n1);
        for (int64_t i = 0; i < n1 * n1; i++) gp1[i] += (double)t1[i];
    }
    if (gx || gc) { /* d(x .* c) = Z P2^T */
        TR_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(rows * n1), (int)n2, (int)n2, 1, z,
                (int)n2, p2, (int)n2, 0, gxs, (int)n2);
        for (int64_t t = 0; t < rows; t++)
            for (int64_t j = 0; j < n; j++) {
                R g = gxs[t * n + j];
                if (gc) gc[j] += (double)(g * x[t * n + j]);
                if (gx) gx[t * n + j] = c ? g * c[j] : g;
            }
    }
    free(a);
    return QERR_OK;
}
