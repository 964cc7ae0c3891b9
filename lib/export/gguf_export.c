/* qerr_gguf_save: a model (and its quantized tensors) as a GGUF v3 file for
 * llama.cpp, laid out as llama.cpp's convert_hf_to_gguf.py lays out a LLaMA
 * model: token_embd, then per block attn_norm, ffn_norm, the seven linears,
 * then output_norm and (untied) output; q/k rows interleaved per head. The
 * file is built in memory in two passes (size, then fill) and written to a
 * temporary name that is renamed only when complete. */
#include "gguf_mix.h"
#include "../io/ggml_blocks.h"
#include "../io/gguf.h"
#include "../llama/gguf_arch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONTEXT_LENGTH 2048 /* convert_hf_to_gguf's value when a config has none */
#define TOKEN_NORMAL 1
#define TOKEN_BYTE 6

typedef struct item {
    char gguf[96];
    const char *hf;       /* the model's tensor (float source) */
    const qerr_result *r; /* quantized source, NULL for F32 / F16 */
    int type, ndim;
    int64_t ne[2];        /* ggml order: ne[0] = row length */
    size_t nbytes;
    uint64_t offset;
    bool qk;
} item;

typedef struct plan {
    const qerr_model *m;
    qerr_gguf_mix mx;
    item *items;
    int n;
} plan;

static int init_mix(const qerr_model *m, const char *type, const char *mix, qerr_gguf_mix *mx) {
    const qerr_model_config *c = &m->cfg;
    return qerr__gguf_mix_init(mx, type, mix, c->layers, c->heads / c->kv_heads, c->tied);
}

/* The GGUF tensor a Hugging Face name becomes, with its type under the mix. */
static int describe(const plan *p, const char *hf, item *it) {
    memset(it, 0, sizeof *it);
    int i = qerr__model_find(p->m, hf);
    QERR_CHECK(i >= 0, QERR_E_NOT_FOUND, "GGUF export: the model has no tensor '%.128s'", hf);
    const qerr_model_entry *t = &p->m->entries[i]; /* shape only: nothing converted */
    QERR_CHECK(qerr__gguf_name_from_hf(hf, it->gguf, sizeof it->gguf) && t->ndim <= 2,
               QERR_E_UNSUPPORTED,
               "GGUF export: tensor '%.128s' has no place in a llama.cpp model of architecture "
               "llama",
               hf);
    it->hf = p->m->entries[i].name;
    it->ndim = t->ndim;
    it->ne[0] = t->shape[t->ndim - 1];
    it->ne[1] = t->ndim == 2 ? t->shape[0] : 1;
    it->type = qerr__gguf_mix_type(&p->mx, it->gguf, t->ndim, it->ne[0]);
    it->qk = qerr__gguf_is_qk(hf);
    return QERR_OK;
}

/* Every tensor of the file, in llama.cpp's order; a tied model stores one
 * token_embd (the output projection reads it too). */
static int build(plan *p) {
    const qerr_model_config *c = &p->m->cfg;
    int cap = 4 + (int)c->layers * 9;
    p->items = qerr__calloc((size_t)cap, sizeof *p->items);
    QERR_CHECK(p->items, QERR_E_NOMEM, "GGUF export: out of memory");
    char name[160];
    QERR_TRY(describe(p, "model.embed_tokens.weight", &p->items[p->n++]));
    static const char *const norms[] = {"input_layernorm", "post_attention_layernorm"};
    for (int64_t l = 0; l < c->layers; l++) {
        for (int k = 0; k < 2; k++) {
            snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)l, norms[k]);
            QERR_TRY(describe(p, name, &p->items[p->n++]));
        }
        for (int k = 0; k < QERR_LIN_COUNT; k++) {
            snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)l,
                     qerr__lin_names[k]);
            QERR_TRY(describe(p, name, &p->items[p->n++]));
        }
    }
    QERR_TRY(describe(p, "model.norm.weight", &p->items[p->n++]));
    if (!c->tied) QERR_TRY(describe(p, "lm_head.weight", &p->items[p->n++]));
    /* every tensor of the model must have found its place */
    int expected = p->n + (c->tied ? 1 : 0);
    QERR_CHECK(p->m->n == expected, QERR_E_UNSUPPORTED,
               "GGUF export: the model has %d tensors, a llama model of this shape %d; the "
               "others have no place in a GGUF file of architecture llama",
               p->m->n, expected);
    return QERR_OK;
}

