"""Small numba building blocks shared by the compiled feed-forward kernels.

* :func:`sort_arrivals` — a stable sort of one neuron's arrival times (with their jumps) in
  linear time: the arrivals of a (sample, neuron) are spread over ``[0, T]`` about uniformly,
  so a counting pass into ``m`` equal bins followed by an insertion pass (which only moves an
  arrival inside its bin) replaces a comparison sort (``O(m log m)``, most of the forward
  kernel's time at T = 1000). Bins that hold many arrivals (clustered times) fall back to a
  stable merge sort, so the worst case stays ``O(m log m)``.
* :func:`chunk_bounds` — the rows ``[lo, hi)`` of chunk ``c`` of ``n_chunks`` equal chunks: a
  parallel loop runs whole chunks, each chunk owns its rows (and allocates its scratch once),
  so results do not depend on how many threads run the chunks.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["MAX_BIN", "chunk_bounds", "sort_arrivals"]

#: A bin holding more arrivals than this sends the whole row to the merge sort.
MAX_BIN = 48


@numba.njit(cache=True)
def chunk_bounds(c: int, n_chunks: int, n: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of chunk ``c`` when ``n`` rows are cut into ``n_chunks`` chunks."""
    return c * n // n_chunks, (c + 1) * n // n_chunks


@numba.njit(cache=True)
def sort_arrivals(t: np.ndarray, w: np.ndarray, m: int, t_max: float, bins: np.ndarray,
                  at: np.ndarray, aw: np.ndarray) -> None:
    """``at[:m], aw[:m]``: ``t[:m]`` sorted ascending, stably (equal times keep their order in
    ``t``), with ``w[:m]`` carried along.

    Args:
        t, w: ``[>= m]`` times (seconds, ``>= 0`` expected; any finite value is sorted right)
            and the values that go with them.
        t_max: the end of the bin range (times above it share the last bin).
        bins: int64 scratch of at least ``m + 1`` entries.
        at, aw: ``[>= m]`` outputs (must not alias ``t`` / ``w``).
    """
    if m == 0:
        return
    scale = m / t_max if t_max > 0 else 0.0
    for k in range(m + 1):
        bins[k] = 0
    widest = 0
    for k in range(m):
        x = t[k] * scale
        b = int(x) if x > 0 else 0
        b = min(b, m - 1)
        bins[b + 1] += 1
        widest = max(widest, bins[b + 1])
    if widest > MAX_BIN:  # clustered: a stable comparison sort
        order = np.argsort(t[:m], kind="mergesort")
        for k in range(m):
            at[k] = t[order[k]]
            aw[k] = w[order[k]]
        return
    for b in range(m):
        bins[b + 1] += bins[b]
    for k in range(m):  # scatter in input order: stable within a bin
        x = t[k] * scale
        b = int(x) if x > 0 else 0
        b = min(b, m - 1)
        p = bins[b]
        bins[b] = p + 1
        at[p] = t[k]
        aw[p] = w[k]
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
