/* Tokenizers against Hugging Face's reference (tokenizers.js, whose ids the
 * Rust tokenizers reproduce): every id of WikiText-2 and TinyStories for the
 * LLaMA-2, Llama-3, Qwen3 and tinystories-656k tokenizers, llama2.c's
 * encoder for stories260k, special tokens, NFC, whitespace, long runs and
 * invalid UTF-8 (tests/golden/tokenizer_cases.inc), and decode(encode(x)). */
#include "testutil.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)len + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)len, f), (size_t)len);
    s[len] = '\0';
    fclose(f);
    *n = (size_t)len;
    return s;
}

static qerr_tokenizer *load(const char *dir, const char *rel) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    qerr_tokenizer *t = NULL;
    int rc = qerr_tokenizer_load(&t, path);
    if (rc != QERR_OK) print_message("%s: %s\n", path, qerr_last_error());
    assert_int_equal(rc, QERR_OK);
    return t;
}

/* Encode a whole text file in one call, as the golden ids were made; then
 * decode it back: the same text, unless the tokenizer lacks byte fallback
 * and some characters became the unknown token. */
static void golden_ex(const char *tok_dir, const char *text_file, const char *ids_file,
                      bool lossless) {

    TU_REQUIRE_SHARED(dir);
    qerr_tokenizer *t = load(dir, tok_dir);
    char path[1024];
    snprintf(path, sizeof path, "%s/text/%s", dir, text_file);
    size_t n;
    char *text = slurp(path, &n);
    snprintf(path, sizeof path, "%s/%s", dir, ids_file);
    uint32_t *want = NULL, *got = NULL;
    int64_t wn = 0, gn = 0;
    assert_int_equal(qerr_tokens_read(path, &want, &wn), QERR_OK);
    assert_int_equal(qerr_tokenizer_encode(t, text, n, QERR_TOKENIZE_PARSE_SPECIAL, &got, &gn),
                     QERR_OK);
    int64_t same = 0;
    while (same < wn && same < gn && want[same] == got[same]) same++;
    print_message("%s on %s: %lld of %lld golden ids equal (%lld produced)\n", tok_dir, text_file,
                  (long long)same, (long long)wn, (long long)gn);
    assert_int_equal(gn, wn);
    assert_int_equal(same, wn);
    char *back = NULL;
    size_t bn = 0;
    assert_int_equal(qerr_tokenizer_decode(t, got, gn, 0, &back, &bn), QERR_OK);
    if (lossless) {
        assert_int_equal(bn, n); /* these texts are NFC already */
        assert_memory_equal(back, text, n);
    } else {
        bool unk = false;
        for (int64_t i = 0; i < gn && !unk; i++) unk = got[i] == 0;
        assert_true(unk && (bn != n || memcmp(back, text, n) != 0));
    }
    qerr_free(back);
    qerr_free(want);
    qerr_free(got);
    free(text);
    qerr_tokenizer_free(t);
}

static void golden(const char *tok_dir, const char *text_file, const char *ids_file) {
    golden_ex(tok_dir, text_file, ids_file, true);
}

static void llama2_wikitext(void **s) { (void)s; golden("tokenizers/llama2", "wikitext-2-raw-test.txt", "tokenizers/llama2/wikitext-2-raw-test.u32"); }
static void llama2_tinystories(void **s) { (void)s; golden("tokenizers/llama2", "tinystories_valid_sample.txt", "tokenizers/llama2/tinystories_valid_sample.u32"); }
static void llama3_wikitext(void **s) { (void)s; golden("tokenizers/llama3", "wikitext-2-raw-test.txt", "tokenizers/llama3/wikitext-2-raw-test.u32"); }
static void llama3_tinystories(void **s) { (void)s; golden("tokenizers/llama3", "tinystories_valid_sample.txt", "tokenizers/llama3/tinystories_valid_sample.u32"); }
static void qwen3_wikitext(void **s) { (void)s; golden("tokenizers/qwen3", "wikitext-2-raw-test.txt", "tokenizers/qwen3/wikitext-2-raw-test.u32"); }
static void qwen3_tinystories(void **s) { (void)s; golden("tokenizers/qwen3", "tinystories_valid_sample.txt", "tokenizers/qwen3/tinystories_valid_sample.u32"); }
/* tinystories-656k has no byte tokens: WikiText's rarer characters are <unk> */
static void ts656k_wikitext(void **s) { (void)s; golden_ex("tinystories-656k", "wikitext-2-raw-test.txt", "tinystories-656k/wikitext-2-raw-test.hf.u32", false); }
static void ts656k_tinystories(void **s) { (void)s; golden("tinystories-656k", "tinystories_valid_sample.txt", "tinystories-656k/tinystories_valid_sample.hf.u32"); }

/* eval.u32 of the two story models: one story per line, BOS (the
 * tokenizer's rule) + ids (+ EOS for tinystories-656k, added by hand). */
