"""Every kind of training data: uint8 with Rescaling, memory maps, row-indexable
datasets, sparse matrices, streamed sources, chunk-ordered shuffling and
partial_fit; and their bad inputs."""
import numpy as np
import pytest

import fastsgd
from fastsgd import SGD, Adam, Dense, LambdaCallback, Rescaling, Sequential, Trainer, _feeds

from conftest import DTYPES, tol


def images(rng, n=300, d=20):
    X = rng.integers(0, 256, (n, d), dtype=np.uint8)
    y = (X[:, 0] > 127).astype(np.int64) + (X[:, 1] > 127)
    return X, y


def model(dtype="float32", rescale=None, seed=4, d=20):
    layers = [Dense(16, "relu", input_dim=d), Dense(3, "softmax")]
    if rescale is not None:
        layers.insert(0, Rescaling(rescale))
    return Sequential(layers, dtype=dtype, seed=seed)


def train(m, X, y, **kw):
    opts = dict(batch_size=32, seed=1)
    opts.update(kw)
    Trainer(m, "cross_entropy", Adam(0.01), **opts).fit(X, y, epochs=2, verbose=0)
    return m.get_weights()


def assert_same(a, b):
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p, q)


def test_uint8_with_rescaling_equals_floats_bit_for_bit(rng):
    X, y = images(rng)
    got = train(model(rescale=1 / 255), X, y)
    want = train(model(), X.astype(np.float32) * np.float32(1 / 255), y)
    assert_same(got, want)
    m = model(rescale=1 / 255)
    np.testing.assert_array_equal(m.predict(X), model().predict(X.astype(np.float32) * np.float32(1 / 255)))


@pytest.mark.parametrize("dtype", [np.int16, np.int64, np.float64, ">f4"])
def test_other_dtypes_are_converted_per_batch(dtype, rng):
    X, y = images(rng)
    got = train(model(), X.astype(dtype), y)
    want = train(model(), X.astype(np.float32), y)
    assert_same(got, want)


def test_memory_maps_equal_arrays_in_memory(tmp_path, rng):
    X, y = images(rng)
    for arr in (X, X.astype(np.float32)):
        np.save(tmp_path / "x.npy", arr)
        mm = np.load(tmp_path / "x.npy", mmap_mode="r")
        assert_same(train(model(rescale=0.5), mm, y), train(model(rescale=0.5), arr, y))


class RowDataset:
    """A minimal row-indexable dataset (the shape h5py and zarr datasets have)."""

    def __init__(self, a):
        self.a, self.shape, self.dtype = a, a.shape, a.dtype
        self.reads = 0

    def __getitem__(self, idx):
        idx = np.asarray(idx)
        assert (np.diff(idx) > 0).all(), "rows are asked for in increasing order"
        self.reads += 1
        return self.a[idx]


def test_row_indexable_dataset_equals_array(rng):
    X, y = images(rng)
    ds = RowDataset(X)
    assert_same(train(model(), ds, y), train(model(), X, y))
    assert ds.reads >= 2 * 10


def test_a_nan_in_a_later_batch_names_the_row_and_keeps_the_weights(rng):
    X, y = images(rng, n=96)
    Xf = X.astype(np.float64)   # read through the per-batch conversion (float32 model)
    Xf[70, 3] = np.nan
    m = model()
    before = m.get_weights()
    tr = Trainer(m, "cross_entropy", SGD(0.01), batch_size=32, shuffle=False)
    with pytest.raises(ValueError, match="row 70"):
        tr.fit(Xf, y, verbose=0)
    ref = model()
    Trainer(ref, "cross_entropy", SGD(0.01), batch_size=32, shuffle=False).fit(
        Xf[:64], y[:64], verbose=0)
    assert_same(m.get_weights(), ref.get_weights())   # the two good batches, nothing more
    assert not all((a == b).all() for a, b in zip(m.get_weights(), before))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_equals_dense(dtype, rng):
    sp = pytest.importorskip("scipy.sparse")
    X = rng.standard_normal((200, 30)) * (rng.random((200, 30)) < 0.2)
    y = rng.integers(0, 3, 200)
    name = np.dtype(dtype).name
    for fmt in ("csr", "csc", "coo"):
        got = train(model(name, d=30), sp.random(1, 1).__class__(X) if fmt == "coo" else
                    getattr(sp, f"{fmt}_matrix")(X), y)
        want = train(model(name, d=30), X.astype(dtype), y)
        for p, q in zip(got, want):
            np.testing.assert_allclose(p, q, **tol(dtype, 50))
    m = model(name, d=30)
    np.testing.assert_allclose(m.predict(sp.csr_matrix(X)), m.predict(X.astype(dtype)),
                               **tol(dtype, 10))


