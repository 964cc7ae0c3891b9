/* QuantEase and outlier-aware QuantEase: monotone descent (exact float64 f
 * after every sweep, through the test hooks in lib/methods/quantease.h),
 * grids, comparison with GPTQ, outlier bookkeeping, bad input. */
#include "testutil.h"

#include "methods/quantease.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Relative slack for "f did not increase": R is float32, so a column whose
 * unrounded minimiser sits within float noise of a grid midpoint may pick
 * the other neighbour; the effect on f is of that order. */
#define MONO_TOL 1e-6

typedef struct {
    qerr_result *r;
    double *trace;
    int64_t iters;
} traced;

/* Run a quantease/quantease_outlier spec through the test hook. */
static traced run_traced(const char *spec, const float *W, int64_t rows, int64_t cols,
                         const double *H) {
    qerr_plan *p = NULL;
    assert_int_equal(qerr_plan_parse(&p, spec), QERR_OK);
    traced t = {NULL, NULL, 0};
    assert_int_equal(qerr_plan_get_int(p, "iterations", &t.iters), QERR_OK);
    t.trace = calloc((size_t)t.iters, sizeof(double));
    assert_non_null(t.trace);
    qerr_method_call call = {qerr__default_ctx(), p, W, rows, cols, H, 1000, NULL};
    bool outlier = strncmp(spec, "quantease_outlier", 17) == 0;
    int rc = outlier ? qerr__quantease_outlier_run(&call, &t.r, t.trace)
                     : qerr__quantease_run(&call, &t.r, t.trace);
    if (rc != QERR_OK) fail_msg("%s: %s", spec, qerr_last_error());
    qerr_plan_free(p);
    return t;
}

static double *gram_of(const qerr_calib *c) {
    int64_t n = qerr_calib_in_features(c);
    double *H = malloc(sizeof(double) * (size_t)(n * n));
    assert_non_null(H);
    assert_int_equal(qerr_calib_gram(c, H, n), QERR_OK);
    return H;
}

/* f after sweep it never exceeds f after sweep it-1 when both sweeps round
 * (a rounded sweep that starts on the grid can only go down). Returns the
 * number of pairs checked. */
static int check_monotone(const traced *t, const char *spec, int64_t relax_every,
                          int64_t relax_until) {
    int pairs = 0;
    double worst = -INFINITY;
    for (int64_t it = 1; it < t->iters; it++) {
        if (!qerr__qe_sweep_rounds(it - 1, t->iters, relax_every, relax_until) ||
            !qerr__qe_sweep_rounds(it, t->iters, relax_every, relax_until))
            continue;
        double rise = (t->trace[it] - t->trace[it - 1]) / t->trace[it - 1];
        if (rise > worst) worst = rise;
        if (rise > MONO_TOL)
            fail_msg("%s: f rose from %.9g to %.9g at sweep %lld", spec, t->trace[it - 1],
                     t->trace[it], (long long)it);
        pairs++;
    }
    print_message("%s: %d rounded pairs, f %.6g -> %.6g, largest relative rise %.3g\n", spec,
                  pairs, t->trace[0], t->trace[t->iters - 1], worst);
    return pairs;
}

static void free_traced(traced *t) {
    qerr_result_free(t->r);
    free(t->trace);
}

/* ---- monotone descent ------------------------------------------------------ */

