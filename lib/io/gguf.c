/* GGUF reader and writer (see gguf.h). Layout, all little-endian:
 *   "GGUF", u32 version, i64 tensor count, i64 key count,
 *   keys:    string key, u32 value type, value (array: u32 type, u64 n, n values),
 *   tensors: string name, u32 n_dims, i64 ne[n_dims], u32 ggml type, u64 offset,
 *   padding to general.alignment, then the data section (offsets relative to
 *   its start, each a multiple of the alignment).
 * A string is a u64 byte count and the bytes. The reader trusts nothing: every
 * count is bounded by the bytes that remain, every tensor must lie inside the
 * data section, and no two tensors may overlap. */
#include "gguf.h"
#include "ggml_blocks.h"
#include "io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const size_t scalar_size[QERR_GGUF_TYPE_COUNT] = {
    [QERR_GGUF_U8] = 1,  [QERR_GGUF_I8] = 1,  [QERR_GGUF_U16] = 2, [QERR_GGUF_I16] = 2,
    [QERR_GGUF_U32] = 4, [QERR_GGUF_I32] = 4, [QERR_GGUF_F32] = 4, [QERR_GGUF_BOOL] = 1,
    [QERR_GGUF_U64] = 8, [QERR_GGUF_I64] = 8, [QERR_GGUF_F64] = 8,
};

size_t qerr__gguf_row_bytes(int type, int64_t n) {
    if (n <= 0) return 0;
    switch (type) {
    case QERR_GGUF_T_F32: return (size_t)n * 4;
    case QERR_GGUF_T_F16:
    case QERR_GGUF_T_BF16: return (size_t)n * 2;
    default: return qerr__ggml_row_bytes(type, n);
    }
}

int qerr__gguf_row_to_f32(int type, const uint8_t *src, int64_t n, float *dst) {
    switch (type) {
    case QERR_GGUF_T_F32: memcpy(dst, src, (size_t)n * 4); return QERR_OK;
    case QERR_GGUF_T_F16:
    case QERR_GGUF_T_BF16:
        for (int64_t k = 0; k < n; k++) {
            uint16_t h;
            memcpy(&h, src + 2 * k, 2);
            dst[k] = type == QERR_GGUF_T_F16 ? qerr__f16_to_f32(h) : qerr__bf16_to_f32(h);
        }
        return QERR_OK;
    default:
        QERR_CHECK(qerr__ggml_row_bytes(type, n) > 0, QERR_E_UNSUPPORTED,
                   "ggml type %d cannot be dequantized by libqerr", type);
        return qerr__ggml_dequantize_row(type, src, n, dst);
    }
}

/* ---- reader -------------------------------------------------------------- */
typedef struct cursor {
    const uint8_t *p;
    size_t n, pos;
    const char *what;
} cursor;

static int need(cursor *c, uint64_t k, const char *item) {
    QERR_CHECK(k <= c->n - c->pos, QERR_E_FORMAT,
               "%s: truncated: %s needs %llu bytes at offset %zu, %zu remain", c->what, item,
               (unsigned long long)k, c->pos, c->n - c->pos);
    return QERR_OK;
}

static int take_u32(cursor *c, uint32_t *v, const char *item) {
    QERR_TRY(need(c, 4, item));
    memcpy(v, c->p + c->pos, 4);
    c->pos += 4;
    return QERR_OK;
}

static int take_u64(cursor *c, uint64_t *v, const char *item) {
    QERR_TRY(need(c, 8, item));
    memcpy(v, c->p + c->pos, 8);
    c->pos += 8;
    return QERR_OK;
}

static int take_str(cursor *c, const uint8_t **s, uint64_t *len, const char *item) {
    QERR_TRY(take_u64(c, len, item));
    QERR_CHECK(*len <= QERR_GGUF_MAX_STRING, QERR_E_FORMAT,
               "%s: %s is %llu bytes long (more than %llu)", c->what, item,
               (unsigned long long)*len, (unsigned long long)QERR_GGUF_MAX_STRING);
    QERR_TRY(need(c, *len, item));
    *s = c->p + c->pos;
    c->pos += (size_t)*len;
    return QERR_OK;
}

