/* Reader of Hugging Face's tokenizer.json (+ tokenizer_config.json): BPE
 * models with their normalizer, pre-tokenizer, decoder, post-processor and
 * added tokens. Whatever this library cannot reproduce exactly is refused
 * with QERR_E_UNSUPPORTED and the name of the component. */
#include "text_internal.h"

#include <stdlib.h>
#include <string.h>

#define META "\xE2\x96\x81" /* U+2581, SentencePiece's space */

/* GPT-2's pre-tokenizer, used by ByteLevel when use_regex is true. */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct {
    qerr_tokenizer *t;
    const char *what;
    bool byte_level;
    int32_t tmpl_bos, tmpl_eos;
    int16_t byte_of_cp[324]; /* GPT-2 byte alphabet: code point -> byte, -1 */
} loader;

static const char *jstr(const qerr_json *j, const char *key) {
    const qerr_json *v = qerr__json_get(j, key);
    return v && v->type == QERR_JSON_STRING ? v->str : NULL;
}

static bool jbool(const qerr_json *j, const char *key, bool dflt) {
    const qerr_json *v = qerr__json_get(j, key);
    return v && v->type == QERR_JSON_BOOL ? v->boolean : dflt;
}

static bool is_null(const qerr_json *v) { return !v || v->type == QERR_JSON_NULL; }

static int unsupported(const loader *L, const char *part, const char *type) {
    return qerr__fail(QERR_E_UNSUPPORTED, "%s: %s \"%.60s\" is not supported", L->what, part,
                      type ? type : "(no type)");
}

static int bad(const loader *L, const char *msg) {
    return qerr__fail(QERR_E_FORMAT, "%s: %s", L->what, msg);
}

static void gpt2_alphabet(loader *L) {
    for (int i = 0; i < 324; i++) L->byte_of_cp[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        L->byte_of_cp[printable ? b : 256 + extra++] = (int16_t)b;
    }
}

/* A vocabulary string in the model's working alphabet: the bytes it stands
 * for (byte-level) or itself. False if it has a character outside the
 * byte alphabet (such a token can only come from the added tokens). */
static bool working_key(const loader *L, const char *s, size_t n, char *out, size_t *out_n) {
    if (!L->byte_level) {
        memcpy(out, s, n);
        *out_n = n;
        return true;
    }
    size_t i = 0, k = 0;
    while (i < n) {
        uint32_t c = qerr__utf8_next(s, n, &i);
        if (c >= 324 || L->byte_of_cp[c] < 0) return false;
        out[k++] = (char)L->byte_of_cp[c];
    }
    *out_n = k;
    return true;
}

