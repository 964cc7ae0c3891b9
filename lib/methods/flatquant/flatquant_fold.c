/* After FlatQuant training: fold P^-1 and the scales into the weights in
 * float64 with the learned clip baked in, round to the FlatQuant symmetric
 * grid, and run the block as an engine would (online X P, per-token
 * activation quantization). */
#include "flatquant.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

static int t_of_lin(int l) {
    if (l == QERR_LIN_Q || l == QERR_LIN_K || l == QERR_LIN_V) return 0;
    if (l == QERR_LIN_O) return 1;
    if (l == QERR_LIN_GATE || l == QERR_LIN_UP) return 2;
    return 3;
}

void qerr__flatquant_folded_free(qerr_flatquant_folded *f) {
    if (!f) return;
    for (int l = 0; l < QERR_LIN_COUNT; l++) free(f->w[l]);
    for (int t = 0; t < QERR_FQB_T; t++) { free(f->p1[t]); free(f->p2[t]); }
    free(f->ln1);
    free(f->ln2);
    memset(f, 0, sizeof *f);
}

int qerr__folded_norms_only(const float *ln1, const float *ln2, int64_t hidden, int a_bits,
                            int64_t head_dim, qerr_flatquant_folded *f) {
    memset(f, 0, sizeof *f);
    f->ln1 = qerr__malloc2((size_t)hidden, sizeof(float));
    f->ln2 = qerr__malloc2((size_t)hidden, sizeof(float));
    if (!f->ln1 || !f->ln2) {
        qerr__flatquant_folded_free(f);
        return qerr__fail(QERR_E_NOMEM, "folded norms: out of memory");
    }
    memcpy(f->ln1, ln1, (size_t)hidden * sizeof(float));
    memcpy(f->ln2, ln2, (size_t)hidden * sizeof(float));
    for (int t = 0; t < QERR_FQB_T; t++) f->act_clip[t][0] = f->act_clip[t][1] = 40.0;
    for (int v = 0; v < 2; v++) f->kv_clip[v][0] = f->kv_clip[v][1] = 40.0;
    f->a_bits = a_bits;
    f->kv_bits = 16;
    f->head_dim = (int)head_dim;
    return QERR_OK;
}

/* W~ = (W ./ c) P^-T, clamped per (row, group) to [sig(b) min, sig(a) max]. */
static int fold_linear(const qerr_flatquant_block *b, const qerr_block_weights_f *w, int l,
                       float *dst) {
    const int t = t_of_lin(l);
    int64_t o, i;
    qerr__block_linear_shape(&b->cfg, l, &o, &i);
    double *wd = qerr__malloc2((size_t)(2 * o * i + i), sizeof(double));
    QERR_CHECK(wd, QERR_E_NOMEM, "flatquant fold: out of memory");
    double *wt = wd + o * i, *cinv = wt + o * i;
    for (int64_t k = 0; k < o * i; k++) wd[k] = (double)w->w[l][k];
    if (b->c[t])
        for (int64_t j = 0; j < i; j++) cinv[j] = 1.0 / b->c[t][j];
    int rc = qerr__kron_fwd_d(o, b->n1[t], b->n2[t], b->f1[t].pinvt, b->f2[t].pinvt,
                              b->c[t] ? cinv : NULL, wd, wt);
    if (rc == QERR_OK && b->opts.lwc) {
        int64_t g = b->opts.w_group > 0 && b->opts.w_group < i ? b->opts.w_group : i;
        int64_t ng = (i + g - 1) / g;
        for (int64_t r = 0; r < o; r++)
            for (int64_t k = 0; k < ng; k++) {
                double *x = wt + r * i + k * g;
                int64_t m = k * g + g < i ? g : i - k * g;
                double mx = x[0], mn = x[0];
                for (int64_t j = 1; j < m; j++) { mx = fmax(mx, x[j]); mn = fmin(mn, x[j]); }
                const double *ab = b->wclip[l] + 2 * (r * ng + k);
                double hi = qerr__sigmoid(ab[0]) * mx, lo = qerr__sigmoid(ab[1]) * mn;
                for (int64_t j = 0; j < m; j++) x[j] = fmin(fmax(x[j], lo), hi);
            }
    }
    if (rc == QERR_OK && l == QERR_LIN_UP && b->c[3]) /* c of down_proj's input -> up rows */
        for (int64_t r = 0; r < o; r++)
            for (int64_t j = 0; j < i; j++) wt[r * i + j] *= b->c[3][r];
    if (rc == QERR_OK)
        for (int64_t k = 0; k < o * i; k++) dst[k] = (float)wt[k];
    free(wd);
    return rc;
}

