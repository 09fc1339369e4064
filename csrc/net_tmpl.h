/*
 * Layer kernels and the whole network on a plan (fsgd_net in fsgd.h).
 * Included by ops.c once per dtype after act_tmpl.h, cost_tmpl.h and
 * optim_tmpl.h.
 *
 * A new layer kind adds its forward and backward here (one case in
 * layer_forward and layer_backward) and its enum value in fsgd.h.
 */
#define FN(name) FSGD_CAT(name, SFX)
#define GEMM FN(fsgd_gemm)

/* ---- the dense layer ------------------------------------------------------ */
int FN(fsgd_dense_forward)(int nthreads, int64_t rows, int64_t n_in, int64_t n_out, const T *X,
                           int64_t ldx, const int64_t *x_rows, const T *W, const T *b, int act,
                           T slope, T *Z)
{
    int st = GEMM(nthreads, 0, 0, rows, n_out, n_in, (T)1, X, ldx, x_rows, W, n_out, (T)0, Z,
                  n_out);
    if (st) return st;
    FN(bias_act)(nthreads, act, slope, rows, n_out, b, Z);
    return FSGD_OK;
}

int FN(fsgd_dense_backward)(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,
                            const T *X, int64_t ldx, const int64_t *x_rows, const T *W,
                            const T *A, int act, T slope, T *D, T *dW, T *db, T *dX)
{
    FN(fsgd_act_backward)(nthreads, act, slope, rows, n_out, A, D);
    int st = GEMM(nthreads, 1, 0, n_in, n_out, rows, (T)1, X, ldx, x_rows, D, n_out, (T)0, dW,
                  n_out);
    if (st) return st;
    FN(fsgd_col_sums)(nthreads, rows, n_out, D, db);
    if (dX) st = GEMM(nthreads, 0, 1, rows, n_in, n_out, (T)1, D, n_out, NULL, W, n_out, (T)0,
                      dX, n_in);
    return st;
}

/* ---- dropout ---------------------------------------------------------------- */
/* one row: the hash is integer arithmetic and the scale an IEEE division, so every
   clone gives the same bits; the AVX2 clone vectorises the 64-bit hash */
FSGD_CLONES static void FN(dropout_row)(uint64_t rk, uint64_t thr, T keep, int64_t cols,
                                        const T *restrict in, T *restrict out)
{
    for (int64_t j = 0; j < cols; j++)
        out[j] = fsgd_drop_bits(rk, j) < thr ? in[j] / keep : (T)0;
}

void FN(fsgd_dropout)(int nthreads, double rate, uint64_t seed, uint64_t step, int64_t row0,
                      int64_t rows, int64_t cols, const T *X, int64_t ldx,
                      const int64_t *x_rows, T *A, const T *D, T *dX)
{
    const uint64_t thr = fsgd_drop_threshold(rate);
    const T keep = (T)(1.0 - rate);
    const uint64_t bkey = fsgd_drop_batch_key(seed, step);
    const int nt = fsgd_threads_for(nthreads, rows * cols, FSGD_PAR_MIN / 4);
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
    for (int64_t r = 0; r < rows; r++) {
        const uint64_t rk = fsgd_drop_row_key(bkey, row0 + r);
        const T *in = D ? D + r * cols : X + (x_rows ? x_rows[r] : r) * ldx;
        FN(dropout_row)(rk, thr, keep, cols, in, D ? dX + r * cols : A + r * cols);
    }
}

/* ---- batch normalization ---------------------------------------------------- */
#define FSGD_BN_BLOCK 32 /* columns per thread in the per-column reductions */

/* aux = [mean, var, inv_std] of the columns of X[x_rows] (biased variance, two passes;
   each column summed by one thread, rows in order) */
