"""The dense layer fed by a CSR matrix (csrc/sparse_tmpl.h) on every SIMD path:
sparse input predicts and trains as the same data dense, gives the same bits
for any thread count, and its C entry points refuse indices out of range."""
import ctypes

import numpy as np
import pytest

import fastsgd
from fastsgd import SGD, Dense, Sequential, Trainer, _core, _net, costs
from fastsgd._network import build_plan

from conftest import DTYPES, tol, watch_nets

sp = pytest.importorskip("scipy.sparse")

#: first-layer widths: narrower than a vector, one AVX-512 float vector, widths with
#: a partial last vector, and widths that fill blocks of 4 and 8 vectors
WIDTHS = [3, 16, 37, 64, 130]


def sparse_data(rng, n, d, density):
    X = rng.standard_normal((n, d)) * (rng.random((n, d)) < density)
    X[3] = 0                          # an empty row
    X[5] = rng.standard_normal(d)     # a full row
    X[:, [0, 1, d - 1]] = 0           # columns without a nonzero: their rows of dW are zero
    return X


def with_duplicates_and_zeros(X, rng):
    """A CSR matrix equal to X whose rows hold some column twice (the value split in two)
    and some explicit zeros, its indices unsorted."""
    rows, data, cols = [], [], []
    for row in X:
        nz = np.flatnonzero(row)
        zeros = np.flatnonzero(row == 0)[:2]
        r_cols = list(nz) + list(zeros)
        r_data = list(row[nz]) + [0.0] * len(zeros)
        for j in nz[:3]:              # the first nonzeros appear twice, split 1/4 + 3/4
            r_cols.append(j)
            r_data.append(0.75 * row[j])
            r_data[list(r_cols).index(j)] = 0.25 * row[j]
        order = rng.permutation(len(r_cols))
        rows.append(len(r_cols))
        cols.extend(np.asarray(r_cols, np.int64)[order])
        data.extend(np.asarray(r_data)[order])
    indptr = np.concatenate([[0], np.cumsum(rows)])
    m = sp.csr_matrix((np.asarray(data), np.asarray(cols), indptr), shape=X.shape)
    np.testing.assert_allclose(m.toarray(), X, rtol=1e-15, atol=0)
    return m


def model(width, act, dtype, d, seed=3):
    return Sequential([Dense(width, act, input_dim=d), Dense(3, "softmax")],
                      dtype=np.dtype(dtype).name, seed=seed)


def fit(m, X, y, **kw):
    opts = dict(batch_size=32, seed=1)
    opts.update(kw)
    Trainer(m, "cross_entropy", SGD(0.1), **opts).fit(X, y, epochs=2, verbose=0)
    return m.get_weights()


@pytest.mark.parametrize("act", ["sigmoid", "relu", "softmax"])
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_equals_dense_on_every_path(simd, dtype, width, act, rng):
    d = 40
    X = sparse_data(rng, 150, d, 0.2)
    y = rng.integers(0, 3, X.shape[0])
    for Xs in (sp.csr_matrix(X), with_duplicates_and_zeros(X, rng)):
        np.testing.assert_allclose(model(width, act, dtype, d).predict(Xs),
                                   model(width, act, dtype, d).predict(X.astype(dtype)),
                                   **tol(dtype, 10))
        got = fit(model(width, act, dtype, d), Xs, y)
        want = fit(model(width, act, dtype, d), X.astype(dtype), y)
        for p, q in zip(got, want):
            np.testing.assert_allclose(p, q, **tol(dtype, 50))


@pytest.mark.parametrize("width", [40, 64])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_bits_are_the_same_for_1_2_3_threads(simd, dtype, width, rng):
    # big enough for both kernels to split their work over three threads
    d = 500
    X = sp.csr_matrix(sparse_data(rng, 600, d, 0.2))
    y = rng.integers(0, 3, X.shape[0])
    runs = []
    for threads in (1, 2, 3):
        fastsgd.set_num_threads(threads)
        m = model(width, "relu", dtype, d)
        runs.append(fit(m, X, y, batch_size=256) + [m.predict(X)])
    for other in runs[1:]:
        for p, q in zip(runs[0], other):
            np.testing.assert_array_equal(p, q)


# ---- the C entry points ------------------------------------------------------

