/* Outlier-aware QuantEase (Behdin et al. 2023, Algorithm 3): W ~= Q + S with
 * Q on per-(row, group) grids and S sparse in full precision, either k
 * single entries (unstructured, k = round(s * rows * cols)) or k whole input
 * columns (structured, k = round(s * cols)). Each outer iteration runs one
 * QuantEase sweep on Q with target W - S, then one iterative hard
 * thresholding step S <- top_k(S + eta R), R = (W - S - Q) H,
 * eta = alpha / (2 lambda_max(H)).
 *
 * Written from the math, not from the public quantease_outlier.py, whose
 * sweep never writes the new column into W_hat (algorithms.md 2.4). */
#include "quantease.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { MODE_UNSTRUCTURED = 0, MODE_STRUCTURED = 1 };

typedef struct {
    qerr_qe_layer *L;
    int mode;
    double frac;
    int64_t k;          /* entries (unstructured) or columns (structured) */
    float *S;           /* rows x cols, working order */
    float *T;           /* rows x cols, W - S */
    uint8_t *mask;      /* rows x cols (unstructured) or cols (structured) */
    float *scratch;     /* rows x cols (unstructured selection) */
} outlier_state;

/* Element of rank k (0-based, ascending) of a[0..n); reorders a. Hoare
 * partition around a median-of-three value: deterministic, O(n) expected. */
static float nth_smallest(float *a, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi];
        float piv = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < piv) i++;
            while (a[j] > piv) j--;
            if (i <= j) {
                float t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return a[k];
    }
    return a[k];
}

/* ---- grids --------------------------------------------------------------- */

typedef struct {
    outlier_state *st;
    atomic_int failed; /* a worker could not get its scratch buffer */
} grid_job;

/* Unstructured: each (row, group) range drops the t = round(len * s / 2)
 * smallest values and the t largest but one, like the reference's
 * find_params(outlier=s); the inliers are then fitted as usual. Structured:
 * the range covers only the columns outside the outlier set. */
static void grid_rows(void *arg, int64_t begin, int64_t end) {
    grid_job *job = arg;
    outlier_state *st = job->st;
    qerr_qe_layer *L = st->L;
    qerr_result *r = L->r;
    const int64_t n = r->cols, g = r->group_size;
    float *buf = qerr__malloc2((size_t)g * 2, sizeof(float));
    if (!buf) {
        atomic_store(&job->failed, 1);
        return;
    }
    for (int64_t i = begin; i < end; i++)
        for (int64_t kk = 0; kk < r->groups; kk++) {
            int64_t c0 = kk * g, c1 = c0 + g < n ? c0 + g : n, len = c1 - c0;
            const float *w = L->W + i * n + c0;
            float *sp = &r->scales[i * r->groups + kk];
            int32_t *zp = &r->zeros[i * r->groups + kk];
            int64_t t = st->mode == MODE_UNSTRUCTURED
                            ? (int64_t)nearbyint((double)len * st->frac / 2.0)
                            : 0;
            if (st->mode == MODE_UNSTRUCTURED && t == 0) {
                qerr__grid_fit(&L->e.grid, w, len, 1, L->clip, sp, zp);
                continue;
            }
            float *in = buf, *sorted = buf + g;
            int64_t cnt = 0;
            if (st->mode == MODE_UNSTRUCTURED) {
                memcpy(sorted, w, (size_t)len * sizeof(float));
                float lo = nth_smallest(sorted, len, t - 1);
                float hi = nth_smallest(sorted, len, len - t - 1);
                for (int64_t c = 0; c < len; c++)
                    if (w[c] >= lo && w[c] <= hi) in[cnt++] = w[c];
            } else {
                for (int64_t c = 0; c < len; c++)
                    if (!st->mask[c0 + c]) in[cnt++] = w[c];
            }
            qerr__grid_fit(&L->e.grid, in, cnt, 1, L->clip, sp, zp);
        }
    free(buf);
}

static int fit_grids(outlier_state *st) {
    grid_job job = {st, 0};
    qerr__parallel_for(st->L->e.threads, st->L->r->rows, 4, grid_rows, &job);
    QERR_CHECK(!atomic_load(&job.failed), QERR_E_NOMEM,
               "quantease_outlier: out of memory fitting the grids");
    return QERR_OK;
}

