/* Calibration sets: H against a direct float64 X^T X, merging, the seeded
 * reservoir, from_gram, and the file format under corruption. */
#include "testutil.h"
#include "core/internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* H = X^T X in float64 from float32 rows. */
static double *gram64(const float *X, int64_t rows, int64_t n) {
    double *H = calloc((size_t)(n * n), sizeof(double));
    assert_non_null(H);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++) {
            double xi = X[r * n + i];
            for (int64_t j = 0; j < n; j++) H[i * n + j] += xi * (double)X[r * n + j];
        }
    return H;
}

/* ||A - B||_F / ||B||_F */
static double rel_diff(const double *A, const double *B, int64_t nn) {
    double d = 0, b = 0;
    for (int64_t i = 0; i < nn; i++) {
        d += (A[i] - B[i]) * (A[i] - B[i]);
        b += B[i] * B[i];
    }
    return sqrt(d / b);
}

static double *gram_of(const qerr_calib *c) {
    int64_t n = qerr_calib_in_features(c);
    double *H = malloc(sizeof(double) * (size_t)(n * n));
    assert_non_null(H);
    assert_int_equal(qerr_calib_gram(c, H, n), QERR_OK);
    for (int64_t i = 0; i < n; i++) /* stored full and exactly symmetric */
        for (int64_t j = 0; j < i; j++) assert_true(H[i * n + j] == H[j * n + i]);
    return H;
}

enum { ROWS = 5000, N = 40 }; /* > 2 blocks of 2048 rows */

static void test_gram_f32(void **state) {
    (void)state;
    float *X = tu_correlated_rows(ROWS, N, 2.0, 1);
    double *ref = gram64(X, ROWS, N);
    /* one call, and uneven calls that straddle the block boundaries */
    qerr_calib *a = NULL, *b = NULL;
    assert_int_equal(qerr_calib_create(&a, N), QERR_OK);
    assert_int_equal(qerr_calib_create(&b, N), QERR_OK);
    int64_t shape[2] = {ROWS, N};
    qerr_tensor *t = NULL;
    assert_int_equal(qerr_tensor_wrap(&t, QERR_DTYPE_F32, 2, shape, X), QERR_OK);
    assert_int_equal(qerr_calib_add(a, t), QERR_OK);
    const int64_t cuts[] = {0, 1, 700, 2049, 4500, ROWS};
    for (int k = 0; k + 1 < 6; k++)
        assert_int_equal(qerr_calib_add_f32(b, X + cuts[k] * N, cuts[k + 1] - cuts[k]), QERR_OK);
    assert_int_equal(qerr_calib_add_f32(b, X, 0), QERR_OK); /* no rows: no change */
    assert_int_equal(qerr_calib_nsamples(a), ROWS);
    assert_int_equal(qerr_calib_nsamples(b), ROWS);
    double *ha = gram_of(a), *hb = gram_of(b);
    double ea = rel_diff(ha, ref, N * N), eb = rel_diff(hb, ref, N * N);
    print_message("relative error of H: one add %.3g, six adds %.3g\n", ea, eb);
    assert_true(ea < 1e-6);
    assert_true(eb < 1e-6);
    free(ha);
    free(hb);
    qerr_tensor_free(t);
    qerr_calib_free(a);
    qerr_calib_free(b);
    free(ref);
    free(X);
}

/* Wide sets sum their SYRK blocks on two threads: every entry still lands. */
static void test_gram_wide(void **state) {
    (void)state;
    for (int64_t n = 512; n <= 513; n++) {
        float *X = tu_correlated_rows(48, n, 0.5, 7);
        double *ref = gram64(X, 48, n);
        qerr_calib *c = NULL;
        assert_int_equal(qerr_calib_create(&c, n), QERR_OK);
        assert_int_equal(qerr_calib_add_f32(c, X, 48), QERR_OK);
        assert_int_equal(qerr_calib_add_f32(c, X, 48), QERR_OK); /* twice: H doubles */
        double *H = gram_of(c);
        for (int64_t i = 0; i < n * n; i++) ref[i] *= 2;
        assert_true(rel_diff(H, ref, n * n) < 1e-6);
        for (int64_t i = 0; i < n; i++) /* no entry left out (each row pair) */
            assert_true(fabs(H[i * n + i] - ref[i * n + i]) <= 1e-5 * ref[i * n + i]);
        free(H);
        free(ref);
        free(X);
        qerr_calib_free(c);
    }
}

