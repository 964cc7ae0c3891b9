/*
 * libqerr export API: write a (quantized) model as another engine's model
 * file. Included by qerr.h; same conventions (int status, qerr_last_error()).
 */
#ifndef QERR_EXPORT_H
#define QERR_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- GGUF (llama.cpp) ---------------------------------------------------- */
/* `type` is a llama-quantize file type, case-insensitive: "F32", "F16",
 * "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_S", "Q3_K_M",
 * "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K" ("Q3_K", "Q4_K",
 * "Q5_K" mean the _M mixes). `mix` says how it spreads over the tensors:
 * "ftype" (NULL or "": llama-quantize's per-tensor rules for that file type),
 * "pure" (every 2-D weight gets the type's base type) or "layers" (only the
 * linear layers of the blocks; token_embd and output stay F32). A tensor
 * whose rows do not fill the type's blocks falls back as llama-quantize
 * does (docs/gguf.md). */

/* The ggml type ("Q6_K", "F16", "F32", ...) that tensor `name` (a Hugging
 * Face name of `m`) gets in a GGUF file of this type and mix, copied into
 * buf. */
QERR_API int qerr_gguf_tensor_type(const qerr_model *m, const char *type, const char *mix,
                                   const char *name, char *buf, size_t cap);

/* Quantize `m` for a GGUF file: runs qerr_model_quantize with the plan
 * "ggml:type=<base>[,ggml_opts]" and one override per tensor whose type
 * differs (the mix), calibrated as qerr_model_quantize is; tensors without
 * calibration (an untied token embedding) are quantized with H = I. F32 and
 * F16 give an empty qmodel. `ggml_opts` (may be NULL) adds keys of the ggml
 * method to every spec. */
QERR_API int qerr_gguf_quantize(qerr_ctx *ctx, const qerr_model *m, const char *type,
                                const char *mix, const char *ggml_opts, const uint32_t *tokens,
                                int64_t count, int64_t nsamples, int64_t seqlen,
                                qerr_qmodel **out);

/* Write `m` as a GGUF v3 file that llama.cpp loads (architecture "llama"):
 * its metadata keys and tensor names, q_proj / k_proj rows in the order of
 * llama.cpp's converter, one token_embd for tied embeddings, a vocabulary
 * of token ids (byte pieces, then placeholders). Tensors of a quantized type
 * come from `q` (results of qerr_gguf_quantize; q may be NULL for F32 and
 * F16), the rest from m's float weights. Written to a temporary file and
 * renamed: on any error no file appears under `path`. */
QERR_API int qerr_gguf_save(const qerr_model *m, const qerr_qmodel *q, const char *type,
                            const char *mix, const char *path);

/* ---- GPTQ checkpoints (transformers, vLLM, ExLlamaV2) -------------------- */
/* Write `m` with the linear layers quantized in `q` to the directory `dir`
 * as a GPTQ checkpoint that transformers, vLLM, ExLlamaV2, AutoGPTQ and
 * GPTQModel load: model.safetensors with qweight / qzeros / scales (float16)
 * / g_idx for every quantized linear layer and every other tensor (biases
 * included) in the dtype it had in the model's files; config.json with
 * "quantization_config"; quantize_config.json; the tokenizer and generation
 * files of the model's directory copied. checkpoint_format is "gptq" (zero
 * points stored minus one; NULL means this) or "gptq_v2" (stored as is).
 * `q` must quantize every decoder linear layer (lm_head optionally) with
 * one bits value in {2, 3, 4, 8} and one group size, without outliers or
 * learned transforms; anything else is refused naming the tensor. The
 * directory is written under a temporary name and renamed into place; `dir`
 * must not exist or be empty. qerr_model_load reads it back. See
 * docs/gptq-checkpoints.md. Scales are stored as float16: rounded unless
 * they already are float16 values (see qerr_export_gptq_ctx). */
QERR_API int qerr_export_gptq(const qerr_model *m, const qerr_qmodel *q, const char *dir,
                              const char *checkpoint_format);
/* qerr_export_gptq with a context for its log (ctx may be NULL: no log).
 * Scales that are not float16 values are rounded, as the format needs, so
 * the checkpoint's weights differ from the results in `q`; this logs a
 * QERR_LOG_WARN saying how many. Quantizing with scale_dtype=f16 in the plan
 * (rtn, gptq, quantease, quantease_outlier) fits float16 scales before the
 * codes are chosen, and the checkpoint then holds exactly the results. */
QERR_API int qerr_export_gptq_ctx(qerr_ctx *ctx, const qerr_model *m, const qerr_qmodel *q,
                                  const char *dir, const char *checkpoint_format);

#ifdef __cplusplus
}
#endif

#endif /* QERR_EXPORT_H */
