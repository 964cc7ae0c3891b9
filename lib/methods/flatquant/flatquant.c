/* FlatQuant (Sun et al., arXiv 2410.09426; algorithms.md §6) as a method:
 * the plan keys, and the block-level entry point that trains one decoder
 * block's transforms (lib/methods/flatquant/flatquant_block.c), folds them in float64 and
 * rounds every linear weight of the block to the FlatQuant symmetric grid
 * (weight_quantizer=rtn) or with GPTQ on H of its transformed input (gptq).
 *
 * FlatQuant is block-wise: it cannot quantize one weight matrix alone, so the
 * layer-level `quantize` slot answers QERR_E_UNSUPPORTED. The model pipeline
 * calls the `quantize_block` slot (qerr__flatquant_quantize_block) once per
 * decoder block instead; see docs/model.md, "Block-wise plans". */
#include "../method.h"

#include "flatquant.h"

#include <stdlib.h>
#include <string.h>

static const qerr_param_def flatquant_params[] = {
    QERR_PDEF_BITS,
    QERR_PDEF_GROUP_SIZE,
    {"a_bits", QERR_PARAM_INT, 16, 2, 16, NULL,
     "bits of the per-token activation quantizers at the four linear inputs (16 = none, W*A16)"},
    {"kv_bits", QERR_PARAM_INT, 16, 2, 16, NULL,
     "bits of the K (after RoPE) and V quantizers, asymmetric per (token, head) (16 = none)"},
    {"lwc", QERR_PARAM_BOOL, 1, 0, 1, NULL, "learnable weight clipping per output channel"},
    {"lac", QERR_PARAM_BOOL, 1, 0, 1, NULL, "learnable activation clipping per quantizer"},
    {"diag", QERR_PARAM_BOOL, 1, 0, 1, NULL, "learnable per-channel scales (folded into norms)"},
    {"diag_alpha", QERR_PARAM_DOUBLE, 0.3, 0, 1, NULL, "SmoothQuant-style init exponent of the scales"},
    {"epochs", QERR_PARAM_INT, 15, 0, 100000, NULL, "training epochs per block"},
    {"batch", QERR_PARAM_INT, 4, 1, 1 << 20, NULL, "calibration sequences per step"},
    {"lr", QERR_PARAM_DOUBLE, 5e-3, 0, 1, NULL, "AdamW learning rate of transforms and scales"},
    {"clip_lr", QERR_PARAM_DOUBLE, 5e-2, 0, 10, NULL, "AdamW learning rate of the clip factors"},
    {"weight_decay", QERR_PARAM_DOUBLE, 0.01, 0, 1, NULL, "AdamW weight decay (torch default)"},
    {"loss_norm", QERR_PARAM_BOOL, 1, 0, 1, NULL, "train on loss / loss.detach() as the authors"},
    {"init", QERR_PARAM_CHOICE, 0, 0, 0, "random|identity",
     "initial Kronecker factors: random orthogonal (the paper) or the identity"},
    {"weight_quantizer", QERR_PARAM_CHOICE, 0, 0, 0, "rtn|gptq",
     "how the folded weights are rounded: RTN on the FlatQuant grid, or GPTQ (symmetric, "
     "damp 0.01) with H of each weight's transformed input, true-sequential in the block"},
};

