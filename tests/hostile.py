"""A corpus of hostile, corrupted and truncated model files, built from a valid one.

``build(folder)`` writes the files and returns ``[(case, class, path), ...]``;
every case must make :func:`fastsgd.load_model` raise ``ValueError`` quickly
and without allocating what the file does not justify. The zip files are
written by hand so that sizes, checksums and flags can lie.
"""
import io
import json
import os
import struct
import zipfile
import zlib

import numpy as np

import fastsgd
from fastsgd import Adam, Dense, Sequential, Trainer

STORED, DEFLATED = 0, 8


# -- a hand-made zip writer -------------------------------------------------------------
def deflate(data):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def zeros_bomb(mib, prefix=b""):
    """Raw deflate data for ``prefix`` and ``mib`` MiB of zeros (built in a blink), its CRC-32."""
    z = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    rest = c.compress(z) + c.flush(zlib.Z_FULL_FLUSH)  # refers to nothing before it
    crc = zlib.crc32(prefix)
    for _ in range(mib):
        crc = zlib.crc32(z, crc)
    return head + rest * mib + c.flush(), crc


class M:
    """One zip member; anything not given is computed honestly from ``data``."""

    def __init__(self, name, data=b"", *, method=STORED, raw=None, file_size=None, crc=None,
                 compress_size=None, flags=0):
        self.name = name.encode()
        self.method = method
        if raw is None:
            raw = deflate(data) if method == DEFLATED else data
        self.raw = raw
        self.file_size = len(data) if file_size is None else file_size
        self.crc = zlib.crc32(data) if crc is None else crc
        self.compress_size = len(raw) if compress_size is None else compress_size
        self.flags = flags


def zip_bytes(members, *, eocd=None):
    out = bytearray()
    central = bytearray()
    for m in members:
        offset = len(out)
        out += struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, m.flags, m.method, 0, 0x21,
                           m.crc, m.compress_size, m.file_size, len(m.name), 0)
        out += m.name + m.raw
        central += struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, m.flags, m.method,
                               0, 0x21, m.crc, m.compress_size, m.file_size, len(m.name), 0, 0,
                               0, 0, 0o644 << 16, offset)
        central += m.name
    n = len(members) if eocd is None else eocd[0]
    cd_size = len(central) if eocd is None else eocd[1]
    out += central
    out += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, cd_size, len(out) - len(central), 0)
    return bytes(out)


def npy(arr):
    b = io.BytesIO()
    np.save(b, arr, allow_pickle=True)
    return b.getvalue()


def npy_header(header, version=(1, 0), length=None):
    """An NPY header with arbitrary (possibly lying) dictionary text."""
    text = header.encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    text = text + b" " * pad + b"\n"
    fmt = "<H" if version[0] == 1 else "<I"
    n = len(text) if length is None else length
    return b"\x93NUMPY" + bytes(version) + struct.pack(fmt, n) + text


def meta_npy(meta_text):
    if isinstance(meta_text, dict):
        meta_text = json.dumps(meta_text)
    if isinstance(meta_text, str):
        meta_text = meta_text.encode("utf-8", "surrogatepass")
    return npy(np.frombuffer(meta_text, np.uint8))


