/* Pre-tokenization: the Split regular expressions of tokenizer.json run with
 * PCRE2 (UTF + UCP, JIT-compiled), then each word goes to BPE. SentencePiece
 * text, which has no pre-tokenizer, is cut where no piece can straddle. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "text_internal.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct qerr__regex {
    pcre2_code *code;
    int behavior; /* QERR_SPLIT_* */
};

/* Unicode White_Space, spelled out: the reference's regex engine
 * (Oniguruma) matches \s to exactly this set; PCRE2 also matches U+180E. */
#define WS_SET "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}" \
               "\\x{202F}\\x{205F}\\x{3000}"

/* Rewrite \s and \S so PCRE2 matches what the reference matches. */
static char *translate(const char *p, size_t n) {
    size_t cap = (n / 2 + 1) * (sizeof WS_SET + 4) + n + 1;
    char *o = malloc(cap), *w = o;
    if (!o) return NULL;
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[i + 1];
            if (e == 's' && in_class) { w += sprintf(w, "%s", WS_SET); i++; continue; }
            if (e == 's') { w += sprintf(w, "[%s]", WS_SET); i++; continue; }
            if (e == 'S' && !in_class) { w += sprintf(w, "[^%s]", WS_SET); i++; continue; }
            *w++ = c;
            *w++ = e;
            i++;
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = true;
            *w++ = c;
            if (i + 1 < n && p[i + 1] == '^') *w++ = p[++i];
            if (i + 1 < n && p[i + 1] == ']') *w++ = p[++i]; /* literal ] first */
            continue;
        }
        if (c == ']' && in_class) in_class = false;
        *w++ = c;
    }
    *w = '\0';
    return o;
}

int qerr__regex_compile(const char *pattern, size_t len, int behavior, bool literal,
                        qerr__regex **out, const char *what) {
    *out = NULL;
    char *src = literal ? NULL : translate(pattern, len);
    QERR_CHECK(literal || src, QERR_E_NOMEM, "%s: out of memory", what);
    int err;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK | (literal ? PCRE2_LITERAL : 0);
    pcre2_code *code = literal ? pcre2_compile((PCRE2_SPTR)pattern, len, opts, &err, &off, NULL)
                               : pcre2_compile((PCRE2_SPTR)src, PCRE2_ZERO_TERMINATED, opts,
                                               &err, &off, NULL);
    free(src);
    if (!code) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return qerr__fail(QERR_E_UNSUPPORTED,
                          "%s: pre-tokenizer pattern \"%.80s\" is not supported: %s at offset %zu",
                          what, pattern, (const char *)msg, (size_t)off);
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    qerr__regex *r = malloc(sizeof *r);
    if (!r) {
        pcre2_code_free(code);
        return qerr__fail(QERR_E_NOMEM, "%s: out of memory", what);
    }
    r->code = code;
    r->behavior = behavior;
    *out = r;
    return QERR_OK;
}

void qerr__regex_free(qerr__regex *r) {
    if (!r) return;
    pcre2_code_free(r->code);
    free(r);
}

/* ---- per-call encoder state ---------------------------------------------- */
struct qerr__enc {
    qerr__bpe_scratch *bpe;
    pcre2_match_data *md;
    pcre2_match_context *mc;
    pcre2_jit_stack *stack;
};

int qerr__enc_new(qerr__enc **out) {
    qerr__enc *e = calloc(1, sizeof *e);
    QERR_CHECK(e, QERR_E_NOMEM, "tokenizer: out of memory");
    int rc = qerr__bpe_scratch_new(&e->bpe);
    if (rc == QERR_OK) {
        e->md = pcre2_match_data_create(4, NULL);
        e->mc = pcre2_match_context_create(NULL);
        e->stack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, NULL);
        if (!e->md || !e->mc || !e->stack) rc = qerr__fail(QERR_E_NOMEM, "tokenizer: out of memory");
        else pcre2_jit_stack_assign(e->mc, NULL, e->stack);
    }
    if (rc != QERR_OK) {
        qerr__enc_free(e);
        return rc;
    }
    *out = e;
    return QERR_OK;
}

void qerr__enc_free(qerr__enc *e) {
    if (!e) return;
    qerr__bpe_scratch_free(e->bpe);
    pcre2_match_data_free(e->md);
    pcre2_match_context_free(e->mc);
    pcre2_jit_stack_free(e->stack);
    free(e);
}

