"""Data-parallel training over MPI ranks (mpi4py, imported only when used).

``Trainer(model, cost, optimizer, comm=MPI.COMM_WORLD).fit(X, y, ...)``,
called by every rank with the same arguments, trains one model across the
ranks of ``comm``. It computes what a single process with the same seed
computes, up to floating-point rounding (each batch's gradient is summed in
another order; on one rank the bits are the same):

* Every rank starts from rank 0's weights, optimizer state, shuffling state,
  learning rate and callback state (broadcast once, after the callbacks'
  ``on_train_begin``, so a :class:`~fastsgd.BackupAndRestore` backup that
  only rank 0 can see still resumes every rank).
* Each epoch every rank draws the same seeded permutation. Every global
  mini-batch of ``batch_size`` rows (the last one keeps the remainder, so
  60,000 rows at 128 are still 469 steps) is split into contiguous per-rank
  slices of ``ceil(rows / ranks)`` or ``floor(rows / ranks)`` rows. Each rank
  is given the whole X (an array, or a memory map of one file) but, apart
  from the check for NaN and infinity once per fit, reads only the rows of
  its slices. It runs forward, cost and backward on its slice, which gives the
  gradient of the slice's mean cost; scaled by ``slice_rows / batch_rows``,
  the sum over the ranks is the gradient of the batch's mean cost, uneven
  and empty slices included (an empty slice contributes zeros).
* Dropout masks are drawn for the global step and each row's place in the
  global batch (``Net.seed_row0``), so they are one process's masks.
  BatchNormalization is refused: its statistics would be the slice's.
* One ``Allreduce`` (sum, in place) per step over one flat buffer: the flat
  gradient array followed by three numbers (the count of ranks whose cost
  was not finite, the batch's cost sum and its correct count). Every rank
  then applies the same optimizer step.
* A step is refused on every rank together: a rank whose cost is not finite
  adds 1 to the count, and every rank sees the same reduced buffer, so every
  rank's compiled update makes the same decision on the same bits.
* Epoch metrics (cost, accuracy, validation cost and accuracy, computed on
  per-rank slices of the validation data) are reduced in float64, and the
  epoch's ``seconds`` is the slowest rank's, so every rank's logs, History
  and callback decisions are the same. The learning rate and
  ``stop_training`` are also taken from rank 0 after the epoch's callbacks
  (and after every batch when a callback acts on batches), so no rank can
  leave the loop alone.

Why the ranks hold bit-identical weights: they start from the same bits,
and each step applies the same deterministic update to the same reduced
gradient. That the reduced gradient is the same bits on every rank is what
MPICH's and Open MPI's ``MPI_Allreduce`` algorithms give (they reduce each
element once and distribute the result, or combine in a tree whose shape
every rank shares, and IEEE addition is commutative: ``a + b`` and ``b + a``
are the same bits); the MPI standard only recommends it. We do not take it
on trust:
``Trainer(..., check_sync=True)`` (or ``FASTSGD_CHECK_SYNC=1``) compares a
BLAKE2 digest of the weights and the optimizer's state across the ranks at
the end of every epoch and raises if any rank differs, and the test suite
checks the weights bit for bit after 2- and 3-rank runs.

Only rank 0 prints progress and writes files (:class:`~fastsgd.ModelCheckpoint`
and :class:`~fastsgd.BackupAndRestore` write nothing on the other ranks; the
writes stay atomic). A saved model or backup holds nothing that depends on
the number of ranks, so it loads and resumes with any number of ranks.

Failures: if a rank raises during ``fit`` (with more than one rank), it
prints ``fastsgd: rank N of M failed: <exception>`` and its traceback on
stderr and calls ``comm.Abort``, which ends every rank of the job (exit code
1; 130 for KeyboardInterrupt) instead of leaving the others waiting forever
in the next collective. A rank killed by a signal is detected by the MPI
launcher, which ends the job. Checkpoints written before are intact: writes
go to a temporary file that is renamed into place. (An exception that a
script raises outside ``fit`` on one rank only is not covered; run scripts
as ``mpiexec -n 4 python -m mpi4py script.py`` to abort on those too.)

Threads: each rank uses, in this order of precedence, ``threads_per_rank``
(the Trainer argument), ``FASTSGD_NUM_THREADS``, ``OMP_NUM_THREADS``, or
``cores // ranks_on_this_node`` (at least 1). Ranks on the same node are
found with ``comm.Split_type(MPI.COMM_TYPE_SHARED)``; the cores are those
in the CPU affinity set of the ranks on the node: when the launcher bound
each rank to its own cores, a rank uses the cores of its own set. ``fit``
applies the count with :func:`fastsgd.set_num_threads`.

``History.comm`` records ``ranks``, ``threads`` and, per epoch, the seconds
this rank spent in the gradient Allreduce (waiting for slower ranks included).
"""
import contextlib
import hashlib
import os
import sys
import time
import traceback
import warnings

