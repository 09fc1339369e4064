/*
 * GEMM engine template: included by gemm.c once per dtype with
 *   T      scalar type
 *   SFX    f32 or f64
 * defined. BLIS-style loop nest: jc (NC columns) > pc (KC depth, packed B
 * panel shared by the team) > ic (MC rows, packed A block shared by the
 * team) > micro-tiles split statically over threads. Every output element
 * is summed by one thread in the same order for any thread count.
 */
#define FN(name) FSGD_CAT(name, SFX)

/* Packing with the sliver width a compile-time constant (so the copies
 * vectorise); W is the width, the runtime width must equal it. */
#define PACK_A_T(W)                                                                           \
    static void FN(pack_a_t_##W)(const T *A, int64_t lda, const int64_t *rows, int64_t i0,    \
                                 int64_t m, int64_t p0, int64_t kc, T *restrict dst)          \
    {                                                                                         \
        for (int64_t k = 0; k < kc; k++) {                                                    \
            const int64_t r = rows ? rows[p0 + k] : p0 + k;                                   \
            const T *src = A + r * lda + i0;                                                  \
            T *d = dst + k * W;                                                               \
            if (m == W) {                                                                     \
                for (int i = 0; i < W; i++) d[i] = src[i];                                    \
            } else {                                                                          \
                memcpy(d, src, (size_t)m * sizeof(T));                                        \
                memset(d + m, 0, (size_t)(W - m) * sizeof(T));                                \
            }                                                                                 \
        }                                                                                     \
    }
#define PACK_B_N(W)                                                                           \
    static void FN(pack_b_n_##W)(const T *B, int64_t ldb, int64_t j0, int64_t n, int64_t p0,  \
                                 int64_t kc, T *restrict dst)                                 \
    {                                                                                         \
        for (int64_t k = 0; k < kc; k++) {                                                    \
            const T *src = B + (p0 + k) * ldb + j0;                                           \
            T *d = dst + k * W;                                                               \
            if (n == W) {                                                                     \
                for (int j = 0; j < W; j++) d[j] = src[j];                                    \
            } else {                                                                          \
                memcpy(d, src, (size_t)n * sizeof(T));                                        \
                memset(d + n, 0, (size_t)(W - n) * sizeof(T));                                \
            }                                                                                 \
        }                                                                                     \
    }
PACK_A_T(4)
PACK_A_T(6)
PACK_A_T(12)
PACK_B_N(4)
PACK_B_N(8)
PACK_B_N(16)
PACK_B_N(32)
#undef PACK_A_T
#undef PACK_B_N

/* dst[k * ldd + j] = src[j][k] for a block of 16 bytes square (k, j < 16 / sizeof(T)) */
static inline void FN(transpose_block)(const T *const *src, T *dst, int64_t ldd)
{
    if (sizeof(T) == 4) {
        fsgd_v4f r0, r1, r2, r3;
        memcpy(&r0, src[0], 16);
        memcpy(&r1, src[1], 16);
        memcpy(&r2, src[2], 16);
        memcpy(&r3, src[3], 16);
        typedef int fsgd_v4i __attribute__((vector_size(16)));
        const fsgd_v4f t0 = __builtin_shuffle(r0, r1, (fsgd_v4i){0, 4, 1, 5});
        const fsgd_v4f t1 = __builtin_shuffle(r0, r1, (fsgd_v4i){2, 6, 3, 7});
        const fsgd_v4f t2 = __builtin_shuffle(r2, r3, (fsgd_v4i){0, 4, 1, 5});
        const fsgd_v4f t3 = __builtin_shuffle(r2, r3, (fsgd_v4i){2, 6, 3, 7});
        const fsgd_v4f c0 = __builtin_shuffle(t0, t2, (fsgd_v4i){0, 1, 4, 5});
        const fsgd_v4f c1 = __builtin_shuffle(t0, t2, (fsgd_v4i){2, 3, 6, 7});
        const fsgd_v4f c2 = __builtin_shuffle(t1, t3, (fsgd_v4i){0, 1, 4, 5});
        const fsgd_v4f c3 = __builtin_shuffle(t1, t3, (fsgd_v4i){2, 3, 6, 7});
        memcpy(dst, &c0, 16);
        memcpy(dst + ldd, &c1, 16);
        memcpy(dst + 2 * ldd, &c2, 16);
        memcpy(dst + 3 * ldd, &c3, 16);
    } else {
        fsgd_v2d r0, r1;
        memcpy(&r0, src[0], 16);
        memcpy(&r1, src[1], 16);
        typedef long long fsgd_v2l __attribute__((vector_size(16)));
        const fsgd_v2d c0 = __builtin_shuffle(r0, r1, (fsgd_v2l){0, 2});
        const fsgd_v2d c1 = __builtin_shuffle(r0, r1, (fsgd_v2l){1, 3});
        memcpy(dst, &c0, 16);
        memcpy(dst + ldd, &c1, 16);
    }
}

