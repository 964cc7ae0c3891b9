/* libFuzzer target for the .qerr container reader: any byte string must give
 * a status, never a crash, leak or over-read; whatever parses must save and
 * parse again to the same bytes.
 *
 * Random bytes rarely get past the CRCs, so an input starting with 'R' is
 * taken as the raw bytes of one tensor record, and one starting with 'M' as
 * a count byte plus the raw bytes of the metadata record: the harness wraps
 * them in a container with valid checksums, which sends the fuzzer straight
 * into the field checks. Any other input is parsed as a whole file. */
#include "io/qmodel_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* Append record header + zlib stream of raw[0..n) at out + *pos. */
static int add_record(uint8_t *out, size_t *pos, const char *tag, const uint8_t *raw, size_t n) {
    uint8_t *z;
    size_t zn;
    if (qerr__deflate(raw, n, &z, &zn) != QERR_OK) return -1;
    uint8_t *h = out + *pos;
    memcpy(h, tag, 4);
    put32(h + 4, qerr__crc32(raw, n));
    put64(h + 8, n);
    put64(h + 16, zn);
    put32(h + 24, qerr__crc32(z, zn));
    put32(h + 28, qerr__crc32(h, 28));
    memcpy(h + 32, z, zn);
    *pos += 32 + zn;
    free(z);
    return 0;
}

/* A container holding the given META and (optionally) one TENS payload. */
static uint8_t *wrap(const uint8_t *meta, size_t meta_n, uint64_t n_meta, const uint8_t *tens,
                     size_t tens_n, bool has_tensor, size_t *out_n) {
    size_t cap = 48 + 2 * 32 + 2 * (meta_n + tens_n) + 64;
    uint8_t *f = calloc(1, cap);
    if (!f) return NULL;
    size_t pos = 48;
    if (add_record(f, &pos, "META", meta, meta_n) != 0 ||
        (has_tensor && add_record(f, &pos, "TENS", tens, tens_n) != 0)) {
        free(f);
        return NULL;
    }
    memcpy(f, "QERRQMDL", 8);
    put32(f + 8, 1);
    put64(f + 16, pos);
    put64(f + 24, has_tensor ? 1 : 0);
    put64(f + 32, n_meta);
    put32(f + 44, qerr__crc32(f, 44));
    *out_n = pos;
    return f;
}

static void check(const uint8_t *data, size_t size) {
    qerr_qmodel *q = NULL;
    if (qerr__qmodel_parse(data, size, "fuzz", &q) != QERR_OK) {
        if (q) abort(); /* a failed parse must leave *out NULL */
        return;
    }
    uint8_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    qerr_qmodel *again = NULL;
    if (qerr__qmodel_serialize(q, &a, &na) != QERR_OK) abort();
    if (qerr__qmodel_parse(a, na, "fuzz-again", &again) != QERR_OK) abort();
    if (qerr__qmodel_serialize(again, &b, &nb) != QERR_OK) abort();
    if (na != nb || memcmp(a, b, na) != 0) abort();
    free(a);
    free(b);
    qerr_qmodel_free(again);
    qerr_qmodel_free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *f = NULL;
    size_t n = 0;
    if (size >= 1 && data[0] == 'R')
        f = wrap(NULL, 0, 0, data + 1, size - 1, true, &n);
    else if (size >= 2 && data[0] == 'M')
        f = wrap(data + 2, size - 2, data[1], NULL, 0, false, &n);
    if (f) {
        check(f, n);
        free(f);
    } else {
        check(data, size);
    }
    return 0;
}
