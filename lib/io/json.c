/* A small strict JSON parser (RFC 8259) for config.json, shard indexes and
 * safetensors headers. Untrusted input: every length is checked, nesting is
 * capped, strings must be valid UTF-8, duplicate keys are an error. */
#include "io.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *s;
    size_t n, pos;
    const char *what;
} parser;

static int perr(const parser *p, const char *msg) {
    return qerr__fail(QERR_E_FORMAT, "%s: invalid JSON at byte %zu: %s", p->what, p->pos, msg);
}

bool qerr__utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int len;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; min = 0x10000; }
        else return false;
        if (n - i < (size_t)len) return false;
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += (size_t)len;
    }
    return true;
}

static void skip_ws(parser *p) {
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static bool literal(parser *p, const char *word) {
    size_t k = strlen(word);
    if (p->n - p->pos < k || memcmp(p->s + p->pos, word, k) != 0) return false;
    p->pos += k;
    return true;
}

static int hex4(parser *p, uint32_t *v) {
    if (p->n - p->pos < 4) return perr(p, "truncated \\u escape");
    uint32_t x = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos++];
        x <<= 4;
        if (c >= '0' && c <= '9') x |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') x |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') x |= (uint32_t)(c - 'A' + 10);
        else return perr(p, "bad hex digit in \\u escape");
    }
    *v = x;
    return QERR_OK;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A string starting at the opening quote; *out is malloc'd, NUL-terminated. */
static int parse_string(parser *p, char **out, size_t *out_len) {
    p->pos++; /* opening quote */
    size_t start = p->pos, end = start;
    /* First pass: find the closing quote (escapes shrink, never grow, the text). */
    while (end < p->n && p->s[end] != '"') {
        if (p->s[end] == '\\') end++;
        end++;
    }
    if (end >= p->n) return perr(p, "unterminated string");
    char *o = malloc(end - start + 1);
    if (!o) return qerr__fail(QERR_E_NOMEM, "%s: out of memory parsing JSON", p->what);
    size_t k = 0;
    int rc = QERR_OK;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c < 0x20) { rc = perr(p, "control character in string"); break; }
        if (c != '\\') { o[k++] = (char)c; p->pos++; continue; }
        p->pos++;
        char e = p->s[p->pos++];
        switch (e) {
        case '"': o[k++] = '"'; break;
        case '\\': o[k++] = '\\'; break;
        case '/': o[k++] = '/'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'u': {
            uint32_t cp;
            if ((rc = hex4(p, &cp)) != QERR_OK) break;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (end - p->pos < 6 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                    rc = perr(p, "unpaired surrogate in \\u escape");
                    break;
                }
                p->pos += 2;
                if ((rc = hex4(p, &lo)) != QERR_OK) break;
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    rc = perr(p, "unpaired surrogate in \\u escape");
                    break;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                rc = perr(p, "unpaired surrogate in \\u escape");
                break;
            } else if (cp == 0) {
                rc = perr(p, "\\u0000 in string");
                break;
            }
            k += put_utf8(o + k, cp);
            break;
        }
        default: rc = perr(p, "bad escape in string"); break;
        }
        if (rc != QERR_OK) break;
    }
    if (rc == QERR_OK && p->pos != end) rc = perr(p, "truncated escape in string");
    if (rc == QERR_OK && !qerr__utf8_valid((const uint8_t *)o, k))
        rc = qerr__fail(QERR_E_FORMAT, "%s: string before byte %zu is not valid UTF-8", p->what,
                        end);
    if (rc != QERR_OK) {
        free(o);
        return rc;
    }
    o[k] = '\0';
    p->pos = end + 1;
    *out = o;
    *out_len = k;
    return QERR_OK;
}

