"""The Yin-Yang data set (Kriener et al.) by its published rule, and its latency encoding.

The rule (SEEDS D4): a point ``(x, y)`` is drawn uniformly in the square ``[0, 2 r_big]^2``
and rejected outside the disc of radius ``r_big = 0.5`` centred at ``(0.5, 0.5)``; its class is
2 ("dots") inside either small disc of radius ``r_small = 0.1`` centred at ``(0.25, 0.5)`` and
``(0.75, 0.5)``, else 1 or 0 by the yin-yang shape (1: within ``r_big/2`` of the left dot
centre, or in the upper half farther than ``r_big/2`` from the right dot centre). Classes are
balanced by drawing the wanted class uniformly first and rejecting points of other classes.
The features are ``[x, y, 1 - x, 1 - y]``.

Draws use numpy's legacy ``RandomState(seed)`` in the published order (per sample: the class
with ``randint(3)``, then pairs ``rand(2)`` until one is accepted), so the published files
(train 5,000 / validation 1,000 / test 1,000 with seeds 42 / 41 / 40) are reproduced exactly.

Encoding (SEEDS D4, the EventProp-with-delays paper): each feature ``v`` in ``[0, 1]`` becomes
one input spike at ``t_early + v (t_late - t_early)`` = 1.5 ms + 18.5 ms · v (times in
**seconds** here), plus an optional bias spike on a fifth channel (off in that paper).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..spikes import Spikes

#: Published splits: name -> (number of samples, seed).
YINYANG_SPLITS = {"train": (5000, 42), "validation": (1000, 41), "test": (1000, 40)}


def yinyang_class(x: float, y: float, r_small: float = 0.1, r_big: float = 0.5) -> int:
    """Class of a point of the disc: 0, 1 (the two halves) or 2 (the dots); see the module docs."""
    d_right = math.hypot(x - 1.5 * r_big, y - r_big)
    d_left = math.hypot(x - 0.5 * r_big, y - r_big)
    if d_right < r_small or d_left < r_small:
        return 2
    is_yin = (d_right <= r_small or r_small < d_left <= 0.5 * r_big
              or (y > r_big and d_right > 0.5 * r_big))
    return int(is_yin)


def yinyang_arrays(n: int, seed: int, *, r_small: float = 0.1,
                   r_big: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """``n`` Yin-Yang samples drawn with ``numpy.random.RandomState(seed)``.

    Returns:
        ``(samples, labels)``: float64 ``(n, 4)`` array of ``[x, y, 1-x, 1-y]`` and int64
        ``(n,)`` labels in {0, 1, 2}. ``yinyang_arrays(5000, 42)`` equals the published
        ``train_*.npy`` files (validation: 1000, 41; test: 1000, 40).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.RandomState(seed)
    samples = np.empty((n, 4), dtype=np.float64)
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        goal = rng.randint(3)
        while True:
            x, y = rng.rand(2) * 2.0 * r_big
            if math.sqrt((x - r_big) ** 2 + (y - r_big) ** 2) > r_big:
                continue
            c = yinyang_class(x, y, r_small, r_big)
            if c == goal:
                break
        samples[i] = (x, y, 1.0 - x, 1.0 - y)
        labels[i] = c
    return samples, labels


