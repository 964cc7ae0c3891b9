/* Streaming pipeline on a LLaMA-shaped model (bench/gen_llama): peak RSS
 * against the floor, and the time per decoder layer split into forward
 * passes, H accumulation, solve and layer-error diagnostic, with the H
 * accumulation rate as a fraction of this machine's SGEMM rate.
 *   bench_stream MODEL_DIR NSAMPLES SEQLEN LAYERS PLAN OUT.qerr [MAX_MEMORY_GIB]
 * LAYERS limits the run to the first decoder layers (per-layer figures
 * without a whole run). Calibration tokens are random ids (seed 0). */
#include "llama/model.h"
#include "methods/method.h"
#include "pipeline/quantize_budget.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static double gib(double b) { return b / (double)(1u << 30); }

static void on_log(void *user, int level, const char *msg) {
    (void)user;
    (void)level;
    fprintf(stderr, "  %s\n", msg);
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: bench_stream MODEL_DIR NSAMPLES SEQLEN LAYERS PLAN OUT.qerr "
                        "[MAX_MEMORY_GIB]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    const int64_t nsamples = atoll(argv[2]), seqlen = atoll(argv[3]);
    int64_t layers = atoll(argv[4]);
    const char *plan = argv[5], *out = argv[6];
    const double budget_gib = argc > 7 ? atof(argv[7]) : 0.0;
    qerr_model *m;
    double t0 = qerr__now();
    if (qerr_model_load(&m, argv[1]) != QERR_OK) {
        fprintf(stderr, "bench_stream: %s\n", qerr_last_error());
        return 1;
    }
    const double load_s = qerr__now() - t0;
    qerr_model_set_streaming(m, 1);
    if (layers < 1 || layers > m->cfg.layers) layers = m->cfg.layers;
    const int64_t all_layers = m->cfg.layers;
    m->cfg.layers = layers; /* the pipeline stops after these */
    const int64_t count = nsamples * seqlen + seqlen;
    uint32_t *tok = malloc((size_t)count * sizeof *tok);
    uint64_t s = 0x2545F4914F6CDD1Dull;
    for (int64_t i = 0; i < count; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        tok[i] = (uint32_t)(s % (uint64_t)m->cfg.vocab);
    }
    qerr_ctx *ctx;
    qerr_ctx_create(&ctx);
    if (budget_gib > 0) qerr_ctx_set_max_memory(ctx, (uint64_t)(budget_gib * (1u << 30)));
    uint64_t need = 0, need_spilled = 0;
    double est_s = 0;
    qerr_model_quantize_estimate(ctx, m, plan, nsamples, seqlen, &need, &need_spilled, &est_s);
    const double sgemm = qerr__gemm_rate();
    printf("model %s: %lld of %lld layers, hidden %lld, inter %lld; loaded (mapped) in %.2f s\n",
           argv[1], (long long)layers, (long long)all_layers, (long long)m->cfg.hidden,
           (long long)m->cfg.inter, load_s);
    printf("calibration %lld x %lld tokens, plan %s, budget %s\n", (long long)nsamples,
           (long long)seqlen, plan, budget_gib > 0 ? argv[7] : "none");
    printf("estimate: %.2f GiB (activations in memory), %.2f GiB (spilled), %.1f s for these "
           "layers\n",
           gib((double)need), gib((double)need_spilled), est_s);
    if (getenv("BENCH_ESTIMATE_ONLY")) return 0;
    qerr_ctx_set_log(ctx, on_log, NULL, QERR_LOG_INFO);
    t0 = qerr__now();
    int rc = qerr_model_quantize_file(ctx, m, plan, NULL, tok, count, nsamples, seqlen, NULL, out,
                                      0);
    const double wall = qerr__now() - t0;
    if (rc != QERR_OK) {
        printf("quantize: %s\n", qerr_last_error());
        return 1;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    qerr_run_budget b;
    qerr__run_budget(m, false, nsamples, seqlen, &b);
    const double floor = (double)(b.layer_bytes + b.gram_bytes + b.n_act * b.act_bytes);
    const qerr_phase_times *pt = &qerr__phase_times;
    const double L = (double)layers;
    printf("wall %.2f s, %.2f s per layer: forward %.2f, H accumulation %.2f, solve %.2f, "
           "diagnostic %.2f\n",
           wall, wall / L, pt->forward / L, pt->gram / L, pt->solve / L, pt->diag / L);
    printf("H accumulation %.1f GFLOP/s = %.0f %% of SGEMM %.1f GFLOP/s (same run)\n",
           b.flops_gram * L / pt->gram / 1e9, 100.0 * b.flops_gram * L / pt->gram / sgemm,
           sgemm / 1e9);
    printf("peak RSS %.2f GiB; floor = layer f32 %.2f + H %.2f + %d x activations %.2f = %.2f "
           "GiB\n",
           gib((double)ru.ru_maxrss * 1024.0), gib((double)b.layer_bytes),
           gib((double)b.gram_bytes), b.n_act, gib((double)b.act_bytes), gib(floor));
    m->cfg.layers = all_layers;
    qerr_ctx_free(ctx);
    qerr_model_free(m);
    free(tok);
    return 0;
}