/* dst[k * w + i] = src[i][k] for k < kc and i < m, zero for m <= i < w: a sliver
 * packed from m contiguous rows. Blocks of 16 bytes square (4 x 4 floats, 2 x 2
 * doubles) are transposed in registers, the edges element by element. */
static void FN(pack_transposed)(const T *const *src, int m, int w, int64_t kc, T *restrict dst)
{
    enum { BK = 16 / sizeof(T) };
    const int64_t kb_end = kc / BK * BK;
    const int ib_end = m / BK * BK;
    for (int64_t k = 0; k < kb_end; k += BK)
        for (int i = 0; i < ib_end; i += BK) {
            const T *blk[BK];
            for (int q = 0; q < BK; q++) blk[q] = src[i + q] + k;
            FN(transpose_block)(blk, dst + k * w + i, w);
        }
    for (int i = 0; i < w; i++) {
        const int64_t k0 = i < ib_end ? kb_end : 0;
        for (int64_t k = k0; k < kc; k++) dst[k * w + i] = i < m ? src[i][k] : (T)0;
    }
}

/* pack depth [p0, p0+kc) of op(A) rows [i0, i0+m) into one MR-row sliver */
static void FN(pack_a_sliver)(const FN(kinfo) *ki, int trans, const T *A, int64_t lda,
                              const int64_t *rows, int64_t i0, int64_t m, int64_t p0,
                              int64_t kc, T *restrict dst)
{
    const int mr = ki->mr;
    if (trans) {
        /* op(A)(i, k) = A[row(k), i]: MR contiguous values per k */
        switch (mr) {
        case 4: FN(pack_a_t_4)(A, lda, rows, i0, m, p0, kc, dst); return;
        case 6: FN(pack_a_t_6)(A, lda, rows, i0, m, p0, kc, dst); return;
        case 12: FN(pack_a_t_12)(A, lda, rows, i0, m, p0, kc, dst); return;
        default: break;
        }
        for (int64_t k = 0; k < kc; k++) {
            const int64_t r = rows ? rows[p0 + k] : p0 + k;
            const T *src = A + r * lda + i0;
            for (int i = 0; i < mr; i++) dst[k * mr + i] = i < m ? src[i] : (T)0;
        }
        return;
    }
    /* op(A)(i, k) = A[row(i), k] */
    const T *src[FSGD_MAX_MR];
    for (int i = 0; i < m; i++) src[i] = A + (rows ? rows[i0 + i] : i0 + i) * lda + p0;
    FN(pack_transposed)(src, (int)m, mr, kc, dst);
}

