/*
 * The output layer fused with its cost. Included by ops.c once per dtype
 * (T, SFX and the math macros defined; see ops.c). Uses act_row and
 * act_back_row from act_tmpl.h.
 *
 * Per row r (target row yr = y_rows ? y_rows[r] : r), with n = scale_rows, or,
 * with sample weights w, n = the sum of the batch rows' weights and every
 * row's loss and gradient multiplied by its weight (a weighted mean; a batch
 * whose weights are all 0 gets a zero gradient):
 *   cross-entropy (softmax):   row_loss = logsumexp(z) - z[label],
 *                              dL/dz = (p - onehot) / n
 *   binary cross-entropy:      row_loss = mean_j max(z,0) - z t + log1p(exp(-|z|)),
 *                              dL/dz = (p - t) / (n cols)
 *   MSE (any activation):      row_loss = mean_j (a - t)^2,
 *                              dL/dz = f'(z) 2 (a - t) / (n cols)
 *   MAE (any activation):      row_loss = mean_j |a - t|,
 *                              dL/dz = f'(z) sign(a - t) / (n cols)  (sign(0) = 0)
 *   Huber (any activation):    x = a - t; row_loss = mean_j h(x) with h(x) = x^2 / 2 for
 *                              |x| <= delta, delta (|x| - delta / 2) beyond (Keras's),
 *                              dL/dz = f'(z) clip(x, -delta, delta) / (n cols)
 */
#define FN(name) FSGD_CAT(name, SFX)

static inline T FN(target)(const int64_t *y_int, const T *y, int64_t yr, int64_t cols,
                           int64_t j)
{
    if (y_int) return cols == 1 ? (T)y_int[yr] : (T)(y_int[yr] == j);
    return y[yr * cols + j];
}

static inline int64_t FN(argmax)(const T *v, int64_t n)
{
    int64_t best = 0;
    for (int64_t j = 1; j < n; j++)
        if (v[j] > v[best]) best = j;
    return best;
}

