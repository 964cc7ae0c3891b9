/* The tensors of a GPTQ checkpoint's model.safetensors: for each quantized
 * linear layer P.weight, P.qweight / P.qzeros / P.scales / P.g_idx; every
 * other model tensor (biases, norms, embeddings) in its file dtype. Each is
 * produced only when the writer asks for it, so memory stays bounded. */
#include "gptq_export.h"

#include "../io/gptq_pack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { K_FLOAT, K_QWEIGHT, K_QZEROS, K_SCALES, K_GIDX };

struct qerr_gptq_item {
    int kind;
    char *name;
    const qerr_tensor *t;  /* K_FLOAT */
    int dtype;             /* K_FLOAT: QERR_DTYPE_* to write */
    const qerr_result *r;  /* the others */
};

static const char *dtype_word(int dtype) {
    return dtype == QERR_DTYPE_F16 ? "F16" : dtype == QERR_DTYPE_BF16 ? "BF16" : "F32";
}

static int cmp_out(const void *a, const void *b) {
    return strcmp(((const qerr_st_out *)a)->name, ((const qerr_st_out *)b)->name);
}

/* Append one tensor; name is copied. */
static int push(qerr_gptq_tensors *t, int cap, const char *base, const char *suffix,
                struct qerr_gptq_item item, const char *dtype, int ndim, int64_t d0,
                int64_t d1) {
    QERR_CHECK(t->n < cap, QERR_E_INTERNAL, "qerr_export_gptq: tensor table overflow");
    size_t n = strlen(base) + strlen(suffix) + 1;
    item.name = malloc(n);
    QERR_CHECK(item.name, QERR_E_NOMEM, "qerr_export_gptq: out of memory");
    snprintf(item.name, n, "%s%s", base, suffix);
    t->items[t->n] = item;
    t->out[t->n] = (qerr_st_out){item.name, dtype, ndim, {d0, d1, 0, 0}};
    t->n++;
    return QERR_OK;
}

static int push_float(qerr_gptq_tensors *t, int cap, const char *name, const qerr_tensor *x,
                      int dtype) {
    QERR_CHECK(t->n < cap, QERR_E_INTERNAL, "qerr_export_gptq: tensor table overflow");
    QERR_TRY(push(t, cap, name, "", (struct qerr_gptq_item){K_FLOAT, NULL, x, dtype, NULL},
                  dtype_word(dtype), 1, x->shape[0], 0));
    qerr_st_out *o = &t->out[t->n - 1];
    o->ndim = x->ndim;
    for (int d = 0; d < x->ndim; d++) o->shape[d] = x->shape[d];
    return QERR_OK;
}

static int push_quant(qerr_gptq_tensors *t, int cap, const char *name, const qerr_result *r,
                      int bits) {
    size_t n = strlen(name) - strlen(".weight");
    char *base = strndup(name, n);
    QERR_CHECK(base, QERR_E_NOMEM, "qerr_export_gptq: out of memory");
    const int64_t K = r->cols, N = r->rows, G = r->groups;
    struct qerr_gptq_item it = {0, NULL, NULL, 0, r};
    int rc = QERR_OK;
    it.kind = K_QWEIGHT;
    if (rc == QERR_OK) rc = push(t, cap, base, ".qweight", it, "I32", 2, qerr__gptq_words(K, bits), N);
    it.kind = K_QZEROS;
    if (rc == QERR_OK) rc = push(t, cap, base, ".qzeros", it, "I32", 2, G, qerr__gptq_words(N, bits));
    it.kind = K_SCALES;
    if (rc == QERR_OK) rc = push(t, cap, base, ".scales", it, "F16", 2, G, N);
    it.kind = K_GIDX;
    if (rc == QERR_OK) rc = push(t, cap, base, ".g_idx", it, "I32", 1, K, 0);
    free(base);
    return rc;
}

