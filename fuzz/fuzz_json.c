/* libFuzzer target for the strict JSON parser and the config.json reader:
 * any byte string must give a status, never a crash; every string that
 * parses is valid UTF-8. */
#include "llama/model.h" /* JSON reader and the config keys */

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const qerr_json *j, int depth) {
    if (depth > QERR_JSON_MAX_DEPTH) abort();
    if (j->type == QERR_JSON_STRING &&
        (strlen(j->str) != j->len || !qerr__utf8_valid((const uint8_t *)j->str, j->len)))
        abort();
    if (j->type == QERR_JSON_ARRAY || j->type == QERR_JSON_OBJECT)
        for (size_t i = 0; i < j->len; i++) {
            if (j->type == QERR_JSON_OBJECT && !qerr__utf8_valid((const uint8_t *)j->keys[i],
                                                                 strlen(j->keys[i])))
                abort();
            walk(&j->items[i], depth + 1);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size ? size : 1); /* private copy: catches over-reads */
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    qerr_json *j = NULL;
    if (qerr__json_parse(buf, size, "fuzz", &j) == QERR_OK) {
        walk(j, 0);
        qerr_model_config cfg;
        (void)qerr__config_from_json(j, "fuzz", &cfg);
        qerr__json_free(j);
    }
    free(buf);
    return 0;
}
