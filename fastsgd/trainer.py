"""The epoch / mini-batch trainer.

Each epoch draws a fresh permutation of the training samples (seeded) and
walks it in mini-batches without replacement, the last batch keeping the
remainder: 60,000 samples at batch size 128 are 469 rounds, the last of 96.
Each round is one call into the compiled core: forward propagation, the
cost fused with the output layer, backpropagation and the optimizer's
in-place step, with the GIL released. Shuffled batches are never copied: the
GEMM packs its panels straight from the permutation.
"""
import functools
import math
import sys
import time
import warnings

import numpy as np

from . import _core, _net
from . import costs as _costs
from . import optimizers as _optimizers
from ._network import build_plan
from ._validate import as_float_matrix, as_ndarray, check_bool, check_float, check_int
from .callbacks import Callback, _overrides
from .layers import Sequential


class DivergenceWarning(RuntimeWarning):
    """Training stopped because the cost or a parameter became NaN or infinite."""


class History:
    """What happened during :meth:`Trainer.fit`.

    Attributes
    ----------
    history : dict of lists
        Per epoch: ``loss``, ``accuracy`` (classification costs),
        ``val_loss``, ``val_accuracy`` (with validation data), ``lr`` and
        ``seconds``.
    epoch : list of int
        The (0-based) epochs that completed.
    diverged : dict or None
        ``{"epoch", "batch", "lr"}`` where training stopped because the cost
        or a parameter was about to become NaN or infinite.
    """

    def __init__(self):
        self.history = {}
        self.epoch = []
        self.diverged = None

    def _append(self, epoch, logs):
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


def _prepare_targets(name, y, n, units, cost, dtype):
    """Return ``(targets, kind)``: int64 labels or a float matrix in ``dtype``."""
    y = as_ndarray(name, y, "a numpy array")
    if y.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold numbers, got dtype {y.dtype}")
    cost.check_targets(name, y)
    if y.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (labels) or 2-D (targets), got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} samples but X has {n}")
    if y.ndim == 2 and y.shape[1] == 1 and units == 1:
        y = y[:, 0]
    if y.ndim == 1:
        if y.dtype.kind in "iu" and (units > 1 or cost.name == "binary_cross_entropy"):
            if n and (y.min() < 0 or y.max() >= max(units, 2)):
                hi = max(units, 2) - 1
                raise ValueError(f"{name} holds labels outside 0..{hi} (min {y.min()}, max {y.max()})")
            if units == 1:
                return np.ascontiguousarray(y, dtype=dtype).reshape(n, 1), "float"
            return np.ascontiguousarray(y, dtype=np.int64), "labels"
        if cost.name == "cross_entropy":
            raise TypeError(f"{name} must hold integer class labels (or one-hot rows) for "
                            f"cross_entropy, got dtype {y.dtype}")
        if units != 1:
            raise ValueError(f"{name} is 1-D with non-integer values, but the output layer has "
                             f"{units} units: give integer labels or an (n, {units}) array")
        y = y.reshape(n, 1)
    if y.shape[1] != units:
        raise ValueError(f"{name} has {y.shape[1]} columns, the output layer has {units} units")
    out = np.ascontiguousarray(y, dtype=dtype)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if cost.name == "binary_cross_entropy" and (out.min() < 0 or out.max() > 1):
        raise ValueError(f"{name} must lie in [0, 1] for binary_cross_entropy")
    return out, "float"


class _FitRun:
    """What an interruption of :meth:`Trainer.fit` needs to clean up after."""

    def __init__(self):
        self.update = None       # the compiled optimizer step, once built
        self.callbacks = None    # set when on_train_begin is about to run
        self.initial_epoch = 0   # a callback (BackupAndRestore) may move it in on_train_begin
        self.ended = False       # on_train_end has been called

    def interrupted(self, trainer):
        if self.update is not None:  # the steps the compiled core applied so far
            opt = trainer.optimizer
            opt.iterations = max(opt.iterations, self.update.step - 1)
        if self.callbacks is None or self.ended:
            return
        self.ended = True
        for cb in self.callbacks:
            try:
                cb.on_train_end({"interrupted": True})
            except Exception as e:  # the interruption is what propagates
                warnings.warn(f"{type(cb).__name__}.on_train_end failed while training was "
                              f"interrupted: {e!r}", RuntimeWarning, stacklevel=3)


def _finish_on_interrupt(fit):
    """On any exception in ``fit`` (KeyboardInterrupt included), leave the optimizer's
    ``iterations`` equal to the steps applied and run ``on_train_end`` (logs
    ``{"interrupted": True}``), then let the exception propagate."""
    @functools.wraps(fit)
    def run(self, *args, **kwargs):
        self._run = _FitRun()
        try:
            return fit(self, *args, **kwargs)
        except BaseException:
            self._run.interrupted(self)
            raise
    return run