def latency_encode(
    features: Any,
    *,
    t_early: float = 1.5e-3,
    t_late: float = 20e-3,
    bias_time: float | None = None,
    dt: float = 1e-3,
    n_steps: int | None = None,
) -> Spikes:
    """One spike per feature at ``t_early + v (t_late - t_early)`` seconds (SEEDS D4).

    Args:
        features: ``[B, F]`` values in ``[0, 1]`` (tensor or array; a single ``[F]`` sample is
            treated as ``B = 1``). Floating dtypes are kept (float64 stays float64).
        t_early, t_late: spike times of the values 0 and 1 (s; default 1.5 ms and 20 ms).
        bias_time: if given, one more channel (index F) spikes at this time (s) in every
            sample — the optional bias input of the original data set (off in EventProp).
        dt: grid step of the returned spikes (s); the spike times are exact.
        n_steps: grid length; default ``ceil(max(t_late, bias_time) / dt)``.

    Returns:
        :class:`~ctsnn.Spikes` with ``batch_size = B``, ``n_units = F`` (``F + 1`` with bias).
    """
    x = torch.as_tensor(features)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if x.dim() == 1:
        x = x.unsqueeze(0)
    if x.dim() != 2:
        raise ValueError(f"features must have shape [B, F], got {tuple(x.shape)}")
    if x.numel() and bool(((x < 0) | (x > 1) | ~torch.isfinite(x)).any()):
        raise ValueError("features must lie in [0, 1] for the latency encoding")
    if not 0 <= t_early <= t_late:
        raise ValueError(f"need 0 <= t_early <= t_late, got {t_early!r}, {t_late!r}")
    b, f = x.shape
    times = (t_early + x * (t_late - t_early)).clamp(max=t_late)  # no rounding past t_late
    n_units = f
    if bias_time is not None:
        if bias_time < 0:
            raise ValueError(f"bias_time must be >= 0 s, got {bias_time!r}")
        times = torch.cat([times, torch.full((b, 1), float(bias_time), dtype=x.dtype)], 1)
        n_units = f + 1
    t_max = max(t_late, bias_time or 0.0)
    if n_steps is None:
        n_steps = max(1, math.ceil(t_max / dt - 1e-9))
    units = torch.arange(n_units).repeat(b)
    batch = torch.arange(b).repeat_interleave(n_units)
    return Spikes.from_events(times.reshape(-1), units, batch, dt=dt, n_steps=n_steps,
                              batch_size=b, n_units=n_units)


class YinYang(Dataset):
    """The Yin-Yang data set as a PyTorch dataset, generated by the published rule.

    ``YinYang("train")`` has the published 5,000 training samples (seed 42), ``"validation"``
    1,000 (seed 41), ``"test"`` 1,000 (seed 40); ``size``/``seed`` override them.
    Item ``i`` is ``(features, label)``: float64 tensor ``[4]`` ``[x, y, 1-x, 1-y]`` and an
    int64 scalar tensor. :meth:`collate` turns a list of items into latency-encoded
    :class:`~ctsnn.Spikes` (exact times, seconds) and labels ``[B]``.

    Args:
        split: "train", "validation" (alias "valid") or "test".
        size, seed: number of samples and numpy seed (defaults: the published ones).
        r_small, r_big: radii of the dots and of the disc.
        t_early, t_late, bias_time, dt, n_steps: encoding used by :meth:`collate` (see
            :func:`latency_encode`).
    """

    def __init__(self, split: str = "train", *, size: int | None = None,
                 seed: int | None = None, r_small: float = 0.1, r_big: float = 0.5,
                 t_early: float = 1.5e-3, t_late: float = 20e-3,
                 bias_time: float | None = None, dt: float = 1e-3,
                 n_steps: int | None = None) -> None:
        split = "validation" if split == "valid" else split
        if split not in YINYANG_SPLITS:
            raise ValueError(f"split must be one of {sorted(YINYANG_SPLITS)}, got {split!r}")
        n0, s0 = YINYANG_SPLITS[split]
        self.split = split
        samples, labels = yinyang_arrays(n0 if size is None else size,
                                         s0 if seed is None else seed,
                                         r_small=r_small, r_big=r_big)
        self.samples = torch.from_numpy(samples)  # [N, 4] float64
        self.labels = torch.from_numpy(labels)    # [N] int64
        self.encoding = dict(t_early=t_early, t_late=t_late, bias_time=bias_time, dt=dt,
                             n_steps=n_steps)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.samples[i], self.labels[i]

    def encode(self, features: Any) -> Spikes:
        """Latency-encode ``[B, 4]`` features with this dataset's encoding."""
        return latency_encode(features, **self.encoding)

    def collate(self, items: Sequence[tuple[Tensor, Tensor]]) -> tuple[Spikes, Tensor]:
        """``DataLoader`` collate function: ``(Spikes [B x 4 channels], labels [B])``."""
        x = torch.stack([torch.as_tensor(it[0]) for it in items])
        y = torch.stack([torch.as_tensor(it[1]) for it in items]).to(torch.int64)
        return self.encode(x), y


__all__ = ["YINYANG_SPLITS", "YinYang", "latency_encode", "yinyang_arrays",
           "yinyang_class"]
