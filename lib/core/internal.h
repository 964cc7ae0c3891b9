/* Internal definitions shared by libqerr's translation units. Never installed.
 * Internal functions with external linkage carry the qerr__ prefix and stay
 * hidden (the library is built with -fvisibility=hidden). */
#ifndef QERR_INTERNAL_H
#define QERR_INTERNAL_H

#include "qerr.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors (error.c) ---------------------------------------------------- */
/* Record a message for qerr_last_error() and return `code`. */
int qerr__fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void qerr__clear_error(void);

/* Check a condition in real code (never assert): on failure set the message
 * and return the code from the enclosing function. */
#define QERR_CHECK(cond, code, ...)                                            \
    do {                                                                       \
        if (!(cond)) return qerr__fail((code), __VA_ARGS__);                   \
    } while (0)
/* Forward a failing status unchanged (its message is already set). */
#define QERR_TRY(expr)                                                         \
    do {                                                                       \
        int qerr_try_status_ = (expr);                                         \
        if (qerr_try_status_ != QERR_OK) return qerr_try_status_;              \
    } while (0)

/* ---- memory (error.c) ---------------------------------------------------- */
/* calloc/malloc with overflow-checked sizes; NULL on failure (caller reports
 * QERR_E_NOMEM). */
void *qerr__calloc(size_t count, size_t size);
void *qerr__malloc2(size_t count, size_t size);
/* count * size into *out, false on overflow. */
bool qerr__mul_size(size_t count, size_t size, size_t *out);

