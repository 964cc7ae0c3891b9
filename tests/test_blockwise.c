/* Block-wise OmniQuant / LSI / SDE with cross-layer learning
 * (lib/methods/omniquant/omniquant_block.c). Gradients of LWC, of D on its mask and of
 * the cross-layer loss through the whole block (and the frozen float next
 * blocks) match central differences of the frozen-STE surrogate in float64;
 * D = 0 at the initial clipping is RTN with that clipping; mask=diag equals
 * the LSI vector path step for step; training lowers the block loss;
 * cross-layer learning lowers the next block's error on a real stories260k
 * block; bad input gets a clear status. */
#include "testblock.h"
#include "testutil.h"

#include "methods/omniquant/cqe_layer.h"
#include "methods/omniquant/omniquant_block.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const qerr_block_config SMALL = {8, 12, 2, 1, 4, 1e-5, 10000.0};
/* intermediate width 10: with groups of 4, down_proj rows end in a group of 2 */
static const qerr_block_config RAGGED = {8, 10, 2, 1, 4, 1e-5, 10000.0};

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

static int sur_fwd(void *user, int lin, const double *wd, double *weff) {
    sur *S = user;
    tb_frozen_wq(S->b, lin, wd, S->freeze, S->z[lin], S->delta[lin], S->code[lin], weff);
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
    double *x, *t[4], *ybuf, *gy; /* t[la + 1]: the aug_loss target */
} gcase;

static double gloss(gcase *c, bool grad);

/* dL/dp by the fourth-order central stencil: the O(eps^2) error of the
 * two-point one reaches the 1e-10 tolerance floor on the smallest clip
 * gradients (the surrogate is smooth in every parameter). */
static double fd_at(gcase *c, double *p, double eps) {
    const double save = *p, h[4] = {2 * eps, eps, -eps, -2 * eps};
    double f[4];
    for (int k = 0; k < 4; k++) {
        *p = save + h[k];
        f[k] = gloss(c, false);
    }
    *p = save;
    return (8 * (f[1] - f[2]) - (f[0] - f[3])) / (12 * eps);
}

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
 * sample of clip and D parameters of every linear (and every clip pair of
 * the last group of the first two rows, where a ragged row ends). */