static void monotone_random(void **state) {
    (void)state;
    const int64_t m = 96, n = 256;
    qerr_tensor *w = tu_weight(m, n, 11);
    qerr_calib *c = tu_correlated_calib(1024, n, 2.0, 12);
    double *H = gram_of(c);
    const float *W = qerr_tensor_data(w);
    const char *specs[] = {
        "quantease:bits=3,group_size=64,relax_every=0,iterations=12",
        "quantease:bits=2,group_size=-1,relax_every=0,iterations=12,act_order=1,block_size=48",
        "quantease:bits=4,group_size=32,symmetric=1,clip_search=1,relax_every=0,iterations=8",
        "quantease:bits=3,group_size=64,init=gptq,relax_every=0,iterations=8",
    };
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        traced t = run_traced(specs[s], W, m, n, H);
        assert_true(check_monotone(&t, specs[s], 0, 25) == (int)t.iters - 1);
        /* the engine's float32 monitor agrees with the exact float64 f */
        double last;
        assert_int_equal(qerr_result_diag(t.r, "objective_last", &last), QERR_OK);
        assert_true(fabs(last - t.trace[t.iters - 1]) <= 1e-3 * t.trace[t.iters - 1]);
        free_traced(&t);
    }
    /* default schedule (30 sweeps, every third of the first 26 unrounded):
     * monotone across consecutive rounded sweeps */
    traced t = run_traced("quantease:bits=3,group_size=64", W, m, n, H);
    assert_true(check_monotone(&t, "quantease default", 3, 25) == 11);
    free_traced(&t);
    free(H);
    qerr_calib_free(c);
    qerr_tensor_free(w);
}

/* The blocked float32 engine makes the same choices as a naive float64
 * coordinate descent written straight from the update rule, relaxed sweeps
 * included (a handful of near-ties may round the other way). */
static void matches_naive_descent(void **state) {
    (void)state;
    const int64_t m = 8, n = 48, g = 16;
    const char *spec = "quantease:bits=3,group_size=16,iterations=8,block_size=20";
    qerr_tensor *w = tu_weight(m, n, 71);
    qerr_calib *c = tu_correlated_calib(256, n, 2.0, 72);
    double *H = gram_of(c);
    qerr_result *r = tu_quantize(spec, w, c);
    float sc[8 * 3];
    int32_t zr[8 * 3];
    assert_int_equal(qerr_result_scales(r, sc, 24), QERR_OK);
    assert_int_equal(qerr_result_zeros(r, zr, 24), QERR_OK);
    const float *W = qerr_tensor_data(w);
    double Q[8 * 48];
    for (int64_t x = 0; x < m * n; x++) Q[x] = W[x];
    int64_t iters = 8;
    for (int64_t it = 0; it < iters; it++) {
        bool rounds = qerr__qe_sweep_rounds(it, iters, 3, 25);
        for (int64_t j = 0; j < n; j++)
            for (int64_t i = 0; i < m; i++) {
                double rr = 0;
                for (int64_t k = 0; k < n; k++) rr += ((double)W[i * n + k] - Q[i * n + k]) * H[k * n + j];
                double beta = Q[i * n + j] + rr / H[j * n + j];
                if (rounds) {
                    float s = sc[i * 3 + j / g];
                    int32_t z = zr[i * 3 + j / g];
                    double code = nearbyint(beta / s) + z;
                    code = code < 0 ? 0 : code > 7 ? 7 : code;
                    beta = (double)s * (code - z);
                }
                Q[i * n + j] = beta;
            }
    }
    float deq[8 * 48];
    assert_int_equal(qerr_result_dequantize(r, deq, (size_t)(m * n)), QERR_OK);
    int differ = 0;
    for (int64_t x = 0; x < m * n; x++) differ += fabs(deq[x] - Q[x]) > 1e-6 * fabs(Q[x]) + 1e-9;
    print_message("%s: %d of %lld weights differ from the naive descent\n", spec, differ,
                  (long long)(m * n));
    assert_true(differ <= 4);
    qerr_result_free(r);
    free(H);
    qerr_calib_free(c);
    qerr_tensor_free(w);
}

