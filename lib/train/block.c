/* The LLaMA decoder block with hooks, instantiated in float and double from
 * block_impl.h, plus the shape helpers both share. */
#include "train.h"

#include <stdlib.h>
#include <string.h>

int qerr__block_config_check(const qerr_block_config *cfg) {
    QERR_CHECK(cfg, QERR_E_INVALID_ARG, "block: NULL config");
    QERR_CHECK(cfg->hidden >= 1 && cfg->inter >= 1 && cfg->heads >= 1 && cfg->kv_heads >= 1 &&
                   cfg->head_dim >= 2 && cfg->head_dim % 2 == 0,
               QERR_E_SHAPE, "block: hidden %lld, inter %lld, heads %lld/%lld, head_dim %lld",
               (long long)cfg->hidden, (long long)cfg->inter, (long long)cfg->heads,
               (long long)cfg->kv_heads, (long long)cfg->head_dim);
    QERR_CHECK(cfg->heads % cfg->kv_heads == 0, QERR_E_SHAPE,
               "block: %lld heads are not a multiple of %lld kv heads", (long long)cfg->heads,
               (long long)cfg->kv_heads);
    QERR_CHECK(cfg->hidden <= (1 << 20) && cfg->inter <= (1 << 22) && cfg->heads <= 4096 &&
                   cfg->head_dim <= 4096,
               QERR_E_RANGE, "block: sizes too large");
    QERR_CHECK(cfg->eps > 0 && cfg->theta > 0, QERR_E_RANGE, "block: eps %g, theta %g", cfg->eps,
               cfg->theta);
    return QERR_OK;
}

int qerr__block_refuse_extras(const qerr_block_config *cfg, const char *who) {
    for (int l = 0; l < QERR_LIN_COUNT; l++)
        QERR_CHECK(!cfg->bias[l], QERR_E_UNSUPPORTED,
                   "%s: a block with a %s.bias is not supported (its transforms would have to "
                   "fold into the bias); use a weight-only block-wise or a layer-wise method",
                   who, qerr__lin_names[l]);
    QERR_CHECK(!cfg->qk_norm, QERR_E_UNSUPPORTED,
               "%s: a block with q/k norms (self_attn.q_norm, self_attn.k_norm) is not "
               "supported; use a weight-only block-wise or a layer-wise method",
               who);
    return QERR_OK;
}

void qerr__block_linear_shape(const qerr_block_config *cfg, int lin, int64_t *out, int64_t *in) {
    const int64_t qd = cfg->heads * cfg->head_dim, kvd = cfg->kv_heads * cfg->head_dim;
    switch (lin) {
    case QERR_LIN_Q: *out = qd; *in = cfg->hidden; break;
    case QERR_LIN_K:
    case QERR_LIN_V: *out = kvd; *in = cfg->hidden; break;
    case QERR_LIN_O: *out = cfg->hidden; *in = qd; break;
    case QERR_LIN_GATE:
    case QERR_LIN_UP: *out = cfg->inter; *in = cfg->hidden; break;
    default: *out = cfg->hidden; *in = cfg->inter; break; /* down */
    }
}

int64_t qerr__block_site_cols(const qerr_block_config *cfg, int site) {
    switch (site) {
    case QERR_SITE_ATTN_IN:
    case QERR_SITE_MLP_IN: return cfg->hidden;
    case QERR_SITE_Q:
    case QERR_SITE_O_IN: return cfg->heads * cfg->head_dim;
    case QERR_SITE_K:
    case QERR_SITE_V: return cfg->kv_heads * cfg->head_dim;
    default: return cfg->inter; /* down input */
    }
}

#include "real_def.h"
#include "block_impl.h"
#define TR_DOUBLE
#include "real_def.h"
#include "block_impl.h"
