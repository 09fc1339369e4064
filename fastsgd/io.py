"""Saving and loading models.

Format: a NumPy ``.npz`` archive (a zip of ``.npy`` files) holding

* ``__fastsgd__``: UTF-8 JSON metadata as a uint8 array -- format name and
  version, dtype, input size, and each layer's configuration (version 2:
  with its ``class``, ``Dense``, ``Dropout`` or ``BatchNormalization``;
  version 1 files, Dense layers only, are still read);
* ``W{i}``, ``b{i}``: the weights and bias of Dense layer ``i``;
  ``gamma{i}``, ``beta{i}`` (those it has), ``moving_mean{i}``,
  ``moving_variance{i}`` of BatchNormalization layer ``i`` (Dropout has none);
* optionally ``opt_state_{j}_{k}``: the optimizer's state (state array ``k``
  of trainable parameter ``j``, in the model's layout order), with the
  optimizer's settings and iteration count in the metadata, so that a
  resumed run continues exactly.

Files are written to a temporary file in the same folder and renamed over the
target (see :func:`atomic_write`), so a crash never leaves half a model behind.

Reading trusts nothing in the file. :func:`load_model` opens the zip itself
and reads only the members it expects; nothing is unpickled. Before any array
is allocated it

* checks the zip's central directory is of a sane size,
* parses and checks the metadata (at most :data:`MAX_META_BYTES` of UTF-8
  JSON nested at most :data:`MAX_JSON_DEPTH` deep, finite numbers only, every
  field of the expected type and range),
* derives every array's shape from the metadata and checks the total against
  a cap (``max_bytes``, else ``$FASTSGD_MAX_MODEL_BYTES``, else
  :data:`MAX_MODEL_BYTES` = 4 GiB),
* checks each member's NPY header (magic, version, dtype, shape, order)
  against that shape, and its uncompressed size as declared in the zip
  against what the header implies -- and against what its compressed bytes,
  which must lie inside the file, could possibly hold.

Arrays are then read in bounded chunks, exactly the expected number of bytes
(a member is never decompressed beyond its declared size; members not
expected are never read), and checked to be finite (optimizer accumulators
and second moments and moving variances also non-negative). Anything wrong raises ``ValueError``
naming the file and the problem; only a missing or unreadable file raises
``OSError`` (e.g. ``FileNotFoundError``).
"""
import inspect
import io as _io
import json
import math
import os
import re
import struct
import zipfile
import zlib

import numpy as np
from numpy.lib import format as _npy

from . import optimizers as _opt
from ._files import atomic_write  # noqa: F401  (re-exported: fastsgd.io.atomic_write)
from ._model_file import _META, FORMAT, VERSION, ModelFileError
from ._model_file import write as _write
from ._validate import check_bool, check_int
from .layers import ACTIVATIONS, INITIALIZERS, LAYERS, Dense, Rescaling, Sequential
from .optimizers import Optimizer

#: default cap on the total uncompressed size of the arrays a model file declares
MAX_MODEL_BYTES = 4 << 30
#: environment variable that overrides :data:`MAX_MODEL_BYTES` (a byte count)
MAX_MODEL_BYTES_ENV = "FASTSGD_MAX_MODEL_BYTES"
#: the metadata's largest size in bytes and deepest nesting of JSON arrays and objects
MAX_META_BYTES = 1 << 20
MAX_JSON_DEPTH = 16
#: bounds on what the metadata may declare
MAX_LAYERS = 1024
MAX_UNITS = 2 ** 31 - 1
MAX_ITERATIONS = 2 ** 62
MAX_STATES_PER_PARAM = 3
MAX_PARAM_SETS = 4
#: bounds on the zip's central directory (read whole by :mod:`zipfile`)
MAX_ZIP_MEMBERS = 65535
MAX_CENTRAL_DIR_BYTES = 4 << 20

_NPY_HEADER_MAX = 10000   # numpy's own bound on an NPY header
_DEFLATE_MAX_RATIO = 1032  # deflate cannot expand data by more than ~1032:1
_CHUNK = 1 << 20
_LAYER_KEYS = ("units", "activation", "input_dim", "weight_init", "bias_init",
               "negative_slope", "l1", "l2")
