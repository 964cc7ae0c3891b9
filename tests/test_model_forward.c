/* The float forward pass against a direct per-token float64 reference on a
 * tiny random model written from here; tied embeddings; BF16/F16 weights;
 * greedy decoding of stories260k against llama2.c's published output. */
#include "testutil.h"
#include "model_testutil.h"
#include "llama/model.h"

#include <math.h>

enum { D = 16, FF = 24, L = 2, NH = 4, KV = 2, HD = D / NH, V = 32 };
static const double EPS = 1e-5, THETA = 10000.0;

typedef struct {
    float embed[V * D], head[V * D], norm[D];
    float an[L][D], mn[L][D], q[L][D * D], k[L][KV * HD * D], v[L][KV * HD * D], o[L][D * D];
    float gate[L][FF * D], up[L][FF * D], down[L][D * FF];
} tiny;

static void tiny_init(tiny *w, uint64_t seed) {
    float *all = (float *)w;
    const int64_t n = (int64_t)(sizeof *w / sizeof(float));
    tu_random(all, n, seed);
    for (int64_t i = 0; i < n; i++) all[i] *= 0.4f;
    for (int i = 0; i < D; i++) {
        w->norm[i] = 1.0f + 0.25f * w->norm[i];
        for (int l = 0; l < L; l++) {
            w->an[l][i] = 1.0f + 0.25f * w->an[l][i];
            w->mn[l][i] = 1.0f + 0.25f * w->mn[l][i];
        }
    }
}

static const char CONFIG[] =
    "{\"model_type\": \"llama\", \"hidden_size\": 16, \"intermediate_size\": 24,\n"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,\n"
    " \"vocab_size\": 32, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0,\n"
    " \"hidden_act\": \"silu\", \"tie_word_embeddings\": %s}";

static const char *const FILES[] = {"config.json", "model.safetensors"};

static const char *const SHARD_FILES[] = {"config.json", "model.safetensors.index.json",
                                          "model-00001-of-00002.safetensors",
                                          "model-00002-of-00002.safetensors"};

/* Write the model; tied: store only lm_head (= embed) and say so in metadata;
 * shards: split the tensors over two files listed in an index. */
static char *write_tiny(const tiny *w, bool tied, bool shards) {
    char *dir = mt_tempdir();
    assert_non_null(dir);
    char cfg[1024];
    snprintf(cfg, sizeof cfg, CONFIG, tied ? "true" : "false");
    mt_write(dir, "config.json", cfg, strlen(cfg));
    mt_tensor t[4 + 9 * L];
    char names[9 * L][96];
    int n = 0;
    t[n++] = (mt_tensor){"lm_head.weight", "F32", 2, {V, D}, tied ? w->embed : w->head, sizeof w->head};
    if (!tied) t[n++] = (mt_tensor){"model.embed_tokens.weight", "F32", 2, {V, D}, w->embed, sizeof w->embed};
    t[n++] = (mt_tensor){"model.norm.weight", "F32", 1, {D}, w->norm, sizeof w->norm};
    for (int l = 0; l < L; l++) {
        const struct { const char *s; int ndim; int64_t a, b; const float *p; size_t nb; } e[9] = {
            {"input_layernorm", 1, D, 0, w->an[l], sizeof w->an[l]},
            {"post_attention_layernorm", 1, D, 0, w->mn[l], sizeof w->mn[l]},
            {"self_attn.q_proj", 2, D, D, w->q[l], sizeof w->q[l]},
            {"self_attn.k_proj", 2, KV * HD, D, w->k[l], sizeof w->k[l]},
            {"self_attn.v_proj", 2, KV * HD, D, w->v[l], sizeof w->v[l]},
            {"self_attn.o_proj", 2, D, D, w->o[l], sizeof w->o[l]},
            {"mlp.gate_proj", 2, FF, D, w->gate[l], sizeof w->gate[l]},
            {"mlp.up_proj", 2, FF, D, w->up[l], sizeof w->up[l]},
            {"mlp.down_proj", 2, D, FF, w->down[l], sizeof w->down[l]},
        };
        for (int k = 0; k < 9; k++) {
            char *nm = names[l * 9 + k];
            snprintf(nm, 96, "model.layers.%d.%s.weight", l, e[k].s);
            t[n++] = (mt_tensor){nm, "F32", e[k].ndim, {e[k].a, e[k].b}, e[k].p, e[k].nb};
        }
    }
    size_t len;
    if (shards) { /* two shards and an index, as Hugging Face writes large models */
        const int half = n / 2;
        uint8_t *b1 = mt_safetensors(t, half, NULL, &len);
        mt_write(dir, SHARD_FILES[2], b1, len);
        free(b1);
        b1 = mt_safetensors(t + half, n - half, NULL, &len);
        mt_write(dir, SHARD_FILES[3], b1, len);
        free(b1);
        char *idx = malloc(16384);
        size_t k = (size_t)snprintf(idx, 16384, "{\"metadata\": {}, \"weight_map\": {");
        for (int i = 0; i < n; i++)
            k += (size_t)snprintf(idx + k, 16384 - k, "%s\"%s\": \"%s\"", i ? ", " : "",
                                  t[i].name, SHARD_FILES[i < half ? 2 : 3]);
        k += (size_t)snprintf(idx + k, 16384 - k, "}}");
        mt_write(dir, SHARD_FILES[1], idx, k);
        free(idx);
        return dir;
    }
    uint8_t *buf = mt_safetensors(t, n, tied ? "{\"format\":\"pt\",\"model.embed_tokens.weight\":\"lm_head.weight\"}" : NULL, &len);
    mt_write(dir, "model.safetensors", buf, len);
    free(buf);
    return dir;
}

