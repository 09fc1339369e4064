/*
 * Optimizer steps over flat arrays (see fsgd_update_plan in fsgd.h).
 * Included by ops.c once per dtype (T, SFX, SQRTT, FABST defined).
 *
 * A step is two passes over the same code: the check pass computes every
 * new parameter and state value and writes nothing; only when all of them
 * are finite does the write pass run, which computes the same values from
 * the same inputs and stores them. Threads split the flat range (the same
 * parts in both passes); each element is independent, so results never
 * depend on the thread count.
 *
 * The screen (SGD, with or without momentum, and Adam without AMSGrad;
 * every element in a segment without an L1 penalty or weight decay; the
 * plan's bounds valid): the check pass reads the parameters, the state and
 * the gradients, which the layers' passes have by then pushed out of the
 * core's caches; the write pass reads them again. Instead, the largest
 * magnitudes of the parameters and state the last step wrote (the write
 * pass keeps them, as bits: the bits of |x| order as |x| does, and a NaN's
 * lie above an infinity's) and one pass over the gradients bound every new
 * value: when the bound is finite with room to spare (step_safe), every new
 * value is finite and the check pass is skipped. Otherwise it runs as
 * always. The same values are written either way. On MNIST (64 relu units,
 * SGD with Nesterov momentum, one thread, Zen 4) an epoch took 80-81 ms with
 * the screen, 83-86 ms with the check pass and 78-80 ms with neither (which
 * would be unsafe).
 */
#define FN(name) FSGD_CAT(name, SFX)

/* a quarter of the largest finite T (Adam's screen, see step_elem) */
#define FSGD_STEP_H ((T)((sizeof(T) == sizeof(float) ? (double)FLT_MAX : DBL_MAX) / 4))

/* The rule's settings for this step, converted to T once per call. */
typedef struct {
    T lr, mu, rho, eps, b1c, b2c, c1;
    T lim_num; /* Adam's screen (see step_elem) */
} FN(rule_settings);

/* A segment's penalties: gradient += l2x2 * p + l1 * sign(p); p -= wd_lr * p. */
typedef struct {
    T l1, l2x2, wd_lr;
} FN(penalty);

/* One element of every update rule (Keras 3 formulas). The rule and its
 * flags are compile-time constants at each call site, so every variant is
 * its own vectorised loop. l2only: the segment's l1 and wd_lr are zero, and
 * the penalty takes the two operations that give the same bits as the full
 * formulas then (p + 0 is p but for -0, which the full formulas turn into
 * +0 too; l2x2 * (p + 0) is l2x2 * p + l1 * sign(p) with l1 = 0).
 * Returns the new parameter and writes the new state to *n0..*n2.
 *
 * screen (Adam with epsilon > 0, check pass only): instead of the new
 * parameter, 0 when it is sure to be finite without the root and the
 * division, else infinity. The step's numerator c1 m (the same operation as
 * below) is at most lim_num = min(epsilon H, H) in size and the parameter at
 * most H = FSGD_STEP_H, a quarter of the largest finite T: the denominator
 * sqrt(v) + epsilon is at least epsilon, so the step is at most about H and
 * the new parameter about 2 H, with roundings to spare. */
