/* qerr_qmodel: named quantization results (insertion order, hashed lookup)
 * plus string metadata. */
#include "io.h"
#include "qmodel_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct qmodel_item {
    char *name;
    qerr_result *result;
} qmodel_item;

typedef struct qmodel_meta {
    char *key;
    char *value;
} qmodel_meta;

struct qerr_qmodel_s {
    qmodel_item *items;
    int count, cap;
    /* open addressing: slot holds item index + 1, 0 = empty; power of two */
    int32_t *slots;
    size_t nslots;
    qmodel_meta *meta;
    int n_meta, meta_cap;
};

bool qerr__utf8_ok(const char *s, size_t n) {
    return memchr(s, 0, n) == NULL && qerr__utf8_valid((const uint8_t *)s, n);
}

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Slot of `name`: its item's slot, or the empty slot where it would go. */
static size_t find_slot(const qerr_qmodel *q, const char *name) {
    size_t mask = q->nslots - 1, i = (size_t)name_hash(name) & mask;
    while (q->slots[i] != 0 && strcmp(q->items[q->slots[i] - 1].name, name) != 0)
        i = (i + 1) & mask;
    return i;
}

/* Keep the table at most half full. */
static int grow_slots(qerr_qmodel *q, int want) {
    if (q->nslots >= 2 * (size_t)want) return QERR_OK;
    size_t n = q->nslots ? q->nslots : 16;
    while (n < 2 * (size_t)want) n *= 2;
    int32_t *slots = qerr__calloc(n, sizeof *slots);
    QERR_CHECK(slots, QERR_E_NOMEM, "qerr_qmodel_add: out of memory");
    free(q->slots);
    q->slots = slots;
    q->nslots = n;
    for (int k = 0; k < q->count; k++) q->slots[find_slot(q, q->items[k].name)] = k + 1;
    return QERR_OK;
}