/* Minimal safetensors reader: one F32 tensor by name (test only). */
static float *read_f32_tensor(const char *path, const char *name, int64_t *rows, int64_t *cols) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint64_t hl = 0;
    float *out = NULL;
    char *hdr = NULL;
    if (fread(&hl, 8, 1, f) != 1 || hl > (1u << 24)) goto done;
    hdr = calloc(hl + 1, 1);
    if (!hdr || fread(hdr, 1, hl, f) != hl) goto done;
    char key[256];
    snprintf(key, sizeof key, "\"%s\"", name);
    const char *k = strstr(hdr, key);
    if (!k) goto done;
    const char *sh = strstr(k, "\"shape\"");
    const char *off = strstr(k, "\"data_offsets\"");
    long long a, b, r, cc;
    if (!sh || !off || sscanf(strchr(sh, '['), "[%lld,%lld]", &r, &cc) != 2 ||
        sscanf(strchr(off, '['), "[%lld,%lld]", &a, &b) != 2 || b - a != r * cc * 4)
        goto done;
    out = malloc((size_t)(b - a));
    if (!out || fseek(f, (long)(8 + hl + (uint64_t)a), SEEK_SET) != 0 ||
        fread(out, 1, (size_t)(b - a), f) != (size_t)(b - a)) {
        free(out);
        out = NULL;
        goto done;
    }
    *rows = r;
    *cols = cc;
done:
    free(hdr);
    fclose(f);
    return out;
}

static void monotone_real(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(dir);
    struct {
        const char *model, *tensor, *spec;
    } cases[] = {
        {"stories260k", "model.layers.0.mlp.down_proj.weight",
         "quantease:bits=3,relax_every=0,iterations=12"},
        {"stories260k", "model.layers.0.mlp.down_proj.weight",
         "quantease:bits=3,group_size=64,ragged_groups=1,act_order=1,relax_every=0,iterations=8"},
        {"tiny-llama", "model.layers.0.self_attn.o_proj.weight",
         "quantease:bits=3,group_size=64,relax_every=0,iterations=10"},
        {"tiny-llama", "model.layers.0.self_attn.o_proj.weight",
         "quantease_outlier:bits=3,outlier_fraction=0.01,relax_every=0,iterations=10"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s/model.safetensors", dir, cases[k].model);
        int64_t m = 0, n = 0;
        float *W = read_f32_tensor(path, cases[k].tensor, &m, &n);
        if (!W) fail_msg("cannot read %s from %s", cases[k].tensor, path);
        qerr_calib *c = tu_correlated_calib(4 * n, n, 2.0, 30 + k);
        double *H = gram_of(c);
        traced t = run_traced(cases[k].spec, W, m, n, H);
        /* sweep 0 starts off the grid; every later one starts on it */
        assert_true(check_monotone(&t, cases[k].spec, 0, 25) == (int)t.iters - 1);
        assert_true(t.trace[t.iters - 1] < t.trace[0]);
        free_traced(&t);
        free(H);
        qerr_calib_free(c);
        free(W);
    }
}

/* ---- grids --------------------------------------------------------------- */

static void results_on_grid(void **state) {
    (void)state;
    const int64_t m = 64, n = 128;
    qerr_tensor *w = tu_weight(m, n, 21);
    qerr_calib *c = tu_correlated_calib(512, n, 2.0, 22);
    qerr_result *qe = tu_quantize("quantease:bits=4,group_size=32,iterations=6", w, c);
    qerr_result *rt = tu_quantize("rtn:bits=4,group_size=32", w, c);
    size_t ng = (size_t)(m * qerr_result_groups(qe));
    assert_int_equal(qerr_result_groups(qe), 4);
    float *s1 = malloc(ng * sizeof(float)), *s2 = malloc(ng * sizeof(float));
    int32_t *z1 = malloc(ng * sizeof(int32_t)), *z2 = malloc(ng * sizeof(int32_t));
    uint8_t *codes = malloc((size_t)(m * n));
    float *deq = malloc(sizeof(float) * (size_t)(m * n));
    assert_int_equal(qerr_result_scales(qe, s1, ng), QERR_OK);
    assert_int_equal(qerr_result_scales(rt, s2, ng), QERR_OK);
    assert_int_equal(qerr_result_zeros(qe, z1, ng), QERR_OK);
    assert_int_equal(qerr_result_zeros(rt, z2, ng), QERR_OK);
    /* grids are W's per-group min-max grids (RTN's), held fixed */
    assert_memory_equal(s1, s2, ng * sizeof(float));
    assert_memory_equal(z1, z2, ng * sizeof(int32_t));
    assert_int_equal(qerr_result_codes(qe, codes, (size_t)(m * n)), QERR_OK);
    assert_int_equal(qerr_result_dequantize(qe, deq, (size_t)(m * n)), QERR_OK);
    int moved = 0;
    uint8_t *rcodes = malloc((size_t)(m * n));
    assert_int_equal(qerr_result_codes(rt, rcodes, (size_t)(m * n)), QERR_OK);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            int64_t g = i * 4 + j / 32;
            assert_true(codes[i * n + j] <= 15);
            assert_true(deq[i * n + j] == s1[g] * (float)((int)codes[i * n + j] - z1[g]));
            moved += codes[i * n + j] != rcodes[i * n + j];
        }
    assert_true(moved > 0); /* the descent did change RTN's choice somewhere */
    assert_int_equal(qerr_result_outlier_count(qe), 0);
    free(rcodes);
    free(s1);
    free(s2);
    free(z1);
    free(z2);
    free(codes);
    free(deq);
    qerr_result_free(qe);
    qerr_result_free(rt);

    /* act_order: groups are consecutive in the visiting order, g_idx maps back */
    qerr_result *ao = tu_quantize("quantease:bits=4,group_size=32,act_order=1,iterations=4", w, c);
    int32_t gi[128];
    int count[4] = {0};
    assert_int_equal(qerr_result_g_idx(ao, gi, 128), QERR_OK);
    for (int j = 0; j < 128; j++) {
        assert_true(gi[j] >= 0 && gi[j] < 4);
        count[gi[j]]++;
    }
    for (int g = 0; g < 4; g++) assert_int_equal(count[g], 32);
    qerr_result_free(ao);
    qerr_calib_free(c);
    qerr_tensor_free(w);
}

