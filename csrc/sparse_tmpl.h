/*
 * A dense layer fed by a sparse (CSR) input, and the conversion of a batch
 * of integer or other-dtype rows into the network's dtype. Included by ops.c
 * once per dtype after act_tmpl.h.
 *
 * Forward: Z[r, :] = f(b + sum over the nonzeros (j, v) of row r of v * W[j, :]).
 * Every element is summed bias first, then the nonzeros in CSR order. A block
 * of up to 8 vectors of the output row stays in registers while the row's
 * nonzeros stream through it; the activation then runs on the whole row.
 *
 * Backward: D becomes dL/dZ (fsgd_act_backward), then dW = X^T D, then
 * db = the column sums of D (fsgd_col_sums). Every element of dW is summed
 * from zero over the batch rows in batch order, a row's nonzeros in CSR
 * order, by one thread: the same bits for any thread count. For that sum the
 * batch's nonzeros are first sorted by column (a stable counting sort, into
 * scratch memory the caller of the range function provides); each row of dW
 * is then summed in registers, block by block of columns, from its column's
 * (row, value) entries, and stored once (which also zeroes it).
 *
 * Each kernel is a serial range function (the forward over a range of batch
 * rows; the backward over a range of rows of dW, all columns, all batch
 * rows) and a thin parallel loop over ranges; the range functions open no
 * parallel region. They run in one of three instances chosen by
 * fsgd_simd_get(): GCC vectors of 16 bytes (the generic path), AVX2 with
 * FMA, and AVX-512F. Within one instance an element is computed by the same
 * operations wherever its column falls (vector block or scalar tail) and
 * however the work is split, so the instances differ from one another only
 * by the rounding of fused multiply-adds.
 *
 * Index checks: a batch row outside [0, X->n_rows) or a column index outside
 * [0, n_in) is never dereferenced and makes the kernel return FSGD_ERR_ARG
 * (the forward gives such a row the bias alone; both kernels skip a row's
 * nonzeros from its first bad column index on).
 */
#ifndef FSGD_SPARSE_ONCE
#define FSGD_SPARSE_ONCE

/* vector types and target attributes: fsgd_internal.h */

/* The instances: SIMD path, dtype, scalar type, vector type, lanes, target. */
#define FSGD_SP_PATHS_PORTABLE_f32(X)                                                         \
    X(GENERIC, f32, float, fsgd_v4f, 4, FSGD_TARGET_NONE)
#define FSGD_SP_PATHS_PORTABLE_f64(X)                                                         \
    X(GENERIC, f64, double, fsgd_v2d, 2, FSGD_TARGET_NONE)
#if FSGD_X86
#define FSGD_SP_PATHS_f32(X)                                                                  \
    FSGD_SP_PATHS_PORTABLE_f32(X)                                                             \
    X(AVX2, f32, float, fsgd_v8f, 8, FSGD_TARGET_AVX2)                                  \
    X(AVX512, f32, float, fsgd_v16f, 16, FSGD_TARGET_AVX512)
#define FSGD_SP_PATHS_f64(X)                                                                  \
    FSGD_SP_PATHS_PORTABLE_f64(X)                                                             \
    X(AVX2, f64, double, fsgd_v4d, 4, FSGD_TARGET_AVX2)                                 \
    X(AVX512, f64, double, fsgd_v8d, 8, FSGD_TARGET_AVX512)
#else
#define FSGD_SP_PATHS_f32(X) FSGD_SP_PATHS_PORTABLE_f32(X)
#define FSGD_SP_PATHS_f64(X) FSGD_SP_PATHS_PORTABLE_f64(X)
#endif

/* Batch rows are visited in a random order, so the hardware cannot guess
 * where the next rows' nonzeros lie. A range of the forward starts by
 * fetching the indices and values of its first FSGD_SP_LEAD rows; then,
 * while row r is summed, those of row r + FSGD_SP_AHEAD and the indptr
 * entry of row r + 2 FSGD_SP_AHEAD are fetched. The backward fetches a
 * group's rows before it sorts them. Only rows inside [0, X->n_rows) are
 * looked up. */