/* The trainer's options from a flatquant plan; the seed comes from ctx. */
int qerr__flatquant_opts_from_plan(const qerr_plan *p, uint64_t seed, qerr_flatquant_opts *o) {
    qerr__flatquant_opts_default(o);
    o->w_bits = (int)qerr__plan_int(p, "bits");
    o->w_group = qerr__plan_int(p, "group_size");
    o->a_bits = (int)qerr__plan_int(p, "a_bits");
    o->kv_bits = (int)qerr__plan_int(p, "kv_bits");
    o->lwc = qerr__plan_int(p, "lwc") == 1;
    o->lac = qerr__plan_int(p, "lac") == 1;
    o->diag = qerr__plan_int(p, "diag") == 1;
    o->diag_alpha = qerr__plan_double(p, "diag_alpha");
    o->epochs = (int)qerr__plan_int(p, "epochs");
    o->batch = qerr__plan_int(p, "batch");
    o->lr = qerr__plan_double(p, "lr");
    o->clip_lr = qerr__plan_double(p, "clip_lr");
    o->weight_decay = qerr__plan_double(p, "weight_decay");
    o->loss_norm = qerr__plan_int(p, "loss_norm") == 1;
    o->identity_init = qerr__plan_choice(p, "init") == 1;
    o->seed = seed;
    QERR_CHECK(o->a_bits <= 8 || o->a_bits == 16, QERR_E_RANGE,
               "flatquant: a_bits=%d must be in [2, 8] or 16 (no activation quantization)",
               o->a_bits);
    return qerr__flatquant_opts_check(o);
}

static int add_transform(qerr_result *r, const qerr_flatquant_block *b,
                         const qerr_flatquant_folded *f, int t) {
    int64_t s1[2] = {b->n1[t], b->n1[t]}, s2[2] = {b->n2[t], b->n2[t]}, s3[1] = {2};
    float clip[2] = {(float)qerr__sigmoid(f->act_clip[t][0]),
                     (float)qerr__sigmoid(f->act_clip[t][1])};
    QERR_TRY(qerr__result_add_extra(r, "flatquant.p1", 2, s1, f->p1[t]));
    QERR_TRY(qerr__result_add_extra(r, "flatquant.p2", 2, s2, f->p2[t]));
    return qerr__result_add_extra(r, "flatquant.act_clip", 1, s3, clip);
}

/* GPTQ of one folded weight with H = gram (n x n, upper triangle filled):
 * symmetric grid, flatquant's bits and group size, damp 0.01, no act order. */
static int gptq_folded(const qerr_ctx *ctx, const qerr_flatquant_opts *o, const float *w,
                       int64_t rows, int64_t cols, double *gram, int64_t nsamples,
                       qerr_result **out) {
    extern const qerr_method qerr__gptq_method;
    for (int64_t i = 0; i < cols; i++) /* GPTQ wants the full symmetric H */
        for (int64_t j = 0; j < i; j++) gram[i * cols + j] = gram[j * cols + i];
    qerr_plan *gp;
    QERR_TRY(qerr_plan_create(&gp, "gptq"));
    int64_t g = o->w_group > 0 && o->w_group < cols ? o->w_group : -1;
    int rc = qerr_plan_set_int(gp, "bits", o->w_bits);
    if (rc == QERR_OK) rc = qerr_plan_set_int(gp, "group_size", g);
    if (rc == QERR_OK && g > 0 && cols % g) rc = qerr_plan_set_int(gp, "ragged_groups", 1);
    if (rc == QERR_OK) rc = qerr_plan_set_int(gp, "symmetric", 1);
    if (rc == QERR_OK) rc = qerr_plan_set_int(gp, "act_order", 0);
    if (rc == QERR_OK) rc = qerr_plan_set_double(gp, "damp", 0.01);
    if (rc == QERR_OK) {
        qerr_method_call call = {ctx, gp, w, rows, cols, gram, nsamples, NULL};
        rc = qerr__gptq_method.quantize(&call, out);
    }
    qerr_plan_free(gp);
    return rc;
}

/* GPTQ of the folded weights, true-sequential inside the block: stage t
 * (q/k/v, o, gate/up, down) takes H from the deployed block whose earlier
 * stages already run their quantized weights and later ones the folded float
 * weights, fed with the block's calibration inputs x. */
