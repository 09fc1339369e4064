"""The command line."""
import subprocess
import sys
import tempfile

import pytest

from fastsgd.cli import main


def run(*args):
    # from outside the source tree, so that the installed package is imported
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([sys.executable, "-m", "fastsgd", *args], capture_output=True,
                              text=True, timeout=600, cwd=cwd)


@pytest.mark.parametrize("args,needle", [
    (["train", "--lr", "-1"], "--lr"),
    (["train", "--lr", "abc"], "--lr"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--batch-size", "x"], "--batch-size"),
    (["train", "--net", "deep"], "--net"),
    (["train", "--hidden", "64,a"], "--hidden"),
    (["train", "--cost", "hinge"], "--cost"),
    (["fly"], "invalid choice"),
    ([], "command is required"),
    (["evaluate"], "MODEL"),
])
def test_bad_arguments_exit_2_with_one_line(args, needle, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fastsgd: error:") and needle in err


def test_evaluate_bad_file(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"nope")
    assert main(["evaluate", str(bad)]) == 2
    assert "not a valid fastsgd model file" in capsys.readouterr().err


def test_train_on_the_bundled_sample_save_and_evaluate(tmp_path):
    path = tmp_path / "m.npz"
    r = run("train", "--net", "intermediate", "--epochs", "2", "--sample", "--save", str(path))
    assert r.returncode == 0, r.stderr
    assert "bundled MNIST sample" in r.stdout and "Total params: 55,050" in r.stdout
    assert "test accuracy:" in r.stdout and path.exists()
    r = run("evaluate", str(path), "--sample")
    assert r.returncode == 0, r.stderr
    acc = float(r.stdout.split("test accuracy:")[1].split()[0])
    assert acc > 0.8


def test_train_uses_full_mnist_when_given(mnist_dir):
    r = run("train", "--net", "shallow", "--epochs", "1", "--data", mnist_dir, "--threads", "2")
    assert r.returncode == 0, r.stderr
    assert "full MNIST" in r.stdout and "Total params: 50,890" in r.stdout
    assert "cost=mse" in r.stdout and "lr=0.01" in r.stdout and "batch_size=128" in r.stdout


def test_info():
    r = run("info")
    assert r.returncode == 0 and "openmp" in r.stdout and "simd" in r.stdout
