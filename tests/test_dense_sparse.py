"""Dense input trained through the sparse first layer: the compiled dense-to-CSR
conversion against a NumPy reference."""
import numpy as np
import pytest

import fastsgd
from fastsgd import kernels as K
from fastsgd._ops import dense_csr_count, dense_csr_fill

from conftest import DTYPES

KINDS = [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.int64, np.float32, np.float64]


def reference_csr(x, dtype, scale=1.0):
    """What the conversion computes, in NumPy: v = (dtype)x * (dtype)scale, zeros left out."""
    v = x.astype(dtype) * np.dtype(dtype).type(scale)
    keep = v != 0
    indptr = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int64)
    return indptr, np.nonzero(keep)[1].astype(np.int32), v[keep]


def assert_bits(got, want):
    """The three CSR arrays equal bit for bit (values compared as integers)."""
    for g, w, name in zip(got, want, ("indptr", "indices", "data")):
        assert g.dtype == w.dtype, name
        g, w = np.ascontiguousarray(g), np.ascontiguousarray(w)
        if g.dtype.kind == "f":
            g, w = g.view(f"u{g.itemsize}"), w.view(f"u{w.itemsize}")
        np.testing.assert_array_equal(g, w, err_msg=name)


def mostly_zero(rng, kind, n, cols, density=0.2):
    """Values of ``kind`` with about ``density`` nonzeros, plus the edge rows: an empty
    row, a full row, and (float kinds) negative zeros and values that convert to zero."""
    kind = np.dtype(kind)
    if kind.kind == "f":
        vals = rng.standard_normal((n, cols)) * 50
    else:
        info = np.iinfo(kind)
        vals = rng.integers(max(info.min, -1000), min(info.max, 1000), (n, cols), endpoint=True)
    x = np.where(rng.random((n, cols)) < density, vals, 0).astype(kind)
    x[min(1, n - 1)] = 0                                   # an empty row
    if n > 3:
        full = vals[2].astype(kind)
        full[full == 0] = 1
        x[2] = full                                        # a full row
    if kind.kind == "f" and n > 4:
        x[3, ::3] = -0.0                                   # negative zeros: not stored
        x[4, ::4] = 1e-300 if kind == np.float64 else 1e-44  # underflows in float32
    if kind.kind == "i" and n > 5:
        x[5, : cols // 2] = -1                             # negative values are kept
    return x


# ---- the compiled conversion ------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: np.dtype(k).name)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("cols", [1, 7, 9, 40, 515, 1100])
def test_conversion_equals_numpy(kind, dtype, cols, rng):
    x = mostly_zero(rng, kind, 37, cols)
    for scale in (1.0, 1 / 255, -2.5):
        assert_bits(K.dense_to_csr(x, dtype, scale), reference_csr(x, dtype, scale))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_underflow_and_negative_zero_are_not_stored(dtype):
    x = np.array([[0.0, -0.0, 1e-300, 2.0, -0.0, -3.0]])
    indptr, indices, data = K.dense_to_csr(x, dtype)
    if dtype == np.float32:    # 1e-300 is 0 in float32
        assert indices.tolist() == [3, 5] and data.tolist() == [2.0, -3.0]
    else:
        assert indices.tolist() == [2, 3, 5] and data.tolist() == [1e-300, 2.0, -3.0]
    assert indptr.tolist() == [0, len(indices)]
    # a scale of 0 stores nothing
    assert K.dense_to_csr(x, dtype, 0.0)[0].tolist() == [0, 0]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_all_zero_empty_and_one_column(dtype):
    indptr, indices, data = K.dense_to_csr(np.zeros((5, 9), np.uint8), dtype)
    assert indptr.tolist() == [0] * 6 and indices.size == 0 and data.size == 0
    assert data.dtype == dtype and indices.dtype == np.int32 and indptr.dtype == np.int64
    indptr, indices, data = K.dense_to_csr(np.zeros((0, 4), np.float32), dtype)
    assert indptr.tolist() == [0] and indices.size == 0
    assert_bits(K.dense_to_csr(np.array([[0], [3], [0]], np.int16), dtype),
                reference_csr(np.array([[0], [3], [0]], np.int16), dtype))


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: np.dtype(k).name)
def test_rows_with_a_row_stride(kind, rng):
    """A view of the left columns of a wider array (rows further apart than their width)."""
    wide = mostly_zero(rng, kind, 50, 100)
    x = wide[:, :61]
    assert x.strides[0] == 100 * x.itemsize
    for dtype in DTYPES:
        assert_bits(K.dense_to_csr(x, dtype, 0.5), reference_csr(x, dtype, 0.5))


