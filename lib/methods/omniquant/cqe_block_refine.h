/* refine=quantease of block-wise omniquant/cqe (cqe_block_refine.c). */
#ifndef QERR_CQE_BLOCK_REFINE_H
#define QERR_CQE_BLOCK_REFINE_H

#include "../../train/train.h"

/* Replace each out[l] (an on-grid result of linear l of block w) by QuantEase
 * sweeps from it on tr((T - Q) H (T - Q)^T), T = target[l], H from the
 * quantized-path inputs x_q [nseq*seq, hidden], true-sequential inside the
 * block. Grids stay fixed; from_w: Q starts at T with QuantEase's relaxed
 * sweeps, else at out[l] with rounded sweeps only. On failure out keeps valid
 * results (some refined, some not) for the caller to free. */
int qerr__omq_refine_block(const qerr_ctx *ctx, const qerr_block_config *cfg,
                           const qerr_block_weights_f *w, const float *const target[QERR_LIN_COUNT],
                           const float *x_q, int64_t nseq, int64_t seq, int64_t iters,
                           bool from_w, qerr_result *out[QERR_LIN_COUNT]);

#endif /* QERR_CQE_BLOCK_REFINE_H */
