/* qerr_result: codes, grid, column->group map, outliers, extras, diagnostics. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int qerr__result_alloc(qerr_result **out, int64_t rows, int64_t cols, int bits,
                       int64_t group_size) {
    *out = NULL;
    qerr_result *r = qerr__calloc(1, sizeof *r);
    QERR_CHECK(r, QERR_E_NOMEM, "out of memory for a result");
    r->rows = rows;
    r->cols = cols;
    r->bits = bits;
    r->group_size = group_size;
    r->groups = (cols + group_size - 1) / group_size;
    r->codes = qerr__calloc((size_t)(rows * cols), 1);
    r->scales = qerr__calloc((size_t)(rows * r->groups), sizeof(float));
    r->zeros = qerr__calloc((size_t)(rows * r->groups), sizeof(int32_t));
    r->g_idx = qerr__calloc((size_t)cols, sizeof(int32_t));
    if (!r->codes || !r->scales || !r->zeros || !r->g_idx) {
        qerr_result_free(r);
        return qerr__fail(QERR_E_NOMEM, "cannot allocate a %lldx%lld result", (long long)rows,
                          (long long)cols);
    }
    for (int64_t j = 0; j < cols; j++) r->g_idx[j] = (int32_t)(j / group_size);
    r->g_idx_trivial = true;
    *out = r;
    return QERR_OK;
}

void qerr_result_free(qerr_result *r) {
    if (!r) return;
    free(r->codes);
    free(r->scales);
    free(r->zeros);
    free(r->mins);
    free(r->g_idx);
    free(r->out_row);
    free(r->out_col);
    free(r->out_val);
    for (int i = 0; i < r->n_extras; i++) free(r->extras[i].data);
    free(r->plan);
    free(r);
}

void qerr__result_set_diag(qerr_result *r, const char *name, double value) {
    for (int i = 0; i < r->n_diag; i++)
        if (strcmp(r->diag[i].name, name) == 0) {
            r->diag[i].value = value;
            return;
        }
    if (r->n_diag >= QERR_MAX_DIAG) return;
    size_t len = strlen(name);
    if (len >= sizeof r->diag[0].name) len = sizeof r->diag[0].name - 1;
    memcpy(r->diag[r->n_diag].name, name, len);
    r->diag[r->n_diag].name[len] = '\0';
    r->diag[r->n_diag].value = value;
    r->n_diag++;
}

int qerr__result_set_outliers(qerr_result *r, int64_t n, const int32_t *rows, const int32_t *cols,
                              const float *values) {
    free(r->out_row);
    free(r->out_col);
    free(r->out_val);
    r->out_row = qerr__malloc2((size_t)n, sizeof(int32_t));
    r->out_col = qerr__malloc2((size_t)n, sizeof(int32_t));
    r->out_val = qerr__malloc2((size_t)n, sizeof(float));
    r->n_outliers = 0;
    QERR_CHECK(r->out_row && r->out_col && r->out_val, QERR_E_NOMEM,
               "cannot allocate %lld outliers", (long long)n);
    if (n) {
        memcpy(r->out_row, rows, (size_t)n * sizeof(int32_t));
        memcpy(r->out_col, cols, (size_t)n * sizeof(int32_t));
        memcpy(r->out_val, values, (size_t)n * sizeof(float));
    }
    r->n_outliers = n;
    return QERR_OK;
}

int qerr__result_add_extra(qerr_result *r, const char *name, int ndim, const int64_t *shape,
                           const float *data) {
    QERR_CHECK(r->n_extras < QERR_MAX_EXTRAS, QERR_E_INTERNAL, "too many extras in a result");
    QERR_CHECK(ndim >= 1 && ndim <= QERR_MAX_DIMS, QERR_E_INTERNAL, "extra '%s' has ndim %d", name,
               ndim);
    qerr_extra *e = &r->extras[r->n_extras];
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    e->data = qerr__malloc2((size_t)n, sizeof(float));
    QERR_CHECK(e->data, QERR_E_NOMEM, "cannot allocate extra '%s'", name);
    memcpy(e->data, data, (size_t)n * sizeof(float));
    snprintf(e->name, sizeof e->name, "%s", name);
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    r->n_extras++;
    return QERR_OK;
}

int qerr__result_alloc_mins(qerr_result *r) {
    if (r->mins) return QERR_OK;
    r->mins = qerr__calloc((size_t)(r->rows * r->groups), sizeof(float));
    QERR_CHECK(r->mins, QERR_E_NOMEM, "cannot allocate the offsets of a %lldx%lld result",
               (long long)r->rows, (long long)r->cols);
    return QERR_OK;
}

/* Compiled with -ffp-contract=off: s * x - min must round twice, as the
 * engines that define such grids (ggml's k-quants) compute it. */
