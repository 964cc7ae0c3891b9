/* GGUF: the container reads back what the writer puts, refuses every
 * malformed image with a status; the per-tensor types follow
 * llama-quantize's rules; a model written as F32 / F16 GGUF loads back with
 * the same (F16-rounded) weights and perplexity; bad requests leave no file. */
#include "testutil.h"
#include "export/gguf_mix.h"
#include "io/gguf.h"
#include "llama/gguf_arch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A small image: 4 keys and two tensors (F32 2x3 and F16 4). */
static void put_image(qerr_gguf_sink *s) {
    qerr__gguf_put_header(s, 2, 4);
    qerr__gguf_kv_str(s, "general.architecture", "llama");
    qerr__gguf_kv_u32(s, "llama.block_count", 7);
    qerr__gguf_kv_f32(s, "llama.rope.freq_base", 500000.0f);
    qerr__gguf_kv_array(s, "tokenizer.ggml.tokens", QERR_GGUF_STRING, 2);
    qerr__gguf_put_str(s, "ab", 2);
    qerr__gguf_put_str(s, "c", 1);
    const int64_t ne_a[2] = {3, 2}, ne_b[1] = {4};
    qerr__gguf_put_tensor_info(s, "a.weight", 2, ne_a, QERR_GGUF_T_F32, 0);
    qerr__gguf_put_tensor_info(s, "b.weight", 1, ne_b, QERR_GGUF_T_F16, 32);
    qerr__gguf_pad(s, QERR_GGUF_ALIGN);
    const float a[6] = {1, 2, 3, 4, 5, 6};
    qerr__gguf_put_bytes(s, a, sizeof a);
    qerr__gguf_pad(s, QERR_GGUF_ALIGN);
    const uint16_t b[4] = {0x3c00, 0x4000, 0xc000, 0};
    qerr__gguf_put_bytes(s, b, sizeof b);
    qerr__gguf_pad(s, QERR_GGUF_ALIGN);
}

static uint8_t *image(size_t *len) {
    qerr_gguf_sink s = {NULL, 0};
    put_image(&s);
    uint8_t *buf = malloc(s.n);
    qerr_gguf_sink f = {buf, 0};
    put_image(&f);
    assert_int_equal(f.n, s.n);
    *len = s.n;
    return buf;
}

static void container_roundtrip(void **state) {
    (void)state;
    size_t len;
    uint8_t *buf = image(&len);
    qerr_gguf_file f;
    assert_int_equal(qerr__gguf_parse(buf, len, "test", &f), QERR_OK);
    assert_int_equal(f.version, 3);
    assert_int_equal(f.n_kv, 4);
    assert_int_equal(f.n_tensors, 2);
    char s[32];
    int64_t i;
    double d;
    assert_int_equal(qerr__gguf_get_str(&f, "general.architecture", s, sizeof s), QERR_OK);
    assert_string_equal(s, "llama");
    assert_int_equal(qerr__gguf_get_int(&f, "llama.block_count", &i), QERR_OK);
    assert_int_equal(i, 7);
    assert_int_equal(qerr__gguf_get_float(&f, "llama.rope.freq_base", &d), QERR_OK);
    assert_true(d == 500000.0);
    assert_int_equal(qerr__gguf_get_int(&f, "general.architecture", &i), QERR_E_FORMAT);
    assert_int_equal(qerr__gguf_get_int(&f, "nope", &i), QERR_E_NOT_FOUND);
    const qerr_gguf_kv *tok = qerr__gguf_find(&f, "tokenizer.ggml.tokens");
    assert_non_null(tok);
    assert_int_equal(tok->elem_type, QERR_GGUF_STRING);
    assert_int_equal(tok->count, 2);
    const qerr_gguf_tensor *a = qerr__gguf_tensor(&f, "a.weight");
    const qerr_gguf_tensor *b = qerr__gguf_tensor(&f, "b.weight");
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->ne[0], 3);
    assert_int_equal(a->ne[1], 2);
    assert_int_equal(a->nbytes, 24);
    float x;
    memcpy(&x, a->data + 20, 4);
    assert_true(x == 6.0f);
    assert_int_equal(b->nbytes, 8);
    assert_int_equal(b->data - buf, a->data - buf + 32);
    qerr__gguf_close(&f);
    free(buf);
}

