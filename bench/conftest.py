"""pytest-benchmark files: run with `pytest bench/ --benchmark-only` (not part of the tests)."""
import os

import numpy as np
import pytest

import fastsgd


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
