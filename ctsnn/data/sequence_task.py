"""A harder, parametric sequence-detection task (generalises SEEDS D5; times in seconds).

The basic task (:func:`ctsnn.data.sequence_detection`) has two channels that fire once each,
10 ms apart; the class is their order. Here each class is a *template*: an ordered sequence of
``seq_len`` distinct channels out of ``n_channels``. A sample of class ``c`` fires the channels
of template ``c`` one after another, ``gap`` apart from ``onset``, each time moved by Gaussian
``jitter``, plus ``n_distractors`` spikes on random channels at random times. With
``same_channels=True`` (default) all templates are orderings of the *same* channels, so spike
counts per channel carry no information: only the relative timing tells the classes apart —
which a network solves by learning delays that line a template's spikes up.

The templates are fixed by ``template_seed`` (the same for every call), the samples by
``seed``/``generator``. ``n_channels = seq_len = n_classes = 2``, ``templates=[[0, 1], [1, 0]]``,
no jitter and no distractors give exactly the basic task.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..spikes import Spikes
from .inputs import make_generator


def sequence_templates(n_classes: int = 2, n_channels: int = 2, seq_len: int = 2, *,
                       same_channels: bool = True, template_seed: int = 0) -> Tensor:
    """Distinct class templates: int64 ``[n_classes, seq_len]`` channel indices, in firing
    order, each row without repeated channels.

    With ``same_channels`` every row is an ordering of one common set of ``seq_len`` channels
    (needs ``n_classes <= seq_len!``); otherwise each row draws its own channels. Drawn
    with a generator seeded by ``template_seed``; rows are redrawn until all differ.
    """
    if not 1 <= seq_len <= n_channels:
        raise ValueError(f"need 1 <= seq_len <= n_channels, got seq_len={seq_len}, "
                         f"n_channels={n_channels}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    n_possible = (math.factorial(seq_len) if same_channels
                  else math.perm(n_channels, seq_len))
    if n_classes > n_possible:
        raise ValueError(f"only {n_possible} distinct templates of {seq_len} channels exist "
                         f"(same_channels={same_channels}); n_classes={n_classes} is too many")
    gen = torch.Generator().manual_seed(template_seed)
    common = torch.randperm(n_channels, generator=gen)[:seq_len]
    rows: list[tuple[int, ...]] = []
    while len(rows) < n_classes:
        if same_channels:
            row = common[torch.randperm(seq_len, generator=gen)]
        else:
            row = torch.randperm(n_channels, generator=gen)[:seq_len]
        key = tuple(row.tolist())
        if key not in rows:
            rows.append(key)
    return torch.tensor(rows, dtype=torch.int64)


def sequence_detection_task(
    n: int,
    *,
    n_channels: int = 4,
    seq_len: int = 4,
    n_classes: int = 4,
    gap: float = 0.010,
    onset: float = 0.0,
    jitter: float = 0.0,
    n_distractors: int = 0,
    tail: float = 0.015,
    same_channels: bool = True,
    templates: Sequence[Sequence[int]] | Tensor | None = None,
    template_seed: int = 0,
    labels: Any = None,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    dt: float = 1e-3,
    dtype: torch.dtype = torch.float64,
) -> tuple[Spikes, Tensor]:
    """``n`` trials of the parametric sequence-detection task and their labels.

    Sample of class ``c``: channel ``templates[c, k]`` spikes at ``onset + k * gap + e_k``,
    ``e_k ~ N(0, jitter^2)``, for ``k = 0..seq_len-1``; then ``n_distractors`` extra spikes,
    each on a uniform channel at a uniform time in ``[0, duration)``. Times are clipped to
    ``[0, duration]``, ``duration = onset + (seq_len - 1) * gap + tail``.

    Args:
        n: number of trials B (ignored when ``labels`` is given).
        n_channels: input channels N. seq_len: spikes of a template (<= n_channels).
        n_classes: number of classes (templates).
        gap, onset, jitter, tail: timing (s): spacing of a template's spikes, time of its first
            spike, standard deviation of each spike's timing noise, time after its last spike.
        n_distractors: random extra spikes per trial (an exact count).
        same_channels: all templates use the same channels (see :func:`sequence_templates`).
        templates: explicit ``[n_classes, seq_len]`` channel orders (overrides the drawn ones).
        template_seed: seed of the drawn templates.
        labels: explicit classes ``[B]``; default: uniform draws.
        seed, generator: draw labels, jitter and distractors, in this order (see
            :mod:`ctsnn.data.inputs`).
        dt: grid step of the returned spikes (s); times stay exact.
        dtype: dtype of the spike times.

    Returns:
        ``(spikes, labels)``: :class:`~ctsnn.Spikes` (``batch_size = B``,
        ``n_units = n_channels``, ``n_steps = ceil(duration / dt)``) and int64 labels ``[B]``.
    """
    if templates is None:
        tpl = sequence_templates(n_classes, n_channels, seq_len, same_channels=same_channels,
                                 template_seed=template_seed)
    else:
        tpl = torch.as_tensor(templates, dtype=torch.int64)
        if tpl.dim() != 2 or tpl.numel() == 0:
            raise ValueError(f"templates must be [n_classes, seq_len], got {tuple(tpl.shape)}")
        if bool(((tpl < 0) | (tpl >= n_channels)).any()):
            raise ValueError(f"templates hold channels outside [0, {n_channels})")
    n_classes, seq_len = tpl.shape
    if gap < 0 or onset < 0 or jitter < 0 or tail < 0 or n_distractors < 0:
        raise ValueError("gap, onset, jitter, tail (s) and n_distractors must be >= 0")
    gen = make_generator(seed, generator)
    if labels is None:
        y = torch.randint(0, n_classes, (n,), generator=gen)
    else:
        y = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
        if y.numel() and bool(((y < 0) | (y >= n_classes)).any()):
            raise ValueError(f"labels must lie in [0, {n_classes}), got {y.tolist()}")
    b = len(y)
    duration = onset + (seq_len - 1) * gap + tail
    k = torch.arange(seq_len, dtype=torch.float64)
    times = (onset + k * gap).expand(b, seq_len).clone()
    if jitter > 0:
        times += jitter * torch.randn(b, seq_len, generator=gen, dtype=torch.float64)
    units = tpl[y]                                        # [B, seq_len]
    if n_distractors:
        d_units = torch.randint(0, n_channels, (b, n_distractors), generator=gen)
        d_times = torch.rand(b, n_distractors, generator=gen, dtype=torch.float64) * duration
        times = torch.cat([times, d_times], 1)
        units = torch.cat([units, d_units], 1)
    n_steps = max(1, math.ceil(duration / dt - 1e-9))
    times = times.clamp(0.0, min(duration, n_steps * dt)).to(dtype)
    batch = torch.arange(b).repeat_interleave(times.shape[1])
    spikes = Spikes.from_events(times.reshape(-1), units.reshape(-1), batch, dt=dt,
                                n_steps=n_steps, batch_size=b, n_units=n_channels)
    return spikes, y


__all__ = ["sequence_detection_task", "sequence_templates"]
