/* Layer errors of llama.cpp's block types on a real model: libqerr's "ggml"
 * method (full H) against ggml's own quantizer with an imatrix (diag of the
 * same H, as llama-imatrix makes it), on every linear layer, each with the H
 * of its inputs on the float model:
 *   bench_ggml_quant DATA_DIR MODEL 'TYPE,TYPE,...' ['SOLVER_KEYS;...'] [nwin]
 * e.g. bench_ggml_quant ../shared/data tiny-llama q4_k,q3_k 'solver=rtn;solver=gptq' 64
 * ggml is dlopen'ed from $QERR_GGML_LIB (a libggml-base.so, e.g. the one
 * npm's node-llama-cpp ships); without it only libqerr's rows are printed.
 * Reported: mean over layers of tr(E H E^T) / tr(W H W^T), the ratio of
 * ggml's to each plan's, and the quantize seconds summed over layers: CPU
 * seconds of the one thread both quantizers run on (libqerr with threads=1;
 * run with OPENBLAS_NUM_THREADS=1), so other load on the machine does not
 * count. */
#include "io/ggml_blocks.h"
#include "llama/model.h"
#include "methods/method.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef size_t (*quantize_chunk_fn)(int type, const float *src, void *dst, int64_t start,
                                    int64_t nrows, int64_t n_per_row, const float *imatrix);

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int die(const char *what) {
    fprintf(stderr, "%s: %s\n", what, qerr_last_error());
    return 1;
}

typedef struct {
    qerr_calib *c[QERR_LIN_COUNT];
} taps;

static int tap(void *user, int lin, const float *rows, int64_t nrows, int64_t cols) {
    (void)cols;
    return qerr_calib_add_f32(((taps *)user)->c[lin], rows, nrows);
}