/* ---- context (ctx.c) ----------------------------------------------------- */
struct qerr_ctx_s {
    int threads;
    uint64_t seed;
    qerr_log_fn log_fn;
    void *log_user;
    int log_level;
    qerr_progress_fn progress_fn;
    void *progress_user;
    uint64_t max_memory; /* bytes the model pipeline may hold, 0 = no limit */
};
/* The defaults used when a caller passes a NULL ctx. */
const qerr_ctx *qerr__default_ctx(void);
int qerr__ctx_threads(const qerr_ctx *ctx); /* resolved (>= 1) */
void qerr__log(const qerr_ctx *ctx, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Report progress; returns QERR_E_CANCELLED (message set) if the callback
 * asked to stop, QERR_OK otherwise. */
int qerr__progress(const qerr_ctx *ctx, const char *stage, double fraction);

/* ---- parallel loops (parallel.c) ----------------------------------------- */
/* Calls fn(arg, begin, end) over disjoint chunks of [0, n) on up to
 * `threads` threads. Chunking depends only on n and threads; each index is
 * handled by exactly one call, so row-independent work gives identical
 * results for every thread count. */
typedef void (*qerr_range_fn)(void *arg, int64_t begin, int64_t end);
void qerr__parallel_for(int threads, int64_t n, int64_t min_chunk, qerr_range_fn fn, void *arg);

/* ---- dtype conversion (dtype.c) ------------------------------------------ */
float qerr__f16_to_f32(uint16_t h);
uint16_t qerr__f32_to_f16(float f);
float qerr__bf16_to_f32(uint16_t h);
uint16_t qerr__f32_to_bf16(float f);
/* Convert n elements of `dtype` at src to float32. */
void qerr__to_f32(int dtype, const void *src, float *dst, int64_t n);

/* ---- tensors (tensor.c) -------------------------------------------------- */
struct qerr_tensor_s {
    int dtype;
    int ndim;
    int64_t shape[QERR_MAX_DIMS];
    int64_t numel;
    void *data;
    bool owns_data;
};
/* A float32 view of t: `*buf` is t's own data when t is F32, else a new
 * allocation the caller frees (set in *owned). */
int qerr__tensor_f32(const qerr_tensor *t, const float **buf, float **owned);
/* First non-finite index in x[0..n), or -1. */
int64_t qerr__find_nonfinite_f32(const float *x, int64_t n);
int64_t qerr__find_nonfinite_f64(const double *x, int64_t n);

/* ---- calibration (calib.c) ----------------------------------------------- */
struct qerr_calib_s {
    int64_t n;        /* in_features */
    int64_t nsamples; /* rows accumulated into gram */
    double *gram;     /* n x n, full symmetric, row-major */
    /* reservoir of raw rows */
    int64_t res_cap;
    int64_t res_rows;
    float *res;
    uint64_t res_rng;
    int64_t res_seen;
};

/* ---- large arrays, in memory or spilled to a temporary file (bigbuf.c) --- */
int qerr__big_alloc(size_t bytes, bool spill, const char *what, void **out);
void qerr__big_free(void *p);
/* Drop the resident pages of p[0..bytes) when p is spilled (data is kept). */
void qerr__big_release(const void *p, size_t bytes);
bool qerr__big_spilled(const void *p);

/* ---- random numbers (rng.c) ---------------------------------------------- */
typedef struct { uint64_t s[4]; } qerr_rng;
void qerr__rng_seed(qerr_rng *r, uint64_t seed);
uint64_t qerr__rng_next(qerr_rng *r);
double qerr__rng_uniform(qerr_rng *r);  /* [0, 1) */
double qerr__rng_normal(qerr_rng *r);   /* N(0, 1) */

/* ---- checksums and compressed blobs (blob.c) ----------------------------- */
uint32_t qerr__crc32(const void *data, size_t n);
/* Write/read a file atomically (temp file + rename) / whole into memory. */
int qerr__write_file_atomic(const char *path, const void *data, size_t n);
int qerr__read_file(const char *path, uint8_t **data, size_t *n, size_t max_bytes);
/* zlib deflate/inflate with exact-size checks. */
int qerr__deflate(const void *src, size_t n, uint8_t **dst, size_t *dst_n);
int qerr__inflate(const void *src, size_t n, void *dst, size_t dst_n);

/* ---- plans (plan.c) ------------------------------------------------------ */
typedef struct qerr_param_def {
    const char *key;
    int type;             /* qerr_param_type */
    double def;           /* default (index into choices for CHOICE) */
    double lo, hi;        /* inclusive range (ignored for CHOICE) */
    const char *choices;  /* "a|b|c" for CHOICE, NULL otherwise */
    const char *help;
} qerr_param_def;

struct qerr_method;
#define QERR_PLAN_MAX_PARAMS 48
struct qerr_plan_s {
    const struct qerr_method *method;
    double values[QERR_PLAN_MAX_PARAMS]; /* ints and bools stored exactly */
};
/* Value of a key the method declares (an unknown key is a bug: returns the
 * NaN/-1 sentinel and the caller's tests will catch it). */
int64_t qerr__plan_int(const qerr_plan *p, const char *key);
double qerr__plan_double(const qerr_plan *p, const char *key);
/* Index of the chosen word of a CHOICE key. */
int qerr__plan_choice(const qerr_plan *p, const char *key);

/* ---- results (result.c) -------------------------------------------------- */
#define QERR_MAX_DIAG 32
#define QERR_MAX_EXTRAS 16
typedef struct qerr_extra {
    char name[64];
    int ndim;
    int64_t shape[QERR_MAX_DIMS];
    float *data;
} qerr_extra;

struct qerr_result_s {
    int64_t rows, cols;
    int bits;
    int64_t group_size; /* columns per group (== cols for per-row) */
    int64_t groups;     /* groups per row */
    uint8_t *codes;     /* rows x cols */
    float *scales;      /* rows x groups */
    int32_t *zeros;     /* rows x groups */
    float *mins;        /* rows x groups offsets, NULL when none: w = s (c - z) - min */
    int32_t *g_idx;     /* cols */
    bool g_idx_trivial; /* g_idx[j] == j / group_size */
    int64_t n_outliers; /* COO, sorted by (row, col) */
    int32_t *out_row, *out_col;
    float *out_val;
    int n_extras;
    qerr_extra extras[QERR_MAX_EXTRAS];
    int n_diag;
    struct { char name[32]; double value; } diag[QERR_MAX_DIAG];
    char *plan;
};
/* Allocate codes/scales/zeros/g_idx for the grid; g_idx set to trivial. */
int qerr__result_alloc(qerr_result **out, int64_t rows, int64_t cols, int bits,
                       int64_t group_size);
void qerr__result_set_diag(qerr_result *r, const char *name, double value);
int qerr__result_set_outliers(qerr_result *r, int64_t n, const int32_t *rows,
                              const int32_t *cols, const float *values);
int qerr__result_add_extra(qerr_result *r, const char *name, int ndim, const int64_t *shape,
                           const float *data);
/* Give r per-group offsets (mins, all +0 at first); no-op if it has them. */
int qerr__result_alloc_mins(qerr_result *r);
/* Dequantize into out (rows x cols). */
void qerr__result_dequant(const qerr_result *r, float *out);

/* ---- uniform grid (grid.c) ----------------------------------------------- */
/* The GPTQ/QuantEase min-max grid (range always contains 0); symmetric puts
 * zero at 2^(bits-1). f16_scale rounds every scale to the nearest float16
 * as it is fitted (GPTQ checkpoints store float16 scales), before any code
 * is chosen against it. */
typedef struct qerr_grid {
    int bits;
    int maxq;
    bool sym;
    bool f16_scale;
} qerr_grid;
qerr_grid qerr__grid_make(int bits, bool sym);
/* Scale and zero for the range [xmin, xmax] (0 added to the range). */
void qerr__grid_from_range(const qerr_grid *g, float xmin, float xmax, float *scale,
                           int32_t *zero);
/* Scale/zero for values x[0..n) (stride apart) by min-max, or by the MSE
 * clip search of GPTQ's code (norm 2.4, 100 steps, max shrink 0.8) when
 * clip_search is set. */
void qerr__grid_fit(const qerr_grid *g, const float *x, int64_t n, int64_t stride,
                    bool clip_search, float *scale, int32_t *zero);
static inline int qerr__grid_code(const qerr_grid *g, float x, float scale, int32_t zero) {
    float v = __builtin_nearbyintf(x / scale) + (float)zero;
    if (!(v > 0.0f)) return 0; /* also catches NaN */
    if (v > (float)g->maxq) return g->maxq;
    return (int)v;
}
static inline float qerr__grid_value(int code, float scale, int32_t zero) {
    return scale * (float)(code - zero);
}
static inline float qerr__grid_round(const qerr_grid *g, float x, float scale, int32_t zero) {
    return qerr__grid_value(qerr__grid_code(g, x, scale, zero), scale, zero);
}

/* ---- dense linear algebra helpers (linalg.c) ----------------------------- */
/* Upper-triangular U with H^-1 = U^T U, for symmetric H (n x n, row-major,
 * float64, overwritten). Adds damp * mean(diag H) to the diagonal first; if
 * the Cholesky fails, retries with damp x10 up to 4 times (each retry counts
 * in *fallbacks). *damp_used gets the final fraction. Returns QERR_E_NOT_PD if
 * every try fails. */
int qerr__chol_inverse_upper(double *H, int64_t n, double damp, double *damp_used,
                             int *fallbacks);
/* Largest eigenvalue of symmetric H (n x n float64) by power iteration. */
double qerr__lambda_max(const double *H, int64_t n, int iters, uint64_t seed);

#endif /* QERR_INTERNAL_H */
