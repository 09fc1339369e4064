"""Property-based tests (hypothesis) of the kernel API and the Trainer.

Kernels: random shapes (0 and 1 included), both dtypes, C-contiguous,
Fortran-ordered, strided, misaligned and read-only arrays, overlapping
outputs, labels in and out of range, NaN and infinity among the values. Each
call must either raise the documented TypeError/ValueError -- leaving every
array it could write untouched -- or return what a plain NumPy reference
computes; and a call whose arguments are all valid must not raise.

Trainer: random small networks (Dense, Dropout, BatchNormalization),
activations, costs, optimizers and hyperparameters (learning rates from
1e-12 to 1e12), data of several kinds with NaN placed anywhere. Training must
end normally, with a DivergenceWarning, or with a documented exception; the
weights are finite afterwards whatever happened, and a refused or diverged
step leaves them exactly as after the last step that was applied.

Example counts scale with FASTSGD_FUZZ_SCALE (default 1; the sanitizer job
runs a fraction). The "ci" profile (FASTSGD_HYPOTHESIS_PROFILE=ci, or CI set;
see conftest.py) derandomizes the examples so a CI run is reproducible.
"""
import math
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st

import fastsgd
from fastsgd import kernels as K

from _reference import activate

SCALE = float(os.environ.get("FASTSGD_FUZZ_SCALE", "1"))
ACTS = ["linear", "sigmoid", "tanh", "relu", "leaky_relu", "softmax"]
DTYPES = [np.float32, np.float64]
EPS = {np.float32: float(np.finfo(np.float32).eps), np.float64: float(np.finfo(np.float64).eps)}
HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


def examples(n):
    return max(2, int(n * SCALE))


def fuzz(n):
    """The settings of one property: ``n`` examples (scaled), no deadline."""
    return settings(max_examples=examples(n), deadline=None, suppress_health_check=HEALTH)


# ---- arrays ---------------------------------------------------------------------------
SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 1e-30, 3e38, 1e300]


@st.composite
def values(draw, shape, dtype, specials=False, low=-1.0, high=1.0):
    """A C-contiguous array of ``shape``: seeded normal values times a drawn
    scale, and (with ``specials``) a few NaN/inf/huge/tiny values placed anywhere."""
    seed = draw(st.integers(0, 2 ** 32 - 1))
    scale = draw(st.sampled_from([1e-3, 0.1, 1.0, 10.0, 1e3]))
    rng = np.random.default_rng(seed)
    a = (rng.uniform(low, high, shape) * scale)
    n = a.size
    if specials and n:
        for _ in range(draw(st.integers(0, 3))):
            where = draw(st.integers(0, n - 1))
            a.flat[where] = draw(st.sampled_from(SPECIALS))
    with np.errstate(over="ignore"):
        return a.astype(dtype)


#: the memory layouts an array argument is drawn in: mostly C-contiguous, so that most calls
#: are valid, and each way the checks must refuse
LAYOUTS = ["c"] * 14 + ["f", "strided", "misaligned", "readonly", "list"]


