"""The compiled EventProp backward's data passing (``ctsnn.gradients.eventprop.layout`` and
the float32 handling of ``kernels.spiking_backward``): the counting sort equals a stable
argsort, and a float32 layer's backward equals the float64 kernel on its exactly upcast
inputs, bit for bit (per-spike arrays kept in float32 only meet float64 values)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ctsnn
from ctsnn.compiled import kernels_enabled, use_kernels
from ctsnn.gradients import eventprop as ep
from ctsnn.gradients.eventprop import kernels
from ctsnn.gradients.eventprop.layout import by_neuron, neuron_layout
from ctsnn.gradients.eventprop.spiking import reg_jumps

pytestmark = pytest.mark.skipif(not kernels_enabled(torch.zeros(1)),
                                reason="kernels off (CTSNN_KERNELS=0) or no numba")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5),
       st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4)), max_size=60))
def test_neuron_layout_is_the_inverse_of_a_stable_argsort(bsz, n, pairs):
    b = np.array([p[0] % bsz for p in pairs], dtype=np.int64)
    u = np.array([p[1] % n for p in pairs], dtype=np.int64)
    pos = np.empty(b.size, dtype=np.int32)
    ptr = neuron_layout(b, u, n, bsz * n, pos)
    seg = b * n + u
    order = np.argsort(seg, kind="stable")
    np.testing.assert_array_equal(pos[order], np.arange(seg.size))
    np.testing.assert_array_equal(ptr, np.concatenate([[0], np.cumsum(
        np.bincount(seg, minlength=bsz * n))]))
    x = torch.arange(seg.size, dtype=torch.float32) / 3
    for dtype in (np.float64, np.float32):
        got = by_neuron(pos, x, dtype)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, x.numpy()[order].astype(dtype))


def test_by_neuron_refuses_a_wrong_length():
    with pytest.raises(ValueError, match=r"x must have shape \[3\]"):
        by_neuron(np.arange(3), torch.zeros(4))


@pytest.mark.parametrize("spike_reg", [None, (0.3, 1.0)])
def test_float32_backward_is_the_float64_kernel_on_upcast_inputs(spike_reg):
    g = torch.Generator().manual_seed(3)
    n_ev, bsz, n_in, n = 60, 3, 5, 6
    t_in = (torch.rand(n_ev, generator=g) * 0.04).float()
    spikes = ctsnn.Spikes(t_in, torch.randint(0, n_in, (n_ev,), generator=g),
                          torch.randint(0, bsz, (n_ev,), generator=g), dt=2e-3, n_steps=30,
                          batch_size=bsz, n_units=n_in)
    w = (2.0 + 1.5 * torch.randn(n, n_in, generator=g)).requires_grad_()
    d = (0.01 * torch.rand(n, n_in, generator=g)).requires_grad_()
    model = ctsnn.CubaLIF(n, tau_mem=0.02, tau_syn=0.005, v_threshold=1.0).to(torch.float32)
    with use_kernels(True):
        out = ep.layer_forward(model, spikes, w, d, spike_reg=spike_reg)
    fn = out.times.grad_fn
    saved, cfg = fn.saved_tensors, fn.cfg
    k = out.times.numel()
    assert k > 10 and saved[0].dtype == torch.float32
    g_t = torch.randn(k, generator=g)
    reg = reg_jumps(cfg, out.units, torch.float32) if spike_reg else torch.zeros(0)
    need = (True, True, True, True)
    got = kernels.spiking_backward(cfg, saved, g_t, need, reg)
    up = tuple(x.double() if x is not None and x.is_floating_point() else x for x in saved)
    ref = kernels.spiking_backward(cfg, up, g_t.double(), need,
                                   reg.double() if spike_reg else reg)
    assert got[4:] == (None, None) and ref[4:] == (None, None)  # no time-constant gradients
    for a, b in zip(got[:4], ref[:4], strict=True):
        assert a.dtype == torch.float32 and torch.equal(a, b.float())


@pytest.mark.parametrize("bad", ["weight", "delay"])
def test_layer_forward_refuses_non_finite_weights_and_delays(bad):
    """The schedule is built from ``weight`` / ``delay`` directly (no ``Dense`` copy that
    validated them): ``layer_forward`` checks them once, naming the tensor."""
    spikes = ctsnn.Spikes(torch.tensor([0.001, 0.002]), torch.tensor([0, 1]), torch.tensor([0, 0]),
                          dt=1e-3, n_steps=10, batch_size=1, n_units=2)
    w, d = torch.ones(3, 2), torch.full((3, 2), 0.002)
    {"weight": w, "delay": d}[bad][1, 0] = float("nan")
    with pytest.raises(ValueError, match=rf"{bad} contains a non-finite value"):
        ep.layer_forward(ctsnn.CubaLIF(3), spikes, w, d)
