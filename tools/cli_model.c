/* Model-level steps shared by `quantize`, `ppl` and `compare`: which model
 * and token files a command uses, loading them, perplexity. */
#define _XOPEN_SOURCE 700
#include "cli.h"

#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *cli_model_dir(const cli_command *cmd) {
    const char *dir = cli_get(cmd, "model");
    if (dir && *dir) return dir;
    fprintf(stderr,
            "qerr %s: --model DIR is required: a model directory with config.json and "
            "model.safetensors (see qerr %s --help)\n",
            cmd->name, cmd->name);
    return NULL;
}

const char *cli_tokens_path(const cli_command *cmd, const char *opt, const char *model_dir,
                            char *buf, size_t cap) {
    if (cli_given(cmd, opt)) return cli_get(cmd, opt);
    const char *what = strcmp(opt, "calib") == 0 ? "calibration" : "evaluation";
    struct stat st;
    if (stat(model_dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        fprintf(stderr,
                "qerr %s: no %s tokens: the model %s is a single file, which ships no token "
                "files; give --%s TOKENS (little-endian uint32 token ids)\n",
                cmd->name, what, model_dir, opt);
        return NULL;
    }
    /* the files a model directory ships: <opt>.u32 (calib.u32, eval.u32) */
    snprintf(buf, cap, "%s/%s.u32", model_dir, opt);
    if (access(buf, R_OK) == 0) return buf;
    fprintf(stderr,
            "qerr %s: no %s tokens: the model directory %s has no %s.u32; give --%s TOKENS "
            "(token ids of this model's tokenizer, little-endian uint32)\n",
            cmd->name, what, model_dir, opt, opt);
    return NULL;
}

bool cli_calib_window(const cli_command *cmd, int64_t *seqlen) {
    const char *calib_ctx = cli_get(cmd, "calib-ctx");
    return cli_int(calib_ctx ? "calib-ctx" : "ctx", calib_ctx ? calib_ctx : cli_get(cmd, "ctx"), 2,
                   1 << 20, seqlen);
}

int cli_load_model(const char *dir, qerr_model **out) {
    int rc = qerr_model_load(out, dir);
    if (rc != QERR_OK) cli_fail("cannot load the model", rc);
    return rc;
}

int cli_load_tokens(const char *what, const char *path, uint32_t **tokens, int64_t *count) {
    int rc = qerr_tokens_read(path, tokens, count);
    if (rc != QERR_OK) cli_fail(what, rc);
    return rc;
}

/* ---- the model a container was made from ---------------------------------- */

static bool in_qmodel(const qerr_qmodel *q, const char *name) {
    const qerr_result *r;
    return qerr_qmodel_get(q, name, &r) == QERR_OK;
}

/* 64-bit hash (FNV-1a over words, then a final mix) of the names, shapes and
 * values of the model's tensors that q does not replace: what a quantized
 * model takes from its float model, so two models that give the same
 * quantized model hash alike. */
static uint64_t fingerprint(const qerr_model *m, const qerr_qmodel *q) {
    const uint64_t prime = 0x100000001b3ull;
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < qerr_model_tensor_count(m); i++) {
        const char *name = qerr_model_tensor_name(m, i);
        const qerr_tensor *t;
        if (!name || in_qmodel(q, name) || qerr_model_tensor(m, name, &t) != QERR_OK) continue;
        for (const char *c = name; *c; c++) h = (h ^ (uint8_t)*c) * prime;
        for (int d = 0; d < qerr_tensor_ndim(t); d++)
            h = (h ^ (uint64_t)qerr_tensor_dim(t, d)) * prime;
        const uint8_t *p = qerr_tensor_data(t);
        size_t n = qerr_tensor_nbytes(t), k = 0;
        for (; k + 8 <= n; k += 8) {
            uint64_t w;
            memcpy(&w, p + k, 8);
            h = (h ^ w) * prime;
        }
        for (; k < n; k++) h = (h ^ p[k]) * prime;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

int cli_record_source(qerr_qmodel *q, const qerr_model *m, const char *model_dir,
                      const char *calib_path) {
    char abs_model[PATH_MAX], abs_calib[PATH_MAX], fp[32];
    if (!realpath(model_dir, abs_model)) snprintf(abs_model, sizeof abs_model, "%s", model_dir);
    if (!realpath(calib_path, abs_calib)) snprintf(abs_calib, sizeof abs_calib, "%s", calib_path);
    snprintf(fp, sizeof fp, "%016" PRIx64, fingerprint(m, q));
    int rc;
    if ((rc = qerr_qmodel_set_meta(q, "source.model", abs_model)) != QERR_OK ||
        (rc = qerr_qmodel_set_meta(q, "source.model.fingerprint", fp)) != QERR_OK ||
        (rc = qerr_qmodel_set_meta(q, "source.calib", abs_calib)) != QERR_OK)
        cli_fail("cannot set metadata", rc);
    return rc;
}

const char *cli_container_model(const char *cmd_name, const qerr_qmodel *q, const char *qpath,
                                const char *given) {
    if (given && *given) return given;
    const char *dir = qerr_qmodel_meta(q, "source.model");
    if (dir && *dir) return dir;
    fprintf(stderr,
            "qerr %s: %s does not record the model it was made from; give --model DIR\n",
            cmd_name, qpath);
    return NULL;
}

int cli_load_quantized(const char *dir, const qerr_qmodel *q, const char *qpath,
                       qerr_model **out) {
    int rc = cli_load_model(dir, out);
    if (rc != QERR_OK) return rc;
    const char *want = qerr_qmodel_meta(q, "source.model.fingerprint");
    if (want) {
        char have[32];
        snprintf(have, sizeof have, "%016" PRIx64, fingerprint(*out, q));
        if (strcmp(have, want) != 0) {
            const char *from = qerr_qmodel_meta(q, "source.model");
            fprintf(stderr,
                    "qerr: %s was quantized from another model (%s), not from %s: the tensors "
                    "it does not replace differ (fingerprint %s, expected %s)\n",
                    qpath, from ? from : "not recorded", dir, have, want);
            qerr_model_free(*out);
            *out = NULL;
            return QERR_E_INVALID_ARG;
        }
    }
    rc = qerr_model_apply(*out, q);
    if (rc != QERR_OK) {
        cli_fail("cannot apply the quantized tensors to the model", rc);
        qerr_model_free(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- measuring ------------------------------------------------------------ */

int cli_perplexity(qerr_ctx *ctx, const qerr_model *m, const uint32_t *tokens, int64_t count,
                   int64_t ctx_len, int64_t max_windows, cli_ppl_result *out) {
    double t0 = cli_now();
    int rc = qerr_model_perplexity(ctx, m, tokens, count, ctx_len, max_windows, &out->ppl,
                                   &out->mean_nll, &out->scored);
    out->seconds = cli_now() - t0;
    out->windows = ctx_len > 0 ? count / ctx_len : 0;
    if (max_windows > 0 && out->windows > max_windows) out->windows = max_windows;
    if (rc != QERR_OK) cli_fail("perplexity failed", rc);
    return rc;
}

/* Tied embeddings are one tensor under two names: counted once, nothing
 * converted. */
int64_t cli_model_params(const qerr_model *m) { return qerr_model_param_count(m); }
