"""Forked children after OpenMP threads ran, and training in Python threads.

GNU libgomp hangs a forked child in its first parallel region when the
parent had a thread team; fastsgd makes such children run serially. Each
fork scenario runs in its own process group with a timeout, so that a
regression fails the test instead of hanging it.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastsgd

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

TIMEOUT = 120

# A network and data large enough for the kernels to start a thread team.
PRELUDE = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import fastsgd
    from fastsgd import _fork

    rng = np.random.default_rng(0)
    X = rng.random((1024, 512), dtype=np.float32)
    y = rng.integers(0, 10, 1024)

    def train(seed=0):
        model = fastsgd.Sequential([fastsgd.Dense(256, "relu", input_dim=512),
                                    fastsgd.Dense(10, "softmax")], seed=seed)
        fastsgd.Trainer(model, "cross_entropy", fastsgd.SGD(0.05), batch_size=256).fit(
            X, y, epochs=1, verbose=0)
        return model

    def report(_=None):
        model = train()
        cfg = fastsgd.config()
        return {"threads": cfg["threads"], "forked_child": cfg["forked_child"],
                "reason": cfg["threads_reason"],
                "checksum": float(model.predict(X[:64]).astype(np.float64).sum())}

    def new_foreign_threads():
        return sorted(_fork._foreign_threads() - _fork._state["baseline"])
""")


def _run(body, tmp_path):
    """Run PRELUDE + body in a new process group; its last stdout line is JSON."""
    script = tmp_path / "scenario.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the scenario and every child it forked
        proc.communicate()
        pytest.fail(f"a forked child hung (no answer within {TIMEOUT} s)")
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_fork_pool_after_threaded_training(tmp_path):
    """multiprocessing's fork pool, started after the parent trained with 2
    threads: the children train and predict serially, with the parent's results."""
    res = _run("""
        import multiprocessing as mp
        fastsgd.set_num_threads(2)
        parent = report()
        started = new_foreign_threads()
        with mp.get_context("fork").Pool(2) as pool:
            children = pool.map(report, range(4))
        print(json.dumps({"parent": parent, "started": started, "children": children}))
    """, tmp_path)
    if fastsgd.config()["openmp"]:
        assert res["started"], "the parent never started OpenMP threads: the test proves nothing"
    assert res["parent"]["forked_child"] is False and res["parent"]["threads"] == 2
    for child in res["children"]:
        assert child["forked_child"] is True
        assert child["checksum"] == res["parent"]["checksum"]  # threads never change results
        if res["started"]:
            assert child["threads"] == 1
            assert child["reason"].startswith("forked child: serial")


def test_grandchild_of_a_serial_child_stays_serial(tmp_path):
    res = _run("""
        fastsgd.set_num_threads(2)
        train()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            rr, ww = os.pipe()
            gpid = os.fork()
            if gpid == 0:
                os.write(ww, json.dumps(report()).encode())
                os._exit(0)
            os.close(ww)
            grand = json.loads(os.read(rr, 65536))
            os.waitpid(gpid, 0)
            os.write(w, json.dumps({"child": report(), "grandchild": grand}).encode())
            os._exit(0)
        os.close(w)
        data = json.loads(os.read(r, 65536))
        os.waitpid(pid, 0)
        data["started"] = new_foreign_threads()
        print(json.dumps(data))
    """, tmp_path)
    if res["started"]:
        assert res["child"]["threads"] == 1 and res["grandchild"]["threads"] == 1
    assert res["grandchild"]["forked_child"] is True


def test_child_of_a_parent_without_thread_team_keeps_threads(tmp_path):
    """A parent that never ran a parallel region has no pool to inherit:
    its children keep the thread setting and can use it."""
    res = _run("""
        fastsgd.set_num_threads(2)
        started = new_foreign_threads()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(w, json.dumps(report()).encode())
            os._exit(0)
        os.close(w)
        child = json.loads(os.read(r, 65536))
        os.waitpid(pid, 0)
        print(json.dumps({"child": child, "started": started}))
    """, tmp_path)
    assert res["started"] == []
    assert res["child"]["forked_child"] is True
    if fastsgd.config()["openmp"]:
        assert res["child"]["threads"] == 2
        assert "kept" in res["child"]["reason"]


def test_config_reports_fork_state():
    cfg = fastsgd.config()
    assert cfg["forked_child"] is False
    assert isinstance(cfg["threads_reason"], str) and cfg["threads_reason"]


def _model(seed):
    return fastsgd.Sequential([fastsgd.Dense(128, "relu", input_dim=256),
                               fastsgd.Dense(10, "softmax")], seed=seed)


def test_two_threads_train_two_models_at_once():
    """Two Python threads, each training its own model with 2 OpenMP threads,
    give the weights of sequential training."""
    rng = np.random.default_rng(1)
    X = rng.random((2048, 256), dtype=np.float32)
    y = rng.integers(0, 10, 2048)
    fastsgd.set_num_threads(2)

    def fit(model):
        fastsgd.Trainer(model, "cross_entropy", fastsgd.Adam(1e-3), batch_size=128).fit(
            X, y, epochs=2, verbose=0)
        return model

    expected = [fit(_model(s)).get_weights() for s in (0, 1)]
    models = [_model(0), _model(1)]
    errors = []

    def run(m):
        try:
            fit(m)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads), "training in two threads hung"
    assert not errors, errors
    for m, want in zip(models, expected):
        for a, b in zip(m.get_weights(), want):
            np.testing.assert_array_equal(a, b)
