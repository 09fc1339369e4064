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
"""
import numpy as np

_EPS = 1e-7


class Cost:
    """Base class. ``name`` is the compiled core's name for the cost."""

    name = None
    #: output activation the fused kernel requires (None: any)
    requires_activation = None
    #: True if accuracy is meaningful for this cost
    classification = True

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

    def _value(self, p, t):
        return np.mean((p - t) ** 2)


class CrossEntropy(Cost):
    """Categorical cross-entropy ``-mean(sum(y * log(p)))``; softmax output."""

    name = "cross_entropy"
    requires_activation = "softmax"

    def _value(self, p, t):
        return np.mean(-np.sum(t * np.log(np.clip(p, _EPS, 1.0)), axis=1))


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
}


def get(cost):
    """A :class:`Cost` from a name or an instance."""
    if isinstance(cost, Cost):
        return cost
    if isinstance(cost, str) and cost in COSTS:
        return COSTS[cost]()
    raise ValueError(f"cost must be one of {', '.join(repr(c) for c in COSTS)} or a Cost; "
                     f"got {cost!r}")