/* ---- the reference: one token at a time, float64, no batching ---------- */
static void ref_matvec(const float *W, int rows, int cols, const double *x, double *y) {
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++) s += (double)W[r * cols + c] * x[c];
        y[r] = s;
    }
}

static void ref_norm(const double *x, const float *g, double *y) {
    double ss = 0;
    for (int i = 0; i < D; i++) ss += x[i] * x[i];
    double inv = 1.0 / sqrt(ss / D + EPS);
    for (int i = 0; i < D; i++) y[i] = g[i] * x[i] * inv;
}

static void ref_rope(double *x, int pos) { /* rotate_half on one head vector */
    for (int i = 0; i < HD / 2; i++) {
        double f = pos * pow(THETA, -2.0 * i / HD), c = cos(f), s = sin(f);
        double a = x[i], b = x[i + HD / 2];
        x[i] = a * c - b * s;
        x[i + HD / 2] = b * c + a * s;
    }
}

/* logits [T][V] of one window */
static void ref_window(const tiny *w, const uint32_t *tok, int T, double *logits) {
    double x[64][D], K[64][KV * HD], Vv[64][KV * HD];
    for (int t = 0; t < T; t++)
        for (int i = 0; i < D; i++) x[t][i] = w->embed[tok[t] * D + i];
    for (int l = 0; l < L; l++) {
        double Q[64][D], att[64][D], xn[D], tmp[FF], g[FF], u[FF];
        for (int t = 0; t < T; t++) {
            ref_norm(x[t], w->an[l], xn);
            ref_matvec(w->q[l], D, D, xn, Q[t]);
            ref_matvec(w->k[l], KV * HD, D, xn, K[t]);
            ref_matvec(w->v[l], KV * HD, D, xn, Vv[t]);
            for (int h = 0; h < NH; h++) ref_rope(Q[t] + h * HD, t);
            for (int h = 0; h < KV; h++) ref_rope(K[t] + h * HD, t);
        }
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < NH; h++) {
                const int kvh = h / (NH / KV);
                double p[64], mx = -1e300, sum = 0;
                for (int s = 0; s <= t; s++) {
                    double dot = 0;
                    for (int i = 0; i < HD; i++) dot += Q[t][h * HD + i] * K[s][kvh * HD + i];
                    p[s] = dot / sqrt((double)HD);
                    mx = p[s] > mx ? p[s] : mx;
                }
                for (int s = 0; s <= t; s++) sum += (p[s] = exp(p[s] - mx));
                for (int i = 0; i < HD; i++) {
                    double o = 0;
                    for (int s = 0; s <= t; s++) o += p[s] / sum * Vv[s][kvh * HD + i];
                    att[t][h * HD + i] = o;
                }
            }
        }
        for (int t = 0; t < T; t++) {
            ref_matvec(w->o[l], D, D, att[t], tmp);
            for (int i = 0; i < D; i++) x[t][i] += tmp[i];
            ref_norm(x[t], w->mn[l], xn);
            ref_matvec(w->gate[l], FF, D, xn, g);
            ref_matvec(w->up[l], FF, D, xn, u);
            for (int i = 0; i < FF; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
            ref_matvec(w->down[l], D, FF, g, tmp);
            for (int i = 0; i < D; i++) x[t][i] += tmp[i];
        }
    }
    for (int t = 0; t < T; t++) {
        double xn[D];
        ref_norm(x[t], w->norm, xn);
        ref_matvec(w->head, V, D, xn, logits + t * V);
    }
}

