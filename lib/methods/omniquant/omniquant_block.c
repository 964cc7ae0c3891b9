/* Block-wise OmniQuant LWC with the LSI/SDE parameterisation and CQE+
 * cross-layer learning: see omniquant_block.h. */
#include "omniquant_block.h"

#include "cqe_layer.h" /* masks, SVD, encode */

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

void qerr__omq_opts_default(qerr_omq_opts *o) {
    memset(o, 0, sizeof *o);
    o->w_bits = 4;
    o->w_group = -1;
    o->lwc = true;
    o->clip_init = 4.0;
    o->lwc_lr = 1e-2;
    o->mask = QERR_CQE_MASK_NONE;
    o->mask_width = 2;
    o->lsi_vector = true;
    o->lr_d = 2e-4;
    o->lambda = 1.0;
    o->epochs = 20;
    o->batch = 1;
    o->a_bits = 16;
    o->let = false; /* weight-only OmniQuant is LWC alone; the plan turns LET on with a_bits < 16 */
    o->let_lr = 5e-3;
    o->let_alpha = 0.5;
    o->let_init_best = true;
}

int qerr__omq_opts_check(const qerr_omq_opts *o) {
    QERR_CHECK(o, QERR_E_INVALID_ARG, "omniquant block: NULL options");
    QERR_CHECK(o->w_bits >= 2 && o->w_bits <= 8, QERR_E_RANGE,
               "omniquant block: w_bits=%d is outside [2, 8]", o->w_bits);
    QERR_CHECK(o->lookahead >= 0 && o->lookahead <= QERR_OMQ_MAX_LOOKAHEAD, QERR_E_RANGE,
               "omniquant block: lookahead=%d must be 0 (off), 1 or 2", o->lookahead);
    QERR_CHECK(o->epochs >= 0 && o->epochs <= 100000 && o->batch >= 1, QERR_E_RANGE,
               "omniquant block: epochs=%d, batch=%lld", o->epochs, (long long)o->batch);
    QERR_CHECK(o->lwc_lr >= 0 && o->lr_d >= 0 && o->lambda >= 0 && isfinite(o->lambda) &&
                   isfinite(o->clip_init),
               QERR_E_RANGE, "omniquant block: lwc_lr %g, lr %g, lambda %g, clip_init %g",
               o->lwc_lr, o->lr_d, o->lambda, o->clip_init);
    QERR_CHECK(o->mask >= QERR_CQE_MASK_NONE && o->mask <= QERR_CQE_MASK_DIAG_BLOCK,
               QERR_E_INVALID_ARG, "omniquant block: unknown mask %d", o->mask);
    QERR_CHECK((o->a_bits >= 2 && o->a_bits <= 8) || o->a_bits == 16, QERR_E_RANGE,
               "omniquant block: a_bits=%d must be in [2, 8] or 16 (weight-only)", o->a_bits);
    QERR_CHECK(o->let_lr >= 0 && isfinite(o->let_lr) && o->let_alpha >= 0 && o->let_alpha <= 1,
               QERR_E_RANGE, "omniquant block: let_lr %g, let_alpha %g (must be in [0, 1])",
               o->let_lr, o->let_alpha);
    return QERR_OK;
}

/* dL/dD (+=) from G = dL/dW(D): mask .* (U^T G V), or its diagonal. */
static int omq_chain_d(qerr_omq_block *b, int lin, const double *g) {
    const int64_t m = b->m[lin], n = b->n[lin], r = b->r[lin];
    if (!b->nd[lin]) return QERR_OK;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)r, (int)n, 1.0, g, (int)n,
                b->vt[lin], (int)n, 0.0, b->mr, (int)r);
    const double *u = b->u[lin];
    double *gd = b->gd[lin];
    if (b->nd[lin] == r) {
        for (int64_t k = 0; k < r; k++) {
            double acc = 0;
            for (int64_t i = 0; i < m; i++) acc += u[i * r + k] * b->mr[i * r + k];
            gd[k] += acc;
        }
        return QERR_OK;
    }
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)r, (int)r, (int)m, 1.0, u, (int)r,
                b->mr, (int)r, 0.0, b->rr, (int)r);
    for (int64_t k = 0; k < r * r; k++)
        if (b->mask[lin][k]) gd[k] += b->rr[k];
    return QERR_OK;
}

#include "../../train/real_def.h"
#include "omniquant_block_impl.h"
#define TR_DOUBLE
#include "../../train/real_def.h"
#include "omniquant_block_impl.h"
#undef TR_DOUBLE

