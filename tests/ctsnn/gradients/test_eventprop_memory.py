"""Bytes per spike of the compiled EventProp layers (issue 10, W2 memory): what a layer keeps
and what its backward allocates per input / output spike, with the results unchanged bit for
bit (the float32 kernels read float32 arrays where they used float64 copies)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ctsnn
from ctsnn.compiled import kernels_enabled, use_kernels
from ctsnn.gradients import eventprop as ep
from ctsnn.gradients.eventprop import kernels
from ctsnn.gradients.eventprop.layout import index_dtype, sample_order
from ctsnn.gradients.eventprop.spiking import SpikingLayerFn

pytestmark = pytest.mark.skipif(not kernels_enabled(torch.zeros(1)),
                                reason="kernels off (CTSNN_KERNELS=0) or no numba")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.lists(st.integers(0, 4), max_size=80))
def test_sample_order_is_a_stable_argsort(bsz, samples):
    b = np.array([s % bsz for s in samples], dtype=np.int64)
    for dtype in (np.int32, np.int64):
        order = np.empty(b.size, dtype=dtype)
        ptr = sample_order(b, bsz, order)
        np.testing.assert_array_equal(order, np.argsort(b, kind="stable"))
        np.testing.assert_array_equal(ptr, np.concatenate(
            [[0], np.cumsum(np.bincount(b, minlength=bsz))]))


def test_index_dtype():
    assert index_dtype(0) is np.int32 and index_dtype(2**31 - 1) is np.int32
    assert index_dtype(2**31) is np.int64


def _network(dtype, seed=5, n_ev=400, bsz=4, n_in=12, n=16, n_steps=60):
    g = torch.Generator().manual_seed(seed)
    dt = 1e-3
    t_in = (torch.rand(n_ev, generator=g, dtype=torch.float64) * 0.05).to(dtype)
    spikes = ctsnn.Spikes(t_in, torch.randint(0, n_in, (n_ev,), generator=g),
                          torch.randint(0, bsz, (n_ev,), generator=g), dt=dt, n_steps=n_steps,
                          batch_size=bsz, n_units=n_in)
    w1 = (1.0 + 1.0 * torch.randn(n, n_in, generator=g)).to(dtype).requires_grad_()
    d1 = (0.01 * torch.rand(n, n_in, generator=g)).to(dtype).requires_grad_()
    w2 = (0.5 * torch.randn(3, n, generator=g)).to(dtype).requires_grad_()
    d2 = (0.01 * torch.rand(3, n, generator=g)).to(dtype).requires_grad_()
    hidden = ctsnn.CubaLIF(n, tau_mem=0.02, tau_syn=0.005, v_threshold=1.0).to(dtype)
    out = ctsnn.CubaLI(3, tau_mem=0.02, tau_syn=0.005).to(dtype)
    return spikes, (w1, d1, w2, d2), hidden, out


def test_index_outputs_get_no_materialized_gradients(monkeypatch):
    """The batch / unit outputs of a spiking layer are integers: autograd hands its backward
    ``None`` for them instead of zero-filled ``[K]`` int64 tensors (16 B per spike)."""
    spikes, (w1, d1, w2, d2), hidden, out = _network(torch.float32)
    seen = []
    backward = SpikingLayerFn.backward

    def spy(ctx, g_t, g_b, g_n):
        seen.append((g_t is None, g_b, g_n))
        return backward(ctx, g_t, g_b, g_n)

    monkeypatch.setattr(SpikingLayerFn, "backward", staticmethod(spy))
    with use_kernels(True):
        h = ep.layer_forward(hidden, spikes, w1, d1)
        z = ep.layer_forward(out, h, w2, d2, readout="avg_exp")
    assert len(h) > 20
    z.square().sum().backward()
    assert seen == [(False, None, None)]
    assert w1.grad is not None and bool(w1.grad.abs().sum() > 0)


def test_layer_output_amplitudes_are_one_stored_value():
    """A spiking layer's output amplitudes are all 1: one stored value expanded to ``[K]``
    (4 B per spike less kept by the result and the next layer), read as ones."""
    spikes, (w1, d1, _, _), hidden, _ = _network(torch.float32)
    with use_kernels(True):
        h = ep.layer_forward(hidden, spikes, w1, d1)
    assert len(h) > 20
    assert h.values.shape == h.times.shape and h.values.stride() == (0,)
    assert h.values.dtype == torch.float32 and bool((h.values == 1).all())


def _spikes_like(s, times, values):
    return ctsnn.Spikes.from_sorted_events(times, s.units, s.batch, values=values, dt=s.dt,
                                           n_steps=s.n_steps, batch_size=s.batch_size,
                                           n_units=s.n_units)


def _grads(*, t_grad: bool, a_grad: bool, detach_hidden: bool, n_ev: int = 400) -> tuple:
    """Gradients of a fixed loss of a CubaLIF -> CubaLI network (float32, kernels) w.r.t. the
    weights and delays (and the input times / amplitudes when they require grad)."""
    spikes, (w1, d1, w2, d2), hidden, out = _network(torch.float32, n_ev=n_ev)
    t = spikes.times.clone().requires_grad_(t_grad)
    a = spikes.values.clone().requires_grad_(a_grad)
    with use_kernels(True):
        h = ep.layer_forward(hidden, _spikes_like(spikes, t, a), w1, d1)
        if detach_hidden:
            h = _spikes_like(h, h.times.detach(), h.values)
        z = ep.layer_forward(out, h, w2, d2, readout="avg_exp")
        loss = (z * torch.linspace(-1.0, 1.0, z.numel()).reshape(z.shape)).sum()
        params = [w2, d2] if detach_hidden else [w1, d1, w2, d2]
        extra = ([t] if t_grad else []) + ([a] if a_grad else [])
        return torch.autograd.grad(loss, params + extra)


def test_unneeded_input_gradients_are_skipped_with_the_same_results():
    """``dL/dt_in`` and ``dL/da`` are accumulated only when an input needs them; the weight
    and delay gradients are the same bit for bit (spiking layer and readout)."""
    full = _grads(t_grad=True, a_grad=True, detach_hidden=False)
    assert len(full) == 6 and all(bool(g.abs().sum() > 0) for g in full)
    none = _grads(t_grad=False, a_grad=False, detach_hidden=False)
    for a, b in zip(full[:4], none, strict=True):
        assert torch.equal(a, b)
    readout_only = _grads(t_grad=False, a_grad=False, detach_hidden=True)
    for a, b in zip(full[2:4], readout_only, strict=True):
        assert torch.equal(a, b)


def test_backward_allocates_few_bytes_per_spike():
    """numpy allocations of the compiled backward (tracemalloc) per spike, float32 layers:
    spiking layer: float64 input times and ``dL/dt_in``, the sample grouping int32 per input
    spike (20 B; the amplitudes stay float32, no ``dL/da`` unless needed), per output spike
    the grouping position int32 and, in neuron order, float64 time, float32 current and
    ``dL/dt_k`` (20 B), plus arrays of the weights' size and the kernel's scratch per sample
    and per (sample, neuron); the readout only its ``dL/dt_in`` (8 B per input spike).
    Before: 48 B per input spike (float64 amplitudes, ``dL/da``, an int64 grouping and its
    argsort) and 24 B per output spike (int64 positions); the readout 32 B per input spike."""
    spikes, (w1, d1, w2, d2), hidden, out = _network(torch.float32, n_ev=6000)
    n, n_in = w1.shape
    with use_kernels(True):
        h = ep.layer_forward(hidden, spikes, w1, d1)
        saved, cfg = h.times.grad_fn.saved_tensors, h.times.grad_fn.cfg
        k, e = len(h), len(spikes)
        assert k > 1000
        g_t = torch.randn(k, generator=torch.Generator().manual_seed(1))
        weights = 8 * 8 * n * n_in + 8 * 8 * n + 16384  # grads, chunk partials, w, d, factors
        # the kernel's scratch (numba's allocations are traced too): per input spike of the
        # widest sample and per spike of the busiest (sample, neuron)
        widest = int(torch.bincount(spikes.batch).max())
        busiest = int(torch.bincount(h.batch * n + h.units).max())
        weights += 56 * widest + 136 * busiest
        need = (True, True, True, False)
        kernels.spiking_backward(cfg, saved, g_t, need, torch.zeros(0))  # (kernels loaded)
        tracemalloc.start()
        try:
            kernels.spiking_backward(cfg, saved, g_t, need, torch.zeros(0))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak <= 20 * e + 20 * k + weights, (peak, e, k)
        t_h = h.times.detach().requires_grad_()  # (the readout's backward alone)
        z = ep.layer_forward(out, _spikes_like(h, t_h, h.values), w2, d2, readout="avg_exp")
        z.sum().backward(retain_graph=True)  # (kernels loaded)
        tracemalloc.start()
        try:
            z.sum().backward()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak <= 8 * k + 8 * 8 * 3 * n + 16384, (peak, k)
