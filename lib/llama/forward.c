/* Float32 LLaMA decoder layer on BLAS-3: RMSNorm, q/k/v projections, RoPE
 * (Hugging Face rotate_half), grouped-query causal attention, o_proj,
 * SwiGLU MLP, residuals. Windows are batched so every projection is one big
 * GEMM; element-wise work is split over the ctx's threads (BLAS is only
 * called from the calling thread). */
#include "model.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Scratch budget per chunk of windows, in floats (~64 MB). */
#define CHUNK_FLOATS ((int64_t)16 << 20)

/* C[rows, out] = A[rows, in] W[out, in]^T */
static void linear(const float *A, int64_t rows, int64_t in, const float *W, int64_t out,
                   float *C) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)out, (int)in, 1.0f, A,
                (int)in, W, (int)in, 0.0f, C, (int)out);
}

typedef struct {
    float *C;
    const float *b;
    int64_t out;
} bias_job;

static void bias_rows(void *arg, int64_t b, int64_t e) {
    const bias_job *j = arg;
    for (int64_t r = b; r < e; r++)
        for (int64_t i = 0; i < j->out; i++) j->C[r * j->out + i] += j->b[i];
}

/* linear() plus bias b [out] when the layer has one (NULL: none). */
static void linear_b(int threads, const float *A, int64_t rows, int64_t in, const float *W,
                     const float *b, int64_t out, float *C) {
    linear(A, rows, in, W, out, C);
    if (!b) return;
    bias_job j = {C, b, out};
    qerr__parallel_for(threads, rows, 64, bias_rows, &j);
}

typedef struct {
    float *X;
    const float *src;
    int64_t d;
    const float *g;
    double eps;
} norm_job;

static void norm_rows(void *arg, int64_t b, int64_t e) {
    const norm_job *j = arg;
    for (int64_t r = b; r < e; r++) {
        const float *x = (j->src ? j->src : j->X) + r * j->d;
        float *y = j->X + r * j->d;
        double ss = 0.0;
        for (int64_t i = 0; i < j->d; i++) ss += (double)x[i] * x[i];
        float inv = (float)(1.0 / sqrt(ss / (double)j->d + j->eps));
        for (int64_t i = 0; i < j->d; i++) y[i] = j->g[i] * (x[i] * inv);
    }
}

static void rmsnorm_to(int threads, float *dst, const float *src, int64_t rows, int64_t d,
                       const float *g, double eps) {
    norm_job j = {dst, src, d, g, eps};
    qerr__parallel_for(threads, rows, 64, norm_rows, &j);
}

void qerr__rmsnorm(float *X, int64_t rows, int64_t d, const float *g, double eps) {
    rmsnorm_to(1, X, NULL, rows, d, g, eps);
}

typedef struct {
    float *q, *k;
    int64_t T, qd, kvd, hd;
    const float *cs, *sn; /* [T, hd/2] */
} rope_job;

static void rope_vec(float *x, int64_t hd, const float *c, const float *s) {
    const int64_t h = hd / 2;
    for (int64_t i = 0; i < h; i++) {
        float a = x[i], b = x[i + h];
        x[i] = a * c[i] - b * s[i];
        x[i + h] = b * c[i] + a * s[i];
    }
}

static void rope_rows(void *arg, int64_t b, int64_t e) {
    const rope_job *j = arg;
    const int64_t h = j->hd / 2;
    for (int64_t r = b; r < e; r++) {
        const int64_t t = r % j->T;
        const float *c = j->cs + t * h, *s = j->sn + t * h;
        for (int64_t o = 0; o < j->qd; o += j->hd) rope_vec(j->q + r * j->qd + o, j->hd, c, s);
        for (int64_t o = 0; o < j->kvd; o += j->hd) rope_vec(j->k + r * j->kvd + o, j->hd, c, s);
    }
}

