"""The event table of the generic adjoint (:mod:`ctsnn.gradients.adjoint`).

Every arrival (external input event x target, recurrent output spike x target) and every output
spike of a layer, sorted by (step, element, time); at an instant shared by several events of one
element, in the forward's causal order (:mod:`ctsnn.gradients.instants`). ``setup`` is the
adjoint's per-layer settings (``model``, ``dt``, ``n_steps``, ``has_delay``, ``recurrent``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..spikes import locate
from ..synapses import snap_to_grid
from .instants import InstantOrder, instant_order


@dataclass
class Events:
    """Every event of the layer, sorted by (step, element, time, arrival-before-spike)."""

    step: Tensor  # [E]
    elem: Tensor  # [E] b * N + i
    off: Tensor  # [E] offset in the step (s)
    kind: Tensor  # [E] 1 arrival, 2 spike (crossing), 3 spike fired by the arrival before it
    ref: Tensor  # [E] pair index (arrivals) or spike index (spikes)
    bounds: list[int]  # events of step n: [bounds[n], bounds[n + 1])


def arrival_pairs(t: Tensor, b: Tensor, j: Tensor, delay: Tensor | None, n_out: int,
                   dt: float, t_end: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(source event, target, batch, arrival time, kept) of every (event, target) pair."""
    n_ev = t.numel()
    src = torch.repeat_interleave(torch.arange(n_ev, device=t.device), n_out)
    tgt = torch.arange(n_out, device=t.device).repeat(n_ev)
    if delay is None:
        s = t[src]
    else:
        s = snap_to_grid(t[src] + delay[tgt, j[src]], dt)
    keep = s <= torch.tensor(t_end, dtype=s.dtype)
    return src[keep], tgt[keep], b[src][keep], s[keep], keep


def sort_events(step, elem, off, kind) -> Tensor:
    order = torch.argsort(kind, stable=True)
    for key in (off, elem, step):
        order = order[torch.argsort(key[order], stable=True)]
    return order


def event_table(setup: Any, arr_step, arr_elem, arr_off, sp_step, sp_elem, sp_off,
                 tol: float, order: InstantOrder | None = None) -> Events:
    n_arr = arr_step.numel()
    if order is not None:
        return ordered_table(setup, arr_step, arr_elem, arr_off, sp_step, sp_elem, sp_off,
                              order)
    step = torch.cat([arr_step, sp_step])
    elem = torch.cat([arr_elem, sp_elem])
    off = torch.cat([arr_off, sp_off])
    kind = torch.cat([torch.ones_like(arr_step), torch.full_like(sp_step, 2)])
    ref = torch.cat([torch.arange(n_arr, device=step.device),
                     torch.arange(sp_step.numel(), device=step.device)])
    order_ = sort_events(step, elem, off, kind)
    step, elem, off, kind, ref = (x[order_] for x in (step, elem, off, kind, ref))
    if kind.numel() > 1:
        # A spike within tol of an arrival of the same neuron was fired by that arrival's jump
        # (the engine logs it at the arrival's time; rounding may sort it either side).
        def near(i: Tensor, j: Tensor) -> Tensor:
            return ((elem[i] == elem[j]) & (step[i] == step[j])
                    & ((off[i] - off[j]).abs() <= tol))

        i = torch.arange(kind.numel() - 1, device=kind.device)
        swap = (kind[i] == 2) & (kind[i + 1] == 1) & near(i, i + 1)
        if bool(swap.any()):
            s = i[swap]
            perm = torch.arange(kind.numel(), device=kind.device)
            perm[s], perm[s + 1] = s + 1, s
            step, elem, off, kind, ref = (x[perm] for x in (step, elem, off, kind, ref))
        fired = torch.zeros_like(kind, dtype=torch.bool)
        fired[1:] = (kind[1:] == 2) & (kind[:-1] == 1) & near(i + 1, i)
        kind = torch.where(fired, torch.full_like(kind, 3), kind)
        off = torch.where(fired, torch.roll(off, 1), off)
    bounds = torch.searchsorted(step, torch.arange(setup.n_steps + 1, device=step.device))
    return Events(step=step, elem=elem, off=off, kind=kind, ref=ref, bounds=bounds.tolist())


