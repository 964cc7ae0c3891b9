/* `qerr quantize`: calibrate and quantize a model layer by layer, writing
 * each finished layer to the .qerr container as it goes (resumable), then
 * print a per-tensor table; --dry-run prints the plan, memory and time; or
 * write a GGUF file for llama.cpp or a GPTQ checkpoint directory. */
#include "cli.h"

#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Files larger than this are not read back for the per-tensor table. */
#define TABLE_MAX_MIB 1024.0

static double gib(uint64_t b) { return (double)b / (double)(1u << 30); }

/* The plan before any work: layers, memory with and without spilling the
 * calibration activations, and the estimated time. */
static int print_plan(qerr_ctx *ctx, const qerr_model *m, const char *plan, int64_t nsamples,
                      int64_t seqlen, uint64_t max_memory, bool dry) {
    uint64_t need = 0, spilled = 0;
    double secs = 0;
    int rc = qerr_model_quantize_estimate(ctx, m, plan, nsamples, seqlen, &need, &spilled,
                                          dry ? &secs : NULL);
    if (rc != QERR_OK) return cli_fail("cannot estimate the run", rc);
    int64_t layers = 0;
    qerr_model_config_int(m, "num_hidden_layers", &layers);
    printf("memory    %.2f GiB with the calibration activations in memory, %.2f GiB with them "
           "in a temporary file",
           gib(need), gib(spilled));
    if (max_memory)
        printf("; budget %.2f GiB: %s", gib(max_memory),
               need <= max_memory      ? "fits"
               : spilled <= max_memory ? "activations spilled"
                                       : "does not fit");
    printf("\n");
    if (dry) {
        char t[32];
        cli_format_seconds(secs, t, sizeof t);
        printf("work      %" PRId64 " decoder layers, one at a time in float32, each written "
               "when done; about %s on this machine (GPTQ-like estimate)\n",
               layers, t);
    }
    fflush(stdout);
    return QERR_OK;
}

/* --format gptq|gptq_v2: the results in memory, then the checkpoint. */
static int quantize_gptq(qerr_ctx *ctx, cli_progress *prog, qerr_model *m, const char *plan,
                         const char *overrides, const uint32_t *tokens, int64_t count,
                         int64_t nsamples, int64_t seqlen, const char *model_dir,
                         const char *calib_path, const char *out_path, const char *format) {
    qerr_qmodel *q = NULL;
    double t0 = cli_now();
    int rc = qerr_model_quantize(ctx, m, plan, overrides, tokens, count, nsamples, seqlen, &q);
    double seconds = cli_now() - t0;
    cli_progress_done(prog);
    int status = CLI_FAILED;
    if (rc != QERR_OK) {
        cli_fail("quantization failed", rc);
        goto done;
    }
    printf("\n");
    cli_print_qmodel_table(q, stdout);
    char secs[32];
    snprintf(secs, sizeof secs, "%.3f", seconds);
    if (cli_record_source(q, m, model_dir, calib_path) != QERR_OK) goto done;
    if ((rc = qerr_qmodel_set_meta(q, "quantize.seconds", secs)) != QERR_OK ||
        (rc = qerr_qmodel_set_meta(q, "libqerr.version", qerr_version_string())) != QERR_OK) {
        cli_fail("cannot set metadata", rc);
        goto done;
    }
    fflush(stdout); /* the table before any warning of the export */
    if ((rc = qerr_export_gptq_ctx(ctx, m, q, out_path, format)) != QERR_OK) {
        cli_fail("cannot write the GPTQ checkpoint", rc);
        goto done;
    }
    struct stat st;
    char weights[4096];
    snprintf(weights, sizeof weights, "%s/model.safetensors", out_path);
    double mib = stat(weights, &st) == 0 ? (double)st.st_size / 1048576.0 : 0.0;
    char took[32];
    cli_format_seconds(seconds, took, sizeof took);
    printf("\nquantized %d tensors in %s, %.3f bits/weight; wrote %s (%.2f MiB)\n",
           qerr_qmodel_count(q), took, cli_qmodel_bits_per_weight(q), out_path, mib);
    status = CLI_OK;
done:
    qerr_qmodel_free(q);
    return status;
}

