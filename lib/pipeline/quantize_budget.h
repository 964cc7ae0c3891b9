/* Working set and work of the streaming quantization pipeline (see
 * quantize_budget.c): used by --max-memory and the dry run. */
#ifndef QERR_QUANTIZE_BUDGET_H
#define QERR_QUANTIZE_BUDGET_H

#include "../llama/model.h"

typedef struct qerr_run_budget {
    int64_t act_bytes;     /* one calibration activation array, rows x hidden float32 */
    int n_act;             /* how many are live: X and h1 (+ the float path) */
    int64_t layer_bytes;   /* float32 weights resident (layer + block look-ahead) */
    int64_t deq_bytes;     /* dequantized copies of one layer's linears */
    int64_t gram_bytes;    /* the largest H, float64 */
    int64_t solver_bytes;  /* the solver's arrays for the largest linear */
    int64_t results_bytes; /* one layer's results before they are written */
    int64_t fixed_bytes;   /* norms, forward scratch, calibration token ids */
    double flops_forward, flops_gram, flops_solve, flops_diag; /* per layer */
} qerr_run_budget;

void qerr__run_budget(const qerr_model *m, bool blockwise, int64_t nsamples, int64_t seqlen,
                      qerr_run_budget *b);
/* Peak bytes, with the activations in memory or spilled to a file. */
int64_t qerr__budget_total(const qerr_run_budget *b, bool spilled);
/* float32 GEMM rate of this machine in FLOP/s (a 0.2 s measurement). */
double qerr__gemm_rate(void);

#endif /* QERR_QUANTIZE_BUDGET_H */