/* ---- against GPTQ ------------------------------------------------------------ */

static void beats_gptq(void **state) {
    (void)state;
    const int64_t m = 128, n = 256;
    qerr_tensor *w = tu_weight(m, n, 31);
    qerr_calib *c = tu_correlated_calib(2048, n, 2.0, 32);
    struct {
        const char *gptq, *qe;
    } pairs[] = {
        /* same grid: per-row grids, and static groups fitted on W */
        {"gptq:bits=3", "quantease:bits=3"},
        {"gptq:bits=3,group_size=64,static_groups=1", "quantease:bits=3,group_size=64"},
        {"gptq:bits=2,group_size=64,static_groups=1", "quantease:bits=2,group_size=64"},
        /* started from GPTQ (its grids and solution), descent only */
        {"gptq:bits=3,group_size=64", "quantease:bits=3,group_size=64,init=gptq,relax_every=0"},
        {"gptq:bits=3,group_size=64,act_order=1",
         "quantease:bits=3,group_size=64,act_order=1,init=gptq,relax_every=0"},
    };
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        qerr_result *g = tu_quantize(pairs[k].gptq, w, c);
        qerr_result *q = tu_quantize(pairs[k].qe, w, c);
        double eg = tu_layer_error(w, g, c), eq = tu_layer_error(w, q, c);
        print_message("%-45s %.5f   %-60s %.5f\n", pairs[k].gptq, eg, pairs[k].qe, eq);
        assert_true(eq < eg);
        qerr_result_free(g);
        qerr_result_free(q);
    }
    qerr_calib_free(c);
    qerr_tensor_free(w);
}

/* ---- outliers ----------------------------------------------------------------- */

