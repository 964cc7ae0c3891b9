/* The version-2 block slot of "omniquant" and "cqe": with scope=block the
 * model pipeline hands each decoder block to qerr__omniquant_quantize_block_io
 * (lib/methods/omniquant/cqe_block.c), with the quantized-path inputs x_q, the
 * float-path inputs x_fp and the next blocks' float weights for the
 * cross-layer loss. */
#include "../method.h"

#include "omniquant_block.h"

bool qerr__omq_scope_is_block(const qerr_plan *plan) {
    return qerr__plan_choice(plan, "scope") == 1;
}

int qerr__omq_block_slot(const qerr_block_call *c, qerr_result *out[QERR_LIN_COUNT]) {
    qerr_omq_io io = {c->x_q, c->x_fp, c->nseq, c->seq, c->layer, c->layers,
                      {c->next[0], c->next[1]}};
    return qerr__omniquant_quantize_block_io(c->ctx, c->plan, c->cfg, c->w, &io, out);
}