#define FSGD_SP_LEAD 64
#define FSGD_SP_AHEAD 2

/* indptr entry of batch row q, if q < r1 */
static inline void fsgd_sp_prefetch_ptr(const fsgd_csr *X, const int64_t *x_rows, int64_t q,
                                        int64_t r1)
{
    if (q >= r1) return;
    const int64_t xr = x_rows ? x_rows[q] : q;
    if (xr >= 0 && xr < X->n_rows) __builtin_prefetch(X->indptr + xr);
}

/* indices and values of batch row q, if q < r1 (the empty asm keeps the
 * compiler from deleting loops that only prefetch) */
static inline void fsgd_sp_prefetch_data(const fsgd_csr *X, const int64_t *x_rows, int64_t q,
                                         int64_t r1, int64_t tsize)
{
    if (q >= r1) return;
    const int64_t xr = x_rows ? x_rows[q] : q;
    if (xr < 0 || xr >= X->n_rows) return;
    const int64_t k0 = X->indptr[xr], n = X->indptr[xr + 1] - k0;
    const char *pi = (const char *)(X->indices + k0);
    for (int64_t o = 0; o < n * (int64_t)sizeof(int32_t); o += 64) {
        __builtin_prefetch(pi + o);
        __asm__ volatile("");
    }
    const char *pv = (const char *)X->data + k0 * tsize;
    for (int64_t o = 0; o < n * tsize; o += 64) {
        __builtin_prefetch(pv + o);
        __asm__ volatile("");
    }
}

static inline void fsgd_sp_prefetch_start(const fsgd_csr *X, const int64_t *x_rows, int64_t r0,
                                          int64_t r1, int64_t tsize)
{
    for (int64_t q = r0; q < r0 + FSGD_SP_LEAD; q++)
        fsgd_sp_prefetch_data(X, x_rows, q, r1, tsize);
}

static inline void fsgd_sp_prefetch_step(const fsgd_csr *X, const int64_t *x_rows, int64_t r,
                                         int64_t r1, int64_t tsize)
{
    fsgd_sp_prefetch_ptr(X, x_rows, r + 2 * FSGD_SP_AHEAD, r1);
    fsgd_sp_prefetch_data(X, x_rows, r + FSGD_SP_AHEAD, r1, tsize);
}

/* column index j of a nonzero outside [0, n_in) (a negative j wraps to a huge value) */
#define FSGD_SP_BAD_COL(j, n_in) ((uint64_t)(j) >= (uint64_t)(n_in))

/* The backward sorts the batch in groups of at most FSGD_SP_GROUP rows; an
 * entry of a group's sorted nonzeros is (row in the group, value). */
#define FSGD_SP_GROUP 256
typedef struct {
    int32_t r;
    float v;
} fsgd_sp_ent_f32;
typedef struct {
    int32_t r;
    double v;
} fsgd_sp_ent_f64;

/* the nonzeros of batch rows [g0, g0 + gn) (rows with an index out of range
 * have none) */
static inline int64_t fsgd_sp_group_nnz(const fsgd_csr *X, const int64_t *x_rows, int64_t g0,
                                        int64_t gn)
{
    int64_t total = 0;
    for (int64_t g = g0; g < g0 + gn; g++) {
        const int64_t xr = x_rows ? x_rows[g] : g;
        if (xr >= 0 && xr < X->n_rows) total += X->indptr[xr + 1] - X->indptr[xr];
    }
    return total;
}

/* Forward, one row, columns [c, c + NV * VL): the accumulators start at the
 * bias and take the nonzeros k0..k1-1 in order, then go to z. */
/* columns [c, n_out) in blocks of 8, 4, 2 and 1 vectors (c advances; a tail of fewer
   than VL columns is left to the caller) */
