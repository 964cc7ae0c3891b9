/* The block engine's view of a loaded model's decoder layer. */
#include "train.h"

void qerr__block_config_from_model(const qerr_model_config *m, qerr_block_config *b) {
    b->hidden = m->hidden;
    b->inter = m->inter;
    b->heads = m->heads;
    b->kv_heads = m->kv_heads;
    b->head_dim = m->head_dim;
    b->eps = m->rms_eps;
    b->theta = m->rope.theta;
    b->rope = m->rope;
    for (int l = 0; l < QERR_LIN_COUNT; l++) b->bias[l] = m->bias[l];
    b->qk_norm = m->qk_norm;
}

void qerr__block_weights_from_layer(const qerr_layer_weights *lw, qerr_block_weights_f *w) {
    w->w[QERR_LIN_Q] = lw->q;
    w->w[QERR_LIN_K] = lw->k;
    w->w[QERR_LIN_V] = lw->v;
    w->w[QERR_LIN_O] = lw->o;
    w->w[QERR_LIN_GATE] = lw->gate;
    w->w[QERR_LIN_UP] = lw->up;
    w->w[QERR_LIN_DOWN] = lw->down;
    w->ln1 = lw->attn_norm;
    w->ln2 = lw->mlp_norm;
    for (int l = 0; l < QERR_LIN_COUNT; l++) w->b[l] = lw->bias[l];
    w->qn = lw->q_norm;
    w->kn = lw->k_norm;
}

int qerr__block_cache_fit_f(const qerr_block_config *cfg, int64_t batch, int64_t seq,
                            qerr_block_cache_f **cache) {
    if (*cache && (*cache)->batch == batch && (*cache)->seq == seq) return QERR_OK;
    qerr__block_cache_free_f(*cache);
    *cache = NULL;
    return qerr__block_cache_create_f(cfg, batch, seq, cache);
}
