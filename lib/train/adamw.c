/* AdamW exactly as torch.optim.AdamW (decoupled weight decay, bias-corrected
 * moments) with per-group learning rates, and the cosine annealing schedule
 * of torch's CosineAnnealingLR. */
#include "train.h"

#include <stdlib.h>
#include <string.h>

int qerr__adamw_init(qerr_adamw *a, int64_t n) {
    memset(a, 0, sizeof *a);
    QERR_CHECK(n >= 0 && n <= ((int64_t)1 << 34), QERR_E_RANGE, "AdamW over %lld parameters",
               (long long)n);
    a->n = n;
    a->beta1 = 0.9;
    a->beta2 = 0.999;
    a->eps = 1e-8;
    a->m = qerr__calloc((size_t)(n ? n : 1), sizeof(double));
    a->v = qerr__calloc((size_t)(n ? n : 1), sizeof(double));
    if (!a->m || !a->v) {
        qerr__adamw_free(a);
        return qerr__fail(QERR_E_NOMEM, "out of memory for AdamW state (%lld parameters)",
                          (long long)n);
    }
    return QERR_OK;
}

void qerr__adamw_free(qerr_adamw *a) {
    if (!a) return;
    free(a->m);
    free(a->v);
    memset(a, 0, sizeof *a);
}

void qerr__adamw_next(qerr_adamw *a) { a->t++; }

void qerr__adamw_update(qerr_adamw *a, int64_t off, int64_t count, double *param,
                        const double *grad, double lr, double wd) {
    const double bc1 = 1.0 - pow(a->beta1, (double)a->t);
    const double bc2 = 1.0 - pow(a->beta2, (double)a->t);
    for (int64_t i = 0; i < count; i++) {
        double *m = a->m + off + i, *v = a->v + off + i, g = grad[i];
        param[i] *= 1.0 - lr * wd;
        *m = a->beta1 * *m + (1.0 - a->beta1) * g;
        *v = a->beta2 * *v + (1.0 - a->beta2) * g * g;
        param[i] -= (lr / bc1) * *m / (sqrt(*v) / sqrt(bc2) + a->eps);
    }
}

double qerr__cosine_lr(double base, int64_t step, int64_t total, double floor_ratio) {
    if (total <= 0) return base;
    if (step > total) step = total;
    double lo = base * floor_ratio;
    return lo + (base - lo) * 0.5 * (1.0 + cos(3.141592653589793 * (double)step / (double)total));
}
