"""The scikit-learn estimators: scikit-learn's own checks, agreement with
scikit-learn's MLP step by step, partial_fit, pickling and threads."""
import pickle
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", minversion="1.6",
                              reason="the estimators need scikit-learn >= 1.6")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkRegressor  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastsgd  # noqa: E402
from fastsgd import MLPClassifier, MLPRegressor  # noqa: E402
from fastsgd import estimators as est_mod  # noqa: E402


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _data(n=400, classes=3, seed=0, class_sep=1.0):
    return make_classification(n, 10, n_informative=6, n_classes=classes, random_state=seed,
                               class_sep=class_sep)


def _easy(n=400, classes=3):
    """Well separated classes, learnt in a few epochs."""
    return _data(n, classes, class_sep=3.0)


def _maxdiff(a, b):
    return max(float(np.abs(u - v).max()) for u, v in zip(a, b))


# -- scikit-learn's estimator checks ---------------------------------------------
# Every check passes but one: with shuffled mini-batches, a weight of 2 is not
# the same as repeating the sample (the batches, and so the steps, differ).
_NOT_REPEATS = ("a sample weight scales the sample's loss in its mini-batch; repeating "
                "the sample instead changes the batches under shuffling")
EXPECTED_FAILED_CHECKS = {"MLPClassifier": {"check_sample_weight_equivalence_on_dense_data":
                                            _NOT_REPEATS,
                                            "check_sample_weight_equivalence_on_sparse_data":
                                            _NOT_REPEATS},
                          "MLPRegressor": {"check_sample_weight_equivalence_on_dense_data":
                                           _NOT_REPEATS,
                                           "check_sample_weight_equivalence_on_sparse_data":
                                           _NOT_REPEATS}}