static void FN(bn_stats)(int nthreads, int64_t rows, int64_t cols, const T *X, int64_t ldx,
                         const int64_t *x_rows, double epsilon, T *aux)
{
    T *mean = aux, *var = aux + cols, *inv = aux + 2 * cols;
    const int64_t nblk = (cols + FSGD_BN_BLOCK - 1) / FSGD_BN_BLOCK;
    int nt = fsgd_threads_for(nthreads, rows * cols, FSGD_PAR_MIN / 4);
    if (nt > nblk) nt = (int)nblk;
    (void)nt;
    const T n = (T)rows;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
    for (int64_t cb = 0; cb < nblk; cb++) {
        const int64_t c0 = cb * FSGD_BN_BLOCK;
        const int64_t w = c0 + FSGD_BN_BLOCK < cols ? FSGD_BN_BLOCK : cols - c0;
        T *restrict m = mean + c0, *restrict v = var + c0;
        for (int64_t j = 0; j < w; j++) m[j] = v[j] = (T)0;
        for (int64_t r = 0; r < rows; r++) {
            const T *restrict x = X + (x_rows ? x_rows[r] : r) * ldx + c0;
            for (int64_t j = 0; j < w; j++) m[j] += x[j];
        }
        for (int64_t j = 0; j < w; j++) m[j] /= n;
        for (int64_t r = 0; r < rows; r++) {
            const T *restrict x = X + (x_rows ? x_rows[r] : r) * ldx + c0;
            for (int64_t j = 0; j < w; j++) {
                const T c = x[j] - m[j];
                v[j] += c * c;
            }
        }
        for (int64_t j = 0; j < w; j++) {
            v[j] /= n;
            inv[c0 + j] = (T)1 / SQRTT(v[j] + (T)epsilon);
        }
    }
}

/* A = (X - mean) * k + beta with k = inv_std * gamma, rows split between threads */
static void FN(bn_apply)(int nthreads, int64_t rows, int64_t cols, const T *X, int64_t ldx,
                         const int64_t *x_rows, const T *mean, const T *k, const T *beta, T *A)
{
    const int nt = fsgd_threads_for(nthreads, rows * cols, FSGD_PAR_MIN);
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
    for (int64_t r = 0; r < rows; r++) {
        const T *restrict x = X + (x_rows ? x_rows[r] : r) * ldx;
        T *restrict a = A + r * cols;
        if (beta)
            for (int64_t j = 0; j < cols; j++) a[j] = (x[j] - mean[j]) * k[j] + beta[j];
        else
            for (int64_t j = 0; j < cols; j++) a[j] = (x[j] - mean[j]) * k[j];
    }
}

/* moving statistics (state: mean then var): finite check (commit 0) or write (commit 1) */
static int FN(bn_moving)(const fsgd_layer *L, T *state, int commit)
{
    const int64_t n = L->n_out;
    const T *aux = (const T *)L->aux;
    T *mm = state + L->s_offset, *mv = mm + n;
    const T mom = (T)L->momentum, rest = (T)(1.0 - L->momentum);
    for (int64_t j = 0; j < n; j++) {
        const T m = mm[j] * mom + aux[j] * rest;
        const T v = mv[j] * mom + aux[n + j] * rest;
        if (!commit) {
            if (!(m - m == (T)0) || !(v - v == (T)0)) return FSGD_ERR_NONFINITE;
        } else {
            mm[j] = m;
            mv[j] = v;
        }
    }
    return FSGD_OK;
}

/* D (dL/dA) -> dgamma, dbeta (when not NULL) and dX (when not NULL), with
   xhat = (x - mean) inv recomputed from X:
   dbeta = sum D, dgamma = sum D xhat,
   dX = gamma inv / n (n D - dbeta - xhat dgamma) */
