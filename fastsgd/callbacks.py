"""Callbacks: hooks into the training loop (Keras-style).

The trainer calls ``on_train_begin``, then per epoch ``on_epoch_begin``,
``on_batch_end`` after every mini-batch (logs: ``batch``, ``size``,
``loss``, ``accuracy`` when defined, and ``indices``: a read-only view of
the sample rows in the batch) and ``on_epoch_end`` (logs: ``loss``,
``accuracy``, ``val_loss``, ``val_accuracy``, ``lr``, ``seconds``), and
finally ``on_train_end`` -- also when training is interrupted by an
exception (then with logs ``{"interrupted": True}``), after which the
exception propagates. A callback stops training by setting
``self.model.stop_training = True``.

Before ``on_train_begin`` the trainer calls ``set_params`` with ``epochs``,
``steps`` (batches per epoch), ``verbose`` and ``metrics``: the keys the
epoch logs will hold. Callbacks that monitor a quantity or format it into a
file name check it against ``metrics`` there, so a name the fit does not log
(say ``val_loss`` without validation data) raises ``ValueError`` before
training rather than failing after an epoch.
"""
import math
import os
import string
import warnings

from ._validate import check_bool, check_choice, check_float, check_int
from .io import MAX_PARAM_SETS, _load, save_model


class Callback:
    """Base class; override the hooks you need."""

    model = None
    trainer = None
    params = None

    def set_trainer(self, trainer):
        self.trainer = trainer
        self.model = trainer.model

    def set_params(self, params):
        """Called by the trainer before ``on_train_begin`` (see the module documentation)."""
        self.params = params

    def _backup_state(self):
        """What :class:`BackupAndRestore` keeps of this callback: a JSON-able dict (finite
        numbers), optionally with ``"weights"``, a list of parameter arrays; None for nothing."""
        return None

    def _restore_state(self, state):
        """Take back what :meth:`_backup_state` gave (validated; raise ValueError if not)."""

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


def _is_writer(cb):
    """False on the ranks other than 0 of a data-parallel fit (Trainer ``comm``): only
    rank 0 writes files and prints."""
    comm = getattr(cb.trainer, "comm", None)
    return comm is None or comm.Get_rank() == 0


def _check_monitor(monitor):
    if not isinstance(monitor, str) or not monitor:
        raise TypeError(f"monitor must be a non-empty string, got {monitor!r}")
    return monitor


def _require_logged(cb, what, names):
    """ValueError if the fit will not log every key in ``names`` (when the trainer said)."""
    metrics = (cb.params or {}).get("metrics")
    if metrics is None:
        return
    missing = [n for n in names if n not in metrics and n != "epoch"]
    if missing:
        hint = (" (val_* quantities need validation_data or validation_split)"
                if any(n.startswith("val_") for n in missing) else "")
        raise ValueError(f"{type(cb).__name__}: {what} uses {', '.join(map(repr, missing))}, "
                         f"which this fit does not log; it logs {', '.join(metrics)}{hint}")