/* Overwrite 4 bytes at `at` and expect `want` from the parser. */
static void corrupt(const uint8_t *good, size_t len, size_t at, uint32_t v, int want) {
    uint8_t *b = malloc(len);
    memcpy(b, good, len);
    memcpy(b + at, &v, 4);
    qerr_gguf_file f;
    int rc = qerr__gguf_parse(b, len, "bad", &f);
    if (rc == QERR_OK) qerr__gguf_close(&f);
    else assert_true(strlen(qerr_last_error()) > 0);
    assert_int_equal(rc, want);
    free(b);
}

/* Byte offset of `needle` in the image. */
static size_t find(const uint8_t *b, size_t len, const char *needle) {
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(b + i, needle, n) == 0) return i;
    fail_msg("'%s' not in the image", needle);
    return 0;
}

static void reader_refuses_bad_images(void **state) {
    (void)state;
    size_t len;
    uint8_t *good = image(&len);
    /* every truncation fails cleanly (a private copy: ASan sees over-reads) */
    for (size_t n = 0; n < len - 24; n++) {
        uint8_t *b = malloc(n ? n : 1);
        memcpy(b, good, n);
        qerr_gguf_file f;
        assert_int_not_equal(qerr__gguf_parse(b, n, "cut", &f), QERR_OK);
        free(b);
    }
    corrupt(good, len, 0, 0x12345678, QERR_E_FORMAT);      /* magic */
    corrupt(good, len, 4, 1, QERR_E_UNSUPPORTED);          /* version 1 */
    corrupt(good, len, 8, 0xffffffffu, QERR_E_FORMAT);     /* absurd tensor count */
    corrupt(good, len, 16, 1000000, QERR_E_FORMAT);        /* absurd key count */
    size_t k = find(good, len, "llama.block_count");
    corrupt(good, len, k + 17, 13, QERR_E_FORMAT);         /* unknown value type */
    corrupt(good, len, k + 17, QERR_GGUF_ARRAY, QERR_E_FORMAT);
    size_t a = find(good, len, "a.weight") + 8;           /* ndim */
    corrupt(good, len, a, 5, QERR_E_FORMAT);               /* too many dimensions */
    corrupt(good, len, a + 4, 0, QERR_E_FORMAT);           /* zero-sized dimension */
    corrupt(good, len, a + 20, 99, QERR_E_UNSUPPORTED);    /* unknown ggml type */
    corrupt(good, len, a + 24, 4, QERR_E_FORMAT);          /* misaligned offset */
    corrupt(good, len, a + 24, 32, QERR_E_FORMAT);         /* overlaps b */
    corrupt(good, len, a + 24, 4096, QERR_E_FORMAT);       /* outside the data */
    size_t b = find(good, len, "b.weight");
    memcpy(good + b, "a", 1);                              /* duplicate name */
    corrupt(good, len, 0, QERR_GGUF_MAGIC, QERR_E_FORMAT);
    free(good);
}

static void tensor_names_and_qk_rows(void **state) {
    (void)state;
    char out[128], back[128];
    const char *hf[] = {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
                        "model.layers.11.self_attn.q_proj.weight",
                        "model.layers.0.self_attn.k_proj.bias", "model.layers.3.mlp.down_proj.weight",
                        "model.layers.2.post_attention_layernorm.weight"};
    const char *gg[] = {"token_embd.weight", "output.weight", "output_norm.weight",
                        "blk.11.attn_q.weight", "blk.0.attn_k.bias", "blk.3.ffn_down.weight",
                        "blk.2.ffn_norm.weight"};
    for (size_t i = 0; i < sizeof hf / sizeof hf[0]; i++) {
        assert_true(qerr__gguf_name_from_hf(hf[i], out, sizeof out));
        assert_string_equal(out, gg[i]);
        assert_true(qerr__gguf_name_to_hf(out, back, sizeof back));
        assert_string_equal(back, hf[i]);
    }
    assert_false(qerr__gguf_name_from_hf("model.layers.0.mlp.experts.weight", out, sizeof out));
    assert_false(qerr__gguf_name_to_hf("blk.01.attn_q.weight", out, sizeof out));
    assert_false(qerr__gguf_name_to_hf("blk.x.attn_q.weight", out, sizeof out));
    /* convert_hf_to_gguf's permute for head_dim 8: per head, rows 0,4,1,5,2,6,3,7 */
    const int64_t want[16] = {0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15};
    for (int64_t r = 0; r < 16; r++) assert_int_equal(qerr__gguf_qk_source_row(r, 8), want[r]);
}

