"""Feed-forward synapses with one learnable real-valued delay per synapse (DCLS semantics).

:class:`DelayedLinear` turns presynaptic spikes ``x [T, B, N_in]`` into the per-step summed
jumps

    ``I[t, b, i] = sum_j w_ij (k_ij * x_j)[t] = sum_j w_ij sum_n k_ij[n] x[t - n, b, j]``

where ``k_ij`` is the delay kernel of synapse ``(i, j)`` over ``K`` lags (see
:mod:`ctsnn.delays.kernels`). Output step ``t`` only depends on inputs at steps ``<= t``
(causal); with ``pad_right = p`` the input is extended by ``p`` zero steps so that spikes
delayed past the end are still delivered (output ``[T + p, B, N_out]``).

Two implementations:

* Gaussian kernel (dense, ``K`` taps): the kernel ``[N_out, N_in, K]`` is built and applied as
  a 1-D convolution (``conv1d`` over ``[B, N_in, T]``), like DCLS.
* One- and two-tap kernels (rounded, triangle, straight-through rounded): no dense kernel.
  For every distinct lag ``L`` among the taps, the coefficients with that lag form an
  ``[N_out, N_in]`` matrix ``W_L`` and ``I[L:] += x[:T-L] @ W_L^T`` (a custom autograd function
  that recomputes ``W_L`` in the backward pass): memory ``O(N_out N_in)`` plus activations,
  whatever ``K``. A dense-convolution reference (:func:`_dense_conv`) is kept for tests.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .._checks import check_choice, check_finite, check_positive, check_tensor
from ..spikes import Spikes
from .kernels import (
    DCLS_SIGMA_OFFSET,
    Taps,
    delay_to_position,
    gaussian_kernel,
    kernel_size,
    round_delay,
    rounded_taps,
    taps_to_dense,
    triangle_taps,
)

KERNELS = ("gaussian", "triangle", "rounded")
DELAY_INITS = ("uniform", "half_normal", "dcls_reference")

#: Relative tolerance within which a delay given in seconds is snapped onto a whole step.
_SNAP = 1e-9


# --------------------------------------------------------------------------- convolutions
def _dense_conv(x: Tensor, kernel: Tensor, pad_right: int = 0) -> Tensor:
    """Reference causal convolution with a dense lag-indexed kernel.

    Args:
        x: ``[T, B, N_in]``.
        kernel: ``[N_out, N_in, K]``, tap ``n`` = lag ``n`` steps (weights included).
        pad_right: zero steps appended to the input.

    Returns:
        ``[T + pad_right, B, N_out]``, ``out[t] = sum_n kernel[:, :, n] @ x[t - n]``.
    """
    k = kernel.shape[-1]
    xb = F.pad(x.permute(1, 2, 0), (k - 1, pad_right))  # [B, N_in, K - 1 + T + pad]
    # conv1d is a cross-correlation: weight index m meets input t + m, i.e. lag K - 1 - m.
    return F.conv1d(xb, kernel.flip(-1)).permute(2, 0, 1)


def _lag_matrix(lags: Tensor, coefs: Tensor, lag: int) -> Tensor:
    """``W_L [N_out, N_in]``: sum over taps of the coefficients whose lag is ``lag``."""
    return torch.where(lags == lag, coefs, torch.zeros((), dtype=coefs.dtype,
                                                        device=coefs.device)).sum(0)


class _TapConv(torch.autograd.Function):
    """``out[t] = sum_taps sum_j coefs[k, :, j] x[t - lags[k, :, j], :, j]`` per distinct lag."""

    @staticmethod
    def forward(ctx, x: Tensor, lags: Tensor, coefs: Tensor) -> Tensor:  # type: ignore[override]
        n_steps, batch, n_in = x.shape
        n_out = coefs.shape[1]
        distinct = [v for v in torch.unique(lags).tolist() if v < n_steps]
        out = x.new_zeros(n_steps, batch, n_out)
        for lag in distinct:
            w = _lag_matrix(lags, coefs, lag)
            out[lag:].view(-1, n_out).addmm_(x[: n_steps - lag].reshape(-1, n_in), w.t())
        ctx.save_for_backward(x, lags, coefs)
        ctx.distinct = distinct
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, lags, coefs = ctx.saved_tensors
        n_steps, _, n_in = x.shape
        n_out = coefs.shape[1]
        grad = grad.contiguous()
        need_x, _, need_c = ctx.needs_input_grad
        gx = torch.zeros_like(x) if need_x else None
        gc = torch.zeros_like(coefs) if need_c else None
        zero = torch.zeros((), dtype=coefs.dtype, device=coefs.device)
        for lag in ctx.distinct:
            g = grad[lag:].reshape(-1, n_out)
            xs = x[: n_steps - lag].reshape(-1, n_in)
            if gx is not None:
                gx[: n_steps - lag].view(-1, n_in).addmm_(g, _lag_matrix(lags, coefs, lag))
            if gc is not None:
                gc += torch.where(lags == lag, (g.t() @ xs).unsqueeze(0), zero)
        return gx, None, gc


def _tap_conv(x: Tensor, taps: Taps, pad_right: int = 0) -> Tensor:
    """Causal convolution with a sparse kernel, ``[T, B, N_in] -> [T + pad_right, B, N_out]``.

    ``taps.lags`` / ``taps.coefs``: ``[n_taps, N_out, N_in]`` (weights included).
    """
    if pad_right:
        x = F.pad(x, (0, 0, 0, 0, 0, pad_right))
    return _TapConv.apply(x.contiguous(), taps.lags, taps.coefs)


# --------------------------------------------------------------------------- module
def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class DelayedLinear(nn.Module):
    """Dense (or fixed fan-in sparse) synapses with one learnable delay per synapse.

    DCLS semantics: the kernel has ``K = max_delay / dt`` taps, made odd (+1 if even), and each
    synapse's delay ``d`` lies in ``[0, K - 1]`` steps (0 allowed; e.g. ``max_delay = 0.25 s``,
    ``dt = 0.01 s`` -> ``K = 25``, delays 0..0.24 s). In training mode the delay reaches the grid
    through the selected ``kernel``; in evaluation mode (``.eval()``) every delay is rounded to
    the nearest step (ties to even, as :class:`ctsnn.synapses.Dense`) and applied as an exact
    one-tap shift of weight ``w`` — nothing is modified in place, so ``.train()`` resumes from
    the untouched real-valued delays.

    Args:
        n_in, n_out: numbers of presynaptic inputs and postsynaptic neurons.
        max_delay: longest delay window in seconds, a whole number of steps (>= 0).
        dt: grid step in seconds (the step of the rasters given to :meth:`jumps`).
        kernel: training kernel: ``"gaussian"`` (DCLS: window-normalised Gaussian of width
            ``sigma``, dense ``K``-tap convolution), ``"triangle"`` (linear interpolation, 2 taps)
            or ``"rounded"`` (one tap at the rounded delay; delays still learn through a
            straight-through triangle gradient).
        learn_delay, learn_weight: register delays / weights as parameters (else buffers).
        delay_init: ``"uniform"`` (``U(0, K - 1)`` steps, DCLS), ``"half_normal"``
            (``|N(0, delay_std^2)|`` clipped to the window, DelRec-style), ``"dcls_reference"``
            (the DCLS code's ``P ~ U((-K)//2, K//2)`` clamped to ``±K//2``, which puts about
            ``1/K`` of the delays exactly at the maximum), a number (constant delay, seconds) or a
            tensor of delays in seconds, ``[n_out, n_in]`` or per axon ``[n_in]``.
        delay_std: standard deviation (seconds) of ``"half_normal"``; default half the window.
        fan_in: if given, each neuron receives exactly ``fan_in`` randomly chosen inputs (a fixed
            mask, re-applied by :meth:`clamp_`; the DCLS sparse ablation uses 10). DCLS draws a
            Bernoulli mask instead (a fixed count only on average).
        pad_right: zero steps appended to the input so late spikes are still delivered: an int
            >= 0 or ``"half"`` for ``(K - 1) // 2`` (the DCLS setting).
        sigma: Gaussian ``sigma_eff`` in **steps** (default ``K // 2 + 0.27``, the DCLS start).
        bias: add a learnable bias ``[n_out]`` at every output step.
        round_in_eval: use rounded one-tap delays in evaluation mode (default ``True``);
            ``False`` keeps the training kernel (for analysis).
        generator: random generator for the initialisation.
        dtype, device: of the parameters.

    Parameters and buffers:
        ``weight [n_out, n_in]``: Kaiming-uniform (ReLU gain, fan-in = connected inputs).
        ``delay_steps [n_out, n_in]``: delays **in steps** (float); seconds via :attr:`delay`,
        DCLS positions via :attr:`position` (``P = (K - 1) / 2 - d``).
        ``sigma`` (buffer, 0-d): current Gaussian width in steps, set by :meth:`set_sigma`.
        ``mask [n_out, n_in]`` (buffer, bool) with ``fan_in``.

    Call :meth:`clamp_` after every optimiser step (DCLS clamps positions after every batch).

    As the synapse of a :class:`ctsnn.Layer`: the engine currently simulates as many steps as
    the layer's *input* has, so output steps added by ``pad_right`` would be dropped there; pad
    the input with zero steps instead (identical result), as :mod:`ctsnn.papers.dcls` does.
    """

    weight: Tensor
    delay_steps: Tensor
    sigma: Tensor
    mask: Tensor | None
    bias: Tensor | None

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        max_delay: float,
        dt: float,
        kernel: str = "gaussian",
        learn_delay: bool = True,
        learn_weight: bool = True,
        delay_init: str | float | Tensor = "uniform",
        delay_std: float | None = None,
        fan_in: int | None = None,
        pad_right: int | str = 0,
        sigma: float | None = None,
        bias: bool = False,
        round_in_eval: bool = True,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        for name, v in (("n_in", n_in), ("n_out", n_out)):
            if not _is_int(v) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        check_choice("kernel", kernel, KERNELS)
        self.n_in, self.n_out = n_in, n_out
        self.dt = float(dt)
        self.max_delay = float(max_delay)
        self.kernel_size = kernel_size(max_delay, dt)
        self.kernel = kernel
        self.round_in_eval = bool(round_in_eval)
        k = self.kernel_size
        if pad_right == "half":
            pad_right = (k - 1) // 2
        if not _is_int(pad_right) or pad_right < 0:
            raise ValueError(f"pad_right must be a non-negative int or 'half', got {pad_right!r}")
        self.pad_right = pad_right
        if fan_in is not None and (not _is_int(fan_in) or not 1 <= fan_in <= n_in):
            raise ValueError(f"fan_in must be an int in [1, n_in = {n_in}], got {fan_in!r}")
        self.fan_in = fan_in
        factory = {"dtype": dtype or torch.get_default_dtype(), "device": device}

        if fan_in is None:
            self.register_buffer("mask", None)
        else:
            order = torch.rand(n_out, n_in, generator=generator).argsort(dim=1)[:, :fan_in]
            mask = torch.zeros(n_out, n_in, dtype=torch.bool)
            mask.scatter_(1, order, True)
            self.register_buffer("mask", mask.to(device))

        weight = torch.empty(n_out, n_in, **factory)
        delay = torch.empty(n_out, n_in, **factory)
        if learn_weight:
            self.weight = nn.Parameter(weight)
        else:
            self.register_buffer("weight", weight)
        if learn_delay:
            self.delay_steps = nn.Parameter(delay)
        else:
            self.register_buffer("delay_steps", delay)
        if bias:
            self.bias = nn.Parameter(torch.zeros(n_out, **factory))
        else:
            self.register_parameter("bias", None)
        self.register_buffer("sigma", torch.tensor(float(k // 2) + DCLS_SIGMA_OFFSET,
                                                   **factory))
        if sigma is not None:
            self.set_sigma(sigma)
        self.reset_parameters(delay_init=delay_init, delay_std=delay_std, generator=generator)

    # ----------------------------------------------------------------- properties
    @property
    def max_delay_steps(self) -> int:
        """Longest representable delay ``K - 1`` in steps."""
        return self.kernel_size - 1

    @property
    def delay(self) -> Tensor:
        """Delays in seconds ``[n_out, n_in]`` (``delay_steps * dt``; differentiable)."""
        return self.delay_steps * self.dt

    @property
    def position(self) -> Tensor:
        """DCLS centred positions ``P = (K - 1) / 2 - d`` (steps), ``[n_out, n_in]``."""
        return delay_to_position(self.delay_steps, self.kernel_size)

    @property
    def effective_weight(self) -> Tensor:
        """The weight with the fan-in mask applied (what the forward pass uses)."""
        return self.weight if self.mask is None else self.weight * self.mask

    def n_parameters(self, *, active_only: bool = False) -> int:
        """Weights + delays (+ bias), learnable or not, never sigma (DCLS counting).

        ``active_only`` counts only the synapses kept by the fan-in mask.
        """
        n_syn = self.n_out * self.n_in
        if active_only and self.mask is not None:
            n_syn = int(self.mask.sum())
        return 2 * n_syn + (0 if self.bias is None else self.n_out)

    # ----------------------------------------------------------------- initialisation
    def _to_steps(self, name: str, delay: Tensor) -> Tensor:
        """Validate delays in seconds and convert them to steps (snapping near-whole steps)."""
        check_finite(name, delay)
        if bool((delay < 0).any()):
            raise ValueError(f"{name} must be non-negative, got minimum {delay.min().item()!r} s")
        steps = delay / self.dt
        whole = torch.round(steps)
        near = (steps - whole).abs() <= _SNAP * whole.abs().clamp(min=1.0)
        steps = torch.where(near, whole, steps)
        top = self.max_delay_steps
        if bool((steps > top).any()):
            worst = delay.max().item()
            raise ValueError(
                f"{name}: delay {worst!r} s exceeds the longest representable delay "
                f"(K - 1) dt = {top} x {self.dt} = {top * self.dt!r} s (max_delay = "
                f"{self.max_delay} s gives K = {self.kernel_size} taps)"
            )
        return steps

    @torch.no_grad()
    def reset_parameters(
        self,
        *,
        delay_init: str | float | Tensor = "uniform",
        delay_std: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        """(Re-)initialise weights (Kaiming-uniform, ReLU gain) and delays (see class doc)."""
        n_conn = self.fan_in or self.n_in
        bound = math.sqrt(2.0) * math.sqrt(3.0 / n_conn)
        shape = (self.n_out, self.n_in)
        w = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound
        self.weight.copy_(w)
        if self.mask is not None:
            self.weight.mul_(self.mask)
        if self.bias is not None:
            self.bias.zero_()
        self.delay_steps.copy_(self._init_delays(delay_init, delay_std, generator))

    def _init_delays(self, init: str | float | Tensor, std: float | None,
                     generator: torch.Generator | None) -> Tensor:
        k, top = self.kernel_size, self.max_delay_steps
        shape = (self.n_out, self.n_in)
        if isinstance(init, Tensor):
            delay = init.detach().to(torch.float64).cpu()
            if delay.shape == (self.n_in,):
                delay = delay.expand(shape)
            if delay.shape != shape:
                raise ValueError(f"delay_init must have shape [n_out, n_in] = {list(shape)} or "
                                 f"[n_in] = [{self.n_in}], got {list(delay.shape)}")
            return self._to_steps("delay_init", delay)
        if isinstance(init, (int, float)) and not isinstance(init, bool):
            return self._to_steps("delay_init", torch.full(shape, float(init),
                                                           dtype=torch.float64))
        if not isinstance(init, str):
            raise TypeError(f"delay_init must be a string, a number (s) or a tensor (s), got "
                            f"{type(init).__name__}")
        check_choice("delay_init", init, DELAY_INITS)
        if init == "uniform":
            return torch.rand(shape, generator=generator, dtype=torch.float64) * top
        if init == "half_normal":
            if std is None:
                std_steps = top / 2
            else:
                check_positive("delay_std", std)
                std_steps = std / self.dt
            d = torch.randn(shape, generator=generator, dtype=torch.float64).abs() * std_steps
            return d.clamp(max=top)
        # DCLS reference quirk: P ~ U((-K) // 2, K // 2) with Python floor division
        # (-13 for K = 25), then clamped to [-(K // 2), K // 2].
        lo, hi = (-k) // 2, k // 2
        p = torch.rand(shape, generator=generator, dtype=torch.float64) * (hi - lo) + lo
        p = p.clamp(-(k // 2), k // 2)
        return (k - 1) / 2 - p

    @torch.no_grad()
    def set_delay(self, delay: Tensor | float) -> None:
        """Set the delays, in seconds (``[n_out, n_in]``, ``[n_in]`` or a number)."""
        self.delay_steps.copy_(self._init_delays(
            delay if isinstance(delay, Tensor) else float(delay), None, None))

    @torch.no_grad()
    def set_weight(self, weight: Tensor) -> None:
        """Set the weights ``[n_out, n_in]`` (the fan-in mask is applied)."""
        check_tensor("weight", weight, shape=[self.n_out, self.n_in])
        check_finite("weight", weight)
        self.weight.copy_(weight)
        if self.mask is not None:
            self.weight.mul_(self.mask)

    def set_sigma(self, sigma: float) -> None:
        """Set the Gaussian ``sigma_eff`` in steps (e.g. from a DCLS schedule)."""
        value = float(sigma) if isinstance(sigma, Tensor) else sigma
        check_positive("sigma", value)
        # A new tensor rather than an in-place fill: a graph built before the change stays valid.
        self.sigma = torch.full_like(self.sigma, float(value))

    @torch.no_grad()
    def clamp_(self) -> None:
        """Project after an optimiser step: delays into ``[0, K - 1]``, fan-in mask on weights.

        Raises ``ValueError`` if a delay became NaN or infinite (a diverged update).
        """
        check_finite("delay_steps", self.delay_steps)
        self.delay_steps.clamp_(0, self.max_delay_steps)
        if self.mask is not None:
            self.weight.mul_(self.mask)

    # ----------------------------------------------------------------- kernels
    def taps(self) -> Taps | None:
        """The current sparse kernel (weights included), or ``None`` for the dense Gaussian.

        Evaluation mode (with ``round_in_eval``): one tap at the rounded delay, value ``w``.
        Training: ``"triangle"`` 2 taps; ``"rounded"`` 2 straight-through taps.
        """
        w = self.effective_weight
        d = self.delay_steps.clamp(0, self.max_delay_steps)
        k = self.kernel_size
        if not self.training and self.round_in_eval:
            r = round_delay(d.detach()).long()
            return Taps(r.unsqueeze(0), w.unsqueeze(0))
        if self.kernel == "gaussian":
            return None
        if self.kernel == "triangle":
            lags, coefs = triangle_taps(d, k)
        else:  # straight-through taps only when the delays need a gradient
            lags, coefs = rounded_taps(d, k, straight_through=d.requires_grad)
        return Taps(lags, coefs * w)

    def kernel_tensor(self) -> Tensor:
        """Dense lag-indexed kernel ``[n_out, n_in, K]`` of the current mode, weights included.

        This is what the forward pass applies (the sparse kernels never build it there).
        """
        taps = self.taps()
        if taps is not None:
            return taps_to_dense(taps, self.kernel_size)
        g = gaussian_kernel(self.delay_steps, self.sigma, self.kernel_size)
        return g * self.effective_weight.unsqueeze(-1)

    # ----------------------------------------------------------------- forward
    def output_steps(self, n_steps: int) -> int:
        """Output length for ``n_steps`` input steps: ``n_steps + pad_right``."""
        return n_steps + self.pad_right

    def jumps(self, x: Tensor | Spikes) -> Tensor:
        """Summed delayed input per step.

        Args:
            x: presynaptic spikes (or graded values) as a raster ``[T, B, n_in]`` on this
                module's grid ``dt`` (its entry ``n`` is the spike at the end of step ``n``), or
                :class:`~ctsnn.spikes.Spikes` with the same ``dt``. Cast to the weight dtype.

        Returns:
            ``[T + pad_right, B, n_out]``; differentiable w.r.t. ``x``, weights and (in
            training mode) delays.
        """
        if isinstance(x, Spikes):
            if x.n_units != self.n_in:
                raise ValueError(f"input spikes have {x.n_units} units but the layer expects "
                                 f"n_in = {self.n_in}")
            if abs(x.dt - self.dt) > 1e-9 * self.dt:
                raise ValueError(f"input spikes have dt = {x.dt} s but the delays are on a grid "
                                 f"of dt = {self.dt} s (rebin the spikes first)")
            x = x.raster(dtype=self.weight.dtype)
        check_tensor("x", x, ndim=3, floating=True)
        if x.shape[2] != self.n_in:
            raise ValueError(f"x has {x.shape[2]} channels but the layer expects n_in = "
                             f"{self.n_in} (shape {list(x.shape)}, time-first [T, B, N])")
        x = x.to(self.weight.dtype)
        taps = self.taps()
        if taps is None:
            out = _dense_conv(x, self.kernel_tensor(), self.pad_right)
        else:
            out = _tap_conv(x, taps, self.pad_right)
        if self.bias is not None:
            out = out + self.bias
        return out

    forward = jumps

    def extra_repr(self) -> str:
        parts = [f"n_in={self.n_in}", f"n_out={self.n_out}", f"kernel={self.kernel!r}",
                 f"K={self.kernel_size}", f"dt={self.dt}"]
        if self.fan_in is not None:
            parts.append(f"fan_in={self.fan_in}")
        if self.pad_right:
            parts.append(f"pad_right={self.pad_right}")
        if self.bias is not None:
            parts.append("bias=True")
        return ", ".join(parts)


__all__ = ["DelayedLinear", "KERNELS", "DELAY_INITS"]
