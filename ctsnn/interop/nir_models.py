"""Neuron models <-> NIR neuron nodes, and how a ctsnn weight maps onto a NIR weight.

ctsnn's synaptic weight is a **jump**: a spike through weight ``w`` makes the model's
``jump_target`` (``v`` for LIF / LI / IF, ``i`` for CubaLIF / CubaLI) jump by ``w``. NIR's
spikes are Dirac deltas of unit area entering the equations as the input ``I`` (or ``S``), so
the same jump needs the NIR weight ``w_nir = w * s`` with the **jump scale** ``s`` of the
target neuron (:func:`jump_scale`):

* LIF, LI (``tau dv/dt = (v_leak - v) + r I``): a Dirac ``w_nir`` makes ``v`` jump by
  ``r w_nir / tau``, so ``s = tau / r``;
* CubaLIF, CubaLI (``tau_syn dI/dt = -I + w_in S``): ``I`` jumps by ``w_in w_nir / tau_syn``,
  so ``s = tau_syn / w_in`` (ctsnn exports ``w_in = 1``);
* IF (``dv/dt = r I``): ``s = 1 / r``.

A continuous input current, in contrast, has the same meaning in both (``I`` of the NIR
equations; ctsnn applies its own ``r``), so a first layer fed a current needs no scale.

:class:`IF` (integrate-and-fire, NIR ``IF``) lives here because ctsnn's model zoo has no
perfect integrator; it is a full :class:`~ctsnn.models.base.NeuronModel` with a closed-form
flow, usable in both time modes like any other.
"""

from __future__ import annotations

import math
from typing import Any

import nir
import numpy as np
import torch
from torch import Tensor, nn

from ..models.base import NeuronModel
from ..models.lif import LI, LIF, RESET_MODES, CubaLI, CubaLIF


class IF(NeuronModel):
    """Integrate-and-fire neuron (NIR ``IF``): ``dv/dt = r I``; spike when ``v`` reaches
    ``v_threshold``, then ``v <- v_reset``. Input spikes make ``v`` jump by the weight.

    Args:
        n: number of neurons.
        r: input resistance (``v`` units per unit current per second).
        v_threshold, v_reset: potentials (``v_reset < v_threshold``).
        refractory: refractory period (s).
    """

    state_names = ("v",)
    jump_target = "v"
    threshold_variable = "v"
    monotone = True

    def __init__(self, n: int, *, r: float | Tensor = 1.0, v_threshold: float | Tensor = 1.0,
                 v_reset: float | Tensor = 0.0, refractory: float | Tensor = 0.0) -> None:
        super().__init__(n, refractory=refractory)
        self.add_parameter("r", r)
        self.add_parameter("v_threshold", v_threshold)
        self.add_parameter("v_reset", v_reset)
        if (self.v_reset >= self.v_threshold).any():
            raise ValueError("IF: v_reset must be below v_threshold (a reset at or above "
                             "threshold would fire again at once)")

    def dynamics(self, t: Tensor, state: tuple, input: Tensor) -> tuple:
        return (self.r * input,)

    def threshold(self, state: tuple) -> Tensor:
        return state.v - self.v_threshold

    def reset(self, state: tuple) -> tuple:
        return state._replace(v=self.v_reset.to(state.v.dtype).expand_as(state.v))

    def flow(self, state: tuple, input: Tensor, h: Tensor) -> tuple:
        return state._replace(v=state.v + self.r * input * h)


#: ctsnn model class -> NIR node class (exact types: a subclass may change the equations).
NODE_OF = {LIF: nir.LIF, LI: nir.LI, CubaLIF: nir.CubaLIF, CubaLI: nir.CubaLI, IF: nir.IF}
#: NIR node classes from_nir turns into neurons.
NEURON_NODES = (nir.LIF, nir.LI, nir.CubaLIF, nir.CubaLI, nir.IF)
#: Spiking NIR neuron nodes (their output is spikes, a source of synapses).
SPIKING_NODES = (nir.LIF, nir.CubaLIF, nir.IF)


def as_array(t: Tensor) -> np.ndarray:
    """A detached CPU copy of ``t`` as a numpy array (same dtype)."""
    return t.detach().cpu().numpy().copy()


