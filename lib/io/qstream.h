/* The .qerr container written while the pipeline runs: each finished unit
 * (a decoder layer, then lm_head) is appended to PATH.partial and recorded in
 * PATH.partial.state; the header is written and the file renamed to PATH
 * at the end. After a crash, --resume reopens the partial file at the last
 * recorded unit and hands the stored results back for replay. The finished
 * file is byte for byte what qerr_qmodel_save writes for the same tensors. */
#ifndef QERR_QSTREAM_H
#define QERR_QSTREAM_H

#include "qmodel_internal.h"

typedef struct qerr_qstream qerr_qstream;

/* Start writing `path` with the metadata of `meta` (its tensors are
 * ignored); `key` fingerprints everything the output depends on. With
 * resume and a matching PATH.partial.state, continue after its last unit
 * (*units_done = how many); with a state of another key, QERR_E_INVALID_ARG;
 * with none, start afresh. */
int qerr__qstream_open(qerr_qstream **out, const qerr_ctx *ctx, const char *path,
                       const qerr_qmodel *meta, uint32_t key, bool resume, int64_t *units_done);
/* The results stored for the next already-finished unit, in order (*out gets
 * a qmodel of its tensors; empty when the unit stored none). */
int qerr__qstream_replay(qerr_qstream *s, int64_t unit, int64_t layers, qerr_qmodel **out);
/* Append every tensor of `q` (unit `unit` just finished) and record it. */
int qerr__qstream_unit_done(qerr_qstream *s, const qerr_qmodel *q, int64_t unit);
/* Write the header and move the file to its final name. */
int qerr__qstream_finish(qerr_qstream *s);
/* Release; a stream not finished leaves its partial file for --resume. */
void qerr__qstream_close(qerr_qstream *s);

#endif /* QERR_QSTREAM_H */