import numpy as np

from . import _config, _feeds, _net
from ._network import build_plan
from ._validate import check_int
from .callbacks import _overrides

#: environment variables by which MPI launchers tell a process the job's size
LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE")


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("data-parallel training needs mpi4py and an MPI library: "
                          "pip install 'fastsgd[mpi]' (mpi4py and mpich)") from e
    return MPI


def check_comm(comm):
    """``comm`` if it is an mpi4py intra-communicator; TypeError otherwise."""
    MPI = _mpi()
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"comm must be an mpi4py intra-communicator such as MPI.COMM_WORLD, "
                        f"got {type(comm).__name__}")
    if comm == MPI.COMM_NULL:
        raise ValueError("comm is MPI.COMM_NULL")
    return comm


def launched_size(environ=None):
    """The number of processes an MPI launcher (mpiexec, mpirun, srun) started this one
    with, read from its environment variables; 1 when none is set."""
    environ = os.environ if environ is None else environ
    for name in LAUNCHER_SIZE_VARS:
        value = environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def ranks_on_node(comm):
    """``(local_size, local_rank, affinities)``: how many ranks of ``comm`` share this
    node (``comm.Split_type(MPI.COMM_TYPE_SHARED)``), this rank's number among them and
    the CPU affinity set of each of them."""
    MPI = _mpi()
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return local.Get_size(), local.Get_rank(), local.allgather(_affinity())
    finally:
        local.Free()


