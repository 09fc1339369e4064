"""Layers, initializers and the Sequential model.

A :class:`Dense` layer has ``weights`` (shape ``(inputs, units)``) and
``bias`` (shape ``(units,)``). In a :class:`Sequential` model they are views
into the model's one flat parameter array (see :mod:`fastsgd._network`),
which the compiled kernels read and update in place; assigning to them
copies into that array after checks. :class:`Dropout` has no parameters;
:class:`BatchNormalization` has ``gamma`` and ``beta`` (trainable, in the
flat parameter array) and ``moving_mean`` and ``moving_variance``
(non-trainable, in the model's flat state array). :class:`Sequential`
stacks layers and holds the dtype and the seed that fixes initialisation.
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable, List, Optional, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _core, _inputs, _model_file, _net, _ops
from ._network import Layout, build_plan, layer_segments, layer_state
from ._validate import check_bool, check_choice, check_float, check_int

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


class Layer:
    """What every layer of a :class:`Sequential` model has.

    ``param_shapes()`` and ``state_shapes()`` list the trainable parameters
    and the non-trainable state as ``(name, shape)`` in Keras's order (the
    order of :meth:`Sequential.get_weights`); the arrays are attributes of
    those names, views into the model's flat arrays once it is built.
    """

    kind = None
    #: True for layers whose output size is their input size (set at build)
    same_width = False

    def param_shapes(self):
        return []

    def state_shapes(self):
        return []

    def _bind_state(self, flat, offsets):
        """Make the state arrays views into ``flat`` at ``offsets`` (name -> offset)."""

    def _state_arrays(self):
        return []

    def parameters(self):
        return []

    def weights_list(self):
        """Keras's ``get_weights`` order for this layer: trainable, then non-trainable."""
        return self.parameters() + self._state_arrays()

    def count_params(self):
        """Parameters as Keras counts them (trainable and non-trainable)."""
        if self.input_dim is None:
            raise RuntimeError("the layer's input size is unknown until it is built")
        return sum(math.prod(shp) for _, shp in self.param_shapes() + self.state_shapes())

    def trainable_count(self):
        return sum(math.prod(shp) for _, shp in self.param_shapes())


class Dense(Layer):
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

    kind = "dense"

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

    def param_shapes(self):
        return [("weights", (self.input_dim, self.units)), ("bias", (self.units,))]

    def _bind_params(self, flat, offsets):
        self._bind(flat, offsets["weights"], offsets["bias"])

    def _backed_by(self, flat, offsets):
        store = self._store
        return (store is not None and store[0] is flat and store[1] == offsets["weights"] and
                store[2] == offsets["bias"])

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


def _check_rate(rate):
    return check_float("rate", rate, low=0.0, high=1.0, high_open=True)


class Dropout(Layer):
    """Inverted dropout: in training each unit is kept with probability
    ``1 - rate`` and scaled by ``1 / (1 - rate)``, else set to 0; in
    inference (``predict``, ``evaluate``, validation) the layer is the
    identity. Keras's layer of the same name.

    Parameters
    ----------
    rate : float
        The fraction of units dropped, in [0, 1).
    seed : int or None
        The layer's key (>= 0, < 2**64). None derives one from the model's
        seed and the layer's position, so that a model with a seed draws the
        same masks in every process (without a model seed, a random key).

    Masks come from a counter-based generator: unit ``j`` of the ``r``-th
    row of a mini-batch at training step ``t`` (the optimizer's step count,
    which runs on across epochs) is kept according to a hash of
    ``(key, t, r, j)`` only -- bit-identical for any number of threads, and
    the same after a resume from a checkpoint, which keeps the step count.
    ``r`` is the row's place in its mini-batch (the batch being the next
    rows of the epoch's order), not its place in memory.
    """

    kind = "dropout"
    same_width = True

    def __init__(self, rate, *, seed=None):
        self.rate = _check_rate(rate)
        if seed is not None:
            seed = check_int("seed", seed, minimum=0)
            if seed >= 2 ** 64:
                raise ValueError(f"seed must be < 2**64, got {seed}")
        self.seed = seed
        self.input_dim = None
        self.units = None
        self._key = None

    @property
    def built(self):
        return self.units is not None and self._key is not None

    def build(self, input_dim, dtype, rng, key=None):
        self.input_dim = self.units = check_int("input_dim", input_dim, minimum=1)
        if self.seed is not None:
            self._key = self.seed
        elif key is not None:
            self._key = int(key)
        elif self._key is None:
            self._key = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])

    def get_config(self):
        return {"rate": self.rate, "seed": self.seed}

    def __repr__(self):
        return f"Dropout({self.rate!r})"