# float64 estimators read scikit-learn's float64 data in place: their X is checked by
# fastsgd's compiled count, not by scikit-learn (see test_data_read_in_place_*)
@parametrize_with_checks(
    [MLPClassifier(max_iter=100, random_state=0), MLPRegressor(max_iter=100, random_state=0),
     MLPClassifier(max_iter=100, random_state=0, dtype="float64"),
     MLPRegressor(max_iter=100, random_state=0, dtype="float64")],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS.get(type(est).__name__, {}))
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# -- the same steps as scikit-learn's MLP ------------------------------------------
def _same_settings(**kw):
    base = dict(hidden_layer_sizes=(16, 8), alpha=0.01, batch_size=50, max_iter=5,
                shuffle=False, random_state=1, learning_rate_init=0.01)
    base.update(kw)
    return base


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("target", ["multiclass", "binary", "multilabel"])
def test_classifier_follows_sklearn(solver, target):
    """float64, no shuffling, batch size dividing n: the same weights as
    scikit-learn's solver after every epoch (the alpha mapping is exact)."""
    X, y = _data()
    if target == "binary":
        y = np.where(y > 0, "yes", "no")
    elif target == "multilabel":
        y = np.column_stack([y == 0, y == 1, X[:, 0] > 0]).astype(int)
    kw = _same_settings(solver=solver)
    ref = SkClassifier(**kw).fit(X, y)
    got = MLPClassifier(dtype="float64", **kw).fit(X, y)
    assert _maxdiff(ref.coefs_, got.coefs_) < 1e-10
    assert _maxdiff(ref.intercepts_, got.intercepts_) < 1e-10
    assert got.out_activation_ == ref.out_activation_
    assert got.n_outputs_ == ref.n_outputs_ and got.n_layers_ == ref.n_layers_
    assert got.t_ == ref.t_ and got.n_iter_ == ref.n_iter_
    # the loss curve: the penalty part is estimated from the epoch's end points
    np.testing.assert_allclose(got.loss_curve_, ref.loss_curve_, rtol=1e-3)
    np.testing.assert_array_equal(got.predict(X), ref.predict(X))
    np.testing.assert_allclose(got.predict_proba(X), ref.predict_proba(X), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("outputs", [1, 3])
def test_regressor_follows_sklearn(solver, outputs):
    X, y = make_regression(400, 10, n_targets=outputs, random_state=0)
    y = y / 100
    kw = _same_settings(solver=solver)
    ref = SkRegressor(**kw).fit(X, y)
    got = MLPRegressor(dtype="float64", **kw).fit(X, y)
    assert _maxdiff(ref.coefs_, got.coefs_) < 1e-10
    np.testing.assert_allclose(got.loss_curve_, ref.loss_curve_, rtol=1e-3)
    np.testing.assert_allclose(got.predict(X), ref.predict(X), rtol=1e-9, atol=1e-12)
    assert got.predict(X).shape == ref.predict(X).shape


@pytest.mark.parametrize("schedule", ["invscaling", "adaptive"])
def test_learning_rate_schedules_follow_sklearn(schedule):
    X, y = make_regression(400, 10, random_state=0)
    y = y / 100
    kw = _same_settings(solver="sgd", learning_rate=schedule, max_iter=30, tol=0.05,
                        n_iter_no_change=2)
    ref = SkRegressor(**kw).fit(X, y)
    got = MLPRegressor(dtype="float64", **kw).fit(X, y)
    assert got.n_iter_ == ref.n_iter_ < 30
    assert _maxdiff(ref.coefs_, got.coefs_) < 1e-10
    # fastsgd's rate is scikit-learn's divided by c = 2 (the mean squared error is twice its loss)
    assert got._optimizer.lr * 2 == pytest.approx(ref._optimizer.learning_rate, rel=1e-12)


def test_early_stopping_follows_sklearn():
    X, y = _data(classes=2)
    # 300 training samples: batch_size 50 divides them, so the penalty is exact
    kw = _same_settings(solver="sgd", early_stopping=True, validation_fraction=0.25, max_iter=40, tol=1e-3,
                        n_iter_no_change=3)
    ref = SkClassifier(**kw).fit(X, y)
    got = MLPClassifier(dtype="float64", **kw).fit(X, y)
    assert got.best_loss_ is None
    assert got.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(got.validation_scores_, ref.validation_scores_)
    assert got.best_validation_score_ == ref.best_validation_score_
    assert _maxdiff(ref.coefs_, got.coefs_) < 1e-10  # the best epoch's weights


def test_partial_fit_carries_the_optimizer_state():
    """Two partial_fit calls are two epochs of one fit, Adam's moments and
    step count included, and match scikit-learn's partial_fit."""
    X, y = _data()
    kw = _same_settings(solver="adam", max_iter=2, tol=0.0, n_iter_no_change=100)
    two_epochs = MLPClassifier(dtype="float64", **kw).fit(X, y)
    inc = MLPClassifier(dtype="float64", **kw)
    ref = SkClassifier(**kw)
    for _ in range(2):
        inc.partial_fit(X, y, classes=np.unique(y))
        ref.partial_fit(X, y, classes=np.unique(y))
    assert _maxdiff(two_epochs.coefs_, inc.coefs_) == 0.0
    assert _maxdiff(ref.coefs_, inc.coefs_) < 1e-10
    assert inc._optimizer.iterations == 2 * 8 and inc.n_iter_ == 1 and inc.t_ == 800
    assert len(inc.loss_curve_) == 2


def test_partial_fit_classes():
    X, y = _data()
    clf = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.predict_proba(X).shape == (len(X), 3)
    clf.partial_fit(X, y)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="classes not in"):
        clf.partial_fit(X, y + 5)
    with pytest.raises(ValueError, match="early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])


def test_regressor_partial_fit():
    X, y = make_regression(200, 5, random_state=0)
    reg = MLPRegressor(hidden_layer_sizes=(8,), random_state=0)
    for _ in range(3):
        reg.partial_fit(X, y / 100)
    assert reg.t_ == 600 and len(reg.loss_curve_) == 3


# -- targets and labels -------------------------------------------------------------
@pytest.mark.parametrize("labels", [["cat", "dog", "emu"], [-3, 7, 11], [1.0, 2.0, 4.0],
                                    ["b", 1.0, None]])
def test_arbitrary_class_labels(labels):
    X, y = _easy()
    lab = np.empty(3, dtype=object) if labels[-1] is None else np.asarray(labels)
    if labels[-1] is None:
        lab[:] = ["b", "c", "a"]
    yl = lab[y]
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=50, random_state=0).fit(X, yl)
    np.testing.assert_array_equal(clf.classes_, np.unique(yl))
    pred = clf.predict(X)
    assert set(pred) <= set(yl) and (pred == yl).mean() > 0.8
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], pred)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba))