static int gptq_block(const qerr_ctx *ctx, const qerr_block_config *cfg,
                      const qerr_flatquant_opts *o, const qerr_flatquant_folded *f,
                      const float *x, int64_t nseq, int64_t seq,
                      qerr_result *out[QERR_LIN_COUNT]) {
    static const int stage_of[QERR_LIN_COUNT] = {0, 0, 0, 1, 2, 2, 3};
    const float *wq[QERR_LIN_COUNT];
    float *deq[QERR_LIN_COUNT] = {0};
    for (int l = 0; l < QERR_LIN_COUNT; l++) wq[l] = f->w[l];
    const int64_t nb = nseq < o->batch ? nseq : o->batch, d = cfg->hidden;
    float *y = qerr__malloc2((size_t)(nb * seq), (size_t)d * sizeof(float));
    QERR_CHECK(y, QERR_E_NOMEM, "flatquant gptq: out of memory");
    qerr_block_cache_f *cache = NULL;
    int rc = QERR_OK;
    for (int t = 0; t < QERR_FQB_T && rc == QERR_OK; t++) {
        int64_t rows, n = 0;
        for (int l = 0; l < QERR_LIN_COUNT; l++)
            if (stage_of[l] == t) qerr__block_linear_shape(cfg, l, &rows, &n);
        double *gram[QERR_FQB_T] = {0};
        gram[t] = qerr__malloc2((size_t)n, (size_t)n * sizeof(double));
        if (gram[t]) memset(gram[t], 0, (size_t)(n * n) * sizeof(double));
        if (!gram[t]) {
            rc = qerr__fail(QERR_E_NOMEM, "flatquant gptq: out of memory for H (%lld)",
                            (long long)n);
            break;
        }
        for (int64_t s0 = 0; s0 < nseq && rc == QERR_OK; s0 += nb) {
            const int64_t m = nseq - s0 < nb ? nseq - s0 : nb;
            rc = qerr__block_cache_fit_f(cfg, m, seq, &cache); /* last chunk may be shorter */
            if (rc != QERR_OK) break;
            rc = qerr__flatquant_deployed_gram(cfg, f, wq, cache, x + s0 * seq * d, y, gram);
        }
        for (int l = 0; l < QERR_LIN_COUNT && rc == QERR_OK; l++) {
            if (stage_of[l] != t) continue;
            int64_t r, c;
            qerr__block_linear_shape(cfg, l, &r, &c);
            rc = gptq_folded(ctx, o, f->w[l], r, c, gram[t], nseq * seq, &out[l]);
            if (rc != QERR_OK) break;
            deq[l] = qerr__malloc2((size_t)(r * c), sizeof(float));
            if (!deq[l]) {
                rc = qerr__fail(QERR_E_NOMEM, "flatquant gptq: out of memory");
                break;
            }
            qerr__result_dequant(out[l], deq[l]);
            wq[l] = deq[l];
        }
        free(gram[t]);
    }
    qerr__block_cache_free_f(cache);
    free(y);
    for (int l = 0; l < QERR_LIN_COUNT; l++) free(deq[l]);
    return rc;
}

