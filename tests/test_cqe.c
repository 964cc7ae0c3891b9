/* Layer-wise OmniQuant (LWC) and CQE (LSI / SDE): gradients against central
 * differences of the STE surrogate written here (each round frozen as
 * u + (round(u0) - u0), each clamped code a constant, both at the base
 * point; the scale recomputed from the clip parameters and from W(D)), the
 * exact RTN-with-clipping start, diag SDE = LSI step for step, training
 * lowers the objective, comparison with GPTQ, and bad input. */
#include "testutil.h"
#include "methods/omniquant/cqe_layer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers --------------------------------------------------------------- */
static double sig(double v) { return 1 / (1 + exp(-v)); }

static double *random_spd(int64_t n, int64_t rows, uint64_t seed) {
    float *x = tu_correlated_rows(rows, n, 0.5, seed);
    double *h = calloc((size_t)(n * n), sizeof(double));
    assert_non_null(x);
    assert_non_null(h);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) h[i * n + j] += (double)x[r * n + i] * x[r * n + j];
    free(x);
    return h;
}

static qerr_cqe_opts base_opts(int bits, int64_t group, int mask) {
    qerr_cqe_opts o = {.bits = bits, .group = group, .mask = mask, .width = 1, .block = 2,
                       .lsi_vector = false, .lwc = true, .steps = 0, .lr_clip = 1e-2,
                       .lr_d = 2e-4, .clip_init = 4.0, .keep_best = true};
    return o;
}

/* ---- the STE surrogate ------------------------------------------------------ */
typedef struct {
    qerr_cqe_layer *st;
    double *delta; /* frozen round(u0) - u0, or NAN where the code was clamped */
    double *cconst; /* clamped code - z0 where clamped */
} surrogate;

/* W(D) = W0 + U D V^T from theta, written naively. */
static void sur_wd(qerr_cqe_layer *st, const double *theta, double *wd) {
    const int64_t m = st->m, n = st->n, r = st->r;
    const double *d = theta + 2 * st->nclip;
    memcpy(wd, st->w0, (size_t)(m * n) * sizeof(double));
    if (!st->nd) return;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double acc = 0;
            for (int64_t a = 0; a < r; a++)
                for (int64_t b = 0; b < r; b++) {
                    double dab = st->nd == r ? (a == b ? d[a] : 0) : d[a * r + b];
                    if (dab != 0) acc += st->u[i * r + a] * dab * st->vt[b * n + j];
                }
            wd[i * n + j] += acc;
        }
}

/* Scale and zero of group (i, k) of wd, ASYM0 + LWC. */
static void sur_grid(qerr_cqe_layer *st, const double *theta, const double *wd, int64_t i,
                     int64_t k, int64_t g, double *s, double *z) {
    const int64_t n = st->n, c0 = k * g, c1 = c0 + g < n ? c0 + g : n;
    double mx = wd[i * n + c0], mn = mx;
    for (int64_t j = c0; j < c1; j++) {
        mx = fmax(mx, wd[i * n + j]);
        mn = fmin(mn, wd[i * n + j]);
    }
    double hi = fmax(mx, 0) * sig(theta[2 * (i * st->ng + k)]);
    double lo = fmin(mn, 0) * sig(theta[2 * (i * st->ng + k) + 1]);
    *s = (hi - lo) / ((1 << st->o.bits) - 1);
    *z = nearbyint(-lo / *s);
}

static double sur_loss(surrogate *sc, const double *theta, bool freeze) {
    qerr_cqe_layer *st = sc->st;
    const int64_t m = st->m, n = st->n, g = st->o.group, maxq = (1 << st->o.bits) - 1;
    double *wd = malloc((size_t)(m * n) * sizeof(double));
    double *e = malloc((size_t)(m * n) * sizeof(double));
    assert_non_null(wd);
    assert_non_null(e);
    sur_wd(st, theta, wd);
    for (int64_t i = 0; i < m; i++)
        for (int64_t k = 0; k < st->ng; k++) {
            double s, z;
            sur_grid(st, theta, wd, i, k, g, &s, &z);
            for (int64_t j = k * g; j < (k + 1) * g && j < n; j++) {
                int64_t id = i * n + j;
                double x = wd[id], u = x / s;
                if (freeze) {
                    double c = nearbyint(u) + z;
                    if (c < 0 || c > maxq) {
                        sc->delta[id] = NAN;
                        sc->cconst[id] = (c < 0 ? 0 : maxq) - z;
                    } else {
                        sc->delta[id] = nearbyint(u) - u;
                    }
                }
                double xh = isnan(sc->delta[id]) ? s * sc->cconst[id] : x + s * sc->delta[id];
                e[id] = xh - st->w0[id];
            }
        }
    double f = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t a = 0; a < n; a++)
            for (int64_t b = 0; b < n; b++) f += e[i * n + a] * st->H[a * n + b] * e[i * n + b];
    free(wd);
    free(e);
    return f / st->ref;
}

