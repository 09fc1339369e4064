"""How training time grows with the work: epoch time of fastsgd, NumPy and
PyTorch against hidden width and batch size, fastsgd against thread count,
and fastsgd against the number of samples.

    python bench/scaling.py [--data DIR] [--out-dir bench] [--quick]

Writes scaling.json, scaling.md and PNG plots (matplotlib) to --out-dir.
Every point runs in its own subprocess outside the checkout, against the
installed fastsgd (see compare.py), median of the timed epochs after a
warm-up, with a short pause between points.
"""
import argparse
import json
import os
import statistics
import sys
import time
from types import SimpleNamespace

# the bench folder (for compare.py), never the checkout: compare takes the
# checkout off sys.path so that the installed fastsgd is the one measured
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchenv  # noqa: E402
import compare  # noqa: E402

OPTIONS = {}


def point(fw, net, batch, threads, samples, data, epochs):
    if OPTIONS.get("started"):
        time.sleep(OPTIONS["pause"])
    OPTIONS["started"] = True
    args = SimpleNamespace(epochs=epochs, samples=samples, data=data,
                           keep_openblas_coretype=OPTIONS.get("keep", False))
    res = compare.run_cell(fw, net, batch, threads, args)
    if "times" not in res:
        print(f"  {fw} {net} batch {batch}: {res.get('error')}", file=sys.stderr, flush=True)
        return None
    return statistics.median(res["times"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data")
    p.add_argument("--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
    p.add_argument("--quick", action="store_true",
                   help="a check that the script runs: fewer points, 10,000 samples, 1 timed epoch")
    p.add_argument("--samples", type=int, help="training samples per point (default 60000)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frameworks", default="fastsgd,numpy,torch",
                   help="compared in the width and batch scans (fastsgd always runs), from: "
                        + ",".join(compare.FRAMEWORKS))
    p.add_argument("--pause", type=float, default=2.0, help="seconds between points")
    p.add_argument("--keep-openblas-coretype", action="store_true",
                   help="keep OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for the subprocesses")
    a = p.parse_args()
    problem = benchenv.fastsgd_problem()
    if problem:
        p.error(problem)
    OPTIONS.update(pause=a.pause, keep=a.keep_openblas_coretype)
    for n in benchenv.openblas_notes(a.keep_openblas_coretype):
        print("warning:", n, file=sys.stderr)
    epochs = 1 if a.quick else 3
    samples = a.samples or (10000 if a.quick else 60000)
    asked = ["fastsgd"] + [f for f in a.frameworks.split(",") if f and f != "fastsgd"]
    unknown = [f for f in asked if f not in compare.RUNNERS]
    if unknown:
        p.error(f"unknown framework(s) {','.join(unknown)}")
    fws = [f for f in asked if compare.available(f)]
    missing = [f"{f}: not installed, skipped" for f in asked if f not in fws]
    widths = [64, 256, 1024] if a.quick else [64, 128, 256, 512, 1024, 2048]
    batches = [8, 128, 1024] if a.quick else [8, 16, 32, 64, 128, 256, 512, 1024]
    out = {"machine": compare.machine(a.threads, a.keep_openblas_coretype),
           "notes": benchenv.openblas_notes(a.keep_openblas_coretype) + missing,
           "threads": a.threads,
           "samples_per_point": samples, "width": [], "batch": [], "threads_scan": [],
           "samples": []}
    for w in widths:
        net = f"custom:{w}:relu:cross_entropy:0.1"
        flop = compare.matmul_flops([w]) * samples / 1e9
        row = {"width": w, "gflop": flop}
        for fw in fws:
            t = point(fw, net, 128, a.threads, samples, a.data, epochs)
            row[fw] = t
        out["width"].append(row)
        print("width", row, flush=True)
    for b in batches:
        row = {"batch": b}
        for fw in fws:
            row[fw] = point(fw, "intermediate", b, a.threads, samples, a.data, epochs)
        out["batch"].append(row)
        print("batch", row, flush=True)
    for t in (1, 2):
        row = {"threads": t}
        for net in ("shallow", "intermediate", "wide"):
            row[net] = point("fastsgd", net, 128, t, samples, a.data, epochs)
        out["threads_scan"].append(row)
        print("threads", row, flush=True)
    for n in (samples // 8, samples // 4, samples // 2, samples):
        row = {"samples": n, "fastsgd": point("fastsgd", "intermediate", 128, a.threads, n, a.data,
                                              epochs)}
        out["samples"].append(row)
        print("samples", row, flush=True)
    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, "scaling.json"), "w") as f:
        json.dump(out, f, indent=1)
    md = to_markdown(out, fws)
    with open(os.path.join(a.out_dir, "scaling.md"), "w") as f:
        f.write(md)
    print(md)
    try:
        plot(out, fws, a.out_dir)
    except ImportError:
        print("matplotlib not installed: no plots")


def to_markdown(out, fws):
    L = ["Machine:", ""] + benchenv.machine_markdown(out["machine"]) + [""]
    L += [f"- {n}" for n in out.get("notes", [])] + ([""] if out.get("notes") else [])
    L += [f"Epoch seconds at {out['threads']} threads, {out['samples_per_point']:,} samples "
          "(median).", "",
         "| hidden width | GFLOP/epoch | " + " | ".join(fws) + " | fastsgd GFLOP/s |",
         "|---|---|" + "---|" * len(fws) + "---|"]
    for r in out["width"]:
        cells = [f"{r[f]:.3f}" if r.get(f) else "—" for f in fws]
        gf = f"{r['gflop'] / r['fastsgd']:.1f}" if r.get("fastsgd") else "—"
        L.append(f"| {r['width']} | {r['gflop']:.1f} | " + " | ".join(cells) + f" | {gf} |")
    L += ["", "| batch size (Intermediate Net) | " + " | ".join(fws) + " |",
          "|---|" + "---|" * len(fws)]
    for r in out["batch"]:
        L.append(f"| {r['batch']} | " + " | ".join(f"{r[f]:.3f}" if r.get(f) else "—" for f in fws) + " |")
    L += ["", "| fastsgd threads | shallow | intermediate | wide |", "|---|---|---|---|"]
    for r in out["threads_scan"]:
        L.append(f"| {r['threads']} | " + " | ".join(f"{r[n]:.3f}" if r.get(n) else "—"
                                                   for n in ("shallow", "intermediate", "wide")) + " |")
    L += ["", "| samples (Intermediate Net, fastsgd) | seconds/epoch | µs per sample |", "|---|---|---|"]
    for r in out["samples"]:
        if r.get("fastsgd"):
            L.append(f"| {r['samples']} | {r['fastsgd']:.4f} | {r['fastsgd'] / r['samples'] * 1e6:.2f} |")
    return "\n".join(L) + "\n"


def plot(out, fws, folder):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for fw in fws:
        xs = [r["width"] for r in out["width"] if r.get(fw)]
        ax.plot(xs, [r[fw] for r in out["width"] if r.get(fw)], "o-", label=fw)
    ax.set(xscale="log", yscale="log", xlabel="hidden width (784 -> w relu -> 10)",
           ylabel="seconds per epoch", title=f"Width, batch 128, {out['threads']} threads")
    ax.legend()
    ax = axes[1]
    for fw in fws:
        xs = [r["batch"] for r in out["batch"] if r.get(fw)]
        ax.plot(xs, [r[fw] for r in out["batch"] if r.get(fw)], "o-", label=fw)
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="seconds per epoch",
           title="Intermediate Net")
    ax.legend()
    ax = axes[2]
    xs = [r["samples"] for r in out["samples"] if r.get("fastsgd")]
    ax.plot(xs, [r["fastsgd"] for r in out["samples"] if r.get("fastsgd")], "o-", label="fastsgd")
    ax.set(xlabel="training samples", ylabel="seconds per epoch",
           title="Epoch time vs samples (Intermediate Net)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "scaling.png"), dpi=110)


if __name__ == "__main__":
    main()