static char *dup_string(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

int qerr_qmodel_create(qerr_qmodel **out) {
    QERR_CHECK(out, QERR_E_INVALID_ARG, "qerr_qmodel_create: out is NULL");
    *out = qerr__calloc(1, sizeof **out);
    QERR_CHECK(*out, QERR_E_NOMEM, "qerr_qmodel_create: out of memory");
    return QERR_OK;
}

void qerr_qmodel_free(qerr_qmodel *q) {
    if (!q) return;
    for (int i = 0; i < q->count; i++) {
        free(q->items[i].name);
        qerr_result_free(q->items[i].result);
    }
    for (int i = 0; i < q->n_meta; i++) {
        free(q->meta[i].key);
        free(q->meta[i].value);
    }
    free(q->items);
    free(q->slots);
    free(q->meta);
    free(q);
}

static int add_item(qerr_qmodel *q, const char *name, qerr_result *r) {
    QERR_CHECK(q && name && r, QERR_E_INVALID_ARG, "qerr_qmodel_add: %s is NULL",
               !q ? "qmodel" : !name ? "name" : "result");
    size_t len = strlen(name);
    QERR_CHECK(len > 0 && len <= QERR_QMODEL_MAX_NAME && qerr__utf8_ok(name, len),
               QERR_E_INVALID_ARG,
               "qerr_qmodel_add: a tensor name must be 1..%d bytes of UTF-8", QERR_QMODEL_MAX_NAME);
    QERR_CHECK(q->count < QERR_QMODEL_MAX_TENSORS, QERR_E_RANGE,
               "qerr_qmodel_add: a qmodel holds at most %d tensors", QERR_QMODEL_MAX_TENSORS);
    QERR_TRY(grow_slots(q, q->count + 1));
    size_t slot = find_slot(q, name);
    QERR_CHECK(q->slots[slot] == 0, QERR_E_INVALID_ARG,
               "qerr_qmodel_add: a tensor named '%s' is already present", name);
    if (q->count == q->cap) {
        int cap = q->cap ? 2 * q->cap : 16;
        qmodel_item *items = realloc(q->items, (size_t)cap * sizeof *items);
        QERR_CHECK(items, QERR_E_NOMEM, "qerr_qmodel_add: out of memory");
        q->items = items;
        q->cap = cap;
    }
    char *copy = dup_string(name, len);
    QERR_CHECK(copy, QERR_E_NOMEM, "qerr_qmodel_add: out of memory");
    q->items[q->count].name = copy;
    q->items[q->count].result = r;
    q->count++;
    q->slots[slot] = q->count;
    return QERR_OK;
}

int qerr_qmodel_add(qerr_qmodel *q, const char *name, qerr_result *r) {
    int rc = add_item(q, name, r);
    if (rc != QERR_OK) qerr_result_free(r); /* ownership passes also on failure */
    return rc;
}

int qerr_qmodel_count(const qerr_qmodel *q) { return q ? q->count : -1; }

const char *qerr_qmodel_name(const qerr_qmodel *q, int index) {
    if (!q || index < 0 || index >= q->count) return NULL;
    return q->items[index].name;
}

int qerr__qmodel_find(const qerr_qmodel *q, const char *name) {
    if (!q || !name || q->nslots == 0) return -1;
    return q->slots[find_slot(q, name)] - 1;
}

int qerr_qmodel_get(const qerr_qmodel *q, const char *name, const qerr_result **out) {
    QERR_CHECK(out, QERR_E_INVALID_ARG, "qerr_qmodel_get: out is NULL");
    *out = NULL;
    QERR_CHECK(q && name, QERR_E_INVALID_ARG, "qerr_qmodel_get: %s is NULL", q ? "name" : "qmodel");
    int k = qerr__qmodel_find(q, name);
    if (k >= 0) {
        *out = q->items[k].result;
        return QERR_OK;
    }
    return qerr__fail(QERR_E_NOT_FOUND, "qerr_qmodel_get: no tensor named '%s'", name);
}

int qerr_qmodel_set_meta(qerr_qmodel *q, const char *key, const char *value) {
    QERR_CHECK(q && key && value, QERR_E_INVALID_ARG, "qerr_qmodel_set_meta: %s is NULL",
               !q ? "qmodel" : !key ? "key" : "value");
    size_t klen = strlen(key), vlen = strlen(value);
    QERR_CHECK(klen > 0 && klen <= QERR_QMODEL_MAX_NAME && qerr__utf8_ok(key, klen),
               QERR_E_INVALID_ARG, "qerr_qmodel_set_meta: a key must be 1..%d bytes of UTF-8",
               QERR_QMODEL_MAX_NAME);
    QERR_CHECK(vlen <= QERR_QMODEL_MAX_VALUE && qerr__utf8_ok(value, vlen), QERR_E_INVALID_ARG,
               "qerr_qmodel_set_meta: the value of '%s' must be at most %d bytes of UTF-8", key,
               QERR_QMODEL_MAX_VALUE);
    char *v = dup_string(value, vlen);
    QERR_CHECK(v, QERR_E_NOMEM, "qerr_qmodel_set_meta: out of memory");
    for (int i = 0; i < q->n_meta; i++)
        if (strcmp(q->meta[i].key, key) == 0) {
            free(q->meta[i].value);
            q->meta[i].value = v;
            return QERR_OK;
        }
    int rc = QERR_OK;
    char *k = NULL;
    if (q->n_meta >= QERR_QMODEL_MAX_META) {
        rc = qerr__fail(QERR_E_RANGE, "qerr_qmodel_set_meta: at most %d keys",
                        QERR_QMODEL_MAX_META);
    } else if (q->n_meta == q->meta_cap) {
        int cap = q->meta_cap ? 2 * q->meta_cap : 8;
        qmodel_meta *m = realloc(q->meta, (size_t)cap * sizeof *m);
        if (!m) rc = qerr__fail(QERR_E_NOMEM, "qerr_qmodel_set_meta: out of memory");
        else {
            q->meta = m;
            q->meta_cap = cap;
        }
    }
    if (rc == QERR_OK && !(k = dup_string(key, klen)))
        rc = qerr__fail(QERR_E_NOMEM, "qerr_qmodel_set_meta: out of memory");
    if (rc != QERR_OK) {
        free(v);
        return rc;
    }
    q->meta[q->n_meta].key = k;
    q->meta[q->n_meta].value = v;
    q->n_meta++;
    return QERR_OK;
}

const char *qerr_qmodel_meta(const qerr_qmodel *q, const char *key) {
    if (!q || !key) return NULL;
    for (int i = 0; i < q->n_meta; i++)
        if (strcmp(q->meta[i].key, key) == 0) return q->meta[i].value;
    return NULL;
}

int qerr__qmodel_meta_count(const qerr_qmodel *q) { return q ? q->n_meta : 0; }

void qerr__qmodel_meta_at(const qerr_qmodel *q, int index, const char **key, const char **value) {
    *key = q->meta[index].key;
    *value = q->meta[index].value;
}
