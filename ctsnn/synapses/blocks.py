"""Synapse building blocks: a synapse followed by BatchNorm, a linear synapse with dropout.

* :class:`NormalisedSynapse` — any synapse, then ``BatchNorm1d`` over its output channels (DCLS).
* :class:`LinearSynapse` — ``[dropout →] Linear [→ BatchNorm] [→ dropout]`` without delays
  (DelRec's feed-forward and readout synapses).

All take and return time-first ``[T, B, N]`` tensors (``jumps``), usable as a
:class:`ctsnn.Layer` synapse in discrete time.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from torch import Tensor, nn

from .._checks import check_tensor
from ..dropout import SequenceDropout


class NormalisedSynapse(nn.Module):
    """A synapse module followed by ``BatchNorm1d`` over its output channels.

    ``jumps(x) = BN(synapse.jumps(x))`` with statistics over all ``T x B`` entries, as DCLS
    applies BatchNorm to the ``[B, C, T]`` convolution output (DCLS). ``synapse``: any synapse
    with ``jumps``, ``n_in``, ``n_out`` and ``weight`` (e.g. :class:`~ctsnn.synapses.Dense`).
    Usable as a :class:`ctsnn.Layer` synapse.
    """

    def __init__(self, synapse: nn.Module, **bn_kwargs) -> None:
        super().__init__()
        self.synapse = synapse
        self.norm = nn.BatchNorm1d(synapse.n_out, dtype=synapse.weight.dtype,
                                   device=synapse.weight.device, **bn_kwargs)

    @property
    def n_in(self) -> int:
        return self.synapse.n_in

    @property
    def n_out(self) -> int:
        return self.synapse.n_out

    @property
    def weight(self) -> Tensor:
        return self.synapse.weight

    def clamp_delays_(self) -> None:
        """Clamp the wrapped synapse's delays (after optimiser steps)."""
        self.synapse.clamp_delays_()

    def input_rows(self, rows: Tensor | None) -> AbstractContextManager[None]:
        """The wrapped synapse's ``input_rows`` (e.g. :meth:`ctsnn.synapses.Dense.input_rows`):
        within the ``with`` block, the input gradient is needed (and non-zero) only on the
        (sample, input) rows where ``rows [B, n_in]`` is ``True``."""
        if not hasattr(self.synapse, "input_rows"):
            raise TypeError(f"{type(self.synapse).__name__} has no input_rows")
        return self.synapse.input_rows(rows)

    def jumps(self, x: Tensor) -> Tensor:
        """``[T, B, n_in] -> [T', B, n_out]`` normalised summed input."""
        y = self.synapse.jumps(x)
        return self.norm(y.reshape(-1, y.shape[-1])).view(y.shape)


class LinearSynapse(nn.Module):
    """``[input dropout →] Linear [→ BatchNorm] [→ output dropout]`` as a Layer synapse.

    ``jumps(x [T, B, n_in]) -> [T, B, n_out]``: the per-step input of the next neurons.
    BatchNorm normalises every channel with statistics over all ``T × B`` entries.
    """

    def __init__(self, n_in: int, n_out: int, *, bias: bool = True, batch_norm: bool = False,
                 input_dropout: float = 0.0, output_dropout: float = 0.0,
                 shared_dropout: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out, bias=bias)
        self.norm = nn.BatchNorm1d(n_out) if batch_norm else None
        self.input_dropout = SequenceDropout(input_dropout, shared=shared_dropout)
        self.output_dropout = SequenceDropout(output_dropout, shared=shared_dropout)

    @property
    def n_in(self) -> int:
        return self.linear.in_features

    @property
    def n_out(self) -> int:
        return self.linear.out_features

    @property
    def weight(self) -> Tensor:
        return self.linear.weight

    def jumps(self, x: Tensor) -> Tensor:
        """Summed input per step ``[T, B, n_out]`` from spikes / features ``[T, B, n_in]``."""
        check_tensor("x", x, ndim=3, floating=True)
        if x.shape[2] != self.n_in:
            raise ValueError(f"x has {x.shape[2]} channels, the synapse expects {self.n_in} "
                             f"(shape {list(x.shape)}, time-first [T, B, N])")
        y = self.linear(self.input_dropout(x))
        if self.norm is not None:
            y = self.norm(y.reshape(-1, y.shape[-1])).reshape(y.shape)
        return self.output_dropout(y)

    def forward(self, x: Tensor) -> Tensor:
        return self.jumps(x)


__all__ = ["NormalisedSynapse", "LinearSynapse"]
