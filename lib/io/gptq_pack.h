/* GPTQ int32 packing (lib/io/gptq_pack.c): the layout of the qweight and
 * qzeros tensors of GPTQ checkpoints. Values of `bits` bits form one
 * little-endian bit stream over 32-bit words: value i occupies bits
 * [i*bits, (i+1)*bits) of the stream, so 3-bit values straddle word
 * boundaries (32 values fill exactly 3 words). Never installed. */
#ifndef QERR_IO_GPTQ_PACK_H
#define QERR_IO_GPTQ_PACK_H

#include <stdbool.h>
#include <stdint.h>

/* Bit widths the GPTQ layout defines: 2, 3, 4 and 8. */
bool qerr__gptq_bits_ok(int bits);
/* Words holding n values, or -1 when n values do not fill whole words
 * (n must be a multiple of 32 / gcd(bits, 32): 16, 32, 8, 4 for 2, 3, 4, 8). */
int64_t qerr__gptq_words(int64_t n, int bits);
/* Pack n values vals[i * vstride] (each < 2^bits) into qerr__gptq_words(n)
 * words words[w * wstride], which this call overwrites. */
void qerr__gptq_pack(const int32_t *vals, int64_t vstride, int64_t n, int bits, uint32_t *words,
                     int64_t wstride);
/* The inverse: vals[i * vstride] = value i of the stream. */
void qerr__gptq_unpack(const uint32_t *words, int64_t wstride, int64_t n, int bits,
                       int32_t *vals, int64_t vstride);

#endif /* QERR_IO_GPTQ_PACK_H */