def _affinity():
    try:
        return frozenset(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return frozenset(range(os.cpu_count() or 1))


def _env_threads(name):
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        n = int(value.split(",")[0])
    except ValueError:
        warnings.warn(f"{name}={value!r} is not a thread count; ignored", RuntimeWarning, stacklevel=3)
        return None
    return n if n >= 1 else None


def default_threads(comm, threads_per_rank=None):
    """``(threads, how)``: the thread count a rank of ``comm`` uses and where it came from
    (see the module documentation for the order)."""
    if threads_per_rank is not None:
        return check_int("threads_per_rank", threads_per_rank, minimum=1), "threads_per_rank"
    for name in ("FASTSGD_NUM_THREADS", "OMP_NUM_THREADS"):
        n = _env_threads(name)
        if n is not None:
            return n, name
    local, _, sets = ranks_on_node(comm)
    mine = _affinity()
    if len(set(sets)) > 1:  # the launcher bound the ranks to cores of their own
        return max(1, len(mine)), f"the {len(mine)} cores this rank is bound to"
    return max(1, len(mine) // local), f"{len(mine)} cores / {local} ranks on this node"


def setup_threads(comm, threads_per_rank=None):
    """Set this rank's kernel thread count (see :func:`default_threads`); returns it."""
    n, _ = default_threads(comm, threads_per_rank)
    n = min(n, _config.MAX_THREADS)
    if _config.get_num_threads() != n:
        _config.set_num_threads(n)
    return n


def _exit_code(exc):
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) and exc.code else 1
    return 1


def report_and_abort(comm, exc, code=None):
    """Print ``fastsgd: rank N of M failed: <exc>`` (and the traceback) on stderr and end
    every rank of ``comm``'s job with ``comm.Abort(code)``."""
    rank, size = comm.Get_rank(), comm.Get_size()
    code = _exit_code(exc) if code is None else code
    try:
        if not isinstance(exc, KeyboardInterrupt):
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        text = " ".join(str(exc).split())
        sys.stderr.write(f"fastsgd: rank {rank} of {size} failed: {type(exc).__name__}"
                         f"{': ' + text if text else ''}; aborting all {size} ranks\n")
        sys.stderr.flush()
        sys.stdout.flush()
        time.sleep(0.5)  # let the launcher forward the message before it ends every rank
    finally:
        comm.Abort(code)


@contextlib.contextmanager
def abort_on_error(comm, code=None):
    """Run a block; if it raises on any rank of a job of more than one rank, report the
    exception with the rank and abort the whole job (no rank is left waiting)."""
    try:
        yield
    except BaseException as e:
        if comm.Get_size() > 1:
            report_and_abort(comm, e, code)
        raise


def _split(rows, ranks, rank):
    """``(offset, count)`` of ``rank``'s contiguous share of ``rows`` rows."""
    q, r = divmod(rows, ranks)
    return rank * q + min(rank, r), q + (1 if rank < r else 0)


def _digest(arrays):
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
    return h.hexdigest()


def check_in_sync(comm, trainer, when):
    """Raise RuntimeError (on every rank) unless all ranks hold the same bits in the
    model's weights and the optimizer's state."""
    params, _ = trainer.model._flat_parameters()
    digest = _digest([params] + list(trainer.optimizer._slots or ()))
    digests = comm.allgather(digest)
    differ = [r for r, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise RuntimeError(f"the ranks' weights are not identical {when}: rank(s) "
                           f"{', '.join(map(str, differ))} differ from rank 0")


def fit(trainer, X, y, *, epochs, validation_data, validation_split, callbacks, verbose,
        initial_epoch, sample_weight=None, class_weight=None):
    """:meth:`Trainer.fit` across the ranks of ``trainer.comm`` (arguments already checked)."""
    comm = trainer.comm
    with abort_on_error(comm):
        return _fit(trainer, comm, X, y, epochs=epochs, validation_data=validation_data,
                    validation_split=validation_split, callbacks=callbacks, verbose=verbose,
                    initial_epoch=initial_epoch, sample_weight=sample_weight,
                    class_weight=class_weight)


def _fit(trainer, comm, X, y, *, epochs, validation_data, validation_split, callbacks, verbose,
         initial_epoch, sample_weight, class_weight):
    parts = trainer._fit_parts()
    History, _Progress, DivergenceWarning = parts["History"], parts["Progress"], parts["DivergenceWarning"]
    _is_source, _row_weights = parts["is_source"], parts["row_weights"]

    MPI = _mpi()
    rank, size = comm.Get_rank(), comm.Get_size()
    setup_threads(comm, trainer.threads_per_rank)
    check = trainer.check_sync or os.environ.get("FASTSGD_CHECK_SYNC", "") not in ("", "0")

    if _is_source(X, y):
        raise ValueError("data-parallel training (comm) needs the data as an array, a memory "
                         "map or a row-indexable dataset that every rank can read, not a "
                         "streamed source")
    X, t = trainer._prepare(X, y)
    model = trainer.model
    kinds = [getattr(layer, "kind", "dense") for layer in model.layers]
    if "batch_normalization" in kinds:
        raise ValueError("data-parallel training (comm) does not support BatchNormalization yet: "
                         "each rank would normalise with the statistics of its own slice of "
                         "the batch, not the batch's")
    # every rank draws rank 0's dropout masks (a layer's key is random without a model seed)
    keys = comm.bcast([getattr(layer, "_key", None) for layer in model.layers], root=0)
    for layer, key in zip(model.layers, keys):
        if key is not None:
            layer._key = key
    sample_weight = _row_weights(sample_weight, class_weight, t, X.shape[0], trainer.model.output_dim)
    X, t, sample_weight, Xv, tv, wv = trainer._validation_parts(
        X, t, sample_weight, validation_data, validation_split)

    opt = trainer.optimizer
    n = X.shape[0]
    bs = min(trainer.batch_size, n)
    n_batches = -(-n // bs)
    params, layout = model._flat_parameters()  # broadcast from rank 0 below
    # the ranks must run the same loop, or one would wait for the others forever
    shape = (n, bs, epochs, layout.size, str(model.dtype), trainer.cost.name, trainer.shuffle,
             None if Xv is None else Xv.shape[0], type(opt).__name__, sample_weight is None)
    shapes = comm.allgather(shape)
    differ = [r for r, s in enumerate(shapes) if s != shapes[0]]
    if differ:
        raise ValueError(f"every rank must call fit with the same data sizes and settings: rank(s) "
                         f"{', '.join(map(str, differ))} differ from rank 0 ((rows, batch_size, "
                         f"epochs, parameters, dtype, cost, shuffle, validation rows, optimizer, "
                         f"unweighted): "
                         f"{shapes[0]} on rank 0, {shapes[differ[0]]} on rank {differ[0]})")

    # the flat gradients and, after them, [ranks with a non-finite cost, cost sum, correct]:
    # one buffer, one Allreduce per step
    buf = np.zeros(layout.size + 3, model.dtype)
    grads, tail = buf[:layout.size], buf[layout.size:]
    plan = build_plan(model, -(-bs // size), cost=trainer.cost.name, training=True, grads=grads)
    net = _net.Net(plan)
    slots = opt.build(plan.layout, plan.dtype, owner=model)
    update = _net.Update(plan.params, plan.grads, slots, opt.segments(plan.layout, model.layers))
    update.configure(opt.hyper())
    trainer._run.update = update

    eval_net = None
    if Xv is not None:
        v_off, v_rows = _split(Xv.shape[0], size, rank)
        if v_rows:
            eval_cap = min(v_rows, max(bs, 1024))
            eval_net = _net.Net(build_plan(model, eval_cap, cost=trainer.cost.name))
            eval_net.bind(Xv.head(v_off + v_rows).tail(v_rows), tv[v_off:v_off + v_rows],
                          None if wv is None else wv[v_off:v_off + v_rows])

    history = History()
    # what the run cost this rank in communication: seconds in the gradient Allreduce, per
    # epoch (waiting for the slowest rank included)
    history.comm = {"ranks": size, "threads": _config.get_num_threads(), "allreduce_seconds": []}
    trainer.history = history
    model.stop_training = False
    callbacks.sort(key=lambda cb: bool(getattr(cb, "_acts_last", False)))  # backups act last
    classification = trainer._classification()
    logged = ["loss"] + (["accuracy"] if classification else [])
    cb_params = {"epochs": epochs, "steps": n_batches, "verbose": verbose,
                 "metrics": logged + [f"val_{k}" for k in logged if Xv is not None]
                 + ["lr", "seconds"]}
    for cb in callbacks:
        cb.set_trainer(trainer)
        cb.set_params(cb_params)
    batch_cbs = [cb for cb in callbacks if _overrides(cb, "on_batch_end")]
    # the same global batches, in the same order, as one process (every rank binds all rows
    # and reads those of its slices)
    feed = _feeds.ArrayFeed(net, X, t, bs, trainer.shuffle, trainer._rng, trainer.chunk_rows,
                            trainer.buffer_chunks, read_only_indices=bool(batch_cbs),
                            sample_weight=sample_weight)
    weighted = net.sample_weight is not None
    progress = _Progress(verbose if rank == 0 else 0, epochs, n_batches)
    acc_denom = trainer._judged_per_sample()

    trainer._run.callbacks = callbacks
    trainer._run.initial_epoch = initial_epoch
    for cb in callbacks:
        cb.on_train_begin({})
    _take_rank0_state(comm, trainer, callbacks, params, slots)
    if check:
        check_in_sync(comm, trainer, "at the start of training")

    decision = np.zeros(2, np.float64)  # [stop_training, lr] as rank 0 has them

    def follow_rank0():
        decision[0], decision[1] = float(model.stop_training), opt.lr
        comm.Bcast(decision, root=0)
        model.stop_training = bool(decision[0])
        if opt.lr != decision[1]:
            opt.lr = float(decision[1])

    for epoch in range(trainer._run.initial_epoch, epochs):
        for cb in callbacks:
            cb.on_epoch_begin(epoch, {"lr": opt.lr})
        follow_rank0()
        update.configure(opt.hyper())
        lr_used = opt.lr
        progress.epoch_begin(epoch)
        t0 = time.perf_counter()
        loss_sum = 0.0        # this rank's share
        correct = 0
        seen = 0              # rows of the global batches run
        weight_seen = 0.0     # the costs' denominator: rows, or their summed weights
        run_loss = 0.0        # the global batches' cost sum (progress bar)
        ar_seconds = 0.0      # this rank's time in the gradient Allreduce
        stopped = False
        for b, (start, nb, indices) in enumerate(feed.epoch(epoch)):
            off, m = _split(nb, size, rank)
            bw = net.batch_weight(start, nb) if weighted else nb
            ls, c = 0.0, 0
            tail[0] = 0
            if m:
                # dropout masks as one process draws them: for this step, at the slice's rows
                net.seed_step = update.step - 1
                net.seed_row0 = off
                net.forward(start + off, m, out_act=False)
                ls, c = net.cost(start + off, m)
                if ls - ls == 0.0:  # finite
                    net.backward(start + off, m)
                    # the slice's (weighted) mean -> its share of the batch's
                    if not weighted:
                        share = m / nb
                    else:  # a batch whose weights are all 0 has a zero gradient
                        share = net.batch_weight(start + off, m) / bw if bw > 0 else 0.0
                    if share != 1.0:
                        grads *= share
                else:
                    tail[0] = 1
                    grads.fill(0)
            else:
                grads.fill(0)
            tail[1] = ls if tail[0] == 0 else 0.0
            tail[2] = c
            t_ar = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            ar_seconds += time.perf_counter() - t_ar
            if tail[0] != 0 or not update.run():
                opt.iterations = update.step - 1
                history.diverged = {"epoch": epoch, "batch": b, "lr": opt.lr}
                warnings.warn(
                    f"training diverged at epoch {epoch + 1}, batch {b + 1}: the cost or a "
                    f"weight would have become NaN or infinite, so training stopped and "
                    f"the model keeps its last finite weights. The learning rate "
                    f"(lr={opt.lr:g}) is probably too high: try lr={opt.lr / 10:g}.",
                    DivergenceWarning, stacklevel=5)
                stopped = True
                break
            loss_sum += ls
            correct += c
            seen += nb
            weight_seen += bw
            run_loss += float(tail[1])
            if batch_cbs:
                blogs = {"batch": b, "size": nb, "loss": float(tail[1]) / bw if bw > 0 else 0.0,
                         "indices": indices}
                if classification:
                    blogs["accuracy"] = float(tail[2]) / (nb * acc_denom)
                for cb in batch_cbs:
                    cb.on_batch_end(b, blogs)
                update.forget_bounds()   # a callback may have written the weights
                follow_rank0()
                if opt.lr != lr_used:
                    update.lr = opt.lr
                    lr_used = opt.lr
                if model.stop_training:
                    break
            if progress.tty:
                progress.batch(b + 1, run_loss / weight_seen if weight_seen > 0 else 0.0)
        opt.iterations = update.step - 1
        history.comm["allreduce_seconds"].append(ar_seconds)
        if stopped:
            break
        sums = np.array([loss_sum, correct, 0.0, 0.0, 0.0])
        if eval_net is not None:
            for s in range(0, v_rows, eval_cap):
                vl, vc = eval_net.eval_batch(s, min(eval_cap, v_rows - s))
                sums[2] += vl
                sums[3] += vc
            sums[4] = eval_net.batch_weight(0, v_rows)
        comm.Allreduce(MPI.IN_PLACE, sums, op=MPI.SUM)
        logs = {"loss": float(sums[0]) / weight_seen if weight_seen > 0 else 0.0}
        if classification:
            logs["accuracy"] = float(sums[1]) / (seen * acc_denom)
        if Xv is not None:
            logs["val_loss"] = float(sums[2]) / sums[4] if sums[4] > 0 else 0.0
            if classification:
                logs["val_accuracy"] = float(sums[3]) / (Xv.shape[0] * acc_denom)
        logs["lr"] = lr_used
        logs["seconds"] = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
        history._append(epoch, logs)
        progress.epoch_end(epoch, logs)
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs)
        follow_rank0()
        if check:
            check_in_sync(comm, trainer, f"after epoch {epoch + 1}")
        if model.stop_training:
            break
    trainer._run.ended = True
    for cb in callbacks:
        cb.on_train_end({})
    comm.Bcast(params, root=0)  # e.g. best weights restored at the end: rank 0's
    if check:
        check_in_sync(comm, trainer, "at the end of training")
    return history


def _take_rank0_state(comm, trainer, callbacks, params, slots):
    """Give every rank rank 0's weights, optimizer state and step count, learning rate,
    shuffling state, starting epoch and the state of the callbacks (after
    ``on_train_begin``, which may have restored a backup that only rank 0 sees)."""
    opt, model, run = trainer.optimizer, trainer.model, trainer._run
    state = None
    if comm.Get_rank() == 0:
        state = {"iterations": opt.iterations, "lr": opt.lr, "rng": trainer._rng.bit_generator.state,
                 "initial_epoch": run.initial_epoch, "stop": bool(model.stop_training),
                 "callbacks": [(type(cb).__name__, cb._backup_state()) for cb in callbacks]}
    state = comm.bcast(state, root=0)
    comm.Bcast(params, root=0)
    for s in slots:
        comm.Bcast(s, root=0)
    if comm.Get_rank() == 0:
        return
    names = [type(cb).__name__ for cb in callbacks]
    if names != [name for name, _ in state["callbacks"]]:
        raise ValueError(f"every rank must be given the same callbacks: rank 0 has "
                         f"{[name for name, _ in state['callbacks']]}, rank {comm.Get_rank()} "
                         f"has {names}")
    for cb, (_, st) in zip(callbacks, state["callbacks"]):
        if st is not None:
            cb._restore_state(st)
    opt.iterations = state["iterations"]
    opt.lr = state["lr"]
    trainer._rng.bit_generator.state = state["rng"]
    run.initial_epoch = state["initial_epoch"]
    model.stop_training = state["stop"]
