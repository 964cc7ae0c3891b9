/* QuantEase (Behdin et al. 2023): cyclic coordinate descent on
 * f(Q) = tr((W - Q) H (W - Q)^T) over grids fixed from W up front. Updating
 * input column j of every row at once to its exact minimiser on the grid,
 * round(Q_j + R_j / H_jj) with R = (W - Q) H, never increases f.
 *
 * Cost per sweep: column blocks of `block_size` update R inside the block
 * row by row, and everywhere else with SGEMMs per block (2mn^2 flops per
 * sweep, all in float32). R is recomputed from scratch (one more SGEMM)
 * every `refresh_every` sweeps so that float32 rounding cannot pile up. */
#include "quantease.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

extern const qerr_method qerr__gptq_method;

/* ---- engine -------------------------------------------------------------- */

int qerr__qe_alloc(qerr_qe *e, int64_t rows, int64_t cols, int64_t block, float **hbuf) {
    size_t mn, nn;
    QERR_CHECK(qerr__mul_size((size_t)rows, (size_t)cols, &mn) &&
                   qerr__mul_size((size_t)cols, (size_t)cols, &nn),
               QERR_E_NOMEM, "quantease: a %lldx%lld layer overflows memory sizes",
               (long long)rows, (long long)cols);
    if (block > cols) block = cols;
    e->rows = rows;
    e->cols = cols;
    e->block = block;
    e->Q = qerr__malloc2(mn, sizeof(float));
    e->R = qerr__malloc2(mn, sizeof(float));
    e->D = qerr__malloc2(mn, sizeof(float));
    e->delta = qerr__malloc2((size_t)rows * (size_t)block, sizeof(float));
    *hbuf = qerr__malloc2(nn, sizeof(float));
    e->H = *hbuf;
    if (!e->Q || !e->R || !e->D || !e->delta || !*hbuf) {
        qerr__qe_free(e, *hbuf);
        *hbuf = NULL;
        return qerr__fail(QERR_E_NOMEM, "quantease: out of memory for a %lldx%lld layer",
                          (long long)rows, (long long)cols);
    }
    return QERR_OK;
}

void qerr__qe_free(qerr_qe *e, float *hbuf) {
    free(e->Q);
    free(e->R);
    free(e->D);
    free(e->delta);
    free(hbuf);
    e->Q = e->R = e->D = e->delta = NULL;
    e->H = NULL;
}

double qerr__qe_residual(qerr_qe *e) {
    const int64_t m = e->rows, n = e->cols, mn = m * n;
    for (int64_t k = 0; k < mn; k++) e->D[k] = e->T[k] - e->Q[k];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)n, 1.0f, e->D,
                (int)n, e->H, (int)n, 0.0f, e->R, (int)n);
    double f = 0;
    for (int64_t k = 0; k < mn; k++) f += (double)e->D[k] * (double)e->R[k];
    return f;
}

double qerr__qe_objective(const qerr_qe *e) {
    const int64_t mn = e->rows * e->cols;
    double f = 0;
    for (int64_t k = 0; k < mn; k++) f += (double)(e->T[k] - e->Q[k]) * (double)e->R[k];
    return f;
}

typedef struct {
    qerr_qe *e;
    int64_t j0, j1;
    bool quantize;
} qe_block_job;

/* Columns [j0, j1) for rows [begin, end): every step is row-local. */
static void qe_block_rows(void *arg, int64_t begin, int64_t end) {
    const qe_block_job *jb = arg;
    const qerr_qe *e = jb->e;
    const int64_t n = e->cols, bw = jb->j1 - jb->j0;
    for (int64_t i = begin; i < end; i++) {
        float *q = e->Q + i * n, *r = e->R + i * n, *d = e->delta + i * bw;
        const float *sc = e->scales + i * e->groups;
        const int32_t *zr = e->zeros + i * e->groups;
        for (int64_t j = jb->j0; j < jb->j1; j++) {
            const float *h = e->H + j * n;
            /* H_jj = 0: the column does not enter f; just keep it on the grid */
            float beta = h[j] > 0.0f ? q[j] + r[j] / h[j] : q[j];
            float nv = beta;
            if (jb->quantize) {
                int32_t g = e->col_group[j];
                nv = qerr__grid_round(&e->grid, beta, sc[g], zr[g]);
            }
            float dl = nv - q[j];
            q[j] = nv;
            d[j - jb->j0] = dl;
            if (dl != 0.0f) /* the rest of R is the block's SGEMMs' */
                for (int64_t k = jb->j0; k < jb->j1; k++) r[k] -= dl * h[k];
        }
    }
}

