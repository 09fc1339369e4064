/*
 * Activations: forward and backward on rows, the bias + activation pass,
 * column sums (db) and the row gather. Included by ops.c once per dtype
 * (T, SFX and the math macros defined; see ops.c).
 *
 * Determinism: every sum runs in one thread in index order; parallel loops
 * split independent elements, rows or columns only.
 */
#define FN(name) FSGD_CAT(name, SFX)

static inline int FN(nt_for)(int nthreads, int64_t work)
{
    return fsgd_threads_for(nthreads, work, FSGD_PAR_MIN);
}

/* ---- activations on one row -------------------------------------------- */
FSGD_CLONES static void FN(act_row)(int act, T slope, int64_t n, T *restrict z)
{
    switch (act) {
    case FSGD_ACT_SIGMOID:
        for (int64_t j = 0; j < n; j++) {
            const T x = z[j];
            const T e = EXPT(-FABST(x));
            const T s = (T)1 / ((T)1 + e);
            z[j] = x >= (T)0 ? s : e * s;
        }
        break;
    case FSGD_ACT_TANH:
        for (int64_t j = 0; j < n; j++) z[j] = TANHT(z[j]);
        break;
    case FSGD_ACT_RELU:
        for (int64_t j = 0; j < n; j++) {
            const T x = z[j];
            z[j] = (x > (T)0 || x != x) ? x : (T)0;
        }
        break;
    case FSGD_ACT_LEAKY_RELU:
        for (int64_t j = 0; j < n; j++) {
            const T x = z[j];
            z[j] = x > (T)0 ? x : slope * x;
        }
        break;
    case FSGD_ACT_SOFTMAX: {
        T m = z[0];
        for (int64_t j = 1; j < n; j++) m = z[j] > m ? z[j] : m;
        if (m != m || m == (T)INFINITY) m = (T)0; /* let NaN/inf propagate below */
        for (int64_t j = 0; j < n; j++) z[j] = EXPT(z[j] - m);
        T s = 0;
        for (int64_t j = 0; j < n; j++) s += z[j];
        for (int64_t j = 0; j < n; j++) z[j] = z[j] / s;
        break;
    }
    default:
        break;
    }
}

/* D (dL/dA) -> dL/dZ on one row, given A = f(Z) */
FSGD_CLONES static void FN(act_back_row)(int act, T slope, int64_t n, const T *restrict a,
                                         T *restrict d)
{
    switch (act) {
    case FSGD_ACT_SIGMOID:
        for (int64_t j = 0; j < n; j++) d[j] *= a[j] * ((T)1 - a[j]);
        break;
    case FSGD_ACT_TANH:
        for (int64_t j = 0; j < n; j++) d[j] *= (T)1 - a[j] * a[j];
        break;
    case FSGD_ACT_RELU:
        for (int64_t j = 0; j < n; j++) d[j] = a[j] > (T)0 ? d[j] : (T)0;
        break;
    case FSGD_ACT_LEAKY_RELU:
        for (int64_t j = 0; j < n; j++) d[j] = a[j] > (T)0 ? d[j] : slope * d[j];
        break;
    case FSGD_ACT_SOFTMAX: {
        T s = 0;
        for (int64_t j = 0; j < n; j++) s += d[j] * a[j];
        for (int64_t j = 0; j < n; j++) d[j] = a[j] * (d[j] - s);
        break;
    }
    default:
        break;
    }
}

/* ---- team bodies (see fsgd_team in fsgd_internal.h) and their wrappers ---------- */
static void FN(act_forward_team)(int act, T slope, int64_t rows, int64_t cols, T *Z)
{
    if (act == FSGD_ACT_LINEAR || rows <= 0 || cols <= 0) return;
    FSGD_OMP_FOR
    for (int64_t r = 0; r < rows; r++) FN(act_row)(act, slope, cols, Z + r * cols);
}

void FN(fsgd_act_forward)(int nthreads, int act, T slope, int64_t rows, int64_t cols, T *Z)
{
    const int nt = FN(nt_for)(nthreads, rows * cols);
    FSGD_RUN(nt, FN(act_forward_team)(act, slope, rows, cols, Z));
}