static void check_gradients(int mask, bool lsi_vector) {
    const int64_t m = 6, n = 8, g = 4;
    float w[6 * 8];
    tu_random(w, m * n, 11);
    double *h = random_spd(n, 40, 12);
    qerr_cqe_opts o = base_opts(3, g, mask);
    o.lsi_vector = lsi_vector;
    qerr_cqe_layer st;
    assert_int_equal(qerr__cqe_layer_init(&st, w, m, n, h, &o), QERR_OK);
    const int64_t np = 2 * st.nclip + st.nd;
    /* a generic point: clips around 2, D small on the mask (zero elsewhere) */
    float rnd[512];
    tu_random(rnd, np, 13);
    for (int64_t k = 0; k < 2 * st.nclip; k++) st.theta[k] = 2.0 + rnd[k];
    for (int64_t k = 2 * st.nclip; k < np; k++) {
        int64_t d = k - 2 * st.nclip;
        bool on = st.nd == st.r || st.mask[d];
        st.theta[k] = on ? 0.05 * rnd[k] : 0.0;
    }
    double loss;
    assert_int_equal(qerr__cqe_layer_forward(&st, &loss), QERR_OK);
    assert_int_equal(qerr__cqe_layer_backward(&st), QERR_OK);
    surrogate sc = {&st, calloc((size_t)(m * n), sizeof(double)),
                    calloc((size_t)(m * n), sizeof(double))};
    double f0 = sur_loss(&sc, st.theta, true);
    assert_true(fabs(f0 - loss) <= 1e-12 * fmax(1, fabs(loss))); /* same value at the point */
    double *th = malloc((size_t)np * sizeof(double));
    memcpy(th, st.theta, (size_t)np * sizeof(double));
    int checked = 0;
    for (int64_t k = 0; k < np; k++) {
        const double eps = 1e-6;
        th[k] = st.theta[k] + eps;
        double fp = sur_loss(&sc, th, false);
        th[k] = st.theta[k] - eps;
        double fm = sur_loss(&sc, th, false);
        th[k] = st.theta[k];
        double fd = (fp - fm) / (2 * eps);
        bool on = k < 2 * st.nclip || st.nd == st.r || st.mask[k - 2 * st.nclip];
        if (!on) {
            assert_true(st.grad[k] == 0.0); /* the mask kills the gradient */
            continue;
        }
        double tol = 1e-6 * fmax(1e-3, fabs(fd));
        if (fabs(fd - st.grad[k]) > tol)
            fail_msg("param %lld: analytic %.10g vs central difference %.10g", (long long)k,
                     st.grad[k], fd);
        checked++;
    }
    int64_t on_mask = st.nd == st.r ? st.r : 0;
    for (int64_t k = 0; st.mask && k < st.nd; k++) on_mask += st.mask[k];
    assert_true(mask == QERR_CQE_MASK_NONE || on_mask >= 4);
    assert_int_equal(checked, 2 * st.nclip + on_mask);
    free(th);
    free(sc.delta);
    free(sc.cconst);
    free(h);
    qerr__cqe_layer_free(&st);
}

static void test_grad_lwc(void **state) {
    (void)state;
    check_gradients(QERR_CQE_MASK_NONE, false);
}
static void test_grad_lsi_vector(void **state) {
    (void)state;
    check_gradients(QERR_CQE_MASK_DIAG, true);
}
static void test_grad_masks(void **state) {
    (void)state;
    check_gradients(QERR_CQE_MASK_DIAG, false);
    check_gradients(QERR_CQE_MASK_BAND, false);
    check_gradients(QERR_CQE_MASK_BLOCK, false);
    check_gradients(QERR_CQE_MASK_DIAG_BLOCK, false);
}

