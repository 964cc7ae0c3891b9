/* The five architecture fixtures of ../shared/data/archs (Llama-3 RoPE
 * scaling and head_dim, LLaMA with attention and MLP biases, Qwen2, Qwen3,
 * Mistral), made and saved by Hugging Face transformers: perplexity and the
 * logits of window 0 against transformers' float64 values, the same from the
 * transformers-4 form of each config, and the quantization pipeline, the
 * container and apply on each (biases stay float and keep their effect). */
#include "testutil.h"
#include "model_testutil.h"
#include "llama/model.h"
#include "train/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const ARCHS[] = {"llama3", "llama-bias", "qwen2", "qwen3", "mistral"};
enum { NARCH = 5, CTX = 64, WINDOWS = 8 };

/* A directory holding `config_file` of fixture `arch` as config.json and a
 * link to its weights. Caller removes it with rm_model_dir. */
static char *model_dir(const char *shared, const char *arch, const char *config_file) {
    char src[1024], dst[1100];
    char *dir = mt_tempdir();
    assert_non_null(dir);
    snprintf(src, sizeof src, "%s/archs/%s/%s", shared, arch, config_file);
    uint8_t *text;
    size_t len;
    assert_int_equal(qerr__read_file(src, &text, &len, 1 << 20), QERR_OK);
    mt_write(dir, "config.json", text, len);
    free(text);
    snprintf(src, sizeof src, "%s/archs/%s/model.safetensors", shared, arch);
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    char *abs = realpath(src, NULL); /* the shared path may be relative */
    assert_non_null(abs);
    assert_int_equal(symlink(abs, dst), 0);
    free(abs);
    return dir;
}

static void rm_model_dir(char *dir) {
    static const char *const files[] = {"config.json", "model.safetensors", "q.qerr"};
    mt_rmdir(dir, files, 3);
}

static uint32_t *read_tokens(const char *shared, const char *arch, int64_t *n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/archs/%s/tokens.u32", shared, arch);
    uint32_t *tok = NULL;
    assert_int_equal(qerr_tokens_read(path, &tok, n), QERR_OK);
    assert_int_equal(*n, CTX * WINDOWS);
    return tok;
}

/* transformers' float64 perplexity of `arch` from golden.json. */
static double golden_ppl(const char *shared, const char *arch) {
    char path[1024];
    snprintf(path, sizeof path, "%s/archs/golden.json", shared);
    uint8_t *text;
    size_t len;
    assert_int_equal(qerr__read_file(path, &text, &len, 1 << 24), QERR_OK);
    qerr_json *j = NULL;
    assert_int_equal(qerr__json_parse((const char *)text, len, path, &j), QERR_OK);
    free(text);
    const qerr_json *c = qerr__json_get(qerr__json_get(qerr__json_get(j, "cases"), arch), "ppl");
    assert_non_null(c);
    double ppl = c->number;
    qerr__json_free(j);
    return ppl;
}

static double ppl_of(const qerr_model *m, const uint32_t *tok, int64_t n) {
    double ppl = 0;
    int64_t scored = 0;
    assert_int_equal(qerr_model_perplexity(NULL, m, tok, n, CTX, 0, &ppl, NULL, &scored),
                     QERR_OK);
    assert_int_equal(scored, WINDOWS * (CTX - 1));
    return ppl;
}

/* Largest |logit - transformers' logit| over window 0. */
static double logits_diff(const char *shared, const char *arch, const qerr_model *m,
                          const uint32_t *tok) {
    const int64_t d = m->cfg.hidden, V = m->cfg.vocab;
    float *X = malloc((size_t)(CTX * d) * sizeof(float));
    float *z = malloc((size_t)(CTX * V) * sizeof(float));
    float *want = malloc((size_t)(CTX * V) * sizeof(float));
    assert_int_equal(qerr__embed(m, tok, CTX, X), QERR_OK);
    for (int64_t l = 0; l < m->cfg.layers; l++)
        assert_int_equal(qerr__model_layer_run(NULL, m, l, X, 1, CTX), QERR_OK);
    assert_int_equal(qerr__head(m, X, CTX, z), QERR_OK);
    char path[1024];
    snprintf(path, sizeof path, "%s/archs/%s/logits_window0.f32", shared, arch);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(want, sizeof(float), (size_t)(CTX * V), f), (size_t)(CTX * V));
    fclose(f);
    double mx = 0;
    for (int64_t i = 0; i < CTX * V; i++) mx = fmax(mx, fabs((double)z[i] - want[i]));
    free(X);
    free(z);
    free(want);
    return mx;
}

