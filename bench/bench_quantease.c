/* QuantEase on synthetic layers: seconds per sweep and per layer next to one
 * GPTQ solve on the same n x n layer and the same H, then the relative layer
 * errors of RTN / GPTQ / QuantEase (from W, and from GPTQ's solution) /
 * QuantEase + 1 % outliers (unstructured, structured) on a smaller layer.
 *
 * usage: bench_quantease [n=4096] [tokens=8192] [sweeps=30] [err_n=1024] [threads=0]
 *
 * One QuantEase sweep = SGEMM updates of R = (W - Q) H outside each block
 * (2 rows n^2 flops) + in-block rank-1 updates (2 rows n B), plus one SGEMM
 * recomputing R (2 rows n^2) every refresh_every = 10 sweeps; one GPTQ
 * solve = float64 Cholesky + triangular inverse (2 n^3 / 3) + about rows n^2
 * of updates. GPTQ is timed before and after the QuantEase run, as the
 * machine may be shared. */
#include "qerr.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double uniform01(uint64_t *s) { return (double)(next_u64(s) >> 11) * 0x1.0p-53; }
static double normal01(uint64_t *s) {
    double u = uniform01(s) + 1e-300, v = uniform01(s);
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static void check(int rc, const char *what) {
    if (rc == QERR_OK) return;
    fprintf(stderr, "%s: %s (%s)\n", what, qerr_status_string(rc), qerr_last_error());
    exit(1);
}

/* H from `tokens` LLM-like activation rows: feature scales spread over two
 * decades with rare 20x features, plus a shared rank-16 part that
 * correlates the columns (what makes GPTQ and QuantEase beat RTN). */
static qerr_calib *make_calib(int64_t n, int64_t tokens, uint64_t seed) {
    const int64_t rank = 16, chunk = 1024;
    float *scale = xmalloc((size_t)n * sizeof(float));
    float *F = xmalloc((size_t)(rank * n) * sizeof(float));
    float *G = xmalloc((size_t)(chunk * rank) * sizeof(float));
    float *X = xmalloc((size_t)(chunk * n) * sizeof(float));
    for (int64_t j = 0; j < n; j++) {
        scale[j] = (float)pow(10.0, 2.0 * uniform01(&seed) - 1.0);
        if (uniform01(&seed) < 0.003) scale[j] *= 20.0f;
    }
    for (int64_t i = 0; i < rank * n; i++) F[i] = (float)(0.7 * normal01(&seed)) * scale[i % n];
    qerr_calib *c = NULL;
    check(qerr_calib_create(&c, n), "qerr_calib_create");
    for (int64_t t0 = 0; t0 < tokens; t0 += chunk) {
        int64_t rows = tokens - t0 < chunk ? tokens - t0 : chunk;
        for (int64_t i = 0; i < rows * n; i++) X[i] = (float)normal01(&seed) * scale[i % n];
        for (int64_t i = 0; i < rows * rank; i++) G[i] = (float)normal01(&seed);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)n, (int)rank, 1.0f,
                    G, (int)rank, F, (int)n, 1.0f, X, (int)n);
        check(qerr_calib_add_f32(c, X, rows), "qerr_calib_add_f32");
    }
    free(scale);
    free(F);
    free(G);
    free(X);
    return c;
}

/* Gaussian weights (std 0.02) with 0.5 % entries 8x larger. */
static qerr_tensor *make_weight(int64_t rows, int64_t cols, uint64_t seed) {
    int64_t shape[2] = {rows, cols};
    qerr_tensor *w = NULL;
    check(qerr_tensor_create(&w, QERR_DTYPE_F32, 2, shape), "qerr_tensor_create");
    float *d = qerr_tensor_data(w);
    for (int64_t i = 0; i < rows * cols; i++) {
        double v = 0.02 * normal01(&seed);
        if (uniform01(&seed) < 0.005) v *= 8;
        d[i] = (float)v;
    }
    return w;
}

static qerr_result *run(qerr_ctx *ctx, const char *spec, const qerr_tensor *w,
                        const qerr_calib *c) {
    qerr_plan *p = NULL;
    check(qerr_plan_parse(&p, spec), spec);
    qerr_result *r = NULL;
    check(qerr_quantize(ctx, p, w, c, &r), spec);
    qerr_plan_free(p);
    return r;
}

static double diag(const qerr_result *r, const char *name) {
    double v = NAN;
    qerr_result_diag(r, name, &v);
    return v;
}

