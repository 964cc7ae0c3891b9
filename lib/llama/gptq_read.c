/* GPTQ checkpoint reader, see gptq_read.h. Layout (AutoGPTQ, GPTQModel):
 * per linear module P,
 *   P.qweight  int32 [in * bits / 32, out]  codes packed along the input
 *   P.qzeros   int32 [groups, out * bits / 32]  zero points packed along out
 *   P.scales   float16 [groups, out]
 *   P.g_idx    int32 [in]  group of each input column
 * with the bit-stream packing of lib/io/gptq_pack.h. checkpoint_format
 * "gptq" (v1) stores zero - 1 in each field and readers add 1 back (as the
 * ExLlama, vLLM and AutoGPTQ kernels do, without wrapping); "gptq_v2"
 * stores the zero itself. Every shape is checked against the others and
 * against the settings before any value is read. */
#include "gptq_read.h"

#include "../io/gptq_pack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_QCONFIG_BYTES ((size_t)1 << 20)

static const char *const PARTS[] = {".qweight", ".qzeros", ".scales", ".g_idx"};
enum { P_QWEIGHT, P_QZEROS, P_SCALES, P_GIDX, P_COUNT };

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && strcmp(s + n - k, suffix) == 0;
}

bool qerr__gptq_is_part(const char *name) {
    for (int p = 0; p < P_COUNT; p++)
        if (ends_with(name, PARTS[p])) return true;
    return false;
}

/* ---- settings ------------------------------------------------------------ */
static int get_bool(const qerr_json *q, const char *what, const char *key, bool def, bool *out) {
    const qerr_json *v = qerr__json_get(q, key);
    *out = def;
    if (!v || v->type == QERR_JSON_NULL) return QERR_OK;
    QERR_CHECK(v->type == QERR_JSON_BOOL, QERR_E_FORMAT, "%s: quantization \"%s\" is not a boolean",
               what, key);
    *out = v->boolean;
    return QERR_OK;
}

static int settings_from_json(const qerr_json *q, const char *what, qerr_gptq_cfg *g) {
    QERR_CHECK(q->type == QERR_JSON_OBJECT, QERR_E_FORMAT, "%s: quantization config is not an object",
               what);
    const qerr_json *m = qerr__json_get(q, "quant_method");
    if (m) {
        QERR_CHECK(m->type == QERR_JSON_STRING, QERR_E_FORMAT,
                   "%s: quantization \"quant_method\" is not a string", what);
        QERR_CHECK(strcmp(m->str, "gptq") == 0, QERR_E_UNSUPPORTED,
                   "%s: quantization method \"%.32s\" is not supported (GPTQ checkpoints are)",
                   what, m->str);
    }
    const qerr_json *b = qerr__json_get(q, "bits");
    QERR_CHECK(b && b->type == QERR_JSON_NUMBER && b->is_int, QERR_E_FORMAT,
               "%s: quantization \"bits\" is missing or not an integer", what);
    QERR_CHECK(b->integer >= 2 && b->integer <= 8 && qerr__gptq_bits_ok((int)b->integer),
               QERR_E_UNSUPPORTED, "%s: GPTQ bits %lld is not supported (2, 3, 4 or 8)", what,
               (long long)b->integer);
    g->bits = (int)b->integer;
    const qerr_json *gs = qerr__json_get(q, "group_size");
    QERR_CHECK(gs && gs->type == QERR_JSON_NUMBER && gs->is_int &&
                   (gs->integer == -1 || (gs->integer > 0 && gs->integer <= QERR_ST_MAX_DIM)),
               QERR_E_FORMAT, "%s: quantization \"group_size\" must be -1 or a positive integer",
               what);
    g->group_size = gs->integer;
    QERR_TRY(get_bool(q, what, "desc_act", false, &g->desc_act));
    QERR_TRY(get_bool(q, what, "sym", true, &g->sym));
    bool marlin;
    QERR_TRY(get_bool(q, what, "is_marlin_format", false, &marlin));
    QERR_CHECK(!marlin, QERR_E_UNSUPPORTED, "%s: Marlin-repacked GPTQ checkpoints are not supported",
               what);
    const qerr_json *f = qerr__json_get(q, "checkpoint_format");
    if (!f || f->type == QERR_JSON_NULL) f = qerr__json_get(q, "format"); /* GPTQModel */
    g->v2 = false;
    if (f && f->type != QERR_JSON_NULL) {
        QERR_CHECK(f->type == QERR_JSON_STRING, QERR_E_FORMAT,
                   "%s: quantization \"checkpoint_format\" is not a string", what);
        QERR_CHECK(strcmp(f->str, "gptq") == 0 || strcmp(f->str, "gptq_v2") == 0,
                   QERR_E_UNSUPPORTED,
                   "%s: GPTQ checkpoint_format \"%.32s\" is not supported (gptq or gptq_v2)", what,
                   f->str);
        g->v2 = strcmp(f->str, "gptq_v2") == 0;
    }
    const qerr_json *pd = qerr__json_get(q, "pack_dtype");
    QERR_CHECK(!pd || pd->type == QERR_JSON_NULL ||
                   (pd->type == QERR_JSON_STRING && strcmp(pd->str, "int32") == 0),
               QERR_E_UNSUPPORTED, "%s: GPTQ \"pack_dtype\" other than int32 is not supported",
               what);
    const qerr_json *dyn = qerr__json_get(q, "dynamic");
    QERR_CHECK(!dyn || dyn->type == QERR_JSON_NULL || (dyn->type == QERR_JSON_OBJECT && dyn->len == 0),
               QERR_E_UNSUPPORTED,
               "%s: per-module GPTQ settings (\"dynamic\") are not supported", what);
    g->on = true;
    return QERR_OK;
}

