/* Block-wise training engine (internal): a LLaMA decoder block forward and
 * backward with hooks at every linear input and weight, STE fake quantizers
 * with learnable clipping, Kronecker transforms with Cayley/SVD factors,
 * AdamW and a cosine schedule. Generic: the trainers of the block-wise
 * methods (lib/methods/flatquant/, lib/methods/omniquant/) are built on it.
 * Never installed; nothing here is exported.
 *
 * The numeric kernels exist twice, float (suffix _f, for training) and double
 * (suffix _d, for finite-difference checks): see real_def.h. Learnable
 * parameters, their gradients and optimiser state are always double. */
#ifndef QERR_TRAIN_H
#define QERR_TRAIN_H

#include "../core/internal.h"
#include "../llama/model.h" /* QERR_LIN_Q .. QERR_LIN_DOWN */

#include <math.h>

/* ---- block shape ---------------------------------------------------------- */
typedef struct qerr_block_config {
    int64_t hidden, inter, heads, kv_heads, head_dim;
    double eps, theta;
    qerr_rope rope; /* linear / llama3 scaling (rope.theta == theta); zero: default */
    bool bias[QERR_LIN_COUNT]; /* linear `l` adds the weights' b[l] */
    bool qk_norm;              /* per-head RMSNorm of q and k (weights' qn, kn) before RoPE */
} qerr_block_config;

/* Checks heads % kv_heads, positive sizes and products that fit. */
int qerr__block_config_check(const qerr_block_config *cfg);
/* QERR_E_UNSUPPORTED naming `who` and the first bias or q/k norm of the
 * block, for transforms that cannot carry them (FlatQuant's folds, LET);
 * QERR_OK when the block has none. */
int qerr__block_refuse_extras(const qerr_block_config *cfg, const char *who);
/* Rows and columns of linear `lin` ([out, in]). */
void qerr__block_linear_shape(const qerr_block_config *cfg, int lin, int64_t *out, int64_t *in);

/* Activation sites where a hook may transform / fake-quantize a tensor. The
 * four linear-input sites are where FlatQuant puts its transforms; Q, K (after
 * RoPE) and V are where a KV-cache quantizer or a per-head transform goes. */
enum {
    QERR_SITE_ATTN_IN, /* input-RMSNorm output, shared by q/k/v  [rows, hidden] */
    QERR_SITE_Q,       /* q after RoPE                           [rows, heads*hd] */
    QERR_SITE_K,       /* k after RoPE                           [rows, kv*hd] */
    QERR_SITE_V,       /* v projection output                    [rows, kv*hd] */
    QERR_SITE_O_IN,    /* attention output, input of o_proj      [rows, heads*hd] */
    QERR_SITE_MLP_IN,  /* post-attention RMSNorm output, gate/up [rows, hidden] */
    QERR_SITE_DOWN_IN, /* silu(gate)*up, input of down_proj      [rows, inter] */
    QERR_SITE_COUNT
};
/* Columns of the tensor at `site`. */
int64_t qerr__block_site_cols(const qerr_block_config *cfg, int site);

/* ---- fake quantizers (shared settings) ------------------------------------ */
enum {
    QERR_FQ_SYM = 1,   /* FlatQuant (algorithms.md §0.2 conv. 3): range holds 0,
                          s = absmax/(2^(b-1)-1), codes [-2^(b-1), 2^(b-1)-1] */
    QERR_FQ_ASYM = 2,  /* OmniQuant (conv. 4): s = (max-min)/(2^b-1) clamped to
                          [1e-5, 1e4], z = round(-min/s), codes [0, 2^b-1] */
    QERR_FQ_ASYM0 = 3  /* as ASYM but the range is widened to hold 0 (FlatQuant's
                          asymmetric activation / KV quantizer) */
};
enum {
    QERR_FQ_CLIP_NONE = 0,
    QERR_FQ_CLIP_SCALE = 1, /* max' = sigmoid(a)*max, min' = sigmoid(b)*min
                               (OmniQuant LWC, FlatQuant LAC) */
    QERR_FQ_CLIP_CLAMP = 2  /* values clamped to [sigmoid(b)*min, sigmoid(a)*max]
                               first, then quantized (FlatQuant LWC) */
};
typedef struct qerr_fq_spec {
    int bits;        /* 2..16 */
    int mode;        /* QERR_FQ_* */
    int clip;        /* QERR_FQ_CLIP_* */
    int64_t group;   /* columns per group; <= 0 means the whole row */
    bool shared;     /* one (a, b) pair for every group (LAC) instead of one
                        per (row, group) (LWC) */
} qerr_fq_spec;
/* Validates bits/mode/clip and the group against `cols`. */
int qerr__fq_check(const qerr_fq_spec *spec, int64_t cols);
/* Number of (a, b) pairs the quantizer of a rows x cols tensor learns. */
int64_t qerr__fq_clip_pairs(const qerr_fq_spec *spec, int64_t rows, int64_t cols);