static void outliers(void **state) {
    (void)state;
    const int64_t m = 128, n = 256;
    qerr_tensor *w = tu_weight(m, n, 41);
    qerr_calib *c = tu_correlated_calib(2048, n, 2.0, 42);
    qerr_result *qe = tu_quantize("quantease:bits=3", w, c);
    qerr_result *uo = tu_quantize("quantease_outlier:bits=3,outlier_fraction=0.01", w, c);
    double e0 = tu_layer_error(w, qe, c), e1 = tu_layer_error(w, uo, c);
    print_message("W3 quantease %.5f, +1%% unstructured outliers %.5f\n", e0, e1);
    assert_true(e1 < e0);
    assert_true(qerr_result_bits_per_weight(uo) > qerr_result_bits_per_weight(qe));

    /* exactly k = round(0.01 * rows * cols) entries, sorted by (row, col) */
    int64_t k = qerr_result_outlier_count(uo);
    assert_int_equal(k, (int64_t)nearbyint(0.01 * m * n));
    int32_t *ri = malloc(sizeof(int32_t) * (size_t)k), *ci = malloc(sizeof(int32_t) * (size_t)k);
    float *vi = malloc(sizeof(float) * (size_t)k);
    assert_int_equal(qerr_result_outliers(uo, ri, ci, vi, (size_t)k), QERR_OK);
    for (int64_t x = 0; x < k; x++) {
        assert_true(ri[x] >= 0 && ri[x] < m && ci[x] >= 0 && ci[x] < n && isfinite(vi[x]));
        if (x) assert_true(ri[x] > ri[x - 1] || (ri[x] == ri[x - 1] && ci[x] > ci[x - 1]));
    }
    free(ri);
    free(ci);
    free(vi);

    /* structured: whole columns, k = round(0.02 * 256) = 5 of them */
    qerr_result *so = tu_quantize(
        "quantease_outlier:bits=3,outlier_fraction=0.02,outlier_mode=structured", w, c);
    double e2 = tu_layer_error(w, so, c);
    print_message("W3 +2%% structured outliers %.5f\n", e2);
    assert_true(e2 < e0);
    k = qerr_result_outlier_count(so);
    assert_int_equal(k, 5 * m);
    ri = malloc(sizeof(int32_t) * (size_t)k);
    ci = malloc(sizeof(int32_t) * (size_t)k);
    vi = malloc(sizeof(float) * (size_t)k);
    assert_int_equal(qerr_result_outliers(so, ri, ci, vi, (size_t)k), QERR_OK);
    for (int64_t i = 0; i < m; i++)
        for (int x = 0; x < 5; x++) { /* every row lists the same 5 columns */
            assert_int_equal(ri[i * 5 + x], i);
            assert_int_equal(ci[i * 5 + x], ci[x]);
            if (x) assert_true(ci[x] > ci[x - 1]);
        }
    free(ri);
    free(ci);
    free(vi);

    /* fraction 0: plain QuantEase, no outliers */
    qerr_result *zo = tu_quantize("quantease_outlier:bits=3,outlier_fraction=0", w, c);
    assert_int_equal(qerr_result_outlier_count(zo), 0);
    assert_true(fabs(tu_layer_error(w, zo, c) - e0) <= 1e-6 * e0);

    /* with rounding every sweep, f never rises across CD + IHT iterations */
    double *H = gram_of(c);
    traced t = run_traced("quantease_outlier:bits=3,outlier_fraction=0.01,relax_every=0,"
                          "iterations=10",
                          qerr_tensor_data(w), m, n, H);
    assert_true(check_monotone(&t, "quantease_outlier unstructured", 0, 25) == 9);
    free_traced(&t);
    free(H);
    qerr_result_free(zo);
    qerr_result_free(so);
    qerr_result_free(uo);
    qerr_result_free(qe);
    qerr_calib_free(c);
    qerr_tensor_free(w);
}

/* ---- dead columns, determinism, cancellation ------------------------------------ */

static int cancel_now(void *user, const char *stage, double fraction) {
    (void)stage;
    (void)fraction;
    return ++*(int *)user >= 2;
}

