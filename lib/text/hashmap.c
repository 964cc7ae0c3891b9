/* Open-addressing hash maps for vocabularies (string -> id) and merges
 * ((id, id) -> rank, id). Linear probing, load factor <= 1/2, one slot per
 * cache line or less so a lookup usually costs one memory access. */
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
    return h ? h : 1; /* 0 marks empty slots */
}

static size_t pow2_for(size_t expected) {
    size_t cap = 16;
    while (cap < expected * 2 + 2) cap *= 2;
    return cap;
}

int qerr__strmap_init(qerr__strmap *m, size_t expected) {
    m->n = 0;
    m->cap = pow2_for(expected);
    m->slot = qerr__calloc(m->cap, sizeof *m->slot);
    if (!m->slot) {
        m->cap = 0;
        return qerr__fail(QERR_E_NOMEM, "tokenizer: out of memory for a vocabulary map");
    }
    return QERR_OK;
}

void qerr__strmap_free(qerr__strmap *m) {
    free(m->slot);
    memset(m, 0, sizeof *m);
}

int qerr__strmap_put(qerr__strmap *m, const char *key, size_t len, int32_t val) {
    if (len > UINT32_MAX) return qerr__fail(QERR_E_RANGE, "tokenizer: token too long");
    if ((m->n + 1) * 2 > m->cap) {
        qerr__strmap g;
        QERR_TRY(qerr__strmap_init(&g, m->cap));
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->slot[i].hash) continue;
            size_t j = (size_t)m->slot[i].hash & (g.cap - 1);
            while (g.slot[j].hash) j = (j + 1) & (g.cap - 1);
            g.slot[j] = m->slot[i];
        }
        g.n = m->n;
        qerr__strmap_free(m);
        *m = g;
    }
    uint64_t h = qerr__hash_bytes(key, len);
    size_t i = (size_t)h & (m->cap - 1);
    for (; m->slot[i].hash; i = (i + 1) & (m->cap - 1)) {
        const qerr__strslot *s = &m->slot[i];
        if (s->hash == h && s->klen == len && memcmp(s->key, key, len) == 0) return QERR_OK;
    }
    m->slot[i] = (qerr__strslot){h, key ? key : "", (uint32_t)len, val};
    m->n++;
    return QERR_OK;
}

int32_t qerr__strmap_get(const qerr__strmap *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    uint64_t h = qerr__hash_bytes(key, len);
    for (size_t i = (size_t)h & (m->cap - 1); m->slot[i].hash; i = (i + 1) & (m->cap - 1)) {
        const qerr__strslot *s = &m->slot[i];
        if (s->hash == h && s->klen == len && memcmp(s->key, key, len) == 0) return s->val;
    }
    return -1;
}

int qerr__pairmap_init(qerr__pairmap *m, size_t expected) {
    m->n = 0;
    m->cap = pow2_for(expected);
    m->slot = qerr__malloc2(m->cap, sizeof *m->slot);
    if (!m->slot) {
        m->cap = 0;
        return qerr__fail(QERR_E_NOMEM, "tokenizer: out of memory for a merge map");
    }
    for (size_t i = 0; i < m->cap; i++) m->slot[i].key = UINT64_MAX;
    return QERR_OK;
}

void qerr__pairmap_free(qerr__pairmap *m) {
    free(m->slot);
    memset(m, 0, sizeof *m);
}

static qerr__pairslot *pair_slot(qerr__pairmap *m, uint64_t key) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t mask = m->cap - 1, i = (size_t)(h >> 32) & mask;
    while (m->slot[i].key != UINT64_MAX && m->slot[i].key != key) i = (i + 1) & mask;
    return &m->slot[i];
}

/* A later value put under the same key replaces the earlier one, as Hugging
 * Face's merge map does when a merge is listed twice. */
int qerr__pairmap_put(qerr__pairmap *m, uint64_t key, int32_t rank, int32_t id) {
    if ((m->n + 1) * 2 > m->cap) {
        qerr__pairmap g;
        QERR_TRY(qerr__pairmap_init(&g, m->cap));
        for (size_t i = 0; i < m->cap; i++)
            if (m->slot[i].key != UINT64_MAX) *pair_slot(&g, m->slot[i].key) = m->slot[i];
        g.n = m->n;
        qerr__pairmap_free(m);
        *m = g;
    }
    qerr__pairslot *s = pair_slot(m, key);
    if (s->key != key) m->n++;
    *s = (qerr__pairslot){key, rank, id};
    return QERR_OK;
}
