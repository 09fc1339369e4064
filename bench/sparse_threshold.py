"""Break-even density of dense input trained through the sparse first layer (not a test;
see bench/RESULTS.md, "Dense input through the sparse path").

Trains the book's Shallow Net (784-64 sigmoid-10 softmax, quadratic cost, SGD 0.01) and
Intermediate Net (784-64 relu-64 relu-10 softmax, cross-entropy, SGD 0.1), batch 128,
float32, on the same dense array twice: on the dense path (``Trainer(sparse_input=False)``)
and converted to CSR (``sparse_input=True``). The data are 60,000 rows of 784 float32
features with a given fraction of nonzeros at random places (``--densities``), and full
MNIST. One process per data set and thread count; in it the two paths take turns epoch by
epoch (A B, then B A, ...), each on its own Trainer, after one warm-up epoch each; the
table has the median seconds per epoch over ``--repeats`` turns (History's epoch time,
which leaves out the conversion) and, apart, the median time of the conversion itself
(``fastsgd._inputs.dense_as_csr``, allocation included). ``--conversion`` times only the
conversion of MNIST (uint8 with a scale, and float32), both passes and the whole call.

The threshold ``fastsgd._inputs.SPARSE_INPUT_MAX_DENSITY`` is chosen from this table: the
density up to which the converted path is faster for both nets and every thread count.

    python bench/sparse_threshold.py --data ../shared/data/mnist [--threads 1,2] \
        [--repeats 5] [--densities 0.05,0.1,0.2,0.3,0.4,0.5,0.7] [--out res.json]
    python bench/sparse_threshold.py --data ../shared/data/mnist --conversion
"""
import argparse
import json
import os
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchenv import cpu_description, use_installed_fastsgd, worker_cwd, worker_env  # noqa: E402

WORKER = textwrap.dedent(r'''
    import json, sys, time
    import numpy as np
    import fastsgd
    from fastsgd import Dense, Sequential, SGD, Trainer, _inputs
    from fastsgd.datasets import load_mnist

    cfg = json.loads(sys.argv[1])
    fastsgd.set_num_threads(cfg["threads"])

    def data():
        if cfg["density"] == "mnist":
            (X, y), _ = load_mnist(cfg["data"], download=False)
            return X, y.astype(np.int64)
        rng = np.random.default_rng(0)
        n, d = cfg["rows"], 784
        X = np.zeros((n, d), np.float32)
        for a in range(0, n, 4096):   # in blocks: no float64 temporaries of the whole set
            b = min(n, a + 4096)
            keep = rng.random((b - a, d)) < cfg["density"]
            X[a:b][keep] = rng.random(int(keep.sum()), dtype=np.float32) + np.float32(0.01)
        return X, rng.integers(0, 10, n)

    def net(kind):
        hidden = [Dense(64, "sigmoid", input_dim=784)] if kind == "shallow" else \
            [Dense(64, "relu", input_dim=784), Dense(64, "relu")]
        return Sequential(hidden + [Dense(10, "softmax")], seed=0)

    def trainer(kind, sparse_input):
        cost, lr = ("mse", 0.01) if kind == "shallow" else ("cross_entropy", 0.1)
        return Trainer(net(kind), cost, SGD(lr), batch_size=128, seed=0,
                       sparse_input=sparse_input)

    X, y = data()
    out = {"density": float(np.count_nonzero(X) / X.size), "fastsgd": fastsgd.__file__,
           "config": fastsgd.config(), "nets": {}}
    for kind in cfg["nets"]:
        pair = {"dense": trainer(kind, False), "csr": trainer(kind, True)}
        times = {"dense": [], "csr": []}
        for name, tr in pair.items():   # warm-up
            tr.fit(X, y, epochs=1, verbose=0)
        for r in range(cfg["repeats"]):
            for name in (("dense", "csr") if r % 2 == 0 else ("csr", "dense")):
                h = pair[name].fit(X, y, epochs=1, verbose=0)
                times[name].append(h.history["seconds"][0])
        modes = {k: tr.input_mode for k, tr in pair.items()}
        out["nets"][kind] = {"dense": float(np.median(times["dense"])),
                             "csr": float(np.median(times["csr"])), "times": times,
                             "modes": modes}
    conv = []
    prepared = _inputs.prepare("X", X, np.float32)
    for _ in range(max(3, cfg["repeats"])):
        t0 = time.perf_counter()
        _inputs.dense_as_csr("X", prepared, np.float32, True)
        conv.append(time.perf_counter() - t0)
    out["conversion"] = float(np.median(conv))
    print(json.dumps(out))
''')

