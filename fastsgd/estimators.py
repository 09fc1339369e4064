"""scikit-learn estimators: :class:`MLPClassifier` and :class:`MLPRegressor`.

They take scikit-learn's ``MLPClassifier``/``MLPRegressor`` parameters with
the same meaning and train with fastsgd's compiled mini-batch trainer, so
they drop into pipelines, grid searches and cross-validation. scikit-learn
(>= 1.6) is needed; ``import fastsgd`` does not import it (the names are
served on first use).

The objective
-------------
Both estimators take scikit-learn's steps: each mini-batch of ``b`` samples
descends::

    loss(batch) + alpha / (2 * b) * sum(||W||**2 for W in coefs_)

where ``loss`` is the mean over the batch of the categorical cross-entropy
(more than two classes), of the binary log-loss summed over the labels (two
classes, multilabel targets), or of half the squared error summed over the
outputs (``squared_error``); intercepts are not penalised. (For several
outputs scikit-learn *reports* half the squared error averaged over the
outputs in ``loss_`` and ``loss_curve_``, and so do we.) fastsgd's own costs
are ``c`` times these losses (its mean squared error averages over the
outputs and is not halved: ``c = 2 / n_outputs``; its binary cross-entropy
averages over the labels: ``c = 1 / n_labels``; ``c = 1`` for the
cross-entropy), so the estimators hand fastsgd the penalty
``l2 = c * alpha / (2 * batch_size)`` on every weight matrix and undo ``c``
in the optimizer (the SGD step size is divided by ``c``; Adam's epsilon is
multiplied by ``c``, RMSprop's and Adagrad's epsilon and initial
accumulator by ``c**2``), which makes every step the one scikit-learn's
solver takes. The one difference: fastsgd's penalty is fixed per run, so
the last, smaller mini-batch of an epoch is penalised with the full batch's
``alpha / (2 * batch_size)`` instead of ``alpha / (2 * b_last)``; when
``batch_size`` divides the number of training samples the two agree
exactly. With ``shuffle=False``, float64 and the same ``random_state`` the
estimators start from scikit-learn's initial weights and follow its
trajectory up to rounding. ``loss_curve_`` adds the penalty at the mean of
the squared norms at the start and the end of each epoch (scikit-learn adds
it at the weights before every step).

Threads
-------
``n_threads=None`` (the default) runs with one thread when the estimator is
fitted outside the main thread (joblib's threading backend, a Dask worker
thread, a thread pool) or in a child process of ``multiprocessing``, joblib
or loky (``multiprocessing.parent_process()`` is set), so that parallel
trials do not oversubscribe the cores; otherwise with
:func:`fastsgd.get_num_threads`. An integer sets fastsgd's process-wide
thread count (:func:`fastsgd.set_num_threads`) for the duration of each
``fit``, ``partial_fit`` and prediction and restores it afterwards. The
count is process-wide: while trials run in worker threads, a fit started in
the main thread of the same process also gets their count. In a forked
child where more than one thread could hang (see
``fastsgd.config()["threads_reason"]``) the estimators always use one.
"""
import contextlib
import multiprocessing
import numbers
import threading
import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.class_weight import compute_sample_weight
    from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
    from sklearn.utils.validation import (
        _check_sample_weight,
        check_is_fitted,
        column_or_1d,
        validate_data,
    )
except ImportError as _e:  # pragma: no cover - exercised only without scikit-learn
    raise ImportError(
        "fastsgd.MLPClassifier and fastsgd.MLPRegressor need scikit-learn >= 1.6: "
        "pip install 'fastsgd[sklearn]'") from _e

from . import _fork, _inputs
from . import optimizers as _optimizers
from ._config import get_num_threads, set_num_threads
from ._inputs import check_sparse_input
from ._validate import check_bool, check_float, check_int
from .callbacks import Callback
from .layers import Dense, Sequential
from .schedules import Schedule
from .trainer import Trainer

__all__ = ["MLPClassifier", "MLPRegressor"]

#: scikit-learn's activation names -> fastsgd's
ACTIVATIONS = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
#: fastsgd's output activations -> scikit-learn's names for ``out_activation_``
_OUT_NAMES = {"linear": "identity", "sigmoid": "logistic", "softmax": "softmax"}
SOLVERS = ("sgd", "adam", "adamw", "adagrad", "rmsprop")
LEARNING_RATES = ("constant", "invscaling", "adaptive")


# -- threads ------------------------------------------------------------------
_scope_lock = threading.Lock()
_scope = {"depth": 0, "saved": None}


def _in_worker():
    """True when running as one of several parallel trials (see the module notes)."""
    if threading.current_thread() is not threading.main_thread():
        return True
    return multiprocessing.parent_process() is not None


def _resolve_threads(n_threads):
    """The thread count a call should run with, or None to leave fastsgd's as it is."""
    n = n_threads
    if n is None and _in_worker():
        n = 1
    cap = _fork.thread_cap()
    if cap is not None:
        n = cap if n is None else min(n, cap)
    return n