@pytest.mark.parametrize("labels", [[0, 1, 2], [-3, 7, 11], [5, 6], [2, 9, 900]])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint16, np.int8, ">i8"])
def test_integer_labels_counted_match_sorted(labels, dtype, monkeypatch):
    """Integer labels in a short range are found by counting: the same classes_,
    targets and so weights as scikit-learn's sort gives."""
    info = np.iinfo(np.dtype(dtype))
    if info.max < max(labels) or info.min > min(labels):
        pytest.skip("labels outside the dtype")
    X, y = _easy(classes=len(labels))
    yl = np.asarray(labels, dtype=dtype)[y]
    counted = est_mod._small_int_labels(yl)
    assert counted is not None
    np.testing.assert_array_equal(counted[0], np.unique(yl))
    assert counted[0].dtype == yl.dtype.newbyteorder("=")
    np.testing.assert_array_equal(counted[1], np.searchsorted(np.unique(yl), yl))
    kw = dict(hidden_layer_sizes=(8,), max_iter=3, random_state=0)
    a = MLPClassifier(**kw).fit(X, yl)
    monkeypatch.setattr(est_mod, "_small_int_labels", lambda y: None)
    b = MLPClassifier(**kw).fit(X, yl)   # scikit-learn's unique_labels and a search
    np.testing.assert_array_equal(a.classes_, b.classes_)
    assert a.classes_.dtype == b.classes_.dtype
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


def test_labels_not_counted_when_spread_or_not_integers():
    assert est_mod._small_int_labels(np.array([0, 10**9, 5])) is None
    assert est_mod._small_int_labels(np.array([2**64 - 10, 2**64 - 11], np.uint64)) is None
    assert est_mod._small_int_labels(np.arange(40) % 30) is None   # scikit-learn warns
    assert est_mod._small_int_labels(np.array([0.0, 1.0])) is None
    assert est_mod._small_int_labels(np.array([[0, 1], [1, 0]])) is None
    assert est_mod._small_int_labels(np.array([], dtype=np.int64)) is None
    assert est_mod._small_int_labels([0, 1]) is None


