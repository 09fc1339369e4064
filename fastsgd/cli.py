"""The ``fastsgd`` command line (also ``python -m fastsgd``).

    fastsgd train [--net shallow|intermediate] [options]   train on MNIST
    fastsgd evaluate MODEL [--data DIR]                     test accuracy of a saved model
    fastsgd book --out DIR [--quick]                        the chapter's experiments: figures
                                                            and a report
    fastsgd info                                            build and run-time configuration

``mpiexec -n 4 fastsgd train ...`` trains data-parallel over the 4 ranks: the
command sees that an MPI launcher started it with more than one process (its
PMI_SIZE, OMPI_COMM_WORLD_SIZE, MV2_COMM_WORLD_SIZE or PMIX_SIZE variable),
imports mpi4py and trains over MPI.COMM_WORLD; ``--mpi`` asks for it
explicitly (with a launcher this check does not know). Rank 0 prints and
saves; the first lines say how many ranks and threads per rank it runs on.
If any rank fails, the job ends (MPI_Abort) with the rank and the cause on
stderr: exit code 2 for a usage error found before training, else 1.
"""
import argparse
import os
import statistics
import sys
import tempfile

from . import optimizers
from ._config import get_num_threads, set_num_threads
from ._info import show_config
from .callbacks import EarlyStopping
from .io import load_model
from .layers import BatchNormalization, Dense, Dropout, Sequential
from .trainer import Trainer

NETS = {
    # the book's Shallow Net: 784 -> 64 sigmoid -> 10 softmax, quadratic cost, SGD η = 0.01
    "shallow": {"hidden": [64], "activation": "sigmoid", "cost": "mse", "lr": 0.01,
                "batch_size": 128, "epochs": 200},
    # the book's Intermediate Net: 784 -> 64 relu -> 64 relu -> 10 softmax, cross-entropy, η = 0.1
    "intermediate": {"hidden": [64, 64], "activation": "relu", "cost": "cross_entropy",
                     "lr": 0.1, "batch_size": 128, "epochs": 20},
}


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _hidden(text):
    try:
        units = [int(u) for u in text.split(",") if u.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden must be comma-separated integers, got {text!r}")
    if not units or min(units) < 1:
        raise argparse.ArgumentTypeError(f"--hidden needs positive layer sizes, got {text!r}")
    return units


def _number(kind, low, low_ok, what):
    """An argparse type: ``kind`` (int or float) above ``low`` (or equal when ``low_ok``)."""
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}")
        if not (v > low or (low_ok and v == low)) or v == float("inf"):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v
    return parse


_positive_float = _number(float, 0, False, "a finite number > 0")


def _rate(text):
    v = _number(float, 0, True, "a dropout rate in [0, 1)")(text)
    if v >= 1:
        raise argparse.ArgumentTypeError(f"expected a dropout rate in [0, 1), got {text!r}")
    return v
_positive_int = _number(int, 1, True, "an integer >= 1")
_nonneg_int = _number(int, 0, True, "an integer >= 0")