/* ---- normalizer ------------------------------------------------------------- */
static int add_step(qerr_tokenizer *t, int kind, const char *arg, const char *arg2, int flags) {
    qerr__norm_step *n = realloc(t->norm, (size_t)(t->n_norm + 1) * sizeof *n);
    QERR_CHECK(n, QERR_E_NOMEM, "tokenizer: out of memory");
    t->norm = n;
    qerr__norm_step *s = &n[t->n_norm++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->flags = flags;
    if (arg) {
        s->arg = strdup(arg);
        s->arg_len = strlen(arg);
        QERR_CHECK(s->arg, QERR_E_NOMEM, "tokenizer: out of memory");
    }
    if (arg2) {
        s->arg2 = strdup(arg2);
        s->arg2_len = strlen(arg2);
        QERR_CHECK(s->arg2, QERR_E_NOMEM, "tokenizer: out of memory");
    }
    return QERR_OK;
}

static int read_normalizer(loader *L, const qerr_json *j, int depth) {
    if (is_null(j)) return QERR_OK;
    if (j->type != QERR_JSON_OBJECT || depth > 8) return bad(L, "normalizer is not an object");
    const char *type = jstr(j, "type");
    if (!type) return bad(L, "normalizer without a type");
    if (!strcmp(type, "Sequence")) {
        const qerr_json *list = qerr__json_get(j, "normalizers");
        if (!list || list->type != QERR_JSON_ARRAY) return bad(L, "Sequence normalizer without a list");
        for (size_t i = 0; i < list->len; i++) QERR_TRY(read_normalizer(L, &list->items[i], depth + 1));
        return QERR_OK;
    }
    static const char *const forms[] = {"NFC", "NFD", "NFKC", "NFKD"};
    for (int k = 0; k < 4; k++)
        if (!strcmp(type, forms[k])) return add_step(L->t, QERR_NORM_NFC + k, NULL, NULL, 0);
    if (!strcmp(type, "Lowercase")) return add_step(L->t, QERR_NORM_LOWERCASE, NULL, NULL, 0);
    if (!strcmp(type, "Prepend")) {
        const char *p = jstr(j, "prepend");
        if (!p) return bad(L, "Prepend normalizer without a string");
        return add_step(L->t, QERR_NORM_PREPEND, p, NULL, 0);
    }
    if (!strcmp(type, "Replace")) {
        const char *from = jstr(qerr__json_get(j, "pattern"), "String"), *to = jstr(j, "content");
        if (!from || !to) return unsupported(L, "normalizer", "Replace with a Regex pattern");
        return add_step(L->t, QERR_NORM_REPLACE, from, to, 0);
    }
    if (!strcmp(type, "Strip")) {
        int sides = (jbool(j, "strip_left", true) ? 1 : 0) | (jbool(j, "strip_right", true) ? 2 : 0);
        return add_step(L->t, QERR_NORM_STRIP, NULL, NULL, sides);
    }
    return unsupported(L, "normalizer", type);
}

/* ---- pre-tokenizer ------------------------------------------------------------ */
static int add_split(loader *L, const char *pat, size_t len, int behavior, bool literal) {
    qerr_tokenizer *t = L->t;
    qerr__regex **s = realloc(t->split, (size_t)(t->n_split + 1) * sizeof *s);
    QERR_CHECK(s, QERR_E_NOMEM, "tokenizer: out of memory");
    t->split = s;
    QERR_TRY(qerr__regex_compile(pat, len, behavior, literal, &s[t->n_split], L->what));
    t->n_split++;
    return QERR_OK;
}

static int metaspace_scheme(const loader *L, const qerr_json *j, int *scheme) {
    const char *ps = jstr(j, "prepend_scheme");
    if (ps) {
        if (!strcmp(ps, "always")) *scheme = 1;
        else if (!strcmp(ps, "first")) *scheme = 2;
        else if (!strcmp(ps, "never")) *scheme = 0;
        else return unsupported(L, "Metaspace prepend_scheme", ps);
    } else {
        *scheme = jbool(j, "add_prefix_space", true) ? 1 : 0;
    }
    return QERR_OK;
}

static int read_pretokenizer(loader *L, const qerr_json *j, int depth) {
    if (is_null(j)) return QERR_OK;
    if (j->type != QERR_JSON_OBJECT || depth > 8) return bad(L, "pre_tokenizer is not an object");
    const char *type = jstr(j, "type");
    if (!type) return bad(L, "pre_tokenizer without a type");
    if (!strcmp(type, "Sequence")) {
        const qerr_json *list = qerr__json_get(j, "pretokenizers");
        if (!list || list->type != QERR_JSON_ARRAY)
            return bad(L, "Sequence pre_tokenizer without a list");
        for (size_t i = 0; i < list->len; i++)
            QERR_TRY(read_pretokenizer(L, &list->items[i], depth + 1));
        return QERR_OK;
    }
    if (!strcmp(type, "Split")) {
        const qerr_json *pat = qerr__json_get(j, "pattern");
        const char *re = jstr(pat, "Regex"), *lit = jstr(pat, "String");
        const char *beh = jstr(j, "behavior");
        if (!re && !lit) return bad(L, "Split pre_tokenizer without a pattern");
        if (jbool(j, "invert", false)) return unsupported(L, "pre_tokenizer", "Split with invert");
        int b;
        if (beh && !strcmp(beh, "Isolated")) b = QERR_SPLIT_ISOLATED;
        else if (beh && !strcmp(beh, "Removed")) b = QERR_SPLIT_REMOVED;
        else if (beh && !strcmp(beh, "MergedWithNext")) b = QERR_SPLIT_MERGED_WITH_NEXT;
        else if (beh && !strcmp(beh, "MergedWithPrevious")) b = QERR_SPLIT_MERGED_WITH_PREVIOUS;
        else return unsupported(L, "Split behavior", beh);
        const char *p = re ? re : lit;
        return add_split(L, p, strlen(p), b, !re);
    }
    if (!strcmp(type, "ByteLevel")) {
        L->byte_level = true;
        if (jbool(j, "add_prefix_space", true)) {
            if (L->t->n_split)
                return unsupported(L, "pre_tokenizer", "ByteLevel with add_prefix_space after a Split");
            L->t->prefix_space = true;
        }
        if (jbool(j, "use_regex", true))
            QERR_TRY(add_split(L, GPT2_PATTERN, strlen(GPT2_PATTERN), QERR_SPLIT_ISOLATED, false));
        return QERR_OK;
    }
    if (!strcmp(type, "Metaspace")) {
        const char *rep = jstr(j, "replacement");
        int scheme;
        QERR_TRY(metaspace_scheme(L, j, &scheme));
        if (L->t->n_split) return unsupported(L, "pre_tokenizer", "Metaspace after a Split");
        QERR_TRY(add_step(L->t, QERR_NORM_METASPACE, rep ? rep : META, NULL, scheme));
        if (jbool(j, "split", true))
            QERR_TRY(add_split(L, rep ? rep : META, strlen(rep ? rep : META),
                               QERR_SPLIT_MERGED_WITH_NEXT, true));
        return QERR_OK;
    }
    return unsupported(L, "pre_tokenizer", type);
}

/* ---- decoder ------------------------------------------------------------------- */
static int read_decoder(loader *L, const qerr_json *j, int depth) {
    if (is_null(j)) return QERR_OK;
    if (j->type != QERR_JSON_OBJECT || depth > 8) return bad(L, "decoder is not an object");
    const char *type = jstr(j, "type");
    if (!type) return bad(L, "decoder without a type");
    if (!strcmp(type, "Sequence")) {
        const qerr_json *list = qerr__json_get(j, "decoders");
        if (!list || list->type != QERR_JSON_ARRAY) return bad(L, "Sequence decoder without a list");
        for (size_t i = 0; i < list->len; i++) QERR_TRY(read_decoder(L, &list->items[i], depth + 1));
        return QERR_OK;
    }
    if (!strcmp(type, "ByteLevel") || !strcmp(type, "ByteFallback") || !strcmp(type, "Fuse"))
        return QERR_OK;
    if (!strcmp(type, "Replace")) {
        const char *from = jstr(qerr__json_get(j, "pattern"), "String"), *to = jstr(j, "content");
        if (!from || !to || strcmp(from, META) != 0 || strcmp(to, " ") != 0)
            return unsupported(L, "decoder", "Replace other than U+2581 -> space");
        return QERR_OK;
    }
    if (!strcmp(type, "Strip")) {
        const char *c = jstr(j, "content");
        const qerr_json *start = qerr__json_get(j, "start"), *stop = qerr__json_get(j, "stop");
        if (!c || strcmp(c, " ") != 0 || (stop && !(stop->is_int && stop->integer == 0)) ||
            !start || !start->is_int || start->integer < 0 || start->integer > 64)
            return unsupported(L, "decoder", "Strip other than leading spaces");
        L->t->strip_leading = (int)start->integer;
        return QERR_OK;
    }
    if (!strcmp(type, "Metaspace")) {
        int scheme;
        QERR_TRY(metaspace_scheme(L, j, &scheme));
        L->t->strip_leading = scheme ? 1 : 0;
        return QERR_OK;
    }
    return unsupported(L, "decoder", type);
}

/* ---- post-processor: BOS/EOS of its template ------------------------------------ */
static int template_special_id(loader *L, const qerr_json *tp, const qerr_json *item, int32_t *id) {
    const char *name = jstr(qerr__json_get(item, "SpecialToken"), "id");
    const qerr_json *ids = qerr__json_get(qerr__json_get(qerr__json_get(tp, "special_tokens"), name),
                                          "ids");
    if (!name || !ids || ids->type != QERR_JSON_ARRAY || ids->len != 1 || !ids->items[0].is_int ||
        ids->items[0].integer < 0 || ids->items[0].integer >= QERR_TOK_MAX_VOCAB)
        return unsupported(L, "post_processor", "TemplateProcessing with multi-id special tokens");
    *id = (int32_t)ids->items[0].integer;
    return QERR_OK;
}

static int read_post(loader *L, const qerr_json *j, int depth) {
    if (is_null(j)) return QERR_OK;
    if (j->type != QERR_JSON_OBJECT || depth > 8) return bad(L, "post_processor is not an object");
    const char *type = jstr(j, "type");
    if (!type) return bad(L, "post_processor without a type");
    if (!strcmp(type, "ByteLevel")) return QERR_OK;
    if (!strcmp(type, "Sequence")) {
        const qerr_json *list = qerr__json_get(j, "processors");
        if (!list || list->type != QERR_JSON_ARRAY)
            return bad(L, "Sequence post_processor without a list");
        for (size_t i = 0; i < list->len; i++) QERR_TRY(read_post(L, &list->items[i], depth + 1));
        return QERR_OK;
    }
    if (strcmp(type, "TemplateProcessing") != 0) return unsupported(L, "post_processor", type);
    const qerr_json *single = qerr__json_get(j, "single");
    if (!single || single->type != QERR_JSON_ARRAY) return bad(L, "TemplateProcessing without single");
    size_t seq = SIZE_MAX;
    for (size_t i = 0; i < single->len; i++)
        if (qerr__json_get(&single->items[i], "Sequence")) {
            if (seq != SIZE_MAX) return unsupported(L, "post_processor", "TemplateProcessing with two sequences");
            seq = i;
        }
    if (seq == SIZE_MAX) return bad(L, "TemplateProcessing without the sequence");
    if (seq > 1 || single->len - seq > 2)
        return unsupported(L, "post_processor", "TemplateProcessing with several tokens on one side");
    if (seq == 1) QERR_TRY(template_special_id(L, j, &single->items[0], &L->tmpl_bos));
    if (single->len - seq == 2) QERR_TRY(template_special_id(L, j, &single->items[seq + 1], &L->tmpl_eos));
    return QERR_OK;
}

/* ---- model -------------------------------------------------------------------- */
static int read_vocab(loader *L, const qerr_json *model, const qerr_json *added) {
    qerr_tokenizer *t = L->t;
    const qerr_json *vocab = qerr__json_get(model, "vocab");
    if (!vocab || vocab->type != QERR_JSON_OBJECT || vocab->len == 0)
        return bad(L, "model.vocab is missing or empty");
    int64_t max_id = -1;
    size_t bytes = 0;
    for (size_t i = 0; i < vocab->len; i++) {
        const qerr_json *v = &vocab->items[i];
        if (!v->is_int || v->integer < 0 || v->integer >= QERR_TOK_MAX_VOCAB)
            return bad(L, "model.vocab has an id that is not an integer in range");
        if (v->integer > max_id) max_id = v->integer;
        bytes += strlen(vocab->keys[i]) + 1;
    }
    if (added && added->type == QERR_JSON_ARRAY)
        for (size_t i = 0; i < added->len; i++) {
            const qerr_json *id = qerr__json_get(&added->items[i], "id");
            if (id && id->is_int && id->integer > max_id && id->integer < QERR_TOK_MAX_VOCAB)
                max_id = id->integer;
        }
    QERR_TRY(qerr__tokenizer_alloc_ids(t, (int32_t)(max_id + 1), L->what));
    QERR_TRY(qerr__strmap_init(&t->vocab, vocab->len));
    t->owned_strings = malloc(bytes);
    QERR_CHECK(t->owned_strings, QERR_E_NOMEM, "%s: out of memory", L->what);
    char *arena = t->owned_strings;
    for (size_t i = 0; i < vocab->len; i++) {
        const char *key = vocab->keys[i];
        size_t n = strlen(key), wn;
        int32_t id = (int32_t)vocab->items[i].integer;
        if (working_key(L, key, n, arena, &wn)) {
            QERR_TRY(qerr__strmap_put(&t->vocab, arena, wn, id));
            if (L->byte_level) {
                QERR_TRY(qerr__tokenizer_set_text(t, id, arena, wn));
                if (wn == 1) t->byte_id[(unsigned char)arena[0]] = id;
            }
            arena += wn;
        } else {
            QERR_TRY(qerr__tokenizer_set_text(t, id, key, n));
        }
        if (!L->byte_level) {
            /* decoded text: U+2581 -> space, <0xNN> -> that byte */
            bool upper;
            int byte = t->byte_fallback ? qerr__byte_piece(key, n, &upper) : -1;
            if (byte >= 0) {
                char b = (char)byte;
                QERR_TRY(qerr__tokenizer_set_text(t, id, &b, 1));
                if (upper) t->byte_id[byte] = id;
            } else {
                char *d = malloc(n + 1);
                QERR_CHECK(d, QERR_E_NOMEM, "%s: out of memory", L->what);
                size_t k = 0;
                for (size_t p = 0; p < n;) {
                    if (n - p >= 3 && !memcmp(key + p, META, 3)) { d[k++] = ' '; p += 3; }
                    else d[k++] = key[p++];
                }
                int rc = qerr__tokenizer_set_text(t, id, d, k);
                free(d);
                QERR_TRY(rc);
            }
        }
    }
    if (L->byte_level)
        for (int b = 0; b < 256; b++)
            if (t->byte_id[b] < 0) return bad(L, "byte-level vocabulary lacks a token for some byte");
    return QERR_OK;
}

static int read_merges(loader *L, const qerr_json *model) {
    qerr_tokenizer *t = L->t;
    const qerr_json *merges = qerr__json_get(model, "merges");
    if (!merges || merges->type != QERR_JSON_ARRAY) return bad(L, "model.merges is missing");
    QERR_CHECK(merges->len < (size_t)INT32_MAX, QERR_E_FORMAT, "%s: too many merges", L->what);
    QERR_TRY(qerr__pairmap_init(&t->merges, merges->len));
    char *buf = NULL;
    size_t cap = 0;
    int rc = QERR_OK;
    for (size_t i = 0; i < merges->len && rc == QERR_OK; i++) {
        const qerr_json *m = &merges->items[i];
        const char *a, *b;
        size_t an, bn;
        if (m->type == QERR_JSON_STRING) {
            const char *sp = strchr(m->str, ' ');
            if (!sp || strchr(sp + 1, ' ')) { rc = bad(L, "a merge is not two tokens separated by a space"); break; }
            a = m->str;
            an = (size_t)(sp - m->str);
            b = sp + 1;
            bn = strlen(b);
        } else if (m->type == QERR_JSON_ARRAY && m->len == 2 &&
                   m->items[0].type == QERR_JSON_STRING && m->items[1].type == QERR_JSON_STRING) {
            a = m->items[0].str;
            an = m->items[0].len;
            b = m->items[1].str;
            bn = m->items[1].len;
        } else {
            rc = bad(L, "a merge is neither \"a b\" nor [\"a\", \"b\"]");
            break;
        }
        if (an + bn + 1 > cap) {
            cap = (an + bn + 1) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) { rc = qerr__fail(QERR_E_NOMEM, "%s: out of memory", L->what); break; }
            buf = nb;
        }
        size_t wa, wb;
        if (!working_key(L, a, an, buf, &wa) || !working_key(L, b, bn, buf + wa, &wb)) {
            rc = qerr__fail(QERR_E_FORMAT, "%s: merge %zu has a token outside the byte alphabet", L->what, i);
            break;
        }
        int32_t ia = qerr__strmap_get(&t->vocab, buf, wa), ib = qerr__strmap_get(&t->vocab, buf + wa, wb);
        int32_t im = qerr__strmap_get(&t->vocab, buf, wa + wb);
        if (ia < 0 || ib < 0 || im < 0) {
            rc = qerr__fail(QERR_E_FORMAT, "%s: merge %zu (\"%.40s\" + \"%.40s\") uses or makes a token not in the vocabulary",
                            L->what, i, a, b);
            break;
        }
        rc = qerr__pairmap_put(&t->merges, qerr__pair_key((uint32_t)ia, (uint32_t)ib), (int32_t)i, im);
    }
    free(buf);
    return rc;
}

