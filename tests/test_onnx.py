"""ONNX export: checked graphs whose onnxruntime outputs equal fastsgd's."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx package is not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

import fastsgd  # noqa: E402
from fastsgd.onnx import to_onnx  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Stochastic Optimizer")

DTYPES = ["float32", "float64"]
# relative tolerance 1e-5; the absolute floor only matters for values near 0
ATOL = {"float32": 1e-7, "float64": 1e-15}


def run(model_proto, X):
    sess = ort.InferenceSession(model_proto.SerializeToString(),
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {"X": X})


def _X(dtype, n=200, d=12, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid", "leaky_relu", "linear"])
def test_sequential(dtype, act):
    X = _X(dtype)
    model = fastsgd.Sequential([fastsgd.Dense(32, act, input_dim=12, negative_slope=0.3),
                                fastsgd.Dense(16, act), fastsgd.Dense(5, "softmax")],
                               dtype=dtype, seed=0)
    m = to_onnx(model)
    onnx.checker.check_model(m, full_check=True)
    assert [o.name for o in m.graph.output] == ["output"]
    (out,) = run(m, X)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_allclose(out, model.predict(X), rtol=1e-5, atol=ATOL[dtype])


def _labels(kind, y):
    return {"int": y, "str": np.array(["ant", "bee", "cat", "dog"])[y],
            "neg": np.array([-5, 0, 9, 40])[y]}[kind]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["int", "str", "neg"])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_classifier(dtype, kind, n_classes):
    pytest.importorskip("sklearn")
    X = _X(dtype)
    y = _labels(kind, (X[:, 0] > 0).astype(int) + (2 * (X[:, 1] > 0) if n_classes == 4 else 0))
    clf = fastsgd.MLPClassifier((16, 8), activation="tanh", max_iter=20, random_state=0,
                                dtype=dtype).fit(X, y)
    m = to_onnx(clf)
    onnx.checker.check_model(m, full_check=True)
    assert [o.name for o in m.graph.output] == ["label", "probabilities"]
    label, proba = run(m, X)
    np.testing.assert_array_equal(label, clf.predict(X))
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=1e-5, atol=ATOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_multilabel_classifier(dtype):
    pytest.importorskip("sklearn")
    X = _X(dtype)
    Y = np.column_stack([X[:, 0] > 0, X[:, 1] > 0.5, X[:, 2] + X[:, 3] > 0]).astype(int)
    clf = fastsgd.MLPClassifier((16,), activation="logistic", max_iter=30, random_state=0,
                                dtype=dtype).fit(X, Y)
    label, proba = run(to_onnx(clf), X)
    np.testing.assert_array_equal(label, clf.predict(X))
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=1e-5, atol=ATOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("outputs", [1, 3])
def test_regressor(dtype, outputs):
    pytest.importorskip("sklearn")
    X = _X(dtype)
    y = X[:, :outputs] @ np.eye(outputs) * 2 + 1
    reg = fastsgd.MLPRegressor(hidden_layer_sizes=(16,), max_iter=20, random_state=0,
                               dtype=dtype).fit(X, y[:, 0] if outputs == 1 else y)
    m = to_onnx(reg)
    assert [o.name for o in m.graph.output] == ["variable"]
    (out,) = run(m, X)
    assert out.shape == (len(X), outputs)
    want = reg.predict(X).reshape(len(X), outputs)
    # an output near 0 is the difference of terms as large as the largest outputs:
    # its rounding is theirs (the generic path rounds each product, onnxruntime fuses)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=ATOL[dtype] * np.abs(want).max())


def test_dtype_override_and_file(tmp_path):
    model = fastsgd.Sequential([fastsgd.Dense(8, "relu", input_dim=12),
                                fastsgd.Dense(3, "linear")], seed=1)  # float32
    path = tmp_path / "m.onnx"
    m = to_onnx(model, path, dtype="float64")
    loaded = onnx.load(str(path))
    assert loaded == m
    X = _X("float64")
    (out,) = run(loaded, X)
    assert out.dtype == np.float64
    # float32 weights evaluated in float64 arithmetic
    np.testing.assert_allclose(out, model.predict(X), rtol=1e-5, atol=1e-6)


def test_opset_and_errors():
    model = fastsgd.Sequential([fastsgd.Dense(3, "relu", input_dim=4)], seed=0)
    m = to_onnx(model, target_opset=13)
    assert m.opset_import[0].version == 13
    with pytest.raises(ValueError, match="target_opset"):
        to_onnx(model, target_opset=11)
    with pytest.raises(ValueError, match="dtype"):
        to_onnx(model, dtype="float16")
    with pytest.raises(TypeError, match="model"):
        to_onnx("not a model")
    with pytest.raises(ValueError, match="weights"):
        to_onnx(fastsgd.Sequential([fastsgd.Dense(3)]))


def test_unfitted_estimator():
    pytest.importorskip("sklearn")
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        to_onnx(fastsgd.MLPClassifier())


@pytest.mark.parametrize("dtype", DTYPES)
def test_skl2onnx_converter_in_a_pipeline(dtype):
    pytest.importorskip("sklearn")
    skl2onnx = pytest.importorskip("skl2onnx", reason="skl2onnx is not installed")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    fastsgd.onnx.register_skl2onnx()
    X = _X(dtype) * 3 + 1
    y = np.array(["no", "maybe", "yes"])[(X[:, 0] > 1).astype(int) + (X[:, 1] > 2)]
    pipe = make_pipeline(StandardScaler(), fastsgd.MLPClassifier((8,), max_iter=20,
                                                                random_state=0, dtype=dtype))
    pipe.fit(X, y)
    m = skl2onnx.to_onnx(pipe, X[:1], options={"zipmap": False}, target_opset=17)
    label, proba = run(m, X)
    np.testing.assert_array_equal(label, pipe.predict(X))
    # the scaler runs in ONNX's precision: compare at float32 accuracy
    np.testing.assert_allclose(proba, pipe.predict_proba(X), rtol=1e-4, atol=1e-6)
    reg = make_pipeline(StandardScaler(), fastsgd.MLPRegressor(hidden_layer_sizes=(8,),
                                                               max_iter=5, random_state=0))
    reg.fit(X, X[:, 0])
    (out,) = run(skl2onnx.to_onnx(reg, X[:1].astype(np.float32), target_opset=17),
                 X.astype(np.float32))
    np.testing.assert_allclose(out[:, 0], reg.predict(X), rtol=1e-4, atol=1e-5)
