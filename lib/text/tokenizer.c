/* The qerr_tokenizer handle: loading, added-token splitting, encode, decode.
 * Encoding follows Hugging Face's order: added tokens are cut out of the raw
 * text first, each remaining piece is normalized (then normalized added
 * tokens are cut out), pre-tokenized and BPE-encoded; BOS/EOS come last. */
#include "text_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_TOKENIZER_FILE ((size_t)1 << 30)
#define MAX_CONFIG_FILE ((size_t)64 << 20)

int qerr__tokenizer_alloc_ids(qerr_tokenizer *t, int32_t n_vocab, const char *what) {
    QERR_CHECK(n_vocab > 0 && n_vocab <= QERR_TOK_MAX_VOCAB, QERR_E_FORMAT,
               "%s: vocabulary of %d tokens is empty or too large", what, (int)n_vocab);
    t->n_vocab = n_vocab;
    t->text = qerr__calloc((size_t)n_vocab, sizeof *t->text);
    t->text_len = qerr__calloc((size_t)n_vocab, sizeof *t->text_len);
    t->special = qerr__calloc((size_t)n_vocab, sizeof *t->special);
    QERR_CHECK(t->text && t->text_len && t->special, QERR_E_NOMEM, "%s: out of memory", what);
    return QERR_OK;
}

int qerr__tokenizer_set_text(qerr_tokenizer *t, int32_t id, const char *s, size_t n) {
    char *c = malloc(n + 1);
    QERR_CHECK(c, QERR_E_NOMEM, "tokenizer: out of memory");
    memcpy(c, s, n);
    c[n] = '\0';
    free(t->text[id]);
    t->text[id] = c;
    t->text_len[id] = (uint32_t)n;
    return QERR_OK;
}

static int cmp_added_len(const void *a, const void *b) {
    const qerr__added_token *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1; /* longest first */
    return x->id < y->id ? -1 : x->id > y->id;
}

int qerr__tokenizer_finish(qerr_tokenizer *t, const char *what) {
    /* added tokens: longest first, so the first match at a position is the
     * longest (leftmost-longest, as Hugging Face's Aho-Corasick) */
    if (t->n_added) qsort(t->added, (size_t)t->n_added, sizeof *t->added, cmp_added_len);
    for (int i = 0; i < t->n_added; i++) {
        qerr__added_token *a = &t->added[i];
        if (a->len) t->added_first[(unsigned char)a->content[0]] |= a->normalized ? 2 : 1;
    }
    /* SentencePiece cutting (pretok.c) is exact when no merge involves a
     * byte-fallback or unknown token, and merges are not skipped for words
     * found whole in the vocabulary */
    t->can_cut = false;
    if (t->model != QERR_TOKM_BYTE_BPE && !t->ignore_merges) {
        bool inert = true;
        for (size_t i = 0; i < t->merges.cap && inert; i++) {
            uint64_t key = t->merges.slot[i].key;
            if (key == UINT64_MAX) continue;
            int32_t l = (int32_t)(key >> 32), r = (int32_t)(uint32_t)key;
            inert = l != t->unk_id && r != t->unk_id;
            for (int b = 0; b < 256 && inert; b++)
                inert = t->byte_id[b] < 0 || (t->byte_id[b] != l && t->byte_id[b] != r);
        }
        if (inert) {
            QERR_TRY(qerr__pairmap_init(&t->adjacent, t->vocab.n * 4));
            for (size_t i = 0; i < t->vocab.cap; i++) {
                const qerr__strslot *sl = &t->vocab.slot[i];
                if (!sl->hash) continue;
                size_t j = 0;
                uint32_t prev = UINT32_MAX;
                while (j < sl->klen) {
                    uint32_t c = qerr__utf8_next(sl->key, sl->klen, &j);
                    if (prev != UINT32_MAX)
                        QERR_TRY(qerr__pairmap_put(&t->adjacent, qerr__pair_key(prev, c), 0, 0));
                    prev = c;
                }
            }
            t->can_cut = true;
        }
    }
    if (t->model != QERR_TOKM_BYTE_BPE) {
        t->cp_id = qerr__malloc2(QERR_TOK_CP_TABLE, sizeof *t->cp_id);
        QERR_CHECK(t->cp_id, QERR_E_NOMEM, "%s: out of memory", what);
        for (uint32_t c = 0; c < QERR_TOK_CP_TABLE; c++) {
            char u[4];
            size_t n = c < 0x80 ? 1 : c < 0x800 ? 2 : 3;
            if (n == 1) u[0] = (char)c;
            else if (n == 2) { u[0] = (char)(0xC0 | c >> 6); u[1] = (char)(0x80 | (c & 0x3F)); }
            else {
                u[0] = (char)(0xE0 | c >> 12);
                u[1] = (char)(0x80 | ((c >> 6) & 0x3F));
                u[2] = (char)(0x80 | (c & 0x3F));
            }
            t->cp_id[c] = (c >= 0xD800 && c <= 0xDFFF) ? -1 : qerr__strmap_get(&t->vocab, u, n);
        }
    }
    return QERR_OK;
}

