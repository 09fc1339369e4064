"""Each optimizer's fused update against its formulas written out in NumPy."""
import numpy as np
import pytest

import fastsgd
from fastsgd import SGD, Adagrad, Adam, AdamW, Dense, RMSprop, Sequential, Trainer

from conftest import DTYPES


def reference_steps(opt, p, grads):
    """The Keras 3 update rules in float64 NumPy."""
    p = p.astype(np.float64).copy()
    g0 = np.zeros_like(p)
    s = {"v": g0.copy(), "m": g0.copy(), "vh": g0.copy(), "avg": g0.copy(), "mom": g0.copy(),
         "acc": np.full_like(p, getattr(opt, "initial_accumulator_value", 0.0))}
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        g = g + 2 * opt.l2 * p + opt.l1 * np.sign(p)
        p = p - p * opt.weight_decay * opt.lr
        if isinstance(opt, SGD):
            if opt.momentum == 0:
                p = p - opt.lr * g
            else:
                s["v"] = opt.momentum * s["v"] - opt.lr * g
                p = p + (opt.momentum * s["v"] - opt.lr * g if opt.nesterov else s["v"])
        elif isinstance(opt, Adagrad):
            s["acc"] = s["acc"] + g * g
            p = p - opt.lr * g / np.sqrt(s["acc"] + opt.epsilon)
        elif isinstance(opt, RMSprop):
            s["v"] = opt.rho * s["v"] + (1 - opt.rho) * g * g
            den = s["v"] + opt.epsilon
            if opt.centered:
                s["avg"] = opt.rho * s["avg"] + (1 - opt.rho) * g
                den = s["v"] - s["avg"] ** 2 + opt.epsilon
            inc = opt.lr * g / np.sqrt(den)
            if opt.momentum > 0:
                s["mom"] = opt.momentum * s["mom"] + inc
                p = p - s["mom"]
            else:
                p = p - inc
        else:
            s["m"] = s["m"] + (g - s["m"]) * (1 - opt.beta_1)
            s["v"] = s["v"] + (g * g - s["v"]) * (1 - opt.beta_2)
            v = s["v"]
            if opt.amsgrad:
                s["vh"] = np.maximum(s["vh"], s["v"])
                v = s["vh"]
            alpha = opt.lr * np.sqrt(1 - opt.beta_2 ** t) / (1 - opt.beta_1 ** t)
            p = p - alpha * s["m"] / (np.sqrt(v) + opt.epsilon)
    return p


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
    torch = pytest.importorskip("torch")
    opt = make()
    if opt.l1 or opt.l2 or (opt.weight_decay and not isinstance(opt, Adam)):
        pytest.skip("no torch.optim equivalent of these penalties")
    p = rng.standard_normal((20, 7))
    grads = [rng.standard_normal(p.shape) for _ in range(5)]
    tp = torch.tensor(p.copy(), requires_grad=True)
    if isinstance(opt, SGD):
        topt = torch.optim.SGD([tp], lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov)
    elif isinstance(opt, Adagrad):
        pytest.skip("torch Adagrad adds epsilon outside the square root")
    elif isinstance(opt, RMSprop):
        pytest.skip("torch RMSprop adds epsilon outside the square root")
    else:
        pytest.skip("torch Adam places epsilon after the bias correction of v")
    for g in grads:
        tp.grad = torch.tensor(g)
        topt.step()
    work = p.copy()
    for g in grads:
        opt.step([work], [g])
    np.testing.assert_allclose(work, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


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
    state_arrays = [id(s) for st in opt._state for s in st]
    tr.fit(X, y, epochs=1, verbose=0)
    assert [id(s) for st in opt._state for s in st] == state_arrays  # reused, not reallocated
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