static const char *type_of(const qerr_gguf_mix *mx, const char *name, int64_t cols) {
    return qerr__gguf_type_label(qerr__gguf_mix_type(mx, name, 2, cols));
}

/* llama-quantize's choices for a 6-layer model with 2 queries per K/V head
 * (tiny-llama's shape), as llama_tensor_get_type_impl makes them. */
static void mix_follows_llama_quantize(void **state) {
    (void)state;
    qerr_gguf_mix mx;
    assert_int_equal(qerr__gguf_mix_init(&mx, "q4_k", NULL, 6, 2, false), QERR_OK);
    assert_string_equal(mx.name, "Q4_K_M");
    assert_int_equal(mx.ftype, 15);
    /* use_more_bits(i, 6): i = 2 and 5 */
    const char *v[6] = {"Q4_K", "Q4_K", "Q6_K", "Q4_K", "Q4_K", "Q6_K"};
    for (int l = 0; l < 6; l++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.attn_v.weight", l);
        assert_string_equal(type_of(&mx, name, 256), v[l]);
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", l);
        assert_string_equal(type_of(&mx, name, 768), v[l]);
        snprintf(name, sizeof name, "blk.%d.attn_q.weight", l);
        assert_string_equal(type_of(&mx, name, 256), "Q4_K");
    }
    assert_string_equal(type_of(&mx, "output.weight", 256), "Q6_K");
    assert_string_equal(type_of(&mx, "token_embd.weight", 256), "Q4_K");
    assert_int_equal(qerr__gguf_mix_type(&mx, "blk.0.attn_norm.weight", 1, 256), QERR_GGML_F32);

    assert_int_equal(qerr__gguf_mix_init(&mx, "Q3_K_M", "ftype", 6, 2, false), QERR_OK);
    assert_string_equal(type_of(&mx, "blk.0.attn_v.weight", 256), "Q5_K");
    assert_string_equal(type_of(&mx, "blk.2.attn_v.weight", 256), "Q4_K");
    assert_string_equal(type_of(&mx, "blk.0.ffn_down.weight", 768), "Q4_K");
    assert_string_equal(type_of(&mx, "blk.0.attn_output.weight", 256), "Q4_K");
    assert_string_equal(type_of(&mx, "blk.0.ffn_up.weight", 256), "Q3_K");

    assert_int_equal(qerr__gguf_mix_init(&mx, "Q2_K", NULL, 6, 2, false), QERR_OK);
    assert_string_equal(type_of(&mx, "blk.3.attn_v.weight", 256), "Q3_K");
    assert_string_equal(type_of(&mx, "blk.3.ffn_down.weight", 768), "Q3_K");
    assert_string_equal(type_of(&mx, "blk.3.attn_output.weight", 256), "Q3_K");
    assert_string_equal(type_of(&mx, "blk.3.ffn_gate.weight", 256), "Q2_K");
    assert_int_equal(qerr__gguf_mix_init(&mx, "Q2_K", NULL, 6, 4, false), QERR_OK);
    assert_string_equal(type_of(&mx, "blk.3.attn_v.weight", 256), "Q4_K"); /* n_gqa >= 4 */

    /* tied: token_embd is the output; widths that do not fit fall back */
    assert_int_equal(qerr__gguf_mix_init(&mx, "Q4_K_M", NULL, 5, 2, true), QERR_OK);
    assert_string_equal(type_of(&mx, "token_embd.weight", 64), "Q8_0");
    assert_string_equal(type_of(&mx, "blk.1.attn_q.weight", 64), "Q5_0");
    assert_string_equal(type_of(&mx, "blk.1.ffn_down.weight", 172), "F16");
    assert_int_equal(qerr__gguf_mix_init(&mx, "Q4_0", NULL, 5, 2, true), QERR_OK);
    assert_string_equal(type_of(&mx, "token_embd.weight", 512), "Q6_K");
    assert_string_equal(type_of(&mx, "token_embd.weight", 64), "Q8_0");

    /* the i-th attn_v counts in name order: blk.10 comes before blk.2 */
    assert_int_equal(qerr__gguf_mix_init(&mx, "Q3_K_M", NULL, 12, 1, false), QERR_OK);
    assert_string_equal(type_of(&mx, "blk.1.attn_v.weight", 256), "Q5_K");
    assert_string_equal(type_of(&mx, "blk.10.attn_v.weight", 256), "Q4_K");
    assert_string_equal(type_of(&mx, "blk.0.attn_v.weight", 256), "Q5_K");

    /* pure and layers */
    assert_int_equal(qerr__gguf_mix_init(&mx, "Q4_K_M", "pure", 6, 2, false), QERR_OK);
    assert_string_equal(type_of(&mx, "output.weight", 256), "Q4_K");
    assert_string_equal(type_of(&mx, "blk.2.attn_v.weight", 256), "Q4_K");
    assert_int_equal(qerr__gguf_mix_init(&mx, "Q4_0", "layers", 6, 2, false), QERR_OK);
    assert_string_equal(type_of(&mx, "output.weight", 256), "F32");
    assert_string_equal(type_of(&mx, "token_embd.weight", 256), "F32");
    assert_string_equal(type_of(&mx, "blk.2.attn_v.weight", 256), "Q4_0");

    assert_int_equal(qerr__gguf_mix_init(&mx, "Q4_K_X", NULL, 6, 2, false), QERR_E_INVALID_ARG);
    assert_non_null(strstr(qerr_last_error(), "Q4_K_X"));
    assert_int_equal(qerr__gguf_mix_init(&mx, "Q4_0", "most", 6, 2, false), QERR_E_INVALID_ARG);
}