int qerr__gptq_cfg_read(const char *dir, const qerr_json *config, qerr_gptq_cfg *out) {
    memset(out, 0, sizeof *out);
    const qerr_json *q = qerr__json_get(config, "quantization_config");
    if (q) {
        char what[512];
        snprintf(what, sizeof what, "%s/config.json", dir);
        return settings_from_json(q, what, out);
    }
    size_t n = strlen(dir) + 32;
    char *path = malloc(n);
    QERR_CHECK(path, QERR_E_NOMEM, "qerr_model_load: out of memory");
    snprintf(path, n, "%s/quantize_config.json", dir);
    struct stat st;
    int rc = QERR_OK;
    if (stat(path, &st) == 0) { /* older AutoGPTQ checkpoints */
        uint8_t *text = NULL;
        size_t len = 0;
        qerr_json *j = NULL;
        rc = qerr__read_file(path, &text, &len, MAX_QCONFIG_BYTES);
        if (rc == QERR_OK) rc = qerr__json_parse((const char *)text, len, path, &j);
        if (rc == QERR_OK) rc = settings_from_json(j, path, out);
        free(text);
        qerr__json_free(j);
    }
    free(path);
    return rc;
}

/* ---- one module ---------------------------------------------------------- */
static int check_part(const char *what, const char *prefix, const qerr_st_entry *e, int part,
                      bool integer, int ndim) {
    QERR_CHECK(e, QERR_E_FORMAT, "%s: GPTQ tensor '%.128s%s' is missing", what, prefix,
               PARTS[part]);
    QERR_CHECK((e->dtype == QERR__DTYPE_I32) == integer, QERR_E_FORMAT,
               "%s: GPTQ tensor '%.128s' must be %s", what, e->name,
               integer ? "int32" : "floating point");
    QERR_CHECK(e->ndim == ndim, QERR_E_FORMAT, "%s: GPTQ tensor '%.128s' must have %d dimensions",
               what, e->name, ndim);
    return QERR_OK;
}

static void read_i32(const qerr_st_entry *e, int32_t *dst) {
    memcpy(dst, e->data, (size_t)e->numel * sizeof *dst); /* data may be unaligned */
}

/* Shapes: qweight [K*bits/32, N], scales [G, N], qzeros [G, N*bits/32],
 * g_idx [K]; G from the group size. Sets *K, *N, *G. */
