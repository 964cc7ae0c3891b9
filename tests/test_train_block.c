/* The training engine's decoder block: whole-block backward (input, every
 * weight, both norms, hook parameters) against central differences in
 * float64; identity hooks reproduce the plain block exactly; float agrees
 * with double; and the block equals the model loop's forward
 * (lib/llama/forward.c) on real layers of stories260k. */
#include "testutil.h"

#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static const qerr_block_config CFG = {8, 12, 4, 2, 4, 1e-5, 10000.0};
enum { B = 2, T = 5, ROWS = B * T };


/* ---- a block in double with optional test hooks -------------------------- */
typedef struct {
    double *w[QERR_LIN_COUNT], *ln1, *ln2, *x, *r, *y;
    qerr_block_cache_d *cache;
    bool hooked;
    /* hook parameters: a Kronecker transform per site, a scalar per linear */
    int64_t n1[QERR_SITE_COUNT], n2[QERR_SITE_COUNT];
    double *p1[QERR_SITE_COUNT], *p2[QERR_SITE_COUNT], *gp1[QERR_SITE_COUNT],
        *gp2[QERR_SITE_COUNT];
    double scale[QERR_LIN_COUNT], gscale[QERR_LIN_COUNT];
} blk;

static int h_act_fwd(void *u, int s, int64_t rows, int64_t cols, const double *x, double *y) {
    blk *b = u;
    assert_int_equal(b->n1[s] * b->n2[s], cols);
    return qerr__kron_fwd_d(rows, b->n1[s], b->n2[s], b->p1[s], b->p2[s], NULL, x, y);
}
static int h_act_bwd(void *u, int s, int64_t rows, int64_t cols, const double *x,
                     const double *gy, double *gx) {
    blk *b = u;
    (void)cols;
    return qerr__kron_bwd_d(rows, b->n1[s], b->n2[s], b->p1[s], b->p2[s], NULL, x, gy, gx,
                            b->gp1[s], b->gp2[s], NULL);
}
static int h_w_fwd(void *u, int l, int64_t o, int64_t i, const double *w, double *we) {
    blk *b = u;
    for (int64_t k = 0; k < o * i; k++) we[k] = b->scale[l] * w[k];
    return 0;
}
static int h_w_bwd(void *u, int l, int64_t o, int64_t i, const double *w, const double *g) {
    blk *b = u;
    for (int64_t k = 0; k < o * i; k++) b->gscale[l] += g[k] * w[k];
    return 0;
}

static qerr_block_weights_d weights_of(blk *b) {
    qerr_block_weights_d w;
    for (int l = 0; l < QERR_LIN_COUNT; l++) w.w[l] = b->w[l];
    w.ln1 = b->ln1;
    w.ln2 = b->ln2;
    return w;
}

static qerr_block_hooks_d hooks_of(blk *b) {
    qerr_block_hooks_d h = {b, (1u << QERR_SITE_COUNT) - 1, (1u << QERR_LIN_COUNT) - 1,
                            h_act_fwd, h_act_bwd, h_w_fwd, h_w_bwd};
    return h;
}

static double blk_loss(void *p) {
    blk *b = p;
    qerr_block_weights_d w = weights_of(b);
    qerr_block_hooks_d h = hooks_of(b);
    assert_int_equal(qerr__block_forward_d(b->cache, &w, b->hooked ? &h : NULL, b->x, b->y), 0);
    double s = 0;
    for (int64_t i = 0; i < ROWS * CFG.hidden; i++) s += b->y[i] * b->r[i];
    return s;
}

static void blk_init(blk *b, bool hooked) {
    memset(b, 0, sizeof *b);
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        int64_t o, i;
        qerr__block_linear_shape(&CFG, l, &o, &i);
        b->w[l] = tu_random_d(o * i, 10 + (uint64_t)l, 0.6, 0);
        b->scale[l] = 0.8 + 0.05 * l;
    }
    b->ln1 = tu_random_d(CFG.hidden, 20, 0.3, 1);
    b->ln2 = tu_random_d(CFG.hidden, 21, 0.3, 1);
    b->x = tu_random_d(ROWS * CFG.hidden, 22, 1.0, 0);
    b->r = tu_random_d(ROWS * CFG.hidden, 23, 1.0, 0);
    b->y = calloc(ROWS * CFG.hidden, sizeof(double));
    assert_int_equal(qerr__block_cache_create_d(&CFG, B, T, &b->cache), 0);
    b->hooked = hooked;
    for (int s = 0; s < QERR_SITE_COUNT; s++) {
        int64_t n = qerr__block_site_cols(&CFG, s);
        qerr__decompose_dim(n, &b->n1[s], &b->n2[s]);
        b->p1[s] = tu_random_d(b->n1[s] * b->n1[s], 30 + (uint64_t)s, 0.3, 0);
        b->p2[s] = tu_random_d(b->n2[s] * b->n2[s], 40 + (uint64_t)s, 0.3, 0);
        for (int64_t k = 0; k < b->n1[s]; k++) b->p1[s][k * (b->n1[s] + 1)] += 1;
        for (int64_t k = 0; k < b->n2[s]; k++) b->p2[s][k * (b->n2[s] + 1)] += 1;
        b->gp1[s] = calloc((size_t)(b->n1[s] * b->n1[s]), sizeof(double));
        b->gp2[s] = calloc((size_t)(b->n2[s] * b->n2[s]), sizeof(double));
    }
}

