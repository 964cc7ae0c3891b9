/* Fake quantizers with straight-through estimator and learnable clipping
 * (LWC/LAC), instantiated in float and double from fakequant_impl.h. */
#include "train.h"

#include <stdlib.h>
#include <string.h>

typedef struct fq_state {
    double mx, mn;       /* raw extremes of the group and their indices */
    int64_t imx, imn;
    double sa, sb;       /* sigmoid(a), sigmoid(b) (1 without clipping) */
    double hi, lo;       /* CLAMP bounds */
    double M, N;         /* extremes after clamping and 0-forcing */
    bool m_dead, n_dead; /* M or N replaced by 0: no gradient */
    bool from_max;       /* SYM: absmax came from the max side */
    bool s_free;         /* scale not floored / capped: it has a gradient */
    double s, z, qlo, qhi, qrange;
} fq_state;

static inline double fq_clampd(double v, double lo, double hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

static inline int64_t fq_group(const qerr_fq_spec *sp, int64_t cols) {
    return sp->group > 0 && sp->group < cols ? sp->group : cols;
}

static inline const double *fq_pair(const qerr_fq_spec *sp, const double *clip, int64_t r,
                                    int64_t k, int64_t ng) {
    if (sp->clip == QERR_FQ_CLIP_NONE || !clip) return NULL;
    return sp->shared ? clip : clip + 2 * (r * ng + k);
}

int qerr__fq_check(const qerr_fq_spec *sp, int64_t cols) {
    QERR_CHECK(sp, QERR_E_INVALID_ARG, "fake quantizer: NULL spec");
    QERR_CHECK(sp->bits >= 2 && sp->bits <= 16, QERR_E_RANGE,
               "fake quantizer: bits=%d is outside [2, 16]", sp->bits);
    QERR_CHECK(sp->mode == QERR_FQ_SYM || sp->mode == QERR_FQ_ASYM || sp->mode == QERR_FQ_ASYM0,
               QERR_E_INVALID_ARG, "fake quantizer: unknown mode %d", sp->mode);
    QERR_CHECK(sp->clip >= QERR_FQ_CLIP_NONE && sp->clip <= QERR_FQ_CLIP_CLAMP,
               QERR_E_INVALID_ARG, "fake quantizer: unknown clip style %d", sp->clip);
    QERR_CHECK(cols >= 1, QERR_E_SHAPE, "fake quantizer: %lld columns", (long long)cols);
    return QERR_OK;
}

int64_t qerr__fq_clip_pairs(const qerr_fq_spec *sp, int64_t rows, int64_t cols) {
    if (sp->clip == QERR_FQ_CLIP_NONE) return 0;
    if (sp->shared) return 1;
    int64_t g = fq_group(sp, cols);
    return rows * ((cols + g - 1) / g);
}

#include "real_def.h"
#include "fakequant_impl.h"
#define TR_DOUBLE
#include "real_def.h"
#include "fakequant_impl.h"
