"""Small numba building blocks shared by the compiled feed-forward kernels.

* :func:`sort_arrivals` — a stable sort of one neuron's arrival times (with their jumps) in
  linear time: the arrivals of a (sample, neuron) are spread over ``[0, T]`` about uniformly,
  so a counting pass into ``m`` equal bins followed by an insertion pass (which only moves an
  arrival inside its bin) replaces a comparison sort (``O(m log m)``, most of the forward
  kernel's time at T = 1000). :func:`sort_counted` is its second half, for callers that count
  the bins while they gather the arrivals (one pass less). A row whose insertion pass moves
  arrivals more than :data:`MOVES_PER_ARRIVAL` times per arrival (clustered, unordered times)
  goes to a stable merge sort instead, so the worst case stays ``O(m log m)``; the result is
  the same either way (a stable sort has one answer).
* :func:`chunk_bounds` — the rows ``[lo, hi)`` of chunk ``c`` of ``n_chunks`` equal chunks: a
  parallel loop runs whole chunks, each chunk owns its rows (and allocates its scratch once),
  so results do not depend on how many threads run the chunks.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["MOVES_PER_ARRIVAL", "bucket_of", "chunk_bounds", "sort_arrivals", "sort_counted"]

#: The insertion pass may move an arrival this many places on average (plus a few in all)
#: before the row is handed to the merge sort.
MOVES_PER_ARRIVAL = 8


@numba.njit(cache=True)
def chunk_bounds(c: int, n_chunks: int, n: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of chunk ``c`` when ``n`` rows are cut into ``n_chunks`` chunks."""
    return c * n // n_chunks, (c + 1) * n // n_chunks


@numba.njit(cache=True)
def bucket_of(t: float, scale: float, n_bins: int) -> int:
    """The bin of time ``t`` (seconds) among ``n_bins`` bins of width ``1 / scale``: ``floor(t
    scale)`` clamped to ``[0, n_bins - 1]`` (non-decreasing in ``t``; NaN in bin 0). Clamped
    before the conversion to an integer, so any time (an arrival dropped after the run, an
    infinite one) gets a valid bin."""
    x = t * scale
    if x > 0:
        return int(min(x, n_bins - 1.0))
    return 0


@numba.njit(cache=True)
def sort_counted(t: np.ndarray, w: np.ndarray, m: int, bins: np.ndarray, n_bins: int,
                 scale: float, at: np.ndarray, aw: np.ndarray) -> None:
    """The second half of :func:`sort_arrivals`: ``at[:m], aw[:m]`` = ``t[:m], w[:m]`` sorted
    stably by ``t`` when ``bins[0] = 0`` and ``bins[q + 1]`` holds how many of ``t[:m]`` fall
    in bin ``q = bucket_of(t, scale, n_bins)`` (``bins``: ``>= n_bins + 1`` entries,
    overwritten; ``at``, ``aw`` must not alias ``t``, ``w``)."""
    for q in range(n_bins):
        bins[q + 1] += bins[q]
    for k in range(m):  # scatter in input order: stable within a bin
        q = bucket_of(t[k], scale, n_bins)
        p = bins[q]
        bins[q] = p + 1
        at[p] = t[k]
        aw[p] = w[k]
    budget = MOVES_PER_ARRIVAL * m + 64
    for k in range(1, m):  # insertion pass: moves an arrival only inside its bin
        x = at[k]
        if at[k - 1] <= x:
            continue
        y = aw[k]
        p = k
        while p > 0 and at[p - 1] > x:
            at[p] = at[p - 1]
            aw[p] = aw[p - 1]
            p -= 1
        at[p] = x
        aw[p] = y
        budget -= k - p
        if budget < 0:  # clustered and unordered: a stable comparison sort
            order = np.argsort(t[:m], kind="mergesort")
            for s in range(m):
                at[s] = t[order[s]]
                aw[s] = w[order[s]]
            return


@numba.njit(cache=True)
def sort_arrivals(t: np.ndarray, w: np.ndarray, m: int, t_max: float, bins: np.ndarray,
                  at: np.ndarray, aw: np.ndarray) -> None:
    """``at[:m], aw[:m]``: ``t[:m]`` sorted ascending, stably (equal times keep their order in
    ``t``), with ``w[:m]`` carried along.

    Args:
        t, w: ``[>= m]`` times (seconds, ``>= 0`` expected; any finite value is sorted right)
            and the values that go with them.
        t_max: the end of the bin range (times above it share the last bin).
        bins: int scratch of at least ``m + 1`` entries.
        at, aw: ``[>= m]`` outputs (must not alias ``t`` / ``w``).
    """
    if m == 0:
        return
    scale = m / t_max if t_max > 0 else 0.0
    for k in range(m + 1):
        bins[k] = 0
    for k in range(m):
        bins[bucket_of(t[k], scale, m) + 1] += 1
    sort_counted(t, w, m, bins, m, scale, at, aw)
