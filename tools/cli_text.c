/* Text in for the `qerr` tool: --calib-text / --eval-text FILE (plain UTF-8
 * or JSON Lines with a "text" field) are tokenized with the model's own
 * tokenizer, as an alternative to the token files of --calib / --eval. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int cli_load_tokenizer(const cli_command *cmd, const char *model_dir, qerr_tokenizer **out) {
    const char *path = cli_get(cmd, "tokenizer");
    if (!path || !*path) {
        struct stat st;
        if (!model_dir || (stat(model_dir, &st) == 0 && !S_ISDIR(st.st_mode))) {
            fprintf(stderr, "qerr %s: text needs a tokenizer: give --tokenizer PATH (a "
                    "tokenizer.json, a llama2.c tokenizer.bin or a directory)\n", cmd->name);
            return CLI_USAGE;
        }
        path = model_dir;
    }
    int rc = qerr_tokenizer_load(out, path);
    if (rc != QERR_OK) {
        char what[1200];
        snprintf(what, sizeof what, "cannot load the tokenizer of %s", path);
        cli_fail(what, rc);
        if (rc == QERR_E_NOT_FOUND && !cli_given(cmd, "tokenizer"))
            fprintf(stderr, "qerr %s: give --tokenizer PATH\n", cmd->name);
        return rc == QERR_E_NOT_FOUND ? CLI_USAGE : CLI_FAILED;
    }
    return CLI_OK;
}

bool cli_input_find(const cli_command *cmd, const char *opt, const char *model_dir,
                    cli_input *in) {
    char text_opt[32];
    snprintf(text_opt, sizeof text_opt, "%s-text", opt);
    memset(in, 0, sizeof *in);
    in->opt = opt;
    in->text_bytes = -1;
    if (cli_given(cmd, text_opt)) {
        if (cli_given(cmd, opt)) {
            fprintf(stderr, "qerr %s: give --%s TOKENS or --%s FILE, not both\n", cmd->name, opt,
                    text_opt);
            return false;
        }
        in->path = cli_get(cmd, text_opt);
        in->text = true;
        return true;
    }
    in->path = cli_tokens_path(cmd, opt, model_dir, in->buf, sizeof in->buf);
    return in->path != NULL;
}

int cli_input_load(const cli_command *cmd, const char *model_dir, cli_input *in,
                   uint32_t **tokens, int64_t *count, qerr_tokenizer **tok_out) {
    const char *what = strcmp(in->opt, "calib") == 0 ? "calibration" : "evaluation";
    char msg[96];
    if (!in->text) {
        snprintf(msg, sizeof msg, "cannot read the %s tokens", what);
        return cli_load_tokens(msg, in->path, tokens, count) == QERR_OK ? CLI_OK : CLI_FAILED;
    }
    qerr_tokenizer *tok = NULL;
    int status = cli_load_tokenizer(cmd, model_dir, &tok);
    if (status != CLI_OK) return status;
    int rc = qerr_tokenizer_encode_file(tok, in->path,
                                        QERR_TOKENIZE_ADD_SPECIAL | QERR_TOKENIZE_PARSE_SPECIAL,
                                        tokens, count, &in->text_bytes);
    if (rc != QERR_OK) {
        snprintf(msg, sizeof msg, "cannot tokenize the %s text", what);
        cli_fail(msg, rc);
        qerr_tokenizer_free(tok);
        return CLI_FAILED;
    }
    if (tok_out) *tok_out = tok;
    else qerr_tokenizer_free(tok);
    return CLI_OK;
}

const char *cli_input_describe(const cli_input *in, int64_t count, char *buf, size_t cap) {
    if (in->text)
        snprintf(buf, cap, "%s: %" PRId64 " bytes of text, %" PRId64 " tokens (%.2f bytes/token)",
                 in->path, in->text_bytes, count,
                 count ? (double)in->text_bytes / (double)count : 0.0);
    else
        snprintf(buf, cap, "%s: %" PRId64 " tokens", in->path, count);
    return buf;
}

double cli_bits_per_byte(const qerr_tokenizer *tok, const uint32_t *tokens, int64_t count,
                         int64_t ctx_len, int64_t windows, double mean_nll, int64_t scored,
                         int64_t *bytes_out) {
    int64_t bytes = 0;
    for (int64_t w = 0; w < windows; w++)
        for (int64_t i = w * ctx_len + 1; i < (w + 1) * ctx_len && i < count; i++) {
            size_t len = 0;
            int special = 0;
            if (qerr_tokenizer_token_text(tok, tokens[i], &len, &special) && !special)
                bytes += (int64_t)len;
        }
    if (bytes_out) *bytes_out = bytes;
    return bytes ? mean_nll * (double)scored / (log(2.0) * (double)bytes) : NAN;
}
