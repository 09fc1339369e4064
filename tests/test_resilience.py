"""Callbacks' argument checks, interrupts, atomic saves, BackupAndRestore and the CLI's
--save check."""
import os
import stat

import numpy as np
import pytest

import fastsgd
from fastsgd import (
    SGD,
    Adam,
    BackupAndRestore,
    CosineDecay,
    Dense,
    EarlyStopping,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    Sequential,
    Trainer,
)
from fastsgd._files import atomic_write
from fastsgd.cli import main


def data(n=120, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, d))
    y = (X[:, 0] * k).astype(np.int64).clip(0, k - 1)
    return X, y


def net(seed=0, d=6, k=3):
    return Sequential([Dense(8, "tanh", input_dim=d), Dense(k, "softmax")], seed=seed)


# ---- wrong callback arguments: TypeError or ValueError, never anything else -----------------
GARBAGE = [None, "x", "", -1, 0, 1.5, float("nan"), float("inf"), True, "False", [], {}, object()]
SIGNATURES = {
    EarlyStopping: ["monitor", "min_delta", "patience", "verbose", "mode", "baseline",
                    "restore_best_weights", "start_from_epoch"],
    ModelCheckpoint: ["monitor", "save_best_only", "mode", "verbose"],
    ReduceLROnPlateau: ["monitor", "factor", "patience", "min_delta", "cooldown", "min_lr",
                        "mode", "verbose"],
    LearningRateScheduler: ["schedule", "verbose"],
    BackupAndRestore: ["backup_dir", "save_freq", "delete_checkpoint"],
    LambdaCallback: ["on_epoch_begin", "on_epoch_end", "on_batch_end", "on_train_begin",
                     "on_train_end"],
}


def make(cls, tmp_path, **kw):
    base = {ModelCheckpoint: {"path": str(tmp_path / "m-{epoch}.npz")},
            LearningRateScheduler: {"schedule": CosineDecay(3)},
            BackupAndRestore: {"backup_dir": str(tmp_path / "bk")}}.get(cls, {})
    return cls(**{**base, **kw})


