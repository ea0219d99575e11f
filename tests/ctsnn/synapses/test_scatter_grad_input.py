"""``dL/dx`` of the spike scatter (``ctsnn.synapses.scatter_grad_input``): equal to the
reference tap convolution's autograd (float64), the ``rows`` argument (skipped rows are
exactly zero, the others unchanged), bit-identical on 1 and 2 threads, and its plumbing
(``Dense.input_rows``, ``SequenceDropout.with_rows``, ``DCLSNet``) leaves the network's
gradients unchanged."""

from __future__ import annotations

import contextlib

import numba
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ctsnn.papers.dcls as dcls_mod
from ctsnn.compiled import kernels_enabled, use_kernels
from ctsnn.dropout import SequenceDropout
from ctsnn.papers.dcls import DCLSConfig, DCLSNet
from ctsnn.synapses import Dense
from ctsnn.synapses import spike_scatter as scatter_mod
from ctsnn.synapses.conv import tap_conv
from ctsnn.synapses.kernels import Taps, gaussian_support_taps, rounded_taps, triangle_taps
from ctsnn.synapses.scatter_grad_input import (
    GX_SLACK,
    GX_TARGETS,
    grad_input,
    input_windows,
    mask_input_grad,
)
from ctsnn.synapses.spike_scatter import spike_scatter
from ctsnn.synapses.tap_scatter import window_lanes

F64 = torch.float64
K = 9
pytestmark = pytest.mark.skipif(not kernels_enabled(torch.zeros(1)),
                                reason="kernels off (CTSNN_KERNELS=0) or no numba")

TAPS = {
    "rounded": lambda d: rounded_taps(d, K),
    "triangle": lambda d: triangle_taps(d, K),
    "gaussian_0.5": lambda d: gaussian_support_taps(d, 0.5, 41),
}


