/* FlatQuant (algorithms.md §6) on one decoder block: learnable Kronecker
 * transforms P = P1 (x) P2 with Cayley/SVD factors and channel scales at the
 * four linear-input spaces, LWC on every weight and LAC on every activation
 * quantizer, trained with AdamW + cosine on the block MSE against the float
 * block on float inputs; then folded in float64. Simplification (said in
 * docs/flatquant.md): the o_proj input gets one plain Kronecker transform over
 * heads*head_dim instead of FlatQuant's P_h (x) P_v split, and there is no
 * K/V-cache quantizer. */
#include "flatquant.h"

#include "../method.h" /* qerr__now */

#include <stdlib.h>
#include <string.h>

static const int SITE_OF_T[QERR_FQB_T] = {QERR_SITE_ATTN_IN, QERR_SITE_O_IN, QERR_SITE_MLP_IN,
                                          QERR_SITE_DOWN_IN};

static int t_of_site(int s) {
    for (int t = 0; t < QERR_FQB_T; t++)
        if (SITE_OF_T[t] == s) return t;
    return -1;
}

static int t_of_lin(int l) {
    switch (l) {
    case QERR_LIN_Q: case QERR_LIN_K: case QERR_LIN_V: return 0;
    case QERR_LIN_O: return 1;
    case QERR_LIN_GATE: case QERR_LIN_UP: return 2;
    default: return 3;
    }
}

void qerr__flatquant_opts_default(qerr_flatquant_opts *o) {
    memset(o, 0, sizeof *o);
    o->w_bits = 4;
    o->a_bits = 16;
    o->kv_bits = 16;
    o->w_group = -1;
    o->lwc = o->lac = o->diag = true;
    o->diag_alpha = 0.3;
    o->epochs = 15;
    o->batch = 4;
    o->lr = 5e-3;
    o->clip_lr = 5e-2;
    o->weight_decay = 0.01;
    o->loss_norm = true;
}

int qerr__flatquant_opts_check(const qerr_flatquant_opts *o) {
    QERR_CHECK(o, QERR_E_INVALID_ARG, "flatquant: NULL options");
    QERR_CHECK(o->w_bits >= 2 && o->w_bits <= 8, QERR_E_RANGE,
               "flatquant: w_bits=%d is outside [2, 8]", o->w_bits);
    QERR_CHECK((o->a_bits >= 2 && o->a_bits <= 8) || o->a_bits == 16, QERR_E_RANGE,
               "flatquant: a_bits=%d must be in [2, 8] or 16 (no activation quantization)",
               o->a_bits);
    QERR_CHECK((o->kv_bits >= 2 && o->kv_bits <= 8) || o->kv_bits == 16, QERR_E_RANGE,
               "flatquant: kv_bits=%d must be in [2, 8] or 16 (no K/V quantization)", o->kv_bits);
    QERR_CHECK(o->epochs >= 0 && o->epochs <= 100000, QERR_E_RANGE, "flatquant: epochs=%d",
               o->epochs);
    QERR_CHECK(o->batch >= 1, QERR_E_RANGE, "flatquant: batch=%lld", (long long)o->batch);
    QERR_CHECK(o->lr >= 0 && o->clip_lr >= 0 && o->weight_decay >= 0 && o->diag_alpha >= 0 &&
                   o->diag_alpha <= 1,
               QERR_E_RANGE, "flatquant: lr %g, clip_lr %g, weight_decay %g, diag_alpha %g", o->lr,
               o->clip_lr, o->weight_decay, o->diag_alpha);
    return QERR_OK;
}

/* ---- training state ------------------------------------------------------- */
#define FQB_MAX_ALLOC 160
typedef struct fqb {
    const qerr_block_config *cfg;
    qerr_flatquant_block *b;
    qerr_fq_spec wspec, aspec, kvspec;
    bool act_q, kv_q;
    /* float copies of the current transforms */
    float *p1[QERR_FQB_T], *p2[QERR_FQB_T], *p1it[QERR_FQB_T], *p2it[QERR_FQB_T];
    float *c[QERR_FQB_T], *cinv[QERR_FQB_T];
    /* gradients w.r.t. the effective matrices, then the raw parameters */
    double *gp1[QERR_FQB_T], *gp2[QERR_FQB_T], *gp1it[QERR_FQB_T], *gp2it[QERR_FQB_T];
    double *gc[QERR_FQB_T], *gcinv[QERR_FQB_T];
    double *gu1[QERR_FQB_T], *gv1[QERR_FQB_T], *gs1[QERR_FQB_T];
    double *gu2[QERR_FQB_T], *gv2[QERR_FQB_T], *gs2[QERR_FQB_T];
    double *gwclip[QERR_LIN_COUNT], gaclip[QERR_FQB_T][2], gkvclip[2][2];
    float *t0, *t1, *w0, *w1; /* scratch: activations and weights */
    void *allocs[FQB_MAX_ALLOC];
    int nallocs;
} fqb;

