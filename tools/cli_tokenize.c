/* `qerr tokenize`: a quick look at how a model's tokenizer splits a text, or
 * a token file written from a text file. */
#include "cli.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* The token's text with control bytes, backslashes and quotes escaped. */
static void print_piece(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20 || c == 0x7F) printf("\\x%02X", c);
        else putchar(c);
    }
    putchar('"');
}

static int write_tokens(const char *path, const uint32_t *ids, int64_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "qerr tokenize: cannot write %s\n", path);
        return CLI_FAILED;
    }
    bool ok = true;
    for (int64_t i = 0; i < n && ok; i++) {
        unsigned char b[4] = {(unsigned char)ids[i], (unsigned char)(ids[i] >> 8),
                              (unsigned char)(ids[i] >> 16), (unsigned char)(ids[i] >> 24)};
        ok = fwrite(b, 1, 4, f) == 4;
    }
    if (fclose(f) != 0) ok = false;
    if (!ok) {
        fprintf(stderr, "qerr tokenize: writing %s failed\n", path);
        remove(path);
        return CLI_FAILED;
    }
    return CLI_OK;
}

int cli_cmd_tokenize(int argc, char **argv) {
    static const cli_use uses[] = {
        {"model", "model directory whose tokenizer to use (or --tokenizer)", NULL},
        {"tokenizer", NULL, NULL},
        {"text", NULL, NULL},
        {"input", NULL, NULL},
        {"raw", NULL, NULL},
        {"out", "write the ids to this token file (little-endian uint32) instead of listing them",
         NULL},
    };
    cli_command cmd = {
        "tokenize", "(--model DIR | --tokenizer PATH) (--text STRING | --input FILE) [--out FILE.u32]",
        "Encode a text with a model's tokenizer (Hugging Face tokenizer.json or llama2.c\n"
        "tokenizer.bin) and list the tokens, or write them to a token file for --calib/--eval.",
        "By default BOS/EOS are added by the tokenizer's rules (tokenizer_config.json) and\n"
        "special tokens written in the text are recognized, as Hugging Face does.\n"
        "example:\n"
        "  qerr tokenize --model DIR --text 'Hello world'\n"
        "  qerr tokenize --model DIR --input wiki.txt --out wiki.u32\n",
        uses, (int)(sizeof uses / sizeof uses[0]), {0}, {0}};
    bool help;
    int rc = cli_parse(&cmd, argc, argv, &help);
    if (rc != CLI_OK || help) return rc;
    const char *text = cli_get(&cmd, "text"), *input = cli_get(&cmd, "input");
    const char *model_dir = cli_get(&cmd, "model"), *out = cli_get(&cmd, "out");
    if (!model_dir && !cli_given(&cmd, "tokenizer")) {
        fprintf(stderr, "qerr tokenize: give --model DIR or --tokenizer PATH\n");
        return CLI_USAGE;
    }
    if (!text == !input) {
        fprintf(stderr, "qerr tokenize: give --text STRING or --input FILE (one of them)\n");
        return CLI_USAGE;
    }
    qerr_tokenizer *tok = NULL;
    int status = cli_load_tokenizer(&cmd, model_dir, &tok);
    if (status != CLI_OK) return status;
    unsigned flags = cli_given(&cmd, "raw")
                         ? 0u
                         : QERR_TOKENIZE_ADD_SPECIAL | QERR_TOKENIZE_PARSE_SPECIAL;
    uint32_t *ids = NULL;
    int64_t n = 0, bytes = 0;
    if (text) {
        bytes = (int64_t)strlen(text);
        rc = qerr_tokenizer_encode(tok, text, strlen(text), flags, &ids, &n);
    } else {
        rc = qerr_tokenizer_encode_file(tok, input, flags, &ids, &n, &bytes);
    }
    if (rc != QERR_OK) {
        cli_fail("cannot tokenize", rc);
        status = CLI_FAILED;
        goto done;
    }
    printf("%" PRId64 " bytes -> %" PRId64 " tokens (%.2f bytes/token), vocabulary %" PRId64
           ", BOS %" PRId64 ", EOS %" PRId64 "\n",
           bytes, n, n ? (double)bytes / (double)n : 0.0, qerr_tokenizer_vocab_size(tok),
           qerr_tokenizer_bos_id(tok), qerr_tokenizer_eos_id(tok));
    if (out) {
        status = write_tokens(out, ids, n);
        if (status == CLI_OK) printf("wrote %s\n", out);
        goto done;
    }
    const int64_t shown = n < 1000 ? n : 1000;
    for (int64_t i = 0; i < shown; i++) {
        size_t len = 0;
        int special = 0;
        const char *s = qerr_tokenizer_token_text(tok, ids[i], &len, &special);
        printf("%8" PRIu32 "  ", ids[i]);
        print_piece(s ? s : "", len);
        puts(special ? "  (special)" : "");
    }
    if (shown < n) printf("... %" PRId64 " more (use --out FILE.u32 to keep them all)\n", n - shown);
    status = CLI_OK;
done:
    qerr_free(ids);
    qerr_tokenizer_free(tok);
    return status;
}
