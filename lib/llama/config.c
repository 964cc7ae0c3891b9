/* config.json of a LLaMA-family model: the keys the forward pass needs, each
 * checked for type and range so a bad file gives a message, not a crash. */
#include "model.h"

#include <math.h>
#include <string.h>

/* Dimensions beyond this are not a real model (and would overflow sizes). */
#define MAX_CONFIG_DIM ((int64_t)1 << 24)

static int get_int(const qerr_json *j, const char *what, const char *key, int64_t lo, int64_t hi,
                   int64_t *out) {
    const qerr_json *v = qerr__json_get(j, key);
    QERR_CHECK(v, QERR_E_FORMAT, "%s: missing key \"%s\"", what, key);
    QERR_CHECK(v->type == QERR_JSON_NUMBER && v->is_int, QERR_E_FORMAT,
               "%s: \"%s\" must be an integer", what, key);
    QERR_CHECK(v->integer >= lo && v->integer <= hi, QERR_E_FORMAT,
               "%s: \"%s\" = %lld is outside %lld..%lld", what, key, (long long)v->integer,
               (long long)lo, (long long)hi);
    *out = v->integer;
    return QERR_OK;
}

static int get_double(const qerr_json *j, const char *what, const char *key, double def,
                      double lo, double hi, double *out) {
    const qerr_json *v = qerr__json_get(j, key);
    if (!v || v->type == QERR_JSON_NULL) {
        *out = def;
        return QERR_OK;
    }
    QERR_CHECK(v->type == QERR_JSON_NUMBER, QERR_E_FORMAT, "%s: \"%s\" must be a number", what,
               key);
    QERR_CHECK(v->number > lo && v->number < hi, QERR_E_FORMAT,
               "%s: \"%s\" = %g is outside (%g, %g)", what, key, v->number, lo, hi);
    *out = v->number;
    return QERR_OK;
}

int qerr__config_from_json(const qerr_json *j, const char *what, qerr_model_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    QERR_CHECK(j && j->type == QERR_JSON_OBJECT, QERR_E_FORMAT, "%s: not a JSON object", what);
    const qerr_json *mt = qerr__json_get(j, "model_type");
    if (mt)
        QERR_CHECK(mt->type == QERR_JSON_STRING &&
                       (strcmp(mt->str, "llama") == 0 || strcmp(mt->str, "mistral") == 0),
                   QERR_E_UNSUPPORTED, "%s: model_type \"%.64s\" is not a LLaMA-family model",
                   what, mt->type == QERR_JSON_STRING ? mt->str : "?");
    const qerr_json *act = qerr__json_get(j, "hidden_act");
    if (act)
        QERR_CHECK(act->type == QERR_JSON_STRING && strcmp(act->str, "silu") == 0,
                   QERR_E_UNSUPPORTED, "%s: hidden_act must be \"silu\"", what);
    QERR_TRY(get_int(j, what, "hidden_size", 1, MAX_CONFIG_DIM, &cfg->hidden));
    QERR_TRY(get_int(j, what, "intermediate_size", 1, MAX_CONFIG_DIM, &cfg->inter));
    QERR_TRY(get_int(j, what, "num_hidden_layers", 1, 4096, &cfg->layers));
    QERR_TRY(get_int(j, what, "num_attention_heads", 1, 4096, &cfg->heads));
    QERR_TRY(get_int(j, what, "vocab_size", 1, MAX_CONFIG_DIM, &cfg->vocab));
    if (qerr__json_get(j, "num_key_value_heads"))
        QERR_TRY(get_int(j, what, "num_key_value_heads", 1, cfg->heads, &cfg->kv_heads));
    else
        cfg->kv_heads = cfg->heads;
    QERR_CHECK(cfg->hidden % cfg->heads == 0, QERR_E_FORMAT,
               "%s: hidden_size %lld is not a multiple of num_attention_heads %lld", what,
               (long long)cfg->hidden, (long long)cfg->heads);
    QERR_CHECK(cfg->heads % cfg->kv_heads == 0, QERR_E_FORMAT,
               "%s: num_attention_heads %lld is not a multiple of num_key_value_heads %lld",
               what, (long long)cfg->heads, (long long)cfg->kv_heads);
    cfg->head_dim = cfg->hidden / cfg->heads;
    QERR_CHECK(cfg->head_dim % 2 == 0, QERR_E_FORMAT, "%s: head dimension %lld is odd (RoPE)",
               what, (long long)cfg->head_dim);
    const qerr_json *hd = qerr__json_get(j, "head_dim");
    if (hd && hd->type != QERR_JSON_NULL)
        QERR_CHECK(hd->type == QERR_JSON_NUMBER && hd->is_int && hd->integer == cfg->head_dim,
                   QERR_E_UNSUPPORTED, "%s: head_dim other than hidden_size / heads", what);
    const qerr_json *rs = qerr__json_get(j, "rope_scaling");
    QERR_CHECK(!rs || rs->type == QERR_JSON_NULL, QERR_E_UNSUPPORTED,
               "%s: rope_scaling is not supported", what);
    const qerr_json *tie = qerr__json_get(j, "tie_word_embeddings");
    if (tie) {
        QERR_CHECK(tie->type == QERR_JSON_BOOL, QERR_E_FORMAT,
                   "%s: \"tie_word_embeddings\" must be true or false", what);
        cfg->tied = tie->boolean;
    }
    QERR_TRY(get_double(j, what, "rope_theta", 10000.0, 0.0, 1e12, &cfg->rope_theta));
    QERR_TRY(get_double(j, what, "rms_norm_eps", 1e-6, 0.0, 1.0, &cfg->rms_eps));
    return QERR_OK;
}
