/* GPTQ against a plain, unblocked float64 reference written here from
 * algorithms.md §1.1-1.2 (error feedback through the explicit inverse of the
 * remaining columns' Hessian, downdated one column at a time: the OBS form,
 * independent of the library's Cholesky trick and blocking), plus its
 * properties: beats RTN, dead columns, damping escalation, threads,
 * cancellation. */
#include "testutil.h"
#include "core/internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the reference ------------------------------------------------------- */
typedef struct {
    int bits;
    int64_t group; /* -1: one group per row */
    bool act_order, static_groups, sym;
    double damp;
} ref_opts;

/* §0.2: min-max grid whose range contains 0. */
static void ref_fit(const double *x, int64_t cnt, int maxq, bool sym, double *s, double *z) {
    double lo = 0, hi = 0;
    for (int64_t i = 0; i < cnt; i++) {
        lo = fmin(lo, x[i]);
        hi = fmax(hi, x[i]);
    }
    if (sym) {
        double m = fmax(-lo, hi);
        hi = m;
        if (lo < 0) lo = -m;
    }
    if (lo == 0 && hi == 0) {
        lo = -1;
        hi = 1;
    }
    *s = (hi - lo) / maxq;
    *z = sym ? (maxq + 1) / 2 : nearbyint(-lo / *s);
}

static double ref_round(double x, double s, double z, int maxq) {
    double c = nearbyint(x / s) + z;
    c = c < 0 ? 0 : c > maxq ? maxq : c;
    return s * (c - z);
}

/* In-place Gauss-Jordan inverse with partial pivoting (n is small). */
static void ref_inverse(double *A, int64_t n) {
    double *I = calloc((size_t)(n * n), sizeof(double));
    assert_non_null(I);
    for (int64_t i = 0; i < n; i++) I[i * n + i] = 1;
    for (int64_t c = 0; c < n; c++) {
        int64_t p = c;
        for (int64_t r = c + 1; r < n; r++)
            if (fabs(A[r * n + c]) > fabs(A[p * n + c])) p = r;
        for (int64_t k = 0; k < n; k++) {
            double t = A[c * n + k];
            A[c * n + k] = A[p * n + k];
            A[p * n + k] = t;
            t = I[c * n + k];
            I[c * n + k] = I[p * n + k];
            I[p * n + k] = t;
        }
        double d = A[c * n + c];
        for (int64_t k = 0; k < n; k++) {
            A[c * n + k] /= d;
            I[c * n + k] /= d;
        }
        for (int64_t r = 0; r < n; r++) {
            if (r == c) continue;
            double f = A[r * n + c];
            for (int64_t k = 0; k < n; k++) {
                A[r * n + k] -= f * A[c * n + k];
                I[r * n + k] -= f * I[c * n + k];
            }
        }
    }
    memcpy(A, I, sizeof(double) * (size_t)(n * n));
    free(I);
}

