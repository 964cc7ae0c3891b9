/* CRC-32, atomic file writes, whole-file reads and exact-size zlib blobs. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

uint32_t qerr__crc32(const void *data, size_t n) {
    uLong crc = crc32(0L, Z_NULL, 0);
    const Bytef *p = data;
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = crc32(crc, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)crc;
}

int qerr__write_file_atomic(const char *path, const void *data, size_t n) {
    QERR_CHECK(path && *path, QERR_E_INVALID_ARG, "output path is empty");
    size_t len = strlen(path);
    char *tmp = malloc(len + 32);
    QERR_CHECK(tmp, QERR_E_NOMEM, "out of memory");
    snprintf(tmp, len + 32, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int e = errno;
        free(tmp);
        return qerr__fail(QERR_E_IO, "cannot create '%s.tmp': %s", path, strerror(e));
    }
    bool ok = fwrite(data, 1, n, f) == n;
    ok = (fflush(f) == 0) && ok;
    ok = (fsync(fileno(f)) == 0 || errno == EINVAL) && ok;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        free(tmp);
        return qerr__fail(QERR_E_IO, "cannot write '%s': %s", path, strerror(e));
    }
    free(tmp);
    return QERR_OK;
}

int qerr__read_file(const char *path, uint8_t **data, size_t *n, size_t max_bytes) {
    *data = NULL;
    *n = 0;
    QERR_CHECK(path, QERR_E_INVALID_ARG, "path is NULL");
    FILE *f = fopen(path, "rb");
    QERR_CHECK(f, QERR_E_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return qerr__fail(QERR_E_IO, "'%s' is not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return qerr__fail(QERR_E_FORMAT, "'%s' is %lld bytes, more than the %zu allowed", path,
                          (long long)st.st_size, max_bytes);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) {
        fclose(f);
        return qerr__fail(QERR_E_NOMEM, "cannot allocate %zu bytes for '%s'", size, path);
    }
    size_t got = fread(buf, 1, size, f);
    fclose(f);
    if (got != size) {
        free(buf);
        return qerr__fail(QERR_E_IO, "short read of '%s'", path);
    }
    *data = buf;
    *n = size;
    return QERR_OK;
}

int qerr__deflate(const void *src, size_t n, uint8_t **dst, size_t *dst_n) {
    *dst = NULL;
    *dst_n = 0;
    uLong bound = compressBound((uLong)n);
    QERR_CHECK((size_t)(uLong)n == n, QERR_E_NOMEM, "blob of %zu bytes is too large for zlib", n);
    uint8_t *buf = malloc(bound ? bound : 1);
    QERR_CHECK(buf, QERR_E_NOMEM, "cannot allocate %lu bytes to compress", (unsigned long)bound);
    uLongf out_n = bound;
    int z = compress2(buf, &out_n, src, (uLong)n, 6);
    if (z != Z_OK) {
        free(buf);
        return qerr__fail(QERR_E_INTERNAL, "zlib compress2 failed (%d)", z);
    }
    *dst = buf;
    *dst_n = out_n;
    return QERR_OK;
}

int qerr__inflate(const void *src, size_t n, void *dst, size_t dst_n) {
    QERR_CHECK((size_t)(uLong)n == n && (size_t)(uLong)dst_n == dst_n, QERR_E_FORMAT,
               "compressed blob too large");
    uLongf out_n = (uLongf)dst_n;
    int z = uncompress(dst, &out_n, src, (uLong)n);
    QERR_CHECK(z == Z_OK, QERR_E_FORMAT, "zlib data is corrupt (%s)",
               z == Z_BUF_ERROR ? "longer than declared" : z == Z_DATA_ERROR ? "bad data" : "error");
    QERR_CHECK(out_n == dst_n, QERR_E_FORMAT,
               "zlib data is %lu bytes, header declared %zu", (unsigned long)out_n, dst_n);
    return QERR_OK;
}
