"""Readouts and losses on time-first outputs.

Every function takes an explicit time dimension: network outputs are ``[T, B, C]`` (``T`` time
steps, ``B`` samples, ``C`` classes or units), targets are class indices ``[B]`` (int64). The
outputs are dimensionless (membrane potentials in threshold units, logits, spike counts), so the
losses are dimensionless too.

* :func:`summed_softmax_cross_entropy` / :func:`summed_softmax_prediction` — the readout of DCLS
  (SEEDS A1.7) and of DelRec on SHD (B1.7): the per-step softmax summed over time,
  ``y_hat = sum_t softmax(v[t])``, scored by a cross-entropy (which applies a second
  log-softmax to the summed probabilities, as both reference codes do).
* :func:`summed_logits_cross_entropy` / :func:`summed_logits_prediction` — DelRec on SSC /
  PS-MNIST: per-step logits summed over time, ``CE(sum_t z[t], y)``.
* :func:`mean_square_spike_penalty` — the spike-count regulariser of DelRec's ablation,
  ``lambda sum_l sum S_l^2 / (2 T B N_l)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from ._checks import check_tensor


def _check_readout(name: str, output: Tensor, target: Tensor | None = None) -> None:
    check_tensor(name, output, ndim=3, floating=True)
    if target is not None and target.shape != output.shape[1:2]:
        raise ValueError(f"target must have shape [B] = [{output.shape[1]}] (class indices), got "
                         f"{list(target.shape)}; {name} is time-first [T, B, C]")


def summed_softmax_cross_entropy(output: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy of the time-summed softmax: ``CE(sum_t softmax(output[t]), target)``.

    ``F.cross_entropy`` applies a log-softmax to the summed probabilities ``[B, C]`` (values in
    ``[0, T]``): that second softmax is what the DCLS and DelRec reference codes compute.

    Args:
        output: readout ``[T, B, C]`` (e.g. a non-spiking membrane trace over all steps).
        target: class indices ``[B]`` (int64).

    Returns:
        The mean loss over the batch (a scalar).
    """
    _check_readout("output", output, target)
    return F.cross_entropy(F.softmax(output, dim=-1).sum(0), target)


def summed_softmax_prediction(output: Tensor) -> Tensor:
    """Predicted classes ``[B]``: ``argmax_c sum_t softmax(output[t])`` of a ``[T, B, C]``
    readout (the decision matching :func:`summed_softmax_cross_entropy`)."""
    _check_readout("output", output)
    return F.softmax(output, dim=-1).sum(0).argmax(-1)


def summed_logits_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy of the time-summed logits: ``CE(sum_t logits[t], target)``.

    Args:
        logits: per-step logits ``[T, B, C]``.
        target: class indices ``[B]`` (int64).

    Returns:
        The mean loss over the batch (a scalar).
    """
    _check_readout("logits", logits, target)
    return F.cross_entropy(logits.sum(0), target)


def summed_logits_prediction(logits: Tensor) -> Tensor:
    """Predicted classes ``[B]``: ``argmax_c sum_t logits[t]`` of ``[T, B, C]`` logits."""
    _check_readout("logits", logits)
    return logits.sum(0).argmax(-1)


def mean_square_spike_penalty(spikes: Tensor | Sequence[Tensor], weight: float) -> Tensor:
    """Spike-count penalty ``weight * sum_l sum S_l^2 / (2 T B N_l)`` (DelRec's ablation).

    Args:
        spikes: one ``[T, B, N]`` spike tensor, or one per layer (each normalised by its own
            size ``T B N_l``).
        weight: ``lambda`` (DelRec sweeps 1e-4 ... 10).

    Returns:
        The penalty (a scalar), to be added to the task loss.
    """
    if isinstance(spikes, Tensor):
        spikes = [spikes]
    if not spikes:
        raise ValueError("mean_square_spike_penalty needs at least one spike tensor")
    total = None
    for s in spikes:
        check_tensor("spikes", s, ndim=3, floating=True)
        term = s.pow(2).sum() / (2 * s.numel())
        total = term if total is None else total + term
    return weight * total


__all__ = [
    "mean_square_spike_penalty",
    "summed_logits_cross_entropy",
    "summed_logits_prediction",
    "summed_softmax_cross_entropy",
    "summed_softmax_prediction",
]
