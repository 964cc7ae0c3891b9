/* FlatQuant (Sun et al., 2024): the block trainer, the fold into deployable
 * weights and the deployed block, on the block engine of lib/train/. Never
 * installed; nothing here is exported. */
#ifndef QERR_FLATQUANT_H
#define QERR_FLATQUANT_H

#include "../../train/train.h"

/* ---- FlatQuant block trainer (flatquant_block.c) ------------------------- */
/* Transforms of one block, index t: 0 = attention input (q/k/v, with a
 * channel scale folded into the input RMSNorm), 1 = o_proj input (a plain
 * Kronecker over heads*head_dim, no scale), 2 = MLP input (gate/up, scale
 * folded into the post-attention RMSNorm), 3 = down_proj input (scale folded
 * into up_proj rows). */
#define QERR_FQB_T 4
typedef struct qerr_flatquant_opts {
    int w_bits;            /* 2..8 */
    int a_bits;            /* 2..8, or 16 = no activation quantization (W*A16) */
    int kv_bits;           /* 2..8: K (after RoPE) and V fake-quantized per (token,
                              head), asymmetric, with LAC; 16 = none */
    int64_t w_group;       /* weight columns per group; <= 0 = per channel */
    bool lwc, lac, diag;   /* learnable weight clip / activation clip / scales */
    double diag_alpha;     /* SmoothQuant-style init exponent (0.3) */
    int epochs;            /* 15 */
    int64_t batch;         /* sequences per step (4) */
    double lr, clip_lr, weight_decay; /* 5e-3, 5e-2, 0.01 */
    bool loss_norm;        /* train on loss / loss.detach() as the authors do */
    bool identity_init;    /* P = I instead of random orthogonal factors */
    uint64_t seed;
} qerr_flatquant_opts;
void qerr__flatquant_opts_default(qerr_flatquant_opts *o);
int qerr__flatquant_opts_check(const qerr_flatquant_opts *o);

typedef struct qerr_flatquant_block {
    qerr_block_config cfg;
    qerr_flatquant_opts opts;
    int64_t n1[QERR_FQB_T], n2[QERR_FQB_T];
    qerr_svd_factor f1[QERR_FQB_T], f2[QERR_FQB_T];
    double *c[QERR_FQB_T];          /* channel scales, NULL where unused */
    double *wclip[QERR_LIN_COUNT];  /* LWC raw (a, b) pairs per (row, group) */
    double aclip[QERR_FQB_T][2];    /* LAC raw (a, b) per transform */
    double kvclip[2][2];            /* LAC raw (a, b) of the K and V quantizers */
    /* block MSE against the float block on the calibration inputs */
    double mse_rtn;     /* no transform, no learned clip (plain RTN fake-quant) */
    double mse_init;    /* at the initial transforms, before any step */
    double mse_final;   /* after training */
    int epochs_done;
    double *epoch_mse;  /* mean training loss (MSE) of each epoch */
    double seconds;
} qerr_flatquant_block;

/* Train the transforms and clips of one block on calibration inputs x
 * [nseq*seq, hidden] (float inputs; the targets are the float block's
 * outputs on the same inputs, algorithms.md §0.4). */
int qerr__flatquant_train_block(const qerr_ctx *ctx, const qerr_block_config *cfg,
                                const qerr_block_weights_f *w, const float *x, int64_t nseq,
                                int64_t seq, const qerr_flatquant_opts *o,
                                qerr_flatquant_block **out);
void qerr__flatquant_block_free(qerr_flatquant_block *b);
/* The trained block as trained: transforms and fake quantizers on the fly. */
int qerr__flatquant_block_forward(const qerr_flatquant_block *b, const qerr_block_weights_f *w,
                                  qerr_block_cache_f *cache, const float *x, float *y);

/* What an engine runs after training: transformed weights with the learned
 * clip baked in (to be quantized with the FlatQuant symmetric grid), norms
 * and up_proj rows multiplied by the scales, and the online factors. */
typedef struct qerr_flatquant_folded {
    float *w[QERR_LIN_COUNT];
    float *ln1, *ln2;
    float *p1[QERR_FQB_T], *p2[QERR_FQB_T];
    double act_clip[QERR_FQB_T][2]; /* raw LAC (a, b) of each input (40 = none) */
    double kv_clip[2][2];           /* raw LAC (a, b) of K and V */
    int a_bits, kv_bits, head_dim;  /* 16 = that quantizer is off */
} qerr_flatquant_folded;
/* State of a weight-activation block with no online transform (OmniQuant
 * LET, folded away): copies of the norms ln1/ln2, per-token activation
 * quantizers at a_bits with their clip at "none", no K/V quantizer. */
int qerr__folded_norms_only(const float *ln1, const float *ln2, int64_t hidden, int a_bits,
                            int64_t head_dim, qerr_flatquant_folded *f);
/* Fold in float64. */
int qerr__flatquant_fold(const qerr_flatquant_block *b, const qerr_block_weights_f *w,
                         qerr_flatquant_folded *out);
void qerr__flatquant_folded_free(qerr_flatquant_folded *f);
/* Round w [rows, cols] to the FlatQuant symmetric grid (scale absmax/(2^(b-1)-1)
 * per (row, group), codes stored unsigned with zero 2^(b-1)). */
int qerr__flatquant_rtn(const float *w, int64_t rows, int64_t cols, int bits, int64_t group,
                        qerr_result **out);
/* The deployed block: y = block(x) with the folded, quantized weights `wq`,
 * folded norms, online Kronecker factors, per-token activation quantization
 * (f->a_bits < 16) and K/V quantization (f->kv_bits < 16). */
int qerr__flatquant_deployed_forward(const qerr_block_config *cfg, const qerr_flatquant_folded *f,
                                     const float *const wq[QERR_LIN_COUNT],
                                     qerr_block_cache_f *cache, const float *x, float *y);
/* The same, and gram[t] (+=) Y_t^T Y_t (upper triangle only, row-major) for
 * every non-NULL gram[t], Y_t being what the weights behind transform t see
 * (X P, activation-quantized when a_bits < 16): GPTQ's H of those weights. */
int qerr__flatquant_deployed_gram(const qerr_block_config *cfg, const qerr_flatquant_folded *f,
                                  const float *const wq[QERR_LIN_COUNT],
                                  qerr_block_cache_f *cache, const float *x, float *y,
                                  double *const gram[QERR_FQB_T]);

/* ---- the method's block-level entry (lib/methods/flatquant/flatquant.c) ------------- */
/* Options from a "flatquant" plan. */
int qerr__flatquant_opts_from_plan(const qerr_plan *p, uint64_t seed, qerr_flatquant_opts *o);
/* Train, fold and quantize one block: out[l] for every QERR_LIN_*, with the
 * online factors (extras "flatquant.p1", "flatquant.p2", "flatquant.act_clip")
 * on q_proj, o_proj, gate_proj and down_proj, "flatquant.kv_clip" on k_proj
 * and v_proj when kv_bits < 16, and the folded norms
 * ("flatquant.input_norm" on q_proj, "flatquant.post_attention_norm" on
 * gate_proj); up_proj rows already carry down_proj's input scale. */
int qerr__flatquant_quantize_block(const qerr_ctx *ctx, const qerr_plan *plan,
                                   const qerr_block_config *cfg, const qerr_block_weights_f *w,
                                   const float *x, int64_t nseq, int64_t seq,
                                   qerr_result *out[QERR_LIN_COUNT]);

#endif /* QERR_FLATQUANT_H */
