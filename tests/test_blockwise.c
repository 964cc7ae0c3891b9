/* Block-wise OmniQuant / LSI / SDE with cross-layer learning
 * (lib/train/omniquant_block.c). Gradients of LWC, of D on its mask and of
 * the cross-layer loss through the whole block (and the frozen float next
 * blocks) match central differences of the frozen-STE surrogate in float64;
 * D = 0 at the initial clipping is RTN with that clipping; mask=diag equals
 * the LSI vector path step for step; training lowers the block loss;
 * cross-layer learning lowers the next block's error on a real stories260k
 * block; bad input gets a clear status. */
#include "testutil.h"

#include "methods/cqe_layer.h"
#include "train/omniquant_block.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const qerr_block_config SMALL = {8, 12, 2, 1, 4, 1e-5, 10000.0};

/* Random float block (weights ~ 0.3 so the block is far from linear). */
typedef struct {
    float *wf[QERR_LIN_COUNT], *ln[2];
    double *wd[QERR_LIN_COUNT], *lnd[2];
    qerr_block_weights_f f;
    qerr_block_weights_d d;
} rblock;

static void rblock_make(rblock *b, const qerr_block_config *cfg, uint64_t seed) {
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        int64_t o, i;
        qerr__block_linear_shape(cfg, l, &o, &i);
        b->wf[l] = malloc(sizeof(float) * (size_t)(o * i));
        b->wd[l] = malloc(sizeof(double) * (size_t)(o * i));
        tu_random(b->wf[l], o * i, seed + (uint64_t)l);
        for (int64_t k = 0; k < o * i; k++) {
            b->wf[l][k] *= 0.6f;
            b->wd[l][k] = b->wf[l][k];
        }
        b->f.w[l] = b->wf[l];
        b->d.w[l] = b->wd[l];
    }
    for (int k = 0; k < 2; k++) {
        b->ln[k] = malloc(sizeof(float) * (size_t)cfg->hidden);
        b->lnd[k] = malloc(sizeof(double) * (size_t)cfg->hidden);
        tu_random(b->ln[k], cfg->hidden, seed + 50 + (uint64_t)k);
        for (int64_t j = 0; j < cfg->hidden; j++) {
            b->ln[k][j] = 1.0f + 0.3f * b->ln[k][j];
            b->lnd[k][j] = b->ln[k][j];
        }
    }
    b->f.ln1 = b->ln[0];
    b->f.ln2 = b->ln[1];
    b->d.ln1 = b->lnd[0];
    b->d.ln2 = b->lnd[1];
}

static void rblock_free(rblock *b) {
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        free(b->wf[l]);
        free(b->wd[l]);
    }
    for (int k = 0; k < 2; k++) {
        free(b->ln[k]);
        free(b->lnd[k]);
    }
}

/* ---- the frozen-STE surrogate of the ASYM0 + LWC quantizer ----------------- */
/* At the base point every in-range element is x + s * delta with delta =
 * round(u) - u frozen, every clamped one s * (c - z) with c and z frozen;
 * s follows the (clipped) max / min of the current W(D) and the clip. */
typedef struct {
    qerr_omq_block *b;
    double *delta[QERR_LIN_COUNT], *z[QERR_LIN_COUNT];
    int *code[QERR_LIN_COUNT]; /* -1 = in range */
    bool freeze;
} sur;

static double sig(double v) { return 1 / (1 + exp(-v)); }

