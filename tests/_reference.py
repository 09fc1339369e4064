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


def network_forward(model, x):
    for layer in model.layers:
        x = dense_forward(layer, x)
    return x


def cost(name, a, y):
    """Mean cost of outputs ``a`` against targets ``y`` (labels or arrays)."""
    a = np.asarray(a, np.float64)
    y = np.asarray(y)
    if y.ndim == 1 and name != "mse" and a.shape[1] > 1:
        y = np.eye(a.shape[1])[y]
    y = y.reshape(a.shape).astype(np.float64)
    if name == "mse":
        return float(np.mean((a - y) ** 2))
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


def output_cost(cost, act, z, y):
    a = activate(z, act, 0.3)
    if cost == "mse":
        return np.mean((a - y) ** 2)
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
