"""The trainer: gradients, the SGD step, the epoch loop, callbacks, divergence, bad input."""
import warnings

import numpy as np
import pytest

import fastsgd
from fastsgd import (
    SGD,
    Callback,
    Dense,
    DivergenceWarning,
    EarlyStopping,
    LambdaCallback,
    ModelCheckpoint,
    Sequential,
    Trainer,
)

from _reference import activate
from _reference import network_cost as numpy_cost
from conftest import DTYPES, watch_nets

# ---- gradients -------------------------------------------------------------
OUTPUTS = [("mse", "linear"), ("mse", "sigmoid"), ("mse", "softmax"), ("mse", "tanh"),
           ("cross_entropy", "softmax"), ("binary_cross_entropy", "sigmoid")]
HIDDEN = ["linear", "sigmoid", "tanh", "relu", "leaky_relu"]


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("cost,out_act", OUTPUTS)
def test_whole_network_gradients_central_differences(hidden, cost, out_act, rng):
    model = Sequential([Dense(6, hidden, input_dim=5, weight_init="he_normal",
                              bias_init="glorot_uniform", negative_slope=0.1),
                        Dense(5, hidden, weight_init="he_normal", bias_init="glorot_uniform",
                              negative_slope=0.1),
                        Dense(3, out_act)], dtype="float64", seed=7)
    X = rng.standard_normal((8, 5))
    if cost == "cross_entropy":
        y = rng.integers(0, 3, 8)
    elif cost == "binary_cross_entropy":
        y = rng.integers(0, 2, (8, 3)).astype(float)
    else:
        y = rng.standard_normal((8, 3))
    tr = Trainer(model, cost, SGD(0.1))
    loss, grads = tr.gradients(X, y)
    assert loss == pytest.approx(numpy_cost(model, cost, X, y), rel=1e-10)
    h = 1e-6
    for p, g in zip(model.parameters(), grads):
        num = np.empty_like(p)
        for idx in np.ndindex(*p.shape):
            old = p[idx]
            p[idx] = old + h
            fp = numpy_cost(model, cost, X, y)
            p[idx] = old - h
            fm = numpy_cost(model, cost, X, y)
            p[idx] = old
            num[idx] = (fp - fm) / (2 * h)
        np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-8)


# ---- one step by hand --------------------------------------------------------
def test_one_sgd_step_worked_by_hand():
    """2 inputs -> 1 linear output, quadratic cost, a batch of two, η = 0.1.

    z = x·w + b with w = (0.5, -0.25), b = 0.1:
      x1 = (1, 2), y1 = 1: z1 = 0.1;   x2 = (0, 1), y2 = 0: z2 = -0.15
    cost = ((0.1-1)^2 + (-0.15)^2) / 2 = 0.41625
    dC/dz = 2 (z - y) / 2 = (-0.9, -0.15)
    dC/dw = (1·-0.9 + 0·-0.15, 2·-0.9 + 1·-0.15) = (-0.9, -1.95);  dC/db = -1.05
    w' = w - 0.1·dC/dw = (0.59, -0.055);  b' = 0.1 + 0.105 = 0.205
    """
    model = Sequential([Dense(1, input_dim=2)], dtype="float64")
    model.layers[0].weights = [[0.5], [-0.25]]
    model.layers[0].bias = [0.1]
    X = np.array([[1.0, 2.0], [0.0, 1.0]])
    y = np.array([[1.0], [0.0]])
    tr = Trainer(model, "mse", SGD(0.1), batch_size=2, shuffle=False)
    hist = tr.fit(X, y, epochs=1, verbose=0)
    assert hist.history["loss"][0] == pytest.approx(0.41625, rel=1e-15)
    np.testing.assert_allclose(model.layers[0].weights, [[0.59], [-0.055]], rtol=1e-15)
    np.testing.assert_allclose(model.layers[0].bias, [0.205], rtol=1e-15)