static int sur_fwd(void *user, int lin, const double *wd, double *weff) {
    sur *S = user;
    qerr_omq_block *b = S->b;
    const int64_t m = b->m[lin], n = b->n[lin];
    const int64_t g = b->o.w_group > 0 && b->o.w_group < n ? b->o.w_group : n;
    const int64_t ng = (n + g - 1) / g;
    const double maxq = (double)((1 << b->o.w_bits) - 1);
    for (int64_t i = 0; i < m; i++)
        for (int64_t k = 0; k < ng; k++) {
            int64_t c0 = k * g, c1 = c0 + g < n ? c0 + g : n;
            const double *x = wd + i * n;
            double mx = x[c0], mn = x[c0];
            for (int64_t j = c0; j < c1; j++) {
                mx = fmax(mx, x[j]);
                mn = fmin(mn, x[j]);
            }
            const double *ab = b->clip[lin] + 2 * (i * ng + k);
            double hi = sig(ab[0]) * fmax(mx, 0), lo = sig(ab[1]) * fmin(mn, 0);
            double s = (hi - lo) / maxq;
            if (S->freeze) S->z[lin][i * ng + k] = nearbyint(-lo / s);
            double z = S->z[lin][i * ng + k];
            for (int64_t j = c0; j < c1; j++) {
                double u = x[j] / s;
                if (S->freeze) {
                    double c = nearbyint(u) + z;
                    S->delta[lin][i * n + j] = nearbyint(u) - u;
                    S->code[lin][i * n + j] = c < 0 ? 0 : (c > maxq ? (int)maxq : -1);
                }
                int c = S->code[lin][i * n + j];
                weff[i * n + j] = c >= 0 ? s * (c - z) : x[j] + s * S->delta[lin][i * n + j];
            }
        }
    return QERR_OK;
}

/* Everything a double-precision loss evaluation needs. */
typedef struct {
    const qerr_block_config *cfg;
    qerr_omq_block *b;
    rblock *blk; /* blk[0] = trained, blk[1..] = next */
    int la;
    int64_t batch, seq, n;
    qerr_block_cache_d *cache[3];
    double *x, *t[3], *ybuf, *gy;
} gcase;

static double gloss(gcase *c, bool grad) {
    const qerr_block_weights_d *next[2] = {&c->blk[1].d, &c->blk[2].d};
    double loss;
    qerr__omq_refresh(c->b);
    if (grad) qerr__omq_zero_grads(c->b);
    assert_int_equal(qerr__omq_loss_d(c->b, c->cache, &c->blk[0].d, next, c->la, c->x,
                                      (const double *const *)c->t, c->ybuf, grad ? c->gy : NULL,
                                      &loss, NULL),
                     QERR_OK);
    return loss;
}

/* Central differences of the surrogate vs the analytic STE gradient for a
 * sample of clip and D parameters of every linear. */
