/* BPE over one pre-tokenized word in O(n log n): the symbols form a linked
 * list and every mergeable adjacent pair sits in a binary min-heap keyed by
 * (merge rank, position), so the lowest-ranked, leftmost pair merges first,
 * as in Hugging Face's tokenizers and in llama2.c's (quadratic) loop. Stale
 * heap entries are dropped when popped. Words already seen come from a cache. */
#include "text_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t id, prev, next;
} sym;

typedef struct {
    uint64_t hash;
    uint32_t key_off, key_len, ids_off, n_ids;
} cache_slot;

#define CACHE_MAX_WORD 256
#define CACHE_MIN_SLOTS 1024
#define CACHE_MAX_SLOTS ((size_t)1 << 17)

struct qerr__bpe_scratch {
    uint32_t *ids;
    int64_t n_ids;
    size_t cap_ids;
    sym *syms;
    size_t cap_syms;
    uint64_t *heap;
    size_t n_heap, cap_heap;
    /* word cache: open addressing on hash, keys and ids in two arenas */
    cache_slot *slot;
    size_t n_slot, cap_slot;
    char *keys;
    size_t n_keys, cap_keys;
    uint32_t *cids;
    size_t n_cids, cap_cids;
};

int qerr__bpe_scratch_new(qerr__bpe_scratch **out) {
    *out = calloc(1, sizeof **out);
    QERR_CHECK(*out, QERR_E_NOMEM, "tokenizer: out of memory");
    return QERR_OK;
}

void qerr__bpe_scratch_free(qerr__bpe_scratch *s) {
    if (!s) return;
    free(s->ids);
    free(s->syms);
    free(s->heap);
    free(s->slot);
    free(s->keys);
    free(s->cids);
    free(s);
}

/* Grow *p (elements of size sz) to hold at least need elements. */
static int reserve(void **p, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap) return QERR_OK;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) {
        if (nc > SIZE_MAX / 2) return qerr__fail(QERR_E_NOMEM, "tokenizer: text too large");
        nc *= 2;
    }
    void *q = qerr__malloc2(nc, sz);
    QERR_CHECK(q, QERR_E_NOMEM, "tokenizer: out of memory for %zu items", nc);
    if (*cap) memcpy(q, *p, *cap * sz);
    free(*p);
    *p = q;
    *cap = nc;
    return QERR_OK;
}

int qerr__bpe_push(qerr__bpe_scratch *s, uint32_t id) {
    if ((size_t)s->n_ids == s->cap_ids)
        QERR_TRY(reserve((void **)&s->ids, &s->cap_ids, (size_t)s->n_ids + 1, sizeof *s->ids));
    s->ids[s->n_ids++] = id;
    return QERR_OK;
}

uint32_t *qerr__bpe_ids(qerr__bpe_scratch *s, int64_t *count) {
    *count = s->n_ids;
    return s->ids;
}

/* ---- heap of (rank << 32 | position) ------------------------------------- */
static void heap_push(qerr__bpe_scratch *s, uint64_t key) {
    uint64_t *h = s->heap;
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= key) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = key;
}

static uint64_t heap_pop(qerr__bpe_scratch *s) {
    uint64_t *h = s->heap, top = h[0], last = h[--s->n_heap];
    size_t n = s->n_heap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1] < h[c]) c++;
        if (h[c] >= last) break;
        h[i] = h[c];
        i = c;
    }
    if (n) h[i] = last;
    return top;
}

static void push_pair(const qerr_tokenizer *t, qerr__bpe_scratch *s, int32_t pos) {
    int32_t nx = s->syms[pos].next;
    if (nx < 0) return;
    const qerr__pairslot *m = qerr__pairmap_find(
        &t->merges, qerr__pair_key((uint32_t)s->syms[pos].id, (uint32_t)s->syms[nx].id));
    if (m) heap_push(s, (uint64_t)(uint32_t)m->rank << 32 | (uint32_t)pos);
}

/* Words of at most SHORT_WORD symbols: the same merges by scanning a small
 * array for the lowest rank (leftmost on ties). Each scan is bounded by the
 * constant SHORT_WORD, so the cost stays linear in the text, and it avoids
 * the heap's bookkeeping on the short words that make up most text. */
#define SHORT_WORD 64

static int32_t pair_rank(const qerr_tokenizer *t, int32_t a, int32_t b, int32_t *id) {
    const qerr__pairslot *m = qerr__pairmap_find(&t->merges, qerr__pair_key((uint32_t)a, (uint32_t)b));
    if (!m) return INT32_MAX;
    *id = m->id;
    return m->rank;
}

