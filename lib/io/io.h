/* Internal definitions of the file-format layer (lib/io/): the strict JSON
 * reader and the safetensors reader. Formats only: nothing here knows a
 * model. Never installed. */
#ifndef QERR_IO_H
#define QERR_IO_H

#include "../core/internal.h"

/* ---- strict JSON (json.c) ------------------------------------------------ */
enum {
    QERR_JSON_NULL = 1,
    QERR_JSON_BOOL,
    QERR_JSON_NUMBER,
    QERR_JSON_STRING,
    QERR_JSON_ARRAY,
    QERR_JSON_OBJECT
};
#define QERR_JSON_MAX_DEPTH 64
#define QERR_JSON_MAX_BYTES ((size_t)256 << 20)

typedef struct qerr_json {
    int type;
    bool boolean;
    double number;
    bool is_int;      /* number written without fraction/exponent, fits int64 */
    int64_t integer;  /* valid when is_int */
    char *str;        /* STRING: NUL-terminated UTF-8 (never contains NUL) */
    size_t len;       /* STRING: bytes; ARRAY/OBJECT: element count */
    struct qerr_json *items; /* ARRAY elements / OBJECT values */
    char **keys;      /* OBJECT keys (unique), parallel to items */
} qerr_json;

/* Parse exactly one JSON value from text[0..n) (RFC 8259; strings must be
 * valid UTF-8, \u0000 and duplicate object keys are rejected, nesting is
 * capped at QERR_JSON_MAX_DEPTH). `what` names the input in messages. */
int qerr__json_parse(const char *text, size_t n, const char *what, qerr_json **out);
void qerr__json_free(qerr_json *j);
/* Member of an object by key, NULL if absent or j is not an object. */
const qerr_json *qerr__json_get(const qerr_json *j, const char *key);
/* True when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates). */
bool qerr__utf8_valid(const uint8_t *s, size_t n);

/* ---- safetensors (safetensors.c) ----------------------------------------- */
#define QERR_ST_MAX_HEADER ((uint64_t)100 << 20) /* as Hugging Face's reader */
#define QERR_ST_MAX_DIM ((int64_t)1 << 40)

/* safetensors I32 (GPTQ packed tensors): an st entry dtype only, never a
 * qerr_tensor dtype (qerr__st_to_f32 converts it by value). */
#define QERR__DTYPE_I32 100

typedef struct qerr_st_entry {
    char *name;
    int dtype; /* QERR_DTYPE_* or QERR__DTYPE_I32 */
    int ndim;
    int64_t shape[QERR_MAX_DIMS];
    int64_t numel;
    const uint8_t *data; /* inside the mapping, possibly unaligned */
    size_t nbytes;
} qerr_st_entry;

typedef struct qerr_st_file {
    void *map; /* mmap of the file, or NULL for a caller's buffer */
    size_t map_len;
    int n;
    qerr_st_entry *entries;
    int n_meta; /* __metadata__ string pairs */
    char **meta_keys, **meta_values;
} qerr_st_file;

/* Validate and index a safetensors image held in buf[0..len) (borrowed: it
 * must outlive the result). Every failure is QERR_E_FORMAT or
 * QERR_E_UNSUPPORTED with a message naming `what`. */
int qerr__st_parse(const uint8_t *buf, size_t len, const char *what, qerr_st_file *out);
/* mmap a regular file read-only: *map NULL for an empty file; release with
 * munmap(*map, *len). Messages name `path`. */
int qerr__map_file(const char *path, void **map, size_t *len);
/* mmap `path` read-only and parse it. */
int qerr__st_open(const char *path, qerr_st_file *out);
void qerr__st_close(qerr_st_file *f);
const char *qerr__st_meta(const qerr_st_file *f, const char *key); /* NULL if absent */
/* Convert n stored values of `dtype` at src (any alignment) to float32. */
void qerr__st_convert(int dtype, const uint8_t *src, int64_t n, float *dst);
/* Convert an entry to float32 (dst holds numel floats). */
void qerr__st_to_f32(const qerr_st_entry *e, float *dst);
/* Index of the first NaN/Inf of an entry in its stored dtype, or -1. */
int64_t qerr__st_find_nonfinite(const qerr_st_entry *e);
/* Let the kernel drop the mapped pages of an entry (they are read again
 * from the file on the next access), so converted layers leave no RSS. */
void qerr__st_drop_pages(const qerr_st_file *f, const qerr_st_entry *e);

#endif /* QERR_IO_H */
