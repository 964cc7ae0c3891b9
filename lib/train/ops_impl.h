/* Forward/backward of the block's pieces, templated on R (see real_def.h).
 * Included twice by ops.c. No include guard on purpose. */

void TR_(qerr__rmsnorm_fwd)(int64_t rows, int64_t n, const R *x, const R *w, double eps, R *y,
                            R *rinv) {
    for (int64_t r = 0; r < rows; r++) {
        const R *xr = x + r * n;
        R *yr = y + r * n;
        R ss = 0;
        for (int64_t j = 0; j < n; j++) ss += xr[j] * xr[j];
        R ri = (R)1 / sqrt(ss / (R)n + (R)eps);
        rinv[r] = ri;
        for (int64_t j = 0; j < n; j++) yr[j] = w[j] * (xr[j] * ri);
    }
}

void TR_(qerr__rmsnorm_bwd)(int64_t rows, int64_t n, const R *x, const R *w, const R *rinv,
                            const R *gy, R *gx, R *gw) {
    for (int64_t r = 0; r < rows; r++) {
        const R *xr = x + r * n, *gr = gy + r * n;
        R ri = rinv[r];
        if (gw)
            for (int64_t j = 0; j < n; j++) gw[j] += gr[j] * xr[j] * ri;
        if (!gx) continue;
        /* y_j = w_j x_j ri, d ri / d x_k = -ri^3 x_k / n */
        R dot = 0;
        for (int64_t j = 0; j < n; j++) dot += gr[j] * w[j] * xr[j];
        R c = dot * ri * ri * ri / (R)n;
        R *gxr = gx + r * n;
        for (int64_t j = 0; j < n; j++) gxr[j] += gr[j] * w[j] * ri - c * xr[j];
    }
}

void TR_(qerr__linear_fwd)(int64_t rows, int64_t in, int64_t out, const R *x, const R *w, R *y) {
    TR_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)out, (int)in, 1, x, (int)in,
            w, (int)in, 0, y, (int)out);
}

void TR_(qerr__linear_bwd)(int64_t rows, int64_t in, int64_t out, const R *x, const R *w,
                           const R *gy, R *gx, R *gw) {
    if (gx)
        TR_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)in, (int)out, 1, gy,
                (int)out, w, (int)in, 1, gx, (int)in);
    if (gw)
        TR_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)out, (int)in, (int)rows, 1, gy,
                (int)out, x, (int)in, 1, gw, (int)in);
}

void TR_(qerr__rope_table)(int64_t seq, int64_t head_dim, double theta, const qerr_rope *scaled,
                           R *cos_t, R *sin_t) {
    int64_t half = head_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        /* HF: inv_freq = 1 / theta^(arange(0, d, 2).float() / d), in float32 */
        float inv = 1.0f / powf((float)theta, (float)(2 * i) / (float)head_dim);
        if (scaled && scaled->type != QERR_ROPE_DEFAULT)
            inv = (float)qerr__rope_inv_freq(scaled, i, head_dim);
        for (int64_t t = 0; t < seq; t++) {
            float ang = (float)t * inv;
            cos_t[t * half + i] = (R)cosf(ang);
            sin_t[t * half + i] = (R)sinf(ang);
        }
    }
}

void TR_(qerr__rope)(int64_t batch, int64_t seq, int64_t nheads, int64_t head_dim,
                     const R *cos_t, const R *sin_t, R *x, int transpose) {
    int64_t half = head_dim / 2, width = nheads * head_dim;
    R sgn = transpose ? (R)-1 : (R)1;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t t = 0; t < seq; t++) {
            const R *c = cos_t + t * half, *s = sin_t + t * half;
            R *row = x + (b * seq + t) * width;
            for (int64_t h = 0; h < nheads; h++) {
                R *v = row + h * head_dim;
                for (int64_t i = 0; i < half; i++) {
                    R a = v[i], bb = v[i + half], si = sgn * s[i];
                    v[i] = a * c[i] - bb * si;
                    v[i + half] = bb * c[i] + a * si;
                }
            }
        }
}

