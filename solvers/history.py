"""History buffers for delay-differential equations: read ``x(t - d)`` of a continuous quantity.

A :class:`History` keeps the recent past of a batched quantity ``x`` (any tensor shape
``E``, e.g. ``[B, N]``) sampled on a fixed grid ``t_k = t0 + k dt``: values and, for cubic
Hermite interpolation, derivatives. It is a ring buffer of ``capacity`` samples, at least
``ceil(max_delay / dt) + 2`` so that a lag equal to ``max_delay`` is honoured from the
newest sample (and from any time inside the step being computed). Before ``t0`` the
quantity is a given *pre-history* (a constant or a function of time).

:meth:`History.lookup` returns ``x(t - d)`` for real-valued delays ``d`` in seconds, one
per element of a tensor that broadcasts against ``E`` (the result has the broadcast
shape: per-connection delays ``[N_post, N_pre]`` read a ``[B, N_pre]`` quantity stored as
``[B, 1, N_pre]``, a free ``unsqueeze(-2)`` view, as ``[B, N_post, N_pre]``). The result
is differentiable (autograd) with respect to ``d`` and to the stored values; with Hermite
interpolation it is continuously differentiable in ``d`` across grid points.

**The lag rule (no extrapolation).** Reading time is ``t = t_last + offset`` where
``t_last`` is the time of the newest sample and ``offset >= 0`` is how far into the step
being computed the caller is (e.g. a Runge-Kutta stage ``c_i dt``). A read point
``t - d`` is served by

* the pre-history if ``t - d < t0``;
* interpolation of the stored samples if ``t0 <= t - d <= t_last``;
* the caller's ``dense`` callable if ``t - d > t_last`` (that is ``d < offset``): the
  values after the newest sample are not known to the buffer, which never extrapolates.
  An explicit scheme either keeps ``d >= dt`` (every stage reads the stored past) or
  supplies the dense output of the step it is computing (what :func:`solvers.dde.solve_dde`
  does, iterating to consistency). Without ``dense`` such a read raises ``ValueError``.

With nothing stored yet, ``t_last`` is replaced by ``t0`` and ``dense`` serves every read
point ``>= t0`` (so the derivative at ``t0`` can be computed before the first push).

**Bad inputs** fail with a message naming the argument: negative, NaN or too large
delays (``delay``), delays whose shape does not broadcast against the element shape,
``max_delay <= 0`` (a zero-length buffer), a ``capacity`` too small for ``max_delay / dt``,
pushes of the wrong shape or dtype, a missing derivative for Hermite interpolation.
Delays are never wrapped around the ring: values outside ``[0, max_delay]`` are an error
unless the caller asks for ``clamp=True``, which clamps them to that interval (the
gradient with respect to a clamped delay is then zero). Delays up to ``max_delay`` plus
a few ulps of their dtype are accepted as they are (the buffer has room for them).

Numerics only: this module does not import ``ctsnn``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

INTERPOLATIONS = ("linear", "hermite")
"""Interpolation schemes: ``"linear"`` (exact for degree 1, error ``O(dt^2)``) and
``"hermite"`` (cubic Hermite from values and derivatives: exact for degree 3, ``O(dt^4)``)."""

PreHistory = Tensor | float | Callable[[Tensor], Tensor]
"""Values before ``t0``: a constant (number or tensor broadcasting to the element shape)
or a function ``phi(t) -> Tensor`` evaluated element-wise on a tensor of times (seconds)
that broadcasts against the element shape; its result must broadcast to the lookup's
result shape. ``phi`` is called on whole tensors; entries with ``t >= t0`` are discarded."""

Dense = Callable[[Tensor], Tensor]
"""``dense(s) -> x(t_last + s)`` for ``s`` in ``(0, offset]`` (seconds after the newest
sample), a tensor of the delay's shape; entries outside that range are passed as 0 and
their results discarded. The result must broadcast to the lookup's result shape."""


def required_capacity(max_delay: float, dt: float) -> int:
    """Samples needed to read a lag of ``max_delay`` seconds on a grid of ``dt`` seconds.

    ``ceil(max_delay / dt) + 1`` samples span the lag; one more absorbs the rounding of
    ``(t - d - t0) / dt`` at the oldest end.
    """
    return math.ceil(max_delay / dt) + 2


