"""Causal order of the events that share an instant (zero-delay recurrent arrivals).

Used by the generic adjoint (:mod:`ctsnn.gradients.adjoint`) when a recurrent arrival lands at
the very instant of the spike that sent it (delay 0). The forward
(:mod:`ctsnn.engine.substep`) applies the events of one instant in causal waves: a threshold
crossing first, then the step's own arrivals, then the arrivals caused by spikes at that
instant, then those caused by the spikes these fire, and so on; a neuron fires at most once per
instant, at the first group of jumps (same instant and depth, summed) that carries it over
threshold; it is then ordered after every jump of that group. The backward needs that order per
neuron and, for a spike fired by a jump, the arrival that fired it.

Depth: an arrival from the outside, or sent by a spike at another instant, has depth 0; a
zero-delay arrival has the depth of its sending spike plus one; a spike fired by a jump has the
depth of the arrival that fired it, a crossing has depth ``-1`` (before every jump). Depths are
found level by level (breadth first) from the instants' roots. A spike whose only candidate
arrivals at its instant come from spikes not resolved yet (e.g. A crosses, its zero-delay
arrival fires B, B's zero-delay arrival reaches A at the same instant) is undecided from the
event times alone: it is provisionally a crossing, and :func:`instant_order` is asked again
with the spikes the caller found not to be crossings (the state before the instant's jumps is
not at threshold), see :attr:`InstantOrder.undecided`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class InstantOrder:
    """Sort keys of every event at its instant.

    ``arr_depth [A]`` and ``sp_depth [S]`` (long): the depth of each arrival and spike (see the
    module docstring); ``fired_by [S]``: the arrival that fired each spike, ``-1`` for a
    crossing; ``sender [A]``: as ``arr_sender`` of :func:`instant_order`. ``ambiguous``:
    spikes (not in ``forced``) whose firing arrival the event times do not tell (several
    candidate jumps at their instant, or a cascade with no evident root), each with its
    candidate arrivals grouped by depth in the order the forward applies them (the forward
    sums the jumps of one group and tests the threshold once); the caller decides them from
    the state and asks again with ``forced``.
    """

    arr_depth: Tensor
    sp_depth: Tensor
    fired_by: Tensor
    sender: Tensor  # [A] the spike that sent each zero-delay arrival, -1 for the others
    ambiguous: dict[int, list[list[int]]] = field(default_factory=dict)


def instant_order(arr_step: Tensor, arr_elem: Tensor, arr_off: Tensor, arr_sender: Tensor,
                  arr_jump: Tensor, sp_step: Tensor, sp_elem: Tensor, sp_off: Tensor, tol: float,
                  forced: dict[int, int] | None = None) -> InstantOrder:
    """Depths and firing arrivals (see the module docstring).

    Args:
        arr_step, arr_elem, arr_off: ``[A]`` step, element (``b * N + i``) and offset (s) of
            every arrival.
        arr_sender: ``[A]`` the output spike that sent each zero-delay arrival (at its own
            instant), ``-1`` for every other arrival.
        arr_jump: ``[A]`` the jump of each arrival (a zero jump fires nothing).
        sp_step, sp_elem, sp_off: ``[S]`` the same for the output spikes.
        tol: events of one element closer than ``tol`` (s) share an instant.
        forced: spike -> its firing arrival (``-1``: a crossing), decided by the caller.
    """
    forced = forced or {}
    a_step, a_elem, a_off = arr_step.tolist(), arr_elem.tolist(), arr_off.detach().tolist()
    sender, jump = arr_sender.tolist(), (arr_jump.detach() != 0).tolist()
    s_step, s_elem, s_off = sp_step.tolist(), sp_elem.tolist(), sp_off.detach().tolist()
    by_key: dict[tuple[int, int], list[int]] = {}
    for a, key in enumerate(zip(a_step, a_elem, strict=True)):
        by_key.setdefault(key, []).append(a)
    # candidate firing arrivals of each spike: its element's non-zero jumps at its instant,
    # not sent by itself (its own zero-delay arrival comes after it)
    cands = [[a for a in by_key.get((s_step[k], s_elem[k]), ())
              if jump[a] and abs(a_off[a] - s_off[k]) <= tol and sender[a] != k]
             for k in range(len(s_step))]
    sent: dict[int, list[int]] = {}
    for a, k in enumerate(sender):
        if k >= 0:
            sent.setdefault(k, []).append(a)
    arr_depth: list[int | None] = [None if k >= 0 else 0 for k in sender]
    sp_depth = [0] * len(s_step)
    fired_by = [-1] * len(s_step)
    unsure: set[int] = set()
    pending = set(range(len(s_step)))

    def resolve(k: int, depth: int, by: int) -> None:
        sp_depth[k], fired_by[k] = depth, by
        pending.discard(k)
        for a in sent.get(k, ()):
            arr_depth[a] = max(depth, 0) + 1

    for k in list(pending):  # crossings: no jump at their instant, or decided so
        if forced.get(k, 0 if cands[k] else -1) == -1:
            resolve(k, -1, -1)
    while pending:
        best: dict[int, tuple[int, int]] = {}
        for k in pending:
            if k in forced:
                a = forced[k]
                if arr_depth[a] is not None:
                    best[k] = (arr_depth[a], a)
                continue
            known = [(arr_depth[a], a) for a in cands[k] if arr_depth[a] is not None]
            if known:
                # the last arrival of the lowest depth in table order, a guess when there are
                # several candidates (then checked against the state by the caller)
                low = min(d for d, _ in known)
                best[k] = (low, max(a for d, a in known if d == low))
        if best:
            level = min(d for d, _ in best.values())
            for k, (d, a) in best.items():
                if d == level:
                    resolve(k, d, a)
                    if len(cands[k]) > 1 and k not in forced:
                        unsure.add(k)
            continue
        # stuck: every candidate comes from an unresolved spike: provisional crossings
        free = [k for k in sorted(pending) if k not in forced]
        if not free:
            raise RuntimeError("gradient='adjoint': cannot order the events of a zero-delay "
                               "cascade; use gradient='surrogate'")
        for k in free:
            resolve(k, -1, -1)
            unsure.add(k)
    depth_of = [int(d) for d in arr_depth]
    ambiguous = {}
    for k in sorted(unsure):  # candidates grouped by depth: the forward sums each group
        groups: dict[int, list[int]] = {}
        for a in sorted(cands[k]):
            groups.setdefault(depth_of[a], []).append(a)
        ambiguous[k] = [groups[d] for d in sorted(groups)]
    long = dict(dtype=torch.long, device=arr_step.device)
    return InstantOrder(arr_depth=torch.tensor(depth_of, **long),
                        sp_depth=torch.tensor(sp_depth, **long),
                        fired_by=torch.tensor(fired_by, **long), sender=arr_sender,
                        ambiguous=ambiguous)


__all__ = ["InstantOrder", "instant_order"]