def lay_out(a, layout):
    """``a``'s values in the memory layout ``layout`` (which the checks may refuse)."""
    if layout == "c":
        return np.array(a, order="C")  # copies: the caller keeps the values
    if layout == "f":
        return np.array(a, order="F")
    if layout == "strided":
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],) if a.ndim else (), a.dtype)
        if a.ndim == 0:
            return a.copy()
        view = big[..., ::2]
        view[...] = a
        return view
    if layout == "misaligned":
        buf = bytearray(a.nbytes + 1)
        m = np.frombuffer(buf, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
        m[...] = a
        return m
    if layout == "readonly":
        r = np.array(a)
        r.flags.writeable = False
        return r
    if layout == "list":
        return a.tolist()
    raise AssertionError(layout)


def acceptable(a, dtype=None, ndim=None, writeable=False):
    """Whether the documented checks accept ``a`` (the oracle of the properties)."""
    return (isinstance(a, np.ndarray) and a.dtype in (np.float32, np.float64)
            and (dtype is None or a.dtype == dtype) and (ndim is None or a.ndim == ndim)
            and a.flags.c_contiguous and a.flags.aligned and (a.flags.writeable or not writeable))


def snapshot(*arrays):
    return [bytes(np.ascontiguousarray(a).view(np.uint8).ravel()) if isinstance(a, np.ndarray)
            else None for a in arrays]


def call(fn, writes, valid):
    """Run ``fn``: a documented exception must leave the arrays in ``writes``
    byte for byte as they were, and may only happen when ``valid`` is false.
    Returns the result, or None when it raised."""
    before = snapshot(*writes)
    try:
        out = fn()
        event("accepted")
        return out
    except (TypeError, ValueError) as e:
        event(f"refused: {type(e).__name__}")
        note(f"raised {type(e).__name__}: {e}")
        assert not valid, f"valid arguments were refused: {type(e).__name__}: {e}"
        assert snapshot(*writes) == before, "a refused call wrote to an array"
        return None


def close(got, want, dtype, scale=None, k=1):
    """``got`` within a rounding-error bound of the float64 reference ``want``."""
    want = np.asarray(want, np.float64)
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    big = float(np.finfo(dtype).max)
    with np.errstate(invalid="ignore"):
        overflow = np.abs(want) > big * (1 - 1e-6)  # the dtype cannot hold it: inf is right
    assert (~np.isfinite(got[overflow]) | (np.abs(got[overflow]) > big / 2)).all()
    finite = np.isfinite(want) & ~overflow
    np.testing.assert_array_equal(np.isnan(got) & ~finite, np.isnan(want) & ~finite)
    if scale is None:
        scale = np.abs(want)
    scale = np.where(np.isnan(scale), np.inf, scale)  # no bound from a NaN-fed scale
    bound = 8 * (k + 4) * EPS[np.dtype(dtype).type] * np.where(finite, scale, 0) + 1e-30
    if np.dtype(dtype) == np.float32:
        bound = bound + 1e-37
    with np.errstate(invalid="ignore"):
        err = np.abs(np.where(finite, got - want, 0))
    assert (err <= bound).all(), f"max error {err.max()} over bound {bound[err > bound][:3]}"


# ---- gemm -------------------------------------------------------------------------------
@fuzz(600)
@given(st.data())
def test_gemm(data):
    dt = data.draw(st.sampled_from(DTYPES))
    M, N, K_ = (data.draw(st.integers(0, 24)) for _ in range(3))
    ta, tb = data.draw(st.booleans()), data.draw(st.booleans())
    use_rows = data.draw(st.booleans())
    stored = data.draw(st.integers(0, 30)) if use_rows else None
    a_shape = (K_, M) if ta else (M, K_)
    if use_rows:  # a_rows picks `stored`-indexed rows of the stored a
        rows_n = a_shape[0]
        a_shape = (stored, a_shape[1])
        rows = np.array(data.draw(st.lists(st.integers(-1, max(stored, 1)), min_size=rows_n,
                                           max_size=rows_n)), np.int64)
    else:
        rows = None
    b_shape = (N, K_) if tb else (K_, N)
    a = lay_out(data.draw(values(a_shape, dt)), data.draw(st.sampled_from(LAYOUTS)))
    b_dt = data.draw(st.sampled_from([dt, dt, dt, np.float32 if dt == np.float64 else np.float64]))
    b = lay_out(data.draw(values(b_shape, b_dt)), data.draw(st.sampled_from(LAYOUTS)))
    alpha = data.draw(st.sampled_from([1.0, 0.0, -0.5, 2.0]))
    beta = data.draw(st.sampled_from([0.0, 0.0, 1.0, -1.5]))
    out_kind = data.draw(st.sampled_from(["none", "fresh", "fresh", "alias_a", "alias_b", "bad"]))
    c0 = data.draw(values((M, N), dt))
    if out_kind == "none":
        out = None
    elif out_kind == "fresh":
        out = lay_out(c0, data.draw(st.sampled_from(LAYOUTS)))
    elif out_kind == "alias_a" and isinstance(a, np.ndarray) and a.shape == (M, N) and a.dtype == dt:
        out = a
    elif out_kind == "alias_b" and isinstance(b, np.ndarray) and b.shape == (M, N) and b.dtype == dt:
        out = b
    else:
        out = lay_out(data.draw(values((N, M + 1), dt)), "c")  # the wrong shape
    in_range = rows is None or (rows.size == 0 or (rows.min() >= 0 and rows.max() < stored))
    valid = (acceptable(a, ndim=2) and acceptable(b, dtype=a.dtype, ndim=2) and in_range
             and (out is None and beta == 0 or out is not None and acceptable(out, a.dtype, 2, True)
                  and out.shape == (M, N) and not np.may_share_memory(out, a)
                  and not np.may_share_memory(out, b)))
    note(f"valid={valid}")
    writes = [out] if isinstance(out, np.ndarray) and out.flags.writeable else []
    res = call(lambda: K.gemm(a, b, trans_a=ta, trans_b=tb, alpha=alpha, beta=beta, out=out,
                              a_rows=rows), writes, valid)
    if res is None:
        return
    assert out is None or res is out
    A = np.asarray(a, np.float64)
    if rows is not None:
        A = A[rows]
    A = A.T if ta else A
    B = np.asarray(b, np.float64)
    B = B.T if tb else B
    want = alpha * (A @ B) + (beta * np.asarray(c0, np.float64) if beta else 0.0)
    scale = abs(alpha) * (np.abs(A) @ np.abs(B)) + abs(beta) * np.abs(np.asarray(c0, np.float64))
    close(res, want, dt, scale, k=K_)


# ---- activations ----------------------------------------------------------------------------
def _act_ref(z, act, slope, dtype=np.float64):
    """The activation in float64; softmax's exponentials overflow where they would
    in `dtype` (a row holding inf or NaN is not shifted by its maximum)."""
    if z.size == 0:
        return z.copy()
    with np.errstate(all="ignore"):
        if act == "relu":
            return np.where(np.isnan(z), z, np.maximum(z, 0))
        if act == "leaky_relu":
            return np.where(z > 0, z, slope * z)
        if act == "sigmoid":
            return np.where(z >= 0, 1 / (1 + np.exp(-np.abs(z))),
                            np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))))
        if act == "softmax":
            m = z.max(axis=1, keepdims=True)
            m = np.where(np.isfinite(m) | (m == -np.inf), m, 0.0)
            e = np.exp(z - m)
            e = np.where(e > np.finfo(dtype).max, np.inf, e)
            return e / e.sum(axis=1, keepdims=True)
        return activate(z, act, slope)


