"""Compiled ``"avg_exp"`` / ``"sum"`` readouts (``eventprop/readout_kernels.py``): the factored
exponentials (shared time constants: per-input-spike x per-synapse products) against the
per-pair closed forms, and when the factors are off. The kernel == PyTorch reference checks of
these readouts are in ``test_eventprop_kernels.py`` (they run the factored path too)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ctsnn
from ctsnn.compiled import kernels_enabled, use_kernels
from ctsnn.gradients import eventprop as ep
from ctsnn.gradients.eventprop import readout_kernels as rk

F64 = torch.float64
DT = 2e-3
pytestmark = [pytest.mark.usefixtures("float64_one_thread"),
              pytest.mark.skipif(not kernels_enabled(torch.zeros(1)),
                                 reason="kernels off (CTSNN_KERNELS=0) or no numba")]


def _readout_grads(model, readout, n_steps, seed=3):
    g = torch.Generator().manual_seed(seed)
    n_ev, bsz, n_in, n = 120, 3, 4, 5
    t_in = torch.rand(n_ev, generator=g, dtype=F64) * n_steps * DT
    t_in[0] = 0.0
    u_in = torch.randint(0, n_in, (n_ev,), generator=g)
    b_in = torch.randint(0, bsz, (n_ev,), generator=g)
    leaves = [t_in.requires_grad_(), (0.8 + 0.4 * torch.rand(n_ev, generator=g, dtype=F64))
              .requires_grad_(), torch.randn(n, n_in, generator=g, dtype=F64).requires_grad_(),
              (0.03 * torch.rand(n, n_in, generator=g, dtype=F64)).requires_grad_()]
    spikes = ctsnn.Spikes(leaves[0], u_in, b_in, leaves[1], dt=DT, n_steps=n_steps,
                          batch_size=bsz, n_units=n_in)
    with use_kernels(True):
        z = ep.layer_forward(model, spikes, leaves[2], leaves[3], readout=readout)
        coef = torch.randn(z.shape, generator=g, dtype=F64)
        grads = torch.autograd.grad((coef * z).sum(), leaves)
    return z.detach(), grads


@pytest.mark.parametrize(("tau_m", "tau_s"), [(0.02, 0.006), (0.006, 0.02), (0.01, 0.01),
                                              (0.02, 0.02 * (1 + 1e-9)), (0.02, 0.0199)])
@pytest.mark.parametrize("model", ["CubaLI", "LI"])
@pytest.mark.parametrize("readout", ["avg_exp", "sum"])
def test_factored_readout_equals_the_per_pair_closed_forms(monkeypatch, tau_m, tau_s, model,
                                                           readout):
    """Readout values and every gradient with the factored exponentials equal the per-pair
    forms (forced by a zero exponent range) to 1e-12 relative in float64, on a trial long
    enough (0.2 s) that most pairs are factored, at equal and nearly equal time constants."""
    nrn = (ctsnn.CubaLI(5, tau_mem=tau_m, tau_syn=tau_s) if model == "CubaLI"
           else ctsnn.LI(5, tau_mem=tau_m))
    z_fast, fast = _readout_grads(nrn, readout, 100)
    monkeypatch.setattr(rk, "FACTOR_RANGE", 0.0)
    z_slow, slow = _readout_grads(nrn, readout, 100)
    torch.testing.assert_close(z_fast, z_slow, rtol=1e-12, atol=1e-12 * float(z_slow.abs().max()))
    for name, a, b in zip(["t_in", "amplitude", "weight", "delay"], fast, slow, strict=True):
        assert bool(b.abs().sum() > 0), name
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12 * float(b.abs().max()),
                                   msg=name)


def test_linear_factors_and_when_they_are_off():
    """The synapse factors are ``e^{-D/tau_w}``, ``e^{D c_m}``, ``e^{D c_s}`` (1e-15
    relative); times the input spike's factors they give ``e^{-s/tau_w}``, ``e^{-(T - s) c_m}``,
    ``e^{-(T - s) c_s}`` (1e-14: the rounding of the exponents). Empty for per-neuron time
    constants or an exponent out of range."""
    t = np.array([0.0, 0.013, 0.04])
    d = np.array([[0.0, 0.004], [0.011, 0.002]])
    tm, ts, t_end, inv_w = np.full(2, 0.02), np.full(2, 0.006), 0.05, 1 / 0.05
    qf = rk.linear_factors(t, d, True, d.shape, tm, ts, True, t_end, inv_w)
    c_m, c_s = 1 / 0.02 + inv_w, 1 / 0.006 + inv_w
    assert qf.shape == (3, 2, 2)
    for e in range(3):
        pf = (math.exp(-t[e] * inv_w), math.exp(-(t_end - t[e]) * c_m),
              math.exp(-(t_end - t[e]) * c_s))
        for n in range(2):
            for j in range(2):
                s = t[e] + d[n, j]
                want = (math.exp(-s * inv_w), math.exp(-(t_end - s) * c_m),
                        math.exp(-(t_end - s) * c_s))
                for k, rate in enumerate((-inv_w, c_m, c_s)):
                    assert math.isclose(qf[k, n, j], math.exp(d[n, j] * rate), rel_tol=1e-15)
                    assert math.isclose(pf[k] * qf[k, n, j], want[k], rel_tol=1e-14)
    qf = rk.linear_factors(t, d, False, d.shape, tm, ts, True, t_end, inv_w)
    assert qf.shape == (3, 2, 2) and bool((qf == 1.0).all())
    other = np.array([0.02, 0.03])
    assert rk.linear_factors(t, d, True, d.shape, other, ts, True, t_end, inv_w).size == 0
    assert rk.linear_factors(t, d, True, d.shape, tm, other, True, t_end, inv_w).size == 0
    # LI: tau_s is not read
    assert rk.linear_factors(t, d, True, d.shape, tm, other, False, t_end, inv_w).size == 12
    long = rk.FACTOR_RANGE / c_s * 1.01
    assert rk.linear_factors(t, d, True, d.shape, tm, ts, True, long, inv_w).size == 0
