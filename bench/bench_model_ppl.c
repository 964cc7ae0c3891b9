/* Perplexity of the real models in ../shared/data: the float figures of its
 * README, then tiny-llama quantized with RTN and GPTQ (true-sequential
 * pipeline, calib.u32, 128 x 256 tokens) at W4g128, W3g128 and W2g64.
 *   bench_model_ppl [DATA_DIR] [float|quant|all] [model file suffix]
 * Prints one line per measurement with the seconds it took. */
#include "qerr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int die(const char *what) {
    fprintf(stderr, "%s: %s\n", what, qerr_last_error());
    return 1;
}

static int load_tokens(const char *dir, const char *file, uint32_t **tok, int64_t *n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    return qerr_tokens_read(path, tok, n);
}

static int float_rows(const char *data) {
    static const struct { const char *model, *tokens; int64_t ctx; double readme; } rows[] = {
        {"tiny-llama", "tiny-llama/eval.u32", 128, 3.916828},
        {"tiny-llama", "tiny-llama/eval.u32", 256, 3.861770},
        {"tiny-llama", "tiny-llama/wikitext2.u32", 256, 9.920574},
        {"tinystories-656k", "tinystories-656k/eval.u32", 128, 47.220377},
        {"tinystories-656k", "tinystories-656k/eval.u32", 256, 41.774039},
        {"tinystories-656k", "tinystories-656k/eval.u32", 512, 40.382585},
        {"stories260k", "stories260k/eval.u32", 128, 5.873547},
        {"stories260k", "stories260k/eval.u32", 256, 5.606313},
        {"stories260k", "stories260k/eval.u32", 512, 5.445771},
    };
    printf("| model | tokens | ctx | ppl (libqerr) | ppl (README) | rel. diff | seconds |\n");
    printf("|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", data, rows[i].model);
        qerr_model *m;
        if (qerr_model_load(&m, path) != QERR_OK) return die(path);
        uint32_t *tok;
        int64_t n;
        if (load_tokens(data, rows[i].tokens, &tok, &n) != QERR_OK) return die(rows[i].tokens);
        double t0 = now(), ppl;
        if (qerr_model_perplexity(NULL, m, tok, n, rows[i].ctx, 0, &ppl, NULL, NULL) != QERR_OK)
            return die("perplexity");
        printf("| %s | %s | %lld | %.6f | %.6f | %.1e | %.2f |\n", rows[i].model, rows[i].tokens,
               (long long)rows[i].ctx, ppl, rows[i].readme, ppl / rows[i].readme - 1.0,
               now() - t0);
        fflush(stdout);
        qerr_free(tok);
        qerr_model_free(m);
    }
    return 0;
}

static int quant_rows(const char *data, const char *weights) {
    static const char *const configs[][2] = {
        {"W4g128", "bits=4,group_size=128"},
        {"W3g128", "bits=3,group_size=128"},
        {"W2g64", "bits=2,group_size=64"},
    };
    static const char *const methods[] = {"rtn", "gptq"};
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tiny-llama", data);
    uint32_t *calib, *eval;
    int64_t nc, ne;
    if (load_tokens(data, "tiny-llama/calib.u32", &calib, &nc) != QERR_OK) return die("calib");
    if (load_tokens(data, "tiny-llama/eval.u32", &eval, &ne) != QERR_OK) return die("eval");
    qerr_model *m;
    if (qerr_model_load(&m, dir) != QERR_OK) return die(dir);
    double fppl;
    if (qerr_model_perplexity(NULL, m, eval, ne, 256, 0, &fppl, NULL, NULL) != QERR_OK)
        return die("perplexity");
    qerr_model_free(m);
    printf("tiny-llama (%s), eval.u32 ctx 256, float ppl %.6f\n", weights, fppl);
    printf("| config | method | ppl | ppl - float | quantize s | ppl s |\n|---|---|---|---|---|---|\n");
    qerr_ctx *ctx;
    qerr_ctx_create(&ctx);
    qerr_ctx_set_seed(ctx, 0);
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        for (size_t k = 0; k < sizeof methods / sizeof methods[0]; k++) {
            char spec[256];
            snprintf(spec, sizeof spec, "%s:%s", methods[k], configs[c][1]);
            if (qerr_model_load(&m, dir) != QERR_OK) return die(dir);
            qerr_qmodel *q;
            double t0 = now();
            if (qerr_model_quantize(ctx, m, spec, NULL, calib, nc, 128, 256, &q) != QERR_OK)
                return die(spec);
            double tq = now() - t0;
            if (qerr_model_apply(m, q) != QERR_OK) return die("apply");
            double ppl;
            t0 = now();
            if (qerr_model_perplexity(NULL, m, eval, ne, 256, 0, &ppl, NULL, NULL) != QERR_OK)
                return die("perplexity");
            printf("| %s | %s | %.4f | %+.4f | %.2f | %.2f |\n", configs[c][0], methods[k], ppl,
                   ppl - fppl, tq, now() - t0);
            fflush(stdout);
            qerr_qmodel_free(q);
            qerr_model_free(m);
        }
    }
    qerr_ctx_free(ctx);
    qerr_free(calib);
    qerr_free(eval);
    return 0;
}

int main(int argc, char **argv) {
    const char *data = argc > 1 ? argv[1] : "../shared/data";
    const char *what = argc > 2 ? argv[2] : "all";
    if (strcmp(what, "float") == 0 || strcmp(what, "all") == 0)
        if (float_rows(data)) return 1;
    if (strcmp(what, "quant") == 0 || strcmp(what, "all") == 0)
        if (quant_rows(data, "model.safetensors")) return 1;
    return 0;
}