@pytest.mark.parametrize("cls", list(SIGNATURES), ids=lambda c: c.__name__)
def test_every_wrong_argument_raises_type_or_value_error(cls, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a folder named by an accepted value lands here
    X, y = data(40)
    tried = 0
    for arg in SIGNATURES[cls]:
        for value in GARBAGE:
            tried += 1
            try:
                cb = make(cls, tmp_path, **{arg: value})
            except (TypeError, ValueError):
                continue
            # accepted: then a short fit may refuse it, but only with TypeError/ValueError
            try:
                Trainer(net(), "cross_entropy", SGD(0.1), batch_size=20).fit(
                    X, y, epochs=2, validation_split=0.25, callbacks=[cb], verbose=0)
            except (TypeError, ValueError):
                pass
    assert tried == len(SIGNATURES[cls]) * len(GARBAGE)


def test_non_bool_flags_are_refused():
    with pytest.raises(TypeError, match="restore_best_weights"):
        EarlyStopping(restore_best_weights="False")
    with pytest.raises(TypeError, match="save_best_only"):
        ModelCheckpoint("m.npz", save_best_only=1)
    with pytest.raises(TypeError, match="delete_checkpoint"):
        BackupAndRestore("bk", delete_checkpoint="no")
    with pytest.raises(TypeError, match="staircase"):
        fastsgd.ExponentialDecay(0.5, staircase="yes")


@pytest.mark.parametrize("template", ["m-{epoch", "m-}.npz", "m-{0}.npz", "m-{}.npz",
                                      "m-{epoch.real}.npz", "m-{epoch[0]}.npz",
                                      "m-{epoch:{width}}.npz"])
def test_bad_path_templates_fail_at_construction(template):
    with pytest.raises(ValueError, match="path"):
        ModelCheckpoint(template)


def test_fields_the_fit_does_not_log_fail_before_the_first_epoch(tmp_path):
    X, y = data()
    epochs_run = []
    spy = LambdaCallback(on_epoch_begin=lambda e, logs: epochs_run.append(e))
    cases = [
        (ModelCheckpoint(tmp_path / "m-{epoch:02d}-{val_loss:.3f}.npz"), "val_loss"),
        (ModelCheckpoint(tmp_path / "m-{auc}.npz"), "auc"),
        (ModelCheckpoint(tmp_path / "m.npz", save_best_only=True), "val_loss"),
        (ModelCheckpoint(tmp_path / "m.npz", monitor="accuracy", save_best_only=True),
         None),  # fine
        (ModelCheckpoint(tmp_path / "m-{loss:d}.npz"), "cannot be filled"),
        (EarlyStopping(), "val_loss"),
        (ReduceLROnPlateau(monitor="val_accuracy"), "val_accuracy"),
    ]
    for cb, needle in cases:
        trainer = Trainer(net(), "cross_entropy", SGD(0.1), batch_size=20)
        if needle is None:
            trainer.fit(X, y, epochs=1, callbacks=[spy, cb], verbose=0)
            continue
        epochs_run.clear()
        with pytest.raises(ValueError, match=needle):
            trainer.fit(X, y, epochs=3, callbacks=[spy, cb], verbose=0)
        assert epochs_run == []
    # with validation data the same template works
    ck = ModelCheckpoint(tmp_path / "v-{epoch:02d}-{val_loss:.3f}.npz")
    Trainer(net(), "cross_entropy", SGD(0.1), batch_size=20).fit(
        X, y, epochs=2, validation_split=0.2, callbacks=[ck], verbose=0)
    assert len(list(tmp_path.glob("v-0*.npz"))) == 2


def test_checkpoint_used_outside_a_trainer_reports_missing_keys_as_value_error(tmp_path):
    ck = ModelCheckpoint(tmp_path / "m-{val_loss:.2f}.npz")
    ck.model = net()
    ck.on_train_begin()
    with pytest.raises(ValueError, match="val_loss"):
        ck.on_epoch_end(0, {"loss": 1.0})


# ---- atomic writes ----------------------------------------------------------------------------
def test_saving_over_a_file_keeps_its_mode_and_syncs_the_folder(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    synced = []
    real = os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    net().save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert synced == [False, True]  # the file's data, then the folder after the rename
    fastsgd.load_model(path)
    umask = os.umask(0o022)
    os.umask(umask)
    new = tmp_path / "new.npz"
    atomic_write(new, lambda f: f.write(b"x"))
    assert stat.S_IMODE(new.stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "new.npz"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"keep")

    def boom(f):
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, boom)
    assert path.read_bytes() == b"keep" and os.listdir(tmp_path) == ["f"]


def test_io_still_exports_atomic_write():
    from fastsgd import io
    assert io.atomic_write is atomic_write


# ---- a schedule that reaches 0 ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cosine_decay_to_zero_trains_through_its_last_epochs(tmp_path, dtype):
    X, y = data()
    m = Sequential([Dense(8, "tanh", input_dim=6), Dense(3, "softmax")], seed=0, dtype=dtype)
    snaps = []
    keep = LambdaCallback(on_epoch_end=lambda e, logs: snaps.append(m.get_weights()))
    ck = ModelCheckpoint(tmp_path / "m-{epoch}.npz")
    opt = Adam(0.01)
    h = Trainer(m, "cross_entropy", opt, batch_size=20).fit(
        X, y, epochs=6, callbacks=[LearningRateScheduler(CosineDecay(4)), keep, ck], verbose=0)
    lrs = h.history["lr"]
    assert lrs[4] == lrs[5] == fastsgd.schedules.MIN_LR and lrs[3] > 0.0005
    # the rate-0 epochs leave the weights as they were (bit for bit with float32)
    for a, b in zip(snaps[4], snaps[5]):
        if dtype == "float32":
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-25)
    # and their checkpoints load, optimizer included
    loaded, o = fastsgd.load_model(tmp_path / "m-6.npz", return_optimizer=True)
    assert o.iterations == opt.iterations == 36 and o.lr == fastsgd.schedules.MIN_LR


