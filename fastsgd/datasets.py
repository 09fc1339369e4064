"""MNIST: the IDX reader, the loader with its search path and downloader, and
the quick sample.

Full MNIST ships with the package: ``fastsgd/data`` holds the four original
IDX files (gzipped, decompressed bytes unchanged), so :func:`load_mnist`
works offline on a fresh machine. MNIST (Yann LeCun, Corinna Cortes,
Christopher J.C. Burges) is available under the Creative Commons
Attribution-Share Alike 3.0 licence; see ``fastsgd/data/README.md``.
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
#: the folder of the MNIST files packaged with fastsgd
PACKAGE_DIR = os.path.join(os.path.dirname(__file__), "data")
#: how :func:`locate_mnist` names the places it finds MNIST in
ORIGINS = {
    "path": "the folder given",
    "FASTSGD_DATA": "$FASTSGD_DATA",
    "package": "the files packaged with fastsgd",
    "cache": "the download cache",
}


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


def _missing(folder):
    """The base names of the four files not found in ``folder``."""
    return [base for base in FILES.values() if not _find(folder, base)]


def _not_there(folder, what):
    missing = _missing(folder)
    return FileNotFoundError(
        f"MNIST not found in {folder} ({what}): missing "
        f"{', '.join(b + '[.gz]' for b in missing)}")


def locate_mnist(path=None, *, cache_dir=None):
    """Where :func:`load_mnist` finds the four MNIST files, without reading them.

    Parameters
    ----------
    path : str or path-like, optional
        A folder that must hold the files.
    cache_dir : str or path-like, optional
        The download cache (default :func:`default_cache_dir`).

    Returns
    -------
    (folder, origin) or None
        ``origin`` is ``"path"``, ``"FASTSGD_DATA"``, ``"package"`` or
        ``"cache"`` (:data:`ORIGINS` describes each); None when the files
        are nowhere and only a download can provide them.

    Raises
    ------
    FileNotFoundError
        When ``path`` is given, or ``$FASTSGD_DATA`` is set, and that folder
        lacks any of the files: a folder you name is never skipped silently.
    TypeError
        When ``path`` or ``cache_dir`` is not a string or path-like.
    """
    if path is not None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or path-like, got {type(path).__name__}")
        folder = os.fspath(path)
        if _missing(folder):
            raise _not_there(folder, "the folder given")
        return folder, "path"
    env = os.environ.get("FASTSGD_DATA")
    if env:
        if _missing(env):
            raise _not_there(env, "the folder named by $FASTSGD_DATA")
        return env, "FASTSGD_DATA"
    if not _missing(PACKAGE_DIR):
        return PACKAGE_DIR, "package"
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"cache_dir must be a str or path-like, got {type(cache_dir).__name__}")
    cache = os.fspath(cache_dir) if cache_dir is not None else default_cache_dir()
    if not _missing(cache):
        return cache, "cache"
    return None


def load_mnist(path=None, *, download=True, cache_dir=None, timeout=30.0):
    """Load full MNIST as ``(X_train, y_train), (X_test, y_test)``.

    Parameters
    ----------
    path : str or path-like, optional
        A folder with the four IDX files (gzipped or not). If it lacks any of
        them, ``FileNotFoundError`` names it: there is no fallback.
    download : bool
        When the files are nowhere (see below), fetch them from public
        mirrors into the cache folder (checksums of the decompressed bytes
        verified).
    cache_dir : str or path-like, optional
        The download cache (default :func:`default_cache_dir`).
    timeout : float
        Seconds per download request.

    Returns
    -------
    (X_train, y_train), (X_test, y_test)
        ``X_train`` float32, shape (60000, 784), in [0, 1]; ``y_train``
        int64, shape (60000,); ``X_test`` (10000, 784) and ``y_test``
        (10000,) likewise.

    Notes
    -----
    The search order is: ``path``; else ``$FASTSGD_DATA`` (which must then
    hold the files); else the files packaged with fastsgd
    (:data:`PACKAGE_DIR`, always there in an installed copy); else the
    cache folder, downloading into it when ``download`` is true. Use
    :func:`locate_mnist` to learn which one would be used.
    """
    found = locate_mnist(path, cache_dir=cache_dir)
    if found is not None:
        return _load_folder(found[0])
    cache = os.fspath(cache_dir) if cache_dir is not None else default_cache_dir()
    places = f"{PACKAGE_DIR} (the packaged files) and {cache} (the download cache)"
    if download:
        try:
            _download(cache, timeout)
            return _load_folder(cache)
        except OSError as e:
            raise FileNotFoundError(f"MNIST not found in {places}, and downloading failed "
                                    f"({e})") from None
    raise FileNotFoundError(
        f"MNIST not found: looked for {', '.join(b + '[.gz]' for b in FILES.values())} in "
        f"{places} (download disabled). Use load_mnist_sample() for the 10,000-image sample.")


def load_mnist_sample(n_train=8000):
    """A small real MNIST sample for quick runs: the 10,000 MNIST test images.

    Parameters
    ----------
    n_train : int
        How many of the 10,000 images to train on (1 to 9,999).

    Returns
    -------
    (X_train, y_train), (X_test, y_test)
        As :func:`load_mnist` returns them (float32 in [0, 1], int64
        labels), with shapes (n_train, 784), (n_train,),
        (10000 - n_train, 784) and (10000 - n_train,): the first ``n_train``
        images of MNIST's test set for training and the rest for testing.

    Notes
    -----
    Reads only the two packaged ``t10k`` files, so it is quicker to load
    than :func:`load_mnist`. At 8,000 training images an epoch at batch size
    128 is 63 rounds instead of full MNIST's 469, and the book's networks
    reach a lower accuracy than on full MNIST.
    """
    from ._validate import check_int
    n_train = check_int("n_train", n_train, minimum=1)
    X = read_idx(os.path.join(PACKAGE_DIR, FILES["test_images"] + ".gz"))
    y = read_idx(os.path.join(PACKAGE_DIR, FILES["test_labels"] + ".gz"))
    X, y = _finish(X, y)
    if n_train >= X.shape[0]:
        raise ValueError(f"n_train must be below {X.shape[0]}, got {n_train}")
    return (X[:n_train], y[:n_train]), (X[n_train:], y[n_train:])
