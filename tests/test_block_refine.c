/* refine=quantease of block-wise omniquant/cqe (lib/methods/omniquant/cqe_block_refine.c
 * and qerr__quantease_refine): the learned grids are kept, the codes stay on
 * them, and each linear's layer objective tr((W - Q) H (W - Q)^T) never rises
 * above the learned rounding's; on correlated inputs it falls. H is computed
 * here independently of the library. */
#include "testutil.h"

#include "methods/omniquant/cqe_block_refine.h"
#include "methods/omniquant/cqe_layer.h"
#include "methods/quantease.h"
#include "methods/omniquant/omniquant_block.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* tr((W - deq(r)) H (W - deq(r))^T) in float64. */
static double objective(const float *w, const qerr_result *r, const double *h, int64_t m,
                        int64_t n) {
    float *q = malloc(sizeof(float) * (size_t)(m * n));
    assert_int_equal(qerr_result_dequantize(r, q, (size_t)(m * n)), QERR_OK);
    double f = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t a = 0; a < n; a++) {
            double ea = (double)w[i * n + a] - q[i * n + a];
            for (int64_t b = 0; b < n; b++)
                f += ea * h[a * n + b] * ((double)w[i * n + b] - q[i * n + b]);
        }
    free(q);
    return f;
}

/* H = X^T X of rows drawn with correlated columns. */
static double *gram_of(const float *x, int64_t rows, int64_t n) {
    double *h = calloc((size_t)(n * n), sizeof(double));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t a = 0; a < n; a++)
            for (int64_t b = 0; b < n; b++) h[a * n + b] += (double)x[r * n + a] * x[r * n + b];
    return h;
}

static void same_grid(const qerr_result *a, const qerr_result *b) {
    const int64_t m = qerr_result_rows(a), g = qerr_result_groups(a);
    assert_int_equal(qerr_result_groups(b), g);
    assert_memory_equal(a->scales, b->scales, sizeof(float) * (size_t)(m * g));
    assert_memory_equal(a->zeros, b->zeros, sizeof(int32_t) * (size_t)(m * g));
}

/* One layer: from the RTN-with-LWC-init rounding, the objective falls and
 * the grid is the start's. Also with a ragged last group. */
static void layer_refine_lowers_objective(void **state) {
    (void)state;
    static const int64_t shapes[][3] = {{16, 64, 16}, {12, 40, 16}}; /* rows, cols, group */
    for (int s = 0; s < 2; s++) {
        const int64_t m = shapes[s][0], n = shapes[s][1], g = shapes[s][2];
        qerr_tensor *wt = tu_weight(m, n, 7 + (uint64_t)s);
        const float *w = qerr_tensor_data(wt);
        float *x = tu_correlated_rows(4 * n, n, 0.8, 3);
        double *h = gram_of(x, 4 * n, n);
        double *wd = malloc(sizeof(double) * (size_t)(m * n));
        for (int64_t k = 0; k < m * n; k++) wd[k] = w[k];
        const int64_t ng = (n + g - 1) / g;
        double *clip = malloc(sizeof(double) * (size_t)(2 * m * ng));
        for (int64_t k = 0; k < 2 * m * ng; k++) clip[k] = 4.0;
        qerr_result *start = NULL, *ref = NULL;
        assert_int_equal(qerr__cqe_encode(wd, m, n, 3, g, clip, &start), QERR_OK);
        assert_int_equal(qerr__quantease_refine(NULL, w, m, n, h, 4 * n, start, 10, false, &ref),
                         QERR_OK);
        same_grid(start, ref);
        const uint8_t *codes = ref->codes;
        for (int64_t k = 0; k < m * n; k++) assert_true(codes[k] <= 7);
        const double f0 = objective(w, start, h, m, n), f1 = objective(w, ref, h, m, n);
        print_message("layer %lldx%lld: start %.4g refined %.4g\n", (long long)m, (long long)n,
                      f0, f1);
        assert_true(f1 < 0.9 * f0); /* correlated H: error feedback pays */
        double d0, d1;
        assert_int_equal(qerr_result_diag(ref, "objective_start", &d0), QERR_OK);
        assert_int_equal(qerr_result_diag(ref, "objective_last", &d1), QERR_OK);
        assert_true(fabs(d0 - f0) <= 1e-3 * f0 && fabs(d1 - f1) <= 1e-3 * f0);
        /* from W with QuantEase's relaxed sweeps: same grids, also far below the start */
        qerr_result *fw = NULL;
        assert_int_equal(qerr__quantease_refine(NULL, w, m, n, h, 4 * n, start, 30, true, &fw),
                         QERR_OK);
        same_grid(start, fw);
        const double f2 = objective(w, fw, h, m, n);
        print_message("  from W: %.4g\n", f2);
        assert_true(f2 < 0.9 * f0);
        qerr_result_free(fw);
        /* bad input: a start of another shape */
        qerr_result *bad = NULL;
        assert_int_equal(
            qerr__quantease_refine(NULL, w, m - 1, n, h, 4 * n, start, 10, false, &bad),
            QERR_E_SHAPE);
        assert_null(bad);
        qerr_result_free(start);
        qerr_result_free(ref);
        free(clip);
        free(wd);
        free(h);
        free(x);
        qerr_tensor_free(wt);
    }
}