qerr__bpe_scratch *qerr__enc_bpe(qerr__enc *e) { return e->bpe; }

/* True if the code point at s[a..b) is a piece of its own, or byte
 * fallback covers it: it cannot fuse with a neighbouring unknown. */
static bool known(const qerr_tokenizer *t, uint32_t c, const char *s, size_t a, size_t b) {
    if (qerr__char_id(t, c, s + a, b - a) >= 0) return true;
    if (!t->byte_fallback) return false;
    for (size_t i = a; i < b; i++)
        if (t->byte_id[(unsigned char)s[i]] < 0) return false;
    return true;
}

/* SentencePiece text: BPE on stretches between cuts. A cut between code
 * points a and b is exact when no piece has "ab" inside it (no merge can
 * join across) and a and b are not two unknowns that would fuse. */
static int sp_words(const qerr_tokenizer *t, qerr__enc *e, const char *s, size_t n) {
    if (!t->can_cut) return qerr__bpe_word(t, e->bpe, s, n);
    size_t start = 0, i = 0, prev_at = 0;
    uint32_t prev = UINT32_MAX;
    while (i < n) {
        size_t at = i;
        uint32_t c = qerr__utf8_next(s, n, &i);
        if (prev != UINT32_MAX && !qerr__pairmap_find(&t->adjacent, qerr__pair_key(prev, c)) &&
            (!t->fuse_unk || known(t, prev, s, prev_at, at) || known(t, c, s, at, i))) {
            QERR_TRY(qerr__bpe_word(t, e->bpe, s + start, at - start));
            start = at;
        }
        prev = c;
        prev_at = at;
    }
    return qerr__bpe_word(t, e->bpe, s + start, n - start);
}

static int words(const qerr_tokenizer *t, qerr__enc *e, const char *s, size_t n) {
    if (t->model == QERR_TOKM_BYTE_BPE) return qerr__bpe_word(t, e->bpe, s, n);
    return sp_words(t, e, s, n);
}

/* Split s[0..n) with regex number `level` and pass the parts on. */
static int split_level(const qerr_tokenizer *t, qerr__enc *e, const char *s, size_t n, int level) {
    if (n == 0) return QERR_OK;
    if (level == t->n_split) return words(t, e, s, n);
    const qerr__regex *r = t->split[level];
    size_t pos = 0, gap = 0; /* gap: start of the text not yet passed on */
    while (pos < n) {
        int rc = pcre2_match(r->code, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, e->md, e->mc);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return qerr__fail(rc == PCRE2_ERROR_NOMEMORY ? QERR_E_NOMEM : QERR_E_RANGE,
                              "tokenizer: pre-tokenizer regex failed on a run of %zu bytes: %s",
                              n, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t a = ov[0], b = ov[1];
        if (b == a) { /* empty match: step over one character */
            pos = a + (a < n ? (size_t)qerr__utf8_len((unsigned char)s[a]) : 1);
            continue;
        }
        switch (r->behavior) {
        case QERR_SPLIT_ISOLATED:
            QERR_TRY(split_level(t, e, s + gap, a - gap, level + 1));
            QERR_TRY(split_level(t, e, s + a, b - a, level + 1));
            gap = b;
            break;
        case QERR_SPLIT_REMOVED:
            QERR_TRY(split_level(t, e, s + gap, a - gap, level + 1));
            gap = b;
            break;
        case QERR_SPLIT_MERGED_WITH_NEXT:
            QERR_TRY(split_level(t, e, s + gap, a - gap, level + 1));
            gap = a;
            break;
        default: /* MERGED_WITH_PREVIOUS */
            QERR_TRY(split_level(t, e, s + gap, b - gap, level + 1));
            gap = b;
            break;
        }
        pos = b;
    }
    return split_level(t, e, s + gap, n - gap, level + 1);
}

int qerr__pretokenize(const qerr_tokenizer *t, qerr__enc *e, const char *s, size_t n) {
    if (t->prefix_space && n && s[0] != ' ') {
        char *p = malloc(n + 1);
        QERR_CHECK(p, QERR_E_NOMEM, "tokenizer: out of memory for %zu bytes", n);
        p[0] = ' ';
        memcpy(p + 1, s, n);
        int rc = split_level(t, e, p, n + 1, 0);
        free(p);
        return rc;
    }
    return split_level(t, e, s, n, 0);
}
