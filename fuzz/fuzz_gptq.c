/* libFuzzer target for the GPTQ module reader: the first byte picks the
 * settings (bits, group size, desc_act, v1/v2), the rest is a safetensors
 * image whose tensors m.qweight / m.qzeros / m.scales / m.g_idx are
 * dequantized. Any bytes must give a status or a weight of the shape the
 * tensors imply, never a crash or an over-read. */
#include "llama/gptq_read.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const qerr_st_entry *find(const qerr_st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->entries[i].name, name) == 0) return &f->entries[i];
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const int bits[] = {2, 3, 4, 8};
    static const int64_t gs[] = {-1, 32, 128, 7};
    qerr_gptq_cfg g = {true, bits[data[0] & 3], gs[(data[0] >> 2) & 3], (data[0] >> 4) & 1,
                       true, (data[0] >> 5) & 1};
    size--;
    uint8_t *buf = malloc(size ? size : 1); /* a private copy: ASan sees over-reads */
    if (!buf) return 0;
    if (size) memcpy(buf, data + 1, size);
    qerr_st_file f;
    if (qerr__st_parse(buf, size, "fuzz", &f) == QERR_OK) {
        const qerr_st_entry *qw = find(&f, "m.qweight");
        qerr_tensor *t = NULL;
        /* bound the output: K * N floats for a qweight of K * bits / 32 * N words */
        if (qw && qw->numel <= (1 << 16) &&
            qerr__gptq_dequant(&g, "fuzz", "m", qw, find(&f, "m.qzeros"), find(&f, "m.scales"),
                               find(&f, "m.g_idx"), &t) == QERR_OK) {
            if (t->ndim != 2 || t->shape[0] != qw->shape[1]) abort();
            qerr_tensor_free(t);
        }
        qerr__st_close(&f);
    }
    free(buf);
    return 0;
}