void TR_(qerr__attention_fwd)(int64_t batch, int64_t seq, int64_t heads, int64_t kv_heads,
                              int64_t head_dim, const R *q, const R *k, const R *v, R *p, R *o) {
    const int64_t T = seq, d = head_dim, rep = heads / kv_heads;
    const int ldq = (int)(heads * d), ldk = (int)(kv_heads * d);
    const R scale = (R)1 / sqrt((R)d);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < heads; h++) {
            const R *qh = q + b * T * ldq + h * d;
            const R *kh = k + b * T * ldk + (h / rep) * d;
            const R *vh = v + b * T * ldk + (h / rep) * d;
            R *P = p + (b * heads + h) * T * T;
            TR_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, (int)d, scale, qh,
                    ldq, kh, ldk, 0, P, (int)T);
            for (int64_t i = 0; i < T; i++) {
                R *pi = P + i * T, mx = pi[0], sum = 0;
                for (int64_t j = 1; j <= i; j++) mx = pi[j] > mx ? pi[j] : mx;
                for (int64_t j = 0; j <= i; j++) sum += (pi[j] = exp(pi[j] - mx));
                for (int64_t j = 0; j <= i; j++) pi[j] /= sum;
                for (int64_t j = i + 1; j < T; j++) pi[j] = 0;
            }
            TR_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)d, (int)T, 1, P,
                    (int)T, vh, ldk, 0, o + b * T * ldq + h * d, ldq);
        }
}

int TR_(qerr__attention_bwd)(int64_t batch, int64_t seq, int64_t heads, int64_t kv_heads,
                             int64_t head_dim, const R *q, const R *k, const R *v, const R *p,
                             const R *go, R *gq, R *gk, R *gv) {
    const int64_t T = seq, d = head_dim, rep = heads / kv_heads;
    const int ldq = (int)(heads * d), ldk = (int)(kv_heads * d);
    const R scale = (R)1 / sqrt((R)d);
    R *gp = qerr__malloc2((size_t)(T * T), sizeof(R));
    QERR_CHECK(gp, QERR_E_NOMEM, "attention backward: out of memory for %lld x %lld scores",
               (long long)T, (long long)T);
    memset(gk, 0, sizeof(R) * (size_t)(batch * T * ldk));
    memset(gv, 0, sizeof(R) * (size_t)(batch * T * ldk));
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < heads; h++) {
            int64_t qoff = b * T * ldq + h * d, koff = b * T * ldk + (h / rep) * d;
            const R *P = p + (b * heads + h) * T * T;
            /* gP = gO V^T; gV += P^T gO */
            TR_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, (int)d, 1, go + qoff,
                    ldq, v + koff, ldk, 0, gp, (int)T);
            TR_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, (int)d, (int)T, 1, P, (int)T,
                    go + qoff, ldq, 1, gv + koff, ldk);
            /* softmax backward: gS = P .* (gP - rowsum(gP .* P)), times the scale */
            for (int64_t i = 0; i < T; i++) {
                const R *pi = P + i * T;
                R *gi = gp + i * T, dot = 0;
                for (int64_t j = 0; j <= i; j++) dot += gi[j] * pi[j];
                for (int64_t j = 0; j <= i; j++) gi[j] = scale * pi[j] * (gi[j] - dot);
                for (int64_t j = i + 1; j < T; j++) gi[j] = 0;
            }
            TR_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)d, (int)T, 1, gp,
                    (int)T, k + koff, ldk, 0, gq + qoff, ldq);
            TR_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, (int)d, (int)T, 1, gp, (int)T,
                    q + qoff, ldq, 1, gk + koff, ldk);
        }
    free(gp);
    return QERR_OK;
}

void TR_(qerr__swiglu_fwd)(int64_t n, const R *g, const R *u, R *m) {
    for (int64_t i = 0; i < n; i++) m[i] = g[i] / ((R)1 + exp(-g[i])) * u[i];
}

void TR_(qerr__swiglu_bwd)(int64_t n, const R *g, const R *u, const R *gm, R *gg, R *gu) {
    for (int64_t i = 0; i < n; i++) {
        R sg = (R)1 / ((R)1 + exp(-g[i]));
        R silu = g[i] * sg;
        gu[i] = gm[i] * silu;
        gg[i] = gm[i] * u[i] * sg * ((R)1 + g[i] * ((R)1 - sg));
    }
}