#define FSGD_SP_BLOCKS(BLOCK, T, VT, VL)                                                      \
    for (; c + 8 * (VL) <= n_out; c += 8 * (VL)) BLOCK(T, VT, VL, 8);                         \
    if (c + 4 * (VL) <= n_out) {                                                              \
        BLOCK(T, VT, VL, 4);                                                                  \
        c += 4 * (VL);                                                                        \
    }                                                                                         \
    if (c + 2 * (VL) <= n_out) {                                                              \
        BLOCK(T, VT, VL, 2);                                                                  \
        c += 2 * (VL);                                                                        \
    }                                                                                         \
    if (c + (VL) <= n_out) {                                                                  \
        BLOCK(T, VT, VL, 1);                                                                  \
        c += (VL);                                                                            \
    }

#define FSGD_SP_FWD_BLOCK(T, VT, VL, NV)                                                      \
    do {                                                                                      \
        VT acc_[NV];                                                                          \
        _Pragma("GCC unroll 8") for (int i_ = 0; i_ < (NV); i_++)                             \
            memcpy(&acc_[i_], b + c + i_ * (VL), sizeof(VT));                                 \
        for (int64_t k = k0; k < k1; k++) {                                                   \
            const int64_t j = idx[k];                                                         \
            if (FSGD_SP_BAD_COL(j, n_in)) {                                                   \
                bad = 1;                                                                      \
                break;                                                                        \
            }                                                                                 \
            const T v = val[k];                                                               \
            const T *w_ = W + j * n_out + c;                                                  \
            _Pragma("GCC unroll 8") for (int i_ = 0; i_ < (NV); i_++)                         \
            {                                                                                 \
                VT wv_;                                                                       \
                memcpy(&wv_, w_ + i_ * (VL), sizeof wv_);                                     \
                acc_[i_] += v * wv_;                                                          \
            }                                                                                 \
        }                                                                                     \
        _Pragma("GCC unroll 8") for (int i_ = 0; i_ < (NV); i_++)                             \
            memcpy(z + c + i_ * (VL), &acc_[i_], sizeof(VT));                                 \
    } while (0)

/* Backward, row j of dW, columns [c, c + NV * VL): the accumulators start
 * at dW[j, block] (zero for the first group of batch rows) and take the
 * column's entries e0..e1-1 in order, entry e adding ent[e].v times the
 * block of D's row ent[e].r. */
#define FSGD_SP_BWD_BLOCK(T, VT, VL, NV)                                                      \
    do {                                                                                      \
        VT acc_[NV];                                                                          \
        if (first) {                                                                          \
            _Pragma("GCC unroll 8") for (int i_ = 0; i_ < (NV); i_++) acc_[i_] = (VT){0};     \
        } else {                                                                              \
            _Pragma("GCC unroll 8") for (int i_ = 0; i_ < (NV); i_++)                         \
                memcpy(&acc_[i_], w + c + i_ * (VL), sizeof(VT));                             \
        }                                                                                     \
        for (int64_t e = e0; e < e1; e++) {                                                   \
            const T v = ent[e].v;                                                             \
            const T *d_ = Dg + (int64_t)ent[e].r * n_out + c;                                 \
            _Pragma("GCC unroll 8") for (int i_ = 0; i_ < (NV); i_++)                         \
            {                                                                                 \
                VT dv_;                                                                       \
                memcpy(&dv_, d_ + i_ * (VL), sizeof dv_);                                     \
                acc_[i_] += v * dv_;                                                          \
            }                                                                                 \
        }                                                                                     \
        _Pragma("GCC unroll 8") for (int i_ = 0; i_ < (NV); i_++)                             \
            memcpy(w + c + i_ * (VL), &acc_[i_], sizeof(VT));                                 \
    } while (0)