static int merge_short(const qerr_tokenizer *t, qerr__bpe_scratch *s, int32_t n) {
    int32_t id[SHORT_WORD], rank[SHORT_WORD], to[SHORT_WORD];
    for (int32_t i = 0; i < n; i++) id[i] = s->syms[i].id;
    for (int32_t i = 0; i + 1 < n; i++) rank[i] = pair_rank(t, id[i], id[i + 1], &to[i]);
    while (n > 1) {
        int32_t best = 0;
        for (int32_t i = 1; i + 1 < n; i++)
            if (rank[i] < rank[best]) best = i;
        if (rank[best] == INT32_MAX) break;
        id[best] = to[best];
        for (int32_t i = best + 1; i + 1 < n; i++) {
            id[i] = id[i + 1];
            rank[i] = rank[i + 1];
            to[i] = to[i + 1];
        }
        n--;
        if (best > 0) rank[best - 1] = pair_rank(t, id[best - 1], id[best], &to[best - 1]);
        if (best + 1 < n) rank[best] = pair_rank(t, id[best], id[best + 1], &to[best]);
    }
    for (int32_t i = 0; i < n; i++) QERR_TRY(qerr__bpe_push(s, (uint32_t)id[i]));
    return QERR_OK;
}

/* Merge the n symbols in s->syms; append the resulting ids. */
static int merge_and_emit(const qerr_tokenizer *t, qerr__bpe_scratch *s, int32_t n) {
    if (n <= SHORT_WORD) return merge_short(t, s, n);
    /* at most n - 1 initial pairs and two new ones per merge (n - 1 merges) */
    QERR_TRY(reserve((void **)&s->heap, &s->cap_heap, 3 * (size_t)n + 1, sizeof *s->heap));
    s->n_heap = 0;
    sym *y = s->syms;
    for (int32_t i = 0; i + 1 < n; i++) push_pair(t, s, i);
    while (s->n_heap) {
        uint64_t key = heap_pop(s);
        int32_t pos = (int32_t)(uint32_t)key, rank = (int32_t)(key >> 32);
        if (y[pos].id < 0) continue;
        int32_t nx = y[pos].next;
        if (nx < 0) continue;
        const qerr__pairslot *m =
            qerr__pairmap_find(&t->merges, qerr__pair_key((uint32_t)y[pos].id, (uint32_t)y[nx].id));
        if (!m || m->rank != rank) continue; /* stale entry */
        y[pos].id = m->id;
        y[pos].next = y[nx].next;
        if (y[nx].next >= 0) y[y[nx].next].prev = pos;
        y[nx].id = -1;
        if (y[pos].prev >= 0) push_pair(t, s, y[pos].prev);
        push_pair(t, s, pos);
    }
    for (int32_t i = 0; i >= 0 && i < n; i = y[i].next) QERR_TRY(qerr__bpe_push(s, (uint32_t)y[i].id));
    return QERR_OK;
}

/* Initial symbols of a word: bytes (byte-level) or code points with byte
 * fallback, then unknown-token handling (SentencePiece, llama2.c). */
static int split_symbols(const qerr_tokenizer *t, qerr__bpe_scratch *s, const char *w, size_t n,
                         int32_t *count) {
    QERR_TRY(reserve((void **)&s->syms, &s->cap_syms, n, sizeof *s->syms));
    sym *y = s->syms;
    int32_t k = 0;
    if (t->model == QERR_TOKM_BYTE_BPE) {
        for (size_t i = 0; i < n; i++) y[k++].id = t->byte_id[(unsigned char)w[i]];
    } else {
        bool prev_unk = false;
        for (size_t i = 0; i < n;) {
            size_t at = i;
            uint32_t c = qerr__utf8_next(w, n, &i);
            size_t len = i - at;
            i = at;
            int32_t id = qerr__char_id(t, c, w + i, len);
            if (id >= 0) {
                y[k++].id = id;
                prev_unk = false;
                i += len;
                continue;
            }
            bool bytes = t->byte_fallback;
            for (size_t b = 0; b < len && bytes; b++) bytes = t->byte_id[(unsigned char)w[i + b]] >= 0;
            if (bytes) {
                for (size_t b = 0; b < len; b++) y[k++].id = t->byte_id[(unsigned char)w[i + b]];
                prev_unk = false;
            } else if (t->unk_id >= 0) {
                if (!(t->fuse_unk && prev_unk)) y[k++].id = t->unk_id;
                prev_unk = true;
            }
            i += len;
        }
    }
    for (int32_t i = 0; i < k; i++) {
        y[i].prev = i - 1;
        y[i].next = i + 1 < k ? i + 1 : -1;
    }
    *count = k;
    return QERR_OK;
}

