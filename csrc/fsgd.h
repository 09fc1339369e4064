/*
 * fastsgd compiled core: the public C interface.
 *
 * Plain C (no Python headers). Every exported symbol carries the fsgd_
 * prefix; functions that can fail return an fsgd_status (FSGD_OK on
 * success) and never print or abort. Matrices are row-major with explicit
 * leading dimensions. Each numeric function exists as _f32 and _f64,
 * generated from one template.
 */
#ifndef FSGD_H
#define FSGD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- enums (the Python layer reads names and values from here) --------- */
typedef enum {
    FSGD_OK = 0,
    FSGD_ERR_ALLOC = 1,     /* out of memory */
    FSGD_ERR_ARG = 2,       /* an argument the Python layer should have rejected */
    FSGD_ERR_NONFINITE = 3, /* a cost, a gradient or a stepped value is NaN or infinite */
    FSGD_STATUS_COUNT
} fsgd_status;

/* SIMD paths of the GEMM engine, chosen at run time (ordered: a CPU that
   runs one path runs every lower one) */
typedef enum {
    FSGD_SIMD_GENERIC = 0,
    FSGD_SIMD_AVX2 = 1, /* AVX2 + FMA */
    FSGD_SIMD_AVX512 = 2, /* AVX-512F */
    FSGD_SIMD_COUNT
} fsgd_simd;

typedef enum {
    FSGD_ACT_LINEAR = 0,
    FSGD_ACT_SIGMOID,
    FSGD_ACT_TANH,
    FSGD_ACT_RELU,
    FSGD_ACT_LEAKY_RELU,
    FSGD_ACT_SOFTMAX, /* by rows, max-subtracted */
    FSGD_ACT_COUNT
} fsgd_act;

typedef enum {
    FSGD_COST_MSE = 0,
    FSGD_COST_CROSS_ENTROPY,        /* categorical, softmax output */
    FSGD_COST_BINARY_CROSS_ENTROPY, /* sigmoid output */
    FSGD_COST_MAE,                  /* mean absolute error, any output activation */
    FSGD_COST_HUBER,                /* Huber loss with delta (cost_param), any activation */
    FSGD_COST_COUNT
} fsgd_cost;

typedef enum {
    FSGD_OPT_SGD = 0,
    FSGD_OPT_ADAGRAD,
    FSGD_OPT_RMSPROP,
    FSGD_OPT_ADAM,
    FSGD_OPT_COUNT
} fsgd_opt_kind;

typedef enum {
    FSGD_LAYER_DENSE = 0,      /* a = f(x W + b) */
    FSGD_LAYER_DROPOUT,        /* inverted dropout (training plans), identity otherwise */
    FSGD_LAYER_BATCH_NORM,     /* a = gamma (x - mean) / sqrt(var + epsilon) + beta */
    FSGD_LAYER_COUNT
} fsgd_layer_kind;

/* Names of the enum values ("relu", "avx2", ...); NULL when out of range.
   fsgd_simd_from_name returns -1 for an unknown name. */
const char *fsgd_status_str(int status);
const char *fsgd_simd_name(int path);
int fsgd_simd_from_name(const char *name);
const char *fsgd_act_name(int act);
const char *fsgd_cost_name(int cost);
const char *fsgd_opt_name(int kind);
const char *fsgd_layer_name(int kind);

/* ---- run time (runtime.c) ------------------------------------------------ */
int fsgd_simd_supported(void);  /* best path this CPU runs */
int fsgd_simd_get(void);        /* path in use */
int fsgd_simd_set(int path);    /* FSGD_ERR_ARG if this CPU cannot run it */
int fsgd_openmp_enabled(void);  /* 1 if compiled with OpenMP */
int fsgd_omp_max_threads(void); /* omp_get_max_threads(), 1 without OpenMP */
void fsgd_omp_set_threads(int n);
int fsgd_cpu_count(void);          /* omp_get_num_procs(), 1 without OpenMP */
const char *fsgd_compiler(void);   /* the compiler that built the core */

