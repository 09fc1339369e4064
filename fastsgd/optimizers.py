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
import numpy as np

from ._validate import check_bool, check_float


class Optimizer:
    """Base class: holds the hyperparameters and, once training starts, the state."""

    kind = None
    #: number of state arrays per parameter, as a function of the settings
    n_states = 0

    def __init__(self, lr, *, weight_decay=0.0, l1=0.0, l2=0.0):
        self.lr = check_float("lr", lr, low=0.0, low_open=True)
        self.weight_decay = check_float("weight_decay", weight_decay, low=0.0)
        self.l1 = check_float("l1", l1, low=0.0)
        self.l2 = check_float("l2", l2, low=0.0)
        self.iterations = 0
        self._state = None  # list per parameter of lists of arrays
        self._plan = None   # (key, compiled update plan) for step()

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = check_float("lr", value, low=0.0, low_open=True)

    def hyper(self):
        """The settings the compiled update reads."""
        return {"kind": self.kind, "lr": self.lr, "weight_decay": self.weight_decay,
                "l1": self.l1, "l2": self.l2,
                "step": self.iterations + 1}

    def _n_states(self):
        return self.n_states

    def _initial_state(self, p):
        return [np.zeros_like(p) for _ in range(self._n_states())]

    def build(self, params):
        """Allocate the state for ``params`` (once; again only if the shapes change)."""
        if self._state is not None and len(self._state) == len(params) and all(
                all(s.shape == p.shape and s.dtype == p.dtype for s in st)
                for st, p in zip(self._state, params)):
            return self._state
        self._state = [self._initial_state(p) for p in params]
        self._plan = None
        return self._state

    def get_state(self):
        """A dict of the iteration count and copies of the state arrays."""
        return {"iterations": self.iterations,
                "state": None if self._state is None else [[s.copy() for s in st] for st in self._state]}

    def set_state(self, state):
        self._plan = None
        self.iterations = int(state["iterations"])
        st = state.get("state")
        self._state = None if st is None else [[np.array(s) for s in per] for per in st]

    def step(self, params, grads):
        """Apply one step to ``params`` given ``grads`` (NumPy arrays), in place.

        Returns False when the step is refused: a gradient that is NaN,
        infinite or large enough to overflow leaves everything untouched; an
        element whose stepped value would still not be finite keeps its old
        value. Parameters never become NaN or infinite.
        """
        from . import _kernels
        params = list(params)
        grads = list(grads)
        if len(params) != len(grads):
            raise ValueError(f"got {len(params)} parameter arrays but {len(grads)} gradients")
        state = self.build(params)
        # one compiled call over every array, rebuilt only when the arrays change
        key = tuple(map(id, params)) + tuple(map(id, grads)) + tuple(id(s) for st in state for s in st)
        if self._plan is None or self._plan[0] != key:
            self._plan = (key, _kernels.UpdatePlan(params, grads, [list(st) for st in state]))
        result = self._plan[1].run(self.hyper())
        if result == 1:
            return False
        self.iterations += 1
        return result == 0

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

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, *, weight_decay=0.0, l1=0.0, l2=0.0):
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

    def _initial_state(self, p):
        return [np.full_like(p, self.initial_accumulator_value)]

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
        self.epsilon = check_float("epsilon", epsilon, low=0.0)
        self.centered = check_bool("centered", centered)

    def _n_states(self):
        return 3  # velocity, momentum, average gradient (unused ones stay zero)

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
        self.epsilon = check_float("epsilon", epsilon, low=0.0)
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