static int read_added(loader *L, const qerr_json *added) {
    qerr_tokenizer *t = L->t;
    if (is_null(added)) return QERR_OK;
    if (added->type != QERR_JSON_ARRAY) return bad(L, "added_tokens is not an array");
    if (!added->len) return QERR_OK;
    t->added = qerr__calloc(added->len, sizeof *t->added);
    QERR_CHECK(t->added, QERR_E_NOMEM, "%s: out of memory", L->what);
    for (size_t i = 0; i < added->len; i++) {
        const qerr_json *a = &added->items[i], *id = qerr__json_get(a, "id");
        const char *content = jstr(a, "content");
        if (!id || !id->is_int || id->integer < 0 || id->integer >= t->n_vocab || !content)
            return bad(L, "an added token lacks an id in range or its content");
        if (!content[0]) continue;
        qerr__added_token *x = &t->added[t->n_added];
        x->id = (int32_t)id->integer;
        x->special = jbool(a, "special", false);
        x->lstrip = jbool(a, "lstrip", false);
        x->rstrip = jbool(a, "rstrip", false);
        x->single_word = jbool(a, "single_word", false);
        x->normalized = jbool(a, "normalized", !x->special) && t->n_norm > 0;
        if (x->normalized) {
            QERR_TRY(qerr__normalize(t, content, strlen(content), false, &x->content, &x->len));
        } else {
            x->len = strlen(content);
            x->content = strdup(content);
            QERR_CHECK(x->content, QERR_E_NOMEM, "%s: out of memory", L->what);
        }
        t->n_added++;
        QERR_TRY(qerr__tokenizer_set_text(t, x->id, content, strlen(content)));
        t->special[x->id] = x->special;
    }
    return QERR_OK;
}

