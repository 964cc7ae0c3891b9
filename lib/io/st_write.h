/* safetensors writer (lib/io/st_write.c): the format lib/io/safetensors.c
 * reads, written tensor by tensor so memory stays bounded by the largest
 * tensor. Never installed. */
#ifndef QERR_IO_ST_WRITE_H
#define QERR_IO_ST_WRITE_H

#include "../core/internal.h"

/* Fill dst (nbytes of tensor `index`) with its little-endian data. */
typedef int (*qerr_st_fill_fn)(void *user, int index, uint8_t *dst, size_t nbytes);

typedef struct qerr_st_out {
    const char *name;
    const char *dtype; /* "F32", "F16", "BF16" or "I32" */
    int ndim;
    int64_t shape[QERR_MAX_DIMS];
} qerr_st_out;

/* Bytes of one element of a writer dtype name, 0 if unknown. */
size_t qerr__st_dtype_bytes(const char *dtype);
/* Write tensors t[0..n) to `path` (a temporary file renamed into place when
 * complete) in the order given, with __metadata__ {"format": "pt"}. */
int qerr__st_write(const char *path, const qerr_st_out *t, int n, qerr_st_fill_fn fill,
                   void *user);

#endif /* QERR_IO_ST_WRITE_H */
