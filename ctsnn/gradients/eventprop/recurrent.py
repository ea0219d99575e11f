"""Closed-form EventProp of recurrent spiking layers (``LIF`` / ``CubaLIF`` with
:class:`~ctsnn.synapses.RecurrentDense` exact delays), with the compiled backward.

The forward runs the continuous engine (:func:`ctsnn.engine.run_population`, with the layer's
recurrence) under ``torch.no_grad()`` and keeps only the input events and the output spikes: no
state is recorded, so memory is flat in ``T``. The backward is
:func:`.recurrent_kernels.recurrent_backward` (numba). Where it refuses (events sharing an
instant that the event times alone do not order, see that module), the backward falls back to
the reference, the generic adjoint (:func:`ctsnn.gradients.adjoint.adjoint_layer`): it runs the
layer's forward again with the checkpoints that adjoint replays from and differentiates it, so
gradients are the reference's, at the reference's cost for that one backward. The spike-count
regulariser (``spike_reg``) is not implemented by the reference: a refused backward with
``spike_reg`` raises.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...engine import run_population
from ...models.base import NeuronModel
from ...spikes import Spikes
from ...synapses import Dense, RecurrentDense
from .._weights import full_delay
from ..adjoint import adjoint_layer
from . import recurrent_kernels
from .common import LayerConfig, as_tau_dtypes, learnable_taus, neuron_constants, tau_dtypes
from .spiking import reg_jumps

__all__ = ["RecurrentLayerFn", "recurrent_layer_forward"]


def _forward_spikes(cfg: LayerConfig, t_in: Tensor, b_in: Tensor, j_in: Tensor, v_in: Tensor,
                    weight: Tensor, delay: Tensor | None, rec_w: Tensor,
                    rec_d: Tensor) -> Spikes:
    spikes = Spikes(t_in, j_in, b_in, v_in, dt=cfg.dt, n_steps=cfg.n_steps,
                    batch_size=cfg.batch_size, n_units=cfg.n_in)
    syn = Dense(weight=weight, delay=delay, learn_weight=False)
    rec = RecurrentDense(weight=rec_w, delay=rec_d, learn_weight=False)
    return run_population(cfg.nrn.model, dt=cfg.dt, n_steps=cfg.n_steps,
                          batch_size=cfg.batch_size, arrivals=syn.arrivals(spikes),
                          recurrent=rec, time="continuous", method="exact", dtype=weight.dtype,
                          device=weight.device, xtol=cfg.xtol).spikes


def _matching(t_a: Tensor, b_a: Tensor, n_a: Tensor, t_b: Tensor, b_b: Tensor, n_b: Tensor,
              n: int, tol: float) -> Tensor:
    """Index map ``p`` with spike ``p[i]`` of the second list = spike ``i`` of the first."""
    if t_a.numel() != t_b.numel():
        raise RuntimeError(f"adjoint (recurrent): the reference rerun fired {t_b.numel()} spikes, "
                           f"the forward {t_a.numel()}")

    def order(t: Tensor, b: Tensor, u: Tensor) -> Tensor:
        o = torch.argsort(t.detach(), stable=True)
        return o[torch.argsort((b * n + u)[o], stable=True)]

    oa, ob = order(t_a, b_a, n_a), order(t_b, b_b, n_b)
    same = ((b_a[oa] == b_b[ob]) & (n_a[oa] == n_b[ob])
            & ((t_a[oa] - t_b[ob].detach()).abs() <= tol))
    if not bool(same.all()):
        raise RuntimeError("adjoint (recurrent): the reference rerun's spikes differ from the "
                           "forward's")
    p = torch.empty_like(oa)
    p[oa] = ob
    return p


def _reference_backward(cfg: LayerConfig, saved: tuple, g_t: Tensor, need: tuple,
                        need_tau: tuple[bool, bool] = (False, False)) -> tuple:
    """The generic adjoint's gradients (the reference), from a rerun of the forward; the
    time constants' (``need_tau``) from the same rerun (the model's live parameters)."""
    if cfg.spike_reg is not None:
        raise NotImplementedError(
            "adjoint (recurrent): events share an instant in a way the compiled backward does "
            "not order, and the reference (generic adjoint) has no spike_reg; train without "
            "spike_reg or with gradient='surrogate'")
    t_in, weight, delay, rec_w, rec_d, b_in, j_in, v_in, t_out, b_out, n_out = saved
    t_l, w_l, v_l = (x.detach().clone().requires_grad_() for x in (t_in, weight, v_in))
    d_l = None if delay is None else delay.detach().clone().requires_grad_()
    rec = RecurrentDense(weight=rec_w.detach(), delay=rec_d.detach(), learn_weight=True,
                         learn_delay=True)
    with torch.enable_grad():
        spikes = Spikes(t_l, j_in, b_in, v_l, dt=cfg.dt, n_steps=cfg.n_steps,
                        batch_size=cfg.batch_size, n_units=cfg.n_in)
        out, *_ = adjoint_layer(cfg.nrn.model, spikes, w_l, d_l, recurrent=rec, xtol=cfg.xtol)
        tol = 1e-6 * max(cfg.t_end, cfg.dt)
        p = _matching(t_out, b_out, n_out, out.times, out.batch, out.units, cfg.nrn.n, tol)
        cot = torch.zeros_like(out.times)
        cot[p] = g_t.to(cot.dtype)
        leaves = [t_l, w_l, d_l, rec.weight, rec.delay, v_l, *learnable_taus(cfg.nrn.model)]
        need = (*need, *need_tau)
        wanted = [x for x, flag in zip(leaves, need, strict=True) if flag and x is not None]
        grads = (torch.autograd.grad(out.times, wanted, cot, allow_unused=True)
                 if wanted and out.times.requires_grad else [None] * len(wanted))
    res, it = [], iter(grads)
    for x, flag in zip(leaves, need, strict=True):
        g = next(it) if flag and x is not None else None
        res.append(torch.zeros_like(x) if g is None and flag and x is not None else g)
    return tuple(res)


class RecurrentLayerFn(torch.autograd.Function):
    """Input spike times, W, D, W_rec, D_rec -> output spike times (exact); compiled adjoint
    backward (reference fallback, see the module docstring)."""

    @staticmethod
    def forward(ctx: Any, t_in: Tensor, weight: Tensor, delay: Tensor | None, rec_w: Tensor,
                rec_d: Tensor, b_in: Tensor, j_in: Tensor, v_in: Tensor,
                cfg: LayerConfig, tau_m: Tensor | None = None,
                tau_s: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        ctx.tau_dtypes = tau_dtypes(tau_m, tau_s)  # (inputs so autograd routes their gradients;
        # cfg.nrn has the values)
        out = _forward_spikes(cfg, t_in, b_in, j_in, v_in, weight, delay, rec_w, rec_d)
        t_out, b_out, n_out = out.times, out.batch, out.units
        ctx.save_for_backward(t_in, weight, delay, rec_w, rec_d, b_in, j_in, v_in, t_out,
                              b_out, n_out)
        ctx.cfg = cfg
        ctx.mark_non_differentiable(b_out, n_out)
        # no zero-filled int64 gradients [K] for the index outputs (16 B per spike at the
        # backward's start); an unused time output arrives as None (zeros below)
        ctx.set_materialize_grads(False)
        return t_out, b_out, n_out

    @staticmethod
    def backward(ctx: Any, g_t: Tensor | None, _gb: Any, _gn: Any) -> tuple:
        cfg: LayerConfig = ctx.cfg
        saved = ctx.saved_tensors
        t_out, n_out = saved[8], saved[10]
        need = tuple(ctx.needs_input_grad[i] for i in (0, 1, 2, 3, 4, 7))
        need_tau = (ctx.needs_input_grad[9], ctx.needs_input_grad[10])
        if g_t is None:
            g_t = torch.zeros_like(t_out)
        reg = reg_jumps(cfg, n_out, t_out.dtype)
        grads = recurrent_kernels.recurrent_backward(cfg, saved, g_t, need, reg, need_tau)
        if grads is None:
            grads = _reference_backward(cfg, saved, g_t, need, need_tau)
        g_tin, g_w, g_d, g_rw, g_rd, g_a, g_tm, g_ts = grads
        return (g_tin, g_w, g_d, g_rw, g_rd, None, None, g_a, None,
                *as_tau_dtypes((g_tm, g_ts), ctx.tau_dtypes))


def recurrent_layer_forward(model: NeuronModel, spikes: Spikes, weight: Tensor,
                            delay: Tensor | None, rec_weight: Tensor, rec_delay: Tensor, *,
                            readout: str | None = None,
                            spike_reg: tuple[float, float] | None = None,
                            xtol: float | None = None) -> Spikes | Tensor:
    """One recurrent spiking layer with closed-form adjoint gradients (functional form).

    Args:
        model: ``LIF`` or ``CubaLIF``, ``N`` neurons; learnable ``tau_mem`` / ``tau_syn`` get
            gradients (``[N]``), other learnable parameters are refused.
        spikes: input events (``n_units = N_in``); ``times`` and ``values`` may require grad.
        weight: ``[N, N_in]``; delay: seconds, ``[N, N_in]``, ``[N_in]`` or ``None``.
        rec_weight: ``[N, N]`` (target, source); rec_delay: seconds, ``[N, N]`` or ``[N]`` (per
            source axon), ``>= 0`` (zero and sub-step delays allowed).
        readout: ``None`` (the spikes) or ``"first_spike"`` (``[B, N]`` first spike times).
        spike_reg: ``(strength, target)``: the spike-count regulariser (as
            :func:`ctsnn.gradients.eventprop.layer_forward`).
        xtol: spike-time tolerance of the engine (s).

    Returns:
        :class:`Spikes` with differentiable ``times``, or the first spike times ``[B, N]``.
    """
    if not isinstance(spikes, Spikes):
        raise TypeError(f"spikes must be a ctsnn.Spikes, got {type(spikes).__name__}")
    nrn = neuron_constants(model)
    if not nrn.spiking:
        raise ValueError(f"recurrent_layer_forward: {type(model).__name__} does not spike, so "
                         "it has no recurrence to drive")
    if readout not in (None, "first_spike"):
        raise ValueError(f"readout must be None or 'first_spike', got {readout!r}")
    n = nrn.n
    if weight.ndim != 2 or weight.shape != (n, spikes.n_units):
        raise ValueError(f"weight must have shape [N, N_in] = [{n}, {spikes.n_units}], got "
                         f"{list(weight.shape)}")
    delay = full_delay(weight, delay)
    if rec_weight.shape != (n, n):
        raise ValueError(f"rec_weight must have shape [N, N] = [{n}, {n}], got "
                         f"{list(rec_weight.shape)}")
    if rec_delay.shape == (n,):
        rec_delay = rec_delay.expand(n, n)
    if rec_delay.shape != (n, n):
        raise ValueError(f"rec_delay must have shape [{n}, {n}] or [{n}], got "
                         f"{list(rec_delay.shape)}")
    for name, d in (("delay", delay), ("rec_delay", rec_delay)):
        if d is not None and not bool(torch.isfinite(d.detach()).all() & (d.detach() >= 0).all()):
            raise ValueError(f"{name} must be finite and non-negative (seconds)")
    t_end = float(torch.tensor(spikes.n_steps, dtype=torch.float64) * spikes.dt)
    cfg = LayerConfig(nrn=nrn, dt=spikes.dt, n_steps=spikes.n_steps,
                      batch_size=spikes.batch_size, n_in=spikes.n_units, t_end=t_end,
                      spike_reg=spike_reg, readout=readout, xtol=xtol)
    t_out, b_out, n_out = RecurrentLayerFn.apply(
        spikes.times.to(weight.dtype), weight, delay, rec_weight.to(weight.dtype),
        rec_delay.to(weight.dtype).contiguous(), spikes.batch, spikes.units,
        spikes.values.to(weight.dtype), cfg, *learnable_taus(model))
    out = Spikes(t_out, n_out, b_out, dt=spikes.dt, n_steps=spikes.n_steps,
                 batch_size=spikes.batch_size, n_units=n)
    return out.first_times() if readout == "first_spike" else out