def _case(seed, t=13, b=5, n_in=7, n_out=GX_TARGETS + 5, p=0.25, dtype=F64, kind="triangle"):
    """Spikes with values, taps with weights, an upstream gradient and random rows (two
    target blocks)."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(t, b, n_in, generator=g, dtype=F64) < p) * torch.randn(
        t, b, n_in, generator=g, dtype=F64)
    d = torch.rand(n_out, n_in, generator=g, dtype=F64) * (K - 1)
    w = torch.randn(n_out, n_in, generator=g, dtype=F64)
    taps = TAPS[kind](d)
    taps = Taps(taps.lags, (taps.coefs * w).to(dtype))
    rows = torch.rand(b, n_in, generator=g) < 0.6
    return x.to(dtype), taps, rows, g


def _grads(conv, x, taps, pad, up, **kw):
    x = x.detach().requires_grad_()
    coefs = taps.coefs.detach().requires_grad_()
    out = conv(x, Taps(taps.lags, coefs), pad, **kw)
    gx, gc = torch.autograd.grad((out * up).sum(), [x, coefs])
    return out.detach(), gx, gc


@pytest.mark.parametrize("kind", list(TAPS))
def test_rows_zero_skipped_rows_and_keep_the_others(kind):
    x, taps, rows, g = _case(1, kind=kind)
    pad = 3
    up = torch.randn(x.shape[0] + pad, x.shape[1], taps.coefs.shape[1], generator=g, dtype=F64)
    o_ref, gx_ref, gc_ref = _grads(tap_conv, x, taps, pad, up)
    o_all, gx_all, gc_all = _grads(spike_scatter, x, taps, pad, up)
    o, gx, gc = _grads(spike_scatter, x, taps, pad, up, rows=rows)
    for a in (o_all, o):
        torch.testing.assert_close(a, o_ref, rtol=1e-13, atol=1e-13)
    for a in (gc_all, gc):
        torch.testing.assert_close(a, gc_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx_all, gx_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx, gx_ref * rows, rtol=1e-12, atol=1e-12)
    assert torch.equal(gx[:, ~rows], torch.zeros_like(gx[:, ~rows]))  # exact zeros
    assert gx_ref[:, ~rows].abs().sum() > 0 and gx[:, rows].abs().sum() > 0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), t=st.integers(1, 20), b=st.integers(1, 6),
       n_in=st.integers(1, 9), n_out=st.integers(1, 2 * GX_TARGETS + 3),
       pad=st.integers(0, 10), kind=st.sampled_from(list(TAPS)), masked=st.booleans())
def test_random_shapes_equal_the_reference(seed, t, b, n_in, n_out, pad, kind, masked):
    x, taps, rows, g = _case(seed, t=t, b=b, n_in=n_in, n_out=n_out, kind=kind)
    up = torch.randn(t + pad, b, n_out, generator=g, dtype=F64)
    gx_ref = _grads(tap_conv, x, taps, pad, up)[1]
    kw = dict(rows=rows) if masked else {}
    gx = _grads(spike_scatter, x, taps, pad, up, **kw)[1]
    torch.testing.assert_close(gx, gx_ref * rows if masked else gx_ref, rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("width", range(1, 11))
def test_every_window_width(width):
    """Consecutive-lag windows of every width (lanes 1, 2, 6, 6, 6, 6, 8, 8, then one lane
    per non-zero lag), non-consecutive non-zero taps inside, synapses without non-zero tap, rows."""
    g = torch.Generator().manual_seed(width)
    n_out, n_in, k, t, b = GX_TARGETS + 3, 5, 14, 11, 4
    x = ((torch.rand(t, b, n_in, generator=g, dtype=F64) < 0.3) * 1.0).to(F64)
    base = torch.randint(0, k - width + 1, (n_out, n_in), generator=g)
    lags = base.unsqueeze(0) + torch.arange(width).reshape(-1, 1, 1)
    c = torch.randn(width, n_out, n_in, generator=g, dtype=F64)
    if width > 2:
        c[1, :3] = 0.0  # a hole inside the window
    c[:, 4, 2] = 0.0    # a synapse without non-zero tap
    rows = torch.rand(b, n_in, generator=g) < 0.7
    up = torch.randn(t + 2, b, n_out, generator=g, dtype=F64)
    base, w, _, _ = scatter_mod._windows(lags.numpy(), c.numpy())
    w = np.pad(w, ((0, 0), (0, 0), (0, window_lanes(w.shape[2]) - w.shape[2])))
    lanes = input_windows(base, w)[3].shape[1]
    assert lanes == {1: 1, 2: 2, 3: 6, 4: 6, 5: 6, 6: 6, 7: 8, 8: 8}.get(width, 1)
    gx_ref = _grads(tap_conv, x, Taps(lags, c), 2, up)[1]
    gx = _grads(spike_scatter, x, Taps(lags, c), 2, up, rows=rows)[1]
    torch.testing.assert_close(gx, gx_ref * rows, rtol=1e-12, atol=1e-12)


def _serial(s, _c, n, _w, *a):
    s(0, n, *a)


def _windows_of(lags, c):
    base, w, _, _ = scatter_mod._windows(lags.numpy(), c.numpy())
    w = np.pad(w, ((0, 0), (0, 0), (0, window_lanes(w.shape[2]) - w.shape[2])))
    return input_windows(base, w), int(base.max()) + w.shape[2] - 1


@pytest.mark.parametrize("r0", [0, 2])
def test_grad_input_on_a_chunk_of_samples(r0):
    """grad_input on the rows of samples ``r0 ..`` only (a chunk's scratch), the segments
    exactly as long as the windows' reach and NaN right after the rows (a read past them
    would show): those samples' dL/dx equal the reference, the others are not written."""
    g = torch.Generator().manual_seed(11)
    n_out, n_in, t, b, n = 9, 4, 10, 5, 3
    lags = (torch.tensor([2, 3, 4]).reshape(3, 1, 1) + torch.zeros(1, n_out, n_in)).long()
    c = torch.randn(3, n_out, n_in, generator=g, dtype=F64)  # width 3: 6 lanes, reach 7
    up = torch.randn(t, b, n_out, generator=g, dtype=F64)
    windows, reach = _windows_of(lags, c)
    seg = t + reach
    rows_g = torch.zeros(n_out, n, seg, dtype=F64)
    rows_g[:, :, :t] = up[:, r0:r0 + n].permute(2, 1, 0)  # the scratch: slack is zero
    gx = torch.full((t, b, n_in), float("nan"), dtype=F64)
    keep = torch.ones(b, n_in, dtype=torch.bool)
    memory = torch.full((n_out * n * seg + 16,), float("nan"), dtype=F64)
    memory[:n_out * n * seg] = rows_g.reshape(-1)
    grad_input(memory[:n_out * n * seg].view(n_out, n * seg).numpy(), seg, r0, n, windows,
               keep.numpy(), gx.numpy(), _serial)
    x = torch.zeros(t, b, n_in, dtype=F64)
    ref = _grads(tap_conv, x, Taps(lags, c), 0, up)[1]
    torch.testing.assert_close(gx[:, r0:r0 + n], ref[:, r0:r0 + n], rtol=1e-12, atol=1e-12)
    assert gx[:, :r0].isnan().all() and gx[:, r0 + n:].isnan().all()


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("t", [150, 7])
def test_grad_input_vector_blocks_with_and_without_slack(dtype, t):
    """Long rows (float32: 10 vectors of 16 as blocks of 5 + 5; float64: 19 of 8 as 7 + 6 + 6)
    and short ones, g with ``GX_SLACK`` finite columns after its segments (every position in
    whole vectors) or none (the last sample's last positions one by one), NaN past the
    array: both equal the reference, and each other to rounding."""
    g = torch.Generator().manual_seed(t)
    n_out, n_in, b = 37, 5, 3
    d = torch.rand(n_out, n_in, generator=g, dtype=F64) * 20
    taps = gaussian_support_taps(d, 0.5, 25)
    c = (taps.coefs * torch.randn(n_out, n_in, generator=g, dtype=F64)).to(dtype)
    up = torch.randn(t, b, n_out, generator=g, dtype=F64).to(dtype)
    windows, reach = _windows_of(taps.lags, c)
    seg = t + reach
    keep = torch.rand(b, n_in, generator=g) < 0.7
    ref = _grads(tap_conv, torch.zeros(t, b, n_in, dtype=F64), Taps(taps.lags, c.double()), 0,
                 up.double())[1] * keep
    got = []
    for extra in (0, GX_SLACK):
        memory = torch.full((n_out * (b * seg + extra) + 16,), float("nan"), dtype=dtype)
        rows_g = memory[:n_out * (b * seg + extra)].view(n_out, b * seg + extra)
        rows_g[:] = 0.0
        rows_g[:, :b * seg].view(n_out, b, seg)[:, :, :t] = up.permute(2, 1, 0)
        gx = torch.full((t, b, n_in), float("nan"), dtype=dtype)
        grad_input(rows_g.numpy(), seg, 0, b, windows, keep.numpy(), gx.numpy(), _serial)
        tol = 1e-12 if dtype == F64 else 2e-6 * ref.abs().max().item()
        torch.testing.assert_close(gx.double(), ref, rtol=tol, atol=tol)
        got.append(gx)
    torch.testing.assert_close(got[0], got[1], rtol=0, atol=1e-12 if dtype == F64 else
                               1e-6 * ref.abs().max().item())


