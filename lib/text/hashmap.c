/* Open-addressing hash maps for vocabularies (string -> id) and merges
 * ((id, id) -> rank, id). Linear probing, load factor <= 1/2. */
#include "text_internal.h"

#include <stdlib.h>
#include <string.h>

/* FNV-1a over 8-byte words, then a final mix: fast on short keys. */
uint64_t qerr__hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull ^ (n * 0x9E3779B97F4A7C15ull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 32;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static size_t pow2_for(size_t expected) {
    size_t cap = 16;
    while (cap < expected * 2 + 2) cap *= 2;
    return cap;
}

int qerr__strmap_init(qerr__strmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    m->cap = pow2_for(expected);
    m->key = qerr__calloc(m->cap, sizeof *m->key);
    m->klen = qerr__calloc(m->cap, sizeof *m->klen);
    m->val = qerr__calloc(m->cap, sizeof *m->val);
    m->hash = qerr__calloc(m->cap, sizeof *m->hash);
    if (!m->key || !m->klen || !m->val || !m->hash) {
        qerr__strmap_free(m);
        return qerr__fail(QERR_E_NOMEM, "tokenizer: out of memory for a vocabulary map");
    }
    return QERR_OK;
}

void qerr__strmap_free(qerr__strmap *m) {
    free(m->key);
    free(m->klen);
    free(m->val);
    free(m->hash);
    memset(m, 0, sizeof *m);
}

static int strmap_grow(qerr__strmap *m) {
    qerr__strmap g;
    QERR_TRY(qerr__strmap_init(&g, m->cap));
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->key[i]) continue;
        size_t j = (size_t)m->hash[i] & (g.cap - 1);
        while (g.key[j]) j = (j + 1) & (g.cap - 1);
        g.key[j] = m->key[i];
        g.klen[j] = m->klen[i];
        g.val[j] = m->val[i];
        g.hash[j] = m->hash[i];
        g.n++;
    }
    qerr__strmap_free(m);
    *m = g;
    return QERR_OK;
}

int qerr__strmap_put(qerr__strmap *m, const char *key, size_t len, int32_t val) {
    if (len > UINT32_MAX) return qerr__fail(QERR_E_RANGE, "tokenizer: token too long");
    if ((m->n + 1) * 2 > m->cap) QERR_TRY(strmap_grow(m));
    uint64_t h = qerr__hash_bytes(key, len);
    size_t i = (size_t)h & (m->cap - 1);
    while (m->key[i]) {
        if (m->hash[i] == h && m->klen[i] == len && memcmp(m->key[i], key, len) == 0)
            return QERR_OK;
        i = (i + 1) & (m->cap - 1);
    }
    m->key[i] = key ? key : "";
    m->klen[i] = (uint32_t)len;
    m->val[i] = val;
    m->hash[i] = h;
    m->n++;
    return QERR_OK;
}

int32_t qerr__strmap_get(const qerr__strmap *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    uint64_t h = qerr__hash_bytes(key, len);
    size_t i = (size_t)h & (m->cap - 1);
    while (m->key[i]) {
        if (m->hash[i] == h && m->klen[i] == len && memcmp(m->key[i], key, len) == 0)
            return m->val[i];
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}

int qerr__pairmap_init(qerr__pairmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    m->cap = pow2_for(expected);
    m->key = qerr__malloc2(m->cap, sizeof *m->key);
    m->rank = qerr__calloc(m->cap, sizeof *m->rank);
    m->id = qerr__calloc(m->cap, sizeof *m->id);
    if (!m->key || !m->rank || !m->id) {
        qerr__pairmap_free(m);
        return qerr__fail(QERR_E_NOMEM, "tokenizer: out of memory for a merge map");
    }
    memset(m->key, 0xFF, m->cap * sizeof *m->key);
    return QERR_OK;
}

void qerr__pairmap_free(qerr__pairmap *m) {
    free(m->key);
    free(m->rank);
    free(m->id);
    memset(m, 0, sizeof *m);
}

static size_t pair_slot(const qerr__pairmap *m, uint64_t key) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t mask = m->cap - 1, i = (size_t)(h >> 32) & mask;
    while (m->key[i] != UINT64_MAX && m->key[i] != key) i = (i + 1) & mask;
    return i;
}

/* A later value put under the same key replaces the earlier one, as Hugging
 * Face's merge map does when a merge is listed twice. */
int qerr__pairmap_put(qerr__pairmap *m, uint64_t key, int32_t rank, int32_t id) {
    if ((m->n + 1) * 2 > m->cap) {
        qerr__pairmap g;
        QERR_TRY(qerr__pairmap_init(&g, m->cap));
        for (size_t i = 0; i < m->cap; i++) {
            if (m->key[i] == UINT64_MAX) continue;
            size_t j = pair_slot(&g, m->key[i]);
            g.key[j] = m->key[i];
            g.rank[j] = m->rank[i];
            g.id[j] = m->id[i];
            g.n++;
        }
        qerr__pairmap_free(m);
        *m = g;
    }
    size_t i = pair_slot(m, key);
    if (m->key[i] != key) m->n++;
    m->key[i] = key;
    m->rank[i] = rank;
    m->id[i] = id;
    return QERR_OK;
}
