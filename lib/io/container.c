/* The quantized-model container (.qerr): a CRC-checked header, one
 * zlib-compressed metadata record and one per tensor, each with a CRC-32 of
 * its uncompressed bytes. The byte layout is documented in docs/formats.md;
 * the reader checks every size against the bytes actually present before it
 * allocates anything. */
#include "qmodel_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the .qerr container code assumes a little-endian host"
#endif

#define QMD_MAGIC "QERRQMDL"
#define QMD_VERSION 1u
#define QMD_HEADER 48
#define QMD_RECORD_HEADER 32
#define QMD_TAG_META "META"
#define QMD_TAG_TENSOR "TENS"
#define QMD_FLAG_G_IDX 1u
#define QMD_FLAG_MINS 2u /* float32 per-group offsets follow the zeros */
/* deflate cannot expand data more than 1032:1, so a record's declared raw
 * size beyond this is a lie and is refused before allocating. */
#define QMD_MAX_RATIO 1032u
#define QMD_MAX_FILE ((size_t)1 << 40)

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* ---- checks shared by writer and reader ---------------------------------- */

/* Value checks of a result whose sizes are already consistent. Returns NULL
 * when valid, else a reason written into why. */
static const char *check_result(const qerr_result *r, char *why, size_t cap) {
    if (r->bits < 2 || r->bits > 8) return snprintf(why, cap, "bits=%d is outside 2..8", r->bits), why;
    if (r->rows < 1 || r->cols < 1 || r->rows > INT32_MAX || r->cols > INT32_MAX)
        return snprintf(why, cap, "shape %lldx%lld is outside 1..2^31-1", (long long)r->rows,
                        (long long)r->cols), why;
    if (r->group_size < 1 || r->group_size > r->cols ||
        r->groups != (r->cols + r->group_size - 1) / r->group_size)
        return snprintf(why, cap, "group_size=%lld and groups=%lld do not fit %lld columns",
                        (long long)r->group_size, (long long)r->groups, (long long)r->cols), why;
    const int maxq = (1 << r->bits) - 1;
    for (int64_t i = 0; i < r->rows * r->cols; i++)
        if (r->codes[i] > maxq)
            return snprintf(why, cap, "code %d at %lld does not fit in %d bits", r->codes[i],
                            (long long)i, r->bits), why;
    for (int64_t i = 0; i < r->rows * r->groups; i++)
        if (!isfinite(r->scales[i]))
            return snprintf(why, cap, "scale %lld is not finite", (long long)i), why;
    for (int64_t i = 0; r->mins && i < r->rows * r->groups; i++)
        if (!isfinite(r->mins[i]))
            return snprintf(why, cap, "offset %lld is not finite", (long long)i), why;
    for (int64_t j = 0; j < r->cols; j++)
        if (r->g_idx[j] < 0 || r->g_idx[j] >= r->groups)
            return snprintf(why, cap, "g_idx[%lld] = %d is outside 0..%lld", (long long)j,
                            r->g_idx[j], (long long)r->groups - 1), why;
    if (r->n_outliers < 0 || r->n_outliers > r->rows * r->cols)
        return snprintf(why, cap, "%lld outliers", (long long)r->n_outliers), why;
    for (int64_t k = 0; k < r->n_outliers; k++) {
        int32_t i = r->out_row[k], j = r->out_col[k];
        if (i < 0 || i >= r->rows || j < 0 || j >= r->cols)
            return snprintf(why, cap, "outlier %lld at (%d, %d) is outside the matrix",
                            (long long)k, i, j), why;
        if (k > 0 && (i < r->out_row[k - 1] || (i == r->out_row[k - 1] && j <= r->out_col[k - 1])))
            return snprintf(why, cap, "outlier %lld is not in strictly increasing (row, col) order",
                            (long long)k), why;
        if (!isfinite(r->out_val[k]))
            return snprintf(why, cap, "outlier %lld is not finite", (long long)k), why;
    }
    for (int e = 0; e < r->n_extras; e++) {
        const qerr_extra *x = &r->extras[e];
        size_t len = strnlen(x->name, sizeof x->name);
        if (len == 0 || len >= sizeof x->name || !qerr__utf8_ok(x->name, len))
            return snprintf(why, cap, "extra %d has an empty or invalid name", e), why;
        for (int f = 0; f < e; f++)
            if (strcmp(r->extras[f].name, x->name) == 0)
                return snprintf(why, cap, "two extras are named '%s'", x->name), why;
        int64_t n = 1;
        for (int d = 0; d < x->ndim; d++) n *= x->shape[d];
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(x->data[i]))
                return snprintf(why, cap, "extra '%s' holds a non-finite value", x->name), why;
    }
    for (int d = 0; d < r->n_diag; d++) {
        size_t len = strnlen(r->diag[d].name, sizeof r->diag[d].name);
        if (len == 0 || len >= sizeof r->diag[d].name || !qerr__utf8_ok(r->diag[d].name, len))
            return snprintf(why, cap, "diagnostic %d has an empty or invalid name", d), why;
    }
    return NULL;
}