static void story_files(const char *tok_rel, const char *model, bool eos) {
    TU_REQUIRE_SHARED(dir);
    qerr_tokenizer *t = load(dir, tok_rel);
    char path[1024];
    snprintf(path, sizeof path, "%s/text/tinystories_valid_sample.txt", dir);
    size_t n;
    char *text = slurp(path, &n);
    snprintf(path, sizeof path, "%s/%s/eval.u32", dir, model);
    uint32_t *want = NULL;
    int64_t wn = 0, at = 0, stories = 0;
    assert_int_equal(qerr_tokens_read(path, &want, &wn), QERR_OK);
    for (char *line = text; line < text + n;) {
        char *nl = memchr(line, '\n', (size_t)(text + n - line));
        size_t len = nl ? (size_t)(nl - line) : (size_t)(text + n - line);
        uint32_t *ids = NULL;
        int64_t k = 0;
        assert_int_equal(qerr_tokenizer_encode(t, line, len, QERR_TOKENIZE_ADD_SPECIAL, &ids, &k),
                         QERR_OK);
        assert_true(at + k + (eos ? 1 : 0) <= wn);
        assert_memory_equal(want + at, ids, (size_t)k * sizeof *ids);
        at += k;
        if (eos) assert_int_equal(want[at++], (uint32_t)qerr_tokenizer_eos_id(t));
        stories++;
        qerr_free(ids);
        line += len + 1;
    }
    print_message("%s: %lld stories, %lld of %lld ids equal\n", model, (long long)stories,
                  (long long)at, (long long)wn);
    assert_int_equal(at, wn);
    qerr_free(want);
    free(text);
    qerr_tokenizer_free(t);
}

static void stories260k_eval(void **s) { (void)s; story_files("stories260k/tok512.bin", "stories260k", false); }
static void ts656k_eval(void **s) { (void)s; story_files("tinystories-656k", "tinystories-656k", true); }

/* llama2.c's decoder on its own published sample. */
static void stories260k_decode(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(dir);
    qerr_tokenizer *t = load(dir, "stories260k/tok512.bin");
    assert_int_equal(qerr_tokenizer_vocab_size(t), 512);
    char path[1024];
    snprintf(path, sizeof path, "%s/stories260k/golden_greedy.u32", dir);
    uint32_t *ids = NULL;
    int64_t k = 0;
    assert_int_equal(qerr_tokens_read(path, &ids, &k), QERR_OK);
    snprintf(path, sizeof path, "%s/stories260k/golden_greedy.txt", dir);
    size_t n;
    char *want = slurp(path, &n);
    char *got = NULL;
    size_t gn = 0;
    assert_int_equal(qerr_tokenizer_decode(t, ids, k, QERR_DETOKENIZE_SKIP_SPECIAL, &got, &gn),
                     QERR_OK);
    while (n && (want[n - 1] == '\n')) n--; /* the file ends with a newline */
    while (gn && got[gn - 1] == '\n') gn--;
    print_message("decoded %zu bytes: %.60s...\n", gn, got);
    assert_int_equal(gn, n);
    assert_memory_equal(got, want, n);
    qerr_free(got);
    free(want);
    qerr_free(ids);
    qerr_tokenizer_free(t);
}

typedef struct {
    const char *tok, *name, *bytes;
    size_t len;
    int add_special;
    int64_t n_ids;
    const uint32_t *ids;
} ref_case;

static const ref_case cases[] = {
#include "golden/tokenizer_cases.inc"
};

static void reference_cases(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(dir);
    static const struct { const char *name, *rel; } dirs[] = {
        {"llama2", "tokenizers/llama2"}, {"llama3", "tokenizers/llama3"},
        {"qwen3", "tokenizers/qwen3"}, {"ts656k", "tinystories-656k"}};
    int failures = 0, total = 0;
    for (size_t d = 0; d < sizeof dirs / sizeof dirs[0]; d++) {
        qerr_tokenizer *t = load(dir, dirs[d].rel);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            const ref_case *c = &cases[i];
            if (strcmp(c->tok, dirs[d].name) != 0) continue;
            unsigned flags = QERR_TOKENIZE_PARSE_SPECIAL | (c->add_special ? QERR_TOKENIZE_ADD_SPECIAL : 0);
            uint32_t *ids = NULL;
            int64_t n = 0;
            assert_int_equal(qerr_tokenizer_encode(t, c->bytes, c->len, flags, &ids, &n), QERR_OK);
            bool ok = n == c->n_ids && (n == 0 || memcmp(ids, c->ids, (size_t)n * 4) == 0);
            if (!ok) {
                print_message("%s/%s: %lld ids, reference %lld:", c->tok, c->name, (long long)n,
                              (long long)c->n_ids);
                for (int64_t k = 0; k < n && k < 40; k++) print_message(" %u", ids[k]);
                print_message("\n");
                failures++;
            }
            total++;
            qerr_free(ids);
        }
        qerr_tokenizer_free(t);
    }
    print_message("%d of %d reference cases equal\n", total - failures, total);
    assert_int_equal(failures, 0);
}

/* Special tokens are parsed only on request; BOS/EOS follow each tokenizer's
 * rules; decode can leave special tokens out. */