static void grad_check_ex(const qerr_block_config *cfg, int64_t group, int mask, int la,
                          bool lsi_vector, bool aug) {
    rblock blk[3];
    for (int k = 0; k < 3; k++) rblock_make(&blk[k], cfg, 100 + 10 * (uint64_t)k);
    qerr_omq_opts o;
    qerr__omq_opts_default(&o);
    o.w_bits = 3;
    o.w_group = group;
    o.mask = mask;
    o.mask_width = 1;
    o.mask_block = 3;
    o.lsi_vector = lsi_vector;
    o.lookahead = la;
    o.lambda = 0.7;
    o.aug_loss = aug;
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
    if (aug) { /* any fixed target: the term is one more MSE on the block output */
        c.t[la + 1] = malloc(sizeof(double) * (size_t)c.n);
        tu_random(xf, c.n, 40);
        for (int64_t i = 0; i < c.n; i++) c.t[la + 1][i] = xf[i];
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
        const int64_t ng = b.nclip[l] / b.m[l], stride = 1 + 2 * b.nclip[l] / 6;
        for (int64_t k = 0; k < 2 * b.nclip[l]; k++) {
            if (k % stride && !(k / 2 % ng == ng - 1 && k / 2 / ng < 2)) continue;
            double fd = fd_at(&c, &b.clip[l][k], 1e-4), an = b.gclip[l][k];
            if (fabs(fd - an) > 1e-6 * fmax(1e-4, fabs(fd))) {
                worst_ok = 0;
                print_message("lin %d clip %lld: analytic %.10g vs fd %.10g\n", l, (long long)k,
                              an, fd);
            }
            checked++;
        }
        for (int64_t k = 0; k < b.nd[l]; k += 1 + b.nd[l] / 8) {
            if (b.nd[l] != b.r[l] && !b.mask[l][k]) continue;
            double fd = fd_at(&c, &b.d[l][k], 1e-5), an = b.gd[l][k];
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
    free(c.t[la + 1]);
    free(c.ybuf); free(c.gy); free(c.x); free(xf);
    qerr__omq_block_free(&b);
    for (int k = 0; k < 3; k++) rblock_free(&blk[k]);
}

static void grad_check(int mask, int la, bool lsi_vector) {
    grad_check_ex(&SMALL, 4, mask, la, lsi_vector, false);
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
/* down_proj's rows (10 columns, groups of 4) end in a group of 2 */
static void grad_ragged_block(void **state) {
    (void)state;
    grad_check_ex(&RAGGED, 4, QERR_CQE_MASK_NONE, 0, true, false);
    grad_check_ex(&RAGGED, 4, QERR_CQE_MASK_DIAG_BLOCK, 1, false, false);
}
/* aug_loss: one more MSE term on the block output, with cross-layer, and on
 * the ragged block */
static void grad_aug_loss(void **state) {
    (void)state;
    grad_check_ex(&SMALL, 4, QERR_CQE_MASK_BAND, 1, false, true);
    grad_check_ex(&RAGGED, 4, QERR_CQE_MASK_NONE, 0, true, true);
}

/* ---- training on a random block ------------------------------------------- */
typedef struct {
    rblock blk[3];
    float *x;
    int64_t nseq, seq;
} rcase;

static void rcase_make_cfg(rcase *c, const qerr_block_config *cfg) {
    for (int k = 0; k < 3; k++) rblock_make(&c->blk[k], cfg, 300 + 10 * (uint64_t)k);
    c->nseq = 4;
    c->seq = 6;
    c->x = malloc(sizeof(float) * (size_t)(c->nseq * c->seq * cfg->hidden));
    tu_random(c->x, c->nseq * c->seq * cfg->hidden, 9);
}

static void rcase_make(rcase *c) { rcase_make_cfg(c, &SMALL); }

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

/* ---- ragged groups ---------------------------------------------------------- */
/* 0 epochs on the ragged block is RTN with the initial clipping, written out
 * here per (row, group) with the last group of a row shorter: codes, float
 * scales and zeros exactly; the clip-pair count, the result's groups and the
 * training fake quantizer agree with it. */
static void init_is_rtn_ragged(void **state) {
    (void)state;
    rcase c;
    rcase_make_cfg(&c, &RAGGED);
    qerr_omq_opts o;
    qerr__omq_opts_default(&o);
    o.w_bits = 3;
    o.w_group = 4;
    o.mask = QERR_CQE_MASK_DIAG_BLOCK; /* D = 0: W(D) is W */
    o.mask_block = 3;
    o.lsi_vector = false;
    o.epochs = 0;
    qerr_omq_io io = rcase_io(&c, 0, 3);
    qerr_omq_block *b;
    assert_int_equal(qerr__omq_train_block(NULL, &RAGGED, &c.blk[0].f, &io, &o, &b), QERR_OK);
    const double sa = sig(o.clip_init), maxq = 7;
    int ragged_rows = 0;
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        const int64_t m = b->m[l], n = b->n[l], g = 4, ng = (n + g - 1) / g;
        const float *w = c.blk[0].wf[l];
        assert_int_equal(b->nclip[l], m * ng);
        qerr_result *r;
        assert_int_equal(qerr__omq_encode(b, l, &r), QERR_OK);
        assert_int_equal(qerr_result_group_size(r), g);
        assert_int_equal(qerr_result_groups(r), ng);
        uint8_t *codes = malloc((size_t)(m * n));
        float *sc = malloc(sizeof(float) * (size_t)(m * ng));
        float *deq = malloc(sizeof(float) * (size_t)(m * n));
        int32_t *zr = malloc(sizeof(int32_t) * (size_t)(m * ng));
        double *wd = malloc(sizeof(double) * (size_t)(m * n));
        double *fq = malloc(sizeof(double) * (size_t)(m * n));
        assert_int_equal(qerr_result_codes(r, codes, (size_t)(m * n)), QERR_OK);
        assert_int_equal(qerr_result_scales(r, sc, (size_t)(m * ng)), QERR_OK);
        assert_int_equal(qerr_result_zeros(r, zr, (size_t)(m * ng)), QERR_OK);
        assert_int_equal(qerr_result_dequantize(r, deq, (size_t)(m * n)), QERR_OK);
        for (int64_t i = 0; i < m; i++)
            for (int64_t k = 0; k < ng; k++) {
                const int64_t c0 = k * g, c1 = c0 + g < n ? c0 + g : n;
                if (c1 - c0 < g) ragged_rows++;
                double mx = 0, mn = 0; /* the range holds 0 */
                for (int64_t j = c0; j < c1; j++) {
                    mx = fmax(mx, w[i * n + j]);
                    mn = fmin(mn, w[i * n + j]);
                }
                const double s = (sa * mx - sa * mn) / maxq, z = nearbyint(-sa * mn / s);
                assert_true(sc[i * ng + k] == (float)s);
                assert_int_equal(zr[i * ng + k], (int32_t)z);
                for (int64_t j = c0; j < c1; j++) {
                    double q = fmin(fmax(nearbyint(w[i * n + j] / s) + z, 0), maxq);
                    assert_int_equal(codes[i * n + j], (int)q);
                }
            }
        /* what training saw: the fake quantizer of W with the same clips */
        for (int64_t k = 0; k < m * n; k++) wd[k] = w[k];
        qerr__fq_fwd_d(&b->fq, m, n, b->clip[l], wd, fq);
        for (int64_t k = 0; k < m * n; k++)
            assert_true(fabs((double)deq[k] - fq[k]) <= 1e-5 * (1 + fabs(fq[k])));
        free(codes); free(sc); free(deq); free(zr); free(wd); free(fq);
        qerr_result_free(r);
    }
    assert_int_equal(ragged_rows, 8); /* the 8 rows of down_proj */
    /* clips that differ per (row, group): the encode picks the pair the
     * training quantizer used, the short group's included */
    qerr_rng rng;
    qerr__rng_seed(&rng, 11);
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        const int64_t m = b->m[l], n = b->n[l];
        for (int64_t k = 0; k < 2 * b->nclip[l]; k++)
            b->clip[l][k] = 3.0 * (double)(qerr__rng_next(&rng) % 1000) / 1000.0 - 1.0;
        qerr_result *r;
        assert_int_equal(qerr__omq_encode(b, l, &r), QERR_OK);
        float *deq = malloc(sizeof(float) * (size_t)(m * n));
        double *fq = malloc(sizeof(double) * (size_t)(m * n));
        assert_int_equal(qerr_result_dequantize(r, deq, (size_t)(m * n)), QERR_OK);
        qerr__fq_fwd_d(&b->fq, m, n, b->clip[l], b->w0[l], fq);
        for (int64_t k = 0; k < m * n; k++)
            assert_true(fabs((double)deq[k] - fq[k]) <= 1e-5 * (1 + fabs(fq[k])));
        free(deq); free(fq);
        qerr_result_free(r);
    }
    qerr__omq_block_destroy(b);
    rcase_free(&c);
}

/* ---- aug_loss --------------------------------------------------------------- */
/* Training with aug_loss runs and lowers both terms; with x_fp == x_q its
 * target is the block target; off, the term is absent; the plan key sets it. */
static void aug_loss_trains(void **state) {
    (void)state;
    rcase c;
    rcase_make(&c);
    const int64_t nx = c.nseq * c.seq * SMALL.hidden;
    float *xfp = malloc(sizeof(float) * (size_t)nx);
    tu_random(xfp, nx, 77);
    for (int64_t i = 0; i < nx; i++) xfp[i] = c.x[i] + 0.1f * xfp[i]; /* a float path apart */
    qerr_omq_opts o;
    qerr__omq_opts_default(&o);
    o.w_bits = 3;
    o.w_group = 4;
    o.mask = QERR_CQE_MASK_DIAG;
    o.lr_d = 1e-2;
    o.epochs = 30;
    o.seed = 5;
    o.aug_loss = true;
    qerr_omq_io io = rcase_io(&c, 0, 3);
    io.x_fp = xfp;
    qerr_omq_block *b;
    assert_int_equal(qerr__omq_train_block(NULL, &SMALL, &c.blk[0].f, &io, &o, &b), QERR_OK);
    print_message("aug_loss: block mse %.5g -> %.5g, aug term %.5g -> %.5g, loss %.5g -> %.5g\n",
                  b->mse_init, b->mse_final, b->aug_init, b->aug_final, b->epoch_loss[0],
                  b->epoch_loss[29]);
    assert_true(isfinite(b->aug_init) && b->aug_init != b->mse_init);
    assert_true(b->aug_final < b->aug_init);
    assert_true(b->mse_final < b->mse_init);
    assert_true(b->epoch_loss[29] < b->epoch_loss[0]);
    qerr__omq_block_destroy(b);
    o.epochs = 0;
    io.x_fp = c.x;
    assert_int_equal(qerr__omq_train_block(NULL, &SMALL, &c.blk[0].f, &io, &o, &b), QERR_OK);
    assert_true(b->aug_init == b->mse_init);
    qerr__omq_block_destroy(b);
    o.aug_loss = false;
    assert_int_equal(qerr__omq_train_block(NULL, &SMALL, &c.blk[0].f, &io, &o, &b), QERR_OK);
    assert_true(isnan(b->aug_init));
    qerr__omq_block_destroy(b);
    for (int k = 0; k < 2; k++) {
        qerr_plan *p;
        assert_int_equal(qerr_plan_parse(&p, k ? "omniquant:scope=block,aug_loss=1"
                                               : "cqe:scope=block"),
                         QERR_OK);
        assert_int_equal(qerr__omq_opts_from_plan(p, k == 0, &SMALL, 0, &o), QERR_OK);
        assert_true(o.aug_loss == (k == 1));
        qerr_plan_free(p);
    }
    free(xfp);
    rcase_free(&c);
}

/* stories260k (FF 172, not a multiple of 32) through qerr_model_quantize:
 * without ragged_groups=1 the refusal names the key and the linear; with it
 * the run succeeds, down_proj has 6 groups (5 of 32, one of 12), and the
 * perplexity is finite and below RTN's. */
static double quantized_ppl(const char *dir, const char *spec, const uint32_t *cal, int64_t ncal,
                            const uint32_t *ev, int64_t nev, int64_t *down_groups) {
    qerr_model *m;
    qerr_qmodel *q;
    char path[1024];
    snprintf(path, sizeof path, "%s/stories260k", dir);
    assert_int_equal(qerr_model_load(&m, path), QERR_OK);
    assert_int_equal(qerr_model_quantize(NULL, m, spec, NULL, cal, ncal, 8, 128, &q), QERR_OK);
    const qerr_result *r;
    assert_int_equal(qerr_qmodel_get(q, "model.layers.2.mlp.down_proj.weight", &r), QERR_OK);
    *down_groups = qerr_result_groups(r);
    assert_int_equal(qerr_result_group_size(r), 32);
    assert_int_equal(qerr_model_apply(m, q), QERR_OK);
    double ppl = NAN;
    assert_int_equal(qerr_model_perplexity(NULL, m, ev, nev, 128, 30, &ppl, NULL, NULL), QERR_OK);
    qerr_qmodel_free(q);
    qerr_model_free(m);
    return ppl;
}

static void ragged_stories260k(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(dir);
    char path[1024];
    uint32_t *cal, *ev;
    int64_t ncal, nev, groups;
    snprintf(path, sizeof path, "%s/stories260k/calib.u32", dir);
    assert_int_equal(qerr_tokens_read(path, &cal, &ncal), QERR_OK);
    snprintf(path, sizeof path, "%s/stories260k/eval.u32", dir);
    assert_int_equal(qerr_tokens_read(path, &ev, &nev), QERR_OK);
    qerr_model *m;
    qerr_qmodel *q = NULL;
    snprintf(path, sizeof path, "%s/stories260k", dir);
    assert_int_equal(qerr_model_load(&m, path), QERR_OK);
    /* the block entry itself refuses a group that does not divide, naming the key */
    qerr_block_config bc;
    qerr__block_config_from_model(&m->cfg, &bc);
    qerr_layer_weights lw;
    qerr__model_layer(m, 0, &lw);
    qerr_block_weights_f bw;
    qerr__block_weights_from_layer(&lw, &bw);
    float *x0 = calloc((size_t)(8 * bc.hidden), sizeof(float));
    qerr_plan *p;
    assert_int_equal(qerr_plan_parse(&p, "cqe:scope=block,bits=3,group_size=32,epochs=1"), QERR_OK);
    qerr_result *out[QERR_LIN_COUNT];
    assert_int_equal(qerr__omniquant_quantize_block(NULL, p, &bc, &bw, x0, 1, 8, out),
                     QERR_E_SHAPE);
    print_message("without ragged_groups: %s\n", qerr_last_error());
    assert_non_null(strstr(qerr_last_error(), "ragged_groups=1"));
    assert_non_null(strstr(qerr_last_error(), "down_proj"));
    qerr_plan_free(p);
    free(x0);
    (void)q;
    qerr_model_free(m);
    double cqe = quantized_ppl(dir, "cqe:scope=block,bits=3,group_size=32,ragged_groups=1,epochs=1",
                               cal, ncal, ev, nev, &groups);
    assert_int_equal(groups, 6);
    /* qerr_model_quantize turns ragged groups on by itself, as for layer plans */
    double cqe_auto = quantized_ppl(dir, "cqe:scope=block,bits=3,group_size=32,epochs=1", cal,
                                    ncal, ev, nev, &groups);
    assert_int_equal(groups, 6);
    assert_true(cqe_auto == cqe);
    double rtn = quantized_ppl(dir, "rtn:bits=3,group_size=32", cal, ncal, ev, nev, &groups);
    assert_int_equal(groups, 6);
    print_message("stories260k W3g32 ragged, 8 x 128 calibration, 30 windows of 128: "
                  "cqe scope=block 1 epoch ppl %.4f, rtn %.4f\n", cqe, rtn);
    assert_true(isfinite(cqe) && cqe < rtn);
    qerr_free(cal);
    qerr_free(ev);
}

/* ---- a real block --------------------------------------------------------- */
static void cross_layer_real(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(dir);
    qerr_model *m;
    qerr_block_config cfg;
    const int64_t nseq = 16, seq = 64, layer = 1;
    float *x = tb_real_block_inputs(dir, nseq, seq, layer, &m, &cfg);
    qerr_layer_weights lw;
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
        cmocka_unit_test(grad_ragged_block),
        cmocka_unit_test(grad_aug_loss),
        cmocka_unit_test(init_is_rtn_ragged),
        cmocka_unit_test(aug_loss_trains),
        cmocka_unit_test(ragged_stories260k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
