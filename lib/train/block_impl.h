/* LLaMA decoder block forward/backward with hooks, templated on R (see
 * real_def.h); included twice by block.c. No include guard on purpose. */

int TR_(qerr__block_cache_create)(const qerr_block_config *cfg, int64_t batch, int64_t seq,
                                  TR_(qerr_block_cache) **out) {
    *out = NULL;
    QERR_TRY(qerr__block_config_check(cfg));
    QERR_CHECK(batch >= 1 && seq >= 1 && batch <= (1 << 20) && seq <= (1 << 20), QERR_E_RANGE,
               "block cache: batch %lld x seq %lld", (long long)batch, (long long)seq);
    const int64_t rows = batch * seq, hd = cfg->head_dim;
    QERR_CHECK(rows * (cfg->inter > cfg->hidden ? cfg->inter : cfg->hidden) <= INT32_MAX,
               QERR_E_RANGE, "block cache: %lld rows is too many for one batch",
               (long long)rows);
    int64_t maxc = 0, maxw = 0, site_total = 0, w_total = 0;
    for (int s = 0; s < QERR_SITE_COUNT; s++) {
        int64_t cc = qerr__block_site_cols(cfg, s);
        maxc = cc > maxc ? cc : maxc;
        site_total += 2 * cc;
    }
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        int64_t o, i;
        qerr__block_linear_shape(cfg, l, &o, &i);
        maxw = o * i > maxw ? o * i : maxw;
        w_total += o * i;
    }
    const int64_t qd = cfg->heads * hd, kvd = cfg->kv_heads * hd;
    /* scratch: GH, GA, GS, GG, GU, GQ, GK, GV, GQI, GKI, GVI, GW (+ GQN, GKN with q/k norms) */
    int64_t scratch = rows * (cfg->hidden + 2 * maxc + 2 * cfg->inter + 2 * qd + 4 * kvd) + maxw;
    /* q/k norms: q, k before them and 1/rms per head row, and their backward scratch */
    const int64_t qkn = cfg->qk_norm ? rows * (qd + kvd + cfg->heads + cfg->kv_heads) : 0;
    if (cfg->qk_norm) scratch += rows * (qd + kvd);
    int64_t ptotal = batch * cfg->heads * seq * seq;
    QERR_CHECK(ptotal / seq / seq == batch * cfg->heads && ptotal <= ((int64_t)1 << 34),
               QERR_E_NOMEM, "block cache: %lld attention probabilities is too many",
               (long long)ptotal);
    int64_t total = seq * hd + w_total + rows * site_total + 2 * rows + ptotal +
                    rows * (cfg->hidden + 2 * cfg->inter) + qkn + scratch;
    QERR_CHECK(total <= ((int64_t)1 << 36), QERR_E_NOMEM, "block cache: %lld values is too many",
               (long long)total);
    TR_(qerr_block_cache) *c = qerr__calloc(1, sizeof *c);
    R *mem = c ? qerr__malloc2((size_t)total, sizeof(R)) : NULL;
    if (!mem) {
        free(c);
        return qerr__fail(QERR_E_NOMEM, "out of memory for a block cache of %lld values",
                          (long long)total);
    }
    memset(mem, 0, sizeof(R) * (size_t)total);
    c->cfg = *cfg;
    c->batch = batch;
    c->seq = seq;
    c->rows = rows;
    R *m = mem;
    c->cos_t = m; m += seq * hd / 2;
    c->sin_t = m; m += seq * hd / 2;
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        int64_t o, i;
        qerr__block_linear_shape(cfg, l, &o, &i);
        c->weff[l] = m; m += o * i;
    }
    for (int s = 0; s < QERR_SITE_COUNT; s++) {
        int64_t cc = qerr__block_site_cols(cfg, s);
        c->site_in[s] = m; m += rows * cc;
        c->site_out[s] = m; m += rows * cc;
    }
    c->r1 = m; m += rows;
    c->r2 = m; m += rows;
    c->p = m; m += ptotal;
    c->h = m; m += rows * cfg->hidden;
    c->g = m; m += rows * cfg->inter;
    c->u = m; m += rows * cfg->inter;
    if (cfg->qk_norm) {
        c->qpre = m; m += rows * qd;
        c->kpre = m; m += rows * kvd;
        c->rq = m; m += rows * cfg->heads;
        c->rk = m; m += rows * cfg->kv_heads;
    }
    c->scratch = m;
    TR_(qerr__rope_table)(seq, hd, cfg->theta, &cfg->rope, c->cos_t, c->sin_t);
    *out = c;
    return QERR_OK;
}

