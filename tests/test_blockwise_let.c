/* OmniQuant LET + per-token activation quantization (W4A4) in the block-wise
 * trainer (lib/methods/omniquant/omniquant_let.c). The gradients of the three LET pairs,
 * LWC and SDE (diag+block) through the whole block match central differences
 * of the frozen-STE surrogate (weights and activations) in float64; LET with
 * s = 1 is the identity; the trained fake-quant block equals the folded,
 * encoded block on the deployed runtime; training lowers the W4A4 block loss
 * and LET+LWC beats LWC alone on a real block; a W4A4 model survives the
 * container round trip with the same perplexity; bad input is refused. */
#include "testblock.h"
#include "testutil.h"
#include "model_testutil.h"

#include "methods/omniquant/cqe_layer.h"
#include "methods/omniquant/omniquant_block.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 2 heads on 1 kv head: the out pair's kv-channel map is exercised */
static const qerr_block_config SMALL = {8, 12, 2, 1, 4, 1e-5, 10000.0};

/* ---- frozen-STE surrogates ------------------------------------------------ */
/* Weights (ASYM0 + LWC per (row, group)): in-range elements are x + s*delta
 * with delta frozen, clamped ones s*(c - z) with c, z frozen; s follows the
 * clipped max/min. Activations (per-token symmetric, no clip): the same with
 * s = absmax/(2^(b-1)-1) of the row. */
#define NSITES QERR_SITE_COUNT
typedef struct {
    qerr_omq_block *b;
    double *delta[QERR_LIN_COUNT], *z[QERR_LIN_COUNT];
    int *code[QERR_LIN_COUNT]; /* -1 = in range */
    double *adelta[NSITES];
    int *acode[NSITES]; /* INT32_MIN = in range */
    bool freeze;
} sur;

static int sur_w(void *user, int lin, const double *wd, double *weff) {
    sur *S = user;
    tb_frozen_wq(S->b, lin, wd, S->freeze, S->z[lin], S->delta[lin], S->code[lin], weff);
    return QERR_OK;
}

static int sur_a(void *user, int site, int64_t rows, int64_t cols, const double *x, double *y) {
    sur *S = user;
    const double qmax = (double)((1 << (S->b->o.a_bits - 1)) - 1);
    if (S->freeze) {
        free(S->adelta[site]);
        free(S->acode[site]);
        S->adelta[site] = malloc(sizeof(double) * (size_t)(rows * cols));
        S->acode[site] = malloc(sizeof(int) * (size_t)(rows * cols));
    }
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x + r * cols;
        double M = 0, N = 0;
        for (int64_t j = 0; j < cols; j++) {
            M = fmax(M, xr[j]);
            N = fmin(N, xr[j]);
        }
        double am = M >= -N ? M : -N, s = fmax(am, 1e-5) / qmax;
        for (int64_t j = 0; j < cols; j++) {
            const int64_t k = r * cols + j;
            if (S->freeze) {
                double u = xr[j] / s, c = nearbyint(u);
                S->adelta[site][k] = c - u;
                S->acode[site][k] =
                    c < -qmax - 1 ? (int)(-qmax - 1) : (c > qmax ? (int)qmax : INT32_MIN);
            }
            int c = S->acode[site][k];
            y[k] = c != INT32_MIN ? s * c : xr[j] + s * S->adelta[site][k];
        }
    }
    return QERR_OK;
}

static void sur_free(sur *S) {
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        free(S->delta[l]);
        free(S->code[l]);
        free(S->z[l]);
    }
    for (int s = 0; s < NSITES; s++) {
        free(S->adelta[s]);
        free(S->acode[s]);
    }
}

/* Loss of the hooked block (double) on x against t. */
typedef struct {
    qerr_omq_block *b;
    rblock *blk;
    qerr_block_cache_d *cache;
    double *x, *t, *ybuf, *gy;
} gcase;

