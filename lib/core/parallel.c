/* A minimal fork-join loop over index ranges with pthreads. */
#include "internal.h"

#include <pthread.h>

typedef struct {
    qerr_range_fn fn;
    void *arg;
    int64_t begin, end;
} range_job;

static void *run_job(void *p) {
    range_job *j = p;
    j->fn(j->arg, j->begin, j->end);
    return NULL;
}

void qerr__parallel_for(int threads, int64_t n, int64_t min_chunk, qerr_range_fn fn, void *arg) {
    if (n <= 0) return;
    if (min_chunk < 1) min_chunk = 1;
    int64_t max_workers = (n + min_chunk - 1) / min_chunk;
    int workers = threads < 1 ? 1 : threads;
    if (workers > 64) workers = 64;
    if (workers > max_workers) workers = (int)max_workers;
    if (workers <= 1) {
        fn(arg, 0, n);
        return;
    }
    range_job jobs[64];
    pthread_t tids[64];
    bool started[64] = {false};
    for (int w = 0; w < workers; w++) {
        jobs[w].fn = fn;
        jobs[w].arg = arg;
        jobs[w].begin = n * w / workers;
        jobs[w].end = n * (w + 1) / workers;
    }
    /* Worker 0 runs on the calling thread; a failed thread start runs inline. */
    for (int w = 1; w < workers; w++)
        started[w] = pthread_create(&tids[w], NULL, run_job, &jobs[w]) == 0;
    run_job(&jobs[0]);
    for (int w = 1; w < workers; w++) {
        if (started[w]) pthread_join(tids[w], NULL);
        else run_job(&jobs[w]);
    }
}