static void *fqb_alloc(fqb *s, int64_t count, size_t size) {
    if (s->nallocs >= FQB_MAX_ALLOC || count < 0) return NULL;
    void *p = qerr__calloc((size_t)(count ? count : 1), size);
    if (p) s->allocs[s->nallocs++] = p;
    return p;
}

static void fqb_free(fqb *s) {
    for (int i = 0; i < s->nallocs; i++) free(s->allocs[i]);
    s->nallocs = 0;
}

/* The quantizers of a FlatQuant block: weights symmetric per channel with
 * LWC; activations per-token symmetric with LAC; K and V (kv_bits < 16)
 * asymmetric per (token, head) with LAC, as FlatQuant's KV cache. */
static void fqb_specs(fqb *s, const qerr_flatquant_opts *o, int64_t head_dim) {
    s->wspec = (qerr_fq_spec){o->w_bits, QERR_FQ_SYM,
                              o->lwc ? QERR_FQ_CLIP_CLAMP : QERR_FQ_CLIP_NONE, o->w_group, false};
    s->act_q = o->a_bits < 16;
    s->aspec = (qerr_fq_spec){s->act_q ? o->a_bits : 8, QERR_FQ_SYM,
                              o->lac ? QERR_FQ_CLIP_SCALE : QERR_FQ_CLIP_NONE, -1, true};
    s->kv_q = o->kv_bits < 16;
    s->kvspec = (qerr_fq_spec){s->kv_q ? o->kv_bits : 8, QERR_FQ_ASYM0,
                               o->lac ? QERR_FQ_CLIP_SCALE : QERR_FQ_CLIP_NONE, head_dim, true};
}

/* Float copies of P, P^-T, c, 1/c from the double parameters. */
static int fqb_refresh(fqb *s) {
    qerr_flatquant_block *b = s->b;
    for (int t = 0; t < QERR_FQB_T; t++) {
        QERR_TRY(qerr__svd_factor_update(&b->f1[t]));
        QERR_TRY(qerr__svd_factor_update(&b->f2[t]));
        for (int64_t i = 0; i < b->n1[t] * b->n1[t]; i++) {
            s->p1[t][i] = (float)b->f1[t].p[i];
            s->p1it[t][i] = (float)b->f1[t].pinvt[i];
        }
        for (int64_t i = 0; i < b->n2[t] * b->n2[t]; i++) {
            s->p2[t][i] = (float)b->f2[t].p[i];
            s->p2it[t][i] = (float)b->f2[t].pinvt[i];
        }
        if (!b->c[t]) continue;
        for (int64_t j = 0; j < b->n1[t] * b->n2[t]; j++) {
            QERR_CHECK(isfinite(b->c[t][j]) && b->c[t][j] != 0, QERR_E_NUMERIC,
                       "flatquant: channel scale %lld of transform %d is %g", (long long)j, t,
                       b->c[t][j]);
            s->c[t][j] = (float)b->c[t][j];
            s->cinv[t][j] = (float)(1.0 / b->c[t][j]);
        }
    }
    return QERR_OK;
}

/* ---- hooks ---------------------------------------------------------------- */
static int fqb_act_fwd(void *u, int site, int64_t rows, int64_t cols, const float *x, float *y) {
    fqb *s = u;
    int t = t_of_site(site);
    const qerr_flatquant_block *b = s->b;
    if (t < 0) { /* K or V cache quantizer */
        qerr__fq_fwd_f(&s->kvspec, rows, cols, b->kvclip[site == QERR_SITE_V], x, y);
        return QERR_OK;
    }
    if (!s->act_q) return qerr__kron_fwd_f(rows, b->n1[t], b->n2[t], s->p1[t], s->p2[t], s->c[t], x, y);
    QERR_TRY(qerr__kron_fwd_f(rows, b->n1[t], b->n2[t], s->p1[t], s->p2[t], s->c[t], x, s->t0));
    qerr__fq_fwd_f(&s->aspec, rows, cols, b->aclip[t], s->t0, y);
    return QERR_OK;
}