/* ---- state ---------------------------------------------------------------- */
void qerr__omq_block_free(qerr_omq_block *b) {
    if (!b) return;
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        free(b->w0[l]); free(b->wd[l]); free(b->u[l]); free(b->s[l]); free(b->vt[l]);
        free(b->mask[l]); free(b->clip[l]); free(b->d[l]); free(b->gclip[l]); free(b->gd[l]);
    }
    free(b->gw); free(b->qw); free(b->mr); free(b->rr); free(b->epoch_loss);
    qerr__omq_let_free(b);
    memset(b, 0, sizeof *b);
}

void qerr__omq_block_destroy(qerr_omq_block *b) {
    qerr__omq_block_free(b);
    free(b);
}

static int omq_alloc_linear(qerr_omq_block *b, int l, const float *w) {
    const int64_t m = b->m[l], n = b->n[l], r = b->r[l];
    b->w0[l] = qerr__malloc2((size_t)(m * n), sizeof(double));
    b->wd[l] = qerr__malloc2((size_t)(m * n), sizeof(double));
    b->clip[l] = qerr__calloc((size_t)(2 * b->nclip[l]), sizeof(double));
    b->gclip[l] = qerr__calloc((size_t)(2 * b->nclip[l]), sizeof(double));
    QERR_CHECK(b->w0[l] && b->wd[l] && b->clip[l] && b->gclip[l], QERR_E_NOMEM,
               "omniquant block: out of memory for a %lldx%lld linear", (long long)m,
               (long long)n);
    for (int64_t k = 0; k < m * n; k++) b->w0[l][k] = b->wd[l][k] = (double)w[k];
    for (int64_t k = 0; k < 2 * b->nclip[l]; k++) b->clip[l][k] = b->o.clip_init;
    if (!b->nd[l]) return QERR_OK;
    b->u[l] = qerr__malloc2((size_t)(m * r), sizeof(double));
    b->s[l] = qerr__malloc2((size_t)r, sizeof(double));
    b->vt[l] = qerr__malloc2((size_t)(r * n), sizeof(double));
    b->d[l] = qerr__calloc((size_t)b->nd[l], sizeof(double));
    b->gd[l] = qerr__calloc((size_t)b->nd[l], sizeof(double));
    QERR_CHECK(b->u[l] && b->s[l] && b->vt[l] && b->d[l] && b->gd[l], QERR_E_NOMEM,
               "omniquant block: out of memory for the SVD of a %lldx%lld linear",
               (long long)m, (long long)n);
    if (b->nd[l] == r * r) {
        b->mask[l] = qerr__malloc2((size_t)(r * r), 1);
        QERR_CHECK(b->mask[l], QERR_E_NOMEM, "omniquant block: out of memory");
        for (int64_t i = 0; i < r; i++)
            for (int64_t j = 0; j < r; j++)
                b->mask[l][i * r + j] =
                    qerr__cqe_mask_has(b->o.mask, b->o.mask_width, b->block[l], i, j);
    }
    /* the SVD destroys its input: wd is rewritten by the first refresh */
    return qerr__cqe_svd(b->wd[l], m, n, b->u[l], b->s[l], b->vt[l]);
}