/* One instance (SIMD path PATH, dtype SFX_) of
 *   fsgd_sp_fwd_<PATH>_<SFX>: rows [r0, r1) of the forward, activation
 *     included; FSGD_OK, or FSGD_ERR_ARG after an index out of range;
 *   fsgd_sp_bwd_<PATH>_<SFX>: rows [j0, j1) of dW from a group's sorted
 *     entries (column j's are ent[end[j - j0 - 1]] .. ent[end[j - j0] - 1],
 *     end[-1] = 0; Dg: the group's first row of D; first: the batch's first
 *     group, whose sums start from zero, the others' from dW).
 * Columns go in blocks of 8, 4, 2, 1 vectors. The forward's last partial
 * vector is the row's last VL columns again (recomputed by the same
 * operations, so the columns they share are written with the same values);
 * a forward row narrower than one vector and the backward's last columns
 * take scalar loops. */
#define FSGD_SP_DEFINE(PATH, SFX_, T, VT, VL, TGT)                                            \
    TGT static int fsgd_sp_fwd_##PATH##_##SFX_(int64_t r0, int64_t r1, int64_t n_in,          \
                                               int64_t n_out, const fsgd_csr *X,              \
                                               const int64_t *x_rows, const T *W, const T *b, \
                                               int act, T slope, T *Z)                        \
    {                                                                                         \
        const T *val = (const T *)X->data;                                                    \
        const int32_t *idx = X->indices;                                                      \
        const int64_t *ip = X->indptr;                                                        \
        int bad = 0;                                                                          \
        fsgd_sp_prefetch_start(X, x_rows, r0, r1, sizeof(T));                                 \
        for (int64_t r = r0; r < r1; r++) {                                                   \
            fsgd_sp_prefetch_step(X, x_rows, r, r1, sizeof(T));                               \
            const int64_t xr = x_rows ? x_rows[r] : r;                                        \
            T *restrict z = Z + r * n_out;                                                    \
            if (xr < 0 || xr >= X->n_rows) {                                                  \
                for (int64_t c = 0; c < n_out; c++) z[c] = b[c];                              \
                bad = 1;                                                                      \
                continue;                                                                     \
            }                                                                                 \
            const int64_t k0 = ip[xr], k1 = ip[xr + 1];                                       \
            int64_t c = 0;                                                                    \
            FSGD_SP_BLOCKS(FSGD_SP_FWD_BLOCK, T, VT, VL);                                     \
            if (c < n_out && n_out >= (VL)) {                                                 \
                c = n_out - (VL);                                                             \
                FSGD_SP_FWD_BLOCK(T, VT, VL, 1);                                              \
            } else if (c < n_out) {                                                           \
                for (int64_t cc = c; cc < n_out; cc++) z[cc] = b[cc];                         \
                for (int64_t k = k0; k < k1; k++) {                                           \
                    const int64_t j = idx[k];                                                 \
                    if (FSGD_SP_BAD_COL(j, n_in)) {                                           \
                        bad = 1;                                                              \
                        break;                                                                \
                    }                                                                         \
                    const T v = val[k];                                                       \
                    const T *w_ = W + j * n_out;                                              \
                    for (int64_t cc = c; cc < n_out; cc++) z[cc] += v * w_[cc];               \
                }                                                                             \
            }                                                                                 \
            if (act != FSGD_ACT_LINEAR) act_row_##SFX_(act, slope, n_out, z);                 \
        }                                                                                     \
        return bad ? FSGD_ERR_ARG : FSGD_OK;                                                  \
    }                                                                                         \
                                                                                              \
    TGT static void fsgd_sp_bwd_##PATH##_##SFX_(int64_t j0, int64_t j1, int64_t n_out,        \
                                                const int64_t *end,                           \
                                                const fsgd_sp_ent_##SFX_ *ent, const T *Dg,   \
                                                int first, T *dW)                             \
    {                                                                                         \
        for (int64_t j = j0; j < j1; j++) {                                                   \
            const int64_t e0 = end[j - j0 - 1], e1 = end[j - j0];                             \
            if (e0 == e1 && !first) continue;                                                 \
            T *restrict w = dW + j * n_out;                                                   \
            int64_t c = 0;                                                                    \
            FSGD_SP_BLOCKS(FSGD_SP_BWD_BLOCK, T, VT, VL);                                     \
            for (int64_t cc = c; cc < n_out; cc++) {                                          \
                T a = first ? (T)0 : w[cc];                                                   \
                for (int64_t e = e0; e < e1; e++)                                             \
                    a += ent[e].v * Dg[(int64_t)ent[e].r * n_out + cc];                       \
                w[cc] = a;                                                                    \
            }                                                                                 \
        }                                                                                     \
    }