def _encode(value):
    """A float for JSON: non-finite ones as the strings 'inf', '-inf', 'nan'."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else repr(value)


def _decode(value, name):
    if value is None:
        return None
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number or null, got {value!r}")
    return float(value)


def _decode_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative whole number, got {value!r}")
    return value


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
        self.monitor = _check_monitor(monitor)
        self.min_delta = abs(check_float("min_delta", min_delta))
        self.patience = check_int("patience", patience, minimum=0)
        self.verbose = check_int("verbose", verbose, minimum=0)
        self.mode = check_choice("mode", mode, ("auto", "min", "max"))
        self.baseline = None if baseline is None else check_float("baseline", baseline)
        self.restore_best_weights = check_bool("restore_best_weights", restore_best_weights)
        self.start_from_epoch = check_int("start_from_epoch", start_from_epoch, minimum=0)
        self._direction = _monitor_op(monitor, self.mode)
        self._reset()

    def _improved(self, current, reference):
        if reference is None:
            return True
        if self._direction == "min":
            return current + self.min_delta < reference
        return current - self.min_delta > reference

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_train_begin(self, logs=None):
        _require_logged(self, "monitor", [self.monitor])
        self._reset()

    def _backup_state(self):
        return {"wait": self.wait, "stopped_epoch": self.stopped_epoch,
                "best": _encode(self.best), "best_epoch": self.best_epoch,
                "weights": self.best_weights}

    def _restore_state(self, state):
        self.wait = _decode_int(state.get("wait"), "wait")
        self.stopped_epoch = _decode_int(state.get("stopped_epoch"), "stopped_epoch")
        self.best = _decode(state.get("best"), "best")
        self.best_epoch = _decode_int(state.get("best_epoch"), "best_epoch")
        self.best_weights = state.get("weights")

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
        if self.stopped_epoch > 0 and self.verbose and _is_writer(self):
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose and _is_writer(self):
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
        if not isinstance(self.path, str):
            raise TypeError("path must be a text path, not bytes")
        self._fields = _format_fields(self.path)
        self.monitor = _check_monitor(monitor)
        self.save_best_only = check_bool("save_best_only", save_best_only)
        self.mode = check_choice("mode", mode, ("auto", "min", "max"))
        self.verbose = check_int("verbose", verbose, minimum=0)
        self._direction = _monitor_op(monitor, self.mode)
        self.best = None

    def on_train_begin(self, logs=None):
        self.best = None
        _require_logged(self, f"path {self.path!r}", self._fields)
        if self.save_best_only:
            _require_logged(self, "monitor", [self.monitor])
        metrics = (self.params or {}).get("metrics")
        if metrics is not None:  # try the format once, with stand-in values
            self._format(0, {k: 0.0 for k in metrics})

    def _format(self, epoch, logs):
        try:
            return self.path.format(**{**logs, "epoch": epoch + 1})
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as e:
            raise ValueError(f"ModelCheckpoint path {self.path!r} cannot be filled from the "
                             f"epoch and the logs ({type(e).__name__}: {e}); available: epoch, "
                             f"{', '.join(sorted(logs))}") from None

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
        if not _is_writer(self):  # data-parallel: rank 0 writes
            return
        path = self._format(epoch, logs)
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)  # as Keras does
        opt = self.trainer.optimizer if self.trainer is not None else None
        self.model.save(path, optimizer=opt)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved model to {path}")

    def _backup_state(self):
        return {"best": _encode(self.best)}

    def _restore_state(self, state):
        self.best = _decode(state.get("best"), "best")


def _format_fields(path):
    """The names a ``str.format`` template uses; ValueError unless each is a plain name."""
    try:
        parsed = list(string.Formatter().parse(path))
    except ValueError as e:
        raise ValueError(f"path {path!r} is not a valid format template ({e}); write a literal "
                         "brace as {{ or }}") from None
    names = []
    for _, name, spec, _ in parsed:
        if name is None:
            continue
        if not name.isidentifier():
            raise ValueError(f"path {path!r} uses the field {{{name}}}; only plain names such "
                             "as {epoch} or {val_loss} are allowed")
        if spec and ("{" in spec or "}" in spec):
            raise ValueError(f"path {path!r} nests a field inside a format spec")
        names.append(name)
    return names


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


class BackupAndRestore(Callback):
    """Back up the run at the end of every epoch; resume from the backup after a crash.

    Keras's callback of the same name and meaning. At the end of each epoch
    one file, ``backup_dir/backup.npz``, is written atomically: the model's
    weights, the optimizer's state (iteration count, moments, learning rate),
    the epoch, the trainer's shuffling RNG state and the state of the
    built-in callbacks (EarlyStopping, ModelCheckpoint, ReduceLROnPlateau,
    LearningRateScheduler). A ``fit`` started while that file exists restores
    all of it and continues at the next epoch, so ``epochs`` is the total, as
    in Keras, and the result is bit-identical to a run that was never
    interrupted. When ``fit`` completes (also by early stopping or
    divergence) the backup is deleted, unless ``delete_checkpoint=False``; a
    fit interrupted by an exception keeps it.

    The trainer calls this callback after all others at every hook, so its
    backup sees their decisions of the epoch. Only ``save_freq="epoch"`` is
    supported. A backup of a different model or optimizer class, or a
    damaged one, raises ``ValueError`` naming the file.
    """

    _acts_last = True
    FILENAME = "backup.npz"

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        if not isinstance(backup_dir, (str, os.PathLike)):
            raise TypeError(f"backup_dir must be a str or path-like, got {type(backup_dir).__name__}")
        self.backup_dir = os.fspath(backup_dir)
        if not isinstance(self.backup_dir, str):
            raise TypeError("backup_dir must be a text path, not bytes")
        if not self.backup_dir:
            raise ValueError("backup_dir must not be empty")
        if not isinstance(save_freq, str):
            raise TypeError(f"save_freq must be 'epoch', got {save_freq!r}")
        self.save_freq = check_choice("save_freq", save_freq, ("epoch",))
        self.delete_checkpoint = check_bool("delete_checkpoint", delete_checkpoint)
        #: the epoch (0-based) a fit resumed after, or None
        self.restored_epoch = None

    @property
    def path(self):
        """The backup file."""
        return os.path.join(self.backup_dir, self.FILENAME)

    def _others(self):
        run = getattr(self.trainer, "_run", None)
        return [cb for cb in (getattr(run, "callbacks", None) or ()) if cb is not self]

    def on_train_begin(self, logs=None):
        self.restored_epoch = None
        os.makedirs(self.backup_dir, exist_ok=True)
        stale = f".tmp-{self.FILENAME}."  # left by a write that was killed (see atomic_write)
        for name in os.listdir(self.backup_dir) if _is_writer(self) else ():
            if name.startswith(stale) and name.endswith(".part"):
                try:
                    os.unlink(os.path.join(self.backup_dir, name))
                except OSError:
                    pass
        if os.path.exists(self.path):
            self._restore()

    def on_epoch_end(self, epoch, logs=None):
        if not _is_writer(self):  # data-parallel: rank 0 writes the backup
            return
        states, sets = [], []
        for cb in self._others():
            st = cb._backup_state()
            if st is not None:
                st = dict(st)
                weights = st.pop("weights", None)
                if weights is not None:
                    st["weights"] = len(sets)
                    sets.append(list(weights))
            states.append({"class": type(cb).__name__, "state": st})
        if len(sets) > MAX_PARAM_SETS:
            raise ValueError(f"BackupAndRestore keeps at most {MAX_PARAM_SETS} callbacks' weights")
        rng = getattr(self.trainer, "_rng", None)
        record = {"epoch": epoch, "stop_training": bool(self.model.stop_training),
                  "rng": None if rng is None else rng.bit_generator.state, "callbacks": states}
        save_model(self.model, self.path, optimizer=self.trainer.optimizer,
                   _extra={"backup": record}, _param_sets=sets)

    def on_train_end(self, logs=None):
        if (logs or {}).get("interrupted") or not self.delete_checkpoint or not _is_writer(self):
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _restore(self):
        import copy

        path, trainer, model = self.path, self.trainer, self.model

        def bad(why):
            return ValueError(f"{path} cannot be restored: {why}")

        # everything is read and checked before anything is changed: the state goes into a
        # scratch optimizer of the same class and settings first
        try:
            opt = type(trainer.optimizer)(**trainer.optimizer.get_config())
        except (TypeError, ValueError):  # a subclass with other parameters
            opt = copy.deepcopy(trainer.optimizer)
        loaded, opt, meta, sets = _load(path, optimizer=opt, param_sets=True)
        if loaded.dtype != model.dtype or \
                loaded.get_config()["layers"] != model.get_config()["layers"]:
            raise bad("it is the backup of a different model (layers or dtype differ)")
        info = meta.get("optimizer")
        if info is None or info.get("class") != type(trainer.optimizer).__name__:
            raise bad(f"it holds no state of a {type(trainer.optimizer).__name__} optimizer")
        lr = info.get("config", {}).get("lr")
        try:
            lr = check_float("lr", lr, low=0.0, low_open=True)
        except (TypeError, ValueError) as e:
            raise bad(f"the saved learning rate is invalid ({e})") from None
        record = (meta.get("extra") or {}).get("backup")
        if not isinstance(record, dict):
            raise bad("it holds no backup record")
        try:
            epoch = _decode_int(record.get("epoch"), "epoch")
            stop = record.get("stop_training")
            if not isinstance(stop, bool):
                raise ValueError(f"stop_training must be true or false, got {stop!r}")
            states = record.get("callbacks")
            if not isinstance(states, list):
                raise ValueError("the callbacks' states are not a list")
        except ValueError as e:
            raise bad(str(e)) from None
        rng = getattr(trainer, "_rng", None)
        rng_state = record.get("rng")
        if rng is not None:
            try:  # try the state on a scratch generator of the same kind first
                type(rng.bit_generator)().state = rng_state
            except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:
                raise bad(f"the saved random-number state is invalid ({type(e).__name__}: {e})") \
                    from None
        pending = []
        for i, cb in enumerate(self._others()):
            if i >= len(states):
                break
            rec = states[i]
            if not isinstance(rec, dict) or rec.get("class") != type(cb).__name__:
                continue  # the callbacks changed since the backup: this one starts afresh
            st = rec.get("state")
            if st is None:
                continue
            if not isinstance(st, dict):
                raise bad(f"the state of callback {i} ({type(cb).__name__}) is not a record")
            st = dict(st)
            w = st.get("weights")
            if w is not None:
                if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w < len(sets):
                    raise bad(f"callback {i} refers to weights {w!r} that the file lacks")
                st["weights"] = [a.copy() for a in sets[w]]
            pending.append((i, cb, st))
        for i, cb, st in pending:
            try:
                cb._restore_state(st)
            except (TypeError, ValueError, KeyError, AttributeError) as e:
                raise bad(f"the state of callback {i} ({type(cb).__name__}) is invalid "
                          f"({e})") from None
        model.set_weights(loaded.get_weights())
        saved = opt.get_state()
        # copied into the optimizer's own flat slots: the trainer's compiled step
        # already points at them (fit builds it before on_train_begin)
        trainer.optimizer.restore_in_place(saved)
        trainer.optimizer.lr = lr
        if rng is not None:
            rng.bit_generator.state = rng_state
        start = epoch + 1
        if stop:  # the run had decided to stop: train no further
            start = max(start, (self.params or {}).get("epochs", start))
        run = getattr(trainer, "_run", None)
        if run is not None:
            run.initial_epoch = start
        self.restored_epoch = epoch


def _overrides(cb, name):
    """True if ``cb`` does something in hook ``name`` (so the trainer must call it)."""
    fn = getattr(cb, name)
    base = getattr(Callback, name)
    return getattr(fn, "__func__", fn) is not base