static void grad_check(int mask, int la, bool lsi_vector) {
    const qerr_block_config *cfg = &SMALL;
    rblock blk[3];
    for (int k = 0; k < 3; k++) rblock_make(&blk[k], cfg, 100 + 10 * (uint64_t)k);
    qerr_omq_opts o;
    qerr__omq_opts_default(&o);
    o.w_bits = 3;
    o.w_group = 4;
    o.mask = mask;
    o.mask_width = 1;
    o.mask_block = 3;
    o.lsi_vector = lsi_vector;
    o.lookahead = la;
    o.lambda = 0.7;
    qerr_omq_block b;
    assert_int_equal(qerr__omq_block_init(&b, cfg, &blk[0].f, &o), QERR_OK);
    /* move off the init: clips spread around 2..4, D small random */
    qerr_rng rng;
    qerr__rng_seed(&rng, 7);
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        for (int64_t k = 0; k < 2 * b.nclip[l]; k++)
            b.clip[l][k] = 2.0 + 2.0 * (double)(qerr__rng_next(&rng) % 1000) / 1000.0;
        int64_t r = b.r[l];
        for (int64_t k = 0; k < b.nd[l]; k++)
            if (b.nd[l] == r || b.mask[l][k])
                b.d[l][k] = 0.05 * ((double)(qerr__rng_next(&rng) % 1000) / 500.0 - 1.0);
    }
    gcase c = {cfg, &b, blk, la, 2, 5, 0, {NULL}, NULL, {NULL}, NULL, NULL};
    c.n = c.batch * c.seq * cfg->hidden;
    float *xf = malloc(sizeof(float) * (size_t)c.n);
    tu_random(xf, c.n, 3);
    c.x = malloc(sizeof(double) * (size_t)c.n);
    for (int64_t i = 0; i < c.n; i++) c.x[i] = xf[i];
    for (int k = 0; k <= la; k++) {
        assert_int_equal(qerr__block_cache_create_d(cfg, c.batch, c.seq, &c.cache[k]), QERR_OK);
        c.t[k] = malloc(sizeof(double) * (size_t)c.n);
        tu_random(xf, c.n, 20 + (uint64_t)k);
        for (int64_t i = 0; i < c.n; i++) c.t[k][i] = xf[i];
    }
    c.ybuf = malloc(sizeof(double) * (size_t)(c.n * (la + 1)));
    c.gy = malloc(sizeof(double) * (size_t)(c.n * (la + 1)));
    /* analytic gradient at the base point */
    gloss(&c, true);
    /* freeze the surrogate there (its value equals the quantizer's) */
    sur S = {&b, {NULL}, {NULL}, {NULL}, true};
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        S.delta[l] = malloc(sizeof(double) * (size_t)(b.m[l] * b.n[l]));
        S.code[l] = malloc(sizeof(int) * (size_t)(b.m[l] * b.n[l]));
        S.z[l] = malloc(sizeof(double) * (size_t)b.nclip[l]);
    }
    b.wq_override = sur_fwd;
    b.wq_user = &S;
    double base_sur = gloss(&c, false);
    S.freeze = false;
    double base_true;
    {
        b.wq_override = NULL;
        base_true = gloss(&c, false);
        b.wq_override = sur_fwd;
    }
    assert_true(fabs(base_sur - base_true) <= 1e-9 * fabs(base_true));
    int checked = 0, worst_ok = 1;
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        /* a few clip parameters and a few D entries on the mask */
        for (int64_t k = 0; k < 2 * b.nclip[l]; k += 1 + 2 * b.nclip[l] / 6) {
            double save = b.clip[l][k], eps = 1e-5;
            b.clip[l][k] = save + eps;
            double fp = gloss(&c, false);
            b.clip[l][k] = save - eps;
            double fm = gloss(&c, false);
            b.clip[l][k] = save;
            double fd = (fp - fm) / (2 * eps), an = b.gclip[l][k];
            if (fabs(fd - an) > 1e-6 * fmax(1e-4, fabs(fd))) {
                worst_ok = 0;
                print_message("lin %d clip %lld: analytic %.10g vs fd %.10g\n", l, (long long)k,
                              an, fd);
            }
            checked++;
        }
        for (int64_t k = 0; k < b.nd[l]; k += 1 + b.nd[l] / 8) {
            if (b.nd[l] != b.r[l] && !b.mask[l][k]) continue;
            double save = b.d[l][k], eps = 1e-6;
            b.d[l][k] = save + eps;
            double fp = gloss(&c, false);
            b.d[l][k] = save - eps;
            double fm = gloss(&c, false);
            b.d[l][k] = save;
            double fd = (fp - fm) / (2 * eps), an = b.gd[l][k];
            if (fabs(fd - an) > 1e-6 * fmax(1e-4, fabs(fd))) {
                worst_ok = 0;
                print_message("lin %d D %lld: analytic %.10g vs fd %.10g\n", l, (long long)k, an,
                              fd);
            }
            checked++;
        }
    }
    assert_true(checked > 20);
    assert_true(worst_ok);
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        free(S.delta[l]);
        free(S.code[l]);
        free(S.z[l]);
    }
    for (int k = 0; k <= la; k++) {
        qerr__block_cache_free_d(c.cache[k]);
        free(c.t[k]);
    }
    free(c.ybuf); free(c.gy); free(c.x); free(xf);
    qerr__omq_block_free(&b);
    for (int k = 0; k < 3; k++) rblock_free(&blk[k]);
}

