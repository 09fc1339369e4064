"""The engine layout: flat parameter buffers, the network plan, and the one
all-or-nothing update path shared by the Trainer and Optimizer.step."""
import numpy as np
import pytest

import fastsgd
from fastsgd import SGD, Adagrad, Adam, AdamW, Dense, RMSprop, Sequential, Trainer, _core, _net
from fastsgd._network import build_plan

from conftest import DTYPES

VARIANTS = [
    lambda: SGD(0.1),
    lambda: SGD(0.05, momentum=0.9),
    lambda: SGD(0.05, momentum=0.9, nesterov=True),
    lambda: SGD(0.1, weight_decay=0.01),
    lambda: Adagrad(0.1),
    lambda: RMSprop(0.01),
    lambda: RMSprop(0.01, momentum=0.5),
    lambda: RMSprop(0.01, centered=True),
    lambda: RMSprop(0.01, momentum=0.5, centered=True),
    lambda: Adam(0.01),
    lambda: Adam(0.01, amsgrad=True),
    lambda: AdamW(0.01, weight_decay=0.05),
]


def small_model(dtype="float64", seed=3):
    return Sequential([Dense(7, "tanh", input_dim=5), Dense(4, "relu"), Dense(3, "softmax")],
                      dtype=dtype, seed=seed)


def data(rng, n=40):
    return rng.standard_normal((n, 5)), rng.integers(0, 3, n)


def test_parameters_are_views_of_one_flat_array():
    m = small_model()
    flat, layout = m._flat_parameters()
    assert flat.ndim == 1 and flat.size == m.count_params() == layout.size
    for p, seg in zip(m.parameters(), layout.segments):
        assert np.shares_memory(p, flat) and p.shape == seg.shape
        assert p.__array_interface__["data"][0] == flat.__array_interface__["data"][0] + \
            seg.offset * flat.itemsize
    m.layers[1].bias = np.arange(4.0)
    np.testing.assert_array_equal(flat[layout.find(1, "bias").offset:][:4], np.arange(4.0))
    w = m.get_weights()
    w[0][...] = 99.0  # copies: the model is untouched
    assert not (m.layers[0].weights == 99.0).any()


