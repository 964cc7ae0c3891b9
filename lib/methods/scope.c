/* qerr_method_scopes: whether a method quantizes one weight, whole decoder
 * blocks, or either (read from its vtable). */
#include "method.h"

int qerr_method_scopes(const char *method) {
    QERR_CHECK(method, QERR_E_INVALID_ARG, "qerr_method_scopes: method is NULL");
    const qerr_method *m = qerr__method_find(method);
    QERR_CHECK(m, QERR_E_UNKNOWN_METHOD, "qerr_method_scopes: unknown method '%s'", method);
    int scopes = 0;
    if (m->quantize && !m->block_only) scopes |= QERR_SCOPE_LAYER;
    if (m->version >= 2 && m->quantize_block) scopes |= QERR_SCOPE_BLOCK;
    return scopes;
}
