"""Dropout, BatchNormalization and the MAE, Huber and sparse categorical
cross-entropy costs: gradients, Keras's formulas, the dropout generator,
determinism across threads and resumes, saving and loading, the CLI."""
import json

import hostile
import numpy as np
import pytest

import fastsgd
from fastsgd import (
    SGD,
    Adam,
    BackupAndRestore,
    BatchNormalization,
    Callback,
    Dense,
    Dropout,
    Huber,
    ModelCheckpoint,
    Sequential,
    Trainer,
    _core,
    _net,
    _ops,
    costs,
)
from fastsgd._network import build_plan
from fastsgd.cli import main

import _reference as ref
from conftest import DTYPES, tol


def data(rng, n=30, d=5, k=3):
    return rng.standard_normal((n, d)), rng.integers(0, k, n)


def bn_net(center=True, scale=True, dtype="float64", seed=3):
    return Sequential([Dense(6, "tanh", input_dim=5),
                       BatchNormalization(momentum=0.9, epsilon=1e-2, center=center, scale=scale),
                       Dense(3, "softmax")], dtype=dtype, seed=seed)


def drop_net(rate=0.4, dtype="float64", seed=3):
    return Sequential([Dense(8, "tanh", input_dim=5), Dropout(rate, seed=11),
                       Dense(3, "softmax")], dtype=dtype, seed=seed)


def training_loss_and_grads(model, cost, X, y, rows=None, capacity=None, seed_step=0):
    """Loss (batch mean) and flat gradient of a training plan on X[:rows]."""
    rows = X.shape[0] if rows is None else rows
    cost = costs.get(cost)
    plan = build_plan(model, capacity or rows, cost=cost, training=True)
    net = _net.Net(plan)
    net.seed_step = seed_step
    t, _ = fastsgd.trainer._prepare_targets("y", y, X.shape[0], model.output_dim, cost,
                                            model.dtype)
    net.bind(np.ascontiguousarray(X, model.dtype), t)
    loss, _ = net.train_batch(0, rows, update=False)
    return loss / rows, plan.grads.copy()


def check_gradients(model, cost, X, y, **kw):
    flat, _ = model._flat_parameters()
    _, grads = training_loss_and_grads(model, cost, X, y, **kw)
    p0 = flat.copy()

    def f(p):
        flat[...] = p
        return training_loss_and_grads(model, cost, X, y, **kw)[0]

    num = ref.central_difference(f, p0.copy(), h=1e-6)
    flat[...] = p0
    np.testing.assert_allclose(grads, num, rtol=1e-5, atol=1e-8)
    assert np.abs(grads).max() > 1e-3   # something flows


# ---- arguments ----------------------------------------------------------------------------------
@pytest.mark.parametrize("make,name", [
    (lambda: Dropout(1.0), "rate"), (lambda: Dropout(-0.1), "rate"),
    (lambda: Dropout(float("nan")), "rate"), (lambda: Dropout(0.2, seed=-1), "seed"),
    (lambda: Dropout(0.2, seed=2 ** 64), "seed"),
    (lambda: BatchNormalization(epsilon=-1e-3), "epsilon"),
    (lambda: BatchNormalization(epsilon=0.0), "epsilon"),
    (lambda: BatchNormalization(momentum=1.0), "momentum"),
    (lambda: BatchNormalization(momentum=-0.5), "momentum"),
    (lambda: Huber(delta=-1.0), "delta"), (lambda: Huber(delta=0.0), "delta"),
    (lambda: Huber(delta=float("inf")), "delta"),
])
def test_bad_arguments_name_themselves(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_bad_types_and_structure():
    with pytest.raises(TypeError, match="rate"):
        Dropout("0.5")
    with pytest.raises(TypeError, match="center"):
        BatchNormalization(center=1)
    with pytest.raises(ValueError, match="last layer must be a Dense"):
        Sequential([Dense(3, input_dim=2), Dropout(0.5)])
    with pytest.raises(TypeError, match="layers\\[1\\]"):
        Sequential([Dense(3, input_dim=2), "dropout", Dense(2)])
    with pytest.raises(ValueError, match="delta"):
        _ops.output_cost(np.zeros((2, 2)), np.zeros((2, 2)), "huber", "linear", delta=-1.0)


# ---- gradients (float64 central differences) -------------------------------------------------------
@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False),
                                          (False, False)])
