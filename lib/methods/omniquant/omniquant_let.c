/* OmniQuant's learnable equivalent transforms (LET, algorithms.md §3.3) and
 * per-token activation quantization for the block-wise trainer
 * (omniquant_block.c). LLaMA pairs, no shift, no qkt:
 *   qkv: the input-norm output is divided by s_attn, q/k/v columns * s_attn;
 *   out: the o_proj input channel c is divided by s_vo[kv channel of c],
 *        o_proj columns * the same (folded as v_proj rows / s_vo);
 *   fc1: the post-attention-norm output / s_mlp, gate/up columns * s_mlp.
 * The activation quantizer is the deployed runtime's (flatquant_fold.c):
 * per-token symmetric, absmax / (2^(b-1) - 1), clip factor sigmoid(40) = 1
 * ("none"), at the four linear inputs, after the LET division. */
#include "omniquant_block.h"

#include "cqe_layer.h" /* qerr__cqe_encode */

#include <stdlib.h>
#include <string.h>

static const double LET_NO_CLIP[2] = {40.0, 40.0}; /* sigmoid(40) == 1 */

static int let_site_pair(int site) {
    switch (site) {
    case QERR_SITE_ATTN_IN: return QERR_OMQ_LET_ATTN;
    case QERR_SITE_O_IN: return QERR_OMQ_LET_VO;
    case QERR_SITE_MLP_IN: return QERR_OMQ_LET_MLP;
    default: return -1;
    }
}

static int let_lin_pair(int lin) {
    switch (lin) {
    case QERR_LIN_Q: case QERR_LIN_K: case QERR_LIN_V: return QERR_OMQ_LET_ATTN;
    case QERR_LIN_O: return QERR_OMQ_LET_VO;
    case QERR_LIN_GATE: case QERR_LIN_UP: return QERR_OMQ_LET_MLP;
    default: return -1;
    }
}

/* Index into s of column j of a pair's input; for the out pair, head h reads
 * kv head h / (heads / kv_heads) (HF repeat_kv). */
static inline int64_t let_idx(const qerr_omq_block *b, int p, int64_t j) {
    if (p != QERR_OMQ_LET_VO) return j;
    const int64_t hd = b->cfg.head_dim, rep = b->cfg.heads / b->cfg.kv_heads;
    return (j / hd / rep) * hd + j % hd;
}

static inline double let_col(const qerr_omq_block *b, int p, int64_t j) {
    return b->let_s[p][let_idx(b, p, j)];
}

static void *let_scratch(qerr_omq_block *b, int64_t bytes) {
    if ((size_t)bytes <= b->let_tmp_bytes) return b->let_tmp;
    void *t = realloc(b->let_tmp, (size_t)bytes);
    if (!t) return NULL;
    b->let_tmp = t;
    b->let_tmp_bytes = (size_t)bytes;
    return t;
}

#include "../../train/real_def.h"
#include "omniquant_let_impl.h"
#define TR_DOUBLE
#include "../../train/real_def.h"
#include "omniquant_let_impl.h"
#undef TR_DOUBLE

bool qerr__omq_let_on(const qerr_omq_block *b) { return b->let_s[QERR_OMQ_LET_ATTN] != NULL; }

int qerr__omq_let_alloc(qerr_omq_block *b) {
    b->act_q = b->o.a_bits < 16;
    b->aspec = (qerr_fq_spec){b->act_q ? b->o.a_bits : 8, QERR_FQ_SYM, QERR_FQ_CLIP_SCALE, -1,
                              true};
    if (!b->o.let) return QERR_OK;
    b->let_n[QERR_OMQ_LET_ATTN] = b->let_n[QERR_OMQ_LET_MLP] = b->cfg.hidden;
    b->let_n[QERR_OMQ_LET_VO] = b->cfg.kv_heads * b->cfg.head_dim;
    int64_t maxw = 0;
    for (int l = 0; l < QERR_LIN_COUNT; l++)
        maxw = b->m[l] * b->n[l] > maxw ? b->m[l] * b->n[l] : maxw;
    b->lws = qerr__malloc2((size_t)maxw, sizeof(double));
    QERR_CHECK(b->lws, QERR_E_NOMEM, "omniquant let: out of memory");
    for (int p = 0; p < QERR_OMQ_LET_PAIRS; p++) {
        b->let_s[p] = qerr__malloc2((size_t)b->let_n[p], sizeof(double));
        b->let_g[p] = qerr__calloc((size_t)b->let_n[p], sizeof(double));
        b->let_amax[p] = qerr__calloc((size_t)b->let_n[p], sizeof(double));
        QERR_CHECK(b->let_s[p] && b->let_g[p] && b->let_amax[p], QERR_E_NOMEM,
                   "omniquant let: out of memory");
        for (int64_t j = 0; j < b->let_n[p]; j++) b->let_s[p][j] = 1.0;
    }
    return QERR_OK;
}

void qerr__omq_let_free(qerr_omq_block *b) {
    for (int p = 0; p < QERR_OMQ_LET_PAIRS; p++) {
        free(b->let_s[p]);
        free(b->let_g[p]);
        free(b->let_amax[p]);
        b->let_s[p] = b->let_g[p] = b->let_amax[p] = NULL;
    }
    free(b->lws);
    free(b->let_tmp);
    b->lws = NULL;
    b->let_tmp = NULL;
    b->let_tmp_bytes = 0;
}

unsigned qerr__omq_let_act_mask(const qerr_omq_block *b) {
    unsigned m = 0;
    if (qerr__omq_let_on(b) || b->act_q)
        m |= (1u << QERR_SITE_ATTN_IN) | (1u << QERR_SITE_O_IN) | (1u << QERR_SITE_MLP_IN);
    if (b->act_q) m |= 1u << QERR_SITE_DOWN_IN;
    return m;
}

