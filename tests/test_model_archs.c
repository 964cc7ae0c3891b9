/* The five architecture fixtures of ../shared/data/archs (Llama-3 RoPE
 * scaling and head_dim, LLaMA with attention and MLP biases, Qwen2, Qwen3,
 * Mistral), made and saved by Hugging Face transformers: perplexity and the
 * logits of window 0 against transformers' float64 values, the same from the
 * transformers-4 form of each config, and the quantization pipeline, the
 * container and apply on each (biases stay float and keep their effect). */
#include "testutil.h"
#include "model_testutil.h"
#include "llama/model.h"

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
                const qerr_tensor *t0 = m->entries[qerr__model_find(m, name)].t;
                assert_memory_equal(m2->entries[i].t->data, t0->data,
                                    (size_t)t0->numel * sizeof(float));
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(float_matches_transformers),
        cmocka_unit_test(pipeline_container_apply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
