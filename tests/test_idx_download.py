"""read_idx on hostile files, and the downloader against fake mirrors (no network)."""
import gzip
import hashlib
import os
import struct
import tracemalloc
import urllib.error
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastsgd import datasets


def idx_bytes(arr):
    arr = np.asarray(arr, np.uint8)
    return struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + \
        arr.tobytes()


def gzip_bomb(prefix, mib):
    """A gzip file holding ``prefix`` then ``mib`` MiB of zeros, a few hundred KB on disk."""
    z = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    rest = c.compress(z) + c.flush(zlib.Z_FULL_FLUSH)  # refers to nothing before it
    crc = zlib.crc32(prefix)
    for _ in range(mib):
        crc = zlib.crc32(z, crc)
    size = (len(prefix) + (mib << 20)) & 0xFFFFFFFF
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + body + rest * mib + c.flush()
            + struct.pack("<LL", crc, size))


def traced_peak(fn):
    tracemalloc.start()
    try:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - returned for the caller to check
            err = e
        else:
            err = None
        return tracemalloc.get_traced_memory()[1], err
    finally:
        tracemalloc.stop()


IMAGES = np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8)


# ---- read_idx ----------------------------------------------------------------------------
def test_gzip_bomb_after_a_small_header_is_not_decompressed(tmp_path):
    p = tmp_path / "bomb-images.gz"
    p.write_bytes(gzip_bomb(idx_bytes(IMAGES), 1024))  # 1 GiB after the declared 7,840 bytes
    assert p.stat().st_size < 2 << 20
    peak, err = traced_peak(lambda: datasets.read_idx(p))
    assert isinstance(err, datasets.IDXError) and "trailing" in str(err) and str(p) in str(err)
    assert peak < 50e6


def test_header_declaring_more_than_the_file_can_hold(tmp_path):
    head = struct.pack(">HBBIII", 0, 8, 3, 60000, 28, 28)
    p = tmp_path / "claims.gz"
    p.write_bytes(gzip.compress(head + bytes(100)))
    peak, err = traced_peak(lambda: datasets.read_idx(p))
    assert isinstance(err, datasets.IDXError) and "can hold" in str(err)
    assert peak < 50e6
    huge = tmp_path / "huge"
    huge.write_bytes(struct.pack(">HBBIII", 0, 8, 3, 2 ** 32 - 1, 2 ** 32 - 1, 2 ** 32 - 1))
    with pytest.raises(datasets.IDXError, match="above the limit"):
        datasets.read_idx(huge)
    plain = tmp_path / "plain"
    plain.write_bytes(head + bytes(100))
    with pytest.raises(datasets.IDXError, match="truncated"):
        datasets.read_idx(plain)
    ok = tmp_path / "ok.gz"
    ok.write_bytes(gzip.compress(idx_bytes(IMAGES)))
    with pytest.raises(datasets.IDXError, match="max_bytes"):
        datasets.read_idx(ok, max_bytes=100)
    np.testing.assert_array_equal(datasets.read_idx(ok), IMAGES)


def _corruptions():
    good = gzip.compress(idx_bytes(IMAGES))
    flipped = bytearray(good)
    flipped[40:48] = b"\xff" * 8
    bad_crc = bytearray(good)
    bad_crc[-8] ^= 1
    bad_size = bytearray(good)
    bad_size[-4] ^= 1
    return {
        "deflate_data": bytes(flipped),
        "crc": bytes(bad_crc),
        "length_field": bytes(bad_size),
        "gzip_magic": b"\x1f\x8c" + good[2:],
        "method": good[:2] + b"\x07" + good[3:],
        "truncated_stream": good[:len(good) // 2],
        "truncated_trailer": good[:-3],
        "trailing_garbage": good + b"garbage!",
        "second_member_bad": good + gzip.compress(b"x")[:12],
        "empty": b"",
        "not_gzip": idx_bytes(IMAGES),
    }


@pytest.mark.parametrize("kind", sorted(_corruptions()))
def test_corrupt_gzip_raises_idx_error(tmp_path, kind):
    p = tmp_path / f"{kind}.gz"
    p.write_bytes(_corruptions()[kind])
    with pytest.raises(datasets.IDXError) as e:
        datasets.read_idx(p)
    assert str(p) in str(e.value)


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError):
        datasets.read_idx(tmp_path / "none.gz")
    with pytest.raises(TypeError, match="path"):
        datasets.read_idx(42)
    with pytest.raises(TypeError, match="max_bytes"):
        datasets.read_idx(tmp_path / "none.gz", max_bytes=1.5)


_GOOD_GZ = gzip.compress(idx_bytes(IMAGES[:3]), mtime=0)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, len(_GOOD_GZ) - 1), st.integers(0, 255)),
                      min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.integers(0, len(_GOOD_GZ))))
def test_fuzzed_gzip_idx_reads_or_raises_idx_error(tmp_path, edits, cut):
    data = bytearray(_GOOD_GZ)
    for i, v in edits:
        data[i] = v
    if cut is not None:
        data = data[:cut]
    p = tmp_path / "f.gz"
    p.write_bytes(bytes(data))
    try:
        arr = datasets.read_idx(p)
    except datasets.IDXError:
        pass
    else:
        assert arr.dtype == np.uint8 and arr.size <= 3 * 784 + 1024


