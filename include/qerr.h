/*
 * libqerr: post-training quantization of LLM weights.
 *
 * Stable C ABI. Every handle is opaque; every function that can fail returns
 * an int status (QERR_OK = 0, negative on error) and leaves a thread-local
 * message in qerr_last_error(). Nothing here aborts or prints.
 *
 * Thread safety: distinct handles may be used from distinct threads at the
 * same time. One handle must not be mutated from two threads at once;
 * read-only use (accessors, qerr_quantize reading a plan, calibration set and
 * weight) is safe from several threads. qerr_last_error() is per thread.
 *
 * Quantization grid, one meaning everywhere:
 *     w ~= scale * (q - zero)
 * with integer codes q in [0, 2^bits - 1], one float scale and one integer zero
 * per (row, group). Groups are `group_size` consecutive input columns in the
 * original column order unless a column->group index (g_idx) says otherwise.
 */
#ifndef QERR_H
#define QERR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- export macro -------------------------------------------------------- */
#if defined(_WIN32)
#  if defined(QERR_BUILDING)
#    define QERR_API __declspec(dllexport)
#  else
#    define QERR_API
#  endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#  define QERR_API __attribute__((visibility("default")))
#else
#  define QERR_API
#endif

/* ---- version ------------------------------------------------------------- */
#define QERR_VERSION_MAJOR 0
#define QERR_VERSION_MINOR 1
#define QERR_VERSION_PATCH 0
#define QERR_VERSION_NUMBER \
    (QERR_VERSION_MAJOR * 10000 + QERR_VERSION_MINOR * 100 + QERR_VERSION_PATCH)
#define QERR_STRINGIFY_(x) #x
#define QERR_STRINGIFY(x) QERR_STRINGIFY_(x)
#define QERR_VERSION_STRING \
    QERR_STRINGIFY(QERR_VERSION_MAJOR) "." QERR_STRINGIFY(QERR_VERSION_MINOR) \
    "." QERR_STRINGIFY(QERR_VERSION_PATCH)

/* Run-time version: compare with QERR_VERSION_NUMBER to catch a mismatch
 * between the header a program was built with and the library it loaded. */
QERR_API unsigned qerr_version_number(void);
QERR_API const char *qerr_version_string(void);

/* ---- status codes (numbers are stable and never reused) ------------------ */
typedef enum qerr_status {
    QERR_OK = 0,
    QERR_E_INVALID_ARG = -1,    /* NULL pointer, bad enum, bad argument      */
    QERR_E_SHAPE = -2,          /* dimensions do not fit together            */
    QERR_E_NOMEM = -3,          /* allocation failed or size overflows       */
    QERR_E_NONFINITE = -4,      /* NaN or Inf in an input                    */
    QERR_E_NOT_PD = -5,         /* Hessian not positive definite (after all
                                   escalation steps)                         */
    QERR_E_IO = -6,             /* open/read/write/rename failed             */
    QERR_E_FORMAT = -7,         /* corrupt, truncated or malformed file      */
    QERR_E_UNKNOWN_METHOD = -8, /* no method of that name                    */
    QERR_E_UNKNOWN_KEY = -9,    /* plan key the method does not have         */
    QERR_E_RANGE = -10,         /* parameter value out of its range          */
    QERR_E_UNSUPPORTED = -11,   /* valid request this build cannot do        */
    QERR_E_CANCELLED = -12,     /* the progress callback asked to stop       */
    QERR_E_CHECKSUM = -13,      /* stored checksum does not match the data   */
    QERR_E_ABI = -14,           /* struct/version mismatch                   */
    QERR_E_INTERNAL = -15,      /* a bug in libqerr: please report it        */
    QERR_E_NOT_FOUND = -16,     /* named item (tensor, key, file) is absent  */
    QERR_E_NUMERIC = -17        /* a numeric routine failed (e.g. SVD)       */
} qerr_status;

/* Static, never NULL, never fails: "ok", "invalid argument", ... */
QERR_API const char *qerr_status_string(int status);
/* The message of the last failing call on this thread, e.g.
 * "qerr_quantize: weight has 4096 columns but calibration set has 2048".
 * Never NULL; "" when no call failed yet. Valid until the next libqerr call
 * on this thread. */
QERR_API const char *qerr_last_error(void);

/* ---- context: threads, seed, log and progress callbacks ------------------ */
typedef struct qerr_ctx_s qerr_ctx;

enum { QERR_LOG_ERROR = 1, QERR_LOG_WARN = 2, QERR_LOG_INFO = 3, QERR_LOG_DEBUG = 4 };
typedef void (*qerr_log_fn)(void *user, int level, const char *message);
/* stage: a short label ("gptq", "quantease sweep"); fraction in [0, 1].
 * Return non-zero to cancel: the running call returns QERR_E_CANCELLED and
 * frees everything it allocated. */