/* pack depth [p0, p0+kc) x columns [j0, j0+n) of op(B) into one NR-column sliver */
static void FN(pack_b_sliver)(const FN(kinfo) *ki, int trans, const T *B, int64_t ldb,
                              int64_t j0, int64_t n, int64_t p0, int64_t kc, T *restrict dst)
{
    const int nr = ki->nr;
    if (!trans) {
        /* op(B)(k, j) = B[k, j] */
        switch (nr) {
        case 4: FN(pack_b_n_4)(B, ldb, j0, n, p0, kc, dst); return;
        case 8: FN(pack_b_n_8)(B, ldb, j0, n, p0, kc, dst); return;
        case 16: FN(pack_b_n_16)(B, ldb, j0, n, p0, kc, dst); return;
        case 32: FN(pack_b_n_32)(B, ldb, j0, n, p0, kc, dst); return;
        default: break;
        }
        for (int64_t k = 0; k < kc; k++) {
            const T *src = B + (p0 + k) * ldb + j0;
            for (int j = 0; j < nr; j++) dst[k * nr + j] = j < n ? src[j] : (T)0;
        }
        return;
    }
    /* op(B)(k, j) = B[j, k] */
    const T *src[FSGD_MAX_NR];
    for (int j = 0; j < n; j++) src[j] = B + (j0 + j) * ldb + p0;
    FN(pack_transposed)(src, (int)n, nr, kc, dst);
}

/* Row pointers of the A sliver at rows [i0, i0+m) and depth p0, and its k-stride.
 * Rows past the edge repeat the last valid row (their results are discarded). */
static int64_t FN(a_sliver_ptrs)(const FN(kinfo) *ki, int mode, int trans, const T *A,
                                 int64_t lda, const int64_t *rows, int64_t i0, int64_t m,
                                 int64_t p0, const T *apack_sliver, const T **ptrs)
{
    const int mr = ki->mr;
    if (mode == 0) { /* packed */
        for (int i = 0; i < mr; i++) ptrs[i] = apack_sliver + i;
        return mr;
    }
    for (int i = 0; i < mr; i++) {
        const int64_t ii = i0 + (i < m ? i : m - 1);
        if (!trans)
            ptrs[i] = A + (rows ? rows[ii] : ii) * lda + p0;
        else
            ptrs[i] = A + p0 * lda + ii;
    }
    return trans ? lda : 1;
}

static void FN(scale_c)(int64_t M, int64_t N, T beta, T *C, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++) {
        T *ci = C + i * ldc;
        if (beta == (T)0)
            for (int64_t j = 0; j < N; j++) ci[j] = (T)0;
        else
            for (int64_t j = 0; j < N; j++) ci[j] *= beta;
    }
}

/* Body run by every thread of the team (or by one thread outside a parallel
 * region: the orphaned worksharing constructs then run serially). */
