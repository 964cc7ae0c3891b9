/* `qerr ppl`: perplexity of a model, float or with a .qerr container applied. */
#include "cli.h"

#include <inttypes.h>
#include <limits.h>

int cli_cmd_ppl(int argc, char **argv) {
    static const cli_use uses[] = {
        {"model", "model directory: config.json + model.safetensors (required, except with "
                  "--quantized: then the model the container records)", NULL},
        {"quantized", "replace the model's linear weights by these quantized tensors", NULL},
        {"eval", NULL, NULL},
        {"eval-text", NULL, NULL},
        {"tokenizer", NULL, NULL},
        {"ctx", "tokens per window (non-overlapping; token 0 of a window is not scored)", NULL},
        {"max-windows", NULL, NULL},
        {"threads", NULL, NULL},
        {"quiet", NULL, NULL},
    };
    cli_command cmd = {
        "ppl", "--model DIR | --quantized FILE.qerr [--eval TOKENS | --eval-text FILE] [--ctx N] "
        "[--max-windows N]",
        "Perplexity over floor(tokens / ctx) non-overlapping windows: exp of the mean negative\n"
        "log-likelihood of tokens 1..ctx-1 of each window given their prefix.",
        "On text (--eval-text), also bits per byte: the scored tokens' negative log-likelihood\n"
        "in bits over the bytes of text they stand for, comparable across tokenizers.\n", uses, (int)(sizeof uses / sizeof uses[0]), {0}, {0}};
    bool help;
    int rc = cli_parse(&cmd, argc, argv, &help);
    if (rc != CLI_OK || help) return rc;
    int64_t ctx_len, max_windows, threads;
    if (!cli_int("ctx", cli_get(&cmd, "ctx"), 2, 1 << 20, &ctx_len) ||
        !cli_int("max-windows", cli_get(&cmd, "max-windows"), 0, INT64_MAX, &max_windows) ||
        !cli_int("threads", cli_get(&cmd, "threads"), 0, 4096, &threads))
        return CLI_USAGE;
    const char *qpath = cli_get(&cmd, "quantized");
    if (!qpath && !cli_model_dir(&cmd)) return CLI_USAGE;

    qerr_model *m = NULL;
    qerr_qmodel *q = NULL;
    uint32_t *tokens = NULL;
    int64_t count = 0;
    qerr_ctx *ctx = NULL;
    qerr_tokenizer *tok = NULL;
    cli_input in;
    cli_progress prog;
    int status = CLI_FAILED;
    const char *model_dir = cli_get(&cmd, "model");
    if (qpath) {
        if ((rc = qerr_qmodel_load(&q, qpath)) != QERR_OK) {
            cli_fail("cannot read the quantized model", rc);
            goto done;
        }
        const char *plan = qerr_qmodel_meta(q, "quantize.plan");
        printf("quantized %s: %d tensors, %.3f bits/weight%s%s\n", qpath, qerr_qmodel_count(q),
               cli_qmodel_bits_per_weight(q), plan ? ", plan " : "", plan ? plan : "");
        model_dir = cli_container_model(cmd.name, q, qpath, model_dir);
        if (!model_dir) {
            status = CLI_USAGE;
            goto done;
        }
        printf("model     %s (%s), quantized weights applied\n", model_dir,
               cli_given(&cmd, "model") ? "--model" : "recorded in the container");
        if (cli_load_quantized(model_dir, q, qpath, &m) != QERR_OK) goto done;
    } else {
        if (cli_load_model(model_dir, &m) != QERR_OK) goto done;
        printf("model     %s (float)\n", model_dir);
    }
    if (!cli_input_find(&cmd, "eval", model_dir, &in)) {
        status = CLI_USAGE;
        goto done;
    }
    if ((status = cli_input_load(&cmd, model_dir, &in, &tokens, &count, &tok)) != CLI_OK) goto done;
    status = CLI_FAILED;
    rc = cli_ctx_create(&ctx, threads, 0, &prog, cli_get(&cmd, "quiet") != NULL);
    if (rc != QERR_OK) {
        cli_fail("cannot create a context", rc);
        goto done;
    }
    cli_print_threads(ctx, stdout);
    fflush(stdout);
    cli_ppl_result r;
    rc = cli_perplexity(ctx, m, tokens, count, ctx_len, max_windows, &r);
    cli_progress_done(&prog);
    if (rc != QERR_OK) goto done;
    char took[32];
    cli_format_seconds(r.seconds, took, sizeof took);
    char desc[4400];
    printf("eval      %s, %" PRId64 " windows of %" PRId64 ", %" PRId64 " scored\n",
           cli_input_describe(&in, count, desc, sizeof desc), r.windows, ctx_len, r.scored);
    printf("ppl       %.6f (mean NLL %.6f nats/token) in %s\n", r.ppl, r.mean_nll, took);
    if (tok) {
        int64_t bytes;
        double bpb = cli_bits_per_byte(tok, tokens, count, ctx_len, r.windows, r.mean_nll,
                                       r.scored, &bytes);
        printf("bits/byte %.6f (%" PRId64 " bytes of text in the scored tokens)\n", bpb, bytes);
    }
    status = CLI_OK;
done:
    qerr_tokenizer_free(tok);
    qerr_ctx_free(ctx);
    qerr_free(tokens);
    qerr_model_free(m);
    qerr_qmodel_free(q);
    return status;
}
