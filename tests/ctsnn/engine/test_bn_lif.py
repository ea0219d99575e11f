"""BatchNorm (training, or evaluation without autograd) fused with the plain LIF
(:mod:`ctsnn.engine.compiled.bn_lif`): the batch statistics and running-statistics update are
BatchNorm's bit for bit; spikes and the gradients of the input and of BatchNorm's parameters
equal the unfused modules (BatchNorm1d then the engine's fused LIF) to rounding; serial and
parallel forms are identical; anything else is refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ctsnn
from ctsnn.compiled import kernels_enabled, use_kernels
from ctsnn.engine import run_population
from ctsnn.engine.compiled import bn_lif as mod
from ctsnn.surrogate import Surrogate, atan, fast_sigmoid, sigmoid, superspike, triangle

T, B, N = 11, 5, 6
DT = 1e-3

pytestmark = pytest.mark.skipif(not kernels_enabled(torch.zeros(1)), reason="kernels off")


def _modules(dtype, reset="zero", momentum=0.1):
    g = torch.Generator().manual_seed(2)
    norm = nn.BatchNorm1d(N, momentum=momentum, dtype=dtype)
    with torch.no_grad():
        norm.weight.copy_(0.5 + torch.rand(N, generator=g, dtype=dtype))
        norm.bias.copy_(0.3 * torch.randn(N, generator=g, dtype=dtype))
        norm.running_mean.copy_(0.1 * torch.randn(N, generator=g, dtype=dtype))
    lif = ctsnn.LIF(N, tau_mem=2.5e-3, v_threshold=0.8, reset=reset).to(dtype)
    return norm, lif


def _input(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (0.2 + 0.7 * torch.randn(T, B, N, generator=g, dtype=dtype)).requires_grad_()


def _unfused(x, norm, lif, surrogate, detach):
    y = norm(x.reshape(-1, N)).view(x.shape)
    return run_population(lif, dt=DT, n_steps=T, batch_size=B, jumps=y, method="euler",
                          surrogate=surrogate, detach_reset=detach).raster


def _fused(x, norm, lif, surrogate, detach):
    return mod.bn_lif(x, norm, lif, dt=DT, method="euler", surrogate=surrogate,
                      detach_reset=detach)


def _run(fn, dtype, reset, surrogate, detach, momentum=0.1, steps=2):
    """Two training steps' outputs, gradients and the BatchNorm buffers after them."""
    norm, lif = _modules(dtype, reset, momentum)
    w = torch.randn(T, B, N, generator=torch.Generator().manual_seed(9), dtype=dtype)
    outs = []
    for step in range(steps):
        x = _input(dtype, seed=step)
        s = fn(x, norm, lif, surrogate, detach)
        grads = torch.autograd.grad((s * w).sum(), (x, norm.weight, norm.bias))
        outs.append((s.detach(), grads))
    return outs, [b.clone() for b in norm.buffers()]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("surrogate", [atan(5.0), fast_sigmoid(10.0), superspike(20.0),
                                       triangle(0.7), sigmoid(3.0)], ids=lambda s: s.name)