/* ---- writer -------------------------------------------------------------- */

typedef struct bbuf {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} bbuf;

static uint8_t *bb_grab(bbuf *b, size_t k) {
    if (b->oom) return NULL;
    if (b->cap - b->n < k) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < k) {
            if (cap > SIZE_MAX / 2) {
                b->oom = true;
                return NULL;
            }
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    uint8_t *at = b->p + b->n;
    b->n += k;
    return at;
}
static void bb_bytes(bbuf *b, const void *src, size_t k) {
    uint8_t *at = bb_grab(b, k);
    if (at && k) memcpy(at, src, k);
}
static void bb_u32(bbuf *b, uint32_t v) { bb_bytes(b, &v, 4); }
static void bb_u64(bbuf *b, uint64_t v) { bb_bytes(b, &v, 8); }
static void bb_str(bbuf *b, const char *s) {
    size_t n = strlen(s);
    bb_u32(b, (uint32_t)n);
    bb_bytes(b, s, n);
}

static void encode_meta(const qerr_qmodel *q, bbuf *b) {
    for (int i = 0; i < qerr__qmodel_meta_count(q); i++) {
        const char *k, *v;
        qerr__qmodel_meta_at(q, i, &k, &v);
        bb_str(b, k);
        bb_str(b, v);
    }
}

static int encode_tensor(const char *name, const qerr_result *r, bbuf *b) {
    char why[160];
    const char *bad = check_result(r, why, sizeof why);
    QERR_CHECK(!bad, QERR_E_INVALID_ARG, "qerr_qmodel_save: tensor '%s' cannot be stored: %s",
               name, bad);
    const char *plan = qerr_result_plan(r);
    size_t plan_len = strlen(plan);
    QERR_CHECK(plan_len <= QERR_QMODEL_MAX_PLAN && qerr__utf8_ok(plan, plan_len),
               QERR_E_INVALID_ARG, "qerr_qmodel_save: tensor '%s' has an invalid plan string",
               name);
    bb_str(b, name);
    bb_str(b, plan);
    bb_u64(b, (uint64_t)r->rows);
    bb_u64(b, (uint64_t)r->cols);
    bb_u32(b, (uint32_t)r->bits);
    bb_u32(b, (r->g_idx_trivial ? 0u : QMD_FLAG_G_IDX) | (r->mins ? QMD_FLAG_MINS : 0u));
    bb_u64(b, (uint64_t)r->group_size);
    bb_u64(b, (uint64_t)r->groups);
    size_t packed = qerr_result_packed_size(r);
    uint8_t *at = bb_grab(b, packed);
    if (at) QERR_TRY(qerr_result_packed(r, at, packed));
    size_t ng = (size_t)(r->rows * r->groups);
    bb_bytes(b, r->scales, ng * sizeof(float));
    bb_bytes(b, r->zeros, ng * sizeof(int32_t));
    if (r->mins) bb_bytes(b, r->mins, ng * sizeof(float));
    if (!r->g_idx_trivial) bb_bytes(b, r->g_idx, (size_t)r->cols * sizeof(int32_t));
    size_t no = (size_t)r->n_outliers;
    bb_u64(b, (uint64_t)no);
    bb_bytes(b, r->out_row, no * sizeof(int32_t));
    bb_bytes(b, r->out_col, no * sizeof(int32_t));
    bb_bytes(b, r->out_val, no * sizeof(float));
    bb_u32(b, (uint32_t)r->n_extras);
    for (int e = 0; e < r->n_extras; e++) {
        const qerr_extra *x = &r->extras[e];
        bb_str(b, x->name);
        bb_u32(b, (uint32_t)x->ndim);
        size_t n = 1;
        for (int d = 0; d < x->ndim; d++) {
            bb_u64(b, (uint64_t)x->shape[d]);
            n *= (size_t)x->shape[d];
        }
        bb_bytes(b, x->data, n * sizeof(float));
    }
    bb_u32(b, (uint32_t)r->n_diag);
    for (int d = 0; d < r->n_diag; d++) {
        bb_str(b, r->diag[d].name);
        bb_bytes(b, &r->diag[d].value, sizeof(double));
    }
    return QERR_OK;
}

