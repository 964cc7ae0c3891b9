/* Normalizers of tokenizer.json (NFC and friends through utf8proc, Lowercase,
 * Prepend, Replace, Strip) and the Metaspace rewrite, applied to one piece of
 * text between added tokens. */
#define _GNU_SOURCE /* memmem */
#include "text_internal.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

typedef struct {
    char *p;
    size_t n, cap;
} buf;

static int put(buf *b, const void *s, size_t n) {
    if (n == 0) return QERR_OK;
    if (b->cap - b->n < n) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc - b->n < n) {
            if (nc > SIZE_MAX / 2) return qerr__fail(QERR_E_NOMEM, "tokenizer: text too large");
            nc *= 2;
        }
        char *q = realloc(b->p, nc);
        QERR_CHECK(q, QERR_E_NOMEM, "tokenizer: out of memory for %zu bytes", nc);
        b->p = q;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return QERR_OK;
}

/* Unicode White_Space, the definition Rust's char::is_whitespace uses. */
static bool is_white(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* Unicode normal forms, applied only around non-ASCII text: an ASCII
 * character is a starter that never composes with what precedes it, so the
 * text can be cut before any ASCII character that follows an ASCII one.
 * Each non-ASCII run goes to utf8proc with the character before it (which
 * may compose with a following combining mark). */
static int unicode_form(const char *s, size_t n, int kind, buf *o) {
    int opt = UTF8PROC_STABLE;
    if (kind == QERR_NORM_NFC) opt |= UTF8PROC_COMPOSE;
    else if (kind == QERR_NORM_NFD) opt |= UTF8PROC_DECOMPOSE;
    else if (kind == QERR_NORM_NFKC) opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    else opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && (unsigned char)s[j] < 0x80) j++;
        if (j == n) return put(o, s + i, n - i);
        size_t a = j > i ? j - 1 : j, k = j; /* a: the ASCII character before the run */
        while (k < n && (unsigned char)s[k] >= 0x80) k++;
        QERR_TRY(put(o, s + i, a - i));
        utf8proc_uint8_t *d = NULL;
        utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s + a, (utf8proc_ssize_t)(k - a),
                                          &d, (utf8proc_option_t)opt);
        if (m < 0) {
            free(d);
            return qerr__fail(m == UTF8PROC_ERROR_NOMEM ? QERR_E_NOMEM : QERR_E_INTERNAL,
                              "tokenizer: Unicode normalization failed: %s", utf8proc_errmsg(m));
        }
        int rc = put(o, d, (size_t)m);
        free(d);
        QERR_TRY(rc);
        i = k;
    }
    return QERR_OK;
}

static int lowercase(const char *s, size_t n, buf *o) {
    for (size_t i = 0; i < n;) {
        uint32_t c = qerr__utf8_next(s, n, &i);
        utf8proc_uint8_t e[4];
        utf8proc_ssize_t k = utf8proc_encode_char(utf8proc_tolower((utf8proc_int32_t)c), e);
        QERR_TRY(put(o, e, (size_t)k));
    }
    return QERR_OK;
}

static int replace(const char *s, size_t n, const char *from, size_t fn, const char *to,
                   size_t tn, buf *o) {
    if (fn == 0) return put(o, s, n);
    size_t i = 0;
    while (i < n) {
        const char *hit = n - i >= fn ? memmem(s + i, n - i, from, fn) : NULL;
        size_t end = hit ? (size_t)(hit - s) : n;
        QERR_TRY(put(o, s + i, end - i));
        if (!hit) break;
        QERR_TRY(put(o, to, tn));
        i = end + fn;
    }
    return QERR_OK;
}

static int strip(const char *s, size_t n, int sides, buf *o) {
    size_t a = 0, b = n;
    if (sides & 1) {
        while (a < b) {
            size_t k = a;
            if (!is_white(qerr__utf8_next(s, b, &k))) break;
            a = k;
        }
    }
    if (sides & 2) {
        while (b > a) {
            size_t k = b - 1;
            while (k > a && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
            size_t j = k;
            if (!is_white(qerr__utf8_next(s, b, &j))) break;
            b = k;
        }
    }
    return put(o, s + a, b - a);
}

static int apply(const qerr__norm_step *st, const char *s, size_t n, bool first, buf *o) {
    switch (st->kind) {
    case QERR_NORM_NFC:
    case QERR_NORM_NFD:
    case QERR_NORM_NFKC:
    case QERR_NORM_NFKD: return unicode_form(s, n, st->kind, o);
    case QERR_NORM_LOWERCASE: return lowercase(s, n, o);
    case QERR_NORM_PREPEND:
        if (n) QERR_TRY(put(o, st->arg, st->arg_len));
        return put(o, s, n);
    case QERR_NORM_REPLACE: return replace(s, n, st->arg, st->arg_len, st->arg2, st->arg2_len, o);
    case QERR_NORM_STRIP: return strip(s, n, st->flags, o);
    case QERR_NORM_METASPACE: {
        /* ' ' -> replacement; prefix it unless the text already starts with it */
        bool prefix = n && (st->flags == 1 || (st->flags == 2 && first)) &&
                      !(n >= 1 && s[0] == ' ') &&
                      !(n >= st->arg_len && memcmp(s, st->arg, st->arg_len) == 0);
        if (prefix) QERR_TRY(put(o, st->arg, st->arg_len));
        return replace(s, n, " ", 1, st->arg, st->arg_len, o);
    }
    default: return qerr__fail(QERR_E_INTERNAL, "tokenizer: unknown normalizer step %d", st->kind);
    }
}

int qerr__normalize(const qerr_tokenizer *t, const char *s, size_t n, bool first, char **out,
                    size_t *out_n) {
    buf cur = {0}, next = {0};
    int rc = put(&cur, s, n);
    for (int i = 0; i < t->n_norm && rc == QERR_OK; i++) {
        next.n = 0;
        rc = apply(&t->norm[i], cur.p, cur.n, first, &next);
        buf tmp = cur;
        cur = next;
        next = tmp;
    }
    free(next.p);
    if (rc != QERR_OK) {
        free(cur.p);
        return rc;
    }
    if (rc == QERR_OK && !cur.p) { /* never NULL, even for empty text */
        cur.p = malloc(1);
        if (!cur.p) rc = qerr__fail(QERR_E_NOMEM, "tokenizer: out of memory");
    }
    *out = cur.p;
    *out_n = cur.n;
    return rc;
}
