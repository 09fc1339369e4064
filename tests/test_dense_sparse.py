"""Dense input trained through the sparse first layer: the compiled dense-to-CSR
conversion against a NumPy reference, and the trainer's ``sparse_input`` switch
(when it converts, what it never converts, and that a converted fit is the fit
of the same data given as a scipy.sparse matrix)."""
import numpy as np
import pytest

import fastsgd
from fastsgd import SGD, Adam, BatchNormalization, Dense, Dropout, Rescaling, Sequential, Trainer, _inputs
from fastsgd import kernels as K
from fastsgd._ops import dense_csr_count, dense_csr_fill

from conftest import DTYPES, tol

sp = pytest.importorskip("scipy.sparse")

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


# ---- the trainer's switch ------------------------------------------------------------------
def sparse_data(rng, n=300, d=40, density=0.1, dtype=np.float32):
    X = (rng.standard_normal((n, d)) * (rng.random((n, d)) < density)).astype(dtype)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    return X, y


def net(dtype="float32", d=40, first=None, rescale=None, seed=3):
    layers = ([first] if first is not None else []) + [Dense(16, "relu", input_dim=d),
                                                     Dense(3, "softmax")]
    if rescale is not None:
        layers.insert(0, rescale)
    return Sequential(layers, dtype=dtype, seed=seed)


def fit(X, y, m=None, sparse_input="auto", epochs=2, **kw):
    m = net(d=X.shape[1]) if m is None else m
    tr = Trainer(m, "cross_entropy", Adam(0.01), batch_size=32, seed=1, sparse_input=sparse_input)
    tr.fit(X, y, epochs=epochs, verbose=0, **kw)
    return m.get_weights(), tr.input_mode


def same(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a, b))


@pytest.fixture
def conversions(monkeypatch):
    """Every call of the conversion decision: (rows, mode before, mode after)."""
    calls = []
    original = _inputs.dense_as_csr

    def spy(name, inputs, *args, **kw):
        out = original(name, inputs, *args, **kw)
        calls.append((inputs.n_rows, inputs.mode, out.mode))
        return out

    monkeypatch.setattr(_inputs, "dense_as_csr", spy)
    return calls


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_auto_fit_equals_the_scipy_sparse_fit_bit_for_bit(dtype, rng):
    X, y = sparse_data(rng, dtype=dtype)
    name = np.dtype(dtype).name
    got, mode = fit(X, y, net(name))
    want, want_mode = fit(sp.csr_matrix(X), y, net(name))
    assert (mode, want_mode) == ("dense->csr", "csr")
    assert same(got, want)
    dense, dense_mode = fit(X, y, net(name), sparse_input=False)
    assert dense_mode == "direct" and not same(got, dense)   # another summation order
    for p, q in zip(got, dense):
        np.testing.assert_allclose(p, q, **tol(dtype, 50))


def test_converted_uint8_with_rescaling_equals_the_scaled_sparse_floats(rng):
    X = np.where(rng.random((256, 40)) < 0.15, rng.integers(1, 256, (256, 40)), 0).astype(np.uint8)
    y = rng.integers(0, 3, 256)
    got, mode = fit(X, y, net(rescale=Rescaling(1 / 255)), sparse_input=True)
    scaled = X.astype(np.float32) * np.float32(1 / 255)
    want, _ = fit(sp.csr_matrix(scaled), y, net())
    assert mode == "dense->csr" and same(got, want)


def test_a_converted_fit_is_the_same_for_1_2_and_3_threads(rng):
    X, y = sparse_data(rng, n=600, d=120)
    runs = []
    for threads in (1, 2, 3):
        fastsgd.set_num_threads(threads)
        runs.append(fit(X, y))
    assert all(mode == "dense->csr" for _, mode in runs)
    assert same(runs[0][0], runs[1][0]) and same(runs[0][0], runs[2][0])


@pytest.mark.parametrize("n", [500, 5000], ids=["every row counted", "rows sampled first"])
def test_auto_follows_the_density(n, rng):
    thr = _inputs.SPARSE_INPUT_MAX_DENSITY
    below, _ = sparse_data(rng, n=n, d=30, density=thr * 0.6)
    above, _ = sparse_data(rng, n=n, d=30, density=min(thr * 1.6, (thr + 1) / 2))
    y = np.arange(n) % 3
    assert fit(below, y, epochs=1)[1] == "dense->csr"
    assert fit(above, y, epochs=1)[1] == "direct"
    assert fit(above, y, epochs=1, sparse_input=True)[1] == "dense->csr"
    assert fit(below, y, epochs=1, sparse_input=False)[1] == "direct"


