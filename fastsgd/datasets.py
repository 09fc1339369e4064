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
import http.client
import io as _io
import math
import os
import struct
import time
import urllib.error
import urllib.request
import zlib

import numpy as np

from ._files import atomic_write

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
    """An IDX file is malformed, truncated or declares more data than allowed."""


#: the largest payload :func:`read_idx` reads unless told otherwise (bytes)
IDX_MAX_BYTES = 1 << 30
#: deflate (gzip) cannot expand data by more than about 1032:1
_GZIP_MAX_RATIO = 1032
_CHUNK = 1 << 20


def read_idx(path, *, max_bytes=None):
    """Read an IDX file (``.gz`` or plain) into a NumPy array.

    Checks the magic number (unsigned bytes, 1 to 3 dimensions) and that the
    payload holds exactly the declared number of items. The size declared in
    the header is checked *before* anything is decompressed or allocated:
    against ``max_bytes`` (default :data:`IDX_MAX_BYTES`), against the file's
    size (a plain file must match it exactly; a gzip file cannot hold more
    than deflate's maximum ratio allows), and decompression stops a few bytes
    after the declared size, so a small gzip "bomb" cannot make it allocate
    more. A truncated, corrupt or oversized file raises :class:`IDXError` (a
    ``ValueError``); a file that cannot be opened raises ``OSError``.
    """
    from ._validate import check_int
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path-like, got {type(path).__name__}")
    cap = IDX_MAX_BYTES if max_bytes is None else check_int("max_bytes", max_bytes, minimum=1)
    gz = os.fspath(path).endswith(".gz")
    with open(path, "rb") as raw:  # a missing file raises OSError here
        size = os.fstat(raw.fileno()).st_size
        try:
            if gz:
                with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                    return _read_idx_stream(f, path, size, gz, cap)
            return _read_idx_stream(raw, path, size, gz, cap)
        except (OSError, EOFError, zlib.error) as e:  # gzip's ways of saying "corrupt"
            raise IDXError(f"{path}: cannot read: truncated or corrupt "
                           f"{'compressed ' if gz else ''}data ({type(e).__name__}: {e})") from None


