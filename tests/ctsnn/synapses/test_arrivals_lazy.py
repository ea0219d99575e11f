"""``DelayedArrivals`` prepares its time-sorted copy of the input on its first window only: the
compiled event-driven engine reads ``arrivals.spikes`` and never calls the schedule."""

from __future__ import annotations

import torch

import ctsnn
from ctsnn.synapses import DelayedArrivals


def test_delayed_arrivals_sorts_on_first_use_and_keeps_the_schedule(monkeypatch):
    g = torch.Generator().manual_seed(0)
    spikes = ctsnn.Spikes(torch.rand(20, generator=g, dtype=torch.float64) * 0.01,
                          torch.randint(0, 3, (20,), generator=g),
                          torch.randint(0, 2, (20,), generator=g), dt=1e-3, n_steps=12,
                          batch_size=2, n_units=3)
    w = torch.randn(4, 3, generator=g, dtype=torch.float64)
    d = torch.rand(4, 3, generator=g, dtype=torch.float64) * 0.002
    eager = DelayedArrivals(spikes, w, d)
    expected = [eager(n) for n in range(12)]
    calls = []
    real = torch.argsort
    monkeypatch.setattr(torch, "argsort", lambda *a, **k: calls.append(1) or real(*a, **k))
    lazy = DelayedArrivals(spikes, w, d)
    assert calls == []  # construction alone sorts nothing
    for n in range(12):
        got, want = lazy(n), expected[n]
        assert (got is None) == (want is None)
        if got is not None:
            assert torch.equal(got.offset, want.offset) and torch.equal(got.value, want.value)
    assert calls  # the first window sorted
