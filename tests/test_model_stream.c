/* Bounded-memory model pipeline: a streaming model (one layer in float32 at
 * a time) gives bit-identical perplexity and quantization results; the
 * streamed container is byte-identical to qerr_qmodel_save of the same
 * results; a run killed after layer k (or between a layer's records and its
 * state) and resumed with QERR_QUANTIZE_RESUME writes the same bytes as an
 * uninterrupted run, for a layer-wise and a block-wise plan; a partial file
 * of other settings is refused. */
#include "testutil.h"
#include "model_testutil.h"
#include "llama/model.h"
#include "io/qmodel_internal.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NSEQ 8
#define SEQ 64

typedef struct {
    qerr_model *m;
    uint32_t *calib, *eval;
    int64_t nc, ne;
    char *dir;
} fixture;

static void load(fixture *f, const char *data, const char *model) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", data, model);
    assert_int_equal(qerr_model_load(&f->m, path), QERR_OK);
    snprintf(path, sizeof path, "%s/%s/calib.u32", data, model);
    assert_int_equal(qerr_tokens_read(path, &f->calib, &f->nc), QERR_OK);
    snprintf(path, sizeof path, "%s/%s/eval.u32", data, model);
    assert_int_equal(qerr_tokens_read(path, &f->eval, &f->ne), QERR_OK);
    f->dir = mt_tempdir();
    assert_non_null(f->dir);
}

static void unload(fixture *f) {
    qerr_model_free(f->m);
    qerr_free(f->calib);
    qerr_free(f->eval);
    rmdir(f->dir);
    free(f->dir);
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
    *n = fread(buf, 1, (size_t)len, fp);
    fclose(fp);
    return buf;
}

static bool same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    uint8_t *x = slurp(a, &na), *y = slurp(b, &nb);
    bool same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* The streamed file leaves out wall-time diagnostics (they differ by run). */
static void drop_timings(qerr_qmodel *q) {
    for (int i = 0; i < qerr_qmodel_count(q); i++) {
        const qerr_result *cr;
        assert_int_equal(qerr_qmodel_get(q, qerr_qmodel_name(q, i), &cr), QERR_OK);
        qerr_result *r = (qerr_result *)cr;
        double v;
        assert_int_equal(qerr_result_diag(r, "seconds", &v), QERR_OK);
        int k = 0;
        for (int d = 0; d < r->n_diag; d++)
            if (strcmp(r->diag[d].name, "seconds") != 0) r->diag[k++] = r->diag[d];
        r->n_diag = k;
    }
}

static const char *const META[] = {"source.model", "stories260k", "note", "streamed", NULL};

static int quantize_file(const fixture *f, const char *spec, const char *path, unsigned flags) {
    qerr_ctx *ctx;
    assert_int_equal(qerr_ctx_create(&ctx), QERR_OK);
    qerr_ctx_set_threads(ctx, 2);
    int rc = qerr_model_quantize_file(ctx, f->m, spec, NULL, f->calib, f->nc, NSEQ, SEQ, META,
                                      path, flags);
    qerr_ctx_free(ctx);
    return rc;
}

/* Runs quantize_file in a child that the hook ends at `at`; returns its status. */
static int killed_run(const fixture *f, const char *spec, const char *path, const char *at) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("QERR_TEST_EXIT_AT", at, 1);
        quantize_file(f, spec, path, 0);
        _exit(0); /* the hook did not fire */
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void streaming_model_is_bit_identical(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(data);
    fixture f;
    load(&f, data, "tiny-llama");
    assert_false(qerr_model_streaming(f.m)); /* small: resident by default */
    assert_int_equal(qerr_model_param_count(f.m), 4852992);
    double p0, p1;
    assert_int_equal(qerr_model_perplexity(NULL, f.m, f.eval, f.ne, 128, 8, &p0, NULL, NULL),
                     QERR_OK);
    qerr_qmodel *q0, *q1;
    assert_int_equal(qerr_model_quantize(NULL, f.m, "gptq:bits=4,group_size=128", NULL, f.calib,
                                         f.nc, NSEQ, SEQ, &q0),
                     QERR_OK);
    qerr_model *s;
    char path[1024];
    snprintf(path, sizeof path, "%s/tiny-llama", data);
    assert_int_equal(qerr_model_load(&s, path), QERR_OK);
    assert_int_equal(qerr_model_set_streaming(s, 1), QERR_OK);
    assert_int_equal(qerr_model_perplexity(NULL, s, f.eval, f.ne, 128, 8, &p1, NULL, NULL),
                     QERR_OK);
    assert_true(p0 == p1);
    /* nothing of the decoder layers stays resident after the pass */
    for (int i = 0; i < s->n; i++)
        if (s->entries[i].layer >= 0) assert_null(s->entries[i].t);
    assert_int_equal(qerr_model_quantize(NULL, s, "gptq:bits=4,group_size=128", NULL, f.calib,
                                         f.nc, NSEQ, SEQ, &q1),
                     QERR_OK);
    uint8_t *b0, *b1;
    size_t n0, n1;
    drop_timings(q0);
    drop_timings(q1);
    assert_int_equal(qerr__qmodel_serialize(q0, &b0, &n0), QERR_OK);
    assert_int_equal(qerr__qmodel_serialize(q1, &b1, &n1), QERR_OK);
    assert_true(n0 == n1 && memcmp(b0, b1, n0) == 0);
    /* a tensor handed out stays valid (pinned) on a streaming model */
    const qerr_tensor *t;
    assert_int_equal(qerr_model_tensor(s, "model.layers.1.mlp.up_proj.weight", &t), QERR_OK);
    assert_int_equal(qerr_model_perplexity(NULL, s, f.eval, f.ne, 128, 2, &p1, NULL, NULL),
                     QERR_OK);
    int i = qerr__model_find(s, "model.layers.1.mlp.up_proj.weight");
    assert_ptr_equal(s->entries[i].t, t);
    free(b0);
    free(b1);
    qerr_qmodel_free(q0);
    qerr_qmodel_free(q1);
    qerr_model_free(s);
    unload(&f);
}