void qerr__omq_let_observe(qerr_omq_block *b, const qerr_block_cache_f *c) {
    static const int site[QERR_OMQ_LET_PAIRS] = {QERR_SITE_ATTN_IN, QERR_SITE_O_IN,
                                                 QERR_SITE_MLP_IN};
    if (!qerr__omq_let_on(b)) return;
    for (int p = 0; p < QERR_OMQ_LET_PAIRS; p++) {
        const int64_t cols = qerr__block_site_cols(&b->cfg, site[p]);
        const float *a = c->site_in[site[p]];
        double *mx = b->let_amax[p];
        for (int64_t r = 0; r < c->rows; r++)
            for (int64_t j = 0; j < cols; j++) {
                const int64_t k = let_idx(b, p, j);
                mx[k] = fmax(mx[k], fabs((double)a[r * cols + j]));
            }
    }
}

void qerr__omq_let_init(qerr_omq_block *b) {
    if (!qerr__omq_let_on(b)) return;
    const double alpha = b->o.let_alpha;
    double *wmax[QERR_OMQ_LET_PAIRS];
    for (int p = 0; p < QERR_OMQ_LET_PAIRS; p++) {
        wmax[p] = b->let_g[p]; /* borrowed as scratch; zeroed again below */
        memset(wmax[p], 0, sizeof(double) * (size_t)b->let_n[p]);
    }
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        const int p = let_lin_pair(l);
        if (p < 0) continue;
        for (int64_t i = 0; i < b->m[l]; i++)
            for (int64_t j = 0; j < b->n[l]; j++) {
                const int64_t k = let_idx(b, p, j);
                wmax[p][k] = fmax(wmax[p][k], fabs(b->w0[l][i * b->n[l] + j]));
            }
    }
    for (int p = 0; p < QERR_OMQ_LET_PAIRS; p++) {
        for (int64_t j = 0; j < b->let_n[p]; j++) {
            double s = pow(b->let_amax[p][j], alpha) / pow(fmax(wmax[p][j], 1e-5), 1 - alpha);
            b->let_s[p][j] = isfinite(s) && s > 1e-5 ? s : 1e-5;
        }
        memset(wmax[p], 0, sizeof(double) * (size_t)b->let_n[p]);
    }
}

void qerr__omq_let_zero_grads(qerr_omq_block *b) {
    for (int p = 0; p < QERR_OMQ_LET_PAIRS; p++)
        if (b->let_g[p]) memset(b->let_g[p], 0, sizeof(double) * (size_t)b->let_n[p]);
}

int64_t qerr__omq_let_adam(qerr_omq_block *b, qerr_adamw *opt, bool apply, int64_t off) {
    if (!qerr__omq_let_on(b)) return off;
    for (int p = 0; p < QERR_OMQ_LET_PAIRS; p++) {
        if (apply) {
            qerr__adamw_update(opt, off, b->let_n[p], b->let_s[p], b->let_g[p], b->o.let_lr, 0.0);
            /* positive scales keep the per-row weight grid and the per-token
             * grid equivariant under the fold */
            for (int64_t j = 0; j < b->let_n[p]; j++)
                if (!(b->let_s[p][j] >= 1e-5)) b->let_s[p][j] = 1e-5;
        }
        off += b->let_n[p];
    }
    return off;
}

const double *qerr__omq_let_wsrc(qerr_omq_block *b, int lin) {
    const int p = let_lin_pair(lin);
    if (p < 0 || !b->let_s[p]) return b->wd[lin];
    const int64_t m = b->m[lin], n = b->n[lin];
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            b->lws[i * n + j] = b->wd[lin][i * n + j] * let_col(b, p, j);
    return b->lws;
}

void qerr__omq_let_wgrad(qerr_omq_block *b, int lin, double *g) {
    const int p = let_lin_pair(lin);
    if (p < 0 || !b->let_s[p]) return;
    const int64_t m = b->m[lin], n = b->n[lin];
    double *gs = b->let_g[p];
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            const int64_t k = let_idx(b, p, j);
            gs[k] += g[i * n + j] * b->wd[lin][i * n + j];
            g[i * n + j] *= b->let_s[p][k];
        }
}

int qerr__omq_let_encode(qerr_omq_block *b, int lin, qerr_result **out) {
    QERR_CHECK(lin >= 0 && lin < QERR_LIN_COUNT, QERR_E_INVALID_ARG, "omniquant let: linear %d",
               lin);
    qerr__omq_refresh(b);
    const double *src = qerr__omq_let_wsrc(b, lin);
    const int64_t m = b->m[lin], n = b->n[lin];
    if (lin == QERR_LIN_V && qerr__omq_let_on(b)) { /* the out pair: v rows / s_vo */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) b->lws[i * n + j] /= b->let_s[QERR_OMQ_LET_VO][i];
        src = b->lws;
    }
    return qerr__cqe_encode(src, m, n, b->o.w_bits, b->o.w_group, b->clip[lin], out);
}

int qerr__omq_let_folded(const qerr_omq_block *b, const qerr_block_weights_f *w,
                         qerr_flatquant_folded *f) {
    const int64_t d = b->cfg.hidden;
    QERR_TRY(qerr__folded_norms_only(w->ln1, w->ln2, d, b->o.a_bits, b->cfg.head_dim, f));
    if (qerr__omq_let_on(b))
        for (int64_t j = 0; j < d; j++) {
            f->ln1[j] = (float)((double)w->ln1[j] / b->let_s[QERR_OMQ_LET_ATTN][j]);
            f->ln2[j] = (float)((double)w->ln2[j] / b->let_s[QERR_OMQ_LET_MLP][j]);
        }
    return QERR_OK;
}