class BatchNormalization(Layer):
    """Batch normalization with Keras's semantics and names.

    Training: each column is normalised with the mean and the biased
    variance of the mini-batch (the rows actually in it),
    ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta``, and after each
    successful training step the moving statistics follow,
    ``moving = moving * momentum + batch * (1 - momentum)``. Inference
    (``predict``, ``evaluate``, validation) uses ``moving_mean`` and
    ``moving_variance`` instead.

    ``gamma`` (initially 1) and ``beta`` (0) are trained by the optimizer as
    segments of the flat parameter array: they get no ``l1``/``l2`` penalty,
    but the optimizer's decoupled ``weight_decay`` applies to them, as Keras
    applies it to every trainable variable not excluded.
    ``moving_mean`` (0) and ``moving_variance`` (1) are non-trainable state,
    saved with the model. Keras counts all four per unit as parameters (two
    trainable, two not).

    Parameters
    ----------
    momentum : float in [0, 1)
    epsilon : float > 0
    center, scale : bool
        Whether the layer has ``beta`` and ``gamma`` (without, 0 and 1).
    """

    kind = "batch_normalization"
    same_width = True

    def __init__(self, momentum=0.99, epsilon=1e-3, center=True, scale=True):
        self.momentum = check_float("momentum", momentum, low=0.0, high=1.0, high_open=True)
        self.epsilon = check_float("epsilon", epsilon, low=0.0, low_open=True)
        self.center = check_bool("center", center)
        self.scale = check_bool("scale", scale)
        self.input_dim = None
        self.units = None
        self._arrays = {}
        self._store = None        # (flat, {name: offset}) of gamma and beta
        self._state_store = None  # (flat, {name: offset}) of the moving statistics

    @property
    def built(self):
        return self.units is not None and "moving_mean" in self._arrays

    def param_shapes(self):
        names = (["gamma"] if self.scale else []) + (["beta"] if self.center else [])
        return [(n, (self.units,)) for n in names]

    def state_shapes(self):
        return [("moving_mean", (self.units,)), ("moving_variance", (self.units,))]

    def build(self, input_dim, dtype, rng):
        self.input_dim = self.units = check_int("input_dim", input_dim, minimum=1)
        n = self.units
        flat = np.zeros(2 * n, dtype)
        offsets, off = {}, 0
        for name, _ in self.param_shapes():
            offsets[name] = off
            off += n
        if self.scale:
            flat[offsets["gamma"]:offsets["gamma"] + n] = 1.0
        self._bind_params(flat, offsets)
        state = np.zeros(2 * n, dtype)
        state[n:] = 1.0
        self._bind_state(state, {"moving_mean": 0, "moving_variance": n})

    def _bind_params(self, flat, offsets):
        n = self.units
        for name, _ in self.param_shapes():
            self._arrays[name] = flat[offsets[name]:offsets[name] + n]
        self._store = (flat, dict(offsets))

    def _bind_state(self, flat, offsets):
        n = self.units
        for name in ("moving_mean", "moving_variance"):
            self._arrays[name] = flat[offsets[name]:offsets[name] + n]
        self._state_store = (flat, dict(offsets))

    def _backed_by(self, flat, offsets):
        return self._store is not None and self._store[0] is flat and self._store[1] == offsets

    def _state_backed_by(self, flat, offsets):
        st = self._state_store
        return st is not None and st[0] is flat and st[1] == offsets

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._store is not None:
            self._bind_params(*self._store)
        if self._state_store is not None:
            self._bind_state(*self._state_store)

    def _get(self, name):
        if not self.built:
            raise RuntimeError("the layer is not built yet; build or fit the model first")
        return self._arrays.get(name)

    def _set(self, name, value):
        buf = self._get(name)
        if buf is None:
            raise AttributeError(f"this BatchNormalization has no {name} "
                                 f"({'scale' if name == 'gamma' else 'center'}=False)")
        if name == "moving_variance":
            value = np.asarray(value)
            if value.dtype.kind in "fiu" and (value < 0).any():
                raise ValueError("moving_variance must not be negative")
        Dense._assign(name, buf, value)

    gamma = property(lambda self: self._get("gamma"), lambda self, v: self._set("gamma", v),
                     doc="The scale, shape ``(units,)`` (None with scale=False).")
    beta = property(lambda self: self._get("beta"), lambda self, v: self._set("beta", v),
                    doc="The offset, shape ``(units,)`` (None with center=False).")
    moving_mean = property(lambda self: self._get("moving_mean"),
                           lambda self, v: self._set("moving_mean", v),
                           doc="The moving mean, shape ``(units,)`` (non-trainable).")
    moving_variance = property(lambda self: self._get("moving_variance"),
                               lambda self, v: self._set("moving_variance", v),
                               doc="The moving variance, shape ``(units,)`` (non-trainable).")

    def parameters(self):
        """The trainable arrays: ``[gamma, beta]`` (those the layer has)."""
        return [self._arrays[name] for name, _ in self.param_shapes()]

    def _state_arrays(self):
        return [self._arrays["moving_mean"], self._arrays["moving_variance"]]

    def get_config(self):
        return {"momentum": self.momentum, "epsilon": self.epsilon, "center": self.center,
                "scale": self.scale}

    def __repr__(self):
        return f"BatchNormalization(momentum={self.momentum!r}, epsilon={self.epsilon!r})"