def test_fused_equals_batchnorm_then_lif(dtype, reset, detach, surrogate):
    fused, buf_f = _run(_fused, dtype, reset, surrogate, detach)
    ref, buf_r = _run(_unfused, dtype, reset, surrogate, detach)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    for (sf, gf), (sr, gr) in zip(fused, ref, strict=True):
        assert sr.sum() > 0 and sr.sum() < sr.numel()  # spikes and silence
        torch.testing.assert_close(sf, sr, rtol=0, atol=0)
        for a, b, name in zip(gf, gr, ("x", "weight", "bias"), strict=True):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=name)
    for a, b in zip(buf_f, buf_r, strict=True):  # running statistics, batches seen: exact
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_statistics_are_batchnorms(dtype, momentum):
    norm, _ = _modules(dtype, momentum=momentum)
    twin, _ = _modules(dtype, momentum=momentum)
    for seed in range(3):
        x = _input(dtype, seed).detach().view(-1, N)
        mean, invstd = mod.batch_statistics(x, norm)
        _, m_ref, i_ref, _ = torch.ops.aten._batch_norm_with_update(
            x, twin.weight, twin.bias, twin.running_mean, twin.running_var,
            0.1 if momentum else 1.0 / (seed + 1), twin.eps)
        twin.num_batches_tracked.add_(1)
        torch.testing.assert_close(mean, m_ref, rtol=0, atol=0)
        torch.testing.assert_close(invstd, i_ref, rtol=0, atol=0)
        for a, b in zip(norm.buffers(), twin.buffers(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_evaluation_mode_uses_the_running_statistics(dtype, reset):
    """``eval()`` under ``no_grad``: the running statistics (ATen's evaluation affine), no
    statistics update, the spikes of BatchNorm1d.eval() then the LIF; with the dropout's mask
    and the padding as in training."""
    norm, lif = _modules(dtype, reset)
    with torch.no_grad():
        norm.running_var.copy_(0.5 + torch.rand(N, generator=torch.Generator().manual_seed(4),
                                                dtype=dtype))
    norm.eval()
    buffers = [b.clone() for b in norm.buffers()]
    x = _input(dtype).detach()
    with torch.no_grad():
        fused = _fused(x, norm, lif, atan(5.0), True)
        ref = _unfused(x, norm, lif, atan(5.0), True)
        keep = (torch.arange(B * N).view(B, N) % 3 != 0).to(dtype)
        padded = mod.bn_lif(x, norm, lif, dt=DT, method="euler", surrogate=atan(5.0),
                            detach_reset=True, keep=keep, p=0.25, pad=3)
    assert ref.sum() > 0 and ref.sum() < ref.numel()  # spikes and silence
    torch.testing.assert_close(fused, ref, rtol=0, atol=0)
    torch.testing.assert_close(padded[:T], ref * keep / torch.tensor(0.75, dtype=dtype),
                               rtol=0, atol=0)
    assert not padded[T:].any()
    for a, b in zip(norm.buffers(), buffers, strict=True):  # evaluation updates nothing
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_parallel_form_equals_serial(monkeypatch):
    outs = {}
    for work in (10**12, 0):  # serial / sample chunks on the kernel threads
        monkeypatch.setattr(mod, "_PARALLEL_WORK", work)
        outs[work] = _run(_fused, torch.float32, "zero", atan(5.0), True, steps=1)[0][0]
    (s1, g1), (s2, g2) = outs.values()
    assert torch.equal(s1, s2)
    for a, b in zip(g1, g2, strict=True):
        assert torch.equal(a, b)


def test_keeps_only_the_input_for_backward():
    norm, lif = _modules(torch.float32)
    x = _input(torch.float32)
    big: set[int] = set()

    def pack(t):
        if t.numel() >= T * B * N:
            big.add(t.untyped_storage().data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _fused(x, norm, lif, atan(5.0), True)
    assert big == {x.untyped_storage().data_ptr()}


def test_where_it_applies():
    norm, lif = _modules(torch.float32)
    x = _input(torch.float32)
    ok = dict(method="euler", surrogate=atan(5.0))
    assert mod.bn_lif_applies(x, norm, lif, **ok)
    assert not mod.bn_lif_applies(x.double(), norm, lif, **ok)  # mixed dtypes
    assert not mod.bn_lif_applies(x, norm, lif, method="rk4", surrogate=atan(5.0))
    assert not mod.bn_lif_applies(x, norm, lif, method="euler", surrogate=None)
    custom = Surrogate("custom", lambda v: torch.exp(-v.abs()))
    assert not mod.bn_lif_applies(x, norm, lif, method="euler", surrogate=custom)
    with use_kernels(False):
        assert not mod.bn_lif_applies(x, norm, lif, **ok)
    # evaluation (running statistics): fused only without autograd (a forward-only form)
    assert not mod.bn_lif_applies(x, norm.eval(), lif, **ok)
    with torch.no_grad():
        assert mod.bn_lif_applies(x, norm, lif, **ok)
    norm.train()
    assert not mod.bn_lif_applies(x, norm, _modules(torch.float32, reset="none")[1], **ok)
    assert not mod.bn_lif_applies(x, norm, ctsnn.LIF(N, tau_mem=2e-3, learn_tau=True), **ok)
    assert not mod.bn_lif_applies(x, norm, ctsnn.CubaLIF(N, tau_mem=2e-3, tau_syn=1e-3), **ok)
    assert not mod.bn_lif_applies(x, nn.BatchNorm1d(N, affine=False), lif, **ok)
    assert not mod.bn_lif_applies(x, nn.BatchNorm1d(N + 1), lif, **ok)  # sizes differ


def test_refuses_what_does_not_apply():
    norm, lif = _modules(torch.float32)
    with pytest.raises(ValueError, match="not a training BatchNorm1d"):  # eval with autograd
        mod.bn_lif(_input(torch.float32), norm.eval(), lif, dt=DT, method="euler",
                   surrogate=atan(), detach_reset=True)
    with pytest.raises(ValueError, match=r"\[T, B, N\]"):
        mod.bn_lif(torch.zeros(T, B, N + 1), norm.train(), lif, dt=DT, method="euler",
                   surrogate=atan(), detach_reset=True)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("p", [0.4, 0.25, "all kept", "all dropped"])
def test_dropout_and_padding_bit_for_bit(dtype, p):
    """The fused dropout and padding are SequenceDropout's ``x * keep / (1 - p)`` and
    ``F.pad`` exactly: values and every gradient identical bit for bit."""
    keep = (torch.rand(B, N, generator=torch.Generator().manual_seed(1)) < 1 - 0.3).to(dtype)
    if isinstance(p, str):
        keep.fill_(1.0 if p == "all kept" else 0.0)
        p = 0.3
    else:
        keep = (torch.rand(B, N, generator=torch.Generator().manual_seed(1)) < 1 - p).to(dtype)
    w = torch.randn(T + 3, B, N, generator=torch.Generator().manual_seed(2), dtype=dtype)
    outs = []
    for fused in (True, False):
        norm, lif = _modules(dtype)
        x = _input(dtype)
        if fused:
            out = mod.bn_lif(x, norm, lif, dt=DT, method="euler", surrogate=atan(5.0),
                             detach_reset=True, keep=keep, p=p, pad=3)
        else:
            s = mod.bn_lif(x, norm, lif, dt=DT, method="euler", surrogate=atan(5.0),
                           detach_reset=True)
            out = torch.nn.functional.pad(s * keep / (1.0 - p), (0, 0, 0, 0, 0, 3))
        grads = torch.autograd.grad((out * w).sum(), (x, norm.weight, norm.bias))
        outs.append((out.detach(), *grads))
    assert outs[1][0].sum() > 0 or not keep.any()
    for a, b in zip(*outs, strict=True):
        assert torch.equal(a, b)


def test_dropout_arguments_checked():
    norm, lif = _modules(torch.float32)
    x = _input(torch.float32)
    kw = dict(dt=DT, method="euler", surrogate=atan(), detach_reset=True)
    with pytest.raises(ValueError, match="keep must be"):
        mod.bn_lif(x, norm, lif, keep=torch.ones(B, N + 1), p=0.5, **kw)
    with pytest.raises(ValueError, match="given with a mask"):
        mod.bn_lif(x, norm, lif, p=0.5, **kw)
    with pytest.raises(ValueError, match="p must be"):
        mod.bn_lif(x, norm, lif, keep=torch.ones(B, N), p=1.0, **kw)
    with pytest.raises(ValueError, match="pad"):
        mod.bn_lif(x, norm, lif, pad=-1, **kw)