int qerr__flatquant_fold(const qerr_flatquant_block *b, const qerr_block_weights_f *w,
                         qerr_flatquant_folded *out) {
    memset(out, 0, sizeof *out);
    const qerr_block_config *cfg = &b->cfg;
    int rc = QERR_OK;
    for (int l = 0; l < QERR_LIN_COUNT && rc == QERR_OK; l++) {
        int64_t o, i;
        qerr__block_linear_shape(cfg, l, &o, &i);
        out->w[l] = qerr__malloc2((size_t)(o * i), sizeof(float));
        rc = out->w[l] ? fold_linear(b, w, l, out->w[l])
                       : qerr__fail(QERR_E_NOMEM, "flatquant fold: out of memory");
    }
    out->ln1 = qerr__malloc2((size_t)cfg->hidden, sizeof(float));
    out->ln2 = qerr__malloc2((size_t)cfg->hidden, sizeof(float));
    if (rc == QERR_OK && (!out->ln1 || !out->ln2))
        rc = qerr__fail(QERR_E_NOMEM, "flatquant fold: out of memory");
    for (int64_t j = 0; rc == QERR_OK && j < cfg->hidden; j++) {
        out->ln1[j] = (float)((double)w->ln1[j] * (b->c[0] ? b->c[0][j] : 1.0));
        out->ln2[j] = (float)((double)w->ln2[j] * (b->c[2] ? b->c[2][j] : 1.0));
    }
    for (int t = 0; t < QERR_FQB_T && rc == QERR_OK; t++) {
        int64_t nn1 = b->n1[t] * b->n1[t], nn2 = b->n2[t] * b->n2[t];
        out->p1[t] = qerr__malloc2((size_t)nn1, sizeof(float));
        out->p2[t] = qerr__malloc2((size_t)nn2, sizeof(float));
        if (!out->p1[t] || !out->p2[t]) {
            rc = qerr__fail(QERR_E_NOMEM, "flatquant fold: out of memory");
            break;
        }
        for (int64_t k = 0; k < nn1; k++) out->p1[t][k] = (float)b->f1[t].p[k];
        for (int64_t k = 0; k < nn2; k++) out->p2[t][k] = (float)b->f2[t].p[k];
        bool lac = b->opts.lac && b->opts.a_bits < 16;
        /* the factors as a quantized model stores them (float32), so the
         * model forward reproduces this fold exactly */
        out->act_clip[t][0] = lac ? qerr__clip_raw_stored(b->aclip[t][0]) : 40.0;
        out->act_clip[t][1] = lac ? qerr__clip_raw_stored(b->aclip[t][1]) : 40.0;
    }
    for (int v = 0; v < 2; v++) {
        bool lac = b->opts.lac && b->opts.kv_bits < 16;
        out->kv_clip[v][0] = lac ? qerr__clip_raw_stored(b->kvclip[v][0]) : 40.0;
        out->kv_clip[v][1] = lac ? qerr__clip_raw_stored(b->kvclip[v][1]) : 40.0;
    }
    out->a_bits = b->opts.a_bits;
    out->kv_bits = b->opts.kv_bits;
    out->head_dim = cfg->head_dim;
    if (rc != QERR_OK) qerr__flatquant_folded_free(out);
    return rc;
}

int qerr__flatquant_rtn(const float *w, int64_t rows, int64_t cols, int bits, int64_t group,
                        qerr_result **out) {
    QERR_CHECK(bits >= 2 && bits <= 8, QERR_E_RANGE, "flatquant: bits=%d is outside [2, 8]", bits);
    int64_t g = group > 0 && group < cols ? group : cols;
    qerr_result *r;
    QERR_TRY(qerr__result_alloc(&r, rows, cols, bits, g));
    const int qmax = (1 << (bits - 1)) - 1, zero = 1 << (bits - 1);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t k = 0; k < r->groups; k++) {
            int64_t c0 = k * g, c1 = c0 + g < cols ? c0 + g : cols;
            float am = 0;
            for (int64_t j = c0; j < c1; j++) am = fmaxf(am, fabsf(w[i * cols + j]));
            float s = fmaxf(am, 1e-5f) / (float)qmax;
            r->scales[i * r->groups + k] = s;
            r->zeros[i * r->groups + k] = zero;
            for (int64_t j = c0; j < c1; j++) {
                float q = nearbyintf(w[i * cols + j] / s);
                q = q < (float)(-qmax - 1) ? (float)(-qmax - 1) : (q > (float)qmax ? (float)qmax : q);
                r->codes[i * cols + j] = (uint8_t)((int)q + zero);
            }
        }
    *out = r;
    return QERR_OK;
}

typedef struct {
    const qerr_flatquant_folded *f;
    const qerr_block_config *cfg;
    qerr_fq_spec aspec, kvspec;
    bool act_q;
    float *tmp;
    double *gram[QERR_FQB_T]; /* non-NULL: accumulate y^T y of that transform's output */
    double *rowsd;            /* scratch: one chunk of y in float64 */
} deployed;

