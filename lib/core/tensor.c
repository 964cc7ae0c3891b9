/* qerr_tensor: a dense row-major array of f32/f16/bf16 with up to 4 dims. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Largest element count accepted: keeps every byte size far from overflow. */
#define MAX_NUMEL ((int64_t)1 << 40)

size_t qerr_dtype_size(int dtype) {
    switch (dtype) {
    case QERR_DTYPE_F32: return 4;
    case QERR_DTYPE_F16:
    case QERR_DTYPE_BF16: return 2;
    default: return 0;
    }
}

const char *qerr_dtype_name(int dtype) {
    switch (dtype) {
    case QERR_DTYPE_F32: return "f32";
    case QERR_DTYPE_F16: return "f16";
    case QERR_DTYPE_BF16: return "bf16";
    default: return "unknown";
    }
}

static int check_shape(const char *fn, int dtype, int ndim, const int64_t *shape, int64_t *numel) {
    QERR_CHECK(qerr_dtype_size(dtype) != 0, QERR_E_INVALID_ARG, "%s: unknown dtype %d", fn, dtype);
    QERR_CHECK(ndim >= 1 && ndim <= QERR_MAX_DIMS, QERR_E_SHAPE,
               "%s: ndim=%d is outside 1..%d", fn, ndim, QERR_MAX_DIMS);
    QERR_CHECK(shape, QERR_E_INVALID_ARG, "%s: shape is NULL", fn);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        QERR_CHECK(shape[i] >= 1, QERR_E_SHAPE, "%s: shape[%d]=%lld must be >= 1", fn, i,
                   (long long)shape[i]);
        QERR_CHECK(shape[i] <= MAX_NUMEL && n <= MAX_NUMEL / shape[i], QERR_E_SHAPE,
                   "%s: shape is too large (more than 2^40 elements)", fn);
        n *= shape[i];
    }
    *numel = n;
    return QERR_OK;
}

static int make(const char *fn, qerr_tensor **out, int dtype, int ndim, const int64_t *shape,
                void *borrowed, const void *copy_from) {
    QERR_CHECK(out, QERR_E_INVALID_ARG, "%s: out is NULL", fn);
    *out = NULL;
    int64_t numel = 0;
    QERR_TRY(check_shape(fn, dtype, ndim, shape, &numel));
    qerr_tensor *t = qerr__calloc(1, sizeof *t);
    QERR_CHECK(t, QERR_E_NOMEM, "%s: out of memory", fn);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = numel;
    if (borrowed) {
        t->data = borrowed;
        t->owns_data = false;
    } else {
        t->data = qerr__calloc((size_t)numel, qerr_dtype_size(dtype));
        if (!t->data) {
            free(t);
            return qerr__fail(QERR_E_NOMEM, "%s: cannot allocate %lld elements", fn,
                              (long long)numel);
        }
        t->owns_data = true;
        if (copy_from) memcpy(t->data, copy_from, (size_t)numel * qerr_dtype_size(dtype));
    }
    *out = t;
    return QERR_OK;
}

int qerr_tensor_create(qerr_tensor **out, int dtype, int ndim, const int64_t *shape) {
    return make("qerr_tensor_create", out, dtype, ndim, shape, NULL, NULL);
}

int qerr_tensor_from_data(qerr_tensor **out, int dtype, int ndim, const int64_t *shape,
                          const void *data) {
    if (out) *out = NULL;
    QERR_CHECK(data, QERR_E_INVALID_ARG, "qerr_tensor_from_data: data is NULL");
    return make("qerr_tensor_from_data", out, dtype, ndim, shape, NULL, data);
}

int qerr_tensor_wrap(qerr_tensor **out, int dtype, int ndim, const int64_t *shape, void *data) {
    if (out) *out = NULL;
    QERR_CHECK(data, QERR_E_INVALID_ARG, "qerr_tensor_wrap: data is NULL");
    return make("qerr_tensor_wrap", out, dtype, ndim, shape, data, NULL);
}

void qerr_tensor_free(qerr_tensor *t) {
    if (!t) return;
    if (t->owns_data) free(t->data);
    free(t);
}

int qerr_tensor_ndim(const qerr_tensor *t) { return t ? t->ndim : -1; }
int64_t qerr_tensor_dim(const qerr_tensor *t, int i) {
    return (t && i >= 0 && i < t->ndim) ? t->shape[i] : -1;
}
int qerr_tensor_dtype(const qerr_tensor *t) { return t ? t->dtype : -1; }
int64_t qerr_tensor_numel(const qerr_tensor *t) { return t ? t->numel : -1; }
size_t qerr_tensor_nbytes(const qerr_tensor *t) {
    return t ? (size_t)t->numel * qerr_dtype_size(t->dtype) : 0;
}
void *qerr_tensor_data(const qerr_tensor *t) { return t ? t->data : NULL; }

int qerr_tensor_to_f32(const qerr_tensor *t, qerr_tensor **out) {
    QERR_CHECK(out, QERR_E_INVALID_ARG, "qerr_tensor_to_f32: out is NULL");
    *out = NULL;
    QERR_CHECK(t, QERR_E_INVALID_ARG, "qerr_tensor_to_f32: tensor is NULL");
    qerr_tensor *r;
    QERR_TRY(make("qerr_tensor_to_f32", &r, QERR_DTYPE_F32, t->ndim, t->shape, NULL, NULL));
    qerr__to_f32(t->dtype, t->data, r->data, t->numel);
    *out = r;
    return QERR_OK;
}

int qerr__tensor_f32(const qerr_tensor *t, const float **buf, float **owned) {
    *owned = NULL;
    if (t->dtype == QERR_DTYPE_F32) {
        *buf = t->data;
        return QERR_OK;
    }
    float *b = qerr__malloc2((size_t)t->numel, sizeof(float));
    QERR_CHECK(b, QERR_E_NOMEM, "cannot allocate a float32 copy of %lld elements",
               (long long)t->numel);
    qerr__to_f32(t->dtype, t->data, b, t->numel);
    *buf = b;
    *owned = b;
    return QERR_OK;
}

int64_t qerr__find_nonfinite_f32(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}

int64_t qerr__find_nonfinite_f64(const double *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}