# ---- one epoch against plain NumPy ------------------------------------------
def numpy_epoch(params, acts, cost, X, y, lr, batch):
    """Mini-batch SGD over X in order, written out in NumPy (float64)."""
    Ws = [p.astype(np.float64) for p in params[0::2]]
    bs = [p.astype(np.float64) for p in params[1::2]]
    X = X.astype(np.float64)
    Y = np.eye(Ws[-1].shape[1])[y] if y.ndim == 1 else y.astype(np.float64)
    for s in range(0, len(X), batch):
        xb, yb = X[s:s + batch], Y[s:s + batch]
        a = [xb]
        for W, b, act in zip(Ws, bs, acts):
            a.append(activate(a[-1] @ W + b, act))
        out = a[-1]
        n, k = out.shape
        if cost == "cross_entropy":
            d = (out - yb) / n
        else:
            g = 2 * (out - yb) / (n * k)
            if acts[-1] == "softmax":
                d = out * (g - np.sum(g * out, 1, keepdims=True))
            elif acts[-1] == "sigmoid":
                d = g * out * (1 - out)
            else:
                d = g
        for i in range(len(Ws) - 1, -1, -1):
            dW = a[i].T @ d
            db = d.sum(0)
            if i > 0:
                d = d @ Ws[i].T
                act = acts[i - 1]
                if act == "sigmoid":
                    d = d * a[i] * (1 - a[i])
                elif act == "relu":
                    d = d * (a[i] > 0)
                elif act == "tanh":
                    d = d * (1 - a[i] ** 2)
            Ws[i] -= lr * dW
            bs[i] -= lr * db
    return [x for pair in zip(Ws, bs) for x in pair]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("net", ["shallow", "intermediate"])
def test_one_epoch_equals_numpy(dtype, net, rng):
    X = rng.random((300, 20))
    y = rng.integers(0, 10, 300)
    if net == "shallow":
        layers = [Dense(16, "sigmoid", input_dim=20), Dense(10, "softmax")]
        cost, lr = "mse", 0.5
    else:
        layers = [Dense(16, "relu", input_dim=20), Dense(12, "relu"), Dense(10, "softmax")]
        cost, lr = "cross_entropy", 0.1
    model = Sequential(layers, dtype=np.dtype(dtype).name, seed=3)
    start = model.get_weights()
    Trainer(model, cost, SGD(lr), batch_size=32, shuffle=False).fit(X, y, epochs=1, verbose=0)
    ref = numpy_epoch(start, [layer.activation for layer in model.layers], cost, X, y, lr, 32)
    rtol = 1e-10 if dtype == np.float64 else 2e-4
    for got, want in zip(model.parameters(), ref):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())


# ---- the epoch partition ------------------------------------------------------
class Recorder(Callback):
    def on_train_begin(self, logs=None):
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append([])

    def on_batch_end(self, batch, logs=None):
        self.epochs[-1].append((logs["size"], np.array(logs["indices"]), logs["loss"]))


def test_epoch_partition_469_rounds_last_of_96():
    X = np.zeros((60000, 2), np.float32)
    y = np.zeros(60000, np.int64)
    model = Sequential([Dense(2, "softmax", input_dim=2)], seed=0)
    rec = Recorder()
    Trainer(model, "cross_entropy", SGD(0.01), batch_size=128, seed=1).fit(
        X, y, epochs=2, callbacks=[rec], verbose=0)
    for batches in rec.epochs:
        sizes = [s for s, _, _ in batches]
        assert len(sizes) == 469 and sizes[-1] == 96 and set(sizes[:-1]) == {128}
        order = np.concatenate([idx for _, idx, _ in batches])
        np.testing.assert_array_equal(np.sort(order), np.arange(60000))  # without replacement
    first, second = (np.concatenate([i for _, i, _ in ep]) for ep in rec.epochs)
    assert not np.array_equal(first, second)  # a new permutation each epoch
    assert not np.array_equal(first, np.arange(60000))

    rec2 = Recorder()
    model2 = Sequential([Dense(2, "softmax", input_dim=2)], seed=0)
    Trainer(model2, "cross_entropy", SGD(0.01), batch_size=128, seed=1).fit(
        X, y, epochs=1, callbacks=[rec2], verbose=0)
    np.testing.assert_array_equal(np.concatenate([i for _, i, _ in rec2.epochs[0]]), first)


