"""Callbacks: hooks into the training loop (Keras-style).

The trainer calls ``on_train_begin``, then per epoch ``on_epoch_begin``,
``on_batch_end`` after every mini-batch (logs: ``batch``, ``size``,
``loss``, ``accuracy`` when defined, and ``indices``: a read-only view of
the sample rows in the batch) and ``on_epoch_end`` (logs: ``loss``,
``accuracy``, ``val_loss``, ``val_accuracy``, ``lr``, ``seconds``), and
finally ``on_train_end``. A callback stops training by setting
``self.model.stop_training = True``.
"""
import math
import os
import warnings

from ._validate import check_choice, check_float, check_int


class Callback:
    """Base class; override the hooks you need."""

    model = None
    trainer = None

    def set_trainer(self, trainer):
        self.trainer = trainer
        self.model = trainer.model

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass


def _monitor_op(monitor, mode):
    if mode == "auto":
        name = monitor.lower()
        mode = "max" if ("acc" in name or name.endswith("auc")) else "min"
    return mode


class EarlyStopping(Callback):
    """Stop when a monitored quantity has stopped improving (Keras 3 semantics).

    Parameters
    ----------
    monitor : str
        A key of the epoch logs (default ``"val_loss"``).
    min_delta : float
        Smallest change that counts as an improvement (its sign is ignored).
    patience : int
        Epochs without improvement after which training stops.
    mode : {"auto", "min", "max"}
        ``auto`` picks ``max`` for accuracy-like names, else ``min``.
    baseline : float or None
        Training also stops if the quantity does not beat this within
        ``patience`` epochs.
    restore_best_weights : bool
        At the end of training, restore the weights of the best epoch, also
        when training did not stop early.
    start_from_epoch : int
        Epochs to wait before improvement is monitored at all.

    Attributes
    ----------
    stopped_epoch : int
        The (0-based) epoch at which training stopped; 0 if it did not stop early.
    best, best_epoch : the best value seen and its epoch.

    At the end of training the trainer's :class:`~fastsgd.History` gets an
    ``early_stopping`` dict (``monitor``, ``best_epoch``, ``stopped_epoch``:
    0-based or None, ``restored``) that ``History.plot()`` marks.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"monitor must be a non-empty string, got {monitor!r}")
        self.monitor = monitor
        self.min_delta = abs(check_float("min_delta", min_delta))
        self.patience = check_int("patience", patience, minimum=0)
        self.verbose = check_int("verbose", verbose, minimum=0)
        self.mode = check_choice("mode", mode, ("auto", "min", "max"))
        self.baseline = None if baseline is None else check_float("baseline", baseline)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = check_int("start_from_epoch", start_from_epoch, minimum=0)
        self._direction = _monitor_op(monitor, self.mode)

    def _improved(self, current, reference):
        if reference is None:
            return True
        if self._direction == "min":
            return current + self.min_delta < reference
        return current - self.min_delta > reference

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"EarlyStopping: monitor {self.monitor!r} is not in the logs "
                          f"(available: {', '.join(sorted(logs or {}))})", RuntimeWarning,
                          stacklevel=2)
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._improved(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        history = getattr(self.trainer, "history", None)
        if history is not None:  # for History.plot: where training stopped and the best epoch
            history.early_stopping = {
                "monitor": self.monitor,
                "best_epoch": self.best_epoch if self.best is not None else None,
                "stopped_epoch": self.stopped_epoch if self.stopped_epoch > 0 else None,
                "restored": self.restore_best_weights and self.best_weights is not None}
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model at the end of epochs, atomically.

    ``path`` may hold format fields filled from the epoch (1-based) and the
    logs, e.g. ``"model-{epoch:02d}-{val_loss:.3f}.npz"``. With
    ``save_best_only`` a file is written only when ``monitor`` improves.
    The optimizer's state is saved with the weights so that a run can resume
    exactly.
    """

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto", verbose=0):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or path-like, got {type(path).__name__}")
        self.path = os.fspath(path)
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a string, got {monitor!r}")
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.mode = check_choice("mode", mode, ("auto", "min", "max"))
        self.verbose = check_int("verbose", verbose, minimum=0)
        self._direction = _monitor_op(monitor, self.mode)
        self.best = None

    def on_train_begin(self, logs=None):
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None or (isinstance(current, float) and math.isnan(current)):
                warnings.warn(f"ModelCheckpoint: monitor {self.monitor!r} is not in the logs; "
                              "nothing saved", RuntimeWarning, stacklevel=2)
                return
            better = (self.best is None or
                      (current < self.best if self._direction == "min" else current > self.best))
            if not better:
                return
            self.best = current
        path = self.path.format(epoch=epoch + 1, **logs)
        opt = self.trainer.optimizer if self.trainer is not None else None
        self.model.save(path, optimizer=opt)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved model to {path}")


class LambdaCallback(Callback):
    """A callback from plain functions, e.g. ``LambdaCallback(on_epoch_end=lambda e, logs: ...)``."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_batch_end=None,
                 on_train_begin=None, on_train_end=None):
        for name, fn in (("on_epoch_begin", on_epoch_begin), ("on_epoch_end", on_epoch_end),
                         ("on_batch_end", on_batch_end), ("on_train_begin", on_train_begin),
                         ("on_train_end", on_train_end)):
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"{name} must be callable")
                setattr(self, name, fn)


def _overrides(cb, name):
    """True if ``cb`` does something in hook ``name`` (so the trainer must call it)."""
    fn = getattr(cb, name)
    base = getattr(Callback, name)
    return getattr(fn, "__func__", fn) is not base

