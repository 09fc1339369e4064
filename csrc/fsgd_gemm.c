/*
 * The GEMM engine: micro-kernels per SIMD path, run-time dispatch, the
 * per-thread packing workspace, and the float32/float64 drivers generated
 * from fsgd_gemm_tmpl.h.
 */
#include "fsgd.h"
#include "fsgd_internal.h"

#include <pthread.h>
#include <stdlib.h>

#define FSGD_MAX_MR 16
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- vector types ---------------------------------------------------- */
typedef float fsgd_v4f __attribute__((vector_size(16)));
typedef double fsgd_v2d __attribute__((vector_size(16)));
#if FSGD_X86
typedef float fsgd_v8f __attribute__((vector_size(32)));
typedef double fsgd_v4d __attribute__((vector_size(32)));
typedef float fsgd_v16f __attribute__((vector_size(64)));
typedef double fsgd_v8d __attribute__((vector_size(64)));
#endif

/* ---- micro-kernels ---------------------------------------------------- */
#define UKR_TARGET
#define UKR_NAME ukr_generic_f32
#define UKR_T float
#define UKR_VT fsgd_v4f
#define UKR_VL 4
#define UKR_MR 4
#define UKR_NV 2
#include "fsgd_ukr.h"
#undef UKR_NAME
#undef UKR_T
#undef UKR_VT
#undef UKR_VL
#undef UKR_MR
#undef UKR_NV

#define UKR_NAME ukr_generic_f64
#define UKR_T double
#define UKR_VT fsgd_v2d
#define UKR_VL 2
#define UKR_MR 4
#define UKR_NV 2
#include "fsgd_ukr.h"
#undef UKR_NAME
#undef UKR_T
#undef UKR_VT
#undef UKR_VL
#undef UKR_MR
#undef UKR_NV
#undef UKR_TARGET

#if FSGD_X86
#define UKR_TARGET __attribute__((target("avx2,fma")))
#define UKR_NAME ukr_avx2_f32
#define UKR_T float
#define UKR_VT fsgd_v8f
#define UKR_VL 8
#define UKR_MR 6
#define UKR_NV 2
#include "fsgd_ukr.h"
#undef UKR_NAME
#undef UKR_T
#undef UKR_VT
#undef UKR_VL
#undef UKR_MR
#undef UKR_NV

#define UKR_NAME ukr_avx2_f64
#define UKR_T double
#define UKR_VT fsgd_v4d
#define UKR_VL 4
#define UKR_MR 6
#define UKR_NV 2
#include "fsgd_ukr.h"
#undef UKR_NAME
#undef UKR_T
#undef UKR_VT
#undef UKR_VL
#undef UKR_MR
#undef UKR_NV
#undef UKR_TARGET

#define UKR_TARGET __attribute__((target("avx512f")))
#define UKR_NAME ukr_avx512_f32
#define UKR_T float
#define UKR_VT fsgd_v16f
#define UKR_VL 16
#define UKR_MR 12
#define UKR_NV 2
#include "fsgd_ukr.h"
#undef UKR_NAME
#undef UKR_T
#undef UKR_VT
#undef UKR_VL
#undef UKR_MR
#undef UKR_NV

#define UKR_NAME ukr_avx512_f64
#define UKR_T double
#define UKR_VT fsgd_v8d
#define UKR_VL 8
#define UKR_MR 12
#define UKR_NV 2
#include "fsgd_ukr.h"
#undef UKR_NAME
#undef UKR_T
#undef UKR_VT
#undef UKR_VL
#undef UKR_MR
#undef UKR_NV
#undef UKR_TARGET
#endif /* FSGD_X86 */

/* ---- kernel descriptors -------------------------------------------- */
typedef void (*ukr_fn_f32)(int64_t, const float *const *, int64_t, const float *restrict,
                           float *restrict, int64_t, float, float, int, int);
typedef void (*ukr_fn_f64)(int64_t, const double *const *, int64_t, const double *restrict,
                           double *restrict, int64_t, double, double, int, int);
typedef struct {
    int mr, nr;
    int64_t kc, mc, nc;
    ukr_fn_f32 kern;
} kinfo_f32;
typedef struct {
    int mr, nr;
    int64_t kc, mc, nc;
    ukr_fn_f64 kern;
} kinfo_f64;