# -- the valid starting point ------------------------------------------------------------
def valid_model(folder, optimizer=None):
    rng = np.random.default_rng(0)
    X = rng.random((64, 4)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    m = Sequential([Dense(5, "relu", input_dim=4), Dense(3, "softmax")], seed=0)
    opt = optimizer or Adam(0.01)
    Trainer(m, "cross_entropy", opt, batch_size=16, seed=0).fit(X, y, epochs=2, verbose=0)
    path = os.path.join(folder, "valid.npz")
    m.save(path, optimizer=opt)
    return path


def members_of(path):
    """{name: npy bytes} and the metadata dict of a valid file."""
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    meta = json.loads(np.load(io.BytesIO(members["__fastsgd__.npy"])).tobytes())
    return members, meta


def arrays_of(members):
    return {k[:-4]: np.load(io.BytesIO(v)) for k, v in members.items() if k != "__fastsgd__.npy"}


def assemble(members, meta=None, method=STORED):
    ms = dict(members)
    if meta is not None:
        ms["__fastsgd__.npy"] = meta_npy(meta)
    return zip_bytes([M(k, v, method=method) for k, v in ms.items()])


# -- the corpus -----------------------------------------------------------------------
def build(folder):
    """Write every hostile case into ``folder``; return ``[(case, kind, path), ...]``."""
    valid = valid_model(folder)
    with open(valid, "rb") as f:
        good = f.read()
    members, meta = members_of(valid)
    arrays = arrays_of(members)
    cases = []

    def add(name, kind, data):
        p = os.path.join(folder, name + ".npz")
        with open(p, "wb") as f:
            f.write(data)
        cases.append((name, kind, p))

    def with_meta(**changes):
        return {**meta, **changes}

    def with_arrays(**changes):
        ms = dict(members)
        for k, v in changes.items():
            if v is None:
                ms.pop(k + ".npy")
            else:
                ms[k + ".npy"] = v if isinstance(v, bytes) else npy(v)
        return ms

    def opt_meta(**changes):
        return with_meta(optimizer={**meta["optimizer"], **changes})

    # ---- size: what the file declares versus what it holds -------------------------------
    big = {"format": "fastsgd-model", "version": 1, "dtype": "float64", "input_dim": 6000,
           "seed": 0, "layers": [{"units": 6000, "activation": "linear", "input_dim": 6000}]}
    add("size_6000x6000_layer_469_bytes", "size", zip_bytes([M("__fastsgd__.npy", meta_npy(big))]))
    hdr = npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (6000, 6000), }")
    add("size_6000x6000_layer_lying_member", "size", zip_bytes([
        M("__fastsgd__.npy", meta_npy(big)),
        M("W0.npy", hdr, file_size=len(hdr) + 6000 * 6000 * 8),
        M("b0.npy", npy(np.zeros(6000)))]))
    bomb, bomb_crc = zeros_bomb(768)
    add("size_768MiB_extra_member", "size",
        zip_bytes([M(k, v) for k, v in members.items() if not k.startswith("W1")] +
                  [M("extra.npy", raw=bomb, method=DEFLATED, file_size=768 << 20, crc=bomb_crc)]))
    hdr = npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (5, 3), }")
    wbomb, wcrc = zeros_bomb(768, hdr)
    add("size_768MiB_deflated_weights", "size", zip_bytes(
        [M(k, v) for k, v in members.items() if k != "W1.npy"] +
        [M("W1.npy", raw=wbomb, method=DEFLATED, file_size=len(hdr) + (768 << 20), crc=wcrc)]))
    hdr = npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (5, 3), }")
    wbomb, wcrc = zeros_bomb(768, hdr)
    add("size_768MiB_beyond_declared_size", "size", zip_bytes(
        [M(k, v) for k, v in members.items() if k != "W1.npy"] +
        [M("W1.npy", raw=wbomb, method=DEFLATED, file_size=len(hdr) + 60, crc=wcrc)]))
    add("size_10e7x10e7_declared_layer", "size", assemble(members, with_meta(
        input_dim=10 ** 7, layers=[{**meta["layers"][0], "input_dim": 10 ** 7, "units": 10 ** 7},
                                   {**meta["layers"][1], "input_dim": None}])))
    hdr = npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (10000000, 10000000), }")
    add("size_10e7x10e7_npy_header", "size", zip_bytes(
        [M(k, v) for k, v in members.items() if k != "W0.npy"] +
        [M("W0.npy", hdr, file_size=0xFFFFFFF0)]))
    add("size_member_larger_than_header", "size", zip_bytes(
        [M(k, v) for k, v in members.items() if k != "W0.npy"] +
        [M("W0.npy", members["W0.npy"] + bytes(64))]))
    add("size_member_declares_less_than_header", "size", zip_bytes(
        [M(k, v) for k, v in members.items() if k != "W0.npy"] +
        [M("W0.npy", members["W0.npy"][:-8])]))
    add("size_stored_sizes_disagree", "size", zip_bytes(
        [M(k, v) for k, v in members.items() if k != "W0.npy"] +
        [M("W0.npy", members["W0.npy"], file_size=len(members["W0.npy"]) + 4096)]))
    add("size_member_past_end_of_file", "size", zip_bytes(
        [M(k, v) for k, v in members.items() if k != "W0.npy"] +
        [M("W0.npy", members["W0.npy"], compress_size=1 << 30, file_size=1 << 30)]))
    add("size_huge_metadata", "size", assemble(members, json.dumps(meta) + " " * (2 << 20)))
    add("size_too_many_layers", "size", assemble(members, with_meta(
        layers=[meta["layers"][0]] + [{"units": 3, "activation": "relu"}] * 2000)))
    add("size_directory_claims_many_members", "size",
        zip_bytes([M(k, v) for k, v in members.items()], eocd=(60000, 3 << 30)))
    add("size_many_param_sets", "size", assemble(members, with_meta(param_sets=10 ** 6)))

    # ---- the zip container -------------------------------------------------------------
    for cut in (0, 1, 21, 30, 100, len(good) // 3, len(good) // 2, len(good) - 200,
                len(good) - 23, len(good) - 1):
        add(f"zip_truncated_at_{cut}", "zip", good[:cut])
    add("zip_random_bytes", "zip", np.random.default_rng(1).bytes(5000))
    add("zip_not_a_zip_npy", "zip", members["W0.npy"])
    d = bytearray(assemble(members, method=DEFLATED))
    i = d.index(b"W0.npy") + 6
    d[i:i + 8] = b"\xff" * 8  # deflate block type 3 does not exist
    add("zip_corrupt_deflate_data", "zip", bytes(d))
    add("zip_bad_crc", "zip", zip_bytes(
        [M(k, v, crc=(zlib.crc32(v) ^ 1) if k == "W1.npy" else None) for k, v in members.items()]))
    add("zip_encrypted_flag", "zip", zip_bytes([M(k, v, flags=1) for k, v in members.items()]))
    add("zip_bzip2_method", "zip", zip_bytes(
        [M(k, v, method=12 if k == "W0.npy" else STORED) for k, v in members.items()]))
    add("zip_duplicate_member", "zip", zip_bytes(
        [M(k, v) for k, v in members.items()] + [M("W0.npy", members["W0.npy"])]))
    add("zip_empty_archive", "zip", zip_bytes([]))
    d = bytearray(good)
    d[-22 + 16:-22 + 20] = struct.pack("<L", 0xFFFFFFFF)
    add("zip_zip64_marker_without_record", "zip", bytes(d))

    # ---- NPY headers --------------------------------------------------------------------
    add("npy_member_is_not_npy", "npy", assemble(with_arrays(W0=os.urandom(92))))
    add("npy_member_is_a_pickle", "npy", assemble(with_arrays(W0=np.array([object()]))))
    add("npy_version_3", "npy", assemble(with_arrays(
        W0=npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 5), }", (3, 0))
        + arrays["W0"].tobytes())))
    add("npy_header_length_huge_v1", "npy", assemble(with_arrays(
        W0=npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 5), }", (1, 0),
                      length=65535))))
    add("npy_header_length_huge_v2", "npy", assemble(with_arrays(
        W0=npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 5), }", (2, 0),
                      length=2 ** 31))))
    add("npy_header_code", "npy", assemble(with_arrays(
        W0=npy_header("__import__('os').system('echo pwned')") + arrays["W0"].tobytes())))
    add("npy_header_nested", "npy", assemble(with_arrays(
        W0=npy_header("(" * 3000 + ")" * 3000) + arrays["W0"].tobytes())))
    for label, descr in (("float64", "<f8"), ("int32", "<i4"), ("object", "|O"),
                         ("structured", "[('a', '<f4')]"), ("subarray", "('<f4', (5,))"),
                         ("float16", "<f2"), ("complex", "<c8")):
        shape = "(4,)" if label == "subarray" else "(4, 5)"
        item = {"<f8": 8, "<c8": 8, "<f2": 2}.get(descr, 4)
        add(f"npy_wrong_dtype_{label}", "npy", assemble(with_arrays(
            W0=npy_header(f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape}, }}"
                          if label not in ("structured", "subarray") else
                          f"{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, }}")
            + bytes(20 * item))))
    add("npy_fortran_order", "npy", assemble(with_arrays(W0=np.asfortranarray(arrays["W0"]))))
    add("npy_wrong_shape", "npy", assemble(with_arrays(W0=arrays["W0"].T.copy())))
    add("npy_truncated_data", "npy", assemble(with_arrays(W0=members["W0.npy"][:-4])))

    # ---- metadata as text -----------------------------------------------------------------
    add("json_nested_deeply", "json", assemble(members, "[" * 100000 + "]" * 100000))
    add("json_nested_in_a_field", "json", assemble(
        members, json.dumps(meta)[:-1] + ', "extra": ' + "{\"a\": " * 20 + "1" + "}" * 20 + "}"))
    add("json_not_utf8", "json", assemble(members, json.dumps(meta).encode() + b"\xff\xfe"))
    add("json_lone_surrogate", "json", assemble(
        members, json.dumps(with_meta(dtype="\ud800"))))
    add("json_garbage", "json", assemble(members, b"{not json"))
    add("json_not_an_object", "json", assemble(members, "[1, 2, 3]"))
    add("json_nan_weight_decay", "json", assemble(
        members, json.dumps(meta).replace('"weight_decay": 0.0', '"weight_decay": NaN')))
    add("json_iterations_infinity", "json", assemble(
        members, json.dumps(meta).replace(f'"iterations": {meta["optimizer"]["iterations"]}',
                                          '"iterations": Infinity')))
    add("json_iterations_1e999", "json", assemble(
        members, json.dumps(meta).replace(f'"iterations": {meta["optimizer"]["iterations"]}',
                                          '"iterations": 1e999')))
    add("json_huge_integer", "json", assemble(
        members, json.dumps(meta).replace('"seed": 0', '"seed": ' + "9" * 100000)))
    add("json_duplicate_key", "json", assemble(
        members, json.dumps(meta)[:-1] + ', "dtype": "float64"}'))
    add("json_metadata_float_array", "json", assemble(
        with_arrays(__fastsgd__=np.frombuffer(json.dumps(meta).encode(), np.uint8)
                    .astype(np.float32))))
    add("json_metadata_2d", "json", assemble(
        with_arrays(__fastsgd__=np.frombuffer(json.dumps(meta).encode() + b" " * (
            -len(json.dumps(meta)) % 2), np.uint8).reshape(2, -1))))
    add("json_metadata_missing", "json", assemble(with_arrays(__fastsgd__=None)))

    # ---- metadata fields ---------------------------------------------------------------------
    l0, l1 = meta["layers"]
    for label, value in (("zero", 0), ("negative", -1), ("float", 5.0), ("bool", True),
                         ("string", "5"), ("huge", 2 ** 40), ("null", None)):
        add(f"meta_units_{label}", "meta", assemble(members, with_meta(
            layers=[{**l0, "units": value}, l1])))
    for label, layers in (
            ("no_input_dim", [{k: v for k, v in l0.items() if k != "input_dim"}, l1]),
            ("input_dim_mismatch", [l0, {**l1, "input_dim": 7}]),
            ("unknown_activation", [{**l0, "activation": "__import__('os')"}, l1]),
            ("unknown_initializer", [{**l0, "weight_init": "rm -rf"}, l1]),
            ("negative_slope_negative", [{**l0, "negative_slope": -1.0}, l1]),
            ("negative_slope_string", [{**l0, "negative_slope": "0.2"}, l1]),
            ("l2_negative", [{**l0, "l2": -0.5}, l1]),
            ("unexpected_layer_key", [{**l0, "exec": "x"}, l1]),
            ("layer_not_a_dict", [[5, "relu"], l1]),
            ("layers_empty", []),
            ("layers_not_a_list", {"0": l0})):
        add(f"meta_{label}", "meta", assemble(members, with_meta(layers=layers)))
    for label, changes in (("version_3", {"version": 3}), ("version_true", {"version": True}),
                           ("format_other", {"format": "keras"}), ("dtype_float16", {"dtype": "float16"}),
                           ("dtype_object", {"dtype": "object"}), ("seed_negative", {"seed": -1}),
                           ("seed_float", {"seed": 0.5}), ("input_dim_disagrees", {"input_dim": 9}),
                           ("unknown_field", {"__class__": "x"}), ("extra_not_object", {"extra": [1]}),
                           ("param_sets_negative", {"param_sets": -1})):
        add(f"meta_{label}", "meta", assemble(members, with_meta(**changes)))

    # ---- optimizer record and state ----------------------------------------------------------
    for label, value in (("negative", -1), ("float", 1.5), ("huge", 2 ** 70), ("string", "3"),
                         ("bool", True), ("null", None)):
        add(f"opt_iterations_{label}", "optimizer", assemble(members, opt_meta(iterations=value)))
    n = len(meta["optimizer"]["n_state"])
    for label, value in (("short", [2] * (n - 1)), ("mixed", [2] * (n - 1) + [1]),
                         ("too_many", [4] * n), ("wrong_for_adam", [1] * n), ("not_a_list", 2)):
        add(f"opt_n_state_{label}", "optimizer", assemble(members, opt_meta(n_state=value)))
    for label, changes in (("unknown_class", {"class": "Evil"}),
                           ("class_not_string", {"class": ["Adam"]}),
                           ("unknown_setting", {"config": {**meta["optimizer"]["config"], "x": 1}}),
                           ("bad_setting", {"config": {**meta["optimizer"]["config"], "lr": -1.0}}),
                           ("nested_setting", {"config": {**meta["optimizer"]["config"],
                                                          "lr": {"a": 1}}}),
                           ("unexpected_field", {"hook": "x"})):
        add(f"opt_{label}", "optimizer", assemble(members, opt_meta(**changes)))
    v = arrays["opt_state_0_1"].copy()
    v[0, 0] = -1e-3
    add("opt_adam_negative_second_moment", "optimizer", assemble(with_arrays(opt_state_0_1=v)))
    m1 = arrays["opt_state_2_0"].copy()
    m1[1, 1] = np.nan
    add("opt_state_nan", "optimizer", assemble(with_arrays(opt_state_2_0=m1)))
    add("opt_state_missing", "optimizer", assemble(with_arrays(opt_state_3_1=None)))
    add("opt_state_wrong_shape", "optimizer", assemble(
        with_arrays(opt_state_0_0=arrays["opt_state_0_0"][:2])))
    add("opt_state_wrong_dtype", "optimizer", assemble(
        with_arrays(opt_state_0_0=arrays["opt_state_0_0"].astype(np.float64))))

    # ---- weights -----------------------------------------------------------------------------
    w = arrays["W0"].copy()
    w[2, 3] = np.nan
    add("weights_nan", "weights", assemble(with_arrays(W0=w)))
    b = arrays["b1"].copy()
    b[0] = -np.inf
    add("weights_inf_bias", "weights", assemble(with_arrays(b1=b)))
    add("weights_wrong_dtype", "weights", assemble(with_arrays(W1=arrays["W1"].astype(np.float64))))
    add("weights_int", "weights", assemble(with_arrays(b0=arrays["b0"].astype(np.int32))))
    add("weights_big_endian_float64", "weights", assemble(
        with_arrays(W0=arrays["W0"].astype(">f8"))))
    add("weights_missing", "weights", assemble(with_arrays(W1=None)))
    return cases


def _adagrad_and_rmsprop_cases(folder):
    """Negative accumulators for the optimizers that keep sums of squares."""
    from fastsgd import Adagrad, RMSprop
    cases = []
    for opt in (Adagrad(0.1), RMSprop(0.01)):
        sub = os.path.join(folder, type(opt).__name__)
        os.makedirs(sub, exist_ok=True)
        members, _ = members_of(valid_model(sub, opt))
        arrays = arrays_of(members)
        acc = arrays["opt_state_1_0"].copy()
        acc[-1] = -2.0
        ms = dict(members)
        ms["opt_state_1_0.npy"] = npy(acc)
        p = os.path.join(folder, f"opt_{type(opt).__name__.lower()}_negative_accumulator.npz")
        with open(p, "wb") as f:
            f.write(assemble(ms))
        cases.append((os.path.basename(p)[:-4], "optimizer", p))
    return cases


def build_all(folder):
    return build(folder) + _adagrad_and_rmsprop_cases(folder)


def load_with_optimizer(path):
    """What the tests call: everything in the file is read, optimizer included."""
    return fastsgd.load_model(path, return_optimizer=True)
