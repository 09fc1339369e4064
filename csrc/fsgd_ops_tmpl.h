/*
 * Elementwise, fused-layer, cost, optimizer and whole-network kernels.
 * Included by fsgd_ops.c once per dtype with T, SFX and the math macros
 * EXPT (vectorisable exp), LOGT, LOG1PT, TANHT, SQRTT, FABST defined.
 *
 * Determinism: every sum runs in one thread in index order; parallel loops
 * split independent elements, rows or columns only.
 */
#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SFX)
#define GEMM FN(fsgd_gemm)

static inline int FN(nt_for_min)(int nthreads, int64_t work, int64_t per_thread)
{
    if (nthreads < 2 || work < 2 * per_thread) return 1;
    int64_t useful = work / per_thread;
    return useful < nthreads ? (int)useful : nthreads;
}

static inline int FN(nt_for)(int nthreads, int64_t work)
{
    return FN(nt_for_min)(nthreads, work, FSGD_PAR_MIN);
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

/* ---- output layer fused with its cost ----------------------------------- */
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

int FN(fsgd_output_cost)(int nthreads, int cost, int act, T slope, int64_t rows, int64_t cols,
                         T *Z, const int64_t *y_int, const T *y, const int64_t *y_rows,
                         int64_t scale_rows, T *D, double *loss, int64_t *correct)
{
    double total = 0.0;
    int64_t ok = 0;
    const T inv_rows = (T)1 / (T)scale_rows;
    if (cost == FSGD_COST_CROSS_ENTROPY) {
        if (act != FSGD_ACT_SOFTMAX) return FSGD_ERR_ARG;
        for (int64_t r = 0; r < rows; r++) {
            const int64_t yr = y_rows ? y_rows[r] : r;
            T *restrict z = Z + r * cols;
            T *restrict d = D + r * cols;
            T m = z[0];
            for (int64_t j = 1; j < cols; j++) m = z[j] > m ? z[j] : m;
            if (m != m || m == (T)INFINITY || m == -(T)INFINITY) m = (T)0;
            for (int64_t j = 0; j < cols; j++) d[j] = EXPT(z[j] - m);
            T s = 0;
            for (int64_t j = 0; j < cols; j++) s += d[j];
            const T lse = m + LOGT(s);
            double lr_ = 0.0;
            if (y_int) {
                lr_ = (double)(lse - z[y_int[yr]]);
            } else {
                const T *yy = y + yr * cols;
                for (int64_t j = 0; j < cols; j++)
                    if (yy[j] != (T)0) lr_ += (double)(yy[j] * (lse - z[j]));
            }
            total += lr_;
            for (int64_t j = 0; j < cols; j++) {
                const T p = d[j] / s;
                z[j] = p;
                d[j] = (p - FN(target)(y_int, y, yr, cols, j)) * inv_rows;
            }
            const int64_t label = y_int ? y_int[yr] : FN(argmax)(y + yr * cols, cols);
            ok += FN(argmax)(z, cols) == label;
        }
    } else if (cost == FSGD_COST_BINARY_CROSS_ENTROPY) {
        if (act != FSGD_ACT_SIGMOID) return FSGD_ERR_ARG;
        const T inv = inv_rows / (T)cols;
        for (int64_t r = 0; r < rows; r++) {
            const int64_t yr = y_rows ? y_rows[r] : r;
            T *restrict z = Z + r * cols;
            T *restrict d = D + r * cols;
            double lr_ = 0.0;
            for (int64_t j = 0; j < cols; j++) {
                const T x = z[j], t = FN(target)(y_int, y, yr, cols, j);
                const T e = EXPT(-FABST(x));
                lr_ += (double)((x > (T)0 ? x : (T)0) - x * t + LOG1PT(e));
                const T s = (T)1 / ((T)1 + e);
                const T p = x >= (T)0 ? s : e * s;
                z[j] = p;
                d[j] = (p - t) * inv;
                ok += (p > (T)0.5) == (t > (T)0.5);
            }
            total += lr_ / (double)cols;
        }
    } else if (cost == FSGD_COST_MSE) {
        const T inv = (T)2 * inv_rows / (T)cols;
        for (int64_t r = 0; r < rows; r++) {
            const int64_t yr = y_rows ? y_rows[r] : r;
            T *restrict a = Z + r * cols;
            T *restrict d = D + r * cols;
            if (act != FSGD_ACT_LINEAR) FN(act_row)(act, slope, cols, a);
            double lr_ = 0.0;
            for (int64_t j = 0; j < cols; j++) {
                const T diff = a[j] - FN(target)(y_int, y, yr, cols, j);
                lr_ += (double)(diff * diff);
                d[j] = diff * inv;
            }
            total += lr_ / (double)cols;
            FN(act_back_row)(act, slope, cols, a, d);
            if (cols > 1) {
                const int64_t label = y_int ? y_int[yr] : FN(argmax)(y + yr * cols, cols);
                ok += FN(argmax)(a, cols) == label;
            }
        }
    } else {
        return FSGD_ERR_ARG;
    }
    (void)nthreads;
    *loss = total;
    *correct = ok;
    return FSGD_OK;
}

void FN(fsgd_gather_rows)(int nthreads, int64_t n, int64_t cols, const T *X, int64_t ldx,
                          const int64_t *rows, T *out)
{
    const int nt = FN(nt_for)(nthreads, n * cols);
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
    for (int64_t i = 0; i < n; i++) memcpy(out + i * cols, X + rows[i] * ldx, cols * sizeof(T));
}

/* ---- optimizers --------------------------------------------------------- */
/* Settings of one step, converted to T once per call. */
typedef struct {
    T lr, l1, l2x2, wd_lr, mu, rho, eps, b1c, b2c, c1, gmax;
} FN(ustep);

/* One element of every update rule (Keras 3 formulas). The rule and its
 * flags are compile-time constants at each call site, so every variant is
 * its own vectorised loop. Penalties and decay are applied without a
 * branch: with l1 = l2 = weight_decay = 0 they leave g and p bit-for-bit
 * unchanged. Reads p, g and the state; returns the new parameter and writes
 * the new state to *n1..*n3. */
static inline __attribute__((always_inline)) T FN(step_elem)(
    const int kind, const int mom, const int nest, const int ams, const int cent,
    const FN(ustep) uv, T p, T g, T s1, T s2, T s3, T *n1, T *n2, T *n3)
{
    const FN(ustep) *u = &uv;
    *n1 = s1;
    *n2 = s2;
    *n3 = s3;
    const T sgn = (p > (T)0 ? (T)1 : (T)0) - (p < (T)0 ? (T)1 : (T)0);
    g += u->l2x2 * p + u->l1 * sgn;
    p -= p * u->wd_lr;
    if (kind == FSGD_OPT_SGD) {
        if (!mom) return p - u->lr * g;
        const T v = u->mu * s1 - u->lr * g;
        *n1 = v;
        return nest ? p + (u->mu * v - u->lr * g) : p + v;
    }
    if (kind == FSGD_OPT_ADAGRAD) {
        const T acc = s1 + g * g;
        *n1 = acc;
        return p - u->lr * g / SQRTT(acc + u->eps);
    }
    if (kind == FSGD_OPT_RMSPROP) {
        const T vel = u->rho * s1 + ((T)1 - u->rho) * g * g;
        *n1 = vel;
        T den = vel + u->eps;
        if (cent) {
            const T avg = u->rho * s3 + ((T)1 - u->rho) * g;
            *n3 = avg;
            den = vel - avg * avg + u->eps;
        }
        const T inc = u->lr * g / SQRTT(den);
        if (mom) {
            const T m = u->mu * s2 + inc;
            *n2 = m;
            return p - m;
        }
        return p - inc;
    }
    /* Adam: c1 = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) */
    const T m = s1 + (g - s1) * u->b1c;
    T v = s2 + (g * g - s2) * u->b2c;
    *n1 = m;
    *n2 = v;
    if (ams) {
        v = s3 > v ? s3 : v;
        *n3 = v;
    }
    return p - u->c1 * m / (SQRTT(v) + u->eps);
}

/* One function per rule variant over elements [lo, hi): a plain loop the
 * compiler vectorises. Which state arrays a rule uses is a compile-time
 * constant.
 *
 * check != 0: read only the gradient and report whether the step may run:
 * every g must be finite and small enough (|g| <= gmax) that g*g and
 * lr*g cannot overflow. Nothing is written.
 * check == 0: write the step; an element whose new value would still not
 * be finite keeps its old value and state, and the call reports it. */
#define UPD_FN(NAME, KIND, MOM, NEST, AMS, CENT)                                              \
    FSGD_CLONES static int FN(NAME)(const FN(ustep) u, int check, int64_t lo, int64_t hi,     \
                                    const T *restrict g, T *restrict p, T *restrict s1,       \
                                    T *restrict s2, T *restrict s3)                           \
    {                                                                                         \
        const int N2 = (KIND == FSGD_OPT_ADAM) || (KIND == FSGD_OPT_RMSPROP && MOM);          \
        const int N3 = (KIND == FSGD_OPT_ADAM && AMS) || (KIND == FSGD_OPT_RMSPROP && CENT);  \
        const int U1 = KIND != FSGD_OPT_SGD || MOM;                                           \
        int bad = 0;                                                                          \
        if (check) {                                                                          \
            for (int64_t i = lo; i < hi; i++) bad |= !(FABST(g[i]) <= u.gmax);                \
            return bad;                                                                       \
        }                                                                                     \
        for (int64_t blk = lo; blk < hi; blk += 256) {                                        \
            const int64_t m = hi - blk < 256 ? hi - blk : 256;                                \
            T np_[256], na_[256], nb_[256], nc_[256];                                         \
            int bb = 0;                                                                       \
            for (int64_t j = 0; j < m; j++) {                                                 \
                const int64_t i = blk + j;                                                    \
                np_[j] = FN(step_elem)(KIND, MOM, NEST, AMS, CENT, u, p[i], g[i],             \
                                       U1 ? s1[i] : (T)0, N2 ? s2[i] : (T)0,                  \
                                       N3 ? s3[i] : (T)0, &na_[j], &nb_[j], &nc_[j]);         \
                bb |= !(np_[j] - np_[j] == (T)0);                                             \
            }                                                                                 \
            if (!bb) {                                                                        \
                memcpy(p + blk, np_, (size_t)m * sizeof(T));                                  \
                if (U1) memcpy(s1 + blk, na_, (size_t)m * sizeof(T));                         \
                if (N2) memcpy(s2 + blk, nb_, (size_t)m * sizeof(T));                         \
                if (N3) memcpy(s3 + blk, nc_, (size_t)m * sizeof(T));                         \
                continue;                                                                     \
            }                                                                                 \
            bad = 1; /* keep the old value wherever the new one is not finite */              \
            for (int64_t j = 0; j < m; j++) {                                                 \
                if (!(np_[j] - np_[j] == (T)0)) continue;                                     \
                p[blk + j] = np_[j];                                                          \
                if (U1) s1[blk + j] = na_[j];                                                 \
                if (N2) s2[blk + j] = nb_[j];                                                 \
                if (N3) s3[blk + j] = nc_[j];                                                 \
            }                                                                                 \
        }                                                                                     \
        return bad;                                                                           \
    }

UPD_FN(upd_sgd, FSGD_OPT_SGD, 0, 0, 0, 0)
UPD_FN(upd_sgd_mom, FSGD_OPT_SGD, 1, 0, 0, 0)
UPD_FN(upd_sgd_nest, FSGD_OPT_SGD, 1, 1, 0, 0)
UPD_FN(upd_adagrad, FSGD_OPT_ADAGRAD, 0, 0, 0, 0)
UPD_FN(upd_rms, FSGD_OPT_RMSPROP, 0, 0, 0, 0)
UPD_FN(upd_rms_mom, FSGD_OPT_RMSPROP, 1, 0, 0, 0)
UPD_FN(upd_rms_cent, FSGD_OPT_RMSPROP, 0, 0, 0, 1)
UPD_FN(upd_rms_mom_cent, FSGD_OPT_RMSPROP, 1, 0, 0, 1)
UPD_FN(upd_adam, FSGD_OPT_ADAM, 0, 0, 0, 0)
UPD_FN(upd_adam_ams, FSGD_OPT_ADAM, 0, 0, 1, 0)
#undef UPD_FN

/* Plain SGD without penalties: one streaming pass, the finite-or-keep choice
 * made in registers. */
FSGD_CLONES static int FN(upd_sgd_plain)(const FN(ustep) u, int check, int64_t lo, int64_t hi,
                                         const T *restrict g, T *restrict p, T *restrict s1,
                                         T *restrict s2, T *restrict s3)
{
    (void)s1; (void)s2; (void)s3;
    int bad = 0;
    if (check) {
        for (int64_t i = lo; i < hi; i++) bad |= !(FABST(g[i]) <= u.gmax);
        return bad;
    }
    const T lr = u.lr;
    for (int64_t i = lo; i < hi; i++) {
        const T p0 = p[i];
        const T np_ = p0 - lr * g[i];
        const T z = np_ - np_;
        bad |= !(z == (T)0);
        p[i] = z == (T)0 ? np_ : p0;
    }
    return bad;
}

typedef int (*FN(upd_fn))(const FN(ustep), int, int64_t, int64_t, const T *restrict,
                           T *restrict, T *restrict, T *restrict, T *restrict);

int FN(fsgd_update)(int nthreads, const fsgd_opt *o, int check, int64_t n, const T *restrict g,
                    T *restrict p, T *restrict s1, T *restrict s2, T *restrict s3)
{
    FN(ustep) u;
    u.lr = (T)o->lr;
    u.l1 = (T)o->l1;
    u.l2x2 = (T)(2.0 * o->l2);
    u.wd_lr = (T)(o->weight_decay * o->lr);
    u.mu = (T)o->momentum;
    u.rho = (T)o->rho;
    u.eps = (T)o->epsilon;
    u.b1c = (T)(1.0 - o->beta_1);
    u.b2c = (T)(1.0 - o->beta_2);
    u.c1 = u.lr;
    {
        /* the largest gradient whose square and whose step stay far from overflow */
        const double tmax = sizeof(T) == 4 ? 3.4028234663852886e38 : 1.7976931348623157e308;
        double gmax = sqrt(tmax) * 0.25;
        const double scale = o->lr > 1.0 ? o->lr : 1.0;
        if (gmax > tmax * 0.25 / scale) gmax = tmax * 0.25 / scale;
        u.gmax = (T)gmax;
    }
    if (o->kind == FSGD_OPT_ADAM) {
        const double t = (double)(o->step < 1 ? 1 : o->step);
        u.c1 = (T)(o->lr * sqrt(1.0 - pow(o->beta_2, t)) / (1.0 - pow(o->beta_1, t)));
    }
    const int mom = o->momentum > 0.0;
    FN(upd_fn) fn;
    int n1 = 0, n2 = 0, n3 = 0; /* state arrays the rule needs */
    switch (o->kind) {
    case FSGD_OPT_SGD: {
        const int plain = o->l1 == 0.0 && o->l2 == 0.0 && o->weight_decay == 0.0;
        if (!mom)
            fn = plain ? FN(upd_sgd_plain) : FN(upd_sgd);
        else if (o->nesterov)
            fn = FN(upd_sgd_nest);
        else
            fn = FN(upd_sgd_mom);
        n1 = mom;
        break;
    }
    case FSGD_OPT_ADAGRAD:
        fn = FN(upd_adagrad);
        n1 = 1;
        break;
    case FSGD_OPT_RMSPROP:
        fn = mom ? (o->centered ? FN(upd_rms_mom_cent) : FN(upd_rms_mom))
                 : (o->centered ? FN(upd_rms_cent) : FN(upd_rms));
        n1 = 1;
        n2 = mom;
        n3 = o->centered;
        break;
    case FSGD_OPT_ADAM:
        fn = o->amsgrad ? FN(upd_adam_ams) : FN(upd_adam);
        n1 = n2 = 1;
        n3 = o->amsgrad;
        break;
    default:
        return FSGD_ERR_ARG;
    }
    if ((n1 && !s1) || (n2 && !s2) || (n3 && !s3)) return FSGD_ERR_ARG;
    int bad = 0;
    /* a streaming pass: worth a second thread from a few thousand elements */
    const int nt = FN(nt_for_min)(nthreads, n, 4096);
    if (nt <= 1) {
        bad = fn(u, check, 0, n, g, p, s1, s2, s3);
    } else {
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) reduction(| : bad)
        {
            const int t = omp_get_thread_num(), k = omp_get_num_threads();
            const int64_t lo = n * t / k, hi = n * (t + 1) / k;
            bad |= fn(u, check, lo, hi, g, p, s1, s2, s3);
        }
#else
        bad = fn(u, check, 0, n, g, p, s1, s2, s3);
#endif
    }
    return bad ? FSGD_ERR_NONFINITE : FSGD_OK;
}