/* The SVD really factors W, and D = 0 gives W back exactly. */
static void test_svd_parameterisation(void **state) {
    (void)state;
    const int64_t m = 12, n = 20;
    float w[12 * 20];
    tu_random(w, m * n, 3);
    double *h = random_spd(n, 60, 4);
    qerr_cqe_opts o = base_opts(4, 10, QERR_CQE_MASK_BAND);
    qerr_cqe_layer st;
    assert_int_equal(qerr__cqe_layer_init(&st, w, m, n, h, &o), QERR_OK);
    assert_int_equal(st.r, 12);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double acc = 0;
            for (int64_t a = 0; a < st.r; a++) acc += st.u[i * st.r + a] * st.s[a] * st.vt[a * n + j];
            assert_true(fabs(acc - (double)w[i * n + j]) < 1e-12);
        }
    assert_int_equal(qerr__cqe_layer_forward(&st, NULL), QERR_OK);
    for (int64_t k = 0; k < m * n; k++) assert_true(st.wd[k] == (double)w[k]);
    free(h);
    qerr__cqe_layer_free(&st);
}

/* ---- RTN with the initial clipping ------------------------------------------- */
static void ref_rtn_clip(const float *w, int64_t m, int64_t n, int bits, int64_t g, double a,
                         uint8_t *codes, float *scales, int32_t *zeros) {
    const double maxq = (1 << bits) - 1, f = sig(a);
    const int64_t ng = (n + g - 1) / g;
    for (int64_t i = 0; i < m; i++)
        for (int64_t k = 0; k < ng; k++) {
            double mx = 0, mn = 0;
            for (int64_t j = k * g; j < (k + 1) * g && j < n; j++) {
                mx = fmax(mx, w[i * n + j]);
                mn = fmin(mn, w[i * n + j]);
            }
            double s = (f * mx - f * mn) / maxq, z = nearbyint(-f * mn / s);
            scales[i * ng + k] = (float)s;
            zeros[i * ng + k] = (int32_t)z;
            for (int64_t j = k * g; j < (k + 1) * g && j < n; j++) {
                double c = nearbyint(w[i * n + j] / s) + z;
                codes[i * n + j] = (uint8_t)(c < 0 ? 0 : c > maxq ? maxq : c);
            }
        }
}

static void expect_rtn_clip(const char *spec, const qerr_tensor *wt, const qerr_calib *c,
                            int bits, int64_t g, double a) {
    const int64_t m = qerr_tensor_dim(wt, 0), n = qerr_tensor_dim(wt, 1), ng = n / g;
    uint8_t *codes = malloc((size_t)(m * n)), *got = malloc((size_t)(m * n));
    float *sc = malloc((size_t)(m * ng) * sizeof(float)), *gs = malloc((size_t)(m * ng) * sizeof(float));
    int32_t *zr = malloc((size_t)(m * ng) * sizeof(int32_t)), *gz = malloc((size_t)(m * ng) * sizeof(int32_t));
    ref_rtn_clip(qerr_tensor_data(wt), m, n, bits, g, a, codes, sc, zr);
    qerr_result *r = tu_quantize(spec, wt, c);
    assert_int_equal(qerr_result_codes(r, got, (size_t)(m * n)), QERR_OK);
    assert_int_equal(qerr_result_scales(r, gs, (size_t)(m * ng)), QERR_OK);
    assert_int_equal(qerr_result_zeros(r, gz, (size_t)(m * ng)), QERR_OK);
    assert_memory_equal(codes, got, (size_t)(m * n));
    assert_memory_equal(sc, gs, (size_t)(m * ng) * sizeof(float));
    assert_memory_equal(zr, gz, (size_t)(m * ng) * sizeof(int32_t));
    qerr_result_free(r);
    free(codes); free(got); free(sc); free(gs); free(zr); free(gz);
}

static void test_start_is_rtn_with_clipping(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(32, 128, 21);
    qerr_calib *c = tu_correlated_calib(256, 128, 0.5, 22);
    expect_rtn_clip("omniquant:bits=3,group_size=32,steps=0", w, c, 3, 32, 4.0);
    expect_rtn_clip("cqe:bits=3,group_size=32,steps=0,mask=band,mask_width=3", w, c, 3, 32, 4.0);
    expect_rtn_clip("cqe:bits=2,group_size=64,steps=0,mask=diag+block,mask_block=8", w, c, 2, 64, 4.0);
    /* frozen clipping and D: training changes nothing */
    expect_rtn_clip("cqe:bits=4,group_size=128,steps=5,lwc=0,lr=0,clip_init=2.5", w, c, 4, 128, 2.5);
    qerr_calib_free(c);
    qerr_tensor_free(w);
}

