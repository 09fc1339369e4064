"""Memory and speed of the input paths (not a test; see bench/RESULTS.md).

1. Larger than memory: writes a uint8 ``.npy`` of ``--rows`` MNIST-like rows
   (MNIST's 60,000 images tiled with a per-copy shift, default 4,000,000
   rows = 3.1 GB), then trains the Shallow Net one epoch from a memory map of
   it (``Rescaling(1/255)`` fused into the per-batch conversion), and one
   epoch on the same number of rows held in memory as float32 where that
   fits (``--in-memory-rows``, default 1,000,000, 3.1 GB of float32; the
   per-row time is compared). Each run is its own process; peak resident
   memory (``ru_maxrss``) and the peak of RssAnon (the process's own memory;
   sampled every 20 ms from /proc/self/status -- mapped file pages are page
   cache, counted in RSS but not in RssAnon) are reported.
2. Sparse input: the Shallow and Intermediate nets on full MNIST as a CSR
   matrix (about 19% nonzero) against the same data dense, seconds per epoch
   (medians of ``--repeats``), one process per cell.

    python bench/data_inputs.py --data ../shared/data/mnist [--rows N] [--threads 2]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchenv import use_installed_fastsgd  # noqa: E402

WORKER = textwrap.dedent(r'''
    import json, os, resource, sys, threading, time
    import numpy as np
    import fastsgd
    from fastsgd import Dense, Rescaling, Sequential, SGD, Trainer
    from fastsgd.datasets import load_mnist

    cfg = json.loads(sys.argv[1])
    fastsgd.set_num_threads(cfg["threads"])
    peak = [0]
    stop = threading.Event()

    def rss_anon():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
        return 0

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_anon())
            time.sleep(0.02)

    def net(kind, rescale):
        hidden = [Dense(64, "sigmoid", input_dim=784)] if kind == "shallow" else \
            [Dense(64, "relu", input_dim=784), Dense(64, "relu")]
        layers = ([Rescaling(1 / 255)] if rescale else []) + hidden + [Dense(10, "softmax")]
        return Sequential(layers, seed=0)

    def epochs(model, X, y, cost, lr, n):
        # "dense" is the dense path (not converted to CSR by sparse_input="auto")
        tr = Trainer(model, cost, SGD(lr), batch_size=128, seed=0, sparse_input=False)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            tr.fit(X, y, epochs=1, verbose=0)
            times.append(time.perf_counter() - t0)
        return times

    out = {}
    if cfg["mode"] in ("memmap", "memory"):
        y = np.load(cfg["labels"], mmap_mode="r")
        if cfg["mode"] == "memmap":
            X = np.load(cfg["path"], mmap_mode="r")
            rows = X.shape[0]
            # read the file once so that the timed epoch runs from the page cache
            for a in range(0, rows, 1 << 16):
                np.asarray(X[a:a + (1 << 16)]).sum()
            model = net("shallow", True)
        else:
            rows = cfg["rows"]
            X = np.load(cfg["path"], mmap_mode="r")[:rows].astype(np.float32)
            X *= np.float32(1 / 255)
            model = net("shallow", False)
        y = np.ascontiguousarray(y[:rows], dtype=np.int64)
        base = rss_anon()
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        times = epochs(model, X, y, "mse", 0.01, 1)
        stop.set()
        th.join()
        out = {"rows": rows, "seconds": times[0], "us_per_row": times[0] / rows * 1e6,
               "peak_rss_anon_mb": peak[0] / 2 ** 20, "rss_anon_before_mb": base / 2 ** 20,
               "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "data_mb": X.nbytes / 2 ** 20}
    else:
        import scipy.sparse as sp
        (X, y), _ = load_mnist(cfg["data"])
        data = sp.csr_matrix(X) if cfg["mode"] == "csr" else X
        kind = cfg["net"]
        cost, lr = ("mse", 0.01) if kind == "shallow" else ("cross_entropy", 0.1)
        times = epochs(net(kind, False), data, y, cost, lr, cfg["repeats"] + 1)[1:]
        out = {"median_s": float(np.median(times)), "times": times,
               "density": float(getattr(data, "nnz", X.size) / X.size)}
    print(json.dumps(out))
''')


def run(cfg):
    env = dict(os.environ)
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(k, None)
    r = subprocess.run([sys.executable, "-c", WORKER, json.dumps(cfg)], capture_output=True,
                       text=True, env=env, cwd=tempfile.gettempdir())
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr else "failed"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def write_big(path, labels, rows, data):
    import numpy as np

    from fastsgd.datasets import load_mnist
    (X, y), _ = load_mnist(data, dtype="uint8")
    if os.path.exists(path) and np.load(path, mmap_mode="r").shape == (rows, 784):
        return
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(rows, 784))
    lab = np.lib.format.open_memmap(labels, mode="w+", dtype=np.int64, shape=(rows,))
    for a in range(0, rows, 60000):
        n = min(60000, rows - a)
        shift = (a // 60000) % 7
        out[a:a + n] = np.roll(X[:n], shift, axis=1)
        lab[a:a + n] = y[:n]
    out.flush()
    lab.flush()
    del out, lab


def main(argv=None):
    use_installed_fastsgd()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="folder with the MNIST IDX files")
    p.add_argument("--rows", type=int, default=4_000_000)
    p.add_argument("--in-memory-rows", type=int, default=1_000_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dir", default=tempfile.gettempdir(), help="where the big .npy goes")
    p.add_argument("--skip-big", action="store_true")
    p.add_argument("--out", default=None, help="write the results as JSON")
    args = p.parse_args(argv)
    if args.data:
        args.data = os.path.abspath(args.data)   # the workers run in another folder
    res = {"threads": args.threads}
    if not args.skip_big:
        path = os.path.join(args.dir, f"fastsgd-bench-{args.rows}.npy")
        labels = os.path.join(args.dir, f"fastsgd-bench-{args.rows}-labels.npy")
        write_big(path, labels, args.rows, args.data)
        res["memmap"] = run({"mode": "memmap", "path": path, "labels": labels,
                             "threads": args.threads})
        res["memory"] = run({"mode": "memory", "path": path, "labels": labels,
                             "rows": args.in_memory_rows, "threads": args.threads})
        print(json.dumps({k: res[k] for k in ("memmap", "memory")}, indent=1), flush=True)
    res["sparse"] = {}
    for kind in ("shallow", "intermediate"):
        for mode in ("dense", "csr"):
            res["sparse"][f"{kind}/{mode}"] = run({"mode": mode, "net": kind, "data": args.data,
                                                  "threads": args.threads,
                                                  "repeats": args.repeats})
            print(kind, mode, res["sparse"][f"{kind}/{mode}"], flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
