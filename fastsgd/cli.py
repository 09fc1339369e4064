"""The ``fastsgd`` command line (also ``python -m fastsgd``).

    fastsgd train [--net shallow|intermediate] [options]   train on MNIST
    fastsgd evaluate MODEL [--data DIR]                     test accuracy of a saved model
    fastsgd info                                            build and run-time configuration
"""
import argparse
import os
import statistics
import sys
import tempfile

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
    sub = p.add_subparsers(dest="command", metavar="{train,evaluate,info}")
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
    t.add_argument("--data", metavar="DIR", help="folder with the four MNIST IDX files")
    t.add_argument("--download", action="store_true",
                   help="download full MNIST into the cache when it is not found")
    t.add_argument("--sample", action="store_true",
                   help="use the bundled 10,000-image sample even if full MNIST is found")
    t.add_argument("--save", metavar="PATH", help="write the trained model here (.npz)")
    t.add_argument("--find-lr", action="store_true",
                   help="sweep the learning rate first and train with the suggested one")
    t.add_argument("--verbose", type=int, choices=[0, 1, 2], default=2)
    e = sub.add_parser("evaluate", help="evaluate a saved model on the MNIST test set")
    e.add_argument("model", metavar="MODEL")
    e.add_argument("--data", metavar="DIR")
    e.add_argument("--sample", action="store_true")
    sub.add_parser("info", help="show the build and run-time configuration")
    return p


def _load_data(args, out):
    from . import datasets
    if not args.sample:
        try:
            data = datasets.load_mnist(args.data, download=getattr(args, "download", False))
            where = args.data or "the search path"
            out(f"data: full MNIST from {where} (60,000 training, 10,000 test images)")
            return data
        except FileNotFoundError as e:
            if args.data:
                raise UsageError(str(e))
    data = datasets.load_mnist_sample()
    out(f"data: full MNIST not found; using the bundled MNIST sample "
        f"({len(data[0][1]):,} training, {len(data[1][1]):,} test images)")
    return data


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


def _train(args, out):
    import fastsgd
    from fastsgd import BatchNormalization, Dense, Dropout, EarlyStopping, Sequential, Trainer
    if args.save:
        _check_save_path(args.save)
    cfg = dict(NETS[args.net])
    hidden = args.hidden or cfg["hidden"]
    activation = args.activation or cfg["activation"]
    cost = args.cost or cfg["cost"]
    lr = args.lr or cfg["lr"]
    batch = args.batch_size or cfg["batch_size"]
    epochs = args.epochs or cfg["epochs"]
    if args.threads:
        fastsgd.set_num_threads(args.threads)
    (X, y), (Xt, yt) = _load_data(args, out)
    layers = []
    for k, u in enumerate(hidden):  # the book's order: Dense, BatchNormalization, Dropout
        layers.append(Dense(u, activation, input_dim=X.shape[1] if k == 0 else None))
        if args.batch_norm:
            layers.append(BatchNormalization())
        if args.dropout:
            layers.append(Dropout(args.dropout))
    layers.append(Dense(10, "softmax"))
    model = Sequential(layers, dtype=args.dtype, seed=args.seed)
    opt_cls = fastsgd.optimizers.OPTIMIZERS[args.optimizer]
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
        f"threads={fastsgd.get_num_threads()} dtype={args.dtype}")
    trainer = Trainer(model, cost, opt, batch_size=batch, seed=args.seed)
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
    if args.save:
        model.save(args.save, optimizer=opt)
        out(f"saved model to {args.save}")
    return 0


def _evaluate(args, out):
    import fastsgd
    try:
        model = fastsgd.load_model(args.model)
    except (OSError, ValueError) as e:
        raise UsageError(str(e))
    _, (Xt, yt) = _load_data(args, out)
    cost = "cross_entropy" if model.layers[-1].activation == "softmax" else "mse"
    res = fastsgd.Trainer(model, cost, fastsgd.SGD()).evaluate(Xt, yt)
    out(f"test accuracy: {res['accuracy']:.4f}  test cost ({cost}): {res['loss']:.4f}")
    return 0


def main(argv=None):
    out = print
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise UsageError("a command is required: train, evaluate or info")
        if args.command == "info":
            import fastsgd
            fastsgd.show_config()
            return 0
        if args.command == "train":
            return _train(args, out)
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
