"""Recurrent synapses: :class:`RecurrentDense`, a population's own delayed connection.

One class, two delay kernels (both with per-synapse ``[N, N]`` or per-axon ``[N]`` delays, fixed
or learnable, optional fixed fan-in):

* :class:`~ctsnn.synapses.kernels.Exact` (default), both time modes. Delays in seconds.
  Continuous time: any delay ``>= 0``; a spike at ``t`` reaches neuron ``i`` at exactly
  ``t + d_ij`` (scheduled as the spikes happen, differentiable w.r.t. spike times, weights and
  delays), also within the step that emitted it (sub-step and zero delays, see
  :mod:`ctsnn.engine.substep`: results do not depend on ``dt``). Discrete time: delays at least
  one grid step after rounding (checked by :meth:`RecurrentDense.start` on the rounded lags,
  synapses removed by ``fan_in`` excepted). Discrete time: delays rounded to whole steps (ties to
  even), a spike of step ``n`` arrives at the end of step ``n + round(d / dt)``.
* :class:`~ctsnn.synapses.kernels.Triangle` ``(sigma)``, discrete time (DelRec). Delays ``d`` in
  steps of the ``dt`` given at construction; a spike of neuron ``j`` emitted in step ``m``
  reaches neuron ``i`` with lag ``τ = n - m`` and weight ``W_ij h_ij(τ)``,

      ``h(τ) = max(0, s - |τ - (1 + d)|) / s²``,   ``s = 1 + σ``

  (:func:`~ctsnn.synapses.kernels.triangle_spread`): the effective lag is ``1 + d``, so
  ``d = 0`` is a vanilla RSNN. With ``learn_width=True`` the half-width is per presynaptic
  neuron, ``s_j = 1 + 2σ sigmoid(p_j)``. Lag 0 does not exist, so for ``d < σ`` the part of the
  triangle at ``τ <= 0`` is discarded (mass < 1); ``d < 0`` is refused by the forward (it would
  ask for lags below one step, an acausal delay whose mass is silently dropped), so training
  projects with :meth:`RecurrentDense.clamp_delays_` after each step; the samples sum to 1 for
  a whole ``σ`` and ``d >= σ``. Gradient
  w.r.t. ``d``: ``sign(τ - 1 - d) / s²`` inside the support (0 at the kinks: do not start
  training at integer delays with ``σ = 0``). Recurrent ``dropout`` multiplies the summed input
  by a Bernoulli mask drawn once per sequence. Evaluation (``eval()``), by ``eval_mode``:
  ``"paper"`` (σ = 0 and integer delays ``max(0, round(d))``, parameters untouched),
  ``"reference"`` (the DelRec code: entering evaluation rounds the delays **in place** and
  clamps them to ``>= 0``; the current σ stays), ``"continuous"`` (the training kernel).

  Per-axon delays on the CPU with compiled kernels on (:func:`ctsnn.compiled.kernels_enabled`),
  float32 or float64: each step's spikes are instead scattered into the future slots of a ring
  by a numba kernel and the backward is its transpose (:mod:`ctsnn.synapses.ring_scatter`;
  same values and gradients; :meth:`RecurrentDense.scatter_applies` says when); with a
  ``LIF`` / ``CubaLIF`` population the engine then runs the neurons and this scatter together
  over all steps (:mod:`ctsnn.engine.compiled.lif_recurrent`). What follows describes the
  reference path (CUDA, kernels off, per-synapse delays).

  Memory: each read is a weighted sum over the last ``L - 1`` spike tensors through a custom
  autograd function (:mod:`ctsnn.synapses.ring`) that saves only references to the spike tensors
  the engine holds anyway, plus an ``O(B N L)`` ring buffer; ``L = ceil(1 + max d + max s) + 1``
  is recomputed at every :meth:`start`. Cost per step ``O(B N L + B N²)`` (axon) or
  ``O(B N² L)`` (synapse). Every :meth:`start` begins with an empty history.

Gaussian and Rounded kernels are not available on recurrent synapses (a clear error says what
to use instead).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from .._checks import check_choice, check_finite, check_positive, check_tensor
from ..compiled import kernels_enabled, prepare_kernel_runtime
from ..dtypes import ExactValues
from ..spikes import locate
from .arrivals import StepArrivals, element_arrivals, ranks, row_order, snap_to_grid
from .dense import PER, same_dt
from .init import DelayInit, WeightInit, fixed_fan_in_mask, initial_delay, initial_weight
from .kernels import EXACT, DelayKernel, as_kernel, buffer_length
from .ranges import check_delay_range, check_max_delay, clamp_delay_
from .ring import RingRead, RingRun
from .ring_scatter import ScatterRun, spread_taps

EVAL_MODES = ("paper", "reference", "continuous")


class RecurrentDense(ExactValues, nn.Module):
    """A population's own recurrent synapses ``N -> N`` with delays (see the module docstring).

    Args:
        n: number of neurons ``N`` (or give ``weight``).
        weight: explicit weights ``[N_post, N_pre]`` (otherwise drawn by ``weight_init``).
        delay: explicit delays in seconds, ``[N, N]``, ``[N]`` (per axon) or a number;
            otherwise drawn by ``delay_init``.
        kernel: :class:`~ctsnn.synapses.kernels.Exact` (default) or ``Triangle(sigma)``.
        max_delay: upper bound of the delays (seconds; ``None``: unbounded), checked at
            construction and at :meth:`start`, applied by :meth:`clamp_delays_`.
        dt: grid step (seconds), required by ``Triangle`` (delays stored in its steps; the
            simulation must run at this ``dt``); an error for ``Exact``.
        per: ``"synapse"`` (``[N, N]``) or ``"axon"`` (``[N]``, shared by the targets).
        learn_weight, learn_delay: register as parameters (else buffers).
        learn_width: ``Triangle``: per-neuron learnable width logits ``p_spread [N]``.
        fan_in: each neuron receives exactly ``fan_in`` randomly chosen recurrent inputs.
        weight_init: ``"orthogonal"`` (gain 1, DelRec; default), ``"kaiming_uniform"``, a
            tensor or an in-place callable.
        delay_init: ``"uniform"`` (``[0, max_delay]``), ``"half_normal"``, a number, a tensor
            or a callable ``shape -> seconds`` (e.g.
            :func:`~ctsnn.synapses.init.uniform_delays`; exact delays must be at least ``dt``).
        delay_std: seconds, for ``"half_normal"``.
        dropout: ``Triangle``: recurrent dropout probability, mask fixed over the sequence.
        eval_mode: ``Triangle``: ``"paper"``, ``"reference"`` or ``"continuous"``.
        generator, dtype, device: for the initialisation and the tensors.

    Protocol used by the engine: ``start(batch_size, dtype=, device=, dt=, time=)``; discrete
    time ``read(n) -> [B, N]`` (jumps at the end of step ``n``) and ``write(n, spikes [B, N])``;
    continuous time (``Exact``) ``arrivals(n) -> StepArrivals | None`` and
    ``emit(n, times, batch, units)``.
    """

    mask: Tensor | None

    def __init__(
        self,
        n: int | None = None,
        *,
        weight: Tensor | None = None,
        delay: Tensor | float | None = None,
        kernel: DelayKernel | str = EXACT,
        max_delay: float | None = None,
        dt: float | None = None,
        per: str = "synapse",
        learn_weight: bool = True,
        learn_delay: bool = False,
        learn_width: bool = False,
        fan_in: int | None = None,
        weight_init: WeightInit = "orthogonal",
        delay_init: DelayInit = "uniform",
        delay_std: float | None = None,
        dropout: float = 0.0,
        eval_mode: str = "paper",
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        prepare_kernel_runtime()  # numba's one-off start (CPU only), not in a step
        self.kernel = as_kernel(kernel)
        self.kernel.require_recurrent()
        check_choice("per", per, PER)
        check_choice("eval_mode", eval_mode, EVAL_MODES)
        if weight is not None:
            check_tensor("weight", weight, ndim=2, floating=True)
            if weight.shape[0] != weight.shape[1]:
                raise ValueError(f"recurrent weight must be square [N, N], got "
                                 f"{list(weight.shape)}")
            check_finite("weight", weight)
            if n is not None and n != weight.shape[0]:
                raise ValueError(f"n = {n} does not match weight shape {list(weight.shape)}")
            n = weight.shape[0]
            dtype, device = weight.dtype, weight.device
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise ValueError(f"n (number of neurons) must be a positive int, got {n!r}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        max_delay = check_max_delay("RecurrentDense", max_delay, learn_delay=learn_delay)
        self._check_kernel_options(dt, learn_width, dropout, eval_mode)
        self.n, self.per, self.eval_mode = n, per, eval_mode
        self.dt = None if dt is None else float(dt)
        self.max_delay = None if max_delay is None else float(max_delay)
        self.dropout = float(dropout)
        self.fan_in = fan_in
        dtype = dtype or torch.get_default_dtype()

        if fan_in is None:
            self.register_buffer("mask", None)
        else:
            self.register_buffer("mask", fixed_fan_in_mask(n, n, fan_in, generator).to(device))
        if weight is None:
            w = initial_weight(weight_init, (n, n), fan_in=fan_in or n, dtype=dtype,
                               generator=generator).to(device)
            check_finite("weight_init", w)
        else:
            w = weight.detach().clone()
        if self.mask is not None:
            w = w * self.mask
        self._register("weight", w, learn_weight)

        shape = (n,) if per == "axon" else (n, n)
        if delay is None and isinstance(delay_init, str) and max_delay is None:
            raise ValueError("recurrent synapses need delays: give delay= (seconds), or "
                             "max_delay= to draw them with delay_init")
        seconds = initial_delay(delay if delay is not None else delay_init, shape,
                                max_delay=max_delay, std=delay_std, generator=generator)
        exact = seconds  # float64, remembered for exact dtype conversions
        if not self.kernel.grid:  # checked in the synapse's dtype, like Dense
            seconds = seconds.to(dtype)
        seconds = self._checked_seconds(seconds, shape)
        if self.kernel.grid:
            steps = (seconds / self.dt).to(dtype).contiguous().to(device)
            self._register("delay_steps", steps, learn_delay)
            self.remember_exact("delay_steps", seconds.to(torch.float64) / self.dt)
            sigma = self.kernel.initial_sigma(0)
            self.register_buffer("sigma", torch.tensor(float(sigma), dtype=dtype, device=device))
            self.remember_exact("sigma", float(sigma))
            self.p_spread = (nn.Parameter(torch.zeros(n, dtype=dtype, device=device))
                             if learn_width else None)
        else:
            self._register("delay", seconds.to(dtype=dtype, device=device), learn_delay)
            self.remember_exact("delay", exact)
            self.register_buffer("sigma", None)
            self.p_spread = None
        self._run: RingRun | ScatterRun | None = None
        self._token: Tensor | None = None  # scatter path: last write's token (see ring_scatter)
        self._substep = False

    # ----------------------------------------------------------------- construction helpers
    def _check_kernel_options(self, dt: float | None, learn_width: bool, dropout: float,
                              eval_mode: str) -> None:
        if self.kernel.grid:
            if dt is None:
                raise ValueError(f"{self.kernel!r} counts delays in grid steps: give dt= "
                                 "(seconds, the grid the simulation runs on)")
            check_positive("dt", dt)
            return
        if dt is not None:
            raise ValueError(f"{self.kernel!r} takes dt from the simulation; dt= is for grid "
                             "kernels such as Triangle")
        if learn_width or dropout or eval_mode != "paper":
            raise ValueError("learn_width, dropout and eval_mode belong to the Triangle kernel "
                             "(DelRec); Exact delays have none of them")

    def _register(self, name: str, value: Tensor, learn: bool) -> None:
        if learn:
            setattr(self, name, nn.Parameter(value))
        else:
            self.register_buffer(name, value)

    def _checked_seconds(self, seconds: Tensor, shape: tuple[int, ...]) -> Tensor:
        if tuple(seconds.shape) != shape:
            kind = "[N] per presynaptic axon" if self.per == "axon" else "[N_post, N_pre]"
            raise ValueError(f"delay must have shape {list(shape)} ({kind}, per={self.per!r}), "
                             f"got {list(seconds.shape)}")
        check_finite("delay", seconds)
        if bool((seconds < 0).any()):
            raise ValueError(f"delay must be non-negative (seconds), got minimum "
                             f"{seconds.min().item()!r}")
        if self.max_delay is not None and bool((seconds > self.max_delay * (1 + 1e-12)).any()):
            raise ValueError(f"delay must not exceed max_delay = {self.max_delay} s, got "
                             f"{seconds.max().item()!r}")
        return seconds

    # ----------------------------------------------------------------- properties
    def __getattr__(self, name: str):
        # Grid kernels store steps; ``delay`` (seconds) is derived, so it follows the steps.
        if name == "delay":
            steps = self.__dict__["_parameters"].get("delay_steps")
            if steps is None:
                steps = self.__dict__["_buffers"].get("delay_steps")
            if steps is not None:
                return steps * self.dt
        return super().__getattr__(name)

    @property
    def n_in(self) -> int:
        return self.n

    @property
    def n_out(self) -> int:
        return self.n

    @property
    def effective_weight(self) -> Tensor:
        """The weight with the fan-in mask applied (what the forward uses)."""
        return self.weight if self.mask is None else self.weight * self.mask

    @property
    def max_delay_steps(self) -> float | None:
        if self.max_delay is None or self.dt is None:
            return None
        return self.max_delay / self.dt

    def synapse_delay(self) -> Tensor:
        """Delays in seconds as ``[N, N]`` (per-axon delays expanded), checked first
        (:meth:`check_delays`)."""
        self.check_delays()
        return self.delay.expand(self.n, self.n)

    def check_delays(self) -> None:
        """Raise ``ValueError`` unless every delay is finite and in ``[0, max_delay]`` (seconds),
        naming the parameter. ``Triangle``: ``delay_steps`` finite and in ``[0, max_delay / dt]``
        steps (a negative delay is acausal: it asks for lags below one step, whose mass the
        kernel would silently drop; the DelRec recipes project with :meth:`clamp_delays_`).

        Called by :meth:`start` (once per sequence, one min/max reduction) and
        :meth:`synapse_delay`; :meth:`clamp_delays_` projects back into ``[0, max_delay]``.
        """
        if self.kernel.grid:
            check_delay_range("RecurrentDense.delay_steps", self.delay_steps,
                              self.max_delay_steps, unit="steps")
        else:
            check_delay_range("RecurrentDense.delay", self.delay, self.max_delay)

    def delay_parameters(self) -> Iterator[nn.Parameter]:
        """Learnable delays and width logits (DelRec trains them with their own optimiser)."""
        for name in ("delay", "delay_steps"):
            if name in self._parameters:
                yield self._parameters[name]
        if isinstance(self.p_spread, nn.Parameter):
            yield self.p_spread

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """The learnable recurrent weight (if any)."""
        if isinstance(self.weight, nn.Parameter):
            yield self.weight

    # ----------------------------------------------------------------- schedule/clamp/eval
    def set_sigma(self, sigma: float) -> None:
        """Set the spread σ (steps, ``>= 0``), e.g. from a DelRec schedule."""
        if self.sigma is None:
            raise ValueError(f"{self.kernel!r} has no width to set")
        self.kernel.check_sigma(float(sigma))
        self.sigma.fill_(float(sigma))

    @torch.no_grad()
    def clamp_delays_(self) -> RecurrentDense:
        """Clamp the delays in place to ``[0, max_delay]`` and re-apply the fan-in mask (call
        after every optimiser step; the forward never clamps silently, it refuses a delay out
        of range). A NaN or infinite delay (a diverged update) is a ``ValueError`` naming it."""
        if self.kernel.grid:
            clamp_delay_("RecurrentDense.delay_steps", self.delay_steps, self.max_delay_steps)
        else:
            clamp_delay_("RecurrentDense.delay", self.delay, self.max_delay)
        if self.mask is not None:
            self.weight.mul_(self.mask)
        return self

    @torch.no_grad()
    def round_(self) -> RecurrentDense:
        """``Triangle``: round the delays in place to whole steps (half to even), clamp to
        ``>= 0`` (what the DelRec code does at every evaluation, ``eval_mode="reference"``)."""
        self.delay_steps.copy_(torch.round(self.delay_steps).clamp_(min=0.0))
        return self

    def train(self, mode: bool = True) -> RecurrentDense:
        if not mode and self.kernel.grid and self.eval_mode == "reference":
            self.round_()
        return super().train(mode)

    def width(self) -> Tensor:
        """``Triangle``: half-width ``s`` in use, scalar ``1 + σ`` or ``[N]`` with
        ``learn_width``; 1 in ``eval()`` with ``eval_mode="paper"``."""
        if not self.training and self.eval_mode == "paper":
            return torch.ones((), dtype=self.sigma.dtype, device=self.sigma.device)
        if self.p_spread is None:
            return 1.0 + self.sigma
        return 1.0 + 2.0 * self.sigma * torch.sigmoid(self.p_spread)

    def effective_delay(self) -> Tensor:
        """``Triangle``: ``d`` (steps) in use: the parameter, or ``max(0, round(d))`` in
        paper-mode evaluation."""
        if not self.training and self.eval_mode == "paper":
            return torch.round(self.delay_steps.detach()).clamp(min=0.0)
        return self.delay_steps

    def kernel_tensor(self, n_lags: int | None = None) -> Tensor:
        """``Triangle``: the spread ``h`` in use, ``[L, N]`` (axon) or ``[L, N_post, N_pre]``
        (synapse); ``L`` defaults to :meth:`n_lags`; weights not included."""
        if not self.kernel.grid:
            raise ValueError(f"{self.kernel!r} has no lag kernel: its discrete-time lags are "
                             "round(delay / dt) of the simulation's dt")
        d, s = self.effective_delay(), self.width()
        if self.per == "synapse" and s.ndim == 1:
            s = s[None, :]  # per presynaptic neuron
        return self.kernel.spread(d, s, self.n_lags() if n_lags is None else n_lags)

    def n_lags(self) -> int:
        """``Triangle``: buffer length ``L = ceil(1 + max d + max s) + 1``."""
        d = self.effective_delay().detach()
        check_finite("delay_steps", d)
        return buffer_length(float(d.max()), float(self.width().detach().max()))

    # ----------------------------------------------------------------- protocol
    def start(self, batch_size: int, *, dtype: torch.dtype, device: torch.device,
              dt: float | None = None, time: str = "discrete") -> None:
        """Begin a sequence of ``batch_size`` samples (the engine calls it before step 0);
        nothing from a previous sequence is kept."""
        self.kernel.require(time)
        self.check_delays()
        if self.kernel.grid:
            self._start_ring(batch_size, dtype, device, dt)
        else:
            self._start_exact(batch_size, dt, time)

    def read(self, n: int) -> Tensor:
        """Discrete time: summed recurrent jumps ``[B, N]`` arriving at the end of step ``n``."""
        if self.kernel.grid:
            return self._read_ring(n)
        out = None
        for k in self._lags:
            if n - k >= 0:
                term = self._history[n - k] @ self._masked[k].t()
                out = term if out is None else out + term
        if out is None:
            return self.weight.new_zeros(self._batch, self.n)
        return out

    def write(self, n: int, spikes: Tensor) -> None:
        """Discrete time: the spikes ``[B, N]`` emitted in step ``n`` (they arrive at ``n + 1``
        at the earliest)."""
        if self.kernel.grid:
            self._write_ring(n, spikes)
        else:
            self._history.append(spikes)

    def emit(self, n: int, times: Tensor, batch: Tensor, units: Tensor,
             local: Tensor | None = None) -> None:
        """Continuous time: schedule the arrivals of the spikes emitted during step ``n``
        (times in seconds; ``local``: the same times within step ``n``, which decide, as in
        :meth:`in_step_arrivals`, which arrivals were already applied within the step)."""
        if times.numel() == 0:
            return
        n_out = self.n
        target = torch.arange(n_out, device=times.device).repeat(times.numel())
        src = torch.repeat_interleave(torch.arange(times.numel(), device=times.device), n_out)
        delay = self.delay.expand(self.n, self.n)  # checked by start()
        arrival = snap_to_grid(times[src] + delay[target, units[src]], self._dt)
        step, offset = locate(arrival, self._dt)
        value = self.effective_weight[target, units[src]]
        if local is None or not self._substep:
            later = step > n  # arrivals within step n were applied there (in_step_arrivals)
        else:
            _, inside = self._in_step(local, times, units, n)
            later = ~inside.reshape(-1)  # [S, N_post] row-major: the pairs above
        if not bool(later.all()):
            target, src, step, offset, value = (x[later] for x in (target, src, step, offset,
                                                                    value))
            if step.numel() == 0:
                return
        # Bucket by arrival step once, so each step takes its own arrivals without touching
        # (or adding autograd nodes for) everything still in flight.
        order = torch.argsort(step, stable=True)
        steps, counts = torch.unique_consecutive(step[order], return_counts=True)
        sizes = counts.tolist()
        parts = [torch.split(x[order], sizes) for x in (batch[src], target, offset, value)]
        for i, k in enumerate(steps.tolist()):
            self._pending.setdefault(k, []).append(tuple(p[i] for p in parts))

    @property
    def substep(self) -> bool:
        """Continuous time: some delay is shorter than the grid step (or zero), so spikes of a
        step can act within that same step (the engine then settles the step, see
        :mod:`ctsnn.engine.substep`). Set by :meth:`start`."""
        return self._substep

    def _in_step(self, local: Tensor, times: Tensor, units: Tensor, n: int
                 ) -> tuple[Tensor, Tensor]:
        """``(local arrival time [S, N_post], inside step n [S, N_post])`` of spikes of step
        ``n`` at local times ``local [S]`` (``times [S]``: the same in seconds, as logged).
        A positive delay arrives at ``times + d`` (snapped onto a grid point within a few
        ulps) located in the grid exactly as :meth:`emit` locates the arrivals of later steps,
        so the arrival time does not depend on ``dt`` nor on whether it lands in its
        sender's step (``local + d`` can differ from it in the last bit and split a tie of
        two arrivals); a zero delay lands on its spike's local time bit for bit."""
        delay = self.delay.expand(self.n, self.n)[:, units].t()
        step, offset = locate(snap_to_grid(times[:, None] + delay, self._dt), self._dt)
        zero = delay.detach() == 0
        offset = torch.where(zero, local[:, None] + delay, offset)  # + 0: the gradient in d
        return offset, zero | (step == n)

    def first_in_step(self, local: Tensor, times: Tensor, units: Tensor, n: int) -> Tensor:
        """Earliest arrival time (local, detached) inside their step ``n`` of each spike
        ``(local times [S], times [S] seconds, units [S])``, ``inf`` for spikes with no
        arrival inside it."""
        if local.numel() == 0:
            return local.detach()
        arrival, inside = self._in_step(local.detach(), times.detach(), units, n)
        arrival = arrival.detach()
        first = torch.where(inside, arrival, torch.full_like(arrival, torch.inf))
        return first.min(dim=1).values

    def in_step_arrivals(self, local: Tensor, times: Tensor, units: Tensor, n: int
                         ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor] | None:
        """Continuous time: the arrivals inside their step ``n`` of spikes ``(local [S]
        seconds within the step, times [S] the same in seconds, units [S])`` (delays shorter
        than what is left of the step, zero included: a zero-delay arrival lands at the
        spike's own time bit for bit), one per (spike, target): ``(src [E] index of the
        spike, target [E], local offset [E] in ``[0, dt]``, value [E], zero [E] the delay is
        0)``, or ``None``."""
        if local.numel() == 0:
            return None
        offsets, inside = self._in_step(local, times, units, n)
        src, target = inside.nonzero(as_tuple=True)
        if src.numel() == 0:
            return None
        zero = self.delay.expand(self.n, self.n)[target, units[src]].detach() == 0
        return src, target, offsets[src, target], self.effective_weight[target, units[src]], zero

    def arrivals(self, n: int) -> StepArrivals | None:
        """Continuous time: arrivals during step ``n`` of the spikes emitted so far."""
        chunks = self._pending.pop(n, None)
        if not chunks:
            return None
        if len(chunks) == 1:
            batch, target, offset, value = chunks[0]
        else:
            batch, target, offset, value = (torch.cat(x) for x in zip(*chunks, strict=True))
        order = row_order((batch, target), (self._batch, self.n), offset.detach())
        batch, target, offset, value = batch[order], target[order], offset[order], value[order]
        rank = ranks((batch, target), offset.detach())
        k = int(rank.max()) + 1
        return element_arrivals(rank, batch, target, offset, value, k, self._batch, self.n,
                                self._dt)

    def release(self) -> None:
        """Drop the last sequence's working set (ring buffer, window, kernel graph)."""
        self._run = self._token = None

    def __getstate__(self) -> dict:
        # copy.deepcopy / pickle: the working set holds non-leaf tensors of the last graph.
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        return {**state, "_run": None, "_token": None}

    # ----------------------------------------------------------------- exact delays
    def _start_exact(self, batch_size: int, dt: float | None, time: str) -> None:
        if dt is None:
            raise ValueError("RecurrentDense with exact delays needs the grid step: "
                             "start(..., dt=) (the engine passes it)")
        delay = self.delay.detach().expand(self.n, self.n)
        present = delay if self.mask is None else delay[self.mask.bool()]
        low = float(present.min()) if present.numel() else float("inf")
        self._substep = time != "discrete" and low < dt * (1 - 1e-9)
        # Discrete time uses round(d / dt) steps (in the delay's dtype): the check compares
        # the same rounded lags, so a float32 1e-4 (9.99999997e-5) at dt = 1e-4 is one step.
        if time == "discrete" and present.numel() and float(torch.round(present / dt).min()) < 1:
            raise ValueError(
                f"RecurrentDense.delay: in discrete time recurrent delays must be at least one "
                f"grid step (dt = {dt} s; delays are rounded to whole steps), got a minimum of "
                f"{low} s = {low / dt:g} steps (a spike of step n acts at step n + 1 at the "
                "earliest); use time='continuous' for shorter or zero delays, or a smaller dt"
            )
        self._dt, self._batch = dt, batch_size
        if time == "discrete":
            lags = torch.round(self.synapse_delay().detach() / dt).long()
            if self.mask is not None:  # synapses removed by fan_in: their delay is unused
                lags = torch.where(self.mask.bool(), lags, lags.clamp_min(1))
            self._lags = [int(k) for k in torch.unique(lags).tolist()]
            # One masked weight per distinct lag, built once per sequence (saved once).
            w = self.effective_weight
            self._masked = {k: w * (lags == k).to(w.dtype) for k in self._lags}
            self._history: list[Tensor] = []
        else:
            # step -> chunks of (batch, target, offset, value) arriving during that step
            self._pending: dict[int, list[tuple[Tensor, ...]]] = {}

    # ----------------------------------------------------------------- ring buffer
    def _start_ring(self, batch_size: int, dtype: torch.dtype, device: torch.device,
                    dt: float | None) -> None:
        if dt is not None and not same_dt(dt, self.dt):
            raise ValueError(
                f"RecurrentDense({self.kernel!r}) was built for dt = {self.dt:g} s but the "
                f"simulation runs at dt = {dt:g} s: its delays are stored in steps, so build it "
                "with the same dt"
            )
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if dtype != self.weight.dtype:
            raise TypeError(f"RecurrentDense has dtype {self.weight.dtype} but the simulation "
                            f"runs in {dtype}; convert the layer (e.g. layer.to({dtype}))")
        if torch.device(device).type != self.weight.device.type:
            raise ValueError(f"RecurrentDense is on {self.weight.device} but the simulation "
                             f"runs on {device}")
        check_finite("weight", self.weight.detach())
        d = self.effective_delay()
        check_finite("delay_steps", d.detach())
        hi = self.max_delay_steps
        if hi is not None and float(d.detach().max()) > hi * (1 + 1e-9) + 1e-12:
            raise ValueError(
                f"delays exceed max_delay = {self.max_delay} s ({hi:g} steps): maximum "
                f"{float(d.detach().max()):g} steps; call clamp_delays_() after each optimiser "
                "step")
        if self.p_spread is not None:
            check_finite("p_spread", self.p_spread.detach())
        s = self.width()
        n_lags = buffer_length(float(d.detach().max()), float(s.detach().max()))
        if self.per == "synapse" and s.ndim == 1:
            s = s[None, :]
        h = self.kernel.spread(d, s, n_lags)
        mask = None
        if self.training and self.dropout > 0:
            keep = 1.0 - self.dropout
            mask = torch.bernoulli(torch.full((batch_size, self.n), keep, dtype=dtype,
                                              device=device)) / keep
        kernel = h if self.per == "axon" else h * self.effective_weight
        self._token = None
        if self.scatter_applies(dtype):
            lags, coefs = spread_taps(kernel)
            self._run = ScatterRun(lags, coefs, self.effective_weight, n_lags, batch_size, mask)
            return
        # rotated(n) = kernel[(n - slot) mod L] for ring slot ``slot``: a contiguous slice of
        # ``doubled[i] = kernel[(-i) mod L]`` (see _read_ring()).
        idx = (-torch.arange(2 * n_lags, device=kernel.device)) % n_lags
        doubled = kernel.detach()[idx]
        if self.per == "synapse":
            doubled = doubled.transpose(1, 2)
        doubled = doubled.contiguous()
        ring = torch.zeros(batch_size, n_lags, self.n, dtype=dtype, device=device)
        self._run = RingRun(kernel, doubled, ring, deque(maxlen=n_lags - 1), mask, batch_size,
                            self.per == "synapse")

    def scatter_applies(self, dtype: torch.dtype) -> bool:
        """Whether :meth:`start` takes the compiled spike-scatter path
        (:mod:`ctsnn.synapses.ring_scatter`) for a run in ``dtype``: ``Triangle`` kernel,
        per-axon delays, float32 or float64, and :func:`ctsnn.compiled.kernels_enabled` for the
        module's tensors (CPU, numba, switch on). The engine's fused recurrent LIF
        (:mod:`ctsnn.engine.compiled.lif_recurrent`) runs exactly when this holds."""
        return (self.kernel.grid and self.per == "axon"
                and dtype in (torch.float32, torch.float64)
                and kernels_enabled(self.weight, self.delay_steps))

    @property
    def scatter_run(self) -> ScatterRun | None:
        """The working set of the current sequence on the scatter path (after :meth:`start`),
        else ``None``."""
        return self._run if isinstance(self._run, ScatterRun) else None

    def _check_step(self, what: str, n: int) -> RingRun | ScatterRun:
        run = self._run
        if run is None:
            raise RuntimeError(f"RecurrentDense.{what}({n}) before start(): the engine calls "
                               "start(batch_size, dtype=, device=) first")
        if n != run.step:
            raise ValueError(f"RecurrentDense.{what}({n}) out of order: expected step "
                             f"{run.step} (read(n) then write(n), n = 0, 1, 2, ...)")
        return run

    def _read_ring(self, n: int) -> Tensor:
        run = self._check_step("read", n)
        if isinstance(run, ScatterRun):
            x = run.read(n, self._token)
            return x if run.mask is None else x * run.mask
        if not run.window:
            return torch.zeros(run.batch_size, self.n, dtype=run.ring.dtype,
                               device=run.ring.device)
        n_lags = run.ring.shape[1]
        r = n % n_lags
        rotated = run.doubled[n_lags - r:2 * n_lags - r]
        weight = None if run.synaptic else self.effective_weight
        x = RingRead.apply(run.kernel, weight, rotated, run, *run.window)
        return x if run.mask is None else x * run.mask

    def _write_ring(self, n: int, spikes: Tensor) -> None:
        run = self._check_step("write", n)
        shape = (run.batch_size, self.n)
        if not isinstance(spikes, Tensor) or tuple(spikes.shape) != shape:
            got = list(spikes.shape) if isinstance(spikes, Tensor) else type(spikes).__name__
            raise ValueError(f"RecurrentDense.write: spikes must have shape {list(shape)} "
                             f"[B, N], got {got}")
        if isinstance(run, ScatterRun):
            self._token = run.write(n, spikes, self._token)
            return
        run.ring[:, n % run.ring.shape[1]] = spikes.detach()
        run.window.appendleft(spikes)
        run.step += 1

    def extra_repr(self) -> str:
        parts = [f"n={self.n}", f"kernel={self.kernel!r}", f"per={self.per!r}"]
        if self.kernel.grid:
            parts.append(f"dt={self.dt:g}")
            if self.p_spread is not None:
                parts.append("learn_width")
            parts += [f"dropout={self.dropout:g}", f"eval_mode={self.eval_mode!r}"]
        if self.fan_in is not None:
            parts.append(f"fan_in={self.fan_in}")
        return ", ".join(parts)


__all__ = ["RecurrentDense", "EVAL_MODES"]
