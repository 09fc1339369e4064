"""Saving and loading models."""
import json
import os
import zipfile

import numpy as np
import pytest

import fastsgd
from fastsgd import SGD, Dense, Sequential, Trainer


@pytest.fixture
def trained(rng):
    X = rng.random((200, 12)).astype(np.float32)
    y = rng.integers(0, 4, 200)
    m = Sequential([Dense(9, "leaky_relu", input_dim=12, negative_slope=0.1), Dense(7, "tanh"),
                    Dense(4, "softmax")], seed=3)
    Trainer(m, "cross_entropy", SGD(0.1), batch_size=16).fit(X, y, epochs=2, verbose=0)
    return m, X


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_predictions_bit_identical(tmp_path, rng, dtype):
    X = rng.random((50, 5))
    m = Sequential([Dense(6, "sigmoid", input_dim=5), Dense(3, "softmax")], seed=1, dtype=dtype)
    path = tmp_path / "model.npz"
    m.save(path)
    loaded = fastsgd.load_model(path)
    assert loaded.dtype == m.dtype and loaded.get_config()["layers"] == m.get_config()["layers"]
    np.testing.assert_array_equal(loaded.predict(X), m.predict(X))


def test_trained_round_trip(tmp_path, trained):
    m, X = trained
    m.save(tmp_path / "t.npz")
    np.testing.assert_array_equal(fastsgd.load_model(str(tmp_path / "t.npz")).predict(X), m.predict(X))


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path, trained, monkeypatch):
    m, _ = trained
    path = tmp_path / "m.npz"
    m.save(path)
    good = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        m.save(path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_truncated_file(tmp_path, trained):
    m, _ = trained
    path = tmp_path / "m.npz"
    m.save(path)
    data = path.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 5):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="not a valid fastsgd model file"):
            fastsgd.load_model(bad)


def test_garbage_and_foreign_files(tmp_path):
    g = tmp_path / "g.npz"
    g.write_bytes(os.urandom(4000))
    with pytest.raises(ValueError, match="not a valid"):
        fastsgd.load_model(g)
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.zeros(3))
    with pytest.raises(ValueError, match="no fastsgd metadata"):
        fastsgd.load_model(plain)
    with pytest.raises(FileNotFoundError):
        fastsgd.load_model(tmp_path / "missing.npz")


def _rewrite(path, out, meta_fn=None, arrays_fn=None):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["__fastsgd__"].tobytes())
    if meta_fn:
        meta = meta_fn(meta)
    if arrays_fn:
        arrays = arrays_fn(arrays)
    arrays["__fastsgd__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(out, **arrays)


@pytest.mark.parametrize("meta_fn,arrays_fn,match", [
    (lambda m: {**m, "format": "other"}, None, "unknown format"),
    (lambda m: {**m, "version": 99}, None, "version"),
    (lambda m: {**m, "dtype": "int8"}, None, "dtype"),
    (lambda m: {**m, "layers": []}, None, "no layers"),
    (lambda m: {**m, "layers": [{"units": 4, "activation": "__import__('os')"}]}, None, "layer"),
    (lambda m: {**m, "layers": [{**m["layers"][0], "exec": "x"}] + m["layers"][1:]}, None, "unexpected"),
    (None, lambda a: {k: v for k, v in a.items() if k != "W1"}, "missing array W1"),
    (None, lambda a: {**a, "W0": a["W0"][:-1]}, "W0 has shape"),
    (None, lambda a: {**a, "b0": a["b0"].astype(np.float64)}, "dtype"),
    (None, lambda a: {**a, "W0": np.full_like(a["W0"], np.nan)}, "NaN"),
])
def test_corrupted_or_hostile_metadata(tmp_path, trained, meta_fn, arrays_fn, match):
    m, _ = trained
    path = tmp_path / "m.npz"
    m.save(path)
    bad = tmp_path / "bad.npz"
    _rewrite(path, bad, meta_fn, arrays_fn)
    with pytest.raises(ValueError, match=match):
        fastsgd.load_model(bad)


def test_pickled_object_array_is_refused(tmp_path, trained):
    m, _ = trained
    path = tmp_path / "m.npz"
    m.save(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["W0"] = np.array([object()], dtype=object)
    evil = tmp_path / "evil.npz"
    np.savez(evil, **arrays)
    with zipfile.ZipFile(evil) as zf:
        assert "W0.npy" in zf.namelist()
    with pytest.raises(ValueError, match="not a valid"):
        fastsgd.load_model(evil)


def test_save_needs_a_built_model(tmp_path):
    with pytest.raises(ValueError, match="no weights"):
        Sequential([Dense(3)]).save(tmp_path / "x.npz")
