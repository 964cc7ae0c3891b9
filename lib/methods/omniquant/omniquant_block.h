/* Block-wise OmniQuant / LSI / SDE with cross-layer learning (internal;
 * algorithms.md §3, §4, §5.3) on the block training engine.
 *
 * One decoder block l is trained on its quantized-path inputs x_q against
 * float targets (the float block on float inputs, §0.4). Trainable, all
 * double: LWC (raw sigmoid pair per (row, group), OmniQuant asymmetric grid
 * with the range widened to hold 0, as the layer-wise "cqe"/"omniquant") on
 * the 7 linears and, optionally, D on a support mask in the SVD
 * parameterisation W(D) = W + U D V^T of each linear (D = 0 at init, so step
 * 0 is the float block with RTN-LWC clipping). Cross-layer loss:
 *   L = mse(F_l^q(x_q), Y_l) + lambda * sum_{k=1..la} mse(F_{l+k}^fp(...), Y_{l+k})
 * with the float next blocks frozen; the last blocks truncate. aug_loss
 * (OmniQuant's option, §3.1) adds mse(F_l^q(x_q), F_l^fp(x_q)). Groups that
 * do not divide a row (ragged_groups) leave the last group of the row
 * shorter, in the fake quantizer, the clip pairs and the encode alike. Weight-only
 * runs have no LET (the recipe of OmniQuant's LLaMA scripts); with a_bits < 16
 * the four linear inputs are fake-quantized per token and LET scales are
 * learned (omniquant_let.c). After training, W(D) (LET columns folded) is
 * rounded with the learned clipping into plain codes / scales / zeros. */
#ifndef QERR_OMNIQUANT_BLOCK_H
#define QERR_OMNIQUANT_BLOCK_H

#include "../flatquant/flatquant.h" /* the deployed block of W*A* layers */

#define QERR_OMQ_MAX_LOOKAHEAD 2
/* loss terms: the block, the look-ahead blocks, aug_loss */
#define QERR_OMQ_MAX_TERMS (QERR_OMQ_MAX_LOOKAHEAD + 2)
/* LET pairs: qkv (input-norm side, [hidden]), out (v/o, [kv_heads*head_dim]),
 * fc1 (post-attention-norm side, [hidden]) */
enum { QERR_OMQ_LET_ATTN, QERR_OMQ_LET_VO, QERR_OMQ_LET_MLP, QERR_OMQ_LET_PAIRS };

typedef struct qerr_omq_opts {
    int w_bits;          /* 2..8 */
    int64_t w_group;     /* columns per group; <= 0 = per channel */
    bool lwc;            /* learn the clipping (else fixed at clip_init) */
    double clip_init;    /* 4.0 */
    double lwc_lr;       /* 1e-2 */
    int mask;            /* QERR_CQE_MASK_* (NONE = OmniQuant LWC only) */
    int64_t mask_width;  /* band half-width */
    int64_t mask_block;  /* block side; 0 = min(64, rank) per linear */
    bool lsi_vector;     /* diag mask as a vector (the LSI path) */
    double lr_d;         /* 2e-4 */
    int lookahead;       /* 0 = plain block loss; 1 or 2 = cross-layer */
    double lambda;       /* weight of the look-ahead terms (1) */
    bool aug_loss;       /* OmniQuant's aug_loss: + mse(F_l^q(x_q), F_l^fp(x_q)) */
    int epochs;          /* 20 (W3/W4), 40 (W2) in the paper; scaled to the model */
    int64_t batch;       /* sequences per step */
    uint64_t seed;       /* order of the sequences */
    /* weight-activation runs (omniquant_let.c) */
    int a_bits;          /* 16 = weight-only; 2..8 = per-token activation fake-quant */
    bool let;            /* learnable equivalent transforms (qkv, out, fc1 pairs) */
    double let_lr;       /* 5e-3 */
    double let_alpha;    /* SmoothQuant init exponent (0.5) */
    bool let_init_best;  /* per pair, keep s = 1 where it beats SmoothQuant at init */
} qerr_omq_opts;
void qerr__omq_opts_default(qerr_omq_opts *o);
int qerr__omq_opts_check(const qerr_omq_opts *o);

/* Inputs of one block's training. x_q is the quantized-path input, x_fp the
 * float-path input (may equal x_q). next[k] are the float weights of block
 * l+1+k, needed for k < min(lookahead, nlayers - 1 - layer). */
