/* qerr_calib: streaming Gram matrix H = X^T X of one input space, with an
 * optional seeded reservoir of raw rows, and its file format. */
#include "internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Rows per SYRK block: float32 products over at most this many rows, then
 * summed into the float64 Gram matrix (keeps both speed and accuracy). */
#define CHUNK_ROWS 4096
#define MAX_FEATURES ((int64_t)1 << 17)

int qerr_calib_create(qerr_calib **out, int64_t in_features) {
    QERR_CHECK(out, QERR_E_INVALID_ARG, "qerr_calib_create: out is NULL");
    *out = NULL;
    QERR_CHECK(in_features >= 1 && in_features <= MAX_FEATURES, QERR_E_SHAPE,
               "qerr_calib_create: in_features=%lld is outside 1..%lld",
               (long long)in_features, (long long)MAX_FEATURES);
    qerr_calib *c = qerr__calloc(1, sizeof *c);
    QERR_CHECK(c, QERR_E_NOMEM, "qerr_calib_create: out of memory");
    c->n = in_features;
    c->gram = qerr__calloc((size_t)(in_features * in_features), sizeof(double));
    if (!c->gram) {
        free(c);
        return qerr__fail(QERR_E_NOMEM, "qerr_calib_create: cannot allocate a %lldx%lld Gram matrix",
                          (long long)in_features, (long long)in_features);
    }
    *out = c;
    return QERR_OK;
}

void qerr_calib_free(qerr_calib *c) {
    if (!c) return;
    free(c->gram);
    free(c->res);
    free(c);
}

int qerr_calib_set_reservoir(qerr_calib *c, int64_t max_rows, uint64_t seed) {
    QERR_CHECK(c, QERR_E_INVALID_ARG, "qerr_calib_set_reservoir: calib is NULL");
    QERR_CHECK(c->nsamples == 0, QERR_E_INVALID_ARG,
               "qerr_calib_set_reservoir: must be called before any rows are added");
    QERR_CHECK(max_rows >= 0 && max_rows <= ((int64_t)1 << 31) / c->n * 64, QERR_E_RANGE,
               "qerr_calib_set_reservoir: max_rows=%lld is out of range", (long long)max_rows);
    free(c->res);
    c->res = NULL;
    c->res_cap = 0;
    c->res_rows = 0;
    if (max_rows > 0) {
        c->res = qerr__malloc2((size_t)(max_rows * c->n), sizeof(float));
        QERR_CHECK(c->res, QERR_E_NOMEM, "qerr_calib_set_reservoir: cannot allocate %lld rows",
                   (long long)max_rows);
    }
    c->res_cap = max_rows;
    c->res_rng = seed;
    c->res_seen = 0;
    return QERR_OK;
}

/* Algorithm R: row number `seen` replaces a random slot with probability cap/seen. */
static void reservoir_offer(qerr_calib *c, const float *row) {
    if (c->res_cap == 0) return;
    c->res_seen++;
    int64_t slot = -1;
    if (c->res_rows < c->res_cap) {
        slot = c->res_rows++;
    } else {
        qerr_rng r;
        qerr__rng_seed(&r, c->res_rng ^ (uint64_t)c->res_seen * 0x9e3779b97f4a7c15ull);
        uint64_t pick = qerr__rng_next(&r) % (uint64_t)c->res_seen;
        if (pick < (uint64_t)c->res_cap) slot = (int64_t)pick;
    }
    if (slot >= 0) memcpy(c->res + slot * c->n, row, (size_t)c->n * sizeof(float));
}

/* Add the upper triangle of a float32 SYRK block into the float64 Gram
 * matrix, on up to two threads (each touches its own rows). */
typedef struct {
    double *gram;
    const float *tmp;
    int64_t n;
} sum_job;

static void sum_row(const sum_job *jb, int64_t i) {
    const int64_t n = jb->n;
    double *g = jb->gram + i * n;
    const float *t = jb->tmp + i * n;
    for (int64_t j = i; j < n; j++) g[j] += (double)t[j];
}