typedef struct {
    float *S; /* [T, T] */
    int64_t T;
} softmax_job;

/* Causal softmax of row i: entries j <= i, the rest zeroed. */
static void softmax_rows(void *arg, int64_t b, int64_t e) {
    const softmax_job *j = arg;
    for (int64_t r = b; r < e; r++) {
        const int64_t i = r % j->T;
        float *s = j->S + r * j->T;
        float mx = s[0];
        for (int64_t c = 1; c <= i; c++) mx = s[c] > mx ? s[c] : mx;
        double sum = 0.0;
        for (int64_t c = 0; c <= i; c++) {
            s[c] = expf(s[c] - mx);
            sum += s[c];
        }
        const float inv = (float)(1.0 / sum);
        for (int64_t c = 0; c <= i; c++) s[c] *= inv;
        for (int64_t c = i + 1; c < j->T; c++) s[c] = 0.0f;
    }
}

typedef struct {
    float *g;
    const float *u;
    int64_t n;
} swiglu_job;

static void swiglu_range(void *arg, int64_t b, int64_t e) {
    const swiglu_job *j = arg;
    for (int64_t i = b; i < e; i++) {
        float x = j->g[i];
        j->g[i] = x / (1.0f + expf(-x)) * j->u[i];
    }
}

typedef struct {
    float *dst;
    const float *a, *b;
} add_job;

static void add_range(void *arg, int64_t b, int64_t e) {
    const add_job *j = arg;
    for (int64_t i = b; i < e; i++) j->dst[i] = j->a[i] + j->b[i];
}

static void add_to(int threads, float *dst, const float *a, const float *b, int64_t n) {
    add_job j = {dst, a, b};
    qerr__parallel_for(threads, n, 1 << 14, add_range, &j);
}

/* Attention of one window: q [T, qd], k/v [T, kvd] -> out [T, qd]; S is a
 * [T, T] scratch reused head after head. */
static void attend(int threads, const qerr_model_config *c, int64_t T, const float *q,
                   const float *k, const float *v, float *S, float *out) {
    const int64_t hd = c->head_dim, qd = c->heads * hd, kvd = c->kv_heads * hd;
    const int64_t rep = c->heads / c->kv_heads;
    const float scale = (float)(1.0 / sqrt((double)hd));
    for (int64_t h = 0; h < c->heads; h++) {
        const int64_t g = h / rep;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, (int)hd, scale,
                    q + h * hd, (int)qd, k + g * hd, (int)kvd, 0.0f, S, (int)T);
        softmax_job sj = {S, T};
        qerr__parallel_for(threads, T, 64, softmax_rows, &sj);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)hd, (int)T, 1.0f, S,
                    (int)T, v + g * hd, (int)kvd, 0.0f, out + h * hd, (int)qd);
    }
}

typedef struct {
    float *xn, *q, *k, *v, *att, *h1, *gate, *up, *S, *cs, *sn;
} scratch;

static void scratch_free(scratch *s) {
    free(s->xn); free(s->q); free(s->k); free(s->v); free(s->att); free(s->h1);
    free(s->gate); free(s->up); free(s->S); free(s->cs); free(s->sn);
}

