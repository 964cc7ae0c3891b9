/* config.json of a LLaMA-family model (llama, mistral, qwen2, qwen3) as
 * transformers 4 or 5 writes it. Every key is read, or known not to change
 * the computation (HARMLESS, listed in docs/architectures.md), or refused by
 * name: a model the forward pass would compute differently from its
 * reference is never loaded. Values are checked for type and range so a bad
 * file gives a message, not a crash. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Dimensions beyond this are not a real model (and would overflow sizes). */
#define MAX_CONFIG_DIM ((int64_t)1 << 24)

enum { ARCH_LLAMA, ARCH_MISTRAL, ARCH_QWEN2, ARCH_QWEN3, ARCH_COUNT };
static const char *const ARCH_NAMES[ARCH_COUNT] = {"llama", "mistral", "qwen2", "qwen3"};

/* Keys read below for every model type. */
static const char *const READ_KEYS[] = {
    "model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "vocab_size", "head_dim", "hidden_act",
    "rms_norm_eps", "tie_word_embeddings", "rope_theta", "rope_scaling", "rope_parameters",
    "layer_types",
};
/* Keys read for some model types only (bit ARCH_* set). */
static const struct { const char *key; unsigned archs; } ARCH_KEYS[] = {
    {"attention_bias", 1u << ARCH_LLAMA | 1u << ARCH_QWEN3},
    {"mlp_bias", 1u << ARCH_LLAMA},
    {"sliding_window", 1u << ARCH_MISTRAL | 1u << ARCH_QWEN2 | 1u << ARCH_QWEN3},
    {"use_sliding_window", 1u << ARCH_QWEN2 | 1u << ARCH_QWEN3},
    {"max_window_layers", 1u << ARCH_QWEN2 | 1u << ARCH_QWEN3},
};
/* Keys that do not change a float forward pass at inference: training,
 * generation and tokenizer settings, bookkeeping. */
static const char *const HARMLESS[] = {
    "architectures", "attention_dropout", "bos_token_id", "eos_token_id", "pad_token_id",
    "sep_token_id", "decoder_start_token_id", "dtype", "torch_dtype", "initializer_range",
    "max_position_embeddings", "pretraining_tp", "transformers_version", "use_cache",
    "_name_or_path", "_commit_hash", "_attn_implementation_autoset", "tokenizer_class",
    "return_dict", "output_attentions", "output_hidden_states", "torchscript", "use_bfloat16",
    "is_decoder", "is_encoder_decoder", "add_cross_attention", "tie_encoder_decoder",
    "chunk_size_feed_forward", "finetuning_task", "id2label", "label2id", "problem_type",
    "prefix", "task_specific_params", "max_length", "min_length", "do_sample", "early_stopping",
    "num_beams", "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p",
    "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences", "output_scores",
    "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id",
    "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens",
    "begin_suppress_tokens",
};

static bool in_list(const char *key, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(key, list[i]) == 0) return true;
    return false;
}

/* Every top-level key is read for this model type or harmless. */
static int check_keys(const qerr_json *j, const char *what, int arch) {
    for (size_t i = 0; i < j->len; i++) {
        const char *k = j->keys[i];
        if (in_list(k, READ_KEYS, sizeof READ_KEYS / sizeof READ_KEYS[0]) ||
            in_list(k, HARMLESS, sizeof HARMLESS / sizeof HARMLESS[0]))
            continue;
        /* GPTQ checkpoints: their settings are read by gptq_read.c */
        const qerr_json *qm = qerr__json_get(&j->items[i], "quant_method");
        if (strcmp(k, "quantization_config") == 0 && qm && qm->type == QERR_JSON_STRING) {
            QERR_CHECK(strcmp(qm->str, "gptq") == 0, QERR_E_UNSUPPORTED,
                       "%s: \"quantization_config\" has quant_method \"%.32s\"; only GPTQ "
                       "checkpoints are read",
                       what, qm->str);
            continue;
        }
        bool ok = false;
        for (size_t a = 0; a < sizeof ARCH_KEYS / sizeof ARCH_KEYS[0] && !ok; a++)
            ok = strcmp(k, ARCH_KEYS[a].key) == 0 && (ARCH_KEYS[a].archs >> arch & 1u);
        QERR_CHECK(ok, QERR_E_UNSUPPORTED,
                   "%s: key \"%.64s\" is not understood for model_type %s and may change the "
                   "model; refused",
                   what, k, ARCH_NAMES[arch]);
    }
    return QERR_OK;
}

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