/* Index p handles rows p and n-1-p, so every index has the same work. */
static void sum_upper(void *arg, int64_t begin, int64_t end) {
    const sum_job *jb = arg;
    for (int64_t p = begin; p < end; p++) {
        sum_row(jb, p);
        if (jb->n - 1 - p != p) sum_row(jb, jb->n - 1 - p);
    }
}

/* H += X^T X for nrows finite float32 rows: float32 SYRK per block of at
 * most CHUNK_ROWS rows, summed in float64. Only the upper triangle of gram
 * is updated; the caller mirrors it. */
static void accumulate(qerr_calib *c, const float *X, int64_t nrows, float *tmp) {
    const int64_t n = c->n;
    for (int64_t r0 = 0; r0 < nrows; r0 += CHUNK_ROWS) {
        int64_t k = nrows - r0 < CHUNK_ROWS ? nrows - r0 : CHUNK_ROWS;
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, (int)k, 1.0f, X + r0 * n,
                    (int)n, 0.0f, tmp, (int)n);
        sum_job jb = {c->gram, tmp, n};
        qerr__parallel_for(n >= 512 ? 2 : 1, (n + 1) / 2, 64, sum_upper, &jb);
    }
    for (int64_t r = 0; r < nrows; r++) reservoir_offer(c, X + r * n);
    c->nsamples += nrows;
}

/* Mirror the upper triangle into the lower one (gram is kept full), in
 * tiles so that the column reads stay in cache. */
static void symmetrize(qerr_calib *c) {
    const int64_t n = c->n, T = 64;
    for (int64_t i0 = 0; i0 < n; i0 += T)
        for (int64_t j0 = 0; j0 <= i0; j0 += T) {
            int64_t i1 = i0 + T < n ? i0 + T : n, j1 = j0 + T < n ? j0 + T : n;
            for (int64_t i = i0; i < i1; i++)
                for (int64_t j = j0; j < j1 && j < i; j++) c->gram[i * n + j] = c->gram[j * n + i];
        }
}

/* Index of the first non-finite element of n values of `dtype`, or -1:
 * checked before anything is added, so a failing add changes nothing. */
static int64_t find_nonfinite(int dtype, const void *data, int64_t n) {
    if (dtype == QERR_DTYPE_F32) return qerr__find_nonfinite_f32(data, n);
    const uint16_t *h = data;
    const uint16_t mask = dtype == QERR_DTYPE_F16 ? 0x7c00 : 0x7f80; /* all-ones exponent */
    for (int64_t i = 0; i < n; i++)
        if ((h[i] & mask) == mask) return i;
    return -1;
}

static int add_rows(const char *fn, qerr_calib *c, int dtype, const void *data, int64_t nrows) {
    const int64_t n = c->n;
    int64_t bad = find_nonfinite(dtype, data, nrows * n);
    QERR_CHECK(bad < 0, QERR_E_NONFINITE, "%s: rows[%lld][%lld] is not finite", fn,
               (long long)(bad / n), (long long)(bad % n));
    float *tmp = qerr__malloc2((size_t)(n * n), sizeof(float));
    int64_t block = nrows < CHUNK_ROWS ? nrows : CHUNK_ROWS;
    float *conv = dtype == QERR_DTYPE_F32 ? NULL : qerr__malloc2((size_t)(block * n), sizeof(float));
    if (!tmp || (dtype != QERR_DTYPE_F32 && !conv)) {
        free(tmp);
        free(conv);
        return qerr__fail(QERR_E_NOMEM, "%s: out of memory for a %lldx%lld block", fn,
                          (long long)n, (long long)n);
    }
    size_t esz = qerr_dtype_size(dtype);
    for (int64_t r0 = 0; r0 < nrows; r0 += block) {
        int64_t k = nrows - r0 < block ? nrows - r0 : block;
        const float *X;
        if (conv) {
            qerr__to_f32(dtype, (const char *)data + (size_t)(r0 * n) * esz, conv, k * n);
            X = conv;
        } else {
            X = (const float *)data + r0 * n;
        }
        accumulate(c, X, k, tmp);
    }
    symmetrize(c);
    free(tmp);
    free(conv);
    return QERR_OK;
}