static inline __attribute__((always_inline)) T FN(step_elem)(
    const int kind, const int mom, const int nest, const int ams, const int cent,
    const int l2only, const int screen, const FN(rule_settings) *u, const FN(penalty) *pen, T p,
    T g, T s0, T s1, T s2, T *n0, T *n1, T *n2)
{
    *n0 = s0;
    *n1 = s1;
    *n2 = s2;
    if (l2only) {
        p += (T)0;
        g += pen->l2x2 * p;
    } else {
        const T sgn = (p > (T)0 ? (T)1 : (T)0) - (p < (T)0 ? (T)1 : (T)0);
        g += pen->l2x2 * p + pen->l1 * sgn;
        p -= p * pen->wd_lr;
    }
    if (kind == FSGD_OPT_SGD) {
        if (!mom) return p - u->lr * g;
        const T velocity = u->mu * s0 - u->lr * g;
        *n0 = velocity;
        return nest ? p + (u->mu * velocity - u->lr * g) : p + velocity;
    }
    if (kind == FSGD_OPT_ADAGRAD) {
        const T accumulator = s0 + g * g;
        *n0 = accumulator;
        return p - u->lr * g / SQRTT(accumulator + u->eps);
    }
    if (kind == FSGD_OPT_RMSPROP) {
        const T mean_square = u->rho * s0 + ((T)1 - u->rho) * g * g;
        *n0 = mean_square;
        T denominator = mean_square + u->eps;
        if (cent) {
            const T mean_grad = u->rho * s2 + ((T)1 - u->rho) * g;
            *n2 = mean_grad;
            denominator = mean_square - mean_grad * mean_grad + u->eps;
        }
        const T increment = u->lr * g / SQRTT(denominator);
        if (mom) {
            const T moment = u->mu * s1 + increment;
            *n1 = moment;
            return p - moment;
        }
        return p - increment;
    }
    /* Adam: c1 = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) */
    const T m = s0 + (g - s0) * u->b1c;
    T v = s1 + (g * g - s1) * u->b2c;
    *n0 = m;
    *n1 = v;
    if (ams) {
        v = s2 > v ? s2 : v;
        *n2 = v;
    }
    if (screen) {
        /* v must be finite and not below zero (a state restored with a negative second
           moment would take the square root of a negative number) */
        const T num = u->c1 * m;
        return (FABST(num) <= u->lim_num && FABST(p) <= FSGD_STEP_H && v >= (T)0 &&
                v - v == (T)0)
                   ? (T)0
                   : (T)INFINITY;
    }
    return p - u->c1 * m / (SQRTT(v) + u->eps);
}

#define FSGD_FINITE(x) ((x) - (x) == (T)0)

/* the bits of |x| (see the screen above) */
static inline UBITS FN(abs_bits)(T x)
{
    UBITS b;
    memcpy(&b, &x, sizeof b);
    return b & UBITS_ABS;
}

/* the largest bits of |x[i]| over [lo, hi) */
FSGD_CLONES_OPT static UBITS FN(abs_bits_max)(const T *restrict x, int64_t lo, int64_t hi)
{
    UBITS m = 0;
    for (int64_t i = lo; i < hi; i++) {
        const UBITS b = FN(abs_bits)(x[i]);
        m = b > m ? b : m;
    }
    return m;
}

/* One function per rule variant over elements [lo, hi) of one segment (l2only:
 * see step_elem; the caller passes it as a constant, and each rule's function
 * holds both loops).
 * write == 0: compute only, return 1 if any new value is not finite (Adam
 * with epsilon > 0 first screens the range, see step_elem, and computes the
 * new parameters only when the screen cannot vouch for all of them).
 * write == 1: store every new value (the check pass has seen them all
 * finite: the same operations on the same inputs); returns 0. */
#define UPD_ELEM(KIND, MOM, NEST, AMS, CENT, L2ONLY, SCREEN)                                  \
    T n0, n1, n2;                                                                             \
    const T np = FN(step_elem)(KIND, MOM, NEST, AMS, CENT, L2ONLY, SCREEN, &u, &pen, p[i],    \
                               g[i], U0 ? s0[i] : (T)0, U1 ? s1[i] : (T)0,                    \
                               U2 ? s2[i] : (T)0, &n0, &n1, &n2);
#define UPD_CHECK(KIND, MOM, NEST, AMS, CENT, L2ONLY, SCREEN)                                 \
    {                                                                                         \
        int bad = 0;                                                                          \
        for (int64_t i = lo; i < hi; i++) {                                                   \
            UPD_ELEM(KIND, MOM, NEST, AMS, CENT, L2ONLY, SCREEN)                              \
            bad |= !(FSGD_FINITE(np) & (!U0 | FSGD_FINITE(n0)) & (!U1 | FSGD_FINITE(n1)) &    \
                     (!U2 | FSGD_FINITE(n2)));                                                \
        }                                                                                     \
        if (!(SCREEN) || !bad) return bad;                                                    \
    }