#: layer class name -> class (the model file's and get_config's "class" field)
LAYERS = {"Dense": Dense, "Dropout": Dropout, "BatchNormalization": BatchNormalization}


class Sequential:
    """A stack of layers: :class:`Dense`, :class:`Dropout`, :class:`BatchNormalization`.

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

    def __init__(self, layers: Union[Layer, Sequence[Union[Layer, Rescaling]]], *,
                 dtype: DTypeLike = "float32", seed: Optional[int] = None) -> None:
        if isinstance(layers, Layer):
            layers = [layers]
        try:
            layers = list(layers)
        except TypeError:
            raise TypeError(f"layers must be a list of layers, got {type(layers).__name__}") from None
        #: the input scaling (a leading Rescaling layer), or None
        self.rescaling = None
        if layers and isinstance(layers[0], Rescaling):
            self.rescaling = layers.pop(0)
        if not layers:
            raise ValueError("layers must hold at least one Dense layer")
        for i, layer in enumerate(layers):
            if isinstance(layer, Rescaling):
                raise ValueError("Rescaling may only stand first in a Sequential")
            if not isinstance(layer, tuple(LAYERS.values())):
                raise TypeError(f"layers[{i}] must be a fastsgd.Dense, Dropout or "
                                f"BatchNormalization, got {type(layer).__name__}")
        if not isinstance(layers[-1], Dense):
            raise ValueError(f"the last layer must be a Dense layer (the output), got "
                             f"{type(layers[-1]).__name__}")
        if len({id(layer) for layer in layers}) != len(layers):
            raise ValueError("the same layer object appears twice in layers")
        self.layers = layers
        self.dtype = _float_dtype(dtype)
        if seed is not None:
            seed = check_int("seed", seed, minimum=0)
        self.seed = seed
        self.stop_training = False
        self._flat = None     # the flat parameter array (see _flat_parameters)
        self._layout = None
        self._state = None    # the flat non-trainable state (see _flat_state)
        self._state_layout = None
        width = None  # the width flowing into layers[i], where known
        for i, layer in enumerate(layers):
            given = layer.input_dim
            if i > 0 and given is not None and width is not None and given != width:
                raise ValueError(f"layers[{i}] has input_dim={given} but layers[{i-1}] has "
                                 f"{width} units")
            if isinstance(layer, Dense):
                width = layer.units
            elif given is not None:
                width = given
        for layer in layers:  # leading Dropout/BatchNormalization keep the input's width
            if layer.input_dim is not None:
                self.build(layer.input_dim)
                break
            if isinstance(layer, Dense):
                break

    def _dropout_key(self, index):
        """The key of a Dropout layer without a seed: from the model's seed and its place."""
        if self.seed is None:
            return None
        ss = np.random.SeedSequence([self.seed, 0x5EED_D409, index])
        return int(ss.generate_state(1, np.uint64)[0])

    def build(self, input_dim: int) -> None:
        """Initialise the layers that have no weights yet for inputs of
        ``input_dim`` features, and pack every layer's parameters into the
        model's flat array (and the state into the flat state array). Layers
        built before (reused from another model) keep their weights."""
        input_dim = check_int("input_dim", input_dim, minimum=1)
        rng = np.random.default_rng(self.seed)
        n = input_dim
        for i, layer in enumerate(self.layers):
            if not layer.built:
                if isinstance(layer, Dropout):
                    layer.build(n, self.dtype, rng, key=self._dropout_key(i))
                else:
                    layer.build(n, self.dtype, rng)
            elif layer.input_dim != n:
                raise ValueError(f"layers[{i}] was built for {layer.input_dim} inputs but "
                                 f"receives {n}")
            n = layer.units
        self._flat_parameters()
        self._flat_state()

    @property
    def built(self):
        return all(layer.built for layer in self.layers)

    def _flat_parameters(self):
        """``(flat, layout)``: the model's trainable parameters as one contiguous array.

        Every layer's parameters (``weights`` and ``bias``, ``gamma`` and
        ``beta``) are views into ``flat`` at the layout's offsets. When a layer
        was rebound elsewhere (a layer shared with another model that trained
        since), the values are packed again into a new array of the model's
        dtype; nothing is re-initialised.
        """
        return self._pack(layer_segments, "_flat", "_layout", "parameters", "_backed_by",
                          "_bind_params")

    def _flat_state(self):
        """``(flat, layout)``: the model's non-trainable state (batch
        normalization's moving statistics) as one contiguous array, packed
        like :meth:`_flat_parameters`; never stepped by an optimizer."""
        return self._pack(layer_state, "_state", "_state_layout", "_state_arrays",
                          "_state_backed_by", "_bind_state")

    def _pack(self, rows_of, flat_attr, layout_attr, arrays, backed_by, bind):
        if not self.built:
            raise RuntimeError("the model has no weights yet: give the first layer input_dim "
                               "or fit it")
        layout = Layout.of(row for i, layer in enumerate(self.layers)
                           for row in rows_of(i, layer))
        owners = [(i, layer, {s.name: s.offset for s in layout.segments if s.layer == i})
                  for i, layer in enumerate(self.layers)]
        owners = [o for o in owners if o[2]]
        flat = getattr(self, flat_attr)
        if (flat is None or layout != getattr(self, layout_attr) or flat.dtype != self.dtype or
                not all(getattr(layer, backed_by)(flat, offs) for _, layer, offs in owners)):
            flat = np.empty(layout.size, self.dtype)
            views = iter(layout.views(flat))
            for _, layer, _ in owners:
                for arr in getattr(layer, arrays)():
                    next(views)[...] = arr
            for _, layer, offs in owners:
                getattr(layer, bind)(flat, offs)
            setattr(self, flat_attr, flat)
            setattr(self, layout_attr, layout)
        return flat, layout

    @property
    def input_dim(self) -> Optional[int]:
        return self.layers[0].input_dim

    @property
    def output_dim(self) -> int:
        return self.layers[-1].units

    def parameters(self):
        """Every trainable array, in layer order: ``[W0, b0, W1, b1, ...]`` (and a
        batch normalization's ``gamma``, ``beta``), as the optimizer sees them."""
        return [p for layer in self.layers for p in layer.parameters()]

    def get_weights(self) -> List[np.ndarray]:
        """Copies of every array in Keras's order: per layer, a Dense layer's
        weights and bias, a BatchNormalization's gamma, beta, moving_mean and
        moving_variance (Dropout has none)."""
        flat, layout = self._flat_parameters()
        state, state_layout = self._flat_state()
        params = iter(layout.views(flat.copy()))
        states = iter(state_layout.views(state.copy()))
        out = []
        for layer in self.layers:
            out += [next(params) for _ in layer.param_shapes()]
            out += [next(states) for _ in layer.state_shapes()]
        return out

    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        """Copy ``weights`` (as from :meth:`get_weights`) into the model; every
        array is checked before anything is written."""
        self._flat_parameters()
        self._flat_state()
        targets = [a for layer in self.layers for a in layer.weights_list()]
        try:
            weights = list(weights)
        except TypeError:
            raise TypeError(f"weights must be a list of arrays, got {type(weights).__name__}") from None
        if len(weights) != len(targets):
            raise ValueError(f"expected {len(targets)} arrays, got {len(weights)}")
        checked = [_check_param_array(f"weights[{i}]", w, p.shape, p.dtype)
                   for i, (w, p) in enumerate(zip(weights, targets))]
        k = 0
        for layer in self.layers:
            k += len(layer.param_shapes())
            if layer.state_shapes() and (checked[k + 1] < 0).any():
                raise ValueError(f"weights[{k + 1}] (a moving_variance) must not be negative")
            k += len(layer.state_shapes())
        for p, w in zip(targets, checked):
            p[...] = w

    def _widths(self):
        """Per layer ``(inputs, units)``, None where unknown."""
        n = self.input_dim
        out = []
        for layer in self.layers:
            units = layer.units if isinstance(layer, Dense) else n
            out.append((n, units))
            n = units
        return out

    @staticmethod
    def _counts(layer, n_in, units):
        """(trainable, non-trainable) parameters of ``layer`` on ``n_in`` inputs."""
        if isinstance(layer, Dense):
            return n_in * units + units, 0
        if isinstance(layer, BatchNormalization):
            return (int(layer.center) + int(layer.scale)) * units, 2 * units
        return 0, 0

    def count_params(self):
        """Every parameter, as Keras counts them: trainable and non-trainable
        (a BatchNormalization has 4 per unit, 2 of each)."""
        if self.input_dim is None:
            raise RuntimeError("give the first layer an input_dim (or fit the model) to count parameters")
        return sum(sum(self._counts(layer, n, u)) for layer, (n, u) in
                   zip(self.layers, self._widths()))

    def summary(self, print_fn: Optional[Callable[[str], Any]] = print) -> str:
        """Print a table of layers, output shapes and parameter counts, as Keras
        does, with the trainable and non-trainable totals (a BatchNormalization
        counts 4 per unit: gamma and beta trainable, its moving mean and
        variance not)."""
        rows = []
        trainable = fixed = 0
        if self.rescaling is not None:
            rows.append((f"rescaling (x * {self.rescaling.scale:g} + {self.rescaling.offset:g})",
                         f"(None, {self.input_dim if self.input_dim is not None else '?'})", "0"))
        for i, (layer, (n, u)) in enumerate(zip(self.layers, self._widths())):
            if isinstance(layer, Dense):
                name = f"dense_{i} (Dense, {layer.activation})"
            elif isinstance(layer, Dropout):
                name = f"dropout_{i} (Dropout, rate {layer.rate:g})"
            else:
                name = f"batch_normalization_{i} (BatchNormalization)"
            if n is None:
                params = "?"
            else:
                t, f = self._counts(layer, n, u)
                trainable += t
                fixed += f
                params = f"{t + f:,}"
            rows.append((name, f"(None, {u if u is not None else '?'})", params))
        w = [max(len(r[k]) for r in rows + [("Layer (type)", "Output Shape", "Param #")]) + 2
             for k in range(3)]
        line = "=" * sum(w)
        out = [f"Model: Sequential ({self.dtype.name})", line,
               "Layer (type)".ljust(w[0]) + "Output Shape".ljust(w[1]) + "Param #".rjust(w[2]), line]
        for r in rows:
            out.append(r[0].ljust(w[0]) + r[1].ljust(w[1]) + r[2].rjust(w[2]))
        out.append(line)
        known = self.input_dim is not None
        out.append(f"Total params: {self.count_params():,}" if known else "Total params: ?")
        if known:
            out.append(f"Trainable params: {trainable:,}")
            out.append(f"Non-trainable params: {fixed:,}")
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
               "layers": [layer_config(layer) for layer in self.layers]}
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
            name = cfg.pop("class", "Dense")
            if name not in LAYERS:
                raise ValueError(f"config['layers'][{i}] has an unknown class {name!r}; valid: "
                                 f"{', '.join(LAYERS)}")
            if i > 0:
                cfg.pop("input_dim", None)
            layers.append(LAYERS[name](**cfg))
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


def layer_config(layer):
    """``{"class": ..., **layer.get_config()}``: what rebuilds the layer."""
    return {"class": type(layer).__name__, **layer.get_config()}


def _float_dtype(dtype):
    """numpy float32 or float64 from a name or dtype-like; ValueError otherwise."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    return dt
