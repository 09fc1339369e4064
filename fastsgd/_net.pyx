# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled network on a plan (see :mod:`fastsgd._network`) and the
optimizer step over flat arrays.

:class:`Update` holds one optimizer step: the flat parameters, gradients and
state slots, the segment table and the rule's settings. :class:`Net` holds a
network plan's pointers and runs forward, cost, backward (and, fused, the
update) on mini-batches of the data bound to it, with the GIL released.
"""
import numbers

import numpy as np

cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy

from fastsgd cimport _core
from fastsgd._config cimport num_threads
from fastsgd._core cimport (FSGD_COST_CROSS_ENTROPY, FSGD_COST_HUBER, FSGD_MAX_SLOTS,
                            FSGD_OPT_ADAGRAD, FSGD_OPT_ADAM, FSGD_OPT_RMSPROP, FSGD_OPT_SGD,
                            fsgd_csr, fsgd_layer, fsgd_net, fsgd_opt, fsgd_segment,
                            fsgd_step_bounds, fsgd_tuner,
                            fsgd_update_plan)
from fastsgd._core import ACTIVATIONS, COSTS, LAYER_KINDS, OPTIMIZERS
from fastsgd._checks import code, real, require, require_disjoint, require_index
from fastsgd._inputs import prepare

cnp.import_array()


cdef inline void *_ptr(object a):
    return cnp.PyArray_DATA(a) if a is not None else NULL


#: the largest step number the bias correction takes (beta ** step is 0 far below it)
MAX_STEP = 2 ** 62


cdef tuple _slots_used(const fsgd_opt *o):
    """The state slots the configured rule reads and writes."""
    used = []
    if o.kind == FSGD_OPT_SGD:
        used = [0] if o.momentum > 0 else []
    elif o.kind == FSGD_OPT_ADAGRAD:
        used = [0]
    elif o.kind == FSGD_OPT_RMSPROP:
        used = [0] + ([1] if o.momentum > 0 else []) + ([2] if o.centered else [])
    elif o.kind == FSGD_OPT_ADAM:
        used = [0, 1, 2] if o.amsgrad else [0, 1]
    return tuple(used)


def _flat_array(a, name, dtype=None, size=None, writeable=False):
    require(a, name, dtype=dtype, ndim=1, writeable=writeable)
    if size is not None and a.shape[0] != size:
        raise ValueError(f"{name} has {a.shape[0]} elements, expected {size}")
    return a


cdef class Update:
    """One optimizer step over flat arrays.

    Parameters
    ----------
    params : ndarray (n,)
        The flat parameters, stepped in place.
    grads : ndarray (n,)
        The flat gradients (same dtype).
    slots : list of ndarray (n,) or None
        Up to three optimizer state slots (see csrc/fsgd.h for each rule's).
    segments : list of (offset, size, l1, l2, decay)
        The segment table: which ranges are stepped, with their penalties.

    An SGD or Adam step may skip reading the parameters and state in its
    check pass, bounding the new values by the largest magnitudes the last
    step wrote (csrc/optim_tmpl.h, the screen). Those bounds hold only while
    nothing else writes ``params`` or the slots: :meth:`configure` forgets
    them, and so must :meth:`forget_bounds` after any other write.
    """
    cdef fsgd_update_plan plan
    cdef fsgd_segment *segs
    cdef fsgd_step_bounds *bounds
    cdef fsgd_opt opt
    cdef readonly bint f64
    cdef bint configured
    cdef object keep

    def __cinit__(self, params, grads, slots, segments):
        _flat_array(params, "params", writeable=True)
        n = params.shape[0]
        _flat_array(grads, "grads", dtype=params.dtype, size=n)
        try:
            slots = list(slots)
        except TypeError:
            raise TypeError(f"slots must be a list of arrays, got {type(slots).__name__}") from None
        if len(slots) > FSGD_MAX_SLOTS:
            raise ValueError(f"at most {FSGD_MAX_SLOTS} state slots, got {len(slots)}")
        segments = list(segments)
        self.segs = <fsgd_segment *>calloc(max(len(segments), 1), sizeof(fsgd_segment))
        self.bounds = <fsgd_step_bounds *>calloc(1, sizeof(fsgd_step_bounds))
        if self.segs == NULL or self.bounds == NULL:
            raise MemoryError()
        end = 0
        for k, (offset, size, l1, l2, decay) in enumerate(segments):
            if offset < end or size < 0 or offset + size > n:
                raise ValueError(f"segment {k} ({offset}, {size}) is outside [{end}, {n}) or "
                                 f"out of order")
            end = offset + size
            self.segs[k].offset = offset
            self.segs[k].size = size
            self.segs[k].l1 = l1
            self.segs[k].l2 = l2
            self.segs[k].decay = 1 if decay else 0
        self.plan.size = n
        self.plan.n_segments = len(segments)
        self.plan.segments = self.segs
        self.plan.params = _ptr(params)
        self.plan.grads = _ptr(grads)
        self.plan.bounds = self.bounds
        for k in range(FSGD_MAX_SLOTS):
            s = slots[k] if k < len(slots) else None
            if s is not None:
                _flat_array(s, f"slots[{k}]", dtype=params.dtype, size=n, writeable=True)
            self.plan.slots[k] = _ptr(s)
        # the kernel's pointers are restrict-qualified: no two arrays may overlap
        require_disjoint(grads, "grads", params=params)
        for k, s in enumerate(slots):
            if s is not None:
                require_disjoint(s, f"slots[{k}]", params=params, grads=grads,
                                 **{f"slots[{j}]": slots[j] for j in range(k)})
        self.f64 = params.dtype == np.float64
        self.keep = (params, grads, slots)
        self.opt.step = 1

    def __dealloc__(self):
        free(self.segs)
        free(self.bounds)

    def forget_bounds(self):
        """The parameters or the optimizer's slots were written other than by a
        step: the next step checks every new value again."""
        self.bounds.valid = 0

    def configure(self, dict hyper, slots_name="slots"):
        """Take the rule and its settings (``kind``, ``lr``, ``momentum``, ...).

        Every setting is checked (TypeError/ValueError naming it), and so is
        that the rule's state slots were given (``slots_name`` is what the
        error calls them).
        """
        cdef fsgd_opt o
        o.kind = code("kind", hyper.get("kind", "sgd"), OPTIMIZERS, "optimizer rule")
        o.lr = real("lr", hyper.get("lr", 0.01))
        o.momentum = real("momentum", hyper.get("momentum", 0.0))
        o.nesterov = bool(hyper.get("nesterov", False))
        o.beta_1 = real("beta_1", hyper.get("beta_1", 0.9))
        o.beta_2 = real("beta_2", hyper.get("beta_2", 0.999))
        o.rho = real("rho", hyper.get("rho", 0.9))
        o.epsilon = real("epsilon", hyper.get("epsilon", 1e-7))
        o.amsgrad = bool(hyper.get("amsgrad", False))
        o.centered = bool(hyper.get("centered", False))
        o.weight_decay = real("weight_decay", hyper.get("weight_decay", 0.0))
        step = hyper.get("step", self.opt.step)
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Integral):
            raise TypeError(f"step must be an integer, got {step!r}")
        if not 1 <= step <= MAX_STEP:
            raise ValueError(f"step must be >= 1 and <= 2**62, got {step}")
        o.step = step
        for key in ("l1", "l2"):
            if key in hyper:
                real(key, hyper[key])
        missing = [k for k in _slots_used(&o) if self.plan.slots[k] == NULL]
        if missing:
            raise ValueError(f"{slots_name}: the {hyper.get('kind', 'sgd')} rule with these "
                             f"settings uses state slots {list(_slots_used(&o))}; "
                             f"{', '.join(f'{slots_name}[{k}]' for k in missing)} not given")
        self.opt = o
        self.configured = True
        self.bounds.valid = 0

    @property
    def lr(self):
        return self.opt.lr

    @lr.setter
    def lr(self, double value):
        self.opt.lr = value

    @property
    def step(self):
        """The 1-based number of the next step (bias correction)."""
        return self.opt.step

    @step.setter
    def step(self, int64_t value):
        self.opt.step = value

    cdef int _check_ready(self) except -1:
        if not self.configured:
            raise RuntimeError("configure() the optimizer rule first")
        return 0

    def run(self):
        """Take one step. Returns True (stepped; ``step`` advances) or False
        (refused: some new value would not be finite; nothing written)."""
        self._check_ready()
        cdef int st
        cdef int nt = num_threads()
        with nogil:
            st = _core.update(nt, &self.opt, &self.plan, self.f64)
        if st == _core.FSGD_ERR_NONFINITE:
            return False
        _core.check_status(st)
        self.opt.step += 1
        return True


cdef object _column_work(indptr, indices, int64_t n_in):
    """Prefix sums (n_in + 1, from 0) of an estimate of each input column's share
    of a training step's work on sparse input: the nonzeros in it of up to 2048
    evenly spaced rows, plus a share for the column's own row of W. A training
    step's team splits the first layer's columns between its threads by them
    (csrc/sparse_tmpl.h, "Panels"); they never change a result."""
    cum = np.zeros(n_in + 1, np.int64)
    cdef int64_t[::1] c = cum
    cdef const int64_t[::1] ip = indptr
    cdef const int32_t[::1] ix = indices
    cdef int64_t n = ip.shape[0] - 1, m = ix.shape[0]
    cdef int64_t s = n if n < 2048 else 2048
    cdef int64_t i, r, k, k0, k1, j, total = 0, extra
    with nogil:
        for i in range(s):
            r = i * n // s
            k0 = ip[r] if ip[r] > 0 else 0
            k1 = ip[r + 1] if ip[r + 1] < m else m
            for k in range(k0, k1):
                j = ix[k]
                if 0 <= j < n_in:
                    c[j + 1] += 1
                    total += 1
        extra = total // (8 * n_in) + 1
        for j in range(n_in):
            c[j + 1] += c[j] + extra
    return cum


cdef class Net:
    """A network plan's compiled form: pointers to its flat parameters (and
    gradients), its layers and batch buffers. Built from a
    :class:`fastsgd._network.NetworkPlan`, whose arrays it keeps alive.

    Dropout masks are drawn for ``seed_step``: with an optimizer step
    attached, each fused training batch sets it to the number of steps taken
    before it (the optimizer's ``iterations``), so masks follow the step
    count, which checkpoints keep; otherwise it is what was last set."""
    cdef fsgd_net net
    cdef fsgd_layer *layers
    cdef Update update
    cdef readonly bint f64
    cdef readonly object plan
    cdef readonly object inputs   # the bound Inputs (see fastsgd._inputs)
    cdef object X                 # what the kernels read: the data, or the batch buffer
    cdef object Xb                # the batch buffer (converted and row-fetched inputs)
    cdef object y_int
    cdef object y_float
    cdef readonly object sample_weight   # our own copy, or None
    cdef object order
    cdef bint ordered
    cdef int64_t ldx              # row stride of the bound data, in elements
    cdef int64_t n_bound
    cdef fsgd_csr csr
    cdef object col_cum           # the csr's col_cum (see _column_work)

    def __cinit__(self, plan):
        n = len(plan.layers)
        if n < 1:
            raise ValueError("a network needs at least one layer")
        self.f64 = plan.dtype == np.float64
        _flat_array(plan.params, "plan.params", writeable=True)
        if plan.grads is not None:
            _flat_array(plan.grads, "plan.grads", dtype=plan.dtype, size=plan.params.shape[0],
                        writeable=True)
        self.layers = <fsgd_layer *>calloc(n, sizeof(fsgd_layer))
        if self.layers == NULL:
            raise MemoryError()
        cap = plan.capacity
        state = getattr(plan, "state", None)
        if state is not None:
            _flat_array(state, "plan.state", dtype=plan.dtype, writeable=True)
        for i, lp in enumerate(plan.layers):
            shape = (cap, lp.n_out)
            for key, buf in (("A", lp.A), ("D", lp.D)):
                if buf is None and key == "D" and plan.grads is None:
                    continue
                require(buf, f"layers[{i}].{key}", dtype=plan.dtype, ndim=2, writeable=True)
                if buf.shape != shape:
                    raise ValueError(f"layers[{i}].{key} has shape {buf.shape}, expected {shape}")
            self.layers[i].kind = code("kind", lp.kind, LAYER_KINDS, "layer kind")
            self.layers[i].act = code("activation", lp.activation, ACTIVATIONS, "activation")
            self.layers[i].slope = lp.slope
            self.layers[i].n_in = lp.n_in
            self.layers[i].n_out = lp.n_out
            self.layers[i].w_offset = lp.w_offset
            self.layers[i].b_offset = lp.b_offset
            self.layers[i].A = _ptr(lp.A)
            self.layers[i].D = _ptr(lp.D) if plan.grads is not None else NULL
            self.layers[i].rate = getattr(lp, "rate", 0.0)
            self.layers[i].seed = <uint64_t>getattr(lp, "seed", 0)
            self.layers[i].momentum = getattr(lp, "momentum", 0.0)
            self.layers[i].epsilon = getattr(lp, "epsilon", 0.0)
            self.layers[i].s_offset = getattr(lp, "s_offset", 0)
            aux = getattr(lp, "aux", None)
            if aux is not None:
                require(aux, f"layers[{i}].aux", dtype=plan.dtype, ndim=2, writeable=True)
                if aux.shape != (3, lp.n_out):
                    raise ValueError(f"layers[{i}].aux has shape {aux.shape}, expected "
                                     f"{(3, lp.n_out)}")
            self.layers[i].aux = _ptr(aux)
        self.net.n_layers = n
        self.net.layers = self.layers
        self.net.capacity = cap
        self.net.n_params = plan.params.shape[0]
        self.net.params = _ptr(plan.params)
        self.net.grads = _ptr(plan.grads)
        self.net.cost = -1 if plan.cost is None else code("cost", plan.cost, COSTS, "cost")
        self.net.nthreads = num_threads()
        self.net.cost_param = getattr(plan, "cost_param", 0.0)
        if self.net.cost == FSGD_COST_HUBER and not 0.0 < self.net.cost_param < float("inf"):
            raise ValueError(f"the huber cost needs delta > 0, got {self.net.cost_param}")
        self.net.n_state = 0 if state is None else state.shape[0]
        self.net.state = _ptr(state)
        self.net.seed_step = 0
        self.net.seed_row0 = 0
        self.net.tuner = <fsgd_tuner *>calloc(1, sizeof(fsgd_tuner))
        if self.net.tuner == NULL:
            raise MemoryError()
        _core.check_status(_core.net_check(&self.net))
        self.plan = plan

    def __dealloc__(self):
        free(self.layers)
        free(self.net.tuner)

    def team_state(self):
        """The adaptive team's state (bytes), for :meth:`set_team_state` of the
        next network a trainer builds."""
        return (<char *>self.net.tuner)[:sizeof(fsgd_tuner)]

    def set_team_state(self, bytes state):
        """Carry on from a state :meth:`team_state` returned (ignored unless it
        is one)."""
        if len(state) == sizeof(fsgd_tuner):
            memcpy(self.net.tuner, <const char *>state, sizeof(fsgd_tuner))

    @property
    def team(self):
        """How the training calls chose their team (see fsgd_tuner in fsgd.h):
        ``threads`` (the count measured for), ``single`` (one thread is the
        current choice), ``calls`` timed, ``probes`` (tries with the full team
        and with one thread), the recent ``seconds_per_row`` of each, and
        ``panel_calls``: the calls whose sparse first layer the team split by
        input columns (csrc/sparse_tmpl.h, "Panels")."""
        cdef fsgd_tuner *t = self.net.tuner
        return {"threads": t.nthreads, "single": bool(t.single), "calls": t.calls,
                "probes": (t.probes[0], t.probes[1]),
                "seconds_per_row": (t.per_row[0] if t.seen[0] else None,
                                    t.per_row[1] if t.seen[1] else None),
                "panel_calls": t.panel_calls}

    def _replay_team(self, int nt, double seconds_full, double seconds_single, int64_t rows):
        """One training call replayed with given timings (tests of the team's
        policy): returns the team it would have used."""
        return _core.tuner_replay(self.net.tuner, nt, seconds_full, seconds_single, rows)

    def set_threads(self, int n):
        self.net.nthreads = n if n > 0 else 1

    @property
    def seed_step(self):
        """The training step dropout masks are drawn for (see the class)."""
        return self.net.seed_step

    @seed_step.setter
    def seed_step(self, value):
        if not 0 <= value < 2 ** 64:
            raise ValueError(f"seed_step must lie in [0, 2**64), got {value}")
        self.net.seed_step = value

    @property
    def seed_row0(self):
        """The mini-batch row that row 0 of the next calls is, for dropout masks (0; a
        data-parallel rank sets where its slice starts in the batch)."""
        return self.net.seed_row0

    @seed_row0.setter
    def seed_row0(self, int64_t value):
        if value < 0:
            raise ValueError(f"seed_row0 must be >= 0, got {value}")
        self.net.seed_row0 = value

    def set_update(self, Update update):
        """Attach the optimizer step the fused train_batch takes."""
        if self.net.grads == NULL:
            raise ValueError("an inference plan has no gradients to step")
        if (update.plan.params != self.net.params or update.plan.grads != self.net.grads or
                update.plan.size != self.net.n_params):
            raise ValueError("the update is not over this network's flat arrays")
        self.update = update

    # ---- data ---------------------------------------------------------------------
    def bind(self, X, y=None, sample_weight=None):
        """Point the next batches at ``X`` (and targets ``y``), checked once.

        ``X`` is anything :func:`fastsgd._inputs.prepare` takes (or its
        result): arrays of the network's dtype are read in place, others are
        converted batch by batch, sparse matrices feed the first layer's
        nonzeros. Integer labels are copied (the network reads its own copy);
        float targets and X are read in place and must stay unchanged while
        bound. ``sample_weight`` (n,), finite and non-negative, makes each
        batch's cost the weighted mean (copied).
        """
        cdef int64_t n_in = self.layers[0].n_in
        inputs = prepare("X", X, self.plan.dtype, n_in, scale=self.plan.input_scale,
                         offset=self.plan.input_offset)
        cdef int64_t n_out = self.layers[self.net.n_layers - 1].n_out
        cdef int64_t n = inputs.n_rows
        self.y_int = self.y_float = None
        if y is not None:
            if not isinstance(y, np.ndarray):
                raise TypeError("y must be a numpy array")
            if y.dtype == np.int64:
                if y.shape != (n,):
                    raise ValueError("integer targets must be a vector, one per row of X")
                if self.net.cost == FSGD_COST_CROSS_ENTROPY and y.size and (
                        y.min() < 0 or y.max() >= n_out):
                    raise ValueError(f"class labels must lie in [0, {n_out})")
                self.y_int = np.array(y, dtype=np.int64, order="C")
            else:
                require(y, "y", dtype=self.plan.dtype, ndim=2)
                if y.shape != (n, n_out):
                    raise ValueError(f"y must have shape {(n, n_out)}")
                self.y_float = y
        self.sample_weight = None
        if sample_weight is not None:
            w = np.array(sample_weight, dtype=self.plan.dtype, order="C", copy=True)
            if w.shape != (n,):
                raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}")
            if not np.isfinite(w).all() or (w < 0).any():
                raise ValueError("sample_weight must hold finite, non-negative numbers")
            self.sample_weight = w
        self.inputs = inputs
        self.net.x_csr = NULL
        if inputs.mode == "direct":
            self.X = inputs.data
            self.ldx = n_in
        elif inputs.mode == "csr":
            if self.layers[0].kind != _core.FSGD_LAYER_DENSE:
                raise ValueError("sparse input needs a Dense first layer (it reads the "
                                 "nonzeros); densify X or put the Dense layer first")
            indptr, indices, data = inputs.csr
            self.X = None
            self.csr.n_rows = n
            self.csr.indptr = <const int64_t *>_ptr(indptr)
            self.csr.indices = <const int32_t *>_ptr(indices)
            self.csr.data = _ptr(data)
            # only a training step splits its columns between threads (prediction binds
            # its data too, and has no use for the estimate)
            self.col_cum = (_column_work(indptr, indices, n_in) if self.net.grads != NULL
                            else None)
            self.csr.col_cum = <const int64_t *>_ptr(self.col_cum)
            self.net.x_csr = &self.csr
        else:
            if self.Xb is None:
                self.Xb = np.empty((self.net.capacity, n_in), self.plan.dtype)
            self.X = self.Xb
            if inputs.mode == "convert":
                self.ldx = inputs.data.strides[0] // inputs.data.itemsize
        self.n_bound = n
        if self.order is None or self.order.shape[0] != n:
            self.order = np.arange(n, dtype=np.int64)
        else:
            self.order[...] = np.arange(n, dtype=np.int64)
        self.ordered = self.net.x_csr != NULL  # sparse input always reads through the rows

    def set_order(self, perm):
        """Read the bound rows in the order ``perm`` (a permutation, copied),
        or in data order when None."""
        if self.inputs is None:
            raise RuntimeError("bind() data first")
        if perm is None:
            self.order[...] = np.arange(self.n_bound, dtype=np.int64)
            self.ordered = self.net.x_csr != NULL
            return
        require_index(perm, self.n_bound, "perm")
        if perm.shape[0] != self.n_bound:
            raise ValueError("perm must index every row once")
        self.order[...] = perm
        self.ordered = True

    # ---- batches -------------------------------------------------------------------
    cdef int _run(self, floating *tag, int mode, int64_t n, const void *x, int64_t ldx,
                  const int64_t *x_rows, const int64_t *yi, const void *yf,
                  const int64_t *y_rows, double *loss, int64_t *correct) noexcept nogil:
        cdef const floating *X = <const floating *>x
        cdef const floating *Y = <const floating *>yf
        cdef const fsgd_opt *opt = NULL
        cdef const fsgd_update_plan *up = NULL
        cdef int st
        if mode == 0:    # evaluate: forward and cost
            st = _core.net_forward(&self.net, n, X, ldx, x_rows, False)
            if st == 0:
                st = _core.net_cost(&self.net, n, yi, Y, y_rows, False, loss, correct)
            return st
        if mode == 1 or mode == 2:   # fused: forward, cost, backward (1: and the step)
            if mode == 1:
                opt = &self.update.opt
                up = &self.update.plan
            return _core.net_train_batch(&self.net, opt, up, n, X, ldx, x_rows, yi, Y,
                                         y_rows, loss, correct)
        if mode == 3:    # forward, activation applied
            return _core.net_forward(&self.net, n, X, ldx, x_rows, True)
        if mode == 4:    # forward for the cost
            return _core.net_forward(&self.net, n, X, ldx, x_rows, False)
        if mode == 5:    # cost and dL/dZ
            return _core.net_cost(&self.net, n, yi, Y, y_rows, True, loss, correct)
        return _core.net_backward(&self.net, n, X, ldx, x_rows)   # 6: backward

    cdef int _fill_batch(self, int64_t start, int64_t n) except -1:
        """Gather and convert rows [start, start+n) of the bound order into the
        batch buffer; ValueError naming the row when one is not finite."""
        cdef const int64_t *rows = NULL
        cdef const char *src
        cdef int64_t first_bad
        cdef int kind
        cdef int nt = self.net.nthreads
        cdef int64_t n_in = self.layers[0].n_in, ldx
        cdef double scale = self.inputs.scale, offset = self.inputs.offset
        idx = self.order[start:start + n]
        if self.inputs.mode == "convert":
            data = self.inputs.data
            kind = self.inputs.kind
            ldx = self.ldx
            src = <const char *>_ptr(data)
            if self.ordered:
                rows = <const int64_t *>_ptr(self.order) + start
            else:
                src += start * ldx * data.itemsize
        else:   # "rows": fetch in increasing order, then put back in batch order
            sorted_idx = np.sort(idx)
            fetched = np.asarray(self.inputs.data[sorted_idx])
            if fetched.shape != (n, n_in):
                raise ValueError(f"X[rows] returned shape {fetched.shape}, expected {(n, n_in)}")
            fetched = fetched[np.searchsorted(sorted_idx, idx)]
            if fetched.dtype.kind not in "fiu":
                raise TypeError(f"X rows have dtype {fetched.dtype}; expected real numbers")
            data = np.ascontiguousarray(fetched, dtype=fetched.dtype.newbyteorder("="))
            if data.dtype not in (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.int64,
                                  np.float32, np.float64):
                data = data.astype(np.float64)
            kind = [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.int64, np.float32,
                    np.float64].index(data.dtype.type)
            src = <const char *>_ptr(data)
            ldx = n_in
        cdef void *out = _ptr(self.Xb)
        with nogil:
            if self.f64:
                first_bad = _core.convert_rows(nt, kind, n, n_in, src, ldx, rows, scale, offset,
                                               <double *>out)
            else:
                first_bad = _core.convert_rows(nt, kind, n, n_in, src, ldx, rows, scale, offset,
                                               <float *>out)
        if first_bad >= 0:
            raise ValueError(f"X row {int(idx[first_bad])} contains NaN or infinite values (in "
                             f"the batch of rows {start}..{start + n - 1} of this epoch's order); "
                             f"the weights are as they were before this batch")
        return 0

    cdef tuple _batch(self, int64_t start, int64_t n, int mode):
        if self.inputs is None:
            raise RuntimeError("bind() data first")
        if start < 0 or n < 1 or start + n > self.n_bound or n > self.net.capacity:
            raise ValueError(f"batch [{start}, {start + n}) outside the data or the buffers")
        if mode in (0, 1, 2, 5) and self.y_int is None and self.y_float is None:
            raise RuntimeError("bind() targets first")
        if mode == 1 and self.update is None:
            raise RuntimeError("set_update() first")
        cdef const int64_t *rows = NULL
        cdef const int64_t *x_rows = NULL
        cdef const int64_t *yi = <const int64_t *>_ptr(self.y_int)
        cdef const char *yf = <const char *>_ptr(self.y_float)
        cdef const char *x = <const char *>_ptr(self.X)
        cdef int64_t es = 8 if self.f64 else 4
        cdef int64_t ldx = self.ldx
        cdef str how = self.inputs.mode
        cdef const char *sw = <const char *>_ptr(self.sample_weight)
        if self.ordered:
            rows = <const int64_t *>_ptr(self.order) + start
        else:   # data order: the batch is a contiguous block
            if sw != NULL:
                sw += start * es
            if yi != NULL:
                yi += start
            if yf != NULL:
                yf += start * self.layers[self.net.n_layers - 1].n_out * es
        if how == "direct":
            x_rows = rows
            if not self.ordered:
                x += start * ldx * es
        elif how == "csr":
            x_rows = rows
        elif mode not in (5, 6):   # the batch buffer: filled once per batch
            self._fill_batch(start, n)
            ldx = self.layers[0].n_in
        else:
            ldx = self.layers[0].n_in
        cdef double loss = 0.0
        cdef int64_t correct = 0
        cdef int st
        self.net.sample_w = sw
        if mode == 1:   # dropout masks follow the optimizer's step count
            self.net.seed_step = <uint64_t>(self.update.opt.step - 1)
        with nogil:
            if self.f64:
                st = self._run(<double *>NULL, mode, n, x, ldx, x_rows, yi, yf, rows, &loss,
                               &correct)
            else:
                st = self._run(<float *>NULL, mode, n, x, ldx, x_rows, yi, yf, rows, &loss,
                               &correct)
        _core.check_status(st)
        if mode == 1:
            self.update.opt.step += 1
        return loss, correct

    def batch_weight(self, int64_t start, int64_t n):
        """The sum of the sample weights of rows [start, start+n) of the bound
        order (``n`` without weights): what a batch's cost is divided by."""
        if self.sample_weight is None:
            return float(n)
        return float(self.sample_weight[self.order[start:start + n]].sum(dtype=np.float64))

    def train_batch(self, int64_t start, int64_t n, bint update=True):
        """Forward, cost, backward and (with ``update``) the optimizer step on
        rows [start, start+n) of the bound order, in one call. Returns
        ``(loss_sum, correct)``; raises NonFiniteError (parameters untouched)
        when the cost is not finite or the step is refused."""
        return self._batch(start, n, 1 if update else 2)

    def eval_batch(self, int64_t start, int64_t n):
        """Forward and cost only. Returns ``(loss_sum, correct)``."""
        return self._batch(start, n, 0)

    def forward(self, int64_t start, int64_t n, bint out_act=True):
        """Forward only; the output layer's buffer gets the activations (or,
        without ``out_act``, the pre-activations the fused cost takes)."""
        self._batch(start, n, 3 if out_act else 4)

    def cost(self, int64_t start, int64_t n):
        """After ``forward(out_act=False)``: the cost and dL/dZ of the output
        layer. Returns ``(loss_sum, correct)``."""
        return self._batch(start, n, 5)

    def backward(self, int64_t start, int64_t n):
        """After ``cost``: every gradient into the plan's flat gradient array."""
        if self.net.grads == NULL:
            raise ValueError("an inference plan has no gradients")
        self._batch(start, n, 6)

    def predict_into(self, X, out):
        """Forward ``X`` (anything :meth:`bind` takes) in chunks of the buffer
        capacity into ``out``."""
        cdef int64_t n_out = self.layers[self.net.n_layers - 1].n_out
        require(out, "out", dtype=self.plan.dtype, ndim=2, writeable=True)
        self.bind(X)
        if out.shape != (self.n_bound, n_out):
            raise ValueError(f"out has shape {out.shape}, expected {(self.n_bound, n_out)}")
        cdef int64_t total = self.n_bound, cap = self.net.capacity, start = 0, m
        cdef size_t es = 8 if self.f64 else 4
        cdef char *op = <char *>_ptr(out)
        cdef const void *last = self.layers[self.net.n_layers - 1].A
        try:
            while start < total:
                m = min(cap, total - start)
                self._batch(start, m, 3)
                with nogil:
                    memcpy(op + start * n_out * es, last, m * n_out * es)
                start += m
        finally:
            self.inputs = None
            self.X = None
            self.net.x_csr = NULL
        return out
