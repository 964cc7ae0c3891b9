/* Perplexity of block-wise OmniQuant / LSI / SDE / cross-layer learning,
 * with the blocks run in sequence by this program on the first calibration
 * tokens (the same trainer as `qerr compare` with scope=block plans, which
 * runs them through qerr_model_quantize instead):
 *   bench_blockwise DATA_DIR MODEL BITS GROUP CONFIGS [epochs] [nseq] [lr_d] [max_windows]
 *                   [a_bits]
 * CONFIGS is a comma list of rtn, omni, lsi, sde_band, sde_blk, cl, sde_cl,
 * sde_cl2, lwc (sde_* = diag+block:64 mask, band:2 for sde_band; cl = lookahead 1,
 * cl2 = lookahead 2, lambda 1). max_windows limits the eval windows (0 = all).
 * The calibration pipeline follows algorithms.md §0.4 for OmniQuant: block l
 * trains on the quantized-path inputs X_q against the float block on X_fp;
 * then X_q <- quantized block (X_q) and X_fp <- float block (X_fp). Every linear is stored as plain
 * codes / scales / zeros and dequantized; the perplexity on MODEL/eval.u32
 * at ctx 256 runs the dequantized blocks through the block engine.
 *
 * With a_bits < 16 (weight-activation, e.g. W4A4) every configuration runs
 * through the library instead: qerr_model_quantize with the matching
 * omniquant/cqe scope=block plan (a_bits, LET on except for rtn), then
 * qerr_model_apply and qerr_model_perplexity, so the evaluation is the
 * deployed runtime (folded norms, per-token activation quantization). The
 * calibration windows are then the pipeline's seeded draws (ctx seed 2). */
#include "qerr.h"
#include "methods/omniquant/omniquant_block.h"
#include "methods/omniquant/cqe_layer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define CTX 256
#define CHUNK 4

static int die(const char *what) {
    fprintf(stderr, "%s: %s\n", what, qerr_last_error());
    exit(1);
}

typedef struct {
    float *w[QERR_LIN_COUNT];
    qerr_block_weights_f bw;
} qblock;

static double perplexity(const qerr_model *m, const qerr_block_config *cfg, const qblock *qb,
                         const uint32_t *tok, int64_t ntok) {
    const int64_t nwin = ntok / CTX, d = cfg->hidden, V = m->cfg.vocab;
    qerr_block_cache_f *c;
    if (qerr__block_cache_create_f(cfg, CHUNK, CTX, &c)) die("cache");
    float *X = malloc(sizeof(float) * (size_t)(CHUNK * CTX * d));
    float *Y = malloc(sizeof(float) * (size_t)(CHUNK * CTX * d));
    float *logits = malloc(sizeof(float) * (size_t)(CHUNK * CTX * V));
    double nll = 0;
    int64_t scored = 0;
    for (int64_t w0 = 0; w0 + CHUNK <= nwin; w0 += CHUNK) {
        if (qerr__embed(m, tok + w0 * CTX, CHUNK * CTX, X)) die("embed");
        for (int64_t l = 0; l < m->cfg.layers; l++) {
            if (qerr__block_forward_f(c, &qb[l].bw, NULL, X, Y)) die("forward");
            float *t = X;
            X = Y;
            Y = t;
        }
        if (qerr__head(m, X, CHUNK * CTX, logits)) die("head");
        for (int64_t wi = 0; wi < CHUNK; wi++)
            for (int64_t t = 0; t + 1 < CTX; t++) {
                const float *z = logits + (wi * CTX + t) * V;
                double mx = z[0], s = 0;
                for (int64_t v = 1; v < V; v++) mx = fmax(mx, z[v]);
                for (int64_t v = 0; v < V; v++) s += exp((double)z[v] - mx);
                nll += log(s) + mx - (double)z[tok[(w0 + wi) * CTX + t + 1]];
                scored++;
            }
    }
    qerr__block_cache_free_f(c);
    free(X);
    free(Y);
    free(logits);
    return exp(nll / (double)scored);
}

/* The plan of a configuration for the library path (a_bits < 16). rtn: no
 * training, no LET, clip_init 20 (the plan's maximum: sigmoid(20) = 1 - 2e-9,
 * i.e. min-max). */
