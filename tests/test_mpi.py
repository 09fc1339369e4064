"""Data-parallel training over MPI (fastsgd.distributed), run as `mpiexec -n N` jobs.

Every job is a tiny network on a few hundred samples, so each takes about a
second (most of it starting Python). The float64 weights of 2- and 3-rank
runs must equal a single process's to 1e-12 relative and be bit-identical
across the ranks; a rank that raises or is killed must end the job.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fastsgd import distributed

try:
    import mpi4py  # noqa: F401  (only to know it is there: MPI is initialised in the jobs)
    HAVE_MPI4PY = True
except ImportError:
    HAVE_MPI4PY = False


def _mpiexec():
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(
    not (HAVE_MPI4PY and MPIEXEC),
    reason="needs mpi4py and an mpiexec (pip install 'fastsgd[mpi]'; CI installs them)")

CHILD = r"""
import json, os, signal, sys
import numpy as np
import fastsgd
from fastsgd import (Adam, BackupAndRestore, Dense, Dropout, EarlyStopping, LambdaCallback,
                     ModelCheckpoint, ReduceLROnPlateau, Rescaling, SGD, Sequential, Trainer)

cfg = json.loads(sys.argv[1])
work, tag = cfg["work"], cfg["tag"]
comm = None
if cfg["mpi"]:
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
rank = 0 if comm is None else comm.Get_rank()
rng = np.random.default_rng(0)
X = rng.random((300, 12))
if cfg.get("mmap"):  # every rank maps the same file and reads its rows from it
    if rank == 0:
        np.save(os.path.join(work, "X.npy"), X)
    comm.Barrier()
    X = np.load(os.path.join(work, "X.npy"), mmap_mode="r")
if cfg.get("regression"):
    y = X[:, :3].sum(axis=1) - 1.5
    X[37, :] = 1e300  # its batch's cost is infinite: that step is refused, training stops
    model = Sequential([Dense(6, "linear", input_dim=12), Dense(1, "linear")], dtype="float64",
                       seed=cfg.get("model_seed", 0))
    cost, opt = "mse", SGD(0.05)
else:
    y = (X[:, :3].argmax(axis=1) + (X[:, 5] > 0.7)) % 3
    first = [Rescaling(1 / 255)] if cfg.get("uint8") else []
    middle = [Dropout(0.3)] if cfg.get("dropout") else []
    model = Sequential(first + [Dense(16, "tanh", input_dim=12)] + middle + [Dense(3, "softmax")],
                       dtype="float64", seed=cfg.get("model_seed", 0))
    cost, opt = "cross_entropy", Adam(0.01)
if cfg.get("uint8"):  # converted batch by batch
    X = np.round(X * 255).astype(np.uint8)
if cfg.get("sparse"):  # the first layer reads the nonzeros
    import scipy.sparse
    X = scipy.sparse.csr_matrix(np.where(X > 0.5, X, 0.0))
batch_losses = []
def fail(epoch, logs):
    if epoch == 1 and rank == 1:
        if cfg["fail"] == "raise":
            raise RuntimeError("injected failure")
        os.kill(os.getpid(), signal.SIGKILL)
known = {
    "es": lambda: EarlyStopping(monitor="val_loss", patience=100, restore_best_weights=True),
    "plateau": lambda: ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=0.5),
    "ckpt": lambda: ModelCheckpoint(os.path.join(work, "ckpt-{epoch}.npz"), monitor="loss"),
    "backup": lambda: BackupAndRestore(os.path.join(work, "backup"), delete_checkpoint=False),
    "batch": lambda: LambdaCallback(on_batch_end=lambda b, logs: batch_losses.append(logs["loss"])),
    "fail": lambda: LambdaCallback(on_epoch_end=fail),
}
callbacks = [known[name]() for name in cfg.get("callbacks", [])]
extra = {}
validation = (X[250:], y[250:])
if cfg.get("weighted"):  # some rows weigh nothing, whole batches may too
    w = np.round(np.random.default_rng(5).random(300) * 3) / 2
    extra = {"sample_weight": w[:250], "class_weight": {0: 1.0, 1: 2.5}}
    validation = (X[250:], y[250:], w[250:])
