"""``ctsnn.from_nir``: a NIR graph (or ``.nir`` file) as a chain of ctsnn layers.

The graph must be a chain of populations: one ``Input``, neuron nodes (LIF, CubaLIF, LI,
CubaLI, IF), each fed by the previous population (or the input) and optionally by itself
(a recurrent connection), through any combination of ``Linear``, ``Affine`` (zero bias),
``Delay`` and ``Scale`` nodes, and one ``Output`` fed by the last population.
Nested graphs (e.g. snnTorch's recurrent layers) are flattened first. Conventions:
``docs/nir.md``; the delayed linear maps are composed by :class:`~ctsnn.interop.nir_paths.Paths`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from .._checks import check_choice
from ..network import Layer
from ..synapses import Dense, RecurrentDense
from .nir_export import INPUT_KINDS
from .nir_models import (
    NEURON_NODES,
    SPIKING_NODES,
    check_euler_dt,
    jump_scale,
    node_to_model,
)
from .nir_paths import Paths

PASS_THROUGH = (nir.Input, nir.Output)  # (of a nested graph: pass-through)


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind in "SO" and value.ndim == 0:
        return _text(value.item())
    return value


def flatten(graph: nir.NIRGraph, prefix: str = "") -> tuple[dict, list]:
    """Nodes and edges of ``graph`` with nested graphs inlined (``outer.inner`` names; a nested
    graph's own Input / Output nodes become pass-through nodes)."""
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    entry: dict[str, str] = {}
    exit_: dict[str, str] = {}
    for name, node in graph.nodes.items():
        full = prefix + name
        if isinstance(node, nir.NIRGraph):
            inner_nodes, inner_edges = flatten(node, full + ".")
            ins = [k for k, v in node.nodes.items() if isinstance(v, nir.Input)]
            outs = [k for k, v in node.nodes.items() if isinstance(v, nir.Output)]
            if len(ins) != 1 or len(outs) != 1:
                raise ValueError(f"NIR node {full!r}: a nested graph needs one Input and one "
                                 f"Output, got {len(ins)} and {len(outs)}")
            nodes.update(inner_nodes)
            edges += inner_edges
            entry[name], exit_[name] = f"{full}.{ins[0]}", f"{full}.{outs[0]}"
        else:
            nodes[full] = node
    for src, dst in graph.edges:
        src, dst = _text(src), _text(dst)
        for end in (src, dst):
            if end not in graph.nodes:
                raise ValueError(f"NIR graph: an edge names node {prefix + end!r}, which the "
                                 "graph does not have")
        edges.append((exit_.get(src, prefix + src), entry.get(dst, prefix + dst)))
    return nodes, edges


class _Graph:
    """The flattened graph, its predecessor lists and the composition of linear nodes."""

    def __init__(self, graph: nir.NIRGraph, euler_dt: float | None) -> None:
        self.nodes, edges = flatten(graph)
        self.preds: dict[str, list[str]] = {name: [] for name in self.nodes}
        for src, dst in edges:
            self.preds[dst].append(src)
        self.euler_dt = euler_dt
        top = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
        out = [n for n, v in graph.nodes.items() if isinstance(v, nir.Output)]
        if len(top) != 1 or len(out) != 1:
            raise ValueError(f"NIR graph: ctsnn networks have one Input and one Output node, "
                             f"got inputs {top} and outputs {out}")
        self.input, self.output = top[0], out[0]
        for name, node in self.nodes.items():
            known = NEURON_NODES + PASS_THROUGH + (nir.Linear, nir.Affine, nir.Delay, nir.Scale)
            if not isinstance(node, known):
                raise ValueError(f"NIR node {name!r}: unsupported node type "
                                 f"{type(node).__name__} (ctsnn reads "
                                 f"{', '.join(c.__name__ for c in known)})")
        self._memo: dict[str, dict[str, Paths]] = {}
        self._busy: set[str] = set()

    def size(self, name: str) -> int:
        node = self.nodes[name]
        shape = node.output_type.get("output") if isinstance(node.output_type, dict) else None
        if shape is None or np.size(shape) != 1:
            raise ValueError(f"NIR node {name!r} ({type(node).__name__}): ctsnn needs 1-D "
                             f"signals, got output shape {shape}")
        return int(np.asarray(shape).reshape(-1)[0])

    def sources(self, name: str) -> dict[str, Paths]:
        """Delayed linear maps from each population (or the input) to node ``name``'s output."""
        if name in self._memo:
            return self._memo[name]
        node = self.nodes[name]
        if name == self.input or isinstance(node, NEURON_NODES):
            return {name: Paths.identity(self.size(name))}
        if name in self._busy:
            raise ValueError(f"NIR node {name!r}: a cycle without a neuron node")
        if not self.preds[name]:
            raise ValueError(f"NIR node {name!r} ({type(node).__name__}) has no input edge")
        self._busy.add(name)
        parts: dict[str, list[Paths]] = {}
        for pred in self.preds[name]:
            for src, p in self.sources(pred).items():
                parts.setdefault(src, []).append(p)
        self._busy.discard(name)
        out = {src: self._apply(name, node, Paths.total(ps)) for src, ps in parts.items()}
        self._memo[name] = out
        return out

    def _apply(self, name: str, node: nir.NIRNode, p: Paths) -> Paths:
        where = f"NIR node {name!r} ({type(node).__name__})"
        if isinstance(node, PASS_THROUGH):
            return p
        if isinstance(node, (nir.Linear, nir.Affine)):
            w = np.asarray(node.weight)
            if w.ndim != 2 or w.shape[1] != p.n_out:
                raise ValueError(f"{where}: weight shape {list(w.shape)} does not take the "
                                 f"{p.n_out} channels it receives (expected [N_out, {p.n_out}])")
            bias = None
            if isinstance(node, nir.Affine) and np.any(np.asarray(node.bias) != 0):
                if self.euler_dt is None:
                    raise ValueError(f"{where}: a nonzero bias is a constant input current, "
                                     "which ctsnn synapses do not have (with euler_dt, read as "
                                     "discrete-time libraries do, it becomes a per-step bias)")
                bias = np.asarray(node.bias).reshape(-1)
                if bias.shape != (w.shape[0],):
                    raise ValueError(f"{where}: bias shape {list(np.shape(node.bias))} does not "
                                     f"match weight shape {list(w.shape)}")
            meta = dict(node.metadata or {})
            extra = meta.get("ctsnn_support")
            if extra is not None:
                extra = np.asarray(extra, dtype=np.int64).reshape(2, -1)
            return p.through(w, extra, meta, bias)
        vec = np.asarray(node.delay if isinstance(node, nir.Delay) else node.scale)
        if vec.shape != (p.n_out,):
            raise ValueError(f"{where}: {vec.shape[0] if vec.ndim else 'a scalar'} values for "
                             f"{p.n_out} channels")
        if isinstance(node, nir.Delay):
            if not np.isfinite(vec).all() or (vec < 0).any():
                raise ValueError(f"{where}: delays must be finite and >= 0 seconds")
            return p.delayed(vec)
        return p.scaled(vec)

    def inputs_of(self, name: str, factor: np.ndarray, input_factor: np.ndarray
                  ) -> dict[str, Paths]:
        """Maps from each source to neuron ``name``'s input in ctsnn units: NIR weights times
        ``factor`` per neuron (``input_factor`` for the graph input), except through the
        exporter's own jump-scale node (exact)."""
        node = self.nodes[name]
        out: dict[str, list[Paths]] = {}
        for pred in self.preds[name]:
            p_node = self.nodes[pred]
            exact = (self.euler_dt is None and isinstance(p_node, nir.Scale)
                     and np.shape(p_node.scale) == np.shape(jump_scale(node))
                     and np.array_equal(p_node.scale, jump_scale(node))
                     and len(self.preds[pred]) > 0)
            got: dict[str, list[Paths]] = {}
            for q in self.preds[pred] if exact else [pred]:
                for src, p in self.sources(q).items():
                    f = input_factor if src == self.input else factor
                    got.setdefault(src, []).append(p if exact else p.scaled(f))
            for src, ps in got.items():
                for p in ps:
                    if p.n_out != len(factor):
                        raise ValueError(f"NIR node {name!r}: receives {p.n_out} channels from "
                                         f"{pred!r} but has {len(factor)} neurons")
                out.setdefault(src, []).extend(ps)
        return {src: Paths.total(ps) for src, ps in out.items()}


def _meta(p: Paths, key: str) -> Any:
    return _text((p.meta or {}).get(key))


def _synapse(p: Paths, n_in: int, where: str, dtype: torch.dtype, recurrent: bool,
             euler_dt: float | None) -> nn.Module | None:
    """The ctsnn synapse of one composed map (``None``: one-to-one)."""
    w, d, reached = p.dense(n_in, where)
    if not p.has_linear and not p.has_delay and not recurrent and w.shape[0] == n_in \
            and np.array_equal(w, np.eye(n_in)) and p.bias is None:
        return None
    same_column = all(len(np.unique(d[reached[:, j], j])) <= 1 for j in range(n_in))
    per = _meta(p, "ctsnn_per") or (
        "axon" if p.has_delay and not p.delay_after_linear and same_column else "synapse")
    delay: np.ndarray | None = None
    if p.has_delay:
        delay = d
        if per == "axon":
            if not same_column:
                raise ValueError(f"{where}: metadata says per-axon delays but the targets of "
                                 "an input receive it at different delays")
            first = np.where(reached.any(axis=0), reached.argmax(axis=0), 0)
            delay = np.where(reached.any(axis=0), d[first, np.arange(n_in)], 0.0)
    elif recurrent:
        delay = np.zeros(()) if euler_dt is None else None
    if recurrent and euler_dt is not None:  # discrete libraries: recurrent input one step later
        delay = (0.0 if delay is None else delay) + np.asarray(euler_dt)
    recorded = _meta(p, "ctsnn_learnable")  # absent: ctsnn's defaults (learnable weights)
    learn = ("weight" if recorded is None else recorded).split(",")
    max_delay = _meta(p, "ctsnn_max_delay")
    kw: dict[str, Any] = {
        "weight": torch.as_tensor(w).to(dtype),
        "delay": None if delay is None else torch.as_tensor(np.asarray(delay, np.float64)),
        "per": per, "learn_weight": "weight" in learn,
        "learn_delay": "delay" in learn and delay is not None,
        "max_delay": None if max_delay is None else float(max_delay)}
    if kw["delay"] is not None and kw["delay"].ndim == 0:
        kw["delay"] = float(kw["delay"])
    if p.bias is not None:
        kw["bias"] = True
    try:
        syn = RecurrentDense(**kw) if recurrent else Dense(**kw)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where}: {err}") from err
    if p.bias is not None:
        with torch.no_grad():
            syn.bias.copy_(torch.as_tensor(p.bias).to(dtype))
    return syn


