/*
 * Register-tiled GEMM micro-kernel, one definition per row of the kernel
 * table in gemm.c:
 *
 *   FSGD_UKR_DEFINE(NAME, T, VT, VL, MR, NV, TARGET)
 *
 *   NAME    function name
 *   T       scalar type
 *   VT      vector type of VL scalars (GCC vector extension)
 *   VL      lanes per vector
 *   MR      rows of the tile
 *   NV      vectors per tile row (NR = NV * VL)
 *   TARGET  function attributes (e.g. __attribute__((target("avx2,fma"))))
 *
 * ar: MR row pointers; element (i, k) of the A sliver is ar[i][k * cs]
 * (a packed sliver: ar[i] = base + i, cs = MR; rows read in place: cs = 1
 * or the matrix's leading dimension). b: the B sliver, kc steps of NR values
 * bs apart (packed: bs = NR; read in place: the matrix's leading dimension).
 * The tile's product is written to C as
 * C = alpha * AB + beta * C (beta == 0: C is not read). mv, nv: the valid
 * part of the tile at the matrix edges.
 */
#ifndef FSGD_GEMM_UKR_H
#define FSGD_GEMM_UKR_H

/* the k loop with the A stride a compile-time constant where it can be */
#define FSGD_UKR_KLOOP(T, VT, VL, MR, NV, STRIDE)                                             \
    for (int64_t k = 0, off = 0; k < kc; k++, off += (STRIDE)) {                              \
        VT bv[NV];                                                                            \
        _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++)                                  \
            memcpy(&bv[j], b + j * VL, sizeof(VT));                                           \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                 \
        {                                                                                     \
            const T ai = a[i][off];                                                           \
            _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++) acc[i][j] += ai * bv[j];     \
        }                                                                                     \
        b += bs;                                                                              \
    }

#define FSGD_UKR_DEFINE(NAME, T, VT, VL, MR, NV, TARGET)                                      \
    TARGET static void NAME(int64_t kc, const T *const *ar, int64_t cs, const T *restrict b,  \
                            int64_t bs, T *restrict c, int64_t ldc, T alpha, T beta, int mv,  \
                            int nv)                                                           \
    {                                                                                         \
        enum { NR_ = NV * VL };                                                               \
        VT acc[MR][NV];                                                                       \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                 \
            _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++) acc[i][j] = (VT){0};         \
        const T *a[MR];                                                                       \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) a[i] = ar[i];                   \
        if (cs == MR) {                                                                       \
            FSGD_UKR_KLOOP(T, VT, VL, MR, NV, MR)                                             \
        } else if (cs == 1) {                                                                 \
            FSGD_UKR_KLOOP(T, VT, VL, MR, NV, 1)                                              \
        } else {                                                                              \
            FSGD_UKR_KLOOP(T, VT, VL, MR, NV, cs)                                             \
        }                                                                                     \
        if (mv == MR && nv == NR_) {                                                          \
            _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                             \
            {                                                                                 \
                T *ci = c + (int64_t)i * ldc;                                                 \
                _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++)                          \
                {                                                                             \
                    VT r = alpha * acc[i][j];                                                 \
                    if (beta != (T)0) {                                                       \
                        VT cv;                                                                \
                        memcpy(&cv, ci + j * VL, sizeof cv);                                  \
                        r += beta * cv;                                                       \
                    }                                                                         \
                    memcpy(ci + j * VL, &r, sizeof r);                                        \
                }                                                                             \
            }                                                                                 \
        } else {                                                                              \
            T tmp[MR * NR_] __attribute__((aligned(64)));                                     \
            _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                             \
                _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++)                          \
                    memcpy(tmp + i * NR_ + j * VL, &acc[i][j], sizeof(VT));                   \
            for (int i = 0; i < mv; i++) {                                                    \
                T *ci = c + (int64_t)i * ldc;                                                 \
                const T *ti = tmp + i * NR_;                                                  \
                if (beta != (T)0)                                                             \
                    for (int j = 0; j < nv; j++) ci[j] = alpha * ti[j] + beta * ci[j];        \
                else                                                                          \
                    for (int j = 0; j < nv; j++) ci[j] = alpha * ti[j];                       \
            }                                                                                 \
        }                                                                                     \
    }

#endif
