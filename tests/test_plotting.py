"""History.plot and the early-stopping record it draws."""
import numpy as np
import pytest

from fastsgd import SGD, Dense, EarlyStopping, Sequential, Trainer

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def fit(epochs=6, callbacks=(), validation=True):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)
    model = Sequential([Dense(8, "relu", input_dim=5), Dense(3, "softmax")], seed=0)
    trainer = Trainer(model, "cross_entropy", SGD(lr=0.1), batch_size=32, seed=0)
    return trainer.fit(X, y, epochs=epochs, validation_split=0.2 if validation else 0.0,
                       callbacks=list(callbacks), verbose=0)


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_plot_cost_and_accuracy_training_and_validation():
    hist = fit()
    fig = hist.plot()
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    loss_ax, acc_ax = fig.axes
    assert legend_texts(loss_ax) == ["training", "validation"]
    train_line, val_line = loss_ax.get_lines()[:2]
    np.testing.assert_allclose(train_line.get_ydata(), hist.history["loss"])
    np.testing.assert_allclose(val_line.get_ydata(), hist.history["val_loss"])
    np.testing.assert_array_equal(train_line.get_xdata(), np.arange(1, 7))  # epochs from 1
    np.testing.assert_allclose(acc_ax.get_lines()[1].get_ydata(), hist.history["val_accuracy"])


def test_plot_marks_early_stopping_and_the_restored_best_epoch():
    # nothing counts as an improvement after the first epoch: stop at the second
    es = EarlyStopping(monitor="val_loss", min_delta=10.0, patience=0, restore_best_weights=True)
    hist = fit(epochs=10, callbacks=[es])
    assert hist.early_stopping == {"monitor": "val_loss", "best_epoch": 0, "stopped_epoch": 1,
                                   "restored": True}
    fig = hist.plot(metrics="loss")
    (ax,) = fig.axes
    texts = legend_texts(ax)
    assert "restored best epoch (1)" in texts and "early stop (2)" in texts


def test_no_early_stop_marks_only_the_best_epoch():
    es = EarlyStopping(monitor="val_loss", patience=50)
    hist = fit(epochs=4, callbacks=[es])
    assert hist.early_stopping["stopped_epoch"] is None
    assert not hist.early_stopping["restored"]
    texts = legend_texts(hist.plot(metrics=["loss"]).axes[0])
    assert any(t.startswith("best epoch") for t in texts)
    assert not any(t.startswith("early stop") for t in texts)


def test_plot_on_given_axes_and_without_validation():
    hist = fit(epochs=3, validation=False)
    fig, (a, b) = plt.subplots(1, 2)
    assert hist.plot(ax=[a, b]) is fig
    assert legend_texts(a) == ["training"]
    fig1, ax1 = plt.subplots()
    assert hist.plot(metrics="accuracy", ax=ax1) is fig1


@pytest.mark.parametrize("kwargs,exc,needle", [
    ({"metrics": "precision"}, ValueError, "metrics"),
    ({"metrics": 3}, TypeError, "metrics"),
    ({"metrics": []}, TypeError, "metrics"),
    ({"metrics": ["loss", "accuracy"], "ax": "axes"}, TypeError, "ax"),
])
def test_bad_arguments(kwargs, exc, needle):
    hist = fit(epochs=2)
    with pytest.raises(exc, match=needle):
        hist.plot(**kwargs)


def test_wrong_number_of_axes():
    hist = fit(epochs=2)
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="ax"):
        hist.plot(ax=ax)  # two metrics, one Axes


def test_saved_figure_is_a_png(tmp_path):
    from matplotlib import image as mpimg
    path = tmp_path / "curves.png"
    fit(epochs=3).plot().savefig(path)
    assert path.stat().st_size > 0 and mpimg.imread(path).ndim == 3
