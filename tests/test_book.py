"""fastsgd.book: the chapter's experiments return the numbers their figures are
drawn from; the figures and the report are written."""
import math
import os

import numpy as np
import pytest

import fastsgd
from fastsgd import book, datasets

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
from matplotlib import image as mpimg  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    # the numbers do not depend on the thread count; one thread keeps these
    # tests quick on a busy machine (conftest restores the default after each)
    fastsgd.set_num_threads(1)


@pytest.fixture(scope="module")
def small():
    """2,000 training and 1,000 validation images of the MNIST sample."""
    (X, y), (Xt, yt) = datasets.load_mnist_sample()
    return X[:2000], y[:2000], Xt[:1000], yt[:1000]


def assert_png(path):
    assert os.path.getsize(path) > 0
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img.std() > 0  # not a blank canvas


# -- gradient descent on small costs ----------------------------------------------

def test_one_parameter_descent_small_right_large():
    res = book.one_parameter_descent(lrs=(0.02, 0.3, 0.8), steps=15)
    small, right, large = res.runs
    assert [r.verdict for r in res.runs] == ["slow", "converges", "diverges"]
    # the rule of thumb in numbers: stable below 2 / curvature, unstable above
    assert right.lr < 2 / res.curvature < large.lr
    # too small: the cost falls at every step but w is still far from the best w
    assert np.all(np.diff(small.costs) < 0)
    assert abs(small.params[-1] - res.w_best) > 0.5
    # right: ends at the least-squares w
    assert right.params[-1] == pytest.approx(res.w_best, abs=1e-4)
    # too large: overshoots further each step, alternating sides of the minimum
    dist = large.params - res.w_best
    assert np.all(np.abs(dist[1:]) > np.abs(dist[:-1]))
    assert np.all(np.sign(dist[1:]) != np.sign(dist[:-1]))
    assert large.costs[-1] > 100 * large.costs[0]
    # the curves the figure draws are the cost of the data
    grid, cost = res.curves[1]
    assert cost[0] == pytest.approx(np.mean((grid[0] * res.x - res.y) ** 2))


def test_descent_verdict_rule():
    assert book.descent_verdict([4.0, 2.0, 1.0, 5.0]) == "diverges"
    assert book.descent_verdict([4.0, 2.0, float("nan")]) == "diverges"
    assert book.descent_verdict([4.0, 1.0, 0.5, 0.5 + 1e-6]) == "converges"
    assert book.descent_verdict([4.0, 3.9, 3.8, 3.7]) == "slow"
    with pytest.raises(ValueError, match="costs"):
        book.descent_verdict([1.0, 0.5])


def test_two_parameter_descent_reaches_the_minimum_of_a_narrow_valley():
    res = book.two_parameter_descent(lrs=(0.05, 0.2), steps=60)
    slow, right = res.runs
    assert res.eigenvalues[1] / res.eigenvalues[0] > 10  # a long narrow valley
    np.testing.assert_allclose(right.params[-1], res.best, atol=0.05)
    assert right.verdict == "converges" and slow.verdict == "slow"
    assert np.all(np.diff(right.costs) <= 1e-12) and np.all(np.diff(slow.costs) <= 1e-12)
    # the larger η zig-zags across the valley: along the steep axis it changes side
    A = np.column_stack([res.x, np.ones_like(res.x)])
    vals, vecs = np.linalg.eigh(2 * A.T @ A / res.x.size)
    np.testing.assert_allclose(vals, res.eigenvalues)
    steep = vecs[:, 1]
    across = (right.params[:10] - res.best) @ steep
    assert np.sum(np.sign(across[1:]) != np.sign(across[:-1])) >= 5
    assert res.cost_grid.shape == (res.b_grid.size, res.w_grid.size)
    assert res.cost_grid.min() >= right.costs[-1] - 1e-2


