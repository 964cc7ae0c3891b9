/*
 * libqerr model-level API: read a LLaMA-family model in Hugging Face layout,
 * run it in float32, calibrate and quantize it layer by layer, measure
 * perplexity, and store the quantized tensors in a compressed container.
 * Included by qerr.h; same conventions (int status, qerr_last_error()).
 */
#ifndef QERR_MODEL_H
#define QERR_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- token files --------------------------------------------------------- */
/* Read a file of little-endian uint32 token ids (no header). *tokens is
 * allocated with malloc; free it with qerr_free(). */
QERR_API int qerr_tokens_read(const char *path, uint32_t **tokens, int64_t *count);
/* Free memory that libqerr allocated for the caller (NULL is a no-op). */
QERR_API void qerr_free(void *p);

/* ---- models -------------------------------------------------------------- */
typedef struct qerr_model_s qerr_model;

/* Load `dir`/config.json and `dir`/model.safetensors (or the shards listed in
 * model.safetensors.index.json). The shards are memory-mapped and the weights
 * stay in their stored dtype (F32, F16, BF16); each tensor is converted to
 * float32 when it is first used. The files must not change while the model
 * is loaded. `dir` may also be a GGUF file of architecture "llama" (from
 * libqerr or elsewhere): its tensors are dequantized to float32, exactly as
 * ggml dequantizes them. */
QERR_API int qerr_model_load(qerr_model **out, const char *dir);
QERR_API void qerr_model_free(qerr_model *m);
/* Streaming (on = non-zero): the float32 copies of a decoder layer are
 * dropped as soon as a forward pass, perplexity or quantization is done with
 * that layer, so about one layer is resident at a time. On by default when
 * the model's float32 weights exceed 2 GiB. Tensors returned by
 * qerr_model_tensor or rewritten by qerr_model_apply are never dropped. */
QERR_API int qerr_model_set_streaming(qerr_model *m, int on);
QERR_API int qerr_model_streaming(const qerr_model *m);
/* Number of weights (elements of every tensor, a tied pair counted once),
 * without converting anything. */
QERR_API int64_t qerr_model_param_count(const qerr_model *m);
/* Configuration values by their config.json names: "hidden_size",
 * "intermediate_size", "num_hidden_layers", "num_attention_heads",
 * "num_key_value_heads", "vocab_size", "tie_word_embeddings", "head_dim",
 * "attention_bias" (1 when q_proj has a bias: also Qwen2), "mlp_bias",
 * "qk_norm" (1 for Qwen3's q/k norms), "sliding_window" (0 when no layer
 * uses one) (ints) and "rope_theta", "rms_norm_eps",
 * "rope_scaling.factor", "rope_scaling.low_freq_factor",
 * "rope_scaling.high_freq_factor",
 * "rope_scaling.original_max_position_embeddings" (doubles; 0 where the
 * rope type has no such value), whichever form config.json was in. */
QERR_API int qerr_model_config_int(const qerr_model *m, const char *key, int64_t *value);
QERR_API int qerr_model_config_double(const qerr_model *m, const char *key, double *value);
/* Tensors by their Hugging Face names ("model.layers.0.self_attn.q_proj.weight").
 * The returned float32 tensor is borrowed from the model (valid until it is
 * freed); it is converted on this call and then stays resident, so asking for
 * every tensor of a large model costs its full float32 size. */
QERR_API int qerr_model_tensor_count(const qerr_model *m);
QERR_API const char *qerr_model_tensor_name(const qerr_model *m, int index);
QERR_API int qerr_model_tensor(const qerr_model *m, const char *name, const qerr_tensor **out);

/* Perplexity over `tokens`: floor(count / ctx_len) non-overlapping windows
 * (max_windows > 0 caps them), tokens 1..ctx_len-1 of each window scored,
 * RoPE positions restart at 0 in each window. Any output may be NULL. */
QERR_API int qerr_model_perplexity(qerr_ctx *ctx, const qerr_model *m, const uint32_t *tokens,
                                   int64_t count, int64_t ctx_len, int64_t max_windows,
                                   double *ppl, double *mean_nll, int64_t *scored);

/* ---- quantized models ---------------------------------------------------- */
/* A set of named quantization results plus string metadata. */
typedef struct qerr_qmodel_s qerr_qmodel;

