"""Who fired whom at an instant of a zero-delay cascade, decided from the state.

Used by the generic adjoint (:mod:`ctsnn.gradients.adjoint`) for the instants whose order the
event times do not tell (:attr:`ctsnn.gradients.instants.InstantOrder.ambiguous`). The
forward's rule (:mod:`ctsnn.engine.substep`) is replayed for every neuron that spikes at the
instant, jointly: from each neuron's state just before the instant, a threshold crossing first
(the state is at threshold up to the root finder's tolerance), then the summed jump of each
causal wave (depth 0: the jumps whose cause is not at the instant; wave ``k``: the zero-delay
arrivals of the spikes of depth ``k - 1``, a crossing counting as depth 0); a neuron fires at
the first wave that takes its threshold function from below 0 to 0 or above, and at most once
per instant. A neuron that starts the instant above threshold (it ended an earlier instant
there) did not cross. Depths come out of the replay itself, so a spike's firing wave is known
exactly, including in zero-delay loops whose depths the event times cannot give.

The replayed state of a neuron depends on its own events only: it is exact when every earlier
spike of that neuron is decided, which the caller ensures (:func:`decidable`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..spikes import locate


def decidable(ambiguous: list[int], t_out: Tensor, b_out: Tensor, n_out: Tensor,
              tol: float) -> list[int]:
    """One spike per instant that can be decided now: no neuron spiking at that instant has an
    undecided (ambiguous) spike at an earlier instant. ``t_out, b_out, n_out [S]``: time (s),
    batch and neuron of every output spike; ``ambiguous``: the undecided spikes."""
    times = t_out.detach()
    blocked: set[tuple[int, int]] = set()
    covered: set[int] = set()
    chosen = []
    for k in sorted(ambiguous, key=lambda k: float(times[k])):
        if k in covered:
            continue
        same = ((b_out == b_out[k]) & ((times - times[k]).abs() <= tol)).nonzero()[:, 0]
        who = {(int(b_out[j]), int(n_out[j])) for j in same.tolist()}
        if not who & blocked:
            chosen.append(k)
        covered.update(same.tolist())
        blocked |= who
    return chosen


@torch.no_grad()
def firing_arrivals(back: Any, spikes: list[int]) -> dict[int, int]:
    """Every spike at the instants of ``spikes`` -> the arrival whose jump fired it (``-1``: a
    threshold crossing); any arrival of the firing wave (they share instant and depth, so the
    event table orders the spike the same). ``back``: the adjoint's reverse pass (its replay,
    event table and settings). Raises when the replay does not give the forward's spikes."""
    setup, dtype = back.setup, back.dtype
    eps = torch.finfo(dtype).eps
    tol = 256 * eps * back.dt * setup.n_steps
    xtol = setup.xtol if setup.xtol is not None else 64 * eps * back.dt
    steps, offs = locate(back.t_out[spikes].to(dtype), back.dt)
    where = list(zip(spikes, steps.tolist(), offs.tolist(), strict=True))
    every, out = setup.checkpoint_every, {}
    for n0 in sorted({n - n % every for _, n, _ in where}):
        reps = back.replay_block(n0, min(n0 + every, setup.n_steps))
        for k, n, off in where:
            if n - n0 in range(len(reps)):
                out.update(_instant(back, reps[n - n0], k, off, tol, xtol))
    return out


def _state_before(back: Any, rep: Any, b: int, first: Tensor, xtol: float
                  ) -> tuple[tuple, Tensor]:
    """The state of batch element ``b`` just before its events of rank ``first [N]`` and the
    root finder's band around the threshold there (``4 xtol |dg/dt|``), ``[B, N]``."""
    lay = rep.lay
    r0 = torch.zeros(lay.off.shape[1:], dtype=torch.long, device=first.device)
    r0[b] = first

    def at(x: Tensor, idx: Tensor) -> Tensor:
        return x.gather(0, idx[None])[0]

    start = tuple(at(torch.stack(v), r0) for v in zip(*rep.starts, strict=True))
    a = torch.where(r0 == 0, torch.zeros_like(lay.off[0]), at(lay.off, (r0 - 1).clamp_min(0)))
    with torch.enable_grad():
        h = (at(lay.off, r0) - a).requires_grad_()
        x = rep.flow(back.model.State(*start), a, h, None)
        g = back.model.threshold(x)
        slope = torch.autograd.grad(g.sum(), h, allow_unused=True)[0]
    band = torch.zeros_like(a) if slope is None else 4 * xtol * slope.abs()
    return back.model.State(*(v.detach() for v in x)), band


def _instant(back: Any, rep: Any, k: int, off: float, tol: float, xtol: float
             ) -> dict[int, int]:
    """The forward's waves at the instant of spike ``k`` (module docstring)."""
    model, lay, pairs = back.model, rep.lay, back.pairs
    hit = ((lay.ref == k) & (lay.kind >= 2)).nonzero()
    if not len(hit):
        return {}
    b = int(hit[0, 1])
    here = (lay.kind[:, b] != 0) & ((lay.off[:, b] - off).abs() <= tol)  # [M, N]
    first = torch.where(here.any(0), here.to(torch.int8).argmax(0), 0)
    x, band = _state_before(back, rep, b, first, xtol)
    spiker: dict[int, int] = {}  # neuron -> its spike at the instant
    arrivals: list[tuple[int, int]] = []  # (neuron, arrival)
    for r, i in here.nonzero().tolist():
        if int(lay.kind[r, b, i]) >= 2:
            spiker[i] = int(lay.ref[r, b, i])
        else:
            arrivals.append((i, int(lay.ref[r, b, i])))
    sender = {}  # zero-delay arrival -> its spike (at this instant)
    at_instant = set(spiker.values())
    for _, p in arrivals:
        if p >= pairs.n_ext and int(pairs.r_src[p - pairs.n_ext]) in at_instant:
            sender[p] = int(pairs.r_src[p - pairs.n_ext])
    depth: dict[int, int] = {}  # spike -> depth (-1: crossing)
    out: dict[int, int] = {}
    fired = torch.zeros_like(band, dtype=torch.bool)
    g = model.threshold(x)
    for i, s in spiker.items():
        if float(g[b, i].abs()) <= float(band[b, i]):
            depth[s], out[s] = -1, -1
            fired[b, i] = True
    x = model.State(*(torch.where(fired, a, c) for a, c in
                      zip(model.reset(x), x, strict=True)))
    wave = 0
    while True:
        group = [(i, p) for i, p in arrivals
                 if (p not in sender if wave == 0 else
                     sender.get(p) in depth and max(depth[sender[p]], 0) + 1 == wave)]
        if wave > 0 and not group:  # the spikes of depth wave - 1 sent nothing: done
            break
        value = torch.zeros_like(band)
        for i, p in group:
            value[b, i] += pairs.jump[p]
        below = model.threshold(x) < 0
        x = model.receive(x, value)
        fire = below & (model.threshold(x) >= 0) & ~fired
        new = torch.zeros_like(fired)
        for i, p in group:
            s = spiker.get(i)
            if s is not None and s not in out and bool(fire[b, i]):
                depth[s], out[s] = wave, p
                new[b, i] = True
        fired |= new
        x = model.State(*(torch.where(new, a, c) for a, c in
                          zip(model.reset(x), x, strict=True)))
        wave += 1
    if len(out) != len(spiker):
        raise RuntimeError("gradient='adjoint': the replay of a zero-delay cascade does not "
                           "give the forward's spikes; use gradient='surrogate'")
    return out


__all__ = ["decidable", "firing_arrivals"]