def test_local_minima_gradient_descent_trapped_sgd_escapes():
    res = book.local_minima(n_seeds=10, epochs=20)
    # full-batch gradient descent settles in the local minimum, outside the global basin
    assert not res.gd_reached_global
    assert not res.basin[0] < res.w_local < res.basin[1]
    assert abs(res.gd_path[-1] - res.gd_path[-2]) < 1e-6
    cost = lambda w: np.interp(w, res.w_grid, res.cost_grid)  # noqa: E731
    assert cost(res.w_local) > cost(res.w_global) + 0.5
    # mini-batch SGD with the same η and steps mostly escapes
    n_glob = int(res.reached_global.sum())
    assert n_glob >= 6 and res.fraction_global == n_glob / 10
    inside = (res.sgd_final > res.basin[0]) & (res.sgd_final < res.basin[1])
    np.testing.assert_array_equal(inside, res.reached_global)
    assert res.sgd_paths.shape == (10, res.gd_path.size) and res.gd_path.size == 50 * 20 + 1
    # the escape comes from the mini-batch noise: whole-data batches stay trapped
    full = book.local_minima(n_seeds=3, epochs=20, batch_size=200)
    assert full.fraction_global == 0.0


def test_experiments_are_reproducible_and_seeded():
    a = book.local_minima(n_seeds=2, epochs=2, seed=3)
    b = book.local_minima(n_seeds=2, epochs=2, seed=3)
    c = book.local_minima(n_seeds=2, epochs=2, seed=4)
    np.testing.assert_array_equal(a.sgd_paths, b.sgd_paths)
    assert not np.array_equal(a.sgd_paths, c.sgd_paths)


@pytest.mark.parametrize("call,needle", [
    (lambda: book.one_parameter_descent(lrs=(-0.1,)), "lrs[0]"),
    (lambda: book.one_parameter_descent(lrs="0.1"), "lrs"),
    (lambda: book.one_parameter_descent(steps=1), "steps"),
    (lambda: book.two_parameter_descent(start=(1.0,)), "start"),
    (lambda: book.local_minima(batch_size=0), "batch_size"),
    (lambda: book.local_minima(batch_size=500), "batch_size"),
    (lambda: book.local_minima(seed=-1), "seed"),
    (lambda: book.make_net("deep"), "name"),
    (lambda: book.epoch_rounds([[0.0]], [0], [[0.0]], [0]), "X"),
    (lambda: book.book_nets(np.zeros((2, 784)), np.zeros(2, int), np.zeros((2, 784)),
                            np.zeros(2, int), epochs={"deep": 1}), "epochs"),
    (lambda: book.classify_learning_curve(2.0, [1.0], [1.0], jump=0.5), "jump"),
    (lambda: book.run(3), "out"),
])
def test_bad_arguments_name_the_argument(call, needle):
    with pytest.raises((ValueError, TypeError)) as e:
        call()
    assert needle in str(e.value)


# -- MNIST experiments ------------------------------------------------------------------

def test_one_epoch_of_full_mnist_is_469_rounds_the_last_of_96():
    (X, y), (Xt, yt) = datasets.load_mnist(download=False)
    res = book.epoch_rounds(X, y, Xt[:500], yt[:500], epochs=1, batch_size=128)
    assert (res.rounds_per_epoch, res.last_round_size) == (469, 96)
    # what the trainer did, as the batch-end callback saw it
    assert res.sizes.size == 469 and res.sizes[-1] == 96 and np.all(res.sizes[:-1] == 128)
    assert res.sizes.sum() == 60000
    assert res.costs.size == 469 and np.all(np.isfinite(res.costs))
    assert res.epoch_costs[0] == pytest.approx(np.average(res.costs, weights=res.sizes), rel=1e-5)
    assert res.costs[-50:].mean() < 0.5 * res.costs[:10].mean()  # it learned within the epoch


