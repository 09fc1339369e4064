"""Shared fixtures: per-dtype tolerances, the full MNIST folder, SIMD paths."""
import os

import numpy as np
import pytest
from hypothesis import settings

from fastsgd import _config

# Hypothesis: CI runs the same examples every time (FASTSGD_HYPOTHESIS_PROFILE=ci, or CI set);
# "dev" (the default) draws new ones on every run.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev")
settings.load_profile(os.environ.get("FASTSGD_HYPOTHESIS_PROFILE") or
                      ("ci" if os.environ.get("CI") else "dev"))

#: relative tolerances for comparisons with float64 NumPy references
RTOL = {np.float32: 2e-5, np.float64: 1e-12}
ATOL = {np.float32: 1e-6, np.float64: 1e-14}

DTYPES = [np.float32, np.float64]

MNIST_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                         "mnist"))


def tol(dtype, scale=1.0):
    return {"rtol": RTOL[np.dtype(dtype).type] * scale, "atol": ATOL[np.dtype(dtype).type] * scale}


@pytest.fixture
def mnist_dir():
    """The full MNIST files (../shared/data/mnist); CI must have them."""
    if not os.path.isdir(MNIST_DIR):
        if os.environ.get("CI"):
            pytest.fail(f"full MNIST is required in CI but {MNIST_DIR} is missing")
        pytest.skip(f"full MNIST not found at {MNIST_DIR} (needs ../shared beside the project)")
    return MNIST_DIR


@pytest.fixture(params=_config.simd_available())
def simd(request):
    """Run a test once per SIMD path this CPU supports."""
    before = _config.simd_path()
    _config.set_simd(request.param)
    yield request.param
    _config.set_simd(before)


@pytest.fixture(autouse=True)
def _restore_threads():
    yield
    _config._reset_num_threads()


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def watch_nets(trainer):
    """The compiled networks ``trainer`` builds from now on, in order (a list that
    fills as it builds them)."""
    nets = []
    build = trainer._build_net

    def spy(*a, **k):
        out = build(*a, **k)
        nets.append(out[0])
        return out
    trainer._build_net = spy
    return nets
