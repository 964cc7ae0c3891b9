/* Rotary position embedding frequencies of the rope types libqerr computes
 * exactly as Hugging Face transformers does: "default" (theta^(-2i/d)),
 * "linear" (position interpolation: every frequency divided by factor) and
 * "llama3" (Llama 3.1: low frequencies divided by factor, high ones kept, a
 * smooth ramp between). None of them scales the attention. */
#include "model.h"

#include <math.h>

double qerr__rope_inv_freq(const qerr_rope *r, int64_t i, int64_t head_dim) {
    const double inv = 1.0 / pow(r->theta, (double)(2 * i) / (double)head_dim);
    if (r->type == QERR_ROPE_LINEAR) return inv / r->factor;
    if (r->type != QERR_ROPE_LLAMA3) return inv;
    const double wavelen = 2.0 * 3.14159265358979323846 / inv;
    const double low_wavelen = r->original_max / r->low_freq_factor;
    const double high_wavelen = r->original_max / r->high_freq_factor;
    if (wavelen > low_wavelen) return inv / r->factor; /* low frequency: interpolated */
    if (wavelen < high_wavelen) return inv;            /* high frequency: kept */
    const double smooth = (r->original_max / wavelen - r->low_freq_factor) /
                          (r->high_freq_factor - r->low_freq_factor);
    return (1.0 - smooth) * inv / r->factor + smooth * inv;
}
