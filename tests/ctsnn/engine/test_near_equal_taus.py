"""CubaLIF with tau_syn within rounding-relevant distance of tau_mem: spike times from both
engines (compiled kernel and PyTorch reference) against an mpmath root of the exact flow.

Before the shared closed forms (ctsnn.models.exponentials, engine/compiled/closed_forms.py),
tau_syn = tau_mem (1 + 1e-9) sat just outside the "near" switch and the flow cancelled:
spike times were off by 3e-8 s (reference) and 8.5e-9 s (kernel).
"""

from __future__ import annotations

import mpmath
import pytest
import torch

import ctsnn
from ctsnn.compiled import use_kernels

F64 = torch.float64
mpmath.mp.dps = 50


def _exact_first_spike(w: float, tm: float, ts: float, thr: float) -> float:
    """First t with w kappa(t) = thr (v starts at 0, I jumps to w at t = 0)."""
    tm_, ts_, w_ = mpmath.mpf(tm), mpmath.mpf(ts), mpmath.mpf(w)

    def v(t):
        if tm_ == ts_:
            return w_ * t / tm_ * mpmath.exp(-t / tm_)
        return w_ * ts_ / (tm_ - ts_) * mpmath.exp(-t / ts_) * mpmath.expm1(t / ts_ - t / tm_)

    # the maximum of v: t* = ln(tm/ts) / (1/ts - 1/tm) (tm at equality); bisect below it
    peak = tm_ if tm_ == ts_ else mpmath.log(tm_ / ts_) / (1 / ts_ - 1 / tm_)
    lo, hi = mpmath.mpf(0), peak
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if v(mid) < thr else (lo, mid)
    return float(hi)


@pytest.mark.parametrize("rel", [0.0, 1e-12, 1e-9, -1e-9, 3e-9, 1e-7, 1e-5])
@pytest.mark.parametrize("kernels", [True, False])
def test_spike_time_near_equal_time_constants(rel, kernels):
    tm = 0.02
    ts = tm * (1 + rel)
    w = 3.0
    model = ctsnn.CubaLIF(1, tau_mem=tm, tau_syn=ts, v_threshold=1.0).to(F64)
    layer = ctsnn.Layer(model, torch.full((1, 1), w, dtype=F64))
    spikes = ctsnn.Spikes(torch.tensor([0.0], dtype=F64), torch.tensor([0]), torch.tensor([0]),
                          dt=1e-3, n_steps=40, batch_size=1, n_units=1)
    with use_kernels(kernels):
        out = ctsnn.simulate(layer, spikes, time="continuous", xtol=0.0)
    got = out.spikes.times
    assert got.numel() == 1
    assert abs(float(got[0]) - _exact_first_spike(w, tm, ts, 1.0)) < 1e-13
