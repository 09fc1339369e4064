"""Optimizers: each step is one fused, in-place pass over every parameter,
its gradient and its state in the compiled core (GIL released).

The update rules and defaults are Keras 3's:

* :class:`SGD` -- ``v = momentum * v - lr * g``; ``p += v`` (or, with
  Nesterov, ``p += momentum * v - lr * g``); plain ``p -= lr * g`` when
  momentum is 0. At a constant learning rate these are also PyTorch's and
  scikit-learn's steps.
* :class:`Adagrad` -- ``acc += g**2``; ``p -= lr * g / sqrt(acc + epsilon)``.
* :class:`RMSprop` -- ``v = rho * v + (1 - rho) * g**2`` (centred: minus the
  squared running mean of g); ``p -= lr * g / sqrt(v + epsilon)``, with
  optional momentum on that increment.
* :class:`Adam` / :class:`AdamW` -- ``m += (g - m) * (1 - beta_1)``,
  ``v += (g**2 - v) * (1 - beta_2)``,
  ``p -= lr * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (sqrt(v) + epsilon)``.
  epsilon is added to ``sqrt(v)`` *before* the bias correction of v is
  folded into the step size (Keras and TensorFlow's placement; PyTorch adds
  it after correcting v, which differs by a factor ``sqrt(1 - beta_2**t)``
  on epsilon). We follow Keras so that its defaults and tuned settings carry
  over unchanged.

``weight_decay`` is decoupled (``p -= lr * weight_decay * p`` before the
step), as in Keras 3 and AdamW. ``l1``/``l2`` add the gradients of
``l1 * sum|w| + l2 * sum w**2`` to the weights' gradients (coupled); a
layer's own ``l1``/``l2`` take precedence.
"""
from __future__ import annotations

import weakref
from typing import Sequence

import numpy as np

from . import _net
from ._checks import require
from ._network import Layout
from ._validate import check_bool, check_float


def _flat_base(arrays):
    """The 1-D array that ``arrays`` are consecutive views of, covering it, or None."""
    if not arrays:
        return None
    base = arrays[0].base
    if not isinstance(base, np.ndarray) or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    address = base.__array_interface__["data"][0]
    for a in arrays:
        if a.base is not base or not a.flags.c_contiguous or a.dtype != base.dtype:
            return None
        if a.__array_interface__["data"][0] != address:
            return None
        address += a.nbytes
    if address != base.__array_interface__["data"][0] + base.nbytes:
        return None
    return base