int qerr__omq_block_init(qerr_omq_block *b, const qerr_block_config *cfg,
                         const qerr_block_weights_f *w, const qerr_omq_opts *o) {
    memset(b, 0, sizeof *b);
    QERR_TRY(qerr__block_config_check(cfg));
    QERR_TRY(qerr__omq_opts_check(o));
    QERR_CHECK(w, QERR_E_INVALID_ARG, "omniquant block: NULL weights");
    b->cfg = *cfg;
    b->o = *o;
    b->fq = (qerr_fq_spec){o->w_bits, QERR_FQ_ASYM0, QERR_FQ_CLIP_SCALE, o->w_group, false};
    int64_t maxw = 0, maxmr = 0, maxrr = 0;
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        int64_t m, n;
        qerr__block_linear_shape(cfg, l, &m, &n);
        QERR_CHECK(w->w[l], QERR_E_INVALID_ARG, "omniquant block: NULL weight %d", l);
        QERR_CHECK(m * n <= INT32_MAX, QERR_E_SHAPE, "omniquant block: linear %d too large", l);
        QERR_TRY(qerr__fq_check(&b->fq, n));
        const int64_t r = m < n ? m : n;
        b->m[l] = m;
        b->n[l] = n;
        b->r[l] = r;
        b->block[l] = o->mask_block > 0 ? o->mask_block : (r < 64 ? r : 64);
        QERR_TRY(qerr__cqe_check_mask(o->mask, o->mask_width, b->block[l], m, n));
        b->nclip[l] = qerr__fq_clip_pairs(&b->fq, m, n);
        b->nd[l] = o->mask == QERR_CQE_MASK_NONE ? 0
                   : (o->mask == QERR_CQE_MASK_DIAG && o->lsi_vector) ? r : r * r;
        maxw = m * n > maxw ? m * n : maxw;
        maxmr = m * r > maxmr ? m * r : maxmr;
        maxrr = r * r > maxrr ? r * r : maxrr;
    }
    b->gw = qerr__malloc2((size_t)maxw, sizeof(double));
    b->qw = qerr__malloc2((size_t)maxw, sizeof(double));
    b->mr = qerr__malloc2((size_t)maxmr, sizeof(double));
    b->rr = qerr__malloc2((size_t)maxrr, sizeof(double));
    b->epoch_loss = qerr__calloc((size_t)(o->epochs ? o->epochs : 1), sizeof(double));
    int rc = b->gw && b->qw && b->mr && b->rr && b->epoch_loss
                 ? QERR_OK
                 : qerr__fail(QERR_E_NOMEM, "omniquant block: out of memory for scratch");
    for (int l = 0; l < QERR_LIN_COUNT && rc == QERR_OK; l++) rc = omq_alloc_linear(b, l, w->w[l]);
    if (rc == QERR_OK) rc = qerr__omq_let_alloc(b);
    if (rc != QERR_OK) {
        qerr__omq_block_free(b);
        return rc;
    }
    qerr__omq_refresh(b);
    b->mse_init = b->mse_final = b->next_init = b->next_final = NAN;
    b->aug_init = b->aug_final = NAN;
    return QERR_OK;
}

void qerr__omq_refresh(qerr_omq_block *b) {
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        const int64_t m = b->m[l], n = b->n[l], r = b->r[l];
        memcpy(b->wd[l], b->w0[l], sizeof(double) * (size_t)(m * n));
        if (!b->nd[l]) continue;
        if (b->nd[l] == r) { /* LSI: U diag(d) */
            for (int64_t i = 0; i < m; i++)
                for (int64_t k = 0; k < r; k++) b->mr[i * r + k] = b->u[l][i * r + k] * b->d[l][k];
        } else {
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)r, (int)r, 1.0,
                        b->u[l], (int)r, b->d[l], (int)r, 0.0, b->mr, (int)r);
        }
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)r, 1.0, b->mr,
                    (int)r, b->vt[l], (int)n, 1.0, b->wd[l], (int)n);
    }
}

void qerr__omq_zero_grads(qerr_omq_block *b) {
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        memset(b->gclip[l], 0, sizeof(double) * (size_t)(2 * b->nclip[l]));
        if (b->nd[l]) memset(b->gd[l], 0, sizeof(double) * (size_t)b->nd[l]);
    }
    qerr__omq_let_zero_grads(b);
}

int qerr__omq_encode(qerr_omq_block *b, int lin, qerr_result **out) {
    QERR_CHECK(lin >= 0 && lin < QERR_LIN_COUNT, QERR_E_INVALID_ARG,
               "omniquant block: linear %d", lin);
    qerr__omq_refresh(b);
    return qerr__cqe_encode(b->wd[lin], b->m[lin], b->n[lin], b->o.w_bits, b->o.w_group,
                            b->clip[lin], out);
}

/* ---- training ------------------------------------------------------------- */
typedef struct {
    qerr_block_cache_f *cache[1 + QERR_OMQ_MAX_LOOKAHEAD];
    float *target[1 + QERR_OMQ_MAX_LOOKAHEAD]; /* whole calibration set */
    float *xb, *tb[1 + QERR_OMQ_MAX_LOOKAHEAD], *ybuf, *gy;
    float *aug, *aug_b; /* aug_loss target F_l^fp(x_q): whole set, one batch */
    int64_t *order;
    qerr_adamw opt;
} omq_ws;

