/* qerr_qmodel and the .qerr container: bit-exact round trips, and a reader
 * that turns every corrupted, truncated or inconsistent file into an error. */
#include "testutil.h"

#include "io/qmodel_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void temp_path(char *buf, size_t cap, const char *tag) {
    const char *dir = getenv("TMPDIR");
    snprintf(buf, cap, "%s/qerr_test_container_%ld_%s.qerr", dir && *dir ? dir : "/tmp",
             (long)getpid(), tag);
}

/* A hand-made result exercising every field: 3-bit codes in rows whose bit
 * length is not a multiple of 8, a permuted g_idx, outliers, two extras and
 * diagnostics including a NaN. */
static qerr_result *full_result(uint64_t seed) {
    const int64_t rows = 5, cols = 21, gs = 8;
    qerr_result *r;
    assert_int_equal(qerr__result_alloc(&r, rows, cols, 3, gs), QERR_OK);
    float noise[5 * 21];
    tu_random(noise, rows * cols, seed);
    for (int64_t i = 0; i < rows * cols; i++) r->codes[i] = (uint8_t)((noise[i] + 1.0f) * 3.99f);
    for (int64_t i = 0; i < rows * r->groups; i++) {
        r->scales[i] = 0.01f + 0.001f * (float)i;
        r->zeros[i] = (int32_t)(i % 8);
    }
    for (int64_t j = 0; j < cols; j++) r->g_idx[j] = (int32_t)((j * 7) % r->groups);
    r->g_idx_trivial = false;
    const int32_t orow[] = {0, 0, 3, 4}, ocol[] = {2, 20, 0, 7};
    const float oval[] = {0.5f, -1.25f, 3.0e-7f, 42.0f};
    assert_int_equal(qerr__result_set_outliers(r, 4, orow, ocol, oval), QERR_OK);
    const int64_t s1[] = {3, 2}, s2[] = {7};
    float d1[6], d2[7];
    tu_random(d1, 6, seed + 1);
    tu_random(d2, 7, seed + 2);
    assert_int_equal(qerr__result_add_extra(r, "rotation", 2, s1, d1), QERR_OK);
    assert_int_equal(qerr__result_add_extra(r, "smooth_\xc3\xa9", 1, s2, d2), QERR_OK);
    qerr__result_set_diag(r, "layer_error", NAN);
    qerr__result_set_diag(r, "damp", 0.01);
    qerr__result_set_diag(r, "seconds", -0.0);
    r->plan = strdup("handmade:bits=3");
    return r;
}

static void assert_results_equal(const qerr_result *a, const qerr_result *b) {
    assert_int_equal(a->rows, b->rows);
    assert_int_equal(a->cols, b->cols);
    assert_int_equal(a->bits, b->bits);
    assert_int_equal(a->group_size, b->group_size);
    assert_int_equal(a->groups, b->groups);
    assert_memory_equal(a->codes, b->codes, (size_t)(a->rows * a->cols));
    assert_memory_equal(a->scales, b->scales, (size_t)(a->rows * a->groups) * 4);
    assert_memory_equal(a->zeros, b->zeros, (size_t)(a->rows * a->groups) * 4);
    assert_memory_equal(a->g_idx, b->g_idx, (size_t)a->cols * 4);
    assert_int_equal(a->g_idx_trivial, b->g_idx_trivial);
    assert_int_equal(a->n_outliers, b->n_outliers);
    if (a->n_outliers) {
        assert_memory_equal(a->out_row, b->out_row, (size_t)a->n_outliers * 4);
        assert_memory_equal(a->out_col, b->out_col, (size_t)a->n_outliers * 4);
        assert_memory_equal(a->out_val, b->out_val, (size_t)a->n_outliers * 4);
    }
    assert_int_equal(a->n_extras, b->n_extras);
    for (int e = 0; e < a->n_extras; e++) {
        assert_string_equal(a->extras[e].name, b->extras[e].name);
        assert_int_equal(a->extras[e].ndim, b->extras[e].ndim);
        int64_t n = 1;
        for (int d = 0; d < a->extras[e].ndim; d++) {
            assert_int_equal(a->extras[e].shape[d], b->extras[e].shape[d]);
            n *= a->extras[e].shape[d];
        }
        assert_memory_equal(a->extras[e].data, b->extras[e].data, (size_t)n * 4);
    }
    assert_int_equal(a->n_diag, b->n_diag);
    for (int d = 0; d < a->n_diag; d++) {
        assert_string_equal(a->diag[d].name, b->diag[d].name);
        assert_memory_equal(&a->diag[d].value, &b->diag[d].value, sizeof(double));
    }
    assert_string_equal(qerr_result_plan(a), qerr_result_plan(b));
    assert_true(qerr_result_bits_per_weight(a) == qerr_result_bits_per_weight(b));
}