static int FN(bn_backward)(int nthreads, int64_t rows, int64_t cols, const T *X, int64_t ldx,
                           const int64_t *x_rows, const T *aux, const T *gamma, const T *D,
                           T *dgamma, T *dbeta, T *dX)
{
    const T *mean = aux, *inv = aux + 2 * cols;
    T *sums = (T *)fsgd_workspace((size_t)(2 * cols) * sizeof(T));
    if (!sums) return FSGD_ERR_ALLOC;
    T *sd = sums, *sdx = sums + cols;
    const int64_t nblk = (cols + FSGD_BN_BLOCK - 1) / FSGD_BN_BLOCK;
    int nt = fsgd_threads_for(nthreads, rows * cols, FSGD_PAR_MIN / 4);
    if (nt > nblk) nt = (int)nblk;
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
    for (int64_t cb = 0; cb < nblk; cb++) {
        const int64_t c0 = cb * FSGD_BN_BLOCK;
        const int64_t w = c0 + FSGD_BN_BLOCK < cols ? FSGD_BN_BLOCK : cols - c0;
        T *restrict s1 = sd + c0, *restrict s2 = sdx + c0;
        const T *restrict m = mean + c0, *restrict iv = inv + c0;
        for (int64_t j = 0; j < w; j++) s1[j] = s2[j] = (T)0;
        for (int64_t r = 0; r < rows; r++) {
            const T *restrict x = X + (x_rows ? x_rows[r] : r) * ldx + c0;
            const T *restrict d = D + r * cols + c0;
            for (int64_t j = 0; j < w; j++) {
                s1[j] += d[j];
                s2[j] += d[j] * ((x[j] - m[j]) * iv[j]);
            }
        }
    }
    if (dbeta) memcpy(dbeta, sd, (size_t)cols * sizeof(T));
    if (dgamma) memcpy(dgamma, sdx, (size_t)cols * sizeof(T));
    if (!dX) return FSGD_OK;
    const T n = (T)rows;
    const int nt2 = fsgd_threads_for(nthreads, rows * cols, FSGD_PAR_MIN);
    (void)nt2;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt2) if (nt2 > 1)
#endif
    for (int64_t r = 0; r < rows; r++) {
        const T *restrict x = X + (x_rows ? x_rows[r] : r) * ldx;
        const T *restrict d = D + r * cols;
        T *restrict o = dX + r * cols;
        for (int64_t j = 0; j < cols; j++) {
            const T xhat = (x[j] - mean[j]) * inv[j];
            const T g = gamma ? gamma[j] : (T)1;
            o[j] = g * inv[j] / n * (n * d[j] - sd[j] - xhat * sdx[j]);
        }
    }
    return FSGD_OK;
}

/* ---- a layer of the plan ------------------------------------------------- */
/* input of layer l: X (read through x_rows) for the first, else the previous A */
static inline const T *FN(layer_input)(const fsgd_net *net, int l, const T *X, int64_t ldx,
                                       const int64_t *x_rows, int64_t *ld,
                                       const int64_t **rows)
{
    if (l == 0) {
        *ld = ldx;
        *rows = x_rows;
        return X;
    }
    *ld = net->layers[l - 1].n_out;
    *rows = NULL;
    return (const T *)net->layers[l - 1].A;
}