@pytest.mark.parametrize("kind", [np.float32, np.float64], ids=lambda k: np.dtype(k).name)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_non_finite_values_name_the_first_bad_row(kind, dtype, rng):
    x = mostly_zero(rng, kind, 300, 50)
    x[211, 7] = np.inf
    x[97, 49] = np.nan
    x[150, 0] = -np.inf
    with pytest.raises(ValueError, match=r"NaN or infinite values \(row 97\)"):
        K.dense_to_csr(x, dtype)
    counts = np.empty(300, np.int64)
    assert dense_csr_count(x, counts, dtype) == 97


def test_values_that_overflow_the_dtype_are_not_finite():
    x = np.zeros((4, 3))
    x[2, 1] = 1e300                      # finite in float64, infinite in float32
    assert K.dense_to_csr(x, np.float64)[2].tolist() == [1e300]
    with pytest.raises(ValueError, match=r"row 2"):
        K.dense_to_csr(x, np.float32)
    big = np.zeros((3, 2), np.int64)
    big[1, 0] = 2 ** 62                  # times 1e30 overflows float32 but not float64
    with pytest.raises(ValueError, match=r"row 1"):
        K.dense_to_csr(big, np.float32, 1e30)
    assert K.dense_to_csr(big, np.float64, 1e30)[2].tolist() == [float(2 ** 62) * 1e30]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_bits_identical_for_1_2_and_3_threads_and_every_simd_path(dtype, simd, rng):
    x = mostly_zero(rng, np.uint8, 1200, 333, density=0.3)
    want = reference_csr(x, dtype, 1 / 255)
    for threads in (1, 2, 3):
        fastsgd.set_num_threads(threads)
        assert_bits(K.dense_to_csr(x, dtype, 1 / 255), want)


def test_count_of_sampled_rows(rng):
    x = mostly_zero(rng, np.float64, 200, 30)
    rows = np.array([5, 0, 199, 5, 3], np.int64)
    counts = np.full(5, -7, np.int64)
    assert dense_csr_count(x, counts, np.float32, 1.0, rows) == -1
    np.testing.assert_array_equal(counts, (x[rows].astype(np.float32) != 0).sum(axis=1))


def test_fill_refuses_data_that_changed_since_it_was_counted(rng):
    """A row with more nonzeros than its indptr range is refused, and nothing is written
    outside the arrays' ranges."""
    x = mostly_zero(rng, np.float32, 64, 40)
    indptr, indices, data = K.dense_to_csr(x, np.float32)
    nnz = indices.size
    idx_buf = np.full(nnz + 64, -5, np.int32)
    val_buf = np.full(nnz + 64, 7.0, np.float32)
    x2 = x.copy()
    x2[63] = 1.0                                     # the last row gains nonzeros
    with pytest.raises(ValueError, match="changed"):
        dense_csr_fill(x2, indptr, idx_buf[:nnz], val_buf[:nnz])
    assert (idx_buf[nnz:] == -5).all() and (val_buf[nnz:] == 7.0).all()
    x3 = x.copy()
    x3[10] = 0.0                                     # a row loses its nonzeros
    if indptr[11] > indptr[10]:
        with pytest.raises(ValueError, match="changed"):
            dense_csr_fill(x3, indptr, indices.copy(), data.copy())


@pytest.mark.parametrize("bad,exc,match", [
    (np.zeros((3, 2), np.complex128), TypeError, "x must hold"),
    (np.zeros((3, 2), bool), TypeError, "x must hold"),
    (np.zeros((3, 2), ">f4"), TypeError, "native byte order"),
    (np.zeros(6), ValueError, "2-D"),
    (np.zeros((4, 6))[:, ::2], ValueError, "contiguous columns"),
    (np.zeros((4, 6))[::-1], ValueError, "increasing order"),
    ([[0.0, 1.0]], TypeError, "numpy.ndarray"),
])
def test_conversion_bad_inputs(bad, exc, match):
    with pytest.raises(exc, match=match):
        K.dense_to_csr(bad)


@pytest.mark.parametrize("dtype", ["int32", None, "float16", "nonsense"])
def test_conversion_dtype_must_be_a_float(dtype):
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        K.dense_to_csr(np.zeros((2, 2)), dtype)