def test_shuffle_false_keeps_order_and_epoch_loss_is_sample_weighted(rng):
    X = rng.random((100, 3))
    y = rng.integers(0, 2, 100)
    model = Sequential([Dense(2, "softmax", input_dim=3)], seed=0)
    rec = Recorder()
    h = Trainer(model, "cross_entropy", SGD(0.1), batch_size=30, shuffle=False).fit(
        X, y, epochs=1, callbacks=[rec], verbose=0)
    order = np.concatenate([i for _, i, _ in rec.epochs[0]])
    np.testing.assert_array_equal(order, np.arange(100))
    weighted = sum(s * loss for s, _, loss in rec.epochs[0]) / 100
    assert h.history["loss"][0] == pytest.approx(weighted, rel=1e-6)
    assert [s for s, _, _ in rec.epochs[0]] == [30, 30, 30, 10]


def test_history_keys_and_validation_split_is_the_last_fraction(rng):
    X = rng.random((200, 4))
    y = rng.integers(0, 3, 200)
    def run(**kw):
        m = Sequential([Dense(8, "relu", input_dim=4), Dense(3, "softmax")], seed=2,
                       dtype="float64")
        return Trainer(m, "cross_entropy", SGD(0.1), batch_size=16, seed=4).fit(
            X if "validation_split" in kw else X[:150], y if "validation_split" in kw else y[:150],
            epochs=3, verbose=0, **kw), m
    h1, m1 = run(validation_split=0.25)
    h2, m2 = run(validation_data=(X[150:], y[150:]))
    assert set(h1.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert h1.history[key] == h2.history[key]
    assert h1.epoch == [0, 1, 2]
    for p, q in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(p, q)


def test_evaluate_matches_numpy(rng):
    X = rng.random((500, 6))
    y = rng.integers(0, 4, 500)
    m = Sequential([Dense(7, "tanh", input_dim=6), Dense(4, "softmax")], seed=1, dtype="float64")
    res = Trainer(m, "cross_entropy", SGD(0.1)).evaluate(X, y, batch_size=64)
    p = m.predict(X)
    assert res["loss"] == pytest.approx(np.mean(-np.log(p[np.arange(500), y])), rel=1e-12)
    assert res["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y))


# ---- reproducibility -----------------------------------------------------------
def _train(threads, seed=11, dtype="float32", **fit):
    fastsgd.set_num_threads(threads)
    rng = np.random.default_rng(0)
    X = rng.random((1000, 50)).astype(np.float32)
    y = rng.integers(0, 10, 1000)
    m = Sequential([Dense(64, "relu", input_dim=50), Dense(10, "softmax")], seed=seed, dtype=dtype)
    Trainer(m, "cross_entropy", SGD(0.05, momentum=0.9), batch_size=64).fit(X, y, epochs=2,
                                                                            verbose=0, **fit)
    return m.get_weights()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_same_weights_bit_for_bit_whatever_the_threads(dtype):
    ref = _train(1, dtype=dtype)
    for threads in (1, 2, 3):
        for p, q in zip(_train(threads, dtype=dtype), ref):
            np.testing.assert_array_equal(p, q)
    other = _train(1, seed=12, dtype=dtype)
    assert not np.array_equal(other[0], ref[0])


def test_adaptive_team_times_both_choices_and_carries_over(rng):
    """With 2 threads a training step times itself and now and then tries one
    thread (the faster stays: the results are the same bits either way); the
    next fit of the same trainer carries on from what it measured."""
    fastsgd.set_num_threads(2)   # the conftest fixture restores the count
    X = rng.random((1000, 200)).astype(np.float32)
    y = rng.integers(0, 10, 1000)
    m = Sequential([Dense(128, "relu", input_dim=200), Dense(10, "softmax")], seed=0)
    tr = Trainer(m, "cross_entropy", SGD(0.05), batch_size=64, seed=0)
    nets = watch_nets(tr)
    tr.fit(X, y, epochs=2, verbose=0)
    team = nets[-1].team
    assert team["threads"] == 2 and team["calls"] == 32
    assert team["probes"][1] >= 1   # tried one thread
    assert all(s is not None and s > 0 for s in team["seconds_per_row"])
    tr.fit(X, y, epochs=1, verbose=0)
    assert nets[-1].team["calls"] == 48
    fastsgd.set_num_threads(1)
    tr.fit(X, y, epochs=1, verbose=0)   # one thread: nothing to choose, nothing timed
    assert nets[-1].team["calls"] == 48


def _replayed_teams(net, calls, seconds_full, seconds_single):
    return np.array([net._replay_team(2, seconds_full, seconds_single, 128)
                     for _ in range(calls)])


def test_adaptive_team_policy_on_replayed_timings():
    """The team's policy (fsgd_tuner in csrc/fsgd.h) on timings of a busy and
    of a calm machine, replayed call by call."""
    m = Sequential([Dense(8, "relu", input_dim=4), Dense(2, "softmax")], seed=0)
    tr = Trainer(m, "cross_entropy", SGD(0.1), batch_size=16)
    net, _ = tr._build_net(16, training=True)
    # another process holds a core: a call of the full team takes 100 times one thread's
    teams = _replayed_teams(net, 20000, 20e-3, 0.2e-3)
    slow = int((teams == 2).sum())
    # the first two calls (warm-up, timed), then tries that end after their first call
    assert 3 <= slow <= 5, slow
    assert net.team["single"] and teams[-1000:].tolist() == [1] * 1000
    # the machine calms down: the full team comes back within one long wait, and stays
    teams = _replayed_teams(net, 20000, 0.1e-3, 0.18e-3)
    back = int(np.argmax(teams == 2))
    assert teams[back] == 2 and back <= 16384 + 8, back
    assert (teams[back:] == 2).mean() > 0.99
    assert not net.team["single"]
    # calm from the start: the full team nearly always, one thread tried now and then
    fresh, _ = tr._build_net(16, training=True)
    teams = _replayed_teams(fresh, 20000, 0.1e-3, 0.18e-3)
    assert (teams == 2).mean() > 0.99 and fresh.team["probes"][1] >= 3


def test_fortran_strided_and_other_dtype_input_give_the_same_result(rng):
    X = rng.random((300, 10))
    y = rng.integers(0, 3, 300)
    def fit(Xin, yin):
        m = Sequential([Dense(5, "sigmoid", input_dim=10), Dense(3, "softmax")], seed=0)
        Trainer(m, "cross_entropy", SGD(0.1), batch_size=32, seed=0).fit(Xin, yin, epochs=2,
                                                                         verbose=0)
        return m.get_weights()
    ref = fit(np.ascontiguousarray(X, np.float32), y)
    wide = np.zeros((300, 20), np.float32)
    wide[:, ::2] = X
    for Xin, yin in [(np.asfortranarray(X.astype(np.float32)), y), (wide[:, ::2], y),
                     (X.astype(np.float32).astype(np.float64), y.astype(np.int32)),
                     (X.astype(np.float32).tolist(), y.tolist())]:
        for p, q in zip(fit(Xin, yin), ref):
            np.testing.assert_array_equal(p, q)


# ---- EarlyStopping on a scripted sequence ------------------------------------------
class FakeModel:
    def __init__(self):
        self.w = [np.zeros(1)]
        self.stop_training = False

    def get_weights(self):
        return [x.copy() for x in self.w]

    def set_weights(self, w):
        self.w = [x.copy() for x in w]


def script(cb, values, monitor="val_loss"):
    """Run ``cb`` over per-epoch values; the fake weights are the epoch number."""
    model = FakeModel()
    cb.model = model
    cb.on_train_begin({})
    ran = 0
    for epoch, v in enumerate(values):
        model.w = [np.array([float(epoch)])]
        cb.on_epoch_end(epoch, {monitor: v})
        ran += 1
        if model.stop_training:
            break
    cb.on_train_end({})
    return ran, model


def test_early_stopping_patience():
    cb = EarlyStopping(patience=2)
    ran, _ = script(cb, [1.0, 0.9, 0.95, 0.96, 0.97, 0.5])
    assert ran == 4 and cb.stopped_epoch == 3 and cb.best == 0.9 and cb.best_epoch == 1


def test_early_stopping_patience_zero_stops_at_first_non_improvement():
    cb = EarlyStopping(patience=0)
    ran, _ = script(cb, [1.0, 0.9, 0.95, 0.8])
    assert ran == 3 and cb.stopped_epoch == 2


def test_early_stopping_min_delta():
    cb = EarlyStopping(patience=1, min_delta=0.1)
    ran, _ = script(cb, [1.0, 0.95, 0.85, 0.84, 0.8, 0.7])
    # 0.95 is not better by 0.1 (wait 1 -> stop? no: patience 1 stops when wait >= 1)
    assert ran == 2 and cb.stopped_epoch == 1 and cb.best == 1.0


def test_early_stopping_mode_max_and_auto():
    cb = EarlyStopping(monitor="val_accuracy", patience=1)  # auto -> max
    ran, _ = script(cb, [0.5, 0.6, 0.55, 0.7], monitor="val_accuracy")
    assert ran == 3 and cb.best == 0.6
    cb = EarlyStopping(monitor="val_loss", mode="max", patience=1)
    ran, _ = script(cb, [0.5, 0.6, 0.55, 0.7])
    assert ran == 3 and cb.best == 0.6


def test_early_stopping_restores_best_weights_even_without_stopping():
    cb = EarlyStopping(patience=10, restore_best_weights=True)
    ran, model = script(cb, [1.0, 0.5, 0.7, 0.8])
    assert ran == 4 and cb.stopped_epoch == 0
    assert model.w[0][0] == 1.0  # weights of epoch 1, the best
    cb = EarlyStopping(patience=10, restore_best_weights=False)
    _, model = script(cb, [1.0, 0.5, 0.7, 0.8])
    assert model.w[0][0] == 3.0


def test_early_stopping_start_from_epoch():
    cb = EarlyStopping(patience=0, start_from_epoch=2)
    ran, _ = script(cb, [1.0, 2.0, 3.0, 2.5, 2.6])
    assert ran == 5 and cb.best == 2.5 and cb.stopped_epoch == 4


def test_early_stopping_baseline():
    # an epoch that does not beat the baseline does not reset the wait
    cb = EarlyStopping(patience=2, baseline=0.5)
    ran, _ = script(cb, [0.9, 0.95, 0.97, 0.99])
    assert ran == 2 and cb.stopped_epoch == 1
    cb = EarlyStopping(patience=2)
    ran, _ = script(cb, [0.9, 0.95, 0.97, 0.99])
    assert ran == 3 and cb.stopped_epoch == 2


def test_early_stopping_in_training_restores_best(rng):
    X = rng.random((200, 4))
    y = rng.integers(0, 2, 200)
    m = Sequential([Dense(2, "softmax", input_dim=4)], seed=0)
    seen = []
    snap = LambdaCallback(on_epoch_end=lambda e, logs: seen.append((logs["val_loss"], m.get_weights())))
    es = EarlyStopping(patience=1, restore_best_weights=True)
    h = Trainer(m, "cross_entropy", SGD(5.0), batch_size=8, seed=0).fit(
        X[:150], y[:150], epochs=30, validation_data=(X[150:], y[150:]),
        callbacks=[snap, es], verbose=0)
    assert len(h.epoch) < 30
    best = min(range(len(seen)), key=lambda i: seen[i][0])
    for p, q in zip(m.get_weights(), seen[best][1]):
        np.testing.assert_array_equal(p, q)


def test_callback_arguments_validated():
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="up")
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)
    with pytest.raises(TypeError, match="callbacks"):
        Trainer(Sequential([Dense(2, "softmax", input_dim=2)]), "cross_entropy", SGD()).fit(
            np.zeros((4, 2)), np.zeros(4, np.int64), callbacks=[print])


