/* Thread-local error messages, status strings, version, checked allocation. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char last_error[512];

int qerr__fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

void qerr__clear_error(void) { last_error[0] = '\0'; }

const char *qerr_last_error(void) { return last_error; }

const char *qerr_status_string(int status) {
    switch (status) {
    case QERR_OK: return "ok";
    case QERR_E_INVALID_ARG: return "invalid argument";
    case QERR_E_SHAPE: return "shape mismatch";
    case QERR_E_NOMEM: return "out of memory";
    case QERR_E_NONFINITE: return "non-finite value (NaN or Inf) in input";
    case QERR_E_NOT_PD: return "matrix not positive definite";
    case QERR_E_IO: return "input/output error";
    case QERR_E_FORMAT: return "corrupt or malformed data";
    case QERR_E_UNKNOWN_METHOD: return "unknown method";
    case QERR_E_UNKNOWN_KEY: return "unknown parameter key";
    case QERR_E_RANGE: return "parameter value out of range";
    case QERR_E_UNSUPPORTED: return "unsupported";
    case QERR_E_CANCELLED: return "cancelled";
    case QERR_E_CHECKSUM: return "checksum mismatch";
    case QERR_E_ABI: return "ABI or version mismatch";
    case QERR_E_INTERNAL: return "internal error";
    case QERR_E_NOT_FOUND: return "not found";
    case QERR_E_NUMERIC: return "numerical failure";
    default: return "unknown status code";
    }
}

unsigned qerr_version_number(void) { return QERR_VERSION_NUMBER; }
const char *qerr_version_string(void) { return QERR_VERSION_STRING; }

bool qerr__mul_size(size_t count, size_t size, size_t *out) {
    if (size != 0 && count > SIZE_MAX / size) return false;
    *out = count * size;
    return true;
}

void *qerr__calloc(size_t count, size_t size) {
    size_t total;
    if (!qerr__mul_size(count, size, &total)) return NULL;
    if (total == 0) total = 1;
    return calloc(1, total);
}

void *qerr__malloc2(size_t count, size_t size) {
    size_t total;
    if (!qerr__mul_size(count, size, &total)) return NULL;
    if (total == 0) total = 1;
    return malloc(total);
}