def test_sparse_is_bit_identical_across_thread_counts(rng):
    sp = pytest.importorskip("scipy.sparse")
    X = sp.random(400, 50, density=0.2, random_state=3, format="csr", dtype=np.float32)
    y = rng.integers(0, 3, 400)
    runs = []
    for threads in (1, 2, 3):
        fastsgd.set_num_threads(threads)
        m = Sequential([Dense(64, "relu", input_dim=50), Dense(3, "softmax")], seed=2)
        runs.append(train(m, X, y, batch_size=128))
    assert_same(runs[0], runs[1])
    assert_same(runs[0], runs[2])


def test_sparse_bad_input(rng):
    sp = pytest.importorskip("scipy.sparse")
    m = model(d=20)
    tr = Trainer(m, "cross_entropy", SGD(0.1))
    with pytest.raises(ValueError, match="features"):
        tr.fit(sp.random(10, 21, density=0.3, format="csr"), np.zeros(10, np.int64), verbose=0)
    bad = sp.random(10, 20, density=0.3, format="csr")
    bad.data[0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        tr.fit(bad, np.zeros(10, np.int64), verbose=0)
    with pytest.raises(ValueError, match="Rescaling"):
        Trainer(model(rescale=2.0), "cross_entropy", SGD(0.1)).fit(
            sp.random(10, 20, density=0.3, format="csr"), np.zeros(10, np.int64), verbose=0)


def test_partial_fit_over_halves_equals_fit_over_the_whole(rng):
    X, y = images(rng, n=256)
    a, b = model(rescale=1 / 255), model(rescale=1 / 255)
    ta = Trainer(a, "cross_entropy", Adam(0.01), batch_size=32, shuffle=False)
    logs = [ta.partial_fit(X[:128], y[:128]), ta.partial_fit(X[128:], y[128:])]
    assert all("loss" in entry for entry in logs)
    Trainer(b, "cross_entropy", Adam(0.01), batch_size=32, shuffle=False).fit(X, y, verbose=0)
    assert ta.optimizer.iterations == 8
    assert_same(a.get_weights(), b.get_weights())


def chunks_of(X, y, size):
    return [(X[i:i + size], y[i:i + size]) for i in range(0, len(X), size)]


def test_a_stream_in_order_equals_the_array(rng):
    X, y = images(rng, n=250)
    a, b = model(rescale=1 / 255), model(rescale=1 / 255)
    Trainer(a, "cross_entropy", Adam(0.01), batch_size=32, shuffle=False,
            shuffle_buffer=64).fit(chunks_of(X, y, 50), epochs=2, verbose=0)
    Trainer(b, "cross_entropy", Adam(0.01), batch_size=32, shuffle=False).fit(
        X, y, epochs=2, verbose=0)
    assert_same(a.get_weights(), b.get_weights())


class Recorder:
    """Stands in for the compiled network: records the rows each bind serves."""

    def __init__(self):
        self.served = []

    def bind(self, X, t, w=None):
        self.X = X


def test_a_stream_serves_every_sample_once_per_epoch(rng):
    n = 1003
    X = np.arange(n, dtype=np.float64).reshape(-1, 1)
    y = np.zeros(n, np.int64)
    net = Recorder()
    feed = _feeds.StreamFeed(net, lambda: iter(chunks_of(X, y, 37)),
                             lambda a, b, k: (a, b), 16, True, np.random.default_rng(0), 100)
    for epoch in range(2):
        seen, sizes = [], []
        for start, nb, _ in feed.epoch(epoch):
            seen.extend(net.X[start:start + nb, 0].tolist())
            sizes.append(nb)
        assert sorted(seen) == list(range(n))            # each sample once
        assert seen != list(range(n))                    # shuffled
        assert all(s == 16 for s in sizes[:-1]) and sizes[-1] == n % 16   # partial last batch
        assert feed.n_batches == -(-n // 16)


def test_stream_from_a_generator_function_with_validation_and_callbacks(rng):
    X, y = images(rng, n=200)
    batches = []

    def source():
        yield from chunks_of(X, y, 64)

    m = model(rescale=1 / 255)
    h = Trainer(m, "cross_entropy", Adam(0.01), batch_size=32).fit(
        source, epochs=3, verbose=0, validation_data=(X[:50], y[:50]),
        callbacks=[LambdaCallback(on_batch_end=lambda b, logs: batches.append(logs["size"]))])
    assert len(h.history["val_loss"]) == 3 and sum(batches) == 3 * 200


@pytest.mark.parametrize("source,match", [
    (lambda X, y: [(X[:10], y[:9])], "9"),
    (lambda X, y: [(X[:10], y[:10]), (X[:10, :5], y[:10])], "shape"),
    (lambda X, y: [], "no samples"),
    (lambda X, y: iter([(X[:10], y[:10])]), "one-shot"),
    (lambda X, y: [("abc", y[:1])], "X"),
    (lambda X, y: [X[:10]], "pair"),
])
def test_bad_sources(source, match, rng):
    X, y = images(rng, n=40)
    tr = Trainer(model(), "cross_entropy", SGD(0.1), batch_size=8)
    with pytest.raises((ValueError, TypeError), match=match):
        tr.fit(source(X, y), epochs=2, verbose=0)


def test_chunk_ordered_shuffle_is_a_permutation_that_stays_local():
    rng = np.random.default_rng(0)
    perm = _feeds.chunk_permutation(rng, 10_000, 100, 4)
    assert sorted(perm.tolist()) == list(range(10_000))
    for g in range(0, 10_000, 400):   # every group of 400 rows comes from 4 chunks
        assert len(np.unique(perm[g:g + 400] // 100)) <= 4


def test_chunk_shuffle_trains(rng):
    X, y = images(rng, n=300)
    m = model(rescale=1 / 255)
    h = Trainer(m, "cross_entropy", Adam(0.01), batch_size=32, shuffle="chunks",
                chunk_rows=50, buffer_chunks=2).fit(X, y, epochs=3, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]


def test_mnist_as_uint8_with_rescaling_trains_like_the_floats():
    from fastsgd.datasets import load_mnist
    (Xu, y), _ = load_mnist(dtype="uint8")
    (Xf, _), _ = load_mnist()
    assert Xu.dtype == np.uint8 and Xu.shape == (60000, 784) and Xu.nbytes * 4 == Xf.nbytes
    np.testing.assert_array_equal(Xu[:100].astype(np.float32) / np.float32(255), Xf[:100])
    # the same path for both: dense rows, or both converted to CSR (under "auto" only the
    # float32 copy would be converted: as CSR the uint8 images take more memory)
    for sparse_input in (False, True):
        a = Sequential([Rescaling(1 / 255), Dense(16, "relu", input_dim=784),
                        Dense(10, "softmax")], seed=0)
        b = Sequential([Dense(16, "relu", input_dim=784), Dense(10, "softmax")], seed=0)
        ta = Trainer(a, "cross_entropy", SGD(0.1), batch_size=128, seed=0,
                     sparse_input=sparse_input)
        ta.fit(Xu[:2000], y[:2000], verbose=0)
        tb = Trainer(b, "cross_entropy", SGD(0.1), batch_size=128, seed=0,
                     sparse_input=sparse_input)
        tb.fit(Xu[:2000].astype(np.float32) * np.float32(1 / 255), y[:2000], verbose=0)
        expect = ("dense->csr",) * 2 if sparse_input else ("convert", "direct")
        assert (ta.input_mode, tb.input_mode) == expect
        assert_same(a.get_weights(), b.get_weights())
    with pytest.raises(ValueError, match="dtype"):
        load_mnist(dtype="int8")


# ---- sample and class weights --------------------------------------------------------
def test_zero_weights_equal_dropping_those_rows(rng):
    X, y = images(rng, n=96)
    keep = np.ones(96, bool)
    keep[1::4] = False          # one row in each group of 4
    w = keep.astype(np.float64)
    a, b = model(rescale=1 / 255, dtype="float64"), model(rescale=1 / 255, dtype="float64")
    ha = Trainer(a, "cross_entropy", Adam(0.01), batch_size=8, shuffle=False).fit(
        X, y, epochs=2, sample_weight=w, verbose=0)
    hb = Trainer(b, "cross_entropy", Adam(0.01), batch_size=6, shuffle=False).fit(
        X[keep], y[keep], epochs=2, verbose=0)
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-12)


def test_weights_scale_the_cost_as_a_weighted_mean(rng):
    from _reference import network_forward
    X, y = images(rng, n=50)
    w = rng.random(50) * 3
    m = model(rescale=1 / 255, dtype="float64")
    tr = Trainer(m, "cross_entropy", SGD(0.1))
    p = network_forward(m, X.astype(np.float64) / 255)   # Rescaling, written out
    rows = -np.log(p[np.arange(50), y])
    got = tr.evaluate(X, y, sample_weight=w)["loss"]
    assert got == pytest.approx(np.sum(w * rows) / np.sum(w), rel=1e-10)
    assert tr.evaluate(X, y)["loss"] == pytest.approx(rows.mean(), rel=1e-10)


def test_class_weight_balanced_equals_its_sample_weights(rng):
    X, y = images(rng, n=120)
    counts = np.bincount(y, minlength=3)
    w = 120 / (3 * counts[y])
    a, b = model(rescale=1 / 255), model(rescale=1 / 255)
    Trainer(a, "cross_entropy", Adam(0.01), batch_size=16, seed=3).fit(
        X, y, class_weight="balanced", verbose=0)
    Trainer(b, "cross_entropy", Adam(0.01), batch_size=16, seed=3).fit(
        X, y, sample_weight=w, verbose=0)
    assert_same(a.get_weights(), b.get_weights())
    c = model(rescale=1 / 255)
    Trainer(c, "cross_entropy", Adam(0.01), batch_size=16, seed=3).fit(
        X, y, class_weight={0: 2.0, 1: 1.0, 2: 0.5}, sample_weight=np.full(120, 2.0), verbose=0)
    d = model(rescale=1 / 255)
    Trainer(d, "cross_entropy", Adam(0.01), batch_size=16, seed=3).fit(
        X, y, sample_weight=2.0 * np.array([2.0, 1.0, 0.5])[y], verbose=0)
    assert_same(c.get_weights(), d.get_weights())


def test_weighted_validation_triple_and_streams(rng):
    X, y = images(rng, n=64)
    w = np.linspace(0.5, 2, 64)
    tr = Trainer(model(rescale=1 / 255), "cross_entropy", Adam(0.01), batch_size=16,
                 shuffle=False)
    h = tr.fit(X, y, validation_data=(X, y, w), verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(
        tr.evaluate(X, y, sample_weight=w)["loss"], rel=1e-6)
    a, b = model(rescale=1 / 255), model(rescale=1 / 255)
    Trainer(a, "cross_entropy", Adam(0.01), batch_size=16, shuffle=False).fit(
        [(X[i:i + 32], y[i:i + 32], w[i:i + 32]) for i in (0, 32)], verbose=0)
    Trainer(b, "cross_entropy", Adam(0.01), batch_size=16, shuffle=False).fit(
        X, y, sample_weight=w, verbose=0)
    assert_same(a.get_weights(), b.get_weights())


@pytest.mark.parametrize("kw,exc,match", [
    ({"sample_weight": -np.ones(40)}, ValueError, "non-negative"),
    ({"sample_weight": np.ones(39)}, ValueError, "shape"),
    ({"sample_weight": np.full(40, np.nan)}, ValueError, "finite"),
    ({"class_weight": "even"}, ValueError, "balanced"),
    ({"class_weight": [1, 2]}, TypeError, "class_weight"),
    ({"class_weight": {0: -1.0}}, ValueError, "class_weight"),
])
def test_bad_weights(kw, exc, match, rng):
    X, y = images(rng, n=40)
    m = model()
    before = m.get_weights()
    with pytest.raises(exc, match=match):
        Trainer(m, "cross_entropy", SGD(0.1)).fit(X, y, verbose=0, **kw)
    assert_same(m.get_weights(), before)


def test_sparse_input_needs_a_dense_first_layer(rng):
    sp = pytest.importorskip("scipy.sparse")
    m = Sequential([fastsgd.Dropout(0.1), Dense(3, "softmax", input_dim=20)], seed=0)
    m.build(20)
    with pytest.raises(ValueError, match="Dense first layer"):
        m.predict(sp.random(5, 20, density=0.3, format="csr"))
