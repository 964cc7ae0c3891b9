/* A GGUF file (from libqerr or from anywhere else) as a qerr_model: the
 * llama.* keys as the config, every tensor dequantized to float32 under its
 * Hugging Face name, Q/K rows put back in Hugging Face order. The forward
 * pass then runs exactly the weights llama.cpp would run. */
#include "gguf_arch.h"
#include "../io/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DIM ((int64_t)1 << 24)

static int get_dim(const qerr_gguf_file *f, const char *path, const char *key, int64_t lo,
                   int64_t hi, int64_t *out) {
    int rc = qerr__gguf_get_int(f, key, out);
    QERR_CHECK(rc == QERR_OK, QERR_E_FORMAT, "%s: %s %s", path, key,
               rc == QERR_E_NOT_FOUND ? "is missing" : "is not an integer");
    QERR_CHECK(*out >= lo && *out <= hi, QERR_E_FORMAT, "%s: %s = %lld is outside %lld..%lld",
               path, key, (long long)*out, (long long)lo, (long long)hi);
    return QERR_OK;
}

static int read_config(const qerr_gguf_file *f, const char *path, qerr_model_config *c) {
    char arch[64];
    int rc = qerr__gguf_get_str(f, "general.architecture", arch, sizeof arch);
    QERR_CHECK(rc == QERR_OK, QERR_E_FORMAT, "%s: general.architecture is missing", path);
    QERR_CHECK(strcmp(arch, "llama") == 0, QERR_E_UNSUPPORTED,
               "%s: architecture '%s' (libqerr runs GGUF models of architecture llama)", path,
               arch);
    memset(c, 0, sizeof *c);
    QERR_TRY(get_dim(f, path, "llama.block_count", 1, 4096, &c->layers));
    QERR_TRY(get_dim(f, path, "llama.embedding_length", 1, MAX_DIM, &c->hidden));
    QERR_TRY(get_dim(f, path, "llama.feed_forward_length", 1, MAX_DIM, &c->inter));
    QERR_TRY(get_dim(f, path, "llama.attention.head_count", 1, 4096, &c->heads));
    c->kv_heads = c->heads;
    if (qerr__gguf_find(f, "llama.attention.head_count_kv"))
        QERR_TRY(get_dim(f, path, "llama.attention.head_count_kv", 1, c->heads, &c->kv_heads));
    QERR_CHECK(c->hidden % c->heads == 0 && c->heads % c->kv_heads == 0, QERR_E_FORMAT,
               "%s: %lld heads (%lld for K/V) do not divide an embedding of %lld", path,
               (long long)c->heads, (long long)c->kv_heads, (long long)c->hidden);
    c->head_dim = c->hidden / c->heads;
    if (qerr__gguf_find(f, "llama.attention.key_length"))
        QERR_TRY(get_dim(f, path, "llama.attention.key_length", 2, MAX_DIM, &c->head_dim));
    QERR_CHECK(c->head_dim % 2 == 0, QERR_E_FORMAT, "%s: head dimension %lld is odd", path,
               (long long)c->head_dim);
    static const char *const same_dim[] = {"llama.rope.dimension_count",
                                           "llama.attention.value_length"};
    for (size_t i = 0; i < 2; i++) {
        int64_t d;
        if (!qerr__gguf_find(f, same_dim[i])) continue;
        QERR_TRY(get_dim(f, path, same_dim[i], 1, MAX_DIM, &d));
        QERR_CHECK(d == c->head_dim, QERR_E_UNSUPPORTED,
                   "%s: %s = %lld, not the head size %lld (not supported)", path,
                   same_dim[i], (long long)d, (long long)c->head_dim);
    }
    char scaling[32];
    if (qerr__gguf_get_str(f, "llama.rope.scaling.type", scaling, sizeof scaling) == QERR_OK)
        QERR_CHECK(strcmp(scaling, "none") == 0, QERR_E_UNSUPPORTED,
                   "%s: RoPE scaling '%s' is not supported", path, scaling);
    c->model_type = "llama";
    c->rope.type = QERR_ROPE_DEFAULT;
    c->rope.theta = 10000.0;
    if (qerr__gguf_find(f, "llama.rope.freq_base"))
        QERR_TRY(qerr__gguf_get_float(f, "llama.rope.freq_base", &c->rope.theta));
    QERR_TRY(qerr__gguf_get_float(f, "llama.attention.layer_norm_rms_epsilon", &c->rms_eps));
    QERR_CHECK(c->rope.theta > 0 && c->rope.theta < 1e12 && c->rms_eps > 0 && c->rms_eps < 1,
               QERR_E_FORMAT, "%s: rope.freq_base or layer_norm_rms_epsilon out of range", path);
    const qerr_gguf_tensor *emb = qerr__gguf_tensor(f, "token_embd.weight");
    QERR_CHECK(emb && emb->ndim == 2, QERR_E_FORMAT, "%s: token_embd.weight is missing", path);
    c->vocab = emb->ne[1];
    c->tied = qerr__gguf_tensor(f, "output.weight") == NULL;
    return QERR_OK;
}

