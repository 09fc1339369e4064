"""The chapter "Training Deep Networks" of *Deep Learning Illustrated* (Krohn,
Beyleveld, Bassens), run for real.

Each experiment is a function that computes and returns the numbers its
figure is drawn from (a dataclass); the ``plot_*`` functions draw those
numbers (matplotlib, the optional extra ``fastsgd[plot]``), and :func:`run`
does everything and writes PNG figures and a Markdown report into a folder
(``fastsgd book --out DIR`` on the command line).

Experiments:

- :func:`one_parameter_descent`: gradient descent on a one-parameter cost
  with η too small, about right and too large;
- :func:`two_parameter_descent`: gradient descent on a two-parameter cost
  surface;
- :func:`local_minima`: full-batch gradient descent trapped in a local
  minimum, mini-batch SGD's noise escaping it, on the same problem;
- :func:`epoch_rounds`: an epoch of MNIST as rounds of mini-batches;
- :func:`learning_rate_sweep`: η from 1e-4 to 10 on the Intermediate Net,
  each run classified by :func:`classify_learning_curve`, beside
  :func:`fastsgd.find_lr`'s suggestion;
- :func:`batch_size_sweep`: batch sizes 16 to 512, after a fixed number of
  epochs and after a fixed time budget;
- :func:`early_stopping_run`: training and validation cost per epoch, the
  early-stopping point and the restored best epoch;
- :func:`book_nets`: the book's Shallow and Intermediate Nets with the
  book's settings, beside the book's published results.

Every experiment takes a ``seed``; the same seed gives the same numbers
(except wall-clock times and what a time budget allows).
"""
import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ._validate import check_bool, check_float, check_int

#: The book's reference networks and its published results.
BOOK_NETS = {
    "shallow": {
        "title": "Shallow Net", "hidden": [64], "activation": "sigmoid", "cost": "mse",
        "lr": 0.01, "batch_size": 128, "epochs": 200, "params": 50890, "accuracy": 0.86,
    },
    "intermediate": {
        "title": "Intermediate Net", "hidden": [64, 64], "activation": "relu",
        "cost": "cross_entropy", "lr": 0.1, "batch_size": 128, "epochs": 20, "params": 55050,
        "accuracy": 0.97,
    },
}

BOOK = "Deep Learning Illustrated (Krohn, Beyleveld, Bassens)"


# -- argument checks ------------------------------------------------------------

def _check_seed(seed):
    return check_int("seed", seed, minimum=0)


def _check_positive_list(name, values, kind=float):
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} must not be empty")
    out = []
    for i, v in enumerate(values):
        if kind is int:
            out.append(check_int(f"{name}[{i}]", v, minimum=1))
        else:
            out.append(check_float(f"{name}[{i}]", v, low=0.0, low_open=True))
    return out


def _check_xy(X, y, name="X"):
    if not isinstance(X, np.ndarray) or X.ndim != 2:
        raise TypeError(f"{name} must be a 2-D numpy array (samples, features)")
    if not isinstance(y, np.ndarray) or y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"the labels for {name} must be a 1-D array of {X.shape[0]} labels")
    return X, y


# =============================================================================
# Gradient descent on small costs (NumPy: the costs and gradients are exact)
# =============================================================================

@dataclass
class DescentRun:
    """One gradient-descent run.

    Attributes
    ----------
    lr : float
        The learning rate η.
    params : ndarray, shape (steps + 1,) or (steps + 1, 2)
        The parameter(s) before each step and after the last.
    costs : ndarray, shape (steps + 1,)
        The cost at each of ``params``.
    verdict : str
        ``"converges"``, ``"slow"`` or ``"diverges"`` (:func:`descent_verdict`).
    """
    lr: float
    params: np.ndarray
    costs: np.ndarray
    verdict: str


def descent_verdict(costs, *, tol=1e-3):
    """Classify a gradient-descent trajectory from its costs.

    Parameters
    ----------
    costs : array, shape (steps + 1,)
        The cost before each step and after the last (steps >= 2).
    tol : float
        How small the last step's change in cost must be, relative to the
        first step's, to count as converged.

    Returns
    -------
    str
        ``"diverges"`` if the cost ends above where it started (or is not
        finite); ``"converges"`` if the last step changed the cost by at
        most ``tol`` times what the first step did (it has settled);
        otherwise ``"slow"`` (still falling when the steps ran out).
    """
    c = np.asarray(costs, dtype=float)
    if c.ndim != 1 or c.size < 3:
        raise ValueError(f"costs must be 1-D with at least 3 values, got shape {c.shape}")
    tol = check_float("tol", tol, low=0.0, low_open=True)
    if not np.all(np.isfinite(c)) or c[-1] > c[0]:
        return "diverges"
    first = abs(c[1] - c[0])
    if abs(c[-1] - c[-2]) <= tol * first:
        return "converges"
    return "slow"


def _descend(grad, cost, start, lr, steps):
    p = np.array(start, dtype=float)
    params = [p.copy()]
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            p = p - lr * grad(p)
            params.append(p.copy())
        params = np.array(params)
        costs = np.array([cost(q) for q in params])
    return DescentRun(float(lr), params, costs, descent_verdict(costs))


@dataclass
class OneParameterResult:
    """Gradient descent on the cost of a one-parameter model, y ≈ w·x.

    Attributes
    ----------
    x, y : ndarray, shape (n,)
        The data.
    w_best : float
        The least-squares w (where the cost is lowest).
    curves : list of (ndarray, ndarray), each of shape (200,)
        Per run, the cost curve C(w) = mean((w·x - y)²) over the w it
        visited (and the best w): ``(w_grid, cost_grid)``.
    runs : list of DescentRun
        One per learning rate; ``params`` has shape (steps + 1,).
    curvature : float
        C''(w) = 2·mean(x²); plain gradient descent converges when
        η < 2 / curvature.
    """
    x: np.ndarray
    y: np.ndarray
    w_best: float
    curves: list
    runs: list
    curvature: float


def one_parameter_descent(lrs=(0.02, 0.3, 0.8), *, steps=15, w0=-1.0, n=50, seed=0):
    """Gradient descent on a one-parameter cost with η too small, right and too large.

    The model is y ≈ w·x on ``n`` points x evenly spaced in [-2, 2],
    y = 2x + noise, and the cost is the quadratic cost
    C(w) = mean((w·x - y)²). Its curvature is 2·mean(x²) ≈ 2.7 whatever the
    noise, so η above about 0.73 makes each step overshoot the minimum by
    more than the last: the run diverges.

    Parameters
    ----------
    lrs : sequence of float
        Learning rates, one run each.
    steps : int
        Steps per run (>= 2).
    w0 : float
        The starting w.
    n : int
        Data points (>= 2).
    seed : int
        Seeds the data.

    Returns
    -------
    OneParameterResult
    """
    lrs = _check_positive_list("lrs", lrs)
    steps = check_int("steps", steps, minimum=2)
    w0 = check_float("w0", w0)
    n = check_int("n", n, minimum=2)
    rng = np.random.default_rng(_check_seed(seed))
    x = np.linspace(-2.0, 2.0, n)
    y = 2.0 * x + 0.5 * rng.standard_normal(n)
    w_best = float(x @ y / (x @ x))

    def cost(w):
        return float(np.mean((w * x - y) ** 2))

    def grad(w):
        return 2.0 * np.mean((w * x - y) * x)

    runs = [_descend(grad, cost, w0, lr, steps) for lr in lrs]
    curves = []
    for r in runs:
        seen = np.append(r.params[np.isfinite(r.params)], w_best)
        lo, hi = float(seen.min()), float(seen.max())
        pad = 0.1 * (hi - lo) + 0.3
        w_grid = np.linspace(lo - pad, hi + pad, 200)
        curves.append((w_grid, np.array([cost(w) for w in w_grid])))
    return OneParameterResult(x, y, w_best, curves, runs, 2.0 * float(np.mean(x * x)))