static void blk_free(blk *b) {
    for (int l = 0; l < QERR_LIN_COUNT; l++) free(b->w[l]);
    for (int s = 0; s < QERR_SITE_COUNT; s++) { free(b->p1[s]); free(b->p2[s]); free(b->gp1[s]); free(b->gp2[s]); }
    free(b->ln1); free(b->ln2); free(b->x); free(b->r); free(b->y);
    qerr__block_cache_free_d(b->cache);
}

static void check_block(bool hooked) {
    blk b;
    blk_init(&b, hooked);
    blk_loss(&b);
    qerr_block_weights_d w = weights_of(&b);
    qerr_block_hooks_d h = hooks_of(&b);
    qerr_block_grads_d g;
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        int64_t o, i;
        qerr__block_linear_shape(&CFG, l, &o, &i);
        g.w[l] = calloc((size_t)(o * i), sizeof(double));
    }
    g.ln1 = calloc(CFG.hidden, sizeof(double));
    g.ln2 = calloc(CFG.hidden, sizeof(double));
    double *gx = malloc(sizeof(double) * ROWS * CFG.hidden);
    assert_int_equal(
        qerr__block_backward_d(b.cache, &w, hooked ? &h : NULL, b.x, b.r, gx, &g), 0);
    double worst = tu_fd_error(blk_loss, &b, b.x, ROWS * CFG.hidden, gx);
    print_message("%s block: gx %.1e", hooked ? "hooked" : "plain", worst);
    if (!hooked) {
        for (int l = 0; l < QERR_LIN_COUNT; l++) {
            int64_t o, i;
            qerr__block_linear_shape(&CFG, l, &o, &i);
            double e = tu_fd_error(blk_loss, &b, b.w[l], o * i, g.w[l]);
            print_message(" %s %.1e", qerr__lin_names[l], e);
            worst = fmax(worst, e);
        }
    } else {
        for (int s = 0; s < QERR_SITE_COUNT; s++) {
            double e1 = tu_fd_error(blk_loss, &b, b.p1[s], b.n1[s] * b.n1[s], b.gp1[s]);
            double e2 = tu_fd_error(blk_loss, &b, b.p2[s], b.n2[s] * b.n2[s], b.gp2[s]);
            print_message(" site%d %.1e/%.1e", s, e1, e2);
            worst = fmax(worst, fmax(e1, e2));
        }
        double e = tu_fd_error(blk_loss, &b, b.scale, QERR_LIN_COUNT, b.gscale);
        print_message(" scales %.1e", e);
        worst = fmax(worst, e);
    }
    double e1 = tu_fd_error(blk_loss, &b, b.ln1, CFG.hidden, g.ln1);
    double e2 = tu_fd_error(blk_loss, &b, b.ln2, CFG.hidden, g.ln2);
    print_message(" ln1 %.1e ln2 %.1e\n", e1, e2);
    worst = fmax(worst, fmax(e1, e2));
    assert_true(worst < 1e-6);
    for (int l = 0; l < QERR_LIN_COUNT; l++) free(g.w[l]);
    free(g.ln1); free(g.ln2); free(gx);
    blk_free(&b);
}

static void plain_block_grad(void **state) { (void)state; check_block(false); }
static void hooked_block_grad(void **state) { (void)state; check_block(true); }

/* ---- identity hooks and float vs double ---------------------------------- */
/* Kronecker hooks with P1 = P2 = I at every site and on every weight: the
 * "transformed, not quantized" block at its initial point. */
typedef struct { float *eye[17]; } id_hooks;
static int id_act(void *u, int s, int64_t rows, int64_t cols, const float *x, float *y) {
    id_hooks *h = u;
    int64_t a, b;
    (void)s;
    qerr__decompose_dim(cols, &a, &b);
    return qerr__kron_fwd_f(rows, a, b, h->eye[a], h->eye[b], NULL, x, y);
}
static int id_w(void *u, int l, int64_t o, int64_t i, const float *w, float *we) {
    id_hooks *h = u;
    int64_t a, b;
    (void)l;
    qerr__decompose_dim(i, &a, &b);
    return qerr__kron_fwd_f(o, a, b, h->eye[a], h->eye[b], NULL, w, we);
}