/* Quantized sources from q: each tensor of a quantized type needs a result
 * of the right shape; q must hold nothing else. */
static int attach_results(plan *p, const qerr_qmodel *q) {
    int used = 0;
    for (int i = 0; i < p->n; i++) {
        item *it = &p->items[i];
        if (it->type == QERR_GGML_F32 || it->type == QERR_GGML_F16) continue;
        const char *src = it->hf;
        if (p->m->cfg.tied && strcmp(it->gguf, "token_embd.weight") == 0 && q &&
            qerr_qmodel_get(q, "lm_head.weight", &it->r) == QERR_OK)
            src = "lm_head.weight"; /* tied: the output projection's result */
        else if (!q || qerr_qmodel_get(q, src, &it->r) != QERR_OK)
            return qerr__fail(QERR_E_NOT_FOUND,
                              "GGUF export: tensor '%s' is %s in a %s file but the quantized "
                              "model has no result for '%s' (make it with qerr_gguf_quantize)",
                              it->gguf, qerr__gguf_type_label(it->type), p->mx.name, src);
        QERR_CHECK(qerr_result_rows(it->r) == it->ne[1] && qerr_result_cols(it->r) == it->ne[0],
                   QERR_E_SHAPE, "GGUF export: the result for '%s' is %lldx%lld, the tensor "
                   "%lldx%lld",
                   src, (long long)qerr_result_rows(it->r), (long long)qerr_result_cols(it->r),
                   (long long)it->ne[1], (long long)it->ne[0]);
        used++;
    }
    qerr__clear_error();
    int have = q ? qerr_qmodel_count(q) : 0;
    QERR_CHECK(have == used, QERR_E_INVALID_ARG,
               "GGUF export: the quantized model has %d tensors but a %s file (mix %s) "
               "quantizes %d of this model's; it was made for another type or mix",
               have, p->mx.name, p->mx.mix == QERR_MIX_FTYPE ? "ftype" : p->mx.mix == QERR_MIX_PURE ? "pure" : "layers",
               used);
    return QERR_OK;
}

static void sizes(plan *p) {
    uint64_t off = 0;
    for (int i = 0; i < p->n; i++) {
        item *it = &p->items[i];
        it->nbytes = (size_t)it->ne[1] * qerr__gguf_row_bytes(it->type, it->ne[0]);
        it->offset = off;
        off += (it->nbytes + QERR_GGUF_ALIGN - 1) / QERR_GGUF_ALIGN * QERR_GGUF_ALIGN;
    }
}

/* What this writer can say in llama.cpp's "llama" architecture. */
static int describable(const qerr_model_config *c) {
    QERR_CHECK(strcmp(c->model_type, "llama") == 0 || strcmp(c->model_type, "mistral") == 0,
               QERR_E_UNSUPPORTED,
               "GGUF export: model type '%s' is not written yet (llama and mistral are)",
               c->model_type);
    QERR_CHECK(c->rope.type == QERR_ROPE_DEFAULT, QERR_E_UNSUPPORTED,
               "GGUF export: RoPE scaling (rope_type other than default) is not written yet");
    QERR_CHECK(!c->qk_norm && c->sliding_window <= 0, QERR_E_UNSUPPORTED,
               "GGUF export: q/k norms and sliding windows have no place in architecture llama");
    for (int k = 0; k < QERR_LIN_COUNT; k++)
        QERR_CHECK(!c->bias[k], QERR_E_UNSUPPORTED,
                   "GGUF export: linear biases (%s) are not written yet", qerr__lin_names[k]);
    return QERR_OK;
}