static void test_gram_half(void **state) {
    (void)state;
    float *X = tu_correlated_rows(3000, N, 1.0, 2);
    uint16_t *h = malloc(sizeof(uint16_t) * 3000 * N);
    assert_non_null(h);
    for (int dt = 0; dt < 2; dt++) {
        int dtype = dt ? QERR_DTYPE_BF16 : QERR_DTYPE_F16;
        for (int64_t i = 0; i < 3000 * N; i++) { /* the values the set really sees */
            h[i] = dt ? qerr__f32_to_bf16(X[i]) : qerr__f32_to_f16(X[i]);
            X[i] = dt ? qerr__bf16_to_f32(h[i]) : qerr__f16_to_f32(h[i]);
        }
        double *ref = gram64(X, 3000, N);
        int64_t shape[2] = {3000, N};
        qerr_tensor *t = NULL;
        qerr_calib *c = NULL;
        assert_int_equal(qerr_tensor_wrap(&t, dtype, 2, shape, h), QERR_OK);
        assert_int_equal(qerr_calib_create(&c, N), QERR_OK);
        assert_int_equal(qerr_calib_add(c, t), QERR_OK);
        double *H = gram_of(c);
        assert_true(rel_diff(H, ref, N * N) < 1e-6);
        free(H);
        free(ref);
        qerr_calib_free(c);
        qerr_tensor_free(t);
    }
    free(h);
    free(X);
}

static void test_merge(void **state) {
    (void)state;
    float *X = tu_correlated_rows(ROWS, N, 2.0, 3);
    qerr_calib *all = NULL, *a = NULL, *b = NULL;
    assert_int_equal(qerr_calib_create(&all, N), QERR_OK);
    assert_int_equal(qerr_calib_create(&a, N), QERR_OK);
    assert_int_equal(qerr_calib_create(&b, N), QERR_OK);
    /* the same two adds into one set: identical float32 blocks, so only the
     * float64 summation order differs */
    const int64_t cut = 1500;
    assert_int_equal(qerr_calib_add_f32(all, X, cut), QERR_OK);
    assert_int_equal(qerr_calib_add_f32(all, X + cut * N, ROWS - cut), QERR_OK);
    assert_int_equal(qerr_calib_add_f32(a, X, cut), QERR_OK);
    assert_int_equal(qerr_calib_add_f32(b, X + cut * N, ROWS - cut), QERR_OK);
    assert_int_equal(qerr_calib_merge(a, b), QERR_OK);
    assert_int_equal(qerr_calib_nsamples(a), ROWS);
    assert_int_equal(qerr_calib_nsamples(b), ROWS - cut); /* src unchanged */
    double *h1 = gram_of(all), *h2 = gram_of(a);
    assert_true(rel_diff(h2, h1, N * N) < 1e-12);
    free(h1);
    free(h2);
    /* and one add of every row agrees to float32 accumulation accuracy */
    qerr_calib *one = NULL;
    assert_int_equal(qerr_calib_create(&one, N), QERR_OK);
    assert_int_equal(qerr_calib_add_f32(one, X, ROWS), QERR_OK);
    h1 = gram_of(one);
    h2 = gram_of(a);
    assert_true(rel_diff(h2, h1, N * N) < 1e-6);
    free(h1);
    free(h2);
    qerr_calib_free(one);
    /* from_gram holds exactly what it was given */
    double *g = gram_of(all);
    qerr_calib *f = NULL;
    assert_int_equal(qerr_calib_from_gram(&f, g, N, 77), QERR_OK);
    assert_int_equal(qerr_calib_nsamples(f), 77);
    double *g2 = gram_of(f);
    assert_memory_equal(g, g2, sizeof(double) * N * N);
    free(g);
    free(g2);
    qerr_calib_free(f);
    qerr_calib_free(all);
    qerr_calib_free(a);
    qerr_calib_free(b);
    free(X);
}