def test_dense_data_is_judged_from_a_sample_of_rows(monkeypatch, rng):
    """Data converted per batch (here uint8) that is clearly too dense costs a count of
    DENSITY_SAMPLE_ROWS rows only. Floats read in place are counted whole once, by the
    pass that checks them for NaN, and that count serves the conversion too."""
    from fastsgd import _ops
    calls = []
    original = _ops.dense_csr_count

    def spy(x, counts, dtype, scale=1.0, rows=None):
        calls.append((x.dtype.name, None if rows is None else rows.shape[0]))
        return original(x, counts, dtype, scale, rows)

    monkeypatch.setattr(_ops, "dense_csr_count", spy)
    X, y = sparse_data(rng, n=5000, d=20, density=0.9)
    X8 = (X != 0).astype(np.uint8)
    assert fit(X8, y, epochs=1)[1] == "convert"
    assert calls == [("uint8", _inputs.DENSITY_SAMPLE_ROWS)]
    calls.clear()
    X, y = sparse_data(rng, n=5000, d=20, density=0.05)
    X8 = (X != 0).astype(np.uint8)
    assert fit(X8, y, epochs=1)[1] == "dense->csr"
    assert calls == [("uint8", _inputs.DENSITY_SAMPLE_ROWS), ("uint8", None)]
    for density, mode in [(0.9, "direct"), (0.05, "dense->csr")]:
        calls.clear()
        X, y = sparse_data(rng, n=5000, d=20, density=density)
        assert fit(X, y, epochs=1)[1] == mode
        assert calls == [("float32", None)]                # one pass: NaN check and count


def test_a_validation_split_converts_the_counted_training_rows(rng):
    """The rows held out by validation_split leave the per-row counts of the rest in step:
    the same weights as the training rows given as scipy CSR beside explicit validation
    data."""
    X, y = sparse_data(rng, n=400)
    got, mode = fit(X, y, validation_split=0.25)
    want, want_mode = fit(sp.csr_matrix(X[:300]), y[:300], validation_data=(X[300:], y[300:]))
    assert (mode, want_mode) == ("dense->csr", "csr")
    assert same(got, want)


def test_auto_converts_up_to_the_threshold_exactly(monkeypatch):
    X = np.zeros((40, 10), np.float64)
    X[:, :3] = 1.0                         # exactly 30% nonzero
    y = np.arange(40) % 3
    m = net("float64", d=10)
    monkeypatch.setattr(_inputs, "SPARSE_INPUT_MAX_DENSITY", 0.3)
    assert fit(X, y, m, epochs=1)[1] == "dense->csr"
    monkeypatch.setattr(_inputs, "SPARSE_INPUT_MAX_DENSITY", 0.29)
    assert fit(X, y, m, epochs=1)[1] == "direct"


def test_auto_never_takes_more_memory_than_the_array(monkeypatch, rng):
    """uint8 images at 20% density: as float32 CSR they would take 1.6 bytes per pixel."""
    X = np.where(rng.random((300, 40)) < 0.2, 200, 0).astype(np.uint8)
    y = np.arange(300) % 3
    monkeypatch.setattr(_inputs, "SPARSE_INPUT_MAX_DENSITY", 1.0)
    assert fit(X, y, epochs=1)[1] == "convert"
    assert fit(X, y, epochs=1, sparse_input=True)[1] == "dense->csr"
    x5 = np.where(rng.random((300, 40)) < 0.05, 200, 0).astype(np.uint8)  # 0.4 bytes per pixel
    assert fit(x5, y, epochs=1)[1] == "dense->csr"


def test_dense_ish_data_with_sparse_input_true(rng):
    X, y = sparse_data(rng, density=0.9)
    got, mode = fit(X, y, sparse_input=True)
    want, want_mode = fit(X, y, sparse_input=False)
    assert (mode, want_mode) == ("dense->csr", "direct")
    for p, q in zip(got, want):
        np.testing.assert_allclose(p, q, **tol(np.float32, 50))


