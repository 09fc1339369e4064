"""NumPy oracles for the tests: what each kernel, layer and optimizer
computes, written out plainly in float64. Imported by the test modules only
(not by conftest, not by the package)."""
import numpy as np

from fastsgd import SGD, Adagrad, RMSprop


def activate(z, activation, negative_slope=0.2):
    """The activations in NumPy: the reference the kernels are tested against."""
    if activation == "linear":
        return z
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if activation == "tanh":
        return np.tanh(z)
    if activation == "relu":
        return np.maximum(z, 0)
    if activation == "leaky_relu":
        return np.where(z > 0, z, negative_slope * z)
    if activation == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise ValueError(f"unknown activation {activation!r}")



def dense_forward(layer, x):
    """``f(x @ W + b)`` for a Dense layer, in float64."""
    z = np.asarray(x, np.float64) @ layer.weights.astype(np.float64) + layer.bias
    return activate(z, layer.activation, layer.negative_slope)


def batch_norm_train(x, gamma, beta, epsilon):
    """Keras's BatchNormalization in training: the batch's mean and biased
    variance per column. Returns ``(y, mean, variance)``."""
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    g = 1.0 if gamma is None else gamma
    b = 0.0 if beta is None else beta
    return (x - mean) / np.sqrt(var + epsilon) * g + b, mean, var


def batch_norm_infer(x, gamma, beta, moving_mean, moving_variance, epsilon):
    """Keras's BatchNormalization in inference: the moving statistics."""
    g = 1.0 if gamma is None else gamma
    b = 0.0 if beta is None else beta
    return (np.asarray(x, np.float64) - moving_mean) / np.sqrt(moving_variance + epsilon) * g + b


def moving_update(moving, batch, momentum):
    """Keras's update of a moving statistic."""
    return moving * momentum + batch * (1.0 - momentum)


_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix64(z):
    z = np.asarray(z, np.uint64)
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def dropout_keep(seed, step, rows, cols, rate):
    """The kept units (rows x cols booleans) of a dropout layer keyed ``seed``
    at training step ``step``: the documented SplitMix64 counter hash of
    (seed, step, row in batch, unit), written out again in NumPy."""
    with np.errstate(over="ignore"):
        batch = _mix64(np.uint64(seed) ^ _mix64(np.uint64(((step + 1) * _GOLDEN) & _M64)))
        r = np.arange(1, rows + 1, dtype=np.uint64)[:, None]
        row_key = _mix64(batch + r * np.uint64(_GOLDEN))
        u = np.arange(1, cols + 1, dtype=np.uint64)[None, :]
        bits = _mix64(row_key ^ (u * np.uint64(_GOLDEN))) >> np.uint64(11)
    return bits < np.uint64(int((1.0 - rate) * 2.0 ** 53))


def network_forward(model, x):
    """The model in inference: dropout is the identity, batch normalization
    uses the moving statistics."""
    for layer in model.layers:
        if layer.kind == "dense":
            x = dense_forward(layer, x)
        elif layer.kind == "batch_normalization":
            x = batch_norm_infer(x, layer.gamma, layer.beta, layer.moving_mean,
                                 layer.moving_variance, layer.epsilon)
    return x


def huber(x, delta):
    """Keras's Huber loss of the errors ``x``, elementwise."""
    ax = np.abs(x)
    return np.where(ax <= delta, 0.5 * x * x, delta * ax - 0.5 * delta * delta)


def cost(name, a, y, delta=1.0):
    """Mean cost of outputs ``a`` against targets ``y`` (labels or arrays)."""
    a = np.asarray(a, np.float64)
    y = np.asarray(y)
    if y.ndim == 1 and name not in ("mse", "mae", "huber") and a.shape[1] > 1:
        y = np.eye(a.shape[1])[y]
    y = y.reshape(a.shape).astype(np.float64)
    if name == "mse":
        return float(np.mean((a - y) ** 2))
    if name == "mae":
        return float(np.mean(np.abs(a - y)))
    if name == "huber":
        return float(np.mean(huber(a - y, delta)))
    if name == "cross_entropy":
        return float(np.mean(-np.sum(y * np.log(a), axis=1)))
    return float(np.mean(-(y * np.log(a) + (1 - y) * np.log1p(-a))))


def network_cost(model, cost_name, X, y):
    return cost(cost_name, network_forward(model, X), y)


def central_difference(f, z, h=1e-6):
    """d f / d z by central differences (float64)."""
    num = np.empty_like(z)
    for idx in np.ndindex(*z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        num[idx] = (f(zp) - f(zm)) / (2 * h)
    return num


def gemm(a, b, ta, tb, alpha, beta, c):
    A = a.T if ta else a
    B = b.T if tb else b
    out = alpha * (A.astype(np.float64) @ B.astype(np.float64))
    if beta != 0:
        out += beta * c.astype(np.float64)
    return out


def output_cost(cost, act, z, y, delta=1.0):
    a = activate(z, act, 0.3)
    if cost == "mse":
        return np.mean((a - y) ** 2)
    if cost == "mae":
        return np.mean(np.abs(a - y))
    if cost == "huber":
        return np.mean(huber(a - y, delta))
    if cost == "cross_entropy":
        lse = np.log(np.sum(np.exp(z - z.max(1, keepdims=True)), 1)) + z.max(1)
        return np.mean(lse - np.sum(y * z, 1))
    return np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))


def optimizer_steps(opt, p, grads):
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
