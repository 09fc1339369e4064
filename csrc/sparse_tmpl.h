/*
 * A dense layer fed by a sparse (CSR) input, and the conversion of a batch
 * of integer or other-dtype rows into the network's dtype. Included by ops.c
 * once per dtype after act_tmpl.h.
 *
 * Forward: Z[r, :] = f(b + sum over the nonzeros (j, v) of row r of v * W[j, :]).
 * Every element is summed bias first, then the nonzeros in CSR order. A block
 * of up to 8 vectors of the output row stays in registers while the row's
 * nonzeros stream through it; the activation then runs on the whole row.
 * Rows go two at a time, their nonzeros in turn, so that the two rows' sums
 * (independent chains of multiply-adds) overlap: each row's operations are
 * the ones it gets alone, so the bits are too.
 *
 * In a training step (fsgd_net_train_batch) the forward also files each
 * batch row's nonzeros in per-column buckets (see FSGD_SP_BUCKET_BYTES), and
 * the backward sums each row of dW in registers from its column's bucket,
 * without the sort or the tiles below: MNIST rows, 64 units, one thread,
 * about 5% less time per epoch than the tiles (the filing costs the forward
 * most of what it saves the backward: its stores scatter over every column).
 * A bucket that would overflow (a column repeated in a row), a bad index or
 * a batch over the budget leaves the backward to the methods below. A team
 * of two to eight threads splits the training step by input columns instead
 * of batch rows (see Panels), so that each core keeps its own rows of W, dW
 * and the optimizer's state.
 *
 * Backward: D becomes dL/dZ (fsgd_act_backward), then dW = X^T D, then
 * db = the column sums of D (fsgd_col_sums). Every element of dW is summed
 * from zero over the batch rows in batch order, a row's nonzeros in CSR
 * order, by one thread: the same bits for any thread count, from the buckets
 * or by either of two methods. On one thread, a narrow layer (a row of dW of at most
 * FSGD_SP_TILE_ROW bytes) whose batch rows hold ascending column indices (as
 * fastsgd's Python side always passes them) is summed in tiles of rows of dW
 * that fit L1: for each tile, the batch rows in order add their nonzeros that
 * fall in it, each row's walk resuming where the last tile stopped (no sort;
 * about 10-15% less time than sorting for MNIST rows and 64 units). A nonzero
 * met before the tile it belongs to (rows not in ascending order), a column
 * index out of range or a bad batch row makes the thread sum again the
 * second way, which always works and is what a team of several threads does
 * (split by columns, the tiles were slower there): the team first sorts the
 * batch's nonzeros by column (a stable counting sort in groups of batch
 * rows; each thread sorts its share of a group's rows into a
 * segment of its own, so that no thread writes where another does and no
 * thread waits for another until all are sorted); each row of dW is then
 * summed in registers, block by block of columns, from its column's
 * (row, value) entries, segment after segment, and stored once per group
 * (which also zeroes it). The threads take ranges of rows of dW holding
 * about equal numbers of entries.
 *
 * The forward is a serial range function over batch rows, run by each
 * thread of the team on its range. The kernels run in one of three
 * instances chosen by fsgd_simd_get(): GCC vectors of 16 bytes (the generic
 * path), AVX2 with FMA, and AVX-512F. Within one instance an element is
 * computed by the same operations wherever its column falls (vector block or
 * scalar tail) and however the work is split, so the instances differ from
 * one another only by the rounding of fused multiply-adds.
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
 * where the next rows' nonzeros lie. A range of the forward (and of the
 * backward's sort) starts by fetching the indices and values of its first
 * FSGD_SP_LEAD rows; then, while row r is summed, those of row
 * r + FSGD_SP_AHEAD and the indptr entry of row r + 2 FSGD_SP_AHEAD are
 * fetched, into L2 (rows that far ahead would crowd L1). Only rows inside
 * [0, X->n_rows) are looked up. On MNIST rows (about 150 nonzeros) 8 rows
 * ahead made the 64-unit forward about 10% faster than 2 rows into L1. */
#define FSGD_SP_LEAD 16
#define FSGD_SP_AHEAD 8

/* the nonzeros [*k0, *k1) of batch row r; returns 0 for a row index outside
   [0, X->n_rows) (which has none) */
static inline int fsgd_sp_span(const fsgd_csr *X, const int64_t *x_rows, int64_t r, int64_t *k0,
                               int64_t *k1)
{
    const int64_t xr = x_rows ? x_rows[r] : r;
    *k0 = *k1 = 0;
    if (xr < 0 || xr >= X->n_rows) return 0;
    *k0 = X->indptr[xr];
    *k1 = X->indptr[xr + 1];
    return 1;
}

/* indptr entry of batch row q, if q < r1 (the empty asm keeps the compiler from
   dropping the prefetch) */
static inline void fsgd_sp_prefetch_ptr(const fsgd_csr *X, const int64_t *x_rows, int64_t q,
                                        int64_t r1)
{
    if (q >= r1) return;
    const int64_t xr = x_rows ? x_rows[q] : q;
    if (xr >= 0 && xr < X->n_rows) {
        __builtin_prefetch(X->indptr + xr);
        __asm__ volatile("");
    }
}

/* indices and values of batch row q, if q < r1 (the empty asm keeps the
 * compiler from deleting loops that only prefetch) */
static inline void fsgd_sp_prefetch_data(const fsgd_csr *X, const int64_t *x_rows, int64_t q,
                                         int64_t r1, int64_t tsize)
{
    int64_t k0, k1;
    if (q >= r1 || !fsgd_sp_span(X, x_rows, q, &k0, &k1)) return;
    const int64_t n = k1 - k0;
    const char *pi = (const char *)(X->indices + k0);
    for (int64_t o = 0; o < n * (int64_t)sizeof(int32_t); o += 64) {
        __builtin_prefetch(pi + o, 0, 1);
        __asm__ volatile("");
    }
    const char *pv = (const char *)X->data + k0 * tsize;
    for (int64_t o = 0; o < n * tsize; o += 64) {
        __builtin_prefetch(pv + o, 0, 1);
        __asm__ volatile("");
    }
}

/* the same for the part [t / k, (t + 1) / k) of the row (and 16 nonzeros either side):
   about what panel t of k will read of it (see Panels) */