static int check_shapes(const qerr_gptq_cfg *g, const char *what, const qerr_st_entry *qw,
                        const qerr_st_entry *qz, const qerr_st_entry *sc,
                        const qerr_st_entry *gi, int64_t *K, int64_t *N, int64_t *G) {
    const int bits = g->bits;
    const int64_t rows = qw->shape[0];
    /* 32 codes fill `bits` words, so rows must be a multiple of bits/gcd */
    const int64_t per = bits == 3 ? 3 : 1, codes = bits == 3 ? 32 : 32 / bits;
    QERR_CHECK(rows % per == 0, QERR_E_FORMAT,
               "%s: GPTQ tensor '%.128s' has %lld rows, not a multiple of 3 as 3-bit packing needs",
               what, qw->name, (long long)rows);
    *K = rows / per * codes;
    *N = qw->shape[1];
    QERR_CHECK(*K > 0 && *N > 0, QERR_E_FORMAT, "%s: GPTQ tensor '%.128s' is empty", what,
               qw->name);
    const int64_t gs = g->group_size == -1 ? *K : g->group_size;
    *G = (*K + gs - 1) / gs;
    QERR_CHECK(sc->shape[1] == *N, QERR_E_FORMAT,
               "%s: GPTQ tensor '%.128s' has %lld columns but '%.128s' has %lld outputs", what,
               sc->name, (long long)sc->shape[1], qw->name, (long long)*N);
    QERR_CHECK(sc->shape[0] == *G, QERR_E_FORMAT,
               "%s: GPTQ tensor '%.128s' has %lld groups but group_size %lld over %lld inputs "
               "gives %lld: the config contradicts the tensors",
               what, sc->name, (long long)sc->shape[0], (long long)g->group_size, (long long)*K,
               (long long)*G);
    const int64_t zw = qerr__gptq_words(*N, bits);
    QERR_CHECK(zw > 0, QERR_E_FORMAT,
               "%s: GPTQ tensor '%.128s': %lld outputs cannot be packed at %d bits into int32",
               what, qz->name, (long long)*N, bits);
    QERR_CHECK(qz->shape[0] == *G && qz->shape[1] == zw, QERR_E_FORMAT,
               "%s: GPTQ tensor '%.128s' has shape [%lld, %lld] but %d-bit zeros of %lld outputs "
               "in %lld groups need [%lld, %lld]",
               what, qz->name, (long long)qz->shape[0], (long long)qz->shape[1], bits,
               (long long)*N, (long long)*G, (long long)*G, (long long)zw);
    if (gi)
        QERR_CHECK(gi->shape[0] == *K, QERR_E_FORMAT,
                   "%s: GPTQ tensor '%.128s' has %lld entries but '%.128s' packs %lld inputs at %d "
                   "bits: the config contradicts the tensors",
                   what, gi->name, (long long)gi->shape[0], qw->name, (long long)*K, bits);
    return QERR_OK;
}

/* Group of every input column: g_idx checked, or the contiguous map. */
static int groups_of(const qerr_gptq_cfg *g, const char *what, const char *prefix,
                     const qerr_st_entry *gi, int64_t K, int64_t G, int32_t *gidx) {
    const int64_t gs = g->group_size == -1 ? K : g->group_size;
    if (!gi) {
        QERR_CHECK(!g->desc_act, QERR_E_FORMAT,
                   "%s: GPTQ tensor '%.128s.g_idx' is missing (desc_act is true)", what, prefix);
        for (int64_t k = 0; k < K; k++) gidx[k] = (int32_t)(k / gs);
        return QERR_OK;
    }
    read_i32(gi, gidx);
    for (int64_t k = 0; k < K; k++) {
        QERR_CHECK(gidx[k] >= 0 && gidx[k] < G, QERR_E_FORMAT,
                   "%s: GPTQ tensor '%.128s'[%lld] = %d is not a group in 0..%lld", what, gi->name,
                   (long long)k, gidx[k], (long long)G - 1);
        /* without desc_act engines assume the contiguous map and ignore g_idx */
        QERR_CHECK(g->desc_act || gidx[k] == k / gs, QERR_E_FORMAT,
                   "%s: GPTQ tensor '%.128s' reorders columns but desc_act is false: the config "
                   "contradicts the tensors",
                   what, gi->name);
    }
    return QERR_OK;
}

int qerr__gptq_dequant(const qerr_gptq_cfg *g, const char *what, const char *prefix,
                       const qerr_st_entry *qweight, const qerr_st_entry *qzeros,
                       const qerr_st_entry *scales, const qerr_st_entry *g_idx,
                       qerr_tensor **out) {
    *out = NULL;
    QERR_TRY(check_part(what, prefix, qweight, P_QWEIGHT, true, 2));
    QERR_TRY(check_part(what, prefix, qzeros, P_QZEROS, true, 2));
    QERR_TRY(check_part(what, prefix, scales, P_SCALES, false, 2));
    if (g_idx) QERR_TRY(check_part(what, prefix, g_idx, P_GIDX, true, 1));
    int64_t K = 0, N = 0, G = 0;
    QERR_TRY(check_shapes(g, what, qweight, qzeros, scales, g_idx, &K, &N, &G));
    const int bits = g->bits;
    int32_t *gidx = qerr__malloc2((size_t)K, sizeof *gidx);
    int32_t *zeros = qerr__malloc2((size_t)(G * N), sizeof *zeros);
    uint32_t *words = qerr__malloc2((size_t)qweight->numel, sizeof *words);
    float *s = qerr__malloc2((size_t)(G * N), sizeof *s);
    int32_t *q = qerr__malloc2((size_t)K, sizeof *q);
    qerr_tensor *t = NULL;
    int rc = gidx && zeros && words && s && q
                 ? QERR_OK
                 : qerr__fail(QERR_E_NOMEM, "%s: out of memory for GPTQ module '%.128s'", what,
                              prefix);
    if (rc == QERR_OK) rc = groups_of(g, what, prefix, g_idx, K, G, gidx);
    if (rc == QERR_OK) rc = qerr_tensor_create(&t, QERR_DTYPE_F32, 2, (int64_t[]){N, K});
    if (rc == QERR_OK) {
        /* zeros [G, N]: one stream per group (G <= K, so qzeros fit in words) */
        read_i32(qzeros, (int32_t *)words);
        const int64_t zw = qzeros->shape[1];
        for (int64_t gr = 0; gr < G; gr++)
            qerr__gptq_unpack(words + gr * zw, 1, N, bits, zeros + gr * N, 1);
        if (!g->v2)
            for (int64_t i = 0; i < G * N; i++) zeros[i] += 1;
        qerr__st_to_f32(scales, s);
        read_i32(qweight, (int32_t *)words);
        float *w = t->data;
        for (int64_t n = 0; n < N; n++) { /* one stream per output column */
            qerr__gptq_unpack(words + n, N, K, bits, q, 1);
            for (int64_t k = 0; k < K; k++) {
                const int64_t gk = gidx[k];
                w[n * K + k] = s[gk * N + n] * (float)(q[k] - zeros[gk * N + n]);
            }
        }
    }
    free(gidx);
    free(zeros);
    free(words);
    free(s);
    free(q);
    if (rc != QERR_OK) {
        qerr_tensor_free(t);
        return rc;
    }
    *out = t;
    return QERR_OK;
}