def test_grad_input_rejects_short_segments_and_wrong_rows():
    g = torch.Generator().manual_seed(12)
    lags = torch.full((1, 3, 2), 4)
    c = torch.randn(1, 3, 2, generator=g, dtype=F64)
    windows, reach = _windows_of(lags, c)
    gx = np.zeros((6, 2, 2))
    keep = np.ones((2, 2), np.bool_)
    with pytest.raises(ValueError, match="reach"):
        grad_input(np.zeros((3, 2 * (6 + reach - 1))), 6 + reach - 1, 0, 2, windows, keep, gx,
                   _serial)
    with pytest.raises(ValueError, match="whole segments"):
        grad_input(np.zeros((3, 2 * (6 + reach))), 6 + reach, 1, 2, windows, keep, gx, _serial)
    with pytest.raises(ValueError, match="whole segments"):
        grad_input(np.zeros((3, 2 * (6 + reach) - 1)), 6 + reach, 0, 2, windows, keep, gx,
                   _serial)


@pytest.mark.parametrize("kind", list(TAPS))
def test_float32_to_rounding(kind):
    x, taps, rows, g = _case(2, t=30, b=4, n_in=12, n_out=70, kind=kind)
    up = torch.randn(x.shape[0], 4, 70, generator=g, dtype=F64)
    gx64 = _grads(spike_scatter, x, taps, 0, up, rows=rows)[1]
    taps32 = Taps(taps.lags, taps.coefs.float())
    gx32 = _grads(spike_scatter, x.float(), taps32, 0, up.float(), rows=rows)[1]
    scale = gx64.abs().max()
    assert (gx32.double() - gx64).abs().max() <= 1e-5 * scale


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba's pool has one thread")
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_threads_bit_identical(dtype, monkeypatch):
    x, taps, rows, g = _case(3, t=21, b=7, n_in=9, n_out=45, dtype=dtype)
    up = torch.randn(21, 7, 45, generator=g, dtype=F64).to(dtype)
    before = torch.get_num_threads()
    results = []
    try:
        for threads, work in ((1, 0), (2, 10**18), (2, 0)):  # serial, serial, 7 sample chunks
            monkeypatch.setattr(scatter_mod, "_PARALLEL_WORK", work)
            torch.set_num_threads(threads)
            results.append(_grads(spike_scatter, x, taps, 0, up, rows=rows)[1])
    finally:
        torch.set_num_threads(before)
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])