static char *temp_path(const char *name) {
    const char *base = getenv("TMPDIR");
    char *p = malloc(1024);
    snprintf(p, 1024, "%s/qerr_gguf_%ld_%s", base && *base ? base : "/tmp", (long)getpid(), name);
    return p;
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Every tensor of a equals b's, exactly or after rounding to F16. */
static void same_weights(const qerr_model *a, const qerr_model *b, bool f16) {
    assert_int_equal(qerr_model_tensor_count(a), qerr_model_tensor_count(b));
    for (int i = 0; i < qerr_model_tensor_count(a); i++) {
        const char *name = qerr_model_tensor_name(a, i);
        const qerr_tensor *x, *y;
        assert_int_equal(qerr_model_tensor(a, name, &x), QERR_OK);
        assert_int_equal(qerr_model_tensor(b, name, &y), QERR_OK);
        assert_int_equal(qerr_tensor_numel(x), qerr_tensor_numel(y));
        const float *p = qerr_tensor_data(x), *q = qerr_tensor_data(y);
        bool round = f16 && qerr_tensor_ndim(x) == 2;
        for (int64_t k = 0; k < qerr_tensor_numel(x); k++) {
            float want = round ? qerr__f16_to_f32(qerr__f32_to_f16(p[k])) : p[k];
            if (q[k] != want) fail_msg("%s[%lld]: %g != %g", name, (long long)k, q[k], want);
        }
    }
}

static void export_roundtrip(const char *model, bool tied_expected) {
    TU_REQUIRE_SHARED(data);
    char dir[1024], tok[1024];
    snprintf(dir, sizeof dir, "%s/%s", data, model);
    snprintf(tok, sizeof tok, "%s/%s/eval.u32", data, model);
    qerr_model *m, *g;
    assert_int_equal(qerr_model_load(&m, dir), QERR_OK);
    char *path = temp_path("rt.gguf");
    for (int f16 = 0; f16 < 2; f16++) {
        qerr_qmodel *q;
        assert_int_equal(qerr_gguf_quantize(NULL, m, f16 ? "F16" : "F32", NULL, NULL, NULL, 0, 0,
                                            0, &q),
                         QERR_OK);
        assert_int_equal(qerr_qmodel_count(q), 0);
        assert_int_equal(qerr_gguf_save(m, q, f16 ? "f16" : "f32", NULL, path), QERR_OK);
        qerr_qmodel_free(q);
        qerr_gguf_file f;
        assert_int_equal(qerr__gguf_open(path, &f), QERR_OK);
        assert_int_equal(qerr__gguf_tensor(&f, "output.weight") == NULL, tied_expected);
        assert_non_null(qerr__gguf_tensor(&f, "blk.0.attn_q.weight"));
        qerr__gguf_close(&f);
        assert_int_equal(qerr_model_load(&g, path), QERR_OK);
        same_weights(m, g, f16);
        if (!f16) { /* identical weights: identical perplexity */
            uint32_t *t;
            int64_t n;
            double p1, p2;
            assert_int_equal(qerr_tokens_read(tok, &t, &n), QERR_OK);
            assert_int_equal(qerr_model_perplexity(NULL, m, t, n, 64, 4, &p1, NULL, NULL), QERR_OK);
            assert_int_equal(qerr_model_perplexity(NULL, g, t, n, 64, 4, &p2, NULL, NULL), QERR_OK);
            assert_true(p1 == p2);
            qerr_free(t);
        }
        qerr_model_free(g);
    }
    unlink(path);
    free(path);
    qerr_model_free(m);
}

static void export_tiny_llama(void **state) {
    (void)state;
    export_roundtrip("tiny-llama", false);
}

static void export_stories260k_tied(void **state) {
    (void)state;
    export_roundtrip("stories260k", true);
}

static void export_errors_leave_no_file(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(data);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/stories260k", data);
    qerr_model *m;
    assert_int_equal(qerr_model_load(&m, dir), QERR_OK);
    char *path = temp_path("bad.gguf");
    unlink(path);
    assert_int_equal(qerr_gguf_save(m, NULL, "Q4_K_X", NULL, path), QERR_E_INVALID_ARG);
    assert_false(exists(path));
    /* a quantized type needs the quantized tensors */
    assert_int_equal(qerr_gguf_save(m, NULL, "Q4_0", NULL, path), QERR_E_NOT_FOUND);
    assert_non_null(strstr(qerr_last_error(), "qerr_gguf_quantize"));
    assert_false(exists(path));
    /* a write error */
    assert_int_equal(qerr_gguf_save(m, NULL, "F32", NULL, "/nonexistent-dir/x.gguf"), QERR_E_IO);
    assert_false(exists("/nonexistent-dir/x.gguf"));
    char type[16];
    assert_int_equal(qerr_gguf_tensor_type(m, "Q4_K_M", NULL, "lm_head.weight", type, sizeof type),
                     QERR_OK);
    assert_string_equal(type, "Q8_0"); /* tied, 64 columns: not whole 256-blocks */
    assert_int_equal(qerr_gguf_tensor_type(m, "Q4_K_M", NULL, "model.layers.0.mlp.down_proj.weight",
                                           type, sizeof type),
                     QERR_OK);
    assert_string_equal(type, "F16"); /* 172 columns: no ggml block fits */
    assert_int_equal(qerr_gguf_tensor_type(m, "Q4_K_M", NULL, "nope", type, sizeof type),
                     QERR_E_NOT_FOUND);
    free(path);
    qerr_model_free(m);
}

/* A quantized file: every quantized tensor loads back as the pipeline's
 * dequantized result (Q/K rows back in place), fallbacks as F16-rounded
 * floats, norms exact; the tied embedding is the output projection's. */
static void export_quantized_round_trip(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(data);
    char dir[1024], tok[1024];
    snprintf(dir, sizeof dir, "%s/stories260k", data);
    snprintf(tok, sizeof tok, "%s/stories260k/calib.u32", data);
    qerr_model *m, *g;
    uint32_t *t;
    int64_t n;
    assert_int_equal(qerr_model_load(&m, dir), QERR_OK);
    assert_int_equal(qerr_tokens_read(tok, &t, &n), QERR_OK);
    qerr_qmodel *q;
    assert_int_equal(qerr_gguf_quantize(NULL, m, "Q4_K_M", NULL, "solver=gptq", t, n, 8, 64, &q),
                     QERR_OK);
    char *path = temp_path("q.gguf");
    assert_int_equal(qerr_gguf_save(m, q, "Q4_K_M", NULL, path), QERR_OK);
    assert_int_equal(qerr_gguf_save(m, q, "Q4_0", NULL, path), QERR_E_INVALID_ARG);
    assert_int_equal(qerr_model_load(&g, path), QERR_OK);
    qerr_gguf_file f;
    assert_int_equal(qerr__gguf_open(path, &f), QERR_OK);
    assert_int_equal(qerr__gguf_tensor(&f, "blk.0.attn_q.weight")->type, QERR_GGML_Q5_0);
    assert_int_equal(qerr__gguf_tensor(&f, "blk.2.attn_v.weight")->type, QERR_GGML_Q8_0);
    assert_int_equal(qerr__gguf_tensor(&f, "blk.0.ffn_down.weight")->type, QERR_GGML_F16);
    assert_int_equal(qerr__gguf_tensor(&f, "token_embd.weight")->type, QERR_GGML_Q8_0);
    qerr__gguf_close(&f);
    for (int i = 0; i < qerr_model_tensor_count(m); i++) {
        const char *name = qerr_model_tensor_name(m, i);
        const qerr_tensor *w, *x;
        const qerr_result *r;
        assert_int_equal(qerr_model_tensor(m, name, &w), QERR_OK);
        assert_int_equal(qerr_model_tensor(g, name, &x), QERR_OK);
        const int64_t k = qerr_tensor_numel(w);
        float *want = malloc((size_t)k * sizeof *want);
        const char *src = strcmp(name, "model.embed_tokens.weight") == 0 ? "lm_head.weight" : name;
        if (qerr_qmodel_get(q, src, &r) == QERR_OK) {
            assert_int_equal(qerr_result_dequantize(r, want, (size_t)k), QERR_OK);
            double err; /* calibrated on the layer's inputs: the pipeline gave it H */
            assert_int_equal(qerr_result_diag(r, "layer_error", &err), QERR_OK);
            if (!(err >= 0 && err < 1)) fail_msg("%s: layer error %g", src, err);
        } else {
            const float *p = qerr_tensor_data(w);
            bool round = qerr_tensor_ndim(w) == 2;
            for (int64_t e = 0; e < k; e++)
                want[e] = round ? qerr__f16_to_f32(qerr__f32_to_f16(p[e])) : p[e];
        }
        assert_memory_equal(qerr_tensor_data(x), want, (size_t)k * sizeof *want);
        free(want);
    }
    unlink(path);
    free(path);
    qerr_model_free(g);
    qerr_qmodel_free(q);
    qerr_free(t);
    qerr_model_free(m);
}

/* Models GGUF's "llama" cannot describe (yet) are refused by name, no file. */
static void export_refuses_other_architectures(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(data);
    static const char *const archs[] = {"qwen2", "qwen3", "llama-bias"};
    char *path = temp_path("arch.gguf");
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/archs/%s", data, archs[i]);
        qerr_model *m;
        if (qerr_model_load(&m, dir) != QERR_OK) continue; /* not loadable in this build */
        assert_int_equal(qerr_gguf_save(m, NULL, "F32", NULL, path), QERR_E_UNSUPPORTED);
        assert_non_null(strstr(qerr_last_error(), "GGUF export"));
        assert_false(exists(path));
        qerr_model_free(m);
    }
    free(path);
}