CONVERSION = textwrap.dedent(r'''
    import json, sys, time
    import numpy as np
    import fastsgd
    from fastsgd import kernels
    from fastsgd._ops import dense_csr_count, dense_csr_fill
    from fastsgd.datasets import load_mnist

    cfg = json.loads(sys.argv[1])
    fastsgd.set_num_threads(cfg["threads"])
    (X, _), _ = load_mnist(cfg["data"], download=False, dtype="uint8")
    Xf = X.astype(np.float32) * np.float32(1 / 255)
    out = {"fastsgd": fastsgd.__file__, "config": fastsgd.config(), "rows": {}}
    for name, A, scale in (("uint8, scale 1/255", X, 1 / 255), ("float32", Xf, 1.0)):
        indptr, indices, data = kernels.dense_to_csr(A, np.float32, scale)
        t = {"whole": [], "count": [], "fill": []}
        counts = np.empty(A.shape[0], np.int64)
        for _ in range(cfg["repeats"]):
            t0 = time.perf_counter()
            kernels.dense_to_csr(A, np.float32, scale)
            t["whole"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            dense_csr_count(A, counts, np.float32, scale)
            t["count"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            dense_csr_fill(A, indptr, indices, data, scale)
            t["fill"].append(time.perf_counter() - t0)
        out["rows"][name] = {k: {"median": float(np.median(v)), "min": float(min(v))}
                             for k, v in t.items()}
        out["rows"][name]["nnz"] = int(indices.size)
    print(json.dumps(out))
''')


def run(code, cfg):
    r = subprocess.run([sys.executable, "-c", code, json.dumps(cfg)], capture_output=True,
                       text=True, env=worker_env(cfg["threads"]), cwd=worker_cwd())
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr else "failed"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def break_even(rows):
    """The density where dense/csr crosses 1, linearly interpolated between the measured
    synthetic densities (None if the converted path is faster, or slower, everywhere)."""
    pts = sorted((d, dense / csr) for d, dense, csr in rows)
    for (d0, r0), (d1, r1) in zip(pts, pts[1:]):
        if r0 >= 1.0 > r1:
            return d0 + (r0 - 1.0) * (d1 - d0) / (r0 - r1)
    return None


def markdown(res):
    lines = ["| data (nonzero) | net | threads | dense s/epoch | converted s/epoch | "
             "dense / converted | conversion s |", "|---|---|---|---|---|---|---|"]
    for cell in res["cells"]:
        if "error" in cell["result"]:
            lines.append(f"| {cell['density']} | | {cell['threads']} | error: "
                         f"{cell['result']['error']} | | | |")
            continue
        r = cell["result"]
        label = ("MNIST" if cell["density"] == "mnist" else "synthetic") + f" ({r['density']:.3f})"
        for kind, v in r["nets"].items():
            lines.append(f"| {label} | {kind} | {cell['threads']} | {v['dense']:.3f} | "
                         f"{v['csr']:.3f} | {v['dense'] / v['csr']:.2f}x | "
                         f"{r['conversion']:.3f} |")
    lines.append("")
    for key, d in res["break_even"].items():
        lines.append(f"- break-even density, {key}: " + (f"{d:.2f}" if d is not None else
                                                         "outside the measured range"))
    return "\n".join(lines)


def main(argv=None):
    use_installed_fastsgd()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="folder with the MNIST IDX files")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rows", type=int, default=60000, help="rows of the synthetic data sets")
    p.add_argument("--densities", default="0.05,0.1,0.2,0.3,0.4,0.5,0.7")
    p.add_argument("--nets", default="shallow,intermediate")
    p.add_argument("--conversion", action="store_true",
                   help="time only the conversion of MNIST into CSR")
    p.add_argument("--out", default=None, help="write the results as JSON")
    args = p.parse_args(argv)
    if args.data:
        args.data = os.path.abspath(args.data)   # the workers run in another folder
    threads = [int(t) for t in args.threads.split(",")]
    res = {"machine": cpu_description(), "threads": threads}
    if args.conversion:
        res["conversion"] = {}
        for t in threads:
            r = run(CONVERSION, {"threads": t, "data": args.data, "repeats": args.repeats})
            res["conversion"][t] = r
            print(json.dumps({"threads": t, **r}, indent=1), flush=True)
    else:
        nets = args.nets.split(",")
        res["cells"] = []
        for dens in [float(d) for d in args.densities.split(",")] + ["mnist"]:
            for t in threads:
                cfg = {"density": dens, "threads": t, "rows": args.rows, "repeats": args.repeats,
                       "nets": nets, "data": args.data}
                cell = {"density": dens, "threads": t, "result": run(WORKER, cfg)}
                res["cells"].append(cell)
                print(json.dumps(cell), flush=True)
        res["break_even"] = {}
        for kind in nets:
            for t in threads:
                rows = [(c["result"]["density"], c["result"]["nets"][kind]["dense"],
                         c["result"]["nets"][kind]["csr"]) for c in res["cells"]
                        if c["threads"] == t and c["density"] != "mnist"
                        and "error" not in c["result"]]
                res["break_even"][f"{kind}, {t} thread{'s' if t > 1 else ''}"] = break_even(rows)
        print(markdown(res))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