/* A small qmodel: one hand-made tensor and two short metadata entries. */
static qerr_qmodel *small_qmodel(void) {
    qerr_qmodel *q;
    assert_int_equal(qerr_qmodel_create(&q), QERR_OK);
    assert_int_equal(qerr_qmodel_set_meta(q, "model", "tiny"), QERR_OK);
    assert_int_equal(qerr_qmodel_set_meta(q, "empty", ""), QERR_OK);
    assert_int_equal(qerr_qmodel_add(q, "layer.w", full_result(7)), QERR_OK);
    return q;
}

static void round_trip_is_bit_exact(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(48, 64, 3);
    qerr_calib *c = tu_correlated_calib(256, 64, 2.0, 4);
    qerr_qmodel *q;
    assert_int_equal(qerr_qmodel_create(&q), QERR_OK);
    assert_int_equal(qerr_qmodel_add(q, "model.layers.0.self_attn.q_proj.weight",
                                     tu_quantize("rtn:bits=4,group_size=32", w, c)), QERR_OK);
    qerr_result *act = tu_quantize("gptq:bits=3,group_size=16,act_order=1", w, c);
    assert_false(act->g_idx_trivial); /* the point of this tensor */
    assert_int_equal(qerr_qmodel_add(q, "model.layers.0.mlp.down_proj.weight", act), QERR_OK);
    assert_int_equal(qerr_qmodel_add(q, "hand\xe2\x82\xac", full_result(11)), QERR_OK);
    qerr_result *r8;
    assert_int_equal(qerr__result_alloc(&r8, 2, 3, 8, 3), QERR_OK);
    r8->codes[5] = 255;
    r8->scales[0] = 1.0f;
    assert_int_equal(qerr_qmodel_add(q, "eight_bits", r8), QERR_OK);
    assert_int_equal(qerr_qmodel_set_meta(q, "plan", "rtn:bits=4"), QERR_OK);
    assert_int_equal(qerr_qmodel_set_meta(q, "note", "caf\xc3\xa9 = \xe2\x98\x95"), QERR_OK);
    assert_int_equal(qerr_qmodel_set_meta(q, "empty", ""), QERR_OK);

    char path[512];
    temp_path(path, sizeof path, "rt");
    assert_int_equal(qerr_qmodel_save(q, path), QERR_OK);
    qerr_qmodel *back = NULL;
    assert_int_equal(qerr_qmodel_load(&back, path), QERR_OK);
    assert_int_equal(qerr_qmodel_count(back), qerr_qmodel_count(q));
    for (int i = 0; i < qerr_qmodel_count(q); i++) {
        assert_string_equal(qerr_qmodel_name(back, i), qerr_qmodel_name(q, i));
        const qerr_result *a, *b;
        assert_int_equal(qerr_qmodel_get(q, qerr_qmodel_name(q, i), &a), QERR_OK);
        assert_int_equal(qerr_qmodel_get(back, qerr_qmodel_name(q, i), &b), QERR_OK);
        assert_results_equal(a, b);
    }
    assert_int_equal(qerr__qmodel_meta_count(back), 3);
    assert_string_equal(qerr_qmodel_meta(back, "plan"), "rtn:bits=4");
    assert_string_equal(qerr_qmodel_meta(back, "note"), "caf\xc3\xa9 = \xe2\x98\x95");
    assert_string_equal(qerr_qmodel_meta(back, "empty"), "");
    /* saving again gives the same bytes: one canonical encoding */
    uint8_t *b1, *b2;
    size_t n1, n2;
    assert_int_equal(qerr__qmodel_serialize(q, &b1, &n1), QERR_OK);
    assert_int_equal(qerr__qmodel_serialize(back, &b2, &n2), QERR_OK);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    free(b1);
    free(b2);
    remove(path);
    qerr_qmodel_free(back);
    qerr_qmodel_free(q);
    qerr_calib_free(c);
    qerr_tensor_free(w);
}