def _chain(g: _Graph) -> list[str]:
    """Neuron node names in order, from the input to the output."""
    neurons = [n for n, v in g.nodes.items() if isinstance(v, NEURON_NODES)]
    feeds: dict[str, str] = {}
    for name in neurons:
        srcs = {s for pred in g.preds[name] for s in g.sources(pred)} - {name}
        if len(srcs) != 1:
            raise ValueError(f"NIR node {name!r}: ctsnn layers form a chain, each fed by one "
                             f"population (or the input), got sources {sorted(srcs)}")
        src = srcs.pop()
        if src != g.input and not isinstance(g.nodes[src], SPIKING_NODES):
            raise ValueError(f"NIR node {src!r} ({type(g.nodes[src]).__name__}) does not spike: "
                             f"it cannot feed {name!r} (only the last population may be a "
                             "non-spiking readout)")
        if src in feeds:
            raise ValueError(f"NIR node {src!r} feeds both {feeds[src]!r} and {name!r}: ctsnn "
                             "layers form a chain")
        feeds[src] = name
    order, current = [], g.input
    while current in feeds:
        current = feeds[current]
        order.append(current)
    if len(order) != len(neurons) or not order:
        rest = sorted(set(neurons) - set(order))
        raise ValueError(f"NIR graph: neuron nodes {rest or neurons} are not reached from the "
                         "input through a chain of populations")
    last = g.sources(g.output)
    p = last.get(order[-1])
    if set(last) != {order[-1]} or p.has_linear or p.has_delay or \
            not np.array_equal(p.dense(p.n_out, "output")[0], np.eye(p.n_out)):
        raise ValueError(f"NIR node {g.output!r}: the Output must be fed by the last population "
                         f"{order[-1]!r} directly (ctsnn networks output its spikes)")
    return order


