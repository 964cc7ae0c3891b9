/* Layer errors (and optionally perplexity) of layer-wise methods on a real
 * model, through qerr_model_quantize (true-sequential pipeline):
 *   bench_cqe_layers DATA_DIR MODEL 'SPEC;SPEC;...' [nsamples] [ppl 0|1] [max_windows]
 * For each plan: the mean relative layer error tr(E H E^T)/tr(W H W^T) over
 * every quantized linear (each measured on its own calibration H), the mean
 * per projection kind, for learned methods the mean objective before
 * training (RTN with the initial clipping), the quantize seconds, and with ppl=1 the perplexity
 * on MODEL/eval.u32 at ctx 256 (at most max_windows windows, 0 = all). */
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

static const char *const kinds[] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                    "gate_proj", "up_proj", "down_proj"};
#define NKINDS 7

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s DATA_DIR MODEL 'SPEC;SPEC;...' [nsamples] [ppl 0|1] [max_windows]\n",
                argv[0]);
        return 2;
    }
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/%s", argv[1], argv[2]);
    int64_t nsamples = argc > 4 ? atoll(argv[4]) : 128;
    int want_ppl = argc > 5 ? atoi(argv[5]) : 0;
    int64_t maxw = argc > 6 ? atoll(argv[6]) : 0;
    qerr_model *m;
    if (qerr_model_load(&m, dir) != QERR_OK) return die(dir);
    uint32_t *cal, *ev = NULL;
    int64_t ncal, nev = 0;
    snprintf(path, sizeof path, "%s/calib.u32", dir);
    if (qerr_tokens_read(path, &cal, &ncal) != QERR_OK) return die(path);
    snprintf(path, sizeof path, "%s/eval.u32", dir);
    if (want_ppl && qerr_tokens_read(path, &ev, &nev) != QERR_OK) return die(path);
    if (want_ppl) {
        double ppl;
        if (qerr_model_perplexity(NULL, m, ev, nev, 256, maxw, &ppl, NULL, NULL) != QERR_OK)
            return die("perplexity");
        printf("float perplexity %.4f (max_windows %lld)\n", ppl, (long long)maxw);
    }
    printf("| plan | mean layer error |");
    for (int k = 0; k < NKINDS; k++) printf(" %s |", kinds[k]);
    printf(" start (RTN-clip) | seconds |%s\n", want_ppl ? " ppl |" : "");
    printf("|---|---|");
    for (int k = 0; k < NKINDS; k++) printf("---|");
    printf("---|---|%s\n", want_ppl ? "---|" : "");
    char *plans = strdup(argv[3]), *save = NULL;
    for (char *spec = strtok_r(plans, ";", &save); spec; spec = strtok_r(NULL, ";", &save)) {
        qerr_qmodel *q;
        double t0 = now();
        if (qerr_model_quantize(NULL, m, spec, "lm_head=float", cal, ncal, nsamples, 256, &q) !=
            QERR_OK)
            return die(spec);
        double secs = now() - t0, sum = 0, ks[NKINDS] = {0}, start = 0;
        int cnt = 0, kc[NKINDS] = {0}, nstart = 0;
        for (int i = 0; i < qerr_qmodel_count(q); i++) {
            const char *name = qerr_qmodel_name(q, i);
            const qerr_result *r;
            double e;
            if (qerr_qmodel_get(q, name, &r) != QERR_OK ||
                qerr_result_diag(r, "layer_error", &e) != QERR_OK)
                continue;
            sum += e;
            cnt++;
            double st; /* learned methods: the objective before training */
            if (qerr_result_diag(r, "train_start", &st) == QERR_OK) {
                start += st;
                nstart++;
            }
            for (int k = 0; k < NKINDS; k++)
                if (strstr(name, kinds[k])) {
                    ks[k] += e;
                    kc[k]++;
                }
        }
        printf("| `%s` | %.5f |", spec, cnt ? sum / cnt : 0);
        for (int k = 0; k < NKINDS; k++) printf(" %.5f |", kc[k] ? ks[k] / kc[k] : 0);
        if (nstart) printf(" %.5f |", start / nstart);
        else printf(" - |");
        printf(" %.1f |", secs);
        if (want_ppl) {
            qerr_model *mq;
            double ppl;
            if (qerr_model_load(&mq, dir) != QERR_OK || qerr_model_apply(mq, q) != QERR_OK ||
                qerr_model_perplexity(NULL, mq, ev, nev, 256, maxw, &ppl, NULL, NULL) != QERR_OK)
                return die("quantized perplexity");
            printf(" %.4f |", ppl);
            qerr_model_free(mq);
        }
        printf("\n");
        fflush(stdout);
        qerr_qmodel_free(q);
    }
    free(plans);
    qerr_free(cal);
    if (ev) qerr_free(ev);
    qerr_model_free(m);
    return 0;
}
