/*
 * Dense input rows converted into the CSR form the sparse first layer reads
 * (fsgd_csr): for training data that is mostly zeros, done once per fit.
 *
 * The input is n rows of `cols` elements of one fsgd_in_kind (uint8 ...
 * float64), row i at X + i * ldx elements. Each element becomes
 * v = (T)x * (T)scale, the value fsgd_convert_rows gives it with offset 0;
 * a v that is zero (a zero, a negative zero, or a value that underflows) is
 * not stored. Two passes:
 *
 *   fsgd_dense_csr_count: the nonzeros of each row, and the first row with a
 *     value that is NaN or infinite after conversion. The caller turns the
 *     counts into indptr (a prefix sum) and allocates nnz indices and values.
 *   fsgd_dense_csr_fill: each row's column indices (ascending) and values at
 *     indptr[row].
 *
 * Nothing is allocated here. Rows are independent and each is written by one
 * thread, so the result is the same bits for every thread count.
 *
 * Speed: both passes read the data once. The count is a vectorised loop of
 * integer reductions; the fill converts a row into a small buffer with the
 * same vectorised loop for every kind, then packs the buffer's nonzeros with
 * the SIMD path in use (see pass 2 below). On MNIST (60,000 x 784 uint8,
 * 19% nonzero) the two passes take about 7 and 16 ms on one core of a Zen 4
 * (bench/sparse_threshold.py --conversion).
 */
#include "fsgd.h"
#include "fsgd_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* the element types (fsgd_in_kind) the per-kind loops below are expanded for */
#define FSGD_D2C_KINDS(X)                                                                     \
    X(FSGD_IN_U8, uint8_t)                                                                    \
    X(FSGD_IN_I8, int8_t)                                                                     \
    X(FSGD_IN_U16, uint16_t)                                                                  \
    X(FSGD_IN_I16, int16_t)                                                                   \
    X(FSGD_IN_I32, int32_t)                                                                   \
    X(FSGD_IN_I64, int64_t)                                                                   \
    X(FSGD_IN_F32, float)                                                                     \
    X(FSGD_IN_F64, double)

/* Pass 1 over rows [r0, r1) of element type ST: counts[i] = the nonzeros of
 * row i (of X[rows[i]] when rows is not NULL); first_bad = the first row i
 * with a value that is not finite (v - v is 0 only for a finite v). The
 * count and the flag are integer reductions in an integer type as wide as T
 * (UT), so the loop vectorises without narrowing the comparisons. */
#define FSGD_D2C_COUNT_RANGE(ST, T)                                                           \
    for (int64_t i = r0; i < r1; i++) {                                                       \
        const int64_t r = rows ? rows[i] : i;                                                 \
        const ST *restrict src = (const ST *)X + r * ldx;                                     \
        UT nz = 0, bad = 0;                                                                   \
        for (int64_t c = 0; c < cols; c++) {                                                  \
            const T v = (T)src[c] * s;                                                        \
            nz += v != (T)0;                                                                  \
            bad |= (v - v) != (T)0;                                                           \
        }                                                                                     \
        counts[i] = nz;                                                                       \
        if (bad && i < first_bad) first_bad = i;                                              \
    }

/* ---- pass 2 ------------------------------------------------------------------
 * A row is converted FSGD_D2C_CHUNK elements at a time into buf (the same
 * loop for every kind, vectorised by the compiler), then compacted from buf
 * by the SIMD path in use: with AVX2 (and AVX-512), 8 floats (4 doubles)
 * and their column indices are packed by a permutation looked up from the
 * lane mask of the nonzeros; the generic path moves every element of an
 * 8-element group that holds a nonzero, advancing the output position only
 * past nonzeros. A group of zeros is skipped after one test. Full-width
 * stores are used while the row's slots have room for them; near the row's
 * end the group's nonzeros are stored one by one, and a row that would
 * overflow its slots only counts on, so nothing is written outside
 * [indptr[i], indptr[i + 1]). */
#define FSGD_D2C_CHUNK 512

#define FSGD_D2C_STAGE_CASE(KIND, ST)                                                         \
    case KIND: {                                                                              \
        const ST *restrict p_ = (const ST *)X + i * ldx + a;                                  \
        for (int64_t q = 0; q < m; q++) buf[q] = (T)p_[q] * s;                                \
    } break;