class _Csr(ctypes.Structure):
    _fields_ = [("n_rows", ctypes.c_int64), ("indptr", ctypes.c_void_p),
                ("indices", ctypes.c_void_p), ("data", ctypes.c_void_p),
                ("col_cum", ctypes.c_void_p)]


def _kernels(dtype):
    try:
        lib = ctypes.CDLL(_core.__file__)
        sfx = "f32" if np.dtype(dtype) == np.float32 else "f64"
        fwd = getattr(lib, f"fsgd_csr_dense_forward_{sfx}")
        bwd = getattr(lib, f"fsgd_csr_dense_backward_{sfx}")
    except (OSError, AttributeError) as e:
        pytest.skip(f"the core's C symbols cannot be loaded here: {e}")
    T = ctypes.c_float if sfx == "f32" else ctypes.c_double
    P, I64 = ctypes.c_void_p, ctypes.c_int64
    fwd.argtypes = [ctypes.c_int, I64, I64, I64, P, P, P, P, ctypes.c_int, T, P]
    bwd.argtypes = [ctypes.c_int, I64, I64, I64, P, P, P, ctypes.c_int, T, P, P, P]
    fwd.restype = bwd.restype = ctypes.c_int
    return fwd, bwd


def _ptr(a):
    return a.ctypes.data if a is not None else None


def _run(dtype, threads, X, x_rows, n_in, W, b, D):
    """(status, Z) of the forward and (status, dW, db) of the backward, linear activation."""
    fwd, bwd = _kernels(dtype)
    indptr = np.ascontiguousarray(X[0], np.int64)
    indices = np.ascontiguousarray(X[1], np.int32)
    data = np.ascontiguousarray(X[2], dtype)
    csr = _Csr(len(indptr) - 1, _ptr(indptr), _ptr(indices), _ptr(data))
    rows = len(x_rows)
    n_out = W.shape[1]
    Z = np.zeros((rows, n_out), dtype)
    st_f = fwd(threads, rows, n_in, n_out, ctypes.byref(csr), _ptr(x_rows), _ptr(W), _ptr(b), 0,
               0.0, _ptr(Z))
    D = D.copy()
    dW = np.full((n_in, n_out), np.nan, dtype)
    db = np.zeros(n_out, dtype)
    st_b = bwd(threads, rows, n_in, n_out, ctypes.byref(csr), _ptr(x_rows), _ptr(Z), 0, 0.0,
               _ptr(D), _ptr(dW), _ptr(db))
    return (st_f, Z), (st_b, dW, db)