/* The streamed file equals qerr_qmodel_save of qerr_model_quantize's results
 * with the same metadata, byte for byte. */
static void streamed_file_equals_save(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(data);
    fixture f;
    load(&f, data, "stories260k");
    const char *spec = "gptq:bits=4,group_size=32,ragged_groups=1";
    char a[1100], b[1100], part[1200];
    snprintf(a, sizeof a, "%s/streamed.qerr", f.dir);
    snprintf(b, sizeof b, "%s/saved.qerr", f.dir);
    assert_int_equal(quantize_file(&f, spec, a, 0), QERR_OK);
    qerr_ctx *ctx;
    qerr_ctx_create(&ctx);
    qerr_ctx_set_threads(ctx, 2);
    qerr_qmodel *q;
    assert_int_equal(qerr_model_quantize(ctx, f.m, spec, NULL, f.calib, f.nc, NSEQ, SEQ, &q),
                     QERR_OK);
    qerr_ctx_free(ctx);
    for (int k = 0; META[k]; k += 2) qerr_qmodel_set_meta(q, META[k], META[k + 1]);
    drop_timings(q);
    assert_int_equal(qerr_qmodel_save(q, b), QERR_OK);
    assert_true(same_file(a, b));
    snprintf(part, sizeof part, "%s.partial", a);
    assert_false(exists(part));
    snprintf(part, sizeof part, "%s.partial.state", a);
    assert_false(exists(part));
    qerr_qmodel_free(q);
    if (!getenv("KEEP")) {
        unlink(a);
        unlink(b);
    }
    unload(&f);
}

static void resume_case(const fixture *f, const char *spec, const char *at) {
    char full[1100], cut[1100], part[1200];
    snprintf(full, sizeof full, "%s/full.qerr", f->dir);
    snprintf(cut, sizeof cut, "%s/cut.qerr", f->dir);
    if (quantize_file(f, spec, full, 0) != QERR_OK) fail_msg("%s: %s", spec, qerr_last_error());
    assert_int_equal(killed_run(f, spec, cut, at), 137);
    assert_false(exists(cut)); /* never a partial file under the final name */
    snprintf(part, sizeof part, "%s.partial", cut);
    assert_true(exists(part));
    assert_int_equal(quantize_file(f, spec, cut, QERR_QUANTIZE_RESUME), QERR_OK);
    if (!same_file(full, cut)) fail_msg("%s, killed at %s: resumed file differs", spec, at);
    assert_false(exists(part));
    unlink(full);
    unlink(cut);
}

static void resume_after_kill_is_byte_identical(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(data);
    fixture f;
    load(&f, data, "stories260k");
    const char *gptq = "gptq:bits=4,group_size=32,ragged_groups=1";
    resume_case(&f, gptq, "0");         /* after the first layer */
    resume_case(&f, gptq, "2");         /* in the middle */
    resume_case(&f, gptq, "3.records"); /* records written, state not yet */
    resume_case(&f, "rtn:bits=3,group_size=32,ragged_groups=1", "4"); /* all layers done */
    char full[1100];
    snprintf(full, sizeof full, "%s/again.qerr", f.dir);
    /* block-wise with online transforms: replay goes through the deployed block */
    resume_case(&f, "flatquant:bits=4,a_bits=4,epochs=0", "1");
    /* --resume with nothing to resume starts from the beginning */
    assert_int_equal(quantize_file(&f, gptq, full, QERR_QUANTIZE_RESUME), QERR_OK);
    assert_true(exists(full));
    unlink(full);
    /* a state left without its partial file (killed between the rename and
     * the removal of the state): nothing to resume either */
    char part[1200];
    assert_int_equal(killed_run(&f, gptq, full, "1"), 137);
    snprintf(part, sizeof part, "%s.partial", full);
    unlink(part);
    assert_int_equal(quantize_file(&f, gptq, full, QERR_QUANTIZE_RESUME), QERR_OK);
    snprintf(part, sizeof part, "%s.partial.state", full);
    assert_false(exists(part));
    unlink(full);
    unload(&f);
}