@dataclass
class TwoParameterResult:
    """Gradient descent on the cost surface of a line fit, y ≈ w·x + b.

    Attributes
    ----------
    x, y : ndarray, shape (n,)
        The data.
    best : ndarray, shape (2,)
        The least-squares (w, b).
    w_grid, b_grid : ndarray, shape (120,)
        The axes of ``cost_grid``.
    cost_grid : ndarray, shape (120, 120)
        C(w, b) = mean((w·x + b - y)²); row i is ``b_grid[i]``, column j
        is ``w_grid[j]``.
    runs : list of DescentRun
        ``params`` has shape (steps + 1, 2), columns (w, b).
    eigenvalues : ndarray, shape (2,)
        The Hessian's eigenvalues (the surface's curvatures along its axes).
    """
    x: np.ndarray
    y: np.ndarray
    best: np.ndarray
    w_grid: np.ndarray
    b_grid: np.ndarray
    cost_grid: np.ndarray
    runs: list
    eigenvalues: np.ndarray


def two_parameter_descent(lrs=(0.05, 0.2), *, steps=60, start=(-1.0, 3.0), n=50, seed=0):
    """Gradient descent on a two-parameter cost surface.

    A line y ≈ w·x + b fitted to ``n`` points x evenly spaced in [0, 3],
    y = 1.5x - 1 + noise, by the quadratic cost. Because x is not centred, the surface is
    a long narrow valley (curvatures about 7.6 and 0.4): the larger η
    zig-zags across it while both creep along it.

    Parameters
    ----------
    lrs : sequence of float
        Learning rates, one path each.
    steps : int
        Steps per path (>= 2).
    start : (float, float)
        The starting (w, b).
    n : int
        Data points (>= 2).
    seed : int
        Seeds the data.

    Returns
    -------
    TwoParameterResult
    """
    lrs = _check_positive_list("lrs", lrs)
    steps = check_int("steps", steps, minimum=2)
    if not isinstance(start, (tuple, list)) or len(start) != 2:
        raise TypeError(f"start must be a pair (w, b), got {start!r}")
    start = [check_float("start[0]", start[0]), check_float("start[1]", start[1])]
    n = check_int("n", n, minimum=2)
    rng = np.random.default_rng(_check_seed(seed))
    x = np.linspace(0.0, 3.0, n)
    y = 1.5 * x - 1.0 + 0.3 * rng.standard_normal(n)
    A = np.column_stack([x, np.ones(n)])
    best = np.linalg.lstsq(A, y, rcond=None)[0]

    def cost(p):
        return float(np.mean((A @ p - y) ** 2))

    def grad(p):
        return 2.0 * A.T @ (A @ p - y) / n

    runs = [_descend(grad, cost, start, lr, steps) for lr in lrs]
    pts = np.vstack([r.params[np.all(np.isfinite(r.params), axis=1)] for r in runs] + [best])
    span = np.ptp(pts, axis=0) * 0.2 + 0.5
    w_grid = np.linspace(pts[:, 0].min() - span[0], pts[:, 0].max() + span[0], 120)
    b_grid = np.linspace(pts[:, 1].min() - span[1], pts[:, 1].max() + span[1], 120)
    W, B = np.meshgrid(w_grid, b_grid)
    pred = W[..., None] * x + B[..., None]
    cost_grid = np.mean((pred - y) ** 2, axis=-1)
    eig = np.linalg.eigvalsh(2.0 * A.T @ A / n)
    return TwoParameterResult(x, y, best, w_grid, b_grid, cost_grid, runs, eig)


# =============================================================================
# Local minima: full-batch gradient descent trapped, mini-batch SGD escaping
# =============================================================================

@dataclass
class LocalMinimaResult:
    """Full-batch gradient descent and mini-batch SGD on the same non-convex cost.

    Attributes
    ----------
    x, y : ndarray, shape (n,)
        The data: y = sin(2x) + noise.
    w_grid, cost_grid : ndarray, shape (g,)
        The cost C(w) = mean((sin(w·x) - y)²).
    w_global : float
        Where the cost is lowest (the global minimum, near 2).
    basin : (float, float)
        The global minimum's basin: between the cost maxima on either side.
    w_local : float
        Where full-batch gradient descent settled.
    gd_path : ndarray, shape (steps + 1,)
        Full-batch gradient descent's w after each step.
    sgd_paths : ndarray, shape (n_seeds, steps + 1)
        Mini-batch SGD's w after each round, one row per seed.
    sgd_final : ndarray, shape (n_seeds,)
        Where each SGD run ended.
    reached_global : ndarray of bool, shape (n_seeds,)
        Whether each SGD run ended in the global minimum's basin.
    gd_reached_global : bool
    fraction_global : float
        The fraction of SGD seeds that ended in the global basin.
    lr, batch_size, epochs, w0 : the settings.
    """
    x: np.ndarray
    y: np.ndarray
    w_grid: np.ndarray
    cost_grid: np.ndarray
    w_global: float
    basin: tuple
    w_local: float
    gd_path: np.ndarray
    sgd_paths: np.ndarray
    sgd_final: np.ndarray
    reached_global: np.ndarray
    gd_reached_global: bool
    fraction_global: float
    lr: float
    batch_size: int
    epochs: int
    w0: float