static void config_spec(const char *name, int bits, int64_t group, int a_bits, int epochs,
                        double lr_d, char *spec, size_t cap) {
    static const struct {
        const char *name, *plan;
    } table[] = {
        {"rtn", "omniquant:let=0,epochs=0,clip_init=20"},
        {"omni", "omniquant:"},
        {"lwc", "omniquant:let=0"}, /* LWC alone + A4: the LET ablation */
        {"lsi", "cqe:mask=diag"},
        {"sde_band", "cqe:mask=band"},
        {"sde_blk", "cqe:mask=diag+block"},
        {"cl", "omniquant:cross_layer=1,lookahead=1"},
        {"sde_cl", "cqe:mask=diag+block,cross_layer=1,lookahead=1"},
        {"sde_cl2", "cqe:mask=diag+block,cross_layer=1,lookahead=2"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(name, table[i].name) != 0) continue;
        const char *p = table[i].plan;
        const bool cqe = strncmp(p, "cqe:", 4) == 0;
        const char *rest = strchr(p, ':') + 1;
        char ep[32] = "";
        if (!strstr(rest, "epochs=")) snprintf(ep, sizeof ep, ",epochs=%d", epochs);
        char lr[48] = "";
        if (cqe) snprintf(lr, sizeof lr, ",lr=%g", lr_d);
        snprintf(spec, cap, "%s:scope=block,bits=%d,group_size=%lld,a_bits=%d%s%s%s%s",
                 cqe ? "cqe" : "omniquant", bits, (long long)group, a_bits, *rest ? "," : "",
                 rest, ep, lr);
        return;
    }
    fprintf(stderr, "unknown config %s\n", name);
    exit(2);
}

/* Weight-activation runs through qerr_model_quantize / apply / perplexity. */
static void run_wa(const char *data, const char *model, const qerr_model *m, const char *list_in,
                   int bits, int64_t group, int a_bits, int epochs, int64_t nseq, double lr_d,
                   const uint32_t *calib, int64_t ncal, const uint32_t *eval, int64_t neval) {
    const int64_t nwin = neval / CTX;
    double fp;
    if (qerr_model_perplexity(NULL, m, eval, neval, CTX, nwin, &fp, NULL, NULL)) die("ppl");
    printf("%s eval.u32 ctx %d, %lld windows: float ppl %.4f; W%dg%lldA%d, %d epochs x %lld "
           "seqs of %d (library pipeline, seeded windows), lr_d %g\n",
           model, CTX, (long long)nwin, fp, bits, (long long)group, a_bits, epochs,
           (long long)nseq, CTX, lr_d);
    fflush(stdout);
    qerr_ctx *ctx;
    if (qerr_ctx_create(&ctx) || qerr_ctx_set_seed(ctx, 2)) die("ctx");
    char *list = strdup(list_in), spec[512], path[1024];
    for (char *name = strtok(list, ","); name; name = strtok(NULL, ",")) {
        config_spec(name, bits, group, a_bits, epochs, lr_d, spec, sizeof spec);
        double t0 = now();
        qerr_qmodel *q;
        if (qerr_model_quantize(ctx, m, spec, NULL, calib, ncal, nseq, CTX, &q)) die(spec);
        double secs = now() - t0, sum_i = 0, sum_f = 0, sum_n = 0;
        for (int64_t l = 0; l < m->cfg.layers; l++) {
            char tn[160];
            const qerr_result *r;
            double bi = NAN, bf = NAN, nf = NAN;
            snprintf(tn, sizeof tn, "model.layers.%lld.self_attn.q_proj.weight", (long long)l);
            if (qerr_qmodel_get(q, tn, &r) == QERR_OK) {
                qerr_result_diag(r, "block_mse_init", &bi);
                qerr_result_diag(r, "block_mse_final", &bf);
                qerr_result_diag(r, "next_mse_final", &nf);
            }
            printf("  %-8s block %lld: mse %.4g -> %.4g, next-block mse %.4g\n", name,
                   (long long)l, bi, bf, nf);
            sum_i += bi;
            sum_f += bf;
            if (isfinite(nf)) sum_n += nf;
        }
        qerr_model *mq;
        snprintf(path, sizeof path, "%s/%s", data, model);
        if (qerr_model_load(&mq, path) || qerr_model_apply(mq, q)) die("apply");
        double ppl;
        if (qerr_model_perplexity(NULL, mq, eval, neval, CTX, nwin, &ppl, NULL, NULL)) die("ppl");
        printf("RESULT %s W%dg%lldA%d: ppl %.4f (float %.4f, +%.4f), sum block mse %.4g -> %.4g, "
               "sum next-block mse %.4g, %.0f s [%s]\n",
               name, bits, (long long)group, a_bits, ppl, fp, ppl - fp, sum_i, sum_f, sum_n,
               secs, spec);
        fflush(stdout);
        qerr_model_free(mq);
        qerr_qmodel_free(q);
    }
    free(list);
    qerr_ctx_free(ctx);
}