/* The id of a special token named in tokenizer_config.json ("<s>" or
 * {"content": "<s>"}), -1 if absent or unknown. */
static int32_t config_token(const loader *L, const qerr_json *cfg, const char *key) {
    const qerr_json *v = qerr__json_get(cfg, key);
    const char *name = v && v->type == QERR_JSON_STRING ? v->str : jstr(v, "content");
    if (!name) return -1;
    for (int i = 0; i < L->t->n_added; i++)
        if (!strcmp(L->t->added[i].content, name)) return L->t->added[i].id;
    char *buf = malloc(strlen(name) + 1);
    size_t wn;
    int32_t id = -1;
    if (buf && working_key(L, name, strlen(name), buf, &wn)) id = qerr__strmap_get(&L->t->vocab, buf, wn);
    free(buf);
    return id;
}

static int read_config(loader *L, const char *cfg_text, size_t cfg_n) {
    qerr_tokenizer *t = L->t;
    t->bos_id = L->tmpl_bos;
    t->eos_id = L->tmpl_eos;
    t->add_bos = L->tmpl_bos >= 0;
    t->add_eos = L->tmpl_eos >= 0;
    if (!cfg_text) return QERR_OK;
    qerr_json *cfg;
    QERR_TRY(qerr__json_parse(cfg_text, cfg_n, "tokenizer_config.json", &cfg));
    int32_t bos = config_token(L, cfg, "bos_token"), eos = config_token(L, cfg, "eos_token");
    if (bos >= 0) t->bos_id = bos;
    if (eos >= 0) t->eos_id = eos;
    t->add_bos = jbool(cfg, "add_bos_token", t->add_bos) && t->bos_id >= 0;
    t->add_eos = jbool(cfg, "add_eos_token", t->add_eos) && t->eos_id >= 0;
    qerr__json_free(cfg);
    return QERR_OK;
}