/* The public config query sees the new keys, whichever form was read. */
static void check_config_query(const qerr_model *m, const char *arch) {
    int64_t v[4];
    double f[2];
    assert_int_equal(qerr_model_config_int(m, "head_dim", &v[0]), QERR_OK);
    assert_int_equal(qerr_model_config_int(m, "attention_bias", &v[1]), QERR_OK);
    assert_int_equal(qerr_model_config_int(m, "mlp_bias", &v[2]), QERR_OK);
    assert_int_equal(qerr_model_config_int(m, "qk_norm", &v[3]), QERR_OK);
    assert_int_equal(qerr_model_config_double(m, "rope_theta", &f[0]), QERR_OK);
    assert_int_equal(qerr_model_config_double(m, "rope_scaling.factor", &f[1]), QERR_OK);
    static const struct { const char *arch; int64_t hd, ab, mb, qk; double theta, factor; } want[] = {
        {"llama3", 48, 0, 0, 0, 5e5, 8}, {"llama-bias", 32, 1, 1, 0, 1e4, 0},
        {"qwen2", 32, 1, 0, 0, 1e6, 0},  {"qwen3", 64, 0, 0, 1, 1e6, 0},
        {"mistral", 32, 0, 0, 0, 1e6, 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (strcmp(want[i].arch, arch) != 0) continue;
        assert_true(v[0] == want[i].hd && v[1] == want[i].ab && v[2] == want[i].mb &&
                    v[3] == want[i].qk && f[0] == want[i].theta && f[1] == want[i].factor);
    }
}

/* Float forward of every fixture, from both config forms. */
static void float_matches_transformers(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(shared);
    for (int a = 0; a < NARCH; a++) {
        int64_t n;
        uint32_t *tok = read_tokens(shared, ARCHS[a], &n);
        const double want = golden_ppl(shared, ARCHS[a]);
        double ppl[2], diff[2];
        for (int form = 0; form < 2; form++) {
            char *dir = model_dir(shared, ARCHS[a], form ? "config.v4.json" : "config.json");
            qerr_model *m = NULL;
            if (qerr_model_load(&m, dir) != QERR_OK) fail_msg("%s: %s", ARCHS[a], qerr_last_error());
            check_config_query(m, ARCHS[a]);
            ppl[form] = ppl_of(m, tok, n);
            diff[form] = logits_diff(shared, ARCHS[a], m, tok);
            qerr_model_free(m);
            rm_model_dir(dir);
        }
        print_message("%-10s ppl %.10f (transformers %.10f, rel %.2e), logits max |diff| %.2e\n",
                      ARCHS[a], ppl[0], want, fabs(ppl[0] / want - 1), diff[0]);
        assert_true(fabs(ppl[0] / want - 1.0) < 1e-6);
        assert_true(diff[0] < 1e-4);
        assert_true(ppl[1] == ppl[0] && diff[1] == diff[0]); /* the two forms: identical */
        qerr_free(tok);
    }
}

/* GPTQ through the true-sequential pipeline, the container and apply on
 * every fixture. W8 must stay within 0.5% of the float perplexity (dropping
 * the biases of llama-bias costs 2.3%); the biases stay float and untouched;
 * the saved and reloaded container applies to the same model. */
static void pipeline_container_apply(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(shared);
    for (int a = 0; a < NARCH; a++) {
        int64_t n;
        uint32_t *tok = read_tokens(shared, ARCHS[a], &n);
        char *dir = model_dir(shared, ARCHS[a], "config.json");
        char qpath[1200];
        snprintf(qpath, sizeof qpath, "%s/q.qerr", dir);
        qerr_model *m = NULL, *m2 = NULL;
        assert_int_equal(qerr_model_load(&m, dir), QERR_OK);
        const double fp = ppl_of(m, tok, n);
        double ppl[2];
        static const char *const plans[2] = {"gptq:bits=8,group_size=128",
                                             "gptq:bits=4,group_size=128"};
        for (int p = 0; p < 2; p++) {
            qerr_qmodel *q = NULL, *q2 = NULL;
            if (qerr_model_quantize(NULL, m, plans[p], NULL, tok, n, 8, CTX, &q) != QERR_OK)
                fail_msg("%s: %s", ARCHS[a], qerr_last_error());
            assert_int_equal(qerr_qmodel_count(q), 7 * m->cfg.layers);
            assert_int_equal(qerr_qmodel_save(q, qpath), QERR_OK);
            assert_int_equal(qerr_qmodel_load(&q2, qpath), QERR_OK);
            assert_int_equal(qerr_model_load(&m2, dir), QERR_OK);
            assert_int_equal(qerr_model_apply(m2, q2), QERR_OK);
            for (int i = 0; i < m2->n; i++) { /* biases and norms: untouched */
                const char *name = m2->entries[i].name;
                if (strstr(name, ".weight") && !strstr(name, "norm")) continue;
                const qerr_tensor *t0, *t2; /* converted on demand */
                assert_int_equal(qerr_model_tensor(m, name, &t0), QERR_OK);
                assert_int_equal(qerr_model_tensor(m2, name, &t2), QERR_OK);
                assert_memory_equal(qerr_tensor_data(t2), qerr_tensor_data(t0),
                                    (size_t)qerr_tensor_numel(t0) * sizeof(float));
            }
            ppl[p] = ppl_of(m2, tok, n);
            qerr_model *m3 = NULL; /* the in-memory qmodel gives the same model */
            assert_int_equal(qerr_model_load(&m3, dir), QERR_OK);
            assert_int_equal(qerr_model_apply(m3, q), QERR_OK);
            assert_true(ppl_of(m3, tok, n) == ppl[p]);
            qerr_model_free(m3);
            qerr_model_free(m2);
            m2 = NULL;
            qerr_qmodel_free(q);
            qerr_qmodel_free(q2);
        }
        print_message("%-10s float %.4f  gptq W8g128 %.4f  W4g128 %.4f\n", ARCHS[a], fp, ppl[0],
                      ppl[1]);
        assert_true(fabs(ppl[0] / fp - 1.0) < 5e-3);
        assert_true(ppl[1] > fp * 0.9 && ppl[1] < fp * 1.5);
        qerr_model_free(m);
        rm_model_dir(dir);
        qerr_free(tok);
    }
}

/* Parse a config text; on failure the message must name `needle`. */
static int config_rc(const char *text, const char *needle, qerr_model_config *c) {
    qerr_json *j = NULL;
    int rc = qerr__json_parse(text, strlen(text), "config.json", &j);
    if (rc == QERR_OK) rc = qerr__config_from_json(j, "config.json", c);
    qerr__json_free(j);
    if (rc != QERR_OK && needle && !strstr(qerr_last_error(), needle))
        fail_msg("message \"%s\" does not name %s", qerr_last_error(), needle);
    return rc;
}

#define CFG(model_type, extra)                                                              \
    "{\"model_type\": \"" model_type "\", \"hidden_size\": 8, \"intermediate_size\": 8,"    \
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"num_key_value_heads\": 1,"    \
    " \"vocab_size\": 4, \"head_dim\": 6" extra "}"

/* Every key is read, harmless or refused by name; both RoPE forms agree. */
static void config_keys_refused_by_name(void **state) {
    (void)state;
    qerr_model_config c;
    assert_int_equal(config_rc(CFG("llama", ""), NULL, &c), QERR_OK);
    assert_int_equal(c.head_dim, 6); /* explicit head_dim: hidden % heads need not hold */
    assert_true(c.rope.type == QERR_ROPE_DEFAULT && c.rope.theta == 10000.0);
    static const struct { const char *text, *needle; int rc; } bad[] = {
        {CFG("llama", ", \"rope_parameters\": {\"rope_type\": \"yarn\", \"rope_theta\": 1e4,"
                      " \"factor\": 4}"), "yarn", QERR_E_UNSUPPORTED},
        {CFG("llama", ", \"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2}"), "dynamic",
         QERR_E_UNSUPPORTED},
        {CFG("llama", ", \"rope_scaling\": {\"rope_type\": \"longrope\"}"), "longrope",
         QERR_E_UNSUPPORTED},
        {CFG("llama", ", \"partial_rotary_factor\": 0.5"), "partial_rotary_factor",
         QERR_E_UNSUPPORTED},
        {CFG("llama", ", \"quantization_config\": {}"), "quantization_config",
         QERR_E_UNSUPPORTED},
        {CFG("mistral", ", \"mlp_bias\": true"), "mlp_bias", QERR_E_UNSUPPORTED},
        {CFG("qwen2", ", \"attention_bias\": false"), "attention_bias", QERR_E_UNSUPPORTED},
        {CFG("llama", ", \"rope_parameters\": {\"rope_type\": \"linear\", \"rope_theta\": 1e4,"
                      " \"factor\": 2, \"attention_factor\": 1}"),
         "rope_parameters.attention_factor", QERR_E_UNSUPPORTED},
        {CFG("llama", ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8,"
                      " \"low_freq_factor\": 1, \"high_freq_factor\": 4}"),
         "original_max_position_embeddings", QERR_E_FORMAT},
        {CFG("llama", ", \"rope_scaling\": {\"rope_type\": \"linear\"}"), "factor",
         QERR_E_FORMAT},
        {CFG("llama", ", \"rope_theta\": 5e5, \"rope_parameters\": {\"rope_type\": \"default\","
                      " \"rope_theta\": 1e6}"), "disagree", QERR_E_FORMAT},
        {CFG("llama", ", \"hidden_act\": \"gelu\""), "hidden_act", QERR_E_UNSUPPORTED},
        {CFG("gemma", ""), "gemma", QERR_E_UNSUPPORTED},
        {CFG("llama", ", \"attention_bias\": 1"), "attention_bias", QERR_E_FORMAT},
        {CFG("llama", ", \"layer_types\": [\"full_attention\", \"sliding_attention\"]"),
         "layer_types[1]", QERR_E_UNSUPPORTED},
        {CFG("qwen2", ", \"layer_types\": [\"full_attention\"]"), "layer_types",
         QERR_E_FORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (config_rc(bad[i].text, bad[i].needle, &c) != bad[i].rc)
            fail_msg("case %zu: %s", i, qerr_last_error());
    /* transformers 4 and 5 forms of the same scaling give the same config */
    qerr_model_config c4, c5;
    assert_int_equal(config_rc(CFG("llama", ", \"rope_theta\": 5e5, \"rope_scaling\":"
                                            " {\"type\": \"linear\", \"factor\": 4}"),
                               NULL, &c4),
                     QERR_OK);
    assert_int_equal(config_rc(CFG("llama", ", \"rope_parameters\": {\"rope_type\": \"linear\","
                                            " \"factor\": 4, \"rope_theta\": 5e5}"),
                               NULL, &c5),
                     QERR_OK);
    assert_true(c4.rope.type == QERR_ROPE_LINEAR && c4.rope.theta == 5e5);
    assert_true(qerr__rope_inv_freq(&c4.rope, 1, 6) == qerr__rope_inv_freq(&c5.rope, 1, 6));
    assert_true(qerr__rope_inv_freq(&c4.rope, 1, 6) == 1.0 / pow(5e5, 2.0 / 6.0) / 4.0);
    /* biases and norms per model type */
    assert_int_equal(config_rc(CFG("qwen2", ""), NULL, &c), QERR_OK);
    assert_true(c.bias[QERR_LIN_Q] && c.bias[QERR_LIN_V] && !c.bias[QERR_LIN_O] &&
                !c.bias[QERR_LIN_DOWN] && !c.qk_norm);
    assert_int_equal(config_rc(CFG("qwen3", ", \"attention_bias\": false"), NULL, &c), QERR_OK);
    assert_true(!c.bias[QERR_LIN_Q] && c.qk_norm);
    assert_int_equal(config_rc(CFG("llama", ", \"attention_bias\": true, \"mlp_bias\": true"),
                               NULL, &c),
                     QERR_OK);
    for (int l = 0; l < QERR_LIN_COUNT; l++) assert_true(c.bias[l]);
    /* sliding windows: Mistral whenever set, Qwen only when used */
    assert_int_equal(config_rc(CFG("mistral", ", \"sliding_window\": 32"), NULL, &c), QERR_OK);
    assert_int_equal(c.sliding_window, 32);
    assert_int_equal(qerr__config_check_window(&c, 32, "t"), QERR_OK);
    assert_int_equal(qerr__config_check_window(&c, 33, "t"), QERR_E_UNSUPPORTED);
    assert_int_equal(config_rc(CFG("qwen2", ", \"sliding_window\": 32, \"use_sliding_window\":"
                                            " false"),
                               NULL, &c),
                     QERR_OK);
    assert_int_equal(c.sliding_window, 0);
    assert_int_equal(config_rc(CFG("qwen3", ", \"sliding_window\": 32, \"layer_types\":"
                                            " [\"full_attention\", \"sliding_attention\"]"),
                               NULL, &c),
                     QERR_OK);
    assert_int_equal(c.sliding_window, 32);
}

/* A fixture's tensors plus `extra` (F32, [n] or [n, n1] when n1 > 0, zeros)
 * written into dir. */
static void write_weights_plus2(const char *shared, const char *arch, const char *dir,
                                const char *extra, int64_t n, int64_t n1) {
    char path[1024];
    snprintf(path, sizeof path, "%s/archs/%s/model.safetensors", shared, arch);
    qerr_st_file f;
    assert_int_equal(qerr__st_open(path, &f), QERR_OK);
    mt_tensor *t = calloc((size_t)f.n + 1, sizeof *t);
    const int64_t numel = n1 > 0 ? n * n1 : n;
    float *z = calloc((size_t)numel, sizeof *z);
    for (int i = 0; i < f.n; i++) {
        assert_int_equal(f.entries[i].dtype, QERR_DTYPE_F32);
        t[i] = (mt_tensor){f.entries[i].name, "F32", f.entries[i].ndim, {0}, f.entries[i].data,
                           f.entries[i].nbytes};
        memcpy(t[i].shape, f.entries[i].shape, sizeof(int64_t) * (size_t)f.entries[i].ndim);
    }
    t[f.n] = (mt_tensor){extra, "F32", n1 > 0 ? 2 : 1, {n, n1}, z, (size_t)numel * sizeof(float)};
    size_t len;
    uint8_t *img = mt_safetensors(t, f.n + 1, NULL, &len);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    mt_write(dir, "model.safetensors", img, len);
    free(img);
    free(z);
    free(t);
    qerr__st_close(&f);
}

/* Fixture `arch`'s config.json with its text `from` replaced by `to`. */
static char *edited_config(const char *shared, const char *arch, const char *from,
                           const char *to) {
    char src[1024];
    snprintf(src, sizeof src, "%s/archs/%s/config.json", shared, arch);
    uint8_t *text;
    size_t len;
    assert_int_equal(qerr__read_file(src, &text, &len, 1 << 20), QERR_OK);
    char *orig = calloc(1, len + 1), *out = calloc(1, len + strlen(to) + 1);
    memcpy(orig, text, len); /* NUL-terminated */
    free(text);
    const char *at = strstr(orig, from);
    assert_non_null(at);
    memcpy(out, orig, (size_t)(at - orig));
    strcat(out, to);
    strcat(out, at + strlen(from));
    free(orig);
    return out;
}

static void write_weights_plus(const char *shared, const char *arch, const char *dir,
                               const char *extra, int64_t n) {
    write_weights_plus2(shared, arch, dir, extra, n, 0);
}

/* Every tensor is read or refused by name; rotary_emb.inv_freq is skipped. */
static void every_tensor_used(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(shared);
    qerr_model *m = NULL;
    char *dir = model_dir(shared, "llama3", "config.json");
    write_weights_plus(shared, "llama3", dir, "model.layers.1.self_attn.rotary_emb.inv_freq", 24);
    assert_int_equal(qerr_model_load(&m, dir), QERR_OK);
    qerr_model_free(m);
    static const char *const refused[] = {"model.layers.0.self_attn.q_proj.bias",
                                          "model.layers.1.self_attn.q_norm.weight",
                                          "model.layers.2.input_layernorm.weight",
                                          "model.layers.01.input_layernorm.weight",
                                          "model.final_norm.weight"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        write_weights_plus(shared, "llama3", dir, refused[i], 48);
        assert_int_equal(qerr_model_load(&m, dir), QERR_E_UNSUPPORTED);
        assert_non_null(strstr(qerr_last_error(), refused[i]));
    }
    /* tied embeddings with a different lm_head stored: transformers reads the
     * embedding for both, so the stored lm_head would be unread */
    write_weights_plus2(shared, "llama3", dir, "lm_head.weight", 1024, 128);
    assert_int_equal(qerr_model_load(&m, dir), QERR_E_UNSUPPORTED);
    assert_non_null(strstr(qerr_last_error(), "lm_head.weight"));
    rm_model_dir(dir);
    /* llama-bias weights under a config without biases: the biases are unread */
    char *cfg = edited_config(shared, "llama-bias", "\"mlp_bias\": true", "\"mlp_bias\": 0");
    dir = model_dir(shared, "llama-bias", "config.json");
    mt_write(dir, "config.json", cfg, strlen(cfg));
    assert_int_equal(qerr_model_load(&m, dir), QERR_E_FORMAT); /* not a bool */
    free(cfg);
    cfg = edited_config(shared, "llama-bias", "\"mlp_bias\": true", "\"mlp_bias\": false");
    mt_write(dir, "config.json", cfg, strlen(cfg));
    assert_int_equal(qerr_model_load(&m, dir), QERR_E_UNSUPPORTED);
    assert_non_null(strstr(qerr_last_error(), "mlp.down_proj.bias"));
    free(cfg);
    rm_model_dir(dir);
}

/* A Mistral sliding window longer than the windows changes nothing; a
 * shorter one is refused by name. */
static void sliding_window(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(shared);
    char *cfg = edited_config(shared, "mistral", "\"sliding_window\": null",
                              "\"sliding_window\": 64");
    char *dir = model_dir(shared, "mistral", "config.json");
    mt_write(dir, "config.json", cfg, strlen(cfg));
    int64_t n;
    uint32_t *tok = read_tokens(shared, "mistral", &n);
    qerr_model *m = NULL;
    assert_int_equal(qerr_model_load(&m, dir), QERR_OK);
    assert_true(fabs(ppl_of(m, tok, n) / golden_ppl(shared, "mistral") - 1) < 1e-6);
    assert_int_equal(qerr_model_perplexity(NULL, m, tok, n, 128, 0, NULL, NULL, NULL),
                     QERR_E_UNSUPPORTED);
    assert_non_null(strstr(qerr_last_error(), "sliding_window"));
    qerr_qmodel *q = NULL;
    assert_int_equal(qerr_model_quantize(NULL, m, "rtn:bits=4", NULL, tok, n, 2, 128, &q),
                     QERR_E_UNSUPPORTED);
    qerr_model_free(m);
    qerr_free(tok);
    free(cfg);
    rm_model_dir(dir);
}

/* The block engine (FlatQuant, OmniQuant, CQE+ block-wise, deployed W*A*
 * layers) computes every fixture's layers as the float forward: RoPE
 * scaling, head_dim, biases, q/k norms. */
static void block_engine_matches(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(shared);
    const char *const *archs = ARCHS;
    for (int a = 0; a < NARCH; a++) {
        char *dir = model_dir(shared, archs[a], "config.json");
        int64_t n;
        uint32_t *tok = read_tokens(shared, archs[a], &n);
        qerr_model *m = NULL;
        assert_int_equal(qerr_model_load(&m, dir), QERR_OK);
        const int64_t d = m->cfg.hidden, rows = 2 * CTX;
        float *X = malloc((size_t)(rows * d) * sizeof(float));
        float *Y = malloc((size_t)(rows * d) * sizeof(float));
        assert_int_equal(qerr__embed(m, tok, rows, X), QERR_OK);
        qerr_block_config bc;
        qerr__block_config_from_model(&m->cfg, &bc);
        qerr_block_cache_f *c = NULL;
        assert_int_equal(qerr__block_cache_create_f(&bc, 2, CTX, &c), QERR_OK);
        for (int64_t l = 0; l < m->cfg.layers; l++) {
            qerr_layer_weights lw;
            qerr__model_layer(m, l, &lw);
            qerr_block_weights_f w;
            qerr__block_weights_from_layer(&lw, &w);
            assert_int_equal(qerr__block_forward_f(c, &w, NULL, X, Y), QERR_OK);
            assert_int_equal(qerr__layer_forward(NULL, &m->cfg, &lw, X, 2, CTX, NULL, NULL, -1),
                             QERR_OK);
            double diff = 0, mag = 0;
            for (int64_t i = 0; i < rows * d; i++) {
                diff = fmax(diff, fabs((double)X[i] - Y[i]));
                mag = fmax(mag, fabs((double)X[i]));
            }
            print_message("%s layer %lld: max |block - model| %.2e (max |h| %.2f)\n", archs[a],
                          (long long)l, diff, mag);
            assert_true(diff <= 1e-5 * mag);
        }
        qerr__block_cache_free_f(c);
        free(X);
        free(Y);
        qerr_model_free(m);
        qerr_free(tok);
        rm_model_dir(dir);
    }
}

typedef struct {
    qerr_block_cache_d *c;
    qerr_block_weights_d w;
    double *x, *y, *r;
    int64_t n;
} fd_block;

static double fd_loss(fd_block *b) {
    assert_int_equal(qerr__block_forward_d(b->c, &b->w, NULL, b->x, b->y), QERR_OK);
    double s = 0;
    for (int64_t i = 0; i < b->n; i++) s += b->y[i] * b->r[i];
    return s;
}

/* Backward of the block engine with every bias and Qwen3's q/k norms (and
 * llama3 RoPE, head_dim != hidden/heads) against central differences. */
static void block_engine_gradients(void **state) {
    (void)state;
    qerr_block_config cfg = {8, 12, 2, 1, 6, 1e-5, 1e4, {QERR_ROPE_LLAMA3, 1e4, 4, 1, 4, 8}, {0}, true};
    for (int l = 0; l < QERR_LIN_COUNT; l++) cfg.bias[l] = true;
    const int64_t B = 2, T = 5, rows = B * T;
    fd_block b = {NULL, {{NULL}, NULL, NULL, {NULL}, NULL, NULL}, NULL, NULL, NULL, rows * 8};
    double *wl[QERR_LIN_COUNT], *bl[QERR_LIN_COUNT], *gw[QERR_LIN_COUNT];
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        int64_t o, i;
        qerr__block_linear_shape(&cfg, l, &o, &i);
        b.w.w[l] = wl[l] = tu_random_d(o * i, 10 + (uint64_t)l, 0.6, 0);
        b.w.b[l] = bl[l] = tu_random_d(o, 30 + (uint64_t)l, 0.3, 0);
        gw[l] = calloc((size_t)(o * i), sizeof(double));
    }
    double *ln1 = tu_random_d(8, 20, 0.3, 1), *ln2 = tu_random_d(8, 21, 0.3, 1);
    double *qn = tu_random_d(6, 22, 0.3, 1), *kn = tu_random_d(6, 23, 0.3, 1);
    b.w.ln1 = ln1;
    b.w.ln2 = ln2;
    b.w.qn = qn;
    b.w.kn = kn;
    b.x = tu_random_d(b.n, 24, 1.0, 0);
    b.r = tu_random_d(b.n, 25, 1.0, 0);
    b.y = calloc((size_t)b.n, sizeof(double));
    double *gx = calloc((size_t)b.n, sizeof(double));
    assert_int_equal(qerr__block_cache_create_d(&cfg, B, T, &b.c), QERR_OK);
    fd_loss(&b);
    qerr_block_grads_d gr = {{NULL}, NULL, NULL};
    for (int l = 0; l < QERR_LIN_COUNT; l++) gr.w[l] = gw[l];
    assert_int_equal(qerr__block_backward_d(b.c, &b.w, NULL, b.x, b.r, gx, &gr), QERR_OK);
    double worst = 0;
    const double h = 1e-6;
    for (int64_t i = 0; i < b.n; i++) { /* the input: through every path */
        const double x0 = b.x[i];
        b.x[i] = x0 + h;
        double lp = fd_loss(&b);
        b.x[i] = x0 - h;
        double lm = fd_loss(&b);
        b.x[i] = x0;
        worst = fmax(worst, fabs((lp - lm) / (2 * h) - gx[i]) / fmax(1.0, fabs(gx[i])));
    }
    for (int l = 0; l < QERR_LIN_COUNT; l++) /* weights before the norms and biases */
        for (int64_t k = 0; k < 6; k++) {
            const double w0 = wl[l][k * 5];
            wl[l][k * 5] = w0 + h;
            double lp = fd_loss(&b);
            wl[l][k * 5] = w0 - h;
            double lm = fd_loss(&b);
            wl[l][k * 5] = w0;
            const double g = gw[l][k * 5];
            worst = fmax(worst, fabs((lp - lm) / (2 * h) - g) / fmax(1.0, fabs(g)));
        }
    print_message("block with biases and q/k norms: worst gradient error %.2e\n", worst);
    assert_true(worst < 1e-6);
    qerr__block_cache_free_d(b.c);
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        free(wl[l]);
        free(bl[l]);
        free(gw[l]);
    }
    free(ln1); free(ln2); free(qn); free(kn); free(b.x); free(b.r); free(b.y); free(gx);
}

/* Block-wise methods: weight-only OmniQuant and CQE+ run on every fixture
 * (biases and q/k norms in the block engine); FlatQuant and W*A* LET, whose
 * transforms cannot fold into a bias, run on Llama-3 and Mistral and refuse
 * the others by name (QERR_E_UNSUPPORTED). */
static void blockwise_methods(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(shared);
    static const char *const plans[] = {"flatquant:bits=4,a_bits=4,epochs=1",
                                        "omniquant:scope=block,bits=4,group_size=64,epochs=1",
                                        "cqe:scope=block,bits=4,group_size=64,epochs=1",
                                        "omniquant:scope=block,bits=4,a_bits=8,epochs=1"};
    /* plans whose transforms fold into norms and weights, not into biases */
    static const bool folds[] = {true, false, false, true};
    for (int a = 0; a < NARCH; a++) {
        char *dir = model_dir(shared, ARCHS[a], "config.json");
        int64_t n;
        uint32_t *tok = read_tokens(shared, ARCHS[a], &n);
        qerr_model *m = NULL;
        assert_int_equal(qerr_model_load(&m, dir), QERR_OK);
        const bool extras = strcmp(ARCHS[a], "llama3") != 0 && strcmp(ARCHS[a], "mistral") != 0;
        const double fp = ppl_of(m, tok, n);
        for (size_t p = 0; p < sizeof plans / sizeof plans[0]; p++) {
            qerr_qmodel *q = NULL;
            int rc = qerr_model_quantize(NULL, m, plans[p], NULL, tok, n, 4, CTX, &q);
            if (extras && folds[p]) {
                assert_int_equal(rc, QERR_E_UNSUPPORTED);
                assert_non_null(strstr(qerr_last_error(), a == 3 ? "q_norm" : ".bias"));
                continue;
            }
            if (rc != QERR_OK) fail_msg("%s %s: %s", ARCHS[a], plans[p], qerr_last_error());
            qerr_model *mq = NULL;
            assert_int_equal(qerr_model_load(&mq, dir), QERR_OK);
            assert_int_equal(qerr_model_apply(mq, q), QERR_OK);
            const double ppl = ppl_of(mq, tok, n);
            print_message("%-8s %s: ppl %.4f (float %.4f)\n", ARCHS[a], plans[p], ppl, fp);
            assert_true(ppl > fp * 0.9 && ppl < fp * 1.5);
            qerr_model_free(mq);
            qerr_qmodel_free(q);
        }
        qerr_model_free(m);
        qerr_free(tok);
        rm_model_dir(dir);
    }
}

/* GGUF of architecture llama: Mistral without a sliding window round-trips
 * to the same perplexity; what llama metadata cannot say is refused. */
static void gguf_export(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(shared);
    for (int a = 0; a < NARCH; a++) {
        char *dir = model_dir(shared, ARCHS[a], "config.json");
        char path[1200];
        snprintf(path, sizeof path, "%s/q.qerr", dir); /* removed with the directory */
        qerr_model *m = NULL, *g = NULL;
        assert_int_equal(qerr_model_load(&m, dir), QERR_OK);
        int rc = qerr_gguf_save(m, NULL, "f32", NULL, path);
        if (strcmp(ARCHS[a], "mistral") != 0) {
            assert_int_equal(rc, QERR_E_UNSUPPORTED);
            print_message("%-10s GGUF export refused: %s\n", ARCHS[a], qerr_last_error());
        } else {
            assert_int_equal(rc, QERR_OK);
            assert_int_equal(qerr_model_load(&g, path), QERR_OK);
            int64_t n;
            uint32_t *tok = read_tokens(shared, ARCHS[a], &n);
            assert_true(ppl_of(g, tok, n) == ppl_of(m, tok, n));
            qerr_free(tok);
            qerr_model_free(g);
        }
        qerr_model_free(m);
        rm_model_dir(dir);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(float_matches_transformers),
        cmocka_unit_test(pipeline_container_apply),
        cmocka_unit_test(config_keys_refused_by_name),
        cmocka_unit_test(every_tensor_used),
        cmocka_unit_test(sliding_window),
        cmocka_unit_test(block_engine_matches),
        cmocka_unit_test(block_engine_gradients),
        cmocka_unit_test(blockwise_methods),
        cmocka_unit_test(gguf_export),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