/* Append one record (header + zlib stream) holding raw[0..n) to out. */
static int append_record(bbuf *out, const char *tag, const uint8_t *raw, size_t n) {
    uint8_t *z = NULL;
    size_t zn = 0;
    QERR_TRY(qerr__deflate(raw, n, &z, &zn));
    uint8_t *h = bb_grab(out, QMD_RECORD_HEADER);
    if (h) {
        memcpy(h, tag, 4);
        put32(h + 4, qerr__crc32(raw, n));
        put64(h + 8, (uint64_t)n);
        put64(h + 16, (uint64_t)zn);
        put32(h + 24, qerr__crc32(z, zn));
        put32(h + 28, qerr__crc32(h, 28));
    }
    bb_bytes(out, z, zn);
    free(z);
    QERR_CHECK(!out->oom, QERR_E_NOMEM, "qerr_qmodel_save: out of memory");
    return QERR_OK;
}

int qerr__qmodel_serialize(const qerr_qmodel *q, uint8_t **data, size_t *n) {
    QERR_CHECK(q && data && n, QERR_E_INVALID_ARG, "qerr_qmodel_save: NULL argument");
    *data = NULL;
    *n = 0;
    bbuf out = {0}, rec = {0};
    int rc = QERR_OK;
    (void)bb_grab(&out, QMD_HEADER);
    encode_meta(q, &rec);
    if (rec.oom) rc = qerr__fail(QERR_E_NOMEM, "qerr_qmodel_save: out of memory");
    if (rc == QERR_OK) rc = append_record(&out, QMD_TAG_META, rec.p, rec.n);
    for (int i = 0; rc == QERR_OK && i < qerr_qmodel_count(q); i++) {
        const char *name = qerr_qmodel_name(q, i);
        const qerr_result *r;
        rec.n = 0;
        rc = qerr_qmodel_get(q, name, &r);
        if (rc == QERR_OK) rc = encode_tensor(name, r, &rec);
        if (rc == QERR_OK && rec.oom)
            rc = qerr__fail(QERR_E_NOMEM, "qerr_qmodel_save: out of memory for tensor '%s'", name);
        if (rc == QERR_OK) rc = append_record(&out, QMD_TAG_TENSOR, rec.p, rec.n);
    }
    free(rec.p);
    if (rc == QERR_OK && out.oom) rc = qerr__fail(QERR_E_NOMEM, "qerr_qmodel_save: out of memory");
    if (rc != QERR_OK) {
        free(out.p);
        return rc;
    }
    uint8_t *h = out.p;
    memcpy(h, QMD_MAGIC, 8);
    put32(h + 8, QMD_VERSION);
    put32(h + 12, 0);
    put64(h + 16, (uint64_t)out.n);
    put64(h + 24, (uint64_t)qerr_qmodel_count(q));
    put64(h + 32, (uint64_t)qerr__qmodel_meta_count(q));
    put32(h + 40, 0);
    put32(h + 44, qerr__crc32(h, 44));
    *data = out.p;
    *n = out.n;
    return QERR_OK;
}

int qerr_qmodel_save(const qerr_qmodel *q, const char *path) {
    QERR_CHECK(q && path, QERR_E_INVALID_ARG, "qerr_qmodel_save: %s is NULL", q ? "path" : "qmodel");
    uint8_t *data;
    size_t n;
    QERR_TRY(qerr__qmodel_serialize(q, &data, &n));
    int rc = qerr__write_file_atomic(path, data, n);
    free(data);
    return rc;
}

/* ---- reader -------------------------------------------------------------- */

/* A bounds-checked cursor over one record's uncompressed bytes. */
typedef struct cursor {
    const uint8_t *p;
    size_t n, pos;
} cursor;

