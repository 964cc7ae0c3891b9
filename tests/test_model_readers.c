/* Every reader of untrusted input (JSON, safetensors, config.json, token
 * files, model directories) answers bad input with a status and a message. */
#include "testutil.h"
#include "model_testutil.h"
#include "llama/model.h"

/* A safetensors image from header text and `data_len` zero data bytes. */
static uint8_t *raw_image(const char *header, size_t data_len, size_t *len) {
    size_t hl = strlen(header);
    *len = 8 + hl + data_len;
    uint8_t *b = calloc(1, *len);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    return b;
}

static int parse_raw(const char *header, size_t data_len) {
    size_t len;
    uint8_t *b = raw_image(header, data_len, &len);
    qerr_st_file f;
    int rc = qerr__st_parse(b, len, "test.safetensors", &f);
    if (rc == QERR_OK) qerr__st_close(&f);
    else assert_true(strlen(qerr_last_error()) > 0);
    free(b);
    return rc;
}

static void safetensors_valid_and_metadata(void **state) {
    (void)state;
    assert_int_equal(parse_raw("{\"__metadata__\":{\"format\":\"pt\"},"
                               "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                               "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[16,22]}}",
                               22),
                     QERR_OK);
    assert_int_equal(parse_raw("{}", 0), QERR_OK);
    /* zero-sized tensor */
    assert_int_equal(parse_raw("{\"z\":{\"dtype\":\"F16\",\"shape\":[0,5],\"data_offsets\":[0,0]}}", 0),
                     QERR_OK);
}

static void safetensors_bad_offsets(void **state) {
    (void)state;
    /* outside the data section */
    assert_int_equal(parse_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8),
                     QERR_E_FORMAT);
    assert_non_null(strstr(qerr_last_error(), "outside"));
    /* overlapping */
    assert_int_equal(parse_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12),
                     QERR_E_FORMAT);
    assert_non_null(strstr(qerr_last_error(), "overlaps"));
    /* hole and trailing bytes */
    assert_int_equal(parse_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8),
                     QERR_E_FORMAT);
    assert_int_equal(parse_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8),
                     QERR_E_FORMAT);
    /* reversed, negative, non-integer offsets */
    assert_int_equal(parse_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8),
                     QERR_E_FORMAT);
    assert_int_equal(parse_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 8),
                     QERR_E_FORMAT);
    assert_int_equal(parse_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.5]}}", 8),
                     QERR_E_FORMAT);
    /* byte count does not match the shape */
    assert_int_equal(parse_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8),
                     QERR_E_FORMAT);
}

static void safetensors_bad_dtype_and_dims(void **state) {
    (void)state;
    assert_int_equal(parse_raw("{\"a\":{\"dtype\":\"Q9\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                     QERR_E_FORMAT);
    assert_non_null(strstr(qerr_last_error(), "unknown dtype"));
    assert_int_equal(parse_raw("{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8),
                     QERR_E_UNSUPPORTED);
    /* I32 parses (GPTQ packed tensors); the model loader decides what to do */
    assert_int_equal(parse_raw("{\"a\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                     QERR_OK);
    assert_int_equal(parse_raw("{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                     QERR_E_FORMAT);
    /* absurd dims: overflowing product, huge single dim, negative, too many */
    assert_int_equal(parse_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],"
                               "\"data_offsets\":[0,4]}}", 4),
                     QERR_E_FORMAT);
    assert_int_equal(parse_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],"
                               "\"data_offsets\":[0,4]}}", 4),
                     QERR_E_FORMAT);
    assert_int_equal(parse_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4),
                     QERR_E_FORMAT);
    assert_int_equal(parse_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],"
                               "\"data_offsets\":[0,4]}}", 4),
                     QERR_E_UNSUPPORTED);
    /* missing or extra keys */
    assert_int_equal(parse_raw("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4),
                     QERR_E_FORMAT);
    assert_int_equal(parse_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],"
                               "\"x\":1}}", 4),
                     QERR_E_FORMAT);
    assert_int_equal(parse_raw("{\"__metadata__\":{\"k\":1}}", 0), QERR_E_FORMAT);
    assert_int_equal(parse_raw("[1,2]", 0), QERR_E_FORMAT);
}