typedef int (*qerr_progress_fn)(void *user, const char *stage, double fraction);

QERR_API int qerr_ctx_create(qerr_ctx **out);
QERR_API void qerr_ctx_free(qerr_ctx *ctx); /* NULL is a no-op */
/* Worker threads for libqerr's own loops (0 = number of online CPUs).
 * BLAS threading follows the BLAS library's own settings (libqerr never
 * changes process-wide state such as openblas_set_num_threads). Results are
 * identical whatever the thread count, up to BLAS float rounding. */
QERR_API int qerr_ctx_set_threads(qerr_ctx *ctx, int threads);
QERR_API int qerr_ctx_threads(const qerr_ctx *ctx);
QERR_API int qerr_ctx_set_seed(qerr_ctx *ctx, uint64_t seed);
QERR_API uint64_t qerr_ctx_seed(const qerr_ctx *ctx);
QERR_API int qerr_ctx_set_log(qerr_ctx *ctx, qerr_log_fn fn, void *user, int max_level);
QERR_API int qerr_ctx_set_progress(qerr_ctx *ctx, qerr_progress_fn fn, void *user);
/* Memory budget in bytes for the model pipeline (0 = none, the default):
 * qerr_model_quantize_file plans its working set first; calibration
 * activations that do not fit go to an unlinked temporary file in $TMPDIR
 * (else /tmp), and a run that cannot fit even so fails with QERR_E_NOMEM
 * before any work, naming what it needs (qerr_model_quantize_estimate). */
QERR_API int qerr_ctx_set_max_memory(qerr_ctx *ctx, uint64_t bytes);
QERR_API uint64_t qerr_ctx_max_memory(const qerr_ctx *ctx);

/* ---- tensors ------------------------------------------------------------- */
typedef struct qerr_tensor_s qerr_tensor;

typedef enum qerr_dtype {
    QERR_DTYPE_F32 = 1,
    QERR_DTYPE_F16 = 2,
    QERR_DTYPE_BF16 = 3
} qerr_dtype;

#define QERR_MAX_DIMS 4

/* Size in bytes of one element, 0 for an unknown dtype. */
QERR_API size_t qerr_dtype_size(int dtype);
QERR_API const char *qerr_dtype_name(int dtype);

/* A new zero-filled tensor that owns its data. */
QERR_API int qerr_tensor_create(qerr_tensor **out, int dtype, int ndim, const int64_t *shape);
/* A new tensor holding a copy of `data` (row-major, contiguous). */
QERR_API int qerr_tensor_from_data(qerr_tensor **out, int dtype, int ndim,
                                   const int64_t *shape, const void *data);
/* A tensor that borrows `data`: the caller keeps it alive and unchanged
 * while the tensor exists; qerr_tensor_free does not free it. */
QERR_API int qerr_tensor_wrap(qerr_tensor **out, int dtype, int ndim,
                              const int64_t *shape, void *data);
QERR_API void qerr_tensor_free(qerr_tensor *t); /* NULL is a no-op */
QERR_API int qerr_tensor_ndim(const qerr_tensor *t);           /* -1 if NULL */
QERR_API int64_t qerr_tensor_dim(const qerr_tensor *t, int i);  /* -1 if out of range */
QERR_API int qerr_tensor_dtype(const qerr_tensor *t);           /* -1 if NULL */
QERR_API int64_t qerr_tensor_numel(const qerr_tensor *t);
QERR_API size_t qerr_tensor_nbytes(const qerr_tensor *t);
QERR_API void *qerr_tensor_data(const qerr_tensor *t);
/* A new F32 tensor with the values of `t` converted (a copy even if F32). */
QERR_API int qerr_tensor_to_f32(const qerr_tensor *t, qerr_tensor **out);

/* ---- calibration sets (one per linear-layer input space) ----------------- */
typedef struct qerr_calib_s qerr_calib;

QERR_API int qerr_calib_create(qerr_calib **out, int64_t in_features);
QERR_API void qerr_calib_free(qerr_calib *c);
/* Add activation rows: a 2-D tensor [rows, in_features] of any dtype. H += X^T X
 * is accumulated with SYRK in float32 blocks of bounded size and summed into a
 * float64 Gram matrix, so memory is O(in^2) whatever the number of rows. */
QERR_API int qerr_calib_add(qerr_calib *c, const qerr_tensor *rows);
QERR_API int qerr_calib_add_f32(qerr_calib *c, const float *rows, int64_t nrows);
/* A set from a given symmetric Gram matrix H (n x n, row-major float64) and
 * the number of rows it summed. H[i][j] and H[j][i] may differ by float
 * rounding (a Gram matrix summed in float32): up to 1e-3 x sqrt(H[i][i]
 * H[j][j]), and the set holds their mean; more is QERR_E_INVALID_ARG. */