def _act_back_ref(a, d, act, slope):
    with np.errstate(all="ignore"):
        if act == "sigmoid":
            return d * (a * (1 - a))
        if act == "tanh":
            return d * (1 - a * a)
        if act == "relu":
            return np.where(a > 0, d, 0.0)
        if act == "leaky_relu":
            return np.where(a > 0, d, slope * d)
        if act == "softmax":
            return a * (d - (d * a).sum(axis=1, keepdims=True))
        return d


@fuzz(600)
@given(st.data())
def test_activation_forward_and_backward(data):
    dt = data.draw(st.sampled_from(DTYPES))
    shape = (data.draw(st.integers(0, 5)), data.draw(st.integers(0, 9)))
    act = data.draw(st.sampled_from(ACTS + ["swish", None]))
    slope = data.draw(st.sampled_from([0.3, 0.0, 2.0, "x"]))
    z0 = data.draw(values(shape, dt, specials=True, low=-4, high=4))
    z = lay_out(z0, data.draw(st.sampled_from(LAYOUTS)))
    valid = acceptable(z, ndim=2, writeable=True) and act in ACTS and slope != "x"
    writes = [z] if isinstance(z, np.ndarray) and z.flags.writeable else []
    res = call(lambda: K.activation_forward(z, act, slope), writes, valid)
    if res is not None:
        assert res is z
        want = _act_ref(np.asarray(z0, np.float64), act, slope, dt)
        close(res, want, dt, np.maximum(np.abs(want), 1.0) if act in ("sigmoid", "softmax", "tanh")
              else None, k=shape[1] + 16)
    # backward, on finite activations
    a = _act_ref(data.draw(values(shape, np.float64, low=-3, high=3)), act if act in ACTS else
                 "linear", 0.3).astype(dt)
    d0 = data.draw(values(shape, dt, specials=True))
    d = lay_out(d0, data.draw(st.sampled_from(LAYOUTS)))
    if data.draw(st.booleans()) and isinstance(d, np.ndarray) and d.size:
        a = d  # d is a: refused
    valid = (acceptable(a, ndim=2) and acceptable(d, a.dtype, 2, True) and a.shape == d.shape
             and act in ACTS and slope != "x" and not np.may_share_memory(a, d))
    writes = [d] if isinstance(d, np.ndarray) and d.flags.writeable else []
    res = call(lambda: K.activation_backward(a, d, act, slope), writes, valid)
    if res is not None:
        want = _act_back_ref(np.asarray(a, np.float64), np.asarray(d0, np.float64), act, slope)
        scale = np.abs(np.asarray(d0, np.float64)) * (1 + np.abs(np.asarray(a, np.float64)))
        if act == "softmax":
            with np.errstate(invalid="ignore", over="ignore"):
                scale = scale + np.abs(np.asarray(a, np.float64)) * np.abs(
                    np.asarray(d0, np.float64) * np.asarray(a, np.float64)).sum(1, keepdims=True)
        close(res, want, dt, scale, k=shape[1] + 4)


# ---- the dense layer ------------------------------------------------------------------------
@fuzz(500)
@given(st.data())
def test_dense_forward_and_backward(data):
    dt = data.draw(st.sampled_from(DTYPES))
    n, n_in, n_out = data.draw(st.integers(0, 7)), data.draw(st.integers(0, 9)), \
        data.draw(st.integers(0, 6))
    act = data.draw(st.sampled_from(ACTS))
    use_rows = data.draw(st.booleans())
    stored = data.draw(st.integers(0, 10))
    rows = (np.array(data.draw(st.lists(st.integers(-1, stored), min_size=n, max_size=n)),
                     np.int64) if use_rows else None)
    x = lay_out(data.draw(values((stored if use_rows else n, n_in), dt)),
                data.draw(st.sampled_from(LAYOUTS)))
    w = lay_out(data.draw(values((n_in, n_out), dt)), data.draw(st.sampled_from(LAYOUTS)))
    b = lay_out(data.draw(values((n_out,), dt)), data.draw(st.sampled_from(LAYOUTS)))
    in_range = rows is None or rows.size == 0 or (rows.min() >= 0 and rows.max() < stored)
    valid = (acceptable(x, ndim=2) and acceptable(w, x.dtype, 2) and acceptable(b, x.dtype, 1)
             and in_range and w.shape[0] == x.shape[1] and n_out >= 1 and b.shape == (n_out,))
    res = call(lambda: K.dense_forward(x, w, b, act, 0.3, x_rows=rows), [], valid)
    if res is None:
        return
    X = np.asarray(x, np.float64)
    X = X[rows] if rows is not None else X
    W, B = np.asarray(w, np.float64), np.asarray(b, np.float64)
    z = X @ W + B
    want = _act_ref(z, act, 0.3)
    scale = np.abs(X) @ np.abs(W) + np.abs(B)
    close(res, want, dt, scale if act not in ("sigmoid", "softmax", "tanh") else
          np.maximum(scale, 1.0), k=n_in + n_out + 8)
    # backward from these activations
    a = res.copy()
    d0 = data.draw(values(a.shape, dt))
    d = d0.copy()
    need_dx = data.draw(st.booleans())
    dW, db, dX = K.dense_backward(x, w, a, d, act, 0.3, need_dx=need_dx, x_rows=rows)
    D = _act_back_ref(np.asarray(a, np.float64), np.asarray(d0, np.float64), act, 0.3)
    close(d, D, dt, np.abs(np.asarray(d0, np.float64)) * 2 + np.abs(D), k=n_out + 4)
    Dg = np.asarray(d, np.float64)  # the kernel's own dL/dZ, for the products
    close(dW, X.T @ Dg, dt, np.abs(X.T) @ np.abs(Dg), k=n + 2)
    close(db, Dg.sum(axis=0), dt, np.abs(Dg).sum(axis=0), k=n + 2)
    if need_dx:
        close(dX, Dg @ W.T, dt, np.abs(Dg) @ np.abs(W.T), k=n_out + 2)
    else:
        assert dX is None


