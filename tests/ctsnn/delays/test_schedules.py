"""DCLS and DelRec sigma schedules, EventProp's ease-in (SEEDS F1.9, F2.16); float64.

(Split from the old tests/ctsnn/delays/test_kernels.py when the kernels moved to
ctsnn.synapses; the schedules stay in ctsnn.delays.schedules.)
"""

from __future__ import annotations

import math

import pytest
import torch

from ctsnn.delays.schedules import (
    DCLSSigmaSchedule,
    DelRecSigmaSchedule,
    EaseInSchedule,
    ease_in,
)

pytestmark = pytest.mark.usefixtures("float64")


# --------------------------------------------------------------------------- schedules
def test_dcls_schedule_shd_values():
    """F1.9: SIG_e = 12 (0.23/12)^(e/37) for e < 37, then 0.23; sigma_eff = SIG + 0.27."""
    sched = DCLSSigmaSchedule.for_run(kernel_taps=25, epochs=150)
    assert (sched.sig_init, sched.decay_epochs) == (12.0, 37)
    assert round(sched.multiplier, 5) == 0.89863
    for e in (0, 1, 10, 36):
        assert math.isclose(sched.sig(e), 12 * (0.23 / 12) ** (e / 37), rel_tol=1e-14)
    for e in (37, 38, 149):
        assert sched.sig(e) == 0.23
    assert sched.sigma_eff(0) == 12.27
    assert math.isclose(sched(149), 0.5, rel_tol=1e-15)
    # Reference procedure: multiply once at the end of every epoch e < E_f.
    sig = 12.0
    for e in range(37):
        assert math.isclose(sig, sched.sig(e), rel_tol=1e-12)
        sig *= sched.multiplier
    assert math.isclose(sig, 0.23, rel_tol=1e-12)


def test_dcls_schedule_ssc_and_constant():
    sched = DCLSSigmaSchedule.for_run(kernel_taps=31, epochs=60)
    assert (sched.sig_init, sched.decay_epochs) == (15.0, 15)
    constant = DCLSSigmaSchedule(sig_init=0.23, decay_epochs=0)
    assert {constant.sigma_eff(e) for e in range(5)} == {0.5}
    with pytest.raises(ValueError, match="epoch"):
        sched.sig(-1)
    with pytest.raises(ValueError, match="decay_epochs"):
        DCLSSigmaSchedule(sig_init=12.0, decay_epochs=-1)
    with pytest.raises(ValueError, match="positive"):
        DCLSSigmaSchedule(sig_init=0.0, decay_epochs=3)


def test_delrec_schedule_values():
    """SEEDS B1.5 / F2.16: sigma_e = 10 * 0.95^(100 e / E); last-epoch values."""
    assert DelRecSigmaSchedule(epochs=150)(0) == 10.0
    for epochs, last in ((150, 0.061), (100, 0.062), (200, 0.061), (30, 0.070)):
        sched = DelRecSigmaSchedule(epochs=epochs)
        assert round(sched.sigma(epochs - 1), 3) == last
        assert math.isclose(sched.sigma(7), 10 * 0.95 ** (700 / epochs), rel_tol=1e-14)
    assert math.isclose(DelRecSigmaSchedule(epochs=100).half_width(100), 1 + 10 * 0.95 ** 100)
    with pytest.raises(ValueError, match="epochs"):
        DelRecSigmaSchedule(epochs=0)
    with pytest.raises(ValueError, match="decay"):
        DelRecSigmaSchedule(epochs=10, decay=1.5)


def test_ease_in_schedule():
    """F3.27 / SEEDS C2 weight ease-in; mlGeNN example: lr = 1e-6 * 1.05^batch up to 1e-3
    (factor 1e-3 of lr = 1e-3)."""
    sched = EaseInSchedule(factor=1e-3, multiplier=1.05)
    assert sched(0) == 1e-3 and sched(10) == pytest.approx(1e-3 * 1.05**10, rel=1e-15)
    assert sched.batches_to_full == 142  # 1.05^141 < 1000 <= 1.05^142
    assert sched(141) < 1.0 and sched(142) == 1.0 and sched(10**9) == 1.0  # no overflow
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1e-3)
    lr_sched = ease_in(opt)
    seen = []
    for batch in range(150):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        lr_sched.step()
        assert seen[-1] == pytest.approx(min(1e-3, 1e-6 * 1.05**batch), rel=1e-12)
    assert seen[0] == pytest.approx(1e-6) and seen[-1] == 1e-3
    assert all(b >= a for a, b in zip(seen, seen[1:], strict=False))
    # SEEDS C2's SHD setting: start at 0.01 x lr
    assert EaseInSchedule(factor=0.01)(0) == 0.01
    with pytest.raises(ValueError, match="factor"):
        EaseInSchedule(factor=2.0)
    with pytest.raises(ValueError, match="multiplier"):
        EaseInSchedule(factor=0.1, multiplier=0.9)
    with pytest.raises(ValueError, match="batch"):
        sched(-1)
