/* A small JSON writer (lib/io/json_write.c): objects, arrays and scalars
 * appended to a growing buffer, pretty-printed with two-space indents (as
 * Hugging Face writes config.json) or compact. Allocation failures are
 * remembered and reported once by qerr__jw_finish. Never installed. */
#ifndef QERR_IO_JSON_WRITE_H
#define QERR_IO_JSON_WRITE_H

#include "io.h"

#define QERR_JW_MAX_DEPTH QERR_JSON_MAX_DEPTH

typedef struct qerr_jw {
    char *buf;
    size_t len, cap;
    bool pretty, oom, too_deep;
    int depth;
    bool first[QERR_JW_MAX_DEPTH + 1]; /* no member written yet at this depth */
} qerr_jw;

/* Members take a key inside an object and key = NULL inside an array or at
 * the top level. */
void qerr__jw_init(qerr_jw *w, bool pretty);
void qerr__jw_open(qerr_jw *w, const char *key, char bracket); /* '{' or '[' */
void qerr__jw_close(qerr_jw *w, char bracket);                 /* '}' or ']' */
void qerr__jw_string(qerr_jw *w, const char *key, const char *value);
void qerr__jw_int(qerr_jw *w, const char *key, int64_t value);
/* Shortest text that reads back as the same double; always has a '.' or an
 * exponent, so readers keep it a float. value must be finite. */
void qerr__jw_double(qerr_jw *w, const char *key, double value);
void qerr__jw_bool(qerr_jw *w, const char *key, bool value);
void qerr__jw_null(qerr_jw *w, const char *key);
/* A parsed value written back (numbers keep their integer/float kind). */
void qerr__jw_value(qerr_jw *w, const char *key, const qerr_json *v);
/* The text (NUL-terminated, a newline at the end when pretty) into *out
 * (malloc'ed, the caller frees), or QERR_E_NOMEM / QERR_E_INTERNAL naming
 * `what`. The writer is reset either way. */
int qerr__jw_finish(qerr_jw *w, const char *what, char **out, size_t *len);

#endif /* QERR_IO_JSON_WRITE_H */
