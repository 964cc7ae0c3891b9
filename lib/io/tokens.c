/* Token files: raw little-endian uint32 ids, no header. */
#include "io.h"

#include <stdlib.h>
#include <string.h>

#define MAX_TOKEN_FILE ((size_t)1 << 34) /* 4G tokens */

int qerr_tokens_read(const char *path, uint32_t **tokens, int64_t *count) {
    static const char fn[] = "qerr_tokens_read";
    QERR_CHECK(tokens && count, QERR_E_INVALID_ARG, "%s: output pointer is NULL", fn);
    *tokens = NULL;
    *count = 0;
    QERR_CHECK(path, QERR_E_INVALID_ARG, "%s: path is NULL", fn);
    uint8_t *data;
    size_t n;
    QERR_TRY(qerr__read_file(path, &data, &n, MAX_TOKEN_FILE));
    if (n % 4 != 0) {
        free(data);
        return qerr__fail(QERR_E_FORMAT, "%s: %s has %zu bytes, not a multiple of 4", fn, path,
                          n);
    }
    uint32_t *t = malloc(n ? n : 4);
    if (!t) {
        free(data);
        return qerr__fail(QERR_E_NOMEM, "%s: out of memory for %zu bytes", fn, n);
    }
    for (size_t i = 0; i < n / 4; i++) /* explicit little-endian, any host */
        t[i] = (uint32_t)data[4 * i] | (uint32_t)data[4 * i + 1] << 8 |
               (uint32_t)data[4 * i + 2] << 16 | (uint32_t)data[4 * i + 3] << 24;
    free(data);
    *tokens = t;
    *count = (int64_t)(n / 4);
    return QERR_OK;
}

void qerr_free(void *p) { free(p); }