def test_model_checkpoint_writes_atomically_and_best_only(tmp_path, rng):
    X = rng.random((100, 4))
    y = rng.integers(0, 2, 100)
    m = Sequential([Dense(2, "softmax", input_dim=4)], seed=0)
    ck = ModelCheckpoint(tmp_path / "m-{epoch:02d}.npz", save_best_only=False)
    Trainer(m, "cross_entropy", SGD(0.1), batch_size=10).fit(
        X, y, epochs=3, validation_split=0.2, callbacks=[ck], verbose=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-01.npz", "m-02.npz", "m-03.npz"]
    loaded = fastsgd.load_model(tmp_path / "m-03.npz")
    np.testing.assert_array_equal(loaded.predict(X), m.predict(X))
    best = ModelCheckpoint(tmp_path / "best.npz", save_best_only=True)
    vals = iter([0.5, 0.7, 0.4])
    best.trainer = None
    best.model = m
    best.on_train_begin()
    for e in range(3):
        before = (tmp_path / "best.npz").stat().st_mtime_ns if (tmp_path / "best.npz").exists() else None
        v = next(vals)
        best.on_epoch_end(e, {"val_loss": v})
        after = (tmp_path / "best.npz").stat().st_mtime_ns
        assert (after != before) == (v in (0.5, 0.4))
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())


