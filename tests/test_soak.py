"""200 epochs with validation and every per-epoch callback: resident memory stays flat."""
import os

import numpy as np
import pytest

from fastsgd import (
    SGD,
    BackupAndRestore,
    Dense,
    EarlyStopping,
    LambdaCallback,
    ModelCheckpoint,
    ReduceLROnPlateau,
    Sequential,
    Trainer,
)

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def test_200_epochs_resident_memory_flat(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((1000, 32)).astype(np.float32)
    y = (X[:, :10].argmax(axis=1)).astype(np.int64)
    Xv, yv = X[:200] + 0.05, y[:200]
    model = Sequential([Dense(32, "relu", input_dim=32), Dense(10, "softmax")], seed=0)
    rss = {}
    batches = [0]

    def on_epoch_end(epoch, logs):
        assert np.isfinite(logs["loss"])
        rss[epoch] = rss_bytes()

    def on_batch_end(batch, logs):
        batches[0] += 1

    callbacks = [
        EarlyStopping(patience=1000, restore_best_weights=True),
        ReduceLROnPlateau(patience=30, factor=0.9),
        ModelCheckpoint(tmp_path / "last.npz"),
        ModelCheckpoint(tmp_path / "best-{epoch:03d}.npz", save_best_only=True),
        BackupAndRestore(tmp_path / "backup"),
        LambdaCallback(on_epoch_end=on_epoch_end, on_batch_end=on_batch_end),
    ]
    h = Trainer(model, "cross_entropy", SGD(0.05, momentum=0.9), batch_size=100, seed=0).fit(
        X[200:], y[200:], epochs=200, validation_data=(Xv, yv), callbacks=callbacks, verbose=0)
    assert len(h.epoch) == 200 and batches[0] == 200 * 8
    growth = rss[199] - rss[19]
    print(f"RSS growth epoch 20->200: {growth / 2 ** 20:.3f} MiB")
    assert growth < 5 * 2 ** 20, f"RSS grew by {growth / 2 ** 20:.2f} MiB from epoch 20 to 200"
    assert not (tmp_path / "backup" / "backup.npz").exists()