/* ---- a whole network ---------------------------------------------------- */
static int FN(net_forward_impl)(const fsgd_net *net, int64_t rows, const T *X, int64_t ldx,
                                const int64_t *x_rows, int last_act)
{
    for (int l = 0; l < net->n_layers; l++) {
        const fsgd_layer *L = &net->layers[l];
        const T *in = l == 0 ? X : (const T *)net->layers[l - 1].A;
        const int64_t ld = l == 0 ? ldx : net->layers[l - 1].n_out;
        const int64_t *ir = l == 0 ? x_rows : NULL;
        const int act = (l == net->n_layers - 1 && !last_act) ? FSGD_ACT_LINEAR : L->act;
        int st = FN(fsgd_dense_forward)(net->nthreads, rows, L->n_in, L->n_out, in, ld, ir,
                                        (const T *)L->W, (const T *)L->b, act, (T)L->slope,
                                        (T *)L->A);
        if (st) return st;
    }
    return FSGD_OK;
}

int FN(fsgd_net_forward)(const fsgd_net *net, int64_t rows, const T *X, int64_t ldx,
                         const int64_t *x_rows)
{
    if (rows > net->capacity) return FSGD_ERR_ARG;
    return FN(net_forward_impl)(net, rows, X, ldx, x_rows, 1);
}