static int fqb_act_bwd(void *u, int site, int64_t rows, int64_t cols, const float *x,
                       const float *gy, float *gx) {
    fqb *s = u;
    int t = t_of_site(site);
    const qerr_flatquant_block *b = s->b;
    if (t < 0) {
        int v = site == QERR_SITE_V;
        return qerr__fq_bwd_f(&s->kvspec, rows, cols, b->kvclip[v], x, gy, gx, s->gkvclip[v]);
    }
    const float *g = gy;
    if (s->act_q) {
        QERR_TRY(qerr__kron_fwd_f(rows, b->n1[t], b->n2[t], s->p1[t], s->p2[t], s->c[t], x, s->t0));
        QERR_TRY(qerr__fq_bwd_f(&s->aspec, rows, cols, b->aclip[t], s->t0, gy, s->t1,
                                s->gaclip[t]));
        g = s->t1;
    }
    return qerr__kron_bwd_f(rows, b->n1[t], b->n2[t], s->p1[t], s->p2[t], s->c[t], x, g, gx,
                            s->gp1[t], s->gp2[t], s->gc[t]);
}

static int fqb_w_fwd(void *u, int lin, int64_t o, int64_t i, const float *w, float *weff) {
    fqb *s = u;
    int t = t_of_lin(lin);
    const qerr_flatquant_block *b = s->b;
    QERR_TRY(qerr__kron_fwd_f(o, b->n1[t], b->n2[t], s->p1it[t], s->p2it[t], s->cinv[t], w, s->w0));
    qerr__fq_fwd_f(&s->wspec, o, i, b->wclip[lin], s->w0, weff);
    return QERR_OK;
}

static int fqb_w_bwd(void *u, int lin, int64_t o, int64_t i, const float *w, const float *gweff) {
    fqb *s = u;
    int t = t_of_lin(lin);
    const qerr_flatquant_block *b = s->b;
    QERR_TRY(qerr__kron_fwd_f(o, b->n1[t], b->n2[t], s->p1it[t], s->p2it[t], s->cinv[t], w, s->w0));
    QERR_TRY(qerr__fq_bwd_f(&s->wspec, o, i, b->wclip[lin], s->w0, gweff, s->w1, s->gwclip[lin]));
    return qerr__kron_bwd_f(o, b->n1[t], b->n2[t], s->p1it[t], s->p2it[t], s->cinv[t], w, s->w1,
                            NULL, s->gp1it[t], s->gp2it[t], s->gcinv[t]);
}

/* ---- setup ---------------------------------------------------------------- */
void qerr__flatquant_block_free(qerr_flatquant_block *b) {
    if (!b) return;
    for (int t = 0; t < QERR_FQB_T; t++) {
        qerr__svd_factor_free(&b->f1[t]);
        qerr__svd_factor_free(&b->f2[t]);
        free(b->c[t]);
    }
    for (int l = 0; l < QERR_LIN_COUNT; l++) free(b->wclip[l]);
    free(b->epoch_mse);
    free(b);
}

static int block_alloc(const qerr_block_config *cfg, const qerr_flatquant_opts *o,
                       const qerr_fq_spec *wspec, qerr_flatquant_block **out) {
    qerr_flatquant_block *b = qerr__calloc(1, sizeof *b);
    QERR_CHECK(b, QERR_E_NOMEM, "flatquant: out of memory");
    b->cfg = *cfg;
    b->opts = *o;
    int rc = QERR_OK;
    for (int t = 0; t < QERR_FQB_T && rc == QERR_OK; t++) {
        int64_t n = qerr__block_site_cols(cfg, SITE_OF_T[t]);
        qerr__decompose_dim(n, &b->n1[t], &b->n2[t]);
        rc = qerr__svd_factor_init(&b->f1[t], b->n1[t]);
        if (rc == QERR_OK) rc = qerr__svd_factor_init(&b->f2[t], b->n2[t]);
        if (rc == QERR_OK && o->diag && t != 1) {
            b->c[t] = qerr__calloc((size_t)n, sizeof(double));
            if (!b->c[t]) rc = qerr__fail(QERR_E_NOMEM, "flatquant: out of memory");
        }
    }
    for (int l = 0; l < QERR_LIN_COUNT && rc == QERR_OK; l++) {
        int64_t rows, cols;
        qerr__block_linear_shape(cfg, l, &rows, &cols);
        int64_t pairs = qerr__fq_clip_pairs(wspec, rows, cols);
        b->wclip[l] = qerr__calloc((size_t)(2 * (pairs ? pairs : 1)), sizeof(double));
        if (!b->wclip[l]) rc = qerr__fail(QERR_E_NOMEM, "flatquant: out of memory");
    }
    b->epoch_mse = qerr__calloc((size_t)(o->epochs ? o->epochs : 1), sizeof(double));
    if (rc == QERR_OK && !b->epoch_mse) rc = qerr__fail(QERR_E_NOMEM, "flatquant: out of memory");
    if (rc != QERR_OK) {
        qerr__flatquant_block_free(b);
        return rc;
    }
    *out = b;
    return QERR_OK;
}