class Optimizer:
    """Base class: holds the hyperparameters and, once training starts, the state.

    The state is one flat array per slot (velocity, moments, ...), laid out
    like the flat parameters it steps (see :mod:`fastsgd._network`). It is
    bound to the model it first stepped: another model gets a clear error
    until :meth:`reset` is called.
    """

    kind = None
    #: number of state slots, as a function of the settings
    n_states = 0

    def __init__(self, lr, *, weight_decay=0.0, l1=0.0, l2=0.0):
        self.lr = check_float("lr", lr, low=0.0, low_open=True)
        self.weight_decay = check_float("weight_decay", weight_decay, low=0.0)
        self.l1 = check_float("l1", l1, low=0.0)
        self.l2 = check_float("l2", l2, low=0.0)
        self.iterations = 0
        self._slots = None     # list of flat state arrays, one per slot
        self._layout = None    # the Layout the slots follow
        self._owner = None     # weak reference to the model the state belongs to
        self._pending = None   # per-parameter state from set_state, awaiting a layout

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = check_float("lr", value, low=0.0, low_open=True)

    def hyper(self):
        """The settings the compiled update reads."""
        return {"kind": self.kind, "lr": self.lr, "weight_decay": self.weight_decay,
                "l1": self.l1, "l2": self.l2, "step": self.iterations + 1}

    def _n_states(self):
        return self.n_states

    def _initial_slot(self, k, size, dtype):
        return np.zeros(size, dtype)

    def reset(self) -> None:
        """Forget the state and the step count (to step another model)."""
        self.iterations = 0
        self._slots = self._layout = self._owner = self._pending = None

    def build(self, layout, dtype, owner=None):
        """The flat state slots for parameters of ``layout`` (allocated once).

        ``owner`` is the model the parameters belong to; state built for one
        model is not used for another (ValueError: call :meth:`reset`).
        """
        dtype = np.dtype(dtype)
        if self._owner is not None and owner is not None:
            current = self._owner()
            if current is not None and current is not owner:
                raise ValueError(f"this {type(self).__name__} holds the state of another model; "
                                 f"use a new optimizer or call reset() first")
        if self._slots is not None:
            if self._layout != layout or self._slots and self._slots[0].dtype != dtype:
                if owner is not None and self._owner is not None and self._owner() is owner:
                    # the same model, rebuilt with other shapes: start afresh
                    self._slots = None
                else:
                    raise ValueError(f"this {type(self).__name__} holds state for parameters of "
                                     f"other shapes; use a new optimizer or call reset() first")
        if self._slots is None:
            slots = [self._initial_slot(k, layout.size, dtype) for k in range(self._n_states())]
            if self._pending is not None:
                self._fill_from(self._pending, layout, slots)
                self._pending = None
            self._slots, self._layout = slots, layout
        if owner is not None:
            self._owner = weakref.ref(owner)
        return self._slots

    def _fill_from(self, per_param, layout, slots):
        """Copy per-parameter state lists into flat slots (shapes checked)."""
        if len(per_param) != len(layout.segments):
            raise ValueError(f"saved optimizer state has {len(per_param)} parameters, the "
                             f"model has {len(layout.segments)}")
        for j, (seg, per) in enumerate(zip(layout.segments, per_param)):
            if len(per) != len(slots):
                raise ValueError(f"saved optimizer state for parameter {j} has {len(per)} "
                                 f"slots, {type(self).__name__} uses {len(slots)}")
            for k, arr in enumerate(per):
                arr = np.asarray(arr)
                if arr.shape != seg.shape:
                    raise ValueError(f"saved optimizer state {j},{k} has shape {arr.shape}, "
                                     f"expected {seg.shape}")
                slots[k][seg.offset:seg.offset + seg.size] = arr.ravel()

    def segments(self, layout, layers=None):
        """The segment table of one step: ``(offset, size, l1, l2, decay)`` rows.

        With ``layers`` (a model's), a layer's own ``l1``/``l2`` take
        precedence on its weights, and biases and batch normalization's
        ``gamma`` and ``beta`` carry no penalty; without, the optimizer's
        penalties apply to every array. Weight decay applies to every
        trainable parameter (gamma and beta included, as in Keras, which
        decays every trainable variable not excluded). Non-trainable state
        (moving statistics) is not in the layout at all.
        """
        rows = []
        for seg in layout.segments:
            l1, l2 = self.l1, self.l2
            if layers is not None:
                layer = layers[seg.layer]
                if seg.name == "weights":
                    l1 = self.l1 if layer.l1 is None else layer.l1
                    l2 = self.l2 if layer.l2 is None else layer.l2
                else:
                    l1 = l2 = 0.0
            rows.append((seg.offset, seg.size, l1, l2, True))
        return rows

    def get_state(self) -> dict:
        """A dict of the iteration count and copies of the state, per parameter
        (``state[j][k]``: slot ``k`` of parameter ``j``; None before any step)."""
        if self._slots is None:
            state = None if self._pending is None else [[s.copy() for s in per]
                                                        for per in self._pending]
        else:
            state = [[slot[seg.offset:seg.offset + seg.size].reshape(seg.shape).copy()
                      for slot in self._slots] for seg in self._layout.segments]
        return {"iterations": self.iterations, "state": state}

    def set_state(self, state: dict) -> None:
        """Restore :meth:`get_state`'s dict (the arrays are laid out at the next step)."""
        self.iterations = int(state["iterations"])
        st = state.get("state")
        self._slots = self._layout = self._owner = None
        self._pending = None if st is None else [[np.array(s) for s in per] for per in st]

    def restore_in_place(self, state):
        """Copy :meth:`get_state`'s dict into the state arrays already in use
        (a compiled step that points at them sees the restored values)."""
        if self._slots is None:
            self.set_state(state)
            return
        per_param = state.get("state")
        if per_param is not None:
            self._fill_from(per_param, self._layout, self._slots)
        else:
            for k, slot in enumerate(self._slots):
                slot[...] = self._initial_slot(k, slot.size, slot.dtype)
        self.iterations = int(state["iterations"])

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> bool:
        """Apply one step to ``params`` given ``grads`` (NumPy arrays), in place.

        Returns False when the step is refused: when any new value would be
        NaN or infinite (a bad gradient, an overflowing step), nothing is
        written and the step count does not advance. The optimizer's ``l1``
        and ``l2`` apply to every array here.
        """
        params = list(params)
        grads = list(grads)
        if len(params) != len(grads):
            raise ValueError(f"got {len(params)} parameter arrays but {len(grads)} gradients")
        if not params:
            raise ValueError("params is empty")
        for i, (p, g) in enumerate(zip(params, grads)):
            require(p, f"params[{i}]", dtype=params[0].dtype, writeable=True)
            require(g, f"grads[{i}]", dtype=p.dtype)
            if g.shape != p.shape:
                raise ValueError(f"grads[{i}] has shape {g.shape} but params[{i}] has {p.shape}")
        layout = Layout.of((i, "param", p.shape) for i, p in enumerate(params))
        slots = self.build(layout, params[0].dtype)
        flat_p = _flat_base(params)
        flat_g = _flat_base(grads)
        in_place = flat_p is not None
        if not in_place:
            flat_p = np.concatenate([p.ravel() for p in params])
        if flat_g is None:
            flat_g = np.concatenate([g.ravel() for g in grads])
        update = _net.Update(flat_p, flat_g, slots, self.segments(layout))
        update.configure(self.hyper())
        if not update.run():
            return False
        if not in_place:
            for p, v in zip(params, layout.views(flat_p)):
                p[...] = v
        self.iterations += 1
        return True

    def get_config(self):
        cfg = {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "iterations"}
        cfg["lr"] = self.lr
        return cfg

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent: ``p -= lr * g`` (η is ``lr``).

    Parameters
    ----------
    lr : float
        The learning rate η, finite and > 0 (default 0.01).
    momentum : float
        In [0, 1) (default 0: plain SGD).
    nesterov : bool
        Nesterov momentum (needs momentum > 0).
    weight_decay, l1, l2 : float
        See the module documentation.
    """

    kind = "sgd"

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False, *,
                 weight_decay: float = 0.0, l1: float = 0.0, l2: float = 0.0) -> None:
        super().__init__(lr, weight_decay=weight_decay, l1=l1, l2=l2)
        self.momentum = check_float("momentum", momentum, low=0.0, high=1.0, high_open=True)
        self.nesterov = check_bool("nesterov", nesterov)
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")

    def _n_states(self):
        return 1 if self.momentum > 0 else 0

    def hyper(self):
        h = super().hyper()
        h.update(momentum=self.momentum, nesterov=self.nesterov)
        return h


class Adagrad(Optimizer):
    """Adagrad (Keras 3 defaults: lr=0.001, initial_accumulator_value=0.1, epsilon=1e-7)."""

    kind = "adagrad"
    n_states = 1

    def __init__(self, lr=0.001, initial_accumulator_value=0.1, epsilon=1e-7, *,
                 weight_decay=0.0, l1=0.0, l2=0.0):
        super().__init__(lr, weight_decay=weight_decay, l1=l1, l2=l2)
        self.initial_accumulator_value = check_float("initial_accumulator_value",
                                                     initial_accumulator_value, low=0.0)
        self.epsilon = check_float("epsilon", epsilon, low=0.0)
        if self.epsilon == 0.0 and self.initial_accumulator_value == 0.0:
            raise ValueError("epsilon=0 with initial_accumulator_value=0 divides 0 by 0 for "
                             "every weight whose gradient is 0: every such step would be "
                             "refused; give epsilon > 0")

    def _initial_slot(self, k, size, dtype):
        return np.full(size, self.initial_accumulator_value, dtype)

    def hyper(self):
        h = super().hyper()
        h.update(epsilon=self.epsilon)
        return h


class RMSprop(Optimizer):
    """RMSprop (Keras 3 defaults: lr=0.001, rho=0.9, momentum=0, epsilon=1e-7, centered=False)."""

    kind = "rmsprop"

    def __init__(self, lr=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, *,
                 weight_decay=0.0, l1=0.0, l2=0.0):
        super().__init__(lr, weight_decay=weight_decay, l1=l1, l2=l2)
        self.rho = check_float("rho", rho, low=0.0, high=1.0, high_open=True)
        self.momentum = check_float("momentum", momentum, low=0.0, high=1.0, high_open=True)
        self.epsilon = check_float("epsilon", epsilon, low=0.0, low_open=True)
        self.centered = check_bool("centered", centered)

    def _n_states(self):
        return 3  # mean square, momentum, mean gradient (unused ones stay zero)

    def hyper(self):
        h = super().hyper()
        h.update(rho=self.rho, momentum=self.momentum, epsilon=self.epsilon, centered=self.centered)
        return h


class Adam(Optimizer):
    """Adam (Keras 3 defaults: lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7)."""

    kind = "adam"

    def __init__(self, lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, *,
                 weight_decay=0.0, l1=0.0, l2=0.0):
        super().__init__(lr, weight_decay=weight_decay, l1=l1, l2=l2)
        self.beta_1 = check_float("beta_1", beta_1, low=0.0, high=1.0, high_open=True)
        self.beta_2 = check_float("beta_2", beta_2, low=0.0, high=1.0, high_open=True)
        # epsilon = 0 divides 0 by 0 wherever a gradient is 0 (a dead unit): every step
        # would be refused
        self.epsilon = check_float("epsilon", epsilon, low=0.0, low_open=True)
        self.amsgrad = check_bool("amsgrad", amsgrad)

    def _n_states(self):
        return 3 if self.amsgrad else 2

    def hyper(self):
        h = super().hyper()
        h.update(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon, amsgrad=self.amsgrad)
        return h


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras 3 default weight_decay=0.004)."""

    def __init__(self, lr=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, *, l1=0.0, l2=0.0):
        super().__init__(lr, beta_1, beta_2, epsilon, amsgrad, weight_decay=weight_decay,
                         l1=l1, l2=l2)


OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW}


def get(opt):
    """An optimizer from an instance or a name (with its defaults)."""
    if isinstance(opt, Optimizer):
        return opt
    if isinstance(opt, str) and opt.lower() in OPTIMIZERS:
        return OPTIMIZERS[opt.lower()]()
    raise ValueError(f"optimizer must be one of {', '.join(repr(o) for o in OPTIMIZERS)} or an "
                     f"Optimizer instance; got {opt!r}")
