/* `qerr compare`: quantize one model with several plans and tabulate bits
 * per weight, perplexity and its increase over float, and quantize time. */
#include "cli.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_PLANS 256

/* The default list: the baselines and the layer-wise methods at the usual
 * grids, outliers at W3, CQE+ (block-wise SDE + cross-layer) at W2, and W4A4
 * (RTN against FlatQuant); the learned methods get few epochs so the demo
 * stays a few minutes long. Methods of the library that this list does
 * not name are appended at bits=3,group_size=128, so later methods appear by
 * themselves. */
static const char *const default_list[] = {
    "rtn:bits=4,group_size=128",
    "gptq:bits=4,group_size=128",
    "quantease:bits=4,group_size=128",
    "rtn:bits=3,group_size=128",
    "gptq:bits=3,group_size=128",
    "quantease:bits=3,group_size=128",
    "quantease_outlier:bits=3,outlier_fraction=0.01",
    "rtn:bits=2,group_size=64",
    "gptq:bits=2,group_size=64",
    "quantease:bits=2,group_size=64",
    "cqe:scope=block,bits=2,group_size=64,cross_layer=1,epochs=1",
    "flatquant:bits=4,a_bits=4,epochs=0,lwc=0,lac=0,diag=0,init=identity",
    "flatquant:bits=4,a_bits=4,epochs=3",
};
#define FALLBACK_GRID "bits=3,group_size=128"

typedef struct plan_list {
    char *spec[MAX_PLANS];
    int n;
} plan_list;

static void add_plan(plan_list *l, const char *spec, size_t len) {
    while (len && (*spec == ' ')) spec++, len--;
    while (len && spec[len - 1] == ' ') len--;
    if (len == 0 || l->n == MAX_PLANS) return;
    char *s = malloc(len + 1);
    if (!s) return;
    memcpy(s, spec, len);
    s[len] = '\0';
    l->spec[l->n++] = s;
}

static bool listed(const char *method) {
    size_t n = strlen(method);
    for (size_t i = 0; i < sizeof default_list / sizeof default_list[0]; i++)
        if (strncmp(default_list[i], method, n) == 0 && default_list[i][n] == ':') return true;
    return false;
}

static void default_plans(plan_list *l) {
    for (size_t i = 0; i < sizeof default_list / sizeof default_list[0]; i++) {
        qerr_plan *p;
        if (qerr_plan_parse(&p, default_list[i]) != QERR_OK) continue; /* not in this build */
        qerr_plan_free(p);
        add_plan(l, default_list[i], strlen(default_list[i]));
    }
    for (int i = 0; i < qerr_method_count(); i++) {
        const char *m = qerr_method_name(i);
        if (!m || listed(m)) continue;
        char spec[256];
        snprintf(spec, sizeof spec, "%s:%s", m, FALLBACK_GRID);
        qerr_plan *p;
        int rc = qerr_plan_parse(&p, spec);
        if (rc == QERR_OK) {
            qerr_plan_free(p);
            add_plan(l, spec, strlen(spec));
        } else if (rc != QERR_E_UNSUPPORTED) {
            add_plan(l, m, strlen(m)); /* no such keys: run once at its defaults */
        }
    }
}

static void parse_plans(plan_list *l, const char *text) {
    while (*text) {
        size_t len = strcspn(text, ";");
        add_plan(l, text, len);
        text += len;
        if (*text == ';') text++;
    }
}

typedef struct row {
    const char *spec;
    int status; /* QERR_OK, or why the plan has no numbers */
    bool skipped; /* a default plan the method does not support */
    bool file;    /* a GGUF file measured as it is (no quantize time) */
    char error[200];
    double bpw, ppl, seconds;
} row;

/* Quantize with one plan, apply it to a fresh copy of the model, measure. */
static void run_plan(qerr_ctx *ctx, cli_progress *prog, const qerr_model *base, const char *dir,
                     const char *overrides, const uint32_t *calib, int64_t ncalib,
                     int64_t nsamples, int64_t seqlen, const uint32_t *eval, int64_t neval,
                     int64_t ctx_len, int64_t max_windows, row *r) {
    qerr_qmodel *q = NULL;
    qerr_model *m = NULL;
    double t0 = cli_now();
    r->status = qerr_model_quantize(ctx, base, r->spec, overrides, calib, ncalib, nsamples, seqlen,
                                    &q);
    r->seconds = cli_now() - t0;
    cli_progress_done(prog);
    if (r->status != QERR_OK) {
        snprintf(r->error, sizeof r->error, "%s", qerr_last_error());
        return;
    }
    r->bpw = cli_qmodel_bits_per_weight(q);
    r->status = cli_load_quantized(dir, q, NULL, &m);
    cli_ppl_result p = {0};
    if (r->status == QERR_OK)
        r->status = cli_perplexity(ctx, m, eval, neval, ctx_len, max_windows, &p);
    cli_progress_done(prog);
    if (r->status != QERR_OK) snprintf(r->error, sizeof r->error, "%s", qerr_last_error());
    r->ppl = p.ppl;
    qerr_model_free(m);
    qerr_qmodel_free(q);
}

