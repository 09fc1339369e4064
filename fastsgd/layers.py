"""Layers, initializers and the Sequential model.

A :class:`Dense` layer owns C-contiguous ``weights`` (shape ``(inputs,
units)``) and ``bias`` (shape ``(units,)``); the compiled kernels read and
update those buffers in place. :class:`Sequential` stacks dense layers and
holds the dtype and the seed that fixes initialisation.
"""
import math

import numpy as np

from . import _kernels
from ._validate import as_float_matrix, check_choice, check_float, check_int

ACTIVATIONS = tuple(_kernels.ACTIVATIONS)

# Truncated normal at two standard deviations has this standard deviation;
# dividing by it gives the requested variance (as Keras's VarianceScaling).
_TRUNC_STD = 0.87962566103423978


def _truncated_normal(rng, std, shape):
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out * (std / _TRUNC_STD)


def _glorot_uniform(rng, fan_in, fan_out, shape):
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape)


def _glorot_normal(rng, fan_in, fan_out, shape):
    return _truncated_normal(rng, math.sqrt(2.0 / (fan_in + fan_out)), shape)


def _he_uniform(rng, fan_in, fan_out, shape):
    limit = math.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, shape)


def _he_normal(rng, fan_in, fan_out, shape):
    return _truncated_normal(rng, math.sqrt(2.0 / fan_in), shape)


def _lecun_uniform(rng, fan_in, fan_out, shape):
    limit = math.sqrt(3.0 / fan_in)
    return rng.uniform(-limit, limit, shape)


def _lecun_normal(rng, fan_in, fan_out, shape):
    return _truncated_normal(rng, math.sqrt(1.0 / fan_in), shape)


def _scaled_normal(rng, fan_in, fan_out, shape):
    # the chapter's remedy for saturated neurons: N(0, 1) scaled by 1/sqrt(fan_in)
    return rng.standard_normal(shape) / math.sqrt(fan_in)


def _standard_normal(rng, fan_in, fan_out, shape):
    return rng.standard_normal(shape)


def _zeros(rng, fan_in, fan_out, shape):
    return np.zeros(shape)


def _ones(rng, fan_in, fan_out, shape):
    return np.ones(shape)


#: name -> function(rng, fan_in, fan_out, shape) returning float64 values
INITIALIZERS = {
    "glorot_uniform": _glorot_uniform,
    "glorot_normal": _glorot_normal,
    "he_uniform": _he_uniform,
    "he_normal": _he_normal,
    "lecun_uniform": _lecun_uniform,
    "lecun_normal": _lecun_normal,
    "scaled_normal": _scaled_normal,
    "standard_normal": _standard_normal,
    "zeros": _zeros,
    "ones": _ones,
}


def _check_param_array(name, value, shape, dtype):
    if not isinstance(value, np.ndarray):
        value = np.asarray(value)
    if value.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {value.dtype}")
    if value.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
    if not np.isfinite(value).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return value