def test_epoch_rounds_counts_every_epoch(small):
    X, y, Xt, yt = small
    res = book.epoch_rounds(X[:1000], y[:1000], Xt, yt, epochs=2, batch_size=128)
    assert (res.rounds_per_epoch, res.last_round_size) == (8, 104)
    assert list(res.sizes) == [128] * 7 + [104] + [128] * 7 + [104]
    assert list(res.epoch_of_round) == [0] * 8 + [1] * 8
    assert res.val_accuracy.shape == (2,)


def test_classify_learning_curve_rule():
    c0 = 2.3
    falling = np.linspace(2.3, 0.3, 50)
    assert book.classify_learning_curve(c0, falling, [1.0, 0.5, 0.3]) == "learns"
    assert book.classify_learning_curve(c0, falling, [2.0, 1.8, 1.6]) == "learns slowly"
    spiky = falling.copy()
    spiky[10] = 4.0
    assert book.classify_learning_curve(c0, spiky, [1.0, 0.5, 0.3]) == "jumps about"
    spiky[10] = 1e4
    assert book.classify_learning_curve(c0, spiky, [1.0, 0.5, 0.3]) == "diverges"
    assert book.classify_learning_curve(c0, falling, [2.0, 2.4]) == "diverges"
    assert book.classify_learning_curve(c0, falling[:5], [], diverged=True) == "diverges"
    assert book.classify_learning_curve(c0, falling, [float("nan")]) == "diverges"


def test_learning_rate_sweep_classifies_from_the_curves(small):
    X, y, Xt, yt = small
    res = book.learning_rate_sweep(X, y, Xt, yt, lrs=(1e-4, 1e-3, 0.1, 1.0, 10.0), epochs=3,
                                   finder_steps=30)
    assert [r.verdict for r in res.runs] == ["learns slowly", "learns slowly", "learns",
                                             "jumps about", "diverges"]
    by_lr = {r.lr: r for r in res.runs}
    # the numbers behind the verdicts
    assert by_lr[1e-4].val_costs[-1] > 0.9 * by_lr[1e-4].start_cost
    assert by_lr[0.1].val_costs[-1] < 0.5 * by_lr[0.1].start_cost
    assert by_lr[1.0].round_costs.max() > 1.2 * by_lr[1.0].start_cost
    big = by_lr[10.0]
    assert big.diverged or big.round_costs.max() > 10 * big.start_cost
    for r in res.runs:
        assert r.verdict == book.classify_learning_curve(r.start_cost, r.round_costs, r.val_costs,
                                                         diverged=r.diverged)
        assert r.start_cost == pytest.approx(math.log(10), rel=0.1)  # untrained: about ln 10
    # every run saw the same batches from the same weights: identical first round
    assert len({r.round_costs[0] for r in res.runs}) == 1
    assert res.finder_lrs.size == res.finder_costs.size >= 5
    assert 1e-5 <= res.suggestion <= 10


def test_batch_size_sweep(small):
    X, y, Xt, yt = small
    res = book.batch_size_sweep(X, y, Xt, yt, batch_sizes=(16, 512), epochs=1, time_budget=0.2)
    b16, b512 = res.runs
    assert (b16.rounds_per_epoch, b512.rounds_per_epoch) == (125, 4)
    # one epoch: 125 small steps beat 4 large ones at the same η
    assert b16.val_accuracy_epochs > b512.val_accuracy_epochs + 0.1
    for r in res.runs:
        assert r.rounds_in_budget >= 1
        assert r.epochs_in_budget == pytest.approx(r.rounds_in_budget / r.rounds_per_epoch)
        assert 0 <= r.val_accuracy_budget <= 1 and r.seconds_per_epoch > 0