QERR_API int qerr_qmodel_create(qerr_qmodel **out);
QERR_API void qerr_qmodel_free(qerr_qmodel *q);
/* Add `r` under `name`; the qmodel takes ownership of r (also on failure). */
QERR_API int qerr_qmodel_add(qerr_qmodel *q, const char *name, qerr_result *r);
QERR_API int qerr_qmodel_count(const qerr_qmodel *q);
QERR_API const char *qerr_qmodel_name(const qerr_qmodel *q, int index);
/* Borrowed; NULL with QERR_E_NOT_FOUND when absent. */
QERR_API int qerr_qmodel_get(const qerr_qmodel *q, const char *name, const qerr_result **out);
QERR_API int qerr_qmodel_set_meta(qerr_qmodel *q, const char *key, const char *value);
QERR_API const char *qerr_qmodel_meta(const qerr_qmodel *q, const char *key); /* NULL if absent */
/* Versioned container: header, one zlib-compressed, CRC-checked record per
 * tensor; written to a temporary file and renamed. See docs/formats.md. */
QERR_API int qerr_qmodel_save(const qerr_qmodel *q, const char *path);
QERR_API int qerr_qmodel_load(qerr_qmodel **out, const char *path);

/* Calibrate and quantize every linear layer of `m` in true-sequential order
 * (q/k/v share one calibration set, gate/up share one), feeding each layer's
 * quantized outputs to the next. `plan` is the default spec for every linear
 * layer; `overrides` (may be NULL or "") is a ';'-separated list of
 * "pattern=spec" where pattern is a glob over tensor names and spec a plan
 * spec or "float" (keep in float), e.g.
 *   "lm_head=float;model.layers.0.mlp.down_proj*=gptq:bits=8".
 * The first matching pattern wins; a pattern matches the full name or the
 * name without ".weight". lm_head stays float unless a pattern names it.
 * A group_size that does not divide a layer's columns is applied with
 * ragged_groups=1 (shorter last group, logged at QERR_LOG_INFO). The
 * progress callback gets one call per tensor, stage "layer 3/6 mlp.down_proj".
 * Calibration uses `nsamples` windows of `seqlen` tokens at offsets drawn
 * with the ctx seed from `tokens`. */
QERR_API int qerr_model_quantize(qerr_ctx *ctx, const qerr_model *m, const char *plan,
                                 const char *overrides, const uint32_t *tokens, int64_t count,
                                 int64_t nsamples, int64_t seqlen, qerr_qmodel **out);
/* qerr_model_quantize writing straight to the container `path` (format of
 * qerr_qmodel_save) in bounded memory: each decoder layer's results are
 * appended to `path`.partial as soon as the layer is done and then freed;
 * the header is written and the file renamed to `path` at the end, so no
 * partial file ever has the final name. `meta` (may be NULL) holds extra
 * metadata as key, value, ..., NULL, stored after the quantize.* keys.
 * With QERR_QUANTIZE_RESUME, a run that was interrupted (even by kill -9)
 * continues after its last finished layer: the finished layers are replayed
 * from the file, and the result is byte-identical to an uninterrupted run
 * with the same model, calibration tokens, plan, overrides, meta, seed and
 * thread count (a `path`.partial.state from other settings is refused with
 * QERR_E_INVALID_ARG; without one the run starts from the beginning). */
enum { QERR_QUANTIZE_RESUME = 1 };
QERR_API int qerr_model_quantize_file(qerr_ctx *ctx, const qerr_model *m, const char *plan,
                                      const char *overrides, const uint32_t *tokens,
                                      int64_t count, int64_t nsamples, int64_t seqlen,
                                      const char *const *meta, const char *path, unsigned flags);
/* What qerr_model_quantize_file will need, from the model's shape: the peak
 * memory in bytes with the calibration activations in memory (*bytes) and
 * spilled to a temporary file (*bytes_spilled), and the time in seconds from
 * the floating-point work and this machine's measured SGEMM rate (a 0.2 s
 * measurement). The solver terms are GPTQ's; block-wise methods need more.
 * Any output may be NULL. */
QERR_API int qerr_model_quantize_estimate(qerr_ctx *ctx, const qerr_model *m, const char *plan,
                                          int64_t nsamples, int64_t seqlen, uint64_t *bytes,
                                          uint64_t *bytes_spilled, double *seconds);
/* Replace the weights of `m` by the dequantized tensors of `q` (names must
 * exist with matching shapes; nothing changes on failure). With tied
 * embeddings, applying lm_head unties it: the embedding keeps its values. */
QERR_API int qerr_model_apply(qerr_model *m, const qerr_qmodel *q);

#ifdef __cplusplus
}
#endif

#endif /* QERR_MODEL_H */
