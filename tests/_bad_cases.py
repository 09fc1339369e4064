"""The bad-input table: every public function and kernel, fed what it must refuse.

Each :class:`_isolate.Case` says what one call must do: raise a documented
exception (``TypeError``/``ValueError``, ``OSError`` for a file that cannot
be opened, ``RuntimeError`` for a call out of order) whose message matches a
pattern naming the argument, or return normally (edge cases that are valid,
such as 0-size arrays). ``tests/test_bad_inputs.py`` runs the table in child
processes (see ``_isolate.py``), so a crash is a failure of its case, not of
the test run.

Cases that a failed call must not leave a mark on are wrapped with
:func:`untouched`: the model's weights (and the optimizer's step count) must
be exactly as before the call.
"""
import atexit
import gzip
import math
import os
import shutil
import struct
import tempfile

import numpy as np

import fastsgd
from fastsgd import kernels as K
from fastsgd.datasets import read_idx

from _isolate import Case

CASES = {}

#: the families the test file runs one child process each for
FAMILIES = ("kernels", "config", "layers", "trainer", "optimizers", "datasets")


def add(group, name, expect, match, fn, kind):
    case = Case(group, name, fn, expect, match, kind)
    if case.key in CASES:
        raise AssertionError(f"duplicate case {case.key}")
    CASES[case.key] = case


def family(case):
    return case.group.split(".")[0] if case.group.split(".")[0] in FAMILIES else {
        "set_num_threads": "config", "Dense": "layers", "Rescaling": "layers",
        "Sequential": "layers", "Dropout": "layers", "BatchNormalization": "layers",
        "Trainer": "trainer", "Huber": "trainer", "read_idx": "datasets",
    }.get(case.group.split(".")[0], "optimizers")


# ---- array factories (deterministic, tiny) ---------------------------------------------
def arr(shape, dtype=np.float64, start=0.0):
    n = math.prod(shape)
    return (np.arange(n, dtype=np.float64).reshape(shape) / 7.0 + start).astype(dtype)


def misaligned(shape, dtype=np.float64):
    """A C-contiguous, writeable array one byte off its dtype's alignment."""
    dtype = np.dtype(dtype)
    n = math.prod(shape)
    buf = bytearray(n * dtype.itemsize + 1)
    a = np.frombuffer(buf, dtype=dtype, count=n, offset=1).reshape(shape)
    a[...] = arr(shape, dtype)
    return a


def strided(shape, dtype=np.float64):
    """A non-contiguous view with the given shape (every other element of a row)."""
    if len(shape) == 1:
        return arr((shape[0] * 2,), dtype)[::2]
    big = arr((shape[0], shape[1] * 2) + tuple(shape[2:]), dtype)
    return big[:, ::2]


def readonly(a):
    a.flags.writeable = False
    return a


def labels(values):
    return np.asarray(values, dtype=np.int64)


# ---- the kernels: every array argument, mutated one at a time --------------------------
def _mutations(name, shape, dtype, role, first):
    """``(label, factory, expect, match, kind)`` for the bad variants of one array argument."""
    other = np.float32 if np.dtype(dtype) == np.float64 else np.float64
    n = rf"\b{name}\b"
    out = [
        ("a nested list", lambda: arr(shape, dtype).tolist(), TypeError,
         rf"{n} must be a numpy\.ndarray", "type"),
    ]
    if role != "out":  # out=None asks for a new array
        out.append(("None", lambda: None, TypeError, rf"{n} must be a numpy\.ndarray", "type"))
    for bad in (np.int32, np.int64, np.float16, np.complex128, np.bool_, object, ">f8", ">f4"):
        if name in ("y",) and bad is np.int64:
            continue  # int64 is y's label form (cases below)
        out.append((f"dtype {np.dtype(bad).str}", lambda bad=bad: arr(shape, np.float64).astype(bad),
                    TypeError, rf"{n} must be float32 or float64", "dtype"))
    if not first:
        out.append((f"dtype {np.dtype(other).name} mixed with {np.dtype(dtype).name}",
                    lambda: arr(shape, other), TypeError, rf"{n} has dtype", "dtype"))
    if shape[0] >= 2 and (len(shape) == 1 or shape[-1] >= 1):
        out.append(("non-contiguous", lambda: strided(shape, dtype), ValueError,
                    rf"{n} must be C-contiguous", "layout"))
    if len(shape) == 2 and shape[0] >= 2 and shape[1] >= 2:
        out.append(("Fortran order", lambda: np.asfortranarray(arr(shape, dtype)), ValueError,
                    rf"{n} must be C-contiguous", "layout"))
    out.append(("misaligned (offset=1)", lambda: misaligned(shape, dtype), ValueError,
                rf"{n} is not aligned", "layout"))
    if role in ("out", "inout"):
        out.append(("read-only", lambda: readonly(arr(shape, dtype)), ValueError,
                    rf"{n} must be writeable", "readonly"))
    if len(shape) == 2:
        out.append(("1-D", lambda: arr((math.prod(shape),), dtype), ValueError,
                    rf"{n} must be 2-D", "shape"))
        out.append(("3-D", lambda: arr(shape + (1,), dtype), ValueError, rf"{n} must be 2-D",
                    "shape"))
        out.append(("0-D", lambda: np.array(1.0, dtype), ValueError, rf"{n} must be 2-D", "shape"))
    elif len(shape) == 1 and role == "in1d":
        out.append(("2-D", lambda: arr((shape[0], 1), dtype), ValueError, rf"{n} must be 1-D",
                    "shape"))
    return out


def _index_mutations(name, n_stored, count):
    n = rf"\b{name}\b"
    return [
        ("int32", lambda: np.arange(count, dtype=np.int32), TypeError, rf"{n} must be a 1-D int64",
         "dtype"),
        ("uint64", lambda: np.arange(count, dtype=np.uint64), TypeError,
         rf"{n} must be a 1-D int64", "dtype"),
        ("float", lambda: np.arange(count, dtype=np.float64), TypeError,
         rf"{n} must be a 1-D int64", "dtype"),
        ("a list", lambda: list(range(count)), TypeError, rf"{n} must be a 1-D int64", "type"),
        ("2-D", lambda: np.arange(count, dtype=np.int64).reshape(count, 1), TypeError,
         rf"{n} must be a 1-D int64", "shape"),
        ("non-contiguous", lambda: (np.arange(2 * count, dtype=np.int64) % max(n_stored, 1))[::2],
         ValueError, rf"{n} must be C-contiguous", "layout"),
        ("misaligned", lambda: _misaligned_index(count, n_stored), ValueError,
         rf"{n} must be C-contiguous and aligned", "layout"),
        ("index == rows", lambda: labels([n_stored] * count), ValueError,
         rf"{n} holds indices outside", "range"),
        ("index -1", lambda: labels([-1] * count), ValueError, rf"{n} holds indices outside",
         "range"),
        ("index 2**62", lambda: labels([2 ** 62] * count), ValueError,
         rf"{n} holds indices outside", "range"),
        ("index -2**63", lambda: labels([-2 ** 63] * count), ValueError,
         rf"{n} holds indices outside", "range"),
        ("big-endian int64", lambda: np.arange(count, dtype=">i8"), TypeError,
         rf"{n} must be a 1-D int64", "dtype"),
    ]


def _misaligned_index(count, n_stored):
    buf = bytearray(8 * count + 1)
    a = np.frombuffer(buf, dtype=np.int64, count=count, offset=1)
    a[...] = np.arange(count) % max(n_stored, 1)
    return a


def kernel_table(group, call, spec, dtype, tag=""):
    """Cases for every array argument of ``call(**arrays)``.

    ``spec``: name -> (shape, role) with role "in", "in1d", "out", "inout" or
    "index:N" (int64 rows into N stored rows); the first entry sets the dtype.
    """
    def valid():
        d = {}
        for name, (shape, role) in spec.items():
            if role.startswith("index"):
                d[name] = np.arange(shape[0], dtype=np.int64) % int(role.split(":")[1])
            else:
                d[name] = arr(shape, dtype)
        return d

    tag = f"{tag}: " if tag else ""
    add(group, f"{tag}valid {np.dtype(dtype).name} call", None, None, lambda: call(**valid()),
        "valid")
    for i, (name, (shape, role)) in enumerate(spec.items()):
        if role.startswith("index"):
            muts = _index_mutations(name, int(role.split(":")[1]), shape[0])
        else:
            muts = _mutations(name, shape, dtype, role, first=i == 0)
        for label, make, expect, match, kind in muts:
            def fn(name=name, make=make):
                d = valid()
                d[name] = make()
                return call(**d)
            add(group, f"{tag}{name}: {label} ({np.dtype(dtype).name})", expect, match, fn, kind)


for _dt in (np.float64, np.float32):
    kernel_table("kernels.gemm", lambda a, b, out: K.gemm(a, b, out=out),
                 {"a": ((3, 4), "in"), "b": ((4, 5), "in"), "out": ((3, 5), "out")}, _dt)
    kernel_table("kernels.gemm", lambda a, b, a_rows: K.gemm(a, b, a_rows=a_rows),
                 {"a": ((6, 4), "in"), "b": ((4, 5), "in"), "a_rows": ((3,), "index:6")}, _dt,
                 "with a_rows")
    kernel_table("kernels.activation_forward", lambda z: K.activation_forward(z, "softmax"),
                 {"z": ((3, 4), "inout")}, _dt)
    kernel_table("kernels.activation_backward", lambda a, d: K.activation_backward(a, d, "tanh"),
                 {"a": ((3, 4), "in"), "d": ((3, 4), "inout")}, _dt)
    kernel_table("kernels.dense_forward", lambda x, w, b, out: K.dense_forward(x, w, b, "relu", out=out),
                 {"x": ((3, 4), "in"), "w": ((4, 2), "in"), "b": ((2,), "in1d"),
                  "out": ((3, 2), "out")}, _dt)
    kernel_table("kernels.dense_forward", lambda x, w, b, x_rows: K.dense_forward(x, w, b, x_rows=x_rows),
                 {"x": ((6, 4), "in"), "w": ((4, 2), "in"), "b": ((2,), "in1d"),
                  "x_rows": ((3,), "index:6")}, _dt, "with x_rows")
    kernel_table("kernels.dense_backward",
                 lambda x, w, a, d: K.dense_backward(x, w, a, d, "sigmoid"),
                 {"x": ((3, 4), "in"), "w": ((4, 2), "in"), "a": ((3, 2), "in"),
                  "d": ((3, 2), "inout")}, _dt)
    kernel_table("kernels.dense_backward",
                 lambda x, w, a, d, x_rows: K.dense_backward(x, w, a, d, x_rows=x_rows),
                 {"x": ((6, 4), "in"), "w": ((4, 2), "in"), "a": ((3, 2), "in"),
                  "d": ((3, 2), "inout"), "x_rows": ((3,), "index:6")}, _dt, "with x_rows")
    kernel_table("kernels.output_cost", lambda z, y: K.output_cost(z, y, "mse", "linear"),
                 {"z": ((3, 4), "inout"), "y": ((3, 4), "in")}, _dt)
    kernel_table("kernels.gather_rows", lambda x, rows, out: K.gather_rows(x, rows, out=out),
                 {"x": ((5, 3), "in"), "rows": ((4,), "index:5"), "out": ((4, 3), "out")}, _dt)
    kernel_table("kernels.update",
                 lambda p, g, s0, s1: K.update({"kind": "adam"}, p, g, [s0, s1]),
                 {"p": ((7,), "inout"), "g": ((7,), "in"), "s0": ((7,), "inout"),
                  "s1": ((7,), "inout")}, _dt)


def _rename_states():
    """The update cases above call the state slots s0/s1; the messages say states[k]."""
    for key in [k for k in CASES if k.startswith("kernels.update: s")]:
        c = CASES[key]
        if c.match:
            c.match = c.match.replace(r"\bs0\b", r"states\[0\]").replace(r"\bs1\b", r"states\[1\]")