def linear(y0: Tensor, y1: Tensor, theta: Tensor) -> Tensor:
    """Linear interpolation ``(1 - theta) y0 + theta y1``, ``theta`` in ``[0, 1]``."""
    return y0 + theta * (y1 - y0)


def hermite(y0: Tensor, m0: Tensor, y1: Tensor, m1: Tensor, theta: Tensor, h: float) -> Tensor:
    """Cubic Hermite interpolation on ``[t_k, t_k + h]`` at ``t_k + theta h``.

    Args:
        y0, y1: values at both ends; m0, m1: derivatives (per second) at both ends.
        theta: position in the interval, in ``[0, 1]`` (broadcasts against the values).
        h: interval length in seconds.
    """
    t2 = theta * theta
    t3 = t2 * theta
    h01 = 3.0 * t2 - 2.0 * t3  # weight of y1 (that of y0 is 1 - h01)
    h10 = t3 - 2.0 * t2 + theta
    h11 = t3 - t2
    return y0 + h01 * (y1 - y0) + h * (h10 * m0 + h11 * m1)


def broadcast_shape(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...] | None:
    """Broadcast shape of ``a`` and ``b`` (NumPy rules), ``None`` if they do not broadcast.

    (Pure Python: ``torch.broadcast_shapes`` goes through a slow path on its first call.)
    """
    a, b = tuple(a), tuple(b)
    if len(a) < len(b):
        a = (1,) * (len(b) - len(a)) + a
    else:
        b = (1,) * (len(a) - len(b)) + b
    out = []
    for x, y in zip(a, b, strict=True):
        if x != y and x != 1 and y != 1:
            return None
        out.append(y if x == 1 else x)
    return tuple(out)


def _number(name: str, value: object) -> float:
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def check_delay(
    delay: Tensor | float,
    *,
    max_delay: float,
    shape: Sequence[int],
    dtype: torch.dtype,
    device: torch.device | str | None = None,
    clamp: bool = False,
    name: str = "delay",
) -> Tensor:
    """Validate delays (seconds) and return them as a floating tensor (graph preserved).

    Raises ``TypeError``/``ValueError`` naming ``name`` for: a non-numeric delay, a shape
    that does not broadcast against ``shape``, NaN, and (unless ``clamp``) infinite values,
    values below 0 or above ``max_delay`` (beyond a few ulps). With ``clamp=True`` the
    delays are clamped to ``[0, max_delay]`` (explicitly requested; zero gradient where
    clamped; NaN still raises).
    """
    if isinstance(delay, bool) or not isinstance(delay, (int, float, Tensor)):
        raise TypeError(f"{name} must be a number or a tensor of seconds, got "
                        f"{type(delay).__name__}")
    if isinstance(delay, Tensor):
        d = delay if delay.is_floating_point() else delay.to(dtype)
    else:
        d = torch.tensor(float(delay), dtype=dtype, device=device)
    if broadcast_shape(d.shape, shape) is None:
        raise ValueError(
            f"{name} has shape {list(d.shape)}, which does not broadcast against the element "
            f"shape {list(shape)} of the history (use a scalar, one delay per element, or a "
            "per-connection tensor against a history stored with a singleton axis)"
        )
    det = d.detach()
    nan = torch.isnan(det)
    if bool(nan.any()):
        idx = tuple(int(i) for i in nan.nonzero()[0].tolist())
        raise ValueError(f"{name} contains NaN (first at index {idx})")
    if clamp:
        return d.clamp(0.0, max_delay)
    inf = torch.isinf(det)
    if bool(inf.any()):
        idx = tuple(int(i) for i in inf.nonzero()[0].tolist())
        raise ValueError(f"{name} must be finite, got {det[idx].item()!r} at index {idx}")
    if bool((det < 0).any()):
        raise ValueError(
            f"{name} must be >= 0 (a delay reads the past), got minimum {det.min().item()!r} s; "
            "pass clamp=True to clamp delays to [0, max_delay] explicitly"
        )
    slack = 8.0 * torch.finfo(det.dtype).eps * max_delay
    if bool((det > max_delay + slack).any()):
        raise ValueError(
            f"{name} exceeds max_delay={max_delay!r} s (got maximum {det.max().item()!r} s); "
            "raise max_delay or pass clamp=True to clamp delays to [0, max_delay] explicitly"
        )
    return d


