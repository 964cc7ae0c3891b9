/* Writes a LLaMA-shaped model with random BF16 weights (no real model can be
 * downloaded here) for the streaming benchmark: config.json, one safetensors
 * shard per decoder layer plus one for the embeddings and head, and
 * model.safetensors.index.json, as Hugging Face saves large models.
 *   gen_llama SHAPE DIR [LAYERS]
 * SHAPE: 1.1b (TinyLlama-1.1B), 7b (LLaMA-2-7B), 13b (LLaMA-2-13B); LAYERS
 * (optional) writes only the first decoder layers. Weights ~ U(-a, a) with
 * the standard deviation 0.02 of LLaMA's initialisation; norms are 1. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    const char *name;
    int64_t hidden, inter, layers, heads, kv_heads, vocab;
} shape;

static const shape SHAPES[] = {
    {"1.1b", 2048, 5632, 22, 32, 4, 32000},
    {"7b", 4096, 11008, 32, 32, 32, 32000},
    {"13b", 5120, 13824, 40, 40, 40, 32000},
};

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint16_t next_bf16(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    /* uniform on [-a, a), a = 0.02 * sqrt(3): standard deviation 0.02 */
    float u = (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0) * 0.034641f;
    uint32_t b;
    memcpy(&b, &u, 4);
    return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16); /* round to nearest even */
}

typedef struct {
    char name[96];
    int ndim;
    int64_t d0, d1;
    bool ones;
} tensor;

static int write_shard(const char *dir, const char *file, const tensor *t, int n) {
    char header[8192];
    size_t hl = 0;
    uint64_t off = 0;
    hl += (size_t)snprintf(header + hl, sizeof header - hl, "{");
    for (int i = 0; i < n; i++) {
        const uint64_t bytes = (uint64_t)t[i].d0 * (uint64_t)(t[i].ndim == 2 ? t[i].d1 : 1) * 2;
        if (t[i].ndim == 2)
            hl += (size_t)snprintf(header + hl, sizeof header - hl,
                                   "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%" PRId64 ",%" PRId64
                                   "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
                                   i ? "," : "", t[i].name, t[i].d0, t[i].d1, off, off + bytes);
        else
            hl += (size_t)snprintf(header + hl, sizeof header - hl,
                                   "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%" PRId64
                                   "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
                                   i ? "," : "", t[i].name, t[i].d0, off, off + bytes);
        off += bytes;
    }
    hl += (size_t)snprintf(header + hl, sizeof header - hl, "}");
    while (hl % 8) header[hl++] = ' '; /* data section 8-byte aligned, as safetensors pads */
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    uint64_t hlen = hl;
    fwrite(&hlen, 8, 1, f);
    fwrite(header, 1, hl, f);
    enum { CHUNK = 1 << 20 };
    uint16_t *buf = malloc(CHUNK * sizeof *buf);
    for (int i = 0; i < n; i++) {
        uint64_t left = (uint64_t)t[i].d0 * (uint64_t)(t[i].ndim == 2 ? t[i].d1 : 1);
        while (left) {
            const size_t k = left < CHUNK ? (size_t)left : CHUNK;
            for (size_t j = 0; j < k; j++) buf[j] = t[i].ones ? 0x3f80 : next_bf16();
            fwrite(buf, 2, k, f);
            left -= k;
        }
    }
    free(buf);
    return fclose(f) == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: gen_llama 1.1b|7b|13b DIR [LAYERS]\n");
        return 2;
    }
    const shape *s = NULL;
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++)
        if (strcmp(argv[1], SHAPES[i].name) == 0) s = &SHAPES[i];
    if (!s) {
        fprintf(stderr, "gen_llama: unknown shape '%s'\n", argv[1]);
        return 2;
    }
    const char *dir = argv[2];
    int64_t layers = argc > 3 ? atoll(argv[3]) : s->layers;
    if (layers < 1 || layers > s->layers) layers = s->layers;
    mkdir(dir, 0755);
    const int64_t d = s->hidden, hd = d / s->heads, kvd = s->kv_heads * hd;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fprintf(f,
            "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":%" PRId64
            ",\"intermediate_size\":%" PRId64 ",\"num_hidden_layers\":%" PRId64
            ",\"num_attention_heads\":%" PRId64 ",\"num_key_value_heads\":%" PRId64
            ",\"vocab_size\":%" PRId64
            ",\"max_position_embeddings\":4096,\"rms_norm_eps\":1e-05,\"rope_theta\":10000.0,"
            "\"hidden_act\":\"silu\",\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\"}\n",
            d, s->inter, layers, s->heads, s->kv_heads, s->vocab);
    fclose(f);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *idx = fopen(path, "w");
    if (!idx) return 1;
    fprintf(idx, "{\"metadata\":{},\"weight_map\":{");
    const int64_t nshards = layers + 1;
    for (int64_t l = 0; l <= layers; l++) {
        char file[128];
        snprintf(file, sizeof file, "model-%05" PRId64 "-of-%05" PRId64 ".safetensors", l + 1,
                 nshards);
        tensor t[9];
        int n = 0;
        if (l == layers) {
            t[n++] = (tensor){"model.embed_tokens.weight", 2, s->vocab, d, false};
            t[n++] = (tensor){"model.norm.weight", 1, d, 0, true};
            t[n++] = (tensor){"lm_head.weight", 2, s->vocab, d, false};
        } else {
            const struct { const char *sfx; int ndim; int64_t d0, d1; bool ones; } L[9] = {
                {"input_layernorm", 1, d, 0, true},
                {"post_attention_layernorm", 1, d, 0, true},
                {"self_attn.q_proj", 2, d, d, false},
                {"self_attn.k_proj", 2, kvd, d, false},
                {"self_attn.v_proj", 2, kvd, d, false},
                {"self_attn.o_proj", 2, d, d, false},
                {"mlp.gate_proj", 2, s->inter, d, false},
                {"mlp.up_proj", 2, s->inter, d, false},
                {"mlp.down_proj", 2, d, s->inter, false},
            };
            for (int k = 0; k < 9; k++) {
                t[n] = (tensor){"", L[k].ndim, L[k].d0, L[k].d1, L[k].ones};
                snprintf(t[n].name, sizeof t[n].name, "model.layers.%" PRId64 ".%s.weight", l,
                         L[k].sfx);
                n++;
            }
        }
        for (int k = 0; k < n; k++)
            fprintf(idx, "%s\"%s\":\"%s\"", (l || k) ? "," : "", t[k].name, file);
        if (write_shard(dir, file, t, n) != 0) {
            fprintf(stderr, "gen_llama: cannot write %s/%s\n", dir, file);
            return 1;
        }
        fprintf(stderr, "\rgen_llama: %s shard %" PRId64 "/%" PRId64, s->name, l + 1, nshards);
    }
    fprintf(idx, "}}\n");
    fclose(idx);
    fprintf(stderr, "\n");
    return 0;
}
