/* libFuzzer target for the tokenizer.json reader and the encoder behind it:
 * the input is a tokenizer.json, optionally followed by a NUL byte and a
 * text. Any bytes must give a status, never a crash; a tokenizer that loads
 * must encode the text (valid UTF-8 or not) into ids inside its vocabulary,
 * and decode them again. */
#include "text/text_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t jn = nul ? (size_t)(nul - data) : size;
    char *json = malloc(jn ? jn : 1); /* private copies: catch over-reads */
    size_t tn = nul ? size - jn - 1 : 0;
    char *text = malloc(tn ? tn : 1);
    if (!json || !text) abort();
    memcpy(json, data, jn);
    if (tn) memcpy(text, nul + 1, tn);
    qerr_tokenizer *t = NULL;
    if (qerr__tokenizer_from_memory(&t, json, jn, NULL, 0, "fuzz") == QERR_OK) {
        for (unsigned flags = 0; flags < 4; flags++) {
            uint32_t *ids = NULL;
            int64_t n = 0;
            if (qerr_tokenizer_encode(t, text, tn, flags, &ids, &n) != QERR_OK) abort();
            for (int64_t i = 0; i < n; i++)
                if (ids[i] >= (uint32_t)qerr_tokenizer_vocab_size(t)) abort();
            char *back = NULL;
            if (qerr_tokenizer_decode(t, ids, n, flags & 1, &back, NULL) != QERR_OK) abort();
            free(back);
            free(ids);
        }
        qerr_tokenizer_free(t);
    }
    free(json);
    free(text);
    return 0;
}
