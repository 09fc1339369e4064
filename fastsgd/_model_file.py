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
#: version 2: each layer's configuration names its class (Dense, Dropout,
#: BatchNormalization) and batch normalization's arrays are stored; the
#: reader also takes version 1 files (Dense layers only)
VERSION = 2
_META = "__fastsgd__"


def weight_members(model):
    """``[(member name, array), ...]`` of ``model``'s arrays in Keras's
    ``get_weights`` order: ``W{i}``, ``b{i}`` for a Dense layer ``i``;
    ``gamma{i}``, ``beta{i}`` (those it has), ``moving_mean{i}``,
    ``moving_variance{i}`` for a BatchNormalization."""
    out = []
    for i, layer in enumerate(model.layers):
        if layer.kind == "dense":
            out += [(f"W{i}", layer.weights), (f"b{i}", layer.bias)]
        elif layer.kind == "batch_normalization":
            out += [(f"{name}{i}", getattr(layer, name)) for name, _ in layer.param_shapes()]
            out += [(f"moving_mean{i}", layer.moving_mean),
                    (f"moving_variance{i}", layer.moving_variance)]
    return out


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
            "layers": [{"class": type(layer).__name__, **layer.get_config()}
                       for layer in model.layers]}
    if getattr(model, "rescaling", None) is not None:
        meta["rescaling"] = model.rescaling.get_config()
    arrays = dict(weight_members(model))
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
