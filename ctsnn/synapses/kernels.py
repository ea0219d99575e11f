"""Delay kernels: how a real-valued delay reaches a discrete time grid.

A delay kernel is a small object (:class:`DelayKernel`) that every synapse accepts
(``kernel=Exact()``, ``Gaussian(sigma)``, ``Triangle(sigma)``, ``Rounded()``); it says in which
time modes it has a meaning (:meth:`DelayKernel.supports`) and turns delays in steps into what the
synapses need: taps for the one- and two-tap kernels (:meth:`DelayKernel.taps`), a dense
lag-indexed kernel for any kernel (:meth:`DelayKernel.dense`) and the recurrent spread with its
one-step minimum lag (:meth:`DelayKernel.spread`). Adding a kernel = one subclass here.

The classes use the pure functions below (no state). Every kernel is indexed by **lag**:
tap ``n`` (``n = 0 .. K-1``) multiplies the input ``n`` steps in the past, so a synapse with
kernel ``k`` adds

    ``I[t] = sum_n k[n] x[t - n]``

and a delay of ``d`` steps puts the kernel's mass at lag ``d`` (a one-tap kernel at lag ``d`` is
an exact shift by ``d`` steps). Delays here are real numbers **in steps** (the modules convert
from seconds); ``K`` is the number of taps, so delays live in ``[0, K - 1]``.

DCLS position convention. The DCLS library stores a *centred position* ``P`` per synapse and
builds a cross-correlation kernel whose centre index is ``c = P + K // 2``; after left-padding the
input by ``K - 1`` the effective delay is ``(K - 1) - c``, i.e. for odd ``K``

    ``d = (K - 1) / 2 - P``,    ``P = (K - 1) / 2 - d``,

so ``P = +K//2`` is delay 0, ``P = 0`` the middle of the window and ``P = -K//2`` the longest
delay ``K - 1`` (:func:`position_to_delay`, :func:`delay_to_position`). Training ``d`` instead of
``P`` with Adam and no weight decay is equivalent (Adam is invariant to a sign flip of a
parameter).

Kernels:

* :func:`gaussian_kernel` (DCLS training kernel): ``exp(-(n - d)^2 / (2 sigma^2))`` normalised
  over the finite window with ``eps = 1e-7``, so its sum is ``S / (S + eps)`` (``S`` the sum of
  the unnormalised Gaussian) even when the window cuts the Gaussian; dense, ``K`` taps.
* :func:`triangle_taps` / :func:`triangle_kernel`: linear interpolation between the two
  integer lags around ``d`` (``max(0, 1 - |n - d|)``), 2 taps, total mass exactly
  ``(1 - f) + f`` for ``d`` in the window.
* :func:`rounded_taps` / :func:`rounded_kernel`: one tap at ``round_delay(d)`` (the inference
  kernel of all three methods), optionally with a straight-through gradient (the triangle's).

The sparse kernels are returned as :class:`Taps` (lags and coefficients per tap) so that a
convolution never has to materialise a dense ``[..., K]`` kernel; :func:`taps_to_dense` gives
the dense form for references and plots.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from .._checks import check_choice, check_positive, check_tensor

#: Constant the DCLS library adds to its ``SIG`` parameter: ``sigma_eff = |SIG| + 0.27``.
DCLS_SIGMA_OFFSET = 0.27
#: Normalisation safety term of the DCLS Gaussian kernel (float32 safety).
DCLS_EPS = 1e-7

ROUNDING_MODES = ("half_even", "half_away")


class Taps(NamedTuple):
    """A sparse kernel: ``lags [n_taps, ...]`` (int64 steps) and ``coefs [n_taps, ...]``.

    Tap ``k`` of synapse ``(...)`` adds ``coefs[k, ...] * x[t - lags[k, ...]]``. Taps of one
    synapse may share a lag (their coefficients then add up).
    """

    lags: Tensor
    coefs: Tensor


# --------------------------------------------------------------------------- sizes, positions
def kernel_size(max_delay: float, dt: float) -> int:
    """Number of taps ``K`` of the DCLS kernel for ``max_delay`` and step ``dt`` (seconds).

    ``K = max_delay / dt``, plus one if even (DCLS forces odd kernels); delays then range over
    ``[0, K - 1]`` steps. ``max_delay`` must be a whole number of steps (up to 1e-9 relative);
    ``max_delay = 0`` gives ``K = 1`` (delay 0 only). E.g. 0.25 s / 0.01 s -> 25,
    0.3 s / 0.01 s -> 31.
    """
    check_positive("dt", dt)
    check_positive("max_delay", max_delay, allow_zero=True)
    ratio = max_delay / dt
    k = round(ratio)
    if abs(ratio - k) > 1e-9 * max(1.0, abs(ratio)):
        raise ValueError(
            f"max_delay must be a whole number of steps: max_delay / dt = {max_delay} / {dt} = "
            f"{ratio!r} is not an integer"
        )
    return k + 1 if k % 2 == 0 else k


def _check_k(k: int, *, odd: bool = False) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"K (number of taps) must be a positive int, got {k!r}")
    if odd and k % 2 == 0:
        raise ValueError(f"the DCLS position convention needs an odd K, got K = {k}")


def position_to_delay(position: Tensor | float, k: int) -> Tensor | float:
    """DCLS centred position ``P`` -> delay in steps, ``d = (K - 1) / 2 - P`` (odd ``K``).

    Works elementwise on tensors (differentiable) and on Python numbers.
    """
    _check_k(k, odd=True)
    return (k - 1) / 2 - position


def delay_to_position(delay: Tensor | float, k: int) -> Tensor | float:
    """Delay in steps -> DCLS centred position ``P = (K - 1) / 2 - d`` (odd ``K``)."""
    _check_k(k, odd=True)
    return (k - 1) / 2 - delay


def clamp_delay(delay: Tensor, k: int) -> Tensor:
    """Clamp delays (steps) to the window ``[0, K - 1]`` (DCLS clamps ``P`` to ``±K//2``)."""
    _check_k(k)
    return delay.clamp(0, k - 1)


# --------------------------------------------------------------------------- rounding
def round_delay(
    delay: Tensor, *, mode: str = "half_even", straight_through: bool = False
) -> Tensor:
    """Round delays (steps) to the nearest whole step; **never** truncates.

    Args:
        delay: real delays in steps, any shape.
        mode: tie rule for exact halves: ``"half_even"`` (default; ``torch.round``, the rule of
            :class:`ctsnn.synapses.Dense`: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2) or ``"half_away"``
            (C ``round`` as in GeNN/EPD: 0.5 -> 1, 2.5 -> 3, -0.5 -> -1). Either way 2.6 -> 3,
            2.4 -> 2.
        straight_through: return ``round(d) + (d - d.detach())``: the exact rounded value in
            the forward pass, gradient 1 w.r.t. ``d`` (otherwise the gradient is 0).

    Returns:
        a float tensor of whole numbers, same shape and dtype as ``delay``.
    """
    check_choice("mode", mode, ROUNDING_MODES)
    if mode == "half_even":
        r = torch.round(delay.detach())
    else:
        a = delay.detach().abs()
        fl = torch.floor(a)
        # ``a - floor(a)`` is exact in floating point, so the tie test is exact (unlike
        # ``floor(a + 0.5)``, which rounds 0.49999999999999994 up).
        r = torch.copysign(fl + (a - fl >= 0.5).to(a.dtype), delay.detach())
    if straight_through:
        return r + (delay - delay.detach())
    return r


# --------------------------------------------------------------------------- dense kernels
def gaussian_kernel(
    delay_steps: Tensor, sigma_eff: Tensor | float, k: int, *, eps: float = DCLS_EPS
) -> Tensor:
    """DCLS window-normalised Gaussian kernel, indexed by lag.

    ``g[n] = exp(-((n - d) / sigma_eff)^2 / 2)`` for ``n = 0 .. K-1``,
    ``k[n] = g[n] / (sum_n' g[n'] + eps)``.

    Args:
        delay_steps: delays ``d`` in steps, shape ``[...]``; any real value (DCLS keeps them in
            ``[0, K - 1]`` by clamping after each optimiser step).
        sigma_eff: effective width in steps, a positive number or a tensor broadcastable to
            ``delay_steps`` (DCLS: ``sigma_eff = SIG + 0.27``).
        k: number of taps ``K``.
        eps: normalisation safety term (DCLS: 1e-7).

    Returns:
        ``[..., K]`` kernel of unit mass (up to ``eps``); differentiable w.r.t. ``delay_steps``
        and ``sigma_eff``. Multiply by the weight to get the synaptic kernel.
    """
    _check_k(k)
    if isinstance(sigma_eff, Tensor):
        sigma = sigma_eff.to(delay_steps.dtype).unsqueeze(-1)
    else:
        check_positive("sigma_eff", sigma_eff)
        sigma = sigma_eff
    n = torch.arange(k, dtype=delay_steps.dtype, device=delay_steps.device)
    z = (n - delay_steps.unsqueeze(-1)) / sigma
    g = torch.exp(-0.5 * z * z)
    return g / (g.sum(-1, keepdim=True) + eps)


def taps_to_dense(taps: Taps, k: int) -> Tensor:
    """Dense lag-indexed kernel ``[..., K]`` of a sparse kernel (taps sharing a lag add up).

    Differentiable w.r.t. ``taps.coefs``. Lags must lie in ``[0, K - 1]``.
    """
    _check_k(k)
    lags, coefs = taps
    if lags.numel() and (int(lags.min()) < 0 or int(lags.max()) >= k):
        raise ValueError(f"tap lags must lie in [0, {k - 1}], got [{int(lags.min())}, "
                         f"{int(lags.max())}]")
    dense = coefs.new_zeros((*coefs.shape[1:], k))
    return dense.scatter_add(-1, lags.movedim(0, -1), coefs.movedim(0, -1))


def _interpolation(delay_steps: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Lower integer lag ``lo`` (clamped so that ``lo + 1 <= K - 1``) and fraction ``d - lo``."""
    top = max(k - 2, 0)
    lo = torch.floor(delay_steps.detach()).clamp(0, top)
    return lo.long(), delay_steps - lo


def triangle_taps(delay_steps: Tensor, k: int) -> Taps:
    """Linear-interpolation (triangle) kernel as 2 taps.

    For ``d`` in ``[0, K - 1]``: ``lo = floor(d)`` (``K - 2`` at ``d = K - 1``), ``f = d - lo``;
    taps ``(lo, 1 - f)`` and ``(lo + 1, f)``; this equals ``max(0, 1 - |n - d|)`` over the window
    and carries mass ``(1 - f) + f = 1``. An integer ``d`` gives exactly one non-zero tap of
    value 1 (no leakage). Gradient w.r.t. ``d``: ``-1`` on the lower tap, ``+1`` on the upper
    (at an integer ``d`` this is the one-sided derivative towards longer delays).
    Delays outside the window are the caller's business (clamp first).

    Args:
        delay_steps: ``[...]`` delays in steps.
        k: number of taps ``K`` (``K = 1`` allows only ``d = 0``).

    Returns:
        :class:`Taps` with ``lags, coefs`` of shape ``[2, ...]``.
    """
    _check_k(k)
    lo, f = _interpolation(delay_steps, k)
    hi = (lo + 1).clamp(max=k - 1)
    return Taps(torch.stack([lo, hi]), torch.stack([1 - f, f]))


def triangle_kernel(delay_steps: Tensor, k: int) -> Tensor:
    """Dense ``[..., K]`` form of :func:`triangle_taps` (``max(0, 1 - |n - d|)``)."""
    return taps_to_dense(triangle_taps(delay_steps, k), k)


def rounded_taps(
    delay_steps: Tensor, k: int, *, straight_through: bool = False, mode: str = "half_even"
) -> Taps:
    """One-tap kernel at the rounded delay (inference kernel), exact value 1.

    Args:
        delay_steps: ``[...]`` delays in steps, in ``[0, K - 1]``.
        k: number of taps ``K``.
        straight_through: if ``True``, return the two triangle taps around ``d`` whose forward
            values are the exact one-hot ``round(d)`` kernel (1 on the rounded lag, exactly 0 on
            the other) but whose gradient w.r.t. ``d`` is the triangle's (straight-through
            estimator: "forward rounded, backward interpolated"). Otherwise a single tap with no
            gradient w.r.t. ``d``.
        mode: tie rule, see :func:`round_delay`.

    Returns:
        :class:`Taps`, ``[1, ...]`` or (straight-through) ``[2, ...]``.
    """
    _check_k(k)
    r = round_delay(delay_steps, mode=mode).clamp(0, k - 1)
    if not straight_through:
        lag = r.long().unsqueeze(0)
        return Taps(lag, torch.ones_like(delay_steps).unsqueeze(0))
    soft = triangle_taps(delay_steps, k)
    # round(d) is one of the two triangle lags (at d = K - 1 they are K-2, K-1); for K = 1 both
    # taps sit at lag 0 and only the first may carry the 1.
    hard = (soft.lags == r.long().unsqueeze(0)).to(delay_steps.dtype)
    if k == 1:
        hard = torch.stack([hard[0], torch.zeros_like(hard[1])])
    return Taps(soft.lags, hard + (soft.coefs - soft.coefs.detach()))


def rounded_kernel(
    delay_steps: Tensor, k: int, *, straight_through: bool = False, mode: str = "half_even"
) -> Tensor:
    """Dense ``[..., K]`` one-hot kernel at ``round_delay(d)`` (see :func:`rounded_taps`)."""
    return taps_to_dense(rounded_taps(delay_steps, k, straight_through=straight_through,
                                      mode=mode), k)


def gaussian_mass(delay_steps: Tensor, sigma_eff: Tensor | float, k: int) -> Tensor:
    """``S = sum_n exp(-((n - d)/sigma)^2 / 2)``, the unnormalised window mass (tests, plots)."""
    _check_k(k)
    n = torch.arange(k, dtype=delay_steps.dtype, device=delay_steps.device)
    s = sigma_eff.unsqueeze(-1) if isinstance(sigma_eff, Tensor) else sigma_eff
    return torch.exp(-0.5 * ((n - delay_steps.unsqueeze(-1)) / s) ** 2).sum(-1)



def gaussian_support(sigma_eff: Tensor | float, dtype: torch.dtype,
                     k: int) -> tuple[int, int] | None:
    """``(floor(R), n_taps)`` of :func:`gaussian_support_taps` for width ``sigma_eff`` (steps)
    in ``dtype`` over ``k`` taps (lags ``floor(d) - floor(R) .. + n_taps - 1``), or ``None``
    for a wide Gaussian (more than ``K // 2`` taps)."""
    _check_k(k)
    sigma = float(sigma_eff)
    check_positive("sigma_eff", sigma)
    tiny = torch.finfo(dtype).eps / 4.0
    radius = sigma * math.sqrt(2.0 * math.log(1.0 / tiny))
    n_taps = 2 * math.floor(radius) + 2
    return None if n_taps > k // 2 else (math.floor(radius), n_taps)


def gaussian_support_taps(delay_steps: Tensor, sigma_eff: Tensor | float, k: int, *,
                          eps: float = DCLS_EPS) -> Taps | None:
    """:func:`gaussian_kernel` truncated to its numerical support, as taps (or ``None``).

    Lags farther than ``R`` from ``d`` are dropped, ``R`` the distance where the unnormalised
    Gaussian ``exp(-(n - d)^2 / (2 sigma^2))`` falls below a quarter of the dtype's machine
    epsilon (``R = sigma sqrt(2 ln(4 / eps_dtype))``); the kept taps are normalised over the
    window as in :func:`gaussian_kernel`. A dropped tap is below ``eps / 4`` while the
    largest tap is at least ``exp(-1 / (8 sigma^2))`` (0.61 at ``sigma = 0.5``), so each is
    below ``0.42 eps`` of the synapse's largest tap, less than one unit in its last place,
    and all dropped taps together below ``0.5 eps`` of the kernel's mass: the result equals
    the dense kernel to the dtype's rounding (tested in float32 and, to 1e-15, in float64).
    DCLS's final width ``sigma_eff = 0.5``: ``R = 2.94`` steps, 6 taps in float32
    (``floor(d) - 2 .. floor(d) + 3``), 10 in float64. Taps falling outside ``[0, K - 1]``
    carry 0. ``None`` when that would need more than ``K // 2`` taps (a wide Gaussian: use
    the dense kernel).

    Args:
        delay_steps: ``[...]`` delays in steps.
        sigma_eff: width in steps (a number or a 0-d tensor).
        k: number of taps ``K`` of the window.
        eps: normalisation safety term (DCLS: 1e-7).

    Returns:
        :class:`Taps` ``[n_taps, ...]`` (differentiable w.r.t. ``delay_steps`` and a tensor
        ``sigma_eff``), or ``None``.
    """
    support = gaussian_support(sigma_eff, delay_steps.dtype, k)
    if support is None:
        return None
    shift, n_taps = support
    sigma = float(sigma_eff)
    base = torch.floor(delay_steps.detach()).long() - shift
    offsets = torch.arange(n_taps, device=delay_steps.device).reshape(-1, *([1] * delay_steps.ndim))
    lags = base.unsqueeze(0) + offsets
    inside = (lags >= 0) & (lags <= k - 1)
    s = sigma_eff.to(delay_steps.dtype) if isinstance(sigma_eff, Tensor) else sigma
    z = (lags.to(delay_steps.dtype) - delay_steps.unsqueeze(0)) / s
    g = torch.where(inside, torch.exp(-0.5 * z * z), torch.zeros((), dtype=delay_steps.dtype,
                                                                  device=delay_steps.device))
    return Taps(lags.clamp(0, k - 1), g / (g.sum(0, keepdim=True) + eps))


# --------------------------------------------------------------------------- triangle spread
def triangle_spread(delay: Tensor, width: Tensor | float, n_lags: int, *,
                    first_lag: int = 1) -> Tensor:
    """Triangle ``h(τ) = max(0, s - |τ - (first_lag + d)|) / s²`` over lags ``τ = 0 .. L - 1``.

    The spread of :class:`Triangle` (DelRec): half-width ``s = 1 + σ`` (steps, ``>= 1``), peak
    ``1 / s``; ``s = 1`` is linear interpolation between the two lags around the centre. Lags
    below ``first_lag`` are exactly 0 (recurrent synapses: ``first_lag = 1``, a spike never acts
    within the step that emitted it, so the mass of the triangle there is discarded).

    Args:
        delay: ``d`` in steps, any shape ``S`` (centre lag ``first_lag + d``).
        width: half-width ``s`` (steps), broadcastable to ``S``.
        n_lags: number of lags ``L`` (``>= 1``).
        first_lag: lowest lag that may carry mass (0 for feed-forward synapses).

    Returns:
        ``[L, *S]``, differentiable w.r.t. ``delay`` and ``width``.
    """
    check_tensor("delay", delay, floating=True)
    if not isinstance(n_lags, int) or isinstance(n_lags, bool) or n_lags < 1:
        raise ValueError(f"n_lags must be a positive int, got {n_lags!r}")
    s = torch.as_tensor(width, dtype=delay.dtype, device=delay.device)
    tau = torch.arange(first_lag, n_lags, dtype=delay.dtype, device=delay.device)
    tau = tau.reshape(-1, *([1] * delay.ndim))
    h = torch.relu(s - (tau - first_lag - delay).abs()) / s**2
    zero = torch.zeros((min(first_lag, n_lags), *h.shape[1:]), dtype=h.dtype, device=h.device)
    return torch.cat([zero, h])


def buffer_length(max_delay_steps: float, max_width: float) -> int:
    """Recurrent lags to keep: ``L = ceil(1 + max d + max s) + 1`` (at least 2)."""
    return max(2, math.ceil(1.0 + max_delay_steps + max_width) + 1)


# --------------------------------------------------------------------------- kernel objects
TIME_MODES = ("discrete", "continuous")


class DelayKernel:
    """How a real-valued delay reaches the postsynaptic neuron; base class of all kernels.

    Subclasses set :attr:`times` (the time modes where the kernel has a meaning), :attr:`grid`
    (``True``: delays are counted in steps of a grid fixed when the synapse is built) and
    implement :meth:`dense` (and :meth:`taps` / :meth:`spread` where they apply). Widths
    (``sigma``) are in steps; the synapse keeps the current one in a ``sigma`` buffer (set by
    ``set_sigma``, e.g. from a schedule) and passes it in.
    """

    #: Time modes where the kernel has a meaning.
    times: tuple[str, ...] = ("discrete",)
    #: Delays live on a fixed grid (stored in steps; the synapse is built for one ``dt``).
    grid: bool = True
    #: Usable by recurrent synapses (has :meth:`spread`).
    recurrent: bool = False

    def supports(self, time: str) -> bool:
        """Whether the kernel has a meaning in time mode ``time``."""
        check_choice("time", time, TIME_MODES)
        return time in self.times

    def require(self, time: str) -> None:
        """Raise a clear error if the kernel has no meaning in ``time``."""
        if not self.supports(time):
            raise ValueError(
                f"{self!r} spreads a spike over grid steps: it has no meaning in {time} time; "
                "use kernel=Exact() (exact arrival at t + d) or time='discrete'"
            )

    def initial_sigma(self, k: int) -> float | None:
        """Starting width (steps) for a window of ``k`` taps, or ``None`` (no width)."""
        return None

    def check_sigma(self, sigma: float) -> None:
        """Raise ``ValueError`` unless ``sigma`` (steps) is a valid width for this kernel."""
        check_positive("sigma", sigma)

    def taps(self, delay_steps: Tensor, k: int, *, sigma: Tensor | float | None = None
             ) -> Taps | None:
        """Sparse form (1 or 2 taps, weights not included), or ``None`` if only dense exists."""
        return None

    def support_taps(self, delay_steps: Tensor, k: int, *,
                     sigma: Tensor | float | None = None) -> Taps | None:
        """Few-tap form equal to :meth:`dense` to rounding (the spike-scatter path), or
        ``None``; the sparse kernels' :meth:`taps` by default."""
        return self.taps(delay_steps, k, sigma=sigma)

    def dense(self, delay_steps: Tensor, k: int, *, sigma: Tensor | float | None = None
              ) -> Tensor:
        """Dense lag-indexed kernel ``[..., K]`` of delays ``[...]`` (steps)."""
        taps = self.taps(delay_steps, k, sigma=sigma)
        if taps is None:
            raise NotImplementedError(f"{type(self).__name__}.dense")
        return taps_to_dense(taps, k)

    def spread(self, delay_steps: Tensor, width: Tensor | float, n_lags: int) -> Tensor:
        """Recurrent spread ``[L, ...]`` centred on lag ``1 + d`` (lag 0 carries nothing)."""
        self.require_recurrent()
        raise NotImplementedError(f"{type(self).__name__}.spread")

    def require_recurrent(self) -> None:
        """Raise a clear error if recurrent synapses cannot use this kernel."""
        if self.recurrent:
            return
        raise ValueError(
            f"{self!r} is not available on recurrent synapses: use kernel=Triangle(sigma) "
            "(DelRec's learnable spread, discrete time) or kernel=Exact() (both time modes)"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(vars(self).items()))))


