"""The MNIST reader, loader and bundled sample."""
import gzip
import os
import shutil

import numpy as np
import pytest

from fastsgd import datasets


def test_real_mnist_files(mnist_dir):
    (X, y), (Xt, yt) = datasets.load_mnist(mnist_dir, download=False)
    assert X.shape == (60000, 784) and Xt.shape == (10000, 784)
    assert X.dtype == np.float32 and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert list(y[:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert list(np.bincount(y)) == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert float(X.mean()) * 255 == pytest.approx(33.318, abs=1e-3)


def test_uncompressed_files_and_env_var(mnist_dir, tmp_path, monkeypatch):
    for base in datasets.FILES.values():
        with gzip.open(os.path.join(mnist_dir, base + ".gz")) as src, open(tmp_path / base, "wb") as dst:
            shutil.copyfileobj(src, dst)
    monkeypatch.setenv("FASTSGD_DATA", str(tmp_path))
    (X, y), _ = datasets.load_mnist(download=False, cache_dir=str(tmp_path / "nowhere"))
    assert X.shape == (60000, 784) and list(y[:3]) == [5, 0, 4]


def test_truncated_idx_file(mnist_dir, tmp_path):
    with gzip.open(os.path.join(mnist_dir, "t10k-labels-idx1-ubyte.gz")) as f:
        data = f.read()
    short = tmp_path / "short-labels"
    short.write_bytes(data[:-10])
    with pytest.raises(datasets.IDXError, match="truncated"):
        datasets.read_idx(short)
    gz = tmp_path / "short.gz"
    gz.write_bytes(gzip.compress(data)[:-20])
    with pytest.raises(datasets.IDXError):
        datasets.read_idx(gz)
    bad = tmp_path / "bad-magic"
    bad.write_bytes(b"\x00\x00\x0d\x01" + data[4:])
    with pytest.raises(datasets.IDXError, match="magic"):
        datasets.read_idx(bad)
    with pytest.raises(datasets.IDXError, match="short"):
        (tmp_path / "tiny").write_bytes(b"\x00")
        datasets.read_idx(tmp_path / "tiny")


def test_missing_files_offline_names_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSGD_DATA", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError) as e:
        datasets.load_mnist(tmp_path / "given", download=False, cache_dir=str(tmp_path / "cache"))
    msg = str(e.value)
    for place in ("given", "env", "cache"):
        assert str(tmp_path / place) in msg


def test_bundled_sample():
    (X, y), (Xt, yt) = datasets.load_mnist_sample()
    assert X.shape == (8000, 784) and Xt.shape == (2000, 784)
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    # the t10k set's first labels
    assert list(y[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    with pytest.raises(ValueError, match="n_train"):
        datasets.load_mnist_sample(10000)


def test_bundled_sample_is_the_real_test_set(mnist_dir):
    _, (Xt, yt) = datasets.load_mnist(mnist_dir, download=False)
    (X, y), (Xs, ys) = datasets.load_mnist_sample()
    np.testing.assert_array_equal(np.concatenate([X, Xs]), Xt)
    np.testing.assert_array_equal(np.concatenate([y, ys]), yt)