static void forward_matches_reference(void **state) {
    (void)state;
    static tiny w;
    tiny_init(&w, 7);
    char *dir = write_tiny(&w, false, false);
    qerr_model *m = NULL;
    assert_int_equal(qerr_model_load(&m, dir), QERR_OK);
    enum { T = 9, NW = 3 };
    uint32_t tok[NW * T + 4];
    for (int i = 0; i < NW * T + 4; i++) tok[i] = (uint32_t)((i * 7 + 3) % V);
    /* library: all windows batched, layer by layer */
    float X[NW * T * D], logits[NW * T * V];
    assert_int_equal(qerr__embed(m, tok, NW * T, X), QERR_OK);
    for (int l = 0; l < L; l++) {
        qerr_layer_weights lw;
        qerr__model_layer(m, l, &lw);
        assert_int_equal(qerr__layer_forward(NULL, &m->cfg, &lw, X, NW, T, NULL, NULL, -1),
                         QERR_OK);
    }
    assert_int_equal(qerr__head(m, X, NW * T, logits), QERR_OK);
    double ref[T * V], worst = 0, nll = 0;
    for (int win = 0; win < NW; win++) {
        ref_window(&w, tok + win * T, T, ref);
        for (int i = 0; i < T * V; i++) {
            double e = fabs(logits[win * T * V + i] - ref[i]) / fmax(1.0, fabs(ref[i]));
            worst = e > worst ? e : worst;
        }
        for (int t = 0; t + 1 < T; t++) {
            double mx = -1e300, s = 0;
            for (int k = 0; k < V; k++) mx = fmax(mx, ref[t * V + k]);
            for (int k = 0; k < V; k++) s += exp(ref[t * V + k] - mx);
            nll += log(s) + mx - ref[t * V + tok[win * T + t + 1]];
        }
    }
    print_message("max relative logit difference %.3g\n", worst);
    assert_true(worst < 1e-5);
    /* perplexity: same windows (the 4 tail tokens are dropped) */
    double ppl, mean;
    int64_t scored;
    assert_int_equal(qerr_model_perplexity(NULL, m, tok, NW * T + 4, T, 0, &ppl, &mean, &scored),
                     QERR_OK);
    assert_int_equal(scored, NW * (T - 1));
    assert_true(fabs(mean - nll / scored) < 1e-5 * fabs(nll / scored));
    assert_true(fabs(ppl - exp(mean)) < 1e-9 * ppl);
    /* max_windows caps the windows */
    assert_int_equal(qerr_model_perplexity(NULL, m, tok, NW * T + 4, T, 1, NULL, NULL, &scored),
                     QERR_OK);
    assert_int_equal(scored, T - 1);
    /* config accessors */
    int64_t iv;
    double dv;
    assert_int_equal(qerr_model_config_int(m, "num_key_value_heads", &iv), QERR_OK);
    assert_int_equal(iv, KV);
    assert_int_equal(qerr_model_config_double(m, "rope_theta", &dv), QERR_OK);
    assert_true(dv == THETA);
    assert_int_equal(qerr_model_config_int(m, "nope", &iv), QERR_E_NOT_FOUND);
    qerr_model_free(m);
    mt_rmdir(dir, FILES, 2);
}