@contextlib.contextmanager
def _threads(n_threads):
    """Run the block with fastsgd's thread count set to ``n_threads`` (resolved).

    Overlapping blocks (trials in threads) are counted, so the count set
    before the first one is restored only when the last one ends.
    """
    n = _resolve_threads(n_threads)
    if n is None:
        yield
        return
    with _scope_lock:
        if _scope["depth"] == 0:
            _scope["saved"] = get_num_threads()
        _scope["depth"] += 1
        if get_num_threads() != n:
            set_num_threads(n)
    try:
        yield
    finally:
        with _scope_lock:
            _scope["depth"] -= 1
            if _scope["depth"] == 0 and get_num_threads() != _scope["saved"]:
                set_num_threads(_scope["saved"])


# -- parameters ---------------------------------------------------------------
def _check_params(est):
    """Validate the constructor parameters (at fit time, as scikit-learn does)."""
    p = {}
    h = est.hidden_layer_sizes
    if isinstance(h, (numbers.Integral, np.integer)) and not isinstance(h, bool):
        h = [h]
    try:
        h = list(h)
    except TypeError:
        raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints, got "
                        f"{est.hidden_layer_sizes!r}") from None
    p["hidden"] = [check_int(f"hidden_layer_sizes[{i}]", v, minimum=1) for i, v in enumerate(h)]
    for name, choices in (("activation", ACTIVATIONS), ("solver", SOLVERS),
                          ("learning_rate", LEARNING_RATES)):
        value = getattr(est, name)
        if not isinstance(value, str) or value not in choices:
            extra = ""
            if name == "solver" and value == "lbfgs":
                extra = " ('lbfgs' is not available: fastsgd trains with mini-batches)"
            raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; "
                             f"got {value!r}{extra}")
    p["alpha"] = check_float("alpha", est.alpha, low=0.0)
    bs = est.batch_size
    if isinstance(bs, str):
        if bs != "auto":
            raise ValueError(f"batch_size must be 'auto' or an int >= 1, got {bs!r}")
    else:
        bs = check_int("batch_size", bs, minimum=1)
    p["batch_size"] = bs
    p["lr"] = check_float("learning_rate_init", est.learning_rate_init, low=0.0, low_open=True)
    p["power_t"] = check_float("power_t", est.power_t, low=0.0)
    p["max_iter"] = check_int("max_iter", est.max_iter, minimum=1)
    for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
        p[name] = check_bool(name, getattr(est, name))
    p["tol"] = check_float("tol", est.tol, low=0.0)
    verbose = est.verbose
    if isinstance(verbose, (bool, np.bool_)):
        verbose = int(verbose)
    p["verbose"] = check_int("verbose", verbose, minimum=0)
    p["momentum"] = check_float("momentum", est.momentum, low=0.0, high=1.0, high_open=True)
    p["validation_fraction"] = check_float("validation_fraction", est.validation_fraction,
                                           low=0.0, high=1.0, high_open=True)
    if p["early_stopping"] and p["validation_fraction"] == 0.0:
        raise ValueError("validation_fraction must be > 0 when early_stopping=True")
    p["beta_1"] = check_float("beta_1", est.beta_1, low=0.0, high=1.0, high_open=True)
    p["beta_2"] = check_float("beta_2", est.beta_2, low=0.0, high=1.0, high_open=True)
    p["epsilon"] = check_float("epsilon", est.epsilon, low=0.0, low_open=True)
    nic = est.n_iter_no_change
    if isinstance(nic, float) and nic == np.inf:
        p["n_iter_no_change"] = np.inf
    else:
        p["n_iter_no_change"] = check_int("n_iter_no_change", nic, minimum=1)
    loss = est.loss
    if not isinstance(loss, str) or loss not in est._losses:
        raise ValueError(f"loss must be one of {', '.join(repr(c) for c in est._losses)}; "
                         f"got {loss!r}")
    try:
        dt = None if est.dtype is None else np.dtype(est.dtype)
    except TypeError:
        dt = None
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {est.dtype!r}")
    p["dtype"] = dt
    if est.n_threads is not None:
        check_int("n_threads", est.n_threads, minimum=1)
    p["sparse_input"] = check_sparse_input(est.sparse_input)
    return p


def _make_optimizer(p, solver, c):
    """The fastsgd optimizer for ``solver``, with the constant ``c`` undone."""
    lr = p["lr"]
    if solver == "sgd":
        mom = p["momentum"]
        return _optimizers.SGD(lr=lr / c, momentum=mom, nesterov=p["nesterovs_momentum"] and mom > 0)
    if solver == "adam":
        return _optimizers.Adam(lr=lr, beta_1=p["beta_1"], beta_2=p["beta_2"],
                                epsilon=p["epsilon"] * c)
    if solver == "adamw":
        return _optimizers.AdamW(lr=lr, beta_1=p["beta_1"], beta_2=p["beta_2"],
                                 epsilon=p["epsilon"] * c)
    if solver == "rmsprop":
        return _optimizers.RMSprop(lr=lr, epsilon=p["epsilon"] * c * c)
    opt = _optimizers.Adagrad(lr=lr, epsilon=p["epsilon"] * c * c)
    opt.initial_accumulator_value *= c * c
    return opt