void qerr__qe_sweep(qerr_qe *e, bool quantize) {
    const int64_t m = e->rows, n = e->cols;
    qe_block_job jb = {e, 0, 0, quantize};
    for (int64_t j0 = 0; j0 < n; j0 += e->block) {
        int64_t j1 = j0 + e->block < n ? j0 + e->block : n, bw = j1 - j0;
        jb.j0 = j0;
        jb.j1 = j1;
        qerr__parallel_for(e->threads, m, 8, qe_block_rows, &jb);
        /* R[:, outside the block] -= delta * H[j0:j1, outside] */
        if (j0 > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)j0, (int)bw, -1.0f,
                        e->delta, (int)bw, e->H + j0 * n, (int)n, 1.0f, e->R, (int)n);
        if (j1 < n)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)(n - j1), (int)bw,
                        -1.0f, e->delta, (int)bw, e->H + j0 * n + j1, (int)n, 1.0f, e->R + j1,
                        (int)n);
    }
}

bool qerr__qe_sweep_rounds(int64_t it, int64_t iters, int64_t relax_every, int64_t relax_until) {
    if (it == iters - 1 || relax_every <= 0 || it > relax_until) return true;
    return it % relax_every != 1;
}

/* ---- shared layer setup (also used by quantease_outlier.c) --------------- */

int qerr__qe_prepare(const qerr_method_call *call, qerr_qe_layer *L) {
    const qerr_plan *p = call->plan;
    const int64_t m = call->rows, n = call->cols;
    memset(L, 0, sizeof *L);
    QERR_CHECK(call->H, QERR_E_INVALID_ARG, "quantease: needs a calibration set");
    int64_t bad = qerr__find_nonfinite_f64(call->H, n * n);
    QERR_CHECK(bad < 0, QERR_E_NONFINITE, "quantease: H[%lld][%lld] is not finite",
               (long long)(bad / n), (long long)(bad % n));
    for (int64_t j = 0; j < n; j++)
        QERR_CHECK(call->H[j * n + j] >= 0, QERR_E_NOT_PD,
                   "quantease: H[%lld][%lld]=%g is negative (H must be a Gram matrix)",
                   (long long)j, (long long)j, call->H[j * n + j]);
    int64_t g;
    QERR_TRY(qerr__plan_group_size(p, n, &g));
    L->iters = qerr__plan_int(p, "iterations");
    L->relax_every = qerr__plan_int(p, "relax_every");
    L->relax_until = qerr__plan_int(p, "relax_until");
    L->refresh_every = qerr__plan_int(p, "refresh_every");
    L->clip = qerr__plan_int(p, "clip_search") == 1;
    QERR_TRY(qerr__result_alloc(&L->r, m, n, (int)qerr__plan_int(p, "bits"), g));

    L->perm = qerr__malloc2((size_t)n, sizeof(int32_t));
    L->iperm = qerr__malloc2((size_t)n, sizeof(int32_t));
    L->col_group = qerr__malloc2((size_t)n, sizeof(int32_t));
    L->W = qerr__malloc2((size_t)(m * n), sizeof(float));
    L->Hd = qerr__malloc2((size_t)(n * n), sizeof(double));
    int rc = QERR_OK;
    if (!L->perm || !L->iperm || !L->col_group || !L->W || !L->Hd)
        rc = qerr__fail(QERR_E_NOMEM, "quantease: out of memory for a %lldx%lld layer",
                        (long long)m, (long long)n);
    if (rc == QERR_OK)
        rc = qerr__qe_alloc(&L->e, m, n, qerr__plan_int(p, "block_size"), &L->hbuf);
    if (rc != QERR_OK) {
        qerr__qe_layer_free(L);
        return rc;
    }
    memcpy(L->W, call->W, (size_t)(m * n) * sizeof(float));
    memcpy(L->Hd, call->H, (size_t)(n * n) * sizeof(double));
    for (int64_t j = 0; j < n; j++) L->perm[j] = L->iperm[j] = (int32_t)j;
    if (qerr__plan_int(p, "act_order") == 1) {
        rc = qerr__act_order_perm(L->Hd, n, L->perm, L->iperm);
        if (rc == QERR_OK) rc = qerr__permute_columns(L->W, m, L->Hd, n, L->perm);
        if (rc != QERR_OK) {
            qerr__qe_layer_free(L);
            return rc;
        }
    }
    /* groups are consecutive in the working order (g_idx maps them back) */
    qerr_result *r = L->r;
    r->g_idx_trivial = true;
    for (int64_t j = 0; j < n; j++) {
        L->col_group[j] = (int32_t)(j / g);
        r->g_idx[L->perm[j]] = L->col_group[j];
    }
    for (int64_t c = 0; c < n; c++)
        if (r->g_idx[c] != (int32_t)(c / g)) r->g_idx_trivial = false;
    int64_t dead = 0;
    float *Hf = L->hbuf;
    for (int64_t k = 0; k < n * n; k++) Hf[k] = (float)L->Hd[k];
    for (int64_t j = 0; j < n; j++) dead += Hf[j * n + j] > 0.0f ? 0 : 1;
    qerr__result_set_diag(r, "dead_columns", (double)dead);

    qerr_qe *e = &L->e;
    e->threads = qerr__ctx_threads(call->ctx);
    e->T = L->W;
    e->scales = r->scales;
    e->zeros = r->zeros;
    e->groups = r->groups;
    e->col_group = L->col_group;
    e->grid = qerr__plan_grid(p, r->bits);
    return QERR_OK;
}

