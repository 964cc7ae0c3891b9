/* Shared pieces of the `qerr` command-line tool: option parsing, number
 * parsing, error reports, progress display, aligned tables. Uses only the
 * public libqerr API. */
#ifndef QERR_CLI_H
#define QERR_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "qerr.h"

/* Exit statuses. */
enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };

/* Defaults that make the subcommands work from the repository root. */
#define CLI_DEFAULT_MODEL "data/tiny-llama"
#define CLI_DEFAULT_CALIB "data/tiny-llama/calib.u32"
#define CLI_DEFAULT_EVAL "data/tiny-llama/eval.u32"

/* One `--name VALUE` option (or `--name=VALUE`); a flag takes no value and
 * stores "1". `value` holds the default on entry. */
typedef struct cli_opt {
    const char *name; /* without the leading "--" */
    const char *metavar; /* NULL for a flag */
    const char *help;
    const char *value;
} cli_opt;

typedef struct cli_command {
    const char *name;
    const char *usage; /* arguments after "qerr <name>" */
    const char *summary;
    const char *details; /* printed after the options by --help, may be NULL */
    cli_opt *opts;
    int nopts;
} cli_command;

/* Parse argv (after the subcommand) into cmd->opts. Returns CLI_OK, or
 * CLI_USAGE after printing a message; *help is set for -h/--help (help text
 * already printed to stdout). */
int cli_parse(const cli_command *cmd, int argc, char **argv, bool *help);
const char *cli_get(const cli_command *cmd, const char *name);
void cli_print_help(const cli_command *cmd, FILE *f);

/* Integer / float option values with a range; print a usage error if bad. */
bool cli_int(const char *opt, const char *text, int64_t lo, int64_t hi, int64_t *out);

/* Print "qerr: <what>: <status>: <last error>" to stderr; returns CLI_FAILED. */
int cli_fail(const char *what, int status);

double cli_now(void); /* monotonic seconds */
/* "1m05s", "3.2s", "850ms" */
void cli_format_seconds(double s, char *buf, size_t cap);

/* A context with threads, seed, a stderr progress bar (redrawn in place on
 * a terminal, one line per stage otherwise; none when quiet), warnings on
 * stderr and Ctrl-C turned into cancellation. */
typedef struct cli_progress {
    double start, last_draw, fraction, sub_fraction;
    char stage[160], sub[64]; /* overall stage; a method's stage within it */
    bool tty, quiet, drawn;
} cli_progress;
int cli_ctx_create(qerr_ctx **out, int64_t threads, uint64_t seed, cli_progress *prog,
                   bool quiet);
/* Clear the progress line (before printing results). */
void cli_progress_done(cli_progress *prog);

/* A text table printed with aligned columns. */
typedef struct cli_table {
    int ncols, nrows, cap;
    char **cells; /* nrows x ncols, row 0 = header */
    bool *right;  /* right-align column */
} cli_table;
void cli_table_init(cli_table *t, int ncols, const char *const *header, const bool *right);
/* Append a row from ncols printf-formatted cells given as strings. */
void cli_table_row(cli_table *t, const char *const *cells);
void cli_table_print(const cli_table *t, FILE *f);
void cli_table_free(cli_table *t);

/* Per-tensor summary of a quantized model (name, shape, bits/weight, layer
 * error, damp, seconds) and the size-weighted mean bits/weight. */
void cli_print_qmodel_table(const qerr_qmodel *q, FILE *f);
double cli_qmodel_bits_per_weight(const qerr_qmodel *q);

/* Model-level steps shared by the subcommands; each prints its own error
 * to stderr and returns a libqerr status. */
int cli_load_model(const char *dir, qerr_model **out);
int cli_load_tokens(const char *what, const char *path, uint32_t **tokens, int64_t *count);
/* Load `dir` and replace its linear weights by the tensors of q. */
int cli_load_quantized(const char *dir, const qerr_qmodel *q, qerr_model **out);
typedef struct cli_ppl_result {
    double ppl, mean_nll, seconds;
    int64_t scored, windows;
} cli_ppl_result;
int cli_perplexity(qerr_ctx *ctx, const qerr_model *m, const uint32_t *tokens, int64_t count,
                   int64_t ctx_len, int64_t max_windows, cli_ppl_result *out);
/* Number of float parameters in the model. */
int64_t cli_model_params(const qerr_model *m);

/* Subcommands. */
int cli_cmd_quantize(int argc, char **argv);
/* The --format gguf path of `quantize` (cli_gguf.c), options already parsed. */
int cli_quantize_gguf(const cli_command *cmd);
int cli_cmd_ppl(int argc, char **argv);
int cli_cmd_compare(int argc, char **argv);
int cli_cmd_methods(int argc, char **argv);

#endif
