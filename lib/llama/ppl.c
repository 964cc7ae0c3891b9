/* qerr_model_perplexity: floor(count / ctx_len) non-overlapping windows,
 * tokens 1..ctx_len-1 of each scored given their prefix in the window,
 * exp(mean NLL). Windows go through the model in batches, one decoder layer
 * at a time over the whole batch, so each projection is one large GEMM. */
#include "model.h"

#include <math.h>
#include <stdlib.h>

/* Hidden states per batch, in floats (~64 MB), and logits per block. */
#define BATCH_FLOATS ((int64_t)16 << 20)
#define LOGIT_FLOATS ((int64_t)4 << 20)

/* Sum of -log p(next token) over rows whose successor is in the window. */
static int score_batch(const qerr_model *m, float *X, const uint32_t *tok, int64_t nw,
                       int64_t T, float *logits, int64_t block, double *nll) {
    const int64_t V = m->cfg.vocab, d = m->cfg.hidden, R = nw * T;
    for (int64_t r0 = 0; r0 < R; r0 += block) {
        const int64_t n = R - r0 < block ? R - r0 : block;
        QERR_TRY(qerr__head(m, X + r0 * d, n, logits));
        for (int64_t i = 0; i < n; i++) {
            const int64_t r = r0 + i;
            if (r % T == T - 1) continue; /* last token of a window predicts nothing */
            const float *z = logits + i * V;
            float mx = z[0];
            for (int64_t k = 1; k < V; k++) mx = z[k] > mx ? z[k] : mx;
            double sum = 0.0;
            for (int64_t k = 0; k < V; k++) sum += exp((double)(z[k] - mx));
            *nll += log(sum) - (double)(z[tok[r + 1]] - mx);
        }
    }
    return QERR_OK;
}

int qerr_model_perplexity(qerr_ctx *ctx, const qerr_model *m, const uint32_t *tokens,
                          int64_t count, int64_t ctx_len, int64_t max_windows, double *ppl,
                          double *mean_nll, int64_t *scored) {
    static const char fn[] = "qerr_model_perplexity";
    QERR_CHECK(m && tokens, QERR_E_INVALID_ARG, "%s: model or tokens is NULL", fn);
    QERR_CHECK(ctx_len >= 2 && ctx_len <= (1 << 20), QERR_E_RANGE,
               "%s: ctx_len=%lld is outside 2..2^20", fn, (long long)ctx_len);
    QERR_CHECK(count >= ctx_len, QERR_E_RANGE, "%s: %lld tokens are fewer than ctx_len=%lld", fn,
               (long long)count, (long long)ctx_len);
    int64_t nwin = count / ctx_len;
    if (max_windows > 0 && max_windows < nwin) nwin = max_windows;
    for (int64_t i = 0; i < nwin * ctx_len; i++)
        QERR_CHECK(tokens[i] < (uint64_t)m->cfg.vocab, QERR_E_RANGE,
                   "%s: token %lld has id %u, outside the vocabulary of %lld", fn, (long long)i,
                   tokens[i], (long long)m->cfg.vocab);
    const int64_t d = m->cfg.hidden, V = m->cfg.vocab;
    int64_t bw = BATCH_FLOATS / (ctx_len * d);
    if (bw < 1) bw = 1;
    if (bw > nwin) bw = nwin;
    int64_t block = LOGIT_FLOATS / V;
    if (block < 1) block = 1;
    float *X = qerr__malloc2((size_t)(bw * ctx_len), (size_t)d * sizeof(float));
    float *logits = qerr__malloc2((size_t)block, (size_t)V * sizeof(float));
    int rc = (X && logits) ? QERR_OK : qerr__fail(QERR_E_NOMEM, "%s: out of memory", fn);
    double nll = 0.0;
    for (int64_t w0 = 0; rc == QERR_OK && w0 < nwin; w0 += bw) {
        const int64_t n = nwin - w0 < bw ? nwin - w0 : bw;
        const uint32_t *tok = tokens + w0 * ctx_len;
        rc = qerr__embed(m, tok, n * ctx_len, X);
        for (int64_t l = 0; rc == QERR_OK && l < m->cfg.layers; l++)
            rc = qerr__model_layer_run(ctx, m, l, X, n, ctx_len); /* float or deployed */
        if (rc == QERR_OK) rc = score_batch(m, X, tok, n, ctx_len, logits, block, &nll);
        if (rc == QERR_OK) {
            rc = qerr__progress(ctx ? ctx : qerr__default_ctx(), "perplexity",
                                (double)(w0 + n) / (double)nwin);
        }
    }
    free(X);
    free(logits);
    QERR_TRY(rc);
    const int64_t ns = nwin * (ctx_len - 1);
    const double mean = nll / (double)ns;
    if (ppl) *ppl = exp(mean);
    if (mean_nll) *mean_nll = mean;
    if (scored) *scored = ns;
    qerr__clear_error();
    return QERR_OK;
}
