/* Internal definitions of the text layer (lib/text/): tokenizers read from a
 * Hugging Face tokenizer.json or a llama2.c tokenizer.bin. Never installed. */
#ifndef QERR_TEXT_INTERNAL_H
#define QERR_TEXT_INTERNAL_H

#include "../core/internal.h"
#include "../io/io.h" /* the JSON reader (qerr__json_*) */

/* ---- hash maps (hashmap.c) ------------------------------------------------ */
/* Byte string -> int32, open addressing; keys are borrowed (they must outlive
 * the map). The first value put under a key wins. */
typedef struct {
    uint64_t hash; /* 0: empty slot (hashes are never 0) */
    const char *key;
    uint32_t klen;
    int32_t val;
} qerr__strslot;

typedef struct {
    qerr__strslot *slot;
    size_t cap, n; /* cap: power of two */
} qerr__strmap;

int qerr__strmap_init(qerr__strmap *m, size_t expected);
void qerr__strmap_free(qerr__strmap *m);
/* QERR_OK, or QERR_E_NOMEM; an existing key keeps its value. */
int qerr__strmap_put(qerr__strmap *m, const char *key, size_t len, int32_t val);
/* The value, or -1 when absent. */
int32_t qerr__strmap_get(const qerr__strmap *m, const char *key, size_t len);
uint64_t qerr__hash_bytes(const void *p, size_t n);

/* uint64 key -> (rank, id): merges keyed by the ids of their two parts, and a
 * set of adjacent code point pairs (value unused). */
typedef struct {
    uint64_t key; /* UINT64_MAX marks an empty slot */
    int32_t rank, id;
} qerr__pairslot;

typedef struct {
    qerr__pairslot *slot;
    size_t cap, n;
} qerr__pairmap;

int qerr__pairmap_init(qerr__pairmap *m, size_t expected);
void qerr__pairmap_free(qerr__pairmap *m);
int qerr__pairmap_put(qerr__pairmap *m, uint64_t key, int32_t rank, int32_t id);
/* The slot holding key, or NULL. */
static inline const qerr__pairslot *qerr__pairmap_find(const qerr__pairmap *m, uint64_t key) {
    if (!m->cap) return NULL;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t mask = m->cap - 1, i = (size_t)(h >> 32) & mask;
    for (;;) {
        const qerr__pairslot *sl = &m->slot[i];
        if (sl->key == key) return sl;
        if (sl->key == UINT64_MAX) return NULL;
        i = (i + 1) & mask;
    }
}
static inline uint64_t qerr__pair_key(uint32_t a, uint32_t b) {
    return (uint64_t)a << 32 | b;
}

/* ---- the tokenizer -------------------------------------------------------- */
enum {
    QERR_TOKM_SP_BPE = 1, /* SentencePiece-style BPE over code points, byte fallback */
    QERR_TOKM_BYTE_BPE,   /* byte-level BPE (GPT-2 byte alphabet) */
    QERR_TOKM_LLAMA2C     /* llama2.c tokenizer.bin: score-ordered merges */
};

/* Normalizer steps, applied in order to each piece of text between added tokens. */
enum {
    QERR_NORM_NFC = 1,
    QERR_NORM_NFD,
    QERR_NORM_NFKC,
    QERR_NORM_NFKD,
    QERR_NORM_LOWERCASE,
    QERR_NORM_PREPEND,   /* arg: the prefix (only on non-empty text) */
    QERR_NORM_REPLACE,   /* arg -> arg2, literal */
    QERR_NORM_STRIP,     /* left/right whitespace: flags bit 0 left, bit 1 right */
    QERR_NORM_METASPACE  /* pre-tokenizer Metaspace: ' ' -> arg, prefix by scheme */
};

typedef struct {
    int kind;
    char *arg, *arg2;
    size_t arg_len, arg2_len;
    int flags; /* STRIP: sides; METASPACE: 0 never, 1 always, 2 first */
} qerr__norm_step;

typedef struct {
    char *content;
    size_t len;
    int32_t id;
    bool special, lstrip, rstrip, single_word, normalized;
} qerr__added_token;

/* Pre-tokenizer regular expressions (pcre2), applied one after the other. */
typedef struct qerr__regex qerr__regex;
typedef struct qerr__bpe_scratch qerr__bpe_scratch;

struct qerr_tokenizer_s {
    int model;            /* QERR_TOKM_* */
    int32_t n_vocab;      /* ids are 0..n_vocab-1 */
    /* Per id: the bytes the token stands for in decoded text (NULL for ids
     * with no token), and whether it is a special token. */
    char **text;
    uint32_t *text_len;
    uint8_t *special;
    /* The model's pieces in its working alphabet (raw bytes for byte-level
     * BPE, UTF-8 with U+2581 for SentencePiece) -> id. */
    qerr__strmap vocab;
    qerr__pairmap merges; /* (left id, right id) -> (rank, merged id) */
    int32_t byte_id[256]; /* id of byte b: byte-level single byte, or <0xNN> */
    int32_t unk_id;       /* -1 if none */
    bool byte_fallback, fuse_unk, ignore_merges;
    /* SentencePiece: adjacent code point pairs seen inside any piece; text
     * may be cut between two code points that never appear side by side in
     * a piece (no merge can cross there). Empty when cutting is unsafe. */
    qerr__pairmap adjacent;
    bool can_cut;
    /* SentencePiece: id of each code point below QERR_TOK_CP_TABLE that is a
     * piece of its own (-1 if not), to skip hashing the common characters */
    int32_t *cp_id;

