"""The command line."""
import os
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
    assert "data: the MNIST sample" in r.stdout and "Total params: 55,050" in r.stdout
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


def run_fresh(*args, home, code=None):
    """Like run(), on a 'fresh machine': no $FASTSGD_DATA, an empty home and cache."""
    env = {k: v for k, v in os.environ.items() if k != "FASTSGD_DATA"}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / "cache"))
    cmd = [sys.executable, "-m", "fastsgd", *args] if code is None else [sys.executable, "-c", code]
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


def test_train_uses_the_packaged_full_mnist_and_compares_with_the_book(tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "curves.png"
    r = run_fresh("train", "--epochs", "1", "--threads", "1", "--verbose", "0", "--plot", str(plot),
                  home=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "data: full MNIST from the files packaged with fastsgd" in out
    assert "60,000 training, 10,000 test images" in out and "Total params: 50,890" in out
    acc = float(out.split("test accuracy:")[1].split()[0])
    book = out.strip().splitlines()[-1]
    assert book.startswith("book: the Shallow Net reaches about 86% test accuracy after 200 epochs")
    assert f"this run: {100 * acc:.2f}% after 1 epoch" in book and "epochs=1" in book
    assert "sample" not in out
    from matplotlib import image as mpimg
    assert plot.stat().st_size > 0 and mpimg.imread(plot).ndim == 3


def test_train_on_the_sample_says_it_gives_fewer_rounds_and_less_accuracy(tmp_path):
    r = run_fresh("train", "--sample", "--epochs", "1", "--threads", "1", "--verbose", "0",
                  home=tmp_path)
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()[0]
    assert first.startswith("data: the MNIST sample: 8,000 training, 2,000 test images")
    assert "63 rounds instead of 469" in first and "lower accuracy than the book's" in first
    last = r.stdout.strip().splitlines()[-1]
    assert "about 86%" in last and "the sample gives fewer rounds per epoch" in last


def test_data_folder_without_the_files_is_an_error_naming_it(tmp_path, capsys):
    missing = tmp_path / "no-mnist-here"
    missing.mkdir()
    assert main(["train", "--data", str(missing), "--epochs", "1"]) == 2
    cap = capsys.readouterr()
    assert str(missing) in cap.err and len(cap.err.strip().splitlines()) == 1
    assert "sample" not in cap.out and "Total params" not in cap.out


NO_MATPLOTLIB = ("import sys; sys.modules['matplotlib'] = None; "
                 "from fastsgd.cli import main; sys.exit(main({args!r}))")


@pytest.mark.parametrize("args", [
    ["book", "--out", "figs", "--quick"],
    ["train", "--sample", "--epochs", "1", "--plot", "c.png"],
])
def test_without_matplotlib_one_clear_line(args, tmp_path):
    r = run_fresh(home=tmp_path, code=NO_MATPLOTLIB.format(args=args))
    assert r.returncode == 2
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "matplotlib" in err and "fastsgd[plot]" in err
    assert "Total params" not in r.stdout  # it stops before training


def test_book_needs_out(capsys):
    assert main(["book"]) == 2
    assert "--out" in capsys.readouterr().err