static void grad_lwc_block(void **state) {
    (void)state;
    grad_check(QERR_CQE_MASK_NONE, 0, true);
}
static void grad_lsi_block(void **state) {
    (void)state;
    grad_check(QERR_CQE_MASK_DIAG, 0, true);
}
static void grad_sde_band_block(void **state) {
    (void)state;
    grad_check(QERR_CQE_MASK_BAND, 0, false);
}
static void grad_sde_diag_block_cross_layer1(void **state) {
    (void)state;
    grad_check(QERR_CQE_MASK_DIAG_BLOCK, 1, false);
}
static void grad_cross_layer2(void **state) {
    (void)state;
    grad_check(QERR_CQE_MASK_BLOCK, 2, false);
}

/* ---- training on a random block ------------------------------------------- */
typedef struct {
    rblock blk[3];
    float *x;
    int64_t nseq, seq;
} rcase;

static void rcase_make(rcase *c) {
    for (int k = 0; k < 3; k++) rblock_make(&c->blk[k], &SMALL, 300 + 10 * (uint64_t)k);
    c->nseq = 4;
    c->seq = 6;
    c->x = malloc(sizeof(float) * (size_t)(c->nseq * c->seq * SMALL.hidden));
    tu_random(c->x, c->nseq * c->seq * SMALL.hidden, 9);
}

static void rcase_free(rcase *c) {
    for (int k = 0; k < 3; k++) rblock_free(&c->blk[k]);
    free(c->x);
}

static qerr_omq_io rcase_io(rcase *c, int64_t layer, int64_t nlayers) {
    qerr_omq_io io = {c->x, c->x, c->nseq, c->seq, layer, nlayers, {&c->blk[1].f, &c->blk[2].f}};
    return io;
}

/* With D = 0 and the clips at their init (0 epochs), every linear is RTN of
 * W with that clipping: the dequantized codes equal the fake quantizer, and
 * w ~= s * (q - z) within half a step where nothing is clipped. */
static void init_is_rtn(void **state) {
    (void)state;
    rcase c;
    rcase_make(&c);
    qerr_omq_opts o;
    qerr__omq_opts_default(&o);
    o.w_bits = 3;
    o.w_group = 4;
    o.mask = QERR_CQE_MASK_BAND;
    o.lsi_vector = false;
    o.epochs = 0;
    qerr_omq_io io = rcase_io(&c, 0, 3);
    qerr_omq_block *b;
    assert_int_equal(qerr__omq_train_block(NULL, &SMALL, &c.blk[0].f, &io, &o, &b), QERR_OK);
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        const int64_t m = b->m[l], n = b->n[l];
        qerr_result *r;
        assert_int_equal(qerr__omq_encode(b, l, &r), QERR_OK);
        float *deq = malloc(sizeof(float) * (size_t)(m * n));
        double *w = malloc(sizeof(double) * (size_t)(m * n));
        double *fq = malloc(sizeof(double) * (size_t)(m * n));
        assert_int_equal(qerr_result_dequantize(r, deq, (size_t)(m * n)), QERR_OK);
        for (int64_t k = 0; k < m * n; k++) w[k] = c.blk[0].wf[l][k];
        qerr_fq_spec sp = {3, QERR_FQ_ASYM0, QERR_FQ_CLIP_SCALE, 4, false};
        double *clip = malloc(sizeof(double) * (size_t)(2 * b->nclip[l]));
        for (int64_t k = 0; k < 2 * b->nclip[l]; k++) clip[k] = 4.0;
        qerr__fq_fwd_d(&sp, m, n, clip, w, fq);
        uint8_t *codes = malloc((size_t)(m * n));
        assert_int_equal(qerr_result_codes(r, codes, (size_t)(m * n)), QERR_OK);
        for (int64_t k = 0; k < m * n; k++) {
            assert_true(codes[k] <= 7);
            assert_true(fabs((double)deq[k] - fq[k]) <= 1e-5 * (1 + fabs(fq[k])));
        }
        free(codes); free(clip); free(deq); free(w); free(fq);
        qerr_result_free(r);
    }
    /* and the block loss at init is the fake-quant RTN loss: training moved nothing */
    assert_int_equal(b->epochs_done, 0);
    assert_true(b->mse_init == b->mse_final);
    qerr__omq_block_destroy(b);
    rcase_free(&c);
}