/* ---- top-k projections ---------------------------------------------------- */

typedef struct {
    double score;
    int32_t c;
} col_score;

static int by_score_desc(const void *a, const void *b) {
    const col_score *x = a, *y = b;
    if (x->score > y->score) return -1;
    if (x->score < y->score) return 1;
    return (x->c > y->c) - (x->c < y->c);
}

/* Keep in V (rows x cols) the k entries of largest |V| (ties: first in
 * row-major order), zero the rest, and mark them in st->mask. */
static int project_entries(outlier_state *st, float *V) {
    const int64_t mn = st->L->e.rows * st->L->e.cols, k = st->k;
    memset(st->mask, 0, (size_t)mn);
    if (k == 0) {
        memset(V, 0, (size_t)mn * sizeof(float));
        return QERR_OK;
    }
    for (int64_t x = 0; x < mn; x++) st->scratch[x] = fabsf(V[x]);
    float thr = nth_smallest(st->scratch, mn, mn - k);
    int64_t above = 0;
    for (int64_t x = 0; x < mn; x++) above += fabsf(V[x]) > thr;
    int64_t ties = k - above;
    for (int64_t x = 0; x < mn; x++) {
        float a = fabsf(V[x]);
        if (a > thr || (a == thr && ties-- > 0)) st->mask[x] = 1;
        else V[x] = 0.0f;
    }
    return QERR_OK;
}

/* Keep in V the k columns of largest l2 norm (ties: lower column). */
static int project_columns(outlier_state *st, float *V) {
    const int64_t m = st->L->e.rows, n = st->L->e.cols;
    col_score *cs = qerr__malloc2((size_t)n, sizeof *cs);
    QERR_CHECK(cs, QERR_E_NOMEM, "quantease_outlier: out of memory ranking columns");
    for (int64_t c = 0; c < n; c++) {
        cs[c].score = 0;
        cs[c].c = (int32_t)c;
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t c = 0; c < n; c++) cs[c].score += (double)V[i * n + c] * V[i * n + c];
    qsort(cs, (size_t)n, sizeof *cs, by_score_desc);
    memset(st->mask, 0, (size_t)n);
    for (int64_t x = 0; x < st->k; x++) st->mask[cs[x].c] = 1;
    free(cs);
    for (int64_t i = 0; i < m; i++)
        for (int64_t c = 0; c < n; c++)
            if (!st->mask[c]) V[i * n + c] = 0.0f;
    return QERR_OK;
}

static int project(outlier_state *st, float *V) {
    return st->mode == MODE_STRUCTURED ? project_columns(st, V) : project_entries(st, V);
}

/* ---- IHT step ------------------------------------------------------------- */

typedef struct {
    outlier_state *st;
    const float *Snew;
} apply_job;

/* S <- Snew row by row, keeping T = W - S and R = (T - Q) H exact:
 * R[i, :] -= dS[i, c] H[c, :] for each changed entry. */
static void apply_rows(void *arg, int64_t begin, int64_t end) {
    const apply_job *jb = arg;
    outlier_state *st = jb->st;
    const qerr_qe *e = &st->L->e;
    const int64_t n = e->cols;
    for (int64_t i = begin; i < end; i++) {
        float *s = st->S + i * n, *t = st->T + i * n, *r = e->R + i * n;
        const float *sn = jb->Snew + i * n, *w = st->L->W + i * n;
        for (int64_t c = 0; c < n; c++) {
            float d = sn[c] - s[c];
            if (d == 0.0f) continue;
            const float *h = e->H + c * n;
            for (int64_t x = 0; x < n; x++) r[x] -= d * h[x];
            s[c] = sn[c];
            t[c] = w[c] - s[c];
        }
    }
}

