"""Data-parallel training over MPI: measured on this machine, modelled for 8-64 nodes.

    python bench/mpi_scaling.py --data ../shared/data/mnist [--ranks 1,2,4] [--nets wide,intermediate]
                                [--epochs 2] [--out mpi.json] [--markdown mpi.md]

Needs mpi4py and an mpiexec (``pip install ".[mpi]"``). It benchmarks the
installed fastsgd, never the source tree it sits in.

Measured, for each network (compare.py's definitions: Wide 784-512-512-10
relu, Intermediate 784-64-64-10 relu; cross-entropy, plain SGD, batch 128,
float32) and each rank count: one ``mpiexec -n R`` job on full MNIST, one
thread per rank, one warm-up epoch then the median of the timed epochs:
seconds per epoch, the share of the epoch each rank spends in the gradient
Allreduce (waiting for the slowest rank included: ``History.comm``), and the
cost of one Allreduce of the gradient buffer when all ranks arrive together
(a barrier, then the median of 100 calls).

Measured in one process on one thread, for the model: a rank's step without
the Allreduce -- forward, cost and backward on a slice of m rows (m = 128,
64, ..., 2), the SGD step over all parameters and the Python around them --
and the scaling of the gradient by slice/batch rows.

The model (on paper, not measured): one rank per node, each computing at
this machine's measured one-thread speed; a step on p nodes takes
step(ceil(128 / p) rows) + scale + allreduce(p), where the allreduce of S
bytes costs min(ceil(log2 p) (a + S/b), 2 (p-1) a +
2 (p-1)/p S/b) (recursive doubling or ring) on a network of latency a and
bandwidth b, given for two networks below. For comparison the model is
also given for 128 rows per node (a global batch of 128 p rows: other
training than one process, not what ``comm`` computes for batch_size=128).
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import benchenv

benchenv.use_installed_fastsgd()

NETS = {"wide": ([512, 512], "relu", "cross_entropy", 0.1),
        "intermediate": ([64, 64], "relu", "cross_entropy", 0.1)}
BATCH = 128
SLICES = (128, 64, 32, 16, 8, 4, 2)
#: the networks of the model: (name, latency in seconds, bandwidth in bytes/s)
NETWORKS = (("100 Gb/s InfiniBand-class (2 µs, 10 GB/s)", 2e-6, 10e9),
            ("10 Gb/s Ethernet, TCP (25 µs, 1.1 GB/s)", 25e-6, 1.1e9))
NODES = (1, 2, 4, 8, 16, 32, 64)


def _model(net):
    from fastsgd import Dense, Sequential
    hidden, act, _, _ = NETS[net]
    layers = [Dense(hidden[0], act, input_dim=784)] + [Dense(h, act) for h in hidden[1:]]
    return Sequential(layers + [Dense(10, "softmax")], dtype="float32", seed=0)


def _data(path):
    from fastsgd.datasets import load_mnist
    (X, y), _ = load_mnist(path, download=False)
    return X, y


# ------------------------------------------------------------------ the MPI job (every rank)
def job(a):
    import numpy as np
    from mpi4py import MPI

    from fastsgd import SGD, Trainer
    comm = MPI.COMM_WORLD
    X, y = _data(a.data)
    model = _model(a.net)
    trainer = Trainer(model, NETS[a.net][2], SGD(NETS[a.net][3]), batch_size=BATCH, seed=0,
                      comm=comm, threads_per_rank=1)
    h = trainer.fit(X, y, epochs=1 + a.epochs, verbose=0)
    secs = h.history["seconds"][1:]
    share = [ar / s for ar, s in zip(h.comm["allreduce_seconds"][1:], secs)]
    shares = comm.gather(statistics.median(share), root=0)
    # one Allreduce of the gradient buffer when every rank arrives together
    buf = np.zeros(model.count_params() + 3, np.float32)
    calls = []
    comm.Barrier()
    for _ in range(100):
        t0 = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        calls.append(time.perf_counter() - t0)
    pure = comm.allreduce(statistics.median(calls), op=MPI.MAX)
    if comm.Get_rank() == 0:
        print(json.dumps({"net": a.net, "ranks": comm.Get_size(), "threads": h.comm["threads"],
                          "seconds": statistics.median(secs), "epochs": secs,
                          "allreduce_share": shares, "allreduce_call": pure,
                          "steps": -(-X.shape[0] // BATCH), "accuracy": h.history["accuracy"][-1]}))


# ------------------------------------------------------------------ one-process compute timings
def compute(a):
    import numpy as np

    import fastsgd
    from fastsgd import _net
    from fastsgd._network import build_plan
    fastsgd.set_num_threads(1)
    X, y = _data(a.data)
    model = _model(a.net)
    out = {"net": a.net, "params": model.count_params(), "slice": {}}
    plan = build_plan(model, BATCH, cost=NETS[a.net][2], training=True)
    net = _net.Net(plan)
    net.bind(X, y.astype(np.int64))
    net.set_order(np.random.default_rng(0).permutation(X.shape[0]).astype(np.int64))
    opt = fastsgd.SGD(NETS[a.net][3])
    slots = opt.build(plan.layout, plan.dtype, owner=model)
    update = _net.Update(plan.params, plan.grads, slots, opt.segments(plan.layout, model.layers))
    update.configure(opt.hyper())
    tail = np.zeros(3, np.float32)
    for m in SLICES:  # what fastsgd.distributed does in a step, but the Allreduce
        reps = max(20, 2000 // m) if a.net == "intermediate" else max(10, 400 // m)
        times = []
        for r in range(reps):
            s = (r * m) % (X.shape[0] - m)
            t0 = time.perf_counter()
            net.forward(s, m, out_act=False)
            ls, c = net.cost(s, m)
            net.backward(s, m)
            tail[0], tail[1], tail[2] = 0, ls, c
            update.run()
            times.append(time.perf_counter() - t0)
        out["slice"][m] = statistics.median(times)
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        update.run()
        times.append(time.perf_counter() - t0)
    out["update"] = statistics.median(times)
    times = []
    for _ in range(200):  # the scaling of a rank's share of the gradient (p > 1)
        t0 = time.perf_counter()
        plan.grads *= 0.5
        times.append(time.perf_counter() - t0)
    out["scale"] = statistics.median(times)
    print(json.dumps(out))


# ------------------------------------------------------------------ driver
def _last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def mpiexec():
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    import shutil
    return beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")


def allreduce_model(p, size_bytes, latency, bandwidth):
    if p == 1:
        return 0.0
    doubling = math.ceil(math.log2(p)) * (latency + size_bytes / bandwidth)
    ring = 2 * (p - 1) * latency + 2 * (p - 1) / p * size_bytes / bandwidth
    return min(doubling, ring)


def modelled(meas, comp):
    """Per network: modelled seconds per epoch and speedup on NODES nodes."""
    one = next(r for r in meas if r["ranks"] == 1)
    steps = one["steps"]
    step1 = comp["slice"][BATCH]
    size = 4 * (comp["params"] + 3)
    rows = []
    for name, lat, bw in NETWORKS:
        for p in NODES:
            c = comp["slice"][-(-BATCH // p)]  # NODES are powers of 2: a measured slice
            ar = allreduce_model(p, size, lat, bw)
            step = c + (comp["scale"] if p > 1 else 0.0) + ar
            rows.append({"network": name, "nodes": p, "compute": c, "allreduce": ar,
                         "step": step, "epoch": step * steps, "speedup": step1 / step,
                         "allreduce_share": ar / step})
            # 128 rows per node: a global batch of 128 p rows, fewer steps (other training)
            weak = comp["slice"][BATCH] + (comp["scale"] if p > 1 else 0.0) + ar
            weak_steps = -(-steps * BATCH // (BATCH * p))
            rows[-1].update({"weak_epoch": weak * weak_steps,
                             "weak_speedup": step1 * steps / (weak * weak_steps)})
    return {"step1": step1, "bytes": size, "rows": rows}


def to_markdown(out):
    L = [f"Load (`uptime`) before: {out['uptime_before']}; after: {out['uptime_after']}.", ""]
    L += ["| net | ranks | threads/rank | s/epoch (median) | speedup | Allreduce share of the step "
          "(per rank) | one Allreduce, all ranks ready (median, ms) | accuracy after the last epoch |",
          "|---|---|---|---|---|---|---|---|"]
    for net, meas in out["measured"].items():
        base = next(r["seconds"] for r in meas if r["ranks"] == 1)
        for r in meas:
            shares = ", ".join(f"{100 * s:.0f}%" for s in r["allreduce_share"])
            L.append(f"| {net} | {r['ranks']} | {r['threads']} | {r['seconds']:.3f} | "
                     f"{base / r['seconds']:.2f} | {shares} | {1e3 * r['allreduce_call']:.3f} | "
                     f"{r['accuracy']:.4f} |")
    L += ["", "One process, one thread, median of many steps: a rank's step without the "
          "Allreduce (forward, cost, backward on a slice of m rows, the SGD step over all "
          "parameters, the Python around them), in ms; and the SGD step alone.", "",
          "| net | parameters | " + " | ".join(f"m={m}" for m in SLICES) + " | step |",
          "|---|---|" + "---|" * (len(SLICES) + 1)]
    for net, comp in out["compute"].items():
        L.append(f"| {net} | {comp['params']:,} | "
                 + " | ".join(f"{1e3 * comp['slice'][m]:.3f}" for m in SLICES)
                 + f" | {1e3 * comp['update']:.3f} |")
    L += ["", "**Model, not measured**: seconds per epoch on p nodes, one rank per node at this "
          "machine's one-thread speed, global batch 128 (the same training as one process).", ""]
    for net, mod in out["model"].items():
        L += [f"{net} ({mod['bytes'] / 1e6:.2f} MB Allreduce per step):", "",
              "| network | " + " | ".join(f"p={p}" for p in NODES) + " |",
              "|---|" + "---|" * len(NODES)]
        for name, _, _ in NETWORKS:
            rows = [r for r in mod["rows"] if r["network"] == name]
            L.append(f"| {name} | " + " | ".join(
                f"{r['epoch']:.2f} s ({r['speedup']:.1f}×, {100 * r['allreduce_share']:.0f}% comm)"
                for r in rows) + " |")
        L.append("")
    L += ["**Model, not measured**, for comparison: 128 rows per node, so a global batch of "
          "128·p rows and 469/p steps per epoch (other training than one process at batch 128: "
          "the learning rate would need retuning). Seconds per epoch and speedup.", "",
          "| net, network | " + " | ".join(f"p={p}" for p in NODES) + " |",
          "|---|" + "---|" * len(NODES)]
    for net, mod in out["model"].items():
        for name, _, _ in NETWORKS:
            rows = [r for r in mod["rows"] if r["network"] == name]
            L.append(f"| {net}, {name.split(' (')[0]} | " + " | ".join(
                f"{r['weak_epoch']:.3f} s ({r['weak_speedup']:.1f}×)" for r in rows) + " |")
    return "\n".join(L)


def _uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder with the four full-MNIST IDX files")
    p.add_argument("--nets", default="wide,intermediate")
    p.add_argument("--ranks", default="1,2,4")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up")
    p.add_argument("--out")
    p.add_argument("--markdown")
    p.add_argument("--job", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--compute", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--net", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.job:
        return job(a)
    if a.compute:
        return compute(a)
    problem = benchenv.fastsgd_problem()
    if problem:
        sys.exit(problem)
    exe = mpiexec()
    if exe is None:
        sys.exit("no mpiexec found: pip install \".[mpi]\"")
    env = benchenv.worker_env(1)
    env["FASTSGD_NUM_THREADS"] = "1"
    script = os.path.abspath(__file__)
    data = os.path.abspath(a.data)
    out = {"uptime_before": _uptime(), "machine": benchenv.probe_subprocess(1), "measured": {},
           "compute": {}, "model": {}}
    for net in a.nets.split(","):
        r = subprocess.run([sys.executable, script, "--compute", "--net", net, "--data", data],
                           capture_output=True, text=True, env=env, cwd=benchenv.worker_cwd(),
                           timeout=1800, check=True)
        comp = _last_json(r.stdout)
        comp["slice"] = {int(k): v for k, v in comp["slice"].items()}
        out["compute"][net] = comp
        out["measured"][net] = []
        for ranks in (int(x) for x in a.ranks.split(",")):
            cmd = [exe, "-n", str(ranks), sys.executable, script, "--job", "--net", net,
                   "--data", data, "--epochs", str(a.epochs)]
            r = subprocess.run(cmd, capture_output=True, text=True, env=env,
                               cwd=benchenv.worker_cwd(), timeout=3600, stdin=subprocess.DEVNULL)
            if r.returncode != 0:
                sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}")
            res = _last_json(r.stdout)
            print(json.dumps(res), flush=True)
            out["measured"][net].append(res)
        out["model"][net] = modelled(out["measured"][net], comp)
    out["uptime_after"] = _uptime()
    md = to_markdown(out)
    print(md)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(md + "\n")


if __name__ == "__main__":
    main()