# ---- the output layer and its cost ------------------------------------------------------------
COMBOS = [("cross_entropy", "softmax"), ("binary_cross_entropy", "sigmoid"), ("mse", "linear"),
          ("mse", "sigmoid"), ("mse", "tanh"), ("mse", "softmax"), ("mae", "linear"),
          ("mae", "tanh"), ("huber", "linear"), ("huber", "sigmoid")]


def _cost_ref(cost, act, z, t, w, delta):
    """(mean loss, dL/dz) in float64, the formulas of csrc/cost_tmpl.h."""
    rows, cols = z.shape
    norm = w.sum() if w is not None else rows
    wr = (w if w is not None else np.ones(rows))[:, None]
    inv = 1.0 / norm if norm > 0 else 1.0
    with np.errstate(all="ignore"):
        if cost == "cross_entropy":
            m = z.max(axis=1, keepdims=True)
            lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
            row = lse - (t * z).sum(axis=1)
            p = np.exp(z - lse[:, None])
            grad = (p - t) * wr * inv
        elif cost == "binary_cross_entropy":
            row = (np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))).mean(axis=1)
            p = 1 / (1 + np.exp(-z))
            grad = (p - t) * wr * inv / cols
        else:
            a = _act_ref(z, act, 0.3)
            x = a - t
            if cost == "mse":
                row, g = (x * x).mean(axis=1), 2 * x
            elif cost == "mae":
                row, g = np.abs(x).mean(axis=1), np.sign(x)
            else:
                ax = np.abs(x)
                row = np.where(ax <= delta, 0.5 * x * x, delta * (ax - 0.5 * delta)).mean(axis=1)
                g = np.clip(x, -delta, delta)
            grad = _act_back_ref(a, g * wr * inv / cols, act, 0.3)
    loss = (row * wr[:, 0]).sum() * inv if w is not None else row.mean()
    return loss, grad


@fuzz(800)
@given(st.data())
def test_output_cost(data):
    dt = data.draw(st.sampled_from(DTYPES))
    cost, act = data.draw(st.sampled_from(COMBOS + [("cross_entropy", "sigmoid"), ("hinge", "linear")]))
    rows, cols = data.draw(st.integers(0, 6)), data.draw(st.integers(0, 5))
    z0 = data.draw(values((rows, cols), dt, low=-4, high=4))
    z = lay_out(z0, data.draw(st.sampled_from(LAYOUTS)))
    kind = data.draw(st.sampled_from(["labels", "labels", "float", "float_bad"]))
    if kind == "labels":
        y = np.array(data.draw(st.lists(st.integers(-1, max(cols, 2)), min_size=rows,
                                        max_size=rows)), np.int64)
        y_ok = rows > 0 and y.min() >= 0 and (y.max() < cols if cols > 1 else y.max() <= 1)
    else:
        t = data.draw(values((rows, cols), dt, low=0.0, high=1.0))
        if cost == "cross_entropy" and rows and cols:  # one-hot rows for the argmax
            t = np.eye(cols, dtype=dt)[np.arange(rows) % cols]
        y = lay_out(t, "c" if kind == "float" else data.draw(st.sampled_from(LAYOUTS)))
        y_ok = acceptable(y, z.dtype if isinstance(z, np.ndarray) else None, 2) and \
            y.shape == (rows, cols)
    wk = data.draw(st.sampled_from(["none", "none", "ones", "random", "zeros", "bad"]))
    sw = {"none": None, "ones": np.ones(rows), "zeros": np.zeros(rows),
          "random": np.abs(data.draw(values((rows,), np.float64))),
          "bad": np.full(rows, -1.0) if rows else np.ones(rows + 1)}[wk]
    delta = data.draw(st.sampled_from([1.0, 0.5, 3.0]))
    valid = (acceptable(z, ndim=2, writeable=True) and rows >= 1 and cols >= 1 and y_ok
             and (cost, act) in COMBOS and not (cost == "cross_entropy" and cols < 2)
             and wk != "bad" and not (isinstance(y, np.ndarray) and y.dtype != np.int64
                                      and np.may_share_memory(y, z)))
    writes = [z] if isinstance(z, np.ndarray) and z.flags.writeable else []
    res = call(lambda: K.output_cost(z, y, cost, act, 0.3, delta=delta, sample_weight=sw),
               writes, valid)
    if res is None:
        return
    loss, correct, dz = res
    if y.dtype == np.int64:
        t = (np.eye(cols)[y] if cols > 1 else y[:, None].astype(np.float64))
    else:
        t = np.asarray(y, np.float64)
    sw64 = None if sw is None else np.asarray(sw, dt).astype(np.float64)
    want_loss, want_grad = _cost_ref(cost, act, np.asarray(z0, np.float64), t, sw64, delta)
    assert 0 <= correct <= rows * cols
    assert math.isclose(loss, want_loss, rel_tol=2e-4 if dt == np.float32 else 1e-9,
                        abs_tol=1e-5 if dt == np.float32 else 1e-12), (loss, want_loss)
    if cost == "mae":  # sign(a - t) jumps where a == t in one precision only
        assume(np.all(np.abs(_act_ref(np.asarray(z0, np.float64), act, 0.3) - t) > 1e-4))
    # exp(z - m) carries the rounding error of z - m: relative error |z| eps
    cond = 1 + np.abs(np.asarray(z0, np.float64)).max(axis=1, keepdims=True)
    close(dz, want_grad, dt, (np.abs(want_grad) + 4.0 / max(rows * cols, 1)) * cond, k=cols + 16)