def from_nir(graph: nir.NIRGraph | str | Path, *, dtype: torch.dtype | None = None,
             input_kind: str | None = None, euler_dt: float | None = None) -> nn.Sequential:
    """Import a NIR graph (or a ``.nir`` file) as a chain of :class:`~ctsnn.Layer`.

    Args:
        graph: a ``nir.NIRGraph`` or the path of a ``.nir`` file.
        dtype: of the network (float32 / float64); default: that of the first neuron node's
            arrays if floating, else the default dtype.
        input_kind: ``"spikes"`` or ``"current"``: what the graph input carries (see
            :func:`to_nir`); default: as recorded by ctsnn's exporter, else ``"spikes"``.
        euler_dt: read the graph as the discrete-time libraries run it (snnTorch,
            SpikingJelly, ...): forward Euler with this step (s), each spike a one-step pulse
            of height 1, recurrent spikes arriving one step later. The time constants become
            ``-dt / log(1 - dt / tau)`` (same per-step decay with ctsnn's exact flow), input
            weights ``dt r / tau`` times the NIR weight, and recurrent connections get an extra
            delay ``dt``; simulate with ``dt = euler_dt``. LIF / LI / IF only. Default: the
            value recorded by ``to_nir(..., euler_dt=)``, else ``None`` (NIR's own
            continuous-time reading).

    Returns:
        ``nn.Sequential`` of :class:`~ctsnn.Layer` (``ctsnn.simulate(net, x, dt=...)``).

    Raises:
        ValueError: names the node, for unsupported nodes, inconsistent shapes, a topology
            that is not a chain, or paths with two delays for one synapse.
    """
    if isinstance(graph, (str, Path)):
        graph = nir.read(graph)
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"from_nir takes a nir.NIRGraph or a path, got {type(graph).__name__}")
    check_euler_dt(euler_dt)
    if euler_dt is None and isinstance(graph.metadata, dict):
        recorded_dt = _text(graph.metadata.get("ctsnn_euler_dt"))
        euler_dt = None if recorded_dt is None else float(recorded_dt)
    recorded = _text((graph.metadata or {}).get("ctsnn_input")) if isinstance(
        graph.metadata, dict) else None
    kind = input_kind or recorded or "spikes"
    check_choice("input_kind", kind, INPUT_KINDS)
    if dtype is not None and dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    g = _Graph(graph, euler_dt)
    order = _chain(g)
    if dtype is None:
        first = np.asarray(g.nodes[order[0]].v_leak if hasattr(g.nodes[order[0]], "v_leak")
                           else g.nodes[order[0]].r)
        dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}.get(
            first.dtype, torch.get_default_dtype())
    layers, source = [], g.input
    for name in order:
        model, f_spike, f_current = node_to_model(name, g.nodes[name], dtype, euler_dt)
        inputs = g.inputs_of(name, f_spike, f_current if kind == "current" else f_spike)
        if name in inputs and inputs[name].bias is not None:
            # a constant input is the same on any path: the feed-forward synapse carries it
            ff, rec_bias = inputs[source], inputs[name].bias
            inputs[source] = replace(ff, bias=rec_bias if ff.bias is None else ff.bias + rec_bias)
            inputs[name] = replace(inputs[name], bias=None)
        n_in = g.size(source)
        syn = _synapse(inputs[source], n_in, f"NIR node {name!r} (input from {source!r})", dtype,
                       False, euler_dt)
        rec = None
        if name in inputs:
            rec = _synapse(inputs[name], model.n, f"NIR node {name!r} (recurrent)", dtype, True,
                           euler_dt)
        if syn is None and n_in != model.n:
            raise ValueError(f"NIR node {name!r}: {n_in} inputs for {model.n} neurons")
        layers.append(Layer(model, syn, recurrent=rec))
        source = name
    return nn.Sequential(*layers)


__all__ = ["from_nir", "flatten"]
