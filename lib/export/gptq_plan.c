/* Which qmodels a GPTQ checkpoint can hold, and its settings: every decoder
 * linear layer quantized (lm_head optionally), one bits value in {2,3,4,8},
 * one group size, zero points in the codes' range (v1 stores zero - 1, so
 * zero 0 needs v2: engines disagree on reading a v1 field of all ones),
 * scales that survive float16, no outliers and no learned transforms. */
#include "gptq_export.h"

#include "../io/gptq_pack.h"
#include "../io/qmodel_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char fn[] = "qerr_export_gptq";

/* True for "model.layers.<l>.<linear>.weight" and "lm_head.weight". */
static bool writable_name(const qerr_model *m, const char *name, bool *is_head) {
    *is_head = strcmp(name, "lm_head.weight") == 0;
    if (*is_head) return true;
    long long l;
    int off = 0;
    if (sscanf(name, "model.layers.%lld.%n", &l, &off) != 1 || off == 0 || l < 0 ||
        l >= m->cfg.layers)
        return false;
    for (int k = 0; k < QERR_LIN_COUNT; k++) {
        size_t n = strlen(qerr__lin_names[k]);
        if (strncmp(name + off, qerr__lin_names[k], n) == 0 && strcmp(name + off + n, ".weight") == 0)
            return true;
    }
    return false;
}

/* Layer-local checks: bits, packing, zeros, scales, g_idx; scales that
 * float16 rounds are counted in p. */
static int check_result(const char *name, const qerr_result *r, bool v2, qerr_gptq_plan *p) {
    const int bits = r->bits;
    QERR_CHECK(qerr__gptq_bits_ok(bits), QERR_E_UNSUPPORTED,
               "%s: '%.128s' has %d bits; GPTQ checkpoints hold 2, 3, 4 or 8", fn, name, bits);
    QERR_CHECK(r->n_outliers == 0, QERR_E_UNSUPPORTED,
               "%s: '%.128s' has %lld full-precision outliers, which GPTQ checkpoints cannot hold",
               fn, name, (long long)r->n_outliers);
    QERR_CHECK(r->n_extras == 0, QERR_E_UNSUPPORTED,
               "%s: '%.128s' carries learned transforms ('%s'), which GPTQ checkpoints cannot hold",
               fn, name, r->n_extras ? r->extras[0].name : "");
    const int need = bits == 3 ? 32 : 32 / bits;
    QERR_CHECK(qerr__gptq_words(r->cols, bits) > 0, QERR_E_UNSUPPORTED,
               "%s: '%.128s' has %lld input columns; %d-bit GPTQ packing needs a multiple of %d",
               fn, name, (long long)r->cols, bits, need);
    QERR_CHECK(qerr__gptq_words(r->rows, bits) > 0, QERR_E_UNSUPPORTED,
               "%s: '%.128s' has %lld output rows; %d-bit GPTQ zero points need a multiple of %d",
               fn, name, (long long)r->rows, bits, need);
    const int32_t lo = v2 ? 0 : 1, hi = (1 << bits) - 1;
    for (int64_t i = 0; i < r->rows * r->groups; i++) {
        const int32_t z = r->zeros[i];
        QERR_CHECK(z >= lo && z <= hi, QERR_E_UNSUPPORTED,
                   "%s: '%.128s' has zero point %d (row %lld, group %lld) outside %d..%d%s", fn,
                   name, z, (long long)(i / r->groups), (long long)(i % r->groups), lo, hi,
                   !v2 && z == 0 ? "; zero point 0 needs checkpoint_format gptq_v2" : "");
        const float s = r->scales[i], h = qerr__f16_to_f32(qerr__f32_to_f16(s));
        QERR_CHECK(isfinite(h) && (h != 0.0f || s == 0.0f), QERR_E_RANGE,
                   "%s: '%.128s' has scale %g (row %lld, group %lld), which float16 cannot hold",
                   fn, name, (double)s, (long long)(i / r->groups), (long long)(i % r->groups));
        if (h != s && p->inexact++ == 0) {
            p->inexact_name = name;
            p->inexact_row = i / r->groups;
            p->inexact_group = i % r->groups;
        }
    }
    for (int64_t j = 0; j < r->cols; j++)
        QERR_CHECK(r->g_idx[j] >= 0 && r->g_idx[j] < r->groups, QERR_E_INTERNAL,
                   "%s: '%.128s' g_idx[%lld] = %d is not a group", fn, name, (long long)j,
                   r->g_idx[j]);
    return QERR_OK;
}