void qerr__result_dequant(const qerr_result *r, float *out) {
    for (int64_t i = 0; i < r->rows; i++) {
        const uint8_t *c = r->codes + i * r->cols;
        const float *s = r->scales + i * r->groups;
        const int32_t *z = r->zeros + i * r->groups;
        const float *m = r->mins ? r->mins + i * r->groups : NULL;
        float *o = out + i * r->cols;
        for (int64_t j = 0; j < r->cols; j++) {
            int32_t g = r->g_idx[j];
            o[j] = s[g] * (float)((int32_t)c[j] - z[g]);
        }
        if (m)
            for (int64_t j = 0; j < r->cols; j++) o[j] = o[j] - m[r->g_idx[j]];
    }
    for (int64_t k = 0; k < r->n_outliers; k++)
        out[(int64_t)r->out_row[k] * r->cols + r->out_col[k]] += r->out_val[k];
}

/* ---- public accessors ---------------------------------------------------- */
int64_t qerr_result_rows(const qerr_result *r) { return r ? r->rows : -1; }
int64_t qerr_result_cols(const qerr_result *r) { return r ? r->cols : -1; }
int qerr_result_bits(const qerr_result *r) { return r ? r->bits : -1; }
int64_t qerr_result_group_size(const qerr_result *r) { return r ? r->group_size : -1; }
int64_t qerr_result_groups(const qerr_result *r) { return r ? r->groups : -1; }
const char *qerr_result_plan(const qerr_result *r) { return r && r->plan ? r->plan : ""; }

static int check_out(const char *fn, const qerr_result *r, const void *out, size_t cap,
                     size_t need) {
    QERR_CHECK(r, QERR_E_INVALID_ARG, "%s: result is NULL", fn);
    QERR_CHECK(out || need == 0, QERR_E_INVALID_ARG, "%s: output buffer is NULL", fn);
    QERR_CHECK(cap >= need, QERR_E_SHAPE, "%s: buffer holds %zu elements, %zu needed", fn, cap,
               need);
    return QERR_OK;
}

int qerr_result_codes(const qerr_result *r, uint8_t *out, size_t cap) {
    QERR_TRY(check_out("qerr_result_codes", r, out, cap, r ? (size_t)(r->rows * r->cols) : 0));
    memcpy(out, r->codes, (size_t)(r->rows * r->cols));
    return QERR_OK;
}

static size_t packed_row_bytes(const qerr_result *r) {
    return (size_t)((r->cols * r->bits + 7) / 8);
}

size_t qerr_result_packed_size(const qerr_result *r) {
    return r ? packed_row_bytes(r) * (size_t)r->rows : 0;
}

int qerr_result_packed(const qerr_result *r, uint8_t *out, size_t cap) {
    QERR_TRY(check_out("qerr_result_packed", r, out, cap, qerr_result_packed_size(r)));
    size_t rb = packed_row_bytes(r);
    memset(out, 0, rb * (size_t)r->rows);
    for (int64_t i = 0; i < r->rows; i++) {
        uint8_t *o = out + (size_t)i * rb;
        const uint8_t *c = r->codes + i * r->cols;
        uint64_t bit = 0;
        for (int64_t j = 0; j < r->cols; j++, bit += (uint64_t)r->bits) {
            uint32_t v = (uint32_t)c[j] << (bit & 7);
            o[bit >> 3] |= (uint8_t)v;
            if ((bit & 7) + (uint64_t)r->bits > 8) o[(bit >> 3) + 1] |= (uint8_t)(v >> 8);
        }
    }
    return QERR_OK;
}

int qerr_result_scales(const qerr_result *r, float *out, size_t count) {
    QERR_TRY(check_out("qerr_result_scales", r, out, count, r ? (size_t)(r->rows * r->groups) : 0));
    memcpy(out, r->scales, (size_t)(r->rows * r->groups) * sizeof(float));
    return QERR_OK;
}

int qerr_result_zeros(const qerr_result *r, int32_t *out, size_t count) {
    QERR_TRY(check_out("qerr_result_zeros", r, out, count, r ? (size_t)(r->rows * r->groups) : 0));
    memcpy(out, r->zeros, (size_t)(r->rows * r->groups) * sizeof(int32_t));
    return QERR_OK;
}

int qerr_result_mins(const qerr_result *r, float *out, size_t count) {
    QERR_TRY(check_out("qerr_result_mins", r, out, count, r ? (size_t)(r->rows * r->groups) : 0));
    if (r->mins) memcpy(out, r->mins, (size_t)(r->rows * r->groups) * sizeof(float));
    else memset(out, 0, (size_t)(r->rows * r->groups) * sizeof(float));
    return QERR_OK;
}

int qerr_result_g_idx(const qerr_result *r, int32_t *out, size_t count) {
    QERR_TRY(check_out("qerr_result_g_idx", r, out, count, r ? (size_t)r->cols : 0));
    memcpy(out, r->g_idx, (size_t)r->cols * sizeof(int32_t));
    return QERR_OK;
}