static double gloss(gcase *c, bool grad) {
    double loss;
    const double *t[1] = {c->t};
    qerr__omq_refresh(c->b);
    if (grad) qerr__omq_zero_grads(c->b);
    assert_int_equal(qerr__omq_loss_d(c->b, &c->cache, &c->blk->d, NULL, 0, c->x, t, c->ybuf,
                                      grad ? c->gy : NULL, &loss, NULL),
                     QERR_OK);
    return loss;
}

static double urand(qerr_rng *rng) { return (double)(qerr__rng_next(rng) % 100000) / 100000.0; }

/* Compare one parameter's analytic gradient with the central difference. */
static bool fd_one(gcase *c, double *param, double an, double eps, const char *what, int p,
                   int64_t k) {
    double save = *param;
    *param = save + eps;
    double fp = gloss(c, false);
    *param = save - eps;
    double fm = gloss(c, false);
    *param = save;
    double fd = (fp - fm) / (2 * eps);
    if (fabs(fd - an) > 1e-6 * fmax(1e-4, fabs(fd))) {
        print_message("%s %d/%lld: analytic %.10g vs fd %.10g\n", what, p, (long long)k, an, fd);
        return false;
    }
    return true;
}

/* LET scales of every pair, LWC clips and SDE (diag+block) D at W3g4A4. */
static void grad_let_lwc_sde_a4(void **state) {
    (void)state;
    const qerr_block_config *cfg = &SMALL;
    rblock blk;
    rblock_make(&blk, cfg, 100);
    qerr_omq_opts o;
    qerr__omq_opts_default(&o);
    o.w_bits = 3;
    o.w_group = 4;
    o.mask = QERR_CQE_MASK_DIAG_BLOCK;
    o.mask_block = 3;
    o.lsi_vector = false;
    o.a_bits = 4;
    o.let = true;
    qerr_omq_block b;
    assert_int_equal(qerr__omq_block_init(&b, cfg, &blk.f, &o), QERR_OK);
    assert_true(qerr__omq_let_on(&b) && b.act_q);
    qerr_rng rng;
    qerr__rng_seed(&rng, 7);
    for (int p = 0; p < QERR_OMQ_LET_PAIRS; p++)
        for (int64_t j = 0; j < b.let_n[p]; j++) b.let_s[p][j] = 0.6 + urand(&rng);
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        for (int64_t k = 0; k < 2 * b.nclip[l]; k++) b.clip[l][k] = 2.0 + 2.0 * urand(&rng);
        for (int64_t k = 0; k < b.nd[l]; k++)
            if (b.mask[l][k]) b.d[l][k] = 0.05 * (2 * urand(&rng) - 1);
    }
    gcase c = {&b, &blk, NULL, NULL, NULL, NULL, NULL};
    const int64_t batch = 2, seq = 5, n = batch * seq * cfg->hidden;
    assert_int_equal(qerr__block_cache_create_d(cfg, batch, seq, &c.cache), QERR_OK);
    float *xf = malloc(sizeof(float) * (size_t)n);
    c.x = malloc(sizeof(double) * (size_t)n);
    c.t = malloc(sizeof(double) * (size_t)n);
    c.ybuf = malloc(sizeof(double) * (size_t)n);
    c.gy = malloc(sizeof(double) * (size_t)n);
    tu_random(xf, n, 3);
    for (int64_t i = 0; i < n; i++) c.x[i] = xf[i];
    tu_random(xf, n, 20);
    for (int64_t i = 0; i < n; i++) c.t[i] = xf[i];
    gloss(&c, true); /* analytic STE gradient at the base point */
    sur S;
    memset(&S, 0, sizeof S);
    S.b = &b;
    S.freeze = true;
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        S.delta[l] = malloc(sizeof(double) * (size_t)(b.m[l] * b.n[l]));
        S.code[l] = malloc(sizeof(int) * (size_t)(b.m[l] * b.n[l]));
        S.z[l] = malloc(sizeof(double) * (size_t)b.nclip[l]);
    }
    b.wq_override = sur_w;
    b.wq_user = &S;
    b.aq_override = sur_a;
    b.aq_user = &S;
    double base_sur = gloss(&c, false);
    S.freeze = false;
    b.wq_override = NULL;
    b.aq_override = NULL;
    double base_true = gloss(&c, false);
    b.wq_override = sur_w;
    b.aq_override = sur_a;
    assert_true(fabs(base_sur - base_true) <= 1e-9 * fabs(base_true));
    int checked = 0, ok = 1;
    for (int p = 0; p < QERR_OMQ_LET_PAIRS; p++)
        for (int64_t j = 0; j < b.let_n[p]; j++, checked++)
            ok &= fd_one(&c, &b.let_s[p][j], b.let_g[p][j], 1e-6, "let pair", p, j);
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        for (int64_t k = 0; k < 2 * b.nclip[l]; k += 1 + 2 * b.nclip[l] / 5, checked++)
            ok &= fd_one(&c, &b.clip[l][k], b.gclip[l][k], 1e-5, "clip of linear", l, k);
        for (int64_t k = 0; k < b.nd[l]; k += 1 + b.nd[l] / 7)
            if (b.mask[l][k]) {
                ok &= fd_one(&c, &b.d[l][k], b.gd[l][k], 1e-6, "D of linear", l, k);
                checked++;
            }
    }
    print_message("%d parameters checked (%lld LET scales)\n", checked,
                  (long long)(b.let_n[0] + b.let_n[1] + b.let_n[2]));
    assert_true(checked > 40);
    assert_true(ok);
    sur_free(&S);
    qerr__block_cache_free_d(c.cache);
    free(c.x); free(c.t); free(c.ybuf); free(c.gy); free(xf);
    qerr__omq_block_free(&b);
    rblock_free(&blk);
}