shuffle = cfg.get("shuffle", True)
trainer = Trainer(model, cost, opt, batch_size=cfg["batch_size"], seed=1, comm=comm,
                  check_sync=comm is not None, shuffle=shuffle, chunk_rows=20, buffer_chunks=3)
hist = trainer.fit(X[:250], y[:250], epochs=cfg["epochs"], validation_data=validation,
                   callbacks=callbacks, verbose=0, **extra)
params, _ = model._flat_parameters()
np.savez(os.path.join(work, f"{tag}-{rank}.npz"), params=params,
         batch_losses=np.array(batch_losses, dtype=float),
         **{k: np.array(v, dtype=float) for k, v in hist.history.items()})
with open(os.path.join(work, f"{tag}-{rank}.json"), "w") as f:
    json.dump({"diverged": hist.diverged, "threads": fastsgd.get_num_threads(),
               "iterations": opt.iterations}, f)
"""


def _env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_LOCAL", "MV2_", "HYDRA_"))}
    env["FASTSGD_NUM_THREADS"] = "1"  # the machine may be shared: one thread per rank
    return env


def _run(cmd, cwd, timeout=60):
    """Run ``cmd`` in its own process group; on a timeout end the whole group (mpiexec and
    every rank) and fail."""
    start = time.monotonic()
    p = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail(f"{' '.join(cmd[:4])} ... did not end within {timeout} s")
    return p.returncode, out, err, time.monotonic() - start


def train(work, ranks, tag, **cfg):
    """Run the child on ``ranks`` MPI ranks (0: one process without MPI); returns the
    per-rank results."""
    cfg = {"work": str(work), "tag": tag, "mpi": ranks > 0, "batch_size": 31, "epochs": 4,
           "fail": None, **cfg}
    cmd = [sys.executable, "-c", CHILD, json.dumps(cfg)]
    if ranks:
        cmd = [MPIEXEC, "-n", str(ranks)] + cmd
    rc, out, err, _ = _run(cmd, work)
    assert rc == 0, err
    results = []
    for r in range(max(ranks, 1)):
        with np.load(work / f"{tag}-{r}.npz") as f:
            res = {k: f[k] for k in f.files}
        with open(work / f"{tag}-{r}.json") as f:
            res.update(json.load(f))
        results.append(res)
    return results


def assert_same_run(single, ranks, keys=("loss", "accuracy", "val_loss", "val_accuracy", "lr")):
    ref = single[0]
    for r, res in enumerate(ranks):
        # every rank holds the same bits
        assert res["params"].tobytes() == ranks[0]["params"].tobytes(), f"rank {r} differs"
        np.testing.assert_allclose(res["params"], ref["params"], rtol=1e-12, atol=1e-15)
        for k in keys:
            np.testing.assert_allclose(res[k], ref[k], rtol=1e-12, err_msg=k)
        assert res["iterations"] == ref["iterations"]
        assert res["threads"] == 1


# -- without mpiexec --------------------------------------------------------------------
@pytest.mark.parametrize("rows,ranks", [(1, 3), (2, 3), (26, 3), (31, 2), (128, 4), (96, 8)])
def test_split_covers_the_batch_in_contiguous_slices(rows, ranks):
    parts = [distributed._split(rows, ranks, r) for r in range(ranks)]
    assert sum(m for _, m in parts) == rows
    assert all(off == sum(m for _, m in parts[:r]) for r, (off, _) in enumerate(parts))
    assert max(m for _, m in parts) - min(m for _, m in parts) <= 1


def test_launched_size_reads_the_launchers_variables():
    assert distributed.launched_size({}) == 1
    assert distributed.launched_size({"PMI_SIZE": "4"}) == 4
    assert distributed.launched_size({"OMPI_COMM_WORLD_SIZE": "3"}) == 3
    assert distributed.launched_size({"PMI_SIZE": "x"}) == 1


def test_seed_row0_draws_a_slices_dropout_masks_as_in_the_whole_batch():
    from fastsgd import Dense, Dropout, Sequential, _net
    from fastsgd._network import build_plan
    model = Sequential([Dense(6, "relu", input_dim=5), Dropout(0.5), Dense(3, "softmax")],
                       dtype="float64", seed=0)
    X = np.random.default_rng(1).random((8, 5))
    net = _net.Net(build_plan(model, 8, cost="cross_entropy", training=True))
    net.bind(X, np.zeros(8, np.int64))
    net.seed_step = 3
    net.forward(0, 8, out_act=False)
    whole = net.plan.layers[1].A[2:6].copy()
    net.seed_row0 = 2
    net.forward(2, 4, out_act=False)
    np.testing.assert_array_equal(net.plan.layers[1].A[:4], whole)
    net.seed_row0 = 0
    net.forward(2, 4, out_act=False)
    assert not np.array_equal(net.plan.layers[1].A[:4], whole)


@pytest.mark.skipif(not HAVE_MPI4PY, reason="needs mpi4py")
def test_comm_must_be_an_mpi4py_communicator():
    from fastsgd import SGD, Dense, Sequential, Trainer
    model = Sequential([Dense(2, "softmax", input_dim=3)])
    with pytest.raises(TypeError, match="intra-communicator"):
        Trainer(model, "cross_entropy", SGD(), comm=object())


# -- mpiexec jobs -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The single-process runs the MPI runs are compared with."""
    work = tmp_path_factory.mktemp("single")
    return {"plain": train(work, 0, "plain", callbacks=["es", "plateau", "batch"]),
            "long": train(work, 0, "long", epochs=5)}