class Dense:
    """A fully connected layer: ``a = f(x @ weights + bias)``.

    Parameters
    ----------
    units : int
        Number of neurons (outputs), >= 1.
    activation : str
        One of ``linear``, ``sigmoid``, ``tanh``, ``relu``, ``leaky_relu``,
        ``softmax``.
    input_dim : int, optional
        Number of inputs; needed on the first layer unless the model is built
        from the data at the first ``fit``/``predict``.
    weight_init, bias_init : str
        Names from :data:`INITIALIZERS` (default ``glorot_uniform`` and
        ``zeros``, as in Keras).
    negative_slope : float
        Slope of ``leaky_relu`` for negative inputs (>= 0; default 0.2).
    l1, l2 : float or None
        Penalties on this layer's weights, ``l1 * sum|w| + l2 * sum w**2``,
        applied inside the fused update. None takes the optimizer's global
        setting.
    """

    def __init__(self, units, activation="linear", *, input_dim=None,
                 weight_init="glorot_uniform", bias_init="zeros", negative_slope=0.2,
                 l1=None, l2=None):
        self.units = check_int("units", units, minimum=1)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.input_dim = None if input_dim is None else check_int("input_dim", input_dim, minimum=1)
        self.weight_init = check_choice("weight_init", weight_init, INITIALIZERS)
        self.bias_init = check_choice("bias_init", bias_init, INITIALIZERS)
        self.negative_slope = check_float("negative_slope", negative_slope, low=0.0)
        self.l1 = None if l1 is None else check_float("l1", l1, low=0.0)
        self.l2 = None if l2 is None else check_float("l2", l2, low=0.0)
        self._W = None
        self._b = None

    # -- construction -----------------------------------------------------
    def build(self, input_dim, dtype, rng):
        """Allocate and initialise ``weights`` and ``bias``."""
        self.input_dim = check_int("input_dim", input_dim, minimum=1)
        shape = (self.input_dim, self.units)
        w = INITIALIZERS[self.weight_init](rng, self.input_dim, self.units, shape)
        b = INITIALIZERS[self.bias_init](rng, self.input_dim, self.units, (self.units,))
        self._W = np.ascontiguousarray(w, dtype=dtype)
        self._b = np.ascontiguousarray(b, dtype=dtype)

    @property
    def built(self):
        return self._W is not None

    # -- parameters ---------------------------------------------------------
    @property
    def weights(self):
        """The weight matrix, shape ``(inputs, units)`` (the array the kernels update)."""
        return self._W

    @weights.setter
    def weights(self, value):
        self._assign("weights", self._W, value)

    @property
    def bias(self):
        """The bias vector, shape ``(units,)``."""
        return self._b

    @bias.setter
    def bias(self, value):
        self._assign("bias", self._b, value)

    @staticmethod
    def _assign(name, buf, value):
        """Copy ``value`` into the owned buffer the kernels read (checked first)."""
        if buf is None:
            raise RuntimeError("the layer is not built yet; give input_dim or fit the model first")
        buf[...] = _check_param_array(name, value, buf.shape, buf.dtype)

    def parameters(self):
        """``[weights, bias]``."""
        return [self._W, self._b]

    def count_params(self):
        if self.input_dim is None:
            raise RuntimeError("the layer's input size is unknown until it is built")
        return self.input_dim * self.units + self.units

    # -- pure NumPy reference -------------------------------------------------
    def forward(self, x):
        """Forward pass in NumPy (readable reference; the trainer uses the kernels)."""
        z = x @ self._W + self._b
        return activate(z, self.activation, self.negative_slope)

    def get_config(self):
        return {"units": self.units, "activation": self.activation, "input_dim": self.input_dim,
                "weight_init": self.weight_init, "bias_init": self.bias_init,
                "negative_slope": self.negative_slope, "l1": self.l1, "l2": self.l2}

    def __repr__(self):
        return f"Dense({self.units}, activation={self.activation!r})"


def activate(z, activation, negative_slope=0.2):
    """The activations in NumPy: the reference the kernels are tested against."""
    if activation == "linear":
        return z
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if activation == "tanh":
        return np.tanh(z)
    if activation == "relu":
        return np.maximum(z, 0)
    if activation == "leaky_relu":
        return np.where(z > 0, z, negative_slope * z)
    if activation == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise ValueError(f"unknown activation {activation!r}")