static int FN(net_update)(const fsgd_net *net, const fsgd_opt *opt, int check)
{
    for (int l = 0; l < net->n_layers; l++) {
        const fsgd_layer *L = &net->layers[l];
        fsgd_opt ow = *opt;
        ow.l1 = L->l1;
        ow.l2 = L->l2;
        fsgd_opt ob = *opt;
        ob.l1 = 0.0;
        ob.l2 = 0.0;
        int st = FN(fsgd_update)(net->nthreads, &ow, check, L->n_in * L->n_out, (const T *)L->dW,
                                 (T *)L->W, (T *)L->state[0][0], (T *)L->state[0][1],
                                 (T *)L->state[0][2]);
        if (st) return st;
        st = FN(fsgd_update)(net->nthreads, &ob, check, L->n_out, (const T *)L->db, (T *)L->b,
                             (T *)L->state[1][0], (T *)L->state[1][1], (T *)L->state[1][2]);
        if (st) return st;
    }
    return FSGD_OK;
}

int FN(fsgd_net_eval_batch)(const fsgd_net *net, int64_t rows, const T *X, int64_t ldx,
                            const int64_t *x_rows, const int64_t *y_int, const T *y,
                            double *loss, int64_t *correct)
{
    if (rows < 1 || rows > net->capacity) return FSGD_ERR_ARG;
    int st = FN(net_forward_impl)(net, rows, X, ldx, x_rows, 0);
    if (st) return st;
    const fsgd_layer *out = &net->layers[net->n_layers - 1];
    return FN(fsgd_output_cost)(net->nthreads, net->cost, out->act, (T)out->slope, rows,
                                out->n_out, (T *)out->A, y_int, y, x_rows, rows, (T *)out->D,
                                loss, correct);
}

