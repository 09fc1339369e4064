"""Layers, initializers and the Sequential model.

A :class:`Dense` layer has ``weights`` (shape ``(inputs, units)``) and
``bias`` (shape ``(units,)``). In a :class:`Sequential` model they are views
into the model's one flat parameter array (see :mod:`fastsgd._network`),
which the compiled kernels read and update in place; assigning to them
copies into that array after checks. :class:`Sequential` stacks dense layers
and holds the dtype and the seed that fixes initialisation.
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable, List, Optional, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _core, _inputs, _model_file, _net, _ops
from ._network import Layout, build_plan, layer_segments
from ._validate import check_choice, check_float, check_int

ACTIVATIONS = tuple(_core.ACTIVATIONS)

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
    """``value`` cast to ``dtype`` after checks (finite after the cast)."""
    if not isinstance(value, np.ndarray):
        value = np.asarray(value)
    if value.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {value.dtype}")
    if value.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        cast = value.astype(dtype, copy=False)
    if not np.isfinite(cast).all():
        raise ValueError(f"{name} contains NaN or infinite values (or values too large for "
                         f"{np.dtype(dtype).name})")
    return cast


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

    def __init__(self, units: int, activation: str = "linear", *, input_dim: Optional[int] = None,
                 weight_init: str = "glorot_uniform", bias_init: str = "zeros",
                 negative_slope: float = 0.2, l1: Optional[float] = None,
                 l2: Optional[float] = None) -> None:
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
        self._store = None  # (flat array, weights offset, bias offset) backing _W and _b

    # -- construction -----------------------------------------------------
    def build(self, input_dim: int, dtype: DTypeLike, rng: np.random.Generator) -> None:
        """Allocate and initialise ``weights`` and ``bias`` (in a buffer of the
        layer's own until a model packs it into its flat array)."""
        self.input_dim = check_int("input_dim", input_dim, minimum=1)
        shape = (self.input_dim, self.units)
        w = INITIALIZERS[self.weight_init](rng, self.input_dim, self.units, shape)
        b = INITIALIZERS[self.bias_init](rng, self.input_dim, self.units, (self.units,))
        flat = np.empty(w.size + b.size, dtype=dtype)
        flat[:w.size] = w.ravel()
        flat[w.size:] = b
        self._bind(flat, 0, w.size)

    def _bind(self, flat, w_offset, b_offset):
        """Make ``weights`` and ``bias`` views into ``flat`` at these offsets."""
        n_w = self.input_dim * self.units
        self._W = flat[w_offset:w_offset + n_w].reshape(self.input_dim, self.units)
        self._b = flat[b_offset:b_offset + self.units]
        self._store = (flat, w_offset, b_offset)

    @property
    def built(self) -> bool:
        return self._W is not None

    def __getstate__(self):
        # the views are rebuilt from the flat array (pickling them would copy them)
        state = self.__dict__.copy()
        state["_W"] = state["_b"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._store is not None:
            self._bind(*self._store)

    # -- parameters ---------------------------------------------------------
    @property
    def weights(self) -> np.ndarray:
        """The weight matrix, shape ``(inputs, units)`` (the array the kernels update)."""
        return self._W

    @weights.setter
    def weights(self, value: ArrayLike) -> None:
        self._assign("weights", self._W, value)

    @property
    def bias(self) -> np.ndarray:
        """The bias vector, shape ``(units,)``."""
        return self._b

    @bias.setter
    def bias(self, value: ArrayLike) -> None:
        self._assign("bias", self._b, value)

    @staticmethod
    def _assign(name, buf, value):
        """Copy ``value`` into the owned buffer the kernels read (checked first)."""
        if buf is None:
            raise RuntimeError("the layer is not built yet; give input_dim or fit the model first")
        buf[...] = _check_param_array(name, value, buf.shape, buf.dtype)

    def parameters(self) -> List[np.ndarray]:
        """``[weights, bias]``."""
        return [self._W, self._b]

    def count_params(self):
        if self.input_dim is None:
            raise RuntimeError("the layer's input size is unknown until it is built")
        return self.input_dim * self.units + self.units

    def forward(self, x: ArrayLike) -> np.ndarray:
        """``f(x @ weights + bias)`` for a 2-D ``x`` (n, inputs): the fused
        kernel the network runs, on one layer. Returns (n, units)."""
        if not self.built:
            raise RuntimeError("the layer is not built yet; give input_dim or fit the model first")
        x = np.ascontiguousarray(x, dtype=self._W.dtype)
        return _ops.dense_forward(x, self._W, self._b, self.activation, self.negative_slope)

    def get_config(self):
        return {"units": self.units, "activation": self.activation, "input_dim": self.input_dim,
                "weight_init": self.weight_init, "bias_init": self.bias_init,
                "negative_slope": self.negative_slope, "l1": self.l1, "l2": self.l2}

    def __repr__(self):
        return f"Dense({self.units}, activation={self.activation!r})"


class Rescaling:
    """Scale the inputs: ``x * scale + offset`` (Keras's name and meaning).

    It has no parameters and may only stand first in a :class:`Sequential`,
    where it is fused into the conversion of each mini-batch (e.g. uint8
    pixels with ``Rescaling(1 / 255)``): no separate pass, no converted copy
    of the data.

    Parameters
    ----------
    scale : float
    offset : float
    """

    def __init__(self, scale: float, offset: float = 0.0) -> None:
        self.scale = check_float("scale", scale)
        self.offset = check_float("offset", offset)

    def get_config(self):
        return {"scale": self.scale, "offset": self.offset}

    def __repr__(self):
        return f"Rescaling({self.scale!r}, offset={self.offset!r})"


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

    def __init__(self, layers: Union[Dense, Sequence[Union[Dense, Rescaling]]], *,
                 dtype: DTypeLike = "float32", seed: Optional[int] = None) -> None:
        if isinstance(layers, Dense):
            layers = [layers]
        layers = list(layers)
        #: the input scaling (a leading Rescaling layer), or None
        self.rescaling = None
        if layers and isinstance(layers[0], Rescaling):
            self.rescaling = layers.pop(0)
        if not layers:
            raise ValueError("layers must hold at least one Dense layer")
        for i, layer in enumerate(layers):
            if isinstance(layer, Rescaling):
                raise ValueError("Rescaling may only stand first in a Sequential")
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
        self._flat = None     # the flat parameter array (see _flat_parameters)
        self._layout = None
        for i in range(1, len(layers)):
            given = layers[i].input_dim
            if given is not None and given != layers[i - 1].units:
                raise ValueError(f"layers[{i}] has input_dim={given} but layers[{i-1}] has "
                                 f"{layers[i-1].units} units")
        if layers[0].input_dim is not None:
            self.build(layers[0].input_dim)

    def build(self, input_dim: int) -> None:
        """Initialise the layers that have no weights yet for inputs of
        ``input_dim`` features, and pack every layer's parameters into the
        model's flat array. Layers built before (reused from another model)
        keep their weights."""
        input_dim = check_int("input_dim", input_dim, minimum=1)
        rng = np.random.default_rng(self.seed)
        n = input_dim
        for i, layer in enumerate(self.layers):
            if not layer.built:
                layer.build(n, self.dtype, rng)
            elif layer.input_dim != n:
                raise ValueError(f"layers[{i}] was built for {layer.input_dim} inputs but "
                                 f"receives {n}")
            n = layer.units
        self._flat_parameters()

    @property
    def built(self):
        return all(layer.built for layer in self.layers)

    def _flat_parameters(self):
        """``(flat, layout)``: the model's parameters as one contiguous array.

        Every layer's ``weights`` and ``bias`` are views into ``flat`` at the
        layout's offsets. When a layer was rebound elsewhere (a layer shared
        with another model that trained since), the values are packed again
        into a new array of the model's dtype; nothing is re-initialised.
        """
        if not self.built:
            raise RuntimeError("the model has no weights yet: give the first layer input_dim "
                               "or fit it")
        layout = Layout.of(row for i, layer in enumerate(self.layers)
                           for row in layer_segments(i, layer))
        flat = self._flat
        if (flat is None or layout != self._layout or flat.dtype != self.dtype or
                not all(self._backed_by(flat, layout, i, layer)
                        for i, layer in enumerate(self.layers))):
            flat = np.empty(layout.size, self.dtype)
            views = layout.views(flat)
            for i, layer in enumerate(self.layers):
                views[2 * i][...] = layer._W
                views[2 * i + 1][...] = layer._b
            for i, layer in enumerate(self.layers):
                layer._bind(flat, layout.find(i, "weights").offset, layout.find(i, "bias").offset)
            self._flat, self._layout = flat, layout
        return flat, layout

    @staticmethod
    def _backed_by(flat, layout, i, layer):
        store = layer._store
        return (store is not None and store[0] is flat and
                store[1] == layout.find(i, "weights").offset and
                store[2] == layout.find(i, "bias").offset)

    @property
    def input_dim(self) -> Optional[int]:
        return self.layers[0].input_dim

    @property
    def output_dim(self) -> int:
        return self.layers[-1].units

    def parameters(self):
        """Every parameter array, in layer order: ``[W0, b0, W1, b1, ...]``."""
        return [p for layer in self.layers for p in layer.parameters()]

    def get_weights(self) -> List[np.ndarray]:
        """Copies of every parameter array, ``[W0, b0, W1, b1, ...]``."""
        flat, layout = self._flat_parameters()
        return layout.views(flat.copy())

    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        """Copy ``weights`` (as from :meth:`get_weights`) into the model; every
        array is checked before anything is written."""
        flat, layout = self._flat_parameters()
        params = layout.views(flat)
        weights = list(weights)
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

    def summary(self, print_fn: Optional[Callable[[str], Any]] = print) -> str:
        """Print a table of layers, output shapes and parameter counts, as Keras does."""
        rows = []
        n = self.input_dim
        if self.rescaling is not None:
            rows.append((f"rescaling (x * {self.rescaling.scale:g} + {self.rescaling.offset:g})",
                         f"(None, {n if n is not None else '?'})", "0"))
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

    def predict(self, X: Any, batch_size: int = 1024) -> np.ndarray:
        """Outputs of the network for ``X`` (n, inputs), computed in chunks of ``batch_size``."""
        batch_size = check_int("batch_size", batch_size, minimum=1)
        X = self._inputs("X", X)
        cap = min(batch_size, X.n_rows)
        net = _net.Net(build_plan(self, cap))
        out = np.empty((X.n_rows, self.output_dim), self.dtype)
        return net.predict_into(X, out)

    def _inputs(self, name, X):
        """``X`` checked once as :mod:`fastsgd._inputs` reads it (building the
        model from its width on first use)."""
        scale, offset = ((1.0, 0.0) if self.rescaling is None
                         else (self.rescaling.scale, self.rescaling.offset))
        X = _inputs.prepare(name, X, self.dtype, self.input_dim if self.built else None,
                            scale=scale, offset=offset)
        if not self.built:
            self.build(X.n_features)
        return X

    def __call__(self, X):
        return self.predict(X)

    def get_config(self):
        cfg = {"dtype": self.dtype.name, "seed": self.seed,
               "layers": [layer.get_config() for layer in self.layers]}
        if self.rescaling is not None:
            cfg["rescaling"] = self.rescaling.get_config()
        return cfg

    @classmethod
    def from_config(cls, config):
        """A new, unbuilt-or-freshly-built model from :meth:`get_config`'s dict.

        The layers are built (and randomly initialised) only when the first
        layer's ``input_dim`` is given; set the weights afterwards.
        """
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        layers_cfg = config.get("layers")
        if not isinstance(layers_cfg, list) or not layers_cfg:
            raise ValueError("config['layers'] must be a non-empty list")
        layers = []
        for i, cfg in enumerate(layers_cfg):
            if not isinstance(cfg, dict):
                raise TypeError(f"config['layers'][{i}] must be a dict")
            cfg = dict(cfg)
            if i > 0:
                cfg.pop("input_dim", None)
            layers.append(Dense(**cfg))
        rescaling = config.get("rescaling")
        if rescaling is not None:
            if not isinstance(rescaling, dict):
                raise TypeError("config['rescaling'] must be a dict")
            layers.insert(0, Rescaling(**rescaling))
        return cls(layers, dtype=config.get("dtype", "float32"), seed=config.get("seed"))

    def save(self, path: Union[str, os.PathLike], optimizer: Optional[Any] = None) -> None:
        """Write architecture, dtype and weights to ``path`` (see :mod:`fastsgd.io`)."""
        _model_file.write(self, path, optimizer)

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
