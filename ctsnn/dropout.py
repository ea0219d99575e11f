"""Dropout for time-first sequences ``[T, B, N]``.

Spiking networks see the same sample at every time step, so the usual choice (SpikingJelly's
multi-step ``layer.Dropout``, DCLS, DelRec on SHD) is one mask per (sample, unit) shared by all
steps: a dropped unit stays silent for the whole sequence. ``shared=False`` draws an independent
mask per step, like ``nn.Dropout`` applied to the flattened sequence.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SequenceDropout(nn.Module):
    """Dropout on ``[T, B, N]``; with ``shared=True`` one mask per (sample, unit) for all steps.

    Kept entries are scaled by ``1 / (1 - p)`` so the expectation is unchanged; identity in
    ``eval()`` and when ``p == 0``.

    Args:
        p: probability of dropping an entry, in ``[0, 1)``.
        shared: share the mask over the time dimension (dimension 0).
    """

    def __init__(self, p: float, *, shared: bool = True) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p!r}")
        self.p, self.shared = float(p), shared

    def forward(self, x: Tensor) -> Tensor:
        """``x [T, B, ...]`` -> same shape, entries dropped and rescaled (training only)."""
        return self.with_rows(x)[0]

    def with_rows(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """:meth:`forward` and, for a shared mask on ``x [T, B, N]``, the kept rows: a bool
        ``[B, N]``, ``True`` where the (sample, unit) row is kept. This dropout's backward
        multiplies the gradient w.r.t. its output by zero on the other rows, so the operation
        that consumes the output need not compute it there (e.g. the next synapse, through
        :meth:`ctsnn.synapses.Dense.input_rows`). ``None`` when nothing is dropped
        (evaluation, ``p == 0``), for ``shared=False`` or another rank."""
        if not self.training or self.p == 0.0:
            return x, None
        if not self.shared:
            keep = torch.empty(x.shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.p)
            return x * keep / (1.0 - self.p), None
        keep = self.shared_mask(x)  # [B, ...]: broadcast over the steps
        return x * keep / (1.0 - self.p), keep != 0 if x.ndim == 3 else None

    def shared_mask(self, like: Tensor) -> Tensor | None:
        """The mask ``forward(like)`` would apply (``[B, ...]``, 0 / 1 in ``like``'s dtype;
        the same random draw), for a caller that applies ``x * keep / (1 - p)`` itself, or
        ``None`` where ``forward`` is the identity (``eval()``, ``p == 0``).

        Raises:
            ValueError: if the mask is not shared over time (``shared=False``).
        """
        if not self.shared:
            raise ValueError("shared_mask: this SequenceDropout draws a mask per step "
                             "(shared=False); apply it with forward()")
        if not self.training or self.p == 0.0:
            return None
        keep = torch.empty((1, *like.shape[1:]), dtype=like.dtype, device=like.device)
        return keep.bernoulli_(1.0 - self.p)[0]

    def extra_repr(self) -> str:
        return f"p={self.p}, shared={self.shared}"


__all__ = ["SequenceDropout"]
