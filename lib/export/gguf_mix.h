/* Which ggml type each tensor of a GGUF file gets: llama-quantize's file
 * types ("Q4_K_M", ...) and its per-tensor rules (gguf_mix.c). */
#ifndef QERR_EXPORT_GGUF_MIX_H
#define QERR_EXPORT_GGUF_MIX_H

#include "../io/ggml_blocks.h"

/* How the file type spreads over the tensors. */
enum {
    QERR_MIX_FTYPE,  /* llama-quantize's default rules for the file type */
    QERR_MIX_PURE,   /* every 2-D weight the file type's base type (llama-quantize --pure) */
    QERR_MIX_LAYERS  /* the linears of the blocks only; token_embd and output stay F32 */
};

typedef struct qerr_gguf_mix {
    const char *name; /* canonical file type name, "Q4_K_M" */
    int ftype;        /* llama.cpp's llama_ftype number (general.file_type) */
    int base;         /* QERR_GGML_*: the type most tensors get */
    int mix;          /* QERR_MIX_* */
    int64_t n_layer, n_gqa;
    bool tied;
} qerr_gguf_mix;

/* Parse a file type name (case-insensitive; "Q4_K" means Q4_K_M, "Q3_K"
 * Q3_K_M, "Q5_K" Q5_K_M, as llama-quantize's aliases) and a mix name
 * ("ftype", "pure", "layers"; NULL or "" = "ftype"). */
int qerr__gguf_mix_init(qerr_gguf_mix *mx, const char *type, const char *mix, int64_t n_layer,
                        int64_t n_gqa, bool tied);
/* The type of GGUF tensor `name` whose rows have `cols` elements, after
 * llama-quantize's fallback when cols does not fill the type's blocks. 1-D
 * tensors (norms) are always F32. */
int qerr__gguf_mix_type(const qerr_gguf_mix *mx, const char *name, int ndim, int64_t cols);
/* "Q4_K", "F16", ...; "?" for a type outside QERR_GGML_*. */
const char *qerr__gguf_type_label(int type);

#endif