def _read_idx_stream(f, path, size, gz, cap):
    head = f.read(4)
    if len(head) < 4:
        raise IDXError(f"{path}: too short for an IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", head)
    if zero != 0 or dtype_code != 0x08 or not 1 <= ndim <= 3:
        raise IDXError(f"{path}: bad magic number {head.hex()} (expected unsigned-byte IDX)")
    header = 4 + 4 * ndim
    raw_dims = f.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise IDXError(f"{path}: truncated header")
    dims = struct.unpack(">" + "I" * ndim, raw_dims)
    n = math.prod(dims)
    if n > cap:
        raise IDXError(f"{path}: the header declares {n:,} bytes of data {dims}, above the "
                       f"limit of {cap:,} (max_bytes)")
    if gz and header + n > size * _GZIP_MAX_RATIO + 1024:
        raise IDXError(f"{path}: the header declares {n:,} bytes of data, more than "
                       f"{size:,} compressed bytes can hold (truncated or corrupt)")
    if not gz and size - header != n:
        got = size - header
        raise IDXError(f"{path}: holds {got} bytes of data, the header declares "
                       f"{n} ({'truncated' if got < n else 'trailing bytes'})")
    out = np.empty(n, dtype=np.uint8)
    pos = 0
    while pos < n:
        chunk = f.read(min(_CHUNK, n - pos))
        if not chunk:
            raise IDXError(f"{path}: holds {pos} bytes of data, the header declares {n} "
                           f"(truncated)")
        out[pos:pos + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
        pos += len(chunk)
    if f.read(1):  # at most a buffer's worth is decompressed past the end; gzip checks its CRC
        raise IDXError(f"{path}: holds more than the {n} bytes of data its header declares "
                       f"(trailing bytes)")
    return out.reshape(dims)


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


#: decompressed size of each file, in bytes
SIZES = {
    "train-images-idx3-ubyte": 47040016,
    "train-labels-idx1-ubyte": 60008,
    "t10k-images-idx3-ubyte": 7840016,
    "t10k-labels-idx1-ubyte": 10008,
}
#: the largest response accepted for one file (the largest is 9.9 MB)
DOWNLOAD_MAX_BYTES = 32 << 20
#: the time budget of one whole download (all files, all mirrors), in seconds
DOWNLOAD_TIME_LIMIT = 600.0
_DOWNLOAD_ERRORS = (OSError, EOFError, ValueError, zlib.error, http.client.HTTPException)


class _OutOfTime(Exception):
    """The download's time budget is spent (unlike a socket timeout, no mirror is tried next)."""

    def __str__(self):
        return f"the download time limit ({DOWNLOAD_TIME_LIMIT:g} s) was reached"


def _fetch(url, timeout, deadline):
    """The body at ``url``: at most DOWNLOAD_MAX_BYTES, read before ``deadline``."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise _OutOfTime()
    limit = DOWNLOAD_MAX_BYTES
    with urllib.request.urlopen(url, timeout=min(timeout, left)) as r:
        length = getattr(r, "headers", {}).get("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > limit:
            raise ValueError(f"the server announces {int(length):,} bytes (limit {limit:,})")
        read = r.read1 if hasattr(r, "read1") else r.read  # one receive per call: deadline checked often
        parts, total = [], 0
        while True:
            if time.monotonic() > deadline:
                raise _OutOfTime()
            part = read(1 << 16)
            if not part:
                break
            total += len(part)
            if total > limit:
                raise ValueError(f"the response exceeds {limit:,} bytes")
            parts.append(part)
    return b"".join(parts)


def _verify(payload, base):
    """Check the md5 of the decompressed ``payload``, decompressing at most its known size."""
    expected = SIZES[base]
    md5 = hashlib.md5()
    total = 0
    with gzip.GzipFile(fileobj=_io.BytesIO(payload), mode="rb") as g:
        while True:
            part = g.read(min(_CHUNK, expected + 1 - total))
            if not part:
                break
            total += len(part)
            if total > expected:
                raise ValueError(f"decompresses to more than the expected {expected:,} bytes")
            md5.update(part)
    if total != expected or md5.hexdigest() != MD5[base]:
        raise ValueError(f"checksum mismatch ({total:,} bytes, md5 {md5.hexdigest()})")


def _download(folder, timeout):
    """Fetch the missing files into ``folder``, trying each mirror in turn.

    A failed request, a corrupt or oversized response or a checksum mismatch
    moves on to the next mirror; the whole download is bounded by
    :data:`DOWNLOAD_TIME_LIMIT` and each response by :data:`DOWNLOAD_MAX_BYTES`.
    Files are written atomically, only once verified.
    """
    os.makedirs(folder, exist_ok=True)
    deadline = time.monotonic() + DOWNLOAD_TIME_LIMIT
    errors = []
    for base in FILES.values():
        if _find(folder, base):
            continue
        for mirror in MIRRORS:
            url = mirror + base + ".gz"
            try:
                payload = _fetch(url, timeout, deadline)
                _verify(payload, base)
            except _OutOfTime as e:
                errors.append(f"{url}: {e}")
                raise OSError("could not download MNIST: " + "; ".join(errors)) from None
            except _DOWNLOAD_ERRORS as e:
                errors.append(f"{url}: {type(e).__name__}: {e}")
                continue
            atomic_write(os.path.join(folder, base + ".gz"), lambda f: f.write(payload))
            break
        else:
            raise OSError("could not download MNIST: " + "; ".join(errors))


def _load_folder(folder, dtype="float32"):
    paths = {k: _find(folder, v) for k, v in FILES.items()}
    x_tr = read_idx(paths["train_images"])
    y_tr = read_idx(paths["train_labels"])
    x_te = read_idx(paths["test_images"])
    y_te = read_idx(paths["test_labels"])
    return _finish(x_tr, y_tr, dtype), _finish(x_te, y_te, dtype)


def _check_dtype(dtype):
    if dtype not in ("float32", "uint8", np.float32, np.uint8):
        raise ValueError(f"dtype must be 'float32' (pixels / 255) or 'uint8' (raw pixels, for "
                         f"Rescaling(1 / 255)); got {dtype!r}")
    return np.dtype(dtype).name


def _finish(images, labels, dtype="float32"):
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise IDXError(f"images {images.shape} and labels {labels.shape} do not match")
    X = images.reshape(images.shape[0], -1)
    if dtype == "uint8":
        return np.ascontiguousarray(X, dtype=np.uint8), labels.astype(np.int64)
    X = X.astype(np.float32)
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


def load_mnist(path=None, *, download=True, cache_dir=None, timeout=30.0, dtype="float32"):
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
    dtype : {"float32", "uint8"}
        ``"float32"``: pixels divided by 255. ``"uint8"``: the raw pixels
        (4x less memory), to train with ``Rescaling(1 / 255)`` as the first
        layer; the results are the same bits.

    Returns
    -------
    (X_train, y_train), (X_test, y_test)
        ``X_train`` float32, shape (60000, 784), in [0, 1] (or uint8 in
        [0, 255]); ``y_train``
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
    dtype = _check_dtype(dtype)
    found = locate_mnist(path, cache_dir=cache_dir)
    if found is not None:
        return _load_folder(found[0], dtype)
    cache = os.fspath(cache_dir) if cache_dir is not None else default_cache_dir()
    places = f"{PACKAGE_DIR} (the packaged files) and {cache} (the download cache)"
    if download:
        try:
            _download(cache, timeout)
            return _load_folder(cache, dtype)
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
