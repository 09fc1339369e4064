"""Learning curves with matplotlib (the optional extra ``fastsgd[plot]``).

:func:`plot_history` draws what :meth:`Trainer.fit <fastsgd.Trainer.fit>`
recorded: the cost and the accuracy per epoch, for the training data and the
validation data, with the early-stopping point and the restored best epoch
marked when an :class:`~fastsgd.EarlyStopping` callback ran.
``History.plot()`` calls it.
"""
import numbers

INSTALL_HINT = "pip install 'fastsgd[plot]'"


def require_matplotlib(what="plotting"):
    """Import and return matplotlib, or raise ImportError with the install command."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(f"{what} needs matplotlib, which is not installed: "
                          f"{INSTALL_HINT}") from None
    return matplotlib


_LABELS = {"loss": "cost", "accuracy": "accuracy"}


def _metric_list(metrics, available):
    if metrics is None:
        metrics = [m for m in ("loss", "accuracy") if m in available or f"val_{m}" in available]
        if not metrics:
            raise ValueError("the history holds no loss or accuracy to plot (did any epoch "
                             "complete?)")
        return metrics
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, (list, tuple)) or not metrics:
        raise TypeError(f"metrics must be None, a metric name or a non-empty list of names, "
                        f"got {metrics!r}")
    out = []
    for m in metrics:
        if not isinstance(m, str):
            raise TypeError(f"metrics must hold strings, got {m!r}")
        base = m[4:] if m.startswith("val_") else m
        if base not in available and f"val_{base}" not in available:
            raise ValueError(f"metrics: {m!r} is not in the history (it has "
                             f"{', '.join(sorted(available)) or 'nothing'})")
        if base not in out:
            out.append(base)
    return out


def _axes_list(ax, n):
    if ax is None:
        return None
    if hasattr(ax, "plot") and hasattr(ax, "figure"):
        axes = [ax]
    else:
        try:
            axes = list(ax.ravel() if hasattr(ax, "ravel") else ax)
        except TypeError:
            raise TypeError(f"ax must be a matplotlib Axes or a sequence of Axes, got "
                            f"{type(ax).__name__}") from None
        if not all(hasattr(a, "plot") and hasattr(a, "figure") for a in axes):
            raise TypeError("ax must be a matplotlib Axes or a sequence of Axes")
    if len(axes) != n:
        raise ValueError(f"ax: {n} metric(s) to plot need {n} Axes, got {len(axes)}")
    return axes


def _epoch_number(value, name):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a 0-based epoch number or None, got {value!r}")
    return int(value)


def draw_curves(ax, epochs, series, *, ylabel, early_stopping=None, diverged_epoch=None):
    """Draw per-epoch curves on ``ax`` (the shared drawing of :func:`plot_history`).

    Parameters
    ----------
    ax : matplotlib Axes
    epochs : sequence of int, shape (n,)
        0-based epoch numbers; drawn 1-based, as training prints them.
    series : dict of str to sequence of float, each of shape (n,)
        Label to values, e.g. ``{"training": loss, "validation": val_loss}``.
    ylabel : str
    early_stopping : dict, optional
        ``{"best_epoch", "stopped_epoch", "restored"}`` (0-based epochs, or
        None), as :class:`~fastsgd.EarlyStopping` records it.
    diverged_epoch : int, optional
        The 0-based epoch in which training diverged.
    """
    x = [e + 1 for e in epochs]
    for (label, values), style in zip(series.items(), ("-", "--", "-.", ":")):
        ax.plot(x, values, style, marker="o" if len(x) <= 30 else None, ms=3, label=label)
    es = early_stopping or {}
    best = _epoch_number(es.get("best_epoch"), "early_stopping['best_epoch']")
    stop = _epoch_number(es.get("stopped_epoch"), "early_stopping['stopped_epoch']")
    if best is not None:
        what = "restored best epoch" if es.get("restored") else "best epoch"
        ax.axvline(best + 1, color="C2", ls=":", lw=1.5, label=f"{what} ({best + 1})")
    if stop is not None:
        ax.axvline(stop + 1, color="C3", ls="--", lw=1.2, label=f"early stop ({stop + 1})")
    if diverged_epoch is not None:
        ax.axvline(diverged_epoch + 1, color="k", ls="-", lw=1,
                   label=f"diverged (epoch {diverged_epoch + 1})")
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_history(history, metrics=None, ax=None, *, early_stopping=None):
    """Plot the learning curves of a :class:`~fastsgd.History`.

    Parameters
    ----------
    history : History
        What :meth:`Trainer.fit <fastsgd.Trainer.fit>` returned; its
        ``history`` dict holds per-epoch lists of length ``len(history.epoch)``.
    metrics : None, str or list of str
        ``"loss"`` (the cost) and/or ``"accuracy"``; each gets one panel with
        its training and (when recorded) validation curve. None plots every
        one of the two that was recorded.
    ax : matplotlib Axes or sequence of Axes, optional
        One Axes per metric to draw on. None makes a new figure with
        ``pyplot`` (one panel per metric, side by side).
    early_stopping : dict, optional
        Overrides ``history.early_stopping``, which
        :class:`~fastsgd.EarlyStopping` sets at the end of training: the
        best (restored) epoch and the epoch training stopped in are marked.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on.

    Raises
    ------
    ImportError
        matplotlib is not installed.
    ValueError, TypeError
        Unknown metric names, no completed epoch, or the wrong number of Axes.
    """
    require_matplotlib()
    if not hasattr(history, "history") or not hasattr(history, "epoch"):
        raise TypeError(f"history must be a fastsgd History, got {type(history).__name__}")
    data = history.history
    metrics = _metric_list(metrics, data)
    axes = _axes_list(ax, len(metrics))
    if axes is None:
        import matplotlib.pyplot as plt
        fig, axs = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
        axes = list(axs[0])
    fig = axes[0].figure
    es = early_stopping if early_stopping is not None else getattr(history, "early_stopping", None)
    if es is not None and not isinstance(es, dict):
        raise TypeError(f"early_stopping must be a dict, got {type(es).__name__}")
    diverged = getattr(history, "diverged", None)
    div_epoch = diverged.get("epoch") if isinstance(diverged, dict) else None
    for a, m in zip(axes, metrics):
        series = {}
        if m in data:
            series["training"] = data[m]
        if f"val_{m}" in data:
            series["validation"] = data[f"val_{m}"]
        draw_curves(a, history.epoch, series, ylabel=_LABELS.get(m, m), early_stopping=es,
                    diverged_epoch=div_epoch)
        a.set_title(_LABELS.get(m, m).capitalize() + " per epoch")
    fig.tight_layout()
    return fig
