/* qerr_ctx: threads, seed, log and progress callbacks. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const qerr_ctx default_ctx = {0, 0, NULL, NULL, 0, NULL, NULL, 0};

const qerr_ctx *qerr__default_ctx(void) { return &default_ctx; }

int qerr_ctx_create(qerr_ctx **out) {
    QERR_CHECK(out, QERR_E_INVALID_ARG, "qerr_ctx_create: out is NULL");
    *out = NULL;
    qerr_ctx *c = qerr__calloc(1, sizeof *c);
    QERR_CHECK(c, QERR_E_NOMEM, "qerr_ctx_create: out of memory");
    *c = default_ctx;
    c->log_level = QERR_LOG_WARN;
    *out = c;
    return QERR_OK;
}

void qerr_ctx_free(qerr_ctx *ctx) { free(ctx); }

int qerr_ctx_set_threads(qerr_ctx *ctx, int threads) {
    QERR_CHECK(ctx, QERR_E_INVALID_ARG, "qerr_ctx_set_threads: ctx is NULL");
    QERR_CHECK(threads >= 0 && threads <= 1024, QERR_E_RANGE,
               "qerr_ctx_set_threads: threads=%d is outside 0..1024", threads);
    ctx->threads = threads;
    return QERR_OK;
}

int qerr_ctx_threads(const qerr_ctx *ctx) { return ctx ? ctx->threads : -1; }

int qerr_ctx_set_seed(qerr_ctx *ctx, uint64_t seed) {
    QERR_CHECK(ctx, QERR_E_INVALID_ARG, "qerr_ctx_set_seed: ctx is NULL");
    ctx->seed = seed;
    return QERR_OK;
}

uint64_t qerr_ctx_seed(const qerr_ctx *ctx) { return ctx ? ctx->seed : 0; }

int qerr_ctx_set_log(qerr_ctx *ctx, qerr_log_fn fn, void *user, int max_level) {
    QERR_CHECK(ctx, QERR_E_INVALID_ARG, "qerr_ctx_set_log: ctx is NULL");
    QERR_CHECK(max_level >= 0 && max_level <= QERR_LOG_DEBUG, QERR_E_RANGE,
               "qerr_ctx_set_log: max_level=%d is outside 0..%d", max_level, QERR_LOG_DEBUG);
    ctx->log_fn = fn;
    ctx->log_user = user;
    ctx->log_level = max_level;
    return QERR_OK;
}

int qerr_ctx_set_progress(qerr_ctx *ctx, qerr_progress_fn fn, void *user) {
    QERR_CHECK(ctx, QERR_E_INVALID_ARG, "qerr_ctx_set_progress: ctx is NULL");
    ctx->progress_fn = fn;
    ctx->progress_user = user;
    return QERR_OK;
}

int qerr__ctx_threads(const qerr_ctx *ctx) {
    int t = ctx ? ctx->threads : 0;
    if (t > 0) return t;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n > 64 ? 64 : n) : 1;
}

void qerr__log(const qerr_ctx *ctx, int level, const char *fmt, ...) {
    if (!ctx || !ctx->log_fn || level > ctx->log_level) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ctx->log_fn(ctx->log_user, level, buf);
}

int qerr__progress(const qerr_ctx *ctx, const char *stage, double fraction) {
    if (!ctx || !ctx->progress_fn) return QERR_OK;
    if (fraction < 0) fraction = 0;
    if (fraction > 1) fraction = 1;
    if (ctx->progress_fn(ctx->progress_user, stage, fraction) != 0)
        return qerr__fail(QERR_E_CANCELLED, "%s: cancelled by the progress callback", stage);
    return QERR_OK;
}

int qerr_ctx_set_max_memory(qerr_ctx *ctx, uint64_t bytes) {
    QERR_CHECK(ctx, QERR_E_INVALID_ARG, "qerr_ctx_set_max_memory: ctx is NULL");
    ctx->max_memory = bytes;
    return QERR_OK;
}

uint64_t qerr_ctx_max_memory(const qerr_ctx *ctx) { return ctx ? ctx->max_memory : 0; }