static int fqb_setup(fqb *s, const qerr_block_config *cfg, qerr_flatquant_block *b,
                     int64_t rows) {
    s->cfg = cfg;
    s->b = b;
    int64_t maxc = 0, maxw = 0;
    for (int t = 0; t < QERR_FQB_T; t++) {
        int64_t n = b->n1[t] * b->n2[t];
        maxc = n > maxc ? n : maxc;
        int64_t nn1 = b->n1[t] * b->n1[t], nn2 = b->n2[t] * b->n2[t];
        s->p1[t] = fqb_alloc(s, nn1, sizeof(float));
        s->p1it[t] = fqb_alloc(s, nn1, sizeof(float));
        s->p2[t] = fqb_alloc(s, nn2, sizeof(float));
        s->p2it[t] = fqb_alloc(s, nn2, sizeof(float));
        s->gp1[t] = fqb_alloc(s, nn1, sizeof(double));
        s->gp1it[t] = fqb_alloc(s, nn1, sizeof(double));
        s->gu1[t] = fqb_alloc(s, nn1, sizeof(double));
        s->gv1[t] = fqb_alloc(s, nn1, sizeof(double));
        s->gs1[t] = fqb_alloc(s, b->n1[t], sizeof(double));
        s->gp2[t] = fqb_alloc(s, nn2, sizeof(double));
        s->gp2it[t] = fqb_alloc(s, nn2, sizeof(double));
        s->gu2[t] = fqb_alloc(s, nn2, sizeof(double));
        s->gv2[t] = fqb_alloc(s, nn2, sizeof(double));
        s->gs2[t] = fqb_alloc(s, b->n2[t], sizeof(double));
        if (!s->p1[t] || !s->p1it[t] || !s->p2[t] || !s->p2it[t] || !s->gp1[t] || !s->gp1it[t] ||
            !s->gu1[t] || !s->gv1[t] || !s->gs1[t] || !s->gp2[t] || !s->gp2it[t] || !s->gu2[t] ||
            !s->gv2[t] || !s->gs2[t])
            return qerr__fail(QERR_E_NOMEM, "flatquant: out of memory for transform state");
        if (b->c[t]) {
            s->c[t] = fqb_alloc(s, n, sizeof(float));
            s->cinv[t] = fqb_alloc(s, n, sizeof(float));
            s->gc[t] = fqb_alloc(s, n, sizeof(double));
            s->gcinv[t] = fqb_alloc(s, n, sizeof(double));
            if (!s->c[t] || !s->cinv[t] || !s->gc[t] || !s->gcinv[t])
                return qerr__fail(QERR_E_NOMEM, "flatquant: out of memory for scales");
        }
    }
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        int64_t o, i;
        qerr__block_linear_shape(cfg, l, &o, &i);
        maxw = o * i > maxw ? o * i : maxw;
        int64_t pairs = qerr__fq_clip_pairs(&s->wspec, o, i);
        s->gwclip[l] = fqb_alloc(s, 2 * (pairs ? pairs : 1), sizeof(double));
        if (!s->gwclip[l]) return qerr__fail(QERR_E_NOMEM, "flatquant: out of memory");
    }
    s->t0 = fqb_alloc(s, rows * maxc, sizeof(float));
    s->t1 = fqb_alloc(s, rows * maxc, sizeof(float));
    s->w0 = fqb_alloc(s, maxw, sizeof(float));
    s->w1 = fqb_alloc(s, maxw, sizeof(float));
    QERR_CHECK(s->t0 && s->t1 && s->w0 && s->w1, QERR_E_NOMEM,
               "flatquant: out of memory for scratch (%lld rows)", (long long)rows);
    return QERR_OK;
}

