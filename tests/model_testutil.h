/* Helpers for the model tests: build safetensors images and tiny model
 * directories in a temporary folder. Header-only (static) so each test
 * executable carries its own copy. */
#ifndef QERR_MODEL_TESTUTIL_H
#define QERR_MODEL_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *name, *dtype;
    int ndim;
    int64_t shape[4];
    const void *data;
    size_t nbytes;
} mt_tensor;

/* A safetensors image of tensors laid out in order; `meta` is the JSON
 * object text of __metadata__ or NULL. Caller frees. */
static uint8_t *mt_safetensors(const mt_tensor *t, int n, const char *meta, size_t *len) {
    size_t cap = 4096 + (size_t)n * 256, hl = 0;
    char *h = malloc(cap);
    hl += (size_t)snprintf(h + hl, cap - hl, "{");
    if (meta) hl += (size_t)snprintf(h + hl, cap - hl, "\"__metadata__\":%s", meta);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        hl += (size_t)snprintf(h + hl, cap - hl, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                               (meta || i) ? "," : "", t[i].name, t[i].dtype);
        for (int d = 0; d < t[i].ndim; d++)
            hl += (size_t)snprintf(h + hl, cap - hl, "%s%lld", d ? "," : "",
                                   (long long)t[i].shape[d]);
        hl += (size_t)snprintf(h + hl, cap - hl, "],\"data_offsets\":[%zu,%zu]}", off,
                               off + t[i].nbytes);
        off += t[i].nbytes;
    }
    hl += (size_t)snprintf(h + hl, cap - hl, "}");
    *len = 8 + hl + off;
    uint8_t *buf = malloc(*len);
    for (int b = 0; b < 8; b++) buf[b] = (uint8_t)((uint64_t)hl >> (8 * b));
    memcpy(buf + 8, h, hl);
    off = 8 + hl;
    for (int i = 0; i < n; i++) {
        if (t[i].nbytes) memcpy(buf + off, t[i].data, t[i].nbytes);
        off += t[i].nbytes;
    }
    free(h);
    return buf;
}

static void mt_write(const char *dir, const char *file, const void *buf, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "wb");
    if (f) {
        if (n) fwrite(buf, 1, n, f);
        fclose(f);
    }
}

/* A fresh empty directory under $TMPDIR (or /tmp); caller frees. */
static char *mt_tempdir(void) {
    const char *base = getenv("TMPDIR");
    char *p = malloc(1024);
    snprintf(p, 1024, "%s/qerr_model_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(p)) {
        free(p);
        return NULL;
    }
    return p;
}

static void mt_rmdir(char *dir, const char *const *files, int n) {
    char path[1024];
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    free(dir);
}

#endif
