/* llama.cpp's tensor names for a LLaMA model (its LLM_TENSOR_* names, as
 * convert_hf_to_gguf.py maps Hugging Face names) and its Q/K row order. */
#include "gguf_arch.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *hf, *gguf;
} global_names[] = {
    {"model.embed_tokens", "token_embd"},
    {"lm_head", "output"},
    {"model.norm", "output_norm"},
};

static const struct {
    const char *hf, *gguf;
} layer_names[] = {
    {"input_layernorm", "attn_norm"},     {"post_attention_layernorm", "ffn_norm"},
    {"self_attn.q_proj", "attn_q"},       {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},       {"self_attn.o_proj", "attn_output"},
    {"mlp.gate_proj", "ffn_gate"},        {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
};

/* Split "<stem>.weight" / "<stem>.bias": returns the suffix, stem length in *n. */
static const char *split_suffix(const char *name, size_t *n) {
    size_t len = strlen(name);
    static const char *const suffixes[] = {".weight", ".bias"};
    for (size_t i = 0; i < 2; i++) {
        size_t k = strlen(suffixes[i]);
        if (len > k && strcmp(name + len - k, suffixes[i]) == 0) {
            *n = len - k;
            return suffixes[i];
        }
    }
    return NULL;
}

static bool stem_is(const char *stem, size_t n, const char *s) {
    return strlen(s) == n && memcmp(stem, s, n) == 0;
}

/* Map one name; from_hf picks the direction. */
static bool map_name(const char *in, char *out, size_t cap, bool from_hf) {
    size_t n;
    const char *suffix = split_suffix(in, &n);
    if (!suffix) return false;
    for (size_t i = 0; i < sizeof global_names / sizeof global_names[0]; i++) {
        const char *a = from_hf ? global_names[i].hf : global_names[i].gguf;
        const char *b = from_hf ? global_names[i].gguf : global_names[i].hf;
        if (stem_is(in, n, a)) return (size_t)snprintf(out, cap, "%s%s", b, suffix) < cap;
    }
    const char *prefix = from_hf ? "model.layers." : "blk.";
    const char *to = from_hf ? "blk." : "model.layers.";
    size_t pl = strlen(prefix);
    if (strncmp(in, prefix, pl) != 0) return false;
    const char *p = in + pl;
    long long l = 0;
    int digits = 0;
    while (p[digits] >= '0' && p[digits] <= '9' && digits < 9) l = l * 10 + (p[digits++] - '0');
    if (digits == 0 || p[digits] != '.' || (digits > 1 && p[0] == '0')) return false;
    const char *rest = p + digits + 1;
    size_t rn = n - (size_t)(rest - in);
    if (rest > in + n) return false;
    for (size_t i = 0; i < sizeof layer_names / sizeof layer_names[0]; i++) {
        const char *a = from_hf ? layer_names[i].hf : layer_names[i].gguf;
        const char *b = from_hf ? layer_names[i].gguf : layer_names[i].hf;
        if (stem_is(rest, rn, a))
            return (size_t)snprintf(out, cap, "%s%lld.%s%s", to, l, b, suffix) < cap;
    }
    return false;
}

bool qerr__gguf_name_from_hf(const char *hf, char *out, size_t cap) {
    return hf && out && map_name(hf, out, cap, true);
}

bool qerr__gguf_name_to_hf(const char *gguf, char *out, size_t cap) {
    return gguf && out && map_name(gguf, out, cap, false);
}

int64_t qerr__gguf_qk_source_row(int64_t r, int64_t head_dim) {
    const int64_t h = r / head_dim, k = r % head_dim, half = head_dim / 2;
    return h * head_dim + (k % 2) * half + k / 2;
}

bool qerr__gguf_is_qk(const char *hf_name) {
    return strstr(hf_name, ".self_attn.q_proj.") != NULL ||
           strstr(hf_name, ".self_attn.k_proj.") != NULL;
}