def test_batch_norm_gradients(rng, center, scale):
    X, y = data(rng)
    m = bn_net(center, scale)
    if scale:
        m.layers[1].gamma = rng.uniform(0.5, 1.5, 6)
    if center:
        m.layers[1].beta = rng.standard_normal(6) * 0.3
    check_gradients(m, "cross_entropy", X, y)


def test_batch_norm_first_and_partial_batch_gradients(rng):
    """A partial batch (7 rows in buffers of 16): statistics over the 7 rows only."""
    X, y = data(rng, n=7)
    m = Sequential([BatchNormalization(), Dense(4, "sigmoid"), BatchNormalization(),
                    Dense(3, "softmax")], dtype="float64", seed=1)
    m.build(5)
    m.layers[2].gamma = rng.uniform(0.5, 2.0, 4)
    check_gradients(m, "cross_entropy", X, y, capacity=16)
    # the same as a plan of exactly 7 rows
    a = training_loss_and_grads(m, "cross_entropy", X, y, capacity=16)
    b = training_loss_and_grads(m, "cross_entropy", X, y)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("step", [0, 5])
def test_dropout_gradients_with_a_fixed_mask(rng, step):
    X, y = data(rng)
    check_gradients(drop_net(), "cross_entropy", X, y, seed_step=step)


def test_dropout_first_layer_gradients(rng):
    X, y = data(rng)
    m = Sequential([Dropout(0.3, seed=5), Dense(4, "tanh", input_dim=5), Dense(2, "sigmoid")],
                   dtype="float64", seed=2)
    yy = rng.uniform(0, 1, (30, 2))
    check_gradients(m, "mae", X, yy)


@pytest.mark.parametrize("cost,act", [("mae", "linear"), ("mae", "sigmoid"), ("mae", "softmax"),
                                      ("huber", "linear"), ("huber", "tanh"),
                                      ("huber", "softmax"),
                                      ("sparse_categorical_cross_entropy", "softmax")])
def test_cost_gradients_through_a_network(rng, cost, act):
    X, labels = data(rng)
    m = Sequential([Dense(6, "tanh", input_dim=5), BatchNormalization(), Dropout(0.2, seed=1),
                    Dense(3, act)], dtype="float64", seed=4)
    y = labels if cost.startswith("sparse") else rng.standard_normal((30, 3)) * 1.5
    c = Huber(delta=0.7) if cost == "huber" else cost
    check_gradients(m, c, X, y)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cost,act,delta", [("mae", "linear", 1.0), ("mae", "relu", 1.0),
                                            ("huber", "linear", 0.5), ("huber", "sigmoid", 0.1),
                                            ("huber", "leaky_relu", 2.0)])
def test_fused_cost_kernel_against_numpy(rng, dtype, cost, act, delta):
    z = rng.standard_normal((9, 4)) * 2
    y = rng.standard_normal((9, 4))
    loss, _, d = _ops.output_cost(z.astype(dtype), y.astype(dtype), cost, act, slope=0.3,
                                  delta=delta)
    np.testing.assert_allclose(loss, ref.output_cost(cost, act, z, y, delta), **tol(dtype, 10))
    if dtype == np.float64:
        num = ref.central_difference(lambda zz: ref.output_cost(cost, act, zz, y, delta), z)
        np.testing.assert_allclose(d, num, rtol=1e-6, atol=1e-9)


def test_costs_on_their_own_and_by_name(rng):
    p, t = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    assert costs.get("mae")(p, t) == pytest.approx(ref.cost("mae", p, t))
    assert costs.get("mean_absolute_error")(p, t) == pytest.approx(np.mean(np.abs(p - t)))
    assert costs.get("huber")(p, t) == pytest.approx(ref.cost("huber", p, t, 1.0))
    assert Huber(0.3)(p, t) == pytest.approx(ref.cost("huber", p, t, 0.3))
    probs = ref.activate(p, "softmax")
    labels = np.array([0, 2, 1, 1, 0, 2])
    sparse = costs.get("sparse_categorical_crossentropy")
    assert sparse(probs, labels) == pytest.approx(costs.get("cross_entropy")(probs, labels))
    assert sparse(probs, labels[:, None]) == pytest.approx(sparse(probs, labels))
    with pytest.raises(TypeError, match="integer class labels"):
        sparse(probs, np.eye(3)[labels])
    with pytest.raises(TypeError, match="integer class labels"):
        Trainer(bn_net(), "sparse_categorical_cross_entropy", SGD()).fit(
            rng.standard_normal((6, 5)), np.eye(3)[labels], verbose=0)
    assert not costs.get("huber").classification and not costs.get("mae").classification


