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
    switch (L->kind) {
    case FSGD_LAYER_DENSE:
        if (l == 0 && net->x_csr)
            return FN(fsgd_csr_dense_forward)(net->nthreads, rows, L->n_in, L->n_out, net->x_csr,
                                              in_rows, params + L->w_offset,
                                              params + L->b_offset, act, (T)L->slope, (T *)L->A);
        return FN(fsgd_dense_forward)(net->nthreads, rows, L->n_in, L->n_out, in, ld, in_rows,
                                      params + L->w_offset, params + L->b_offset, act,
                                      (T)L->slope, (T *)L->A);
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
    return FN(fsgd_output_cost)(net->nthreads, net->cost, out->act, (T)out->slope, rows,
                                out->n_out, (T *)out->A, y_int, y, y_rows, rows,
                                (const T *)net->sample_w, with_grad ? (T *)out->D : NULL, loss,
                                correct);
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
    return FN(fsgd_update)(net->nthreads, opt, plan);
}

#undef GEMM
#undef FN