/* a row of the instance table: its entry in a dispatch table indexed by SIMD path */
#define FSGD_SP_FWD_ENTRY(PATH, SFX_, T, VT, VL, TGT)                                         \
    [FSGD_SIMD_##PATH] = fsgd_sp_fwd_##PATH##_##SFX_,
#define FSGD_SP_BWD_ENTRY(PATH, SFX_, T, VT, VL, TGT)                                         \
    [FSGD_SIMD_##PATH] = fsgd_sp_bwd_##PATH##_##SFX_,

#endif /* FSGD_SPARSE_ONCE */

#define FN(name) FSGD_CAT(name, SFX)

FSGD_CAT(FSGD_SP_PATHS, SFX)(FSGD_SP_DEFINE)

typedef int (*FN(csr_fwd_fn))(int64_t, int64_t, int64_t, int64_t, const fsgd_csr *,
                              const int64_t *, const T *, const T *, int, T, T *);
typedef void (*FN(csr_bwd_fn))(int64_t, int64_t, int64_t, const int64_t *,
                               const FN(fsgd_sp_ent) *, const T *, int, T *);
static const FN(csr_fwd_fn) FN(csr_fwd_table)[FSGD_SIMD_COUNT] = {
    FSGD_CAT(FSGD_SP_PATHS, SFX)(FSGD_SP_FWD_ENTRY)};
static const FN(csr_bwd_fn) FN(csr_bwd_table)[FSGD_SIMD_COUNT] = {
    FSGD_CAT(FSGD_SP_PATHS, SFX)(FSGD_SP_BWD_ENTRY)};

/* the instance of the SIMD path in use (the generic one where a path has none) */
static inline int FN(csr_path)(void)
{
    const int p = fsgd_simd_get();
    return (p >= 0 && p < FSGD_SIMD_COUNT && FN(csr_fwd_table)[p]) ? p : FSGD_SIMD_GENERIC;
}

/* Serial range of the forward: Z rows [r0, r1) of the batch, activation
 * included. Returns FSGD_OK, or FSGD_ERR_ARG after an index out of range. */
static inline int FN(csr_forward_rows)(int64_t r0, int64_t r1, int64_t n_in, int64_t n_out,
                                       const fsgd_csr *X, const int64_t *x_rows, const T *W,
                                       const T *b, int act, T slope, T *Z)
{
    return FN(csr_fwd_table)[FN(csr_path)()](r0, r1, n_in, n_out, X, x_rows, W, b, act, slope,
                                             Z);
}

/* Bytes of scratch FN(csr_backward_dw_rows) needs for rows [j0, j1) of dW
 * and this batch: the counts of j1 - j0 + 1 buckets and the entries of the
 * largest group of batch rows. */
/* the nonzeros of the batch's largest group of rows */
static int64_t FN(csr_batch_most)(int64_t rows, const fsgd_csr *X, const int64_t *x_rows)
{
    int64_t most = 0;
    for (int64_t g0 = 0; g0 < rows; g0 += FSGD_SP_GROUP) {
        const int64_t gn = rows - g0 < FSGD_SP_GROUP ? rows - g0 : FSGD_SP_GROUP;
        const int64_t n = fsgd_sp_group_nnz(X, x_rows, g0, gn);
        most = n > most ? n : most;
    }
    return most;
}

/* scratch of a range of nj rows of dW: the counts of nj + 1 buckets and the entries of
   the largest group (most nonzeros), 64-byte aligned */
static size_t FN(csr_range_bytes)(int64_t nj, int64_t most)
{
    const size_t n = (((size_t)((nj > 0 ? nj : 0) + 2) * sizeof(int64_t) + 63) & ~(size_t)63) +
                     (size_t)most * sizeof(FN(fsgd_sp_ent));
    return (n + 63) & ~(size_t)63;
}

/* Bytes of scratch FN(csr_backward_dw_rows) needs for rows [j0, j1) of dW
 * and this batch. */
static size_t FN(csr_backward_scratch)(int64_t j0, int64_t j1, int64_t rows, const fsgd_csr *X,
                                       const int64_t *x_rows)
{
    return FN(csr_range_bytes)(j1 - j0, FN(csr_batch_most)(rows, X, x_rows));
}

/* Serial range of the backward's dW = X[x_rows]^T D (D already dL/dZ): rows
 * [j0, j1) of dW, every column, over all batch rows. The batch goes in
 * groups of up to FSGD_SP_GROUP rows; a group's nonzeros are sorted by
 * column into scratch (64-byte aligned, FN(csr_backward_scratch) bytes,
 * used by this range alone), then handed to the instance of the SIMD path
 * in use. Returns FSGD_OK, or FSGD_ERR_ARG after an index out of range. */
static int FN(csr_backward_dw_rows)(int64_t j0, int64_t j1, int64_t rows, int64_t n_in,
                                    int64_t n_out, const fsgd_csr *X, const int64_t *x_rows,
                                    const T *D, T *dW, void *scratch)
{
    if (j1 <= j0) return FSGD_OK;
    const T *val = (const T *)X->data;
    const int32_t *idx = X->indices;
    const int64_t *ip = X->indptr;
    const int64_t nj = j1 - j0;
    const FN(csr_bwd_fn) acc = FN(csr_bwd_table)[FN(csr_path)()];
    int64_t kb[FSGD_SP_GROUP], ke[FSGD_SP_GROUP];
    int bad = 0;
    for (int64_t g0 = 0; g0 == 0 || g0 < rows; g0 += FSGD_SP_GROUP) {
        const int64_t gn = rows - g0 < FSGD_SP_GROUP ? rows - g0 : FSGD_SP_GROUP;
        /* the nonzeros k in [kb, ke) of each row of the group (none for a bad row index) */
        for (int64_t g = 0; g < gn; g++) {
            const int64_t xr = x_rows ? x_rows[g0 + g] : g0 + g;
            kb[g] = ke[g] = 0;
            if (xr < 0 || xr >= X->n_rows) {
                bad = 1;
                continue;
            }
            kb[g] = ip[xr];
            ke[g] = ip[xr + 1];
            fsgd_sp_prefetch_data(X, x_rows, g0 + g, rows, sizeof(T));
        }
        const size_t cnt_bytes = ((size_t)(nj + 2) * sizeof(int64_t) + 63) & ~(size_t)63;
        char *ws = (char *)scratch;
        /* Bucket t < nj holds column j0 + t; bucket nj every other column, so that the
           loops below need no branch per nonzero. cnt[t] counts bucket t's entries, then
           becomes its first entry, then one past its last; cnt[-1] is 0. */
        int64_t *cnt = (int64_t *)ws + 1;
        FN(fsgd_sp_ent) *ent = (FN(fsgd_sp_ent) *)(ws + cnt_bytes);
        memset(ws, 0, (size_t)(nj + 2) * sizeof(int64_t));
#define FSGD_SP_BUCKET(j) ((uint64_t)((j) - j0) < (uint64_t)nj ? (j) - j0 : nj)
        for (int64_t g = 0; g < gn; g++) {
            int64_t nbad = 0;
            for (int64_t k = kb[g]; k < ke[g]; k++) {
                const int64_t j = idx[k];
                cnt[FSGD_SP_BUCKET(j)]++;
                nbad += FSGD_SP_BAD_COL(j, n_in);
            }
            if (nbad) {
                /* the row ends before its first column index out of range */
                int64_t k = kb[g];
                while (!FSGD_SP_BAD_COL(idx[k], n_in)) k++;
                for (int64_t q = k; q < ke[g]; q++) cnt[FSGD_SP_BUCKET((int64_t)idx[q])]--;
                ke[g] = k;
                bad = 1;
            }
        }
        for (int64_t t = 0, run = 0; t <= nj; t++) {
            const int64_t n = cnt[t];
            cnt[t] = run;
            run += n;
        }
        for (int64_t g = 0; g < gn; g++) {
            for (int64_t k = kb[g]; k < ke[g]; k++) {
                const int64_t j = idx[k];
                FN(fsgd_sp_ent) *en = ent + cnt[FSGD_SP_BUCKET(j)]++;
                en->r = (int32_t)g;
                en->v = val[k];
            }
        }
#undef FSGD_SP_BUCKET
        acc(j0, j1, n_out, cnt, ent, D + g0 * n_out, g0 == 0, dW);
    }
    return bad ? FSGD_ERR_ARG : FSGD_OK;
}

int FN(fsgd_csr_dense_forward)(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,
                               const fsgd_csr *X, const int64_t *x_rows, const T *W,
                               const T *b, int act, T slope, T *Z)
{
    if (!X || rows < 0 || n_in < 1 || n_out < 1) return FSGD_ERR_ARG;
    const int nt = fsgd_threads_for(nthreads, rows * n_out * 8, FSGD_PAR_MIN);
    int st = FSGD_OK;
    /* nt contiguous ranges of batch rows, one per thread */
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1) reduction(max : st)
#endif
    for (int p = 0; p < nt; p++) {
        const int s = FN(csr_forward_rows)(rows * p / nt, rows * (p + 1) / nt, n_in, n_out, X,
                                           x_rows, W, b, act, slope, Z);
        st = s > st ? s : st;
    }
    return st;
}

int FN(fsgd_csr_dense_backward)(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,
                                const fsgd_csr *X, const int64_t *x_rows, const T *A, int act,
                                T slope, T *D, T *dW, T *db)
{
    if (!X || rows < 0 || n_in < 1 || n_out < 1) return FSGD_ERR_ARG;
    FN(fsgd_act_backward)(nthreads, act, slope, rows, n_out, A, D);
    /* nt contiguous ranges of rows of dW, one per thread */
    const int nt = fsgd_threads_for(nthreads, n_in * n_out, FSGD_PAR_MIN / 4);
    int st = FSGD_OK;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1) reduction(max : st)
#endif
    for (int p = 0; p < nt; p++) {
        /* each thread sorts into its own workspace */
        const int64_t j0 = n_in * p / nt, j1 = n_in * (p + 1) / nt;
        void *scratch = fsgd_workspace(FN(csr_backward_scratch)(j0, j1, rows, X, x_rows));
        const int s = scratch ? FN(csr_backward_dw_rows)(j0, j1, rows, n_in, n_out, X, x_rows,
                                                         D, dW, scratch)
                              : FSGD_ERR_ALLOC;
        st = s > st ? s : st;
    }
    FN(fsgd_col_sums)(nthreads, rows, n_out, D, db);
    return st;
}