_rename_states()


def kcase(group, name, expect, match, fn, kind):
    add(f"kernels.{group}", name, expect, match, fn, kind)


def _ok_equal(got, want, **kw):
    np.testing.assert_allclose(got, want, **kw)


# gemm: shapes, aliasing, scalars, 0-size and 1-size
kcase("gemm", "inner dimensions differ", ValueError, "inner dimensions differ",
      lambda: K.gemm(arr((3, 4)), arr((5, 2))), "shape")
kcase("gemm", "inner dimensions differ after trans_b", ValueError, "inner dimensions differ",
      lambda: K.gemm(arr((3, 4)), arr((4, 2)), trans_b=True), "shape")
kcase("gemm", "out of the wrong shape", ValueError, r"out has shape \(5, 3\), expected \(3, 5\)",
      lambda: K.gemm(arr((3, 4)), arr((4, 5)), out=arr((5, 3))), "shape")
kcase("gemm", "out aliases a", ValueError, "out must not share memory with a",
      lambda: (lambda a: K.gemm(a, arr((3, 3)), out=a))(arr((3, 3))), "alias")
kcase("gemm", "out aliases b", ValueError, "out must not share memory with b",
      lambda: (lambda b: K.gemm(arr((3, 3)), b, out=b))(arr((3, 3))), "alias")
kcase("gemm", "out overlaps a (a view)", ValueError, "out must not share memory with a",
      lambda: (lambda big: K.gemm(big[:3], arr((3, 3)), out=big[2:]))(arr((5, 3))), "alias")
kcase("gemm", "beta != 0 without out", ValueError, "beta != 0 needs an `out`",
      lambda: K.gemm(arr((3, 4)), arr((4, 5)), beta=1.0), "value")
for _v, _lbl in (("1", "a str"), (None, "None"), (True, "a bool"), (1j, "complex"),
                 (np.array([1.0, 2.0]), "an array")):
    kcase("gemm", f"alpha {_lbl}", TypeError, "alpha must be a real number",
          lambda v=_v: K.gemm(arr((3, 4)), arr((4, 5)), alpha=v), "type")
    kcase("gemm", f"beta {_lbl}", TypeError, "beta must be a real number",
          lambda v=_v: K.gemm(arr((3, 4)), arr((4, 5)), beta=v, out=arr((3, 5))), "type")
kcase("gemm", "M = 0", None, None,
      lambda: _ok_equal(K.gemm(arr((0, 4)), arr((4, 5))), np.zeros((0, 5))), "empty")
kcase("gemm", "N = 0", None, None,
      lambda: _ok_equal(K.gemm(arr((3, 4)), arr((4, 0))), np.zeros((3, 0))), "empty")
kcase("gemm", "K = 0 gives zeros", None, None,
      lambda: _ok_equal(K.gemm(arr((3, 0)), arr((0, 5))), np.zeros((3, 5))), "empty")
kcase("gemm", "K = 0, beta = 2 scales out", None, None,
      lambda: _ok_equal(K.gemm(arr((3, 0)), arr((0, 5)), beta=2.0, out=np.ones((3, 5))),
                        2 * np.ones((3, 5))), "empty")
kcase("gemm", "all 0", None, None, lambda: K.gemm(arr((0, 0)), arr((0, 0))), "empty")
kcase("gemm", "1 x 1 x 1", None, None,
      lambda: _ok_equal(K.gemm(np.full((1, 1), 3.0), np.full((1, 1), 2.0)), [[6.0]]), "empty")
kcase("gemm", "empty a_rows", None, None,
      lambda: _ok_equal(K.gemm(arr((4, 3)), arr((3, 2)), a_rows=labels([])), np.zeros((0, 2))),
      "empty")
kcase("gemm", "a_rows into 0 stored rows", ValueError, r"a_rows holds indices outside \[0, 0\)",
      lambda: K.gemm(arr((0, 3)), arr((3, 2)), a_rows=labels([0])), "range")
kcase("gemm", "a_rows with trans_a, out of range", ValueError, "a_rows holds indices outside",
      lambda: K.gemm(arr((4, 3)), arr((2, 5)), trans_a=True, a_rows=labels([0, 4])), "range")
kcase("gemm", "NaN in out with beta = 0 is not read", None, None,
      lambda: _ok_equal(K.gemm(np.eye(2), np.eye(2), out=np.full((2, 2), np.nan)), np.eye(2)),
      "value")
kcase("gemm", "a and b the same array (both read)", None, None,
      lambda: (lambda a: _ok_equal(K.gemm(a, a), a @ a))(arr((3, 3))), "alias")
kcase("gemm", "out as a numpy matrix", None, None,
      lambda: K.gemm(arr((2, 2)), arr((2, 2)), out=np.asmatrix(np.zeros((2, 2)))), "type")

# activations
for _fn, _args in (("activation_forward", lambda z: (z,)),
                   ("activation_backward", lambda z: (arr(z.shape), z))):
    kcase(_fn, "unknown activation", ValueError, "unknown activation 'swish'",
          lambda f=_fn, g=_args: getattr(K, f)(*g(arr((2, 3))), "swish"), "value")
    kcase(_fn, "activation None", ValueError, "unknown activation None",
          lambda f=_fn, g=_args: getattr(K, f)(*g(arr((2, 3))), None), "type")
    kcase(_fn, "activation 3", ValueError, "unknown activation 3",
          lambda f=_fn, g=_args: getattr(K, f)(*g(arr((2, 3))), 3), "type")
    kcase(_fn, "slope a str", TypeError, r"\bslope\b",
          lambda f=_fn, g=_args: getattr(K, f)(*g(arr((2, 3))), "leaky_relu", slope="x"), "type")
    kcase(_fn, "slope None", TypeError, r"\bslope\b",
          lambda f=_fn, g=_args: getattr(K, f)(*g(arr((2, 3))), "leaky_relu", slope=None), "type")
    for _act in ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "softmax"):
        for _shape in ((0, 4), (3, 0), (0, 0), (1, 1), (1, 5), (5, 1)):
            kcase(_fn, f"{_act} on shape {_shape}", None, None,
                  lambda f=_fn, g=_args, a=_act, s=_shape: getattr(K, f)(*g(arr(s)), a), "empty")
kcase("activation_backward", "a and d of different shapes", ValueError,
      r"a has shape \(2, 3\) but d has shape \(3, 2\)",
      lambda: K.activation_backward(arr((2, 3)), arr((3, 2)), "relu"), "shape")
kcase("activation_backward", "d is a", ValueError, "d must not share memory with a",
      lambda: (lambda a: K.activation_backward(a, a, "relu"))(arr((2, 3))), "alias")
kcase("activation_backward", "d overlaps a (a view)", ValueError, "d must not share memory with a",
      lambda: (lambda big: K.activation_backward(big[:2], big[1:], "tanh"))(arr((3, 3))), "alias")

# dense layer
kcase("dense_forward", "w rows != x columns", ValueError, "w has 5 rows but x has 4 columns",
      lambda: K.dense_forward(arr((3, 4)), arr((5, 2)), arr((2,))), "shape")
kcase("dense_forward", "w with no columns", ValueError, "w has no columns",
      lambda: K.dense_forward(arr((3, 4)), arr((4, 0)), arr((0,))), "empty")
kcase("dense_forward", "b of the wrong length", ValueError, "b has 3 entries but w has 2 columns",
      lambda: K.dense_forward(arr((3, 4)), arr((4, 2)), arr((3,))), "shape")
kcase("dense_forward", "out of the wrong shape", ValueError, r"out has shape \(2, 2\)",
      lambda: K.dense_forward(arr((3, 4)), arr((4, 2)), arr((2,)), out=arr((2, 2))), "shape")
kcase("dense_forward", "out aliases w", ValueError, "out must not share memory with w",
      lambda: (lambda w: K.dense_forward(arr((2, 2)), w, arr((2,)), out=w))(arr((2, 2))), "alias")
kcase("dense_forward", "out aliases x", ValueError, "out must not share memory with x",
      lambda: (lambda x: K.dense_forward(x, arr((2, 2)), arr((2,)), out=x))(arr((2, 2))), "alias")
kcase("dense_forward", "out overlaps b", ValueError, "out must not share memory with b",
      lambda: (lambda f: K.dense_forward(arr((1, 2)), arr((2, 2)), f[0], out=f[0:1]))(arr((1, 2))),
      "alias")
kcase("dense_forward", "unknown activation", ValueError, "unknown activation 'gelu'",
      lambda: K.dense_forward(arr((3, 4)), arr((4, 2)), arr((2,)), "gelu"), "value")
kcase("dense_forward", "slope a str", TypeError, r"\bslope\b",
      lambda: K.dense_forward(arr((3, 4)), arr((4, 2)), arr((2,)), "leaky_relu", slope="x"), "type")
kcase("dense_forward", "0 rows", None, None,
      lambda: K.dense_forward(arr((0, 4)), arr((4, 2)), arr((2,)), "softmax"), "empty")
kcase("dense_forward", "0 inputs: the bias alone", None, None,
      lambda: _ok_equal(K.dense_forward(arr((3, 0)), arr((0, 2)), np.array([1.0, -1.0]), "relu"),
                        [[1.0, 0.0]] * 3), "empty")
kcase("dense_forward", "1 x 1", None, None,
      lambda: _ok_equal(K.dense_forward(np.full((1, 1), 2.0), np.full((1, 1), 3.0), np.ones(1)),
                        [[7.0]]), "empty")
kcase("dense_forward", "empty x_rows", None, None,
      lambda: K.dense_forward(arr((4, 3)), arr((3, 2)), arr((2,)), x_rows=labels([])), "empty")
kcase("dense_backward", "a of the wrong shape", ValueError, r"a and d must have shape \(3, 2\)",
      lambda: K.dense_backward(arr((3, 4)), arr((4, 2)), arr((3, 3)), arr((3, 2))), "shape")
kcase("dense_backward", "d of the wrong shape", ValueError, r"a and d must have shape \(3, 2\)",
      lambda: K.dense_backward(arr((3, 4)), arr((4, 2)), arr((3, 2)), arr((2, 2))), "shape")
kcase("dense_backward", "a and d sized for x, not x_rows", ValueError,
      r"a and d must have shape \(2, 2\)",
      lambda: K.dense_backward(arr((3, 4)), arr((4, 2)), arr((3, 2)), arr((3, 2)),
                               x_rows=labels([0, 1])), "shape")
kcase("dense_backward", "d is a", ValueError, "d must not share memory with a",
      lambda: (lambda a: K.dense_backward(arr((3, 4)), arr((4, 2)), a, a))(arr((3, 2))), "alias")
kcase("dense_backward", "d is x", ValueError, "d must not share memory with x",
      lambda: (lambda x: K.dense_backward(x, arr((2, 2)), arr((2, 2)), x))(arr((2, 2))), "alias")
kcase("dense_backward", "d is w", ValueError, "d must not share memory with w",
      lambda: (lambda w: K.dense_backward(arr((2, 2)), w, arr((2, 2)), w))(arr((2, 2))), "alias")
kcase("dense_backward", "w rows != x columns", ValueError, "w has 3 rows but x has 4 columns",
      lambda: K.dense_backward(arr((3, 4)), arr((3, 2)), arr((3, 2)), arr((3, 2))), "shape")
kcase("dense_backward", "slope None", TypeError, r"\bslope\b",
      lambda: K.dense_backward(arr((3, 4)), arr((4, 2)), arr((3, 2)), arr((3, 2)), "leaky_relu",
                               slope=None), "type")
