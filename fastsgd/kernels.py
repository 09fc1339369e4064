"""Low-level kernels, for tests, benchmarks and embedding.

All functions take C-contiguous float32 or float64 arrays (one dtype per
call), validate them while holding the GIL, and run the compiled kernel with
the GIL released. Results do not depend on the thread count.

gemm(a, b, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None, a_rows=None)
    ``out = alpha * op(a) @ op(b) + beta * out`` where ``op`` transposes when
    asked, without materialising the transpose. ``a_rows`` (int64) selects
    the stored rows of ``a`` (a gathered mini-batch without a copy). With
    ``beta == 0`` the previous contents of ``out`` are not read. ``out``
    must not overlap ``a`` or ``b``; with ``out`` given nothing is allocated.
    Returns ``out``.

activation_forward(z, activation, slope=0.3)
    Applies ``activation`` in place (``softmax`` by rows, max-subtracted).

activation_backward(a, d, activation, slope=0.3)
    ``d`` (dL/dA) becomes dL/dZ in place, given the activations ``a``.

dense_forward(x, w, b, activation="linear", slope=0.3, out=None, x_rows=None)
    Fused ``f(x @ w + b)``.

dense_backward(x, w, a, d, activation="linear", slope=0.3, need_dx=True, x_rows=None)
    Fused backward pass; returns ``(dW, db, dX)``.

output_cost(z, y, cost, activation, slope=0.3)
    The output activation fused with its cost; returns
    ``(mean_loss, n_correct, dZ)`` and leaves the activations in ``z``.

gather_rows(x, rows, out=None)
    ``out[i] = x[rows[i]]``.

dense_to_csr(x, dtype="float32", scale=1.0)
    The nonzeros of a 2-D array of any real dtype the network reads (uint8 ...
    float64, any row stride) converted to ``dtype`` and scaled,
    ``(dtype)x * (dtype)scale``, as CSR arrays ``(indptr, indices, data)``
    (int64, int32 ascending within each row, ``dtype``): what the trainer
    trains a mostly-zero dense ``X`` from. Values that convert to zero are not
    stored; ValueError names the first row with a value that is NaN or
    infinite.

update(hyper, p, g, states=(), check=False)
    One optimizer step (see :mod:`fastsgd.optimizers`), all or nothing:
    returns False, with nothing written, when any new value would be NaN or
    infinite. ``check`` only tries the step.
"""
from ._ops import (  # noqa: F401
    activation_backward,
    activation_forward,
    dense_backward,
    dense_forward,
    dense_to_csr,
    gather_rows,
    gemm,
    output_cost,
    update,
)

__all__ = ["gemm", "activation_forward", "activation_backward", "dense_forward",
           "dense_backward", "output_cost", "gather_rows", "dense_to_csr", "update"]
