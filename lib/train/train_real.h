/* Templated declarations of the training kernels; included twice by train.h
 * (R = float, names _f; R = double, names _d). No include guard on purpose.
 * Conventions: row-major; "(+=)" outputs accumulate, "(=)" are overwritten;
 * gradient outputs may be NULL when not wanted; parameters and their
 * gradients are double in both variants. */

/* ---- pieces (ops_impl.h) -------------------------------------------------- */
/* y = x * w / rms(x), rinv[r] = 1/sqrt(mean(x_r^2) + eps). */
void TR_(qerr__rmsnorm_fwd)(int64_t rows, int64_t n, const R *x, const R *w, double eps, R *y,
                            R *rinv);
/* gx (+=), gw (+=). */
void TR_(qerr__rmsnorm_bwd)(int64_t rows, int64_t n, const R *x, const R *w, const R *rinv,
                            const R *gy, R *gx, R *gw);
/* y (=) x w^T, x [rows, in], w [out, in]. */
void TR_(qerr__linear_fwd)(int64_t rows, int64_t in, int64_t out, const R *x, const R *w, R *y);
/* gx (+=) gy w, gw (+=) gy^T x. */
void TR_(qerr__linear_bwd)(int64_t rows, int64_t in, int64_t out, const R *x, const R *w,
                           const R *gy, R *gx, R *gw);
/* cos/sin [seq, head_dim/2] of Hugging Face's rotary embedding
 * (inv_freq = theta^(-2i/d) in float32, as HF computes it; a linear or
 * llama3 `scaled` rope, may be NULL, takes qerr__rope_inv_freq instead). */
void TR_(qerr__rope_table)(int64_t seq, int64_t head_dim, double theta, const qerr_rope *scaled,
                           R *cos_t, R *sin_t);
/* In place on x [batch*seq, nheads*head_dim], rotate_half convention;
 * transpose != 0 applies the inverse rotation (the backward). */
void TR_(qerr__rope)(int64_t batch, int64_t seq, int64_t nheads, int64_t head_dim,
                     const R *cos_t, const R *sin_t, R *x, int transpose);
/* Causal grouped-query attention per sequence: q [rows, H*d], k, v
 * [rows, KV*d]; p (=) softmax probabilities [batch, H, seq, seq]; o (=)
 * [rows, H*d]. Head h reads kv head h / (H/KV) (HF repeat_kv). */
void TR_(qerr__attention_fwd)(int64_t batch, int64_t seq, int64_t heads, int64_t kv_heads,
                              int64_t head_dim, const R *q, const R *k, const R *v, R *p, R *o);
/* gq, gk, gv (=). Needs a seq*seq scratch; QERR_E_NOMEM otherwise. */
int TR_(qerr__attention_bwd)(int64_t batch, int64_t seq, int64_t heads, int64_t kv_heads,
                             int64_t head_dim, const R *q, const R *k, const R *v, const R *p,
                             const R *go, R *gq, R *gk, R *gv);
/* m (=) silu(g) * u. */
void TR_(qerr__swiglu_fwd)(int64_t n, const R *g, const R *u, R *m);
/* gg, gu (=). */
void TR_(qerr__swiglu_bwd)(int64_t n, const R *g, const R *u, const R *gm, R *gg, R *gu);

/* ---- fake quantization with STE (fakequant_impl.h) ------------------------ */
/* y (=) fake-quantized x [rows, cols] per (row, group). `clip` holds the raw
 * sigmoid parameters (a = max side, b = min side) as pairs, one per
 * qerr__fq_clip_pairs; NULL only with QERR_FQ_CLIP_NONE. */
void TR_(qerr__fq_fwd)(const qerr_fq_spec *spec, int64_t rows, int64_t cols, const double *clip,
                       const R *x, R *y);
/* STE backward (algorithms.md §0.3): round passes the gradient, clamped codes
 * pass none to x but feed the scale; the scale's gradient reaches the clip
 * parameters and, through max/min, the arg-max/arg-min elements of x; the
 * zero point is a constant. gx (=), gclip (+=). */
int TR_(qerr__fq_bwd)(const qerr_fq_spec *spec, int64_t rows, int64_t cols, const double *clip,
                      const R *x, const R *gy, R *gx, double *gclip);

/* ---- Kronecker transform (kron_impl.h) ------------------------------------ */
/* y (=) (x .* c) (P1 (x) P2) per row: with the row reshaped row-major to
 * X (n1 x n2), Y = P1^T X P2. c (length n1*n2) may be NULL. */