def build_parser():
    p = _Parser(prog="fastsgd", description="Train dense networks with mini-batch SGD on the CPU.")
    sub = p.add_subparsers(dest="command", metavar="{train,evaluate,book,info}")
    t = sub.add_parser("train", help="train a network on MNIST")
    t.add_argument("--net", choices=sorted(NETS), default="shallow",
                   help="the book's network and its settings (default: shallow)")
    t.add_argument("--hidden", type=_hidden, help="hidden layer sizes, e.g. 64,64")
    t.add_argument("--activation", choices=["sigmoid", "tanh", "relu", "leaky_relu", "linear"],
                   help="hidden-layer activation")
    t.add_argument("--cost", choices=["mse", "quadratic", "cross_entropy", "mae", "huber",
                                      "sparse_categorical_cross_entropy"])
    t.add_argument("--dropout", type=_rate, metavar="RATE",
                   help="a Dropout layer of this rate after each hidden layer")
    t.add_argument("--batch-norm", action="store_true",
                   help="a BatchNormalization layer after each hidden Dense layer")
    t.add_argument("--optimizer", choices=["sgd", "adagrad", "rmsprop", "adam", "adamw"],
                   default="sgd")
    t.add_argument("--lr", type=_positive_float, help="learning rate η")
    t.add_argument("--momentum", type=float, default=0.0)
    t.add_argument("--batch-size", type=_positive_int)
    t.add_argument("--epochs", type=_positive_int)
    t.add_argument("--patience", type=_nonneg_int,
                   help="stop when validation cost has not improved for this many epochs")
    t.add_argument("--seed", type=_nonneg_int, default=42)
    t.add_argument("--threads", type=_positive_int)
    t.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    t.add_argument("--data", metavar="DIR", help="folder with the four MNIST IDX files "
                   "(default: $FASTSGD_DATA, else the files packaged with fastsgd)")
    t.add_argument("--download", action="store_true",
                   help="download full MNIST into the cache if no copy is found")
    t.add_argument("--sample", action="store_true",
                   help="train on the 8,000-image sample instead of full MNIST (quicker, "
                   "lower accuracy)")
    t.add_argument("--save", metavar="PATH", help="write the trained model here (.npz)")
    t.add_argument("--plot", metavar="PATH",
                   help="save the learning curves (cost and accuracy per epoch) as an image "
                   "(needs matplotlib)")
    t.add_argument("--find-lr", action="store_true",
                   help="sweep the learning rate first and train with the suggested one")
    t.add_argument("--verbose", type=int, choices=[0, 1, 2], default=2)
    t.add_argument("--mpi", action="store_true",
                   help="train data-parallel over the MPI ranks (needs mpi4py; automatic when "
                        "mpiexec starts more than one process)")
    t.add_argument("--check-sync", action="store_true",
                   help="with MPI: check after every epoch that all ranks hold identical weights")
    e = sub.add_parser("evaluate", help="evaluate a saved model on the MNIST test set")
    e.add_argument("model", metavar="MODEL")
    e.add_argument("--data", metavar="DIR")
    e.add_argument("--sample", action="store_true")
    b = sub.add_parser("book", help="run the chapter's experiments: PNG figures and a Markdown "
                       "report (needs matplotlib)")
    b.add_argument("--out", metavar="DIR", required=True, help="folder for the figures and "
                   "report.md (created if needed)")
    b.add_argument("--quick", action="store_true",
                   help="fewer epochs and smaller training sets (quicker; the report says "
                   "so)")
    b.add_argument("--seed", type=_nonneg_int, default=0)
    b.add_argument("--threads", type=_positive_int)
    b.add_argument("--data", metavar="DIR", help="folder with the four MNIST IDX files")
    sub.add_parser("info", help="show the build and run-time configuration")
    return p


def _load_data(args, out, training=True):
    """Full MNIST (``--data``, ``$FASTSGD_DATA``, the packaged files, the cache) or the
    sample (``--sample``); says which. Returns ``(data, "full" | "sample")``."""
    from . import datasets
    if not args.sample:
        try:
            found = datasets.locate_mnist(args.data)
            if found is None and getattr(args, "download", False):
                datasets.load_mnist(download=True)
                found = datasets.locate_mnist()
        except FileNotFoundError as e:
            raise UsageError(str(e))
        if found is not None:
            folder, origin = found
            data = datasets.load_mnist(folder, download=False)
            out(f"data: full MNIST from {datasets.ORIGINS[origin]} ({folder}): "
                f"{len(data[0][1]):,} training, {len(data[1][1]):,} test images")
            return data, "full"
        out("data: full MNIST not found (the packaged files are missing and nothing is in the "
            "cache; --download fetches it)")
    data = datasets.load_mnist_sample()
    n = len(data[0][1])
    line = (f"data: the MNIST sample: {n:,} training, {len(data[1][1]):,} test images (MNIST's "
            f"test set, split)")
    if training:
        batch = args.batch_size or NETS[args.net]["batch_size"]
        line += (f". At batch size {batch} an epoch is {-(-n // batch)} rounds instead of "
                 f"{-(-60000 // batch)} on full MNIST, so expect a lower accuracy than the book's")
    out(line)
    return data, "sample"


