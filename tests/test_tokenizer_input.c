/* Tokenizer engine and bad input, on small tokenizers written by the test:
 * the linear-time BPE against a naive quadratic BPE (Hugging Face ranks and
 * llama2.c scores with ties), unsupported components refused by name,
 * malformed files, text and JSON Lines files, and a 100 MB line. */
#include "testutil.h"
#include "text/text_internal.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

static char tmpdir[256];

static int setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qerr_tok_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *name, const void *data, size_t n) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
    return path;
}

static const char *write_text(const char *name, const char *s) { return write_file(name, s, strlen(s)); }

/* ---- a random BPE over a small alphabet ------------------------------------- */
#define MAXTOK 256
typedef struct {
    char tok[MAXTOK][64];
    int n_tok;
    int ml[MAXTOK], mr[MAXTOK], n_merge; /* merge k joins tokens ml[k] and mr[k] */
} toy;

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

static int find_tok(const toy *b, const char *s) {
    for (int i = 0; i < b->n_tok; i++)
        if (!strcmp(b->tok[i], s)) return i;
    return -1;
}

static void make_toy(toy *b, int alphabet, int merges) {
    memset(b, 0, sizeof *b);
    for (int i = 0; i < alphabet; i++) {
        b->tok[i][0] = (char)('a' + i);
        b->n_tok++;
    }
    while (b->n_merge < merges) {
        int l = (int)(rnd() % (uint32_t)b->n_tok), r = (int)(rnd() % (uint32_t)b->n_tok);
        char cat[128];
        snprintf(cat, sizeof cat, "%s%s", b->tok[l], b->tok[r]);
        if (strlen(cat) > 12) continue;
        bool dup = false;
        for (int k = 0; k < b->n_merge; k++) dup |= b->ml[k] == l && b->mr[k] == r;
        if (dup) continue;
        if (find_tok(b, cat) < 0) snprintf(b->tok[b->n_tok++], 64, "%s", cat);
        b->ml[b->n_merge] = l;
        b->mr[b->n_merge++] = r;
    }
}

static const char *toy_json(const toy *b) {
    static char j[65536];
    size_t k = 0;
    k += (size_t)snprintf(j + k, sizeof j - k,
                          "{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":null,"
                          "\"pre_tokenizer\":null,\"post_processor\":null,\"decoder\":null,"
                          "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,"
                          "\"fuse_unk\":false,\"byte_fallback\":false,\"vocab\":{");
    for (int i = 0; i < b->n_tok; i++)
        k += (size_t)snprintf(j + k, sizeof j - k, "%s\"%s\":%d", i ? "," : "", b->tok[i], i);
    k += (size_t)snprintf(j + k, sizeof j - k, "},\"merges\":[");
    for (int m = 0; m < b->n_merge; m++)
        k += (size_t)snprintf(j + k, sizeof j - k, "%s\"%s %s\"", m ? "," : "", b->tok[b->ml[m]],
                              b->tok[b->mr[m]]);
    snprintf(j + k, sizeof j - k, "]}}");
    return j;
}

/* Textbook BPE: repeatedly merge the adjacent pair of lowest rank, leftmost
 * first. rank_of(l, r) < 0 means no merge. */
static int naive(const toy *b, const char *s, int *out, int (*rank_of)(const toy *, int, int, int *)) {
    int n = (int)strlen(s);
    for (int i = 0; i < n; i++) {
        char c[2] = {s[i], 0};
        out[i] = find_tok(b, c);
    }
    for (;;) {
        int best = -1, best_rank = 0, best_id = 0;
        for (int i = 0; i + 1 < n; i++) {
            int id, r = rank_of(b, out[i], out[i + 1], &id);
            if (r >= 0 && (best < 0 || r < best_rank)) {
                best = i;
                best_rank = r;
                best_id = id;
            }
        }
        if (best < 0) return n;
        out[best] = best_id;
        memmove(out + best + 1, out + best + 2, (size_t)(n - best - 2) * sizeof *out);
        n--;
    }
}

