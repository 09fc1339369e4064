"""The engine's layout: one flat parameter array, one typed plan.

A model's parameters live in one contiguous array of its dtype; each layer's
``weights`` and ``bias`` are views into it. The :class:`Layout` (a segment
table) says where each parameter lives. Gradients use one flat array of the
same layout, and so does each optimizer state slot, so that one optimizer
step is one streaming pass, one all-reduce or one checkpoint covers them all.

Non-trainable state (batch normalization's moving mean and variance) lives
in a second flat array with a layout of its own (:func:`layer_state`): it is
saved with the model but is never in the gradient, the optimizer's slots or
its segment table.

A :class:`NetworkPlan` adds, per layer, its kind, activation, parameter
offsets and the batch buffers for a given capacity: activations ``A`` and,
in training plans, deltas ``D``. Inference plans (predict) have no
gradients, no deltas and no cost. :class:`fastsgd._net.Net` runs a plan.

Adding a layer kind touches :func:`layer_segments` (and :func:`layer_state`)
and :func:`build_plan` here, the layer's class, one case in
``csrc/net_tmpl.h`` (with its kernel template) and its enum value in
``csrc/fsgd.h`` (its name in ``csrc/runtime.c``).
"""
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class Segment:
    """One parameter array inside the flat buffer."""

    layer: int          #: index of the layer in the model
    name: str           #: "weights" or "bias"
    offset: int         #: first element in the flat array
    shape: Tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


class Layout:
    """The segment table of a flat array: which layer's which parameter is where."""

    def __init__(self, segments: List[Segment]):
        self.segments = list(segments)
        self.size = sum(s.size for s in self.segments)
        offset = 0
        for s in self.segments:
            if s.offset != offset:
                raise ValueError("segments must be contiguous and in order")
            offset += s.size

    @classmethod
    def of(cls, shapes):
        """A layout from ``[(layer, name, shape), ...]``, packed in that order."""
        segments, offset = [], 0
        for layer, name, shape in shapes:
            seg = Segment(layer, name, offset, tuple(int(d) for d in shape))
            segments.append(seg)
            offset += seg.size
        return cls(segments)

    def views(self, flat):
        """The arrays of every segment as views into ``flat``."""
        if flat.shape != (self.size,):
            raise ValueError(f"flat array has shape {flat.shape}, layout needs ({self.size},)")
        return [flat[s.offset:s.offset + s.size].reshape(s.shape) for s in self.segments]

    def find(self, layer, name):
        for s in self.segments:
            if s.layer == layer and s.name == name:
                return s
        raise KeyError((layer, name))

    @property
    def signature(self):
        """What must match for state of one layout to serve another."""
        return tuple((s.layer, s.name, s.shape) for s in self.segments)

    def __eq__(self, other):
        return isinstance(other, Layout) and self.signature == other.signature

    def __hash__(self):
        return hash(self.signature)

    def __repr__(self):
        return f"Layout({len(self.segments)} segments, {self.size} elements)"


def layer_segments(index, layer):
    """The trainable parameters of one layer as ``(layer, name, shape)`` rows:
    a dense layer's ``weights`` and ``bias``; batch normalization's ``gamma``
    and ``beta`` (those it has); none for dropout."""
    return [(index, name, shape) for name, shape in layer.param_shapes()]


def layer_state(index, layer):
    """The non-trainable state of one layer as ``(layer, name, shape)`` rows
    (batch normalization's ``moving_mean`` and ``moving_variance``)."""
    return [(index, name, shape) for name, shape in layer.state_shapes()]


