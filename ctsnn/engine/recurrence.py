"""The protocol of a population's own delayed recurrent connection, as the loops use it."""

from __future__ import annotations

import inspect
from typing import Protocol

import torch
from torch import Tensor


class Recurrent(Protocol):
    """A population's own delayed recurrent connection.

    ``start`` is called before the first step (also with ``dt=`` and ``time=`` if it accepts
    them). Discrete time: ``read(n)`` returns the summed jumps ``[B, N]`` arriving at the end
    of step ``n``; ``write(n, spikes)`` hands over the spikes ``[B, N]`` emitted in step ``n``
    (they may arrive in step ``n + 1`` at the earliest). Continuous time additionally:
    ``arrivals(n) -> StepArrivals | None`` and ``emit(n, times, batch, units, local=)``
    (``local``: the spikes' times within step ``n``; see the recurrent synapses of
    :mod:`ctsnn.synapses`).
    """

    def start(self, batch_size: int, *, dtype: torch.dtype, device: torch.device) -> None: ...

    def read(self, n: int) -> Tensor: ...

    def write(self, n: int, spikes: Tensor) -> None: ...


def start_recurrent(recurrent: Recurrent, batch_size: int, dtype: torch.dtype,
                    device: torch.device, dt: float, time: str) -> None:
    """Call ``recurrent.start`` with the grid step and time mode if it takes them."""
    accepted = inspect.signature(recurrent.start).parameters
    extra = {k: v for k, v in {"dt": dt, "time": time}.items() if k in accepted}
    recurrent.start(batch_size, dtype=dtype, device=device, **extra)