int TR_(qerr__kron_fwd)(int64_t rows, int64_t n1, int64_t n2, const R *p1, const R *p2,
                        const R *c, const R *x, R *y);
/* gx (=), gp1, gp2, gc (+=, double). */
int TR_(qerr__kron_bwd)(int64_t rows, int64_t n1, int64_t n2, const R *p1, const R *p2,
                        const R *c, const R *x, const R *gy, R *gx, double *gp1, double *gp2,
                        double *gc);

/* ---- decoder block (block_impl.h) ----------------------------------------- */
typedef struct TR_(qerr_block_weights_s) {
    const R *w[QERR_LIN_COUNT]; /* [out, in] each, QERR_LIN_* order */
    const R *ln1, *ln2;         /* input and post-attention RMSNorm weights */
    const R *b[QERR_LIN_COUNT]; /* [out] biases: read only where cfg.bias[l] (constants) */
    const R *qn, *kn;           /* [head_dim] q/k norms: read only with cfg.qk_norm */
} TR_(qerr_block_weights);

/* Where backward puts weight gradients (+=); NULL = not trainable. */
typedef struct TR_(qerr_block_grads_s) {
    R *w[QERR_LIN_COUNT];
    R *ln1, *ln2;
} TR_(qerr_block_grads);

/* Hooks a method inserts. A site whose bit is clear in act_mask is the
 * identity; a linear whose bit is clear in weight_mask uses its raw weight.
 * act_fwd: y (=) f(x). act_bwd: gx (=) from gy, and the hook adds the
 * gradients of its own parameters to its own buffers. weight_fwd: weff (=)
 * effective weight from the raw one; weight_bwd gets dL/dweff and handles the
 * chain (including a trainable raw weight). Non-zero status aborts. */
typedef struct TR_(qerr_block_hooks_s) {
    void *user;
    unsigned act_mask, weight_mask;
    int (*act_fwd)(void *user, int site, int64_t rows, int64_t cols, const R *x, R *y);
    int (*act_bwd)(void *user, int site, int64_t rows, int64_t cols, const R *x, const R *gy,
                   R *gx);
    int (*weight_fwd)(void *user, int lin, int64_t out, int64_t in, const R *w, R *weff);
    int (*weight_bwd)(void *user, int lin, int64_t out, int64_t in, const R *w,
                      const R *gweff);
} TR_(qerr_block_hooks);

/* Everything the forward keeps for the backward, for `batch` sequences of
 * `seq` tokens. Readable by callers (e.g. site inputs for statistics). */
typedef struct TR_(qerr_block_cache_s) {
    qerr_block_config cfg;
    int64_t batch, seq, rows;
    R *cos_t, *sin_t;
    R *weff[QERR_LIN_COUNT];
    R *site_in[QERR_SITE_COUNT], *site_out[QERR_SITE_COUNT];
    const R *act[QERR_SITE_COUNT];  /* what the forward used at each site */
    const R *weight[QERR_LIN_COUNT]; /* and for each linear */
    R *r1, *r2;  /* RMSNorm 1/rms per row */
    R *qpre, *kpre, *rq, *rk; /* cfg.qk_norm: q/k before their norms, 1/rms per head row */
    R *p;        /* attention probabilities */
    R *h;        /* x + attention */
    R *g, *u;    /* gate and up outputs */
    R *scratch;  /* backward scratch */
} TR_(qerr_block_cache);

int TR_(qerr__block_cache_create)(const qerr_block_config *cfg, int64_t batch, int64_t seq,
                                  TR_(qerr_block_cache) **out);
void TR_(qerr__block_cache_free)(TR_(qerr_block_cache) *c);
/* y (=) block(x), x and y [batch*seq, hidden] (may not alias). hooks may be
 * NULL. Fills the cache. */
int TR_(qerr__block_forward)(TR_(qerr_block_cache) *c, const TR_(qerr_block_weights) *w,
                             const TR_(qerr_block_hooks) *hooks, const R *x, R *y);
/* After a forward on the same x: gx (=, may be NULL) and the gradients of
 * every trainable weight (grads may be NULL) and hook parameter. */
int TR_(qerr__block_backward)(TR_(qerr_block_cache) *c, const TR_(qerr_block_weights) *w,
                              const TR_(qerr_block_hooks) *hooks, const R *x, const R *gy,
                              R *gx, const TR_(qerr_block_grads) *grads);
