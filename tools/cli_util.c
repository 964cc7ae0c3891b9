/* Option parsing, errors, time, progress display and token files for the
 * `qerr` tool. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- options ------------------------------------------------------------- */

/* Index in cmd->uses of the option spelled `name` (len bytes), by its name
 * or its older alias; -1 if the command does not take it. */
static int find_use(const cli_command *cmd, const char *name, size_t len, bool *alias) {
    char key[64];
    if (len >= sizeof key) return -1;
    memcpy(key, name, len);
    key[len] = '\0';
    const cli_optdef *d = cli_optdef_find(key);
    if (!d) return -1;
    for (int i = 0; i < cmd->nuses; i++)
        if (strcmp(cmd->uses[i].name, d->name) == 0) {
            if (alias) *alias = strcmp(d->name, key) != 0;
            return i;
        }
    return -1;
}

static const char *use_default(const cli_use *u, const cli_optdef *d) {
    return u->def ? u->def : d ? d->def : NULL;
}

void cli_print_help(const cli_command *cmd, FILE *f) {
    fprintf(f, "usage: qerr %s %s\n\n%s\n", cmd->name, cmd->usage, cmd->summary);
    if (cmd->nuses) fprintf(f, "\noptions:\n");
    for (int i = 0; i < cmd->nuses; i++) {
        const cli_use *u = &cmd->uses[i];
        const cli_optdef *d = cli_optdef_find(u->name);
        if (!d) continue;
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", d->name, d->metavar ? " " : "",
                 d->metavar ? d->metavar : "");
        fprintf(f, "  %-26s %s", left, u->help ? u->help : d->help);
        const char *def = use_default(u, d);
        if (d->metavar && def && *def) fprintf(f, " [default: %s]", def);
        if (d->alias) fprintf(f, " (formerly --%s)", d->alias);
        fputc('\n', f);
    }
    fprintf(f, "  %-26s %s\n", "-h, --help", "show this help and exit");
    if (cmd->details) fprintf(f, "\n%s", cmd->details);
}

int cli_parse(cli_command *cmd, int argc, char **argv, bool *help) {
    *help = false;
    if (cmd->nuses > CLI_MAX_OPTS) {
        fprintf(stderr, "qerr %s: too many options (CLI_MAX_OPTS)\n", cmd->name);
        return CLI_FAILED;
    }
    for (int i = 0; i < cmd->nuses; i++) {
        cmd->values[i] = use_default(&cmd->uses[i], cli_optdef_find(cmd->uses[i].name));
        cmd->given[i] = false;
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cli_print_help(cmd, stdout);
            *help = true;
            return CLI_OK;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "qerr %s: unexpected argument '%s' (see qerr %s --help)\n", cmd->name,
                    a, cmd->name);
            return CLI_USAGE;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        bool alias = false;
        int k = find_use(cmd, name, len, &alias);
        if (k < 0) {
            fprintf(stderr, "qerr %s: unknown option '--%.*s' (see qerr %s --help)\n", cmd->name,
                    (int)len, name, cmd->name);
            return CLI_USAGE;
        }
        const cli_optdef *d = cli_optdef_find(cmd->uses[k].name);
        if (alias)
            fprintf(stderr, "qerr %s: note: --%.*s is now called --%s (the old name goes away "
                    "in the next release)\n", cmd->name, (int)len, name, d->name);
        if (!d->metavar) {
            if (eq) {
                fprintf(stderr, "qerr %s: --%s takes no value\n", cmd->name, d->name);
                return CLI_USAGE;
            }
            cmd->values[k] = "1";
        } else if (eq) {
            cmd->values[k] = eq + 1;
        } else if (i + 1 < argc) {
            cmd->values[k] = argv[++i];
        } else {
            fprintf(stderr, "qerr %s: --%s needs a value (%s)\n", cmd->name, d->name, d->metavar);
            return CLI_USAGE;
        }
        cmd->given[k] = true;
    }
    return CLI_OK;
}

const char *cli_get(const cli_command *cmd, const char *name) {
    int k = find_use(cmd, name, strlen(name), NULL);
    return k >= 0 ? cmd->values[k] : NULL;
}

bool cli_given(const cli_command *cmd, const char *name) {
    int k = find_use(cmd, name, strlen(name), NULL);
    return k >= 0 && cmd->given[k];
}

bool cli_int(const char *opt, const char *text, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = text ? strtoll(text, &end, 10) : 0;
    if (!text || !*text || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "qerr: --%s must be an integer in %" PRId64 "..%" PRId64 ", not '%s'\n",
                opt, lo, hi, text ? text : "");
        return false;
    }
    *out = v;
    return true;
}

int cli_fail(const char *what, int status) {
    fprintf(stderr, "qerr: %s: %s: %s\n", what, qerr_status_string(status), qerr_last_error());
    return CLI_FAILED;
}

/* ---- time ---------------------------------------------------------------- */

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_format_seconds(double s, char *buf, size_t cap) {
    if (!(s >= 0)) snprintf(buf, cap, "-");
    else if (s < 1.0) snprintf(buf, cap, "%.0fms", s * 1e3);
    else if (s < 60.0) snprintf(buf, cap, "%.1fs", s);
    else if (s < 3600.0) snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)s / 60 % 60);
}

/* ---- progress ------------------------------------------------------------ */

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
}

/* Stages whose first word is a method name ("gptq", "quantease sweep") are
 * a method's progress on the current tensor; any other stage ("layer 3/6
 * mlp.down_proj", "lm_head", "perplexity") carries the overall fraction. */
