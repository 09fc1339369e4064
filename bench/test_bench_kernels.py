"""GEMM: fastsgd vs numpy.matmul (and torch.matmul when installed) on the
shapes training uses. `pytest bench/test_bench_kernels.py --benchmark-only`."""
import numpy as np
import pytest
from gemm_table import SHAPES  # noqa: E402  (one list of shapes for both)

from fastsgd import kernels

DTYPES = [np.float32, np.float64]


def operands(M, K, N, ta, tb, dtype):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    return a, b, np.empty((M, N), dtype)


def _ids(s):
    return f"{s[0]}x{s[1]}x{s[2]}" + ("T" if s[3] else "") + ("t" if s[4] else "")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_gemm_fastsgd(benchmark, threads, shape, dtype):
    M, K, N, ta, tb, _ = shape
    a, b, out = operands(M, K, N, ta, tb, dtype)
    benchmark.group = f"gemm {shape[-1]} {np.dtype(dtype).name} {threads}t"
    benchmark.extra_info["gflop"] = 2 * M * N * K / 1e9
    benchmark(kernels.gemm, a, b, trans_a=ta, trans_b=tb, out=out)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_gemm_numpy(benchmark, threads, shape, dtype):
    M, K, N, ta, tb, _ = shape
    a, b, out = operands(M, K, N, ta, tb, dtype)
    A = a.T if ta else a
    B = b.T if tb else b
    benchmark.group = f"gemm {shape[-1]} {np.dtype(dtype).name} {threads}t"
    benchmark.extra_info["gflop"] = 2 * M * N * K / 1e9
    benchmark(np.matmul, A, B, out=out)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_gemm_torch(benchmark, threads, shape, dtype):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(threads)
    M, K, N, ta, tb, _ = shape
    a, b, out = operands(M, K, N, ta, tb, dtype)
    A = torch.from_numpy(a).T if ta else torch.from_numpy(a)
    B = torch.from_numpy(b).T if tb else torch.from_numpy(b)
    o = torch.from_numpy(out)
    benchmark.group = f"gemm {shape[-1]} {np.dtype(dtype).name} {threads}t"
    benchmark.extra_info["gflop"] = 2 * M * N * K / 1e9
    benchmark(torch.matmul, A, B, out=o)