# ---- divergence ------------------------------------------------------------------
def test_absurd_learning_rate_stops_cleanly_with_finite_weights(rng):
    X = rng.random((512, 20)) * 100
    y = rng.standard_normal((512, 3)) * 1e3
    m = Sequential([Dense(32, "relu", input_dim=20), Dense(3)], seed=0)
    snaps = []
    cb = LambdaCallback(on_batch_end=lambda b, logs: snaps.append(m.get_weights()))
    with pytest.warns(DivergenceWarning, match=r"lr=1e\+10.*lr=1e\+09"):
        h = Trainer(m, "mse", SGD(1e10), batch_size=32).fit(X, y, epochs=5, callbacks=[cb],
                                                            verbose=0)
    assert h.diverged is not None and h.diverged["lr"] == 1e10
    for p in m.parameters():
        assert np.isfinite(p).all()
    # the weights are those after the last good step
    last = snaps[-1] if snaps else None
    if last is not None:
        for p, q in zip(m.parameters(), last):
            np.testing.assert_array_equal(p, q)
    assert len(h.epoch) == h.diverged["epoch"]


def test_sensible_learning_rate_does_not_warn(rng):
    X = rng.random((64, 3))
    y = rng.integers(0, 2, 64)
    m = Sequential([Dense(2, "softmax", input_dim=3)], seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = Trainer(m, "cross_entropy", SGD(0.1)).fit(X, y, epochs=2, verbose=0)
    assert h.diverged is None


# ---- output ----------------------------------------------------------------------
def test_verbose_levels(capsys, rng):
    X = rng.random((64, 3))
    y = rng.integers(0, 2, 64)
    m = Sequential([Dense(2, "softmax", input_dim=3)], seed=0)
    tr = Trainer(m, "cross_entropy", SGD(0.1))
    tr.fit(X, y, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""
    tr.fit(X, y, epochs=2, verbose=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("Epoch 1/2") and "loss:" in lines[0]
    tr.fit(X, y, epochs=3, verbose=1)  # not a terminal: a line per epoch
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


# ---- bad input ---------------------------------------------------------------------
def _model():
    return Sequential([Dense(4, "relu", input_dim=3), Dense(3, "softmax")], seed=0)


X_OK = np.random.default_rng(0).random((10, 3))
Y_OK = np.arange(10) % 3


@pytest.mark.parametrize("X,y,exc,match", [
    (np.zeros(10), Y_OK, ValueError, "2-D"),
    (np.zeros((10, 4)), Y_OK, ValueError, "3 features.*takes 3|has 4 features"),
    (X_OK, Y_OK[:9], ValueError, "9 samples"),
    (X_OK, np.full(10, 3), ValueError, "outside 0..2"),
    (X_OK, np.full(10, -1), ValueError, "outside"),
    (X_OK, Y_OK.astype(float) + 0.5, TypeError, "integer class labels"),
    (np.where(np.eye(10, 3) > 0, np.nan, X_OK), Y_OK, ValueError, "NaN"),
    (np.where(np.eye(10, 3) > 0, np.inf, X_OK), Y_OK, ValueError, "NaN or infinite"),
    (np.zeros((0, 3)), np.zeros(0, np.int64), ValueError, "empty"),
    (X_OK.astype(object), Y_OK, TypeError, "real numbers"),
    (np.array([["a", "b", "c"]] * 10), Y_OK, TypeError, "real numbers"),
    (X_OK, Y_OK.astype(str), TypeError, "numbers"),
    (X_OK + 1j, Y_OK, TypeError, "real numbers"),
    ("not an array", Y_OK, TypeError, "numpy array"),
])
def test_bad_fit_input_raises_before_any_kernel(X, y, exc, match):
    m = _model()
    before = m.get_weights()
    with pytest.raises(exc, match=match):
        Trainer(m, "cross_entropy", SGD(0.1)).fit(X, y, verbose=0)
    for p, q in zip(m.get_weights(), before):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": -5}, ValueError, "batch_size"),
    ({"batch_size": 2.5}, TypeError, "batch_size"),
    ({"batch_size": "32"}, TypeError, "batch_size"),
    ({"shuffle": "yes"}, TypeError, "shuffle"),
    ({"seed": -1}, ValueError, "seed"),
])
def test_bad_trainer_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Trainer(_model(), "cross_entropy", SGD(0.1), **kwargs)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"epochs": 0}, ValueError, "epochs"),
    ({"epochs": 1.5}, TypeError, "epochs"),
    ({"verbose": 3}, ValueError, "verbose"),
    ({"validation_split": 1.0}, ValueError, "validation_split"),
    ({"validation_split": 0.01}, ValueError, "no samples"),
    ({"validation_data": (X_OK, Y_OK), "validation_split": 0.5}, ValueError, "not both"),
    ({"validation_data": X_OK}, TypeError, "tuple"),
    ({"validation_data": (X_OK[:, :2], Y_OK)}, ValueError, "validation X"),
])
def test_bad_fit_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Trainer(_model(), "cross_entropy", SGD(0.1)).fit(X_OK, Y_OK, **{"verbose": 0, **kwargs})