class _Progress:
    """Per-epoch progress: a bar on a terminal (verbose=1), else one line per epoch."""

    def __init__(self, verbose, epochs, batches, stream=None):
        self.verbose = verbose
        self.epochs = epochs
        self.batches = batches
        self.stream = stream or sys.stdout
        self.tty = verbose == 1 and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0

    def epoch_begin(self, epoch):
        self.t0 = time.perf_counter()
        if self.verbose == 1 and self.tty:
            self.stream.write(f"Epoch {epoch + 1}/{self.epochs}\n")

    def batch(self, done, loss):
        if not self.tty:
            return
        now = time.perf_counter()
        if now - self._last < 0.1 and done < self.batches:
            return
        self._last = now
        width = 30
        filled = int(width * done / self.batches)
        bar = "=" * max(filled - 1, 0) + (">" if filled < width else "=") + "." * (width - filled)
        elapsed = now - self.t0
        eta = elapsed / done * (self.batches - done) if done else 0.0
        self.stream.write(f"\r{done:>{len(str(self.batches))}}/{self.batches} [{bar}] "
                          f"- ETA: {eta:4.1f}s - loss: {loss:.4f}")
        self.stream.flush()

    def epoch_end(self, epoch, logs):
        if not self.verbose:
            return
        parts = [f"{logs['seconds']:.2f}s"]
        for k in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if k in logs:
                parts.append(f"{k}: {logs[k]:.4f}")
        line = " - ".join(parts)
        if self.tty:
            self.stream.write(f"\r{self.batches}/{self.batches} - {line}\x1b[K\n")
        else:
            self.stream.write(f"Epoch {epoch + 1}/{self.epochs} - {line}\n")
        self.stream.flush()


