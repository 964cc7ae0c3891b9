/* A random LLaMA decoder block in float and double for the block-wise
 * trainer tests (test_blockwise.c, test_blockwise_let.c). Header-only on
 * purpose: each test is one executable. */
#ifndef QERR_TEST_BLOCK_H
#define QERR_TEST_BLOCK_H

#include "testutil.h"

#include "methods/omniquant/omniquant_block.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

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

static inline double sig(double v) { return 1 / (1 + exp(-v)); }

/* The frozen-STE surrogate of the ASYM0 + LWC weight quantizer of linear
 * `lin` (group-wise, ragged last group): with `freeze`, record each group's
 * zero z, each element's rounding offset delta = round(u) - u and clamped
 * code (-1 = in range); then every in-range element is x + s * delta and
 * every clamped one s * (c - z), s following the clipped max/min of wd. */
static inline void tb_frozen_wq(const qerr_omq_block *b, int lin, const double *wd, bool freeze,
                                double *zs, double *delta, int *code, double *weff) {
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
            if (freeze) zs[i * ng + k] = nearbyint(-lo / s);
            double z = zs[i * ng + k];
            for (int64_t j = c0; j < c1; j++) {
                double u = x[j] / s;
                if (freeze) {
                    double c = nearbyint(u) + z;
                    delta[i * n + j] = nearbyint(u) - u;
                    code[i * n + j] = c < 0 ? 0 : (c > maxq ? (int)maxq : -1);
                }
                int c = code[i * n + j];
                weff[i * n + j] = c >= 0 ? s * (c - z) : x[j] + s * delta[i * n + j];
            }
        }
}

/* Calibration inputs of block `layer` of the real stories260k model in dir:
 * the first nseq x seq tokens of calib.u32, embedded and run through the
 * float blocks before it. Loads the model into *m (the caller frees it and
 * the returned inputs). */
static inline float *tb_real_block_inputs(const char *dir, int64_t nseq, int64_t seq,
                                          int64_t layer, qerr_model **m, qerr_block_config *cfg) {
    char path[1024];
    snprintf(path, sizeof path, "%s/stories260k", dir);
    assert_int_equal(qerr_model_load(m, path), QERR_OK);
    snprintf(path, sizeof path, "%s/stories260k/calib.u32", dir);
    uint32_t *tok;
    int64_t ntok;
    assert_int_equal(qerr_tokens_read(path, &tok, &ntok), QERR_OK);
    assert_true(ntok >= nseq * seq);
    qerr__block_config_from_model(&(*m)->cfg, cfg);
    float *x = malloc(sizeof(float) * (size_t)(nseq * seq * cfg->hidden));
    assert_int_equal(qerr__embed(*m, tok, nseq * seq, x), QERR_OK);
    qerr_layer_weights lw;
    for (int64_t l = 0; l < layer; l++) {
        qerr__model_layer(*m, l, &lw);
        assert_int_equal(qerr__layer_forward(NULL, &(*m)->cfg, &lw, x, nseq, seq, NULL, NULL, -1),
                         QERR_OK);
    }
    qerr_free(tok);
    return x;
}

#endif /* QERR_TEST_BLOCK_H */