static int read_model_options(loader *L, const qerr_json *model) {
    qerr_tokenizer *t = L->t;
    const char *type = jstr(model, "type");
    if (!type && !qerr__json_get(model, "merges")) return unsupported(L, "model", "(untyped, no merges)");
    if (type && strcmp(type, "BPE") != 0) return unsupported(L, "model type", type);
    const qerr_json *dropout = qerr__json_get(model, "dropout");
    if (!is_null(dropout) && !(dropout->type == QERR_JSON_NUMBER && dropout->number == 0))
        return unsupported(L, "model", "BPE with dropout");
    const char *csp = jstr(model, "continuing_subword_prefix"), *eow = jstr(model, "end_of_word_suffix");
    if ((csp && csp[0]) || (eow && eow[0]))
        return unsupported(L, "model", "BPE with a subword prefix or word suffix");
    t->byte_fallback = jbool(model, "byte_fallback", false);
    t->fuse_unk = jbool(model, "fuse_unk", false);
    t->ignore_merges = jbool(model, "ignore_merges", false);
    return QERR_OK;
}

static int load(loader *L, const qerr_json *root, const char *cfg, size_t cfg_n) {
    qerr_tokenizer *t = L->t;
    if (root->type != QERR_JSON_OBJECT) return bad(L, "not a JSON object");
    const qerr_json *model = qerr__json_get(root, "model");
    if (!model || model->type != QERR_JSON_OBJECT) return bad(L, "no \"model\" object");
    QERR_TRY(read_model_options(L, model));
    QERR_TRY(read_normalizer(L, qerr__json_get(root, "normalizer"), 0));
    QERR_TRY(read_pretokenizer(L, qerr__json_get(root, "pre_tokenizer"), 0));
    QERR_TRY(read_decoder(L, qerr__json_get(root, "decoder"), 0));
    QERR_TRY(read_post(L, qerr__json_get(root, "post_processor"), 0));
    t->model = L->byte_level ? QERR_TOKM_BYTE_BPE : QERR_TOKM_SP_BPE;
    if (L->byte_level && t->byte_fallback) return unsupported(L, "model", "byte-level BPE with byte_fallback");
    const qerr_json *added = qerr__json_get(root, "added_tokens");
    QERR_TRY(read_vocab(L, model, added));
    const char *unk = jstr(model, "unk_token");
    if (unk) {
        char *buf = malloc(strlen(unk) + 1);
        size_t wn;
        QERR_CHECK(buf, QERR_E_NOMEM, "%s: out of memory", L->what);
        if (working_key(L, unk, strlen(unk), buf, &wn)) t->unk_id = qerr__strmap_get(&t->vocab, buf, wn);
        free(buf);
    }
    QERR_TRY(read_merges(L, model));
    QERR_TRY(read_added(L, added));
    if (L->tmpl_bos >= t->n_vocab || L->tmpl_eos >= t->n_vocab)
        return bad(L, "post_processor names an id outside the vocabulary");
    QERR_TRY(read_config(L, cfg, cfg_n));
    return qerr__tokenizer_finish(t, L->what);
}

int qerr__tokenizer_from_json(qerr_tokenizer *t, const char *json, size_t n, const char *cfg,
                              size_t cfg_n, const char *what) {
    qerr_json *root;
    QERR_TRY(qerr__json_parse(json, n, what, &root));
    loader L = {.t = t, .what = what, .tmpl_bos = -1, .tmpl_eos = -1};
    gpt2_alphabet(&L);
    int rc = load(&L, root, cfg, cfg_n);
    qerr__json_free(root);
    return rc;
}