def _book_comparison(args, acc, epochs_run, settings, source):
    """The book's published result for ``--net``, beside this run's, with the differences."""
    from .book import BOOK_NETS
    ref = BOOK_NETS[args.net]
    line = (f"book: the {ref['title']} reaches about {ref['accuracy']:.0%} test accuracy after "
            f"{ref['epochs']} epochs on full MNIST (Deep Learning Illustrated); this run: "
            f"{acc:.2%} after {epochs_run} epoch{'s' if epochs_run != 1 else ''}")
    alias = {"quadratic": "mse"}
    differs = [f"{k}={v}" for k, v in settings.items()
               if k not in ref or (alias.get(v, v) if isinstance(v, str) else v) != ref[k]]
    notes = []
    if source == "sample":
        notes.append("the sample gives fewer rounds per epoch and less data than the book's full "
                     "MNIST, so its accuracy is lower than the book's")
    if differs:
        notes.append("settings differ from the book's: " + ", ".join(differs))
    if epochs_run < settings["epochs"]:
        notes.append(f"training stopped after {epochs_run} of {settings['epochs']} epochs")
    return line + (f" ({'; '.join(notes)})" if notes else "")


def _check_plot_path(path):
    from .plotting import require_matplotlib
    try:
        require_matplotlib("--plot")
    except ImportError as e:
        raise UsageError(str(e))
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"--plot: the folder {folder} does not exist")


