"""pytest-benchmark files: run with `pytest bench/ --benchmark-only` (not part of the tests).

They measure the installed fastsgd: the checkout is taken off the front of
sys.path (``python -m pytest`` from the checkout would put it there).
"""
import os

import benchenv

benchenv.use_installed_fastsgd()

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastsgd  # noqa: E402


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    fastsgd.set_num_threads(request.param)
    try:
        from threadpoolctl import threadpool_limits
        ctx = threadpool_limits(request.param)
    except ImportError:  # pragma: no cover
        ctx = None
    yield request.param
    if ctx is not None:
        ctx.unregister()
    fastsgd._config._reset_num_threads()


@pytest.fixture(scope="session")
def mnist_like():
    rng = np.random.default_rng(0)
    return rng.random((60000, 784), dtype=np.float32), rng.integers(0, 10, 60000)


def pytest_collection_modifyitems(config, items):
    if os.environ.get("FASTSGD_BENCH_QUICK"):
        items[:] = [i for i in items if "2048" not in i.name]


def _machine():
    import fastsgd as f
    info = benchenv.cpu_description()
    cfg = f.config()
    return {"cpu": info.get("cpu"), "simd_flags": " ".join(info.get("simd_flags", [])),
            "fastsgd_simd": cfg["simd"], "fastsgd_location": os.path.dirname(f.__file__),
            "numpy_blas": benchenv.blas_text(benchenv.blas_libraries()),
            "openblas_overrides": {v: os.environ[v] for v in benchenv.OPENBLAS_OVERRIDES
                                   if v in os.environ}}


def pytest_report_header(config):
    m = _machine()
    lines = [f"CPU: {m['cpu']} ({m['simd_flags']}); fastsgd SIMD path {m['fastsgd_simd']}, "
             f"from {m['fastsgd_location']}", f"NumPy BLAS: {m['numpy_blas']}"]
    if m["openblas_overrides"]:
        setting = ", ".join(f"{k}={v}" for k, v in m["openblas_overrides"].items())
        lines.append(f"warning: {setting} is set: NumPy runs the OpenBLAS kernel it names (above), "
                     "usually a lesser one; `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE pytest "
                     "...` avoids it")
    return lines


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["fastsgd"] = _machine()