def jump_scale(node: nir.NIRNode) -> np.ndarray:
    """Per-neuron factor ``s`` with ``w_nir = s * w_ctsnn`` for spikes into ``node`` (see the
    module docstring); computed from the node's own arrays, in their dtype (``inf`` where
    ``r`` or ``w_in`` is 0: no spike can reach such a neuron)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if isinstance(node, (nir.LIF, nir.LI)):
            return node.tau / node.r
        if isinstance(node, (nir.CubaLIF, nir.CubaLI)):
            return node.tau_syn / node.w_in
        if isinstance(node, nir.IF):
            return 1.0 / node.r
    raise TypeError(f"no jump scale for a {type(node).__name__} node")


def model_to_node(model: NeuronModel, where: str, *, lossy: bool, euler_dt: float | None = None
                  ) -> tuple[nir.NIRNode, list[str]]:
    """The NIR node of ``model`` and what NIR cannot express (``lossy=True``: recorded in the
    node's metadata, which :func:`node_to_model` restores; otherwise an error naming ``where``).

    ``euler_dt``: the node for discrete-time consumers, forward Euler with this step: ``tau``
    with the same per-step decay (``dt / (1 - exp(-dt / tau))``) and ``r = tau / dt`` (LIF, LI;
    IF: ``r = 1 / dt``), so that a one-step pulse through weight ``w`` moves ``v`` by ``w``.
    """
    kind = NODE_OF.get(type(model))
    if kind is None:
        raise ValueError(f"{where}: NIR has no node for {type(model).__name__} (supported: "
                         f"{', '.join(c.__name__ for c in NODE_OF)})")
    p = {name: as_array(getattr(model, name)) for name in model.param_names}
    lost, meta = [], {}
    if bool((p["refractory"] > 0).any()):
        lost.append(f"refractory period {p['refractory'].max():g} s")
        meta["ctsnn_refractory"] = p["refractory"]
    mode = getattr(model, "reset_mode", "zero")
    if mode != "zero":
        lost.append(f"reset={mode!r} (NIR resets to v_reset)")
        meta["ctsnn_reset"] = mode
    if lost and not lossy:
        raise ValueError(f"{where}: NIR cannot express the {' and the '.join(lost)} of "
                         f"{type(model).__name__}; pass lossy=True to export anyway (ctsnn "
                         "restores it from the node metadata, other tools will not)")
    learnable = [name for name in model.param_names if isinstance(getattr(model, name),
                                                                  nn.Parameter)]
    if learnable:
        meta["ctsnn_learnable"] = ",".join(learnable)
    if euler_dt is not None:
        if kind in (nir.CubaLIF, nir.CubaLI):
            raise ValueError(f"{where}: euler_dt exports forward-Euler parameters, which have no "
                             "exact equivalent for a current-based neuron (the coupled v, I "
                             "update differs); export it without euler_dt")
        dtype = p["r"].dtype
        if kind is nir.IF:
            p["r"] = np.full_like(p["r"], 1.0 / euler_dt)
        else:
            tau = euler_dt / -np.expm1(-euler_dt / p["tau_mem"].astype(np.float64))
            p["tau_mem"], p["r"] = tau.astype(dtype), (tau / euler_dt).astype(dtype)
    if kind is nir.LIF:
        node = nir.LIF(tau=p["tau_mem"], r=p["r"], v_leak=p["v_leak"],
                       v_threshold=p["v_threshold"], v_reset=p["v_reset"], metadata=meta)
    elif kind is nir.LI:
        node = nir.LI(tau=p["tau_mem"], r=p["r"], v_leak=p["v_leak"], metadata=meta)
    elif kind is nir.CubaLIF:
        node = nir.CubaLIF(tau_syn=p["tau_syn"], tau_mem=p["tau_mem"], r=p["r"],
                           v_leak=p["v_leak"], v_threshold=p["v_threshold"],
                           v_reset=p["v_reset"], w_in=np.ones_like(p["r"]), metadata=meta)
    elif kind is nir.CubaLI:
        node = nir.CubaLI(tau_syn=p["tau_syn"], tau_mem=p["tau_mem"], r=p["r"],
                          v_leak=p["v_leak"], w_in=np.ones_like(p["r"]), metadata=meta)
    else:
        node = nir.IF(r=p["r"], v_threshold=p["v_threshold"], v_reset=p["v_reset"],
                      metadata=meta)
    return node, lost


def _meta(node: nir.NIRNode, key: str) -> Any:
    value = (node.metadata or {}).get(key)
    return value.decode() if isinstance(value, bytes) else value


def _euler_tau(name: str, tau: np.ndarray, dt: float) -> np.ndarray:
    """The time constant whose exact decay over ``dt`` is forward Euler's ``1 - dt / tau``."""
    if bool((tau <= dt).any()):
        raise ValueError(f"NIR node {name!r}: tau = {tau.min():g} s <= euler_dt = {dt:g} s; "
                         "forward Euler with this step does not decay (1 - dt/tau <= 0)")
    return -dt / np.log1p(-dt / tau.astype(np.float64))


def node_to_model(name: str, node: nir.NIRNode, dtype: torch.dtype, euler_dt: float | None
                  ) -> tuple[NeuronModel, np.ndarray, np.ndarray]:
    """The ctsnn model of neuron node ``name``, and the per-neuron factors turning a NIR weight
    into a ctsnn weight: for spikes (``w = f_spike * w_nir``) and for a current input.

    ``euler_dt``: read the node as a forward-Euler discretisation with this step (seconds),
    spikes being one-step pulses of height 1 (the discrete-time libraries' convention).
    """
    def t(a: Any) -> Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float64)).to(dtype)

    shapes = {k: np.shape(v) for k, v in vars(node).items()
              if isinstance(v, np.ndarray) and k not in ("input_type", "output_type")}
    sizes = {s for s in shapes.values()}
    if len(sizes) != 1 or len(next(iter(sizes))) != 1:
        raise ValueError(f"NIR node {name!r} ({type(node).__name__}): parameters must all be "
                         f"1-D of one length, got shapes {shapes}")
    n = next(iter(sizes))[0]
    mode = _meta(node, "ctsnn_reset") or "zero"
    if mode not in RESET_MODES:
        raise ValueError(f"NIR node {name!r}: metadata ctsnn_reset = {mode!r} is not one of "
                         f"{RESET_MODES}")
    extra: dict[str, Any] = {}
    refractory = _meta(node, "ctsnn_refractory")
    if refractory is not None:
        extra["refractory"] = t(refractory)
    learnable = (_meta(node, "ctsnn_learnable") or "").split(",")
    learn = {"learn_tau": "tau_mem" in learnable}
    if euler_dt is not None and isinstance(node, (nir.CubaLIF, nir.CubaLI)):
        raise ValueError(f"NIR node {name!r} ({type(node).__name__}): euler_dt reads the graph "
                         "as forward Euler, which has no exact-flow equivalent for a current-"
                         "based neuron (the coupled v, I update differs); import it without "
                         "euler_dt")
    firing = {"reset": mode, "learn_threshold": "v_threshold" in learnable}
    try:
        if isinstance(node, (nir.LIF, nir.LI)):
            tau = node.tau if euler_dt is None else _euler_tau(name, node.tau, euler_dt)
            args = dict(tau_mem=t(tau), r=t(node.r), v_leak=t(node.v_leak), **learn, **extra)
            if isinstance(node, nir.LIF):
                model = LIF(n, v_threshold=t(node.v_threshold), v_reset=t(node.v_reset),
                            **firing, **args)
            else:
                model = LI(n, **args)
            f = node.r / node.tau
            current = np.ones(n)
        elif isinstance(node, (nir.CubaLIF, nir.CubaLI)):
            args = dict(tau_mem=t(node.tau_mem), tau_syn=t(node.tau_syn), r=t(node.r),
                        v_leak=t(node.v_leak), **learn, **extra)
            if isinstance(node, nir.CubaLIF):
                model = CubaLIF(n, v_threshold=t(node.v_threshold), v_reset=t(node.v_reset),
                                **firing, **args)
            else:
                model = CubaLI(n, **args)
            f, current = node.w_in / node.tau_syn, np.asarray(node.w_in, dtype=np.float64)
        elif isinstance(node, nir.IF):
            if mode != "zero":
                raise ValueError("IF resets to v_reset only")
            model = IF(n, r=t(node.r), v_threshold=t(node.v_threshold), v_reset=t(node.v_reset),
                       **extra)
            f, current = np.asarray(node.r, dtype=np.float64), np.ones(n)
        else:
            raise TypeError(f"{type(node).__name__} is not a neuron node")
    except (ValueError, TypeError) as err:
        raise ValueError(f"NIR node {name!r} ({type(node).__name__}): {err}") from err
    f = np.asarray(f, dtype=np.float64) * np.ones(n)
    if euler_dt is not None:
        f = f * euler_dt
    return model, f, current


def check_euler_dt(euler_dt: float | None) -> None:
    """``euler_dt`` is ``None`` or a positive finite number of seconds."""
    if euler_dt is not None and not (isinstance(euler_dt, (int, float)) and
                                     not isinstance(euler_dt, bool) and
                                     math.isfinite(euler_dt) and euler_dt > 0):
        raise ValueError(f"euler_dt must be a positive number of seconds or None, got "
                         f"{euler_dt!r}")


__all__ = ["IF", "NODE_OF", "NEURON_NODES", "SPIKING_NODES", "as_array", "jump_scale",
           "model_to_node", "node_to_model", "check_euler_dt"]
