"""What the trainer measures: loss/prediction heads, spikes per layer, synaptic operations.

**Heads.** A loss maps the model's output and the targets ``[B]`` to a scalar (batch mean); a
prediction maps the output to classes ``[B]``. :data:`HEADS` names the library's pairs:
``"cross_entropy"`` (``[B, C]`` logits), ``"summed_softmax"`` (``[T, B, C]``, DCLS/DelRec
membrane readout) and ``"summed_logits"`` (``[T, B, C]`` per-step logits, DelRec SSC/psMNIST).
:func:`resolve_heads` picks them for a model (its own ``loss``/``predict`` methods when it has
them, e.g. :class:`~ctsnn.papers.delrec.DelRecNet`).

**Spikes and synaptic operations** (:class:`SpikeMonitor`). Forward hooks on every
:class:`ctsnn.Layer` of the model record, per forward pass:

* ``spikes/<layer>``: the number of output spikes of the layer;
* synaptic operations (SynOps): every event that reaches a synapse costs one operation per
  outgoing connection, i.e. ``sum_j n_j * fanout_j`` over the layer's inputs ``j`` (``n_j``:
  events of input channel ``j``; a binned count input counts each spike, a real-valued input
  counts its magnitude) with ``fanout_j`` the number of nonzero weights (fan-in masks
  respected) leaving ``j``, plus the same for the recurrent connection with the layer's own
  spikes. Synapses outside a ``Layer`` (a readout applied with ``Dense.jumps``) are not seen.

The trainer reports both per sample (divided by the number of samples).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..engine import SimulationResult
from ..losses import (
    mean_square_spike_penalty,
    summed_logits_cross_entropy,
    summed_logits_prediction,
    summed_softmax_cross_entropy,
    summed_softmax_prediction,
)
from ..network import Layer, observing
from ..spikes import Spikes

LossFn = Callable[[Any, Tensor], Tensor]
PredictFn = Callable[[Any], Tensor]


def logits_prediction(logits: Tensor) -> Tensor:
    """Classes ``[B]`` from ``[B, C]`` logits (argmax)."""
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        shape = list(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"the default prediction takes [B, C] logits, got {shape}; for a "
                         "time-resolved [T, B, C] output pass loss_fn='summed_softmax' or "
                         "'summed_logits' (or your own loss_fn and predict_fn)")
    return logits.argmax(-1)


def logits_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy of ``[B, C]`` logits against class indices ``[B]`` (batch mean)."""
    logits_prediction(logits)  # shape check with the helpful message
    return F.cross_entropy(logits, target)


#: Named (loss, prediction) pairs.
HEADS: dict[str, tuple[LossFn, PredictFn]] = {
    "cross_entropy": (logits_cross_entropy, logits_prediction),
    "summed_softmax": (summed_softmax_cross_entropy, summed_softmax_prediction),
    "summed_logits": (summed_logits_cross_entropy, summed_logits_prediction),
}


def resolve_heads(model: nn.Module, loss_fn: LossFn | str | None,
                  predict_fn: PredictFn | str | None) -> tuple[LossFn, PredictFn]:
    """The loss and prediction functions to use for ``model``.

    A name from :data:`HEADS` gives both (``predict_fn`` must then be ``None`` or the same
    name). Without ``loss_fn``: the model's ``loss``/``predict`` methods if it has both, else
    ``"cross_entropy"``. A callable ``loss_fn`` without ``predict_fn`` uses the model's
    ``predict`` or the argmax of ``[B, C]`` logits.
    """
    for name, value in (("loss_fn", loss_fn), ("predict_fn", predict_fn)):
        if isinstance(value, str) and value not in HEADS:
            raise ValueError(f"unknown {name} {value!r}; expected one of {sorted(HEADS)} or a "
                             "callable")
        if value is not None and not isinstance(value, str) and not callable(value):
            raise TypeError(f"{name} must be a callable or one of {sorted(HEADS)}, got "
                            f"{type(value).__name__}")
    own_loss, own_predict = getattr(model, "loss", None), getattr(model, "predict", None)
    if isinstance(loss_fn, str):
        if predict_fn is not None and predict_fn != loss_fn:
            raise ValueError(f"loss_fn={loss_fn!r} comes with its own prediction; "
                             f"predict_fn={predict_fn!r} conflicts with it")
        return HEADS[loss_fn]
    if loss_fn is None:
        if callable(own_loss) and callable(own_predict) and predict_fn is None:
            return own_loss, own_predict
        loss_fn = HEADS["cross_entropy"][0]
    if isinstance(predict_fn, str):
        return loss_fn, HEADS[predict_fn][1]
    if predict_fn is None:
        predict_fn = own_predict if callable(own_predict) else logits_prediction
    return loss_fn, predict_fn


