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
/* Team body: Z = f(X[x_rows] W + b), bias and elementwise activations applied to
   each tile of the product as it is written; softmax (row-wise) in a pass after. */
static void FN(dense_forward_team)(int64_t rows, int64_t n_in, int64_t n_out, const T *X,
                                   int64_t ldx, const int64_t *x_rows, const T *W, const T *b,
                                   int act, T slope, T *Z, void *scratch)
{
    const int fuse = FN(act_elementwise)(act);
    FN(fwd_epi_ctx) ctx = {b, fuse ? act : FSGD_ACT_LINEAR, slope};
    const FN(fsgd_epi) epi = {FN(fwd_epi), &ctx, NULL};
    FN(fsgd_gemm_team)(0, 0, rows, n_out, n_in, (T)1, X, ldx, x_rows, W, n_out, (T)0, Z, n_out,
                       &epi, scratch);
    if (!fuse) FN(act_forward_team)(act, slope, rows, n_out, Z);
}

/* Team body: D holds dL/dA, or dL/dZ when dz (the product that wrote it applied the
   activation's derivative). dW = X^T D with db, the column sums of D, taken where
   the product packs D; dX = D W^T with dx_epi (the layer below's activation
   derivative, or NULL) applied to its tiles. */
static void FN(dense_backward_team)(int64_t rows, int64_t n_in, int64_t n_out, const T *X,
                                    int64_t ldx, const int64_t *x_rows, const T *W,
                                    const T *A, int act, T slope, int dz, T *D, T *dW, T *db,
                                    T *dX, const FN(fsgd_epi) *dx_epi, void *scratch)
{
    if (!dz) FN(act_backward_team)(act, slope, rows, n_out, A, D);
    const FN(fsgd_epi) epi = {NULL, NULL, db};
    FN(fsgd_gemm_team)(1, 0, n_in, n_out, rows, (T)1, X, ldx, x_rows, D, n_out, (T)0, dW,
                       n_out, &epi, scratch);
    if (dX)
        FN(fsgd_gemm_team)(0, 1, rows, n_in, n_out, (T)1, D, n_out, NULL, W, n_out, (T)0, dX,
                           n_in, dx_epi, scratch);
}

int FN(fsgd_dense_forward)(int nthreads, int64_t rows, int64_t n_in, int64_t n_out, const T *X,
                           int64_t ldx, const int64_t *x_rows, const T *W, const T *b, int act,
                           T slope, T *Z)
{
    if (rows < 0 || n_in < 0 || n_out < 0) return FSGD_ERR_ARG;
    if (rows == 0 || n_out == 0) return FSGD_OK;
    void *scratch = fsgd_workspace(FN(fsgd_gemm_scratch)(0, x_rows, rows, n_out, n_in));
    if (!scratch) return FSGD_ERR_ALLOC;
    const int nt = fsgd_gemm_threads(nthreads, rows, n_out, n_in);
    FSGD_RUN(nt, FN(dense_forward_team)(rows, n_in, n_out, X, ldx, x_rows, W, b, act, slope, Z,
                                        scratch));
    return FSGD_OK;
}