static void stop_after_leaves_states(void **state) {
    (void)state;
    static tiny w;
    tiny_init(&w, 8);
    char *dir = write_tiny(&w, false, false);
    qerr_model *m = NULL;
    assert_int_equal(qerr_model_load(&m, dir), QERR_OK);
    uint32_t tok[10];
    for (int i = 0; i < 10; i++) tok[i] = (uint32_t)i;
    float X[10 * D], X0[10 * D];
    assert_int_equal(qerr__embed(m, tok, 10, X), QERR_OK);
    memcpy(X0, X, sizeof X);
    qerr_layer_weights lw;
    qerr__model_layer(m, 0, &lw);
    for (int stop = QERR_LIN_Q; stop <= QERR_LIN_DOWN; stop++) {
        if (stop == QERR_LIN_K || stop == QERR_LIN_V || stop == QERR_LIN_UP) continue;
        assert_int_equal(qerr__layer_forward(NULL, &m->cfg, &lw, X, 2, 5, NULL, NULL, stop),
                         QERR_OK);
        assert_memory_equal(X, X0, sizeof X);
    }
    /* saving h1 at the gate/up stop and finishing from it gives the same bits */
    float h1[10 * D], Y[10 * D];
    memcpy(Y, X0, sizeof Y);
    assert_int_equal(qerr__layer_forward_ex(NULL, &m->cfg, &lw, Y, 2, 5, NULL, NULL,
                                            QERR_LIN_GATE, h1, NULL),
                     QERR_OK);
    assert_memory_equal(Y, X0, sizeof Y);
    assert_int_equal(qerr__layer_forward_ex(NULL, &m->cfg, &lw, Y, 2, 5, NULL, NULL, -1, NULL, h1),
                     QERR_OK);
    assert_int_equal(qerr__layer_forward(NULL, &m->cfg, &lw, X, 2, 5, NULL, NULL, -1), QERR_OK);
    assert_true(memcmp(X, X0, sizeof X) != 0);
    assert_memory_equal(X, Y, sizeof X);
    qerr_model_free(m);
    mt_rmdir(dir, FILES, 2);
}

static void tied_embeddings_either_name(void **state) {
    (void)state;
    static tiny w;
    tiny_init(&w, 9);
    memcpy(w.head, w.embed, sizeof w.head);
    char *dir = write_tiny(&w, true, false);
    qerr_model *m = NULL;
    assert_int_equal(qerr_model_load(&m, dir), QERR_OK);
    const qerr_tensor *e = NULL, *h = NULL;
    assert_int_equal(qerr_model_tensor(m, "model.embed_tokens.weight", &e), QERR_OK);
    assert_int_equal(qerr_model_tensor(m, "lm_head.weight", &h), QERR_OK);
    assert_memory_equal(qerr_tensor_data(e), w.embed, sizeof w.embed);
    assert_memory_equal(qerr_tensor_data(h), w.embed, sizeof w.embed);
    /* and the forward pass matches the reference with head == embed */
    uint32_t tok[6] = {1, 5, 9, 2, 31, 0};
    float X[6 * D], logits[6 * V];
    assert_int_equal(qerr__embed(m, tok, 6, X), QERR_OK);
    for (int l = 0; l < L; l++) {
        qerr_layer_weights lw;
        qerr__model_layer(m, l, &lw);
        assert_int_equal(qerr__layer_forward(NULL, &m->cfg, &lw, X, 1, 6, NULL, NULL, -1), QERR_OK);
    }
    qerr__head(m, X, 6, logits);
    double ref[6 * V];
    ref_window(&w, tok, 6, ref);
    for (int i = 0; i < 6 * V; i++) assert_true(fabs(logits[i] - ref[i]) < 1e-5 * fmax(1, fabs(ref[i])));
    qerr_model_free(m);
    mt_rmdir(dir, FILES, 2);
}

