/* Layer-wise LWC + SVD-parameterised training (OmniQuant layer-wise, LSI,
 * SDE): see cqe_layer.h. */
#include "cqe_layer.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int qerr__cqe_check_mask(int mask, int64_t width, int64_t block, int64_t rows, int64_t cols) {
    int64_t r = rows < cols ? rows : cols;
    switch (mask) {
    case QERR_CQE_MASK_NONE:
    case QERR_CQE_MASK_DIAG:
        return QERR_OK;
    case QERR_CQE_MASK_BAND:
        QERR_CHECK(width >= 1 && width < r, QERR_E_RANGE,
                   "cqe: mask band:%lld is wider than the rank %lld of a %lldx%lld weight "
                   "(need 1 <= mask_width <= %lld)",
                   (long long)width, (long long)r, (long long)rows, (long long)cols,
                   (long long)(r - 1));
        return QERR_OK;
    case QERR_CQE_MASK_BLOCK:
    case QERR_CQE_MASK_DIAG_BLOCK:
        QERR_CHECK(block >= 1 && block <= r, QERR_E_RANGE,
                   "cqe: mask block:%lld is larger than the rank %lld of a %lldx%lld weight",
                   (long long)block, (long long)r, (long long)rows, (long long)cols);
        return QERR_OK;
    default:
        return qerr__fail(QERR_E_INVALID_ARG, "cqe: unknown mask %d", mask);
    }
}

bool qerr__cqe_mask_has(int mask, int64_t width, int64_t block, int64_t a, int64_t b) {
    switch (mask) {
    case QERR_CQE_MASK_DIAG: return a == b;
    case QERR_CQE_MASK_BAND: return (a > b ? a - b : b - a) <= width;
    case QERR_CQE_MASK_BLOCK: return a < block && b < block;
    case QERR_CQE_MASK_DIAG_BLOCK: return a == b || (a < block && b < block);
    default: return false;
    }
}

static bool in_mask(const qerr_cqe_opts *o, int64_t a, int64_t b) {
    return qerr__cqe_mask_has(o->mask, o->width, o->block, a, b);
}

void qerr__cqe_layer_free(qerr_cqe_layer *st) {
    if (!st) return;
    free(st->w0);
    free(st->u);
    free(st->s);
    free(st->vt);
    free(st->mask);
    free(st->theta);
    free(st->grad);
    free(st->best);
    free(st->wd);
    free(st->q);
    free(st->eh);
    free(st->gw);
    free(st->mr);
    free(st->rr);
    qerr__adamw_free(&st->opt);
    memset(st, 0, sizeof *st);
}

/* Thin SVD of w0 (LAPACK gesdd): U m x r, S r, V^T r x n. */
static int take_svd(qerr_cqe_layer *st) {
    const int64_t m = st->m, n = st->n, r = st->r;
    double *a = qerr__malloc2((size_t)(m * n), sizeof(double));
    st->u = qerr__malloc2((size_t)(m * r), sizeof(double));
    st->s = qerr__malloc2((size_t)r, sizeof(double));
    st->vt = qerr__malloc2((size_t)(r * n), sizeof(double));
    if (!a || !st->u || !st->s || !st->vt) {
        free(a);
        return qerr__fail(QERR_E_NOMEM, "cqe: out of memory for the SVD of a %lldx%lld weight",
                          (long long)m, (long long)n);
    }
    memcpy(a, st->w0, (size_t)(m * n) * sizeof(double));
    int rc = qerr__cqe_svd(a, m, n, st->u, st->s, st->vt);
    free(a);
    return rc;
}

int qerr__cqe_svd(double *a, int64_t m, int64_t n, double *u, double *s, double *vt) {
    const int64_t r = m < n ? m : n;
    lapack_int info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', (lapack_int)m, (lapack_int)n, a,
                                     (lapack_int)n, s, u, (lapack_int)r, vt, (lapack_int)n);
    QERR_CHECK(info == 0, QERR_E_NUMERIC, "cqe: SVD of the %lldx%lld weight failed (info %d)",
               (long long)m, (long long)n, (int)info);
    return QERR_OK;
}

