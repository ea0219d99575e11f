"""The papers' SHD augmentations (SEEDS.md B4, C4), seeded per (seed, epoch, item).

DelRec (on binned count rasters ``[T, C]``, 10 ms bins):

* :func:`delrec_time_shift` — every channel shifted in time by its own integer ``s``, uniform in
  ``[-max_shift, max_shift]`` (100 steps), ``s > 0`` delays; fixed length ``T``, zero fill.
* :func:`delrec_blend` — two same-class rasters: shift by ``round(com_a - com_b)`` bins so their
  centres of mass in time (count-weighted mean bin; ``(T-1)/2`` when empty) agree, pad both to a
  common length (the later one is padded on the left), thin each cell with
  ``Binomial(count, p)`` (p = 0.5) and add.
* :class:`DelRecAugmented` — 3x data set: originals, time-shifted copies, blends with a random
  other sample of the same class (a shift instead when the class has a single sample).

EventProp (on exact events, before binning):

* :func:`eventprop_channel_shift` — the whole sample moved along the channel axis by one integer
  uniform in ``[-max_shift, max_shift]`` (40); events leaving ``[0, n_units)`` are dropped.
* :func:`eventprop_blend` — two same-class samples each moved half-way to the other's mean
  channel (rounded to an integer) and mean time; events out of range dropped; each event kept
  with probability ``p`` (0.5); merged and sorted by time.
* :class:`EventPropAugmented` — originals plus ``n_blend`` blends per epoch (7,644 for SHD in
  the paper) appended; the channel shift is applied to every item.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "DelRecAugmented", "EventPropAugmented", "delrec_blend", "delrec_time_shift",
    "eventprop_blend", "eventprop_channel_shift",
]


def _seed(*parts: int) -> int:
    digest = hashlib.sha256(",".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def delrec_time_shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Per-channel integer time shift of a raster ``x`` [T, C] (fixed T, zero fill)."""
    t, c = x.shape
    s = torch.randint(-max_shift, max_shift + 1, (c,), generator=generator)
    src = torch.arange(t).unsqueeze(1) - s.unsqueeze(0)  # [T, C] source step of each output
    valid = (src >= 0) & (src < t)
    out = torch.gather(x, 0, src.clamp(0, max(t - 1, 0)))
    return torch.where(valid, out, torch.zeros_like(out))


def _com_time(x: Tensor) -> float:
    mass = x.sum(dim=1).double()
    total = float(mass.sum())
    if total <= 0:
        return 0.5 * (x.shape[0] - 1)
    return float((torch.arange(x.shape[0], dtype=torch.float64) * mass).sum()) / total