/* A GGUF file (libqerr's or anyone's) measured on the same windows; its
 * bits/w is the file's size in bits over the model's parameters. */
static void run_gguf(qerr_ctx *ctx, cli_progress *prog, const uint32_t *eval, int64_t neval,
                     int64_t ctx_len, int64_t max_windows, row *r) {
    qerr_model *m = NULL;
    r->file = true;
    r->status = cli_load_model(r->spec, &m);
    cli_ppl_result p = {0};
    if (r->status == QERR_OK) {
        struct stat st;
        int64_t params = cli_model_params(m);
        r->bpw = stat(r->spec, &st) == 0 && params > 0 ? 8.0 * (double)st.st_size / (double)params
                                                       : 0.0;
        r->status = cli_perplexity(ctx, m, eval, neval, ctx_len, max_windows, &p);
    }
    cli_progress_done(prog);
    if (r->status != QERR_OK) snprintf(r->error, sizeof r->error, "%s", qerr_last_error());
    r->ppl = p.ppl;
    qerr_model_free(m);
}

static void print_table(const row *rows, int n, double float_ppl, FILE *f) {
    static const char *const header[] = {"plan", "bits/w", "ppl", "+ppl", "+ppl %", "quantize"};
    static const bool right[] = {false, true, true, true, true, true};
    cli_table t;
    cli_table_init(&t, 6, header, right);
    char fp[32];
    snprintf(fp, sizeof fp, "%.4f", float_ppl);
    const char *first[] = {"float", "", fp, "", "", ""};
    cli_table_row(&t, first);
    for (int i = 0; i < n; i++) {
        const row *r = &rows[i];
        if (r->skipped) continue;
        char bpw[32], ppl[32], d[32], dp[32], secs[32];
        if (r->status != QERR_OK) {
            const char *cells[] = {r->spec, "", "failed", qerr_status_string(r->status), "", ""};
            cli_table_row(&t, cells);
            continue;
        }
        snprintf(bpw, sizeof bpw, "%.3f", r->bpw);
        snprintf(ppl, sizeof ppl, "%.4f", r->ppl);
        snprintf(d, sizeof d, "%+.4f", r->ppl - float_ppl);
        snprintf(dp, sizeof dp, "%+.2f%%", 100.0 * (r->ppl - float_ppl) / float_ppl);
        if (r->file) snprintf(secs, sizeof secs, "-");
        else cli_format_seconds(r->seconds, secs, sizeof secs);
        const char *cells[] = {r->spec, bpw, ppl, d, dp, secs};
        cli_table_row(&t, cells);
    }
    cli_table_print(&t, f);
    cli_table_free(&t);
}