/* ---- s = 1 is the identity ---------------------------------------------- */
static void block_out(const qerr_block_config *cfg, rblock *blk, qerr_omq_opts *o,
                      const float *x, int64_t batch, int64_t seq, float *y) {
    qerr_omq_block b;
    assert_int_equal(qerr__omq_block_init(&b, cfg, &blk->f, o), QERR_OK);
    assert_true(qerr__omq_let_on(&b) == o->let);
    qerr_block_cache_f *c;
    assert_int_equal(qerr__block_cache_create_f(cfg, batch, seq, &c), QERR_OK);
    qerr_block_hooks_f hk;
    qerr__omq_hooks_f(&b, &hk);
    assert_int_equal(qerr__block_forward_f(c, &blk->f, &hk, x, y), QERR_OK);
    qerr__block_cache_free_f(c);
    qerr__omq_block_free(&b);
}

static void unit_scales_are_identity(void **state) {
    (void)state;
    rblock blk;
    rblock_make(&blk, &SMALL, 200);
    const int64_t batch = 2, seq = 6, n = batch * seq * SMALL.hidden;
    float *x = malloc(sizeof(float) * (size_t)n), *y0 = malloc(sizeof(float) * (size_t)n);
    float *y1 = malloc(sizeof(float) * (size_t)n);
    tu_random(x, n, 4);
    for (int a = 0; a < 2; a++) {
        qerr_omq_opts o;
        qerr__omq_opts_default(&o);
        o.w_bits = 4;
        o.a_bits = a ? 4 : 16;
        o.let = false;
        block_out(&SMALL, &blk, &o, x, batch, seq, y0);
        o.let = true; /* forced on, s = 1 after init */
        block_out(&SMALL, &blk, &o, x, batch, seq, y1);
        assert_memory_equal(y0, y1, sizeof(float) * (size_t)n);
    }
    free(x); free(y0); free(y1);
    rblock_free(&blk);
}

/* ---- training, fold and the deployed block -------------------------------- */
/* LET off, on with the best per-pair start (default), on with SmoothQuant's */
enum { LET_OFF, LET_BEST, LET_SMOOTH };