static void fqb_zero_grads(fqb *s) {
    const qerr_flatquant_block *b = s->b;
    for (int t = 0; t < QERR_FQB_T; t++) {
        size_t nn1 = (size_t)(b->n1[t] * b->n1[t]), nn2 = (size_t)(b->n2[t] * b->n2[t]);
        memset(s->gp1[t], 0, nn1 * sizeof(double));
        memset(s->gp1it[t], 0, nn1 * sizeof(double));
        memset(s->gu1[t], 0, nn1 * sizeof(double));
        memset(s->gv1[t], 0, nn1 * sizeof(double));
        memset(s->gs1[t], 0, (size_t)b->n1[t] * sizeof(double));
        memset(s->gp2[t], 0, nn2 * sizeof(double));
        memset(s->gp2it[t], 0, nn2 * sizeof(double));
        memset(s->gu2[t], 0, nn2 * sizeof(double));
        memset(s->gv2[t], 0, nn2 * sizeof(double));
        memset(s->gs2[t], 0, (size_t)b->n2[t] * sizeof(double));
        if (b->c[t]) {
            memset(s->gc[t], 0, (size_t)(b->n1[t] * b->n2[t]) * sizeof(double));
            memset(s->gcinv[t], 0, (size_t)(b->n1[t] * b->n2[t]) * sizeof(double));
        }
        s->gaclip[t][0] = s->gaclip[t][1] = 0;
    }
    memset(s->gkvclip, 0, sizeof s->gkvclip);
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        int64_t o, i;
        qerr__block_linear_shape(s->cfg, l, &o, &i);
        int64_t pairs = qerr__fq_clip_pairs(&s->wspec, o, i);
        memset(s->gwclip[l], 0, (size_t)(2 * (pairs ? pairs : 1)) * sizeof(double));
    }
}

/* Chain the matrix gradients to the raw parameters. */
static int fqb_chain(fqb *s) {
    const qerr_flatquant_block *b = s->b;
    for (int t = 0; t < QERR_FQB_T; t++) {
        QERR_TRY(qerr__svd_factor_backward(&b->f1[t], s->gp1[t], s->gp1it[t], s->gu1[t],
                                           s->gv1[t], s->gs1[t]));
        QERR_TRY(qerr__svd_factor_backward(&b->f2[t], s->gp2[t], s->gp2it[t], s->gu2[t],
                                           s->gv2[t], s->gs2[t]));
        if (b->c[t])
            for (int64_t j = 0; j < b->n1[t] * b->n2[t]; j++)
                s->gc[t][j] -= s->gcinv[t][j] / (b->c[t][j] * b->c[t][j]);
    }
    return QERR_OK;
}

/* One AdamW step over every parameter group; returns the parameter count
 * when `apply` is false (to size the optimiser). */
static int64_t fqb_adam(fqb *s, qerr_adamw *opt, bool apply, double lr, double clr, double wd) {
    qerr_flatquant_block *b = s->b;
    const qerr_flatquant_opts *o = &b->opts;
    int64_t off = 0;
#define GROUP(param, grad, count, rate)                                                    \
    do {                                                                                   \
        if (apply) qerr__adamw_update(opt, off, (count), (param), (grad), (rate), wd);     \
        off += (count);                                                                    \
    } while (0)
    for (int t = 0; t < QERR_FQB_T; t++) {
        int64_t n1 = b->n1[t], n2 = b->n2[t];
        GROUP(b->f1[t].raw_u, s->gu1[t], n1 * n1, lr);
        GROUP(b->f1[t].raw_v, s->gv1[t], n1 * n1, lr);
        GROUP(b->f1[t].sigma, s->gs1[t], n1, lr);
        GROUP(b->f2[t].raw_u, s->gu2[t], n2 * n2, lr);
        GROUP(b->f2[t].raw_v, s->gv2[t], n2 * n2, lr);
        GROUP(b->f2[t].sigma, s->gs2[t], n2, lr);
        if (b->c[t]) GROUP(b->c[t], s->gc[t], n1 * n2, lr);
        if (o->lac && s->act_q) GROUP(b->aclip[t], s->gaclip[t], 2, clr);
    }
    if (o->lac && s->kv_q) {
        GROUP(b->kvclip[0], s->gkvclip[0], 2, clr);
        GROUP(b->kvclip[1], s->gkvclip[1], 2, clr);
    }
    if (o->lwc)
        for (int l = 0; l < QERR_LIN_COUNT; l++) {
            int64_t rows, cols;
            qerr__block_linear_shape(s->cfg, l, &rows, &cols);
            GROUP(b->wclip[l], s->gwclip[l], 2 * qerr__fq_clip_pairs(&s->wspec, rows, cols), clr);
        }
#undef GROUP
    return off;
}

/* Mean squared difference between the hooked block and the targets over the
 * whole calibration set. */
static int fqb_eval(fqb *s, qerr_block_cache_f *cache, const qerr_block_weights_f *w,
                    const qerr_block_hooks_f *hk, const float *x, const float *target,
                    int64_t nbatch, float *y, double *mse) {
    const int64_t n = cache->rows * s->cfg->hidden;
    double acc = 0;
    for (int64_t k = 0; k < nbatch; k++) {
        QERR_TRY(qerr__block_forward_f(cache, w, hk, x + k * n, y));
        for (int64_t i = 0; i < n; i++) {
            double d = (double)y[i] - (double)target[k * n + i];
            acc += d * d;
        }
    }
    *mse = acc / (double)(nbatch * n);
    return QERR_OK;
}

