/* refine=quantease for block-wise omniquant/cqe: after the block is trained,
 * QuantEase coordinate descent on each linear's own layer objective
 * tr((W - Q) H (W - Q)^T), with H = X^T X of what the linear sees on the
 * quantized path, over the learned (LWC, W(D)) grids. Either from W with
 * QuantEase's relaxed sweeps (refine_start=w), or from the learned rounding
 * with rounded sweeps only, which never raises the layer objective above the
 * learned start's (refine_start=learned). True-sequential inside the block:
 * stage t (q/k/v, o, gate/up, down) takes H from the block whose earlier
 * stages already run their refined weights. */
#include "cqe_block_refine.h"

#include "../quantease.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

enum { REFINE_STAGES = 4 };
static const int stage_of[QERR_LIN_COUNT] = {0, 0, 0, 1, 2, 2, 3};
static const int site_of[REFINE_STAGES] = {QERR_SITE_ATTN_IN, QERR_SITE_O_IN, QERR_SITE_MLP_IN,
                                           QERR_SITE_DOWN_IN};

/* gram (+=) X^T X over the calibration inputs of stage t's linears, the
 * block running the weights wq. Upper triangle, then mirrored. */
static int stage_gram(const qerr_block_config *cfg, const qerr_block_weights_f *w,
                      const float *const wq[QERR_LIN_COUNT], const float *x_q, int64_t nseq,
                      int64_t seq, int t, double *gram, int64_t n) {
    const int64_t d = cfg->hidden, nb = nseq < 4 ? nseq : 4;
    float *y = qerr__malloc2((size_t)(nb * seq), (size_t)d * sizeof(float));
    float *part = qerr__malloc2((size_t)n, (size_t)n * sizeof(float));
    int rc = y && part ? QERR_OK : qerr__fail(QERR_E_NOMEM, "refine: out of memory for H (%lld)",
                                              (long long)n);
    qerr_block_weights_f bw = *w;
    for (int l = 0; l < QERR_LIN_COUNT; l++) bw.w[l] = wq[l];
    qerr_block_cache_f *cache = NULL;
    for (int64_t s0 = 0; s0 < nseq && rc == QERR_OK; s0 += nb) {
        const int64_t m = nseq - s0 < nb ? nseq - s0 : nb;
        rc = qerr__block_cache_fit_f(cfg, m, seq, &cache); /* last chunk may be shorter */
        if (rc != QERR_OK) break;
        rc = qerr__block_forward_f(cache, &bw, NULL, x_q + s0 * seq * d, y);
        if (rc != QERR_OK) break;
        /* float32 SYRK per chunk, summed in float64 (as qerr_calib does) */
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, (int)(m * seq), 1.0f,
                    cache->act[site_of[t]], (int)n, 0.0f, part, (int)n);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = i; j < n; j++) gram[i * n + j] += (double)part[i * n + j];
    }
    for (int64_t i = 0; rc == QERR_OK && i < n; i++)
        for (int64_t j = 0; j < i; j++) gram[i * n + j] = gram[j * n + i];
    qerr__block_cache_free_f(cache);
    free(part);
    free(y);
    return rc;
}

int qerr__omq_refine_block(const qerr_ctx *ctx, const qerr_block_config *cfg,
                           const qerr_block_weights_f *w, const float *const target[QERR_LIN_COUNT],
                           const float *x_q, int64_t nseq, int64_t seq, int64_t iters,
                           bool from_w, qerr_result *out[QERR_LIN_COUNT]) {
    QERR_CHECK(nseq >= 1 && seq >= 1 && x_q, QERR_E_INVALID_ARG, "refine: no calibration data");
    const float *wq[QERR_LIN_COUNT];
    float *deq[QERR_LIN_COUNT] = {0};
    for (int l = 0; l < QERR_LIN_COUNT; l++) wq[l] = w->w[l];
    int rc = QERR_OK;
    for (int t = 0; t < REFINE_STAGES && rc == QERR_OK; t++) {
        const int64_t n = qerr__block_site_cols(cfg, site_of[t]);
        double *gram = qerr__calloc((size_t)n, (size_t)n * sizeof(double));
        rc = gram ? stage_gram(cfg, w, wq, x_q, nseq, seq, t, gram, n)
                  : qerr__fail(QERR_E_NOMEM, "refine: out of memory for H (%lld)", (long long)n);
        for (int l = 0; l < QERR_LIN_COUNT && rc == QERR_OK; l++) {
            if (stage_of[l] != t) continue;
            int64_t rows, cols;
            qerr__block_linear_shape(cfg, l, &rows, &cols);
            qerr_result *r = NULL;
            rc = qerr__quantease_refine(ctx, target[l], rows, cols, gram, nseq * seq, out[l],
                                        iters, from_w, &r);
            if (rc != QERR_OK) break;
            double start = 0, last = 0;
            qerr_result_diag(r, "objective_start", &start);
            qerr_result_diag(r, "objective_last", &last);
            /* keep the learned result's diagnostics, add the refinement's */
            for (int k = 0; k < qerr_result_diag_count(out[l]); k++) {
                const char *name;
                double v;
                if (qerr_result_diag_at(out[l], k, &name, &v) == QERR_OK)
                    qerr__result_set_diag(r, name, v);
            }
            qerr__result_set_diag(r, "refine_objective_start", start);
            qerr__result_set_diag(r, "refine_objective_final", last);
            qerr_result_free(out[l]);
            out[l] = r;
            deq[l] = qerr__malloc2((size_t)(rows * cols), sizeof(float));
            if (!deq[l]) {
                rc = qerr__fail(QERR_E_NOMEM, "refine: out of memory");
                break;
            }
            qerr__result_dequant(r, deq[l]);
            wq[l] = deq[l];
        }
        free(gram);
    }
    for (int l = 0; l < QERR_LIN_COUNT; l++) free(deq[l]);
    return rc;
}
