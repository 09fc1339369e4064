"""Saving and loading models.

Format: a NumPy ``.npz`` archive (a zip of ``.npy`` files) holding

* ``__fastsgd__``: UTF-8 JSON metadata as a uint8 array -- format name and
  version, dtype, input size, and each layer's configuration;
* ``W{i}``, ``b{i}``: the weights and bias of layer ``i``;
* optionally ``opt_state_{j}_{k}``: the optimizer's state (state array ``k``
  of parameter ``j``), with the optimizer's settings and iteration count in
  the metadata, so that a resumed run continues exactly.

Nothing is unpickled: files are read with ``allow_pickle=False`` and every
field is checked, so a truncated, corrupted or hostile file raises
``ValueError``. Files are written to a temporary file in the same folder and
renamed over the target, so a crash never leaves half a model behind.
"""
import io as _io
import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT = "fastsgd-model"
VERSION = 1
_META = "__fastsgd__"


def atomic_write(path, write):
    """Call ``write(fileobj)`` on a temporary file, then rename it to ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save_model(model, path, optimizer=None):
    """Write ``model`` (and optionally ``optimizer``'s state) to ``path`` atomically."""
    from .layers import Sequential
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a fastsgd.Sequential, got {type(model).__name__}")
    if not model.built:
        raise ValueError("the model has no weights yet (give input_dim or fit it first)")
    meta = {"format": FORMAT, "version": VERSION, "dtype": model.dtype.name,
            "input_dim": model.input_dim, "seed": model.seed,
            "layers": [layer.get_config() for layer in model.layers]}
    arrays = {}
    for i, layer in enumerate(model.layers):
        arrays[f"W{i}"] = layer.weights
        arrays[f"b{i}"] = layer.bias
    if optimizer is not None:
        st = optimizer.get_state()
        meta["optimizer"] = {"class": type(optimizer).__name__, "config": optimizer.get_config(),
                             "iterations": st["iterations"],
                             "n_state": None if st["state"] is None else [len(s) for s in st["state"]]}
        if st["state"] is not None:
            for j, per in enumerate(st["state"]):
                for k, s in enumerate(per):
                    arrays[f"opt_state_{j}_{k}"] = s
    arrays[_META] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _bad(path, why):
    return ValueError(f"{path!s} is not a valid fastsgd model file: {why}")


def _read(path):
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, KeyError, EOFError, RuntimeError,
            _io.UnsupportedOperation) as e:
        raise _bad(path, f"{type(e).__name__}: {e}") from None


def load_model(path, optimizer=None, *, return_optimizer=False):
    """Read a model written by :meth:`Sequential.save`.

    Predictions of the loaded model are bit-identical to the saved one's.
    With ``return_optimizer=True`` returns ``(model, optimizer)``: the
    optimizer rebuilt from the file with its state (None if none was saved).
    """
    from . import optimizers as _opt
    from .layers import Dense, Sequential
    path = os.fspath(path)
    data = _read(path)
    if _META not in data:
        raise _bad(path, "no fastsgd metadata")
    raw = data.pop(_META)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise _bad(path, "metadata has the wrong type")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(path, f"metadata is not JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _bad(path, "unknown format")
    if meta.get("version") != VERSION:
        raise _bad(path, f"unsupported version {meta.get('version')!r}")
    dtype = meta.get("dtype")
    if dtype not in ("float32", "float64"):
        raise _bad(path, f"bad dtype {dtype!r}")
    layers_cfg = meta.get("layers")
    if not isinstance(layers_cfg, list) or not layers_cfg:
        raise _bad(path, "no layers")
    allowed = {"units", "activation", "input_dim", "weight_init", "bias_init", "negative_slope",
               "l1", "l2"}
    layers = []
    try:
        for i, cfg in enumerate(layers_cfg):
            if not isinstance(cfg, dict) or not set(cfg) <= allowed:
                raise _bad(path, f"layer {i} has an unexpected configuration")
            cfg = dict(cfg)
            if i > 0:
                cfg.pop("input_dim", None)
            layers.append(Dense(**cfg))
        seed = meta.get("seed")
        model = Sequential(layers, dtype=dtype, seed=seed if isinstance(seed, int) else None)
    except (TypeError, ValueError) as e:
        if isinstance(e, ValueError) and "not a valid fastsgd model" in str(e):
            raise
        raise _bad(path, f"bad layer configuration ({e})") from None
    if not model.built:
        raise _bad(path, "the first layer has no input_dim")
    for i, layer in enumerate(model.layers):
        for key, ref in ((f"W{i}", layer.weights), (f"b{i}", layer.bias)):
            arr = data.get(key)
            if arr is None:
                raise _bad(path, f"missing array {key}")
            if arr.shape != ref.shape or arr.dtype != ref.dtype:
                raise _bad(path, f"{key} has shape {arr.shape} and dtype {arr.dtype}; expected "
                                 f"{ref.shape} and {ref.dtype}")
            if not np.isfinite(arr).all():
                raise _bad(path, f"{key} holds NaN or infinite values")
            ref[...] = arr
    opt = None
    info = meta.get("optimizer")
    if info is not None and (return_optimizer or optimizer is not None):
        try:
            if optimizer is None:
                cls = _opt.OPTIMIZERS.get(str(info["class"]).lower())
                if cls is None:
                    raise _bad(path, f"unknown optimizer {info['class']!r}")
                opt = cls(**info["config"])
            else:
                opt = optimizer
            n_state = info.get("n_state")
            state = None
            if n_state is not None:
                params = model.parameters()
                if len(n_state) != len(params):
                    raise _bad(path, "optimizer state does not match the layers")
                state = []
                for j, (cnt, p) in enumerate(zip(n_state, params)):
                    per = []
                    for k in range(int(cnt)):
                        s = data.get(f"opt_state_{j}_{k}")
                        if s is None or s.shape != p.shape or s.dtype != p.dtype:
                            raise _bad(path, f"optimizer state {j},{k} is missing or misshapen")
                        per.append(s)
                    state.append(per)
            opt.set_state({"iterations": int(info["iterations"]), "state": state})
        except (TypeError, KeyError) as e:
            raise _bad(path, f"bad optimizer record ({e})") from None
    if return_optimizer:
        return model, opt
    return model