static void FN(act_backward_team)(int act, T slope, int64_t rows, int64_t cols, const T *A,
                                  T *D)
{
    if (act == FSGD_ACT_LINEAR || rows <= 0 || cols <= 0) return;
    FSGD_OMP_FOR
    for (int64_t r = 0; r < rows; r++)
        FN(act_back_row)(act, slope, cols, A + r * cols, D + r * cols);
}

void FN(fsgd_act_backward)(int nthreads, int act, T slope, int64_t rows, int64_t cols,
                           const T *A, T *D)
{
    const int nt = FN(nt_for)(nthreads, rows * cols);
    FSGD_RUN(nt, FN(act_backward_team)(act, slope, rows, cols, A, D));
}

/* each column is summed by one thread, rows in order; threads split columns */
#define FSGD_COLSUM_BLOCK 256
static void FN(col_sums_team)(int64_t rows, int64_t cols, const T *D, T *db)
{
    const int64_t blk = FSGD_COLSUM_BLOCK;
    const int64_t nblk = (cols + blk - 1) / blk;
    FSGD_OMP_FOR
    for (int64_t cb = 0; cb < nblk; cb++) {
        const int64_t c0 = cb * blk, c1 = (c0 + blk < cols) ? c0 + blk : cols;
        T *restrict o = db + c0;
        for (int64_t j = 0; j < c1 - c0; j++) o[j] = (T)0;
        for (int64_t r = 0; r < rows; r++) {
            const T *restrict d = D + r * cols + c0;
            for (int64_t j = 0; j < c1 - c0; j++) o[j] += d[j];
        }
    }
}

void FN(fsgd_col_sums)(int nthreads, int64_t rows, int64_t cols, const T *D, T *db)
{
    const int64_t nblk = (cols + FSGD_COLSUM_BLOCK - 1) / FSGD_COLSUM_BLOCK;
    int nt = FN(nt_for)(nthreads, rows * cols);
    if (nt > nblk) nt = (int)nblk;
    FSGD_RUN(nt, FN(col_sums_team)(rows, cols, D, db));
}
#undef FSGD_COLSUM_BLOCK

/* ---- GEMM epilogues ------------------------------------------------------------ */
static inline int FN(act_elementwise)(int act)
{
    return act != FSGD_ACT_SOFTMAX;
}

/* forward: z += bias, then the activation (elementwise ones only) */
typedef struct {
    const T *bias;
    int act;
    T slope;
} FN(fwd_epi_ctx);

static void FN(fwd_epi)(const void *ctx, int64_t i0, int64_t j0, int mv, int nv, T *c,
                        int64_t ldc)
{
    (void)i0;
    const FN(fwd_epi_ctx) *e = (const FN(fwd_epi_ctx) *)ctx;
    const T *restrict b = e->bias ? e->bias + j0 : NULL;
    for (int i = 0; i < mv; i++) {
        T *restrict z = c + (int64_t)i * ldc;
        if (b)
            for (int j = 0; j < nv; j++) z[j] += b[j];
        if (e->act != FSGD_ACT_LINEAR) FN(act_row)(e->act, e->slope, nv, z);
    }
}

/* backward: dL/dA -> dL/dZ where the product writes dL/dA (elementwise ones only) */
typedef struct {
    const T *A;
    int64_t lda;
    int act;
    T slope;
} FN(bwd_epi_ctx);

static void FN(bwd_epi)(const void *ctx, int64_t i0, int64_t j0, int mv, int nv, T *c,
                        int64_t ldc)
{
    const FN(bwd_epi_ctx) *e = (const FN(bwd_epi_ctx) *)ctx;
    for (int i = 0; i < mv; i++)
        FN(act_back_row)(e->act, e->slope, nv, e->A + (i0 + i) * e->lda + j0,
                         c + (int64_t)i * ldc);
}

void FN(fsgd_gather_rows)(int nthreads, int64_t n, int64_t cols, const T *X, int64_t ldx,
                          const int64_t *rows, T *out)
{
    /* nothing to copy: X and out may be NULL (the data of 0-size arrays), and memcpy's
       pointers must not be even for 0 bytes */
    if (n <= 0 || cols <= 0) return;
    const int nt = FN(nt_for)(nthreads, n * cols);
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
    for (int64_t i = 0; i < n; i++) memcpy(out + i * cols, X + rows[i] * ldx, cols * sizeof(T));
}

#undef FN
