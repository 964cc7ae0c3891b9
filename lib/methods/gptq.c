/* GPTQ (Frantar et al. 2022): quantize columns in order, feeding each
 * column's error forward through the upper Cholesky factor of H^-1; the
 * in-block updates are row-local and the rest is one GEMM per block. */
#include "method.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

static const qerr_param_def gptq_params[] = {
    QERR_PDEF_BITS, QERR_PDEF_GROUP_SIZE, QERR_PDEF_RAGGED, QERR_PDEF_SYMMETRIC,
    QERR_PDEF_CLIP_SEARCH, QERR_PDEF_SCALE_DTYPE,
    {"act_order", QERR_PARAM_BOOL, 0, 0, 1, NULL,
     "quantize columns in order of decreasing H_jj"},
    {"static_groups", QERR_PARAM_BOOL, 0, 0, 1, NULL,
     "fix every group's grid up front from the original weights"},
    {"damp", QERR_PARAM_DOUBLE, 0.01, 0, 1, NULL,
     "damping added to diag(H), as a fraction of mean(diag H)"},
    {"block_size", QERR_PARAM_INT, 128, 1, 4096, NULL, "columns per lazy-batch block"},
    {"fallback_rtn", QERR_PARAM_BOOL, 0, 0, 1, NULL,
     "if H stays indefinite after every damping step, fall back to RTN instead of failing"},
};

typedef struct {
    float *W;          /* rows x n, permuted columns, updated in place */
    const float *U;    /* n x n upper factor of H^-1 (permuted) */
    float *E;          /* rows x block, scaled errors of the block */
    qerr_result *r;
    const int32_t *perm;
    const int32_t *col_group; /* group id of permuted column j */
    qerr_grid grid;
    bool clip, dynamic_groups;
    int64_t n, g, i1, i2;
} gptq_job;

/* One block [i1, i2) for rows [begin, end): every step is row-local. */
static void gptq_block_rows(void *arg, int64_t begin, int64_t end) {
    gptq_job *jb = arg;
    qerr_result *r = jb->r;
    const int64_t n = jb->n, bw = jb->i2 - jb->i1;
    for (int64_t i = begin; i < end; i++) {
        float *w = jb->W + i * n;
        float *e = jb->E + i * bw;
        for (int64_t j = jb->i1; j < jb->i2; j++) {
            int32_t grp = jb->col_group[j];
            float *sp = &r->scales[i * r->groups + grp];
            int32_t *zp = &r->zeros[i * r->groups + grp];
            if (jb->dynamic_groups && j % jb->g == 0) {
                /* j starts a group and a block, so w[j:] is fully updated */
                int64_t c1 = j + jb->g < n ? j + jb->g : n;
                qerr__grid_fit(&jb->grid, w + j, c1 - j, 1, jb->clip, sp, zp);
            }
            int code = qerr__grid_code(&jb->grid, w[j], *sp, *zp);
            r->codes[i * n + jb->perm[j]] = (uint8_t)code;
            const float *u = jb->U + j * n;
            float err = (w[j] - qerr__grid_value(code, *sp, *zp)) / u[j];
            for (int64_t c = j + 1; c < jb->i2; c++) w[c] -= err * u[c];
            e[j - jb->i1] = err;
        }
    }
}

/* Static groups: grids from the original (unpermuted) columns up front. */
static void fit_static_groups(const float *W0, qerr_result *r, const qerr_grid *grid, bool clip) {
    for (int64_t i = 0; i < r->rows; i++)
        for (int64_t k = 0; k < r->groups; k++) {
            int64_t c0 = k * r->group_size;
            int64_t c1 = c0 + r->group_size < r->cols ? c0 + r->group_size : r->cols;
            qerr__grid_fit(grid, W0 + i * r->cols + c0, c1 - c0, 1, clip,
                           &r->scales[i * r->groups + k], &r->zeros[i * r->groups + k]);
        }
}

