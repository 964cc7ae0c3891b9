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

/* The one vocabulary of options (cli_options.c): an option means the same
 * thing, under the same name, in every command that takes it. A command
 * names the options it takes (cli_use), optionally with its own help text
 * or default. Older spellings are accepted as aliases for one release, with
 * a notice on stderr. */
typedef struct cli_optdef {
    const char *name;    /* without the leading "--" */
    const char *alias;   /* older spelling, still accepted; NULL if none */
    const char *metavar; /* NULL for a flag (stores "1") */
    const char *help;
    const char *def;     /* default value, NULL if none */
} cli_optdef;
const cli_optdef *cli_optdef_find(const char *name); /* by name or alias */

typedef struct cli_use {
    const char *name;
    const char *help; /* NULL: the shared help */
    const char *def;  /* NULL: the shared default */
} cli_use;

#define CLI_MAX_OPTS 32
typedef struct cli_command {
    const char *name;
    const char *usage; /* arguments after "qerr <name>" */
    const char *summary;
    const char *details; /* printed after the options by --help, may be NULL */
    const cli_use *uses;
    int nuses;
    /* filled by cli_parse, indexed like uses */
    const char *values[CLI_MAX_OPTS];
    bool given[CLI_MAX_OPTS];
} cli_command;

/* Parse argv (after the subcommand) into cmd->values (defaults first).
 * Returns CLI_OK, or CLI_USAGE after printing a message; *help is set for
 * -h/--help (help text already printed to stdout). */
int cli_parse(cli_command *cmd, int argc, char **argv, bool *help);
/* The value of an option the command takes (its default when not given). */
const char *cli_get(const cli_command *cmd, const char *name);
bool cli_given(const cli_command *cmd, const char *name);
void cli_print_help(const cli_command *cmd, FILE *f);

/* Integer / float option values with a range; print a usage error if bad. */
bool cli_int(const char *opt, const char *text, int64_t lo, int64_t hi, int64_t *out);
/* A byte count: a number with an optional K, M, G or T (binary) suffix. */
bool cli_size(const char *opt, const char *text, uint64_t *out);

/* Print "qerr: <what>: <status>: <last error>" to stderr; returns CLI_FAILED. */
int cli_fail(const char *what, int status);

double cli_now(void); /* monotonic seconds */
/* "1m05s", "3.2s", "850ms" */
void cli_format_seconds(double s, char *buf, size_t cap);

/* A context with threads (also set as OpenBLAS's thread count when > 0), seed, a stderr progress bar (redrawn in place on
 * a terminal, one line per stage otherwise; none when quiet), warnings on
 * stderr and Ctrl-C turned into cancellation. */
typedef struct cli_progress {
    double start, last_draw, fraction, sub_fraction;
    char stage[160], sub[64]; /* overall stage; a method's stage within it */
    bool tty, quiet, drawn;
} cli_progress;
int cli_ctx_create(qerr_ctx **out, int64_t threads, uint64_t seed, cli_progress *prog,
                   bool quiet);
/* "threads   2 for libqerr, 2 for OpenBLAS" */
void cli_print_threads(const qerr_ctx *ctx, FILE *f);
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
 * to stderr and returns a libqerr status (or NULL). */
/* --model, which is required: NULL after saying so. */
const char *cli_model_dir(const cli_command *cmd);
/* The token file of option `opt` ("calib" or "eval"): its value when given,
 * else <opt>.u32 in the model directory when the model ships one (built in
 * buf); NULL after saying what is missing. Never another model's files. */
const char *cli_tokens_path(const cli_command *cmd, const char *opt, const char *model_dir,
                            char *buf, size_t cap);
/* Tokens per calibration window: --calib-ctx, else --ctx (usage error printed). */
bool cli_calib_window(const cli_command *cmd, int64_t *seqlen);
int cli_load_model(const char *dir, qerr_model **out);
int cli_load_tokens(const char *what, const char *path, uint32_t **tokens, int64_t *count);
/* Record in q the model (absolute path and a fingerprint of the tensors q
 * does not replace) and the calibration file it was made from. */
