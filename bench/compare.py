"""Side-by-side training speed: fastsgd vs NumPy, PyTorch, JAX, scikit-learn and Keras.

    python bench/compare.py [--quick] [--data DIR] [--frameworks fastsgd,jax,jax-scan,...]
                            [--out FILE.json] [--markdown FILE.md]

It benchmarks the installed fastsgd (``pip install ".[bench]"``), never the
source tree it sits in, and runs from a checkout without an in-place build.

Every cell (framework x network x batch size x threads) runs in a fresh
subprocess, outside the checkout, with the thread count set for every
library the same way (OMP/OPENBLAS/MKL_NUM_THREADS, PJRT_NPROC for XLA's
CPU thread pools, TF_NUM_INTRAOP_THREADS, threadpoolctl,
torch.set_num_threads, tf.config.threading, fastsgd.set_num_threads), so no
thread pool of one framework competes with another's; a short pause between
cells lets the previous one's threads go. Each trains the same network on
the same data with plain SGD (no momentum, no regularisation), shuffling
every epoch: one warm-up epoch (which also takes JAX's and XLA's compile
time), then the median of the timed epochs. Reported per cell: seconds per
epoch, samples/s, effective GFLOP/s (matrix-product FLOPs: forward, weight
gradient and input gradient of every layer but the first), the ratio to
fastsgd, the training-set accuracy after the last epoch (a check that every
column really trains), the threads that were busy during the timed epochs,
and the worker's peak resident memory and its growth between the first and
the last timed epoch. The output records the CPU, fastsgd's SIMD path and
the BLAS kernel NumPy loaded. A framework that is not installed is skipped
with a note.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import benchenv

benchenv.use_installed_fastsgd()

NETS = {
    # name: (hidden sizes, hidden activation, cost, learning rate)
    "shallow": ([64], "sigmoid", "mse", 0.01),
    "intermediate": ([64, 64], "relu", "cross_entropy", 0.1),
    "wide": ([512, 512], "relu", "cross_entropy", 0.1),
}
FRAMEWORKS = ["fastsgd", "fastsgd-sparse", "numpy", "torch", "jax", "jax-scan", "sklearn",
              "keras-torch", "keras-tensorflow", "keras-jax"]
#: modules a framework's column needs
IMPORTS = {"fastsgd": ["fastsgd"], "fastsgd-sparse": ["fastsgd"], "numpy": ["numpy"],
           "torch": ["torch"], "jax": ["jax"],
           "jax-scan": ["jax"], "sklearn": ["sklearn"], "keras-torch": ["keras", "torch"],
           "keras-tensorflow": ["keras", "tensorflow"], "keras-jax": ["keras", "jax"]}
#: frameworks that also get an Adam column with --adam
ADAM = ("fastsgd", "torch", "keras-torch", "keras-tensorflow", "keras-jax")
#: --quick: defaults of the options it changes (options given explicitly win)
QUICK = {"nets": "intermediate", "batches": "128", "threads_list": "1", "epochs": 1,
         "samples": 10000, "pause": 0.5}
DEFAULTS = {"nets": ",".join(NETS), "batches": "32,128,256", "threads_list": "1,2", "epochs": 3,
            "samples": 60000, "pause": 2.0}


def matmul_flops(hidden, n_in=784, n_out=10):
    sizes = [n_in] + list(hidden) + [n_out]
    total = 0
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        total += 2 * a * b * (2 if i == 0 else 3)
    return total


# ---------------------------------------------------------------- data
def load_data(data_dir, n=60000, seed=0):
    import numpy as np
    if data_dir:
        from fastsgd.datasets import load_mnist
        (X, y), _ = load_mnist(data_dir, download=False)
        return X[:n], y[:n]
    rng = np.random.default_rng(seed)
    X = rng.random((n, 784), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)
    return X, y


def rss_mb():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def thread_ticks():
    """CPU clock ticks (user + system) used so far by each thread of this process."""
    ticks = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[tid] = int(fields[11]) + int(fields[12])
    return ticks


def glorot_uniform(rng, sizes):
    """Float32 weights drawn as fastsgd's and Keras's default initializer, zero biases."""
    import numpy as np
    out = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        limit = np.sqrt(6.0 / (a + b))
        out.append((rng.uniform(-limit, limit, (a, b)).astype(np.float32), np.zeros(b, np.float32)))
    return out


# ---------------------------------------------------------------- workers
# Each make_<framework> builds the network and returns two functions:
# epoch() trains one epoch and returns (seconds measured inside or None,
# the epoch's training loss or None, possibly as device values converted
# after the timing), and accuracy() gives the training-set accuracy.

def make_fastsgd(X, y, hidden, act, cost, lr, batch, threads, optimizer="sgd", sparse=False):
    import fastsgd
    fastsgd.set_num_threads(threads)
    layers = [fastsgd.Dense(hidden[0], act, input_dim=784)]
    layers += [fastsgd.Dense(h, act) for h in hidden[1:]] + [fastsgd.Dense(10, "softmax")]
    model = fastsgd.Sequential(layers, seed=0)
    opt = fastsgd.SGD(lr) if optimizer == "sgd" else fastsgd.Adam(0.001)
    # "fastsgd": the dense path, as every other column computes; "fastsgd-sparse": what a
    # user gets by default, MNIST (19% nonzero) trained through the sparse first layer (the
    # conversion, once per fit, is outside the epoch's time)
    tr = fastsgd.Trainer(model, cost, opt, batch_size=batch, seed=0,
                         sparse_input="auto" if sparse else False)

    def epoch():
        h = tr.fit(X, y, epochs=1, verbose=0)
        return h.history["seconds"][0], h.history["loss"][0]

    return epoch, lambda: tr.evaluate(X, y)["accuracy"]


def make_numpy(X, y, hidden, act, cost, lr, batch, threads, optimizer="sgd"):
    import numpy as np
    if optimizer != "sgd":
        raise ValueError("the NumPy column implements plain SGD only")
    rng = np.random.default_rng(0)
    sizes = [784] + list(hidden) + [10]
    Ws = [(rng.standard_normal((a, b)) * np.sqrt(2.0 / (a + b))).astype(np.float32)
          for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [np.zeros(b, np.float32) for b in sizes[1:]]
    Y = np.eye(10, dtype=np.float32)[y]
    n = len(X)
    lr = np.float32(lr)

    def f(z):
        if act == "sigmoid":
            return 1 / (1 + np.exp(-z))
        return np.maximum(z, 0)

    def df(a):
        return a * (1 - a) if act == "sigmoid" else (a > 0).astype(np.float32)

    def epoch():
        perm = rng.permutation(n)
        for s in range(0, n, batch):
            idx = perm[s:s + batch]
            acts = [X[idx]]
            for i, (W, b) in enumerate(zip(Ws, bs)):
                z = acts[-1] @ W + b
                if i < len(Ws) - 1:
                    acts.append(f(z))
                else:
                    z -= z.max(1, keepdims=True)
                    e = np.exp(z)
                    acts.append(e / e.sum(1, keepdims=True))
            out, yb = acts[-1], Y[idx]
            m = len(idx)
            if cost == "cross_entropy":
                d = (out - yb) / m
            else:
                g = 2 * (out - yb) / (m * 10)
                d = out * (g - (g * out).sum(1, keepdims=True))
            for i in range(len(Ws) - 1, -1, -1):
                dW = acts[i].T @ d
                db = d.sum(0)
                if i > 0:
                    d = (d @ Ws[i].T) * df(acts[i])
                Ws[i] -= lr * dW
                bs[i] -= lr * db
        return None, None

    def accuracy():
        h = X
        for W, b in zip(Ws[:-1], bs[:-1]):
            h = f(h @ W + b)
        return float(np.mean((h @ Ws[-1] + bs[-1]).argmax(1) == y))

    return epoch, accuracy


def make_torch(X, y, hidden, act, cost, lr, batch, threads, optimizer="sgd"):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    sizes = [784] + list(hidden)
    mods = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        mods += [torch.nn.Linear(a, b), torch.nn.Sigmoid() if act == "sigmoid" else torch.nn.ReLU()]
    mods.append(torch.nn.Linear(sizes[-1], 10))
    if cost == "mse":
        mods.append(torch.nn.Softmax(dim=1))
    model = torch.nn.Sequential(*mods)
    Xt = torch.from_numpy(X)
    yt = torch.from_numpy(y)
    Yt = torch.nn.functional.one_hot(yt, 10).float()
    loss_fn = torch.nn.MSELoss() if cost == "mse" else torch.nn.CrossEntropyLoss()
    target = Yt if cost == "mse" else yt
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.0, foreach=True)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=0.001, eps=1e-7, foreach=True)
    n = len(X)

    def epoch():
        perm = torch.randperm(n)
        for s in range(0, n, batch):
            idx = perm[s:s + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(Xt[idx]), target[idx])
            loss.backward()
            opt.step()
        return None, None

    def accuracy():
        with torch.no_grad():
            return float((model(Xt).argmax(1) == yt).float().mean())

    return epoch, accuracy


def _make_jax(X, y, hidden, act, cost, lr, batch, threads, optimizer, scan):
    """Plain mini-batch SGD in JAX, written for speed.

    One training step (gather the mini-batch from the device-resident data,
    forward, cost, gradients by ``jax.value_and_grad``, update) is one XLA
    computation; the parameters are donated so XLA updates them in place.
    Without ``scan`` a Python loop calls the jitted step once per mini-batch;
    with ``scan`` one jitted function runs the whole epoch, ``jax.lax.scan``
    over the full mini-batches. A last partial mini-batch (60,000 at batch
    128: 468 of 128 and one of 96) is a step of its own shape (compiled once
    more), so every epoch is exact mini-batch SGD over a fresh permutation.
    The thread count comes from PJRT_NPROC, set for the subprocess.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    if optimizer != "sgd":
        raise ValueError("the JAX columns implement plain SGD only")
    rng = np.random.default_rng(0)
    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in glorot_uniform(rng, [784, *hidden, 10])]
    Xd = jax.device_put(X)
    T = jax.device_put(np.eye(10, dtype=np.float32)[y] if cost == "mse" else y.astype(np.int32))
    n = len(X)
    full, rem = divmod(n, batch)
    eta = np.float32(lr)

    def forward(params, xb):
        h = xb
        for W, b in params[:-1]:
            z = h @ W + b
            h = jax.nn.sigmoid(z) if act == "sigmoid" else jax.nn.relu(z)
        W, b = params[-1]
        return h @ W + b

    def loss_fn(params, xb, tb):
        logits = forward(params, xb)
        if cost == "mse":
            return jnp.mean((jax.nn.softmax(logits) - tb) ** 2)
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, tb[:, None], axis=1))

    def step(params, X, T, idx):
        xb = X.at[idx].get(mode="promise_in_bounds", unique_indices=True)
        tb = T.at[idx].get(mode="promise_in_bounds", unique_indices=True)
        loss, grads = jax.value_and_grad(loss_fn)(params, xb, tb)
        return jax.tree.map(lambda p, g: p - eta * g, params, grads), loss

    state = {"params": params}
    if scan:
        def run_epoch(params, X, T, perm):
            batches = perm[:full * batch].reshape(full, batch)
            params, losses = jax.lax.scan(lambda p, idx: step(p, X, T, idx), params, batches)
            if rem:
                params, last = step(params, X, T, perm[full * batch:])
                losses = jnp.concatenate([losses, last[None]])
            return params, losses

        run_epoch = jax.jit(run_epoch, donate_argnums=0)

        def epoch():
            perm = rng.permutation(n).astype(np.int32)
            params, losses = run_epoch(state["params"], Xd, T, perm)
            jax.block_until_ready(params)
            state["params"] = params
            return None, losses
    else:
        step_jit = jax.jit(step, donate_argnums=0)

        def epoch():
            perm = rng.permutation(n).astype(np.int32)
            params, losses = state["params"], []
            for s in range(0, n, batch):
                params, loss = step_jit(params, Xd, T, perm[s:s + batch])
                losses.append(loss)
            jax.block_until_ready(params)
            state["params"] = params
            return None, losses

    predict = jax.jit(forward)

    def accuracy():
        return float(np.mean(np.asarray(predict(state["params"], Xd)).argmax(1) == y))

    return epoch, accuracy


