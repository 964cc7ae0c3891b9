/* RTN: round each weight to the nearest point of its group's min-max grid,
 * optionally after GPTQ's MSE clip search. Needs no calibration data. */
#include "method.h"

static const qerr_param_def rtn_params[] = {
    QERR_PDEF_BITS, QERR_PDEF_GROUP_SIZE, QERR_PDEF_RAGGED, QERR_PDEF_SYMMETRIC,
    QERR_PDEF_CLIP_SEARCH, QERR_PDEF_SCALE_DTYPE,
};

typedef struct {
    const float *W;
    qerr_result *r;
    qerr_grid grid;
    bool clip;
} rtn_job;

static void rtn_rows(void *arg, int64_t begin, int64_t end) {
    rtn_job *job = arg;
    qerr_result *r = job->r;
    const int64_t cols = r->cols, g = r->group_size;
    for (int64_t i = begin; i < end; i++) {
        const float *w = job->W + i * cols;
        for (int64_t k = 0; k < r->groups; k++) {
            int64_t c0 = k * g, c1 = c0 + g < cols ? c0 + g : cols;
            float s;
            int32_t z;
            qerr__grid_fit(&job->grid, w + c0, c1 - c0, 1, job->clip, &s, &z);
            r->scales[i * r->groups + k] = s;
            r->zeros[i * r->groups + k] = z;
            for (int64_t j = c0; j < c1; j++)
                r->codes[i * cols + j] = (uint8_t)qerr__grid_code(&job->grid, w[j], s, z);
        }
    }
}

static int rtn_quantize(const qerr_method_call *call, qerr_result **out) {
    const qerr_plan *p = call->plan;
    int64_t g;
    QERR_TRY(qerr__plan_group_size(p, call->cols, &g));
    qerr_result *r;
    QERR_TRY(qerr__result_alloc(&r, call->rows, call->cols, (int)qerr__plan_int(p, "bits"), g));
    rtn_job job = {call->W, r,
                   qerr__plan_grid(p, r->bits),
                   qerr__plan_int(p, "clip_search") == 1};
    qerr__parallel_for(qerr__ctx_threads(call->ctx), call->rows, 16, rtn_rows, &job);
    qerr__result_set_diag(r, "iterations", 1);
    *out = r;
    return QERR_OK;
}

const qerr_method qerr__rtn_method = {
    .version = QERR_METHOD_VERSION,
    .name = "rtn",
    .summary = "round to nearest on a per-group min-max grid, optional clip search",
    .params = rtn_params,
    .nparams = (int)(sizeof rtn_params / sizeof rtn_params[0]),
    .needs_calib = false,
    .quantize = rtn_quantize,
};
