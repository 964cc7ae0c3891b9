/* Activation hooks of the block-wise OmniQuant trainer (LET + per-token
 * activation quantization), templated on R (see real_def.h); included twice
 * by omniquant_let.c so the float64 gradient checks run the code that trains
 * in float32. No include guard on purpose. */

/* z (=) x / s per column (x itself where the site has no LET pair). */
static void TR_(let_divide)(const qerr_omq_block *b, int p, int64_t rows, int64_t cols,
                            const R *x, R *z) {
    if (p < 0 || !b->let_s[p]) {
        if (z != x) memcpy(z, x, sizeof(R) * (size_t)(rows * cols));
        return;
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            z[r * cols + j] = (R)((double)x[r * cols + j] / let_col(b, p, j));
}

int TR_(qerr__omq_let_act_fwd)(void *user, int site, int64_t rows, int64_t cols, const R *x,
                               R *y) {
    qerr_omq_block *b = user;
    const int p = let_site_pair(site);
    if (!b->act_q) {
        TR_(let_divide)(b, p, rows, cols, x, y);
        return QERR_OK;
    }
    R *z = let_scratch(b, rows * cols * (int64_t)sizeof(R));
    QERR_CHECK(z, QERR_E_NOMEM, "omniquant let: out of memory for %lld activations",
               (long long)(rows * cols));
    TR_(let_divide)(b, p, rows, cols, x, z);
#ifdef TR_DOUBLE
    if (b->aq_override) return b->aq_override(b->aq_user, site, rows, cols, z, y);
#endif
    TR_(qerr__fq_fwd)(&b->aspec, rows, cols, LET_NO_CLIP, z, y);
    return QERR_OK;
}

int TR_(qerr__omq_let_act_bwd)(void *user, int site, int64_t rows, int64_t cols, const R *x,
                               const R *gy, R *gx) {
    qerr_omq_block *b = user;
    const int p = let_site_pair(site);
    const bool scaled = p >= 0 && b->let_s[p];
    const R *gz = gy;
    if (b->act_q) { /* STE through the quantizer, at z = x / s; gz into gx */
        R *z = let_scratch(b, rows * cols * (int64_t)sizeof(R));
        QERR_CHECK(z, QERR_E_NOMEM, "omniquant let: out of memory for %lld activations",
                   (long long)(rows * cols));
        TR_(let_divide)(b, p, rows, cols, x, z);
        QERR_TRY(TR_(qerr__fq_bwd)(&b->aspec, rows, cols, LET_NO_CLIP, z, gy, gx, NULL));
        gz = gx;
    }
    if (!scaled) {
        if (gz != gx) memcpy(gx, gz, sizeof(R) * (size_t)(rows * cols));
        return QERR_OK;
    }
    /* z = x / s: dz/dx = 1/s, dz/ds = -x / s^2 */
    double *g = b->let_g[p];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) {
            const double sj = let_col(b, p, j), gzj = (double)gz[r * cols + j];
            g[let_idx(b, p, j)] -= gzj * (double)x[r * cols + j] / (sj * sj);
            gx[r * cols + j] = (R)(gzj / sj);
        }
    return QERR_OK;
}
