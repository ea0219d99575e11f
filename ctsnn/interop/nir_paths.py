"""Delayed linear maps between populations, as NIR primitives and back.

**Export: the per-synapse delay expansion.** NIR's ``Delay`` node holds one delay per channel,
so a per-synapse delay matrix ``D [N_out, N_in]`` (weights ``W``) is written as ``K`` parallel
branches ``Delay -> Linear`` from the same source into the same target (NIR sums a node's
inputs), ``K`` the largest number of distinct delays among the targets of one input:

* branch ``k`` delays input ``j`` by the ``k``-th smallest distinct value of ``D[:, j]`` (an input
  with fewer distinct delays repeats its largest one there, with zero weights);
* its ``Linear W_k [N_out, N_in]`` holds ``W[i, j]`` where ``D[i, j]`` is that value, 0 elsewhere.

``sum_k W_k x(t - delays_k)`` is exactly ``sum_j W[i, j] x_j(t - D[i, j])`` and every number is
copied, not computed, so the round trip is bit-exact. Size: ``K`` times the weights (``K = 1``,
one delay per input, is a per-axon ``Delay`` before ``W`` instead).

**Import: composition.** :class:`Paths` is a sparse delayed linear map, a list of terms
``(out, inp, weight, delay)`` meaning output channel ``out`` receives
``weight * source[inp](t - delay)``. Walking the ``Linear`` / ``Delay`` / ``Scale`` nodes
between two populations composes their maps, whatever the pattern (the branches above,
per-axon ``Delay -> Linear``, per-target ``Linear -> Delay``, a fan-out ``Linear`` before a
``Delay`` over the copies, ...); a ctsnn synapse needs one delay per
(target, source) pair, checked at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass
class Paths:
    """Sparse delayed linear map (see the module docstring); arrays of one length.

    Flags: ``has_linear`` / ``has_delay`` (a Linear / Delay node was passed),
    ``delay_after_linear`` (a Delay node acts after a Linear one: delays per target),
    ``meta`` (metadata of the last Linear node), ``bias`` (``[n_out]``, constant input added
    by Affine nodes, carried through the later nodes; ``None``: none).
    """

    n_out: int
    out: np.ndarray
    inp: np.ndarray
    weight: np.ndarray
    delay: np.ndarray
    has_linear: bool = False
    delay_after_linear: bool = False
    has_delay: bool = False
    meta: dict | None = None
    bias: np.ndarray | None = None

    @staticmethod
    def identity(n: int) -> Paths:
        idx = np.arange(n)
        return Paths(n, idx, idx.copy(), np.ones(n), np.zeros(n))

    def delayed(self, delay: np.ndarray) -> Paths:
        """Output channel ``c`` delayed by ``delay[c]`` (seconds)."""
        return replace(self, delay=self.delay + delay.astype(np.float64)[self.out],
                       has_delay=True, delay_after_linear=self.delay_after_linear or
                       self.has_linear)

    def scaled(self, scale: np.ndarray) -> Paths:
        """Output channel ``c`` multiplied by ``scale[c]``."""
        scale = np.asarray(scale, dtype=np.float64)
        return replace(self, weight=self.weight * scale[self.out],
                       bias=None if self.bias is None else self.bias * scale)

    def through(self, weight: np.ndarray, extra: np.ndarray | None = None,
                meta: dict | None = None, bias: np.ndarray | None = None) -> Paths:
        """``weight [M, n_out] @ self (+ bias [M])``; the products over the nonzero weights (and
        the ``extra`` pairs ``[2, K]`` of ``(row, col)``: zero weights that carry a synapse)."""
        support = weight != 0
        if extra is not None:
            support[extra[0], extra[1]] = True
        rows, cols = np.nonzero(support)
        order = np.argsort(self.out, kind="stable")
        out, inp, w, d = (a[order] for a in (self.out, self.inp, self.weight, self.delay))
        counts = np.bincount(out, minlength=self.n_out)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        reps = counts[cols]
        total = int(reps.sum())
        first = np.repeat(starts[cols], reps)
        offset = np.arange(total) - np.repeat(np.cumsum(reps) - reps, reps)
        idx = first + offset
        new_bias = None if self.bias is None else weight.astype(np.float64) @ self.bias
        if bias is not None:
            b = bias.astype(np.float64)
            new_bias = b if new_bias is None else new_bias + b
        return replace(self, n_out=weight.shape[0], out=np.repeat(rows, reps), inp=inp[idx],
                       weight=np.repeat(weight[rows, cols].astype(np.float64), reps) * w[idx],
                       delay=d[idx], has_linear=True, meta=meta, bias=new_bias).merged()

    def plus(self, other: Paths) -> Paths:
        """The sum of two maps of the same source and size."""
        return Paths.total([self, other])

    @staticmethod
    def total(parts: list[Paths]) -> Paths:
        """The sum of maps of the same source and size (one merge for all)."""
        if len(parts) == 1:
            return parts[0]
        biases = [p.bias for p in parts if p.bias is not None]
        return replace(parts[0], **{f: np.concatenate([getattr(p, f) for p in parts])
                                    for f in ("out", "inp", "weight", "delay")},
                       has_linear=any(p.has_linear for p in parts),
                       delay_after_linear=any(p.delay_after_linear for p in parts),
                       has_delay=any(p.has_delay for p in parts),
                       meta=next((p.meta for p in parts if p.meta), None),
                       bias=sum(biases[1:], biases[0]) if biases else None).merged()

    def merged(self) -> Paths:
        """Terms with the same ``(out, inp, delay)`` summed."""
        if len(self.out) == 0:
            return self
        order = np.lexsort((self.delay, self.inp, self.out))
        out, inp, w, d = (a[order] for a in (self.out, self.inp, self.weight, self.delay))
        new = np.ones(len(out), dtype=bool)
        new[1:] = (out[1:] != out[:-1]) | (inp[1:] != inp[:-1]) | (d[1:] != d[:-1])
        starts = np.nonzero(new)[0]
        return replace(self, out=out[starts], inp=inp[starts], weight=np.add.reduceat(w, starts),
                       delay=d[starts])

    def dense(self, n_in: int, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(W, D, reached)``, each ``[n_out, n_in]``: summed weight, delay (s) and whether any
        term connects the pair. A pair reached at several delays by nonzero weights is an error
        naming ``where`` (a ctsnn synapse has one delay)."""
        w = np.zeros((self.n_out, n_in))
        d = np.zeros((self.n_out, n_in))
        reached = np.zeros((self.n_out, n_in), dtype=bool)
        live = self.weight != 0
        # zero-weight terms first, so a nonzero term at the same pair overwrites their delay
        for keep in (~live, live):
            o, i = self.out[keep], self.inp[keep]
            d[o, i] = self.delay[keep]
            reached[o, i] = True
        o, i, dl = self.out[live], self.inp[live], self.delay[live]
        np.add.at(w, (o, i), self.weight[live])
        clash = np.nonzero(d[o, i] != dl)[0]
        if len(clash):
            k = clash[0]
            raise ValueError(
                f"{where}: target {o[k]} receives source unit {i[k]} at two delays "
                f"({dl[k]!r} s and {d[o[k], i[k]]!r} s): a ctsnn synapse has one delay; "
                "split the paths into separate layers")
        return w, d, reached


