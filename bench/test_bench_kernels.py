"""GEMM: fastsgd vs numpy.matmul (and torch.matmul when installed) on the
shapes training uses. `pytest bench/test_bench_kernels.py --benchmark-only`."""
import numpy as np
import pytest

from fastsgd import kernels

# (M, K, N, trans_a, trans_b, label)
SHAPES = [
    (128, 784, 64, False, False, "X.W (128,784)x(784,64)"),
    (784, 128, 64, True, False, "X^T.delta (784,128)x(128,64)"),
    (128, 64, 784, False, True, "delta.W^T (128,64)x(64,784)"),
    (32, 784, 64, False, False, "(32,784)x(784,64)"),
    (128, 784, 512, False, False, "(128,784)x(784,512)"),
    (256, 1024, 1024, False, False, "(256,1024)x(1024,1024)"),
    (1024, 1024, 1024, False, False, "1024^3"),
    (2048, 2048, 2048, False, False, "2048^3"),
]
DTYPES = [np.float32, np.float64]


def operands(M, K, N, ta, tb, dtype):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    return a, b, np.empty((M, N), dtype)


def _ids(s):
    return s[-1].replace(" ", "")


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
