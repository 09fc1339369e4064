"""Dense, Sequential and the initializers."""
import numpy as np
import pytest

import fastsgd
from fastsgd import Dense, Sequential
from fastsgd.layers import INITIALIZERS

from _reference import network_forward


def shallow(seed=0, dtype="float32"):
    return Sequential([Dense(64, "sigmoid", input_dim=784), Dense(10, "softmax")], seed=seed,
                      dtype=dtype)


def test_book_parameter_counts():
    assert shallow().count_params() == 50890
    inter = Sequential([Dense(64, "relu", input_dim=784), Dense(64, "relu"), Dense(10, "softmax")])
    assert inter.count_params() == 55050
    assert sum(p.size for p in inter.parameters()) == 55050


def test_summary_lists_layers_shapes_and_params():
    text = shallow().summary(print_fn=None)
    assert "50,240" in text and "650" in text and "Total params: 50,890" in text
    assert "(None, 64)" in text and "(None, 10)" in text


def test_weights_shapes_dtype_and_contiguity():
    m = shallow(dtype="float64")
    w, b = m.layers[0].weights, m.layers[0].bias
    assert w.shape == (784, 64) and b.shape == (64,)
    assert w.dtype == np.float64 and w.flags.c_contiguous


def test_weight_assignment_checks_shape_and_dtype():
    m = shallow()
    layer = m.layers[1]
    new = np.arange(640, dtype=np.float64).reshape(64, 10)
    buf = layer.weights
    layer.weights = new
    assert layer.weights is buf  # copied into the owned buffer the kernels use
    np.testing.assert_array_equal(layer.weights, new.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        layer.weights = np.zeros((10, 64))
    with pytest.raises(TypeError, match="real numbers"):
        layer.weights = np.zeros((64, 10), dtype=object)
    with pytest.raises(TypeError, match="real numbers"):
        layer.bias = np.array(["a"] * 10)
    with pytest.raises(ValueError, match="NaN"):
        layer.bias = np.full(10, np.nan)


def test_same_seed_same_weights_different_seed_different():
    a, b, c = shallow(1), shallow(1), shallow(2)
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p, q)
    assert not np.array_equal(a.layers[0].weights, c.layers[0].weights)


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_initializer_statistics(name):
    m = Sequential([Dense(400, input_dim=300, weight_init=name)], seed=3, dtype="float64")
    w = m.layers[0].weights
    fan_in, fan_out = 300, 400
    expected_std = {
        "glorot_uniform": np.sqrt(2 / (fan_in + fan_out)),
        "glorot_normal": np.sqrt(2 / (fan_in + fan_out)),
        "he_uniform": np.sqrt(2 / fan_in), "he_normal": np.sqrt(2 / fan_in),
        "lecun_uniform": np.sqrt(1 / fan_in), "lecun_normal": np.sqrt(1 / fan_in),
        "scaled_normal": np.sqrt(1 / fan_in), "standard_normal": 1.0,
        "zeros": 0.0, "ones": 0.0,
    }[name]
    if name == "ones":
        assert np.all(w == 1)
        return
    assert abs(w.mean()) < 0.01 * max(expected_std, 1e-3) * 10
    assert w.std() == pytest.approx(expected_std, rel=0.03, abs=1e-12)
    if "uniform" in name:
        assert np.abs(w).max() <= np.sqrt(3) * expected_std * (1 + 1e-12)
    if name.endswith("_normal") and name not in ("scaled_normal", "standard_normal"):
        assert np.abs(w).max() <= 2 * expected_std / 0.87962566103423978 + 1e-12


def test_deferred_build_from_data():
    m = Sequential([Dense(5, "relu"), Dense(2, "softmax")], seed=0)
    assert not m.built
    with pytest.raises(RuntimeError):
        m.count_params()
    out = m.predict(np.ones((3, 7)))
    assert m.built and m.count_params() == 7 * 5 + 5 + 5 * 2 + 2 and out.shape == (3, 2)


def test_predict_matches_numpy_forward_in_chunks(rng):
    m = Sequential([Dense(30, "tanh", input_dim=20), Dense(20, "leaky_relu", negative_slope=0.1),
                    Dense(4, "softmax")], dtype="float64", seed=5)
    X = rng.standard_normal((1037, 20))
    ref = network_forward(m, X)
    np.testing.assert_allclose(m.predict(X, batch_size=100), ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m(X), ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"units": 0}, ValueError, "units"),
    ({"units": 2.5}, TypeError, "units"),
    ({"units": 4, "activation": "swish"}, ValueError, "linear.*sigmoid"),
    ({"units": 4, "weight_init": "xavier"}, ValueError, "glorot_uniform"),
    ({"units": 4, "bias_init": "bad"}, ValueError, "zeros"),
    ({"units": 4, "input_dim": 0}, ValueError, "input_dim"),
    ({"units": 4, "negative_slope": -1}, ValueError, "negative_slope"),
    ({"units": 4, "l2": float("nan")}, ValueError, "l2"),
])
def test_dense_rejects_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Dense(**kwargs)


def test_sequential_rejects_bad_arguments():
    with pytest.raises(ValueError, match="at least one"):
        Sequential([])
    with pytest.raises(TypeError, match="Dense"):
        Sequential([Dense(3, input_dim=2), "relu"])
    with pytest.raises(ValueError, match="dtype"):
        Sequential([Dense(3, input_dim=2)], dtype="float16")
    with pytest.raises(ValueError, match="input_dim=5"):
        Sequential([Dense(3, input_dim=2), Dense(2, input_dim=5)])
    layer = Dense(3, input_dim=2)
    with pytest.raises(ValueError, match="twice"):
        Sequential([layer, layer])


def test_predict_rejects_bad_input():
    m = shallow()
    with pytest.raises(ValueError, match="784"):
        m.predict(np.zeros((2, 783)))
    with pytest.raises(ValueError, match="NaN"):
        m.predict(np.full((2, 784), np.nan))
    with pytest.raises(TypeError, match="real numbers"):
        m.predict(np.array([["x"] * 784]))


def test_public_names():
    for name in fastsgd.__all__:
        assert hasattr(fastsgd, name), name