/* the exp approximation used by sigmoid, softmax and the costs */
void fsgd_exp_f32(int64_t n, const float *x, float *out);
void fsgd_exp_f64(int64_t n, const double *x, double *out);

/* ---- GEMM (gemm.c) ---------------------------------------------------------
 * C = alpha * op(A) * op(B) + beta * C, op(A) is M x K, op(B) is K x N.
 * A is stored (M x K) or, with trans_a, (K x M), with leading dimension lda.
 * a_rows, when not NULL, maps the stored rows of A: stored row r is read from
 * A + a_rows[r] * lda (a gathered mini-batch without a copy).
 * beta == 0 means C is not read (it may hold NaN).
 * The summation order never depends on nthreads: results are bit-identical
 * for every thread count. */
int fsgd_gemm_f32(int nthreads, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                  float alpha, const float *A, int64_t lda, const int64_t *a_rows,
                  const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
int fsgd_gemm_f64(int nthreads, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                  double alpha, const double *A, int64_t lda, const int64_t *a_rows,
                  const double *B, int64_t ldb, double beta, double *C, int64_t ldc);

/* ---- layer kernels (act_tmpl.h, cost_tmpl.h, net_tmpl.h) ------------------ */
#define FSGD_DECLARE_OPS(T, SFX)                                                              \
    /* Z (rows x cols, contiguous) -> f(Z) in place */                                        \
    void fsgd_act_forward_##SFX(int nthreads, int act, T slope, int64_t rows, int64_t cols,   \
                                T *Z);                                                        \
    /* D holds dL/dA on entry and dL/dZ on exit; A = f(Z) */                                  \
    void fsgd_act_backward_##SFX(int nthreads, int act, T slope, int64_t rows, int64_t cols,  \
                                 const T *A, T *D);                                           \
    /* db[c] = sum_r D[r, c] (rows summed in order) */                                        \
    void fsgd_col_sums_##SFX(int nthreads, int64_t rows, int64_t cols, const T *D, T *db);    \
    /* Z = f(X[rows] W + b) */                                                                \
    int fsgd_dense_forward_##SFX(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,     \
                                 const T *X, int64_t ldx, const int64_t *x_rows, const T *W,  \
                                 const T *b, int act, T slope, T *Z);                         \
    /* D: dL/dA in, dL/dZ out; dW = X^T D, db = colsum D, dX = D W^T (dX may be NULL) */      \
    int fsgd_dense_backward_##SFX(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,    \
                                  const T *X, int64_t ldx, const int64_t *x_rows, const T *W, \
                                  const T *A, int act, T slope, T *D, T *dW, T *db, T *dX);   \
    /* Output layer fused with its cost. Z holds the pre-activations (rows x cols) and is     \
       overwritten with the activations. Targets are y_int (class index per row, may be       \
       NULL) or y (rows x cols); row r's target is read at y_rows[r] when y_rows is not       \
       NULL. cost_param is the Huber loss's delta (> 0; unread by the other costs).           \
       With categorical cross-entropy every label must lie in [0, cols)                       \
       (FSGD_ERR_ARG otherwise, nothing else checked first). D, when not NULL, gets dL/dZ of  \
       the mean cost over scale_rows rows or, with sample_w (one weight per target row, read \
       like the targets), of the weighted mean. loss gets the (weighted) summed per-row cost \
       and correct the number of correctly classified rows (elements for binary CE). */     \
    int fsgd_output_cost_##SFX(int nthreads, int cost, double cost_param, int act, T slope,   \
                               int64_t rows, int64_t cols, T *Z, const int64_t *y_int,        \
                               const T *y, const int64_t *y_rows, int64_t scale_rows,         \
                               const T *sample_w, T *D, double *loss, int64_t *correct);      \
    /* inverted dropout on X[x_rows] (rows x cols): A = X * keep / (1 - rate), keep drawn   \
       from the counter-based generator (fsgd_dropout_keep); with D and dX (the backward     \
       pass) dX = D * keep / (1 - rate) instead and X, A are unread. */                       \
    void fsgd_dropout_##SFX(int nthreads, double rate, uint64_t seed, uint64_t step,          \
                            int64_t row0, int64_t rows, int64_t cols, const T *X, int64_t ldx, \
                            const int64_t *x_rows, T *A, const T *D, T *dX);                  \
    /* out[i, :] = X[rows[i], :] */                                                           \
    void fsgd_gather_rows_##SFX(int nthreads, int64_t n, int64_t cols, const T *X,            \
                                int64_t ldx, const int64_t *rows, T *out);