void qerr__qe_layer_free(qerr_qe_layer *L) {
    qerr__qe_free(&L->e, L->hbuf);
    L->hbuf = NULL;
    free(L->perm);
    free(L->iperm);
    free(L->col_group);
    free(L->W);
    free(L->Hd);
    L->perm = L->iperm = L->col_group = NULL;
    L->W = NULL;
    L->Hd = NULL;
    qerr_result_free(L->r);
    L->r = NULL;
}

typedef struct {
    qerr_qe_layer *L;
} fit_job;

static void fit_rows(void *arg, int64_t begin, int64_t end) {
    qerr_qe_layer *L = ((fit_job *)arg)->L;
    qerr_result *r = L->r;
    const int64_t n = r->cols, g = r->group_size;
    for (int64_t i = begin; i < end; i++)
        for (int64_t k = 0; k < r->groups; k++) {
            int64_t c0 = k * g, c1 = c0 + g < n ? c0 + g : n;
            qerr__grid_fit(&L->e.grid, L->W + i * n + c0, c1 - c0, 1, L->clip,
                           &r->scales[i * r->groups + k], &r->zeros[i * r->groups + k]);
        }
}

void qerr__qe_fit_grids(qerr_qe_layer *L) {
    fit_job job = {L};
    qerr__parallel_for(L->e.threads, L->r->rows, 4, fit_rows, &job);
}

int qerr__qe_trace(qerr_qe_layer *L, double *trace, int64_t it) {
    if (!trace) return QERR_OK;
    double err, ref;
    QERR_TRY(qerr__layer_objective(L->e.T, L->e.Q, L->e.rows, L->e.cols, L->Hd, &err, &ref));
    trace[it] = err;
    return QERR_OK;
}

void qerr__qe_store_codes(qerr_qe_layer *L) {
    const qerr_qe *e = &L->e;
    qerr_result *r = L->r;
    const int64_t n = e->cols;
    for (int64_t i = 0; i < e->rows; i++)
        for (int64_t j = 0; j < n; j++) {
            int32_t g = e->col_group[j];
            r->codes[i * n + L->perm[j]] = (uint8_t)qerr__grid_code(
                &e->grid, e->Q[i * n + j], r->scales[i * r->groups + g],
                r->zeros[i * r->groups + g]);
        }
}

/* ---- init=gptq: GPTQ's solution and grids as the starting point ---------- */

