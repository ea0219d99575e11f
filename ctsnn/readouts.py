"""Readouts: what the last layer of a network reports, ``[B, N]``.

``simulate(..., readout=...)`` takes a name or a callable:

* ``"first_spike"`` — each neuron's first spike time (s), the end of the grid where silent;
* ``"sum"`` — ``(1/dt) ∫_0^T v dt``, the time-summed membrane voltage (on the grid:
  ``Σ_n v_n``);
* ``"avg_exp"`` — ``(1/T) ∫_0^T e^{-t/T} v dt`` (mlGeNN's ``avg_var_exp_weight``; on the grid:
  ``(1/N_T) Σ_n e^{-t_n/T} v(t_n)``);
* ``"max"`` — ``max_t v(t)`` (exact with the adjoint on LIF-family readouts; the maximum over
  grid points in discrete time);
* a callable ``l(t, state) -> [B, N]`` — the integral ``∫_0^T l dt`` (``t`` in s).

``T = n_steps dt`` is the simulated interval; ``v`` is the readout neurons' membrane voltage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Integrand = Callable[[Tensor, tuple], Tensor]

NAMES = ("first_spike", "sum", "avg_exp", "max")


@dataclass(frozen=True)
class Readout:
    """A readout (see the module docstring). ``kind`` is one of :data:`NAMES` or
    ``"integral"`` (then ``integrand`` is the callable)."""

    kind: str
    integrand: Integrand | None = None

    @property
    def is_integral(self) -> bool:
        """Whether the readout is a time integral of the state (all but first_spike/max)."""
        return self.kind in ("integral", "sum", "avg_exp")

    def integrand_on(self, dt: float, n_steps: int) -> Integrand | None:
        """The integrand ``l(t, state)`` of an integral readout on a grid, else ``None``."""
        if self.kind == "integral":
            return self.integrand
        if self.kind == "sum":
            return lambda t, state: state.v / dt
        if self.kind == "avg_exp":
            t_end = n_steps * dt
            return lambda t, state: torch.exp(-t / t_end) * state.v / t_end
        return None


def as_readout(spec: str | Integrand | Readout | None) -> Readout | None:
    """``None``, a name of :data:`NAMES`, a callable integrand or a :class:`Readout`."""
    if spec is None or isinstance(spec, Readout):
        return spec
    if isinstance(spec, str):
        if spec not in NAMES:
            raise ValueError(f"unknown readout {spec!r}; expected one of {NAMES} or a callable "
                             "integrand l(t, state)")
        return Readout(spec)
    if callable(spec):
        return Readout("integral", spec)
    raise TypeError(f"readout must be a name {NAMES}, a callable l(t, state) or None, got "
                    f"{type(spec).__name__}")
