/* safetensors reader: 8-byte little-endian header length, a JSON header
 * {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then the
 * data section. The file is untrusted: the header must fit the file, every
 * tensor must lie inside the data section, tensors must tile it without
 * overlaps or holes, and shape x dtype size must equal the byte range. */
#include "io.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int dtype_from_name(const char *what, const char *tensor, const char *s, int *dtype) {
    if (strcmp(s, "F32") == 0) *dtype = QERR_DTYPE_F32;
    else if (strcmp(s, "F16") == 0) *dtype = QERR_DTYPE_F16;
    else if (strcmp(s, "BF16") == 0) *dtype = QERR_DTYPE_BF16;
    else if (strcmp(s, "I32") == 0) *dtype = QERR__DTYPE_I32;
    else {
        static const char *const known[] = {"F64", "I64", "I16", "I8", "U8", "U16",
                                            "U32", "U64", "BOOL", "F8_E4M3", "F8_E5M2"};
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            if (strcmp(s, known[i]) == 0)
                return qerr__fail(QERR_E_UNSUPPORTED,
                                  "%s: tensor '%.128s' has dtype %s; only F32, F16, BF16 "
                                  "(and I32 for GPTQ packed tensors) are supported",
                                  what, tensor, s);
        return qerr__fail(QERR_E_FORMAT, "%s: tensor '%.128s' has unknown dtype '%.32s'", what,
                          tensor, s);
    }
    return QERR_OK;
}

/* One header entry into e (name already set). data_len bounds the offsets. */
static int parse_entry(const char *what, const char *name, const qerr_json *v,
                       const uint8_t *data, uint64_t data_len, qerr_st_entry *e,
                       uint64_t *begin) {
    QERR_CHECK(v->type == QERR_JSON_OBJECT, QERR_E_FORMAT,
               "%s: header entry '%.128s' is not an object", what, name);
    const qerr_json *dt = qerr__json_get(v, "dtype");
    const qerr_json *sh = qerr__json_get(v, "shape");
    const qerr_json *off = qerr__json_get(v, "data_offsets");
    QERR_CHECK(dt && sh && off && v->len == 3, QERR_E_FORMAT,
               "%s: tensor '%.128s' must have exactly dtype, shape and data_offsets", what,
               name);
    QERR_CHECK(dt->type == QERR_JSON_STRING, QERR_E_FORMAT,
               "%s: tensor '%.128s': dtype is not a string", what, name);
    QERR_TRY(dtype_from_name(what, name, dt->str, &e->dtype));
    QERR_CHECK(sh->type == QERR_JSON_ARRAY, QERR_E_FORMAT,
               "%s: tensor '%.128s': shape is not an array", what, name);
    QERR_CHECK(sh->len >= 1 && sh->len <= QERR_MAX_DIMS, QERR_E_UNSUPPORTED,
               "%s: tensor '%.128s' has %zu dimensions (1..%d supported)", what, name, sh->len,
               QERR_MAX_DIMS);
    e->ndim = (int)sh->len;
    uint64_t numel = 1;
    for (size_t i = 0; i < sh->len; i++) {
        const qerr_json *d = &sh->items[i];
        QERR_CHECK(d->type == QERR_JSON_NUMBER && d->is_int && d->integer >= 0 &&
                       d->integer <= QERR_ST_MAX_DIM,
                   QERR_E_FORMAT, "%s: tensor '%.128s': dimension %zu is not an integer in 0..2^40",
                   what, name, i);
        e->shape[i] = d->integer;
        /* checked before multiplying, so numel <= data_len never overflows */
        QERR_CHECK(d->integer == 0 || numel <= data_len / (uint64_t)d->integer, QERR_E_FORMAT,
                   "%s: tensor '%.128s': shape does not fit the %llu-byte data section", what,
                   name, (unsigned long long)data_len);
        numel *= (uint64_t)d->integer;
    }
    QERR_CHECK(off->type == QERR_JSON_ARRAY && off->len == 2 &&
                   off->items[0].type == QERR_JSON_NUMBER && off->items[0].is_int &&
                   off->items[1].type == QERR_JSON_NUMBER && off->items[1].is_int,
               QERR_E_FORMAT, "%s: tensor '%.128s': data_offsets must be two integers", what,
               name);
    int64_t b = off->items[0].integer, en = off->items[1].integer;
    QERR_CHECK(b >= 0 && en >= b && (uint64_t)en <= data_len, QERR_E_FORMAT,
               "%s: tensor '%.128s': data_offsets [%lld, %lld] lie outside the %llu-byte data "
               "section",
               what, name, (long long)b, (long long)en, (unsigned long long)data_len);
    uint64_t want = numel * (e->dtype == QERR__DTYPE_I32 ? 4 : qerr_dtype_size(e->dtype));
    QERR_CHECK(want == (uint64_t)(en - b), QERR_E_FORMAT,
               "%s: tensor '%.128s': shape needs %llu bytes but data_offsets span %llu", what,
               name, (unsigned long long)want, (unsigned long long)(en - b));
    e->numel = (int64_t)numel;
    e->data = data + b;
    e->nbytes = (size_t)(en - b);
    *begin = (uint64_t)b;
    return QERR_OK;
}