static int scratch_alloc(scratch *s, const qerr_model_config *c, int64_t rows, int64_t T) {
    const int64_t qd = c->heads * c->head_dim, kvd = c->kv_heads * c->head_dim;
    memset(s, 0, sizeof *s);
    s->xn = qerr__malloc2((size_t)rows, (size_t)c->hidden * sizeof(float));
    s->q = qerr__malloc2((size_t)rows, (size_t)qd * sizeof(float));
    s->k = qerr__malloc2((size_t)rows, (size_t)kvd * sizeof(float));
    s->v = qerr__malloc2((size_t)rows, (size_t)kvd * sizeof(float));
    s->att = qerr__malloc2((size_t)rows, (size_t)qd * sizeof(float));
    s->h1 = qerr__malloc2((size_t)rows, (size_t)c->hidden * sizeof(float));
    s->gate = qerr__malloc2((size_t)rows, (size_t)c->inter * sizeof(float));
    s->up = qerr__malloc2((size_t)rows, (size_t)c->inter * sizeof(float));
    s->S = qerr__malloc2((size_t)T, (size_t)T * sizeof(float));
    s->cs = qerr__malloc2((size_t)T, (size_t)c->head_dim / 2 * sizeof(float));
    s->sn = qerr__malloc2((size_t)T, (size_t)c->head_dim / 2 * sizeof(float));
    if (!s->xn || !s->q || !s->k || !s->v || !s->att || !s->h1 || !s->gate || !s->up || !s->S ||
        !s->cs || !s->sn) {
        scratch_free(s);
        return qerr__fail(QERR_E_NOMEM, "forward pass: out of memory for %lld rows",
                          (long long)rows);
    }
    /* RoPE tables in float64: angle = t * inv_freq (rope.c). */
    const int64_t h = c->head_dim / 2;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t i = 0; i < h; i++) {
            double inv = qerr__rope_inv_freq(&c->rope, i, c->head_dim);
            s->cs[t * h + i] = (float)cos((double)t * inv);
            s->sn[t * h + i] = (float)sin((double)t * inv);
        }
    }
    return QERR_OK;
}

/* Calls the tap for `lin` and says whether the pass stops there. */
#define TAP(lin, rows_ptr, cols)                                                           \
    do {                                                                                   \
        if (tap) QERR_TRY(tap(user, (lin), (rows_ptr), R, (cols)));                        \
        if (stop_after == (lin)) return 1;                                                 \
    } while (0)

/* Attention half of one chunk of nw windows (R = nw * T rows of X): s->h1 =
 * X + o_proj(attention(norm(X))). Returns 1 when the pass stopped at a tap,
 * 0 when h1 is ready, <0 on error. */
static int attention_half(int threads, const qerr_model_config *c, const qerr_layer_weights *w,
                          const float *X, int64_t nw, int64_t T, scratch *s, qerr_tap_fn tap,
                          void *user, int stop_after) {
    const int64_t R = nw * T, d = c->hidden;
    const int64_t qd = c->heads * c->head_dim, kvd = c->kv_heads * c->head_dim;
    rmsnorm_to(threads, s->xn, X, R, d, w->attn_norm, c->rms_eps);
    TAP(QERR_LIN_Q, s->xn, d);
    linear_b(threads, s->xn, R, d, w->q, w->bias[QERR_LIN_Q], qd, s->q);
    linear_b(threads, s->xn, R, d, w->k, w->bias[QERR_LIN_K], kvd, s->k);
    linear_b(threads, s->xn, R, d, w->v, w->bias[QERR_LIN_V], kvd, s->v);
    if (w->q_norm) { /* Qwen3: RMSNorm of every head of q and k, before RoPE */
        rmsnorm_to(threads, s->q, NULL, R * c->heads, c->head_dim, w->q_norm, c->rms_eps);
        rmsnorm_to(threads, s->k, NULL, R * c->kv_heads, c->head_dim, w->k_norm, c->rms_eps);
    }
    rope_job rj = {s->q, s->k, T, qd, kvd, c->head_dim, s->cs, s->sn};
    qerr__parallel_for(threads, R, 64, rope_rows, &rj);
    for (int64_t win = 0; win < nw; win++)
        attend(threads, c, T, s->q + win * T * qd, s->k + win * T * kvd, s->v + win * T * kvd,
               s->S, s->att + win * T * qd);
    TAP(QERR_LIN_O, s->att, qd);
    linear_b(threads, s->att, R, qd, w->o, w->bias[QERR_LIN_O], d, s->h1);
    add_to(threads, s->h1, s->h1, X, R * d); /* h1 = X + attention */
    return 0;
}