def make_jax(*a, optimizer="sgd"):
    return _make_jax(*a, optimizer=optimizer, scan=False)


def make_jax_scan(*a, optimizer="sgd"):
    return _make_jax(*a, optimizer=optimizer, scan=True)


def make_sklearn(X, y, hidden, act, cost, lr, batch, threads, optimizer="sgd"):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=tuple(hidden),
                        activation="logistic" if act == "sigmoid" else "relu",
                        solver="sgd" if optimizer == "sgd" else "adam", learning_rate_init=lr,
                        momentum=0.0, nesterovs_momentum=False, alpha=0.0, batch_size=batch,
                        shuffle=True, random_state=0)
    classes = list(range(10))

    def epoch():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.partial_fit(X, y, classes=classes)
        return None, clf.loss_

    return epoch, lambda: clf.score(X, y)


def _make_keras(backend, X, y, hidden, act, cost, lr, batch, threads, optimizer="sgd"):
    os.environ["KERAS_BACKEND"] = backend
    if backend == "torch":
        import torch
        torch.set_num_threads(threads)
    elif backend == "tensorflow":
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    # backend "jax": XLA's thread pools are sized by PJRT_NPROC in the environment
    import keras
    keras.utils.set_random_seed(0)
    layers = [keras.Input((784,))] + [keras.layers.Dense(h, activation=act) for h in hidden]
    layers.append(keras.layers.Dense(10, activation="softmax"))
    model = keras.Sequential(layers)
    opt = keras.optimizers.SGD(lr) if optimizer == "sgd" else keras.optimizers.Adam(0.001)
    if cost == "mse":
        model.compile(opt, loss="mean_squared_error")
        target = keras.utils.to_categorical(y, 10)
    else:
        model.compile(opt, loss="sparse_categorical_crossentropy")
        target = y

    def epoch():
        h = model.fit(X, target, batch_size=batch, epochs=1, shuffle=True, verbose=0)
        return None, h.history["loss"][0]

    def accuracy():
        import numpy as np
        return float(np.mean(model.predict(X, batch_size=4096, verbose=0).argmax(1) == y))

    return epoch, accuracy


