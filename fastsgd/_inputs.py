"""Training and prediction inputs of every kind, checked once and read batch
by batch.

:func:`prepare` looks at X once per fit (or predict) and decides how the
compiled network reads it, without copying what it does not have to:

* ``"direct"``: a C-contiguous, aligned array of the model's dtype (also a
  ``np.memmap`` or ``np.load(..., mmap_mode="r")``) and no input scaling: the
  GEMM reads the mini-batch's rows in place.
* ``"convert"``: any other real NumPy array -- uint8 images, other integer or
  float dtypes, memory maps of them, non-contiguous views. Each mini-batch's
  rows are gathered and converted into one batch buffer, with
  :class:`fastsgd.Rescaling` fused into that conversion. Nothing proportional
  to the data set is allocated.
* ``"rows"``: any other 2-D object that supports ``obj[sorted_int_array]`` and
  has ``shape`` (h5py and zarr datasets, or a small adapter of your own):
  the rows of a batch are fetched in increasing order, then converted.
* ``"csr"``: a ``scipy.sparse`` matrix (CSR; CSC and COO are converted
  once): the first layer works on the nonzeros.

Training data that is mostly zeros is faster through the sparse first layer
even when it comes as a dense array: :func:`dense_as_csr` converts an
in-memory ``"direct"`` or ``"convert"`` array into the ``"csr"`` form once
per fit (``Trainer(sparse_input=...)`` decides when; see
:data:`SPARSE_INPUT_MAX_DENSITY`).

Data that is read in place is checked for NaN and infinity once per fit (a float
array by the compiled pass that also counts each row's nonzeros for
:func:`dense_as_csr`); data converted per batch is checked per batch, and a bad
value raises ``ValueError`` naming its row before the batch touches any weight.
"""
import mmap
import numbers

import numpy as np

from ._validate import as_ndarray

#: rows checked at a time when an array is scanned for NaN and infinity
CHECK_CHUNK_ROWS = 8192

#: NumPy element types the batch conversion reads (name -> fsgd_in_kind code)
_KINDS = {np.dtype(np.uint8): 0, np.dtype(np.int8): 1, np.dtype(np.uint16): 2,
          np.dtype(np.int16): 3, np.dtype(np.int32): 4, np.dtype(np.int64): 5,
          np.dtype(np.float32): 6, np.dtype(np.float64): 7}


#: Dense training data whose fraction of nonzeros is at most this trains through the
#: sparse first layer under ``Trainer(sparse_input="auto")``. ``bench/sparse_threshold.py``
#: measures the break-even density of the book's nets (tables in bench/RESULTS.md, "Dense
#: input through the sparse path"): about 0.35 on a quiet 2-core Zen 4, 0.25 to 0.3 for the
#: Intermediate Net when the machine was busy. 0.25 keeps a margin, which also pays for the
#: conversion (about a third of an epoch) within a few epochs. Measure it again when the
#: sparse or the dense kernels change (the docstrings of Trainer and the estimators and
#: README.md quote it; tests/test_dense_sparse.py checks that they agree).
SPARSE_INPUT_MAX_DENSITY = 0.25

#: rows whose nonzeros are counted to estimate the density before a conversion starts
DENSITY_SAMPLE_ROWS = 1024

#: what ``sparse_input`` accepts
SPARSE_INPUT_CHOICES = ("auto", True, False)


class Inputs:
    """X as the compiled network will read it (see the module documentation)."""

    def __init__(self, mode, data, n_rows, n_features, *, kind=None, csr=None, scale=1.0,
                 offset=0.0, converted_from=None, row_nnz=None):
        self.mode = mode
        self.data = data            # the array or object rows are read from
        self.n_rows = n_rows
        self.n_features = n_features
        self.kind = kind            # element type code for "convert"
        self.csr = csr              # (indptr int64, indices int32, data) for "csr"
        self.scale = scale
        self.offset = offset
        self.converted_from = converted_from  # "csr" made from a dense array: its mode
        self.row_nnz = row_nnz      # "direct": the nonzeros of each row, when counted

    @property
    def shape(self):
        return (self.n_rows, self.n_features)

    def head(self, n):
        """The first ``n`` rows (a view where the source allows)."""
        return self._slice(0, n)

    def tail(self, n):
        """The last ``n`` rows."""
        return self._slice(self.n_rows - n, self.n_rows)

    def _slice(self, a, b):
        if self.mode == "csr":
            indptr, indices, data = self.csr
            lo, hi = indptr[a], indptr[b]
            part = (indptr[a:b + 1] - lo, indices[lo:hi], data[lo:hi])
            return Inputs("csr", None, b - a, self.n_features, csr=part, scale=self.scale,
                          offset=self.offset, converted_from=self.converted_from)
        return Inputs(self.mode, self.data[a:b], b - a, self.n_features, kind=self.kind,
                      scale=self.scale, offset=self.offset,
                      row_nnz=None if self.row_nnz is None else self.row_nnz[a:b])


