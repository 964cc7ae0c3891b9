/* `qerr`: quantize a model, measure perplexity, compare methods, list the
 * methods compiled into libqerr, tokenize text. */
#include "cli.h"

#include <string.h>

static void print_usage(FILE *f) {
    fprintf(f,
            "usage: qerr <command> [options]\n"
            "\n"
            "Post-training quantization of LLaMA-family weights with libqerr.\n"
            "\n"
            "commands:\n"
            "  quantize   calibrate and quantize a model, write a .qerr container\n"
            "  ppl        perplexity of a model, float or with a .qerr container applied\n"
            "  compare    quantize with several plans and tabulate perplexity\n"
            "  methods    list the quantization methods and their settings\n"
            "  tokenize   encode a text with a model's tokenizer, list the tokens or write them\n"
            "\n"
            "  qerr <command> --help   options of one command\n"
            "  qerr --version          versions of the tool and the library\n");
}

static int cmd_version(void) {
    printf("qerr %s (libqerr %s)\n", QERR_VERSION_STRING, qerr_version_string());
    if (qerr_version_number() != QERR_VERSION_NUMBER)
        fprintf(stderr, "qerr: warning: built against libqerr %s but running with %s\n",
                QERR_VERSION_STRING, qerr_version_string());
    return CLI_OK;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_usage(stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) return cmd_version();
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        print_usage(stdout);
        return CLI_OK;
    }
    if (strcmp(cmd, "quantize") == 0) return cli_cmd_quantize(argc - 2, argv + 2);
    if (strcmp(cmd, "ppl") == 0) return cli_cmd_ppl(argc - 2, argv + 2);
    if (strcmp(cmd, "compare") == 0) return cli_cmd_compare(argc - 2, argv + 2);
    if (strcmp(cmd, "methods") == 0) return cli_cmd_methods(argc - 2, argv + 2);
    if (strcmp(cmd, "tokenize") == 0) return cli_cmd_tokenize(argc - 2, argv + 2);
    fprintf(stderr, "qerr: unknown command '%s'\n\n", cmd);
    print_usage(stderr);
    return CLI_USAGE;
}
