/* Large working arrays that may live in a temporary file instead of the
 * heap: an unlinked file in $TMPDIR (else /tmp) mapped shared. Pages of such
 * a "spilled" array that a loop is done with are unmapped from the process
 * (qerr__big_release), so its resident size stays at the chunk being worked
 * on; the data stays in the file and is read back on the next access. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_SPILLED 16

static struct {
    uintptr_t base;
    size_t len;
} spilled[MAX_SPILLED];
static pthread_mutex_t spilled_lock = PTHREAD_MUTEX_INITIALIZER;

static int spill_alloc(size_t bytes, const char *what, void **out) {
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/qerr-spill-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    QERR_CHECK(fd >= 0, QERR_E_IO, "%s: cannot create a temporary file in %s: %s", what,
               dir && *dir ? dir : "/tmp", strerror(errno));
    unlink(path); /* gone with the process, whatever happens */
    int rc = QERR_OK;
    if (ftruncate(fd, (off_t)bytes) != 0)
        rc = qerr__fail(QERR_E_IO, "%s: cannot size a %zu-byte temporary file: %s", what, bytes,
                        strerror(errno));
    void *p = MAP_FAILED;
    if (rc == QERR_OK) p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (rc == QERR_OK && p == MAP_FAILED)
        rc = qerr__fail(QERR_E_NOMEM, "%s: cannot map a %zu-byte temporary file", what, bytes);
    if (rc != QERR_OK) return rc;
    pthread_mutex_lock(&spilled_lock);
    int slot = -1;
    for (int i = 0; i < MAX_SPILLED && slot < 0; i++)
        if (!spilled[i].base) slot = i;
    if (slot >= 0) spilled[slot].base = (uintptr_t)p, spilled[slot].len = bytes;
    pthread_mutex_unlock(&spilled_lock);
    if (slot < 0) {
        munmap(p, bytes);
        return qerr__fail(QERR_E_INTERNAL, "%s: too many spilled arrays", what);
    }
    *out = p;
    return QERR_OK;
}

int qerr__big_alloc(size_t bytes, bool spill, const char *what, void **out) {
    *out = NULL;
    if (bytes == 0) bytes = 1;
    if (spill) return spill_alloc(bytes, what, out);
    *out = malloc(bytes);
    QERR_CHECK(*out, QERR_E_NOMEM, "%s: out of memory for %zu bytes", what, bytes);
    return QERR_OK;
}

/* Slot of the spilled array holding p, or -1; caller holds the lock. */
static int find(uintptr_t p) {
    for (int i = 0; i < MAX_SPILLED; i++)
        if (spilled[i].base && p >= spilled[i].base && p < spilled[i].base + spilled[i].len)
            return i;
    return -1;
}

void qerr__big_free(void *p) {
    if (!p) return;
    pthread_mutex_lock(&spilled_lock);
    int i = find((uintptr_t)p);
    size_t len = i >= 0 ? spilled[i].len : 0;
    if (i >= 0) spilled[i].base = 0;
    pthread_mutex_unlock(&spilled_lock);
    if (i >= 0) munmap(p, len);
    else free(p);
}

void qerr__big_release(const void *p, size_t bytes) {
    if (!p || bytes == 0) return;
    pthread_mutex_lock(&spilled_lock);
    int i = find((uintptr_t)p);
    uintptr_t base = i >= 0 ? spilled[i].base : 0, end = i >= 0 ? base + spilled[i].len : 0;
    pthread_mutex_unlock(&spilled_lock);
    if (i < 0) return; /* heap memory: nothing to do */
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    /* outward to whole pages: on a shared mapping dropping a page loses no data */
    uintptr_t b = (uintptr_t)p & ~(page - 1), e = ((uintptr_t)p + bytes + page - 1) & ~(page - 1);
    if (b < base) b = base;
    if (e > end) e = end;
    if (e > b) (void)madvise((void *)b, (size_t)(e - b), MADV_DONTNEED);
}

bool qerr__big_spilled(const void *p) {
    pthread_mutex_lock(&spilled_lock);
    bool s = p && find((uintptr_t)p) >= 0;
    pthread_mutex_unlock(&spilled_lock);
    return s;
}
