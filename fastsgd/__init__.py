"""fastsgd: fast, exact mini-batch SGD for dense neural networks on the CPU.

>>> import fastsgd
>>> model = fastsgd.Sequential([fastsgd.Dense(64, "sigmoid", input_dim=784),
...                             fastsgd.Dense(10, "softmax")], seed=0)
>>> model.count_params()
50890
"""
import os as _os

from . import _fork

_fork.note_before_kernels()
from . import _kernels  # noqa: E402
from ._kernels import get_num_threads, set_num_threads
from .callbacks import Callback, EarlyStopping, LambdaCallback, ModelCheckpoint
from .costs import BinaryCrossEntropy, Cost, CrossEntropy, MeanSquaredError
from .io import load_model
from .layers import Dense, Sequential
from .lr_finder import LRFinderResult, find_lr
from .optimizers import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop
from .schedules import (Constant, CosineDecay, ExponentialDecay, InverseTimeDecay,
                        LearningRateScheduler, ReduceLROnPlateau, StepDecay)
from .trainer import DivergenceWarning, History, Trainer

_fork.install(_kernels)

__version__ = "0.1.0"

__all__ = [
    "Dense", "Sequential", "Trainer", "History", "DivergenceWarning",
    "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Optimizer",
    "Cost", "MeanSquaredError", "CrossEntropy", "BinaryCrossEntropy",
    "Callback", "EarlyStopping", "ModelCheckpoint", "LambdaCallback",
    "LearningRateScheduler", "ReduceLROnPlateau", "Constant", "StepDecay", "ExponentialDecay",
    "InverseTimeDecay", "CosineDecay", "find_lr", "LRFinderResult",
    "load_model", "get_num_threads", "set_num_threads", "config", "show_config",
    "__version__",
]

#: names served on first use from modules with optional dependencies (not in
#: __all__, so that ``from fastsgd import *`` never needs scikit-learn)
_LAZY = {"MLPClassifier": "estimators", "MLPRegressor": "estimators", "onnx": None}


def __getattr__(name):
    # the scikit-learn estimators import scikit-learn only when first asked for
    if name in _LAZY:
        import importlib
        module = importlib.import_module(f".{_LAZY[name] or name}", __name__)
        value = module if _LAZY[name] is None else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def _apply_simd_env():
    want = _os.environ.get("FASTSGD_SIMD", "").strip().lower()
    if want:
        try:
            _kernels.set_simd(want)
        except ValueError as e:
            import warnings
            warnings.warn(f"FASTSGD_SIMD ignored: {e}", RuntimeWarning, stacklevel=2)


_apply_simd_env()


def config():
    """The build and run-time configuration, as a dict.

    ``forked_child`` is True in a process made by ``fork`` after fastsgd was
    imported, and ``threads_reason`` says where ``threads`` comes from (in a
    forked child: whether it was set to 1 because GNU libgomp is not
    fork-safe; see :mod:`fastsgd._fork`).
    """
    import numpy as np
    return {
        "version": __version__,
        "compiler": _kernels.compiler(),
        "openmp": _kernels.openmp_enabled(),
        "simd": _kernels.simd_path(),
        "simd_supported": _kernels.simd_supported(),
        "threads": get_num_threads(),
        "cpu_count": _kernels.cpu_count(),
        "numpy": np.__version__,
        **_fork.status(),
    }


def show_config():
    """Print :func:`config` (version, compiler, OpenMP, SIMD path, threads)."""
    for k, v in config().items():
        print(f"{k:>15}: {v}")