# ----------------------------------------------------------------------------------------------
# spikes and synaptic operations
# ----------------------------------------------------------------------------------------------
def _weight_matrix(module: nn.Module | None) -> Tensor | None:
    """The first 2-D (effective) weight found in ``module`` or its children."""
    if module is None:
        return None
    for m in module.modules():
        w = getattr(m, "effective_weight", None)
        if callable(w):
            w = w()
        if not isinstance(w, Tensor):
            w = getattr(m, "weight", None)
        if isinstance(w, Tensor) and w.dim() == 2:
            return w
    return None


def fan_out(module: nn.Module | None) -> Tensor | None:
    """Outgoing connections per input channel ``[N_in]`` (nonzero weights of each column of
    the ``[N_out, N_in]`` weight), or ``None`` when no 2-D weight is found."""
    w = _weight_matrix(module)
    return None if w is None else (w.detach() != 0).sum(0).to(torch.float64)


def unit_events(x: Any) -> Tensor | None:
    """Events per channel ``[N]`` of a layer input or output (summed over time and batch)."""
    if isinstance(x, Spikes):
        return x.raster(torch.float64).detach().sum((0, 1))
    if isinstance(x, Tensor) and x.dim() == 3:
        return x.detach().abs().to(torch.float64).sum((0, 1))
    return None


class SpikeMonitor:
    """Counts spikes and synaptic operations of every :class:`ctsnn.Layer` in a model.

    Use as a context manager around forward passes: every :func:`ctsnn.simulate` inside it
    that runs the model's layers is counted, whether through ``Layer.forward`` or a model that
    calls ``simulate(layers, x)`` itself; :attr:`spikes` (``{layer name: count}``)
    and :attr:`synops` accumulate until :meth:`reset`. With ``keep_rasters`` the layers'
    output rasters (with their gradient) of the last forward pass are kept in :attr:`rasters`
    for :meth:`penalty`.
    """

    def __init__(self, model: nn.Module, *, keep_rasters: bool = False) -> None:
        self.layers = [(name or "layer", m) for name, m in model.named_modules()
                       if isinstance(m, Layer)]
        self.keep_rasters = keep_rasters
        self.rasters: list[Tensor] = []
        self._names: dict[int, str] = {}
        self._observing: Any = None
        self.reset()

    def reset(self) -> None:
        """Zero the counts."""
        self.spikes: dict[str, float] = {name: 0.0 for name, _ in self.layers}
        self.synops = 0.0
        self.seen = 0  # forward passes in which spikes were observed
        self.rasters = []

    def _seen(self, layers: list[Layer], x: Any, results: list[SimulationResult]) -> None:
        """Count one :func:`ctsnn.simulate` call (an observer, see
        :func:`ctsnn.network.observing`): the output spikes of each of the model's layers and
        the synaptic operations of its input events and recurrent spikes."""
        prev = x
        for layer, r in zip(layers, results, strict=True):
            name = self._names.get(id(layer))
            spikes = r.spikes
            if name is not None:
                if self.keep_rasters and torch.is_grad_enabled():
                    self.rasters.append(r.raster if r.raster is not None else spikes.raster())
                own = unit_events(spikes)
                self.spikes[name] += float(own.sum())
                self.seen += 1
                ev_in, fo_in = unit_events(prev), fan_out(layer.synapse)
                if ev_in is not None and fo_in is not None and ev_in.shape == fo_in.shape:
                    self.synops += float((ev_in * fo_in.to(ev_in.device)).sum())
                fo_rec = fan_out(layer.recurrent)
                if fo_rec is not None and fo_rec.shape == own.shape:
                    self.synops += float((own * fo_rec.to(own.device)).sum())
            prev = spikes

    def __enter__(self) -> SpikeMonitor:
        self._names = {id(m): name for name, m in self.layers}
        self._observing = observing(self._seen)
        self._observing.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._observing.__exit__(*exc)

    def penalty(self, strength: float) -> Tensor:
        """:func:`~ctsnn.losses.mean_square_spike_penalty` of the kept rasters."""
        if not self.rasters:
            raise ValueError("spike_reg needs the spikes of ctsnn.Layer modules, but no Layer "
                             "ran a forward pass in this model (layers run through "
                             "simulate(list) are not seen)")
        return mean_square_spike_penalty(self.rasters, strength)


__all__ = ["HEADS", "SpikeMonitor", "fan_out", "logits_cross_entropy", "logits_prediction",
           "resolve_heads", "unit_events"]