static int hf_rank(const toy *b, int l, int r, int *id) {
    int rank = -1;
    for (int k = 0; k < b->n_merge; k++) /* a later duplicate would win: none here */
        if (b->ml[k] == l && b->mr[k] == r) rank = k;
    if (rank >= 0) {
        char cat[128];
        snprintf(cat, sizeof cat, "%s%s", b->tok[l], b->tok[r]);
        *id = find_tok(b, cat);
    }
    return rank;
}

static void random_text(char *s, int n, int alphabet) {
    for (int i = 0; i < n; i++) s[i] = (char)('a' + rnd() % (uint32_t)alphabet);
    s[n] = '\0';
}

static void check_against_naive(qerr_tokenizer *t, const toy *b, int (*rank_of)(const toy *, int, int, int *),
                                int alphabet, int offset) {
    static char s[4001];
    static int want[4000];
    static const int lens[] = {1, 2, 5, 31, 32, 33, 64, 200, 1000, 4000};
    for (size_t L = 0; L < sizeof lens / sizeof lens[0]; L++)
        for (int rep = 0; rep < 5; rep++) {
            random_text(s, lens[L], alphabet);
            int wn = naive(b, s, want, rank_of);
            uint32_t *ids = NULL;
            int64_t n = 0;
            assert_int_equal(qerr_tokenizer_encode(t, s, strlen(s), 0, &ids, &n), QERR_OK);
            if (offset) { /* llama2.c: the dummy-prefix space comes first */
                assert_true(n >= 1);
            }
            assert_int_equal(n, wn);
            for (int i = 0; i < wn; i++) assert_int_equal(ids[i], (uint32_t)(want[i] + offset));
            char *back = NULL;
            assert_int_equal(qerr_tokenizer_decode(t, ids, n, 0, &back, NULL), QERR_OK);
            assert_string_equal(back, s);
            qerr_free(back);
            qerr_free(ids);
        }
}

static void bpe_matches_naive(void **state) {
    (void)state;
    for (int round = 0; round < 6; round++) {
        toy b;
        int alphabet = 2 + round % 3;
        make_toy(&b, alphabet, 20 + 30 * round);
        qerr_tokenizer *t = NULL;
        const char *path = write_text("toy.json", toy_json(&b));
        assert_int_equal(qerr_tokenizer_load(&t, path), QERR_OK);
        check_against_naive(t, &b, hf_rank, alphabet, 0);
        qerr_tokenizer_free(t);
    }
}

/* llama2.c: merge the pair whose concatenation scores highest; the toy's
 * scores repeat (ties go leftmost). Ids: 0..2 special, 3..258 bytes, then
 * " ", then the toy's tokens. */
static float toy_score[MAXTOK];
static int l2c_rank(const toy *b, int l, int r, int *id) {
    char cat[128];
    snprintf(cat, sizeof cat, "%s%s", b->tok[l], b->tok[r]);
    int k = find_tok(b, cat);
    if (k < 0) return -1;
    *id = k;
    return (int)(1000 - toy_score[k]); /* higher score, lower rank; ties stay ties */
}

