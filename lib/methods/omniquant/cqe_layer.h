/* Layer-wise learned quantizer shared by "omniquant" and "cqe" (internal).
 *
 * Minimises the relative layer objective
 *     L = tr(E H E^T) / tr(W H W^T),   E = Q(W(D); a, b) - W
 * over learnable weight clipping (LWC: one raw sigmoid pair (a, b) per
 * (row, group), algorithms.md §3.2) and, for CQE, the SVD parameterisation
 * W(D) = U (diag(S) + D) V^T = W + U D V^T with D on a support mask (§4, §5.3).
 * The quantizer is OmniQuant's asymmetric one (§0.2(4)) with the range
 * widened to hold 0 (the train engine's QERR_FQ_ASYM0): identical to
 * OmniQuant on every group whose values straddle 0, and it keeps the zero
 * point an integer in [0, 2^b - 1] as the library's grid requires.
 * Gradients: STE through the quantizer (lib/train fake quantizer), then
 * dL/dD = mask .* (U^T G V). AdamW, weight decay 0, constant learning rates,
 * full-batch steps (the objective needs only H): deterministic. */
#ifndef QERR_CQE_LAYER_H
#define QERR_CQE_LAYER_H

#include "../method.h"
#include "../../train/train.h"

enum {
    QERR_CQE_MASK_NONE = -1, /* no SVD parameterisation (OmniQuant LWC only) */
    QERR_CQE_MASK_DIAG = 0,  /* LSI: one increment per singular value */
    QERR_CQE_MASK_BAND = 1,  /* |i - j| <= width */
    QERR_CQE_MASK_BLOCK = 2, /* dense top-left block x block */
    QERR_CQE_MASK_DIAG_BLOCK = 3 /* diag plus the top-left block (LSI grouped) */
};

typedef struct qerr_cqe_opts {
    int bits;          /* 2..8 */
    int64_t group;     /* columns per group (resolved, <= cols) */
    int mask;          /* QERR_CQE_MASK_* */
    int64_t width;     /* band half-width */
    int64_t block;     /* block side */
    bool lsi_vector;   /* diag mask stored as a vector (the LSI path); when
                          false the diag mask goes through the dense path */
    bool lwc;          /* learn the clipping (else fixed at clip_init) */
    int64_t steps;
    double lr_clip, lr_d, clip_init;
    bool keep_best;    /* fold the step with the lowest true objective */
} qerr_cqe_opts;

typedef struct qerr_cqe_layer {
    int64_t m, n, r, ng, nclip, nd;
    qerr_cqe_opts o;
    qerr_fq_spec fq;
    const double *H; /* borrowed, n x n */
    double ref;      /* tr(W H W^T) (1 when it is 0) */
    double *w0;      /* m x n */
    double *u, *s, *vt; /* thin SVD: m x r, r, r x n (NULL without a mask) */
    unsigned char *mask; /* r x r for the dense path */
    double *theta, *grad; /* [clip pairs (2*nclip) | D (nd)] */
    double *best;         /* theta at the best objective */
    double *wd, *q, *eh, *gw, *mr, *rr; /* work */
    qerr_adamw opt;
    double loss, best_loss, start_loss;
    int64_t steps_done;
} qerr_cqe_layer;

/* Shared with the block-wise trainer (lib/methods/omniquant/omniquant_block.c): */
/* Whether (a, b) lies on the support `mask`. */
bool qerr__cqe_mask_has(int mask, int64_t width, int64_t block, int64_t a, int64_t b);
/* Thin SVD of a (m x n, destroyed): U m x r, S r, V^T r x n. */
int qerr__cqe_svd(double *a, int64_t m, int64_t n, double *u, double *s, double *vt);
/* Round wd (m x n) with raw clip pairs per (row, group) onto the library
 * grid with the ASYM0 convention of the fake quantizer, exactly. */
int qerr__cqe_encode(const double *wd, int64_t m, int64_t n, int bits, int64_t group,
                     const double *clip, qerr_result **out);
/* Validate the mask against the rank r = min(rows, cols). */
int qerr__cqe_check_mask(int mask, int64_t width, int64_t block, int64_t rows, int64_t cols);
/* Copy W (float, m x n), borrow H, take the SVD when a mask is set. */
int qerr__cqe_layer_init(qerr_cqe_layer *st, const float *W, int64_t m, int64_t n,
                         const double *H, const qerr_cqe_opts *o);
void qerr__cqe_layer_free(qerr_cqe_layer *st);
/* Pointers into theta: clip pairs and D (r x r dense, or r for the LSI path). */
static inline double *qerr__cqe_clip(qerr_cqe_layer *st) { return st->theta; }
static inline double *qerr__cqe_d(qerr_cqe_layer *st) { return st->theta + 2 * st->nclip; }
/* W(D) into st->wd, Q into st->q, *loss = L (true, not the surrogate). */
int qerr__cqe_layer_forward(qerr_cqe_layer *st, double *loss);
/* After a forward: st->grad = dL/dtheta (STE). Also leaves dL/dW(D) in st->gw. */
int qerr__cqe_layer_backward(qerr_cqe_layer *st);
/* One AdamW step (forward, backward, update); *loss = L before the update. */
int qerr__cqe_layer_step(qerr_cqe_layer *st, double *loss);
/* All steps, then (keep_best) restore the best theta. Reports progress. */
int qerr__cqe_layer_train(qerr_cqe_layer *st, const qerr_ctx *ctx, const char *stage);
/* Round W(D) with the learned clipping onto the library grid. */
int qerr__cqe_layer_encode(qerr_cqe_layer *st, qerr_result **out);
/* The whole method for a qerr_quantize call: checks the calibration data,
 * trains, encodes, sets diagnostics. */