static int gptq_solve(const qerr_method_call *call, float *W, double *H, int32_t *perm,
                      int32_t *iperm, int32_t *col_group, qerr_result *r) {
    const qerr_plan *p = call->plan;
    const int64_t rows = call->rows, n = call->cols, g = r->group_size;
    const bool act_order = qerr__plan_int(p, "act_order") == 1;
    const bool static_groups = qerr__plan_int(p, "static_groups") == 1;
    const bool clip = qerr__plan_int(p, "clip_search") == 1;
    const qerr_grid grid = qerr__plan_grid(p, r->bits);

    memcpy(W, call->W, (size_t)(rows * n) * sizeof(float));
    memcpy(H, call->H, (size_t)(n * n) * sizeof(double));
    /* One group per row: the reference fits each row's grid once, on the
     * untouched weights (before dead columns are zeroed). */
    const bool per_row = g >= n;
    if (per_row) fit_static_groups(call->W, r, &grid, clip);
    int64_t dead = qerr__zero_dead_columns(H, W, rows, n);
    qerr__result_set_diag(r, "dead_columns", (double)dead);
    if (static_groups && !per_row) fit_static_groups(W, r, &grid, clip);

    for (int64_t j = 0; j < n; j++) perm[j] = iperm[j] = (int32_t)j;
    if (act_order) {
        QERR_TRY(qerr__act_order_perm(H, n, perm, iperm));
        QERR_TRY(qerr__permute_columns(W, rows, H, n, perm));
    }
    /* Column j (permuted order) uses group col_group[j]; result g_idx maps
     * original columns to groups. */
    for (int64_t j = 0; j < n; j++) {
        col_group[j] = static_groups ? (int32_t)(perm[j] / g) : (int32_t)(j / g);
        r->g_idx[perm[j]] = col_group[j];
    }
    r->g_idx_trivial = true;
    for (int64_t c = 0; c < n; c++)
        if (r->g_idx[c] != (int32_t)(c / g)) r->g_idx_trivial = false;

    double damp_used;
    int fallbacks = 0;
    int rc = qerr__chol_inverse_upper(H, n, qerr__plan_double(p, "damp"), &damp_used, &fallbacks);
    qerr__result_set_diag(r, "fallbacks", fallbacks);
    QERR_TRY(rc);
    qerr__result_set_diag(r, "damp", damp_used);

    /* The factor in float32 (reusing the front of H's memory). */
    float *U = (float *)H;
    for (int64_t k = 0; k < n * n; k++) U[k] = (float)H[k];

    const int64_t B = qerr__plan_int(p, "block_size");
    float *E = qerr__malloc2((size_t)(rows * B), sizeof(float));
    QERR_CHECK(E, QERR_E_NOMEM, "gptq: out of memory for a %lldx%lld error block",
               (long long)rows, (long long)B);
    gptq_job jb = {W, U, E, r, perm, col_group, grid, clip, !static_groups && !per_row, n, g, 0, 0};
    const int threads = qerr__ctx_threads(call->ctx);
    for (int64_t i1 = 0; i1 < n;) {
        int64_t i2 = i1 + B < n ? i1 + B : n;
        /* Blocks never straddle a group start, so a dynamic group's grid is
         * fitted on fully updated weights (equal to the unblocked algorithm). */
        if (jb.dynamic_groups) {
            int64_t next_group = (i1 / g + 1) * g;
            if (next_group < i2) i2 = next_group;
        }
        jb.i1 = i1;
        jb.i2 = i2;
        qerr__parallel_for(threads, rows, 8, gptq_block_rows, &jb);
        if (i2 < n)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)(n - i2),
                        (int)(i2 - i1), -1.0f, E, (int)(i2 - i1), U + i1 * n + i2, (int)n, 1.0f,
                        W + i2, (int)n);
        i1 = i2;
        rc = qerr__progress(call->ctx, "gptq", (double)i2 / (double)n);
        if (rc != QERR_OK) break;
    }
    free(E);
    return rc;
}

static int gptq_quantize(const qerr_method_call *call, qerr_result **out) {
    const qerr_plan *p = call->plan;
    const int64_t rows = call->rows, n = call->cols;
    int64_t g;
    QERR_TRY(qerr__plan_group_size(p, n, &g));
    qerr_result *r;
    QERR_TRY(qerr__result_alloc(&r, rows, n, (int)qerr__plan_int(p, "bits"), g));
    float *W = qerr__malloc2((size_t)(rows * n), sizeof(float));
    double *H = qerr__malloc2((size_t)(n * n), sizeof(double));
    int32_t *perm = qerr__malloc2((size_t)n, sizeof(int32_t));
    int32_t *iperm = qerr__malloc2((size_t)n, sizeof(int32_t));
    int32_t *col_group = qerr__malloc2((size_t)n, sizeof(int32_t));
    int rc = (W && H && perm && iperm && col_group)
                 ? gptq_solve(call, W, H, perm, iperm, col_group, r)
                 : qerr__fail(QERR_E_NOMEM, "gptq: out of memory for a %lldx%lld layer",
                              (long long)rows, (long long)n);
    free(W);
    free(H);
    free(perm);
    free(iperm);
    free(col_group);
    if (rc == QERR_E_NOT_PD && qerr__plan_int(p, "fallback_rtn") == 1) {
        qerr_result_free(r);
        const qerr_method_call rtn_call = *call;
        extern const qerr_method qerr__rtn_method;
        rc = qerr__rtn_method.quantize(&rtn_call, &r);
        if (rc != QERR_OK) return rc;
        qerr__result_set_diag(r, "fallback_rtn", 1);
        qerr__result_set_diag(r, "fallbacks", 5);
        *out = r;
        return QERR_OK;
    }
    if (rc != QERR_OK) {
        qerr_result_free(r);
        return rc;
    }
    qerr__result_set_diag(r, "iterations", 1);
    *out = r;
    return QERR_OK;
}

const qerr_method qerr__gptq_method = {
    .version = QERR_METHOD_VERSION,
    .name = "gptq",
    .summary = "GPTQ: column-wise error feedback through the Cholesky factor of H^-1",
    .params = gptq_params,
    .nparams = (int)(sizeof gptq_params / sizeof gptq_params[0]),
    .needs_calib = true,
    .quantize = gptq_quantize,
};
