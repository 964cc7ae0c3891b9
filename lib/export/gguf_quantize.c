/* qerr_gguf_quantize: the tensors of a GGUF file type, made by the
 * true-sequential pipeline with the "ggml" method on each tensor's type. The
 * mix becomes one plan (the base type) plus an override per tensor whose
 * type differs; lm_head (or, tied, the shared embedding) is named so the
 * pipeline quantizes it on the final normed states. An untied token
 * embedding sees no linear input, so it gets H = I (plain weight error). */
#include "gguf_mix.h"
#include "../llama/gguf_arch.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct text {
    char *s;
    size_t n, cap;
} text;

static int text_add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int text_add(text *t, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(t->s ? t->s + t->n : NULL, t->s ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        QERR_CHECK(k >= 0, QERR_E_INTERNAL, "GGUF plan: format error");
        if (t->s && (size_t)k < t->cap - t->n) {
            t->n += (size_t)k;
            return QERR_OK;
        }
        size_t cap = (t->cap ? t->cap * 2 : 256) + (size_t)k;
        char *s = realloc(t->s, cap);
        QERR_CHECK(s, QERR_E_NOMEM, "GGUF plan: out of memory");
        t->s = s;
        t->cap = cap;
    }
}

/* "ggml:type=q4_k[,opts]" */
static int spec(text *t, int type, const char *opts) {
    char lower[8];
    const char *label = qerr__gguf_type_label(type);
    size_t i = 0;
    for (; label[i] && i + 1 < sizeof lower; i++) lower[i] = (char)tolower((unsigned char)label[i]);
    lower[i] = '\0';
    return text_add(t, "ggml:type=%s%s%s", lower, opts && *opts ? "," : "", opts ? opts : "");
}

static bool is_float(int type) { return type == QERR_GGML_F32 || type == QERR_GGML_F16; }

/* Overrides for every linear, and lm_head, whose type is not the base. */
static int overrides(const qerr_model *m, const qerr_gguf_mix *mx, const char *opts, text *ov) {
    char hf[160], gg[96];
    for (int i = 0; i < m->n; i++) {
        const char *name = m->entries[i].name;
        const qerr_model_entry *t = &m->entries[i]; /* shape only: nothing converted */
        bool head = strcmp(name, "lm_head.weight") == 0;
        if (t->ndim != 2 || strcmp(name, "model.embed_tokens.weight") == 0) continue;
        snprintf(hf, sizeof hf, "%s", head && m->cfg.tied ? "model.embed_tokens.weight" : name);
        QERR_CHECK(qerr__gguf_name_from_hf(hf, gg, sizeof gg), QERR_E_UNSUPPORTED,
                   "GGUF export: tensor '%.128s' has no place in a llama.cpp model", name);
        int type = qerr__gguf_mix_type(mx, gg, 2, t->shape[1]);
        if (type == mx->base && !head) continue;
        if (is_float(type) && !head) {
            QERR_TRY(text_add(ov, "%s%s=float", ov->n ? ";" : "", name));
        } else if (!is_float(type)) {
            QERR_TRY(text_add(ov, "%s%s=", ov->n ? ";" : "", name));
            QERR_TRY(spec(ov, type, opts));
        }
    }
    return QERR_OK;
}

/* An untied token embedding of a quantized type, with H = I. */
static int quantize_embedding(qerr_ctx *ctx, const qerr_model *m, const qerr_gguf_mix *mx,
                              const char *opts, qerr_qmodel *q) {
    const char *name = "model.embed_tokens.weight";
    if (m->cfg.tied) return QERR_OK; /* the output projection's result is the embedding */
    int i = qerr__model_find(m, name);
    QERR_CHECK(i >= 0, QERR_E_NOT_FOUND, "GGUF export: the model has no '%s'", name);
    const qerr_tensor *w = NULL;
    QERR_TRY(qerr_model_tensor(m, name, &w)); /* float32, converted on demand */
    int type = qerr__gguf_mix_type(mx, "token_embd.weight", 2, w->shape[1]);
    if (is_float(type)) return QERR_OK;
    const int64_t n = w->shape[1];
    text s = {0};
    int rc = spec(&s, type, opts);
    double *I = rc == QERR_OK ? qerr__calloc((size_t)(n * n), sizeof *I) : NULL;
    if (rc == QERR_OK && !I) rc = qerr__fail(QERR_E_NOMEM, "GGUF export: out of memory");
    for (int64_t k = 0; rc == QERR_OK && k < n; k++) I[k * n + k] = 1.0;
    qerr_calib *calib = NULL;
    qerr_plan *plan = NULL;
    qerr_result *r = NULL;
    if (rc == QERR_OK) rc = qerr_calib_from_gram(&calib, I, n, n);
    if (rc == QERR_OK) rc = qerr_plan_parse(&plan, s.s);
    if (rc == QERR_OK) rc = qerr_quantize(ctx, plan, w, calib, &r);
    if (rc == QERR_OK) rc = qerr_qmodel_add(q, name, r);
    qerr_plan_free(plan);
    qerr_calib_free(calib);
    free(I);
    free(s.s);
    return rc;
}

int qerr_gguf_quantize(qerr_ctx *ctx, const qerr_model *m, const char *type, const char *mix,
                       const char *ggml_opts, const uint32_t *tokens, int64_t count,
                       int64_t nsamples, int64_t seqlen, qerr_qmodel **out) {
    static const char fn[] = "qerr_gguf_quantize";
    QERR_CHECK(out, QERR_E_INVALID_ARG, "%s: out is NULL", fn);
    *out = NULL;
    QERR_CHECK(m, QERR_E_INVALID_ARG, "%s: model is NULL", fn);
    qerr_gguf_mix mx;
    const qerr_model_config *c = &m->cfg;
    QERR_TRY(qerr__gguf_mix_init(&mx, type, mix, c->layers, c->heads / c->kv_heads, c->tied));
    if (is_float(mx.base)) return qerr_qmodel_create(out);
    text plan = {0}, ov = {0};
    int rc = spec(&plan, mx.base, ggml_opts);
    if (rc == QERR_OK) rc = overrides(m, &mx, ggml_opts, &ov);
    qerr_qmodel *q = NULL;
    if (rc == QERR_OK)
        rc = qerr_model_quantize(ctx, m, plan.s, ov.s ? ov.s : "", tokens, count, nsamples,
                                 seqlen, &q);
    if (rc == QERR_OK) rc = quantize_embedding(ctx, m, &mx, ggml_opts, q);
    if (rc == QERR_OK) rc = qerr_qmodel_set_meta(q, "gguf.type", mx.name);
    free(plan.s);
    free(ov.s);
    if (rc != QERR_OK) {
        qerr_qmodel_free(q);
        return rc;
    }
    *out = q;
    return QERR_OK;
}
