/* A program outside the source tree using the installed libqerr: checks
 * that the header and the library agree, quantizes a small correlated layer
 * with RTN and GPTQ and checks that GPTQ's layer error is lower. Exit 0 on
 * success. Built by tests/consumer/run.sh through pkg-config and CMake. */
#include <qerr.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

enum { ROWS = 32, COLS = 64, SAMPLES = 512 };

static uint64_t state = 0x9E3779B97F4A7C15ull;

static double normal(void) {
    double u[2];
    for (int i = 0; i < 2; i++) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        u[i] = ((double)((state * 0x2545F4914F6CDD1Dull) >> 11) + 0.5) / 9007199254740992.0;
    }
    return sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

static int fail(const char *what, int status) {
    fprintf(stderr, "consumer: %s failed: %s (%s)\n", what, qerr_last_error(),
            qerr_status_string(status));
    return 1;
}

static int layer_error(const char *spec, const qerr_tensor *w, const qerr_calib *calib,
                       double *err) {
    qerr_plan *plan = NULL;
    qerr_result *r = NULL;
    int rc = qerr_plan_parse(&plan, spec);
    if (rc == QERR_OK) rc = qerr_quantize(NULL, plan, w, calib, &r);
    if (rc == QERR_OK) rc = qerr_result_diag(r, "layer_error", err);
    if (rc != QERR_OK) fail(spec, rc);
    qerr_result_free(r);
    qerr_plan_free(plan);
    return rc;
}

int main(void) {
    if (qerr_version_number() / 10000 != QERR_VERSION_MAJOR) {
        fprintf(stderr, "consumer: header %s but library %s\n", QERR_VERSION_STRING,
                qerr_version_string());
        return 1;
    }
    static float mix[COLS * COLS], x[SAMPLES * COLS], w[ROWS * COLS];
    for (int i = 0; i < COLS * COLS; i++)
        mix[i] = (float)(normal() / 8.0 + (i / COLS == i % COLS ? 0.2 : 0.0));
    for (int s = 0; s < SAMPLES; s++) {
        double z[COLS];
        for (int k = 0; k < COLS; k++) z[k] = normal();
        for (int j = 0; j < COLS; j++) {
            double acc = 0;
            for (int k = 0; k < COLS; k++) acc += z[k] * mix[k * COLS + j];
            x[s * COLS + j] = (float)acc;
        }
    }
    for (int i = 0; i < ROWS * COLS; i++) w[i] = (float)normal();

    qerr_calib *calib = NULL;
    qerr_tensor *wt = NULL;
    int64_t shape[2] = {ROWS, COLS};
    int rc = qerr_calib_create(&calib, COLS);
    if (rc == QERR_OK) rc = qerr_calib_add_f32(calib, x, SAMPLES);
    if (rc == QERR_OK) rc = qerr_tensor_wrap(&wt, QERR_DTYPE_F32, 2, shape, w);
    if (rc != QERR_OK) return fail("setup", rc);
    double e_rtn = NAN, e_gptq = NAN;
    int bad = layer_error("rtn:bits=3", wt, calib, &e_rtn) != QERR_OK ||
              layer_error("gptq:bits=3", wt, calib, &e_gptq) != QERR_OK;
    qerr_tensor_free(wt);
    qerr_calib_free(calib);
    if (bad) return 1;
    printf("libqerr %s: layer error rtn %.5f, gptq %.5f\n", qerr_version_string(), e_rtn,
           e_gptq);
    if (!(e_gptq < e_rtn)) {
        fprintf(stderr, "consumer: GPTQ did not beat RTN\n");
        return 1;
    }
    return 0;
}