/* ---- inside a network's region (see fsgd_team in fsgd_internal.h) ------------ */
/* the team's p-th of k ranges of [0, n) */
#define FSGD_SP_RANGE(n, p, k) ((n) * (p) / (k))

/* team scratch of the backward: the k ranges' scratch, one after another */
static size_t FN(csr_backward_team_scratch)(int k, int64_t rows, int64_t n_in,
                                            const fsgd_csr *X, const int64_t *x_rows)
{
    const int64_t most = FN(csr_batch_most)(rows, X, x_rows);
    size_t total = 0;
    for (int p = 0; p < k; p++)
        total += FN(csr_range_bytes)(FSGD_SP_RANGE(n_in, p + 1, k) - FSGD_SP_RANGE(n_in, p, k),
                                     most);
    return total + 64;
}

static void FN(csr_forward_team)(int64_t rows, int64_t n_in, int64_t n_out, const fsgd_csr *X,
                                 const int64_t *x_rows, const T *W, const T *b, int act,
                                 T slope, T *Z, fsgd_team *team)
{
    int k = 1;
#ifdef _OPENMP
    k = omp_get_num_threads();
#endif
    FSGD_OMP_FOR
    for (int p = 0; p < k; p++) {
        const int st = FN(csr_forward_rows)(FSGD_SP_RANGE(rows, p, k),
                                            FSGD_SP_RANGE(rows, p + 1, k), n_in, n_out, X,
                                            x_rows, W, b, act, slope, Z);
        if (st) FSGD_TEAM_SET(team->status, st);
    }
}