static int parse_metadata(const char *what, const qerr_json *v, qerr_st_file *f) {
    QERR_CHECK(v->type == QERR_JSON_OBJECT, QERR_E_FORMAT, "%s: __metadata__ is not an object",
               what);
    if (v->len == 0) return QERR_OK;
    f->meta_keys = qerr__calloc(v->len, sizeof(char *));
    f->meta_values = qerr__calloc(v->len, sizeof(char *));
    QERR_CHECK(f->meta_keys && f->meta_values, QERR_E_NOMEM, "%s: out of memory", what);
    for (size_t i = 0; i < v->len; i++) {
        QERR_CHECK(v->items[i].type == QERR_JSON_STRING, QERR_E_FORMAT,
                   "%s: __metadata__ value of '%.128s' is not a string", what, v->keys[i]);
        f->meta_keys[i] = strdup(v->keys[i]);
        f->meta_values[i] = strdup(v->items[i].str);
        f->n_meta = (int)i + 1;
        QERR_CHECK(f->meta_keys[i] && f->meta_values[i], QERR_E_NOMEM, "%s: out of memory",
                   what);
    }
    return QERR_OK;
}

typedef struct {
    uint64_t begin;
    int index;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->index - y->index;
}

/* Tensors must tile the data section exactly: sorted by offset, each starts
 * where the previous ended (no overlap, no hole) and the last ends at the end. */
static int check_tiling(const char *what, const qerr_st_file *f, span *sp, uint64_t data_len) {
    if (f->n > 0) qsort(sp, (size_t)f->n, sizeof *sp, cmp_span);
    uint64_t at = 0;
    for (int i = 0; i < f->n; i++) {
        const qerr_st_entry *e = &f->entries[sp[i].index];
        QERR_CHECK(sp[i].begin >= at, QERR_E_FORMAT,
                   "%s: tensor '%.128s' overlaps the tensor before it in the data section", what,
                   e->name);
        QERR_CHECK(sp[i].begin == at, QERR_E_FORMAT,
                   "%s: %llu unused bytes before tensor '%.128s' in the data section", what,
                   (unsigned long long)(sp[i].begin - at), e->name);
        at = sp[i].begin + e->nbytes;
    }
    QERR_CHECK(at == data_len, QERR_E_FORMAT,
               "%s: %llu bytes at the end of the data section belong to no tensor", what,
               (unsigned long long)(data_len - at));
    return QERR_OK;
}

