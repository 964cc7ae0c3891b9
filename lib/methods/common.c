/* Pieces shared by the grid-based methods: group sizes, dead columns,
 * act-order permutations, the layer objective and common diagnostics. */
#include "method.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double qerr__now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

qerr_grid qerr__plan_grid(const qerr_plan *plan, int bits) {
    qerr_grid g = qerr__grid_make(bits, qerr__plan_int(plan, "symmetric") == 1);
    g.f16_scale = qerr__plan_choice(plan, "scale_dtype") == 1;
    return g;
}

int qerr__plan_group_size(const qerr_plan *plan, int64_t cols, int64_t *group_size) {
    int64_t g = qerr__plan_int(plan, "group_size");
    if (g == -1 || g == 0) { /* no key, or per-row */
        *group_size = cols;
        return QERR_OK;
    }
    QERR_CHECK(g >= 1, QERR_E_RANGE, "group_size=%lld must be -1 or >= 1", (long long)g);
    bool ragged = qerr__plan_int(plan, "ragged_groups") == 1;
    if (!ragged) {
        QERR_CHECK(g <= cols, QERR_E_SHAPE,
                   "group_size=%lld is larger than the %lld input columns (set ragged_groups=1 "
                   "for one short group, or group_size=-1)",
                   (long long)g, (long long)cols);
        QERR_CHECK(cols % g == 0, QERR_E_SHAPE,
                   "group_size=%lld does not divide the %lld input columns (set "
                   "ragged_groups=1 to allow a shorter last group)",
                   (long long)g, (long long)cols);
    }
    *group_size = g < cols ? g : cols;
    return QERR_OK;
}

int64_t qerr__zero_dead_columns(double *H, float *W, int64_t rows, int64_t cols) {
    int64_t dead = 0;
    for (int64_t j = 0; j < cols; j++) {
        if (H[j * cols + j] != 0.0) continue;
        dead++;
        H[j * cols + j] = 1.0;
        if (W)
            for (int64_t i = 0; i < rows; i++) W[i * cols + j] = 0.0f;
    }
    return dead;
}

typedef struct { double d; int32_t j; } diag_entry;

static int by_diag_desc(const void *a, const void *b) {
    const diag_entry *x = a, *y = b;
    if (x->d > y->d) return -1;
    if (x->d < y->d) return 1;
    return (x->j > y->j) - (x->j < y->j); /* ties keep column order */
}

int qerr__act_order_perm(const double *H, int64_t n, int32_t *perm, int32_t *iperm) {
    diag_entry *e = qerr__malloc2((size_t)n, sizeof *e);
    QERR_CHECK(e, QERR_E_NOMEM, "out of memory sorting %lld columns", (long long)n);
    for (int64_t j = 0; j < n; j++) {
        e[j].d = H[j * n + j];
        e[j].j = (int32_t)j;
    }
    qsort(e, (size_t)n, sizeof *e, by_diag_desc);
    for (int64_t j = 0; j < n; j++) {
        perm[j] = e[j].j;
        iperm[e[j].j] = (int32_t)j;
    }
    free(e);
    return QERR_OK;
}

int qerr__permute_columns(float *W, int64_t rows, double *H, int64_t n, const int32_t *perm) {
    if (W) {
        float *row = qerr__malloc2((size_t)n, sizeof(float));
        QERR_CHECK(row, QERR_E_NOMEM, "out of memory permuting columns");
        for (int64_t i = 0; i < rows; i++) {
            float *w = W + i * n;
            for (int64_t j = 0; j < n; j++) row[j] = w[perm[j]];
            memcpy(w, row, (size_t)n * sizeof(float));
        }
        free(row);
    }
    if (H) {
        double *tmp = qerr__malloc2((size_t)(n * n), sizeof(double));
        QERR_CHECK(tmp, QERR_E_NOMEM, "out of memory permuting the Hessian");
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) tmp[i * n + j] = H[(int64_t)perm[i] * n + perm[j]];
        memcpy(H, tmp, (size_t)(n * n) * sizeof(double));
        free(tmp);
    }
    return QERR_OK;
}

/* Sum of H .* G over the upper triangle of G (float32, from SYRK), with the
 * off-diagonal terms counted twice: tr(D H D^T) when G = D^T D. */
static double frobenius_upper(const double *H, const float *G, int64_t n) {
    double s = 0;
    for (int64_t j = 0; j < n; j++) {
        const double *h = H + j * n;
        const float *g = G + j * n;
        double off = 0;
        for (int64_t k = j + 1; k < n; k++) off += h[k] * (double)g[k];
        s += h[j] * (double)g[j] + 2.0 * off;
    }
    return s;
}

/* tr(D H D^T) = sum_jk H_jk (D^T D)_jk: one float32 SYRK (rows n^2 flops)
 * instead of a float64 D H product (2 rows n^2 flops at half the rate).
 * The float32 Gram products carry ~1e-6 relative error, ample for a
 * diagnostic. */
int qerr__layer_objective(const float *W, const float *Q, int64_t rows, int64_t cols,
                          const double *H, double *err, double *ref) {
    float *D = qerr__malloc2((size_t)(rows * cols), sizeof(float));
    float *G = qerr__malloc2((size_t)(cols * cols), sizeof(float));
    if (!D || !G) {
        free(D);
        free(G);
        return qerr__fail(QERR_E_NOMEM, "out of memory computing the layer error");
    }
    for (int64_t k = 0; k < rows * cols; k++) D[k] = W[k] - Q[k];
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)cols, (int)rows, 1.0f, D, (int)cols,
                0.0f, G, (int)cols);
    *err = frobenius_upper(H, G, cols);
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)cols, (int)rows, 1.0f, W, (int)cols,
                0.0f, G, (int)cols);
    *ref = frobenius_upper(H, G, cols);
    free(D);
    free(G);
    return QERR_OK;
}

qerr_phase_times qerr__phase_times;

int qerr__finish_diag(const qerr_method_call *call, qerr_result *r, double seconds) {
    qerr__result_set_diag(r, "seconds", seconds);
    if (!call->H) {
        qerr__result_set_diag(r, "layer_error", NAN);
        return QERR_OK;
    }
    const double t0 = qerr__now();
    float *Q = qerr__malloc2((size_t)(call->rows * call->cols), sizeof(float));
    QERR_CHECK(Q, QERR_E_NOMEM, "out of memory computing the layer error");
    qerr__result_dequant(r, Q);
    double err, ref;
    int rc = qerr__layer_objective(call->W, Q, call->rows, call->cols, call->H, &err, &ref);
    free(Q);
    qerr__phase_times.diag += qerr__now() - t0;
    QERR_TRY(rc);
    qerr__result_set_diag(r, "layer_error", ref > 0 ? err / ref : 0.0);
    qerr__result_set_diag(r, "objective", err);
    return QERR_OK;
}