int qerr__flatquant_quantize_block(const qerr_ctx *ctx, const qerr_plan *plan,
                                   const qerr_block_config *cfg, const qerr_block_weights_f *w,
                                   const float *x, int64_t nseq, int64_t seq,
                                   qerr_result *out[QERR_LIN_COUNT]) {
    QERR_CHECK(plan && out, QERR_E_INVALID_ARG, "flatquant: NULL plan or output");
    for (int l = 0; l < QERR_LIN_COUNT; l++) out[l] = NULL;
    if (!ctx) ctx = qerr__default_ctx();
    QERR_TRY(qerr__block_refuse_extras(cfg, "flatquant"));
    qerr_flatquant_opts o;
    QERR_TRY(qerr__flatquant_opts_from_plan(plan, ctx->seed, &o));
    double t0 = qerr__now();
    qerr_flatquant_block *b;
    QERR_TRY(qerr__flatquant_train_block(ctx, cfg, w, x, nseq, seq, &o, &b));
    qerr_flatquant_folded f;
    int rc = qerr__flatquant_fold(b, w, &f);
    if (rc != QERR_OK) {
        qerr__flatquant_block_free(b);
        return rc;
    }
    const int64_t sh[1] = {cfg->hidden};
    const bool use_gptq = qerr__plan_choice(plan, "weight_quantizer") == 1;
    if (use_gptq) rc = gptq_block(ctx, cfg, &o, &f, x, nseq, seq, out);
    for (int l = 0; l < QERR_LIN_COUNT && rc == QERR_OK; l++) {
        int64_t rows, cols;
        qerr__block_linear_shape(cfg, l, &rows, &cols);
        if (!use_gptq) rc = qerr__flatquant_rtn(f.w[l], rows, cols, o.w_bits, o.w_group, &out[l]);
        if (rc != QERR_OK) break;
        qerr_result *r = out[l];
        /* the online transform and the folded norm travel with the first
         * consumer of each input space */
        if (l == QERR_LIN_Q) {
            rc = add_transform(r, b, &f, 0);
            if (rc == QERR_OK) rc = qerr__result_add_extra(r, "flatquant.input_norm", 1, sh, f.ln1);
        } else if ((l == QERR_LIN_K || l == QERR_LIN_V) && o.kv_bits < 16) {
            int v = l == QERR_LIN_V;
            int64_t s2[1] = {2};
            float clip[2] = {(float)qerr__sigmoid(f.kv_clip[v][0]),
                             (float)qerr__sigmoid(f.kv_clip[v][1])};
            rc = qerr__result_add_extra(r, "flatquant.kv_clip", 1, s2, clip);
        } else if (l == QERR_LIN_O) {
            rc = add_transform(r, b, &f, 1);
        } else if (l == QERR_LIN_GATE) {
            rc = add_transform(r, b, &f, 2);
            if (rc == QERR_OK)
                rc = qerr__result_add_extra(r, "flatquant.post_attention_norm", 1, sh, f.ln2);
        } else if (l == QERR_LIN_DOWN) {
            rc = add_transform(r, b, &f, 3);
        }
        qerr__result_set_diag(r, "block_mse_rtn", b->mse_rtn);
        qerr__result_set_diag(r, "block_mse_init", b->mse_init);
        qerr__result_set_diag(r, "block_mse_final", b->mse_final);
        qerr__result_set_diag(r, "epochs", b->epochs_done);
        qerr__result_set_diag(r, "weight_gptq", use_gptq ? 1 : 0);
        qerr__result_set_diag(r, "seconds", qerr__now() - t0);
    }
    qerr__flatquant_folded_free(&f);
    qerr__flatquant_block_free(b);
    if (rc != QERR_OK)
        for (int l = 0; l < QERR_LIN_COUNT; l++) {
            qerr_result_free(out[l]);
            out[l] = NULL;
        }
    return rc;
}

static int flatquant_layer(const qerr_method_call *call, qerr_result **out) {
    (void)call;
    *out = NULL;
    return qerr__fail(QERR_E_UNSUPPORTED,
                      "flatquant is block-wise: use qerr_model_quantize (it trains whole "
                      "decoder blocks, not one weight)");
}

/* The vtable's block slot: FlatQuant trains on the float-path inputs
 * (algorithms.md §0.4); x_q and the next blocks are not used. */
static int flatquant_block(const qerr_block_call *call, qerr_result *out[QERR_LIN_COUNT]) {
    return qerr__flatquant_quantize_block(call->ctx, call->plan, call->cfg, call->w, call->x_fp,
                                          call->nseq, call->seq, out);
}

const qerr_method qerr__flatquant_method = {
    .version = QERR_METHOD_VERSION,
    .name = "flatquant",
    .summary = "learned Kronecker transforms + clipping, trained block-wise (FlatQuant)",
    .params = flatquant_params,
    .nparams = (int)(sizeof flatquant_params / sizeof flatquant_params[0]),
    .needs_calib = true,
    .quantize = flatquant_layer,
    .quantize_block = flatquant_block,
    .block_only = true,
};
