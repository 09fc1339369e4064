"""Each optimizer's fused update against its formulas written out in NumPy."""
import numpy as np
import pytest

import fastsgd
from fastsgd import SGD, Adagrad, Adam, AdamW, Dense, RMSprop, Sequential, Trainer

from _reference import optimizer_steps as reference_steps
from conftest import DTYPES

OPTS = [
    lambda: SGD(0.1),
    lambda: SGD(0.05, momentum=0.9),
    lambda: SGD(0.05, momentum=0.9, nesterov=True),
    lambda: SGD(0.1, weight_decay=0.01, l2=0.001, l1=0.002),
    lambda: Adagrad(0.1),
    lambda: RMSprop(0.01),
    lambda: RMSprop(0.01, momentum=0.5),
    lambda: RMSprop(0.01, centered=True),
    lambda: RMSprop(0.01, momentum=0.3, centered=True),
    lambda: Adam(0.01),
    lambda: Adam(0.01, amsgrad=True),
    lambda: AdamW(0.01),
    lambda: Adam(0.01, l2=0.01),
]


@pytest.mark.parametrize("make", OPTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_steps_match_formulas(make, dtype, rng):
    opt = make()
    p = rng.standard_normal((37, 11)).astype(dtype)
    grads = [rng.standard_normal(p.shape).astype(dtype) for _ in range(6)]
    want = reference_steps(opt, p, grads)
    work = p.copy()
    for g in grads:
        assert opt.step([work], [g])
    assert opt.iterations == 6
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(work, want, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("make", OPTS)
def test_optimizers_match_torch_where_equal(make, rng):
    """Against torch.optim. Keras and PyTorch place epsilon differently in
    Adagrad, RMSprop and Adam; with epsilon = 1e-30 the two formulas agree far
    below the tolerance (epsilon must be > 0)."""
    torch = pytest.importorskip("torch")
    opt = make()
    if opt.l1 or opt.l2 or (opt.weight_decay and not isinstance(opt, Adam)):
        pytest.skip("torch.optim has no equivalent of these penalties")
    if hasattr(opt, "epsilon"):
        opt = type(opt)(**{**opt.get_config(), "epsilon": 1e-30})
    p = rng.standard_normal((20, 7))
    grads = [rng.standard_normal(p.shape) for _ in range(5)]
    tp = torch.tensor(p.copy(), requires_grad=True)
    if isinstance(opt, SGD):
        topt = torch.optim.SGD([tp], lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov)
    elif isinstance(opt, Adagrad):
        topt = torch.optim.Adagrad([tp], lr=opt.lr, eps=0.0,
                                   initial_accumulator_value=opt.initial_accumulator_value)
    elif isinstance(opt, RMSprop):
        topt = torch.optim.RMSprop([tp], lr=opt.lr, alpha=opt.rho, eps=0.0, momentum=opt.momentum,
                                   centered=opt.centered)
    elif isinstance(opt, AdamW):
        topt = torch.optim.AdamW([tp], lr=opt.lr, betas=(opt.beta_1, opt.beta_2), eps=0.0,
                                 weight_decay=opt.weight_decay, amsgrad=opt.amsgrad)
    else:
        topt = torch.optim.Adam([tp], lr=opt.lr, betas=(opt.beta_1, opt.beta_2), eps=0.0,
                                amsgrad=opt.amsgrad)
    for g in grads:
        tp.grad = torch.tensor(g)
        topt.step()
    work = p.copy()
    for g in grads:
        assert opt.step([work], [g])
    np.testing.assert_allclose(work, tp.detach().numpy(), rtol=1e-11, atol=1e-13)


RULES_FOR_BITS = [
    dict(kind="sgd", lr=0.01),
    dict(kind="sgd", lr=0.01, momentum=0.9, nesterov=True, l2=1e-3, l1=1e-4),
    dict(kind="adagrad", lr=0.01, epsilon=1e-7),
    dict(kind="rmsprop", lr=0.01, rho=0.9, momentum=0.5, centered=True, epsilon=1e-7),
    dict(kind="adam", lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.004),
]


@pytest.mark.parametrize("hyper", RULES_FOR_BITS, ids=lambda h: h["kind"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_step_bits_do_not_depend_on_where_an_element_lies(hyper, dtype, rng):
    """An element's new value is the same bits wherever it lies: at any offset from a
    64-byte boundary, and in the vector body or the remainder of the loop (the array cut
    in two at various places). A compiler may treat a vector loop's peeled and remainder
    elements differently, for example by fusing multiply-adds in one and not the other."""
    from fastsgd import kernels
    n = 1037
    item = np.dtype(dtype).itemsize
    p0 = rng.standard_normal(n).astype(dtype)
    g0 = (rng.standard_normal(n) * 0.3).astype(dtype)
    # state slots: positive, the first (a mean square or an accumulator) above the
    # square of the others (centered RMSprop takes a root of their difference)
    s0 = [(np.abs(rng.standard_normal(n)) * 0.1 + (k == 0)).astype(dtype) for k in range(3)]

    def placed(a, shift):
        buf = np.zeros(a.shape[0] + 64, dtype)
        start = (-buf.ctypes.data % 64) // item + shift
        v = buf[start:start + a.shape[0]]
        v[...] = a
        return v

    def stepped(cut, shift):
        p, g, states = p0.copy(), g0.copy(), [s.copy() for s in s0]
        for lo, hi in ((0, cut), (cut, n)):
            if hi == lo:
                continue
            pp, gg = placed(p[lo:hi], shift), placed(g[lo:hi], shift)
            ss = [placed(s[lo:hi], shift) for s in states]
            for step in (1, 2, 3):
                assert kernels.update(dict(hyper, step=step), pp, gg, ss)
            p[lo:hi] = pp
            for s, s_new in zip(states, ss):
                s[lo:hi] = s_new
        return [p] + states

    want = stepped(0, 0)
    for cut, shift in [(1, 0), (5, 3), (16, 1), (17, 0), (31, 7), (513, 2), (n - 3, 5)]:
        for a, b in zip(stepped(cut, shift % (64 // item)), want):
            np.testing.assert_array_equal(a, b)


def _full_penalty_step(hyper, p, g, s, dtype):
    """The step as the C kernel's general formulas compute it, one rounding per operation:
    g += 2 l2 p + l1 sign(p); p -= wd_lr p; then the rule."""
    T = np.dtype(dtype).type
    sgn = (p > 0).astype(dtype) - (p < 0).astype(dtype)
    g = g + (T(2.0 * hyper.get("l2", 0.0)) * p + T(hyper.get("l1", 0.0)) * sgn)
    p = p - p * T(0.0)
    lr = T(hyper["lr"])
    if hyper["kind"] == "sgd":
        mu = T(hyper["momentum"])
        v = mu * s[0] - lr * g
        return p + (mu * v - lr * g), [v]
    b1, b2, t = hyper["beta_1"], hyper["beta_2"], hyper["step"]
    m = s[0] + (g - s[0]) * T(1.0 - b1)
    v = s[1] + (g * g - s[1]) * T(1.0 - b2)
    c1 = T(hyper["lr"] * np.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t))
    return p - c1 * m / (np.sqrt(v) + T(hyper["epsilon"])), [m, v]


@pytest.mark.parametrize("l2", [0.0, 1e-3])
@pytest.mark.parametrize("hyper", [
    dict(kind="sgd", lr=0.01, momentum=0.9, nesterov=True),
    dict(kind="adam", lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7)], ids=["nesterov", "adam"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_step_without_l1_or_decay_is_the_full_formulas_bit_for_bit(hyper, l2, dtype, rng):
    """Without l1 and weight decay the kernel skips those terms; the bits stay those of the
    full formulas, signed zeros included (a parameter of -0 with a gradient of -0)."""
    from fastsgd import kernels
    n = 203
    p = rng.standard_normal(n).astype(dtype)
    g = (rng.standard_normal(n) * 0.3).astype(dtype)
    p[:4] = [0.0, -0.0, 0.0, -0.0]
    g[:4] = [0.0, 0.0, -0.0, -0.0]
    p[4:6], g[4:6] = -1e-30, -0.0
    states = [(np.abs(rng.standard_normal(n)) * 0.1).astype(dtype)
              for _ in range(1 if hyper["kind"] == "sgd" else 2)]
    for s in states:
        s[:6] = 0.0                   # so that the signs of those zeros reach the results
    for step in (1, 2, 3):
        h = dict(hyper, step=step, l2=l2)
        want_p, want_s = _full_penalty_step(h, p, g, states, dtype)
        assert kernels.update(h, p, g, states)
        bits = np.dtype(f"u{np.dtype(dtype).itemsize}")
        for got, want in zip([p] + states, [want_p] + want_s):
            np.testing.assert_array_equal(got.view(bits), want.view(bits))


def test_step_that_would_overflow_leaves_parameters_untouched():
    p = np.array([1.0, 2.0, 3e38], np.float32)
    g = np.array([1.0, 1.0, -1e38], np.float32)
    before = p.copy()
    assert not SGD(10.0).step([p], [g])
    np.testing.assert_array_equal(p, before)


def test_state_allocated_once_and_resumes_exactly(tmp_path, rng):
    X = rng.random((256, 8))
    y = rng.integers(0, 3, 256)

    def model():
        return Sequential([Dense(6, "relu", input_dim=8), Dense(3, "softmax")], seed=1,
                          dtype="float64")

    m1 = model()
    opt = Adam(0.01)
    tr = Trainer(m1, "cross_entropy", opt, batch_size=32, shuffle=False)
    tr.fit(X, y, epochs=2, verbose=0)
    state_arrays = [id(s) for s in opt._slots]
    assert len(state_arrays) == 2 and all(s.shape == (6 * 8 + 6 + 6 * 3 + 3,) for s in opt._slots)
    tr.fit(X, y, epochs=1, verbose=0)
    assert [id(s) for s in opt._slots] == state_arrays  # one flat array per slot, reused
    tr.fit(X, y, epochs=2, verbose=0)
    full = m1.get_weights()

    m2 = model()
    opt2 = Adam(0.01)
    Trainer(m2, "cross_entropy", opt2, batch_size=32, shuffle=False).fit(X, y, epochs=3, verbose=0)
    m2.save(tmp_path / "ck.npz", optimizer=opt2)
    m3, opt3 = fastsgd.load_model(tmp_path / "ck.npz", return_optimizer=True)
    assert isinstance(opt3, Adam) and opt3.iterations == opt2.iterations
    Trainer(m3, "cross_entropy", opt3, batch_size=32, shuffle=False).fit(X, y, epochs=2, verbose=0)
    for p, q in zip(m3.get_weights(), full):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("make,exc,match", [
    (lambda: SGD(momentum=1.0), ValueError, "momentum"),
    (lambda: SGD(momentum=-0.1), ValueError, "momentum"),
    (lambda: SGD(nesterov=True), ValueError, "nesterov"),
    (lambda: SGD(nesterov="yes"), TypeError, "nesterov"),
    (lambda: Adam(beta_1=1.0), ValueError, "beta_1"),
    (lambda: Adam(beta_2=-0.5), ValueError, "beta_2"),
    (lambda: Adam(epsilon=float("nan")), ValueError, "epsilon"),
    (lambda: Adam(epsilon=0.0), ValueError, "epsilon"),
    (lambda: RMSprop(epsilon=0.0), ValueError, "epsilon"),
    (lambda: Adagrad(epsilon=0.0, initial_accumulator_value=0.0), ValueError, "epsilon"),
    (lambda: Adam(amsgrad=1), TypeError, "amsgrad"),
    (lambda: RMSprop(rho=1.5), ValueError, "rho"),
    (lambda: Adagrad(initial_accumulator_value=-1), ValueError, "initial_accumulator_value"),
    (lambda: AdamW(weight_decay=-1), ValueError, "weight_decay"),
    (lambda: SGD(l1=-1), ValueError, "l1"),
])
def test_bad_optimizer_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_adam_trains_the_intermediate_net_on_the_sample():
    from fastsgd.datasets import load_mnist_sample
    (X, y), (Xt, yt) = load_mnist_sample()
    m = Sequential([Dense(64, "relu", input_dim=784), Dense(64, "relu"), Dense(10, "softmax")],
                   seed=0)
    tr = Trainer(m, "cross_entropy", Adam(0.001), batch_size=128, seed=0)
    tr.fit(X, y, epochs=5, verbose=0)
    assert tr.evaluate(Xt, yt)["accuracy"] > 0.9


# ---- schedules and the learning-rate finder ---------------------------------------------
def test_schedule_sequences():
    from fastsgd import Constant, CosineDecay, ExponentialDecay, InverseTimeDecay, StepDecay
    assert Constant().sequence(3, 0.1) == [0.1, 0.1, 0.1]
    assert StepDecay(0.5, 2).sequence(5, 1.0) == [1.0, 1.0, 0.5, 0.5, 0.25]
    np.testing.assert_allclose(ExponentialDecay(0.5).sequence(3, 0.2), [0.2, 0.1, 0.05])
    np.testing.assert_allclose(ExponentialDecay(0.5, 2, staircase=True).sequence(4, 1.0),
                               [1, 1, 0.5, 0.5])
    np.testing.assert_allclose(ExponentialDecay(0.25, 2).sequence(3, 1.0), [1, 0.5, 0.25])
    np.testing.assert_allclose(InverseTimeDecay(1.0).sequence(3, 1.0), [1, 0.5, 1 / 3])
    np.testing.assert_allclose(CosineDecay(4).sequence(6, 1.0),
                               [1, 0.5 + 0.5 * np.cos(np.pi / 4), 0.5, 0.5 - 0.5 * np.cos(np.pi / 4), 0, 0],
                               atol=1e-15)
    np.testing.assert_allclose(CosineDecay(2, alpha=0.1, warmup_epochs=2, warmup_target=1.0).sequence(5, 0.1),
                               [0.1, 0.55, 1.0, 0.55, 0.1])
    with pytest.raises(ValueError, match="drop"):
        StepDecay(drop=0)
    with pytest.raises(ValueError, match="decay_epochs"):
        CosineDecay(0)


def test_scheduler_sets_lr_each_epoch_and_history_records_it(rng):
    from fastsgd import LearningRateScheduler, StepDecay
    X = rng.random((64, 3))
    y = rng.integers(0, 2, 64)
    m = Sequential([Dense(2, "softmax", input_dim=3)], seed=0)
    h = Trainer(m, "cross_entropy", SGD(0.4), batch_size=16).fit(
        X, y, epochs=5, verbose=0, callbacks=[LearningRateScheduler(StepDecay(0.5, 2))])
    assert h.history["lr"] == [0.4, 0.4, 0.2, 0.2, 0.1]
    with pytest.raises(ValueError, match="invalid learning rate"):
        Trainer(m, "cross_entropy", SGD(0.4)).fit(
            X, y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda e, lr: -1.0)])


def test_reduce_lr_on_plateau_scripted():
    from fastsgd import ReduceLROnPlateau

    class T:
        optimizer = SGD(1.0)

    cb = ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.0, cooldown=1, min_lr=0.2)
    cb.trainer = T()
    cb.on_train_begin()
    lrs = []
    for e, v in enumerate([1.0, 1.0, 1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]):
        cb.on_epoch_end(e, {"val_loss": v})
        lrs.append(T.optimizer.lr)
    # e2: patience runs out -> 0.5 (cooldown 1); e3: cooldown, 0.9 is a new best;
    # e5: out again -> 0.25; e7: -> 0.2 (min_lr); e9: already at min_lr
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2, 0.2]


def test_find_lr_leaves_model_untouched_is_reproducible_and_stops_on_divergence():
    from fastsgd.datasets import load_mnist_sample
    (X, y), _ = load_mnist_sample()
    m = Sequential([Dense(32, "relu", input_dim=784), Dense(10, "softmax")], seed=0)
    before = m.get_weights()
    r1 = fastsgd.find_lr(m, "cross_entropy", X, y, batch_size=64, seed=3, max_lr=1e4)
    for p, q in zip(m.get_weights(), before):
        np.testing.assert_array_equal(p, q)
    r2 = fastsgd.find_lr(m, "cross_entropy", X, y, batch_size=64, seed=3, max_lr=1e4)
    assert r1.lrs == r2.lrs and r1.losses == r2.losses and r1.suggestion == r2.suggestion
    assert r1.stopped_early and len(r1.lrs) < 100
    assert r1.lrs[0] == pytest.approx(1e-6)
    assert r1.suggestion == pytest.approx(r1.lrs[int(np.argmin(r1.losses))] / 10)
    assert 1e-4 < r1.suggestion < 10
    with pytest.raises(ValueError, match="max_lr"):
        fastsgd.find_lr(m, "cross_entropy", X, y, min_lr=1.0, max_lr=0.5)


def test_find_lr_picks_a_rate_that_trains_the_intermediate_net(mnist_dir):
    from fastsgd.datasets import load_mnist
    (X, y), (Xt, yt) = load_mnist(mnist_dir, download=False)
    m = Sequential([Dense(64, "relu", input_dim=784), Dense(64, "relu"), Dense(10, "softmax")],
                   seed=42)
    r = fastsgd.find_lr(m, "cross_entropy", X, y, batch_size=128, seed=0)
    tr = Trainer(m, "cross_entropy", SGD(r.suggestion), batch_size=128, seed=42)
    tr.fit(X, y, epochs=20, verbose=0)
    assert tr.evaluate(Xt, yt)["accuracy"] >= 0.97, r


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_check_without_the_division_refuses_and_takes_what_the_formulas_say(dtype):
    """Adam's check pass first bounds each step by its numerator over epsilon; where the bound
    cannot vouch for a step the exact formulas decide: a step that overflows through the
    division is refused with nothing written, and a large one that stays finite is taken,
    bit for bit as the formulas give it."""
    from fastsgd import kernels
    big = np.finfo(dtype).max
    h = dict(kind="adam", lr=1.0, beta_1=0.9, beta_2=0.999, epsilon=1e-8, step=1)
    # element 1: m = 0.9 * big / 4 over a zero second moment: the step overflows
    p = np.array([1.0, 2.0, 3.0], dtype)
    g = np.array([0.1, 0.0, 0.2], dtype)
    states = [np.array([0.0, big / 4, 0.0], dtype), np.zeros(3, dtype)]
    before = [p.copy()] + [s.copy() for s in states]
    assert not kernels.update(h, p, g, states)
    for a, b in zip([p] + states, before):
        np.testing.assert_array_equal(a, b)
    # the same numerator over a second moment of big / 8: a step of about sqrt(big) * 30
    states[1][1] = big / 8
    want_p, want_s = _full_penalty_step(h, p, g, states, dtype)
    assert np.isfinite(want_p).all() and abs(want_p[1]) > 1e3
    assert kernels.update(h, p, g, states)
    bits = np.dtype(f"u{np.dtype(dtype).itemsize}")
    for got, want in zip([p] + states, [want_p] + want_s):
        np.testing.assert_array_equal(got.view(bits), want.view(bits))