static void llama2c_matches_naive(void **state) {
    (void)state;
    for (int round = 0; round < 4; round++) {
        toy b;
        int alphabet = 2 + round % 3;
        make_toy(&b, alphabet, 30 + 30 * round);
        static unsigned char file[1 << 16];
        size_t k = 0;
        int32_t max_len = 16;
        memcpy(file, &max_len, 4);
        k = 4;
#define PUT(str, score)                                                                    \
    do {                                                                                   \
        float sc_ = (score);                                                               \
        int32_t n_ = (int32_t)strlen(str);                                                 \
        memcpy(file + k, &sc_, 4);                                                         \
        memcpy(file + k + 4, &n_, 4);                                                      \
        memcpy(file + k + 8, (str), (size_t)n_);                                           \
        k += 8 + (size_t)n_;                                                               \
    } while (0)
        PUT("<unk>", 0);
        PUT("\n<s>\n", 0);
        PUT("\n</s>\n", 0);
        for (int byte = 0; byte < 256; byte++) {
            char p[8];
            snprintf(p, sizeof p, "<0x%02X>", byte);
            PUT(p, 0);
        }
        /* the toy's alphabet shifted past " ", which never merges here */
        PUT(" ", -1e11f);
        for (int i = 0; i < b.n_tok; i++) {
            toy_score[i] = (float)(rnd() % 7); /* many ties */
            PUT(b.tok[i], toy_score[i]);
        }
#undef PUT
        qerr_tokenizer *t = NULL;
        const char *path = write_file("toy.bin", file, k);
        assert_int_equal(qerr_tokenizer_load(&t, path), QERR_OK);
        /* encode " " + text: compare after the leading dummy-prefix id (259) */
        static char s[2001];
        static int want[2000];
        static const int lens[] = {1, 3, 31, 33, 100, 2000};
        for (size_t L = 0; L < sizeof lens / sizeof lens[0]; L++) {
            random_text(s, lens[L], alphabet);
            int wn = naive(&b, s, want, l2c_rank);
            uint32_t *ids = NULL;
            int64_t n = 0;
            assert_int_equal(qerr_tokenizer_encode(t, s, strlen(s), 0, &ids, &n), QERR_OK);
            assert_int_equal(n, wn + 1);
            assert_int_equal(ids[0], 259);
            for (int i = 0; i < wn; i++) assert_int_equal(ids[i + 1], (uint32_t)(want[i] + 260));
            char *back = NULL;
            assert_int_equal(qerr_tokenizer_decode(t, ids, n, 0, &back, NULL), QERR_OK);
            assert_string_equal(back, s); /* the dummy prefix is dropped again */
            qerr_free(back);
            qerr_free(ids);
        }
        qerr_tokenizer_free(t);
    }
}

/* ---- refused and malformed tokenizers ---------------------------------------- */
static void expect_fail(const char *json, int code, const char *needle) {
    qerr_tokenizer *t = (qerr_tokenizer *)1;
    const char *path = write_text("bad.json", json);
    int rc = qerr_tokenizer_load(&t, path);
    if (rc != code || !strstr(qerr_last_error(), needle))
        print_message("rc %d, message: %s (wanted %d with \"%s\")\n", rc, qerr_last_error(), code, needle);
    assert_int_equal(rc, code);
    assert_null(t);
    assert_non_null(strstr(qerr_last_error(), needle));
}

#define MODEL_OK "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}"

static void unsupported_named(void **state) {
    (void)state;
    expect_fail("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}}", QERR_E_UNSUPPORTED, "WordPiece");
    expect_fail("{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",0.0]]}}", QERR_E_UNSUPPORTED, "Unigram");
    expect_fail("{\"normalizer\":{\"type\":\"BertNormalizer\"}," MODEL_OK "}", QERR_E_UNSUPPORTED, "BertNormalizer");
    expect_fail("{\"pre_tokenizer\":{\"type\":\"Whitespace\"}," MODEL_OK "}", QERR_E_UNSUPPORTED, "Whitespace");
    expect_fail("{\"decoder\":{\"type\":\"WordPiece\"}," MODEL_OK "}", QERR_E_UNSUPPORTED, "WordPiece");
    expect_fail("{\"post_processor\":{\"type\":\"BertProcessing\"}," MODEL_OK "}", QERR_E_UNSUPPORTED, "BertProcessing");
    expect_fail("{\"model\":{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":{\"a\":0},\"merges\":[]}}", QERR_E_UNSUPPORTED, "dropout");
    expect_fail("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?<x\"},\"behavior\":\"Isolated\"}," MODEL_OK "}",
                QERR_E_UNSUPPORTED, "pattern");
}

