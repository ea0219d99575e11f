"""Compiled continuous-time loop for models without a closed form (AdEx, equation models).

The reference continuous engine (:mod:`ctsnn.engine.continuous`) integrates such a model with
a fixed Runge-Kutta step used as dense output, issuing a few dozen small tensor operators per
step and per root-finder iteration from Python. This kernel runs the same algorithm, one
(sample, neuron) row at a time, in float64 numba code generated from the model's equations:

* the model is its equations: an :class:`~ctsnn.models.equations.EquationModel` (from
  :func:`ctsnn.from_equations`) or :class:`~ctsnn.AdEx` (whose equation form is
  :data:`ADEX_EQUATIONS`) is printed as scalar ``math`` source
  (:func:`ctsnn.models.equations.codegen.model_source`) and compiled with ``numba.njit``
  together with the loop; compiled kernels are cached per equation text and method;
* every grid step ``n`` is split at the exact arrival times of the step (local offsets in
  ``(0, dt]`` as :func:`ctsnn.spikes.locate` computes them in the run's dtype, after the grid
  snapping of delayed arrivals; every input spike splits the step of every target, also
  through a zero weight; simultaneous arrivals are one summed jump on the jump target);
* each piece ``[tau, end]`` is one step of the method from the piece's start (time argument
  ``n dt + tau``); an upward threshold crossing (``g`` from ``< 0`` to ``>= 0`` at the piece's
  end, or a hidden one: the slope of ``g`` going from rising to falling and ``g >= 0`` at its
  maximum, non-monotone models only) is located by the same safeguarded Illinois search as
  :func:`solvers.roots.find_root` on the same map (a partial step from the piece's start),
  to ``xtol`` (default ``64 eps dt``); the reset is applied there and the piece continues;
* an arrival that carries ``g`` from below to at or above zero fires (once per instant);
  a neuron at or above threshold at ``t = 0`` fires at ``t = 0``.

Rows are independent (feed-forward layer): numba ``prange`` runs chunks of rows, each chunk
owning its rows, so results do not depend on the thread count. float32 runs are computed in
float64 (schedule keys and offsets in float32, as the reference builds them) and rounded at the
end: they agree with the float64 reference to float32 resolution, not with the float32
reference bit for bit.

When it runs: :func:`generic_loop_refusal` (the selection rule, docs/kernels-generic.md).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
import torch
from numba import prange
from torch import Tensor

from ...compiled import kernel_threads, numba_threads
from ...models.adaptive import AdEx
from ...models.base import NeuronModel
from ...models.equations import EquationModel, parse_equations
from ...models.equations.codegen import CodegenError, ModelSource, model_source
from ...spikes import Spikes
from ...synapses import Arrivals, DelayedArrivals
from .event_driven import tensors_refusal
from .schedule import chunk_bounds, sort_arrivals

__all__ = ["ADEX_EQUATIONS", "METHODS", "GenericOutput", "generic_loop_refusal",
           "generic_source", "generic_spikes", "run_generic_loop"]

#: :class:`~ctsnn.AdEx` as equations (the form the compiled loop is generated from; the tests
#: check it against ``AdEx.dynamics``): ``(equations, threshold, reset)``.
ADEX_EQUATIONS = (
    "dv/dt = (v_leak - v + delta_t*exp((v - v_t)/delta_t) + r*(I - w))/tau_mem\n"
    "dw/dt = (a*(v - v_leak) - w)/tau_w",
    "v >= v_peak",
    "v = v_reset; w += b",
)
_ADEX_PARAMS = ("tau_mem", "tau_w", "r", "v_leak", "v_t", "delta_t", "a", "b", "v_reset",
                "v_peak")
#: Fixed-step methods served (the index is the kernel's method code).
METHODS = ("euler", "midpoint", "heun", "rk4")
_SNAP_ULPS = 8.0  # as ctsnn.synapses.snap_to_grid
_MAX_ITER = 100  # as solvers.roots.find_root
_PARALLEL_WORK = 20_000  # rows x steps below which one thread runs the call
_NEG_MAX = -1.7976931348623157e308


# =========================================================================== model source
_SOURCES: dict[type, ModelSource] = {}


def generic_source(model: NeuronModel) -> ModelSource:
    """The generated source of ``model`` (an :class:`EquationModel` or :class:`AdEx`).

    Raises:
        CodegenError: the model is neither, or its equations use something the loop cannot
            evaluate.
    """
    cls = type(model)
    if cls not in _SOURCES:
        if isinstance(model, EquationModel):
            spec = model.spec
        elif cls is AdEx:
            equations, threshold, reset = ADEX_EQUATIONS
            spec = parse_equations(equations, parameters=_ADEX_PARAMS, threshold=threshold,
                                   reset=reset)
        else:
            raise CodegenError(f"{cls.__name__} is neither an equation model nor AdEx")
        _SOURCES[cls] = model_source(spec)
    return _SOURCES[cls]


# =========================================================================== kernels
@numba.njit(cache=True)
def _nan_to_inf(x):
    """As ``torch.nan_to_num(x, nan=inf, posinf=inf)`` (``-inf`` to the lowest float)."""
    if math.isnan(x) or x == math.inf:
        return math.inf
    if x == -math.inf:
        return _NEG_MAX
    return x


@numba.njit(cache=True)
def _key(t, d, snap, is32, dt, eps):
    """An arrival time ``t + d`` in the run's dtype, snapped onto a grid point within 8 ulps
    (:func:`ctsnn.synapses.snap_to_grid`) when ``snap``; returned as float64."""
    if is32:
        a = np.float32(np.float32(t) + np.float32(d))
        if snap:
            g = np.float32(np.round(np.float64(a) / dt) * dt)
            if abs(a - g) <= np.float32(_SNAP_ULPS * eps) * max(abs(g), np.float32(dt)):
                a = g
        return np.float64(a)
    a = t + d
    if snap:
        g = np.round(a / dt) * dt
        if abs(a - g) <= _SNAP_ULPS * eps * max(abs(g), dt):
            a = g
    return a


@numba.njit(cache=True)
def _grid(n, dt, is32):
    return np.float64(np.float32(n * dt)) if is32 else n * dt


@numba.njit(cache=True)
def _locate(t, dt, is32):
    """``(step, offset)`` of a time as :func:`ctsnn.spikes.locate` computes it in the dtype."""
    n = max(math.ceil(t / dt) - 1, 0)
    for _ in range(8):
        lo, hi = _grid(n, dt, is32), _grid(n + 1, dt, is32)
        if t <= lo and n > 0:
            n -= 1
        elif t > hi:
            n += 1
        else:
            break
    lo, hi = _grid(n, dt, is32), _grid(n + 1, dt, is32)
    step = _grid(1, dt, is32) if is32 else dt
    if t >= hi:
        return n, step
    off = np.float64(np.float32(np.float32(t) - np.float32(lo))) if is32 else t - lo
    return n, min(off, step)


@numba.njit(cache=True)
def _schedule(j, e0, e1, ev_t, ev_u, ev_x, weight, delay, has_delay, is32, dt, eps, key_end,
              n_steps, tmp, val, at, aw, bins, a_step, a_off, a_val):
    """The arrivals at neuron ``j`` of events ``e0..e1-1`` as steps, offsets and summed jumps
    (one per instant, zero jumps kept: they split the step as in the reference); returns
    their number."""
    m = 0
    for e in range(e0, e1):
        u = ev_u[e]
        key = _key(ev_t[e], delay[j, u] if has_delay else 0.0, has_delay, is32, dt, eps)
        if key > key_end:
            continue
        tmp[m], val[m] = key, ev_x[e] * weight[j, u]
        m += 1
    sort_arrivals(tmp, val, m, max(key_end, dt), bins, at, aw)
    k = 0
    q = 0
    while q < m:
        t = at[q]
        jump = aw[q]
        q += 1
        while q < m and at[q] == t:
            jump += aw[q]
            q += 1
        n, off = _locate(t, dt, is32)
        if n >= n_steps:
            break
        a_step[k], a_off[k], a_val[k] = n, off, jump
        k += 1
    return k


_jit = numba.njit(error_model="numpy")  # inf / nan, never ZeroDivisionError, as torch


def _model_functions(source: ModelSource) -> tuple:
    """``rhs, g, slope, reset`` of the generated source, compiled."""
    namespace: dict = {"math": math}
    exec(compile(source.source, f"<ctsnn generated {source.state_names}>", "exec"), namespace)
    return tuple(_jit(namespace[k]) for k in ("rhs", "g", "slope", "reset"))


def _make_step(rhs, method: int):
    """``step(y, t, h, p, j, out, w)``: one step of the method (code ``method``)."""

    @_jit
    def step(y, t, h, p, j, out, w):
        """One step of the method from ``(t, y)`` over ``h`` (the reference's op order)."""
        k1, k2, k3, k4, tmp = w[0], w[1], w[2], w[3], w[4]
        s = y.shape[0]
        rhs(y, t, p, j, k1)
        if method == 0:
            for i in range(s):
                out[i] = y[i] + h * k1[i]
        elif method == 1:
            half = 0.5 * h
            for i in range(s):
                tmp[i] = y[i] + half * k1[i]
            rhs(tmp, t + half, p, j, k2)
            for i in range(s):
                out[i] = y[i] + h * k2[i]
        elif method == 2:
            for i in range(s):
                tmp[i] = y[i] + h * k1[i]
            rhs(tmp, t + h, p, j, k2)
            for i in range(s):
                out[i] = y[i] + 0.5 * h * (k1[i] + k2[i])
        else:
            half = 0.5 * h
            for i in range(s):
                tmp[i] = y[i] + half * k1[i]
            rhs(tmp, t + half, p, j, k2)
            for i in range(s):
                tmp[i] = y[i] + half * k2[i]
            rhs(tmp, t + half, p, j, k3)
            for i in range(s):
                tmp[i] = y[i] + h * k3[i]
            rhs(tmp, t + h, p, j, k4)
            sixth = h / 6.0
            for i in range(s):
                out[i] = y[i] + sixth * (((k1[i] + 2.0 * k2[i]) + 2.0 * k3[i]) + k4[i])

    return step


def _make_root(rhs, g, slope, step):
    """``root(kind, ...)``: the crossing search of one element (see below)."""

    @_jit
    def root(kind, y, tau, lo, hi, g_lo, g_hi, t0, p, j, xtol, w, yx, dy):
        """:func:`solvers.roots.find_root` for one element: ``g`` (``kind`` 0) or minus the
        slope of ``g`` (1) along the partial step from ``(tau, y)``."""
        g_hi = _nan_to_inf(g_hi)
        side = 0
        window = hi - lo
        for it in range(_MAX_ITER):
            width = hi - lo
            mid = lo + 0.5 * width
            if not (width > xtol and mid > lo and mid < hi):
                break
            use = False
            secant = mid
            if math.isfinite(g_hi):
                secant = lo - g_lo * width / (g_hi - g_lo)
                use = secant > lo and secant < hi
            if it % 2 == 0 and it > 0:
                use = use and not (width > 0.5 * window)
                window = width
            x = secant if use else mid
            step(y, t0 + tau, x - tau, p, j, yx, w)
            if kind == 0:
                gx = g(yx, p, j)
            else:
                rhs(yx, t0, p, j, dy)
                gx = -slope(yx, dy, p, j)
            gx = _nan_to_inf(gx)
            if gx >= 0:
                if side > 0:
                    g_lo *= 0.5
                hi, g_hi, side = x, gx, 1
            else:
                if side < 0:
                    g_hi *= 0.5
                lo, g_lo, side = x, gx, -1
            if gx == 0:
                break
        return hi

    return root


def _make_advance(rhs, g, slope, reset, step, root, spiking: bool, has_slope: bool):
    """``advance(...)``: one element from ``tau`` to ``end`` with its crossings."""

    @_jit
    def advance(y, tau, end, t0, p, j, xtol, n, count, out_n, out_tau, row, w, y1, ye, dy):
        """:func:`solvers.events.advance_with_events` for one element (no hold): from
        ``tau`` to ``end``, spiking at every crossing; returns ``(count, last spike)``."""
        s = y.shape[0]
        last = -math.inf
        while tau < end:
            g0 = g(y, p, j) if spiking else 0.0
            step(y, t0 + tau, end - tau, p, j, y1, w)
            cross = False
            upper = end
            g1 = 0.0
            if spiking and g0 < 0:
                g1 = _nan_to_inf(g(y1, p, j))
                cross = g1 >= 0
                if not cross and has_slope:
                    rhs(y, t0, p, j, dy)
                    s0 = slope(y, dy, p, j)
                    rhs(y1, t0, p, j, dy)
                    s1 = slope(y1, dy, p, j)
                    if s0 > 0 and s1 < 0:
                        t_max = root(1, y, tau, tau, end, -s0, -s1, t0, p, j, xtol, w, ye, dy)
                        step(y, t0 + tau, t_max - tau, p, j, ye, w)
                        g_max = g(ye, p, j)
                        if g_max >= 0:
                            cross, upper, g1 = True, t_max, g_max
            if not cross:
                for i in range(s):
                    y[i] = y1[i]
                break
            t_event = root(0, y, tau, tau, upper, g0, g1, t0, p, j, xtol, w, ye, dy)
            step(y, t0 + tau, t_event - tau, p, j, ye, w)
            for i in range(s):
                y[i] = ye[i]
            reset(y, p, j)
            tau = t_event
            last = t_event
            if count < out_n.shape[1]:
                out_n[row, count], out_tau[row, count] = n, t_event
            count += 1
        return count, last

    return advance


def _make_rows(g, reset, advance, spiking: bool, resets: bool, jump: int):
    """``rows_range`` and ``rows_parallel``: the whole run of a range of rows."""

    @_jit
    def element(a_step, a_off, a_val, m, y, p, j, n_steps, dt, dt_end, xtol, out_n, out_tau,
                row, w, y1, ye, dy):
        """One (sample, neuron) over the run; returns ``(spike count, finite throughout)``."""
        count = 0
        if spiking and resets and g(y, p, j) >= 0:  # at threshold at t = 0: fires at 0
            reset(y, p, j)
            if count < out_n.shape[1]:
                out_n[row, count], out_tau[row, count] = 0, 0.0
            count += 1
        k = 0
        finite = True
        for n in range(n_steps):
            t0 = n * dt
            tau = 0.0
            last = -math.inf
            while True:
                has = k < m and a_step[k] == n
                end = a_off[k] if has else dt_end
                count, seen = advance(y, tau, end, t0, p, j, xtol, n, count, out_n, out_tau,
                                      row, w, y1, ye, dy)
                if seen > -math.inf:
                    last = seen
                tau = end
                if not has:
                    break
                before = g(y, p, j) if spiking else 0.0
                y[jump] += a_val[k]
                k += 1
                if spiking and before < 0 and g(y, p, j) >= 0 and last != tau:
                    reset(y, p, j)
                    last = tau
                    if count < out_n.shape[1]:
                        out_n[row, count], out_tau[row, count] = n, tau
                    count += 1
            for i in range(y.shape[0]):
                finite = finite and math.isfinite(y[i])
        return count, finite

    @_jit
    def rows_range(r0, r1, rows, ev_t, ev_u, ev_x, ptr, weight, delay, has_delay, is32, dt,
                   eps, key_end, n_steps, dt_end, xtol, p, y0, out_n, out_tau, counts, finite,
                   y_end):
        """Rows ``rows[r0:r1]`` (flat ``b N + j``), scratch allocated once."""
        n, s = y0.shape[1], y0.shape[2]
        width = 1
        for r in range(r0, r1):
            b = rows[r] // n
            width = max(width, ptr[b + 1] - ptr[b])
        tmp, val, at, aw = np.empty(width), np.empty(width), np.empty(width), np.empty(width)
        bins = np.empty(width + 1, dtype=np.int64)
        a_step, a_off, a_val = np.empty(width, dtype=np.int64), np.empty(width), np.empty(width)
        w = np.empty((5, s))
        y, y1, ye, dy = np.empty(s), np.empty(s), np.empty(s), np.empty(s)
        for r in range(r0, r1):
            q = rows[r]
            b, j = q // n, q % n
            m = _schedule(j, ptr[b], ptr[b + 1], ev_t, ev_u, ev_x, weight, delay, has_delay,
                          is32, dt, eps, key_end, n_steps, tmp, val, at, aw, bins, a_step,
                          a_off, a_val)
            for i in range(s):
                y[i] = y0[b, j, i]
            c, ok = element(a_step, a_off, a_val, m, y, p, j, n_steps, dt, dt_end, xtol,
                            out_n, out_tau, r, w, y1, ye, dy)
            counts[r] = c
            finite[r] = ok
            for i in range(s):
                y_end[b, j, i] = y[i]

    @numba.njit(parallel=True, error_model="numpy")
    def rows_parallel(n_chunks, rows, *args):
        for c in prange(n_chunks):
            r0, r1 = chunk_bounds(c, n_chunks, rows.shape[0])
            rows_range(r0, r1, rows, *args)

    return rows_range, rows_parallel


_KERNELS: dict[tuple, tuple] = {}


def _kernels(source: ModelSource, method: str, has_slope: bool, jump: int) -> tuple:
    """``(rows_range, rows_parallel)`` for a model source and method, built once per process
    (the generated functions are closures: numba compiles them at their first call)."""
    key = (source.source, method, has_slope, jump)
    if key not in _KERNELS:
        rhs, g, slope, reset = _model_functions(source)
        step = _make_step(rhs, METHODS.index(method))
        root = _make_root(rhs, g, slope, step)
        advance = _make_advance(rhs, g, slope, reset, step, root, source.spiking, has_slope)
        _KERNELS[key] = _make_rows(g, reset, advance, source.spiking, source.resets, jump)
    return _KERNELS[key]


# =========================================================================== selection rule
def generic_loop_refusal(model: NeuronModel, *, time: str, method: object, arrivals: object,
                         dt: float, n_steps: int, current: object, jumps: object,
                         recurrent: object, record: tuple, saveat: object, integrand: object,
                         state: tuple | None, dtype: torch.dtype) -> str | None:
    """Why the compiled generic loop cannot serve a run, or ``None`` when it does.

    The selection rule (docs/kernels-generic.md): continuous time with a fixed-step method
    (one of :data:`METHODS`); an :class:`~ctsnn.models.equations.EquationModel` or
    :class:`~ctsnn.AdEx` whose equations the generator can print
    (:func:`generic_source`), without refractory period or delayed reads; input only as
    spikes through a :class:`~ctsnn.synapses.Dense` synapse with the ``Exact`` kernel (zero,
    per-axon or per-synapse delays); no input current, jumps, recurrent synapse, recording,
    ``saveat`` or integrand; float32 / float64; nothing that needs an autograd graph; and
    compiled kernels enabled for these CPU tensors (:func:`ctsnn.compiled.kernels_enabled`).
    Otherwise the reference engine runs.
    """
    if time != "continuous" or not isinstance(method, str) or method not in METHODS:
        return f"not continuous time with a fixed-step method ({', '.join(METHODS)})"
    if not (isinstance(model, EquationModel) or type(model) is AdEx):
        return f"{type(model).__name__} is neither an equation model nor AdEx"
    if model.delayed_reads:
        return "the model reads its own delayed state"
    if bool((model.refractory.detach() > 0).any()):
        return "a refractory period is set"
    if not isinstance(arrivals, (Arrivals, DelayedArrivals)) or arrivals.weight is None:
        return "input is not spikes through a Dense synapse with the Exact kernel"
    if arrivals.dt != dt:
        return "the input spikes' dt differs from the run's"
    if n_steps > arrivals.spikes.n_steps:
        return "the run is longer than the input's grid"
    others = {"current": current, "jumps": jumps, "recurrent": recurrent, "saveat": saveat,
              "integrand": integrand}
    for name, value in others.items():
        if value is not None:
            return f"{name} is given"
    if record:
        return "record is given"
    if dtype not in (torch.float32, torch.float64):
        return f"dtype {dtype} (float32 / float64 only)"
    try:
        generic_source(model)
    except CodegenError as exc:
        return str(exc)
    tensors = [arrivals.weight, arrivals.spikes.times, arrivals.spikes.values,
               *model.parameters(), *model.buffers(), *(() if state is None else state)]
    if isinstance(arrivals, DelayedArrivals):
        tensors.append(arrivals.delay)
    return tensors_refusal(tensors)


# =========================================================================== entry point
class GenericOutput(NamedTuple):
    """Spikes of the layer (``[K]`` each, any order: :func:`generic_spikes` sorts them) and
    the final state (the model's named tuple of ``[B, N]``)."""

    times: Tensor
    batch: Tensor
    units: Tensor
    final_state: tuple


def _params(model: NeuronModel, names: tuple[str, ...]) -> np.ndarray:
    """Per-neuron float64 parameters ``[N, P]`` in ``names`` order."""
    cols = [getattr(model, name).detach().to(torch.float64).cpu().expand(model.n)
            for name in names]
    if not cols:
        return np.zeros((model.n, 1))
    return torch.stack(cols, dim=1).contiguous().numpy()


def run_generic_loop(model: NeuronModel, arrivals: Arrivals | DelayedArrivals, *,
                     method: str, n_steps: int, batch_size: int, state: tuple | None,
                     dtype: torch.dtype, xtol: float | None = None) -> GenericOutput | None:
    """Simulate the layer with the compiled loop (see the module docstring).

    Args:
        model: an :class:`EquationModel` or :class:`AdEx` population of ``N`` neurons.
        arrivals: the schedule :meth:`ctsnn.synapses.Dense.arrivals` built (input spikes,
            weight ``[N, N_in]``, delays ``[N, N_in]`` seconds).
        method: one of :data:`METHODS`.
        n_steps, batch_size: the grid (``T = n_steps dt`` seconds) and ``B``.
        state: initial state (``[B, N]`` per variable), default ``model.initial_state``.
        dtype: dtype of the results (the computation is float64).
        xtol: tolerance of the crossing search (s), default ``64 eps dt`` (float64 ``eps``).

    Returns:
        the spikes and final state, or ``None`` when the state became NaN or infinite (the
        caller then runs the reference engine, which raises the explanatory error).
    """
    source = generic_source(model)
    rows_range, rows_parallel = _kernels(source, method, not model.monotone,
                                         model.state_names.index(model.jump_target))
    spikes, dt = arrivals.spikes, arrivals.dt
    if state is None:
        state = model.initial_state(batch_size, dtype=dtype)
    is32 = dtype == torch.float32
    np_dtype = np.float32 if is32 else np.float64
    ev_t = spikes.times.detach().to(dtype).cpu().numpy().astype(np_dtype, copy=False)
    ev_u = spikes.units.cpu().numpy().astype(np.int64, copy=False)
    ev_x = spikes.values.detach().to(dtype).to(torch.float64).cpu().numpy()
    order = np.argsort(spikes.batch.cpu().numpy(), kind="stable")
    ev_t, ev_u, ev_x = ev_t[order], ev_u[order], ev_x[order]
    ptr = np.zeros(batch_size + 1, dtype=np.int64)
    np.cumsum(np.bincount(spikes.batch.cpu().numpy(), minlength=batch_size), out=ptr[1:])
    weight = arrivals.weight.detach().to(dtype).to(torch.float64).cpu().contiguous().numpy()
    has_delay = isinstance(arrivals, DelayedArrivals)
    delay = (arrivals.delay.detach().to(dtype).expand(weight.shape).cpu().contiguous().numpy()
             if has_delay else np.zeros((1, 1), dtype=np_dtype))
    eps = float(torch.finfo(dtype).eps)
    key_end = float(torch.tensor(spikes.n_steps * dt, dtype=torch.float64).to(dtype))
    dt_end = float(torch.tensor(dt, dtype=dtype))
    xtol = 64 * float(torch.finfo(torch.float64).eps) * dt if xtol is None else float(xtol)
    n, n_rows = model.n, batch_size * model.n
    y0 = torch.stack([s.detach().to(torch.float64).cpu() for s in state], dim=-1).numpy()
    y0 = np.ascontiguousarray(y0)
    y_end = np.empty_like(y0)
    p = _params(model, source.param_names)
    threads = kernel_threads() if n_rows * max(n_steps, 1) >= _PARALLEL_WORK else 1

    def simulate(rows: np.ndarray, cap: int) -> tuple[np.ndarray, ...]:
        out_n = np.empty((rows.size, cap), dtype=np.int64)
        out_tau = np.empty((rows.size, cap))
        counts = np.zeros(rows.size, dtype=np.int64)
        finite = np.ones(rows.size, dtype=np.bool_)
        args = (ev_t, ev_u, ev_x, ptr, weight, delay, has_delay, is32, dt, eps, key_end,
                n_steps, dt_end, xtol, p, y0, out_n, out_tau, counts, finite, y_end)
        if threads > 1 and rows.size > 1:
            with numba_threads(threads):
                rows_parallel(min(rows.size, 16 * threads), rows, *args)
        else:
            rows_range(0, rows.size, rows, *args)
        return out_n, out_tau, counts, finite

    rows = np.arange(n_rows, dtype=np.int64)
    out_n, out_tau, counts, finite = simulate(rows, 32)
    if not finite.all():
        return None
    over = np.nonzero(counts > out_n.shape[1])[0]
    keep = np.arange(out_n.shape[1])[None, :] < counts[:, None]
    steps, taus, which = out_n[keep], out_tau[keep], np.nonzero(keep)[0]
    if over.size:  # rows that fired more than the buffer holds: run them again with room
        more_n, more_tau, more_counts, _ = simulate(rows[over], int(counts[over].max()))
        keep2 = np.arange(more_n.shape[1])[None, :] < more_counts[:, None]
        first = ~np.isin(which, over)
        steps = np.concatenate([steps[first], more_n[keep2]])
        taus = np.concatenate([taus[first], more_tau[keep2]])
        which = np.concatenate([which[first], over[np.nonzero(keep2)[0]]])
    # as SpikeLog.add: n dt + local time in the dtype, kept inside its step
    step_t = torch.from_numpy(steps)
    times = torch.from_numpy(taus).to(dtype) + (step_t.to(torch.float64) * dt).to(dtype)
    end = ((step_t + 1).to(torch.float64) * dt).to(dtype)
    times = times - (times - end).clamp_min(0)
    which_t = torch.from_numpy(which)
    final = torch.from_numpy(y_end).to(dtype)
    return GenericOutput(times, which_t // n, which_t % n,
                         model.State(*final.unbind(-1)))


def generic_spikes(out: GenericOutput, *, dt: float, n_steps: int, batch_size: int,
                   n_units: int) -> Spikes:
    """The output spikes of :func:`run_generic_loop` as sorted :class:`Spikes`."""
    return Spikes.from_events(out.times, out.units, out.batch, dt=dt, n_steps=n_steps,
                              batch_size=batch_size, n_units=n_units)
