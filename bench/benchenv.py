"""What the benchmark scripts share: running against the installed fastsgd,
the environment of a benchmark subprocess, and a description of the machine.

The scripts benchmark the *installed* fastsgd (``pip install ".[bench]"``),
never the source tree they sit in: a checkout has no compiled extension
unless built in place, and importing it instead of the installed package
fails (or, worse, measures other code than the one installed).
"""
import glob
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)

#: environment variables that size a thread pool, set to the cell's thread count
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
               # XLA's CPU client (JAX, Keras on JAX) sizes its thread pools from PJRT_NPROC
               "PJRT_NPROC",
               # TensorFlow's intra-op pool (Keras on TensorFlow also sets it through tf.config)
               "TF_NUM_INTRAOP_THREADS")
#: set on some processors for old OpenBLAS builds; they make a current NumPy run a lesser kernel
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
#: distributions whose versions are recorded
PACKAGES = ("fastsgd", "numpy", "torch", "jax", "jaxlib", "scikit-learn", "keras", "tensorflow",
            "tensorflow-cpu", "threadpoolctl")


def _is_checkout(entry):
    path = os.path.realpath(entry or os.getcwd())
    return path == os.path.realpath(REPO_ROOT)


def use_installed_fastsgd():
    """Take the checkout off the front of ``sys.path`` so ``import fastsgd`` finds the installed package.

    The entries before the first site-packages folder come from the script's
    folder, the current directory (``python -m``, ``python -c``) and
    ``PYTHONPATH``; any of them naming the checkout would shadow the installed
    package. Entries after site-packages come from ``.pth`` files (an editable
    install) and are kept.
    """
    first_site = next((i for i, p in enumerate(sys.path)
                       if os.path.basename(p.rstrip(os.sep)) in ("site-packages", "dist-packages")),
                      len(sys.path))
    sys.path[:] = [p for i, p in enumerate(sys.path) if i >= first_site or not _is_checkout(p)]


def fastsgd_problem():
    """None if an installed fastsgd can be imported, else what is wrong, in one sentence."""
    spec = importlib.util.find_spec("fastsgd")
    if spec is None or not spec.origin:
        return "fastsgd is not installed: run `pip install \".[bench]\"` in the checkout first"
    pkg = os.path.dirname(spec.origin)
    if _is_checkout(os.path.dirname(pkg)) and not glob.glob(os.path.join(pkg, "_core*")):
        return (f"fastsgd resolves to the source tree {pkg}, which has no compiled extension: "
                "install the package (`pip install \".[bench]\"`) and run the script from a "
                "folder whose sys.path does not put the checkout first")
    return None


def worker_env(threads, keep_openblas_overrides=False):
    """Environment of one benchmark subprocess running on ``threads`` threads."""
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    env["TF_NUM_INTEROP_THREADS"] = "1"
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    if not keep_openblas_overrides:
        for var in OPENBLAS_OVERRIDES:
            env.pop(var, None)
    return env


def worker_cwd():
    """A working directory for subprocesses that is not the checkout."""
    return tempfile.gettempdir()


def openblas_notes(keep):
    """Warnings about OpenBLAS overrides in the caller's environment."""
    found = {v: os.environ[v] for v in OPENBLAS_OVERRIDES if v in os.environ}
    if not found:
        return []
    setting = ", ".join(f"{k}={v}" for k, v in found.items())
    setting += " are" if len(found) > 1 else " is"
    if keep:
        return [f"{setting} set and kept (--keep-openblas-coretype): NumPy's OpenBLAS runs the "
                "kernel it names, usually a lesser one than this CPU supports"]
    return [f"{setting} set in this environment: NumPy would run a lesser OpenBLAS kernel; "
            "unset for the benchmark subprocesses, which report the kernel they loaded "
            "(--keep-openblas-coretype keeps it)"]


