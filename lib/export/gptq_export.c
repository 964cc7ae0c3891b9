/* qerr_export_gptq: a GPTQ checkpoint directory (see include/qerr/export.h)
 * written under "<dir>.tmp.<pid>" and renamed to dir when complete, so no
 * partial checkpoint ever sits under the final name. */
#include "gptq_export.h"

#include "../io/json_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static const char fn[] = "qerr_export_gptq";

#define MAX_CONFIG_BYTES ((size_t)16 << 20)
#define MAX_AUX_BYTES ((size_t)1 << 30)

/* Files of the model's directory a loader needs besides the weights. */
static const char *const AUX_FILES[] = {
    "tokenizer.json",     "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
    "added_tokens.json",  "vocab.json",            "merges.txt",      "generation_config.json",
    "chat_template.jinja", "chat_template.json",
};
/* Everything this writer may create, for cleanup after a failure. */
static const char *const OWN_FILES[] = {"model.safetensors", "config.json", "quantize_config.json"};

static char *join(const char *dir, const char *file) {
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, file);
    return p;
}

static void write_qcfg(qerr_jw *w, const char *key, const qerr_gptq_plan *p, bool file) {
    qerr__jw_open(w, key, '{');
    qerr__jw_int(w, "bits", p->bits);
    qerr__jw_int(w, "group_size", p->group_size);
    qerr__jw_bool(w, "desc_act", p->desc_act);
    qerr__jw_bool(w, "sym", p->sym);
    qerr__jw_bool(w, "lm_head", p->lm_head);
    qerr__jw_bool(w, "static_groups", false);
    qerr__jw_bool(w, "true_sequential", true);
    qerr__jw_string(w, "quant_method", "gptq");
    qerr__jw_string(w, "checkpoint_format", p->v2 ? "gptq_v2" : "gptq");
    qerr__jw_string(w, "pack_dtype", "int32");
    if (file) qerr__jw_string(w, "model_file_base_name", "model");
    qerr__jw_open(w, "meta", '{');
    qerr__jw_open(w, "quantizer", '[');
    char q[64];
    snprintf(q, sizeof q, "libqerr:%s", qerr_version_string());
    qerr__jw_string(w, NULL, q);
    qerr__jw_close(w, ']');
    qerr__jw_close(w, '}');
    qerr__jw_close(w, '}');
}

static int write_text(const char *dir, const char *file, qerr_jw *w) {
    char *text, *path = join(dir, file);
    size_t len;
    int rc = qerr__jw_finish(w, fn, &text, &len);
    if (!path) rc = qerr__fail(QERR_E_NOMEM, "%s: out of memory", fn);
    if (rc == QERR_OK) rc = qerr__write_file_atomic(path, text, len);
    free(text);
    free(path);
    return rc;
}

/* config.json: the model's own, with quantization_config set (and
 * tie_word_embeddings false when a quantized lm_head unties it). */
static int write_config(const qerr_model *m, const char *tmp, const qerr_gptq_plan *p) {
    char *src = join(m->dir, "config.json");
    QERR_CHECK(src, QERR_E_NOMEM, "%s: out of memory", fn);
    uint8_t *text = NULL;
    size_t len = 0;
    qerr_json *cj = NULL;
    int rc = qerr__read_file(src, &text, &len, MAX_CONFIG_BYTES);
    if (rc == QERR_OK) rc = qerr__json_parse((const char *)text, len, src, &cj);
    free(text);
    free(src);
    if (rc == QERR_OK && cj->type != QERR_JSON_OBJECT)
        rc = qerr__fail(QERR_E_FORMAT, "%s: the model's config.json is not an object", fn);
    if (rc != QERR_OK) {
        qerr__json_free(cj);
        return rc;
    }
    qerr_jw w;
    qerr__jw_init(&w, true);
    qerr__jw_open(&w, NULL, '{');
    for (size_t i = 0; i < cj->len; i++) {
        const char *key = cj->keys[i];
        if (strcmp(key, "quantization_config") == 0) continue;
        if (p->untie && strcmp(key, "tie_word_embeddings") == 0) continue;
        qerr__jw_value(&w, key, &cj->items[i]);
    }
    if (p->untie) qerr__jw_bool(&w, "tie_word_embeddings", false);
    write_qcfg(&w, "quantization_config", p, false);
    qerr__jw_close(&w, '}');
    qerr__json_free(cj);
    return write_text(tmp, "config.json", &w);
}

static int copy_aux(const char *from, const char *to) {
    for (size_t i = 0; i < sizeof AUX_FILES / sizeof AUX_FILES[0]; i++) {
        char *src = join(from, AUX_FILES[i]), *dst = join(to, AUX_FILES[i]);
        struct stat st;
        int rc = src && dst ? QERR_OK : qerr__fail(QERR_E_NOMEM, "%s: out of memory", fn);
        if (rc == QERR_OK && stat(src, &st) == 0 && S_ISREG(st.st_mode)) {
            uint8_t *data = NULL;
            size_t n = 0;
            rc = qerr__read_file(src, &data, &n, MAX_AUX_BYTES);
            if (rc == QERR_OK) rc = qerr__write_file_atomic(dst, data, n);
            free(data);
        }
        free(src);
        free(dst);
        QERR_TRY(rc);
    }
    return QERR_OK;
}