static bool is_method_stage(const char *stage) {
    char word[64];
    size_t n = strcspn(stage, " ");
    if (n >= sizeof word) return false;
    memcpy(word, stage, n);
    word[n] = '\0';
    return qerr_method_summary(word) != NULL;
}

static void draw(cli_progress *p, double now) {
    p->last_draw = now;
    double elapsed = now - p->start, f = p->fraction;
    char el[32], eta[32], sub[96] = "";
    cli_format_seconds(elapsed, el, sizeof el);
    if (f > 0.0) cli_format_seconds(elapsed * (1.0 - f) / f, eta, sizeof eta);
    else snprintf(eta, sizeof eta, "?");
    if (p->tty && p->sub[0]) snprintf(sub, sizeof sub, "  (%s %.0f%%)", p->sub, 100.0 * p->sub_fraction);
    enum { WIDTH = 24 };
    int fill = (int)(f * WIDTH + 0.5);
    if (fill < 0) fill = 0;
    if (fill > WIDTH) fill = WIDTH;
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++) bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = '\0';
    fprintf(stderr, "%s[%s] %3.0f%%  %-36s elapsed %s  ETA %s%s%s", p->tty ? "\r\033[K" : "", bar,
            100.0 * f, p->stage, el, eta, sub, p->tty ? "" : "\n");
    fflush(stderr);
    p->drawn = true;
}

static int on_progress(void *user, const char *stage, double fraction) {
    cli_progress *p = user;
    if (g_interrupted) return 1; /* the library returns QERR_E_CANCELLED */
    if (p->quiet || !stage) return 0;
    double now = cli_now();
    if (is_method_stage(stage)) {
        snprintf(p->sub, sizeof p->sub, "%s", stage);
        p->sub_fraction = fraction;
        if (p->tty && p->stage[0] && now - p->last_draw >= 0.1) draw(p, now);
        return 0;
    }
    bool changed = strcmp(stage, p->stage) != 0;
    snprintf(p->stage, sizeof p->stage, "%s", stage);
    p->fraction = fraction;
    p->sub[0] = '\0';
    /* a terminal redraws at most 10 times a second; a log gets a line when
     * the stage changes, at most every 2 seconds, and the last one */
    bool due = p->tty ? now - p->last_draw >= 0.1 : changed && now - p->last_draw >= 2.0;
    if (due || fraction >= 1.0) draw(p, now);
    return 0;
}

static void on_log(void *user, int level, const char *message) {
    cli_progress *p = user;
    if (p->tty && p->drawn) fputs("\r\033[K", stderr);
    fprintf(stderr, "qerr: %s: %s\n", level <= QERR_LOG_ERROR ? "error" : "warning", message);
}

/* OpenBLAS's own thread pool (declared here: which cblas.h the system
 * installs varies). libqerr leaves process-wide BLAS settings alone; the
 * tool owns its process, so --threads bounds both. */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);

void cli_print_threads(const qerr_ctx *ctx, FILE *f) {
    int t = qerr_ctx_threads(ctx);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    fprintf(f, "threads   %d for libqerr, %d for OpenBLAS\n", t > 0 ? t : (int)(cpus > 0 ? cpus : 1),
            openblas_get_num_threads());
}

int cli_ctx_create(qerr_ctx **out, int64_t threads, uint64_t seed, cli_progress *prog,
                   bool quiet) {
    memset(prog, 0, sizeof *prog);
    prog->start = cli_now();
    prog->last_draw = -1e9;
    prog->tty = isatty(fileno(stderr)) == 1;
    prog->quiet = quiet;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    int rc = qerr_ctx_create(out);
    if (rc == QERR_OK) rc = qerr_ctx_set_threads(*out, (int)threads);
    if (rc == QERR_OK && threads > 0) openblas_set_num_threads((int)threads);
    if (rc == QERR_OK) rc = qerr_ctx_set_seed(*out, seed);
    if (rc == QERR_OK) rc = qerr_ctx_set_progress(*out, on_progress, prog);
    if (rc == QERR_OK) rc = qerr_ctx_set_log(*out, on_log, prog, QERR_LOG_WARN);
    if (rc != QERR_OK) {
        qerr_ctx_free(*out);
        *out = NULL;
    }
    return rc;
}

void cli_progress_done(cli_progress *p) {
    if (p->tty && p->drawn) fputs("\r\033[K", stderr);
    p->drawn = false;
    p->stage[0] = '\0';
    p->sub[0] = '\0';
    p->start = cli_now();
    p->last_draw = -1e9;
}

bool cli_size(const char *opt, const char *text, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    double v = text && *text ? strtod(text, &end) : -1.0;
    uint64_t unit = 1;
    if (end && *end) {
        switch (*end == 'k' ? 'K' : *end) {
        case 'K': unit = 1ull << 10; break;
        case 'M': unit = 1ull << 20; break;
        case 'G': unit = 1ull << 30; break;
        case 'T': unit = 1ull << 40; break;
        default: unit = 0;
        }
        if (unit) end++;
        if (unit && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0)) end += strlen(end);
    }
    if (errno || !end || *end || unit == 0 || !(v > 0) || v * (double)unit > 1e18) {
        fprintf(stderr, "qerr: --%s: '%s' is not a size such as 12G, 512M or 1073741824\n", opt,
                text ? text : "");
        return false;
    }
    *out = (uint64_t)(v * (double)unit);
    return true;
}
