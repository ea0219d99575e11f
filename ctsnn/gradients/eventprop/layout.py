"""Output spikes regrouped by neuron for the compiled EventProp backward, without argsort.

The engines emit a layer's spikes in :class:`ctsnn.Spikes` order (by sample, then time, then
unit); the backward walks each (sample, neuron)'s spikes latest first, so it needs them by
``(sample, neuron)`` with time order kept. A counting sort gives that permutation in two passes
over the spikes and scatters each per-spike array straight into float64 in the new order: no
int64 segment key, no argsort buffers and no float64 copy in the old order are held
(``docs/kernels.md``, "W2 glue and memory").

Within a (sample, neuron) row, :func:`next_spike_index` buckets the spike times so that the
backward finds each arrival's next spike without a binary search.
"""

from __future__ import annotations

import numba
import numpy as np
from torch import Tensor

__all__ = ["bucket", "by_neuron", "index_dtype", "neuron_layout", "next_spike_index",
           "sample_order"]


@numba.njit(cache=True)
def neuron_layout(batch: np.ndarray, units: np.ndarray, n: int, n_seg: int,
                  pos: np.ndarray) -> np.ndarray:
    """``ptr [n_seg + 1]`` of spikes ``[K]`` (``batch``, ``units`` int64), and fills ``pos
    [K]`` (int32 / int64, :func:`index_dtype`): spike ``q`` goes to position ``pos[q]`` of the
    order by segment ``batch * n + units``, stably (the inverse of a stable argsort of the
    segments); segment ``s``'s spikes are ``ptr[s]:ptr[s + 1]``."""
    k = batch.shape[0]
    ptr = np.zeros(n_seg + 1, dtype=np.int64)
    for q in range(k):
        ptr[batch[q] * n + units[q] + 1] += 1
    for s in range(n_seg):
        ptr[s + 1] += ptr[s]
    fill = ptr[:-1].copy()
    for q in range(k):
        s = batch[q] * n + units[q]
        pos[q] = fill[s]
        fill[s] += 1
    return ptr


def index_dtype(size: int) -> type:
    """int32 for positions into ``size`` elements when they fit (half the bytes of int64),
    else int64."""
    return np.int32 if size <= np.iinfo(np.int32).max else np.int64


@numba.njit(cache=True)
def sample_order(batch: np.ndarray, n_samples: int, order: np.ndarray) -> np.ndarray:
    """Events grouped by sample, input order kept within a sample: fills ``order [E]`` (int32 /
    int64: the permutation a stable argsort of ``batch`` gives, by a counting sort without its
    int64 temporaries) and returns the start pointers ``[n_samples + 1]`` (int64)."""
    ptr = np.zeros(n_samples + 1, dtype=np.int64)
    for e in range(batch.shape[0]):
        ptr[batch[e] + 1] += 1
    for b in range(n_samples):
        ptr[b + 1] += ptr[b]
    fill = ptr[:-1].copy()
    for e in range(batch.shape[0]):
        b = batch[e]
        order[fill[b]] = e
        fill[b] += 1
    return ptr


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


@numba.njit(cache=True)
def bucket(x: float, inv_w: float, n_buckets: int) -> int:
    """Bucket of time ``x`` (``floor(x inv_w)`` clamped to ``[0, n_buckets - 1]``): monotone
    non-decreasing in ``x``, which is all :func:`next_spike_index` relies on."""
    f = x * inv_w
    if not f > 0.0:
        return 0
    if f >= n_buckets - 1:
        return n_buckets - 1
    return int(f)


@numba.njit(cache=True)
def next_spike_index(k0: int, k1: int, sp_t: np.ndarray, inv_w: float,
                     first: np.ndarray) -> None:
    """``first[i]``: the first spike of ``sp_t[k0:k1]`` (sorted) in bucket ``>= i`` of
    :func:`bucket` (``first[n_buckets] = k1``). Every spike before ``first[bucket(s)]`` is
    then earlier than ``s`` (the bucket is monotone), so the next spike after ``s`` is found by
    a forward scan from there: the same index as a binary search, in O(1) on average."""
    nb = first.shape[0] - 1
    i = 0
    for k in range(k0, k1):
        bk = bucket(sp_t[k], inv_w, nb)
        while i <= bk:
            first[i] = k
            i += 1
    while i <= nb:
        first[i] = k1
        i += 1


@numba.njit(cache=True, error_model="numpy")
def arrivals_at(n: int, e0: int, e1: int, ev_order: np.ndarray, t_in: np.ndarray,
                j_in: np.ndarray, delay: np.ndarray, has_delay: bool, t_end: float,
                s_loc: np.ndarray, e_loc: np.ndarray, p_loc: np.ndarray) -> int:
    """Arrival times at neuron ``n`` of the sample's events ``ev_order[e0:e1]`` up to
    ``t_end``, written to ``s_loc`` / ``e_loc`` / ``p_loc`` (time, event, position in the
    sample ``q - e0``); returns their number."""
    m = 0
    for q in range(e0, e1):
        e = ev_order[q]
        s = t_in[e] + delay[n, j_in[e]] if has_delay else t_in[e]
        if s <= t_end:
            s_loc[m] = s
            e_loc[m] = e
            p_loc[m] = q - e0
            m += 1
    return m