static inline double qerr__sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
/* Raw clip parameter of a clip factor sigmoid(raw) stored as float32 (how a
 * quantized model carries it); 40 stands for "no clipping". */
static inline double qerr__clip_raw_of_factor(float f) {
    if (!(f < 1.0f)) return 40.0; /* sigmoid(40) == 1 in double */
    if (!(f > 0.0f)) return -40.0;
    return log((double)f / (1.0 - (double)f));
}
/* raw rounded through its stored float32 factor: what a deployed model uses. */
static inline double qerr__clip_raw_stored(double raw) {
    return qerr__clip_raw_of_factor((float)qerr__sigmoid(raw));
}

/* ---- Kronecker factors with Cayley-orthogonal U, V and learnable singular
 *      values: P = U diag(s) V^T, P^-T = U diag(1/s) V^T (analytic inverse).
 *      U = (I - A/2)^-1 (I + A/2) with A = L - L^T, L the strict lower
 *      triangle of the raw parameter. All double. ---------------------------- */
typedef struct qerr_svd_factor {
    int64_t n;
    double *raw_u, *raw_v, *sigma; /* n*n, n*n, n: the learnable parameters */
    double *u, *v, *p, *pinvt;     /* derived by qerr__svd_factor_update */
    double *lu_u, *lu_v;           /* LU factors of I - A/2 (for backward) */
    int *piv_u, *piv_v;
} qerr_svd_factor;
/* Allocate; raw parameters set so that U = V = I and sigma = 1 (P = I). */
int qerr__svd_factor_init(qerr_svd_factor *f, int64_t n);
/* Random orthogonal U and V (Cayley of a random skew matrix), sigma = 1. */
void qerr__svd_factor_randomize(qerr_svd_factor *f, qerr_rng *rng, double scale);
void qerr__svd_factor_free(qerr_svd_factor *f);
/* Recompute u, v, p, pinvt from the raw parameters. */
int qerr__svd_factor_update(qerr_svd_factor *f);
/* Given dL/dP and dL/dP^-T (either may be NULL), add dL/d(raw_u, raw_v,
 * sigma) into g_raw_u, g_raw_v, g_sigma. Needs a prior update. */
int qerr__svd_factor_backward(const qerr_svd_factor *f, const double *gp, const double *gpinvt,
                              double *g_raw_u, double *g_raw_v, double *g_sigma);
/* n1 * n2 = n with n1 <= n2 the divisor pair closest to sqrt(n); equals
 * FlatQuant's get_decompose_dim on its table (4096 -> 64x64, 11008 ->
 * 86x128, ...). */
void qerr__decompose_dim(int64_t n, int64_t *n1, int64_t *n2);

/* ---- AdamW and the cosine schedule ---------------------------------------- */
/* torch.optim.AdamW: p *= 1 - lr*wd; m, v moments; bias-corrected step. */
typedef struct qerr_adamw {
    int64_t n, t;
    double beta1, beta2, eps;
    double *m, *v;
} qerr_adamw;
int qerr__adamw_init(qerr_adamw *a, int64_t n); /* beta 0.9/0.999, eps 1e-8 */
void qerr__adamw_free(qerr_adamw *a);
/* Start a step (t += 1); then update each parameter group [off, off+count)
 * with its own lr and weight decay. */
void qerr__adamw_next(qerr_adamw *a);
void qerr__adamw_update(qerr_adamw *a, int64_t off, int64_t count, double *param,
                        const double *grad, double lr, double wd);
/* CosineAnnealingLR: lr at `step` of `total`, from base down to base*floor. */
double qerr__cosine_lr(double base, int64_t step, int64_t total, double floor_ratio);

/* ---- templated kernels and the block -------------------------------------- */
#include "real_def.h"
#include "train_real.h"
#define TR_DOUBLE
#include "real_def.h"
#include "train_real.h"
#undef TR_DOUBLE
#undef R
#undef TR_
#undef TR_GEMM

/* ---- bridge to the model loader (block_model.c) --------------------------- */
void qerr__block_config_from_model(const qerr_model_config *m, qerr_block_config *b);
void qerr__block_weights_from_layer(const qerr_layer_weights *lw, qerr_block_weights_f *w);
/* *cache for `batch` sequences of `seq` tokens: kept when it already has that
 * shape, else replaced (chunked loops whose last chunk is shorter). */
int qerr__block_cache_fit_f(const qerr_block_config *cfg, int64_t batch, int64_t seq,
                            qerr_block_cache_f **cache);

#endif /* QERR_TRAIN_H */
