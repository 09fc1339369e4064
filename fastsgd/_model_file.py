"""The model file's name, version and writer (the format is described in
:mod:`fastsgd.io`, which also reads it). Kept apart so that
:meth:`fastsgd.Sequential.save` writes files without importing the reader.
"""
import json
import os

import numpy as np

from ._files import atomic_write
from .optimizers import Optimizer

FORMAT = "fastsgd-model"
VERSION = 1
_META = "__fastsgd__"


class ModelFileError(ValueError):
    """A model file is truncated, corrupted, too large or not a fastsgd model."""


# -- writing -------------------------------------------------------------------
def write(model, path, optimizer=None, *, extra=None, param_sets=()):
    """Write a Sequential ``model`` (and optionally ``optimizer``'s state) to
    ``path`` atomically. ``extra`` (a JSON-able dict) and ``param_sets``
    (lists of arrays shaped like the model's parameters) are for
    :class:`fastsgd.BackupAndRestore`.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path-like, got {type(path).__name__}")
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a fastsgd Optimizer, got {type(optimizer).__name__}")
    if not model.built:
        raise ValueError("the model has no weights yet (give input_dim or fit it first)")
    meta = {"format": FORMAT, "version": VERSION, "dtype": model.dtype.name,
            "input_dim": model.input_dim, "seed": model.seed,
            "layers": [layer.get_config() for layer in model.layers]}
    if getattr(model, "rescaling", None) is not None:
        meta["rescaling"] = model.rescaling.get_config()
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
    if extra is not None:
        meta["extra"] = extra
    if param_sets:
        meta["param_sets"] = len(param_sets)
        for s, arrs in enumerate(param_sets):
            for k, a in enumerate(arrs):
                arrays[f"P{s}_{k}"] = a
    # allow_nan=False: never write what load_model would refuse to read
    arrays[_META] = np.frombuffer(json.dumps(meta, allow_nan=False).encode("utf-8"), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **arrays))
