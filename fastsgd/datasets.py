"""MNIST: the IDX reader, the loader with its search path and downloader, and
the small real sample that ships with the package.

MNIST (Yann LeCun, Corinna Cortes, Christopher J.C. Burges) is available
under the Creative Commons Attribution-Share Alike 3.0 licence; the sample in
``fastsgd/data`` is its 10,000-image test set, unchanged (see
``fastsgd/data/README.md``).
"""
import gzip
import hashlib
import os
import struct
import urllib.error
import urllib.request

import numpy as np

from .io import atomic_write

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
#: md5 of each decompressed file (the widely published checksums)
MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_SAMPLE_DIR = os.path.join(os.path.dirname(__file__), "data")


class IDXError(ValueError):
    """An IDX file is malformed or truncated."""


def read_idx(path):
    """Read an IDX file (``.gz`` or plain) into a NumPy array.

    Checks the magic number (unsigned bytes, 1 to 3 dimensions) and that the
    payload holds exactly the declared number of items.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:  # gzip raises these for truncated or corrupt files
        raise IDXError(f"{path}: cannot read ({e})") from None
    if len(data) < 4:
        raise IDXError(f"{path}: too short for an IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or not 1 <= ndim <= 3:
        raise IDXError(f"{path}: bad magic number {data[:4].hex()} (expected unsigned-byte IDX)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(f"{path}: truncated header")
    dims = struct.unpack(">" + "I" * ndim, data[4:header])
    n = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != n:
        raise IDXError(f"{path}: holds {len(data) - header} bytes of data, the header declares "
                       f"{n} ({'truncated' if len(data) - header < n else 'trailing bytes'})")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find(folder, base):
    for name in (base + ".gz", base):
        p = os.path.join(folder, name)
        if os.path.isfile(p):
            return p
    return None


def default_cache_dir():
    """``$XDG_CACHE_HOME/fastsgd/mnist`` (else ``~/.cache/fastsgd/mnist``)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "fastsgd", "mnist")


def _download(folder, timeout):
    os.makedirs(folder, exist_ok=True)
    errors = []
    for base in FILES.values():
        if _find(folder, base):
            continue
        ok = False
        for mirror in MIRRORS:
            url = mirror + base + ".gz"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as r:
                    payload = r.read()
                if hashlib.md5(gzip.decompress(payload)).hexdigest() != MD5[base]:
                    errors.append(f"{url}: checksum mismatch")
                    continue
                atomic_write(os.path.join(folder, base + ".gz"), lambda f: f.write(payload))
                ok = True
                break
            except (urllib.error.URLError, OSError, EOFError, ValueError) as e:
                errors.append(f"{url}: {e}")
        if not ok:
            raise OSError("could not download MNIST: " + "; ".join(errors))


def _load_folder(folder):
    paths = {k: _find(folder, v) for k, v in FILES.items()}
    x_tr = read_idx(paths["train_images"])
    y_tr = read_idx(paths["train_labels"])
    x_te = read_idx(paths["test_images"])
    y_te = read_idx(paths["test_labels"])
    return _finish(x_tr, y_tr), _finish(x_te, y_te)


def _finish(images, labels):
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise IDXError(f"images {images.shape} and labels {labels.shape} do not match")
    X = images.reshape(images.shape[0], -1).astype(np.float32)
    X /= np.float32(255.0)
    return X, labels.astype(np.int64)


def load_mnist(path=None, *, download=True, cache_dir=None, timeout=30.0):
    """Load MNIST as ``(X_train, y_train), (X_test, y_test)``.

    ``X`` is float32 in [0, 1] with shape (n, 784); ``y`` is int64. The four
    IDX files (gzipped or not) are looked for in ``path``, else
    ``$FASTSGD_DATA``, else the cache folder (:func:`default_cache_dir`).
    When they are missing and ``download`` is true they are fetched from
    public mirrors (checksums verified, ``timeout`` seconds per request) into
    the cache folder. Otherwise ``FileNotFoundError`` names every place
    searched.
    """
    cache = cache_dir or default_cache_dir()
    places = []
    if path is not None:
        places.append(os.fspath(path))
    if os.environ.get("FASTSGD_DATA"):
        places.append(os.environ["FASTSGD_DATA"])
    places.append(cache)
    for folder in places:
        if all(_find(folder, base) for base in FILES.values()):
            return _load_folder(folder)
    if download:
        try:
            _download(cache, timeout)
            return _load_folder(cache)
        except OSError as e:
            raise FileNotFoundError(f"MNIST not found in {', '.join(places)}, and downloading "
                                    f"failed ({e})") from None
    raise FileNotFoundError(
        f"MNIST not found: looked for {', '.join(b + '[.gz]' for b in FILES.values())} in "
        f"{', '.join(places)} (download disabled). Use load_mnist_sample() for the bundled "
        f"10,000-image sample.")


def load_mnist_sample(n_train=8000):
    """The real MNIST sample bundled with the package (the 10,000 test images).

    Returns ``(X_train, y_train), (X_test, y_test)`` as :func:`load_mnist`
    does: the first ``n_train`` images for training, the rest for testing.
    Needs no network and no files outside the package.
    """
    from ._validate import check_int
    n_train = check_int("n_train", n_train, minimum=1)
    X = read_idx(os.path.join(_SAMPLE_DIR, FILES["test_images"] + ".gz"))
    y = read_idx(os.path.join(_SAMPLE_DIR, FILES["test_labels"] + ".gz"))
    X, y = _finish(X, y)
    if n_train >= X.shape[0]:
        raise ValueError(f"n_train must be below {X.shape[0]}, got {n_train}")
    return (X[:n_train], y[:n_train]), (X[n_train:], y[n_train:])
