"""SIGKILL a training process at random moments, again and again: every file it left
loads, and the resumed run ends bit-identical to one that was never interrupted."""
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fastsgd

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

CHILD = r"""
import os, sys
import numpy as np
import fastsgd
from fastsgd import (Adam, BackupAndRestore, CosineDecay, Dense, EarlyStopping, LambdaCallback,
                     LearningRateScheduler, ModelCheckpoint, ReduceLROnPlateau, Sequential,
                     Trainer)
fastsgd.set_num_threads(1)
work, epochs = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
X = rng.random((240, 10))
y = (X[:, :4].argmax(axis=1) + (X[:, 4] > 0.8)) % 4
Xv, yv = X[-60:] + 0.01, y[-60:]
model = Sequential([Dense(16, "tanh", input_dim=10), Dense(4, "softmax")], seed=0)
opt = Adam(0.02)
say = lambda text: (sys.stdout.write(text + "\n"), sys.stdout.flush())
callbacks = [
    LambdaCallback(on_train_begin=lambda logs: say("begin"),
                   on_epoch_end=lambda e, logs: say(f"epoch {e}")),
    LearningRateScheduler(CosineDecay(epochs, alpha=0.05)),
    ReduceLROnPlateau(monitor="loss", factor=0.7, patience=1, min_delta=0.02),
    EarlyStopping(monitor="val_loss", patience=1000, restore_best_weights=True),
    ModelCheckpoint(os.path.join(work, "last.npz")),
    ModelCheckpoint(os.path.join(work, "best.npz"), save_best_only=True),
    BackupAndRestore(os.path.join(work, "backup")),
]
Trainer(model, "cross_entropy", opt, batch_size=16, seed=1).fit(
    X[:-60], y[:-60], epochs=epochs, validation_data=(Xv, yv), callbacks=callbacks, verbose=0)
model.save(os.path.join(work, "final.npz"), optimizer=opt)
say("done")
"""

EPOCHS = 40
KILLS = 24


def start(work):
    return subprocess.Popen([sys.executable, "-c", CHILD, str(work), str(EPOCHS)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=work)


def finish(p):
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0 and out.rstrip().endswith("done"), err
    return out


def contents(path):
    model, opt = fastsgd.load_model(path, return_optimizer=True)
    arrays = model.get_weights()
    state = opt.get_state()
    for per in state["state"] or ():
        arrays += per
    return arrays, state["iterations"], opt.lr


def assert_same(a, b):
    arrays_a, it_a, lr_a = a
    arrays_b, it_b, lr_b = b
    assert it_a == it_b and lr_a == lr_b and len(arrays_a) == len(arrays_b)
    for p, q in zip(arrays_a, arrays_b):
        np.testing.assert_array_equal(p, q)


def test_random_sigkills_then_resume_bit_identical(tmp_path):
    ref = tmp_path / "ref"
    ref.mkdir()
    finish(start(ref))

    work = tmp_path / "work"
    work.mkdir()
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    kills = loads = runs = 0
    resumed_from = set()
    while kills < KILLS:
        runs += 1
        assert runs < 200, f"seed {seed}: too many runs"
        p = start(work)
        line = p.stdout.readline()  # "begin": the fit is under way (restoring, maybe)
        for _ in range(rng.randint(0, 3)):
            line = p.stdout.readline() or line
        time.sleep(rng.uniform(0.0, 0.015))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait()
        p.stdout.close()
        p.stderr.close()
        # whatever it left behind loads
        for name in ("last.npz", "best.npz", os.path.join("backup", "backup.npz")):
            if (work / name).exists():
                contents(work / name)
                loads += 1
        if (work / "backup" / "backup.npz").exists():
            from fastsgd.io import _load
            resumed_from.add(_load(work / "backup" / "backup.npz")[2]["extra"]["backup"]["epoch"])
    out = finish(start(work))  # the last run goes to the end
    assert not (work / "backup" / "backup.npz").exists()
    for name in ("final.npz", "last.npz", "best.npz"):
        assert_same(contents(work / name), contents(ref / name))
    # the kills landed at many different points of the run
    assert len(resumed_from) >= 3, (seed, resumed_from)
    torn = [n for n in os.listdir(work) if n.endswith(".part")]  # writes cut short by a kill
    print(f"seed {seed}: {kills} kills over {runs} runs, {loads} files loaded, backups at "
          f"epochs {sorted(resumed_from)}, {len(torn)} checkpoint writes cut short; "
          f"last run: {out.split()[:3]}")
