"""Argument checks shared by the public API (one place, one wording)."""
import math
import numbers

import numpy as np


def check_choice(name, value, choices):
    """Return ``value`` if it is one of ``choices`` (a dict or sequence of names)."""
    if not isinstance(value, str) or value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {valid}; got {value!r}")
    return value


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def check_int(name, value, minimum=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_float(name, value, *, low=None, high=None, low_open=False, high_open=False):
    """A finite real number within [low, high] (open ends when asked)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value >= high if high_open else value > high):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value}")
    return value


def check_weights(name, w, n):
    """Per-sample weights as a float64 (n,) copy: real, finite and non-negative."""
    w = as_ndarray(name, w, "a 1-D array of non-negative numbers")
    if w.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold numbers, got dtype {w.dtype}")
    w = np.array(w, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"{name} has shape {w.shape}, expected ({n},)")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"{name} must hold finite, non-negative numbers")
    return w


def as_ndarray(name, x, what):
    """``x`` as an ndarray (lists and tuples are converted); TypeError otherwise."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple)):
        return np.asarray(x)
    raise TypeError(f"{name} must be {what}, got {type(x).__name__}")


def as_float_matrix(name, X, dtype, n_features=None):
    """Validate a 2-D real array and return it C-contiguous in ``dtype``.

    Converts at most once (a C-contiguous array of the right dtype is used as
    it is). Rejects object, string, complex and boolean arrays, empty arrays,
    wrong feature counts and NaN or infinite values.
    """
    X = as_ndarray(name, X, "a 2-D numpy array")
    if X.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers (float or int), got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has no samples")
    if X.shape[1] == 0:
        raise ValueError(f"{name} has no features")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features per sample; the model takes {n_features}")
    X = np.ascontiguousarray(X, dtype=dtype)
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return X