FSGD_DECLARE_OPS(float, f32)
FSGD_DECLARE_OPS(double, f64)

/* ---- input (sparse_tmpl.h) ------------------------------------------------
 * A CSR matrix: row r's nonzeros are data[k], column indices[k], for k in
 * [indptr[r], indptr[r + 1]). data has the network's dtype. col_cum, when not
 * NULL, holds n_in + 1 ascending prefix sums of a per-column work estimate
 * (col_cum[0] = 0), by which a training step's team splits the columns
 * between its threads; it never changes a result. */
typedef struct {
    int64_t n_rows;
    const int64_t *indptr;
    const int32_t *indices;
    const void *data;
    const int64_t *col_cum;
} fsgd_csr;

/* element types fsgd_convert_rows reads */
typedef enum {
    FSGD_IN_U8 = 0,
    FSGD_IN_I8,
    FSGD_IN_U16,
    FSGD_IN_I16,
    FSGD_IN_I32,
    FSGD_IN_I64,
    FSGD_IN_F32,
    FSGD_IN_F64,
    FSGD_IN_COUNT
} fsgd_in_kind;

#define FSGD_DECLARE_INPUT(T, SFX)                                                            \
    /* Z = f(X[x_rows] W + b) for a CSR X; FSGD_ERR_ARG on an index out of range */          \
    int fsgd_csr_dense_forward_##SFX(int nthreads, int64_t rows, int64_t n_in, int64_t n_out, \
                                     const fsgd_csr *X, const int64_t *x_rows, const T *W,    \
                                     const T *b, int act, T slope, T *Z);                     \
    /* D: dL/dA in, dL/dZ out; dW = X[x_rows]^T D, db = colsum D */                          \
    int fsgd_csr_dense_backward_##SFX(int nthreads, int64_t rows, int64_t n_in,               \
                                      int64_t n_out, const fsgd_csr *X, const int64_t *x_rows, \
                                      const T *A, int act, T slope, T *D, T *dW, T *db);      \
    /* out[i] = X[rows[i]] * scale + offset converted from fsgd_in_kind `kind`; returns the   \
       first row of out that is not finite, or -1 */                                         \
    int64_t fsgd_convert_rows_##SFX(int nthreads, int kind, int64_t n, int64_t cols,          \
                                    const void *X, int64_t ldx, const int64_t *rows,          \
                                    double scale, double offset, T *out);

FSGD_DECLARE_INPUT(float, f32)
FSGD_DECLARE_INPUT(double, f64)

/* ---- dense input into CSR (dense_csr.c) ------------------------------------
 * X: n rows of cols elements of fsgd_in_kind `kind`, row i at X + i * ldx
 * elements. Element x becomes v = (T)x * (T)scale (what fsgd_convert_rows
 * computes with offset 0); v == 0 is not stored. Results do not depend on
 * nthreads.
 *   count: counts[i] = the nonzeros of row i (of row rows[i] when rows is not
 *     NULL); returns the first i whose row holds a v that is NaN or infinite,
 *     -1 when there is none, -2 for a bad argument (cols > INT32_MAX, kind).
 *   fill: row i's column indices (ascending) and values into
 *     indices[indptr[i] ...] and data[indptr[i] ...], where indptr (n + 1
 *     entries, indptr[0] == 0) is the prefix sum of count's counts;
 *     FSGD_ERR_ARG when a row's nonzeros differ from its indptr range (X
 *     changed since count; nothing is written outside that range) or for a
 *     bad argument. */