def test_negative_scheduled_rate_is_still_an_error():
    X, y = data()
    with pytest.raises(ValueError, match="invalid learning rate"):
        Trainer(net(), "cross_entropy", SGD(0.1)).fit(
            X, y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda e, lr: -0.0 - 1)])


# ---- interrupts ---------------------------------------------------------------------------------
class Boom(Exception):
    pass


@pytest.mark.parametrize("exc", [KeyboardInterrupt, Boom])
def test_interrupt_from_a_batch_callback(exc):
    X, y = data(200)
    Xv, yv = data(60, seed=1)
    m = net()
    opt = SGD(0.5, momentum=0.9)
    opt.iterations = 7  # a run continued from earlier training
    steps = []
    ends = []

    def on_batch_end(b, logs):
        steps.append(b)
        if len(steps) == 23:  # epoch 3 (10 batches per epoch), after its 3rd step
            raise exc()

    es = EarlyStopping(patience=50, restore_best_weights=True)
    snaps = {}
    spy = LambdaCallback(on_epoch_end=lambda e, logs: snaps.setdefault(e, (logs["val_loss"],
                                                                          m.get_weights())),
                         on_train_end=lambda logs: ends.append(logs))
    with pytest.raises(exc):
        Trainer(m, "cross_entropy", opt, batch_size=20).fit(
            X, y, epochs=10, validation_data=(Xv, yv), verbose=0,
            callbacks=[LambdaCallback(on_batch_end=on_batch_end), spy, es])
    assert opt.iterations == 7 + 23
    assert ends == [{"interrupted": True}]
    best = min(snaps, key=lambda e: snaps[e][0])
    for p, q in zip(m.get_weights(), snaps[best][1]):
        np.testing.assert_array_equal(p, q)
    assert opt.get_state()["state"] is not None


def test_failing_on_train_end_does_not_hide_the_interrupt():
    X, y = data()

    def stop(b, logs):
        raise KeyboardInterrupt

    def broken_end(logs):
        raise RuntimeError("broken")

    with pytest.warns(RuntimeWarning, match="broken"), pytest.raises(KeyboardInterrupt):
        Trainer(net(), "cross_entropy", SGD(0.1)).fit(
            X, y, epochs=2, verbose=0,
            callbacks=[LambdaCallback(on_batch_end=stop, on_train_end=broken_end)])


def test_initial_epoch():
    X, y = data()
    seen = []
    h = Trainer(net(), "cross_entropy", SGD(0.1)).fit(
        X, y, epochs=5, initial_epoch=3, verbose=0,
        callbacks=[LambdaCallback(on_epoch_begin=lambda e, logs: seen.append(e))])
    assert seen == [3, 4] and h.epoch == [3, 4]
    with pytest.raises(ValueError, match="initial_epoch"):
        Trainer(net(), "cross_entropy", SGD(0.1)).fit(X, y, epochs=2, initial_epoch=3)
    with pytest.raises(TypeError, match="initial_epoch"):
        Trainer(net(), "cross_entropy", SGD(0.1)).fit(X, y, epochs=2, initial_epoch=1.0)


# ---- BackupAndRestore in one process ----------------------------------------------------------------
def run(tmp_path, epochs=8, fail_at=None, extra=(), backup=True, opt=None):
    """Train a fresh model; raise Boom at the start of epoch ``fail_at``."""
    X, y = data(150)
    Xv, yv = data(50, seed=3)
    m = net()
    opt = opt or Adam(0.02)

    def begin(e, logs):
        if e == fail_at:
            raise Boom()

    cbs = [LambdaCallback(on_epoch_begin=begin),
           LearningRateScheduler(CosineDecay(6, alpha=0.1)),
           ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=1.0),
           EarlyStopping(patience=100, restore_best_weights=True),
           ModelCheckpoint(tmp_path / "best.npz", save_best_only=True), *extra]
    bk = BackupAndRestore(tmp_path / "backup") if backup else None
    if bk:
        cbs.insert(0, bk)  # placed first; the trainer runs it last
    trainer = Trainer(m, "cross_entropy", opt, batch_size=16, seed=5)
    h = trainer.fit(X, y, epochs=epochs, validation_data=(Xv, yv), callbacks=cbs, verbose=0)
    return m, opt, h, bk, trainer