#define UPD_LOOPS(KIND, MOM, NEST, AMS, CENT, L2ONLY)                                         \
    if (!write) {                                                                             \
        if ((KIND) == FSGD_OPT_ADAM && u.eps > (T)0)                                          \
            UPD_CHECK(KIND, MOM, NEST, AMS, CENT, L2ONLY, 1)                                  \
        UPD_CHECK(KIND, MOM, NEST, AMS, CENT, L2ONLY, 0)                                      \
    }                                                                                         \
    if (((KIND) == FSGD_OPT_SGD || ((KIND) == FSGD_OPT_ADAM && !(AMS))) && mx) {              \
        UBITS mp = 0, ms = 0, mv = 0;                                                         \
        for (int64_t i = lo; i < hi; i++) {                                                   \
            UPD_ELEM(KIND, MOM, NEST, AMS, CENT, L2ONLY, 0)                                   \
            p[i] = np;                                                                        \
            if (U0) s0[i] = n0;                                                               \
            if (U1) s1[i] = n1;                                                               \
            const UBITS bp = FN(abs_bits)(np), bs = U0 ? FN(abs_bits)(n0) : 0;                \
            const UBITS bv = U1 ? FN(abs_bits)(n1) : 0;                                       \
            mp = bp > mp ? bp : mp;                                                           \
            ms = bs > ms ? bs : ms;                                                           \
            mv = bv > mv ? bv : mv;                                                           \
        }                                                                                     \
        mx[0] = mp > mx[0] ? mp : mx[0];                                                      \
        mx[1] = ms > mx[1] ? ms : mx[1];                                                      \
        mx[2] = mv > mx[2] ? mv : mx[2];                                                      \
        return 0;                                                                             \
    }                                                                                         \
    for (int64_t i = lo; i < hi; i++) {                                                       \
        UPD_ELEM(KIND, MOM, NEST, AMS, CENT, L2ONLY, 0)                                       \
        p[i] = np;                                                                            \
        if (U0) s0[i] = n0;                                                                   \
        if (U1) s1[i] = n1;                                                                   \
        if (U2) s2[i] = n2;                                                                   \
    }                                                                                         \
    return 0;