static void identity_and_precision(void **state) {
    (void)state;
    blk b;
    blk_init(&b, false);
    blk_loss(&b);
    float *wf[QERR_LIN_COUNT], ln1[8], ln2[8], x[ROWS * 8], y0[ROWS * 8], y1[ROWS * 8];
    qerr_block_weights_f w;
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        int64_t o, i;
        qerr__block_linear_shape(&CFG, l, &o, &i);
        wf[l] = malloc(sizeof(float) * (size_t)(o * i));
        for (int64_t k = 0; k < o * i; k++) wf[l][k] = (float)b.w[l][k];
        w.w[l] = wf[l];
    }
    for (int k = 0; k < 8; k++) { ln1[k] = (float)b.ln1[k]; ln2[k] = (float)b.ln2[k]; }
    for (int k = 0; k < ROWS * 8; k++) x[k] = (float)b.x[k];
    w.ln1 = ln1;
    w.ln2 = ln2;
    qerr_block_cache_f *c;
    assert_int_equal(qerr__block_cache_create_f(&CFG, B, T, &c), 0);
    assert_int_equal(qerr__block_forward_f(c, &w, NULL, x, y0), 0);
    double e = 0;
    for (int k = 0; k < ROWS * 8; k++) e = fmax(e, fabs(y0[k] - b.y[k]));
    print_message("float vs double block: %.1e\n", e);
    assert_true(e < 1e-5);
    id_hooks ih;
    for (int n = 0; n <= 16; n++) {
        ih.eye[n] = calloc((size_t)(n * n + 1), sizeof(float));
        for (int k = 0; k < n; k++) ih.eye[n][k * (n + 1)] = 1.0f;
    }
    for (int s = 0; s < QERR_SITE_COUNT; s++) {
        int64_t a, bb;
        qerr__decompose_dim(qerr__block_site_cols(&CFG, s), &a, &bb);
        assert_true(a <= 16 && bb <= 16);
    }
    qerr_block_hooks_f h = {&ih, (1u << QERR_SITE_COUNT) - 1, (1u << QERR_LIN_COUNT) - 1, id_act,
                            NULL, id_w, NULL};
    assert_int_equal(qerr__block_forward_f(c, &w, &h, x, y1), 0);
    assert_memory_equal(y0, y1, sizeof y0); /* exactly equal */
    for (int n = 0; n <= 16; n++) free(ih.eye[n]);
    qerr__block_cache_free_f(c);
    for (int l = 0; l < QERR_LIN_COUNT; l++) free(wf[l]);
    blk_free(&b);
}

/* ---- the block equals the model loop's forward on a real model ----------- */
static void matches_model_forward(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(dir);
    char path[1024];
    snprintf(path, sizeof path, "%s/stories260k", dir);
    qerr_model *m;
    assert_int_equal(qerr_model_load(&m, path), QERR_OK);
    snprintf(path, sizeof path, "%s/stories260k/calib.u32", dir);
    uint32_t *tok;
    int64_t ntok;
    assert_int_equal(qerr_tokens_read(path, &tok, &ntok), QERR_OK);
    const int64_t nwin = 3, seq = 64, rows = nwin * seq, d = m->cfg.hidden;
    assert_true(ntok >= rows);
    qerr_block_config cfg;
    qerr__block_config_from_model(&m->cfg, &cfg);
    float *X = malloc(sizeof(float) * (size_t)(rows * d)), *Y = malloc(sizeof(float) * (size_t)(rows * d));
    assert_int_equal(qerr__embed(m, tok, rows, X), QERR_OK);
    qerr_block_cache_f *c;
    assert_int_equal(qerr__block_cache_create_f(&cfg, nwin, seq, &c), QERR_OK);
    for (int64_t l = 0; l < m->cfg.layers; l++) {
        qerr_layer_weights lw;
        qerr__model_layer(m, l, &lw);
        qerr_block_weights_f w;
        qerr__block_weights_from_layer(&lw, &w);
        assert_int_equal(qerr__block_forward_f(c, &w, NULL, X, Y), QERR_OK);
        assert_int_equal(qerr__layer_forward(NULL, &m->cfg, &lw, X, nwin, seq, NULL, NULL, -1),
                         QERR_OK);
        double diff = 0, mag = 0;
        for (int64_t i = 0; i < rows * d; i++) {
            diff = fmax(diff, fabs((double)X[i] - Y[i]));
            mag = fmax(mag, fabs((double)X[i]));
        }
        print_message("stories260k layer %lld: max |block - model| %.2e (max |h| %.2f)\n",
                      (long long)l, diff, mag);
        assert_true(diff <= 1e-5 * mag);
    }
    qerr__block_cache_free_f(c);
    free(X); free(Y);
    qerr_free(tok);
    qerr_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_block_grad),
        cmocka_unit_test(hooked_block_grad),
        cmocka_unit_test(identity_and_precision),
        cmocka_unit_test(matches_model_forward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