int FN(fsgd_net_train_batch)(const fsgd_net *net, const fsgd_opt *opt, int update, int64_t rows,
                             const T *X, int64_t ldx, const int64_t *x_rows,
                             const int64_t *y_int, const T *y, double *loss, int64_t *correct)
{
    if (rows < 1 || rows > net->capacity) return FSGD_ERR_ARG;
    const int nl = net->n_layers;
    int st = FN(net_forward_impl)(net, rows, X, ldx, x_rows, 0);
    if (st) return st;
    const fsgd_layer *out = &net->layers[nl - 1];
    st = FN(fsgd_output_cost)(net->nthreads, net->cost, out->act, (T)out->slope, rows,
                              out->n_out, (T *)out->A, y_int, y, x_rows, rows, (T *)out->D, loss,
                              correct);
    if (st) return st;
    if (!(*loss - *loss == 0.0)) return FSGD_ERR_NONFINITE;
    for (int l = nl - 1; l >= 0; l--) {
        const fsgd_layer *L = &net->layers[l];
        const T *in = l == 0 ? X : (const T *)net->layers[l - 1].A;
        const int64_t ld = l == 0 ? ldx : net->layers[l - 1].n_out;
        const int64_t *ir = l == 0 ? x_rows : NULL;
        /* the output layer's D already holds dL/dZ */
        const int act = l == nl - 1 ? FSGD_ACT_LINEAR : L->act;
        st = FN(fsgd_dense_backward)(net->nthreads, rows, L->n_in, L->n_out, in, ld, ir,
                                     (const T *)L->W, (const T *)L->A, act, (T)L->slope,
                                     (T *)L->D, (T *)L->dW, (T *)L->db,
                                     l > 0 ? (T *)net->layers[l - 1].D : NULL);
        if (st) return st;
    }
    if (!update) return FSGD_OK;
    st = FN(net_update)(net, opt, 1);
    if (st) return st;
    return FN(net_update)(net, opt, 0);
}

#undef GEMM
#undef FN
#undef CAT
#undef CAT_