int FN(fsgd_dense_backward)(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,
                            const T *X, int64_t ldx, const int64_t *x_rows, const T *W,
                            const T *A, int act, T slope, T *D, T *dW, T *db, T *dX)
{
    if (rows < 0 || n_in < 0 || n_out < 0) return FSGD_ERR_ARG;
    size_t need = FN(fsgd_gemm_scratch)(1, x_rows, n_in, n_out, rows);
    const size_t need_dx = FN(fsgd_gemm_scratch)(0, NULL, rows, n_in, n_out);
    if (dX && need_dx > need) need = need_dx;
    void *scratch = fsgd_workspace(need);
    if (!scratch) return FSGD_ERR_ALLOC;
    const int nt = fsgd_gemm_threads(nthreads, rows, n_in, n_out);
    FSGD_RUN(nt, FN(dense_backward_team)(rows, n_in, n_out, X, ldx, x_rows, W, A, act, slope,
                                         0, D, dW, db, dX, NULL, scratch));
    return FSGD_OK;
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

/* team body of fsgd_dropout */
static void FN(dropout_team)(double rate, uint64_t seed, uint64_t step, int64_t row0,
                             int64_t rows, int64_t cols, const T *X, int64_t ldx,
                             const int64_t *x_rows, T *A, const T *D, T *dX)
{
    const uint64_t thr = fsgd_drop_threshold(rate);
    const T keep = (T)(1.0 - rate);
    const uint64_t bkey = fsgd_drop_batch_key(seed, step);
    FSGD_OMP_FOR
    for (int64_t r = 0; r < rows; r++) {
        const uint64_t rk = fsgd_drop_row_key(bkey, row0 + r);
        const T *in = D ? D + r * cols : X + (x_rows ? x_rows[r] : r) * ldx;
        FN(dropout_row)(rk, thr, keep, cols, in, D ? dX + r * cols : A + r * cols);
    }
}

void FN(fsgd_dropout)(int nthreads, double rate, uint64_t seed, uint64_t step, int64_t row0,
                      int64_t rows, int64_t cols, const T *X, int64_t ldx,
                      const int64_t *x_rows, T *A, const T *D, T *dX)
{
    const int nt = fsgd_threads_for(nthreads, rows * cols, FSGD_PAR_MIN / 4);
    FSGD_RUN(nt, FN(dropout_team)(rate, seed, step, row0, rows, cols, X, ldx, x_rows, A, D, dX));
}

/* ---- batch normalization ---------------------------------------------------- */
#define FSGD_BN_BLOCK 32 /* columns per thread in the per-column reductions */

/* aux = [mean, var, inv_std] of the columns of X[x_rows] (biased variance, two passes;
   each column summed by one thread, rows in order) */
static void FN(bn_stats_team)(int64_t rows, int64_t cols, const T *X, int64_t ldx,
                              const int64_t *x_rows, double epsilon, T *aux)
{
    T *mean = aux, *var = aux + cols, *inv = aux + 2 * cols;
    const int64_t nblk = (cols + FSGD_BN_BLOCK - 1) / FSGD_BN_BLOCK;
    const T n = (T)rows;
    FSGD_OMP_FOR
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
static void FN(bn_apply_team)(int64_t rows, int64_t cols, const T *X, int64_t ldx,
                              const int64_t *x_rows, const T *mean, const T *k, const T *beta,
                              T *A)
{
    FSGD_OMP_FOR
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
   dX = gamma inv / n (n D - dbeta - xhat dgamma); sums: 2 cols of team scratch */
static void FN(bn_backward_team)(int64_t rows, int64_t cols, const T *X, int64_t ldx,
                                 const int64_t *x_rows, const T *aux, const T *gamma,
                                 const T *D, T *dgamma, T *dbeta, T *dX, T *sums)
{
    const T *mean = aux, *inv = aux + 2 * cols;
    T *sd = sums, *sdx = sums + cols;
    const int64_t nblk = (cols + FSGD_BN_BLOCK - 1) / FSGD_BN_BLOCK;
    FSGD_OMP_FOR
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
        if (dbeta) memcpy(dbeta + c0, s1, (size_t)w * sizeof(T));
        if (dgamma) memcpy(dgamma + c0, s2, (size_t)w * sizeof(T));
    }
    if (!dX) return;
    const T n = (T)rows;
    FSGD_OMP_FOR
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

/* a dense layer whose activation the product above it can apply (see dense_backward_team) */
static inline int FN(fusable_below)(const fsgd_net *net, int l)
{
    return l > 0 && net->layers[l - 1].kind == FSGD_LAYER_DENSE &&
           !(l - 1 == 0 && net->x_csr) && FN(act_elementwise)(net->layers[l - 1].act);
}

static void FN(layer_forward_team)(const fsgd_net *net, int l, int64_t rows, const T *in,
                                   int64_t ld, const int64_t *in_rows, int act, fsgd_team *team)
{
    const fsgd_layer *L = &net->layers[l];
    const T *params = (const T *)net->params;
    const int training = net->grads != NULL;
    switch (L->kind) {
    case FSGD_LAYER_DENSE:
        if (l == 0 && net->x_csr) {
            FN(csr_forward_team)(rows, L->n_in, L->n_out, net->x_csr, in_rows,
                                 params + L->w_offset, params + L->b_offset, act, (T)L->slope,
                                 (T *)L->A, team);
            return;
        }
        FN(dense_forward_team)(rows, L->n_in, L->n_out, in, ld, in_rows, params + L->w_offset,
                               params + L->b_offset, act, (T)L->slope, (T *)L->A,
                               team->scratch);
        return;
    case FSGD_LAYER_DROPOUT:
        if (training && L->rate > 0.0) {
            FN(dropout_team)(L->rate, L->seed, net->seed_step, net->seed_row0, rows, L->n_out, in,
                             ld, in_rows, (T *)L->A, NULL, NULL);
        } else if ((const T *)L->A != in || in_rows) { /* identity */
            FSGD_OMP_FOR
            for (int64_t r = 0; r < rows; r++)
                memcpy((T *)L->A + r * L->n_out, in + (in_rows ? in_rows[r] : r) * ld,
                       (size_t)L->n_out * sizeof(T));
        }
        return;
    case FSGD_LAYER_BATCH_NORM: {
        const T *gamma = L->w_offset >= 0 ? params + L->w_offset : NULL;
        const T *beta = L->b_offset >= 0 ? params + L->b_offset : NULL;
        const int64_t n = L->n_out;
        T *k = (T *)team->scratch;
        const T *mean;
        if (training) {
            FN(bn_stats_team)(rows, n, in, ld, in_rows, L->epsilon, (T *)L->aux);
            mean = (const T *)L->aux;
        } else {
            mean = (const T *)net->state + L->s_offset;
        }
#ifdef _OPENMP
#pragma omp single
#endif
        {
            if (training) {
                const T *inv = mean + 2 * n;
                for (int64_t j = 0; j < n; j++) k[j] = gamma ? inv[j] * gamma[j] : inv[j];
            } else {
                const T *var = mean + n;
                for (int64_t j = 0; j < n; j++) {
                    const T inv = (T)1 / SQRTT(var[j] + (T)L->epsilon);
                    k[j] = gamma ? inv * gamma[j] : inv;
                }
            }
        }
        FN(bn_apply_team)(rows, n, in, ld, in_rows, mean, k, beta, (T *)L->A);
        return;
    }
    default:
        FSGD_TEAM_SET(team->status, FSGD_ERR_ARG);
        return;
    }
}

/* D of layer l holds dL/dA, or dL/dZ when dz (the output layer's, or one whose
   activation derivative the product above applied) */
static void FN(layer_backward_team)(const fsgd_net *net, int l, int64_t rows, const T *in,
                                    int64_t ld, const int64_t *in_rows, int dz, fsgd_team *team)
{
    const fsgd_layer *L = &net->layers[l];
    const T *params = (const T *)net->params;
    T *grads = (T *)net->grads;
    T *dx = l > 0 ? (T *)net->layers[l - 1].D : NULL;
    switch (L->kind) {
    case FSGD_LAYER_DENSE: {
        if (l == 0 && net->x_csr) {
            FN(csr_backward_team)(rows, L->n_in, L->n_out, net->x_csr, in_rows,
                                  (const T *)L->A, L->act, (T)L->slope, dz, (T *)L->D,
                                  grads + L->w_offset, grads + L->b_offset, team->scratch, team);
            return;
        }
        FN(bwd_epi_ctx) ctx;
        FN(fsgd_epi) epi = {FN(bwd_epi), &ctx, NULL};
        const int fuse = FN(fusable_below)(net, l);
        if (fuse) {
            const fsgd_layer *B = &net->layers[l - 1];
            ctx.A = (const T *)B->A;
            ctx.lda = B->n_out;
            ctx.act = B->act;
            ctx.slope = (T)B->slope;
        }
        FN(dense_backward_team)(rows, L->n_in, L->n_out, in, ld, in_rows, params + L->w_offset,
                                (const T *)L->A, L->act, (T)L->slope, dz, (T *)L->D,
                                grads + L->w_offset, grads + L->b_offset, dx,
                                fuse ? &epi : NULL, team->scratch);
        return;
    }
    case FSGD_LAYER_DROPOUT:
        if (!dx) return;
        if (L->rate > 0.0) {
            FN(dropout_team)(L->rate, L->seed, net->seed_step, net->seed_row0, rows, L->n_out,
                             NULL, 0, NULL, NULL, (const T *)L->D, dx);
        } else {
            FSGD_OMP_FOR
            for (int64_t r = 0; r < rows; r++)
                memcpy(dx + r * L->n_out, (const T *)L->D + r * L->n_out,
                       (size_t)L->n_out * sizeof(T));
        }
        return;
    case FSGD_LAYER_BATCH_NORM:
        FN(bn_backward_team)(rows, L->n_out, in, ld, in_rows, (const T *)L->aux,
                             L->w_offset >= 0 ? params + L->w_offset : NULL, (const T *)L->D,
                             L->w_offset >= 0 ? grads + L->w_offset : NULL,
                             L->b_offset >= 0 ? grads + L->b_offset : NULL, dx,
                             (T *)team->scratch);
        return;
    default:
        FSGD_TEAM_SET(team->status, FSGD_ERR_ARG);
        return;
    }
}

/* ---- the network ----------------------------------------------------------- */
/* scratch one call's team needs: the largest product's packing buffers, batch
   normalization's 3 n_out, the cost's row losses (phases run one after another) */
static size_t FN(net_scratch)(const fsgd_net *net, int64_t rows, const int64_t *x_rows,
                              int backward, int nt)
{
    size_t need = 0;
#define FSGD_NEED(x)                                                                          \
    do {                                                                                      \
        const size_t need_ = (x);                                                             \
        if (need_ > need) need = need_;                                                       \
    } while (0)
    for (int l = 0; l < net->n_layers; l++) {
        const fsgd_layer *L = &net->layers[l];
        if (L->kind == FSGD_LAYER_BATCH_NORM) FSGD_NEED(3 * (size_t)L->n_out * sizeof(T));
        if (L->kind == FSGD_LAYER_DENSE && l == 0 && net->x_csr) {
            /* the sparse backward sorts the batch (a team of up to nt) */
            if (backward) FSGD_NEED(FN(csr_scratch)(nt, rows, L->n_in, net->x_csr, x_rows));
            continue;
        }
        if (L->kind != FSGD_LAYER_DENSE) continue;
        const int64_t *xr = l == 0 ? x_rows : NULL;
        FSGD_NEED(FN(fsgd_gemm_scratch)(0, xr, rows, L->n_out, L->n_in));
        if (!backward) continue;
        FSGD_NEED(FN(fsgd_gemm_scratch)(1, xr, L->n_in, L->n_out, rows));
        if (l > 0) FSGD_NEED(FN(fsgd_gemm_scratch)(0, NULL, rows, L->n_in, L->n_out));
    }
    FSGD_NEED(FN(cost_scratch)(rows, net->layers[net->n_layers - 1].n_out, nt));
#undef FSGD_NEED
    return need + 64;
}

/* the team for one call: about 2 MFLOP of products per thread */
static int FN(net_threads)(const fsgd_net *net, int64_t rows, int backward)
{
    int64_t macs = 0;
    for (int l = 0; l < net->n_layers; l++) macs += net->layers[l].n_in * net->layers[l].n_out;
    return fsgd_gemm_threads(net->nthreads, rows, macs, backward ? 3 : 1);
}

static void FN(net_forward_team)(const fsgd_net *net, int64_t rows, const T *X, int64_t ldx,
                                 const int64_t *x_rows, int out_act, fsgd_team *team)
{
    for (int l = 0; l < net->n_layers; l++) {
        int64_t ld;
        const int64_t *ir;
        const T *in = FN(layer_input)(net, l, X, ldx, x_rows, &ld, &ir);
        const int act =
            (l == net->n_layers - 1 && !out_act) ? FSGD_ACT_LINEAR : net->layers[l].act;
        FN(layer_forward_team)(net, l, rows, in, ld, ir, act, team);
        if (fsgd_team_get(&team->status)) return;
    }
}

static void FN(net_cost_team)(const fsgd_net *net, int64_t rows, const int64_t *y_int,
                              const T *y, const int64_t *y_rows, int with_grad,
                              fsgd_team *team)
{
    const fsgd_layer *out = &net->layers[net->n_layers - 1];
    FN(output_cost_team)(net->cost, net->cost_param, out->act, (T)out->slope, rows, out->n_out,
                         (T *)out->A, y_int, y, y_rows, rows, (const T *)net->sample_w,
                         with_grad ? (T *)out->D : NULL, team->scratch, team);
}

static void FN(net_backward_team)(const fsgd_net *net, int64_t rows, const T *X, int64_t ldx,
                                  const int64_t *x_rows, fsgd_team *team)
{
    const int nl = net->n_layers;
    for (int l = nl - 1; l >= 0; l--) {
        int64_t ld;
        const int64_t *ir;
        const T *in = FN(layer_input)(net, l, X, ldx, x_rows, &ld, &ir);
        /* the output layer's D holds dL/dZ, and so does a layer's whose activation
           derivative the product above applied */
        const int dz = l == nl - 1 || (net->layers[l + 1].kind == FSGD_LAYER_DENSE &&
                                       FN(fusable_below)(net, l + 1));
        FN(layer_backward_team)(net, l, rows, in, ld, ir, dz, team);
        if (fsgd_team_get(&team->status)) return;
    }
}

static int FN(net_args)(const fsgd_net *net, int64_t rows, const T *X)
{
    return (rows < 1 || rows > net->capacity || (!X && !net->x_csr)) ? FSGD_ERR_ARG : FSGD_OK;
}

/* a call's team state: no error yet, and the scratch for the team of nt (with
   room after it for a sparse first layer's buckets when buckets and they fit, and
   then for its panels' state when a team of nt splits it into panels) */
static int FN(team_start)(fsgd_team *team, const fsgd_net *net, int64_t rows,
                          const int64_t *x_rows, int backward, int buckets, int nt)
{
    memset(team, 0, sizeof *team);
    const size_t need = FSGD_SP_ALIGN(FN(net_scratch)(net, rows, x_rows, backward, nt));
    const fsgd_layer *L0 = &net->layers[0];
    size_t bk = 0, pb = 0;
    if (buckets && net->x_csr && L0->kind == FSGD_LAYER_DENSE)
        bk = fsgd_sp_bk_bytes(rows, L0->n_in, 2 * nt, sizeof(FN(fsgd_sp_ent)));
    /* panels: every thread two rows of every group at least, and a whole vector of
       every path per row of Z */
    if (bk && nt >= 2 && nt <= FSGD_PANELS_MAX && rows >= 4 * (int64_t)nt &&
        L0->n_out >= 16 && fsgd_sp_panel_cols(net->x_csr, L0->n_in, nt, team->pcol))
        pb = fsgd_sp_pipe_bytes(rows, L0->n_out, nt, sizeof(T));
    team->scratch = (char *)fsgd_workspace(need + bk + pb);
    if (!team->scratch) return FSGD_ERR_ALLOC;
    if (bk) team->buck = (char *)FSGD_SP_ALIGN((uintptr_t)(team->scratch + need));
    if (pb) {
        team->npanel = nt;
        team->pipe = (char *)FSGD_SP_ALIGN((uintptr_t)(team->buck + bk));
        for (int t = 0; t <= nt; t++) team->pflat[t] = L0->w_offset + team->pcol[t] * L0->n_out;
        memset(fsgd_sp_pipe_at(team->pipe, rows, L0->n_out, sizeof(T)).prog, 0,
               (size_t)nt * 64);
    }
    return FSGD_OK;
}

int FN(fsgd_net_forward)(const fsgd_net *net, int64_t rows, const T *X, int64_t ldx,
                         const int64_t *x_rows, int out_act)
{
    if (FN(net_args)(net, rows, X)) return FSGD_ERR_ARG;
    const int nt = FN(net_threads)(net, rows, 0);
    fsgd_team team;
    if (FN(team_start)(&team, net, rows, x_rows, 0, 0, nt)) return FSGD_ERR_ALLOC;
    FSGD_RUN(nt, FN(net_forward_team)(net, rows, X, ldx, x_rows, out_act, &team));
    return team.status;
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

static int FN(backward_args)(const fsgd_net *net, int64_t rows, const T *X)
{
    if (FN(net_args)(net, rows, X) || !net->grads) return FSGD_ERR_ARG;
    for (int l = 0; l < net->n_layers; l++)
        if (!net->layers[l].D) return FSGD_ERR_ARG;
    return FSGD_OK;
}

int FN(fsgd_net_backward)(const fsgd_net *net, int64_t rows, const T *X, int64_t ldx,
                          const int64_t *x_rows)
{
    if (FN(backward_args)(net, rows, X)) return FSGD_ERR_ARG;
    const int nt = FN(net_threads)(net, rows, 1);
    fsgd_team team;
    if (FN(team_start)(&team, net, rows, x_rows, 1, 0, nt)) return FSGD_ERR_ALLOC;
    FSGD_RUN(nt, FN(net_backward_team)(net, rows, X, ldx, x_rows, &team));
    return team.status;
}

/* every phase of a training step, run by the team of one parallel region */
static void FN(train_team)(const fsgd_net *net, const fsgd_opt *opt,
                           const FN(update_prep) *prep, const fsgd_update_plan *plan,
                           int64_t rows, const T *X, int64_t ldx, const int64_t *x_rows,
                           const int64_t *y_int, const T *y, const int64_t *y_rows,
                           fsgd_team *team)
{
    FN(net_forward_team)(net, rows, X, ldx, x_rows, 0, team);
    if (fsgd_team_get(&team->status)) return;
    FN(net_cost_team)(net, rows, y_int, y, y_rows, 1, team);
    if (!(team->loss - team->loss == 0.0)) return; /* the same answer in every thread */
    FN(net_backward_team)(net, rows, X, ldx, x_rows, team);
    if (fsgd_team_get(&team->status) || !opt) return;
    /* batch normalization's moving statistics move with a successful step only (a
       network without it skips these single sections and their barriers) */
    int bn = 0;
    for (int l = 0; l < net->n_layers; l++) bn |= net->layers[l].kind == FSGD_LAYER_BATCH_NORM;
    if (bn) {
#ifdef _OPENMP
#pragma omp single
#endif
        for (int l = 0; l < net->n_layers; l++)
            if (net->layers[l].kind == FSGD_LAYER_BATCH_NORM &&
                FN(bn_moving)(&net->layers[l], (T *)net->state, 0)) {
                FSGD_TEAM_SET(team->status, FSGD_ERR_NONFINITE);
                break;
            }
        if (fsgd_team_get(&team->status)) return;
    }
    FN(update_team)(prep, opt, plan, team);
    if (!bn || fsgd_team_get(&team->refused)) return;
#ifdef _OPENMP
#pragma omp barrier
#pragma omp single
#endif
    for (int l = 0; l < net->n_layers; l++)
        if (net->layers[l].kind == FSGD_LAYER_BATCH_NORM)
            FN(bn_moving)(&net->layers[l], (T *)net->state, 1);
}

int FN(fsgd_net_train_batch)(const fsgd_net *net, const fsgd_opt *opt,
                             const fsgd_update_plan *plan, int64_t rows, const T *X,
                             int64_t ldx, const int64_t *x_rows, const int64_t *y_int,
                             const T *y, const int64_t *y_rows, double *loss, int64_t *correct)
{
    if (opt && (!plan || plan->params != net->params || plan->grads != net->grads ||
                plan->size != net->n_params))
        return FSGD_ERR_ARG;
    /* everything that can be refused is checked before the region opens */
    if (FN(backward_args)(net, rows, X) || net->cost < 0) return FSGD_ERR_ARG;
    const fsgd_layer *out = &net->layers[net->n_layers - 1];
    int st = FN(cost_check)(net->cost, net->cost_param, out->act, rows, out->n_out, y_int, y,
                            y_rows, rows);
    if (st) return st;
    FN(update_prep) prep;
    memset(&prep, 0, sizeof prep);
    if (opt && (st = FN(update_prepare)(opt, plan, &prep))) return st;
    const int full = FN(net_threads)(net, rows, 1);
    int probe;
    const int nt = fsgd_tuner_pick(net->tuner, full, &probe);
    fsgd_team team;
    if (FN(team_start)(&team, net, rows, x_rows, 1, 1, full)) return FSGD_ERR_ALLOC;
    const double t0 = net->tuner && full > 1 ? fsgd_now() : 0.0;
    FSGD_RUN(nt, FN(train_team)(net, opt, &prep, plan, rows, X, ldx, x_rows, y_int, y, y_rows,
                                &team));
    if (net->tuner && full > 1)
        fsgd_tuner_record(net->tuner, nt, probe, fsgd_now() - t0, rows);
    if (net->tuner && nt > 1 && team.npanel == nt) net->tuner->panel_calls++;
    if (opt) FN(update_finish)(&prep, plan, &team);
    *loss = team.loss;
    *correct = team.correct;
    if (team.status) return team.status;
    if (!(team.loss - team.loss == 0.0)) return FSGD_ERR_NONFINITE;
    return team.refused ? FSGD_ERR_NONFINITE : FSGD_OK;
}

#undef FSGD_BN_BLOCK
#undef GEMM
#undef FN