def test_uninitialised_output_is_fully_written(monkeypatch):
    x, taps, rows, g = _case(4)
    up = torch.randn(x.shape[0], x.shape[1], taps.coefs.shape[1], generator=g, dtype=F64)
    real = torch.Tensor.new_empty
    monkeypatch.setattr(torch.Tensor, "new_empty",
                        lambda self, *a, **k: real(self, *a, **k).fill_(float("nan")))
    gx = _grads(spike_scatter, x, taps, 0, up, rows=rows)[1]
    gx_ref = _grads(tap_conv, x, taps, 0, up)[1]
    torch.testing.assert_close(gx, gx_ref * rows, rtol=1e-12, atol=1e-12)


def test_rows_errors():
    x, taps, rows, _ = _case(5)
    with pytest.raises(ValueError, match=r"rows must have shape \[5, 7\]"):
        spike_scatter(x, taps, rows=rows.t())
    with pytest.raises(TypeError, match="rows must be a bool tensor"):
        spike_scatter(x, taps, rows=rows.double())
    with pytest.raises(TypeError, match="rows must be a torch.Tensor"):
        spike_scatter(x, taps, rows=[[True]])
    with pytest.raises(ValueError, match=r"rows must have shape"):
        mask_input_grad(x, rows[:2])


def test_mask_input_grad():
    x, _, rows, _ = _case(6)
    x = x.requires_grad_()
    y = mask_input_grad(x, rows)
    assert torch.equal(y, x)
    (gx,) = torch.autograd.grad((y * 3).sum(), [x])
    assert torch.equal(gx, 3 * rows.expand_as(x).to(F64))


