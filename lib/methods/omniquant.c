/* OmniQuant, layer-wise: learnable weight clipping (two sigmoid factors per
 * (row, group), init 4.0) on OmniQuant's asymmetric grid, trained by AdamW
 * on tr(E H E^T) / tr(W H W^T) with the STE gradient (algorithms.md §3.2,
 * §3.5). The block-wise version with LET lives on the train engine. */
#include "cqe_layer.h"

static const qerr_param_def omniquant_params[] = {
    QERR_PDEF_BITS, QERR_PDEF_GROUP_SIZE, QERR_PDEF_RAGGED,
    {"steps", QERR_PARAM_INT, 200, 0, 100000, NULL,
     "full-batch AdamW steps on the layer objective"},
    {"lwc_lr", QERR_PARAM_DOUBLE, 1e-2, 0, 10, NULL, "learning rate of the clipping parameters"},
    {"clip_init", QERR_PARAM_DOUBLE, 4.0, -20, 20, NULL,
     "initial raw clip parameter (sigmoid(4) = 0.982 of max and min)"},
    {"keep_best", QERR_PARAM_BOOL, 1, 0, 1, NULL,
     "fold the step with the lowest true layer objective (else the last)"},
    {"scope", QERR_PARAM_CHOICE, 0, 0, 0, "layer|block",
     "layer: train on tr(E H E^T) per weight (qerr_quantize); block: train whole decoder blocks "
     "on the block MSE (model pipeline, qerr__omniquant_quantize_block)"},
    {"cross_layer", QERR_PARAM_BOOL, 0, 0, 1, NULL,
     "scope=block: add lambda x the error of the float next block(s) on this block's output"},
    {"lookahead", QERR_PARAM_INT, 1, 1, 2, NULL, "scope=block: next blocks in the cross-layer loss"},
    {"lambda", QERR_PARAM_DOUBLE, 1.0, 0, 1000, NULL, "scope=block: weight of the look-ahead terms"},
    {"epochs", QERR_PARAM_INT, 20, 0, 100000, NULL, "scope=block: training epochs per block"},
    {"batch", QERR_PARAM_INT, 1, 1, 1 << 20, NULL, "scope=block: calibration sequences per step"},
};

static int omniquant_quantize(const qerr_method_call *call, qerr_result **out) {
    const qerr_plan *p = call->plan;
    if (qerr__plan_choice(p, "scope") == 1)
        return qerr__fail(QERR_E_UNSUPPORTED,
                          "%s scope=block trains whole decoder blocks: use qerr_model_quantize, "
                          "not qerr_quantize on one weight", qerr_plan_method(p));
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