static qerr_omq_block *train_a4(const qerr_block_config *cfg, const qerr_block_weights_f *w,
                                const float *x, int64_t nseq, int64_t seq, int let, int mask,
                                int epochs, int bits, int64_t group) {
    qerr_omq_opts o;
    qerr__omq_opts_default(&o);
    o.w_bits = bits;
    o.w_group = group;
    o.a_bits = 4;
    o.let = let != LET_OFF;
    o.let_init_best = let == LET_BEST;
    o.mask = mask;
    o.mask_block = 3;
    o.epochs = epochs;
    o.seed = 5;
    qerr_omq_io io = {x, x, nseq, seq, 0, 1, {NULL, NULL}};
    qerr_omq_block *b;
    assert_int_equal(qerr__omq_train_block(NULL, cfg, w, &io, &o, &b), QERR_OK);
    return b;
}

static double rel_diff(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)a[i] * (double)a[i];
    }
    return sqrt(num / fmax(den, 1e-30));
}

/* The block as trained (fake quantizers on the fly) vs its folded, encoded
 * weights and folded norms on qerr__flatquant_deployed_forward. */
static void fold_is_exact(void **state) {
    (void)state;
    rblock blk;
    rblock_make(&blk, &SMALL, 300);
    const int64_t nseq = 4, seq = 6, n = nseq * seq * SMALL.hidden;
    float *x = malloc(sizeof(float) * (size_t)n), *y0 = malloc(sizeof(float) * (size_t)n);
    float *y1 = malloc(sizeof(float) * (size_t)n);
    tu_random(x, n, 9);
    qerr_omq_block *b =
        train_a4(&SMALL, &blk.f, x, nseq, seq, LET_BEST, QERR_CQE_MASK_DIAG_BLOCK, 6, 4, 4);
    double moved = 0;
    for (int p = 0; p < QERR_OMQ_LET_PAIRS; p++)
        for (int64_t j = 0; j < b->let_n[p]; j++) moved = fmax(moved, fabs(b->let_s[p][j] - 1));
    assert_true(moved > 1e-3); /* the scales are not the identity */
    qerr_block_cache_f *c;
    assert_int_equal(qerr__block_cache_create_f(&SMALL, nseq, seq, &c), QERR_OK);
    qerr_block_hooks_f hk;
    qerr__omq_hooks_f(b, &hk);
    assert_int_equal(qerr__block_forward_f(c, &blk.f, &hk, x, y0), QERR_OK);
    float *wq[QERR_LIN_COUNT];
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        qerr_result *r;
        assert_int_equal(qerr__omq_let_encode(b, l, &r), QERR_OK);
        const int64_t k = b->m[l] * b->n[l];
        wq[l] = malloc(sizeof(float) * (size_t)k);
        assert_int_equal(qerr_result_dequantize(r, wq[l], (size_t)k), QERR_OK);
        qerr_result_free(r);
    }
    qerr_flatquant_folded f;
    assert_int_equal(qerr__omq_let_folded(b, &blk.f, &f), QERR_OK);
    assert_int_equal(qerr__flatquant_deployed_forward(&SMALL, &f, (const float *const *)wq, c, x,
                                                      y1),
                     QERR_OK);
    double rd = rel_diff(y0, y1, n);
    print_message("trained fake-quant block vs folded deployed block: rel diff %.3g\n", rd);
    assert_true(rd <= 1e-4);
    /* and the fold is not vacuous: the unfolded norms give another output */
    memcpy(f.ln1, blk.f.ln1, sizeof(float) * (size_t)SMALL.hidden);
    assert_int_equal(qerr__flatquant_deployed_forward(&SMALL, &f, (const float *const *)wq, c, x,
                                                      y1),
                     QERR_OK);
    assert_true(rel_diff(y0, y1, n) > 1e-3);
    qerr__flatquant_folded_free(&f);
    for (int l = 0; l < QERR_LIN_COUNT; l++) free(wq[l]);
    qerr__block_cache_free_f(c);
    qerr__omq_block_destroy(b);
    free(x); free(y0); free(y1);
    rblock_free(&blk);
}

/* let_init=best: per pair, s = 1 replaces the SmoothQuant start where it
 * gives a lower block loss, so the start is never worse than SmoothQuant's;
 * training from it lowers the W4A4 loss further. */
