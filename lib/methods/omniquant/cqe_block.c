/* The block-level entry of "omniquant" and "cqe" with scope=block: options
 * from the plan, training of one decoder block (lib/methods/omniquant/omniquant_block.c)
 * and the seven standard results (codes, scales, zeros; no extras: LWC, LSI
 * and SDE fold into the weights, so there is no run-time overhead; with
 * a_bits < 16 the LET scales fold too and q_proj / gate_proj carry the folded
 * norms for the per-token activation quantizers of the deployed block). */
#include "cqe_layer.h"

#include "omniquant_block.h"
#include "cqe_block_refine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int qerr__omq_opts_from_plan(const qerr_plan *p, bool cqe, const qerr_block_config *cfg,
                             uint64_t seed, qerr_omq_opts *o) {
    qerr__omq_opts_default(o);
    o->w_bits = (int)qerr__plan_int(p, "bits");
    o->w_group = qerr__plan_int(p, "group_size");
    /* the group must divide every linear's input width, unless ragged_groups=1:
     * then the last group of a row is shorter, cut the same way by the fake
     * quantizer, the clip pairs and qerr__cqe_encode */
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        int64_t rows, cols, g;
        qerr__block_linear_shape(cfg, l, &rows, &cols);
        int rc = qerr__plan_group_size(p, cols, &g);
        if (rc != QERR_OK) {
            char why[400]; /* copied: qerr__fail rewrites the message buffer */
            snprintf(why, sizeof why, "%s", qerr_last_error());
            return qerr__fail(rc, "%s scope=block: %s: %s",
                              cqe ? "cqe" : "omniquant", qerr__lin_names[l], why);
        }
    }
    o->clip_init = qerr__plan_double(p, "clip_init");
    o->lwc_lr = qerr__plan_double(p, "lwc_lr");
    o->epochs = (int)qerr__plan_int(p, "epochs");
    o->batch = qerr__plan_int(p, "batch");
    o->lookahead = qerr__plan_int(p, "cross_layer") == 1 ? (int)qerr__plan_int(p, "lookahead") : 0;
    o->lambda = qerr__plan_double(p, "lambda");
    o->aug_loss = qerr__plan_int(p, "aug_loss") == 1;
    o->seed = seed;
    o->a_bits = (int)qerr__plan_int(p, "a_bits");
    o->let = qerr__plan_int(p, "let") == 1 && o->a_bits < 16; /* weight-only: LWC alone */
    o->let_lr = qerr__plan_double(p, "let_lr");
    o->let_alpha = qerr__plan_double(p, "let_alpha");
    o->let_init_best = qerr__plan_choice(p, "let_init") == 0;
    if (o->a_bits < 16) /* LET scales fold into norms and weights, not biases */
        QERR_TRY(qerr__block_refuse_extras(cfg, cqe ? "cqe a_bits < 16" : "omniquant a_bits < 16"));
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

/* refine=quantease: QuantEase on each linear's layer objective over the
 * learned grids (cqe_block_refine.c), from W or from the learned rounding. */
static int refine_results(const qerr_ctx *ctx, const qerr_plan *plan,
                          const qerr_block_config *cfg, const qerr_block_weights_f *w,
                          const qerr_omq_io *io, qerr_result *out[QERR_LIN_COUNT]) {
    return qerr__omq_refine_block(ctx, cfg, w, w->w, io->x_q, io->nseq, io->seq,
                                  qerr__plan_int(plan, "refine_iters"),
                                  qerr__plan_choice(plan, "refine_start") == 0, out);
}

/* Weight-activation runs: the folded norms travel with q_proj and gate_proj
 * (lib/pipeline/deployed.c builds the W4A4 run-time state from them). */
static int let_extras(const qerr_omq_block *b, const qerr_block_weights_f *w,
                      qerr_result *out[QERR_LIN_COUNT]) {
    qerr_flatquant_folded f;
    QERR_TRY(qerr__omq_let_folded(b, w, &f));
    const int64_t sh[1] = {b->cfg.hidden};
    int rc = qerr__result_add_extra(out[QERR_LIN_Q], "let.input_norm", 1, sh, f.ln1);
    if (rc == QERR_OK)
        rc = qerr__result_add_extra(out[QERR_LIN_GATE], "let.post_attention_norm", 1, sh, f.ln2);
    qerr__flatquant_folded_free(&f);
    return rc;
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
    QERR_CHECK(o.a_bits == 16 || qerr__plan_choice(plan, "refine") != 1, QERR_E_UNSUPPORTED,
               "omniquant block: refine=quantease is weight-only (a_bits=%d)", o.a_bits);
    qerr_omq_block *b;
    QERR_TRY(qerr__omq_train_block(ctx, cfg, w, io, &o, &b));
    int rc = QERR_OK;
    for (int l = 0; l < QERR_LIN_COUNT && rc == QERR_OK; l++) {
        rc = b->act_q ? qerr__omq_let_encode(b, l, &out[l]) : qerr__omq_encode(b, l, &out[l]);
        if (rc != QERR_OK) break;
        qerr__result_set_diag(out[l], "block_mse_init", b->mse_init);
        qerr__result_set_diag(out[l], "block_mse_final", b->mse_final);
        qerr__result_set_diag(out[l], "next_mse_init", b->next_init);
        qerr__result_set_diag(out[l], "next_mse_final", b->next_final);
        qerr__result_set_diag(out[l], "epochs", b->epochs_done);
        qerr__result_set_diag(out[l], "seconds", b->seconds);
    }
    if (rc == QERR_OK && b->act_q) rc = let_extras(b, w, out);
    if (rc == QERR_OK && qerr__plan_choice(plan, "refine") == 1)
        rc = refine_results(ctx, plan, cfg, w, io, out);
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