static int FN(layer_forward)(const fsgd_net *net, int l, int64_t rows, const T *in, int64_t ld,
                             const int64_t *in_rows, int act)
{
    const fsgd_layer *L = &net->layers[l];
    const T *params = (const T *)net->params;
    const int training = net->grads != NULL;
    switch (L->kind) {
    case FSGD_LAYER_DENSE:
        if (l == 0 && net->x_csr)
            return FN(fsgd_csr_dense_forward)(net->nthreads, rows, L->n_in, L->n_out, net->x_csr,
                                              in_rows, params + L->w_offset,
                                              params + L->b_offset, act, (T)L->slope, (T *)L->A);
        return FN(fsgd_dense_forward)(net->nthreads, rows, L->n_in, L->n_out, in, ld, in_rows,
                                      params + L->w_offset, params + L->b_offset, act,
                                      (T)L->slope, (T *)L->A);
    case FSGD_LAYER_DROPOUT:
        if (training && L->rate > 0.0) {
            FN(fsgd_dropout)(net->nthreads, L->rate, L->seed, net->seed_step, net->seed_row0,
                             rows, L->n_out, in, ld, in_rows, (T *)L->A, NULL, NULL);
        } else if ((const T *)L->A != in || in_rows) { /* identity */
            for (int64_t r = 0; r < rows; r++)
                memcpy((T *)L->A + r * L->n_out, in + (in_rows ? in_rows[r] : r) * ld,
                       (size_t)L->n_out * sizeof(T));
        }
        return FSGD_OK;
    case FSGD_LAYER_BATCH_NORM: {
        const T *gamma = L->w_offset >= 0 ? params + L->w_offset : NULL;
        const T *beta = L->b_offset >= 0 ? params + L->b_offset : NULL;
        const int64_t n = L->n_out;
        T *k = (T *)fsgd_workspace((size_t)n * sizeof(T));
        if (!k) return FSGD_ERR_ALLOC;
        const T *mean;
        if (training) {
            FN(bn_stats)(net->nthreads, rows, n, in, ld, in_rows, L->epsilon, (T *)L->aux);
            mean = (const T *)L->aux;
            const T *inv = mean + 2 * n;
            for (int64_t j = 0; j < n; j++) k[j] = gamma ? inv[j] * gamma[j] : inv[j];
        } else {
            mean = (const T *)net->state + L->s_offset;
            const T *var = mean + n;
            for (int64_t j = 0; j < n; j++) {
                const T inv = (T)1 / SQRTT(var[j] + (T)L->epsilon);
                k[j] = gamma ? inv * gamma[j] : inv;
            }
        }
        FN(bn_apply)(net->nthreads, rows, n, in, ld, in_rows, mean, k, beta, (T *)L->A);
        return FSGD_OK;
    }
    default:
        return FSGD_ERR_ARG;
    }
}

/* D of layer l holds dL/dA (dL/dZ for the output layer: act is then linear) */
static int FN(layer_backward)(const fsgd_net *net, int l, int64_t rows, const T *in, int64_t ld,
                              const int64_t *in_rows, int act)
{
    const fsgd_layer *L = &net->layers[l];
    const T *params = (const T *)net->params;
    T *grads = (T *)net->grads;
    T *dx = l > 0 ? (T *)net->layers[l - 1].D : NULL;
    switch (L->kind) {
    case FSGD_LAYER_DENSE:
        if (l == 0 && net->x_csr)
            return FN(fsgd_csr_dense_backward)(net->nthreads, rows, L->n_in, L->n_out, net->x_csr,
                                               in_rows, (const T *)L->A, act, (T)L->slope,
                                               (T *)L->D, grads + L->w_offset,
                                               grads + L->b_offset);
        return FN(fsgd_dense_backward)(net->nthreads, rows, L->n_in, L->n_out, in, ld, in_rows,
                                       params + L->w_offset, (const T *)L->A, act, (T)L->slope,
                                       (T *)L->D, grads + L->w_offset, grads + L->b_offset, dx);
    case FSGD_LAYER_DROPOUT:
        if (!dx) return FSGD_OK;
        if (L->rate > 0.0)
            FN(fsgd_dropout)(net->nthreads, L->rate, L->seed, net->seed_step, net->seed_row0,
                             rows, L->n_out, NULL, 0, NULL, NULL, (const T *)L->D, dx);
        else
            memcpy(dx, L->D, (size_t)(rows * L->n_out) * sizeof(T));
        return FSGD_OK;
    case FSGD_LAYER_BATCH_NORM:
        return FN(bn_backward)(net->nthreads, rows, L->n_out, in, ld, in_rows, (const T *)L->aux,
                               L->w_offset >= 0 ? params + L->w_offset : NULL, (const T *)L->D,
                               L->w_offset >= 0 ? grads + L->w_offset : NULL,
                               L->b_offset >= 0 ? grads + L->b_offset : NULL, dx);
    default:
        return FSGD_ERR_ARG;
    }
}