static void sharded_model_loads(void **state) {
    (void)state;
    static tiny w;
    tiny_init(&w, 10);
    char *one = write_tiny(&w, false, false), *two = write_tiny(&w, false, true);
    qerr_model *a = NULL, *b = NULL;
    assert_int_equal(qerr_model_load(&a, one), QERR_OK);
    assert_int_equal(qerr_model_load(&b, two), QERR_OK);
    assert_int_equal(qerr_model_tensor_count(a), qerr_model_tensor_count(b));
    for (int i = 0; i < qerr_model_tensor_count(a); i++) {
        const qerr_tensor *ta, *tb;
        assert_int_equal(qerr_model_tensor(a, qerr_model_tensor_name(a, i), &ta), QERR_OK);
        assert_int_equal(qerr_model_tensor(b, qerr_model_tensor_name(a, i), &tb), QERR_OK);
        assert_int_equal(qerr_tensor_numel(ta), qerr_tensor_numel(tb));
        assert_memory_equal(qerr_tensor_data(ta), qerr_tensor_data(tb), qerr_tensor_nbytes(ta));
    }
    qerr_model_free(b);
    /* an index may only name files inside the model folder */
    char path[1100];
    snprintf(path, sizeof path, "%s/%s", two, SHARD_FILES[1]);
    FILE *f = fopen(path, "wb");
    fputs("{\"weight_map\": {\"lm_head.weight\": \"../model.safetensors\"}}", f);
    fclose(f);
    assert_int_equal(qerr_model_load(&b, two), QERR_E_FORMAT);
    assert_non_null(strstr(qerr_last_error(), "plain file name"));
    qerr_model_free(a);
    mt_rmdir(one, FILES, 2);
    mt_rmdir(two, SHARD_FILES, 4);
}

static void half_precision_weights(void **state) {
    (void)state;
    uint16_t bf[6], f16[6];
    const float vals[6] = {1.0f, -2.5f, 0.1f, 3.0e-3f, -7.0f, 0.0f};
    for (int i = 0; i < 6; i++) {
        bf[i] = qerr__f32_to_bf16(vals[i]);
        f16[i] = qerr__f32_to_f16(vals[i]);
    }
    const mt_tensor t[2] = {{"a", "BF16", 2, {2, 3}, bf, sizeof bf},
                            {"b", "F16", 1, {6}, f16, sizeof f16}};
    size_t len;
    uint8_t *buf = mt_safetensors(t, 2, NULL, &len);
    /* shift by one byte so the data is unaligned, as in real files */
    uint8_t *shifted = malloc(len + 1);
    memcpy(shifted + 1, buf, len);
    qerr_st_file f;
    assert_int_equal(qerr__st_parse(shifted + 1, len, "mem", &f), QERR_OK);
    assert_int_equal(f.n, 2);
    float out[6];
    qerr__st_to_f32(&f.entries[0], out);
    for (int i = 0; i < 6; i++) assert_true(out[i] == qerr__bf16_to_f32(bf[i]));
    assert_true(fabsf(out[2] - 0.1f) < 1e-3f);
    qerr__st_to_f32(&f.entries[1], out);
    for (int i = 0; i < 6; i++) assert_true(out[i] == qerr__f16_to_f32(f16[i]));
    assert_true(out[1] == -2.5f);
    qerr__st_close(&f);
    free(shifted);
    free(buf);
}

static void stories260k_greedy_golden(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(data);
    char path[1024];
    snprintf(path, sizeof path, "%s/stories260k", data);
    qerr_model *m = NULL;
    assert_int_equal(qerr_model_load(&m, path), QERR_OK);
    snprintf(path, sizeof path, "%s/stories260k/golden_greedy.u32", data);
    uint32_t *gold;
    int64_t n;
    assert_int_equal(qerr_tokens_read(path, &gold, &n), QERR_OK);
    assert_int_equal(n, 257);
    uint32_t *out = malloc((size_t)n * sizeof *out);
    const uint32_t bos = 1;
    assert_int_equal(qerr__greedy_decode(m, &bos, 1, n, out), QERR_OK);
    int64_t first_diff = -1;
    for (int64_t i = 0; i < n && first_diff < 0; i++)
        if (out[i] != gold[i]) first_diff = i;
    assert_int_equal(first_diff, -1);
    free(out);
    qerr_free(gold);
    qerr_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(forward_matches_reference),
        cmocka_unit_test(stop_after_leaves_states),
        cmocka_unit_test(tied_embeddings_either_name),
        cmocka_unit_test(sharded_model_loads),
        cmocka_unit_test(half_precision_weights),
        cmocka_unit_test(stories260k_greedy_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