int qerr__cqe_layer_init(qerr_cqe_layer *st, const float *W, int64_t m, int64_t n,
                         const double *H, const qerr_cqe_opts *o) {
    memset(st, 0, sizeof *st);
    QERR_CHECK(W && H && o, QERR_E_INVALID_ARG, "cqe: NULL weight, H or options");
    /* BLAS takes int sizes, including m * n for the dot products */
    QERR_CHECK(m >= 1 && n >= 1 && m <= INT32_MAX && n <= INT32_MAX && m * n <= INT32_MAX,
               QERR_E_SHAPE, "cqe: weight %lldx%lld out of range", (long long)m, (long long)n);
    QERR_CHECK(o->steps >= 0 && o->steps <= 100000000, QERR_E_RANGE, "cqe: steps=%lld",
               (long long)o->steps);
    QERR_TRY(qerr__cqe_check_mask(o->mask, o->width, o->block, m, n));
    st->m = m;
    st->n = n;
    st->r = m < n ? m : n;
    st->o = *o;
    st->H = H;
    st->fq = (qerr_fq_spec){.bits = o->bits, .mode = QERR_FQ_ASYM0, .clip = QERR_FQ_CLIP_SCALE,
                            .group = o->group, .shared = false};
    QERR_TRY(qerr__fq_check(&st->fq, n));
    st->nclip = qerr__fq_clip_pairs(&st->fq, m, n);
    st->ng = st->nclip / m;
    const int64_t r = st->r;
    if (o->mask == QERR_CQE_MASK_NONE) st->nd = 0;
    else if (o->mask == QERR_CQE_MASK_DIAG && o->lsi_vector) st->nd = r;
    else st->nd = r * r;
    const int64_t np = 2 * st->nclip + st->nd;
    int rc = QERR_E_NOMEM;
    st->w0 = qerr__malloc2((size_t)(m * n), sizeof(double));
    st->theta = qerr__calloc((size_t)np, sizeof(double));
    st->grad = qerr__calloc((size_t)np, sizeof(double));
    st->best = qerr__calloc((size_t)np, sizeof(double));
    st->wd = qerr__malloc2((size_t)(m * n), sizeof(double));
    st->q = qerr__malloc2((size_t)(m * n), sizeof(double));
    st->eh = qerr__malloc2((size_t)(m * n), sizeof(double));
    st->gw = qerr__malloc2((size_t)(m * n), sizeof(double));
    if (!st->w0 || !st->theta || !st->grad || !st->best || !st->wd || !st->q || !st->eh ||
        !st->gw)
        goto nomem;
    for (int64_t k = 0; k < m * n; k++) st->w0[k] = (double)W[k];
    for (int64_t k = 0; k < 2 * st->nclip; k++) st->theta[k] = o->clip_init;
    if (st->nd) {
        st->mr = qerr__malloc2((size_t)(m * r), sizeof(double));
        st->rr = qerr__malloc2((size_t)(r * r), sizeof(double));
        if (!st->mr || !st->rr) goto nomem;
        if (st->nd == r * r) {
            st->mask = qerr__malloc2((size_t)(r * r), 1);
            if (!st->mask) goto nomem;
            for (int64_t a = 0; a < r; a++)
                for (int64_t b = 0; b < r; b++) st->mask[a * r + b] = in_mask(o, a, b);
        }
        if ((rc = take_svd(st)) != QERR_OK) goto fail;
    }
    if ((rc = qerr__adamw_init(&st->opt, np)) != QERR_OK) goto fail;
    /* tr(W H W^T) with the same kernel as the loss */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)n, 1.0, st->w0,
                (int)n, H, (int)n, 0.0, st->eh, (int)n);
    st->ref = cblas_ddot((int)(m * n), st->w0, 1, st->eh, 1);
    if (!(st->ref > 0)) st->ref = 1.0; /* W = 0 or H = 0: absolute objective */
    st->loss = st->best_loss = st->start_loss = NAN;
    return QERR_OK;
nomem:
    rc = qerr__fail(QERR_E_NOMEM, "cqe: out of memory for a %lldx%lld layer", (long long)m,
                    (long long)n);
fail:
    qerr__cqe_layer_free(st);
    return rc;
}