/* ---- the network ----------------------------------------------------------- */
int FN(fsgd_net_forward)(const fsgd_net *net, int64_t rows, const T *X, int64_t ldx,
                         const int64_t *x_rows, int out_act)
{
    if (rows < 1 || rows > net->capacity || (!X && !net->x_csr)) return FSGD_ERR_ARG;
    for (int l = 0; l < net->n_layers; l++) {
        int64_t ld;
        const int64_t *ir;
        const T *in = FN(layer_input)(net, l, X, ldx, x_rows, &ld, &ir);
        const int act =
            (l == net->n_layers - 1 && !out_act) ? FSGD_ACT_LINEAR : net->layers[l].act;
        const int st = FN(layer_forward)(net, l, rows, in, ld, ir, act);
        if (st) return st;
    }
    return FSGD_OK;
}

int FN(fsgd_net_cost)(const fsgd_net *net, int64_t rows, const int64_t *y_int, const T *y,
                      const int64_t *y_rows, int with_grad, double *loss, int64_t *correct)
{
    if (rows < 1 || rows > net->capacity || net->cost < 0) return FSGD_ERR_ARG;
    const fsgd_layer *out = &net->layers[net->n_layers - 1];
    if (with_grad && !out->D) return FSGD_ERR_ARG;
    return FN(fsgd_output_cost)(net->nthreads, net->cost, net->cost_param, out->act,
                                (T)out->slope, rows, out->n_out, (T *)out->A, y_int, y, y_rows,
                                rows, (const T *)net->sample_w,
                                with_grad ? (T *)out->D : NULL, loss, correct);
}

int FN(fsgd_net_backward)(const fsgd_net *net, int64_t rows, const T *X, int64_t ldx,
                          const int64_t *x_rows)
{
    if (rows < 1 || rows > net->capacity || (!X && !net->x_csr) || !net->grads)
        return FSGD_ERR_ARG;
    const int nl = net->n_layers;
    for (int l = nl - 1; l >= 0; l--) {
        if (!net->layers[l].D) return FSGD_ERR_ARG;
        int64_t ld;
        const int64_t *ir;
        const T *in = FN(layer_input)(net, l, X, ldx, x_rows, &ld, &ir);
        /* the output layer's D already holds dL/dZ */
        const int act = l == nl - 1 ? FSGD_ACT_LINEAR : net->layers[l].act;
        const int st = FN(layer_backward)(net, l, rows, in, ld, ir, act);
        if (st) return st;
    }
    return FSGD_OK;
}

int FN(fsgd_net_train_batch)(const fsgd_net *net, const fsgd_opt *opt,
                             const fsgd_update_plan *plan, int64_t rows, const T *X,
                             int64_t ldx, const int64_t *x_rows, const int64_t *y_int,
                             const T *y, const int64_t *y_rows, double *loss, int64_t *correct)
{
    if (opt && (!plan || plan->params != net->params || plan->grads != net->grads ||
                plan->size != net->n_params))
        return FSGD_ERR_ARG;
    int st = FN(fsgd_net_forward)(net, rows, X, ldx, x_rows, 0);
    if (st) return st;
    st = FN(fsgd_net_cost)(net, rows, y_int, y, y_rows, 1, loss, correct);
    if (st) return st;
    if (!(*loss - *loss == 0.0)) return FSGD_ERR_NONFINITE;
    st = FN(fsgd_net_backward)(net, rows, X, ldx, x_rows);
    if (st || !opt) return st;
    /* batch normalization's moving statistics move with a successful step only */
    for (int l = 0; l < net->n_layers; l++)
        if (net->layers[l].kind == FSGD_LAYER_BATCH_NORM) {
            st = FN(bn_moving)(&net->layers[l], (T *)net->state, 0);
            if (st) return st;
        }
    st = FN(fsgd_update)(net->nthreads, opt, plan);
    if (st) return st;
    for (int l = 0; l < net->n_layers; l++)
        if (net->layers[l].kind == FSGD_LAYER_BATCH_NORM)
            FN(bn_moving)(&net->layers[l], (T *)net->state, 1);
    return FSGD_OK;
}

#undef FSGD_BN_BLOCK
#undef GEMM
#undef FN
