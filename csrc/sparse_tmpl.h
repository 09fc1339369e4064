/*
 * A dense layer fed by a sparse (CSR) input, and the conversion of a batch
 * of integer or other-dtype rows into the network's dtype. Included by ops.c
 * once per dtype after act_tmpl.h.
 *
 * Forward: Z[r, :] = b + sum over the nonzeros (j, v) of row r of v * W[j, :]
 * (threads split rows). Backward: dW = X^T D accumulated row by row in batch
 * order, threads splitting the columns of dW, so every element of dW is
 * summed by one thread in one order: the same bits for any thread count.
 */
#define FN(name) FSGD_CAT(name, SFX)

int FN(fsgd_csr_dense_forward)(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,
                               const fsgd_csr *X, const int64_t *x_rows, const T *W,
                               const T *b, int act, T slope, T *Z)
{
    if (!X || rows < 0 || n_in < 1 || n_out < 1) return FSGD_ERR_ARG;
    const T *data = (const T *)X->data;
    const int nt = fsgd_threads_for(nthreads, rows * n_out * 8, FSGD_PAR_MIN);
    int bad = 0;
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1) reduction(| : bad)
#endif
    for (int64_t r = 0; r < rows; r++) {
        const int64_t xr = x_rows ? x_rows[r] : r;
        T *restrict z = Z + r * n_out;
        for (int64_t c = 0; c < n_out; c++) z[c] = b[c];
        if (xr < 0 || xr >= X->n_rows) {
            bad = 1;
            continue;
        }
        for (int64_t k = X->indptr[xr]; k < X->indptr[xr + 1]; k++) {
            const int64_t j = X->indices[k];
            if (j < 0 || j >= n_in) {
                bad = 1;
                break;
            }
            const T v = data[k];
            const T *restrict w = W + j * n_out;
            for (int64_t c = 0; c < n_out; c++) z[c] += v * w[c];
        }
        if (act != FSGD_ACT_LINEAR) FN(act_row)(act, slope, n_out, z);
    }
    return bad ? FSGD_ERR_ARG : FSGD_OK;
}

int FN(fsgd_csr_dense_backward)(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,
                                const fsgd_csr *X, const int64_t *x_rows, const T *A, int act,
                                T slope, T *D, T *dW, T *db)
{
    if (!X || rows < 0 || n_in < 1 || n_out < 1) return FSGD_ERR_ARG;
    FN(fsgd_act_backward)(nthreads, act, slope, rows, n_out, A, D);
    const T *data = (const T *)X->data;
    /* column blocks of dW: one thread each */
    const int64_t blk = 16;
    const int64_t nblk = (n_out + blk - 1) / blk;
    int nt = fsgd_threads_for(nthreads, n_in * n_out, FSGD_PAR_MIN / 4);
    if (nt > nblk) nt = (int)nblk;
    int bad = 0;
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1) reduction(| : bad)
#endif
    for (int64_t cb = 0; cb < nblk; cb++) {
        const int64_t c0 = cb * blk, c1 = c0 + blk < n_out ? c0 + blk : n_out;
        for (int64_t j = 0; j < n_in; j++)
            for (int64_t c = c0; c < c1; c++) dW[j * n_out + c] = (T)0;
        for (int64_t r = 0; r < rows; r++) {
            const int64_t xr = x_rows ? x_rows[r] : r;
            if (xr < 0 || xr >= X->n_rows) {
                bad = 1;
                break;
            }
            const T *restrict d = D + r * n_out;
            for (int64_t k = X->indptr[xr]; k < X->indptr[xr + 1]; k++) {
                const int64_t j = X->indices[k];
                if (j < 0 || j >= n_in) {
                    bad = 1;
                    break;
                }
                const T v = data[k];
                T *restrict w = dW + j * n_out;
                for (int64_t c = c0; c < c1; c++) w[c] += v * d[c];
            }
        }
    }
    FN(fsgd_col_sums)(nthreads, rows, n_out, D, db);
    return bad ? FSGD_ERR_ARG : FSGD_OK;
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
