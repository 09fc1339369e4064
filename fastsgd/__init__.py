"""fastsgd: fast, exact mini-batch SGD for dense neural networks on the CPU.

>>> import fastsgd
>>> model = fastsgd.Sequential([fastsgd.Dense(64, "sigmoid", input_dim=784),
...                             fastsgd.Dense(10, "softmax")], seed=0)
>>> model.count_params()
50890
"""
# ruff: noqa: E402  (the fork hooks note the threads before the kernels load)
import os as _os

from . import _fork

_fork.note_before_kernels()
from . import _config
from ._config import get_num_threads, set_num_threads
from ._info import config, show_config
from ._version import __version__
from .callbacks import BackupAndRestore, Callback, EarlyStopping, LambdaCallback, ModelCheckpoint
from .costs import (
    BinaryCrossEntropy,
    Cost,
    CrossEntropy,
    Huber,
    MeanAbsoluteError,
    MeanSquaredError,
    SparseCategoricalCrossEntropy,
)
from .io import load_model
from .layers import BatchNormalization, Dense, Dropout, Rescaling, Sequential
from .lr_finder import LRFinderResult, find_lr
from .optimizers import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop
from .schedules import (
    Constant,
    CosineDecay,
    ExponentialDecay,
    InverseTimeDecay,
    LearningRateScheduler,
    ReduceLROnPlateau,
    StepDecay,
)
from .trainer import DivergenceWarning, History, Trainer

_fork.install(_config)

__all__ = [
    "Dense", "Dropout", "BatchNormalization", "Rescaling", "Sequential", "Trainer", "History",
    "DivergenceWarning",
    "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Optimizer",
    "Cost", "MeanSquaredError", "CrossEntropy", "BinaryCrossEntropy", "MeanAbsoluteError", "Huber",
    "SparseCategoricalCrossEntropy",
    "Callback", "EarlyStopping", "ModelCheckpoint", "LambdaCallback", "BackupAndRestore",
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
            _config.set_simd(want)
        except ValueError as e:
            import warnings
            warnings.warn(f"FASTSGD_SIMD ignored: {e}", RuntimeWarning, stacklevel=2)


_apply_simd_env()
