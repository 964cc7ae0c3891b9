/* `qerr methods`: every method compiled into libqerr with its settings,
 * read through the introspection API. */
#include "cli.h"

#include <string.h>

static const char *type_name(int type) {
    switch (type) {
    case QERR_PARAM_INT: return "int";
    case QERR_PARAM_DOUBLE: return "float";
    case QERR_PARAM_BOOL: return "bool";
    case QERR_PARAM_CHOICE: return "choice";
    default: return "?";
    }
}

/* Where the method works, in words. */
static const char *scope_text(int scopes) {
    switch (scopes) {
    case QERR_SCOPE_LAYER: return "layer-wise: one weight at a time (qerr_quantize, or every "
                                  "layer of a model)";
    case QERR_SCOPE_BLOCK: return "block-wise only: trains whole decoder blocks of a model (qerr "
                                  "quantize, compare); a single weight is refused";
    case QERR_SCOPE_LAYER | QERR_SCOPE_BLOCK: return "layer-wise, or block-wise with scope=block";
    default: return "?";
    }
}

/* A range as its bounds, with a value the method refuses inside it left
 * out: group_size's "-1, 1..1073741824". */
static void range_text(const char *key, int type, double lo, double hi, const char *choices,
                       char *buf, size_t cap) {
    if (type == QERR_PARAM_CHOICE) snprintf(buf, cap, "%s", choices);
    else if (type == QERR_PARAM_BOOL) snprintf(buf, cap, "0|1");
    else if (type == QERR_PARAM_INT && strcmp(key, "group_size") == 0 && lo == -1)
        snprintf(buf, cap, "-1, 1..%.0f", hi);
    else if (type == QERR_PARAM_INT) snprintf(buf, cap, "%.0f..%.0f", lo, hi);
    else snprintf(buf, cap, "%g..%g", lo, hi);
}

static int print_method(const char *name) {
    const char *summary = qerr_method_summary(name);
    int scopes = qerr_method_scopes(name);
    if (scopes < 0) return cli_fail(name, scopes);
    printf("%s: %s\n  %s\n", name, summary ? summary : "", scope_text(scopes));
    int n = qerr_method_param_count(name);
    if (n < 0) return cli_fail(name, n);
    static const char *const header[] = {"key", "type", "default", "range", "meaning"};
    static const bool right[] = {false, false, true, false, false};
    cli_table t;
    cli_table_init(&t, 5, header, right);
    for (int i = 0; i < n; i++) {
        const char *key, *def, *choices, *help;
        int type;
        double lo, hi;
        int rc = qerr_method_param_info(name, i, &key, &type, &def, &lo, &hi, &choices, &help);
        if (rc != QERR_OK) {
            cli_table_free(&t);
            return cli_fail(name, rc);
        }
        char range[96];
        range_text(key, type, lo, hi, choices, range, sizeof range);
        const char *cells[] = {key, type_name(type), def, range, help};
        cli_table_row(&t, cells);
    }
    fputc('\n', stdout);
    cli_table_print(&t, stdout);
    cli_table_free(&t);
    return CLI_OK;
}

int cli_cmd_methods(int argc, char **argv) {
    cli_command cmd = {"methods", "[METHOD]",
                       "List the quantization methods compiled into libqerr, where each works\n"
                       "(layer-wise, block-wise), and every plan key with its type, default and\n"
                       "range. A plan spec is METHOD:key=value,key=value.",
                       NULL, NULL, 0, {0}, {0}};
    /* one optional positional argument: a method name */
    const char *only = NULL;
    if (argc >= 1 && strncmp(argv[0], "-", 1) != 0) {
        only = argv[0];
        argc--;
        argv++;
    }
    bool help;
    int rc = cli_parse(&cmd, argc, argv, &help);
    if (rc != CLI_OK || help) return rc;
    if (only) {
        if (!qerr_method_summary(only)) {
            fprintf(stderr, "qerr methods: no method named '%s'\n", only);
            return CLI_USAGE;
        }
        return print_method(only);
    }
    int count = qerr_method_count();
    for (int i = 0; i < count; i++) {
        if (i) fputc('\n', stdout);
        rc = print_method(qerr_method_name(i));
        if (rc != CLI_OK) return rc;
    }
    return CLI_OK;
}