class Exact(DelayKernel):
    """Exact arrival: a spike at ``t`` arrives at ``t + d``.

    Continuous time: exactly (event-driven arrival schedules, gradients w.r.t. ``d``).
    Discrete time: ``d`` is rounded to the nearest whole step (ties to even, never truncated);
    no gradient w.r.t. ``d`` there (use :class:`Rounded` or :class:`Triangle` to learn delays on
    the grid). Delays are stored in seconds; ``dt`` comes from the spikes.
    """

    times = TIME_MODES
    grid = False
    recurrent = True

    def taps(self, delay_steps: Tensor, k: int, *, sigma: Tensor | float | None = None) -> Taps:
        return rounded_taps(delay_steps, k)


#: The default kernel of every synapse (stateless, so one instance serves all).
EXACT = Exact()


class Rounded(DelayKernel):
    """One tap at the rounded delay (ties to even); delays learn through a straight-through
    triangle gradient (forward rounded, backward interpolated). Discrete time only."""

    def taps(self, delay_steps: Tensor, k: int, *, sigma: Tensor | float | None = None) -> Taps:
        # Straight-through taps only when the delays need a gradient.
        return rounded_taps(delay_steps, k, straight_through=delay_steps.requires_grad)


class Triangle(DelayKernel):
    """Triangular spread of half-width ``1 + sigma`` steps (DelRec); discrete time only.

    ``sigma = 0`` is linear interpolation between the two grid steps around the delay (two taps
    on feed-forward synapses: no dense kernel). ``sigma > 0`` spreads over ``2 (1 + sigma)``
    lags (DelRec's learning phase; shrink it with ``set_sigma`` and
    :class:`~ctsnn.training.DelRecSigmaSchedule`). On recurrent synapses the centre
    lag is ``1 + d`` (a recurrent spike acts one step later at the earliest).
    """

    recurrent = True

    def __init__(self, sigma: float = 0.0) -> None:
        check_positive("sigma", sigma, allow_zero=True)
        self.sigma = float(sigma)

    def initial_sigma(self, k: int) -> float:
        return self.sigma

    def check_sigma(self, sigma: float) -> None:
        check_positive("sigma", sigma, allow_zero=True)

    def taps(self, delay_steps: Tensor, k: int, *, sigma: Tensor | float | None = None
             ) -> Taps | None:
        if float(self.sigma if sigma is None else sigma) != 0.0:
            return None
        return triangle_taps(delay_steps, k)

    def dense(self, delay_steps: Tensor, k: int, *, sigma: Tensor | float | None = None
              ) -> Tensor:
        sigma = self.sigma if sigma is None else sigma
        if isinstance(sigma, Tensor) or sigma != 0.0:
            h = triangle_spread(delay_steps, 1.0 + sigma, k, first_lag=0)
            return h.movedim(0, -1)
        return triangle_kernel(delay_steps, k)

    def spread(self, delay_steps: Tensor, width: Tensor | float, n_lags: int) -> Tensor:
        return triangle_spread(delay_steps, width, n_lags)

    def __repr__(self) -> str:
        return f"Triangle(sigma={self.sigma:g})"


