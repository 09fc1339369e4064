/*
 * The GEMM engine: the micro-kernel table (one row per SIMD path and dtype,
 * generating the kernels and their dispatch) and the float32/float64
 * drivers generated from gemm_tmpl.h.
 */
#include "fsgd.h"
#include "fsgd_internal.h"
#include "gemm_ukr.h"

#include <stdlib.h>

#define FSGD_MAX_MR 16
#define FSGD_MAX_NR 64 /* above every NR of the table below */
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* vector types and target attributes: fsgd_internal.h */

/* ---- the kernel table ------------------------------------------------------
 * One row per micro-kernel: SIMD path, dtype, scalar and vector type, lanes,
 * MR (tile rows), NV (vectors per tile row: NR = NV * lanes), the blocking
 * (MC x KC of A in L2, KC x NC of B in L3; the KC x NR sliver of B streams
 * from L1 or L2: a 12 x 32 or 6 x 16 tile loads 2 vectors of B per 12 or 6
 * FMAs, so the f32 rows take a deep KC, which halves the passes over C and
 * the team's barriers on the book's 784-deep products) and the target
 * attribute. The rows generate the micro-kernels and the dispatch;
 * the loop nest in gemm_tmpl.h never changes. */
#define FSGD_UKR_TABLE_PORTABLE(X)                                                            \
    X(GENERIC, f32, float, fsgd_v4f, 4, 4, 2, 256, 128, 4096, FSGD_TARGET_NONE)               \
    X(GENERIC, f64, double, fsgd_v2d, 2, 4, 2, 256, 96, 2048, FSGD_TARGET_NONE)
#if FSGD_X86
#define FSGD_UKR_TABLE_X86(X)                                                                 \
    X(AVX2, f32, float, fsgd_v8f, 8, 6, 2, 512, 144, 4096, FSGD_TARGET_AVX2)                  \
    X(AVX2, f64, double, fsgd_v4d, 4, 6, 2, 256, 96, 2048, FSGD_TARGET_AVX2)                  \
    X(AVX512, f32, float, fsgd_v16f, 16, 12, 2, 512, 192, 4096, FSGD_TARGET_AVX512)           \
    X(AVX512, f64, double, fsgd_v8d, 8, 12, 2, 256, 96, 2048, FSGD_TARGET_AVX512)
#else
#define FSGD_UKR_TABLE_X86(X)
#endif
#define FSGD_UKR_TABLE(X) FSGD_UKR_TABLE_PORTABLE(X) FSGD_UKR_TABLE_X86(X)

/* the micro-kernels: ukr_<path>_<dtype> */
#define UKR_INSTANCE(PATH, SFX, T, VT, VL, MR, NV, KC, MC, NC, TGT)                           \
    FSGD_UKR_DEFINE(ukr_##PATH##_##SFX, T, VT, VL, MR, NV, TGT)
FSGD_UKR_TABLE(UKR_INSTANCE)
#undef UKR_INSTANCE

/* ---- kernel descriptors and dispatch ------------------------------------ */
typedef void (*ukr_fn_f32)(int64_t, const float *const *, int64_t, const float *restrict,
                           int64_t, float *restrict, int64_t, float, float, int, int);
typedef void (*ukr_fn_f64)(int64_t, const double *const *, int64_t, const double *restrict,
                           int64_t, double *restrict, int64_t, double, double, int, int);
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

/* a table row becomes an entry of the table of its own dtype only */
#define KI_ROW_f32_f32(PATH, SFX, VL, MR, NV, KC, MC, NC)                                     \
    [FSGD_SIMD_##PATH] = {MR, (NV) * (VL), KC, MC, NC, ukr_##PATH##_##SFX},
#define KI_ROW_f32_f64(...)
#define KI_ROW_f64_f64 KI_ROW_f32_f32
#define KI_ROW_f64_f32(...)
#define KI_ENTRY_f32(PATH, SFX, T, VT, VL, MR, NV, KC, MC, NC, TGT)                           \
    KI_ROW_f32_##SFX(PATH, SFX, VL, MR, NV, KC, MC, NC)
#define KI_ENTRY_f64(PATH, SFX, T, VT, VL, MR, NV, KC, MC, NC, TGT)                           \
    KI_ROW_f64_##SFX(PATH, SFX, VL, MR, NV, KC, MC, NC)
static const kinfo_f32 kinfo_table_f32[FSGD_SIMD_COUNT] = {FSGD_UKR_TABLE(KI_ENTRY_f32)};
static const kinfo_f64 kinfo_table_f64[FSGD_SIMD_COUNT] = {FSGD_UKR_TABLE(KI_ENTRY_f64)};
#undef KI_ENTRY_f32
#undef KI_ENTRY_f64

static void select_kernel_f32(kinfo_f32 *ki)
{
    *ki = kinfo_table_f32[fsgd_simd_get()];
    if (!ki->kern) *ki = kinfo_table_f32[FSGD_SIMD_GENERIC];
}

static void select_kernel_f64(kinfo_f64 *ki)
{
    *ki = kinfo_table_f64[fsgd_simd_get()];
    if (!ki->kern) *ki = kinfo_table_f64[FSGD_SIMD_GENERIC];
}

/* ---- drivers ------------------------------------------------------ */
#define T float
#define SFX f32
#include "gemm_tmpl.h"
#undef T
#undef SFX

#define T double
#define SFX f64
#include "gemm_tmpl.h"
#undef T
#undef SFX