static void ws_free(omq_ws *ws) {
    for (int k = 0; k <= QERR_OMQ_MAX_LOOKAHEAD; k++) {
        qerr__block_cache_free_f(ws->cache[k]);
        free(ws->target[k]);
        free(ws->tb[k]);
    }
    free(ws->xb); free(ws->ybuf); free(ws->gy); free(ws->order);
    free(ws->aug); free(ws->aug_b);
    qerr__adamw_free(&ws->opt);
}

/* One AdamW step over the clip and D groups (or just count them). */
static int64_t omq_adam(qerr_omq_block *b, qerr_adamw *opt, bool apply) {
    int64_t off = 0;
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        if (b->o.lwc) {
            if (apply)
                qerr__adamw_update(opt, off, 2 * b->nclip[l], b->clip[l], b->gclip[l],
                                   b->o.lwc_lr, 0.0);
            off += 2 * b->nclip[l];
        }
        if (b->nd[l]) {
            if (apply) qerr__adamw_update(opt, off, b->nd[l], b->d[l], b->gd[l], b->o.lr_d, 0.0);
            off += b->nd[l];
        }
    }
    return qerr__omq_let_adam(b, opt, apply, off); /* LET scales, clamped after the step */
}

/* Mean of the loss terms over the calibration set (no gradient). */
static int omq_eval(qerr_omq_block *b, omq_ws *ws, const qerr_block_weights_f *w,
                    const qerr_block_weights_f *const *next, int la, const float *x,
                    int64_t nbatch, double *terms) {
    const int64_t n = ws->cache[0]->rows * b->cfg.hidden;
    const int nt = la + 1 + (ws->aug ? 1 : 0); /* the aug_loss term last */
    double acc[QERR_OMQ_MAX_TERMS] = {0}, t[QERR_OMQ_MAX_TERMS], loss;
    for (int64_t k = 0; k < nbatch; k++) {
        const float *tg[QERR_OMQ_MAX_TERMS];
        for (int j = 0; j <= la; j++) tg[j] = ws->target[j] + k * n;
        if (ws->aug) tg[la + 1] = ws->aug + k * n;
        QERR_TRY(qerr__omq_loss_f(b, ws->cache, w, next, la, x + k * n, tg, ws->ybuf, NULL,
                                  &loss, t));
        for (int j = 0; j < nt; j++) acc[j] += t[j];
    }
    for (int j = 0; j < nt; j++) terms[j] = acc[j] / (double)nbatch;
    return QERR_OK;
}

/* The training objective from the evaluated terms (block, look-ahead, aug). */
static double omq_objective(const qerr_omq_block *b, const omq_ws *ws, int la, int la_eval,
                            const double *terms) {
    double f = terms[0];
    for (int k = 1; k <= la; k++) f += b->o.lambda * terms[k];
    return ws->aug ? f + terms[la_eval + 1] : f;
}

/* let_init=best: a SmoothQuant start can be worse than no scaling (tiny-llama
 * block 0 at W4A4); per pair, keep s = 1 where the whole objective is lower.
 * terms holds the current start's terms and is updated. */
static int let_pick_start(qerr_omq_block *b, omq_ws *ws, const qerr_block_weights_f *w,
                          const qerr_block_weights_f *const *next, int la, int la_eval,
                          const float *x, int64_t nbatch, double *terms) {
    double t[QERR_OMQ_MAX_TERMS];
    for (int p = 0; p < QERR_OMQ_LET_PAIRS; p++) {
        const int64_t n = b->let_n[p];
        double *keep = qerr__malloc2((size_t)n, sizeof(double));
        QERR_CHECK(keep, QERR_E_NOMEM, "omniquant block: out of memory");
        memcpy(keep, b->let_s[p], (size_t)n * sizeof(double));
        for (int64_t j = 0; j < n; j++) b->let_s[p][j] = 1.0;
        int rc = omq_eval(b, ws, w, next, la_eval, x, nbatch, t);
        if (rc == QERR_OK && omq_objective(b, ws, la, la_eval, t) <
                                 omq_objective(b, ws, la, la_eval, terms))
            memcpy(terms, t, sizeof t);
        else
            memcpy(b->let_s[p], keep, (size_t)n * sizeof(double));
        free(keep);
        QERR_TRY(rc);
    }
    return QERR_OK;
}