#define UPD_FN(NAME, KIND, MOM, NEST, AMS, CENT)                                              \
    FSGD_CLONES_OPT static int FN(NAME)(const FN(rule_settings) u, const FN(penalty) pen,     \
                                        int l2only, int write, int64_t lo, int64_t hi,        \
                                        const T *restrict g, T *restrict p, T *restrict s0,   \
                                        T *restrict s1, T *restrict s2, UBITS *mx)            \
    {                                                                                         \
        const int U0 = KIND != FSGD_OPT_SGD || MOM;                                           \
        const int U1 = (KIND == FSGD_OPT_ADAM) || (KIND == FSGD_OPT_RMSPROP && MOM);          \
        const int U2 = (KIND == FSGD_OPT_ADAM && AMS) || (KIND == FSGD_OPT_RMSPROP && CENT);  \
        if (l2only) {                                                                         \
            UPD_LOOPS(KIND, MOM, NEST, AMS, CENT, 1)                                          \
        }                                                                                     \
        UPD_LOOPS(KIND, MOM, NEST, AMS, CENT, 0)                                              \
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
#undef UPD_CHECK
#undef UPD_LOOPS
#undef UPD_ELEM

/* Plain SGD on a segment without penalties: p -= lr * g in one stream. */
FSGD_CLONES_OPT static int FN(upd_sgd_plain)(const FN(rule_settings) u, const FN(penalty) pen,
                                             int l2only, int write, int64_t lo, int64_t hi,
                                             const T *restrict g, T *restrict p,
                                             T *restrict s0, T *restrict s1, T *restrict s2,
                                             UBITS *mx)
{
    (void)pen; (void)l2only; (void)s0; (void)s1; (void)s2;
    const T lr = u.lr;
    int bad = 0;
    if (!write) {
        for (int64_t i = lo; i < hi; i++) {
            const T np = p[i] - lr * g[i];
            bad |= !FSGD_FINITE(np);
        }
        return bad;
    }
    if (mx) {
        UBITS mp = 0;
        for (int64_t i = lo; i < hi; i++) {
            const T np = p[i] - lr * g[i];
            p[i] = np;
            const UBITS bp = FN(abs_bits)(np);
            mp = bp > mp ? bp : mp;
        }
        mx[0] = mp > mx[0] ? mp : mx[0];
        return 0;
    }
    for (int64_t i = lo; i < hi; i++) p[i] = p[i] - lr * g[i];
    return 0;
}
#undef FSGD_FINITE

typedef int (*FN(upd_fn))(const FN(rule_settings), const FN(penalty), int, int, int64_t,
                          int64_t, const T *restrict, T *restrict, T *restrict, T *restrict,
                          T *restrict, UBITS *);

/* Run one pass over the part [lo, hi) of the flat range (mx: see UPD_LOOPS). */
static int FN(update_range)(FN(upd_fn) fn, int plain_sgd, const FN(rule_settings) *u,
                            const fsgd_opt *o, const fsgd_update_plan *plan, int write,
                            int64_t lo, int64_t hi, UBITS *mx)
{
    const T *g = (const T *)plan->grads;
    T *p = (T *)plan->params;
    T *s0 = (T *)plan->slots[0], *s1 = (T *)plan->slots[1], *s2 = (T *)plan->slots[2];
    int bad = 0;
    for (int64_t k = 0; k < plan->n_segments; k++) {
        const fsgd_segment *seg = &plan->segments[k];
        const int64_t a = seg->offset > lo ? seg->offset : lo;
        const int64_t b = seg->offset + seg->size < hi ? seg->offset + seg->size : hi;
        if (a >= b) continue;
        FN(penalty) pen;
        pen.l1 = (T)seg->l1;
        pen.l2x2 = (T)(2.0 * seg->l2);
        pen.wd_lr = seg->decay ? (T)(o->weight_decay * o->lr) : (T)0;
        const int l2only = pen.l1 == (T)0 && pen.wd_lr == (T)0;
        const int plain = plain_sgd && seg->l1 == 0.0 && seg->l2 == 0.0 && pen.wd_lr == (T)0;
        bad |= (plain ? FN(upd_sgd_plain) : fn)(*u, pen, l2only, write, a, b, g, p, s0, s1, s2,
                                                mx);
    }
    return bad;
}

/* A step, prepared: the rule's function and settings; screen: the step may skip
   its check pass (see the top of the file) with the largest L2 factor l2x2. */
typedef struct {
    FN(upd_fn) fn;
    int plain_sgd;
    FN(rule_settings) u;
    int screen;
    double l2x2;
} FN(update_prep);

/* check the plan and the options, and prepare the step (no writes) */
static int FN(update_prepare)(const fsgd_opt *o, const fsgd_update_plan *plan,
                              FN(update_prep) *out)
{
    if (!o || !plan || plan->size < 0 || plan->n_segments < 0) return FSGD_ERR_ARG;
    if (plan->n_segments > 0 && !plan->segments) return FSGD_ERR_ARG;
    if (plan->size > 0 && (!plan->params || !plan->grads)) return FSGD_ERR_ARG;
    int64_t end = 0;
    for (int64_t k = 0; k < plan->n_segments; k++) {
        const fsgd_segment *seg = &plan->segments[k];
        if (seg->offset < end || seg->size < 0 || seg->size > plan->size - seg->offset)
            return FSGD_ERR_ARG;
        end = seg->offset + seg->size;
    }
    FN(rule_settings) u;
    memset(&u, 0, sizeof u);
    u.lr = (T)o->lr;
    u.mu = (T)o->momentum;
    u.rho = (T)o->rho;
    u.eps = (T)o->epsilon;
    u.b1c = (T)(1.0 - o->beta_1);
    u.b2c = (T)(1.0 - o->beta_2);
    u.c1 = u.lr;
    if (o->kind == FSGD_OPT_ADAM) {
        const double t = (double)(o->step < 1 ? 1 : o->step);
        u.c1 = (T)(o->lr * sqrt(1.0 - pow(o->beta_2, t)) / (1.0 - pow(o->beta_1, t)));
        const double h = (double)FSGD_STEP_H, e = (double)u.eps; /* epsilon as the step adds it */
        u.lim_num = (T)(e < 1.0 ? e * h : h);
    }
    const int mom = o->momentum > 0.0;
    FN(upd_fn) fn;
    int need0 = 0, need1 = 0, need2 = 0; /* the state slots the rule uses */
    switch (o->kind) {
    case FSGD_OPT_SGD:
        fn = !mom ? FN(upd_sgd) : (o->nesterov ? FN(upd_sgd_nest) : FN(upd_sgd_mom));
        need0 = mom;
        break;
    case FSGD_OPT_ADAGRAD:
        fn = FN(upd_adagrad);
        need0 = 1;
        break;
    case FSGD_OPT_RMSPROP:
        fn = mom ? (o->centered ? FN(upd_rms_mom_cent) : FN(upd_rms_mom))
                 : (o->centered ? FN(upd_rms_cent) : FN(upd_rms));
        need0 = 1;
        need1 = mom;
        need2 = o->centered;
        break;
    case FSGD_OPT_ADAM:
        fn = o->amsgrad ? FN(upd_adam_ams) : FN(upd_adam);
        need0 = need1 = 1;
        need2 = o->amsgrad;
        break;
    default:
        return FSGD_ERR_ARG;
    }
    if ((need0 && !plan->slots[0]) || (need1 && !plan->slots[1]) || (need2 && !plan->slots[2]))
        return FSGD_ERR_ARG;
    out->fn = fn;
    out->plain_sgd = o->kind == FSGD_OPT_SGD && !mom;
    out->u = u;
    /* the screen: SGD, or Adam without AMSGrad with epsilon > 0 and 1 - beta_2 at most
       1/2 (so that its second moment never rounds below zero: see step_safe); the
       segments covering the flat range, none with an L1 penalty or weight decay */
    int64_t covered = 0;
    double l2x2 = 0.0;
    const double b1c = 1.0 - o->beta_1, b2c = 1.0 - o->beta_2;
    int plain = plan->bounds != NULL &&
                (o->kind == FSGD_OPT_SGD ||
                 (o->kind == FSGD_OPT_ADAM && !o->amsgrad && u.eps > (T)0 && b1c >= 0.0 &&
                  b1c <= 1.0 && b2c >= 0.0 && b2c <= 0.5));
    for (int64_t k = 0; k < plan->n_segments && plain; k++) {
        const fsgd_segment *seg = &plan->segments[k];
        covered += seg->size;
        plain = seg->l1 == 0.0 && !(seg->decay && o->weight_decay != 0.0) &&
                seg->l2 - seg->l2 == 0.0;
        const double f = fabs((double)(T)(2.0 * seg->l2)); /* the factor as the step has it */
        if (f > l2x2) l2x2 = f;
    }
    out->screen = plain && covered == plan->size;
    out->l2x2 = l2x2;
    return FSGD_OK;
}

/* 1 when every new value of a step is sure to be finite: parameters at most P in
 * size, the state slots at most S and V, gradients at most the size gb holds the
 * bits of, all finite; then A bounds the penalised gradient g + l2x2 p and each
 * new value is bounded by a few products and sums of those, computed here in
 * double and required to be at most an eighth of the largest finite T, which
 * leaves the roundings of T room to spare.
 *   SGD: velocity mu S + lr A, parameter P + mu (mu S + lr A) + lr A.
 *   Adam: m = s0 + (g - s0) b1c is at most 3 max(S, A) (b1c in [0, 1]); v = s1 +
 *   (g g - s1) b2c at most 2 max(A^2, V), and never below zero: with s1 >= 0 (as
 *   every step leaves it) and b2c <= 1/2 the rounded (g g - s1) b2c is at most s1
 *   in size; so sqrt(v) + epsilon is at least epsilon and the parameter at most
 *   P + c1 3 max(S, A) / epsilon. */
static int FN(step_safe)(const FN(update_prep) *pr, const fsgd_opt *o,
                         const fsgd_step_bounds *bd, UBITS gb)
{
    T gt;
    memcpy(&gt, &gb, sizeof gt);
    const double top = (sizeof(T) == sizeof(float) ? (double)FLT_MAX : DBL_MAX) / 8.0;
    const double G = (double)gt, P = bd->max_p, S = bd->max_s, V = bd->max_v;
    if (!(G <= top && P <= top && S <= top && V <= top)) return 0;
    const double A = G + pr->l2x2 * P;
    if (o->kind == FSGD_OPT_ADAM) {
        const double c1 = fabs((double)pr->u.c1), eps = (double)pr->u.eps;
        const double M = 3.0 * (S > A ? S : A), A2 = A * A;
        const double W = 2.0 * (A2 > V ? A2 : V), N = P + c1 * M / eps;
        return A <= top && A2 <= top && M <= top && W <= top && c1 * M <= top && N <= top;
    }
    /* lr and the momentum as the step has them, in T (a float32 step takes an lr above
       the largest float as infinity) */
    const double lr = fabs((double)pr->u.lr), mu = fabs((double)pr->u.mu);
    const double vel = mu * S + lr * A, N = P + mu * vel + lr * A;
    return A <= top && vel <= top && N <= top;
}

/* The team body: the check pass over each thread's part of the flat range (after
 * a forward in panels, each thread's panel of the first layer's W and a share of
 * the rest), a barrier, then the write pass over the same part unless any part
 * refused.
 * team->refused says how it went. No barrier after the write pass: the
 * region's end (or the caller's barrier) waits for it. */
static void FN(update_team)(const FN(update_prep) *pr, const fsgd_opt *o,
                            const fsgd_update_plan *plan, fsgd_team *team)
{
    const int64_t n = plan->size;
    int t = 0, k = 1;
#ifdef _OPENMP
    t = omp_get_thread_num();
    k = omp_get_num_threads();
#endif
    /* a streaming pass: worth a second thread from a few thousand elements */
    const int64_t useful = n / 4096 > 0 ? n / 4096 : 1;
    const int parts = useful < k ? (int)useful : k;
    /* thread t's ranges: its share of the flat range, or, after a forward in panels
       (sparse_tmpl.h), its panel's rows of the first layer's W and its share of the
       elements before and after them */
    int64_t lo[3], hi[3];
    int nr = 1;
    lo[0] = t < parts ? n * t / parts : n;
    hi[0] = t < parts ? n * (t + 1) / parts : n;
    if (k > 1 && team->npanel == k) {
        const int64_t a = team->pflat[0], b = team->pflat[k];
        lo[0] = team->pflat[t];
        hi[0] = team->pflat[t + 1];
        lo[1] = a * t / k;
        hi[1] = a * (t + 1) / k;
        lo[2] = b + (n - b) * t / k;
        hi[2] = b + (n - b) * (t + 1) / k;
        nr = 3;
    }
    int safe = 0;
    if (pr->screen && plan->bounds->valid) {
        UBITS gb = 0;
        for (int i = 0; i < nr; i++) {
            const UBITS m = FN(abs_bits_max)((const T *)plan->grads, lo[i], hi[i]);
            gb = m > gb ? m : gb;
        }
        fsgd_atomic_umax(&team->g_bits, gb);
#ifdef _OPENMP
#pragma omp barrier
#endif
        safe = FN(step_safe)(pr, o, plan->bounds,
                             (UBITS)__atomic_load_n(&team->g_bits, __ATOMIC_RELAXED));
    }
    if (!safe) {
        int bad = 0;
        for (int i = 0; i < nr; i++)
            bad |= FN(update_range)(pr->fn, pr->plain_sgd, &pr->u, o, plan, 0, lo[i], hi[i],
                                    NULL);
        if (bad) FSGD_TEAM_SET(team->refused, 1);
#ifdef _OPENMP
#pragma omp barrier
#endif
    }
    if (!fsgd_team_get(&team->refused)) {
        UBITS mx[3] = {0, 0, 0};
        for (int i = 0; i < nr; i++)
            FN(update_range)(pr->fn, pr->plain_sgd, &pr->u, o, plan, 1, lo[i], hi[i],
                             pr->screen ? mx : NULL);
        if (pr->screen) {
            fsgd_atomic_umax(&team->p_bits, mx[0]);
            fsgd_atomic_umax(&team->s_bits, mx[1]);
            fsgd_atomic_umax(&team->v_bits, mx[2]);
            FSGD_TEAM_SET(team->wrote, 1);
        }
    }
}

/* after the region of a step: the bounds of what its write pass wrote */
static void FN(update_finish)(const FN(update_prep) *pr, const fsgd_update_plan *plan,
                              const fsgd_team *team)
{
    if (!pr->screen || !team->wrote || team->refused) return;
    T mp, ms, mv;
    const UBITS bp = (UBITS)team->p_bits, bs = (UBITS)team->s_bits, bv = (UBITS)team->v_bits;
    memcpy(&mp, &bp, sizeof mp);
    memcpy(&ms, &bs, sizeof ms);
    memcpy(&mv, &bv, sizeof mv);
    plan->bounds->max_p = (double)mp;
    plan->bounds->max_s = (double)ms;
    plan->bounds->max_v = (double)mv;
    plan->bounds->valid = 1;
}

int FN(fsgd_update)(int nthreads, const fsgd_opt *o, const fsgd_update_plan *plan)
{
    FN(update_prep) pr;
    const int st = FN(update_prepare)(o, plan, &pr);
    if (st) return st;
    const int nt = fsgd_threads_for(nthreads, plan->size, 4096);
    fsgd_team team;
    memset(&team, 0, sizeof team);
    FSGD_RUN(nt, FN(update_team)(&pr, o, plan, &team));
    FN(update_finish)(&pr, plan, &team);
    return team.refused ? FSGD_ERR_NONFINITE : FSGD_OK;
}

#undef FSGD_STEP_H
#undef FN
