/* Backward of every piece of the training engine's block (linear, RMSNorm,
 * RoPE, causal GQA attention with softmax, SwiGLU) against central finite
 * differences in float64. Loss L = sum(out .* R) for a fixed random R. */
#include "testutil.h"

#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double *rnd(int64_t n, uint64_t seed) {
    float *f = malloc(sizeof(float) * (size_t)n);
    double *d = malloc(sizeof(double) * (size_t)n);
    assert_non_null(f);
    assert_non_null(d);
    tu_random(f, n, seed);
    for (int64_t i = 0; i < n; i++) d[i] = f[i];
    free(f);
    return d;
}

static double dot(const double *a, const double *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

typedef double (*loss_fn)(void *ctx);

/* ---- linear --------------------------------------------------------------- */
typedef struct { int64_t rows, in, out; double *x, *w, *r, *y; } lin_ctx;
static double lin_loss(void *p) {
    lin_ctx *c = p;
    qerr__linear_fwd_d(c->rows, c->in, c->out, c->x, c->w, c->y);
    return dot(c->y, c->r, c->rows * c->out);
}
static void linear_grad(void **state) {
    (void)state;
    lin_ctx c = {3, 5, 4, rnd(15, 1), rnd(20, 2), rnd(12, 3), rnd(12, 4)};
    double *gx = calloc(15, sizeof(double)), *gw = calloc(20, sizeof(double));
    qerr__linear_bwd_d(c.rows, c.in, c.out, c.x, c.w, c.r, gx, gw);
    double ex = tu_fd_error(lin_loss, &c, c.x, 15, gx), ew = tu_fd_error(lin_loss, &c, c.w, 20, gw);
    print_message("linear: gx %.2e gw %.2e\n", ex, ew);
    assert_true(ex < 1e-6 && ew < 1e-6);
    free(c.x); free(c.w); free(c.r); free(c.y); free(gx); free(gw);
}

/* ---- RMSNorm -------------------------------------------------------------- */
typedef struct { int64_t rows, n; double *x, *w, *r, *y, *ri; } rms_ctx;
static double rms_loss(void *p) {
    rms_ctx *c = p;
    qerr__rmsnorm_fwd_d(c->rows, c->n, c->x, c->w, 1e-5, c->y, c->ri);
    return dot(c->y, c->r, c->rows * c->n);
}
static void rmsnorm_grad(void **state) {
    (void)state;
    rms_ctx c = {4, 6, rnd(24, 5), rnd(6, 6), rnd(24, 7), rnd(24, 8), rnd(4, 9)};
    double *gx = calloc(24, sizeof(double)), *gw = calloc(6, sizeof(double));
    rms_loss(&c);
    qerr__rmsnorm_bwd_d(c.rows, c.n, c.x, c.w, c.ri, c.r, gx, gw);
    double ex = tu_fd_error(rms_loss, &c, c.x, 24, gx), ew = tu_fd_error(rms_loss, &c, c.w, 6, gw);
    print_message("rmsnorm: gx %.2e gw %.2e\n", ex, ew);
    assert_true(ex < 1e-6 && ew < 1e-6);
    free(c.x); free(c.w); free(c.r); free(c.y); free(c.ri); free(gx); free(gw);
}

/* ---- RoPE ----------------------------------------------------------------- */
typedef struct { int64_t b, t, h, d; double *x, *r, *y, *cs, *sn; } rope_ctx;
static double rope_loss(void *p) {
    rope_ctx *c = p;
    int64_t n = c->b * c->t * c->h * c->d;
    memcpy(c->y, c->x, sizeof(double) * (size_t)n);
    qerr__rope_d(c->b, c->t, c->h, c->d, c->cs, c->sn, c->y, 0);
    return dot(c->y, c->r, n);
}
static void rope_grad(void **state) {
    (void)state;
    rope_ctx c = {2, 5, 3, 6, rnd(180, 10), rnd(180, 11), rnd(180, 12), rnd(15, 0), rnd(15, 0)};
    qerr__rope_table_d(5, 6, 10000.0, NULL, c.cs, c.sn);
    /* position 0 is the identity; the rotation preserves norms */
    double *g = malloc(sizeof(double) * 180);
    memcpy(g, c.r, sizeof(double) * 180);
    rope_loss(&c);
    for (int i = 0; i < 6; i++) assert_true(c.y[i] == c.x[i]);
    double n0 = dot(c.x + 90, c.x + 90, 18), n1 = dot(c.y + 90, c.y + 90, 18);
    assert_true(fabs(n0 - n1) < 1e-12 * n0);
    qerr__rope_d(2, 5, 3, 6, c.cs, c.sn, g, 1);
    double e = tu_fd_error(rope_loss, &c, c.x, 180, g);
    print_message("rope: gx %.2e\n", e);
    assert_true(e < 1e-6);
    free(c.x); free(c.r); free(c.y); free(c.cs); free(c.sn); free(g);
}

/* ---- attention ------------------------------------------------------------ */
typedef struct { int64_t b, t, h, kv, d; double *q, *k, *v, *p, *o, *r; } att_ctx;
static double att_loss(void *p) {
    att_ctx *c = p;
    qerr__attention_fwd_d(c->b, c->t, c->h, c->kv, c->d, c->q, c->k, c->v, c->p, c->o);
    return dot(c->o, c->r, c->b * c->t * c->h * c->d);
}
static void attention_grad(void **state) {
    (void)state;
    const int64_t B = 2, T = 5, H = 4, KV = 2, D = 4, nq = B * T * H * D, nk = B * T * KV * D;
    att_ctx c = {B, T, H, KV, D, rnd(nq, 13), rnd(nk, 14), rnd(nk, 15),
                 rnd(B * H * T * T, 0), rnd(nq, 0), rnd(nq, 16)};
    for (int64_t i = 0; i < nq; i++) c.q[i] *= 3; /* peaky softmax */
    att_loss(&c);
    /* causal: row 0 attends only to itself; every row sums to 1 */
    for (int64_t bh = 0; bh < B * H; bh++)
        for (int64_t i = 0; i < T; i++) {
            double s = 0;
            for (int64_t j = 0; j < T; j++) {
                s += c.p[(bh * T + i) * T + j];
                if (j > i) assert_true(c.p[(bh * T + i) * T + j] == 0);
            }
            assert_true(fabs(s - 1) < 1e-12);
        }
    /* head 1 (kv head 0) at token 0 outputs v of kv head 0 at token 0 */
    for (int64_t j = 0; j < D; j++) assert_true(fabs(c.o[1 * D + j] - c.v[j]) < 1e-12);
    double *gq = malloc(sizeof(double) * (size_t)nq), *gk = malloc(sizeof(double) * (size_t)nk),
           *gv = malloc(sizeof(double) * (size_t)nk);
    assert_int_equal(qerr__attention_bwd_d(B, T, H, KV, D, c.q, c.k, c.v, c.p, c.r, gq, gk, gv),
                     QERR_OK);
    double eq = tu_fd_error(att_loss, &c, c.q, nq, gq), ek = tu_fd_error(att_loss, &c, c.k, nk, gk),
           ev = tu_fd_error(att_loss, &c, c.v, nk, gv);
    print_message("attention: gq %.2e gk %.2e gv %.2e\n", eq, ek, ev);
    assert_true(eq < 1e-6 && ek < 1e-6 && ev < 1e-6);
    free(c.q); free(c.k); free(c.v); free(c.p); free(c.o); free(c.r); free(gq); free(gk); free(gv);
}

/* ---- SwiGLU --------------------------------------------------------------- */
typedef struct { int64_t n; double *g, *u, *m, *r; } sw_ctx;
static double sw_loss(void *p) {
    sw_ctx *c = p;
    qerr__swiglu_fwd_d(c->n, c->g, c->u, c->m);
    return dot(c->m, c->r, c->n);
}
static void swiglu_grad(void **state) {
    (void)state;
    sw_ctx c = {30, rnd(30, 17), rnd(30, 18), rnd(30, 0), rnd(30, 19)};
    for (int i = 0; i < 30; i++) c.g[i] *= 4;
    double *gg = malloc(sizeof(double) * 30), *gu = malloc(sizeof(double) * 30);
    qerr__swiglu_bwd_d(30, c.g, c.u, c.r, gg, gu);
    double eg = tu_fd_error(sw_loss, &c, c.g, 30, gg), eu = tu_fd_error(sw_loss, &c, c.u, 30, gu);
    print_message("swiglu: gg %.2e gu %.2e\n", eg, eu);
    assert_true(eg < 1e-6 && eu < 1e-6);
    free(c.g); free(c.u); free(c.m); free(c.r); free(gg); free(gu);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(linear_grad),    cmocka_unit_test(rmsnorm_grad),
        cmocka_unit_test(rope_grad),      cmocka_unit_test(attention_grad),
        cmocka_unit_test(swiglu_grad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
