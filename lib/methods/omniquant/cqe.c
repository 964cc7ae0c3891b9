/* CQE / CQE+ layer-wise: OmniQuant's learnable clipping plus the SVD
 * parameterisation W(D) = U (diag(S) + D) V^T with D on a support mask
 * (algorithms.md §4 LSI, §5.3 SDE), trained on tr(E H E^T) / tr(W H W^T).
 * mask=diag is LSI; band/block/diag+block are SDE supports. D starts at 0,
 * so step 0 is exactly RTN with the initial clipping. */
#include "cqe_layer.h"

static const qerr_param_def cqe_params[] = {
    QERR_PDEF_BITS, QERR_PDEF_GROUP_SIZE, QERR_PDEF_RAGGED,
    {"mask", QERR_PARAM_CHOICE, 3, 0, 0, "diag|band|block|diag+block",
     "support of D: diag (LSI), band (|i-j| <= mask_width), block (top-left "
     "mask_block square), diag+block"},
    {"mask_width", QERR_PARAM_INT, 2, 1, 1 << 30, NULL, "half-width of the band mask"},
    {"mask_block", QERR_PARAM_INT, 0, 0, 1 << 30, NULL,
     "side of the top-left block mask; 0 = min(64, rank)"},
    QERR_PDEF_CQE_STEPS,
    {"lr", QERR_PARAM_DOUBLE, 2e-4, 0, 10, NULL, "learning rate of D (LSI's 2e-4)"},
    QERR_PDEF_CQE_LWC_LR,
    {"lwc", QERR_PARAM_BOOL, 1, 0, 1, NULL, "learn the clipping (else fixed at clip_init)"},
    QERR_PDEF_CQE_CLIP_INIT,
    QERR_PDEF_CQE_KEEP_BEST,
    QERR_PDEF_CQE_BLOCK_SCOPE,
};

static int cqe_mask(const qerr_plan *p) {
    static const int map[] = {QERR_CQE_MASK_DIAG, QERR_CQE_MASK_BAND, QERR_CQE_MASK_BLOCK,
                              QERR_CQE_MASK_DIAG_BLOCK};
    int c = qerr__plan_choice(p, "mask");
    return c >= 0 && c < 4 ? map[c] : -2;
}

/* mask_block=0 means min(64, rank); an explicit size larger than the rank is
 * an error (checked by qerr__cqe_check_mask). */
static int64_t cqe_block(const qerr_plan *p, int64_t rows, int64_t cols) {
    int64_t k = qerr__plan_int(p, "mask_block"), r = rows < cols ? rows : cols;
    return k > 0 ? k : (r < 64 ? r : 64);
}

static int cqe_validate(const qerr_plan *p, int64_t rows, int64_t cols) {
    return qerr__cqe_check_mask(cqe_mask(p), qerr__plan_int(p, "mask_width"),
                                cqe_block(p, rows, cols), rows, cols);
}

static int cqe_quantize(const qerr_method_call *call, qerr_result **out) {
    const qerr_plan *p = call->plan;
    QERR_TRY(qerr__cqe_refuse_block_scope(p));
    int64_t g;
    QERR_TRY(qerr__plan_group_size(p, call->cols, &g));
    qerr_cqe_opts o = {
        .bits = (int)qerr__plan_int(p, "bits"),
        .group = g,
        .mask = cqe_mask(p),
        .width = qerr__plan_int(p, "mask_width"),
        .block = cqe_block(p, call->rows, call->cols),
        .lsi_vector = true,
        .lwc = qerr__plan_int(p, "lwc") == 1,
        .steps = qerr__plan_int(p, "steps"),
        .lr_clip = qerr__plan_double(p, "lwc_lr"),
        .lr_d = qerr__plan_double(p, "lr"),
        .clip_init = qerr__plan_double(p, "clip_init"),
        .keep_best = qerr__plan_int(p, "keep_best") == 1,
    };
    return qerr__cqe_run(call, &o, "cqe", out);
}

const qerr_method qerr__cqe_method = {
    .version = QERR_METHOD_VERSION,
    .name = "cqe",
    .summary = "CQE+ layer-wise: learnable clipping + SVD increment D on a mask (LSI = diag, SDE)",
    .params = cqe_params,
    .nparams = (int)(sizeof cqe_params / sizeof cqe_params[0]),
    .needs_calib = true,
    .validate = cqe_validate,
    .quantize = cqe_quantize,
    .quantize_block = qerr__omq_block_slot, /* scope=block (omniquant_block_slot.c) */
    .block_scope = qerr__omq_scope_is_block,
};
