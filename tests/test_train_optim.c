/* AdamW (torch.optim.AdamW semantics, per-group learning rates) and the
 * cosine schedule, against values worked out by hand. */
#include "testutil.h"

#include "train/train.h"

#include <math.h>

static void adamw_steps(void **state) {
    (void)state;
    qerr_adamw a;
    assert_int_equal(qerr__adamw_init(&a, 3), QERR_OK);
    double p[3] = {1.0, -2.0, 0.5};
    const double g1[3] = {0.1, -0.2, 0.0}, g2[3] = {0.3, 0.1, 1.0};
    /* step 1: m = 0.1 g, v = 0.001 g^2, bias-corrected m/sqrt(v) = sign(g) */
    qerr__adamw_next(&a);
    qerr__adamw_update(&a, 0, 2, p, g1, 0.01, 0.1);  /* group 0: lr 0.01, wd 0.1 */
    qerr__adamw_update(&a, 2, 1, p + 2, g1 + 2, 0.1, 0.0); /* group 1 */
    double e0 = 1.0 * (1 - 0.001) - 0.01 * 0.1 / (0.1 + 1e-8);
    double e1 = -2.0 * (1 - 0.001) + 0.01 * 0.2 / (0.2 + 1e-8);
    assert_true(fabs(p[0] - e0) < 1e-15 && fabs(p[1] - e1) < 1e-15 && p[2] == 0.5);
    /* step 2 by the formula */
    qerr__adamw_next(&a);
    qerr__adamw_update(&a, 0, 2, p, g2, 0.01, 0.1);
    double m = 0.9 * (0.1 * 0.1) + 0.1 * 0.3, v = 0.999 * (0.001 * 0.01) + 0.001 * 0.09;
    double mh = m / (1 - 0.81), vh = v / (1 - 0.999 * 0.999);
    double want = e0 * (1 - 0.001) - 0.01 * mh / (sqrt(vh) + 1e-8);
    assert_true(fabs(p[0] - want) < 1e-14);
    qerr__adamw_free(&a);
    assert_int_equal(qerr__adamw_init(&a, -1), QERR_E_RANGE);
}

static void cosine(void **state) {
    (void)state;
    assert_true(fabs(qerr__cosine_lr(5e-3, 0, 480, 1e-3) - 5e-3) < 1e-18);
    assert_true(fabs(qerr__cosine_lr(5e-3, 480, 480, 1e-3) - 5e-6) < 1e-18);
    assert_true(fabs(qerr__cosine_lr(5e-3, 240, 480, 1e-3) - (5e-3 + 5e-6) / 2) < 1e-15);
    double prev = 1;
    for (int t = 0; t <= 480; t += 10) { /* decreasing */
        double lr = qerr__cosine_lr(1.0, t, 480, 1e-3);
        assert_true(lr <= prev);
        prev = lr;
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(adamw_steps), cmocka_unit_test(cosine)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
