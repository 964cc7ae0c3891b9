/* OmniQuant, layer-wise: learnable weight clipping (two sigmoid factors per
 * (row, group), init 4.0) on OmniQuant's asymmetric grid, trained by AdamW
 * on tr(E H E^T) / tr(W H W^T) with the STE gradient (algorithms.md §3.2,
 * §3.5). The block-wise version with LET lives on the train engine. */
#include "cqe_layer.h"

static const qerr_param_def omniquant_params[] = {
    QERR_PDEF_BITS, QERR_PDEF_GROUP_SIZE, QERR_PDEF_RAGGED,
    QERR_PDEF_CQE_STEPS,
    QERR_PDEF_CQE_LWC_LR,
    QERR_PDEF_CQE_CLIP_INIT,
    QERR_PDEF_CQE_KEEP_BEST,
    QERR_PDEF_CQE_BLOCK_SCOPE,
};

static int omniquant_quantize(const qerr_method_call *call, qerr_result **out) {
    const qerr_plan *p = call->plan;
    QERR_TRY(qerr__cqe_refuse_block_scope(p));
    int64_t g;
    QERR_TRY(qerr__plan_group_size(p, call->cols, &g));
    qerr_cqe_opts o = {
        .bits = (int)qerr__plan_int(p, "bits"),
        .group = g,
        .mask = QERR_CQE_MASK_NONE,
        .lwc = true,
        .steps = qerr__plan_int(p, "steps"),
        .lr_clip = qerr__plan_double(p, "lwc_lr"),
        .clip_init = qerr__plan_double(p, "clip_init"),
        .keep_best = qerr__plan_int(p, "keep_best") == 1,
    };
    return qerr__cqe_run(call, &o, "omniquant", out);
}

const qerr_method qerr__omniquant_method = {
    .version = QERR_METHOD_VERSION,
    .name = "omniquant",
    .summary = "OmniQuant learnable weight clipping, trained on the layer objective (needs H)",
    .params = omniquant_params,
    .nparams = (int)(sizeof omniquant_params / sizeof omniquant_params[0]),
    .needs_calib = true,
    .quantize = omniquant_quantize,
    .quantize_block = qerr__omq_block_slot, /* scope=block (omniquant_block_slot.c) */
    .block_scope = qerr__omq_scope_is_block,
};