static int dequantize(const qerr_gguf_tensor *t, const char *path, float *dst) {
    const int64_t cols = t->ne[0], rows = t->numel / cols;
    const size_t row_bytes = t->nbytes / (size_t)rows;
    for (int64_t r = 0; r < rows; r++) {
        int rc = qerr__gguf_row_to_f32(t->type, t->data + (size_t)r * row_bytes, cols,
                                       dst + r * cols);
        if (rc != QERR_OK) {
            char why[256];
            snprintf(why, sizeof why, "%s", qerr_last_error());
            return qerr__fail(rc, "%s: tensor '%s': %s", path, t->name, why);
        }
    }
    return QERR_OK;
}

/* One GGUF tensor as a float32 model entry under its Hugging Face name. */
static int take_tensor(qerr_model *m, const qerr_gguf_tensor *t, const char *path) {
    char hf[160];
    QERR_CHECK(qerr__gguf_name_to_hf(t->name, hf, sizeof hf), QERR_E_UNSUPPORTED,
               "%s: tensor '%s' is not part of a LLaMA model libqerr runs", path, t->name);
    QERR_CHECK(t->ndim <= 2, QERR_E_FORMAT, "%s: tensor '%s' has %d dimensions", path, t->name,
               t->ndim);
    int64_t shape[2] = {t->ndim == 2 ? t->ne[1] : t->ne[0], t->ne[0]};
    qerr_tensor *out;
    QERR_TRY(qerr_tensor_create(&out, QERR_DTYPE_F32, t->ndim, shape));
    int rc = dequantize(t, path, out->data);
    if (rc == QERR_OK && t->ndim == 2 && qerr__gguf_is_qk(hf)) {
        const int64_t rows = shape[0], cols = shape[1], hd = m->cfg.head_dim;
        float *copy = qerr__malloc2((size_t)(rows * cols), sizeof *copy);
        if (!copy) rc = qerr__fail(QERR_E_NOMEM, "%s: out of memory", path);
        else if (rows % hd != 0)
            rc = qerr__fail(QERR_E_FORMAT, "%s: '%s' has %lld rows, not whole heads of %lld",
                            path, t->name, (long long)rows, (long long)hd);
        for (int64_t r = 0; rc == QERR_OK && r < rows; r++)
            memcpy(copy + qerr__gguf_qk_source_row(r, hd) * cols, (float *)out->data + r * cols,
                   (size_t)cols * sizeof *copy);
        if (rc == QERR_OK) memcpy(out->data, copy, (size_t)(rows * cols) * sizeof *copy);
        free(copy);
    }
    char *name = rc == QERR_OK ? strdup(hf) : NULL;
    if (rc == QERR_OK && !name) rc = qerr__fail(QERR_E_NOMEM, "%s: out of memory", path);
    if (rc != QERR_OK) {
        qerr_tensor_free(out);
        return rc;
    }
    qerr__model_add_loaded(m, name, out, -1);
    return QERR_OK;
}

int qerr__model_read_gguf(qerr_model *m, const char *path) {
    qerr_gguf_file f;
    QERR_TRY(qerr__gguf_open(path, &f));
    int rc = read_config(&f, path, &m->cfg);
    if (rc == QERR_OK) {
        m->entries = qerr__calloc((size_t)f.n_tensors + 1, sizeof *m->entries);
        if (!m->entries) rc = qerr__fail(QERR_E_NOMEM, "%s: out of memory", path);
    }
    for (int64_t i = 0; rc == QERR_OK && i < f.n_tensors; i++)
        rc = take_tensor(m, &f.tensors[i], path);
    if (rc == QERR_OK && m->cfg.tied) {
        int e = qerr__model_find(m, "model.embed_tokens.weight");
        char *name = strdup("lm_head.weight");
        if (!name) rc = qerr__fail(QERR_E_NOMEM, "%s: out of memory", path);
        else if (e >= 0) qerr__model_add_loaded(m, name, NULL, e);
        else free(name);
    }
    qerr__gguf_close(&f);
    return rc;
}
