"""Export to ONNX: :func:`to_onnx`.

A fastsgd network becomes a standard ONNX graph of ``Gemm`` nodes, each
followed by its activation (``Relu``, ``Sigmoid``, ``Tanh``, ``Softmax``,
``PRelu`` for ``leaky_relu``; nothing for
``linear``), which any ONNX runtime executes.
It needs the ``onnx`` package (``pip install 'fastsgd[onnx]'``, which also
installs onnxruntime to run the graphs).

Inputs and outputs, named as skl2onnx names them:

* a :class:`~fastsgd.Sequential`: input ``X`` (n, inputs), output
  ``output`` (n, units of the last layer);
* an :class:`~fastsgd.MLPRegressor`: input ``X``, output ``variable``
  (n, n_outputs);
* an :class:`~fastsgd.MLPClassifier`: input ``X``, outputs ``label`` (n,)
  (the predicted class, as ``predict`` gives it: int64 for integer classes,
  double for real-valued ones, string for strings) and ``probabilities``
  (n, n_classes), as ``predict_proba``. For multilabel targets ``label`` is
  the (n, n_labels) int64 0/1 matrix.

:func:`register_skl2onnx` registers converters for the two estimators with
skl2onnx, so that ``skl2onnx.to_onnx`` and ``convert_sklearn`` handle them
inside pipelines (with skl2onnx's ``zipmap`` option for classifiers).
"""
import os

import numpy as np

from .layers import Sequential

__all__ = ["to_onnx", "register_skl2onnx", "DEFAULT_OPSET"]

#: the ai.onnx opset written unless another is asked for
DEFAULT_OPSET = 17
MIN_OPSET = 13  # Softmax over one axis (opset 13 semantics)


def _import_onnx():
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - exercised only without onnx
        raise ImportError("fastsgd.onnx.to_onnx needs the onnx package: "
                          "pip install 'fastsgd[onnx]'") from e
    return onnx


def _describe(obj):
    """``(kind, layers, extra)``: layers as (W, b, activation, slope)."""
    if isinstance(obj, Sequential):
        if not obj.built:
            raise ValueError("model has no weights yet: fit it or give the first layer input_dim")
        layers = [(layer.weights, layer.bias, layer.activation, layer.negative_slope)
                  for layer in obj.layers]
        return "model", layers, {"dtype": obj.dtype}
    est_type = type(obj).__name__
    if est_type in ("MLPClassifier", "MLPRegressor") and type(obj).__module__.startswith("fastsgd"):
        from sklearn.utils.validation import check_is_fitted
        check_is_fitted(obj)
        model = obj._network()
        layers = [(layer.weights, layer.bias, layer.activation, layer.negative_slope)
                  for layer in model.layers]
        extra = {"dtype": model.dtype, "n_features": obj.n_features_in_}
        if est_type == "MLPClassifier":
            extra.update(mode=obj._mode, classes=obj.classes_)
            return "classifier", layers, extra
        return "regressor", layers, extra
    raise TypeError(f"model must be a fastsgd.Sequential or a fitted fastsgd.MLPClassifier or "
                    f"MLPRegressor, got {type(obj).__name__}")


def _label_array(classes):
    """The classes as an array ONNX can hold: int64, float64 or str."""
    classes = np.asarray(classes)
    if classes.dtype.kind in "iub":
        return classes.astype(np.int64)
    if classes.dtype.kind == "f":
        return classes.astype(np.float64)
    if classes.dtype.kind in "US" or all(isinstance(c, str) for c in classes.tolist()):
        return np.array([str(c) for c in classes.tolist()], dtype=object)
    if all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in classes.tolist()):
        return classes.astype(np.int64)
    raise TypeError(f"cannot export class labels of type {classes.dtype} to ONNX: use integer "
                    f"or string labels")


