"""Learning-rate schedules.

A schedule is a callable ``schedule(epoch, base_lr) -> lr`` (``epoch`` is
0-based, ``base_lr`` the optimizer's learning rate when training began).
:class:`LearningRateScheduler` applies one at the start of every epoch;
:class:`ReduceLROnPlateau` lowers the rate when a monitored quantity stops
improving. ``History.history["lr"]`` records the rate each epoch used.

The decay formulas are Keras's, counted in epochs instead of steps.

An optimizer needs a learning rate above 0, but a schedule may reach 0:
:class:`CosineDecay` with ``alpha=0`` from its last epoch on, or a decay that
underflows. :class:`LearningRateScheduler` applies such a rate (anything from
0 up to :data:`MIN_LR`) as :data:`MIN_LR` = 1e-30. Steps that small (1e-30
times the gradient) are below the rounding of any weight of ordinary size, so
the weights stay as they are, as with Keras's rate of 0, while the
optimizer's iteration count and moments advance as in Keras, and models saved
during those epochs load like any other. ``History.history["lr"]`` then
shows 1e-30.
"""
import abc
import math

from ._validate import check_bool, check_choice, check_float, check_int
from .callbacks import Callback, _check_monitor, _decode, _decode_int, _encode, _monitor_op, _require_logged

#: the rate LearningRateScheduler applies when a schedule gives 0 (or less than this)
MIN_LR = 1e-30


class Schedule(abc.ABC):
    """Base class of the schedules: subclasses define ``__call__(epoch, base_lr)``."""

    @abc.abstractmethod
    def __call__(self, epoch, base_lr):
        """The learning rate of ``epoch`` (0-based) given the starting rate ``base_lr``."""

    def sequence(self, epochs, base_lr):
        """The rates of the first ``epochs`` epochs (handy for plots and tests)."""
        return [self(e, base_lr) for e in range(epochs)]

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """``lr = base_lr``."""

    def __call__(self, epoch, base_lr):
        return base_lr