static void malformed(void **state) {
    (void)state;
    expect_fail("", QERR_E_FORMAT, "empty");
    expect_fail("{", QERR_E_FORMAT, "JSON");
    expect_fail("{\"x\":1}", QERR_E_FORMAT, "model");
    expect_fail("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a q\"]}}", QERR_E_FORMAT, "not in the vocabulary");
    expect_fail("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}", QERR_E_FORMAT, "id");
    expect_fail("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a\"]}}", QERR_E_FORMAT, "merge");
    expect_fail("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}", QERR_E_FORMAT, "vocab");
    expect_fail("{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
                QERR_E_FORMAT, "byte");
    /* llama2.c: truncated record, absurd lengths, too few tokens */
    unsigned char bin[64] = {16, 0, 0, 0, 0, 0, 0, 0, 200, 0, 0, 0};
    qerr_tokenizer *t = NULL;
    assert_int_equal(qerr_tokenizer_load(&t, write_file("t.bin", bin, 12)), QERR_E_FORMAT);
    assert_int_equal(qerr_tokenizer_load(&t, write_file("t.bin", bin, 7)), QERR_E_FORMAT);
    bin[8] = 1;
    bin[12] = 'x';
    assert_int_equal(qerr_tokenizer_load(&t, write_file("t.bin", bin, 13)), QERR_E_FORMAT);
    assert_non_null(strstr(qerr_last_error(), "fewer"));
    assert_null(t);
    /* a directory without a tokenizer */
    assert_int_equal(qerr_tokenizer_load(&t, tmpdir), QERR_E_NOT_FOUND);
    assert_int_equal(qerr_tokenizer_load(&t, "/nonexistent/tokenizer.json"), QERR_E_IO);
    assert_int_equal(qerr_tokenizer_load(NULL, "x"), QERR_E_INVALID_ARG);
}

/* The normalizer runs utf8proc only around non-ASCII runs: the same as
 * normalizing the whole text, on random mixes of ASCII, combining marks,
 * precomposed letters, Hangul jamo and compatibility characters. */
static void normal_forms_by_spans(void **state) {
    (void)state;
    static const char *const parts[] = {"a", "e", "A", " ", "x\n", "\xCC\x81", "\xCC\xA3", "\xCC\x88",
                                        "\xC3\xA9", "\xE2\x84\xAB", "\xEA\xB0\x80", "\xE1\x86\xA8",
                                        "\xE1\x84\x80", "\xE1\x85\xA1", "\xEF\xAC\x81", "\xE2\x91\xA0"};
    static const char *const forms[] = {"NFC", "NFD", "NFKC", "NFKD"};
    static const int opts[] = {UTF8PROC_COMPOSE, UTF8PROC_DECOMPOSE, UTF8PROC_COMPOSE | UTF8PROC_COMPAT,
                               UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT};
    for (int f = 0; f < 4; f++) {
        char json[256];
        snprintf(json, sizeof json, "{\"normalizer\":{\"type\":\"%s\"}," MODEL_OK "}", forms[f]);
        qerr_tokenizer *t = NULL;
        assert_int_equal(qerr_tokenizer_load(&t, write_text("nf.json", json)), QERR_OK);
        for (int rep = 0; rep < 300; rep++) {
            char s[400] = "";
            int k = (int)(rnd() % 40);
            for (int i = 0; i < k; i++) strcat(s, parts[rnd() % (sizeof parts / sizeof parts[0])]);
            char *got = NULL;
            size_t gn = 0;
            assert_int_equal(qerr__normalize(t, s, strlen(s), true, &got, &gn), QERR_OK);
            utf8proc_uint8_t *want = NULL;
            utf8proc_ssize_t wn = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)strlen(s),
                                               &want, (utf8proc_option_t)(UTF8PROC_STABLE | opts[f]));
            assert_true(wn >= 0);
            assert_int_equal(gn, (size_t)wn);
            assert_memory_equal(got, want, gn);
            free(got);
            free(want);
        }
        qerr_tokenizer_free(t);
    }
}