#define MAXPLANS 8
#define MAXTYPES 12

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s DATA_DIR MODEL 'TYPE,...' ['KEYS;KEYS;...'] [nwin]\n", argv[0]);
        return 2;
    }
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/%s", argv[1], argv[2]);
    const char *keys_arg = argc > 4 ? argv[4] : "solver=rtn;solver=gptq;solver=quantease";
    const int64_t nwin = argc > 5 ? atoll(argv[5]) : 64, T = 256;
    quantize_chunk_fn qchunk = NULL;
    const char *lib = getenv("QERR_GGML_LIB");
    void *h = lib && *lib ? dlopen(lib, RTLD_NOW | RTLD_LOCAL) : NULL;
    if (h) qchunk = (quantize_chunk_fn)dlsym(h, "ggml_quantize_chunk");
    if (!qchunk) fprintf(stderr, "no ggml quantizer (set QERR_GGML_LIB): libqerr rows only\n");

    int types[MAXTYPES], ntypes = 0;
    char *tl = strdup(argv[3]), *sv = NULL;
    for (char *t = strtok_r(tl, ",", &sv); t && ntypes < MAXTYPES; t = strtok_r(NULL, ",", &sv)) {
        types[ntypes] = qerr__ggml_type_from_name(t);
        if (types[ntypes] < 0) return fprintf(stderr, "unknown type %s\n", t), 2;
        ntypes++;
    }
    char *plans[MAXPLANS];
    int nplans = 0;
    char *kl = strdup(keys_arg);
    for (char *k = strtok_r(kl, ";", &sv); k && nplans < MAXPLANS; k = strtok_r(NULL, ";", &sv))
        plans[nplans++] = k;

    qerr_ctx *ctx;
    if (qerr_ctx_create(&ctx) != QERR_OK || qerr_ctx_set_threads(ctx, 1) != QERR_OK)
        return die("ctx");
    qerr_model *m;
    if (qerr_model_load(&m, dir) != QERR_OK) return die(dir);
    uint32_t *cal;
    int64_t ncal;
    snprintf(path, sizeof path, "%s/calib.u32", dir);
    if (qerr_tokens_read(path, &cal, &ncal) != QERR_OK) return die(path);
    const int64_t rows_x = nwin * T, d = m->cfg.hidden;
    if (ncal < rows_x) return fprintf(stderr, "need %lld calibration tokens\n", (long long)rows_x), 1;
    float *X = malloc(sizeof(float) * (size_t)(rows_x * d));
    if (qerr__embed(m, cal, rows_x, X) != QERR_OK) return die("embed");

    double err_ggml[MAXTYPES] = {0}, t_ggml[MAXTYPES] = {0};
    double err_q[MAXTYPES][MAXPLANS] = {{0}}, t_q[MAXTYPES][MAXPLANS] = {{0}};
    int nlayers = 0;
    for (int64_t l = 0; l < m->cfg.layers; l++) {
        qerr_layer_weights w;
        qerr__model_layer(m, l, &w);
        taps tp = {{0}};
        const float *W[QERR_LIN_COUNT] = {w.q, w.k, w.v, w.o, w.gate, w.up, w.down};
        int64_t out[QERR_LIN_COUNT], in[QERR_LIN_COUNT];
        for (int lin = 0; lin < QERR_LIN_COUNT; lin++) {
            const qerr_tensor *t;
            char name[160];
            snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)l,
                     qerr__lin_names[lin]);
            if (qerr_model_tensor(m, name, &t) != QERR_OK) return die(name);
            out[lin] = qerr_tensor_dim(t, 0);
            in[lin] = qerr_tensor_dim(t, 1);
            qerr_calib_create(&tp.c[lin], in[lin]);
        }
        if (qerr__layer_forward(NULL, &m->cfg, &w, X, nwin, T, tap, &tp, -1) != QERR_OK)
            return die("forward");
        static const int src[QERR_LIN_COUNT] = {QERR_LIN_Q, QERR_LIN_Q, QERR_LIN_Q, QERR_LIN_O,
                                                QERR_LIN_GATE, QERR_LIN_GATE, QERR_LIN_DOWN};
        for (int lin = 0; lin < QERR_LIN_COUNT; lin++) {
            const int64_t r = out[lin], n = in[lin];
            const qerr_calib *c = tp.c[src[lin]];
            double *H = malloc(sizeof(double) * (size_t)(n * n));
            float *imat = malloc(sizeof(float) * (size_t)n), *Q = malloc(sizeof(float) * (size_t)(r * n));
            qerr_calib_gram(c, H, n);
            for (int64_t j = 0; j < n; j++) imat[j] = (float)(H[j * n + j] / (double)qerr_calib_nsamples(c));
            int64_t shape[2] = {r, n};
            qerr_tensor *wt;
            qerr_tensor_wrap(&wt, QERR_DTYPE_F32, 2, shape, (void *)W[lin]);
            for (int ti = 0; ti < ntypes; ti++) {
                double e, ref;
                if (qchunk) {
                    size_t rb = qerr__ggml_row_bytes(types[ti], n);
                    uint8_t *buf = malloc(rb * (size_t)r);
                    double t0 = now();
                    qchunk(types[ti], W[lin], buf, 0, r, n, imat);
                    t_ggml[ti] += now() - t0;
                    for (int64_t i = 0; i < r; i++)
                        qerr__ggml_dequantize_row(types[ti], buf + (size_t)i * rb, n, Q + i * n);
                    qerr__layer_objective(W[lin], Q, r, n, H, &e, &ref);
                    err_ggml[ti] += e / ref;
                    free(buf);
                }
                for (int p = 0; p < nplans; p++) {
                    char spec[256], lower[8];
                    const char *tn = qerr__ggml_type_name(types[ti]);
                    for (int k = 0; k < 5; k++) lower[k] = (char)(tn[k] >= 'A' && tn[k] <= 'Z' ? tn[k] + 32 : tn[k]);
                    snprintf(spec, sizeof spec, "ggml:type=%s,%s", lower, plans[p]);
                    qerr_plan *pl;
                    qerr_result *res;
                    if (qerr_plan_parse(&pl, spec) != QERR_OK) return die(spec);
                    double t0 = now();
                    if (qerr_quantize(ctx, pl, wt, c, &res) != QERR_OK) return die(spec);
                    t_q[ti][p] += now() - t0;
                    qerr_result_dequantize(res, Q, (size_t)(r * n));
                    qerr__layer_objective(W[lin], Q, r, n, H, &e, &ref);
                    err_q[ti][p] += e / ref;
                    qerr_result_free(res);
                    qerr_plan_free(pl);
                }
            }
            qerr_tensor_free(wt);
            free(H);
            free(imat);
            free(Q);
            nlayers++;
        }
        for (int lin = 0; lin < QERR_LIN_COUNT; lin++) qerr_calib_free(tp.c[lin]);
        fprintf(stderr, "layer %lld done\n", (long long)l);
    }
    printf("%d linear layers, %lld calibration rows\n\n", nlayers, (long long)rows_x);
    printf("| type | quantizer | mean rel. layer error | ggml / this | CPU seconds |\n|---|---|---|---|---|\n");
    for (int ti = 0; ti < ntypes; ti++) {
        const char *tn = qerr__ggml_type_name(types[ti]);
        if (qchunk)
            printf("| %s | ggml imatrix | %.6f | 1.00 | %.2f |\n", tn, err_ggml[ti] / nlayers,
                   t_ggml[ti]);
        for (int p = 0; p < nplans; p++)
            printf("| %s | libqerr `%s` | %.6f | %s%.2f | %.2f |\n", tn, plans[p],
                   err_q[ti][p] / nlayers, qchunk ? "" : "- ",
                   qchunk ? err_ggml[ti] / err_q[ti][p] : 0.0, t_q[ti][p]);
    }
    free(X);
    qerr_free(cal);
    qerr_model_free(m);
    qerr_ctx_free(ctx);
    free(tl);
    free(kl);
    if (h) dlclose(h);
    return 0;
}