int qerr__cqe_run(const qerr_method_call *call, const qerr_cqe_opts *o, const char *stage,
                  qerr_result **out);

/* Plan keys shared by omniquant and cqe (same text, same ranges). */
#define QERR_PDEF_CQE_STEPS \
    {"steps", QERR_PARAM_INT, 200, 0, 100000, NULL, \
     "full-batch AdamW steps on the layer objective"}
#define QERR_PDEF_CQE_LWC_LR \
    {"lwc_lr", QERR_PARAM_DOUBLE, 1e-2, 0, 10, NULL, "learning rate of the clipping parameters"}
#define QERR_PDEF_CQE_CLIP_INIT \
    {"clip_init", QERR_PARAM_DOUBLE, 4.0, -20, 20, NULL, \
     "initial raw clip parameter (sigmoid(4) = 0.982 of max and min)"}
#define QERR_PDEF_CQE_KEEP_BEST \
    {"keep_best", QERR_PARAM_BOOL, 1, 0, 1, NULL, \
     "fold the step with the lowest true layer objective (else the last)"}
/* The keys of the block-wise path (scope=block), last in both tables. */
#define QERR_PDEF_CQE_BLOCK_SCOPE \
    {"scope", QERR_PARAM_CHOICE, 0, 0, 0, "layer|block", \
     "layer: train on tr(E H E^T) per weight (qerr_quantize); block: train whole decoder blocks " \
     "on the block MSE (model pipeline, qerr__omniquant_quantize_block)"}, \
    {"cross_layer", QERR_PARAM_BOOL, 0, 0, 1, NULL, \
     "scope=block: add lambda x the error of the float next block(s) on this block's output"}, \
    {"lookahead", QERR_PARAM_INT, 1, 1, 2, NULL, "scope=block: next blocks in the cross-layer loss"}, \
    {"lambda", QERR_PARAM_DOUBLE, 1.0, 0, 1000, NULL, "scope=block: weight of the look-ahead terms"}, \
    {"epochs", QERR_PARAM_INT, 20, 0, 100000, NULL, "scope=block: training epochs per block"}, \
    {"batch", QERR_PARAM_INT, 1, 1, 1 << 20, NULL, "scope=block: calibration sequences per step"}, \
    {"aug_loss", QERR_PARAM_BOOL, 0, 0, 1, NULL, \
     "scope=block: OmniQuant's aug_loss, a second MSE term against the float block run on the " \
     "quantized-path input"}, \
    {"a_bits", QERR_PARAM_INT, 16, 2, 16, NULL, \
     "scope=block: bits of the per-token activation quantizers at the four linear inputs (16 = " \
     "weight-only)"}, \
    {"let", QERR_PARAM_BOOL, 1, 0, 1, NULL, \
     "scope=block, a_bits < 16: learnable equivalent transforms (qkv, out, fc1 pairs; weight-only " \
     "runs use LWC alone)"}, \
    {"let_lr", QERR_PARAM_DOUBLE, 5e-3, 0, 1, NULL, "scope=block: learning rate of the LET scales"}, \
    {"let_alpha", QERR_PARAM_DOUBLE, 0.5, 0, 1, NULL, \
     "scope=block: SmoothQuant exponent of the LET init"}, \
    {"let_init", QERR_PARAM_CHOICE, 0, 0, 0, "best|smoothquant", \
     "scope=block: start each LET pair at SmoothQuant or at s = 1, whichever gives the lower " \
     "block loss (best), or always at SmoothQuant"}, \
    {"refine", QERR_PARAM_CHOICE, 0, 0, 0, "none|quantease", \
     "scope=block, weight-only: after training, QuantEase coordinate descent on each linear's " \
     "layer objective (float W, H of its quantized-path input) over the learned grids"}, \
    {"refine_start", QERR_PARAM_CHOICE, 0, 0, 0, "w|learned", \
     "scope=block: refine from W with QuantEase's relaxed sweeps, or from the learned rounding " \
     "with rounded sweeps only (never raises its layer objective)"}, \
    {"refine_iters", QERR_PARAM_INT, 30, 1, 100000, NULL, "scope=block: sweeps of refine=quantease"}

/* QERR_E_UNSUPPORTED (message set) when the plan says scope=block: that path
 * needs whole decoder blocks, so qerr_quantize on one weight refuses it; also
 * when a scope=layer plan asks for a block-only feature (a_bits < 16, refine,
 * cross_layer, aug_loss), which the layer path would otherwise ignore. */
int qerr__cqe_refuse_block_scope(const qerr_plan *p);

#endif /* QERR_CQE_LAYER_H */