def test_trainer_selects_the_new_costs_by_name(rng):
    X, labels = data(rng, n=64)
    y = rng.standard_normal((64, 1))
    for c in ("mae", "huber"):
        m = Sequential([Dense(4, "relu", input_dim=5), Dense(1)], dtype="float64", seed=0)
        h = Trainer(m, c, SGD(0.05), batch_size=16, seed=0).fit(X, y, epochs=3, verbose=0)
        assert "accuracy" not in h.history and h.history["loss"][-1] < h.history["loss"][0]
        ev = Trainer(m, c, SGD()).evaluate(X, y)
        assert ev["loss"] == pytest.approx(ref.cost(c, m.predict(X), y), rel=1e-12)
    m = bn_net()
    h = Trainer(m, "sparse_categorical_cross_entropy", SGD(0.1), batch_size=8, seed=0).fit(
        X, labels, epochs=2, verbose=0)
    assert "accuracy" in h.history


# ---- Keras's formulas -----------------------------------------------------------------------------
def identity_head(model_layers, n, dtype):
    """Layers followed by a linear Dense identity: the net's output is theirs."""
    m = Sequential(model_layers + [Dense(n, "linear")], dtype=dtype, seed=0)
    m.build(n)
    m.layers[-1].weights = np.eye(n)
    m.layers[-1].bias = np.zeros(n)
    return m


def training_forward(model, X, seed_step=0, capacity=None):
    plan = build_plan(model, capacity or X.shape[0], cost="mse", training=True)
    net = _net.Net(plan)
    net.seed_step = seed_step
    net.bind(np.ascontiguousarray(X, model.dtype))
    net.forward(0, X.shape[0])
    return plan.layers[-1].A[:X.shape[0]].copy()


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_outputs_match_keras(rng, dtype):
    X = rng.standard_normal((50, 7)) * 3 + 2
    bn = BatchNormalization(momentum=0.8, epsilon=1e-3)
    m = identity_head([bn], 7, dtype)
    bn.gamma = rng.uniform(0.5, 2, 7)
    bn.beta = rng.standard_normal(7)
    bn.moving_mean = rng.standard_normal(7)
    bn.moving_variance = rng.uniform(0.5, 3, 7)
    want, _, _ = ref.batch_norm_train(X, bn.gamma, bn.beta, 1e-3)
    np.testing.assert_allclose(training_forward(m, X), want, **tol(dtype, 20))
    want = ref.batch_norm_infer(X, bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance, 1e-3)
    np.testing.assert_allclose(m.predict(X), want, **tol(dtype, 20))


def test_moving_statistics_follow_keras_with_a_partial_last_batch(rng):
    X = rng.standard_normal((45, 4)) * 2 + 1
    y = rng.standard_normal((45, 4))
    bn = BatchNormalization(momentum=0.7)
    m = identity_head([bn], 4, "float64")
    Trainer(m, "mse", SGD(1e-9), batch_size=20, shuffle=False).fit(X, y, epochs=2, verbose=0)
    mm, mv = np.zeros(4), np.ones(4)
    for _ in range(2):
        for s in (slice(0, 20), slice(20, 40), slice(40, 45)):  # the last batch has 5 rows
            _, mean, var = ref.batch_norm_train(X[s], None, None, 1e-3)
            mm, mv = ref.moving_update(mm, mean, 0.7), ref.moving_update(mv, var, 0.7)
    np.testing.assert_allclose(bn.moving_mean, mm, rtol=1e-12)
    np.testing.assert_allclose(bn.moving_variance, mv, rtol=1e-12)