class Gaussian(DelayKernel):
    """DCLS window-normalised Gaussian of width ``sigma`` steps; discrete time only.

    ``sigma=None`` starts at the DCLS value ``K // 2 + 0.27`` for a ``K``-tap window; shrink it
    with ``set_sigma`` (:class:`~ctsnn.training.DCLSSigmaSchedule`). Dense: a ``K``-tap
    convolution.
    """

    def __init__(self, sigma: float | None = None) -> None:
        if sigma is not None:
            check_positive("sigma", sigma)
        self.sigma = None if sigma is None else float(sigma)

    def initial_sigma(self, k: int) -> float:
        return float(k // 2) + DCLS_SIGMA_OFFSET if self.sigma is None else self.sigma

    def dense(self, delay_steps: Tensor, k: int, *, sigma: Tensor | float | None = None
              ) -> Tensor:
        return gaussian_kernel(delay_steps, self.initial_sigma(k) if sigma is None else sigma, k)

    def support_taps(self, delay_steps: Tensor, k: int, *,
                     sigma: Tensor | float | None = None) -> Taps | None:
        """The Gaussian truncated to its support (:func:`gaussian_support_taps`) when narrow."""
        return gaussian_support_taps(delay_steps, self.initial_sigma(k) if sigma is None
                                     else sigma, k)

    def __repr__(self) -> str:
        return "Gaussian()" if self.sigma is None else f"Gaussian(sigma={self.sigma:g})"


#: The kernels by the names of the old string option (``kernel="gaussian"`` etc.).
KERNELS: dict[str, type[DelayKernel]] = {
    "exact": Exact, "rounded": Rounded, "triangle": Triangle, "gaussian": Gaussian,
}


def as_kernel(kernel: DelayKernel | str) -> DelayKernel:
    """A kernel object from an object or one of the names in :data:`KERNELS`."""
    if isinstance(kernel, DelayKernel):
        return kernel
    if isinstance(kernel, str):
        check_choice("kernel", kernel, tuple(KERNELS))
        return KERNELS[kernel]()
    raise TypeError(f"kernel must be a DelayKernel (Exact(), Gaussian(), Triangle(), Rounded()) "
                    f"or one of {tuple(KERNELS)}, got {type(kernel).__name__}")


__all__ = [
    "DelayKernel", "Exact", "EXACT", "Rounded", "Triangle", "Gaussian", "KERNELS", "as_kernel",
    "DCLS_EPS", "DCLS_SIGMA_OFFSET", "ROUNDING_MODES", "Taps", "kernel_size",
    "position_to_delay", "delay_to_position", "clamp_delay", "round_delay", "gaussian_kernel",
    "gaussian_mass", "gaussian_support_taps", "taps_to_dense", "triangle_taps", "triangle_kernel",
    "rounded_taps", "rounded_kernel", "triangle_spread", "buffer_length",
]