/* ---- word cache ---------------------------------------------------------- */
static cache_slot *cache_find(qerr__bpe_scratch *s, uint64_t h, const char *w, size_t n) {
    size_t mask = s->cap_slot - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        cache_slot *c = &s->slot[i];
        if (c->key_len == 0) return c; /* empty (words are never empty) */
        if (c->hash == h && c->key_len == n && memcmp(s->keys + c->key_off, w, n) == 0) return c;
    }
}

static int cache_reset(qerr__bpe_scratch *s, size_t cap) {
    if (cap != s->cap_slot) {
        free(s->slot);
        s->slot = qerr__calloc(cap, sizeof *s->slot);
        s->cap_slot = s->slot ? cap : 0;
        QERR_CHECK(s->slot, QERR_E_NOMEM, "tokenizer: out of memory for the word cache");
    } else {
        memset(s->slot, 0, cap * sizeof *s->slot);
    }
    s->n_slot = s->n_keys = s->n_cids = 0;
    return QERR_OK;
}

/* Remember that word w[0..n) encodes to the ids appended since `from`. */
static int cache_store(qerr__bpe_scratch *s, uint64_t h, const char *w, size_t n, int64_t from) {
    int64_t n_ids = s->n_ids - from;
    if ((s->n_slot + 1) * 2 > s->cap_slot) {
        /* full: grow while small, else forget everything and start again */
        size_t cap = s->cap_slot < CACHE_MAX_SLOTS ? s->cap_slot * 2 : s->cap_slot;
        if (cap == s->cap_slot) QERR_TRY(cache_reset(s, cap));
        else {
            cache_slot *old = s->slot;
            size_t old_cap = s->cap_slot;
            s->slot = qerr__calloc(cap, sizeof *s->slot);
            QERR_CHECK(s->slot, QERR_E_NOMEM, "tokenizer: out of memory for the word cache");
            s->cap_slot = cap;
            for (size_t i = 0; i < old_cap; i++)
                if (old[i].key_len) {
                    size_t j = (size_t)old[i].hash & (cap - 1);
                    while (s->slot[j].key_len) j = (j + 1) & (cap - 1);
                    s->slot[j] = old[i];
                }
            free(old);
        }
    }
    QERR_TRY(reserve((void **)&s->keys, &s->cap_keys, s->n_keys + n, 1));
    QERR_TRY(reserve((void **)&s->cids, &s->cap_cids, s->n_cids + (size_t)n_ids, sizeof *s->cids));
    cache_slot *c = cache_find(s, h, w, n);
    c->hash = h;
    c->key_off = (uint32_t)s->n_keys;
    c->key_len = (uint32_t)n;
    c->ids_off = (uint32_t)s->n_cids;
    c->n_ids = (uint32_t)n_ids;
    memcpy(s->keys + s->n_keys, w, n);
    if (n_ids) memcpy(s->cids + s->n_cids, s->ids + from, (size_t)n_ids * sizeof *s->ids);
    s->n_keys += n;
    s->n_cids += (size_t)n_ids;
    s->n_slot++;
    return QERR_OK;
}

int qerr__bpe_word(const qerr_tokenizer *t, qerr__bpe_scratch *s, const char *w, size_t n) {
    if (n == 0) return QERR_OK;
    QERR_CHECK(n < (size_t)INT32_MAX / 2, QERR_E_RANGE,
               "tokenizer: a run of %zu bytes without a possible split is too long", n);
    bool cached = n <= CACHE_MAX_WORD;
    uint64_t h = 0;
    if (cached) {
        if (!s->cap_slot) QERR_TRY(cache_reset(s, CACHE_MIN_SLOTS));
        h = qerr__hash_bytes(w, n);
        cache_slot *c = cache_find(s, h, w, n);
        if (c->key_len) {
            for (uint32_t i = 0; i < c->n_ids; i++)
                QERR_TRY(qerr__bpe_push(s, s->cids[c->ids_off + i]));
            return QERR_OK;
        }
    }
    int64_t before = s->n_ids;
    int32_t whole = t->ignore_merges ? qerr__strmap_get(&t->vocab, w, n) : -1;
    if (whole >= 0) {
        QERR_TRY(qerr__bpe_push(s, (uint32_t)whole));
    } else {
        int32_t count;
        QERR_TRY(split_symbols(t, s, w, n, &count));
        QERR_TRY(merge_and_emit(t, s, count));
    }
    if (cached) QERR_TRY(cache_store(s, h, w, n, before));
    return QERR_OK;
}