static void safetensors_bad_names(void **state) {
    (void)state;
    assert_int_equal(parse_raw("{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                     QERR_E_FORMAT);
    assert_non_null(strstr(qerr_last_error(), "UTF-8"));
    assert_int_equal(parse_raw("{\"\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                     QERR_E_FORMAT); /* overlong */
    assert_int_equal(parse_raw("{\"\\ud800\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                     QERR_E_FORMAT); /* lone surrogate */
    assert_int_equal(parse_raw("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                     QERR_E_FORMAT);
    assert_int_equal(parse_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8),
                     QERR_E_FORMAT); /* duplicate */
    /* valid multi-byte UTF-8 is fine */
    assert_int_equal(parse_raw("{\"w\xc3\xa9ight\xe2\x82\xac\":{\"dtype\":\"F32\",\"shape\":[1],"
                               "\"data_offsets\":[0,4]}}", 4),
                     QERR_OK);
}

static void safetensors_truncated_and_header_length(void **state) {
    (void)state;
    const float v[4] = {1, 2, 3, 4};
    const mt_tensor t[2] = {{"x", "F32", 1, {2}, v, 8}, {"y", "F32", 2, {1, 2}, v + 2, 8}};
    size_t len;
    uint8_t *img = mt_safetensors(t, 2, "{\"format\":\"pt\"}", &len);
    qerr_st_file f;
    assert_int_equal(qerr__st_parse(img, len, "ok", &f), QERR_OK);
    qerr__st_close(&f);
    for (size_t cut = 0; cut < len; cut++) { /* every truncation fails cleanly */
        uint8_t *b = malloc(cut ? cut : 1);
        memcpy(b, img, cut);
        assert_int_equal(qerr__st_parse(b, cut, "cut", &f), QERR_E_FORMAT);
        assert_true(strlen(qerr_last_error()) > 0);
        free(b);
    }
    /* header length beyond the file, and absurdly large */
    uint8_t *b = malloc(len);
    memcpy(b, img, len);
    b[0] = (uint8_t)(len + 1);
    b[1] = 0;
    assert_int_equal(qerr__st_parse(b, len, "long", &f), QERR_E_FORMAT);
    assert_non_null(strstr(qerr_last_error(), "past the end"));
    memset(b, 0xff, 8);
    assert_int_equal(qerr__st_parse(b, len, "huge", &f), QERR_E_FORMAT);
    /* every single-byte corruption: a status, never a crash */
    for (size_t i = 0; i < len; i++) {
        memcpy(b, img, len);
        b[i] ^= 0x5a;
        int rc = qerr__st_parse(b, len, "flip", &f);
        if (rc == QERR_OK) qerr__st_close(&f);
        else assert_true(rc == QERR_E_FORMAT || rc == QERR_E_UNSUPPORTED);
    }
    free(b);
    free(img);
}

static int json(const char *s) {
    qerr_json *j = NULL;
    int rc = qerr__json_parse(s, strlen(s), "test.json", &j);
    if (rc != QERR_OK) {
        assert_null(j);
        assert_true(strlen(qerr_last_error()) > 0);
    }
    qerr__json_free(j);
    return rc;
}

static void json_strict(void **state) {
    (void)state;
    const char *good[] = {"{}", "[]", " 1 ", "-0.5e+3", "\"a\\u00e9\\ud83d\\ude00\\n\"",
                          "{\"a\":[true,false,null,{\"b\":\"c\"}]}", "123456789012345678901234"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) assert_int_equal(json(good[i]), QERR_OK);
    const char *bad[] = {"", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "01", "1.", ".5",
                         "1e", "-", "tru", "nul", "[1] x", "\"abc", "\"\\x\"", "\"\\u12\"",
                         "\"\\ud800\"", "\"\\udc00\"", "\"\\u0000\"", "\"a\tb\"",
                         "{\"a\":1,\"a\":2}", "1e999", "'a'", "[1 2]", "\"\xff\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (json(bad[i]) != QERR_E_FORMAT) fail_msg("accepted bad JSON: %s", bad[i]);
    }
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    qerr_json *j = NULL;
    assert_int_equal(qerr__json_parse(deep, 200, "deep", &j), QERR_E_FORMAT);
    assert_non_null(strstr(qerr_last_error(), "deep"));
    /* values come back right */
    assert_int_equal(qerr__json_parse("{\"n\":-42,\"x\":0.25,\"s\":\"\\u00e9\"}", 31, "v", &j), QERR_OK);
    assert_true(qerr__json_get(j, "n")->is_int && qerr__json_get(j, "n")->integer == -42);
    assert_false(qerr__json_get(j, "x")->is_int);
    assert_true(qerr__json_get(j, "x")->number == 0.25);
    assert_string_equal(qerr__json_get(j, "s")->str, "\xc3\xa9");
    assert_null(qerr__json_get(j, "missing"));
    qerr__json_free(j);
}

static const char BASE_CONFIG[] =
    "{\"hidden_size\": 8, \"intermediate_size\": 8, \"num_hidden_layers\": 1,"
    " \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"vocab_size\": 4%s}";

static int config_rc(const char *text) {
    qerr_json *j;
    QERR_TRY(qerr__json_parse(text, strlen(text), "config.json", &j));
    qerr_model_config c;
    int rc = qerr__config_from_json(j, "config.json", &c);
    qerr__json_free(j);
    return rc;
}

static void config_keys(void **state) {
    (void)state;
    char buf[512];
    snprintf(buf, sizeof buf, BASE_CONFIG, "");
    assert_int_equal(config_rc(buf), QERR_OK);
    assert_int_equal(config_rc("{\"hidden_size\": 8}"), QERR_E_FORMAT);
    assert_non_null(strstr(qerr_last_error(), "intermediate_size"));
    assert_int_equal(config_rc("{\"hidden_size\": \"8\", \"intermediate_size\": 8}"), QERR_E_FORMAT);
    assert_int_equal(config_rc("{\"hidden_size\": 99999999999, \"intermediate_size\": 8}"),
                     QERR_E_FORMAT);
    snprintf(buf, sizeof buf, BASE_CONFIG, ", \"rms_norm_eps\": -1");
    assert_int_equal(config_rc(buf), QERR_E_FORMAT);
    snprintf(buf, sizeof buf, BASE_CONFIG, ", \"tie_word_embeddings\": 1");
    assert_int_equal(config_rc(buf), QERR_E_FORMAT);
    snprintf(buf, sizeof buf, BASE_CONFIG, ", \"rope_scaling\": {\"type\": \"yarn\"}");
    assert_int_equal(config_rc(buf), QERR_E_UNSUPPORTED);
    assert_int_equal(config_rc("{\"hidden_size\": 9, \"intermediate_size\": 8, \"num_hidden_layers\": 1,"
                               " \"num_attention_heads\": 2, \"vocab_size\": 4}"),
                     QERR_E_FORMAT); /* heads do not divide hidden */
    assert_int_equal(config_rc("[]"), QERR_E_FORMAT);
}

static void model_dir_errors(void **state) {
    (void)state;
    static const char *const files[] = {"config.json", "model.safetensors"};
    char *dir = mt_tempdir();
    assert_non_null(dir);
    qerr_model *m = (qerr_model *)&m;
    assert_int_equal(qerr_model_load(&m, dir), QERR_E_IO); /* no config.json */
    assert_null(m);
    mt_write(dir, "config.json", "{\"hidden_size\": ", 16);
    assert_int_equal(qerr_model_load(&m, dir), QERR_E_FORMAT);
    char cfg[512];
    snprintf(cfg, sizeof cfg, BASE_CONFIG, "");
    mt_write(dir, "config.json", cfg, strlen(cfg));
    assert_int_equal(qerr_model_load(&m, dir), QERR_E_IO); /* no weights */
    float z[64] = {0};
    const mt_tensor t[1] = {{"model.embed_tokens.weight", "F32", 2, {4, 8}, z, 128}};
    size_t len;
    uint8_t *img = mt_safetensors(t, 1, NULL, &len);
    mt_write(dir, "model.safetensors", img, len);
    assert_int_equal(qerr_model_load(&m, dir), QERR_E_FORMAT); /* missing tensors */
    assert_non_null(strstr(qerr_last_error(), "missing"));
    mt_write(dir, "model.safetensors", img, len - 3);
    assert_int_equal(qerr_model_load(&m, dir), QERR_E_FORMAT); /* truncated */
    free(img);
    assert_int_equal(qerr_model_load(NULL, dir), QERR_E_INVALID_ARG);
    assert_int_equal(qerr_model_load(&m, NULL), QERR_E_INVALID_ARG);
    mt_rmdir(dir, files, 2);
}

static void token_files(void **state) {
    (void)state;
    static const char *const files[] = {"t.u32"};
    char *dir = mt_tempdir();
    const uint8_t bytes[9] = {1, 0, 0, 0, 0x78, 0x56, 0x34, 0x12, 7};
    mt_write(dir, "t.u32", bytes, 8);
    char path[1100];
    snprintf(path, sizeof path, "%s/t.u32", dir);
    uint32_t *tok;
    int64_t n;
    assert_int_equal(qerr_tokens_read(path, &tok, &n), QERR_OK);
    assert_int_equal(n, 2);
    assert_int_equal(tok[0], 1);
    assert_int_equal(tok[1], 0x12345678u);
    qerr_free(tok);
    mt_write(dir, "t.u32", bytes, 9);
    assert_int_equal(qerr_tokens_read(path, &tok, &n), QERR_E_FORMAT);
    assert_null(tok);
    mt_write(dir, "t.u32", bytes, 0);
    assert_int_equal(qerr_tokens_read(path, &tok, &n), QERR_OK);
    assert_int_equal(n, 0);
    qerr_free(tok);
    qerr_free(NULL);
    mt_rmdir(dir, files, 1);
    assert_int_equal(qerr_tokens_read("/nonexistent/t.u32", &tok, &n), QERR_E_IO);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(safetensors_valid_and_metadata),
        cmocka_unit_test(safetensors_bad_offsets),
        cmocka_unit_test(safetensors_bad_dtype_and_dims),
        cmocka_unit_test(safetensors_bad_names),
        cmocka_unit_test(safetensors_truncated_and_header_length),
        cmocka_unit_test(json_strict),
        cmocka_unit_test(config_keys),
        cmocka_unit_test(model_dir_errors),
        cmocka_unit_test(token_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
