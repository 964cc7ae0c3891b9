/* Working set and work of the streaming pipeline, from the model shape
 * alone: what qerr_model_quantize_file holds at its peak (one layer's
 * float32 weights and their dequantized copies, the largest Gram matrix and
 * the solver's arrays, one layer's results, the calibration activations)
 * and the floating-point work per layer, for --dry-run and --max-memory.
 * The solver terms follow GPTQ (the largest linear: weight, H, and the
 * layer-error products); block-wise methods train on top of this. */
#include "quantize_budget.h"
#include "../methods/method.h" /* QERR_BLOCK_LOOKAHEAD, qerr__now, plan kinds */

#include <cblas.h>
#include <stdlib.h>

/* The forward pass works through windows in chunks of this many floats. */
#define FORWARD_CHUNK_BYTES ((int64_t)64 << 20)

void qerr__run_budget(const qerr_model *m, bool blockwise, int64_t nsamples, int64_t seqlen,
                      qerr_run_budget *b) {
    const qerr_model_config *c = &m->cfg;
    const int64_t d = c->hidden, qd = c->heads * c->head_dim, kvd = c->kv_heads * c->head_dim;
    const int64_t ff = c->inter, R = nsamples * seqlen, T = seqlen;
    const int64_t shapes[QERR_LIN_COUNT][2] = {{qd, d}, {kvd, d}, {kvd, d}, {d, qd},
                                               {ff, d}, {ff, d}, {d, ff}};
    int64_t weights = 0, solver = 0, gram = 0;
    double solve = 0, diag = 0;
    for (int lin = 0; lin < QERR_LIN_COUNT; lin++) {
        const int64_t out = shapes[lin][0], in = shapes[lin][1];
        weights += out * in;
        const int64_t s = 3 * out * in * 4 + in * in * 20; /* W, D, Q; H f64, G f32, inverse */
        solver = s > solver ? s : solver;
        gram = in * in * 8 > gram ? in * in * 8 : gram;
        solve += (double)out * (double)in * (double)in + (double)in * (double)in * (double)in;
        diag += 2.0 * (double)out * (double)in * (double)in;
    }
    b->act_bytes = R * d * 4;
    b->n_act = blockwise ? 3 : 2; /* X and h1; block-wise plans add the float path */
    b->layer_bytes = qerr__model_layer_bytes(m) * (blockwise ? 1 + QERR_BLOCK_LOOKAHEAD : 1);
    b->deq_bytes = weights * 4;
    b->gram_bytes = gram;
    b->solver_bytes = solver;
    b->results_bytes = weights + weights / 8; /* one-byte codes, scales and zeros */
    b->fixed_bytes = 2 * d * 4 + FORWARD_CHUNK_BYTES + T * T * 4 + R * 4;
    const double Rd = (double)R;
    b->flops_forward = 2 * (2 * Rd * (double)(d * qd + 2 * d * kvd) + 4 * Rd * (double)(T * qd)) +
                       2 * Rd * (double)(qd * d) + 10 * Rd * (double)(d * ff);
    b->flops_gram = Rd * (double)(2 * d * d + qd * qd + ff * ff);
    b->flops_solve = solve;
    b->flops_diag = diag;
}

int64_t qerr__budget_total(const qerr_run_budget *b, bool spilled) {
    /* spilled, the activations keep about one forward chunk of each resident */
    const int64_t act = spilled ? b->n_act * (b->act_bytes < FORWARD_CHUNK_BYTES
                                                  ? b->act_bytes
                                                  : FORWARD_CHUNK_BYTES)
                                : b->n_act * b->act_bytes;
    return act + b->layer_bytes + b->deq_bytes + b->gram_bytes + b->solver_bytes +
           b->results_bytes + b->fixed_bytes;
}

double qerr__gemm_rate(void) {
    enum { N = 768 };
    float *a = calloc((size_t)N * N, sizeof(float)), *c = calloc((size_t)N * N, sizeof(float));
    if (!a || !c) {
        free(a);
        free(c);
        return 1e10;
    }
    for (int i = 0; i < N * N; i++) a[i] = (float)(i % 7) * 0.1f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, N, N, 1.0f, a, N, a, N, 0.0f, c, N);
    const double t0 = qerr__now();
    int reps = 0;
    do {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, N, N, 1.0f, a, N, a, N, 0.0f, c,
                    N);
        reps++;
    } while (qerr__now() - t0 < 0.2);
    const double rate = 2.0 * N * N * (double)N * reps / (qerr__now() - t0);
    free(a);
    free(c);
    return rate;
}

int qerr_model_quantize_estimate(qerr_ctx *ctx, const qerr_model *m, const char *plan_spec,
                                 int64_t nsamples, int64_t seqlen, uint64_t *bytes,
                                 uint64_t *bytes_spilled, double *seconds) {
    static const char fn[] = "qerr_model_quantize_estimate";
    (void)ctx;
    QERR_CHECK(m && plan_spec, QERR_E_INVALID_ARG, "%s: NULL argument", fn);
    QERR_CHECK(nsamples >= 1 && nsamples <= (1 << 20) && seqlen >= 1 && seqlen <= (1 << 20),
               QERR_E_RANGE, "%s: nsamples or seqlen is outside 1..2^20", fn);
    qerr_plan *plan;
    QERR_TRY(qerr_plan_parse(&plan, plan_spec));
    qerr_run_budget b;
    qerr__run_budget(m, qerr__plan_is_blockwise(plan), nsamples, seqlen, &b);
    qerr_plan_free(plan);
    if (bytes) *bytes = (uint64_t)qerr__budget_total(&b, false);
    if (bytes_spilled) *bytes_spilled = (uint64_t)qerr__budget_total(&b, true);
    if (seconds) {
        const double flops = b.flops_forward + b.flops_gram + b.flops_solve + b.flops_diag;
        *seconds = flops * (double)m->cfg.layers / qerr__gemm_rate();
    }
    qerr__clear_error();
    return QERR_OK;
}