typedef struct qerr_omq_io {
    const float *x_q, *x_fp; /* [nseq*seq, hidden] each */
    int64_t nseq, seq;
    int64_t layer, nlayers;
    const qerr_block_weights_f *next[QERR_OMQ_MAX_LOOKAHEAD];
} qerr_omq_io;

/* Trainable state of one block. */
typedef struct qerr_omq_block {
    qerr_block_config cfg;
    qerr_omq_opts o;
    qerr_fq_spec fq;
    int64_t m[QERR_LIN_COUNT], n[QERR_LIN_COUNT], r[QERR_LIN_COUNT];
    int64_t nclip[QERR_LIN_COUNT], nd[QERR_LIN_COUNT], block[QERR_LIN_COUNT];
    double *w0[QERR_LIN_COUNT], *wd[QERR_LIN_COUNT]; /* W and W(D) */
    double *u[QERR_LIN_COUNT], *s[QERR_LIN_COUNT], *vt[QERR_LIN_COUNT];
    unsigned char *mask[QERR_LIN_COUNT];              /* r x r (dense path) */
    double *clip[QERR_LIN_COUNT], *d[QERR_LIN_COUNT]; /* parameters */
    double *gclip[QERR_LIN_COUNT], *gd[QERR_LIN_COUNT];
    double *gw, *qw, *mr, *rr; /* scratch (double) */
    /* test seam: when set, the forward computes weff from W(D) with this
     * instead of the fake quantizer (the gradient checks put the frozen-STE
     * surrogate here); the backward is unchanged */
    int (*wq_override)(void *user, int lin, const double *wd, double *weff);
    void *wq_user;
    /* LET and activation quantization (omniquant_let.c): scales s[QERR_OMQ_LET_*]
     * (NULL when let is off), the activation quantizer (act_q: a_bits < 16) */
    double *let_s[QERR_OMQ_LET_PAIRS], *let_g[QERR_OMQ_LET_PAIRS], *let_amax[QERR_OMQ_LET_PAIRS];
    int64_t let_n[QERR_OMQ_LET_PAIRS];
    bool act_q;
    qerr_fq_spec aspec;
    double *lws;          /* scratch: column-scaled W(D) of one linear */
    void *let_tmp;        /* scratch of the activation hooks */
    size_t let_tmp_bytes;
    /* test seam (double variant only): replaces the activation quantizer */
    int (*aq_override)(void *user, int site, int64_t rows, int64_t cols, const double *x,
                       double *y);
    void *aq_user;
    /* block losses over the calibration set (plain block MSE, and the
     * next blocks' MSE against their float targets on this block's output) */
    double mse_init, mse_final, next_init, next_final;
    double aug_init, aug_final; /* the aug_loss term (NaN when off) */
    int lookahead_used;
    double *epoch_loss;
    int epochs_done;
    double seconds;
} qerr_omq_block;

/* Copy the weights, take the SVDs, set clips to clip_init and D to 0. */
int qerr__omq_block_init(qerr_omq_block *b, const qerr_block_config *cfg,
                         const qerr_block_weights_f *w, const qerr_omq_opts *o);
void qerr__omq_block_free(qerr_omq_block *b);
/* W(D) from the current D. */
void qerr__omq_refresh(qerr_omq_block *b);
void qerr__omq_zero_grads(qerr_omq_block *b);
/* Weight hooks: weff = fake-quant(W(D)); backward adds d(clip), d(D). */
void qerr__omq_hooks_f(qerr_omq_block *b, qerr_block_hooks_f *hk);
void qerr__omq_hooks_d(qerr_omq_block *b, qerr_block_hooks_d *hk);

/* Loss of one batch and (gy != NULL) its gradient into b's grads.
 * caches[0] is the block's, caches[1..la] the next blocks' (float ones need
 * no hooks). t[0..la] are the float targets; with o.aug_loss, t[la+1] is
 * the float block on x (OmniQuant's aug_loss target), weight 1. terms[k]
 * (may be NULL, else la+2 entries) gets each term's MSE, the aug term at
 * la+1. gy, ybuf: [la+1][rows*hidden] scratch. */
int qerr__omq_loss_f(qerr_omq_block *b, qerr_block_cache_f *const *caches,
                     const qerr_block_weights_f *w, const qerr_block_weights_f *const *next,
                     int la, const float *x, const float *const *t, float *ybuf, float *gy,
                     double *loss, double *terms);
int qerr__omq_loss_d(qerr_omq_block *b, qerr_block_cache_d *const *caches,
                     const qerr_block_weights_d *w, const qerr_block_weights_d *const *next,
                     int la, const double *x, const double *const *t, double *ybuf, double *gy,
                     double *loss, double *terms);

