# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled core's one home: links csrc/ and gives every other compiled
module its entry points (see _core.pxd). Also the enum names, read from the C
core, and the translation of C status codes into Python exceptions."""
from libc.stdint cimport int32_t, int64_t, uint64_t


cdef extern from "fsgd.h" nogil:
    const char *fsgd_status_str(int status)
    const char *fsgd_simd_name(int path)
    const char *fsgd_act_name(int act)
    const char *fsgd_cost_name(int cost)
    const char *fsgd_opt_name(int kind)
    const char *fsgd_layer_name(int kind)
    int fsgd_simd_supported()
    int fsgd_simd_get()
    int fsgd_simd_set(int path)
    int fsgd_openmp_enabled()
    int fsgd_omp_max_threads()
    void fsgd_omp_set_threads(int n)
    int fsgd_cpu_count()
    const char *fsgd_compiler()

    void fsgd_exp_f32(int64_t n, const float *x, float *out)
    void fsgd_exp_f64(int64_t n, const double *x, double *out)
    int fsgd_gemm_f32(int nthreads, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                      float alpha, const float *A, int64_t lda, const int64_t *a_rows,
                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
    int fsgd_gemm_f64(int nthreads, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                      double alpha, const double *A, int64_t lda, const int64_t *a_rows,
                      const double *B, int64_t ldb, double beta, double *C, int64_t ldc)
    void fsgd_act_forward_f32(int, int, float, int64_t, int64_t, float *)
    void fsgd_act_forward_f64(int, int, double, int64_t, int64_t, double *)
    void fsgd_act_backward_f32(int, int, float, int64_t, int64_t, const float *, float *)
    void fsgd_act_backward_f64(int, int, double, int64_t, int64_t, const double *, double *)
    int fsgd_dense_forward_f32(int, int64_t, int64_t, int64_t, const float *, int64_t,
                               const int64_t *, const float *, const float *, int, float,
                               float *)
    int fsgd_dense_forward_f64(int, int64_t, int64_t, int64_t, const double *, int64_t,
                               const int64_t *, const double *, const double *, int, double,
                               double *)
    int fsgd_dense_backward_f32(int, int64_t, int64_t, int64_t, const float *, int64_t,
                                const int64_t *, const float *, const float *, int, float,
                                float *, float *, float *, float *)
    int fsgd_dense_backward_f64(int, int64_t, int64_t, int64_t, const double *, int64_t,
                                const int64_t *, const double *, const double *, int, double,
                                double *, double *, double *, double *)
    int fsgd_output_cost_f32(int, int, double, int, float, int64_t, int64_t, float *,
                             const int64_t *, const float *, const int64_t *, int64_t,
                             const float *, float *, double *, int64_t *)
    int fsgd_output_cost_f64(int, int, double, int, double, int64_t, int64_t, double *,
                             const int64_t *, const double *, const int64_t *, int64_t,
                             const double *, double *, double *, int64_t *)
    int fsgd_dropout_keep(uint64_t seed, uint64_t step, int64_t row, int64_t unit, double rate)
    void fsgd_gather_rows_f32(int, int64_t, int64_t, const float *, int64_t, const int64_t *,
                              float *)
    void fsgd_gather_rows_f64(int, int64_t, int64_t, const double *, int64_t,
                              const int64_t *, double *)
    int64_t fsgd_convert_rows_f32(int, int, int64_t, int64_t, const void *, int64_t,
                                  const int64_t *, double, double, float *)
    int64_t fsgd_convert_rows_f64(int, int, int64_t, int64_t, const void *, int64_t,
                                  const int64_t *, double, double, double *)
    int64_t fsgd_dense_csr_count_f32(int, int, int64_t, int64_t, const void *, int64_t,
                                     const int64_t *, double, int64_t *)
    int64_t fsgd_dense_csr_count_f64(int, int, int64_t, int64_t, const void *, int64_t,
                                     const int64_t *, double, int64_t *)
    int fsgd_dense_csr_fill_f32(int, int, int64_t, int64_t, const void *, int64_t, double,
                                const int64_t *, int32_t *, float *)
    int fsgd_dense_csr_fill_f64(int, int, int64_t, int64_t, const void *, int64_t, double,
                                const int64_t *, int32_t *, double *)
    int fsgd_csr_dense_forward_f32(int, int64_t, int64_t, int64_t, const fsgd_csr *,
                                   const int64_t *, const float *, const float *, int, float,
                                   float *)
    int fsgd_csr_dense_forward_f64(int, int64_t, int64_t, int64_t, const fsgd_csr *,
                                   const int64_t *, const double *, const double *, int, double,
                                   double *)
    int fsgd_csr_dense_backward_f32(int, int64_t, int64_t, int64_t, const fsgd_csr *,
                                    const int64_t *, const float *, int, float, float *, float *,
                                    float *)
    int fsgd_csr_dense_backward_f64(int, int64_t, int64_t, int64_t, const fsgd_csr *,
                                    const int64_t *, const double *, int, double, double *,
                                    double *, double *)
    int fsgd_update_f32(int nthreads, const fsgd_opt *opt, const fsgd_update_plan *plan)
    int fsgd_update_f64(int nthreads, const fsgd_opt *opt, const fsgd_update_plan *plan)
    int fsgd_net_check(const fsgd_net *net)
    int fsgd_tuner_replay(fsgd_tuner *t, int nt, double seconds_full, double seconds_single,
                          int64_t rows)
    int fsgd_net_forward_f32(const fsgd_net *, int64_t, const float *, int64_t,
                             const int64_t *, int)
    int fsgd_net_forward_f64(const fsgd_net *, int64_t, const double *, int64_t,
                             const int64_t *, int)
    int fsgd_net_cost_f32(const fsgd_net *, int64_t, const int64_t *, const float *,
                          const int64_t *, int, double *, int64_t *)
    int fsgd_net_cost_f64(const fsgd_net *, int64_t, const int64_t *, const double *,
                          const int64_t *, int, double *, int64_t *)
    int fsgd_net_backward_f32(const fsgd_net *, int64_t, const float *, int64_t,
                              const int64_t *)
    int fsgd_net_backward_f64(const fsgd_net *, int64_t, const double *, int64_t,
                              const int64_t *)
    int fsgd_net_train_batch_f32(const fsgd_net *, const fsgd_opt *, const fsgd_update_plan *,
                                 int64_t, const float *, int64_t, const int64_t *,
                                 const int64_t *, const float *, const int64_t *, double *,
                                 int64_t *)
    int fsgd_net_train_batch_f64(const fsgd_net *, const fsgd_opt *, const fsgd_update_plan *,
                                 int64_t, const double *, int64_t, const int64_t *,
                                 const int64_t *, const double *, const int64_t *, double *,
                                 int64_t *)


# ---- names, read from the C core (no numbers copied by hand) --------------------------
cdef dict _names(const char *(*name_of)(int) noexcept nogil, int count):
    return {name_of(i).decode(): i for i in range(count)}


#: activation name -> code
ACTIVATIONS = _names(fsgd_act_name, FSGD_ACT_COUNT)
#: cost name -> code
COSTS = _names(fsgd_cost_name, FSGD_COST_COUNT)
#: optimizer rule name -> code
OPTIMIZERS = _names(fsgd_opt_name, FSGD_OPT_COUNT)
#: SIMD path name -> code (the names FASTSGD_SIMD, set_simd and config() use)
SIMD_PATHS = _names(fsgd_simd_name, FSGD_SIMD_COUNT)
#: layer kind name -> code
LAYER_KINDS = _names(fsgd_layer_name, FSGD_LAYER_COUNT)
#: most optimizer state slots a rule uses
MAX_SLOTS = FSGD_MAX_SLOTS


def dropout_keep(uint64_t seed, uint64_t step, int64_t row, int64_t unit, double rate):
    """Dropout's generator: True when unit ``unit`` of batch row ``row`` is kept
    at training step ``step`` by a layer keyed ``seed`` that drops ``rate``."""
    return fsgd_dropout_keep(seed, step, row, unit, rate) != 0


def simd_name(int path):
    """The name of a SIMD path code."""
    cdef const char *s = fsgd_simd_name(path)
    if s == NULL:
        raise ValueError(f"unknown SIMD path code {path}")
    return s.decode()


class NonFiniteError(FloatingPointError):
    """A cost, a gradient or a stepped value would be NaN or infinite."""


cdef int check_status(int status) except -1:
    """Raise the Python exception for a C status (0 is success)."""
    if status == FSGD_OK:
        return 0
    cdef const char *text = fsgd_status_str(status)
    what = text.decode() if text != NULL else "unknown status"
    if status == FSGD_ERR_ALLOC:
        raise MemoryError(f"fastsgd: {what}")
    if status == FSGD_ERR_NONFINITE:
        raise NonFiniteError(what)
    raise ValueError(f"fastsgd: {what} (status {status})")


# ---- run time ----------------------------------------------------------------------
cdef int simd_supported() noexcept nogil:
    return fsgd_simd_supported()

cdef int simd_get() noexcept nogil:
    return fsgd_simd_get()

cdef int simd_set(int path) noexcept nogil:
    return fsgd_simd_set(path)

cdef int openmp_enabled() noexcept nogil:
    return fsgd_openmp_enabled()

cdef int omp_max_threads() noexcept nogil:
    return fsgd_omp_max_threads()

cdef void omp_set_threads(int n) noexcept nogil:
    fsgd_omp_set_threads(n)

cdef int cpu_count() noexcept nogil:
    return fsgd_cpu_count()

cdef str compiler():
    return fsgd_compiler().decode()


# ---- kernels ---------------------------------------------------------------------------
cdef void exp_approx(int64_t n, const floating *x, floating *out) noexcept nogil:
    if floating is float:
        fsgd_exp_f32(n, x, out)
    else:
        fsgd_exp_f64(n, x, out)


cdef int gemm(int nthreads, bint trans_a, bint trans_b, int64_t M, int64_t N, int64_t K,
              floating alpha, const floating *A, int64_t lda, const int64_t *a_rows,
              const floating *B, int64_t ldb, floating beta, floating *C,
              int64_t ldc) noexcept nogil:
    if floating is float:
        return fsgd_gemm_f32(nthreads, trans_a, trans_b, M, N, K, alpha, A, lda, a_rows, B,
                             ldb, beta, C, ldc)
    else:
        return fsgd_gemm_f64(nthreads, trans_a, trans_b, M, N, K, alpha, A, lda, a_rows, B,
                             ldb, beta, C, ldc)


cdef void act_forward(int nthreads, int act, floating slope, int64_t rows, int64_t cols,
                      floating *Z) noexcept nogil:
    if floating is float:
        fsgd_act_forward_f32(nthreads, act, slope, rows, cols, Z)
    else:
        fsgd_act_forward_f64(nthreads, act, slope, rows, cols, Z)


cdef void act_backward(int nthreads, int act, floating slope, int64_t rows, int64_t cols,
                       const floating *A, floating *D) noexcept nogil:
    if floating is float:
        fsgd_act_backward_f32(nthreads, act, slope, rows, cols, A, D)
    else:
        fsgd_act_backward_f64(nthreads, act, slope, rows, cols, A, D)


cdef int dense_forward(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,
                       const floating *X, int64_t ldx, const int64_t *x_rows,
                       const floating *W, const floating *b, int act, floating slope,
                       floating *Z) noexcept nogil:
    if floating is float:
        return fsgd_dense_forward_f32(nthreads, rows, n_in, n_out, X, ldx, x_rows, W, b, act,
                                      slope, Z)
    else:
        return fsgd_dense_forward_f64(nthreads, rows, n_in, n_out, X, ldx, x_rows, W, b, act,
                                      slope, Z)


cdef int dense_backward(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,
                        const floating *X, int64_t ldx, const int64_t *x_rows,
                        const floating *W, const floating *A, int act, floating slope,
                        floating *D, floating *dW, floating *db, floating *dX) noexcept nogil:
    if floating is float:
        return fsgd_dense_backward_f32(nthreads, rows, n_in, n_out, X, ldx, x_rows, W, A, act,
                                       slope, D, dW, db, dX)
    else:
        return fsgd_dense_backward_f64(nthreads, rows, n_in, n_out, X, ldx, x_rows, W, A, act,
                                       slope, D, dW, db, dX)


cdef int output_cost(int nthreads, int cost, double cost_param, int act, floating slope,
                     int64_t rows, int64_t cols, floating *Z, const int64_t *y_int,
                     const floating *y, const int64_t *y_rows, int64_t scale_rows,
                     const floating *sample_w, floating *D, double *loss,
                     int64_t *correct) noexcept nogil:
    if floating is float:
        return fsgd_output_cost_f32(nthreads, cost, cost_param, act, slope, rows, cols, Z,
                                    y_int, y, y_rows, scale_rows, sample_w, D, loss, correct)
    else:
        return fsgd_output_cost_f64(nthreads, cost, cost_param, act, slope, rows, cols, Z,
                                    y_int, y, y_rows, scale_rows, sample_w, D, loss, correct)


cdef void gather_rows(int nthreads, int64_t n, int64_t cols, const floating *X, int64_t ldx,
                      const int64_t *rows, floating *out) noexcept nogil:
    if floating is float:
        fsgd_gather_rows_f32(nthreads, n, cols, X, ldx, rows, out)
    else:
        fsgd_gather_rows_f64(nthreads, n, cols, X, ldx, rows, out)


cdef int64_t convert_rows(int nthreads, int kind, int64_t n, int64_t cols, const void *X,
                          int64_t ldx, const int64_t *rows, double scale, double offset,
                          floating *out) noexcept nogil:
    if floating is float:
        return fsgd_convert_rows_f32(nthreads, kind, n, cols, X, ldx, rows, scale, offset, out)
    else:
        return fsgd_convert_rows_f64(nthreads, kind, n, cols, X, ldx, rows, scale, offset, out)


cdef int64_t dense_csr_count(floating *tag, int nthreads, int kind, int64_t n, int64_t cols,
                             const void *X, int64_t ldx, const int64_t *rows, double scale,
                             int64_t *counts) noexcept nogil:
    if floating is float:
        return fsgd_dense_csr_count_f32(nthreads, kind, n, cols, X, ldx, rows, scale, counts)
    else:
        return fsgd_dense_csr_count_f64(nthreads, kind, n, cols, X, ldx, rows, scale, counts)


cdef int dense_csr_fill(int nthreads, int kind, int64_t n, int64_t cols, const void *X,
                        int64_t ldx, double scale, const int64_t *indptr, int32_t *indices,
                        floating *data) noexcept nogil:
    if floating is float:
        return fsgd_dense_csr_fill_f32(nthreads, kind, n, cols, X, ldx, scale, indptr, indices,
                                       data)
    else:
        return fsgd_dense_csr_fill_f64(nthreads, kind, n, cols, X, ldx, scale, indptr, indices,
                                       data)


cdef int csr_dense_forward(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,
                           const fsgd_csr *X, const int64_t *x_rows, const floating *W,
                           const floating *b, int act, floating slope,
                           floating *Z) noexcept nogil:
    if floating is float:
        return fsgd_csr_dense_forward_f32(nthreads, rows, n_in, n_out, X, x_rows, W, b, act,
                                          slope, Z)
    else:
        return fsgd_csr_dense_forward_f64(nthreads, rows, n_in, n_out, X, x_rows, W, b, act,
                                          slope, Z)


cdef int csr_dense_backward(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,
                            const fsgd_csr *X, const int64_t *x_rows, const floating *A,
                            int act, floating slope, floating *D, floating *dW,
                            floating *db) noexcept nogil:
    if floating is float:
        return fsgd_csr_dense_backward_f32(nthreads, rows, n_in, n_out, X, x_rows, A, act,
                                           slope, D, dW, db)
    else:
        return fsgd_csr_dense_backward_f64(nthreads, rows, n_in, n_out, X, x_rows, A, act,
                                           slope, D, dW, db)


# ---- optimizer step and network -------------------------------------------------------
cdef int update(int nthreads, const fsgd_opt *opt, const fsgd_update_plan *plan,
                bint f64) noexcept nogil:
    if f64:
        return fsgd_update_f64(nthreads, opt, plan)
    return fsgd_update_f32(nthreads, opt, plan)


cdef int net_check(const fsgd_net *net) noexcept nogil:
    return fsgd_net_check(net)


cdef int tuner_replay(fsgd_tuner *t, int nt, double seconds_full, double seconds_single,
                      int64_t rows) noexcept nogil:
    return fsgd_tuner_replay(t, nt, seconds_full, seconds_single, rows)


cdef int net_forward(const fsgd_net *net, int64_t rows, const floating *X, int64_t ldx,
                     const int64_t *x_rows, bint out_act) noexcept nogil:
    if floating is float:
        return fsgd_net_forward_f32(net, rows, X, ldx, x_rows, out_act)
    else:
        return fsgd_net_forward_f64(net, rows, X, ldx, x_rows, out_act)


cdef int net_cost(const fsgd_net *net, int64_t rows, const int64_t *y_int, const floating *y,
                  const int64_t *y_rows, bint with_grad, double *loss,
                  int64_t *correct) noexcept nogil:
    if floating is float:
        return fsgd_net_cost_f32(net, rows, y_int, y, y_rows, with_grad, loss, correct)
    else:
        return fsgd_net_cost_f64(net, rows, y_int, y, y_rows, with_grad, loss, correct)


cdef int net_backward(const fsgd_net *net, int64_t rows, const floating *X, int64_t ldx,
                      const int64_t *x_rows) noexcept nogil:
    if floating is float:
        return fsgd_net_backward_f32(net, rows, X, ldx, x_rows)
    else:
        return fsgd_net_backward_f64(net, rows, X, ldx, x_rows)


cdef int net_train_batch(const fsgd_net *net, const fsgd_opt *opt,
                         const fsgd_update_plan *plan, int64_t rows, const floating *X,
                         int64_t ldx, const int64_t *x_rows, const int64_t *y_int,
                         const floating *y, const int64_t *y_rows, double *loss,
                         int64_t *correct) noexcept nogil:
    if floating is float:
        return fsgd_net_train_batch_f32(net, opt, plan, rows, X, ldx, x_rows, y_int, y, y_rows,
                                        loss, correct)
    else:
        return fsgd_net_train_batch_f64(net, opt, plan, rows, X, ldx, x_rows, y_int, y, y_rows,
                                        loss, correct)