/* SmoothQuant-style scale init (FlatQuant "sq_style"):
 * c_j = max_i |W_ij|^(1-alpha) / max_tokens |X_j|^alpha over the consumers. */
static void init_scales(qerr_flatquant_block *b, const qerr_block_weights_f *w,
                        double *const amax[QERR_FQB_T]) {
    const double alpha = b->opts.diag_alpha;
    for (int t = 0; t < QERR_FQB_T; t++) {
        if (!b->c[t]) continue;
        int64_t n = b->n1[t] * b->n2[t];
        for (int64_t j = 0; j < n; j++) {
            double wm = 0;
            for (int l = 0; l < QERR_LIN_COUNT; l++) {
                if (t_of_lin(l) != t) continue;
                int64_t o, i;
                qerr__block_linear_shape(&b->cfg, l, &o, &i);
                for (int64_t r = 0; r < o; r++) wm = fmax(wm, fabs((double)w->w[l][r * i + j]));
            }
            double cj = pow(fmax(wm, 1e-5), 1 - alpha) / pow(fmax(amax[t][j], 1e-5), alpha);
            b->c[t][j] = fmin(fmax(cj, 1e-5), 1e5);
        }
    }
}

static void set_clips(qerr_flatquant_block *b, const qerr_fq_spec *wspec, double value) {
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        int64_t o, i;
        qerr__block_linear_shape(&b->cfg, l, &o, &i);
        int64_t pairs = qerr__fq_clip_pairs(wspec, o, i);
        for (int64_t k = 0; k < 2 * pairs; k++) b->wclip[l][k] = value;
    }
    for (int t = 0; t < QERR_FQB_T; t++) b->aclip[t][0] = b->aclip[t][1] = value;
    for (int v = 0; v < 2; v++) b->kvclip[v][0] = b->kvclip[v][1] = value;
}

/* ---- training ------------------------------------------------------------- */
typedef struct {
    fqb s;
    qerr_block_cache_f *cache;
    qerr_adamw opt;
    float *target, *xb, *tb, *y, *gy;
    int64_t *order;
    double *amax[QERR_FQB_T];
} train_ws;

static void ws_free(train_ws *ws) {
    fqb_free(&ws->s);
    qerr__block_cache_free_f(ws->cache);
    qerr__adamw_free(&ws->opt);
    free(ws->target); free(ws->xb); free(ws->tb); free(ws->y); free(ws->gy); free(ws->order);
    for (int t = 0; t < QERR_FQB_T; t++) free(ws->amax[t]);
}

