/*
 * Elementwise and fused kernels, optimizers and the whole-network step,
 * generated for float32 and float64 from fsgd_ops_tmpl.h.
 */
#include "fsgd.h"
#include "fsgd_internal.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Loops that call exp run in an AVX2 clone where the CPU has it (ELF only). */
#if FSGD_X86 && defined(__GNUC__) && !defined(__clang__) && defined(__ELF__)
#define FSGD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define FSGD_CLONES
#endif

/*
 * exp without a libm call, so that loops over it vectorise. Cody-Waite
 * reduction x = k ln2 + r, |r| <= ln2/2, then a Taylor polynomial (degree 7
 * for float, 13 for double: error below one ulp), then a scale by 2^k built
 * from its bits. Results below the smallest normal are flushed to zero;
 * NaN propagates.
 */
static inline float fsgd_expf(float x)
{
    const float hi = 88.72283935546875f, lo = -86.5f;
    float xc = x > hi ? hi : x;
    xc = xc < lo ? lo : xc;
    const float t = xc * 1.44269504088896341f;
    const float big = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    const float tb = t + big;
    const float kf = tb - big;
    float r = xc - kf * 0.693359375f;
    r = r - kf * -2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits;
    memcpy(&bits, &tb, sizeof bits);
    const int32_t k = bits - 0x4B400000;
    const int32_t sb = (k + 126) << 23; /* 2^(k-1): k can reach 128 */
    float scale;
    memcpy(&scale, &sb, sizeof scale);
    float res = p * scale * 2.0f;
    res = x > hi ? INFINITY : res;
    res = x < lo ? 0.0f : res;
    return res;
}

static inline double fsgd_exp(double x)
{
    const double hi = 709.782712893384, lo = -706.0;
    double xc = x > hi ? hi : x;
    xc = xc < lo ? lo : xc;
    const double t = xc * 1.4426950408889634074;
    const double big = 6755399441055744.0; /* 1.5 * 2^52 */
    const double tb = t + big;
    const double kf = tb - big;
    double r = xc - kf * 6.93147180369123816490e-01;
    r = r - kf * 1.90821492927058770002e-10;
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int64_t bits;
    memcpy(&bits, &tb, sizeof bits);
    const int64_t k = bits - 0x4338000000000000LL;
    const int64_t sb = (k + 1022) << 52; /* 2^(k-1) */
    double scale;
    memcpy(&scale, &sb, sizeof scale);
    double res = p * scale * 2.0;
    res = x > hi ? INFINITY : res;
    res = x < lo ? 0.0 : res;
    return res;
}

/* exposed for the tests of the approximation */
void fsgd_exp_f32(int64_t n, const float *x, float *out)
{
    for (int64_t i = 0; i < n; i++) out[i] = fsgd_expf(x[i]);
}
void fsgd_exp_f64(int64_t n, const double *x, double *out)
{
    for (int64_t i = 0; i < n; i++) out[i] = fsgd_exp(x[i]);
}

#define T float
#define SFX f32
#define EXPT fsgd_expf
#define LOGT logf
#define LOG1PT log1pf
#define TANHT tanhf
#define SQRTT sqrtf
#define FABST fabsf
#include "fsgd_ops_tmpl.h"
#undef T
#undef SFX
#undef EXPT
#undef LOGT
#undef LOG1PT
#undef TANHT
#undef SQRTT
#undef FABST

#define T double
#define SFX f64
#define EXPT fsgd_exp
#define LOGT log
#define LOG1PT log1p
#define TANHT tanh
#define SQRTT sqrt
#define FABST fabs
#include "fsgd_ops_tmpl.h"
#undef T
#undef SFX
#undef EXPT
#undef LOGT
#undef LOG1PT
#undef TANHT
#undef SQRTT
#undef FABST
