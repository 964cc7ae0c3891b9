/* Streaming .qerr writer with crash recovery (see qstream.h). The partial
 * file holds a zeroed header, the metadata record and the tensor records of
 * the finished units; the state file (replaced atomically after each unit's
 * records are on disk) says how many units and bytes of it are valid, so a
 * kill at any moment leaves either the old or the new state, never a torn
 * one, and bytes past the recorded length are cut off on resume. */
#include "qstream.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER_BYTES 48
#define STATE_MAGIC "qerr-partial 1"

struct qerr_qstream {
    const qerr_ctx *ctx;
    char *path, *part, *state;
    int fd;
    uint64_t bytes, ntensors, nmeta; /* valid bytes and tensors of the partial file */
    uint32_t key;
    uint8_t *map; /* resume: the valid bytes, read back for replay */
    size_t map_len, pos;
};

static char *with_suffix(const char *path, const char *suffix) {
    size_t n = strlen(path) + strlen(suffix) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s", path, suffix);
    return s;
}

static int write_all(int fd, const void *data, size_t n, const char *path) {
    const uint8_t *p = data;
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        QERR_CHECK(k > 0, QERR_E_IO, "cannot write '%s': %s", path, strerror(errno));
        p += k;
        n -= (size_t)k;
    }
    return QERR_OK;
}

static int save_state(const qerr_qstream *s, int64_t units) {
    char text[256];
    int n = snprintf(text, sizeof text, "%s\nkey %08x\nunits %lld\nbytes %llu\ntensors %llu\n",
                     STATE_MAGIC, s->key, (long long)units, (unsigned long long)s->bytes,
                     (unsigned long long)s->ntensors);
    return qerr__write_file_atomic(s->state, text, (size_t)n);
}

/* Parse a state file; false when it is not one. */
static bool load_state(const char *path, uint32_t *key, int64_t *units, uint64_t *bytes,
                       uint64_t *tensors) {
    uint8_t *text;
    size_t n;
    if (qerr__read_file(path, &text, &n, 4096) != QERR_OK) return false;
    char buf[4097];
    memcpy(buf, text, n);
    buf[n] = '\0';
    free(text);
    unsigned k;
    long long u;
    unsigned long long b, t;
    bool ok = sscanf(buf, STATE_MAGIC "\nkey %8x\nunits %lld\nbytes %llu\ntensors %llu\n", &k, &u,
                     &b, &t) == 4 &&
              u >= 0;
    if (ok) {
        *key = k;
        *units = u;
        *bytes = b;
        *tensors = t;
    }
    return ok;
}

/* Test hook: QERR_TEST_EXIT_AT=U ends the process (as kill -9 would) right
 * after unit U is recorded; U.records after its records are written but
 * before the state says so. */
static void maybe_exit(int64_t unit, bool recorded) {
    const char *at = getenv("QERR_TEST_EXIT_AT");
    if (!at || !*at) return;
    char *end;
    long long u = strtoll(at, &end, 10);
    bool records = strcmp(end, ".records") == 0;
    if (u == unit && records == !recorded) _exit(137);
}

