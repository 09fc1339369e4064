"""Costs (loss functions).

The trainer computes each cost fused with the output layer in the compiled
core; the objects here name the cost, check the targets, and can be called
on their own: ``cost(y_pred, y_true)`` gives the mean cost in NumPy.

* ``"mse"`` (alias ``"quadratic"``): mean over samples and output units of
  ``(y_pred - y_true)**2``, as Keras's ``mean_squared_error``.
* ``"cross_entropy"``: categorical cross-entropy with a softmax output;
  targets are integer class labels or one-hot rows.
* ``"binary_cross_entropy"``: sigmoid outputs, 0/1 targets, averaged over
  the output units as Keras does.
* ``"sparse_categorical_cross_entropy"``: categorical cross-entropy that
  takes integer class labels only (Keras's
  ``sparse_categorical_crossentropy``); the same fused kernel.
* ``"mae"``: mean over samples and output units of ``|y_pred - y_true|``
  (Keras's ``mean_absolute_error``); any output activation.
* ``"huber"``: with ``x = y_pred - y_true``, ``0.5 * x**2`` where
  ``|x| <= delta`` and ``delta * (|x| - 0.5 * delta)`` elsewhere, averaged
  over samples and output units (Keras's ``Huber``, default ``delta=1``);
  any output activation. ``Huber(delta=...)`` sets delta.
"""
import numpy as np

from ._validate import check_float

_EPS = 1e-7


class Cost:
    """Base class. ``name`` is the compiled core's name for the cost."""

    name = None
    #: output activation the fused kernel requires (None: any)
    requires_activation = None
    #: True if accuracy is meaningful for this cost (regression costs: with several outputs only)
    classification = True

    def check_targets(self, name, y):
        """Refuse targets this cost cannot take (before any conversion)."""

    def __call__(self, y_pred, y_true):
        y_pred = np.asarray(y_pred, dtype=np.float64)
        if y_pred.ndim == 1:
            y_pred = y_pred[:, None]
        t = self._dense_targets(y_true, y_pred.shape)
        return float(self._value(y_pred, t))

    @staticmethod
    def _dense_targets(y_true, shape):
        y_true = np.asarray(y_true)
        if y_true.ndim == 1 and y_true.dtype.kind in "iu" and shape[1] > 1:
            t = np.zeros(shape)
            t[np.arange(shape[0]), y_true] = 1.0
            return t
        t = np.asarray(y_true, dtype=np.float64)
        if t.ndim == 1:
            t = t[:, None]
        if t.shape != shape:
            raise ValueError(f"y_true has shape {t.shape}, expected {shape}")
        return t

    def __repr__(self):
        return f"{type(self).__name__}()"


class MeanSquaredError(Cost):
    """The quadratic cost: ``mean((y_pred - y_true)**2)`` over samples and units."""

    name = "mse"
    classification = False

    def _value(self, p, t):
        return np.mean((p - t) ** 2)


class MeanAbsoluteError(Cost):
    """``mean(|y_pred - y_true|)`` over samples and units; any output activation."""

    name = "mae"
    classification = False

    def _value(self, p, t):
        return np.mean(np.abs(p - t))


class Huber(Cost):
    """The Huber loss (Keras's definition): with ``x = y_pred - y_true``,
    ``0.5 x**2`` for ``|x| <= delta``, ``delta (|x| - 0.5 delta)`` beyond,
    averaged over samples and units; any output activation.

    Parameters
    ----------
    delta : float
        Where the loss turns from quadratic to linear (finite, > 0; default 1).
    """

    name = "huber"
    classification = False

    def __init__(self, delta=1.0):
        self.delta = check_float("delta", delta, low=0.0, low_open=True)

    def _value(self, p, t):
        x = np.abs(p - t)
        d = self.delta
        return np.mean(np.where(x <= d, 0.5 * x * x, d * x - 0.5 * d * d))

    def __repr__(self):
        return f"Huber(delta={self.delta!r})"


class CrossEntropy(Cost):
    """Categorical cross-entropy ``-mean(sum(y * log(p)))``; softmax output."""

    name = "cross_entropy"
    requires_activation = "softmax"

    def _value(self, p, t):
        return np.mean(-np.sum(t * np.log(np.clip(p, _EPS, 1.0)), axis=1))


class SparseCategoricalCrossEntropy(CrossEntropy):
    """Categorical cross-entropy on integer class labels only (softmax output):
    the compiled core runs it as ``cross_entropy``; one-hot or float targets
    raise TypeError."""

    def check_targets(self, name, y):
        y = np.asarray(y)
        if y.dtype.kind not in "iu" or not (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
            raise TypeError(f"{name} must hold integer class labels, shape (n,) or (n, 1), for "
                            f"sparse_categorical_cross_entropy; got dtype {y.dtype} and shape "
                            f"{y.shape}")

    def __call__(self, y_pred, y_true):
        self.check_targets("y_true", y_true)
        y_true = np.asarray(y_true)
        return super().__call__(y_pred, y_true.reshape(-1))


class BinaryCrossEntropy(Cost):
    """Binary cross-entropy averaged over output units; sigmoid output."""

    name = "binary_cross_entropy"
    requires_activation = "sigmoid"

    def _value(self, p, t):
        p = np.clip(p, _EPS, 1.0 - _EPS)
        return np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p)))


COSTS = {
    "mse": MeanSquaredError,
    "quadratic": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "cross_entropy": CrossEntropy,
    "categorical_crossentropy": CrossEntropy,
    "binary_cross_entropy": BinaryCrossEntropy,
    "binary_crossentropy": BinaryCrossEntropy,
    "sparse_categorical_cross_entropy": SparseCategoricalCrossEntropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossEntropy,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "huber": Huber,
}


def get(cost):
    """A :class:`Cost` from a name or an instance."""
    if isinstance(cost, Cost):
        return cost
    if isinstance(cost, str) and cost in COSTS:
        return COSTS[cost]()
    raise ValueError(f"cost must be one of {', '.join(repr(c) for c in COSTS)} or a Cost; "
                     f"got {cost!r}")