# ---- gather -----------------------------------------------------------------------------------
@fuzz(300)
@given(st.data())
def test_gather_rows(data):
    dt = data.draw(st.sampled_from(DTYPES))
    n, cols = data.draw(st.integers(0, 8)), data.draw(st.integers(0, 5))
    x = lay_out(data.draw(values((n, cols), dt, specials=True)), data.draw(st.sampled_from(LAYOUTS)))
    idx = np.array(data.draw(st.lists(st.integers(-2, n + 1), max_size=10)), np.int64)
    out = None
    if data.draw(st.booleans()):
        out = lay_out(np.zeros((idx.size, cols), dt), data.draw(st.sampled_from(LAYOUTS)))
    valid = (acceptable(x, ndim=2) and (idx.size == 0 or idx.min() >= 0 and idx.max() < n)
             and (out is None or acceptable(out, x.dtype, 2, True)))
    writes = [out] if isinstance(out, np.ndarray) and out.flags.writeable else []
    res = call(lambda: K.gather_rows(x, idx, out=out), writes, valid)
    if res is not None:
        np.testing.assert_array_equal(res, np.asarray(x)[idx])


# ---- one optimizer step -------------------------------------------------------------------------
RULES = [{"kind": "sgd"}, {"kind": "sgd", "momentum": 0.9},
         {"kind": "sgd", "momentum": 0.5, "nesterov": True}, {"kind": "adagrad"},
         {"kind": "rmsprop"}, {"kind": "rmsprop", "momentum": 0.5},
         {"kind": "rmsprop", "centered": True}, {"kind": "rmsprop", "momentum": 0.3, "centered": True},
         {"kind": "adam"}, {"kind": "adam", "amsgrad": True}]


def _step_ref(h, p, g, s, step):
    """One step in float64 (csrc/optim_tmpl.h's formulas); returns (p, states)."""
    lr, l1, l2, wd = h["lr"], h.get("l1", 0.0), h.get("l2", 0.0), h.get("weight_decay", 0.0)
    mu, eps = h.get("momentum", 0.0), h.get("epsilon", 1e-7)
    s = [x.copy() for x in s]
    with np.errstate(all="ignore"):
        g = g + 2 * l2 * p + l1 * np.sign(p)
        p = p - p * (wd * lr)
        kind = h["kind"]
        if kind == "sgd":
            if mu == 0:
                return p - lr * g, s
            s[0] = mu * s[0] - lr * g
            return (p + (mu * s[0] - lr * g) if h.get("nesterov") else p + s[0]), s
        if kind == "adagrad":
            s[0] = s[0] + g * g
            return p - lr * g / np.sqrt(s[0] + eps), s
        if kind == "rmsprop":
            rho = h.get("rho", 0.9)
            s[0] = rho * s[0] + (1 - rho) * g * g
            den = s[0] + eps
            if h.get("centered"):
                s[2] = rho * s[2] + (1 - rho) * g
                den = s[0] - s[2] * s[2] + eps
            inc = lr * g / np.sqrt(den)
            if mu > 0:
                s[1] = mu * s[1] + inc
                return p - s[1], s
            return p - inc, s
        b1, b2 = h.get("beta_1", 0.9), h.get("beta_2", 0.999)
        s[0] = s[0] + (g - s[0]) * (1 - b1)
        s[1] = s[1] + (g * g - s[1]) * (1 - b2)
        v = s[1]
        if h.get("amsgrad"):
            s[2] = np.maximum(s[2], s[1])
            v = s[2]
        c1 = lr * math.sqrt(1 - b2 ** step) / (1 - b1 ** step)
        return p - c1 * s[0] / (np.sqrt(v) + eps), s


