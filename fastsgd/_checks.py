"""Checks of the arrays handed to the compiled modules (one place, one wording).

Every compiled entry point validates its arrays with these while holding the
GIL, before any kernel runs.
"""
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def require(a, name, dtype=None, ndim=None, writeable=False):
    """``a`` if it is an aligned, C-contiguous float32/float64 ndarray.

    ``dtype`` asks for the same dtype as the other operands, ``ndim`` for a
    number of dimensions, ``writeable`` for an output.
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name} has dtype {a.dtype}; expected {np.dtype(dtype)} like the "
                        f"other operands")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not a.flags.aligned:
        raise ValueError(f"{name} is not aligned to its dtype (copy it, e.g. with np.array)")
    if writeable and not a.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    return a


def require_index(rows, n_stored, name):
    """``rows`` if it is a C-contiguous 1-D int64 array of indices into ``n_stored`` rows."""
    if not isinstance(rows, np.ndarray) or rows.dtype != np.int64 or rows.ndim != 1:
        raise TypeError(f"{name} must be a 1-D int64 numpy array")
    if not rows.flags.c_contiguous or not rows.flags.aligned:
        raise ValueError(f"{name} must be C-contiguous and aligned")
    if rows.size and (rows.min() < 0 or rows.max() >= n_stored):
        raise ValueError(f"{name} holds indices outside [0, {n_stored})")
    return rows


def require_disjoint(out, name, **inputs):
    """Refuse an output that shares memory with an input."""
    for other, arr in inputs.items():
        if arr is not None and np.may_share_memory(out, arr):
            raise ValueError(f"{name} must not share memory with {other}")


def real(name, value):
    """``value`` as a float if it is a real number (not a bool), TypeError naming it otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def code(name, value, table, what):
    """The C code of ``value`` in ``table`` (name -> code), ValueError naming it otherwise."""
    if not isinstance(value, str) or value not in table:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(table)}")
    return table[value]