/* Skip `count` values of scalar or string type `t` (arrays of arrays are
 * refused: llama.cpp writes none). */
static int skip_values(cursor *c, int t, uint64_t count, const char *key) {
    if (t == QERR_GGUF_STRING) {
        for (uint64_t i = 0; i < count; i++) {
            const uint8_t *s;
            uint64_t len;
            QERR_TRY(take_str(c, &s, &len, "a string value"));
        }
        return QERR_OK;
    }
    QERR_CHECK(t >= 0 && t < QERR_GGUF_TYPE_COUNT && t != QERR_GGUF_ARRAY, QERR_E_FORMAT,
               "%s: key '%.128s' has value type %d (arrays of arrays and unknown types are "
               "not read)",
               c->what, key, t);
    uint64_t bytes = count * scalar_size[t];
    QERR_CHECK(count == 0 || bytes / count == scalar_size[t], QERR_E_FORMAT,
               "%s: key '%.128s': array of %llu values overflows", c->what, key,
               (unsigned long long)count);
    QERR_TRY(need(c, bytes, "an array"));
    if (t == QERR_GGUF_BOOL)
        for (uint64_t i = 0; i < count; i++)
            QERR_CHECK(c->p[c->pos + i] <= 1, QERR_E_FORMAT,
                       "%s: key '%.128s': boolean value %u is not 0 or 1", c->what, key,
                       c->p[c->pos + i]);
    c->pos += (size_t)bytes;
    return QERR_OK;
}

static int parse_kv(cursor *c, qerr_gguf_kv *kv) {
    const uint8_t *key;
    uint64_t key_len;
    uint32_t type;
    QERR_TRY(take_str(c, &key, &key_len, "a metadata key"));
    QERR_CHECK(key_len > 0 && memchr(key, 0, (size_t)key_len) == NULL, QERR_E_FORMAT,
               "%s: a metadata key is empty or contains NUL", c->what);
    kv->key = (const char *)key;
    kv->key_len = (size_t)key_len;
    char name[129];
    snprintf(name, sizeof name, "%.*s", (int)(key_len < 128 ? key_len : 128), (const char *)key);
    QERR_TRY(take_u32(c, &type, "a value type"));
    QERR_CHECK(type < QERR_GGUF_TYPE_COUNT, QERR_E_FORMAT,
               "%s: key '%s' has unknown value type %u", c->what, name, type);
    kv->type = (int)type;
    if (type == QERR_GGUF_ARRAY) {
        uint32_t et;
        QERR_TRY(take_u32(c, &et, "an array type"));
        QERR_TRY(take_u64(c, &kv->count, "an array length"));
        kv->elem_type = (int)et;
        kv->value = c->p + c->pos;
        return skip_values(c, (int)et, kv->count, name);
    }
    if (type == QERR_GGUF_STRING) {
        QERR_TRY(take_str(c, &kv->value, &kv->count, "a string value"));
        return QERR_OK;
    }
    kv->value = c->p + c->pos;
    kv->count = 1;
    return skip_values(c, (int)type, 1, name);
}

static bool key_is(const qerr_gguf_kv *kv, const char *key) {
    return strlen(key) == kv->key_len && memcmp(kv->key, key, kv->key_len) == 0;
}

