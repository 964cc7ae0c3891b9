/* GPTQ on one 4096x4096 layer: time H accumulation (qerr_calib_add over
 * 8192 tokens), the GPTQ solve and the layer_error diagnostic, and compare
 * with this machine's SGEMM rate measured in the same run.
 *
 * usage: bench_gptq [n=4096] [tokens=8192] [spec=gptq:bits=4,group_size=128] [threads=0] [reps=3]
 *
 * Every phase runs `reps` times; the best and the median time are printed
 * (the machine is shared, so the best is the least disturbed run).
 *
 * Flop counts (multiply and add counted separately, so 2 per FMA):
 *   SGEMM n^3:         2 n^3
 *   H accumulation:    SYRK of the upper triangle, n (n + 1) tokens
 *                      (the float64 summation of the SYRK blocks is not counted)
 *   GPTQ solve:        Cholesky of H (n^3/3, float64) + triangular inverse (n^3/3, float64)
 *                      + in-block rank-1 updates rows * n * (B - 1)
 *                      + lazy-batch GEMMs sum_blocks 2 rows B (n - i2) = rows n (n - B) for equal blocks
 *   layer_error:       two float32 SYRKs (W - Q)^T (W - Q) and W^T W, rows n^2 each
 *                      (the float64 sums against H, 2 n^2, are not counted)
 * Quantization itself (grid fits, rounding) is not counted. */
#include "qerr.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double unif(uint64_t *s) { return (double)(mix(s) >> 11) * 0x1.0p-53; }
static double gauss(uint64_t *s) {
    double u = unif(s) + 1e-300, v = unif(s);
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Best and median of t[0..n). */
static void stats(double *t, int n, double *best, double *median) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    *best = t[0];
    *median = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static void print_phase(const char *name, double *t, int reps, double flops, const char *note) {
    double best, med;
    stats(t, reps, &best, &med);
    printf("%-20s best %7.3f s  median %7.3f s", name, best, med);
    if (flops > 0) printf("  %7.1f GFLOP/s (best)", flops / best * 1e-9);
    printf("%s%s\n", note ? "  " : "", note ? note : "");
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static void die(const char *what, int rc) {
    fprintf(stderr, "%s failed: %s (%s)\n", what, qerr_status_string(rc), qerr_last_error());
    exit(1);
}

/* Activations like an LLM's: per-feature scales over two decades, a few
 * outlier features, and a rank-32 shared component (correlated columns). */
static float *make_activations(int64_t tokens, int64_t n, uint64_t seed) {
    const int64_t rank = 32;
    float *X = xmalloc((size_t)(tokens * n) * sizeof(float));
    float *G = xmalloc((size_t)(tokens * rank) * sizeof(float));
    float *F = xmalloc((size_t)(rank * n) * sizeof(float));
    float *scale = xmalloc((size_t)n * sizeof(float));
    for (int64_t j = 0; j < n; j++) {
        scale[j] = (float)pow(10.0, 2.0 * unif(&seed) - 1.0);
        if (unif(&seed) < 0.002) scale[j] *= 30.0f; /* outlier feature */
    }
    for (int64_t i = 0; i < tokens * n; i++) X[i] = (float)gauss(&seed) * scale[i % n];
    for (int64_t i = 0; i < tokens * rank; i++) G[i] = (float)gauss(&seed);
    for (int64_t i = 0; i < rank * n; i++) F[i] = (float)(0.5 * gauss(&seed)) * scale[i % n];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)tokens, (int)n, (int)rank, 1.0f, G,
                (int)rank, F, (int)n, 1.0f, X, (int)n);
    free(G);
    free(F);
    free(scale);
    return X;
}