def cpu_description():
    """CPU model, SIMD flags and caches from /proc/cpuinfo and lscpu."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and "cpu" not in info:
                info["cpu"] = value.strip()
            elif key in ("cpu family", "model") and key not in info:
                info[key] = value.strip()
            elif key == "flags" and "simd_flags" not in info:
                flags = set(value.split())
                wanted = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                          "avx512_vnni", "avx512_bf16", "amx_tile")
                info["simd_flags"] = [w for w in wanted if w in flags]
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "Model name" and not info.get("cpu"):
                info["cpu"] = value.strip()
            elif key in ("L1d cache", "L2 cache", "L3 cache"):
                info[key.replace(" cache", "").lower()] = value.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    info.setdefault("cpu", platform.processor() or platform.machine())
    return info


def blas_libraries():
    """The BLAS libraries loaded in this process (threadpoolctl), one short dict each."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"error": "threadpoolctl not installed"}]
    out = []
    for lib in threadpool_info():
        if lib.get("user_api") != "blas":
            continue
        out.append({k: lib.get(k) for k in ("internal_api", "version", "architecture",
                                             "threading_layer", "num_threads")}
                   | {"file": os.path.basename(lib.get("filepath", ""))})
    return out


def probe():
    """Everything recorded about the machine, as seen from a benchmark subprocess."""
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cores": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        info["usable_cores"] = len(os.sched_getaffinity(0))
    info.update(cpu_description())
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    info["versions"] = versions
    problem = fastsgd_problem()
    if problem:
        info["fastsgd_error"] = problem
    else:
        import fastsgd
        cfg = fastsgd.config()
        info["fastsgd"] = {"version": cfg.get("version"), "simd": cfg.get("simd"),
                           "simd_supported": cfg.get("simd_supported"),
                           "openmp": cfg.get("openmp"), "compiler": cfg.get("compiler"),
                           "location": os.path.dirname(fastsgd.__file__)}
    import numpy  # noqa: F401  (loads NumPy's BLAS, and nothing else's, for threadpoolctl)
    info["numpy_blas"] = blas_libraries()
    info["env"] = {v: os.environ[v] for v in OPENBLAS_OVERRIDES + ("XLA_FLAGS",)
                   if v in os.environ}
    return info


def probe_subprocess(threads, keep_openblas_overrides=False):
    """:func:`probe` run in a subprocess with a benchmark cell's environment."""
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--probe"], capture_output=True,
                       text=True, env=worker_env(threads, keep_openblas_overrides),
                       cwd=worker_cwd(), timeout=300)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["probe failed"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def blas_text(libs):
    return "; ".join(
        " ".join(str(x) for x in (b.get("internal_api"), b.get("version")) if x)
        + (f", {b['architecture']} kernels" if b.get("architecture") else "")
        + (f", {b['threading_layer']}" if b.get("threading_layer") else "")
        + f" ({b.get('file')})" for b in libs) or "none found"


def machine_markdown(info, threads=None):
    """A Markdown list describing ``info`` from :func:`probe`."""
    if "error" in info:
        return [f"- machine probe failed: {info['error']}"]
    cpu = info.get("cpu", "?")
    if info.get("cpu family"):
        cpu += f" (family {info['cpu family']}, model {info.get('model', '?')})"
    caches = ", ".join(f"{k.upper()} {info[k]}" for k in ("l1d", "l2", "l3") if info.get(k))
    lines = [f"- CPU: {cpu}; {info.get('cores')} cores"
             + (f" ({info['usable_cores']} usable)" if info.get("usable_cores") != info.get("cores")
                else "")
             + (f"; SIMD: {' '.join(info.get('simd_flags', []))}" if info.get("simd_flags") else "")
             + (f"; {caches}" if caches else "")]
    fs = info.get("fastsgd")
    if fs:
        lines.append(f"- fastsgd {fs['version']}: SIMD path `{fs['simd']}` (best supported: "
                     f"`{fs['simd_supported']}`), OpenMP {fs['openmp']}, {fs['compiler']}, "
                     f"imported from {fs['location']}")
    else:
        lines.append(f"- fastsgd: {info.get('fastsgd_error')}")
    lines.append(f"- NumPy {info['versions'].get('numpy', '?')} BLAS: {blas_text(info['numpy_blas'])}")
    if threads:
        lines.append(f"- Threads per cell: {threads}")
    lines.append(f"- Python {info['python']}, {info['platform']}; "
                 + ", ".join(f"{k} {v}" for k, v in info["versions"].items()
                             if k not in ("fastsgd", "numpy")))
    if info.get("env"):
        lines.append("- Benchmark environment: "
                     + ", ".join(f"{k}={v}" for k, v in info["env"].items()))
    return lines


if __name__ == "__main__":
    use_installed_fastsgd()
    if "--probe" in sys.argv:
        print(json.dumps(probe()))
    else:
        print("\n".join(machine_markdown(probe())))