def test_gradients_without_a_step_leave_the_moving_statistics(rng):
    X, y = data(rng)
    m = bn_net()
    before = m.get_weights()
    Trainer(m, "cross_entropy", SGD()).gradients(X, y)
    for a, b in zip(m.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_a_refused_step_leaves_the_moving_statistics(rng):
    X, y = data(rng, n=40)
    m = bn_net()
    before = m.get_weights()
    with pytest.warns(fastsgd.DivergenceWarning):
        h = Trainer(m, "cross_entropy", SGD(1e300), batch_size=40).fit(X, y, epochs=3, verbose=0)
    assert h.diverged is not None
    after = m.get_weights()
    if h.diverged["epoch"] == 0 and h.diverged["batch"] == 0:
        for a, b in zip(after, before):
            np.testing.assert_array_equal(a, b)
    assert all(np.isfinite(w).all() for w in after)


def test_predict_and_evaluate_run_in_inference_mode(rng):
    X, y = data(rng, n=40)
    m = Sequential([Dense(6, "relu", input_dim=5), BatchNormalization(), Dropout(0.5, seed=1),
                    Dense(3, "softmax")], dtype="float64", seed=0)
    Trainer(m, "cross_entropy", SGD(0.1), batch_size=8, seed=0).fit(X, y, epochs=2, verbose=0)
    np.testing.assert_allclose(m.predict(X), ref.network_forward(m, X), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(m.predict(X), m.predict(X))
    tr = Trainer(m, "cross_entropy", SGD())
    ev = tr.evaluate(X, y)
    assert ev == tr.evaluate(X, y)
    assert ev["loss"] == pytest.approx(ref.cost("cross_entropy", ref.network_forward(m, X), y),
                                       rel=1e-12)


# ---- dropout's generator ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_scales_kept_units_and_drops_the_rate(dtype):
    rows, cols, rate = 2000, 50, 0.3
    m = identity_head([Dropout(rate, seed=1234)], cols, dtype)
    X = np.ones((rows, cols))
    out = training_forward(m, X, seed_step=17)
    kept = out != 0
    keep = np.asarray(1.0 - rate, dtype)  # the kernel divides by (T)(1 - rate)
    np.testing.assert_array_equal(out[kept], np.asarray(1, dtype) / keep)
    # the fixed seed makes this exact; the bound is 7 binomial standard deviations
    assert abs((~kept).mean() - rate) < 7 * np.sqrt(rate * (1 - rate) / kept.size)
    np.testing.assert_array_equal(kept, ref.dropout_keep(1234, 17, rows, cols, rate))
    assert _core.dropout_keep(1234, 17, 3, 4, rate) == kept[3, 4]
    # another step, another mask; inference is the identity
    assert (training_forward(m, X, seed_step=18) != 0).tolist() != kept.tolist()
    np.testing.assert_array_equal(m.predict(X), X.astype(dtype))


def test_dropout_mask_depends_on_the_batch_row_not_on_memory(rng):
    """Shuffled batches read through a permutation get the mask of the row's place
    in the batch, as contiguous batches do."""
    m = identity_head([Dropout(0.5, seed=9)], 6, "float64")
    X = rng.uniform(1, 2, (10, 6))
    perm = rng.permutation(10).astype(np.int64)
    plan = build_plan(m, 10, cost="mse", training=True)
    net = _net.Net(plan)
    net.bind(X)
    net.set_order(perm)
    net.forward(0, 10)
    np.testing.assert_array_equal(plan.layers[-1].A, training_forward(m, X[perm]))


def test_dropout_keys_derive_from_the_model_seed():
    a = Sequential([Dense(3, input_dim=2), Dropout(0.5), Dropout(0.5), Dense(2)], seed=5)
    b = Sequential([Dense(3, input_dim=2), Dropout(0.5), Dropout(0.5), Dense(2)], seed=5)
    c = Sequential([Dense(3, input_dim=2), Dropout(0.5), Dropout(0.5), Dense(2)], seed=6)
    assert a.layers[1]._key == b.layers[1]._key != c.layers[1]._key
    assert a.layers[1]._key != a.layers[2]._key
    # the weights of the Dense layers are those of the model without dropout
    plain = Sequential([Dense(3, input_dim=2), Dense(2)], seed=5)
    np.testing.assert_array_equal(a.layers[3].weights, plain.layers[1].weights)


# ---- determinism ------------------------------------------------------------------------------------
def big_model(seed=7):
    return Sequential([Dense(160, "relu", input_dim=30), BatchNormalization(),
                       Dropout(0.25), Dense(130, "tanh"), BatchNormalization(center=False),
                       Dropout(0.1), Dense(4, "softmax")], dtype="float32", seed=seed)


def test_bit_identical_for_1_2_3_threads(rng):
    X = rng.standard_normal((700, 30)).astype(np.float32)
    y = rng.integers(0, 4, 700)
    results = []
    for nt in (1, 2, 3):
        fastsgd.set_num_threads(nt)
        m = big_model()
        h = Trainer(m, "cross_entropy", Adam(1e-3), batch_size=256, seed=1).fit(
            X, y, epochs=2, validation_data=(X[:300], y[:300]), verbose=0)
        results.append((m.get_weights(), h.history["loss"], h.history["val_loss"],
                        m.predict(X)))
    for w, loss, val, pred in results[1:]:
        assert loss == results[0][1] and val == results[0][2]
        for a, b in zip(w, results[0][0]):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(pred, results[0][3])


def test_save_load_resume_is_bit_identical(rng, tmp_path):
    X = rng.standard_normal((300, 30)).astype(np.float32)
    y = rng.integers(0, 4, 300)
    straight = big_model()
    Trainer(straight, "cross_entropy", Adam(1e-3), batch_size=64, shuffle=False).fit(
        X, y, epochs=4, verbose=0)
    first = big_model()
    opt = Adam(1e-3)
    Trainer(first, "cross_entropy", opt, batch_size=64, shuffle=False).fit(X, y, epochs=2,
                                                                            verbose=0)
    first.save(tmp_path / "half.npz", optimizer=opt)
    resumed, opt2 = fastsgd.load_model(tmp_path / "half.npz", return_optimizer=True)
    np.testing.assert_array_equal(resumed.predict(X), first.predict(X))
    assert opt2.iterations == opt.iterations == 10
    Trainer(resumed, "cross_entropy", opt2, batch_size=64, shuffle=False).fit(
        X, y, epochs=4, initial_epoch=2, verbose=0)
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)


class Boom(Exception):
    pass


class FailAt(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Boom()


def test_backup_and_restore_and_checkpoint_with_the_new_layers(rng, tmp_path):
    X = rng.standard_normal((200, 30)).astype(np.float32)
    y = rng.integers(0, 4, 200)

    def run(callbacks):
        m = big_model()
        tr = Trainer(m, "cross_entropy", SGD(0.05, momentum=0.9), batch_size=48, seed=3)
        tr.fit(X, y, epochs=4, callbacks=callbacks, verbose=0, validation_data=(X, y))
        return m

    straight = run([])
    bk = BackupAndRestore(tmp_path / "bk")
    with pytest.raises(Boom):
        run([FailAt(2), bk])
    ck = ModelCheckpoint(str(tmp_path / "ck-{epoch}.npz"))
    resumed = run([ck, bk])
    assert bk.restored_epoch == 1
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)
    last = fastsgd.load_model(tmp_path / "ck-4.npz")
    np.testing.assert_array_equal(last.predict(X), straight.predict(X))


# ---- the model's bookkeeping ------------------------------------------------------------------------
def test_counts_summary_and_keras_weight_order():
    m = Sequential([Dense(64, "relu", input_dim=784), BatchNormalization(), Dropout(0.2),
                    Dense(64, "relu"), BatchNormalization(center=False), Dense(10, "softmax")])
    assert m.count_params() == 50240 + 256 + 4160 + 192 + 650   # Keras: 4 per BN unit (3 here)
    text = m.summary(print_fn=None)
    assert "batch_normalization_1 (BatchNormalization)" in text and "dropout_2" in text
    assert "Total params: 55,498" in text and "Non-trainable params: 256" in text
    assert "Trainable params: 55,242" in text
    shapes = [w.shape for w in m.get_weights()]
    assert shapes == [(784, 64), (64,), (64,), (64,), (64,), (64,), (64, 64), (64,), (64,),
                      (64,), (64,), (64, 10), (10,)]
    bn = m.layers[1]
    w = m.get_weights()
    np.testing.assert_array_equal(w[2], 1.0)        # gamma
    np.testing.assert_array_equal(w[3], 0.0)        # beta
    np.testing.assert_array_equal(w[4], 0.0)        # moving mean
    np.testing.assert_array_equal(w[5], 1.0)        # moving variance
    w[5] = np.full(64, 2.0)
    w[2] = np.full(64, 3.0)
    m.set_weights(w)
    assert (bn.moving_variance == 2.0).all() and (bn.gamma == 3.0).all()
    w[5] = -w[5]
    with pytest.raises(ValueError, match="moving_variance"):
        m.set_weights(w)
    assert (bn.moving_variance == 2.0).all()
    assert m.layers[4].beta is None
    with pytest.raises(AttributeError, match="center=False"):
        m.layers[4].beta = np.zeros(64)


def test_trainable_layout_and_segments_leave_out_the_moving_statistics():
    m = bn_net()
    flat, layout = m._flat_parameters()
    state, state_layout = m._flat_state()
    assert [s.name for s in layout.segments] == ["weights", "bias", "gamma", "beta", "weights",
                                                 "bias"]
    assert [s.name for s in state_layout.segments] == ["moving_mean", "moving_variance"]
    assert np.shares_memory(m.layers[1].gamma, flat)
    assert np.shares_memory(m.layers[1].moving_mean, state)
    opt = SGD(0.1, l1=0.1, l2=0.2, weight_decay=0.01)
    rows = opt.segments(layout, m.layers)
    assert [r[2:] for r in rows] == [(0.1, 0.2, True), (0.0, 0.0, True), (0.0, 0.0, True),
                                     (0.0, 0.0, True), (0.1, 0.2, True), (0.0, 0.0, True)]
    assert len(m.parameters()) == 6 and len(m.get_weights()) == 8


def test_lr_finder_on_a_model_with_the_new_layers(rng):
    X, y = data(rng, n=200)
    m = Sequential([Dense(16, "relu", input_dim=5), BatchNormalization(), Dropout(0.2),
                    Dense(3, "softmax")], seed=1)
    before = m.get_weights()
    res = fastsgd.find_lr(m, "cross_entropy", X, y, batch_size=16, steps=30, seed=0)
    assert res.suggestion > 0
    for a, b in zip(m.get_weights(), before):
        np.testing.assert_array_equal(a, b)


# ---- the model file ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_save_and_load_the_new_layers(rng, tmp_path, dtype):
    X, y = data(rng, n=40)
    m = Sequential([Dropout(0.1, seed=3), Dense(6, "relu", input_dim=5),
                    BatchNormalization(momentum=0.5, epsilon=0.01, center=False),
                    Dropout(0.3), Dense(3, "softmax")], dtype=dtype, seed=0)
    Trainer(m, "cross_entropy", SGD(0.1), batch_size=8, seed=0).fit(X, y, epochs=2, verbose=0)
    m.save(tmp_path / "m.npz")
    back = fastsgd.load_model(tmp_path / "m.npz")
    assert back.get_config() == m.get_config()
    assert [type(a) for a in back.layers] == [type(a) for a in m.layers]
    assert back.layers[3]._key == m.layers[3]._key
    for a, b in zip(back.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.predict(X), m.predict(X))
    members, meta = hostile.members_of(tmp_path / "m.npz")
    assert meta["version"] == 2 and meta["layers"][2]["class"] == "BatchNormalization"
    assert {"moving_mean2.npy", "moving_variance2.npy", "gamma2.npy"} <= set(members)
    assert "beta2.npy" not in members


def test_version_1_files_are_still_read(tmp_path, rng):
    m = Sequential([Dense(4, "relu", input_dim=3), Dense(2, "softmax")], dtype="float64", seed=0)
    opt = Adam()
    Trainer(m, "cross_entropy", opt, batch_size=4).fit(rng.standard_normal((8, 3)),
                                                       rng.integers(0, 2, 8), verbose=0)
    m.save(tmp_path / "v2.npz", optimizer=opt)
    members, meta = hostile.members_of(tmp_path / "v2.npz")
    meta["version"] = 1
    for cfg in meta["layers"]:
        del cfg["class"]
    (tmp_path / "v1.npz").write_bytes(hostile.assemble(members, meta))
    back, opt2 = fastsgd.load_model(tmp_path / "v1.npz", return_optimizer=True)
    for a, b in zip(back.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert opt2.iterations == opt.iterations
    # a version 1 file cannot hold the new classes
    meta["layers"][0]["class"] = "Dense"
    (tmp_path / "bad.npz").write_bytes(hostile.assemble(members, meta))
    with pytest.raises(ValueError, match="unexpected configuration"):
        fastsgd.load_model(tmp_path / "bad.npz")


def _bn_file(tmp_path):
    m = Sequential([BatchNormalization(), Dense(4, "relu", input_dim=3), Dropout(0.5),
                    Dense(2, "softmax")], dtype="float32", seed=0)
    m.build(3)
    m.save(tmp_path / "ok.npz")
    return hostile.members_of(tmp_path / "ok.npz")


@pytest.mark.parametrize("label,edit,why", [
    ("unknown_class", lambda me, ar: me["layers"][2].update({"class": "Conv2D"}), "unknown class"),
    ("class_not_string", lambda me, ar: me["layers"][2].update({"class": 5}), "unknown class"),
    ("rate_one", lambda me, ar: me["layers"][2].update({"rate": 1.0}), "rate"),
    ("rate_string", lambda me, ar: me["layers"][2].update({"rate": "0.5"}), "rate"),
    ("seed_huge", lambda me, ar: me["layers"][2].update({"seed": 2 ** 64}), "seed"),
    ("momentum_one", lambda me, ar: me["layers"][0].update({"momentum": 1.0}), "momentum"),
    ("epsilon_negative", lambda me, ar: me["layers"][0].update({"epsilon": -1e-3}), "epsilon"),
    ("center_int", lambda me, ar: me["layers"][0].update({"center": 1}), "center"),
    ("bn_units", lambda me, ar: me["layers"][0].update({"units": 3}), "unexpected"),
    ("dropout_last", lambda me, ar: me["layers"].append({"class": "Dropout", "rate": 0.1}),
     "last layer"),
    ("no_input_dim", lambda me, ar: me.pop("input_dim"), "input_dim"),
    ("variance_negative", lambda me, ar: ar.update(
        {"moving_variance0": -np.ones(3, np.float32)}), "negative"),
    ("variance_nan", lambda me, ar: ar.update(
        {"moving_variance0": np.full(3, np.nan, np.float32)}), "NaN"),
    ("mean_shape", lambda me, ar: ar.update({"moving_mean0": np.zeros(4, np.float32)}), "shape"),
    ("missing_gamma", lambda me, ar: ar.pop("gamma0"), "missing array gamma0"),
])
def test_hostile_new_layer_fields_raise_value_error_naming_the_file(tmp_path, label, edit, why):
    members, meta = _bn_file(tmp_path)
    arrays = hostile.arrays_of(members)
    edit(meta, arrays)
    members = {k: v for k, v in members.items() if k == "__fastsgd__.npy"}
    members.update({f"{k}.npy": hostile.npy(v) for k, v in arrays.items()})
    path = tmp_path / f"{label}.npz"
    path.write_bytes(hostile.assemble(members, meta))
    with pytest.raises(ValueError, match=why) as e:
        fastsgd.load_model(path)
    assert str(path) in str(e.value)


# ---- the command line ------------------------------------------------------------------------------
def test_cli_trains_with_dropout_and_batch_norm(tmp_path, capsys):
    path = tmp_path / "m.npz"
    assert main(["train", "--net", "intermediate", "--sample", "--epochs", "1", "--dropout",
                 "0.2", "--batch-norm", "--cost", "huber", "--save", str(path),
                 "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert "Non-trainable params: 256" in out and "dropout_2 (Dropout, rate 0.2)" in out
    assert "cost=huber" in out
    kinds = [layer.kind for layer in fastsgd.load_model(path).layers]
    assert kinds == ["dense", "batch_normalization", "dropout"] * 2 + ["dense"]
    for bad in (["--dropout", "1"], ["--dropout", "-0.1"]):
        assert main(["train", *bad]) == 2
        assert "--dropout" in capsys.readouterr().err


def test_model_file_metadata_is_json_of_the_configs(tmp_path):
    m = Sequential([Dense(3, input_dim=2), BatchNormalization(), Dense(2)], seed=0)
    m.save(tmp_path / "a.npz")
    _, meta = hostile.members_of(tmp_path / "a.npz")
    assert json.loads(json.dumps(meta))["layers"][1] == {
        "class": "BatchNormalization", "momentum": 0.99, "epsilon": 1e-3, "center": True,
        "scale": True}


def test_gradients_then_optimizer_step_equals_a_training_step(rng):
    """Trainer.gradients draws the masks of the optimizer's next step."""
    X, y = data(rng, n=24)
    a, b = drop_net(dtype="float64"), drop_net(dtype="float64")
    opt_a, opt_b = SGD(0.1), SGD(0.1)
    Trainer(a, "cross_entropy", opt_a, batch_size=24, shuffle=False).fit(X, y, epochs=3,
                                                                         verbose=0)
    tb = Trainer(b, "cross_entropy", opt_b, batch_size=24, shuffle=False)
    for _ in range(3):
        _, grads = tb.gradients(X, y)
        assert opt_b.step(b.parameters(), grads)
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(p, q)