/* ---- diag SDE = LSI ------------------------------------------------------- */
static void test_diag_equals_lsi(void **state) {
    (void)state;
    const int64_t m = 48, n = 64;
    qerr_tensor *wt = tu_weight(m, n, 31);
    double *h = random_spd(n, 200, 32);
    qerr_cqe_opts o = base_opts(3, 16, QERR_CQE_MASK_DIAG);
    o.lr_d = 5e-3; /* large enough that D moves codes within a few steps */
    qerr_cqe_layer a, b;
    o.lsi_vector = true;
    assert_int_equal(qerr__cqe_layer_init(&a, qerr_tensor_data(wt), m, n, h, &o), QERR_OK);
    o.lsi_vector = false;
    assert_int_equal(qerr__cqe_layer_init(&b, qerr_tensor_data(wt), m, n, h, &o), QERR_OK);
    assert_int_equal(a.nd, a.r);
    assert_int_equal(b.nd, b.r * b.r);
    double la = 0, lb = 0, first = 0;
    for (int t = 0; t < 40; t++) {
        assert_int_equal(qerr__cqe_layer_step(&a, &la), QERR_OK);
        assert_int_equal(qerr__cqe_layer_step(&b, &lb), QERR_OK);
        if (t == 0) first = la;
        assert_true(fabs(la - lb) <= 1e-12 * la);
        const double *da = qerr__cqe_d(&a), *db = qerr__cqe_d(&b);
        for (int64_t i = 0; i < a.r; i++)
            for (int64_t j = 0; j < a.r; j++) {
                if (i == j) assert_true(fabs(da[i] - db[i * a.r + j]) <= 1e-12);
                else assert_true(db[i * a.r + j] == 0.0);
            }
        for (int64_t k = 0; k < 2 * a.nclip; k++) assert_true(fabs(a.theta[k] - b.theta[k]) <= 1e-12);
    }
    assert_true(la < first); /* and it did learn something */
    double dn = 0;
    for (int64_t i = 0; i < a.r; i++) dn += fabs(qerr__cqe_d(&a)[i]);
    assert_true(dn > 0);
    qerr__cqe_layer_free(&a);
    qerr__cqe_layer_free(&b);
    free(h);
    qerr_tensor_free(wt);
}

/* ---- training lowers the objective; comparison with RTN and GPTQ ------------- */
static double diag(const qerr_result *r, const char *name) {
    double v = NAN;
    assert_int_equal(qerr_result_diag(r, name, &v), QERR_OK);
    return v;
}

static void test_training_lowers_objective(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(64, 128, 41);
    qerr_calib *c = tu_correlated_calib(512, 128, 0.5, 42);
    const char *specs[] = {"omniquant:bits=3,group_size=32,steps=60",
                           "cqe:bits=3,group_size=32,steps=60,mask=diag",
                           "cqe:bits=3,group_size=32,steps=60,mask=band,mask_width=2",
                           "cqe:bits=3,group_size=32,steps=60,mask=diag+block,mask_block=16"};
    qerr_result *r0 = tu_quantize("omniquant:bits=3,group_size=32,steps=0", w, c);
    double e0 = tu_layer_error(w, r0, c);
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        qerr_result *r = tu_quantize(specs[k], w, c);
        double start = diag(r, "train_start"), best = diag(r, "train_best");
        double e = tu_layer_error(w, r, c);
        print_message("%-64s start %.5f best %.5f layer_error %.5f (RTN-clip %.5f)\n", specs[k],
                      start, best, e, e0);
        assert_true(fabs(start - e0) < 1e-4 * e0); /* start = RTN with the init clip */
        assert_true(best < 0.97 * start);
        assert_true(e < 0.97 * e0);
        qerr_result_free(r);
    }
    qerr_result_free(r0);
    qerr_calib_free(c);
    qerr_tensor_free(w);
}