/* ---- text files ----------------------------------------------------------------- */
static qerr_tokenizer *toy_with_bos(void) {
    const char *json =
        "{\"added_tokens\":[{\"id\":3,\"content\":\"<s>\",\"special\":true},"
        "{\"id\":4,\"content\":\"</s>\",\"special\":true}],"
        "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
        "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[3]}}},"
        "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"\\n\":5,\" \":6},\"merges\":[\"a b\"]}}";
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(json, f);
    fclose(f);
    qerr_tokenizer *t = NULL;
    assert_int_equal(qerr_tokenizer_load(&t, tmpdir), QERR_OK);
    assert_int_equal(qerr_tokenizer_bos_id(t), 3);
    assert_int_equal(qerr_tokenizer_eos_id(t), -1);
    return t;
}

static void expect_ids(const qerr_tokenizer *t, const char *file, const char *content, unsigned flags,
                       const uint32_t *want, int64_t wn, int64_t want_bytes) {
    const char *path = write_text(file, content);
    uint32_t *ids = NULL;
    int64_t n = 0, bytes = -1;
    int rc = qerr_tokenizer_encode_file(t, path, flags, &ids, &n, &bytes);
    if (rc != QERR_OK) print_message("%s\n", qerr_last_error());
    assert_int_equal(rc, QERR_OK);
    assert_int_equal(n, wn);
    assert_memory_equal(ids, want, (size_t)wn * 4);
    assert_int_equal(bytes, want_bytes);
    qerr_free(ids);
}

static void text_files(void **state) {
    (void)state;
    qerr_tokenizer *t = toy_with_bos();
    const unsigned ADD = QERR_TOKENIZE_ADD_SPECIAL | QERR_TOKENIZE_PARSE_SPECIAL;
    expect_ids(t, "plain.txt", "ab a\nb<s>", ADD, (const uint32_t[]){3, 2, 6, 0, 5, 1, 3}, 7, 9);
    expect_ids(t, "plain2.txt", "ab a\nb<s>", 0, (const uint32_t[]){2, 6, 0, 5, 1}, 5, 9);
    /* JSON Lines: by extension or by content; one BOS per document */
    expect_ids(t, "d.jsonl", "{\"text\":\"ab\"}\n\n{\"text\":\"b a\",\"id\":7}\n", ADD,
               (const uint32_t[]){3, 2, 3, 1, 6, 0}, 6, 5);
    expect_ids(t, "d.txt", "{\"text\": \"a\\nb\"}\r\n{\"text\":\"\"}", ADD, (const uint32_t[]){3, 0, 5, 1, 3}, 5, 3);
    /* characters without a token, no unknown token, no byte fallback: dropped,
     * as by the reference (found by fuzz_tokenizer_json: a word of no ids) */
    expect_ids(t, "drop.txt", "<>", 0, (const uint32_t[]){0}, 0, 2);
    /* a text that merely starts with a brace is plain text */
    expect_ids(t, "brace.txt", "{a", 0, (const uint32_t[]){0}, 1, 2);
    uint32_t *ids = NULL;
    int64_t n = 0;
    const char *p = write_text("nokey.jsonl", "{\"text\":\"a\"}\n{\"content\":\"b\"}\n");
    assert_int_equal(qerr_tokenizer_encode_file(t, p, 0, &ids, &n, NULL), QERR_E_FORMAT);
    assert_non_null(strstr(qerr_last_error(), "line 2"));
    assert_non_null(strstr(qerr_last_error(), "\"text\""));
    p = write_text("badjson.jsonl", "{\"text\":\"a\"}\n{\"text\":\n");
    assert_int_equal(qerr_tokenizer_encode_file(t, p, 0, &ids, &n, NULL), QERR_E_FORMAT);
    assert_non_null(strstr(qerr_last_error(), "line 2"));
    p = write_text("empty.txt", "");
    assert_int_equal(qerr_tokenizer_encode_file(t, p, 0, &ids, &n, NULL), QERR_E_FORMAT);
    assert_non_null(strstr(qerr_last_error(), "empty"));
    p = write_text("blank.jsonl", "\n\n");
    assert_int_equal(qerr_tokenizer_encode_file(t, p, 0, &ids, &n, NULL), QERR_E_FORMAT);
    assert_int_equal(qerr_tokenizer_encode_file(t, "/nonexistent.txt", 0, &ids, &n, NULL), QERR_E_IO);
    assert_null(ids);
    /* in memory: empty text, NULL arguments, unknown flags */
    assert_int_equal(qerr_tokenizer_encode(t, "", 0, ADD, &ids, &n), QERR_OK);
    assert_int_equal(n, 1);
    qerr_free(ids);
    assert_int_equal(qerr_tokenizer_encode(t, NULL, 0, 0, &ids, &n), QERR_OK);
    assert_int_equal(n, 0);
    qerr_free(ids);
    assert_int_equal(qerr_tokenizer_encode(t, NULL, 3, 0, &ids, &n), QERR_E_INVALID_ARG);
    assert_int_equal(qerr_tokenizer_encode(t, "a", 1, 64, &ids, &n), QERR_E_INVALID_ARG);
    assert_int_equal(qerr_tokenizer_encode(NULL, "a", 1, 0, &ids, &n), QERR_E_INVALID_ARG);
    char *s = NULL;
    assert_int_equal(qerr_tokenizer_decode(t, NULL, 1, 0, &s, NULL), QERR_E_INVALID_ARG);
    assert_int_equal(qerr_tokenizer_vocab_size(NULL), -1);
    qerr_tokenizer_free(t);
}

