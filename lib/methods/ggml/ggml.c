/* Method "ggml": llama.cpp's block formats (Q4_0 ... Q6_K) chosen with the
 * full Hessian. Every block's grid (float16 d/dmin, integer sub-block scales
 * and offsets) is fitted to the H-weighted error, and the codes on that exact
 * grid come from GPTQ's error feedback through the Cholesky factor of H^-1
 * (solver=gptq), optionally followed by QuantEase coordinate-descent sweeps
 * (solver=quantease); solver=rtn rounds onto the fitted grids. The result
 * stores s_k = d sc_k and m_k = dmin mn_k per sub-block, so it dequantizes to
 * ggml's values bit for bit (qerr__ggml_encode_result gives the bytes). */
#include "../method.h"
#include "../quantease.h"
#include "ggml_fit.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#define GGML_TYPE_CHOICES "q4_0|q4_1|q5_0|q5_1|q8_0|q2_k|q3_k|q4_k|q5_k|q6_k"
static const int type_of_choice[] = {
    QERR_GGML_Q4_0, QERR_GGML_Q4_1, QERR_GGML_Q5_0, QERR_GGML_Q5_1, QERR_GGML_Q8_0,
    QERR_GGML_Q2_K, QERR_GGML_Q3_K, QERR_GGML_Q4_K, QERR_GGML_Q5_K, QERR_GGML_Q6_K,
};
enum { SOLVER_RTN, SOLVER_GPTQ, SOLVER_QUANTEASE };
enum { GRID_DYNAMIC, GRID_STATIC };

static const qerr_param_def ggml_params[] = {
    {"type", QERR_PARAM_CHOICE, 7, 0, 0, GGML_TYPE_CHOICES, "ggml block type"},
    {"solver", QERR_PARAM_CHOICE, 2, 0, 0, "rtn|gptq|quantease",
     "codes by rounding onto the fitted grids, GPTQ error feedback, or GPTQ then "
     "QuantEase coordinate descent"},
    {"grid", QERR_PARAM_CHOICE, 0, 0, 0, "dynamic|static",
     "fit each block's grid when the sweep reaches it (on the error-fed weights) or up front "
     "from the original weights"},
    {"sweeps", QERR_PARAM_INT, 10, 0, 1000, NULL,
     "coordinate-descent sweeps of solver=quantease (every sweep rounds)"},
    {"damp", QERR_PARAM_DOUBLE, 0.01, 0, 1, NULL,
     "damping added to diag(H), as a fraction of mean(diag H)"},
    {"refit", QERR_PARAM_INT, 0, 0, 100, NULL,
     "rounds of: refit every block's grid to the coordinate-wise optimum Q + R / diag(H), "
     "round, QuantEase sweeps; a round is kept only when it lowers the full-H objective"},
};

static int plan_type(const qerr_plan *p) { return type_of_choice[qerr__plan_choice(p, "type")]; }

static int ggml_validate(const qerr_plan *p, int64_t rows, int64_t cols) {
    const int type = plan_type(p);
    const int64_t be = qerr__ggml_block_elems(type);
    QERR_CHECK(cols % be == 0, QERR_E_SHAPE,
               "ggml: %s needs a width that is a multiple of %lld; this layer has %lld columns",
               qerr__ggml_type_name(type), (long long)be, (long long)cols);
    return QERR_OK;
}

typedef struct {
    qerr_ggml_grid g;
    float *W;            /* rows x n, error-fed in place by gptq */
    const float *hw;     /* n fit weights: diag H (damped); 1 / U_jj^2 during gptq */
    const float *U;      /* n x n upper factor of H^-1 (gptq) */
    float *E;            /* rows x B scaled errors of the current batch */
    qerr_ggml_block *blk; /* rows x n/elems block grids */
    qerr_result *r;
    int64_t n, i1, i2;
    bool dynamic;
} ggml_job;

static qerr_ggml_block *row_block(const ggml_job *jb, int64_t i, int64_t j) {
    return &jb->blk[i * (jb->n / jb->g.elems) + j / jb->g.elems];
}

/* Fit every block grid of rows [begin, end) from jb->W (static grids, rtn). */
static void fit_rows(void *arg, int64_t begin, int64_t end) {
    ggml_job *jb = arg;
    for (int64_t i = begin; i < end; i++)
        for (int64_t j = 0; j < jb->n; j += jb->g.elems)
            qerr__ggml_fit_block(&jb->g, jb->W + i * jb->n + j, jb->hw + j, row_block(jb, i, j));
}

