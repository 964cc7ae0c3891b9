/* JSON writer, see json_write.h. Strings are written as UTF-8 with the
 * characters JSON requires escaped (quote, backslash, controls). */
#include "json_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void qerr__jw_init(qerr_jw *w, bool pretty) {
    memset(w, 0, sizeof *w);
    w->pretty = pretty;
    w->first[0] = true;
}

static void put(qerr_jw *w, const char *s, size_t n) {
    if (w->oom) return;
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n + 1) cap *= 2;
        char *b = realloc(w->buf, cap);
        if (!b) {
            w->oom = true;
            return;
        }
        w->buf = b;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void puts_(qerr_jw *w, const char *s) { put(w, s, strlen(s)); }

static void newline(qerr_jw *w) {
    if (!w->pretty) return;
    put(w, "\n", 1);
    for (int i = 0; i < w->depth; i++) put(w, "  ", 2);
}

static void quoted(qerr_jw *w, const char *s) {
    put(w, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            put(w, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            put(w, esc, 6);
        } else {
            put(w, (const char *)p, 1);
        }
    }
    put(w, "\"", 1);
}

/* Separator, indentation and key before a member. */
static void member(qerr_jw *w, const char *key) {
    if (w->depth > 0) {
        if (!w->first[w->depth]) put(w, ",", 1);
        newline(w);
    }
    w->first[w->depth] = false;
    if (key) {
        quoted(w, key);
        put(w, w->pretty ? ": " : ":", w->pretty ? 2 : 1);
    }
}

void qerr__jw_open(qerr_jw *w, const char *key, char bracket) {
    member(w, key);
    put(w, bracket == '[' ? "[" : "{", 1);
    if (w->depth >= QERR_JW_MAX_DEPTH) {
        w->too_deep = true;
        return;
    }
    w->depth++;
    w->first[w->depth] = true;
}

void qerr__jw_close(qerr_jw *w, char bracket) {
    if (w->depth == 0) {
        w->too_deep = true;
        return;
    }
    bool empty = w->first[w->depth];
    w->depth--;
    if (!empty) newline(w);
    put(w, bracket == ']' ? "]" : "}", 1);
}

void qerr__jw_string(qerr_jw *w, const char *key, const char *value) {
    member(w, key);
    quoted(w, value);
}

void qerr__jw_int(qerr_jw *w, const char *key, int64_t value) {
    char b[32];
    snprintf(b, sizeof b, "%lld", (long long)value);
    member(w, key);
    puts_(w, b);
}

void qerr__jw_double(qerr_jw *w, const char *key, double value) {
    char b[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(b, sizeof b, "%.*g", prec, value);
        if (strtod(b, NULL) == value) break;
    }
    if (!strpbrk(b, ".eEn")) strcat(b, ".0"); /* keep it a float for readers */
    member(w, key);
    puts_(w, b);
}

void qerr__jw_bool(qerr_jw *w, const char *key, bool value) {
    member(w, key);
    puts_(w, value ? "true" : "false");
}

void qerr__jw_null(qerr_jw *w, const char *key) {
    member(w, key);
    puts_(w, "null");
}

void qerr__jw_value(qerr_jw *w, const char *key, const qerr_json *v) {
    switch (v->type) {
    case QERR_JSON_BOOL: qerr__jw_bool(w, key, v->boolean); break;
    case QERR_JSON_NUMBER:
        if (v->is_int) qerr__jw_int(w, key, v->integer);
        else qerr__jw_double(w, key, v->number);
        break;
    case QERR_JSON_STRING: qerr__jw_string(w, key, v->str); break;
    case QERR_JSON_ARRAY:
    case QERR_JSON_OBJECT: {
        char open = v->type == QERR_JSON_ARRAY ? '[' : '{';
        qerr__jw_open(w, key, open);
        for (size_t i = 0; i < v->len; i++)
            qerr__jw_value(w, v->type == QERR_JSON_OBJECT ? v->keys[i] : NULL, &v->items[i]);
        qerr__jw_close(w, open == '[' ? ']' : '}');
        break;
    }
    default: qerr__jw_null(w, key); break;
    }
}

int qerr__jw_finish(qerr_jw *w, const char *what, char **out, size_t *len) {
    *out = NULL;
    if (w->pretty && !w->oom) put(w, "\n", 1);
    put(w, "", 0); /* a buffer even when nothing was written */
    int rc = QERR_OK;
    if (w->oom) rc = qerr__fail(QERR_E_NOMEM, "%s: out of memory writing JSON", what);
    else if (w->too_deep || w->depth != 0)
        rc = qerr__fail(QERR_E_INTERNAL, "%s: unbalanced or too deeply nested JSON", what);
    if (rc == QERR_OK) {
        *out = w->buf;
        if (len) *len = w->len;
    } else {
        free(w->buf);
    }
    memset(w, 0, sizeof *w);
    return rc;
}
