"""Binning recipes for SHD/SSC spike trains (SEEDS.md D1), reproducible bit for bit.

Each recipe turns the spikes of one sample — ``times`` [E] in **seconds** (the file's dtype,
float16 for SHD/SSC) and ``units`` [E] (channels ``0..n_units-1``) — into a time-first count
raster ``[T, C]`` (numpy int64; ``C = n_units // pool``).  A recipe is a frozen dataclass: its
:meth:`params` (name and every field) form the cache key of the binned tensors, so any change of
a recipe changes the key.

The four recipes of D1:

1. :class:`FirstSpikeFrames` — SpikingJelly ``data_type='frame', duration=D`` (DCLS, DelRec-SHD):
   ``t_ms = 1000*t`` and ``t_ms - t_ms[first]``, both computed **in the file's dtype** (float16
   for SHD, as numpy does for ``1000*times``), ``T = ceil(t_last/D)`` (the quotient also in
   that dtype), ``bin = floor(t/D)`` (same dtype), counts per (bin, channel).  Events whose bin
   index reaches ``T`` (``t_last`` an exact multiple of ``D``) go to the last bin, as in
   SpikingJelly, whose last frame takes all remaining events.  A sample whose spikes all share
   one time (``T = 0``, on which SpikingJelly fails) gets ``T = 1``; a sample without spikes gets
   ``T = 0`` (an empty ``[0, C]`` raster).  Checked once (not a test: SpikingJelly is no
   dependency) against SpikingJelly 2.0.0's SHD frame integration on 480 samples of the
   spoken-digits training file at D = 1, 7, 10, 25 ms and 300 random float16 samples: equal
   arrays, shapes included.
2. Channel pooling ``pool=5`` (700 → 140): sums of consecutive groups ``5c .. 5c+4``, available
   on every recipe and as :func:`pool_channels`.
3. :class:`DigitizedBins` — DelRec-SSC: absolute time, ``edges = linspace(0, t_max, n_edges)``
   (float64, ``t_max = 1.4``, ``n_edges = 250``), ``bin = digitize(t, edges)`` (``edges[b-1] <=
   t < edges[b]``), counts in a fixed ``[n_edges, C]`` raster; bin 0 stays empty (t >= 0), and
   events at ``t >= t_max`` (bin ``n_edges``, out of range in the reference) are dropped.
4. :class:`BinaryBins` — EventProp (Tonic + mlGeNN): absolute time, ``t_us = trunc(t*1e6)``
   (float64 product, Tonic's integer microseconds), events with ``t_us >= t_max`` dropped,
   ``bin = t_us // dt_us`` (1 ms), 1 where a (bin, channel) cell holds at least one event, fixed
   ``T = ceil(t_max/dt)`` (1000 steps).  Entry ``n`` stands for one spike at the bin start
   ``n*dt`` in the reference.  Tonic multiplies the float16 times by ``1e6``: NumPy 1
   promotes to float32 (NumPy 2 keeps float16 and overflows, a known Tonic problem); over every
   float16 value in ``[0, 1)`` float32 and float64 products give the same 1 ms bin.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "BinaryBins", "DigitizedBins", "FirstSpikeFrames", "RECIPES", "pool_channels",
]


def pool_channels(raster: np.ndarray, pool: int) -> np.ndarray:
    """Sum consecutive groups of ``pool`` channels: ``[T, N] -> [T, N // pool]``.

    ``N`` must be a multiple of ``pool`` (700 = 5 * 140).  ``pool == 1`` returns the input.
    """
    if pool == 1:
        return raster
    t, n = raster.shape
    if n % pool:
        raise ValueError(f"channel pooling: {n} channels are not a multiple of pool={pool}")
    return raster.reshape(t, n // pool, pool).sum(axis=2)


@dataclass(frozen=True)
class _Recipe:
    """Base of the recipes; subclasses declare their fields and ``pool`` (last)."""

    name = "recipe"

    def __post_init__(self) -> None:
        if not isinstance(self.pool, int) or self.pool < 1:
            raise ValueError(f"{type(self).__name__}: pool must be an integer >= 1, got "
                             f"{self.pool!r}")

    def params(self) -> dict[str, Any]:
        """Name and fields of the recipe (JSON-serialisable): the recipe part of a cache key."""
        return {"recipe": self.name, **dataclasses.asdict(self)}

    def n_channels(self, n_units: int) -> int:
        """Channels C of the raster for ``n_units`` input channels."""
        return n_units // self.pool

    @property
    def dt(self) -> float:
        """Width of one bin in seconds."""
        raise NotImplementedError

    binary = False

    def _events(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Bin index [E] (int64) of each event, mask [E] of the kept events, and T."""
        raise NotImplementedError

    def cells(
        self, times: np.ndarray, units: np.ndarray, n_units: int
    ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """Sparse form of :meth:`bin`: ``(T, bins [K], channels [K], values [K])`` (int64) of
        the non-zero cells, sorted by (bin, channel)."""
        times = np.asarray(times)
        units = np.asarray(units).astype(np.int64)
        if not np.issubdtype(times.dtype, np.floating):
            times = times.astype(np.float64)
        if n_units % self.pool:
            raise ValueError(f"channel pooling: {n_units} channels are not a multiple of "
                             f"pool={self.pool}")
        bins, keep, n_bins = self._events(times)
        key, counts = np.unique(bins[keep] * n_units + units[keep], return_counts=True)
        if self.binary:
            counts = np.ones_like(counts)
        n_out = n_units // self.pool
        key = (key // n_units) * n_out + (key % n_units) // self.pool
        key, inverse = np.unique(key, return_inverse=True)
        values = np.bincount(inverse.ravel(), weights=counts, minlength=key.size)
        return n_bins, key // n_out, key % n_out, values.astype(np.int64)

    def bin(self, times: np.ndarray, units: np.ndarray, n_units: int) -> np.ndarray:
        """Bin one sample.

        Args:
            times: [E] spike times in seconds (float; the file's dtype is kept where the recipe
                says so), finite and >= 0.
            units: [E] integer channels in ``[0, n_units)``.
            n_units: number of input channels (700 for SHD/SSC).

        Returns:
            numpy int64 ``[T, n_units // pool]`` counts (0/1 for :class:`BinaryBins`, before
            pooling).
        """
        n_bins, b, c, v = self.cells(times, units, n_units)
        out = np.zeros((n_bins, self.n_channels(n_units)), dtype=np.int64)
        out[b, c] = v
        return out


@dataclass(frozen=True)
class FirstSpikeFrames(_Recipe):
    """D1.1 (+ D1.2 with ``pool=5``): first-spike-aligned counts in frames of ``duration_ms``.

    ``T`` varies per sample (about 100 for SHD at 10 ms); see the module docs for the exact
    arithmetic.  DCLS and DelRec-SHD: ``FirstSpikeFrames(duration_ms=10, pool=5)``.
    """

    duration_ms: float = 10.0
    pool: int = 1
    name = "first_spike_frames"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.duration_ms > 0:
            raise ValueError(f"FirstSpikeFrames: duration_ms must be > 0, got {self.duration_ms}")

    @property
    def dt(self) -> float:
        return self.duration_ms / 1000.0

    def _events(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        keep = np.ones(times.shape, dtype=bool)
        if times.size == 0:
            return np.zeros(0, dtype=np.int64), keep, 0
        ft = times.dtype.type
        t_ms = times * ft(1000)  # milliseconds, in the file's dtype
        t_ms = t_ms - t_ms.min()
        d = ft(self.duration_ms)
        n_bins = max(1, math.ceil(float(t_ms.max() / d)))
        bins = np.minimum(np.floor_divide(t_ms, d), ft(n_bins - 1)).astype(np.int64)
        return bins, keep, n_bins


@dataclass(frozen=True)
class DigitizedBins(_Recipe):
    """D1.3: DelRec-SSC absolute-time bins, ``digitize(t, linspace(0, t_max, n_edges))``.

    Fixed ``T = n_edges`` (250); bin 0 is always empty.  DelRec-SSC:
    ``DigitizedBins(t_max=1.4, n_edges=250, pool=5)``.
    """

    t_max: float = 1.4
    n_edges: int = 250
    pool: int = 1
    name = "digitized_bins"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.t_max > 0 and isinstance(self.n_edges, int) and self.n_edges >= 2):
            raise ValueError(f"DigitizedBins: need t_max > 0 and integer n_edges >= 2, got "
                             f"t_max={self.t_max!r}, n_edges={self.n_edges!r}")

    @property
    def dt(self) -> float:
        return self.t_max / (self.n_edges - 1)

    def _events(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        edges = np.linspace(0.0, self.t_max, self.n_edges)
        bins = np.digitize(times.astype(np.float64), edges).astype(np.int64)
        return bins, bins < self.n_edges, self.n_edges


@dataclass(frozen=True)
class BinaryBins(_Recipe):
    """D1.4: EventProp 1 ms binary bins on absolute time, events at ``t >= t_max`` dropped.

    Fixed ``T = ceil(t_max_us / dt_us)`` (1000).  EventProp: ``BinaryBins()`` (all 700
    channels).  With ``pool > 1`` the pooled raster counts active cells per group.
    """

    dt_ms: float = 1.0
    t_max: float = 1.0
    pool: int = 1
    name = "binary_bins"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.dt_ms > 0 and self.t_max > 0):
            raise ValueError(f"BinaryBins: need dt_ms > 0 and t_max > 0, got dt_ms={self.dt_ms}, "
                             f"t_max={self.t_max}")

    @property
    def dt(self) -> float:
        return self.dt_ms / 1000.0

    binary = True

    def _events(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        dt_us = round(self.dt_ms * 1000)
        t_max_us = round(self.t_max * 1e6)
        t_us = np.trunc(times.astype(np.float64) * 1e6).astype(np.int64)
        return t_us // dt_us, t_us < t_max_us, -(-t_max_us // dt_us)


#: The papers' settings: DCLS and DelRec on SHD, DelRec on SSC, EventProp on SHD/SSC.
RECIPES: dict[str, _Recipe] = {
    "dcls": FirstSpikeFrames(duration_ms=10.0, pool=5),
    "delrec_shd": FirstSpikeFrames(duration_ms=10.0, pool=5),
    "delrec_ssc": DigitizedBins(t_max=1.4, n_edges=250, pool=5),
    "eventprop": BinaryBins(dt_ms=1.0, t_max=1.0),
}