/* MLP half: X = h1 + down(silu(gate(norm(h1))) * up(norm(h1))). Same returns. */
static int mlp_half(int threads, const qerr_model_config *c, const qerr_layer_weights *w,
                    float *X, int64_t R, scratch *s, qerr_tap_fn tap, void *user,
                    int stop_after) {
    const int64_t d = c->hidden, ff = c->inter;
    rmsnorm_to(threads, s->xn, s->h1, R, d, w->mlp_norm, c->rms_eps);
    TAP(QERR_LIN_GATE, s->xn, d);
    linear_b(threads, s->xn, R, d, w->gate, w->bias[QERR_LIN_GATE], ff, s->gate);
    linear_b(threads, s->xn, R, d, w->up, w->bias[QERR_LIN_UP], ff, s->up);
    swiglu_job sw = {s->gate, s->up, R * ff};
    qerr__parallel_for(threads, R * ff, 1 << 14, swiglu_range, &sw);
    TAP(QERR_LIN_DOWN, s->gate, ff);
    linear_b(threads, s->gate, R, ff, w->down, w->bias[QERR_LIN_DOWN], d, s->xn);
    add_to(threads, X, s->h1, s->xn, R * d);
    return 0;
}
#undef TAP

/* One chunk: X is only written when the whole layer ran (returns 0). */
static int chunk_forward(int threads, const qerr_model_config *c, const qerr_layer_weights *w,
                         float *X, int64_t nw, int64_t T, scratch *s, qerr_tap_fn tap,
                         void *user, int stop_after, float *h1_save, const float *h1_from) {
    const size_t h1_bytes = (size_t)(nw * T * c->hidden) * sizeof(float);
    if (h1_from) { /* the attention half was run before: start at the MLP */
        memcpy(s->h1, h1_from, h1_bytes);
    } else {
        int r = attention_half(threads, c, w, X, nw, T, s, tap, user, stop_after);
        if (r != 0) return r;
        if (h1_save) memcpy(h1_save, s->h1, h1_bytes);
    }
    return mlp_half(threads, c, w, X, nw * T, s, tap, user, stop_after);
}

int qerr__layer_forward(const qerr_ctx *ctx, const qerr_model_config *c,
                        const qerr_layer_weights *w, float *X, int64_t nwin, int64_t T,
                        qerr_tap_fn tap, void *tap_user, int stop_after) {
    return qerr__layer_forward_ex(ctx, c, w, X, nwin, T, tap, tap_user, stop_after, NULL, NULL);
}

int qerr__layer_forward_ex(const qerr_ctx *ctx, const qerr_model_config *c,
                           const qerr_layer_weights *w, float *X, int64_t nwin, int64_t T,
                           qerr_tap_fn tap, void *tap_user, int stop_after, float *h1_save,
                           const float *h1_from) {
    QERR_CHECK(nwin >= 1 && T >= 1 && T <= INT32_MAX / 2, QERR_E_INVALID_ARG,
               "forward pass: %lld windows of %lld tokens", (long long)nwin, (long long)T);
    QERR_TRY(qerr__config_check_window(c, T, "forward pass"));
    const int threads = qerr__ctx_threads(ctx ? ctx : qerr__default_ctx());
    const int64_t per_row = 2 * c->hidden + 2 * c->heads * c->head_dim +
                            2 * c->kv_heads * c->head_dim + 2 * c->inter;
    int64_t nw = CHUNK_FLOATS / (per_row * T);
    if (nw < 1) nw = 1;
    if (nw > nwin) nw = nwin;
    scratch s;
    QERR_TRY(scratch_alloc(&s, c, nw * T, T));
    int rc = QERR_OK;
    for (int64_t w0 = 0; w0 < nwin && rc == QERR_OK; w0 += nw) {
        const int64_t n = nwin - w0 < nw ? nwin - w0 : nw;
        const int64_t off = w0 * T * c->hidden;
        int r = chunk_forward(threads, c, w, X + off, n, T, &s, tap, tap_user, stop_after,
                              h1_save ? h1_save + off : NULL, h1_from ? h1_from + off : NULL);
        if (r < 0) rc = r;
        /* spilled activations (--max-memory): done with this chunk's pages */
        const size_t bytes = (size_t)(n * T * c->hidden) * sizeof(float);
        qerr__big_release(X + off, bytes);
        if (h1_save) qerr__big_release(h1_save + off, bytes);
        if (h1_from) qerr__big_release(h1_from + off, bytes);
    }
    scratch_free(&s);
    return rc;
}