def make_keras_torch(*a, **k):
    return _make_keras("torch", *a, **k)


def make_keras_tensorflow(*a, **k):
    return _make_keras("tensorflow", *a, **k)


def make_keras_jax(*a, **k):
    return _make_keras("jax", *a, **k)


def make_fastsgd_sparse(*a, **k):
    return make_fastsgd(*a, sparse=True, **k)


RUNNERS = {"fastsgd": make_fastsgd, "fastsgd-sparse": make_fastsgd_sparse, "numpy": make_numpy,
           "torch": make_torch, "jax": make_jax,
           "jax-scan": make_jax_scan, "sklearn": make_sklearn, "keras-torch": make_keras_torch,
           "keras-tensorflow": make_keras_tensorflow, "keras-jax": make_keras_jax}


def net_spec(name):
    """A name from NETS, or ``custom:H1-H2-...:activation:cost:lr``."""
    if name.startswith("custom:"):
        _, hidden, act, cost, lr = name.split(":")
        return [int(h) for h in hidden.split("-")], act, cost, float(lr)
    return NETS[name]


def _to_float(loss):
    import numpy as np
    if loss is None:
        return None
    return float(np.mean([float(v) for v in loss])) if isinstance(loss, list) \
        else float(np.mean(np.asarray(loss)))


