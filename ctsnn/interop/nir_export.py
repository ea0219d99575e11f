"""``ctsnn.to_nir``: a chain of layers as a NIR graph (conventions: ``docs/nir.md``).

Node names, for layer ``k`` (``k = 0, 1, ...``)::

    input -> [l{k}_delay] -> l{k}_linear -> [l{k}_scale] -> l{k}_neuron -> ...
    l{k}_neuron -> [l{k}_rec_delay] -> l{k}_rec_linear -> [l{k}_rec_scale] -> l{k}_neuron
    l{last}_neuron -> output

``l{k}_scale`` is the jump scale (:mod:`ctsnn.interop.nir_models`); ``l{k}_delay`` is a per-axon
delay. A per-synapse delay matrix becomes parallel branches ``l{k}_delay_{s} -> l{k}_linear_{s}``
(``s = 0 .. K-1``) into the scale node (:mod:`ctsnn.interop.nir_paths`). A layer without
synapses (one-to-one) has no linear node.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import nir
import numpy as np
import torch
from torch import nn

from .._checks import check_choice
from ..models.base import NeuronModel
from ..network import Layer, layers_of
from ..synapses import Dense, RecurrentDense
from .nir_models import as_array, check_euler_dt, jump_scale, model_to_node
from .nir_paths import per_axon, slices

INPUT_KINDS = ("spikes", "current")


class _Builder:
    """Nodes and edges of the graph being written."""

    def __init__(self, expand_delays: bool, lossy: bool, euler_dt: float | None) -> None:
        self.euler_dt = euler_dt
        self.nodes: dict[str, nir.NIRNode] = {}
        self.edges: list[tuple[str, str]] = []
        self.expand_delays, self.lossy = expand_delays, lossy
        self.lost: list[str] = []

    def add(self, name: str, node: nir.NIRNode, source: str | list[str]) -> str:
        self.nodes[name] = node
        self.edges += [(src, name) for src in ([source] if isinstance(source, str) else source)]
        return name

    def connection(self, prefix: str, where: str, source: str, weight: np.ndarray,
                   delay: np.ndarray | None, per: str, meta: dict,
                   bias: np.ndarray | None = None) -> list[str]:
        """Nodes of a weight ``[N_out, N_in]`` with delays (``None``, per axon ``[N_in]`` or per
        synapse ``[N_out, N_in]``) after ``source``; returns the names of the last nodes (their
        outputs add up to the connection's)."""
        if delay is not None and not bool((delay != 0).any()) and self.euler_dt is not None:
            delay = None  # no Delay node for consumers that may not take one
        if delay is not None and per == "synapse":
            axon = per_axon(delay)
            if axon is None and not self.expand_delays:
                if not self.lossy:
                    raise ValueError(
                        f"{where}: per-synapse delays differ between the targets of an input; "
                        "NIR's Delay node holds one delay per channel. Use expand_delays=True "
                        "(lossless expansion) or lossy=True (each input's mean delay)")
                axon = delay.mean(axis=0).astype(delay.dtype)
                self.lost.append(f"{where}: per-synapse delays replaced by each input's mean")
            if axon is None:
                return self._expanded(prefix, source, weight, delay, meta, bias)
            delay = axon
        return [self._branch(prefix, "", source, weight, delay, meta, weight == 0, bias)]

    def _branch(self, prefix: str, tag: str, source: str, weight: np.ndarray,
                delay: np.ndarray | None, meta: dict, zero_synapses: np.ndarray,
                bias: np.ndarray | None) -> str:
        """``source -> [Delay] -> Linear / Affine``; synapses of weight 0 (``zero_synapses``,
        ``[N_out, N_in]`` bool) are listed in the metadata (their delays are not observable)."""
        meta = dict(meta)
        rows, cols = np.nonzero(zero_synapses)
        if len(rows):
            meta["ctsnn_support"] = np.stack((rows, cols)).astype(np.int64)
        if delay is not None:
            source = self.add(f"{prefix}_delay{tag}", nir.Delay(delay=delay), source)
        node = nir.Linear(weight=weight, metadata=meta) if bias is None else nir.Affine(
            weight=weight, bias=bias, metadata=meta)
        return self.add(f"{prefix}_linear{tag}", node, source)

    def _expanded(self, prefix: str, source: str, weight: np.ndarray, delay: np.ndarray,
                  meta: dict, bias: np.ndarray | None) -> list[str]:
        sl = slices(weight, delay)
        zero = weight == 0
        return [self._branch(prefix, f"_{k}", source, sl.weights[k], sl.delays[k], meta,
                             zero & (sl.slot == k), bias if k == 0 else None)
                for k in range(len(sl.delays))]


def _synapse_parts(syn: nn.Module, where: str, b: _Builder, recurrent: bool
                   ) -> tuple[np.ndarray, np.ndarray | None, str, dict]:
    """``(weight, delay, per, metadata)`` of an exact Dense / RecurrentDense synapse (with
    ``b.euler_dt``: delays rounded to the grid as the discrete engine applies them, recurrent
    ones one step shorter, the step discrete-time libraries add)."""
    if not isinstance(syn, (Dense, RecurrentDense)):
        raise ValueError(f"{where}: NIR export supports Dense and RecurrentDense synapses, got "
                         f"{type(syn).__name__}")
    if syn.kernel.grid:
        raise ValueError(f"{where}: {syn.kernel!r} spreads each delay over grid steps (a "
                         "training kernel NIR cannot express); export a synapse with exact "
                         "delays (kernel=Exact(), delays in seconds)")
    if isinstance(syn, Dense) and (syn.pad_right or (syn.bias is not None and
                                                     b.euler_dt is None)):
        raise ValueError(f"{where}: bias and pad_right are per-step discrete-time additions "
                         "NIR has no node for (a bias exports with euler_dt=, as an Affine "
                         "node); build the synapse without them")
    if getattr(syn, "dropout", 0.0):
        raise ValueError(f"{where}: recurrent dropout is a training-time operation; set "
                         "dropout=0 before exporting")
    meta: dict = {}
    if syn.mask is not None:
        if not b.lossy:
            raise ValueError(f"{where}: the fan-in mask (fixed connectivity for training) has no "
                             "NIR equivalent (the masked weights are exported as zeros); pass "
                             "lossy=True to export anyway")
        b.lost.append(f"{where}: fan-in mask (masked weights exported as zeros)")
    weight = as_array(syn.effective_weight)
    delay = None if syn.delay is None else as_array(syn.delay)
    if delay is not None and b.euler_dt is not None:
        steps = np.round(delay.astype(np.float64) / b.euler_dt) - recurrent
        if bool((steps < 0).any()):
            raise ValueError(f"{where}: a recurrent delay below one step of euler_dt = "
                             f"{b.euler_dt} s has no discrete-time form (the spike would act "
                             "in the step that emitted it)")
        delay = (steps * b.euler_dt).astype(delay.dtype)
    if syn.max_delay is not None:
        meta["ctsnn_max_delay"] = float(syn.max_delay)
    learn = [name for name in ("weight", "delay") if isinstance(getattr(syn, name), nn.Parameter)]
    meta["ctsnn_learnable"] = ",".join(learn) or "none"
    meta["ctsnn_per"] = syn.per
    return weight, delay, syn.per, meta


def _layer(b: _Builder, k: int, layer: Layer, source: str, input_kind: str) -> str:
    """Add layer ``k`` after node ``source``; returns its neuron node's name."""
    where = f"layer {k}"
    neuron, lost = model_to_node(layer.model, f"{where} ({type(layer.model).__name__})",
                                 lossy=b.lossy, euler_dt=b.euler_dt)
    b.lost += [f"{where}: {x}" for x in lost]
    name = f"l{k}_neuron"
    scale = jump_scale(neuron)
    if not np.isfinite(scale).all():
        raise ValueError(f"{where}: r = 0 somewhere: spikes cannot reach the neurons in NIR's "
                         "equations (tau dv/dt = ... + r I)")
    spikes_in = k > 0 or input_kind == "spikes"
    inputs: list[str] = []
    if layer.synapse is None:
        inputs.append(source)
    else:
        weight, delay, per, meta = _synapse_parts(layer.synapse, f"{where} synapse", b, False)
        bias = getattr(layer.synapse, "bias", None)
        bias = None if bias is None else as_array(bias)
        if not spikes_in and delay is not None:
            raise ValueError(f"{where}: input_kind='current' but the first layer has delays; "
                             "ctsnn applies a current input without delays (only spikes are "
                             "delayed): export with input_kind='spikes'")
        inputs += b.connection(f"l{k}", f"{where} synapse", source, weight, delay, per, meta,
                               bias)
    if spikes_in and b.euler_dt is None:
        inputs = [b.add(f"l{k}_scale", nir.Scale(scale=scale), inputs)]
    if layer.recurrent is not None:
        weight, delay, per, meta = _synapse_parts(layer.recurrent, f"{where} recurrent", b, True)
        last = b.connection(f"l{k}_rec", f"{where} recurrent", name, weight, delay, per, meta)
        inputs += last if b.euler_dt is not None else [
            b.add(f"l{k}_rec_scale", nir.Scale(scale=scale), last)]
    b.nodes[name] = neuron
    b.edges += [(i, name) for i in inputs]
    return name


def to_nir(network: NeuronModel | Layer | Sequence[Layer | NeuronModel] | nn.Module,
           path: str | Path | None = None, *, input_kind: str = "spikes",
           expand_delays: bool = True, lossy: bool = False,
           euler_dt: float | None = None) -> nir.NIRGraph:
    """Export a network (what :func:`ctsnn.simulate` takes) as a NIR graph.

    Args:
        network: a :class:`~ctsnn.NeuronModel`, a :class:`~ctsnn.Layer` or a sequence of them.
            Supported: models LIF, CubaLIF, LI, CubaLI and :class:`~ctsnn.interop.IF`;
            synapses :class:`~ctsnn.Dense` / :class:`~ctsnn.synapses.RecurrentDense` with exact
            delays (seconds; none, per axon, per synapse) or one-to-one input.
        path: also write the graph to this ``.nir`` file (HDF5, ``nir.write``).
        input_kind: what the graph input carries: ``"spikes"`` (NIR's Dirac spikes; the
            first layer gets the jump-scale node) or ``"current"`` (an input current, as
            ``simulate(..., input_as="current")`` uses it).
        expand_delays: per-synapse delay matrices as the lossless expansion (parallel Delay ->
            Linear branches; see :mod:`ctsnn.interop.nir_paths`). ``False``: for consumers that
            take only one delay per channel; a matrix whose delays differ between targets is
            then an error (or, with ``lossy``, each input's mean delay).
        lossy: export what NIR cannot express in an approximate form instead of raising
            (per-synapse delays without ``expand_delays``, ``reset="subtract"`` / ``"none"``,
            refractory periods, fan-in masks); a ``UserWarning`` lists what was lost. Reset
            modes and refractory periods go into the node metadata, which :func:`from_nir`
            restores.
        euler_dt: export for discrete-time consumers (snnTorch, SpikingJelly, ...), which run
            NIR graphs with forward Euler on a step ``dt`` (s) and read a spike as a one-step
            pulse: the graph then reproduces ctsnn's discrete-time run at this ``dt``. Time
            constants ``dt / (1 - exp(-dt / tau))`` (same per-step decay), ``r = tau / dt``
            (weights unchanged), no jump-scale nodes, delays rounded to the grid and recurrent
            delays one step shorter (those libraries deliver recurrent spikes one step later);
            a Dense bias becomes an ``Affine`` bias. LIF / LI / IF, spike input only.
            :func:`from_nir` with the same ``euler_dt`` reads it back.

    Returns:
        ``nir.NIRGraph`` with nodes ``input``, ``l{k}_*`` per layer and ``output``; arrays in
        the network's dtype; time constants and delays in seconds.

    Raises:
        ValueError: names the layer and what NIR cannot express.
        TypeError: names the layer whose type NIR cannot express.
    """
    check_choice("input_kind", input_kind, INPUT_KINDS)
    for name, flag in (("expand_delays", expand_delays), ("lossy", lossy)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {flag!r}")
    check_euler_dt(euler_dt)
    if euler_dt is not None and input_kind != "spikes":
        raise ValueError("euler_dt exports for discrete-time consumers driven by spikes: "
                         "input_kind must be 'spikes'")
    layers = layers_of(network, caller="to_nir")
    b = _Builder(expand_delays, lossy, euler_dt)
    with torch.no_grad():
        b.nodes["input"] = nir.Input(input_type={"input": np.array([layers[0].n_in])})
        source = "input"
        for k, layer in enumerate(layers):
            if k < len(layers) - 1 and not layer.model.spiking:
                raise ValueError(f"layer {k} ({type(layer.model).__name__}) does not spike: in "
                                 "NIR its output would be its voltage, read by the next layer "
                                 "as a current; only the last layer may be a readout")
            source = _layer(b, k, layer, source, input_kind)
    b.nodes["output"] = nir.Output(output_type={"output": np.array([layers[-1].model.n])})
    b.edges.append((source, "output"))
    meta = {"ctsnn_input": input_kind, "ctsnn_format": 1}
    if euler_dt is not None:
        meta["ctsnn_euler_dt"] = float(euler_dt)
    graph = nir.NIRGraph(nodes=b.nodes, edges=b.edges, metadata=meta)
    if b.lost:
        warnings.warn("to_nir(lossy=True) could not express: " + "; ".join(b.lost),
                      UserWarning, stacklevel=2)
    if path is not None:
        nir.write(path, graph)
    return graph


__all__ = ["to_nir", "INPUT_KINDS"]