#define FSGD_DECLARE_DENSE_CSR(T, SFX)                                                        \
    int64_t fsgd_dense_csr_count_##SFX(int nthreads, int kind, int64_t n, int64_t cols,       \
                                       const void *X, int64_t ldx, const int64_t *rows,       \
                                       double scale, int64_t *counts);                        \
    int fsgd_dense_csr_fill_##SFX(int nthreads, int kind, int64_t n, int64_t cols,            \
                                  const void *X, int64_t ldx, double scale,                   \
                                  const int64_t *indptr, int32_t *indices, T *data);

FSGD_DECLARE_DENSE_CSR(float, f32)
FSGD_DECLARE_DENSE_CSR(double, f64)

/* ---- optimizers (optim_tmpl.h) ------------------------------------------
 * Parameters, gradients and each optimizer state slot are flat arrays of
 * one layout, described by a segment table (a layer's weights, its bias,
 * ...). One step is all or nothing: every new parameter and state value is
 * computed and checked first; if any would be NaN or infinite (a bad
 * gradient, an overflowing step, a negative square-root argument) the step
 * is refused with FSGD_ERR_NONFINITE and nothing is written. Otherwise every
 * element is written. The step counter is the caller's.
 *
 * State slots per rule (unused slots may be NULL):
 *   SGD      slot 0: velocity v (momentum > 0 only)
 *   Adagrad  slot 0: accumulated squared gradients
 *   RMSprop  slot 0: mean square of the gradients; slot 1: momentum of the
 *            increment (momentum > 0); slot 2: mean gradient (centered)
 *   Adam     slot 0: first moment m; slot 1: second moment v;
 *            slot 2: running maximum of v (amsgrad)
 */
#define FSGD_MAX_SLOTS 3

typedef struct {
    int kind;          /* fsgd_opt_kind */
    double lr;
    double momentum;   /* SGD, RMSprop */
    int nesterov;      /* SGD */
    double beta_1, beta_2, rho, epsilon;
    int amsgrad, centered;
    double weight_decay; /* decoupled (AdamW style): p -= lr * weight_decay * p */
    int64_t step;      /* 1-based number of the step being taken (bias correction) */
} fsgd_opt;

typedef struct {
    int64_t offset, size; /* elements [offset, offset + size) of the flat arrays */
    double l1, l2;        /* coupled penalties l1 * sum|p| + l2 * sum p^2 on this segment */
    int decay;            /* 1: the decoupled weight decay applies */
} fsgd_segment;

/* What an SGD or Adam step may take as known of the parameters and of the
 * state slots instead of reading them in its check pass (optim_tmpl.h): the
 * largest magnitudes the last step wrote, when valid. The step sets them;
 * whoever writes the parameters or the slots otherwise must clear valid. */
typedef struct {
    int valid;
    double max_p, max_s, max_v; /* parameters, slot 0, slot 1 */
} fsgd_step_bounds;

typedef struct {
    int64_t size;                 /* elements of every flat array */
    int64_t n_segments;
    const fsgd_segment *segments; /* in offset order, within [0, size) */
    void *params;                 /* T[size], updated in place */
    const void *grads;            /* T[size] */
    void *slots[FSGD_MAX_SLOTS];  /* T[size] each, or NULL where the rule needs none */
    fsgd_step_bounds *bounds;     /* or NULL: every step checks every new value */
} fsgd_update_plan;

/* FSGD_ERR_ARG: a malformed plan or a slot the rule needs is NULL */
int fsgd_update_f32(int nthreads, const fsgd_opt *opt, const fsgd_update_plan *plan);
int fsgd_update_f64(int nthreads, const fsgd_opt *opt, const fsgd_update_plan *plan);

