/* qerr_quantize: validate inputs, convert to float32/float64, dispatch to the
 * method, stamp the plan and common diagnostics. Also qerr_layer_error. */
#include "../core/internal.h"
#include "method.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int check_weight(const char *fn, const qerr_tensor *w) {
    QERR_CHECK(w, QERR_E_INVALID_ARG, "%s: weight is NULL", fn);
    QERR_CHECK(w->ndim == 2, QERR_E_SHAPE, "%s: weight must be 2-D [out, in], got %d-D", fn,
               w->ndim);
    QERR_CHECK(w->shape[0] <= INT32_MAX && w->shape[1] <= INT32_MAX, QERR_E_SHAPE,
               "%s: weight %lldx%lld is too large", fn, (long long)w->shape[0],
               (long long)w->shape[1]);
    return QERR_OK;
}

int qerr_quantize(qerr_ctx *ctx, const qerr_plan *plan, const qerr_tensor *weight,
                  const qerr_calib *calib, qerr_result **out) {
    static const char fn[] = "qerr_quantize";
    QERR_CHECK(out, QERR_E_INVALID_ARG, "%s: out is NULL", fn);
    *out = NULL;
    QERR_CHECK(plan, QERR_E_INVALID_ARG, "%s: plan is NULL", fn);
    QERR_TRY(check_weight(fn, weight));
    const qerr_method *m = plan->method;
    const int64_t rows = weight->shape[0], cols = weight->shape[1];
    if (calib) {
        QERR_CHECK(calib->n == cols, QERR_E_SHAPE,
                   "%s: weight has %lld input columns but the calibration set has %lld", fn,
                   (long long)cols, (long long)calib->n);
    } else {
        QERR_CHECK(!m->needs_calib, QERR_E_INVALID_ARG,
                   "%s: method '%s' needs a calibration set (calib is NULL)", fn, m->name);
    }
    int64_t bits = qerr__plan_int(plan, "bits");
    if (bits > 0) /* every grid method has bits; range is enforced by the table */
        QERR_CHECK(bits >= 2 && bits <= 8, QERR_E_RANGE, "%s: bits=%lld is outside 2..8", fn,
                   (long long)bits);
    int64_t gs;
    QERR_TRY(qerr__plan_group_size(plan, cols, &gs));
    if (m->validate) QERR_TRY(m->validate(plan, rows, cols));

    const float *W;
    float *owned = NULL;
    QERR_TRY(qerr__tensor_f32(weight, &W, &owned));
    int64_t bad = qerr__find_nonfinite_f32(W, rows * cols);
    if (bad >= 0) {
        free(owned);
        return qerr__fail(QERR_E_NONFINITE, "%s: weight[%lld][%lld] is not finite", fn,
                          (long long)(bad / cols), (long long)(bad % cols));
    }
    if (calib) {
        bad = qerr__find_nonfinite_f64(calib->gram, cols * cols);
        if (bad >= 0) {
            free(owned);
            return qerr__fail(QERR_E_NONFINITE, "%s: H[%lld][%lld] is not finite", fn,
                              (long long)(bad / cols), (long long)(bad % cols));
        }
    }
    qerr_method_call call = {
        .ctx = ctx ? ctx : qerr__default_ctx(),
        .plan = plan,
        .W = W,
        .rows = rows,
        .cols = cols,
        .H = calib ? calib->gram : NULL,
        .nsamples = calib ? calib->nsamples : 0,
        .calib = calib,
    };
    qerr_result *r = NULL;
    double t0 = qerr__now();
    int rc = m->quantize(&call, &r);
    if (rc == QERR_OK) rc = qerr__finish_diag(&call, r, qerr__now() - t0);
    if (rc == QERR_OK) {
        size_t need = 0;
        qerr_plan_to_string(plan, NULL, 0, &need);
        r->plan = malloc(need);
        if (!r->plan || qerr_plan_to_string(plan, r->plan, need, NULL) != QERR_OK)
            rc = qerr__fail(QERR_E_NOMEM, "%s: out of memory", fn);
    }
    free(owned);
    if (rc != QERR_OK) {
        qerr_result_free(r);
        return rc;
    }
    qerr__clear_error();
    *out = r;
    return QERR_OK;
}

int qerr_layer_error(const qerr_tensor *weight, const qerr_tensor *dequantized,
                     const qerr_calib *calib, double *out) {
    static const char fn[] = "qerr_layer_error";
    QERR_CHECK(out, QERR_E_INVALID_ARG, "%s: out is NULL", fn);
    QERR_CHECK(calib, QERR_E_INVALID_ARG, "%s: calib is NULL", fn);
    QERR_TRY(check_weight(fn, weight));
    QERR_CHECK(dequantized, QERR_E_INVALID_ARG, "%s: dequantized is NULL", fn);
    QERR_CHECK(dequantized->ndim == 2 && dequantized->shape[0] == weight->shape[0] &&
                   dequantized->shape[1] == weight->shape[1],
               QERR_E_SHAPE, "%s: dequantized must have the weight's shape %lldx%lld", fn,
               (long long)weight->shape[0], (long long)weight->shape[1]);
    QERR_CHECK(calib->n == weight->shape[1], QERR_E_SHAPE,
               "%s: weight has %lld columns but the calibration set has %lld", fn,
               (long long)weight->shape[1], (long long)calib->n);
    const float *W, *Q;
    float *ow, *oq;
    QERR_TRY(qerr__tensor_f32(weight, &W, &ow));
    int rc = qerr__tensor_f32(dequantized, &Q, &oq);
    double err = NAN, ref = NAN;
    if (rc == QERR_OK)
        rc = qerr__layer_objective(W, Q, weight->shape[0], weight->shape[1], calib->gram, &err,
                                   &ref);
    free(ow);
    free(oq);
    QERR_TRY(rc);
    QERR_CHECK(isfinite(err) && isfinite(ref), QERR_E_NONFINITE,
               "%s: the error is not finite (non-finite input?)", fn);
    *out = ref > 0 ? err / ref : (err > 0 ? INFINITY : 0.0);
    return QERR_OK;
}