static void FN(gemm_body)(const FN(kinfo) *ki, int trans_a, int trans_b, int64_t M, int64_t N,
                          int64_t K, T alpha, const T *A, int64_t lda, const int64_t *a_rows,
                          const T *B, int64_t ldb, T beta, T *C, int64_t ldc, int64_t kc_blk,
                          int64_t mc_blk, int direct, int direct_b, T *apack, T *bpack,
                          const FN(fsgd_epi) *epi)
{
    T *colsum = epi && !trans_b ? epi->colsum : NULL;
    /* full slivers of B read in place: not with a transposed B or column sums */
    const int in_place_b = direct_b && !trans_b && !colsum;
    const int mr = ki->mr, nr = ki->nr;
    const T *ptrs[FSGD_MAX_MR];
    for (int64_t jc = 0; jc < N; jc += ki->nc) {
        const int64_t nc = (N - jc < ki->nc) ? N - jc : ki->nc;
        const int64_t n_jr = (nc + nr - 1) / nr;
        for (int64_t pc = 0; pc < K; pc += kc_blk) {
            const int64_t kc = (K - pc < kc_blk) ? K - pc : kc_blk;
            const T beta_eff = (pc == 0) ? beta : (T)1;
            const int last = pc + kc >= K;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
            for (int64_t jr = 0; jr < n_jr; jr++) {
                const int64_t j0 = jc + jr * nr;
                const int64_t n = (jc + nc - j0 < nr) ? jc + nc - j0 : nr;
                if (in_place_b && n == nr) continue;
                T *bs = bpack + jr * nr * kc;
                FN(pack_b_sliver)(ki, trans_b, B, ldb, j0, n, pc, kc, bs);
                if (colsum) { /* column sums of B over K, rows in order, one thread a column */
                    T *restrict cs = colsum + j0;
                    if (pc == 0)
                        for (int64_t j = 0; j < n; j++) cs[j] = (T)0;
                    for (int64_t k = 0; k < kc; k++)
                        for (int64_t j = 0; j < n; j++) cs[j] += bs[k * nr + j];
                }
            }
            for (int64_t ic = 0; ic < M; ic += mc_blk) {
                const int64_t mc = (M - ic < mc_blk) ? M - ic : mc_blk;
                const int64_t n_ir = (mc + mr - 1) / mr;
                if (!direct) {
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
                    for (int64_t ir = 0; ir < n_ir; ir++) {
                        const int64_t i0 = ic + ir * mr;
                        const int64_t m = (ic + mc - i0 < mr) ? ic + mc - i0 : mr;
                        FN(pack_a_sliver)(ki, trans_a, A, lda, a_rows, i0, m, pc, kc,
                                          apack + ir * mr * kc);
                    }
                }
                const int64_t tiles = n_jr * n_ir;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
                for (int64_t t = 0; t < tiles; t++) {
                    const int64_t jr = t / n_ir, ir = t % n_ir;
                    const int64_t i0 = ic + ir * mr, j0 = jc + jr * nr;
                    const int mv = (int)((ic + mc - i0 < mr) ? ic + mc - i0 : mr);
                    const int nv = (int)((jc + nc - j0 < nr) ? jc + nc - j0 : nr);
                    const int64_t cs = FN(a_sliver_ptrs)(ki, direct, trans_a, A, lda, a_rows, i0,
                                                         mv, pc, apack + ir * mr * kc, ptrs);
                    const int b_here = in_place_b && nv == nr;
                    ki->kern(kc, ptrs, cs, b_here ? B + pc * ldb + j0 : bpack + jr * nr * kc,
                             b_here ? ldb : nr, C + i0 * ldc + j0, ldc, alpha, beta_eff, mv, nv);
                    /* the tile is final and still in L1: the epilogue runs on it now */
                    if (last && epi && epi->fn)
                        epi->fn(epi->ctx, i0, j0, mv, nv, C + i0 * ldc + j0, ldc);
                }
            }
        }
    }
}

/* The blocking of one product: the same for every thread count. */
static void FN(gemm_setup)(const FN(kinfo) *ki, int trans_a, const int64_t *a_rows, int64_t M,
                           int64_t N, int64_t K, fsgd_gemm_shape *sh)
{
    const int64_t kk = K < 1 ? 1 : K, mm = M < 1 ? 1 : M, nn = N < 1 ? 1 : N;
    const int64_t ncap = nn < ki->nc ? nn : ki->nc;
    const int64_t nc_pad = (ncap + ki->nr - 1) / ki->nr * ki->nr;
    /* Few rows (one block of A) reuse each packed panel of B only a few times: the
       panel stays within half of a 1 MiB L2, or it is written out and read back. Many
       rows keep KC (the panel then lives in L3, each sliver reused by every A block). */
    int64_t kc_max = ki->kc;
    if (mm <= ki->mc) {
        const int64_t fit = (int64_t)((512 * 1024) / ((size_t)nc_pad * sizeof(T))) & ~(int64_t)7;
        if (fit < kc_max) kc_max = fit < 64 ? 64 : fit;
    }
    const int64_t nkb = (kk + kc_max - 1) / kc_max;
    int64_t kc_blk = (kk + nkb - 1) / nkb;
    sh->kc_blk = (kc_blk + 7) & ~(int64_t)7;
    const int64_t nmb = (mm + ki->mc - 1) / ki->mc;
    const int64_t mc_blk = (mm + nmb - 1) / nmb;
    sh->mc_blk = (mc_blk + ki->mr - 1) / ki->mr * ki->mr;
    /* Read A in place when packing it cannot pay: few column slivers reuse
       each packed A block (packing costs about 1/N of the arithmetic). A
       transposed A with gathered rows is always packed. */
    sh->direct = !(trans_a && a_rows) && N <= 4 * ki->nr;
    /* Read B's full slivers in place when few slivers of A use each (a product of a
       few dozen rows): packing would copy all of B for a few uses of each sliver.
       The micro-tile loads NV vectors of B per MR * NV multiply-adds, which L2
       serves however B's rows are strided. */
    sh->direct_b = M <= 8 * ki->mr;
    const size_t a_bytes = sh->direct ? 0 : (size_t)(sh->mc_blk * sh->kc_blk) * sizeof(T);
    sh->b_off = (a_bytes + 63) & ~(size_t)63;
    sh->bytes = sh->b_off + (size_t)(nc_pad * sh->kc_blk) * sizeof(T) + 64;
}