int qerr_calib_add(qerr_calib *c, const qerr_tensor *rows) {
    QERR_CHECK(c && rows, QERR_E_INVALID_ARG, "qerr_calib_add: %s is NULL", c ? "rows" : "calib");
    QERR_CHECK(rows->ndim == 2, QERR_E_SHAPE, "qerr_calib_add: rows must be 2-D, got %d-D",
               rows->ndim);
    QERR_CHECK(rows->shape[1] == c->n, QERR_E_SHAPE,
               "qerr_calib_add: rows have %lld columns, calibration set has %lld in_features",
               (long long)rows->shape[1], (long long)c->n);
    return add_rows("qerr_calib_add", c, rows->dtype, rows->data, rows->shape[0]);
}

int qerr_calib_add_f32(qerr_calib *c, const float *rows, int64_t nrows) {
    QERR_CHECK(c && rows, QERR_E_INVALID_ARG, "qerr_calib_add_f32: %s is NULL",
               c ? "rows" : "calib");
    QERR_CHECK(nrows >= 0, QERR_E_SHAPE, "qerr_calib_add_f32: nrows=%lld is negative",
               (long long)nrows);
    QERR_CHECK(nrows <= ((int64_t)1 << 40) / c->n, QERR_E_SHAPE,
               "qerr_calib_add_f32: nrows=%lld is too large", (long long)nrows);
    if (nrows == 0) return QERR_OK;
    return add_rows("qerr_calib_add_f32", c, QERR_DTYPE_F32, rows, nrows);
}

int qerr_calib_from_gram(qerr_calib **out, const double *gram, int64_t n, int64_t nsamples) {
    QERR_CHECK(out, QERR_E_INVALID_ARG, "qerr_calib_from_gram: out is NULL");
    *out = NULL;
    QERR_CHECK(gram, QERR_E_INVALID_ARG, "qerr_calib_from_gram: gram is NULL");
    QERR_CHECK(nsamples >= 0, QERR_E_RANGE, "qerr_calib_from_gram: nsamples=%lld is negative",
               (long long)nsamples);
    qerr_calib *c;
    QERR_TRY(qerr_calib_create(&c, n));
    int64_t bad = qerr__find_nonfinite_f64(gram, n * n);
    if (bad >= 0) {
        qerr_calib_free(c);
        return qerr__fail(QERR_E_NONFINITE, "qerr_calib_from_gram: H[%lld][%lld] is not finite",
                          (long long)(bad / n), (long long)(bad % n));
    }
    for (int64_t i = 0; i < n; i++)
        if (gram[i * n + i] < 0) {
            qerr_calib_free(c);
            return qerr__fail(QERR_E_NOT_PD, "qerr_calib_from_gram: H[%lld][%lld]=%g is negative",
                              (long long)i, (long long)i, gram[i * n + i]);
        }
    /* A Gram matrix summed in float32 (X.T @ X on a GPU, a BLAS GEMM) is
     * symmetric only up to the rounding of each sum, whose order differs
     * between H[i][j] and H[j][i]. That rounding is bounded relative to
     * sqrt(H[i][i] H[j][j]) (Cauchy-Schwarz bounds the sum of |x_i x_j|), not
     * relative to H[i][j], which cancellation can make small: such a matrix
     * is accepted and symmetrized; a difference beyond rounding is not a
     * Gram matrix. */
    const double rel_tol = 1e-3;
    for (int64_t i = 0; i < n; i++) {
        c->gram[i * n + i] = gram[i * n + i];
        for (int64_t j = i + 1; j < n; j++) {
            double a = gram[i * n + j], b = gram[j * n + i];
            double scale = sqrt(gram[i * n + i] * gram[j * n + j]);
            double tol = rel_tol * scale + 1e-12 * (fabs(a) + fabs(b)) + 1e-300;
            if (fabs(a - b) > tol) {
                qerr_calib_free(c);
                return qerr__fail(QERR_E_INVALID_ARG,
                                  "qerr_calib_from_gram: H is not symmetric (H[%lld][%lld]=%.9g, "
                                  "H[%lld][%lld]=%.9g differ by %.3g, more than float rounding: "
                                  "%.3g x sqrt(H[%lld][%lld] H[%lld][%lld]))",
                                  (long long)i, (long long)j, a, (long long)j, (long long)i, b,
                                  fabs(a - b), rel_tol, (long long)i, (long long)i,
                                  (long long)j, (long long)j);
            }
            c->gram[i * n + j] = c->gram[j * n + i] = 0.5 * (a + b);
        }
    }
    c->nsamples = nsamples;
    *out = c;
    return QERR_OK;
}

