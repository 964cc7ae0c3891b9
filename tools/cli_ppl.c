/* `qerr ppl`: perplexity of a model, float or with a .qerr container applied. */
#include "cli.h"

#include <inttypes.h>

int cli_cmd_ppl(int argc, char **argv) {
    cli_opt opts[] = {
        {"model", "DIR", "model directory (config.json + model.safetensors)", CLI_DEFAULT_MODEL},
        {"quantized", "FILE.qerr", "replace the model's weights by these quantized tensors", ""},
        {"tokens", "TOKENS", "evaluation tokens (little-endian uint32)", CLI_DEFAULT_EVAL},
        {"ctx", "N", "tokens per window (non-overlapping; token 0 of a window is not scored)",
         "256"},
        {"max-windows", "N", "score at most N windows, 0 = all", "0"},
        {"threads", "T", "worker threads, 0 = all CPUs", "0"},
        {"quiet", NULL, "no progress bar", NULL},
    };
    cli_command cmd = {
        "ppl", "[--model DIR] [--quantized FILE.qerr] [--tokens TOKENS] [--ctx N] [--max-windows N]",
        "Perplexity over floor(tokens / ctx) non-overlapping windows: exp of the mean negative\n"
        "log-likelihood of tokens 1..ctx-1 of each window given their prefix.",
        NULL, opts, (int)(sizeof opts / sizeof opts[0])};
    bool help;
    int rc = cli_parse(&cmd, argc, argv, &help);
    if (rc != CLI_OK || help) return rc;
    int64_t ctx_len, max_windows, threads;
    if (!cli_int("ctx", cli_get(&cmd, "ctx"), 2, 1 << 20, &ctx_len) ||
        !cli_int("max-windows", cli_get(&cmd, "max-windows"), 0, INT64_MAX, &max_windows) ||
        !cli_int("threads", cli_get(&cmd, "threads"), 0, 4096, &threads))
        return CLI_USAGE;
    const char *model_dir = cli_get(&cmd, "model"), *qpath = cli_get(&cmd, "quantized");
    const char *tok_path = cli_get(&cmd, "tokens");

    qerr_model *m = NULL;
    qerr_qmodel *q = NULL;
    uint32_t *tokens = NULL;
    int64_t count = 0;
    qerr_ctx *ctx = NULL;
    cli_progress prog;
    int status = CLI_FAILED;
    if (*qpath) {
        if ((rc = qerr_qmodel_load(&q, qpath)) != QERR_OK) {
            cli_fail("cannot read the quantized model", rc);
            goto done;
        }
        const char *plan = qerr_qmodel_meta(q, "quantize.plan");
        printf("quantized %s: %d tensors, %.3f bits/weight%s%s\n", qpath, qerr_qmodel_count(q),
               cli_qmodel_bits_per_weight(q), plan ? ", plan " : "", plan ? plan : "");
        if (cli_load_quantized(model_dir, q, &m) != QERR_OK) goto done;
    } else if (cli_load_model(model_dir, &m) != QERR_OK) {
        goto done;
    }
    printf("model     %s%s\n", model_dir, *qpath ? " (quantized weights applied)" : " (float)");
    if (cli_load_tokens("cannot read the tokens", tok_path, &tokens, &count) != QERR_OK) goto done;
    fflush(stdout);
    rc = cli_ctx_create(&ctx, threads, 0, &prog, cli_get(&cmd, "quiet") != NULL);
    if (rc != QERR_OK) {
        cli_fail("cannot create a context", rc);
        goto done;
    }
    cli_ppl_result r;
    rc = cli_perplexity(ctx, m, tokens, count, ctx_len, max_windows, &r);
    cli_progress_done(&prog);
    if (rc != QERR_OK) goto done;
    char took[32];
    cli_format_seconds(r.seconds, took, sizeof took);
    printf("tokens    %s: %" PRId64 " tokens, %" PRId64 " windows of %" PRId64 ", %" PRId64
           " scored\n",
           tok_path, count, r.windows, ctx_len, r.scored);
    printf("ppl       %.6f (mean NLL %.6f nats/token) in %s\n", r.ppl, r.mean_nll, took);
    status = CLI_OK;
done:
    qerr_ctx_free(ctx);
    qerr_free(tokens);
    qerr_model_free(m);
    qerr_qmodel_free(q);
    return status;
}