@dataclass
class LayerPlan:
    """One layer of a plan: what the compiled network needs to run it."""

    kind: str
    activation: str
    slope: float
    n_in: int
    n_out: int
    w_offset: int              #: dense: weights; batch norm: gamma (-1: none)
    b_offset: int              #: dense: bias; batch norm: beta (-1: none)
    A: np.ndarray              #: (capacity, n_out) activations
    D: Optional[np.ndarray]    #: (capacity, n_out) deltas (training plans)
    rate: float = 0.0          #: dropout
    seed: int = 0              #: dropout: the layer's key (uint64)
    momentum: float = 0.0      #: batch norm
    epsilon: float = 0.0       #: batch norm
    s_offset: int = 0          #: batch norm: moving mean, then variance, in the state array
    aux: Optional[np.ndarray] = None  #: batch norm, training plans: (3, n_out) batch statistics


@dataclass
class NetworkPlan:
    """A network ready to run on batches of up to ``capacity`` rows."""

    dtype: np.dtype
    capacity: int
    layout: Layout
    params: np.ndarray             #: the model's flat parameters (shared, not copied)
    grads: Optional[np.ndarray]    #: flat gradients (training plans)
    cost: Optional[str]            #: the cost fused with the output layer, or None
    layers: List[LayerPlan]
    input_scale: float = 1.0       #: inputs are read as x * input_scale + input_offset
    input_offset: float = 0.0
    state: Optional[np.ndarray] = None   #: the model's flat non-trainable state (shared)
    cost_param: float = 0.0              #: the Huber loss's delta

    @property
    def training(self):
        return self.grads is not None


def build_plan(model, capacity, *, cost=None, training=False, grads=None):
    """The plan of ``model`` (a built Sequential) for batches of ``capacity`` rows.

    ``training`` adds the flat gradient array (``grads`` when given, else a
    new one) and the delta buffers; ``cost`` (a name or a
    :class:`fastsgd.costs.Cost`) is the cost fused with the output layer
    (needed for training and evaluation, not for predict). Training plans run
    dropout and batch statistics; the others the identity and the moving
    statistics.
    """
    params, layout = model._flat_parameters()
    state, state_layout = model._flat_state()
    dtype = params.dtype
    if training:
        if grads is None:
            grads = np.zeros(layout.size, dtype)
        elif grads.shape != (layout.size,) or grads.dtype != dtype:
            raise ValueError("grads does not match the model's layout")
    else:
        grads = None
    cost_param = 0.0
    if cost is not None and not isinstance(cost, str):
        cost_param = float(getattr(cost, "delta", 0.0))
        cost = cost.name

    def offset(lay, i, name):
        try:
            return lay.find(i, name).offset
        except KeyError:
            return -1

    layers = []
    for i, layer in enumerate(model.layers):
        n_in, n_out = layer.input_dim, layer.units
        kind = layer.kind
        lp = LayerPlan(kind=kind, activation=getattr(layer, "activation", "linear"),
                       slope=getattr(layer, "negative_slope", 0.0), n_in=n_in, n_out=n_out,
                       w_offset=-1, b_offset=-1, A=None, D=None)
        if kind == "dense":
            lp.w_offset, lp.b_offset = offset(layout, i, "weights"), offset(layout, i, "bias")
        elif kind == "dropout":
            lp.rate, lp.seed = layer.rate, layer._key
        elif kind == "batch_normalization":
            lp.w_offset, lp.b_offset = offset(layout, i, "gamma"), offset(layout, i, "beta")
            lp.momentum, lp.epsilon = layer.momentum, layer.epsilon
            lp.s_offset = offset(state_layout, i, "moving_mean")
            if training:
                lp.aux = np.zeros((3, n_out), dtype)
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
        if kind == "dropout" and not training and i > 0:
            lp.A = layers[-1].A    # the identity: the next layer reads the previous buffer
        else:
            lp.A = np.empty((capacity, n_out), dtype)
        lp.D = np.empty((capacity, n_out), dtype) if training else None
        layers.append(lp)
    scale, offset_ = (1.0, 0.0) if model.rescaling is None else (model.rescaling.scale,
                                                                 model.rescaling.offset)
    return NetworkPlan(dtype=dtype, capacity=capacity, layout=layout, params=params,
                       grads=grads, cost=cost, layers=layers, state=state, cost_param=cost_param,
                       input_scale=scale, input_offset=offset_)
