/* `qerr quantize --format gguf`: quantize for a llama.cpp file type and write
 * the GGUF file (qerr_gguf_quantize + qerr_gguf_save). */
#include "cli.h"

#include <inttypes.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

int cli_quantize_gguf(const cli_command *cmd) {
    int64_t nsamples, seqlen, seed, threads;
    if (!cli_int("nsamples", cli_get(cmd, "nsamples"), 1, 1 << 20, &nsamples) ||
        !cli_calib_window(cmd, &seqlen) ||
        !cli_int("seed", cli_get(cmd, "seed"), 0, INT64_MAX, &seed) ||
        !cli_int("threads", cli_get(cmd, "threads"), 0, 4096, &threads))
        return CLI_USAGE;
    const char *type = cli_get(cmd, "type"), *mix = cli_get(cmd, "mix");
    const char *opts = cli_get(cmd, "ggml-opts"), *out_path = cli_get(cmd, "out");
    const char *model_dir = cli_get(cmd, "model"); /* checked by cli_cmd_quantize */
    cli_input in;
    if (!cli_input_find(cmd, "calib", model_dir, &in)) return CLI_USAGE;
    qerr_model *m = NULL;
    uint32_t *tokens = NULL;
    int64_t count = 0;
    qerr_ctx *ctx = NULL;
    qerr_qmodel *q = NULL;
    cli_progress prog;
    int status = CLI_FAILED, rc;
    double t0 = cli_now();
    if (cli_load_model(model_dir, &m) != QERR_OK) goto done;
    char probe[16];
    rc = qerr_gguf_tensor_type(m, type, mix, "model.norm.weight", probe, sizeof probe);
    if (rc != QERR_OK) {
        cli_fail("bad --type or --mix", rc);
        status = CLI_USAGE;
        goto done;
    }
    printf("model     %s: %.2fM parameters, loaded in %.2fs\n", model_dir,
           (double)cli_model_params(m) / 1e6, cli_now() - t0);
    if ((status = cli_input_load(cmd, model_dir, &in, &tokens, &count, NULL)) != CLI_OK) goto done;
    status = CLI_FAILED;
    char desc[4400];
    printf("calib     %s, %" PRId64 " windows of %" PRId64 "\n",
           cli_input_describe(&in, count, desc, sizeof desc), nsamples, seqlen);
    printf("gguf      type %s, mix %s%s%s\n", type, *mix ? mix : "ftype",
           *opts ? ", ggml method keys " : "", opts);
    fflush(stdout);
    rc = cli_ctx_create(&ctx, threads, (uint64_t)seed, &prog, cli_get(cmd, "quiet") != NULL);
    if (rc != QERR_OK) {
        cli_fail("cannot create a context", rc);
        goto done;
    }
    t0 = cli_now();
    rc = qerr_gguf_quantize(ctx, m, type, mix, opts, tokens, count, nsamples, seqlen, &q);
    double seconds = cli_now() - t0;
    cli_progress_done(&prog);
    if (rc != QERR_OK) {
        cli_fail("quantization failed", rc);
        goto done;
    }
    if (qerr_qmodel_count(q) > 0) {
        printf("\n");
        cli_print_qmodel_table(q, stdout);
    }
    double t1 = cli_now();
    if ((rc = qerr_gguf_save(m, q, type, mix, out_path)) != QERR_OK) {
        cli_fail("cannot write the GGUF file", rc);
        goto done;
    }
    struct stat st;
    double mib = stat(out_path, &st) == 0 ? (double)st.st_size / 1048576.0 : 0.0;
    char took[32], wrote[32];
    cli_format_seconds(seconds, took, sizeof took);
    cli_format_seconds(cli_now() - t1, wrote, sizeof wrote);
    printf("\nquantized %d tensors in %s; wrote %s (%.2f MiB, GGUF %s) in %s\n",
           qerr_qmodel_count(q), took, out_path, mib, type, wrote);
    status = CLI_OK;
done:
    qerr_qmodel_free(q);
    qerr_ctx_free(ctx);
    qerr_free(tokens);
    qerr_model_free(m);
    return status;
}