    qerr__norm_step *norm;
    int n_norm;
    qerr__regex **split;
    int n_split;
    bool prefix_space; /* ByteLevel pre-tokenizer add_prefix_space */

    qerr__added_token *added;
    int n_added;
    uint8_t added_first[256]; /* bit set: some added token starts with this byte */

    int32_t bos_id, eos_id;
    bool add_bos, add_eos;
    int strip_leading; /* decoder: leading spaces removed from decoded text */

    /* scratch owned by the loader */
    char *owned_strings;
};

#define QERR_TOK_CP_TABLE 0x3000 /* Latin, punctuation, U+2581 */

/* Id of the single code point c at s[0..len), or -1. */
static inline int32_t qerr__char_id(const qerr_tokenizer *t, uint32_t c, const char *s, size_t len);

/* Sizes that keep every index in 32 bits. */
#define QERR_TOK_MAX_VOCAB ((int32_t)1 << 24)
#define QERR_TOK_MAX_TEXT ((size_t)1 << 31)

/* A tokenizer from tokenizer.json text in memory (+ tokenizer_config.json
 * text, may be NULL): what qerr_tokenizer_load does after reading files. */
int qerr__tokenizer_from_memory(qerr_tokenizer **out, const char *json, size_t n,
                                const char *config, size_t config_n, const char *what);
/* loaders (tokenizer_json.c, llama2c.c) */
int qerr__tokenizer_from_json(qerr_tokenizer *t, const char *json, size_t n,
                              const char *config, size_t config_n, const char *what);
int qerr__tokenizer_from_llama2c(qerr_tokenizer *t, const uint8_t *data, size_t n,
                                 const char *what);
/* Shared tail of both loaders: byte ids, adjacency for cutting, added-token index. */
int qerr__tokenizer_finish(qerr_tokenizer *t, const char *what);
int qerr__tokenizer_alloc_ids(qerr_tokenizer *t, int32_t n_vocab, const char *what);
int qerr__tokenizer_set_text(qerr_tokenizer *t, int32_t id, const char *s, size_t n);

/* regex pre-tokenizer (pretok.c); behaviours of the Split pre-tokenizer */
enum {
    QERR_SPLIT_ISOLATED = 1,
    QERR_SPLIT_REMOVED,
    QERR_SPLIT_MERGED_WITH_NEXT,
    QERR_SPLIT_MERGED_WITH_PREVIOUS
};
int qerr__regex_compile(const char *pattern, size_t len, int behavior, bool literal,
                        qerr__regex **out, const char *what);
void qerr__regex_free(qerr__regex *r);
/* Per-call encoder state: BPE scratch, word cache, regex match data. */
typedef struct qerr__enc qerr__enc;
int qerr__enc_new(qerr__enc **out);
void qerr__enc_free(qerr__enc *e);

/* UTF-8 helpers (utf8.c) */
/* Copy s[0..n) replacing each maximal invalid subsequence by U+FFFD, as the
 * WHATWG decoder (and so Node and Rust's from_utf8_lossy) does. *out is
 * malloc'd, or NULL with *out_n = n when s is already valid. */
int qerr__utf8_sanitize(const char *s, size_t n, char **out, size_t *out_n);
/* Length of the UTF-8 sequence starting with byte c (1 for invalid bytes). */
static inline int qerr__utf8_len(unsigned char c) {
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}
/* The byte of a byte-fallback piece "<0xNN>", or -1; *upper: written with
 * upper-case hex digits, the spelling Hugging Face looks up. */
int qerr__byte_piece(const char *s, size_t n, bool *upper);
/* Decode one code point of valid UTF-8 at s, advancing *i. */
uint32_t qerr__utf8_next(const char *s, size_t n, size_t *i);

/* encoding (bpe.c) */
int qerr__bpe_scratch_new(qerr__bpe_scratch **out);
void qerr__bpe_scratch_free(qerr__bpe_scratch *s);
/* Encode one pre-tokenized word (model alphabet) and append its ids. */
int qerr__bpe_word(const qerr_tokenizer *t, qerr__bpe_scratch *s, const char *w, size_t n);
/* The ids appended so far, and their count. */
uint32_t *qerr__bpe_ids(qerr__bpe_scratch *s, int64_t *count);
int qerr__bpe_push(qerr__bpe_scratch *s, uint32_t id);

qerr__bpe_scratch *qerr__enc_bpe(qerr__enc *e);
/* Pre-tokenize normalized text and BPE-encode its words (ids go to the
 * encoder's BPE scratch). */
int qerr__pretokenize(const qerr_tokenizer *t, qerr__enc *e, const char *s, size_t n);
/* tokenizer.c: encode one document, appending to the encoder's ids; then
 * hand the ids over as a malloc'd array. */
int qerr__tokenizer_encode_into(const qerr_tokenizer *t, qerr__enc *e, const char *text,
                                size_t len, unsigned flags);
int qerr__enc_take(qerr__enc *e, uint32_t **ids, int64_t *count);
/* Apply the normalizer to s[0..n); *out malloc'd. */
int qerr__normalize(const qerr_tokenizer *t, const char *s, size_t n, bool first, char **out,
                    size_t *out_n);

static inline int32_t qerr__char_id(const qerr_tokenizer *t, uint32_t c, const char *s, size_t len) {
    if (t->cp_id && c < QERR_TOK_CP_TABLE) return t->cp_id[c];
    return qerr__strmap_get(&t->vocab, s, len);
}

#endif
