/* Per-tensor plan selection for qerr_model_quantize: "pattern=spec;..."
 * where pattern is an fnmatch glob over tensor names (tried on the full name
 * and on the name without ".weight") and spec a plan spec or "float". */
#include "overrides.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OVERRIDES 1024
#define MAX_OVERRIDE_TEXT ((size_t)1 << 20)

void qerr__overrides_free(qerr_overrides *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++) {
        free(o->items[i].pattern);
        qerr_plan_free(o->items[i].plan);
    }
    free(o->items);
    memset(o, 0, sizeof *o);
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = '\0';
    return s;
}

int qerr__overrides_parse(const char *text, qerr_overrides *o) {
    static const char fn[] = "qerr_model_quantize";
    memset(o, 0, sizeof *o);
    if (!text || !*text) return QERR_OK;
    size_t len = strnlen(text, MAX_OVERRIDE_TEXT + 1);
    QERR_CHECK(len <= MAX_OVERRIDE_TEXT, QERR_E_RANGE, "%s: overrides text is too long", fn);
    char *buf = strdup(text);
    QERR_CHECK(buf, QERR_E_NOMEM, "%s: out of memory", fn);
    o->items = qerr__calloc(MAX_OVERRIDES, sizeof *o->items);
    int rc = o->items ? QERR_OK : qerr__fail(QERR_E_NOMEM, "%s: out of memory", fn);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ";", &save); rc == QERR_OK && tok;
         tok = strtok_r(NULL, ";", &save)) {
        char *item = trim(tok);
        if (!*item) continue;
        char *eq = strchr(item, '=');
        if (!eq) {
            rc = qerr__fail(QERR_E_INVALID_ARG,
                            "%s: override '%.128s' is not of the form pattern=spec", fn, item);
            break;
        }
        *eq = '\0';
        char *pat = trim(item), *spec = trim(eq + 1);
        if (!*pat || !*spec) {
            rc = qerr__fail(QERR_E_INVALID_ARG, "%s: override with an empty pattern or spec", fn);
            break;
        }
        if (o->n >= MAX_OVERRIDES) {
            rc = qerr__fail(QERR_E_RANGE, "%s: more than %d overrides", fn, MAX_OVERRIDES);
            break;
        }
        qerr_override *ov = &o->items[o->n];
        ov->pattern = strdup(pat);
        if (!ov->pattern) {
            rc = qerr__fail(QERR_E_NOMEM, "%s: out of memory", fn);
            break;
        }
        o->n++;
        if (strcmp(spec, "float") != 0) {
            rc = qerr_plan_parse(&ov->plan, spec);
            if (rc != QERR_OK) {
                char why[512]; /* copied: the message buffer is rewritten by qerr__fail */
                snprintf(why, sizeof why, "%s", qerr_last_error());
                rc = qerr__fail(rc, "%s: override '%.128s': %s", fn, pat, why);
            }
        }
    }
    free(buf);
    if (rc != QERR_OK) qerr__overrides_free(o);
    return rc;
}

static bool matches(const char *pattern, const char *name) {
    if (fnmatch(pattern, name, 0) == 0) return true;
    size_t n = strlen(name);
    const char suffix[] = ".weight";
    if (n <= sizeof suffix - 1 || strcmp(name + n - (sizeof suffix - 1), suffix) != 0)
        return false;
    char stem[512];
    if (n - (sizeof suffix - 1) >= sizeof stem) return false;
    memcpy(stem, name, n - (sizeof suffix - 1));
    stem[n - (sizeof suffix - 1)] = '\0';
    return fnmatch(pattern, stem, 0) == 0;
}

const qerr_override *qerr__overrides_match(const qerr_overrides *o, const char *name) {
    for (int i = 0; o && i < o->n; i++)
        if (matches(o->items[i].pattern, name)) return &o->items[i];
    return NULL;
}
