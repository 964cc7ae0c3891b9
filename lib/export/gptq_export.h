/* Internal pieces of qerr_export_gptq (lib/export/gptq_*.c). Never
 * installed. */
#ifndef QERR_EXPORT_GPTQ_EXPORT_H
#define QERR_EXPORT_GPTQ_EXPORT_H

#include "../llama/model.h"
#include "../io/st_write.h"

/* What one GPTQ checkpoint holds: the settings every quantized layer shares
 * (a GPTQ config has one bits value and one group size). */
typedef struct qerr_gptq_plan {
    int bits;
    int64_t group_size; /* > 0, or -1 for one group per row */
    bool desc_act;      /* some layer's g_idx is not the contiguous map */
    bool sym;           /* every zero point is 2^(bits-1) */
    bool lm_head;       /* lm_head is quantized */
    bool untie;         /* lm_head is quantized but tied to the embedding */
    bool v2;            /* checkpoint_format "gptq_v2" */
    /* scales float16 rounds (the checkpoint then differs from the results):
     * how many, and the first one's tensor (a qmodel name), row and group */
    int64_t inexact;
    const char *inexact_name;
    int64_t inexact_row, inexact_group;
} qerr_gptq_plan;

/* Check that q can be written as a GPTQ checkpoint of m and derive the
 * settings; every refusal names the tensor. */
int qerr__gptq_plan(const qerr_model *m, const qerr_qmodel *q, bool v2, qerr_gptq_plan *out);

/* The tensors of model.safetensors, sorted by name. */
typedef struct qerr_gptq_tensors {
    int n;
    qerr_st_out *out;   /* what the writer needs */
    struct qerr_gptq_item *items; /* how to produce each one */
    const qerr_gptq_plan *plan;
} qerr_gptq_tensors;

int qerr__gptq_tensors(const qerr_model *m, const qerr_qmodel *q, const qerr_gptq_plan *plan,
                       qerr_gptq_tensors *out);
void qerr__gptq_tensors_free(qerr_gptq_tensors *t);
/* qerr_st_fill_fn over a qerr_gptq_tensors. */
int qerr__gptq_fill(void *user, int index, uint8_t *dst, size_t nbytes);

#endif /* QERR_EXPORT_GPTQ_EXPORT_H */
