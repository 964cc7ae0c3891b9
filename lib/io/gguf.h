/* GGUF container (llama.cpp's model file, version 3): a reader that checks
 * an untrusted file before anything points into it, and a writer built
 * from small "put" steps run twice (once to size, once to fill). Formats
 * only: what the keys and tensors mean is decided by the callers. */
#ifndef QERR_IO_GGUF_H
#define QERR_IO_GGUF_H

#include "../core/internal.h"

#define QERR_GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian uint32 */
#define QERR_GGUF_VERSION 3
#define QERR_GGUF_ALIGN 32          /* general.alignment when the file has none */
#define QERR_GGUF_MAX_DIMS 4
#define QERR_GGUF_MAX_STRING ((uint64_t)1 << 30)
#define QERR_GGUF_MAX_NAME 256 /* ggml's GGML_MAX_NAME: tensor names are shorter */

/* Value types of metadata. */
enum {
    QERR_GGUF_U8 = 0, QERR_GGUF_I8, QERR_GGUF_U16, QERR_GGUF_I16, QERR_GGUF_U32, QERR_GGUF_I32,
    QERR_GGUF_F32, QERR_GGUF_BOOL, QERR_GGUF_STRING, QERR_GGUF_ARRAY, QERR_GGUF_U64,
    QERR_GGUF_I64, QERR_GGUF_F64, QERR_GGUF_TYPE_COUNT
};

/* ggml tensor types the container sizes itself; the block types are sized
 * and dequantized by lib/io/ggml_blocks.h. */
enum { QERR_GGUF_T_F32 = 0, QERR_GGUF_T_F16 = 1, QERR_GGUF_T_BF16 = 30 };

/* ---- reader -------------------------------------------------------------- */
typedef struct qerr_gguf_kv {
    const char *key; /* not NUL-terminated: key_len bytes */
    size_t key_len;
    int type;        /* QERR_GGUF_* */
    int elem_type;   /* ARRAY: the element type */
    uint64_t count;  /* ARRAY: elements; STRING: bytes */
    const uint8_t *value; /* scalar bytes, string bytes, or the first array element */
} qerr_gguf_kv;

typedef struct qerr_gguf_tensor {
    char name[QERR_GGUF_MAX_NAME];
    int type;  /* ggml type number */
    int ndim;
    int64_t ne[QERR_GGUF_MAX_DIMS]; /* ne[0] is the row length (ggml order) */
    int64_t numel;
    const uint8_t *data; /* inside the file image */
    size_t nbytes;
} qerr_gguf_tensor;

typedef struct qerr_gguf_file {
    void *map; /* mmap of the file, or NULL for a caller's buffer */
    size_t map_len;
    uint32_t version;
    uint32_t alignment;
    int64_t n_kv, n_tensors;
    qerr_gguf_kv *kv;
    qerr_gguf_tensor *tensors;
} qerr_gguf_file;

/* Bytes of one row of n elements of ggml type `type`; 0 when the type is
 * unknown to libqerr or n does not fill whole blocks. */
size_t qerr__gguf_row_bytes(int type, int64_t n);
/* One row of n elements of ggml type `type` at src (any alignment) as
 * float32, exactly as ggml converts it; QERR_E_UNSUPPORTED for a type
 * libqerr cannot dequantize. */
int qerr__gguf_row_to_f32(int type, const uint8_t *src, int64_t n, float *dst);
/* Validate and index a GGUF image buf[0..len) (borrowed: it must outlive
 * the result). Every failure is QERR_E_FORMAT (or QERR_E_UNSUPPORTED for a
 * valid file libqerr cannot read) with a message naming `what`. */
int qerr__gguf_parse(const uint8_t *buf, size_t len, const char *what, qerr_gguf_file *out);
/* mmap `path` read-only and parse it. */
int qerr__gguf_open(const char *path, qerr_gguf_file *out);
void qerr__gguf_close(qerr_gguf_file *f);
/* True when the first four bytes of the file are the GGUF magic. */
bool qerr__gguf_is_file(const char *path);

const qerr_gguf_kv *qerr__gguf_find(const qerr_gguf_file *f, const char *key);
const qerr_gguf_tensor *qerr__gguf_tensor(const qerr_gguf_file *f, const char *name);
/* Typed reads of a key: QERR_E_NOT_FOUND when absent, QERR_E_FORMAT when
 * the value has another type. Integers of any width and sign convert when
 * the value fits; floats accept F32 and F64. */
int qerr__gguf_get_int(const qerr_gguf_file *f, const char *key, int64_t *v);
int qerr__gguf_get_float(const qerr_gguf_file *f, const char *key, double *v);
/* A string value copied into buf (NUL-terminated, truncated to cap - 1). */
int qerr__gguf_get_str(const qerr_gguf_file *f, const char *key, char *buf, size_t cap);

/* ---- writer -------------------------------------------------------------- */
/* Every put appends at s->n; with s->p NULL it only counts, so one pass
 * sizes the file and a second fills a buffer of exactly that size. */
typedef struct qerr_gguf_sink {
    uint8_t *p;
    size_t n;
} qerr_gguf_sink;

void qerr__gguf_put_bytes(qerr_gguf_sink *s, const void *data, size_t k);
/* k zero bytes (or, when counting, just k). Returns where they start. */
uint8_t *qerr__gguf_put_space(qerr_gguf_sink *s, size_t k);
void qerr__gguf_pad(qerr_gguf_sink *s, size_t align);
void qerr__gguf_put_header(qerr_gguf_sink *s, int64_t n_tensors, int64_t n_kv);
void qerr__gguf_kv_u32(qerr_gguf_sink *s, const char *key, uint32_t v);
void qerr__gguf_kv_f32(qerr_gguf_sink *s, const char *key, float v);
void qerr__gguf_kv_bool(qerr_gguf_sink *s, const char *key, bool v);
void qerr__gguf_kv_str(qerr_gguf_sink *s, const char *key, const char *v);
/* Array header only: the caller puts `count` elements of elem_type next
 * (strings with qerr__gguf_put_str, numbers with qerr__gguf_put_bytes). */
void qerr__gguf_kv_array(qerr_gguf_sink *s, const char *key, int elem_type, uint64_t count);
void qerr__gguf_put_str(qerr_gguf_sink *s, const char *str, size_t len);
/* One tensor info; ne in ggml order (ne[0] = row length). */
void qerr__gguf_put_tensor_info(qerr_gguf_sink *s, const char *name, int ndim,
                                const int64_t *ne, int type, uint64_t offset);

#endif
