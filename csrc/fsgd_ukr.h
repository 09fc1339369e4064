/*
 * Register-tiled GEMM micro-kernel, instantiated once per dtype and SIMD path.
 *
 * Parameters (macros defined by the includer):
 *   UKR_NAME    function name
 *   UKR_T       scalar type
 *   UKR_VT      vector type of UKR_VL scalars (GCC vector extension)
 *   UKR_VL      lanes per vector
 *   UKR_MR      rows of the tile
 *   UKR_NV      vectors per tile row (NR = UKR_NV * UKR_VL)
 *   UKR_TARGET  function attributes (e.g. __attribute__((target("avx2,fma"))))
 *
 * ar: UKR_MR row pointers; element (i, k) of the A sliver is ar[i][k * cs]
 * (a packed sliver: ar[i] = base + i, cs = UKR_MR; rows read in place:
 * cs = 1 or the matrix's leading dimension). b: packed B sliver, kc steps of
 * NR values, 64-byte aligned. The tile's product is written to C as
 * C = alpha * AB + beta * C (beta == 0: C is not read). mv, nv: the valid
 * part of the tile at the matrix edges.
 */
#define UKR_NR (UKR_NV * UKR_VL)

UKR_TARGET static void UKR_NAME(int64_t kc, const UKR_T *const *ar, int64_t cs,
                                const UKR_T *restrict b,
                                UKR_T *restrict c, int64_t ldc, UKR_T alpha, UKR_T beta,
                                int mv, int nv)
{
    UKR_VT acc[UKR_MR][UKR_NV];
#pragma GCC unroll 16
    for (int i = 0; i < UKR_MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < UKR_NV; j++) acc[i][j] = (UKR_VT){0};

    const UKR_T *a[UKR_MR];
#pragma GCC unroll 16
    for (int i = 0; i < UKR_MR; i++) a[i] = ar[i];
    /* the same loop with the k-stride a compile-time constant for packed
       slivers (stride MR) and rows read in place (stride 1) */
#define UKR_KLOOP(STRIDE)                                                      \
    for (int64_t k = 0, off = 0; k < kc; k++, off += (STRIDE)) {               \
        UKR_VT bv[UKR_NV];                                                     \
        _Pragma("GCC unroll 4")                                                \
        for (int j = 0; j < UKR_NV; j++) bv[j] = *(const UKR_VT *)(b + j * UKR_VL); \
        _Pragma("GCC unroll 16")                                               \
        for (int i = 0; i < UKR_MR; i++) {                                     \
            const UKR_T ai = a[i][off];                                        \
            _Pragma("GCC unroll 4")                                            \
            for (int j = 0; j < UKR_NV; j++) acc[i][j] += ai * bv[j];          \
        }                                                                      \
        b += UKR_NR;                                                           \
    }
    if (cs == UKR_MR) {
        UKR_KLOOP(UKR_MR)
    } else if (cs == 1) {
        UKR_KLOOP(1)
    } else {
        UKR_KLOOP(cs)
    }
#undef UKR_KLOOP

    if (mv == UKR_MR && nv == UKR_NR) {
#pragma GCC unroll 16
        for (int i = 0; i < UKR_MR; i++) {
            UKR_T *ci = c + (int64_t)i * ldc;
#pragma GCC unroll 4
            for (int j = 0; j < UKR_NV; j++) {
                UKR_VT r = alpha * acc[i][j];
                if (beta != (UKR_T)0) {
                    UKR_VT cv;
                    memcpy(&cv, ci + j * UKR_VL, sizeof cv);
                    r += beta * cv;
                }
                memcpy(ci + j * UKR_VL, &r, sizeof r);
            }
        }
    } else {
        UKR_T tmp[UKR_MR * UKR_NR] __attribute__((aligned(64)));
#pragma GCC unroll 16
        for (int i = 0; i < UKR_MR; i++)
#pragma GCC unroll 4
            for (int j = 0; j < UKR_NV; j++)
                memcpy(tmp + i * UKR_NR + j * UKR_VL, &acc[i][j], sizeof(UKR_VT));
        for (int i = 0; i < mv; i++) {
            UKR_T *ci = c + (int64_t)i * ldc;
            const UKR_T *ti = tmp + i * UKR_NR;
            if (beta != (UKR_T)0)
                for (int j = 0; j < nv; j++) ci[j] = alpha * ti[j] + beta * ci[j];
            else
                for (int j = 0; j < nv; j++) ci[j] = alpha * ti[j];
        }
    }
}

#undef UKR_NR