def test_labels_scikit_learn_warns_or_refuses_still_are():
    X, _ = _easy(n=60)
    X = X.astype(np.float32)
    with pytest.warns(UserWarning, match="unique classes is greater than 50%"):
        MLPClassifier(max_iter=1).fit(X[:40], np.arange(40) % 30)
    huge = np.array([2**64 - 10, 2**64 - 11, 2**64 - 12] * 20, np.uint64)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=1).fit(X, huge)
    assert clf.classes_.dtype == np.uint64 and set(clf.predict(X)) <= set(huge)
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=1).fit(X, X[:, 0])
    with pytest.raises(ValueError, match="0 feature"):   # y of no columns
        reg.fit(np.ascontiguousarray(X[:, :3]), np.empty((60, 0)))
    assert reg.n_features_in_ == X.shape[1]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_data_read_in_place_with_nan_is_refused_before_anything_changes(bad, dtype):
    """X in the estimator's dtype skips scikit-learn's finite check: fastsgd's own
    check refuses it, naming the row, before a refit touches the fitted model."""
    X, y = _easy()
    X = X.astype(dtype)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0, dtype=dtype)
    clf.fit(X, y)
    before = [w.copy() for w in clf.coefs_ + clf.intercepts_]
    curve = list(clf.loss_curve_)
    state = (clf.n_iter_, clf.t_, list(clf.classes_), clf.n_features_in_)
    Xb = X.copy()
    Xb[17, 3] = bad
    # scikit-learn's words, and the row
    what = "NaN" if np.isnan(bad) else "infinity or a value too large for dtype"
    with pytest.raises(ValueError, match=f"Input X contains {what}.* \\(row 17\\)"):
        clf.fit(Xb, y)
    with pytest.raises(ValueError, match=f"Input X contains {what}"):
        clf.partial_fit(Xb, y)
    with pytest.raises(ValueError, match=f"Input X contains {what}"):   # y through sklearn
        clf.fit(Xb, [str(v) for v in y])
    with pytest.raises(ValueError, match=f"Input X contains {what}"):   # another width
        clf.fit(np.ascontiguousarray(Xb[:, :9]), y)
    for u, v in zip(clf.coefs_ + clf.intercepts_, before):
        np.testing.assert_array_equal(u, v)
    assert clf.loss_curve_ == curve
    assert (clf.n_iter_, clf.t_, list(clf.classes_), clf.n_features_in_) == state
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=2, random_state=0, dtype=dtype)
    with pytest.raises(ValueError, match=f"Input X contains {what}"):
        reg.fit(Xb, y.astype(float))
    yb = y.astype(dtype)
    yb[5] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):   # scikit-learn's check of y
        reg.fit(X, yb)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_refused_refit_loses_nothing(dtype):
    """A fit refused by its checks (one class, a negative weight, a warm start of
    another shape) leaves the fitted attributes as they were, whether X is read in
    place (float32) or goes through scikit-learn's checks (float64)."""
    X, y = _easy()
    X = X.astype(dtype)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(X, y)
    attrs = ("n_features_in_", "classes_", "n_iter_", "t_", "loss_curve_", "n_outputs_")

    def state():
        return [np.array(getattr(clf, a)).tolist() for a in attrs] + [
            w.copy() for w in clf.coefs_ + clf.intercepts_]

    before = state()
    Xn = np.ascontiguousarray(X[:, :7])
    with pytest.raises(ValueError, match="at least 2 classes"):
        clf.fit(Xn, np.full(len(y), 5))
    with pytest.raises(ValueError, match="Negative values"):
        clf.fit(Xn, y + 10, sample_weight=-np.ones(len(y)))
    clf.set_params(warm_start=True, hidden_layer_sizes=(9,))
    with pytest.raises(ValueError, match="differs from the fitted network"):
        clf.fit(X, y)
    clf.set_params(hidden_layer_sizes=(8,))
    with pytest.raises(ValueError, match="X has 7 features"):
        clf.fit(Xn, y)
    after = state()
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    pd = pytest.importorskip("pandas")
    named = MLPClassifier(hidden_layer_sizes=(8,), max_iter=1, random_state=0).fit(
        pd.DataFrame(X, columns=[f"f{i}" for i in range(10)]), y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        named.fit(X, np.zeros(len(y), int))
    assert list(named.feature_names_in_) == [f"f{i}" for i in range(10)]


def test_data_read_in_place_keeps_sklearns_feature_checks():
    """Without scikit-learn's validate_data for an array read in place, the width and
    feature-name checks and errors are still scikit-learn's."""
    X, y = _easy()
    X = X.astype(np.float32)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(X, y)
    assert clf.n_features_in_ == 10 and not hasattr(clf, "feature_names_in_")
    with pytest.raises(ValueError, match="X has 9 features, but MLPClassifier is expecting "
                                         "10 features as input"):
        clf.partial_fit(np.ascontiguousarray(X[:, :9]), y)
    with pytest.raises(ValueError, match="X has 9 features"):
        clf.predict(X[:, :9])
    with pytest.raises(ValueError, match="0 sample"):
        MLPClassifier().fit(np.empty((0, 10), np.float32), np.empty(0, np.int64))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        MLPClassifier().fit(X, y[:-1])
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(10)])
    named = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(df, y)
    with pytest.warns(UserWarning, match="X does not have valid feature names, but "
                                         "MLPClassifier was fitted with feature names"):
        named.partial_fit(X, y)
    Xb = X.copy()
    Xb[3, 3] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        named.fit(Xb, y)   # refused: the names stay
    np.testing.assert_array_equal(named.feature_names_in_, df.columns)
    named.fit(X, y)   # a refit on an array forgets the names
    assert not hasattr(named, "feature_names_in_") and named.n_features_in_ == 10