/* S <- top_k(S + eta R), keeping R up to date; *f gets the new f. */
static int iht_step(outlier_state *st, float eta, double *f) {
    qerr_qe *e = &st->L->e;
    const int64_t mn = e->rows * e->cols;
    float *V = e->D; /* scratch of qerr__qe_residual, free here */
    for (int64_t x = 0; x < mn; x++) V[x] = st->S[x] + eta * e->R[x];
    QERR_TRY(project(st, V));
    apply_job job = {st, V};
    qerr__parallel_for(e->threads, e->rows, 4, apply_rows, &job);
    double s = 0;
    for (int64_t x = 0; x < mn; x++) s += (double)(st->T[x] - e->Q[x]) * (double)e->R[x];
    *f = s;
    return QERR_OK;
}

/* ---- the method ---------------------------------------------------------- */

static int store_outliers(outlier_state *st) {
    qerr_qe_layer *L = st->L;
    const int64_t m = L->e.rows, n = L->e.cols;
    int64_t cnt = st->mode == MODE_STRUCTURED ? st->k * m : st->k;
    int32_t *ri = qerr__malloc2((size_t)cnt + 1, sizeof(int32_t));
    int32_t *ci = qerr__malloc2((size_t)cnt + 1, sizeof(int32_t));
    float *vi = qerr__malloc2((size_t)cnt + 1, sizeof(float));
    int rc = QERR_OK;
    if (!ri || !ci || !vi) {
        rc = qerr__fail(QERR_E_NOMEM, "quantease_outlier: out of memory for %lld outliers",
                        (long long)cnt);
    } else {
        int64_t x = 0;
        for (int64_t i = 0; i < m; i++)
            for (int64_t c = 0; c < n; c++) { /* original order: sorted by (row, col) */
                int64_t j = L->iperm[c];
                bool on = st->mode == MODE_STRUCTURED ? st->mask[j] : st->mask[i * n + j];
                if (!on) continue;
                ri[x] = (int32_t)i;
                ci[x] = (int32_t)c;
                vi[x++] = st->S[i * n + j];
            }
        rc = x == cnt ? qerr__result_set_outliers(L->r, cnt, ri, ci, vi)
                      : qerr__fail(QERR_E_INTERNAL, "quantease_outlier: %lld outliers, %lld expected",
                                   (long long)x, (long long)cnt);
    }
    free(ri);
    free(ci);
    free(vi);
    return rc;
}

static int outlier_descend(const qerr_method_call *call, outlier_state *st, double *trace) {
    qerr_qe_layer *L = st->L;
    qerr_qe *e = &L->e;
    const int64_t m = e->rows, n = e->cols;
    double lmax = qerr__lambda_max(L->Hd, n, 100, qerr_ctx_seed(call->ctx));
    QERR_CHECK(isfinite(lmax) && lmax > 0, QERR_E_NUMERIC,
               "quantease_outlier: lambda_max(H) = %g is not positive", lmax);
    float eta = (float)(qerr__plan_double(call->plan, "alpha") / (2.0 * lmax));
    qerr__result_set_diag(L->r, "lambda_max", lmax);

    /* start: S = top_k(W), Q = W - S */
    memcpy(e->D, L->W, (size_t)(m * n) * sizeof(float));
    QERR_TRY(project(st, e->D));
    memcpy(st->S, e->D, (size_t)(m * n) * sizeof(float));
    for (int64_t x = 0; x < m * n; x++) st->T[x] = L->W[x] - st->S[x];
    memcpy(e->Q, st->T, (size_t)(m * n) * sizeof(float));
    if (st->mode == MODE_UNSTRUCTURED) QERR_TRY(fit_grids(st)); /* fixed from W */

    double first = NAN, last = NAN;
    double t0 = qerr__now();
    qerr__result_set_diag(L->r, "objective_start", qerr__qe_residual(e));
    for (int64_t it = 0; it < L->iters; it++) {
        bool rounds = qerr__qe_sweep_rounds(it, L->iters, L->relax_every, L->relax_until);
        if (st->mode == MODE_STRUCTURED) QERR_TRY(fit_grids(st)); /* the column set may move */
        if (it > 0 && it % L->refresh_every == 0) qerr__qe_residual(e);
        qerr__qe_sweep(e, rounds);
        if (st->k > 0) QERR_TRY(iht_step(st, eta, &last));
        else last = qerr__qe_objective(e);
        if (rounds && isnan(first)) first = last;
        QERR_TRY(qerr__qe_trace(L, trace, it));
        QERR_TRY(qerr__progress(call->ctx, "quantease_outlier sweep",
                                (double)(it + 1) / (double)L->iters));
    }
    qerr_result *r = L->r;
    qerr__result_set_diag(r, "sweep_seconds", (qerr__now() - t0) / (double)L->iters);
    qerr__result_set_diag(r, "objective_first", first);
    qerr__result_set_diag(r, "objective_last", last);
    qerr__result_set_diag(r, "iterations", (double)L->iters);
    return QERR_OK;
}

