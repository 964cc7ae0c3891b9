/* llama2.c's tokenizer.bin: int32 max_token_length, then per token a float32
 * score, an int32 length and the bytes (little-endian, no count: tokens run
 * to the end of the file). llama2.c encodes by prepending a space ("dummy
 * prefix"), splitting into code points (unknown ones into byte tokens, id =
 * byte + 3) and repeatedly merging the adjacent pair whose concatenation is
 * the highest-scoring token, leftmost first. Here the same merges come from
 * a pair map (every split of every token into two tokens) ranked by score,
 * and run through the linear-time BPE of bpe.c. */
#include "text_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PIECE 4096

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

typedef struct {
    float score;
    int32_t id;
} scored;

static int cmp_score(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int qerr__tokenizer_from_llama2c(qerr_tokenizer *t, const uint8_t *data, size_t n,
                                 const char *what) {
    QERR_CHECK(n >= 4, QERR_E_FORMAT, "%s: too short for a llama2.c tokenizer.bin", what);
    uint32_t max_len = rd32(data);
    QERR_CHECK(max_len >= 1 && max_len <= MAX_PIECE, QERR_E_FORMAT,
               "%s: not a llama2.c tokenizer.bin (max_token_length %u)", what, max_len);
    /* first pass: count and check the records */
    int64_t count = 0;
    size_t pos = 4;
    while (pos < n) {
        QERR_CHECK(n - pos >= 8, QERR_E_FORMAT, "%s: token %lld is truncated", what, (long long)count);
        float score;
        memcpy(&score, data + pos, 4); /* little-endian hosts only, as llama2.c */
        uint32_t len = rd32(data + pos + 4);
        QERR_CHECK(isfinite(score), QERR_E_FORMAT, "%s: token %lld has a non-finite score", what,
                   (long long)count);
        QERR_CHECK(len <= max_len && len <= n - pos - 8, QERR_E_FORMAT,
                   "%s: token %lld has length %u (max %u, %zu bytes left)", what,
                   (long long)count, len, max_len, n - pos - 8);
        pos += 8 + len;
        count++;
        QERR_CHECK(count <= QERR_TOK_MAX_VOCAB, QERR_E_FORMAT, "%s: too many tokens", what);
    }
    QERR_CHECK(count >= 3 + 256, QERR_E_FORMAT,
               "%s: %lld tokens, fewer than the 3 special and 256 byte tokens llama2.c assumes",
               what, (long long)count);
    t->model = QERR_TOKM_LLAMA2C;
    QERR_TRY(qerr__tokenizer_alloc_ids(t, (int32_t)count, what));
    QERR_TRY(qerr__strmap_init(&t->vocab, (size_t)count));
    /* the vocabulary's keys live in one arena: the pieces, as stored */
    t->owned_strings = malloc(n);
    scored *order = qerr__malloc2((size_t)count, sizeof *order);
    bool *mergeable = qerr__malloc2((size_t)count, sizeof *mergeable);
    if (!order || !mergeable || !t->owned_strings) {
        free(order);
        free(mergeable);
        return qerr__fail(QERR_E_NOMEM, "%s: out of memory", what);
    }
    pos = 4;
    char *arena = t->owned_strings;
    for (int32_t id = 0; id < count; id++) {
        memcpy(&order[id].score, data + pos, 4);
        order[id].id = id;
        mergeable[id] = order[id].score > -1e10f;
        uint32_t len = rd32(data + pos + 4);
        memcpy(arena, data + pos + 8, len);
        int rc = qerr__tokenizer_set_text(t, id, arena, len);
        if (rc == QERR_OK) rc = qerr__strmap_put(&t->vocab, arena, len, id);
        if (rc != QERR_OK) {
            free(order);
            free(mergeable);
            return rc;
        }
        arena += len;
        pos += 8 + len;
    }
    /* merge ranks: dense by score, best first; equal scores share a rank so
     * that the leftmost pair wins, as in llama2.c */
    qsort(order, (size_t)count, sizeof *order, cmp_score);
    int32_t *rank = qerr__malloc2((size_t)count, sizeof *rank);
    int rc = rank ? qerr__pairmap_init(&t->merges, (size_t)count * 2)
                  : qerr__fail(QERR_E_NOMEM, "%s: out of memory", what);
    for (int64_t i = 0, r = 0; rc == QERR_OK && i < count; i++) {
        if (i > 0 && order[i].score != order[i - 1].score) r++;
        rank[order[i].id] = (int32_t)r;
    }
    for (int32_t id = 0; rc == QERR_OK && id < count; id++) {
        const char *s = t->text[id];
        size_t len = t->text_len[id];
        if (qerr__strmap_get(&t->vocab, s, len) != id) continue; /* a duplicate */
        if (!mergeable[id]) continue; /* llama2.c never picks scores <= -1e10 */
        for (size_t k = 1; k < len && rc == QERR_OK; k++) {
            int32_t a = qerr__strmap_get(&t->vocab, s, k), b = qerr__strmap_get(&t->vocab, s + k, len - k);
            if (a >= 0 && b >= 0)
                rc = qerr__pairmap_put(&t->merges, qerr__pair_key((uint32_t)a, (uint32_t)b), rank[id], id);
        }
    }
    free(order);
    free(rank);
    free(mergeable);
    QERR_TRY(rc);
    /* byte fallback, special tokens, BOS, the dummy-prefix space */
    t->byte_fallback = true;
    for (int b = 0; b < 256; b++) t->byte_id[b] = b + 3;
    for (int32_t id = 3; id < 259; id++) {
        bool upper;
        int byte = qerr__byte_piece(t->text[id], t->text_len[id], &upper);
        if (byte >= 0) {
            char c = (char)byte;
            QERR_TRY(qerr__tokenizer_set_text(t, id, &c, 1));
        }
    }
    t->unk_id = 0;
    t->special[0] = t->special[1] = t->special[2] = 1;
    t->bos_id = 1;
    t->eos_id = 2;
    t->add_bos = true;
    QERR_CHECK(qerr__strmap_get(&t->vocab, " ", 1) >= 0, QERR_E_FORMAT,
               "%s: no token for the space llama2.c prepends", what);
    t->norm = calloc(1, sizeof *t->norm);
    QERR_CHECK(t->norm, QERR_E_NOMEM, "%s: out of memory", what);
    t->n_norm = 1;
    t->norm[0].kind = QERR_NORM_PREPEND;
    t->norm[0].arg = strdup(" ");
    t->norm[0].arg_len = 1;
    QERR_CHECK(t->norm[0].arg, QERR_E_NOMEM, "%s: out of memory", what);
    return qerr__tokenizer_finish(t, what);
}
