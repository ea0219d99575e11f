"""Without a backward pass (``torch.no_grad()``, or nothing requiring a gradient) the fused LIF
does not keep the per-step arrays only its backward reads (``u`` and the CubaLIF current
before each step, ``[T, B, N]`` each), and its results are the same as with them."""

from __future__ import annotations

import pytest
import torch

import ctsnn
from ctsnn.compiled import kernel_threads, kernels_enabled, use_kernels
from ctsnn.engine import run_population
from ctsnn.engine.compiled import lif_bptt
from ctsnn.surrogate import atan

T, B, N = 9, 4, 6
DT = 1e-3

pytestmark = pytest.mark.skipif(not kernels_enabled(torch.zeros(1)), reason="kernels off")


def _model(kind: str, learn: bool) -> ctsnn.LIF:
    tau = torch.linspace(2e-3, 5e-3, N, dtype=torch.float64)
    common = dict(tau_mem=tau, v_threshold=0.9, reset="subtract", learn_tau=learn)
    if kind == "lif":
        return ctsnn.LIF(N, **common)
    return ctsnn.CubaLIF(N, tau_syn=1.5e-3, **common)


def _record_kept(monkeypatch, parallel: bool) -> list[tuple[int, int]]:
    """Wrap the forward kernel the run calls (the parallel form's numba code calls the serial
    one: only the entry point is wrapped): log ``(rows of u_all, rows of i_before)``."""
    kept: list[tuple[int, int]] = []
    serial, chunks = lif_bptt._forward_kernel, lif_bptt._forward_chunks

    def log_serial(*args):  # (b0, b1, jumps, ..., spikes, u_all, i_before, ...)
        kept.append((args[17].shape[0], args[18].shape[0]))
        return serial(*args)

    def log_chunks(*args):  # (n_chunks, jumps, ..., spikes, u_all, i_before, ...)
        kept.append((args[16].shape[0], args[17].shape[0]))
        return chunks(*args)

    if parallel:
        monkeypatch.setattr(lif_bptt, "_forward_chunks", log_chunks)
    else:
        monkeypatch.setattr(lif_bptt, "_forward_kernel", log_serial)
    return kept


def _run(model, jumps, cur, kernels: bool = True):
    with use_kernels(kernels):
        return run_population(model, dt=DT, n_steps=T, batch_size=B, jumps=jumps,
                              current=cur, method="exact", surrogate=atan(), record=("v",))


@pytest.mark.parametrize("kind", ["lif", "cuba"])
@pytest.mark.parametrize("parallel", [False, True])
def test_no_backward_keeps_nothing_and_gives_the_same_results(kind, parallel, monkeypatch):
    if parallel and kernel_threads() < 2:
        pytest.skip("one thread: the parallel form does not run")
    monkeypatch.setattr(lif_bptt, "_PARALLEL_WORK", 0 if parallel else 1 << 62)
    kept = _record_kept(monkeypatch, parallel)
    g = torch.Generator().manual_seed(3)
    jumps = 1.5 * torch.rand(T, B, N, generator=g, dtype=torch.float64)
    cur = 0.5 * torch.randn(T, B, N, generator=g, dtype=torch.float64)
    model = _model(kind, learn=True)
    with_grad = _run(model, jumps.clone().requires_grad_(), cur)
    with torch.no_grad():
        no_grad = _run(model, jumps, cur)
    plain = _run(_model(kind, learn=False), jumps, cur)  # grad mode on, nothing requires one
    ref = _run(_model(kind, learn=False), jumps, cur, kernels=False)
    rows_i = T if kind == "cuba" else 0
    assert kept == [(T, rows_i), (0, 0), (0, 0)]
    assert with_grad.raster.sum() > 0
    for res in (no_grad, plain):
        assert torch.equal(res.raster, with_grad.raster.detach())
        assert torch.equal(res.states["v"], with_grad.states["v"].detach())
        for a, b in zip(res.final_state, with_grad.final_state, strict=True):
            assert torch.equal(a, b.detach())
    torch.testing.assert_close(plain.raster, ref.raster, rtol=0, atol=0)
    torch.testing.assert_close(plain.states["v"], ref.states["v"], rtol=1e-12, atol=1e-12)