def _problem(rng, dtype, n=500, n_in=700, n_out=37, rows=400, shuffle_indices=True):
    Xd = sparse_data(rng, n, n_in, 0.2)
    m = sp.csr_matrix(Xd)
    indices = m.indices.copy()
    data = m.data.copy()
    if shuffle_indices:               # unsorted rows: the kernels must keep CSR order anyway
        for i in range(n):
            a, e = m.indptr[i], m.indptr[i + 1]
            o = rng.permutation(e - a)
            indices[a:e] = indices[a:e][o]
            data[a:e] = data[a:e][o]
    x_rows = rng.integers(0, n, rows).astype(np.int64)
    W = rng.standard_normal((n_in, n_out)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    D = rng.standard_normal((rows, n_out)).astype(dtype)
    return Xd, (m.indptr, indices, data), x_rows, W, b, D


@pytest.mark.parametrize("dtype", DTYPES)
def test_c_kernels_match_numpy_and_threads(simd, dtype, rng):
    Xd, X, x_rows, W, b, D = _problem(rng, dtype)
    n_in = W.shape[0]
    A = Xd[x_rows]
    want_z = b.astype(np.float64) + A @ W.astype(np.float64)
    want_dw = A.T @ D.astype(np.float64)
    first = None
    for threads in (1, 2, 3):
        (st_f, Z), (st_b, dW, db) = _run(dtype, threads, X, x_rows, n_in, W, b, D)
        assert st_f == 0 and st_b == 0
        np.testing.assert_allclose(Z, want_z, **tol(dtype, 100))
        np.testing.assert_allclose(dW, want_dw, **tol(dtype, 100))
        np.testing.assert_allclose(db, D.astype(np.float64).sum(0), **tol(dtype, 100))
        assert not dW[[0, 1, n_in - 1]].any()
        if first is None:
            first = (Z, dW, db)
        else:
            for p, q in zip(first, (Z, dW, db)):
                np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", ["column n_in", "column -1", "row n_rows", "row -1"])
def test_c_kernels_refuse_indices_out_of_range(simd, dtype, bad, rng):
    Xd, (indptr, indices, data), x_rows, W, b, D = _problem(rng, dtype, n=60, n_in=50, n_out=20,
                                                            rows=40)
    indices = indices.copy()
    x_rows = x_rows.copy()
    k = indptr[x_rows[7]] + 1          # a nonzero of batch row 7
    assert indptr[x_rows[7] + 1] > k
    if bad == "column n_in":
        indices[k] = W.shape[0]
    elif bad == "column -1":
        indices[k] = -1
    elif bad == "row n_rows":
        x_rows[7] = len(indptr) - 1
    else:
        x_rows[7] = -1
    for threads in (1, 3):
        (st_f, _), (st_b, _, _) = _run(dtype, threads, (indptr, indices, data), x_rows, W.shape[0],
                                       W, b, D)
        assert st_f == 2 and st_b == 2   # FSGD_ERR_ARG


def _unsorted_copy(X, rng):
    """The same CSR matrix with each row's nonzeros in a random order."""
    indptr, indices, data = X
    indices, data = indices.copy(), data.copy()
    for i in range(len(indptr) - 1):
        a, e = indptr[i], indptr[i + 1]
        o = rng.permutation(e - a)
        indices[a:e], data[a:e] = indices[a:e][o], data[a:e][o]
    return indptr, indices, data


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_out", [1, 7, 37, 64, 200], ids=lambda n: f"{n} units")
def test_tiled_and_sorted_backward_give_the_same_bits(simd, dtype, n_out, rng):
    """A narrow layer's backward walks rows in ascending column order in tiles; rows in any
    other order make it give way to the sorted method (wide layers always sort). Both sum
    each element of dW over the batch rows in order: the same bits, for any team."""
    Xd, X, x_rows, W, b, D = _problem(rng, dtype, n=300, n_in=700, n_out=n_out, rows=260,
                                      shuffle_indices=False)
    Xu = _unsorted_copy(X, rng)
    want = Xd[x_rows].T @ D.astype(np.float64)
    first = None
    for threads in (1, 2, 3):
        for matrix in (X, Xu):
            (_, _), (st_b, dW, db) = _run(dtype, threads, matrix, x_rows, 700, W, b, D)
            assert st_b == 0
            np.testing.assert_allclose(dW, want, **tol(dtype, 100))
            if first is None:
                first = dW
            np.testing.assert_array_equal(dW, first)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_bad_column_stops_its_row_in_either_method(simd, dtype, where, rng):
    """A column index out of range in a row sorted otherwise: the row's nonzeros from it on
    are left out (FSGD_ERR_ARG), exactly as if the row ended there."""
    Xd, (indptr, indices, data), x_rows, W, b, D = _problem(rng, dtype, n=80, n_in=300,
                                                            n_out=24, rows=70,
                                                            shuffle_indices=False)
    r = int(x_rows[11])
    a, e = int(indptr[r]), int(indptr[r + 1])
    assert e - a >= 4
    k = {"first": a, "middle": (a + e) // 2, "last": e - 1}[where]
    bad = indices.copy()
    bad[k] = 300
    # the same batch with row r cut before k (a copy of row r appended, as row 80)
    cut_ptr = np.append(indptr, indptr[-1] + (k - a))
    cut_idx = np.concatenate([indices, indices[a:k]])
    cut_dat = np.concatenate([data, data[a:k]])
    cut_rows = np.where(x_rows == r, 80, x_rows)
    for threads in (1, 2, 3):
        (_, _), (st, dW, db) = _run(dtype, threads, (indptr, bad, data), x_rows, 300, W, b, D)
        (_, _), (st_cut, want, want_db) = _run(dtype, threads, (cut_ptr, cut_idx, cut_dat),
                                               cut_rows, 300, W, b, D)
        assert st == 2 and st_cut == 0
        np.testing.assert_array_equal(dW, want)
        np.testing.assert_array_equal(db, want_db)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_out", [1, 7, 16, 37, 64, 200], ids=lambda n: f"{n} units")
def test_forward_of_two_rows_at_once_gives_each_row_its_own_bits(simd, dtype, n_out, rng):
    """The forward sums two batch rows at a time (a thread's odd last row alone): every row's
    outputs are the bits it gets in a batch of its own, for any team."""
    _, X, x_rows, W, b, D = _problem(rng, dtype, n=120, n_in=300, n_out=n_out, rows=57)
    alone = np.vstack([_run(dtype, 1, X, x_rows[i:i + 1], 300, W, b, D[i:i + 1])[0][1]
                       for i in range(len(x_rows))])
    for threads in (1, 2, 3):
        (st, Z), _ = _run(dtype, threads, X, x_rows, 300, W, b, D)
        assert st == 0
        np.testing.assert_array_equal(Z, alone)


def _step_grads_two_ways(model, X, y, order, rows, threads):
    """The flat gradients of the batch of ``order[:rows]`` from one training call (whose
    forward files the sparse input's nonzeros for the backward) and from separate forward,
    cost and backward calls (whose backward walks or sorts the batch itself)."""
    cost = costs.get("cross_entropy")
    plan = build_plan(model, rows, cost=cost, training=True)
    net = _net.Net(plan)
    net.set_threads(threads)
    t, _ = fastsgd.trainer._prepare_targets("y", y, X.shape[0], model.output_dim, cost,
                                            model.dtype)
    net.bind(X, t)
    net.set_order(order)
    net.train_batch(0, rows, update=False)
    fused = plan.grads.copy()
    plan.grads[...] = np.nan
    net.forward(0, rows, out_act=False)
    net.cost(0, rows)
    net.backward(0, rows)
    return fused, plan.grads.copy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_out", [1, 7, 16, 37, 64, 200], ids=lambda n: f"{n} units")
def test_training_step_from_filed_nonzeros_gives_the_same_bits(simd, dtype, n_out, rng):
    """A training step's forward files each batch row's nonzeros by column, and the backward
    sums dW from those buckets: the same bits as the backward that walks or sorts the batch
    itself, for any team, odd batches, and rows whose repeated columns overflow a bucket
    (which makes the step sort after all)."""
    d = 300
    Xd = sparse_data(rng, 90, d, 0.2)
    y = rng.integers(0, 3, Xd.shape[0])
    crowded = sp.csr_matrix(Xd)
    crowded = sp.csr_matrix((np.concatenate([crowded.data, np.full(90, 0.5)]),
                             np.concatenate([crowded.indices, np.full(90, 7)]),
                             np.arange(91) + crowded.indptr), shape=Xd.shape)
    # (column 7 appended to every row, then each row's indices sorted: a repeated column 7
    # in every row that already had one)
    for X in (sp.csr_matrix(Xd), crowded):
        for rows in (61, 90):
            order = rng.permutation(90)
            m = Sequential([Dense(n_out, "relu", input_dim=d), Dense(3, "softmax")],
                           dtype=np.dtype(dtype).name, seed=5)
            for threads in (1, 2, 3):
                fused, apart = _step_grads_two_ways(m, X, y, order, rows, threads)
                assert np.isfinite(fused).all() and np.abs(fused).max() > 0
                np.testing.assert_array_equal(fused, apart)


# ---- panels: a training step's team split by input columns ---------------------------

def _fit_watching_the_team(m, X, y, threads, opt, batch_size, epochs=2):
    """Weights after a fit with ``threads`` threads, and the training network's team."""
    fastsgd.set_num_threads(threads)   # the conftest fixture restores the count
    tr = Trainer(m, "cross_entropy", opt, batch_size=batch_size, seed=2)
    nets = watch_nets(tr)
    tr.fit(X, y, epochs=epochs, verbose=0)
    return m.get_weights(), nets[0].team


def _skewed(rng, n, d):
    """Rows whose nonzeros crowd the last columns (the panels' bounds follow them)."""
    X = sparse_data(rng, n, d, 0.05)
    X[:, -d // 5:] = rng.standard_normal((n, d // 5)) * (rng.random((n, d // 5)) < 0.7)
    return X


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_out", [16, 37, 200], ids=lambda n: f"{n} units")
@pytest.mark.parametrize("data", ["sorted", "skewed", "unsorted with duplicates"])
def test_panels_give_the_bits_of_one_thread(simd, dtype, n_out, data, rng):
    """With two or three threads a training step splits the sparse first layer's input
    columns between them (each its panel of every row, its buckets, its rows of dW and
    its rows of W and the optimizer's state): the same bits as one thread, for odd last
    batches, a last partial vector, several blocks of columns, rows whose columns are
    not ascending (whose filing fails, so the backward sorts), SGD with momentum and an
    L2 penalty, and Adam; a deeper network puts most of the step after the panels."""
    d = 1200   # enough work per step for a team of three
    Xd = _skewed(rng, 301, d) if data == "skewed" else sparse_data(rng, 301, d, 0.2)
    X = with_duplicates_and_zeros(Xd, rng) if data.startswith("unsorted") else \
        sp.csr_matrix(Xd)
    y = rng.integers(0, 3, X.shape[0])
    from fastsgd import Adam
    for opt, deep in ((lambda: SGD(0.05, momentum=0.9, nesterov=True), False),
                      (lambda: Adam(0.01), True)):
        runs = []
        for threads in (1, 2, 3):
            layers = [Dense(n_out, "relu", input_dim=d, l2=1e-3)]
            if deep:
                layers.append(Dense(150, "tanh"))
            m = Sequential(layers + [Dense(3, "softmax")], dtype=np.dtype(dtype).name, seed=4)
            w, team = _fit_watching_the_team(m, X, y, threads, opt(), batch_size=64)
            runs.append(w)
            if threads > 1:
                assert team["panel_calls"] > 0, team
        for other in runs[1:]:
            for p, q in zip(runs[0], other):
                np.testing.assert_array_equal(p, q)


def test_panels_are_used_only_where_they_fit(rng):
    """A team of two splits a first layer of 16 units or more over 64 input columns or
    more into panels; a first layer narrower than a vector of every path, or with too
    few input columns for two lines of counts per thread, runs as before."""
    y = rng.integers(0, 3, 200)
    for n_out, d, panels in ((16, 1200, True), (8, 3000, False), (200, 60, False),
                             (200, 64, True)):
        X = sp.csr_matrix(sparse_data(rng, 200, d, 0.3))
        m = Sequential([Dense(n_out, "relu", input_dim=d), Dense(3, "softmax")], seed=1)
        _, team = _fit_watching_the_team(m, X, y, 2, SGD(0.05), batch_size=64, epochs=1)
        assert team["threads"] == 2, team   # a team of two ran (and timed itself)
        assert (team["panel_calls"] > 0) == panels, (n_out, d, team)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_a_bad_column_in_a_panel_step_is_refused_and_changes_nothing(threads, rng):
    """A column index that went out of range after the data was bound (the kernels check
    what they index): the training call fails, and neither the parameters nor the
    optimizer's state change, with or without panels."""
    d = 1200
    X = sp.csr_matrix(sparse_data(rng, 120, d, 0.2))
    y = rng.integers(0, 3, 120)
    m = Sequential([Dense(64, "relu", input_dim=d), Dense(3, "softmax")], seed=5)
    cost = costs.get("cross_entropy")
    plan = build_plan(m, 120, cost=cost, training=True)
    net = _net.Net(plan)
    net.set_threads(threads)
    from fastsgd import Adam
    opt = Adam(0.01)
    slots = opt.build(plan.layout, plan.dtype)
    update = _net.Update(plan.params, plan.grads, slots, opt.segments(plan.layout, m.layers))
    update.configure(opt.hyper())
    net.set_update(update)
    t, _ = fastsgd.trainer._prepare_targets("y", y, 120, 3, cost, m.dtype)
    net.bind(X, t)
    net.train_batch(0, 120)   # the buckets and panels work on good data, and step
    assert net.team["panel_calls"] == (1 if threads > 1 else 0)
    inputs = net.inputs.csr
    for where in (0.3, 0.9):   # in the first panel's columns, then in the last one's
        before = [plan.params.copy()] + [s.copy() for s in slots]
        indices = inputs[1]
        k = int(inputs[0][60] + where * (inputs[0][61] - inputs[0][60]))
        saved = indices[k]
        indices[k] = d + 5
        with pytest.raises(ValueError, match="status"):
            net.train_batch(0, 120)
        indices[k] = saved
        for a, b in zip([plan.params] + list(slots), before):
            np.testing.assert_array_equal(a, b)
        net.train_batch(0, 120)   # and the next step, on good data again, runs
        assert not np.array_equal(plan.params, before[0])