int qerr__embed(const qerr_model *m, const uint32_t *tokens, int64_t rows, float *X) {
    for (int64_t r = 0; r < rows; r++)
        QERR_CHECK(tokens[r] < (uint64_t)m->cfg.vocab, QERR_E_RANGE,
                   "token %lld has id %u, outside the vocabulary of %lld", (long long)r,
                   tokens[r], (long long)m->cfg.vocab);
    return qerr__model_rows(m, "model.embed_tokens.weight", tokens, rows, X);
}

int qerr__head(const qerr_model *m, float *X, int64_t rows, float *logits) {
    const int64_t d = m->cfg.hidden;
    const float *g = qerr__model_data(m, "model.norm.weight");
    const float *W = g ? qerr__model_data(m, "lm_head.weight") : NULL;
    QERR_CHECK(W, QERR_E_NOMEM, "lm_head: out of memory for its float32 copy");
    rmsnorm_to(1, X, NULL, rows, d, g, m->cfg.rms_eps);
    linear(X, rows, d, W, m->cfg.vocab, logits);
    return QERR_OK;
}

int qerr__greedy_decode(const qerr_model *m, const uint32_t *prompt, int64_t n_prompt,
                        int64_t total, uint32_t *out) {
    QERR_CHECK(m && prompt && out && n_prompt >= 1 && total >= n_prompt && total <= 1 << 20,
               QERR_E_INVALID_ARG, "greedy decode: bad arguments");
    const int64_t d = m->cfg.hidden, V = m->cfg.vocab;
    memcpy(out, prompt, (size_t)n_prompt * sizeof *out);
    float *X = qerr__malloc2((size_t)total, (size_t)d * sizeof(float));
    float *logits = qerr__malloc2((size_t)V, sizeof(float));
    int rc = (X && logits) ? QERR_OK : qerr__fail(QERR_E_NOMEM, "greedy decode: out of memory");
    for (int64_t L = n_prompt; rc == QERR_OK && L < total; L++) {
        rc = qerr__embed(m, out, L, X);
        for (int64_t l = 0; rc == QERR_OK && l < m->cfg.layers; l++)
            rc = qerr__model_layer_run(NULL, m, l, X, 1, L);
        if (rc != QERR_OK) break;
        qerr__head(m, X + (L - 1) * d, 1, logits);
        int64_t best = 0;
        for (int64_t i = 1; i < V; i++) best = logits[i] > logits[best] ? i : best;
        out[L] = (uint32_t)best;
    }
    free(X);
    free(logits);
    return rc;
}

int qerr__model_layer_run(const qerr_ctx *ctx, const qerr_model *m, int64_t l, float *X,
                          int64_t nwin, int64_t T) {
    qerr_layer_weights w;
    QERR_TRY(qerr__config_check_window(&m->cfg, T, "forward pass"));
    QERR_TRY(qerr__model_layer_acquire(m, l, &w));
    int rc = m->rt && m->rt[l] ? m->rt_ops->forward(&m->cfg, m->rt[l], &w, X, nwin, T)
                               : qerr__layer_forward(ctx, &m->cfg, &w, X, nwin, T, NULL, NULL, -1);
    qerr__model_layer_release(m, l);
    return rc;
}