static qerr_omq_block *train_small(rcase *c, int mask, bool lsi_vector, int la, int epochs) {
    qerr_omq_opts o;
    qerr__omq_opts_default(&o);
    o.w_bits = 3;
    o.w_group = 4;
    o.mask = mask;
    o.mask_block = 3;
    o.lsi_vector = lsi_vector;
    o.lookahead = la;
    o.epochs = epochs;
    o.lr_d = 1e-2; /* large on purpose: D must move in a few steps */
    o.seed = 5;
    qerr_omq_io io = rcase_io(c, 0, 3);
    qerr_omq_block *b;
    assert_int_equal(qerr__omq_train_block(NULL, &SMALL, &c->blk[0].f, &io, &o, &b), QERR_OK);
    return b;
}

/* mask=diag through the dense r x r path equals the LSI vector path. */
static void diag_equals_lsi(void **state) {
    (void)state;
    rcase c;
    rcase_make(&c);
    qerr_omq_block *v = train_small(&c, QERR_CQE_MASK_DIAG, true, 0, 5);
    qerr_omq_block *d = train_small(&c, QERR_CQE_MASK_DIAG, false, 0, 5);
    for (int e = 0; e < 5; e++)
        assert_true(fabs(v->epoch_loss[e] - d->epoch_loss[e]) <= 1e-6 * v->epoch_loss[e]);
    double moved = 0;
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        int64_t r = v->r[l];
        for (int64_t a = 0; a < r; a++)
            for (int64_t bb = 0; bb < r; bb++) {
                double dv = d->d[l][a * r + bb];
                if (a != bb) assert_true(dv == 0.0);
                else {
                    assert_true(fabs(dv - v->d[l][a]) <= 1e-6 * (1e-3 + fabs(v->d[l][a])));
                    moved = fmax(moved, fabs(dv));
                }
            }
        for (int64_t k = 0; k < 2 * v->nclip[l]; k++)
            assert_true(fabs(v->clip[l][k] - d->clip[l][k]) <= 1e-6);
    }
    assert_true(moved > 1e-3); /* D did train */
    qerr__omq_block_destroy(v);
    qerr__omq_block_destroy(d);
    rcase_free(&c);
}

static void training_lowers_loss(void **state) {
    (void)state;
    rcase c;
    rcase_make(&c);
    const int masks[3] = {QERR_CQE_MASK_NONE, QERR_CQE_MASK_DIAG, QERR_CQE_MASK_DIAG_BLOCK};
    for (int k = 0; k < 3; k++) {
        qerr_omq_block *b = train_small(&c, masks[k], true, k == 2 ? 2 : 0, 30);
        print_message("mask %d la %d: block mse %.5g -> %.5g, epoch 1 %.5g -> epoch 30 %.5g\n",
                      masks[k], b->lookahead_used, b->mse_init, b->mse_final, b->epoch_loss[0],
                      b->epoch_loss[29]);
        assert_true(b->mse_final < b->mse_init);
        assert_true(b->epoch_loss[29] < b->epoch_loss[0]);
        qerr__omq_block_destroy(b);
    }
    rcase_free(&c);
}

/* The entry point with FlatQuant's calling convention returns seven plain
 * results from a plan. */