/* Merge src's reservoir into dst's as a uniform sample of the rows both have
 * seen: the number taken from each side is drawn as from the union without
 * replacement (hypergeometric), then that many of each side's kept rows are
 * picked uniformly. Rows src saw but did not keep cannot be sampled, so a src
 * without a reservoir adds nothing. */
static int merge_reservoir(qerr_calib *dst, const qerr_calib *src) {
    if (dst->res_cap == 0 || src->res_rows == 0) return QERR_OK;
    const int64_t n = dst->n, ka = dst->res_rows, kb = src->res_rows;
    int64_t ra = dst->res_seen, rb = src->res_seen; /* rows each side stands for */
    int64_t k = ka + kb < dst->res_cap ? ka + kb : dst->res_cap;
    float *out = qerr__malloc2((size_t)(k * n), sizeof(float));
    int64_t *idx = qerr__malloc2((size_t)(ka > kb ? ka : kb), sizeof(int64_t));
    if (!out || !idx) {
        free(out);
        free(idx);
        return qerr__fail(QERR_E_NOMEM, "qerr_calib_merge: out of memory for the reservoir");
    }
    qerr_rng r;
    qerr__rng_seed(&r, dst->res_rng ^ ((uint64_t)(ra + rb) * 0xd1b54a32d192ed03ull));
    int64_t ta = 0, tb = 0;
    for (int64_t s = 0; s < k; s++) {
        bool take_a;
        if (ta == ka) take_a = false;
        else if (tb == kb) take_a = true;
        else take_a = qerr__rng_uniform(&r) * (double)(ra + rb) < (double)ra;
        if (take_a) {
            ta++;
            ra--;
        } else {
            tb++;
            rb--;
        }
    }
    /* ta of dst's rows and tb of src's, each a uniform subset (partial
     * Fisher-Yates over row indices) */
    int64_t o = 0;
    for (int side = 0; side < 2; side++) {
        const qerr_calib *c = side == 0 ? dst : src;
        int64_t kept = side == 0 ? ka : kb, take = side == 0 ? ta : tb;
        for (int64_t i = 0; i < kept; i++) idx[i] = i;
        for (int64_t i = 0; i < take; i++) {
            int64_t j = i + (int64_t)(qerr__rng_next(&r) % (uint64_t)(kept - i));
            int64_t t = idx[i];
            idx[i] = idx[j];
            idx[j] = t;
            memcpy(out + (o++) * n, c->res + idx[i] * n, (size_t)n * sizeof(float));
        }
    }
    memcpy(dst->res, out, (size_t)(k * n) * sizeof(float));
    dst->res_rows = k;
    dst->res_seen += src->res_seen;
    free(out);
    free(idx);
    return QERR_OK;
}

