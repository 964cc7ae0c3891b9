/* `qerr quantize`: calibrate and quantize a model, print a per-tensor table,
 * write a .qerr container, a GGUF file for llama.cpp or a GPTQ checkpoint
 * directory. */
#include "cli.h"

#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
        {"quiet", NULL, NULL},
    };
    cli_command cmd = {
        "quantize", "--model DIR --out FILE.qerr [--calib TOKENS | --calib-text FILE] [--plan SPEC] [...]",
        "Calibrate and quantize every linear layer of a model in true-sequential order,\n"
        "print a table of the quantized tensors and write them to a .qerr container,\n"
        "a GGUF file or a GPTQ checkpoint directory.",
        "example:\n"
        "  qerr quantize --model DIR --plan gptq:bits=3,group_size=128 \\\n"
        "      --override 'model.layers.0.*=gptq:bits=4,group_size=128' --out w3.qerr\n"
        "  qerr quantize --model DIR --plan gptq:bits=4,group_size=128,symmetric=1,act_order=1 \\\n"
        "      --format gptq --out model-gptq-4bit\n"
        "  qerr quantize --model DIR --format gguf --type Q4_K_M --out model-q4_k_m.gguf\n"
        "With --format gguf, --plan and --override are not used: the ggml method runs on\n"
        "each tensor's type in the file type's mix (qerr_gguf_quantize).\n",
        uses, (int)(sizeof uses / sizeof uses[0]), {0}, {0}};
    bool help;
    int rc = cli_parse(&cmd, argc, argv, &help);
    if (rc != CLI_OK || help) return rc;
    const char *model_dir = cli_model_dir(&cmd);
    if (!model_dir) return CLI_USAGE;
    const char *out_path = cli_get(&cmd, "out");
    if (!out_path || !*out_path) {
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
    if (strcmp(format, "gguf") == 0) return cli_quantize_gguf(&cmd);
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
    t0 = cli_now();
    rc = qerr_model_quantize(ctx, m, plan, overrides, tokens, count, nsamples, seqlen, &q);
    double seconds = cli_now() - t0;
    cli_progress_done(&prog);
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
    if (gptq && (rc = qerr_export_gptq(m, q, out_path, format)) != QERR_OK) {
        cli_fail("cannot write the GPTQ checkpoint", rc);
        goto done;
    }
    if (!gptq && (rc = qerr_qmodel_save(q, out_path)) != QERR_OK) {
        cli_fail("cannot write the container", rc);
        goto done;
    }
    struct stat st;
    char weights[4096];
    snprintf(weights, sizeof weights, "%s%s", out_path, gptq ? "/model.safetensors" : "");
    double mib = stat(weights, &st) == 0 ? (double)st.st_size / 1048576.0 : 0.0;
    char took[32];
    cli_format_seconds(seconds, took, sizeof took);
    printf("\nquantized %d tensors in %s, %.3f bits/weight; wrote %s (%.2f MiB)\n",
           qerr_qmodel_count(q), took, cli_qmodel_bits_per_weight(q), out_path, mib);
    status = CLI_OK;
done:
    qerr_qmodel_free(q);
    qerr_ctx_free(ctx);
    qerr_free(tokens);
    qerr_model_free(m);
    return status;
}
