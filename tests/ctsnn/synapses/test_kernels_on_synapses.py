"""Delay kernels as objects on every synapse, initialisers, fan-in, per-axon delays, errors.

float64; spike trains are random but seeded; "equal" means bitwise where the arithmetic is the
same and ``allclose`` at 1e-12 where two implementations sum in another order.
"""

from __future__ import annotations

import pytest
import torch

import ctsnn
from ctsnn.spikes import Spikes
from ctsnn.synapses import (
    EXACT,
    DelayKernel,
    Dense,
    Exact,
    Gaussian,
    RecurrentDense,
    Rounded,
    Triangle,
)
from ctsnn.synapses.kernels import KERNELS, as_kernel, triangle_spread

pytestmark = pytest.mark.usefixtures("float64_one_thread")

DT = 1e-3


def raster(t=30, b=2, n=4, p=0.3, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(t, b, n, generator=g) < p).double()


def gen(seed=0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- kernel objects
def test_kernel_objects_say_where_they_have_a_meaning():
    assert Exact().supports("continuous") and Exact().supports("discrete")
    for k in (Rounded(), Triangle(), Triangle(2.0), Gaussian(), Gaussian(1.5)):
        assert k.supports("discrete") and not k.supports("continuous")
        assert k.grid and isinstance(k, DelayKernel)
    assert not Exact().grid and EXACT == Exact()
    assert Triangle(1.0) == Triangle(1.0) != Triangle(2.0)
    assert repr(Triangle(2.0)) == "Triangle(sigma=2)" and repr(Gaussian()) == "Gaussian()"
    assert set(KERNELS) == {"exact", "rounded", "triangle", "gaussian"}
    assert as_kernel("gaussian") == Gaussian() and as_kernel(Rounded()) == Rounded()
    with pytest.raises(ValueError, match="unknown kernel"):
        as_kernel("box")
    with pytest.raises(TypeError, match="DelayKernel"):
        as_kernel(3)
    with pytest.raises(ValueError, match="non-negative"):
        Triangle(-1.0)
    with pytest.raises(ValueError, match="positive"):
        Gaussian(0.0)


def test_triangle_dense_is_the_spread_and_two_taps_at_sigma_zero():
    d = torch.tensor([[2.3, 0.0, 5.75]])
    tri = Triangle()
    taps_dense = tri.dense(d, 9)
    # sigma = 0: the two-tap form equals the spread of width 1 (up to rounding of 1 - f).
    spread = triangle_spread(d, 1.0, 9, first_lag=0).movedim(0, -1)
    torch.testing.assert_close(taps_dense, spread, rtol=0, atol=1e-12)
    wide = Triangle(2.0).dense(d, 9)  # a whole sigma inside the window: mass 1
    torch.testing.assert_close(wide.sum(-1)[:, [0, 2]], torch.ones(1, 2), rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- Exact == Rounded
@pytest.mark.parametrize("train", [True, False])
def test_discrete_exact_equals_rounded_forward(train):
    n_in, n_out = 4, 3
    w = torch.randint(-24, 25, (n_out, n_in), generator=gen(1)) / 16  # dyadic: exact sums
    steps = torch.tensor([[0.0, 2.5, 3.5, 7.4], [1.6, 4.0, 0.49, 9.0], [2.51, 6.2, 3.0, 1.5]])
    d = steps * DT
    x = raster(n=n_in)
    spikes = Spikes.from_raster(x, DT)
    exact = Dense(weight=w, delay=d)
    rounded = Dense(weight=w, delay=d, kernel=Rounded(), max_delay=0.01, dt=DT,
                    learn_delay=True)
    rounded.train(train)
    assert torch.equal(exact.jumps(spikes), rounded.jumps(x))
    assert torch.equal(exact.jumps(spikes), rounded.jumps(spikes))


def test_exact_delays_do_not_learn_in_discrete_time_but_rounded_ones_do():
    x = raster(n=2)
    rounded = Dense(2, 2, kernel="rounded", max_delay=0.01, dt=DT, learn_delay=True,
                    generator=gen())
    rounded.jumps(x).sum().backward()
    assert rounded.delay_steps.grad.abs().sum() > 0


# --------------------------------------------------------------------------- Triangle ff == rec
@pytest.mark.parametrize("sigma", [0.0, 1.5])
@pytest.mark.parametrize("per", ["synapse", "axon"])
def test_triangle_feed_forward_equals_triangle_recurrent(sigma, per):
    """Same weights, same delays: a recurrent read of given spike trains equals the
    feed-forward jumps of the same trains (the recurrent lag is 1 + d)."""
    n = 4
    w = torch.randn(n, n, generator=gen(2))
    shape = (n,) if per == "axon" else (n, n)
    d = 2.0 + 3.0 * torch.rand(shape, generator=gen(3))  # >= sigma: no mass at lag 0
    rec = RecurrentDense(weight=w, delay=d * DT, kernel=Triangle(sigma), dt=DT, per=per)
    ff = Dense(weight=w, delay=(1.0 + d) * DT, kernel=Triangle(sigma), dt=DT, per=per,
               max_delay=0.012)
    x = raster(t=25, b=2, n=n, seed=4)
    expected = ff.jumps(x)
    rec.start(2, dtype=torch.float64, device="cpu", dt=DT)
    reads = []
    for step in range(25):
        reads.append(rec.read(step))
        rec.write(step, x[step])
    torch.testing.assert_close(torch.stack(reads), expected, rtol=0, atol=1e-12)
    assert expected.abs().sum() > 0


def test_triangle_feed_forward_delays_learn_through_the_wide_spread():
    m = Dense(3, 2, kernel=Triangle(2.0), max_delay=0.02, dt=DT, learn_delay=True,
              generator=gen())
    assert m.taps() is None  # sigma > 0: dense kernel
    m.jumps(raster(n=3)).sum().backward()
    assert m.delay_steps.grad.abs().sum() > 0
    m.set_sigma(0.0)
    assert m.taps() is not None  # back to two taps


# --------------------------------------------------------------------------- errors
def test_grid_kernels_have_no_continuous_arrivals():
    spikes = Spikes.from_raster(raster(n=3), DT)
    for kernel in (Rounded(), Triangle(), Gaussian()):
        m = Dense(3, 2, kernel=kernel, max_delay=0.01, dt=DT, generator=gen())
        with pytest.raises(ValueError, match=r"no meaning in continuous time; use kernel=Exact"):
            m.arrivals(spikes)
        layer = ctsnn.Layer(ctsnn.LIF(2), m)
        with pytest.raises(ValueError, match="kernel=Exact"):
            ctsnn.simulate(layer, spikes, dt=DT, time="continuous")


def test_recurrent_refuses_gaussian_and_rounded_and_triangle_in_continuous_time():
    for kernel in (Gaussian(), Rounded()):
        with pytest.raises(ValueError, match=r"not available on recurrent synapses: use "
                                             r"kernel=Triangle\(sigma\)"):
            RecurrentDense(3, kernel=kernel, dt=DT, max_delay=0.01)
    rec = RecurrentDense(3, kernel=Triangle(1.0), dt=DT, delay=2e-3)
    layer = ctsnn.Layer(ctsnn.LIF(3), torch.eye(3), recurrent=rec)
    with pytest.raises(ValueError, match="no meaning in continuous time"):
        ctsnn.simulate(layer, torch.zeros(5, 1, 3), dt=DT, time="continuous")


def test_dt_rules():
    with pytest.raises(ValueError, match="takes dt from the spikes"):
        Dense(3, 2, max_delay=0.01, dt=DT)
    with pytest.raises(ValueError, match="counts delays in grid steps: give dt="):
        Dense(3, 2, kernel=Gaussian(), max_delay=0.01)
    with pytest.raises(ValueError, match="counts delays in grid steps"):
        RecurrentDense(3, kernel=Triangle(), max_delay=0.01)
    with pytest.raises(ValueError, match="takes dt from the simulation"):
        RecurrentDense(3, dt=DT, max_delay=0.01)
    m = Dense(3, 2, kernel=Gaussian(), max_delay=0.01, dt=DT, generator=gen())
    with pytest.raises(ValueError, match=r"dt = 0.002 s but the delays are on a grid of dt = "
                                         r"0.001 s"):
        m.jumps(Spikes.from_raster(raster(n=3), 2e-3))
    layer = ctsnn.Layer(ctsnn.LIF(2), m)
    with pytest.raises(ValueError, match="grid of dt"):
        layer(raster(n=3), dt=2e-3, input_as="jump")
    rec = RecurrentDense(2, kernel=Triangle(), dt=DT, delay=1e-3)
    with pytest.raises(ValueError, match="built for dt"):
        ctsnn.Layer(ctsnn.LIF(2), torch.eye(2), recurrent=rec)(raster(n=2), dt=2e-3)


def test_other_construction_errors():
    with pytest.raises(ValueError, match="learn_delay=True needs delays"):
        Dense(3, 2, learn_delay=True)
    with pytest.raises(ValueError, match="n_in = 4 does not match"):
        Dense(4, weight=torch.ones(2, 3))
    with pytest.raises(ValueError, match="positive int"):
        Dense(3)
    with pytest.raises(ValueError, match="recurrent synapses need delays"):
        RecurrentDense(3)
    with pytest.raises(ValueError, match="belong to the Triangle kernel"):
        RecurrentDense(3, delay=2e-3, dropout=0.5)
    with pytest.raises(ValueError, match=r"shape \[N_in\] = \[3\] \(per='axon'\)"):
        Dense(weight=torch.ones(2, 3), delay=torch.ones(2, 3) * 1e-3, per="axon")
    with pytest.raises(ValueError, match="no width"):
        Dense(3, 2, kernel=Rounded(), max_delay=0.01, dt=DT).set_sigma(1.0)
    with pytest.raises(ValueError, match="bias and pad_right"):
        Dense(3, 2, bias=True).arrivals(Spikes.from_raster(raster(n=3), DT))


# --------------------------------------------------------------------------- initialisers
def test_defaults_make_a_complete_learnable_synapse():
    syn = Dense(5, 64, max_delay=0.01, learn_delay=True, generator=gen())
    assert {n for n, _ in syn.named_parameters()} == {"weight", "delay"}
    assert syn.delay.shape == (64, 5) and syn.kernel == Exact()
    d = syn.delay.detach()
    assert 0 <= float(d.min()) and float(d.max()) <= 0.01 and abs(float(d.mean()) - 0.005) < 0.001
    bound = (6 / 5) ** 0.5  # Kaiming-uniform, ReLU gain, fan-in 5
    w = syn.weight.detach().abs()
    assert float(w.max()) <= bound and float(w.max()) > 0.8 * bound
    assert list(syn.delay_parameters()) == [syn.delay]
    assert list(syn.weight_parameters()) == [syn.weight]
    spikes = Spikes.from_raster(raster(n=5, p=0.5), DT)
    layer = ctsnn.Layer(ctsnn.CubaLIF(64), syn, time="continuous")
    out, _ = layer(spikes, dt=DT)
    assert isinstance(out, Spikes)
    assert Dense(5, 4).delay is None  # no max_delay, no delay: no delays at all


def test_delay_initialisers_and_ranges():
    hn = Dense(50, 40, max_delay=0.02, delay_init="half_normal", delay_std=0.005,
               generator=gen()).delay
    assert float(hn.min()) >= 0 and float(hn.max()) <= 0.02
    assert abs(float(hn.mean()) - 0.005 * (2 / torch.pi) ** 0.5) < 3e-4
    const = Dense(3, 2, max_delay=0.01, delay_init=0.004).delay
    assert torch.equal(const, torch.full((2, 3), 0.004))
    explicit = Dense(3, 2, delay=torch.tensor([1e-3, 2e-3, 3e-3])).delay
    assert explicit.shape == (2, 3) and torch.equal(explicit[1], torch.tensor([1e-3, 2e-3, 3e-3]))
    rec = RecurrentDense(6, max_delay=0.01, delay_init=ctsnn.synapses.uniform_delays(2e-3, 5e-3),
                         learn_delay=True)
    assert 2e-3 <= float(rec.delay.min()) and float(rec.delay.max()) <= 5e-3
    w = rec.weight.detach()
    torch.testing.assert_close(w @ w.t(), torch.eye(6), rtol=0, atol=1e-6)  # orthogonal
    grid = Dense(10, 10, kernel=Triangle(), max_delay=0.02, dt=DT, generator=gen()).delay_steps
    assert float(grid.min()) >= 0 and float(grid.max()) <= 20  # U(0, K - 1) steps, K = 21


@pytest.mark.parametrize("make", [
    lambda: Dense(20, 30, fan_in=7, generator=gen()),
    lambda: Dense(20, 30, fan_in=7, kernel=Gaussian(), max_delay=0.01, dt=DT, generator=gen()),
    lambda: RecurrentDense(20, fan_in=7, delay=2e-3, weight_init="kaiming_uniform",
                           generator=gen()),
    lambda: RecurrentDense(20, fan_in=7, kernel=Triangle(1.0), dt=DT, delay=2e-3,
                           generator=gen()),
])
def test_fixed_fan_in_counts_exactly(make):
    syn = make()
    assert syn.mask.sum(1).tolist() == [7] * syn.mask.shape[0]
    assert torch.equal(syn.weight != 0, syn.mask)
    if isinstance(syn, Dense):
        bound = (6 / 7) ** 0.5  # Kaiming over the connected fan-in
        assert float(syn.weight.abs().max()) <= bound
    with torch.no_grad():
        syn.weight.add_(1.0)  # an optimiser step touching masked entries
    syn.clamp_delays_()
    assert torch.equal(syn.weight != 0, syn.mask)


def test_fan_in_exact_synapse_uses_masked_weights_in_both_modes():
    syn = Dense(6, 4, fan_in=2, max_delay=0.005, generator=gen())
    with torch.no_grad():
        syn.weight.fill_(1.0)  # masked entries non-zero: the forward must still mask them
    ref = Dense(weight=syn.effective_weight.detach(), delay=syn.delay.detach())
    spikes = Spikes.from_raster(raster(n=6, p=0.4), DT)
    assert torch.equal(syn.jumps(spikes), ref.jumps(spikes))
    a, b = syn.arrivals(spikes), ref.arrivals(spikes)
    for n in range(spikes.n_steps):
        sa, sb = a(n), b(n)
        assert (sa is None) == (sb is None)
        if sa is not None:
            assert torch.equal(sa.value, sb.value) and torch.equal(sa.offset, sb.offset)


def test_per_axon_delays_are_shared_and_learn():
    syn = Dense(4, 3, max_delay=0.01, per="axon", learn_delay=True, generator=gen())
    assert syn.delay.shape == (4,) and syn.synapse_delay().shape == (3, 4)
    ref = Dense(weight=syn.weight.detach(), delay=syn.synapse_delay().detach())
    spikes = Spikes.from_raster(raster(n=4, p=0.4), DT)
    assert torch.equal(syn.jumps(spikes), ref.jumps(spikes))
    layer = ctsnn.Layer(ctsnn.CubaLIF(3, tau_mem=0.01, tau_syn=0.005), syn, time="continuous")
    with torch.no_grad():
        syn.weight.mul_(20)
    res = ctsnn.simulate(layer, spikes, dt=DT, time="continuous")
    assert len(res.spikes) > 0
    res.spikes.times.sum().backward()
    assert syn.delay.grad.shape == (4,) and syn.delay.grad.abs().sum() > 0
    grid = Dense(4, 3, kernel=Triangle(), max_delay=0.01, dt=DT, per="axon", learn_delay=True,
                 generator=gen())
    assert grid.delay_steps.shape == (4,)
    grid.jumps(raster(n=4)).sum().backward()
    assert grid.delay_steps.grad.shape == (4,)
    assert grid.n_parameters() == 12 + 4


def test_per_axon_exact_recurrent_equals_expanded_delays():
    n = 4
    w = 0.6 * torch.rand(n, n, generator=gen(5))
    d = 1e-3 + 4e-3 * torch.rand(n, generator=gen(6))
    t_in = torch.rand(10, generator=gen(7)) * 0.02
    u_in = torch.randint(0, n, (10,), generator=gen(8))
    spikes = Spikes.from_events(t_in, u_in, dt=DT, n_steps=40, n_units=n)
    outs = []
    for rec in (RecurrentDense(weight=w, delay=d, per="axon"),
                RecurrentDense(weight=w, delay=d.expand(n, n).clone())):
        layer = ctsnn.Layer(ctsnn.LIF(n, tau_mem=0.01), 1.2 * torch.eye(n), recurrent=rec)
        with torch.no_grad():
            outs.append(ctsnn.simulate(layer, spikes, dt=DT, time="continuous").spikes)
    assert len(outs[0]) > 10
    assert torch.equal(outs[0].times, outs[1].times)
    assert torch.equal(outs[0].units, outs[1].units)


def test_per_axon_delays_train_with_the_adjoint():
    syn = Dense(4, 3, max_delay=0.01, per="axon", learn_delay=True, generator=gen(9))
    with torch.no_grad():
        syn.weight.abs_().mul_(20)
    layer = ctsnn.Layer(ctsnn.LIF(3, tau_mem=0.01), syn, time="continuous", gradient="adjoint")
    spikes = Spikes.from_raster(raster(n=4, p=0.4), DT)
    res = ctsnn.simulate(layer, spikes, dt=DT, time="continuous")
    assert len(res.spikes) > 0
    res.spikes.times.sum().backward()
    assert syn.delay.grad.shape == (4,) and syn.delay.grad.abs().sum() > 0