/* Metadata llama.cpp reads for architecture llama; returns the key count. */
static int64_t put_metadata(qerr_gguf_sink *s, const plan *p) {
    const qerr_model_config *c = &p->m->cfg;
    int64_t n = 0;
#define KV(call) do { call; n++; } while (0)
    KV(qerr__gguf_kv_str(s, "general.architecture", "llama"));
    KV(qerr__gguf_kv_str(s, "general.type", "model"));
    KV(qerr__gguf_kv_str(s, "general.quantized_by", "libqerr"));
    KV(qerr__gguf_kv_u32(s, "general.file_type", (uint32_t)p->mx.ftype));
    KV(qerr__gguf_kv_u32(s, "general.quantization_version", 2));
    KV(qerr__gguf_kv_u32(s, "llama.block_count", (uint32_t)c->layers));
    KV(qerr__gguf_kv_u32(s, "llama.context_length", CONTEXT_LENGTH));
    KV(qerr__gguf_kv_u32(s, "llama.embedding_length", (uint32_t)c->hidden));
    KV(qerr__gguf_kv_u32(s, "llama.feed_forward_length", (uint32_t)c->inter));
    KV(qerr__gguf_kv_u32(s, "llama.attention.head_count", (uint32_t)c->heads));
    KV(qerr__gguf_kv_u32(s, "llama.attention.head_count_kv", (uint32_t)c->kv_heads));
    KV(qerr__gguf_kv_f32(s, "llama.rope.freq_base", (float)c->rope.theta));
    KV(qerr__gguf_kv_f32(s, "llama.attention.layer_norm_rms_epsilon", (float)c->rms_eps));
    KV(qerr__gguf_kv_u32(s, "llama.rope.dimension_count", (uint32_t)c->head_dim));
    KV(qerr__gguf_kv_u32(s, "llama.attention.key_length", (uint32_t)c->head_dim));
    KV(qerr__gguf_kv_u32(s, "llama.attention.value_length", (uint32_t)c->head_dim));
    KV(qerr__gguf_kv_u32(s, "llama.vocab_size", (uint32_t)c->vocab));
    /* A vocabulary of ids: SentencePiece-style with the 256 byte pieces first
     * (what a byte-level model means, and what byte fallback needs), then
     * placeholders. Enough for llama.cpp to load the model and score ids. */
    const int64_t V = c->vocab, nb = V < 256 ? V : 256;
    KV(qerr__gguf_kv_str(s, "tokenizer.ggml.model", "llama"));
    KV(qerr__gguf_kv_array(s, "tokenizer.ggml.tokens", QERR_GGUF_STRING, (uint64_t)V));
    for (int64_t i = 0; i < V; i++) {
        char piece[32];
        int len = i < nb ? snprintf(piece, sizeof piece, "<0x%02X>", (unsigned)i)
                         : snprintf(piece, sizeof piece, "<id%lld>", (long long)i);
        qerr__gguf_put_str(s, piece, (size_t)len);
    }
    KV(qerr__gguf_kv_array(s, "tokenizer.ggml.scores", QERR_GGUF_F32, (uint64_t)V));
    qerr__gguf_put_space(s, (size_t)V * 4);
    KV(qerr__gguf_kv_array(s, "tokenizer.ggml.token_type", QERR_GGUF_I32, (uint64_t)V));
    for (int64_t i = 0; i < V; i++) {
        int32_t t = i < nb ? TOKEN_BYTE : TOKEN_NORMAL;
        qerr__gguf_put_bytes(s, &t, 4);
    }
    KV(qerr__gguf_kv_bool(s, "tokenizer.ggml.add_bos_token", false));
    KV(qerr__gguf_kv_bool(s, "tokenizer.ggml.add_eos_token", false));
#undef KV
    return n;
}

/* Row r of the file comes from row src_row(r) of the model's tensor. */
static int64_t src_row(const item *it, const plan *p, int64_t r) {
    return it->qk ? qerr__gguf_qk_source_row(r, p->m->cfg.head_dim) : r;
}

static int fill_float(const item *it, const plan *p, uint8_t *dst) {
    const float *w = qerr__model_data(p->m, it->hf); /* converted on demand */
    QERR_CHECK(w, QERR_E_NOMEM, "GGUF export: out of memory for '%.128s'", it->hf);
    const int64_t cols = it->ne[0], rows = it->ne[1];
    /* a 1-D q/k bias is permuted element by element, like the rows */
    const bool by_elem = it->ndim == 1 && it->qk;
    const int64_t n_rows = by_elem ? cols : rows, n_cols = by_elem ? 1 : cols;
    for (int64_t r = 0; r < n_rows; r++) {
        const float *src = w + src_row(it, p, r) * n_cols;
        if (it->type == QERR_GGML_F32) {
            memcpy(dst + (size_t)(r * n_cols) * 4, src, (size_t)n_cols * 4);
        } else {
            uint16_t *h = (uint16_t *)(void *)(dst + (size_t)(r * n_cols) * 2);
            for (int64_t k = 0; k < n_cols; k++) h[k] = qerr__f32_to_f16(src[k]);
        }
    }
    return QERR_OK;
}