def _step_mag(h, p, g, s, step):
    """The size of the terms that make the new parameter in _step_ref's formulas (the same
    sums with every term made positive, a quotient or root scaled by how much its
    operands cancelled): the rounding error of each operation is at most a few units of
    it, however much the terms cancel."""
    lr, l1, l2, wd = h["lr"], h.get("l1", 0.0), h.get("l2", 0.0), h.get("weight_decay", 0.0)
    mu, eps = h.get("momentum", 0.0), h.get("epsilon", 1e-7)
    with np.errstate(all="ignore"):
        ga = np.abs(g) + 2 * l2 * np.abs(p) + l1          # the penalised gradient's terms
        g1 = g + 2 * l2 * p + l1 * np.sign(p)
        pa = np.abs(p) * (1 + wd * lr)
        kind = h["kind"]
        if kind == "sgd":
            va = mu * np.abs(s[0]) + lr * ga
            return pa + (mu * va + lr * ga if h.get("nesterov") else va)
        if kind == "adagrad":
            den = s[0] + g1 * g1 + eps
            return pa + lr * ga / np.sqrt(den) * (1 + (s[0] + ga * ga + eps) / den)
        if kind == "rmsprop":
            rho = h.get("rho", 0.9)
            ms = rho * s[0] + (1 - rho) * g1 * g1
            ms_a = rho * np.abs(s[0]) + (1 - rho) * ga * ga
            den, den_a = ms + eps, ms_a + eps
            if h.get("centered"):
                mg = rho * s[2] + (1 - rho) * g1
                mg_a = rho * np.abs(s[2]) + (1 - rho) * ga
                den, den_a = ms - mg * mg + eps, ms_a + mg_a * mg_a + eps
            inc_a = lr * ga / np.sqrt(np.abs(den)) * (1 + den_a / np.abs(den))
            return pa + (mu * np.abs(s[1]) + inc_a if mu > 0 else inc_a)
        b1, b2 = h.get("beta_1", 0.9), h.get("beta_2", 0.999)
        m_a = np.abs(s[0]) + (ga + np.abs(s[0])) * (1 - b1)
        v = s[1] + (g1 * g1 - s[1]) * (1 - b2)
        v_a = np.abs(s[1]) + (ga * ga + np.abs(s[1])) * (1 - b2)
        if h.get("amsgrad"):
            v, v_a = np.maximum(s[2], v), np.maximum(np.abs(s[2]), v_a)
        c1 = lr * math.sqrt(1 - b2 ** step) / (1 - b1 ** step)
        return pa + c1 * m_a / (np.sqrt(v) + eps) * (1 + v_a / np.maximum(v, 1e-300))


@fuzz(900)
@given(st.data())
def test_update_is_all_or_nothing(data):
    dt = data.draw(st.sampled_from(DTYPES))
    n = data.draw(st.integers(0, 12))
    h = dict(data.draw(st.sampled_from(RULES)))
    h["lr"] = data.draw(st.sampled_from([1e-12, 1e-3, 0.1, 1.0, 1e3, 1e12, 1e30, math.inf, math.nan]))
    h["epsilon"] = data.draw(st.sampled_from([1e-7, 1e-3, 1.0]))
    h["l1"], h["l2"] = data.draw(st.sampled_from([(0.0, 0.0), (1e-3, 0.0), (0.0, 0.5), (2.0, 3.0)]))
    h["weight_decay"] = data.draw(st.sampled_from([0.0, 0.0, 0.01, 1.0]))
    step = data.draw(st.integers(1, 5))
    h["step"] = step
    p = data.draw(values((n,), dt, specials=data.draw(st.booleans())))
    p = np.where(np.isfinite(p), p, 1.0).astype(dt)  # parameters start finite
    g = data.draw(values((n,), dt, specials=data.draw(st.booleans())))
    n_states = {"sgd": 1, "adagrad": 1, "rmsprop": 3, "adam": 3}[h["kind"]]
    states = [np.abs(data.draw(values((n,), dt))) for _ in range(n_states)]
    p0, s0 = p.copy(), [s.copy() for s in states]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ok = K.update(h, p, g, states)
    assert ok in (True, False)
    event("stepped" if ok else "refused")
    assert np.isfinite(p).all() and all(np.isfinite(s).all() for s in states)
    if not ok:
        assert p.tobytes() == p0.tobytes() and all(a.tobytes() == b.tobytes()
                                                  for a, b in zip(states, s0)), "refused but written"
        return
    want, want_s = _step_ref(h, p0.astype(np.float64), g.astype(np.float64),
                             [s.astype(np.float64) for s in s0], step)
    assume(np.isfinite(want).all() and np.abs(want).max(initial=0) < 1e30)
    # decoupled weight decay subtracts lr * decay * p: its size bounds the cancellation too
    decay = h["lr"] * h["weight_decay"] * np.abs(p0.astype(np.float64)) if h["weight_decay"] \
        else 0.0
    mag = _step_mag(h, p0.astype(np.float64), g.astype(np.float64),
                    [x.astype(np.float64) for x in s0], step)
    close(p, want, dt, np.abs(p0.astype(np.float64)) + np.abs(want - p0) * 4 + decay + mag + 1e-30,
          k=16)


@fuzz(300)
@given(st.data())
def test_update_takes_every_moderate_step(data):
    """From zero state, steps with moderate finite gradients are never refused."""
    dt = data.draw(st.sampled_from(DTYPES))
    n = data.draw(st.integers(1, 12))
    h = dict(data.draw(st.sampled_from(RULES)))
    h["lr"] = data.draw(st.sampled_from([1e-6, 1e-3, 0.1, 1.0]))
    p = data.draw(values((n,), dt))
    states = [np.zeros(n, dt) for _ in range(3)]
    for step in range(1, data.draw(st.integers(1, 6)) + 1):
        h["step"] = step
        g = data.draw(values((n,), dt))
        assert K.update(h, p, g, states) is True, f"step {step} refused"
        assert np.isfinite(p).all()


# ---- the Trainer ------------------------------------------------------------------------------
OPTIMIZERS = [
    lambda lr: fastsgd.SGD(lr),
    lambda lr: fastsgd.SGD(lr, momentum=0.9, nesterov=True),
    lambda lr: fastsgd.Adagrad(lr),
    lambda lr: fastsgd.RMSprop(lr, momentum=0.5, centered=True),
    lambda lr: fastsgd.Adam(lr, amsgrad=True),
    lambda lr: fastsgd.AdamW(lr, weight_decay=0.1),
    lambda lr: fastsgd.SGD(lr, l1=0.01, l2=0.01),
]
COSTS = [("cross_entropy", "softmax"), ("sparse_categorical_cross_entropy", "softmax"),
         ("binary_cross_entropy", "sigmoid"), ("mse", None), ("mae", None), ("huber", None)]
