"""Figures of training: learning curves from a run log, delay distributions, and the DCLS
kernel-evolution figure (delay positions and widths over epochs)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from ..synapses.kernels import gaussian_kernel
from ..training.logs import read_log_rows
from .rasters import legend_outside

#: Learning-curve columns: (panel, label, accepted column names in order of preference).
CURVES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("loss", "train", ("train_loss",)),
    ("loss", "validation", ("val_loss",)),
    ("accuracy", "train", ("train_acc", "train_accuracy")),
    ("accuracy", "validation", ("val_acc", "val_accuracy")),
)


def read_training_log(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a per-epoch training log: ``log.csv`` / ``*.csv`` (header row) or
    ``log.jsonl`` / ``*.jsonl`` (one JSON object per line). A directory is searched for
    ``log.jsonl`` then ``log.csv``. Values stay as written (CSV values are strings)."""
    path = Path(path)
    if path.is_dir():
        found = [path / n for n in ("log.jsonl", "log.csv") if (path / n).exists()]
        if not found:
            raise FileNotFoundError(f"no log.jsonl or log.csv in {path}")
        path = found[0]
    if not path.exists():
        raise FileNotFoundError(f"training log {path} does not exist")
    return read_log_rows(path)


def _number(value: Any) -> float:
    """A log cell as a float (missing, empty, null or non-numeric -> NaN)."""
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def learning_curves(log: str | Path | Sequence[Mapping[str, Any]], *,
                    title: str = "Learning curves") -> Figure:
    """Loss and accuracy against epoch from a training log.

    Args:
        log: a log file or run directory (:func:`read_training_log`) or its rows. Columns used:
            ``epoch`` (else the row number, from 1), ``train_loss``, ``val_loss``,
            ``train_acc`` / ``train_accuracy``, ``val_acc`` / ``val_accuracy`` (fractions in
            ``[0, 1]``, drawn in %). Missing columns or cells are skipped; the accuracy panel is
            left out when the log has no accuracy.
        title: figure title.

    Returns:
        A :class:`~matplotlib.figure.Figure` with one or two panels.
    """
    rows = read_training_log(log) if isinstance(log, (str, Path)) else list(log)
    if not rows:
        raise ValueError("the training log has no rows")
    epochs = [_number(r.get("epoch", i + 1)) for i, r in enumerate(rows)]
    series: dict[str, list[tuple[str, list[float], list[float]]]] = {"loss": [],
                                                                     "accuracy": []}
    for panel, label, names in CURVES:
        name = next((n for n in names if any(n in r for r in rows)), None)
        if name is None:
            continue
        pts = [(e, _number(r.get(name))) for e, r in zip(epochs, rows, strict=True)]
        pts = [(e, v) for e, v in pts if math.isfinite(e) and math.isfinite(v)]
        if pts:
            scale = 100.0 if panel == "accuracy" else 1.0
            series[panel].append((label, [e for e, _ in pts], [v * scale for _, v in pts]))
    panels = [p for p in ("loss", "accuracy") if series[p]]
    if not panels:
        raise ValueError("the training log has none of the columns train_loss, val_loss, "
                         "train_acc/train_accuracy, val_acc/val_accuracy")
    fig = Figure(figsize=(5.5 * len(panels) + 1.5, 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels, strict=True):
        for (label, x, y), marker in zip(series[panel], ("o", "s"), strict=False):
            ax.plot(x, y, marker=marker, ms=3, lw=1.2, label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss" if panel == "loss" else "accuracy (%)")
        ax.set_title(panel)
        ax.grid(alpha=0.3)
        legend_outside(ax)
    fig.suptitle(title)
    return fig


def delay_distributions(delays: Mapping[str, Tensor], *, bins: int = 30, unit: str = "ms",
                        title: str = "Delay distribution") -> Figure:
    """Histograms of delays (e.g. before and after training) overlaid on one axes.

    Args:
        delays: label -> delays in seconds (any shape; e.g.
            ``{"before training": d0, "after training": d1}``).
        bins: number of bins, shared by all histograms.
        unit: ``"ms"`` or ``"s"`` for the x axis.
        title: axes title.
    """
    scale = {"ms": 1e3, "s": 1.0}
    if unit not in scale:
        raise ValueError(f"unit must be 'ms' or 's', got {unit!r}")
    if not delays:
        raise ValueError("delays is empty: give label -> delays (s)")
    values = {k: v.detach().cpu().double().reshape(-1) * scale[unit] for k, v in delays.items()}
    for k, v in values.items():
        if len(v) == 0 or not bool(torch.isfinite(v).all()):
            raise ValueError(f"delays[{k!r}] is empty or not finite")
    lo = min(float(v.min()) for v in values.values())
    hi = max(float(v.max()) for v in values.values())
    edges = torch.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    fig = Figure(figsize=(7.5, 3.8), layout="constrained")
    ax = fig.subplots()
    for (label, v), color in zip(values.items(), ("tab:blue", "tab:orange", "tab:green",
                                                  "tab:red", "tab:purple"), strict=False):
        ax.hist(v.numpy(), bins=edges.numpy(), histtype="step", lw=1.6, color=color,
                label=f"{label} (mean {float(v.mean()):.3g} {unit}, n = {len(v)})")
    ax.set_xlabel(f"delay ({unit})")
    ax.set_ylabel("synapses")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    legend_outside(ax)
    return fig


def kernel_evolution(epochs: Sequence[float], delays: Tensor, sigmas: Tensor | Sequence[float],
                     *, dt: float, max_delay: float, synapses: Sequence[int] | None = None,
                     title: str = "DCLS delay kernels during training") -> Figure:
    """The DCLS kernel-evolution figure: each synapse's Gaussian delay kernel moving (position)
    and narrowing (width) over the epochs.

    Left: delay position against epoch, with a ``± sigma`` band, per synapse. Right: the
    kernels (:func:`ctsnn.synapses.kernels.gaussian_kernel`, taps on the grid ``dt``) of the
    first synapse at every epoch, coloured from early (light) to late (dark).

    Args:
        epochs: ``[E]`` epoch numbers.
        delays: ``[E, S]`` delays (s) of ``S`` synapses at each epoch.
        sigmas: ``[E]`` or ``[E, S]`` kernel widths (s; the DCLS ``sigma_eff``).
        dt: grid step (s) of the kernel taps. max_delay: kernel span (s).
        synapses: indices into ``S`` drawn on the left (default: up to 6).
        title: figure title.
    """
    delays = delays.detach().cpu().double()
    sig = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu()
    n_epochs = len(epochs)
    if delays.ndim != 2 or delays.shape[0] != n_epochs:
        raise ValueError(f"delays must be [E, S] with E = {n_epochs} epochs, got "
                         f"{list(delays.shape)}")
    if sig.ndim == 1 and len(sig) == n_epochs:
        sig = sig[:, None].expand_as(delays)
    if sig.shape != delays.shape:
        raise ValueError(f"sigmas must be [E] or [E, S] = {list(delays.shape)}, got "
                         f"{list(sig.shape)}")
    if not bool((sig > 0).all()):
        raise ValueError("sigmas must be positive (s)")
    k = round(max_delay / dt) + 1
    chosen = list(synapses) if synapses is not None else list(range(min(6, delays.shape[1])))
    for s in chosen:
        if not 0 <= s < delays.shape[1]:
            raise ValueError(f"synapse {s} is out of range: {delays.shape[1]} synapses")
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    ep = torch.as_tensor(list(epochs), dtype=torch.float64)
    for i, s in enumerate(chosen):
        color = f"C{i % 10}"
        d, w = delays[:, s] * 1e3, sig[:, s] * 1e3
        left.plot(ep, d, color=color, lw=1.4, label=f"synapse {s}")
        left.fill_between(ep, d - w, d + w, color=color, alpha=0.15)
    left.set_xlabel("epoch")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_ylabel("delay (ms)")
    left.set_title("kernel position ± width")
    left.set_ylim(-0.05 * max_delay * 1e3, 1.05 * max_delay * 1e3)
    legend_outside(left)
    s0 = chosen[0]
    taps = gaussian_kernel(delays[:, s0] / dt, sig[:, s0] / dt, k)  # [E, K]
    lags = torch.arange(k, dtype=torch.float64) * dt * 1e3
    for e in range(n_epochs):
        shade = 0.25 + 0.75 * (e / max(n_epochs - 1, 1))
        right.step(lags, taps[e], where="mid", color=(0.1, 0.2, 0.6, shade), lw=1.0,
                   label=f"epoch {epochs[e]:g}" if e in (0, n_epochs - 1) else None)
    right.set_xlabel("delay (ms)")
    right.set_ylabel("kernel tap (unit mass)")
    right.set_title(f"kernel of synapse {s0} over epochs (dt = {dt * 1e3:g} ms)")
    legend_outside(right)
    fig.suptitle(title)
    return fig


__all__ = [
    "CURVES", "delay_distributions", "kernel_evolution", "learning_curves", "read_training_log",
]
