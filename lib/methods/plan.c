/* qerr_plan: a method and a value for each key of its parameter table. */
#include "../core/internal.h"
#include "method.h"

#include <ctype.h>
#include <pthread.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int find_key(const qerr_method *m, const char *key) {
    for (int i = 0; i < m->nparams; i++)
        if (strcmp(m->params[i].key, key) == 0) return i;
    return -1;
}

/* Index of `word` in "a|b|c", or -1. */
static int choice_index(const char *choices, const char *word) {
    int idx = 0;
    size_t wl = strlen(word);
    for (const char *p = choices; *p; idx++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == wl && strncmp(p, word, len) == 0) return idx;
        if (!bar) break;
        p = bar + 1;
    }
    return -1;
}

/* Copy choice number idx of "a|b|c" into buf. */
static void choice_word(const char *choices, int idx, char *buf, size_t cap) {
    const char *p = choices;
    for (int i = 0; i < idx && p; i++) {
        p = strchr(p, '|');
        if (p) p++;
    }
    if (!p) { snprintf(buf, cap, "?"); return; }
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    snprintf(buf, cap, "%.*s", (int)len, p);
}

static int get_def(const qerr_plan *p, const char *fn, const char *key, const qerr_param_def **d,
                   int *idx) {
    QERR_CHECK(p, QERR_E_INVALID_ARG, "%s: plan is NULL", fn);
    QERR_CHECK(key, QERR_E_INVALID_ARG, "%s: key is NULL", fn);
    int i = find_key(p->method, key);
    QERR_CHECK(i >= 0, QERR_E_UNKNOWN_KEY, "%s: method '%s' has no key '%s'", fn,
               p->method->name, key);
    *d = &p->method->params[i];
    *idx = i;
    return QERR_OK;
}

static int store(qerr_plan *p, const char *fn, const qerr_param_def *d, int idx, double v) {
    QERR_CHECK(isfinite(v), QERR_E_RANGE, "%s: %s must be finite", fn, d->key);
    if (d->type == QERR_PARAM_INT || d->type == QERR_PARAM_BOOL)
        QERR_CHECK(v == floor(v), QERR_E_INVALID_ARG, "%s: %s takes an integer, got %g", fn,
                   d->key, v);
    QERR_CHECK(v >= d->lo && v <= d->hi, QERR_E_RANGE, "%s: %s=%g is outside %g..%g", fn, d->key,
               v, d->lo, d->hi);
    /* group_size's range -1..max has a hole: -1 means one group per row */
    QERR_CHECK(!(v == 0 && strcmp(d->key, "group_size") == 0), QERR_E_RANGE,
               "%s: group_size=0 is not a group size (-1 = one group per row, or 1..%g)", fn,
               d->hi);
    p->values[idx] = v;
    return QERR_OK;
}

int qerr_plan_create(qerr_plan **out, const char *method) {
    QERR_CHECK(out, QERR_E_INVALID_ARG, "qerr_plan_create: out is NULL");
    *out = NULL;
    QERR_CHECK(method, QERR_E_INVALID_ARG, "qerr_plan_create: method is NULL");
    const qerr_method *m = qerr__method_find(method);
    QERR_CHECK(m, QERR_E_UNKNOWN_METHOD, "qerr_plan_create: unknown method '%s'", method);
    QERR_CHECK(m->nparams <= QERR_PLAN_MAX_PARAMS, QERR_E_INTERNAL,
               "qerr_plan_create: method '%s' has too many parameters", method);
    qerr_plan *p = qerr__calloc(1, sizeof *p);
    QERR_CHECK(p, QERR_E_NOMEM, "qerr_plan_create: out of memory");
    p->method = m;
    for (int i = 0; i < m->nparams; i++) p->values[i] = m->params[i].def;
    *out = p;
    return QERR_OK;
}

int qerr_plan_clone(const qerr_plan *p, qerr_plan **out) {
    QERR_CHECK(out, QERR_E_INVALID_ARG, "qerr_plan_clone: out is NULL");
    *out = NULL;
    QERR_CHECK(p, QERR_E_INVALID_ARG, "qerr_plan_clone: plan is NULL");
    qerr_plan *c = qerr__calloc(1, sizeof *c);
    QERR_CHECK(c, QERR_E_NOMEM, "qerr_plan_clone: out of memory");
    *c = *p;
    *out = c;
    return QERR_OK;
}

void qerr_plan_free(qerr_plan *p) { free(p); }

const char *qerr_plan_method(const qerr_plan *p) { return p ? p->method->name : NULL; }

int qerr_plan_set_int(qerr_plan *p, const char *key, int64_t value) {
    const qerr_param_def *d;
    int i;
    QERR_TRY(get_def(p, "qerr_plan_set_int", key, &d, &i));
    QERR_CHECK(d->type != QERR_PARAM_CHOICE, QERR_E_INVALID_ARG, "qerr_plan_set_int: %s takes a word, use qerr_plan_set", key);
    return store(p, "qerr_plan_set_int", d, i, (double)value);
}

