"""Shared by the event-kernel tests: compare a kernel run with the reference engine's."""

from __future__ import annotations

import pytest
import torch

from ctsnn.engine import population
from ctsnn.spikes import Spikes

F64 = torch.float64


def sorted_spikes(spikes: Spikes, n: int):
    """``(times [K] float64, batch [K], units [K])`` sorted by sample, unit, then time."""
    key = (spikes.batch * n + spikes.units).to(F64) * 1e6 + spikes.times.to(F64)
    order = torch.argsort(key)
    return spikes.times[order].to(F64), spikes.batch[order], spikes.units[order]


def assert_same(a, b, n: int, tol: float = 1e-12, *, close: float = 1e-10,
                states: bool = False) -> None:
    """Same spikes (times within ``tol`` s), final states within ``close`` and, with
    ``states``, the same recorded states within ``close``."""
    ta, ba, ua = sorted_spikes(a.spikes, n)
    tb, bb, ub = sorted_spikes(b.spikes, n)
    assert ta.numel() == tb.numel(), (ta.numel(), tb.numel())
    assert torch.equal(ba, bb) and torch.equal(ua, ub)
    if ta.numel():
        assert float((ta - tb).abs().max()) <= tol
    for x, y in zip(a.final_state, b.final_state, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        torch.testing.assert_close(x, y, rtol=close, atol=close)
    if states:
        assert a.states.keys() == b.states.keys()
        for name in a.states:
            assert a.states[name].shape == b.states[name].shape
            torch.testing.assert_close(a.states[name], b.states[name], rtol=close, atol=close)


def kernel_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the reference loop fail, so a passing run proves the kernel served it."""
    def refuse(run):
        raise AssertionError("the reference engine ran")
    monkeypatch.setattr(population, "run_continuous", refuse)
