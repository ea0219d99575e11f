"""The LIF family's reset options: ``reset="zero" | "subtract" | "none"`` (``model.reset_mode``)."""

from __future__ import annotations

import pytest
import torch

import ctsnn
from ctsnn.compiled import use_kernels

F64 = torch.float64


class OldSoftResetLIF(ctsnn.LIF):
    """The reference: ``papers.delrec.SoftResetLIF`` as it was (``v <- v - v_threshold``)."""

    def reset(self, state: tuple) -> tuple:
        return state._replace(v=state.v - self.v_threshold)


def _jumps(t: int, b: int, n: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(t, b, n, generator=g, dtype=dtype) * 1.2).requires_grad_()


@pytest.mark.parametrize("detach_reset", [False, True])
def test_subtract_equals_the_old_soft_reset_lif(detach_reset):
    """DelRec's use: discrete time, Euler, triangle surrogate, v_reset = 0 (bit for bit)."""
    kw = dict(tau_mem=2 * 1.4 / 249, v_threshold=1.0, v_reset=0.0)
    new, old = ctsnn.LIF(6, reset="subtract", **kw), OldSoftResetLIF(6, **kw)
    assert new.reset_mode == "subtract"
    runs = []
    for model in (new, old):
        x = _jumps(40, 3, 6, seed=1)
        # both on the step loop: the fused LIF kernel (which serves LIF, not the subclass)
        # equals it to rounding, tested in tests/ctsnn/engine/test_lif_bptt.py
        with use_kernels(False):
            res = ctsnn.run_population(model, dt=1.4 / 249, n_steps=40, batch_size=3, jumps=x,
                                       method="euler", record=("v",),
                                       detach_reset=detach_reset,
                                       surrogate=ctsnn.surrogate.triangle())
        (res.raster.sum() + res.states["v"].square().sum()).backward()
        runs.append((res.raster, res.states["v"], x.grad))
    assert runs[0][0].sum() > 10  # the reset is exercised
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


@pytest.mark.usefixtures("float64")
def test_subtract_equals_the_old_soft_reset_lif_in_continuous_time():
    new, old = ctsnn.LIF(4, tau_mem=0.01, reset="subtract"), OldSoftResetLIF(4, tau_mem=0.01)
    drive = torch.tensor([0.5, 1.5, 3.0, 6.0], dtype=F64).expand(50, 2, 4)
    a = ctsnn.simulate(new, drive, dt=1e-3, time="continuous")
    b = ctsnn.simulate(old, drive, dt=1e-3, time="continuous")
    assert a.spikes.times.numel() > 5
    assert torch.equal(a.spikes.times, b.spikes.times)
    assert torch.equal(a.spikes.units, b.spikes.units)


def test_soft_reset_subtracts_threshold():
    lif = ctsnn.LIF(1, tau_mem=2e-3, reset="subtract")
    jumps = torch.tensor([1.7, 0.0, 0.5], dtype=torch.float32).reshape(3, 1, 1)
    res = ctsnn.run_population(lif, dt=1e-3, n_steps=3, batch_size=1, jumps=jumps,
                               method="euler", record=("v",), surrogate=ctsnn.surrogate.triangle())
    v = res.states["v"].flatten().tolist()
    assert res.raster.flatten().tolist() == [1.0, 0.0, 0.0]
    assert v == pytest.approx([0.7, 0.35, 0.675], abs=1e-6)


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("cls", [ctsnn.LIF, ctsnn.CubaLIF])
def test_reset_maps(cls):
    """zero: v <- v_reset (a broadcast view); subtract: v <- v - (v_threshold - v_reset)."""
    kw = dict(v_threshold=torch.tensor([1.0, 2.0, 1.5]), v_reset=torch.tensor([0.0, -0.5, 0.2]))
    v = torch.tensor([[1.3, 2.1, 1.5], [1.0, 2.5, 3.0]])
    state = cls(3, **kw).initial_state(2, v=v)
    zero = cls(3, **kw)
    assert zero.reset_mode == "zero" and zero.resets
    out = zero.reset(state)
    assert torch.equal(out.v, kw["v_reset"].expand(2, 3)) and out.v.stride() == (0, 1)
    sub = cls(3, reset="subtract", **kw)
    assert sub.resets
    torch.testing.assert_close(sub.reset(state).v, v - (kw["v_threshold"] - kw["v_reset"]),
                               rtol=0, atol=0)
    none = cls(3, reset="none", **kw)
    assert not none.resets and none.spiking and none.reset(state) is state
    assert "reset='none'" in repr(none)
    if cls is ctsnn.CubaLIF:  # the synaptic current is never reset
        for m in (zero, sub):
            assert m.reset(state).i is state.i


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("time", ["discrete", "continuous"])
def test_none_never_resets(time):
    """v follows the leaky integrator exactly; one spike per upward crossing of v_threshold."""
    lif = ctsnn.LIF(3, tau_mem=0.01, v_threshold=1.0, reset="none")
    li = ctsnn.LI(3, tau_mem=0.01)
    # drive above threshold for 30 ms, below for 30 ms, above again: two crossings for the
    # neurons that reach threshold (drive 2 and 4), none for drive 0.5
    level = torch.tensor([0.5, 2.0, 4.0])
    on = torch.cat([torch.ones(30), torch.zeros(30), torch.ones(30)])
    drive = (on[:, None, None] * level).expand(90, 1, 3).contiguous()
    res = ctsnn.run_population(lif, dt=1e-3, n_steps=90, batch_size=1, current=drive,
                               time=time, record=("v",))
    ref = ctsnn.run_population(li, dt=1e-3, n_steps=90, batch_size=1, current=drive,
                               time=time, record=("v",))
    torch.testing.assert_close(res.states["v"], ref.states["v"], rtol=0, atol=1e-12)
    assert bool((res.states["v"][25:30, 0, 1:] > 1.0).all())  # stays above threshold...
    counts = res.spikes.raster().sum(0)
    assert counts.flatten().tolist() == [0.0, 2.0, 2.0]  # ...but fires once per crossing


@pytest.mark.parametrize("cls", [ctsnn.LIF, ctsnn.CubaLIF])
@pytest.mark.parametrize("bad", ["soft", "Zero", None, 0])
def test_bad_reset_is_a_clear_error(cls, bad):
    with pytest.raises(ValueError, match=r"reset must be one of 'zero', 'subtract', 'none'"):
        cls(2, reset=bad)

