# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Stateless kernel wrappers (the functions :mod:`fastsgd.kernels` exposes).

Each public ``def`` checks its arguments while holding the GIL, then calls one
fused ``_*_impl`` body (float32 or float64, chosen from the arrays' dtype)
that runs the C kernel with the GIL released.
"""
import numpy as np

cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int32_t, int64_t

from fastsgd cimport _core
from fastsgd._config cimport num_threads
from fastsgd._core import ACTIVATIONS, COSTS
from fastsgd._checks import code, real, require, require_disjoint, require_index
from fastsgd._inputs import _KINDS

cnp.import_array()


cdef inline const int64_t *_index_ptr(object idx):
    return <const int64_t *>cnp.PyArray_DATA(idx) if idx is not None else NULL


cdef inline floating *_data(floating[::1] flat) noexcept nogil:
    return &flat[0] if flat.shape[0] > 0 else NULL


cdef inline const floating *_cdata(const floating[::1] flat) noexcept nogil:
    return &flat[0] if flat.shape[0] > 0 else NULL


def _flat(a):
    """A 1-D view of a C-contiguous array (for the fused bodies); a subclass
    that stays 2-D when reshaped (numpy.matrix) is viewed as a plain array."""
    return np.asarray(a).reshape(-1)


# ---- exp ------------------------------------------------------------------------
def _exp_impl(const floating[::1] x, floating[::1] out):
    with nogil:
        _core.exp_approx(x.shape[0], _cdata(x), _data(out))


def exp(x):
    """The exp approximation the activations and costs use (for testing)."""
    require(x, "x")
    out = np.empty_like(x)
    _exp_impl(_flat(x), _flat(out))
    return out


# ---- GEMM -------------------------------------------------------------------------
def _gemm_impl(const floating[::1] a, const floating[::1] b, floating[::1] c, bint ta, bint tb,
               int64_t M, int64_t N, int64_t K, double alpha, double beta, int64_t lda,
               int64_t ldb, rows):
    cdef const int64_t *ip = _index_ptr(rows)
    cdef int nt = num_threads(), st
    with nogil:
        st = _core.gemm(nt, ta, tb, M, N, K, <floating>alpha, _cdata(a), lda, ip, _cdata(b),
                        ldb, <floating>beta, _data(c), N)
    _core.check_status(st)


def gemm(a, b, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None, a_rows=None):
    """``out = alpha * op(a) @ op(b) + beta * out``; see :func:`fastsgd.kernels.gemm`."""
    require(a, "a", ndim=2)
    require(b, "b", dtype=a.dtype, ndim=2)
    ta, tb = bool(trans_a), bool(trans_b)
    stored_rows = a.shape[0]
    if a_rows is not None:
        require_index(a_rows, stored_rows, "a_rows")
        stored_rows = a_rows.shape[0]
    M = a.shape[1] if ta else stored_rows
    K = stored_rows if ta else a.shape[1]
    Kb = b.shape[1] if tb else b.shape[0]
    N = b.shape[0] if tb else b.shape[1]
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
        require(out, "out", dtype=a.dtype, ndim=2, writeable=True)
        if out.shape[0] != M or out.shape[1] != N:
            raise ValueError(f"gemm: out has shape {tuple(out.shape)}, expected ({M}, {N})")
        require_disjoint(out, "gemm: out", a=a, b=b, a_rows=a_rows)
    _gemm_impl(_flat(a), _flat(b), _flat(out), ta, tb, M, N, K, float(alpha), float(beta),
               a.shape[1], b.shape[1], a_rows)
    return out


# ---- activations -------------------------------------------------------------------
def _act_impl(const floating[::1] a, floating[::1] d, int act, double slope, int64_t rows,
              int64_t cols, bint backward):
    cdef int nt = num_threads()
    with nogil:
        if backward:
            _core.act_backward(nt, act, <floating>slope, rows, cols, _cdata(a), _data(d))
        else:
            _core.act_forward(nt, act, <floating>slope, rows, cols, _data(d))


def activation_forward(z, activation, slope=0.3):
    """Apply ``activation`` to the 2-D array ``z`` in place; returns ``z``."""
    require(z, "z", ndim=2, writeable=True)
    act = code("activation", activation, ACTIVATIONS, "activation")
    _act_impl(_flat(z), _flat(z), act, real("slope", slope), z.shape[0], z.shape[1], False)
    return z


def activation_backward(a, d, activation, slope=0.3):
    """Turn ``d`` = dL/dA into dL/dZ in place, given ``a`` = f(Z); returns ``d``."""
    require(a, "a", ndim=2)
    require(d, "d", dtype=a.dtype, ndim=2, writeable=True)
    if a.shape != d.shape:
        raise ValueError(f"a has shape {a.shape} but d has shape {d.shape}")
    require_disjoint(d, "d", a=a)
    act = code("activation", activation, ACTIVATIONS, "activation")
    _act_impl(_flat(a), _flat(d), act, real("slope", slope), a.shape[0], a.shape[1], True)
    return d


# ---- the dense layer -----------------------------------------------------------------
def _dense_forward_impl(const floating[::1] x, const floating[::1] w, const floating[::1] b,
                        floating[::1] z, int64_t rows, int64_t n_in, int64_t n_out,
                        int64_t ldx, rows_idx, int act, double slope):
    cdef const int64_t *ip = _index_ptr(rows_idx)
    cdef int nt = num_threads(), st
    with nogil:
        st = _core.dense_forward(nt, rows, n_in, n_out, _cdata(x), ldx, ip, _cdata(w),
                                 _cdata(b), act, <floating>slope, _data(z))
    _core.check_status(st)


def _dense_backward_impl(const floating[::1] x, const floating[::1] w, const floating[::1] a,
                         floating[::1] d, floating[::1] dw, floating[::1] db, floating[::1] dx,
                         int64_t rows, int64_t n_in, int64_t n_out, int64_t ldx, rows_idx,
                         int act, double slope, bint need_dx):
    cdef const int64_t *ip = _index_ptr(rows_idx)
    cdef int nt = num_threads(), st
    with nogil:
        st = _core.dense_backward(nt, rows, n_in, n_out, _cdata(x), ldx, ip, _cdata(w),
                                  _cdata(a), act, <floating>slope, _data(d), _data(dw),
                                  _data(db), _data(dx) if need_dx else NULL)
    _core.check_status(st)


def _dense_args(x, w, x_rows):
    require(x, "x", ndim=2)
    require(w, "w", dtype=x.dtype, ndim=2)
    rows = x.shape[0]
    if x_rows is not None:
        require_index(x_rows, x.shape[0], "x_rows")
        rows = x_rows.shape[0]
    if w.shape[0] != x.shape[1]:
        raise ValueError(f"w has {w.shape[0]} rows but x has {x.shape[1]} columns")
    if w.shape[1] < 1:
        raise ValueError("w has no columns: a layer needs at least one unit")
    return rows


def dense_forward(x, w, b, activation="linear", slope=0.3, out=None, x_rows=None):
    """``out = f(x[x_rows] @ w + b)``, fused; returns ``out``."""
    rows = _dense_args(x, w, x_rows)
    require(b, "b", dtype=x.dtype, ndim=1)
    if b.shape[0] != w.shape[1]:
        raise ValueError(f"b has {b.shape[0]} entries but w has {w.shape[1]} columns")
    if out is None:
        out = np.empty((rows, w.shape[1]), dtype=x.dtype)
    else:
        require(out, "out", dtype=x.dtype, ndim=2, writeable=True)
        if out.shape != (rows, w.shape[1]):
            raise ValueError(f"out has shape {out.shape}, expected {(rows, w.shape[1])}")
        require_disjoint(out, "out", x=x, w=w, b=b, x_rows=x_rows)
    act = code("activation", activation, ACTIVATIONS, "activation")
    _dense_forward_impl(_flat(x), _flat(w), b, _flat(out), rows, w.shape[0], w.shape[1],
                        x.shape[1], x_rows, act, real("slope", slope))
    return out


def dense_backward(x, w, a, d, activation="linear", slope=0.3, need_dx=True, x_rows=None):
    """Fused backward pass of a dense layer.

    ``d`` holds dL/dA on entry and dL/dZ on exit. Returns ``(dW, db, dX)``
    (``dX`` is None when ``need_dx`` is false).
    """
    rows = _dense_args(x, w, x_rows)
    require(a, "a", dtype=x.dtype, ndim=2)
    require(d, "d", dtype=x.dtype, ndim=2, writeable=True)
    if a.shape != (rows, w.shape[1]) or d.shape != a.shape:
        raise ValueError(f"a and d must have shape {(rows, w.shape[1])}, got {a.shape} and "
                         f"{d.shape}")
    require_disjoint(d, "d", x=x, w=w, a=a, x_rows=x_rows)
    act = code("activation", activation, ACTIVATIONS, "activation")
    dW = np.empty_like(w)
    db = np.empty(w.shape[1], dtype=x.dtype)
    dX = np.empty((rows, w.shape[0]), dtype=x.dtype) if need_dx else None
    _dense_backward_impl(_flat(x), _flat(w), _flat(a), _flat(d), _flat(dW), db,
                         _flat(dX) if need_dx else db, rows, w.shape[0], w.shape[1],
                         x.shape[1], x_rows, act, real("slope", slope), bool(need_dx))
    return dW, db, dX


# ---- the output layer fused with its cost ------------------------------------------------
def _output_cost_impl(floating[::1] z, const floating[::1] y, floating[::1] d,
                      const floating[::1] w, y_int, int64_t rows, int64_t cols, int cost, int act,
                      double slope, double delta, bint weighted):
    cdef const int64_t *yip = _index_ptr(y_int)
    cdef double loss = 0.0
    cdef int64_t correct = 0
    cdef int nt = num_threads(), st
    with nogil:
        st = _core.output_cost(nt, cost, delta, act, <floating>slope, rows, cols, _data(z),
                               yip, _cdata(y) if yip == NULL else NULL, NULL, rows,
                               _cdata(w) if weighted else NULL, _data(d), &loss, &correct)
    _core.check_status(st)
    return loss, correct


def output_cost(z, y, cost, activation, slope=0.3, delta=1.0, sample_weight=None):
    """Fused output activation + cost + gradient.

    ``z`` (pre-activations, rows x units) is overwritten with the
    activations. ``y`` is an int64 label vector or a float array shaped like
    ``z``. ``delta`` is the Huber loss's (> 0). ``sample_weight`` (rows,),
    non-negative, makes the cost and its gradient the weighted mean. Returns
    ``(mean_loss, correct, dZ)``.
    """
    require(z, "z", ndim=2, writeable=True)
    rows, cols = z.shape
    if rows < 1:
        raise ValueError("z has no rows")
    if cols < 1:
        raise ValueError("z has no columns: the output layer needs at least one unit")
    c = code("cost", cost, COSTS, "cost")
    act = code("activation", activation, ACTIVATIONS, "activation")
    if cost == "cross_entropy" and activation != "softmax":
        raise ValueError("cross_entropy needs a softmax output")
    if cost == "cross_entropy" and cols < 2:
        raise ValueError("cross_entropy needs at least two output units (use "
                         "binary_cross_entropy with one sigmoid unit)")
    if cost == "binary_cross_entropy" and activation != "sigmoid":
        raise ValueError("binary_cross_entropy needs a sigmoid output")
    delta = real("delta", delta)
    if cost == "huber" and not (0.0 < delta < float("inf")):
        raise ValueError(f"delta must be a finite number > 0, got {delta}")
    y_int = None
    if isinstance(y, np.ndarray) and y.dtype == np.int64:
        if y.shape != (rows,):
            raise ValueError(f"integer targets must have shape ({rows},), got {y.shape}")
        if y.min() < 0 or (cols > 1 and y.max() >= cols) or (cols == 1 and y.max() > 1):
            raise ValueError("integer targets out of range")
        y_int = np.array(y)  # our own copy: nothing can change it under the kernel
        y = z  # unread: the labels are the targets
    else:
        require(y, "y", dtype=z.dtype, ndim=2)
        if y.shape != z.shape:
            raise ValueError(f"y has shape {y.shape}, expected {z.shape}")
        require_disjoint(z, "z", y=y)
    weights = z[0]   # unread unless weighted
    norm = rows
    if sample_weight is not None:
        weights = np.asarray(sample_weight)
        if weights.dtype.kind not in "fiub":
            raise TypeError(f"sample_weight must hold real numbers, got dtype {weights.dtype}")
        with np.errstate(over="ignore"):
            weights = np.array(weights, dtype=z.dtype, copy=True)
        if weights.shape != (rows,):
            raise ValueError(f"sample_weight must have shape ({rows},), got {weights.shape}")
        if not np.isfinite(weights).all() or (weights < 0).any():
            raise ValueError("sample_weight must hold finite, non-negative numbers")
        norm = float(weights.sum(dtype=np.float64)) or 1.0
    D = np.empty_like(z)
    loss, correct = _output_cost_impl(_flat(z), _flat(y), _flat(D), weights, y_int, rows, cols,
                                      c, act, real("slope", slope), delta,
                                      sample_weight is not None)
    return loss / norm, int(correct), D


# ---- gather ----------------------------------------------------------------------------
def _gather_impl(const floating[::1] x, floating[::1] out, idx, int64_t n, int64_t cols):
    cdef const int64_t *ip = _index_ptr(idx)
    cdef int nt = num_threads()
    with nogil:
        _core.gather_rows(nt, n, cols, _cdata(x), cols, ip, _data(out))


def gather_rows(x, rows, out=None):
    """``out[i] = x[rows[i]]`` for a 2-D ``x`` and int64 ``rows``."""
    require(x, "x", ndim=2)
    require_index(rows, x.shape[0], "rows")
    shape = (rows.shape[0], x.shape[1])
    if out is None:
        out = np.empty(shape, dtype=x.dtype)
    else:
        require(out, "out", dtype=x.dtype, ndim=2, writeable=True)
        if out.shape != shape:
            raise ValueError(f"out has shape {out.shape}, expected {shape}")
        require_disjoint(out, "out", x=x, rows=rows)
    _gather_impl(_flat(x), _flat(out), rows, shape[0], shape[1])
    return out


# ---- dense rows into CSR ----------------------------------------------------------------
def _dense_source(x, name):
    """``(kind, ldx)``: the fsgd_in_kind code of ``x`` and its row stride in elements, for a
    2-D array whose rows the conversion reads in place (any row stride, contiguous columns)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {x.shape}")
    kind = _KINDS.get(x.dtype) if x.dtype.isnative else None
    if kind is None:
        raise TypeError(f"{name} must hold one of {', '.join(d.name for d in _KINDS)} in native "
                        f"byte order, got {x.dtype}")
    n, cols = x.shape
    size = x.itemsize
    if cols > 2 ** 31 - 1:
        raise ValueError(f"{name} has {cols} columns; CSR column indices are int32")
    if x.size == 0:
        return kind, cols
    if not x.flags.aligned:
        raise ValueError(f"{name} is not aligned to its dtype (copy it, e.g. with np.array)")
    if cols > 1 and x.strides[1] != size:
        raise ValueError(f"{name} must have contiguous columns (strides {x.strides})")
    ldx = cols
    if n > 1:
        if x.strides[0] % size or x.strides[0] < cols * size:
            raise ValueError(f"{name} must have its rows in increasing order, a whole number "
                             f"of elements and at least a row apart (strides {x.strides}); "
                             f"copy it with np.ascontiguousarray")
        ldx = x.strides[0] // size
    return kind, ldx


def _csr_dtype(dtype):
    try:
        dt = np.dtype(dtype) if dtype is not None else None
    except TypeError:
        dt = None
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    return dt


def _scale(scale):
    s = real("scale", scale)
    if not np.isfinite(s):
        raise ValueError(f"scale must be a finite number, got {s}")
    return s


def dense_csr_count(x, counts, dtype, scale=1.0, rows=None):
    """Pass 1 of :func:`dense_to_csr`: ``counts[i]`` = the nonzeros of row ``i`` of ``x``
    (of row ``rows[i]`` with an int64 ``rows``) converted to ``dtype`` and scaled.

    Returns the first ``i`` whose row holds a value that is NaN or infinite after the
    conversion, or -1.
    """
    kind, ldx = _dense_source(x, "x")
    dtype = _csr_dtype(dtype)
    n = x.shape[0]
    if rows is not None:
        require_index(rows, x.shape[0], "rows")
        n = rows.shape[0]
    if (not isinstance(counts, np.ndarray) or counts.dtype != np.int64 or counts.shape != (n,)
            or not counts.flags.c_contiguous or not counts.flags.writeable):
        raise TypeError(f"counts must be a writeable C-contiguous int64 array of shape ({n},)")
    require_disjoint(counts, "counts", x=x, rows=rows)
    cdef double s = _scale(scale)
    cdef const int64_t *ip = _index_ptr(rows)
    cdef const void *src = cnp.PyArray_DATA(x)
    cdef int64_t *cp = <int64_t *>cnp.PyArray_DATA(counts)
    cdef int64_t nn = n, nc = x.shape[1], ld = ldx, bad
    cdef int k = kind, nt = num_threads()
    cdef bint f64 = dtype == np.float64
    with nogil:
        if f64:
            bad = _core.dense_csr_count(<double *>NULL, nt, k, nn, nc, src, ld, ip, s, cp)
        else:
            bad = _core.dense_csr_count(<float *>NULL, nt, k, nn, nc, src, ld, ip, s, cp)
    if bad < -1:
        raise ValueError("dense_csr_count: bad arguments")
    return int(bad)


def _fill_impl(floating[::1] data, x, int kind, int64_t ldx, double scale, indptr, indices):
    cdef const void *src = cnp.PyArray_DATA(x)
    cdef const int64_t *pp = <const int64_t *>cnp.PyArray_DATA(indptr)
    cdef int32_t *jp = <int32_t *>cnp.PyArray_DATA(indices)
    cdef int64_t n = x.shape[0], cols = x.shape[1]
    cdef int nt = num_threads(), st
    with nogil:
        st = _core.dense_csr_fill(nt, kind, n, cols, src, ldx, scale, pp, jp, _data(data))
    return st


def dense_csr_fill(x, indptr, indices, data, scale=1.0):
    """Pass 2 of :func:`dense_to_csr`: the column indices and values of every row of ``x``
    into ``indices`` (int32) and ``data`` (float32 or float64) from ``indptr[row]``, where
    ``indptr`` (int64, ``n + 1``) is the prefix sum of :func:`dense_csr_count`'s counts.

    Raises ValueError when a row's nonzeros do not match its ``indptr`` range (``x``
    changed since it was counted).
    """
    kind, ldx = _dense_source(x, "x")
    n = x.shape[0]
    for arr, name, dt, size in ((indptr, "indptr", np.int64, n + 1),
                                (indices, "indices", np.int32, None)):
        if (not isinstance(arr, np.ndarray) or arr.dtype != dt or arr.ndim != 1
                or not arr.flags.c_contiguous or not arr.flags.aligned):
            raise TypeError(f"{name} must be a C-contiguous 1-D {np.dtype(dt).name} array")
        if size is not None and arr.shape[0] != size:
            raise ValueError(f"{name} has {arr.shape[0]} entries, expected {size}")
    require(data, "data", ndim=1, writeable=True)
    if not indices.flags.writeable:
        raise ValueError("indices must be writeable")
    nnz = indices.shape[0]
    if data.shape[0] != nnz:
        raise ValueError(f"data has {data.shape[0]} entries but indices has {nnz}")
    if indptr[0] != 0 or indptr[n] != nnz or (n and (np.diff(indptr) < 0).any()):
        raise ValueError("indptr must rise from 0 to len(indices)")
    require_disjoint(indices, "indices", x=x, indptr=indptr)
    require_disjoint(data, "data", x=x, indptr=indptr, indices=indices)
    st = _fill_impl(data, x, kind, ldx, _scale(scale), indptr, indices)
    if st != 0:
        raise ValueError("x changed between counting and filling: a row's nonzeros do not "
                         "match indptr")


def dense_to_csr(x, dtype="float32", scale=1.0):
    """``(indptr, indices, data)``: the nonzeros of ``x`` (any real dtype the network reads)
    converted to ``dtype`` and scaled, ``(dtype)x * (dtype)scale``, as CSR arrays (indptr
    int64, indices int32 ascending within each row); values that convert to zero are not
    stored. ValueError naming the first row with a value that is NaN or infinite."""
    _dense_source(x, "x")
    dtype = _csr_dtype(dtype)
    _scale(scale)
    n = x.shape[0]
    indptr = np.zeros(n + 1, np.int64)
    bad = dense_csr_count(x, indptr[1:], dtype, scale)
    if bad >= 0:
        raise ValueError(f"x contains NaN or infinite values (row {bad})")
    np.cumsum(indptr[1:], out=indptr[1:])
    return dense_csr_arrays(x, indptr, dtype, scale)


def dense_csr_arrays(x, indptr, dtype, scale=1.0):
    """``(indptr, indices, data)`` for ``x`` whose per-row nonzeros ``indptr`` already holds
    (the prefix sum of :func:`dense_csr_count`'s counts): the arrays allocated and filled by
    :func:`dense_csr_fill`."""
    nnz = int(indptr[indptr.shape[0] - 1])
    indices = np.empty(nnz, np.int32)
    data = np.empty(nnz, _csr_dtype(dtype))
    dense_csr_fill(x, indptr, indices, data, scale)
    return indptr, indices, data


# ---- one optimizer step -------------------------------------------------------------------
def update(dict hyper, p, g, states=(), check=False):
    """One optimizer step on ``p`` in place (see :mod:`fastsgd.optimizers`).

    ``hyper`` holds the rule's settings (``kind``, ``lr``, ..., ``step`` and
    the penalties ``l1``, ``l2``); ``states`` up to three arrays shaped like
    ``p``: the rule's state slots. The step is all or nothing: returns False,
    with nothing written, when any new value would be NaN or infinite. With
    ``check`` the step is tried on copies and never written.
    """
    from fastsgd._net import Update
    require(p, "p", writeable=True)
    require(g, "g", dtype=p.dtype)
    if g.shape != p.shape:
        raise ValueError(f"g has shape {g.shape} but p has {p.shape}")
    try:
        states = list(states)
    except TypeError:
        raise TypeError(f"states must be a sequence of arrays, got "
                        f"{type(states).__name__}") from None
    require_disjoint(g, "g", p=p)
    for k, s in enumerate(states):
        require(s, f"states[{k}]", dtype=p.dtype, writeable=True)
        if s.shape != p.shape:
            raise ValueError(f"states[{k}] has shape {s.shape} but p has {p.shape}")
        require_disjoint(s, f"states[{k}]", p=p, g=g,
                         **{f"states[{j}]": states[j] for j in range(k)})
    l1, l2 = real("l1", hyper.get("l1", 0.0)), real("l2", hyper.get("l2", 0.0))
    if check:
        p, states = p.copy(), [s.copy() for s in states]
    step = Update(_flat(p), _flat(g), [_flat(s) for s in states], [(0, p.size, l1, l2, True)])
    step.configure(hyper, slots_name="states")
    return step.run()
