"""The epoch / mini-batch trainer.

Each epoch draws a fresh permutation of the training samples (seeded) and
walks it in mini-batches without replacement, the last batch keeping the
remainder: 60,000 samples at batch size 128 are 469 rounds, the last of 96.
Each round is one call into the compiled core: forward propagation, the
cost fused with the output layer, backpropagation and the optimizer's
in-place step, with the GIL released. Shuffled batches are never copied: the
GEMM packs its panels straight from the permutation.
"""
from __future__ import annotations

import functools
import math
import sys
import threading
import time
import warnings
import weakref
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

from . import _core, _feeds, _inputs, _net
from . import costs as _costs
from . import optimizers as _optimizers
from ._network import build_plan
from ._validate import as_ndarray, check_bool, check_float, check_int
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

    def plot(self, metrics=None, ax=None):
        """Plot the cost and accuracy per epoch (training and validation),
        marking the early-stopping point when known; needs matplotlib.
        Returns the Figure. See :func:`fastsgd.plotting.plot_history`."""
        from .plotting import plot_history
        return plot_history(self, metrics=metrics, ax=ax)


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


_FIT_LOCKS = weakref.WeakKeyDictionary()   # model -> the lock its fit holds
_FIT_LOCKS_GUARD = threading.Lock()


def _fit_lock(model):
    with _FIT_LOCKS_GUARD:
        lock = _FIT_LOCKS.get(model)
        if lock is None:
            lock = _FIT_LOCKS[model] = threading.Lock()
        return lock


def _finish_on_interrupt(fit):
    """On any exception in ``fit`` (KeyboardInterrupt included), leave the optimizer's
    ``iterations`` equal to the steps applied and run ``on_train_end`` (logs
    ``{"interrupted": True}``), then let the exception propagate."""
    @functools.wraps(fit)
    def run(self, *args, **kwargs):
        lock = _fit_lock(self.model)
        if not lock.acquire(blocking=False):
            raise RuntimeError("this model is already being trained by another fit() call (in "
                               "another thread): two fits would interleave their steps; train "
                               "it from one thread at a time, or train a copy")
        try:
            self._run = _FitRun()
            try:
                return fit(self, *args, **kwargs)
            except BaseException:
                self._run.interrupted(self)
                raise
        finally:
            lock.release()
    return run


def _check_weights(name, w, n):
    """A copy of per-sample weights as float64 (n,), finite and non-negative, or None."""
    if w is None:
        return None
    w = as_ndarray(name, w, "a 1-D array of non-negative numbers")
    if w.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold numbers, got dtype {w.dtype}")
    w = np.array(w, dtype=np.float64).reshape(-1) if w.ndim == 1 else w
    if w.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {np.shape(w)}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"{name} must hold finite, non-negative numbers")
    return w