int qerr_plan_set_double(qerr_plan *p, const char *key, double value) {
    const qerr_param_def *d;
    int i;
    QERR_TRY(get_def(p, "qerr_plan_set_double", key, &d, &i));
    QERR_CHECK(d->type != QERR_PARAM_CHOICE, QERR_E_INVALID_ARG,
               "qerr_plan_set_double: %s takes a word, use qerr_plan_set", key);
    return store(p, "qerr_plan_set_double", d, i, value);
}

int qerr_plan_set(qerr_plan *p, const char *key, const char *value) {
    const qerr_param_def *d;
    int i;
    QERR_TRY(get_def(p, "qerr_plan_set", key, &d, &i));
    QERR_CHECK(value && *value, QERR_E_INVALID_ARG, "qerr_plan_set: %s has an empty value", key);
    if (d->type == QERR_PARAM_CHOICE) {
        int c = choice_index(d->choices, value);
        QERR_CHECK(c >= 0, QERR_E_RANGE, "qerr_plan_set: %s=%s is not one of %s", key, value,
                   d->choices);
        p->values[i] = c;
        return QERR_OK;
    }
    if (d->type == QERR_PARAM_BOOL) {
        if (!strcmp(value, "true") || !strcmp(value, "yes") || !strcmp(value, "on"))
            return store(p, "qerr_plan_set", d, i, 1);
        if (!strcmp(value, "false") || !strcmp(value, "no") || !strcmp(value, "off"))
            return store(p, "qerr_plan_set", d, i, 0);
    }
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    QERR_CHECK(end != value && *end == '\0' && errno == 0, QERR_E_INVALID_ARG,
               "qerr_plan_set: %s=%s is not a number", key, value);
    return store(p, "qerr_plan_set", d, i, v);
}

int qerr_plan_get_int(const qerr_plan *p, const char *key, int64_t *value) {
    const qerr_param_def *d;
    int i;
    QERR_TRY(get_def(p, "qerr_plan_get_int", key, &d, &i));
    QERR_CHECK(value, QERR_E_INVALID_ARG, "qerr_plan_get_int: value is NULL");
    *value = (int64_t)p->values[i];
    return QERR_OK;
}

int qerr_plan_get_double(const qerr_plan *p, const char *key, double *value) {
    const qerr_param_def *d;
    int i;
    QERR_TRY(get_def(p, "qerr_plan_get_double", key, &d, &i));
    QERR_CHECK(value, QERR_E_INVALID_ARG, "qerr_plan_get_double: value is NULL");
    *value = p->values[i];
    return QERR_OK;
}

/* The shortest text that reads back as exactly v ("0.005", not
 * "0.0050000000000000001"): %.17g always round-trips, fewer digits often do. */
static void format_double(double v, char *buf, size_t cap) {
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, cap, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) return;
    }
}

static void format_value(const qerr_param_def *d, double v, char *buf, size_t cap) {
    if (d->type == QERR_PARAM_CHOICE) choice_word(d->choices, (int)v, buf, cap);
    else if (d->type == QERR_PARAM_DOUBLE) format_double(v, buf, cap);
    else snprintf(buf, cap, "%lld", (long long)v);
}

int qerr_plan_get_string(const qerr_plan *p, const char *key, char *buf, size_t cap) {
    const qerr_param_def *d;
    int i;
    QERR_TRY(get_def(p, "qerr_plan_get_string", key, &d, &i));
    QERR_CHECK(buf && cap > 0, QERR_E_INVALID_ARG, "qerr_plan_get_string: empty buffer");
    char tmp[64];
    format_value(d, p->values[i], tmp, sizeof tmp);
    QERR_CHECK(strlen(tmp) < cap, QERR_E_RANGE, "qerr_plan_get_string: buffer too small");
    memcpy(buf, tmp, strlen(tmp) + 1);
    return QERR_OK;
}

int qerr_plan_to_string(const qerr_plan *p, char *buf, size_t cap, size_t *needed) {
    QERR_CHECK(p, QERR_E_INVALID_ARG, "qerr_plan_to_string: plan is NULL");
    char out[4096];
    size_t len = (size_t)snprintf(out, sizeof out, "%s", p->method->name);
    for (int i = 0; i < p->method->nparams && len < sizeof out; i++) {
        char v[64];
        format_value(&p->method->params[i], p->values[i], v, sizeof v);
        len += (size_t)snprintf(out + len, sizeof out - len, "%c%s=%s", i == 0 ? ':' : ',',
                                p->method->params[i].key, v);
    }
    if (len >= sizeof out) len = sizeof out - 1;
    if (needed) *needed = len + 1;
    QERR_CHECK(buf && cap > len, QERR_E_RANGE,
               "qerr_plan_to_string: buffer of %zu bytes is too small (%zu needed)", cap, len + 1);
    memcpy(buf, out, len + 1);
    return QERR_OK;
}