def _check_save_path(path):
    """Fail before training, not after it, when ``--save PATH`` cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"--save {path}: is a folder; give a file name such as {path}/model.npz")
    if not os.path.isdir(folder):
        raise UsageError(f"--save {path}: the folder {folder} does not exist")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UsageError(f"--save {path}: cannot write in {folder} ({e.strerror or e})")


def _mpi_comm(args):
    """MPI.COMM_WORLD when an MPI launcher started more than one process (or with
    ``--mpi``), else None (mpi4py is not imported then)."""
    from . import distributed
    n = distributed.launched_size()
    if not args.mpi and n <= 1:
        return None
    try:
        MPI = distributed._mpi()
    except ImportError as e:
        why = "--mpi" if args.mpi else f"started by an MPI launcher as {n} processes"
        raise UsageError(f"{why}: {e}")
    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 or args.mpi else None


def _train_mpi(args, out):
    """``train``, data-parallel when started by an MPI launcher: rank 0 prints and saves;
    a failure on any rank aborts the whole job with the rank and the cause on stderr."""
    comm = _mpi_comm(args)
    if comm is None:
        return _train(args, out)
    from . import distributed
    try:
        return _train(args, out if comm.Get_rank() == 0 else (lambda *a, **k: None), comm)
    except BaseException as e:
        if comm.Get_size() > 1:
            usage = isinstance(e, (UsageError, ValueError, TypeError))
            distributed.report_and_abort(comm, e, 2 if usage else None)
        raise


def _train(args, out, comm=None):
    if args.save:
        _check_save_path(args.save)
    if comm is not None:
        from . import distributed
        threads, how = distributed.default_threads(comm, args.threads)
        local = distributed.ranks_on_node(comm)[0]
        size = comm.Get_size()
        out(f"mpi: data-parallel training over {size} rank{'s' if size > 1 else ''} "
            f"({local} on this node), "
            f"{threads} thread{'s' if threads > 1 else ''} per rank ({how})")
        distributed.setup_threads(comm, args.threads)
    cfg = dict(NETS[args.net])
    hidden = args.hidden or cfg["hidden"]
    activation = args.activation or cfg["activation"]
    cost = args.cost or cfg["cost"]
    lr = args.lr or cfg["lr"]
    batch = args.batch_size or cfg["batch_size"]
    epochs = args.epochs or cfg["epochs"]
    if args.threads and comm is None:
        set_num_threads(args.threads)
    if args.plot:
        _check_plot_path(args.plot)
    ((X, y), (Xt, yt)), source = _load_data(args, out)
    layers = []
    for k, u in enumerate(hidden):  # the book's order: Dense, BatchNormalization, Dropout
        layers.append(Dense(u, activation, input_dim=X.shape[1] if k == 0 else None))
        if args.batch_norm:
            layers.append(BatchNormalization())
        if args.dropout:
            layers.append(Dropout(args.dropout))
    layers.append(Dense(10, "softmax"))
    model = Sequential(layers, dtype=args.dtype, seed=args.seed)
    opt_cls = optimizers.OPTIMIZERS[args.optimizer]
    kwargs = {"lr": lr}
    if args.momentum:
        if args.optimizer not in ("sgd", "rmsprop"):
            raise UsageError("--momentum applies to sgd and rmsprop")
        kwargs["momentum"] = args.momentum
    opt = opt_cls(**kwargs)
    if args.find_lr:
        from .lr_finder import find_lr
        res = find_lr(model, cost, X, y, optimizer=opt, batch_size=batch, seed=args.seed)
        out(f"find-lr: suggested lr={res.suggestion:.3g} ({res.rule})")
        opt.lr = res.suggestion
        lr = res.suggestion
    model.summary(print_fn=out)
    out(f"cost={cost} optimizer={args.optimizer} lr={lr:g} batch_size={batch} epochs={epochs} "
        f"threads={get_num_threads()} dtype={args.dtype}")
    trainer = Trainer(model, cost, opt, batch_size=batch, seed=args.seed, comm=comm,
                      threads_per_rank=args.threads, check_sync=args.check_sync)
    callbacks = []
    if args.patience is not None:
        callbacks.append(EarlyStopping(patience=args.patience, restore_best_weights=True))
    hist = trainer.fit(X, y, epochs=epochs, validation_data=(Xt, yt), callbacks=callbacks,
                       verbose=args.verbose)
    res = trainer.evaluate(Xt, yt)
    secs = hist.history.get("seconds", [])
    med = statistics.median(secs) if secs else float("nan")
    out(f"test accuracy: {res['accuracy']:.4f}  test cost: {res['loss']:.4f}  "
        f"epochs run: {len(secs)}  seconds/epoch (median): {med:.3f}")
    if hist.diverged:
        out(f"training diverged at epoch {hist.diverged['epoch'] + 1}; try --lr {lr / 10:g}")
    if args.save and (comm is None or comm.Get_rank() == 0):
        model.save(args.save, optimizer=opt)
        out(f"saved model to {args.save}")
    if args.plot and hist.epoch and (comm is None or comm.Get_rank() == 0):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig = hist.plot()
        fig.savefig(args.plot, dpi=110)
        plt.close(fig)
        out(f"saved the learning curves to {args.plot}")
    elif args.plot and not hist.epoch:
        out("no epoch completed, so there are no learning curves to save")
    settings = {"hidden": hidden, "activation": activation, "cost": cost, "lr": lr,
                "batch_size": batch, "epochs": epochs}
    if args.optimizer != "sgd" or args.momentum:
        settings["optimizer"] = args.optimizer + (f" with momentum {args.momentum:g}"
                                                  if args.momentum else "")
    out(_book_comparison(args, res["accuracy"], len(hist.epoch), settings, source))
    return 0


def _evaluate(args, out):
    try:
        model = load_model(args.model)
    except (OSError, ValueError) as e:
        raise UsageError(str(e))
    (_, (Xt, yt)), _ = _load_data(args, out, training=False)
    cost = "cross_entropy" if model.layers[-1].activation == "softmax" else "mse"
    res = Trainer(model, cost, optimizers.SGD()).evaluate(Xt, yt)
    out(f"test accuracy: {res['accuracy']:.4f}  test cost ({cost}): {res['loss']:.4f}")
    return 0


def _book(args, out):
    from . import book
    from .plotting import require_matplotlib
    try:
        require_matplotlib("fastsgd book")
    except ImportError as e:
        raise UsageError(str(e))
    if args.threads:
        set_num_threads(args.threads)
    try:
        book.run(args.out, quick=args.quick, seed=args.seed, data=args.data, log=out)
    except OSError as e:
        raise UsageError(str(e))
    return 0


def main(argv=None):
    out = print
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise UsageError("a command is required: train, evaluate, book or info")
        if args.command == "info":
            show_config()
            return 0
        if args.command == "train":
            return _train_mpi(args, out)
        if args.command == "book":
            return _book(args, out)
        return _evaluate(args, out)
    except (UsageError, ValueError, TypeError) as e:
        print(f"fastsgd: error: {' '.join(str(e).split())}", file=sys.stderr)  # one line
        return 2
    except OSError as e:  # e.g. the disk filled up while saving
        print(f"fastsgd: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fastsgd: interrupted", file=sys.stderr)
        return 130



if __name__ == "__main__":
    sys.exit(main())