int main(int argc, char **argv) {
    const int64_t n = argc > 1 ? atoll(argv[1]) : 4096;
    const int64_t tokens = argc > 2 ? atoll(argv[2]) : 8192;
    const char *spec = argc > 3 ? argv[3] : "gptq:bits=4,group_size=128";
    const int threads = argc > 4 ? atoi(argv[4]) : 0;
    const int reps = argc > 5 ? atoi(argv[5]) : 3;
    const int64_t rows = n;
    if (n < 8 || tokens < 1 || reps < 1 || reps > 50) {
        fprintf(stderr, "usage: %s [n] [tokens] [spec] [threads] [reps]\n", argv[0]);
        return 2;
    }
    {
        double load[3] = {0, 0, 0};
        FILE *f = fopen("/proc/loadavg", "r");
        if (f) {
            if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
            fclose(f);
        }
        printf("load average before the run: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
    }
    printf("libqerr %s, layer %lldx%lld, %lld calibration tokens, plan %s\n",
           qerr_version_string(), (long long)rows, (long long)n, (long long)tokens, spec);

    /* ---- machine SGEMM rate (n^3), best of 2 after a warm-up ---- */
    {
        float *A = xmalloc((size_t)(n * n) * sizeof(float));
        float *B = xmalloc((size_t)(n * n) * sizeof(float));
        float *C = xmalloc((size_t)(n * n) * sizeof(float));
        uint64_t s = 7;
        for (int64_t i = 0; i < n * n; i++) {
            A[i] = (float)(unif(&s) - 0.5);
            B[i] = (float)(unif(&s) - 0.5);
        }
        double t[51];
        for (int rep = 0; rep <= reps; rep++) { /* rep 0 warms up */
            double t0 = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0f, A,
                        (int)n, B, (int)n, 0.0f, C, (int)n);
            if (rep > 0) t[rep - 1] = now() - t0;
        }
        print_phase("sgemm n^3:", t, reps, 2.0 * (double)n * n * n, "2 n^3 flops");
        free(A);
        free(B);
        free(C);
    }

    /* ---- H accumulation through qerr_calib_add ---- */
    float *X = make_activations(tokens, n, 11);
    int64_t xshape[2] = {tokens, n};
    qerr_tensor *xt = NULL;
    qerr_calib *calib = NULL;
    int rc = qerr_tensor_wrap(&xt, QERR_DTYPE_F32, 2, xshape, X);
    if (rc) die("qerr_tensor_wrap", rc);
    double t_acc[50];
    for (int rep = 0; rep < reps; rep++) {
        qerr_calib_free(calib);
        if ((rc = qerr_calib_create(&calib, n))) die("qerr_calib_create", rc);
        double t0 = now();
        if ((rc = qerr_calib_add(calib, xt))) die("qerr_calib_add", rc);
        t_acc[rep] = now() - t0;
    }
    print_phase("H accumulation:", t_acc, reps, (double)n * (double)(n + 1) * (double)tokens,
                "SYRK n(n+1)N flops");
    qerr_tensor_free(xt);
    free(X);

    /* ---- GPTQ ---- */
    qerr_tensor *w = NULL;
    int64_t wshape[2] = {rows, n};
    if ((rc = qerr_tensor_create(&w, QERR_DTYPE_F32, 2, wshape))) die("qerr_tensor_create", rc);
    {
        float *wd = qerr_tensor_data(w);
        uint64_t s = 13;
        for (int64_t i = 0; i < rows * n; i++) {
            double v = 0.02 * gauss(&s);
            if (unif(&s) < 0.005) v *= 8;
            wd[i] = (float)v;
        }
    }
    qerr_plan *plan = NULL;
    qerr_ctx *ctx = NULL;
    if ((rc = qerr_plan_parse(&plan, spec))) die("qerr_plan_parse", rc);
    if ((rc = qerr_ctx_create(&ctx))) die("qerr_ctx_create", rc);
    if ((rc = qerr_ctx_set_threads(ctx, threads))) die("qerr_ctx_set_threads", rc);
    qerr_result *res = NULL;
    double t_total[50], t_solve[50], t_diag[50], lerr = NAN, damp = NAN;
    for (int rep = 0; rep < reps; rep++) {
        qerr_result_free(res);
        double t0 = now();
        if ((rc = qerr_quantize(ctx, plan, w, calib, &res))) die("qerr_quantize", rc);
        t_total[rep] = now() - t0;
        qerr_result_diag(res, "seconds", &t_solve[rep]);
        t_diag[rep] = t_total[rep] - t_solve[rep];
    }
    qerr_result_diag(res, "layer_error", &lerr);
    qerr_result_diag(res, "damp", &damp);
    int64_t B = 128;
    qerr_plan_get_int(plan, "block_size", &B);
    double f_solve = 2.0 * (double)n * n * n / 3.0 + (double)rows * n * (double)(B - 1);
    for (int64_t i1 = 0; i1 < n; i1 += B) {
        int64_t i2 = i1 + B < n ? i1 + B : n;
        f_solve += 2.0 * (double)rows * (double)(i2 - i1) * (double)(n - i2);
    }
    print_phase("GPTQ solve:", t_solve, reps, f_solve,
                "potrf + trtri + updates; diag 'seconds'");
    print_phase("layer_error diag:", t_diag, reps, 0, "qerr_quantize minus 'seconds'");
    print_phase("qerr_quantize:", t_total, reps, 0, "whole call");
    printf("layer_error %.6g, damp %g\n", lerr, damp);

    /* ---- layer_error alone, through the public call ---- */
    float *deq = xmalloc((size_t)(rows * n) * sizeof(float));
    if ((rc = qerr_result_dequantize(res, deq, (size_t)(rows * n)))) die("qerr_result_dequantize", rc);
    qerr_tensor *qt = NULL;
    if ((rc = qerr_tensor_wrap(&qt, QERR_DTYPE_F32, 2, wshape, deq))) die("qerr_tensor_wrap", rc);
    double le = NAN, t_le[50];
    for (int rep = 0; rep < reps; rep++) {
        double t0 = now();
        if ((rc = qerr_layer_error(w, qt, calib, &le))) die("qerr_layer_error", rc);
        t_le[rep] = now() - t0;
    }
    print_phase("qerr_layer_error:", t_le, reps, 2.0 * (double)rows * n * n,
                "2 SYRK of rows n^2 flops each");
    printf("qerr_layer_error value %.6g\n", le);

    qerr_tensor_free(qt);
    free(deq);
    qerr_result_free(res);
    qerr_plan_free(plan);
    qerr_ctx_free(ctx);
    qerr_tensor_free(w);
    qerr_calib_free(calib);
    return 0;
}
