"""GEMM GFLOP/s of fastsgd vs numpy.matmul (and torch.matmul) on the shapes
training uses, float32 and float64, 1 and 2 threads.

    python bench/gemm_table.py [--markdown FILE] [--repeats N]

Each library and thread count runs in its own subprocess, outside the
checkout and against the installed fastsgd (two thread pools spinning on the
same cores would distort each other; a short pause separates them). Per
shape: median of `repeats` timings, each timing the mean of enough calls to
last ~50 ms. The table is preceded by the machine: CPU, fastsgd's SIMD path
and the BLAS kernel NumPy loaded.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import benchenv

benchenv.use_installed_fastsgd()

# (M, K, N, trans_a, trans_b, label)
SHAPES = [
    (128, 784, 64, False, False, "(128,784)·(784,64) X·W"),
    (784, 128, 64, True, False, "(784,128)·(128,64) Xᵀ·δ"),
    (128, 64, 784, False, True, "(128,64)·(64,784) δ·Wᵀ"),
    (32, 784, 64, False, False, "(32,784)·(784,64)"),
    (128, 784, 512, False, False, "(128,784)·(784,512)"),
    (256, 1024, 1024, False, False, "(256,1024)·(1024,1024)"),
    (1024, 1024, 1024, False, False, "1024³"),
    (2048, 2048, 2048, False, False, "2048³"),
]


def worker(lib, threads, repeats):
    import numpy as np
    if lib == "fastsgd":
        import fastsgd
        from fastsgd import kernels
        fastsgd.set_num_threads(threads)
    elif lib == "torch":
        import torch
        torch.set_num_threads(threads)
    from threadpoolctl import threadpool_limits
    res = {}
    with threadpool_limits(threads):
        for dtype in ("float32", "float64"):
            for M, K, N, ta, tb, label in SHAPES:
                rng = np.random.default_rng(0)
                a = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
                b = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
                out = np.empty((M, N), dtype)
                if lib == "fastsgd":
                    def f():
                        kernels.gemm(a, b, trans_a=ta, trans_b=tb, out=out)
                elif lib == "numpy":
                    A, B = (a.T if ta else a), (b.T if tb else b)

                    def f():
                        np.matmul(A, B, out=out)
                else:
                    A = torch.from_numpy(a).T if ta else torch.from_numpy(a)
                    B = torch.from_numpy(b).T if tb else torch.from_numpy(b)
                    O = torch.from_numpy(out)

                    def f():
                        torch.matmul(A, B, out=O)
                f()
                t0 = time.perf_counter()
                f()
                one = max(time.perf_counter() - t0, 1e-7)
                calls = max(1, int(0.05 / one))
                ts = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        f()
                    ts.append((time.perf_counter() - t0) / calls)
                ts.sort()
                res[f"{dtype}|{label}"] = ts[len(ts) // 2]
    print(json.dumps(res))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--markdown")
    p.add_argument("--pause", type=float, default=2.0, help="seconds between subprocesses")
    p.add_argument("--keep-openblas-coretype", action="store_true",
                   help="keep OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for the subprocesses")
    p.add_argument("--worker", nargs=2)
    a = p.parse_args()
    if a.worker:
        return worker(a.worker[0], int(a.worker[1]), a.repeats)
    problem = benchenv.fastsgd_problem()
    if problem:
        p.error(problem)
    notes = benchenv.openblas_notes(a.keep_openblas_coretype)
    for n in notes:
        print("warning:", n, file=sys.stderr)
    info = benchenv.probe_subprocess(1, a.keep_openblas_coretype)
    import importlib.util
    libs = ["fastsgd", "numpy"] + (["torch"] if importlib.util.find_spec("torch") else [])
    table = {}
    for threads in (1, 2):
        for lib in libs:
            if table:
                time.sleep(a.pause)
            r = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", lib,
                                str(threads), "--repeats", str(a.repeats)], capture_output=True,
                               text=True, env=benchenv.worker_env(threads, a.keep_openblas_coretype),
                               cwd=benchenv.worker_cwd())
            if r.returncode != 0:
                sys.exit(f"{lib} on {threads} thread(s) failed: "
                         + (r.stderr.strip().splitlines() or ["no output"])[-1])
            table[(lib, threads)] = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"done {lib} {threads}", file=sys.stderr, flush=True)
    lines = ["Machine:", ""] + benchenv.machine_markdown(info) + [f"- {n}" for n in notes] + [""]
    lines += ["| dtype | shape | threads | fastsgd GFLOP/s | NumPy GFLOP/s | ratio vs NumPy |"
             + (" PyTorch GFLOP/s | ratio vs PyTorch |" if "torch" in libs else ""),
             "|---|---|---|---|---|---|" + ("---|---|" if "torch" in libs else "")]
    for dtype in ("float32", "float64"):
        for M, K, N, _ta, _tb, label in SHAPES:
            for threads in (1, 2):
                key = f"{dtype}|{label}"
                flop = 2.0 * M * N * K
                gf = {lib: flop / table[(lib, threads)][key] / 1e9 for lib in libs}
                row = (f"| {dtype} | {label} | {threads} | {gf['fastsgd']:.1f} | {gf['numpy']:.1f} | "
                       f"{gf['fastsgd'] / gf['numpy']:.2f} |")
                if "torch" in libs:
                    row += f" {gf['torch']:.1f} | {gf['fastsgd'] / gf['torch']:.2f} |"
                lines.append(row)
    md = "\n".join(lines) + "\n"
    print(md)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(md)


if __name__ == "__main__":
    main()