def delrec_blend(a: Tensor, b: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """Blend two count rasters ``a`` [Ta, C], ``b`` [Tb, C] -> [T, C] (see module docs)."""
    align = round(_com_time(a) - _com_time(b))
    la, lb = max(0, -align), max(0, align)
    t = max(a.shape[0] + la, b.shape[0] + lb)
    pa = a.new_zeros(t, a.shape[1])
    pb = a.new_zeros(t, a.shape[1])
    pa[la:la + a.shape[0]] = a
    pb[lb:lb + b.shape[0]] = b

    def thin(x: Tensor) -> Tensor:
        n = x.clamp_min(0).round().to(torch.float64)
        return torch.binomial(n, torch.full_like(n, p), generator=generator).to(x.dtype)

    return thin(pa) + thin(pb)


class _Epoch:
    """Mixin: ``set_epoch(e)`` changes the random draws; same (seed, epoch, item) -> same item."""

    seed: int
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the random draws of ``epoch`` (call before each epoch)."""
        self.epoch = int(epoch)
        self._new_epoch()

    def _new_epoch(self) -> None:
        pass


def _class_members(labels: np.ndarray) -> dict[int, np.ndarray]:
    return {int(y): np.flatnonzero(labels == y) for y in np.unique(labels)}


class DelRecAugmented(_Epoch, Dataset):
    """DelRec's tripled SHD training set over a binned dataset with items ``(raster, label)``.

    Items ``i < n``: originals; ``n <= i < 2n``: :func:`delrec_time_shift` of item ``i - n``;
    ``2n <= i``: :func:`delrec_blend` of item ``i - 2n`` with another random item of its class.
    ``dataset`` needs a ``labels`` array (as :class:`~ctsnn.data.SpikingAudioH5` has).
    """

    def __init__(self, dataset: Any, max_shift: int = 100, p: float = 0.5, seed: int = 0):
        self.dataset, self.max_shift, self.p, self.seed = dataset, int(max_shift), float(p), seed
        self.labels_base = np.asarray(dataset.labels, dtype=np.int64)
        self._members = _class_members(self.labels_base)
        self.n = len(dataset)

    def __len__(self) -> int:
        return 3 * self.n

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        if not 0 <= i < 3 * self.n:
            raise IndexError(f"index {i} out of range for {3 * self.n} items")
        part, pos = divmod(i, self.n)
        x, y = self.dataset[pos]
        if part == 0:
            return x, y
        g = torch.Generator().manual_seed(_seed(self.seed, self.epoch, i))
        if part == 2:
            pool = self._members[int(y)]
            pool = pool[pool != pos]
            if pool.size:
                j = int(pool[int(torch.randint(pool.size, (1,), generator=g))])
                return delrec_blend(x, self.dataset[j][0], self.p, g), y
        return delrec_time_shift(x, self.max_shift, g), y


def eventprop_channel_shift(
    times: np.ndarray, units: np.ndarray, max_shift: int, n_units: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Shift all ``units`` [E] by one integer in ``[-max_shift, max_shift]``; drop the events
    that leave ``[0, n_units)``.  Returns ``(times, units)``."""
    s = int(rng.integers(-max_shift, max_shift + 1))
    u = units + s
    keep = (u >= 0) & (u < n_units)
    return times[keep], u[keep]


def eventprop_blend(
    a: tuple[np.ndarray, np.ndarray],
    b: tuple[np.ndarray, np.ndarray],
    p: float,
    n_units: int,
    t_max: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Blend two samples ``(times [E] s, units [E])`` of one class (see module docs).

    Times after the shift must lie in ``[0, t_max)``.  Returns float64 times and int64 units,
    sorted by time (stably).
    """
    ta, ua = (np.asarray(v, dtype=np.float64 if k == 0 else np.int64) for k, v in enumerate(a))
    tb, ub = (np.asarray(v, dtype=np.float64 if k == 0 else np.int64) for k, v in enumerate(b))
    out_t, out_u = [], []
    if ta.size and tb.size:
        dc = (ub.mean() - ua.mean()) / 2
        dt = (tb.mean() - ta.mean()) / 2
    else:
        dc = dt = 0.0
    for t, u, sign in ((ta, ua, 1.0), (tb, ub, -1.0)):
        t = t + sign * dt
        u = u + int(np.rint(sign * dc))
        keep = (u >= 0) & (u < n_units) & (t >= 0) & (t < t_max)
        keep &= rng.random(t.shape[0]) < p
        out_t.append(t[keep])
        out_u.append(u[keep])
    t = np.concatenate(out_t)
    u = np.concatenate(out_u)
    order = np.argsort(t, kind="stable")
    return t[order], u[order]


class EventPropAugmented(_Epoch, Dataset):
    """EventProp's SHD training set over an exact-event dataset (``recipe=None``).

    Args:
        dataset: items ``(times, units, label)`` and an ``events(i)`` method plus ``labels``
            (as :class:`~ctsnn.data.SpikingAudioH5`).
        recipe: binning recipe applied after augmentation (e.g. ``BinaryBins()``); ``None``
            keeps exact events.
        max_shift: channel shift range (40; 0 disables).
        n_blend: blends appended per epoch (0 disables; 7,644 in the paper for SHD).
        p: keep probability of the blend (0.5).
        n_units, t_max: channel count and time limit (s) of the blend's range check.
        seed: base seed.
    Items: ``(times [E] float32 s, units [E] int64, label)`` or ``(raster [T, C], label)``.
    """

    def __init__(self, dataset: Any, recipe: Any = None, max_shift: int = 40, n_blend: int = 0,
                 p: float = 0.5, n_units: int = 700, t_max: float = 1.0, seed: int = 0,
                 dtype: torch.dtype = torch.float32):
        self.dataset, self.recipe, self.max_shift = dataset, recipe, int(max_shift)
        self.n_blend, self.p, self.n_units, self.t_max = int(n_blend), p, n_units, t_max
        self.seed, self.dtype = seed, dtype
        self.labels_base = np.asarray(dataset.labels, dtype=np.int64)
        self._members = _class_members(self.labels_base)
        self.n = len(dataset)
        self._new_epoch()

    def _new_epoch(self) -> None:
        rng = np.random.default_rng(_seed(self.seed, self.epoch, -1))
        first = rng.integers(0, self.n, self.n_blend) if self.n else np.zeros(0, np.int64)
        second = np.empty_like(first)
        for k, i in enumerate(first):
            pool = self._members[int(self.labels_base[i])]
            pool = pool[pool != i] if pool.size > 1 else pool
            second[k] = pool[rng.integers(pool.size)]
        self.pairs = np.stack([first, second], axis=1)

    def __len__(self) -> int:
        return self.n + self.n_blend

    def __getitem__(self, i: int) -> tuple[Tensor, ...]:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        rng = np.random.default_rng(_seed(self.seed, self.epoch, i))
        if i < self.n:
            times, units, y = self.dataset.events(i)
        else:
            a, b = self.pairs[i - self.n]
            ta, ua, y = self.dataset.events(int(a))
            tb, ub, _ = self.dataset.events(int(b))
            times, units = eventprop_blend((ta, ua), (tb, ub), self.p, self.n_units, self.t_max,
                                           rng)
        if self.max_shift > 0:
            times, units = eventprop_channel_shift(times, units, self.max_shift, self.n_units,
                                                   rng)
        if self.recipe is None:
            return torch.from_numpy(times.astype(np.float32)), torch.from_numpy(units), y
        raster = self.recipe.bin(times, units, self.n_units)
        return torch.from_numpy(raster).to(self.dtype), y
