"""Fused recurrent LIF / CubaLIF with DelRec's axonal spike scatter: all ``T`` steps in one
autograd node.

A discrete-time ``LIF`` or ``CubaLIF`` layer whose recurrent connection is a
:class:`~ctsnn.synapses.RecurrentDense` on the compiled spike-scatter path
(``Triangle`` kernel, per-axon delays, :meth:`RecurrentDense.scatter_applies`) cannot run
through :mod:`~ctsnn.engine.compiled.lif_bptt` (its input depends on its own spikes), and on the
engine's step loop each step costs a read, a write and the neuron's PyTorch operations, forward
and backward. Here the whole sequence is one :class:`torch.autograd.Function`:

* forward, per step ``t`` (one numba call and, when the step's delayed sum is not zero, one
  ``[B, N] x [N, N]`` product by PyTorch's BLAS on one thread): the recurrent input
  ``x[t] = (y[t] Wᵀ) ⊙ mask`` (``y[t]`` the ring slot of step ``t``: the delayed presynaptic
  sum ``Σ_τ h(τ) ⊙ S[t - τ]``), the neuron's affine step (:func:`step_coefficients`, the same
  update as :mod:`~ctsnn.engine.compiled.lif_bptt`: flow, feed-forward jumps, then the
  recurrent input, added to the jump target as the engine's ``receive`` does), threshold,
  reset, and the scatter of the step's spikes into the ring slots ``(t + lag) mod L`` (cost
  spikes x K); the kernel then moves the next step's slot into ``y[t + 1]`` and clears it.
* backward, one reverse sweep (one numba call and one product per step): the gradient of the
  step's spikes from the future reads they fed, ``dS[t][b, j] = Σ_k h[k, j] (G W)[t + lag]``
  (with ``G W`` kept batch last, ``[N, T, B]``, so the sums vectorise over the batch; the taps'
  gradient is accumulated over the spikes in the same pass), the surrogate gradient through
  ``v`` (and ``i``), and the gradient of the step's recurrent input ``G[t]`` (masked), whose
  product ``G[t] W`` the earlier steps read; the weight's gradient is one product at the end,
  ``Σ_t G[t]ᵀ y[t]``.

The product could be done in the kernel (``x`` already weighted in the ring: spikes x K x N per
step) but both directions need the dense ``G W`` anyway, and BLAS does the dense product at
several times the speed of a compiled loop (measured, docs/kernels-grid.md). Products run on
one thread, loops in a fixed order: the results do not depend on the thread count.

Saved for backward: ``u``, the spikes, ``y`` (``[T, B, N]`` each; ``i`` before each step for
CubaLIF); during backward ``G`` and ``G W``. The gradients of the taps and of the effective
weight reach ``delay_steps``, ``p_spread`` (``learn_width``) and ``weight`` through PyTorch
autograd, as on the reference path. Selection:
:func:`ctsnn.engine.compiled.lif_bptt.fused_lif_applies` (the fused LIF's conditions, with a
recurrent connection only when it takes the scatter path); the step loop with ``RingRead``
(kernels off, CUDA) stays the reference the tests compare with.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ...models.base import NeuronModel
from ...models.lif import CubaLIF
from ...surrogate import Surrogate
from ...synapses.recurrent import RecurrentDense
from ...synapses.ring_scatter import ScatterRun
from ..recurrence import start_recurrent
from ..result import SimulationResult
from ..spike_log import raster_spikes
from ..stepping import check_state
from .lif_bptt import (
    RESET_CODES,
    as_numpy,
    post_reset,
    reverse_row,
    step_coefficients,
    surrogate_terms,
)

__all__ = ["run_fused_recurrent"]


# --------------------------------------------------------------------------- kernels
@numba.njit(cache=True)
def _forward_step(t, jumps, cur, x, has_x, mask, v, i, A, B, C0, D, E, F, th, vr, mode, cuba,
                  spikes, u_all, i_before, v_rec, ring, first, h, y_all):
    """Step ``t`` of every sample; returns whether ``y[t + 1]`` (moved out of the ring) is
    non-zero. ``ring [B, L, N]``: one sample's ring stays in the cache while its spikes are
    scattered. ``jumps``, ``cur``, ``mask``, ``i_before``, ``v_rec`` may have 0 rows (absent);
    ``x [B, N]`` is read only if ``has_x``; ``h [K, N]`` the taps, lags ``first[j] + k``."""
    n_ring = ring.shape[1]
    batch, n = v.shape
    n_taps = h.shape[0]
    has_j = jumps.shape[0] > 0
    has_c = cur.shape[0] > 0
    has_m = mask.shape[0] > 0
    rec = v_rec.shape[0] > 0
    base = t % n_ring
    for b in range(batch):
        for k in range(n):
            vk = v[b, k]
            u = A[k] * vk + B[k] * i[b, k] + C0[k]
            if has_c:
                u += D[k] * cur[t, b, k]
            if cuba:
                i_before[t, b, k] = i[b, k]
                ik = E[k] * i[b, k]
                if has_c:
                    ik += F[k] * cur[t, b, k]
                if has_j:
                    ik += jumps[t, b, k]
                if has_x:
                    ik += x[b, k] * mask[b, k] if has_m else x[b, k]
                i[b, k] = ik
            else:
                if has_j:
                    u += jumps[t, b, k]
                if has_x:
                    u += x[b, k] * mask[b, k] if has_m else x[b, k]
            s = 1.0 if u - th[k] >= 0.0 else 0.0
            if mode == 2 and not vk - th[k] < 0.0:
                s = 0.0
            u_all[t, b, k] = u
            spikes[t, b, k] = s
            vn = post_reset(u, s, th[k], vr[k], mode)
            v[b, k] = vn
            if rec:
                v_rec[t, b, k] = vn
        s_row = spikes[t, b]
        for k in range(n):
            if s_row[k] != 0.0:
                for kk in range(n_taps):
                    slot = base + first[k] + kk  # lags in [1, L - 1]: at most one wrap
                    if slot >= n_ring:
                        slot -= n_ring
                    ring[b, slot, k] += h[kk, k]
    nonzero = False
    if t + 1 < y_all.shape[0]:
        slot = (t + 1) % n_ring
        for b in range(batch):
            for k in range(n):
                val = ring[b, slot, k]
                y_all[t + 1, b, k] = val
                ring[b, slot, k] = 0.0
                if val != 0.0:
                    nonzero = True
    return nonzero


@numba.njit(cache=True, fastmath=True)
def _spike_grads(t, spikes_t, first, h_t, gyt, ds_t, gh_t, column, spiking):
    """The transpose of step ``t``'s scatter, batch innermost: ``gyt [N, T, B]`` holds
    ``G W`` (the gradient of the delayed sums), ``ds_t[j, b] = Σ_k h[k, j] gyt[j, t + lag, b]``
    and, over the spikes, ``gh[k, j] += Σ_b S[b, j] gyt[j, t + lag, b]`` (``h_t = hᵀ``,
    ``gh_t = ghᵀ [N, K]``, lags ``first[j] + k``; ``column [B]`` and ``spiking [B]`` (int)
    scratch). The dense loop over the batch is contiguous and vectorises (``fastmath``); the
    tap sums run over the spiking samples only. Fixed order: the result does not depend on the
    thread count.
    """
    n_batch, n = spikes_t.shape
    n_taps = h_t.shape[1]
    n_reads = gyt.shape[1]
    for j in range(n):
        t0 = t + first[j]
        n_k = min(n_taps, n_reads - t0)
        row = ds_t[j]
        n_s = 0
        for b in range(n_batch):
            row[b] = 0.0
            c = spikes_t[b, j]
            if c != 0.0:
                column[n_s] = c
                spiking[n_s] = b
                n_s += 1
        for k in range(n_k):
            g = gyt[j, t0 + k]
            hk = h_t[j, k]
            for b in range(n_batch):
                row[b] += hk * g[b]
            if n_s:
                acc = g[0] * 0.0
                for q in range(n_s):
                    acc += column[q] * g[spiking[q]]
                gh_t[j, k] += acc


@numba.njit(cache=True)
def _backward_step(t, g_spikes, sd, code, param, g_rec, u_all, spikes, i_before, cur, v0,
                   A, B, D, E, F, th, vr, mode, cuba, detach, g_jumps, g_cur, lv_all, li_all,
                   acc, mask, first, h_t, gy, gh_t, gy_next, ds, gm_all, work, spiking):
    """Step ``t`` of the reverse sweep (the transpose of :func:`_forward_step`'s
    linearisation, the per-step body of ``lif_bptt``'s backward kernel plus the recurrence).

    ``gy_next [B, N]`` is ``G[t + 1] W`` (stored first into ``gy [N, T, B]``, batch last);
    ``ds [N, B]`` receives the gradient of step ``t``'s spikes through the ring, ``gh_t``
    accumulates the taps' gradient, ``gm_all[t]`` receives ``G[t]``, the gradient of the
    (unmasked) recurrent read of step ``t``. ``lv_all`` / ``li_all`` carry the state's
    gradient; ``acc [8, N]`` as in ``lif_bptt``; ``work [4, max(N, B)]``, ``spiking [B]``
    scratch.
    """
    n_steps = spikes.shape[0]
    batch, n = v0.shape
    if t + 1 < n_steps:
        for k in range(n):
            for b in range(batch):
                gy[k, t + 1, b] = gy_next[b, k]
    _spike_grads(t, spikes[t], first, h_t, gy, ds, gh_t, work[3, :batch], spiking)
    has_m = mask.shape[0] > 0
    gu_v, vp_v, sd_v = work[0, :n], work[1, :n], work[2, :n]
    for b in range(batch):
        reverse_row(t, b, g_spikes, ds, sd, code, param, g_rec, u_all, spikes, i_before, cur,
                    v0, A, B, D, E, F, th, vr, mode, detach, cuba, g_jumps, g_cur, lv_all,
                    li_all, acc, gu_v, vp_v, sd_v)
        gj = g_jumps[t, b]
        gm = gm_all[t, b]
        for k in range(n):
            gm[k] = gj[k] * mask[b, k] if has_m else gj[k]


# --------------------------------------------------------------------------- autograd
def _steps(like: Tensor, rows: int) -> Tensor:
    return like.new_zeros((rows, *like.shape[-2:]))


class _FusedRecurrentLIF(torch.autograd.Function):
    """``(jumps, current, v0, i0, A, B, C0, D, E, F, th, vr, coefs, weight, run, ...) ->
    (spikes, v_rec, v_end, i_end)``; ``coefs [K, N]`` the taps, ``weight`` the effective
    recurrent weight, ``run`` the connection's :class:`ScatterRun` (ring, lags, mask)."""

    @staticmethod
    def forward(ctx, jumps, cur, v0, i0, A, B, C0, D, E, F, th, vr, coefs, weight,  # type: ignore[override]
                run, n_steps, mode, cuba, detach, surrogate, record_v):
        n_batch, n = v0.shape
        spikes = v0.new_empty((n_steps, n_batch, n))
        u_all = torch.empty_like(spikes)
        y_all = torch.zeros_like(spikes)
        i_before = torch.empty_like(spikes) if cuba else _steps(v0, 0)
        v_rec = torch.empty_like(spikes) if record_v else _steps(v0, 0)
        v_end, i_end = v0.detach().clone(), i0.detach().clone()
        x = torch.empty_like(v0)
        mask = (v0.new_zeros((0, n)) if run.mask is None
                else run.mask.detach().to(v0.dtype).contiguous())
        arrays = [as_numpy(a) for a in (jumps, cur, x)]
        arrays += [mask.numpy(), v_end.numpy(), i_end.numpy()]
        arrays += [as_numpy(a) for a in (A, B, C0, D, E, F, th, vr)]
        outputs = [a.numpy() for a in (spikes, u_all, i_before, v_rec)]
        ring = np.zeros((n_batch, run.ring.shape[0], n), dtype=run.coefs.dtype)
        y_np = y_all.numpy()
        weight_t = run.weight_t
        has_x = False  # y[0] = 0: nothing has been scattered yet
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the small per-step products (see ring_scatter)
        try:
            for t in range(n_steps):
                if has_x:
                    torch.matmul(y_all[t], weight_t, out=x)
                has_x = _forward_step(t, *arrays[:3], has_x, *arrays[3:], mode, cuba,
                                      *outputs, ring, run.first, run.coefs, y_np)
        finally:
            torch.set_num_threads(threads)
        run.step = run.n_reads = n_steps
        ctx.save_for_backward(u_all, spikes, i_before, cur, v0, A, B, D, E, F, th, vr, y_all,
                              mask)
        ctx.run = run
        ctx.flags = (mode, cuba, detach or surrogate is None, surrogate, jumps.shape[0] > 0,
                     record_v)
        if surrogate is None:
            ctx.mark_non_differentiable(spikes)
        return spikes, v_rec, v_end, i_end

    @staticmethod
    @once_differentiable
    def backward(ctx, g_spikes, g_rec, g_v_end, g_i_end):  # type: ignore[override]
        u_all, spikes, i_before, cur, v0, A, B, D, E, F, th, vr, y_all, mask = ctx.saved_tensors
        mode, cuba, detach, surrogate, has_j, record_v = ctx.flags
        run: ScatterRun = ctx.run
        n_steps, n_batch, n = spikes.shape
        sd, code, param = _steps(v0, 0), -1, 0.0  # -1: no spike gradient
        if surrogate is not None:
            sd, code, param = surrogate_terms(surrogate, u_all, th, sd)
        g_spikes = (torch.zeros_like(spikes) if g_spikes is None or surrogate is None
                    else g_spikes.to(spikes.dtype).contiguous())
        g_rec = g_rec.contiguous() if record_v and g_rec is not None else _steps(v0, 0)
        lv = torch.zeros_like(v0) if g_v_end is None else g_v_end.clone().contiguous()
        li = torch.zeros_like(v0) if g_i_end is None else g_i_end.clone().contiguous()
        g_jumps = torch.empty_like(spikes)
        want_cur = ctx.needs_input_grad[1]
        g_cur = torch.empty_like(spikes) if want_cur else _steps(v0, 0)
        acc = v0.new_zeros((8, n))
        gm_all = torch.empty_like(spikes)
        gy = v0.new_empty((n, n_steps, n_batch))  # [:, t] written before any read
        gy_next = torch.zeros_like(v0)
        ds = v0.new_empty((n, n_batch))
        gh_t = np.zeros_like(run.coefs_t)
        work = np.empty((4, max(n, n_batch)), dtype=gh_t.dtype)
        arrays = [as_numpy(a) for a in (g_spikes, sd)]
        arrays2 = [as_numpy(a) for a in (g_rec, u_all, spikes, i_before, cur, v0, A, B, D, E, F,
                                         th, vr)]
        outs = [g_jumps.numpy(), g_cur.numpy(), lv.numpy(), li.numpy(), acc.numpy(),
                as_numpy(mask), run.first, run.coefs_t, gy.numpy(), gh_t, gy_next.numpy(),
                ds.numpy(), gm_all.numpy(), work, np.empty(n_batch, dtype=np.int64)]
        weight = run.weight
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for t in range(n_steps - 1, -1, -1):
                _backward_step(t, *arrays, code, param, *arrays2, mode, cuba, detach, *outs)
                if t > 0:  # G[0] W is never read: no step before 0 wrote spikes
                    torch.matmul(gm_all[t], weight, out=gy_next)
            need = ctx.needs_input_grad
            # on one thread too: a split of the sum over T B would change the bits with the
            # thread count (measured: 1 vs 2 threads differ in the last bits)
            g_weight = gm_all.reshape(-1, n).t() @ y_all.reshape(-1, n) if need[13] else None
        finally:
            torch.set_num_threads(threads)
        g_coefs = torch.from_numpy(gh_t).t().contiguous() if need[12] else None
        gA, gB, gC0, gD, gE, gF, gth, gvr = acc.unbind(0)
        return (g_jumps if has_j else None, g_cur if want_cur else None, lv,
                li if cuba else None, gA, gB, gC0, gD, gE, gF, gth, gvr, g_coefs, g_weight,
                None, None, None, None, None, None, None)


def run_fused_recurrent(model: NeuronModel, recurrent: RecurrentDense, *, dt: float,
                        n_steps: int, batch_size: int, state: tuple, jumps: Tensor | None,
                        current: Tensor | None, method: str, surrogate: Surrogate | None,
                        detach_reset: bool, record: tuple = (), dtype: torch.dtype,
                        device: torch.device | str) -> SimulationResult:
    """The engine's discrete run of an eligible ``LIF`` / ``CubaLIF`` population with its
    recurrent connection on the scatter path (see the module docstring and
    :func:`~ctsnn.engine.compiled.lif_bptt.fused_lif_applies`); same results as the step loop.

    Args:
        model: the population's ``LIF`` or ``CubaLIF``.
        recurrent: its :class:`~ctsnn.synapses.RecurrentDense` (started here, as the engine
            would: the dropout mask is drawn once per sequence).
        dt: grid step (s); n_steps: ``T``; batch_size: ``B``; state: initial state ``[B, N]``.
        jumps, current: feed-forward input ``[T, B, N]`` or ``None``.
        method, surrogate, detach_reset, record: as for the engine's discrete loop
            (``record`` is ``()`` or ``("v",)``).
        dtype, device: of the run.

    Returns:
        the :class:`~ctsnn.engine.SimulationResult` of the step loop (raster, spikes, final
        state, ``v`` if recorded).
    """
    start_recurrent(recurrent, batch_size, dtype, torch.device(device), dt, "discrete")
    run = recurrent.scatter_run
    if run is None:
        raise RuntimeError("run_fused_recurrent: the recurrent connection did not take the "
                           "scatter path (check RecurrentDense.scatter_applies first)")
    coef = step_coefficients(model, method, dt)
    cuba = isinstance(model, CubaLIF)
    v0 = state.v
    i0 = state.i if cuba else torch.zeros_like(v0)
    none = v0.new_zeros((0, *v0.shape))
    coefs, weight = run.inputs
    record_v = "v" in record
    spikes, v_rec, v_end, i_end = _FusedRecurrentLIF.apply(
        none if jumps is None else jumps.contiguous(),
        none if current is None else current.contiguous(),
        v0, i0, *coef, model.v_threshold.to(v0.dtype), model.v_reset.to(v0.dtype), coefs,
        weight, run, int(n_steps), RESET_CODES[model.reset_mode], cuba, bool(detach_reset),
        surrogate, record_v)
    final = model.State(v_end, i_end) if cuba else model.State(v_end)
    check_state(model, final, max(n_steps - 1, 0), dt, method)
    zero = torch.zeros_like(v0)
    out = raster_spikes(spikes, dt, None, n_steps, tuple(zero.shape), zero)
    return SimulationResult(spikes=out, states={"v": v_rec} if record_v else {},
                            final_state=final, raster=spikes, output=None, saved={})