/* ---- a whole network (net_tmpl.h) ----------------------------------------
 * A plan: layers in order, their parameters at offsets of one flat array,
 * their gradients at the same offsets of another, and per layer the batch
 * buffers. Inference plans have no gradients, no D buffers and no cost.
 *
 * Dropout (training plans): unit j of batch row r is kept when
 * fsgd_dropout_keep(seed, step, r, j) says so, where seed is the layer's
 * and step the network's seed_step: the mask is a pure function of those
 * four numbers (no generator state, no thread dependence), and the backward
 * pass recomputes it rather than storing it. In inference plans dropout is
 * the identity and its A may be the previous layer's A (nothing is done).
 *
 * Batch normalization: training plans normalise with the statistics of the
 * batch (biased variance, per column, rows summed in order by one thread)
 * and keep mean, variance and 1/sqrt(var + epsilon) in aux; the moving
 * statistics in the net's state array (moving mean then moving variance,
 * n_out each, at s_offset) move towards the batch's only when a training
 * step succeeds (fsgd_net_train_batch), all or nothing. Inference plans
 * normalise with the moving statistics. gamma (w_offset) and beta
 * (b_offset) are parameters; an offset of -1 means the layer has none
 * (gamma 1, beta 0). */
typedef struct {
    int kind;                 /* fsgd_layer_kind */
    int act;                  /* fsgd_act (linear for dropout and batch normalization) */
    double slope;             /* leaky relu */
    int64_t n_in, n_out;      /* n_in == n_out for dropout and batch normalization */
    int64_t w_offset;         /* dense: W (n_in x n_out); batch norm: gamma (n_out) or -1 */
    int64_t b_offset;         /* dense: b (n_out); batch norm: beta (n_out) or -1 */
    void *A;                  /* capacity x n_out: activations */
    void *D;                  /* capacity x n_out: deltas (training plans), else NULL */
    double rate;              /* dropout: fraction dropped, in [0, 1) */
    uint64_t seed;            /* dropout: the layer's key */
    double momentum, epsilon; /* batch norm */
    int64_t s_offset;         /* batch norm: moving mean and variance at state + s_offset */
    void *aux;                /* batch norm, training plans: T[3 n_out] mean, var, inv std */
} fsgd_layer;

typedef struct {
    int n_layers;
    const fsgd_layer *layers;
    int64_t capacity;  /* rows the batch buffers hold */
    int64_t n_params;  /* elements of params (and grads) */
    void *params;      /* T[n_params] */
    void *grads;       /* T[n_params] (training plans), else NULL */
    int cost;          /* fsgd_cost (-1: none, an inference plan) */
    int nthreads;
    const fsgd_csr *x_csr; /* when not NULL, the first layer reads this instead of X */
    const void *sample_w;  /* when not NULL, T weights per target row (weighted mean cost) */
    double cost_param; /* the Huber loss's delta */
    int64_t n_state;   /* elements of state */
    void *state;       /* T[n_state]: non-trainable state (batch norm's moving statistics) */
    uint64_t seed_step; /* dropout: the training step the masks are drawn for */
    int64_t seed_row0;  /* dropout: the mini-batch row the calls' first row is (0, or where a
                           data-parallel rank's slice starts in its batch) */
    struct fsgd_tuner *tuner; /* when not NULL, fsgd_net_train_batch adapts its team */
} fsgd_net;

/* The team of fsgd_net_train_batch, adapted to a busy machine: a team of
 * nthreads meets at a dozen or more barriers per batch, and when another
 * process holds a core, each of them can wait a scheduler time slice for a
 * descheduled team member (a batch 100 times slower than on one thread).
 * The call times itself; after its second call and then, now and then, a
 * few calls try the other choice (one thread or nthreads) and the faster is
 * kept.
 * A try that is already far slower after one call ends there. Tries grow
 * rarer while the choice holds, and rarer the slower the other choice was
 * (up to 4096 calls apart, 16384 after a far slower try; fsgd_tuner_record
 * in fsgd_internal.h). The split of work never
 * changes a result's bits, so neither does the choice. Zero-initialise;
 * a change of nthreads starts it again. */
