/* The method vtable: every quantization method is one translation unit in
 * lib/methods/ that defines one `const qerr_method qerr__<name>_method` and
 * keeps everything else static. lib/methods/registry.c lists them. */
#ifndef QERR_METHOD_H
#define QERR_METHOD_H

#include "../core/internal.h"

#define QERR_METHOD_VERSION 2

/* What qerr_quantize hands a method, already validated: W is float32,
 * row-major, finite, rows x cols; H is the float64 Gram matrix (cols x cols,
 * finite, symmetric) or NULL when no calibration set was given. */
typedef struct qerr_method_call {
    const qerr_ctx *ctx; /* never NULL */
    const qerr_plan *plan;
    const float *W;
    int64_t rows, cols;
    const double *H;
    int64_t nsamples;
    const qerr_calib *calib; /* may be NULL */
} qerr_method_call;

/* What qerr_model_quantize hands a block-wise method for one decoder block
 * (version 2). The block types live in lib/train/train.h; they are only
 * named here. x_fp are the block's inputs on the float path (the float
 * model's hidden states), x_q those on the quantized path (the earlier
 * blocks already quantized), both [nseq * seq, hidden]. next[k] are the float
 * weights of block layer+1+k (NULL past the last block), for cross-layer
 * learning. */
struct qerr_block_config;
struct qerr_block_weights_s_f;
#define QERR_BLOCK_LOOKAHEAD 2
typedef struct qerr_block_call {
    const qerr_ctx *ctx; /* never NULL */
    const qerr_plan *plan;
    const struct qerr_block_config *cfg;
    const struct qerr_block_weights_s_f *w;
    const float *x_fp, *x_q;
    const struct qerr_block_weights_s_f *next[QERR_BLOCK_LOOKAHEAD];
    int64_t layer, layers; /* this block's index and the model's block count */
    int64_t nseq, seq;
} qerr_block_call;

typedef struct qerr_method {
    int version; /* QERR_METHOD_VERSION; slots below are valid for version 1 */
    const char *name;
    const char *summary;
    const qerr_param_def *params;
    int nparams;
    bool needs_calib;
    /* Runs without calibration but uses it when given (the pipeline then
     * calibrates the layer as for needs_calib). */
    bool wants_calib;
    /* Optional: extra checks of the plan against the shape (the common keys
     * bits/group_size are checked by the core). */
    int (*validate)(const qerr_plan *plan, int64_t rows, int64_t cols);
    /* Quantize; on failure free everything and return the status. */
    int (*quantize)(const qerr_method_call *call, qerr_result **out);
    /* Version 2, optional: quantize a whole decoder block (block-wise
     * methods). Fills out[QERR_LIN_*] (7 results, extras allowed); on
     * failure frees everything and leaves out all NULL. */
    int (*quantize_block)(const qerr_block_call *call, qerr_result *out[7]);
    /* Version 2, optional: whether this plan is block-wise (NULL: every plan
     * of a method with quantize_block is). For methods with both scopes,
     * e.g. a "scope" key. */
    bool (*block_scope)(const qerr_plan *plan);
    /* The `quantize` slot only refuses (QERR_E_UNSUPPORTED): the method needs
     * whole decoder blocks. Reported by qerr_method_scopes. */
    bool block_only;
} qerr_method;

/* The block slot of "omniquant" and "cqe" (omniquant_block_slot.c): a plan
 * with scope=block is block-wise. */
bool qerr__omq_scope_is_block(const qerr_plan *plan);
int qerr__omq_block_slot(const qerr_block_call *call, qerr_result *out[7]);

/* True when qerr_model_quantize must call plan's quantize_block. */
static inline bool qerr__plan_is_blockwise(const qerr_plan *plan) {
    const qerr_method *m = plan ? plan->method : NULL;
    return m && m->version >= 2 && m->quantize_block && (!m->block_scope || m->block_scope(plan));
}

/* Registry (registry.c). */
const qerr_method *qerr__method_find(const char *name);
int qerr__method_count(void);
const qerr_method *qerr__method_at(int index);

/* ---- parameter table entries shared by the grid-based methods ------------ */
#define QERR_PDEF_BITS \
    {"bits", QERR_PARAM_INT, 4, 2, 8, NULL, "bits per weight code"}
#define QERR_PDEF_GROUP_SIZE \
    {"group_size", QERR_PARAM_INT, -1, -1, 1 << 30, NULL, \
     "input columns per (scale, zero) group; -1 = one group per row"}
#define QERR_PDEF_RAGGED \
    {"ragged_groups", QERR_PARAM_BOOL, 0, 0, 1, NULL, \
     "allow a group size that does not divide the columns (last group shorter)"}
#define QERR_PDEF_SYMMETRIC \
    {"symmetric", QERR_PARAM_BOOL, 0, 0, 1, NULL, \
     "symmetric grid: zero fixed at 2^(bits-1)"}
#define QERR_PDEF_CLIP_SEARCH \
    {"clip_search", QERR_PARAM_BOOL, 0, 0, 1, NULL, \
     "shrink each group's range to minimise |w - q|^2.4 (GPTQ's mse option)"}
#define QERR_PDEF_SCALE_DTYPE \
    {"scale_dtype", QERR_PARAM_CHOICE, 0, 0, 0, "f32|f16", \
     "scales as float32, or rounded to float16 before the codes are chosen (what GPTQ " \
     "checkpoints store)"}

/* ---- helpers shared by methods (common.c) -------------------------------- */
/* The uniform grid of a plan with the keys above: bits, symmetric and
 * scale_dtype. */
qerr_grid qerr__plan_grid(const qerr_plan *plan, int bits);
/* Resolved group size for the plan and column count: cols for per-row
 * grids; validates divisibility unless ragged_groups is set. */
int qerr__plan_group_size(const qerr_plan *plan, int64_t cols, int64_t *group_size);
/* Zero dead columns (H_jj == 0): sets H_jj = 1 and W[:, j] = 0 in the
 * given copies. Returns how many columns were dead. */
int64_t qerr__zero_dead_columns(double *H, float *W, int64_t rows, int64_t cols);
/* perm = argsort(diag H) descending (stable); inverse in iperm. */
int qerr__act_order_perm(const double *H, int64_t n, int32_t *perm, int32_t *iperm);
/* Permute the columns of W (rows x n) and rows+columns of H by perm, in place
 * through a scratch buffer. Either pointer may be NULL. */
int qerr__permute_columns(float *W, int64_t rows, double *H, int64_t n, const int32_t *perm);
/* f = tr((W - Q) H (W - Q)^T) and tr(W H W^T), in float64 via BLAS. */
int qerr__layer_objective(const float *W, const float *Q, int64_t rows, int64_t cols,
                          const double *H, double *err, double *ref);
/* Set the common diagnostics: layer_error (NaN when H is NULL), seconds. */
int qerr__finish_diag(const qerr_method_call *call, qerr_result *r, double seconds);
double qerr__now(void); /* monotonic seconds */
/* Process-wide seconds spent in the model pipeline's phases, summed over
 * calls: for the benchmarks (bench/), not for results. The layer-error
 * diagnostic is counted here (diag); the pipeline adds forward passes, H
 * accumulation and the solve (qerr_quantize minus diag). */
typedef struct qerr_phase_times {
    double forward, gram, solve, diag;
} qerr_phase_times;
extern qerr_phase_times qerr__phase_times;

#endif /* QERR_METHOD_H */