static void empty_qmodel_round_trips(void **state) {
    (void)state;
    qerr_qmodel *q, *back;
    assert_int_equal(qerr_qmodel_create(&q), QERR_OK);
    uint8_t *buf;
    size_t n;
    assert_int_equal(qerr__qmodel_serialize(q, &buf, &n), QERR_OK);
    assert_int_equal(qerr__qmodel_parse(buf, n, "empty", &back), QERR_OK);
    assert_int_equal(qerr_qmodel_count(back), 0);
    assert_null(qerr_qmodel_meta(back, "x"));
    free(buf);
    qerr_qmodel_free(back);
    qerr_qmodel_free(q);
}

static void every_flipped_byte_is_an_error(void **state) {
    (void)state;
    qerr_qmodel *q = small_qmodel();
    uint8_t *buf;
    size_t n;
    assert_int_equal(qerr__qmodel_serialize(q, &buf, &n), QERR_OK);
    print_message("small container: %zu bytes\n", n);
    const uint8_t masks[] = {0x01, 0x80, 0xFF};
    int checksum = 0, format = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t m = 0; m < sizeof masks; m++) {
            buf[i] ^= masks[m];
            qerr_qmodel *bad = NULL;
            int rc = qerr__qmodel_parse(buf, n, "flipped", &bad);
            if (rc == QERR_OK) fail_msg("flipping byte %zu with 0x%02x was accepted", i, masks[m]);
            assert_true(rc == QERR_E_CHECKSUM || rc == QERR_E_FORMAT);
            assert_null(bad);
            assert_true(strlen(qerr_last_error()) > 0);
            checksum += rc == QERR_E_CHECKSUM;
            format += rc == QERR_E_FORMAT;
            buf[i] ^= masks[m];
        }
    print_message("flips: %d checksum errors, %d format errors\n", checksum, format);
    assert_true(checksum > 0 && format > 0);
    qerr_qmodel *ok;
    assert_int_equal(qerr__qmodel_parse(buf, n, "restored", &ok), QERR_OK);
    qerr_qmodel_free(ok);
    free(buf);
    qerr_qmodel_free(q);
}

static void every_truncation_is_an_error(void **state) {
    (void)state;
    qerr_qmodel *q = small_qmodel();
    uint8_t *buf;
    size_t n;
    assert_int_equal(qerr__qmodel_serialize(q, &buf, &n), QERR_OK);
    for (size_t len = 0; len < n; len++) {
        uint8_t *copy = malloc(len ? len : 1); /* exact size: ASan sees over-reads */
        memcpy(copy, buf, len);
        qerr_qmodel *bad = NULL;
        int rc = qerr__qmodel_parse(copy, len, "truncated", &bad);
        if (rc != QERR_E_FORMAT) fail_msg("truncation to %zu bytes gave %d", len, rc);
        assert_null(bad);
        free(copy);
    }
    /* trailing garbage is refused too */
    uint8_t *longer = malloc(n + 1);
    memcpy(longer, buf, n);
    longer[n] = 0;
    qerr_qmodel *bad = NULL;
    assert_int_equal(qerr__qmodel_parse(longer, n + 1, "longer", &bad), QERR_E_FORMAT);
    free(longer);
    free(buf);
    qerr_qmodel_free(q);
}

