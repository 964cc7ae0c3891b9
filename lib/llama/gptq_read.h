/* Reading GPTQ checkpoint directories (lib/llama/gptq_read.c): the
 * quantization settings from config.json's "quantization_config" (or an
 * older quantize_config.json), and every module's qweight, qzeros, scales
 * and g_idx dequantized into a float32 weight. Never installed. */
#ifndef QERR_LLAMA_GPTQ_READ_H
#define QERR_LLAMA_GPTQ_READ_H

#include "model.h"

typedef struct qerr_gptq_cfg {
    bool on;            /* the directory is a GPTQ checkpoint */
    int bits;           /* 2, 3, 4 or 8 */
    int64_t group_size; /* > 0, or -1 for one group per row */
    bool desc_act;      /* g_idx may be any column -> group map */
    bool sym;
    bool v2;            /* checkpoint_format "gptq_v2": zeros stored as is */
} qerr_gptq_cfg;

/* Settings of the checkpoint in `dir` whose parsed config.json is `config`:
 * out->on = false for a plain model. A quantization method other than GPTQ,
 * or GPTQ settings this reader cannot compute exactly, are refused by name. */
int qerr__gptq_cfg_read(const char *dir, const qerr_json *config, qerr_gptq_cfg *out);
/* True for the names of GPTQ module tensors (.qweight, .qzeros, .scales,
 * .g_idx), which qerr__gptq_load consumes. */
bool qerr__gptq_is_part(const char *name);
/* Dequantize one module `prefix` (names in messages): weight[n][k] =
 * scales[g][n] * (q[k][n] - z[g][n]) with g = g_idx[k], in float32 (exact:
 * a float16 scale times an integer of at most 9 bits). g_idx may be NULL
 * when !desc_act (then g = k / group_size). *out: float32 [out, in]. */
int qerr__gptq_dequant(const qerr_gptq_cfg *g, const char *what, const char *prefix,
                       const qerr_st_entry *qweight, const qerr_st_entry *qzeros,
                       const qerr_st_entry *scales, const qerr_st_entry *g_idx,
                       qerr_tensor **out);
/* Every module with a .qweight in files[0..nfiles) becomes entry
 * "<prefix>.weight" of m (file_dtype = the scales' dtype); a part without
 * its .qweight, or a missing part, is an error naming the tensor. */
int qerr__gptq_load(qerr_model *m, int cap, const qerr_gptq_cfg *g, const char *dir,
                    const qerr_st_file *files, int nfiles);

#endif /* QERR_LLAMA_GPTQ_READ_H */