void qerr_tokenizer_free(qerr_tokenizer *t) {
    if (!t) return;
    for (int32_t i = 0; i < t->n_vocab && t->text; i++) free(t->text[i]);
    free(t->text);
    free(t->text_len);
    free(t->special);
    qerr__strmap_free(&t->vocab);
    qerr__pairmap_free(&t->merges);
    qerr__pairmap_free(&t->adjacent);
    free(t->cp_id);
    for (int i = 0; i < t->n_norm; i++) {
        free(t->norm[i].arg);
        free(t->norm[i].arg2);
    }
    free(t->norm);
    for (int i = 0; i < t->n_split; i++) qerr__regex_free(t->split[i]);
    free(t->split);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    free(t->owned_strings);
    free(t);
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static char *join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* tokenizer_config.json beside the tokenizer.json at `json_path`, or NULL. */
static char *config_beside(const char *json_path) {
    const char *slash = strrchr(json_path, '/');
    size_t dn = slash ? (size_t)(slash - json_path) : 1;
    char *dir = malloc(dn + 1);
    if (!dir) return NULL;
    memcpy(dir, slash ? json_path : ".", dn);
    dir[dn] = '\0';
    char *p = join(dir, "tokenizer_config.json");
    free(dir);
    if (p && !exists(p)) {
        free(p);
        p = NULL;
    }
    return p;
}

static int load_file(qerr_tokenizer *t, const char *path) {
    uint8_t *data = NULL;
    size_t n = 0;
    QERR_TRY(qerr__read_file(path, &data, &n, MAX_TOKENIZER_FILE));
    int rc;
    size_t i = 0;
    while (i < n && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t')) i++;
    if (n == 0) {
        rc = qerr__fail(QERR_E_FORMAT, "tokenizer: '%s' is empty", path);
    } else if (data[i] == '{') {
        char *cfg_path = config_beside(path);
        uint8_t *cfg = NULL;
        size_t cfg_n = 0;
        rc = cfg_path ? qerr__read_file(cfg_path, &cfg, &cfg_n, MAX_CONFIG_FILE) : QERR_OK;
        if (rc == QERR_OK)
            rc = qerr__tokenizer_from_json(t, (const char *)data, n, (const char *)cfg, cfg_n,
                                           path);
        free(cfg);
        free(cfg_path);
    } else {
        rc = qerr__tokenizer_from_llama2c(t, data, n, path);
    }
    free(data);
    return rc;
}

static int new_tokenizer(qerr_tokenizer **out) {
    qerr_tokenizer *t = calloc(1, sizeof *t);
    QERR_CHECK(t, QERR_E_NOMEM, "qerr_tokenizer_load: out of memory");
    t->unk_id = t->bos_id = t->eos_id = -1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    *out = t;
    return QERR_OK;
}

int qerr__tokenizer_from_memory(qerr_tokenizer **out, const char *json, size_t n,
                                const char *config, size_t config_n, const char *what) {
    *out = NULL;
    qerr_tokenizer *t = NULL;
    QERR_TRY(new_tokenizer(&t));
    int rc = qerr__tokenizer_from_json(t, json, n, config, config_n, what);
    if (rc != QERR_OK) {
        qerr_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return QERR_OK;
}

int qerr_tokenizer_load(qerr_tokenizer **out, const char *path) {
    QERR_CHECK(out, QERR_E_INVALID_ARG, "qerr_tokenizer_load: out is NULL");
    *out = NULL;
    QERR_CHECK(path, QERR_E_INVALID_ARG, "qerr_tokenizer_load: path is NULL");
    qerr_tokenizer *t = NULL;
    QERR_TRY(new_tokenizer(&t));
    int rc;
    if (is_dir(path)) {
        char *json = join(path, "tokenizer.json"), *bin = join(path, "tokenizer.bin");
        if (!json || !bin) rc = qerr__fail(QERR_E_NOMEM, "qerr_tokenizer_load: out of memory");
        else if (exists(json)) rc = load_file(t, json);
        else if (exists(bin)) rc = load_file(t, bin);
        else
            rc = qerr__fail(QERR_E_NOT_FOUND,
                            "qerr_tokenizer_load: '%s' has no tokenizer.json or tokenizer.bin",
                            path);
        free(json);
        free(bin);
    } else {
        rc = load_file(t, path);
    }
    if (rc != QERR_OK) {
        qerr_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return QERR_OK;
}

int64_t qerr_tokenizer_vocab_size(const qerr_tokenizer *t) { return t ? t->n_vocab : -1; }
int64_t qerr_tokenizer_bos_id(const qerr_tokenizer *t) { return t ? t->bos_id : -1; }
int64_t qerr_tokenizer_eos_id(const qerr_tokenizer *t) { return t ? t->eos_id : -1; }

const char *qerr_tokenizer_token_text(const qerr_tokenizer *t, uint32_t id, size_t *len,
                                      int *special) {
    if (len) *len = 0;
    if (special) *special = 0;
    if (!t || id >= (uint32_t)t->n_vocab) return NULL;
    if (len) *len = t->text_len[id];
    if (special) *special = t->special[id];
    return t->text[id] ? t->text[id] : "";
}

/* ---- added tokens ---------------------------------------------------------- */
static bool word_char(const char *s, size_t n, size_t i, bool before) {
    if (before) {
        if (i == 0) return false;
        size_t k = i - 1;
        while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
        i = k;
    } else if (i >= n) {
        return false;
    }
    unsigned char c = (unsigned char)s[i];
    return c >= 0x80 || c == '_' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

static bool is_space_byte(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Next added token in s[from..n) of the kind `norm_pass` (normalized or not).
 * Returns its index or -1; *a..*b is the text it consumes (with lstrip/rstrip). */
static int next_added(const qerr_tokenizer *t, const char *s, size_t n, size_t from,
                      bool norm_pass, bool parse_special, size_t *a, size_t *b) {
    uint8_t bit = norm_pass ? 2 : 1;
    for (size_t i = from; i < n; i++) {
        if (!(t->added_first[(unsigned char)s[i]] & bit)) continue;
        for (int k = 0; k < t->n_added; k++) {
            const qerr__added_token *x = &t->added[k];
            if (x->normalized != norm_pass || (x->special && !parse_special)) continue;
            if (x->len > n - i || x->content[0] != s[i] || memcmp(s + i, x->content, x->len) != 0)
                continue;
            if (x->single_word && (word_char(s, n, i, true) || word_char(s, n, i + x->len, false)))
                continue;
            size_t lo = i, hi = i + x->len;
            if (x->lstrip) while (lo > from && is_space_byte((unsigned char)s[lo - 1])) lo--;
            if (x->rstrip) while (hi < n && is_space_byte((unsigned char)s[hi])) hi++;
            *a = lo;
            *b = hi;
            return k;
        }
    }
    return -1;
}

static int encode_normalized(const qerr_tokenizer *t, qerr__enc *e, const char *s, size_t n,
                             bool parse_special) {
    size_t pos = 0, a, b;
    bool any = false;
    for (int k = 0; k < t->n_added && !any; k++) any = t->added[k].normalized;
    int k;
    while (any && (k = next_added(t, s, n, pos, true, parse_special, &a, &b)) >= 0) {
        QERR_TRY(qerr__pretokenize(t, e, s + pos, a - pos));
        QERR_TRY(qerr__bpe_push(qerr__enc_bpe(e), (uint32_t)t->added[k].id));
        pos = b;
    }
    return qerr__pretokenize(t, e, s + pos, n - pos);
}

static int encode_piece(const qerr_tokenizer *t, qerr__enc *e, const char *s, size_t n, bool first,
                        bool parse_special) {
    if (n == 0) return QERR_OK;
    if (t->n_norm == 0) return encode_normalized(t, e, s, n, parse_special);
    char *norm;
    size_t nn;
    QERR_TRY(qerr__normalize(t, s, n, first, &norm, &nn));
    int rc = encode_normalized(t, e, norm, nn, parse_special);
    free(norm);
    return rc;
}

static int encode_valid(const qerr_tokenizer *t, qerr__enc *e, const char *s, size_t n,
                        unsigned flags) {
    qerr__bpe_scratch *bs = qerr__enc_bpe(e);
    bool add = flags & QERR_TOKENIZE_ADD_SPECIAL, parse = flags & QERR_TOKENIZE_PARSE_SPECIAL;
    if (add && t->add_bos && t->bos_id >= 0) QERR_TRY(qerr__bpe_push(bs, (uint32_t)t->bos_id));
    size_t pos = 0, a, b;
    int k;
    while ((k = next_added(t, s, n, pos, false, parse, &a, &b)) >= 0) {
        QERR_TRY(encode_piece(t, e, s + pos, a - pos, pos == 0, parse));
        QERR_TRY(qerr__bpe_push(bs, (uint32_t)t->added[k].id));
        pos = b;
    }
    QERR_TRY(encode_piece(t, e, s + pos, n - pos, pos == 0, parse));
    if (add && t->add_eos && t->eos_id >= 0) QERR_TRY(qerr__bpe_push(bs, (uint32_t)t->eos_id));
    return QERR_OK;
}

/* Encode one document and append its ids to the encoder's output. */
int qerr__tokenizer_encode_into(const qerr_tokenizer *t, qerr__enc *e, const char *text,
                                size_t len, unsigned flags) {
    QERR_CHECK(len < QERR_TOK_MAX_TEXT, QERR_E_RANGE,
               "qerr_tokenizer_encode: text of %zu bytes is too long (at most %zu per call)", len,
               QERR_TOK_MAX_TEXT - 1);
    char *clean;
    size_t cn;
    QERR_TRY(qerr__utf8_sanitize(text, len, &clean, &cn));
    int rc = encode_valid(t, e, clean ? clean : text, cn, flags);
    free(clean);
    return rc;
}

int qerr__enc_take(qerr__enc *e, uint32_t **ids, int64_t *count) {
    int64_t n;
    uint32_t *src = qerr__bpe_ids(qerr__enc_bpe(e), &n);
    uint32_t *o = qerr__malloc2(n ? (size_t)n : 1, sizeof *o);
    QERR_CHECK(o, QERR_E_NOMEM, "tokenizer: out of memory for %lld ids", (long long)n);
    if (n) memcpy(o, src, (size_t)n * sizeof *o);
    *ids = o;
    *count = n;
    return QERR_OK;
}

int qerr_tokenizer_encode(const qerr_tokenizer *t, const char *text, size_t len, unsigned flags,
                          uint32_t **ids, int64_t *count) {
    static const char fn[] = "qerr_tokenizer_encode";
    QERR_CHECK(ids && count, QERR_E_INVALID_ARG, "%s: output pointer is NULL", fn);
    *ids = NULL;
    *count = 0;
    QERR_CHECK(t, QERR_E_INVALID_ARG, "%s: tokenizer is NULL", fn);
    QERR_CHECK(text || len == 0, QERR_E_INVALID_ARG, "%s: text is NULL", fn);
    QERR_CHECK(!(flags & ~(QERR_TOKENIZE_ADD_SPECIAL | QERR_TOKENIZE_PARSE_SPECIAL)),
               QERR_E_INVALID_ARG, "%s: unknown flags 0x%x", fn, flags);
    qerr__enc *e;
    QERR_TRY(qerr__enc_new(&e));
    int rc = qerr__tokenizer_encode_into(t, e, text ? text : "", len, flags);
    if (rc == QERR_OK) rc = qerr__enc_take(e, ids, count);
    qerr__enc_free(e);
    return rc;
}

int qerr_tokenizer_decode(const qerr_tokenizer *t, const uint32_t *ids, int64_t count,
                          unsigned flags, char **text, size_t *len) {
    static const char fn[] = "qerr_tokenizer_decode";
    QERR_CHECK(text, QERR_E_INVALID_ARG, "%s: text is NULL", fn);
    *text = NULL;
    if (len) *len = 0;
    QERR_CHECK(t, QERR_E_INVALID_ARG, "%s: tokenizer is NULL", fn);
    QERR_CHECK(count >= 0 && (ids || count == 0), QERR_E_INVALID_ARG, "%s: bad ids/count", fn);
    QERR_CHECK(!(flags & ~QERR_DETOKENIZE_SKIP_SPECIAL), QERR_E_INVALID_ARG,
               "%s: unknown flags 0x%x", fn, flags);
    bool skip = flags & QERR_DETOKENIZE_SKIP_SPECIAL;
    size_t total = 0;
    for (int64_t i = 0; i < count; i++) {
        QERR_CHECK(ids[i] < (uint32_t)t->n_vocab, QERR_E_RANGE,
                   "%s: id %u at position %lld is outside the vocabulary of %d", fn, ids[i],
                   (long long)i, (int)t->n_vocab);
        if (!(skip && t->special[ids[i]])) total += t->text_len[ids[i]];
    }
    char *o = malloc(total + 1);
    QERR_CHECK(o, QERR_E_NOMEM, "%s: out of memory for %zu bytes", fn, total);
    size_t k = 0;
    bool after_bos = true; /* llama2.c: the space after BOS (or at the start) goes */
    for (int64_t i = 0; i < count; i++) {
        uint32_t id = ids[i];
        if (skip && t->special[id]) continue;
        const char *p = t->text[id] ? t->text[id] : "";
        size_t n = t->text_len[id];
        if (t->model == QERR_TOKM_LLAMA2C && after_bos && !t->special[id] && n && p[0] == ' ') {
            p++;
            n--;
        }
        if (t->model == QERR_TOKM_LLAMA2C) after_bos = (int32_t)id == t->bos_id;
        memcpy(o + k, p, n);
        k += n;
    }
    /* Hugging Face's Strip decoder: leading spaces of the joined text */
    size_t cut = 0;
    while ((int)cut < t->strip_leading && cut < k && o[cut] == ' ') cut++;
    if (cut) memmove(o, o + cut, k - cut);
    k -= cut;
    o[k] = '\0';
    *text = o;
    if (len) *len = k;
    return QERR_OK;
}
