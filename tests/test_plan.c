/* Plans: parse -> to_string -> parse round trips for every method, the
 * parameter introspection, typed set/get, and CHOICE keys. */
#include "testutil.h"
#include "core/internal.h"
#include "methods/method.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *spec_of(const qerr_plan *p) {
    size_t need = 0;
    assert_int_equal(qerr_plan_to_string(p, NULL, 0, &need), QERR_E_RANGE);
    char *s = malloc(need);
    assert_non_null(s);
    assert_int_equal(qerr_plan_to_string(p, s, need, NULL), QERR_OK); /* exact fit */
    assert_int_equal(strlen(s) + 1, need);
    return s;
}

/* parse(to_string(p)) has the same canonical text and the same values */
static void check_round_trip(const qerr_plan *p) {
    char *s = spec_of(p);
    qerr_plan *q = NULL;
    if (qerr_plan_parse(&q, s) != QERR_OK) fail_msg("parse '%s': %s", s, qerr_last_error());
    char *t = spec_of(q);
    assert_string_equal(s, t);
    const char *m = qerr_plan_method(p);
    assert_string_equal(qerr_plan_method(q), m);
    for (int i = 0; i < qerr_method_param_count(m); i++) {
        const char *key;
        assert_int_equal(qerr_method_param_info(m, i, &key, NULL, NULL, NULL, NULL, NULL, NULL),
                         QERR_OK);
        double a, b;
        assert_int_equal(qerr_plan_get_double(p, key, &a), QERR_OK);
        assert_int_equal(qerr_plan_get_double(q, key, &b), QERR_OK);
        assert_true(a == b); /* bit-exact, doubles included */
    }
    free(s);
    free(t);
    qerr_plan_free(q);
}

/* A valid value of parameter i other than its default, as text. */
static void other_value(int type, double def, double lo, double hi, const char *choices,
                        char *buf, size_t cap) {
    switch (type) {
    case QERR_PARAM_BOOL: snprintf(buf, cap, "%d", def == 0 ? 1 : 0); break;
    case QERR_PARAM_INT: {
        double v = def + 1 <= hi ? def + 1 : def - 1;
        if (v < lo) v = lo;
        if (v == 0 && def + 2 <= hi) v = def + 2; /* group_size=0 is refused */
        snprintf(buf, cap, "%.0f", v);
        break;
    }
    case QERR_PARAM_DOUBLE: {
        double v = def + (fmin(hi, def + 1) - def) / 3.0; /* an inexact binary fraction */
        if (!(v <= hi) || v == def) v = lo + (def - lo) / 3.0;
        snprintf(buf, cap, "%.17g", v);
        break;
    }
    default: { /* the last word of the list */
        const char *bar = strrchr(choices, '|');
        snprintf(buf, cap, "%s", bar ? bar + 1 : choices);
        break;
    }
    }
}

static void test_every_method(void **state) {
    (void)state;
    int count = qerr_method_count();
    assert_true(count >= 2);
    bool have_rtn = false, have_gptq = false;
    for (int mi = 0; mi < count; mi++) {
        const char *m = qerr_method_name(mi);
        assert_non_null(m);
        have_rtn |= strcmp(m, "rtn") == 0;
        have_gptq |= strcmp(m, "gptq") == 0;
        assert_non_null(qerr_method_summary(m));
        int np = qerr_method_param_count(m);
        assert_true(np >= 0);
        for (int k = 0; k < mi; k++) assert_string_not_equal(m, qerr_method_name(k));

        qerr_plan *p = NULL;
        assert_int_equal(qerr_plan_create(&p, m), QERR_OK);
        assert_string_equal(qerr_plan_method(p), m);
        check_round_trip(p);
        qerr_plan *bare = NULL; /* "name" alone is the all-defaults plan */
        assert_int_equal(qerr_plan_parse(&bare, m), QERR_OK);
        char *a = spec_of(p), *b = spec_of(bare);
        assert_string_equal(a, b);
        free(a);
        free(b);
        qerr_plan_free(bare);

        for (int i = 0; i < np; i++) {
            const char *key, *def, *choices, *help;
            int type;
            double lo, hi;
            assert_int_equal(
                qerr_method_param_info(m, i, &key, &type, &def, &lo, &hi, &choices, &help),
                QERR_OK);
            assert_non_null(key);
            assert_true(strlen(key) > 0 && !strpbrk(key, ":,= "));
            assert_non_null(help);
            assert_true(strlen(help) > 0);
            for (int k = 0; k < i; k++) { /* keys are unique */
                const char *other;
                qerr_method_param_info(m, k, &other, NULL, NULL, NULL, NULL, NULL, NULL);
                assert_string_not_equal(key, other);
            }
            assert_true(type >= QERR_PARAM_INT && type <= QERR_PARAM_CHOICE);
            /* the default's text sets and reads back unchanged */
            char got[128];
            if (qerr_plan_set(p, key, def) != QERR_OK)
                fail_msg("%s: default '%s' of %s does not parse: %s", m, def, key,
                         qerr_last_error());
            assert_int_equal(qerr_plan_get_string(p, key, got, sizeof got), QERR_OK);
            assert_string_equal(got, def);
            double dv;
            assert_int_equal(qerr_plan_get_double(p, key, &dv), QERR_OK);
            if (type == QERR_PARAM_CHOICE) {
                assert_true(strlen(choices) > 0);
                assert_non_null(strstr(choices, def));
            } else {
                assert_string_equal(choices, "");
                assert_true(isfinite(lo) && isfinite(hi) && lo <= hi);
                assert_true(dv >= lo && dv <= hi);
                if (type == QERR_PARAM_BOOL) assert_true(lo == 0 && hi == 1);
                if (type != QERR_PARAM_DOUBLE) assert_true(dv == floor(dv));
                /* just outside the range is refused, naming the key */
                char out[64];
                snprintf(out, sizeof out, "%.17g", type == QERR_PARAM_DOUBLE ? hi * 2 + 1 : hi + 1);
                assert_int_equal(qerr_plan_set(p, key, out), QERR_E_RANGE);
                assert_non_null(strstr(qerr_last_error(), key));
            }
            /* a different valid value survives the text round trip */
            char v[64];
            other_value(type, dv, lo, hi, choices, v, sizeof v);
            if (qerr_plan_set(p, key, v) != QERR_OK)
                fail_msg("%s: %s=%s: %s", m, key, v, qerr_last_error());
        }
        check_round_trip(p);
        qerr_plan_free(p);
    }
    assert_true(have_rtn && have_gptq);
}