/* from_gram refuses what no Gram matrix can be, and leaves *out NULL */
static void test_from_gram_validation(void **state) {
    (void)state;
    double g[9] = {4, 1, 0, 1, 3, 0.5, 0, 0.5, 2};
    qerr_calib *c = NULL;
    assert_int_equal(qerr_calib_from_gram(&c, g, 3, 10), QERR_OK);
    qerr_calib_free(c);
    c = NULL;
    g[2] = 0.25; /* H[0][2] = 0.25 but H[2][0] = 0 */
    assert_int_equal(qerr_calib_from_gram(&c, g, 3, 10), QERR_E_INVALID_ARG);
    assert_non_null(strstr(qerr_last_error(), "symmetric"));
    assert_null(c);
    g[2] = 0;
    g[7] = g[5] = NAN;
    assert_int_equal(qerr_calib_from_gram(&c, g, 3, 10), QERR_E_NONFINITE);
    assert_null(c);
    g[7] = g[5] = INFINITY;
    assert_int_equal(qerr_calib_from_gram(&c, g, 3, 10), QERR_E_NONFINITE);
    g[7] = g[5] = 0.5;
    g[8] = -1e-3; /* a negative diagonal entry */
    assert_int_equal(qerr_calib_from_gram(&c, g, 3, 10), QERR_E_NOT_PD);
    assert_non_null(strstr(qerr_last_error(), "H[2][2]"));
    assert_null(c);
    g[8] = 2;
    /* a symmetric difference at rounding level is accepted, symmetrized */
    g[1] = 1 + 1e-12;
    assert_int_equal(qerr_calib_from_gram(&c, g, 3, 10), QERR_OK);
    double h[9];
    assert_int_equal(qerr_calib_gram(c, h, 3), QERR_OK);
    assert_true(h[1] == h[3]);
    qerr_calib_free(c);
}

/* A Gram matrix summed in float32 is symmetric only up to rounding, which
 * differs between H[i][j] and H[j][i] when the sums run in other orders (a
 * GEMM's blocking does that): accepted and symmetrized. A real asymmetry,
 * small against the entry's scale but far above rounding, is still refused. */
static void test_from_gram_float32_rounding(void **state) {
    (void)state;
    enum { R = 20000, N = 16 };
    float *X = malloc(sizeof(float) * R * N);
    assert_non_null(X);
    uint64_t s = 99;
    for (int r = 0; r < R; r++)
        for (int j = 0; j < N; j++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            X[r * N + j] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5) * (1 + j);
        }
    double *g = malloc(sizeof(double) * N * N);
    assert_non_null(g);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            float acc = 0.0f; /* upper triangle forward, lower backward */
            if (i <= j)
                for (int r = 0; r < R; r++) acc += X[r * N + i] * X[r * N + j];
            else
                for (int r = R - 1; r >= 0; r--) acc += X[r * N + i] * X[r * N + j];
            g[i * N + j] = acc;
        }
    int asym = 0;
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++) asym += g[i * N + j] != g[j * N + i];
    assert_true(asym > 0); /* the orders did round differently */
    qerr_calib *c = NULL;
    if (qerr_calib_from_gram(&c, g, N, R) != QERR_OK) fail_msg("%s", qerr_last_error());
    double *h = malloc(sizeof(double) * N * N);
    assert_non_null(h);
    assert_int_equal(qerr_calib_gram(c, h, N), QERR_OK);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            assert_true(h[i * N + j] == h[j * N + i]);
            assert_true(h[i * N + j] == 0.5 * (g[i * N + j] + g[j * N + i]));
        }
    qerr_calib_free(c);
    c = NULL;
    /* the report's pair: equal to 8e-6 of the entry, far below its scale */
    double two[4] = {120.0, -3.66818, -3.66821, 95.0};
    assert_int_equal(qerr_calib_from_gram(&c, two, 2, 1000), QERR_OK);
    qerr_calib_free(c);
    c = NULL;
    /* 1% of sqrt(H[0][0] H[1][1]) apart: not rounding */
    two[2] = -3.66818 + 0.01 * sqrt(120.0 * 95.0);
    assert_int_equal(qerr_calib_from_gram(&c, two, 2, 1000), QERR_E_INVALID_ARG);
    assert_non_null(strstr(qerr_last_error(), "H[0][1]"));
    assert_null(c);
    free(h);
    free(g);
    free(X);
}