int qerr__cqe_layer_forward(qerr_cqe_layer *st, double *loss) {
    const int64_t m = st->m, n = st->n, r = st->r;
    memcpy(st->wd, st->w0, (size_t)(m * n) * sizeof(double));
    if (st->nd) {
        const double *d = qerr__cqe_d(st);
        if (st->nd == r) { /* LSI: U diag(iota) */
            for (int64_t i = 0; i < m; i++)
                for (int64_t k = 0; k < r; k++) st->mr[i * r + k] = st->u[i * r + k] * d[k];
        } else {
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)r, (int)r, 1.0,
                        st->u, (int)r, d, (int)r, 0.0, st->mr, (int)r);
        }
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)r, 1.0,
                    st->mr, (int)r, st->vt, (int)n, 1.0, st->wd, (int)n);
    }
    qerr__fq_fwd_d(&st->fq, m, n, qerr__cqe_clip(st), st->wd, st->q);
    /* E = Q - W into gw (scratch), EH into eh, L = <E, EH> / ref */
    for (int64_t k = 0; k < m * n; k++) st->gw[k] = st->q[k] - st->w0[k];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)n, 1.0, st->gw,
                (int)n, st->H, (int)n, 0.0, st->eh, (int)n);
    st->loss = cblas_ddot((int)(m * n), st->gw, 1, st->eh, 1) / st->ref;
    QERR_CHECK(isfinite(st->loss), QERR_E_NONFINITE, "cqe: the layer objective is not finite");
    if (loss) *loss = st->loss;
    return QERR_OK;
}

int qerr__cqe_layer_backward(qerr_cqe_layer *st) {
    const int64_t m = st->m, n = st->n, r = st->r;
    const int64_t np = 2 * st->nclip + st->nd;
    memset(st->grad, 0, (size_t)np * sizeof(double));
    /* dL/dQ = 2 E H / ref (H symmetric), reusing eh */
    const double c = 2.0 / st->ref;
    for (int64_t k = 0; k < m * n; k++) st->eh[k] *= c;
    QERR_TRY(qerr__fq_bwd_d(&st->fq, m, n, qerr__cqe_clip(st), st->wd, st->eh, st->gw,
                            st->o.lwc ? st->grad : NULL));
    if (!st->nd) return QERR_OK;
    /* G V (m x r), then U^T G V restricted to the mask */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)r, (int)n, 1.0, st->gw,
                (int)n, st->vt, (int)n, 0.0, st->mr, (int)r);
    double *gd = st->grad + 2 * st->nclip;
    if (st->nd == r) { /* LSI: diag(U^T G V) as column dots */
        for (int64_t k = 0; k < r; k++) {
            double acc = 0;
            for (int64_t i = 0; i < m; i++) acc += st->u[i * r + k] * st->mr[i * r + k];
            gd[k] = acc;
        }
        return QERR_OK;
    }
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)r, (int)r, (int)m, 1.0, st->u,
                (int)r, st->mr, (int)r, 0.0, st->rr, (int)r);
    for (int64_t k = 0; k < r * r; k++) gd[k] = st->mask[k] ? st->rr[k] : 0.0;
    return QERR_OK;
}

int qerr__cqe_layer_step(qerr_cqe_layer *st, double *loss) {
    double l;
    QERR_TRY(qerr__cqe_layer_forward(st, &l));
    if (st->steps_done == 0) st->start_loss = l;
    if (!(l >= st->best_loss)) { /* also the first step (best is NaN) */
        st->best_loss = l;
        memcpy(st->best, st->theta, (size_t)(2 * st->nclip + st->nd) * sizeof(double));
    }
    QERR_TRY(qerr__cqe_layer_backward(st));
    qerr__adamw_next(&st->opt);
    if (st->o.lwc)
        qerr__adamw_update(&st->opt, 0, 2 * st->nclip, st->theta, st->grad, st->o.lr_clip, 0.0);
    if (st->nd)
        qerr__adamw_update(&st->opt, 2 * st->nclip, st->nd, qerr__cqe_d(st),
                           st->grad + 2 * st->nclip, st->o.lr_d, 0.0);
    st->steps_done++;
    if (loss) *loss = l;
    return QERR_OK;
}

int qerr__cqe_layer_train(qerr_cqe_layer *st, const qerr_ctx *ctx, const char *stage) {
    for (int64_t t = 0; t < st->o.steps; t++) {
        QERR_TRY(qerr__cqe_layer_step(st, NULL));
        if (ctx && (t % 16 == 15 || t + 1 == st->o.steps))
            QERR_TRY(qerr__progress(ctx, stage, (double)(t + 1) / (double)st->o.steps));
    }
    double l;
    QERR_TRY(qerr__cqe_layer_forward(st, &l)); /* the point after the last update */
    if (st->steps_done == 0) st->start_loss = l;
    if (!(l >= st->best_loss)) st->best_loss = l;
    else if (st->o.keep_best) {
        memcpy(st->theta, st->best, (size_t)(2 * st->nclip + st->nd) * sizeof(double));
        QERR_TRY(qerr__cqe_layer_forward(st, &l));
    }
    return QERR_OK;
}

