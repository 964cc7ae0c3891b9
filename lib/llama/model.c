/* qerr_model_load: config.json + model.safetensors (or shards listed in
 * model.safetensors.index.json), mapped and left in their stored dtype; the
 * LLaMA tensor set, shapes and finiteness checked once here so the forward
 * pass can trust them. A tensor is converted to float32 on first use; on a
 * streaming model a decoder layer's copies are dropped again when its last
 * user releases it, so one layer at a time is resident. Tied embeddings: one
 * tensor answers to both names. */
#include "model.h"
#include "gguf_arch.h"
#include "../io/gguf.h"

#include "gptq_read.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_CONFIG_BYTES ((size_t)16 << 20)
#define MAX_SHARDS 4096
/* Models whose float32 weights exceed this stream by default. */
#define STREAM_ABOVE_BYTES ((int64_t)2 << 30)

static const char EMBED[] = "model.embed_tokens.weight";
static const char HEAD[] = "lm_head.weight";

const char *const qerr__lin_names[QERR_LIN_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

static int join_path(char **out, const char *dir, const char *file) {
    size_t n = strlen(dir) + strlen(file) + 2;
    *out = malloc(n);
    QERR_CHECK(*out, QERR_E_NOMEM, "qerr_model_load: out of memory");
    snprintf(*out, n, "%s/%s", dir, file);
    return QERR_OK;
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int qerr__model_find(const qerr_model *m, const char *name) {
    for (int i = 0; m && name && i < m->n; i++)
        if (strcmp(m->entries[i].name, name) == 0) return i;
    return -1;
}

/* Float32 copy of entry i (its owner's, for an alias); caller holds m->lock. */
static int materialize(qerr_model *m, int i) {
    qerr_model_entry *e = &m->entries[m->entries[i].owner];
    if (e->t) return QERR_OK;
    QERR_CHECK(e->src, QERR_E_INTERNAL, "model tensor '%.128s' has no data", e->name);
    qerr_tensor *t;
    QERR_TRY(qerr_tensor_create(&t, QERR_DTYPE_F32, e->ndim, e->shape));
    qerr__st_to_f32(e->src, t->data);
    for (int f = 0; f < m->nfiles; f++) {
        const qerr_st_file *sf = &m->files[f];
        if (e->src >= sf->entries && e->src < sf->entries + sf->n) qerr__st_drop_pages(sf, e->src);
    }
    e->t = t;
    return QERR_OK;
}

/* Name of tensor `suffix` of layer l ("self_attn.q_proj" + ".bias"). */
static void layer_name(char *buf, size_t cap, int64_t l, const char *suffix, const char *kind) {
    snprintf(buf, cap, "model.layers.%lld.%s.%s", (long long)l, suffix, kind);
}

static float *data_locked(qerr_model *m, int i, bool pin) {
    if (materialize(m, i) != QERR_OK) return NULL;
    if (pin) m->entries[m->entries[i].owner].pinned = true;
    return m->entries[m->entries[i].owner].t->data;
}

static float *model_data(const qerr_model *cm, const char *name, bool pin) {
    qerr_model *m = (qerr_model *)cm; /* the cache is not part of the model's value */
    int i = qerr__model_find(m, name);
    if (i < 0) return NULL;
    pthread_mutex_lock(&m->lock);
    float *d = data_locked(m, i, pin);
    pthread_mutex_unlock(&m->lock);
    return d;
}

float *qerr__model_data(const qerr_model *m, const char *name) {
    return model_data(m, name, false);
}

static bool layer_fill(const qerr_model *m, int64_t l, qerr_layer_weights *w, bool pin) {
    char name[128];
#define GET(field, suffix)                                                                  \
    layer_name(name, sizeof name, l, suffix, "weight");                                    \
    w->field = model_data(m, name, pin)
    GET(attn_norm, "input_layernorm");
    GET(mlp_norm, "post_attention_layernorm");
    GET(q, "self_attn.q_proj");
    GET(k, "self_attn.k_proj");
    GET(v, "self_attn.v_proj");
    GET(o, "self_attn.o_proj");
    GET(gate, "mlp.gate_proj");
    GET(up, "mlp.up_proj");
    GET(down, "mlp.down_proj");
    GET(q_norm, "self_attn.q_norm");
    GET(k_norm, "self_attn.k_norm");
#undef GET
    bool ok = w->attn_norm && w->mlp_norm && w->q && w->k && w->v && w->o && w->gate && w->up &&
              w->down;
    for (int lin = 0; lin < QERR_LIN_COUNT; lin++) {
        layer_name(name, sizeof name, l, qerr__lin_names[lin], "bias");
        w->bias[lin] = m->cfg.bias[lin] ? model_data(m, name, pin) : NULL;
        ok &= !m->cfg.bias[lin] || w->bias[lin];
    }
    if (!m->cfg.qk_norm) w->q_norm = w->k_norm = NULL;
    else ok &= w->q_norm && w->k_norm;
    return ok;
}

void qerr__model_layer(const qerr_model *m, int64_t l, qerr_layer_weights *w) {
    (void)layer_fill(m, l, w, true);
}

void qerr__model_layer_peek(const qerr_model *m, int64_t l, qerr_layer_weights *w) {
    (void)layer_fill(m, l, w, false);
}

int qerr__model_layer_acquire(const qerr_model *cm, int64_t l, qerr_layer_weights *w) {
    qerr_model *m = (qerr_model *)cm;
    QERR_CHECK(l >= 0 && l < m->cfg.layers, QERR_E_INTERNAL, "model layer %lld does not exist",
               (long long)l);
    pthread_mutex_lock(&m->lock);
    m->layer_refs[l]++;
    pthread_mutex_unlock(&m->lock);
    if (layer_fill(m, l, w, false)) return QERR_OK;
    qerr__model_layer_release(m, l);
    return qerr__fail(QERR_E_NOMEM, "model layer %lld: out of memory for its float32 weights",
                      (long long)l);
}

void qerr__model_layer_release(const qerr_model *cm, int64_t l) {
    qerr_model *m = (qerr_model *)cm;
    if (l < 0 || l >= m->cfg.layers) return;
    pthread_mutex_lock(&m->lock);
    if (m->layer_refs[l] > 0 && --m->layer_refs[l] == 0 && m->streaming) {
        for (int i = 0; i < m->n; i++) {
            qerr_model_entry *e = &m->entries[i];
            if (e->layer != l || e->alias || e->pinned || !e->t) continue;
            qerr_tensor_free(e->t);
            e->t = NULL;
        }
    }
    pthread_mutex_unlock(&m->lock);
}

static int64_t entry_numel(const qerr_model_entry *e) {
    int64_t n = 1;
    for (int d = 0; d < e->ndim; d++) n *= e->shape[d];
    return n;
}

int64_t qerr__model_layer_bytes(const qerr_model *m) {
    int64_t b = 0;
    for (int i = 0; i < m->n; i++)
        if (m->entries[i].layer == 0 && !m->entries[i].alias)
            b += entry_numel(&m->entries[i]) * (int64_t)sizeof(float);
    return b;
}

int64_t qerr__model_f32_bytes(const qerr_model *m) {
    int64_t b = 0;
    for (int i = 0; i < m->n; i++)
        if (!m->entries[i].alias) b += entry_numel(&m->entries[i]) * (int64_t)sizeof(float);
    return b;
}

/* Decoder layer of "model.layers.N.*", else -1. */
static int64_t layer_of(const char *name) {
    static const char pre[] = "model.layers.";
    if (strncmp(name, pre, sizeof pre - 1) != 0) return -1;
    char *end;
    long long l = strtoll(name + sizeof pre - 1, &end, 10);
    return (end != name + sizeof pre - 1 && *end == '.' && l >= 0) ? (int64_t)l : -1;
}

static int add_entry(qerr_model *m, int cap, const char *name, const qerr_st_entry *src,
                     int owner) {
    QERR_CHECK(m->n < cap, QERR_E_INTERNAL, "qerr_model_load: entry table overflow");
    char *copy = strdup(name);
    QERR_CHECK(copy, QERR_E_NOMEM, "qerr_model_load: out of memory");
    const int i = m->n++;
    qerr_model_entry *e = &m->entries[i];
    const qerr_model_entry *o = owner >= 0 ? &m->entries[owner] : NULL;
    *e = (qerr_model_entry){copy, NULL, o != NULL, o ? owner : i, o ? o->src : src,
                            layer_of(name), false, o ? o->ndim : src->ndim, {0}, 0};
    memcpy(e->shape, o ? o->shape : src->shape, sizeof e->shape);
    e->file_dtype = o ? o->file_dtype : src->dtype;
    return QERR_OK;
}

void qerr__model_add_loaded(qerr_model *m, char *name, qerr_tensor *t, int alias_of) {
    const int i = m->n++;
    qerr_model_entry *e = &m->entries[i];
    const qerr_model_entry *o = alias_of >= 0 ? &m->entries[alias_of] : NULL;
    *e = (qerr_model_entry){name, o ? NULL : t, o != NULL, o ? alias_of : i, o ? o->src : NULL,
                            layer_of(name), true, o ? o->ndim : t->ndim, {0}, 0};
    memcpy(e->shape, o ? o->shape : t->shape, sizeof e->shape);
    e->file_dtype = alias_of >= 0 ? m->entries[alias_of].file_dtype : t->dtype;
}

int qerr__model_add(qerr_model *m, int cap, const char *name, qerr_tensor *t, bool alias) {
    QERR_CHECK(m->n < cap, QERR_E_INTERNAL, "qerr_model_load: entry table overflow");
    char *copy = strdup(name);
    if (!copy) {
        if (!alias) qerr_tensor_free(t);
        return qerr__fail(QERR_E_NOMEM, "qerr_model_load: out of memory");
    }
    int owner = -1; /* an alias answers with the entry that holds t */
    for (int j = 0; alias && j < m->n && owner < 0; j++)
        if (m->entries[j].t == t) owner = j;
    if (alias && owner < 0) {
        free(copy);
        return qerr__fail(QERR_E_INTERNAL, "qerr_model_load: alias of an unknown tensor");
    }
    qerr__model_add_loaded(m, copy, alias ? NULL : t, owner);
    return QERR_OK;
}

/* Index every tensor of one shard, its bytes left in the mapping (the parts
 * of GPTQ modules are left to qerr__gptq_load). */
static int take_shard(qerr_model *m, int cap, const qerr_st_file *f, const char *path,
                      bool gptq) {
    for (int i = 0; i < f->n; i++) {
        const qerr_st_entry *e = &f->entries[i];
        if (gptq && qerr__gptq_is_part(e->name)) continue;
        QERR_CHECK(e->dtype != QERR__DTYPE_I32, QERR_E_UNSUPPORTED,
                   "qerr_model_load: tensor '%.128s' in %s has dtype I32 (only GPTQ checkpoints "
                   "hold integer tensors, as .qweight/.qzeros/.g_idx)",
                   e->name, path);
        QERR_CHECK(qerr__model_find(m, e->name) < 0, QERR_E_FORMAT,
                   "qerr_model_load: tensor '%.128s' appears twice (again in %s)", e->name,
                   path);
        QERR_TRY(add_entry(m, cap, e->name, e, -1));
    }
    return QERR_OK;
}

/* Shard file names from the index's weight_map, deduplicated, in order. */
static int shard_names(const qerr_json *idx, const char *what, const char ***names, int *n) {
    const qerr_json *wm = qerr__json_get(idx, "weight_map");
    QERR_CHECK(wm && wm->type == QERR_JSON_OBJECT, QERR_E_FORMAT,
               "%s: \"weight_map\" object is missing", what);
    const char **out = qerr__calloc(wm->len ? wm->len : 1, sizeof *out);
    QERR_CHECK(out, QERR_E_NOMEM, "%s: out of memory", what);
    int k = 0;
    for (size_t i = 0; i < wm->len; i++) {
        const qerr_json *v = &wm->items[i];
        if (v->type != QERR_JSON_STRING || v->len == 0 || strchr(v->str, '/') ||
            strchr(v->str, '\\') || strcmp(v->str, "..") == 0 || strcmp(v->str, ".") == 0) {
            free(out);
            return qerr__fail(QERR_E_FORMAT,
                              "%s: weight_map entry of '%.128s' is not a plain file name", what,
                              wm->keys[i]);
        }
        bool seen = false;
        for (int s = 0; s < k && !seen; s++) seen = strcmp(out[s], v->str) == 0;
        if (!seen) {
            if (k >= MAX_SHARDS) {
                free(out);
                return qerr__fail(QERR_E_FORMAT, "%s: more than %d shards", what, MAX_SHARDS);
            }
            out[k++] = v->str;
        }
    }
    *names = out;
    *n = k;
    return QERR_OK;
}

static int load_weights(qerr_model *m, const char *dir, const qerr_gptq_cfg *gptq, int *cap,
                        qerr_st_file **meta_src, qerr_st_file *files, int max_files,
                        int *nfiles) {
    char *index_path;
    QERR_TRY(join_path(&index_path, dir, "model.safetensors.index.json"));
    const char **names = NULL;
    int nnames = 0, rc = QERR_OK;
    qerr_json *idx = NULL;
    static const char *const single[] = {"model.safetensors"};
    if (file_exists(index_path)) {
        uint8_t *text;
        size_t len;
        rc = qerr__read_file(index_path, &text, &len, MAX_CONFIG_BYTES);
        if (rc == QERR_OK) {
            rc = qerr__json_parse((const char *)text, len, index_path, &idx);
            free(text);
        }
        if (rc == QERR_OK) rc = shard_names(idx, index_path, &names, &nnames);
    } else {
        names = (const char **)single;
        nnames = 1;
    }
    free(index_path);
    if (rc == QERR_OK && nnames > max_files)
        rc = qerr__fail(QERR_E_FORMAT, "qerr_model_load: too many shards (%d)", nnames);
    /* Open every shard first to size the entry table, then copy. */
    int total = 0;
    for (int s = 0; rc == QERR_OK && s < nnames; s++) {
        char *path;
        rc = join_path(&path, dir, names[s]);
        if (rc != QERR_OK) break;
        rc = qerr__st_open(path, &files[s]);
        free(path);
        if (rc == QERR_OK) {
            *nfiles = s + 1;
            total += files[s].n;
        }
    }
    if (rc == QERR_OK) {
        *cap = total + 1; /* + 1 alias for tied embeddings */
        m->entries = qerr__calloc((size_t)*cap, sizeof *m->entries);
        if (!m->entries) rc = qerr__fail(QERR_E_NOMEM, "qerr_model_load: out of memory");
    }
    for (int s = 0; rc == QERR_OK && s < *nfiles; s++)
        rc = take_shard(m, *cap, &files[s], names[s], gptq->on);
    if (rc == QERR_OK && gptq->on) rc = qerr__gptq_load(m, *cap, gptq, dir, files, *nfiles);
    if (rc == QERR_OK && *nfiles > 0) *meta_src = &files[0];
    if (names != (const char **)single) free(names);
    qerr__json_free(idx);
    return rc;
}

static int check_shape(const qerr_model *m, const char *name, int ndim, int64_t d0, int64_t d1) {
    int i = qerr__model_find(m, name);
    QERR_CHECK(i >= 0, QERR_E_FORMAT, "qerr_model_load: tensor '%s' is missing", name);
    const qerr_model_entry *t = &m->entries[i];
    bool ok = t->ndim == ndim && t->shape[0] == d0 && (ndim == 1 || t->shape[1] == d1);
    if (ndim == 1)
        QERR_CHECK(ok, QERR_E_FORMAT, "qerr_model_load: tensor '%s' must have shape [%lld]", name,
                   (long long)d0);
    QERR_CHECK(ok, QERR_E_FORMAT, "qerr_model_load: tensor '%s' must have shape [%lld, %lld]",
               name, (long long)d0, (long long)d1);
    return QERR_OK;
}

void qerr__lin_shape(const qerr_model_config *c, int lin, int64_t *out, int64_t *in) {
    const int64_t d = c->hidden, qd = c->heads * c->head_dim, kvd = c->kv_heads * c->head_dim;
    switch (lin) {
    case QERR_LIN_Q: *out = qd; *in = d; break;
    case QERR_LIN_K:
    case QERR_LIN_V: *out = kvd; *in = d; break;
    case QERR_LIN_O: *out = d; *in = qd; break;
    case QERR_LIN_GATE:
    case QERR_LIN_UP: *out = c->inter; *in = d; break;
    default: *out = d; *in = c->inter; break;
    }
}

/* Whether the forward pass of this config reads tensor `name` of a layer
 * (name without "model.layers.N."), or it is a known harmless extra. */
static bool layer_tensor_known(const qerr_model_config *c, const char *rest) {
    char want[96];
    static const char *const always[] = {"input_layernorm.weight",
                                         "post_attention_layernorm.weight",
                                         "self_attn.rotary_emb.inv_freq"};
    for (size_t i = 0; i < sizeof always / sizeof always[0]; i++)
        if (strcmp(rest, always[i]) == 0) return true;
    for (int lin = 0; lin < QERR_LIN_COUNT; lin++) {
        snprintf(want, sizeof want, "%s.weight", qerr__lin_names[lin]);
        if (strcmp(rest, want) == 0) return true;
        snprintf(want, sizeof want, "%s.bias", qerr__lin_names[lin]);
        if (c->bias[lin] && strcmp(rest, want) == 0) return true;
    }
    return c->qk_norm && (strcmp(rest, "self_attn.q_norm.weight") == 0 ||
                          strcmp(rest, "self_attn.k_norm.weight") == 0);
}

/* Every tensor of the files is read by the forward pass or a known harmless
 * extra (docs/architectures.md); anything else is refused by name, since a
 * weight left unread means the model would be computed differently. */
static int check_all_used(const qerr_model *m) {
    const qerr_model_config *c = &m->cfg;
    for (int i = 0; i < m->n; i++) {
        const char *name = m->entries[i].name;
        if (strcmp(name, EMBED) == 0 || strcmp(name, HEAD) == 0 ||
            strcmp(name, "model.norm.weight") == 0)
            continue;
        bool ok = false;
        if (strncmp(name, "model.layers.", 13) == 0) {
            char *end;
            long long l = strtoll(name + 13, &end, 10);
            ok = name[13] >= '0' && name[13] <= '9' && *end == '.' && l >= 0 && l < c->layers &&
                 (end == name + 14 || name[13] != '0') && layer_tensor_known(c, end + 1);
        }
        QERR_CHECK(ok, QERR_E_UNSUPPORTED,
                   "qerr_model_load: tensor '%.128s' is not read by the forward pass of this "
                   "%s config; refusing to ignore it",
                   name, c->model_type);
    }
    return QERR_OK;
}

static int check_tensors(const qerr_model *m) {
    const qerr_model_config *c = &m->cfg;
    const int64_t d = c->hidden;
    QERR_TRY(check_shape(m, EMBED, 2, c->vocab, d));
    QERR_TRY(check_shape(m, HEAD, 2, c->vocab, d));
    QERR_TRY(check_shape(m, "model.norm.weight", 1, d, 0));
    char name[128];
    for (int64_t l = 0; l < c->layers; l++) {
        layer_name(name, sizeof name, l, "input_layernorm", "weight");
        QERR_TRY(check_shape(m, name, 1, d, 0));
        layer_name(name, sizeof name, l, "post_attention_layernorm", "weight");
        QERR_TRY(check_shape(m, name, 1, d, 0));
        for (int lin = 0; lin < QERR_LIN_COUNT; lin++) {
            int64_t out, in;
            qerr__lin_shape(c, lin, &out, &in);
            layer_name(name, sizeof name, l, qerr__lin_names[lin], "weight");
            QERR_TRY(check_shape(m, name, 2, out, in));
            if (!c->bias[lin]) continue;
            layer_name(name, sizeof name, l, qerr__lin_names[lin], "bias");
            QERR_TRY(check_shape(m, name, 1, out, 0));
        }
        if (!c->qk_norm) continue;
        layer_name(name, sizeof name, l, "self_attn.q_norm", "weight");
        QERR_TRY(check_shape(m, name, 1, c->head_dim, 0));
        layer_name(name, sizeof name, l, "self_attn.k_norm", "weight");
        QERR_TRY(check_shape(m, name, 1, c->head_dim, 0));
    }
    QERR_TRY(check_all_used(m));
    /* in the stored dtype, dropping the pages read, so a check of a large
     * model leaves nothing resident */
    for (int f = 0; f < m->nfiles; f++) {
        for (int i = 0; i < m->files[f].n; i++) {
            const qerr_st_entry *e = &m->files[f].entries[i];
            int64_t bad = qerr__st_find_nonfinite(e);
            qerr__st_drop_pages(&m->files[f], e);
            QERR_CHECK(bad < 0, QERR_E_NONFINITE, "qerr_model_load: '%.128s'[%lld] is not finite",
                       e->name, (long long)bad);
        }
    }
    for (int i = 0; i < m->n; i++) { /* tensors read into memory (GGUF) */
        const qerr_tensor *t = m->entries[i].t;
        if (m->entries[i].src || m->entries[i].alias || !t) continue;
        int64_t bad = qerr__find_nonfinite_f32(t->data, t->numel);
        QERR_CHECK(bad < 0, QERR_E_NONFINITE, "qerr_model_load: '%.128s'[%lld] is not finite",
                   m->entries[i].name, (long long)bad);
    }
    return QERR_OK;
}

/* Tied embeddings: Hugging Face saves one of the two names (and may say so
 * in __metadata__); make the other an alias of the same tensor. */
static int tie_embeddings(qerr_model *m, int cap, const qerr_st_file *meta) {
    int e = qerr__model_find(m, EMBED), h = qerr__model_find(m, HEAD);
    if (e >= 0 && h >= 0) { /* transformers reads the embedding for both: a different
                               lm_head would be a tensor left unread */
        const int64_t ne = entry_numel(&m->entries[e]), nh = entry_numel(&m->entries[h]);
        const float *de = m->cfg.tied ? qerr__model_data(m, EMBED) : NULL;
        const float *dh = m->cfg.tied ? qerr__model_data(m, HEAD) : NULL;
        QERR_CHECK(!m->cfg.tied || (de && dh), QERR_E_NOMEM, "qerr_model_load: out of memory");
        QERR_CHECK(!m->cfg.tied ||
                       (ne == nh && memcmp(de, dh, (size_t)ne * sizeof(float)) == 0),
                   QERR_E_UNSUPPORTED,
                   "qerr_model_load: tie_word_embeddings is true but the stored '%s' differs "
                   "from '%s'; refusing to ignore it",
                   HEAD, EMBED);
        return QERR_OK;
    }
    const char *said = qerr__st_meta(meta, EMBED);
    bool tied = m->cfg.tied || (said && strcmp(said, HEAD) == 0);
    if (!tied) return QERR_OK; /* check_tensors names the missing one */
    if (e >= 0) return add_entry(m, cap, HEAD, NULL, e);
    if (h >= 0) return add_entry(m, cap, EMBED, NULL, h);
    return QERR_OK;
}

/* config.json and the safetensors of a model directory into m. */
static int read_dir(qerr_model *m, const char *dir) {
    static const char fn[] = "qerr_model_load";
    char *cfg_path = NULL;
    uint8_t *text = NULL;
    size_t len = 0;
    qerr_json *cj = NULL;
    qerr_gptq_cfg gptq = {0};
    m->dir = strdup(dir);
    int rc = m->dir ? join_path(&cfg_path, dir, "config.json")
                    : qerr__fail(QERR_E_NOMEM, "%s: out of memory", fn);
    if (rc == QERR_OK) rc = qerr__read_file(cfg_path, &text, &len, MAX_CONFIG_BYTES);
    if (rc == QERR_OK) rc = qerr__json_parse((const char *)text, len, cfg_path, &cj);
    if (rc == QERR_OK) rc = qerr__config_from_json(cj, cfg_path, &m->cfg);
    if (rc == QERR_OK) rc = qerr__gptq_cfg_read(dir, cj, &gptq);
    free(text);
    free(cfg_path);
    qerr__json_free(cj);

    qerr_st_file *files = NULL;
    int nfiles = 0, cap = 0;
    qerr_st_file *meta = NULL;
    if (rc == QERR_OK) {
        files = qerr__calloc(MAX_SHARDS, sizeof *files);
        if (!files) rc = qerr__fail(QERR_E_NOMEM, "%s: out of memory", fn);
    }
    if (rc == QERR_OK)
        rc = load_weights(m, dir, &gptq, &cap, &meta, files, MAX_SHARDS, &nfiles);
    m->files = files; /* the tensors' bytes: kept mapped until qerr_model_free */
    m->nfiles = nfiles;
    if (rc == QERR_OK) rc = tie_embeddings(m, cap, meta);
    if (rc == QERR_OK && nfiles > 0) { /* shrink the table of shards to its use */
        qerr_st_file *fit = realloc(m->files, (size_t)nfiles * sizeof *fit);
        if (fit) m->files = fit;
    }
    return rc;
}

int qerr_model_load(qerr_model **out, const char *dir) {
    static const char fn[] = "qerr_model_load";
    QERR_CHECK(out, QERR_E_INVALID_ARG, "%s: out is NULL", fn);
    *out = NULL;
    QERR_CHECK(dir, QERR_E_INVALID_ARG, "%s: dir is NULL", fn);
    qerr_model *m = calloc(1, sizeof *m);
    QERR_CHECK(m, QERR_E_NOMEM, "%s: out of memory", fn);
    pthread_mutex_init(&m->lock, NULL);
    /* a GGUF file (lib/llama/gguf_model.c) or a Hugging Face directory */
    int rc = qerr__gguf_is_file(dir) ? qerr__model_read_gguf(m, dir) : read_dir(m, dir);
    if (rc == QERR_OK) {
        m->layer_refs = qerr__calloc((size_t)m->cfg.layers, sizeof *m->layer_refs);
        if (!m->layer_refs) rc = qerr__fail(QERR_E_NOMEM, "%s: out of memory", fn);
    }
    if (rc == QERR_OK) rc = check_tensors(m);
    if (rc == QERR_OK) m->streaming = qerr__model_f32_bytes(m) > STREAM_ABOVE_BYTES;
    if (rc != QERR_OK) {
        qerr_model_free(m);
        return rc;
    }
    *out = m;
    qerr__clear_error();
    return QERR_OK;
}

void qerr__model_rt_clear(qerr_model *m) {
    if (!m || !m->rt) return;
    for (int64_t l = 0; l < m->cfg.layers; l++) m->rt_ops->free(m->rt[l]);
    free(m->rt);
    m->rt = NULL;
    m->rt_ops = NULL;
}

void qerr_model_free(qerr_model *m) {
    if (!m) return;
    qerr__model_rt_clear(m);
    for (int i = 0; i < m->n; i++) {
        if (!m->entries[i].alias) qerr_tensor_free(m->entries[i].t);
        free(m->entries[i].name);
    }
    free(m->entries);
    free(m->dir);
    for (int s = 0; s < m->nfiles; s++) qerr__st_close(&m->files[s]);
    free(m->files);
    free(m->layer_refs);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

int qerr_model_config_int(const qerr_model *m, const char *key, int64_t *value) {
    static const char fn[] = "qerr_model_config_int";
    QERR_CHECK(m && key && value, QERR_E_INVALID_ARG, "%s: NULL argument", fn);
    const qerr_model_config *c = &m->cfg;
    const struct { const char *key; int64_t v; } map[] = {
        {"hidden_size", c->hidden},         {"intermediate_size", c->inter},
        {"num_hidden_layers", c->layers},   {"num_attention_heads", c->heads},
        {"num_key_value_heads", c->kv_heads}, {"vocab_size", c->vocab},
        {"tie_word_embeddings", c->tied},   {"head_dim", c->head_dim},
        {"attention_bias", c->bias[QERR_LIN_Q]}, {"mlp_bias", c->bias[QERR_LIN_GATE]},
        {"qk_norm", c->qk_norm},            {"sliding_window", c->sliding_window},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strcmp(key, map[i].key) == 0) {
            *value = map[i].v;
            return QERR_OK;
        }
    }
    return qerr__fail(QERR_E_NOT_FOUND, "%s: no integer key \"%.64s\"", fn, key);
}

int qerr_model_config_double(const qerr_model *m, const char *key, double *value) {
    static const char fn[] = "qerr_model_config_double";
    QERR_CHECK(m && key && value, QERR_E_INVALID_ARG, "%s: NULL argument", fn);
    const qerr_rope *r = &m->cfg.rope;
    if (strcmp(key, "rope_theta") == 0) *value = r->theta;
    else if (strcmp(key, "rms_norm_eps") == 0) *value = m->cfg.rms_eps;
    else if (strcmp(key, "rope_scaling.factor") == 0) *value = r->factor;
    else if (strcmp(key, "rope_scaling.low_freq_factor") == 0) *value = r->low_freq_factor;
    else if (strcmp(key, "rope_scaling.high_freq_factor") == 0) *value = r->high_freq_factor;
    else if (strcmp(key, "rope_scaling.original_max_position_embeddings") == 0)
        *value = r->original_max;
    else return qerr__fail(QERR_E_NOT_FOUND, "%s: no floating-point key \"%.64s\"", fn, key);
    return QERR_OK;
}

int qerr_model_tensor_count(const qerr_model *m) { return m ? m->n : 0; }

const char *qerr_model_tensor_name(const qerr_model *m, int index) {
    return (m && index >= 0 && index < m->n) ? m->entries[index].name : NULL;
}

int qerr_model_tensor(const qerr_model *m, const char *name, const qerr_tensor **out) {
    static const char fn[] = "qerr_model_tensor";
    QERR_CHECK(out, QERR_E_INVALID_ARG, "%s: out is NULL", fn);
    *out = NULL;
    QERR_CHECK(m && name, QERR_E_INVALID_ARG, "%s: NULL argument", fn);
    int i = qerr__model_find(m, name);
    QERR_CHECK(i >= 0, QERR_E_NOT_FOUND, "%s: no tensor '%.128s'", fn, name);
    /* made on demand and kept (pinned) for the model's lifetime, as before */
    QERR_CHECK(model_data(m, name, true), QERR_E_NOMEM, "%s: out of memory for '%.128s'", fn,
               name);
    *out = m->entries[m->entries[i].owner].t;
    return QERR_OK;
}

int64_t qerr_model_param_count(const qerr_model *m) {
    if (!m) return 0;
    int64_t n = 0;
    for (int i = 0; i < m->n; i++)
        if (!m->entries[i].alias) n += entry_numel(&m->entries[i]);
    return n;
}

int qerr_model_set_streaming(qerr_model *m, int on) {
    QERR_CHECK(m, QERR_E_INVALID_ARG, "qerr_model_set_streaming: model is NULL");
    pthread_mutex_lock(&m->lock);
    m->streaming = on != 0;
    pthread_mutex_unlock(&m->lock);
    return QERR_OK;
}

int qerr_model_streaming(const qerr_model *m) { return m && m->streaming; }

uint32_t qerr__model_fingerprint(const qerr_model *m) {
    const qerr_model_config *c = &m->cfg; /* fields, not the struct: no padding bytes */
    const int64_t dims[7] = {c->hidden, c->inter, c->layers, c->heads, c->kv_heads, c->vocab,
                             c->head_dim};
    uint32_t acc = qerr__crc32(dims, sizeof dims);
    for (int i = 0; i < m->n; i++) {
        const qerr_model_entry *e = &m->entries[i];
        uint32_t part[4] = {acc, qerr__crc32(e->name, strlen(e->name)),
                            qerr__crc32(e->shape, sizeof e->shape), 0};
        if (e->src) /* the leading bytes: a cheap check that the weights are the same */
            part[3] = qerr__crc32(e->src->data, e->src->nbytes < 256 ? e->src->nbytes : 256);
        acc = qerr__crc32(part, sizeof part);
    }
    return acc;
}

int qerr__model_rows(const qerr_model *cm, const char *name, const uint32_t *idx, int64_t n,
                     float *dst) {
    qerr_model *m = (qerr_model *)cm;
    int i = qerr__model_find(m, name);
    QERR_CHECK(i >= 0, QERR_E_INTERNAL, "model tensor '%.128s' is missing", name);
    pthread_mutex_lock(&m->lock);
    const qerr_model_entry *e = &m->entries[m->entries[i].owner];
    const int64_t d = e->shape[1];
    const size_t es = e->t ? sizeof(float) : qerr_dtype_size(e->src->dtype);
    for (int64_t r = 0; r < n; r++) {
        if (e->t)
            memcpy(dst + r * d, (const float *)e->t->data + (int64_t)idx[r] * d,
                   (size_t)d * sizeof(float));
        else qerr__st_convert(e->src->dtype, e->src->data + (size_t)idx[r] * (size_t)d * es, d,
                              dst + r * d);
    }
    pthread_mutex_unlock(&m->lock);
    return QERR_OK;
}
