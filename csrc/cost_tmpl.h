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

/* every argument checked before anything is written (each thread may run it) */
static int FN(cost_check)(int cost, double cost_param, int act, int64_t rows, int64_t cols,
                          const int64_t *y_int, const T *y, const int64_t *y_rows,
                          int64_t scale_rows)
{
    if (rows < 0 || cols < 1 || scale_rows < 1 || (!y_int && !y)) return FSGD_ERR_ARG;
    if (cost == FSGD_COST_CROSS_ENTROPY) {
        /* the label indexes z */
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
    return FSGD_OK;
}

/* the settings every row shares */
typedef struct {
    int cost, act;
    T slope, delta, inv_rows;
    int64_t cols;
    const int64_t *y_int;
    const T *y;
    const T *sample_w;
} FN(cost_args);

/* one row: its weighted share of the loss; z becomes the output (probabilities or
   f(z)), d (when not NULL) dL/dz; *ok counts a correct prediction */
static double FN(cost_row)(const FN(cost_args) *c, int64_t yr, T *restrict z, T *restrict d,
                           T *restrict prob, int64_t *ok)
{
    const int64_t cols = c->cols;
    const int64_t *y_int = c->y_int;
    const T *y = c->y;
    const T rw = c->sample_w ? c->sample_w[yr] : (T)1;
    if (c->cost == FSGD_COST_CROSS_ENTROPY) {
        T *restrict e = d ? d : prob;
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
        const T rs = rw * c->inv_rows;
        for (int64_t j = 0; j < cols; j++) {
            const T p = e[j] / s;
            z[j] = p;
            if (d) e[j] = (p - FN(target)(y_int, y, yr, cols, j)) * rs;
        }
        const int64_t label = y_int ? y_int[yr] : FN(argmax)(y + yr * cols, cols);
        *ok += FN(argmax)(z, cols) == label;
        return (double)rw * row_loss;
    }
    if (c->cost == FSGD_COST_BINARY_CROSS_ENTROPY) {
        const T inv = rw * c->inv_rows / (T)cols;
        double row_loss = 0.0;
        for (int64_t j = 0; j < cols; j++) {
            const T x = z[j], t = FN(target)(y_int, y, yr, cols, j);
            const T e = EXPT(-FABST(x));
            row_loss += (double)((x > (T)0 ? x : (T)0) - x * t + LOG1PT(e));
            const T s = (T)1 / ((T)1 + e);
            const T p = x >= (T)0 ? s : e * s;
            z[j] = p;
            if (d) d[j] = (p - t) * inv;
            *ok += (p > (T)0.5) == (t > (T)0.5);
        }
        return (double)rw * row_loss / (double)cols;
    }
    /* mse, mae and huber: elementwise in a = f(z) */
    const T delta = c->delta, half = (T)0.5;
    const int cost = c->cost;
    const T inv = (cost == FSGD_COST_MSE ? (T)2 : (T)1) * rw * c->inv_rows / (T)cols;
    T *restrict a = z;
    if (c->act != FSGD_ACT_LINEAR) FN(act_row)(c->act, c->slope, cols, a);
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
    if (d) FN(act_back_row)(c->act, c->slope, cols, a, d);
    if (cols > 1) {
        const int64_t label = y_int ? y_int[yr] : FN(argmax)(y + yr * cols, cols);
        *ok += FN(argmax)(a, cols) == label;
    }
    return (double)rw * row_loss / (double)cols;
}

/* Cross-entropy on softmax rows with integer labels and a gradient, for rows
 * [r0, r1): cost_row's operations on each element in the same order (the
 * same bits), in three passes so that exp runs as one vector loop over the
 * rows' elements instead of a short loop per row: each row's maximum m (kept
 * in mrow) and z - m into d; exp of d in place; then per row the sum in
 * column order, the loss, the probabilities, the gradient and the argmax. */
FSGD_CLONES static void FN(ce_exp)(int64_t n, T *restrict d)
{
    for (int64_t i = 0; i < n; i++) d[i] = EXPT(d[i]);
}

static void FN(ce_rows)(const FN(cost_args) *c, int64_t r0, int64_t r1, const int64_t *y_rows,
                        T *Z, T *D, T *mrow, double *rl, int64_t *ok)
{
    const int64_t cols = c->cols;
    for (int64_t r = r0; r < r1; r++) {
        const T *z = Z + r * cols;
        T *restrict d = D + r * cols;
        T m = z[0];
        for (int64_t j = 1; j < cols; j++) m = z[j] > m ? z[j] : m;
        if (m != m || m == (T)INFINITY || m == -(T)INFINITY) m = (T)0;
        mrow[r] = m;
        for (int64_t j = 0; j < cols; j++) d[j] = z[j] - m;
    }
    FN(ce_exp)((r1 - r0) * cols, D + r0 * cols);
    for (int64_t r = r0; r < r1; r++) {
        const int64_t yr = y_rows ? y_rows[r] : r;
        T *restrict z = Z + r * cols;
        T *restrict e = D + r * cols;
        const T rw = c->sample_w ? c->sample_w[yr] : (T)1;
        T s = 0;
        for (int64_t j = 0; j < cols; j++) s += e[j];
        const T lse = mrow[r] + LOGT(s);
        const int64_t label = c->y_int[yr];
        const double row_loss = (double)(lse - z[label]);
        const T rs = rw * c->inv_rows;
        for (int64_t j = 0; j < cols; j++) {
            const T p = e[j] / s;
            z[j] = p;
            e[j] = (p - (T)(label == j)) * rs;
        }
        *ok += FN(argmax)(z, cols) == label;
        rl[r] = (double)rw * row_loss;
    }
}

/* bytes of team scratch fsgd_output_cost_team needs */
static size_t FN(cost_scratch)(int64_t rows, int64_t cols, int nthreads)
{
    const size_t per = ((size_t)cols * sizeof(T) + 63) & ~(size_t)63;
    return (((size_t)rows * sizeof(double) + 63) & ~(size_t)63) + (size_t)nthreads * per +
           (((size_t)rows * sizeof(T) + 63) & ~(size_t)63) + 64;
}

/* The team body: rows split between the threads, each row's loss kept, then
 * summed in row order by one thread (the same bits for any team), into
 * team->loss and team->correct. Arguments already checked. */
static void FN(output_cost_team)(int cost, double cost_param, int act, T slope, int64_t rows,
                                 int64_t cols, T *Z, const int64_t *y_int, const T *y,
                                 const int64_t *y_rows, int64_t scale_rows, const T *sample_w,
                                 T *D, void *scratch, fsgd_team *team)
{
    FN(cost_args) c;
    c.cost = cost;
    c.act = act;
    c.slope = slope;
    c.delta = (T)cost_param;
    c.cols = cols;
    c.y_int = y_int;
    c.y = y;
    c.sample_w = sample_w;
    c.inv_rows = (T)1 / (T)scale_rows;
    if (sample_w) {
        double wsum = 0.0;
        for (int64_t r = 0; r < rows; r++) wsum += (double)sample_w[y_rows ? y_rows[r] : r];
        c.inv_rows = wsum > 0.0 ? (T)(1.0 / wsum) : (T)0;
    }
    double *rl = (double *)scratch;
    const size_t per = ((size_t)cols * sizeof(T) + 63) & ~(size_t)63;
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    T *prob = (T *)((char *)scratch + (((size_t)rows * sizeof(double) + 63) & ~(size_t)63) +
                    (size_t)tid * per);
    int64_t ok = 0;
    if (cost == FSGD_COST_CROSS_ENTROPY && y_int && D) {
        /* each thread a range of rows (the same bits for any team: see ce_rows) */
        int k = 1;
#ifdef _OPENMP
        k = omp_get_num_threads();
#endif
        T *mrow = (T *)((char *)scratch + (((size_t)rows * sizeof(double) + 63) & ~(size_t)63) +
                        (size_t)k * per);
        FN(ce_rows)(&c, rows * tid / k, rows * (tid + 1) / k, y_rows, Z, D, mrow, rl, &ok);
#ifdef _OPENMP
#pragma omp barrier
#endif
    } else {
        FSGD_OMP_FOR
        for (int64_t r = 0; r < rows; r++) {
            const int64_t yr = y_rows ? y_rows[r] : r;
            rl[r] = FN(cost_row)(&c, yr, Z + r * cols, D ? D + r * cols : NULL, prob, &ok);
        }
    }
    if (ok) {
#ifdef _OPENMP
#pragma omp atomic
#endif
        team->correct += ok;
    }
#ifdef _OPENMP
#pragma omp single
#endif
    {
        double total = 0.0;
        for (int64_t r = 0; r < rows; r++) total += rl[r];
        team->loss = total;
    }
}

int FN(fsgd_output_cost)(int nthreads, int cost, double cost_param, int act, T slope,
                         int64_t rows, int64_t cols, T *Z, const int64_t *y_int, const T *y,
                         const int64_t *y_rows, int64_t scale_rows, const T *sample_w, T *D,
                         double *loss, int64_t *correct)
{
    const int st =
        FN(cost_check)(cost, cost_param, act, rows, cols, y_int, y, y_rows, scale_rows);
    if (st) return st;
    const int nt = fsgd_threads_for(nthreads, rows * cols * 8, FSGD_PAR_MIN);
    void *scratch = fsgd_workspace(FN(cost_scratch)(rows, cols, nt));
    if (!scratch) return FSGD_ERR_ALLOC;
    fsgd_team team;
    memset(&team, 0, sizeof team);
    FSGD_RUN(nt, FN(output_cost_team)(cost, cost_param, act, slope, rows, cols, Z, y_int, y,
                                      y_rows, scale_rows, sample_w, D, scratch, &team));
    *loss = team.loss;
    *correct = team.correct;
    return FSGD_OK;
}

#undef FN