typedef struct fsgd_tuner {
    int nthreads;        /* the count the state below was measured for */
    int single;          /* 1: one thread is the current choice */
    int64_t calls;       /* training calls timed */
    int64_t next_probe;  /* the call that tries the other choice */
    int64_t interval;    /* calls between tries */
    int streak;          /* tries in a row that kept the choice */
    int try_calls;       /* calls of the try under way */
    double try_sum;      /* their seconds per row, summed */
    int64_t probes[2];   /* tries with [nthreads, one thread] */
    double per_row[2];   /* recent seconds per batch row with [nthreads, one thread] */
    int seen[2];
    int64_t panel_calls; /* calls whose sparse first layer ran in panels (sparse_tmpl.h) */
} fsgd_tuner;

/* One training call of a team of up to nt replayed with given timings (for
 * tests of the policy): picks the team as fsgd_net_train_batch does, records
 * seconds_full or seconds_single for the choice, returns the team used. */
int fsgd_tuner_replay(fsgd_tuner *t, int nt, double seconds_full, double seconds_single,
                      int64_t rows);

/* Dropout's generator: 1 when unit `unit` of batch row `row` is kept at
   training step `step` for a layer keyed `seed` and drop fraction `rate`.
   A SplitMix64 finaliser over the four numbers; the top 53 bits of the hash
   are compared with (1 - rate) 2^53. */
int fsgd_dropout_keep(uint64_t seed, uint64_t step, int64_t row, int64_t unit, double rate);

/* FSGD_OK when the plan is consistent (offsets inside n_params, each layer's
   inputs equal to the previous one's outputs, enums in range, buffers
   present); FSGD_ERR_ARG otherwise. */
int fsgd_net_check(const fsgd_net *net);

#define FSGD_DECLARE_NET(T, SFX)                                                              \
    /* forward through every layer for X[x_rows] (rows <= capacity); with out_act the        \
       output layer's activation is applied, else its A keeps the pre-activations for the    \
       fused cost */                                                                          \
    int fsgd_net_forward_##SFX(const fsgd_net *net, int64_t rows, const T *X, int64_t ldx,    \
                               const int64_t *x_rows, int out_act);                           \
    /* after forward(out_act = 0): the output activation fused with the cost; with_grad      \
       writes dL/dZ of the batch mean into the output layer's D */                           \
    int fsgd_net_cost_##SFX(const fsgd_net *net, int64_t rows, const int64_t *y_int,          \
                            const T *y, const int64_t *y_rows, int with_grad, double *loss,   \
                            int64_t *correct);                                                \
    /* after cost(with_grad): every gradient into net->grads */                              \
    int fsgd_net_backward_##SFX(const fsgd_net *net, int64_t rows, const T *X, int64_t ldx,   \
                                const int64_t *x_rows);                                       \
    /* forward, cost, backward and (when opt is not NULL) the optimizer step in one call:    \
       the same kernels as the separate calls, so the same bits. FSGD_ERR_NONFINITE when the \
       cost is not finite (no gradient computed) or the step is refused (nothing written). */ \
    int fsgd_net_train_batch_##SFX(const fsgd_net *net, const fsgd_opt *opt,                  \
                                   const fsgd_update_plan *plan, int64_t rows, const T *X,    \
                                   int64_t ldx, const int64_t *x_rows, const int64_t *y_int,  \
                                   const T *y, const int64_t *y_rows, double *loss,           \
                                   int64_t *correct);

FSGD_DECLARE_NET(float, f32)
FSGD_DECLARE_NET(double, f64)

#ifdef __cplusplus
}
#endif
#endif
