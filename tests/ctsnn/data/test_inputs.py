"""Seeded random inputs: Poisson trains (exact times) and Bernoulli rasters."""

from __future__ import annotations

import math

import pytest
import torch

from ctsnn.data import bernoulli_input, make_generator, poisson_spikes


def test_poisson_shapes_grid_and_exact_times():
    s = poisson_spikes(5, 30.0, 0.2, batch=3, dt=1e-3, seed=0)
    assert (s.batch_size, s.n_units, s.n_steps, s.dt) == (3, 5, 200, 1e-3)
    assert s.times.dtype == torch.float64
    assert bool((s.times >= 0).all()) and bool((s.times < 0.2).all())
    assert bool((s.times / 1e-3 != torch.round(s.times / 1e-3)).any())  # off-grid


def test_poisson_rate_within_statistical_bounds():
    rate, duration, batch, n_in = 40.0, 0.5, 20, 50
    s = poisson_spikes(n_in, rate, duration, batch=batch, seed=3)
    mean = rate * duration * batch * n_in  # 20,000 expected spikes, sd ~ 141
    assert abs(len(s) - mean) < 5 * math.sqrt(mean)
    counts = s.count().double()  # per train: Poisson, variance = mean
    assert counts.var().item() == pytest.approx(rate * duration, rel=0.15)


def test_poisson_determinism_by_seed_and_generator():
    a, b = poisson_spikes(4, 20.0, 0.1, seed=7), poisson_spikes(4, 20.0, 0.1, seed=7)
    assert torch.equal(a.times, b.times) and torch.equal(a.units, b.units)
    c = poisson_spikes(4, 20.0, 0.1, seed=8)
    assert not (len(a) == len(c) and torch.equal(a.times, c.times))
    g = torch.Generator().manual_seed(7)
    d = poisson_spikes(4, 20.0, 0.1, generator=g)
    assert torch.equal(a.times, d.times)
    e = poisson_spikes(4, 20.0, 0.1, generator=g)  # the generator advanced
    assert not (len(e) == len(d) and torch.equal(e.times, d.times))


def test_poisson_errors():
    with pytest.raises(ValueError, match="rate"):
        poisson_spikes(2, -1.0, 0.1, seed=0)
    with pytest.raises(ValueError, match="duration"):
        poisson_spikes(2, 1.0, 0.0, seed=0)
    with pytest.raises(ValueError, match="not both"):
        make_generator(1, torch.Generator())


def test_bernoulli_is_seeded_and_shaped():
    x, y = bernoulli_input(7, 3, 5, 0.5, seed=1, n_classes=4)
    x2, y2 = bernoulli_input(7, 3, 5, 0.5, seed=1, n_classes=4)
    assert x.shape == (7, 3, 5) and x.dtype == torch.float32 and y.shape == (3,)
    assert set(x.unique().tolist()) <= {0.0, 1.0} and int(y.max()) < 4
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = bernoulli_input(7, 3, 5, 0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(x, x3)


def test_bernoulli_rate_within_statistical_bounds():
    p, n = 0.05, 200 * 16 * 40
    x, _ = bernoulli_input(200, 16, 40, p, seed=0)
    assert abs(x.sum().item() - p * n) < 5 * math.sqrt(n * p * (1 - p))
    with pytest.raises(ValueError, match="probability"):
        bernoulli_input(2, 2, 2, 1.5, seed=0)