/* GPTQ over columns [i1, i2) (whole blocks) for rows [begin, end). */
static void gptq_rows(void *arg, int64_t begin, int64_t end) {
    ggml_job *jb = arg;
    const qerr_ggml_grid *g = &jb->g;
    const int64_t n = jb->n, bw = jb->i2 - jb->i1;
    for (int64_t i = begin; i < end; i++) {
        float *w = jb->W + i * n, *e = jb->E + i * bw;
        qerr_ggml_bgrid bg;
        qerr_ggml_block *b = NULL;
        for (int64_t j = jb->i1; j < jb->i2; j++) {
            if (j % g->elems == 0) {
                b = row_block(jb, i, j);
                if (jb->dynamic) qerr__ggml_fit_block(g, w + j, jb->hw + j, b);
                qerr__ggml_bgrid(g, b, &bg);
            }
            int k = (int)((j % g->elems) / g->sub);
            int q = qerr__ggml_code(g, bg.s[k], bg.m[k], w[j]);
            b->q[j % g->elems] = (uint8_t)q;
            const float *u = jb->U + j * n;
            float err = (w[j] - qerr__ggml_value(g, bg.s[k], bg.m[k], q)) / u[j];
            for (int64_t c = j + 1; c < jb->i2; c++) w[c] -= err * u[c];
            e[j - jb->i1] = err;
        }
    }
}

static int run_gptq(const qerr_method_call *call, ggml_job *jb, double *H) {
    const int64_t rows = call->rows, n = call->cols;
    double damp_used;
    int fallbacks = 0;
    int rc = qerr__chol_inverse_upper(H, n, qerr__plan_double(call->plan, "damp"), &damp_used,
                                      &fallbacks);
    qerr__result_set_diag(jb->r, "fallbacks", fallbacks);
    QERR_TRY(rc);
    qerr__result_set_diag(jb->r, "damp", damp_used);
    float *U = (float *)H; /* the factor in float32, in H's memory */
    for (int64_t k = 0; k < n * n; k++) U[k] = (float)H[k];
    jb->U = U;
    /* Grids fitted during the sweep weigh column j by 1 / [H_rest^-1]_jj =
     * 1 / U_jj^2, the weight GPTQ's own error step gives it (0.5-1% lower
     * layer error on tiny-llama than diag H). */
    float *hu = qerr__malloc2((size_t)n, sizeof(float));
    QERR_CHECK(hu, QERR_E_NOMEM, "ggml: out of memory");
    for (int64_t j = 0; j < n; j++) hu[j] = 1.0f / (U[j * n + j] * U[j * n + j]);
    const float *hw_diag = jb->hw;
    jb->hw = hu;
    const int64_t B = jb->g.elems > 128 ? jb->g.elems : 128;
    jb->E = qerr__malloc2((size_t)(rows * B), sizeof(float));
    if (!jb->E) {
        jb->hw = hw_diag;
        free(hu);
        return qerr__fail(QERR_E_NOMEM, "ggml: out of memory for a %lldx%lld error block",
                          (long long)rows, (long long)B);
    }
    const int threads = qerr__ctx_threads(call->ctx);
    for (int64_t i1 = 0; i1 < n && rc == QERR_OK; i1 += B) {
        int64_t i2 = i1 + B < n ? i1 + B : n;
        jb->i1 = i1;
        jb->i2 = i2;
        qerr__parallel_for(threads, rows, 8, gptq_rows, jb);
        if (i2 < n)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)(n - i2),
                        (int)(i2 - i1), -1.0f, jb->E, (int)(i2 - i1), U + i1 * n + i2, (int)n,
                        1.0f, jb->W + i2, (int)n);
        rc = qerr__progress(call->ctx, "ggml gptq", (double)i2 / (double)n);
    }
    free(jb->E);
    jb->E = NULL;
    jb->hw = hw_diag;
    free(hu);
    return rc;
}

/* Codes and grids of the blocks into the result. */
static int store_blocks(const ggml_job *jb) {
    qerr_result *r = jb->r;
    const qerr_ggml_grid *g = &jb->g;
    if (g->has_min) QERR_TRY(qerr__result_alloc_mins(r));
    for (int64_t i = 0; i < r->rows; i++)
        for (int64_t j = 0; j < jb->n; j += g->elems) {
            const qerr_ggml_block *b = row_block(jb, i, j);
            qerr_ggml_bgrid bg;
            qerr__ggml_bgrid(g, b, &bg);
            const int64_t g0 = i * r->groups + j / g->sub;
            for (int k = 0; k < g->nsub; k++) {
                r->scales[g0 + k] = bg.s[k];
                r->zeros[g0 + k] = g->zero;
                if (r->mins) r->mins[g0 + k] = bg.m[k];
            }
            memcpy(r->codes + i * jb->n + j, b->q, (size_t)g->elems);
        }
    return QERR_OK;
}

