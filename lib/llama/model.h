/* Internal definitions of the architecture layer (lib/llama/): the config,
 * the loaded model, the float32 LLaMA forward pass. Never installed. */
#ifndef QERR_LLAMA_MODEL_H
#define QERR_LLAMA_MODEL_H

#include "../core/internal.h"
#include "../io/io.h"

#include <pthread.h>

/* ---- model (config.c, model.c) ------------------------------------------- */
/* The seven linear layers of a decoder layer, in pipeline order. */
enum { QERR_LIN_Q, QERR_LIN_K, QERR_LIN_V, QERR_LIN_O, QERR_LIN_GATE, QERR_LIN_UP, QERR_LIN_DOWN,
       QERR_LIN_COUNT };
extern const char *const qerr__lin_names[QERR_LIN_COUNT]; /* "self_attn.q_proj", ... */

/* Rotary position embedding (Hugging Face's rope_type). */
enum { QERR_ROPE_DEFAULT = 0, QERR_ROPE_LINEAR, QERR_ROPE_LLAMA3 };
typedef struct qerr_rope {
    int type;      /* QERR_ROPE_* */
    double theta;  /* base */
    double factor; /* linear, llama3 */
    double low_freq_factor, high_freq_factor, original_max; /* llama3 */
} qerr_rope;
/* inv_freq of pair i of a head of head_dim: theta^(-2i/d) in double, then
 * the scaling of the rope type (rope.c). */
double qerr__rope_inv_freq(const qerr_rope *r, int64_t i, int64_t head_dim);

typedef struct qerr_model_config {
    int64_t hidden, inter, layers, heads, kv_heads, vocab, head_dim;
    bool tied;
    double rms_eps;
    qerr_rope rope;
    const char *model_type;     /* static string: "llama", "mistral", "qwen2", "qwen3" */
    bool bias[QERR_LIN_COUNT];  /* the linear layer has a bias vector */
    bool qk_norm;               /* per-head RMSNorm of q and k before RoPE (Qwen3) */
    int64_t sliding_window;     /* > 0: windows longer than this are refused */
} qerr_model_config;
/* Shape [out, in] of linear `lin` of a decoder layer (its bias has out values). */
void qerr__lin_shape(const qerr_model_config *c, int lin, int64_t *out, int64_t *in);

/* Read a LLaMA-family config.json (transformers 4 or 5 form): every key is
 * either read, known to leave the computation unchanged, or refused by name.
 * Missing or out-of-range values give QERR_E_FORMAT naming the key; keys and
 * values that would change the model beyond what the forward pass computes
 * give QERR_E_UNSUPPORTED. */
int qerr__config_from_json(const qerr_json *j, const char *what, qerr_model_config *cfg);
/* QERR_E_UNSUPPORTED when windows of T tokens would be cut by the model's
 * sliding-window attention (`what` names the caller). */
int qerr__config_check_window(const qerr_model_config *cfg, int64_t T, const char *what);
/* Whether the model has biases or q/k norms (what the block engine lacks);
 * when it has, `why` gets the first such tensor's description. */
bool qerr__config_has_extras(const qerr_model_config *cfg, char *why, size_t cap);

/* A model tensor. Its bytes stay in the mapped safetensors shard in their
 * stored dtype (src); the float32 copy (t) is made on first use and, for a
 * decoder layer's tensors on a streaming model, dropped again when the layer
 * is released (model.c). */
typedef struct qerr_model_entry {
    char *name;
    qerr_tensor *t;            /* float32 copy once materialized, else NULL */
    bool alias;                /* answers with entries[owner]'s data (tied embeddings) */
    int owner;                 /* entry that holds the data: itself unless alias */
    const qerr_st_entry *src;  /* stored bytes (inside m->files), NULL once replaced */
    int64_t layer;             /* decoder layer of the tensor, -1 for the others */
    bool pinned;               /* handed out or rewritten (apply): never released */
    int ndim;
    int64_t shape[QERR_MAX_DIMS];
    int file_dtype;            /* QERR_DTYPE_* it had in the file (what writers keep) */
} qerr_model_entry;

/* Borrowed float32 weights of one decoder layer (row-major [out, in]). */
typedef struct qerr_layer_weights {
    const float *attn_norm, *mlp_norm;
    const float *q, *k, *v, *o;
    const float *gate, *up, *down;
    const float *bias[QERR_LIN_COUNT]; /* [out] each, NULL where the layer has none */
    const float *q_norm, *k_norm;      /* [head_dim], NULL without q/k norms */
} qerr_layer_weights;

/* Per-layer run-time state of a weight-activation quantized layer (online
 * transforms, activation / KV quantizers, folded norms), set by
 * qerr_model_apply from block-wise results (lib/pipeline/deployed.c). This
 * layer only runs and frees it, through the model's rt_ops. */
typedef struct qerr_layer_rt qerr_layer_rt;
typedef struct qerr_layer_rt_ops {
    /* The deployed layer on X [nwin * T, hidden] in place, with its
     * (dequantized) linear weights w. */
    int (*forward)(const qerr_model_config *cfg, const qerr_layer_rt *rt,
                   const qerr_layer_weights *w, float *X, int64_t nwin, int64_t T);
    void (*free)(qerr_layer_rt *rt);
} qerr_layer_rt_ops;

struct qerr_model_s {
    qerr_model_config cfg;
    char *dir; /* directory it was loaded from (config, tokenizer files) */
    int n;
    qerr_model_entry *entries;
    qerr_layer_rt **rt; /* [layers] or NULL; rt[l] NULL = plain float layer */
    const qerr_layer_rt_ops *rt_ops; /* set with rt */
    qerr_st_file *files; /* the mapped shards, open until qerr_model_free */
    int nfiles;
    bool streaming;      /* release a layer's float32 copies after each use */
    int *layer_refs;     /* [layers]: holders of qerr__model_layer_acquire */
    pthread_mutex_t lock; /* materialization and release (read-only users share m) */
};