@pytest.mark.parametrize("kernel, learn_delay", [("triangle", True), ("rounded", False)])
def test_dense_input_rows_same_gradient_on_every_path(kernel, learn_delay):
    """Scatter path (kernels on, sparse input) and reference path (kernels off): the same
    forward and gradients under ``input_rows``, ``dL/dx`` zero exactly off the rows."""
    g = torch.Generator().manual_seed(7)
    syn = Dense(6, 40, max_delay=0.008, dt=0.001, kernel=kernel, learn_delay=learn_delay,
                generator=g, dtype=F64)
    x = ((torch.rand(15, 4, 6, generator=g) < 0.1) * 1.0).to(F64).requires_grad_()
    rows = torch.rand(4, 6, generator=g) < 0.5
    up = torch.randn(syn.output_steps(15), 4, 40, generator=g, dtype=F64)
    res = []
    for on in (True, False):
        with use_kernels(on), syn.input_rows(rows):
            out = syn.jumps(x)
        res.append((out.detach(), *torch.autograd.grad((out * up).sum(),
                                                       [x, *syn.parameters()])))
    for a, b in zip(*res, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    gx = res[0][1]
    assert torch.equal(gx[:, ~rows], torch.zeros_like(gx[:, ~rows]))
    assert syn.__dict__.get("_input_rows") is None  # restored after the block
    with pytest.raises(ValueError, match=r"rows must have shape \[4, 6\]"), \
            syn.input_rows(rows[:3]):
        syn.jumps(x)
    with pytest.raises(TypeError, match="rows must be a bool tensor"), syn.input_rows(1):
        pass


def test_sequence_dropout_with_rows():
    drop = SequenceDropout(0.4)
    x = torch.rand(9, 5, 8, dtype=F64)
    torch.manual_seed(3)
    y0 = drop(x)
    torch.manual_seed(3)
    y1, rows = drop.with_rows(x)
    assert torch.equal(y0, y1)  # the same draw and values as forward
    assert rows.shape == (5, 8) and rows.dtype == torch.bool
    assert torch.equal((y1 != 0).any(0), rows) and 0 < rows.sum() < rows.numel()
    assert SequenceDropout(0.4, shared=False).with_rows(x)[1] is None
    assert SequenceDropout(0.0).with_rows(x)[1] is None
    assert drop.eval().with_rows(x) == (x, None)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("kernel", ["gaussian", "triangle"])
def test_dcls_network_gradients_unchanged_by_rows(kernel, fused, monkeypatch):
    """DCLSNet passes each dropout's kept rows to the next synapse, from the fused BatchNorm-LIF
    kernel's mask or from SequenceDropout.with_rows: every parameter gradient equals the run
    without them (float64, the scatter path taken)."""
    cfg = DCLSConfig.shd(n_in=12, n_hidden=40, n_layers=2, n_out=3, max_delay=0.25,
                         dropout=0.4, kernel=kernel)
    x = ((torch.rand(30, 6, 12, generator=torch.Generator().manual_seed(0)) < 0.05) * 1.0)
    taken = []
    real = scatter_mod.SpikeScatter.apply
    monkeypatch.setattr(scatter_mod.SpikeScatter, "apply",
                        lambda *a: (taken.append(a[-1] is not None), real(*a))[1])
    if not fused:
        monkeypatch.setattr(dcls_mod, "bn_lif_applies", lambda *a, **k: False)

    def run(with_rows):
        net = DCLSNet(cfg, generator=torch.Generator().manual_seed(1), dtype=F64)
        net.set_sigma(0.5)  # the final width: taps (the initial width is a dense window)
        with monkeypatch.context() as m:
            if not with_rows:  # every synapse computes its whole input gradient
                m.setattr(Dense, "input_rows", lambda self, rows: contextlib.nullcontext())
            torch.manual_seed(2)
            out = net(x.to(F64))
            (out * torch.linspace(-1, 1, out.numel(), dtype=F64).view_as(out)).sum().backward()
        return [p.grad for p in net.parameters()]

    with_rows, without = run(True), run(False)
    for a, b in zip(with_rows, without, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert taken.count(True) == 2 and taken.count(False) == 4  # layer 2 and readout