static inline void fsgd_sp_prefetch_part(const fsgd_csr *X, const int64_t *x_rows, int64_t q,
                                         int64_t r1, int64_t tsize, int t, int k)
{
    int64_t k0, k1;
    if (q >= r1 || !fsgd_sp_span(X, x_rows, q, &k0, &k1)) return;
    const int64_t n = k1 - k0;
    int64_t a = k0 + n * t / k - 16, b = k0 + n * (t + 1) / k + 16;
    a = a < k0 ? k0 : a;
    b = b > k1 ? k1 : b;
    const char *pi = (const char *)(X->indices + a);
    for (int64_t o = 0; o < (b - a) * (int64_t)sizeof(int32_t); o += 64) {
        __builtin_prefetch(pi + o, 0, 1);
        __asm__ volatile("");
    }
    const char *pv = (const char *)X->data + a * tsize;
    for (int64_t o = 0; o < (b - a) * tsize; o += 64) {
        __builtin_prefetch(pv + o, 0, 1);
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

/* fsgd_sp_prefetch_start and fsgd_sp_prefetch_step for panel t of k */
static inline void fsgd_sp_pprefetch_start(const fsgd_csr *X, const int64_t *x_rows, int64_t r1,
                                           int64_t tsize, int t, int k)
{
    for (int64_t q = 0; q < FSGD_SP_LEAD; q++)
        fsgd_sp_prefetch_part(X, x_rows, q, r1, tsize, t, k);
}

static inline void fsgd_sp_pprefetch_step(const fsgd_csr *X, const int64_t *x_rows, int64_t r,
                                          int64_t r1, int64_t tsize, int t, int k)
{
    fsgd_sp_prefetch_ptr(X, x_rows, r + 2 * FSGD_SP_AHEAD, r1);
    fsgd_sp_prefetch_part(X, x_rows, r + FSGD_SP_AHEAD, r1, tsize, t, k);
}

/* column index j of a nonzero outside [0, n_in) (a negative j wraps to a huge value) */
#define FSGD_SP_BAD_COL(j, n_in) ((uint64_t)(j) >= (uint64_t)(n_in))

/* The tiled backward: one thread, layers whose row of dW takes at most
 * FSGD_SP_TILE_ROW bytes, in tiles of about FSGD_SP_TILE_BYTES of dW (at
 * least 8 rows). */
#define FSGD_SP_TILE_ROW 512
#define FSGD_SP_TILE_BYTES 32768

/* The batch is sorted in groups of at most FSGD_SP_GROUP rows; an entry of a
 * group's sorted nonzeros is (row in the group, value). */
#define FSGD_SP_GROUP 256
typedef struct {
    int32_t r;
    float v;
} fsgd_sp_ent_f32;
typedef struct {
    int32_t r;
    double v;
} fsgd_sp_ent_f64;

/* Where a team of k keeps the sorted batch, in bytes from the start of the
 * sparse scratch (each part 64-byte aligned). Thread t's share of group g's
 * rows is segment g k + t; a column's entries in the segments of a group, in
 * segment order, follow the batch order.
 *   colend  per segment, n_in + 1 entry offsets, `stride` apart (a multiple
 *           of 8, so that no two threads write to one cache line): the
 *           segment's entries of column j are ent[colend[j]] ..
 *           ent[colend[j + 1] - 1], in batch-row order;
 *   ent     the batch's nonzeros (the last part: its size is the batch's);
 *           a segment's start at the number of nonzeros that the batch's
 *           rows before its own have by indptr. */
typedef struct {
    int64_t groups, stride;
    size_t colend, ent;
} fsgd_sp_layout;

#define FSGD_SP_ALIGN(n) (((n) + 63) & ~(size_t)63)

static inline fsgd_sp_layout fsgd_sp_layout_of(int64_t rows, int64_t n_in, int k)
{
    fsgd_sp_layout L;
    L.groups = rows > 0 ? (rows + FSGD_SP_GROUP - 1) / FSGD_SP_GROUP : 1;
    L.stride = (int64_t)(FSGD_SP_ALIGN((size_t)((n_in > 0 ? n_in : 0) + 1) * sizeof(int64_t)) /
                         sizeof(int64_t));
    L.colend = 0;
    L.ent = FSGD_SP_ALIGN((size_t)L.groups * (size_t)k * (size_t)L.stride * sizeof(int64_t));
    return L;
}

/* the nonzeros of the batch (rows with an index out of range have none) */
static inline int64_t fsgd_sp_batch_nnz(const fsgd_csr *X, const int64_t *x_rows, int64_t rows)
{
    int64_t total = 0;
    for (int64_t r = 0; r < rows; r++) {
        int64_t k0, k1;
        fsgd_sp_span(X, x_rows, r, &k0, &k1);
        total += k1 - k0;
    }
    return total;
}

/* the entries of columns [0, j) in the k segments whose offsets start at colend,
   stride apart */
static inline int64_t fsgd_sp_before(const int64_t *colend, int64_t stride, int k, int64_t j)
{
    int64_t n = 0;
    for (int s = 0; s < k; s++) n += colend[s * stride + j] - colend[s * stride];
    return n;
}

/* the first row j of dW whose entries before it in those segments plus j reach want
   (n_in when none does) */
static inline int64_t fsgd_sp_row_at(const int64_t *colend, int64_t stride, int k, int64_t n_in,
                                     int64_t want)
{
    int64_t lo = 0, hi = n_in;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (fsgd_sp_before(colend, stride, k, mid) + mid < want) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* group g's rows [g0, g0 + gn), and thread t's share [*a, *b) of them */
static inline void fsgd_sp_share(int64_t rows, int64_t g, int t, int k, int64_t *g0,
                                 int64_t *a, int64_t *b)
{
    *g0 = g * FSGD_SP_GROUP;
    const int64_t gn = rows - *g0 < FSGD_SP_GROUP ? rows - *g0 : FSGD_SP_GROUP;
    *a = *g0 + gn * t / k;
    *b = *g0 + gn * (t + 1) / k;
}

/* Buckets: during a training step's forward, each thread also files its
 * range of batch rows by column, so that the backward need not sort. The
 * batch is split into K segments, segment p holding batch rows [rows p / K,
 * rows (p + 1) / K) (cap rows: the bucket of a column has room for one entry
 * per row); a team of k threads uses K = 2 k, thread t the segments 2 t and
 * 2 t + 1, and sums the rows of the first with those of the second two at a
 * time, filing both rows' nonzeros as it goes (each segment in batch order,
 * so the segments one after another are too; on MNIST, one thread, about 1%
 * less time per epoch than pairs of neighbouring rows whose second row's
 * nonzeros were filed after the pair). A training step in panels (below)
 * uses one segment. Laid out from the 64-byte aligned start bk:
 *   cnt   per segment, n_in int32 counts (entries in each column's bucket);
 *   flag  per segment, an int on a cache line of its own: 1 when the segment
 *         could not be filed (a bucket full, a bad column or batch row);
 *   ent   per segment, n_in buckets of cap entries (row in the batch, value):
 *         column j's at ent + j cap, in batch-row order.
 * Only a batch whose entries take at most FSGD_SP_BUCKET_BYTES is filed, by
 * a team of at most FSGD_SP_BK_SEGS threads. */
#define FSGD_SP_BUCKET_BYTES ((size_t)16 << 20)
#define FSGD_SP_BK_SEGS 16

static inline size_t fsgd_sp_bk_cnt_bytes(int64_t n_in)
{
    return FSGD_SP_ALIGN((size_t)n_in * sizeof(int32_t));
}

/* bytes of k segments of buckets with entries of esz bytes; 0 when over budget */
static inline size_t fsgd_sp_bk_bytes(int64_t rows, int64_t n_in, int k, size_t esz)
{
    if (rows < 1 || n_in < 1 || k < 1 || k > FSGD_SP_BK_SEGS ||
        (size_t)rows > FSGD_SP_BUCKET_BYTES / esz / (size_t)n_in)
        return 0;
    return (size_t)k * (fsgd_sp_bk_cnt_bytes(n_in) + 64) + (size_t)n_in * (size_t)rows * esz +
           64;
}

/* segment p of k: its capacity, counts, flag and entries */
typedef struct {
    int64_t cap;
    int32_t *cnt;
    int *flag;
    char *ent;
} fsgd_sp_bk_seg;

static inline fsgd_sp_bk_seg fsgd_sp_bk_at(char *bk, int64_t rows, int64_t n_in, int k, int p,
                                           size_t esz)
{
    fsgd_sp_bk_seg S;
    const size_t cb = fsgd_sp_bk_cnt_bytes(n_in);
    const int64_t r0 = rows * p / k;
    S.cap = rows * (p + 1) / k - r0;
    S.cnt = (int32_t *)(bk + (size_t)p * cb);
    S.flag = (int *)(bk + (size_t)k * cb + 64 * (size_t)p);
    S.ent = bk + (size_t)k * (cb + 64) + (size_t)n_in * (size_t)r0 * esz;
    return S;
}

/* thread t of k's rows [*j0, *j1) of dW from the nseg segments seg: where the entries
   of the columns before plus one per column pass t / k and (t + 1) / k of their total */
static inline void fsgd_sp_bk_range(const fsgd_sp_bk_seg *seg, int nseg, int64_t n_in, int k,
                                    int t, int64_t *j0, int64_t *j1)
{
    *j0 = 0;
    *j1 = n_in;
    if (k == 1) return;
#define FSGD_SP_BK_COL(j, n)                                                                  \
    do {                                                                                      \
        n = 1;                                                                                \
        for (int p_ = 0; p_ < nseg; p_++) n += seg[p_].cnt[j];                                \
    } while (0)
    int64_t total = 0, cum = 0, j = 0, n;
    for (int64_t i = 0; i < n_in; i++) {
        FSGD_SP_BK_COL(i, n);
        total += n;
    }
    const int64_t w0 = total * t / k, w1 = total * (t + 1) / k;
    for (; j < n_in && cum < w0; j++) {
        FSGD_SP_BK_COL(j, n);
        cum += n;
    }
    *j0 = j;
    for (; j < n_in && cum < w1; j++) {
        FSGD_SP_BK_COL(j, n);
        cum += n;
    }
    *j1 = j;
#undef FSGD_SP_BK_COL
}

/* columns [c, n_out) in blocks of 8, 4, 2 and 1 vectors (c advances; a tail of fewer
   than VL columns is left to the caller) */
#define FSGD_SP_BLOCKS(BLOCK, T, VT, VL)                                                      \
    for (; c + 8 * (VL) <= n_out; c += 8 * (VL)) BLOCK(T, VT, VL, 8);                         \
    FSGD_SP_BLOCKS_4(BLOCK, T, VT, VL)
/* the same from blocks of 4 vectors down */
#define FSGD_SP_BLOCKS_4(BLOCK, T, VT, VL)                                                    \
    for (; c + 4 * (VL) <= n_out; c += 4 * (VL)) BLOCK(T, VT, VL, 4);                         \
    if (c + 2 * (VL) <= n_out) {                                                              \
        BLOCK(T, VT, VL, 2);                                                                  \
        c += 2 * (VL);                                                                        \
    }                                                                                         \
    if (c + (VL) <= n_out) {                                                                  \
        BLOCK(T, VT, VL, 1);                                                                  \
        c += (VL);                                                                            \
    }

/* STMT for each nonzero k (column j) of the row's [k0, k1), up to its first column
   index outside [0, n_in), which sets bad */
#define FSGD_SP_EACH_NZ(STMT)                                                                 \
    for (int64_t k = k0; k < k1; k++) {                                                       \
        const int64_t j = idx[k];                                                             \
        if (FSGD_SP_BAD_COL(j, n_in)) {                                                       \
            bad = 1;                                                                          \
            break;                                                                            \
        }                                                                                     \
        STMT;                                                                                 \
    }

/* acc[i] += v * the i-th vector at src, for the NV vectors of a block */
#define FSGD_SP_ACC(VT, VL, NV, acc, v, src)                                                  \
    do {                                                                                      \
        const __typeof__(*(src)) *s_ = (src);                                                 \
        const __typeof__(*(src)) v_ = (v);                                                    \
        _Pragma("GCC unroll 8") for (int i_ = 0; i_ < (NV); i_++)                             \
        {                                                                                     \
            VT x_;                                                                            \
            memcpy(&x_, s_ + i_ * (VL), sizeof x_);                                           \
            (acc)[i_] += v_ * x_;                                                             \
        }                                                                                     \
    } while (0)
/* a block's NV accumulators from src, and to dst */
#define FSGD_SP_LOAD(VT, VL, NV, acc, src)                                                    \
    _Pragma("GCC unroll 8") for (int i_ = 0; i_ < (NV); i_++)                                 \
        memcpy(&(acc)[i_], (src) + i_ * (VL), sizeof(VT));
#define FSGD_SP_STORE(VT, VL, NV, dst, acc)                                                   \
    _Pragma("GCC unroll 8") for (int i_ = 0; i_ < (NV); i_++)                                 \
        memcpy((dst) + i_ * (VL), &(acc)[i_], sizeof(VT));

/* Forward, one row, columns [c, c + NV * VL): the accumulators start at the
 * bias and take the row's nonzeros k0..k1-1 in order, then go to z. */
#define FSGD_SP_FWD_BLOCK(T, VT, VL, NV)                                                      \
    do {                                                                                      \
        VT acc_[NV];                                                                          \
        FSGD_SP_LOAD(VT, VL, NV, acc_, b + c);                                                \
        FSGD_SP_EACH_NZ(FSGD_SP_ACC(VT, VL, NV, acc_, val[k], W + j * n_out + c))             \
        FSGD_SP_STORE(VT, VL, NV, z + c, acc_);                                               \
    } while (0)

/* e over column j's entries in the nseg segments whose offsets start at end, stride
   apart, in segment order */
#define FSGD_SP_EACH_ENT(STMT)                                                                \
    for (int s_ = 0; s_ < nseg; s_++)                                                         \
        for (int64_t e = end[s_ * stride + j], e1_ = end[s_ * stride + j + 1]; e < e1_; e++) \
            STMT;

/* Backward, row j of dW, columns [c, c + NV * VL): the accumulators start
 * at dW[j, block] (zero for the first group of batch rows) and take the
 * column's entries in order, entry e adding ent[e].v times the block of D's
 * row ent[e].r. */
#define FSGD_SP_BWD_BLOCK(T, VT, VL, NV)                                                      \
    do {                                                                                      \
        VT acc_[NV];                                                                          \
        if (first) {                                                                          \
            _Pragma("GCC unroll 8") for (int i_ = 0; i_ < (NV); i_++) acc_[i_] = (VT){0};     \
        } else {                                                                              \
            FSGD_SP_LOAD(VT, VL, NV, acc_, w + c);                                            \
        }                                                                                     \
        FSGD_SP_EACH_ENT(                                                                     \
            FSGD_SP_ACC(VT, VL, NV, acc_, ent[e].v, Dg + (int64_t)ent[e].r * n_out + c))      \
        FSGD_SP_STORE(VT, VL, NV, w + c, acc_);                                               \
    } while (0)

/* columns [c, n_out) of a pair of rows: as FSGD_SP_BLOCKS, but blocks of 8
   vectors only where 64-byte vectors come with 32 registers (AVX-512) */
#define FSGD_SP_BLOCKS2(BLOCK, T, VT, VL)                                                     \
    if ((VL) * sizeof(T) == 64)                                                               \
        for (; c + 8 * (VL) <= n_out; c += 8 * (VL)) BLOCK(T, VT, VL, 8);                     \
    FSGD_SP_BLOCKS_4(BLOCK, T, VT, VL)

/* files (row, value) as the next entry of column j's bucket (counts cnt, entries
   ent, cap entries a bucket), or runs FULL when the bucket is full */
#define FSGD_SP_FILE1(cnt, ent, cap, row, j, value, FULL)                                     \
    do {                                                                                      \
        const int32_t c_ = (cnt)[j];                                                          \
        if (c_ >= (cap)) {                                                                    \
            FULL;                                                                             \
        } else {                                                                              \
            __typeof__(ent) e_ = (ent) + (j) * (cap) + c_;                                    \
            e_->r = (int32_t)(row);                                                           \
            e_->v = (value);                                                                  \
            (cnt)[j] = c_ + 1;                                                                \
        }                                                                                     \
    } while (0)

/* files nonzero k (column j) of batch row ra in its segment's buckets while fa, and
   of row rb in its segment's while fb */
#define FSGD_SP_FILE_A(j, k)                                                                  \
    if (fa) FSGD_SP_FILE1(bcnt, bent, bcap, ra, j, val[k], fa = fb = 0; bfail = 1);
#define FSGD_SP_FILE_B(j, k)                                                                  \
    if (fb) FSGD_SP_FILE1(bcnt2, bent2, bcap2, rb, j, val[k], fa = fb = 0; bfail = 1);

/* one row's nonzeros from kk up to kend (or its first bad column) into acc,
   each (column j_) followed by THEN */
#define FSGD_SP_FWD_REST(VT, VL, NV, kk, kend, acc, THEN)                                    \
    for (; kk < kend; kk++) {                                                                 \
        const int64_t j_ = idx[kk];                                                           \
        if (FSGD_SP_BAD_COL(j_, n_in)) {                                                      \
            bad = 1;                                                                          \
            break;                                                                            \
        }                                                                                     \
        FSGD_SP_ACC(VT, VL, NV, acc, val[kk], W + j_ * n_out + c);                            \
        THEN                                                                                  \
    }

/* Forward of one batch row RR alone (every block, the activation), filing its
 * nonzeros in bucket segment bk[SEG] (when bk and nothing failed yet); a batch
 * row outside the data gets the bias alone and sets bad. */
#define FSGD_SP_FWD_ONE(T, VT, VL, SFX_, RR, SEG)                                             \
    do {                                                                                      \
        const int64_t r_ = (RR);                                                              \
        T *restrict z = Z + r_ * n_out;                                                       \
        int64_t k0, k1;                                                                       \
        if (!fsgd_sp_span(X, x_rows, r_, &k0, &k1)) {                                         \
            for (int64_t c = 0; c < n_out; c++) z[c] = b[c];                                  \
            bad = 1;                                                                          \
            break;                                                                            \
        }                                                                                     \
        int64_t c = 0;                                                                        \
        FSGD_SP_BLOCKS(FSGD_SP_FWD_BLOCK, T, VT, VL);                                         \
        if (c < n_out && n_out >= (VL)) {                                                     \
            c = n_out - (VL);                                                                 \
            FSGD_SP_FWD_BLOCK(T, VT, VL, 1);                                                  \
        } else if (c < n_out) {                                                               \
            for (int64_t cc = c; cc < n_out; cc++) z[cc] = b[cc];                             \
            FSGD_SP_EACH_NZ(for (int64_t cc = c; cc < n_out; cc++) z[cc] +=                  \
                            val[k] * W[j * n_out + cc])                                       \
        }                                                                                     \
        if (act != FSGD_ACT_LINEAR) act_row_##SFX_(act, slope, n_out, z);                     \
        if (bk && !bfail)                                                                     \
            bfail = fsgd_sp_file_##SFX_(r_, k0, k1, 0, n_in, idx, val, &bk[SEG]);             \
    } while (0)

/* Forward, two rows at once (row ra's nonzeros [k0, k1) to za, row rb's
 * [m0, m1) to zb), columns [c, c + NV * VL): each row's accumulators take
 * its nonzeros in order, as FSGD_SP_FWD_BLOCK's do, the two rows' in turn
 * while both have some (independent sums for the vector units to overlap).
 * The first block also files row ra's nonzeros while fa and row rb's while
 * fb, each in its own segment (the pair's caller has n_out >= VL, so a
 * first block always runs). */
#define FSGD_SP_FWD2_ANY(T, VT, VL, NV, PA, PB, FILEA, FILEB)                                \
    do {                                                                                      \
        VT acc_[NV], acc2_[NV];                                                               \
        FSGD_SP_LOAD(VT, VL, NV, acc_, (PA) + c);                                             \
        FSGD_SP_LOAD(VT, VL, NV, acc2_, (PB) + c);                                            \
        int64_t ka_ = k0, kb_ = m0;                                                           \
        for (; ka_ < k1 && kb_ < m1; ka_++, kb_++) {                                          \
            const int64_t ja_ = idx[ka_], jb_ = idx[kb_];                                     \
            if (FSGD_SP_BAD_COL(ja_, n_in) || FSGD_SP_BAD_COL(jb_, n_in)) break;              \
            FSGD_SP_ACC(VT, VL, NV, acc_, val[ka_], W + ja_ * n_out + c);                     \
            FSGD_SP_ACC(VT, VL, NV, acc2_, val[kb_], W + jb_ * n_out + c);                    \
            FILEA(ja_, ka_)                                                                   \
            FILEB(jb_, kb_)                                                                   \
        }                                                                                     \
        FSGD_SP_FWD_REST(VT, VL, NV, ka_, k1, acc_, FILEA(j_, ka_))                           \
        FSGD_SP_FWD_REST(VT, VL, NV, kb_, m1, acc2_, FILEB(j_, kb_))                          \
        FSGD_SP_STORE(VT, VL, NV, za + c, acc_);                                              \
        FSGD_SP_STORE(VT, VL, NV, zb + c, acc2_);                                             \
        fa = fb = 0;                                                                          \
    } while (0)
#define FSGD_SP_FWD2_BLOCK(T, VT, VL, NV)                                                     \
    FSGD_SP_FWD2_ANY(T, VT, VL, NV, b, b, FSGD_SP_FILE_A, FSGD_SP_FILE_B)
#define FSGD_SP_FILE_NONE(j, k)

/* STMT for each entry en (type ET) of column j's buckets, segment after segment */
#define FSGD_SP_EACH_BK(ET, STMT)                                                             \
    for (int p_ = 0; p_ < k; p_++) {                                                          \
        const ET *en = (const ET *)seg[p_].ent + j * seg[p_].cap;                             \
        for (const ET *en1_ = en + seg[p_].cnt[j]; en < en1_; en++) STMT;                     \
    }

/* Panels: a training step of a team of k threads (2 <= k <= FSGD_PANELS_MAX) with
 * buckets splits the first layer's input columns into k panels of whole 64-byte
 * lines of counts, thread t taking panel t's nonzeros of every batch row, its
 * buckets, its rows of dW (the backward) and its rows of W and of the optimizer's
 * state (the step; fsgd_team's pflat). No line of W, dW or the state then passes
 * between the cores, where a split by batch rows makes every core read all of W
 * and the step take each line it writes from another core. The sums keep their
 * order: batch rows go in groups, thread t sums its panel of a group's rows onto
 * the partial sums thread t - 1 left for them (their row's nonzeros so far, in
 * CSR order, bias first) once thread t - 1 is done with the group, so each
 * element takes the same operations as on one thread, and the bits are the
 * same. The walk of panel t stops at a row's first column at or past the
 * panel's end (the next thread goes on from there), so a row whose columns are
 * not ascending still sums in CSR order; its nonzeros outside the panel are not
 * filed, and the backward sorts the batch instead. The panels' bounds follow
 * fsgd_csr's col_cum (a sample's nonzeros per column) where the caller gave it;
 * they decide who does what, never what is computed.
 * The shared state, from a 64-byte aligned start:
 *   kpos, kend  per batch row: where the next panel's walk starts, where the
 *               row ends (its first bad column, if any);
 *   part[2]     partial sums, rows x n_out each: thread t reads part[(t-1)&1]
 *               and writes part[t&1], the last thread writes Z;
 *   prog        per thread, on a line of its own: groups done. */
typedef struct {
    int64_t *kpos, *kend;
    char *part[2];
    int *prog;
    int64_t group;
} fsgd_sp_pipe;

#define FSGD_SP_PROG_STRIDE 16 /* ints: one 64-byte line each */

static inline size_t fsgd_sp_pipe_bytes(int64_t rows, int64_t n_out, int k, size_t tsize)
{
    return 2 * FSGD_SP_ALIGN((size_t)rows * sizeof(int64_t)) +
           2 * FSGD_SP_ALIGN((size_t)rows * (size_t)n_out * tsize) + (size_t)k * 64 + 64;
}

static inline fsgd_sp_pipe fsgd_sp_pipe_at(char *p, int64_t rows, int64_t n_out, size_t tsize)
{
    fsgd_sp_pipe P;
    const size_t ib = FSGD_SP_ALIGN((size_t)rows * sizeof(int64_t));
    const size_t pb = FSGD_SP_ALIGN((size_t)rows * (size_t)n_out * tsize);
    P.kpos = (int64_t *)p;
    P.kend = (int64_t *)(p + ib);
    P.part[0] = p + 2 * ib;
    P.part[1] = p + 2 * ib + pb;
    P.prog = (int *)(p + 2 * ib + 2 * pb);
    /* about 16 groups of an even number of rows (pairs) */
    P.group = ((rows / 16) + 1) & ~(int64_t)1;
    if (P.group < 2) P.group = 2;
    return P;
}

/* the bounds pcol[0..k] of a team of k's panels (see Panels): whole lines of
   counts, about equal shares of X->col_cum but for the last thread's, 15% smaller
   (it also waits for the others' last rows and applies the activation; on MNIST,
   two threads, a step about 3% faster than equal shares), or equal numbers of
   columns without it; 0 when the layer has fewer than two lines of columns per
   thread */
static inline int fsgd_sp_panel_cols(const fsgd_csr *X, int64_t n_in, int k, int64_t *pcol)
{
    const int64_t line = 64 / (int64_t)sizeof(int32_t);
    if (k < 2 || n_in < 2 * line * k) return 0;
    const int64_t *cum = X->col_cum;
    const double total = cum ? (double)cum[n_in] : 0.0;
    pcol[0] = 0;
    pcol[k] = n_in;
    for (int t = 1; t < k; t++) {
        int64_t j = n_in * t / k;
        if (cum && total > 0.0) {
            const double want = total * t / ((double)k - 0.15);
            int64_t lo = 0, hi = n_in;
            while (lo < hi) {
                const int64_t mid = lo + (hi - lo) / 2;
                if ((double)cum[mid] < want) lo = mid + 1;
                else hi = mid;
            }
            j = lo;
        }
        j = (j + line / 2) / line * line;
        const int64_t least = pcol[t - 1] + line, most = n_in - line * (k - t);
        pcol[t] = j < least ? least : (j > most ? most : j);
    }
    return 1;
}

/* the end of the group of batch rows that starts at g0: groups of up to P->group
   rows, smaller at both ends (2, 2, 4, 8, ... and ..., 8, 4, 2, 2 rows), where one
   thread waits for the other's first group and the other for its last one */
static inline int64_t fsgd_sp_group_end(const fsgd_sp_pipe *P, int64_t g0, int64_t rows)
{
    int64_t n = P->group;
    if (g0 < n) n = g0 < 2 ? 2 : g0;
    const int64_t half = ((rows - g0) / 2) & ~(int64_t)1;
    if (half < n) n = half < 2 ? 2 : half;
    return g0 + n < rows ? g0 + n : rows;
}

/* wait until thread u has finished `want` groups */
static inline void fsgd_sp_wait(const fsgd_sp_pipe *P, int u, int want)
{
    const int *flag = P->prog + (size_t)u * FSGD_SP_PROG_STRIDE;
    unsigned spins = 0;
    while (__atomic_load_n(flag, __ATOMIC_ACQUIRE) < want) {
#if FSGD_X86
        __builtin_ia32_pause();
#endif
#if FSGD_HAVE_YIELD
        if (++spins % 4096 == 0) sched_yield(); /* a core shared with other work */
#else
        (void)spins;
#endif
    }
}

static inline void fsgd_sp_publish(const fsgd_sp_pipe *P, int t, int done)
{
    __atomic_store_n(P->prog + (size_t)t * FSGD_SP_PROG_STRIDE, done, __ATOMIC_RELEASE);
}

/* where batch row r's walk in this panel starts and where the row ends */
static inline void fsgd_sp_pstart(const fsgd_csr *X, const int64_t *x_rows,
                                  const fsgd_sp_pipe *P, int t, int64_t r, int64_t *k,
                                  int64_t *e, int *bad)
{
    if (t == 0) {
        if (!fsgd_sp_span(X, x_rows, r, k, e)) *bad = 1; /* no nonzeros: the bias alone */
    } else {
        *k = P->kpos[r];
        *e = P->kend[r];
    }
}

/* the end of panel [.., hi)'s walk of a row from k (to e): its first column at or
   past hi; a column outside [0, n_in) there ends the row (and sets bad). Records
   where the next panel starts. */
static inline int64_t fsgd_sp_pstop(const int32_t *idx, const fsgd_sp_pipe *P, int64_t r,
                                    int64_t k, int64_t e, int64_t hi, int64_t n_in, int *bad)
{
    while (k < e && (uint64_t)(int64_t)idx[k] < (uint64_t)hi) k++;
    if (k < e && FSGD_SP_BAD_COL(idx[k], n_in)) {
        *bad = 1;
        e = k;
    }
    P->kpos[r] = k;
    P->kend[r] = e;
    return k;
}

/* files nonzero k (column j) of batch row ra in this panel's buckets, while fa: a
   column before the panel (a row whose columns are not ascending) fails the filing */
#define FSGD_SP_FILE_P(j, k)                                                                  \
    if (fa) {                                                                                 \
        if ((j) < plo) {                                                                      \
            fa = 0;                                                                           \
            bfail = 1;                                                                        \
        } else {                                                                              \
            FSGD_SP_FILE1(bcnt, bent, bcap, ra, j, val[k], fa = 0; bfail = 1);                \
        }                                                                                     \
    }

/* A panel's forward of one row (from pa, to za; its nonzeros [k0, k1), all inside
 * [0, n_in)), columns [c, c + NV * VL); the first block also files them while fa. */
#define FSGD_SP_FWDP1_BLOCK(T, VT, VL, NV)                                                    \
    do {                                                                                      \
        VT acc_[NV];                                                                          \
        FSGD_SP_LOAD(VT, VL, NV, acc_, pa + c);                                               \
        for (int64_t ka_ = k0; ka_ < k1; ka_++) {                                             \
            const int64_t ja_ = idx[ka_];                                                     \
            FSGD_SP_ACC(VT, VL, NV, acc_, val[ka_], W + ja_ * n_out + c);                     \
            FSGD_SP_FILE_P(ja_, ka_)                                                          \
        }                                                                                     \
        FSGD_SP_STORE(VT, VL, NV, za + c, acc_);                                              \
        fa = 0;                                                                               \
    } while (0)

/* The same for two rows at once (row ra's [k0, k1) from pa to za, row rb's [m0, m1)
 * from pb to zb; their columns already checked, as are the one row's above), their
 * nonzeros in turn as in FSGD_SP_FWD2_BLOCK, the first block filing row ra's (row
 * rb's are filed after the pair). */
#define FSGD_SP_FWDP2_BLOCK(T, VT, VL, NV)                                                    \
    FSGD_SP_FWD2_ANY(T, VT, VL, NV, pa, pb, FSGD_SP_FILE_P, FSGD_SP_FILE_NONE)

/* Backward from the buckets, row j of dW, columns [c, c + NV * VL): the
 * accumulators start at zero and take the column's entries in batch order. */
#define FSGD_SP_BKT_BLOCK(T, VT, VL, NV)                                                      \
    do {                                                                                      \
        VT acc_[NV];                                                                          \
        _Pragma("GCC unroll 8") for (int i_ = 0; i_ < (NV); i_++) acc_[i_] = (VT){0};         \
        FSGD_SP_EACH_BK(bk_ent_t,                                                             \
                        FSGD_SP_ACC(VT, VL, NV, acc_, en->v, D + (int64_t)en->r * n_out + c)) \
        FSGD_SP_STORE(VT, VL, NV, w + c, acc_);                                               \
    } while (0)

/* Tiled backward, columns [c, c + NV * VL) of the tile's rows [ja, je) of dW
 * (zeroed before): batch row r, in order, adds val[k] times its block of D
 * to the block of row idx[k] of dW for each of its nonzeros from beg[r] on
 * whose column lies in the tile; cur[r] becomes where it stopped. A column
 * below ja sets odd. */
#define FSGD_SP_TILE_BLOCK(T, VT, VL, NV)                                                     \
    do {                                                                                      \
        for (int64_t r = 0; r < rows; r++) {                                                  \
            VT d_[NV];                                                                        \
            FSGD_SP_LOAD(VT, VL, NV, d_, D + r * n_out + c);                                  \
            int64_t k = beg[r];                                                               \
            for (const int64_t k1 = end[r]; k < k1; k++) {                                    \
                const int64_t j = idx[k];                                                     \
                if (j >= je) break;                                                           \
                if (j < ja) {                                                                 \
                    odd = 1;                                                                  \
                    break;                                                                    \
                }                                                                             \
                T *w_ = dW + j * n_out + c;                                                   \
                const T v_ = val[k];                                                          \
                _Pragma("GCC unroll 8") for (int i_ = 0; i_ < (NV); i_++)                     \
                {                                                                             \
                    VT x_;                                                                    \
                    memcpy(&x_, w_ + i_ * (VL), sizeof x_);                                   \
                    x_ += v_ * d_[i_];                                                        \
                    memcpy(w_ + i_ * (VL), &x_, sizeof x_);                                   \
                }                                                                             \
            }                                                                                 \
            cur[r] = k;                                                                       \
        }                                                                                     \
    } while (0)

/* One instance (SIMD path PATH, dtype SFX_) of
 *   fsgd_sp_fwd_<PATH>_<SFX>: rows [r0, r1) of the forward, activation
 *     included; FSGD_OK, or FSGD_ERR_ARG after an index out of range;
 *   fsgd_sp_tile_<PATH>_<SFX>: rows [j0, j1) of dW by the tiled backward,
 *     tiles of J rows; batch row r's nonzeros in [beg[r], end[r]) from the
 *     first one at or above column j0 (given in cur[r], which ends where the
 *     walk stopped); returns 1 when a column lay before its tile;
 *   fsgd_sp_bwd_<PATH>_<SFX>: rows [j0, j1) of dW from a group's sorted
 *     entries (its nseg segments' column offsets start at end, stride apart;
 *     Dg: the group's first row of D; first: the batch's first group, whose
 *     sums start from zero, the others' from dW).
 * Columns go in blocks of 8, 4, 2, 1 vectors. The forward's last partial
 * vector is the row's last VL columns again (recomputed by the same
 * operations, so the columns they share are written with the same values);
 * a forward row narrower than one vector and the backward's last columns
 * take scalar loops. */
#define FSGD_SP_DEFINE(PATH, SFX_, T, VT, VL, TGT)                                            \
    TGT static int fsgd_sp_fwd_##PATH##_##SFX_(int64_t r0, int64_t r1, int64_t n_in,          \
                                               int64_t n_out, const fsgd_csr *X,              \
                                               const int64_t *x_rows, const T *W, const T *b, \
                                               int act, T slope, T *Z,                        \
                                               const fsgd_sp_bk_seg *bk)                      \
    {                                                                                         \
        const T *val = (const T *)X->data;                                                    \
        const int32_t *idx = X->indices;                                                      \
        typedef fsgd_sp_ent_##SFX_ bk_ent_t;                                                  \
        int bad = 0, bfail = 0;                                                               \
        const int64_t h = bk ? r0 + bk[0].cap : r0 + (r1 - r0) / 2;                           \
        int32_t *bcnt = bk ? bk[0].cnt : NULL, *bcnt2 = bk ? bk[1].cnt : NULL;                \
        bk_ent_t *bent = bk ? (bk_ent_t *)bk[0].ent : NULL;                                   \
        bk_ent_t *bent2 = bk ? (bk_ent_t *)bk[1].ent : NULL;                                  \
        const int64_t bcap = bk ? bk[0].cap : 0, bcap2 = bk ? bk[1].cap : 0;                  \
        if (bk) {                                                                             \
            memset(bcnt, 0, (size_t)n_in * sizeof(int32_t));                                  \
            memset(bcnt2, 0, (size_t)n_in * sizeof(int32_t));                                 \
            *bk[0].flag = *bk[1].flag = 0;                                                    \
        }                                                                                     \
        const int64_t npair = h - r0 < r1 - h ? h - r0 : r1 - h;                              \
        fsgd_sp_prefetch_start(X, x_rows, r0, h, sizeof(T));                                  \
        fsgd_sp_prefetch_start(X, x_rows, h, r1, sizeof(T));                                  \
        for (int64_t i = 0; i < npair; i++) {                                                 \
            const int64_t ra = r0 + i, rb = h + i;                                            \
            fsgd_sp_prefetch_step(X, x_rows, ra, h, sizeof(T));                               \
            fsgd_sp_prefetch_step(X, x_rows, rb, r1, sizeof(T));                              \
            int64_t k0, k1, m0, m1;                                                           \
            if (n_out >= (VL) && fsgd_sp_span(X, x_rows, ra, &k0, &k1) &&                     \
                fsgd_sp_span(X, x_rows, rb, &m0, &m1)) {                                      \
                T *restrict za = Z + ra * n_out;                                              \
                T *restrict zb = Z + rb * n_out;                                              \
                int fa = bk && !bfail, fb = fa;                                               \
                int64_t c = 0;                                                                \
                FSGD_SP_BLOCKS2(FSGD_SP_FWD2_BLOCK, T, VT, VL);                               \
                if (c < n_out) {                                                              \
                    c = n_out - (VL);                                                         \
                    FSGD_SP_FWD2_BLOCK(T, VT, VL, 1);                                         \
                }                                                                             \
                if (act != FSGD_ACT_LINEAR) {                                                 \
                    act_row_##SFX_(act, slope, n_out, za);                                    \
                    act_row_##SFX_(act, slope, n_out, zb);                                    \
                }                                                                             \
                continue;                                                                     \
            }                                                                                 \
            FSGD_SP_FWD_ONE(T, VT, VL, SFX_, ra, 0);                                          \
            FSGD_SP_FWD_ONE(T, VT, VL, SFX_, rb, 1);                                          \
        }                                                                                     \
        for (int64_t r = r0 + npair; r < h; r++) FSGD_SP_FWD_ONE(T, VT, VL, SFX_, r, 0);      \
        for (int64_t r = h + npair; r < r1; r++) FSGD_SP_FWD_ONE(T, VT, VL, SFX_, r, 1);      \
        if (bk) *bk[0].flag = *bk[1].flag = bfail || bad;                                     \
        return bad ? FSGD_ERR_ARG : FSGD_OK;                                                  \
    }                                                                                         \
                                                                                              \
    TGT static int fsgd_sp_fwdp_##PATH##_##SFX_(int t, int k, int64_t rows, int64_t n_in,     \
                                                int64_t n_out, const fsgd_csr *X,             \
                                                const int64_t *x_rows, const T *W, const T *b,\
                                                int act, T slope, T *Z,                       \
                                                const fsgd_sp_bk_seg *bk,                     \
                                                const fsgd_sp_pipe *P, const int64_t *pcol,   \
                                                int *pfail)                                   \
    {                                                                                         \
        const T *val = (const T *)X->data;                                                    \
        const int32_t *idx = X->indices;                                                      \
        typedef fsgd_sp_ent_##SFX_ bk_ent_t;                                                  \
        int bad = 0, bfail = 0;                                                               \
        int32_t *bcnt = bk->cnt;                                                              \
        bk_ent_t *bent = (bk_ent_t *)bk->ent;                                                 \
        const int64_t bcap = bk->cap;                                                         \
        const int64_t plo = pcol[t], phi = pcol[t + 1];                                       \
        const int last = t == k - 1;                                                          \
        const T *in = t > 0 ? (const T *)P->part[(t - 1) & 1] : NULL;                         \
        T *out = last ? Z : (T *)P->part[t & 1];                                              \
        const size_t row_bytes = (size_t)n_out * sizeof(T);                                   \
        memset(bcnt + plo, 0, (size_t)(phi - plo) * sizeof(int32_t));                         \
        fsgd_sp_pprefetch_start(X, x_rows, rows, sizeof(T), t, k);                            \
        int done = 0;                                                                         \
        for (int64_t g0 = 0, g1; g0 < rows; g0 = g1) {                                        \
            g1 = fsgd_sp_group_end(P, g0, rows);                                              \
            if (t > 0) {                                                                      \
                fsgd_sp_wait(P, t - 1, done + 1);                                             \
                for (int64_t q = g0; q < g1; q++)                                             \
                    for (size_t o = 0; o < row_bytes; o += 64)                                \
                        __builtin_prefetch((const char *)(in + q * n_out) + o);               \
            }                                                                                 \
            for (int64_t r = g0; r < g1; r++) {                                               \
                fsgd_sp_pprefetch_step(X, x_rows, r, rows, sizeof(T), t, k);                  \
                const int64_t ra = r;                                                         \
                int64_t k0, k1, m0 = 0, m1 = 0;                                               \
                fsgd_sp_pstart(X, x_rows, P, t, r, &k0, &k1, &bad);                           \
                k1 = fsgd_sp_pstop(idx, P, r, k0, k1, phi, n_in, &bad);                       \
                const T *pa = t > 0 ? in + r * n_out : b;                                     \
                T *restrict za = out + r * n_out;                                             \
                int fa = !bfail, fb = 0;                                                      \
                (void)fb;                                                                     \
                int64_t c = 0;                                                                \
                if (r + 1 < g1) {                                                             \
                    fsgd_sp_pprefetch_step(X, x_rows, r + 1, rows, sizeof(T), t, k);          \
                    const int64_t rb = r + 1;                                                 \
                    fsgd_sp_pstart(X, x_rows, P, t, rb, &m0, &m1, &bad);                      \
                    m1 = fsgd_sp_pstop(idx, P, rb, m0, m1, phi, n_in, &bad);                  \
                    const T *pb = t > 0 ? in + rb * n_out : b;                                \
                    T *restrict zb = out + rb * n_out;                                        \
                    FSGD_SP_BLOCKS2(FSGD_SP_FWDP2_BLOCK, T, VT, VL);                          \
                    if (c < n_out) {                                                          \
                        c = n_out - (VL);                                                     \
                        FSGD_SP_FWDP2_BLOCK(T, VT, VL, 1);                                    \
                    }                                                                         \
                    if (last && act != FSGD_ACT_LINEAR) {                                     \
                        act_row_##SFX_(act, slope, n_out, za);                                \
                        act_row_##SFX_(act, slope, n_out, zb);                                \
                    }                                                                         \
                    if (!bfail)                                                               \
                        bfail = fsgd_sp_file_##SFX_(rb, m0, m1, plo, n_in, idx, val, bk);     \
                    r++;                                                                      \
                    continue;                                                                 \
                }                                                                             \
                FSGD_SP_BLOCKS(FSGD_SP_FWDP1_BLOCK, T, VT, VL);                               \
                if (c < n_out) {                                                              \
                    c = n_out - (VL);                                                         \
                    FSGD_SP_FWDP1_BLOCK(T, VT, VL, 1);                                        \
                }                                                                             \
                if (last && act != FSGD_ACT_LINEAR) act_row_##SFX_(act, slope, n_out, za);    \
            }                                                                                 \
            fsgd_sp_publish(P, t, ++done);                                                    \
        }                                                                                     \
        *pfail = bfail;                                                                       \
        return bad ? FSGD_ERR_ARG : FSGD_OK;                                                  \
    }                                                                                         \
                                                                                              \
    TGT static int fsgd_sp_tile_##PATH##_##SFX_(int64_t j0, int64_t j1, int64_t J,            \
                                                int64_t rows, int64_t n_out,                  \
                                                const fsgd_csr *X, const T *D, int64_t *cur,  \
                                                int64_t *beg, const int64_t *end, T *dW)      \
    {                                                                                         \
        const T *val = (const T *)X->data;                                                    \
        const int32_t *idx = X->indices;                                                      \
        int odd = 0;                                                                          \
        for (int64_t ja = j0; ja < j1 && !odd; ja += J) {                                     \
            const int64_t je = ja + J < j1 ? ja + J : j1;                                     \
            memset(dW + ja * n_out, 0, (size_t)((je - ja) * n_out) * sizeof(T));              \
            memcpy(beg, cur, (size_t)rows * sizeof(int64_t));                                 \
            int64_t c = 0;                                                                    \
            FSGD_SP_BLOCKS(FSGD_SP_TILE_BLOCK, T, VT, VL);                                    \
            /* the last columns one at a time, each over the row's nonzeros in the tile      \
               (a scalar multiply-add, as the sorted method's, never a vector one) */         \
            for (int64_t r = 0; r < rows && c < n_out; r++) {                                 \
                int64_t k = beg[r];                                                           \
                for (; k < end[r] && idx[k] < je; k++)                                        \
                    if (idx[k] < ja) {                                                        \
                        odd = 1;                                                              \
                        break;                                                                \
                    }                                                                         \
                for (int64_t cc = c; cc < n_out; cc++) {                                      \
                    const T d_ = D[r * n_out + cc];                                           \
                    for (int64_t q = beg[r]; q < k; q++)                                      \
                        dW[(int64_t)idx[q] * n_out + cc] += val[q] * d_;                      \
                }                                                                             \
                cur[r] = k;                                                                   \
            }                                                                                 \
        }                                                                                     \
        return odd;                                                                           \
    }                                                                                         \
                                                                                              \
    TGT static void fsgd_sp_bkt_##PATH##_##SFX_(int64_t j0, int64_t j1, int64_t n_out,        \
                                                const fsgd_sp_bk_seg *seg, int k, const T *D, \
                                                T *dW)                                        \
    {                                                                                         \
        typedef fsgd_sp_ent_##SFX_ bk_ent_t;                                                  \
        for (int64_t j = j0; j < j1; j++) {                                                   \
            T *restrict w = dW + j * n_out;                                                   \
            int64_t c = 0;                                                                    \
            FSGD_SP_BLOCKS(FSGD_SP_BKT_BLOCK, T, VT, VL);                                     \
            for (int64_t cc = c; cc < n_out; cc++) {                                          \
                T a = (T)0;                                                                   \
                FSGD_SP_EACH_BK(bk_ent_t, a += en->v * D[(int64_t)en->r * n_out + cc])        \
                w[cc] = a;                                                                    \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
                                                                                              \
    TGT static void fsgd_sp_bwd_##PATH##_##SFX_(int64_t j0, int64_t j1, int64_t n_out,        \
                                                const int64_t *end, int64_t stride, int nseg, \
                                                const fsgd_sp_ent_##SFX_ *ent, const T *Dg,   \
                                                int first, T *dW)                             \
    {                                                                                         \
        for (int64_t j = j0; j < j1; j++) {                                                   \
            if (!first && fsgd_sp_before(end, stride, nseg, j + 1) ==                         \
                              fsgd_sp_before(end, stride, nseg, j))                           \
                continue;                                                                     \
            T *restrict w = dW + j * n_out;                                                   \
            int64_t c = 0;                                                                    \
            FSGD_SP_BLOCKS(FSGD_SP_BWD_BLOCK, T, VT, VL);                                     \
            for (int64_t cc = c; cc < n_out; cc++) {                                          \
                T a = first ? (T)0 : w[cc];                                                   \
                FSGD_SP_EACH_ENT(a += ent[e].v * Dg[(int64_t)ent[e].r * n_out + cc])          \
                w[cc] = a;                                                                    \
            }                                                                                 \
        }                                                                                     \
    }

/* a row of the instance table: its entry in a dispatch table indexed by SIMD path */
#define FSGD_SP_FWD_ENTRY(PATH, SFX_, T, VT, VL, TGT)                                         \
    [FSGD_SIMD_##PATH] = fsgd_sp_fwd_##PATH##_##SFX_,
#define FSGD_SP_BWD_ENTRY(PATH, SFX_, T, VT, VL, TGT)                                         \
    [FSGD_SIMD_##PATH] = fsgd_sp_bwd_##PATH##_##SFX_,
#define FSGD_SP_TILE_ENTRY(PATH, SFX_, T, VT, VL, TGT)                                        \
    [FSGD_SIMD_##PATH] = fsgd_sp_tile_##PATH##_##SFX_,
#define FSGD_SP_BKT_ENTRY(PATH, SFX_, T, VT, VL, TGT)                                         \
    [FSGD_SIMD_##PATH] = fsgd_sp_bkt_##PATH##_##SFX_,
#define FSGD_SP_FWDP_ENTRY(PATH, SFX_, T, VT, VL, TGT)                                        \
    [FSGD_SIMD_##PATH] = fsgd_sp_fwdp_##PATH##_##SFX_,

#endif /* FSGD_SPARSE_ONCE */

#define FN(name) FSGD_CAT(name, SFX)

/* files batch row r's nonzeros [k0, k1) in their columns' buckets of segment bk;
   1 (and the segment is not usable) at a full bucket or a column outside [lo, n_in)
   (lo: 0, or a panel's first column; see Panels) */
static inline int FN(fsgd_sp_file)(int64_t r, int64_t k0, int64_t k1, int64_t lo, int64_t n_in,
                                   const int32_t *idx, const T *val, const fsgd_sp_bk_seg *bk)
{
    FN(fsgd_sp_ent) *ent = (FN(fsgd_sp_ent) *)bk->ent;
    int32_t *cnt = bk->cnt;
    const int64_t cap = bk->cap;
    for (int64_t k = k0; k < k1; k++) {
        const int64_t j = idx[k];
        if ((uint64_t)(j - lo) >= (uint64_t)(n_in - lo)) return 1;
        FSGD_SP_FILE1(cnt, ent, cap, r, j, val[k], return 1);
    }
    return 0;
}

FSGD_CAT(FSGD_SP_PATHS, SFX)(FSGD_SP_DEFINE)

typedef int (*FN(csr_fwd_fn))(int64_t, int64_t, int64_t, int64_t, const fsgd_csr *,
                              const int64_t *, const T *, const T *, int, T, T *,
                              const fsgd_sp_bk_seg *);
typedef void (*FN(csr_bkt_fn))(int64_t, int64_t, int64_t, const fsgd_sp_bk_seg *, int,
                               const T *, T *);
static const FN(csr_bkt_fn) FN(csr_bkt_table)[FSGD_SIMD_COUNT] = {
    FSGD_CAT(FSGD_SP_PATHS, SFX)(FSGD_SP_BKT_ENTRY)};
typedef void (*FN(csr_bwd_fn))(int64_t, int64_t, int64_t, const int64_t *, int64_t, int,
                               const FN(fsgd_sp_ent) *, const T *, int, T *);
static const FN(csr_fwd_fn) FN(csr_fwd_table)[FSGD_SIMD_COUNT] = {
    FSGD_CAT(FSGD_SP_PATHS, SFX)(FSGD_SP_FWD_ENTRY)};
typedef int (*FN(csr_fwdp_fn))(int, int, int64_t, int64_t, int64_t, const fsgd_csr *,
                               const int64_t *, const T *, const T *, int, T, T *,
                               const fsgd_sp_bk_seg *, const fsgd_sp_pipe *, const int64_t *,
                               int *);
static const FN(csr_fwdp_fn) FN(csr_fwdp_table)[FSGD_SIMD_COUNT] = {
    FSGD_CAT(FSGD_SP_PATHS, SFX)(FSGD_SP_FWDP_ENTRY)};
static const FN(csr_bwd_fn) FN(csr_bwd_table)[FSGD_SIMD_COUNT] = {
    FSGD_CAT(FSGD_SP_PATHS, SFX)(FSGD_SP_BWD_ENTRY)};
typedef int (*FN(csr_tile_fn))(int64_t, int64_t, int64_t, int64_t, int64_t, const fsgd_csr *,
                               const T *, int64_t *, int64_t *, const int64_t *, T *);
static const FN(csr_tile_fn) FN(csr_tile_table)[FSGD_SIMD_COUNT] = {
    FSGD_CAT(FSGD_SP_PATHS, SFX)(FSGD_SP_TILE_ENTRY)};

/* the instance of the SIMD path in use (the generic one where a path has none) */
static inline int FN(csr_path)(void)
{
    const int p = fsgd_simd_get();
    return (p >= 0 && p < FSGD_SIMD_COUNT && FN(csr_fwd_table)[p]) ? p : FSGD_SIMD_GENERIC;
}

/* Bytes of sparse scratch a team of up to k threads needs for this batch: the
   sorted batch, or (used before it, in the same bytes) three positions per batch
   row for the tiled backward of a team of one (the team that runs may be smaller
   than the k it was sized for). */
static size_t FN(csr_scratch)(int k, int64_t rows, int64_t n_in, const fsgd_csr *X,
                              const int64_t *x_rows)
{
    const size_t nnz = (size_t)fsgd_sp_batch_nnz(X, x_rows, rows);
    const size_t sorted = fsgd_sp_layout_of(rows, n_in, k).ent +
                          FSGD_SP_ALIGN(nnz * sizeof(FN(fsgd_sp_ent))) + 64;
    const size_t tiled = 3 * (size_t)rows * sizeof(int64_t) + 64;
    return sorted > tiled ? sorted : tiled;
}

/* The tiled backward of all of dW on one thread (see the top of the file); 1 when
 * the batch needs the sorted method instead. */
static int FN(csr_tiled)(int64_t rows, int64_t n_in, int64_t n_out, const fsgd_csr *X,
                         const int64_t *x_rows, const T *D, T *dW, char *sp)
{
    int64_t *cur = (int64_t *)sp, *beg = cur + rows, *end = beg + rows;
    for (int64_t r = 0; r < rows; r++)
        if (!fsgd_sp_span(X, x_rows, r, &cur[r], &end[r])) return 1;
    int64_t J = FSGD_SP_TILE_BYTES / (n_out * (int64_t)sizeof(T));
    if (J < 8) J = 8;
    const FN(csr_tile_fn) tile = FN(csr_tile_table)[FN(csr_path)()];
    if (tile(0, n_in, J, rows, n_out, X, D, cur, beg, end, dW)) return 1;
    /* every walk must reach its row's end: else a column is out of range */
    for (int64_t r = 0; r < rows; r++)
        if (cur[r] != end[r]) return 1;
    return 0;
}

/* Team body: sort the batch's nonzeros by column into sp (laid out as
 * fsgd_sp_layout_of says for this team), each thread its share of every
 * group's rows into its own segments. A row's nonzeros end before its first
 * column index outside [0, n_in); a batch row outside [0, X->n_rows) has
 * none (both set team->status to FSGD_ERR_ARG). No barrier: on return a
 * thread has sorted its own rows, and the others' are sorted after the next
 * barrier. */
static void FN(csr_sort_team)(int64_t rows, int64_t n_in, const fsgd_csr *X,
                              const int64_t *x_rows, const fsgd_sp_layout *L, char *sp,
                              fsgd_team *team)
{
    int t = 0, nt = 1; /* (k names a nonzero below) */
#ifdef _OPENMP
    t = omp_get_thread_num();
    nt = omp_get_num_threads();
#endif
    const T *val = (const T *)X->data;
    const int32_t *idx = X->indices;
    FN(fsgd_sp_ent) *ent = (FN(fsgd_sp_ent) *)(sp + L->ent);
    int bad = 0;
    int64_t seen = 0, at = 0; /* the nonzeros (by indptr) of batch rows [0, at) */
    for (int64_t g = 0; g < L->groups; g++) {
        int64_t g0, a, b;
        fsgd_sp_share(rows, g, t, nt, &g0, &a, &b);
        for (; at < a; at++) {
            int64_t k0, k1;
            fsgd_sp_span(X, x_rows, at, &k0, &k1);
            seen += k1 - k0;
        }
        int64_t *e = (int64_t *)(sp + L->colend) + (g * nt + t) * L->stride;
        memset(e, 0, (size_t)(n_in + 1) * sizeof(int64_t));
        fsgd_sp_prefetch_start(X, x_rows, a, b, sizeof(T));
        for (int64_t r = a; r < b; r++) {
            fsgd_sp_prefetch_step(X, x_rows, r, b, sizeof(T));
            int64_t k0, k1;
            bad |= !fsgd_sp_span(X, x_rows, r, &k0, &k1);
            FSGD_SP_EACH_NZ(e[j + 1]++)
        }
        /* e[j + 1]: where column j's entries start, and after the placing where they end */
        int64_t run = seen;
        e[0] = run;
        for (int64_t j = 0; j < n_in; j++) {
            const int64_t n = e[j + 1];
            e[j + 1] = run;
            run += n;
        }
        for (int64_t r = a; r < b; r++) {
            int64_t k0, k1;
            fsgd_sp_span(X, x_rows, r, &k0, &k1);
            const int32_t gr = (int32_t)(r - g0);
            FSGD_SP_EACH_NZ(FN(fsgd_sp_ent) *en = ent + e[j + 1]++; en->r = gr; en->v = val[k])
        }
    }
    if (bad) FSGD_TEAM_SET(team->status, FSGD_ERR_ARG);
}

/* Team body of the forward: Z[r, :] = f(b + sum over the nonzeros (j, v) of
 * row r, in CSR order, of v * W[j, :]); each thread a range of batch rows,
 * two rows at a time, or, in a training step whose team has panels (see
 * Panels), each thread its panel of every row. Ends with a barrier. */
static void FN(csr_forward_team)(int64_t rows, int64_t n_in, int64_t n_out, const fsgd_csr *X,
                                 const int64_t *x_rows, const T *W, const T *b, int act,
                                 T slope, T *Z, fsgd_team *team)
{
    int k = 1;
#ifdef _OPENMP
    k = omp_get_num_threads();
#endif
    if (k > 1 && team->npanel == k) {
        int t = 0, pfail = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        const fsgd_sp_bk_seg S = fsgd_sp_bk_at(team->buck, rows, n_in, 1, 0,
                                               sizeof(FN(fsgd_sp_ent)));
        const fsgd_sp_pipe P = fsgd_sp_pipe_at(team->pipe, rows, n_out, sizeof(T));
        const int st = FN(csr_fwdp_table)[FN(csr_path)()](t, k, rows, n_in, n_out, X, x_rows, W,
                                                          b, act, slope, Z, &S, &P, team->pcol,
                                                          &pfail);
        if (st) FSGD_TEAM_SET(team->status, st);
        if (pfail) FSGD_TEAM_SET(team->pfail, 1);
#ifdef _OPENMP
#pragma omp barrier
#endif
        return;
    }
    const FN(csr_fwd_fn) fwd = FN(csr_fwd_table)[FN(csr_path)()];
    char *bk = 2 * k <= FSGD_SP_BK_SEGS ? team->buck : NULL;
    FSGD_OMP_FOR
    for (int p = 0; p < k; p++) {
        fsgd_sp_bk_seg S[2];
        for (int q = 0; bk && q < 2; q++)
            S[q] = fsgd_sp_bk_at(bk, rows, n_in, 2 * k, 2 * p + q, sizeof(FN(fsgd_sp_ent)));
        const int st = fwd(rows * p / k, rows * (p + 1) / k, n_in, n_out, X, x_rows, W, b, act,
                           slope, Z, bk ? S : NULL);
        if (st) FSGD_TEAM_SET(team->status, st);
    }
}

/* Team body of the backward: dW = X[x_rows]^T D and db = the column sums
 * of D (D holds dL/dZ when dz, else dL/dA and becomes dL/dZ first). Each row
 * of dW is summed by one thread, from zero over the batch rows in order; the
 * threads take ranges of rows of dW with about equal numbers of entries.
 * sp: csr_scratch bytes for this team's size, where the batch is sorted. */
static void FN(csr_backward_team)(int64_t rows, int64_t n_in, int64_t n_out, const fsgd_csr *X,
                                  const int64_t *x_rows, const T *A, int act, T slope, int dz,
                                  T *D, T *dW, T *db, char *sp, fsgd_team *team)
{
    if (!dz) FN(act_backward_team)(act, slope, rows, n_out, A, D);
    int t = 0, k = 1;
#ifdef _OPENMP
    t = omp_get_thread_num();
    k = omp_get_num_threads();
#endif
    fsgd_sp_bk_seg seg[FSGD_SP_BK_SEGS];
    const int panels = k > 1 && team->npanel == k;
    if (panels && !fsgd_team_get(&team->pfail)) {
        /* each thread its panel's rows of dW, from the buckets it filed */
        seg[0] = fsgd_sp_bk_at(team->buck, rows, n_in, 1, 0, sizeof(FN(fsgd_sp_ent)));
        if (team->pcol[t] < team->pcol[t + 1])
            FN(csr_bkt_table)[FN(csr_path)()](team->pcol[t], team->pcol[t + 1], n_out, seg, 1,
                                              D, dW);
        FN(col_sums_team)(rows, n_out, D, db);
        return;
    }
    int filed = !panels && team->buck && 2 * k <= FSGD_SP_BK_SEGS;
    for (int p = 0; filed && p < 2 * k; p++) {
        seg[p] = fsgd_sp_bk_at(team->buck, rows, n_in, 2 * k, p, sizeof(FN(fsgd_sp_ent)));
        filed = !*seg[p].flag;
    }
    if (filed) {
        int64_t j0, j1;
        fsgd_sp_bk_range(seg, 2 * k, n_in, k, t, &j0, &j1);
        if (j0 < j1) FN(csr_bkt_table)[FN(csr_path)()](j0, j1, n_out, seg, 2 * k, D, dW);
        FN(col_sums_team)(rows, n_out, D, db);
        return;
    }
    if (k == 1 && n_out * (int64_t)sizeof(T) <= FSGD_SP_TILE_ROW &&
        !FN(csr_tiled)(rows, n_in, n_out, X, x_rows, D, dW, sp)) {
        FN(col_sums_team)(rows, n_out, D, db);
        return;
    }
    const fsgd_sp_layout L = fsgd_sp_layout_of(rows, n_in, k);
    FN(csr_sort_team)(rows, n_in, X, x_rows, &L, sp, team);
#ifdef _OPENMP
#pragma omp barrier
#endif
    const int64_t *colend = (const int64_t *)(sp + L.colend);
    const FN(fsgd_sp_ent) *ent = (const FN(fsgd_sp_ent) *)(sp + L.ent);
    /* thread t's rows of dW: where the first group's entries plus one per row pass t / k
       and (t + 1) / k of their total */
    const int64_t total = fsgd_sp_before(colend, L.stride, k, n_in) + n_in;
    const int64_t j0 = fsgd_sp_row_at(colend, L.stride, k, n_in, total * t / k);
    const int64_t j1 = fsgd_sp_row_at(colend, L.stride, k, n_in, total * (t + 1) / k);
    const FN(csr_bwd_fn) acc = FN(csr_bwd_table)[FN(csr_path)()];
    for (int64_t g = 0; g < L.groups && j0 < j1; g++)
        acc(j0, j1, n_out, colend + g * k * L.stride, L.stride, k, ent,
            D + g * FSGD_SP_GROUP * n_out, g == 0, dW);
    FN(col_sums_team)(rows, n_out, D, db);
}

int FN(fsgd_csr_dense_forward)(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,
                               const fsgd_csr *X, const int64_t *x_rows, const T *W,
                               const T *b, int act, T slope, T *Z)
{
    if (!X || rows < 0 || n_in < 1 || n_out < 1) return FSGD_ERR_ARG;
    const int nt = fsgd_threads_for(nthreads, rows * n_out * 8, FSGD_PAR_MIN);
    fsgd_team team;
    memset(&team, 0, sizeof team);
    FSGD_RUN(nt,
             FN(csr_forward_team)(rows, n_in, n_out, X, x_rows, W, b, act, slope, Z, &team));
    return team.status;
}

int FN(fsgd_csr_dense_backward)(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,
                                const fsgd_csr *X, const int64_t *x_rows, const T *A, int act,
                                T slope, T *D, T *dW, T *db)
{
    if (!X || rows < 0 || n_in < 1 || n_out < 1) return FSGD_ERR_ARG;
    if (rows == 0) {
        memset(dW, 0, (size_t)(n_in * n_out) * sizeof(T));
        memset(db, 0, (size_t)n_out * sizeof(T));
        return FSGD_OK;
    }
    const int nt = fsgd_threads_for(nthreads, n_in * n_out, FSGD_PAR_MIN / 4);
    fsgd_team team;
    memset(&team, 0, sizeof team);
    char *sp = (char *)fsgd_workspace(FN(csr_scratch)(nt, rows, n_in, X, x_rows));
    if (!sp) return FSGD_ERR_ALLOC;
    sp = (char *)FSGD_SP_ALIGN((uintptr_t)sp);
    FSGD_RUN(nt, FN(csr_backward_team)(rows, n_in, n_out, X, x_rows, A, act, slope, 0, D, dW,
                                       db, sp, &team));
    return team.status;
}

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