/* gram (+=) y^T y, full symmetric, in float64 (GPTQ's H of that input). */
static void gram_add(double *gram, double *yd, int64_t rows, int64_t cols, const float *y) {
    for (int64_t k = 0; k < rows * cols; k++) yd[k] = (double)y[k];
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)cols, (int)rows, 1.0, yd,
                (int)cols, 1.0, gram, (int)cols);
}

static int dep_act(void *u, int site, int64_t rows, int64_t cols, const float *x, float *y) {
    deployed *d = u;
    if (site == QERR_SITE_K || site == QERR_SITE_V) {
        qerr__fq_fwd_f(&d->kvspec, rows, cols, d->f->kv_clip[site == QERR_SITE_V], x, y);
        return QERR_OK;
    }
    int t = site == QERR_SITE_ATTN_IN ? 0 : site == QERR_SITE_O_IN ? 1 : site == QERR_SITE_MLP_IN ? 2 : 3;
    int64_t n1, n2;
    qerr__decompose_dim(cols, &n1, &n2);
    if (!d->f->p1[t]) { /* no online transform (OmniQuant LET: folded away) */
        if (!d->act_q) memcpy(y, x, sizeof(float) * (size_t)(rows * cols));
        else qerr__fq_fwd_f(&d->aspec, rows, cols, d->f->act_clip[t], x, y);
    } else if (!d->act_q) {
        QERR_TRY(qerr__kron_fwd_f(rows, n1, n2, d->f->p1[t], d->f->p2[t], NULL, x, y));
    } else {
        QERR_TRY(qerr__kron_fwd_f(rows, n1, n2, d->f->p1[t], d->f->p2[t], NULL, x, d->tmp));
        qerr__fq_fwd_f(&d->aspec, rows, cols, d->f->act_clip[t], d->tmp, y);
    }
    if (d->gram[t]) gram_add(d->gram[t], d->rowsd, rows, cols, y);
    return QERR_OK;
}

static int deployed_run(const qerr_block_config *cfg, const qerr_flatquant_folded *f,
                        const float *const wq[QERR_LIN_COUNT], qerr_block_cache_f *cache,
                        const float *x, float *y, double *const gram[QERR_FQB_T]) {
    const int a_bits = f->a_bits, kv_bits = f->kv_bits;
    int64_t maxc = cfg->hidden > cfg->inter ? cfg->hidden : cfg->inter;
    int64_t qd = cfg->heads * cfg->head_dim;
    maxc = qd > maxc ? qd : maxc;
    deployed d = {f, cfg, {a_bits < 16 ? a_bits : 8, QERR_FQ_SYM, QERR_FQ_CLIP_SCALE, -1, true},
                  {kv_bits < 16 ? kv_bits : 8, QERR_FQ_ASYM0, QERR_FQ_CLIP_SCALE, f->head_dim, true},
                  a_bits < 16, NULL, {NULL}, NULL};
    bool capture = false;
    for (int t = 0; t < QERR_FQB_T; t++) {
        d.gram[t] = gram ? gram[t] : NULL;
        capture = capture || d.gram[t];
    }
    d.tmp = qerr__malloc2((size_t)(cache->rows * maxc), sizeof(float));
    if (capture) d.rowsd = qerr__malloc2((size_t)(cache->rows * maxc), sizeof(double));
    if (!d.tmp || (capture && !d.rowsd)) {
        free(d.tmp);
        free(d.rowsd);
        return qerr__fail(QERR_E_NOMEM, "flatquant: out of memory");
    }
    qerr_block_weights_f w = {{NULL}, NULL, NULL, {NULL}, NULL, NULL};
    for (int l = 0; l < QERR_LIN_COUNT; l++) w.w[l] = wq[l];
    w.ln1 = f->ln1;
    w.ln2 = f->ln2;
    qerr_block_hooks_f hk = {&d,
                             (1u << QERR_SITE_ATTN_IN) | (1u << QERR_SITE_O_IN) |
                                 (1u << QERR_SITE_MLP_IN) | (1u << QERR_SITE_DOWN_IN),
                             0, dep_act, NULL, NULL, NULL};
    if (kv_bits < 16) hk.act_mask |= (1u << QERR_SITE_K) | (1u << QERR_SITE_V);
    int rc = qerr__block_forward_f(cache, &w, &hk, x, y);
    free(d.tmp);
    free(d.rowsd);
    return rc;
}

int qerr__flatquant_deployed_forward(const qerr_block_config *cfg, const qerr_flatquant_folded *f,
                                     const float *const wq[QERR_LIN_COUNT],
                                     qerr_block_cache_f *cache, const float *x, float *y) {
    return deployed_run(cfg, f, wq, cache, x, y, NULL);
}

int qerr__flatquant_deployed_gram(const qerr_block_config *cfg, const qerr_flatquant_folded *f,
                                  const float *const wq[QERR_LIN_COUNT],
                                  qerr_block_cache_f *cache, const float *x, float *y,
                                  double *const gram[QERR_FQB_T]) {
    return deployed_run(cfg, f, wq, cache, x, y, gram);
}
