"""Counting and grouping a model's parameters (weights, normalisation, delays)."""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn

# Normalisation layers whose affine parameters are usually trained without weight decay.
NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm,
)


def count_parameters(model: nn.Module, *, active_only: bool = False) -> int:
    """Number of trained scalars of ``model``, as the papers report it.

    A module with an ``n_parameters(active_only=...)`` method reports its own size (a
    grid-kernel :class:`~ctsnn.synapses.Dense` counts ``2 n_out n_in`` weights and delays,
    learnable or not, plus its bias: DCLS counts delay positions even when they are fixed; with
    ``active_only`` only the synapses kept by a fan-in mask). Every other parameter counts when
    it requires a gradient (weights, biases, BatchNorm ``gamma``/``beta``, recurrent weights and
    delays, DelRec's ``p_spread``). Buffers (kernel widths, BatchNorm running statistics, neuron
    constants) never count.

    DCLS: SHD 2 x 256 214,016; SSC 2 x 512 705,536; SSC 3 x 512 1,230,848. DelRec: SHD 173,844;
    SSC 374,819; PS-MNIST 156,154.
    """
    total, seen = 0, set()
    for m in model.modules():
        own = getattr(m, "n_parameters", None)
        if callable(own) and not any(id(p) in seen for p in m.parameters()):
            total += own(active_only=active_only)
            seen.update(id(p) for p in m.parameters())
    return total + sum(p.numel() for p in model.parameters()
                       if id(p) not in seen and p.requires_grad)


def weight_groups(model: nn.Module, delays: Iterable[Tensor], *, weight_decay: float,
                  norm_weight_decay: float = 0.0) -> list[dict]:
    """Optimiser parameter groups for every learnable parameter of ``model`` except ``delays``.

    Returns up to two groups, in this order, empty ones left out: the parameters of
    normalisation layers (:data:`NORM_LAYERS`) get ``norm_weight_decay``, all others
    ``weight_decay``; within a group the order is that of ``model.parameters()``.
    """
    skip = {id(p) for p in delays}
    norm = {id(p) for m in model.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters()}
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in skip]
    plain = [p for p in params if id(p) not in norm]
    normed = [p for p in params if id(p) in norm]
    return [{"params": ps, "weight_decay": wd}
            for ps, wd in ((plain, weight_decay), (normed, norm_weight_decay)) if ps]


__all__ = ["NORM_LAYERS", "count_parameters", "weight_groups"]