static void special_tokens(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(dir);
    qerr_tokenizer *t = load(dir, "tokenizers/llama3");
    assert_int_equal(qerr_tokenizer_vocab_size(t), 128256);
    assert_int_equal(qerr_tokenizer_bos_id(t), 128000);
    const char *s = "<|begin_of_text|>Hi";
    uint32_t *ids = NULL;
    int64_t n = 0;
    assert_int_equal(qerr_tokenizer_encode(t, s, strlen(s), QERR_TOKENIZE_PARSE_SPECIAL, &ids, &n), QERR_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 128000);
    char *back = NULL;
    assert_int_equal(qerr_tokenizer_decode(t, ids, n, 0, &back, NULL), QERR_OK);
    assert_string_equal(back, s);
    qerr_free(back);
    assert_int_equal(qerr_tokenizer_decode(t, ids, n, QERR_DETOKENIZE_SKIP_SPECIAL, &back, NULL), QERR_OK);
    assert_string_equal(back, "Hi");
    qerr_free(back);
    qerr_free(ids);
    /* not parsed: plain text, no id of an added token */
    assert_int_equal(qerr_tokenizer_encode(t, s, strlen(s), 0, &ids, &n), QERR_OK);
    assert_true(n > 2);
    for (int64_t k = 0; k < n; k++) assert_true(ids[k] < 128000);
    assert_int_equal(qerr_tokenizer_decode(t, ids, n, 0, &back, NULL), QERR_OK);
    assert_string_equal(back, s);
    qerr_free(back);
    qerr_free(ids);
    size_t len = 0;
    int special = 0;
    const char *txt = qerr_tokenizer_token_text(t, 128001, &len, &special);
    assert_non_null(txt);
    assert_int_equal(special, 1);
    assert_memory_equal(txt, "<|end_of_text|>", len);
    assert_null(qerr_tokenizer_token_text(t, 128256, &len, NULL));
    uint32_t badid = 128256;
    assert_int_equal(qerr_tokenizer_decode(t, &badid, 1, 0, &back, NULL), QERR_E_RANGE);
    qerr_tokenizer_free(t);
    /* LLaMA-2: BOS from tokenizer_config; Qwen3: none */
    t = load(dir, "tokenizers/llama2");
    assert_int_equal(qerr_tokenizer_encode(t, "x", 1, QERR_TOKENIZE_ADD_SPECIAL, &ids, &n), QERR_OK);
    assert_true(n >= 2 && ids[0] == 1);
    qerr_free(ids);
    qerr_tokenizer_free(t);
    t = load(dir, "tokenizers/qwen3");
    assert_int_equal(qerr_tokenizer_encode(t, "x", 1, QERR_TOKENIZE_ADD_SPECIAL, &ids, &n), QERR_OK);
    assert_int_equal(n, 1);
    qerr_free(ids);
    qerr_tokenizer_free(t);
}

/* Invalid UTF-8 reads as U+FFFD per maximal invalid subsequence; the
 * decoded text is then the repaired text. */
static void invalid_utf8(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(dir);
    static const struct { const char *bad, *good; } pairs[] = {
        {"a\xFF" "b", "a\xEF\xBF\xBD" "b"},
        {"\xE2\x82", "\xEF\xBF\xBD"},
        {"\xF0\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
        {"\xED\xA0\x80x", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDx"},
        {"\xC0\xAF", "\xEF\xBF\xBD\xEF\xBF\xBD"},
        {"ok\xF4\x8F\xBF", "ok\xEF\xBF\xBD"},
    };
    static const char *const toks[] = {"tokenizers/llama2", "tokenizers/llama3", "tokenizers/qwen3",
                                       "stories260k/tok512.bin"};
    for (size_t k = 0; k < 4; k++) {
        qerr_tokenizer *t = load(dir, toks[k]);
        for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
            uint32_t *a = NULL, *b = NULL;
            int64_t na = 0, nb = 0;
            assert_int_equal(qerr_tokenizer_encode(t, pairs[i].bad, strlen(pairs[i].bad), 0, &a, &na), QERR_OK);
            assert_int_equal(qerr_tokenizer_encode(t, pairs[i].good, strlen(pairs[i].good), 0, &b, &nb), QERR_OK);
            assert_int_equal(na, nb);
            assert_memory_equal(a, b, (size_t)na * 4);
            char *back = NULL;
            assert_int_equal(qerr_tokenizer_decode(t, a, na, 0, &back, NULL), QERR_OK);
            assert_string_equal(back, pairs[i].good);
            qerr_free(back);
            qerr_free(a);
            qerr_free(b);
        }
        qerr_tokenizer_free(t);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(llama2_wikitext),    cmocka_unit_test(llama2_tinystories),
        cmocka_unit_test(llama3_wikitext),    cmocka_unit_test(llama3_tinystories),
        cmocka_unit_test(qwen3_wikitext),     cmocka_unit_test(qwen3_tinystories),
        cmocka_unit_test(ts656k_wikitext),    cmocka_unit_test(ts656k_tinystories),
        cmocka_unit_test(stories260k_eval),   cmocka_unit_test(ts656k_eval),
        cmocka_unit_test(stories260k_decode), cmocka_unit_test(reference_cases),
        cmocka_unit_test(special_tokens),     cmocka_unit_test(invalid_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
