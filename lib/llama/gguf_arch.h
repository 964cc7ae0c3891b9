/* How a LLaMA model is laid out in a GGUF file (llama.cpp's names, keys and
 * its converter's Q/K row order): shared by the GGUF model reader here and
 * the GGUF writer in lib/export. */
#ifndef QERR_LLAMA_GGUF_ARCH_H
#define QERR_LLAMA_GGUF_ARCH_H

#include "model.h"

/* llama.cpp's name of a Hugging Face tensor name and back
 * ("model.layers.3.self_attn.q_proj.weight" <-> "blk.3.attn_q.weight");
 * false when the name has no counterpart. */
bool qerr__gguf_name_from_hf(const char *hf, char *out, size_t cap);
bool qerr__gguf_name_to_hf(const char *gguf, char *out, size_t cap);

/* llama.cpp's converter stores q_proj and k_proj rows of each head with the
 * two RoPE halves interleaved (row 2i + j of a head is Hugging Face row
 * j * head_dim / 2 + i). The Hugging Face row of GGUF row r: */
int64_t qerr__gguf_qk_source_row(int64_t r, int64_t head_dim);
/* True for the tensors that row order applies to. */
bool qerr__gguf_is_qk(const char *hf_name);

/* Read a GGUF file of architecture "llama" into m (cfg and float32
 * entries, Hugging Face names, Q/K rows back in Hugging Face order, tied
 * embeddings as an alias); m->entries is allocated here. Types libqerr
 * cannot dequantize and architectures it does not run are refused by name. */
int qerr__model_read_gguf(qerr_model *m, const char *path);

#endif