/* One group size for all: -1 when every layer has one group per row. */
static int group_size(const qerr_qmodel *q, int64_t *out) {
    const int n = qerr_qmodel_count(q);
    bool per_row = true;
    int64_t gs = 0;
    const char *gs_name = NULL;
    for (int k = 0; k < n; k++) {
        const qerr_result *r;
        QERR_TRY(qerr_qmodel_get(q, qerr_qmodel_name(q, k), &r));
        per_row &= r->groups == 1;
        if (r->groups > 1 && !gs_name) {
            gs = r->group_size;
            gs_name = qerr_qmodel_name(q, k);
        }
    }
    if (per_row) {
        *out = -1;
        return QERR_OK;
    }
    for (int k = 0; k < n; k++) {
        const char *name = qerr_qmodel_name(q, k);
        const qerr_result *r;
        QERR_TRY(qerr_qmodel_get(q, name, &r));
        bool ok = r->group_size == gs || (r->groups == 1 && r->cols <= gs);
        QERR_CHECK(ok && r->groups == (r->cols + gs - 1) / gs, QERR_E_UNSUPPORTED,
                   "%s: '%.128s' has group size %lld but '%.128s' has %lld; a GPTQ checkpoint has "
                   "one group size",
                   fn, name, (long long)r->group_size, gs_name, (long long)gs);
    }
    *out = gs;
    return QERR_OK;
}

int qerr__gptq_plan(const qerr_model *m, const qerr_qmodel *q, bool v2, qerr_gptq_plan *out) {
    memset(out, 0, sizeof *out);
    out->v2 = v2;
    const int n = qerr_qmodel_count(q);
    QERR_CHECK(n > 0, QERR_E_INVALID_ARG, "%s: the qmodel holds no quantized tensors", fn);
    out->sym = true;
    const char *first = NULL;
    for (int k = 0; k < n; k++) {
        const char *name = qerr_qmodel_name(q, k);
        const qerr_result *r;
        QERR_TRY(qerr_qmodel_get(q, name, &r));
        bool head;
        QERR_CHECK(writable_name(m, name, &head), QERR_E_UNSUPPORTED,
                   "%s: '%.128s' is quantized, but GPTQ checkpoints quantize only the decoder's "
                   "linear layers and lm_head",
                   fn, name);
        int i = qerr__model_find(m, name);
        QERR_CHECK(i >= 0, QERR_E_NOT_FOUND, "%s: the model has no tensor '%.128s'", fn, name);
        const qerr_model_entry *t = &m->entries[i]; /* shape only: nothing converted */
        QERR_CHECK(t->ndim == 2 && t->shape[0] == r->rows && t->shape[1] == r->cols,
                   QERR_E_SHAPE, "%s: '%.128s' is %lldx%lld in the qmodel but not in the model",
                   fn, name, (long long)r->rows, (long long)r->cols);
        QERR_TRY(check_result(name, r, v2, out));
        if (!first) {
            first = name;
            out->bits = r->bits;
        }
        QERR_CHECK(r->bits == out->bits, QERR_E_UNSUPPORTED,
                   "%s: '%.128s' has %d bits but '%.128s' has %d; a GPTQ checkpoint has one bits "
                   "value",
                   fn, name, r->bits, first, out->bits);
        for (int64_t z = 0; z < r->rows * r->groups && out->sym; z++)
            out->sym = r->zeros[z] == 1 << (r->bits - 1);
        if (head) {
            out->lm_head = true;
            out->untie = m->cfg.tied;
        }
    }
    char name[160];
    for (int64_t l = 0; l < m->cfg.layers; l++)
        for (int k = 0; k < QERR_LIN_COUNT; k++) {
            snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)l,
                     qerr__lin_names[k]);
            QERR_CHECK(qerr__qmodel_find(q, name) >= 0, QERR_E_UNSUPPORTED,
                       "%s: '%s' is not quantized; a GPTQ checkpoint quantizes every linear layer "
                       "of the decoder",
                       fn, name);
        }
    QERR_TRY(group_size(q, &out->group_size));
    for (int k = 0; k < n && !out->desc_act; k++) {
        const qerr_result *r;
        QERR_TRY(qerr_qmodel_get(q, qerr_qmodel_name(q, k), &r));
        const int64_t gs = out->group_size == -1 ? r->cols : out->group_size;
        for (int64_t j = 0; j < r->cols && !out->desc_act; j++) out->desc_act = r->g_idx[j] != j / gs;
    }
    qerr__clear_error();
    return QERR_OK;
}
