"""Output spikes regrouped by neuron for the compiled EventProp backward, without argsort.

The engines emit a layer's spikes in :class:`ctsnn.Spikes` order (by sample, then time, then
unit); the backward walks each (sample, neuron)'s spikes latest first, so it needs them by
``(sample, neuron)`` with time order kept. A counting sort gives that permutation in two passes
over the spikes and scatters each per-spike array straight into float64 in the new order: no
int64 segment key, no argsort buffers and no float64 copy in the old order are held
(``docs/kernels.md``, "W2 glue and memory").
"""

from __future__ import annotations

import numba
import numpy as np
from torch import Tensor

__all__ = ["by_neuron", "neuron_layout"]


@numba.njit(cache=True)
def neuron_layout(batch: np.ndarray, units: np.ndarray, n: int,
                  n_seg: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ptr [n_seg + 1], pos [K])`` of spikes ``[K]`` (``batch``, ``units`` int64): spike
    ``q`` goes to position ``pos[q]`` of the order by segment ``batch * n + units``, stably
    (the inverse of a stable argsort of the segments); segment ``s``'s spikes are
    ``ptr[s]:ptr[s + 1]``."""
    k = batch.shape[0]
    ptr = np.zeros(n_seg + 1, dtype=np.int64)
    for q in range(k):
        ptr[batch[q] * n + units[q] + 1] += 1
    for s in range(n_seg):
        ptr[s + 1] += ptr[s]
    fill = ptr[:-1].copy()
    pos = np.empty(k, dtype=np.int64)
    for q in range(k):
        s = batch[q] * n + units[q]
        pos[q] = fill[s]
        fill[s] += 1
    return ptr, pos


@numba.njit(cache=True)
def _scatter(pos: np.ndarray, x: np.ndarray, out: np.ndarray) -> np.ndarray:
    for q in range(pos.shape[0]):
        out[pos[q]] = x[q]  # float32 -> float64 is exact
    return out


def by_neuron(pos: np.ndarray, x: Tensor, dtype: type = np.float64) -> np.ndarray:
    """``x [K]`` (float32 / float64, CPU) in the order ``pos`` of :func:`neuron_layout`
    (``out[pos[q]] = x[q]``), as ``dtype`` (float64, or the dtype of ``x`` for an array the
    kernels only combine with float64 values: the same arithmetic, half the memory)."""
    if x.shape != (pos.shape[0],):
        raise ValueError(f"by_neuron: x must have shape [{pos.shape[0]}], got {list(x.shape)}")
    return _scatter(pos, x.detach().contiguous().numpy(), np.empty(pos.shape[0], dtype=dtype))