/* D holds dL/dZ when dz, else dL/dA; scratch: csr_backward_team_scratch bytes for
   this team's size */
static void FN(csr_backward_team)(int64_t rows, int64_t n_in, int64_t n_out, const fsgd_csr *X,
                                  const int64_t *x_rows, const T *A, int act, T slope, int dz,
                                  T *D, T *dW, T *db, void *scratch, fsgd_team *team)
{
    if (!dz) FN(act_backward_team)(act, slope, rows, n_out, A, D);
    int k = 1;
#ifdef _OPENMP
    k = omp_get_num_threads();
#endif
    const int64_t most = FN(csr_batch_most)(rows, X, x_rows);
    FSGD_OMP_FOR
    for (int p = 0; p < k; p++) {
        char *ws = (char *)scratch;
        for (int q = 0; q < p; q++)
            ws += FN(csr_range_bytes)(FSGD_SP_RANGE(n_in, q + 1, k) - FSGD_SP_RANGE(n_in, q, k),
                                      most);
        const int st = FN(csr_backward_dw_rows)(FSGD_SP_RANGE(n_in, p, k),
                                                FSGD_SP_RANGE(n_in, p + 1, k), rows, n_in,
                                                n_out, X, x_rows, D, dW, ws);
        if (st) FSGD_TEAM_SET(team->status, st);
    }
    FN(col_sums_team)(rows, n_out, D, db);
}
#undef FSGD_SP_RANGE

