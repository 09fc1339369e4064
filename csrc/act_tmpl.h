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

void FN(fsgd_act_forward)(int nthreads, int act, T slope, int64_t rows, int64_t cols, T *Z)
{
    if (act == FSGD_ACT_LINEAR || rows <= 0 || cols <= 0) return;
    const int nt = FN(nt_for)(nthreads, rows * cols);
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
    for (int64_t r = 0; r < rows; r++) FN(act_row)(act, slope, cols, Z + r * cols);
}

void FN(fsgd_act_backward)(int nthreads, int act, T slope, int64_t rows, int64_t cols,
                           const T *A, T *D)
{
    if (act == FSGD_ACT_LINEAR || rows <= 0 || cols <= 0) return;
    const int nt = FN(nt_for)(nthreads, rows * cols);
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
    for (int64_t r = 0; r < rows; r++)
        FN(act_back_row)(act, slope, cols, A + r * cols, D + r * cols);
}

void FN(fsgd_col_sums)(int nthreads, int64_t rows, int64_t cols, const T *D, T *db)
{
    /* each column is summed by one thread, rows in order; threads split columns */
    const int64_t blk = 256;
    const int64_t nblk = (cols + blk - 1) / blk;
    int nt = FN(nt_for)(nthreads, rows * cols);
    if (nt > nblk) nt = (int)nblk;
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
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

/* bias and activation in one pass over Z */
static void FN(bias_act)(int nthreads, int act, T slope, int64_t rows, int64_t cols, const T *b,
                         T *Z)
{
    const int nt = FN(nt_for)(nthreads, rows * cols);
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
    for (int64_t r = 0; r < rows; r++) {
        T *restrict z = Z + r * cols;
        for (int64_t j = 0; j < cols; j++) z[j] += b[j];
        if (act != FSGD_ACT_LINEAR) FN(act_row)(act, slope, cols, z);
    }
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