static void resume_refuses_other_settings(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(data);
    fixture f;
    load(&f, data, "stories260k");
    char cut[1100], part[1200];
    snprintf(cut, sizeof cut, "%s/cut.qerr", f.dir);
    assert_int_equal(killed_run(&f, "rtn:bits=4,group_size=32,ragged_groups=1", cut, "1"), 137);
    /* another plan: the metadata record differs */
    assert_int_equal(quantize_file(&f, "rtn:bits=3,group_size=32,ragged_groups=1", cut,
                                   QERR_QUANTIZE_RESUME),
                     QERR_E_INVALID_ARG);
    assert_non_null(strstr(qerr_last_error(), "--resume"));
    /* another thread count: the fingerprint differs */
    qerr_ctx *ctx;
    qerr_ctx_create(&ctx);
    qerr_ctx_set_threads(ctx, 1);
    assert_int_equal(qerr_model_quantize_file(ctx, f.m, "rtn:bits=4,group_size=32,ragged_groups=1",
                                              NULL, f.calib, f.nc, NSEQ, SEQ, META, cut,
                                              QERR_QUANTIZE_RESUME),
                     QERR_E_INVALID_ARG);
    assert_int_equal(qerr_model_quantize_file(ctx, f.m, "rtn:bits=4", NULL, f.calib, f.nc, NSEQ,
                                              SEQ, NULL, cut, 8),
                     QERR_E_INVALID_ARG); /* unknown flag */
    qerr_ctx_free(ctx);
    assert_false(exists(cut));
    snprintf(part, sizeof part, "%s.partial", cut);
    unlink(part);
    snprintf(part, sizeof part, "%s.partial.state", cut);
    unlink(part);
    unload(&f);
}

/* A budget below the working set is refused before any work; spilled
 * activations give the same bytes as activations in memory. */
static void memory_budget(void **state) {
    (void)state;
    TU_REQUIRE_SHARED(data);
    fixture f;
    load(&f, data, "stories260k");
    const char *spec = "gptq:bits=4,group_size=32,ragged_groups=1";
    char a[1100], b[1100], part[1200];
    snprintf(a, sizeof a, "%s/mem.qerr", f.dir);
    snprintf(b, sizeof b, "%s/spill.qerr", f.dir);
    uint64_t need = 0, need_spilled = 0;
    double secs = -1;
    assert_int_equal(qerr_model_quantize_estimate(NULL, f.m, spec, NSEQ, SEQ, &need,
                                                  &need_spilled, &secs),
                     QERR_OK);
    assert_true(need >= need_spilled && need_spilled > 0 && secs > 0);
    qerr_ctx *ctx;
    qerr_ctx_create(&ctx);
    qerr_ctx_set_threads(ctx, 2);
    assert_int_equal(qerr_ctx_set_max_memory(ctx, 1 << 20), QERR_OK);
    assert_int_equal(qerr_model_quantize_file(ctx, f.m, spec, NULL, f.calib, f.nc, NSEQ, SEQ,
                                              META, a, 0),
                     QERR_E_NOMEM);
    assert_non_null(strstr(qerr_last_error(), "memory budget"));
    snprintf(part, sizeof part, "%s.partial", a);
    assert_false(exists(a) || exists(part)); /* refused before writing anything */
    qerr_ctx_set_max_memory(ctx, need);
    assert_int_equal(qerr_model_quantize_file(ctx, f.m, spec, NULL, f.calib, f.nc, NSEQ, SEQ,
                                              META, a, 0),
                     QERR_OK);
    qerr_ctx_free(ctx);
    setenv("QERR_TEST_SPILL", "1", 1);
    assert_int_equal(quantize_file(&f, spec, b, 0), QERR_OK);
    unsetenv("QERR_TEST_SPILL");
    assert_true(same_file(a, b));
    unlink(a);
    unlink(b);
    unload(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(streaming_model_is_bit_identical),
        cmocka_unit_test(streamed_file_equals_save),
        cmocka_unit_test(resume_after_kill_is_byte_identical),
        cmocka_unit_test(resume_refuses_other_settings),
        cmocka_unit_test(memory_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