/* Texts a person reads: defaults in their shortest exact form, and
 * group_size=0 refused (its range -1..max has a hole at 0). */
static void test_shortest_text_and_group_size_zero(void **state) {
    (void)state;
    const char *def;
    int n = qerr_method_param_count("omniquant");
    bool seen = false;
    for (int i = 0; i < n; i++) {
        const char *key;
        assert_int_equal(qerr_method_param_info("omniquant", i, &key, NULL, &def, NULL, NULL,
                                                NULL, NULL),
                         QERR_OK);
        if (strcmp(key, "let_lr") == 0) {
            assert_string_equal(def, "0.005"); /* not 0.0050000000000000001 */
            seen = true;
        }
    }
    assert_true(seen);
    qerr_plan *p = NULL;
    assert_int_equal(qerr_plan_parse(&p, "gptq:damp=0.05,bits=3"), QERR_OK);
    char *sp = spec_of(p);
    assert_non_null(strstr(sp, ",damp=0.05,"));
    free(sp);
    /* an inexact value still reads back exactly */
    assert_int_equal(qerr_plan_set_double(p, "damp", 0.1 + 0.2), QERR_OK);
    char buf[64];
    assert_int_equal(qerr_plan_get_string(p, "damp", buf, sizeof buf), QERR_OK);
    assert_string_equal(buf, "0.30000000000000004");
    assert_true(strtod(buf, NULL) == 0.1 + 0.2);
    assert_int_equal(qerr_plan_set_int(p, "group_size", 0), QERR_E_RANGE);
    assert_non_null(strstr(qerr_last_error(), "-1 = one group per row"));
    assert_int_equal(qerr_plan_set(p, "group_size", "0"), QERR_E_RANGE);
    assert_int_equal(qerr_plan_set_int(p, "group_size", -1), QERR_OK);
    assert_int_equal(qerr_plan_set_int(p, "group_size", 1), QERR_OK);
    qerr_plan_free(p);
    p = NULL;
    assert_int_equal(qerr_plan_parse(&p, "rtn:bits=4,group_size=0"), QERR_E_RANGE);
    assert_null(p);
}

/* Which methods work on one weight, which on whole blocks only. */
static void test_method_scopes(void **state) {
    (void)state;
    assert_int_equal(qerr_method_scopes("rtn"), QERR_SCOPE_LAYER);
    assert_int_equal(qerr_method_scopes("gptq"), QERR_SCOPE_LAYER);
    if (qerr_method_summary("flatquant"))
        assert_int_equal(qerr_method_scopes("flatquant"), QERR_SCOPE_BLOCK);
    if (qerr_method_summary("omniquant"))
        assert_int_equal(qerr_method_scopes("omniquant"), QERR_SCOPE_LAYER | QERR_SCOPE_BLOCK);
    assert_int_equal(qerr_method_scopes("nosuch"), QERR_E_UNKNOWN_METHOD);
    assert_int_equal(qerr_method_scopes(NULL), QERR_E_INVALID_ARG);
    for (int i = 0; i < qerr_method_count(); i++)
        assert_true(qerr_method_scopes(qerr_method_name(i)) > 0);
}