class InverseScaling(Schedule):
    """scikit-learn's ``invscaling`` rate: ``base_lr / (t + 1) ** power_t``,
    where ``t`` counts the training samples seen before the epoch.

    Parameters
    ----------
    samples_per_epoch : int
    power_t : float
    t0 : int
        Samples seen before epoch 0 (a warm start continues the count).
    """

    def __init__(self, samples_per_epoch, power_t, t0=0):
        self.samples_per_epoch = samples_per_epoch
        self.power_t = power_t
        self.t0 = t0

    def __call__(self, epoch, base_lr):
        if epoch == 0:
            return base_lr  # a new optimizer starts at learning_rate_init
        t = self.t0 + epoch * self.samples_per_epoch
        return base_lr / (t + 1) ** self.power_t


class _EpochRules(Callback):
    """scikit-learn's end-of-epoch bookkeeping: ``loss_curve_``, the tolerance
    and ``n_iter_no_change`` rule (stop, or divide the rate by 5 with
    ``learning_rate='adaptive'``), the ``invscaling`` rate, early stopping on
    a validation score with the best weights kept."""

    def __init__(self, est, p, n_train, n_batches, c, c_loss, incremental, validation):
        self.est = est
        self.p = p
        self.n_train = n_train
        self.n_batches = n_batches
        self.c = c
        self.c_loss = c_loss
        self.incremental = incremental
        self.validation = validation
        self.stopped = False
        sgd = est.solver == "sgd"
        self.schedule = est.learning_rate if sgd else "constant"
        self.invscaling = None
        if self.schedule == "invscaling":
            self.invscaling = InverseScaling(n_train, p["power_t"], est.t_)

    def _squared_norm(self):
        return sum(float(np.dot(w.ravel(), w.ravel())) for w in self.est.coefs_)

    def on_epoch_begin(self, epoch, logs=None):
        if self.p["alpha"]:
            self.sq_begin = self._squared_norm()

    def on_epoch_end(self, epoch, logs=None):
        est, p = self.est, self.p
        est.n_iter_ += 1
        est.t_ += self.n_train
        loss = logs["loss"] / self.c_loss
        if p["alpha"]:
            # scikit-learn adds each batch's penalty at the weights before its
            # step; the mean of the epoch's first and last weights stands in
            sq = 0.5 * (self.sq_begin + self._squared_norm())
            loss += 0.5 * p["alpha"] * self.n_batches * sq / self.n_train
        est.loss_ = loss
        est.loss_curve_.append(loss)
        verbose = p["verbose"]
        if verbose:
            print(f"Iteration {est.n_iter_}, loss = {loss:.8f}")
        if self.validation is not None:
            score = est._validation_score(*self.validation)
            est.validation_scores_.append(score)
            if verbose:
                print(f"Validation score: {score:f}")
            if score < est.best_validation_score_ + p["tol"]:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                est._best_weights = est._model.get_weights()
        else:
            if loss > est.best_loss_ - p["tol"]:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if loss < est.best_loss_:
                est.best_loss_ = loss
        opt = self.trainer.optimizer
        if self.invscaling is not None:
            # the rate for the next epoch, from the samples seen so far
            opt.lr = self.invscaling(epoch + 1, p["lr"]) / self.c
        if est._no_improvement_count > p["n_iter_no_change"]:
            what = "Validation score" if self.validation is not None else "Training loss"
            msg = (f"{what} did not improve more than tol={p['tol']:f} for "
                   f"{p['n_iter_no_change']} consecutive epochs.")
            rate = opt.lr * self.c
            if self.schedule == "adaptive" and rate > 1e-6:
                opt.lr = opt.lr / 5.0
                est._no_improvement_count = 0
                if verbose:
                    print(f"{msg} Setting learning rate to {rate / 5.0:f}")
            else:
                if verbose:
                    tail = " Learning rate too small." if self.schedule == "adaptive" else ""
                    print(f"{msg}{tail} Stopping.")
                self.stopped = True
                if not self.incremental:
                    self.model.stop_training = True


def _cost_and_scales(est, mode, n_outputs):
    """``(fastsgd cost, output activation, c, c_loss)`` for the loss and targets.

    fastsgd's mean cost is ``c`` times the objective scikit-learn's steps
    descend, and ``c_loss`` times the loss it reports (they differ for
    squared errors with several outputs: scikit-learn reports half the mean
    over the outputs but steps on half the sum).
    """
    out = {"regression": "linear", "multiclass": "softmax"}.get(mode, "sigmoid")
    if mode == "regression" or est.loss == "squared_error":
        return "mse", out, 2.0 / n_outputs, 2.0
    if mode == "multiclass":
        return "cross_entropy", out, 1.0, 1.0
    return "binary_cross_entropy", out, 1.0 / n_outputs, 1.0 / n_outputs


