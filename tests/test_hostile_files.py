"""Hostile, corrupted and truncated model files: each raises ValueError naming the
file, without allocating what the file's size does not justify.

The corpus (tests/hostile.py) is built once, when this module is collected,
into a temporary folder removed at exit.
"""
import atexit
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastsgd
from fastsgd.cli import main

sys.path.insert(0, os.path.dirname(__file__))
import hostile  # noqa: E402

_DIR = tempfile.mkdtemp(prefix="fastsgd-hostile-")
atexit.register(shutil.rmtree, _DIR, True)
CORPUS = hostile.build_all(_DIR)
BY_NAME = {name: (kind, path) for name, kind, path in CORPUS}
VALID = os.path.join(_DIR, "valid.npz")


def test_corpus_covers_every_class():
    counts = collections.Counter(kind for _, kind, _ in CORPUS)
    assert len(BY_NAME) == len(CORPUS)  # no duplicate names
    for kind, least in (("size", 10), ("zip", 15), ("npy", 10), ("json", 10), ("meta", 20),
                        ("optimizer", 15), ("weights", 5)):
        assert counts[kind] >= least, counts
    # the starting point itself is fine
    model, opt = fastsgd.load_model(VALID, return_optimizer=True)
    assert isinstance(opt, fastsgd.Adam) and opt.iterations == 8


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_hostile_file_raises_value_error_naming_the_file(name):
    _, path = BY_NAME[name]
    with pytest.raises(ValueError) as e:
        hostile.load_with_optimizer(path)
    assert path in str(e.value) and "not a valid fastsgd model file" in str(e.value)


def test_specific_reasons():
    """A few cases checked for the reason given, not just the exception."""
    expect = {
        "size_6000x6000_layer_469_bytes": "missing array W0",
        "size_6000x6000_layer_lying_member": "sizes disagree",
        "size_10e7x10e7_declared_layer": "above the limit",
        "size_10e7x10e7_npy_header": "sizes disagree",
        "size_768MiB_beyond_declared_size": "CRC",
        "json_nested_deeply": "nested more than",
        "json_iterations_infinity": "Infinity is not allowed",
        "opt_adam_negative_second_moment": "negative values",
        "opt_n_state_wrong_for_adam": "uses 2",
        "weights_nan": "NaN",
        "weights_wrong_dtype": "dtype",
        "zip_corrupt_deflate_data": "zlib",
        "npy_member_is_not_npy": "not an NPY array",
    }
    for name, needle in expect.items():
        with pytest.raises(ValueError, match=needle):
            hostile.load_with_optimizer(BY_NAME[name][1])
    assert os.path.getsize(BY_NAME["size_6000x6000_layer_469_bytes"][1]) < 600
    assert os.path.getsize(BY_NAME["size_768MiB_extra_member"][1]) < 2 << 20


_CHILD = r"""
import json, resource, sys, tracemalloc
import fastsgd
cases = json.load(sys.stdin)
fastsgd.load_model(cases["valid"], return_optimizer=True)  # warm up lazy imports
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
out = []
for name, kind, path in cases["cases"]:
    tracemalloc.reset_peak()
    start = tracemalloc.get_traced_memory()[0]
    try:
        fastsgd.load_model(path, return_optimizer=True)
        outcome, msg = "loaded", ""
    except ValueError as e:
        outcome, msg = "ValueError", str(e)
    except BaseException as e:
        outcome, msg = type(e).__name__, str(e)
    out.append([name, outcome, msg[:300], tracemalloc.get_traced_memory()[1] - start])
tracemalloc.stop()
growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
print(json.dumps({"results": out, "rss_growth_kib": growth}))
"""


def test_memory_stays_bounded_in_a_fresh_process():
    """Peak traced allocation per file, and peak RSS over the corpus, < 50 MB."""
    payload = json.dumps({"valid": VALID, "cases": CORPUS})
    r = subprocess.run([sys.executable, "-c", _CHILD], input=payload, capture_output=True,
                       text=True, timeout=300, cwd=_DIR)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    wrong = [(n, o, m) for n, o, m, _ in report["results"] if o != "ValueError"]
    assert not wrong
    heavy = [(n, peak) for n, _, _, peak in report["results"] if peak > 50e6]
    assert not heavy
    assert report["rss_growth_kib"] * 1024 < 50e6


def test_extra_members_are_never_decompressed(monkeypatch):
    """The 768 MiB member is not even opened: only expected names are read."""
    import zipfile
    opened = []
    real = zipfile.ZipFile.open

    def spy(self, name, *a, **k):
        opened.append(getattr(name, "filename", name))
        return real(self, name, *a, **k)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    with pytest.raises(ValueError, match="missing array W1"):
        fastsgd.load_model(BY_NAME["size_768MiB_extra_member"][1])
    assert "extra.npy" not in opened and opened


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_cli_evaluate_prints_one_line_and_exits_2(name, capsys):
    assert main(["evaluate", BY_NAME[name][1], "--sample"]) == 2
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fastsgd: error:"), err
    assert "Traceback" not in cap.err + cap.out


