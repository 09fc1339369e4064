"""The MNIST reader, loader and bundled sample."""
import gzip
import hashlib
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


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """A fresh machine: no $FASTSGD_DATA, an empty home and cache, no network."""
    monkeypatch.delenv("FASTSGD_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls = []

    def no_download(folder, timeout):
        calls.append(folder)
        raise OSError("network disabled in this test")

    def no_network(*a, **k):
        raise AssertionError("the loader must not touch the network")

    monkeypatch.setattr(datasets, "_download", no_download)
    monkeypatch.setattr(datasets.urllib.request, "urlopen", no_network)
    return calls


def test_full_mnist_from_the_package_offline(offline):
    assert datasets.locate_mnist() == (datasets.PACKAGE_DIR, "package")
    (X, y), (Xt, yt) = datasets.load_mnist()
    assert X.shape == (60000, 784) and Xt.shape == (10000, 784)
    assert X.dtype == np.float32 and y.dtype == np.int64
    assert list(y[:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert list(np.bincount(y)) == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert float(X.mean()) * 255 == pytest.approx(33.318, abs=1e-3)
    assert offline == []  # nothing was downloaded
    import fastsgd
    assert os.path.dirname(datasets.PACKAGE_DIR) == os.path.dirname(fastsgd.__file__)


def test_packaged_files_are_the_canonical_ones():
    for base, md5 in datasets.MD5.items():
        path = os.path.join(datasets.PACKAGE_DIR, base + ".gz")
        with gzip.open(path, "rb") as f:
            assert hashlib.md5(f.read()).hexdigest() == md5, base


def test_a_named_folder_without_the_files_is_an_error_not_a_fallback(offline, tmp_path):
    given = tmp_path / "given"
    given.mkdir()
    (given / "train-images-idx3-ubyte.gz").write_bytes(b"")  # one of four is not enough
    with pytest.raises(FileNotFoundError) as e:
        datasets.load_mnist(given)  # download=True: still no fallback and no download
    assert str(given) in str(e.value) and "folder given" in str(e.value)
    assert "t10k-labels-idx1-ubyte" in str(e.value)
    with pytest.raises(FileNotFoundError, match="given"):
        datasets.locate_mnist(tmp_path / "nowhere" / "given")
    assert offline == []


def test_fastsgd_data_without_the_files_is_an_error(offline, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSGD_DATA", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError) as e:
        datasets.load_mnist()
    assert str(tmp_path / "env") in str(e.value) and "FASTSGD_DATA" in str(e.value)
    assert offline == []


def test_search_order(mnist_dir, offline, tmp_path, monkeypatch):
    assert datasets.locate_mnist(mnist_dir) == (mnist_dir, "path")
    monkeypatch.setenv("FASTSGD_DATA", mnist_dir)
    assert datasets.locate_mnist() == (mnist_dir, "FASTSGD_DATA")
    monkeypatch.delenv("FASTSGD_DATA")
    assert datasets.locate_mnist()[1] == "package"
    # without packaged files: the cache, then nothing (a download is needed)
    monkeypatch.setattr(datasets, "PACKAGE_DIR", str(tmp_path / "stripped"))
    assert datasets.locate_mnist(cache_dir=mnist_dir) == (mnist_dir, "cache")
    assert datasets.locate_mnist(cache_dir=tmp_path / "empty") is None
    with pytest.raises(TypeError, match="path"):
        datasets.locate_mnist(3)


def test_nowhere_and_offline_names_every_place(offline, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "PACKAGE_DIR", str(tmp_path / "stripped"))
    cache = str(tmp_path / "cache-dir")
    with pytest.raises(FileNotFoundError) as e:
        datasets.load_mnist(download=False, cache_dir=cache)
    assert str(tmp_path / "stripped") in str(e.value) and cache in str(e.value)
    assert offline == []
    with pytest.raises(FileNotFoundError, match="downloading failed"):
        datasets.load_mnist(cache_dir=cache)
    assert offline == [cache]  # the download was tried into the cache


def test_bundled_sample(offline):
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