int cli_record_source(qerr_qmodel *q, const qerr_model *m, const char *model_dir,
                      const char *calib_path);
/* The model directory for container q: `given` when set, else the one q
 * records; NULL after saying neither is there. */
const char *cli_container_model(const char *cmd_name, const qerr_qmodel *q, const char *qpath,
                                const char *given);
/* Load `dir`, check it is the model q was made from (when q records a
 * fingerprint), and replace its linear weights by the tensors of q. */
int cli_load_quantized(const char *dir, const qerr_qmodel *q, const char *qpath,
                       qerr_model **out);
typedef struct cli_ppl_result {
    double ppl, mean_nll, seconds;
    int64_t scored, windows;
} cli_ppl_result;
int cli_perplexity(qerr_ctx *ctx, const qerr_model *m, const uint32_t *tokens, int64_t count,
                   int64_t ctx_len, int64_t max_windows, cli_ppl_result *out);
/* Number of float parameters in the model. */
int64_t cli_model_params(const qerr_model *m);

/* key=value added to a plan spec, or to every SPEC of an overrides text
 * 'PAT=SPEC;...', whose method has the key and that does not set it
 * (cli_plan_key.c); malloc'd, NULL when out of memory. */
char *cli_spec_with_key(const char *spec, const char *key, const char *value);
char *cli_overrides_with_key(const char *overrides, const char *key, const char *value);

/* Text in (cli_text.c). The tokens of option `opt` ("calib" or "eval") come
 * from --<opt>-text FILE (tokenized with the model's tokenizer, or
 * --tokenizer), else from the token file of cli_tokens_path. */
typedef struct cli_input {
    const char *opt, *path;
    bool text;          /* path is a text file */
    int64_t text_bytes; /* bytes of text read, -1 for a token file */
    char buf[4096];
} cli_input;
/* false after a usage message (both --eval and --eval-text, or no tokens). */
bool cli_input_find(const cli_command *cmd, const char *opt, const char *model_dir,
                    cli_input *in);
/* Read or tokenize the input; the tokenizer goes to *tok when tok is not
 * NULL (the caller frees it). Returns CLI_OK, CLI_USAGE or CLI_FAILED, after
 * printing what went wrong. */
int cli_input_load(const cli_command *cmd, const char *model_dir, cli_input *in,
                   uint32_t **tokens, int64_t *count, qerr_tokenizer **tok);
/* "FILE: N bytes of text, M tokens (x bytes/token)" or "FILE: M tokens" */
const char *cli_input_describe(const cli_input *in, int64_t count, char *buf, size_t cap);
/* --tokenizer, else the model directory's tokenizer (CLI_OK, CLI_USAGE or
 * CLI_FAILED, after printing what went wrong). */
int cli_load_tokenizer(const cli_command *cmd, const char *model_dir, qerr_tokenizer **out);
/* Bits per byte of a perplexity run: the mean NLL of the scored tokens
 * (tokens 1..ctx-1 of each of `windows` windows) in bits, divided by the
 * bytes of text those tokens stand for (special tokens stand for none). */
double cli_bits_per_byte(const qerr_tokenizer *tok, const uint32_t *tokens, int64_t count,
                         int64_t ctx_len, int64_t windows, double mean_nll, int64_t scored,
                         int64_t *bytes);

/* Subcommands. */
int cli_cmd_quantize(int argc, char **argv);
/* The --format gguf path of `quantize` (cli_gguf.c), options already parsed. */
int cli_quantize_gguf(const cli_command *cmd);
int cli_cmd_ppl(int argc, char **argv);
int cli_cmd_compare(int argc, char **argv);
int cli_cmd_methods(int argc, char **argv);
int cli_cmd_tokenize(int argc, char **argv);

#endif