class Trainer:
    """Trains a :class:`~fastsgd.Sequential` model with mini-batch gradient descent.

    Parameters
    ----------
    model : Sequential
    cost : str or Cost
        ``"mse"``/``"quadratic"``, ``"mae"``, ``"huber"`` (any output
        activation), ``"cross_entropy"`` or ``"sparse_categorical_cross_entropy"``
        (softmax output; the latter takes integer labels only) or
        ``"binary_cross_entropy"`` (sigmoid output); see :mod:`fastsgd.costs`.
    optimizer : Optimizer or str
        e.g. ``fastsgd.SGD(lr=0.01)``.
    batch_size : int
        Samples per mini-batch (>= 1). The last batch of an epoch keeps the
        remainder.
    shuffle : bool
        Draw a new permutation each epoch (True) or keep the data order.
    seed : int or None
        Fixes the shuffling. None takes the model's seed when it has one.
    """

    def __init__(self, model, cost, optimizer, *, batch_size=32, shuffle=True, seed=None):
        if not isinstance(model, Sequential):
            raise TypeError(f"model must be a fastsgd.Sequential, got {type(model).__name__}")
        self.model = model
        self.cost = _costs.get(cost)
        out_act = model.layers[-1].activation
        need = self.cost.requires_activation
        if need is not None and out_act != need:
            raise ValueError(f"cost {self.cost.name!r} needs a {need} output layer; the model's "
                             f"last layer uses {out_act!r}")
        self.optimizer = _optimizers.get(optimizer)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.shuffle = check_bool("shuffle", shuffle)
        if seed is not None:
            seed = check_int("seed", seed, minimum=0)
        elif model.seed is not None:
            seed = int(np.random.SeedSequence(model.seed).generate_state(1)[0])
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.history = None

    # -- helpers --------------------------------------------------------------
    def _classification(self):
        return self.cost.classification or self.model.output_dim > 1

    def _judged_per_sample(self):
        """Outputs judged per sample for accuracy (every unit for binary cross-entropy)."""
        return self.model.output_dim if self.cost.name == "binary_cross_entropy" else 1

    def _build_net(self, capacity, training):
        """The compiled network for batches of ``capacity`` rows: a training plan
        with the optimizer's step attached, or an evaluation plan (no gradients)."""
        model = self.model
        plan = build_plan(model, capacity, cost=self.cost, training=training)
        net = _net.Net(plan)
        if not training:
            return net, None
        opt = self.optimizer
        slots = opt.build(plan.layout, plan.dtype, owner=model)
        update = _net.Update(plan.params, plan.grads, slots, opt.segments(plan.layout, model.layers))
        update.configure(opt.hyper())
        net.set_update(update)
        return net, update

    def _prepare(self, X, y, name_x="X", name_y="y"):
        m = self.model
        if not m.built:
            X = as_float_matrix(name_x, X, m.dtype)
            m.build(X.shape[1])
        X = as_float_matrix(name_x, X, m.dtype, m.input_dim)
        t, _ = _prepare_targets(name_y, y, X.shape[0], m.output_dim, self.cost, m.dtype)
        return X, t

    def _evaluate_net(self, net, cap, n):
        """Mean cost (and accuracy) over the ``n`` rows bound to ``net``."""
        loss = 0.0
        correct = 0
        for start in range(0, n, cap):
            ls, c = net.eval_batch(start, min(cap, n - start))
            loss += ls
            correct += c
        out = {"loss": loss / n}
        if self._classification():
            out["accuracy"] = correct / (n * self._judged_per_sample())
        return out

    # -- public API -------------------------------------------------------------
    @_finish_on_interrupt
    def fit(self, X, y, *, epochs=1, validation_data=None, validation_split=0.0, callbacks=(),
            verbose=1, initial_epoch=0):
        """Train for ``epochs`` passes over ``(X, y)``.

        Parameters
        ----------
        X : array, shape (n, inputs)
            Any real dtype and memory layout; converted once per fit (never
            per batch) to a C-contiguous array of the model's dtype.
        y : array
            Integer class labels (n,) or targets (n, units).
        epochs : int
        validation_data : (X_val, y_val), optional
        validation_split : float in [0, 1)
            Hold out the *last* fraction of ``(X, y)``, taken before any
            shuffling (as Keras does), for validation.
        callbacks : sequence of Callback
        verbose : {0, 1, 2}
            0 silent; 1 a progress bar on a terminal (one line per epoch
            otherwise); 2 one line per epoch.
        initial_epoch : int
            The epoch to start at (Keras's meaning: ``epochs`` is the index
            to stop before, so ``epochs - initial_epoch`` epochs run).
            :class:`~fastsgd.BackupAndRestore` sets it from its backup.

        If an exception interrupts training (KeyboardInterrupt included),
        the optimizer's ``iterations`` counts the steps applied, callbacks
        get ``on_train_end({"interrupted": True})`` (so EarlyStopping still
        restores its best weights), and the exception propagates.

        Returns
        -------
        History
            Also kept as ``self.history``. If the cost or a gradient turns
            NaN or infinite, the step is not applied and training stops with
            the last finite weights; a :class:`DivergenceWarning` is issued
            and ``History.diverged`` says where. (A weight whose step would
            overflow keeps its old value: weights never become NaN or
            infinite.)
        """
        epochs = check_int("epochs", epochs, minimum=1)
        initial_epoch = check_int("initial_epoch", initial_epoch, minimum=0)
        if initial_epoch > epochs:
            raise ValueError(f"initial_epoch ({initial_epoch}) must not exceed epochs ({epochs})")
        verbose = check_int("verbose", verbose, minimum=0)
        if verbose > 2:
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose}")
        validation_split = check_float("validation_split", validation_split, low=0.0, high=1.0,
                                       high_open=True)
        callbacks = list(callbacks or ())
        for i, cb in enumerate(callbacks):
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks[{i}] must be a fastsgd Callback, got {type(cb).__name__}")
        if validation_data is not None and validation_split:
            raise ValueError("give validation_data or validation_split, not both")

        X, t = self._prepare(X, y)
        Xv = tv = None
        if validation_split:
            n_val = int(math.floor(X.shape[0] * validation_split))
            if n_val < 1 or n_val >= X.shape[0]:
                raise ValueError(f"validation_split={validation_split} leaves no samples for "
                                 f"{'validation' if n_val < 1 else 'training'}")
            X, Xv = X[:-n_val], X[-n_val:]
            t, tv = t[:-n_val], t[-n_val:]
        elif validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a tuple (X_val, y_val)")
            Xv, tv = self._prepare(validation_data[0], validation_data[1], "validation X",
                                   "validation y")

        n = X.shape[0]
        bs = min(self.batch_size, n)
        n_batches = -(-n // bs)
        net, update = self._build_net(bs, training=True)
        self._run.update = update
        net.bind(X, t)
        eval_net = None
        if Xv is not None:
            eval_cap = min(Xv.shape[0], max(bs, 1024))
            eval_net, _ = self._build_net(eval_cap, training=False)
            eval_net.bind(Xv, tv)

        history = History()
        self.history = history
        model = self.model
        model.stop_training = False
        callbacks.sort(key=lambda cb: bool(getattr(cb, "_acts_last", False)))  # backups act last
        logged = ["loss"] + (["accuracy"] if self._classification() else [])
        params = {"epochs": epochs, "steps": n_batches, "verbose": verbose,
                  "metrics": logged + [f"val_{k}" for k in logged if eval_net is not None]
                  + ["lr", "seconds"]}
        for cb in callbacks:
            cb.set_trainer(self)
            cb.set_params(params)
        batch_cbs = [cb for cb in callbacks if _overrides(cb, "on_batch_end")]
        progress = _Progress(verbose, epochs, n_batches)
        classification = self._classification()
        acc_denom = self._judged_per_sample()
        opt = self.optimizer
        order = np.arange(n, dtype=np.int64)  # the rows of each epoch, in batch order

        self._run.callbacks = callbacks
        self._run.initial_epoch = initial_epoch
        for cb in callbacks:
            cb.on_train_begin({})
        for epoch in range(self._run.initial_epoch, epochs):
            for cb in callbacks:
                cb.on_epoch_begin(epoch, {"lr": opt.lr})
            update.configure(opt.hyper())
            lr_used = opt.lr
            if self.shuffle:
                perm = np.asarray(self._rng.permutation(n), dtype=np.int64)
                net.set_order(perm)
                order = perm
            if batch_cbs:
                order.flags.writeable = False
            progress.epoch_begin(epoch)
            t0 = time.perf_counter()
            loss_sum = 0.0
            correct = 0
            seen = 0
            stopped = False
            for b in range(n_batches):
                start = b * bs
                nb = min(bs, n - start)
                try:
                    ls, c = net.train_batch(start, nb)
                except _core.NonFiniteError:
                    opt.iterations = update.step - 1
                    history.diverged = {"epoch": epoch, "batch": b, "lr": opt.lr}
                    warnings.warn(
                        f"training diverged at epoch {epoch + 1}, batch {b + 1}: the cost or a "
                        f"weight would have become NaN or infinite, so training stopped and "
                        f"the model keeps its last finite weights. The learning rate "
                        f"(lr={opt.lr:g}) is probably too high: try lr={opt.lr / 10:g}.",
                        DivergenceWarning, stacklevel=2)
                    stopped = True
                    break
                loss_sum += ls
                correct += c
                seen += nb
                if batch_cbs:
                    blogs = {"batch": b, "size": nb, "loss": ls / nb,
                             "indices": order[start:start + nb]}
                    if classification:
                        blogs["accuracy"] = c / (nb * acc_denom)
                    for cb in batch_cbs:
                        cb.on_batch_end(b, blogs)
                    if opt.lr != lr_used:
                        update.lr = opt.lr
                        lr_used = opt.lr
                    if model.stop_training:
                        break
                if progress.tty:
                    progress.batch(b + 1, loss_sum / seen)
            opt.iterations = update.step - 1
            if stopped:
                break
            logs = {"loss": loss_sum / seen}
            if classification:
                logs["accuracy"] = correct / (seen * acc_denom)
            if eval_net is not None:
                v = self._evaluate_net(eval_net, eval_cap, Xv.shape[0])
                logs["val_loss"] = v["loss"]
                if "accuracy" in v:
                    logs["val_accuracy"] = v["accuracy"]
            logs["lr"] = lr_used
            logs["seconds"] = time.perf_counter() - t0
            history._append(epoch, logs)
            progress.epoch_end(epoch, logs)
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        self._run.ended = True
        for cb in callbacks:
            cb.on_train_end({})
        return history

    def gradients(self, X, y):
        """The mean cost on ``(X, y)`` and its gradients, without a step.

        Returns ``(loss, grads)`` with ``grads = [dW0, db0, dW1, db1, ...]``
        (new arrays), computed by the same compiled backward pass as
        training, on all of ``X`` as one batch (dropout draws the masks of
        the optimizer's next step; batch normalization uses the batch's
        statistics and leaves its moving statistics alone).
        """
        X, t = self._prepare(X, y)
        plan = build_plan(self.model, X.shape[0], cost=self.cost, training=True)
        net = _net.Net(plan)
        net.seed_step = self.optimizer.iterations
        net.bind(X, t)
        loss, _ = net.train_batch(0, X.shape[0], update=False)
        return loss / X.shape[0], plan.layout.views(plan.grads.copy())

    def evaluate(self, X, y, *, batch_size=1024):
        """Mean cost (and accuracy for classification costs) on ``(X, y)``.

        Returns ``{"loss": float, "accuracy": float}`` (no accuracy for a
        single-output MSE regression).
        """
        batch_size = check_int("batch_size", batch_size, minimum=1)
        if not self.model.built:
            raise RuntimeError("the model has no weights yet: fit it or give the first layer input_dim")
        X, t = self._prepare(X, y)
        cap = min(X.shape[0], batch_size)
        net, _ = self._build_net(cap, training=False)
        net.bind(X, t)
        return self._evaluate_net(net, cap, X.shape[0])