QERR_API int qerr_calib_from_gram(qerr_calib **out, const double *gram, int64_t n,
                                  int64_t nsamples);
/* dst += src (Gram matrices and sample counts; reservoirs are merged). */
QERR_API int qerr_calib_merge(qerr_calib *dst, const qerr_calib *src);
/* Keep a uniform, seeded reservoir sample of at most max_rows raw rows (for
 * methods that need activations). Must be called before the first add. */
QERR_API int qerr_calib_set_reservoir(qerr_calib *c, int64_t max_rows, uint64_t seed);
QERR_API int64_t qerr_calib_in_features(const qerr_calib *c);
QERR_API int64_t qerr_calib_nsamples(const qerr_calib *c);
/* Copy H (n x n float64, row-major) out. */
QERR_API int qerr_calib_gram(const qerr_calib *c, double *out, int64_t n);
/* Rows held in the reservoir (row-major float32); *nrows may be 0. */
QERR_API int qerr_calib_reservoir(const qerr_calib *c, const float **rows, int64_t *nrows);
/* zlib-compressed, CRC-checked file; see docs/formats.md. */
QERR_API int qerr_calib_save(const qerr_calib *c, const char *path);
QERR_API int qerr_calib_load(qerr_calib **out, const char *path);

/* ---- plans: a method and its settings ------------------------------------ */
typedef struct qerr_plan_s qerr_plan;

typedef enum qerr_param_type {
    QERR_PARAM_INT = 1,
    QERR_PARAM_DOUBLE = 2,
    QERR_PARAM_BOOL = 3,
    QERR_PARAM_CHOICE = 4 /* one of a fixed list of words */
} qerr_param_type;

/* Methods compiled into this library, e.g. "rtn", "gptq". */
QERR_API int qerr_method_count(void);
QERR_API const char *qerr_method_name(int index); /* NULL if out of range */
QERR_API const char *qerr_method_summary(const char *method); /* NULL if unknown */
QERR_API int qerr_method_param_count(const char *method); /* <0 status if unknown */
/* Where a method works: QERR_SCOPE_LAYER (one weight, qerr_quantize, and
 * every layer of a model) and/or QERR_SCOPE_BLOCK (whole decoder blocks,
 * through qerr_model_quantize). A method with both chooses by a plan key
 * (scope=layer|block); one with QERR_SCOPE_BLOCK alone refuses a single
 * weight with QERR_E_UNSUPPORTED. <0 status if the method is unknown. */
enum { QERR_SCOPE_LAYER = 1, QERR_SCOPE_BLOCK = 2 };
QERR_API int qerr_method_scopes(const char *method);
/* Describe parameter `index` of `method`. Any output pointer may be NULL.
 * `choices` is "a|b|c" for QERR_PARAM_CHOICE, "" otherwise; `default_value`
 * is the canonical text of the default. The strings are static: valid for
 * the life of the program. */
QERR_API int qerr_method_param_info(const char *method, int index, const char **key,
                                    int *type, const char **default_value, double *min,
                                    double *max, const char **choices, const char **help);

/* A plan for `method` with every key at its default. */
QERR_API int qerr_plan_create(qerr_plan **out, const char *method);
/* "gptq:bits=4,group_size=128,act_order=1" (or just "gptq"). */
QERR_API int qerr_plan_parse(qerr_plan **out, const char *spec);
QERR_API int qerr_plan_clone(const qerr_plan *p, qerr_plan **out);
QERR_API void qerr_plan_free(qerr_plan *p);
QERR_API const char *qerr_plan_method(const qerr_plan *p);
/* Typed setters; unknown keys give QERR_E_UNKNOWN_KEY, out-of-range or
 * wrong-type values QERR_E_RANGE / QERR_E_INVALID_ARG, each naming the key. */
QERR_API int qerr_plan_set_int(qerr_plan *p, const char *key, int64_t value);
QERR_API int qerr_plan_set_double(qerr_plan *p, const char *key, double value);
/* Any type from text: "4", "0.01", "1"/"true", a choice word. */
QERR_API int qerr_plan_set(qerr_plan *p, const char *key, const char *value);
QERR_API int qerr_plan_get_int(const qerr_plan *p, const char *key, int64_t *value);
QERR_API int qerr_plan_get_double(const qerr_plan *p, const char *key, double *value);
/* Canonical text of the value of `key` (e.g. a choice word). */
QERR_API int qerr_plan_get_string(const qerr_plan *p, const char *key, char *buf, size_t cap);
/* Canonical spec, every key in table order: "gptq:bits=4,group_size=128,...".
 * Writes at most `cap` bytes including the NUL; *needed (if not NULL) gets the
 * full length + 1. Returns QERR_E_RANGE if `cap` was too small. */