def test_early_stopping_run(small):
    X, y, Xt, yt = small
    res = book.early_stopping_run(X, y, Xt, yt, max_epochs=40, patience=4)
    assert res.stopped_epoch is not None
    assert res.best_epoch == int(np.argmin(res.val_loss))
    assert res.stopped_epoch == res.best_epoch + 4 == res.val_loss.size - 1
    assert res.restored_val_loss == pytest.approx(res.val_loss[res.best_epoch], rel=1e-5)
    # the same run without stopping: identical up to the stop, then overfits
    n = res.val_loss.size
    np.testing.assert_allclose(res.unstopped_val_loss[:n], res.val_loss, rtol=1e-6)
    assert res.unstopped_val_loss.size == 40
    assert res.unstopped_val_loss[-1] > res.val_loss[res.best_epoch]
    assert res.unstopped_loss[-1] < res.loss[-1]


def test_book_nets_parameter_counts_and_reference(small):
    X, y, Xt, yt = small
    runs = book.book_nets(X, y, Xt, yt, epochs={"shallow": 2, "intermediate": 2})
    shallow, inter = runs
    assert (shallow.params, shallow.book_params) == (50890, 50890)
    assert (inter.params, inter.book_params) == (55050, 55050)
    assert (shallow.book_accuracy, inter.book_accuracy) == (0.86, 0.97)
    assert (shallow.epochs, shallow.book_epochs, inter.epochs, inter.book_epochs) == (2, 200, 2, 20)
    assert shallow.val_accuracy.shape == (2,) and inter.val_accuracy.shape == (2,)
    assert shallow.test_accuracy == pytest.approx(shallow.val_accuracy[-1])
    # the chapter's point: relu, cross-entropy and a larger η learn far faster
    assert inter.test_accuracy > shallow.test_accuracy + 0.2


# -- figures and the report ------------------------------------------------------------

def test_every_figure_is_a_png(small, tmp_path):
    X, y, Xt, yt = small
    figs = {
        "a": book.plot_one_parameter(book.one_parameter_descent()),
        "b": book.plot_two_parameter(book.two_parameter_descent()),
        "c": book.plot_local_minima(book.local_minima(n_seeds=3, epochs=2)),
        "d": book.plot_epoch_rounds(book.epoch_rounds(X[:500], y[:500], Xt, yt, epochs=2)),
        "e": book.plot_learning_rate_sweep(book.learning_rate_sweep(
            X[:500], y[:500], Xt, yt, lrs=(0.01, 10.0), epochs=1, finder_steps=10)),
        "f": book.plot_batch_sizes(book.batch_size_sweep(X[:500], y[:500], Xt, yt,
                                                         batch_sizes=(32, 64), epochs=1,
                                                         time_budget=0.05)),
        "g": book.plot_early_stopping(book.early_stopping_run(X[:500], y[:500], Xt, yt,
                                                              max_epochs=6, patience=1)),
        "h": book.plot_book_nets(book.book_nets(X[:500], y[:500], Xt, yt,
                                                epochs={"shallow": 1, "intermediate": 1})),
    }
    for name, fig in figs.items():
        path = tmp_path / f"{name}.png"
        fig.savefig(path)
        assert_png(path)


def test_run_writes_the_figures_and_the_report(tmp_path, monkeypatch):
    tiny = dict(book.SETTINGS["quick"], rounds_epochs=1, sweep_train=1000, sweep_epochs=1,
                batch_train=1000, batch_epochs=1, time_budget=0.05, es_train=500,
                es_max_epochs=4, es_patience=1, shallow_epochs=1, intermediate_epochs=1,
                local_seeds=3)
    monkeypatch.setitem(book.SETTINGS, "quick", tiny)
    lines = []
    out = book.run(tmp_path / "out", quick=True, seed=1, log=lines.append)
    assert set(out["figures"]) == set(book.FIGURES)
    for path in out["figures"].values():
        assert_png(path)
    text = open(out["report"], encoding="utf-8").read()
    for name in book.FIGURES.values():
        assert f"]({name})" in text
    assert "Quick mode" in text and "469 rounds, the last of 96" in text
    lm = out["results"]["local_minima"]
    assert f"{int(lm.reached_global.sum())} of 3 seeds" in text
    assert "about 86%" in text and "about 97%" in text
    assert any("files packaged with fastsgd" in line for line in lines)