def test_binary_uses_one_sigmoid_unit():
    X, y = _data(classes=2)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0).fit(X, y)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1
    assert clf.coefs_[-1].shape == (8, 1)
    assert clf.predict_proba(X).shape == (len(X), 2)


def test_multilabel():
    X, y = _easy()
    Y = np.column_stack([y == 0, y == 1, X[:, 0] > 0]).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=100, random_state=0).fit(X, Y)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 3
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    pred = clf.predict(X)
    assert pred.shape == Y.shape and set(np.unique(pred)) <= {0, 1}
    assert (pred == Y).mean() > 0.85
    np.testing.assert_array_equal(pred, (clf.predict_proba(X) > 0.5).astype(int))


def test_multiclass_multioutput_is_refused():
    X, y = _data()
    with pytest.raises(ValueError, match="multiclass-multioutput"):
        MLPClassifier(max_iter=2).fit(X, np.column_stack([y, y]))


def test_one_class_is_refused():
    X, _ = _data()
    with pytest.raises(ValueError, match="class"):
        MLPClassifier(max_iter=2).fit(X, np.zeros(len(X)))


def test_squared_error_loss_for_classifier():
    X, y = _easy()
    clf = MLPClassifier(hidden_layer_sizes=(16,), loss="squared_error", max_iter=50,
                        random_state=0, learning_rate_init=0.01).fit(X, y)
    assert clf.score(X, y) > 0.8


def test_regressor_column_y_gives_1d_predictions():
    X, y = make_regression(100, 4, random_state=0)
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    with pytest.warns(sklearn.exceptions.DataConversionWarning):
        reg.fit(X, y.reshape(-1, 1) / 100)
    assert reg.predict(X).shape == (100,) and reg.predict(X).dtype == np.float64


# -- fastsgd's own parameters -------------------------------------------------------
@pytest.mark.parametrize("solver", ["adagrad", "rmsprop", "adamw"])
def test_fastsgd_solvers_learn(solver):
    X, y = _easy()
    clf = MLPClassifier(hidden_layer_sizes=(32,), solver=solver, max_iter=60,
                        learning_rate_init=0.01, random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.85
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]


@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32])
def test_dtype(dtype):
    X, y = _data()
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, dtype=dtype, random_state=0).fit(X, y)
    assert all(w.dtype == np.dtype(dtype) for w in clf.coefs_ + clf.intercepts_)
    assert clf.predict_proba(X).dtype == np.float64


def test_coefs_are_the_trained_arrays():
    X, y = _data()
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)
    before = clf.predict_proba(X)
    clf.coefs_[-1][...] = 0.0  # in place: the network sees it
    clf.intercepts_[-1][...] = 0.0
    np.testing.assert_allclose(clf.predict_proba(X), 1.0 / 3.0, rtol=1e-6)
    clf.coefs_ = [np.ones_like(w) for w in clf.coefs_]  # replaced: rebuilt on use
    assert not np.allclose(clf.predict_proba(X), before)


def test_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = _data()
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(df, y)
    np.testing.assert_array_equal(clf.feature_names_in_, df.columns)
    assert clf.n_features_in_ == 10
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(df.rename(columns={"f0": "other"}))


def test_warm_start_continues():
    X, y = _data()
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, warm_start=True, random_state=0)
    clf.fit(X, y)
    first = [w.copy() for w in clf.coefs_]
    clf.fit(X, y)
    assert clf.t_ == 2 * 3 * len(X) and len(clf.loss_curve_) == 6 and clf.n_iter_ == 3
    assert _maxdiff(first, clf.coefs_) > 0
    with pytest.raises(ValueError, match="warm_start"):
        clf.fit(X, np.where(y == 2, 1, y))
    clf.set_params(hidden_layer_sizes=(9,))
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        clf.fit(X, y)