static int gptq_start(const qerr_method_call *call, qerr_qe_layer *L) {
    const qerr_plan *p = call->plan;
    static const char *const keys[] = {"bits", "group_size", "ragged_groups", "symmetric",
                                       "clip_search", "act_order", "block_size"};
    qerr_plan *gp = NULL;
    QERR_TRY(qerr_plan_create(&gp, "gptq"));
    int rc = QERR_OK;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0] && rc == QERR_OK; k++)
        rc = qerr_plan_set_int(gp, keys[k], qerr__plan_int(p, keys[k]));
    if (rc == QERR_OK) rc = qerr_plan_set_double(gp, "damp", qerr__plan_double(p, "damp"));
    if (rc == QERR_OK) /* GPTQ's grids are kept: they must be the stored ones */
        rc = qerr_plan_set(gp, "scale_dtype",
                           qerr__plan_choice(p, "scale_dtype") == 1 ? "f16" : "f32");
    qerr_result *gr = NULL;
    if (rc == QERR_OK) {
        qerr_method_call gc = *call;
        gc.plan = gp;
        rc = qerr__gptq_method.quantize(&gc, &gr);
    }
    qerr_plan_free(gp);
    QERR_TRY(rc);
    qerr_result *r = L->r;
    const int64_t m = r->rows, n = r->cols;
    float *Q0 = qerr__malloc2((size_t)(m * n), sizeof(float));
    if (!Q0) {
        qerr_result_free(gr);
        return qerr__fail(QERR_E_NOMEM, "quantease: out of memory for the GPTQ start");
    }
    qerr__result_dequant(gr, Q0);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) L->e.Q[i * n + j] = Q0[i * n + L->perm[j]];
    /* GPTQ's grids and column->group map, held fixed from here on */
    memcpy(r->scales, gr->scales, (size_t)(m * r->groups) * sizeof(float));
    memcpy(r->zeros, gr->zeros, (size_t)(m * r->groups) * sizeof(int32_t));
    memcpy(r->g_idx, gr->g_idx, (size_t)n * sizeof(int32_t));
    r->g_idx_trivial = gr->g_idx_trivial;
    for (int64_t j = 0; j < n; j++) L->col_group[j] = gr->g_idx[L->perm[j]];
    double v;
    if (qerr_result_diag(gr, "damp", &v) == QERR_OK) qerr__result_set_diag(r, "damp", v);
    if (qerr_result_diag(gr, "fallbacks", &v) == QERR_OK) qerr__result_set_diag(r, "fallbacks", v);
    free(Q0);
    qerr_result_free(gr);
    return QERR_OK;
}

/* ---- the method ---------------------------------------------------------- */

static int quantease_descend(const qerr_method_call *call, qerr_qe_layer *L, double *trace) {
    qerr_qe *e = &L->e;
    double first = NAN, last = NAN;
    double t0 = qerr__now();
    double start = qerr__qe_residual(e);
    for (int64_t it = 0; it < L->iters; it++) {
        bool rounds = qerr__qe_sweep_rounds(it, L->iters, L->relax_every, L->relax_until);
        if (it > 0 && it % L->refresh_every == 0) qerr__qe_residual(e);
        qerr__qe_sweep(e, rounds);
        last = qerr__qe_objective(e);
        if (rounds && isnan(first)) first = last;
        QERR_TRY(qerr__qe_trace(L, trace, it));
        QERR_TRY(qerr__progress(call->ctx, "quantease sweep",
                                (double)(it + 1) / (double)L->iters));
    }
    qerr_result *r = L->r;
    qerr__result_set_diag(r, "sweep_seconds", (qerr__now() - t0) / (double)L->iters);
    qerr__result_set_diag(r, "objective_start", start);
    qerr__result_set_diag(r, "objective_first", first);
    qerr__result_set_diag(r, "objective_last", last);
    qerr__result_set_diag(r, "iterations", (double)L->iters);
    return QERR_OK;
}

int qerr__quantease_run(const qerr_method_call *call, qerr_result **out, double *trace) {
    qerr_qe_layer L;
    QERR_TRY(qerr__qe_prepare(call, &L));
    int rc = QERR_OK;
    if (qerr__plan_choice(call->plan, "init") == 1) {
        rc = gptq_start(call, &L);
    } else {
        qerr__qe_fit_grids(&L);
        memcpy(L.e.Q, L.W, (size_t)(call->rows * call->cols) * sizeof(float));
    }
    if (rc == QERR_OK) rc = quantease_descend(call, &L, trace);
    if (rc != QERR_OK) {
        qerr__qe_layer_free(&L);
        return rc;
    }
    qerr__qe_store_codes(&L);
    *out = L.r;
    L.r = NULL;
    qerr__qe_layer_free(&L);
    return QERR_OK;
}

