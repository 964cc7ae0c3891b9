/* The block-level entry of "omniquant" and "cqe" with scope=block: options
 * from the plan, training of one decoder block (lib/train/omniquant_block.c)
 * and the seven standard results (codes, scales, zeros; no extras: LWC, LSI
 * and SDE fold into the weights, so there is no run-time overhead). */
#include "cqe_layer.h"

#include "../train/omniquant_block.h"

#include <string.h>

int qerr__omq_opts_from_plan(const qerr_plan *p, bool cqe, const qerr_block_config *cfg,
                             uint64_t seed, qerr_omq_opts *o) {
    qerr__omq_opts_default(o);
    o->w_bits = (int)qerr__plan_int(p, "bits");
    o->w_group = qerr__plan_int(p, "group_size");
    /* the group must suit every linear's input width */
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        int64_t rows, cols, g;
        qerr__block_linear_shape(cfg, l, &rows, &cols);
        QERR_TRY(qerr__plan_group_size(p, cols, &g));
    }
    o->clip_init = qerr__plan_double(p, "clip_init");
    o->lwc_lr = qerr__plan_double(p, "lwc_lr");
    o->epochs = (int)qerr__plan_int(p, "epochs");
    o->batch = qerr__plan_int(p, "batch");
    o->lookahead = qerr__plan_int(p, "cross_layer") == 1 ? (int)qerr__plan_int(p, "lookahead") : 0;
    o->lambda = qerr__plan_double(p, "lambda");
    o->seed = seed;
    if (cqe) {
        static const int map[] = {QERR_CQE_MASK_DIAG, QERR_CQE_MASK_BAND, QERR_CQE_MASK_BLOCK,
                                  QERR_CQE_MASK_DIAG_BLOCK};
        int c = qerr__plan_choice(p, "mask");
        QERR_CHECK(c >= 0 && c < 4, QERR_E_INVALID_ARG, "cqe: unknown mask");
        o->mask = map[c];
        o->mask_width = qerr__plan_int(p, "mask_width");
        o->mask_block = qerr__plan_int(p, "mask_block");
        o->lr_d = qerr__plan_double(p, "lr");
        o->lwc = qerr__plan_int(p, "lwc") == 1;
    }
    return qerr__omq_opts_check(o);
}

int qerr__omniquant_quantize_block_io(const qerr_ctx *ctx, const qerr_plan *plan,
                                      const qerr_block_config *cfg,
                                      const qerr_block_weights_f *w, const qerr_omq_io *io,
                                      qerr_result *out[QERR_LIN_COUNT]) {
    QERR_CHECK(plan && out && cfg, QERR_E_INVALID_ARG, "omniquant block: NULL plan or output");
    for (int l = 0; l < QERR_LIN_COUNT; l++) out[l] = NULL;
    if (!ctx) ctx = qerr__default_ctx();
    const char *name = qerr_plan_method(plan);
    const bool cqe = name && strcmp(name, "cqe") == 0;
    QERR_CHECK(cqe || (name && strcmp(name, "omniquant") == 0), QERR_E_INVALID_ARG,
               "omniquant block: plan method '%s' is neither omniquant nor cqe",
               name ? name : "(null)");
    QERR_TRY(qerr__block_config_check(cfg));
    qerr_omq_opts o;
    QERR_TRY(qerr__omq_opts_from_plan(plan, cqe, cfg, ctx->seed, &o));
    qerr_omq_block *b;
    QERR_TRY(qerr__omq_train_block(ctx, cfg, w, io, &o, &b));
    int rc = QERR_OK;
    for (int l = 0; l < QERR_LIN_COUNT && rc == QERR_OK; l++) {
        rc = qerr__omq_encode(b, l, &out[l]);
        if (rc != QERR_OK) break;
        qerr__result_set_diag(out[l], "block_mse_init", b->mse_init);
        qerr__result_set_diag(out[l], "block_mse_final", b->mse_final);
        qerr__result_set_diag(out[l], "next_mse_init", b->next_init);
        qerr__result_set_diag(out[l], "next_mse_final", b->next_final);
        qerr__result_set_diag(out[l], "epochs", b->epochs_done);
        qerr__result_set_diag(out[l], "seconds", b->seconds);
    }
    qerr__omq_block_destroy(b);
    if (rc != QERR_OK)
        for (int l = 0; l < QERR_LIN_COUNT; l++) {
            qerr_result_free(out[l]);
            out[l] = NULL;
        }
    return rc;
}

int qerr__omniquant_quantize_block(const qerr_ctx *ctx, const qerr_plan *plan,
                                   const qerr_block_config *cfg, const qerr_block_weights_f *w,
                                   const float *x, int64_t nseq, int64_t seq,
                                   qerr_result *out[QERR_LIN_COUNT]) {
    qerr_omq_io io = {x, x, nseq, seq, 0, 1, {NULL, NULL}};
    return qerr__omniquant_quantize_block_io(ctx, plan, cfg, w, &io, out);
}