/* Rows numbered in their first column, so a reservoir row names its source. */
static float *numbered_rows(int64_t rows, int64_t n, int64_t first) {
    float *X = malloc(sizeof(float) * (size_t)(rows * n));
    assert_non_null(X);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++) X[r * n + j] = j == 0 ? (float)(first + r) : (float)j;
    return X;
}

static qerr_calib *sampled(int64_t cap, uint64_t seed, int64_t rows, int64_t first) {
    qerr_calib *c = NULL;
    assert_int_equal(qerr_calib_create(&c, 3), QERR_OK);
    assert_int_equal(qerr_calib_set_reservoir(c, cap, seed), QERR_OK);
    float *X = numbered_rows(rows, 3, first);
    for (int64_t r0 = 0; r0 < rows; r0 += 37) /* several adds */
        assert_int_equal(qerr_calib_add_f32(c, X + r0 * 3, rows - r0 < 37 ? rows - r0 : 37),
                         QERR_OK);
    free(X);
    return c;
}

static void test_reservoir(void **state) {
    (void)state;
    const float *ra, *rb;
    int64_t na, nb;
    /* fewer rows than the capacity: all of them, in order */
    qerr_calib *c = sampled(50, 9, 30, 0);
    assert_int_equal(qerr_calib_reservoir(c, &ra, &na), QERR_OK);
    assert_int_equal(na, 30);
    for (int r = 0; r < 30; r++) assert_true(ra[r * 3] == (float)r && ra[r * 3 + 2] == 2.0f);
    qerr_calib_free(c);

    /* bounded, made of distinct input rows, a function of the seed */
    qerr_calib *a = sampled(20, 5, 500, 0), *b = sampled(20, 5, 500, 0), *d = sampled(20, 6, 500, 0);
    assert_int_equal(qerr_calib_reservoir(a, &ra, &na), QERR_OK);
    assert_int_equal(qerr_calib_reservoir(b, &rb, &nb), QERR_OK);
    assert_int_equal(na, 20);
    assert_int_equal(nb, 20);
    assert_memory_equal(ra, rb, sizeof(float) * 20 * 3);
    const float *rd;
    int64_t nd;
    assert_int_equal(qerr_calib_reservoir(d, &rd, &nd), QERR_OK);
    assert_memory_not_equal(ra, rd, sizeof(float) * 20 * 3);
    bool seen[500] = {false};
    for (int r = 0; r < 20; r++) {
        int id = (int)ra[r * 3];
        assert_true(id >= 0 && id < 500 && ra[r * 3 + 1] == 1.0f);
        assert_false(seen[id]);
        seen[id] = true;
    }
    qerr_calib_free(a);
    qerr_calib_free(b);
    qerr_calib_free(d);

    /* uniform: over many seeds every part of the stream is kept equally
     * often (expected 20/200 per row); and a merge of 100 + 300 rows takes
     * about 3/4 of its rows from the larger side */
    long half[2] = {0, 0}, from_b = 0;
    for (uint64_t seed = 0; seed < 300; seed++) {
        qerr_calib *s = sampled(20, seed, 200, 0);
        assert_int_equal(qerr_calib_reservoir(s, &ra, &na), QERR_OK);
        for (int r = 0; r < na; r++) half[ra[r * 3] >= 100]++;
        qerr_calib_free(s);
        qerr_calib *x = sampled(20, seed, 100, 0), *y = sampled(20, seed + 1000, 300, 100);
        assert_int_equal(qerr_calib_merge(x, y), QERR_OK);
        assert_int_equal(qerr_calib_reservoir(x, &ra, &na), QERR_OK);
        assert_int_equal(na, 20);
        assert_int_equal(qerr_calib_nsamples(x), 400);
        for (int r = 0; r < na; r++) from_b += ra[r * 3] >= 100;
        qerr_calib_free(x);
        qerr_calib_free(y);
    }
    print_message("kept: first half %ld, second half %ld; merged from the larger side %ld/6000\n",
                  half[0], half[1], from_b);
    assert_int_equal(half[0] + half[1], 300 * 20);
    assert_true(labs(half[0] - half[1]) < 400); /* ~3 sigma */
    assert_true(from_b > 4500 - 300 && from_b < 4500 + 300);
}

static char tmpdir[64];