int qerr_plan_parse(qerr_plan **out, const char *spec) {
    QERR_CHECK(out, QERR_E_INVALID_ARG, "qerr_plan_parse: out is NULL");
    *out = NULL;
    QERR_CHECK(spec, QERR_E_INVALID_ARG, "qerr_plan_parse: spec is NULL");
    size_t n = strlen(spec);
    QERR_CHECK(n > 0 && n < 4096, QERR_E_INVALID_ARG, "qerr_plan_parse: spec length %zu is not in 1..4095", n);
    char buf[4096];
    memcpy(buf, spec, n + 1);
    char *colon = strchr(buf, ':');
    if (colon) *colon = '\0';
    qerr_plan *p;
    QERR_TRY(qerr_plan_create(&p, buf));
    char *rest = colon ? colon + 1 : NULL;
    while (rest && *rest) {
        char *comma = strchr(rest, ',');
        if (comma) *comma = '\0';
        char *eq = strchr(rest, '=');
        if (!eq) {
            int rc = qerr__fail(QERR_E_INVALID_ARG, "qerr_plan_parse: '%s' is not key=value", rest);
            qerr_plan_free(p);
            return rc;
        }
        *eq = '\0';
        int rc = qerr_plan_set(p, rest, eq + 1);
        if (rc != QERR_OK) {
            qerr_plan_free(p);
            return rc;
        }
        rest = comma ? comma + 1 : NULL;
    }
    *out = p;
    return QERR_OK;
}

double qerr__plan_double(const qerr_plan *p, const char *key) {
    int i = find_key(p->method, key);
    return i >= 0 ? p->values[i] : NAN;
}

int64_t qerr__plan_int(const qerr_plan *p, const char *key) {
    int i = find_key(p->method, key);
    return i >= 0 ? (int64_t)p->values[i] : -1;
}

int qerr__plan_choice(const qerr_plan *p, const char *key) { return (int)qerr__plan_int(p, key); }

/* ---- introspection ------------------------------------------------------- */
/* Default texts, formatted once for every method so the pointers handed out
 * stay valid for the life of the program (callers keep them). */
#define MAX_METHODS 32
static char default_texts[MAX_METHODS][QERR_PLAN_MAX_PARAMS][64];
static pthread_once_t default_texts_once = PTHREAD_ONCE_INIT;

static void format_default_texts(void) {
    for (int k = 0; k < qerr__method_count() && k < MAX_METHODS; k++) {
        const qerr_method *m = qerr__method_at(k);
        for (int i = 0; i < m->nparams && i < QERR_PLAN_MAX_PARAMS; i++)
            format_value(&m->params[i], m->params[i].def, default_texts[k][i], 64);
    }
}

static const char *default_text(const qerr_method *m, int index) {
    pthread_once(&default_texts_once, format_default_texts);
    for (int k = 0; k < qerr__method_count() && k < MAX_METHODS; k++)
        if (qerr__method_at(k) == m)
            return index < QERR_PLAN_MAX_PARAMS ? default_texts[k][index] : NULL;
    return NULL;
}

int qerr_method_count(void) { return qerr__method_count(); }

const char *qerr_method_name(int index) {
    const qerr_method *m = qerr__method_at(index);
    return m ? m->name : NULL;
}

const char *qerr_method_summary(const char *method) {
    const qerr_method *m = method ? qerr__method_find(method) : NULL;
    return m ? m->summary : NULL;
}

int qerr_method_param_count(const char *method) {
    QERR_CHECK(method, QERR_E_INVALID_ARG, "qerr_method_param_count: method is NULL");
    const qerr_method *m = qerr__method_find(method);
    QERR_CHECK(m, QERR_E_UNKNOWN_METHOD, "qerr_method_param_count: unknown method '%s'", method);
    return m->nparams;
}

int qerr_method_param_info(const char *method, int index, const char **key, int *type,
                           const char **default_value, double *min, double *max,
                           const char **choices, const char **help) {
    QERR_CHECK(method, QERR_E_INVALID_ARG, "qerr_method_param_info: method is NULL");
    const qerr_method *m = qerr__method_find(method);
    QERR_CHECK(m, QERR_E_UNKNOWN_METHOD, "qerr_method_param_info: unknown method '%s'", method);
    QERR_CHECK(index >= 0 && index < m->nparams, QERR_E_RANGE,
               "qerr_method_param_info: index %d is outside 0..%d", index, m->nparams - 1);
    const qerr_param_def *d = &m->params[index];
    const char *dv = default_text(m, index);
    QERR_CHECK(dv, QERR_E_INTERNAL, "qerr_method_param_info: too many methods or parameters");
    if (key) *key = d->key;
    if (type) *type = d->type;
    if (default_value) *default_value = dv;
    if (min) *min = d->lo;
    if (max) *max = d->hi;
    if (choices) *choices = d->choices ? d->choices : "";
    if (help) *help = d->help ? d->help : "";
    return QERR_OK;
}
