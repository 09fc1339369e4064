"""Side-by-side training speed: fastsgd vs NumPy, PyTorch, scikit-learn and Keras.

    python bench/compare.py [--quick] [--data DIR] [--out FILE.json] [--markdown FILE.md]

Every cell (framework x network x batch size x threads) runs in a fresh
subprocess with the thread count set for every library the same way
(OMP_NUM_THREADS, OPENBLAS/MKL_NUM_THREADS, threadpoolctl, torch.set_num_threads),
so no thread pool of one framework competes with another's. Each trains
the same network on the same data with plain SGD (no momentum, no
regularisation), shuffling every epoch: one warm-up epoch, then the median
of the timed epochs. Reported per cell: seconds per epoch, samples/s,
effective GFLOP/s (matrix-product FLOPs: forward, weight gradient and
input gradient of every layer but the first), the ratio to fastsgd, and
the worker's peak resident memory and its growth between the first and the
last timed epoch. A framework that is not installed is skipped with a note.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

NETS = {
    # name: (hidden sizes, hidden activation, cost, learning rate)
    "shallow": ([64], "sigmoid", "mse", 0.01),
    "intermediate": ([64, 64], "relu", "cross_entropy", 0.1),
    "wide": ([512, 512], "relu", "cross_entropy", 0.1),
}
FRAMEWORKS = ["fastsgd", "numpy", "torch", "sklearn", "keras-torch", "keras-tensorflow"]


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
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
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


# ---------------------------------------------------------------- workers
def run_fastsgd(X, y, hidden, act, cost, lr, batch, threads, epochs, optimizer="sgd"):
    import fastsgd
    fastsgd.set_num_threads(threads)
    layers = [fastsgd.Dense(hidden[0], act, input_dim=784)]
    layers += [fastsgd.Dense(h, act) for h in hidden[1:]] + [fastsgd.Dense(10, "softmax")]
    model = fastsgd.Sequential(layers, seed=0)
    opt = fastsgd.SGD(lr) if optimizer == "sgd" else fastsgd.Adam(0.001)
    tr = fastsgd.Trainer(model, cost, opt, batch_size=batch, seed=0)
    times, mem = [], []
    for _ in range(epochs):
        h = tr.fit(X, y, epochs=1, verbose=0)
        times.append(h.history["seconds"][0])
        mem.append(rss_mb())
    return times, mem


def run_numpy(X, y, hidden, act, cost, lr, batch, threads, epochs, optimizer="sgd"):
    import numpy as np
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

    times, mem = [], []
    for _ in range(epochs):
        t0 = time.perf_counter()
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
        times.append(time.perf_counter() - t0)
        mem.append(rss_mb())
    return times, mem


def run_torch(X, y, hidden, act, cost, lr, batch, threads, epochs, optimizer="sgd"):
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
    times, mem = [], []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        for s in range(0, n, batch):
            idx = perm[s:s + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(Xt[idx]), target[idx])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
        mem.append(rss_mb())
    return times, mem


def run_sklearn(X, y, hidden, act, cost, lr, batch, threads, epochs, optimizer="sgd"):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=tuple(hidden),
                        activation="logistic" if act == "sigmoid" else "relu",
                        solver="sgd" if optimizer == "sgd" else "adam", learning_rate_init=lr,
                        momentum=0.0, nesterovs_momentum=False, alpha=0.0, batch_size=batch,
                        shuffle=True, random_state=0)
    classes = list(range(10))
    times, mem = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(epochs):
            t0 = time.perf_counter()
            clf.partial_fit(X, y, classes=classes)
            times.append(time.perf_counter() - t0)
            mem.append(rss_mb())
    return times, mem


def _run_keras(backend, X, y, hidden, act, cost, lr, batch, threads, epochs, optimizer="sgd"):
    os.environ["KERAS_BACKEND"] = backend
    if backend == "torch":
        import torch
        torch.set_num_threads(threads)
    else:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
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
    times, mem = [], []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.fit(X, target, batch_size=batch, epochs=1, shuffle=True, verbose=0)
        times.append(time.perf_counter() - t0)
        mem.append(rss_mb())
    return times, mem


def run_keras_torch(*a, **k):
    return _run_keras("torch", *a, **k)


def run_keras_tensorflow(*a, **k):
    return _run_keras("tensorflow", *a, **k)


RUNNERS = {"fastsgd": run_fastsgd, "numpy": run_numpy, "torch": run_torch, "sklearn": run_sklearn,
           "keras-torch": run_keras_torch, "keras-tensorflow": run_keras_tensorflow}
IMPORTS = {"fastsgd": "fastsgd", "numpy": "numpy", "torch": "torch", "sklearn": "sklearn",
           "keras-torch": "keras", "keras-tensorflow": "tensorflow"}


def net_spec(name):
    """A name from NETS, or ``custom:H1-H2-...:activation:cost:lr``."""
    if name.startswith("custom:"):
        _, hidden, act, cost, lr = name.split(":")
        return [int(h) for h in hidden.split("-")], act, cost, float(lr)
    return NETS[name]


def worker(args):
    hidden, act, cost, lr = net_spec(args.net)
    X, y = load_data(args.data, args.samples)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(args.threads):
        times, mem = RUNNERS[args.framework](X, y, hidden, act, cost, lr, args.batch, args.threads,
                                             args.epochs + 1, optimizer=args.optimizer)
    timed = times[1:]
    print(json.dumps({"times": timed, "warmup": times[0],
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "rss_growth_mb": mem[-1] - mem[1] if len(mem) > 2 else 0.0}))


def available(fw):
    import importlib.util
    return importlib.util.find_spec(IMPORTS[fw]) is not None


def run_cell(fw, net, batch, threads, args, optimizer="sgd"):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [sys.executable, __file__, "--worker", "--framework", fw, "--net", net, "--batch",
           str(batch), "--threads", str(threads), "--epochs", str(args.epochs), "--samples",
           str(args.samples), "--optimizer", optimizer]
    if args.data:
        cmd += ["--data", args.data]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def machine():
    import numpy as np
    info = {"python": platform.python_version(), "numpy": np.__version__,
            "platform": platform.platform(), "cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for fw in ("torch", "sklearn", "keras", "tensorflow", "fastsgd"):
        try:
            mod = __import__(fw)
            info[fw] = mod.__version__
        except Exception:
            pass
    try:
        import fastsgd
        info["fastsgd_simd"] = fastsgd.config()["simd"]
    except Exception:
        pass
    return info


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="batch 128 only, 2 timed epochs")
    p.add_argument("--data", help="folder with the MNIST IDX files (default: synthetic data)")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    p.add_argument("--nets", default=",".join(NETS))
    p.add_argument("--batches", default="32,128,256")
    p.add_argument("--threads-list", default="1,2")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per cell (after a warm-up)")
    p.add_argument("--samples", type=int, default=60000)
    p.add_argument("--adam", action="store_true", help="add an Intermediate Net + Adam column")
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
    if args.worker:
        return worker(args)
    if args.quick:
        args.batches, args.epochs = "128", 2
    frameworks = [f for f in args.frameworks.split(",") if f]
    notes = []
    for fw in list(frameworks):
        if not available(fw):
            notes.append(f"{fw}: not installed, skipped")
            frameworks.remove(fw)
    cells = []
    for net in args.nets.split(","):
        hidden = net_spec(net)[0]
        flops = matmul_flops(hidden) * args.samples
        for batch in [int(b) for b in args.batches.split(",")]:
            for threads in [int(t) for t in args.threads_list.split(",")]:
                row = {"net": net, "batch": batch, "threads": threads, "gflop": flops / 1e9,
                       "results": {}}
                opts = [("sgd", fw) for fw in frameworks]
                if args.adam and net == "intermediate" and batch == 128:
                    opts += [("adam", fw) for fw in frameworks if fw in ("fastsgd", "torch", "keras-torch")]
                for optimizer, fw in opts:
                    key = fw if optimizer == "sgd" else f"{fw}+adam"
                    res = run_cell(fw, net, batch, threads, args, optimizer)
                    if "times" in res:
                        res["median_s"] = statistics.median(res["times"])
                        res["samples_per_s"] = args.samples / res["median_s"]
                        res["gflops"] = flops / res["median_s"] / 1e9
                    row["results"][key] = res
                    msg = (f"{net:>12} b={batch:<4} t={threads} {key:>16}: " +
                           (f"{res['median_s']:.3f} s/epoch" if "median_s" in res else res["error"]))
                    print(msg, flush=True)
                cells.append(row)
    out = {"machine": machine(), "notes": notes, "epochs": args.epochs, "samples": args.samples,
           "data": args.data or "synthetic", "cells": cells}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    md = to_markdown(out)
    print(md)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)


def to_markdown(out):
    lines = []
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
            ratio = f" ({r['median_s'] / base:.1f}×)" if base and not k.startswith("fastsgd") else ""
            cols.append(f"{r['median_s']:.3f}{ratio}")
        lines.append(f"| {c['net']} | {c['batch']} | {c['threads']} | " + " | ".join(cols) + " |")
    lines.append("")
    lines.append("Seconds per epoch (median of timed epochs after a warm-up); in brackets: "
                 "time relative to fastsgd with the same optimizer in the same row "
                 "(higher is slower).")
    lines.append("")
    lines.append("| net | batch | threads | framework | GFLOP/s | samples/s | peak RSS MB | RSS growth MB |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for c in out["cells"]:
        for k, r in c["results"].items():
            if "median_s" in r:
                lines.append(f"| {c['net']} | {c['batch']} | {c['threads']} | {k} | "
                             f"{r['gflops']:.1f} | {r['samples_per_s']:,.0f} | "
                             f"{r['peak_rss_mb']:.0f} | {r['rss_growth_mb']:+.1f} |")
    if out["notes"]:
        lines.append("")
        lines += [f"- {n}" for n in out["notes"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
