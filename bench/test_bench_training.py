"""One training step (a mini-batch of 128) and one optimizer update per network.
`pytest bench/test_bench_training.py --benchmark-only`; compare commits with
`--benchmark-autosave` and `--benchmark-compare`."""
import numpy as np
import pytest

import fastsgd
from fastsgd import _net

NETS = {
    "shallow": ([64], "sigmoid", "mse"),
    "intermediate": ([64, 64], "relu", "cross_entropy"),
    "wide": ([512, 512], "relu", "cross_entropy"),
}


def build(net, optimizer):
    hidden, act, cost = NETS[net]
    layers = [fastsgd.Dense(hidden[0], act, input_dim=784)]
    layers += [fastsgd.Dense(h, act) for h in hidden[1:]] + [fastsgd.Dense(10, "softmax")]
    model = fastsgd.Sequential(layers, seed=0)
    return model, fastsgd.Trainer(model, cost, optimizer, batch_size=128, seed=0)


@pytest.mark.parametrize("net", list(NETS))
def test_train_step(benchmark, threads, mnist_like, net):
    """Forward, cost, backward and SGD step on a shuffled mini-batch of 128."""
    X, y = mnist_like
    model, tr = build(net, fastsgd.SGD(0.01))
    Xp, t = tr._prepare(X, y)
    netc, _ = tr._build_net(128)
    netc.set_optimizer(tr.optimizer.hyper())
    netc.bind(Xp, t)
    netc.set_order(np.random.default_rng(0).permutation(len(X)).astype(np.int64))
    state = {"start": 0}

    def step():
        s = state["start"]
        netc.train_batch(s, 128)
        state["start"] = (s + 128) % (len(X) - 128)

    benchmark.group = f"train step {net} {threads}t"
    benchmark(step)


OPTIMIZERS = {
    "sgd": lambda: fastsgd.SGD(0.01),
    "sgd_momentum": lambda: fastsgd.SGD(0.01, momentum=0.9),
    "adagrad": lambda: fastsgd.Adagrad(),
    "rmsprop": lambda: fastsgd.RMSprop(),
    "adam": lambda: fastsgd.Adam(),
    "adamw": lambda: fastsgd.AdamW(),
}


def wide_params():
    model, _ = build("wide", fastsgd.SGD())
    rng = np.random.default_rng(1)
    params = model.parameters()
    grads = [rng.standard_normal(p.shape).astype(p.dtype) * 1e-3 for p in params]
    return params, grads


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_update_fastsgd(benchmark, threads, name):
    """One fused step over the Wide net's 669,706 parameters (check pass included)."""
    params, grads = wide_params()
    opt = OPTIMIZERS[name]()
    opt.step(params, grads)
    benchmark.group = f"update {name} {threads}t"
    benchmark(opt.step, params, grads)


TORCH = {
    "sgd": lambda ps, t: t.optim.SGD(ps, lr=0.01, foreach=True),
    "sgd_momentum": lambda ps, t: t.optim.SGD(ps, lr=0.01, momentum=0.9, foreach=True),
    "adagrad": lambda ps, t: t.optim.Adagrad(ps, lr=0.001, foreach=True),
    "rmsprop": lambda ps, t: t.optim.RMSprop(ps, lr=0.001, foreach=True),
    "adam": lambda ps, t: t.optim.Adam(ps, lr=0.001, foreach=True),
    "adamw": lambda ps, t: t.optim.AdamW(ps, lr=0.001, weight_decay=0.004, foreach=True),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_update_torch(benchmark, threads, name):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(threads)
    params, grads = wide_params()
    tps = [torch.from_numpy(p.copy()).requires_grad_() for p in params]
    for tp, g in zip(tps, grads):
        tp.grad = torch.from_numpy(g)
    opt = TORCH[name](tps, torch)
    opt.step()
    benchmark.group = f"update {name} {threads}t"
    benchmark(opt.step)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_update_numpy(benchmark, threads, name):
    params, grads = wide_params()
    ms = [np.zeros_like(p) for p in params]
    vs = [np.zeros_like(p) for p in params]
    st = {"t": 0}

    def sgd():
        for p, g in zip(params, grads):
            p -= np.float32(0.01) * g

    def adam():
        st["t"] += 1
        t = st["t"]
        a = 0.001 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        for p, g, m, v in zip(params, grads, ms, vs):
            m += (g - m) * np.float32(0.1)
            v += (g * g - v) * np.float32(0.001)
            p -= np.float32(a) * m / (np.sqrt(v) + np.float32(1e-7))

    benchmark.group = f"update {name} {threads}t"
    benchmark(sgd if name == "sgd" else adam)


def test_kernels_module_is_private_but_present():
    assert hasattr(_net, "Net") and hasattr(_net, "Update")