class History:
    """Ring buffer of the recent past of a batched quantity, readable at ``t - d``.

    Args:
        shape: element shape ``E`` of the quantity (e.g. ``(B, N)``).
        max_delay: largest lag that will be read, seconds (> 0).
        dt: grid step, seconds (> 0); sample ``k`` is the value at ``t0 + k dt``.
        initial: pre-history for ``t < t0`` (:data:`PreHistory`), default 0.
        t0: time of the first sample, seconds.
        interp: ``"hermite"`` (needs derivatives on :meth:`push`) or ``"linear"``.
        capacity: ring size in samples; default (and minimum) ``ceil(max_delay/dt) + 2``.
        dtype, device: of the stored samples; default from a tensor ``initial``, else the
            default dtype.

    Usage: ``push(x0, dx0)`` the state at ``t0``, then once per step ``push(x, dx)`` the
    state at the next grid time; ``lookup(d)`` reads ``x(t_last - d)``.
    """

    def __init__(
        self,
        shape: Sequence[int],
        max_delay: float,
        dt: float,
        *,
        initial: PreHistory = 0.0,
        t0: float = 0.0,
        interp: str = "hermite",
        capacity: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if isinstance(shape, int) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
        ):
            raise TypeError(f"shape must be a sequence of non-negative ints, got {shape!r}")
        self.shape = torch.Size(shape)
        max_delay = _number("max_delay", max_delay)
        if max_delay <= 0:
            raise ValueError(
                f"max_delay must be positive, got {max_delay!r} s: a zero or negative max_delay "
                "would be a zero-length history buffer (read the current state for d = 0)"
            )
        dt = _number("dt", dt)
        if dt <= 0:
            raise ValueError(f"dt must be positive, got {dt!r} s")
        if interp not in INTERPOLATIONS:
            raise ValueError(f"unknown interp {interp!r}; expected one of "
                             f"{', '.join(map(repr, INTERPOLATIONS))}")
        need = required_capacity(max_delay, dt)
        if capacity is None:
            capacity = need
        elif isinstance(capacity, bool) or not isinstance(capacity, int):
            raise TypeError(f"capacity must be an int, got {type(capacity).__name__}")
        elif capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity} (a zero-length buffer)")
        elif capacity < need:
            raise ValueError(
                f"capacity={capacity} samples is too small for max_delay={max_delay} s at "
                f"dt={dt} s: needs at least ceil(max_delay/dt) + 2 = {need}"
            )
        if isinstance(initial, Tensor):
            if dtype is None and initial.is_floating_point():
                dtype = initial.dtype
            device = device if device is not None else initial.device
        self.dtype = dtype or torch.get_default_dtype()
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        if isinstance(initial, bool):
            raise TypeError("initial must be a number, a tensor or a callable, got bool")
        if isinstance(initial, (int, float)):
            initial = torch.tensor(float(initial), dtype=self.dtype, device=self.device)
        elif isinstance(initial, Tensor):
            if broadcast_shape(initial.shape, self.shape) is None:
                raise ValueError(f"initial has shape {list(initial.shape)}, which does not "
                                 f"broadcast against shape {list(self.shape)}")
            initial = initial.to(dtype=self.dtype, device=self.device)
        elif not callable(initial):
            raise TypeError("initial must be a number, a tensor or a callable phi(t), got "
                            f"{type(initial).__name__}")
        self.initial = initial
        self.max_delay = max_delay
        self.dt = dt
        self.t0 = _number("t0", t0)
        self.interp = interp
        self.capacity = capacity
        self.count = 0
        """Number of samples pushed so far (the newest is sample ``count - 1``)."""
        self._values: list[Tensor | None] = [None] * capacity
        self._derivs: list[Tensor | None] = [None] * capacity
        # Ring tensors [capacity, *E] for per-element reads, created on the first one.
        self._ring: tuple[Tensor, Tensor | None] | None = None
        self._element_index: tuple[Tensor, ...] = ()

    # -- state -------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of samples currently held (at most ``capacity``)."""
        return min(self.count, self.capacity)

    @property
    def t_last(self) -> float | None:
        """Time of the newest sample in seconds (``None`` before the first push)."""
        return None if self.count == 0 else self.t0 + (self.count - 1) * self.dt

    @property
    def t_next(self) -> float:
        """Time in seconds of the sample the next :meth:`push` stores."""
        return self.t0 + self.count * self.dt

    def clear(self) -> None:
        """Forget every sample (the pre-history and settings stay)."""
        self.count = 0
        self._values = [None] * self.capacity
        self._derivs = [None] * self.capacity
        self._ring = None

    def push(self, y: Tensor, dy: Tensor | None = None) -> None:
        """Store the value ``y`` (and derivative ``dy``, per second) at time :attr:`t_next`.

        Both have the element shape ``E`` and the History's dtype; ``dy`` is required for
        Hermite interpolation and ignored for linear. The tensors are kept by reference
        (not copied): do not modify them in place afterwards.
        """
        self._check_sample("y", y)
        if self.interp == "hermite":
            if dy is None:
                raise ValueError("dy (the derivative of y) is required with interp='hermite'; "
                                 "pass it or create the History with interp='linear'")
            self._check_sample("dy", dy)
        slot = self.count % self.capacity
        self._values[slot] = y
        self._derivs[slot] = dy if self.interp == "hermite" else None
        if self._ring is not None:  # in-place writes keep autograd history (CopySlices)
            self._ring[0][slot] = y
            if self._ring[1] is not None:
                self._ring[1][slot] = dy
        self.count += 1

    def _check_sample(self, name: str, x: object) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.shape != self.shape:
            raise ValueError(f"{name} must have the element shape {list(self.shape)} of the "
                             f"history, got {list(x.shape)}")
        if x.dtype != self.dtype:
            raise TypeError(f"{name} has dtype {x.dtype} but the history holds {self.dtype}")

    # -- reading -----------------------------------------------------------------------------

    def lookup(
        self,
        delay: Tensor | float,
        *,
        offset: float = 0.0,
        dense: Dense | None = None,
        clamp: bool = False,
    ) -> Tensor:
        """Read ``x(t - d)`` with ``t = t_last + offset`` (see the lag rule in the module doc).

        Args:
            delay: ``d`` in seconds, in ``[0, max_delay]``; a number or a tensor that
                broadcasts against the element shape ``E`` (gradients flow to it).
            offset: seconds after the newest sample at which the reader is (``>= 0``).
            dense: values after the newest sample (:data:`Dense`); required when some
                ``d < offset`` (or, before the first push, some ``d <= offset``).
            clamp: clamp delays to ``[0, max_delay]`` instead of raising.

        Returns:
            a tensor of shape ``broadcast(delay.shape, E)``.
        """
        offset = _number("offset", offset)
        if offset < 0:
            raise ValueError(f"offset must be >= 0 (the reader cannot be before the newest "
                             f"sample), got {offset!r} s")
        d = check_delay(delay, max_delay=self.max_delay, shape=self.shape, dtype=self.dtype,
                        device=self.device, clamp=clamp)
        return self.read(d, offset, dense)

    def read(self, d: Tensor, offset: Tensor | float = 0.0, dense: Dense | None = None) -> Tensor:
        """:meth:`lookup` without argument checks, for validated delays in inner loops.

        ``d`` must be a floating tensor broadcasting against ``E`` with values in
        ``[0, max_delay]``; ``offset`` (seconds, ``>= 0``) may also be a tensor broadcasting
        against ``E`` (every element at its own local time, as in event-driven stepping).
        """
        n, h = self.count, self.dt
        s = offset - d  # read point minus the reference time (t_last, or t0 when empty)
        rel = s / h
        t_ref = self.t0 if n == 0 else self.t0 + (n - 1) * h
        if rel.numel() == 1:
            return self._read_uniform(s, rel, t_ref, offset, dense)
        if n == 0:
            after = rel >= 0
            pre = ~after
        else:
            after = rel > 0
            pre = rel < -(n - 1)
        grid = ~(pre | after)
        out_shape = torch.Size(broadcast_shape(rel.shape, self.shape))  # type: ignore[arg-type]
        out: Tensor | None = None
        if n > 0 and bool(grid.any()):
            out = self._interpolate(rel, grid)
        if bool(pre.any()):
            if callable(self.initial):
                tau = torch.where(pre, t_ref + s, torch.full_like(s, self.t0))
                before = self.initial(tau)
            else:
                before = self.initial
            out = before if out is None else torch.where(pre, before, out)
        if bool(after.any()):
            if dense is None:
                worst = s.detach().max().item()
                raise ValueError(
                    f"delay reads x(t - d) {worst!r} s after the newest stored sample (d < "
                    "offset): the history does not extrapolate; pass dense= "
                    "(the current step's dense output) or keep d >= offset (d >= dt for an "
                    "explicit step)"
                )
            now = dense(torch.where(after, s, torch.zeros_like(s)))
            out = now if out is None else torch.where(after, now, out)
        assert out is not None
        return out.expand(out_shape) if out.shape != out_shape else out

    def _read_uniform(self, s: Tensor, rel: Tensor, t_ref: float, offset: Tensor | float,
                      dense: Dense | None) -> Tensor:
        """:meth:`read` for a single delay: the region is decided once, no masks."""
        n = self.count
        r = float(rel.detach())
        out_shape = torch.Size(broadcast_shape(rel.shape, self.shape))  # type: ignore[arg-type]
        if r > 0 or (n == 0 and r == 0):
            if dense is None:
                raise ValueError(
                    f"delay reads x(t - d) {float(s.detach())!r} s after the newest stored "
                    f"sample (d < offset={float(offset)!r} s): the history does not extrapolate; "
                    "pass dense= (the current step's dense output) or keep d >= offset (d >= dt "
                    "for an explicit step)"
                )
            out = dense(s)
        elif n == 0 or r < -(n - 1):
            out = self.initial(t_ref + s) if callable(self.initial) else self.initial
        elif len(self) == 1:
            out = self._values[(n - 1) % self.capacity]  # type: ignore[assignment]
        else:
            j = min(max(math.floor(r), 1 - len(self)), -1)
            theta = rel - j
            a, b = (n - 1 + j) % self.capacity, (n + j) % self.capacity
            y0, y1 = self._values[a], self._values[b]
            if self.interp == "linear":
                out = linear(y0, y1, theta)  # type: ignore[arg-type]
            else:
                out = hermite(y0, self._derivs[a], y1, self._derivs[b],  # type: ignore[arg-type]
                              theta, self.dt)
        return out.expand(out_shape) if out.shape != out_shape else out

    def _interpolate(self, rel: Tensor, grid: Tensor) -> Tensor:
        """Interpolate the stored samples at ``t_last + rel dt`` where ``grid`` holds."""
        n, held = self.count, min(self.count, self.capacity)
        newest = n - 1
        if held == 1:  # a single sample: the only grid read point is t0 itself
            return self._values[newest % self.capacity]  # type: ignore[return-value]
        # Segment [t_last + j dt, t_last + (j + 1) dt] with j in [1 - held, -1].
        j = torch.floor(rel.detach()).clamp(1 - held, -1)
        theta = torch.where(grid, rel - j, torch.zeros_like(rel))
        slot = (j.to(torch.long) + newest) % self.capacity
        ring = self._ring_tensors()
        ar = self._element_index
        nxt = (slot + 1) % self.capacity

        def pick(store: Tensor) -> tuple[Tensor, Tensor]:
            # Advanced indexing saves only the indices for backward, so later in-place
            # pushes into the ring do not disturb the gradient of this read.
            return store[(slot, *ar)], store[(nxt, *ar)]

        y0, y1 = pick(ring[0])
        if self.interp == "linear":
            return linear(y0, y1, theta)
        m0, m1 = pick(ring[1])  # type: ignore[arg-type]
        return hermite(y0, m0, y1, m1, theta, self.dt)

    def _ring_tensors(self) -> tuple[Tensor, Tensor | None]:
        """The samples as ring tensors ``[capacity, *E]`` (slot ``k % capacity`` = sample k)."""
        if self._ring is None:
            def build(store: list[Tensor | None]) -> Tensor:
                zero = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
                return torch.stack([zero if x is None else x for x in store])

            derivs = build(self._derivs) if self.interp == "hermite" else None
            self._ring = (build(self._values), derivs)
            r = len(self.shape)
            self._element_index = tuple(
                torch.arange(size, device=self.device).view(size, *([1] * (r - 1 - i)))
                for i, size in enumerate(self.shape)
            )
        return self._ring