int cli_cmd_quantize(int argc, char **argv) {
    static const cli_use uses[] = {
        {"model", NULL, NULL},       {"calib", NULL, NULL},    {"calib-text", NULL, NULL},
        {"tokenizer", NULL, NULL},   {"plan", NULL, NULL},
        {"override", NULL, NULL},    {"nsamples", NULL, NULL},
        {"ctx", "tokens per calibration window", NULL},
        {"calib-ctx", "same as --ctx (kept for the old name --seqlen)", NULL},
        {"seed", NULL, NULL},        {"threads", NULL, NULL},
        {"format", NULL, NULL},      {"type", NULL, NULL},     {"mix", NULL, NULL},
        {"ggml-opts", NULL, NULL},
        {"out", "where to write the quantized model: a file, a directory for gptq (required)", NULL},
        {"resume", NULL, NULL},      {"max-memory", NULL, NULL}, {"dry-run", NULL, NULL},
        {"quiet", NULL, NULL},
    };
    cli_command cmd = {
        "quantize", "--model DIR --out FILE.qerr [--calib TOKENS | --calib-text FILE] [--plan SPEC] [...]",
        "Calibrate and quantize every linear layer of a model in true-sequential order,\n"
        "print a table of the quantized tensors and write them to a .qerr container,\n"
        "a GGUF file or a GPTQ checkpoint directory.",
        "A .qerr container is written as the run goes: each decoder layer goes to\n"
        "FILE.qerr.partial as soon as it is done and the file is renamed to FILE.qerr\n"
        "at the end; after an interruption (even kill -9) the same command with\n"
        "--resume continues after the last finished layer and writes the same bytes\n"
        "as an uninterrupted run.\n"
        "example:\n"
        "  qerr quantize --model DIR --plan gptq:bits=3,group_size=128 \\\n"
        "      --override 'model.layers.0.*=gptq:bits=4,group_size=128' --out w3.qerr\n"
        "  qerr quantize --model DIR --plan gptq:bits=4,group_size=128,symmetric=1,act_order=1 \\\n"
        "      --format gptq --out model-gptq-4bit\n"
        "  qerr quantize --model DIR --format gguf --type Q4_K_M --out model-q4_k_m.gguf\n"
        "With --format gguf, --plan and --override are not used: the ggml method runs on\n"
        "each tensor's type in the file type's mix (qerr_gguf_quantize).\n"
        "With --format gptq or gptq_v2, scale_dtype=f16 is added to every plan whose\n"
        "method has the key (rtn, gptq, quantease, quantease_outlier) and that does not\n"
        "set it: scales are fitted as the float16 values the checkpoint stores, so it\n"
        "holds exactly the quantized weights.\n",
        uses, (int)(sizeof uses / sizeof uses[0]), {0}, {0}};
    bool help;
    int rc = cli_parse(&cmd, argc, argv, &help);
    if (rc != CLI_OK || help) return rc;
    const char *model_dir = cli_model_dir(&cmd);
    if (!model_dir) return CLI_USAGE;
    const char *out_path = cli_get(&cmd, "out");
    const bool dry = cli_get(&cmd, "dry-run") != NULL;
    if (!dry && (!out_path || !*out_path)) {
        fprintf(stderr, "qerr quantize: --out FILE.qerr is required (see qerr quantize --help)\n");
        return CLI_USAGE;
    }
    int64_t nsamples, seqlen, seed, threads;
    if (!cli_int("nsamples", cli_get(&cmd, "nsamples"), 1, 1 << 20, &nsamples) ||
        !cli_calib_window(&cmd, &seqlen) ||
        !cli_int("seed", cli_get(&cmd, "seed"), 0, INT64_MAX, &seed) ||
        !cli_int("threads", cli_get(&cmd, "threads"), 0, 4096, &threads))
        return CLI_USAGE;
    const char *format = cli_get(&cmd, "format");
    const bool gptq = strcmp(format, "gptq") == 0 || strcmp(format, "gptq_v2") == 0;
    if (strcmp(format, "qerr") != 0 && strcmp(format, "gguf") != 0 && !gptq) {
        fprintf(stderr, "qerr quantize: --format must be qerr, gguf, gptq or gptq_v2\n");
        return CLI_USAGE;
    }
    if ((strcmp(format, "gguf") == 0 || gptq) &&
        (dry || cli_get(&cmd, "resume") || *cli_get(&cmd, "max-memory"))) {
        fprintf(stderr, "qerr quantize: --dry-run, --resume and --max-memory apply to "
                        "--format qerr\n");
        return CLI_USAGE;
    }
    if (strcmp(format, "gguf") == 0) {
        if (dry) {
            fprintf(stderr, "qerr quantize: --dry-run, --resume and --max-memory apply to "
                            "--format qerr\n");
            return CLI_USAGE;
        }
        return cli_quantize_gguf(&cmd);
    }
    uint64_t max_memory = 0;
    const char *mm = cli_get(&cmd, "max-memory");
    if (mm && *mm && !cli_size("max-memory", mm, &max_memory)) return CLI_USAGE;
    const char *plan = cli_get(&cmd, "plan"), *overrides = cli_get(&cmd, "override");
    cli_input in;
    if (!cli_input_find(&cmd, "calib", model_dir, &in)) return CLI_USAGE;
    const char *calib_path = in.path;
    qerr_plan *check;
    rc = qerr_plan_parse(&check, plan);
    if (rc != QERR_OK) {
        cli_fail("bad --plan", rc);
        return CLI_USAGE;
    }
    qerr_plan_free(check);
    /* a GPTQ checkpoint stores float16 scales: fit them as float16, so it
     * holds exactly the results (unless the user chose scale_dtype) */
    char *plan_f16 = NULL, *overrides_f16 = NULL;
    if (gptq) {
        plan_f16 = cli_spec_with_key(plan, "scale_dtype", "f16");
        overrides_f16 = cli_overrides_with_key(overrides, "scale_dtype", "f16");
        if (!plan_f16 || !overrides_f16) {
            free(plan_f16);
            free(overrides_f16);
            fprintf(stderr, "qerr quantize: out of memory\n");
            return CLI_FAILED;
        }
        plan = plan_f16;
        overrides = overrides_f16;
    }

    qerr_model *m = NULL;
    uint32_t *tokens = NULL;
    int64_t count = 0;
    qerr_ctx *ctx = NULL;
    qerr_qmodel *q = NULL;
    cli_progress prog;
    int status = CLI_FAILED;
    double t0 = cli_now();
    if (cli_load_model(model_dir, &m) != QERR_OK) goto done;
    printf("model     %s: %.2fM parameters, loaded in %.2fs\n", model_dir,
           (double)cli_model_params(m) / 1e6, cli_now() - t0);
    if ((status = cli_input_load(&cmd, model_dir, &in, &tokens, &count, NULL)) != CLI_OK) goto done;
    status = CLI_FAILED;
    char desc[4400];
    printf("calib     %s, %" PRId64 " windows of %" PRId64 "\n",
           cli_input_describe(&in, count, desc, sizeof desc), nsamples, seqlen);
    printf("plan      %s%s%s\n", plan, *overrides ? "; overrides " : "", overrides);
    rc = cli_ctx_create(&ctx, threads, (uint64_t)seed, &prog, cli_get(&cmd, "quiet") != NULL);
    if (rc != QERR_OK) {
        cli_fail("cannot create a context", rc);
        goto done;
    }
    cli_print_threads(ctx, stdout);
    fflush(stdout);
    if (max_memory) qerr_ctx_set_max_memory(ctx, max_memory);
    if (print_plan(ctx, m, plan, nsamples, seqlen, max_memory, dry) != QERR_OK || dry) {
        status = dry ? CLI_OK : CLI_FAILED;
        goto done;
    }
    if (gptq) {
        status = quantize_gptq(ctx, &prog, m, plan, overrides, tokens, count, nsamples, seqlen,
                               model_dir, calib_path, out_path, format);
        goto done;
    }
    t0 = cli_now();
    /* no wall time in the file: a resumed run must write the same bytes */
    char abs_model[PATH_MAX], abs_calib[PATH_MAX];
    if (!realpath(model_dir, abs_model)) snprintf(abs_model, sizeof abs_model, "%s", model_dir);
    if (!realpath(calib_path, abs_calib)) snprintf(abs_calib, sizeof abs_calib, "%s", calib_path);
    const char *const meta[] = {"source.model", abs_model, "source.calib", abs_calib,
                                "libqerr.version", qerr_version_string(), NULL};
    rc = qerr_model_quantize_file(ctx, m, plan, overrides, tokens, count, nsamples, seqlen, meta,
                                  out_path, cli_get(&cmd, "resume") ? QERR_QUANTIZE_RESUME : 0);
    double seconds = cli_now() - t0;
    cli_progress_done(&prog);
    if (rc != QERR_OK) {
        cli_fail("quantization failed", rc);
        if (rc == QERR_E_CANCELLED)
            fprintf(stderr, "qerr: finished layers are kept in %s.partial; add --resume to "
                            "continue\n", out_path);
        goto done;
    }
    struct stat st;
    double mib = stat(out_path, &st) == 0 ? (double)st.st_size / 1048576.0 : 0.0;
    char took[32];
    cli_format_seconds(seconds, took, sizeof took);
    /* the table reads the file back, unless that would cost more than the run;
     * then the fingerprint of the float tensors the file does not replace is
     * added (it needs the names the run quantized, known only now) */
    if (mib <= TABLE_MAX_MIB && (rc = qerr_qmodel_load(&q, out_path)) == QERR_OK) {
        if (cli_record_source(q, m, model_dir, calib_path) != QERR_OK) goto done;
        if ((rc = qerr_qmodel_save(q, out_path)) != QERR_OK) {
            cli_fail("cannot write the container", rc);
            goto done;
        }
        mib = stat(out_path, &st) == 0 ? (double)st.st_size / 1048576.0 : 0.0;
        printf("\n");
        cli_print_qmodel_table(q, stdout);
        printf("\nquantized %d tensors in %s, %.3f bits/weight; wrote %s (%.2f MiB)\n",
               qerr_qmodel_count(q), took, cli_qmodel_bits_per_weight(q), out_path, mib);
    } else {
        printf("\nquantized in %s; wrote %s (%.2f MiB)\n", took, out_path, mib);
    }
    status = CLI_OK;
done:
    qerr_qmodel_free(q);
    qerr_ctx_free(ctx);
    qerr_free(tokens);
    qerr_model_free(m);
    free(plan_f16);
    free(overrides_f16);
    return status;
}
