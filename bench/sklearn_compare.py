"""fastsgd.MLPClassifier next to scikit-learn's MLPClassifier on MNIST.

    python bench/sklearn_compare.py [--data DIR] [--max-iter 5] [--threads 1,2]
                                    [--solvers sgd,adam] [--repeat 1] [--out FILE.json]

Both estimators get the same settings: one hidden layer of 64 relu units,
batch size 128, ``max_iter`` epochs exactly (``early_stopping=False``,
``tol=0`` and ``n_iter_no_change`` above ``max_iter``, so neither stops
early), ``random_state=0``, scikit-learn's defaults otherwise (alpha=1e-4;
sgd with momentum 0.9 and Nesterov), learning rate 0.01 for sgd and 0.001
for adam, float32 data (scikit-learn then computes in float32 too). Each
(estimator, solver, threads) cell runs in its own subprocess with
OMP/OpenBLAS/MKL thread variables and threadpoolctl limits set to the
thread count (fastsgd also gets ``n_threads``). Reported: seconds of
``fit`` (data conversion included) and test accuracy on the 10,000 test
images, with the ratio of the times. With ``--repeat N`` every cell runs N
times (fresh processes, alternating the estimators) and the fastest run
counts, which damps interference from other work on the machine.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "data", "mnist")
LR = {"sgd": 0.01, "adam": 0.001}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def worker(args):
    """One cell: fit and score one estimator; prints a JSON line."""
    from threadpoolctl import threadpool_limits

    from fastsgd.datasets import load_mnist
    (X, y), (Xt, yt) = load_mnist(args.data, download=False)
    kw = dict(hidden_layer_sizes=(64,), activation="relu", solver=args.solver, batch_size=128,
              learning_rate_init=LR[args.solver], max_iter=args.max_iter, early_stopping=False,
              tol=0.0, n_iter_no_change=args.max_iter + 1, random_state=0, shuffle=True)
    with threadpool_limits(args.threads):
        if args.worker == "sklearn":
            from sklearn.neural_network import MLPClassifier
            est = MLPClassifier(**kw)
        else:
            import fastsgd
            fastsgd.set_num_threads(args.threads)
            est = fastsgd.MLPClassifier(n_threads=args.threads, dtype="float32", **kw)
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            est.fit(X, y)
            seconds = time.perf_counter() - t0
        acc = est.score(Xt, yt)
    print(json.dumps({"framework": args.worker, "solver": args.solver, "threads": args.threads,
                      "seconds": seconds, "accuracy": acc, "epochs": int(est.n_iter_),
                      "coef_dtype": str(est.coefs_[0].dtype)}))


def run_cell(framework, solver, threads, args):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", framework, "--solver", solver,
           "--threads", str(threads), "--max-iter", str(args.max_iter), "--data", args.data]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=HERE, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"{framework}/{solver}/{threads} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA, help="folder with the four MNIST IDX files")
    ap.add_argument("--max-iter", type=int, default=5, help="epochs (default 5)")
    ap.add_argument("--threads", default="1,2", help="thread counts, e.g. 1,2")
    ap.add_argument("--solvers", default="sgd,adam")
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell; the fastest counts")
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--worker", choices=["fastsgd", "sklearn"], help=argparse.SUPPRESS)
    ap.add_argument("--solver", default="sgd", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.max_iter < 1:
        ap.error("--max-iter must be >= 1")
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    if args.worker:
        args.threads = int(args.threads)
        return worker(args)
    args.data = os.path.abspath(args.data)
    threads = [int(t) for t in args.threads.split(",")]
    solvers = args.solvers.split(",")
    for s in solvers:
        if s not in LR:
            ap.error(f"--solvers: unknown solver {s!r}")
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs); {args.max_iter} epochs; "
          f"MNIST from {args.data}")
    rows = []
    header = (f"{'solver':<6} {'threads':>7} | {'sklearn s':>9} {'acc':>7} | "
              f"{'fastsgd s':>9} {'acc':>7} | {'speed-up':>8}")
    print(header)
    print("-" * len(header))
    for solver in solvers:
        for t in threads:
            runs = {"sklearn": [], "fastsgd": []}
            for _ in range(args.repeat):
                for fw in runs:
                    runs[fw].append(run_cell(fw, solver, t, args))
            sk, fs = (min(runs[fw], key=lambda r: r["seconds"]) for fw in ("sklearn", "fastsgd"))
            rows += [sk, fs]
            print(f"{solver:<6} {t:>7} | {sk['seconds']:>9.2f} {100 * sk['accuracy']:>6.2f}% | "
                  f"{fs['seconds']:>9.2f} {100 * fs['accuracy']:>6.2f}% | "
                  f"{sk['seconds'] / fs['seconds']:>7.1f}x", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"cpu": cpu_model(), "max_iter": args.max_iter, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
