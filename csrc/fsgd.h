/*
 * fastsgd compiled core: the public C interface.
 *
 * Plain C (no Python headers). Every exported symbol carries the fsgd_
 * prefix; functions that can fail return an int status (FSGD_OK on
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

/* status codes */
#define FSGD_OK 0
#define FSGD_ERR_ALLOC 1     /* out of memory */
#define FSGD_ERR_ARG 2       /* an argument the Python layer should have rejected */
#define FSGD_ERR_NONFINITE 3 /* a cost or an updated parameter is NaN or infinite */

/* SIMD paths of the GEMM engine, chosen at run time */
#define FSGD_SIMD_GENERIC 0
#define FSGD_SIMD_AVX2 1
#define FSGD_SIMD_AVX512 2

/* activations */
#define FSGD_ACT_LINEAR 0
#define FSGD_ACT_SIGMOID 1
#define FSGD_ACT_TANH 2
#define FSGD_ACT_RELU 3
#define FSGD_ACT_LEAKY_RELU 4
#define FSGD_ACT_SOFTMAX 5

/* costs */
#define FSGD_COST_MSE 0
#define FSGD_COST_CROSS_ENTROPY 1        /* categorical, softmax output */
#define FSGD_COST_BINARY_CROSS_ENTROPY 2 /* sigmoid output */

/* optimizers */
#define FSGD_OPT_SGD 0
#define FSGD_OPT_ADAGRAD 1
#define FSGD_OPT_RMSPROP 2
#define FSGD_OPT_ADAM 3

/* ---- configuration ---------------------------------------------------- */
int fsgd_simd_supported(void);          /* best path this CPU runs */
int fsgd_simd_get(void);                /* path in use */
int fsgd_simd_set(int path);            /* FSGD_ERR_ARG if unsupported */
const char *fsgd_simd_name(int path);
int fsgd_openmp_enabled(void);          /* 1 if compiled with OpenMP */
int fsgd_omp_max_threads(void);         /* omp_get_max_threads(), 1 without OpenMP */
void fsgd_omp_set_threads(int n);       /* omp_set_num_threads(n) where available */
int fsgd_cpu_count(void);               /* omp_get_num_procs(), 1 without OpenMP */
const char *fsgd_compiler(void);        /* the compiler that built the core */

/* the exp approximation used by sigmoid, softmax and the costs */
void fsgd_exp_f32(int64_t n, const float *x, float *out);
void fsgd_exp_f64(int64_t n, const double *x, double *out);

/* ---- GEMM ------------------------------------------------------------
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

/* ---- elementwise and fused layer kernels ----------------------------- */
#define FSGD_DECLARE_OPS(T, SFX)                                                              \
    /* Z (rows x cols, contiguous) -> f(Z) in place */                                        \
    void fsgd_act_forward_##SFX(int nthreads, int act, T slope, int64_t rows, int64_t cols,   \
                                T *Z);                                                        \
    /* D holds dL/dA on entry and dL/dZ on exit; A = f(Z) */                                  \
    void fsgd_act_backward_##SFX(int nthreads, int act, T slope, int64_t rows, int64_t cols,  \
                                 const T *A, T *D);                                           \
    /* db[c] = sum_r D[r, c] (rows summed in order) */                                        \
    void fsgd_col_sums_##SFX(int nthreads, int64_t rows, int64_t cols, const T *D, T *db);    \
    /* Z = X[rows] W + b, then the activation in place */                                     \
    int fsgd_dense_forward_##SFX(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,     \
                                 const T *X, int64_t ldx, const int64_t *x_rows, const T *W,  \
                                 const T *b, int act, T slope, T *Z);                         \
    /* D: dL/dA in, dL/dZ out; dW = X^T D, db = colsum D, dX = D W^T (dX may be NULL) */      \
    int fsgd_dense_backward_##SFX(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,    \
                                  const T *X, int64_t ldx, const int64_t *x_rows, const T *W, \
                                  const T *A, int act, T slope, T *D, T *dW, T *db, T *dX);   \
    /* Output layer fused with its cost. Z holds the pre-activations (rows x cols) and is     \
       overwritten with the activations. Targets are y_int (class index per row, may be       \
       NULL) or y (rows x cols, row r read at y_rows[r] when y_rows is not NULL). D gets       \
       dL/dZ of the mean cost over `scale_rows` rows. loss gets the summed per-row cost and    \
       correct the number of correctly classified rows (elements for binary CE). */           \
    int fsgd_output_cost_##SFX(int nthreads, int cost, int act, T slope, int64_t rows,        \
                               int64_t cols, T *Z, const int64_t *y_int, const T *y,          \
                               const int64_t *y_rows, int64_t scale_rows, T *D, double *loss, \
                               int64_t *correct);                                             \
    /* out[i, :] = X[rows[i], :] */                                                           \
    void fsgd_gather_rows_##SFX(int nthreads, int64_t n, int64_t cols, const T *X,            \
                                int64_t ldx, const int64_t *rows, T *out);

