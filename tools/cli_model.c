/* Model-level steps shared by `quantize`, `ppl` and `compare`. */
#include "cli.h"

int cli_load_model(const char *dir, qerr_model **out) {
    int rc = qerr_model_load(out, dir);
    if (rc != QERR_OK) cli_fail("cannot load the model", rc);
    return rc;
}

int cli_load_tokens(const char *what, const char *path, uint32_t **tokens, int64_t *count) {
    int rc = qerr_tokens_read(path, tokens, count);
    if (rc != QERR_OK) cli_fail(what, rc);
    return rc;
}

int cli_load_quantized(const char *dir, const qerr_qmodel *q, qerr_model **out) {
    int rc = cli_load_model(dir, out);
    if (rc != QERR_OK) return rc;
    rc = qerr_model_apply(*out, q);
    if (rc != QERR_OK) {
        cli_fail("cannot apply the quantized tensors to the model", rc);
        qerr_model_free(*out);
        *out = NULL;
    }
    return rc;
}

int cli_perplexity(qerr_ctx *ctx, const qerr_model *m, const uint32_t *tokens, int64_t count,
                   int64_t ctx_len, int64_t max_windows, cli_ppl_result *out) {
    double t0 = cli_now();
    int rc = qerr_model_perplexity(ctx, m, tokens, count, ctx_len, max_windows, &out->ppl,
                                   &out->mean_nll, &out->scored);
    out->seconds = cli_now() - t0;
    out->windows = ctx_len > 0 ? count / ctx_len : 0;
    if (max_windows > 0 && out->windows > max_windows) out->windows = max_windows;
    if (rc != QERR_OK) cli_fail("perplexity failed", rc);
    return rc;
}

int64_t cli_model_params(const qerr_model *m) {
    int64_t total = 0;
    for (int i = 0; i < qerr_model_tensor_count(m); i++) {
        const qerr_tensor *t;
        if (qerr_model_tensor(m, qerr_model_tensor_name(m, i), &t) == QERR_OK)
            total += qerr_tensor_numel(t);
    }
    return total;
}
