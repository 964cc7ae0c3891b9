/* The QuantEase coordinate-descent engine, shared by quantease.c and
 * quantease_outlier.c, and the test hooks that report f after every sweep.
 *
 * Everything here works in the "working" column order (after the optional
 * act-order permutation). The engine keeps R = (T - Q) H, where T is the
 * target (W, or W - S with outliers) and Q the iterate; one sweep visits
 * every column once, all rows at once. */
#ifndef QERR_QUANTEASE_H
#define QERR_QUANTEASE_H

#include "method.h"

typedef struct qerr_qe {
    int64_t rows, cols, block;
    int threads;
    const float *H;          /* cols x cols, float32 copy of H */
    const float *T;          /* rows x cols target */
    float *Q;                /* rows x cols iterate, updated by sweeps */
    float *R;                /* rows x cols, kept equal to (T - Q) H */
    float *D;                /* rows x cols scratch */
    float *delta;            /* rows x block scratch: column changes of a block */
    const float *scales;     /* rows x groups */
    const int32_t *zeros;    /* rows x groups */
    int64_t groups;
    const int32_t *col_group; /* group of working column j */
    qerr_grid grid;
} qerr_qe;

/* Allocate Q, R, D, delta (rows x cols, block) and the float32 copy of H
 * into e (H stays owned by the caller through e->H's allocation *hbuf).
 * On failure everything is freed and QERR_E_NOMEM returned. */
int qerr__qe_alloc(qerr_qe *e, int64_t rows, int64_t cols, int64_t block, float **hbuf);
void qerr__qe_free(qerr_qe *e, float *hbuf);

/* R = (T - Q) H from scratch (one SGEMM: drops the float32 rounding the
 * sweeps' updates carried in); returns f = tr((T - Q) H (T - Q)^T),
 * accumulated in float64. */
double qerr__qe_residual(qerr_qe *e);
/* f from the current R: sum (T - Q) o R, O(rows cols). */
double qerr__qe_objective(const qerr_qe *e);

/* One cyclic sweep over the columns, keeping R = (T - Q) H up to date.
 * quantize = round every column to its grid; otherwise an unrounded
 * Gauss-Seidel sweep. */
void qerr__qe_sweep(qerr_qe *e, bool quantize);

/* Whether sweep `it` of `iters` rounds: the reference schedule leaves the
 * sweeps with it % relax_every == 1 and it <= relax_until unrounded, and
 * always rounds the last sweep. relax_every = 0 rounds every sweep. */
bool qerr__qe_sweep_rounds(int64_t it, int64_t iters, int64_t relax_every, int64_t relax_until);

/* ---- a layer being quantized (shared setup of both methods) ------------- */
typedef struct qerr_qe_layer {
    qerr_qe e;
    float *hbuf;        /* e.H's storage */
    double *Hd;         /* cols x cols float64 H in working order */
    float *W;           /* rows x cols weights in working order (e.T by default) */
    int32_t *perm;      /* working column j -> original column */
    int32_t *iperm;
    int32_t *col_group; /* group of working column j (e.col_group) */
    qerr_result *r;     /* grids live in r->scales / r->zeros */
    int64_t iters, relax_every, relax_until, refresh_every;
    bool clip;
} qerr_qe_layer;

/* Plan keys both methods have (besides bits/group_size/symmetric/...). */
#define QERR_QE_PDEF_COMMON                                                        \
    {"act_order", QERR_PARAM_BOOL, 0, 0, 1, NULL,                                  \
     "visit columns in order of decreasing H_jj (groups follow that order)"},      \
    {"iterations", QERR_PARAM_INT, 30, 1, 100000, NULL, "coordinate-descent sweeps"}, \
    {"relax_every", QERR_PARAM_INT, 3, 0, 100000, NULL,                            \
     "sweeps with it % relax_every == 1 skip rounding (0 = always round)"},        \
    {"relax_until", QERR_PARAM_INT, 25, -1, 1e9, NULL,                             \
     "last sweep index that may skip rounding (the last sweep always rounds)"},    \
    {"block_size", QERR_PARAM_INT, 128, 1, 1 << 20, NULL,                          \
     "columns per block of a sweep (SGEMMs per block)"},                           \
    {"refresh_every", QERR_PARAM_INT, 10, 1, 100000, NULL,                         \
     "recompute R = (W - Q) H from scratch every this many sweeps (float32 drift)"}

/* Validate H (finite, diag >= 0), resolve the group size, allocate the
 * result and the engine, permute W and H for act_order, fill col_group and
 * g_idx, and point e.T at the working W. Grids and e.Q are left to the
 * caller. On failure everything is freed. */
int qerr__qe_prepare(const qerr_method_call *call, qerr_qe_layer *L);
void qerr__qe_layer_free(qerr_qe_layer *L); /* also frees L->r unless NULL */
/* Per-(row, group) min-max (or clip-search) grids from the working W. */
void qerr__qe_fit_grids(qerr_qe_layer *L);
/* trace[it] = exact float64 f(e.T, e.Q) when trace is not NULL. */
int qerr__qe_trace(qerr_qe_layer *L, double *trace, int64_t it);
/* Codes of e.Q (on the grids) into r, in the original column order. */
void qerr__qe_store_codes(qerr_qe_layer *L);

/* ---- test hooks ---------------------------------------------------------
 * Run the method exactly as qerr_quantize would (call already validated),
 * and when trace is not NULL store in trace[it] (it < iterations) the exact
 * objective, tr((W - S - Q) H (W - S - Q)^T) in float64, after sweep `it`
 * (for the outlier variant: after the sweep and its IHT step). */
int qerr__quantease_run(const qerr_method_call *call, qerr_result **out, double *trace);
int qerr__quantease_outlier_run(const qerr_method_call *call, qerr_result **out,
                                double *trace);

/* Coordinate descent on tr((W - Q) H (W - Q)^T) from a given on-grid result:
 * start's grids (scales, zeros, consecutive groups) are kept, Q starts at its
 * dequantized values and every sweep rounds, so the objective never rises
 * above the start's (up to float rounding). from_w: Q starts at W instead and
 * the sweeps follow QuantEase's relax schedule (QuantEase on start's grids).
 * *out is a new result. */
int qerr__quantease_refine(const qerr_ctx *ctx, const float *W, int64_t rows, int64_t cols,
                           const double *H, int64_t nsamples, const qerr_result *start,
                           int64_t iters, bool from_w, qerr_result **out);

#endif /* QERR_QUANTEASE_H */