kcase("dense_backward", "0 rows", None, None,
      lambda: _ok_equal(K.dense_backward(arr((0, 4)), arr((4, 2)), arr((0, 2)), arr((0, 2)))[0],
                        np.zeros((4, 2))), "empty")
kcase("dense_backward", "0 inputs", None, None,
      lambda: K.dense_backward(arr((3, 0)), arr((0, 2)), arr((3, 2)), arr((3, 2)), "softmax"),
      "empty")
kcase("dense_backward", "need_dx=False", None, None,
      lambda: K.dense_backward(arr((3, 4)), arr((4, 2)), arr((3, 2)), arr((3, 2)), need_dx=False),
      "valid")

# the output layer and its cost
_oc = K.output_cost
kcase("output_cost", "unknown cost", ValueError, "unknown cost 'hinge'",
      lambda: _oc(arr((2, 3)), arr((2, 3)), "hinge", "linear"), "value")
kcase("output_cost", "cost None", ValueError, "unknown cost None",
      lambda: _oc(arr((2, 3)), arr((2, 3)), None, "linear"), "type")
kcase("output_cost", "unknown activation", ValueError, "unknown activation 'elu'",
      lambda: _oc(arr((2, 3)), arr((2, 3)), "mse", "elu"), "value")
kcase("output_cost", "cross_entropy without softmax", ValueError, "cross_entropy needs a softmax",
      lambda: _oc(arr((2, 3)), labels([0, 1]), "cross_entropy", "sigmoid"), "value")
kcase("output_cost", "binary_cross_entropy without sigmoid", ValueError,
      "binary_cross_entropy needs a sigmoid", lambda: _oc(arr((2, 1)), labels([0, 1]),
                                                           "binary_cross_entropy", "linear"), "value")
kcase("output_cost", "1-unit softmax with cross_entropy", ValueError,
      "cross_entropy needs at least two output units",
      lambda: _oc(arr((2, 1)), labels([0, 0]), "cross_entropy", "softmax"), "shape")
kcase("output_cost", "z with 0 rows", ValueError, "z has no rows",
      lambda: _oc(arr((0, 3)), labels([]), "cross_entropy", "softmax"), "empty")
kcase("output_cost", "z with 0 columns", ValueError, "z has no columns",
      lambda: _oc(arr((2, 0)), labels([0, 0]), "mse", "linear"), "empty")
kcase("output_cost", "float y with 0 columns", ValueError, "z has no columns",
      lambda: _oc(arr((2, 0)), arr((2, 0)), "mse", "linear"), "empty")
kcase("output_cost", "float y of the wrong shape", ValueError, r"y has shape \(2, 2\), expected",
      lambda: _oc(arr((2, 3)), arr((2, 2)), "mse", "linear"), "shape")
kcase("output_cost", "y is z", ValueError, "z must not share memory with y",
      lambda: (lambda z: _oc(z, z, "mse", "linear"))(arr((2, 3))), "alias")
for _cost, _act, _cols in (("cross_entropy", "softmax", 3), ("mse", "linear", 3),
                           ("binary_cross_entropy", "sigmoid", 3), ("mse", "sigmoid", 1),
                           ("binary_cross_entropy", "sigmoid", 1)):
    for _lab, _lbl in (([0, _cols], "label == units"), ([0, -1], "label -1"),
                       ([0, 2 ** 62], "label 2**62"), ([-2 ** 63, 0], "label -2**63"),
                       ([0, 2 ** 63 - 1], "label 2**63-1")):
        if _cols == 1 and _lab[1] == 1:
            continue
        kcase("output_cost", f"{_cost}/{_act} {_cols} units, {_lbl}", ValueError,
              "integer targets out of range",
              lambda c=_cost, a=_act, n=_cols, y=_lab: _oc(arr((2, n)), labels(y), c, a), "labels")
    kcase("output_cost", f"{_cost}/{_act} {_cols} units, labels of shape (2, 1)", ValueError,
          r"integer targets must have shape \(2,\)",
          lambda c=_cost, a=_act, n=_cols: _oc(arr((2, n)), labels([[0], [0]]), c, a), "labels")
    kcase("output_cost", f"{_cost}/{_act} {_cols} units, labels with 0 columns", ValueError,
          r"integer targets must have shape \(2,\)",
          lambda c=_cost, a=_act, n=_cols: _oc(arr((2, n)), np.zeros((2, 0), np.int64), c, a),
          "labels")
    kcase("output_cost", f"{_cost}/{_act} {_cols} units, too few labels", ValueError,
          r"integer targets must have shape \(2,\)",
          lambda c=_cost, a=_act, n=_cols: _oc(arr((2, n)), labels([0]), c, a), "labels")
    kcase("output_cost", f"{_cost}/{_act} {_cols} units, 1 row", None, None,
          lambda c=_cost, a=_act, n=_cols: _oc(arr((1, n)), labels([0]), c, a), "empty")
    kcase("output_cost", f"{_cost}/{_act} {_cols} units, non-contiguous labels", None, None,
          lambda c=_cost, a=_act, n=_cols: _oc(arr((2, n)), labels([0, 0, 0, 0])[::2], c, a),
          "layout")
    kcase("output_cost", f"{_cost}/{_act} {_cols} units, misaligned labels", None, None,
          lambda c=_cost, a=_act, n=_cols: _oc(arr((2, n)), _misaligned_index(2, 1), c, a),
          "layout")
kcase("output_cost", "int32 labels", TypeError, r"\by must be float32 or float64",
      lambda: _oc(arr((2, 3)), np.array([0, 1], np.int32), "cross_entropy", "softmax"), "dtype")
kcase("output_cost", "labels as a list", TypeError, r"\by must be a numpy\.ndarray",
      lambda: _oc(arr((2, 3)), [0, 1], "cross_entropy", "softmax"), "type")
kcase("output_cost", "NaN in z: the cost is NaN, no crash", None, None,
      lambda: _oc(np.full((2, 3), np.nan), labels([0, 1]), "cross_entropy", "softmax"), "value")
kcase("output_cost", "inf in z", None, None,
      lambda: _oc(np.full((2, 3), np.inf), labels([0, 1]), "cross_entropy", "softmax"), "value")

for _v, _e, _m in (("x", TypeError, r"\bdelta must be a real number"),
                  (None, TypeError, r"\bdelta must be a real number"),
                  (0.0, ValueError, r"\bdelta must be a finite number > 0"),
                  (-1.0, ValueError, r"\bdelta must be a finite number > 0"),
                  (math.nan, ValueError, r"\bdelta must be a finite number > 0"),
                  (math.inf, ValueError, r"\bdelta must be a finite number > 0")):
    kcase("output_cost", f"huber delta {_v!r}", _e, _m,
          lambda v=_v: _oc(arr((2, 3)), arr((2, 3)), "huber", "linear", delta=v), "value")
for _w, _lbl, _e, _m in (
        (lambda: np.ones(3), "of the wrong length", ValueError, r"sample_weight must have shape \(2,\)"),
        (lambda: np.ones((2, 1)), "2-D", ValueError, r"sample_weight must have shape \(2,\)"),
        (lambda: np.array([1.0, -1.0]), "negative", ValueError,
         r"sample_weight must hold finite, non-negative"),
        (lambda: np.array([1.0, np.nan]), "NaN", ValueError,
         r"sample_weight must hold finite, non-negative"),
        (lambda: np.array([1.0, np.inf]), "inf", ValueError,
         r"sample_weight must hold finite, non-negative"),
        (lambda: np.array([1e300, 1.0]), "1e300 into float32", ValueError,
         r"sample_weight must hold finite, non-negative"),
        (lambda: np.array(["a", "b"]), "strings", TypeError, r"sample_weight must hold real numbers"),
        (lambda: np.array([1j, 1j]), "complex", TypeError, r"sample_weight must hold real numbers"),
        (lambda: "ab", "a str", TypeError, r"sample_weight must hold real numbers"),
        (lambda: np.zeros(2), "all zero (the cost is 0)", None, None),
        (lambda: [1, 2], "a list of ints", None, None)):
    for _dt in (np.float32, np.float64):
        if "float32" in _lbl and _dt == np.float64:
            _e = _m = None  # 1e300 is a finite float64
        kcase("output_cost", f"sample_weight {_lbl} ({np.dtype(_dt).name})", _e, _m,
              lambda w=_w, dt=_dt: _oc(arr((2, 3), dt), labels([0, 2]), "cross_entropy", "softmax",
                                       sample_weight=w()), "value")
for _cost in ("mae", "huber"):
    for _act in ("linear", "relu", "softmax", "sigmoid"):
        kcase("output_cost", f"{_cost}/{_act} 3 units, label == units", ValueError,
              "integer targets out of range",
              lambda c=_cost, a=_act: _oc(arr((2, 3)), labels([0, 3]), c, a), "labels")
        kcase("output_cost", f"{_cost}/{_act} 1 x 1", None, None,
              lambda c=_cost, a=_act: _oc(arr((1, 1)), arr((1, 1)), c, a), "empty")

# gather
kcase("gather_rows", "out of the wrong shape", ValueError, r"out has shape \(2, 3\), expected \(4, 3\)",
      lambda: K.gather_rows(arr((5, 3)), labels([0, 1, 2, 3]), out=arr((2, 3))), "shape")
kcase("gather_rows", "out is x", ValueError, "out must not share memory with x",
      lambda: (lambda x: K.gather_rows(x, labels([1, 0]), out=x))(arr((2, 3))), "alias")
kcase("gather_rows", "out overlaps x (a view)", ValueError, "out must not share memory with x",
      lambda: (lambda x: K.gather_rows(x[:2], labels([1, 0]), out=x[1:]))(arr((3, 3))), "alias")
kcase("gather_rows", "0 columns", None, None,
      lambda: K.gather_rows(arr((3, 0)), labels([2, 0, 1, 1])), "empty")
kcase("gather_rows", "0 rows gathered from 0 rows", None, None,
      lambda: K.gather_rows(arr((0, 3)), labels([])), "empty")
kcase("gather_rows", "a row from 0 rows", ValueError, r"rows holds indices outside \[0, 0\)",
      lambda: K.gather_rows(arr((0, 3)), labels([0])), "range")

# dense rows into CSR: any real dtype the network reads, rows any stride apart
_d2c = K.dense_to_csr
for _bad in (np.complex128, np.bool_, np.float16, object, np.uint32, ">f8", ">i2"):
    kcase("dense_to_csr", f"x dtype {np.dtype(_bad).str}", TypeError, r"\bx must hold",
          lambda b=_bad: _d2c(arr((3, 4)).astype(b)), "dtype")
kcase("dense_to_csr", "x a nested list", TypeError, r"\bx must be a numpy\.ndarray",
      lambda: _d2c(arr((3, 4)).tolist()), "type")
kcase("dense_to_csr", "x None", TypeError, r"\bx must be a numpy\.ndarray", lambda: _d2c(None),
      "type")
for _shape in ((12,), (3, 4, 1), ()):
    kcase("dense_to_csr", f"x {len(_shape)}-D", ValueError, r"\bx must be 2-D",
          lambda s=_shape: _d2c(arr(s) if s else np.array(1.0)), "shape")
kcase("dense_to_csr", "x columns not contiguous", ValueError, r"\bx must have contiguous columns",
      lambda: _d2c(strided((3, 4))), "layout")
kcase("dense_to_csr", "x Fortran order", ValueError, r"\bx must have contiguous columns",
      lambda: _d2c(np.asfortranarray(arr((3, 4)))), "layout")
kcase("dense_to_csr", "x rows reversed", ValueError, r"\bx must have its rows in increasing",
      lambda: _d2c(arr((3, 4))[::-1]), "layout")
kcase("dense_to_csr", "x misaligned", ValueError, r"\bx is not aligned",
      lambda: _d2c(misaligned((3, 4))), "layout")
