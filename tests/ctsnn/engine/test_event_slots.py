"""The event-driven forward's spike slots (issue 10, W2 memory): a chunk of rows writes its
spikes densely from the start of its slots; a row that does not fit in what is left is run
again with room, and the rows after it still use the space. Results equal a run where every
row fits (and the reference engine's, tests/ctsnn/engine/test_event_kernel.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ctsnn
from ctsnn.compiled import kernels_enabled
from ctsnn.engine.compiled import event_driven
from ctsnn.engine.compiled.event_driven import run_event_driven
from ctsnn.synapses import DelayedArrivals

pytestmark = pytest.mark.skipif(not kernels_enabled(torch.zeros(1)),
                                reason="kernels off (CTSNN_KERNELS=0) or no numba")


def _layer(dtype):
    """Two samples of 4 CubaLIF neurons: three fire tonically (v_leak above threshold, ~25
    spikes each in 0.4 s, more than 16 slots per row), one only from its input."""
    g = torch.Generator().manual_seed(7)
    n_in, n, bsz, n_steps, dt = 6, 4, 2, 400, 1e-3
    model = ctsnn.CubaLIF(n, tau_mem=0.01, tau_syn=0.005, r=1.0, v_threshold=1.0,
                          v_leak=torch.tensor([1.3, 1.3, 1.3, 0.0])).to(dtype)
    t = torch.rand(60, generator=g, dtype=torch.float64) * 0.39
    spikes = ctsnn.Spikes(t.to(dtype), torch.randint(0, n_in, (60,), generator=g),
                          torch.randint(0, bsz, (60,), generator=g), dt=dt, n_steps=n_steps,
                          batch_size=bsz, n_units=n_in)
    weight = (3.0 * torch.rand(n, n_in, generator=g)).to(dtype)
    delay = (0.01 * torch.rand(n, n_in, generator=g)).to(dtype)
    return model, DelayedArrivals(spikes, weight, delay), n_steps, bsz


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rows_that_do_not_fit_are_run_again_and_the_rest_stay_dense(dtype, monkeypatch):
    model, arrivals, n_steps, bsz = _layer(dtype)
    kw = {"n_steps": n_steps, "batch_size": bsz, "state": None, "dtype": dtype}
    with torch.no_grad():
        roomy = run_event_driven(model, arrivals, **kw)  # 256 slots per row: every row fits
    seen = {}
    gather = event_driven._gather_spikes

    def spy(n_b, n, slots, where, more, is32, threads):
        seen["slots"], seen["where"] = slots, where.copy()
        return gather(n_b, n, slots, where, more, is32, threads)

    monkeypatch.setattr(event_driven, "_gather_spikes", spy)
    monkeypatch.setattr(event_driven, "_BUDGET", 1)  # 16 slots per row on average
    with torch.no_grad():
        tight = run_event_driven(model, arrivals, **kw)
    for a, b in zip(tight[:4], roomy[:4], strict=True):
        assert torch.equal(a, b)
    for a, b in zip(tight.final_state, roomy.final_state, strict=True):
        assert torch.equal(a, b)
    _, _, counts, first = seen["slots"]
    where = seen["where"]
    kept = np.nonzero(where < 0)[0]
    assert (where >= 0).any() and (counts[kept] > 16).any()  # rerun rows; rows above average
    assert (first[where >= 0] == -1).all()
    # one chunk (a small call runs on one thread): the kept rows' spikes lie back to back
    order = kept[np.argsort(first[kept], kind="stable")]
    np.testing.assert_array_equal(first[order], np.concatenate([[0], np.cumsum(
        counts[order])[:-1]]))
    assert int(counts[kept].sum()) <= 16 * counts.size