int qerr__gptq_tensors(const qerr_model *m, const qerr_qmodel *q, const qerr_gptq_plan *plan,
                       qerr_gptq_tensors *out) {
    memset(out, 0, sizeof *out);
    out->plan = plan;
    const int cap = m->n * 4 + 4;
    out->items = qerr__calloc((size_t)cap, sizeof *out->items);
    out->out = qerr__calloc((size_t)cap, sizeof *out->out);
    QERR_CHECK(out->items && out->out, QERR_E_NOMEM, "qerr_export_gptq: out of memory");
    for (int i = 0; i < m->n; i++) {
        const qerr_model_entry *e = &m->entries[i];
        const qerr_result *r = NULL;
        bool quant = qerr_qmodel_get(q, e->name, &r) == QERR_OK;
        /* the second name of a tied embedding is written only when lm_head
         * is quantized, which unties them */
        if (e->alias && !plan->untie) continue;
        if (quant) {
            QERR_TRY(push_quant(out, cap, e->name, r, plan->bits));
            continue;
        }
        const qerr_tensor *t; /* float32, converted on demand and kept */
        QERR_TRY(qerr_model_tensor(m, e->name, &t));
        if (e->file_dtype == QERR_DTYPE_F16 || e->file_dtype == QERR_DTYPE_BF16)
            QERR_TRY(push_float(out, cap, e->name, t, e->file_dtype));
        else QERR_TRY(push_float(out, cap, e->name, t, QERR_DTYPE_F32));
    }
    qerr__clear_error();
    /* sort both arrays by name, keeping them parallel: sort indices */
    qerr_st_out *sorted = qerr__calloc((size_t)out->n + 1, sizeof *sorted);
    struct qerr_gptq_item *items = qerr__calloc((size_t)out->n + 1, sizeof *items);
    if (!sorted || !items) {
        free(sorted);
        free(items);
        return qerr__fail(QERR_E_NOMEM, "qerr_export_gptq: out of memory");
    }
    memcpy(sorted, out->out, (size_t)out->n * sizeof *sorted);
    qsort(sorted, (size_t)out->n, sizeof *sorted, cmp_out);
    for (int i = 0; i < out->n; i++)
        for (int k = 0; k < out->n; k++)
            if (out->items[k].name == sorted[i].name) items[i] = out->items[k];
    free(out->out);
    free(out->items);
    out->out = sorted;
    out->items = items;
    return QERR_OK;
}

void qerr__gptq_tensors_free(qerr_gptq_tensors *t) {
    for (int i = 0; t->items && i < t->n; i++) free(t->items[i].name);
    free(t->items);
    free(t->out);
    memset(t, 0, sizeof *t);
}

static void fill_float(const qerr_tensor *x, int dtype, uint8_t *dst) {
    const float *v = x->data;
    if (dtype == QERR_DTYPE_F32) {
        memcpy(dst, v, (size_t)x->numel * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < x->numel; i++) {
        uint16_t h = dtype == QERR_DTYPE_F16 ? qerr__f32_to_f16(v[i]) : qerr__f32_to_bf16(v[i]);
        memcpy(dst + 2 * i, &h, 2);
    }
}

/* qweight [K*bits/32, N]: column n is the stream of codes[n][0..K). */
static int fill_qweight(const qerr_result *r, int bits, uint32_t *w) {
    int32_t *row = qerr__malloc2((size_t)r->cols, sizeof *row);
    QERR_CHECK(row, QERR_E_NOMEM, "qerr_export_gptq: out of memory");
    for (int64_t n = 0; n < r->rows; n++) {
        for (int64_t k = 0; k < r->cols; k++) row[k] = r->codes[n * r->cols + k];
        qerr__gptq_pack(row, 1, r->cols, bits, w + n, r->rows);
    }
    free(row);
    return QERR_OK;
}

/* qzeros [G, N*bits/32]: row g is the stream of zeros[0..N)[g] (minus 1 in v1). */
static int fill_qzeros(const qerr_result *r, int bits, bool v2, uint32_t *w) {
    int32_t *col = qerr__malloc2((size_t)r->rows, sizeof *col);
    QERR_CHECK(col, QERR_E_NOMEM, "qerr_export_gptq: out of memory");
    const int64_t zw = qerr__gptq_words(r->rows, bits);
    for (int64_t g = 0; g < r->groups; g++) {
        for (int64_t n = 0; n < r->rows; n++) col[n] = r->zeros[n * r->groups + g] - (v2 ? 0 : 1);
        qerr__gptq_pack(col, 1, r->rows, bits, w + g * zw, 1);
    }
    free(col);
    return QERR_OK;
}

int qerr__gptq_fill(void *user, int index, uint8_t *dst, size_t nbytes) {
    const qerr_gptq_tensors *t = user;
    const struct qerr_gptq_item *it = &t->items[index];
    const qerr_result *r = it->r;
    (void)nbytes; /* sized by the writer from the shapes pushed above */
    switch (it->kind) {
    case K_FLOAT: fill_float(it->t, it->dtype, dst); return QERR_OK;
    case K_QWEIGHT: return fill_qweight(r, t->plan->bits, (uint32_t *)dst);
    case K_QZEROS: return fill_qzeros(r, t->plan->bits, t->plan->v2, (uint32_t *)dst);
    case K_SCALES:
        for (int64_t g = 0; g < r->groups; g++)
            for (int64_t n = 0; n < r->rows; n++) {
                uint16_t h = qerr__f32_to_f16(r->scales[n * r->groups + g]);
                memcpy(dst + 2 * (g * r->rows + n), &h, 2);
            }
        return QERR_OK;
    case K_GIDX: memcpy(dst, r->g_idx, (size_t)r->cols * sizeof(int32_t)); return QERR_OK;
    default: return qerr__fail(QERR_E_INTERNAL, "qerr_export_gptq: bad tensor kind");
    }
}
