"""Weight and delay tensors shared by the adjoint layers (one definition, three modules)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


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


def register_weight_delay(module: nn.Module, weight: Tensor, delay: Tensor | None, *,
                          learn_weight: bool, learn_delay: bool) -> None:
    """Give ``module`` a ``weight`` and a ``delay`` (parameters or buffers; ``delay`` may be
    ``None``), copied from the arguments."""
    w = torch.as_tensor(weight).detach().clone()
    if learn_weight:
        module.weight = nn.Parameter(w)
    else:
        module.register_buffer("weight", w)
    if delay is None:
        module.delay = None
        return
    d = torch.as_tensor(delay, dtype=w.dtype).detach().clone()
    full_delay(w, d)
    if learn_delay:
        module.delay = nn.Parameter(d)
    else:
        module.register_buffer("delay", d)