FSGD_DECLARE_OPS(float, f32)
FSGD_DECLARE_OPS(double, f64)

/* ---- optimizers ----------------------------------------------------------
 * One fused, in-place pass over a parameter array, its gradient and its
 * state. With check != 0 only the gradient is read and nothing is written:
 * the call reports FSGD_ERR_NONFINITE when a gradient is NaN, infinite or
 * so large that the step could overflow. Without check, the step is
 * applied; an element whose new value would not be finite keeps its old
 * value (and state) and the call reports FSGD_ERR_NONFINITE: a parameter
 * never becomes NaN or infinite. */
typedef struct {
    int kind;            /* FSGD_OPT_* */
    double lr;
    double momentum;     /* SGD, RMSprop */
    int nesterov;        /* SGD */
    double beta_1, beta_2, rho, epsilon;
    int amsgrad, centered;
    double weight_decay;       /* decoupled (AdamW style): p -= lr * weight_decay * p */
    double l1, l2;             /* coupled penalties added to the gradient */
    int64_t step;              /* 1-based step count (bias correction) */
} fsgd_opt;

int fsgd_update_f32(int nthreads, const fsgd_opt *opt, int check, int64_t n, const float *g,
                    float *p, float *s1, float *s2, float *s3);
int fsgd_update_f64(int nthreads, const fsgd_opt *opt, int check, int64_t n, const double *g,
                    double *p, double *s1, double *s2, double *s3);

/* ---- a whole network ------------------------------------------------ */
typedef struct {
    int64_t n_in, n_out;
    int act;
    double slope;
    void *W, *b, *dW, *db;   /* parameters (n_in x n_out, n_out) and gradients */
    void *A;                 /* activations, capacity x n_out */
    void *D;                 /* deltas, capacity x n_out */
    double l1, l2;           /* per-layer weight penalties (coupled) */
    void *state[2][3];       /* optimizer state for W and b */
} fsgd_layer;

typedef struct {
    int n_layers;
    fsgd_layer *layers;
    int64_t capacity; /* rows the buffers hold */
    int cost;
    int nthreads;
} fsgd_net;

/* forward through all layers for X[rows] (x_rows may be NULL); output in last layer's A */
int fsgd_net_forward_f32(const fsgd_net *net, int64_t rows, const float *X, int64_t ldx,
                         const int64_t *x_rows);
int fsgd_net_forward_f64(const fsgd_net *net, int64_t rows, const double *X, int64_t ldx,
                         const int64_t *x_rows);
/* forward and cost without backward (evaluation); the output layer's A gets
   the predictions */
int fsgd_net_eval_batch_f32(const fsgd_net *net, int64_t rows, const float *X, int64_t ldx,
                            const int64_t *x_rows, const int64_t *y_int, const float *y,
                            double *loss, int64_t *correct);
int fsgd_net_eval_batch_f64(const fsgd_net *net, int64_t rows, const double *X, int64_t ldx,
                            const int64_t *x_rows, const int64_t *y_int, const double *y,
                            double *loss, int64_t *correct);
/* one mini-batch: forward, cost, backward, and the optimizer step.
   Returns FSGD_ERR_NONFINITE when the cost or a gradient is not finite (no
   parameter is touched) or when the step would overflow a parameter (that
   element keeps its old value). update == 0 skips the optimizer step. */
int fsgd_net_train_batch_f32(const fsgd_net *net, const fsgd_opt *opt, int update,
                             int64_t rows, const float *X, int64_t ldx, const int64_t *x_rows,
                             const int64_t *y_int, const float *y, double *loss,
                             int64_t *correct);
int fsgd_net_train_batch_f64(const fsgd_net *net, const fsgd_opt *opt, int update,
                             int64_t rows, const double *X, int64_t ldx, const int64_t *x_rows,
                             const int64_t *y_int, const double *y, double *loss,
                             int64_t *correct);

#ifdef __cplusplus
}
#endif
#endif