static int train(const qerr_ctx *ctx, qerr_omq_block *b, const qerr_block_weights_f *w,
                 const qerr_omq_io *io, omq_ws *ws) {
    const qerr_omq_opts *o = &b->o;
    const qerr_block_config *cfg = &b->cfg;
    const int64_t seq = io->seq, bs = o->batch < io->nseq ? o->batch : io->nseq;
    const int64_t nbatch = io->nseq / bs, rows = bs * seq, n = rows * cfg->hidden;
    const int64_t remain = io->nlayers - 1 - io->layer;
    const int la = o->lookahead < remain ? o->lookahead : (int)remain;
    /* evaluation also reports the next block's error when there is one */
    const int la_eval = la > 0 ? la : (remain > 0 && io->next[0] ? 1 : 0);
    b->lookahead_used = la;
    for (int k = 0; k < la_eval; k++)
        QERR_CHECK(io->next[k], QERR_E_INVALID_ARG,
                   "omniquant block: lookahead %d needs the float weights of block %lld",
                   o->lookahead, (long long)(io->layer + 1 + k));
    for (int k = 0; k <= la_eval; k++) {
        QERR_TRY(qerr__block_cache_create_f(cfg, bs, seq, &ws->cache[k]));
        ws->target[k] = qerr__malloc2((size_t)(nbatch * n), sizeof(float));
        ws->tb[k] = qerr__malloc2((size_t)n, sizeof(float));
        QERR_CHECK(ws->target[k] && ws->tb[k], QERR_E_NOMEM,
                   "omniquant block: out of memory for the targets");
    }
    ws->xb = qerr__malloc2((size_t)n, sizeof(float));
    ws->ybuf = qerr__malloc2((size_t)(n * (la_eval + 1)), sizeof(float));
    ws->gy = qerr__malloc2((size_t)(n * (la_eval + 1)), sizeof(float));
    ws->order = qerr__malloc2((size_t)io->nseq, sizeof(int64_t));
    if (o->aug_loss) {
        ws->aug = qerr__malloc2((size_t)(nbatch * n), sizeof(float));
        ws->aug_b = qerr__malloc2((size_t)n, sizeof(float));
    }
    const bool aug_ok = !o->aug_loss || (ws->aug && ws->aug_b);
    QERR_CHECK(ws->xb && ws->ybuf && ws->gy && ws->order && aug_ok, QERR_E_NOMEM,
               "omniquant block: out of memory for %lld calibration rows",
               (long long)(io->nseq * seq));
    /* float targets: Y_l = F_l(x_fp), Y_{l+k} = F_{l+k}(Y_{l+k-1}) */
    const qerr_block_weights_f *const *next = io->next;
    for (int64_t k = 0; k < nbatch; k++) {
        QERR_TRY(qerr__block_forward_f(ws->cache[0], w, NULL, io->x_fp + k * n,
                                       ws->target[0] + k * n));
        qerr__omq_let_observe(b, ws->cache[0]); /* activation maxima for the LET init */
        for (int j = 1; j <= la_eval; j++)
            QERR_TRY(qerr__block_forward_f(ws->cache[j], next[j - 1], NULL,
                                           ws->target[j - 1] + k * n, ws->target[j] + k * n));
        if (ws->aug) /* aug_loss: the float block on the quantized-path input */
            QERR_TRY(qerr__block_forward_f(ws->cache[0], w, NULL, io->x_q + k * n,
                                           ws->aug + k * n));
    }
    qerr__omq_let_init(b); /* SmoothQuant start */
    double terms[QERR_OMQ_MAX_TERMS];
    QERR_TRY(omq_eval(b, ws, w, next, la_eval, io->x_q, nbatch, terms));
    if (o->let_init_best && qerr__omq_let_on(b))
        QERR_TRY(let_pick_start(b, ws, w, next, la, la_eval, io->x_q, nbatch, terms));
    b->mse_init = terms[0];
    b->next_init = la_eval ? terms[1] : NAN;
    b->aug_init = ws->aug ? terms[la_eval + 1] : NAN;
    QERR_TRY(qerr__adamw_init(&ws->opt, omq_adam(b, NULL, false)));
    qerr_rng rng;
    qerr__rng_seed(&rng, o->seed);
    const int64_t nuse = nbatch * bs, per = seq * cfg->hidden, total = (int64_t)o->epochs * nbatch;
    for (int64_t i = 0; i < nuse; i++) ws->order[i] = i;
    int64_t step = 0;
    for (int ep = 0; ep < o->epochs; ep++) {
        for (int64_t i = nuse - 1; i > 0; i--) { /* seeded shuffle */
            int64_t j = (int64_t)(qerr__rng_next(&rng) % (uint64_t)(i + 1));
            int64_t tmp = ws->order[i];
            ws->order[i] = ws->order[j];
            ws->order[j] = tmp;
        }
        double ep_loss = 0;
        for (int64_t k = 0; k < nbatch; k++, step++) {
            for (int64_t q = 0; q < bs; q++) {
                int64_t sidx = ws->order[k * bs + q];
                memcpy(ws->xb + q * per, io->x_q + sidx * per, sizeof(float) * (size_t)per);
                for (int j = 0; j <= la; j++)
                    memcpy(ws->tb[j] + q * per, ws->target[j] + sidx * per,
                           sizeof(float) * (size_t)per);
                if (ws->aug)
                    memcpy(ws->aug_b + q * per, ws->aug + sidx * per, sizeof(float) * (size_t)per);
            }
            const float *tg[QERR_OMQ_MAX_TERMS];
            for (int j = 0; j <= la; j++) tg[j] = ws->tb[j];
            if (ws->aug) tg[la + 1] = ws->aug_b;
            double loss;
            qerr__omq_zero_grads(b);
            QERR_TRY(qerr__omq_loss_f(b, ws->cache, w, next, la, ws->xb, tg, ws->ybuf, ws->gy,
                                      &loss, NULL));
            ep_loss += loss;
            qerr__adamw_next(&ws->opt);
            omq_adam(b, &ws->opt, true);
            qerr__omq_refresh(b);
            QERR_TRY(qerr__progress(ctx, "omniquant block", (double)(step + 1) / (double)total));
        }
        b->epoch_loss[ep] = ep_loss / (double)nbatch;
        b->epochs_done = ep + 1;
    }
    QERR_TRY(omq_eval(b, ws, w, next, la_eval, io->x_q, nbatch, terms));
    b->mse_final = terms[0];
    b->next_final = la_eval ? terms[1] : NAN;
    b->aug_final = ws->aug ? terms[la_eval + 1] : NAN;
    return QERR_OK;
}