static void dead_columns_and_determinism(void **state) {
    (void)state;
    const int64_t m = 32, n = 64;
    qerr_tensor *w = tu_weight(m, n, 51);
    qerr_calib *c0 = tu_correlated_calib(512, n, 2.0, 52);
    double *H = gram_of(c0);
    for (int64_t k = 0; k < n; k++) H[5 * n + k] = H[k * n + 5] = 0.0; /* input 5 never fires */
    qerr_calib *c = NULL;
    assert_int_equal(qerr_calib_from_gram(&c, H, n, 512), QERR_OK);
    qerr_result *a = tu_quantize("quantease:bits=3,group_size=32", w, c);
    qerr_result *b = tu_quantize("quantease:bits=3,group_size=32", w, c);
    qerr_result *rt = tu_quantize("rtn:bits=3,group_size=32", w, c);
    double dead = 0;
    assert_int_equal(qerr_result_diag(a, "dead_columns", &dead), QERR_OK);
    assert_true(dead == 1);
    assert_true(isfinite(tu_layer_error(w, a, c)));
    uint8_t ca[32 * 64], cb[32 * 64], cr[32 * 64];
    assert_int_equal(qerr_result_codes(a, ca, sizeof ca), QERR_OK);
    assert_int_equal(qerr_result_codes(b, cb, sizeof cb), QERR_OK);
    assert_int_equal(qerr_result_codes(rt, cr, sizeof cr), QERR_OK);
    assert_memory_equal(ca, cb, sizeof ca); /* deterministic */
    for (int64_t i = 0; i < m; i++) /* the dead input keeps W rounded to its grid */
        assert_int_equal(ca[i * n + 5], cr[i * n + 5]);

    qerr_ctx *ctx = NULL;
    int calls = 0;
    assert_int_equal(qerr_ctx_create(&ctx), QERR_OK);
    assert_int_equal(qerr_ctx_set_progress(ctx, cancel_now, &calls), QERR_OK);
    qerr_plan *p = NULL;
    assert_int_equal(qerr_plan_parse(&p, "quantease:bits=3"), QERR_OK);
    qerr_result *r = NULL;
    assert_int_equal(qerr_quantize(ctx, p, w, c, &r), QERR_E_CANCELLED);
    assert_null(r);
    assert_int_equal(calls, 2);
    qerr_plan_free(p);
    qerr_ctx_free(ctx);
    qerr_result_free(a);
    qerr_result_free(b);
    qerr_result_free(rt);
    free(H);
    qerr_calib_free(c);
    qerr_calib_free(c0);
    qerr_tensor_free(w);
}

/* Recomputing R every sweep or never gives (nearly) the same run: the
 * float32 drift of the incremental updates is negligible. */
static void refresh_is_drift_control(void **state) {
    (void)state;
    const int64_t m = 64, n = 256;
    qerr_tensor *w = tu_weight(m, n, 81);
    qerr_calib *c = tu_correlated_calib(1024, n, 2.0, 82);
    qerr_result *a = tu_quantize("quantease:bits=3,group_size=64,refresh_every=1", w, c);
    qerr_result *b = tu_quantize("quantease:bits=3,group_size=64,refresh_every=100000", w, c);
    static uint8_t ca[64 * 256], cb[64 * 256];
    assert_int_equal(qerr_result_codes(a, ca, sizeof ca), QERR_OK);
    assert_int_equal(qerr_result_codes(b, cb, sizeof cb), QERR_OK);
    int differ = 0;
    for (size_t x = 0; x < sizeof ca; x++) differ += ca[x] != cb[x];
    double ea = tu_layer_error(w, a, c), eb = tu_layer_error(w, b, c);
    print_message("refresh every sweep vs never: %d codes differ, errors %.7f %.7f\n", differ, ea,
                  eb);
    assert_true(differ <= (int)(sizeof ca / 1000));
    assert_true(fabs(ea - eb) <= 1e-3 * ea);
    qerr_result_free(a);
    qerr_result_free(b);
    qerr_calib_free(c);
    qerr_tensor_free(w);
}

