/* libFuzzer target for the GGUF reader: any byte string must give a status,
 * never a crash or an over-read; whatever parses must describe keys and
 * tensors that lie inside the buffer, and reading them must be safe. */
#include "io/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a private copy, so ASan catches any read past the end */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    qerr_gguf_file f;
    if (qerr__gguf_parse(buf, size, "fuzz", &f) == QERR_OK) {
        for (int64_t i = 0; i < f.n_kv; i++) {
            const qerr_gguf_kv *kv = &f.kv[i];
            if ((const uint8_t *)kv->key < buf || (const uint8_t *)kv->key + kv->key_len > buf + size)
                abort();
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)(kv->key_len < 63 ? kv->key_len : 63), kv->key);
            int64_t iv;
            double dv;
            char sv[32];
            (void)qerr__gguf_get_int(&f, key, &iv);
            (void)qerr__gguf_get_float(&f, key, &dv);
            (void)qerr__gguf_get_str(&f, key, sv, sizeof sv);
        }
        for (int64_t i = 0; i < f.n_tensors; i++) {
            const qerr_gguf_tensor *t = &f.tensors[i];
            if (t->data < buf || t->data + t->nbytes > buf + size) abort();
            if (qerr__gguf_tensor(&f, t->name) != t) abort(); /* names are unique */
            const int64_t cols = t->ne[0], rows = t->numel / cols;
            if (t->numel > (1 << 20)) continue;
            float *x = malloc((size_t)cols * sizeof *x);
            for (int64_t r = 0; x && r < rows; r++)
                (void)qerr__gguf_row_to_f32(t->type, t->data + (size_t)r * (t->nbytes / (size_t)rows),
                                            cols, x);
            free(x);
        }
        qerr__gguf_close(&f);
    }
    free(buf);
    return 0;
}
