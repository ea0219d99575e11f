"""Learnable recurrent delays with a triangular spread (DelRec, discrete time).

:class:`DelayedRecurrent` is a population's own recurrent connection with a real-valued,
learnable delay per presynaptic neuron (``per="axon"``, DelRec's published setting) or per
synapse (``per="synapse"``). It implements the :class:`ctsnn.simulation.Recurrent` protocol,
so it plugs into :class:`ctsnn.Layer` / :func:`ctsnn.run_population` and trains with them::

    rec = DelayedRecurrent(256, dt=1e-3, sigma=10.0, delay_init=uniform_delays(10e-3, 30e-3))
    layer = ctsnn.Layer(ctsnn.LIF(256, tau_mem=1.05e-3), w_in, recurrent=rec,
                        surrogate=ctsnn.surrogate.atan(5.0), method="euler")
    spikes, state = layer(x, dt=1e-3)

Semantics (all in steps ``n`` of the grid; delays are stored **in steps**, given in seconds):

* A spike of neuron ``j`` emitted in step ``m`` reaches neuron ``i`` with lag ``τ = n - m``
  steps (it is added to ``i``'s jump target at the end of step ``n``) with weight
  ``W[i, j] h_j(τ)``, where the **effective lag** is ``1 + d`` (``d >= 0``: the minimum recurrent
  delay is one step; ``d = 0`` is a vanilla RSNN)::

      X_rec_i[n] = Σ_{τ>=1} Σ_j W_ij h_{ij}(τ) S_j[n - τ]
      h(τ) = max(0, s - |τ - (1 + d)|) / s²,     s = 1 + σ

  (triangle of half-width ``s`` and peak ``1/s``). With ``σ = 0`` this is linear interpolation
  between the two integer lags around ``1 + d`` (``d = 2.3``: 0.7 at lag 3, 0.3 at lag 4).
  With ``learn_width=True`` the half-width is per presynaptic neuron,
  ``s_j = 1 + 2σ sigmoid(p_j)`` (``p`` initialised to 0, so ``s = 1 + σ`` at first).
* **Mass.** Lag 0 does not exist (same-step recurrence is impossible), so when ``d < σ`` the
  part of the triangle on ``τ <= 0`` is discarded (mass < 1; ``d < 0`` is allowed during
  training, as in the reference SSC/PS-MNIST trainers, and loses mass the same way). The
  samples of the triangle sum to exactly 1 when ``σ`` is a whole number and ``d >= σ``; for a
  non-integer ``σ`` the sampled sum differs from 1 (e.g. ``σ = 0.06``, integer ``d``: centre
  ``1/1.06 = 0.943``, each neighbour ``0.06/1.06² = 0.053``, total ``1.05``), as in DelRec.
* **Delay gradient.** ``∂h/∂d = sign(τ - 1 - d)/s²`` inside the support, by autograd. At the
  kinks (``σ = 0`` and integer ``d``) it is 0, so do not start training at integer delays
  with ``σ = 0``.
* **Dropout** (``dropout > 0``, training only): the summed recurrent input ``[B, N]`` is
  multiplied by a Bernoulli mask scaled by ``1/(1 - p)`` that is drawn once per sequence in
  :meth:`start` and fixed over all its steps.
* **Evaluation** (``module.eval()``), chosen by ``eval_mode``:

  - ``"paper"`` (default): ``σ = 0`` and integer delays ``max(0, round(d))`` (round half to
    even, like ``torch.round``; never truncation). The parameters are not touched, so training
    resumes exactly where it was.
  - ``"reference"``: the DelRec code's behaviour: entering evaluation rounds the delays **in
    place** and clamps them to ``>= 0`` (no restore; training continues from the rounded
    values), and the current ``σ`` (and ``p``) stay in use, so an integer delay still leaks to
    its neighbour lags (``σ ≈ 0.062`` at the end of a 100-epoch schedule: centre 0.942,
    neighbours 0.055).
  - ``"continuous"``: evaluate with the training kernel.

Memory. The module does **not** keep per-step ``[B, N, L]`` buffers for backward (the
scheme of the reference code, ``O(T·B·N·L)`` activations). Each read is a weighted sum over the
last ``L - 1`` spike tensors, computed by a custom autograd function that saves only
*references* to the spike tensors the engine already holds; backward rebuilds each step's
window and the lag sum on the fly. The connection thus adds no activation memory per step
beyond the spikes the engine keeps anyway (``O(T·B·N)`` in total), plus an ``O(B·N·L)`` working
set (a ring buffer of detached spikes and scratch space). The buffer
length ``L = ceil(1 + max d + max s) + 1`` is recomputed at every :meth:`start`, so it grows
and shrinks with the current delays (``max_delay`` bounds it if given). Cost per step:
``O(B·N·L + B·N²)`` (axonal) or ``O(B·N²·L)`` (synaptic), forward and backward alike.

Limitations (engine protocol): every :meth:`start` begins with an empty history, so recurrent
spikes do not carry over when a sequence is simulated in chunks with ``Layer(x, state)``; and
the engine does not pass ``dt`` to :meth:`start`, so the ``dt`` given here must equal the
layer's (it only converts seconds to steps; the dynamics are in steps).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .._checks import check_choice, check_finite, check_positive, check_tensor
from ..training.schedules import DelRecSigmaSchedule

PER = ("axon", "synapse")
EVAL_MODES = ("paper", "reference", "continuous")

DelayInit = float | Tensor | Callable[[tuple[int, ...]], Tensor]


# --------------------------------------------------------------------------- kernel
def triangle_spread(delay: Tensor, width: Tensor | float, n_lags: int) -> Tensor:
    """DelRec spread ``h(τ) = max(0, s - |τ - (1 + d)|) / s²`` for lags ``τ = 0 .. n_lags - 1``.

    Args:
        delay: ``d`` in steps, any shape ``S`` (effective lag ``1 + d``).
        width: half-width ``s = 1 + σ`` (steps, ``>= 1``), broadcastable to ``S``.
        n_lags: number of lags ``L`` (``>= 1``).

    Returns:
        ``[L, *S]``; row 0 (lag 0, never delivered) is exactly 0. Differentiable w.r.t.
        ``delay`` and ``width``.
    """
    check_tensor("delay", delay, floating=True)
    if not isinstance(n_lags, int) or isinstance(n_lags, bool) or n_lags < 1:
        raise ValueError(f"n_lags must be a positive int, got {n_lags!r}")
    s = torch.as_tensor(width, dtype=delay.dtype, device=delay.device)
    tau = torch.arange(1, n_lags, dtype=delay.dtype, device=delay.device)
    tau = tau.reshape(-1, *([1] * delay.ndim))
    h = torch.relu(s - (tau - 1 - delay).abs()) / s**2
    zero = torch.zeros((1, *h.shape[1:]), dtype=h.dtype, device=h.device)
    return torch.cat([zero, h])


def buffer_length(max_delay_steps: float, max_width: float) -> int:
    """Lags kept by the buffer: ``L = ceil(1 + max d + max s) + 1`` (at least 2)."""
    return max(2, math.ceil(1.0 + max_delay_steps + max_width) + 1)


def sigma_schedule(epoch: int, epochs: int, sigma_init: float = 10.0, decay: float = 0.95) -> float:
    """DelRec's σ for epoch ``epoch`` (0-based) of ``epochs``: ``σ_init decay^(100 e / E)``.

    Set it at the *start* of every epoch (``module.set_sigma(sigma_schedule(e, E))``); it never
    reaches 0 (≈ 0.061 at the last of 150 epochs). Same as
    :class:`ctsnn.training.schedules.DelRecSigmaSchedule`.
    """
    return DelRecSigmaSchedule(epochs, sigma_init=sigma_init, decay=decay).sigma(epoch)


def uniform_delays(low: float, high: float) -> Callable[[tuple[int, ...]], Tensor]:
    """Delay initialiser ``U(low, high)`` in seconds (DelRec SHD: ``U(10, 30)`` steps)."""
    check_positive("low", low, allow_zero=True)
    check_positive("high", high, allow_zero=True)
    if high < low:
        raise ValueError(f"uniform_delays: high ({high}) must be >= low ({low})")
    return lambda shape: low + (high - low) * torch.rand(shape, dtype=torch.float64)


def half_normal_delays(std: float) -> Callable[[tuple[int, ...]], Tensor]:
    """Delay initialiser ``|N(0, std²)|`` in seconds (DelRec SSC/PS-MNIST: std 12 steps)."""
    check_positive("std", std, allow_zero=True)
    return lambda shape: (std * torch.randn(shape, dtype=torch.float64)).abs()


# --------------------------------------------------------------------------- autograd
class _RecurrentRead(torch.autograd.Function):
    """One read ``x[b, i] = Σ_{τ=1..k} Σ_j W_ij h_ij(τ) S[n-τ][b, j]`` that saves no activations.

    Axonal: ``kernel = h [L, N]`` and ``weight = W``: ``x = (Σ_τ h[τ] ⊙ S[n-τ]) Wᵀ``.
    Synaptic: ``kernel = W ⊙ h [L, N_post, N_pre]`` and ``weight = None``:
    ``x = Σ_τ S[n-τ] kernel[τ]ᵀ``.

    The forward pass uses the run's ring buffer ``[B, L, N]`` of detached spikes and ``rotated``
    (the detached kernel permuted to the ring's slots; synaptic: transposed to
    ``[L, N_pre, N_post]``). Only *references* to ``kernel``, ``weight`` and the window tensors
    ``S[n-1], ..., S[n-k]`` (which the engine holds anyway) are saved; backward stacks the window
    again and recomputes the lag sum. Large temporaries go to workspaces reused by every step:
    per-step temporaries interleaved with the small tensors autograd keeps fragment glibc's heap
    (measured: +2.5 MB of resident memory per step with a fresh ``[B, L, N]`` product).
    """

    @staticmethod
    def forward(ctx, kernel: Tensor, weight: Tensor | None, rotated: Tensor, run: _Run,
                *window: Tensor) -> Tensor:
        ring = run.ring
        b = ring.shape[0]
        if run.synaptic:
            out = ring.reshape(b, -1) @ rotated.reshape(-1, rotated.shape[-1])
        else:
            y = ring.new_empty(b, ring.shape[2])
            work = run.workspace("forward", ring.shape)
            torch.mul(ring, rotated, out=work)
            torch.sum(work, 1, out=y)
            out = y @ weight.t()
        ctx.run = run
        ctx.save_for_backward(kernel, weight, *window)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        kernel, weight, *window = ctx.saved_tensors
        run: _Run = ctx.run
        # Drop the reference: the run's window holds spike tensors whose graph leads back to
        # this node, a cycle through the C++ graph that Python's collector cannot break (one
        # training step's working set leaked per step). A second backward through the same
        # graph (retain_graph=True) is therefore not supported.
        ctx.run = None
        if run is None:
            raise RuntimeError("DelayedRecurrent: backward through the same recurrent read twice "
                               "(retain_graph=True) is not supported; run the forward again")
        k = len(window)
        need_kernel, need_weight = ctx.needs_input_grad[:2]
        need_window = ctx.needs_input_grad[4:]
        grad_kernel = grad_weight = None
        grad_window: list[Tensor | None] = [None] * k
        taps = kernel[1:k + 1]
        if run.synaptic:
            grad_y = grad
        else:
            grad_y = grad @ weight  # gradient w.r.t. the lag sum y
        if need_kernel or need_weight:
            shape = (run.ring.shape[1], *window[0].shape)
            stack = run.workspace("stack", shape)[:k]
            torch.stack(window, out=stack)  # [k, B, N_pre]
            if need_weight:  # axonal only: recompute y = Σ_τ h[τ] S[n-τ]
                prod = run.workspace("product", shape)[:k]
                torch.mul(stack, taps[:, None, :], out=prod)
                grad_weight = grad.t() @ prod.sum(0)
            if need_kernel:
                grad_kernel = torch.zeros_like(kernel)
                if run.synaptic:
                    torch.matmul(grad.t(), stack, out=grad_kernel[1:k + 1])
                else:
                    stack.mul_(grad_y)
                    torch.sum(stack, 1, out=grad_kernel[1:k + 1])
        # One separate tensor per lag: views into one [k, B, N] block would keep the whole
        # block alive until the last of them is consumed (O(B N L²) pending gradients).
        for i, need in enumerate(need_window):
            if need:
                grad_window[i] = grad @ taps[i] if run.synaptic else grad_y * taps[i]
        return (grad_kernel, grad_weight, None, None, *grad_window)


# --------------------------------------------------------------------------- module
class DelayedRecurrent(nn.Module):
    """Recurrent connection with learnable delays and the DelRec triangular spread.

    See the module docstring for the equations. Implements the discrete-time
    :class:`ctsnn.simulation.Recurrent` protocol (``start`` / ``read`` / ``write``).

    Args:
        n: number of neurons ``N`` (the connection is ``N -> N``).
        dt: grid step (s); converts delays between seconds (API) and steps (storage). It must
            equal the ``dt`` the layer is simulated with.
        max_delay: upper bound of ``d`` in seconds (``None``: unbounded; the buffer follows the
            current delays). If given, :meth:`start` refuses delays above it: call
            :meth:`clamp_` after every optimiser step.
        per: ``"axon"`` (one delay per presynaptic neuron, ``[N]``) or ``"synapse"``
            (``[N_post, N_pre]``; costs ``O(B N² L)`` per step instead of ``O(B N L + B N²)``).
        sigma: spread σ (steps, ``>= 0``); change it with :meth:`set_sigma`.
        learn_delay, learn_weight: make ``delay_steps`` / ``weight`` ``nn.Parameter`` s
            (otherwise buffers).
        learn_width: per-neuron learnable width ``s_j = 1 + 2σ sigmoid(p_j)`` (``p_spread``).
        delay_init: ``d`` in seconds: a number, a tensor of the delay shape, or a callable
            ``shape -> Tensor`` (e.g. :func:`uniform_delays`, :func:`half_normal_delays`).
            Must be finite and ``>= 0`` (and ``<= max_delay``).
        weight_init: ``"orthogonal"`` (gain 1, DelRec), a tensor ``[N, N]`` (``[post, pre]``),
            or a callable initialising a tensor in place (e.g. ``torch.nn.init.zeros_``).
        dropout: recurrent dropout probability, mask fixed over the sequence (training only).
        eval_mode: ``"paper"``, ``"reference"`` or ``"continuous"`` (see module docstring).

    Attributes:
        weight: ``[N_post, N_pre]``.
        delay_steps: ``d`` in steps, ``[N]`` (axon) or ``[N, N]`` (synapse).
        p_spread: ``[N]`` width logits (only with ``learn_width``).
        sigma: scalar buffer (steps).
    """

    def __init__(
        self,
        n: int,
        *,
        dt: float,
        max_delay: float | None = None,
        per: str = "axon",
        sigma: float = 0.0,
        learn_delay: bool = True,
        learn_weight: bool = True,
        learn_width: bool = False,
        delay_init: DelayInit = 0.0,
        weight_init: str | Tensor | Callable[[Tensor], object] = "orthogonal",
        dropout: float = 0.0,
        eval_mode: str = "paper",
    ) -> None:
        super().__init__()
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise ValueError(f"n (number of neurons) must be a positive int, got {n!r}")
        check_positive("dt", dt)
        check_choice("per", per, PER)
        check_choice("eval_mode", eval_mode, EVAL_MODES)
        check_positive("sigma", sigma, allow_zero=True)
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if max_delay is not None:
            check_positive("max_delay", max_delay, allow_zero=True)
        self.n, self.dt, self.per, self.eval_mode = n, float(dt), per, eval_mode
        self.max_delay = None if max_delay is None else float(max_delay)
        self.dropout = float(dropout)
        dtype = torch.get_default_dtype()

        weight = self._initial_weight(weight_init, dtype)
        if learn_weight:
            self.weight = nn.Parameter(weight)
        else:
            self.register_buffer("weight", weight)

        shape = (n,) if per == "axon" else (n, n)
        delay = self._initial_delay(delay_init, shape, dtype)
        if learn_delay:
            self.delay_steps = nn.Parameter(delay)
        else:
            self.register_buffer("delay_steps", delay)
        if learn_width:
            self.p_spread = nn.Parameter(torch.zeros(n, dtype=dtype))
        else:
            self.p_spread = None
        self.register_buffer("sigma", torch.tensor(float(sigma), dtype=dtype))
        self._run: _Run | None = None

    # ----------------------------------------------------------------- construction
    def _initial_weight(self, init, dtype: torch.dtype) -> Tensor:
        n = self.n
        if isinstance(init, str):
            if init != "orthogonal":
                raise ValueError(f"unknown weight_init {init!r}; expected 'orthogonal', a tensor "
                                 "or a callable")
            w = torch.empty(n, n, dtype=dtype)
            nn.init.orthogonal_(w, gain=1.0)
            return w
        if isinstance(init, Tensor):
            check_tensor("weight_init", init, shape=(n, n), floating=True)
            check_finite("weight_init", init)
            return init.detach().to(dtype).clone(memory_format=torch.contiguous_format)
        if callable(init):
            w = torch.empty(n, n, dtype=dtype)
            with torch.no_grad():
                init(w)
            check_finite("weight_init(...)", w)
            return w
        raise TypeError(f"weight_init must be 'orthogonal', a tensor or a callable, got "
                        f"{type(init).__name__}")

    def _initial_delay(self, init: DelayInit, shape: tuple[int, ...], dtype) -> Tensor:
        if isinstance(init, bool):
            raise TypeError("delay_init must be a number, a tensor or a callable, got bool")
        if isinstance(init, (int, float)):
            seconds = torch.full(shape, float(init), dtype=torch.float64)
        elif isinstance(init, Tensor):
            seconds = init.detach().to(torch.float64)
            if seconds.ndim == 0:
                seconds = seconds.expand(shape)
        elif callable(init):
            seconds = init(shape)
            if not isinstance(seconds, Tensor):
                raise TypeError(f"delay_init(shape) must return a tensor, got "
                                f"{type(seconds).__name__}")
            seconds = seconds.detach().to(torch.float64)
        else:
            raise TypeError(f"delay_init must be a number, a tensor or a callable, got "
                            f"{type(init).__name__}")
        if tuple(seconds.shape) != shape:
            kind = "[N] per presynaptic axon" if self.per == "axon" else "[N_post, N_pre]"
            raise ValueError(f"delay_init must have shape {list(shape)} ({kind}, per="
                             f"{self.per!r}), got {list(seconds.shape)}")
        check_finite("delay_init", seconds)
        if (seconds < 0).any():
            raise ValueError(f"delay_init must be non-negative (seconds; the effective lag is "
                             f"1 + d steps), got minimum {seconds.min().item()!r}")
        if self.max_delay is not None and (seconds > self.max_delay * (1 + 1e-12)).any():
            raise ValueError(f"delay_init must not exceed max_delay = {self.max_delay} s, got "
                             f"{seconds.max().item()!r}")
        return (seconds / self.dt).to(dtype).contiguous()

    # ----------------------------------------------------------------- properties
    @property
    def n_in(self) -> int:
        return self.n

    @property
    def n_out(self) -> int:
        return self.n

    @property
    def delay(self) -> Tensor:
        """``d`` in seconds (``delay_steps * dt``; the effective lag is ``(1 + d/dt)`` steps)."""
        return self.delay_steps * self.dt

    @property
    def max_delay_steps(self) -> float | None:
        return None if self.max_delay is None else self.max_delay / self.dt

    def delay_parameters(self) -> Iterator[nn.Parameter]:
        """Learnable delays and width logits (DelRec trains them with their own optimiser)."""
        for p in (self.delay_steps, self.p_spread):
            if isinstance(p, nn.Parameter):
                yield p

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """The learnable recurrent weight (if any)."""
        if isinstance(self.weight, nn.Parameter):
            yield self.weight

    # ----------------------------------------------------------------- schedule/clamp/eval
    def set_sigma(self, sigma: float) -> None:
        """Set the spread σ (steps, ``>= 0``), e.g. from :func:`sigma_schedule`."""
        check_positive("sigma", float(sigma), allow_zero=True)
        self.sigma.fill_(float(sigma))

    @torch.no_grad()
    def clamp_(self) -> DelayedRecurrent:
        """Clamp the delays in place to ``[0, max_delay]`` (call after every optimiser step)."""
        hi = self.max_delay_steps
        self.delay_steps.clamp_(min=0.0, max=hi)
        return self

    @torch.no_grad()
    def round_(self) -> DelayedRecurrent:
        """Round the delays in place to whole steps (half to even) and clamp them to ``>= 0``.

        This is what the reference code does at every evaluation (``eval_mode="reference"``
        calls it from :meth:`train` ``(False)``).
        """
        self.delay_steps.copy_(torch.round(self.delay_steps).clamp_(min=0.0))
        return self

    def train(self, mode: bool = True) -> DelayedRecurrent:
        if not mode and self.eval_mode == "reference":
            self.round_()
        return super().train(mode)

    def width(self) -> Tensor:
        """Half-width ``s`` in use: scalar ``1 + σ``, or ``[N]`` with ``learn_width``.

        In ``eval()`` with ``eval_mode="paper"`` it is 1 (σ = 0).
        """
        if not self.training and self.eval_mode == "paper":
            return torch.ones((), dtype=self.sigma.dtype, device=self.sigma.device)
        if self.p_spread is None:
            return 1.0 + self.sigma
        return 1.0 + 2.0 * self.sigma * torch.sigmoid(self.p_spread)

    def effective_delay(self) -> Tensor:
        """``d`` (steps) in use: the parameter, or ``max(0, round(d))`` in paper-mode eval."""
        if not self.training and self.eval_mode == "paper":
            return torch.round(self.delay_steps.detach()).clamp(min=0.0)
        return self.delay_steps

    def kernel(self, n_lags: int | None = None) -> Tensor:
        """The spread ``h`` in use: ``[L, N]`` (axon) or ``[L, N_post, N_pre]`` (synapse).

        ``L`` defaults to :attr:`n_lags`; the weight is not included.
        """
        d, s = self.effective_delay(), self.width()
        if self.per == "synapse" and s.ndim == 1:
            s = s[None, :]  # per presynaptic neuron
        return triangle_spread(d, s, self.n_lags() if n_lags is None else n_lags)

    def n_lags(self) -> int:
        """Buffer length ``L = ceil(1 + max d + max s) + 1`` for the current delays and σ."""
        d = self.effective_delay().detach()
        check_finite("delay_steps", d)
        return buffer_length(float(d.max()), float(self.width().detach().max()))

    # ----------------------------------------------------------------- protocol
    def start(self, batch_size: int, *, dtype: torch.dtype, device: torch.device,
              dt: float | None = None) -> None:
        """Prepare a sequence of ``batch_size`` samples (called by the engine before step 0).

        ``dt`` (the simulation's grid step, passed by the engine) must equal the module's own.
        """
        if dt is not None and abs(dt - self.dt) > 1e-9 * self.dt:
            raise ValueError(
                f"DelayedRecurrent was built for dt = {self.dt:g} s but the simulation runs at "
                f"dt = {dt:g} s: its delays are stored in steps, so build it with the same dt"
            )
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if dtype != self.weight.dtype:
            raise TypeError(f"DelayedRecurrent has dtype {self.weight.dtype} but the simulation "
                            f"runs in {dtype}; convert the layer (e.g. layer.to({dtype}))")
        if torch.device(device).type != self.weight.device.type:
            raise ValueError(f"DelayedRecurrent is on {self.weight.device} but the simulation "
                             f"runs on {device}")
        check_finite("weight", self.weight.detach())
        d = self.effective_delay()
        check_finite("delay_steps", d.detach())
        hi = self.max_delay_steps
        if hi is not None and float(d.detach().max()) > hi * (1 + 1e-9) + 1e-12:
            raise ValueError(
                f"delays exceed max_delay = {self.max_delay} s ({hi:g} steps): maximum "
                f"{float(d.detach().max()):g} steps; call clamp_() after each optimiser step")
        if self.p_spread is not None:
            check_finite("p_spread", self.p_spread.detach())
        s = self.width()
        n_lags = buffer_length(float(d.detach().max()), float(s.detach().max()))
        if self.per == "synapse" and s.ndim == 1:
            s = s[None, :]
        h = triangle_spread(d, s, n_lags)
        kernel = h if self.per == "axon" else h * self.weight
        # rotated(n) = kernel[(n - slot) mod L] for ring slot ``slot``: a contiguous slice of
        # ``doubled[i] = kernel[(-i) mod L]`` (see read()).
        idx = (-torch.arange(2 * n_lags, device=kernel.device)) % n_lags
        doubled = kernel.detach()[idx]
        if self.per == "synapse":
            doubled = doubled.transpose(1, 2)
        doubled = doubled.contiguous()
        mask = None
        if self.training and self.dropout > 0:
            keep = 1.0 - self.dropout
            mask = torch.bernoulli(torch.full((batch_size, self.n), keep, dtype=dtype,
                                              device=device)) / keep
        ring = torch.zeros(batch_size, n_lags, self.n, dtype=dtype, device=device)
        self._run = _Run(kernel, doubled, ring, deque(maxlen=n_lags - 1), mask, batch_size,
                         self.per == "synapse")

    def _check_step(self, what: str, n: int) -> _Run:
        run = self._run
        if run is None:
            raise RuntimeError(f"DelayedRecurrent.{what}({n}) before start(): the engine calls "
                               "start(batch_size, dtype=, device=) first")
        if n != run.step:
            raise ValueError(f"DelayedRecurrent.{what}({n}) out of order: expected step "
                             f"{run.step} (read(n) then write(n), n = 0, 1, 2, ...)")
        return run

    def read(self, n: int) -> Tensor:
        """Summed recurrent jumps ``[B, N]`` arriving at the end of step ``n``."""
        run = self._check_step("read", n)
        if not run.window:
            return torch.zeros(run.batch_size, self.n, dtype=run.ring.dtype,
                               device=run.ring.device)
        n_lags = run.ring.shape[1]
        r = n % n_lags
        rotated = run.doubled[n_lags - r:2 * n_lags - r]
        weight = None if run.synaptic else self.weight
        x = _RecurrentRead.apply(run.kernel, weight, rotated, run, *run.window)
        return x if run.mask is None else x * run.mask

    def write(self, n: int, spikes: Tensor) -> None:
        """Hand over the spikes ``[B, N]`` emitted in step ``n`` (they arrive at ``n + 1`` on)."""
        run = self._check_step("write", n)
        shape = (run.batch_size, self.n)
        if not isinstance(spikes, Tensor) or tuple(spikes.shape) != shape:
            got = list(spikes.shape) if isinstance(spikes, Tensor) else type(spikes).__name__
            raise ValueError(f"DelayedRecurrent.write: spikes must have shape {list(shape)} "
                             f"[B, N], got {got}")
        run.ring[:, n % run.ring.shape[1]] = spikes.detach()
        run.window.appendleft(spikes)
        run.step += 1

    def release(self) -> None:
        """Drop the last sequence's working set (ring buffer, window, kernel graph)."""
        self._run = None

    def __getstate__(self) -> dict:
        # copy.deepcopy / pickle: the working set holds non-leaf tensors of the last graph.
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        return {**state, "_run": None}

    def extra_repr(self) -> str:
        width = ", learn_width" if self.p_spread is not None else ""
        return (f"n={self.n}, dt={self.dt:g}, per={self.per!r}, sigma={float(self.sigma):g}"
                f"{width}, dropout={self.dropout:g}, eval_mode={self.eval_mode!r}")


class _Run:
    """Per-sequence working set of :class:`DelayedRecurrent` (never saved for backward).

    ``ring [B, L, N]`` holds the last ``L`` spike tensors (detached, slot ``n mod L``),
    ``window`` references to the last ``L - 1`` ones (most recent first) for backward.
    """

    __slots__ = ("kernel", "doubled", "ring", "window", "mask", "batch_size", "synaptic", "step",
                 "_work")

    def __init__(self, kernel: Tensor, doubled: Tensor, ring: Tensor, window: deque,
                 mask: Tensor | None, batch_size: int, synaptic: bool) -> None:
        self.kernel, self.doubled, self.ring, self.window = kernel, doubled, ring, window
        self.mask, self.batch_size, self.synaptic, self.step = mask, batch_size, synaptic, 0
        self._work: dict[str, Tensor] = {}

    def workspace(self, name: str, shape: tuple[int, ...]) -> Tensor:
        """A scratch tensor reused across steps (allocated on first use)."""
        work = self._work.get(name)
        if work is None or tuple(work.shape) != tuple(shape):
            work = self.ring.new_empty(shape)
            self._work[name] = work
        return work


__all__ = ["DelayedRecurrent", "triangle_spread", "buffer_length", "sigma_schedule",
           "uniform_delays", "half_normal_delays"]