/* ---- SIMD dispatch ---------------------------------------------------- */
static int simd_supported_cache = -1;
static int simd_active = -1;

int fsgd_simd_supported(void)
{
    if (simd_supported_cache < 0) {
        int s = FSGD_SIMD_GENERIC;
#if FSGD_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) s = FSGD_SIMD_AVX2;
        if (__builtin_cpu_supports("avx512f")) s = FSGD_SIMD_AVX512;
#endif
        simd_supported_cache = s;
    }
    return simd_supported_cache;
}

int fsgd_simd_get(void)
{
    if (simd_active < 0) simd_active = fsgd_simd_supported();
    return simd_active;
}

int fsgd_simd_set(int path)
{
    if (path < FSGD_SIMD_GENERIC || path > fsgd_simd_supported()) return FSGD_ERR_ARG;
    simd_active = path;
    return FSGD_OK;
}

const char *fsgd_simd_name(int path)
{
    switch (path) {
    case FSGD_SIMD_AVX2: return "avx2+fma";
    case FSGD_SIMD_AVX512: return "avx512f";
    default: return "generic";
    }
}

/* Blocking: KC x NR of B stays in L1, MC x KC of A in L2, KC x NC of B in L3. */
static void select_kernel_f32(kinfo_f32 *ki)
{
    switch (fsgd_simd_get()) {
#if FSGD_X86
    case FSGD_SIMD_AVX512:
        *ki = (kinfo_f32){12, 32, 256, 192, 4096, ukr_avx512_f32};
        return;
    case FSGD_SIMD_AVX2:
        *ki = (kinfo_f32){6, 16, 384, 144, 4096, ukr_avx2_f32};
        return;
#endif
    default:
        *ki = (kinfo_f32){4, 8, 256, 128, 4096, ukr_generic_f32};
    }
}

static void select_kernel_f64(kinfo_f64 *ki)
{
    switch (fsgd_simd_get()) {
#if FSGD_X86
    case FSGD_SIMD_AVX512:
        *ki = (kinfo_f64){12, 16, 256, 96, 2048, ukr_avx512_f64};
        return;
    case FSGD_SIMD_AVX2:
        *ki = (kinfo_f64){6, 8, 256, 96, 2048, ukr_avx2_f64};
        return;
#endif
    default:
        *ki = (kinfo_f64){4, 4, 256, 96, 2048, ukr_generic_f64};
    }
}

/* ---- per-thread workspace ------------------------------------------- */
/* Each calling thread keeps one 64-byte aligned buffer that only grows; the
 * team of a parallel GEMM shares its caller's buffer. Freed at thread exit. */
typedef struct {
    void *ptr;
    size_t size;
} workspace;

static pthread_key_t ws_key;
static pthread_once_t ws_once = PTHREAD_ONCE_INIT;

static void ws_free(void *p)
{
    workspace *w = (workspace *)p;
    if (w) {
        free(w->ptr);
        free(w);
    }
}

static void ws_init(void) { pthread_key_create(&ws_key, ws_free); }

void *fsgd_workspace(size_t bytes)
{
    pthread_once(&ws_once, ws_init);
    workspace *w = (workspace *)pthread_getspecific(ws_key);
    if (!w) {
        w = (workspace *)calloc(1, sizeof *w);
        if (!w) return NULL;
        if (pthread_setspecific(ws_key, w) != 0) {
            free(w);
            return NULL;
        }
    }
    if (w->size < bytes) {
        size_t sz = (bytes + 4095) & ~(size_t)4095;
        void *p = NULL;
        if (posix_memalign(&p, 64, sz) != 0) return NULL;
        free(w->ptr);
        w->ptr = p;
        w->size = sz;
    }
    return w->ptr;
}

/* ---- drivers ------------------------------------------------------ */
#define T float
#define SFX f32
#include "fsgd_gemm_tmpl.h"
#undef T
#undef SFX

#define T double
#define SFX f64
#include "fsgd_gemm_tmpl.h"
#undef T
#undef SFX

/* ---- OpenMP information ------------------------------------------- */
int fsgd_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int fsgd_omp_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void fsgd_omp_set_threads(int n)
{
#ifdef _OPENMP
    if (n > 0) omp_set_num_threads(n);
#else
    (void)n;
#endif
}

int fsgd_cpu_count(void)
{
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}

const char *fsgd_compiler(void)
{
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown";
#endif
}