static void put32le(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static size_t get64le(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return (size_t)v;
}

static void wrong_magic_and_version(void **state) {
    (void)state;
    qerr_qmodel *q = small_qmodel();
    uint8_t *buf;
    size_t n;
    assert_int_equal(qerr__qmodel_serialize(q, &buf, &n), QERR_OK);
    qerr_qmodel *bad = NULL;
    buf[0] = 'X';
    assert_int_equal(qerr__qmodel_parse(buf, n, "magic", &bad), QERR_E_FORMAT);
    assert_non_null(strstr(qerr_last_error(), "magic"));
    buf[0] = 'Q';
    put32le(buf + 8, 2); /* a future version, with a valid header CRC */
    put32le(buf + 44, qerr__crc32(buf, 44));
    assert_int_equal(qerr__qmodel_parse(buf, n, "version", &bad), QERR_E_FORMAT);
    assert_non_null(strstr(qerr_last_error(), "version 2"));
    put32le(buf + 8, 1);
    put32le(buf + 44, qerr__crc32(buf, 44));
    assert_int_equal(qerr__qmodel_parse(buf, n, "fixed", &bad), QERR_OK);
    qerr_qmodel_free(bad);
    free(buf);
    qerr_qmodel_free(q);
    /* files that are not containers at all */
    char path[512];
    temp_path(path, sizeof path, "missing");
    assert_int_equal(qerr_qmodel_load(&bad, path), QERR_E_IO);
    assert_null(bad);
    assert_int_equal(qerr__qmodel_parse((const uint8_t *)"", 0, "empty", &bad), QERR_E_FORMAT);
}

/* ---- semantic checks: valid CRCs around invalid content ------------------ */
/* Rebuild a file from a valid one, replacing the raw bytes of tensor record
 * 0 by `raw` (compressed and checksummed properly). */
static uint8_t *with_tensor_payload(const uint8_t *file, size_t n, const uint8_t *raw,
                                    size_t raw_n, size_t *out_n) {
    size_t pos = 48;
    pos += 32 + get64le(file + pos + 16); /* skip META */
    uint8_t *z;
    size_t zn;
    assert_int_equal(qerr__deflate(raw, raw_n, &z, &zn), QERR_OK);
    size_t total = pos + 32 + zn;
    uint8_t *o = calloc(1, total);
    memcpy(o, file, pos);
    uint8_t *h = o + pos;
    memcpy(h, "TENS", 4);
    put32le(h + 4, qerr__crc32(raw, raw_n));
    uint64_t v = raw_n;
    memcpy(h + 8, &v, 8);
    v = zn;
    memcpy(h + 16, &v, 8);
    put32le(h + 24, qerr__crc32(z, zn));
    put32le(h + 28, qerr__crc32(h, 28));
    memcpy(h + 32, z, zn);
    free(z);
    v = total;
    memcpy(o + 16, &v, 8);
    put32le(o + 44, qerr__crc32(o, 44));
    (void)n;
    *out_n = total;
    return o;
}

/* The raw bytes of tensor record 0 of a file. */
static uint8_t *tensor_payload(const uint8_t *file, size_t *raw_n) {
    size_t pos = 48;
    pos += 32 + get64le(file + pos + 16);
    uint64_t rn, zn;
    memcpy(&rn, file + pos + 8, 8);
    memcpy(&zn, file + pos + 16, 8);
    uint8_t *raw = malloc(rn);
    assert_int_equal(qerr__inflate(file + pos + 32, zn, raw, rn), QERR_OK);
    *raw_n = rn;
    return raw;
}

static void expect_format_error(const uint8_t *file, size_t n, const uint8_t *raw, size_t raw_n,
                                const char *needle) {
    size_t fn;
    uint8_t *f = with_tensor_payload(file, n, raw, raw_n, &fn);
    qerr_qmodel *bad = NULL;
    int rc = qerr__qmodel_parse(f, fn, "crafted", &bad);
    if (rc != QERR_E_FORMAT || !strstr(qerr_last_error(), needle))
        fail_msg("expected a format error about '%s', got %d: %s", needle, rc, qerr_last_error());
    assert_null(bad);
    free(f);
}

static void inconsistent_content_is_refused(void **state) {
    (void)state;
    qerr_qmodel *q = small_qmodel();
    uint8_t *file;
    size_t n, rn;
    assert_int_equal(qerr__qmodel_serialize(q, &file, &n), QERR_OK);
    uint8_t *raw = tensor_payload(file, &rn);
    uint8_t *m = malloc(rn + 64);
    /* sanity: the unmodified payload re-wrapped still loads */
    {
        size_t fn;
        uint8_t *f = with_tensor_payload(file, n, raw, rn, &fn);
        qerr_qmodel *ok;
        assert_int_equal(qerr__qmodel_parse(f, fn, "rewrapped", &ok), QERR_OK);
        qerr_qmodel_free(ok);
        free(f);
    }
    /* layout: u32 len "layer.w" (7) | u32 len plan (15) | rows cols | bits flags | gs groups */
    const size_t name_at = 4, plan_len = strlen("handmade:bits=3");
    const size_t grid_at = 4 + 7 + 4 + plan_len;
    const size_t bits_at = grid_at + 16, gs_at = grid_at + 24;
    const size_t codes_at = grid_at + 40; /* 5 rows x ceil(21*3/8)=8 bytes */
    const size_t gidx_at = codes_at + 40 + 5 * 3 * 8;

    memcpy(m, raw, rn);
    put32le(m + bits_at, 9);
    expect_format_error(file, n, m, rn, "bits=9");
    memcpy(m, raw, rn);
    put32le(m + bits_at, 1);
    expect_format_error(file, n, m, rn, "bits=1");
    memcpy(m, raw, rn);
    put32le(m + bits_at + 4, 6); /* unknown flag */
    expect_format_error(file, n, m, rn, "flags");
    memcpy(m, raw, rn);
    m[gs_at] = 4; /* groups no longer ceil(cols / group_size) */
    expect_format_error(file, n, m, rn, "group_size");
    memcpy(m, raw, rn);
    put32le(m + gidx_at + 4 * 3, 3); /* g_idx[3] = groups */
    expect_format_error(file, n, m, rn, "g_idx[3]");
    memcpy(m, raw, rn);
    m[codes_at + 7] |= 0x80; /* a padding bit after the 21st code of row 0 */
    expect_format_error(file, n, m, rn, "padding");
    memcpy(m, raw, rn);
    m[name_at + 2] = 0xC3; /* "la\xC3er.w": broken UTF-8 */
    expect_format_error(file, n, m, rn, "name");
    memcpy(m, raw, rn);
    m[name_at + 2] = 0; /* NUL inside a name */
    expect_format_error(file, n, m, rn, "name");
    memcpy(m, raw, rn);
    put32le(m + codes_at - 16, 0x7fffffff); /* huge group_size: does not fit */
    expect_format_error(file, n, m, rn, "group_size");
    memcpy(m, raw, rn);
    uint64_t huge = (uint64_t)1 << 30;
    memcpy(m + grid_at, &huge, 8); /* rows = 2^30: more bytes than present */
    expect_format_error(file, n, m, rn, "more bytes");
    /* outliers: count field right after g_idx; then rows, cols, values */
    const size_t out_at = gidx_at + 21 * 4;
    memcpy(m, raw, rn);
    put32le(m + out_at + 8 + 4, 5); /* outlier 1 row 5 of 5 rows */
    expect_format_error(file, n, m, rn, "outside the matrix");
    memcpy(m, raw, rn);
    put32le(m + out_at + 8 + 16 + 4, 2); /* outlier 1 at (0, 2) again */
    expect_format_error(file, n, m, rn, "increasing");
    memcpy(m, raw, rn);
    m[rn] = 0; /* one trailing byte */
    expect_format_error(file, n, m, rn + 1, "trailing");
    free(m);
    free(raw);
    free(file);
    qerr_qmodel_free(q);
}

static void duplicate_tensor_names_are_refused(void **state) {
    (void)state;
    /* a container whose two records carry the same name */
    qerr_qmodel *q = small_qmodel();
    assert_int_equal(qerr_qmodel_add(q, "layer.x", full_result(8)), QERR_OK);
    uint8_t *file;
    size_t n;
    assert_int_equal(qerr__qmodel_serialize(q, &file, &n), QERR_OK);
    /* rename the second record to "layer.w" */
    size_t pos = 48;
    pos += 32 + get64le(file + pos + 16);
    size_t second = pos + 32 + get64le(file + pos + 16);
    uint64_t rn, zn;
    memcpy(&rn, file + second + 8, 8);
    memcpy(&zn, file + second + 16, 8);
    uint8_t *raw = malloc(rn);
    assert_int_equal(qerr__inflate(file + second + 32, zn, raw, rn), QERR_OK);
    assert_memory_equal(raw + 4, "layer.x", 7);
    raw[4 + 6] = 'w';
    uint8_t *z;
    size_t zn2;
    assert_int_equal(qerr__deflate(raw, rn, &z, &zn2), QERR_OK);
    size_t total = second + 32 + zn2;
    uint8_t *o = malloc(total);
    memcpy(o, file, second + 32);
    memcpy(o + second + 32, z, zn2);
    uint64_t v = zn2;
    memcpy(o + second + 16, &v, 8);
    put32le(o + second + 4, qerr__crc32(raw, rn));
    put32le(o + second + 24, qerr__crc32(z, zn2));
    put32le(o + second + 28, qerr__crc32(o + second, 28));
    v = total;
    memcpy(o + 16, &v, 8);
    put32le(o + 44, qerr__crc32(o, 44));
    qerr_qmodel *bad = NULL;
    assert_int_equal(qerr__qmodel_parse(o, total, "dup", &bad), QERR_E_FORMAT);
    assert_non_null(strstr(qerr_last_error(), "twice"));
    free(o);
    free(z);
    free(raw);
    free(file);
    qerr_qmodel_free(q);
}

static void writer_refuses_what_reader_would_refuse(void **state) {
    (void)state;
    qerr_qmodel *q = small_qmodel();
    qerr_result *r = full_result(9);
    r->codes[3] = 8; /* does not fit in 3 bits */
    assert_int_equal(qerr_qmodel_add(q, "bad", r), QERR_OK);
    uint8_t *buf = NULL;
    size_t n;
    assert_int_equal(qerr__qmodel_serialize(q, &buf, &n), QERR_E_INVALID_ARG);
    assert_non_null(strstr(qerr_last_error(), "'bad'"));
    assert_null(buf);
    r->codes[3] = 7;
    r->scales[2] = INFINITY;
    assert_int_equal(qerr__qmodel_serialize(q, &buf, &n), QERR_E_INVALID_ARG);
    r->scales[2] = 1.0f;
    r->out_col[1] = 2; /* (0, 2) twice */
    assert_int_equal(qerr__qmodel_serialize(q, &buf, &n), QERR_E_INVALID_ARG);
    r->out_col[1] = 20;
    assert_int_equal(qerr__qmodel_serialize(q, &buf, &n), QERR_OK);
    free(buf);
    assert_int_equal(qerr_qmodel_save(q, NULL), QERR_E_INVALID_ARG);
    assert_int_equal(qerr_qmodel_save(NULL, "x"), QERR_E_INVALID_ARG);
    assert_int_equal(qerr_qmodel_save(q, "/nonexistent-dir/x.qerr"), QERR_E_IO);
    qerr_qmodel_free(q);
}

static void qmodel_api(void **state) {
    (void)state;
    qerr_qmodel *q;
    assert_int_equal(qerr_qmodel_create(NULL), QERR_E_INVALID_ARG);
    assert_int_equal(qerr_qmodel_create(&q), QERR_OK);
    assert_int_equal(qerr_qmodel_count(q), 0);
    assert_int_equal(qerr_qmodel_count(NULL), -1);
    assert_null(qerr_qmodel_name(q, 0));
    const qerr_result *got = (const qerr_result *)q;
    assert_int_equal(qerr_qmodel_get(q, "absent", &got), QERR_E_NOT_FOUND);
    assert_null(got);
    /* many tensors: insertion order kept, every lookup finds its own */
    enum { N = 1000 };
    qerr_result *mine[N];
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "t.%d", i);
        assert_int_equal(qerr__result_alloc(&mine[i], 1, 2, 4, 2), QERR_OK);
        assert_int_equal(qerr_qmodel_add(q, name, mine[i]), QERR_OK);
    }
    assert_int_equal(qerr_qmodel_count(q), N);
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "t.%d", i);
        assert_string_equal(qerr_qmodel_name(q, i), name);
        assert_int_equal(qerr_qmodel_get(q, name, &got), QERR_OK);
        assert_ptr_equal(got, mine[i]);
    }
    assert_null(qerr_qmodel_name(q, N));
    assert_null(qerr_qmodel_name(q, -1));
    /* ownership passes on failure too (ASan would report a leak) */
    qerr_result *dup;
    assert_int_equal(qerr__result_alloc(&dup, 1, 2, 4, 2), QERR_OK);
    assert_int_equal(qerr_qmodel_add(q, "t.5", dup), QERR_E_INVALID_ARG);
    assert_int_equal(qerr__result_alloc(&dup, 1, 2, 4, 2), QERR_OK);
    assert_int_equal(qerr_qmodel_add(q, "", dup), QERR_E_INVALID_ARG);
    assert_int_equal(qerr__result_alloc(&dup, 1, 2, 4, 2), QERR_OK);
    assert_int_equal(qerr_qmodel_add(q, "bad\xff", dup), QERR_E_INVALID_ARG);
    assert_int_equal(qerr_qmodel_add(q, "null", NULL), QERR_E_INVALID_ARG);
    assert_int_equal(qerr_qmodel_count(q), N);
    /* metadata: set, replace, absent */
    assert_int_equal(qerr_qmodel_set_meta(q, "k", "v1"), QERR_OK);
    assert_int_equal(qerr_qmodel_set_meta(q, "k", "v2"), QERR_OK);
    assert_string_equal(qerr_qmodel_meta(q, "k"), "v2");
    assert_int_equal(qerr__qmodel_meta_count(q), 1);
    assert_null(qerr_qmodel_meta(q, "other"));
    assert_null(qerr_qmodel_meta(NULL, "k"));
    assert_int_equal(qerr_qmodel_set_meta(q, "", "v"), QERR_E_INVALID_ARG);
    assert_int_equal(qerr_qmodel_set_meta(q, "k", "\xc0\x80"), QERR_E_INVALID_ARG);
    assert_int_equal(qerr_qmodel_set_meta(q, "k", NULL), QERR_E_INVALID_ARG);
    assert_string_equal(qerr_qmodel_meta(q, "k"), "v2");
    qerr_qmodel_free(q);
    qerr_qmodel_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_is_bit_exact),
        cmocka_unit_test(empty_qmodel_round_trips),
        cmocka_unit_test(every_flipped_byte_is_an_error),
        cmocka_unit_test(every_truncation_is_an_error),
        cmocka_unit_test(wrong_magic_and_version),
        cmocka_unit_test(inconsistent_content_is_refused),
        cmocka_unit_test(duplicate_tensor_names_are_refused),
        cmocka_unit_test(writer_refuses_what_reader_would_refuse),
        cmocka_unit_test(qmodel_api),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