GEMM_REF_N = 1024


def gemm_worker(args):
    """fastsgd's float32 GEMM on a 1024 x 1024 x 1024 product: the machine's reference rate
    for the GFLOP/s of the epochs (median of 9 after 2 warm-ups)."""
    import numpy as np

    import fastsgd
    from fastsgd import kernels
    fastsgd.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    n = GEMM_REF_N
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    out = np.empty((n, n), np.float32)
    times = []
    for i in range(11):
        t0 = time.perf_counter()
        kernels.gemm(a, b, out=out)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    print(json.dumps({"gflops": 2 * n ** 3 / statistics.median(times) / 1e9}))


def run_gemm_ref(threads, args):
    keep = getattr(args, "keep_openblas_coretype", False)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--framework", "gemm-ref",
           "--threads", str(threads)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=benchenv.worker_env(threads, keep),
                       cwd=benchenv.worker_cwd(), timeout=600)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])["gflops"]


def worker(args):
    if args.framework == "gemm-ref":
        return gemm_worker(args)
    hidden, act, cost, lr = net_spec(args.net)
    X, y = load_data(args.data, args.samples)
    from threadpoolctl import threadpool_limits
    times, mem, losses = [], [], []
    with threadpool_limits(args.threads):
        epoch, accuracy = RUNNERS[args.framework](X, y, hidden, act, cost, lr, args.batch,
                                                  args.threads, optimizer=args.optimizer)
        for i in range(args.epochs + 1):
            if i == 1:  # after the warm-up (and any compilation)
                ticks, wall0 = thread_ticks(), time.perf_counter()
            t0 = time.perf_counter()
            inside, loss = epoch()
            elapsed = time.perf_counter() - t0
            times.append(elapsed if inside is None else inside)
            mem.append(rss_mb())
            losses.append(loss)
        wall = time.perf_counter() - wall0
        used = {t: v - ticks.get(t, 0) for t, v in thread_ticks().items()}
        acc = accuracy()
    hz = os.sysconf("SC_CLK_TCK")
    print(json.dumps({
        "times": times[1:], "warmup": times[0],
        "loss": [_to_float(v) for v in losses],
        "accuracy": acc,
        # threads that ran for at least a tenth of the timed epochs, and CPU seconds per second
        "threads_busy": sum(1 for v in used.values() if v >= 0.1 * wall * hz),
        "cpu_load": sum(used.values()) / hz / wall,
        "blas": benchenv.blas_libraries(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_growth_mb": mem[-1] - mem[1] if len(mem) > 2 else 0.0}))


def available(fw):
    import importlib.util
    return all(importlib.util.find_spec(m) is not None for m in IMPORTS[fw])


def run_cell(fw, net, batch, threads, args, optimizer="sgd"):
    """One cell in its own subprocess, run outside the checkout; returns the worker's dict."""
    keep = getattr(args, "keep_openblas_coretype", False)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--framework", fw, "--net", net,
           "--batch", str(batch), "--threads", str(threads), "--epochs", str(args.epochs),
           "--samples", str(args.samples), "--optimizer", optimizer]
    if args.data:
        cmd += ["--data", os.path.abspath(args.data)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=benchenv.worker_env(threads, keep),
                       cwd=benchenv.worker_cwd(), timeout=3600)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def machine(threads=1, keep_openblas_coretype=False):
    """The machine as a benchmark subprocess sees it (see benchenv.probe)."""
    return benchenv.probe_subprocess(threads, keep_openblas_coretype)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="a check that every column runs, not a benchmark: Intermediate Net, "
                        "batch 128, 1 thread, 10,000 samples, 1 timed epoch (options given "
                        "explicitly still apply)")
    p.add_argument("--data", help="folder with the MNIST IDX files (default: synthetic data)")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                   help="comma-separated, from: " + ",".join(FRAMEWORKS) + " (default: all)")
    p.add_argument("--nets", help=f"comma-separated, from {','.join(NETS)} or "
                                  "custom:H1-H2:activation:cost:lr (default: all three)")
    p.add_argument("--batches", help=f"default {DEFAULTS['batches']}")
    p.add_argument("--threads-list", help=f"default {DEFAULTS['threads_list']}")
    p.add_argument("--epochs", type=int, help="timed epochs per cell, after a warm-up (default 3)")
    p.add_argument("--samples", type=int, help="training samples (default 60000)")
    p.add_argument("--pause", type=float,
                   help="seconds to wait between cells, so the previous cell's threads are gone "
                        "(default 2)")
    p.add_argument("--adam", action="store_true", help="add Intermediate Net + Adam columns")
    p.add_argument("--keep-openblas-coretype", action="store_true",
                   help="keep OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for the benchmark "
                        "subprocesses (by default they are unset there)")
    p.add_argument("--out", help="write the raw results as JSON")
    p.add_argument("--markdown", help="write the tables as Markdown")
    # worker mode
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--framework", help=argparse.SUPPRESS)
    p.add_argument("--net", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    p.add_argument("--optimizer", default="sgd", help=argparse.SUPPRESS)
    args = p.parse_args()
    for k, v in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.epochs < 1:
        p.error("--epochs must be at least 1")
    if args.worker:
        return worker(args)
    problem = benchenv.fastsgd_problem()
    if problem:
        p.error(problem)
    frameworks = [f for f in args.frameworks.split(",") if f]
    unknown = [f for f in frameworks if f not in RUNNERS]
    if unknown:
        p.error(f"unknown framework(s) {','.join(unknown)}; choose from {','.join(FRAMEWORKS)}")
    notes = benchenv.openblas_notes(args.keep_openblas_coretype)
    for n in notes:
        print("warning:", n, file=sys.stderr)
    for fw in list(frameworks):
        if not available(fw):
            notes.append(f"{fw}: not installed ({', '.join(IMPORTS[fw])} needed), skipped")
            frameworks.remove(fw)
    threads_list = [int(t) for t in args.threads_list.split(",")]
    info = machine(threads_list[0], args.keep_openblas_coretype)
    print("\n".join(benchenv.machine_markdown(info, args.threads_list)), flush=True)
    cells = []
    first = True
    gemm_ref = {}
    if "fastsgd" in frameworks:
        for threads in threads_list:
            gemm_ref[str(threads)] = run_gemm_ref(threads, args)
            print(f"fastsgd GEMM {GEMM_REF_N}^3 float32, {threads} thread(s): "
                  f"{gemm_ref[str(threads)] or float('nan'):.1f} GFLOP/s", flush=True)
            time.sleep(args.pause)
    for net in args.nets.split(","):
        hidden = net_spec(net)[0]
        flops = matmul_flops(hidden) * args.samples
        for batch in [int(b) for b in args.batches.split(",")]:
            for threads in threads_list:
                row = {"net": net, "batch": batch, "threads": threads, "gflop": flops / 1e9,
                       "results": {}}
                opts = [("sgd", fw) for fw in frameworks]
                if args.adam and net == "intermediate" and batch == 128:
                    opts += [("adam", fw) for fw in frameworks if fw in ADAM]
                for optimizer, fw in opts:
                    if not first:
                        time.sleep(args.pause)
                    first = False
                    key = fw if optimizer == "sgd" else f"{fw}+adam"
                    res = run_cell(fw, net, batch, threads, args, optimizer)
                    if "times" in res:
                        res["median_s"] = statistics.median(res["times"])
                        res["samples_per_s"] = args.samples / res["median_s"]
                        res["gflops"] = flops / res["median_s"] / 1e9
                    row["results"][key] = res
                    msg = (f"{net:>12} b={batch:<4} t={threads} {key:>21}: " +
                           (f"{res['median_s']:.3f} s/epoch, accuracy {res['accuracy']:.3f}, "
                            f"{res['threads_busy']} busy threads" if "median_s" in res
                            else res["error"]))
                    print(msg, flush=True)
                cells.append(row)
    out = {"machine": info, "notes": notes, "epochs": args.epochs, "samples": args.samples,
           "data": os.path.abspath(args.data) if args.data else "synthetic",
           "threads_list": threads_list, "quick": args.quick, "gemm_ref": gemm_ref,
           "cells": cells}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    md = to_markdown(out)
    print(md)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)


def to_markdown(out):
    lines = ["Machine:", ""]
    lines += benchenv.machine_markdown(out["machine"], ",".join(map(str, out["threads_list"])))
    lines += ["", f"Data: {out['data']}, {out['samples']:,} samples; one warm-up epoch, then the "
              f"median of {out['epochs']} timed epoch(s) per cell."
              + (" `--quick`: a check that every column runs, not a benchmark." if out.get("quick")
                 else ""), ""]
    keys = []
    for c in out["cells"]:
        for k in c["results"]:
            if k not in keys:
                keys.append(k)
    lines.append("| net | batch | threads | " + " | ".join(keys) + " |")
    lines.append("|---|---|---|" + "---|" * len(keys))
    for c in out["cells"]:
        cols = []
        for k in keys:
            r = c["results"].get(k)
            if r is None or "median_s" not in r:
                cols.append("—" if r is None else "error")
                continue
            # each column against fastsgd with the same optimizer
            ref = "fastsgd+adam" if k.endswith("+adam") else "fastsgd"
            base = c["results"].get(ref, {}).get("median_s")
            ratio = (f" ({r['median_s'] / base:.1f}×)"
                     if base and k not in ("fastsgd", "fastsgd+adam") else "")
            cols.append(f"{r['median_s']:.3f}{ratio}")
        lines.append(f"| {c['net']} | {c['batch']} | {c['threads']} | " + " | ".join(cols) + " |")
    lines.append("")
    lines.append("Seconds per epoch (median of timed epochs after a warm-up); in brackets: "
                 "time relative to fastsgd with the same optimizer in the same row "
                 "(higher is slower).")
    lines.append("")
    ref = out.get("gemm_ref") or {}
    if any(ref.values()):
        lines.append("fastsgd's float32 GEMM on a 1024³ product, measured in this run: " +
                     ", ".join(f"{v:.1f} GFLOP/s with {t} thread(s)" for t, v in ref.items()
                               if v) + ". The GFLOP/s column below counts the matrix-product "
                     "FLOPs of an epoch (forward, weight gradients, input gradients) over its "
                     "time; “of GEMM” is that rate as a share of the GEMM's with as many threads.")
        lines.append("")
    lines.append("| net | batch | threads | framework | GFLOP/s | of GEMM | samples/s | "
                 "train accuracy | busy threads | peak RSS MB | RSS growth MB |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for c in out["cells"]:
        for k, r in c["results"].items():
            if "median_s" in r:
                g = ref.get(str(c["threads"]))
                share = f"{100 * r['gflops'] / g:.0f}%" if g else "—"
                lines.append(f"| {c['net']} | {c['batch']} | {c['threads']} | {k} | "
                             f"{r['gflops']:.1f} | {share} | {r['samples_per_s']:,.0f} | "
                             f"{r['accuracy']:.3f} | {r['threads_busy']} | "
                             f"{r['peak_rss_mb']:.0f} | {r['rss_growth_mb']:+.1f} |")
    lines += ["", "Train accuracy: on the training samples after the warm-up and timed epochs "
              "(a check that each column trains the same network). Busy threads: threads of the "
              "worker that ran for at least a tenth of the timed epochs (spinning pool threads "
              "count)."]
    errors = [f"{c['net']} b={c['batch']} t={c['threads']} {k}: {r['error']}"
              for c in out["cells"] for k, r in c["results"].items() if "error" in r]
    if out["notes"] or errors:
        lines.append("")
        lines += [f"- {n}" for n in out["notes"] + errors]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