static int make_tmpdir(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qerr_test_calib_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state) {
    (void)state;
    char p[128];
    snprintf(p, sizeof p, "%s/c.qcal", tmpdir);
    remove(p);
    snprintf(p, sizeof p, "%s/bad.qcal", tmpdir);
    remove(p);
    rmdir(tmpdir);
    return 0;
}

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static void spit(const char *path, const uint8_t *b, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    fclose(f);
}

static void test_save_load(void **state) {
    (void)state;
    char path[128], bad[128];
    snprintf(path, sizeof path, "%s/c.qcal", tmpdir);
    snprintf(bad, sizeof bad, "%s/bad.qcal", tmpdir);
    qerr_calib *c = sampled(5, 3, 60, 0);
    assert_int_equal(qerr_calib_save(c, path), QERR_OK);
    qerr_calib *l = NULL;
    assert_int_equal(qerr_calib_load(&l, path), QERR_OK);
    assert_int_equal(qerr_calib_in_features(l), 3);
    assert_int_equal(qerr_calib_nsamples(l), 60);
    double *h1 = gram_of(c), *h2 = gram_of(l);
    assert_memory_equal(h1, h2, sizeof(double) * 9); /* bit-exact */
    free(h1);
    free(h2);
    const float *r1, *r2;
    int64_t n1, n2;
    assert_int_equal(qerr_calib_reservoir(c, &r1, &n1), QERR_OK);
    assert_int_equal(qerr_calib_reservoir(l, &r2, &n2), QERR_OK);
    assert_int_equal(n1, 5);
    assert_int_equal(n2, 5);
    assert_memory_equal(r1, r2, sizeof(float) * 15);
    /* the sampler state is saved too: more rows keep both sets identical */
    float *X = numbered_rows(40, 3, 60);
    assert_int_equal(qerr_calib_add_f32(c, X, 40), QERR_OK);
    assert_int_equal(qerr_calib_add_f32(l, X, 40), QERR_OK);
    free(X);
    assert_int_equal(qerr_calib_reservoir(c, &r1, &n1), QERR_OK);
    assert_int_equal(qerr_calib_reservoir(l, &r2, &n2), QERR_OK);
    assert_memory_equal(r1, r2, sizeof(float) * 15);
    qerr_calib_free(l);
    qerr_calib_free(c);

    /* every flipped byte, every truncation: an error, never a crash */
    size_t len;
    uint8_t *file = slurp(path, &len);
    assert_true(len > 80);
    for (size_t i = 0; i < len; i++)
        for (int m = 0; m < 2; m++) {
            uint8_t flip = m ? 0x01 : 0xff;
            file[i] ^= flip;
            spit(bad, file, len);
            file[i] ^= flip;
            l = NULL;
            int rc = qerr_calib_load(&l, bad);
            if (rc != QERR_E_CHECKSUM && rc != QERR_E_FORMAT)
                fail_msg("byte %zu ^ 0x%02x: status %d (%s)", i, flip, rc, qerr_last_error());
            assert_null(l);
        }
    for (size_t cut = 0; cut < len; cut++) {
        spit(bad, file, cut);
        int rc = qerr_calib_load(&l, bad);
        if (rc != QERR_E_FORMAT) fail_msg("truncated to %zu: status %d", cut, rc);
    }
    /* trailing bytes are refused as well */
    uint8_t *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, file, len);
    longer[len] = 0;
    spit(bad, longer, len + 1);
    assert_int_equal(qerr_calib_load(&l, bad), QERR_E_FORMAT);
    free(longer);
    free(file);
    char missing[160];
    snprintf(missing, sizeof missing, "%s/missing.qcal", tmpdir);
    assert_int_equal(qerr_calib_load(&l, missing), QERR_E_IO);
    assert_non_null(strstr(qerr_last_error(), "missing.qcal"));
    assert_int_equal(qerr_calib_load(&l, tmpdir), QERR_E_IO); /* a directory */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gram_f32),
        cmocka_unit_test(test_gram_wide),
        cmocka_unit_test(test_gram_half),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_from_gram_validation),
        cmocka_unit_test(test_from_gram_float32_rounding),
        cmocka_unit_test(test_reservoir),
        cmocka_unit_test(test_save_load),
    };
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