class _BaseMLP(BaseEstimator):
    """Shared machinery of :class:`MLPClassifier` and :class:`MLPRegressor`."""

    _losses = ()

    # -- the network ------------------------------------------------------------
    def _init_network(self, n_features, hidden, n_outputs, out_act, rs, dtype):
        units = [n_features] + list(hidden) + [n_outputs]
        acts = [ACTIVATIONS[self.activation]] * len(hidden) + [out_act]
        layers = [Dense(units[i + 1], acts[i], weight_init="zeros")
                  for i in range(len(units) - 1)]
        model = Sequential(layers, dtype=dtype.name)
        model.build(n_features)
        # Glorot-uniform initialisation as scikit-learn draws it (weights then
        # intercepts per layer, bound sqrt(factor / (fan_in + fan_out)), factor
        # 2 for logistic hidden units and 6 otherwise), so that the same
        # random_state gives the same starting point
        factor = 2.0 if self.activation == "logistic" else 6.0
        weights = []
        for fan_in, fan_out in zip(units[:-1], units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            weights.append(rs.uniform(-bound, bound, (fan_in, fan_out)))
            weights.append(rs.uniform(-bound, bound, fan_out))
        model.set_weights(weights)
        self._layer_acts = acts
        self._adopt(model)
        self.n_layers_ = len(units)
        self.n_outputs_ = n_outputs
        self.out_activation_ = _OUT_NAMES[out_act]

    def _adopt(self, model):
        """Make ``coefs_``/``intercepts_`` the arrays the kernels train in place."""
        self._model = model
        self.coefs_ = [layer.weights for layer in model.layers]
        self.intercepts_ = [layer.bias for layer in model.layers]

    def _network(self):
        """The Sequential holding ``coefs_`` and ``intercepts_``, rebuilt when
        they were replaced (or after unpickling)."""
        model = getattr(self, "_model", None)
        if (model is not None and len(model.layers) == len(self.coefs_) == len(self.intercepts_)
                and all(layer.weights is w and layer.bias is b
                        for layer, w, b in zip(model.layers, self.coefs_, self.intercepts_))):
            return model
        dtype = np.dtype(self._fitted_dtype)
        layers = [Dense(np.shape(w)[1], a, weight_init="zeros")
                  for w, a in zip(self.coefs_, self._layer_acts)]
        rebuilt = Sequential(layers, dtype=dtype.name)
        rebuilt.build(np.shape(self.coefs_[0])[0])
        rebuilt.set_weights([np.asarray(a) for pair in zip(self.coefs_, self.intercepts_)
                             for a in pair])
        self._adopt(rebuilt)
        return rebuilt

    def _forward(self, X):
        """Validated ``X`` through the network: the output layer's activations
        (computed in ``dtype``, returned as float64)."""
        check_is_fitted(self)
        model = self._network()
        X = self._validate(X, "no_validation", False, model.dtype)[0]
        if hasattr(X, "toarray"):
            X = X.toarray()
        with _threads(self.n_threads):
            out = model.predict(np.ascontiguousarray(X, dtype=model.dtype))
        return out.astype(np.float64, copy=False)

    # -- pickling ---------------------------------------------------------------
    def __getstate__(self):
        state = super().__getstate__()
        if state is self.__dict__:
            state = dict(state)
        state.pop("_model", None)  # rebuilt from coefs_/intercepts_ on first use
        opt = state.pop("_optimizer", None)
        if opt is not None:
            state["_optimizer_saved"] = (type(opt).__name__, opt.get_config(), opt.get_state())
        return state

    def __setstate__(self, state):
        state = dict(state)
        saved = state.pop("_optimizer_saved", None)
        super().__setstate__(state)
        if saved is not None:
            name, cfg, st = saved
            cls = {c.__name__: c for c in (_optimizers.SGD, _optimizers.Adam, _optimizers.AdamW,
                                           _optimizers.Adagrad, _optimizers.RMSprop)}[name]
            opt = cls(**cfg)
            opt.set_state(st)
            self._optimizer = opt

    # -- fitting ---------------------------------------------------------------
    def _validate(self, X, y, reset, dtype, direct=False):
        """``(X, y, inputs)``: scikit-learn's ``validate_data`` (X alone, and y None, for
        ``y="no_validation"``). ``direct``: X is a C-ordered, aligned 2-D array of
        ``dtype`` that the training reads in place; then scikit-learn does not check
        it for NaN and infinity, fastsgd's compiled count of nonzeros does, first
        (``inputs``, the count that the training then starts from). With a plain
        1-D or 2-D array ``y`` of finite numbers as long as X, there is nothing to
        convert and nothing else scikit-learn's checks could refuse but an empty
        X, and they are skipped (they start by looking for a dataframe library,
        about 10 ms in a fresh process)."""
        no_y = isinstance(y, str) and y == "no_validation"
        inputs = None
        if direct and X.shape[0] >= 1 and X.shape[1] >= 1:
            inputs = self._checked_inputs(X, dtype)
        if not (inputs is not None and type(y) is np.ndarray and y.ndim in (1, 2)
                and y.shape[0] == X.shape[0] and y.size and y.dtype.kind in "iuf"
                and (y.dtype.kind != "f" or np.isfinite(y).all())):
            kw = dict(accept_sparse=["csr", "csc", "coo"], ensure_all_finite=not direct,
                      dtype=(dtype.type, np.float64, np.float32))
            if no_y:
                return validate_data(self, X, reset=reset, **kw), None, None
            X, y = validate_data(self, X, y, reset=reset, multi_output=True,
                                 y_numeric=not isinstance(self, ClassifierMixin), **kw)
            return X, y, inputs if inputs is not None and inputs.data is X else None
        name = type(self).__name__
        if reset:
            self.n_features_in_ = X.shape[1]
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        else:
            if getattr(self, "feature_names_in_", None) is not None:
                warnings.warn(f"X does not have valid feature names, but {name} was fitted "
                              f"with feature names", UserWarning, stacklevel=3)
            n = getattr(self, "n_features_in_", None)
            if n is not None and X.shape[1] != n:
                raise ValueError(f"X has {X.shape[1]} features, but {name} is expecting {n} "
                                 f"features as input.")
        return X, y, inputs

    def _checked_inputs(self, X, dtype):
        """X (read in place) as the training reads it, counted by the compiled pass that
        also finds NaN and infinity: refused with scikit-learn's wording, and the row."""
        try:
            with _threads(self.n_threads):
                return _inputs.prepare("X", X, dtype)
        except _inputs.NonFiniteRowError as e:
            what = ("NaN" if np.isnan(X[e.row]).any() else
                    f"infinity or a value too large for {X.dtype!r}")
            raise ValueError(f"Input X contains {what} (row {e.row}).") from None

    def _validate_xy(self, X, y, reset, dtype, direct=False):
        """``(X, y, inputs)`` checked (see ``_validate``)."""
        X, y, inputs = self._validate(X, y, reset, dtype, direct)
        if hasattr(X, "tocsr"):
            X = X.tocsr()  # the engine's first layer reads the nonzeros
        if hasattr(y, "toarray"):
            y = y.toarray()
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y, inputs

    def _fit(self, X, y, incremental, classes=None, sample_weight=None):
        p = _check_params(self)
        if incremental and p["early_stopping"]:
            raise ValueError("partial_fit does not support early_stopping=True")
        fitted = hasattr(self, "coefs_")
        first = not fitted or (not p["warm_start"] and not incremental)
        dtype = p["dtype"] if first else np.dtype(self._fitted_dtype)
        # an array the trainer reads in place: its NaN check is the compiled count of
        # nonzeros the training starts with, done here (before any state changes)
        direct = (type(X) is np.ndarray and X.ndim == 2 and X.dtype == dtype
                  and X.flags.c_contiguous and X.flags.aligned and not p["early_stopping"])
        # the checks set what scikit-learn's set (the width, feature names, classes);
        # a refused fit puts them back, so that the fitted model loses nothing
        saved = {k: self.__dict__[k] for k in _CHECKED_ATTRS if k in self.__dict__}
        try:
            X, y, inputs = self._validate_xy(X, y, reset=first, dtype=dtype, direct=direct)
            targets, labels, mode = self._encode_targets(y, first, incremental, classes)
            n_outputs = self._n_outputs(targets, mode)
            if sample_weight is not None:
                sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                                     ensure_non_negative=True)
            class_weight = getattr(self, "class_weight", None)
            if class_weight is not None and mode in ("binary", "multiclass"):
                cw = compute_sample_weight(class_weight, labels)
                sample_weight = cw if sample_weight is None else sample_weight * cw
            cost, out_act, c, c_loss = _cost_and_scales(self, mode, n_outputs)
            if not first:
                hidden_now = [np.shape(w)[1] for w in self.coefs_[:-1]]
                if hidden_now != p["hidden"]:
                    raise ValueError(f"hidden_layer_sizes={self.hidden_layer_sizes!r} differs "
                                     f"from the fitted network's {tuple(hidden_now)}: refit "
                                     f"without warm_start")
                if n_outputs != self.n_outputs_:
                    raise ValueError(f"y has {n_outputs} outputs but the network was fitted "
                                     f"with {self.n_outputs_}")
        except BaseException:
            for k in _CHECKED_ATTRS:
                self.__dict__.pop(k, None)
            self.__dict__.update(saved)
            raise
        rs = check_random_state(self.random_state)

        with _threads(self.n_threads):
            if first:
                self._fitted_dtype = dtype.name
                self._mode = mode
                self._init_network(X.shape[1], p["hidden"], n_outputs, out_act, rs, dtype)
                self.n_iter_ = 0
                self.t_ = 0
                self.loss_curve_ = []
                self._no_improvement_count = 0
                self._optimizer = None
                self._best_weights = None
                if p["early_stopping"]:
                    self.validation_scores_ = []
                    self.best_validation_score_ = -np.inf
                    self.best_loss_ = None
                else:
                    self.best_loss_ = np.inf
                    self.validation_scores_ = None
                    self.best_validation_score_ = None
            else:
                # a warm start may switch early stopping on or off
                if p["early_stopping"] and self.validation_scores_ is None:
                    self.validation_scores_ = []
                    self.best_validation_score_ = -np.inf
                elif not p["early_stopping"] and self.best_loss_ is None:
                    self.best_loss_ = np.inf
            model = self._network()
            if not hasattr(X, "tocsr"):
                X = np.ascontiguousarray(X, dtype=model.dtype)

            validation = None
            if p["early_stopping"]:
                stratify = labels if mode in ("binary", "multiclass") else None
                parts = [X, targets, labels] + ([] if sample_weight is None else [sample_weight])
                split = train_test_split(*parts, random_state=rs,
                                         test_size=p["validation_fraction"], stratify=stratify)
                X, X_val, targets, _t_val, _l_tr, l_val = split[:6]
                if sample_weight is not None:
                    sample_weight = split[6]
                if X_val.shape[0] < 2:
                    raise ValueError("The validation set is too small. Increase "
                                     "'validation_fraction' or the size of your dataset.")
                if not hasattr(X, "tocsr"):
                    X = np.ascontiguousarray(X)
                    X_val = np.ascontiguousarray(X_val)
                validation = (X_val, l_val)

            n = X.shape[0]
            if p["batch_size"] == "auto":
                bs = min(200, n)
            else:
                bs = p["batch_size"]
                if bs > n:
                    warnings.warn("Got `batch_size` larger than the sample size. It is going to "
                                  "be clipped", UserWarning, stacklevel=3)
                    bs = n
            n_batches = -(-n // bs)

            if not incremental or self._optimizer is None:
                self._optimizer = _make_optimizer(p, self.solver, c)
            opt = self._optimizer
            opt.l2 = c * p["alpha"] / (2.0 * bs)

            rules = _EpochRules(self, p, n, n_batches, c, c_loss, incremental, validation)
            trainer = Trainer(model, cost, opt, batch_size=bs, shuffle=p["shuffle"],
                              seed=int(rs.randint(np.iinfo(np.int32).max)),
                              sparse_input=p["sparse_input"])
            self.n_iter_ = 0
            if inputs is not None:   # X itself, counted and checked
                X = inputs
            trainer.fit(X, targets, epochs=1 if incremental else p["max_iter"],
                        callbacks=[rules], verbose=0, sample_weight=sample_weight)
            if validation is not None and self._best_weights is not None:
                model.set_weights(self._best_weights)  # the best epoch's weights
            if (not incremental and not rules.stopped and trainer.history.diverged is None
                    and self.n_iter_ == p["max_iter"]):
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({p['max_iter']}) "
                              f"reached and the optimization hasn't converged yet.",
                              ConvergenceWarning, stacklevel=3)
        return self

    def _n_outputs(self, targets, mode):
        if mode == "multiclass":
            return len(self.classes_)
        return 1 if targets.ndim == 1 else targets.shape[1]

    def fit(self, X, y, sample_weight=None):
        """Fit the model to ``X`` and ``y``, for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Sparse matrices train on their nonzeros (never densified).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (classifier: one label per sample, or a 0/1
            indicator matrix for multilabel problems) or real targets
            (regressor).
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights: each mini-batch's loss is the weighted mean
            (computed in fastsgd's cost kernel). A weight of 0 removes a
            sample; a weight of 2 is not the same as the sample twice under
            shuffled mini-batches (the batches differ).

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


#: the fitted attributes a fit's checks set (see ``_BaseMLP._fit``)
_CHECKED_ATTRS = ("n_features_in_", "feature_names_in_", "classes_")


def _small_int_labels(y):
    """``(classes, indices)`` for a 1-D integer array ``y`` whose labels span a range
    of at most a quarter of its length (or 1024): what ``unique_labels`` and a search
    give, by counting instead of sorting. None for any other ``y``, and for labels
    that scikit-learn would warn look like a regression target (more than half of
    more than 20 samples distinct): its path then gives the warning."""
    if type(y) is not np.ndarray or y.ndim != 1 or y.dtype.kind not in "iu" or not y.size:
        return None
    lo, hi = int(y.min()), int(y.max())
    if hi - lo > max(1024, y.size // 4) or hi > np.iinfo(np.intp).max:
        return None
    shifted = np.subtract(y, lo, dtype=np.intp)
    present = np.flatnonzero(np.bincount(shifted, minlength=hi - lo + 1))
    if present.size > 2 and y.size > 20 and present.size > round(0.5 * y.size):
        return None
    lut = np.zeros(hi - lo + 1, np.intp)
    lut[present] = np.arange(present.size)
    return (present + lo).astype(y.dtype.newbyteorder("=")), lut[shifted]


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multi-layer perceptron classifier trained by fastsgd.

    Takes scikit-learn's :class:`sklearn.neural_network.MLPClassifier`
    parameters with the same meaning (``solver='lbfgs'`` and ``max_fun``
    are not available; ``fit`` and ``partial_fit`` take ``sample_weight``,
    and ``class_weight`` weights the classes), plus
    fastsgd's ``loss``, ``dtype``, ``n_threads`` and ``sparse_input``. See the module
    documentation for the exact objective and the thread rule.

    More than two classes use a softmax output and the cross-entropy; two
    classes and multilabel targets (a 0/1 indicator matrix ``y``) use one
    sigmoid unit per label and the binary log-loss, as scikit-learn does.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Units of each hidden layer; empty for a (multinomial) logistic
        regression.
    activation : {"relu", "tanh", "logistic", "identity"}, default="relu"
        Hidden-layer activation (fastsgd's ``relu``, ``tanh``, ``sigmoid``,
        ``linear``).
    solver : {"adam", "sgd", "adamw", "adagrad", "rmsprop"}, default="adam"
        ``sgd`` with ``momentum`` and ``nesterovs_momentum``; ``adam`` with
        ``beta_1``, ``beta_2``, ``epsilon`` (scikit-learn's formulas);
        ``adamw`` is Adam with fastsgd's decoupled weight decay (0.004) on
        top of ``alpha``; ``adagrad`` and ``rmsprop`` use fastsgd's (Keras's)
        defaults apart from ``learning_rate_init`` and ``epsilon``.
    alpha : float, default=1e-4
        Strength of the L2 penalty ``alpha / (2 * batch_size) * ||W||**2``
        on the weights (not the intercepts), as in scikit-learn.
    batch_size : int or "auto", default="auto"
        Samples per mini-batch; ``"auto"`` is ``min(200, n_samples)``.
        Larger than the data: clipped, with a warning.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        Schedule of the step size, for ``solver="sgd"`` only:
        ``invscaling`` uses ``learning_rate_init / (t + 1) ** power_t`` with
        ``t`` the samples seen (:class:`InverseScaling`); ``adaptive``
        divides the rate by 5 instead of stopping when the loss (or the
        validation score) stalls, until it falls below 1e-6.
    learning_rate_init : float, default=1e-3
    power_t : float, default=0.5
    max_iter : int, default=200
        Epochs (passes over the data).
    shuffle : bool, default=True
        Shuffle the samples every epoch.
    random_state : int, RandomState instance or None, default=None
        Initial weights, the validation split and the shuffling.
    tol : float, default=1e-4
        Training stops when the loss (or, with ``early_stopping``, the
        validation score) has not improved by ``tol`` for more than
        ``n_iter_no_change`` consecutive epochs.
    verbose : bool or int, default=False
        Print the loss after each epoch.
    warm_start : bool, default=False
        Continue from the current weights in ``fit`` (with a new optimizer).
    momentum : float, default=0.9
        In [0, 1), for ``solver="sgd"``.
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified), stop on
        its accuracy and keep the best epoch's weights.
    validation_fraction : float, default=0.1
    beta_1, beta_2 : float, default=0.9, 0.999
    epsilon : float, default=1e-8
    n_iter_no_change : int, default=10
    loss : {"log_loss", "squared_error"}, default="log_loss"
        ``squared_error`` (fastsgd's): half the mean squared error between
        the outputs (softmax or sigmoid) and the one-hot targets.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the weights and the arithmetic.
    n_threads : int or None, default=None
        Threads for training and prediction; see the module documentation.
    sparse_input : {"auto", True, False}, default="auto"
        Whether a dense ``X`` is trained through fastsgd's sparse first
        layer, converted once per ``fit``/``partial_fit`` into CSR form
        (:class:`fastsgd.Trainer`'s ``sparse_input``): ``"auto"`` when at
        most 25% of its values are nonzero and the CSR arrays take no more
        memory than ``X``, ``True`` always, ``False`` never. Sparse matrices
        always train on their nonzeros; prediction and the held-out data of
        ``early_stopping`` are never converted.
    class_weight : dict, "balanced" or None, default=None
        Weights per class, multiplied into ``sample_weight`` (``"balanced"``:
        ``n_samples / (n_classes * count(class))``); binary and multiclass
        targets.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels (``arange(n_labels)`` for multilabel targets).
    loss_ : float
        The loss of the last epoch (mean over its mini-batches, with the
        penalty at the end-of-epoch weights).
    best_loss_ : float or None
        The smallest ``loss_curve_`` value (None with ``early_stopping``).
    loss_curve_ : list of float
    validation_scores_ : list of float or None
        Accuracy on the held-out data per epoch (``early_stopping`` only).
    best_validation_score_ : float or None
    t_ : int
        Training samples seen.
    coefs_, intercepts_ : lists of ndarray
        Weights (inputs x units) and intercepts per layer: the very arrays
        fastsgd trains (in ``dtype``).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Present when ``X`` had string column names.
    n_iter_ : int
        Epochs run by the last call to ``fit`` (1 after ``partial_fit``).
    n_layers_ : int
    n_outputs_ : int
    out_activation_ : str
        ``"softmax"`` or ``"logistic"``.

    Notes
    -----
    Sparse ``X`` (scipy.sparse) trains on its nonzeros (prediction converts
    it to a dense array).
    Pickling keeps the weights and the optimizer's state as plain arrays;
    fastsgd's network is rebuilt on first use.
    """

    _losses = ("log_loss", "squared_error")

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 loss="log_loss", dtype="float32", n_threads=None, class_weight=None,
                 sparse_input="auto"):
        self.class_weight = class_weight
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.loss = loss
        self.dtype = dtype
        self.n_threads = n_threads
        self.sparse_input = sparse_input

    # -- targets ------------------------------------------------------------------
    def _encode_targets(self, y, first, incremental, classes):
        """``(targets for fastsgd, labels for scoring, mode)``; sets ``classes_``."""
        if first and not (incremental and classes is not None):
            found = _small_int_labels(y)
            if found is not None:
                self.classes_, idx = found
                return self._class_targets(y, idx)
        check_classification_targets(y)
        kind = type_of_target(y)
        if kind == "multiclass-multioutput":
            raise ValueError("y: multiclass-multioutput targets are not supported; give one "
                             "label per sample or a 0/1 indicator matrix (multilabel)")
        multilabel = kind == "multilabel-indicator"
        if first:
            if incremental and classes is not None and not multilabel:
                self.classes_ = unique_labels(np.asarray(classes))
            else:
                self.classes_ = unique_labels(y)
        else:
            seen = unique_labels(y)
            if self.warm_start and not incremental:
                if set(seen) != set(self.classes_):
                    raise ValueError(f"warm_start can only be used where `y` has the same "
                                     f"classes as in the previous call to fit. Previously got "
                                     f"{self.classes_}, `y` has {seen}")
            elif len(np.setdiff1d(seen, self.classes_)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {seen}.")
        if multilabel:
            if not first and self._mode != "multilabel":
                raise ValueError("y is a multilabel indicator matrix but the classifier was "
                                 "fitted on one label per sample")
            t = np.asarray(y, dtype=np.float64)
            return t, np.asarray(y), "multilabel"
        if not first and self._mode == "multilabel":
            raise ValueError("y holds one label per sample but the classifier was fitted on a "
                             "multilabel indicator matrix")
        idx = np.searchsorted(self.classes_, y)
        if (idx >= len(self.classes_)).any() or (self.classes_[np.minimum(
                idx, len(self.classes_) - 1)] != y).any():
            raise ValueError(f"`y` has classes not in `self.classes_` "
                             f"({self.classes_!r}): {np.setdiff1d(unique_labels(y), self.classes_)}")
        return self._class_targets(y, idx)

    def _class_targets(self, y, idx):
        """The targets of labels ``y`` whose indices in ``classes_`` are ``idx``."""
        if len(self.classes_) < 2:
            raise ValueError(f"The classifier needs samples of at least 2 classes in the data, "
                             f"but the data contains only one class: {self.classes_[0]!r}")
        mode = "binary" if len(self.classes_) == 2 else "multiclass"
        if mode == "binary":
            t = idx.reshape(-1, 1).astype(np.float64)
        elif self.loss == "squared_error":
            t = np.zeros((len(y), len(self.classes_)))
            t[np.arange(len(y)), idx] = 1.0
        else:
            t = idx.astype(np.int64)
        return t, y, mode

    # -- public API -------------------------------------------------------------------
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over ``(X, y)``, continuing from the current state.

        The weights, the optimizer's state and its step count carry over
        between calls (fastsgd's optimizer object is kept).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
        classes : array-like of shape (n_classes,), default=None
            Every class of the whole data set: required on the first call
            (unless ``y`` is a multilabel indicator matrix), optional after.

        Returns
        -------
        self
        """
        if not hasattr(self, "classes_"):
            if classes is None and type_of_target(y) != "multilabel-indicator":
                raise ValueError("classes must be passed on the first call to partial_fit.")
        elif classes is not None:
            given = unique_labels(np.asarray(classes))
            if not np.array_equal(given, self.classes_):
                raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                                 f"partial_fit, was: {self.classes_!r}")
        return self._fit(X, y, incremental=True, classes=classes, sample_weight=sample_weight)

    def predict_proba(self, X):
        """Probability of each class (each label for multilabel targets).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_`` (float64; computed in ``dtype``).
        """
        out = self._forward(X)
        if self._mode == "binary":
            p = out[:, 0]
            return np.column_stack([1 - p, p])
        return out

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        p = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(p, out=p)

    def predict(self, X):
        """The most probable class of each sample.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,), or (n_samples, n_labels) of 0/1 for
        multilabel targets.
        """
        return self._decode(self._forward(X))

    def _decode(self, out):
        if self._mode == "multilabel":
            return (out > 0.5).astype(int)
        if self._mode == "binary":
            return self.classes_[(out[:, 0] > 0.5).astype(np.intp)]
        return self.classes_[np.argmax(out, axis=1)]

    def _validation_score(self, X, labels):
        out = self._network().predict(X)
        if not np.isfinite(out).all():
            return np.nan
        return accuracy_score(labels, self._decode(out))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multi-layer perceptron regressor trained by fastsgd.

    Takes scikit-learn's :class:`sklearn.neural_network.MLPRegressor`
    parameters with the same meaning (``solver='lbfgs'``, ``max_fun`` and
    ``loss='poisson'`` are not available; ``fit`` and ``partial_fit`` take
    ``sample_weight``), plus fastsgd's ``dtype``, ``n_threads`` and ``sparse_input``; see
    :class:`MLPClassifier` for the parameters and the module documentation
    for the exact objective. The output layer is linear (``identity``) and
    ``y`` may have several columns (multi-output regression).

    Parameters
    ----------
    loss : {"squared_error"}, default="squared_error"
        Half the mean squared error, as scikit-learn's.
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate, \
learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, \
warm_start, momentum, nesterovs_momentum, early_stopping, validation_fraction, \
beta_1, beta_2, epsilon, n_iter_no_change, dtype, n_threads, sparse_input
        As for :class:`MLPClassifier`; ``early_stopping`` scores the held-out
        data (not stratified) with R².

    Attributes
    ----------
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, \
t_, coefs_, intercepts_, n_features_in_, feature_names_in_, n_iter_, n_layers_, \
n_outputs_, out_activation_
        As for :class:`MLPClassifier`; ``out_activation_`` is ``"identity"``.
    """

    _losses = ("squared_error",)

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 dtype="float32", n_threads=None, sparse_input="auto"):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype
        self.n_threads = n_threads
        self.sparse_input = sparse_input

    def _encode_targets(self, y, first, incremental, classes):
        t = np.asarray(y, dtype=np.float64)
        if t.ndim == 1:
            t = t.reshape(-1, 1)
        if first:
            self._mode = "regression"
        return t, y, "regression"

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``(X, y)``, continuing from the current state.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def predict(self, X):
        """Predicted targets.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            float64 (computed in ``dtype``).
        """
        out = self._forward(X)
        return out[:, 0].copy() if out.shape[1] == 1 else out

    def _validation_score(self, X, y):
        out = self._network().predict(X)
        if not np.isfinite(out).all():
            return np.nan
        return r2_score(y, out[:, 0] if out.shape[1] == 1 else out)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