/* Dequantized GPTQ weights (original column order) and g_idx. */
static void ref_gptq(const float *W0, const double *H0, int64_t m, int64_t n, ref_opts o,
                     double *Q, int32_t *gidx) {
    const int maxq = (1 << o.bits) - 1;
    const int64_t g = o.group < 0 || o.group >= n ? n : o.group, ng = (n + g - 1) / g;
    const bool per_row = g == n;
    double *W = malloc(sizeof(double) * (size_t)(m * n));
    double *H = malloc(sizeof(double) * (size_t)(n * n));
    double *Wp = malloc(sizeof(double) * (size_t)(m * n));
    double *Hp = malloc(sizeof(double) * (size_t)(n * n));
    double *S = malloc(sizeof(double) * (size_t)(m * ng)), *Z = malloc(sizeof(double) * (size_t)(m * ng));
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)n);
    assert_true(W && H && Wp && Hp && S && Z && perm);
    for (int64_t k = 0; k < m * n; k++) W[k] = W0[k];
    memcpy(H, H0, sizeof(double) * (size_t)(n * n));
    /* per row: once, on the untouched weights */
    if (per_row)
        for (int64_t i = 0; i < m; i++) ref_fit(W + i * n, n, maxq, o.sym, &S[i], &Z[i]);
    for (int64_t j = 0; j < n; j++)
        if (H[j * n + j] == 0) {
            H[j * n + j] = 1;
            for (int64_t i = 0; i < m; i++) W[i * n + j] = 0;
        }
    if (o.static_groups && !per_row)
        for (int64_t i = 0; i < m; i++)
            for (int64_t k = 0; k < ng; k++) {
                int64_t c1 = (k + 1) * g < n ? (k + 1) * g : n;
                ref_fit(W + i * n + k * g, c1 - k * g, maxq, o.sym, &S[i * ng + k], &Z[i * ng + k]);
            }
    for (int64_t j = 0; j < n; j++) perm[j] = j;
    if (o.act_order) /* stable argsort of diag(H), descending (insertion sort) */
        for (int64_t a = 1; a < n; a++)
            for (int64_t b = a; b > 0 && H[perm[b] * n + perm[b]] > H[perm[b - 1] * n + perm[b - 1]];
                 b--) {
                int64_t t = perm[b];
                perm[b] = perm[b - 1];
                perm[b - 1] = t;
            }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) Wp[i * n + j] = W[i * n + perm[j]];
    double mean = 0;
    for (int64_t a = 0; a < n; a++) {
        for (int64_t b = 0; b < n; b++) Hp[a * n + b] = H[perm[a] * n + perm[b]];
        mean += H[a * n + a];
    }
    mean /= (double)n;
    for (int64_t a = 0; a < n; a++) Hp[a * n + a] += o.damp * mean;
    ref_inverse(Hp, n); /* Hp = (H_F)^-1 for F = all columns */
    for (int64_t j = 0; j < n; j++) {
        int64_t grp = per_row ? 0 : o.static_groups ? perm[j] / g : j / g;
        gidx[perm[j]] = (int32_t)grp;
        if (!per_row && !o.static_groups && j % g == 0) { /* fitted on current weights */
            double *x = malloc(sizeof(double) * (size_t)g);
            assert_non_null(x);
            int64_t cnt = j + g < n ? g : n - j;
            for (int64_t i = 0; i < m; i++) {
                for (int64_t t = 0; t < cnt; t++) x[t] = Wp[i * n + j + t];
                ref_fit(x, cnt, maxq, o.sym, &S[i * ng + grp], &Z[i * ng + grp]);
            }
            free(x);
        }
        const double d = Hp[j * n + j];
        for (int64_t i = 0; i < m; i++) {
            double q = ref_round(Wp[i * n + j], S[i * ng + grp], Z[i * ng + grp], maxq);
            Q[i * n + perm[j]] = q;
            double e = (Wp[i * n + j] - q) / d; /* OBS: delta_F = -e (H_F^-1)_{:,j} */
            for (int64_t k = j + 1; k < n; k++) Wp[i * n + k] -= e * Hp[j * n + k];
        }
        /* remove column j: inverse of H restricted to the columns after j */
        for (int64_t a = j + 1; a < n; a++)
            for (int64_t b = j + 1; b < n; b++) Hp[a * n + b] -= Hp[a * n + j] * Hp[j * n + b] / d;
    }
    free(W);
    free(H);
    free(Wp);
    free(Hp);
    free(S);
    free(Z);
    free(perm);
}

/* ---- helpers ------------------------------------------------------------- */
static double *gram_of(const qerr_calib *c) {
    int64_t n = qerr_calib_in_features(c);
    double *H = malloc(sizeof(double) * (size_t)(n * n));
    assert_non_null(H);
    assert_int_equal(qerr_calib_gram(c, H, n), QERR_OK);
    return H;
}

static float *dequant(const qerr_result *r) {
    size_t nw = (size_t)(qerr_result_rows(r) * qerr_result_cols(r));
    float *d = malloc(nw * sizeof(float));
    assert_non_null(d);
    assert_int_equal(qerr_result_dequantize(r, d, nw), QERR_OK);
    return d;
}

enum { M = 24, NC = 40 };

static void compare_with_reference(const char *spec, ref_opts o, const qerr_tensor *w,
                                   const qerr_calib *c) {
    qerr_result *r = tu_quantize(spec, w, c);
    double *H = gram_of(c), *Q = malloc(sizeof(double) * M * NC);
    int32_t gref[NC], glib[NC];
    assert_non_null(Q);
    ref_gptq(qerr_tensor_data(w), H, M, NC, o, Q, gref);
    float *D = dequant(r);
    double num = 0, den = 0, worst = 0;
    for (int k = 0; k < M * NC; k++) {
        num += (D[k] - Q[k]) * (D[k] - Q[k]);
        den += Q[k] * Q[k];
        worst = fmax(worst, fabs(D[k] - Q[k]));
    }
    double rel = sqrt(num / den);
    print_message("%-60s relative difference %.2e (max abs %.2e)\n", spec, rel, worst);
    assert_true(rel < 1e-5);
    assert_int_equal(qerr_result_g_idx(r, glib, NC), QERR_OK);
    assert_memory_equal(glib, gref, sizeof gref);
    free(D);
    free(Q);
    free(H);
    qerr_result_free(r);
}