QERR_API int qerr_plan_to_string(const qerr_plan *p, char *buf, size_t cap, size_t *needed);

/* ---- quantization -------------------------------------------------------- */
typedef struct qerr_result_s qerr_result;

/* Quantize `weight` [out, in] (any dtype) with `plan`, using `calib` for
 * methods that need H (may be NULL for "rtn"). `ctx` may be NULL (defaults). */
QERR_API int qerr_quantize(qerr_ctx *ctx, const qerr_plan *plan, const qerr_tensor *weight,
                           const qerr_calib *calib, qerr_result **out);
QERR_API void qerr_result_free(qerr_result *r);

QERR_API int64_t qerr_result_rows(const qerr_result *r);
QERR_API int64_t qerr_result_cols(const qerr_result *r);
QERR_API int qerr_result_bits(const qerr_result *r);
/* Columns per group; equals cols for per-row grids. */
QERR_API int64_t qerr_result_group_size(const qerr_result *r);
/* Groups per row (scales/zeros are rows x groups). */
QERR_API int64_t qerr_result_groups(const qerr_result *r);
QERR_API const char *qerr_result_plan(const qerr_result *r); /* canonical spec */

/* Unpacked codes, one byte per weight, row-major rows x cols. */
QERR_API int qerr_result_codes(const qerr_result *r, uint8_t *out, size_t cap);
/* Bit-packed codes: each row starts on a byte boundary, codes LSB-first.
 * Bytes per row = ceil(cols * bits / 8). */
QERR_API size_t qerr_result_packed_size(const qerr_result *r);
QERR_API int qerr_result_packed(const qerr_result *r, uint8_t *out, size_t cap);
QERR_API int qerr_result_scales(const qerr_result *r, float *out, size_t count);
QERR_API int qerr_result_zeros(const qerr_result *r, int32_t *out, size_t count);
/* Per-group offsets m (rows x groups): w = scale * (code - zero) - m, with
 * the product and the difference rounded separately in float32 (grids with a
 * float minimum, e.g. ggml's k-quants). All 0 for results without them. */
QERR_API int qerr_result_mins(const qerr_result *r, float *out, size_t count);
/* Group of each input column (length cols). */
QERR_API int qerr_result_g_idx(const qerr_result *r, int32_t *out, size_t count);
/* Sparse full-precision part S (W ~= dequant(Q) + S), COO sorted by (row, col). */
QERR_API int64_t qerr_result_outlier_count(const qerr_result *r);
QERR_API int qerr_result_outliers(const qerr_result *r, int32_t *rows, int32_t *cols,
                                  float *values, size_t count);
/* Learned side tensors (e.g. transforms an engine applies at run time). */
QERR_API int qerr_result_extra_count(const qerr_result *r);
QERR_API int qerr_result_extra(const qerr_result *r, int index, const char **name, int *ndim,
                               int64_t shape[QERR_MAX_DIMS], const float **data);
/* The quantized weight (codes, grid and outliers) as float32, rows x cols. */
QERR_API int qerr_result_dequantize(const qerr_result *r, float *out, size_t count);
/* Bits per weight of the deployment layout an engine stores, every byte
 * counted: packed codes, fp16 scales, zeros packed at `bits` each (none when
 * every zero is 2^(bits-1)), int32 g_idx when not trivial, outliers as CSR
 * (fp16 value + 16-bit column, int32 row pointers), extras as fp16; times 8,
 * over rows * cols; offsets as fp16. A method that stores its own layout
 * gives its size instead ("ggml": the ggml type's, e.g. 4.5 for Q4_K). (The
 * .qerr container keeps float32 scales and values for exact round trips, so
 * it is a little larger.) */
QERR_API double qerr_result_bits_per_weight(const qerr_result *r);

/* Diagnostics, by name: "layer_error" (relative, see qerr_layer_error; NaN
 * without calibration), "damp" (damping actually used), "fallbacks",
 * "iterations", "seconds", and method-specific ones. */
QERR_API int qerr_result_diag(const qerr_result *r, const char *name, double *value);
QERR_API int qerr_result_diag_count(const qerr_result *r);
QERR_API int qerr_result_diag_at(const qerr_result *r, int index, const char **name,
                                 double *value);

/* tr((W - Wq) H (W - Wq)^T) / tr(W H W^T); weight and dequantized are
 * [out, in] tensors of any dtype. */
QERR_API int qerr_layer_error(const qerr_tensor *weight, const qerr_tensor *dequantized,
                              const qerr_calib *calib, double *out);

#ifdef __cplusplus
}
#endif

#include "qerr/model.h"
#include "qerr/export.h"
#include "qerr/tokenizer.h"

#endif /* QERR_H */
