/* Tokenizer speed, one thread: MB/s of encoding WikiText-2 (test split, raw,
 * 1.29 MB) in one call, best of REPS, with the tokenizers of ../shared/data,
 * and whether the ids equal the golden ids of Hugging Face's tokenizers.js.
 *   bench_tokenizer [DATA_DIR] [REPS]
 * Prints a Markdown table. */
#include "qerr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* per-thread CPU time: the machine is shared */
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)len + 1);
    if (s && fread(s, 1, (size_t)len, f) != (size_t)len) {
        free(s);
        s = NULL;
    }
    fclose(f);
    *n = (size_t)len;
    return s;
}

int main(int argc, char **argv) {
    const char *data = argc > 1 ? argv[1] : "../shared/data";
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    static const struct { const char *name, *path, *golden, *kind; } rows[] = {
        {"LLaMA-2", "tokenizers/llama2", "tokenizers/llama2/wikitext-2-raw-test.u32",
         "SentencePiece BPE"},
        {"tinystories-656k", "tinystories-656k", "tinystories-656k/wikitext-2-raw-test.hf.u32",
         "SentencePiece BPE"},
        {"Llama-3", "tokenizers/llama3", "tokenizers/llama3/wikitext-2-raw-test.u32",
         "byte-level BPE"},
        {"Qwen3", "tokenizers/qwen3", "tokenizers/qwen3/wikitext-2-raw-test.u32",
         "byte-level BPE (NFC)"},
        {"stories260k", "stories260k/tok512.bin", NULL, "llama2.c"},
    };
    char path[1024];
    snprintf(path, sizeof path, "%s/text/wikitext-2-raw-test.txt", data);
    size_t n;
    char *text = slurp(path, &n);
    if (!text) {
        fprintf(stderr, "cannot read %s\n", path);
        return 1;
    }
    printf("| tokenizer | kind | load s | ids | golden ids | MB/s (1 thread) | decode MB/s |\n");
    printf("|---|---|---|---|---|---|---|\n");
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        snprintf(path, sizeof path, "%s/%s", data, rows[r].path);
        qerr_tokenizer *t;
        double t0 = now();
        if (qerr_tokenizer_load(&t, path) != QERR_OK) {
            fprintf(stderr, "%s: %s\n", path, qerr_last_error());
            return 1;
        }
        double load = now() - t0, best = 1e30, best_dec = 1e30;
        uint32_t *ids = NULL;
        int64_t count = 0;
        for (int k = 0; k < reps; k++) {
            qerr_free(ids);
            t0 = now();
            if (qerr_tokenizer_encode(t, text, n, QERR_TOKENIZE_PARSE_SPECIAL, &ids, &count) !=
                QERR_OK) {
                fprintf(stderr, "encode: %s\n", qerr_last_error());
                return 1;
            }
            double dt = now() - t0;
            if (dt < best) best = dt;
            char *back;
            t0 = now();
            if (qerr_tokenizer_decode(t, ids, count, 0, &back, NULL) != QERR_OK) {
                fprintf(stderr, "decode: %s\n", qerr_last_error());
                return 1;
            }
            dt = now() - t0;
            if (dt < best_dec) best_dec = dt;
            qerr_free(back);
        }
        char golden[64] = "-";
        if (rows[r].golden) {
            snprintf(path, sizeof path, "%s/%s", data, rows[r].golden);
            uint32_t *g;
            int64_t gn;
            if (qerr_tokens_read(path, &g, &gn) == QERR_OK) {
                int64_t same = 0;
                while (same < gn && same < count && g[same] == ids[same]) same++;
                snprintf(golden, sizeof golden, "%s (%lld of %lld)",
                         same == gn && gn == count ? "all equal" : "DIFFER", (long long)same,
                         (long long)gn);
                qerr_free(g);
            }
        }
        printf("| %s | %s | %.2f | %lld | %s | %.1f | %.1f |\n", rows[r].name, rows[r].kind, load,
               (long long)count, golden, (double)n / best / 1e6, (double)n / best_dec / 1e6);
        fflush(stdout);
        qerr_free(ids);
        qerr_tokenizer_free(t);
    }
    free(text);
    return 0;
}
