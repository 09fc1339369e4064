# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Private compiled kernels of fastsgd.

Every ``def`` here validates its arguments while holding the GIL, then runs
the C kernel from ``csrc/`` with the GIL released. The public, documented
entry points live in :mod:`fastsgd.kernels`, :mod:`fastsgd.layers` and
:mod:`fastsgd.trainer`.
"""
import os

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy

cnp.import_array()


cdef extern from "fsgd.h" nogil:
    int FSGD_OK, FSGD_ERR_ALLOC, FSGD_ERR_ARG, FSGD_ERR_NONFINITE
    int FSGD_SIMD_GENERIC, FSGD_SIMD_AVX2, FSGD_SIMD_AVX512

    int fsgd_simd_supported()
    int fsgd_simd_get()
    int fsgd_simd_set(int path)
    const char *fsgd_simd_name(int path)
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

    void fsgd_act_forward_f32(int nthreads, int act, float slope, int64_t rows, int64_t cols, float *Z)
    void fsgd_act_forward_f64(int nthreads, int act, double slope, int64_t rows, int64_t cols, double *Z)
    void fsgd_act_backward_f32(int nthreads, int act, float slope, int64_t rows, int64_t cols,
                               const float *A, float *D)
    void fsgd_act_backward_f64(int nthreads, int act, double slope, int64_t rows, int64_t cols,
                               const double *A, double *D)
    int fsgd_dense_forward_f32(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,
                               const float *X, int64_t ldx, const int64_t *x_rows, const float *W,
                               const float *b, int act, float slope, float *Z)
    int fsgd_dense_forward_f64(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,
                               const double *X, int64_t ldx, const int64_t *x_rows, const double *W,
                               const double *b, int act, double slope, double *Z)
    int fsgd_dense_backward_f32(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,
                                const float *X, int64_t ldx, const int64_t *x_rows, const float *W,
                                const float *A, int act, float slope, float *D, float *dW,
                                float *db, float *dX)
    int fsgd_dense_backward_f64(int nthreads, int64_t rows, int64_t n_in, int64_t n_out,
                                const double *X, int64_t ldx, const int64_t *x_rows,
                                const double *W, const double *A, int act, double slope,
                                double *D, double *dW, double *db, double *dX)
    int fsgd_output_cost_f32(int nthreads, int cost, int act, float slope, int64_t rows,
                             int64_t cols, float *Z, const int64_t *y_int, const float *y,
                             const int64_t *y_rows, int64_t scale_rows, float *D, double *loss,
                             int64_t *correct)
    int fsgd_output_cost_f64(int nthreads, int cost, int act, double slope, int64_t rows,
                             int64_t cols, double *Z, const int64_t *y_int, const double *y,
                             const int64_t *y_rows, int64_t scale_rows, double *D, double *loss,
                             int64_t *correct)
    void fsgd_gather_rows_f32(int nthreads, int64_t n, int64_t cols, const float *X, int64_t ldx,
                              const int64_t *rows, float *out)
    void fsgd_gather_rows_f64(int nthreads, int64_t n, int64_t cols, const double *X,
                              int64_t ldx, const int64_t *rows, double *out)

    ctypedef struct fsgd_opt:
        int kind
        double lr
        double momentum
        int nesterov
        double beta_1, beta_2, rho, epsilon
        int amsgrad, centered
        double weight_decay
        double l1, l2
        int64_t step

    int fsgd_update_f32(int nthreads, const fsgd_opt *opt, int check, int64_t n, const float *g,
                        float *p, float *s1, float *s2, float *s3)
    int fsgd_update_f64(int nthreads, const fsgd_opt *opt, int check, int64_t n, const double *g,
                        double *p, double *s1, double *s2, double *s3)

    ctypedef struct fsgd_layer:
        int64_t n_in, n_out
        int act
        double slope
        void *W
        void *b
        void *dW
        void *db
        void *A
        void *D
        double l1, l2
        void *state[2][3]

    ctypedef struct fsgd_net:
        int n_layers
        fsgd_layer *layers
        int64_t capacity
        int cost
        int nthreads

    int fsgd_net_forward_f32(const fsgd_net *net, int64_t rows, const float *X, int64_t ldx,
                             const int64_t *x_rows)
    int fsgd_net_forward_f64(const fsgd_net *net, int64_t rows, const double *X, int64_t ldx,
                             const int64_t *x_rows)
    int fsgd_net_eval_batch_f32(const fsgd_net *net, int64_t rows, const float *X, int64_t ldx,
                                const int64_t *x_rows, const int64_t *y_int, const float *y,
                                double *loss, int64_t *correct)
    int fsgd_net_eval_batch_f64(const fsgd_net *net, int64_t rows, const double *X, int64_t ldx,
                                const int64_t *x_rows, const int64_t *y_int, const double *y,
                                double *loss, int64_t *correct)
    int fsgd_net_train_batch_f32(const fsgd_net *net, const fsgd_opt *opt, int update,
                                 int64_t rows, const float *X, int64_t ldx,
                                 const int64_t *x_rows, const int64_t *y_int, const float *y,
                                 double *loss, int64_t *correct)
    int fsgd_net_train_batch_f64(const fsgd_net *net, const fsgd_opt *opt, int update,
                                 int64_t rows, const double *X, int64_t ldx,
                                 const int64_t *x_rows, const int64_t *y_int, const double *y,
                                 double *loss, int64_t *correct)


# ---- names shared with the Python layer ----------------------------------
ACTIVATIONS = {"linear": 0, "sigmoid": 1, "tanh": 2, "relu": 3, "leaky_relu": 4, "softmax": 5}
COSTS = {"mse": 0, "cross_entropy": 1, "binary_cross_entropy": 2}
OPTIMIZERS = {"sgd": 0, "adagrad": 1, "rmsprop": 2, "adam": 3}
SIMD_PATHS = {"generic": 0, "avx2": 1, "avx512": 2}


class NonFiniteError(FloatingPointError):
    """A cost or a stepped parameter would be NaN or infinite."""


cdef int _check(int status) except -1:
    if status == FSGD_OK:
        return 0
    if status == FSGD_ERR_ALLOC:
        raise MemoryError("fastsgd: out of memory in a kernel workspace")
    if status == FSGD_ERR_NONFINITE:
        raise NonFiniteError("a cost or an updated parameter is not finite")
    raise ValueError(f"fastsgd kernel rejected its arguments (status {status})")


# ---- threads and configuration ---------------------------------------------
cdef int _threads = 0  # 0: not set explicitly
cdef int _initial_omp = fsgd_omp_max_threads()


def get_num_threads():
    """The number of threads the kernels use.

    An explicit :func:`set_num_threads` wins; otherwise the OpenMP runtime's
    setting, which honours ``OMP_NUM_THREADS`` (and threadpoolctl's limits),
    else the number of cores. Always 1 in a build without OpenMP.
    """
    if not fsgd_openmp_enabled():
        return 1
    if _threads > 0:
        return _threads
    return max(1, fsgd_omp_max_threads())


def set_num_threads(n):
    """Set the number of threads the kernels use (an integer >= 1).

    Results do not depend on it: every thread count gives bit-identical
    numbers. The setting is also handed to the OpenMP runtime, so
    threadpoolctl reports it.
    """
    global _threads
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"set_num_threads: n must be an integer >= 1, got {n!r}")
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    _threads = int(n)
    fsgd_omp_set_threads(_threads)


def _reset_num_threads():
    """Forget an explicit setting (back to the environment's default)."""
    global _threads
    _threads = 0
    fsgd_omp_set_threads(_initial_omp)


def openmp_enabled():
    return bool(fsgd_openmp_enabled())


def compiler():
    return fsgd_compiler().decode()


def cpu_count():
    return fsgd_cpu_count()


def simd_supported():
    """The best SIMD path this CPU runs ('generic', 'avx2' or 'avx512')."""
    return fsgd_simd_name(fsgd_simd_supported()).decode()


def simd_path():
    """The SIMD path the GEMM engine uses now."""
    return fsgd_simd_name(fsgd_simd_get()).decode()


def simd_available():
    """Every SIMD path this CPU can run, as names accepted by :func:`set_simd`."""
    best = fsgd_simd_supported()
    return [k for k, v in SIMD_PATHS.items() if v <= best]


def set_simd(name):
    """Choose the GEMM engine's SIMD path ('generic', 'avx2', 'avx512')."""
    if name not in SIMD_PATHS:
        raise ValueError(f"SIMD path must be one of {sorted(SIMD_PATHS)}, got {name!r}")
    if fsgd_simd_set(SIMD_PATHS[name]) != FSGD_OK:
        raise ValueError(f"this CPU cannot run the {name!r} path; available: {simd_available()}")


# ---- helpers -------------------------------------------------------------
cdef inline void *_ptr(cnp.ndarray a) noexcept nogil:
    return cnp.PyArray_DATA(a)


cdef int _dtype_code(object dt) except -1:
    if dt == np.float32:
        return 0
    if dt == np.float64:
        return 1
    raise TypeError(f"expected float32 or float64, got {dt}")


def _require(a, name, dtype=None, ndim=None, writeable=False):
    """Check that ``a`` is a C-contiguous ndarray of a float dtype."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name} has dtype {a.dtype}; expected {np.dtype(dtype)} like the other operands")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if writeable and not a.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    return a


def _rows_index(rows, n_stored, name="a_rows"):
    if not isinstance(rows, np.ndarray) or rows.dtype != np.int64 or rows.ndim != 1:
        raise TypeError(f"{name} must be a 1-D int64 numpy array")
    if not rows.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if rows.size and (rows.min() < 0 or rows.max() >= n_stored):
        raise ValueError(f"{name} holds indices outside [0, {n_stored})")
    return rows


# ---- public kernels ------------------------------------------------------
def exp(cnp.ndarray x):
    """The exp approximation the activations and costs use (for testing)."""
    _require(x, "x")
    cdef cnp.ndarray out = np.empty_like(x)
    cdef int64_t n = x.size
    if x.dtype == np.float32:
        with nogil:
            fsgd_exp_f32(n, <const float *>_ptr(x), <float *>_ptr(out))
    else:
        with nogil:
            fsgd_exp_f64(n, <const double *>_ptr(x), <double *>_ptr(out))
    return out


def gemm(a, b, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None, a_rows=None):
    """``out = alpha * op(a) @ op(b) + beta * out``; see :func:`fastsgd.kernels.gemm`."""
    _require(a, "a", ndim=2)
    _require(b, "b", dtype=a.dtype, ndim=2)
    cdef bint ta = bool(trans_a), tb = bool(trans_b)
    cdef int64_t lda = a.shape[1], ldb = b.shape[1]
    cdef int64_t stored_rows = a.shape[0]
    cdef cnp.ndarray idx = None
    if a_rows is not None:
        idx = _rows_index(a_rows, stored_rows)
        stored_rows = idx.shape[0]
    cdef int64_t M = a.shape[1] if ta else stored_rows
    cdef int64_t K = stored_rows if ta else a.shape[1]
    cdef int64_t Kb = b.shape[1] if tb else b.shape[0]
    cdef int64_t N = b.shape[0] if tb else b.shape[1]
    if K != Kb:
        raise ValueError(
            f"gemm: inner dimensions differ: op(a) is {M}x{K}, op(b) is {Kb}x{N} "
            f"(a {tuple(a.shape)}, trans_a={ta}; b {tuple(b.shape)}, trans_b={tb})")
    for name, v in (("alpha", alpha), ("beta", beta)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"gemm: {name} must be a real number, got {v!r}")
    if out is None:
        if beta != 0:
            raise ValueError("gemm: beta != 0 needs an `out` array to accumulate into")
        out = np.empty((M, N), dtype=a.dtype)
    else:
        _require(out, "out", dtype=a.dtype, ndim=2, writeable=True)
        if out.shape[0] != M or out.shape[1] != N:
            raise ValueError(f"gemm: out has shape {tuple(out.shape)}, expected ({M}, {N})")
        if np.may_share_memory(out, a) or np.may_share_memory(out, b):
            raise ValueError("gemm: out must not share memory with a or b")
    cdef cnp.ndarray A = a, B = b, C = out
    cdef const int64_t *ip = <const int64_t *>_ptr(idx) if idx is not None else NULL
    cdef int nt = get_num_threads()
    cdef int st
    cdef double al = alpha, be = beta
    if a.dtype == np.float32:
        with nogil:
            st = fsgd_gemm_f32(nt, ta, tb, M, N, K, <float>al, <const float *>_ptr(A), lda, ip,
                               <const float *>_ptr(B), ldb, <float>be, <float *>_ptr(C), N)
    else:
        with nogil:
            st = fsgd_gemm_f64(nt, ta, tb, M, N, K, al, <const double *>_ptr(A), lda, ip,
                               <const double *>_ptr(B), ldb, be, <double *>_ptr(C), N)
    _check(st)
    return out


def _act_code(name):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def activation_forward(z, activation, slope=0.3):
    """Apply ``activation`` to the 2-D array ``z`` in place; returns ``z``."""
    _require(z, "z", ndim=2, writeable=True)
    cdef int act = _act_code(activation)
    cdef cnp.ndarray Z = z
    cdef int64_t r = z.shape[0], c = z.shape[1]
    cdef int nt = get_num_threads()
    cdef double s = slope
    if z.dtype == np.float32:
        with nogil:
            fsgd_act_forward_f32(nt, act, <float>s, r, c, <float *>_ptr(Z))
    else:
        with nogil:
            fsgd_act_forward_f64(nt, act, s, r, c, <double *>_ptr(Z))
    return z


def activation_backward(a, d, activation, slope=0.3):
    """Turn ``d`` = dL/dA into dL/dZ in place, given ``a`` = f(Z); returns ``d``."""
    _require(a, "a", ndim=2)
    _require(d, "d", dtype=a.dtype, ndim=2, writeable=True)
    if a.shape != d.shape:
        raise ValueError(f"a has shape {a.shape} but d has shape {d.shape}")
    cdef int act = _act_code(activation)
    cdef cnp.ndarray A = a, D = d
    cdef int64_t r = a.shape[0], c = a.shape[1]
    cdef int nt = get_num_threads()
    cdef double s = slope
    if a.dtype == np.float32:
        with nogil:
            fsgd_act_backward_f32(nt, act, <float>s, r, c, <const float *>_ptr(A), <float *>_ptr(D))
    else:
        with nogil:
            fsgd_act_backward_f64(nt, act, s, r, c, <const double *>_ptr(A), <double *>_ptr(D))
    return d


def dense_forward(x, w, b, activation="linear", slope=0.3, out=None, x_rows=None):
    """``out = f(x[x_rows] @ w + b)``, fused; returns ``out``."""
    _require(x, "x", ndim=2)
    _require(w, "w", dtype=x.dtype, ndim=2)
    _require(b, "b", dtype=x.dtype, ndim=1)
    cdef int64_t rows = x.shape[0]
    cdef cnp.ndarray idx = None
    if x_rows is not None:
        idx = _rows_index(x_rows, x.shape[0], "x_rows")
        rows = idx.shape[0]
    if w.shape[0] != x.shape[1]:
        raise ValueError(f"w has {w.shape[0]} rows but x has {x.shape[1]} columns")
    if b.shape[0] != w.shape[1]:
        raise ValueError(f"b has {b.shape[0]} entries but w has {w.shape[1]} columns")
    if out is None:
        out = np.empty((rows, w.shape[1]), dtype=x.dtype)
    else:
        _require(out, "out", dtype=x.dtype, ndim=2, writeable=True)
        if out.shape != (rows, w.shape[1]):
            raise ValueError(f"out has shape {out.shape}, expected {(rows, w.shape[1])}")
    cdef int act = _act_code(activation)
    cdef cnp.ndarray X = x, W = w, B = b, Z = out
    cdef const int64_t *ip = <const int64_t *>_ptr(idx) if idx is not None else NULL
    cdef int64_t n_in = w.shape[0], n_out = w.shape[1], ldx = x.shape[1]
    cdef int nt = get_num_threads(), st
    cdef double s = slope
    if x.dtype == np.float32:
        with nogil:
            st = fsgd_dense_forward_f32(nt, rows, n_in, n_out, <const float *>_ptr(X), ldx, ip,
                                        <const float *>_ptr(W), <const float *>_ptr(B), act,
                                        <float>s, <float *>_ptr(Z))
    else:
        with nogil:
            st = fsgd_dense_forward_f64(nt, rows, n_in, n_out, <const double *>_ptr(X), ldx, ip,
                                        <const double *>_ptr(W), <const double *>_ptr(B), act,
                                        s, <double *>_ptr(Z))
    _check(st)
    return out


def dense_backward(x, w, a, d, activation="linear", slope=0.3, need_dx=True, x_rows=None):
    """Fused backward pass of a dense layer.

    ``d`` holds dL/dA on entry and dL/dZ on exit. Returns ``(dW, db, dX)``
    (``dX`` is None when ``need_dx`` is false).
    """
    _require(x, "x", ndim=2)
    _require(w, "w", dtype=x.dtype, ndim=2)
    _require(a, "a", dtype=x.dtype, ndim=2)
    _require(d, "d", dtype=x.dtype, ndim=2, writeable=True)
    cdef int64_t rows = x.shape[0]
    cdef cnp.ndarray idx = None
    if x_rows is not None:
        idx = _rows_index(x_rows, x.shape[0], "x_rows")
        rows = idx.shape[0]
    if w.shape[0] != x.shape[1]:
        raise ValueError(f"w has {w.shape[0]} rows but x has {x.shape[1]} columns")
    if a.shape != (rows, w.shape[1]) or d.shape != a.shape:
        raise ValueError(f"a and d must have shape {(rows, w.shape[1])}, got {a.shape} and {d.shape}")
    cdef int act = _act_code(activation)
    cdef cnp.ndarray dW = np.empty_like(w), db = np.empty(w.shape[1], dtype=x.dtype)
    cdef cnp.ndarray dX = np.empty((rows, w.shape[0]), dtype=x.dtype) if need_dx else None
    cdef cnp.ndarray X = x, W = w, A = a, D = d
    cdef const int64_t *ip = <const int64_t *>_ptr(idx) if idx is not None else NULL
    cdef int64_t n_in = w.shape[0], n_out = w.shape[1], ldx = x.shape[1]
    cdef int nt = get_num_threads(), st
    cdef double s = slope
    cdef void *dxp = _ptr(dX) if dX is not None else NULL
    if x.dtype == np.float32:
        with nogil:
            st = fsgd_dense_backward_f32(nt, rows, n_in, n_out, <const float *>_ptr(X), ldx, ip,
                                         <const float *>_ptr(W), <const float *>_ptr(A), act,
                                         <float>s, <float *>_ptr(D), <float *>_ptr(dW),
                                         <float *>_ptr(db), <float *>dxp)
    else:
        with nogil:
            st = fsgd_dense_backward_f64(nt, rows, n_in, n_out, <const double *>_ptr(X), ldx, ip,
                                         <const double *>_ptr(W), <const double *>_ptr(A), act,
                                         s, <double *>_ptr(D), <double *>_ptr(dW),
                                         <double *>_ptr(db), <double *>dxp)
    _check(st)
    return dW, db, dX


def output_cost(z, y, cost, activation, slope=0.3):
    """Fused output activation + cost + gradient.

    ``z`` (pre-activations, rows x units) is overwritten with the
    activations. ``y`` is an int64 label vector or a float array shaped like
    ``z``. Returns ``(mean_loss, correct, dZ)``.
    """
    _require(z, "z", ndim=2, writeable=True)
    cdef int64_t rows = z.shape[0], cols = z.shape[1]
    cdef cnp.ndarray yi = None, yf = None
    if isinstance(y, np.ndarray) and y.dtype == np.int64:
        if y.shape != (rows,):
            raise ValueError(f"integer targets must have shape ({rows},), got {y.shape}")
        if rows and (y.min() < 0 or (cols > 1 and y.max() >= cols) or (cols == 1 and y.max() > 1)):
            raise ValueError("integer targets out of range")
        yi = np.ascontiguousarray(y)
    else:
        _require(y, "y", dtype=z.dtype, ndim=2)
        if y.shape != z.shape:
            raise ValueError(f"y has shape {y.shape}, expected {z.shape}")
        yf = y
    if cost not in COSTS:
        raise ValueError(f"unknown cost {cost!r}; valid: {', '.join(COSTS)}")
    cdef int c = COSTS[cost], act = _act_code(activation)
    if c == 1 and act != 5:
        raise ValueError("cross_entropy needs a softmax output")
    if c == 2 and act != 1:
        raise ValueError("binary_cross_entropy needs a sigmoid output")
    cdef cnp.ndarray Z = z, D = np.empty_like(z)
    cdef const int64_t *yip = <const int64_t *>_ptr(yi) if yi is not None else NULL
    cdef void *yfp = _ptr(yf) if yf is not None else NULL
    cdef double loss = 0.0, s = slope
    cdef int64_t correct = 0
    cdef int nt = get_num_threads(), st
    if z.dtype == np.float32:
        with nogil:
            st = fsgd_output_cost_f32(nt, c, act, <float>s, rows, cols, <float *>_ptr(Z), yip,
                                      <const float *>yfp, NULL, rows, <float *>_ptr(D), &loss,
                                      &correct)
    else:
        with nogil:
            st = fsgd_output_cost_f64(nt, c, act, s, rows, cols, <double *>_ptr(Z), yip,
                                      <const double *>yfp, NULL, rows, <double *>_ptr(D), &loss,
                                      &correct)
    _check(st)
    return loss / max(rows, 1), int(correct), D


def gather_rows(x, rows, out=None):
    """``out[i] = x[rows[i]]`` for a 2-D ``x`` and int64 ``rows``."""
    _require(x, "x", ndim=2)
    idx = _rows_index(rows, x.shape[0], "rows")
    if out is None:
        out = np.empty((idx.shape[0], x.shape[1]), dtype=x.dtype)
    else:
        _require(out, "out", dtype=x.dtype, ndim=2, writeable=True)
        if out.shape != (idx.shape[0], x.shape[1]):
            raise ValueError(f"out has shape {out.shape}, expected {(idx.shape[0], x.shape[1])}")
    cdef cnp.ndarray X = x, I = idx, O = out
    cdef int64_t n = idx.shape[0], cols = x.shape[1]
    cdef int nt = get_num_threads()
    if x.dtype == np.float32:
        with nogil:
            fsgd_gather_rows_f32(nt, n, cols, <const float *>_ptr(X), cols,
                                 <const int64_t *>_ptr(I), <float *>_ptr(O))
    else:
        with nogil:
            fsgd_gather_rows_f64(nt, n, cols, <const double *>_ptr(X), cols,
                                 <const int64_t *>_ptr(I), <double *>_ptr(O))
    return out


cdef fsgd_opt _opt_from(dict h) except *:
    cdef fsgd_opt o
    o.kind = OPTIMIZERS[h.get("kind", "sgd")]
    o.lr = h.get("lr", 0.01)
    o.momentum = h.get("momentum", 0.0)
    o.nesterov = bool(h.get("nesterov", False))
    o.beta_1 = h.get("beta_1", 0.9)
    o.beta_2 = h.get("beta_2", 0.999)
    o.rho = h.get("rho", 0.9)
    o.epsilon = h.get("epsilon", 1e-7)
    o.amsgrad = bool(h.get("amsgrad", False))
    o.centered = bool(h.get("centered", False))
    o.weight_decay = h.get("weight_decay", 0.0)
    o.l1 = h.get("l1", 0.0)
    o.l2 = h.get("l2", 0.0)
    o.step = h.get("step", 1)
    return o


def update(dict hyper, p, g, states=(), check=False):
    """One fused optimizer step on ``p`` in place (see :mod:`fastsgd.optimizers`).

    ``hyper`` holds the rule's settings (``kind``, ``lr``, ...), ``states``
    up to three arrays shaped like ``p``. With ``check`` only the gradient is
    read and nothing is written. Returns False when the step is refused (a
    gradient that is not finite or too large) or, without ``check``, when
    some element kept its old value because its new one would not be finite.
    """
    return UpdatePlan([p], [g], [list(states)]).run(hyper, check_only=bool(check)) == 0


cdef class UpdatePlan:
    """One optimizer step over many parameter arrays in a single nogil call.

    Built once for fixed lists of parameters, gradients and states (the
    arrays are kept alive here); :meth:`run` first checks every gradient,
    then steps every array.
    """
    cdef int n
    cdef int dt
    cdef void **p
    cdef void **g
    cdef void **s
    cdef int64_t *sizes
    cdef object keep

    def __cinit__(self, list params, list grads, list states):
        if not (len(params) == len(grads) == len(states)) or not params:
            raise ValueError("params, grads and states must be non-empty lists of equal length")
        self.n = len(params)
        self.dt = _dtype_code(params[0].dtype)
        self.p = <void **>calloc(self.n, sizeof(void *))
        self.g = <void **>calloc(self.n, sizeof(void *))
        self.s = <void **>calloc(3 * self.n, sizeof(void *))
        self.sizes = <int64_t *>calloc(self.n, sizeof(int64_t))
        if not (self.p and self.g and self.s and self.sizes):
            raise MemoryError()
        self.keep = []
        cdef cnp.ndarray arr
        for i in range(self.n):
            P, G, S = params[i], grads[i], list(states[i])
            _require(P, f"params[{i}]", dtype=params[0].dtype, writeable=True)
            _require(G, f"grads[{i}]", dtype=P.dtype)
            if G.shape != P.shape:
                raise ValueError(f"grads[{i}] has shape {G.shape} but params[{i}] has {P.shape}")
            if len(S) > 3:
                raise ValueError("at most three state arrays per parameter")
            for k, st in enumerate(S):
                _require(st, f"states[{i}][{k}]", dtype=P.dtype, writeable=True)
                if st.shape != P.shape:
                    raise ValueError(f"states[{i}][{k}] has the wrong shape")
                arr = st
                self.s[3 * i + k] = _ptr(arr)
            self.keep += [P, G] + S
            arr = P
            self.p[i] = _ptr(arr)
            arr = G
            self.g[i] = _ptr(arr)
            self.sizes[i] = P.size

    def __dealloc__(self):
        free(self.p)
        free(self.g)
        free(self.s)
        free(self.sizes)

    cdef int _one(self, int nt, const fsgd_opt *o, int check, int i) noexcept nogil:
        if self.dt == 0:
            return fsgd_update_f32(nt, o, check, self.sizes[i], <const float *>self.g[i],
                                   <float *>self.p[i], <float *>self.s[3 * i],
                                   <float *>self.s[3 * i + 1], <float *>self.s[3 * i + 2])
        return fsgd_update_f64(nt, o, check, self.sizes[i], <const double *>self.g[i],
                               <double *>self.p[i], <double *>self.s[3 * i],
                               <double *>self.s[3 * i + 1], <double *>self.s[3 * i + 2])

    def run(self, dict hyper, bint check_only=False):
        """Returns 0 (stepped), 1 (refused: a gradient is not finite or too
        large; nothing written) or 2 (stepped, but some elements kept their
        old value because their new one would not be finite). With
        ``check_only`` the step is only checked (0 or 1), never written."""
        cdef fsgd_opt o = _opt_from(hyper)
        cdef int nt = get_num_threads(), st = 0, i, result = 0
        with nogil:
            for i in range(self.n):
                if self._one(nt, &o, 1, i) != 0:
                    result = 1
                    break
            if result == 0 and not check_only:
                for i in range(self.n):
                    st = self._one(nt, &o, 0, i)
                    if st == FSGD_ERR_NONFINITE:
                        result = 2
                    elif st != 0:
                        result = -st
                        break
        if result < 0:
            _check(-result)
        return result


# ---- a whole network ---------------------------------------------------
cdef class Net:
    """Pointers to a network's owned buffers, for the per-batch C step.

    Built once per fit (or predict) by the trainer from arrays it owns; the
    arrays are kept alive here. ``layers`` is a list of dicts with keys
    W, b, dW, db, A, D (arrays), act (name), slope, l1, l2 and
    ``state`` (a list of two lists of up to three arrays: for W and b).
    """
    cdef fsgd_net net
    cdef fsgd_layer *layers
    cdef fsgd_opt opt
    cdef object keep
    cdef int dt
    cdef cnp.ndarray X
    cdef cnp.ndarray perm
    cdef cnp.ndarray y_int
    cdef cnp.ndarray y_float
    cdef int64_t ldx

    def __cinit__(self, list layers, int64_t capacity, cost, dtype):
        self.dt = _dtype_code(np.dtype(dtype))
        n = len(layers)
        if n < 1:
            raise ValueError("a network needs at least one layer")
        self.layers = <fsgd_layer *>calloc(n, sizeof(fsgd_layer))
        if self.layers == NULL:
            raise MemoryError()
        self.keep = []
        cdef cnp.ndarray arr
        cdef fsgd_layer *L
        for i, spec in enumerate(layers):
            L = &self.layers[i]
            W = spec["W"]
            L.n_in = W.shape[0]
            L.n_out = W.shape[1]
            L.act = _act_code(spec["act"])
            L.slope = spec.get("slope", 0.3)
            L.l1 = spec.get("l1", 0.0)
            L.l2 = spec.get("l2", 0.0)
            shapes = {"W": (L.n_in, L.n_out), "dW": (L.n_in, L.n_out), "b": (L.n_out,),
                      "db": (L.n_out,), "A": (capacity, L.n_out), "D": (capacity, L.n_out)}
            for key, shape in shapes.items():
                obj = spec[key]
                _require(obj, f"layers[{i}][{key!r}]", dtype=dtype, writeable=True)
                if obj.shape != shape:
                    raise ValueError(f"layers[{i}][{key!r}] has shape {obj.shape}, expected {shape}")
                self.keep.append(obj)
            if i > 0 and L.n_in != self.layers[i - 1].n_out:
                raise ValueError(f"layer {i} takes {L.n_in} inputs but layer {i-1} gives {self.layers[i-1].n_out}")
            L.W = _ptr(spec["W"]); L.b = _ptr(spec["b"])
            L.dW = _ptr(spec["dW"]); L.db = _ptr(spec["db"])
            L.A = _ptr(spec["A"]); L.D = _ptr(spec["D"])
            state = spec.get("state", [[], []])
            for which in range(2):
                ref = spec["W"] if which == 0 else spec["b"]
                for k in range(3):
                    if k < len(state[which]) and state[which][k] is not None:
                        obj = state[which][k]
                        _require(obj, "optimizer state", dtype=dtype, writeable=True)
                        if obj.shape != ref.shape:
                            raise ValueError("optimizer state has the wrong shape")
                        self.keep.append(obj)
                        arr = obj
                        L.state[which][k] = _ptr(arr)
                    else:
                        L.state[which][k] = NULL
        self.net.n_layers = n
        self.net.layers = self.layers
        self.net.capacity = capacity
        if cost not in COSTS:
            raise ValueError(f"unknown cost {cost!r}; valid: {', '.join(COSTS)}")
        self.net.cost = COSTS[cost]
        self.net.nthreads = get_num_threads()
        self.opt = _opt_from({"kind": "sgd", "lr": 0.0})

    def __dealloc__(self):
        free(self.layers)

    def set_threads(self, int n):
        self.net.nthreads = n if n > 0 else 1

    def set_optimizer(self, dict hyper):
        self.opt = _opt_from(hyper)

    def set_lr(self, double lr):
        self.opt.lr = lr

    @property
    def step(self):
        return self.opt.step

    @step.setter
    def step(self, int64_t s):
        self.opt.step = s

    def bind(self, X, y):
        """Point the next batches at ``X`` and targets ``y`` (checked once)."""
        _require(X, "X", ndim=2)
        if _dtype_code(X.dtype) != self.dt:
            raise TypeError("X dtype differs from the network's")
        if X.shape[1] != self.layers[0].n_in:
            raise ValueError(f"X has {X.shape[1]} features, the network takes {self.layers[0].n_in}")
        cdef int64_t n_out = self.layers[self.net.n_layers - 1].n_out
        if not isinstance(y, np.ndarray):
            raise TypeError("y must be a numpy array")
        if y.dtype == np.int64:
            if y.shape != (X.shape[0],) or not y.flags.c_contiguous:
                raise ValueError("integer targets must be a contiguous vector, one per row of X")
            self.y_int, self.y_float = y, None
        else:
            _require(y, "y", ndim=2)
            if _dtype_code(y.dtype) != self.dt or y.shape != (X.shape[0], n_out):
                raise ValueError(f"y must have shape {(X.shape[0], n_out)} and the network's dtype")
            self.y_int, self.y_float = None, y
        self.X = X
        self.ldx = X.shape[1]
        self.perm = None

    def set_order(self, perm):
        """Read the bound rows in the order ``perm`` (a permutation), or in
        data order when None."""
        if self.X is None:
            raise RuntimeError("bind() data first")
        if perm is not None:
            _rows_index(perm, self.X.shape[0], "perm")
            if perm.shape[0] != self.X.shape[0]:
                raise ValueError("perm must index every row once")
        self.perm = perm

    def train_batch(self, int64_t start, int64_t n, bint update=True):
        """Forward, cost, backward and optimizer step on rows [start, start+n) of
        the bound order. Returns ``(loss_sum, correct)``; raises NonFiniteError
        (parameters untouched) when the cost or the step is not finite."""
        return self._batch(start, n, 1 if update else 2)

    def eval_batch(self, int64_t start, int64_t n):
        """Forward and cost only. Returns ``(loss_sum, correct)``."""
        return self._batch(start, n, 0)

    cdef tuple _batch(self, int64_t start, int64_t n, int mode):
        if self.X is None:
            raise RuntimeError("bind() data first")
        if start < 0 or n < 1 or start + n > self.X.shape[0] or n > self.net.capacity:
            raise ValueError(f"batch [{start}, {start + n}) outside the data or the buffers")
        cdef const int64_t *rows = NULL
        cdef int64_t off = 0
        if self.perm is not None:
            rows = <const int64_t *>_ptr(self.perm) + start
        else:
            off = start
        cdef const int64_t *yi = NULL
        cdef void *yf = NULL
        cdef int64_t n_out = self.layers[self.net.n_layers - 1].n_out
        if self.y_int is not None:
            yi = <const int64_t *>_ptr(self.y_int) + off
        else:
            if self.dt == 0:
                yf = <void *>(<float *>_ptr(self.y_float) + off * n_out)
            else:
                yf = <void *>(<double *>_ptr(self.y_float) + off * n_out)
        cdef double loss = 0.0
        cdef int64_t correct = 0
        cdef int st
        cdef void *xp
        if self.dt == 0:
            xp = <void *>(<float *>_ptr(self.X) + off * self.ldx)
            with nogil:
                if mode == 0:
                    st = fsgd_net_eval_batch_f32(&self.net, n, <const float *>xp, self.ldx, rows,
                                                 yi, <const float *>yf, &loss, &correct)
                else:
                    st = fsgd_net_train_batch_f32(&self.net, &self.opt, mode == 1, n,
                                                  <const float *>xp, self.ldx, rows, yi,
                                                  <const float *>yf, &loss, &correct)
        else:
            xp = <void *>(<double *>_ptr(self.X) + off * self.ldx)
            with nogil:
                if mode == 0:
                    st = fsgd_net_eval_batch_f64(&self.net, n, <const double *>xp, self.ldx, rows,
                                                 yi, <const double *>yf, &loss, &correct)
                else:
                    st = fsgd_net_train_batch_f64(&self.net, &self.opt, mode == 1, n,
                                                  <const double *>xp, self.ldx, rows, yi,
                                                  <const double *>yf, &loss, &correct)
        _check(st)
        if mode == 1:
            self.opt.step += 1
        return loss, correct

    def predict_into(self, X, out):
        """Forward ``X`` in chunks of the buffer capacity into ``out``."""
        _require(X, "X", ndim=2)
        _require(out, "out", ndim=2, writeable=True)
        cdef int64_t n_out = self.layers[self.net.n_layers - 1].n_out
        if _dtype_code(X.dtype) != self.dt or _dtype_code(out.dtype) != self.dt:
            raise TypeError("X and out must have the network's dtype")
        if X.shape[1] != self.layers[0].n_in or out.shape != (X.shape[0], n_out):
            raise ValueError("X or out has the wrong shape")
        cdef cnp.ndarray Xa = X, Oa = out
        cdef int64_t total = X.shape[0], ldx = X.shape[1], cap = self.net.capacity
        cdef int64_t start = 0, m
        cdef int st = 0
        cdef size_t es = 4 if self.dt == 0 else 8
        cdef char *xp = <char *>_ptr(Xa)
        cdef char *op = <char *>_ptr(Oa)
        cdef void *last = self.layers[self.net.n_layers - 1].A
        with nogil:
            while start < total:
                m = total - start if total - start < cap else cap
                if self.dt == 0:
                    st = fsgd_net_forward_f32(&self.net, m, <const float *>(xp + start * ldx * es), ldx, NULL)
                else:
                    st = fsgd_net_forward_f64(&self.net, m, <const double *>(xp + start * ldx * es), ldx, NULL)
                if st != 0:
                    break
                memcpy(op + start * n_out * es, last, m * n_out * es)
                start += m
        _check(st)
        return out