static void quantize_block_entry(void **state) {
    (void)state;
    rcase c;
    rcase_make(&c);
    qerr_plan *p;
    assert_int_equal(qerr_plan_parse(&p, "cqe:bits=3,group_size=4,scope=block,mask=diag+block,"
                                         "mask_block=2,epochs=2,cross_layer=1,lookahead=2"),
                     QERR_OK);
    qerr_result *out[QERR_LIN_COUNT];
    assert_int_equal(qerr__omniquant_quantize_block(NULL, p, &SMALL, &c.blk[0].f, c.x, c.nseq,
                                                    c.seq, out),
                     QERR_OK);
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        int64_t m, n;
        qerr__block_linear_shape(&SMALL, l, &m, &n);
        assert_int_equal(qerr_result_rows(out[l]), m);
        assert_int_equal(qerr_result_cols(out[l]), n);
        assert_int_equal(qerr_result_bits(out[l]), 3);
        assert_int_equal(qerr_result_group_size(out[l]), 4);
        qerr_result_free(out[l]);
    }
    /* the layer-level slot refuses scope=block with a clear status */
    qerr_tensor *w = tu_weight(8, 8, 1);
    qerr_calib *cal = tu_correlated_calib(32, 8, 0.2, 2);
    qerr_result *r = NULL;
    assert_int_equal(qerr_quantize(NULL, p, w, cal, &r), QERR_E_UNSUPPORTED);
    assert_non_null(strstr(qerr_last_error(), "scope=block"));
    qerr_tensor_free(w);
    qerr_calib_free(cal);
    qerr_plan_free(p);
    rcase_free(&c);
}

static void bad_input(void **state) {
    (void)state;
    rcase c;
    rcase_make(&c);
    qerr_omq_opts o;
    qerr__omq_opts_default(&o);
    o.epochs = 1;
    qerr_omq_block *b = NULL;
    /* a band wider than the rank of the 4x8 k_proj */
    o.mask = QERR_CQE_MASK_BAND;
    o.mask_width = 4;
    qerr_omq_io io = rcase_io(&c, 0, 3);
    assert_int_equal(qerr__omq_train_block(NULL, &SMALL, &c.blk[0].f, &io, &o, &b), QERR_E_RANGE);
    assert_non_null(strstr(qerr_last_error(), "wider than the rank"));
    o.mask = QERR_CQE_MASK_BLOCK;
    o.mask_block = 9;
    assert_int_equal(qerr__omq_train_block(NULL, &SMALL, &c.blk[0].f, &io, &o, &b), QERR_E_RANGE);
    assert_non_null(strstr(qerr_last_error(), "larger than the rank"));
    o.mask = QERR_CQE_MASK_NONE;
    /* a lookahead past the last block */
    o.lookahead = 3;
    assert_int_equal(qerr__omq_train_block(NULL, &SMALL, &c.blk[0].f, &io, &o, &b), QERR_E_RANGE);
    assert_non_null(strstr(qerr_last_error(), "lookahead"));
    o.lookahead = 2;
    io = rcase_io(&c, 3, 3);
    assert_int_equal(qerr__omq_train_block(NULL, &SMALL, &c.blk[0].f, &io, &o, &b), QERR_E_RANGE);
    assert_non_null(strstr(qerr_last_error(), "past the last block"));
    io = rcase_io(&c, 0, 3);
    io.next[1] = NULL; /* lookahead 2 from block 0 of 3 needs block 2 */
    assert_int_equal(qerr__omq_train_block(NULL, &SMALL, &c.blk[0].f, &io, &o, &b),
                     QERR_E_INVALID_ARG);
    assert_non_null(strstr(qerr_last_error(), "float weights of block 2"));
    /* the last block truncates the lookahead: no next weights needed */
    io = rcase_io(&c, 2, 3);
    io.next[0] = io.next[1] = NULL;
    assert_int_equal(qerr__omq_train_block(NULL, &SMALL, &c.blk[0].f, &io, &o, &b), QERR_OK);
    assert_int_equal(b->lookahead_used, 0);
    qerr__omq_block_destroy(b);
    /* no calibration data */
    io = rcase_io(&c, 0, 3);
    io.nseq = 0;
    assert_int_equal(qerr__omq_train_block(NULL, &SMALL, &c.blk[0].f, &io, &o, &b),
                     QERR_E_INVALID_ARG);
    assert_non_null(strstr(qerr_last_error(), "no calibration data"));
    assert_null(b);
    rcase_free(&c);
}

