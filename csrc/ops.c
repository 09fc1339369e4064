/*
 * Everything but the GEMM, generated for float32 and float64 from one set of
 * templates: activations (act_tmpl.h), the output layer fused with its cost
 * (cost_tmpl.h), the optimizer step (optim_tmpl.h), the layers and the
 * network plan (net_tmpl.h). The check of a network plan is dtype-free and
 * lives here.
 */
#include "fsgd.h"
#include "fsgd_internal.h"

#include <float.h>
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
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
#define UBITS uint32_t /* an unsigned integer as wide as T, and the bits of |x| */
#define UBITS_ABS 0x7fffffffu
#define EXPT fsgd_expf
#define LOGT logf
#define LOG1PT log1pf
#define TANHT tanhf
#define SQRTT sqrtf
#define FABST fabsf
#include "act_tmpl.h"
#include "sparse_tmpl.h"
#include "cost_tmpl.h"
#include "optim_tmpl.h"
#include "net_tmpl.h"
#undef T
#undef SFX
#undef UBITS
#undef UBITS_ABS
#undef EXPT
#undef LOGT
#undef LOG1PT
#undef TANHT
#undef SQRTT
#undef FABST

#define T double
#define SFX f64
#define UBITS uint64_t
#define UBITS_ABS 0x7fffffffffffffffull
#define EXPT fsgd_exp
#define LOGT log
#define LOG1PT log1p
#define TANHT tanh
#define SQRTT sqrt
#define FABST fabs
#include "act_tmpl.h"
#include "sparse_tmpl.h"
#include "cost_tmpl.h"
#include "optim_tmpl.h"
#include "net_tmpl.h"
#undef T
#undef SFX
#undef UBITS
#undef UBITS_ABS
#undef EXPT
#undef LOGT
#undef LOG1PT
#undef TANHT
#undef SQRTT
#undef FABST

/* ---- dropout's generator, exposed for the tests ----------------------------- */
int fsgd_dropout_keep(uint64_t seed, uint64_t step, int64_t row, int64_t unit, double rate)
{
    const uint64_t rk = fsgd_drop_row_key(fsgd_drop_batch_key(seed, step), row);
    return fsgd_drop_bits(rk, unit) < fsgd_drop_threshold(rate);
}

/* ---- checking a plan -------------------------------------------------------- */
/* [offset, offset + size) inside [0, n) */
static int inside(int64_t offset, int64_t size, int64_t n)
{
    return offset >= 0 && size >= 0 && size <= n && offset <= n - size;
}

int fsgd_net_check(const fsgd_net *net)
{
    if (!net || net->n_layers < 1 || !net->layers || net->capacity < 1 || net->n_params < 0 ||
        !net->params || net->nthreads < 1 || net->n_state < 0 || (net->n_state && !net->state))
        return FSGD_ERR_ARG;
    if (net->cost < -1 || net->cost >= FSGD_COST_COUNT) return FSGD_ERR_ARG;
    if (net->cost == FSGD_COST_HUBER && !(net->cost_param > 0.0 && net->cost_param < INFINITY))
        return FSGD_ERR_ARG;
    for (int l = 0; l < net->n_layers; l++) {
        const fsgd_layer *L = &net->layers[l];
        if (L->kind < 0 || L->kind >= FSGD_LAYER_COUNT) return FSGD_ERR_ARG;
        if (L->act < 0 || L->act >= FSGD_ACT_COUNT) return FSGD_ERR_ARG;
        if (L->n_in < 1 || L->n_out < 1 || !L->A) return FSGD_ERR_ARG;
        if (l > 0 && L->n_in != net->layers[l - 1].n_out) return FSGD_ERR_ARG;
        if (net->grads && !L->D) return FSGD_ERR_ARG;
        if (L->kind != FSGD_LAYER_DENSE) {
            /* dropout and batch normalization: same width, no activation, never the output */
            if (L->n_in != L->n_out || L->act != FSGD_ACT_LINEAR || l == net->n_layers - 1)
                return FSGD_ERR_ARG;
        }
        switch (L->kind) {
        case FSGD_LAYER_DENSE: {
            /* W (n_in x n_out) and b (n_out) inside [0, n_params) */
            if (L->n_in > INT64_MAX / L->n_out) return FSGD_ERR_ARG;
            if (!inside(L->w_offset, L->n_in * L->n_out, net->n_params)) return FSGD_ERR_ARG;
            if (!inside(L->b_offset, L->n_out, net->n_params)) return FSGD_ERR_ARG;
            break;
        }
        case FSGD_LAYER_DROPOUT:
            if (!(L->rate >= 0.0 && L->rate < 1.0)) return FSGD_ERR_ARG;
            break;
        case FSGD_LAYER_BATCH_NORM:
            if (!(L->epsilon > 0.0 && L->epsilon < INFINITY)) return FSGD_ERR_ARG;
            if (!(L->momentum >= 0.0 && L->momentum < 1.0)) return FSGD_ERR_ARG;
            if (L->w_offset != -1 && !inside(L->w_offset, L->n_out, net->n_params))
                return FSGD_ERR_ARG;
            if (L->b_offset != -1 && !inside(L->b_offset, L->n_out, net->n_params))
                return FSGD_ERR_ARG;
            if (L->n_out > INT64_MAX / 2 || !inside(L->s_offset, 2 * L->n_out, net->n_state))
                return FSGD_ERR_ARG;
            if (net->grads && !L->aux) return FSGD_ERR_ARG;
            break;
        default:
            return FSGD_ERR_ARG;
        }
    }
    return FSGD_OK;
}