int qerr_calib_merge(qerr_calib *dst, const qerr_calib *src) {
    QERR_CHECK(dst && src, QERR_E_INVALID_ARG, "qerr_calib_merge: %s is NULL", dst ? "src" : "dst");
    QERR_CHECK(dst != src, QERR_E_INVALID_ARG, "qerr_calib_merge: dst and src are the same set");
    QERR_CHECK(dst->n == src->n, QERR_E_SHAPE,
               "qerr_calib_merge: in_features differ (%lld vs %lld)", (long long)dst->n,
               (long long)src->n);
    QERR_TRY(merge_reservoir(dst, src)); /* first: a failure leaves dst unchanged */
    for (int64_t i = 0; i < dst->n * dst->n; i++) dst->gram[i] += src->gram[i];
    dst->nsamples += src->nsamples;
    return QERR_OK;
}

int64_t qerr_calib_in_features(const qerr_calib *c) { return c ? c->n : -1; }
int64_t qerr_calib_nsamples(const qerr_calib *c) { return c ? c->nsamples : -1; }

int qerr_calib_gram(const qerr_calib *c, double *out, int64_t n) {
    QERR_CHECK(c && out, QERR_E_INVALID_ARG, "qerr_calib_gram: %s is NULL", c ? "out" : "calib");
    QERR_CHECK(n == c->n, QERR_E_SHAPE, "qerr_calib_gram: n=%lld but the set has %lld features",
               (long long)n, (long long)c->n);
    memcpy(out, c->gram, (size_t)(n * n) * sizeof(double));
    return QERR_OK;
}

int qerr_calib_reservoir(const qerr_calib *c, const float **rows, int64_t *nrows) {
    QERR_CHECK(c && rows && nrows, QERR_E_INVALID_ARG, "qerr_calib_reservoir: NULL argument");
    *rows = c->res;
    *nrows = c->res_rows;
    return QERR_OK;
}

/* ---- file format ----------------------------------------------------------
 * "QERRCAL1" | u32 version=1 | u32 crc32(payload) | i64 n | i64 nsamples |
 * i64 res_cap | i64 res_rows | u64 res_rng | i64 res_seen | u64 zlen |
 * u32 crc32(header bytes before this field) | u32 reserved = 0 | zlib(payload)
 * payload = gram (n*n f64) | reservoir (res_rows*n f32), little-endian.   */
#define CAL_MAGIC "QERRCAL1"
#define CAL_HEADER 80

static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

int qerr_calib_save(const qerr_calib *c, const char *path) {
    QERR_CHECK(c && path, QERR_E_INVALID_ARG, "qerr_calib_save: %s is NULL", c ? "path" : "calib");
    size_t gbytes = (size_t)(c->n * c->n) * sizeof(double);
    size_t rbytes = (size_t)(c->res_rows * c->n) * sizeof(float);
    uint8_t *payload = malloc(gbytes + rbytes + 1);
    QERR_CHECK(payload, QERR_E_NOMEM, "qerr_calib_save: out of memory");
    memcpy(payload, c->gram, gbytes);
    if (rbytes) memcpy(payload + gbytes, c->res, rbytes);
    uint8_t *z = NULL;
    size_t zn = 0;
    int rc = qerr__deflate(payload, gbytes + rbytes, &z, &zn);
    uint32_t crc = qerr__crc32(payload, gbytes + rbytes);
    free(payload);
    QERR_TRY(rc);
    uint8_t *file = malloc(CAL_HEADER + zn);
    if (!file) {
        free(z);
        return qerr__fail(QERR_E_NOMEM, "qerr_calib_save: out of memory");
    }
    memcpy(file, CAL_MAGIC, 8);
    put32(file + 8, 1);
    put32(file + 12, crc);
    put64(file + 16, (uint64_t)c->n);
    put64(file + 24, (uint64_t)c->nsamples);
    put64(file + 32, (uint64_t)c->res_cap);
    put64(file + 40, (uint64_t)c->res_rows);
    put64(file + 48, c->res_rng);
    put64(file + 56, (uint64_t)c->res_seen);
    put64(file + 64, (uint64_t)zn);
    put32(file + 72, qerr__crc32(file, 72));
    put32(file + 76, 0);
    memcpy(file + CAL_HEADER, z, zn);
    free(z);
    rc = qerr__write_file_atomic(path, file, CAL_HEADER + zn);
    free(file);
    return rc;
}