# ---- the downloader ------------------------------------------------------------------------
class FakeResponse:
    def __init__(self, body=b"", *, endless=False, length=None):
        self.body = body
        self.pos = 0
        self.endless = endless
        self.served = 0
        self.headers = {} if length is None else {"Content-Length": str(length)}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read1(self, n):
        if self.endless:
            self.served += n
            return b"\0" * n
        part = self.body[self.pos:self.pos + n]
        self.pos += len(part)
        self.served += len(part)
        return part


@pytest.fixture
def fake_mnist(monkeypatch):
    """Tiny stand-ins for the four files, with their checksums and sizes patched in."""
    rng = np.random.default_rng(1)
    raw = {"train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (6, 28, 28))),
           "train-labels-idx1-ubyte": idx_bytes(rng.integers(0, 10, 6)),
           "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (4, 28, 28))),
           "t10k-labels-idx1-ubyte": idx_bytes(rng.integers(0, 10, 4))}
    monkeypatch.setattr(datasets, "MD5", {k: hashlib.md5(v).hexdigest() for k, v in raw.items()})
    monkeypatch.setattr(datasets, "SIZES", {k: len(v) for k, v in raw.items()})
    monkeypatch.setattr(datasets, "MIRRORS", ("https://a.invalid/", "https://b.invalid/",
                                              "https://c.invalid/"))
    monkeypatch.delenv("FASTSGD_DATA", raising=False)
    return {k: gzip.compress(v) for k, v in raw.items()}


def serve(monkeypatch, behaviour):
    """Patch urlopen: ``behaviour(mirror_letter, base)`` returns a response or raises."""
    calls = []

    def urlopen(url, timeout=None):
        assert timeout is not None and timeout > 0
        letter = url.split("//")[1][0]
        base = url.rsplit("/", 1)[1][:-3]
        calls.append((letter, base))
        return behaviour(letter, base)

    monkeypatch.setattr(datasets.urllib.request, "urlopen", urlopen)
    return calls


def load(tmp_path):
    # the packaged files come first in load_mnist's search: drive the downloader directly
    cache = str(tmp_path / "cache")
    datasets._download(cache, 30.0)
    return datasets._load_folder(cache)


def test_each_mirror_in_turn_until_one_serves_a_good_file(tmp_path, monkeypatch, fake_mnist):
    responses = {"a": lambda base: (_ for _ in ()).throw(urllib.error.URLError("refused")),
                 "b": lambda base: FakeResponse(os.urandom(500)),          # corrupt gzip
                 "c": lambda base: FakeResponse(fake_mnist[base])}
    calls = serve(monkeypatch, lambda letter, base: responses[letter](base))
    (X, y), (Xt, yt) = load(tmp_path)
    assert X.shape == (6, 784) and Xt.shape == (4, 784)
    assert [c[0] for c in calls] == ["a", "b", "c"] * 4
    assert sorted(os.listdir(tmp_path / "cache")) == sorted(b + ".gz" for b in datasets.FILES.values())


def test_checksum_mismatch_moves_on(tmp_path, monkeypatch, fake_mnist):
    wrong = gzip.compress(b"\0" * 100)
    calls = serve(monkeypatch, lambda letter, base: FakeResponse(
        wrong if letter == "a" else fake_mnist[base]))
    load(tmp_path)
    assert [c[0] for c in calls] == ["a", "b"] * 4


def test_oversized_and_endless_responses_are_cut_off(tmp_path, monkeypatch, fake_mnist):
    monkeypatch.setattr(datasets, "DOWNLOAD_MAX_BYTES", 1 << 20)
    endless = []

    def behaviour(letter, base):
        if letter == "a":
            r = FakeResponse(endless=True)
            endless.append(r)
            return r
        if letter == "b":
            return FakeResponse(b"", length=10 ** 12)
        return FakeResponse(fake_mnist[base])

    serve(monkeypatch, behaviour)
    load(tmp_path)
    assert len(endless) == 4 and all(r.served <= (1 << 20) + (1 << 16) for r in endless)


def test_gzip_bomb_from_a_mirror_is_not_decompressed_whole(tmp_path, monkeypatch, fake_mnist):
    bomb = gzip_bomb(b"", 1024)
    serve(monkeypatch, lambda letter, base: FakeResponse(bomb if letter == "a" else fake_mnist[base]))
    peak, err = traced_peak(lambda: load(tmp_path))
    assert err is None and peak < 50e6


def test_all_mirrors_failing_names_every_url_and_leaves_nothing(tmp_path, monkeypatch, fake_mnist):
    serve(monkeypatch, lambda letter, base: FakeResponse(b"\x1f\x8b broken"))
    with pytest.raises(OSError) as e:
        load(tmp_path)
    msg = str(e.value)
    for letter in "abc":
        assert f"https://{letter}.invalid/train-images-idx3-ubyte.gz" in msg
    assert os.listdir(tmp_path / "cache") == []


def test_total_time_is_bounded(tmp_path, monkeypatch, fake_mnist):
    """A fake clock that jumps a minute per look: the budget runs out, no mirror is retried."""
    now = [0.0]

    def clock():
        now[0] += 60.0
        return now[0]

    monkeypatch.setattr(datasets.time, "monotonic", clock)
    monkeypatch.setattr(datasets, "DOWNLOAD_TIME_LIMIT", 300.0)
    calls = serve(monkeypatch, lambda letter, base: FakeResponse(os.urandom(2 << 20)))
    with pytest.raises(OSError, match="time limit"):
        load(tmp_path)
    assert 0 < len(calls) <= 5
