"""In training (and in evaluation without autograd), a DCLS hidden layer runs its BatchNorm and
LIF as one kernel (:func:`ctsnn.engine.compiled.bn_lif.bn_lif`); the network's output, every
gradient and the BatchNorm running statistics equal the unfused modules' (to rounding), for
every kernel."""

from __future__ import annotations

import pytest
import torch

import ctsnn.papers.dcls as dcls
from ctsnn.compiled import kernels_enabled
from ctsnn.losses import summed_softmax_cross_entropy
from ctsnn.papers.dcls import DCLSConfig, DCLSNet

pytestmark = pytest.mark.skipif(not kernels_enabled(torch.zeros(1)), reason="kernels off")


def _step(kernel: str, dtype: torch.dtype, fused: bool, monkeypatch) -> tuple[list, int]:
    calls = []
    real = dcls.bn_lif

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(dcls, "bn_lif", counted)
    if not fused:
        monkeypatch.setattr(dcls, "bn_lif_applies", lambda *a, **k: False)
    cfg = DCLSConfig.shd(n_in=12, n_hidden=16, n_out=4, kernel=kernel, dropout=0.25)
    net = DCLSNet(cfg, generator=torch.Generator().manual_seed(3), dtype=dtype)
    g = torch.Generator().manual_seed(4)
    x = (torch.rand(30, 6, 12, generator=g) < 0.2).to(dtype)
    y = torch.randint(0, 4, (6,), generator=g)
    out = []
    for _ in range(2):  # two steps: the running statistics carry over
        torch.manual_seed(5)  # the same dropout masks
        net.zero_grad()
        o = net(x)
        summed_softmax_cross_entropy(o, y).backward()
        out += [o.detach(), *(p.grad.clone() for p in net.parameters())]
    out += [b.clone() for b in net.buffers()]
    monkeypatch.undo()
    return out, len(calls)


@pytest.mark.parametrize("kernel", ["rounded", "triangle", "gaussian"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_norm_equals_modules(kernel, dtype, monkeypatch):
    fused, n_fused = _step(kernel, dtype, True, monkeypatch)
    ref, n_ref = _step(kernel, dtype, False, monkeypatch)
    assert (n_fused, n_ref) == (4, 0)  # 2 layers x 2 steps
    tol = 1e-11 if dtype == torch.float64 else 1e-5
    for a, b in zip(fused, ref, strict=True):
        scale = float(b.abs().max()) if b.numel() else 1.0
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * max(scale, 1e-30))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_eval_without_autograd_fuses_with_the_running_statistics(dtype, monkeypatch):
    """``eval()`` under ``no_grad``: the fused kernel with the running statistics, the same
    readout as the modules; ``eval()`` with autograd: the modules."""
    cfg = DCLSConfig.shd(n_in=12, n_hidden=16, n_out=4, dropout=0.25)
    net = DCLSNet(cfg, generator=torch.Generator().manual_seed(3), dtype=dtype)
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(20, 6, 12, generator=g) < 0.3).to(dtype)
    net.train()
    net(x)  # running statistics away from their initial values
    net.eval()
    calls = []
    real = dcls.bn_lif

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(dcls, "bn_lif", counted)
    with torch.no_grad():
        fused = net(x)
    assert len(calls) == cfg.n_layers
    net(x)  # autograd on: the modules
    assert len(calls) == cfg.n_layers
    monkeypatch.setattr(dcls, "bn_lif_applies", lambda *a, **k: False)
    with torch.no_grad():
        ref = net(x)
    assert ref.abs().sum() > 0
    tol = 0.0 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(fused, ref, rtol=tol, atol=tol)
