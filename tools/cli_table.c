/* Aligned text tables, and the per-tensor table of a quantized model. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static char *dup_or_dash(const char *s) {
    const char *v = s && *s ? s : "-";
    char *d = malloc(strlen(v) + 1);
    if (d) strcpy(d, v);
    return d;
}

void cli_table_init(cli_table *t, int ncols, const char *const *header, const bool *right) {
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
    t->right = calloc((size_t)ncols, sizeof *t->right);
    if (t->right && right) memcpy(t->right, right, (size_t)ncols * sizeof *right);
    cli_table_row(t, header);
}

void cli_table_row(cli_table *t, const char *const *cells) {
    if (t->nrows == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        char **c = realloc(t->cells, (size_t)cap * (size_t)t->ncols * sizeof *c);
        if (!c) return; /* out of memory: the row is dropped */
        t->cells = c;
        t->cap = cap;
    }
    for (int j = 0; j < t->ncols; j++)
        t->cells[(size_t)t->nrows * (size_t)t->ncols + (size_t)j] = dup_or_dash(cells[j]);
    t->nrows++;
}

void cli_table_print(const cli_table *t, FILE *f) {
    size_t *w = calloc((size_t)t->ncols, sizeof *w);
    if (!w) return;
    for (int i = 0; i < t->nrows; i++)
        for (int j = 0; j < t->ncols; j++) {
            const char *c = t->cells[(size_t)i * (size_t)t->ncols + (size_t)j];
            size_t len = c ? strlen(c) : 0;
            if (len > w[j]) w[j] = len;
        }
    for (int i = 0; i < t->nrows; i++) {
        for (int j = 0; j < t->ncols; j++) {
            const char *c = t->cells[(size_t)i * (size_t)t->ncols + (size_t)j];
            bool right = t->right && t->right[j];
            bool last = j == t->ncols - 1;
            if (right) fprintf(f, "%*s", (int)w[j], c ? c : "");
            else if (last) fputs(c ? c : "", f);
            else fprintf(f, "%-*s", (int)w[j], c ? c : "");
            if (!last) fputs("  ", f);
        }
        fputc('\n', f);
        if (i == 0) {
            size_t total = 0;
            for (int j = 0; j < t->ncols; j++) total += w[j] + (j ? 2 : 0);
            for (size_t k = 0; k < total; k++) fputc('-', f);
            fputc('\n', f);
        }
    }
    free(w);
}

void cli_table_free(cli_table *t) {
    for (int i = 0; i < t->nrows * t->ncols; i++) free(t->cells[i]);
    free(t->cells);
    free(t->right);
    memset(t, 0, sizeof *t);
}

double cli_qmodel_bits_per_weight(const qerr_qmodel *q) {
    double bits = 0.0, weights = 0.0;
    for (int i = 0; i < qerr_qmodel_count(q); i++) {
        const qerr_result *r;
        if (qerr_qmodel_get(q, qerr_qmodel_name(q, i), &r) != QERR_OK) continue;
        double n = (double)qerr_result_rows(r) * (double)qerr_result_cols(r);
        bits += qerr_result_bits_per_weight(r) * n;
        weights += n;
    }
    return weights > 0 ? bits / weights : NAN;
}

static void diag_text(const qerr_result *r, const char *name, const char *fmt, char *buf,
                      size_t cap) {
    double v;
    if (qerr_result_diag(r, name, &v) == QERR_OK && !isnan(v)) snprintf(buf, cap, fmt, v);
    else snprintf(buf, cap, "-");
}

void cli_print_qmodel_table(const qerr_qmodel *q, FILE *f) {
    static const char *const header[] = {"tensor", "shape", "bits/w", "layer err", "damp",
                                         "seconds", "method"};
    static const bool right[] = {false, true, true, true, true, true, false};
    /* files written by the streaming pipeline carry no wall times: no column */
    bool timed = false;
    for (int i = 0; i < qerr_qmodel_count(q) && !timed; i++) {
        const qerr_result *r;
        double s;
        timed = qerr_qmodel_get(q, qerr_qmodel_name(q, i), &r) == QERR_OK &&
                qerr_result_diag(r, "seconds", &s) == QERR_OK;
    }
    const int secs_col = 5, ncols = timed ? 7 : 6;
    const char *head[7];
    bool rt[7];
    for (int j = 0, k = 0; j < 7; j++)
        if (timed || j != secs_col) head[k] = header[j], rt[k++] = right[j];
    cli_table t;
    cli_table_init(&t, ncols, head, rt);
    double total_s = 0.0, weights = 0.0;
    for (int i = 0; i < qerr_qmodel_count(q); i++) {
        const char *name = qerr_qmodel_name(q, i);
        const qerr_result *r;
        if (qerr_qmodel_get(q, name, &r) != QERR_OK) continue;
        char shape[48], bpw[32], err[32], damp[32], secs[32];
        snprintf(shape, sizeof shape, "%lldx%lld", (long long)qerr_result_rows(r),
                 (long long)qerr_result_cols(r));
        snprintf(bpw, sizeof bpw, "%.3f", qerr_result_bits_per_weight(r));
        diag_text(r, "layer_error", "%.3e", err, sizeof err);
        diag_text(r, "damp", "%.3g", damp, sizeof damp);
        diag_text(r, "seconds", "%.2f", secs, sizeof secs);
        double s;
        if (qerr_result_diag(r, "seconds", &s) == QERR_OK && s >= 0) total_s += s;
        weights += (double)qerr_result_rows(r) * (double)qerr_result_cols(r);
        /* "gptq w4 g128": the method and grid, short enough for a column */
        char method[64];
        const char *plan = qerr_result_plan(r);
        size_t mlen = strcspn(plan, ":");
        int64_t gs = qerr_result_group_size(r);
        char grp[32] = "per-row";
        if (gs < qerr_result_cols(r)) snprintf(grp, sizeof grp, "g%lld", (long long)gs);
        snprintf(method, sizeof method, "%.*s w%d %s", (int)(mlen < 32 ? mlen : 32), plan,
                 qerr_result_bits(r), grp);
        const char *cells[] = {name, shape, bpw, err, damp, timed ? secs : method, method};
        cli_table_row(&t, cells);
    }
    char n[32], bpw[32], secs[32];
    snprintf(n, sizeof n, "%.0f weights", weights);
    snprintf(bpw, sizeof bpw, "%.3f", cli_qmodel_bits_per_weight(q));
    snprintf(secs, sizeof secs, "%.2f", total_s);
    const char *total[] = {"total", n, bpw, "", "", timed ? secs : "", ""};
    cli_table_row(&t, total);
    cli_table_print(&t, f);
    cli_table_free(&t);
}