@dataclass
class Slices:
    """The NIR form of a per-synapse delay matrix (see the module docstring)."""

    delays: np.ndarray  # [K, N_in] seconds: branch k delays input j by delays[k, j]
    weights: np.ndarray  # [K, N_out, N_in]: branch k's Linear
    slot: np.ndarray  # [N_out, N_in] int: the branch of each synapse


def slices(weight: np.ndarray, delay: np.ndarray) -> Slices:
    """Lossless split of ``weight [N_out, N_in]`` with delays ``delay [N_out, N_in]`` into
    ``K`` = (most distinct delays of one input) branches ``Delay -> Linear``."""
    n_out, n_in = weight.shape
    slot = np.zeros((n_out, n_in), dtype=np.int64)
    levels = []
    for j in range(n_in):
        values, inverse = np.unique(delay[:, j], return_inverse=True)
        slot[:, j] = inverse.reshape(-1)
        levels.append(values)
    k = max(len(v) for v in levels)
    # an input with fewer distinct delays repeats its last one, with zero weights
    delays = np.stack([np.concatenate((v, np.repeat(v[-1:], k - len(v)))) for v in levels],
                      axis=1)
    weights = np.zeros((k, n_out, n_in), dtype=weight.dtype)
    rows, cols = np.indices((n_out, n_in))
    weights[slot, rows, cols] = weight
    return Slices(delays.astype(delay.dtype), weights, slot)


def per_axon(delay: np.ndarray) -> np.ndarray | None:
    """The per-input delays ``[N_in]`` if every column of ``delay [N_out, N_in]`` is constant."""
    if bool((delay == delay[:1]).all()):
        return delay[0].copy()
    return None


__all__ = ["Paths", "Slices", "slices", "per_axon"]