@needs_mpi
def test_one_rank_is_bit_identical_to_a_single_process(tmp_path, single):
    res = train(tmp_path, 1, "plain", callbacks=["es", "plateau", "batch"])
    assert res[0]["params"].tobytes() == single["plain"][0]["params"].tobytes()


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_match_a_single_process(tmp_path, single, ranks):
    # 250 rows at batch size 31: 9 steps an epoch, the last of 2 rows (on 3 ranks one rank
    # has nothing in it); early stopping restores the best weights; the learning rate drops
    # on plateaus; a batch callback sees the global batch's cost. The 2-rank job reads X
    # from a memory map.
    res = train(tmp_path, ranks, "plain", callbacks=["es", "plateau", "batch"], mmap=ranks == 2)
    assert_same_run(single["plain"], res)
    assert len(res[0]["lr"]) == 4 and len(set(res[0]["lr"])) > 1  # the rate was reduced
    for r in res:
        np.testing.assert_allclose(r["batch_losses"], single["plain"][0]["batch_losses"], rtol=1e-12)


@needs_mpi
def test_weights_and_chunk_shuffling_match_a_single_process(tmp_path):
    # sample and class weights (each slice's share of the gradient is its weight over the
    # batch's) and the chunk-ordered shuffle, which every rank draws alike
    ref = train(tmp_path, 0, "single", weighted=True, shuffle="chunks", callbacks=["batch"])
    res = train(tmp_path, 3, "mpi", weighted=True, shuffle="chunks", callbacks=["batch"])
    assert_same_run(ref, res)
    for r in res:
        np.testing.assert_allclose(r["batch_losses"], ref[0]["batch_losses"], rtol=1e-12)


@needs_mpi
def test_dropout_masks_match_a_single_process(tmp_path):
    # each rank draws the masks of its slice's rows as one process draws them for the batch
    ref = train(tmp_path, 0, "single", dropout=True)
    res = train(tmp_path, 3, "mpi", dropout=True)
    assert_same_run(ref, res)


@needs_mpi
def test_batch_normalization_is_refused(tmp_path):
    code = ("from mpi4py import MPI; import numpy as np; from fastsgd import *\n"
            "m = Sequential([Dense(4, 'relu', input_dim=4), BatchNormalization(),\n"
            "                Dense(3, 'softmax')], seed=0)\n"
            "X = np.random.default_rng(0).random((40, 4)); y = X[:, :3].argmax(1)\n"
            "Trainer(m, 'cross_entropy', SGD(), comm=MPI.COMM_WORLD).fit(X, y, verbose=0)\n")
    rc, _, err, seconds = _run([MPIEXEC, "-n", "2", sys.executable, "-c", code], tmp_path)
    assert rc != 0 and seconds < 60
    assert "does not support BatchNormalization" in err


