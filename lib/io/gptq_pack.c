/* GPTQ int32 bit-stream packing, see gptq_pack.h. The same stream layout
 * serves qweight (packed along the input dimension, one stream per output
 * column) and qzeros (packed along the output dimension, one stream per
 * group); the GPTQ authors' Quant3Linear and AutoGPTQ pack 3-bit values the
 * same way, as 10 + 1 split + 10 + 1 split + 10 per 3 words. */
#include "gptq_pack.h"

bool qerr__gptq_bits_ok(int bits) { return bits == 2 || bits == 3 || bits == 4 || bits == 8; }

int64_t qerr__gptq_words(int64_t n, int bits) {
    if (!qerr__gptq_bits_ok(bits) || n < 0 || n > INT64_MAX / 8) return -1;
    return (n * bits) % 32 == 0 ? n * bits / 32 : -1;
}

void qerr__gptq_pack(const int32_t *vals, int64_t vstride, int64_t n, int bits, uint32_t *words,
                     int64_t wstride) {
    const uint32_t mask = (1u << bits) - 1;
    const int64_t nw = n * bits / 32;
    for (int64_t w = 0; w < nw; w++) words[w * wstride] = 0;
    for (int64_t i = 0; i < n; i++) {
        uint64_t v = (uint32_t)vals[i * vstride] & mask;
        int64_t bit = i * bits, w = bit >> 5;
        int off = (int)(bit & 31);
        words[w * wstride] |= (uint32_t)(v << off);
        if (off + bits > 32) words[(w + 1) * wstride] |= (uint32_t)(v >> (32 - off));
    }
}

void qerr__gptq_unpack(const uint32_t *words, int64_t wstride, int64_t n, int bits,
                       int32_t *vals, int64_t vstride) {
    const uint32_t mask = (1u << bits) - 1;
    for (int64_t i = 0; i < n; i++) {
        int64_t bit = i * bits, w = bit >> 5;
        int off = (int)(bit & 31);
        uint64_t v = words[w * wstride] >> off;
        if (off + bits > 32) v |= (uint64_t)words[(w + 1) * wstride] << (32 - off);
        vals[i * vstride] = (int32_t)(v & mask);
    }
}
