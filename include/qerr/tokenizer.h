/*
 * libqerr tokenizer API: turn text into the token ids a model was trained on,
 * and back. Reads a Hugging Face tokenizer.json (+ tokenizer_config.json for
 * the BOS/EOS rules) with SentencePiece-style or byte-level BPE, or a
 * llama2.c tokenizer.bin. Gives the ids of Hugging Face's tokenizers.
 * Included by qerr.h; same conventions (int status, qerr_last_error()).
 * A loaded tokenizer is read-only: several threads may encode with it at once.
 */
#ifndef QERR_TOKENIZER_H
#define QERR_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qerr_tokenizer_s qerr_tokenizer;

/* Flags of qerr_tokenizer_encode / qerr_tokenizer_encode_file. */
/* Add BOS/EOS as the tokenizer's rules say (tokenizer_config.json's
 * add_bos_token/add_eos_token, else the post-processor's template). */
#define QERR_TOKENIZE_ADD_SPECIAL 1u
/* Recognize special tokens written in the text ("<|endoftext|>"), as Hugging
 * Face does by default; without it they are encoded as plain text. Added
 * tokens that are not special are always recognized. */
#define QERR_TOKENIZE_PARSE_SPECIAL 2u
/* Flag of qerr_tokenizer_decode: leave special tokens out of the text. */
#define QERR_DETOKENIZE_SKIP_SPECIAL 1u

/* Load a tokenizer from `path`: a model directory (its tokenizer.json and,
 * if present, tokenizer_config.json; else tokenizer.bin), a tokenizer.json
 * file (tokenizer_config.json beside it is read when present) or a llama2.c
 * tokenizer.bin. Unsupported kinds (Unigram, WordPiece, ...) are refused
 * with QERR_E_UNSUPPORTED and a message naming them. */
QERR_API int qerr_tokenizer_load(qerr_tokenizer **out, const char *path);
QERR_API void qerr_tokenizer_free(qerr_tokenizer *t); /* NULL is a no-op */
/* Number of ids (largest id + 1, added tokens included); -1 if t is NULL. */
QERR_API int64_t qerr_tokenizer_vocab_size(const qerr_tokenizer *t);
/* BOS / EOS ids, -1 when the tokenizer has none. */
QERR_API int64_t qerr_tokenizer_bos_id(const qerr_tokenizer *t);
QERR_API int64_t qerr_tokenizer_eos_id(const qerr_tokenizer *t);
/* Encode text[0..len) (UTF-8; invalid sequences are read as U+FFFD, as the
 * reference does). *ids is allocated with malloc (free it with qerr_free). */
QERR_API int qerr_tokenizer_encode(const qerr_tokenizer *t, const char *text, size_t len,
                                   unsigned flags, uint32_t **ids, int64_t *count);
/* Decode ids into UTF-8 text (*text NUL-terminated, malloc'd, free it with
 * qerr_free). Byte-level pieces are joined byte by byte, so a cut in the
 * middle of a character gives its partial bytes. */
QERR_API int qerr_tokenizer_decode(const qerr_tokenizer *t, const uint32_t *ids, int64_t count,
                                   unsigned flags, char **text, size_t *len);
/* The bytes token `id` stands for in decoded text (not NUL-terminated) and
 * its length; *special (may be NULL) is set to 1 for special tokens. NULL if
 * id is out of range. */
QERR_API const char *qerr_tokenizer_token_text(const qerr_tokenizer *t, uint32_t id, size_t *len,
                                               int *special);
/* Read a text file and encode it: plain UTF-8 text is one document; JSON
 * Lines (a .jsonl/.ndjson file, or one whose first line is an object with a
 * "text" string) give one document per line, each encoded on its own (with
 * BOS/EOS per document under QERR_TOKENIZE_ADD_SPECIAL). *text_bytes (may be
 * NULL) receives the number of text bytes read. An empty file, or a JSON line
 * without a "text" string, is a QERR_E_FORMAT error. */
QERR_API int qerr_tokenizer_encode_file(const qerr_tokenizer *t, const char *path, unsigned flags,
                                        uint32_t **ids, int64_t *count, int64_t *text_bytes);

#ifdef __cplusplus
}
#endif

#endif /* QERR_TOKENIZER_H */