def _build(emit, kind, layers, extra, dtype, x_name):
    """Emit the graph's nodes; returns the output names (in order)."""
    h = x_name
    for i, (W, b, act, slope) in enumerate(layers):
        w = emit.const(f"coef_{i}", np.asarray(W, dtype=dtype))
        c = emit.const(f"intercept_{i}", np.asarray(b, dtype=dtype))
        h = emit.node("Gemm", [h, w, c], f"gemm_{i}")
        if act == "relu":
            h = emit.node("Relu", [h], f"relu_{i}")
        elif act == "sigmoid":
            h = emit.node("Sigmoid", [h], f"sigmoid_{i}")
        elif act == "tanh":
            h = emit.node("Tanh", [h], f"tanh_{i}")
        elif act == "softmax":
            h = emit.node("Softmax", [h], f"softmax_{i}", axis=1)
        elif act == "leaky_relu":
            # PRelu takes the slope as a tensor of the graph's type (LeakyRelu's
            # float attribute would round a float64 slope)
            s = emit.const(f"slope_{i}", np.array([slope], dtype=dtype))
            h = emit.node("PRelu", [h, s], f"leaky_relu_{i}")
        elif act != "linear":
            raise ValueError(f"no ONNX export for activation {act!r}")
    if kind == "model":
        return [emit.output(h, "output")]
    if kind == "regressor":
        return [emit.output(h, "variable")]
    mode = extra["mode"]
    if mode == "multilabel":
        half = emit.const("half", np.array([0.5], dtype=dtype))
        above = emit.node("Greater", [h, half], "above_half")
        label = emit.node("Cast", [above], "label_int", to=emit.INT64)
        return [emit.output(label, "label"), emit.output(h, "probabilities")]
    if mode == "binary":
        one = emit.const("one", np.array([1.0], dtype=dtype))
        q = emit.node("Sub", [one, h], "negative_proba")
        probs = emit.node("Concat", [q, h], "probabilities_", axis=1)
    else:
        probs = h
    index = emit.node("ArgMax", [probs], "class_index", axis=1, keepdims=0)
    classes = emit.const("classes", _label_array(extra["classes"]))
    label = emit.node("Gather", [classes, index], "label_", axis=0)
    return [emit.output(label, "label"), emit.output(probs, "probabilities")]


