"""The JAX columns of compare.py are exact mini-batch SGD.

`pytest bench/test_compare_columns.py` (a check, not a benchmark: skipped
by `--benchmark-only`). Each JAX column trains two epochs on a few hundred
samples; its per-mini-batch losses must equal those of a float64 NumPy
reference started from the same weights with the same permutations, with a
partial last mini-batch, with none, and with fewer samples than a batch.
"""
import numpy as np
import pytest

import compare

pytest.importorskip("jax")


def reference_losses(X, y, hidden, act, cost, lr, batch, epochs):
    """Per-mini-batch losses of plain SGD in float64, drawing as compare._make_jax does."""
    rng = np.random.default_rng(0)
    params = [(W.astype(np.float64), b.astype(np.float64))
              for W, b in compare.glorot_uniform(rng, [784, *hidden, 10])]
    Y = np.eye(10)[y]
    n, losses = len(X), []
    for _ in range(epochs):
        perm = rng.permutation(n)
        for s in range(0, n, batch):
            idx = perm[s:s + batch]
            m = len(idx)
            acts = [X[idx].astype(np.float64)]
            for i, (W, b) in enumerate(params):
                z = acts[-1] @ W + b
                if i < len(params) - 1:
                    acts.append(1 / (1 + np.exp(-z)) if act == "sigmoid" else np.maximum(z, 0))
                else:
                    e = np.exp(z - z.max(1, keepdims=True))
                    acts.append(e / e.sum(1, keepdims=True))
            out, t = acts[-1], Y[idx]
            if cost == "cross_entropy":
                losses.append(-np.mean(np.log(out[np.arange(m), y[idx]])))
                d = (out - t) / m
            else:
                losses.append(np.mean((out - t) ** 2))
                g = 2 * (out - t) / (m * 10)
                d = out * (g - (g * out).sum(1, keepdims=True))
            for i in range(len(params) - 1, -1, -1):
                W, b = params[i]
                dW, db = acts[i].T @ d, d.sum(0)
                if i > 0:
                    a = acts[i]
                    d = (d @ W.T) * (a * (1 - a) if act == "sigmoid" else (a > 0))
                params[i] = (W - lr * dW, b - lr * db)
    return np.array(losses)


@pytest.mark.parametrize("framework", ["jax", "jax-scan"])
@pytest.mark.parametrize("net,n", [("intermediate", 300), ("shallow", 256), ("intermediate", 100)],
                         ids=["partial-last-batch", "whole-batches", "fewer-than-a-batch"])
def test_jax_is_exact_minibatch_sgd(framework, net, n):
    rng = np.random.default_rng(5)
    X = rng.random((n, 784), dtype=np.float32)
    y = rng.integers(0, 10, n)
    hidden, act, cost, lr = compare.NETS[net]
    epoch, accuracy = compare.RUNNERS[framework](X, y, hidden, act, cost, lr, 128, 1)
    got = np.concatenate([[float(v) for v in epoch()[1]] for _ in range(2)])
    want = reference_losses(X, y, hidden, act, cost, lr, 128, 2)
    np.testing.assert_allclose(got, want, rtol=2e-6)
    assert 0.0 <= accuracy() <= 1.0