/* out[i, :] = (T)X[rows[i], :] * scale + offset for X of another element type
 * (kind: FSGD_IN_* below), and a finiteness check of the result: returns the
 * first batch row (0-based) that holds NaN or infinity, or -1. */
int64_t FN(fsgd_convert_rows)(int nthreads, int kind, int64_t n, int64_t cols, const void *X,
                              int64_t ldx, const int64_t *rows, double scale, double offset,
                              T *out)
{
    const T s = (T)scale, o = (T)offset;
    const int nt = fsgd_threads_for(nthreads, n * cols, FSGD_PAR_MIN);
    int64_t first_bad = n;
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1) reduction(min : first_bad)
#endif
    for (int64_t i = 0; i < n; i++) {
        const int64_t r = rows ? rows[i] : i;
        T *restrict dst = out + i * cols;
#define FSGD_CONVERT_ROW(ST)                                                                  \
    {                                                                                         \
        const ST *restrict src = (const ST *)X + r * ldx;                                     \
        for (int64_t c = 0; c < cols; c++) dst[c] = (T)src[c] * s + o;                        \
    }
        switch (kind) {
        case FSGD_IN_U8: FSGD_CONVERT_ROW(uint8_t) break;
        case FSGD_IN_I8: FSGD_CONVERT_ROW(int8_t) break;
        case FSGD_IN_U16: FSGD_CONVERT_ROW(uint16_t) break;
        case FSGD_IN_I16: FSGD_CONVERT_ROW(int16_t) break;
        case FSGD_IN_I32: FSGD_CONVERT_ROW(int32_t) break;
        case FSGD_IN_I64: FSGD_CONVERT_ROW(int64_t) break;
        case FSGD_IN_F32: FSGD_CONVERT_ROW(float) break;
        default: FSGD_CONVERT_ROW(double) break;
        }
#undef FSGD_CONVERT_ROW
        T acc = (T)0;
        for (int64_t c = 0; c < cols; c++) acc += dst[c] - dst[c];
        if (!(acc == (T)0) && i < first_bad) first_bad = i;
    }
    return first_bad < n ? first_bad : -1;
}

#undef FN
