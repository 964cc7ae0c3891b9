/* Helpers shared by the cmocka tests: seeded random layers and paths. */
#ifndef QERR_TESTUTIL_H
#define QERR_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "qerr.h"

/* Uniform [-1, 1) floats from a seeded generator. */
void tu_random(float *x, int64_t n, uint64_t seed);
/* n doubles shift + scale * (the float values tu_random gives); caller frees. */
double *tu_random_d(int64_t n, uint64_t seed, double scale, double shift);
/* n_rows activation rows with correlated columns: X = Z A, Z Gaussian,
 * A = I + strength * random (cols x cols); rows x cols row-major. */
float *tu_correlated_rows(int64_t n_rows, int64_t cols, double strength, uint64_t seed);
/* A calibration set from tu_correlated_rows. */
qerr_calib *tu_correlated_calib(int64_t n_rows, int64_t cols, double strength, uint64_t seed);
/* A weight tensor [rows, cols] of Gaussian values (std 0.02 plus a few
 * larger entries, like real LLM weights). Caller frees. */
qerr_tensor *tu_weight(int64_t rows, int64_t cols, uint64_t seed);
/* ../shared/data (or $QERR_SHARED_DATA), or NULL when absent. */
const char *tu_shared_data(void);
/* Skip the current test with a message when shared data is absent. */
#define TU_REQUIRE_SHARED(dir)                                                            \
    const char *dir = tu_shared_data();                                                   \
    if (!dir) {                                                                           \
        print_message("[  SKIP    ] ../shared/data is absent: test skipped\n");           \
        skip();                                                                           \
    }
/* Quantize and return the result (fails the test on error). */
qerr_result *tu_quantize(const char *spec, const qerr_tensor *w, const qerr_calib *c);
/* Relative layer error of a result against the weight. */
double tu_layer_error(const qerr_tensor *w, const qerr_result *r, const qerr_calib *c);

/* Worst relative difference between `grad` and central differences (step h)
 * of loss(ctx) over param[0..n), relative to max(|grad_i|, 1e-2 max|grad|).
 * tu_fd_error uses h = 1e-5. */
double tu_fd_error_step(double (*loss)(void *), void *ctx, double *param, int64_t n,
                        const double *grad, double h);
double tu_fd_error(double (*loss)(void *), void *ctx, double *param, int64_t n,
                   const double *grad);

#endif