int qerr__quantease_outlier_run(const qerr_method_call *call, qerr_result **out,
                                double *trace) {
    qerr_qe_layer L;
    QERR_TRY(qerr__qe_prepare(call, &L));
    const int64_t m = call->rows, n = call->cols;
    outlier_state st = {&L, qerr__plan_choice(call->plan, "outlier_mode"),
                        qerr__plan_double(call->plan, "outlier_fraction"), 0,
                        NULL, NULL, NULL, NULL};
    st.k = st.mode == MODE_STRUCTURED ? (int64_t)nearbyint(st.frac * (double)n)
                                      : (int64_t)nearbyint(st.frac * (double)m * (double)n);
    size_t mn = (size_t)(m * n);
    st.S = qerr__malloc2(mn, sizeof(float));
    st.T = qerr__malloc2(mn, sizeof(float));
    st.mask = qerr__calloc(st.mode == MODE_STRUCTURED ? (size_t)n : mn, 1);
    st.scratch = st.mode == MODE_UNSTRUCTURED ? qerr__malloc2(mn, sizeof(float)) : NULL;
    int rc = QERR_OK;
    if (!st.S || !st.T || !st.mask || (st.mode == MODE_UNSTRUCTURED && !st.scratch))
        rc = qerr__fail(QERR_E_NOMEM, "quantease_outlier: out of memory for a %lldx%lld layer",
                        (long long)m, (long long)n);
    if (rc == QERR_OK) {
        L.e.T = st.T;
        rc = outlier_descend(call, &st, trace);
    }
    if (rc == QERR_OK) {
        qerr__qe_store_codes(&L);
        rc = store_outliers(&st);
    }
    free(st.S);
    free(st.T);
    free(st.mask);
    free(st.scratch);
    if (rc != QERR_OK) {
        qerr__qe_layer_free(&L);
        return rc;
    }
    qerr__result_set_diag(L.r, "outliers", (double)L.r->n_outliers);
    *out = L.r;
    L.r = NULL;
    qerr__qe_layer_free(&L);
    return QERR_OK;
}

static int outlier_quantize(const qerr_method_call *call, qerr_result **out) {
    return qerr__quantease_outlier_run(call, out, NULL);
}

static const qerr_param_def outlier_params[] = {
    QERR_PDEF_BITS, QERR_PDEF_GROUP_SIZE, QERR_PDEF_RAGGED, QERR_PDEF_SYMMETRIC,
    QERR_PDEF_CLIP_SEARCH, QERR_PDEF_SCALE_DTYPE, QERR_QE_PDEF_COMMON,
    {"outlier_fraction", QERR_PARAM_DOUBLE, 0.01, 0, 0.5, NULL,
     "share of weights (unstructured) or input columns (structured) kept in full precision"},
    {"outlier_mode", QERR_PARAM_CHOICE, 0, 0, 0, "unstructured|structured",
     "single entries, or whole input columns"},
    {"alpha", QERR_PARAM_DOUBLE, 1, 1e-6, 2, NULL,
     "IHT step eta = alpha / (2 lambda_max(H)); above 2 a step could raise the error"},
};

const qerr_method qerr__quantease_outlier_method = {
    .version = QERR_METHOD_VERSION,
    .name = "quantease_outlier",
    .summary = "QuantEase with a sparse full-precision part found by iterative hard thresholding",
    .params = outlier_params,
    .nparams = (int)(sizeof outlier_params / sizeof outlier_params[0]),
    .needs_calib = true,
    .quantize = outlier_quantize,
};
