"""Event datasets: per-sample exact events and a collate function that keeps them exact.

An *event item* is ``(times [E] s, units [E] int64, label)``; :func:`collate_events` batches
items into a :class:`~ctsnn.Spikes` (exact times, a common grid) and labels ``[B]``.
:class:`SpikesDataset` turns a generated batch (e.g. of
:func:`~ctsnn.data.sequence_detection_task`) into such a dataset for a ``DataLoader``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..spikes import Spikes


def collate_events(items: Sequence[tuple[Tensor, Tensor, Tensor]], *, dt: float,
                   n_steps: int, n_units: int) -> tuple[Spikes, Tensor]:
    """Batch ``(times [E_i] s, units [E_i], label)`` items into ``(Spikes, labels [B])`` on a
    grid of ``n_steps`` steps of ``dt`` seconds with ``n_units`` channels."""
    if not items:
        raise ValueError("collate_events needs at least one item")
    times = torch.cat([torch.as_tensor(it[0]) for it in items])
    units = torch.cat([torch.as_tensor(it[1], dtype=torch.int64) for it in items])
    batch = torch.cat([torch.full((len(it[0]),), b, dtype=torch.int64)
                       for b, it in enumerate(items)])
    y = torch.stack([torch.as_tensor(it[2]) for it in items]).to(torch.int64)
    spikes = Spikes.from_events(times, units, batch, dt=dt, n_steps=n_steps,
                                batch_size=len(items), n_units=n_units)
    return spikes, y


class SpikesDataset(Dataset):
    """A dataset over the samples of one :class:`~ctsnn.Spikes` batch and its labels ``[B]``.

    Item ``i`` is ``(times [E_i] s, units [E_i], label)``; :meth:`collate` rebuilds batches on
    the original grid (``dt``, ``n_steps``, ``n_units``), times unchanged.
    """

    def __init__(self, spikes: Spikes, labels: Tensor) -> None:
        labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
        if len(labels) != spikes.batch_size:
            raise ValueError(f"{len(labels)} labels for a batch of {spikes.batch_size} samples")
        self.spikes, self.labels = spikes, labels
        counts = torch.bincount(spikes.batch, minlength=spikes.batch_size)
        self._starts = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        a, b = int(self._starts[i]), int(self._starts[i + 1])  # events are sorted by sample
        return self.spikes.times[a:b], self.spikes.units[a:b], self.labels[i]

    def collate(self, items: Sequence[tuple[Tensor, Tensor, Tensor]]) -> tuple[Spikes, Tensor]:
        """``DataLoader`` collate function: ``(Spikes, labels [B])``."""
        s = self.spikes
        return collate_events(items, dt=s.dt, n_steps=s.n_steps, n_units=s.n_units)


__all__ = ["SpikesDataset", "collate_events"]
