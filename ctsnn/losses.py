"""Readouts and losses: what a network reports, and how it is scored.

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
* :func:`time_invariant_mse` — first-spike-time loss of EventProp's Yin-Yang task (SEEDS C1.5);
  :func:`spike_count_penalty` — the value of the adjoint's heuristic spike-count regulariser.

Readouts of ``simulate(..., readout=...)`` (:class:`Readout`, :func:`as_readout`), ``[B, N]``;
``simulate`` takes a name or a callable:

* ``"first_spike"`` — each neuron's first spike time (s), the end of the grid where silent;
* ``"sum"`` — ``(1/dt) ∫_0^T v dt``, the time-summed membrane voltage (on the grid:
  ``Σ_n v_n``);
* ``"avg_exp"`` — ``(1/T) ∫_0^T e^{-t/T} v dt`` (mlGeNN's ``avg_var_exp_weight``; on the grid:
  ``(1/N_T) Σ_n e^{-t_n/T} v(t_n)``);
* ``"max"`` — ``max_t v(t)`` (exact with the adjoint on LIF-family readouts; the maximum over
  grid points in discrete time);
* a callable ``l(t, state) -> [B, N]`` — the integral ``∫_0^T l dt`` (``t`` in s).

``T = n_steps dt`` is the simulated interval; ``v`` is the readout neurons' membrane voltage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_tensor
from .spikes import Spikes

Integrand = Callable[[Tensor, tuple], Tensor]

NAMES = ("first_spike", "sum", "avg_exp", "max")


@dataclass(frozen=True)
class Readout:
    """A readout (see the module docstring). ``kind`` is one of :data:`NAMES` or
    ``"integral"`` (then ``integrand`` is the callable)."""

    kind: str
    integrand: Integrand | None = None

    def integrand_on(self, dt: float, n_steps: int) -> Integrand | None:
        """The integrand ``l(t, state)`` of an integral readout on a grid, else ``None``."""
        if self.kind == "integral":
            return self.integrand
        if self.kind == "sum":
            return lambda t, state: state.v / dt
        if self.kind == "avg_exp":
            t_end = n_steps * dt
            return lambda t, state: torch.exp(-t / t_end) * state.v / t_end
        return None


def as_readout(spec: str | Integrand | Readout | None) -> Readout | None:
    """``None``, a name of :data:`NAMES`, a callable integrand or a :class:`Readout`."""
    if spec is None or isinstance(spec, Readout):
        return spec
    if isinstance(spec, str):
        if spec not in NAMES:
            raise ValueError(f"unknown readout {spec!r}; expected one of {NAMES} or a callable "
                             "integrand l(t, state)")
        return Readout(spec)
    if callable(spec):
        return Readout("integral", spec)
    raise TypeError(f"readout must be a name {NAMES}, a callable l(t, state) or None, got "
                    f"{type(spec).__name__}")


def check_labels(name: str, labels: object, n_classes: int, *,
                 ignore_index: int | None = None) -> Tensor:
    """Check class indices ``labels [B]``: an integer tensor with every value in
    ``[0, n_classes)``, or equal to ``ignore_index`` when one is given (which must itself lie
    outside ``[0, n_classes)``). The error names the first bad label and its index."""
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class indices, got "
                        f"{type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class indices (int64), got dtype "
                        f"{labels.dtype}")
    if ignore_index is not None:
        if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
            raise TypeError(f"ignore_index must be an int or None, got "
                            f"{type(ignore_index).__name__}")
        if 0 <= ignore_index < n_classes:
            raise ValueError(f"ignore_index = {ignore_index} is a real class (classes are "
                             f"[0, {n_classes})); choose a value outside, e.g. -100")
    bad = (labels < 0) | (labels >= n_classes)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0].tolist())
        where = idx[0] if len(idx) == 1 else list(idx)
        extra = "" if ignore_index is None else f" (or ignore_index = {ignore_index})"
        raise ValueError(f"{name}[{where}] = {int(labels[idx])} is not a class index: labels must "
                         f"be in [0, {n_classes}){extra}; to skip samples pass ignore_index=")
    return labels


def _check_readout(name: str, output: Tensor, target: Tensor | None = None,
                   ignore_index: int | None = None) -> None:
    check_tensor(name, output, ndim=3, floating=True)
    if target is None:
        return
    if isinstance(target, Tensor) and target.shape != output.shape[1:2]:
        raise ValueError(f"target must have shape [B] = [{output.shape[1]}] (class indices), got "
                         f"{list(target.shape)}; {name} is time-first [T, B, C]")
    check_labels("target", target, output.shape[2], ignore_index=ignore_index)


def _cross_entropy(scores: Tensor, target: Tensor, ignore_index: int | None) -> Tensor:
    # F.cross_entropy's own default ignore_index (-100) never applies: labels were checked.
    if ignore_index is None:
        return F.cross_entropy(scores, target)
    return F.cross_entropy(scores, target, ignore_index=ignore_index)


def summed_softmax_cross_entropy(output: Tensor, target: Tensor, *,
                                 ignore_index: int | None = None) -> Tensor:
    """Cross-entropy of the time-summed softmax: ``CE(sum_t softmax(output[t]), target)``.

    ``F.cross_entropy`` applies a log-softmax to the summed probabilities ``[B, C]`` (values in
    ``[0, T]``): that second softmax is what the DCLS and DelRec reference codes compute.

    Args:
        output: readout ``[T, B, C]`` (e.g. a non-spiking membrane trace over all steps).
        target: class indices ``[B]`` (int64), each in ``[0, C)``; anything else (e.g. -100) is
            an error naming the label and its index.
        ignore_index: opt in to skipping samples: targets equal to it (outside ``[0, C)``) are
            left out of the loss and of the mean.

    Returns:
        The mean loss over the (kept) batch (a scalar).
    """
    _check_readout("output", output, target, ignore_index)
    return _cross_entropy(F.softmax(output, dim=-1).sum(0), target, ignore_index)


def summed_softmax_prediction(output: Tensor) -> Tensor:
    """Predicted classes ``[B]``: ``argmax_c sum_t softmax(output[t])`` of a ``[T, B, C]``
    readout (the decision matching :func:`summed_softmax_cross_entropy`)."""
    _check_readout("output", output)
    return F.softmax(output, dim=-1).sum(0).argmax(-1)


def summed_logits_cross_entropy(logits: Tensor, target: Tensor, *,
                                ignore_index: int | None = None) -> Tensor:
    """Cross-entropy of the time-summed logits: ``CE(sum_t logits[t], target)``.

    Args:
        logits: per-step logits ``[T, B, C]``.
        target: class indices ``[B]`` (int64), each in ``[0, C)`` (else an error naming the
            label and its index).
        ignore_index: opt in to skipping samples whose target equals it (outside ``[0, C)``).

    Returns:
        The mean loss over the (kept) batch (a scalar).
    """
    _check_readout("logits", logits, target, ignore_index)
    return _cross_entropy(logits.sum(0), target, ignore_index)


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
    "check_labels",
    "mean_square_spike_penalty",
    "summed_logits_cross_entropy",
    "summed_logits_prediction",
    "summed_softmax_cross_entropy",
    "summed_softmax_prediction",
]


def time_invariant_mse(first_times: Tensor, labels: Tensor, delta: float) -> Tensor:
    """Time-invariant MSE on first-spike times (SEEDS C1.5, Göltz et al.), batch mean:

    ``L = 1/2 Σ_{i≠c} (t_i - t_c - delta)^2`` with ``c`` the label; times and ``delta`` in s.

    Args:
        first_times: ``[B, N]`` (``Spikes.first_times()`` or ``readout="first_spike"``).
        labels: ``[B]`` class indices.
        delta: target lag of the wrong classes behind the right one (s).
    """
    check_tensor("first_times", first_times, ndim=2, floating=True)
    check_labels("labels", labels, first_times.shape[1])
    t_c = first_times.gather(1, labels.reshape(-1, 1))
    diff = first_times - t_c - delta
    mask = torch.ones_like(first_times, dtype=torch.bool)
    mask.scatter_(1, labels.reshape(-1, 1), False)
    return 0.5 * (diff.square() * mask).sum(1).mean()


def spike_count_penalty(spikes: Spikes, strength: float, target: float) -> Tensor:
    """The value ``strength/2 Σ_n (mean count_n - target)^2`` whose (heuristic) gradient the
    layers' ``spike_reg=(strength, target)`` injects; for logging (no gradient)."""
    counts = torch.bincount(spikes.units, minlength=spikes.n_units).to(spikes.times.dtype)
    mean = counts / max(spikes.batch_size, 1)
    return 0.5 * strength * (mean - target).square().sum().detach()
