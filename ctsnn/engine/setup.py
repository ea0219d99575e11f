"""What both time-mode loops start from: the validated inputs and the initial state."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..models.base import NeuronModel
from ..surrogate import Surrogate
from .recurrence import Recurrent
from .saveat import Saver
from .spike_log import SpikeLog
from .stepping import DelayedReads, Method, check_state, initial_events

Integrand = Callable[[Tensor, tuple], Tensor]


@dataclass
class Population:
    """One population's simulation, set up (see :func:`ctsnn.engine.run_population`).

    ``current`` / ``jumps`` are per-step views ``[B, N]`` (``unbind`` once: indexing a
    ``[T, ...]`` tensor inside the loop would make every step's backward allocate a full
    ``[T, B, N]`` gradient, an O(T^2) backward).
    """

    model: NeuronModel
    dt: float
    n_steps: int
    batch_size: int
    method: Method
    state: tuple
    dtype: torch.dtype
    device: torch.device
    current: tuple[Tensor, ...] | None = None
    jumps: tuple[Tensor, ...] | None = None
    arrivals: Callable[[int], object] | None = None
    recurrent: Recurrent | None = None
    record: Sequence[str] = ()
    record_every: int = 1
    xtol: float | None = None
    surrogate: Surrogate | None = None
    detach_reset: bool = False
    integrand: Integrand | None = None
    grid_rule: bool = False
    saveat: tuple[float, ...] | None = None
    # filled by start()
    log: SpikeLog = field(default_factory=SpikeLog)
    rec: dict[str, list[Tensor]] = field(default_factory=dict)
    fired: Tensor | None = None
    delays: DelayedReads | None = None
    ref_end: Tensor | None = None
    integral: Tensor | None = None
    saver: Saver | None = None
    # (state, local time) at the start of every smooth piece of the current step, when a
    # settled step may continue from an in-step arrival (.substep); None otherwise
    trace: list[tuple[tuple, Tensor]] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.batch_size, self.model.n)

    def start(self) -> None:
        """Spikes at ``t = 0``, refractory ends, history buffers, recordings."""
        model, dt = self.model, self.dt
        self.zero = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        self.rec = {name: [] for name in self.record}
        self.threshold = model.threshold if model.spiking else None
        self.ref_param = model.refractory
        self.has_ref = bool((self.ref_param > 0).any())
        self.state, self.fired = initial_events(model, self.state)
        self.delays = (DelayedReads(model, self.state, dt, self.method)
                       if model.delayed_reads else None)
        # absolute time (s) at which each neuron's refractory period ends
        self.ref_end = torch.full(self.shape, -torch.inf, dtype=self.dtype, device=self.device)
        if self.fired is not None:
            self.log.add(self.fired, self.zero, 0, dt)
            self.ref_end = torch.where(self.fired, self.zero + self.ref_param, self.ref_end)
        if self.saveat is not None:
            self.saver = Saver(self.saveat, self.record, dt, self.n_steps)

    def end_of_step(self, n: int, x: Tensor) -> None:
        """Bookkeeping after step ``n``: history, divergence check, grid readout, recordings."""
        dt, state = self.dt, self.state
        if self.delays is not None:
            self.delays.push(state, (n + 1) * dt, x)
        if n % 64 == 63 or n == self.n_steps - 1:
            check_state(self.model, state, n, dt, self.method)
        if self.grid_rule:
            assert self.integrand is not None
            term = dt * self.integrand(torch.as_tensor((n + 1) * dt, dtype=self.dtype), state)
            self.integral = term if self.integral is None else self.integral + term
        if (n + 1) % self.record_every == 0:
            for name in self.record:
                self.rec[name].append(getattr(state, name))

    def saved(self) -> dict[str, Tensor]:
        """The values at the save times, name -> ``[S, B, N]`` (empty without ``saveat``)."""
        if self.saver is None:
            return {}
        return self.saver.result(self.zero)

    def recordings(self) -> dict[str, Tensor]:
        """The recorded variables, name -> ``[T', B, N]``."""
        return {name: torch.stack(v) if v else self.zero.new_zeros((0, *self.shape))
                for name, v in self.rec.items()}