/* QuantEase sweeps on the fixed grids. The engine's grids have no offsets,
 * so it runs on the shifted target W + m (same objective, since every value
 * is s (q - z) - m with m fixed per group) and the codes come back. */
static int run_quantease(const qerr_method_call *call, qerr_result *r, int64_t sweeps) {
    const int64_t rows = call->rows, n = call->cols;
    float *Ws = qerr__malloc2((size_t)(rows * n), sizeof(float));
    QERR_CHECK(Ws, QERR_E_NOMEM, "ggml: out of memory for a %lldx%lld layer", (long long)rows,
               (long long)n);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < n; j++)
            Ws[i * n + j] = call->W[i * n + j] + (r->mins ? r->mins[i * r->groups + j / r->group_size] : 0.0f);
    float *mins = r->mins;
    r->mins = NULL; /* the start as the engine sees it */
    qerr_result *q = NULL;
    int rc = qerr__quantease_refine(call->ctx, Ws, rows, n, call->H, call->nsamples, r, sweeps,
                                    false, &q);
    r->mins = mins;
    free(Ws);
    QERR_TRY(rc);
    memcpy(r->codes, q->codes, (size_t)(rows * n));
    qerr_result_free(q);
    return QERR_OK;
}

/* tr((W - Q) H (W - Q)^T) of a result; its dequantized values into Q and,
 * when R is not NULL, R = (W - Q) H. */
static double result_objective(const qerr_method_call *call, const qerr_result *r, float *Q,
                               float *R) {
    const int64_t rows = call->rows, n = call->cols;
    qerr__result_dequant(r, Q);
    double err, ref;
    qerr__layer_objective(call->W, Q, rows, n, call->H, &err, &ref);
    if (R) {
        float *D = R + rows * n; /* scratch half of R's buffer */
        float *Hf = D + rows * n;
        for (int64_t k = 0; k < rows * n; k++) D[k] = call->W[k] - Q[k];
        for (int64_t k = 0; k < n * n; k++) Hf[k] = (float)call->H[k];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)n, (int)n, 1.0f, D,
                    (int)n, Hf, (int)n, 0.0f, R, (int)n);
    }
    return err;
}

typedef struct {
    ggml_job *jb;
    const float *T; /* rows x n refit targets */
} refit_job;

static void refit_rows(void *arg, int64_t begin, int64_t end) {
    refit_job *rj = arg;
    ggml_job *jb = rj->jb;
    for (int64_t i = begin; i < end; i++)
        for (int64_t j = 0; j < jb->n; j += jb->g.elems)
            qerr__ggml_fit_block(&jb->g, rj->T + i * jb->n + j, jb->hw + j, row_block(jb, i, j));
}

/* Grid refit rounds after the sweep (see the "refit" key). */
static int run_refit(const qerr_method_call *call, ggml_job *jb, int64_t rounds, int64_t sweeps) {
    const int64_t rows = call->rows, n = call->cols;
    float *Q = qerr__malloc2((size_t)(rows * n), sizeof(float));
    float *R = qerr__malloc2((size_t)(2 * rows * n + n * n), sizeof(float));
    qerr_result *keep = jb->r, *cand = NULL;
    int rc = Q && R ? QERR_OK
                    : qerr__fail(QERR_E_NOMEM, "ggml: out of memory for a %lldx%lld refit",
                                 (long long)rows, (long long)n);
    int64_t kept = 0;
    for (int64_t it = 0; rc == QERR_OK && it < rounds; it++) {
        double f_old = result_objective(call, keep, Q, R);
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < n; j++) {
                double h = call->H[j * n + j];
                Q[i * n + j] += h > 0 ? (float)(R[i * n + j] / h) : 0.0f;
            }
        refit_job rj = {jb, Q};
        qerr__parallel_for(qerr__ctx_threads(call->ctx), rows, 4, refit_rows, &rj);
        rc = qerr__result_alloc(&cand, rows, n, jb->g.bits, jb->g.sub);
        if (rc != QERR_OK) break;
        jb->r = cand;
        rc = store_blocks(jb);
        jb->r = keep;
        if (rc == QERR_OK && sweeps > 0) rc = run_quantease(call, cand, sweeps);
        if (rc != QERR_OK) break;
        double f_new = result_objective(call, cand, Q, NULL);
        if (!(f_new < f_old)) break;
        qerr_result_free(keep);
        keep = cand;
        cand = NULL;
        kept++;
    }
    qerr_result_free(cand);
    free(Q);
    free(R);
    jb->r = keep;
    qerr__result_set_diag(keep, "refit_rounds", (double)kept);
    return rc;
}