int main(int argc, char **argv) {
    const int64_t n = argc > 1 ? atoll(argv[1]) : 4096;
    const int64_t tokens = argc > 2 ? atoll(argv[2]) : 8192;
    const int64_t sweeps = argc > 3 ? atoll(argv[3]) : 30;
    const int64_t err_n = argc > 4 ? atoll(argv[4]) : 1024;
    const int threads = argc > 5 ? atoi(argv[5]) : 0;
    if (n < 8 || tokens < 1 || sweeps < 1 || err_n < 128) {
        fprintf(stderr, "usage: %s [n>=8] [tokens] [sweeps] [err_n>=128] [threads]\n", argv[0]);
        return 2;
    }
    qerr_ctx *ctx = NULL;
    check(qerr_ctx_create(&ctx), "qerr_ctx_create");
    check(qerr_ctx_set_threads(ctx, threads), "qerr_ctx_set_threads");
    printf("libqerr %s, timing layer %lldx%lld, H from %lld tokens, %lld sweeps\n",
           qerr_version_string(), (long long)n, (long long)n, (long long)tokens,
           (long long)sweeps);

    /* ---- timing: one GPTQ solve vs QuantEase sweeps, same W and H ---- */
    qerr_calib *c = make_calib(n, tokens, 1);
    qerr_tensor *w = make_weight(n, n, 2);
    char spec[256];
    qerr_result *g = run(ctx, "gptq:bits=4,group_size=128", w, c);
    double t_gptq = diag(g, "seconds");
    printf("GPTQ W4g128 solve:              %8.3f s   layer_error %.6f\n", t_gptq,
           diag(g, "layer_error"));
    fflush(stdout);
    snprintf(spec, sizeof spec, "quantease:bits=4,group_size=128,iterations=%lld",
             (long long)sweeps);
    qerr_result *q = run(ctx, spec, w, c);
    double t_sweep = diag(q, "sweep_seconds");
    printf("QuantEase W4g128, %3lld sweeps:   %8.3f s   layer_error %.6f\n", (long long)sweeps,
           diag(q, "seconds"), diag(q, "layer_error"));
    qerr_result *g2 = run(ctx, "gptq:bits=4,group_size=128", w, c);
    printf("GPTQ W4g128 solve, again:       %8.3f s\n", diag(g2, "seconds"));
    t_gptq = 0.5 * (t_gptq + diag(g2, "seconds"));
    qerr_result_free(g2);
    printf("  one sweep:                    %8.3f s   = %.2f x one GPTQ solve (mean of 2)\n",
           t_sweep, t_sweep / t_gptq);
    fflush(stdout);
    int64_t o_sweeps = sweeps < 5 ? sweeps : 5;
    snprintf(spec, sizeof spec,
             "quantease_outlier:bits=4,group_size=128,outlier_fraction=0.01,iterations=%lld",
             (long long)o_sweeps);
    qerr_result *o = run(ctx, spec, w, c);
    printf("QuantEase+1%% outliers, %lld sweeps: %6.3f s   one sweep + IHT %.3f s = %.2f x GPTQ\n",
           (long long)o_sweeps, diag(o, "seconds"), diag(o, "sweep_seconds"),
           diag(o, "sweep_seconds") / t_gptq);
    qerr_result_free(g);
    qerr_result_free(q);
    qerr_result_free(o);
    qerr_tensor_free(w);
    qerr_calib_free(c);

    /* ---- layer errors on an err_n x err_n layer ---- */
    c = make_calib(err_n, tokens, 3);
    w = make_weight(err_n, err_n, 4);
    printf("\nrelative layer error tr(dW H dW^T) / tr(W H W^T), layer %lldx%lld, %lld tokens, "
           "QuantEase %lld sweeps\n",
           (long long)err_n, (long long)err_n, (long long)tokens, (long long)sweeps);
    printf("%-8s %9s %9s %9s %11s %11s %12s %8s %8s\n", "grid", "RTN", "GPTQ", "QuantEase",
           "QE(gptq)", "QE+1%unstr", "QE+1%struct", "bpw", "bpw+1%");
    const struct {
        const char *name, *grid;
    } cfg[] = {
        {"W4g128", "bits=4,group_size=128"},
        {"W3g128", "bits=3,group_size=128"},
        {"W3", "bits=3"},
        {"W2g64", "bits=2,group_size=64"},
    };
    for (size_t k = 0; k < sizeof cfg / sizeof cfg[0]; k++) {
        double e[6], bpw = NAN, bpw0 = NAN;
        const char *fmt[6] = {"rtn:%s", "gptq:%s", "quantease:%s,iterations=%lld",
                              "quantease:%s,iterations=%lld,init=gptq",
                              "quantease_outlier:%s,iterations=%lld,outlier_fraction=0.01",
                              "quantease_outlier:%s,iterations=%lld,outlier_fraction=0.01,"
                              "outlier_mode=structured"};
        for (int m = 0; m < 6; m++) {
            snprintf(spec, sizeof spec, fmt[m], cfg[k].grid, (long long)sweeps);
            qerr_result *r = run(ctx, spec, w, c);
            e[m] = diag(r, "layer_error");
            if (m == 2) bpw0 = qerr_result_bits_per_weight(r);
            if (m == 4) bpw = qerr_result_bits_per_weight(r);
            qerr_result_free(r);
        }
        printf("%-8s %9.5f %9.5f %9.5f %11.5f %11.5f %12.5f %8.2f %8.2f\n", cfg[k].name, e[0],
               e[1], e[2], e[3], e[4], e[5], bpw0, bpw);
        fflush(stdout);
    }
    qerr_tensor_free(w);
    qerr_calib_free(c);
    qerr_ctx_free(ctx);
    return 0;
}