def local_minima(*, n_seeds=30, lr=0.2, batch_size=4, epochs=20, w0=3.6, n=200, seed=0):
    """Full-batch gradient descent trapped in a local minimum; mini-batch SGD escaping.

    The model is a single sine unit, y ≈ sin(w·x), fitted by the quadratic
    cost to ``n`` points x ~ U(0, 4), y = sin(2x) + noise. Its cost C(w)
    has its global minimum near w = 2 and a shallower local minimum near
    w = 4, next to the start ``w0``. Full-batch gradient descent, given as
    many steps as SGD takes rounds, rolls into the local minimum and stays.
    Mini-batch SGD with the same η follows noisy gradients: where the fit is
    poor the batches disagree and the noise is large, so it is shaken out of
    the local minimum; at the global minimum the fit is good and the noise
    small, so it stays.

    Parameters
    ----------
    n_seeds : int
        SGD runs, each with its own shuffling seed.
    lr : float
        The learning rate η of both methods.
    batch_size : int
        SGD's mini-batch size (smaller: noisier).
    epochs : int
        SGD's passes over the data; gradient descent takes the same number
        of steps as SGD takes rounds.
    w0 : float
        The common starting w.
    n : int
        Data points (>= batch_size).
    seed : int
        Seeds the data and, through it, every SGD run.

    Returns
    -------
    LocalMinimaResult
    """
    n_seeds = check_int("n_seeds", n_seeds, minimum=1)
    lr = check_float("lr", lr, low=0.0, low_open=True)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    epochs = check_int("epochs", epochs, minimum=1)
    w0 = check_float("w0", w0)
    n = check_int("n", n, minimum=2)
    if batch_size > n:
        raise ValueError(f"batch_size ({batch_size}) must not exceed n ({n})")
    seed = _check_seed(seed)
    ss = np.random.SeedSequence(seed)
    data_ss, runs_ss = ss.spawn(2)
    rng = np.random.default_rng(data_ss)
    x = rng.uniform(0.0, 4.0, n)
    y = np.sin(2.0 * x) + 0.05 * rng.standard_normal(n)

    def grad(w, xb, yb):
        return float(np.mean(2.0 * (np.sin(w * xb) - yb) * np.cos(w * xb) * xb))

    w_grid = np.linspace(0.5, 5.5, 1001)
    cost_grid = np.mean((np.sin(np.outer(w_grid, x)) - y) ** 2, axis=1)
    g = int(np.argmin(cost_grid))
    w_global = float(w_grid[g])
    left = g
    while left > 0 and cost_grid[left - 1] >= cost_grid[left]:
        left -= 1
    right = g
    while right < len(w_grid) - 1 and cost_grid[right + 1] >= cost_grid[right]:
        right += 1
    basin = (float(w_grid[left]), float(w_grid[right]))

    rounds = -(-n // batch_size)
    steps = rounds * epochs
    gd = np.empty(steps + 1)
    gd[0] = w = w0
    for k in range(steps):
        w -= lr * grad(w, x, y)
        gd[k + 1] = w
    paths = np.empty((n_seeds, steps + 1))
    for s, child in enumerate(runs_ss.spawn(n_seeds)):
        r = np.random.default_rng(child)
        w = w0
        paths[s, 0] = w
        k = 0
        for _ in range(epochs):
            perm = r.permutation(n)
            for start in range(0, n, batch_size):
                j = perm[start:start + batch_size]
                w -= lr * grad(w, x[j], y[j])
                k += 1
                paths[s, k] = w
    final = paths[:, -1]

    def in_basin(w):
        return bool(np.isfinite(w) and basin[0] < w < basin[1])

    reached = np.array([in_basin(w) for w in final])
    return LocalMinimaResult(x, y, w_grid, cost_grid, w_global, basin, float(gd[-1]), gd, paths,
                             final, reached, in_basin(gd[-1]), float(reached.mean()), lr,
                             batch_size, epochs, w0)


# =============================================================================
# MNIST experiments (fastsgd's trainer)
# =============================================================================

def make_net(name, *, seed=0):
    """The book's network ``name`` and its settings.

    Parameters
    ----------
    name : {"shallow", "intermediate"}
    seed : int
        Seeds the weights.

    Returns
    -------
    (Sequential, dict)
        The untrained model (inputs 784, outputs 10) and its entry of
        :data:`BOOK_NETS` (cost, η, batch size, epochs, published results).
    """
    from .layers import Dense, Sequential
    if name not in BOOK_NETS:
        raise ValueError(f"name must be one of {', '.join(map(repr, BOOK_NETS))}; got {name!r}")
    cfg = BOOK_NETS[name]
    hidden = cfg["hidden"]
    layers = [Dense(hidden[0], cfg["activation"], input_dim=784)]
    layers += [Dense(u, cfg["activation"]) for u in hidden[1:]]
    layers.append(Dense(10, "softmax"))
    return Sequential(layers, seed=_check_seed(seed)), cfg


def _trainer(model, cost, lr, batch_size, seed):
    from .optimizers import SGD
    from .trainer import Trainer
    return Trainer(model, cost, SGD(lr=lr), batch_size=batch_size, seed=seed)


@dataclass
class EpochRoundsResult:
    """Cost per round (mini-batch) over the first epochs of the Intermediate Net.

    Attributes
    ----------
    n_train, batch_size : int
    rounds_per_epoch : int
        ceil(n_train / batch_size): 469 for 60,000 images at 128.
    last_round_size : int
        The last round's batch: 60,000 - 468·128 = 96.
    sizes : ndarray of int, shape (rounds,)
        The batch size of every round, as the trainer reported it.
    costs : ndarray, shape (rounds,)
        The mean cost of every round's batch, before that round's step.
    epoch_of_round : ndarray of int, shape (rounds,)
        The (0-based) epoch of each round.
    epoch_costs : ndarray, shape (epochs,)
        The mean training cost of each epoch.
    val_accuracy : ndarray, shape (epochs,)
        Validation accuracy after each epoch.
    lr : float
    """
    n_train: int
    batch_size: int
    rounds_per_epoch: int
    last_round_size: int
    sizes: np.ndarray
    costs: np.ndarray
    epoch_of_round: np.ndarray
    epoch_costs: np.ndarray
    val_accuracy: np.ndarray
    lr: float


def epoch_rounds(X, y, X_val, y_val, *, epochs=3, batch_size=128, lr=0.1, seed=0):
    """Train the Intermediate Net and record the cost of every round.

    Parameters
    ----------
    X : ndarray, shape (n, 784)
    y : ndarray of int, shape (n,)
    X_val : ndarray, shape (m, 784)
    y_val : ndarray of int, shape (m,)
    epochs : int
    batch_size : int
    lr : float
    seed : int
        Seeds the weights and the shuffling.

    Returns
    -------
    EpochRoundsResult
    """
    from .callbacks import LambdaCallback
    X, y = _check_xy(X, y)
    X_val, y_val = _check_xy(X_val, y_val, "X_val")
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    lr = check_float("lr", lr, low=0.0, low_open=True)
    seed = _check_seed(seed)
    model, cfg = make_net("intermediate", seed=seed)
    trainer = _trainer(model, cfg["cost"], lr, batch_size, seed)
    sizes, costs, epoch_of = [], [], []
    current = [0]

    def on_epoch_begin(epoch, logs):
        current[0] = epoch

    def on_batch_end(batch, logs):
        sizes.append(logs["size"])
        costs.append(logs["loss"])
        epoch_of.append(current[0])

    cb = LambdaCallback(on_epoch_begin=on_epoch_begin, on_batch_end=on_batch_end)
    hist = trainer.fit(X, y, epochs=epochs, validation_data=(X_val, y_val), callbacks=[cb],
                       verbose=0)
    n = X.shape[0]
    bs = min(batch_size, n)
    per_epoch = -(-n // bs)
    return EpochRoundsResult(n, batch_size, per_epoch, n - (per_epoch - 1) * bs,
                             np.array(sizes, dtype=np.int64), np.array(costs),
                             np.array(epoch_of, dtype=np.int64),
                             np.array(hist.history["loss"]),
                             np.array(hist.history["val_accuracy"]), lr)


#: the thresholds of :func:`classify_learning_curve`
CURVE_RULE = {"blowup": 10.0, "jump": 1.2, "slow": 0.5}


def classify_learning_curve(start_cost, round_costs, val_costs, *, diverged=False,
                            blowup=CURVE_RULE["blowup"], jump=CURVE_RULE["jump"],
                            slow=CURVE_RULE["slow"]):
    """Say how a training run went, from its cost curves (the book's rules of thumb).

    Parameters
    ----------
    start_cost : float
        The validation cost of the untrained network, C0.
    round_costs : array, shape (rounds,)
        The training cost of every round (mini-batch).
    val_costs : array, shape (epochs,)
        The validation cost after each completed epoch.
    diverged : bool
        Training stopped because the cost or a weight became NaN or infinite.
    blowup, jump, slow : float
        The thresholds below.

    Returns
    -------
    str
        The first that applies:

        ``"diverges"``
            training stopped on a non-finite cost, or some round's cost
            exceeded ``blowup`` × C0, or the last validation cost is no
            lower than C0 (training ended no better than it began);
        ``"jumps about"``
            some round's cost rose above ``jump`` × C0: the steps overshoot
            and the cost goes up as well as down;
        ``"learns slowly"``
            the last validation cost is above ``slow`` × C0: the cost fell,
            but by less than half;
        ``"learns"``
            otherwise.
    """
    start_cost = check_float("start_cost", start_cost, low=0.0, low_open=True)
    blowup = check_float("blowup", blowup, low=1.0, low_open=True)
    jump = check_float("jump", jump, low=1.0, low_open=True)
    slow = check_float("slow", slow, low=0.0, high=1.0, low_open=True, high_open=True)
    diverged = check_bool("diverged", diverged)
    r = np.asarray(round_costs, dtype=float).ravel()
    v = np.asarray(val_costs, dtype=float).ravel()
    if diverged or v.size == 0 or not np.all(np.isfinite(r)) or not np.all(np.isfinite(v)):
        return "diverges"
    if (r.size and r.max() > blowup * start_cost) or v[-1] >= start_cost:
        return "diverges"
    if r.size and r.max() > jump * start_cost:
        return "jumps about"
    if v[-1] > slow * start_cost:
        return "learns slowly"
    return "learns"


@dataclass
class SweepRun:
    """One learning rate of :func:`learning_rate_sweep`.

    Attributes
    ----------
    lr : float
    start_cost : float
        Validation cost before training (C0).
    round_costs : ndarray, shape (rounds,)
        Training cost of every round (fewer rounds if training diverged).
    val_costs, val_accuracy : ndarray, shape (epochs_done,)
        After each completed epoch.
    diverged : bool
        Training stopped on a non-finite cost.
    verdict : str
        :func:`classify_learning_curve`'s verdict.
    """
    lr: float
    start_cost: float
    round_costs: np.ndarray
    val_costs: np.ndarray
    val_accuracy: np.ndarray
    diverged: bool
    verdict: str


@dataclass
class LearningRateSweepResult:
    """The learning-rate sweep on the Intermediate Net, beside find_lr.

    Attributes
    ----------
    runs : list of SweepRun
        One per learning rate, in the order given.
    epochs, batch_size, n_train : int
    finder_lrs, finder_costs : ndarray, shape (steps,)
        :func:`fastsgd.find_lr`'s sweep: η and the smoothed cost.
    suggestion : float
        find_lr's suggested η.
    suggestion_rule : str
    rule : dict
        The thresholds of :func:`classify_learning_curve` used.
    """
    runs: list
    epochs: int
    batch_size: int
    n_train: int
    finder_lrs: np.ndarray
    finder_costs: np.ndarray
    suggestion: float
    suggestion_rule: str
    rule: dict = field(default_factory=lambda: dict(CURVE_RULE))

    def verdicts(self):
        """``{lr: verdict}``."""
        return {r.lr: r.verdict for r in self.runs}


def learning_rate_sweep(X, y, X_val, y_val, *, lrs=(1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
                        epochs=3, batch_size=128, finder_steps=100, seed=0):
    """Train the Intermediate Net at each learning rate and classify each run.

    Every run starts from the same weights (same ``seed``) and sees the
    batches in the same order, so only η differs. Each run's curves are
    classified by :func:`classify_learning_curve`. :func:`fastsgd.find_lr`
    runs on the same network for comparison.

    Parameters
    ----------
    X : ndarray, shape (n, 784)
    y : ndarray of int, shape (n,)
    X_val : ndarray, shape (m, 784)
    y_val : ndarray of int, shape (m,)
    lrs : sequence of float
    epochs : int
    batch_size : int
    finder_steps : int
        Mini-batches of the find_lr sweep (>= 5).
    seed : int

    Returns
    -------
    LearningRateSweepResult
    """
    from .callbacks import LambdaCallback
    from .lr_finder import find_lr
    from .optimizers import SGD
    from .trainer import DivergenceWarning
    X, y = _check_xy(X, y)
    X_val, y_val = _check_xy(X_val, y_val, "X_val")
    lrs = _check_positive_list("lrs", lrs)
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    finder_steps = check_int("finder_steps", finder_steps, minimum=5)
    seed = _check_seed(seed)
    runs = []
    for lr in lrs:
        model, cfg = make_net("intermediate", seed=seed)
        trainer = _trainer(model, cfg["cost"], lr, batch_size, seed)
        c0 = trainer.evaluate(X_val, y_val)["loss"]
        costs = []
        cb = LambdaCallback(on_batch_end=lambda b, logs: costs.append(logs["loss"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DivergenceWarning)
            hist = trainer.fit(X, y, epochs=epochs, validation_data=(X_val, y_val),
                               callbacks=[cb], verbose=0)
        diverged = hist.diverged is not None
        val = np.array(hist.history.get("val_loss", []), dtype=float)
        acc = np.array(hist.history.get("val_accuracy", []), dtype=float)
        verdict = classify_learning_curve(c0, costs, val, diverged=diverged)
        runs.append(SweepRun(lr, c0, np.array(costs, dtype=float), val, acc, diverged, verdict))
    model, cfg = make_net("intermediate", seed=seed)
    res = find_lr(model, cfg["cost"], X, y, optimizer=SGD(), batch_size=batch_size,
                  min_lr=1e-5, max_lr=10.0, steps=finder_steps, seed=seed)
    return LearningRateSweepResult(runs, epochs, batch_size, X.shape[0], np.array(res.lrs),
                                   np.array(res.losses), float(res.suggestion), res.rule)


@dataclass
class BatchSizeRun:
    """One batch size of :func:`batch_size_sweep`.

    Attributes
    ----------
    batch_size, rounds_per_epoch : int
    seconds_per_epoch : float
        Median wall-clock seconds per epoch (machine-dependent).
    val_accuracy_epochs : float
        Validation accuracy after the fixed number of epochs.
    rounds_in_budget : int
        Rounds completed within the time budget (machine-dependent).
    epochs_in_budget : float
        ``rounds_in_budget / rounds_per_epoch``.
    val_accuracy_budget : float
        Validation accuracy after the time budget (machine-dependent).
    """
    batch_size: int
    rounds_per_epoch: int
    seconds_per_epoch: float
    val_accuracy_epochs: float
    rounds_in_budget: int
    epochs_in_budget: float
    val_accuracy_budget: float


@dataclass
class BatchSizeResult:
    """The batch-size sweep on the Intermediate Net.

    Attributes
    ----------
    runs : list of BatchSizeRun
    epochs : int
        The fixed number of epochs.
    time_budget : float
        The fixed budget, seconds of training.
    lr : float
    n_train : int
    """
    runs: list
    epochs: int
    time_budget: float
    lr: float
    n_train: int


def batch_size_sweep(X, y, X_val, y_val, *, batch_sizes=(16, 32, 64, 128, 256, 512), epochs=2,
                     time_budget=3.0, lr=0.1, seed=0):
    """Train the Intermediate Net at each batch size: per epoch and per second.

    For each batch size, one run of ``epochs`` epochs gives the seconds per
    epoch and the validation accuracy after a fixed number of epochs;
    another run from the same start trains until ``time_budget`` seconds
    have passed (checked after every round) and gives the accuracy after a
    fixed time. Smaller batches take more, noisier steps per epoch; larger
    batches fewer, smoother and (per sample) cheaper ones.

    Parameters
    ----------
    X : ndarray, shape (n, 784)
    y : ndarray of int, shape (n,)
    X_val : ndarray, shape (m, 784)
    y_val : ndarray of int, shape (m,)
    batch_sizes : sequence of int
    epochs : int
    time_budget : float
        Seconds of training per batch size in the second run.
    lr : float
        The same η for every batch size.
    seed : int

    Returns
    -------
    BatchSizeResult
        Times and the time-budget numbers depend on the machine and its load.
    """
    from .callbacks import LambdaCallback
    X, y = _check_xy(X, y)
    X_val, y_val = _check_xy(X_val, y_val, "X_val")
    batch_sizes = _check_positive_list("batch_sizes", batch_sizes, kind=int)
    epochs = check_int("epochs", epochs, minimum=1)
    time_budget = check_float("time_budget", time_budget, low=0.0, low_open=True)
    lr = check_float("lr", lr, low=0.0, low_open=True)
    seed = _check_seed(seed)
    runs = []
    n = X.shape[0]
    for bs in batch_sizes:
        model, cfg = make_net("intermediate", seed=seed)
        trainer = _trainer(model, cfg["cost"], lr, bs, seed)
        hist = trainer.fit(X, y, epochs=epochs, verbose=0)
        sec = float(np.median(hist.history["seconds"]))
        acc_epochs = trainer.evaluate(X_val, y_val)["accuracy"]

        model, cfg = make_net("intermediate", seed=seed)
        trainer = _trainer(model, cfg["cost"], lr, bs, seed)
        state = {"t0": 0.0, "rounds": 0}

        def begin(logs, state=state):
            state["t0"] = time.perf_counter()

        def batch_end(b, logs, state=state, trainer=trainer):
            state["rounds"] += 1
            if time.perf_counter() - state["t0"] >= time_budget:
                trainer.model.stop_training = True

        cb = LambdaCallback(on_train_begin=begin, on_batch_end=batch_end)
        # enough epochs never to run out before the budget does
        trainer.fit(X, y, epochs=10 ** 6, callbacks=[cb], verbose=0)
        acc_budget = trainer.evaluate(X_val, y_val)["accuracy"]
        per_epoch = -(-n // min(bs, n))
        runs.append(BatchSizeRun(bs, per_epoch, sec, acc_epochs, state["rounds"],
                                 state["rounds"] / per_epoch, acc_budget))
    return BatchSizeResult(runs, epochs, time_budget, lr, n)


@dataclass
class EarlyStoppingResult:
    """Training until the validation cost stops improving.

    Attributes
    ----------
    loss, val_loss, val_accuracy : ndarray, shape (epochs_run,)
        Per completed epoch.
    best_epoch : int
        The 0-based epoch with the lowest validation cost, whose weights
        were restored.
    stopped_epoch : int or None
        The 0-based epoch in which early stopping ended training (None if
        ``max_epochs`` ran out first).
    patience, max_epochs, n_train : int
    restored_val_loss, restored_val_accuracy : float
        Validation cost and accuracy of the restored weights.
    unstopped_loss, unstopped_val_loss : ndarray, shape (max_epochs,)
        The same run (same seed) without early stopping, for all
        ``max_epochs``: what stopping avoided.
    lr, batch_size : the settings.
    """
    loss: np.ndarray
    val_loss: np.ndarray
    val_accuracy: np.ndarray
    best_epoch: int
    stopped_epoch: object
    patience: int
    max_epochs: int
    n_train: int
    restored_val_loss: float
    restored_val_accuracy: float
    unstopped_loss: np.ndarray
    unstopped_val_loss: np.ndarray
    lr: float
    batch_size: int


def early_stopping_run(X, y, X_val, y_val, *, max_epochs=60, patience=5, lr=0.05, batch_size=32,
                       seed=0):
    """Train the Intermediate Net with early stopping on the validation cost.

    With few training images (2,000 in :func:`run`) the network starts to
    overfit after some epochs: the training cost keeps falling while the
    validation cost turns up. :class:`fastsgd.EarlyStopping`
    (``monitor="val_loss"``) stops ``patience`` epochs after the best one
    and restores its weights. The same run without early stopping, for all
    ``max_epochs``, is returned beside it.

    Parameters
    ----------
    X : ndarray, shape (n, 784)
    y : ndarray of int, shape (n,)
    X_val : ndarray, shape (m, 784)
    y_val : ndarray of int, shape (m,)
    max_epochs : int
    patience : int
    lr : float
    batch_size : int
    seed : int

    Returns
    -------
    EarlyStoppingResult
    """
    from .callbacks import EarlyStopping
    X, y = _check_xy(X, y)
    X_val, y_val = _check_xy(X_val, y_val, "X_val")
    max_epochs = check_int("max_epochs", max_epochs, minimum=1)
    patience = check_int("patience", patience, minimum=0)
    lr = check_float("lr", lr, low=0.0, low_open=True)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    seed = _check_seed(seed)
    model, cfg = make_net("intermediate", seed=seed)
    trainer = _trainer(model, cfg["cost"], lr, batch_size, seed)
    es = EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    hist = trainer.fit(X, y, epochs=max_epochs, validation_data=(X_val, y_val), callbacks=[es],
                       verbose=0)
    after = trainer.evaluate(X_val, y_val)
    model, cfg = make_net("intermediate", seed=seed)
    trainer = _trainer(model, cfg["cost"], lr, batch_size, seed)
    ref = trainer.fit(X, y, epochs=max_epochs, validation_data=(X_val, y_val), verbose=0)
    return EarlyStoppingResult(np.array(hist.history["loss"]), np.array(hist.history["val_loss"]),
                               np.array(hist.history["val_accuracy"]), int(es.best_epoch),
                               int(es.stopped_epoch) if es.stopped_epoch > 0 else None, patience,
                               max_epochs, X.shape[0], after["loss"], after["accuracy"],
                               np.array(ref.history["loss"]), np.array(ref.history["val_loss"]),
                               lr, batch_size)


@dataclass
class NetRun:
    """One of the book's networks trained with the book's settings.

    Attributes
    ----------
    name, title : str
    params, book_params : int
        Parameter count here and in the book.
    epochs, book_epochs : int
    test_accuracy : float
        Accuracy on MNIST's 10,000 test images after the last epoch.
    book_accuracy : float
        The book's published test accuracy.
    val_accuracy : ndarray, shape (epochs,)
        Test accuracy after each epoch (the book uses the test set as its
        validation data).
    seconds : float
        Wall-clock training time (machine-dependent).
    cost, lr, batch_size : the settings.
    """
    name: str
    title: str
    params: int
    book_params: int
    epochs: int
    book_epochs: int
    test_accuracy: float
    book_accuracy: float
    val_accuracy: np.ndarray
    seconds: float
    cost: str
    lr: float
    batch_size: int


def book_nets(X, y, X_test, y_test, *, epochs=None, seed=0):
    """Train the Shallow and Intermediate Nets with the book's settings.

    Parameters
    ----------
    X : ndarray, shape (n, 784)
    y : ndarray of int, shape (n,)
    X_test : ndarray, shape (m, 784)
    y_test : ndarray of int, shape (m,)
    epochs : dict, optional
        ``{"shallow": int, "intermediate": int}``; default the book's
        (200 and 20). A missing key keeps the book's number.
    seed : int

    Returns
    -------
    list of NetRun
        Shallow first.
    """
    X, y = _check_xy(X, y)
    X_test, y_test = _check_xy(X_test, y_test, "X_test")
    seed = _check_seed(seed)
    if epochs is None:
        epochs = {}
    if not isinstance(epochs, dict):
        raise TypeError(f"epochs must be a dict like {{'shallow': 200}}, got {epochs!r}")
    for k in epochs:
        if k not in BOOK_NETS:
            raise ValueError(f"epochs: unknown network {k!r} (expected shallow, intermediate)")
    out = []
    for name, cfg in BOOK_NETS.items():
        n_epochs = check_int(f"epochs[{name!r}]", epochs.get(name, cfg["epochs"]), minimum=1)
        model, cfg = make_net(name, seed=seed)
        trainer = _trainer(model, cfg["cost"], cfg["lr"], cfg["batch_size"], seed)
        t0 = time.perf_counter()
        hist = trainer.fit(X, y, epochs=n_epochs, validation_data=(X_test, y_test), verbose=0)
        secs = time.perf_counter() - t0
        acc = trainer.evaluate(X_test, y_test)["accuracy"]
        out.append(NetRun(name, cfg["title"], model.count_params(), cfg["params"], n_epochs,
                          cfg["epochs"], acc, cfg["accuracy"],
                          np.array(hist.history["val_accuracy"]), secs, cfg["cost"], cfg["lr"],
                          cfg["batch_size"]))
    return out


# =============================================================================
# Figures (matplotlib; drawn only from the results above)
# =============================================================================

_VERDICT_COLOURS = {"converges": "C2", "slow": "C0", "diverges": "C3", "learns": "C2",
                    "learns slowly": "C0", "jumps about": "C1"}


def _figure(ncols, width=5.0, height=4.0, nrows=1):
    from .plotting import require_matplotlib
    require_matplotlib("drawing the book's figures")
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width * ncols, height * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [a for row in axes for a in row]


def plot_one_parameter(res):
    """Cost curve C(w) with each run's steps, one panel per η; returns the Figure."""
    fig, axes = _figure(len(res.runs), 4.6, 3.8)
    for ax, run, (grid, cost) in zip(axes, res.runs, res.curves):
        ok = np.isfinite(run.params) & np.isfinite(run.costs)
        p, c = run.params[ok], run.costs[ok]
        ax.plot(grid, cost, color="0.6", lw=1.5, label="cost C(w)")
        ax.plot(p, c, "-o", ms=3.5, lw=0.8, color=_VERDICT_COLOURS[run.verdict],
                label=f"{len(p) - 1} steps")
        ax.plot(p[0], c[0], "ks", ms=5, label="start")
        ax.set_title(f"η = {run.lr:g}: {run.verdict}")
        ax.set_xlabel("parameter w")
        ax.set_ylabel("cost")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("Gradient descent on a one-parameter cost (y ≈ w·x, quadratic cost)")
    fig.tight_layout()
    return fig


def plot_two_parameter(res):
    """Contours of C(w, b) with each η's path; returns the Figure."""
    fig, (ax,) = _figure(1, 6.5, 5.0)
    levels = np.quantile(res.cost_grid, np.linspace(0.0, 0.9, 16) ** 2)
    levels = np.unique(np.concatenate([levels, [res.cost_grid.min() * 1.05]]))
    cs = ax.contour(res.w_grid, res.b_grid, res.cost_grid, levels=np.sort(levels), cmap="viridis",
                    linewidths=0.8)
    ax.clabel(cs, fontsize=6, fmt="%.2g")
    for i, run in enumerate(res.runs):
        p = run.params
        ax.plot(p[:, 0], p[:, 1], "-o", ms=2.5, lw=0.9, color=f"C{i + 1}",
                label=f"η = {run.lr:g} ({len(p) - 1} steps, {run.verdict})")
    ax.plot(*res.runs[0].params[0], "ks", ms=6, label="start")
    ax.plot(*res.best, "r*", ms=12, label="minimum")
    ax.set_xlabel("weight w")
    ax.set_ylabel("bias b")
    ax.set_title("Gradient descent on a two-parameter cost surface (y ≈ w·x + b)")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def plot_local_minima(res):
    """The cost curve with where each method ended, and w over the rounds; returns the Figure."""
    fig, (a1, a2) = _figure(2, 5.8, 4.2)
    a1.plot(res.w_grid, res.cost_grid, color="0.4", lw=1.2, label="cost C(w)")
    cost_at = lambda w: np.interp(w, res.w_grid, res.cost_grid)  # noqa: E731
    a1.plot(res.w0, cost_at(res.w0), "ks", ms=6, label="start")
    a1.plot(res.w_local, cost_at(res.w_local), "o", color="C3", ms=9,
            label="full-batch GD ends")
    fin = res.sgd_final[np.isfinite(res.sgd_final)]
    fin = fin[(fin >= res.w_grid[0]) & (fin <= res.w_grid[-1])]
    a1.plot(fin, cost_at(fin), "v", color="C0", ms=6, alpha=0.6,
            label=f"SGD ends ({res.reached_global.sum()}/{len(res.reached_global)} global)")
    a1.axvspan(*res.basin, color="C2", alpha=0.08, label="global minimum's basin")
    a1.set_xlabel("parameter w")
    a1.set_ylabel("cost")
    a1.set_title("Cost of y ≈ sin(w·x): a local and a global minimum")
    a1.legend(fontsize=8)
    steps = np.arange(res.gd_path.size)
    for k, path in enumerate(res.sgd_paths):
        a2.plot(steps, path, color="C0", lw=0.6, alpha=0.35,
                label=f"mini-batch SGD (batch {res.batch_size}), {len(res.sgd_paths)} seeds"
                if k == 0 else None)
    a2.plot(steps, res.gd_path, color="C3", lw=2, label="full-batch gradient descent")
    a2.axhspan(*res.basin, color="C2", alpha=0.08)
    a2.axhline(res.w_global, color="C2", ls="--", lw=1, label="global minimum")
    a2.set_ylim(res.w_grid[0], res.w_grid[-1])
    a2.set_xlabel("round (step)")
    a2.set_ylabel("w")
    a2.set_title(f"Same η = {res.lr:g}, same number of steps")
    a2.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot_epoch_rounds(res):
    """Cost per round, with the epoch boundaries; returns the Figure."""
    fig, (ax,) = _figure(1, 9.0, 4.0)
    r = np.arange(1, res.costs.size + 1)
    ax.plot(r, res.costs, lw=0.7, color="C0", label=f"cost of each round (batch {res.batch_size})")
    for e, c in enumerate(res.epoch_costs):
        lo = e * res.rounds_per_epoch
        ax.hlines(c, lo + 1, lo + res.rounds_per_epoch, color="C3", lw=2,
                  label="mean cost of the epoch" if e == 0 else None)
        if e > 0:
            ax.axvline(lo + 0.5, color="0.5", ls=":", lw=1)
    ax.set_xlabel("round")
    ax.set_ylabel("cost (cross-entropy)")
    ax.set_title(f"{res.n_train:,} images at batch size {res.batch_size}: {res.rounds_per_epoch} "
                 f"rounds per epoch, the last of {res.last_round_size}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_learning_rate_sweep(res):
    """Cost per round per η, final validation cost per η and find_lr's curve; returns the
    Figure."""
    fig, (a1, a2, a3) = _figure(3, 5.0, 4.2)
    c0 = max(r.start_cost for r in res.runs)
    for i, run in enumerate(res.runs):
        k = max(1, run.round_costs.size // 60)
        sm = (np.convolve(run.round_costs, np.ones(k) / k, mode="valid")
              if run.round_costs.size else np.array([]))
        a1.plot(np.arange(sm.size) + k, sm, lw=1, color=f"C{i}",
                label=f"η = {run.lr:g}: {run.verdict}")
    a1.set_ylim(0, 2 * c0)
    a1.set_xlabel("round")
    a1.set_ylabel("training cost per round (smoothed)")
    a1.set_title("The cost as training goes")
    a1.legend(fontsize=7)
    for run in res.runs:
        last = run.val_costs[-1] if run.val_costs.size else np.nan
        a2.plot(run.lr, min(last, 2 * c0) if np.isfinite(last) else 2 * c0, "o", ms=9,
                color=_VERDICT_COLOURS[run.verdict])
        a2.annotate(run.verdict, (run.lr, min(last, 2 * c0) if np.isfinite(last) else 2 * c0),
                    textcoords="offset points", xytext=(0, 8), ha="center", fontsize=7)
    a2.axhline(c0, color="0.5", ls=":", lw=1, label="before training")
    a2.axvline(res.suggestion, color="C4", ls="--", label=f"find_lr: {res.suggestion:.3g}")
    a2.set_xscale("log")
    a2.set_ylim(0, 2.2 * c0)
    a2.set_xlabel("learning rate η")
    a2.set_ylabel(f"validation cost after {res.epochs} epochs")
    a2.set_title("Where each η ends")
    a2.legend(fontsize=8)
    a3.plot(res.finder_lrs, res.finder_costs, color="C4")
    a3.axvline(res.suggestion, color="C4", ls="--", label=f"suggested η = {res.suggestion:.3g}")
    a3.set_xscale("log")
    a3.set_xlabel("learning rate η")
    a3.set_ylabel("smoothed cost")
    a3.set_title("fastsgd.find_lr's range test")
    a3.legend(fontsize=8)
    for a in (a1, a2, a3):
        a.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_batch_sizes(res):
    """Seconds per epoch, and accuracy after fixed epochs and fixed time, by batch size;
    returns the Figure."""
    fig, (a1, a2) = _figure(2, 5.5, 4.0)
    bs = [r.batch_size for r in res.runs]
    a1.plot(bs, [r.seconds_per_epoch for r in res.runs], "o-")
    a1.set_xscale("log", base=2)
    a1.set_xticks(bs, [str(b) for b in bs])
    a1.set_xlabel("batch size")
    a1.set_ylabel("seconds per epoch")
    a1.set_title("Time per epoch")
    a2.plot(bs, [100 * r.val_accuracy_epochs for r in res.runs], "o-",
            label=f"after {res.epochs} epoch{'s' if res.epochs > 1 else ''}")
    a2.plot(bs, [100 * r.val_accuracy_budget for r in res.runs], "s--",
            label=f"after {res.time_budget:g} s of training")
    a2.set_xscale("log", base=2)
    a2.set_xticks(bs, [str(b) for b in bs])
    a2.set_xlabel("batch size")
    a2.set_ylabel("validation accuracy (%)")
    a2.set_title(f"Same η = {res.lr:g} for every batch size")
    a2.legend(fontsize=8)
    for a in (a1, a2):
        a.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_early_stopping(res):
    """Training and validation cost per epoch with the stop and the best epoch; returns the
    Figure."""
    from .plotting import draw_curves
    fig, (ax,) = _figure(1, 7.5, 4.4)
    more = np.arange(2, res.unstopped_loss.size + 1)
    ax.plot(more, res.unstopped_loss[1:], color="C0", alpha=0.3, lw=1,
            label="training cost without early stopping")
    ax.plot(more, res.unstopped_val_loss[1:], color="C1", alpha=0.3, lw=1,
            label="validation cost without early stopping")
    epochs = list(range(res.loss.size))
    draw_curves(ax, epochs, {"training cost": res.loss, "validation cost": res.val_loss},
                ylabel="cost (cross-entropy)",
                early_stopping={"best_epoch": res.best_epoch, "stopped_epoch": res.stopped_epoch,
                                "restored": True})
    ax.set_ylim(0, 1.15 * max(res.val_loss[1:].max(initial=0), res.loss[1:].max(initial=0),
                              res.unstopped_val_loss[1:].max(initial=0)))
    ax.set_title(f"Early stopping (patience {res.patience}) on {res.n_train:,} training images")
    fig.tight_layout()
    return fig


def plot_book_nets(runs):
    """Test accuracy per epoch of each net beside the book's figure; returns the Figure."""
    fig, axes = _figure(len(runs), 5.5, 4.0)
    for ax, r in zip(axes, runs):
        ax.plot(np.arange(1, r.val_accuracy.size + 1), 100 * r.val_accuracy,
                label=f"fastsgd: {100 * r.test_accuracy:.1f}% after {r.epochs} epochs")
        ax.axhline(100 * r.book_accuracy, color="C3", ls="--",
                   label=f"book: about {100 * r.book_accuracy:.0f}% after {r.book_epochs} epochs")
        from matplotlib.ticker import MaxNLocator
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{r.title} ({r.params:,} parameters)")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# =============================================================================
# The whole chapter: figures and a report
# =============================================================================

#: settings of the full run and of ``quick=True``
SETTINGS = {
    "full": {"rounds_epochs": 3, "sweep_train": None, "sweep_epochs": 3, "batch_train": None,
             "batch_epochs": 3, "time_budget": 4.0, "es_train": 2000, "es_max_epochs": 60,
             "es_patience": 5, "shallow_epochs": 200, "intermediate_epochs": 20,
             "local_seeds": 30},
    "quick": {"rounds_epochs": 2, "sweep_train": 10000, "sweep_epochs": 3, "batch_train": None,
              "batch_epochs": 1, "time_budget": 1.5, "es_train": 2000, "es_max_epochs": 60,
              "es_patience": 5, "shallow_epochs": 40, "intermediate_epochs": 5,
              "local_seeds": 30},
}

FIGURES = {
    "descent_1d": "01_descent_one_parameter.png",
    "descent_2d": "02_descent_two_parameters.png",
    "local_minima": "03_local_minima.png",
    "rounds": "04_epoch_rounds.png",
    "lr_sweep": "05_learning_rate_sweep.png",
    "batch_sizes": "06_batch_size.png",
    "early_stopping": "07_early_stopping.png",
    "book_nets": "08_book_nets.png",
}


def _save(fig, folder, name):
    path = os.path.join(folder, name)
    fig.savefig(path, dpi=110)
    return path


def run(out, *, quick=False, seed=0, data=None, log=print):
    """Run every experiment; write the figures and ``report.md`` into ``out``.

    Parameters
    ----------
    out : str or path-like
        The folder to write into (created if needed).
    quick : bool
        Smaller settings (about a minute): fewer epochs and training subsets
        (:data:`SETTINGS`); the report says so.
    seed : int
        Seeds every experiment.
    data : str or path-like, optional
        A folder with the four MNIST files; default :func:`load_mnist`'s
        search (the files packaged with fastsgd).
    log : callable or None
        Called with a line of progress text per experiment.

    Returns
    -------
    dict
        ``{"results": {experiment: result}, "figures": {experiment: path},
        "report": path, "seconds": {experiment: float}, "mode": str}``.
    """
    from . import datasets
    from .plotting import require_matplotlib
    require_matplotlib("fastsgd book")
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be a str or path-like, got {type(out).__name__}")
    quick = check_bool("quick", quick)
    seed = _check_seed(seed)
    if log is None:
        log = lambda *a, **k: None  # noqa: E731
    if not callable(log):
        raise TypeError("log must be callable or None")
    out = os.fspath(out)
    os.makedirs(out, exist_ok=True)
    mode = "quick" if quick else "full"
    cfg = SETTINGS[mode]
    found = datasets.locate_mnist(data)
    if found is None:
        raise FileNotFoundError("full MNIST not found: the packaged files are missing and nothing "
                                "is in the cache; give a folder with the four IDX files")
    folder, origin = found
    (X, y), (Xt, yt) = datasets.load_mnist(folder, download=False)
    log(f"data: full MNIST from {datasets.ORIGINS[origin]} ({folder})")

    def subset(n):
        return (X, y) if n is None else (X[:n], y[:n])

    results, figures, seconds = {}, {}, {}
    steps = [
        ("descent_1d", "gradient descent, one parameter",
         lambda: one_parameter_descent(seed=seed), plot_one_parameter),
        ("descent_2d", "gradient descent, two parameters",
         lambda: two_parameter_descent(seed=seed), plot_two_parameter),
        ("local_minima", "local minima: gradient descent vs mini-batch SGD",
         lambda: local_minima(n_seeds=cfg["local_seeds"], seed=seed), plot_local_minima),
        ("rounds", "an epoch as rounds",
         lambda: epoch_rounds(X, y, Xt, yt, epochs=cfg["rounds_epochs"], seed=seed),
         plot_epoch_rounds),
        ("lr_sweep", "learning-rate sweep",
         lambda: learning_rate_sweep(*subset(cfg["sweep_train"]), Xt, yt,
                                     epochs=cfg["sweep_epochs"], seed=seed),
         plot_learning_rate_sweep),
        ("batch_sizes", "batch-size sweep",
         lambda: batch_size_sweep(*subset(cfg["batch_train"]), Xt, yt,
                                  epochs=cfg["batch_epochs"], time_budget=cfg["time_budget"],
                                  seed=seed),
         plot_batch_sizes),
        ("early_stopping", "epochs and early stopping",
         lambda: early_stopping_run(*subset(cfg["es_train"]), Xt, yt,
                                    max_epochs=cfg["es_max_epochs"], patience=cfg["es_patience"],
                                    seed=seed),
         plot_early_stopping),
        ("book_nets", "the book's Shallow and Intermediate Nets",
         lambda: book_nets(X, y, Xt, yt, epochs={"shallow": cfg["shallow_epochs"],
                                                  "intermediate": cfg["intermediate_epochs"]},
                           seed=seed),
         plot_book_nets),
    ]
    t_all = time.perf_counter()
    for key, title, compute, draw in steps:
        t0 = time.perf_counter()
        res = compute()
        seconds[key] = time.perf_counter() - t0
        results[key] = res
        figures[key] = _save(draw(res), out, FIGURES[key])
        log(f"{title}: {seconds[key]:.1f} s -> {figures[key]}")
    seconds["total"] = time.perf_counter() - t_all
    report = os.path.join(out, "report.md")
    text = report_markdown(results, seconds=seconds, mode=mode, seed=seed,
                           data_origin=f"{datasets.ORIGINS[origin]}", figures=FIGURES)
    with open(report, "w", encoding="utf-8") as f:
        f.write(text)
    log(f"report: {report} (total {seconds['total']:.1f} s)")
    return {"results": results, "figures": figures, "report": report, "seconds": seconds,
            "mode": mode}


def _pct(v):
    return f"{100 * v:.1f}%"


def report_markdown(results, *, seconds=None, mode="full", seed=0, data_origin="",
                    figures=FIGURES):
    """The Markdown report of :func:`run`'s numbers.

    Parameters
    ----------
    results : dict
        Experiment name (a key of :data:`FIGURES`) to its result.
    seconds : dict, optional
        Experiment name to wall-clock seconds, and ``"total"``.
    mode : {"full", "quick"}
    seed : int
    data_origin : str
    figures : dict
        Experiment name to the figure's file name (linked relatively).

    Returns
    -------
    str
    """
    from ._info import config
    seconds = seconds or {}
    cfg = SETTINGS[mode]
    L = []
    add = L.append
    add(f"# Training Deep Networks, run with fastsgd {config()['version']}")
    add("")
    add(f"The experiments of the chapter \"Training Deep Networks\" of *{BOOK}*, computed by "
        f"`fastsgd book` (mode: **{mode}**, seed {seed}). Data: full MNIST from {data_origin}; "
        f"validation data is MNIST's 10,000 test images, as in the book.")
    if mode == "quick":
        add("")
        add("**Quick mode:** fewer epochs and smaller training subsets than the full run "
            f"(the book's nets train for {cfg['shallow_epochs']} and {cfg['intermediate_epochs']} "
            "epochs instead of the book's 200 and 20), so accuracies are below the book's. "
            "Run `fastsgd book` without `--quick` for the book's settings.")
    conf = config()
    add("")
    add(f"Machine: {conf['cpu_count']} cores, {conf['threads']} thread"
        f"{'s' if conf['threads'] != 1 else ''}, SIMD path "
        f"{conf['simd']}. Total time: {seconds.get('total', float('nan')):.0f} s. Times depend on "
        "the machine and its load; everything else is fixed by the seed.")

    def sec(key):
        s = seconds.get(key)
        return f" ({s:.1f} s)" if s is not None else ""

    def fig(key):
        add("")
        add(f"![{key}]({figures[key]})")

    r = results.get("descent_1d")
    if r is not None:
        add("")
        add(f"## Gradient descent on a one-parameter cost{sec('descent_1d')}")
        add("")
        add(f"A line through the origin, y ≈ w·x, fitted to {r.x.size} points by the quadratic "
            f"cost; the best w is {r.w_best:.3f} and the cost's curvature is {r.curvature:.2f}, "
            f"so a step overshoots the minimum by more than it started from when "
            f"η > 2/{r.curvature:.2f} = {2 / r.curvature:.2f}. Verdicts: *diverges* if the cost "
            "ends above where it started, *converges* if the last step changed the cost by at "
            "most 1/1000 of what the first did, else *slow*.")
        add("")
        add("| η | start w | end w | start cost | end cost | verdict |")
        add("|---|---|---|---|---|---|")
        for run in r.runs:
            add(f"| {run.lr:g} | {run.params[0]:.3g} | {run.params[-1]:.4g} | {run.costs[0]:.4g} "
                f"| {run.costs[-1]:.4g} | {run.verdict} |")
        fig("descent_1d")

    r = results.get("descent_2d")
    if r is not None:
        add("")
        add(f"## Gradient descent on a two-parameter cost surface{sec('descent_2d')}")
        add("")
        add(f"A line y ≈ w·x + b: the surface's curvatures are {r.eigenvalues[1]:.2f} across "
            f"the "
            f"valley and {r.eigenvalues[0]:.2f} along it; the minimum is at w = {r.best[0]:.3f}, "
            f"b = {r.best[1]:.3f}.")
        add("")
        add("| η | steps | end (w, b) | end cost | verdict |")
        add("|---|---|---|---|---|")
        for run in r.runs:
            add(f"| {run.lr:g} | {len(run.costs) - 1} | ({run.params[-1, 0]:.3f}, "
                f"{run.params[-1, 1]:.3f}) | {run.costs[-1]:.4g} | {run.verdict} |")
        fig("descent_2d")

    r = results.get("local_minima")
    if r is not None:
        add("")
        add(f"## Local minima: full-batch gradient descent vs mini-batch SGD{sec('local_minima')}")
        add("")
        n_glob = int(r.reached_global.sum())
        add(f"One sine unit, y ≈ sin(w·x), fitted to {r.x.size} points of y = sin(2x) + noise. "
            f"Both methods start at w = {r.w0:g} with η = {r.lr:g} and take "
            f"{r.gd_path.size - 1:,} steps ({r.epochs} epochs of mini-batches of "
            f"{r.batch_size}). The global minimum is at w = {r.w_global:.3f} (its basin "
            f"{r.basin[0]:.2f} to {r.basin[1]:.2f}).")
        add("")
        add(f"- Full-batch gradient descent ends at w = {r.w_local:.3f}: "
            + ("in the global minimum." if r.gd_reached_global
               else "trapped in the local minimum."))
        add(f"- Mini-batch SGD reaches the global minimum with **{n_glob} of "
            f"{r.reached_global.size} seeds** ({_pct(r.fraction_global)}).")
        fig("local_minima")

    r = results.get("rounds")
    if r is not None:
        add("")
        add(f"## An epoch of MNIST as rounds{sec('rounds')}")
        add("")
        sizes = r.sizes[r.epoch_of_round == 0]
        add(f"The Intermediate Net (η = {r.lr:g}) on {r.n_train:,} training images at batch size "
            f"{r.batch_size}: every epoch is **{r.rounds_per_epoch} rounds, the last of "
            f"{r.last_round_size}** (counted by a batch-end callback: the first epoch had "
            f"{sizes.size} rounds, the last of {sizes[-1]}).")
        add("")
        add("| epoch | rounds | mean training cost | validation accuracy |")
        add("|---|---|---|---|")
        for e, (c, a) in enumerate(zip(r.epoch_costs, r.val_accuracy)):
            add(f"| {e + 1} | {int((r.epoch_of_round == e).sum())} | {c:.4f} | {_pct(a)} |")
        fig("rounds")

    r = results.get("lr_sweep")
    if r is not None:
        add("")
        add(f"## Learning rate: the rules of thumb as a sweep{sec('lr_sweep')}")
        add("")
        add(f"The Intermediate Net for {r.epochs} epochs on {r.n_train:,} images at each η. Rule "
            f"(C0: the validation cost before training): *diverges* if training hit NaN, a "
            f"round's cost exceeded {r.rule['blowup']:g}·C0, or the final validation cost is no "
            f"lower than C0; *jumps about* if a round's cost rose above {r.rule['jump']:g}·C0; "
            f"*learns slowly* if the final validation cost is above {r.rule['slow']:g}·C0; else "
            "*learns*.")
        add("")
        add("| η | highest round cost / C0 | final validation cost / C0 | validation accuracy | "
            "verdict |")
        add("|---|---|---|---|---|")
        for run in r.runs:
            hi = run.round_costs.max() / run.start_cost if run.round_costs.size else float("nan")
            fv = run.val_costs[-1] / run.start_cost if run.val_costs.size else float("nan")
            acc = _pct(run.val_accuracy[-1]) if run.val_accuracy.size else "—"
            add(f"| {run.lr:g} | {hi:.3g} | {fv:.3f} | {acc} | **{run.verdict}** |")
        add("")
        add(f"`fastsgd.find_lr` suggests η = **{r.suggestion:.3g}** ({r.suggestion_rule}).")
        fig("lr_sweep")

    r = results.get("batch_sizes")
    if r is not None:
        add("")
        add(f"## Batch size{sec('batch_sizes')}")
        add("")
        add(f"The Intermediate Net with η = {r.lr:g} on {r.n_train:,} images at each batch size: "
            f"validation accuracy after {r.epochs} epochs, and after {r.time_budget:g} s of "
            "training (machine-dependent).")
        add("")
        add(f"| batch size | rounds per epoch | seconds per epoch | accuracy after {r.epochs} "
            f"epochs | epochs in {r.time_budget:g} s | accuracy after {r.time_budget:g} s |")
        add("|---|---|---|---|---|---|")
        for b in r.runs:
            add(f"| {b.batch_size} | {b.rounds_per_epoch} | {b.seconds_per_epoch:.3f} | "
                f"{_pct(b.val_accuracy_epochs)} | {b.epochs_in_budget:.2f} | "
                f"{_pct(b.val_accuracy_budget)} |")
        fig("batch_sizes")

    r = results.get("early_stopping")
    if r is not None:
        add("")
        add(f"## Epochs and early stopping{sec('early_stopping')}")
        add("")
        stop = ("stopped after epoch " + str(r.stopped_epoch + 1) if r.stopped_epoch is not None
                else f"did not stop within {r.max_epochs} epochs")
        add(f"The Intermediate Net on {r.n_train:,} training images (few, so that it overfits), "
            f"`EarlyStopping(monitor=\"val_loss\", patience={r.patience}, "
            f"restore_best_weights=True)`: training {stop}; the best epoch was "
            f"**{r.best_epoch + 1}** (validation cost {r.val_loss[r.best_epoch]:.4f}, lowest of "
            f"{r.val_loss.size} epochs), and its weights were restored (validation cost "
            f"{r.restored_val_loss:.4f}, accuracy {_pct(r.restored_val_accuracy)}). The training "
            f"cost went on falling: {r.loss[r.best_epoch]:.4f} at the best epoch, "
            f"{r.loss[-1]:.4f} at the last.")
        fig("early_stopping")

    r = results.get("book_nets")
    if r is not None:
        add("")
        add(f"## The book's two networks{sec('book_nets')}")
        add("")
        add("| network | parameters (book) | cost, η, batch | epochs (book) | test accuracy | "
            "book | seconds |")
        add("|---|---|---|---|---|---|---|")
        for n in r:
            add(f"| {n.title} | {n.params:,} ({n.book_params:,}) | {n.cost}, {n.lr:g}, "
                f"{n.batch_size} | {n.epochs} ({n.book_epochs}) | **{_pct(n.test_accuracy)}** | "
                f"about {n.book_accuracy * 100:.0f}% | {n.seconds:.0f} |")
        if any(n.epochs < n.book_epochs for n in r):
            add("")
            add("Fewer epochs than the book (quick mode): the accuracies are not comparable with "
                "the book's.")
        fig("book_nets")
    add("")
    return "\n".join(L)