class Sequential:
    """A stack of :class:`Dense` layers.

    Parameters
    ----------
    layers : list of Dense
    dtype : {"float32", "float64"}
    seed : int or None
        Fixes the initial weights (and, unless the trainer has its own seed,
        the shuffling).

    Examples
    --------
    The book's Shallow Net (50,890 parameters)::

        model = Sequential([Dense(64, "sigmoid", input_dim=784),
                            Dense(10, "softmax")], seed=42)
    """

    def __init__(self, layers, *, dtype="float32", seed=None):
        if isinstance(layers, Dense):
            layers = [layers]
        layers = list(layers)
        if not layers:
            raise ValueError("layers must hold at least one Dense layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Dense):
                raise TypeError(f"layers[{i}] must be a fastsgd.Dense, got {type(layer).__name__}")
        if len({id(layer) for layer in layers}) != len(layers):
            raise ValueError("the same Dense object appears twice in layers")
        self.layers = layers
        self.dtype = _float_dtype(dtype)
        if seed is not None:
            seed = check_int("seed", seed, minimum=0)
        self.seed = seed
        self.stop_training = False
        for i in range(1, len(layers)):
            given = layers[i].input_dim
            if given is not None and given != layers[i - 1].units:
                raise ValueError(f"layers[{i}] has input_dim={given} but layers[{i-1}] has "
                                 f"{layers[i-1].units} units")
        if layers[0].input_dim is not None:
            self.build(layers[0].input_dim)

    def build(self, input_dim):
        """Initialise every layer for inputs of ``input_dim`` features."""
        rng = np.random.default_rng(self.seed)
        n = input_dim
        for layer in self.layers:
            layer.build(n, self.dtype, rng)
            n = layer.units

    @property
    def built(self):
        return all(layer.built for layer in self.layers)

    @property
    def input_dim(self):
        return self.layers[0].input_dim

    @property
    def output_dim(self):
        return self.layers[-1].units

    def parameters(self):
        """Every parameter array, in layer order: ``[W0, b0, W1, b1, ...]``."""
        return [p for layer in self.layers for p in layer.parameters()]

    def get_weights(self):
        """Copies of every parameter array."""
        return [p.copy() for p in self.parameters()]

    def set_weights(self, weights):
        """Copy ``weights`` (as from :meth:`get_weights`) into the model."""
        params = self.parameters()
        if len(weights) != len(params):
            raise ValueError(f"expected {len(params)} arrays, got {len(weights)}")
        checked = [_check_param_array(f"weights[{i}]", w, p.shape, p.dtype)
                   for i, (w, p) in enumerate(zip(weights, params))]
        for p, w in zip(params, checked):
            p[...] = w

    def count_params(self):
        n = self.input_dim
        if n is None:
            raise RuntimeError("give the first layer an input_dim (or fit the model) to count parameters")
        total = 0
        for layer in self.layers:
            total += n * layer.units + layer.units
            n = layer.units
        return total

    def summary(self, print_fn=print):
        """Print a table of layers, output shapes and parameter counts, as Keras does."""
        rows = []
        n = self.input_dim
        for i, layer in enumerate(self.layers):
            params = "?" if n is None else f"{n * layer.units + layer.units:,}"
            rows.append((f"dense_{i} (Dense, {layer.activation})", f"(None, {layer.units})", params))
            n = layer.units
        w = [max(len(r[k]) for r in rows + [("Layer (type)", "Output Shape", "Param #")]) + 2
             for k in range(3)]
        line = "=" * sum(w)
        out = [f"Model: Sequential ({self.dtype.name})", line,
               "Layer (type)".ljust(w[0]) + "Output Shape".ljust(w[1]) + "Param #".rjust(w[2]), line]
        for r in rows:
            out.append(r[0].ljust(w[0]) + r[1].ljust(w[1]) + r[2].rjust(w[2]))
        out.append(line)
        total = "?" if self.input_dim is None else f"{self.count_params():,}"
        out.append(f"Total params: {total}")
        text = "\n".join(out)
        if print_fn is not None:
            print_fn(text)
        return text

    def _layer_specs(self, capacity, grads=None):
        """Buffers for the compiled network (activations sized for ``capacity`` rows)."""
        specs = []
        for i, layer in enumerate(self.layers):
            if grads is None:
                dW = np.empty_like(layer.weights)
                db = np.empty_like(layer.bias)
            else:
                dW, db = grads[i]
            specs.append({"W": layer.weights, "b": layer.bias, "dW": dW, "db": db,
                          "A": np.empty((capacity, layer.units), self.dtype),
                          "D": np.empty((capacity, layer.units), self.dtype),
                          "act": layer.activation, "slope": layer.negative_slope})
        return specs

    def predict(self, X, batch_size=1024):
        """Outputs of the network for ``X`` (n, inputs), computed in chunks of ``batch_size``."""
        batch_size = check_int("batch_size", batch_size, minimum=1)
        if not self.built:
            X = as_float_matrix("X", X, self.dtype)
            self.build(X.shape[1])
        X = as_float_matrix("X", X, self.dtype, self.input_dim)
        cap = min(batch_size, X.shape[0])
        net = _kernels.Net(self._layer_specs(cap), cap, "mse", self.dtype)
        out = np.empty((X.shape[0], self.output_dim), self.dtype)
        return net.predict_into(X, out)

    def __call__(self, X):
        return self.predict(X)

    def get_config(self):
        return {"dtype": self.dtype.name, "seed": self.seed,
                "layers": [layer.get_config() for layer in self.layers]}

    def save(self, path, optimizer=None):
        """Write architecture, dtype and weights to ``path`` (see :mod:`fastsgd.io`)."""
        from .io import save_model
        save_model(self, path, optimizer=optimizer)

    def __repr__(self):
        return f"Sequential({self.layers!r}, dtype={self.dtype.name!r})"


def _float_dtype(dtype):
    """numpy float32 or float64 from a name or dtype-like; ValueError otherwise."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    return dt
