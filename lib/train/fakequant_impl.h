/* STE fake quantizers, templated on R (see real_def.h); included twice by
 * fakequant.c. Per-group scalars are computed in double in both variants.
 * No include guard on purpose. */

/* Forward of one group x[0..m): fills the state the backward needs. */
static void TR_(fq_group_state)(const qerr_fq_spec *sp, const R *x, int64_t m, const double *ab,
                                fq_state *st) {
    int64_t imx = 0, imn = 0;
    for (int64_t i = 1; i < m; i++) {
        if (x[i] > x[imx]) imx = i;
        if (x[i] < x[imn]) imn = i;
    }
    st->imx = imx;
    st->imn = imn;
    st->mx = (double)x[imx];
    st->mn = (double)x[imn];
    st->sa = ab ? qerr__sigmoid(ab[0]) : 1.0;
    st->sb = ab ? qerr__sigmoid(ab[1]) : 1.0;
    double mx2 = st->mx, mn2 = st->mn;
    if (sp->clip == QERR_FQ_CLIP_CLAMP) {
        st->hi = st->sa * st->mx;
        st->lo = st->sb * st->mn;
        /* extremes of the clamped values: the bound if anything was clamped */
        mx2 = fq_clampd((double)x[imx], st->lo, st->hi);
        mn2 = fq_clampd((double)x[imn], st->lo, st->hi);
    }
    double M = mx2, N = mn2;
    st->m_dead = st->n_dead = false;
    if (sp->mode != QERR_FQ_ASYM) { /* range must hold 0 */
        if (M < 0) { M = 0; st->m_dead = true; }
        if (N > 0) { N = 0; st->n_dead = true; }
    }
    st->M = M;
    st->N = N;
    double xmax = M, xmin = N;
    if (sp->clip == QERR_FQ_CLIP_SCALE) {
        xmax = st->sa * M;
        xmin = st->sb * N;
    }
    st->s_free = true;
    if (sp->mode == QERR_FQ_SYM) {
        double qmax = (double)((1 << (sp->bits - 1)) - 1);
        st->from_max = xmax >= -xmin;
        double am = st->from_max ? xmax : -xmin;
        if (am < 1e-5) { am = 1e-5; st->s_free = false; }
        st->s = am / qmax;
        st->z = 0;
        st->qlo = -qmax - 1;
        st->qhi = qmax;
        st->qrange = qmax;
    } else {
        double maxq = (double)((1 << sp->bits) - 1);
        if (sp->mode == QERR_FQ_ASYM0 && xmax == 0 && xmin == 0) {
            xmax = 1;
            xmin = -1;
            st->s_free = false;
        }
        double s = (xmax - xmin) / maxq;
        if (s < 1e-5) { s = 1e-5; st->s_free = false; }
        if (s > 1e4) { s = 1e4; st->s_free = false; }
        st->s = s;
        st->z = fq_clampd(nearbyint(-xmin / s), -1e4, 1e4);
        st->qlo = 0;
        st->qhi = maxq;
        st->qrange = maxq;
    }
}

/* The value the quantizer sees (after the CLAMP-style clip). */
static inline double TR_(fq_pre)(const qerr_fq_spec *sp, const fq_state *st, R x) {
    return sp->clip == QERR_FQ_CLIP_CLAMP ? fq_clampd((double)x, st->lo, st->hi) : (double)x;
}

void TR_(qerr__fq_fwd)(const qerr_fq_spec *sp, int64_t rows, int64_t cols, const double *clip,
                       const R *x, R *y) {
    int64_t g = fq_group(sp, cols), ng = (cols + g - 1) / g;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < ng; k++) {
            int64_t c0 = k * g, m = c0 + g < cols ? g : cols - c0;
            const R *xg = x + r * cols + c0;
            R *yg = y + r * cols + c0;
            fq_state st;
            TR_(fq_group_state)(sp, xg, m, fq_pair(sp, clip, r, k, ng), &st);
            for (int64_t i = 0; i < m; i++) {
                double u = TR_(fq_pre)(sp, &st, xg[i]) / st.s;
                double c = fq_clampd(nearbyint(u) + st.z, st.qlo, st.qhi);
                yg[i] = (R)(st.s * (c - st.z));
            }
        }
}

int TR_(qerr__fq_bwd)(const qerr_fq_spec *sp, int64_t rows, int64_t cols, const double *clip,
                      const R *x, const R *gy, R *gx, double *gclip) {
    int64_t g = fq_group(sp, cols), ng = (cols + g - 1) / g;
    double *gl = qerr__malloc2((size_t)g, sizeof(double));
    QERR_CHECK(gl, QERR_E_NOMEM, "fake-quant backward: out of memory");
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < ng; k++) {
            int64_t c0 = k * g, m = c0 + g < cols ? g : cols - c0;
            const R *xg = x + r * cols + c0, *gg = gy + r * cols + c0;
            const double *ab = fq_pair(sp, clip, r, k, ng);
            double *gab = ab && gclip ? gclip + (ab - clip) : NULL;
            fq_state st;
            TR_(fq_group_state)(sp, xg, m, ab, &st);
            /* element pass: STE on round, clamped codes feed only the scale */
            double gs = 0;
            for (int64_t i = 0; i < m; i++) {
                double u = TR_(fq_pre)(sp, &st, xg[i]) / st.s, ru = nearbyint(u);
                double q = ru + st.z, gi = (double)gg[i];
                if (q >= st.qlo && q <= st.qhi) {
                    gs += gi * (ru - u);
                    gl[i] = gi;
                } else {
                    gs += gi * ((q < st.qlo ? st.qlo : st.qhi) - st.z);
                    gl[i] = 0;
                }
            }
            /* scale -> range ends */
            double gxmax = 0, gxmin = 0;
            if (st.s_free) {
                double gr = gs / st.qrange;
                if (sp->mode == QERR_FQ_SYM) {
                    if (st.from_max) gxmax = gr;
                    else gxmin = -gr;
                } else {
                    gxmax = gr;
                    gxmin = -gr;
                }
            }
            /* range ends -> clip parameters and the extremes */
            double gM = gxmax, gN = gxmin;
            if (sp->clip == QERR_FQ_CLIP_SCALE) {
                if (gab) {
                    gab[0] += gxmax * st.M * st.sa * (1 - st.sa);
                    gab[1] += gxmin * st.N * st.sb * (1 - st.sb);
                }
                gM = gxmax * st.sa;
                gN = gxmin * st.sb;
            }
            /* the extremes of the (clamped) values sit at the raw arg-max /
             * arg-min elements */
            if (!st.m_dead) gl[st.imx] += gM;
            if (!st.n_dead) gl[st.imn] += gN;
            if (sp->clip == QERR_FQ_CLIP_CLAMP) {
                /* torch.clamp: elements outside [lo, hi] feed the bound */
                double ghi = 0, glo = 0;
                for (int64_t i = 0; i < m; i++) {
                    double xi = (double)xg[i];
                    if (xi > st.hi) { ghi += gl[i]; gl[i] = 0; }
                    else if (xi < st.lo) { glo += gl[i]; gl[i] = 0; }
                }
                if (gab) {
                    gab[0] += ghi * st.mx * st.sa * (1 - st.sa);
                    gab[1] += glo * st.mn * st.sb * (1 - st.sb);
                }
                gl[st.imx] += ghi * st.sa;
                gl[st.imn] += glo * st.sb;
            }
            if (gx)
                for (int64_t i = 0; i < m; i++) gx[r * cols + c0 + i] = (R)gl[i];
        }
    free(gl);
    return QERR_OK;
}
