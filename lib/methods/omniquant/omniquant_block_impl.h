/* Hooks and the (cross-layer) loss of the block-wise OmniQuant/CQE trainer,
 * templated on R (see real_def.h); included twice by omniquant_block.c so the
 * float64 gradient checks run the code that trains in float32. The
 * parameters, W(D) and the quantizer run in double in both variants. No
 * include guard on purpose. */

static int TR_(omq_w_fwd)(void *user, int lin, int64_t o, int64_t i, const R *w, R *weff) {
    qerr_omq_block *b = user;
    (void)w; /* the raw weight is b->w0, W(D) is b->wd */
    const double *src = qerr__omq_let_wsrc(b, lin); /* W(D), LET columns applied */
    if (b->wq_override) QERR_TRY(b->wq_override(b->wq_user, lin, src, b->qw));
    else qerr__fq_fwd_d(&b->fq, o, i, b->clip[lin], src, b->qw);
    for (int64_t k = 0; k < o * i; k++) weff[k] = (R)b->qw[k];
    return QERR_OK;
}

static int TR_(omq_w_bwd)(void *user, int lin, int64_t o, int64_t i, const R *w,
                          const R *gweff) {
    qerr_omq_block *b = user;
    (void)w;
    for (int64_t k = 0; k < o * i; k++) b->gw[k] = (double)gweff[k];
    /* STE through the quantizer: qw <- dL/dW(D), clip grads (+=) */
    QERR_TRY(qerr__fq_bwd_d(&b->fq, o, i, b->clip[lin], qerr__omq_let_wsrc(b, lin), b->gw,
                            b->qw, b->o.lwc ? b->gclip[lin] : NULL));
    qerr__omq_let_wgrad(b, lin, b->qw); /* through the LET columns */
    return omq_chain_d(b, lin, b->qw);
}

void TR_(qerr__omq_hooks)(qerr_omq_block *b, TR_(qerr_block_hooks) *hk) {
    memset(hk, 0, sizeof *hk);
    hk->user = b;
    hk->weight_mask = (1u << QERR_LIN_COUNT) - 1;
    hk->weight_fwd = TR_(omq_w_fwd);
    hk->weight_bwd = TR_(omq_w_bwd);
    hk->act_mask = qerr__omq_let_act_mask(b); /* LET / activation quantization */
    hk->act_fwd = TR_(qerr__omq_let_act_fwd);
    hk->act_bwd = TR_(qerr__omq_let_act_bwd);
}

static double TR_(omq_mse)(int64_t n, const R *y, const R *t) {
    double acc = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)y[i] - (double)t[i];
        acc += d * d;
    }
    return acc / (double)n;
}

int TR_(qerr__omq_loss)(qerr_omq_block *b, TR_(qerr_block_cache) *const *caches,
                        const TR_(qerr_block_weights) *w,
                        const TR_(qerr_block_weights) *const *next, int la, const R *x,
                        const R *const *t, R *ybuf, R *gy, double *loss, double *terms) {
    TR_(qerr_block_hooks) hk;
    TR_(qerr__omq_hooks)(b, &hk);
    const int64_t n = caches[0]->rows * b->cfg.hidden;
    QERR_TRY(TR_(qerr__block_forward)(caches[0], w, &hk, x, ybuf));
    double tot = 0;
    for (int k = 0; k <= la; k++) {
        if (k > 0)
            QERR_TRY(TR_(qerr__block_forward)(caches[k], next[k - 1], NULL, ybuf + (k - 1) * n,
                                              ybuf + k * n));
        double e = TR_(omq_mse)(n, ybuf + k * n, t[k]);
        if (terms) terms[k] = e;
        tot += (k ? b->o.lambda : 1.0) * e;
    }
    const R *ta = b->o.aug_loss ? t[la + 1] : NULL; /* aug_loss: F_l^fp(x), weight 1 */
    if (ta) {
        double e = TR_(omq_mse)(n, ybuf, ta);
        if (terms) terms[la + 1] = e;
        tot += e;
    }
    QERR_CHECK(isfinite(tot), QERR_E_NUMERIC, "omniquant block: the loss is %g", tot);
    *loss = tot;
    if (!gy) return QERR_OK;
    /* g_k = dL/dy_k: its own term, plus what flows back from block k+1 */
    for (int k = la; k >= 0; k--) {
        R *g = gy + k * n;
        if (k < la) {
            QERR_TRY(TR_(qerr__block_backward)(caches[k + 1], next[k], NULL, ybuf + k * n,
                                               gy + (k + 1) * n, g, NULL));
        } else {
            memset(g, 0, sizeof(R) * (size_t)n);
        }
        const double c = 2.0 * (k ? b->o.lambda : 1.0) / (double)n;
        const R *y = ybuf + k * n, *tk = t[k];
        for (int64_t i = 0; i < n; i++) g[i] += (R)(c * ((double)y[i] - (double)tk[i]));
        if (k == 0 && ta)
            for (int64_t i = 0; i < n; i++)
                g[i] += (R)(2.0 / (double)n * ((double)y[i] - (double)ta[i]));
    }
    return TR_(qerr__block_backward)(caches[0], w, &hk, x, gy, NULL, NULL);
}