int qerr__cqe_layer_encode(qerr_cqe_layer *st, qerr_result **out) {
    const int64_t m = st->m, n = st->n;
    const int64_t g = st->fq.group > 0 && st->fq.group < n ? st->fq.group : n;
    /* W(D) at the current theta */
    QERR_TRY(qerr__cqe_layer_forward(st, NULL));
    qerr_result *r;
    QERR_TRY(qerr__cqe_encode(st->wd, m, n, st->o.bits, g, qerr__cqe_clip(st), &r));
    qerr__result_set_diag(r, "iterations", (double)st->steps_done);
    qerr__result_set_diag(r, "train_start", st->start_loss);
    qerr__result_set_diag(r, "train_final", st->loss);
    *out = r;
    return QERR_OK;
}

int qerr__cqe_encode(const double *wd, int64_t m, int64_t n, int bits, int64_t g,
                     const double *clip, qerr_result **out) {
    g = g > 0 && g < n ? g : n;
    const int64_t ng = (n + g - 1) / g;
    qerr_result *r;
    QERR_TRY(qerr__result_alloc(&r, m, n, bits, g));
    const double maxq = (double)((1 << bits) - 1);
    for (int64_t i = 0; i < m; i++)
        for (int64_t k = 0; k < r->groups; k++) {
            int64_t c0 = k * g, c1 = c0 + g < n ? c0 + g : n;
            const double *x = wd + i * n;
            double mx = x[c0], mn = x[c0];
            for (int64_t j = c0 + 1; j < c1; j++) {
                if (x[j] > mx) mx = x[j];
                if (x[j] < mn) mn = x[j];
            }
            /* the ASYM0 convention of the fake quantizer, exactly */
            double hi = mx > 0 ? mx : 0, lo = mn < 0 ? mn : 0;
            hi *= qerr__sigmoid(clip[2 * (i * ng + k)]);
            lo *= qerr__sigmoid(clip[2 * (i * ng + k) + 1]);
            if (hi == 0 && lo == 0) {
                hi = 1;
                lo = -1;
            }
            double s = (hi - lo) / maxq;
            s = s < 1e-5 ? 1e-5 : (s > 1e4 ? 1e4 : s);
            double z = nearbyint(-lo / s);
            z = z < 0 ? 0 : (z > maxq ? maxq : z); /* a no-op: 0 is in the range */
            r->scales[i * r->groups + k] = (float)s;
            r->zeros[i * r->groups + k] = (int32_t)z;
            for (int64_t j = c0; j < c1; j++) {
                double c = nearbyint(x[j] / s) + z;
                r->codes[i * n + j] = (uint8_t)(c < 0 ? 0 : (c > maxq ? maxq : c));
            }
        }
    *out = r;
    return QERR_OK;
}

int qerr__cqe_run(const qerr_method_call *call, const qerr_cqe_opts *o, const char *stage,
                  qerr_result **out) {
    QERR_CHECK(call->H && call->nsamples > 0, QERR_E_INVALID_ARG,
               "%s: needs calibration data (the calibration set is empty)", stage);
    qerr_cqe_layer st;
    QERR_TRY(qerr__cqe_layer_init(&st, call->W, call->rows, call->cols, call->H, o));
    int rc = qerr__cqe_layer_train(&st, call->ctx, stage);
    qerr_result *r = NULL;
    if (rc == QERR_OK) rc = qerr__cqe_layer_encode(&st, &r);
    if (rc == QERR_OK) qerr__result_set_diag(r, "train_best", st.best_loss);
    qerr__cqe_layer_free(&st);
    if (rc != QERR_OK) return rc;
    *out = r;
    return QERR_OK;
}

int qerr__cqe_refuse_block_scope(const qerr_plan *p) {
    if (qerr__plan_choice(p, "scope") == 1)
        return qerr__fail(QERR_E_UNSUPPORTED,
                          "%s scope=block trains whole decoder blocks: use qerr_model_quantize, "
                          "not qerr_quantize on one weight", qerr_plan_method(p));
    /* block-only requests the layer path cannot honour: refuse rather than
     * quietly return a weight-only, plain-loss result */
    const char *what = qerr__plan_int(p, "a_bits") != 16        ? "a_bits"
                       : qerr__plan_choice(p, "refine") != 0    ? "refine"
                       : qerr__plan_int(p, "cross_layer") == 1 ? "cross_layer"
                       : qerr__plan_int(p, "aug_loss") == 1    ? "aug_loss"
                                                               : NULL;
    if (!what) return QERR_OK;
    return qerr__fail(QERR_E_UNSUPPORTED, "%s: %s needs scope=block (whole decoder blocks)",
                      qerr_plan_method(p), what);
}
