/* UTF-8 for the tokenizers: text with invalid sequences is read the way the
 * reference tokenizers receive it (each maximal invalid subsequence becomes
 * U+FFFD, the WHATWG "decode" algorithm that Node and Rust's
 * String::from_utf8_lossy both follow). */
#include "text_internal.h"

#include <stdlib.h>
#include <string.h>

/* Length of the valid sequence at s[0..n), or 0 with *bad = bytes that form
 * one maximal invalid subsequence. */
static int valid_seq(const unsigned char *s, size_t n, int *bad) {
    unsigned char c = s[0];
    int len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *bad = 1;
        return 0;
    }
    for (int k = 1; k < len; k++) {
        if ((size_t)k >= n || s[k] < lo || s[k] > hi) {
            *bad = k; /* the lead byte and the good continuations so far */
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return len;
}

int qerr__utf8_sanitize(const char *s, size_t n, char **out, size_t *out_n) {
    const unsigned char *u = (const unsigned char *)s;
    *out = NULL;
    *out_n = n;
    size_t i = 0, bad_count = 0;
    while (i < n) {
        if (u[i] < 0x80) { i++; continue; }
        int bad = 0, len = valid_seq(u + i, n - i, &bad);
        if (len) i += (size_t)len;
        else { i += (size_t)bad; bad_count++; }
    }
    if (!bad_count) return QERR_OK;
    size_t cap;
    if (!qerr__mul_size(bad_count, 3, &cap) || cap > SIZE_MAX - n - 1)
        return qerr__fail(QERR_E_NOMEM, "tokenizer: text too large");
    char *o = malloc(n + cap + 1);
    QERR_CHECK(o, QERR_E_NOMEM, "tokenizer: out of memory for %zu bytes of text", n);
    size_t k = 0;
    i = 0;
    while (i < n) {
        if (u[i] < 0x80) { o[k++] = (char)u[i++]; continue; }
        int bad = 0, len = valid_seq(u + i, n - i, &bad);
        if (len) {
            memcpy(o + k, u + i, (size_t)len);
            k += (size_t)len;
            i += (size_t)len;
        } else {
            memcpy(o + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i += (size_t)bad;
        }
    }
    o[k] = '\0';
    *out = o;
    *out_n = k;
    return QERR_OK;
}

uint32_t qerr__utf8_next(const char *s, size_t n, size_t *i) {
    const unsigned char *u = (const unsigned char *)s + *i;
    size_t left = n - *i;
    uint32_t c = u[0];
    if (c < 0x80 || left < 2) { *i += 1; return c; }
    if (c < 0xE0) { *i += 2; return (c & 0x1F) << 6 | (u[1] & 0x3F); }
    if (c < 0xF0 || left < 4) {
        if (left < 3) { *i += 1; return c; }
        *i += 3;
        return (c & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3F);
    }
    *i += 4;
    return (c & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 | (uint32_t)(u[2] & 0x3F) << 6 |
           (u[3] & 0x3F);
}

static int hexval(char c, bool *upper) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') {
        *upper = false;
        return c - 'a' + 10;
    }
    return -1;
}

int qerr__byte_piece(const char *s, size_t n, bool *upper) {
    *upper = true;
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = hexval(s[3], upper), lo = hexval(s[4], upper);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}