int cli_cmd_compare(int argc, char **argv) {
    static const cli_use uses[] = {
        {"model", NULL, NULL},
        {"calib", NULL, NULL},
        {"calib-text", NULL, NULL},
        {"eval", NULL, NULL},
        {"eval-text", NULL, NULL},
        {"tokenizer", NULL, NULL},
        {"plan", "plans to compare, separated by ';' (default: see below)", ""},
        {"override", "per-tensor plans applied with every plan", NULL},
        {"gguf", NULL, NULL},
        {"nsamples", NULL, NULL},
        {"ctx", NULL, NULL},
        {"calib-ctx", NULL, NULL},
        {"max-windows", NULL, NULL},
        {"seed", NULL, NULL},
        {"threads", NULL, NULL},
        {"quiet", NULL, NULL},
    };
    cli_command cmd = {
        "compare", "--model DIR [--plan 'SPEC;SPEC;...'] [--calib TOKENS] [--eval TOKENS] [...]",
        "Quantize a model with each plan, apply it, and tabulate bits/weight (mean over the\n"
        "quantized tensors, weighted by size), perplexity, its increase over float, and the\n"
        "quantize time.",
        "The default plans are rtn, gptq and quantease at bits=4,group_size=128,\n"
        "bits=3,group_size=128 and bits=2,group_size=64, quantease_outlier at bits=3 with 1%\n"
        "outliers, cqe block-wise (SDE + cross-layer, 1 epoch) at bits=2,group_size=64,\n"
        "and W4A4 as RTN (flatquant with nothing learned) against flatquant (3 epochs);\n"
        "every other method of the library runs at bits=3,group_size=128 (or at\n"
        "its defaults when it has no such keys). Plans a method does not support\n"
        "(QERR_E_UNSUPPORTED) are skipped. With only --gguf, no plan runs. A GGUF row's\n"
        "bits/w is the file size in bits over the model's parameters.\n",
        uses, (int)(sizeof uses / sizeof uses[0]), {0}, {0}};
    bool help;
    int rc = cli_parse(&cmd, argc, argv, &help);
    if (rc != CLI_OK || help) return rc;
    const char *dir = cli_model_dir(&cmd);
    if (!dir) return CLI_USAGE;
    int64_t nsamples, seqlen, seed, ctx_len, max_windows, threads;
    if (!cli_int("nsamples", cli_get(&cmd, "nsamples"), 1, 1 << 20, &nsamples) ||
        !cli_int("ctx", cli_get(&cmd, "ctx"), 2, 1 << 20, &ctx_len) ||
        !cli_calib_window(&cmd, &seqlen) ||
        !cli_int("seed", cli_get(&cmd, "seed"), 0, INT64_MAX, &seed) ||
        !cli_int("max-windows", cli_get(&cmd, "max-windows"), 0, INT64_MAX, &max_windows) ||
        !cli_int("threads", cli_get(&cmd, "threads"), 0, 4096, &threads))
        return CLI_USAGE;
    const char *overrides = cli_get(&cmd, "override");
    static cli_input calib_in, eval_in;
    if (!cli_input_find(&cmd, "calib", dir, &calib_in) ||
        !cli_input_find(&cmd, "eval", dir, &eval_in))
        return CLI_USAGE;
    const char *calib_path = calib_in.path, *eval_path = eval_in.path;
    plan_list plans = {{0}, 0}, files = {{0}, 0};
    bool user_plans = *cli_get(&cmd, "plan") != '\0';
    parse_plans(&files, cli_get(&cmd, "gguf"));
    if (user_plans) parse_plans(&plans, cli_get(&cmd, "plan"));
    else if (files.n == 0) default_plans(&plans);
    if (plans.n + files.n == 0) {
        fprintf(stderr, "qerr compare: no plans to compare\n");
        return CLI_USAGE;
    }

    qerr_model *base = NULL;
    uint32_t *calib = NULL, *eval = NULL;
    int64_t ncalib = 0, neval = 0;
    qerr_ctx *ctx = NULL;
    cli_progress prog;
    row *rows = calloc((size_t)(plans.n + files.n), sizeof *rows);
    int status = CLI_FAILED;
    if (!rows) goto done;
    if (cli_load_model(dir, &base) != QERR_OK) goto done;
    if ((status = cli_input_load(&cmd, dir, &calib_in, &calib, &ncalib, NULL)) != CLI_OK ||
        (status = cli_input_load(&cmd, dir, &eval_in, &eval, &neval, NULL)) != CLI_OK)
        goto done;
    status = CLI_FAILED;
    rc = cli_ctx_create(&ctx, threads, (uint64_t)seed, &prog, cli_get(&cmd, "quiet") != NULL);
    if (rc != QERR_OK) {
        cli_fail("cannot create a context", rc);
        goto done;
    }
    cli_ppl_result fl;
    rc = cli_perplexity(ctx, base, eval, neval, ctx_len, max_windows, &fl);
    cli_progress_done(&prog);
    if (rc != QERR_OK) goto done;
    printf("model %s; calib %s (%" PRId64 " x %" PRId64 " tokens); eval %s (%" PRId64
           " windows of %" PRId64 ")\n",
           dir, calib_path, nsamples, seqlen, eval_path, fl.windows, ctx_len);
    cli_print_threads(ctx, stdout);
    if (*overrides) printf("overrides %s\n", overrides);
    fflush(stdout);
    fprintf(stderr, "float: ppl %.4f\n", fl.ppl);
    int failed = 0;
    for (int i = 0; i < plans.n; i++) {
        row *r = &rows[i];
        r->spec = plans.spec[i];
        run_plan(ctx, &prog, base, dir, overrides, calib, ncalib, nsamples, seqlen, eval, neval,
                 ctx_len, max_windows, r);
        char took[32];
        cli_format_seconds(r->seconds, took, sizeof took);
        if (r->status == QERR_OK)
            fprintf(stderr, "[%d/%d] %s: %.3f bits/w, ppl %.4f, quantized in %s\n", i + 1,
                    plans.n, r->spec, r->bpw, r->ppl, took);
        else if ((r->skipped = r->status == QERR_E_UNSUPPORTED && !user_plans))
            fprintf(stderr, "[%d/%d] %s: skipped (unsupported: %s)\n", i + 1, plans.n, r->spec,
                    r->error);
        else {
            fprintf(stderr, "[%d/%d] %s: failed: %s: %s\n", i + 1, plans.n, r->spec,
                    qerr_status_string(r->status), r->error);
            failed++;
        }
    }
    for (int i = 0; i < files.n; i++) {
        row *r = &rows[plans.n + i];
        r->spec = files.spec[i];
        run_gguf(ctx, &prog, eval, neval, ctx_len, max_windows, r);
        if (r->status == QERR_OK)
            fprintf(stderr, "[gguf %d/%d] %s: ppl %.4f\n", i + 1, files.n, r->spec, r->ppl);
        else {
            fprintf(stderr, "[gguf %d/%d] %s: failed: %s: %s\n", i + 1, files.n, r->spec,
                    qerr_status_string(r->status), r->error);
            failed++;
        }
    }
    printf("\n");
    print_table(rows, plans.n + files.n, fl.ppl, stdout);
    status = failed ? CLI_FAILED : CLI_OK;
done:
    for (int i = 0; i < plans.n; i++) free(plans.spec[i]);
    for (int i = 0; i < files.n; i++) free(files.spec[i]);
    free(rows);
    qerr_ctx_free(ctx);
    qerr_free(calib);
    qerr_free(eval);
    qerr_model_free(base);
    return status;
}