class StepDecay(Schedule):
    """``lr = base_lr * drop ** floor(epoch / epochs_drop)``."""

    def __init__(self, drop=0.5, epochs_drop=10):
        self.drop = check_float("drop", drop, low=0.0, high=1.0, low_open=True)
        self.epochs_drop = check_int("epochs_drop", epochs_drop, minimum=1)

    def __call__(self, epoch, base_lr):
        return base_lr * self.drop ** (epoch // self.epochs_drop)


class _TimeDecay(Schedule):
    """Shared parts of the decays counted in ``epoch / decay_epochs``."""

    def __init__(self, decay_rate, decay_epochs=1, staircase=False):
        self.decay_rate = check_float("decay_rate", decay_rate, low=0.0,
                                      low_open=self._rate_positive)
        self.decay_epochs = check_int("decay_epochs", decay_epochs, minimum=1)
        self.staircase = check_bool("staircase", staircase)

    def _progress(self, epoch):
        p = epoch / self.decay_epochs
        return math.floor(p) if self.staircase else p


class ExponentialDecay(_TimeDecay):
    """``lr = base_lr * decay_rate ** (epoch / decay_epochs)`` (floored with ``staircase``)."""

    _rate_positive = True

    def __call__(self, epoch, base_lr):
        return base_lr * self.decay_rate ** self._progress(epoch)


class InverseTimeDecay(_TimeDecay):
    """``lr = base_lr / (1 + decay_rate * epoch / decay_epochs)`` (floored with ``staircase``)."""

    _rate_positive = False

    def __call__(self, epoch, base_lr):
        return base_lr / (1.0 + self.decay_rate * self._progress(epoch))


class CosineDecay(Schedule):
    """Cosine decay over ``decay_epochs`` to ``alpha`` times the peak, after an
    optional linear warm-up.

    Without warm-up the peak is ``base_lr``. With ``warmup_epochs`` the rate
    rises linearly from ``base_lr`` to ``warmup_target`` (default: ten times
    ``base_lr``) and then decays from there.
    """

    def __init__(self, decay_epochs, alpha=0.0, warmup_epochs=0, warmup_target=None):
        self.decay_epochs = check_int("decay_epochs", decay_epochs, minimum=1)
        self.alpha = check_float("alpha", alpha, low=0.0, high=1.0)
        self.warmup_epochs = check_int("warmup_epochs", warmup_epochs, minimum=0)
        self.warmup_target = (None if warmup_target is None else
                              check_float("warmup_target", warmup_target, low=0.0, low_open=True))

    def __call__(self, epoch, base_lr):
        peak = base_lr
        if self.warmup_epochs:
            peak = self.warmup_target if self.warmup_target is not None else 10.0 * base_lr
            if epoch < self.warmup_epochs:
                return base_lr + (peak - base_lr) * epoch / self.warmup_epochs
        e = min(epoch - self.warmup_epochs, self.decay_epochs)
        cos = 0.5 * (1.0 + math.cos(math.pi * e / self.decay_epochs))
        return peak * ((1.0 - self.alpha) * cos + self.alpha)


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate from ``schedule(epoch, base_lr)`` each epoch.

    ``schedule`` is a :class:`Schedule` or any callable with that signature.
    """

    def __init__(self, schedule, verbose=0):
        if not callable(schedule):
            raise TypeError("schedule must be callable as schedule(epoch, base_lr)")
        self.schedule = schedule
        self.verbose = check_int("verbose", verbose, minimum=0)
        self.base_lr = None

    def on_train_begin(self, logs=None):
        self.base_lr = self.trainer.optimizer.lr

    def on_epoch_begin(self, epoch, logs=None):
        lr = self.schedule(epoch, self.base_lr)
        if isinstance(lr, (int, float)) and not isinstance(lr, bool) and 0.0 <= lr < MIN_LR:
            lr = MIN_LR  # see the module documentation
        try:
            self.trainer.optimizer.lr = lr
        except (TypeError, ValueError) as e:
            raise ValueError(f"the schedule gave an invalid learning rate for epoch {epoch}: "
                             f"{lr!r} ({e})") from None
        if self.verbose:
            print(f"Epoch {epoch + 1}: learning rate {lr:.6g}")

    def _backup_state(self):
        return {"base_lr": _encode(self.base_lr)}

    def _restore_state(self, state):
        base = _decode(state.get("base_lr"), "base_lr")
        if base is None or not math.isfinite(base) or base <= 0:
            raise ValueError(f"base_lr must be a positive number, got {base!r}")
        self.base_lr = base


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved
    for ``patience`` epochs (Keras semantics: improvements must beat the best by
    ``min_delta``; ``cooldown`` epochs pass before waiting starts again; the
    rate never goes below ``min_lr``)."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, min_delta=1e-4, cooldown=0,
                 min_lr=0.0, mode="auto", verbose=0):
        self.monitor = _check_monitor(monitor)
        self.factor = check_float("factor", factor, low=0.0, high=1.0, low_open=True, high_open=True)
        self.patience = check_int("patience", patience, minimum=0)
        self.min_delta = abs(check_float("min_delta", min_delta))
        self.cooldown = check_int("cooldown", cooldown, minimum=0)
        self.min_lr = check_float("min_lr", min_lr, low=0.0)
        self.mode = check_choice("mode", mode, ("auto", "min", "max"))
        self.verbose = check_int("verbose", verbose, minimum=0)
        self._direction = _monitor_op(monitor, self.mode)

    def _better(self, a, b):
        if b is None:
            return True
        return a < b - self.min_delta if self._direction == "min" else a > b + self.min_delta

    def on_train_begin(self, logs=None):
        _require_logged(self, "monitor", [self.monitor])
        self.best = None
        self.wait = 0
        self.cooldown_counter = 0

    def _backup_state(self):
        return {"best": _encode(self.best), "wait": self.wait,
                "cooldown_counter": self.cooldown_counter}

    def _restore_state(self, state):
        self.best = _decode(state.get("best"), "best")
        self.wait = _decode_int(state.get("wait"), "wait")
        self.cooldown_counter = _decode_int(state.get("cooldown_counter"), "cooldown_counter")

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._better(current, self.best):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                opt = self.trainer.optimizer
                if opt.lr > self.min_lr:
                    opt.lr = max(opt.lr * self.factor, self.min_lr) or opt.lr
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {opt.lr:.6g}")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0
