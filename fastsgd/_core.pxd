# cython: language_level=3
"""The C core's types and enums (from csrc/fsgd.h) and its fused nogil entry
points. Only fastsgd._core links the C core; every other compiled module
cimports from here, so process-wide state (the SIMD choice, the per-thread
workspace) exists once."""
from cython cimport floating
from libc.stdint cimport int32_t, int64_t, uint64_t


cdef extern from "fsgd.h" nogil:
    ctypedef enum fsgd_status:
        FSGD_OK
        FSGD_ERR_ALLOC
        FSGD_ERR_ARG
        FSGD_ERR_NONFINITE
        FSGD_STATUS_COUNT
    ctypedef enum fsgd_simd:
        FSGD_SIMD_GENERIC
        FSGD_SIMD_AVX2
        FSGD_SIMD_AVX512
        FSGD_SIMD_COUNT
    ctypedef enum fsgd_act:
        FSGD_ACT_LINEAR
        FSGD_ACT_SOFTMAX
        FSGD_ACT_COUNT
    ctypedef enum fsgd_cost:
        FSGD_COST_CROSS_ENTROPY
        FSGD_COST_HUBER
        FSGD_COST_COUNT
    ctypedef enum fsgd_opt_kind:
        FSGD_OPT_SGD
        FSGD_OPT_ADAGRAD
        FSGD_OPT_RMSPROP
        FSGD_OPT_ADAM
        FSGD_OPT_COUNT
    ctypedef enum fsgd_layer_kind:
        FSGD_LAYER_DENSE
        FSGD_LAYER_DROPOUT
        FSGD_LAYER_BATCH_NORM
        FSGD_LAYER_COUNT
    enum:
        FSGD_MAX_SLOTS

    ctypedef struct fsgd_opt:
        int kind
        double lr
        double momentum
        int nesterov
        double beta_1, beta_2, rho, epsilon
        int amsgrad, centered
        double weight_decay
        int64_t step

    ctypedef struct fsgd_segment:
        int64_t offset, size
        double l1, l2
        int decay

    ctypedef struct fsgd_step_bounds:
        int valid
        double max_p
        double max_s
        double max_v

    ctypedef struct fsgd_update_plan:
        int64_t size
        int64_t n_segments
        const fsgd_segment *segments
        void *params
        const void *grads
        void *slots[FSGD_MAX_SLOTS]
        fsgd_step_bounds *bounds

    ctypedef struct fsgd_csr:
        int64_t n_rows
        const int64_t *indptr
        const int32_t *indices
        const void *data
        const int64_t *col_cum

    ctypedef struct fsgd_layer:
        int kind
        int act
        double slope
        int64_t n_in, n_out
        int64_t w_offset, b_offset
        void *A
        void *D
        double rate
        uint64_t seed
        double momentum, epsilon
        int64_t s_offset
        void *aux

    ctypedef struct fsgd_tuner:
        int nthreads
        int single
        int64_t calls
        int64_t next_probe
        int64_t interval
        int streak
        int try_calls
        double try_sum
        int64_t probes[2]
        double per_row[2]
        int seen[2]
        int64_t panel_calls

    ctypedef struct fsgd_net:
        int n_layers
        const fsgd_layer *layers
        int64_t capacity
        int64_t n_params
        void *params
        void *grads
        int cost
        int nthreads
        const fsgd_csr *x_csr
        const void *sample_w
        double cost_param
        int64_t n_state
        void *state
        uint64_t seed_step
        int64_t seed_row0
        fsgd_tuner *tuner


# ---- run time ----------------------------------------------------------------
cdef int simd_supported() noexcept nogil
cdef int simd_get() noexcept nogil
cdef int simd_set(int path) noexcept nogil
cdef int openmp_enabled() noexcept nogil
cdef int omp_max_threads() noexcept nogil
cdef void omp_set_threads(int n) noexcept nogil
cdef int cpu_count() noexcept nogil
cdef str compiler()
cdef int check_status(int status) except -1