static int ggml_solve(const qerr_method_call *call, ggml_job *jb, float *hw, double *H) {
    const qerr_plan *p = call->plan;
    const int64_t rows = call->rows, n = call->cols;
    int solver = qerr__plan_choice(p, "solver");
    if (!call->H) solver = SOLVER_RTN; /* no calibration: H = I, plain weighted fit */
    memcpy(jb->W, call->W, (size_t)(rows * n) * sizeof(float));
    double mean = 0;
    for (int64_t j = 0; call->H && j < n; j++) mean += call->H[j * n + j];
    mean = n ? mean / (double)n : 0;
    const double damp = qerr__plan_double(p, "damp") * mean;
    for (int64_t j = 0; j < n; j++)
        hw[j] = call->H ? (float)(call->H[j * n + j] + damp) : 1.0f;
    if (mean <= 0 && call->H) /* H = 0: every weight is as good as any */
        for (int64_t j = 0; j < n; j++) hw[j] = 1.0f;
    const int threads = qerr__ctx_threads(call->ctx);
    if (solver == SOLVER_RTN || !jb->dynamic) qerr__parallel_for(threads, rows, 4, fit_rows, jb);
    if (solver != SOLVER_RTN) {
        memcpy(H, call->H, (size_t)(n * n) * sizeof(double));
        qerr__result_set_diag(jb->r, "dead_columns",
                              (double)qerr__zero_dead_columns(H, jb->W, rows, n));
        QERR_TRY(run_gptq(call, jb, H));
    }
    QERR_TRY(store_blocks(jb));
    if (solver == SOLVER_QUANTEASE && qerr__plan_int(p, "sweeps") > 0)
        QERR_TRY(run_quantease(call, jb->r, qerr__plan_int(p, "sweeps")));
    if (solver != SOLVER_RTN && qerr__plan_int(p, "refit") > 0)
        QERR_TRY(run_refit(call, jb, qerr__plan_int(p, "refit"),
                           solver == SOLVER_QUANTEASE ? qerr__plan_int(p, "sweeps") : 1));
    qerr__result_set_diag(jb->r, "solver", solver);
    return QERR_OK;
}

static int ggml_quantize(const qerr_method_call *call, qerr_result **out) {
    const qerr_plan *p = call->plan;
    const int64_t rows = call->rows, n = call->cols;
    const int type = plan_type(p);
    ggml_job jb;
    memset(&jb, 0, sizeof jb);
    qerr__ggml_grid(type, &jb.g);
    QERR_TRY(ggml_validate(p, rows, n));
    jb.n = n;
    jb.dynamic = qerr__plan_choice(p, "grid") == GRID_DYNAMIC;
    QERR_TRY(qerr__result_alloc(&jb.r, rows, n, jb.g.bits, jb.g.sub));
    jb.W = qerr__malloc2((size_t)(rows * n), sizeof(float));
    float *hw = qerr__malloc2((size_t)n, sizeof(float));
    jb.hw = hw;
    jb.blk = qerr__calloc((size_t)(rows * (n / jb.g.elems)), sizeof(qerr_ggml_block));
    double *H = call->H ? qerr__malloc2((size_t)(n * n), sizeof(double)) : NULL;
    int rc = jb.W && hw && jb.blk && (H || !call->H)
                 ? ggml_solve(call, &jb, hw, H)
                 : qerr__fail(QERR_E_NOMEM, "ggml: out of memory for a %lldx%lld layer",
                              (long long)rows, (long long)n);
    free(jb.W);
    free(hw);
    free(jb.blk);
    free(H);
    if (rc != QERR_OK) {
        qerr_result_free(jb.r);
        return rc;
    }
    qerr__result_set_diag(jb.r, "ggml_type", type);
    qerr__result_set_diag(jb.r, "storage_bits_per_weight",
                          8.0 * (double)qerr__ggml_block_bytes(type) / (double)jb.g.elems);
    qerr__result_set_diag(jb.r, "iterations", 1);
    *out = jb.r;
    return QERR_OK;
}

const qerr_method qerr__ggml_method = {
    .version = QERR_METHOD_VERSION,
    .name = "ggml",
    .summary = "llama.cpp's block types (Q4_0..Q6_K) with H-weighted grids and GPTQ/QuantEase codes",
    .params = ggml_params,
    .nparams = (int)(sizeof ggml_params / sizeof ggml_params[0]),
    .needs_calib = false,
    .wants_calib = true, /* H = I without calibration; the full H when the pipeline has it */
    .validate = ggml_validate,
    .quantize = ggml_quantize,
};