static int train(const qerr_ctx *ctx, const qerr_block_config *cfg, const qerr_block_weights_f *w,
                 const float *x, int64_t nseq, int64_t seq, qerr_flatquant_block *b,
                 train_ws *ws) {
    const qerr_flatquant_opts *o = &b->opts;
    fqb *s = &ws->s;
    const int64_t bs = o->batch < nseq ? o->batch : nseq, nbatch = nseq / bs;
    const int64_t rows = bs * seq, n = rows * cfg->hidden;
    QERR_TRY(fqb_setup(s, cfg, b, rows));
    QERR_TRY(qerr__block_cache_create_f(cfg, bs, seq, &ws->cache));
    ws->target = qerr__malloc2((size_t)(nbatch * n), sizeof(float));
    ws->xb = qerr__malloc2((size_t)n, sizeof(float));
    ws->tb = qerr__malloc2((size_t)n, sizeof(float));
    ws->y = qerr__malloc2((size_t)n, sizeof(float));
    ws->gy = qerr__malloc2((size_t)n, sizeof(float));
    ws->order = qerr__malloc2((size_t)nseq, sizeof(int64_t));
    QERR_CHECK(ws->target && ws->xb && ws->tb && ws->y && ws->gy && ws->order, QERR_E_NOMEM,
               "flatquant: out of memory for %lld calibration rows", (long long)(nseq * seq));
    for (int t = 0; t < QERR_FQB_T; t++) {
        ws->amax[t] = qerr__calloc((size_t)(b->n1[t] * b->n2[t]), sizeof(double));
        QERR_CHECK(ws->amax[t], QERR_E_NOMEM, "flatquant: out of memory");
    }
    /* float targets and activation maxima (only whole batches are used) */
    for (int64_t k = 0; k < nbatch; k++) {
        QERR_TRY(qerr__block_forward_f(ws->cache, w, NULL, x + k * n, ws->target + k * n));
        for (int t = 0; t < QERR_FQB_T; t++) {
            int64_t cols = b->n1[t] * b->n2[t];
            const float *a = ws->cache->site_in[SITE_OF_T[t]];
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = 0; j < cols; j++)
                    ws->amax[t][j] = fmax(ws->amax[t][j], fabs((double)a[r * cols + j]));
        }
    }
    qerr_block_hooks_f hk = {s, 0, (1u << QERR_LIN_COUNT) - 1, fqb_act_fwd, fqb_act_bwd,
                             fqb_w_fwd, fqb_w_bwd};
    for (int t = 0; t < QERR_FQB_T; t++) hk.act_mask |= 1u << SITE_OF_T[t];
    if (s->kv_q) hk.act_mask |= (1u << QERR_SITE_K) | (1u << QERR_SITE_V);
    /* plain RTN reference: identity transforms, unit scales, clips open */
    for (int t = 0; t < QERR_FQB_T; t++)
        if (b->c[t])
            for (int64_t j = 0; j < b->n1[t] * b->n2[t]; j++) b->c[t][j] = 1.0;
    set_clips(b, &s->wspec, 40.0);
    QERR_TRY(fqb_refresh(s));
    QERR_TRY(fqb_eval(s, ws->cache, w, &hk, x, ws->target, nbatch, ws->y, &b->mse_rtn));
    /* FlatQuant init: random orthogonal factors, sq-style scales, clips 4.0 */
    qerr_rng rng;
    qerr__rng_seed(&rng, o->seed);
    for (int t = 0; t < QERR_FQB_T && !o->identity_init; t++) {
        qerr__svd_factor_randomize(&b->f1[t], &rng, 1.0 / sqrt((double)b->n1[t]));
        qerr__svd_factor_randomize(&b->f2[t], &rng, 1.0 / sqrt((double)b->n2[t]));
    }
    init_scales(b, w, ws->amax);
    set_clips(b, &s->wspec, 4.0);
    if (!o->lwc) set_clips(b, &s->wspec, 40.0); /* sigmoid(40) == 1: no clipping */
    if (!o->lac) {
        for (int t = 0; t < QERR_FQB_T; t++) b->aclip[t][0] = b->aclip[t][1] = 40.0;
        for (int v = 0; v < 2; v++) b->kvclip[v][0] = b->kvclip[v][1] = 40.0;
    }
    QERR_TRY(fqb_refresh(s));
    QERR_TRY(fqb_eval(s, ws->cache, w, &hk, x, ws->target, nbatch, ws->y, &b->mse_init));
    /* AdamW over every group, cosine over all steps down to lr * 1e-3 */
    QERR_TRY(qerr__adamw_init(&ws->opt, fqb_adam(s, NULL, false, 0, 0, 0)));
    const int64_t total = (int64_t)o->epochs * nbatch;
    int64_t step = 0;
    const int64_t nuse = nbatch * bs; /* whole batches only */
    for (int64_t i = 0; i < nuse; i++) ws->order[i] = i;
    for (int ep = 0; ep < o->epochs; ep++) {
        for (int64_t i = nuse - 1; i > 0; i--) { /* seeded shuffle of sequences */
            int64_t j = (int64_t)(qerr__rng_next(&rng) % (uint64_t)(i + 1));
            int64_t tmp = ws->order[i];
            ws->order[i] = ws->order[j];
            ws->order[j] = tmp;
        }
        double ep_loss = 0;
        for (int64_t k = 0; k < nbatch; k++, step++) {
            const int64_t per = seq * cfg->hidden;
            for (int64_t q = 0; q < bs; q++) {
                int64_t sidx = ws->order[k * bs + q];
                memcpy(ws->xb + q * per, x + sidx * per, sizeof(float) * (size_t)per);
                memcpy(ws->tb + q * per, ws->target + sidx * per, sizeof(float) * (size_t)per);
            }
            QERR_TRY(qerr__block_forward_f(ws->cache, w, &hk, ws->xb, ws->y));
            double mse = 0;
            for (int64_t i = 0; i < n; i++) {
                double d = (double)ws->y[i] - (double)ws->tb[i];
                mse += d * d;
            }
            mse /= (double)n;
            QERR_CHECK(isfinite(mse), QERR_E_NUMERIC, "flatquant: block loss is %g at step %lld",
                       mse, (long long)step);
            ep_loss += mse;
            double scale = 2.0 / (double)n / (o->loss_norm && mse > 0 ? mse : 1.0);
            for (int64_t i = 0; i < n; i++)
                ws->gy[i] = (float)(scale * ((double)ws->y[i] - (double)ws->tb[i]));
            fqb_zero_grads(s);
            QERR_TRY(qerr__block_backward_f(ws->cache, w, &hk, ws->xb, ws->gy, NULL, NULL));
            QERR_TRY(fqb_chain(s));
            qerr__adamw_next(&ws->opt);
            fqb_adam(s, &ws->opt, true, qerr__cosine_lr(o->lr, step, total, 1e-3),
                     qerr__cosine_lr(o->clip_lr, step, total, 1e-3), o->weight_decay);
            QERR_TRY(fqb_refresh(s));
            QERR_TRY(qerr__progress(ctx, "flatquant block", (double)(step + 1) / (double)total));
        }
        b->epoch_mse[ep] = ep_loss / (double)nbatch;
        b->epochs_done = ep + 1;
        qerr__log(ctx, QERR_LOG_INFO, "flatquant: epoch %d block mse %.6g", ep,
                  b->epoch_mse[ep]);
    }
    return fqb_eval(s, ws->cache, w, &hk, x, ws->target, nbatch, ws->y, &b->mse_final);
}