/* An optional integer: absent or null gives def. */
static int get_int_opt(const qerr_json *j, const char *what, const char *key, int64_t lo,
                       int64_t hi, int64_t def, int64_t *out) {
    const qerr_json *v = qerr__json_get(j, key);
    if (!v || v->type == QERR_JSON_NULL) {
        *out = def;
        return QERR_OK;
    }
    return get_int(j, what, key, lo, hi, out);
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

static int get_bool(const qerr_json *j, const char *what, const char *key, bool def, bool *out) {
    const qerr_json *v = qerr__json_get(j, key);
    if (!v || v->type == QERR_JSON_NULL) {
        *out = def;
        return QERR_OK;
    }
    QERR_CHECK(v->type == QERR_JSON_BOOL, QERR_E_FORMAT, "%s: \"%s\" must be true or false",
               what, key);
    *out = v->boolean;
    return QERR_OK;
}

/* A RoPE object: transformers 5's rope_parameters (with rope_theta inside)
 * or transformers 4's rope_scaling (theta at the top level, kept in r). */
static int read_rope_object(const qerr_json *o, const char *what, const char *name,
                            qerr_rope *r) {
    QERR_CHECK(o->type == QERR_JSON_OBJECT, QERR_E_FORMAT, "%s: \"%s\" must be an object or null",
               what, name);
    static const char *const known[] = {"rope_type", "type", "rope_theta", "factor",
                                        "low_freq_factor", "high_freq_factor",
                                        "original_max_position_embeddings"};
    const qerr_json *t = qerr__json_get(o, "rope_type");
    if (!t) t = qerr__json_get(o, "type"); /* older transformers 4 spelling */
    QERR_CHECK(!t || t->type == QERR_JSON_STRING, QERR_E_FORMAT,
               "%s: \"%s.rope_type\" must be a string", what, name);
    const char *type = t ? t->str : "default";
    if (strcmp(type, "default") == 0) r->type = QERR_ROPE_DEFAULT;
    else if (strcmp(type, "linear") == 0) r->type = QERR_ROPE_LINEAR;
    else if (strcmp(type, "llama3") == 0) r->type = QERR_ROPE_LLAMA3;
    else
        return qerr__fail(QERR_E_UNSUPPORTED,
                          "%s: rope type \"%.64s\" is not supported (default, linear and llama3 "
                          "are)",
                          what, type);
    for (size_t i = 0; i < o->len; i++)
        QERR_CHECK(in_list(o->keys[i], known, sizeof known / sizeof known[0]),
                   QERR_E_UNSUPPORTED,
                   "%s: key \"%s.%.64s\" is not understood and may change the model; refused",
                   what, name, o->keys[i]);
    if (qerr__json_get(o, "rope_theta"))
        QERR_TRY(get_double(o, what, "rope_theta", 0, 0.0, 1e12, &r->theta));
    if (r->type == QERR_ROPE_DEFAULT) return QERR_OK; /* HF ignores the scaling keys then */
    char key[96];
    snprintf(key, sizeof key, "%s.factor", name);
    QERR_CHECK(qerr__json_get(o, "factor"), QERR_E_FORMAT, "%s: missing key \"%s\"", what, key);
    QERR_TRY(get_double(o, what, "factor", 0, 0.0, 1e6, &r->factor));
    if (r->type != QERR_ROPE_LLAMA3) return QERR_OK;
    static const char *const need[] = {"low_freq_factor", "high_freq_factor",
                                       "original_max_position_embeddings"};
    for (size_t i = 0; i < 3; i++)
        QERR_CHECK(qerr__json_get(o, need[i]), QERR_E_FORMAT, "%s: missing key \"%s.%s\"", what,
                   name, need[i]);
    QERR_TRY(get_double(o, what, "low_freq_factor", 0, 0.0, 1e6, &r->low_freq_factor));
    QERR_TRY(get_double(o, what, "high_freq_factor", 0, 0.0, 1e6, &r->high_freq_factor));
    int64_t orig;
    QERR_TRY(get_int(o, what, "original_max_position_embeddings", 1, MAX_CONFIG_DIM, &orig));
    r->original_max = (double)orig;
    QERR_CHECK(r->high_freq_factor > r->low_freq_factor, QERR_E_FORMAT,
               "%s: \"%s.high_freq_factor\" must exceed low_freq_factor", what, name);
    return QERR_OK;
}

static bool rope_equal(const qerr_rope *a, const qerr_rope *b) {
    return a->type == b->type && a->theta == b->theta && a->factor == b->factor &&
           a->low_freq_factor == b->low_freq_factor &&
           a->high_freq_factor == b->high_freq_factor && a->original_max == b->original_max;
}

/* RoPE from either form; when both are present they must agree. */
static int read_rope(const qerr_json *j, const char *what, qerr_rope *r) {
    qerr_rope v4 = {QERR_ROPE_DEFAULT, 10000.0, 0, 0, 0, 0};
    QERR_TRY(get_double(j, what, "rope_theta", 10000.0, 0.0, 1e12, &v4.theta));
    const qerr_json *rs = qerr__json_get(j, "rope_scaling");
    if (rs && rs->type != QERR_JSON_NULL) QERR_TRY(read_rope_object(rs, what, "rope_scaling", &v4));
    const qerr_json *rp = qerr__json_get(j, "rope_parameters");
    if (!rp || rp->type == QERR_JSON_NULL) {
        *r = v4;
        return QERR_OK;
    }
    qerr_rope v5 = {QERR_ROPE_DEFAULT, 10000.0, 0, 0, 0, 0};
    QERR_TRY(read_rope_object(rp, what, "rope_parameters", &v5));
    QERR_CHECK(qerr__json_get(rp, "rope_theta"), QERR_E_FORMAT,
               "%s: missing key \"rope_parameters.rope_theta\"", what);
    const bool has_v4 = qerr__json_get(j, "rope_theta") || (rs && rs->type != QERR_JSON_NULL);
    QERR_CHECK(!has_v4 || rope_equal(&v4, &v5), QERR_E_FORMAT,
               "%s: rope_parameters and rope_theta/rope_scaling disagree", what);
    *r = v5;
    return QERR_OK;
}

/* Sliding-window attention: the window when some layer uses one, else 0. */
static int read_window(const qerr_json *j, const char *what, int arch, int64_t layers,
                       int64_t *window) {
    int64_t sw = 0;
    QERR_TRY(get_int_opt(j, what, "sliding_window", 1, INT64_MAX, 0, &sw));
    bool use = arch == ARCH_MISTRAL; /* Mistral: a window whenever one is set */
    if (arch == ARCH_QWEN2 || arch == ARCH_QWEN3) {
        int64_t mwl;
        QERR_TRY(get_bool(j, what, "use_sliding_window", false, &use));
        QERR_TRY(get_int_opt(j, what, "max_window_layers", 0, INT64_MAX, 0, &mwl));
    }
    const qerr_json *lt = qerr__json_get(j, "layer_types");
    if (lt && lt->type != QERR_JSON_NULL) {
        QERR_CHECK(lt->type == QERR_JSON_ARRAY && (int64_t)lt->len == layers, QERR_E_FORMAT,
                   "%s: \"layer_types\" must be a list of num_hidden_layers strings", what);
        for (size_t i = 0; i < lt->len; i++) {
            const qerr_json *e = &lt->items[i];
            bool full = e->type == QERR_JSON_STRING && strcmp(e->str, "full_attention") == 0;
            bool sliding = e->type == QERR_JSON_STRING &&
                           strcmp(e->str, "sliding_attention") == 0 && arch != ARCH_LLAMA;
            QERR_CHECK(full || sliding, QERR_E_UNSUPPORTED,
                       "%s: layer_types[%zu] = \"%.64s\" is not supported", what, i,
                       e->type == QERR_JSON_STRING ? e->str : "?");
            use |= sliding;
        }
    }
    *window = use ? sw : 0;
    return QERR_OK;
}

int qerr__config_from_json(const qerr_json *j, const char *what, qerr_model_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    QERR_CHECK(j && j->type == QERR_JSON_OBJECT, QERR_E_FORMAT, "%s: not a JSON object", what);
    int arch = ARCH_LLAMA;
    const qerr_json *mt = qerr__json_get(j, "model_type");
    if (mt) {
        QERR_CHECK(mt->type == QERR_JSON_STRING, QERR_E_FORMAT,
                   "%s: \"model_type\" must be a string", what);
        for (arch = 0; arch < ARCH_COUNT && strcmp(mt->str, ARCH_NAMES[arch]) != 0; arch++) {}
        QERR_CHECK(arch < ARCH_COUNT, QERR_E_UNSUPPORTED,
                   "%s: model_type \"%.64s\" is not supported (llama, mistral, qwen2, qwen3 are)",
                   what, mt->str);
    }
    cfg->model_type = ARCH_NAMES[arch];
    QERR_TRY(check_keys(j, what, arch));
    const qerr_json *act = qerr__json_get(j, "hidden_act");
    if (act)
        QERR_CHECK(act->type == QERR_JSON_STRING && strcmp(act->str, "silu") == 0,
                   QERR_E_UNSUPPORTED, "%s: hidden_act must be \"silu\"", what);
    QERR_TRY(get_int(j, what, "hidden_size", 1, MAX_CONFIG_DIM, &cfg->hidden));
    QERR_TRY(get_int(j, what, "intermediate_size", 1, MAX_CONFIG_DIM, &cfg->inter));
    QERR_TRY(get_int(j, what, "num_hidden_layers", 1, 4096, &cfg->layers));
    QERR_TRY(get_int(j, what, "num_attention_heads", 1, 4096, &cfg->heads));
    QERR_TRY(get_int(j, what, "vocab_size", 1, MAX_CONFIG_DIM, &cfg->vocab));
    QERR_TRY(get_int_opt(j, what, "num_key_value_heads", 1, cfg->heads, cfg->heads,
                         &cfg->kv_heads));
    QERR_CHECK(cfg->heads % cfg->kv_heads == 0, QERR_E_FORMAT,
               "%s: num_attention_heads %lld is not a multiple of num_key_value_heads %lld",
               what, (long long)cfg->heads, (long long)cfg->kv_heads);
    const qerr_json *hd = qerr__json_get(j, "head_dim");
    if (hd && hd->type != QERR_JSON_NULL) {
        QERR_TRY(get_int(j, what, "head_dim", 2, 4096, &cfg->head_dim));
    } else {
        QERR_CHECK(arch != ARCH_QWEN3, QERR_E_FORMAT, "%s: missing key \"head_dim\"", what);
        QERR_CHECK(cfg->hidden % cfg->heads == 0, QERR_E_FORMAT,
                   "%s: hidden_size %lld is not a multiple of num_attention_heads %lld", what,
                   (long long)cfg->hidden, (long long)cfg->heads);
        cfg->head_dim = cfg->hidden / cfg->heads;
    }
    QERR_CHECK(cfg->head_dim % 2 == 0, QERR_E_FORMAT, "%s: head dimension %lld is odd (RoPE)",
               what, (long long)cfg->head_dim);
    QERR_TRY(get_bool(j, what, "tie_word_embeddings", false, &cfg->tied));
    QERR_TRY(read_rope(j, what, &cfg->rope));
    QERR_TRY(get_double(j, what, "rms_norm_eps", 1e-6, 0.0, 1.0, &cfg->rms_eps));
    bool attn_bias = false, mlp_bias = false;
    QERR_TRY(get_bool(j, what, "attention_bias", false, &attn_bias));
    QERR_TRY(get_bool(j, what, "mlp_bias", false, &mlp_bias));
    for (int lin = 0; lin < QERR_LIN_COUNT; lin++) {
        const bool attn = lin <= QERR_LIN_O, qkv = lin < QERR_LIN_O;
        if (arch == ARCH_QWEN2) cfg->bias[lin] = qkv; /* Qwen2: q/k/v always, o never */
        else cfg->bias[lin] = attn ? attn_bias : mlp_bias;
    }
    cfg->qk_norm = arch == ARCH_QWEN3;
    QERR_TRY(read_window(j, what, arch, cfg->layers, &cfg->sliding_window));
    return QERR_OK;
}

int qerr__config_check_window(const qerr_model_config *cfg, int64_t T, const char *what) {
    QERR_CHECK(cfg->sliding_window <= 0 || T <= cfg->sliding_window, QERR_E_UNSUPPORTED,
               "%s: windows of %lld tokens are longer than the model's sliding_window %lld "
               "(sliding-window attention is not supported)",
               what, (long long)T, (long long)cfg->sliding_window);
    return QERR_OK;
}

bool qerr__config_has_extras(const qerr_model_config *cfg, char *why, size_t cap) {
    for (int lin = 0; lin < QERR_LIN_COUNT; lin++) {
        if (!cfg->bias[lin]) continue;
        snprintf(why, cap, "%s model with a %s.bias", cfg->model_type, qerr__lin_names[lin]);
        return true;
    }
    if (!cfg->qk_norm) return false;
    snprintf(why, cap, "%s model with q/k norms (self_attn.q_norm, self_attn.k_norm)",
             cfg->model_type);
    return true;
}