def test_memory_maps_are_never_converted(tmp_path, rng):
    X, y = sparse_data(rng)
    np.save(tmp_path / "x.npy", X)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    for data in (mm, np.asarray(mm), mm[:, :], np.memmap(tmp_path / "x.npy", mode="r",
                                                          dtype=np.uint8)):
        if data.dtype == np.uint8:
            data = data[-X.nbytes:].view(np.float32).reshape(X.shape)   # the .npy's payload
        assert _inputs._memory_mapped(data)
        got, mode = fit(data, y, sparse_input=True)
        assert mode == "direct"
        assert same(got, fit(X, y, sparse_input=False)[0])
    assert not _inputs._memory_mapped(X) and not _inputs._memory_mapped(X[:, :5])


def test_rescaling_with_an_offset_is_not_converted(rng):
    X, y = sparse_data(rng)
    for sparse_input in ("auto", True):
        m = net(rescale=Rescaling(2.0, offset=0.5))
        assert fit(X, y, m, sparse_input=sparse_input)[1] == "convert"
    m = net(rescale=Rescaling(2.0))   # a scale alone is applied in the conversion
    assert fit(X, y, m, sparse_input=True)[1] == "dense->csr"


@pytest.mark.parametrize("first", [lambda: Dropout(0.1), lambda: BatchNormalization()],
                         ids=["dropout", "batch_norm"])
def test_a_first_layer_that_is_not_dense_is_not_converted(first, rng):
    X, y = sparse_data(rng)
    m = Sequential([first(), Dense(16, "relu"), Dense(3, "softmax")], seed=0)
    m.build(40)
    assert fit(X, y, m, sparse_input=True)[1] == "direct"


def test_row_datasets_and_streams_are_not_converted(rng):
    X, y = sparse_data(rng)

    class Rows:
        def __init__(self, a):
            self.a, self.shape, self.dtype = a, a.shape, a.dtype

        def __getitem__(self, idx):
            return self.a[idx]

    assert fit(Rows(X), y, sparse_input=True)[1] == "rows"
    tr = Trainer(net(), "cross_entropy", SGD(0.1), sparse_input=True)
    tr.fit([(X[:100], y[:100]), (X[100:], y[100:])], verbose=0)
    assert tr.input_mode == "stream"


def test_only_the_training_rows_are_converted(conversions, rng):
    X, y = sparse_data(rng, n=400)
    tr = Trainer(net(), "cross_entropy", SGD(0.1), batch_size=32)
    tr.fit(X, y, validation_split=0.25, verbose=0)
    assert conversions == [(300, "direct", "csr")]      # the held-out 100 rows stay dense
    tr.fit(X, y, validation_data=(X[:50], y[:50]), verbose=0)
    assert conversions[1:] == [(400, "direct", "csr")]
    tr.evaluate(X, y)
    tr.model.predict(X)
    tr.gradients(X[:20], y[:20])
    assert len(conversions) == 2


def test_a_bad_value_in_converted_data_names_its_row_and_keeps_the_weights(rng):
    X, y = sparse_data(rng, dtype=np.float64)     # read through the per-batch conversion
    X[123, 4] = np.nan
    m = net()
    before = m.get_weights()
    with pytest.raises(ValueError, match=r"row 123"):
        fit(X, y, m)
    assert same(m.get_weights(), before)


@pytest.mark.parametrize("value,exc", [("yes", ValueError), ("Auto", ValueError),
                                       (None, TypeError), (1, TypeError), (0.5, TypeError),
                                       ("", ValueError)])
def test_bad_switch_values_are_refused(value, exc):
    with pytest.raises(exc, match="sparse_input must be 'auto', True or False"):
        Trainer(net(), "mse", "sgd", sparse_input=value)


def test_numpy_bools_are_taken():
    assert Trainer(net(), "mse", "sgd", sparse_input=np.True_).sparse_input is True


def test_the_docs_quote_the_threshold():
    """The threshold is measured again when the kernels change: the numbers the docs give
    must follow it."""
    import os

    def flat(text):
        return " ".join(text.split())

    thr = _inputs.SPARSE_INPUT_MAX_DENSITY
    assert f"SPARSE_INPUT_MAX_DENSITY`` ({thr:g}) of the values" in flat(Trainer.__doc__)
    estimators = pytest.importorskip("fastsgd.estimators")
    assert f"at most {thr:.0%} of its values" in flat(estimators.MLPClassifier.__doc__)
    readme = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")
    if os.path.exists(readme):
        with open(readme, encoding="utf-8") as f:
            assert f"at most {thr:.0%} of its values are nonzero" in flat(f.read())