static size_t cur_left(const cursor *c) { return c->n - c->pos; }
static const uint8_t *cur_take(cursor *c, size_t k) {
    if (cur_left(c) < k) return NULL;
    const uint8_t *at = c->p + c->pos;
    c->pos += k;
    return at;
}
static bool cur_u32(cursor *c, uint32_t *v) {
    const uint8_t *at = cur_take(c, 4);
    if (at) *v = get32(at);
    return at != NULL;
}
static bool cur_u64(cursor *c, uint64_t *v) {
    const uint8_t *at = cur_take(c, 8);
    if (at) *v = get64(at);
    return at != NULL;
}
/* A length-prefixed string of at most max bytes, valid UTF-8 without NUL,
 * copied NUL-terminated into a new allocation (*s) or into buf (when buf). */
static bool cur_str(cursor *c, size_t max, bool allow_empty, char **s, char *buf) {
    uint32_t len;
    if (!cur_u32(c, &len) || len > max || (len == 0 && !allow_empty)) return false;
    const uint8_t *at = cur_take(c, len);
    if (!at || !qerr__utf8_ok((const char *)at, len)) return false;
    char *d = buf ? buf : malloc((size_t)len + 1);
    if (!d) return false;
    memcpy(d, at, len);
    d[len] = '\0';
    if (s) *s = d;
    return true;
}