/* Whole training of one block (seeded), then the state holds the learned
 * clips and D. */
int qerr__omq_train_block(const qerr_ctx *ctx, const qerr_block_config *cfg,
                          const qerr_block_weights_f *w, const qerr_omq_io *io,
                          const qerr_omq_opts *o, qerr_omq_block **out);
void qerr__omq_block_destroy(qerr_omq_block *b);
/* Round W(D) of linear `lin` with its learned clipping onto the library grid. */
int qerr__omq_encode(qerr_omq_block *b, int lin, qerr_result **out);

/* ---- LET and activation quantization (omniquant_let.c) -------------------- */
/* Allocate the scales (s = 1) and scratch when o.let / a_bits < 16. */
int qerr__omq_let_alloc(qerr_omq_block *b);
void qerr__omq_let_free(qerr_omq_block *b);
bool qerr__omq_let_on(const qerr_omq_block *b);
/* Running max |X_j| at the pair inputs from a float forward's cache. */
void qerr__omq_let_observe(qerr_omq_block *b, const qerr_block_cache_f *c);
/* SmoothQuant init s_j = max|X_j|^alpha / max|W_:,j|^(1-alpha) (>= 1e-5). */
void qerr__omq_let_init(qerr_omq_block *b);
void qerr__omq_let_zero_grads(qerr_omq_block *b);
/* Count or apply the AdamW groups of the scales from offset off; returns the new offset. */
int64_t qerr__omq_let_adam(qerr_omq_block *b, qerr_adamw *opt, bool apply, int64_t off);
/* Weight side: the matrix the quantizer sees (W(D) with LET columns, in
 * b->lws, or W(D) itself), and the chain of dL/d(that) into dL/dW(D) (in
 * place) and the scale gradients. */
const double *qerr__omq_let_wsrc(qerr_omq_block *b, int lin);
void qerr__omq_let_wgrad(qerr_omq_block *b, int lin, double *g);
/* Activation hooks at the four linear inputs: x / s, then the per-token
 * quantizer; and its STE backward. */
int qerr__omq_let_act_fwd_f(void *user, int site, int64_t rows, int64_t cols, const float *x,
                            float *y);
int qerr__omq_let_act_bwd_f(void *user, int site, int64_t rows, int64_t cols, const float *x,
                            const float *gy, float *gx);
int qerr__omq_let_act_fwd_d(void *user, int site, int64_t rows, int64_t cols, const double *x,
                            double *y);
int qerr__omq_let_act_bwd_d(void *user, int site, int64_t rows, int64_t cols, const double *x,
                            const double *gy, double *gx);
unsigned qerr__omq_let_act_mask(const qerr_omq_block *b);
/* Encode linear `lin` folded: W(D) columns * s, v rows / s_vo, with the
 * learned clipping (what training fake-quantized, up to the v rows). */
int qerr__omq_let_encode(qerr_omq_block *b, int lin, qerr_result **out);
/* The deployed run-time state: folded norms ln / s, no Kronecker factors, the
 * act clip at "none", a_bits, kv_bits 16 (w[] left NULL). */
int qerr__omq_let_folded(const qerr_omq_block *b, const qerr_block_weights_f *w,
                         qerr_flatquant_folded *f);

/* Options from an "omniquant" or "cqe" plan (scope=block keys). */
int qerr__omq_opts_from_plan(const qerr_plan *p, bool cqe, const qerr_block_config *cfg,
                             uint64_t seed, qerr_omq_opts *o);
/* Same calling convention as qerr__flatquant_quantize_block: x is used as
 * both the quantized- and the float-path input, and the block is treated as
 * the last one (the cross-layer term truncates). */
int qerr__omniquant_quantize_block(const qerr_ctx *ctx, const qerr_plan *plan,
                                   const qerr_block_config *cfg, const qerr_block_weights_f *w,
                                   const float *x, int64_t nseq, int64_t seq,
                                   qerr_result *out[QERR_LIN_COUNT]);
/* The full form the pipeline should call: x_q, x_fp and the next blocks. */
int qerr__omniquant_quantize_block_io(const qerr_ctx *ctx, const qerr_plan *plan,
                                      const qerr_block_config *cfg,
                                      const qerr_block_weights_f *w, const qerr_omq_io *io,
                                      qerr_result *out[QERR_LIN_COUNT]);

#endif /* QERR_OMNIQUANT_BLOCK_H */