kcase("dense_to_csr", "x rows a view apart", None, None,
      lambda: _ok_equal(_d2c(arr((3, 6))[:, :4])[2], arr((3, 6))[:, :4][arr((3, 6))[:, :4] != 0]),
      "layout")
kcase("dense_to_csr", "x read-only int16", None, None,
      lambda: _ok_equal(_d2c(readonly(labels([[0, 3], [4, 0]]).astype(np.int16)))[2], [3, 4]),
      "readonly")
kcase("dense_to_csr", "x holds NaN in row 2", ValueError, r"NaN or infinite values \(row 2\)",
      lambda: _d2c(np.array([[0.0, 1.0], [2.0, 0.0], [0.0, math.nan]])), "value")
kcase("dense_to_csr", "x overflows float32 in row 1", ValueError, r"\(row 1\)",
      lambda: _d2c(np.array([[0.0], [1e300]]), "float32"), "value")
for _dt in ("int64", "float16", None, "f32", 3):
    kcase("dense_to_csr", f"dtype {_dt!r}", TypeError, r"\bdtype must be float32 or float64",
          lambda d=_dt: _d2c(arr((2, 2)), d), "dtype")
for _v, _exp in (("2", TypeError), (None, TypeError), (True, TypeError), (math.nan, ValueError),
                 (math.inf, ValueError)):
    kcase("dense_to_csr", f"scale {_v!r}", _exp, r"\bscale\b",
          lambda v=_v: _d2c(arr((2, 2)), "float64", v), "type" if _exp is TypeError else "value")
kcase("dense_to_csr", "0 rows", None, None,
      lambda: _ok_equal(_d2c(arr((0, 3)))[0], [0]), "empty")
kcase("dense_to_csr", "0 columns", None, None,
      lambda: _ok_equal(_d2c(arr((4, 0)))[0], [0] * 5), "empty")
kcase("dense_to_csr", "all zero", None, None,
      lambda: _ok_equal(_d2c(np.zeros((3, 5), np.uint8))[0], [0] * 4), "empty")

# one optimizer step
_p = lambda: arr((5,))  # noqa: E731
for _h, _lbl, _exp, _m in (
        ({"kind": "adamw"}, "unknown rule", ValueError, "unknown optimizer rule 'adamw'"),
        ({"kind": None}, "rule None", ValueError, "unknown optimizer rule None"),
        ({"lr": "x"}, "lr a str", TypeError, r"\blr\b"),
        ({"lr": None}, "lr None", TypeError, r"\blr\b"),
        ({"momentum": [0.9]}, "momentum a list", TypeError, r"\bmomentum\b"),
        ({"step": 2 ** 70}, "step 2**70", ValueError, r"\bstep\b"),
        ({"step": 1.5}, "step 1.5", TypeError, r"\bstep\b"),
        ({"step": "1"}, "step a str", TypeError, r"\bstep\b"),
        ({"l1": "x"}, "l1 a str", TypeError, r"\bl1\b"),
        ({"l2": None}, "l2 None", TypeError, r"\bl2\b")):
    kcase("update", f"hyper: {_lbl}", _exp, _m,
          lambda h=_h: K.update({"kind": "sgd", **h}, _p(), _p()), "value")
kcase("update", "hyper not a dict", TypeError, r"\bhyper\b",
      lambda: K.update([("kind", "sgd")], _p(), _p()), "type")
for _h, _n, _lbl in (({"kind": "sgd", "momentum": 0.9}, 0, "momentum"),
                     ({"kind": "adagrad"}, 0, "adagrad"),
                     ({"kind": "rmsprop"}, 0, "rmsprop"),
                     ({"kind": "rmsprop", "momentum": 0.5}, 1, "rmsprop with momentum"),
                     ({"kind": "rmsprop", "centered": True}, 1, "centered rmsprop"),
                     ({"kind": "adam"}, 1, "adam"),
                     ({"kind": "adam", "amsgrad": True}, 2, "amsgrad")):
    kcase("update", f"{_lbl} with {_n} state arrays", ValueError, r"\bstates\b",
          lambda h=_h, n=_n: K.update(h, _p(), _p(), [np.zeros(5) for _ in range(n)]), "shape")
kcase("update", "4 state arrays", ValueError, "at most 3 state slots",
      lambda: K.update({"kind": "adam"}, _p(), _p(), [np.zeros(5) for _ in range(4)]), "shape")
kcase("update", "states not iterable", TypeError, r"\bstates\b",
      lambda: K.update({"kind": "sgd"}, _p(), _p(), 3), "type")
kcase("update", "g of another shape", ValueError, r"g has shape \(4,\) but p has \(5,\)",
      lambda: K.update({"kind": "sgd"}, _p(), arr((4,))), "shape")
kcase("update", "a state of another shape", ValueError, r"states\[0\] has shape \(4,\)",
      lambda: K.update({"kind": "adagrad"}, _p(), _p(), [arr((4,))]), "shape")
kcase("update", "g is p", ValueError, "must not share memory",
      lambda: (lambda p: K.update({"kind": "sgd"}, p, p))(_p()), "alias")
kcase("update", "a state is p", ValueError, "must not share memory",
      lambda: (lambda p: K.update({"kind": "adagrad"}, p, _p(), [p]))(_p()), "alias")
kcase("update", "a state is g", ValueError, "must not share memory",
      lambda: (lambda g: K.update({"kind": "adagrad"}, _p(), g, [g]))(_p()), "alias")
kcase("update", "the same state array twice", ValueError, "must not share memory",
      lambda: (lambda s: K.update({"kind": "adam"}, _p(), _p(), [s, s]))(np.zeros(5)), "alias")
kcase("update", "p of 0 elements", None, None,
      lambda: K.update({"kind": "adam"}, arr((0,)), arr((0,)), [arr((0,)), arr((0,))]), "empty")
kcase("update", "p 2-D", None, None, lambda: K.update({"kind": "sgd"}, arr((2, 3)), arr((2, 3))),
      "valid")
kcase("update", "NaN gradient: refused, nothing written", None, None,
      lambda: (lambda p: (K.update({"kind": "sgd"}, p, np.full(5, np.nan)) is False
                          and np.array_equal(p, _p())) or _fail("written"))(_p()), "value")
kcase("update", "lr = inf: refused", None, None,
      lambda: K.update({"kind": "sgd", "lr": np.inf}, _p(), _p()) is False or _fail("stepped"),
      "value")


def _fail(what):
    raise AssertionError(what)


# ---- threads ----------------------------------------------------------------------------
for _v, _exp in ((0, ValueError), (-1, ValueError), (10 ** 6, ValueError), (257, ValueError),
                 (2 ** 64, ValueError), (True, TypeError), (False, TypeError), (1.0, TypeError),
                 (2.5, TypeError), ("2", TypeError), (None, TypeError), (np.float64(2), TypeError)):
    add("set_num_threads", f"n = {_v!r}", _exp, r"set_num_threads: n must",
        lambda v=_v: fastsgd.set_num_threads(v), "value" if _exp is ValueError else "type")
for _v in (1, 2, 256, np.int64(3), np.uint8(1)):
    add("set_num_threads", f"n = {_v!r} is accepted", None, None,
        lambda v=_v: (fastsgd.set_num_threads(v), K.gemm(arr((40, 30)), arr((30, 20)))), "valid")


# ---- layers --------------------------------------------------------------------------------
def _bad_numbers(group, name, make, *, low_ok=None, nan=True, integer=False, none_ok=False):
    """Cases for a numeric argument: wrong types, NaN/inf, below its minimum."""
    rows = [("a str", "3", TypeError), ("a list", [1], TypeError), ("complex", 1j, TypeError)]
    if not none_ok:
        rows.append(("None", None, TypeError))
    if integer:
        rows += [("a float", 2.0, TypeError), ("True", True, TypeError)]
    else:
        rows += [("True", True, TypeError)]
    if nan:
        rows += [("NaN", math.nan, TypeError if integer else ValueError),
                 ("inf", math.inf, TypeError if integer else ValueError)]
    if low_ok is not None:
        rows += [(f"below {low_ok}", low_ok - 1, ValueError)]
    for label, v, exp in rows:
        add(group, f"{name} {label}", exp, rf"\b{name}\b", lambda v=v: make(v),
            "type" if exp is TypeError else "value")


D = fastsgd.Dense
_bad_numbers("Dense", "units", lambda v: D(v), low_ok=1, integer=True)
add("Dense", "units 0", ValueError, r"\bunits must be >= 1", lambda: D(0), "value")
add("Dense", "units -5", ValueError, r"\bunits must be >= 1", lambda: D(-5), "value")
_bad_numbers("Dense", "input_dim", lambda v: D(3, input_dim=v), low_ok=1, integer=True, none_ok=True)
_bad_numbers("Dense", "negative_slope", lambda v: D(3, "leaky_relu", negative_slope=v), low_ok=0.0)
_bad_numbers("Dense", "l1", lambda v: D(3, l1=v), low_ok=0.0, none_ok=True)
_bad_numbers("Dense", "l2", lambda v: D(3, l2=v), low_ok=0.0, none_ok=True)
for _arg, _v in (("activation", "swish"), ("activation", None), ("activation", 1),
                 ("activation", "RELU"), ("weight_init", "orthogonal"), ("weight_init", None),
                 ("bias_init", "random"), ("bias_init", 0)):
    add("Dense", f"{_arg} {_v!r}", ValueError, rf"\b{_arg} must be one of",
        lambda a=_arg, v=_v: D(3, **{a: v}), "value")

_bad_numbers("Rescaling", "scale", lambda v: fastsgd.Rescaling(v))
_bad_numbers("Rescaling", "offset", lambda v: fastsgd.Rescaling(1.0, v))

_bad_numbers("Dropout", "rate", lambda v: fastsgd.Dropout(v), low_ok=0.0)
add("Dropout", "rate 1.0", ValueError, r"\brate must be < 1", lambda: fastsgd.Dropout(1.0), "value")
_bad_numbers("Dropout", "seed", lambda v: fastsgd.Dropout(0.5, seed=v), low_ok=0, integer=True,
             none_ok=True)
add("Dropout", "seed 2**64", ValueError, r"\bseed must be < 2\*\*64",
    lambda: fastsgd.Dropout(0.5, seed=2 ** 64), "value")
_BN = fastsgd.BatchNormalization
_bad_numbers("BatchNormalization", "momentum", lambda v: _BN(momentum=v), low_ok=0.0)
add("BatchNormalization", "momentum 1.0", ValueError, r"\bmomentum must be < 1",
    lambda: _BN(momentum=1.0), "value")
_bad_numbers("BatchNormalization", "epsilon", lambda v: _BN(epsilon=v), low_ok=0.0)
add("BatchNormalization", "epsilon 0", ValueError, r"\bepsilon must be > 0", lambda: _BN(epsilon=0.0),
    "value")
for _arg in ("center", "scale"):
    for _v in (1, "yes", None):
        add("BatchNormalization", f"{_arg} {_v!r}", TypeError, rf"\b{_arg} must be a bool",
            lambda a=_arg, v=_v: _BN(**{a: v}), "type")

S = fastsgd.Sequential
add("Sequential", "a Dropout last", ValueError, r"the last layer must be a Dense layer",
    lambda: S([D(2, input_dim=3), fastsgd.Dropout(0.5)]), "value")
add("Sequential", "a BatchNormalization last", ValueError, r"the last layer must be a Dense layer",
    lambda: S([D(2, input_dim=3), _BN()]), "value")
add("Sequential", "the same Dropout twice", ValueError, "the same layer object appears twice",
    lambda: (lambda d: S([D(2, input_dim=2), d, D(2), d, D(2)]))(fastsgd.Dropout(0.1)), "value")
add("Sequential", "a Dropout only", ValueError, r"the last layer must be a Dense layer",
    lambda: S([fastsgd.Dropout(0.1)]), "value")