/* the nonzeros of buf[j .. j + L) stored one by one (checked) */
#define FSGD_D2C_CHECKED(L)                                                                   \
    for (int64_t q = j; q < j + (L); q++) {                                                   \
        if (buf[q] == (T)0) continue;                                                         \
        if (k < room) {                                                                       \
            idx[k] = (int32_t)(a + q);                                                        \
            val[k] = buf[q];                                                                  \
        }                                                                                     \
        k++;                                                                                  \
    }

/* the range function of one SIMD path: rows [r0, r1), COMPACT taking buf[j ..]
 * in groups (advancing j), the remaining elements checked */
#define FSGD_D2C_FILL_FN(NAME, TARGET, COMPACT)                                               \
    TARGET static int NAME(int kind, int64_t r0, int64_t r1, int64_t cols, const void *X,     \
                           int64_t ldx, T s, const int64_t *indptr, int32_t *indices,         \
                           T *data)                                                           \
    {                                                                                         \
        T buf[FSGD_D2C_CHUNK] __attribute__((aligned(64)));                                   \
        int failed = 0;                                                                       \
        for (int64_t i = r0; i < r1; i++) {                                                   \
            const int64_t room = indptr[i + 1] - indptr[i];                                   \
            int32_t *restrict idx = indices + indptr[i];                                      \
            T *restrict val = data + indptr[i];                                               \
            int64_t k = 0;                                                                    \
            for (int64_t a = 0; a < cols && k <= room; a += FSGD_D2C_CHUNK) {                 \
                const int64_t m = cols - a < FSGD_D2C_CHUNK ? cols - a : FSGD_D2C_CHUNK;      \
                switch (kind) {                                                               \
                    FSGD_D2C_KINDS(FSGD_D2C_STAGE_CASE)                                       \
                default: return 1;                                                            \
                }                                                                             \
                int64_t j = 0;                                                                \
                COMPACT                                                                       \
                FSGD_D2C_CHECKED(m - j)                                                       \
            }                                                                                 \
            failed |= k != room;                                                              \
        }                                                                                     \
        return failed;                                                                        \
    }

#define FSGD_D2C_GENERIC                                                                      \
    for (; j + 8 <= m; j += 8) {                                                              \
        uint32_t any_ = 0;                                                                    \
        for (int q = 0; q < 8; q++) any_ |= buf[j + q] != (T)0;                               \
        if (!any_) continue;                                                                  \
        if (k + 8 <= room) {                                                                  \
            for (int q = 0; q < 8; q++) {                                                     \
                idx[k] = (int32_t)(a + j + q);                                                \
                val[k] = buf[j + q];                                                          \
                k += buf[j + q] != (T)0;                                                      \
            }                                                                                 \
        } else {                                                                              \
            FSGD_D2C_CHECKED(8)                                                               \
        }                                                                                     \
    }

#if FSGD_X86
#include <immintrin.h>

/* AVX2: byte p of fsgd_d2c_lanes[mask] is the lane of the mask's p-th set
 * bit (the permutation that packs an 8-lane vector's selected lanes first) */
#define FSGD_D2C_LB(m, j)                                                                     \
    ((((m) >> (j)) & 1ull) * ((uint64_t)(j) << (8 * __builtin_popcount((m) & ((1u << (j)) - 1)))))
#define FSGD_D2C_LE(m)                                                                        \
    (FSGD_D2C_LB(m, 0) | FSGD_D2C_LB(m, 1) | FSGD_D2C_LB(m, 2) | FSGD_D2C_LB(m, 3) |          \
     FSGD_D2C_LB(m, 4) | FSGD_D2C_LB(m, 5) | FSGD_D2C_LB(m, 6) | FSGD_D2C_LB(m, 7))
#define FSGD_D2C_L4(m)                                                                        \
    FSGD_D2C_LE(m), FSGD_D2C_LE((m) + 1), FSGD_D2C_LE((m) + 2), FSGD_D2C_LE((m) + 3)
#define FSGD_D2C_L16(m)                                                                       \
    FSGD_D2C_L4(m), FSGD_D2C_L4((m) + 4), FSGD_D2C_L4((m) + 8), FSGD_D2C_L4((m) + 12)
#define FSGD_D2C_L64(m)                                                                       \
    FSGD_D2C_L16(m), FSGD_D2C_L16((m) + 16), FSGD_D2C_L16((m) + 32), FSGD_D2C_L16((m) + 48)
