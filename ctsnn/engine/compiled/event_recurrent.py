"""Compiled event-driven simulation of a recurrent LIF / CubaLIF layer (exact delays).

The layer gets feed-forward spikes through a :class:`~ctsnn.synapses.Dense` synapse (the
``Exact`` kernel: no, per-axon or per-synapse delays) and its own spikes back through a
:class:`~ctsnn.synapses.RecurrentDense` with exact delays (any delay ``>= 0``: longer than a
step, shorter than a step, zero). Its neurons interact, so unlike the feed-forward kernel
(:mod:`.event_driven`, one neuron at a time) each sample is simulated in time order in float64
by one event loop (:mod:`.recurrent_loop`): threshold crossings (lower bounds in a tournament
tree, the exact crossing — bracketed and refined to the last bit as the feed-forward kernel
does — only when a neuron's bound comes first), feed-forward arrivals (per-synapse delays: each
neuron's arrivals sorted once, their next ones in a second tree; otherwise one shared,
time-sorted input list), every recurrent spike as a stream over its targets sorted by delay
(one heap entry per spike in flight, not per synapse), and the grid points where recordings are
taken (after everything else at that instant).

Between events each neuron follows its closed-form flow from its own last event; resets and
refractory ends at their exact times; arrival times are rounded in the run's dtype and snapped
onto the grid exactly as the reference schedules (:func:`ctsnn.synapses.snap_to_grid`).

Simultaneous events (the reference's :mod:`ctsnn.engine.substep` semantics, see
docs/recurrent_substep_adjoint.md). At one instant ``t`` a neuron takes, in this order: its own
threshold crossing; then every jump arriving at ``t`` whose cause is not at ``t`` (feed-forward
arrivals, recurrent arrivals with a positive delay, from any step) summed into one jump, the
threshold tested once after it (depth 0); then the zero-delay arrivals in causal waves: wave 1
from the spikes at ``t`` of depth 0 (crossings and spikes fired by the depth-0 jump), wave
``k + 1`` from the spikes wave ``k`` fired (each wave one summed jump per neuron). A neuron
fires at most once per instant, and a jump fires it when it carries ``v`` from below to at or
above the threshold. As in the reference, spikes at ``t = 0`` of neurons that start at
threshold are not sent through the recurrent synapses.

Cost: arrivals + spikes x fan-out (a tree update per arrival, a heap sift per recurrent
arrival at a new instant), independent of ``T x N``; samples run in parallel (numba
``prange``).

When it runs: :func:`event_recurrent_refusal` (documented in docs/kernels.md).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
import torch
from torch import Tensor

from ...models.base import NeuronModel
from ...models.lif import LIF, CubaLIF
from ...spikes import Spikes
from ...synapses import Arrivals, DelayedArrivals, RecurrentDense
from ...synapses.arrivals import row_order
from .event_driven import (
    _RESET_CODES,
    _params,
    _shared_schedules,
    input_refusal,
    input_tensors,
    tensors_refusal,
)
from .recurrent_loop import simulate_samples

__all__ = ["EventRecurrentOutput", "event_recurrent_refusal", "event_recurrent_spikes",
           "run_event_recurrent"]

_CUBA = {LIF: False, CubaLIF: True}
_SPIKE_SLOTS = 1 << 22  # spike slots of the first pass, shared by the samples
_PARALLEL_WORK = 200_000  # below this many (input spike, target) pairs: one thread


# =========================================================================== gathering
@numba.njit(cache=True)
def _gather(n_b, first, counts, where, more, more_counts, is32):
    """Every spike in the order of :class:`Spikes` (by sample, then time as rounded to the
    run's dtype, then unit): ``(times, current, batch, unit)``."""
    start = np.zeros(n_b + 1, dtype=np.int64)
    for b in range(n_b):
        start[b + 1] = start[b] + (counts[b] if where[b] < 0 else more_counts[where[b]])
    total = start[n_b]
    times, current = np.empty(total), np.empty(total)
    batch, units = np.empty(total, dtype=np.int64), np.empty(total, dtype=np.int64)
    for b in range(n_b):
        src, row = (first, b) if where[b] < 0 else (more, where[b])
        size = start[b + 1] - start[b]
        t = np.empty(size)
        u = np.empty(size, dtype=np.int64)
        for s in range(size):
            t[s] = np.float64(np.float32(src[row, s, 0])) if is32 else src[row, s, 0]
            u[s] = int(src[row, s, 1])
        by_unit = np.argsort(u, kind="mergesort")
        order = by_unit[np.argsort(t[by_unit], kind="mergesort")]
        for s in range(size):
            k = start[b] + s
            times[k], units[k], batch[k] = t[order[s]], u[order[s]], b
            current[k] = src[row, order[s], 2]
    return times, current, batch, units


# =========================================================================== selection rule
def event_recurrent_refusal(model: NeuronModel, *, time: str, method: str, arrivals: object,
                            dt: float, n_steps: int, current: object, jumps: object,
                            recurrent: object, saveat: object, integrand: object,
                            state: tuple | None, dtype: torch.dtype) -> str | None:
    """Why the compiled recurrent event-driven engine cannot serve a run, or ``None``.

    The one selection rule for recurrent layers (see docs/kernels.md): continuous time with
    the closed-form flow (``method="exact"``) of exactly :class:`LIF` or :class:`CubaLIF`;
    recurrence through a :class:`~ctsnn.synapses.RecurrentDense` with exact delays (any
    ``>= 0``); input, if any, only as spikes through a :class:`~ctsnn.synapses.Dense` synapse
    with the ``Exact`` kernel; no input current, jumps, ``saveat`` or integrand (recordings of
    the state at grid points are served); float32 / float64; nothing that needs an autograd
    graph; compiled kernels enabled for these CPU tensors. Otherwise the reference runs.
    """
    if time != "continuous" or method != "exact":
        return "not continuous time with the exact flow"
    if type(model) not in _CUBA:
        return f"{type(model).__name__} is not LIF or CubaLIF"
    if not isinstance(recurrent, RecurrentDense) or recurrent.kernel.grid:
        return "the recurrence is not a RecurrentDense with exact delays"
    given = {"current": current, "jumps": jumps, "saveat": saveat, "integrand": integrand}
    if arrivals is not None:
        reason = input_refusal(arrivals, dt=dt, n_steps=n_steps, dtype=dtype, **given)
        if reason is not None:
            return reason
    for name, value in given.items():
        if value is not None:
            return f"{name} is given"
    if dtype not in (torch.float32, torch.float64):
        return f"dtype {dtype} (float32 / float64 only)"
    tensors = [*model.parameters(), *model.buffers(), *recurrent.parameters(),
               *recurrent.buffers(), *(() if state is None else state)]
    if arrivals is not None:
        tensors += input_tensors(arrivals)
    return tensors_refusal(tensors)


# =========================================================================== entry point
class EventRecurrentOutput(NamedTuple):
    """Spikes of the layer (``[K]`` each, in the order of :class:`Spikes`: by sample, then
    time, then unit; ``current`` the synaptic current just before each spike, zeros for LIF),
    the final state (the model's named tuple of ``[B, N]``) and the recordings (name ->
    ``[T // record_every, B, N]``, the state at every ``record_every``-th grid point)."""

    times: Tensor
    batch: Tensor
    units: Tensor
    current: Tensor
    final_state: tuple
    states: dict[str, Tensor]


def _input_events(arrivals: Arrivals | DelayedArrivals | None, batch_size: int, n: int,
                  dtype: torch.dtype) -> tuple:
    """The feed-forward spikes sorted by sample then time, as numpy arrays: ``(ptr [B + 1],
    times, units, values, weight [N, N_in], per-synapse delay, per-axon delay, shared,
    has_delay)``."""
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    if arrivals is None:
        empty = np.zeros(0, dtype=np_dtype)
        return (np.zeros(batch_size + 1, dtype=np.int64), empty, np.zeros(0, dtype=np.int64),
                np.zeros(0), np.zeros((n, 1)), np.zeros((1, 1), dtype=np_dtype), empty, True,
                False)
    spikes = arrivals.spikes
    order = row_order((spikes.batch,), (batch_size,), spikes.times.detach())
    batch = spikes.batch[order]
    ev_t = spikes.times.detach()[order].to(dtype).cpu().numpy().astype(np_dtype, copy=False)
    ev_u = spikes.units[order].cpu().numpy().astype(np.int64, copy=False)
    ev_x = spikes.values.detach()[order].to(torch.float64).cpu().numpy()
    ptr = torch.searchsorted(batch, torch.arange(batch_size + 1)).numpy().astype(np.int64)
    weight = arrivals.weight.detach().to(torch.float64).cpu().contiguous().numpy()
    delay_t = arrivals.delay.detach() if isinstance(arrivals, DelayedArrivals) else None
    shared = delay_t is None or delay_t.shape[0] <= 1 or delay_t.stride(0) == 0
    delay = np.zeros((1, 1), dtype=np_dtype)
    axon = np.zeros(1, dtype=np_dtype)
    if delay_t is not None and shared:
        axon = (delay_t[0].to(dtype).cpu().contiguous().numpy() if delay_t.shape[0]
                else np.zeros(weight.shape[1], dtype=np_dtype))
    elif delay_t is not None:
        delay = delay_t.to(dtype).cpu().contiguous().numpy()
    return ptr, ev_t, ev_u, ev_x, weight, delay, axon, shared, delay_t is not None


def _recurrent_targets(recurrent: RecurrentDense, n: int, dtype: torch.dtype) -> tuple:
    """``(weight [N, N] float64, delay [N, N] in dtype, ptr [N + 1], targets)``: for every
    source ``u`` its targets with a non-zero weight, sorted by delay (then index)."""
    w = recurrent.effective_weight.detach().to(torch.float64).cpu()
    d = recurrent.synapse_delay().detach().to(dtype).cpu().expand(n, n).contiguous()
    order = torch.argsort(d, dim=0, stable=True)  # [N_post, N_pre]: targets of each source
    keep = torch.gather(w, 0, order) != 0
    ptr = torch.zeros(n + 1, dtype=torch.int64)
    ptr[1:] = torch.cumsum(keep.sum(0), 0)
    targets = order.t()[keep.t()]
    return w.contiguous().numpy(), d.numpy(), ptr.numpy(), targets.contiguous().numpy()


def _current_bound(p: np.ndarray) -> np.ndarray:
    """``max_h q(h)`` per neuron, ``q(h) = ts/(ts - tm) (e^{-h/ts} - e^{-h/tm})`` (``h/tm
    e^{-h/tm}`` when ``ts ~ tm``): the largest ``v`` a unit current adds; slightly enlarged."""
    tm, ts, near = p[:, 0], p[:, 1], p[:, 7] > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        hm = ts * tm * np.log(tm / ts) / (tm - ts)
        q = ts / (ts - tm) * (np.exp(-hm / ts) - np.exp(-hm / tm))
    q = np.where(near | ~np.isfinite(q), math.exp(-1.0), q)
    return q * (1 + 1e-6) + 1e-12


def run_event_recurrent(model: NeuronModel, arrivals: Arrivals | DelayedArrivals | None,
                        recurrent: RecurrentDense, *, dt: float, n_steps: int, batch_size: int,
                        state: tuple | None, dtype: torch.dtype, record: tuple[str, ...] = (),
                        record_every: int = 1) -> EventRecurrentOutput:
    """Simulate the recurrent layer event by event (see the module docstring).

    Args:
        model: an LIF or CubaLIF population of ``N`` neurons.
        arrivals: the feed-forward schedule :meth:`ctsnn.synapses.Dense.arrivals` built (its
            input spikes, weight ``[N, N_in]``, delays ``[N, N_in]`` seconds), or ``None``.
        recurrent: the layer's :class:`~ctsnn.synapses.RecurrentDense` (exact delays,
            seconds); its delays are checked as the reference checks them.
        dt, n_steps, batch_size: the grid (``T = n_steps dt`` seconds) and ``B``.
        state: initial state (``[B, N]`` per variable), default ``model.initial_state``.
        dtype: dtype of the results (the computation is float64).
        record, record_every: state variables to record at every ``record_every``-th grid
            point (as :func:`ctsnn.engine.run_population`).
    """
    cuba, n = _CUBA[type(model)], model.n
    recurrent.check_delays()
    if state is None:
        state = model.initial_state(batch_size, dtype=dtype)
    is32 = dtype == torch.float32
    ptr, ev_t, ev_u, ev_x, weight, delay, axon, shared, has_delay = _input_events(
        arrivals, batch_size, n, dtype)
    eps = float(torch.finfo(dtype).eps)
    t_end = n_steps * dt
    t_end_key = float(torch.tensor(t_end, dtype=torch.float64).to(dtype))  # later ones drop
    if arrivals is not None and shared:
        s_time, s_src, s_n = _shared_schedules(ev_t, ev_u, ptr, axon, has_delay, is32, dt, eps,
                                               t_end, t_end_key)
    else:
        s_time, s_src = np.empty(0), np.empty(0, dtype=np.int64)
        s_n = np.zeros(batch_size, dtype=np.int64)
    rec_w, rec_d, rec_ptr, rec_tgt = _recurrent_targets(recurrent, n, dtype)
    v0 = state[0].detach().to(torch.float64).cpu().numpy()
    i0 = (state[1] if cuba else state[0] * 0).detach().to(torch.float64).cpu().numpy()
    p = _params(model, cuba)
    bound = _current_bound(p)
    mode = _RESET_CODES.get(getattr(model, "reset_mode", "none"), 2)
    n_rec = n_steps // record_every if record else 0
    rec_v, rec_i = np.empty((n_rec, batch_size, n)), np.empty((n_rec, batch_size, n))
    v_end, i_end = np.empty((batch_size, n)), np.empty((batch_size, n))
    cap = int(min(max(_SPIKE_SLOTS // batch_size, 64), 64 * n))

    def simulate(samples: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
        return simulate_samples(samples, ptr, ev_t, ev_u, ev_x, weight, delay, shared,
                                s_time, s_src, s_n, rec_w, rec_d, rec_ptr, rec_tgt, p, bound,
                                cuba, mode, v0, i0, t_end, t_end_key, dt, eps, is32,
                                record_every, rec_v, rec_i, v_end, i_end, cap)

    threads = numba.get_num_threads()
    if batch_size == 1 or ev_t.size * n < _PARALLEL_WORK:
        numba.set_num_threads(1)
    try:
        first, counts = simulate(np.arange(batch_size, dtype=np.int64), cap)
        where = np.full(batch_size, -1, dtype=np.int64)
        over = np.nonzero(counts > cap)[0]
        more, more_counts = first[:0], counts[:0]
        if over.size:  # samples with more spikes than cap: run them again with room
            where[over] = np.arange(over.size)
            more, more_counts = simulate(over.astype(np.int64), int(counts[over].max()))
    finally:
        numba.set_num_threads(threads)
    times, current, batch, units = _gather(batch_size, first, counts, where, more, more_counts,
                                           is32)
    parts = [torch.from_numpy(v_end).to(dtype)]
    if cuba:
        parts.append(torch.from_numpy(i_end).to(dtype))
    recorded = {"v": rec_v, "i": rec_i}
    states = {name: torch.from_numpy(recorded[name]).to(dtype) for name in record}
    times = torch.from_numpy(times).to(dtype)
    current = torch.from_numpy(current).to(dtype) if cuba else torch.zeros_like(times)
    return EventRecurrentOutput(times, torch.from_numpy(batch), torch.from_numpy(units),
                                current, model.State(*parts), states)


def event_recurrent_spikes(out: EventRecurrentOutput, *, dt: float, n_steps: int,
                           batch_size: int, n_units: int) -> Spikes:
    """The output spikes of :func:`run_event_recurrent` as :class:`Spikes` (already in order)."""
    return Spikes.from_sorted_events(out.times, out.units, out.batch, dt=dt, n_steps=n_steps,
                                     batch_size=batch_size, n_units=n_units)