int qerr__omq_train_block(const qerr_ctx *ctx, const qerr_block_config *cfg,
                          const qerr_block_weights_f *w, const qerr_omq_io *io,
                          const qerr_omq_opts *o, qerr_omq_block **out) {
    QERR_CHECK(out, QERR_E_INVALID_ARG, "omniquant block: NULL output");
    *out = NULL;
    if (!ctx) ctx = qerr__default_ctx();
    QERR_TRY(qerr__block_config_check(cfg));
    QERR_TRY(qerr__omq_opts_check(o));
    QERR_CHECK(io && w, QERR_E_INVALID_ARG, "omniquant block: NULL inputs or weights");
    QERR_CHECK(io->x_q && io->x_fp && io->nseq >= 1 && io->seq >= 1, QERR_E_INVALID_ARG,
               "omniquant block: no calibration data (%lld sequences of %lld tokens)",
               (long long)io->nseq, (long long)io->seq);
    QERR_CHECK(io->nseq <= INT32_MAX / io->seq, QERR_E_RANGE,
               "omniquant block: %lld x %lld calibration tokens", (long long)io->nseq,
               (long long)io->seq);
    QERR_CHECK(io->nlayers >= 1 && io->layer >= 0 && io->layer < io->nlayers, QERR_E_RANGE,
               "omniquant block: block %lld of %lld: lookahead past the last block",
               (long long)io->layer, (long long)io->nlayers);
    const int64_t nx = io->nseq * io->seq * cfg->hidden;
    QERR_CHECK(qerr__find_nonfinite_f32(io->x_q, nx) < 0 &&
                   qerr__find_nonfinite_f32(io->x_fp, nx) < 0,
               QERR_E_NONFINITE, "omniquant block: calibration inputs hold NaN or Inf");
    double t0 = qerr__now();
    qerr_omq_block *b = qerr__calloc(1, sizeof *b);
    QERR_CHECK(b, QERR_E_NOMEM, "omniquant block: out of memory");
    int rc = qerr__omq_block_init(b, cfg, w, o);
    if (rc != QERR_OK) {
        free(b);
        return rc;
    }
    omq_ws ws;
    memset(&ws, 0, sizeof ws);
    rc = train(ctx, b, w, io, &ws);
    ws_free(&ws);
    if (rc != QERR_OK) {
        qerr__omq_block_destroy(b);
        return rc;
    }
    b->seconds = qerr__now() - t0;
    *out = b;
    return QERR_OK;
}
