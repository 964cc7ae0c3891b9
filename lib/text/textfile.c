/* Text files for calibration and evaluation: plain UTF-8 (one document) or
 * JSON Lines with a "text" string per line (one document per line). */
#include "text_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TEXT_FILE ((size_t)1 << 34)

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* JSON Lines by name, or by a first line that is an object with "text". */
static bool looks_jsonl(const char *path, const char *s, size_t n) {
    if (ends_with(path, ".jsonl") || ends_with(path, ".ndjson")) return true;
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r')) i++;
    if (i >= n || s[i] != '{') return false;
    const char *nl = memchr(s, '\n', n);
    size_t end = nl ? (size_t)(nl - s) : n;
    qerr_json *j;
    if (qerr__json_parse(s, end, "first line", &j) != QERR_OK) {
        qerr__clear_error();
        return false;
    }
    const qerr_json *text = qerr__json_get(j, "text");
    bool yes = text && text->type == QERR_JSON_STRING;
    qerr__json_free(j);
    return yes;
}

static int encode_jsonl(const qerr_tokenizer *t, qerr__enc *e, const char *path, const char *s,
                        size_t n, unsigned flags, int64_t *bytes) {
    size_t pos = 0;
    int64_t line = 0, docs = 0;
    while (pos < n) {
        const char *nl = memchr(s + pos, '\n', n - pos);
        size_t end = nl ? (size_t)(nl - s) : n;
        line++;
        size_t a = pos, b = end;
        while (a < b && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r')) a++;
        while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t' || s[b - 1] == '\r')) b--;
        pos = end + 1;
        if (a == b) continue; /* blank line */
        qerr_json *j;
        int rc = qerr__json_parse(s + a, b - a, path, &j);
        if (rc != QERR_OK) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s", qerr_last_error());
            return qerr__fail(rc, "qerr_tokenizer_encode_file: %s line %lld: %s", path,
                              (long long)line, msg);
        }
        const qerr_json *text = qerr__json_get(j, "text");
        if (!text || text->type != QERR_JSON_STRING) {
            qerr__json_free(j);
            return qerr__fail(QERR_E_FORMAT,
                              "qerr_tokenizer_encode_file: %s line %lld has no \"text\" string",
                              path, (long long)line);
        }
        rc = qerr__tokenizer_encode_into(t, e, text->str, text->len, flags);
        *bytes += (int64_t)text->len;
        qerr__json_free(j);
        QERR_TRY(rc);
        docs++;
    }
    QERR_CHECK(docs > 0, QERR_E_FORMAT, "qerr_tokenizer_encode_file: %s has no JSON lines", path);
    return QERR_OK;
}

int qerr_tokenizer_encode_file(const qerr_tokenizer *t, const char *path, unsigned flags,
                               uint32_t **ids, int64_t *count, int64_t *text_bytes) {
    static const char fn[] = "qerr_tokenizer_encode_file";
    QERR_CHECK(ids && count, QERR_E_INVALID_ARG, "%s: output pointer is NULL", fn);
    *ids = NULL;
    *count = 0;
    if (text_bytes) *text_bytes = 0;
    QERR_CHECK(t && path, QERR_E_INVALID_ARG, "%s: tokenizer or path is NULL", fn);
    QERR_CHECK(!(flags & ~(QERR_TOKENIZE_ADD_SPECIAL | QERR_TOKENIZE_PARSE_SPECIAL)),
               QERR_E_INVALID_ARG, "%s: unknown flags 0x%x", fn, flags);
    uint8_t *data;
    size_t n;
    QERR_TRY(qerr__read_file(path, &data, &n, MAX_TEXT_FILE));
    if (n == 0) {
        free(data);
        return qerr__fail(QERR_E_FORMAT, "%s: '%s' is empty", fn, path);
    }
    qerr__enc *e;
    int rc = qerr__enc_new(&e);
    int64_t bytes = 0;
    const char *s = (const char *)data;
    if (rc == QERR_OK) {
        if (looks_jsonl(path, s, n)) {
            rc = encode_jsonl(t, e, path, s, n, flags, &bytes);
        } else {
            rc = qerr__tokenizer_encode_into(t, e, s, n, flags);
            bytes = (int64_t)n;
        }
        if (rc == QERR_OK) rc = qerr__enc_take(e, ids, count);
    }
    qerr__enc_free(e);
    free(data);
    if (rc == QERR_OK && text_bytes) *text_bytes = bytes;
    return rc;
}
