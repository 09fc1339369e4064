"""The Intermediate Net on full MNIST with and without dropout and batch
normalization: test accuracy after the epochs and seconds per epoch, and what
the new layers cost per epoch against the same net without them.

    python bench/layers15.py --data ../shared/data/mnist [--epochs 20] [--threads 2]

The net is the book's Intermediate Net (784 -> 64 relu -> 64 relu -> 10
softmax, cross-entropy, SGD lr=0.1, batch 128, seed 42), as ``fastsgd train
--net intermediate``; the variants add, after each hidden Dense layer, a
BatchNormalization (``--batch-norm``) and/or a Dropout(0.2) (``--dropout
0.2``), in that order. Every variant runs in this one process, one after the
other, on the same data; the machine's load average is printed before and
after. Prints a Markdown table.

A second table times the fused training step alone (forward, cost,
backward, SGD step) on batches of 128 in a tight loop: the best of
``--repeats`` runs of 100 batches per variant, which filters out most time
other processes take from a shared machine, times 469 batches gives the
per-epoch cost of each variant and of its extra layers.
"""
import argparse
import os
import statistics
import sys
import time

import benchenv

benchenv.use_installed_fastsgd()

VARIANTS = [("plain", False, 0.0), ("dropout 0.2", False, 0.2), ("batch norm", True, 0.0),
            ("batch norm + dropout 0.2", True, 0.2)]


def build(batch_norm, rate, input_dim):
    from fastsgd import BatchNormalization, Dense, Dropout, Sequential
    layers = []
    for k in range(2):
        layers.append(Dense(64, "relu", input_dim=input_dim if k == 0 else None))
        if batch_norm:
            layers.append(BatchNormalization())
        if rate:
            layers.append(Dropout(rate))
    layers.append(Dense(10, "softmax"))
    return Sequential(layers, seed=42)


def step_seconds(model, X, y, repeats, batches=100):
    """Best seconds per fused training step on batches of 128 rows."""
    from fastsgd import SGD, Trainer
    trainer = Trainer(model, "cross_entropy", SGD(0.01), batch_size=128, seed=42)
    net, _ = trainer._build_net(128, training=True)
    Xp, t = trainer._prepare(X[:128 * batches], y[:128 * batches])
    net.bind(Xp, t)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for b in range(batches):
            net.train_batch(b * 128, 128)
        best = min(best, (time.perf_counter() - t0) / batches)
    return best


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder with the four MNIST IDX files")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=30)
    a = p.parse_args()
    import fastsgd
    from fastsgd import SGD, Trainer, datasets
    fastsgd.set_num_threads(a.threads)
    (X, y), (Xt, yt) = datasets.load_mnist(a.data)
    print(f"fastsgd {fastsgd.__version__} from {os.path.dirname(fastsgd.__file__)}; "
          f"simd {fastsgd.config()['simd']}; threads {fastsgd.get_num_threads()}; "
          f"load average before: {load()}", file=sys.stderr)
    rows = []
    base = None
    for name, bn, rate in VARIANTS:
        model = build(bn, rate, X.shape[1])
        trainer = Trainer(model, "cross_entropy", SGD(0.1), batch_size=128, seed=42)
        t0 = time.perf_counter()
        hist = trainer.fit(X, y, epochs=a.epochs, verbose=0)
        total = time.perf_counter() - t0
        acc = trainer.evaluate(Xt, yt)["accuracy"]
        secs = hist.history["seconds"]
        med = statistics.median(secs)
        base = med if base is None else base
        rows.append((name, model.count_params(), acc, med, min(secs), med - base))
        print(f"{name}: accuracy {acc:.4f}, median {med:.3f} s/epoch, total {total:.1f} s",
              file=sys.stderr)
    steps = [(name, step_seconds(build(bn, rate, X.shape[1]), X, y, a.repeats))
             for name, bn, rate in VARIANTS]
    print(f"load average after: {load()}", file=sys.stderr)
    print(f"| variant | params | test accuracy after {a.epochs} epochs | s/epoch (median) | "
          f"s/epoch (best) | cost of the new layers per epoch |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, acc, med, best, extra in rows:
        cost = "--" if name == "plain" else f"{extra:+.3f} s ({100 * extra / base:+.0f}%)"
        print(f"| {name} | {n:,} | {acc:.4f} | {med:.3f} | {best:.3f} | {cost} |")
    per_epoch = -(-X.shape[0] // 128)
    print()
    print(f"| variant | fused step, batch 128 (best of {a.repeats}) | per epoch ({per_epoch} "
          f"steps) | cost of the new layers per epoch |")
    print("|---|---:|---:|---:|")
    base = steps[0][1]
    for name, sec in steps:
        cost = "--" if name == "plain" else (f"{(sec - base) * per_epoch:+.3f} s "
                                              f"({100 * (sec - base) / base:+.0f}%)")
        print(f"| {name} | {1e6 * sec:.0f} µs | {sec * per_epoch:.3f} s | {cost} |")


if __name__ == "__main__":
    main()