int qerr_calib_load(qerr_calib **out, const char *path) {
    QERR_CHECK(out, QERR_E_INVALID_ARG, "qerr_calib_load: out is NULL");
    *out = NULL;
    uint8_t *buf;
    size_t len;
    QERR_TRY(qerr__read_file(path, &buf, &len, (size_t)1 << 40));
    int rc = QERR_OK;
    qerr_calib *c = NULL;
#define BAD(code, ...) do { rc = qerr__fail(code, __VA_ARGS__); goto done; } while (0)
    if (len < CAL_HEADER || memcmp(buf, CAL_MAGIC, 8) != 0)
        BAD(QERR_E_FORMAT, "qerr_calib_load: '%s' is not a libqerr calibration file", path);
    if (get32(buf + 8) != 1)
        BAD(QERR_E_FORMAT, "qerr_calib_load: '%s' has unsupported version %u", path, get32(buf + 8));
    if (get32(buf + 72) != qerr__crc32(buf, 72))
        BAD(QERR_E_CHECKSUM, "qerr_calib_load: '%s' header checksum mismatch", path);
    if (get32(buf + 76) != 0)
        BAD(QERR_E_FORMAT, "qerr_calib_load: '%s' has non-zero reserved header bytes", path);
    int64_t n = (int64_t)get64(buf + 16), ns = (int64_t)get64(buf + 24);
    int64_t cap = (int64_t)get64(buf + 32), rows = (int64_t)get64(buf + 40);
    uint64_t zn = get64(buf + 64);
    if (n < 1 || n > MAX_FEATURES || ns < 0 || cap < 0 || rows < 0 || rows > cap ||
        cap > ((int64_t)1 << 31) / n * 64)
        BAD(QERR_E_FORMAT, "qerr_calib_load: '%s' header has impossible sizes", path);
    if (zn != len - CAL_HEADER)
        BAD(QERR_E_FORMAT, "qerr_calib_load: '%s' is truncated or has trailing data", path);
    if ((rc = qerr_calib_create(&c, n)) != QERR_OK) goto done;
    if (cap > 0 && (rc = qerr_calib_set_reservoir(c, cap, get64(buf + 48))) != QERR_OK) goto done;
    size_t gbytes = (size_t)(n * n) * sizeof(double), rbytes = (size_t)(rows * n) * sizeof(float);
    uint8_t *payload = malloc(gbytes + rbytes + 1);
    if (!payload) BAD(QERR_E_NOMEM, "qerr_calib_load: out of memory");
    rc = qerr__inflate(buf + CAL_HEADER, (size_t)zn, payload, gbytes + rbytes);
    if (rc == QERR_OK && qerr__crc32(payload, gbytes + rbytes) != get32(buf + 12))
        rc = qerr__fail(QERR_E_CHECKSUM, "qerr_calib_load: '%s' data checksum mismatch", path);
    if (rc == QERR_OK) {
        memcpy(c->gram, payload, gbytes);
        if (rbytes) memcpy(c->res, payload + gbytes, rbytes);
        c->res_rows = rows;
        c->res_seen = (int64_t)get64(buf + 56);
        c->nsamples = ns;
        if (qerr__find_nonfinite_f64(c->gram, n * n) >= 0)
            rc = qerr__fail(QERR_E_NONFINITE, "qerr_calib_load: '%s' holds a non-finite H", path);
    }
    free(payload);
#undef BAD
done:
    free(buf);
    if (rc != QERR_OK) qerr_calib_free(c);
    else *out = c;
    return rc;
}
