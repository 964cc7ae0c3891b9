/* Internal definitions of the model layer (lib/model/): JSON and safetensors
 * readers, the loaded model, the float32 LLaMA forward pass. Shared with the
 * container and CLI code; never installed. */
#ifndef QERR_MODEL_INTERNAL_H
#define QERR_MODEL_INTERNAL_H

#include "../core/internal.h"

/* ---- strict JSON (json.c) ------------------------------------------------ */
enum {
    QERR_JSON_NULL = 1,
    QERR_JSON_BOOL,
    QERR_JSON_NUMBER,
    QERR_JSON_STRING,
    QERR_JSON_ARRAY,
    QERR_JSON_OBJECT
};
#define QERR_JSON_MAX_DEPTH 64
#define QERR_JSON_MAX_BYTES ((size_t)256 << 20)

typedef struct qerr_json {
    int type;
    bool boolean;
    double number;
    bool is_int;      /* number written without fraction/exponent, fits int64 */
    int64_t integer;  /* valid when is_int */
    char *str;        /* STRING: NUL-terminated UTF-8 (never contains NUL) */
    size_t len;       /* STRING: bytes; ARRAY/OBJECT: element count */
    struct qerr_json *items; /* ARRAY elements / OBJECT values */
    char **keys;      /* OBJECT keys (unique), parallel to items */
} qerr_json;

/* Parse exactly one JSON value from text[0..n) (RFC 8259; strings must be
 * valid UTF-8, \u0000 and duplicate object keys are rejected, nesting is
 * capped at QERR_JSON_MAX_DEPTH). `what` names the input in messages. */
int qerr__json_parse(const char *text, size_t n, const char *what, qerr_json **out);
void qerr__json_free(qerr_json *j);
/* Member of an object by key, NULL if absent or j is not an object. */
const qerr_json *qerr__json_get(const qerr_json *j, const char *key);
/* True when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates). */
bool qerr__utf8_valid(const uint8_t *s, size_t n);

/* ---- safetensors (safetensors.c) ----------------------------------------- */
#define QERR_ST_MAX_HEADER ((uint64_t)100 << 20) /* as Hugging Face's reader */
#define QERR_ST_MAX_DIM ((int64_t)1 << 40)

typedef struct qerr_st_entry {
    char *name;
    int dtype; /* QERR_DTYPE_* */
    int ndim;
    int64_t shape[QERR_MAX_DIMS];
    int64_t numel;
    const uint8_t *data; /* inside the mapping, possibly unaligned */
    size_t nbytes;
} qerr_st_entry;

typedef struct qerr_st_file {
    void *map; /* mmap of the file, or NULL for a caller's buffer */
    size_t map_len;
    int n;
    qerr_st_entry *entries;
    int n_meta; /* __metadata__ string pairs */
    char **meta_keys, **meta_values;
} qerr_st_file;

/* Validate and index a safetensors image held in buf[0..len) (borrowed: it
 * must outlive the result). Every failure is QERR_E_FORMAT or
 * QERR_E_UNSUPPORTED with a message naming `what`. */
int qerr__st_parse(const uint8_t *buf, size_t len, const char *what, qerr_st_file *out);
/* mmap `path` read-only and parse it. */
int qerr__st_open(const char *path, qerr_st_file *out);
void qerr__st_close(qerr_st_file *f);
const char *qerr__st_meta(const qerr_st_file *f, const char *key); /* NULL if absent */
/* Convert an entry to float32 (dst holds numel floats). */
void qerr__st_to_f32(const qerr_st_entry *e, float *dst);

/* ---- model (config.c, model.c) ------------------------------------------- */
typedef struct qerr_model_config {
    int64_t hidden, inter, layers, heads, kv_heads, vocab, head_dim;
    bool tied;
    double rope_theta, rms_eps;
} qerr_model_config;

/* Read the LLaMA keys from a parsed config.json; missing or out-of-range
 * values give QERR_E_FORMAT naming the key. */
int qerr__config_from_json(const qerr_json *j, const char *what, qerr_model_config *cfg);

typedef struct qerr_model_entry {
    char *name;
    qerr_tensor *t; /* F32, owned unless `alias` */
    bool alias;     /* shares the tensor of another entry (tied embeddings) */
} qerr_model_entry;

/* Borrowed float32 weights of one decoder layer (row-major [out, in]). */
typedef struct qerr_layer_weights {
    const float *attn_norm, *mlp_norm;
    const float *q, *k, *v, *o;
    const float *gate, *up, *down;
} qerr_layer_weights;

/* Per-layer run-time state of a weight-activation quantized layer (online
 * transforms, activation / KV quantizers, folded norms), set by
 * qerr_model_apply from block-wise results (lib/model/deployed.c). */
typedef struct qerr_layer_rt qerr_layer_rt;

struct qerr_model_s {
    qerr_model_config cfg;
    int n;
    qerr_model_entry *entries;
    qerr_layer_rt **rt; /* [layers] or NULL; rt[l] NULL = plain float layer */
};

/* Entry index by name, or -1. */
int qerr__model_find(const qerr_model *m, const char *name);
/* Float32 data of a named tensor, NULL if absent. */
float *qerr__model_data(const qerr_model *m, const char *name);
/* Weights of layer `l` (all present: checked at load). */
void qerr__model_layer(const qerr_model *m, int64_t l, qerr_layer_weights *w);

/* ---- forward pass (forward.c) -------------------------------------------- */
/* The seven linear layers of a decoder layer, in pipeline order. */
enum { QERR_LIN_Q, QERR_LIN_K, QERR_LIN_V, QERR_LIN_O, QERR_LIN_GATE, QERR_LIN_UP, QERR_LIN_DOWN,
       QERR_LIN_COUNT };
extern const char *const qerr__lin_names[QERR_LIN_COUNT]; /* "self_attn.q_proj", ... */

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
 * run-time state, then the deployed block (lib/model/deployed.c). */
int qerr__model_layer_run(const qerr_ctx *ctx, const qerr_model *m, int64_t l, float *X,
                          int64_t nwin, int64_t T);
/* Build the run-time state of layer l from its seven results r[QERR_LIN_*]
 * (any may be NULL): *out stays NULL when they carry no online transform.
 * ln1/ln2 are the layer's float norms. */
int qerr__layer_rt_from_results(const qerr_model_config *cfg, const qerr_result *const r[7],
                                qerr_layer_rt **out);
/* The deployed layer on X in place, with its (dequantized) linear weights w. */
int qerr__layer_rt_forward(const qerr_model_config *cfg, const qerr_layer_rt *rt,
                           const qerr_layer_weights *w, float *X, int64_t nwin, int64_t T);
void qerr__layer_rt_free(qerr_layer_rt *rt);
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

#endif /* QERR_MODEL_INTERNAL_H */
