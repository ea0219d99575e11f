"""gradient="surrogate" (autograd, implicit-function spike times) at zero recurrent delays.

A zero-delay arrival lands at its sender's own spike time. The settled step used to schedule
it from the spike's absolute time (``n dt + offset - n dt``), which can come back an ulp below
the spike's local time: the re-integrated step then applied the arrival before the crossing,
so autograd differentiated the wrong order (dt-dependent delay gradients, e.g. a QIF
zero-delay loop gave 3.0 instead of 2.0). In-step arrivals are now scheduled from the local
spike times. Checked in float64 against the adjoint and finite differences at several dt.
"""

from __future__ import annotations

import pytest
import torch
from event_ties import finite_difference, grads

import ctsnn

pytestmark = pytest.mark.usefixtures("float64")


def _cuba(n):
    return ctsnn.CubaLIF(n, tau_mem=0.01, tau_syn=0.005)


def _qif(n):
    return ctsnn.QIF(n)


@pytest.mark.parametrize("w_self", [0.5, -0.5])
def test_zero_self_delay_surrogate_is_exact_at_every_dt(w_self):
    params = (torch.tensor([[8.0]]), torch.tensor([0.0011]), torch.tensor([[w_self]]),
              torch.zeros(1, 1))
    u_in = torch.tensor([0])
    ref = grads(_cuba, params, u_in, 1e-3, "adjoint")
    fd = finite_difference(_cuba, params, u_in, 1e-3, 3, (0, 0), ref[1])
    assert float(ref[2][3][0, 0]) == pytest.approx(fd, rel=1e-6)
    for dt in (1e-3, 5e-4, 2.5e-4):  # 5e-4 gave 0.4919 instead of 0.2671 (w_self = 0.5)
        loss, count, got = grads(_cuba, params, u_in, dt, "surrogate")
        assert count == ref[1] and loss == pytest.approx(ref[0], rel=1e-12)
        for a, b in zip(got, ref[2], strict=True):
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-12), dt


def test_qif_zero_delay_loop_surrogate_matches_adjoint():
    """0 crosses by itself, its zero-delay jump fires 1, whose zero-delay jump returns to 0 at
    the same instant: only 1's time (weight 2) moves with d[1, 0] (was 3.0 at dt = 0.7 ms)."""
    params = (torch.tensor([[3.0], [0.0]]), torch.tensor([0.0012]),
              torch.tensor([[0.0, 0.5], [40.0, 0.0]]), torch.zeros(2, 2))
    u_in = torch.tensor([0])
    for dt in (1e-3, 7e-4):
        _, count, ref = grads(_qif, params, u_in, dt, "adjoint")
        _, count_s, got = grads(_qif, params, u_in, dt, "surrogate")
        assert count == count_s == 2
        assert float(got[3][1, 0]) == pytest.approx(2.0, rel=1e-9)
        for a, b in zip(got, ref, strict=True):
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-12), dt


def test_cuba_network_zero_self_delays_surrogate_dt_free():
    """3 CubaLIF neurons with weighted zero self-delays and 0.3 ms delays (the doc's case:
    the surrogate gave -31.35 / -32.03 at two dt for a one-sided FD of -29.85 before)."""
    gen = torch.Generator().manual_seed(3)
    w_in = torch.rand(3, 2, generator=gen) * 6 + 2
    t_in = torch.tensor([0.0011, 0.0024])
    u_in = torch.tensor([0, 1])
    w_rec = (torch.rand(3, 3, generator=gen) - 0.3) * 4
    d_rec = torch.where(torch.rand(3, 3, generator=gen) < 0.5, 0.0, 0.0003)
    d_rec = torch.where(torch.rand(3, 3, generator=gen) < 0.2, 0.0013, d_rec)
    params = (w_in, t_in, w_rec, d_rec)
    assert float(d_rec[1, 1]) == 0.0 and float(w_rec[1, 1]) != 0.0
    _, count, ref = grads(_cuba, params, u_in, 1e-3, "adjoint")
    fd = finite_difference(_cuba, params, u_in, 1e-3, 3, (1, 1), count)
    assert float(ref[3][1, 1]) == pytest.approx(fd, rel=1e-5)
    for dt in (1e-3, 5e-4, 2.5e-4):
        _, count_s, got = grads(_cuba, params, u_in, dt, "surrogate")
        assert count_s == count
        for a, b in zip(got, ref, strict=True):
            assert torch.allclose(a, b, rtol=1e-8, atol=1e-10), dt