def _is_sparse(X):
    return hasattr(X, "tocsr") and hasattr(X, "nnz") and type(X).__module__.startswith("scipy")


class NonFiniteRowError(ValueError):
    """Data holds NaN or infinity; ``row`` is the first row that does."""

    def __init__(self, name, row):
        super().__init__(f"{name} contains NaN or infinite values (row {row})")
        self.row = row


def _check_finite_counting(name, X):
    """The nonzeros of each row of the float array X read in place (int64), counted by the
    compiled pass that :func:`dense_as_csr` starts with, which also finds the first row
    holding NaN or infinity (ValueError naming it); None, after the chunked NumPy check,
    when the counts would take more than a quarter of X's bytes."""
    if X.shape[1] * X.itemsize < 32:
        _check_finite_chunked(name, X)
        return None
    from . import _ops
    counts = np.empty(X.shape[0], np.int64)
    bad = _ops.dense_csr_count(X, counts, X.dtype)
    if bad >= 0:
        raise NonFiniteRowError(name, bad)
    return counts


def _check_finite_chunked(name, X, row0=0):
    """Scan X for NaN/inf in chunks (no full-size temporary)."""
    if X.dtype.kind != "f":
        return
    for a in range(0, X.shape[0], CHECK_CHUNK_ROWS):
        chunk = X[a:a + CHECK_CHUNK_ROWS]
        if not np.isfinite(chunk).all():
            bad = a + int(np.flatnonzero(~np.isfinite(chunk).all(axis=1))[0])
            raise NonFiniteRowError(name, row0 + bad)


def _check_shape(name, shape, n_features):
    if len(shape) != 2:
        raise ValueError(f"{name} must be 2-D (samples, features), got shape {tuple(shape)}")
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise TypeError(f"{name} has shape {tuple(shape)}: its sizes must be integers")
        if d < 0:
            raise ValueError(f"{name} has shape {tuple(shape)}: its sizes must be >= 0")
    if shape[0] == 0:
        raise ValueError(f"{name} is empty: it has no samples")
    if shape[1] == 0:
        raise ValueError(f"{name} has no features")
    if n_features is not None and shape[1] != n_features:
        raise ValueError(f"{name} has {shape[1]} features per sample; the model takes {n_features}")


def _check_sparse_structure(name, X):
    """Refuse a CSR, CSC or COO matrix whose arrays disagree with each other or
    its shape (assigned by hand), before scipy's conversions or our kernel
    index memory with them."""
    fmt = getattr(X, "format", None)
    if fmt not in ("csr", "csc", "coo"):
        return
    n_rows, n_cols = X.shape

    def bad(why):
        return ValueError(f"{name} is not a valid {fmt.upper()} matrix ({why})")

    data = np.asarray(X.data)
    if fmt == "coo":
        parts = {"row": np.asarray(X.row), "col": np.asarray(X.col)}
        for key, idx in parts.items():
            if idx.ndim != 1 or idx.dtype.kind not in "iu" or idx.shape != data.shape:
                raise bad(f"{key} must be a 1-D integer array as long as data")
            bound = n_rows if key == "row" else n_cols
            if idx.size and (idx.min() < 0 or idx.max() >= bound):
                raise bad(f"{key} holds indices outside [0, {bound})")
        return
    major, minor = (n_rows, n_cols) if fmt == "csr" else (n_cols, n_rows)
    indptr, indices = np.asarray(X.indptr), np.asarray(X.indices)
    if indptr.ndim != 1 or indices.ndim != 1 or data.ndim != 1:
        raise bad("indptr, indices and data must be 1-D")
    if indptr.dtype.kind not in "iu" or indices.dtype.kind not in "iu":
        raise bad("indptr and indices must hold integers")
    if indptr.shape[0] != major + 1:
        raise bad(f"indptr has {indptr.shape[0]} entries, expected {major + 1}")
    if indices.shape[0] != data.shape[0]:
        raise bad(f"indices has {indices.shape[0]} entries but data has {data.shape[0]}")
    if indptr[0] != 0 or indptr[-1] > indices.shape[0] or (np.diff(indptr) < 0).any():
        raise bad("its indptr is inconsistent")
    nnz = int(indptr[-1])
    if nnz and (indices[:nnz].min() < 0 or indices[:nnz].max() >= minor):
        raise bad(f"indices outside [0, {minor})")


