"""What the fused LIF keeps for its backward pass: ``u`` (and the CubaLIF current before each
step) but not the spikes, which the backward recomputes as ``u >= v_threshold`` for a
``"zero"`` / ``"subtract"`` reset (``"none"`` gates spikes by the previous step, so it keeps
them); the gradients are the reference loop's, including at exact threshold ties."""

from __future__ import annotations

import pytest
import torch

import ctsnn
from ctsnn.compiled import kernels_enabled, use_kernels
from ctsnn.engine import run_population
from ctsnn.surrogate import atan

T, B, N = 8, 3, 4
DT = 1e-3

pytestmark = pytest.mark.skipif(not kernels_enabled(torch.zeros(1)), reason="kernels off")


def _saved_step_tensors(model, jumps) -> int:
    """How many distinct ``[T, B, N]`` storages the run saves for its backward pass."""
    seen: set[int] = set()

    def pack(t):
        if tuple(t.shape) == (T, B, N):
            seen.add(t.untyped_storage().data_ptr())
        return t

    with use_kernels(True), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run_population(model, dt=DT, n_steps=T, batch_size=B, jumps=jumps, method="euler",
                       surrogate=atan(), detach_reset=True)
    return len(seen)


@pytest.mark.parametrize("kind", ["lif", "cuba"])
@pytest.mark.parametrize("reset", ["zero", "subtract", "none"])
def test_spikes_kept_only_for_reset_none(kind, reset):
    common = dict(tau_mem=2e-3, v_threshold=0.9, reset=reset)
    model = ctsnn.LIF(N, **common) if kind == "lif" else ctsnn.CubaLIF(N, tau_syn=1.5e-3,
                                                                          **common)
    model = model.to(torch.float64)
    jumps = torch.rand(T, B, N, dtype=torch.float64).requires_grad_()
    # u (jumps themselves are the caller's, not saved by the kernel); CubaLIF also i
    expected = 1 + (kind == "cuba") + (reset == "none")
    assert _saved_step_tensors(model, jumps) == expected


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("learn", [False, True])  # plain kernel / general kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_recomputed_spikes_at_exact_ties(reset, learn, dtype):
    """Dyadic values: ``u`` lands exactly on the threshold (a spike, ``u - th >= 0``) in
    many steps; the recomputed spikes must be the forward's, so the gradients match the
    reference loop's."""
    # euler with tau = 2 dt: u = v / 2 + jump, all in multiples of 1/8 (exact in float32)
    model = ctsnn.LIF(N, tau_mem=2 * DT, v_threshold=1.0, reset=reset,
                      learn_threshold=learn).to(dtype)
    g = torch.Generator().manual_seed(4)
    jumps = (torch.randint(0, 9, (T, B, N), generator=g).to(dtype) / 8).requires_grad_()
    w = torch.randn(T, B, N, generator=g).to(dtype)
    out = {}
    for kernels in (False, True):
        with use_kernels(kernels):
            res = run_population(model, dt=DT, n_steps=T, batch_size=B, jumps=jumps,
                                 method="euler", surrogate=atan(), detach_reset=False)
        params = [jumps, model.v_threshold] if learn else [jumps]
        out[kernels] = (res.raster.detach(), torch.autograd.grad((res.raster * w).sum(),
                                                                 params))
    ties = 0
    with torch.no_grad():  # the reference's membrane reaching exactly 1.0 somewhere
        v = torch.zeros(B, N, dtype=dtype)
        for t in range(T):
            u = v / 2 + jumps[t]
            ties += int((u == 1.0).sum())
            v = torch.where(u >= 1.0, torch.zeros_like(u) if reset == "zero" else u - 1.0, u)
    assert ties > 0
    torch.testing.assert_close(out[True][0], out[False][0], rtol=0, atol=0)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    for a, b in zip(out[True][1], out[False][1], strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