# ---- kernels (one fused body per routine) -----------------------------------------
cdef void exp_approx(int64_t n, const floating *x, floating *out) noexcept nogil
cdef int gemm(int nthreads, bint trans_a, bint trans_b, int64_t M, int64_t N, int64_t K,
              floating alpha, const floating *A, int64_t lda, const int64_t *a_rows,
              const floating *B, int64_t ldb, floating beta, floating *C,
              int64_t ldc) noexcept nogil
cdef void act_forward(int nthreads, int act, floating slope, int64_t rows, int64_t cols,
                      floating *Z) noexcept nogil
cdef void act_backward(int nthreads, int act, floating slope, int64_t rows, int64_t cols,
                       const floating *A, floating *D) noexcept nogil
cdef int dense_forward(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,
                       const floating *X, int64_t ldx, const int64_t *x_rows,
                       const floating *W, const floating *b, int act, floating slope,
                       floating *Z) noexcept nogil
cdef int dense_backward(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,
                        const floating *X, int64_t ldx, const int64_t *x_rows,
                        const floating *W, const floating *A, int act, floating slope,
                        floating *D, floating *dW, floating *db, floating *dX) noexcept nogil
cdef int output_cost(int nthreads, int cost, double cost_param, int act, floating slope,
                     int64_t rows, int64_t cols, floating *Z, const int64_t *y_int,
                     const floating *y, const int64_t *y_rows, int64_t scale_rows,
                     const floating *sample_w, floating *D, double *loss,
                     int64_t *correct) noexcept nogil
cdef void gather_rows(int nthreads, int64_t n, int64_t cols, const floating *X, int64_t ldx,
                      const int64_t *rows, floating *out) noexcept nogil

cdef int64_t convert_rows(int nthreads, int kind, int64_t n, int64_t cols, const void *X,
                          int64_t ldx, const int64_t *rows, double scale, double offset,
                          floating *out) noexcept nogil
# dense rows into CSR, two passes (csrc/dense_csr.c); `tag` (NULL) picks the dtype
cdef int64_t dense_csr_count(floating *tag, int nthreads, int kind, int64_t n, int64_t cols,
                             const void *X, int64_t ldx, const int64_t *rows, double scale,
                             int64_t *counts) noexcept nogil
cdef int dense_csr_fill(int nthreads, int kind, int64_t n, int64_t cols, const void *X,
                        int64_t ldx, double scale, const int64_t *indptr, int32_t *indices,
                        floating *data) noexcept nogil
cdef int csr_dense_forward(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,
                           const fsgd_csr *X, const int64_t *x_rows, const floating *W,
                           const floating *b, int act, floating slope,
                           floating *Z) noexcept nogil
cdef int csr_dense_backward(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,
                            const fsgd_csr *X, const int64_t *x_rows, const floating *A,
                            int act, floating slope, floating *D, floating *dW,
                            floating *db) noexcept nogil

# ---- optimizer step and network (dtype given by the plan) --------------------------
cdef int update(int nthreads, const fsgd_opt *opt, const fsgd_update_plan *plan,
                bint f64) noexcept nogil
cdef int net_check(const fsgd_net *net) noexcept nogil
cdef int tuner_replay(fsgd_tuner *t, int nt, double seconds_full, double seconds_single,
                      int64_t rows) noexcept nogil
cdef int net_forward(const fsgd_net *net, int64_t rows, const floating *X, int64_t ldx,
                     const int64_t *x_rows, bint out_act) noexcept nogil
cdef int net_cost(const fsgd_net *net, int64_t rows, const int64_t *y_int, const floating *y,
                  const int64_t *y_rows, bint with_grad, double *loss,
                  int64_t *correct) noexcept nogil
cdef int net_backward(const fsgd_net *net, int64_t rows, const floating *X, int64_t ldx,
                      const int64_t *x_rows) noexcept nogil
cdef int net_train_batch(const fsgd_net *net, const fsgd_opt *opt,
                         const fsgd_update_plan *plan, int64_t rows, const floating *X,
                         int64_t ldx, const int64_t *x_rows, const int64_t *y_int,
                         const floating *y, const int64_t *y_rows, double *loss,
                         int64_t *correct) noexcept nogil