def _prepare_csr(name, X, dtype, n_features):
    _check_shape(name, X.shape, n_features)
    _check_sparse_structure(name, X)
    X = X.tocsr()
    if X.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
    if not X.has_sorted_indices:
        X = X.sorted_indices()
    nnz = int(X.indptr[-1])
    data = np.ascontiguousarray(X.data[:nnz], dtype=dtype)
    if not np.isfinite(data).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    indices = np.ascontiguousarray(X.indices[:nnz], dtype=np.int32)
    indptr = np.ascontiguousarray(X.indptr, dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= X.shape[1]):
        raise ValueError(f"{name} has column indices outside [0, {X.shape[1]})")
    if (indptr.shape[0] != X.shape[0] + 1 or indptr[0] != 0 or indptr[-1] != indices.size
            or data.shape[0] != indices.size or (np.diff(indptr) < 0).any()):
        raise ValueError(f"{name} is not a valid CSR matrix (its indptr is inconsistent)")
    return Inputs("csr", None, X.shape[0], X.shape[1], csr=(indptr, indices, data))


def prepare(name, X, dtype, n_features=None, *, scale=1.0, offset=0.0):
    """Check ``X`` once and choose how batches read it (see the module doc).

    Returns an :class:`Inputs`. Raises TypeError for non-numeric data and
    ValueError for a wrong shape or NaN/inf in data read in place.
    """
    dtype = np.dtype(dtype)
    if isinstance(X, Inputs):
        if n_features is not None and X.n_features != n_features:
            _check_shape(name, X.shape, n_features)
        return X
    if _is_sparse(X):
        if scale != 1.0 or offset != 0.0:
            raise ValueError(f"{name} is sparse: Rescaling with an offset would make it dense; "
                             f"scale the data beforehand")
        return _prepare_csr(name, X, dtype, n_features)
    if not isinstance(X, np.ndarray) and hasattr(X, "shape") and hasattr(X, "__getitem__") \
            and not isinstance(X, (list, tuple)):
        shape = tuple(X.shape)
        _check_shape(name, shape, n_features)
        dt = np.dtype(getattr(X, "dtype", np.float64))
        if dt.kind not in "fiu":
            raise TypeError(f"{name} must hold real numbers (float or int), got dtype {dt}")
        return Inputs("rows", X, shape[0], shape[1], scale=scale, offset=offset)
    X = as_ndarray(name, X, "a 2-D numpy array, a scipy.sparse matrix or a row-indexable dataset")
    if X.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers (float or int), got dtype {X.dtype}")
    _check_shape(name, X.shape, n_features)
    native = X.dtype.newbyteorder("=")
    if (X.dtype == dtype and X.flags.c_contiguous and X.flags.aligned and scale == 1.0
            and offset == 0.0):
        return Inputs("direct", X, X.shape[0], X.shape[1],
                      row_nnz=_check_finite_counting(name, X))
    if X.dtype.isnative and native in _KINDS and X.flags.aligned and X.strides[1] == X.itemsize \
            and X.strides[0] >= X.shape[1] * X.itemsize and X.strides[0] % X.itemsize == 0:
        return Inputs("convert", X, X.shape[0], X.shape[1], kind=_KINDS[native], scale=scale,
                      offset=offset)
    # anything else (a big-endian dtype, columns not contiguous): read as rows
    return Inputs("rows", X, X.shape[0], X.shape[1], scale=scale, offset=offset)


