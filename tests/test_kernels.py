"""The compiled kernels against NumPy references and central differences."""
import os
import threading

import numpy as np
import pytest

import fastsgd
from fastsgd import _config, _ops, kernels

from _reference import activate, central_difference
from _reference import gemm as _ref_gemm
from _reference import output_cost as _np_cost
from conftest import DTYPES, tol

SHAPES = [(1, 1, 1), (2, 3, 1), (1, 7, 13), (7, 1, 5), (13, 17, 19), (31, 37, 41),
          (97, 5, 101), (128, 64, 784), (784, 64, 128), (128, 784, 64), (32, 64, 784),
          (6, 16, 384), (257, 129, 385), (1031, 67, 2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("M,N,K", SHAPES)
def test_gemm_matches_numpy(simd, dtype, ta, tb, M, N, K, rng):
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    c = kernels.gemm(a, b, trans_a=ta, trans_b=tb)
    assert c.dtype == dtype and c.shape == (M, N)
    ref = _ref_gemm(a, b, ta, tb, 1.0, 0.0, None)
    np.testing.assert_allclose(c, ref, **tol(dtype, scale=np.sqrt(K)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_alpha_beta_out(simd, dtype, ta, tb, rng):
    M, N, K = 45, 70, 300
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    c0 = rng.standard_normal((M, N)).astype(dtype)
    out = c0.copy()
    res = kernels.gemm(a, b, trans_a=ta, trans_b=tb, alpha=-0.7, beta=0.3, out=out)
    assert res is out
    np.testing.assert_allclose(out, _ref_gemm(a, b, ta, tb, -0.7, 0.3, c0), **tol(dtype, 20))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_beta_zero_ignores_nan_in_out(dtype, rng):
    a = rng.standard_normal((9, 11)).astype(dtype)
    b = rng.standard_normal((11, 5)).astype(dtype)
    out = np.full((9, 5), np.nan, dtype)
    kernels.gemm(a, b, out=out)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, **tol(dtype, 10))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta", [False, True])
def test_gemm_gathered_rows(simd, dtype, ta, rng):
    """a_rows picks stored rows of a without a copy (forward: rows of X; dW: columns of X^T)."""
    X = rng.standard_normal((300, 50)).astype(dtype)
    rows = rng.permutation(300)[:128].astype(np.int64)
    if not ta:
        W = rng.standard_normal((50, 20)).astype(dtype)
        ref = X[rows].astype(np.float64) @ W
        got = kernels.gemm(X, W, a_rows=rows)
    else:
        D = rng.standard_normal((128, 20)).astype(dtype)
        ref = X[rows].T.astype(np.float64) @ D
        got = kernels.gemm(X, D, trans_a=True, a_rows=rows)
    np.testing.assert_allclose(got, ref, **tol(dtype, 20))


def test_gemm_k_zero_and_alpha_zero(rng):
    a = np.zeros((3, 0), np.float64)
    b = np.zeros((0, 4), np.float64)
    out = np.ones((3, 4))
    kernels.gemm(a, b, beta=2.0, out=out)
    np.testing.assert_array_equal(out, 2.0)
    a = rng.standard_normal((3, 5))
    b = rng.standard_normal((5, 4))
    kernels.gemm(a, b, alpha=0.0, beta=0.0, out=out)
    np.testing.assert_array_equal(out, 0.0)


def test_gemm_large_square_both_dtypes(rng):
    for dtype in DTYPES:
        a = rng.standard_normal((1000, 1000)).astype(dtype)
        b = rng.standard_normal((1000, 1000)).astype(dtype)
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        err = np.abs(kernels.gemm(a, b) - a64 @ b64)
        # the rounding bound of a K-term sum, from the magnitudes summed (a fixed
        # tolerance would fail the elements whose terms cancel)
        bound = 2 * (a.shape[1] + 2) * np.finfo(dtype).eps * (np.abs(a64) @ np.abs(b64))
        assert (err <= bound).all(), float((err / bound).max())


@pytest.mark.parametrize("M,N,K", [(128, 64, 784), (784, 64, 128), (300, 300, 300), (61, 1031, 97),
                                   (32, 512, 784)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_bit_identical_across_thread_counts(M, N, K, dtype, rng):
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    results = []
    for nt in (1, 2, 3):
        fastsgd.set_num_threads(nt)
        results.append(kernels.gemm(a, b))
        results.append(kernels.gemm(a, b, trans_a=False, trans_b=False, a_rows=np.arange(M, dtype=np.int64)))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


class TestGemmErrors:
    def test_inner_dimension_mismatch(self):
        with pytest.raises(ValueError, match="inner dimensions"):
            kernels.gemm(np.ones((3, 4)), np.ones((5, 2)))

    def test_mixed_dtypes(self):
        with pytest.raises(TypeError, match="dtype"):
            kernels.gemm(np.ones((3, 4), np.float32), np.ones((4, 2), np.float64))

    def test_integer_dtype(self):
        with pytest.raises(TypeError, match="float32 or float64"):
            kernels.gemm(np.ones((3, 4), np.int64), np.ones((4, 2), np.int64))

    def test_not_an_array(self):
        with pytest.raises(TypeError, match="numpy.ndarray"):
            kernels.gemm([[1.0]], np.ones((1, 1)))

    def test_not_2d(self):
        with pytest.raises(ValueError, match="2-D"):
            kernels.gemm(np.ones(3), np.ones((3, 1)))

    def test_non_contiguous_input(self):
        with pytest.raises(ValueError, match="C-contiguous"):
            kernels.gemm(np.ones((4, 6))[:, ::2], np.ones((3, 2)))

    def test_non_contiguous_out(self):
        out = np.empty((6, 4))[:, ::2]
        with pytest.raises(ValueError, match="out must be C-contiguous"):
            kernels.gemm(np.ones((6, 3)), np.ones((3, 2)), out=out)

    def test_out_wrong_shape(self):
        with pytest.raises(ValueError, match="out has shape"):
            kernels.gemm(np.ones((6, 3)), np.ones((3, 2)), out=np.empty((2, 6)))

    def test_out_wrong_dtype(self):
        with pytest.raises(TypeError, match="out has dtype"):
            kernels.gemm(np.ones((6, 3)), np.ones((3, 2)), out=np.empty((6, 2), np.float32))

    def test_out_aliases_input(self):
        a = np.ones((4, 4))
        with pytest.raises(ValueError, match="share memory"):
            kernels.gemm(a, np.ones((4, 4)), out=a)

    def test_read_only_out(self):
        out = np.empty((2, 2))
        out.flags.writeable = False
        with pytest.raises(ValueError, match="writeable"):
            kernels.gemm(np.ones((2, 2)), np.ones((2, 2)), out=out)

    def test_beta_without_out(self):
        with pytest.raises(ValueError, match="beta"):
            kernels.gemm(np.ones((2, 2)), np.ones((2, 2)), beta=1.0)

    def test_bad_rows(self):
        with pytest.raises(ValueError, match="outside"):
            kernels.gemm(np.ones((5, 2)), np.ones((2, 2)), a_rows=np.array([0, 5], np.int64))
        with pytest.raises(TypeError, match="int64"):
            kernels.gemm(np.ones((5, 2)), np.ones((2, 2)), a_rows=np.array([0, 1], np.int32))

    def test_alpha_not_a_number(self):
        with pytest.raises(TypeError, match="alpha"):
            kernels.gemm(np.ones((2, 2)), np.ones((2, 2)), alpha="2")


# ---- activations ----------------------------------------------------------
ACTS = ["linear", "sigmoid", "tanh", "relu", "leaky_relu", "softmax"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_activation_forward_matches_numpy(dtype, act, rng):
    z = (rng.standard_normal((37, 23)) * 4).astype(dtype)
    z[0, :3] = [0.0, 60.0, -60.0]
    ref = activate(z.astype(np.float64), act, 0.3)
    got = kernels.activation_forward(z.copy(), act, 0.3)
    np.testing.assert_allclose(got, ref, **tol(dtype, 10))


@pytest.mark.parametrize("act", ACTS)
def test_activation_backward_central_differences(act, rng):
    """d(sum(w * f(z)))/dz by the kernel vs central differences (float64)."""
    z = rng.standard_normal((6, 5)) * 2
    z[np.abs(z) < 1e-3] = 0.1  # keep away from the relu kink
    w = rng.standard_normal(z.shape)
    a = kernels.activation_forward(z.copy(), act, 0.3)
    d = kernels.activation_backward(a, w.copy(), act, 0.3)
    num = central_difference(lambda zz: np.sum(w * activate(zz, act, 0.3)), z)
    np.testing.assert_allclose(d, num, rtol=1e-6, atol=1e-8)


def test_softmax_is_stable_for_huge_logits():
    z = np.array([[1000.0, 1000.0, -1000.0], [-1e4, 0.0, 1e4]], np.float32)
    a = kernels.activation_forward(z, "softmax")
    np.testing.assert_allclose(a, [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], atol=1e-7)


def test_relu_propagates_nan():
    z = np.array([[np.nan, -1.0, 2.0]])
    a = kernels.activation_forward(z, "relu")
    assert np.isnan(a[0, 0]) and a[0, 1] == 0 and a[0, 2] == 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_approximation_accuracy(dtype, rng):
    x = np.concatenate([np.linspace(-80, 80, 20001), rng.standard_normal(1000) * 10]).astype(dtype)
    got = _ops.exp(x).astype(np.float64)
    ref = np.exp(x.astype(np.float64))
    ulp = np.finfo(dtype).eps
    np.testing.assert_allclose(got, ref, rtol=4 * ulp, atol=0)
    special = np.array([np.inf, -np.inf, np.nan, 1000.0, -1000.0, 0.0], dtype)
    out = _ops.exp(special)
    assert out[0] == np.inf and out[1] == 0 and np.isnan(out[2]) and out[3] == np.inf
    assert out[4] == 0 and out[5] == 1


# ---- fused dense layers -----------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_dense_forward_matches_numpy(dtype, act, rng):
    x = rng.standard_normal((50, 30)).astype(dtype)
    w = rng.standard_normal((30, 12)).astype(dtype) * 0.3
    b = rng.standard_normal(12).astype(dtype)
    ref = activate(x.astype(np.float64) @ w + b, act, 0.3)
    np.testing.assert_allclose(kernels.dense_forward(x, w, b, act, 0.3), ref, **tol(dtype, 50))
    rows = rng.permutation(50)[:17].astype(np.int64)
    ref = activate(x[rows].astype(np.float64) @ w + b, act, 0.3)
    np.testing.assert_allclose(kernels.dense_forward(x, w, b, act, 0.3, x_rows=rows), ref,
                               **tol(dtype, 50))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_dense_backward_matches_numpy(dtype, act, rng):
    x = rng.standard_normal((40, 30)).astype(dtype)
    w = (rng.standard_normal((30, 12)) * 0.3).astype(dtype)
    b = rng.standard_normal(12).astype(dtype)
    a = kernels.dense_forward(x, w, b, act, 0.3)
    g = rng.standard_normal(a.shape).astype(dtype)
    dW, db, dX = kernels.dense_backward(x, w, a, g.copy(), act, 0.3)
    a64 = a.astype(np.float64)
    g64 = g.astype(np.float64)
    if act == "sigmoid":
        dz = g64 * a64 * (1 - a64)
    elif act == "tanh":
        dz = g64 * (1 - a64 ** 2)
    elif act == "relu":
        dz = g64 * (a64 > 0)
    elif act == "leaky_relu":
        dz = np.where(a64 > 0, g64, 0.3 * g64)
    elif act == "softmax":
        dz = a64 * (g64 - np.sum(g64 * a64, axis=1, keepdims=True))
    else:
        dz = g64
    np.testing.assert_allclose(dW, x.T.astype(np.float64) @ dz, **tol(dtype, 100))
    np.testing.assert_allclose(db, dz.sum(axis=0), **tol(dtype, 100))
    np.testing.assert_allclose(dX, dz @ w.T.astype(np.float64), **tol(dtype, 100))
    _, _, none = kernels.dense_backward(x, w, a, g.copy(), act, 0.3, need_dx=False)
    assert none is None


# ---- output layer fused with its cost ------------------------------------
COST_CASES = [("mse", "linear"), ("mse", "sigmoid"), ("mse", "softmax"), ("mse", "tanh"),
              ("mse", "relu"), ("cross_entropy", "softmax"), ("binary_cross_entropy", "sigmoid")]


def _targets(cost, rng, n, k):
    if cost == "cross_entropy":
        return np.eye(k)[rng.integers(0, k, n)]
    if cost == "binary_cross_entropy":
        return rng.integers(0, 2, (n, k)).astype(np.float64)
    return rng.standard_normal((n, k))


@pytest.mark.parametrize("cost,act", COST_CASES)
def test_output_cost_gradient_central_differences(cost, act, rng):
    n, k = 7, 4
    z = rng.standard_normal((n, k)) * 2
    z[np.abs(z) < 1e-3] = 0.2
    y = _targets(cost, rng, n, k)
    loss, _, dz = kernels.output_cost(z.copy(), y, cost, act, 0.3)
    assert loss == pytest.approx(_np_cost(cost, act, z, y), rel=1e-12)
    num = central_difference(lambda zz: _np_cost(cost, act, zz, y), z)
    np.testing.assert_allclose(dz, num, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cost,act", COST_CASES)
def test_output_cost_matches_numpy(dtype, cost, act, rng):
    n, k = 33, 10
    z = (rng.standard_normal((n, k)) * 3).astype(dtype)
    y = _targets(cost, rng, n, k).astype(dtype)
    loss, correct, dz = kernels.output_cost(z.copy(), y, cost, act, 0.3)
    z64 = z.astype(np.float64)
    assert loss == pytest.approx(_np_cost(cost, act, z64, y.astype(np.float64)),
                                 rel=1e-5 if dtype == np.float32 else 1e-12)
    a = activate(z64, act, 0.3)
    if cost != "binary_cross_entropy":
        assert correct == int(np.sum(a.argmax(1) == y.argmax(1)))
    else:
        assert correct == int(np.sum((a > 0.5) == (y > 0.5)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [2, 10, 37])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("threads", [1, 2])
def test_cross_entropy_with_integer_labels_equals_one_hot(dtype, k, weighted, threads, rng):
    """Integer labels take a pass of their own (each row's maximum and z - m, exp over
    all the rows' elements at once, then per row the rest); one-hot labels take the
    row-by-row pass. The same bits: probabilities, gradient, loss and count."""
    fastsgd.set_num_threads(threads)   # the conftest fixture restores the count
    n = 50000 // k                     # enough rows for a team of two
    z = (rng.standard_normal((n, k)) * 4).astype(dtype)
    z[3] = np.nan                      # a row without a finite maximum, and one with ties
    z[4] = 1.0
    labels = rng.integers(0, k, n).astype(np.int64)
    w = rng.random(n).astype(dtype) if weighted else None
    z1, z2 = z.copy(), z.copy()
    l1, c1, d1 = kernels.output_cost(z1, labels, "cross_entropy", "softmax", sample_weight=w)
    l2, c2, d2 = kernels.output_cost(z2, np.eye(k, dtype=dtype)[labels], "cross_entropy",
                                     "softmax", sample_weight=w)
    assert np.isnan(l1) and np.isnan(l2) and c1 == c2
    np.testing.assert_array_equal(d1, d2)
    np.testing.assert_array_equal(z1, z2)
    ok = np.ones(n, bool)
    ok[3] = False
    l1, c1, d1 = kernels.output_cost(z[ok].copy(), labels[ok], "cross_entropy", "softmax",
                                     sample_weight=None if w is None else w[ok])
    l2, c2, d2 = kernels.output_cost(z[ok].copy(), np.eye(k, dtype=dtype)[labels[ok]],
                                     "cross_entropy", "softmax",
                                     sample_weight=None if w is None else w[ok])
    assert l1 == l2 and c1 == c2 and np.isfinite(l1)
    np.testing.assert_array_equal(d1, d2)


def test_cross_entropy_is_stable_for_confident_wrong_predictions():
    z = np.array([[1000.0, -1000.0]])
    loss, _, dz = kernels.output_cost(z, np.array([1], np.int64), "cross_entropy", "softmax")
    assert loss == pytest.approx(2000.0) and np.isfinite(dz).all()


def test_output_cost_rejects_mismatched_activation():
    with pytest.raises(ValueError, match="softmax"):
        kernels.output_cost(np.zeros((2, 3)), np.zeros((2, 3)), "cross_entropy", "sigmoid")


# ---- gather, threads, GIL, build -------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_rows(dtype, rng):
    x = rng.standard_normal((100, 7)).astype(dtype)
    rows = rng.integers(0, 100, 250).astype(np.int64)
    np.testing.assert_array_equal(kernels.gather_rows(x, rows), x[rows])
    with pytest.raises(ValueError, match="outside"):
        kernels.gather_rows(x, np.array([100], np.int64))


def test_thread_setting():
    fastsgd.set_num_threads(3)
    assert fastsgd.get_num_threads() == (3 if _config.openmp_enabled() else 1)
    for bad in (0, -1):
        with pytest.raises(ValueError, match=">= 1"):
            fastsgd.set_num_threads(bad)
    for bad in (1.5, "2", True, None):
        with pytest.raises(TypeError):
            fastsgd.set_num_threads(bad)


def test_default_threads_honour_omp_num_threads():
    import subprocess
    import sys
    code = "import fastsgd; print(fastsgd.get_num_threads())"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    import tempfile
    with tempfile.TemporaryDirectory() as cwd:  # import the installed package, not the sources
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             check=True, cwd=cwd).stdout.strip()
    assert out == "1"


def test_threadpoolctl_sees_and_limits_the_openmp_pool():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not _config.openmp_enabled():
        pytest.skip("serial build")
    fastsgd.set_num_threads(2)
    info = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "openmp"]
    assert info and info[0]["num_threads"] == 2
    _config._reset_num_threads()
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert fastsgd.get_num_threads() == 1


def test_openmp_is_on_unless_disabled_on_purpose():
    if os.environ.get("FASTSGD_DISABLE_OPENMP"):
        assert not _config.openmp_enabled()
    else:
        assert _config.openmp_enabled(), "built without OpenMP; set FASTSGD_DISABLE_OPENMP=1 if meant"
    cfg = fastsgd.config()
    assert cfg["openmp"] == _config.openmp_enabled()
    assert cfg["simd"] in ("generic", "avx2", "avx512")
    # the names round-trip: config() reports what set_simd and FASTSGD_SIMD accept
    assert cfg["simd"] in _config.simd_available()
    _config.set_simd(cfg["simd"])
    assert fastsgd.config()["simd"] == cfg["simd"]
    assert cfg["threads"] == fastsgd.get_num_threads()


def test_show_config_prints_everything(capsys):
    fastsgd.show_config()
    out = capsys.readouterr().out
    for key in ("version", "compiler", "openmp", "simd", "threads"):
        assert key in out


def test_gil_is_released_during_long_kernels(rng):
    """A Python thread keeps running while a long GEMM holds no GIL."""
    fastsgd.set_num_threads(1)
    a = rng.standard_normal((1500, 1500)).astype(np.float64)
    done = threading.Event()
    ticks = []

    def count():
        while not done.is_set():
            ticks.append(1)

    def work():
        for _ in range(3):
            kernels.gemm(a, a)
        done.set()

    t1 = threading.Thread(target=count)
    t1.start()
    work()
    t1.join()
    # with the GIL held for the whole product the counter could only run
    # between calls, i.e. a handful of times
    assert len(ticks) > 10000