/* ---- tests --------------------------------------------------------------- */
static void test_reference(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(M, NC, 11);
    qerr_calib *c = tu_correlated_calib(300, NC, 2.0, 12);
    const ref_opts base = {4, -1, false, false, false, 0.01};
    ref_opts o = base;
    compare_with_reference("gptq:bits=4", o, w, c);
    o.group = 8;
    compare_with_reference("gptq:bits=4,group_size=8", o, w, c);
    o.act_order = true;
    compare_with_reference("gptq:bits=4,group_size=8,act_order=1", o, w, c);
    o.static_groups = true;
    compare_with_reference("gptq:bits=4,group_size=8,act_order=1,static_groups=1", o, w, c);
    o = base;
    o.group = 8;
    compare_with_reference("gptq:bits=4,group_size=8,block_size=5", o, w, c);
    o.act_order = true;
    compare_with_reference("gptq:bits=4,group_size=8,block_size=5,act_order=1", o, w, c);
    o = base;
    o.bits = 3;
    o.group = 12; /* 40 = 3 x 12 + 4 */
    o.sym = true;
    o.damp = 0.1;
    compare_with_reference("gptq:bits=3,group_size=12,ragged_groups=1,symmetric=1,damp=0.1,"
                           "block_size=7",
                           o, w, c);
    o = base;
    o.bits = 2;
    compare_with_reference("gptq:bits=2,block_size=3,act_order=1", (ref_opts){2, -1, true, false, false, 0.01}, w, c);
    (void)o;
    qerr_calib_free(c);
    qerr_tensor_free(w);
}

/* Zero rows/columns of H: those weights quantize to exactly 0, and the
 * reference agrees on the rest. */
static void test_dead_columns(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(M, NC, 21);
    qerr_calib *c0 = tu_correlated_calib(300, NC, 2.0, 22);
    double *H = gram_of(c0);
    const int dead[3] = {0, 17, 39};
    for (int k = 0; k < 3; k++)
        for (int t = 0; t < NC; t++) H[dead[k] * NC + t] = H[t * NC + dead[k]] = 0;
    qerr_calib *c = NULL;
    assert_int_equal(qerr_calib_from_gram(&c, H, NC, 300), QERR_OK);
    const char *specs[3] = {"gptq:bits=4,group_size=8", "gptq:bits=4,act_order=1",
                            "gptq:bits=3,group_size=8,act_order=1,static_groups=1"};
    const ref_opts opts[3] = {{4, 8, false, false, false, 0.01}, {4, -1, true, false, false, 0.01},
                              {3, 8, true, true, false, 0.01}};
    for (int s = 0; s < 3; s++) {
        qerr_result *r = tu_quantize(specs[s], w, c);
        float *D = dequant(r);
        for (int i = 0; i < M; i++)
            for (int k = 0; k < 3; k++) assert_true(D[i * NC + dead[k]] == 0.0f);
        double v;
        assert_int_equal(qerr_result_diag(r, "dead_columns", &v), QERR_OK);
        assert_true(v == 3);
        compare_with_reference(specs[s], opts[s], w, c);
        free(D);
        qerr_result_free(r);
    }
    free(H);
    qerr_calib_free(c);
    qerr_calib_free(c0);
    qerr_tensor_free(w);
}