static void config_opts(const char *name, qerr_omq_opts *o) {
    o->mask = QERR_CQE_MASK_NONE;
    o->lookahead = 0;
    if (strcmp(name, "rtn") == 0) {
        o->epochs = 0;
        o->clip_init = 40; /* sigmoid(40) = 1: plain min-max */
    } else if (strcmp(name, "lsi") == 0) {
        o->mask = QERR_CQE_MASK_DIAG;
    } else if (strcmp(name, "sde_band") == 0) {
        o->mask = QERR_CQE_MASK_BAND;
        o->lsi_vector = false;
    } else if (strcmp(name, "sde_blk") == 0) {
        o->mask = QERR_CQE_MASK_DIAG_BLOCK;
    } else if (strcmp(name, "cl") == 0) {
        o->lookahead = 1;
    } else if (strcmp(name, "sde_cl") == 0) {
        o->mask = QERR_CQE_MASK_DIAG_BLOCK;
        o->lookahead = 1;
    } else if (strcmp(name, "sde_cl2") == 0) {
        o->mask = QERR_CQE_MASK_DIAG_BLOCK;
        o->lookahead = 2;
    } else if (strcmp(name, "omni") != 0 && strcmp(name, "lwc") != 0) {
        fprintf(stderr, "unknown config %s\n", name);
        exit(2);
    }
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s DATA_DIR MODEL BITS GROUP CONFIGS [epochs] [nseq] [lr_d] "
                "[max_windows] [a_bits]\n",
                argv[0]);
        return 2;
    }
    const int bits = atoi(argv[3]);
    const int64_t group = atoll(argv[4]);
    const int epochs = argc > 6 ? atoi(argv[6]) : 10;
    const int64_t nseq = argc > 7 ? atoll(argv[7]) : 16;
    const double lr_d = argc > 8 ? atof(argv[8]) : 2e-4;
    const int64_t max_windows = argc > 9 ? atoll(argv[9]) : 0;
    const int a_bits = argc > 10 ? atoi(argv[10]) : 16;
    char path[1024];
    qerr_model *m;
    snprintf(path, sizeof path, "%s/%s", argv[1], argv[2]);
    if (qerr_model_load(&m, path)) die("load");
    uint32_t *calib, *eval;
    int64_t ncal, neval;
    snprintf(path, sizeof path, "%s/%s/calib.u32", argv[1], argv[2]);
    if (qerr_tokens_read(path, &calib, &ncal)) die("calib");
    snprintf(path, sizeof path, "%s/%s/eval.u32", argv[1], argv[2]);
    if (qerr_tokens_read(path, &eval, &neval)) die("eval");
    if (max_windows > 0 && neval > max_windows * CTX) neval = max_windows * CTX;
    if (ncal < nseq * CTX) die("not enough calibration tokens");
    if (a_bits < 16) {
        run_wa(argv[1], argv[2], m, argv[5], bits, group, a_bits, epochs, nseq, lr_d, calib, ncal,
               eval, neval);
        qerr_free(calib);
        qerr_free(eval);
        qerr_model_free(m);
        return 0;
    }
    qerr_block_config cfg;
    qerr__block_config_from_model(&m->cfg, &cfg);
    const int64_t L = m->cfg.layers, rows = nseq * CTX, d = cfg.hidden;
    qerr_block_weights_f *fw = calloc((size_t)L, sizeof *fw);
    qblock *qb = calloc((size_t)L, sizeof *qb);
    for (int64_t l = 0; l < L; l++) {
        qerr_layer_weights lw;
        qerr__model_layer(m, l, &lw);
        qerr__block_weights_from_layer(&lw, &fw[l]);
        qb[l].bw = fw[l];
    }
    double fp = perplexity(m, &cfg, qb, eval, neval);
    printf("%s eval.u32 ctx %d, %lld windows: float ppl %.4f; W%dg%lld, %d epochs x %lld seqs "
           "of %d, lr_d %g\n",
           argv[2], CTX, (long long)(neval / CTX), fp, bits, (long long)group, epochs,
           (long long)nseq, CTX, lr_d);
    fflush(stdout);
    float *xq = malloc(sizeof(float) * (size_t)(rows * d));
    float *xf = malloc(sizeof(float) * (size_t)(rows * d));
    float *y = malloc(sizeof(float) * (size_t)(rows * d));
    char *list = strdup(argv[5]);
    for (char *name = strtok(list, ","); name; name = strtok(NULL, ",")) {
        qerr_omq_opts o;
        qerr__omq_opts_default(&o);
        o.w_bits = bits;
        o.w_group = group;
        o.epochs = epochs;
        o.batch = 1;
        o.lr_d = lr_d;
        o.seed = 2;
        config_opts(name, &o);
        if (qerr__embed(m, calib, rows, xq)) die("embed");
        memcpy(xf, xq, sizeof(float) * (size_t)(rows * d));
        double t0 = now(), sum_blk = 0, sum_next = 0;
        for (int64_t l = 0; l < L; l++) {
            qerr_omq_io io = {xq, xf, nseq, CTX, l, L,
                              {l + 1 < L ? &fw[l + 1] : NULL, l + 2 < L ? &fw[l + 2] : NULL}};
            qerr_omq_block *b;
            if (qerr__omq_train_block(NULL, &cfg, &fw[l], &io, &o, &b)) die("train");
            for (int k = 0; k < QERR_LIN_COUNT; k++) {
                qerr_result *r;
                if (qerr__omq_encode(b, k, &r)) die("encode");
                int64_t n = b->m[k] * b->n[k];
                free(qb[l].w[k]);
                qb[l].w[k] = malloc(sizeof(float) * (size_t)n);
                if (qerr_result_dequantize(r, qb[l].w[k], (size_t)n)) die("dequantize");
                qb[l].bw.w[k] = qb[l].w[k];
                qerr_result_free(r);
            }
            printf("  %-8s block %lld: mse %.4g -> %.4g, next-block mse %.4g -> %.4g (%.1f s)\n",
                   name, (long long)l, b->mse_init, b->mse_final, b->next_init, b->next_final,
                   b->seconds);
            fflush(stdout);
            sum_blk += b->mse_final;
            if (isfinite(b->next_final)) sum_next += b->next_final;
            qerr__omq_block_destroy(b);
            /* next inputs: quantized path and float path */
            qerr_block_cache_f *c;
            if (qerr__block_cache_create_f(&cfg, 1, CTX, &c)) die("cache");
            for (int64_t s = 0; s < nseq; s++) {
                int64_t off = s * CTX * d;
                if (qerr__block_forward_f(c, &qb[l].bw, NULL, xq + off, y + off)) die("fwd");
            }
            memcpy(xq, y, sizeof(float) * (size_t)(rows * d));
            for (int64_t s = 0; s < nseq; s++) {
                int64_t off = s * CTX * d;
                if (qerr__block_forward_f(c, &fw[l], NULL, xf + off, y + off)) die("fwd");
            }
            memcpy(xf, y, sizeof(float) * (size_t)(rows * d));
            qerr__block_cache_free_f(c);
        }
        double secs = now() - t0;
        double ppl = perplexity(m, &cfg, qb, eval, neval);
        printf("RESULT %s W%dg%lld: ppl %.4f (float %.4f, +%.4f), sum block mse %.4g, sum "
               "next-block mse %.4g, %.0f s\n",
               name, bits, (long long)group, ppl, fp, ppl - fp, sum_blk, sum_next, secs);
        fflush(stdout);
    }
    free(list);
    for (int64_t l = 0; l < L; l++)
        for (int k = 0; k < QERR_LIN_COUNT; k++) free(qb[l].w[k]);
    free(qb);
    free(fw);
    free(xq);
    free(xf);
    free(y);
    qerr_free(calib);
    qerr_free(eval);
    qerr_model_free(m);
    return 0;
}