def _row_weights(sample_weight, class_weight, t, n, units):
    """Per-row weights from ``sample_weight`` and ``class_weight`` (or None)."""
    w = _check_weights("sample_weight", sample_weight, n)
    if class_weight is None:
        return w
    if t.dtype == np.int64:
        labels = t if units > 1 else t.astype(np.int64)
    elif t.ndim == 2 and t.shape[1] > 1:
        labels = t.argmax(axis=1)
    else:
        labels = np.rint(t.reshape(-1)).astype(np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be a dict or 'balanced', got {class_weight!r}")
        table = {int(c): n / (len(classes) * k) for c, k in zip(classes, counts)}
    elif isinstance(class_weight, dict):
        table = {}
        for c, v in class_weight.items():
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                    or not np.isfinite(v) or v < 0:
                raise ValueError(f"class_weight[{c!r}] must be a finite, non-negative number")
            table[c] = float(v)
    else:
        raise TypeError(f"class_weight must be a dict or 'balanced', got "
                        f"{type(class_weight).__name__}")
    per_row = np.array([table.get(int(c), 1.0) for c in classes], dtype=np.float64)
    cw = per_row[np.searchsorted(classes, labels)]
    return cw if w is None else w * cw


def _is_source(X, y):
    """True for a streamed source: y is None and X is a callable or an
    iterable of (X, y) chunks rather than an array."""
    if y is not None or isinstance(X, (np.ndarray, str, bytes)) or hasattr(X, "shape"):
        return False
    return callable(X) or hasattr(X, "__iter__")


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
        self.done = done
        if not self.tty:
            return
        now = time.perf_counter()
        if now - self._last < 0.1 and (self.batches is None or done < self.batches):
            return
        self._last = now
        if self.batches is None:   # a streamed source's first epoch: the count is not known
            self.stream.write(f"\r{done} batches - loss: {loss:.4f}")
            self.stream.flush()
            return
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
            n = self.batches if self.batches is not None else getattr(self, "done", 0)
            self.stream.write(f"\r{n}/{n} - {line}\x1b[K\n")
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
    shuffle : bool or "chunks"
        Draw a new permutation each epoch (True), keep the data order
        (False), or shuffle chunk-ordered for data read from disk
        (``"chunks"``: see :mod:`fastsgd._feeds`).
    seed : int or None
        Fixes the shuffling. None takes the model's seed when it has one.
    chunk_rows, buffer_chunks : int
        The chunk-ordered shuffle's chunk size and how many chunks are mixed
        at a time (``shuffle="chunks"``).
    shuffle_buffer : int
        Rows gathered and shuffled at a time when training from a streamed
        source (see :meth:`fit`).
    comm : mpi4py communicator or None
        Train data-parallel across the ranks of ``comm`` (e.g.
        ``MPI.COMM_WORLD``): every rank calls :meth:`fit` with the same
        arguments and gets the weights a single process would compute. See
        :mod:`fastsgd.distributed`.
    threads_per_rank : int or None
        With ``comm``: kernel threads per rank (default: ``FASTSGD_NUM_THREADS``,
        else ``OMP_NUM_THREADS``, else the node's cores divided by its ranks).
    check_sync : bool
        With ``comm``: compare a digest of the weights and optimizer state
        across the ranks after every epoch and raise if they differ (a debug
        check; also turned on by ``FASTSGD_CHECK_SYNC=1``).
    sparse_input : "auto", True or False
        Whether :meth:`fit` trains a dense NumPy ``X`` through the sparse
        first layer, which works on the nonzeros only: the array is converted
        once per fit into CSR form (column indices and values of its
        nonzeros, in the model's dtype, with a Rescaling's scale applied). The
        weights are those of the same data given as a ``scipy.sparse``
        matrix. ``"auto"`` (the default) converts when at most
        ``fastsgd._inputs.SPARSE_INPUT_MAX_DENSITY`` (0.25) of the values are
        nonzero, the break-even measured for the book's networks, and the
        CSR arrays take no more memory than the array; ``True`` converts
        whatever the density; ``False`` never converts. Only the training
        ``X`` is converted, only an in-memory array (never a memory map or a
        row-indexable dataset), only when the first layer is ``Dense`` and
        no Rescaling offset is set, and not in data-parallel training
        (``comm``). :attr:`input_mode` says how the last fit read ``X``.

    Attributes
    ----------
    input_mode : str or None
        How the last :meth:`fit` read its training ``X``: ``"direct"`` (an
        array of the model's dtype, in place), ``"convert"`` (rows converted
        per batch), ``"rows"`` (a row-indexable dataset), ``"csr"`` (a
        ``scipy.sparse`` matrix), ``"dense->csr"`` (a dense array converted
        to CSR, see ``sparse_input``) or ``"stream"``; None before the first
        fit.
    """

    def __init__(self, model: Sequential, cost: Union[str, _costs.Cost],
                 optimizer: Union[str, _optimizers.Optimizer], *, batch_size: int = 32,
                 shuffle: Union[bool, str] = True, seed: Optional[int] = None,
                 chunk_rows: int = 4096, buffer_chunks: int = 4,
                 shuffle_buffer: int = 10000, comm: Optional[Any] = None,
                 threads_per_rank: Optional[int] = None, check_sync: bool = False,
                 sparse_input: Union[str, bool] = "auto") -> None:
        if not isinstance(model, Sequential):
            raise TypeError(f"model must be a fastsgd.Sequential, got {type(model).__name__}")
        self.model = model
        self.cost = _costs.get(cost)
        out_act = model.layers[-1].activation
        need = self.cost.requires_activation
        if need is not None and out_act != need:
            raise ValueError(f"cost {self.cost.name!r} needs a {need} output layer; the model's "
                             f"last layer uses {out_act!r}")
        if self.cost.name == "cross_entropy" and model.output_dim < 2:
            raise ValueError(f"cost {self.cost.name!r} needs at least two output units (a softmax "
                             f"over one unit is always 1); for two classes use one sigmoid unit "
                             f"with 'binary_cross_entropy'")
        self.optimizer = _optimizers.get(optimizer)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.shuffle = shuffle if shuffle == "chunks" else check_bool("shuffle", shuffle)
        self.chunk_rows = check_int("chunk_rows", chunk_rows, minimum=1)
        self.buffer_chunks = check_int("buffer_chunks", buffer_chunks, minimum=1)
        self.shuffle_buffer = check_int("shuffle_buffer", shuffle_buffer, minimum=1)
        if seed is not None:
            seed = check_int("seed", seed, minimum=0)
        elif model.seed is not None:
            seed = int(np.random.SeedSequence(model.seed).generate_state(1)[0])
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.history = None
        if comm is not None:  # data-parallel over MPI (mpi4py is imported only then)
            from . import distributed
            comm = distributed.check_comm(comm)
        self.comm = comm
        if threads_per_rank is not None:
            threads_per_rank = check_int("threads_per_rank", threads_per_rank, minimum=1)
        self.threads_per_rank = threads_per_rank
        self.check_sync = check_bool("check_sync", check_sync)
        self.sparse_input = _inputs.check_sparse_input(sparse_input)
        self.input_mode = None

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
        # the adaptive team (how many threads a step is faster with on this machine
        # now) carries over from the trainer's previous training network
        state = getattr(self, "_team_state", None)
        if state is not None:
            net.set_team_state(state)
        opt = self.optimizer
        slots = opt.build(plan.layout, plan.dtype, owner=model)
        update = _net.Update(plan.params, plan.grads, slots, opt.segments(plan.layout, model.layers))
        update.configure(opt.hyper())
        net.set_update(update)
        return net, update

    def _prepare(self, X, y, name_x="X", name_y="y"):
        """X as :mod:`fastsgd._inputs` reads it (never converted whole) and the
        targets as the cost kernel reads them."""
        m = self.model
        X = m._inputs(name_x, X)
        t, _ = _prepare_targets(name_y, y, X.n_rows, m.output_dim, self.cost, m.dtype)
        return X, t

    def _prepare_chunk(self, X, y, k):
        """One chunk of a streamed source, checked (rows converted per batch later)."""
        m = self.model
        name = f"source item {k}"
        if not isinstance(X, np.ndarray):
            X = as_ndarray(f"{name}: X", X, "a 2-D numpy array")
        if X.dtype.kind not in "fiu":
            raise TypeError(f"{name}: X must hold real numbers, got dtype {X.dtype}")
        if X.ndim != 2 or X.shape[1] != m.input_dim:
            raise _feeds.SourceError(f"{name}: X has shape {X.shape}; the model takes "
                                     f"(rows, {m.input_dim})")
        t, _ = _prepare_targets(f"{name}: y", y, X.shape[0], m.output_dim, self.cost, m.dtype)
        return X, t

    def _validation_parts(self, X, t, sample_weight, validation_data, validation_split):
        """``(X, t, sample_weight, X_val, t_val, w_val)``: the last ``validation_split``
        of the data held out (before any shuffling, as Keras does), or
        ``validation_data`` checked; the validation parts are None without either."""
        Xv = tv = wv = None
        if validation_split:
            n_val = int(math.floor(X.shape[0] * validation_split))
            if n_val < 1 or n_val >= X.shape[0]:
                raise ValueError(f"validation_split={validation_split} leaves no samples for "
                                 f"{'validation' if n_val < 1 else 'training'}")
            X, Xv = X.head(X.n_rows - n_val), X.tail(n_val)
            t, tv = t[:-n_val], t[-n_val:]
            if sample_weight is not None:
                sample_weight, wv = sample_weight[:-n_val], sample_weight[-n_val:]
        elif validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise TypeError("validation_data must be a tuple (X_val, y_val) or "
                                "(X_val, y_val, sample_weight_val)")
            Xv, tv = self._prepare(validation_data[0], validation_data[1], "validation X",
                                   "validation y")
            if len(validation_data) == 3:
                wv = _check_weights("validation sample_weight", validation_data[2], Xv.shape[0])
        return X, t, sample_weight, Xv, tv, wv

    def _evaluate_net(self, net, cap, n):
        """Mean cost (weighted mean with sample weights) and accuracy over the
        ``n`` rows bound to ``net``."""
        loss = 0.0
        correct = 0
        for start in range(0, n, cap):
            ls, c = net.eval_batch(start, min(cap, n - start))
            loss += ls
            correct += c
        weight = net.batch_weight(0, n)
        out = {"loss": loss / weight if weight > 0 else 0.0}
        if self._classification():
            out["accuracy"] = correct / (n * self._judged_per_sample())
        return out

    @staticmethod
    def _fit_parts():
        """What the data-parallel loop (:mod:`fastsgd.distributed`, which does not import
        this module) shares with :meth:`fit`."""
        return {"History": History, "Progress": _Progress, "DivergenceWarning": DivergenceWarning,
                "is_source": _is_source, "row_weights": _row_weights}

    # -- public API -------------------------------------------------------------
    @_finish_on_interrupt
    def fit(self, X: Any, y: Optional[ArrayLike] = None, *, epochs: int = 1,
            validation_data: Optional[tuple] = None, validation_split: float = 0.0,
            callbacks: Sequence[Callback] = (), verbose: int = 1, initial_epoch: int = 0,
            sample_weight: Optional[ArrayLike] = None,
            class_weight: Union[None, str, Dict[Any, float]] = None) -> History:
        """Train for ``epochs`` passes over ``(X, y)``.

        Parameters
        ----------
        X : array-like, shape (n, inputs), or a streamed source
            A NumPy array of any real dtype and layout (uint8 images, memory
            maps of ``.npy`` files, ...), a ``scipy.sparse`` matrix, or any
            row-indexable 2-D dataset: never converted whole -- arrays of the
            model's dtype are read in place, others converted batch by batch
            (see :mod:`fastsgd._inputs`). Or a streamed source with ``y=None``:
            an iterable of ``(X_chunk, y_chunk)`` pairs that can be iterated
            again each epoch, or a callable returning one (see
            :mod:`fastsgd._feeds`); an epoch is one pass over it.
        y : array or None
            Integer class labels (n,) or targets (n, units); None for a
            source.
        epochs : int
        validation_data : (X_val, y_val) or (X_val, y_val, w_val), optional
        validation_split : float in [0, 1)
            Hold out the *last* fraction of ``(X, y)``, taken before any
            shuffling (as Keras does), for validation.
        callbacks : sequence of Callback
        verbose : {0, 1, 2}
            0 silent; 1 a progress bar on a terminal (one line per epoch
            otherwise); 2 one line per epoch.
        sample_weight : array (n,), optional
            Non-negative weight per sample: each mini-batch's cost and its
            gradient become the weighted mean (the batch's summed weighted
            cost divided by its summed weights), in the compiled cost kernel.
            A weight of 0 removes the sample's contribution.
        class_weight : dict or "balanced", optional
            A weight per class label (multiplied into ``sample_weight``);
            ``"balanced"`` gives ``n / (n_classes * count(class))`` as
            scikit-learn does. Needs integer labels (or one-hot rows).
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
        try:
            callbacks = list(callbacks or ())
        except TypeError:
            raise TypeError(f"callbacks must be a sequence of Callback objects, got "
                            f"{type(callbacks).__name__}") from None
        for i, cb in enumerate(callbacks):
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks[{i}] must be a fastsgd Callback, got {type(cb).__name__}")
        if validation_data is not None and validation_split:
            raise ValueError("give validation_data or validation_split, not both")
        if getattr(self, "comm", None) is not None:  # data-parallel over MPI ranks
            from . import distributed
            return distributed.fit(self, X, y, epochs=epochs, validation_data=validation_data,
                                   validation_split=validation_split, callbacks=callbacks,
                                   verbose=verbose, initial_epoch=initial_epoch,
                                   sample_weight=sample_weight, class_weight=class_weight)

        stream = _is_source(X, y)
        t = None   # the targets (a streamed source carries its own)
        if stream:
            if validation_split:
                raise ValueError("validation_split needs arrays; give a streamed source "
                                 "validation_data instead")
            if not self.model.built:
                raise ValueError("give the first layer input_dim to train from a streamed "
                                 "source (its width is not known before the first chunk)")
        else:
            X, t = self._prepare(X, y)
        if stream and (sample_weight is not None or class_weight is not None):
            raise ValueError("with a streamed source give weights in its items: (X, y, w) "
                             "triples")
        if not stream:
            sample_weight = _row_weights(sample_weight, class_weight, t, X.shape[0],
                                         self.model.output_dim)
        X, t, sample_weight, Xv, tv, wv = self._validation_parts(
            X, t, sample_weight, validation_data, validation_split)
        if not stream:
            X = _inputs.dense_as_csr("X", X, self.model.dtype, self.sparse_input,
                                     first_layer=self.model.layers[0].kind)
            self.input_mode = "dense->csr" if X.converted_from else X.mode
        else:
            self.input_mode = "stream"

        bs = self.batch_size if stream else min(self.batch_size, X.shape[0])
        net, update = self._build_net(bs, training=True)
        self._run.update = update
        batch_cbs = [cb for cb in callbacks if _overrides(cb, "on_batch_end")]
        if stream:
            feed = _feeds.StreamFeed(net, X, self._prepare_chunk, bs, self.shuffle, self._rng,
                                     self.shuffle_buffer)
        else:
            feed = _feeds.ArrayFeed(net, X, t, bs, self.shuffle, self._rng, self.chunk_rows,
                                    self.buffer_chunks, read_only_indices=bool(batch_cbs),
                                    sample_weight=sample_weight)
        n_batches = feed.n_batches
        eval_net = None
        if Xv is not None:
            eval_cap = min(Xv.shape[0], max(bs, 1024))
            eval_net, _ = self._build_net(eval_cap, training=False)
            eval_net.bind(Xv, tv, wv)

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
        progress = _Progress(verbose, epochs, n_batches)
        classification = self._classification()
        acc_denom = self._judged_per_sample()
        opt = self.optimizer

        self._run.callbacks = callbacks
        self._run.initial_epoch = initial_epoch
        for cb in callbacks:
            cb.on_train_begin({})
        for epoch in range(self._run.initial_epoch, epochs):
            for cb in callbacks:
                cb.on_epoch_begin(epoch, {"lr": opt.lr})
            update.configure(opt.hyper())
            lr_used = opt.lr
            progress.batches = feed.n_batches
            progress.epoch_begin(epoch)
            t0 = time.perf_counter()
            loss_sum = 0.0
            correct = 0
            seen = 0
            weight_seen = 0.0   # the costs' denominator: rows, or their summed weights
            stopped = False
            for b, (start, nb, indices) in enumerate(feed.epoch(epoch)):
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
                weighted = net.sample_weight is not None
                bw = net.batch_weight(start, nb) if weighted else nb
                loss_sum += ls
                correct += c
                seen += nb
                weight_seen += bw
                if batch_cbs:
                    blogs = {"batch": b, "size": nb, "loss": ls / bw if bw > 0 else 0.0,
                             "indices": indices}
                    if classification:
                        blogs["accuracy"] = c / (nb * acc_denom)
                    for cb in batch_cbs:
                        cb.on_batch_end(b, blogs)
                    update.forget_bounds()   # a callback may have written the weights
                    if opt.lr != lr_used:
                        update.lr = opt.lr
                        lr_used = opt.lr
                    if model.stop_training:
                        break
                if progress.tty:
                    progress.batch(b + 1, loss_sum / weight_seen if weight_seen > 0 else 0.0)
            opt.iterations = update.step - 1
            self._team_state = net.team_state()
            if stopped:
                break
            logs = {"loss": loss_sum / weight_seen if weight_seen > 0 else 0.0}
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

    def partial_fit(self, X: Any, y: Optional[ArrayLike] = None) -> Dict[str, float]:
        """One pass over ``(X, y)`` (or a streamed source) as one or more
        mini-batches, for data that arrives in pieces.

        The optimizer's state and step count carry over between calls, so
        calls over consecutive pieces equal one epoch over their
        concatenation when ``shuffle=False`` and the pieces end on batch
        boundaries. Returns the pass's logs (``loss``, ``accuracy``, ...);
        ``self.history`` holds the last call's History.
        """
        history = self.fit(X, y, epochs=1, verbose=0)
        return {k: v[-1] for k, v in history.history.items()} if history.epoch else {}

    def gradients(self, X: Any, y: ArrayLike) -> Tuple[float, List[np.ndarray]]:
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

    def evaluate(self, X: Any, y: ArrayLike, *, batch_size: int = 1024,
                 sample_weight: Optional[ArrayLike] = None) -> Dict[str, float]:
        """Mean cost (and accuracy for classification costs) on ``(X, y)``.

        With ``sample_weight`` (n,) the cost is the weighted mean (accuracy
        stays the fraction of rows classified right). Returns
        ``{"loss": float, "accuracy": float}`` (no accuracy for a
        single-output MSE regression).
        """
        batch_size = check_int("batch_size", batch_size, minimum=1)
        if not self.model.built:
            raise RuntimeError("the model has no weights yet: fit it or give the first layer input_dim")
        X, t = self._prepare(X, y)
        cap = min(X.shape[0], batch_size)
        net, _ = self._build_net(cap, training=False)
        net.bind(X, t, _check_weights("sample_weight", sample_weight, X.shape[0]))
        return self._evaluate_net(net, cap, X.shape[0])
