/* llama-quantize's choice of a type per tensor (llama.cpp src/llama-quant.cpp,
 * llama_tensor_get_type_impl for a dense model: one expert, not Falcon, not
 * 70B), so that a file libqerr writes at "Q4_K_M" has the same tensor types,
 * and the same size, as llama-quantize's. llama-quantize visits tensors in
 * the order of their names, so "the i-th attn_v" counts blk.10 before blk.2;
 * the rank below reproduces that. Quantized with calibration data, libqerr
 * always counts as having an importance matrix (llama.cpp's has_imatrix). */
#include "gguf_mix.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    int ftype, base;
} ftypes[] = {
    {"F32", 0, QERR_GGML_F32},     {"F16", 1, QERR_GGML_F16},     {"Q4_0", 2, QERR_GGML_Q4_0},
    {"Q4_1", 3, QERR_GGML_Q4_1},   {"Q8_0", 7, QERR_GGML_Q8_0},   {"Q5_0", 8, QERR_GGML_Q5_0},
    {"Q5_1", 9, QERR_GGML_Q5_1},   {"Q2_K", 10, QERR_GGML_Q2_K},  {"Q3_K_S", 11, QERR_GGML_Q3_K},
    {"Q3_K_M", 12, QERR_GGML_Q3_K}, {"Q3_K_L", 13, QERR_GGML_Q3_K}, {"Q4_K_S", 14, QERR_GGML_Q4_K},
    {"Q4_K_M", 15, QERR_GGML_Q4_K}, {"Q5_K_S", 16, QERR_GGML_Q5_K}, {"Q5_K_M", 17, QERR_GGML_Q5_K},
    {"Q6_K", 18, QERR_GGML_Q6_K},
};
enum { FT_Q4_0 = 2, FT_Q5_0 = 8, FT_Q2_K = 10, FT_Q3_K_M = 12, FT_Q3_K_L = 13, FT_Q4_K_S = 14,
       FT_Q4_K_M = 15, FT_Q5_K_M = 17 };

static const struct {
    const char *alias, *name;
} aliases[] = {{"Q3_K", "Q3_K_M"}, {"Q4_K", "Q4_K_M"}, {"Q5_K", "Q5_K_M"}};

const char *qerr__gguf_type_label(int type) {
    const char *name = qerr__ggml_type_name(type);
    return name ? name : "?";
}

int qerr__gguf_mix_init(qerr_gguf_mix *mx, const char *type, const char *mix, int64_t n_layer,
                        int64_t n_gqa, bool tied) {
    memset(mx, 0, sizeof *mx);
    QERR_CHECK(type, QERR_E_INVALID_ARG, "GGUF file type is NULL");
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcasecmp(type, aliases[i].alias) == 0) type = aliases[i].name;
    for (size_t i = 0; i < sizeof ftypes / sizeof ftypes[0] && !mx->name; i++)
        if (strcasecmp(type, ftypes[i].name) == 0) {
            mx->name = ftypes[i].name;
            mx->ftype = ftypes[i].ftype;
            mx->base = ftypes[i].base;
        }
    QERR_CHECK(mx->name, QERR_E_INVALID_ARG,
               "unknown GGUF type '%.32s' (F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S, "
               "Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K; Q3_K, Q4_K and Q5_K mean "
               "the _M mixes)",
               type);
    if (!mix || !*mix || strcasecmp(mix, "ftype") == 0) mx->mix = QERR_MIX_FTYPE;
    else if (strcasecmp(mix, "pure") == 0) mx->mix = QERR_MIX_PURE;
    else if (strcasecmp(mix, "layers") == 0) mx->mix = QERR_MIX_LAYERS;
    else
        return qerr__fail(QERR_E_INVALID_ARG, "unknown GGUF mix '%.32s' (ftype, pure, layers)",
                          mix);
    mx->n_layer = n_layer;
    mx->n_gqa = n_gqa;
    mx->tied = tied;
    return QERR_OK;
}

/* Position of layer l when the names "blk.<i>." are sorted as strings. */
static int64_t name_rank(int64_t l, int64_t n) {
    char a[32], b[32];
    snprintf(a, sizeof a, "%lld.", (long long)l);
    int64_t rank = 0;
    for (int64_t i = 0; i < n; i++) {
        snprintf(b, sizeof b, "%lld.", (long long)i);
        rank += strcmp(b, a) < 0;
    }
    return rank;
}