#: the configuration keys of each layer class (version 2 files add "class")
_CLASS_KEYS = {"Dense": _LAYER_KEYS, "Dropout": ("rate", "seed"),
               "BatchNormalization": ("momentum", "epsilon", "center", "scale")}
#: the model-file versions this reader takes
READ_VERSIONS = (1, VERSION)
_TOP_KEYS = {"format", "version", "dtype", "input_dim", "seed", "layers", "optimizer", "extra", "rescaling",
             "param_sets"}
_OPT_KEYS = {"class", "config", "iterations", "n_state"}
#: state arrays that hold sums or averages of squares and so are never negative
_NON_NEGATIVE_STATES = {"adagrad": (0,), "rmsprop": (0,), "adam": (1, 2)}


def save_model(model, path, optimizer=None, *, _extra=None, _param_sets=()):
    """Write ``model`` (and optionally ``optimizer``'s state) to ``path`` atomically.

    ``_extra`` (a JSON-able dict) and ``_param_sets`` (lists of arrays shaped
    like the model's parameters) are for :class:`fastsgd.BackupAndRestore`.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a fastsgd.Sequential, got {type(model).__name__}")
    _write(model, path, optimizer, extra=_extra, param_sets=_param_sets)


def _bad(path, why):
    return ModelFileError(f"{path!s} is not a valid fastsgd model file: {why}")


# -- limits --------------------------------------------------------------------
def _byte_cap(max_bytes):
    if max_bytes is not None:
        return check_int("max_bytes", max_bytes, minimum=1)
    env = os.environ.get(MAX_MODEL_BYTES_ENV, "").strip()
    if not env:
        return MAX_MODEL_BYTES
    try:
        value = int(env.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{MAX_MODEL_BYTES_ENV} must be a positive byte count, got {env!r}")
    return value


# -- the zip container -----------------------------------------------------------
_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")


def _check_central_directory(f, size, path):
    """Bound the zip's central directory before :mod:`zipfile` reads all of it."""
    if size < _EOCD.size:
        raise _bad(path, f"only {size} bytes long, too short for a zip archive")
    start = max(0, size - _EOCD.size - 65535)
    f.seek(start)
    tail = f.read(size - start)
    # where zipfile looks: a record without comment at the very end, else the last one
    pos = len(tail) - _EOCD.size
    if tail[pos:pos + 4] != b"PK\x05\x06" or tail[-2:] != b"\0\0":
        pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or pos + _EOCD.size > len(tail):
        raise _bad(path, "not a zip archive (no end-of-central-directory record); "
                         "the file may be truncated")
    rec = _EOCD.unpack_from(tail, pos)
    n_members, cd_size, cd_offset = rec[4], rec[5], rec[6]
    if (n_members == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF) and pos >= 20:
        loc = _EOCD64_LOCATOR.unpack_from(tail, pos - _EOCD64_LOCATOR.size)
        if loc[0] == b"PK\x06\x07":
            if loc[2] > size - _EOCD64.size:
                raise _bad(path, "its zip64 directory record lies outside the file")
            f.seek(loc[2])
            rec64 = f.read(_EOCD64.size)
            if len(rec64) != _EOCD64.size or rec64[:4] != b"PK\x06\x06":
                raise _bad(path, "its zip64 directory record is damaged")
            rec64 = _EOCD64.unpack(rec64)
            n_members, cd_size = rec64[7], rec64[8]
        else:
            raise _bad(path, "its zip directory record points to a zip64 record that is missing")
    if n_members > MAX_ZIP_MEMBERS:
        raise _bad(path, f"its zip directory lists {n_members} members (at most "
                         f"{MAX_ZIP_MEMBERS} are accepted)")
    if cd_size > MAX_CENTRAL_DIR_BYTES or cd_size > size:
        raise _bad(path, f"its zip directory declares {cd_size} bytes (at most "
                         f"{min(MAX_CENTRAL_DIR_BYTES, size)} are accepted)")
    f.seek(0)


def _read_exact(f, n, path, what):
    data = f.read(n)
    if len(data) != n:
        raise _bad(path, f"{what} is truncated")
    return data