static const uint64_t fsgd_d2c_lanes[256] = {FSGD_D2C_L64(0), FSGD_D2C_L64(64),
                                             FSGD_D2C_L64(128), FSGD_D2C_L64(192)};

/* The AVX2 loop over buf[j ..] in groups of W elements: x_ the group (type VT, loaded by
 * LOAD), nz_ its lane mask of nonzeros (MASK), c_ the 8 column indices from a + j; PACK
 * stores the group's nonzeros and their columns at val + k and idx + k, given the
 * permutation q_ of fsgd_d2c_lanes[nz_] (8 32-bit lanes). */
#define FSGD_D2C_AVX2_LOOP(W, VT, LOAD, MASK, PACK)                                           \
    {                                                                                         \
        const __m256i iota_ = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);                      \
        for (; j + (W) <= m; j += (W)) {                                                      \
            const VT x_ = LOAD(buf + j);                                                      \
            const int nz_ = MASK;                                                             \
            if (!nz_) continue;                                                               \
            if (k + (W) > room) {                                                             \
                FSGD_D2C_CHECKED(W)                                                           \
                continue;                                                                     \
            }                                                                                 \
            const __m256i q_ =                                                                \
                _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)fsgd_d2c_lanes[nz_]));      \
            const __m256i c_ = _mm256_add_epi32(iota_, _mm256_set1_epi32((int32_t)(a + j)));  \
            PACK;                                                                             \
            k += __builtin_popcount(nz_);                                                     \
        }                                                                                     \
    }

#define FSGD_D2C_AVX2_f32                                                                     \
    FSGD_D2C_AVX2_LOOP(                                                                       \
        8, __m256, _mm256_load_ps,                                                            \
        _mm256_movemask_ps(_mm256_cmp_ps(x_, _mm256_setzero_ps(), _CMP_NEQ_UQ)), {            \
            _mm256_storeu_ps(val + k, _mm256_permutevar8x32_ps(x_, q_));                      \
            _mm256_storeu_si256((__m256i *)(idx + k), _mm256_permutevar8x32_epi32(c_, q_));   \
        })

/* 4 doubles: the 32-bit lanes 2p and 2p + 1 of each selected double p */
#define FSGD_D2C_AVX2_f64                                                                     \
    FSGD_D2C_AVX2_LOOP(                                                                       \
        4, __m256d, _mm256_load_pd,                                                           \
        _mm256_movemask_pd(_mm256_cmp_pd(x_, _mm256_setzero_pd(), _CMP_NEQ_UQ)), {            \
            const __m256i h_ =                                                                \
                _mm256_permutevar8x32_epi32(q_, _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));   \
            const __m256i p_ = _mm256_add_epi32(_mm256_add_epi32(h_, h_),                     \
                                                _mm256_setr_epi32(0, 1, 0, 1, 0, 1, 0, 1));   \
            const __m256 v_ = _mm256_permutevar8x32_ps(_mm256_castpd_ps(x_), p_);             \
            _mm256_storeu_pd(val + k, _mm256_castps_pd(v_));                                  \
            _mm_storeu_si128((__m128i *)(idx + k),                                            \
                             _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(c_, q_)));    \
        })

#endif

#define FSGD_D2C_COUNT_CASE(KIND, ST)                                                         \
    case KIND: FSGD_D2C_COUNT_RANGE(ST, T) break;