def test_warm_start_can_switch_early_stopping():
    X, y = _easy()
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, warm_start=True, random_state=0)
    clf.fit(X, y)
    clf.set_params(early_stopping=True).fit(X, y)
    assert len(clf.validation_scores_) == 3
    clf.set_params(early_stopping=False).fit(X, y)
    assert len(clf.loss_curve_) == 9 and np.isfinite(clf.best_loss_)


def test_convergence_warning_and_tol_stop():
    X, y = _data()
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=200, tol=1.0, n_iter_no_change=2,
                            random_state=0).fit(X, y)
    # no epoch improves by tol after the first: stop when n_iter_no_change is exceeded
    assert clf.n_iter_ == 4 and clf.best_loss_ == min(clf.loss_curve_)


def test_verbose_prints_sklearn_lines(capsys):
    X, y = _data()
    MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, verbose=True, random_state=0).fit(X, y)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Iteration 2, loss = " in out


def test_batch_size_clipped_with_warning():
    X, y = _data(n=50)
    with pytest.warns(UserWarning, match="batch_size"):
        MLPClassifier(hidden_layer_sizes=(4,), batch_size=500, max_iter=2).fit(X, y)


def test_random_state_fixes_the_result():
    X, y = _data()
    a = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=3).fit(X, y)
    b = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=3).fit(X, y)
    c = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=4).fit(X, y)
    assert _maxdiff(a.coefs_, b.coefs_) == 0.0 and _maxdiff(a.coefs_, c.coefs_) > 0


@pytest.mark.parametrize("param, value, exc, match", [
    ("hidden_layer_sizes", (4, 0), ValueError, r"hidden_layer_sizes\[1\]"),
    ("hidden_layer_sizes", "wide", TypeError, "hidden_layer_sizes"),
    ("activation", "softplus", ValueError, "activation"),
    ("solver", "lbfgs", ValueError, "solver"),
    ("alpha", -1.0, ValueError, "alpha"),
    ("batch_size", 0, ValueError, "batch_size"),
    ("batch_size", "big", ValueError, "batch_size"),
    ("learning_rate", "cyclic", ValueError, "learning_rate"),
    ("learning_rate_init", 0.0, ValueError, "learning_rate_init"),
    ("power_t", -0.5, ValueError, "power_t"),
    ("max_iter", 0, ValueError, "max_iter"),
    ("max_iter", 2.5, TypeError, "max_iter"),
    ("shuffle", "yes", TypeError, "shuffle"),
    ("tol", -1e-3, ValueError, "tol"),
    ("verbose", -1, ValueError, "verbose"),
    ("warm_start", 1.0, TypeError, "warm_start"),
    ("momentum", 1.0, ValueError, "momentum"),
    ("nesterovs_momentum", None, TypeError, "nesterovs_momentum"),
    ("early_stopping", "no", TypeError, "early_stopping"),
    ("validation_fraction", 1.0, ValueError, "validation_fraction"),
    ("beta_1", 1.0, ValueError, "beta_1"),
    ("beta_2", -0.1, ValueError, "beta_2"),
    ("epsilon", 0.0, ValueError, "epsilon"),
    ("n_iter_no_change", 0, ValueError, "n_iter_no_change"),
    ("loss", "hinge", ValueError, "loss"),
    ("dtype", "float16", ValueError, "dtype"),
    ("n_threads", 0, ValueError, "n_threads"),
    ("sparse_input", "always", ValueError, "sparse_input"),
    ("sparse_input", None, TypeError, "sparse_input"),
    ("random_state", "seed", ValueError, "random_state|RandomState"),
])
def test_bad_parameters_fail_in_fit(param, value, exc, match):
    X, y = _data(n=40)
    clf = MLPClassifier(**{"max_iter": 1, param: value})  # no check in __init__
    with pytest.raises(exc, match=match):
        clf.fit(X, y)


