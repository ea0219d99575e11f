"""Delay tensors as the adjoint layers take them (one definition for every adjoint path)."""

from __future__ import annotations

from torch import Tensor


def full_delay(weight: Tensor, delay: Tensor | None) -> Tensor | None:
    """``delay`` as ``[N_out, N_in]`` (a per-axon ``[N_in]`` delay is expanded), or ``None``."""
    if delay is None:
        return None
    if delay.shape == (weight.shape[1],):
        return delay.expand_as(weight)
    if delay.shape != weight.shape:
        raise ValueError(f"delay must have shape [N_out, N_in] = {list(weight.shape)} or "
                         f"[N_in] = [{weight.shape[1]}], got {list(delay.shape)}")
    return delay