LRS = [1e-12, 1e-4, 0.01, 0.5, 10.0, 1e4, 1e12, 1e30, 1e38, 1e300]


@st.composite
def networks(draw, wide=False):
    """A random small network (``wide``: big enough for the kernels to use threads)."""
    dtype = draw(st.sampled_from(["float32", "float64"]))
    n_in = draw(st.integers(1, 5)) if not wide else draw(st.integers(60, 120))
    cost, out_act = draw(st.sampled_from(COSTS))
    units_out = draw(st.integers(2 if cost.endswith("cross_entropy") and out_act == "softmax"
                                 else 1, 4))
    spec = []   # (class, args, kwargs) of each layer, so that the model can be built again
    if draw(st.booleans()):
        spec.append((fastsgd.Rescaling, (draw(st.sampled_from([1 / 255, 1.0, 100.0])),
                                         draw(st.sampled_from([0.0, -1.0]))), {}))
    for i in range(draw(st.integers(0, 2))):
        units = draw(st.integers(1, 6)) if not wide else draw(st.integers(100, 300))
        spec.append((fastsgd.Dense, (units, draw(st.sampled_from(ACTS[:5]))),
                     {"input_dim": n_in if i == 0 else None}))
        extra = draw(st.sampled_from([None, None, "dropout", "bn"]))
        if extra == "dropout":
            spec.append((fastsgd.Dropout, (draw(st.sampled_from([0.0, 0.5, 0.9])),), {"seed": 1}))
        elif extra == "bn":
            spec.append((fastsgd.BatchNormalization, (), {}))
    first = not any(cls is fastsgd.Dense for cls, _, _ in spec)
    spec.append((fastsgd.Dense, (units_out, out_act or draw(st.sampled_from(ACTS))),
                 {"input_dim": n_in if first else None}))
    seed = draw(st.integers(0, 3))

    def make():
        return fastsgd.Sequential([cls(*args, **kw) for cls, args, kw in spec], dtype=dtype,
                                  seed=seed)
    return make, cost, n_in, units_out


def _targets(draw, cost, n, units):
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    if cost in ("cross_entropy", "sparse_categorical_cross_entropy"):
        return rng.integers(0, units, n).astype(np.int64)
    if cost == "binary_cross_entropy":
        return rng.integers(0, 2, (n, units)).astype(np.float64)
    return rng.normal(0, draw(st.sampled_from([1.0, 1e3])), (n, units))


def _inputs(draw, X, dtype):
    """X in a drawn form: the model's dtype (read in place), another dtype or a strided view
    (converted per batch), a row dataset, or sparse."""
    kind = draw(st.sampled_from(["direct", "direct", "float64", "strided", "rows", "sparse"]))
    if kind == "direct":
        return kind, np.ascontiguousarray(X, dtype=dtype)
    if kind == "float64":
        return kind, X.astype(np.float64) if dtype == "float32" else X.astype(np.float32)
    if kind == "strided":
        big = np.zeros((X.shape[0], 2 * X.shape[1]), dtype)
        big[:, ::2] = X
        return kind, big[:, ::2]
    if kind == "rows":
        class Rows:
            shape, dtype = X.shape, X.dtype

            def __getitem__(self, idx):
                return X[idx]
        return kind, Rows()
    import scipy.sparse
    return kind, scipy.sparse.csr_matrix(np.where(np.abs(X) < 0.5, 0.0, X))


def _finite_weights(model):
    return all(np.isfinite(w).all() for w in model.get_weights())