static void test_set_get(void **state) {
    (void)state;
    qerr_plan *p = NULL;
    assert_int_equal(qerr_plan_parse(&p, "gptq:bits=3,group_size=64,act_order=true,damp=0.05"),
                     QERR_OK);
    int64_t iv;
    double dv;
    char buf[64];
    assert_int_equal(qerr_plan_get_int(p, "bits", &iv), QERR_OK);
    assert_int_equal(iv, 3);
    assert_int_equal(qerr_plan_get_int(p, "group_size", &iv), QERR_OK);
    assert_int_equal(iv, 64);
    assert_int_equal(qerr_plan_get_int(p, "act_order", &iv), QERR_OK);
    assert_int_equal(iv, 1);
    assert_int_equal(qerr_plan_get_double(p, "damp", &dv), QERR_OK);
    assert_true(dv == 0.05);
    assert_int_equal(qerr_plan_set(p, "act_order", "off"), QERR_OK);
    assert_int_equal(qerr_plan_get_int(p, "act_order", &iv), QERR_OK);
    assert_int_equal(iv, 0);
    assert_int_equal(qerr_plan_set(p, "static_groups", "yes"), QERR_OK);
    assert_int_equal(qerr_plan_get_string(p, "static_groups", buf, sizeof buf), QERR_OK);
    assert_string_equal(buf, "1");
    assert_int_equal(qerr_plan_set_int(p, "bits", 8), QERR_OK);
    assert_int_equal(qerr_plan_get_string(p, "bits", buf, sizeof buf), QERR_OK);
    assert_string_equal(buf, "8");
    assert_int_equal(qerr_plan_set_double(p, "damp", 0.1), QERR_OK);
    assert_int_equal(qerr_plan_get_string(p, "damp", buf, sizeof buf), QERR_OK);
    assert_true(strtod(buf, NULL) == 0.1);
    assert_int_equal(qerr_plan_set_double(p, "group_size", 128.0), QERR_OK); /* integral double */
    assert_int_equal(qerr_plan_get_int(p, "group_size", &iv), QERR_OK);
    assert_int_equal(iv, 128);

    /* a clone is independent */
    qerr_plan *c = NULL;
    assert_int_equal(qerr_plan_clone(p, &c), QERR_OK);
    assert_int_equal(qerr_plan_set_int(c, "bits", 2), QERR_OK);
    assert_int_equal(qerr_plan_get_int(p, "bits", &iv), QERR_OK);
    assert_int_equal(iv, 8);
    char *sp = spec_of(p);
    assert_non_null(strstr(sp, "gptq:bits=8,group_size=128,"));
    assert_non_null(strstr(sp, "static_groups=1"));
    free(sp);
    qerr_plan_free(c);
    qerr_plan_free(p);

    /* later keys override earlier ones; a trailing comma is harmless */
    assert_int_equal(qerr_plan_parse(&p, "rtn:bits=3,bits=5,"), QERR_OK);
    assert_int_equal(qerr_plan_get_int(p, "bits", &iv), QERR_OK);
    assert_int_equal(iv, 5);
    qerr_plan_free(p);
}

/* CHOICE keys, through a method made up for the test (the plan only holds a
 * pointer to its method's table). */
static const qerr_param_def fake_params[] = {
    {"mode", QERR_PARAM_CHOICE, 1, 0, 0, "alpha|beta|gamma", "a word"},
    {"level", QERR_PARAM_INT, 2, 0, 9, NULL, "a number"},
};
static const qerr_method fake = {
    .version = QERR_METHOD_VERSION,
    .name = "fake",
    .summary = "test only",
    .params = fake_params,
    .nparams = 2,
};

static void test_choices(void **state) {
    (void)state;
    qerr_plan p;
    memset(&p, 0, sizeof p);
    p.method = &fake;
    p.values[0] = 1;
    p.values[1] = 2;
    char buf[32];
    assert_int_equal(qerr_plan_get_string(&p, "mode", buf, sizeof buf), QERR_OK);
    assert_string_equal(buf, "beta");
    const char *words[3] = {"alpha", "beta", "gamma"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(qerr_plan_set(&p, "mode", words[i]), QERR_OK);
        assert_int_equal(qerr_plan_get_string(&p, "mode", buf, sizeof buf), QERR_OK);
        assert_string_equal(buf, words[i]);
        int64_t iv;
        assert_int_equal(qerr_plan_get_int(&p, "mode", &iv), QERR_OK);
        assert_int_equal(iv, i);
        assert_int_equal(qerr__plan_choice(&p, "mode"), i);
    }
    /* prefixes, extensions and numbers are not words of the list */
    const char *bad[] = {"alp", "alphas", "gamma|", "2", "Beta"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(qerr_plan_set(&p, "mode", bad[i]), QERR_E_RANGE);
        assert_non_null(strstr(qerr_last_error(), "mode"));
    }
    assert_int_equal(qerr_plan_set_int(&p, "mode", 1), QERR_E_INVALID_ARG);
    assert_non_null(strstr(qerr_last_error(), "mode"));
    assert_int_equal(qerr_plan_set_double(&p, "mode", 1), QERR_E_INVALID_ARG);
    char spec[128];
    assert_int_equal(qerr_plan_to_string(&p, spec, sizeof spec, NULL), QERR_OK);
    assert_string_equal(spec, "fake:mode=gamma,level=2");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_method),
        cmocka_unit_test(test_set_get),
        cmocka_unit_test(test_shortest_text_and_group_size_zero),
        cmocka_unit_test(test_method_scopes),
        cmocka_unit_test(test_choices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