def ordered_table(setup: Any, arr_step, arr_elem, arr_off, sp_step, sp_elem, sp_off,
                   order: InstantOrder) -> Events:
    """The event table with the events of one instant in causal order
    (:mod:`ctsnn.gradients.instants`): sorted by (step, element, offset, depth, kind); a spike
    fired by a jump takes its arrival's offset and depth and comes right after it."""
    n_arr = arr_step.numel()
    fired = order.fired_by >= 0
    by = order.fired_by.clamp_min(0)
    # one instant, one offset: a spike fired by a jump takes its arrival's, a zero-delay
    # arrival its spike's (both may differ by rounding; the sort must follow the depths)
    zero = order.sender >= 0
    src = order.sender.clamp_min(0)
    for _ in range(int(order.arr_depth.max()) + 1 if n_arr else 0):
        sp_new = torch.where(fired, arr_off[by], sp_off)
        arr_new = torch.where(zero, sp_new[src], arr_off) if sp_off.numel() else arr_off
        if torch.equal(arr_new, arr_off) and torch.equal(sp_new, sp_off):
            break
        arr_off, sp_off = arr_new, sp_new
    step = torch.cat([arr_step, sp_step])
    elem = torch.cat([arr_elem, sp_elem])
    off = torch.cat([arr_off, sp_off])
    depth = torch.cat([order.arr_depth, order.sp_depth])
    kind = torch.cat([torch.ones_like(arr_step), torch.where(fired, 3, 2).to(sp_step.dtype)])
    ref = torch.cat([torch.arange(n_arr, device=step.device),
                     torch.arange(sp_step.numel(), device=step.device)])
    perm = torch.argsort(kind, stable=True)
    for key in (depth, off, elem, step):
        perm = perm[torch.argsort(key[perm], stable=True)]
    step, elem, off, kind, ref = (x[perm] for x in (step, elem, off, kind, ref))
    bounds = torch.searchsorted(step, torch.arange(setup.n_steps + 1, device=step.device))
    return Events(step=step, elem=elem, off=off, kind=kind, ref=ref, bounds=bounds.tolist())


@dataclass
class Pairs:
    """Every (event, target) arrival of the layer, external pairs first, then recurrent ones
    (pair ``p`` is external iff ``p < n_ext``), and the layer's event table."""

    e_src: Tensor  # [n_ext] input event of each external pair
    e_tgt: Tensor  # [n_ext] its target neuron
    r_src: Tensor  # [P - n_ext] output spike of each recurrent pair
    r_tgt: Tensor  # [P - n_ext] its target neuron
    n_ext: int
    jump: Tensor  # [P] the jump each pair delivers (weight x amplitude)
    ev: Events
    r_in_step: Tensor | None = None  # [P - n_ext] arrives in the step of its sending spike
    ambiguous: dict[int, list[list[int]]] | None = None  # see ctsnn.gradients.instants


def build_pairs(setup: Any, t_in, v_in, b_in, j_in, weight, delay, rec_w, rec_d, t_out, b_out,
              n_out, forced: dict[int, int]) -> Pairs:
    """Pairs: external (input event, target) and recurrent (output spike, target), and the
    event table of their arrivals and the output spikes."""
    n, dt, dtype = setup.model.n, setup.dt, weight.dtype
    t_end = float(torch.tensor(setup.n_steps, dtype=torch.float64) * dt)
    tol = 256 * torch.finfo(dtype).eps * max(t_end, dt)
    ext = arrival_pairs(t_in, b_in, j_in, delay if setup.has_delay else None, n, dt, t_end)
    e_src, e_tgt, e_b, e_s, _ = ext
    e_x = weight[e_tgt, j_in[e_src]] * v_in[e_src]
    if setup.recurrent:
        r_src, r_tgt, r_b, r_s, _ = arrival_pairs(t_out, b_out, n_out, rec_d, n, dt, t_end)
        r_x = rec_w[r_tgt, n_out[r_src]]
    else:
        r_src = r_tgt = r_b = torch.zeros(0, dtype=torch.long, device=t_in.device)
        r_s = r_x = t_in.new_zeros(0)
    s_all = torch.cat([e_s, r_s]).to(dtype)
    x_all = torch.cat([e_x, r_x]).to(dtype)
    elem_all = torch.cat([e_b * n + e_tgt, r_b * n + r_tgt])
    a_step, a_off = locate(s_all, dt)
    sp_step, sp_off = locate(t_out.to(dtype), dt)
    sp_elem = b_out * n + n_out
    n_ext = e_s.numel()
    r_in_step = order = None
    if setup.recurrent:
        # recurrent arrivals inside the step of their spike (sub-step and zero delays)
        r_in_step = a_step[n_ext:] == sp_step[r_src]
        zero = r_in_step & ((a_off[n_ext:] - sp_off[r_src]).abs() <= tol)
        if bool(zero.any()):  # zero delays: events sharing an instant, in causal order
            sender = torch.cat([torch.full_like(e_src, -1), torch.where(zero, r_src, -1)])
            order = instant_order(a_step, elem_all, a_off, sender, x_all, sp_step, sp_elem,
                                  sp_off, tol, forced)
    ev = event_table(setup, a_step, elem_all, a_off, sp_step, sp_elem, sp_off, tol, order)
    return Pairs(e_src=e_src, e_tgt=e_tgt, r_src=r_src, r_tgt=r_tgt, n_ext=n_ext,
                  jump=x_all, ev=ev, r_in_step=r_in_step,
                  ambiguous=None if order is None else order.ambiguous)



__all__ = ["Events", "Pairs", "arrival_pairs", "build_pairs", "event_table"]
