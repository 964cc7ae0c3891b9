/* A plan key added to --plan and --override specs that do not set it, for
 * the methods that have it: --format gptq adds scale_dtype=f16, so the
 * checkpoint holds exactly the scales the codes were chosen against. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static bool method_has_key(const char *method, const char *key) {
    int n = qerr_method_param_count(method);
    for (int i = 0; i < n; i++) {
        const char *k = NULL;
        if (qerr_method_param_info(method, i, &k, NULL, NULL, NULL, NULL, NULL, NULL) == QERR_OK &&
            strcmp(k, key) == 0)
            return true;
    }
    return false;
}

/* Whether "method:k=v,k=v" sets key. */
static bool spec_sets(const char *spec, const char *key) {
    const char *p = strchr(spec, ':');
    size_t kl = strlen(key);
    while (p) {
        p++;
        if (strncmp(p, key, kl) == 0 && p[kl] == '=') return true;
        p = strchr(p, ',');
    }
    return false;
}

/* spec (length len) into out, with ",key=value" (or ":key=value") added
 * when its method has the key and the spec does not set it. */
static void add_to_spec(const char *spec, size_t len, const char *key, const char *value,
                        char *out) {
    char *s = out + strlen(out);
    memcpy(s, spec, len);
    s[len] = '\0';
    size_t ml = strcspn(s, ":");
    char method[128];
    if (ml >= sizeof method) return;
    memcpy(method, s, ml);
    method[ml] = '\0';
    if (strcmp(s, "float") == 0 || !method_has_key(method, key) || spec_sets(s, key)) return;
    strcat(s, s[ml] == ':' ? (s[ml + 1] ? "," : "") : ":");
    strcat(s, key);
    strcat(s, "=");
    strcat(s, value);
}

char *cli_spec_with_key(const char *spec, const char *key, const char *value) {
    size_t n = strlen(spec);
    char *out = malloc(n + strlen(key) + strlen(value) + 3);
    if (!out) return NULL;
    out[0] = '\0';
    add_to_spec(spec, n, key, value, out);
    return out;
}

char *cli_overrides_with_key(const char *overrides, const char *key, const char *value) {
    size_t items = 1;
    for (const char *c = overrides; *c; c++) items += *c == ';';
    char *out = malloc(strlen(overrides) + items * (strlen(key) + strlen(value) + 3) + 1);
    if (!out) return NULL;
    out[0] = '\0';
    for (const char *item = overrides; *item;) {
        size_t len = strcspn(item, ";");
        const char *eq = memchr(item, '=', len);
        if (eq) { /* "PAT=SPEC": the spec without surrounding blanks */
            const char *spec = eq + 1, *end = item + len;
            while (spec < end && (*spec == ' ' || *spec == '\t')) spec++;
            while (end > spec && (end[-1] == ' ' || end[-1] == '\t')) end--;
            strncat(out, item, (size_t)(spec - item));
            add_to_spec(spec, (size_t)(end - spec), key, value, out);
            strncat(out, end, (size_t)(item + len - end));
        } else { /* left for the library to refuse */
            strncat(out, item, len);
        }
        item += len;
        if (*item == ';') {
            strcat(out, ";");
            item++;
        }
    }
    return out;
}