/* A quantized tensor: the result's ggml bytes, rows moved as for floats. */
static int fill_blocks(const item *it, const plan *p, uint8_t *dst, uint8_t *scratch) {
    const size_t rb = qerr__gguf_row_bytes(it->type, it->ne[0]);
    int rc = qerr__ggml_encode_result(it->r, it->type, scratch, rb * (size_t)it->ne[1]);
    if (rc != QERR_OK) {
        char why[256];
        snprintf(why, sizeof why, "%s", qerr_last_error());
        return qerr__fail(rc, "GGUF export: '%s' as %s: %s", it->gguf,
                          qerr__gguf_type_label(it->type), why);
    }
    for (int64_t r = 0; r < it->ne[1]; r++)
        memcpy(dst + (size_t)r * rb, scratch + (size_t)src_row(it, p, r) * rb, rb);
    return QERR_OK;
}

static int put_file(qerr_gguf_sink *s, const plan *p, int64_t n_kv) {
    qerr__gguf_put_header(s, p->n, n_kv);
    put_metadata(s, p);
    for (int i = 0; i < p->n; i++) {
        const item *it = &p->items[i];
        qerr__gguf_put_tensor_info(s, it->gguf, it->ndim, it->ne, it->type, it->offset);
    }
    qerr__gguf_pad(s, QERR_GGUF_ALIGN);
    size_t most = 0;
    for (int i = 0; i < p->n; i++)
        if (p->items[i].r && p->items[i].nbytes > most) most = p->items[i].nbytes;
    uint8_t *scratch = s->p && most ? malloc(most) : NULL;
    QERR_CHECK(!s->p || !most || scratch, QERR_E_NOMEM, "GGUF export: out of memory");
    int rc = QERR_OK;
    for (int i = 0; i < p->n && rc == QERR_OK; i++) {
        const item *it = &p->items[i];
        uint8_t *dst = qerr__gguf_put_space(s, it->nbytes);
        if (dst && it->r) rc = fill_blocks(it, p, dst, scratch);
        else if (dst) rc = fill_float(it, p, dst);
        qerr__gguf_pad(s, QERR_GGUF_ALIGN);
    }
    free(scratch);
    return rc;
}

int qerr_gguf_tensor_type(const qerr_model *m, const char *type, const char *mix,
                          const char *name, char *buf, size_t cap) {
    static const char fn[] = "qerr_gguf_tensor_type";
    QERR_CHECK(m && name && buf && cap > 0, QERR_E_INVALID_ARG, "%s: NULL argument", fn);
    plan p = {m, {0}, NULL, 0};
    QERR_TRY(init_mix(m, type, mix, &p.mx));
    item it;
    if (m->cfg.tied && strcmp(name, "lm_head.weight") == 0) name = "model.embed_tokens.weight";
    QERR_TRY(describe(&p, name, &it));
    const char *label = qerr__gguf_type_label(it.type);
    QERR_CHECK(strlen(label) < cap, QERR_E_RANGE, "%s: buffer too small", fn);
    memcpy(buf, label, strlen(label) + 1);
    return QERR_OK;
}

int qerr_gguf_save(const qerr_model *m, const qerr_qmodel *q, const char *type, const char *mix,
                   const char *path) {
    static const char fn[] = "qerr_gguf_save";
    QERR_CHECK(m && path, QERR_E_INVALID_ARG, "%s: NULL argument", fn);
    QERR_CHECK(!m->rt, QERR_E_UNSUPPORTED,
               "%s: the model runs online transforms or activation quantization, which a GGUF "
               "file cannot describe",
               fn);
    plan p = {m, {0}, NULL, 0};
    int rc = describable(&m->cfg);
    if (rc == QERR_OK) rc = init_mix(m, type, mix, &p.mx);
    if (rc == QERR_OK) rc = build(&p);
    if (rc == QERR_OK) rc = attach_results(&p, q);
    uint8_t *buf = NULL;
    if (rc == QERR_OK) {
        sizes(&p);
        qerr_gguf_sink count = {NULL, 0};
        int64_t n_kv = put_metadata(&count, &p);
        count.n = 0;
        put_file(&count, &p, n_kv);
        buf = malloc(count.n);
        if (!buf) rc = qerr__fail(QERR_E_NOMEM, "%s: cannot allocate %zu bytes", fn, count.n);
        qerr_gguf_sink fill = {buf, 0};
        if (rc == QERR_OK) rc = put_file(&fill, &p, n_kv);
        if (rc == QERR_OK) rc = qerr__write_file_atomic(path, buf, fill.n);
    }
    free(buf);
    free(p.items);
    if (rc == QERR_OK) qerr__clear_error();
    return rc;
}