@fuzz(600)
@given(st.data())
def test_trainer_fit(data):
    make, cost, n_in, units = data.draw(networks())
    model = make()
    n = data.draw(st.integers(1, 24))
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    X = rng.normal(0, data.draw(st.sampled_from([1.0, 1e3])), (n, n_in))
    y = _targets(data.draw, cost, n, units)
    bad = data.draw(st.sampled_from([None, None, None, "X", "y", "w"]))
    if bad == "X":
        X[data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, n_in - 1))] = \
            data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    elif bad == "y" and y.dtype != np.int64:
        y.flat[data.draw(st.integers(0, y.size - 1))] = np.nan
    kind, Xin = _inputs(data.draw, X, model.dtype)
    sw = None
    if bad == "w" or data.draw(st.booleans()):
        sw = np.abs(rng.normal(size=n))
        if bad == "w":
            sw[data.draw(st.integers(0, n - 1))] = data.draw(st.sampled_from([np.nan, -1.0]))
    lr = data.draw(st.sampled_from(LRS))
    opt = data.draw(st.sampled_from(OPTIMIZERS))(lr)
    tr = fastsgd.Trainer(model, cost, opt, batch_size=data.draw(st.integers(1, 10)),
                         shuffle=data.draw(st.sampled_from([True, False, "chunks"])),
                         chunk_rows=3, seed=0)
    note(f"{model!r} cost={cost} opt={opt!r} X={kind} bad={bad} n={n}")
    before = model.get_weights()
    after_batches = []   # the weights after every step that was applied
    record = fastsgd.LambdaCallback(on_batch_end=lambda b, logs: after_batches.append(
        model.get_weights()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hist = tr.fit(Xin, y, epochs=data.draw(st.integers(1, 2)), verbose=0,
                          sample_weight=sw, callbacks=[record])
            raised = None
        except (TypeError, ValueError) as e:
            raised, hist = e, None
            note(f"raised {type(e).__name__}: {e}")
    assert _finite_weights(model), "non-finite weights after fit"
    last = after_batches[-1] if after_batches else before
    now = model.get_weights()
    clean = bad is None or (bad == "y" and y.dtype == np.int64)
    r = model.rescaling
    sparse_rescaled = kind == "sparse" and r is not None and (r.scale != 1.0 or r.offset != 0.0)
    if raised is not None:
        # refused: data checked up front trains nothing; a per-batch check stops at its batch
        assert isinstance(raised, ValueError), raised
        assert all(np.array_equal(a, b) for a, b in zip(now, last)), \
            "a refused batch changed the weights"
        assert not clean or sparse_rescaled, f"clean data was refused: {raised}"
        event(f"refused ({bad}, X as {kind})")
        return
    diverged = [w for w in caught if issubclass(w.category, fastsgd.DivergenceWarning)]
    per_batch = kind in ("float64", "strided", "rows") or model.rescaling is not None
    # data converted per batch is checked per batch: a run that diverged first never saw it
    assert clean and not sparse_rescaled or bad == "X" and per_batch and hist.diverged, \
        f"bad data ({bad}, X as {kind}) trained"
    event("diverged" if hist.diverged is not None else "trained")
    if hist.diverged is not None:
        assert diverged
        assert all(np.array_equal(a, b) for a, b in zip(now, last)), \
            "the diverged step changed the weights"
    assert opt.iterations == len(after_batches)


@fuzz(200)
@given(st.data())
def test_trainer_evaluate_predict_and_partial_fit(data):
    make, cost, n_in, units = data.draw(networks())
    model = make()
    n = data.draw(st.integers(1, 12))
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    X = rng.normal(size=(n, n_in))
    y = _targets(data.draw, cost, n, units)
    tr = fastsgd.Trainer(model, cost, data.draw(st.sampled_from(OPTIMIZERS))(
        data.draw(st.sampled_from(LRS))), batch_size=data.draw(st.integers(1, 5)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(data.draw(st.integers(1, 3))):
            k = data.draw(st.integers(1, n))
            tr.partial_fit(X[:k], y[:k])
    assert _finite_weights(model)
    trained = model.get_weights()
    out = model.predict(X, batch_size=data.draw(st.integers(1, 7)))
    assert out.shape == (n, units) and out.dtype == model.dtype
    res = tr.evaluate(X, y, batch_size=data.draw(st.integers(1, 7)))
    # (the loss may be NaN: huge finite weights can overflow a pre-activation to inf)
    assert isinstance(res["loss"], float)
    assert all(np.array_equal(a, b) for a, b in zip(trained, model.get_weights())), \
        "predict or evaluate changed the model"
    Xbad = X.copy()
    Xbad[data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, n_in - 1))] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.predict(Xbad)
    with pytest.raises(ValueError, match="NaN"):
        tr.evaluate(Xbad, y)


@fuzz(150)
@given(st.data())
def test_pieces_and_threads_give_the_same_bits(data):
    """Two documented invariants on random networks: with shuffle=False,
    partial_fit over consecutive pieces that end on batch boundaries equals
    one epoch of fit over their concatenation; and every thread count gives
    bit-identical weights."""
    wide = data.draw(st.sampled_from([False, False, False, True]))
    make, cost, n_in, units = data.draw(networks(wide))
    n = data.draw(st.integers(1, 30)) if not wide else data.draw(st.integers(200, 500))
    bs = data.draw(st.integers(1, 8)) if not wide else data.draw(st.integers(100, 300))
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    X = rng.normal(size=(n, n_in))
    y = _targets(data.draw, cost, n, units)
    kind = data.draw(st.sampled_from(["direct", "float64", "sparse"]))
    if kind == "sparse":
        import scipy.sparse
        X = scipy.sparse.csr_matrix(np.where(np.abs(X) < 0.7, 0.0, X))
    opt = data.draw(st.integers(0, len(OPTIMIZERS) - 1))
    lr = data.draw(st.sampled_from([1e-3, 0.1, 10.0]))
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(n // bs, 1)), max_size=4))))
    bounds = [0] + [c * bs for c in cuts if c * bs < n] + [n]

    def train(threads, pieces):
        fastsgd.set_num_threads(threads)
        model = make()
        if kind == "sparse" and model.rescaling is not None:
            model = fastsgd.Sequential([layer for layer in model.layers], dtype=model.dtype)
        dtype = model.dtype if kind != "float64" else np.float64
        Xd = X if kind == "sparse" else X.astype(dtype)
        tr = fastsgd.Trainer(model, cost, OPTIMIZERS[opt](lr), batch_size=bs, shuffle=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if pieces:
                for a, b in zip(bounds[:-1], bounds[1:]):
                    tr.partial_fit(Xd[a:b], y[a:b])
            else:
                tr.fit(Xd, y, epochs=1, verbose=0)
        return model.get_weights()

    one = train(1, False)
    for got in (train(2, False), train(2, True), train(1, True)):
        for a, b in zip(one, got):
            np.testing.assert_array_equal(a, b)
