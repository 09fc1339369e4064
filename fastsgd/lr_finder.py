"""A learning-rate finder (the range test): train a copy of the model for a
few mini-batches while η grows exponentially, and read a good η off the
cost curve.
"""
import math
import warnings

import numpy as np

from . import optimizers as _optimizers
from ._validate import check_float, check_int
from .callbacks import Callback
from .layers import Sequential
from .trainer import DivergenceWarning, Trainer


def copy_model(model):
    """A new model with the same architecture, dtype and weights."""
    clone = Sequential.from_config(model.get_config())
    if model.built:
        if not clone.built:
            clone.build(model.input_dim)
        clone.set_weights(model.get_weights())
    return clone


def _fresh_optimizer(opt):
    opt = _optimizers.get(opt)
    return type(opt)(**opt.get_config())


class LRFinderResult:
    """The range test's outcome.

    Attributes
    ----------
    lrs, losses : lists
        The learning rate of each mini-batch and the smoothed cost after it.
    raw_losses : list
        The unsmoothed mini-batch costs.
    suggestion : float
        The suggested learning rate.
    rule : str
        How the suggestion was made.
    steepest : float
        The learning rate where the smoothed cost fell fastest (for reference).
    stopped_early : bool
        True if the sweep stopped because the cost exploded.
    """

    def __init__(self, lrs, losses, raw_losses, suggestion, rule, steepest, stopped_early):
        self.lrs = lrs
        self.losses = losses
        self.raw_losses = raw_losses
        self.suggestion = suggestion
        self.rule = rule
        self.steepest = steepest
        self.stopped_early = stopped_early

    def plot(self, ax=None, path=None):
        """Plot the smoothed cost against η (log scale); needs matplotlib."""
        try:
            import matplotlib
            if ax is None and path is not None:
                matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("plotting needs matplotlib: pip install matplotlib") from None
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        ax.plot(self.lrs, self.losses, label="smoothed cost")
        ax.axvline(self.suggestion, color="C3", ls="--", label=f"suggested η = {self.suggestion:.3g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate η")
        ax.set_ylabel("cost")
        ax.legend()
        if path is not None:
            ax.figure.savefig(path, dpi=120, bbox_inches="tight")
        return ax

    def __repr__(self):
        return (f"LRFinderResult(suggestion={self.suggestion:.4g}, rule={self.rule!r}, "
                f"steps={len(self.lrs)}, stopped_early={self.stopped_early})")


class _Sweep(Callback):
    def __init__(self, lrs, smoothing, diverge_factor):
        self.lrs = lrs
        self.beta = smoothing
        self.factor = diverge_factor
        self.i = 0
        self.avg = 0.0
        self.best = math.inf
        self.raw = []
        self.smooth = []
        self.exploded = False

    def on_batch_end(self, batch, logs=None):
        loss = logs["loss"]
        self.raw.append(loss)
        self.avg = self.beta * self.avg + (1 - self.beta) * loss
        s = self.avg / (1 - self.beta ** (self.i + 1))
        self.smooth.append(s)
        self.best = min(self.best, s)
        self.i += 1
        if not math.isfinite(s) or (self.i > 1 and s > self.factor * self.best):
            self.exploded = True
            self.model.stop_training = True
        elif self.i >= len(self.lrs):
            self.model.stop_training = True
        else:
            self.trainer.optimizer.lr = self.lrs[self.i]


def find_lr(model, cost, X, y, *, optimizer=None, batch_size=32, min_lr=1e-6, max_lr=10.0,
            steps=100, smoothing=0.98, diverge_factor=4.0, seed=None):
    """Sweep the learning rate exponentially from ``min_lr`` to ``max_lr`` over
    ``steps`` mini-batches on a copy of ``model`` (the model itself is left
    untouched), recording the smoothed cost; stop when the cost exceeds
    ``diverge_factor`` times its best or becomes NaN.

    The suggestion is the learning rate at the lowest smoothed cost divided
    by 10 (a rate from which the cost still falls steadily); the rate of the
    steepest fall is reported too.

    Returns
    -------
    LRFinderResult
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a fastsgd.Sequential, got {type(model).__name__}")
    min_lr = check_float("min_lr", min_lr, low=0.0, low_open=True)
    max_lr = check_float("max_lr", max_lr, low=0.0, low_open=True)
    if max_lr <= min_lr:
        raise ValueError(f"max_lr ({max_lr}) must be greater than min_lr ({min_lr})")
    steps = check_int("steps", steps, minimum=5)
    smoothing = check_float("smoothing", smoothing, low=0.0, high=1.0, high_open=True)
    diverge_factor = check_float("diverge_factor", diverge_factor, low=1.0, low_open=True)
    opt = _fresh_optimizer(optimizer if optimizer is not None else _optimizers.SGD())
    work = copy_model(model)
    lrs = list(min_lr * (max_lr / min_lr) ** (np.arange(steps) / (steps - 1)))
    opt.lr = lrs[0]
    sweep = _Sweep(lrs, smoothing, diverge_factor)
    trainer = Trainer(work, cost, opt, batch_size=batch_size, seed=seed)
    n = np.asarray(X).shape[0] if hasattr(X, "shape") or isinstance(X, (list, tuple)) else 0
    per_epoch = max(1, -(-n // batch_size)) if n else 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        hist = trainer.fit(X, y, epochs=-(-steps // per_epoch), callbacks=[sweep], verbose=0)
    exploded = sweep.exploded or hist.diverged is not None
    done = len(sweep.smooth)
    used_lrs = lrs[:done]
    losses = sweep.smooth
    if done < 2:
        raise RuntimeError("the sweep diverged at once; lower min_lr")
    # ignore the tail once the cost has exploded
    best = int(np.argmin(losses))
    suggestion = used_lrs[best] / 10.0
    rule = "learning rate at the minimum of the smoothed cost, divided by 10"
    logl = np.log10(used_lrs[:best + 1])
    if best >= 2:
        slope = np.gradient(np.asarray(losses[:best + 1]), logl)
        steepest = used_lrs[int(np.argmin(slope))]
    else:
        steepest = used_lrs[best]
    return LRFinderResult(used_lrs, losses, sweep.raw, suggestion, rule, steepest, exploded)