def test_regressor_rejects_poisson_and_classifier_losses():
    X, y = make_regression(40, 3, random_state=0)
    for loss in ("poisson", "log_loss"):
        with pytest.raises(ValueError, match="loss"):
            MLPRegressor(loss=loss, max_iter=1).fit(X, y)


def test_unfitted():
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(np.zeros((2, 3)))


# -- pickling and cloning -------------------------------------------------------
def test_pickle_keeps_predictions_and_optimizer_state():
    X, y = _data()
    kw = dict(hidden_layer_sizes=(8,), solver="adam", random_state=0, shuffle=False)
    a = MLPClassifier(**kw).fit(X, y)
    blob = pickle.dumps(a)
    assert b"fastsgd.layers" not in blob and b"Sequential" not in blob  # arrays, not networks
    b = pickle.loads(blob)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    a.partial_fit(X, y)
    b.partial_fit(X, y)
    assert _maxdiff(a.coefs_, b.coefs_) == 0.0
    assert a._optimizer.iterations == b._optimizer.iterations


def test_clone_is_unfitted_with_same_params():
    X, y = _data()
    a = MLPRegressor(hidden_layer_sizes=(5,), solver="sgd", dtype="float64", n_threads=1,
                     max_iter=2).fit(X, y.astype(float))
    c = clone(a)
    assert c.get_params() == a.get_params()
    assert not hasattr(c, "coefs_")


def test_sparse_input_is_a_parameter_passed_to_the_trainer(monkeypatch):
    """Mostly-zero dense X trains through the sparse first layer unless sparse_input=False,
    with the weights of the same data given as a sparse matrix; clone keeps the switch."""
    sp = pytest.importorskip("scipy.sparse")
    from fastsgd import _inputs
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 30)) * (rng.random((300, 30)) < 0.1)
    y = rng.integers(0, 3, 300)
    seen = []
    original = _inputs.dense_as_csr

    def spy(name, inputs, dtype, sparse_input="auto", **kw):
        out = original(name, inputs, dtype, sparse_input, **kw)
        seen.append((sparse_input, inputs.mode, out.mode))
        return out

    monkeypatch.setattr(_inputs, "dense_as_csr", spy)
    kw = dict(hidden_layer_sizes=(8,), max_iter=3, random_state=0)
    auto = MLPClassifier(**kw).fit(X, y)
    off = MLPClassifier(sparse_input=False, **kw).fit(X, y)
    on = MLPRegressor(sparse_input=True, **kw).fit(X, y.astype(float))
    csr = MLPClassifier(**kw).fit(sp.csr_matrix(X), y)
    assert seen == [("auto", "direct", "csr"), (False, "direct", "direct"),
                    (True, "direct", "csr"), ("auto", "csr", "csr")]
    assert _maxdiff(auto.coefs_, csr.coefs_) == 0.0
    assert 0.0 < _maxdiff(auto.coefs_, off.coefs_) < 1e-4
    assert on.get_params()["sparse_input"] is True
    assert clone(off).sparse_input is False and clone(auto).get_params() == auto.get_params()
    assert MLPClassifier().sparse_input == "auto" and MLPRegressor().sparse_input == "auto"


# -- scikit-learn tools --------------------------------------------------------------
def test_pipeline_and_grid_search_with_loky():
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    X, y = _easy(n=300)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=30,
                                                         learning_rate_init=0.01, random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-2],
                               "mlpclassifier__solver": ["adam", "sgd"]}, cv=2, n_jobs=2)
    grid.fit(X, y)
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_score_ > 0.8
    assert grid.predict(X).shape == (300,)


def test_grid_search_on_dask():
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    from distributed import Client, LocalCluster, get_task_stream
    from joblib import parallel_backend
    from sklearn.model_selection import GridSearchCV
    X, y = _data(n=200)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        grid = GridSearchCV(MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0),
                            {"alpha": [1e-4, 1e-2]}, cv=2, n_jobs=-1)
        with get_task_stream(client) as tasks, parallel_backend("dask"):
            grid.fit(X, y)
    assert len(grid.cv_results_["mean_test_score"]) == 2  # 2 settings x 2 folds = 4 trials
    assert len(tasks.data) >= 1  # the trials ran as Dask tasks
    assert np.all(np.isfinite(grid.cv_results_["mean_test_score"]))