@needs_mpi
@pytest.mark.parametrize("kind", ["uint8", "sparse"])
def test_other_kinds_of_x_match_a_single_process(tmp_path, kind):
    if kind == "sparse":
        pytest.importorskip("scipy")
    ref = train(tmp_path, 0, "single", **{kind: True})
    res = train(tmp_path, 2, "mpi", **{kind: True})
    assert_same_run(ref, res)


@needs_mpi
def test_resume_with_another_number_of_ranks(tmp_path, single):
    # 2 ranks train 2 epochs and leave a backup; 3 ranks resume it to 5 epochs: the same
    # weights as 5 epochs in one process. Only rank 0 wrote files.
    train(tmp_path, 2, "first", epochs=2, callbacks=["ckpt", "backup"])
    assert sorted(os.listdir(tmp_path / "backup")) == ["backup.npz"]
    res = train(tmp_path, 3, "resumed", epochs=5, callbacks=["ckpt", "backup"])
    assert_same_run(single["long"], res, keys=())
    assert len(res[0]["loss"]) == 3  # epochs 3, 4 and 5
    import fastsgd
    names = sorted(n for n in os.listdir(tmp_path) if n.startswith("ckpt-"))
    assert names == [f"ckpt-{e}.npz" for e in range(1, 6)]
    last = fastsgd.load_model(tmp_path / "ckpt-5.npz")
    np.testing.assert_array_equal(last._flat_parameters()[0], res[0]["params"])


@needs_mpi
def test_a_non_finite_cost_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    ref = train(tmp_path, 0, "single", regression=True)
    res = train(tmp_path, 3, "mpi", regression=True)
    assert ref[0]["diverged"] is not None
    for r in res:
        assert r["diverged"] == ref[0]["diverged"]
        assert np.isfinite(r["params"]).all()
    assert_same_run(ref, res, keys=())


@needs_mpi
@pytest.mark.parametrize("how", ["raise", "kill"])
def test_a_failing_rank_ends_the_job(tmp_path, how):
    cfg = {"work": str(tmp_path), "tag": "f", "mpi": True, "batch_size": 31, "epochs": 1000,
           "fail": how, "callbacks": ["fail", "ckpt"]}
    rc, _, err, seconds = _run([MPIEXEC, "-n", "2", sys.executable, "-c", CHILD, json.dumps(cfg)],
                               tmp_path)
    assert rc != 0 and seconds < 60
    if how == "raise":
        assert "fastsgd: rank 1 of 2 failed: RuntimeError: injected failure" in err, err
    import fastsgd
    fastsgd.load_model(tmp_path / "ckpt-1.npz")  # the checkpoint written before is whole


@needs_mpi
def test_ranks_given_different_settings_fail_instead_of_waiting(tmp_path):
    code = ("from mpi4py import MPI; import numpy as np; from fastsgd import *\n"
            "c = MPI.COMM_WORLD\n"
            "m = Sequential([Dense(3, 'softmax', input_dim=4)], dtype='float64', seed=0)\n"
            "X = np.random.default_rng(0).random((40, 4)); y = X[:, :3].argmax(1)\n"
            "Trainer(m, 'cross_entropy', SGD(), comm=c).fit(X, y, epochs=2 + c.rank, verbose=0)\n")
    rc, _, err, seconds = _run([MPIEXEC, "-n", "2", sys.executable, "-c", code], tmp_path)
    assert rc != 0 and seconds < 60
    assert "failed: ValueError: every rank must call fit with the same" in err


@needs_mpi
def test_cli_under_mpiexec(tmp_path):
    save = tmp_path / "model.npz"
    rc, out, err, _ = _run([MPIEXEC, "-n", "2", sys.executable, "-m", "fastsgd", "train", "--sample",
                            "--net", "intermediate", "--hidden", "16", "--epochs", "1",
                            "--check-sync", "--save", str(save)], tmp_path)
    assert rc == 0, err
    assert "data-parallel training over 2 ranks" in out
    assert out.count("test accuracy:") == 1  # rank 0 prints
    assert save.exists()


@needs_mpi
def test_cli_usage_error_under_mpiexec_exits_2(tmp_path):
    rc, _, err, _ = _run([MPIEXEC, "-n", "2", sys.executable, "-m", "fastsgd", "train",
                          "--data", str(tmp_path / "missing")], tmp_path)
    assert rc == 2 and "failed" in err