/* ---- bad input -------------------------------------------------------------------- */

static void bad_input(void **state) {
    (void)state;
    qerr_plan *p = NULL;
    assert_int_equal(qerr_plan_create(&p, "quantease_outlier"), QERR_OK);
    assert_int_equal(qerr_plan_set_double(p, "outlier_fraction", 0.6), QERR_E_RANGE);
    assert_non_null(strstr(qerr_last_error(), "outlier_fraction"));
    assert_int_equal(qerr_plan_set_double(p, "outlier_fraction", -0.01), QERR_E_RANGE);
    assert_int_equal(qerr_plan_set_double(p, "alpha", 0), QERR_E_RANGE);
    assert_true(qerr_plan_set(p, "outlier_mode", "diagonal") < 0);
    assert_int_equal(qerr_plan_set(p, "outlier_mode", "structured"), QERR_OK);
    assert_int_equal(qerr_plan_set_int(p, "iterations", 0), QERR_E_RANGE);
    assert_int_equal(qerr_plan_set_int(p, "nonsense", 1), QERR_E_UNKNOWN_KEY);
    qerr_plan_free(p);
    assert_int_equal(qerr_plan_create(&p, "quantease"), QERR_OK);
    assert_true(qerr_plan_set(p, "init", "rtn") < 0);
    qerr_plan_free(p);

    const int64_t m = 16, n = 96;
    qerr_tensor *w = tu_weight(m, n, 61);
    qerr_calib *c = tu_correlated_calib(256, n, 1.0, 62);
    const char *specs[] = {"quantease:group_size=64", "quantease_outlier:group_size=64"};
    for (int k = 0; k < 2; k++) { /* 64 does not divide 96 */
        assert_int_equal(qerr_plan_parse(&p, specs[k]), QERR_OK);
        qerr_result *r = NULL;
        assert_int_equal(qerr_quantize(NULL, p, w, c, &r), QERR_E_SHAPE);
        assert_null(r);
        assert_int_equal(qerr_quantize(NULL, p, w, NULL, &r), QERR_E_INVALID_ARG); /* no H */
        qerr_plan_free(p);
    }

    /* NaN in H: refused by the calibration set and by the method itself */
    double *H = gram_of(c);
    H[3 * n + 7] = H[7 * n + 3] = NAN;
    qerr_calib *bad = NULL;
    assert_int_equal(qerr_calib_from_gram(&bad, H, n, 256), QERR_E_NONFINITE);
    assert_int_equal(qerr_plan_parse(&p, "quantease"), QERR_OK);
    qerr_method_call call = {qerr__default_ctx(), p, qerr_tensor_data(w), m, n, H, 256, NULL};
    qerr_result *r = NULL;
    assert_int_equal(qerr__quantease_run(&call, &r, NULL), QERR_E_NONFINITE);
    assert_null(r);
    H[3 * n + 7] = H[7 * n + 3] = 0.0;
    H[2 * n + 2] = -1.0; /* not a Gram matrix */
    assert_int_equal(qerr__quantease_run(&call, &r, NULL), QERR_E_NOT_PD);
    qerr_plan_free(p);
    assert_int_equal(qerr_plan_parse(&p, "quantease_outlier"), QERR_OK);
    call.plan = p;
    assert_int_equal(qerr__quantease_outlier_run(&call, &r, NULL), QERR_E_NOT_PD);
    assert_null(r);
    qerr_plan_free(p);
    free(H);
    qerr_calib_free(c);
    qerr_tensor_free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(monotone_random),
        cmocka_unit_test(monotone_real),
        cmocka_unit_test(matches_naive_descent),
        cmocka_unit_test(results_on_grid),
        cmocka_unit_test(beats_gptq),
        cmocka_unit_test(outliers),
        cmocka_unit_test(dead_columns_and_determinism),
        cmocka_unit_test(refresh_is_drift_control),
        cmocka_unit_test(bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