# -- threads ---------------------------------------------------------------------
def test_thread_rule():
    assert est_mod._resolve_threads(None) is None  # main thread of the main process
    assert est_mod._resolve_threads(2) == 2
    seen = []
    t = threading.Thread(target=lambda: seen.append(est_mod._resolve_threads(None)))
    t.start()
    t.join()
    assert seen == [1]


def test_serial_forked_child_caps_n_threads(monkeypatch):
    from fastsgd import _fork
    monkeypatch.setitem(_fork._state, "stale_pool", True)  # as in a child that went serial
    assert est_mod._resolve_threads(4) == 1
    assert est_mod._resolve_threads(None) == 1


def test_overlapping_thread_scopes_restore_once():
    fastsgd.set_num_threads(2)
    with est_mod._threads(1):
        assert fastsgd.get_num_threads() == 1
        with est_mod._threads(1):  # a second trial starting while the first runs
            pass
        assert fastsgd.get_num_threads() == 1  # not restored under the first one
    assert fastsgd.get_num_threads() == 2


def test_n_threads_is_restored():
    X, y = _data()
    fastsgd.set_num_threads(2)
    MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, n_threads=1).fit(X, y)
    assert fastsgd.get_num_threads() == 2


def test_fits_in_threads_match_sequential_fits():
    X, y = _data()
    kw = [dict(hidden_layer_sizes=(32,), random_state=s, max_iter=5) for s in (0, 1)]
    seq = [MLPClassifier(**k).fit(X, y) for k in kw]
    par = [MLPClassifier(**k) for k in kw]
    threads = [threading.Thread(target=m.fit, args=(X, y)) for m in par]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(seq, par):
        assert _maxdiff(a.coefs_, b.coefs_) == 0.0


def test_import_does_not_import_sklearn(tmp_path):
    code = ("import sys, fastsgd; assert 'sklearn' not in sys.modules, 'sklearn imported'; "
            "fastsgd.MLPClassifier; assert 'sklearn' in sys.modules; "
            "from fastsgd import *; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# -- sample and class weights, sparse input ------------------------------------------
def test_zero_sample_weight_equals_dropping_the_samples():
    X, y = _easy(200)
    keep = np.ones(200, bool)
    keep[1::4] = False
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", batch_size=8, max_iter=3, shuffle=False,
              random_state=0, dtype="float64", alpha=0.0)
    a = MLPClassifier(**kw).fit(X, y, sample_weight=keep.astype(float))
    b = MLPClassifier(**{**kw, "batch_size": 6}).fit(X[keep], y[keep])
    assert _maxdiff(a.coefs_, b.coefs_) < 1e-12


def test_class_weight_balanced_equals_its_sample_weights():
    X, y = _data(300, 3)
    from sklearn.utils.class_weight import compute_sample_weight
    kw = dict(hidden_layer_sizes=(8,), max_iter=3, random_state=0)
    a = MLPClassifier(class_weight="balanced", **kw).fit(X, y)
    b = MLPClassifier(**kw).fit(X, y, sample_weight=compute_sample_weight("balanced", y))
    assert _maxdiff(a.coefs_, b.coefs_) == 0


def test_sparse_input_trains_without_densifying():
    sp = pytest.importorskip("scipy.sparse")
    X, y = _easy(300)
    Xs = sp.csr_matrix(np.where(np.abs(X) > 1, X, 0))
    kw = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0, dtype="float64")
    a = MLPClassifier(**kw).fit(Xs, y)
    b = MLPClassifier(**kw).fit(Xs.toarray(), y)
    assert _maxdiff(a.coefs_, b.coefs_) < 1e-10
    np.testing.assert_allclose(a.predict_proba(Xs), b.predict_proba(Xs.toarray()), rtol=1e-9)
