"""The trusted paths of Spikes used by the compiled engines: ``from_sorted_events`` with
amplitudes, ``to()`` without a change returning the same object, and EventProp's order check."""

from __future__ import annotations

import torch

from ctsnn.gradients.eventprop import spiking
from ctsnn.spikes import Spikes


def _spikes(dtype=torch.float64):
    times = torch.tensor([0.0, 0.003, 0.003, 0.001, 0.0095], dtype=dtype)
    return Spikes(times, torch.tensor([1, 2, 0, 1, 2]), torch.tensor([0, 0, 0, 1, 1]),
                  torch.tensor([1.0, 0.5, 2.0, 1.5, 0.25], dtype=dtype), dt=1e-3, n_steps=10,
                  batch_size=2, n_units=3)


def test_from_sorted_events_keeps_values_and_equals_the_validating_constructor():
    s = _spikes()
    t = Spikes.from_sorted_events(s.times, s.units, s.batch, values=s.values, dt=s.dt,
                                  n_steps=s.n_steps, batch_size=2, n_units=3)
    for a, b in ((t.times, s.times), (t.units, s.units), (t.batch, s.batch),
                 (t.values, s.values), (t.step, s.step)):
        assert torch.equal(a, b)
    ones = Spikes.from_sorted_events(s.times, s.units, s.batch, dt=s.dt, n_steps=10,
                                     batch_size=2, n_units=3)
    assert torch.equal(ones.values, torch.ones_like(s.times))


def test_to_without_a_change_is_the_same_object_and_with_one_a_new_one():
    s = _spikes()
    assert s.to() is s
    assert s.to(dtype=torch.float64) is s
    assert s.to(device="cpu", dtype=torch.float64) is s
    f = s.to(dtype=torch.float32)
    assert f is not s and f.dtype == torch.float32 and torch.equal(f.step, s.step)


def test_eventprop_order_check_accepts_spikes_order_only():
    s = _spikes()
    assert spiking._in_spikes_order(s.times, s.units, s.batch)
    assert spiking._in_spikes_order(s.times[:1], s.units[:1], s.batch[:1])
    swapped = torch.tensor([1, 0, 2, 3, 4])  # two events of one sample, times out of order
    assert not spiking._in_spikes_order(s.times[swapped], s.units[swapped], s.batch[swapped])
    assert torch.equal(s.units[:3], torch.tensor([1, 0, 2]))
    units = torch.tensor([1, 2, 0, 1, 2])  # equal times (events 1 and 2), units descending
    assert not spiking._in_spikes_order(s.times, units, s.batch)
    batch = torch.tensor([0, 0, 1, 0, 1])
    assert not spiking._in_spikes_order(s.times, s.units, batch)


def test_step_is_located_on_first_use_only(monkeypatch):
    """Engines that only pass events on never locate them (W2: ~0.8 M spikes per step)."""
    from ctsnn import spikes as spikes_mod

    s = _spikes()
    expected = spikes_mod.locate(s.times, s.dt)[0]
    calls = []
    real = spikes_mod.locate
    monkeypatch.setattr(spikes_mod, "locate", lambda t, dt: calls.append(1) or real(t, dt))
    for make in (lambda: Spikes.from_sorted_events(s.times, s.units, s.batch, dt=s.dt,
                                                   n_steps=10, batch_size=2, n_units=3),
                 lambda: Spikes(s.times, s.units, s.batch, dt=s.dt, n_steps=10, batch_size=2,
                                n_units=3)):
        calls.clear()
        t = make()
        assert (len(t), t.times.shape, t.values.shape) == (5, (5,), (5,)) and calls == []
        assert torch.equal(t.step, expected) and len(calls) == 1
        assert torch.equal(t.step, expected) and len(calls) == 1  # kept
        assert torch.equal(t.raster().sum((0, 2)), torch.tensor([3.0, 2.0], dtype=s.dtype))