size_t FN(fsgd_gemm_scratch)(int trans_a, const int64_t *a_rows, int64_t M, int64_t N, int64_t K)
{
    FN(kinfo) ki;
    FN(select_kernel)(&ki);
    fsgd_gemm_shape sh;
    FN(gemm_setup)(&ki, trans_a, a_rows, M, N, K, &sh);
    return sh.bytes;
}

/* The product run by every thread of a team (or by one thread outside a
 * parallel region), with the team's scratch (fsgd_gemm_scratch bytes, 64-byte
 * aligned) and an optional epilogue; ends with a barrier. */
void FN(fsgd_gemm_team)(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, T alpha,
                        const T *A, int64_t lda, const int64_t *a_rows, const T *B, int64_t ldb,
                        T beta, T *C, int64_t ldc, const FN(fsgd_epi) *epi, void *scratch)
{
    if (M == 0 || N == 0 || K == 0 || alpha == (T)0) {
        FSGD_OMP_FOR
        for (int64_t i = 0; i < M; i++) {
            FN(scale_c)(1, N, beta, C + i * ldc, ldc);
            if (epi && epi->fn && N > 0) epi->fn(epi->ctx, i, 0, 1, (int)N, C + i * ldc, ldc);
        }
        if (epi && epi->colsum && !trans_b) {
#ifdef _OPENMP
#pragma omp single
#endif
            for (int64_t j = 0; j < N; j++) {
                T acc = (T)0;
                for (int64_t k = 0; k < K; k++) acc += B[k * ldb + j];
                epi->colsum[j] = acc;
            }
        }
        return;
    }
    FN(kinfo) ki;
    FN(select_kernel)(&ki);
    fsgd_gemm_shape sh;
    FN(gemm_setup)(&ki, trans_a, a_rows, M, N, K, &sh);
    T *apack = (T *)scratch;
    T *bpack = (T *)((char *)scratch + sh.b_off);
    FN(gemm_body)(&ki, trans_a, trans_b, M, N, K, alpha, A, lda, a_rows, B, ldb, beta, C, ldc,
                  sh.kc_blk, sh.mc_blk, sh.direct, sh.direct_b, apack, bpack, epi);
}

int FN(fsgd_gemm)(int nthreads, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                  T alpha, const T *A, int64_t lda, const int64_t *a_rows, const T *B,
                  int64_t ldb, T beta, T *C, int64_t ldc)
{
    if (M < 0 || N < 0 || K < 0) return FSGD_ERR_ARG;
    if (M == 0 || N == 0) return FSGD_OK;
    void *ws = fsgd_workspace(FN(fsgd_gemm_scratch)(trans_a, a_rows, M, N, K));
    if (!ws) return FSGD_ERR_ALLOC;
    const int nt = fsgd_gemm_threads(nthreads, M, N, K);
    FSGD_RUN(nt, FN(fsgd_gemm_team)(trans_a, trans_b, M, N, K, alpha, A, lda, a_rows, B, ldb,
                                    beta, C, ldc, NULL, ws));
    return FSGD_OK;
}

#undef FN