#if FSGD_X86
#define FSGD_D2C_X86_FILLS(SFX)                                                               \
    FSGD_D2C_FILL_FN(fsgd_d2c_fill_avx2_##SFX, FSGD_TARGET_AVX2, FSGD_D2C_AVX2_##SFX)
/* the range function of the SIMD path in use (AVX-512F's compress was no
 * faster than AVX2's permutations here, and slower with float32 input) */
#define FSGD_D2C_FILL_PICK(SFX)                                                               \
    (path >= FSGD_SIMD_AVX2 ? fsgd_d2c_fill_avx2_##SFX : fsgd_d2c_fill_generic_##SFX)
#else
#define FSGD_D2C_X86_FILLS(SFX)
#define FSGD_D2C_FILL_PICK(SFX) fsgd_d2c_fill_generic_##SFX
#endif

/* The functions for the network type T (a macro defined around each
 * expansion, as the *_tmpl.h files take it) with suffix SFX. The count's
 * clones give its conversions AVX2's widening loads where the CPU has them. */
#define FSGD_D2C_DEFINE(SFX)                                                                  \
    FSGD_CLONES static int64_t fsgd_d2c_count_range_##SFX(                                    \
        int kind, int64_t r0, int64_t r1, int64_t cols, const void *X, int64_t ldx,           \
        const int64_t *rows, T s, int64_t *counts)                                            \
    {                                                                                         \
        int64_t first_bad = INT64_MAX;                                                        \
        switch (kind) { FSGD_D2C_KINDS(FSGD_D2C_COUNT_CASE) default: break; }                 \
        return first_bad;                                                                     \
    }                                                                                         \
    FSGD_D2C_FILL_FN(fsgd_d2c_fill_generic_##SFX, FSGD_TARGET_NONE, FSGD_D2C_GENERIC)         \
    FSGD_D2C_X86_FILLS(SFX)                                                                   \
                                                                                              \
    int64_t fsgd_dense_csr_count_##SFX(int nthreads, int kind, int64_t n, int64_t cols,       \
                                       const void *X, int64_t ldx, const int64_t *rows,       \
                                       double scale, int64_t *counts)                         \
    {                                                                                         \
        if (n < 0 || cols < 0 || cols > INT32_MAX || kind < 0 || kind >= FSGD_IN_COUNT)       \
            return -2;                                                                        \
        if (n == 0) return -1;                                                                \
        const T s = (T)scale;                                                                 \
        const int nt = fsgd_threads_for(nthreads, n * cols, FSGD_PAR_MIN);                    \
        int64_t first_bad = INT64_MAX;                                                        \
        FSGD_D2C_PARALLEL(reduction(min : first_bad))                                         \
        for (int p = 0; p < nt; p++) {                                                        \
            const int64_t bad = fsgd_d2c_count_range_##SFX(                                   \
                kind, FSGD_D2C_SPLIT(n, p, nt), FSGD_D2C_SPLIT(n, p + 1, nt), cols, X, ldx,   \
                rows, s, counts);                                                             \
            if (bad < first_bad) first_bad = bad;                                             \
        }                                                                                     \
        return first_bad == INT64_MAX ? -1 : first_bad;                                       \
    }                                                                                         \
                                                                                              \
    int fsgd_dense_csr_fill_##SFX(int nthreads, int kind, int64_t n, int64_t cols,            \
                                  const void *X, int64_t ldx, double scale,                   \
                                  const int64_t *indptr, int32_t *indices, T *data)           \
    {                                                                                         \
        if (n < 0 || cols < 0 || cols > INT32_MAX || kind < 0 || kind >= FSGD_IN_COUNT)       \
            return FSGD_ERR_ARG;                                                              \
        if (n == 0) return FSGD_OK;                                                           \
        const T s = (T)scale;                                                                 \
        const int nt = fsgd_threads_for(nthreads, n * cols, FSGD_PAR_MIN);                    \
        const int path = fsgd_simd_get();                                                     \
        int failed = 0;                                                                       \
        (void)path;                                                                           \
        FSGD_D2C_PARALLEL(reduction(| : failed))                                              \
        for (int p = 0; p < nt; p++)                                                          \
            failed |= FSGD_D2C_FILL_PICK(SFX)(kind, FSGD_D2C_SPLIT(n, p, nt),                 \
                                              FSGD_D2C_SPLIT(n, p + 1, nt), cols, X, ldx, s,  \
                                              indptr, indices, data);                         \
        return failed ? FSGD_ERR_ARG : FSGD_OK;                                               \
    }

/* thread p of nt takes rows [SPLIT(n, p, nt), SPLIT(n, p + 1, nt)): n / nt each, the
   first n % nt one more */
#define FSGD_D2C_SPLIT(n, p, nt)                                                              \
    ((int64_t)(p) * ((n) / (nt)) + ((int64_t)(p) < (n) % (nt) ? (int64_t)(p) : (n) % (nt)))

#ifdef _OPENMP
#define FSGD_D2C_PRAGMA(x) _Pragma(#x)
#define FSGD_D2C_PARALLEL(clause)                                                             \
    FSGD_D2C_PRAGMA(omp parallel for schedule(static, 1) num_threads(nt) if (nt > 1) clause)
#else
#define FSGD_D2C_PARALLEL(clause)
#endif

#define T float
#define UT uint32_t
FSGD_D2C_DEFINE(f32)
#undef T
#undef UT
#define T double
#define UT uint64_t
FSGD_D2C_DEFINE(f64)
#undef T
#undef UT