int qerr__flatquant_train_block(const qerr_ctx *ctx, const qerr_block_config *cfg,
                                const qerr_block_weights_f *w, const float *x, int64_t nseq,
                                int64_t seq, const qerr_flatquant_opts *o,
                                qerr_flatquant_block **out) {
    QERR_CHECK(out, QERR_E_INVALID_ARG, "flatquant: NULL output");
    *out = NULL;
    if (!ctx) ctx = qerr__default_ctx();
    QERR_TRY(qerr__block_config_check(cfg));
    QERR_TRY(qerr__flatquant_opts_check(o));
    QERR_CHECK(w && x, QERR_E_INVALID_ARG, "flatquant: NULL weights or inputs");
    QERR_CHECK(nseq >= 1 && seq >= 1, QERR_E_INVALID_ARG,
               "flatquant: no calibration data (%lld sequences of %lld tokens)", (long long)nseq,
               (long long)seq);
    QERR_CHECK(qerr__find_nonfinite_f32(x, nseq * seq * cfg->hidden) < 0, QERR_E_NONFINITE,
               "flatquant: calibration inputs hold NaN or Inf");
    for (int t = 0; t < QERR_FQB_T; t++) {
        int64_t n = qerr__block_site_cols(cfg, SITE_OF_T[t]), n1, n2;
        qerr__decompose_dim(n, &n1, &n2);
        QERR_CHECK(n1 >= 2, QERR_E_SHAPE,
                   "flatquant: input width %lld has no factorisation n1 x n2 with n1 >= 2 (a "
                   "prime width cannot take a Kronecker transform)",
                   (long long)n);
    }
    double t0 = qerr__now();
    train_ws ws;
    memset(&ws, 0, sizeof ws);
    fqb_specs(&ws.s, o, cfg->head_dim);
    const qerr_fq_spec wspec = ws.s.wspec;
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        int64_t rows, cols;
        qerr__block_linear_shape(cfg, l, &rows, &cols);
        QERR_TRY(qerr__fq_check(&wspec, cols));
    }
    qerr_flatquant_block *b = NULL;
    QERR_TRY(block_alloc(cfg, o, &wspec, &b));
    int rc = train(ctx, cfg, w, x, nseq, seq, b, &ws);
    ws_free(&ws);
    if (rc != QERR_OK) {
        qerr__flatquant_block_free(b);
        return rc;
    }
    b->seconds = qerr__now() - t0;
    *out = b;
    return QERR_OK;
}

int qerr__flatquant_block_forward(const qerr_flatquant_block *b, const qerr_block_weights_f *w,
                                  qerr_block_cache_f *cache, const float *x, float *y) {
    const qerr_flatquant_opts *o = &b->opts;
    fqb s;
    memset(&s, 0, sizeof s);
    fqb_specs(&s, o, b->cfg.head_dim);
    /* the state only reads the parameters; refresh recomputes derived data */
    int rc = fqb_setup(&s, &b->cfg, (qerr_flatquant_block *)b, cache->rows);
    if (rc == QERR_OK) rc = fqb_refresh(&s);
    if (rc == QERR_OK) {
        qerr_block_hooks_f hk = {&s, 0, (1u << QERR_LIN_COUNT) - 1, fqb_act_fwd, fqb_act_bwd,
                                 fqb_w_fwd, fqb_w_bwd};
        for (int t = 0; t < QERR_FQB_T; t++) hk.act_mask |= 1u << SITE_OF_T[t];
        if (s.kv_q) hk.act_mask |= (1u << QERR_SITE_K) | (1u << QERR_SITE_V);
        rc = qerr__block_forward_f(cache, w, &hk, x, y);
    }
    fqb_free(&s);
    return rc;
}