static const qerr_block_config SMALL = {16, 24, 2, 1, 8, 1e-5, 10000.0};

/* A whole block: refine=quantease keeps every learned grid, changes codes,
 * and on q/k/v (whose input, RMSNorm(x) * ln1, the test computes itself)
 * never raises the layer objective. */
static void block_refine_keeps_grids_and_lowers_qkv(void **state) {
    (void)state;
    const int64_t nseq = 4, seq = 16, d = SMALL.hidden, rows = nseq * seq;
    float *wf[QERR_LIN_COUNT], ln[2][16];
    qerr_block_weights_f w;
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        int64_t o, i;
        qerr__block_linear_shape(&SMALL, l, &o, &i);
        wf[l] = malloc(sizeof(float) * (size_t)(o * i));
        tu_random(wf[l], o * i, 100 + (uint64_t)l);
        for (int64_t k = 0; k < o * i; k++) wf[l][k] *= 0.4f;
        w.w[l] = wf[l];
    }
    for (int k = 0; k < 2; k++)
        for (int64_t j = 0; j < d; j++) ln[k][j] = 1.0f + 0.05f * (float)((j * (k + 3)) % 7);
    w.ln1 = ln[0];
    w.ln2 = ln[1];
    float *x = tu_correlated_rows(rows, d, 0.7, 5);

    qerr_result *plain[QERR_LIN_COUNT], *ref[QERR_LIN_COUNT];
    qerr_plan *p0, *p1;
    assert_int_equal(qerr_plan_parse(&p0, "cqe:scope=block,bits=2,group_size=8,mask=diag,epochs=1"),
                     QERR_OK);
    assert_int_equal(qerr_plan_parse(&p1, "cqe:scope=block,bits=2,group_size=8,mask=diag,epochs=1,"
                                          "refine=quantease,refine_start=learned,refine_iters=8"),
                     QERR_OK);
    assert_int_equal(qerr__omniquant_quantize_block(NULL, p0, &SMALL, &w, x, nseq, seq, plain),
                     QERR_OK);
    assert_int_equal(qerr__omniquant_quantize_block(NULL, p1, &SMALL, &w, x, nseq, seq, ref),
                     QERR_OK);
    /* the normed input of q/k/v and its Gram matrix */
    float *xn = malloc(sizeof(float) * (size_t)(rows * d));
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0;
        for (int64_t j = 0; j < d; j++) ss += (double)x[r * d + j] * x[r * d + j];
        const double inv = 1.0 / sqrt(ss / (double)d + SMALL.eps);
        for (int64_t j = 0; j < d; j++) xn[r * d + j] = (float)(x[r * d + j] * inv) * ln[0][j];
    }
    double *h = gram_of(xn, rows, d);
    bool changed = false;
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        int64_t o, i;
        qerr__block_linear_shape(&SMALL, l, &o, &i);
        same_grid(plain[l], ref[l]);
        changed |= memcmp(plain[l]->codes, ref[l]->codes, (size_t)(o * i)) != 0;
        double v;
        assert_int_equal(qerr_result_diag(ref[l], "block_mse_final", &v), QERR_OK);
        if (l <= QERR_LIN_V) {
            const double f0 = objective(wf[l], plain[l], h, o, i);
            const double f1 = objective(wf[l], ref[l], h, o, i);
            print_message("lin %d: %.4g -> %.4g\n", l, f0, f1);
            assert_true(f1 <= f0 * (1 + 1e-5));
        }
        qerr_result_free(plain[l]);
        qerr_result_free(ref[l]);
        free(wf[l]);
    }
    assert_true(changed);
    free(h);
    free(xn);
    free(x);
    qerr_plan_free(p0);
    qerr_plan_free(p1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(layer_refine_lowers_objective),
        cmocka_unit_test(block_refine_keeps_grids_and_lowers_qkv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
