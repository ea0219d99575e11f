"""Delayed linear maps between populations, as NIR primitives and back.

**Export: the per-synapse delay expansion.** NIR's ``Delay`` node holds one delay per channel,
so a per-synapse delay matrix ``D [N_out, N_in]`` (weights ``W``) is written as three nodes:

1. ``Linear`` fan-out ``E [C, N_in]`` (0/1, one 1 per row): input ``j`` is copied to one channel
   per **distinct** delay among ``D[:, j]`` (channels ordered by input, then by delay);
2. ``Delay`` ``[C]``: channel ``c`` of input ``j`` delayed by its delay ``d_c``;
3. ``Linear`` ``W' [N_out, C]``: ``W'[i, c] = W[i, j]`` for the channel ``c`` of input ``j`` with
   ``d_c = D[i, j]``, 0 elsewhere; it sums the delayed channels.

``W' E`` applied to ``x(t - d_c)`` is exactly ``sum_j W[i, j] x_j(t - D[i, j])`` and every
number is copied, not computed, so the round trip is bit-exact. ``C`` is between ``N_in`` (one
delay per input: then a per-axon ``Delay`` before ``W`` is used instead) and ``N_out N_in``.

**Import: composition.** :class:`Paths` is a sparse delayed linear map, a list of terms
``(out, inp, weight, delay)`` meaning output channel ``out`` receives
``weight * source[inp](t - delay)``. Walking a chain of ``Linear`` / ``Delay`` / ``Scale`` /
nodes composes their maps, whatever the pattern (the expansion above, per-axon
``Delay -> Linear``, per-target ``Linear -> Delay``, ...); a ctsnn synapse needs one delay per
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
        bias = self.bias if other.bias is None else other.bias if self.bias is None else \
            self.bias + other.bias
        return replace(self, out=np.concatenate((self.out, other.out)),
                       inp=np.concatenate((self.inp, other.inp)),
                       weight=np.concatenate((self.weight, other.weight)),
                       delay=np.concatenate((self.delay, other.delay)),
                       has_linear=self.has_linear or other.has_linear,
                       delay_after_linear=self.delay_after_linear or other.delay_after_linear,
                       has_delay=self.has_delay or other.has_delay,
                       meta=self.meta or other.meta, bias=bias).merged()

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
class Expansion:
    """The NIR form of a per-synapse delay matrix (see the module docstring)."""

    fanout: np.ndarray  # [C, N_in], 0/1
    delays: np.ndarray  # [C] seconds
    weight: np.ndarray  # [N_out, C]


def expand(weight: np.ndarray, delay: np.ndarray) -> Expansion:
    """Lossless expansion of ``weight [N_out, N_in]`` with delays ``delay [N_out, N_in]``."""
    n_out, n_in = weight.shape
    channel = np.zeros((n_out, n_in), dtype=np.int64)
    delays, sources = [], []
    for j in range(n_in):
        values, inverse = np.unique(delay[:, j], return_inverse=True)
        channel[:, j] = len(delays) + inverse.reshape(-1)
        delays.extend(values)
        sources.extend([j] * len(values))
    n_ch = len(delays)
    fanout = np.zeros((n_ch, n_in), dtype=weight.dtype)
    fanout[np.arange(n_ch), sources] = 1
    wide = np.zeros((n_out, n_ch), dtype=weight.dtype)
    wide[np.arange(n_out)[:, None], channel] = weight
    return Expansion(fanout, np.asarray(delays, dtype=delay.dtype), wide)


def per_axon(delay: np.ndarray) -> np.ndarray | None:
    """The per-input delays ``[N_in]`` if every column of ``delay [N_out, N_in]`` is constant."""
    if bool((delay == delay[:1]).all()):
        return delay[0].copy()
    return None


__all__ = ["Paths", "Expansion", "expand", "per_axon"]