void TR_(qerr__block_cache_free)(TR_(qerr_block_cache) *c) {
    if (!c) return;
    free(c->cos_t); /* the start of the one allocation */
    free(c);
}

static int TR_(site_fwd)(TR_(qerr_block_cache) *c, const TR_(qerr_block_hooks) *hk, int s) {
    if (!hk || !(hk->act_mask & (1u << s))) {
        c->act[s] = c->site_in[s];
        return QERR_OK;
    }
    c->act[s] = c->site_out[s];
    return hk->act_fwd(hk->user, s, c->rows, qerr__block_site_cols(&c->cfg, s), c->site_in[s],
                       c->site_out[s]);
}

/* Gradient at a site's input from the gradient at its output: `gy` itself
 * for an identity site, else written into `buf`. */
static int TR_(site_bwd)(TR_(qerr_block_cache) *c, const TR_(qerr_block_hooks) *hk, int s,
                         R *gy, R *buf, R **gx) {
    if (!hk || !(hk->act_mask & (1u << s))) {
        *gx = gy;
        return QERR_OK;
    }
    *gx = buf;
    return hk->act_bwd(hk->user, s, c->rows, qerr__block_site_cols(&c->cfg, s), c->site_in[s], gy,
                       buf);
}

/* y [rows, out] += bias of linear `lin` when the block has one. */
static void TR_(add_bias)(const TR_(qerr_block_cache) *c, const TR_(qerr_block_weights) *w,
                          int lin, R *y) {
    if (!c->cfg.bias[lin]) return;
    int64_t o, i;
    qerr__block_linear_shape(&c->cfg, lin, &o, &i);
    for (int64_t r = 0; r < c->rows; r++)
        for (int64_t j = 0; j < o; j++) y[r * o + j] += w->b[lin][j];
}

int TR_(qerr__block_forward)(TR_(qerr_block_cache) *c, const TR_(qerr_block_weights) *w,
                             const TR_(qerr_block_hooks) *hk, const R *x, R *y) {
    const qerr_block_config *cfg = &c->cfg;
    const int64_t rows = c->rows, hid = cfg->hidden, ff = cfg->inter;
    const int64_t qd = cfg->heads * cfg->head_dim, kvd = cfg->kv_heads * cfg->head_dim;
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        if (hk && (hk->weight_mask & (1u << l))) {
            int64_t o, i;
            qerr__block_linear_shape(cfg, l, &o, &i);
            QERR_TRY(hk->weight_fwd(hk->user, l, o, i, w->w[l], c->weff[l]));
            c->weight[l] = c->weff[l];
        } else {
            c->weight[l] = w->w[l];
        }
    }
    const R *const *W = c->weight;
    TR_(qerr__rmsnorm_fwd)(rows, hid, x, w->ln1, cfg->eps, c->site_in[QERR_SITE_ATTN_IN], c->r1);
    QERR_TRY(TR_(site_fwd)(c, hk, QERR_SITE_ATTN_IN));
    const R *a1 = c->act[QERR_SITE_ATTN_IN];
    R *qo = cfg->qk_norm ? c->qpre : c->site_in[QERR_SITE_Q];
    R *ko = cfg->qk_norm ? c->kpre : c->site_in[QERR_SITE_K];
    TR_(qerr__linear_fwd)(rows, hid, qd, a1, W[QERR_LIN_Q], qo);
    TR_(qerr__linear_fwd)(rows, hid, kvd, a1, W[QERR_LIN_K], ko);
    TR_(qerr__linear_fwd)(rows, hid, kvd, a1, W[QERR_LIN_V], c->site_in[QERR_SITE_V]);
    TR_(add_bias)(c, w, QERR_LIN_Q, qo);
    TR_(add_bias)(c, w, QERR_LIN_K, ko);
    TR_(add_bias)(c, w, QERR_LIN_V, c->site_in[QERR_SITE_V]);
    if (cfg->qk_norm) { /* Qwen3: RMSNorm of every head of q and k, before RoPE */
        TR_(qerr__rmsnorm_fwd)(rows * cfg->heads, cfg->head_dim, qo, w->qn, cfg->eps,
                               c->site_in[QERR_SITE_Q], c->rq);
        TR_(qerr__rmsnorm_fwd)(rows * cfg->kv_heads, cfg->head_dim, ko, w->kn, cfg->eps,
                               c->site_in[QERR_SITE_K], c->rk);
    }
    TR_(qerr__rope)(c->batch, c->seq, cfg->heads, cfg->head_dim, c->cos_t, c->sin_t,
                    c->site_in[QERR_SITE_Q], 0);
    TR_(qerr__rope)(c->batch, c->seq, cfg->kv_heads, cfg->head_dim, c->cos_t, c->sin_t,
                    c->site_in[QERR_SITE_K], 0);
    QERR_TRY(TR_(site_fwd)(c, hk, QERR_SITE_Q));
    QERR_TRY(TR_(site_fwd)(c, hk, QERR_SITE_K));
    QERR_TRY(TR_(site_fwd)(c, hk, QERR_SITE_V));
    TR_(qerr__attention_fwd)(c->batch, c->seq, cfg->heads, cfg->kv_heads, cfg->head_dim,
                             c->act[QERR_SITE_Q], c->act[QERR_SITE_K], c->act[QERR_SITE_V], c->p,
                             c->site_in[QERR_SITE_O_IN]);
    QERR_TRY(TR_(site_fwd)(c, hk, QERR_SITE_O_IN));
    TR_(qerr__linear_fwd)(rows, qd, hid, c->act[QERR_SITE_O_IN], W[QERR_LIN_O], c->h);
    TR_(add_bias)(c, w, QERR_LIN_O, c->h);
    for (int64_t i = 0; i < rows * hid; i++) c->h[i] += x[i];
    TR_(qerr__rmsnorm_fwd)(rows, hid, c->h, w->ln2, cfg->eps, c->site_in[QERR_SITE_MLP_IN], c->r2);
    QERR_TRY(TR_(site_fwd)(c, hk, QERR_SITE_MLP_IN));
    const R *a3 = c->act[QERR_SITE_MLP_IN];
    TR_(qerr__linear_fwd)(rows, hid, ff, a3, W[QERR_LIN_GATE], c->g);
    TR_(qerr__linear_fwd)(rows, hid, ff, a3, W[QERR_LIN_UP], c->u);
    TR_(add_bias)(c, w, QERR_LIN_GATE, c->g);
    TR_(add_bias)(c, w, QERR_LIN_UP, c->u);
    TR_(qerr__swiglu_fwd)(rows * ff, c->g, c->u, c->site_in[QERR_SITE_DOWN_IN]);
    QERR_TRY(TR_(site_fwd)(c, hk, QERR_SITE_DOWN_IN));
    TR_(qerr__linear_fwd)(rows, ff, hid, c->act[QERR_SITE_DOWN_IN], W[QERR_LIN_DOWN], y);
    TR_(add_bias)(c, w, QERR_LIN_DOWN, y);
    for (int64_t i = 0; i < rows * hid; i++) y[i] += c->h[i];
    return QERR_OK;
}