class _Member:
    """One ``.npy`` member: its zip entry and its checked NPY header."""

    def __init__(self, reader, name, info):
        self.reader = reader
        self.name = name
        self.info = info

    def check_entry(self, max_bytes):
        """Check the zip entry: method, flags, and sizes the file can back."""
        path, info, name = self.reader.path, self.info, self.name
        if info.flag_bits & 0x1:
            raise _bad(path, f"member {name} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _bad(path, f"member {name} uses zip compression method {info.compress_type} "
                             "(only stored and deflated are read)")
        if info.header_offset + info.compress_size > self.reader.size:
            raise _bad(path, f"member {name} extends past the end of the file (truncated?)")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise _bad(path, f"member {name} is stored uncompressed but its sizes disagree")
        if info.file_size > info.compress_size * _DEFLATE_MAX_RATIO + 1024:
            raise _bad(path, f"member {name} declares {info.file_size} bytes, more than its "
                             f"{info.compress_size} compressed bytes can hold")
        if info.file_size > max_bytes:
            raise _bad(path, f"member {name} declares {info.file_size} bytes (limit {max_bytes})")

    def check(self, shape, dtype, max_bytes):
        """Check zip entry and NPY header against ``shape``/``dtype``; read no data."""
        path, info, name = self.reader.path, self.info, self.name
        self.check_entry(max_bytes)
        with self.reader.zf.open(info) as f:
            dt, shp, header_len = self._header(f)
        want = np.dtype(dtype)
        if (dt.kind != want.kind or dt.itemsize != want.itemsize or dt.fields is not None
                or dt.subdtype is not None or dt.hasobject):
            raise _bad(path, f"{name[:-4]} has dtype {dt}; expected {want}")
        if shp != tuple(shape):
            raise _bad(path, f"{name[:-4]} has shape {shp}; expected {tuple(shape)}")
        nbytes = math.prod(shp) * dt.itemsize
        if info.file_size != header_len + nbytes:
            raise _bad(path, f"member {name} declares {info.file_size} bytes, but its header "
                             f"implies {header_len + nbytes}")
        self.dtype, self.shape, self.header_len = dt, shp, header_len
        return nbytes

    def _header(self, f):
        path, name = self.reader.path, self.name
        try:
            version = _npy.read_magic(f)
        except ValueError as e:
            raise _bad(path, f"member {name} is not an NPY array ({e})") from None
        if version not in ((1, 0), (2, 0)):
            raise _bad(path, f"member {name} has NPY version {version} (1.0 or 2.0 expected)")
        fmt = "<H" if version == (1, 0) else "<I"
        raw = _read_exact(f, struct.calcsize(fmt), path, f"the NPY header of {name}")
        length = struct.unpack(fmt, raw)[0]
        if length > _NPY_HEADER_MAX:
            raise _bad(path, f"member {name} has a {length}-byte NPY header "
                             f"(at most {_NPY_HEADER_MAX})")
        text = _read_exact(f, length, path, f"the NPY header of {name}")
        parse = _npy.read_array_header_1_0 if version == (1, 0) else _npy.read_array_header_2_0
        try:
            shape, fortran, dtype = parse(_io.BytesIO(raw + text))
        except (ValueError, TypeError, SyntaxError) as e:
            raise _bad(path, f"member {name} has a malformed NPY header ({e})") from None
        if fortran and len(shape) > 1:
            raise _bad(path, f"member {name} is stored in Fortran order (C order expected)")
        return dtype, tuple(shape), _npy.MAGIC_LEN + len(raw) + length

    def read(self, out, non_negative=False):
        """Read the data into ``out`` (C-contiguous, of the header's shape) in chunks."""
        path, name = self.reader.path, self.name
        flat = out.reshape(-1)
        item = self.dtype.itemsize
        per = max(_CHUNK // item, 1)
        with self.reader.zf.open(self.info) as f:
            _read_exact(f, self.header_len, path, name)
            for lo in range(0, flat.size, per):
                cnt = min(per, flat.size - lo)
                chunk = np.frombuffer(_read_exact(f, cnt * item, path, f"member {name}"),
                                      dtype=self.dtype)
                if self.dtype.kind == "f":
                    if not np.isfinite(chunk).all():
                        raise _bad(path, f"{name[:-4]} holds NaN or infinite values")
                    if non_negative and (chunk < 0).any():
                        raise _bad(path, f"{name[:-4]} holds negative values, impossible for "
                                         "accumulated squares or a variance")
                flat[lo:lo + cnt] = chunk
            if f.read(1):  # also makes zipfile check the CRC-32
                raise _bad(path, f"member {name} holds more data than its header declares")
        return out


class _Reader:
    """An open model file: the zip, its members by name and the parsed metadata."""

    _NAME = re.compile(r"(__fastsgd__|(?:[Wb]|gamma|beta|moving_mean|moving_variance)\d{1,6}|"
                       r"opt_state_\d{1,6}_\d|P\d_\d{1,6})\.npy\Z")

    def __init__(self, path, f):
        self.path = path
        self.size = os.fstat(f.fileno()).st_size
        _check_central_directory(f, self.size, path)
        self.zf = zipfile.ZipFile(f)
        self.members = {}
        for info in self.zf.infolist():
            if self._NAME.match(info.filename):
                if info.filename in self.members:
                    raise _bad(path, f"member {info.filename} appears twice")
                self.members[info.filename] = _Member(self, info.filename, info)

    def member(self, key):
        m = self.members.get(key + ".npy")
        if m is None:
            raise _bad(self.path, f"missing array {key}" if key != _META else "no fastsgd metadata")
        return m

    def metadata(self):
        m = self.member(_META)
        n = m.info.file_size
        if n > MAX_META_BYTES + 4096:
            raise _bad(self.path, f"its metadata declares {n} bytes (at most {MAX_META_BYTES})")
        m.check_entry(MAX_META_BYTES + 4096)
        with self.zf.open(m.info) as f:
            dt, shape, header_len = m._header(f)
        if dt != np.uint8 or len(shape) != 1 or shape[0] > MAX_META_BYTES:
            raise _bad(self.path, "metadata has the wrong type or size")
        m.check(shape, np.uint8, MAX_META_BYTES + 4096)
        raw = m.read(np.empty(shape, np.uint8)).tobytes()
        return _parse_json(raw, self.path)


# -- metadata ---------------------------------------------------------------------
_JSON_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def _parse_json(raw, path):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _bad(path, f"metadata is not UTF-8 ({e})") from None
    depth = 0
    for tok in _JSON_TOKENS.finditer(text):
        c = tok.group()
        if c in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise _bad(path, f"metadata is nested more than {MAX_JSON_DEPTH} levels deep")
        elif c in "]}":
            depth -= 1

    def constant(name):
        raise ValueError(f"{name} is not allowed")

    def number(s):
        v = float(s)
        if not math.isfinite(v):
            raise ValueError(f"number {s[:40]} is out of range")
        return v

    def pairs(items):
        d = {}
        for k, v in items:
            if k in d:
                raise ValueError(f"duplicate key {k[:40]!r}")
            d[k] = v
        return d

    try:
        return json.loads(text, parse_constant=constant, parse_float=number,
                          object_pairs_hook=pairs)
    except (ValueError, RecursionError, MemoryError) as e:
        raise _bad(path, f"metadata is not valid JSON ({type(e).__name__}: {str(e)[:200]})") from None


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_layers(meta, path):
    """Validated layer configurations (without their ``class``), each layer's
    class, the arrays to read as ``(member, shape, non_negative)`` in
    :meth:`Sequential.get_weights` order, and the trainable parameters'
    shapes in layout order (no allocation)."""
    layers = meta.get("layers")
    version = meta["version"]
    if not isinstance(layers, list) or not layers:
        raise _bad(path, "no layers")
    if len(layers) > MAX_LAYERS:
        raise _bad(path, f"{len(layers)} layers (at most {MAX_LAYERS})")
    top = meta.get("input_dim")
    cfgs, classes, members, params = [], [], [], []
    n_in = None
    for i, cfg in enumerate(layers):
        if not isinstance(cfg, dict):
            raise _bad(path, f"layer {i} has an unexpected configuration")
        if version == 1:
            cls = "Dense"
        else:
            cls = cfg.get("class")
            if not isinstance(cls, str) or cls not in _CLASS_KEYS:
                raise _bad(path, f"layer {i} has an unknown class {_short(cls)}")
        keys = set(cfg) - ({"class"} if version > 1 else set())
        if not keys <= set(_CLASS_KEYS[cls]):
            raise _bad(path, f"layer {i} has an unexpected configuration")
        if i == len(layers) - 1 and cls != "Dense":
            raise _bad(path, f"the last layer is a {cls}, not the Dense output layer")
        clean = {k: cfg[k] for k in keys}
        if i == 0:
            given = cfg.get("input_dim") if cls == "Dense" else top
            if not _is_int(given) or not 1 <= given <= MAX_UNITS:
                raise _bad(path, f"the first layer has input_dim={_short(given)} (a whole number "
                                 f"from 1 to {MAX_UNITS} expected)")
            n_in = given
        if cls == "Dense":
            units = _check_dense(cfg, i, n_in, path)
            members += [(f"W{i}", (n_in, units), False), (f"b{i}", (units,), False)]
            params += [(n_in, units), (units,)]
            if i > 0:
                clean.pop("input_dim", None)
        elif cls == "Dropout":
            rate, seed = cfg.get("rate"), cfg.get("seed")
            if not _is_num(rate) or not 0 <= rate < 1:
                raise _bad(path, f"layer {i} has rate={_short(rate)} (a number in [0, 1) expected)")
            if seed is not None and (not _is_int(seed) or not 0 <= seed < 2 ** 64):
                raise _bad(path, f"layer {i} has seed={_short(seed)}")
            units = n_in
        else:
            mom, eps = cfg.get("momentum", 0.99), cfg.get("epsilon", 1e-3)
            if not _is_num(mom) or not 0 <= mom < 1:
                raise _bad(path, f"layer {i} has momentum={_short(mom)} (a number in [0, 1) "
                                 f"expected)")
            if not _is_num(eps) or not eps > 0:
                raise _bad(path, f"layer {i} has epsilon={_short(eps)} (a number > 0 expected)")
            for key in ("center", "scale"):
                if not isinstance(cfg.get(key, True), bool):
                    raise _bad(path, f"layer {i} has {key}={_short(cfg.get(key))}")
            units = n_in
            for name in ("gamma", "beta"):
                if cfg.get("scale" if name == "gamma" else "center", True):
                    members.append((f"{name}{i}", (units,), False))
                    params.append((units,))
            members += [(f"moving_mean{i}", (units,), False),
                        (f"moving_variance{i}", (units,), True)]
        cfgs.append(clean)
        classes.append(cls)
        n_in = units
    if top is not None and top != (layers[0].get("input_dim") if classes[0] == "Dense" else top):
        raise _bad(path, f"input_dim {_short(top)} differs from the first layer's")
    return cfgs, classes, members, params


def _check_dense(cfg, i, n_in, path):
    """A Dense layer's configuration checked; returns its units."""
    units = cfg.get("units")
    if not _is_int(units) or not 1 <= units <= MAX_UNITS:
        raise _bad(path, f"layer {i} has units={_short(units)} (a whole number from 1 to "
                         f"{MAX_UNITS} expected)")
    given = cfg.get("input_dim")
    if i > 0 and given is not None and given != n_in:
        raise _bad(path, f"layer {i} has input_dim={_short(given)} but the layer before it "
                         f"has {n_in} units")
    act = cfg.get("activation", "linear")
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise _bad(path, f"layer {i} has an unknown activation {_short(act)}")
    for key in ("weight_init", "bias_init"):
        v = cfg.get(key, "zeros")
        if not isinstance(v, str) or v not in INITIALIZERS:
            raise _bad(path, f"layer {i} has an unknown {key} {_short(v)}")
    slope = cfg.get("negative_slope", 0.2)
    if not _is_num(slope) or slope < 0:
        raise _bad(path, f"layer {i} has negative_slope={_short(slope)}")
    for key in ("l1", "l2"):
        v = cfg.get(key)
        if v is not None and (not _is_num(v) or v < 0):
            raise _bad(path, f"layer {i} has {key}={_short(v)}")
    return units


def _short(v):
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _check_meta(meta, path):
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _bad(path, "unknown format")
    if not _is_int(meta.get("version")) or meta["version"] not in READ_VERSIONS:
        raise _bad(path, f"unsupported version {_short(meta.get('version'))}")
    unknown = set(meta) - _TOP_KEYS
    if unknown:
        raise _bad(path, f"unexpected metadata fields {sorted(map(_short, unknown))}")
    dtype = meta.get("dtype")
    if dtype not in ("float32", "float64"):
        raise _bad(path, f"bad dtype {_short(dtype)}")
    seed = meta.get("seed")
    if seed is not None and (not _is_int(seed) or not 0 <= seed < 2 ** 128):
        raise _bad(path, f"bad seed {_short(seed)}")
    cfgs, classes, members, shapes = _check_layers(meta, path)
    rescaling = meta.get("rescaling")
    if rescaling is not None and (not isinstance(rescaling, dict)
                                  or set(rescaling) != {"scale", "offset"}
                                  or not all(_is_num(v) for v in rescaling.values())):
        raise _bad(path, f"bad rescaling {_short(rescaling)}")
    n_sets = meta.get("param_sets", 0)
    if not _is_int(n_sets) or not 0 <= n_sets <= MAX_PARAM_SETS:
        raise _bad(path, f"bad param_sets {_short(n_sets)}")
    extra = meta.get("extra")
    if extra is not None and not isinstance(extra, dict):
        raise _bad(path, "extra metadata is not an object")
    opt = meta.get("optimizer")
    if opt is not None:
        if not isinstance(opt, dict) or not set(opt) <= _OPT_KEYS:
            raise _bad(path, "the optimizer record has unexpected fields")
        cls = opt.get("class")
        if not isinstance(cls, str) or not 0 < len(cls) <= 100:
            raise _bad(path, f"bad optimizer class {_short(cls)}")
        cfg = opt.get("config", {})
        if not isinstance(cfg, dict) or not all(
                isinstance(k, str) and (v is None or isinstance(v, (bool, str)) or _is_num(v))
                for k, v in cfg.items()):
            raise _bad(path, "the optimizer's settings are not a flat record of numbers")
        it = opt.get("iterations")
        if not _is_int(it) or not 0 <= it <= MAX_ITERATIONS:
            raise _bad(path, f"optimizer iterations must be a whole number from 0 to 2**62, "
                             f"got {_short(it)}")
        n_state = opt.get("n_state")
        if n_state is not None:
            if (not isinstance(n_state, list) or len(n_state) != len(shapes)
                    or not all(_is_int(c) and 0 <= c <= MAX_STATES_PER_PARAM for c in n_state)
                    or len(set(n_state)) > 1):
                raise _bad(path, f"optimizer state counts {_short(n_state)} do not match the "
                                 f"{len(shapes)} parameter arrays")
    return np.dtype(dtype), (cfgs, classes, members), shapes


# -- loading --------------------------------------------------------------------------
def _make_optimizer(info, path):
    cls = _opt.OPTIMIZERS.get(info["class"].lower())
    if cls is None:
        raise _bad(path, f"unknown optimizer {_short(info['class'])}")
    cfg = info.get("config", {})
    accepted = set(inspect.signature(cls).parameters)
    if not set(cfg) <= accepted:
        raise _bad(path, f"unexpected optimizer settings {sorted(set(cfg) - accepted)}")
    try:
        return cls(**cfg)
    except (TypeError, ValueError) as e:
        raise _bad(path, f"bad optimizer settings ({e})") from None


def _load(path, optimizer=None, rebuild_optimizer=False, max_bytes=None, param_sets=False):
    """Read and check a model file; returns ``(model, optimizer, metadata, param_sets)``."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path-like, got {type(path).__name__}")
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a fastsgd Optimizer, got {type(optimizer).__name__}")
    cap = _byte_cap(max_bytes)
    path = os.fspath(path)
    with open(path, "rb") as f:  # a missing or unreadable file raises OSError here
        try:
            return _load_open(path, f, optimizer, rebuild_optimizer, cap, param_sets,
                              Dense, Sequential)
        except ModelFileError:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
                ValueError, TypeError, KeyError, IndexError, struct.error, UnicodeError,
                OverflowError, MemoryError, RecursionError, NotImplementedError,
                RuntimeError) as e:
            if isinstance(e, zlib.error):
                why = f"corrupt compressed data (zlib: {e})"
            else:
                why = f"{type(e).__name__}: {str(e)[:300]}"
            raise _bad(path, why) from None


def _load_open(path, f, optimizer, rebuild_optimizer, cap, want_sets, Dense, Sequential):
    reader = _Reader(path, f)
    reader.meta = reader.metadata()
    dtype, cfgs, shapes = _check_meta(reader.meta, path)
    return _assemble(reader, path, optimizer, rebuild_optimizer, cap, want_sets, dtype, cfgs,
                     shapes, Dense, Sequential)


def _assemble(reader, path, optimizer, rebuild_optimizer, cap, want_sets, dtype, cfgs, shapes,
              Dense, Sequential):
    meta = reader.meta
    cfgs, classes, members = cfgs
    # every array this call will read, with its shape, checked before anything is allocated
    plan = list(members)
    info = meta.get("optimizer")
    opt = None
    n_state = None
    if info is not None and (rebuild_optimizer or optimizer is not None):
        opt = optimizer if optimizer is not None else _make_optimizer(info, path)
        n_state = info.get("n_state")
        if n_state is not None:
            per = n_state[0]
            expect = opt._n_states() if hasattr(opt, "_n_states") else per
            if per != expect:
                raise _bad(path, f"the file holds {per} optimizer state arrays per parameter; "
                                 f"{type(opt).__name__} with these settings uses {expect}")
            nonneg = _NON_NEGATIVE_STATES.get(getattr(opt, "kind", None), ())
            for j, shp in enumerate(shapes):
                plan += [(f"opt_state_{j}_{k}", shp, k in nonneg) for k in range(per)]
    n_sets = meta.get("param_sets", 0) if want_sets else 0
    for s in range(n_sets):
        plan += [(f"P{s}_{k}", shp, False) for k, (_, shp, _) in enumerate(members)]
    total = sum(math.prod(shp) for _, shp, _ in plan) * dtype.itemsize
    if total > cap:
        raise _bad(path, f"it declares {total:,} bytes of arrays, above the limit of {cap:,} "
                         f"(max_bytes or ${MAX_MODEL_BYTES_ENV})")
    for key, shp, _ in plan:
        reader.member(key).check(shp, dtype, cap)
    # Every shape now agrees with an NPY header and with the uncompressed size the zip
    # declares for it, and that size with what its compressed bytes can hold: the layers'
    # random initialisation below allocates no more than the file justifies.
    try:
        layers = [(Dense if cls == "Dense" else LAYERS[cls])(**c) for cls, c in zip(classes, cfgs)]
        if meta.get("rescaling") is not None:
            layers.insert(0, Rescaling(**meta["rescaling"]))
        model = Sequential(layers, dtype=dtype, seed=meta.get("seed"))
        if not model.built:  # the first layer is not Dense: the input size is the file's
            model.build(meta["input_dim"])
    except (TypeError, ValueError) as e:
        raise _bad(path, f"bad layer configuration ({e})") from None
    model.set_weights([reader.member(key).read(np.empty(shp, dtype), nonneg)
                       for key, shp, nonneg in members])
    if opt is not None:
        state = None
        if n_state is not None:
            state = [[reader.member(f"opt_state_{j}_{k}").read(np.empty(shp, dtype),
                                                               k in nonneg)
                      for k in range(n_state[0])] for j, shp in enumerate(shapes)]
        opt.set_state({"iterations": info["iterations"], "state": state})
    sets = [[reader.member(f"P{s}_{k}").read(np.empty(shp, dtype))
             for k, (_, shp, _) in enumerate(members)] for s in range(n_sets)]
    return model, opt, meta, sets


def load_model(path, optimizer=None, *, return_optimizer=False, max_bytes=None):
    """Read a model written by :meth:`Sequential.save`.

    Predictions of the loaded model are bit-identical to the saved one's.
    With ``optimizer`` (an :class:`~fastsgd.Optimizer`) its state and
    iteration count are set from the file. With ``return_optimizer=True``
    returns ``(model, optimizer)``: that optimizer, or one rebuilt from the
    file with its state (None if none was saved).

    ``max_bytes`` caps the total size of the arrays the file may declare
    (default ``$FASTSGD_MAX_MODEL_BYTES``, else :data:`MAX_MODEL_BYTES`).
    Raises ``ValueError`` naming the file for anything wrong in it (see the
    module documentation) and ``OSError`` when it cannot be opened.
    """
    return_optimizer = check_bool("return_optimizer", return_optimizer)
    model, opt, _, _ = _load(path, optimizer, rebuild_optimizer=return_optimizer,
                             max_bytes=max_bytes)
    if return_optimizer:
        return model, opt
    return model