add("Sequential", "no layers", ValueError, "layers must hold at least one Dense",
    lambda: S([]), "empty")
add("Sequential", "only a Rescaling", ValueError, "layers must hold at least one Dense",
    lambda: S([fastsgd.Rescaling(0.5)]), "empty")
add("Sequential", "Rescaling not first", ValueError, "Rescaling may only stand first",
    lambda: S([D(2, input_dim=3), fastsgd.Rescaling(0.5)]), "value")
add("Sequential", "a str among the layers", TypeError, r"layers\[1\] must be a fastsgd\.Dense",
    lambda: S([D(2, input_dim=3), "dense"]), "type")
add("Sequential", "None among the layers", TypeError, r"layers\[0\] must be a fastsgd\.Dense",
    lambda: S([None]), "type")
add("Sequential", "layers None", TypeError, r"\blayers\b", lambda: S(None), "type")
add("Sequential", "layers an int", TypeError, r"\blayers\b", lambda: S(3), "type")
add("Sequential", "the same Dense twice", ValueError, "the same layer object appears twice",
    lambda: (lambda d: S([D(2, input_dim=2), d, d]))(D(2)), "value")
add("Sequential", "input_dim mismatch between layers", ValueError,
    r"layers\[1\] has input_dim=4 but layers\[0\] has 3 units",
    lambda: S([D(3, input_dim=2), D(2, input_dim=4)]), "shape")
for _v in ("float16", "int32", np.int64, "complex64", "half", 3, "f8x"):
    add("Sequential", f"dtype {_v!r}", ValueError, r"dtype must be 'float32' or 'float64'",
        lambda v=_v: S([D(2, input_dim=2)], dtype=v), "dtype")
_bad_numbers("Sequential", "seed", lambda v: S([D(2, input_dim=2)], seed=v), low_ok=0, integer=True,
             none_ok=True)


def model(dtype="float32", n_in=3, units=(4, 2), acts=("tanh", "softmax"), seed=0, rescale=None):
    layers = [D(units[0], acts[0], input_dim=n_in)] + [D(u, a) for u, a in zip(units[1:], acts[1:])]
    if rescale is not None:
        layers.insert(0, fastsgd.Rescaling(*rescale))
    return S(layers, dtype=dtype, seed=seed)


def untouched(m, fn, trainer=None):
    """Run ``fn``; whatever it raises, ``m``'s weights (and the optimizer's
    step count) must be exactly as before -- then re-raise."""
    before = [w.copy() for w in m.get_weights()] if m.built else None
    iters = trainer.optimizer.iterations if trainer is not None else None
    try:
        return fn()
    except BaseException:
        if before is not None:
            after = m.get_weights()
            if not all(np.array_equal(a, b) for a, b in zip(before, after)):
                raise AssertionError("the weights changed")
        if trainer is not None and trainer.optimizer.iterations != iters:
            raise AssertionError("the optimizer's step count changed")
        raise


def csr(shape, density=0.5, dtype=np.float64, seed=0):
    import scipy.sparse
    return scipy.sparse.random(*shape, density=density, format="csr", dtype=dtype,
                               random_state=seed)


class Rows:
    """A row-indexable dataset of our own (h5py-like): X[sorted_indices]."""

    def __init__(self, data, shape=None, dtype=None, result=None):
        self.data = data
        self.shape = data.shape if shape is None else shape
        self.dtype = data.dtype if dtype is None else dtype
        self.result = result

    def __getitem__(self, idx):
        return self.data[idx] if self.result is None else self.result(idx)


def _x_cases(group, call, *, n_in=3, dtype="float32"):
    """Bad X for a call taking ``call(model, X)``: types, shapes, values."""
    rows = [
        ("None", lambda: None, TypeError, r"\bX must be"),
        ("a str", lambda: "data.npy", TypeError, r"\bX must be"),
        ("a dict", lambda: {"x": 1}, TypeError, r"\bX must be"),
        ("strings", lambda: np.array([["a"] * n_in] * 4), TypeError, r"\bX must hold real numbers"),
        ("objects", lambda: np.empty((4, n_in), object), TypeError, r"\bX must hold real numbers"),
        ("complex", lambda: arr((4, n_in), np.complex128), TypeError, r"\bX must hold real numbers"),
        ("bool", lambda: np.ones((4, n_in), bool), TypeError, r"\bX must hold real numbers"),
        ("datetime", lambda: np.zeros((4, n_in), "datetime64[s]"), TypeError,
         r"\bX must hold real numbers"),
        ("1-D", lambda: arr((n_in,)), ValueError, r"\bX must be 2-D"),
        ("3-D", lambda: arr((4, n_in, 1)), ValueError, r"\bX must be 2-D"),
        ("0 rows", lambda: arr((0, n_in)), ValueError, r"\bX is empty"),
        ("0 columns", lambda: arr((4, 0)), ValueError, r"\bX has no features"),
        ("too few columns", lambda: arr((4, n_in - 1)), ValueError,
         rf"\bX has {n_in - 1} features per sample; the model takes {n_in}"),
        ("too many columns", lambda: arr((4, n_in + 2)), ValueError,
         rf"\bX has {n_in + 2} features per sample"),
        ("NaN (model dtype, read in place)", lambda: _with(arr((6, n_in), dtype), (4, 1), np.nan),
         ValueError, r"\bX contains NaN or infinite values \(row 4\)"),
        ("inf (model dtype)", lambda: _with(arr((6, n_in), dtype), (0, 0), -np.inf), ValueError,
         r"\bX contains NaN or infinite values \(row 0\)"),
        ("NaN (other dtype, converted per batch)",
         lambda: _with(arr((6, n_in), np.float16), (5, 2), np.nan), ValueError,
         r"\bX row 5 contains NaN or infinite values"),
        ("NaN in a non-contiguous view", lambda: _with(strided((6, n_in), dtype), (3, 0), np.nan),
         ValueError, r"\bX row 3 contains NaN"),
        ("big-endian with inf", lambda: _with(arr((6, n_in), ">f8"), (2, 2), np.inf), ValueError,
         r"\bX row 2 contains NaN"),
        ("float64 too large for float32", lambda: _with(arr((6, n_in)), (1, 1), 1e300), ValueError,
         r"\bX row 1 contains NaN or infinite") if dtype == "float32" else None,
        ("sparse of the wrong width", lambda: csr((5, n_in + 1)), ValueError,
         rf"\bX has {n_in + 1} features per sample"),
        ("sparse with 0 rows", lambda: csr((0, n_in)), ValueError, r"\bX is empty"),
        ("sparse with NaN", lambda: _sparse_with(csr((5, n_in), density=1.0), np.nan), ValueError,
         r"\bX contains NaN"),
        ("sparse complex", lambda: csr((5, n_in), dtype=np.complex128), TypeError,
         r"\bX must hold real numbers"),
        ("sparse with a corrupt indptr", lambda: _corrupt_indptr(csr((5, n_in), density=1.0)),
         ValueError, r"\bX is not a valid CSR matrix"),
        ("sparse with a short indptr", lambda: _short_indptr(csr((5, n_in), density=1.0)),
         ValueError, r"\bX is not a valid CSR matrix"),
        ("COO with a row index out of range", lambda: _coo_bad_row(csr((5, n_in), density=1.0)),
         ValueError, r"\bX is not a valid COO matrix \(row holds indices outside"),
        ("CSC with a short indptr", lambda: _csc_short_indptr(csr((5, n_in), density=1.0)),
         ValueError, r"\bX is not a valid CSC matrix \(indptr has"),
        ("CSR with a column index out of range", lambda: _csr_bad_index(csr((5, n_in), density=1.0)),
         ValueError, r"\bX is not a valid CSR matrix \(indices outside"),
        ("sparse with a short data array", lambda: _short_data(csr((5, n_in), density=1.0)),
         ValueError, r"\bX is not a valid CSR matrix"),
        ("rows object of the wrong width", lambda: Rows(arr((5, n_in + 1))), ValueError,
         r"\bX has \d+ features per sample"),
        ("rows object of strings", lambda: Rows(arr((5, n_in)), dtype=np.dtype("U3")), TypeError,
         r"\bX must hold real numbers"),
        ("rows object returning the wrong shape", lambda: Rows(arr((5, n_in)),
                                                               result=lambda i: arr((1, n_in))),
         ValueError, r"X\[rows\] returned shape"),
        ("rows object returning strings", lambda: Rows(arr((5, n_in)),
                                                       result=lambda i: np.full((len(i), n_in), "a")),
         TypeError, r"\bX rows have dtype"),
        ("rows object returning NaN", lambda: Rows(arr((5, n_in)),
                                                   result=lambda i: np.full((len(i), n_in), np.nan)),
         ValueError, r"\bX row \d contains NaN"),
        ("rows object with a negative shape", lambda: Rows(arr((5, n_in)), shape=(-5, n_in)),
         ValueError, r"\bX\b"),
        ("rows object with a 1-D shape", lambda: Rows(arr((5, n_in)), shape=(5,)), ValueError,
         r"\bX must be 2-D"),
        ("rows object with a float shape", lambda: Rows(arr((5, n_in)), shape=(5.0, n_in)),
         (TypeError, ValueError), r"\bX\b"),
    ]
    for row in rows:
        if row is None:
            continue
        label, make, exp, match = row
        add(group, f"X {label}", exp, match, lambda make=make: call(make()),
            "type" if exp is TypeError else ("shape" if "wrong" in label or "D" in label else "value"))


def _with(a, where, value):
    a = np.array(a) if not a.flags.writeable else a
    a[where] = value
    return a