def check_sparse_input(value, name="sparse_input"):
    """``value`` if it is one of :data:`SPARSE_INPUT_CHOICES` (a NumPy bool is taken as a
    bool); TypeError or ValueError naming ``name`` otherwise."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str):
        if value == "auto":
            return value
        raise ValueError(f"{name} must be 'auto', True or False, got {value!r}")
    raise TypeError(f"{name} must be 'auto', True or False, got {type(value).__name__} "
                    f"{value!r}")


def _memory_mapped(a):
    """True when the memory of array ``a`` belongs to a file mapping (``np.memmap``,
    ``np.load(..., mmap_mode=...)``, a view of one, or an array over an ``mmap``)."""
    seen = 0
    while a is not None and seen < 64:
        if isinstance(a, (np.memmap, mmap.mmap)):
            return True
        a = a.obj if isinstance(a, memoryview) else getattr(a, "base", None)
        seen += 1
    return False


def dense_as_csr(name, inputs, dtype, sparse_input="auto", *, first_layer="dense"):
    """The training ``inputs`` in the ``"csr"`` form (made once, by the compiled two-pass
    conversion), or ``inputs`` unchanged.

    Only an in-memory NumPy array read ``"direct"`` or ``"convert"`` is converted (never a
    memory map, whose data may not fit in memory; never a row-indexable dataset), only
    without a Rescaling offset (which would make every zero nonzero) and only when
    ``first_layer`` (the kind of the model's first layer) is ``"dense"``, the one layer
    the sparse path feeds. The values are the ones the dense path computes,
    ``(dtype)x * (dtype)scale``; zeros are not stored.

    ``sparse_input``: False never converts; True always converts such an array; "auto"
    converts when at most :data:`SPARSE_INPUT_MAX_DENSITY` of the values are nonzero and
    the CSR arrays (indptr, indices, values) take no more bytes than the array itself.
    "auto" first counts the nonzeros of :data:`DENSITY_SAMPLE_ROWS` evenly spaced rows and
    stops when they are clearly too many (unless :func:`prepare` has counted every row while
    checking for NaN); it never allocates more than the array's size.

    Raises ValueError naming the first row that holds NaN or infinity when it converts.
    """
    if sparse_input is False or first_layer != "dense":
        return inputs
    if inputs.mode not in ("direct", "convert") or inputs.offset != 0.0:
        return inputs
    X = inputs.data
    if not isinstance(X, np.ndarray) or _memory_mapped(X):
        return inputs
    from . import _ops
    dtype = np.dtype(dtype)
    n, cols = X.shape
    if cols > np.iinfo(np.int32).max:
        return inputs
    auto = sparse_input == "auto"
    counted = inputs.row_nnz if inputs.mode == "direct" else None
    max_nnz = None
    if auto:
        room = X.nbytes - 8 * (n + 1)   # bytes left beside indptr for indices and values
        if room <= 0:
            return inputs
        max_nnz = min(SPARSE_INPUT_MAX_DENSITY * n * cols, room / (4 + dtype.itemsize))
        if n > 2 * DENSITY_SAMPLE_ROWS and counted is None:
            rows = np.linspace(0, n - 1, DENSITY_SAMPLE_ROWS).astype(np.int64)
            counts = np.empty(rows.shape[0], np.int64)
            _ops.dense_csr_count(X, counts, dtype, inputs.scale, rows)
            if int(counts.sum()) * (n / rows.shape[0]) > 1.25 * max_nnz:
                return inputs
    indptr = np.zeros(n + 1, np.int64)
    if counted is not None:     # counted (and checked) by prepare: X is in dtype, unscaled
        bad = -1
        np.cumsum(counted, out=indptr[1:])
    else:
        bad = _ops.dense_csr_count(X, indptr[1:], dtype, inputs.scale)
        np.cumsum(indptr[1:], out=indptr[1:])
    nnz = int(indptr[n])
    if auto and nnz > max_nnz:
        return inputs   # the dense path reads it (and reports a bad value where it does)
    if bad >= 0:
        raise NonFiniteRowError(name, bad)
    return Inputs("csr", None, n, cols,
                  csr=_ops.dense_csr_arrays(X, indptr, dtype, inputs.scale),
                  converted_from=inputs.mode)


def check_scale(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise TypeError(f"{name} must be a finite real number, got {value!r}")
    return float(value)