static int parse_tensor_info(cursor *c, int64_t index, qerr_gguf_tensor *t, uint64_t *offset) {
    const uint8_t *name;
    uint64_t len;
    QERR_TRY(take_str(c, &name, &len, "a tensor name"));
    QERR_CHECK(len > 0 && len < QERR_GGUF_MAX_NAME && !memchr(name, 0, (size_t)len),
               QERR_E_FORMAT, "%s: tensor %lld has an empty name, a NUL in it or one longer "
               "than %d bytes",
               c->what, (long long)index, QERR_GGUF_MAX_NAME - 1);
    memcpy(t->name, name, (size_t)len);
    t->name[len] = '\0';
    uint32_t ndim, type;
    QERR_TRY(take_u32(c, &ndim, "a tensor's dimension count"));
    QERR_CHECK(ndim >= 1 && ndim <= QERR_GGUF_MAX_DIMS, QERR_E_FORMAT,
               "%s: tensor '%s' has %u dimensions (1..%d)", c->what, t->name, ndim,
               QERR_GGUF_MAX_DIMS);
    t->ndim = (int)ndim;
    int64_t numel = 1;
    for (uint32_t d = 0; d < ndim; d++) {
        uint64_t ne;
        QERR_TRY(take_u64(c, &ne, "a tensor dimension"));
        QERR_CHECK(ne >= 1 && ne <= ((uint64_t)1 << 40) && (uint64_t)numel <= (UINT64_C(1) << 50) / ne,
                   QERR_E_FORMAT, "%s: tensor '%s' has dimension %u of size %llu", c->what,
                   t->name, d, (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
        numel *= (int64_t)ne;
    }
    t->numel = numel;
    QERR_TRY(take_u32(c, &type, "a tensor type"));
    t->type = (int)type;
    QERR_TRY(take_u64(c, offset, "a tensor offset"));
    size_t row = qerr__gguf_row_bytes(t->type, t->ne[0]);
    QERR_CHECK(row > 0, QERR_E_UNSUPPORTED,
               "%s: tensor '%s' has ggml type %u, which libqerr cannot read (or rows of %lld "
               "do not fill its blocks)",
               c->what, t->name, type, (long long)t->ne[0]);
    size_t rows = (size_t)(numel / t->ne[0]);
    QERR_CHECK(qerr__mul_size(rows, row, &t->nbytes), QERR_E_FORMAT,
               "%s: tensor '%s' is too large", c->what, t->name);
    return QERR_OK;
}

static int cmp_extent(const void *a, const void *b) {
    const uint64_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Every tensor inside the data section, aligned, none overlapping. */
static int place_tensors(qerr_gguf_file *f, const uint8_t *buf, size_t len, size_t data_start,
                         const uint64_t *offsets, const char *what) {
    size_t data_len = len - data_start;
    uint64_t *ext = qerr__malloc2(f->n_tensors ? (size_t)f->n_tensors : 1, 2 * sizeof *ext);
    QERR_CHECK(ext, QERR_E_NOMEM, "%s: out of memory", what);
    int rc = QERR_OK;
    for (int64_t i = 0; i < f->n_tensors && rc == QERR_OK; i++) {
        qerr_gguf_tensor *t = &f->tensors[i];
        if (offsets[i] % f->alignment != 0)
            rc = qerr__fail(QERR_E_FORMAT, "%s: tensor '%s' offset %llu is not a multiple of "
                            "the alignment %u",
                            what, t->name, (unsigned long long)offsets[i], f->alignment);
        else if (offsets[i] > data_len || t->nbytes > data_len - offsets[i])
            rc = qerr__fail(QERR_E_FORMAT, "%s: tensor '%s' (%zu bytes at offset %llu) lies "
                            "outside the %zu-byte data section",
                            what, t->name, t->nbytes, (unsigned long long)offsets[i], data_len);
        else {
            t->data = buf + data_start + offsets[i];
            ext[2 * i] = offsets[i];
            ext[2 * i + 1] = offsets[i] + t->nbytes;
        }
    }
    if (rc == QERR_OK) qsort(ext, (size_t)f->n_tensors, 2 * sizeof *ext, cmp_extent);
    for (int64_t i = 1; i < f->n_tensors && rc == QERR_OK; i++)
        if (ext[2 * i] < ext[2 * i - 1])
            rc = qerr__fail(QERR_E_FORMAT, "%s: two tensors overlap at data offset %llu", what,
                            (unsigned long long)ext[2 * i]);
    free(ext);
    return rc;
}

static int parse_body(cursor *c, qerr_gguf_file *f) {
    const char *what = c->what;
    uint32_t magic;
    uint64_t nt, nkv;
    QERR_TRY(take_u32(c, &magic, "the magic"));
    QERR_CHECK(magic == QERR_GGUF_MAGIC, QERR_E_FORMAT, "%s: not a GGUF file (bad magic)", what);
    QERR_TRY(take_u32(c, &f->version, "the version"));
    QERR_CHECK(f->version == 2 || f->version == 3, QERR_E_UNSUPPORTED,
               "%s: GGUF version %u (libqerr reads versions 2 and 3)", what, f->version);
    QERR_TRY(take_u64(c, &nt, "the tensor count"));
    QERR_TRY(take_u64(c, &nkv, "the key count"));
    /* each key takes at least 12 bytes, each tensor info at least 24 */
    QERR_CHECK(nkv <= (c->n - c->pos) / 12 && nt <= (c->n - c->pos) / 24, QERR_E_FORMAT,
               "%s: %llu keys and %llu tensors cannot fit in %zu bytes", what,
               (unsigned long long)nkv, (unsigned long long)nt, c->n);
    f->n_kv = (int64_t)nkv;
    f->n_tensors = (int64_t)nt;
    f->kv = qerr__calloc(nkv ? (size_t)nkv : 1, sizeof *f->kv);
    f->tensors = qerr__calloc(nt ? (size_t)nt : 1, sizeof *f->tensors);
    QERR_CHECK(f->kv && f->tensors, QERR_E_NOMEM, "%s: out of memory", what);
    f->alignment = QERR_GGUF_ALIGN;
    for (int64_t i = 0; i < f->n_kv; i++) {
        QERR_TRY(parse_kv(c, &f->kv[i]));
        for (int64_t j = 0; j < i; j++)
            QERR_CHECK(!(f->kv[j].key_len == f->kv[i].key_len &&
                         memcmp(f->kv[j].key, f->kv[i].key, f->kv[i].key_len) == 0),
                       QERR_E_FORMAT, "%s: metadata key '%.*s' appears twice", what,
                       (int)(f->kv[i].key_len < 128 ? f->kv[i].key_len : 128), f->kv[i].key);
        if (key_is(&f->kv[i], "general.alignment")) {
            uint32_t a = 0;
            if (f->kv[i].type == QERR_GGUF_U32) memcpy(&a, f->kv[i].value, 4);
            QERR_CHECK(a > 0 && (a & (a - 1)) == 0 && a <= (1u << 20), QERR_E_FORMAT,
                       "%s: general.alignment must be a power of two of type uint32", what);
            f->alignment = a;
        }
    }
    uint64_t *offsets = qerr__calloc(nt ? (size_t)nt : 1, sizeof *offsets);
    QERR_CHECK(offsets, QERR_E_NOMEM, "%s: out of memory", what);
    int rc = QERR_OK;
    for (int64_t i = 0; i < f->n_tensors && rc == QERR_OK; i++) {
        rc = parse_tensor_info(c, i, &f->tensors[i], &offsets[i]);
        for (int64_t j = 0; j < i && rc == QERR_OK; j++)
            if (strcmp(f->tensors[j].name, f->tensors[i].name) == 0)
                rc = qerr__fail(QERR_E_FORMAT, "%s: tensor '%s' appears twice", what,
                                f->tensors[i].name);
    }
    size_t data_start = (c->pos + f->alignment - 1) / f->alignment * f->alignment;
    if (rc == QERR_OK && f->n_tensors > 0 && data_start > c->n)
        rc = qerr__fail(QERR_E_FORMAT, "%s: truncated before the data section", what);
    if (rc == QERR_OK && f->n_tensors > 0)
        rc = place_tensors(f, c->p, c->n, data_start, offsets, what);
    free(offsets);
    return rc;
}

int qerr__gguf_parse(const uint8_t *buf, size_t len, const char *what, qerr_gguf_file *out) {
    memset(out, 0, sizeof *out);
    QERR_CHECK(buf || len == 0, QERR_E_INVALID_ARG, "%s: NULL buffer", what);
    cursor c = {buf, len, 0, what};
    int rc = parse_body(&c, out);
    if (rc != QERR_OK) qerr__gguf_close(out);
    return rc;
}

int qerr__gguf_open(const char *path, qerr_gguf_file *out) {
    memset(out, 0, sizeof *out);
    QERR_CHECK(path, QERR_E_INVALID_ARG, "GGUF path is NULL");
    void *map;
    size_t len;
    QERR_TRY(qerr__map_file(path, &map, &len));
    int rc = qerr__gguf_parse(map, len, path, out);
    if (rc != QERR_OK) {
        if (map) munmap(map, len);
        return rc;
    }
    out->map = map;
    out->map_len = len;
    return QERR_OK;
}

void qerr__gguf_close(qerr_gguf_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_len);
    free(f->kv);
    free(f->tensors);
    memset(f, 0, sizeof *f);
}

bool qerr__gguf_is_file(const char *path) {
    struct stat st;
    if (!path || stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return false;
    FILE *fp = fopen(path, "rb");
    if (!fp) return false;
    uint8_t m[4];
    bool yes = fread(m, 1, 4, fp) == 4 && memcmp(m, "GGUF", 4) == 0;
    fclose(fp);
    return yes;
}

const qerr_gguf_kv *qerr__gguf_find(const qerr_gguf_file *f, const char *key) {
    for (int64_t i = 0; f && key && i < f->n_kv; i++)
        if (key_is(&f->kv[i], key)) return &f->kv[i];
    return NULL;
}

const qerr_gguf_tensor *qerr__gguf_tensor(const qerr_gguf_file *f, const char *name) {
    for (int64_t i = 0; f && name && i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

int qerr__gguf_get_int(const qerr_gguf_file *f, const char *key, int64_t *v) {
    const qerr_gguf_kv *kv = qerr__gguf_find(f, key);
    QERR_CHECK(kv, QERR_E_NOT_FOUND, "GGUF key '%s' is missing", key);
    const uint8_t *p = kv->value;
    switch (kv->type) {
    case QERR_GGUF_U8: *v = p[0]; return QERR_OK;
    case QERR_GGUF_I8: *v = (int8_t)p[0]; return QERR_OK;
    case QERR_GGUF_U16: { uint16_t x; memcpy(&x, p, 2); *v = x; return QERR_OK; }
    case QERR_GGUF_I16: { int16_t x; memcpy(&x, p, 2); *v = x; return QERR_OK; }
    case QERR_GGUF_U32: { uint32_t x; memcpy(&x, p, 4); *v = x; return QERR_OK; }
    case QERR_GGUF_I32: { int32_t x; memcpy(&x, p, 4); *v = x; return QERR_OK; }
    case QERR_GGUF_I64: { memcpy(v, p, 8); return QERR_OK; }
    case QERR_GGUF_U64: {
        uint64_t x;
        memcpy(&x, p, 8);
        QERR_CHECK(x <= INT64_MAX, QERR_E_FORMAT, "GGUF key '%s' is too large", key);
        *v = (int64_t)x;
        return QERR_OK;
    }
    default: return qerr__fail(QERR_E_FORMAT, "GGUF key '%s' is not an integer", key);
    }
}

int qerr__gguf_get_float(const qerr_gguf_file *f, const char *key, double *v) {
    const qerr_gguf_kv *kv = qerr__gguf_find(f, key);
    QERR_CHECK(kv, QERR_E_NOT_FOUND, "GGUF key '%s' is missing", key);
    if (kv->type == QERR_GGUF_F32) {
        float x;
        memcpy(&x, kv->value, 4);
        *v = x;
    } else if (kv->type == QERR_GGUF_F64) {
        memcpy(v, kv->value, 8);
    } else {
        return qerr__fail(QERR_E_FORMAT, "GGUF key '%s' is not a floating-point number", key);
    }
    return QERR_OK;
}

int qerr__gguf_get_str(const qerr_gguf_file *f, const char *key, char *buf, size_t cap) {
    const qerr_gguf_kv *kv = qerr__gguf_find(f, key);
    QERR_CHECK(kv, QERR_E_NOT_FOUND, "GGUF key '%s' is missing", key);
    QERR_CHECK(kv->type == QERR_GGUF_STRING, QERR_E_FORMAT, "GGUF key '%s' is not a string", key);
    QERR_CHECK(cap > 0, QERR_E_INVALID_ARG, "no room for GGUF key '%s'", key);
    size_t n = kv->count < cap - 1 ? (size_t)kv->count : cap - 1;
    memcpy(buf, kv->value, n);
    buf[n] = '\0';
    return QERR_OK;
}

/* ---- writer -------------------------------------------------------------- */
void qerr__gguf_put_bytes(qerr_gguf_sink *s, const void *data, size_t k) {
    if (s->p && k) memcpy(s->p + s->n, data, k);
    s->n += k;
}

uint8_t *qerr__gguf_put_space(qerr_gguf_sink *s, size_t k) {
    uint8_t *at = s->p ? s->p + s->n : NULL;
    if (at && k) memset(at, 0, k);
    s->n += k;
    return at;
}

void qerr__gguf_pad(qerr_gguf_sink *s, size_t align) {
    size_t r = s->n % align;
    if (r) qerr__gguf_put_space(s, align - r);
}

static void put_u32(qerr_gguf_sink *s, uint32_t v) { qerr__gguf_put_bytes(s, &v, 4); }
static void put_u64(qerr_gguf_sink *s, uint64_t v) { qerr__gguf_put_bytes(s, &v, 8); }

void qerr__gguf_put_str(qerr_gguf_sink *s, const char *str, size_t len) {
    put_u64(s, len);
    qerr__gguf_put_bytes(s, str, len);
}

void qerr__gguf_put_header(qerr_gguf_sink *s, int64_t n_tensors, int64_t n_kv) {
    put_u32(s, QERR_GGUF_MAGIC);
    put_u32(s, QERR_GGUF_VERSION);
    put_u64(s, (uint64_t)n_tensors);
    put_u64(s, (uint64_t)n_kv);
}

static void put_key(qerr_gguf_sink *s, const char *key, uint32_t type) {
    qerr__gguf_put_str(s, key, strlen(key));
    put_u32(s, type);
}

void qerr__gguf_kv_u32(qerr_gguf_sink *s, const char *key, uint32_t v) {
    put_key(s, key, QERR_GGUF_U32);
    put_u32(s, v);
}

void qerr__gguf_kv_f32(qerr_gguf_sink *s, const char *key, float v) {
    put_key(s, key, QERR_GGUF_F32);
    qerr__gguf_put_bytes(s, &v, 4);
}

void qerr__gguf_kv_bool(qerr_gguf_sink *s, const char *key, bool v) {
    put_key(s, key, QERR_GGUF_BOOL);
    uint8_t b = v ? 1 : 0;
    qerr__gguf_put_bytes(s, &b, 1);
}

void qerr__gguf_kv_str(qerr_gguf_sink *s, const char *key, const char *v) {
    put_key(s, key, QERR_GGUF_STRING);
    qerr__gguf_put_str(s, v, strlen(v));
}

void qerr__gguf_kv_array(qerr_gguf_sink *s, const char *key, int elem_type, uint64_t count) {
    put_key(s, key, QERR_GGUF_ARRAY);
    put_u32(s, (uint32_t)elem_type);
    put_u64(s, count);
}

void qerr__gguf_put_tensor_info(qerr_gguf_sink *s, const char *name, int ndim,
                                const int64_t *ne, int type, uint64_t offset) {
    qerr__gguf_put_str(s, name, strlen(name));
    put_u32(s, (uint32_t)ndim);
    for (int d = 0; d < ndim; d++) put_u64(s, (uint64_t)ne[d]);
    put_u32(s, (uint32_t)type);
    put_u64(s, offset);
}