static void training_lowers_w4a4_loss(void **state) {
    (void)state;
    rblock blk;
    rblock_make(&blk, &SMALL, 400);
    const int64_t nseq = 4, seq = 6, n = nseq * seq * SMALL.hidden;
    float *x = malloc(sizeof(float) * (size_t)n);
    tu_random(x, n, 11);
    qerr_omq_block *smooth =
        train_a4(&SMALL, &blk.f, x, nseq, seq, LET_SMOOTH, QERR_CQE_MASK_NONE, 0, 4, 4);
    qerr_omq_block *b =
        train_a4(&SMALL, &blk.f, x, nseq, seq, LET_BEST, QERR_CQE_MASK_NONE, 30, 4, 4);
    print_message("random block W4g4A4 LET+LWC: start %.5g (SmoothQuant %.5g) -> %.5g\n",
                  b->mse_init, smooth->mse_init, b->mse_final);
    assert_true(b->mse_init < smooth->mse_init); /* on this block some pair is better at s = 1 */
    assert_true(b->mse_final < b->mse_init);
    assert_true(b->epoch_loss[29] < b->epoch_loss[0]);
    qerr__omq_block_destroy(smooth);
    qerr__omq_block_destroy(b);
    free(x);
    rblock_free(&blk);
}

/* A real block: LET+LWC against LWC alone at W4A4, same budget. */
static void let_beats_lwc_real(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(dir);
    qerr_model *m;
    qerr_block_config cfg;
    const int64_t nseq = 8, seq = 64, layer = 1;
    float *x = tb_real_block_inputs(dir, nseq, seq, layer, &m, &cfg);
    qerr_layer_weights lw;
    qerr_block_weights_f w;
    qerr__model_layer(m, layer, &lw);
    qerr__block_weights_from_layer(&lw, &w);
    double fin[2];
    for (int let = 0; let < 2; let++) {
        qerr_omq_block *b =
            train_a4(&cfg, &w, x, nseq, seq, let ? LET_BEST : LET_OFF, QERR_CQE_MASK_NONE, 10, 4,
                     -1);
        print_message("stories260k block %lld W4A4 %s, 10 epochs (%.1f s): block mse %.5g -> "
                      "%.5g\n",
                      (long long)layer, let ? "LET+LWC" : "LWC alone", b->seconds, b->mse_init,
                      b->mse_final);
        assert_true(b->mse_final < b->mse_init);
        fin[let] = b->mse_final;
        qerr__omq_block_destroy(b);
    }
    assert_true(fin[1] < fin[0]);
    free(x);
    qerr_model_free(m);
}