#define LOAD_FAIL(code, fmt, ...) \
    qerr__fail((code), "qerr_qmodel_load: %s: " fmt, label, ##__VA_ARGS__)

static int parse_meta(const cursor *rec, uint64_t n_meta, const char *label, qerr_qmodel *q) {
    cursor c = *rec;
    for (uint64_t i = 0; i < n_meta; i++) {
        char *k = NULL, *v = NULL;
        bool ok = cur_str(&c, QERR_QMODEL_MAX_NAME, false, &k, NULL) &&
                  cur_str(&c, QERR_QMODEL_MAX_VALUE, true, &v, NULL);
        int rc = QERR_OK;
        if (!ok)
            rc = LOAD_FAIL(QERR_E_FORMAT, "metadata entry %llu is truncated or not UTF-8",
                           (unsigned long long)i);
        else if (qerr_qmodel_meta(q, k))
            rc = LOAD_FAIL(QERR_E_FORMAT, "metadata key '%s' appears twice", k);
        else
            rc = qerr_qmodel_set_meta(q, k, v);
        free(k);
        free(v);
        QERR_TRY(rc);
    }
    QERR_CHECK(cur_left(&c) == 0, QERR_E_FORMAT,
               "qerr_qmodel_load: %s: metadata record has %zu trailing bytes", label, cur_left(&c));
    return QERR_OK;
}

/* Unpack rows of LSB-first codes; padding bits past the last code of a row
 * must be zero so that every file has one canonical form. */
static bool unpack_codes(const uint8_t *src, qerr_result *r) {
    size_t rb = (size_t)((r->cols * r->bits + 7) / 8);
    const unsigned mask = (1u << r->bits) - 1;
    for (int64_t i = 0; i < r->rows; i++) {
        const uint8_t *row = src + (size_t)i * rb;
        uint8_t *c = r->codes + i * r->cols;
        uint64_t bit = 0;
        for (int64_t j = 0; j < r->cols; j++, bit += (uint64_t)r->bits) {
            unsigned v = row[bit >> 3];
            if ((bit & 7) + (uint64_t)r->bits > 8) v |= (unsigned)row[(bit >> 3) + 1] << 8;
            c[j] = (uint8_t)((v >> (bit & 7)) & mask);
        }
        unsigned used = (unsigned)(bit & 7);
        if (used && (row[rb - 1] >> used) != 0) return false;
    }
    return true;
}

/* Decode one tensor record into a new result named *name. */
static int parse_tensor(const cursor *rec, uint64_t index, const char *label, char **name_out,
                        qerr_result **out) {
    cursor c = *rec;
    *name_out = NULL;
    *out = NULL;
    char *name = NULL, *plan = NULL;
    qerr_result *r = NULL;
    int rc = QERR_OK;
#define BAD(...) do { rc = LOAD_FAIL(QERR_E_FORMAT, __VA_ARGS__); goto fail; } while (0)
#define WHO "tensor %llu ('%s'): "
#define WHO_ARGS (unsigned long long)index, name
    if (!cur_str(&c, QERR_QMODEL_MAX_NAME, false, &name, NULL))
        BAD("tensor %llu has a missing, empty, over-long or non-UTF-8 name",
            (unsigned long long)index);
    if (!cur_str(&c, QERR_QMODEL_MAX_PLAN, true, &plan, NULL))
        BAD(WHO "plan string is truncated, over-long or not UTF-8", WHO_ARGS);
    uint64_t rows, cols, gs, groups;
    uint32_t bits, flags;
    if (!cur_u64(&c, &rows) || !cur_u64(&c, &cols) || !cur_u32(&c, &bits) ||
        !cur_u32(&c, &flags) || !cur_u64(&c, &gs) || !cur_u64(&c, &groups))
        BAD(WHO "grid header is truncated", WHO_ARGS);
    if (rows < 1 || cols < 1 || rows > INT32_MAX || cols > INT32_MAX)
        BAD(WHO "shape %llux%llu is outside 1..2^31-1", WHO_ARGS, (unsigned long long)rows,
            (unsigned long long)cols);
    if (bits < 2 || bits > 8) BAD(WHO "bits=%u is outside 2..8", WHO_ARGS, bits);
    if (flags & ~(QMD_FLAG_G_IDX | QMD_FLAG_MINS)) BAD(WHO "unknown flags 0x%x", WHO_ARGS, flags);
    if (gs < 1 || gs > cols || groups != (cols + gs - 1) / gs)
        BAD(WHO "group_size=%llu and groups=%llu do not fit %llu columns", WHO_ARGS,
            (unsigned long long)gs, (unsigned long long)groups, (unsigned long long)cols);
    /* Every array must fit in the bytes left before anything is allocated. */
    size_t rb = (size_t)((cols * bits + 7) / 8), left = cur_left(&c);
    size_t ng = (size_t)(rows * groups); /* < 2^62 */
    const size_t per_group = (flags & QMD_FLAG_MINS) ? 12 : 8;
    if (rows > left / rb || ng > (left - rows * rb) / per_group ||
        ((flags & QMD_FLAG_G_IDX) && cols > (left - rows * rb - ng * per_group) / 4))
        BAD(WHO "%llux%llu grid needs more bytes than the record holds", WHO_ARGS,
            (unsigned long long)rows, (unsigned long long)cols);
    if ((rc = qerr__result_alloc(&r, (int64_t)rows, (int64_t)cols, (int)bits, (int64_t)gs)) !=
        QERR_OK)
        goto fail;
    if (!unpack_codes(cur_take(&c, rows * rb), r))
        BAD(WHO "non-zero padding bits after the last code of a row", WHO_ARGS);
    memcpy(r->scales, cur_take(&c, ng * 4), ng * 4);
    memcpy(r->zeros, cur_take(&c, ng * 4), ng * 4);
    if (flags & QMD_FLAG_MINS) {
        if ((rc = qerr__result_alloc_mins(r)) != QERR_OK) goto fail;
        memcpy(r->mins, cur_take(&c, ng * 4), ng * 4);
    }
    if (flags & QMD_FLAG_G_IDX) {
        memcpy(r->g_idx, cur_take(&c, cols * 4), cols * 4);
        r->g_idx_trivial = false;
    }
    uint64_t no;
    if (!cur_u64(&c, &no)) BAD(WHO "outlier count is truncated", WHO_ARGS);
    if (no > rows * cols || no > cur_left(&c) / 12)
        BAD(WHO "%llu outliers do not fit", WHO_ARGS, (unsigned long long)no);
    if (no > 0) {
        const uint8_t *orow = cur_take(&c, no * 4), *ocol = cur_take(&c, no * 4),
                      *oval = cur_take(&c, no * 4);
        /* set_outliers copies from int32/float arrays: go through aligned ones */
        int32_t *tmp = qerr__malloc2((size_t)no, 12);
        if (!tmp) {
            rc = qerr__fail(QERR_E_NOMEM, "qerr_qmodel_load: out of memory");
            goto fail;
        }
        memcpy(tmp, orow, no * 4);
        memcpy(tmp + no, ocol, no * 4);
        memcpy(tmp + 2 * no, oval, no * 4);
        rc = qerr__result_set_outliers(r, (int64_t)no, tmp, tmp + no, (const float *)(tmp + 2 * no));
        free(tmp);
        if (rc != QERR_OK) goto fail;
    }
    uint32_t ne;
    if (!cur_u32(&c, &ne)) BAD(WHO "extra count is truncated", WHO_ARGS);
    if (ne > QERR_MAX_EXTRAS) BAD(WHO "%u extras (at most %d)", WHO_ARGS, ne, QERR_MAX_EXTRAS);
    for (uint32_t e = 0; e < ne; e++) {
        char ename[sizeof r->extras[0].name];
        uint32_t ndim;
        int64_t shape[QERR_MAX_DIMS];
        if (!cur_str(&c, sizeof ename - 1, false, NULL, ename) || !cur_u32(&c, &ndim) ||
            ndim < 1 || ndim > QERR_MAX_DIMS)
            BAD(WHO "extra %u has a bad name or rank", WHO_ARGS, e);
        uint64_t numel = 1;
        for (uint32_t d = 0; d < ndim; d++) {
            uint64_t s;
            if (!cur_u64(&c, &s) || s < 1 || s > cur_left(&c) / 4 || numel > cur_left(&c) / 4 / s)
                BAD(WHO "extra '%s' has a shape that does not fit the record", WHO_ARGS, ename);
            shape[d] = (int64_t)s;
            numel *= s;
        }
        const uint8_t *at = cur_take(&c, numel * 4);
        if (!at) BAD(WHO "extra '%s' is truncated", WHO_ARGS, ename);
        float *vals = qerr__malloc2((size_t)numel, sizeof(float));
        if (!vals) {
            rc = qerr__fail(QERR_E_NOMEM, "qerr_qmodel_load: out of memory");
            goto fail;
        }
        memcpy(vals, at, numel * 4);
        rc = qerr__result_add_extra(r, ename, (int)ndim, shape, vals);
        free(vals);
        if (rc != QERR_OK) goto fail;
    }
    uint32_t nd;
    if (!cur_u32(&c, &nd)) BAD(WHO "diagnostic count is truncated", WHO_ARGS);
    if (nd > QERR_MAX_DIAG) BAD(WHO "%u diagnostics (at most %d)", WHO_ARGS, nd, QERR_MAX_DIAG);
    for (uint32_t d = 0; d < nd; d++) {
        char dname[sizeof r->diag[0].name];
        const uint8_t *at;
        if (!cur_str(&c, sizeof dname - 1, false, NULL, dname) || !(at = cur_take(&c, 8)))
            BAD(WHO "diagnostic %u is truncated or badly named", WHO_ARGS, d);
        for (int k = 0; k < r->n_diag; k++)
            if (strcmp(r->diag[k].name, dname) == 0)
                BAD(WHO "diagnostic '%s' appears twice", WHO_ARGS, dname);
        double v;
        memcpy(&v, at, 8);
        qerr__result_set_diag(r, dname, v);
    }
    if (cur_left(&c) != 0) BAD(WHO "%zu trailing bytes", WHO_ARGS, cur_left(&c));
    char why[160];
    const char *bad = check_result(r, why, sizeof why);
    if (bad) BAD(WHO "%s", WHO_ARGS, bad);
    if (plan[0]) {
        r->plan = plan;
        plan = NULL;
    }
    free(plan);
    *name_out = name;
    *out = r;
    return QERR_OK;
#undef WHO_ARGS
#undef WHO
#undef BAD
fail:
    free(name);
    free(plan);
    qerr_result_free(r);
    return rc;
}

/* Check one record header at data[*pos] and inflate its payload into a new
 * buffer; advances *pos past the record. */
static int read_record(const uint8_t *data, size_t n, size_t *pos, const char *tag,
                       const char *what, const char *label, uint8_t **raw, size_t *raw_n) {
    *raw = NULL;
    *raw_n = 0;
    QERR_CHECK(n - *pos >= QMD_RECORD_HEADER, QERR_E_FORMAT,
               "qerr_qmodel_load: %s: truncated before the %s record header", label, what);
    const uint8_t *h = data + *pos;
    QERR_CHECK(get32(h + 28) == qerr__crc32(h, 28), QERR_E_CHECKSUM,
               "qerr_qmodel_load: %s: header checksum mismatch in the %s record", label, what);
    QERR_CHECK(memcmp(h, tag, 4) == 0, QERR_E_FORMAT,
               "qerr_qmodel_load: %s: the %s record has a wrong tag", label, what);
    uint64_t rn = get64(h + 8), zn = get64(h + 16);
    size_t left = n - *pos - QMD_RECORD_HEADER;
    QERR_CHECK(zn <= left, QERR_E_FORMAT,
               "qerr_qmodel_load: %s: the %s record claims %llu compressed bytes, %zu remain",
               label, what, (unsigned long long)zn, left);
    QERR_CHECK(rn <= zn * QMD_MAX_RATIO, QERR_E_FORMAT,
               "qerr_qmodel_load: %s: the %s record claims %llu bytes from %llu compressed",
               label, what, (unsigned long long)rn, (unsigned long long)zn);
    /* The stream's own checksum: deflate leaves unused bits in its last byte
     * that inflate ignores, and a flipped bit there must not go unnoticed. */
    QERR_CHECK(qerr__crc32(h + QMD_RECORD_HEADER, (size_t)zn) == get32(h + 24), QERR_E_CHECKSUM,
               "qerr_qmodel_load: %s: compressed-data checksum mismatch in the %s record", label,
               what);
    uint8_t *buf = malloc(rn ? (size_t)rn : 1);
    QERR_CHECK(buf, QERR_E_NOMEM, "qerr_qmodel_load: out of memory for the %s record", what);
    int rc = qerr__inflate(h + QMD_RECORD_HEADER, (size_t)zn, buf, (size_t)rn);
    if (rc != QERR_OK) {
        char zmsg[128]; /* copy: the message buffer is about to be rewritten */
        snprintf(zmsg, sizeof zmsg, "%s", qerr_last_error());
        rc = LOAD_FAIL(QERR_E_FORMAT, "the %s record: %s", what, zmsg);
    }
    else if (qerr__crc32(buf, (size_t)rn) != get32(h + 4))
        rc = LOAD_FAIL(QERR_E_CHECKSUM, "data checksum mismatch in the %s record", what);
    if (rc != QERR_OK) {
        free(buf);
        return rc;
    }
    *pos += QMD_RECORD_HEADER + (size_t)zn;
    *raw = buf;
    *raw_n = (size_t)rn;
    return QERR_OK;
}

int qerr__qmodel_parse(const uint8_t *data, size_t n, const char *label, qerr_qmodel **out) {
    QERR_CHECK(out, QERR_E_INVALID_ARG, "qerr_qmodel_load: out is NULL");
    *out = NULL;
    QERR_CHECK(data || n == 0, QERR_E_INVALID_ARG, "qerr_qmodel_load: data is NULL");
    if (!label) label = "<memory>";
    QERR_CHECK(n >= 8 && memcmp(data, QMD_MAGIC, 8) == 0, QERR_E_FORMAT,
               "qerr_qmodel_load: %s is not a libqerr quantized model (bad magic)", label);
    QERR_CHECK(n >= QMD_HEADER, QERR_E_FORMAT, "qerr_qmodel_load: %s: truncated header", label);
    QERR_CHECK(get32(data + 44) == qerr__crc32(data, 44), QERR_E_CHECKSUM,
               "qerr_qmodel_load: %s: header checksum mismatch", label);
    uint32_t version = get32(data + 8);
    QERR_CHECK(version == QMD_VERSION, QERR_E_FORMAT,
               "qerr_qmodel_load: %s: format version %u, this library reads version %u", label,
               version, QMD_VERSION);
    QERR_CHECK(get32(data + 12) == 0 && get32(data + 40) == 0, QERR_E_FORMAT,
               "qerr_qmodel_load: %s: unknown header flags", label);
    uint64_t size = get64(data + 16), nt = get64(data + 24), nm = get64(data + 32);
    QERR_CHECK(size == n, QERR_E_FORMAT,
               "qerr_qmodel_load: %s: header says %llu bytes but there are %zu (truncated?)",
               label, (unsigned long long)size, n);
    /* each record takes a header, a tensor at least ~40 raw bytes */
    QERR_CHECK(nt <= QERR_QMODEL_MAX_TENSORS && nt <= (n - QMD_HEADER) / QMD_RECORD_HEADER &&
                   nm <= QERR_QMODEL_MAX_META,
               QERR_E_FORMAT, "qerr_qmodel_load: %s: impossible counts (%llu tensors, %llu keys)",
               label, (unsigned long long)nt, (unsigned long long)nm);
    qerr_qmodel *q = NULL;
    QERR_TRY(qerr_qmodel_create(&q));
    size_t pos = QMD_HEADER;
    uint8_t *raw;
    size_t raw_n;
    int rc = read_record(data, n, &pos, QMD_TAG_META, "metadata", label, &raw, &raw_n);
    if (rc == QERR_OK) {
        cursor c = {raw, raw_n, 0};
        if (nm > raw_n / 8)
            rc = LOAD_FAIL(QERR_E_FORMAT, "%llu metadata keys do not fit in %zu bytes",
                           (unsigned long long)nm, raw_n);
        else
            rc = parse_meta(&c, nm, label, q);
        free(raw);
    }
    for (uint64_t i = 0; rc == QERR_OK && i < nt; i++) {
        char what[48];
        snprintf(what, sizeof what, "tensor %llu", (unsigned long long)i);
        rc = read_record(data, n, &pos, QMD_TAG_TENSOR, what, label, &raw, &raw_n);
        if (rc != QERR_OK) break;
        cursor c = {raw, raw_n, 0};
        char *name;
        qerr_result *r;
        rc = parse_tensor(&c, i, label, &name, &r);
        free(raw);
        if (rc != QERR_OK) break;
        if (qerr__qmodel_find(q, name) >= 0) {
            rc = LOAD_FAIL(QERR_E_FORMAT, "tensor name '%s' appears twice", name);
            qerr_result_free(r);
        } else {
            rc = qerr_qmodel_add(q, name, r);
        }
        free(name);
    }
    if (rc == QERR_OK && pos != n)
        rc = LOAD_FAIL(QERR_E_FORMAT, "%zu bytes after the last record", n - pos);
    if (rc != QERR_OK) {
        qerr_qmodel_free(q);
        return rc;
    }
    *out = q;
    return QERR_OK;
}

int qerr_qmodel_load(qerr_qmodel **out, const char *path) {
    QERR_CHECK(out, QERR_E_INVALID_ARG, "qerr_qmodel_load: out is NULL");
    *out = NULL;
    QERR_CHECK(path, QERR_E_INVALID_ARG, "qerr_qmodel_load: path is NULL");
    uint8_t *data;
    size_t n;
    QERR_TRY(qerr__read_file(path, &data, &n, QMD_MAX_FILE));
    size_t cap = strlen(path) + 3;
    char *label = malloc(cap);
    int rc;
    if (!label) {
        rc = qerr__fail(QERR_E_NOMEM, "qerr_qmodel_load: out of memory");
    } else {
        snprintf(label, cap, "'%s'", path);
        rc = qerr__qmodel_parse(data, n, label, out);
    }
    free(label);
    free(data);
    return rc;
}

/* ---- records one at a time (the streaming writer, lib/io/qstream.c) --- */

int qerr__qmodel_meta_record(const qerr_qmodel *q, uint8_t **bytes, size_t *n) {
    bbuf out = {0}, rec = {0};
    encode_meta(q, &rec);
    int rc = rec.oom ? qerr__fail(QERR_E_NOMEM, "qerr_qmodel_save: out of memory")
                     : append_record(&out, QMD_TAG_META, rec.p, rec.n);
    free(rec.p);
    if (rc != QERR_OK) free(out.p);
    *bytes = rc == QERR_OK ? out.p : NULL;
    *n = rc == QERR_OK ? out.n : 0;
    return rc;
}

int qerr__qmodel_tensor_record(const char *name, const qerr_result *r, uint8_t **bytes,
                               size_t *n) {
    bbuf out = {0}, rec = {0};
    int rc = encode_tensor(name, r, &rec);
    if (rc == QERR_OK && rec.oom)
        rc = qerr__fail(QERR_E_NOMEM, "qerr_qmodel_save: out of memory for tensor '%s'", name);
    if (rc == QERR_OK) rc = append_record(&out, QMD_TAG_TENSOR, rec.p, rec.n);
    free(rec.p);
    if (rc != QERR_OK) free(out.p);
    *bytes = rc == QERR_OK ? out.p : NULL;
    *n = rc == QERR_OK ? out.n : 0;
    return rc;
}

void qerr__qmodel_header(uint8_t h[48], uint64_t size, uint64_t ntensors, uint64_t nmeta) {
    memset(h, 0, QMD_HEADER);
    memcpy(h, QMD_MAGIC, 8);
    put32(h + 8, QMD_VERSION);
    put64(h + 16, size);
    put64(h + 24, ntensors);
    put64(h + 32, nmeta);
    put32(h + 44, qerr__crc32(h, 44));
}

int qerr__qmodel_read_tensor(const uint8_t *data, size_t n, size_t *pos, const char *label,
                             char **name, qerr_result **r) {
    uint8_t *raw;
    size_t raw_n;
    QERR_TRY(read_record(data, n, pos, QMD_TAG_TENSOR, "tensor", label, &raw, &raw_n));
    cursor c = {raw, raw_n, 0};
    int rc = parse_tensor(&c, 0, label, name, r);
    free(raw);
    return rc;
}