/* gx (+=) from gy through linear `lin` whose input was `in_act`; the weight
 * gradient goes to the hook or to grads (when either wants it). */
static int TR_(lin_back)(TR_(qerr_block_cache) *c, const TR_(qerr_block_weights) *w,
                         const TR_(qerr_block_hooks) *hk, const TR_(qerr_block_grads) *gr, int lin,
                         const R *in_act, const R *gy, R *gx, R *gw_buf) {
    int64_t o, i;
    qerr__block_linear_shape(&c->cfg, lin, &o, &i);
    bool hooked = hk && (hk->weight_mask & (1u << lin));
    R *gw = NULL;
    if (hooked) {
        gw = gw_buf;
        memset(gw, 0, sizeof(R) * (size_t)(o * i));
    } else if (gr) {
        gw = gr->w[lin];
    }
    TR_(qerr__linear_bwd)(c->rows, i, o, in_act, c->weight[lin], gy, gx, gw);
    if (hooked) return hk->weight_bwd(hk->user, lin, o, i, w->w[lin], gw);
    return QERR_OK;
}

int TR_(qerr__block_backward)(TR_(qerr_block_cache) *c, const TR_(qerr_block_weights) *w,
                              const TR_(qerr_block_hooks) *hk, const R *x, const R *gy, R *gx,
                              const TR_(qerr_block_grads) *gr) {
    const qerr_block_config *cfg = &c->cfg;
    const int64_t rows = c->rows, hid = cfg->hidden, ff = cfg->inter;
    const int64_t qd = cfg->heads * cfg->head_dim, kvd = cfg->kv_heads * cfg->head_dim;
    int64_t maxc = 0;
    for (int s = 0; s < QERR_SITE_COUNT; s++) {
        int64_t cc = qerr__block_site_cols(cfg, s);
        maxc = cc > maxc ? cc : maxc;
    }
    R *GH = c->scratch, *GA = GH + rows * hid, *GS = GA + rows * maxc, *GG = GS + rows * maxc;
    R *GU = GG + rows * ff, *GQ = GU + rows * ff, *GK = GQ + rows * qd, *GV = GK + rows * kvd;
    R *GQI = GV + rows * kvd, *GKI = GQI + rows * qd, *GVI = GKI + rows * kvd;
    R *GW = GVI + rows * kvd;
    int64_t maxw = 0;
    for (int l = 0; l < QERR_LIN_COUNT; l++) {
        int64_t o, i;
        qerr__block_linear_shape(cfg, l, &o, &i);
        maxw = o * i > maxw ? o * i : maxw;
    }
    R *GQN = GW + maxw, *GKN = GQN + rows * qd; /* cfg->qk_norm only */
    R *t, *tk, *tv;
    memcpy(GH, gy, sizeof(R) * (size_t)(rows * hid));
    /* MLP */
    memset(GA, 0, sizeof(R) * (size_t)(rows * ff));
    QERR_TRY(TR_(lin_back)(c, w, hk, gr, QERR_LIN_DOWN, c->act[QERR_SITE_DOWN_IN], gy, GA, GW));
    QERR_TRY(TR_(site_bwd)(c, hk, QERR_SITE_DOWN_IN, GA, GS, &t));
    TR_(qerr__swiglu_bwd)(rows * ff, c->g, c->u, t, GG, GU);
    memset(GA, 0, sizeof(R) * (size_t)(rows * hid));
    QERR_TRY(TR_(lin_back)(c, w, hk, gr, QERR_LIN_GATE, c->act[QERR_SITE_MLP_IN], GG, GA, GW));
    QERR_TRY(TR_(lin_back)(c, w, hk, gr, QERR_LIN_UP, c->act[QERR_SITE_MLP_IN], GU, GA, GW));
    QERR_TRY(TR_(site_bwd)(c, hk, QERR_SITE_MLP_IN, GA, GS, &t));
    TR_(qerr__rmsnorm_bwd)(rows, hid, c->h, w->ln2, c->r2, t, GH, gr ? gr->ln2 : NULL);
    /* attention */
    memset(GA, 0, sizeof(R) * (size_t)(rows * qd));
    QERR_TRY(TR_(lin_back)(c, w, hk, gr, QERR_LIN_O, c->act[QERR_SITE_O_IN], GH, GA, GW));
    QERR_TRY(TR_(site_bwd)(c, hk, QERR_SITE_O_IN, GA, GS, &t));
    QERR_TRY(TR_(qerr__attention_bwd)(c->batch, c->seq, cfg->heads, cfg->kv_heads, cfg->head_dim,
                                      c->act[QERR_SITE_Q], c->act[QERR_SITE_K],
                                      c->act[QERR_SITE_V], c->p, t, GQ, GK, GV));
    QERR_TRY(TR_(site_bwd)(c, hk, QERR_SITE_Q, GQ, GQI, &t));
    QERR_TRY(TR_(site_bwd)(c, hk, QERR_SITE_K, GK, GKI, &tk));
    QERR_TRY(TR_(site_bwd)(c, hk, QERR_SITE_V, GV, GVI, &tv));
    TR_(qerr__rope)(c->batch, c->seq, cfg->heads, cfg->head_dim, c->cos_t, c->sin_t, t, 1);
    TR_(qerr__rope)(c->batch, c->seq, cfg->kv_heads, cfg->head_dim, c->cos_t, c->sin_t, tk, 1);
    if (cfg->qk_norm) { /* back through the per-head norms to the projections' outputs */
        memset(GQN, 0, sizeof(R) * (size_t)(rows * (qd + kvd)));
        TR_(qerr__rmsnorm_bwd)(rows * cfg->heads, cfg->head_dim, c->qpre, w->qn, c->rq, t, GQN,
                               NULL);
        TR_(qerr__rmsnorm_bwd)(rows * cfg->kv_heads, cfg->head_dim, c->kpre, w->kn, c->rk, tk,
                               GKN, NULL);
        t = GQN;
        tk = GKN;
    }
    memset(GA, 0, sizeof(R) * (size_t)(rows * hid));
    const R *a1 = c->act[QERR_SITE_ATTN_IN];
    QERR_TRY(TR_(lin_back)(c, w, hk, gr, QERR_LIN_Q, a1, t, GA, GW));
    QERR_TRY(TR_(lin_back)(c, w, hk, gr, QERR_LIN_K, a1, tk, GA, GW));
    QERR_TRY(TR_(lin_back)(c, w, hk, gr, QERR_LIN_V, a1, tv, GA, GW));
    QERR_TRY(TR_(site_bwd)(c, hk, QERR_SITE_ATTN_IN, GA, GS, &t));
    if (gx) memcpy(gx, GH, sizeof(R) * (size_t)(rows * hid));
    TR_(qerr__rmsnorm_bwd)(rows, hid, x, w->ln1, c->r1, t, gx, gr ? gr->ln1 : NULL);
    return QERR_OK;
}