static bool more_bits(int64_t i, int64_t n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* llama_tensor_get_type_impl for the categories a dense llama has. */
static int rule(const qerr_gguf_mix *mx, const char *name, int64_t cols) {
    const int ft = mx->ftype;
    int t = mx->base;
    const bool output = strcmp(name, "output.weight") == 0;
    const bool embd = strcmp(name, "token_embd.weight") == 0;
    if (output || (embd && mx->tied)) {
        if (cols % qerr__ggml_block_elems(t) != 0) return QERR_GGML_Q8_0;
        return t == QERR_GGML_Q8_0 ? QERR_GGML_Q8_0 : QERR_GGML_Q6_K;
    }
    if (embd) return t;
    long long l = -1;
    if (sscanf(name, "blk.%lld.", &l) != 1 || l < 0) return t;
    const int64_t i = name_rank(l, mx->n_layer), n = mx->n_layer;
    if (strstr(name, ".attn_v.")) {
        if (ft == FT_Q2_K) t = mx->n_gqa >= 4 ? QERR_GGML_Q4_K : QERR_GGML_Q3_K;
        else if (ft == FT_Q3_K_M) t = i < 2 ? QERR_GGML_Q5_K : QERR_GGML_Q4_K;
        else if (ft == FT_Q3_K_L) t = QERR_GGML_Q5_K;
        else if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) && more_bits(i, n)) t = QERR_GGML_Q6_K;
        else if (ft == FT_Q4_K_S && i < 4) t = QERR_GGML_Q5_K;
    } else if (strstr(name, ".ffn_down.")) {
        if (ft == FT_Q2_K) t = QERR_GGML_Q3_K;
        else if (ft == FT_Q3_K_M) t = i < n / 16 ? QERR_GGML_Q5_K : QERR_GGML_Q4_K;
        else if (ft == FT_Q3_K_L) t = QERR_GGML_Q5_K;
        else if (ft == FT_Q4_K_M) t = more_bits(i, n) ? QERR_GGML_Q6_K : t;
        else if (ft == FT_Q5_K_M && more_bits(i, n)) t = QERR_GGML_Q6_K;
        else if (ft == FT_Q4_K_S && i < n / 8) t = QERR_GGML_Q5_K;
        else if ((ft == FT_Q4_0 || ft == FT_Q5_0) && i < n / 8)
            t = ft == FT_Q4_0 ? QERR_GGML_Q4_1 : QERR_GGML_Q5_1;
    } else if (strstr(name, ".attn_output.")) {
        if (ft == FT_Q2_K) t = QERR_GGML_Q3_K;
        else if (ft == FT_Q3_K_M) t = QERR_GGML_Q4_K;
        else if (ft == FT_Q3_K_L) t = QERR_GGML_Q5_K;
    }
    return t;
}

/* tensor_type_fallback of the llama.cpp that node-llama-cpp 3.21.1 ships: a
 * k-quant whose blocks do not fit goes to a 32-block type, and a type that
 * still does not fit to F16. */
static int fallback(int t, int64_t cols) {
    if (cols % qerr__ggml_block_elems(t) == 0) return t;
    switch (t) {
    case QERR_GGML_Q2_K:
    case QERR_GGML_Q3_K: t = QERR_GGML_Q4_0; break;
    case QERR_GGML_Q4_K: t = QERR_GGML_Q5_0; break;
    case QERR_GGML_Q5_K: t = QERR_GGML_Q5_1; break;
    case QERR_GGML_Q6_K: t = QERR_GGML_Q8_0; break;
    default: break;
    }
    return cols % qerr__ggml_block_elems(t) == 0 ? t : QERR_GGML_F16;
}

int qerr__gguf_mix_type(const qerr_gguf_mix *mx, const char *name, int ndim, int64_t cols) {
    if (ndim < 2 || mx->base == QERR_GGML_F32) return QERR_GGML_F32;
    if (mx->base == QERR_GGML_F16) return QERR_GGML_F16;
    int t;
    if (mx->mix == QERR_MIX_LAYERS) t = strncmp(name, "blk.", 4) == 0 ? mx->base : QERR_GGML_F32;
    else if (mx->mix == QERR_MIX_PURE) t = mx->base;
    else t = rule(mx, name, cols);
    return t == QERR_GGML_F32 ? t : fallback(t, cols);
}