/* Remove what this writer may have put into tmp, then tmp itself. */
static void remove_tmp(const char *tmp) {
    for (int pass = 0; pass < 2; pass++) {
        const char *const *list = pass ? AUX_FILES : OWN_FILES;
        size_t n = pass ? sizeof AUX_FILES / sizeof AUX_FILES[0]
                        : sizeof OWN_FILES / sizeof OWN_FILES[0];
        for (size_t i = 0; i < n; i++) {
            char *p = join(tmp, list[i]);
            if (p) remove(p);
            free(p);
        }
    }
    rmdir(tmp);
}

/* dir must not exist, or be an empty directory (rename replaces it). */
static int check_target(const char *dir) {
    struct stat st;
    if (stat(dir, &st) != 0) return QERR_OK;
    QERR_CHECK(S_ISDIR(st.st_mode), QERR_E_IO, "%s: '%s' exists and is not a directory", fn, dir);
    DIR *d = opendir(dir);
    QERR_CHECK(d, QERR_E_IO, "%s: cannot open '%s': %s", fn, dir, strerror(errno));
    bool empty = true;
    for (struct dirent *e; empty && (e = readdir(d)) != NULL;)
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    QERR_CHECK(empty, QERR_E_IO, "%s: '%s' exists and is not empty", fn, dir);
    return QERR_OK;
}

static int write_all(const qerr_model *m, const qerr_qmodel *q, const qerr_gptq_plan *p,
                     const char *tmp) {
    qerr_gptq_tensors t;
    int rc = qerr__gptq_tensors(m, q, p, &t);
    char *st = join(tmp, "model.safetensors");
    if (rc == QERR_OK && !st) rc = qerr__fail(QERR_E_NOMEM, "%s: out of memory", fn);
    if (rc == QERR_OK) rc = qerr__st_write(st, t.out, t.n, qerr__gptq_fill, &t);
    free(st);
    qerr__gptq_tensors_free(&t);
    if (rc == QERR_OK) rc = write_config(m, tmp, p);
    if (rc == QERR_OK) {
        qerr_jw w;
        qerr__jw_init(&w, true);
        write_qcfg(&w, NULL, p, true);
        rc = write_text(tmp, "quantize_config.json", &w);
    }
    if (rc == QERR_OK) rc = copy_aux(m->dir, tmp);
    return rc;
}

/* Scales float16 rounds make the checkpoint's weights differ from the
 * results: allowed (every GPTQ quantizer does it), but said. */
static void warn_inexact(const qerr_ctx *ctx, const qerr_gptq_plan *p, const qerr_qmodel *q) {
    if (p->inexact == 0) return;
    int64_t total = 0;
    for (int k = 0; k < qerr_qmodel_count(q); k++) {
        const qerr_result *r;
        if (qerr_qmodel_get(q, qerr_qmodel_name(q, k), &r) == QERR_OK)
            total += r->rows * r->groups;
    }
    qerr__clear_error();
    qerr__log(ctx, QERR_LOG_WARN,
              "%s: %lld of %lld scales are not float16 values (first: '%.128s' row %lld, group "
              "%lld) and are rounded, so the checkpoint's weights differ from the in-memory "
              "result; quantize with scale_dtype=f16 in the plan (rtn, gptq, quantease, "
              "quantease_outlier) to write exactly what was quantized",
              fn, (long long)p->inexact, (long long)total, p->inexact_name,
              (long long)p->inexact_row, (long long)p->inexact_group);
}

int qerr_export_gptq(const qerr_model *m, const qerr_qmodel *q, const char *dir,
                     const char *checkpoint_format) {
    return qerr_export_gptq_ctx(NULL, m, q, dir, checkpoint_format);
}

int qerr_export_gptq_ctx(qerr_ctx *ctx, const qerr_model *m, const qerr_qmodel *q,
                         const char *dir, const char *checkpoint_format) {
    QERR_CHECK(m && q && dir && *dir, QERR_E_INVALID_ARG, "%s: NULL argument", fn);
    const char *cf = checkpoint_format ? checkpoint_format : "gptq";
    QERR_CHECK(strcmp(cf, "gptq") == 0 || strcmp(cf, "gptq_v2") == 0, QERR_E_INVALID_ARG,
               "%s: checkpoint_format \"%.32s\" is not \"gptq\" or \"gptq_v2\"", fn, cf);
    QERR_CHECK(m->dir, QERR_E_INVALID_ARG, "%s: the model was not loaded from a directory", fn);
    qerr_gptq_plan plan;
    QERR_TRY(qerr__gptq_plan(m, q, strcmp(cf, "gptq_v2") == 0, &plan));
    QERR_TRY(check_target(dir));
    warn_inexact(ctx, &plan, q);
    size_t n = strlen(dir) + 32;
    char *tmp = malloc(n);
    QERR_CHECK(tmp, QERR_E_NOMEM, "%s: out of memory", fn);
    snprintf(tmp, n, "%s.tmp.%ld", dir, (long)getpid());
    int rc = QERR_OK;
    if (mkdir(tmp, 0755) != 0)
        rc = qerr__fail(QERR_E_IO, "%s: cannot create '%s': %s", fn, tmp, strerror(errno));
    if (rc == QERR_OK) {
        rc = write_all(m, q, &plan, tmp);
        if (rc == QERR_OK && rename(tmp, dir) != 0)
            rc = qerr__fail(QERR_E_IO, "%s: cannot rename '%s' to '%s': %s", fn, tmp, dir,
                            strerror(errno));
        if (rc != QERR_OK) remove_tmp(tmp);
    }
    free(tmp);
    if (rc == QERR_OK) qerr__clear_error();
    return rc;
}
