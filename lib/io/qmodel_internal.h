/* Internal view of qerr_qmodel shared by qmodel.c and container.c (and the
 * container tests and fuzzer, which parse bytes in memory). */
#ifndef QERR_QMODEL_INTERNAL_H
#define QERR_QMODEL_INTERNAL_H

#include "../core/internal.h"

/* Limits the container reader enforces; the in-memory API enforces the same
 * ones so that every qmodel that exists can be saved and read back. */
#define QERR_QMODEL_MAX_TENSORS (1 << 20)
#define QERR_QMODEL_MAX_META 4096
#define QERR_QMODEL_MAX_NAME 4096       /* bytes in a tensor name or meta key */
#define QERR_QMODEL_MAX_VALUE (1 << 20) /* bytes in a meta value */
#define QERR_QMODEL_MAX_PLAN 65536      /* bytes in a plan string */

/* True when s[0..n) is well-formed UTF-8 and holds no NUL byte. */
bool qerr__utf8_ok(const char *s, size_t n);

/* Index of the tensor called `name`, or -1 (sets no error message). */
int qerr__qmodel_find(const qerr_qmodel *q, const char *name);

int qerr__qmodel_meta_count(const qerr_qmodel *q);
/* Borrowed key and value of meta entry `index` (insertion order). */
void qerr__qmodel_meta_at(const qerr_qmodel *q, int index, const char **key, const char **value);

/* The container bytes of q (see docs/formats.md); *data is malloc'ed. */
int qerr__qmodel_serialize(const qerr_qmodel *q, uint8_t **data, size_t *n);
/* Parse container bytes; `label` names the source in messages. Validates
 * everything before allocating; QERR_E_FORMAT / QERR_E_CHECKSUM on bad data. */
int qerr__qmodel_parse(const uint8_t *data, size_t n, const char *label, qerr_qmodel **out);

/* The container one record at a time, byte for byte what
 * qerr__qmodel_serialize writes: the 48-byte header, the metadata record of
 * q (its tensors are ignored), one tensor record. *bytes is malloc'ed. */
void qerr__qmodel_header(uint8_t h[48], uint64_t size, uint64_t ntensors, uint64_t nmeta);
int qerr__qmodel_meta_record(const qerr_qmodel *q, uint8_t **bytes, size_t *n);
int qerr__qmodel_tensor_record(const char *name, const qerr_result *r, uint8_t **bytes,
                               size_t *n);
/* Check and parse the tensor record at data[*pos] (advanced past it). */
int qerr__qmodel_read_tensor(const uint8_t *data, size_t n, size_t *pos, const char *label,
                             char **name, qerr_result **r);

#endif /* QERR_QMODEL_INTERNAL_H */