@pytest.mark.parametrize("lr,exc", [(0, ValueError), (-0.1, ValueError), (float("nan"), ValueError),
                                    (float("inf"), ValueError), ("0.1", TypeError), (None, TypeError)])
def test_bad_learning_rate(lr, exc):
    with pytest.raises(exc, match="lr"):
        SGD(lr)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="'mse'.*'cross_entropy'"):
        Trainer(_model(), "hinge", SGD())
    with pytest.raises(ValueError, match="'sgd'.*'adam'"):
        Trainer(_model(), "mse", "nesterov")
    with pytest.raises(ValueError, match="softmax output"):
        Trainer(Sequential([Dense(3, "sigmoid", input_dim=3)]), "cross_entropy", SGD())
    with pytest.raises(TypeError, match="Sequential"):
        Trainer("model", "mse", SGD())


def test_mse_with_integer_labels_is_one_hot(rng):
    X = rng.random((50, 3))
    y = rng.integers(0, 3, 50)
    m1 = Sequential([Dense(3, "softmax", input_dim=3)], seed=0, dtype="float64")
    m2 = Sequential([Dense(3, "softmax", input_dim=3)], seed=0, dtype="float64")
    h1 = Trainer(m1, "mse", SGD(0.5), seed=0).fit(X, y, epochs=2, verbose=0)
    h2 = Trainer(m2, "mse", SGD(0.5), seed=0).fit(X, np.eye(3)[y], epochs=2, verbose=0)
    assert h1.history == {k: v for k, v in h2.history.items() if k != "seconds"} | {"seconds": h1.history["seconds"]}
    np.testing.assert_array_equal(m1.layers[0].weights, m2.layers[0].weights)