int FN(fsgd_output_cost)(int nthreads, int cost, double cost_param, int act, T slope,
                         int64_t rows, int64_t cols, T *Z, const int64_t *y_int, const T *y,
                         const int64_t *y_rows, int64_t scale_rows, const T *sample_w, T *D,
                         double *loss,
                         int64_t *correct)
{
    (void)nthreads;
    if (rows < 0 || cols < 1 || scale_rows < 1 || (!y_int && !y)) return FSGD_ERR_ARG;
    if (cost == FSGD_COST_CROSS_ENTROPY) {
        /* the label indexes z: every one is checked before anything is written */
        if (act != FSGD_ACT_SOFTMAX || cols < 2) return FSGD_ERR_ARG;
        if (y_int)
            for (int64_t r = 0; r < rows; r++) {
                const int64_t label = y_int[y_rows ? y_rows[r] : r];
                if (label < 0 || label >= cols) return FSGD_ERR_ARG;
            }
    } else if (cost == FSGD_COST_BINARY_CROSS_ENTROPY) {
        if (act != FSGD_ACT_SIGMOID) return FSGD_ERR_ARG;
    } else if (cost == FSGD_COST_HUBER) {
        if (!(cost_param > 0.0) || cost_param == (double)INFINITY) return FSGD_ERR_ARG;
    } else if (cost != FSGD_COST_MSE && cost != FSGD_COST_MAE) {
        return FSGD_ERR_ARG;
    }
    double total = 0.0;
    int64_t ok = 0;
    T inv_rows = (T)1 / (T)scale_rows;
    if (sample_w) {
        double wsum = 0.0;
        for (int64_t r = 0; r < rows; r++) wsum += (double)sample_w[y_rows ? y_rows[r] : r];
        inv_rows = wsum > 0.0 ? (T)(1.0 / wsum) : (T)0;
    }
#define ROW_WEIGHT(yr) (sample_w ? sample_w[yr] : (T)1)
    if (cost == FSGD_COST_CROSS_ENTROPY) {
        T *prob = (T *)fsgd_workspace((size_t)cols * sizeof(T));
        if (!prob) return FSGD_ERR_ALLOC;
        for (int64_t r = 0; r < rows; r++) {
            const int64_t yr = y_rows ? y_rows[r] : r;
            T *restrict z = Z + r * cols;
            T *restrict e = D ? D + r * cols : prob;
            T m = z[0];
            for (int64_t j = 1; j < cols; j++) m = z[j] > m ? z[j] : m;
            if (m != m || m == (T)INFINITY || m == -(T)INFINITY) m = (T)0;
            for (int64_t j = 0; j < cols; j++) e[j] = EXPT(z[j] - m);
            T s = 0;
            for (int64_t j = 0; j < cols; j++) s += e[j];
            const T lse = m + LOGT(s);
            double row_loss = 0.0;
            if (y_int) {
                row_loss = (double)(lse - z[y_int[yr]]);
            } else {
                const T *yy = y + yr * cols;
                for (int64_t j = 0; j < cols; j++)
                    if (yy[j] != (T)0) row_loss += (double)(yy[j] * (lse - z[j]));
            }
            const T rw = ROW_WEIGHT(yr), rs = rw * inv_rows;
            total += (double)rw * row_loss;
            for (int64_t j = 0; j < cols; j++) {
                const T p = e[j] / s;
                z[j] = p;
                if (D) e[j] = (p - FN(target)(y_int, y, yr, cols, j)) * rs;
            }
            const int64_t label = y_int ? y_int[yr] : FN(argmax)(y + yr * cols, cols);
            ok += FN(argmax)(z, cols) == label;
        }
    } else if (cost == FSGD_COST_BINARY_CROSS_ENTROPY) {
        for (int64_t r = 0; r < rows; r++) {
            const int64_t yr = y_rows ? y_rows[r] : r;
            const T rw = ROW_WEIGHT(yr), inv = rw * inv_rows / (T)cols;
            T *restrict z = Z + r * cols;
            T *restrict d = D ? D + r * cols : NULL;
            double row_loss = 0.0;
            for (int64_t j = 0; j < cols; j++) {
                const T x = z[j], t = FN(target)(y_int, y, yr, cols, j);
                const T e = EXPT(-FABST(x));
                row_loss += (double)((x > (T)0 ? x : (T)0) - x * t + LOG1PT(e));
                const T s = (T)1 / ((T)1 + e);
                const T p = x >= (T)0 ? s : e * s;
                z[j] = p;
                if (d) d[j] = (p - t) * inv;
                ok += (p > (T)0.5) == (t > (T)0.5);
            }
            total += (double)rw * row_loss / (double)cols;
        }
    } else {
        /* mse, mae and huber: elementwise in a = f(z) */
        const T delta = (T)cost_param, half = (T)0.5;
        for (int64_t r = 0; r < rows; r++) {
            const int64_t yr = y_rows ? y_rows[r] : r;
            const T rw = ROW_WEIGHT(yr);
            const T inv = (cost == FSGD_COST_MSE ? (T)2 : (T)1) * rw * inv_rows / (T)cols;
            T *restrict a = Z + r * cols;
            T *restrict d = D ? D + r * cols : NULL;
            if (act != FSGD_ACT_LINEAR) FN(act_row)(act, slope, cols, a);
            double row_loss = 0.0;
            if (cost == FSGD_COST_MSE) {
                for (int64_t j = 0; j < cols; j++) {
                    const T diff = a[j] - FN(target)(y_int, y, yr, cols, j);
                    row_loss += (double)(diff * diff);
                    if (d) d[j] = diff * inv;
                }
            } else if (cost == FSGD_COST_MAE) {
                for (int64_t j = 0; j < cols; j++) {
                    const T diff = a[j] - FN(target)(y_int, y, yr, cols, j);
                    row_loss += (double)FABST(diff);
                    if (d) d[j] = diff > (T)0 ? inv : (diff < (T)0 ? -inv : (T)0);
                }
            } else {
                for (int64_t j = 0; j < cols; j++) {
                    const T diff = a[j] - FN(target)(y_int, y, yr, cols, j);
                    const T ad = FABST(diff);
                    row_loss += (double)(ad <= delta ? half * diff * diff
                                                     : delta * ad - half * delta * delta);
                    if (d) d[j] = (ad <= delta ? diff : (diff > (T)0 ? delta : -delta)) * inv;
                }
            }
            total += (double)rw * row_loss / (double)cols;
            if (d) FN(act_back_row)(act, slope, cols, a, d);
            if (cols > 1) {
                const int64_t label = y_int ? y_int[yr] : FN(argmax)(y + yr * cols, cols);
                ok += FN(argmax)(a, cols) == label;
            }
        }
    }
#undef ROW_WEIGHT
    *loss = total;
    *correct = ok;
    return FSGD_OK;
}

#undef FN
