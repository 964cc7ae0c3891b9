/* Real-type switch for the templated training code. A *_impl.h file is
 * included twice by its .c file: once as float (names end in _f) and once,
 * after #define TR_DOUBLE, as double (_d), so gradient checks run in float64
 * on exactly the code that trains in float32. No include guard on purpose. */
#undef R
#undef TR_
#undef TR_GEMM
#ifdef TR_DOUBLE
#define R double
#define TR_(name) name##_d
#define TR_GEMM cblas_dgemm
#else
#define R float
#define TR_(name) name##_f
#define TR_GEMM cblas_sgemm
#endif