/* ---- a real block --------------------------------------------------------- */
static void cross_layer_real(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(dir);
    char path[1024];
    qerr_model *m;
    snprintf(path, sizeof path, "%s/stories260k", dir);
    assert_int_equal(qerr_model_load(&m, path), QERR_OK);
    snprintf(path, sizeof path, "%s/stories260k/calib.u32", dir);
    uint32_t *tok;
    int64_t ntok;
    assert_int_equal(qerr_tokens_read(path, &tok, &ntok), QERR_OK);
    const int64_t nseq = 16, seq = 64, layer = 1;
    qerr_block_config cfg;
    qerr__block_config_from_model(&m->cfg, &cfg);
    float *x = malloc(sizeof(float) * (size_t)(nseq * seq * cfg.hidden));
    assert_int_equal(qerr__embed(m, tok, nseq * seq, x), QERR_OK);
    qerr_layer_weights lw;
    for (int64_t l = 0; l < layer; l++) {
        qerr__model_layer(m, l, &lw);
        assert_int_equal(qerr__layer_forward(NULL, &m->cfg, &lw, x, nseq, seq, NULL, NULL, -1),
                         QERR_OK);
    }
    qerr_block_weights_f w, w1;
    qerr__model_layer(m, layer, &lw);
    qerr__block_weights_from_layer(&lw, &w);
    qerr__model_layer(m, layer + 1, &lw);
    qerr__block_weights_from_layer(&lw, &w1);
    qerr_omq_io io = {x, x, nseq, seq, layer, m->cfg.layers, {&w1, NULL}};
    double next[2], blk[2], init_next = 0;
    for (int cl = 0; cl < 2; cl++) {
        qerr_omq_opts o;
        qerr__omq_opts_default(&o);
        o.w_bits = 2;
        o.w_group = 32;
        o.mask = QERR_CQE_MASK_DIAG_BLOCK;
        o.mask_block = 16;
        o.epochs = 20;
        o.batch = 1;
        o.lookahead = cl;
        o.seed = 1;
        qerr_omq_block *b;
        assert_int_equal(qerr__omq_train_block(NULL, &cfg, &w, &io, &o, &b), QERR_OK);
        print_message("stories260k block %lld W2g32 SDE diag+block:16, %s, %d epochs (%.1f s): "
                      "block mse %.5g -> %.5g, next-block mse %.5g -> %.5g\n",
                      (long long)layer, cl ? "cross-layer la=1" : "plain loss", o.epochs,
                      b->seconds, b->mse_init, b->mse_final, b->next_init, b->next_final);
        blk[cl] = b->mse_final;
        next[cl] = b->next_final;
        init_next = b->next_init;
        assert_true(b->mse_final < b->mse_init);
        qerr__omq_block_destroy(b);
    }
    (void)blk;
    assert_true(next[1] < next[0]);
    assert_true(next[1] < init_next);
    free(x);
    qerr_free(tok);
    qerr_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(grad_lwc_block),
        cmocka_unit_test(grad_lsi_block),
        cmocka_unit_test(grad_sde_band_block),
        cmocka_unit_test(grad_sde_diag_block_cross_layer1),
        cmocka_unit_test(grad_cross_layer2),
        cmocka_unit_test(init_is_rtn),
        cmocka_unit_test(diag_equals_lsi),
        cmocka_unit_test(training_lowers_loss),
        cmocka_unit_test(quantize_block_entry),
        cmocka_unit_test(bad_input),
        cmocka_unit_test(cross_layer_real),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