static void test_beats_rtn(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(64, 128, 31);
    qerr_calib *c = tu_correlated_calib(512, 128, 2.0, 32);
    const char *pairs[][2] = {
        {"rtn:bits=4", "gptq:bits=4"},
        {"rtn:bits=3,group_size=32", "gptq:bits=3,group_size=32"},
        {"rtn:bits=3,group_size=32", "gptq:bits=3,group_size=32,act_order=1"},
        {"rtn:bits=2,group_size=16", "gptq:bits=2,group_size=16,act_order=1,static_groups=1"},
    };
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        qerr_result *a = tu_quantize(pairs[k][0], w, c), *b = tu_quantize(pairs[k][1], w, c);
        double ea = tu_layer_error(w, a, c), eb = tu_layer_error(w, b, c);
        /* the diagnostic is qerr_layer_error on the dequantized weights */
        float *D = dequant(b);
        qerr_tensor *dt = NULL;
        int64_t shape[2] = {64, 128};
        assert_int_equal(qerr_tensor_wrap(&dt, QERR_DTYPE_F32, 2, shape, D), QERR_OK);
        double e2;
        assert_int_equal(qerr_layer_error(w, dt, c, &e2), QERR_OK);
        assert_float_equal(e2, eb, 1e-9 * eb);
        print_message("%-55s %.4g < %s %.4g\n", pairs[k][1], eb, pairs[k][0], ea);
        assert_true(eb < 0.9 * ea);
        qerr_tensor_free(dt);
        free(D);
        qerr_result_free(a);
        qerr_result_free(b);
    }
    qerr_calib_free(c);
    qerr_tensor_free(w);
}

/* A singular H with damp=0: the Cholesky fails, the damping escalates and is
 * recorded. */
static void test_escalation(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(M, NC, 41);
    /* rank 20 < 40 columns */
    qerr_calib *c = tu_correlated_calib(20, NC, 1.0, 42);
    double v;
    qerr_result *r = tu_quantize("gptq:bits=4,damp=0", w, c);
    assert_int_equal(qerr_result_diag(r, "fallbacks", &v), QERR_OK);
    assert_true(v >= 1);
    assert_int_equal(qerr_result_diag(r, "damp", &v), QERR_OK);
    assert_true(v > 0);
    qerr_result_free(r);
    /* an exactly singular integer H: rank 3 */
    double B[3][NC], H[NC * NC];
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < NC; j++) B[k][j] = (double)((j * (k + 2) + k) % 5) - 2;
    for (int a = 0; a < NC; a++)
        for (int b = 0; b < NC; b++) {
            H[a * NC + b] = 0;
            for (int k = 0; k < 3; k++) H[a * NC + b] += B[k][a] * B[k][b];
        }
    for (int a = 0; a < NC; a++) assert_true(H[a * NC + a] > 0); /* no dead columns */
    qerr_calib *s = NULL;
    assert_int_equal(qerr_calib_from_gram(&s, H, NC, 3), QERR_OK);
    r = tu_quantize("gptq:bits=4,group_size=8,damp=0", w, s);
    assert_int_equal(qerr_result_diag(r, "fallbacks", &v), QERR_OK);
    assert_true(v >= 1);
    double damp;
    assert_int_equal(qerr_result_diag(r, "damp", &damp), QERR_OK);
    assert_true(damp >= 1e-6);
    /* and the result is GPTQ with that damping */
    compare_with_reference("gptq:bits=4,group_size=8,damp=0", (ref_opts){4, 8, false, false, false, damp},
                           w, s);
    assert_int_equal(qerr_result_diag(r, "layer_error", &v), QERR_OK);
    assert_true(isfinite(v));
    qerr_result_free(r);
    /* the default damping needs no escalation */
    r = tu_quantize("gptq:bits=4", w, s);
    assert_int_equal(qerr_result_diag(r, "fallbacks", &v), QERR_OK);
    assert_true(v == 0);
    qerr_result_free(r);
    qerr_calib_free(s);
    qerr_calib_free(c);
    qerr_tensor_free(w);
}

static void test_threads(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(96, 128, 51);
    qerr_calib *c = tu_correlated_calib(400, 128, 2.0, 52);
    qerr_plan *p = NULL;
    assert_int_equal(qerr_plan_parse(&p, "gptq:bits=3,group_size=32,act_order=1,block_size=24"),
                     QERR_OK);
    qerr_ctx *ctx[2] = {NULL, NULL};
    qerr_result *r[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(qerr_ctx_create(&ctx[k]), QERR_OK);
        assert_int_equal(qerr_ctx_set_threads(ctx[k], k + 1), QERR_OK);
        assert_int_equal(qerr_quantize(ctx[k], p, w, c, &r[k]), QERR_OK);
    }
    static uint8_t a[96 * 128], b[96 * 128];
    float sa[96 * 4], sb[96 * 4];
    int32_t za[96 * 4], zb[96 * 4], ga[128], gb[128];
    assert_int_equal(qerr_result_codes(r[0], a, sizeof a), QERR_OK);
    assert_int_equal(qerr_result_codes(r[1], b, sizeof b), QERR_OK);
    assert_memory_equal(a, b, sizeof a);
    assert_int_equal(qerr_result_scales(r[0], sa, 384), QERR_OK);
    assert_int_equal(qerr_result_scales(r[1], sb, 384), QERR_OK);
    assert_memory_equal(sa, sb, sizeof sa);
    assert_int_equal(qerr_result_zeros(r[0], za, 384), QERR_OK);
    assert_int_equal(qerr_result_zeros(r[1], zb, 384), QERR_OK);
    assert_memory_equal(za, zb, sizeof za);
    assert_int_equal(qerr_result_g_idx(r[0], ga, 128), QERR_OK);
    assert_int_equal(qerr_result_g_idx(r[1], gb, 128), QERR_OK);
    assert_memory_equal(ga, gb, sizeof ga);
    for (int k = 0; k < 2; k++) {
        qerr_result_free(r[k]);
        qerr_ctx_free(ctx[k]);
    }
    qerr_plan_free(p);
    qerr_calib_free(c);
    qerr_tensor_free(w);
}

