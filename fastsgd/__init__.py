"""fastsgd: fast, exact mini-batch SGD for dense neural networks on the CPU.

>>> import fastsgd
>>> model = fastsgd.Sequential([fastsgd.Dense(64, "sigmoid", input_dim=784),
...                             fastsgd.Dense(10, "softmax")], seed=0)
>>> model.count_params()
50890
"""
import os as _os

from . import _config
from ._config import get_num_threads, set_num_threads
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
from .layers import BatchNormalization, Dense, Dropout, Sequential
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

__all__ = [
    "Dense", "Dropout", "BatchNormalization", "Sequential", "Trainer", "History", "DivergenceWarning",
    "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Optimizer",
    "Cost", "MeanSquaredError", "CrossEntropy", "BinaryCrossEntropy", "MeanAbsoluteError", "Huber",
    "SparseCategoricalCrossEntropy",
    "Callback", "EarlyStopping", "ModelCheckpoint", "LambdaCallback", "BackupAndRestore",
    "LearningRateScheduler", "ReduceLROnPlateau", "Constant", "StepDecay", "ExponentialDecay",
    "InverseTimeDecay", "CosineDecay", "find_lr", "LRFinderResult",
    "load_model", "get_num_threads", "set_num_threads", "config", "show_config",
    "__version__",
]


def _apply_simd_env():
    want = _os.environ.get("FASTSGD_SIMD", "").strip().lower()
    if want:
        try:
            _config.set_simd(want)
        except ValueError as e:
            import warnings
            warnings.warn(f"FASTSGD_SIMD ignored: {e}", RuntimeWarning, stacklevel=2)


_apply_simd_env()


def config():
    """The build and run-time configuration, as a dict."""
    import numpy as np
    return {
        "version": __version__,
        "compiler": _config.compiler(),
        "openmp": _config.openmp_enabled(),
        "simd": _config.simd_path(),
        "simd_supported": _config.simd_supported(),
        "threads": get_num_threads(),
        "cpu_count": _config.cpu_count(),
        "numpy": np.__version__,
    }


def show_config():
    """Print :func:`config` (version, compiler, OpenMP, SIMD path, threads)."""
    for k, v in config().items():
        print(f"{k:>15}: {v}")