/* A 100 MB line (WikiText-2 with its line feeds made spaces, repeated) in
 * one plain text file: encoded in one document, decoded back unchanged. */
static void hundred_mb_line(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(dir);
#if defined(__SANITIZE_ADDRESS__)
    const size_t target = (size_t)10 << 20; /* sanitizers are ~10x slower */
#else
    const size_t target = (size_t)100 << 20;
#endif
    char path[1024];
    snprintf(path, sizeof path, "%s/text/wikitext-2-raw-test.txt", dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char chunk[1 << 21];
    size_t cn = fread(chunk, 1, sizeof chunk, f);
    fclose(f);
    for (size_t i = 0; i < cn; i++)
        if (chunk[i] == '\n' || chunk[i] == '\r') chunk[i] = ' ';
    char *line = malloc(target);
    assert_non_null(line);
    for (size_t at = 0; at < target; at += cn) memcpy(line + at, chunk, at + cn <= target ? cn : target - at);
    /* do not end inside a UTF-8 sequence */
    size_t n = target;
    while (n && ((unsigned char)line[n - 1] & 0xC0) == 0x80) n--;
    if (n && (unsigned char)line[n - 1] >= 0xC0) n--;
    const char *file = write_file("line.txt", line, n);
    static const char *const toks[] = {"tokenizers/llama3", "tokenizers/llama2"};
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, toks[k]);
        qerr_tokenizer *t = NULL;
        assert_int_equal(qerr_tokenizer_load(&t, path), QERR_OK);
        uint32_t *ids = NULL;
        int64_t count = 0, bytes = 0;
        assert_int_equal(qerr_tokenizer_encode_file(t, file, 0, &ids, &count, &bytes), QERR_OK);
        assert_int_equal(bytes, (int64_t)n);
        print_message("%s: %zu bytes on one line -> %lld ids\n", toks[k], n, (long long)count);
        assert_true(count > (int64_t)(n / 8) && count < (int64_t)n);
        char *back = NULL;
        size_t bn = 0;
        assert_int_equal(qerr_tokenizer_decode(t, ids, count, 0, &back, &bn), QERR_OK);
        assert_int_equal(bn, n);
        assert_memory_equal(back, line, n);
        qerr_free(back);
        qerr_free(ids);
        qerr_tokenizer_free(t);
    }
    unlink(file);
    free(line);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bpe_matches_naive), cmocka_unit_test(llama2c_matches_naive),
        cmocka_unit_test(unsupported_named), cmocka_unit_test(malformed),
        cmocka_unit_test(normal_forms_by_spans), cmocka_unit_test(text_files),
        cmocka_unit_test(hundred_mb_line),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