static int start_fresh(qerr_qstream *s, const uint8_t *meta_rec, size_t meta_n) {
    s->fd = open(s->part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    QERR_CHECK(s->fd >= 0, QERR_E_IO, "cannot create '%s': %s", s->part, strerror(errno));
    uint8_t zero[HEADER_BYTES] = {0};
    QERR_TRY(write_all(s->fd, zero, sizeof zero, s->part));
    QERR_TRY(write_all(s->fd, meta_rec, meta_n, s->part));
    s->bytes = HEADER_BYTES + meta_n;
    s->ntensors = 0;
    return save_state(s, 0);
}

/* Reopen the partial file at its recorded length; the metadata record must
 * be the one this run would write. */
static int reopen(qerr_qstream *s, const uint8_t *meta_rec, size_t meta_n, uint64_t bytes) {
    s->fd = open(s->part, O_RDWR | O_CLOEXEC);
    QERR_CHECK(s->fd >= 0, QERR_E_IO, "--resume: cannot open '%s': %s", s->part,
               strerror(errno));
    struct stat st;
    QERR_CHECK(fstat(s->fd, &st) == 0 && (uint64_t)st.st_size >= bytes &&
                   bytes >= HEADER_BYTES + meta_n,
               QERR_E_FORMAT, "--resume: '%s' is shorter than its state file says", s->part);
    QERR_CHECK(ftruncate(s->fd, (off_t)bytes) == 0, QERR_E_IO, "--resume: cannot truncate '%s'",
               s->part);
    s->map = mmap(NULL, (size_t)bytes, PROT_READ, MAP_PRIVATE, s->fd, 0);
    if (s->map == MAP_FAILED) {
        s->map = NULL;
        return qerr__fail(QERR_E_IO, "--resume: cannot map '%s'", s->part);
    }
    s->map_len = (size_t)bytes;
    QERR_CHECK(memcmp(s->map + HEADER_BYTES, meta_rec, meta_n) == 0, QERR_E_INVALID_ARG,
               "--resume: '%s' holds other metadata than this run would write", s->part);
    s->pos = HEADER_BYTES + meta_n;
    QERR_CHECK(lseek(s->fd, (off_t)bytes, SEEK_SET) == (off_t)bytes, QERR_E_IO,
               "--resume: cannot seek in '%s'", s->part);
    s->bytes = bytes;
    return QERR_OK;
}

int qerr__qstream_open(qerr_qstream **out, const qerr_ctx *ctx, const char *path,
                       const qerr_qmodel *meta, uint32_t key, bool resume, int64_t *units_done) {
    *out = NULL;
    *units_done = 0;
    QERR_CHECK(path && *path, QERR_E_INVALID_ARG, "output path is empty");
    qerr_qstream *s = qerr__calloc(1, sizeof *s);
    QERR_CHECK(s, QERR_E_NOMEM, "out of memory");
    s->ctx = ctx;
    s->fd = -1;
    s->key = key;
    s->nmeta = (uint64_t)qerr__qmodel_meta_count(meta);
    s->path = with_suffix(path, "");
    s->part = with_suffix(path, ".partial");
    s->state = with_suffix(path, ".partial.state");
    uint8_t *meta_rec = NULL;
    size_t meta_n = 0;
    int rc = s->path && s->part && s->state ? QERR_OK : qerr__fail(QERR_E_NOMEM, "out of memory");
    if (rc == QERR_OK) rc = qerr__qmodel_meta_record(meta, &meta_rec, &meta_n);
    uint32_t old_key = 0;
    int64_t units = 0;
    uint64_t bytes = 0, tensors = 0;
    /* a state without its partial file: the last run finished but was killed
     * before removing the state; nothing to resume */
    bool have = rc == QERR_OK && resume && access(s->part, F_OK) == 0 &&
                load_state(s->state, &old_key, &units, &bytes, &tensors);
    if (have && old_key != key)
        rc = qerr__fail(QERR_E_INVALID_ARG,
                        "--resume: '%s' was started with another model, calibration set, plan, "
                        "seed or thread count; run without --resume to start again",
                        s->part);
    if (rc == QERR_OK && have) {
        rc = reopen(s, meta_rec, meta_n, bytes);
        s->ntensors = tensors;
        *units_done = units;
        if (rc == QERR_OK)
            qerr__log(ctx, QERR_LOG_INFO, "resuming %s after %lld finished units", path,
                      (long long)units);
    } else if (rc == QERR_OK) {
        if (resume) qerr__log(ctx, QERR_LOG_INFO, "nothing to resume for %s: starting", path);
        rc = start_fresh(s, meta_rec, meta_n);
    }
    free(meta_rec);
    if (rc != QERR_OK) {
        qerr__qstream_close(s);
        return rc;
    }
    *out = s;
    return QERR_OK;
}

static int64_t unit_of(const char *name, int64_t layers) {
    static const char pre[] = "model.layers.";
    if (strncmp(name, pre, sizeof pre - 1) != 0) return layers;
    return strtoll(name + sizeof pre - 1, NULL, 10);
}

int qerr__qstream_replay(qerr_qstream *s, int64_t unit, int64_t layers, qerr_qmodel **out) {
    *out = NULL;
    QERR_TRY(qerr_qmodel_create(out));
    while (s->map && s->pos < s->map_len) {
        size_t at = s->pos;
        char *name = NULL;
        qerr_result *r = NULL;
        int rc = qerr__qmodel_read_tensor(s->map, s->map_len, &s->pos, s->part, &name, &r);
        if (rc == QERR_OK && unit_of(name, layers) != unit) { /* the next unit's: put back */
            s->pos = at;
            qerr_result_free(r);
            free(name);
            break;
        }
        if (rc == QERR_OK) rc = qerr_qmodel_add(*out, name, r);
        else qerr_result_free(r);
        free(name);
        if (rc != QERR_OK) {
            qerr_qmodel_free(*out);
            *out = NULL;
            return rc;
        }
    }
    return QERR_OK;
}

int qerr__qstream_unit_done(qerr_qstream *s, const qerr_qmodel *q, int64_t unit) {
    for (int i = 0; i < qerr_qmodel_count(q); i++) {
        const char *name = qerr_qmodel_name(q, i);
        const qerr_result *r;
        QERR_TRY(qerr_qmodel_get(q, name, &r));
        uint8_t *rec;
        size_t n;
        QERR_TRY(qerr__qmodel_tensor_record(name, r, &rec, &n));
        int rc = write_all(s->fd, rec, n, s->part);
        free(rec);
        QERR_TRY(rc);
        s->bytes += n;
        s->ntensors++;
    }
    QERR_CHECK(fdatasync(s->fd) == 0 || errno == EINVAL, QERR_E_IO, "cannot sync '%s': %s",
               s->part, strerror(errno));
    maybe_exit(unit, false);
    QERR_TRY(save_state(s, unit + 1));
    maybe_exit(unit, true);
    return QERR_OK;
}

int qerr__qstream_finish(qerr_qstream *s) {
    uint8_t h[HEADER_BYTES];
    qerr__qmodel_header(h, s->bytes, s->ntensors, s->nmeta);
    QERR_CHECK(pwrite(s->fd, h, sizeof h, 0) == (ssize_t)sizeof h, QERR_E_IO,
               "cannot write '%s': %s", s->part, strerror(errno));
    QERR_CHECK(fsync(s->fd) == 0 || errno == EINVAL, QERR_E_IO, "cannot sync '%s': %s", s->part,
               strerror(errno));
    QERR_CHECK(rename(s->part, s->path) == 0, QERR_E_IO, "cannot rename '%s' to '%s': %s",
               s->part, s->path, strerror(errno));
    (void)remove(s->state);
    return QERR_OK;
}

void qerr__qstream_close(qerr_qstream *s) {
    if (!s) return;
    if (s->map) munmap(s->map, s->map_len);
    if (s->fd >= 0) close(s->fd);
    free(s->path);
    free(s->part);
    free(s->state);
    free(s);
}