/* ---- the model pipeline and the container --------------------------------- */
static void model_w4a4_container(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(dir);
    char path[1100];
    qerr_model *m, *m2, *m3;
    snprintf(path, sizeof path, "%s/stories260k", dir);
    assert_int_equal(qerr_model_load(&m, path), QERR_OK);
    assert_int_equal(qerr_model_load(&m2, path), QERR_OK);
    assert_int_equal(qerr_model_load(&m3, path), QERR_OK);
    uint32_t *calib, *eval;
    int64_t nc, ne;
    snprintf(path, sizeof path, "%s/stories260k/calib.u32", dir);
    assert_int_equal(qerr_tokens_read(path, &calib, &nc), QERR_OK);
    snprintf(path, sizeof path, "%s/stories260k/eval.u32", dir);
    assert_int_equal(qerr_tokens_read(path, &eval, &ne), QERR_OK);
    const char *spec = "omniquant:scope=block,bits=4,a_bits=4,epochs=2";
    qerr_qmodel *q = NULL;
    int rc = qerr_model_quantize(NULL, m, spec, NULL, calib, nc, 4, 64, &q);
    if (rc != QERR_OK) fail_msg("%s: %s", spec, qerr_last_error());
    double fp, p_mem, p_file, p_w;
    assert_int_equal(qerr_model_perplexity(NULL, m, eval, ne, 256, 8, &fp, NULL, NULL), QERR_OK);
    assert_int_equal(qerr_model_apply(m2, q), QERR_OK);
    assert_int_equal(qerr_model_perplexity(NULL, m2, eval, ne, 256, 8, &p_mem, NULL, NULL),
                     QERR_OK);
    char *tmp = mt_tempdir();
    assert_non_null(tmp);
    snprintf(path, sizeof path, "%s/q.qerr", tmp);
    assert_int_equal(qerr_qmodel_save(q, path), QERR_OK);
    qerr_qmodel_free(q);
    assert_int_equal(qerr_qmodel_load(&q, path), QERR_OK);
    unlink(path);
    rmdir(tmp);
    free(tmp);
    assert_int_equal(qerr_model_apply(m3, q), QERR_OK);
    assert_int_equal(qerr_model_perplexity(NULL, m3, eval, ne, 256, 8, &p_file, NULL, NULL),
                     QERR_OK);
    /* the same weights without the run-time state (plain float activations) */
    qerr__model_rt_clear(m3);
    assert_int_equal(qerr_model_perplexity(NULL, m3, eval, ne, 256, 8, &p_w, NULL, NULL),
                     QERR_OK);
    print_message("stories260k %s: ppl float %.4f, W4A4 in memory %.4f, after the container "
                  "%.4f, same weights with float activations and unfolded norms %.4f\n",
                  spec, fp, p_mem, p_file, p_w);
    assert_true(isfinite(p_mem) && p_mem > fp);
    assert_true(p_file == p_mem);
    assert_true(p_w != p_mem); /* the deployed W4A4 runtime was used */
    qerr_qmodel_free(q);
    qerr_free(calib);
    qerr_free(eval);
    qerr_model_free(m);
    qerr_model_free(m2);
    qerr_model_free(m3);
}

/* ---- bad input ------------------------------------------------------------ */
static void bad_input(void **state) {
    (void)state;
    rblock blk;
    rblock_make(&blk, &SMALL, 500);
    qerr_omq_opts o;
    qerr__omq_opts_default(&o);
    qerr_omq_block b;
    o.a_bits = 9;
    assert_int_equal(qerr__omq_block_init(&b, &SMALL, &blk.f, &o), QERR_E_RANGE);
    assert_non_null(strstr(qerr_last_error(), "a_bits=9"));
    o.a_bits = 1;
    assert_int_equal(qerr__omq_block_init(&b, &SMALL, &blk.f, &o), QERR_E_RANGE);
    o.a_bits = 4;
    o.let_alpha = 1.5;
    assert_int_equal(qerr__omq_block_init(&b, &SMALL, &blk.f, &o), QERR_E_RANGE);
    assert_non_null(strstr(qerr_last_error(), "let_alpha"));
    o.let_alpha = -0.1;
    assert_int_equal(qerr__omq_block_init(&b, &SMALL, &blk.f, &o), QERR_E_RANGE);
    /* through a plan: a_bits between 9 and 15, let_alpha out of [0, 1] */
    const float x[4 * 6 * 8] = {0};
    qerr_result *out[QERR_LIN_COUNT];
    qerr_plan *p;
    assert_int_equal(qerr_plan_parse(&p, "omniquant:scope=block,bits=4,a_bits=12"), QERR_OK);
    assert_int_equal(qerr__omniquant_quantize_block(NULL, p, &SMALL, &blk.f, x, 4, 6, out),
                     QERR_E_RANGE);
    assert_non_null(strstr(qerr_last_error(), "a_bits=12"));
    qerr_plan_free(p);
    p = NULL;
    assert_int_not_equal(qerr_plan_parse(&p, "cqe:scope=block,bits=4,a_bits=4,let_alpha=2"),
                         QERR_OK);
    qerr_plan_free(p);
    rblock_free(&blk);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(grad_let_lwc_sde_a4),
        cmocka_unit_test(unit_scales_are_identity),
        cmocka_unit_test(fold_is_exact),
        cmocka_unit_test(training_lowers_w4a4_loss),
        cmocka_unit_test(let_beats_lwc_real),
        cmocka_unit_test(model_w4a4_container),
        cmocka_unit_test(bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