def test_mse_regression_has_no_accuracy(rng):
    X = rng.random((40, 2))
    y = X @ np.array([1.0, -2.0]) + 0.5
    m = Sequential([Dense(1, input_dim=2)], seed=0, dtype="float64")
    h = Trainer(m, "mse", SGD(0.3), batch_size=8).fit(X, y, epochs=300, verbose=0)
    assert "accuracy" not in h.history
    np.testing.assert_allclose(m.layers[0].weights.ravel(), [1.0, -2.0], atol=1e-3)
    np.testing.assert_allclose(m.layers[0].bias, [0.5], atol=1e-3)


def test_binary_cross_entropy_learns_a_separable_problem(rng):
    X = rng.standard_normal((400, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    m = Sequential([Dense(1, "sigmoid", input_dim=2)], seed=0)
    h = Trainer(m, "binary_cross_entropy", SGD(0.5), batch_size=16).fit(X, y, epochs=20, verbose=0)
    assert h.history["accuracy"][-1] > 0.97


# ---- end to end on full MNIST ------------------------------------------------------
def test_intermediate_net_reaches_97_percent_on_mnist(mnist_dir):
    from fastsgd.datasets import load_mnist
    (X, y), (Xt, yt) = load_mnist(mnist_dir, download=False)
    m = Sequential([Dense(64, "relu", input_dim=784), Dense(64, "relu"), Dense(10, "softmax")],
                   seed=42)
    tr = Trainer(m, "cross_entropy", SGD(0.1), batch_size=128, seed=42)
    h = tr.fit(X, y, epochs=20, validation_data=(Xt, yt), verbose=0)
    acc = tr.evaluate(Xt, yt)["accuracy"]
    assert acc >= 0.97, h.history["val_accuracy"]
    assert h.history["val_accuracy"][-1] == acc