def _sparse_with(m, value):
    m.data[len(m.data) // 2] = value
    return m


def _corrupt_indptr(m):
    m.indptr[2] = m.indptr[-1] + 50   # a row that runs past the nonzeros
    return m


def _short_indptr(m):
    m.indptr = m.indptr[:-2].copy()
    m.indices = m.indices[:m.indptr[-1]].copy()
    m.data = m.data[:m.indptr[-1]].copy()
    return m


def _coo_bad_row(m):
    m = m.tocoo()
    m.row[2] = 10 ** 6
    return m


def _csc_short_indptr(m):
    m = m.tocsc()
    m.indptr = m.indptr[:-1].copy()
    return m


def _csr_bad_index(m):
    m.indices[1] = 2 ** 30
    return m


def _short_data(m):
    m.data = m.data[:-3].copy()
    return m


# predict (and set_weights)
_x_cases("Sequential.predict", lambda X: untouched(m := model(), lambda: m.predict(X)))
add("Sequential.predict", "sparse with a Rescaling offset", ValueError,
    r"\bX is sparse: Rescaling with an offset",
    lambda: model(rescale=(0.5, 1.0)).predict(csr((4, 3))), "value")
for _v in (0, -1, 1.5, "8", None, True):
    add("Sequential.predict", f"batch_size {_v!r}", TypeError if not isinstance(_v, int) or
        isinstance(_v, bool) else ValueError, r"\bbatch_size\b",
        lambda v=_v: model().predict(arr((4, 3), np.float32), batch_size=v), "value")
add("Sequential.predict", "batch_size 1 on 1 row", None, None,
    lambda: model().predict(arr((1, 3)), batch_size=1), "empty")
add("Sequential.predict", "batch_size 10**12", None, None,
    lambda: model().predict(arr((5, 3)), batch_size=10 ** 12), "value")
add("Sequential.predict", "unbuilt model fed a width-0 X", ValueError, r"\bX has no features",
    lambda: S([D(2)]).predict(arr((3, 0))), "shape")
add("Sequential.predict", "1-unit softmax on 1 row", None, None,
    lambda: _ok_equal(model(units=(4, 1)).predict(arr((1, 3))), [[1.0]]), "empty")


def _set(ws, dtype="float32"):
    m = model(dtype)
    return untouched(m, lambda: m.set_weights(ws(m)))


_sw = "Sequential.set_weights"
add(_sw, "too few arrays", ValueError, "expected 4 arrays, got 3", lambda: _set(lambda m: m.get_weights()[:3]),
    "shape")
add(_sw, "too many arrays", ValueError, "expected 4 arrays, got 5",
    lambda: _set(lambda m: m.get_weights() + [np.zeros(2)]), "shape")
add(_sw, "weights None", TypeError, r"\bweights\b", lambda: _set(lambda m: None), "type")
add(_sw, "a transposed matrix", ValueError, r"weights\[0\] must have shape \(3, 4\), got \(4, 3\)",
    lambda: _set(lambda m: [m.get_weights()[0].T] + m.get_weights()[1:]), "shape")
add(_sw, "a bias of the wrong length", ValueError, r"weights\[3\] must have shape \(2,\)",
    lambda: _set(lambda m: m.get_weights()[:3] + [np.zeros(3)]), "shape")
add(_sw, "NaN in the last array: nothing written", ValueError, r"weights\[3\] contains NaN",
    lambda: _set(lambda m: [w + 1 for w in m.get_weights()[:3]] + [np.array([0.0, np.nan])]),
    "value")
add(_sw, "inf", ValueError, r"weights\[1\] contains NaN or infinite",
    lambda: _set(lambda m: [w if i != 1 else np.full(4, np.inf) for i, w in enumerate(m.get_weights())]),
    "value")
add(_sw, "1e300 into float32", ValueError, r"weights\[0\] contains NaN or infinite values \(or values too large",
    lambda: _set(lambda m: [np.full((3, 4), 1e300)] + m.get_weights()[1:]), "value")
add(_sw, "strings", TypeError, r"weights\[0\] must hold real numbers",
    lambda: _set(lambda m: [np.full((3, 4), "a")] + m.get_weights()[1:]), "dtype")
add(_sw, "complex", TypeError, r"weights\[2\] must hold real numbers",
    lambda: _set(lambda m: m.get_weights()[:2] + [np.ones((4, 2), complex), np.zeros(2)]), "dtype")
add(_sw, "nested lists (converted)", None, None,
    lambda: _set(lambda m: [w.tolist() for w in m.get_weights()]), "valid")
add(_sw, "integers (converted)", None, None,
    lambda: _set(lambda m: [np.zeros(w.shape, np.int64) for w in m.get_weights()]), "valid")
add(_sw, "a negative moving variance", ValueError, r"moving_variance\) must not be negative",
    lambda: (lambda m: untouched(m, lambda: m.set_weights(
        [w if i != 5 else -np.ones_like(w) for i, w in enumerate(m.get_weights())])))(
        S([D(4, input_dim=3), _BN(), D(2, "softmax")])), "value")
add("Sequential.predict", "sparse X into a BatchNormalization first layer", ValueError,
    r"sparse",
    lambda: S([_BN(), D(2, "softmax")]).predict(csr((4, 3))), "value")
add(_sw, "on an unbuilt model", RuntimeError, "the model has no weights yet",
    lambda: S([D(2)]).set_weights([]), "value")


# ---- the Trainer ---------------------------------------------------------------------------
T = fastsgd.Trainer


_tc = "Trainer"
add(_tc, "model None", TypeError, r"model must be a fastsgd\.Sequential",
    lambda: T(None, "mse", "sgd"), "type")
add(_tc, "model a Dense", TypeError, r"model must be a fastsgd\.Sequential",
    lambda: T(D(2, input_dim=2), "mse", "sgd"), "type")
for _c in ("hinge", None, 3, "MSE"):
    add(_tc, f"cost {_c!r}", ValueError, r"cost must be one of", lambda c=_c: T(model(), c, "sgd"),
        "value")
add(_tc, "cross_entropy on a sigmoid output", ValueError, "cost 'cross_entropy' needs a softmax",
    lambda: T(model(acts=("tanh", "sigmoid")), "cross_entropy", "sgd"), "value")
add(_tc, "binary_cross_entropy on a softmax output", ValueError,
    "cost 'binary_cross_entropy' needs a sigmoid", lambda: T(model(), "binary_cross_entropy", "sgd"),
    "value")
add(_tc, "cross_entropy on a 1-unit softmax", ValueError, r"cross_entropy.*two output units",
    lambda: T(model(units=(4, 1)), "cross_entropy", "sgd"), "shape")
for _o in ("adamax", None, 0.1, fastsgd.Dense(2)):
    add(_tc, f"optimizer {_o!r}", ValueError, r"optimizer must be one of",
        lambda o=_o: T(model(), "mse", o), "value")
for _arg in ("batch_size", "chunk_rows", "buffer_chunks", "shuffle_buffer"):
    _bad_numbers(_tc, _arg, lambda v, a=_arg: T(model(), "mse", "sgd", **{a: v}), low_ok=1,
                 integer=True)
_bad_numbers(_tc, "seed", lambda v: T(model(), "mse", "sgd", seed=v), low_ok=0, integer=True,
             none_ok=True)
for _v in ("yes", 1, None, "chunk"):
    add(_tc, f"shuffle {_v!r}", TypeError, r"\bshuffle must be a bool",
        lambda v=_v: T(model(), "mse", "sgd", shuffle=v), "type")
for _v, _exp in (("yes", ValueError), ("AUTO", ValueError), (1, TypeError), (None, TypeError),
                 (0.3, TypeError)):
    add(_tc, f"sparse_input {_v!r}", _exp, r"\bsparse_input must be 'auto', True or False",
        lambda v=_v: T(model(), "mse", "sgd", sparse_input=v),
        "type" if _exp is TypeError else "value")

_X = lambda n=8, dtype=np.float32: arr((n, 3), dtype) - 0.5  # noqa: E731
_Y = lambda n=8: labels(np.arange(n) % 2)  # noqa: E731


def _fit(X, y=None, m=None, cost="cross_entropy", opt=None, t_kw=None, **kw):
    m = model() if m is None else m
    tr = T(m, cost, opt if opt is not None else fastsgd.SGD(0.1), **(t_kw or {}))
    kw.setdefault("verbose", 0)
    return untouched(m, lambda: tr.fit(X, y, **kw), tr)


def _partial(X, y=None, m=None, cost="cross_entropy"):
    m = model() if m is None else m
    tr = T(m, cost, fastsgd.SGD(0.1))
    return untouched(m, lambda: tr.partial_fit(X, y), tr)


def _evaluate(X, y, m=None, cost="cross_entropy", **kw):
    m = model() if m is None else m
    return untouched(m, lambda: T(m, cost, "sgd").evaluate(X, y, **kw))


def _gradients(X, y, m=None, cost="cross_entropy"):
    m = model() if m is None else m
    return untouched(m, lambda: T(m, cost, "sgd").gradients(X, y))


for _g, _call in (("Trainer.fit", lambda X: _fit(X, _Y(_n_rows(X)))),
                  ("Trainer.partial_fit", lambda X: _partial(X, _Y(_n_rows(X)))),
                  ("Trainer.evaluate", lambda X: _evaluate(X, _Y(_n_rows(X)))),
                  ("Trainer.gradients", lambda X: _gradients(X, _Y(_n_rows(X))))):
    _x_cases(_g, _call)


def _n_rows(X):
    try:
        n = int(X.shape[0]) if hasattr(X, "shape") and len(X.shape) else 4
    except (TypeError, ValueError):
        n = 4
    return max(n, 0)


def _y_cases(group, call):
    """Bad targets for ``call(y, cost, units)`` with 8 rows of X."""
    rows = [
        ("None", lambda: None, "cross_entropy", 2, TypeError, r"\by must be a numpy array"),
        ("a str", lambda: "labels", "cross_entropy", 2, TypeError, r"\by must be a numpy array"),
        ("strings", lambda: np.array(["a"] * 8), "cross_entropy", 2, TypeError,
         r"\by must hold numbers"),
        ("bool", lambda: np.ones(8, bool), "cross_entropy", 2, TypeError, r"\by must hold numbers"),
        ("complex", lambda: np.ones(8, complex), "cross_entropy", 2, TypeError,
         r"\by must hold numbers"),
        ("0-D", lambda: np.int64(1), "cross_entropy", 2, (TypeError, ValueError), r"\by\b"),
        ("3-D", lambda: np.zeros((8, 2, 1)), "cross_entropy", 2, ValueError,
         r"\by must be 1-D \(labels\) or 2-D"),
        ("too few rows", lambda: _Y(7), "cross_entropy", 2, ValueError,
         r"\by has 7 samples but X has 8"),
        ("too many rows", lambda: _Y(9), "cross_entropy", 2, ValueError,
         r"\by has 9 samples but X has 8"),
        ("label == units", lambda: labels([0] * 7 + [2]), "cross_entropy", 2, ValueError,
         r"\by holds labels outside 0\.\.1"),
        ("label -1", lambda: labels([0] * 7 + [-1]), "cross_entropy", 2, ValueError,
         r"\by holds labels outside 0\.\.1"),
        ("label 2**62", lambda: labels([0] * 7 + [2 ** 62]), "cross_entropy", 2, ValueError,
         r"\by holds labels outside"),
        ("label -2**63", lambda: labels([-2 ** 63] + [0] * 7), "cross_entropy", 2, ValueError,
         r"\by holds labels outside"),
        ("uint64 label 2**64-1", lambda: np.array([0] * 7 + [2 ** 64 - 1], np.uint64),
         "cross_entropy", 2, ValueError, r"\by holds labels outside"),
        ("uint8 label 255", lambda: np.array([0] * 7 + [255], np.uint8), "cross_entropy", 2,
         ValueError, r"\by holds labels outside"),
        ("float labels for cross_entropy", lambda: np.zeros(8), "cross_entropy", 2, TypeError,
         r"\by must hold integer class labels"),
        ("one-hot of the wrong width", lambda: np.eye(3)[np.arange(8) % 3], "cross_entropy", 2,
         ValueError, r"\by has 3 columns, the output layer has 2 units"),
        ("0 columns", lambda: np.zeros((8, 0)), "cross_entropy", 2, ValueError,
         r"\by has 0 columns"),
        ("0 columns, integer", lambda: np.zeros((8, 0), np.int64), "mse", 2, ValueError,
         r"\by has 0 columns"),
        ("NaN in one-hot rows", lambda: _with(np.eye(2)[np.arange(8) % 2], (3, 1), np.nan),
         "cross_entropy", 2, ValueError, r"\by contains NaN or infinite"),
        ("NaN in regression targets", lambda: _with(np.zeros((8, 2)), (7, 0), np.nan), "mse", 2,
         ValueError, r"\by contains NaN or infinite"),
        ("inf, 1-D, 1 unit", lambda: _with(np.zeros(8), 2, np.inf), "mse", 1, ValueError,
         r"\by contains NaN or infinite"),
        ("1e300 into float32", lambda: np.full((8, 2), 1e300), "mse", 2, ValueError,
         r"\by contains NaN or infinite"),
        ("1-D floats for 2 units", lambda: np.zeros(8), "mse", 2, ValueError,
         r"\by is 1-D with non-integer values"),
        ("binary targets above 1", lambda: np.full((8, 2), 1.5), "binary_cross_entropy", 2,
         ValueError, r"\by must lie in \[0, 1\]"),
        ("binary labels 2 for 1 unit", lambda: labels([0] * 7 + [2]), "binary_cross_entropy", 1,
         ValueError, r"\by holds labels outside 0\.\.1"),
        ("binary labels -1 for 3 units", lambda: labels([0] * 7 + [-1]), "binary_cross_entropy",
         3, ValueError, r"\by holds labels outside"),
        ("label 5 for a 1-unit MSE model is a target, not a class", lambda: labels([5] * 8),
         "mse", 1, None, None),
        ("labels as (8, 1) for 1 unit", lambda: np.zeros((8, 1)), "mse", 1, None, None),
        ("labels as a list", lambda: [0, 1] * 4, "cross_entropy", 2, None, None),
    ]
    for label, make, cost, units, exp, match in rows:
        add(group, f"y {label} ({cost}, {units} units)", exp, match,
            lambda make=make, c=cost, u=units: call(make(), c, u),
            "labels" if "label" in label else ("type" if exp is TypeError else "value"))


_acts = {"cross_entropy": "softmax", "mse": "linear", "binary_cross_entropy": "sigmoid"}
for _g, _call in (
        ("Trainer.fit", lambda y, c, u: _fit(_X(), y, model(units=(4, u), acts=("tanh", _acts[c])), c)),
        ("Trainer.partial_fit",
         lambda y, c, u: _partial(_X(), y, model(units=(4, u), acts=("tanh", _acts[c])), c)),
        ("Trainer.evaluate",
         lambda y, c, u: _evaluate(_X(), y, model(units=(4, u), acts=("tanh", _acts[c])), c)),
        ("Trainer.gradients",
         lambda y, c, u: _gradients(_X(), y, model(units=(4, u), acts=("tanh", _acts[c])), c))):
    _y_cases(_g, _call)

_f = "Trainer.fit"
_bad_numbers(_f, "epochs", lambda v: _fit(_X(), _Y(), epochs=v), low_ok=1, integer=True)
add(_f, "epochs 0", ValueError, r"\bepochs must be >= 1", lambda: _fit(_X(), _Y(), epochs=0), "value")
_bad_numbers(_f, "initial_epoch", lambda v: _fit(_X(), _Y(), initial_epoch=v), low_ok=0, integer=True)
add(_f, "initial_epoch > epochs", ValueError, r"initial_epoch \(3\) must not exceed epochs \(2\)",
    lambda: _fit(_X(), _Y(), epochs=2, initial_epoch=3), "value")
for _v, _e in ((3, ValueError), (-1, ValueError), (1.0, TypeError), ("0", TypeError),
               (None, TypeError)):
    add(_f, f"verbose {_v!r}", _e, r"\bverbose\b", lambda v=_v: _fit(_X(), _Y(), verbose=v),
        "value")
for _v, _e in ((1.0, ValueError), (-0.1, ValueError), (math.nan, ValueError), ("0.2", TypeError),
               (0.01, ValueError)):
    add(_f, f"validation_split {_v!r}", _e, r"\bvalidation_split\b",
        lambda v=_v: _fit(_X(), _Y(), validation_split=v), "value")
for _v, _lbl, _e, _m in (
        (lambda: [_X(), _Y(), None, None], "4 items", TypeError, r"validation_data must be a tuple"),
        (lambda: (_X(4), _Y(4), -np.ones(4)), "negative weights", ValueError,
         r"validation sample_weight must hold finite, non-negative"),
        (lambda: _X(), "an array", TypeError, r"validation_data must be a tuple"),
        (lambda: (arr((4, 5)), _Y(4)), "X of the wrong width", ValueError,
         r"validation X has 5 features"),
        (lambda: (_X(4), _Y(5)), "y of the wrong length", ValueError,
         r"validation y has 5 samples but X has 4"),
        (lambda: (_with(_X(4), (1, 1), np.nan), _Y(4)), "NaN in X", ValueError,
         r"validation X contains NaN"),
        (lambda: (_X(4), labels([0, 1, 2, 0])), "a label out of range", ValueError,
         r"validation y holds labels outside")):
    add(_f, f"validation_data {_lbl}", _e, _m,
        lambda v=_v: _fit(_X(), _Y(), validation_data=v()), "value")
add(_f, "validation_data and validation_split", ValueError,
    "give validation_data or validation_split, not both",
    lambda: _fit(_X(), _Y(), validation_data=(_X(), _Y()), validation_split=0.5), "value")
for _v, _lbl in ((lambda: [print], "a function"), (lambda: ["EarlyStopping"], "a str"),
                 (lambda: [None], "None")):
    add(_f, f"callbacks holding {_lbl}", TypeError, r"callbacks\[0\] must be a fastsgd Callback",
        lambda v=_v: _fit(_X(), _Y(), callbacks=v()), "type")
add(_f, "callbacks not iterable", TypeError, r"\bcallbacks\b",
    lambda: _fit(_X(), _Y(), callbacks=3), "type")
add(_f, "1-unit softmax with cross_entropy and integer labels", ValueError,
    r"cross_entropy.*two output units",
    lambda: _fit(_X(), labels([0] * 8), model(units=(4, 1)), "cross_entropy"), "shape")
for _si in ("auto", True):
    add(_f, f"NaN in mostly-zero X converted to CSR (sparse_input={_si!r})", ValueError,
        r"\bX contains NaN or infinite values \(row 5\)",
        lambda si=_si: _fit(_with(np.zeros((8, 3), np.float64), (5, 2), np.nan), _Y(),
                            t_kw={"sparse_input": si}), "value")
add(_f, "sparse input with a Rescaling offset", ValueError, r"\bX is sparse: Rescaling with an offset",
    lambda: _fit(csr((8, 3)), _Y(), model(rescale=(0.5, 0.1))), "value")
add(_f, "unbuilt model from a source", ValueError, r"give the first layer input_dim",
    lambda: _fit([(_X(), _Y())], None, S([D(2, "softmax")])), "source")
add(_f, "1 row, 1 feature, 1 unit", None, None,
    lambda: _fit(np.ones((1, 1), np.float32), np.ones(1), model(n_in=1, units=(1, 1),
                                                                 acts=("relu", "linear")), "mse"),
    "empty")

# streamed sources


def _gen(chunks):
    def source():
        yield from chunks()
    return source


_SRC = [
    ("a callable returning an int", lambda: (lambda: 3), ValueError,
     r"the source must be an iterable of \(X, y\) pairs"),
    ("an item of 4 parts", lambda: [(_X(), _Y(), np.ones(8), None)], ValueError,
     r"source item 0 must be an \(X, y\) pair or an \(X, y, w\) triple"),
    ("weights of the wrong length", lambda: [(_X(), _Y(), np.ones(7))], ValueError,
     r"source item 0: w has shape \(7,\)"),
    ("negative weights", lambda: [(_X(), _Y(), -np.ones(8))], ValueError,
     r"source item 0: w must hold finite, non-negative numbers"),
    ("NaN weights", lambda: [(_X(), _Y(), np.full(8, np.nan))], ValueError,
     r"source item 0: w must hold finite, non-negative numbers"),
    ("string weights", lambda: [(_X(), _Y(), np.array(["a"] * 8))], TypeError,
     r"source item 0: w must hold numbers"),
    ("weights with some items only", lambda: [(_X(), _Y(), np.ones(8)), (_X(), _Y())], ValueError,
     r"source item 1: give weights with every item or none"),
    ("an item that is an array", lambda: [_X()], ValueError,
     r"source item 0 must be an \(X, y\) pair"),
    ("an item that is a pair of arrays in an array", lambda: [np.stack([_X(), _X()])], ValueError,
     r"source item 0 must be an \(X, y\) pair"),
    ("a chunk of the wrong width", lambda: [(_X(), _Y()), (arr((4, 5)), _Y(4))], ValueError,
     r"source item 1: X has shape \(4, 5\)"),
    ("a 1-D chunk", lambda: [(arr((3,)), _Y(1))], ValueError, r"source item 0: X has shape"),
    ("a chunk of strings", lambda: [(np.full((4, 3), "a"), _Y(4))], TypeError,
     r"source item 0: X must hold real numbers"),
    ("a chunk that is None", lambda: [(None, _Y(4))], TypeError, r"source item 0: X must be"),
    ("a chunk with a bad label", lambda: [(_X(), labels([0] * 7 + [9]))], ValueError,
     r"source item 0: y holds labels outside"),
    ("a chunk with too few labels", lambda: [(_X(), _Y(3))], ValueError,
     r"source item 0: y has 3 samples but X has 8"),
    ("a chunk with NaN", lambda: [(_with(_X(), (6, 0), np.nan), _Y())], ValueError,
     r"\bX\b.*NaN"),
    ("a chunk with NaN in float64", lambda: [(_with(_X(8, np.float64), (6, 0), np.nan), _Y())],
     ValueError, r"\bX row \d+ contains NaN"),
    ("an empty list", lambda: [], ValueError, r"the source yielded no samples"),
    ("a generator of nothing", lambda: _gen(lambda: iter(())), ValueError,
     r"the source yielded no samples"),
    ("chunks of 0 rows only", lambda: [(arr((0, 3), np.float32), _Y(0))], ValueError,
     r"the source yielded no samples"),
]
for _lbl, _src, _e, _m in _SRC:
    add(_f, f"source: {_lbl}", _e, _m, lambda s=_src: _fit(s(), None, t_kw={"shuffle_buffer": 4}),
        "source")
    add("Trainer.partial_fit", f"source: {_lbl}", _e, _m, lambda s=_src: _partial(s(), None),
        "source")
add(_f, "source: a one-shot iterator for two epochs", ValueError, r"one-shot iterator",
    lambda: T(model(), "cross_entropy", "sgd").fit(iter([(_X(), _Y())]), epochs=2, verbose=0),
    "source")
add(_f, "source: a generator object for two epochs", ValueError, r"one-shot iterator",
    lambda: T(model(), "cross_entropy", "sgd").fit(_gen(lambda: iter([(_X(), _Y())]))(), epochs=2,
                                                    verbose=0), "source")
add(_f, "source with validation_split", ValueError, r"validation_split needs arrays",
    lambda: _fit([(_X(), _Y())], None, validation_split=0.5), "source")
add(_f, "source: chunks of 1 row", None, None,
    lambda: _fit([(_X(1), _Y(1))] * 3, None, t_kw={"batch_size": 2, "shuffle_buffer": 1}),
    "source")

for _w, _lbl, _e, _m in (
        (lambda: np.ones(7), "of the wrong length", ValueError, r"sample_weight must have shape \(8,\)"),
        (lambda: np.ones((8, 1)), "2-D", ValueError, r"sample_weight must have shape \(8,\)"),
        (lambda: -np.ones(8), "negative", ValueError, r"sample_weight must hold finite, non-negative"),
        (lambda: np.full(8, np.nan), "NaN", ValueError, r"sample_weight must hold finite"),
        (lambda: np.array(["a"] * 8), "strings", TypeError, r"sample_weight must hold numbers"),
        (lambda: "w", "a str", TypeError, r"\bsample_weight must be"),
        (lambda: np.zeros(8), "all zero", None, None)):
    add(_f, f"sample_weight {_lbl}", _e, _m, lambda w=_w: _fit(_X(), _Y(), sample_weight=w()),
        "value")
    add("Trainer.evaluate", f"sample_weight {_lbl}", _e, _m,
        lambda w=_w: _evaluate(_X(), _Y(), sample_weight=w()), "value")
for _cw, _lbl, _e, _m in (
        (lambda: "auto", "'auto'", ValueError, r"class_weight must be a dict or 'balanced'"),
        (lambda: [1.0, 2.0], "a list", TypeError, r"class_weight must be a dict or 'balanced'"),
        (lambda: {0: -1.0}, "a negative weight", ValueError, r"class_weight\[0\] must be a finite"),
        (lambda: {1: math.nan}, "a NaN weight", ValueError, r"class_weight\[1\] must be a finite"),
        (lambda: {0: "x"}, "a str weight", ValueError, r"class_weight\[0\] must be a finite"),
        (lambda: "balanced", "'balanced'", None, None)):
    add(_f, f"class_weight {_lbl}", _e, _m, lambda c=_cw: _fit(_X(), _Y(), class_weight=c()),
        "value")
for _c, _y, _lbl, _e, _m in (
        ("sparse_categorical_cross_entropy", lambda: np.eye(2)[_Y()], "one-hot rows", TypeError,
         r"\by must hold integer class labels"),
        ("sparse_categorical_cross_entropy", lambda: np.zeros(8), "float labels", TypeError,
         r"\by must hold integer class labels"),
        ("sparse_categorical_cross_entropy", lambda: labels([0] * 7 + [2]), "label == units",
         ValueError, r"\by holds labels outside"),
        ("mae", lambda: np.full((8, 2), np.nan), "NaN targets", ValueError, r"\by contains NaN"),
        ("huber", lambda: np.zeros((8, 3)), "3 target columns for 2 units", ValueError,
         r"\by has 3 columns"),
        ("huber", lambda: labels([0] * 7 + [5]), "label 5 for 2 units", ValueError,
         r"\by holds labels outside")):
    add(_f, f"{_c}: y {_lbl}", _e, _m, lambda c=_c, y=_y: _fit(_X(), y(), cost=c), "labels")
for _v in (0.0, -1.0, math.nan, "x"):
    add("Huber", f"delta {_v!r}", TypeError if isinstance(_v, str) else ValueError, r"\bdelta\b",
        lambda v=_v: fastsgd.costs.Huber(v), "value")

_e = "Trainer.evaluate"
for _v in (0, -3, 2.0, None):
    add(_e, f"batch_size {_v!r}", TypeError if not isinstance(_v, int) else ValueError,
        r"\bbatch_size\b", lambda v=_v: _evaluate(_X(), _Y(), batch_size=v), "value")
add(_e, "an unbuilt model", RuntimeError, r"the model has no weights yet",
    lambda: T(S([D(2, "softmax")]), "cross_entropy", "sgd").evaluate(_X(), _Y()), "value")


# ---- optimizers ------------------------------------------------------------------------
_OPT_ARGS = {
    fastsgd.SGD: {"lr": (0.0, False), "momentum": (0.0, True), "weight_decay": (0.0, False),
                  "l1": (0.0, False), "l2": (0.0, False)},
    fastsgd.Adagrad: {"lr": (0.0, False), "initial_accumulator_value": (0.0, False),
                      "epsilon": (0.0, False)},
    fastsgd.RMSprop: {"lr": (0.0, False), "rho": (0.0, True), "momentum": (0.0, True),
                      "epsilon": (0.0, False)},
    fastsgd.Adam: {"lr": (0.0, False), "beta_1": (0.0, True), "beta_2": (0.0, True),
                   "epsilon": (0.0, False)},
    fastsgd.AdamW: {"lr": (0.0, False), "weight_decay": (0.0, False), "beta_1": (0.0, True)},
}
for _cls, _args in _OPT_ARGS.items():
    for _arg, (_low, _unit) in _args.items():
        _bad_numbers(_cls.__name__, _arg, lambda v, c=_cls, a=_arg: c(**{a: v}), low_ok=None)
        add(_cls.__name__, f"{_arg} -0.5", ValueError, rf"\b{_arg} must be >",
            lambda c=_cls, a=_arg: c(**{a: -0.5}), "value")
        if _unit:
            add(_cls.__name__, f"{_arg} 1.0", ValueError, rf"\b{_arg} must be <",
                lambda c=_cls, a=_arg: c(**{a: 1.0}), "value")
for _cls in (fastsgd.SGD, fastsgd.Adagrad, fastsgd.RMSprop, fastsgd.Adam, fastsgd.AdamW):
    add(_cls.__name__, "lr 0", ValueError, r"\blr must be > 0", lambda c=_cls: c(lr=0.0), "value")
    add(_cls.__name__, "setting lr to -1 later", ValueError, r"\blr must be > 0",
        lambda c=_cls: setattr(c(), "lr", -1.0), "value")
    add(_cls.__name__, "setting lr to NaN later", ValueError, r"\blr must be finite",
        lambda c=_cls: setattr(c(), "lr", math.nan), "value")
add("SGD", "nesterov without momentum", ValueError, r"nesterov=True needs momentum > 0",
    lambda: fastsgd.SGD(nesterov=True), "value")
for _cls, _arg in ((fastsgd.SGD, "nesterov"), (fastsgd.RMSprop, "centered"),
                   (fastsgd.Adam, "amsgrad")):
    for _v in (1, "yes", None):
        add(_cls.__name__, f"{_arg} {_v!r}", TypeError, rf"\b{_arg} must be a bool",
            lambda c=_cls, a=_arg, v=_v: c(**({a: v, "momentum": 0.5} if a == "nesterov" else {a: v})),
            "type")
add("Adagrad", "epsilon 0 with accumulator 0", ValueError, r"epsilon=0 with initial_accumulator_value=0",
    lambda: fastsgd.Adagrad(initial_accumulator_value=0.0, epsilon=0.0), "value")
add("RMSprop", "epsilon 0", ValueError, r"\bepsilon must be > 0",
    lambda: fastsgd.RMSprop(epsilon=0.0), "value")
add("Adam", "epsilon 0", ValueError, r"\bepsilon must be > 0", lambda: fastsgd.Adam(epsilon=0.0),
    "value")

_st = "Optimizer.step"
add(_st, "params and grads of different lengths", ValueError, "got 2 parameter arrays but 1 gradients",
    lambda: fastsgd.SGD().step([arr((2,)), arr((3,))], [arr((2,))]), "shape")
add(_st, "no params", ValueError, "params is empty", lambda: fastsgd.SGD().step([], []), "empty")
add(_st, "a read-only parameter", ValueError, r"params\[1\] must be writeable",
    lambda: fastsgd.SGD().step([arr((2,)), readonly(arr((3,)))], [arr((2,)), arr((3,))]),
    "readonly")
add(_st, "a gradient of the wrong shape", ValueError, r"grads\[0\] has shape \(3,\) but params\[0\] has \(2,\)",
    lambda: fastsgd.SGD().step([arr((2,))], [arr((3,))]), "shape")
add(_st, "mixed dtypes", TypeError, r"params\[1\] has dtype float32",
    lambda: fastsgd.SGD().step([arr((2,)), arr((2,), np.float32)], [arr((2,)), arr((2,))]),
    "dtype")
add(_st, "integer parameters", TypeError, r"params\[0\] must be float32 or float64",
    lambda: fastsgd.SGD().step([np.zeros(2, np.int64)], [arr((2,))]), "dtype")
add(_st, "a gradient is its parameter (stepped on copies)", None, None,
    lambda: (lambda p: fastsgd.Adam().step([p], [p]))(arr((4,))), "alias")
add(_st, "the gradients are the parameters (views of one flat array)", ValueError,
    "grads must not share memory with params",
    lambda: (lambda f: fastsgd.SGD().step([f[:2], f[2:]], [f[:2], f[2:]]))(arr((5,))), "alias")
add(_st, "NaN gradient: refused, untouched", None, None,
    lambda: (lambda p: (fastsgd.Adam().step([p], [np.full(4, np.nan)]) is False and
                        np.array_equal(p, arr((4,)))) or _fail("stepped"))(arr((4,))), "value")


# ---- read_idx ------------------------------------------------------------------------------
_TMP = []   # the folder of the read_idx cases' files, made on first use, removed at exit


def _tmp():
    if not _TMP:
        _TMP.append(tempfile.mkdtemp(prefix="fastsgd-bad-idx-"))
        atexit.register(shutil.rmtree, _TMP[0], ignore_errors=True)
    return _TMP[0]


def _file(name, data, gz=False):
    path = os.path.join(_tmp(), name + (".gz" if gz else ""))
    with open(path, "wb") as f:
        f.write(gzip.compress(data) if gz else data)
    return path


def _idx(dims, payload=None, magic=(0, 8)):
    head = struct.pack(">HBB", magic[0], magic[1], len(dims)) + struct.pack(f">{len(dims)}I", *dims)
    return head + (bytes(math.prod(dims)) if payload is None else payload)


_ri = "read_idx"
for _gz in (False, True):
    _sfx = " (gzip)" if _gz else ""
    for _lbl, _data, _m in (
            ("an empty file", b"", r"too short for an IDX header"),
            ("3 bytes", b"\x00\x00\x08", r"too short for an IDX header"),
            ("a float IDX", _idx((2, 2), magic=(0, 0x0D)), r"bad magic number"),
            ("a non-zero first word", _idx((2,), magic=(1, 8)), r"bad magic number"),
            ("0 dimensions", struct.pack(">HBB", 0, 8, 0), r"bad magic number"),
            ("4 dimensions", _idx((1, 1, 1, 1)), r"bad magic number"),
            ("a truncated header", _idx((2, 3))[:9], r"truncated header"),
            ("a truncated payload", _idx((4, 4))[:-3], r"truncated"),
            ("trailing bytes", _idx((2, 2)) + b"xx", r"trailing bytes" if not _gz else r"IDX"),
            ("4 GiB declared", _idx((65536, 65536), payload=b""), r"above the limit"),
            ("text", b"hello, world\n" * 10, r"bad magic number")):
        if _gz and _lbl == "trailing bytes":
            continue
        add(_ri, f"{_lbl}{_sfx}", ValueError, _m,
            lambda d=_data, n=_lbl, g=_gz: read_idx(_file(n.replace(" ", "_"), d, g)), "value")
add(_ri, "not gzip data under a .gz name", ValueError, r"cannot read: truncated or corrupt compressed",
    lambda: read_idx(_write_raw("plain.gz", _idx((2, 2)))), "value")
add(_ri, "a truncated gzip stream", ValueError, r"cannot read: truncated or corrupt",
    lambda: read_idx(_file("cut.gz", gzip.compress(_idx((64, 64)))[:-20])), "value")
add(_ri, "trailing bytes after the declared size (gzip)", ValueError, r"\bIDX\b|trailing|declares",
    lambda: read_idx(_file("trail", _idx((2, 2)) + b"junk" * 10, gz=True)), "value")
add(_ri, "a missing file", OSError, r"No such file",
    lambda: read_idx(os.path.join(_tmp(), "missing-file")), "value")
add(_ri, "a directory", OSError, r"directory", lambda: read_idx(_tmp()), "value")
add(_ri, "path None", TypeError, r"\bpath must be a str", lambda: read_idx(None), "type")
add(_ri, "path an int", TypeError, r"\bpath must be a str", lambda: read_idx(3), "type")
add(_ri, "path bytes", TypeError, r"\bpath must be a str", lambda: read_idx(b"/tmp/x"), "type")
add(_ri, "max_bytes 0", ValueError, r"\bmax_bytes must be >= 1",
    lambda: read_idx(_file("ok", _idx((2,))), max_bytes=0), "value")
add(_ri, "max_bytes a float", TypeError, r"\bmax_bytes must be an integer",
    lambda: read_idx(_file("ok", _idx((2,))), max_bytes=1e9), "type")
add(_ri, "max_bytes below the declared size", ValueError, r"above the limit of 3",
    lambda: read_idx(_file("ok4", _idx((4,))), max_bytes=3), "value")
add(_ri, "a valid 0-item file", None, None, lambda: read_idx(_file("zero", _idx((0, 28)))), "empty")


def _write_raw(name, data):
    path = os.path.join(_tmp(), name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def summary():
    """The table's size: cases per family, per kind of bad input and per expected outcome."""
    from collections import Counter
    lines = [f"{len(CASES)} cases"]
    for title, key in (("family", family), ("kind", lambda c: c.kind),
                       ("expected", lambda c: "returns" if c.expect is None else
                        "/".join(e.__name__ for e in (c.expect if isinstance(c.expect, tuple)
                                                       else (c.expect,))))):
        counts = Counter(key(c) for c in CASES.values())
        lines.append(f"by {title}: " + ", ".join(f"{k} {v}" for k, v in counts.most_common()))
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary())
