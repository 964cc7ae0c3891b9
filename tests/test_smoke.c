#include "testutil.h"
static void smoke(void **state) {
    (void)state;
    qerr_tensor *w = tu_weight(64, 128, 1);
    qerr_calib *c = tu_correlated_calib(512, 128, 2.0, 2);
    qerr_result *r1 = tu_quantize("rtn:bits=3,group_size=32", w, c);
    qerr_result *r2 = tu_quantize("gptq:bits=3,group_size=32", w, c);
    double e1 = tu_layer_error(w, r1, c), e2 = tu_layer_error(w, r2, c);
    print_message("rtn %g gptq %g\n", e1, e2);
    assert_true(e2 < e1);
    qerr_result_free(r1); qerr_result_free(r2); qerr_calib_free(c); qerr_tensor_free(w);
}
int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(smoke)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
