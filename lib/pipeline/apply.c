/* qerr_model_apply: overwrite model weights with dequantized results. Every
 * name and shape is checked before anything changes, so a failure leaves the
 * model as it was. Applying to one name of a tied embedding pair unties it:
 * the other name keeps the float tensor. Layers whose results carry online
 * transforms (FlatQuant) also get run-time state used by the forward. */
#include "deployed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Give entry i its own float32 tensor, pinned (its values are about to be
 * overwritten); another entry sharing it keeps the old one. */
static int untie(qerr_model *m, int i) {
    const char *name = m->entries[i].name;
    QERR_CHECK(qerr__model_data(m, name), QERR_E_NOMEM, "qerr_model_apply: out of memory for '%.128s'",
               name);
    qerr_model_entry *e = &m->entries[i];
    const int o = e->owner;
    int sharer = -1;
    for (int j = 0; j < m->n && sharer < 0; j++)
        if (j != i && m->entries[j].owner == o) sharer = j;
    if (sharer < 0) { /* sole user of its data */
        e->pinned = true;
        return QERR_OK;
    }
    const qerr_tensor *old = m->entries[o].t;
    qerr_tensor *copy;
    QERR_TRY(qerr_tensor_from_data(&copy, QERR_DTYPE_F32, old->ndim, old->shape, old->data));
    if (o == i) { /* i owned it: the sharer takes the old tensor over */
        qerr_model_entry *s = &m->entries[sharer];
        s->t = e->t;
        s->alias = false;
        s->owner = sharer;
        s->pinned = e->pinned;
    }
    e->t = copy;
    e->alias = false;
    e->owner = i;
    e->pinned = true;
    return QERR_OK;
}

/* Run-time state of every layer the qmodel touches (rt[l] may stay NULL);
 * touched[l] says which layers it names. */
static int build_rt(const qerr_model *m, const qerr_qmodel *q, qerr_layer_rt **rt, bool *touched) {
    for (int64_t l = 0; l < m->cfg.layers; l++) {
        const qerr_result *r[QERR_LIN_COUNT] = {0};
        for (int lin = 0; lin < QERR_LIN_COUNT; lin++) {
            char name[160];
            snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)l,
                     qerr__lin_names[lin]);
            if (qerr_qmodel_get(q, name, &r[lin]) != QERR_OK) r[lin] = NULL;
            touched[l] |= r[lin] != NULL;
        }
        qerr__clear_error();
        QERR_TRY(qerr__layer_rt_from_results(&m->cfg, r, &rt[l]));
    }
    return QERR_OK;
}

int qerr_model_apply(qerr_model *m, const qerr_qmodel *q) {
    static const char fn[] = "qerr_model_apply";
    QERR_CHECK(m && q, QERR_E_INVALID_ARG, "%s: NULL argument", fn);
    const int n = qerr_qmodel_count(q);
    QERR_CHECK(n >= 0, QERR_E_INVALID_ARG, "%s: bad qmodel", fn);
    for (int k = 0; k < n; k++) {
        const char *name = qerr_qmodel_name(q, k);
        const qerr_result *r;
        QERR_TRY(qerr_qmodel_get(q, name, &r));
        int i = qerr__model_find(m, name);
        QERR_CHECK(i >= 0, QERR_E_NOT_FOUND, "%s: the model has no tensor '%.128s'", fn, name);
        const qerr_model_entry *t = &m->entries[i];
        QERR_CHECK(t->ndim == 2 && t->shape[0] == qerr_result_rows(r) &&
                       t->shape[1] == qerr_result_cols(r),
                   QERR_E_SHAPE, "%s: '%.128s' is %lldx%lld in the qmodel but not in the model",
                   fn, name, (long long)qerr_result_rows(r), (long long)qerr_result_cols(r));
    }
    /* online transforms of weight-activation layers (lib/pipeline/deployed.c) */
    const int64_t L = m->cfg.layers;
    qerr_layer_rt **rt = qerr__calloc((size_t)L, sizeof *rt);
    bool *touched = qerr__calloc((size_t)L, sizeof *touched);
    int rc = rt && touched ? build_rt(m, q, rt, touched)
                           : qerr__fail(QERR_E_NOMEM, "%s: out of memory", fn);
    bool any = false;
    for (int64_t l = 0; rc == QERR_OK && l < L; l++) any |= rt[l] != NULL;
    if (rc == QERR_OK && any && !m->rt) {
        m->rt = qerr__calloc((size_t)L, sizeof *m->rt);
        m->rt_ops = &qerr__deployed_rt_ops;
        if (!m->rt) rc = qerr__fail(QERR_E_NOMEM, "%s: out of memory", fn);
    }
    if (rc != QERR_OK) {
        for (int64_t l = 0; rt && l < L; l++) qerr__layer_rt_free(rt[l]);
        free(rt);
        free(touched);
        return rc;
    }
    for (int64_t l = 0; m->rt && l < L; l++) /* a layer the qmodel names gets its new state */
        if (touched[l]) {
            qerr__layer_rt_free(m->rt[l]);
            m->rt[l] = rt[l];
        }
    free(rt);
    free(touched);
    for (int k = 0; k < n; k++) {
        const char *name = qerr_qmodel_name(q, k);
        const qerr_result *r;
        QERR_TRY(qerr_qmodel_get(q, name, &r));
        int i = qerr__model_find(m, name);
        QERR_TRY(untie(m, i));
        qerr_tensor *t = m->entries[i].t;
        QERR_TRY(qerr_result_dequantize(r, t->data, (size_t)qerr_tensor_numel(t)));
    }
    qerr__clear_error();
    return QERR_OK;
}