/* ---- every module -------------------------------------------------------- */
static const qerr_st_entry *find(const qerr_st_file *files, int nfiles, const char *name) {
    for (int f = 0; f < nfiles; f++)
        for (int i = 0; i < files[f].n; i++)
            if (strcmp(files[f].entries[i].name, name) == 0) return &files[f].entries[i];
    return NULL;
}

static int load_module(qerr_model *m, int cap, const qerr_gptq_cfg *g, const char *dir,
                       const qerr_st_file *files, int nfiles, const char *prefix) {
    const qerr_st_entry *e[P_COUNT];
    size_t n = strlen(prefix) + 16;
    char *name = malloc(n);
    QERR_CHECK(name, QERR_E_NOMEM, "qerr_model_load: out of memory");
    for (int p = 0; p < P_COUNT; p++) {
        snprintf(name, n, "%s%s", prefix, PARTS[p]);
        e[p] = find(files, nfiles, name);
    }
    snprintf(name, n, "%s.weight", prefix);
    int rc = QERR_OK;
    if (find(files, nfiles, name))
        rc = qerr__fail(QERR_E_FORMAT, "%s: module '%.128s' has both '%.128s' and '%.128s.qweight'",
                        dir, prefix, name, prefix);
    qerr_tensor *t = NULL;
    if (rc == QERR_OK)
        rc = qerr__gptq_dequant(g, dir, prefix, e[P_QWEIGHT], e[P_QZEROS], e[P_SCALES],
                                e[P_GIDX], &t);
    if (rc == QERR_OK) rc = qerr__model_add(m, cap, name, t, false);
    if (rc == QERR_OK) m->entries[m->n - 1].file_dtype = e[P_SCALES]->dtype;
    free(name);
    return rc;
}

int qerr__gptq_load(qerr_model *m, int cap, const qerr_gptq_cfg *g, const char *dir,
                    const qerr_st_file *files, int nfiles) {
    for (int f = 0; f < nfiles; f++) {
        for (int i = 0; i < files[f].n; i++) {
            const char *name = files[f].entries[i].name;
            if (!qerr__gptq_is_part(name)) continue;
            size_t len = strlen(name);
            int p = 0;
            while (!ends_with(name, PARTS[p])) p++;
            char *prefix = strndup(name, len - strlen(PARTS[p]));
            QERR_CHECK(prefix, QERR_E_NOMEM, "qerr_model_load: out of memory");
            int rc = QERR_OK;
            if (p == P_QWEIGHT) {
                rc = load_module(m, cap, g, dir, files, nfiles, prefix);
            } else {
                size_t n = strlen(prefix) + 16;
                char *qw = malloc(n);
                if (!qw) rc = qerr__fail(QERR_E_NOMEM, "qerr_model_load: out of memory");
                else snprintf(qw, n, "%s.qweight", prefix);
                if (rc == QERR_OK && !find(files, nfiles, qw))
                    rc = qerr__fail(QERR_E_FORMAT, "%s: GPTQ tensor '%.128s' has no '%.128s'", dir,
                                    name, qw);
                free(qw);
            }
            free(prefix);
            QERR_TRY(rc);
        }
    }
    return QERR_OK;
}
