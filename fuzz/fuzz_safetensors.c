/* libFuzzer target for the safetensors reader: any byte string must give a
 * status, never a crash or an over-read; whatever parses must describe
 * tensors that lie inside the buffer, and converting them must be safe. */
#include "io/io.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a private copy, so ASan catches any read past the end */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    qerr_st_file f;
    if (qerr__st_parse(buf, size, "fuzz", &f) == QERR_OK) {
        for (int i = 0; i < f.n; i++) {
            const qerr_st_entry *e = &f.entries[i];
            if (e->data < buf || e->data + e->nbytes > buf + size) abort();
            if (e->numel > 0 && e->numel <= (1 << 20)) {
                float *x = malloc((size_t)e->numel * sizeof *x);
                if (x) qerr__st_to_f32(e, x);
                free(x);
            }
        }
        (void)qerr__st_meta(&f, "format");
        qerr__st_close(&f);
    }
    free(buf);
    return 0;
}
