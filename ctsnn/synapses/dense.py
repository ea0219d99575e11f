"""Feed-forward synapses: :class:`Dense`, all-to-all or fixed fan-in, with any delay kernel.

``Dense`` turns presynaptic spikes into postsynaptic input:

* discrete time, :meth:`Dense.jumps`: ``I[t, b, i] = sum_j w_ij sum_n k_ij[n] x[t - n, b, j]``
  (``[T, B, N_in] -> [T + pad_right, B, N_out]``), ``k_ij`` the delay kernel of synapse
  ``(i, j)`` over lags (:mod:`ctsnn.synapses.kernels`);
* continuous time (``kernel=Exact()`` only), :meth:`Dense.arrivals`: the exact arrival
  schedule, a spike at ``t`` reaching neuron ``i`` at ``t + d_ij``.

Two delay storages, chosen by the kernel:

* :class:`~ctsnn.synapses.kernels.Exact` (default): delays in **seconds** (``delay``), ``dt``
  taken from the spikes at every call; in discrete time they are rounded to whole steps (ties
  to even) and applied event-driven.
* grid kernels (:class:`~ctsnn.synapses.kernels.Rounded`, ``Triangle``, ``Gaussian``): delays in
  **steps** of the ``dt`` given at construction (``delay_steps``; ``delay`` is
  ``delay_steps * dt``), in a window of ``K = max_delay / dt`` taps made odd (DCLS), delays in
  ``[0, K - 1]`` steps. One- and two-tap kernels run as a tap convolution (no dense ``K`` kernel),
  dense kernels as one ``conv1d``. In ``eval()`` every delay is rounded to the nearest step
  (``round_in_eval``), without touching the trained values.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_choice, check_finite, check_positive, check_tensor
from ..compiled import prepare_kernel_runtime
from ..dtypes import ExactValues
from ..spikes import Spikes
from .arrivals import Arrivals, DelayedArrivals
from .conv import dense_conv, event_jumps, tap_conv
from .gaussian_taps import weighted_gaussian_taps
from .init import DelayInit, WeightInit, fixed_fan_in_mask, initial_delay, initial_weight
from .kernels import (
    EXACT,
    DelayKernel,
    Gaussian,
    Taps,
    as_kernel,
    delay_to_position,
    kernel_size,
    round_delay,
    taps_to_dense,
)
from .ranges import check_delay_range, check_max_delay, clamp_delay_
from .scatter_grad_input import check_rows, mask_input_grad
from .spike_scatter import scatter_pays, spike_scatter, window_pays, window_scatter

PER = ("synapse", "axon")
#: Grid-kernel delay initialisers by name (``"dcls_reference"``: the DCLS code's quirk).
GRID_DELAY_INITS = ("uniform", "half_normal", "dcls_reference")

#: Relative tolerance within which a delay given in seconds is snapped onto a whole step.
_SNAP = 1e-9


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def same_dt(a: float, b: float) -> bool:
    """Whether two grid steps agree (relative 1e-9)."""
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


class Dense(ExactValues, nn.Module):
    """Dense (or fixed fan-in sparse) synapses with optional, optionally learnable delays.

    Args:
        n_in, n_out: numbers of inputs and postsynaptic neurons (or give ``weight``).
        weight: explicit weights ``[n_out, n_in]`` (otherwise drawn by ``weight_init``).
        delay: explicit delays in seconds, ``[n_out, n_in]`` (per synapse), ``[n_in]`` (per
            axon) or a number; otherwise drawn by ``delay_init`` when ``max_delay`` is given, and
            no delays at all without either.
        kernel: delay kernel object (:class:`~ctsnn.synapses.kernels.Exact` by default; the
            names ``"exact"``, ``"rounded"``, ``"triangle"``, ``"gaussian"`` also work).
        max_delay: longest delay (seconds). Grid kernels: the window, a whole number of steps.
        dt: grid step (seconds); required by grid kernels (delays counted in steps of it), an
            error for :class:`Exact` (which takes ``dt`` from the spikes).
        per: ``"synapse"`` (delays ``[n_out, n_in]``; an ``[n_in]`` initial value is copied to
            every target) or ``"axon"`` (one delay per input ``[n_in]``, shared by its targets).
        learn_weight, learn_delay: register as parameters (else buffers).
        fan_in: each neuron receives exactly ``fan_in`` randomly chosen inputs (a fixed mask).
        weight_init: ``"kaiming_uniform"`` (over the connected fan-in), ``"orthogonal"``, a
            tensor or an in-place callable (see :mod:`ctsnn.synapses.init`).
        delay_init: ``"uniform"`` (``[0, max_delay]``; grid kernels ``U(0, K - 1)`` steps),
            ``"half_normal"`` (``|N(0, delay_std²)|`` clipped, ``delay_std`` default half the
            window), ``"dcls_reference"`` (grid kernels: the DCLS code's ``P ~ U((-K)//2, K//2)``
            clamped, about ``1/K`` of the delays at the maximum), a number, a tensor or a
            callable ``shape -> seconds``.
        delay_std: seconds, for ``"half_normal"``.
        pad_right: zero steps appended in :meth:`jumps` so late spikes are still delivered (an
            int, or ``"half"`` = ``(K - 1) // 2`` for grid kernels, the DCLS setting).
        bias: add a learnable bias ``[n_out]`` at every output step (discrete time).
        round_in_eval: grid kernels: rounded one-tap delays in ``eval()`` (default).
        generator, dtype, device: for the initialisation and the tensors.

    Dtype: that of ``weight`` if given, else ``dtype``, else the default dtype. Delays are drawn
    in float64 and remembered, so ``.double()`` gives the delays a float64 build would have
    (:class:`~ctsnn.dtypes.ExactValues`; e.g. ``delay=0.003`` stays exactly 0.003 s).

    Attributes: ``weight [n_out, n_in]`` (masked at init and by :meth:`clamp_delays_`; the
    forward always uses :attr:`effective_weight`); ``delay`` (seconds, or ``None``);
    ``delay_steps`` (grid kernels); ``sigma`` (0-d buffer, steps, kernels with a width);
    ``mask [n_out, n_in]`` (bool, with ``fan_in``).
    """

    mask: Tensor | None
    bias: Tensor | None

    def __init__(
        self,
        n_in: int | None = None,
        n_out: int | None = None,
        *,
        weight: Tensor | None = None,
        delay: Tensor | float | None = None,
        kernel: DelayKernel | str = EXACT,
        max_delay: float | None = None,
        dt: float | None = None,
        per: str = "synapse",
        learn_weight: bool = True,
        learn_delay: bool = False,
        fan_in: int | None = None,
        weight_init: WeightInit = "kaiming_uniform",
        delay_init: DelayInit = "uniform",
        delay_std: float | None = None,
        pad_right: int | str = 0,
        bias: bool = False,
        round_in_eval: bool = True,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        prepare_kernel_runtime()  # numba's one-off start (CPU only), not in a step
        self.kernel = as_kernel(kernel)
        check_choice("per", per, PER)
        self.per = per
        if weight is not None:
            check_tensor("weight", weight, ndim=2, floating=True)
            check_finite("weight", weight)
            for name, v, size in (("n_in", n_in, weight.shape[1]),
                                  ("n_out", n_out, weight.shape[0])):
                if v is not None and v != size:
                    raise ValueError(f"{name} = {v} does not match weight shape "
                                     f"{list(weight.shape)} ([n_out, n_in])")
            n_out, n_in = weight.shape
            dtype, device = weight.dtype, weight.device
        for name, v in (("n_in", n_in), ("n_out", n_out)):
            if not _is_int(v) or v < 1:
                raise ValueError(f"{name} must be a positive int (or give weight=), got {v!r}")
        self.n_in, self.n_out = n_in, n_out
        if fan_in is not None and (not _is_int(fan_in) or not 1 <= fan_in <= n_in):
            raise ValueError(f"fan_in must be an int in [1, n_in = {n_in}], got {fan_in!r}")
        self.fan_in = fan_in
        self.round_in_eval = bool(round_in_eval)
        factory = {"dtype": dtype or torch.get_default_dtype(), "device": device}
        max_delay = check_max_delay("Dense", max_delay, learn_delay=learn_delay)
        self._setup_grid(max_delay, dt)
        if pad_right == "half" and self.kernel.grid:
            pad_right = (self.kernel_size - 1) // 2
        if not _is_int(pad_right) or pad_right < 0:
            raise ValueError(f"pad_right must be a non-negative int or 'half' (grid kernels), got "
                             f"{pad_right!r}")
        self.pad_right = pad_right

        # Random draws in a fixed order (mask, weights, delays): seeds reproduce DelayedLinear.
        if fan_in is None:
            self.register_buffer("mask", None)
        else:
            self.register_buffer("mask", fixed_fan_in_mask(n_out, n_in, fan_in, generator)
                                 .to(device))
        if weight is None:
            w = initial_weight(weight_init, (n_out, n_in), fan_in=fan_in or n_in,
                               dtype=factory["dtype"], generator=generator).to(device)
        else:
            w = weight.detach().clone()
        if self.mask is not None:
            w = w * self.mask
        if learn_weight:
            self.weight = nn.Parameter(w)
        else:
            self.register_buffer("weight", w)
        if bias:
            self.bias = nn.Parameter(torch.zeros(n_out, **factory))
        else:
            self.register_parameter("bias", None)

        init = delay if delay is not None else delay_init
        if self.kernel.grid:
            exact = self._initial_steps(init, delay_std, generator)
            self._register("delay_steps", exact.to(**factory), learn_delay)
            self.remember_exact("delay_steps", exact)
            sigma = self.kernel.initial_sigma(self.kernel_size)
            self.register_buffer("sigma", None if sigma is None
                                 else torch.tensor(float(sigma), **factory))
            if sigma is not None:
                self.remember_exact("sigma", float(sigma))
        else:
            seconds = exact = None
            if delay is not None or max_delay is not None:
                exact = initial_delay(init, self._delay_shape(), max_delay=max_delay,
                                      std=delay_std, generator=generator)
                # Checked in the synapse's dtype (a float32 delay equal to max_delay is fine).
                seconds = self._checked_seconds("delay", exact.to(factory["dtype"]))
            elif learn_delay:
                raise ValueError("learn_delay=True needs delays: give delay= (seconds) or "
                                 "max_delay= (delays drawn by delay_init)")
            if seconds is None:
                self.register_buffer("delay", None)
            else:
                self._register("delay", seconds.to(**factory), learn_delay)
                self.remember_exact("delay", self._check_shape("delay", exact))
            self.register_buffer("sigma", None)

    # ----------------------------------------------------------------- construction helpers
    def _setup_grid(self, max_delay: float | None, dt: float | None) -> None:
        if max_delay is not None:
            check_positive("max_delay", max_delay, allow_zero=True)
        self.max_delay = None if max_delay is None else float(max_delay)
        if not self.kernel.grid:
            if dt is not None:
                raise ValueError(f"{self.kernel!r} takes dt from the spikes; dt= is for grid "
                                 "kernels (Rounded, Triangle, Gaussian), whose delays are "
                                 "counted in steps")
            self.dt, self.kernel_size = None, None
            return
        if dt is None or max_delay is None:
            raise ValueError(f"{self.kernel!r} counts delays in grid steps: give dt= (seconds, "
                             "the grid the synapse is built for) and max_delay= (seconds, the "
                             "window)")
        self.dt = float(dt)
        self.kernel_size = kernel_size(max_delay, dt)

    def _register(self, name: str, value: Tensor, learn: bool) -> None:
        if learn:
            setattr(self, name, nn.Parameter(value))
        else:
            self.register_buffer(name, value)

    def _delay_shape(self) -> tuple[int, ...]:
        return (self.n_in,) if self.per == "axon" else (self.n_out, self.n_in)

    def _check_shape(self, name: str, delay: Tensor) -> Tensor:
        shape = self._delay_shape()
        if self.per == "synapse" and tuple(delay.shape) == (self.n_in,):
            delay = delay.expand(shape)
        if tuple(delay.shape) != shape:
            if self.per == "axon":
                raise ValueError(f"{name} must have shape [N_in] = [{self.n_in}] (per='axon'), "
                                 f"got {list(delay.shape)}")
            raise ValueError(
                f"{name} must have shape [N_out, N_in] = {[self.n_out, self.n_in]} (per synapse) "
                f"or [N_in] = [{self.n_in}] (per axon), got {list(delay.shape)}")
        return delay

    def _checked_seconds(self, name: str, delay: Tensor) -> Tensor:
        delay = self._check_shape(name, delay)
        check_finite(name, delay)
        if bool((delay < 0).any()):
            raise ValueError(f"{name} must be non-negative, got minimum {delay.min().item()!r}")
        if self.max_delay is not None and bool((delay > self.max_delay).any()):
            raise ValueError(f"{name} must not exceed max_delay = {self.max_delay}, got "
                             f"{delay.max().item()!r}")
        return delay.clone()

    def _to_steps(self, name: str, delay: Tensor) -> Tensor:
        """Validate delays in seconds and convert them to steps (snapping near-whole steps)."""
        delay = self._check_shape(name, delay)
        check_finite(name, delay)
        if bool((delay < 0).any()):
            raise ValueError(f"{name} must be non-negative, got minimum {delay.min().item()!r} s")
        steps = delay / self.dt
        whole = torch.round(steps)
        near = (steps - whole).abs() <= _SNAP * whole.abs().clamp(min=1.0)
        steps = torch.where(near, whole, steps)
        top = self.max_delay_steps
        if bool((steps > top).any()):
            raise ValueError(
                f"{name}: delay {delay.max().item()!r} s exceeds the longest representable delay "
                f"(K - 1) dt = {top} x {self.dt} = {top * self.dt!r} s (max_delay = "
                f"{self.max_delay} s gives K = {self.kernel_size} taps)")
        return steps.clone()

    def _initial_steps(self, init: DelayInit, std: float | None,
                       generator: torch.Generator | None) -> Tensor:
        """Grid-kernel delays in steps (float64), drawn directly in steps (DCLS numbers)."""
        k, top, shape = self.kernel_size, self.max_delay_steps, self._delay_shape()
        if not isinstance(init, str):
            return self._to_steps("delay_init", initial_delay(init, shape, max_delay=None))
        check_choice("delay_init", init, GRID_DELAY_INITS)
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
    def max_delay_steps(self) -> int | None:
        """Grid kernels: longest representable delay ``K - 1`` (steps)."""
        return None if self.kernel_size is None else self.kernel_size - 1

    @property
    def position(self) -> Tensor:
        """Grid kernels: DCLS centred positions ``P = (K - 1) / 2 - d`` (steps)."""
        return delay_to_position(self.delay_steps, self.kernel_size)

    @property
    def effective_weight(self) -> Tensor:
        """The weight with the fan-in mask applied (what every forward path uses)."""
        return self.weight if self.mask is None else self.weight * self.mask

    def synapse_delay(self) -> Tensor | None:
        """Delays in seconds as ``[n_out, n_in]`` (per-axon delays expanded), or ``None``.

        Checked first (:meth:`check_delays`): every reader (the forward, the adjoint paths)
        gets finite delays in ``[0, max_delay]`` or a ``ValueError`` naming the parameter.
        """
        self.check_delays()
        d = self.delay
        return None if d is None else d.expand(self.n_out, self.n_in)

    def check_delays(self) -> None:
        """Raise ``ValueError`` unless every delay is finite and in ``[0, max_delay]`` s (grid
        kernels: ``delay_steps`` in ``[0, K - 1]`` steps), naming the parameter and the element.

        Called by every forward path (one min/max reduction); an optimiser step can leave the
        range, :meth:`clamp_delays_` projects back into it.
        """
        if self.kernel.grid:
            check_delay_range("Dense.delay_steps", self.delay_steps, self.max_delay_steps,
                              unit="steps")
        elif self.delay is not None:
            check_delay_range("Dense.delay", self.delay, self.max_delay)

    def delay_parameters(self) -> Iterator[nn.Parameter]:
        """The learnable delays (if any)."""
        name = "delay_steps" if self.kernel.grid else "delay"
        if name in self._parameters:
            yield self._parameters[name]

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """The learnable weight and bias (if any)."""
        for p in (self._parameters.get("weight"), self.bias):
            if isinstance(p, nn.Parameter):
                yield p

    def n_parameters(self, *, active_only: bool = False) -> int:
        """Weights + delays (+ bias), learnable or not, never sigma (DCLS counting).

        ``active_only`` counts only the synapses kept by the fan-in mask.
        """
        n_syn = self.n_out * self.n_in
        if active_only and self.mask is not None:
            n_syn = int(self.mask.sum())
        n_delay = 0 if self.delay is None else n_syn if self.per == "synapse" else self.n_in
        return n_syn + n_delay + (0 if self.bias is None else self.n_out)

    # ----------------------------------------------------------------- setters, clamp
    @torch.no_grad()
    def set_delay(self, delay: Tensor | float) -> None:
        """Set the delays, in seconds (``[n_out, n_in]``, ``[n_in]`` or a number)."""
        if self.delay is None:
            raise ValueError("this synapse has no delays (build it with delay= or max_delay=)")
        seconds = initial_delay(delay if isinstance(delay, Tensor) else float(delay),
                                self._delay_shape(), max_delay=None)
        if self.kernel.grid:
            self.delay_steps.copy_(self._to_steps("delay", seconds))
        else:
            self.delay.copy_(self._checked_seconds("delay", seconds.to(self.delay.dtype)))

    @torch.no_grad()
    def set_weight(self, weight: Tensor) -> None:
        """Set the weights ``[n_out, n_in]`` (the fan-in mask is applied)."""
        check_tensor("weight", weight, shape=[self.n_out, self.n_in])
        check_finite("weight", weight)
        self.weight.copy_(weight)
        if self.mask is not None:
            self.weight.mul_(self.mask)

    def set_sigma(self, sigma: float) -> None:
        """Set the kernel width ``sigma`` in steps (e.g. from a DCLS schedule)."""
        if self.sigma is None:
            raise ValueError(f"{self.kernel!r} has no width to set")
        value = float(sigma) if isinstance(sigma, Tensor) else sigma
        self.kernel.check_sigma(value)
        # A new tensor rather than an in-place fill: a graph built before the change stays valid.
        self.sigma = torch.full_like(self.sigma, float(value))

    @torch.no_grad()
    def clamp_delays_(self) -> None:
        """Project after an optimiser step: delays into ``[0, max_delay]`` (grid kernels: the
        window ``[0, K - 1]`` steps) and the fan-in mask onto the weights.

        Clamping is explicit: the forward pass never clamps or wraps silently, it refuses a
        delay out of range (:meth:`check_delays`). A delay that became NaN or infinite (a
        diverged update) has no projection: ``ValueError`` naming it (see
        :func:`~ctsnn.synapses.ranges.clamp_delay_`).
        """
        if self.kernel.grid:
            clamp_delay_("Dense.delay_steps", self.delay_steps, self.max_delay_steps)
        elif self.delay is not None:
            clamp_delay_("Dense.delay", self.delay, self.max_delay)
        if self.mask is not None:
            self.weight.mul_(self.mask)

    # ----------------------------------------------------------------- inputs
    def check_input(self, x: Spikes | Tensor, dt: float | None = None) -> None:
        """Raise a clear error unless ``x`` (``Spikes`` or a raster ``[T, B, N_in]``) fits.

        ``dt``: the grid of a raster, if known; grid kernels refuse any other ``dt`` than
        their own (their delays are counted in its steps).
        """
        if isinstance(x, Spikes):
            if x.n_units != self.n_in:
                raise ValueError(f"input spikes have {x.n_units} units but the weight expects "
                                 f"N_in = {self.n_in} (weight shape {list(self.weight.shape)})")
            dt = x.dt
        else:
            check_tensor("x", x, ndim=3, floating=True)
            if x.shape[2] != self.n_in:
                raise ValueError(f"x has {x.shape[2]} channels but the synapse expects n_in = "
                                 f"{self.n_in} (shape {list(x.shape)}, time-first [T, B, N])")
        if self.kernel.grid and dt is not None and not same_dt(dt, self.dt):
            raise ValueError(f"input spikes have dt = {dt} s but the delays are on a grid of "
                             f"dt = {self.dt} s ({self.kernel!r} counts delays in steps): rebin "
                             "the spikes, or build the synapse with this dt")

    # ----------------------------------------------------------------- kernels
    def taps(self, *, support: bool = False) -> Taps | None:
        """Grid kernels: the sparse kernel (weights included), ``None`` for a dense kernel.

        Evaluation mode (with ``round_in_eval``): one tap at the rounded delay, value ``w``.
        ``support=True``: also a dense kernel's few-tap form equal to it to rounding where it
        has one (a narrow Gaussian, :meth:`DelayKernel.support_taps`; the spike-scatter path).
        """
        w = self.effective_weight
        d = self.delay_steps.clamp(0, self.max_delay_steps).expand(self.n_out, self.n_in)
        if not self.training and self.round_in_eval:
            return Taps(round_delay(d.detach()).long().unsqueeze(0), w.unsqueeze(0))
        if support and isinstance(self.kernel, Gaussian):  # weighted in one compiled pass
            sigma = self.kernel.initial_sigma(self.kernel_size) if self.sigma is None \
                else self.sigma
            return weighted_gaussian_taps(d, w.expand_as(d), sigma, self.kernel_size)
        form = self.kernel.support_taps if support else self.kernel.taps
        taps = form(d, self.kernel_size, sigma=self.sigma)
        return None if taps is None else Taps(taps.lags, taps.coefs * w)

    def kernel_tensor(self) -> Tensor:
        """Grid kernels: the dense lag-indexed kernel ``[n_out, n_in, K]`` of the current mode,
        weights included (the tap path never builds it)."""
        if not self.kernel.grid:
            raise ValueError(f"{self.kernel!r} has no fixed grid; its discrete-time kernel "
                             "depends on the dt of the spikes")
        taps = self.taps()
        if taps is not None:
            return taps_to_dense(taps, self.kernel_size)
        d = self.delay_steps.expand(self.n_out, self.n_in)
        return self.kernel.dense(d, self.kernel_size, sigma=self.sigma) * \
            self.effective_weight.unsqueeze(-1)

    # ----------------------------------------------------------------- forward
    def output_steps(self, n_steps: int) -> int:
        """Output length of :meth:`jumps` for ``n_steps`` input steps: ``n_steps + pad_right``."""
        return n_steps + self.pad_right

    def jumps(self, x: Spikes | Tensor) -> Tensor:
        """Summed (delayed) input per step, discrete time.

        Args:
            x: :class:`~ctsnn.spikes.Spikes` or a dense (possibly differentiable) raster
                ``[T, B, N_in]`` whose entry ``n`` is the spike at the end of step ``n``. Exact
                delays need ``Spikes`` (for their ``dt``); grid kernels take rasters on their
                own grid. Cast to the weight dtype.

        Returns:
            ``[T + pad_right, B, N_out]``; differentiable w.r.t. ``x``, weights and (grid
            kernels in training mode) delays.
        """
        self.check_input(x)
        self.check_delays()
        dt = x.dt if isinstance(x, Spikes) else None
        raster = x.raster(dtype=self.weight.dtype) if isinstance(x, Spikes) else \
            x.to(self.weight.dtype)
        rows = self.__dict__.get("_input_rows")  # see input_rows
        if rows is not None:
            check_rows(rows, raster)
        if self.kernel.grid:
            # CPU and sparse input: scatter each spike into its delayed slots (numba)
            fast = scatter_pays(raster, self.weight)
            taps = self.taps(support=fast)
            if rows is not None and not (fast and taps is not None):
                raster = mask_input_grad(raster, rows)  # these paths compute all of dL/dx
            if taps is not None:
                out = spike_scatter(raster, taps, self.pad_right, rows=rows) if fast else \
                    tap_conv(raster, taps, self.pad_right)
            else:  # a dense (wide) kernel: scattered too when the input is sparse enough
                conv = window_scatter if fast and window_pays(raster, self.weight) \
                    else dense_conv
                out = conv(raster, self.kernel_tensor(), self.pad_right)
        else:
            if rows is not None:
                raster = mask_input_grad(raster, rows)
            if self.pad_right:
                raster = F.pad(raster, (0, 0, 0, 0, 0, self.pad_right))
            if self.delay is None:
                out = raster @ self.effective_weight.t()
            elif dt is None:
                raise ValueError("a synapse with exact delays needs Spikes (with their dt), not "
                                 "a raster")
            else:
                lags = torch.round(self.delay.expand(self.n_out, self.n_in) / dt).long()
                if not raster.requires_grad and scatter_pays(raster, self.weight):
                    # CPU, sparse input: the one-tap spike scatter (numba). Only for an input
                    # without gradient: event_jumps' gradient w.r.t. the raster lives on the
                    # spikes alone, the scatter's transpose is the full linear map.
                    out = spike_scatter(raster, Taps(lags[None], self.effective_weight[None]))
                else:
                    out = event_jumps(raster, self.effective_weight, lags)
        if self.bias is not None:
            out = out + self.bias
        return out

    forward = jumps

    @contextmanager
    def input_rows(self, rows: Tensor | None) -> Iterator[None]:
        """Within the ``with`` block, :meth:`jumps` needs the gradient w.r.t. its input only on
        the (sample, input) rows where ``rows [B, N_in]`` (bool) is ``True``: ``dL/dx[:, b, j]``
        is zero elsewhere on every path (the spike scatter skips those rows' work). For an
        input whose producer zeroes those rows' gradient anyway, such as a
        :class:`~ctsnn.dropout.SequenceDropout` with a shared mask (its
        :meth:`~ctsnn.dropout.SequenceDropout.with_rows`); ``None``: every row (the default).
        The forward is unchanged; ``rows`` is checked against each input's ``[B, N_in]``.
        """
        if rows is not None and not isinstance(rows, Tensor):
            raise TypeError(f"rows must be a bool tensor [B, N_in] or None, got "
                            f"{type(rows).__name__}")
        previous = self.__dict__.get("_input_rows")
        self.__dict__["_input_rows"] = rows
        try:
            yield
        finally:
            self.__dict__["_input_rows"] = previous

    def arrivals(self, spikes: Spikes) -> Arrivals | DelayedArrivals:
        """Continuous time: the exact arrival schedule (``n -> StepArrivals | None``)."""
        self.kernel.require("continuous")
        if self.bias is not None or self.pad_right:
            raise ValueError("bias and pad_right apply to discrete time (jumps) only; build the "
                             "synapse without them for continuous time")
        self.check_input(spikes)
        spikes = spikes.to(dtype=self.weight.dtype)
        if self.delay is None:
            return Arrivals(spikes, self.effective_weight)
        return DelayedArrivals(spikes, self.effective_weight, self.synapse_delay())

    def extra_repr(self) -> str:
        parts = [f"n_in={self.n_in}", f"n_out={self.n_out}", f"kernel={self.kernel!r}"]
        if self.kernel.grid:
            parts += [f"K={self.kernel_size}", f"dt={self.dt}"]
        if self.delay is not None:
            parts.append(f"delay=per-{self.per}")
        if self.fan_in is not None:
            parts.append(f"fan_in={self.fan_in}")
        if self.pad_right:
            parts.append(f"pad_right={self.pad_right}")
        if self.bias is not None:
            parts.append("bias=True")
        return ", ".join(parts)


__all__ = ["Dense", "PER", "GRID_DELAY_INITS", "same_dt"]