static int parse_number(parser *p, qerr_json *j) {
    size_t start = p->pos;
    bool integral = true;
    if (p->pos < p->n && p->s[p->pos] == '-') p->pos++;
    if (p->pos >= p->n) return perr(p, "truncated number");
    if (p->s[p->pos] == '0') {
        p->pos++;
    } else if (p->s[p->pos] >= '1' && p->s[p->pos] <= '9') {
        while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
    } else {
        return perr(p, "bad number");
    }
    if (p->pos < p->n && p->s[p->pos] == '.') {
        integral = false;
        p->pos++;
        size_t d = p->pos;
        while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
        if (p->pos == d) return perr(p, "digit expected after '.'");
    }
    if (p->pos < p->n && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        integral = false;
        p->pos++;
        if (p->pos < p->n && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
        size_t d = p->pos;
        while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
        if (p->pos == d) return perr(p, "digit expected in exponent");
    }
    size_t len = p->pos - start;
    char buf[512];
    if (len >= sizeof buf) return perr(p, "number too long");
    memcpy(buf, p->s + start, len);
    buf[len] = '\0';
    j->type = QERR_JSON_NUMBER;
    j->number = strtod(buf, NULL);
    if (!isfinite(j->number)) return perr(p, "number out of range");
    if (integral) {
        errno = 0;
        long long v = strtoll(buf, NULL, 10);
        if (errno == 0) {
            j->is_int = true;
            j->integer = (int64_t)v;
        }
    }
    return QERR_OK;
}

static int parse_value(parser *p, qerr_json *j, int depth);

/* Append a zeroed slot to an array/object under construction. */
static int grow(parser *p, qerr_json *j, size_t *cap, bool keys) {
    if (j->len < *cap) return QERR_OK;
    size_t nc = *cap ? *cap * 2 : 4;
    qerr_json *items = realloc(j->items, nc * sizeof *items);
    if (!items) return qerr__fail(QERR_E_NOMEM, "%s: out of memory parsing JSON", p->what);
    j->items = items;
    if (keys) {
        char **k = realloc(j->keys, nc * sizeof *k);
        if (!k) return qerr__fail(QERR_E_NOMEM, "%s: out of memory parsing JSON", p->what);
        j->keys = k;
    }
    *cap = nc;
    return QERR_OK;
}

static int cmp_keys(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Duplicate keys by sorting a copy: O(n log n) even for huge headers. */
static int check_unique_keys(parser *p, const qerr_json *j) {
    if (j->len < 2) return QERR_OK;
    char **k = qerr__malloc2(j->len, sizeof *k);
    if (!k) return qerr__fail(QERR_E_NOMEM, "%s: out of memory parsing JSON", p->what);
    memcpy(k, j->keys, j->len * sizeof *k);
    qsort(k, j->len, sizeof *k, cmp_keys);
    int rc = QERR_OK;
    for (size_t i = 1; i < j->len && rc == QERR_OK; i++)
        if (strcmp(k[i - 1], k[i]) == 0)
            rc = qerr__fail(QERR_E_FORMAT, "%s: invalid JSON: duplicate object key \"%.64s\"",
                            p->what, k[i]);
    free(k);
    return rc;
}

static int parse_container(parser *p, qerr_json *j, int depth, bool object) {
    if (depth >= QERR_JSON_MAX_DEPTH) return perr(p, "nesting too deep");
    j->type = object ? QERR_JSON_OBJECT : QERR_JSON_ARRAY;
    p->pos++;
    size_t cap = 0;
    skip_ws(p);
    char close = object ? '}' : ']';
    if (p->pos < p->n && p->s[p->pos] == close) {
        p->pos++;
        return QERR_OK;
    }
    for (;;) {
        QERR_TRY(grow(p, j, &cap, object));
        char *key = NULL;
        if (object) {
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != '"') return perr(p, "object key expected");
            size_t klen;
            QERR_TRY(parse_string(p, &key, &klen));
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != ':') {
                free(key);
                return perr(p, "':' expected");
            }
            p->pos++;
            j->keys[j->len] = key;
        }
        memset(&j->items[j->len], 0, sizeof j->items[0]);
        j->len++; /* counted before parsing so a failure frees it */
        QERR_TRY(parse_value(p, &j->items[j->len - 1], depth + 1));
        skip_ws(p);
        if (p->pos >= p->n) return perr(p, "unterminated array or object");
        char c = p->s[p->pos++];
        if (c == close) return object ? check_unique_keys(p, j) : QERR_OK;
        if (c != ',') return perr(p, object ? "',' or '}' expected" : "',' or ']' expected");
    }
}

static int parse_value(parser *p, qerr_json *j, int depth) {
    skip_ws(p);
    if (p->pos >= p->n) return perr(p, "value expected");
    char c = p->s[p->pos];
    switch (c) {
    case '{': return parse_container(p, j, depth, true);
    case '[': return parse_container(p, j, depth, false);
    case '"':
        j->type = QERR_JSON_STRING;
        return parse_string(p, &j->str, &j->len);
    case 't':
    case 'f':
        if (literal(p, "true")) j->boolean = true;
        else if (!literal(p, "false")) return perr(p, "bad literal");
        j->type = QERR_JSON_BOOL;
        return QERR_OK;
    case 'n':
        if (!literal(p, "null")) return perr(p, "bad literal");
        j->type = QERR_JSON_NULL;
        return QERR_OK;
    default: return parse_number(p, j);
    }
}

static void free_node(qerr_json *j) {
    if (j->type == QERR_JSON_ARRAY || j->type == QERR_JSON_OBJECT) {
        for (size_t i = 0; i < j->len; i++) {
            free_node(&j->items[i]);
            if (j->keys) free(j->keys[i]);
        }
    }
    free(j->items);
    free(j->keys);
    free(j->str);
}

void qerr__json_free(qerr_json *j) {
    if (!j) return;
    free_node(j);
    free(j);
}

int qerr__json_parse(const char *text, size_t n, const char *what, qerr_json **out) {
    QERR_CHECK(out, QERR_E_INVALID_ARG, "qerr__json_parse: out is NULL");
    *out = NULL;
    if (!what) what = "JSON";
    QERR_CHECK(text || n == 0, QERR_E_INVALID_ARG, "%s: text is NULL", what);
    QERR_CHECK(n <= QERR_JSON_MAX_BYTES, QERR_E_FORMAT, "%s: JSON text of %zu bytes is too large",
               what, n);
    qerr_json *j = calloc(1, sizeof *j);
    QERR_CHECK(j, QERR_E_NOMEM, "%s: out of memory", what);
    parser p = {text, n, 0, what};
    int rc = parse_value(&p, j, 0);
    if (rc == QERR_OK) {
        skip_ws(&p);
        if (p.pos != n) rc = perr(&p, "trailing characters after the value");
    }
    if (rc != QERR_OK) {
        qerr__json_free(j);
        return rc;
    }
    *out = j;
    return QERR_OK;
}

const qerr_json *qerr__json_get(const qerr_json *j, const char *key) {
    if (!j || j->type != QERR_JSON_OBJECT || !key) return NULL;
    for (size_t i = 0; i < j->len; i++)
        if (strcmp(j->keys[i], key) == 0) return &j->items[i];
    return NULL;
}