# ---- fuzzing a valid file --------------------------------------------------------------
with open(VALID, "rb") as _f:
    _GOOD = _f.read()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, len(_GOOD) - 1), st.integers(0, 255)),
                      min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.integers(0, len(_GOOD))))
def test_fuzzed_files_load_or_raise_value_error(tmp_path, edits, cut):
    data = bytearray(_GOOD)
    for i, v in edits:
        data[i] = v
    if cut is not None:
        data = data[:cut]
    path = tmp_path / "fuzz.npz"
    path.write_bytes(bytes(data))
    try:
        model, _ = fastsgd.load_model(path, return_optimizer=True)
    except ValueError as e:
        assert str(path) in str(e)
    else:
        for p in model.get_weights():
            assert np.isfinite(p).all()


# ---- things that are allowed ------------------------------------------------------------
def test_big_endian_and_compressed_files_load(tmp_path):
    members, meta = hostile.members_of(VALID)
    arrays = hostile.arrays_of(members)
    ms = dict(members)
    ms["W0.npy"] = hostile.npy(arrays["W0"].astype(">f4"))
    p = tmp_path / "be.npz"
    p.write_bytes(hostile.assemble(ms, method=hostile.DEFLATED))
    np.testing.assert_array_equal(fastsgd.load_model(p).layers[0].weights, arrays["W0"])
    ref = fastsgd.load_model(VALID)
    with np.load(VALID) as z:
        np.savez_compressed(tmp_path / "c.npz", **{k: z[k] for k in z.files})
    X = np.random.default_rng(0).random((5, 4))
    np.testing.assert_array_equal(fastsgd.load_model(tmp_path / "c.npz").predict(X), ref.predict(X))


def test_size_cap_argument_and_environment(monkeypatch):
    total = sum(a.nbytes for a in hostile.arrays_of(hostile.members_of(VALID)[0]).values())
    fastsgd.load_model(VALID, return_optimizer=True, max_bytes=total)
    with pytest.raises(ValueError, match="above the limit"):
        fastsgd.load_model(VALID, return_optimizer=True, max_bytes=100)
    monkeypatch.setenv("FASTSGD_MAX_MODEL_BYTES", "100")
    with pytest.raises(ValueError, match="above the limit"):
        fastsgd.load_model(VALID)
    monkeypatch.setenv("FASTSGD_MAX_MODEL_BYTES", "lots")
    with pytest.raises(ValueError, match="FASTSGD_MAX_MODEL_BYTES"):
        fastsgd.load_model(VALID)
    with pytest.raises(TypeError, match="max_bytes"):
        fastsgd.load_model(VALID, max_bytes="1")


def test_arguments_and_missing_files(tmp_path):
    with pytest.raises(TypeError, match="path"):
        fastsgd.load_model(3)
    with pytest.raises(TypeError, match="optimizer"):
        fastsgd.load_model(VALID, optimizer="adam")
    with pytest.raises(TypeError, match="return_optimizer"):
        fastsgd.load_model(VALID, return_optimizer="yes")
    with pytest.raises(FileNotFoundError):
        fastsgd.load_model(tmp_path / "nope.npz")
    with pytest.raises(IsADirectoryError):
        fastsgd.load_model(tmp_path)


def test_state_count_must_suit_the_given_optimizer():
    with pytest.raises(ValueError, match="uses 0"):
        fastsgd.load_model(VALID, optimizer=fastsgd.SGD(0.1))
    opt = fastsgd.Adam(0.5)
    fastsgd.load_model(VALID, optimizer=opt)
    assert opt.iterations == 8 and opt.get_state()["state"] is not None


# ---- fuzzing the metadata's fields with arbitrary JSON ---------------------------------------
_MEMBERS, _META = hostile.members_of(VALID)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=6)
_SLOTS = ([("top", k) for k in _META] + [("layer0", k) for k in _META["layers"][0]]
          + [("layer1", k) for k in _META["layers"][1]]
          + [("optimizer", k) for k in _META["optimizer"]]
          + [("config", k) for k in _META["optimizer"]["config"]] + [("top", "extra")])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(slot=st.sampled_from(_SLOTS), value=_JSON, drop=st.booleans())
def test_any_json_in_any_metadata_field_loads_or_raises_value_error(tmp_path, slot, value, drop):
    meta = json.loads(json.dumps(_META))
    where, key = slot
    target = {"top": meta, "layer0": meta["layers"][0], "layer1": meta["layers"][1],
              "optimizer": meta["optimizer"], "config": meta["optimizer"]["config"]}[where]
    if drop:
        target.pop(key, None)
    else:
        target[key] = value
    path = tmp_path / "meta.npz"
    path.write_bytes(hostile.assemble(_MEMBERS, meta))
    try:
        model, opt = fastsgd.load_model(path, return_optimizer=True)
    except ValueError as e:
        assert str(path) in str(e)
    else:
        assert model.count_params() == 43 and all(np.isfinite(p).all() for p in model.get_weights())