int64_t qerr_result_outlier_count(const qerr_result *r) { return r ? r->n_outliers : -1; }

int qerr_result_outliers(const qerr_result *r, int32_t *rows, int32_t *cols, float *values,
                         size_t count) {
    size_t need = r ? (size_t)r->n_outliers : 0;
    QERR_TRY(check_out("qerr_result_outliers", r, rows, count, need));
    QERR_CHECK((cols && values) || need == 0, QERR_E_INVALID_ARG,
               "qerr_result_outliers: output buffer is NULL");
    if (need) {
        memcpy(rows, r->out_row, need * sizeof(int32_t));
        memcpy(cols, r->out_col, need * sizeof(int32_t));
        memcpy(values, r->out_val, need * sizeof(float));
    }
    return QERR_OK;
}

int qerr_result_extra_count(const qerr_result *r) { return r ? r->n_extras : -1; }

int qerr_result_extra(const qerr_result *r, int index, const char **name, int *ndim,
                      int64_t shape[QERR_MAX_DIMS], const float **data) {
    QERR_CHECK(r, QERR_E_INVALID_ARG, "qerr_result_extra: result is NULL");
    QERR_CHECK(index >= 0 && index < r->n_extras, QERR_E_RANGE,
               "qerr_result_extra: index %d is outside 0..%d", index, r->n_extras - 1);
    const qerr_extra *e = &r->extras[index];
    if (name) *name = e->name;
    if (ndim) *ndim = e->ndim;
    if (shape)
        for (int i = 0; i < QERR_MAX_DIMS; i++) shape[i] = i < e->ndim ? e->shape[i] : 0;
    if (data) *data = e->data;
    return QERR_OK;
}

int qerr_result_dequantize(const qerr_result *r, float *out, size_t count) {
    QERR_TRY(check_out("qerr_result_dequantize", r, out, count,
                       r ? (size_t)(r->rows * r->cols) : 0));
    qerr__result_dequant(r, out);
    return QERR_OK;
}

double qerr_result_bits_per_weight(const qerr_result *r) {
    if (!r) return NAN;
    /* a method that stores its own layout (ggml's blocks) says its size */
    for (int i = 0; i < r->n_diag; i++)
        if (strcmp(r->diag[i].name, "storage_bits_per_weight") == 0) return r->diag[i].value;
    double bytes = (double)qerr_result_packed_size(r);
    bytes += (double)(r->rows * r->groups) * 2.0; /* scales stored as float16 */
    /* zero points packed at `bits` each; none when every zero is 2^(bits-1) */
    bool sym = true;
    for (int64_t i = 0; i < r->rows * r->groups && sym; i++)
        sym = r->zeros[i] == (1 << (r->bits - 1));
    if (!sym) bytes += ceil((double)(r->rows * r->groups) * r->bits / 8.0);
    if (r->mins) bytes += (double)(r->rows * r->groups) * 2.0; /* offsets as float16 */
    if (!r->g_idx_trivial) bytes += (double)r->cols * 4.0;
    if (r->n_outliers > 0) /* CSR: fp16 value + column index, int32 row pointers */
        bytes += (double)r->n_outliers * (2.0 + (r->cols <= 65536 ? 2.0 : 4.0)) +
                 (double)(r->rows + 1) * 4.0;
    for (int i = 0; i < r->n_extras; i++) {
        double n = 1;
        for (int d = 0; d < r->extras[i].ndim; d++) n *= (double)r->extras[i].shape[d];
        bytes += n * 2.0; /* stored as float16 */
    }
    return bytes * 8.0 / (double)(r->rows * r->cols);
}

int qerr_result_diag(const qerr_result *r, const char *name, double *value) {
    QERR_CHECK(r && name && value, QERR_E_INVALID_ARG, "qerr_result_diag: NULL argument");
    for (int i = 0; i < r->n_diag; i++)
        if (strcmp(r->diag[i].name, name) == 0) {
            *value = r->diag[i].value;
            return QERR_OK;
        }
    return qerr__fail(QERR_E_NOT_FOUND, "qerr_result_diag: no diagnostic named '%s'", name);
}

int qerr_result_diag_count(const qerr_result *r) { return r ? r->n_diag : -1; }

int qerr_result_diag_at(const qerr_result *r, int index, const char **name, double *value) {
    QERR_CHECK(r, QERR_E_INVALID_ARG, "qerr_result_diag_at: result is NULL");
    QERR_CHECK(index >= 0 && index < r->n_diag, QERR_E_RANGE,
               "qerr_result_diag_at: index %d is outside 0..%d", index, r->n_diag - 1);
    if (name) *name = r->diag[index].name;
    if (value) *value = r->diag[index].value;
    return QERR_OK;
}