def test_resume_after_a_crash_is_bit_identical(tmp_path):
    ref_model, ref_opt, ref_h, _, _ = run(tmp_path / "ref", backup=False)
    with pytest.raises(Boom):
        run(tmp_path, fail_at=5)
    assert (tmp_path / "backup" / "backup.npz").exists()  # kept: training was interrupted
    m, opt, h, bk, _ = run(tmp_path)
    assert bk.restored_epoch == 4 and h.epoch == [5, 6, 7]
    assert h.history["lr"] == ref_h.history["lr"][5:]
    assert h.history["val_loss"] == ref_h.history["val_loss"][5:]
    for p, q in zip(m.get_weights(), ref_model.get_weights()):
        np.testing.assert_array_equal(p, q)
    assert opt.iterations == ref_opt.iterations
    for a, b in zip(opt.get_state()["state"], ref_opt.get_state()["state"]):
        for s, t in zip(a, b):
            np.testing.assert_array_equal(s, t)
    assert not (tmp_path / "backup" / "backup.npz").exists()  # deleted on completion


def test_backup_kept_when_asked_and_a_finished_run_is_not_retrained(tmp_path):
    X, y = data()
    bk = BackupAndRestore(tmp_path / "b", delete_checkpoint=False)
    m = net()
    Trainer(m, "cross_entropy", SGD(0.1), seed=1).fit(X, y, epochs=3, callbacks=[bk], verbose=0)
    assert (tmp_path / "b" / "backup.npz").exists()
    w = m.get_weights()
    m2 = net(seed=9)
    h = Trainer(m2, "cross_entropy", SGD(0.1), seed=1).fit(X, y, epochs=3, callbacks=[bk],
                                                          verbose=0)
    assert bk.restored_epoch == 2 and h.epoch == []
    for p, q in zip(m2.get_weights(), w):
        np.testing.assert_array_equal(p, q)


def test_backup_of_another_model_or_a_damaged_backup_is_refused(tmp_path):
    X, y = data()
    bk = BackupAndRestore(tmp_path / "b", delete_checkpoint=False)
    Trainer(net(), "cross_entropy", SGD(0.1)).fit(X, y, epochs=1, callbacks=[bk], verbose=0)
    other = Sequential([Dense(5, "tanh", input_dim=6), Dense(3, "softmax")])
    with pytest.raises(ValueError, match="different model"):
        Trainer(other, "cross_entropy", SGD(0.1)).fit(X, y, epochs=2, callbacks=[bk], verbose=0)
    with pytest.raises(ValueError, match="Adam"):
        Trainer(net(), "cross_entropy", Adam()).fit(X, y, epochs=2, callbacks=[bk], verbose=0)
    path = tmp_path / "b" / "backup.npz"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="backup.npz"):
        Trainer(net(), "cross_entropy", SGD(0.1)).fit(X, y, epochs=2, callbacks=[bk], verbose=0)


def test_backup_arguments():
    with pytest.raises(TypeError, match="backup_dir"):
        BackupAndRestore(None)
    with pytest.raises(ValueError, match="save_freq"):
        BackupAndRestore("b", save_freq="batch")
    with pytest.raises(TypeError, match="save_freq"):
        BackupAndRestore("b", save_freq=10)
    assert isinstance(fastsgd.BackupAndRestore("b"), fastsgd.Callback)


# ---- the CLI's --save check ---------------------------------------------------------------------
@pytest.mark.parametrize("where", ["missing/dir/m.npz", "afile/m.npz", "."])
def test_train_save_path_checked_before_training(tmp_path, capsys, where):
    (tmp_path / "afile").write_text("x")
    path = str(tmp_path / where) if where != "." else str(tmp_path)
    assert main(["train", "--sample", "--epochs", "1", "--save", path]) == 2
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fastsgd: error: --save")
    assert "data:" not in cap.out  # stopped before loading data or training