class _ModelEmitter:
    """Collects nodes and initializers for a stand-alone ModelProto."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.INT64 = onnx.TensorProto.INT64
        self.nodes = []
        self.initializers = []
        self.outputs = []

    def const(self, name, array):
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, name, **attrs):
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [name], name=f"{op}_{name}",
                                                     **attrs))
        return name

    def output(self, name, final):
        if name != final:
            self.node("Identity", [name], final)
        return final


def to_onnx(model, path=None, *, dtype=None, target_opset=None, name="fastsgd"):
    """Export a network or a fitted estimator as an ONNX model.

    Parameters
    ----------
    model : Sequential, MLPClassifier or MLPRegressor
        A built :class:`~fastsgd.Sequential` or a fitted fastsgd estimator.
    path : str or path-like, optional
        Also write the model there (atomically).
    dtype : {"float32", "float64"}, optional
        Element type of the input, the weights and the arithmetic; by
        default the model's own.
    target_opset : int, optional
        The ``ai.onnx`` opset, >= 13 (default :data:`DEFAULT_OPSET`).
    name : str
        The graph's name.

    Returns
    -------
    onnx.ModelProto
        Checked with ``onnx.checker.check_model``.
    """
    onnx = _import_onnx()
    kind, layers, extra = _describe(model)
    dt = np.dtype(extra["dtype"] if dtype is None else dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    opset = DEFAULT_OPSET if target_opset is None else target_opset
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or opset < MIN_OPSET:
        raise ValueError(f"target_opset must be an integer >= {MIN_OPSET}, got {target_opset!r}")
    opset = int(opset)
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")

    helper = onnx.helper
    elem = helper.np_dtype_to_tensor_dtype(dt)
    n_in = np.shape(layers[0][0])[0]
    emit = _ModelEmitter(onnx)
    outputs = _build(emit, kind, layers, extra, dt, "X")
    n_out = np.shape(layers[-1][0])[1]
    out_info = []
    for out in outputs:
        if out == "label":
            if extra["mode"] == "multilabel":
                out_info.append(helper.make_tensor_value_info(out, onnx.TensorProto.INT64,
                                                              ["N", n_out]))
            else:
                labels = _label_array(extra["classes"])
                lt = (onnx.TensorProto.STRING if labels.dtype == object else
                      helper.np_dtype_to_tensor_dtype(labels.dtype))
                out_info.append(helper.make_tensor_value_info(out, lt, ["N"]))
        else:
            width = 2 if (out == "probabilities" and extra.get("mode") == "binary") else n_out
            out_info.append(helper.make_tensor_value_info(out, elem, ["N", width]))
    graph = helper.make_graph(emit.nodes, name,
                              [helper.make_tensor_value_info("X", elem, ["N", n_in])],
                              out_info, emit.initializers)
    opsets = [helper.make_opsetid("", opset)]
    from ._version import __version__
    m = helper.make_model(graph, opset_imports=opsets, producer_name="fastsgd",
                          producer_version=__version__,
                          doc_string=f"{kind} exported by fastsgd {__version__}")
    m.ir_version = helper.find_min_ir_version_for(opsets)
    onnx.checker.check_model(m)
    if path is not None:
        path = os.fspath(path)
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                f.write(m.SerializeToString())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return m


# -- skl2onnx ----------------------------------------------------------------
class _Skl2OnnxEmitter:
    """Adds the same nodes to a skl2onnx container."""

    def __init__(self, onnx, scope, operator, container):
        self.onnx = onnx
        self.INT64 = onnx.TensorProto.INT64
        self.scope = scope
        self.operator = operator
        self.container = container
        self.opset = container.target_opset

    def const(self, name, array):
        array = np.asarray(array)
        uname = self.scope.get_unique_variable_name(name)
        if array.dtype == object:
            kind, values = self.onnx.TensorProto.STRING, [str(v).encode() for v in array.ravel()]
        else:
            kind = self.onnx.helper.np_dtype_to_tensor_dtype(array.dtype)
            values = array.ravel().tolist()
        self.container.add_initializer(uname, kind, list(array.shape), values)
        return uname

    def node(self, op, inputs, name, **attrs):
        out = self.scope.get_unique_variable_name(name)
        self.container.add_node(op, inputs, [out], op_version=self.opset,
                                name=self.scope.get_unique_operator_name(op), **attrs)
        return out

    def output(self, name, final):
        outs = self.operator.outputs
        target = outs[1] if final == "probabilities" else outs[0]
        self.container.add_node("Identity", [name], [target.full_name], op_version=self.opset,
                                name=self.scope.get_unique_operator_name("Identity"))
        return target.full_name


def _float_type(variable):
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
    return DoubleTensorType if isinstance(variable.type, DoubleTensorType) else FloatTensorType


def _shape_classifier(operator):
    from skl2onnx.common.data_types import DoubleTensorType, Int64TensorType, StringTensorType
    est = operator.raw_operator
    n = operator.inputs[0].get_first_dimension()
    k = len(est.classes_)
    if est._mode == "multilabel":
        label = Int64TensorType([n, k])
    else:
        labels = _label_array(est.classes_)
        label = {object: StringTensorType, np.dtype(np.int64): Int64TensorType}.get(
            labels.dtype if labels.dtype != object else object, DoubleTensorType)([n])
    operator.outputs[0].set_type(label)
    operator.outputs[1].set_type(_float_type(operator.inputs[0])([n, k]))


def _shape_regressor(operator):
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].set_type(_float_type(operator.inputs[0])([n, operator.raw_operator.n_outputs_]))


def _convert(scope, operator, container):
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
    onnx = _import_onnx()
    if container.target_opset < MIN_OPSET:
        raise RuntimeError(f"fastsgd's converters need target_opset >= {MIN_OPSET}")
    kind, layers, extra = _describe(operator.raw_operator)
    emit = _Skl2OnnxEmitter(onnx, scope, operator, container)
    x = operator.inputs[0]
    dt = np.float64 if isinstance(x.type, DoubleTensorType) else np.float32
    name = x.full_name
    if not isinstance(x.type, (FloatTensorType, DoubleTensorType)):
        name = emit.node("Cast", [name], "input_as_float", to=onnx.TensorProto.FLOAT)
    _build(emit, kind, layers, extra, dt, name)


def register_skl2onnx():
    """Register converters for :class:`~fastsgd.MLPClassifier` and
    :class:`~fastsgd.MLPRegressor` with skl2onnx (call once, before
    converting).

    The graphs are those of :func:`to_onnx`; skl2onnx names the outputs
    (``label`` and ``probabilities``, with ``zipmap=False``, or
    ``output_label`` and ``output_probability``) and adds its ZipMap for
    classifiers unless the ``zipmap`` option is False.
    """
    from skl2onnx import update_registered_converter

    from .estimators import MLPClassifier, MLPRegressor
    update_registered_converter(MLPClassifier, "FastsgdMLPClassifier", _shape_classifier,
                                _convert, options={"zipmap": [True, False, "columns"], "nocl": [False]})
    update_registered_converter(MLPRegressor, "FastsgdMLPRegressor", _shape_regressor, _convert)