static int parse_header(const uint8_t *buf, size_t len, const char *what, qerr_st_file *f) {
    QERR_CHECK(len >= 8, QERR_E_FORMAT, "%s: %zu bytes is too short for a safetensors file",
               what, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    QERR_CHECK(hlen >= 2 && hlen <= QERR_ST_MAX_HEADER, QERR_E_FORMAT,
               "%s: header length %llu is not in 2..%llu", what, (unsigned long long)hlen,
               (unsigned long long)QERR_ST_MAX_HEADER);
    QERR_CHECK(hlen <= len - 8, QERR_E_FORMAT,
               "%s: header length %llu runs past the end of the %zu-byte file", what,
               (unsigned long long)hlen, len);
    QERR_CHECK(buf[8] == '{', QERR_E_FORMAT, "%s: header does not start with '{'", what);
    qerr_json *h;
    QERR_TRY(qerr__json_parse((const char *)buf + 8, (size_t)hlen, what, &h));
    const uint8_t *data = buf + 8 + hlen;
    uint64_t data_len = len - 8 - hlen;
    int rc = QERR_OK;
    span *sp = NULL;
    if (h->type != QERR_JSON_OBJECT) rc = qerr__fail(QERR_E_FORMAT, "%s: header is not a JSON object", what);
    if (rc == QERR_OK && h->len > 0) {
        f->entries = qerr__calloc(h->len, sizeof *f->entries);
        sp = qerr__calloc(h->len, sizeof *sp);
        if (!f->entries || !sp) rc = qerr__fail(QERR_E_NOMEM, "%s: out of memory", what);
    }
    for (size_t i = 0; rc == QERR_OK && i < h->len; i++) {
        const char *name = h->keys[i];
        if (strcmp(name, "__metadata__") == 0) {
            rc = parse_metadata(what, &h->items[i], f);
            continue;
        }
        if (name[0] == '\0') {
            rc = qerr__fail(QERR_E_FORMAT, "%s: a tensor has an empty name", what);
            break;
        }
        qerr_st_entry *e = &f->entries[f->n];
        e->name = strdup(name);
        if (!e->name) {
            rc = qerr__fail(QERR_E_NOMEM, "%s: out of memory", what);
            break;
        }
        f->n++;
        rc = parse_entry(what, name, &h->items[i], data, data_len, e, &sp[f->n - 1].begin);
        sp[f->n - 1].index = f->n - 1;
    }
    if (rc == QERR_OK) rc = check_tiling(what, f, sp, data_len);
    free(sp);
    qerr__json_free(h);
    return rc;
}

int qerr__st_parse(const uint8_t *buf, size_t len, const char *what, qerr_st_file *out) {
    QERR_CHECK(out, QERR_E_INVALID_ARG, "qerr__st_parse: out is NULL");
    memset(out, 0, sizeof *out);
    if (!what) what = "safetensors";
    QERR_CHECK(buf || len == 0, QERR_E_INVALID_ARG, "%s: buffer is NULL", what);
    int rc = parse_header(buf, len, what, out);
    if (rc != QERR_OK) qerr__st_close(out);
    return rc;
}

int qerr__st_open(const char *path, qerr_st_file *out) {
    QERR_CHECK(out, QERR_E_INVALID_ARG, "qerr__st_open: out is NULL");
    memset(out, 0, sizeof *out);
    QERR_CHECK(path, QERR_E_INVALID_ARG, "qerr__st_open: path is NULL");
    void *map;
    size_t len;
    QERR_TRY(qerr__map_file(path, &map, &len));
    int rc = qerr__st_parse(map ? map : (const uint8_t *)"", len, path, out);
    if (rc != QERR_OK) {
        if (map) munmap(map, len);
        return rc;
    }
    out->map = map;
    out->map_len = len;
    return QERR_OK;
}

int qerr__map_file(const char *path, void **map, size_t *len) {
    *map = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    QERR_CHECK(fd >= 0, QERR_E_IO, "%s: cannot open", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return qerr__fail(QERR_E_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    if (n > 0) {
        void *p = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return qerr__fail(QERR_E_IO, "%s: mmap of %zu bytes failed", path, n);
        }
        *map = p;
    }
    close(fd);
    *len = n;
    return QERR_OK;
}

void qerr__st_close(qerr_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->entries[i].name);
    free(f->entries);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    if (f->map) munmap(f->map, f->map_len);
    memset(f, 0, sizeof *f);
}

const char *qerr__st_meta(const qerr_st_file *f, const char *key) {
    for (int i = 0; f && key && i < f->n_meta; i++)
        if (f->meta_keys[i] && strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

void qerr__st_convert(int dtype, const uint8_t *src, int64_t n, float *dst) {
    /* memcpy first: the data may be unaligned inside the mapping. */
    if (dtype == QERR_DTYPE_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    if (dtype == QERR__DTYPE_I32) {
        for (int64_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, src + 4 * i, sizeof v);
            dst[i] = (float)v;
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, sizeof h);
        dst[i] = dtype == QERR_DTYPE_F16 ? qerr__f16_to_f32(h) : qerr__bf16_to_f32(h);
    }
}

void qerr__st_to_f32(const qerr_st_entry *e, float *dst) {
    qerr__st_convert(e->dtype, e->data, e->numel, dst);
}

int64_t qerr__st_find_nonfinite(const qerr_st_entry *e) {
    if (e->dtype != QERR_DTYPE_F32 && e->dtype != QERR_DTYPE_F16 && e->dtype != QERR_DTYPE_BF16)
        return -1; /* integers (GPTQ parts) are always finite */
    if (e->dtype == QERR_DTYPE_F32) {
        for (int64_t i = 0; i < e->numel; i++) {
            uint32_t u;
            memcpy(&u, e->data + 4 * i, sizeof u);
            if ((u & 0x7f800000u) == 0x7f800000u) return i;
        }
        return -1;
    }
    /* f16: exponent 0x7c00; bf16: the top half of an f32, exponent 0x7f80 */
    const uint16_t mask = e->dtype == QERR_DTYPE_F16 ? 0x7c00u : 0x7f80u;
    for (int64_t i = 0; i < e->numel; i++) {
        uint16_t h;
        memcpy(&h, e->data + 2 * i, sizeof h);
        if ((h & mask) == mask) return i;
    }
    return -1;
}

void qerr__st_drop_pages(const qerr_st_file *f, const qerr_st_entry *e) {
    if (!f->map || e->nbytes == 0) return;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t base = (uintptr_t)f->map, end_map = base + f->map_len;
    uintptr_t b = (uintptr_t)e->data & ~(page - 1);
    uintptr_t en = ((uintptr_t)e->data + e->nbytes + page - 1) & ~(page - 1);
    if (b < base) b = base;
    if (en > end_map) en = end_map;
    if (en > b) (void)madvise((void *)b, (size_t)(en - b), MADV_DONTNEED);
}