def test_assignment_checks_finiteness_after_the_cast():
    m = small_model("float32")
    before = m.get_weights()
    with pytest.raises(ValueError, match="too large"):
        m.layers[0].bias = np.full(7, 1e39)
    with pytest.raises(ValueError, match="too large"):
        m.set_weights([np.full(w.shape, 1e39) for w in before])
    for a, b in zip(m.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_reused_layers_keep_their_weights_and_stay_shared(rng):
    X, y = data(rng)
    old = small_model()
    Trainer(old, "cross_entropy", SGD(0.1), batch_size=8, seed=0).fit(X, y, epochs=2, verbose=0)
    trained = old.get_weights()
    new = Sequential(old.layers[:2] + [Dense(2, "softmax")], dtype="float64", seed=9)
    for a, b in zip(new.get_weights()[:4], trained[:4]):
        np.testing.assert_array_equal(a, b)   # not re-initialised
    for a, b in zip(old.get_weights(), trained):
        np.testing.assert_array_equal(a, b)   # nor in the old model
    Trainer(new, "cross_entropy", SGD(0.1), batch_size=8, seed=0).fit(X, y % 2, epochs=1,
                                                                      verbose=0)
    # shared layers: the old model sees the new training, and still predicts
    np.testing.assert_array_equal(old.layers[0].weights, new.layers[0].weights)
    assert old.predict(X).shape == (40, 3)
    with pytest.raises(ValueError, match="input_dim=7"):
        Sequential([Dense(3, input_dim=2), old.layers[1]])


def test_pickled_model_keeps_views_of_its_flat_array(rng):
    import pickle
    m = small_model()
    m2 = pickle.loads(pickle.dumps(m))
    flat, _ = m2._flat_parameters()
    assert all(np.shares_memory(p, flat) for p in m2.parameters())
    X, y = data(rng)
    np.testing.assert_array_equal(m.predict(X), m2.predict(X))


def test_inference_plan_has_no_gradients_or_deltas():
    m = small_model()
    plan = build_plan(m, 16)
    assert plan.grads is None and plan.cost is None and not plan.training
    assert all(lp.D is None for lp in plan.layers)
    train = build_plan(m, 16, cost="cross_entropy", training=True)
    assert train.grads.shape == (m.count_params(),)
    assert all(lp.D.shape == (16, lp.n_out) for lp in train.layers)


@pytest.mark.parametrize("make", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_trainer_step_equals_optimizer_step(make, dtype, rng):
    """One Trainer batch (fused forward, backward and step in C) and
    Trainer.gradients + Optimizer.step on the same arrays give the same bits."""
    X, y = data(rng, 24)
    X = X.astype(dtype)
    a, b = small_model(np.dtype(dtype).name), small_model(np.dtype(dtype).name)
    opt_a, opt_b = make(), make()
    trainer_a = Trainer(a, "cross_entropy", opt_a, batch_size=24, shuffle=False)
    trainer_b = Trainer(b, "cross_entropy", opt_b, batch_size=24, shuffle=False)
    for _ in range(3):
        trainer_a.fit(X, y, epochs=1, verbose=0)
        _, grads = trainer_b.gradients(X, y)
        assert opt_b.step(b.parameters(), grads)
    assert opt_a.iterations == opt_b.iterations == 3
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(p, q)
    for sa, sb in zip(opt_a.get_state()["state"], opt_b.get_state()["state"]):
        for u, v in zip(sa, sb):
            np.testing.assert_array_equal(u, v)


def _trained_net(m, X, y, opt, rows):
    """The compiled training network of ``m`` for ``rows`` rows with ``opt``'s step,
    bound to ``X``, ``y``: its plan, the network and the step."""
    plan = build_plan(m, rows, cost="cross_entropy", training=True)
    net = _net.Net(plan)
    update = _net.Update(plan.params, plan.grads, opt.build(plan.layout, plan.dtype),
                         opt.segments(plan.layout, m.layers))
    update.configure(opt.hyper())
    net.set_update(update)
    net.bind(X, y)
    return plan, net, update


@pytest.mark.parametrize("dtype", DTYPES)
def test_separate_calls_equal_the_fused_batch(dtype, rng):
    X, y = data(rng, 32)
    X = X.astype(dtype)
    runs = []
    for fused in (True, False):
        m = small_model(np.dtype(dtype).name)
        plan, net, update = _trained_net(m, X, y, Adam(0.01), 32)
        losses = []
        for _ in range(3):
            if fused:
                loss, _ = net.train_batch(0, 32)
            else:
                net.forward(0, 32, out_act=False)
                loss, _ = net.cost(0, 32)
                net.backward(0, 32)
                assert update.run()
            losses.append(loss)
        runs.append((losses, m.get_weights(), update.step))
    assert runs[0][0] == runs[1][0] and runs[0][2] == runs[1][2] == 4
    for p, q in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(p, q)


def _refusal_case(make, dtype):
    """Parameters, gradients and state for which ``make()``'s step must be
    refused: some new value would not be finite."""
    big = np.finfo(dtype).max
    p = np.array([[0.5, -0.25], [big * 0.99, 1.0]], dtype)
    g = np.array([[0.1, 0.2], [-big, 0.3]], dtype)   # the step overflows
    opt = make()
    if isinstance(opt, RMSprop) and opt.centered:
        # a mean gradient larger than the root mean square: sqrt of a negative number
        g = np.array([[0.0, 0.1], [0.0, 0.1]], dtype)
        p = np.array([[0.5, -0.25], [1.0, 1.0]], dtype)
        return opt, p, g, {0: 0.0, 2: 1.0}
    return opt, p, g, {}


@pytest.mark.parametrize("make", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_refused_step_writes_nothing(make, dtype):
    opt, p, g, preset = _refusal_case(make, dtype)
    bias = np.array([1.0, 2.0], dtype)
    gb = np.array([0.5, 0.5], dtype)
    assert opt.step([p, bias], [np.zeros_like(g), np.zeros_like(gb)])  # a good step first
    for k, value in preset.items():
        opt._slots[k][...] = value
    state = opt.get_state()
    p0, b0 = p.copy(), bias.copy()
    assert opt.step([p, bias], [g, gb]) is False
    np.testing.assert_array_equal(p, p0)
    np.testing.assert_array_equal(bias, b0)   # the array after the bad one too
    after = opt.get_state()
    assert after["iterations"] == state["iterations"] == 1
    for sa, sb in zip(after["state"], state["state"]):
        for u, v in zip(sa, sb):
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("make", VARIANTS)
def test_a_non_finite_cost_in_training_leaves_the_model_as_it_was(make, rng):
    X, y = data(rng, 16)
    targets = np.eye(3)[y]
    m = Sequential([Dense(6, "linear", input_dim=5), Dense(3, "linear")], dtype="float64",
                   seed=2)
    opt = make()
    tr = Trainer(m, "mse", opt, batch_size=16, shuffle=False)
    tr.fit(X, targets, epochs=1, verbose=0)
    before, state = m.get_weights(), opt.get_state()
    with pytest.warns(fastsgd.DivergenceWarning):   # the squared error overflows
        h = tr.fit(X * 1e200, targets, epochs=1, verbose=0)
    assert h.diverged is not None
    assert opt.iterations == state["iterations"] == 1
    for a, b in zip(m.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_an_overflowing_step_in_training_is_refused_whole(rng):
    X, y = data(rng, 16)
    m = small_model("float32")
    opt = SGD(0.1)
    tr = Trainer(m, "cross_entropy", opt, batch_size=16, shuffle=False)
    tr.fit(X * 100, y, epochs=1, verbose=0)
    before = m.get_weights()
    opt.lr = 1e300   # the cost is finite, the float32 step is not
    with pytest.warns(fastsgd.DivergenceWarning):
        h = tr.fit(X * 100, y, epochs=1, verbose=0)
    assert h.diverged == {"epoch": 0, "batch": 0, "lr": 1e300} and opt.iterations == 1
    for a, b in zip(m.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_optimizer_is_bound_to_its_model(rng):
    X, y = data(rng)
    opt = Adam(0.01)
    first = small_model()
    Trainer(first, "cross_entropy", opt, batch_size=8).fit(X, y, verbose=0)
    other = small_model()
    with pytest.raises(ValueError, match="another model"):
        Trainer(other, "cross_entropy", opt, batch_size=8).fit(X, y, verbose=0)
    opt.reset()
    Trainer(other, "cross_entropy", opt, batch_size=8).fit(X, y, verbose=0)
    assert opt.iterations == 5


def test_update_rejects_a_malformed_plan():
    p = np.zeros(10)
    with pytest.raises(ValueError, match="segment"):
        _net.Update(p, np.zeros(10), [], [(0, 11, 0.0, 0.0, True)])
    with pytest.raises(ValueError, match="segment"):
        _net.Update(p, np.zeros(10), [], [(5, 5, 0.0, 0.0, True), (0, 5, 0.0, 0.0, True)])
    with pytest.raises(ValueError, match="elements"):
        _net.Update(p, np.zeros(9), [], [])
    step = _net.Update(p, np.zeros(10), [], [(0, 10, 0.0, 0.0, True)])
    with pytest.raises(ValueError, match=r"slots\[0\], slots\[1\] not given"):
        step.configure({"kind": "adam", "lr": 0.1})   # Adam needs two state slots


def test_two_threads_cannot_fit_one_model_at_once(rng):
    import threading
    X, y = data(rng, 4000)
    m = small_model()
    started, errors = threading.Event(), []

    def slow(batch, logs):
        started.set()

    tr = Trainer(m, "cross_entropy", SGD(0.01), batch_size=8)
    cb = fastsgd.LambdaCallback(on_batch_end=slow)
    worker = threading.Thread(target=lambda: tr.fit(X, y, epochs=3, verbose=0, callbacks=[cb]))
    worker.start()
    started.wait(10)
    try:
        Trainer(m, "cross_entropy", SGD(0.01)).fit(X, y, verbose=0)
    except RuntimeError as e:
        errors.append(str(e))
    worker.join()
    assert errors and "already being trained" in errors[0]
    # afterwards the model trains again
    Trainer(m, "cross_entropy", SGD(0.01)).fit(X[:100], y[:100], verbose=0)


# ---- the SGD step's screen (csrc/optim_tmpl.h) ---------------------------------------

SCREENED = [lambda: SGD(0.1), lambda: SGD(0.05, momentum=0.9),
            lambda: SGD(0.05, momentum=0.9, nesterov=True), lambda: Adam(0.01)]


@pytest.mark.parametrize("make", SCREENED + [lambda: SGD(0.1, weight_decay=0.01),
                                              lambda: Adam(0.01, amsgrad=True),
                                              lambda: Adam(0.01, beta_2=0.3),
                                              lambda: RMSprop(0.01)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_the_screen_writes_what_the_check_pass_would(make, dtype, threads, rng):
    """SGD and Adam steps that bound their new values by what the last step wrote
    instead of checking each one write the same bits as steps that check every value
    (weight decay, AMSGrad, Adam with 1 - beta_2 above 1/2 and the other rules always
    check)."""
    X, y = data(rng, 64)
    X = X.astype(dtype)
    fastsgd.set_num_threads(threads)   # the conftest fixture restores the count
    runs = []
    for forget in (False, True):
        m = Sequential([Dense(40, "relu", input_dim=5, l2=1e-3), Dense(3, "softmax")],
                       dtype=np.dtype(dtype).name, seed=3)
        plan, net, update = _trained_net(m, X, y, make(), 32)
        for step in range(12):
            if forget:
                update.forget_bounds()
            net.train_batch(32 * (step % 2), 32)
        runs.append(plan.params.copy())
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("make", SCREENED)
@pytest.mark.parametrize("dtype, lr", [(np.float32, 1e300), (np.float32, np.inf),
                                       (np.float64, np.inf)])
def test_the_screen_lets_no_bad_value_through(make, dtype, lr, rng):
    """With the bounds of the last step known, a step whose new values would not be
    finite (a learning rate that overflows the step: float32 takes 1e300 as infinity)
    is checked and refused, writing nothing (a screen that skipped the check here
    would write infinities)."""
    X, y = data(rng, 32)
    X = X.astype(dtype)
    m = small_model(np.dtype(dtype).name)
    opt = make()
    plan, net, update = _trained_net(m, X, y, opt, 32)
    for _ in range(3):
        net.train_batch(0, 32)            # the bounds now hold
    params = plan.params.copy()
    update.lr = lr
    with pytest.raises(_core.NonFiniteError):
        net.train_batch(0, 32)
    np.testing.assert_array_equal(plan.params, params)


def _poked(rng):
    """Data, a float32 model with an L2 penalty of 1 on its first layer, its trainer
    (SGD with momentum), and poke(): set a first-layer weight whose L2 gradient term,
    2 * 3.3e38, overflows float32."""
    X, y = data(rng, 64)
    m = Sequential([Dense(7, "tanh", input_dim=5, l2=1.0), Dense(3, "softmax")],
                   dtype="float32", seed=3)

    def poke():
        m.layers[0].weights[0, 0] = np.float32(3.3e38)
    tr = Trainer(m, "cross_entropy", SGD(0.1, momentum=0.9), batch_size=8, shuffle=False)
    return X.astype(np.float32), y, m, tr, poke


def test_a_batch_callback_that_writes_the_weights_makes_the_next_step_check(rng):
    """The trainer forgets the bounds after batch callbacks: a weight a callback set
    near the largest float32 makes the next step's new value overflow, and the step is
    refused (without forgetting, the screen would take the old bounds and write inf)."""
    X, y, m, tr, poke = _poked(rng)

    class Poke(fastsgd.callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            if batch == 2:
                poke()

    with pytest.warns(fastsgd.DivergenceWarning):
        h = tr.fit(X, y, epochs=1, verbose=0, callbacks=[Poke()])
    assert h.diverged is not None and h.diverged["batch"] == 3
    assert all(np.isfinite(w).all() for w in m.get_weights())


@pytest.mark.parametrize("when", ["between epochs", "between fits"])
def test_weights_written_between_epochs_or_fits_are_checked_again(when, rng):
    """Every epoch's start forgets the bounds (Update.configure), and every fit starts
    without them: a weight set at an epoch's end or between two fits, one whose L2
    gradient overflows, makes the next step check and refuse."""
    X, y, m, tr, poke = _poked(rng)

    class Poke(fastsgd.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            poke()

    if when == "between epochs":
        with pytest.warns(fastsgd.DivergenceWarning):
            h = tr.fit(X, y, epochs=2, verbose=0, callbacks=[Poke()])
        assert h.diverged == {"epoch": 1, "batch": 0, "lr": 0.1}
    else:
        tr.fit(X, y, epochs=1, verbose=0)
        poke()
        with pytest.warns(fastsgd.DivergenceWarning):
            h = tr.fit(X, y, epochs=1, verbose=0)
        assert h.diverged == {"epoch": 0, "batch": 0, "lr": 0.1}
    assert all(np.isfinite(w).all() for w in m.get_weights())


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_refuses_a_restored_negative_second_moment(dtype):
    """A second moment restored below zero would put a square root of a negative
    number into the step: the step is refused and writes nothing (its quick check
    looked at the numerator and the parameter only)."""
    p = np.ones(8, dtype)
    opt = Adam(0.001)
    assert opt.step([p], [np.full(8, 1e-3, dtype)])
    state = opt.get_state()
    state["state"][0][1][...] = -1.0
    opt.set_state(state)
    before = p.copy()
    assert opt.step([p], [np.zeros(8, dtype)]) is False
    np.testing.assert_array_equal(p, before)


@pytest.mark.parametrize("case", ["lr above the largest float32", "negative l2"])
def test_the_screen_bounds_the_step_as_float32_computes_it(case):
    """The screen's bound takes the learning rate as the float32 step has it (1e39 is
    infinity there) and an L2 factor's size whatever its sign: such a step after a good
    one, with the bounds valid, is refused as the check pass refuses it."""
    p = np.ones(8, np.float32)
    g = np.full(8, 1e-3, np.float32)
    l2 = -1e30 if case == "negative l2" else 0.0
    update = _net.Update(p, g, [None], [(0, 8, 0.0, l2, False)])
    update.configure({"kind": "sgd", "lr": 0.01 if l2 else 1e-3})
    if l2:
        g[...] = 0
        assert update.run() and np.isfinite(p).all()   # 1 - 0.01 * (-2e30) = 2e28
    else:
        assert update.run()
        update.lr = 1e39
    before = p.copy()
    assert update.run() is False
    np.testing.assert_array_equal(p, before)