/* ---- refinement of a given on-grid result (block-wise omniquant/cqe) ---- */

int qerr__quantease_refine(const qerr_ctx *ctx, const float *W, int64_t rows, int64_t cols,
                           const double *H, int64_t nsamples, const qerr_result *start,
                           int64_t iters, bool from_w, qerr_result **out) {
    *out = NULL;
    QERR_CHECK(start && start->rows == rows && start->cols == cols, QERR_E_SHAPE,
               "quantease refine: the start is not a %lldx%lld result", (long long)rows,
               (long long)cols);
    QERR_CHECK(start->g_idx_trivial && !start->n_outliers, QERR_E_INVALID_ARG,
               "quantease refine: the start must have consecutive groups and no outliers");
    qerr_plan *p = NULL;
    QERR_TRY(qerr_plan_create(&p, "quantease"));
    const int64_t g = start->group_size < cols ? start->group_size : -1;
    int rc = qerr_plan_set_int(p, "bits", start->bits);
    if (rc == QERR_OK) rc = qerr_plan_set_int(p, "group_size", g);
    if (rc == QERR_OK && g > 0 && cols % g) rc = qerr_plan_set_int(p, "ragged_groups", 1);
    if (rc == QERR_OK) rc = qerr_plan_set_int(p, "iterations", iters);
    /* from the start: every sweep rounds; from W: the reference schedule */
    if (rc == QERR_OK && !from_w) rc = qerr_plan_set_int(p, "relax_every", 0);
    qerr_qe_layer L;
    memset(&L, 0, sizeof L);
    const qerr_method_call call = {ctx ? ctx : qerr__default_ctx(), p, W, rows, cols, H,
                                   nsamples, NULL};
    if (rc == QERR_OK) rc = qerr__qe_prepare(&call, &L);
    if (rc == QERR_OK && L.r->groups != start->groups)
        rc = qerr__fail(QERR_E_SHAPE, "quantease refine: %lld groups per row, the start has %lld",
                        (long long)L.r->groups, (long long)start->groups);
    if (rc == QERR_OK) {
        /* the start's grids stay fixed; Q starts on them (no act order, so the
         * working order is the original one) */
        memcpy(L.r->scales, start->scales, (size_t)(rows * start->groups) * sizeof(float));
        memcpy(L.r->zeros, start->zeros, (size_t)(rows * start->groups) * sizeof(int32_t));
        if (from_w) memcpy(L.e.Q, W, (size_t)(rows * cols) * sizeof(float));
        else qerr__result_dequant(start, L.e.Q);
        rc = quantease_descend(&call, &L, NULL);
    }
    qerr_plan_free(p);
    if (rc != QERR_OK) {
        qerr__qe_layer_free(&L);
        return rc;
    }
    qerr__qe_store_codes(&L);
    *out = L.r;
    L.r = NULL;
    qerr__qe_layer_free(&L);
    return QERR_OK;
}

static int quantease_quantize(const qerr_method_call *call, qerr_result **out) {
    return qerr__quantease_run(call, out, NULL);
}

static const qerr_param_def quantease_params[] = {
    QERR_PDEF_BITS, QERR_PDEF_GROUP_SIZE, QERR_PDEF_RAGGED, QERR_PDEF_SYMMETRIC,
    QERR_PDEF_CLIP_SEARCH, QERR_PDEF_SCALE_DTYPE, QERR_QE_PDEF_COMMON,
    {"init", QERR_PARAM_CHOICE, 0, 0, 0, "w|gptq",
     "starting point: the float weights, or GPTQ's solution and grids"},
    {"damp", QERR_PARAM_DOUBLE, 0.01, 0, 1, NULL,
     "damping of the GPTQ start (init=gptq), as a fraction of mean(diag H)"},
};

const qerr_method qerr__quantease_method = {
    .version = QERR_METHOD_VERSION,
    .name = "quantease",
    .summary = "QuantEase: cyclic coordinate descent on the layer error over fixed grids",
    .params = quantease_params,
    .nparams = (int)(sizeof quantease_params / sizeof quantease_params[0]),
    .needs_calib = true,
    .quantize = quantease_quantize,
};