static void reader_refuses_other_architectures(void **state) {
    (void)state;
    qerr_gguf_sink s = {NULL, 0};
    uint8_t *buf = NULL;
    for (int pass = 0; pass < 2; pass++) {
        s.n = 0;
        qerr__gguf_put_header(&s, 0, 1);
        qerr__gguf_kv_str(&s, "general.architecture", "mamba");
        if (!pass) s.p = buf = malloc(s.n);
    }
    char *path = temp_path("mamba.gguf");
    FILE *f = fopen(path, "wb");
    fwrite(buf, 1, s.n, f);
    fclose(f);
    qerr_model *m;
    assert_int_equal(qerr_model_load(&m, path), QERR_E_UNSUPPORTED);
    assert_non_null(strstr(qerr_last_error(), "mamba"));
    unlink(path);
    free(path);
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(container_roundtrip),
        cmocka_unit_test(reader_refuses_bad_images),
        cmocka_unit_test(tensor_names_and_qk_rows),
        cmocka_unit_test(mix_follows_llama_quantize),
        cmocka_unit_test(export_tiny_llama),
        cmocka_unit_test(export_stories260k_tied),
        cmocka_unit_test(export_errors_leave_no_file),
        cmocka_unit_test(export_quantized_round_trip),
        cmocka_unit_test(export_refuses_other_architectures),
        cmocka_unit_test(reader_refuses_other_architectures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