/* Degenerate shapes: one column, one row, groups of one column. */
static void test_small_shapes(void **state) {
    (void)state;
    const int64_t shapes[3][2] = {{1, 1}, {5, 1}, {1, 6}};
    for (int k = 0; k < 3; k++) {
        int64_t m = shapes[k][0], n = shapes[k][1];
        qerr_tensor *w = tu_weight(m, n, 70 + (uint64_t)k);
        qerr_calib *c = tu_correlated_calib(16, n, 1.0, 80 + (uint64_t)k);
        for (int gs = 0; gs < 2; gs++) {
            qerr_result *r = tu_quantize(gs ? "gptq:bits=3,group_size=1,act_order=1"
                                            : "gptq:bits=3,block_size=1",
                                         w, c);
            assert_int_equal(qerr_result_groups(r), gs ? n : 1);
            double *H = gram_of(c), *Q = malloc(sizeof(double) * (size_t)(m * n));
            int32_t gref[8];
            assert_non_null(Q);
            ref_gptq(qerr_tensor_data(w), H, m, n,
                     (ref_opts){3, gs ? 1 : -1, gs == 1, false, false, 0.01}, Q, gref);
            float *D = dequant(r);
            for (int64_t t = 0; t < m * n; t++) assert_float_equal(D[t], Q[t], 1e-6);
            free(D);
            free(Q);
            free(H);
            qerr_result_free(r);
        }
        qerr_calib_free(c);
        qerr_tensor_free(w);
    }
}

typedef struct {
    int calls, stop_at;
    double last;
    bool monotone;
} progress_state;

static int on_progress(void *user, const char *stage, double fraction) {
    progress_state *s = user;
    assert_string_equal(stage, "gptq");
    if (fraction < s->last) s->monotone = false;
    s->last = fraction;
    return ++s->calls == s->stop_at;
}

static void test_progress_cancel(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(M, NC, 61);
    qerr_calib *c = tu_correlated_calib(200, NC, 1.0, 62);
    qerr_plan *p = NULL;
    assert_int_equal(qerr_plan_parse(&p, "gptq:bits=4,block_size=8"), QERR_OK);
    qerr_ctx *ctx = NULL;
    assert_int_equal(qerr_ctx_create(&ctx), QERR_OK);
    progress_state ps = {0, -1, 0, true};
    assert_int_equal(qerr_ctx_set_progress(ctx, on_progress, &ps), QERR_OK);
    qerr_result *r = NULL;
    assert_int_equal(qerr_quantize(ctx, p, w, c, &r), QERR_OK);
    assert_true(ps.calls >= 5 && ps.monotone && ps.last == 1.0);
    qerr_result_free(r);
    ps = (progress_state){0, 2, 0, true}; /* stop at the second report */
    r = NULL;
    assert_int_equal(qerr_quantize(ctx, p, w, c, &r), QERR_E_CANCELLED);
    assert_null(r);
    assert_int_equal(ps.calls, 2);
    assert_non_null(strstr(qerr_last_error(), "cancelled"));
    qerr_ctx_free(ctx);
    qerr_plan_free(p);
    qerr_calib_free(c);
    qerr_tensor_free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference), cmocka_unit_test(test_dead_columns),
        cmocka_unit_test(test_beats_rtn), cmocka_unit_test(test_escalation),
        cmocka_unit_test(test_threads),   cmocka_unit_test(test_progress_cancel),
        cmocka_unit_test(test_small_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