static void test_against_gptq(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(128, 256, 51);
    qerr_calib *c = tu_correlated_calib(1024, 256, 0.5, 52);
    const char *cfg[][3] = {
        {"gptq:bits=2,group_size=64", "omniquant:bits=2,group_size=64",
         "cqe:bits=2,group_size=64"},
        {"gptq:bits=3,group_size=128", "omniquant:bits=3,group_size=128",
         "cqe:bits=3,group_size=128"},
    };
    for (int k = 0; k < 2; k++) {
        double e[3];
        for (int j = 0; j < 3; j++) {
            qerr_result *r = tu_quantize(cfg[k][j], w, c);
            e[j] = tu_layer_error(w, r, c);
            qerr_result_free(r);
        }
        print_message("%s: gptq %.5f omniquant %.5f cqe %.5f\n", cfg[k][2], e[0], e[1], e[2]);
        assert_true(e[2] <= e[1] * 1.0001); /* D only adds freedom to LWC */
    }
    qerr_calib_free(c);
    qerr_tensor_free(w);
}

/* ---- bad input ------------------------------------------------------------- */
static void test_bad_input(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(16, 32, 61);
    qerr_calib *c = tu_correlated_calib(64, 32, 0.5, 62);
    qerr_plan *p;
    qerr_result *r = NULL;
    /* a band as wide as the rank, a block larger than the rank */
    assert_int_equal(qerr_plan_parse(&p, "cqe:group_size=16,mask=band,mask_width=16"), QERR_OK);
    assert_int_equal(qerr_quantize(NULL, p, w, c, &r), QERR_E_RANGE);
    assert_non_null(strstr(qerr_last_error(), "rank"));
    qerr_plan_free(p);
    assert_int_equal(qerr_plan_parse(&p, "cqe:group_size=16,mask=block,mask_block=17"), QERR_OK);
    assert_int_equal(qerr_quantize(NULL, p, w, c, &r), QERR_E_RANGE);
    qerr_plan_free(p);
    assert_int_not_equal(qerr_plan_parse(&p, "cqe:mask=triangle"), QERR_OK);
    /* no calibration data: none at all, and an empty set */
    assert_int_equal(qerr_plan_parse(&p, "cqe:group_size=16,steps=2"), QERR_OK);
    assert_int_equal(qerr_quantize(NULL, p, w, NULL, &r), QERR_E_INVALID_ARG);
    qerr_calib *empty;
    assert_int_equal(qerr_calib_create(&empty, 32), QERR_OK);
    assert_int_equal(qerr_quantize(NULL, p, w, empty, &r), QERR_E_INVALID_ARG);
    assert_non_null(strstr(qerr_last_error(), "calibration"));
    qerr_calib_free(empty);
    /* NaN in H */
    double *h = random_spd(32, 64, 63);
    h[5 * 32 + 7] = NAN;
    qerr_calib *bad = NULL;
    int rc = qerr_calib_from_gram(&bad, h, 32, 64);
    if (rc == QERR_OK) {
        rc = qerr_quantize(NULL, p, w, bad, &r);
        qerr_calib_free(bad);
    }
    assert_int_equal(rc, QERR_E_NONFINITE);
    assert_null(r);
    free(h);
    qerr_plan_free(p);
    assert_int_equal(qerr_plan_parse(&p, "omniquant:group_size=16"), QERR_OK);
    assert_int_equal(qerr_quantize(NULL, p, w, NULL, &r), QERR_E_INVALID_ARG);
    qerr_plan_free(p);
    /* block-only features on a layer-scope plan are refused, not ignored */
    static const char *const block_only[][2] = {
        {"omniquant:group_size=16,a_bits=4", "a_bits"},
        {"cqe:group_size=16,refine=quantease", "refine"},
        {"cqe:group_size=16,cross_layer=1", "cross_layer"},
        {"omniquant:group_size=16,aug_loss=1", "aug_loss"},
    };
    for (int k = 0; k < 4; k++) {
        assert_int_equal(qerr_plan_parse(&p, block_only[k][0]), QERR_OK);
        assert_int_equal(qerr_quantize(NULL, p, w, c, &r), QERR_E_UNSUPPORTED);
        assert_non_null(strstr(qerr_last_error(), block_only[k][1]));
        assert_non_null(strstr(qerr_last_error(), "scope=block"));
        assert_null(r);
        qerr_plan_free(p);
    }
    qerr_calib_free(c);
    qerr_tensor_free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_lwc),
        cmocka_unit_test(test_grad_lsi_vector),
        cmocka_unit_test(test_grad_masks),
        cmocka_unit_test(test_svd_parameterisation),
        cmocka_unit_test(test_start_is_rtn_with_clipping),
        cmocka_unit_test(test_diag_equals_lsi),
        cmocka_unit_test(test_training_lowers_objective),
        cmocka_unit_test(test_against_gptq),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
