/* safetensors writer, see st_write.h: 8-byte little-endian header length,
 * the JSON header padded with spaces to a multiple of 8 bytes (so every
 * tensor starts 8-byte aligned when sizes allow, as Hugging Face's writer
 * does), then the tensors back to back. */
#include "st_write.h"

#include "json_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

size_t qerr__st_dtype_bytes(const char *dtype) {
    if (!dtype) return 0;
    if (strcmp(dtype, "F32") == 0 || strcmp(dtype, "I32") == 0) return 4;
    if (strcmp(dtype, "F16") == 0 || strcmp(dtype, "BF16") == 0) return 2;
    return 0;
}

static int tensor_bytes(const qerr_st_out *t, size_t *out) {
    size_t n = qerr__st_dtype_bytes(t->dtype);
    QERR_CHECK(n > 0, QERR_E_INTERNAL, "safetensors writer: tensor '%.128s' has dtype '%s'",
               t->name, t->dtype ? t->dtype : "(null)");
    QERR_CHECK(t->ndim >= 1 && t->ndim <= QERR_MAX_DIMS, QERR_E_INTERNAL,
               "safetensors writer: tensor '%.128s' has %d dimensions", t->name, t->ndim);
    for (int d = 0; d < t->ndim; d++)
        QERR_CHECK(t->shape[d] >= 0 && qerr__mul_size(n, (size_t)t->shape[d], &n), QERR_E_NOMEM,
                   "safetensors writer: tensor '%.128s' is too large", t->name);
    *out = n;
    return QERR_OK;
}

static int header(const qerr_st_out *t, int n, const size_t *bytes, char **text, size_t *len) {
    qerr_jw w;
    qerr__jw_init(&w, false);
    qerr__jw_open(&w, NULL, '{');
    qerr__jw_open(&w, "__metadata__", '{');
    qerr__jw_string(&w, "format", "pt");
    qerr__jw_close(&w, '}');
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        qerr__jw_open(&w, t[i].name, '{');
        qerr__jw_string(&w, "dtype", t[i].dtype);
        qerr__jw_open(&w, "shape", '[');
        for (int d = 0; d < t[i].ndim; d++) qerr__jw_int(&w, NULL, t[i].shape[d]);
        qerr__jw_close(&w, ']');
        qerr__jw_open(&w, "data_offsets", '[');
        qerr__jw_int(&w, NULL, (int64_t)at);
        qerr__jw_int(&w, NULL, (int64_t)(at + bytes[i]));
        qerr__jw_close(&w, ']');
        qerr__jw_close(&w, '}');
        at += bytes[i];
    }
    qerr__jw_close(&w, '}');
    return qerr__jw_finish(&w, "safetensors writer", text, len);
}

/* Header, padding and every tensor into the open file f. */
static int write_body(FILE *f, const char *path, const qerr_st_out *t, int n, const size_t *bytes,
                      qerr_st_fill_fn fill, void *user) {
    char *text;
    size_t len;
    QERR_TRY(header(t, n, bytes, &text, &len));
    size_t padded = (len + 7) / 8 * 8;
    uint8_t hl[8];
    for (int i = 0; i < 8; i++) hl[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    bool ok = fwrite(hl, 1, 8, f) == 8 && fwrite(text, 1, len, f) == len;
    for (size_t i = len; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
    free(text);
    QERR_CHECK(ok, QERR_E_IO, "cannot write '%s': %s", path, strerror(errno));
    for (int i = 0; i < n; i++) {
        uint8_t *buf = malloc(bytes[i] ? bytes[i] : 1);
        QERR_CHECK(buf, QERR_E_NOMEM, "safetensors writer: out of memory for '%.128s'",
                   t[i].name);
        int rc = fill(user, i, buf, bytes[i]);
        if (rc == QERR_OK && fwrite(buf, 1, bytes[i], f) != bytes[i])
            rc = qerr__fail(QERR_E_IO, "cannot write '%s': %s", path, strerror(errno));
        free(buf);
        QERR_TRY(rc);
    }
    return QERR_OK;
}

int qerr__st_write(const char *path, const qerr_st_out *t, int n, qerr_st_fill_fn fill,
                   void *user) {
    QERR_CHECK(path && *path && (t || n == 0) && n >= 0 && fill, QERR_E_INVALID_ARG,
               "safetensors writer: bad argument");
    size_t *bytes = qerr__calloc((size_t)n + 1, sizeof *bytes);
    QERR_CHECK(bytes, QERR_E_NOMEM, "safetensors writer: out of memory");
    int rc = QERR_OK;
    for (int i = 0; rc == QERR_OK && i < n; i++) rc = tensor_bytes(&t[i], &bytes[i]);
    size_t plen = strlen(path);
    char *tmp = rc == QERR_OK ? malloc(plen + 32) : NULL;
    if (rc == QERR_OK && !tmp) rc = qerr__fail(QERR_E_NOMEM, "safetensors writer: out of memory");
    FILE *f = NULL;
    if (rc == QERR_OK) {
        snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
        f = fopen(tmp, "wb");
        if (!f) rc = qerr__fail(QERR_E_IO, "cannot create '%s': %s", tmp, strerror(errno));
    }
    if (rc == QERR_OK) rc = write_body(f, path, t, n, bytes, fill, user);
    if (f) {
        bool ok = fflush(f) == 0;
        ok = (fsync(fileno(f)) == 0 || errno == EINVAL) && ok;
        ok = fclose(f) == 0 && ok;
        if (rc == QERR_OK && !ok)
            rc = qerr__fail(QERR_E_IO, "cannot write '%s': %s", path, strerror(errno));
        if (rc == QERR_OK && rename(tmp, path) != 0)
            rc = qerr__fail(QERR_E_IO, "cannot rename '%s' to '%s': %s", tmp, path,
                            strerror(errno));
        if (rc != QERR_OK) remove(tmp);
    }
    free(tmp);
    free(bytes);
    return rc;
}
