/* Per-tensor plan overrides of qerr_model_quantize (overrides.c). */
#ifndef QERR_OVERRIDES_H
#define QERR_OVERRIDES_H

#include "../core/internal.h"

typedef struct qerr_override {
    char *pattern;
    qerr_plan *plan; /* NULL means keep the tensor in float */
} qerr_override;

typedef struct qerr_overrides {
    int n;
    qerr_override *items;
} qerr_overrides;

/* Parse "pattern=spec;..." (NULL or "" gives an empty list). */
int qerr__overrides_parse(const char *text, qerr_overrides *o);
void qerr__overrides_free(qerr_overrides *o);
/* The first override whose glob matches `name` or `name` minus ".weight". */
const qerr_override *qerr__overrides_match(const qerr_overrides *o, const char *name);

#endif