/* Append an entry (name copied; t owned unless alias, freed on failure);
 * cap is the size of m->entries. file_dtype starts as t's dtype. */
int qerr__model_add(qerr_model *m, int cap, const char *name, qerr_tensor *t, bool alias);
/* Entry index by name, or -1. */
int qerr__model_find(const qerr_model *m, const char *name);
/* Float32 data of a named tensor, made on first use; NULL if absent or out
 * of memory (message set). Not released by qerr__model_layer_release. */
float *qerr__model_data(const qerr_model *m, const char *name);
/* Weights of layer `l`, materialized and pinned for the model's lifetime
 * (tests, tools); library code uses the acquire/release pair below. */
void qerr__model_layer(const qerr_model *m, int64_t l, qerr_layer_weights *w);
/* Weights of layer `l` in float32, valid until the matching release; on a
 * streaming model the last release frees them again. */
int qerr__model_layer_acquire(const qerr_model *m, int64_t l, qerr_layer_weights *w);
void qerr__model_layer_release(const qerr_model *m, int64_t l);
/* Append an entry whose float32 data is already in memory (GGUF reader):
 * `name` (malloc'ed) and t are taken; with alias_of >= 0, t is NULL and the
 * entry answers with that entry's data. Such tensors are never released. */
void qerr__model_add_loaded(qerr_model *m, char *name, qerr_tensor *t, int alias_of);
/* Weights of a layer the caller holds acquired (no reference taken). */
void qerr__model_layer_peek(const qerr_model *m, int64_t l, qerr_layer_weights *w);
/* Rows idx[0..n) of the 2-D tensor `name` in float32 into dst, from its
 * float32 copy when one exists, else straight from the stored bytes (so the
 * embedding table need not be converted as a whole). */
int qerr__model_rows(const qerr_model *m, const char *name, const uint32_t *idx, int64_t n,
                     float *dst);
/* CRC of the configuration, tensor names, shapes and leading stored bytes. */
uint32_t qerr__model_fingerprint(const qerr_model *m);
/* Bytes of the float32 copy of one decoder layer / of every tensor. */
int64_t qerr__model_layer_bytes(const qerr_model *m);
int64_t qerr__model_f32_bytes(const qerr_model *m);

/* ---- forward pass (forward.c) -------------------------------------------- */
/* Rows where a layer's linear inputs are seen (for calibration): called with
 * the rows x in_features input of QERR_LIN_Q (shared by q/k/v), QERR_LIN_O,
 * QERR_LIN_GATE (shared by gate/up) and QERR_LIN_DOWN. Non-zero status stops
 * the pass. */
typedef int (*qerr_tap_fn)(void *user, int lin, const float *rows, int64_t nrows, int64_t cols);

/* Run decoder layer `w` in place on X [nwin * T, hidden] (nwin windows of T
 * tokens, positions restart at 0 in each). `tap` may be NULL. With
 * stop_after = a QERR_LIN_* tap point, the pass stops right after that tap
 * and X is left unchanged (calibration of one stage); -1 runs the layer.
 * Works through the windows in chunks so scratch memory stays bounded. */
int qerr__layer_forward(const qerr_ctx *ctx, const qerr_model_config *cfg,
                        const qerr_layer_weights *w, float *X, int64_t nwin, int64_t T,
                        qerr_tap_fn tap, void *tap_user, int stop_after);
/* The same, able to save or reuse the attention half: h1_save (may be NULL)
 * receives h1 = X + attention(X) [nwin * T, hidden] whenever the pass gets
 * past o_proj; with h1_from (may be NULL) the pass starts from a saved h1
 * and runs only the MLP half (X is still the layer's input; with
 * stop_after = -1 it becomes h1 + mlp(h1)). Used by the quantization
 * pipeline so the later stages need not rerun attention. */
int qerr__layer_forward_ex(const qerr_ctx *ctx, const qerr_model_config *cfg,
                           const qerr_layer_weights *w, float *X, int64_t nwin, int64_t T,
                           qerr_tap_fn tap, void *tap_user, int stop_after, float *h1_save,
                           const float *h1_from);
/* Run decoder layer l of the model in place on X [nwin * T, hidden]: the
 * float layer (qerr__layer_forward, bit-identical) unless the layer has
 * run-time state, then its deployed forward (m->rt_ops). */
int qerr__model_layer_run(const qerr_ctx *ctx, const qerr_model *m, int64_t l, float *X,
                          int64_t nwin, int64_t T);
/* Drop every layer's run-time state (back to the float forward). */
void qerr__model_rt_clear(qerr_model *m);

/* X [rows, hidden] = embedding rows of tokens (ids < vocab, checked). */
int qerr__embed(const qerr_model *m, const uint32_t *tokens, int64_t rows, float *X);
/* In-place RMSNorm of X [rows, d] with weight g. */
void qerr__rmsnorm(float *X, int64_t rows, int64_t d, const float *g, double eps);
/* Logits [rows, vocab] of final hidden states X [rows, hidden] (final norm
 * applied to X in place first). */
int qerr__head(const qerr_model *m, float *X, int64_t rows, float *logits);
/* Greedy decoding: starting from `prompt` (n_prompt >= 1 tokens), append
 * argmax tokens until out holds `total` tokens (out[0..n_prompt) = prompt).
 * Recomputes the full prefix each step: for tests, not speed. */
int qerr__greedy_decode(const qerr_model *m, const uint32_t *prompt, int64_t n_prompt,
                        int64_t total, uint32_t *out);

#endif /* QERR_LLAMA_MODEL_H */
