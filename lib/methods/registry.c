/* The one list of methods compiled into the library. Add a method by adding
 * its vtable here; the order is the order qerr_method_name() reports. */
#include "method.h"

#include <string.h>

extern const qerr_method qerr__rtn_method;
extern const qerr_method qerr__gptq_method;
extern const qerr_method qerr__quantease_method, qerr__quantease_outlier_method;
extern const qerr_method qerr__omniquant_method, qerr__cqe_method;
extern const qerr_method qerr__flatquant_method;
extern const qerr_method qerr__ggml_method;

static const qerr_method *const methods[] = {
    &qerr__rtn_method,
    &qerr__gptq_method,
    &qerr__quantease_method, &qerr__quantease_outlier_method,
    &qerr__omniquant_method, &qerr__cqe_method,
    &qerr__flatquant_method,
    &qerr__ggml_method,
};

int qerr__method_count(void) { return (int)(sizeof methods / sizeof methods[0]); }

const qerr_method *qerr__method_at(int index) {
    if (index < 0 || index >= qerr__method_count()) return NULL;
    return methods[index];
}

const qerr_method *qerr__method_find(const char *name) {
    for (int i = 0; i < qerr__method_count(); i++)
        if (methods[i] && strcmp(methods[i]->name, name) == 0) return methods[i];
    return NULL;
}
