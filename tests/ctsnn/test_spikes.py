"""Tests for ctsnn.spikes.Spikes (time convention, conversions, transformations, errors)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ctsnn.spikes import Spikes

F64 = torch.float64
DTS = [1e-3, 0.1, 0.25, 1 / 3, 0.7, 1.0]


def f64(x) -> torch.Tensor:
    return torch.tensor(x, dtype=F64)


def same_events(a: Spikes, b: Spikes) -> None:
    assert (a.dt, a.n_steps, a.batch_size, a.n_units) == (b.dt, b.n_steps, b.batch_size, b.n_units)
    assert torch.equal(a.times, b.times)
    assert torch.equal(a.units, b.units)
    assert torch.equal(a.batch, b.batch)
    assert torch.equal(a.values, b.values)


# ----------------------------------------------------------------------------------------------
# hand-made examples
# ----------------------------------------------------------------------------------------------


def hand_made() -> Spikes:
    # dt = 0.5 s, T = 4, B = 2, N = 3
    times = f64([0.5, 0.0, 1.2, 1.3, 2.0, 0.7, 0.5])
    units = [1, 0, 2, 2, 0, 1, 1]
    batch = [0, 1, 1, 1, 0, 0, 0]
    values = f64([1.0, 2.0, 1.0, 1.0, 3.0, 1.0, 0.5])
    return Spikes.from_events(
        times, units, batch, dt=0.5, n_steps=4, batch_size=2, n_units=3, values=values
    )


def test_hand_made_events_to_raster():
    s = hand_made()
    assert len(s) == 7
    r = s.raster()
    assert r.shape == (4, 2, 3) and r.dtype == F64
    expected = torch.zeros(4, 2, 3, dtype=F64)
    expected[0, 0, 1] = 1.0 + 0.5  # two events at exactly 0.5 -> step 0
    expected[0, 1, 0] = 2.0  # t = 0 -> step 0
    expected[2, 1, 2] = 2.0  # 1.2 and 1.3 -> step 2
    expected[3, 0, 0] = 3.0  # 2.0 = 4*dt -> step 3
    expected[1, 0, 1] = 1.0  # 0.7 -> step 1
    assert torch.equal(r, expected)
    assert torch.equal(s.raster(batch_first=True), expected.transpose(0, 1))
    assert s.raster(torch.int64).dtype == torch.int64
    assert torch.equal(s.count(), torch.tensor([[1, 3, 0], [1, 0, 2]]))


def test_hand_made_sorted_and_views():
    s = hand_made()
    # sorted by (batch, time, unit); ties in (batch, time, unit) keep input order
    assert s.batch.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert s.times.tolist() == [0.5, 0.5, 0.7, 2.0, 0.0, 1.2, 1.3]
    assert s.units.tolist() == [1, 1, 1, 0, 0, 2, 2]
    assert s.values.tolist() == [1.0, 0.5, 1.0, 3.0, 2.0, 1.0, 1.0]
    assert s.step.tolist() == [0, 0, 1, 3, 0, 2, 2]
    assert torch.allclose(s.offset, f64([0.5, 0.5, 0.2, 0.5, 0.0, 0.2, 0.3]), atol=1e-15)
    fo = s.first_offsets()
    assert fo.shape == (4, 2, 3)
    assert fo[0, 0, 1] == 0.5 and fo[0, 1, 0] == 0.0
    assert math.isclose(fo[2, 1, 2].item(), 0.2, abs_tol=1e-15)  # earliest of 1.2, 1.3
    assert int(torch.isnan(fo).sum()) == 4 * 2 * 3 - 5
    assert torch.equal(s.first_offsets(fill=-1.0)[1, 1], f64([-1.0, -1.0, -1.0]))
    assert "events=7" in repr(s) and "n_steps=4" in repr(s)


def test_hand_made_to_padded():
    s = hand_made()
    times, units, values = s.to_padded(return_values=True)
    inf = math.inf
    assert torch.equal(times, f64([[0.5, 0.5, 0.7, 2.0], [0.0, 1.2, 1.3, inf]]))
    assert torch.equal(units, torch.tensor([[1, 1, 1, 0], [0, 2, 2, -1]]))
    assert torch.equal(values, f64([[1.0, 0.5, 1.0, 3.0], [2.0, 1.0, 1.0, 0.0]]))
    back = Spikes.from_padded(times, units, dt=0.5, n_steps=4, n_units=3, values=values)
    same_events(back, s)
    # padding defaults: n_units from max(units) + 1, n_steps from last event
    d = Spikes.from_padded(times, units, dt=0.5)
    assert (d.n_units, d.n_steps, d.batch_size) == (3, 4, 2)


def test_to_padded_without_events():
    s = Spikes.empty(dt=0.1, n_steps=3, batch_size=2, n_units=4, dtype=F64)
    times, units = s.to_padded()
    assert times.shape == (2, 0) and units.shape == (2, 0)
    back = Spikes.from_padded(times, units, dt=0.1, n_steps=3, n_units=4)
    same_events(back, s)
    assert s.raster().shape == (3, 2, 4) and not s.raster().any()


def test_from_events_defaults():
    s = Spikes.from_events([0.05, 0.31], [4, 1], dt=0.1)
    assert (s.n_steps, s.batch_size, s.n_units) == (4, 1, 5)
    assert s.dtype == torch.get_default_dtype()
    e = Spikes.from_events(torch.zeros(0), torch.zeros(0, dtype=torch.long), dt=0.1)
    assert (len(e), e.n_steps, e.batch_size, e.n_units) == (0, 1, 1, 0)
    one = Spikes.from_events(f64([0.0]), [0], dt=0.1)
    assert one.n_steps == 1


# ----------------------------------------------------------------------------------------------
# boundary convention
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dt", DTS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_event_on_grid_point_goes_to_previous_step(dt, dtype):
    k = torch.arange(1, 200)
    grid = (k.to(F64) * dt).to(dtype)  # the float product k*dt
    s = Spikes.from_events(grid, torch.zeros_like(k), dt=dt, n_steps=199)
    assert torch.equal(s.step, k - 1)
    assert torch.equal(s.offset, torch.full_like(grid, dt))
    # one ulp later: next step, tiny positive offset
    after = torch.nextafter(grid[:-1], torch.full_like(grid[:-1], math.inf))
    s2 = Spikes.from_events(after, torch.zeros_like(k[:-1]), dt=dt, n_steps=199)
    assert torch.equal(s2.step, k[:-1])
    assert (s2.offset > 0).all() and (s2.offset < 1e-3 * dt).all()


def test_time_zero_is_step_zero_offset_zero():
    s = Spikes.from_events(f64([0.0, 0.1]), [0, 0], dt=0.1)
    assert s.step.tolist() == [0, 0]
    assert s.offset.tolist() == [0.0, 0.1]
    assert s.n_steps == 1


def test_offset_gradient_flows_to_times():
    t = f64([0.05, 0.2, 0.37]).requires_grad_()
    s = Spikes.from_events(t, [0, 1, 2], dt=0.1)
    assert s.step.tolist() == [0, 1, 3]
    s.offset.sum().backward()
    assert torch.equal(t.grad, torch.ones(3, dtype=F64))


# ----------------------------------------------------------------------------------------------
# raster round trips
# ----------------------------------------------------------------------------------------------


T, B, N = 5, 3, 4


@pytest.mark.parametrize("batch_first", [False, True])
def test_binary_raster_round_trip(batch_first):
    g = torch.Generator().manual_seed(0)
    r = (torch.rand(T, B, N, generator=g) < 0.4).to(torch.float32)
    inp = r.transpose(0, 1) if batch_first else r
    s = Spikes.from_raster(inp, 0.1, batch_first=batch_first)
    assert (s.n_steps, s.batch_size, s.n_units) == (T, B, N)
    assert len(s) == int(r.sum()) and s.dtype == torch.float32
    assert torch.equal(s.raster(batch_first=batch_first), inp)
    assert torch.equal(s.offset, torch.full_like(s.times, 0.1))  # end of step
    n, b, i = r.nonzero().unbind(1)
    assert torch.equal(torch.sort(s.step).values, torch.sort(n).values)
    assert torch.allclose(s.times, ((s.step + 1).double() * 0.1).float())


def test_count_raster_round_trip_keeps_counts():
    g = torch.Generator().manual_seed(1)
    r = torch.randint(0, 4, (T, B, N), generator=g)
    s = Spikes.from_raster(r, 0.25)
    assert s.dtype == torch.get_default_dtype()
    assert len(s) == int((r != 0).sum())  # one event per non-zero entry
    assert torch.equal(s.raster(torch.int64), r)
    assert torch.equal(s.count(), (r != 0).sum(0))


@pytest.mark.parametrize("batch_first", [False, True])
def test_raster_with_offsets_round_trip(batch_first):
    dt = 0.1
    g = torch.Generator().manual_seed(2)
    r = (torch.rand(T, B, N, generator=g) < 0.5).to(F64) * 2.0
    offsets = torch.rand(T, B, N, generator=g, dtype=F64) * dt + 1e-9
    offsets[r == 0] = math.nan  # ignored where the raster is zero
    offsets[-1, 0, 0], r[-1, 0, 0] = dt, 1.0  # exactly the end of the last step
    offsets[0, 1, 1], r[0, 1, 1] = 0.0, 1.0  # t = 0
    tr = (lambda x: x.transpose(0, 1)) if batch_first else (lambda x: x)
    s = Spikes.from_raster(tr(r), dt, tr(offsets), batch_first=batch_first)
    assert s.dtype == F64
    assert torch.equal(s.raster(batch_first=batch_first), tr(r))
    fo = s.first_offsets()
    nz = r != 0
    assert torch.allclose(fo[nz], offsets[nz], rtol=0, atol=1e-12)
    assert torch.isnan(fo[~nz]).all()
    n, b, i = nz.nonzero().unbind(1)
    expected_times = torch.sort(n.double() * dt + offsets[n, b, i]).values
    assert torch.allclose(torch.sort(s.times).values, expected_times, rtol=0, atol=1e-12)
    assert s.times.max().item() == T * dt
    # and back again through first_offsets
    s2 = Spikes.from_raster(s.raster(), dt, s.first_offsets())
    same_events(s2, s)


# ----------------------------------------------------------------------------------------------
# rebin, select, concat, shift, to
# ----------------------------------------------------------------------------------------------


def test_rebin_coarser_and_finer():
    dt = 0.25  # exact binary fractions: coarse grid points coincide with fine ones
    g = torch.Generator().manual_seed(3)
    r = (torch.rand(6, B, N, generator=g) < 0.5).to(F64)
    s = Spikes.from_raster(r, dt)
    coarse = s.rebin(0.5)
    assert (coarse.dt, coarse.n_steps) == (0.5, 3)
    assert torch.equal(coarse.raster(), r.reshape(3, 2, B, N).sum(1))
    assert torch.equal(coarse.times, s.times)
    fine = s.rebin(0.125)
    assert fine.n_steps == 12
    assert torch.equal(fine.raster()[1::2], r) and not fine.raster()[0::2].any()
    odd = s.rebin(0.4)  # 6*0.25 = 1.5 s needs 4 steps of 0.4 s
    assert odd.n_steps == 4
    assert torch.equal(odd.rebin(dt, n_steps=6).raster(), r)


def test_select_and_concat():
    g = torch.Generator().manual_seed(4)
    r = torch.randint(0, 3, (T, B, N), generator=g).to(F64)
    s = Spikes.from_raster(r, 0.1)
    sel = s.select([2, 0, 2])
    assert sel.batch_size == 3
    assert torch.equal(sel.raster(), r[:, [2, 0, 2]])
    assert torch.equal(s.select(torch.tensor([True, False, True])).raster(), r[:, [0, 2]])
    assert s.select([]).batch_size == 0 and len(s.select([])) == 0
    other = Spikes.from_raster(torch.ones(2 * T, 2, N, dtype=torch.float32), 0.1)
    cat = Spikes.concat([s, other])
    assert (cat.batch_size, cat.n_steps, cat.dtype) == (B + 2, 2 * T, F64)
    assert torch.equal(cat.raster()[:T, :B], r) and not cat.raster()[T:, :B].any()
    assert torch.equal(cat.raster()[:, B:], torch.ones(2 * T, 2, N, dtype=F64))
    same_events(Spikes.concat([s.select([b]) for b in range(B)]), s)


def test_shift():
    s = hand_made().rebin(0.5, n_steps=6)  # last event at 2.0 s, grid ends at 3.0 s
    d = s.shift(0.25)
    assert d.n_steps == 6
    assert torch.allclose(d.times, s.times + 0.25, rtol=0, atol=1e-15)
    assert torch.equal(d.units, s.units) and torch.equal(d.values, s.values)
    expected = torch.zeros_like(s.raster())
    expected[1:] = s.raster()[:-1]  # 0.25 s moves everything but t=0 (and 0.7, 1.2) one step
    expected[0, 1, 0], expected[1, 1, 0] = 2.0, 0.0  # t = 0 -> 0.25: still step 0
    expected[1, 0, 1], expected[2, 0, 1] = 1.5 + 1.0, 0.0  # 0.5 -> 0.75 (step 1), 0.7 -> 0.95
    expected[2, 1, 2], expected[3, 1, 2] = 1.0, 1.0  # 1.2 -> 1.45 (step 2), 1.3 -> 1.55 (3)
    assert torch.equal(d.raster(), expected)
    with pytest.raises(ValueError, match="beyond n_steps.*extend=True"):
        s.shift(1.1)
    e = s.shift(1.1, extend=True)
    assert e.n_steps == 7 and len(e) == len(s)  # 3.1 s is in step 6
    delay = f64([0.0, 0.1, 0.2]).requires_grad_()
    p = s.shift(delay)
    assert torch.allclose(p.times, s.times + delay.detach()[s.units], rtol=0, atol=1e-15)
    p.times.sum().backward()
    assert torch.equal(delay.grad, s.count().sum(0).to(F64))  # one per event of the unit
    same_events(s.shift(torch.tensor(0.0)), s)


def test_to_and_dtype_preservation():
    s = hand_made()
    assert s.dtype == F64 and s.device == torch.device("cpu")
    for out in (
        s.raster(),
        s.first_offsets(),
        s.offset,
        s.to_padded()[0],
        s.rebin(0.25).times,
        s.shift(0.1, extend=True).times,
        s.select([1]).times,
    ):
        assert out.dtype == F64
    f = s.to(dtype=torch.float32)
    assert f.dtype == torch.float32 and f.values.dtype == torch.float32
    assert torch.equal(f.raster(), s.raster().float())
    assert s.to("cpu").device == torch.device("cpu")
    p = s.to(torch.float32)  # a dtype first, as Tensor.to takes it
    assert p.dtype == torch.float32 and torch.equal(p.times, f.times)
    with pytest.raises(TypeError, match="two dtypes"):
        s.to(torch.float32, dtype=torch.float64)
    e = Spikes.empty(dt=0.1, n_steps=2, batch_size=3, n_units=4, dtype=F64)
    assert (len(e), e.dtype, e.count().shape) == (0, F64, (3, 4))


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------


def ev(**kw):
    args = dict(times=f64([0.1, 0.2]), units=[0, 1], batch=[0, 0], dt=0.1)
    args.update(kw)
    return Spikes.from_events(**args)


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        (dict(units=[0]), ValueError, "units must have the same length as times"),
        (dict(batch=[0, 0, 0]), ValueError, "batch must have the same length"),
        (dict(values=f64([1.0])), ValueError, "values must have the same length"),
        (dict(times=f64([0.1, math.nan])), ValueError, "times contains a non-finite"),
        (dict(times=f64([math.inf, 0.1])), ValueError, "times contains a non-finite"),
        (dict(times=f64([0.1, -0.5])), ValueError, r"times contains a negative value \(-0.5\)"),
        (dict(n_steps=1), ValueError, r"times contains a value \(0.2\) .* beyond"),
        (dict(n_units=1), ValueError, r"units contains 1 at index 1"),
        (dict(units=[0, -2]), ValueError, "units contains -2"),
        (dict(batch=[0, 3], batch_size=2), ValueError, r"batch contains 3 .*batch_size"),
        (dict(dt=0.0), ValueError, "dt must be positive"),
        (dict(dt=-0.1), ValueError, "dt must be positive"),
        (dict(dt=math.nan), ValueError, "dt must be finite"),
        (dict(dt="0.1"), TypeError, "dt must be a number"),
        (dict(units=[0.0, 1.0]), TypeError, "units must have an integer dtype"),
        (dict(batch=[True, False]), TypeError, "batch must have an integer dtype"),
        (dict(values=f64([1.0, math.nan])), ValueError, "values contains a non-finite"),
        (dict(n_steps=0), ValueError, "n_steps must be >= 1"),
        (dict(n_steps=2.0), TypeError, "n_steps must be an integer"),
        (dict(n_units=-1), ValueError, "n_units must be >= 0"),
        (dict(times=f64([[0.1, 0.2]])), ValueError, "times must have 1 dimensions"),
    ],
)
def test_from_events_errors(kw, exc, match):
    with pytest.raises(exc, match=match):
        ev(**kw)


def test_from_padded_errors():
    times = f64([[0.1, math.inf], [0.2, 0.3]])
    units = torch.tensor([[0, -1], [1, 0]])
    Spikes.from_padded(times, units, dt=0.1)  # valid
    with pytest.raises(ValueError, match=r"padding of times .* disagree at index \(1, 1\)"):
        Spikes.from_padded(times, torch.tensor([[0, -1], [1, -1]]), dt=0.1)
    with pytest.raises(ValueError, match=r"padding of times .* disagree at index \(0, 1\)"):
        Spikes.from_padded(times, torch.tensor([[0, 2], [1, 0]]), dt=0.1)
    with pytest.raises(ValueError, match="units must have shape"):
        Spikes.from_padded(times, units[:, :1], dt=0.1)
    with pytest.raises(TypeError, match="units must have an integer dtype"):
        Spikes.from_padded(times, units.double(), dt=0.1)
    with pytest.raises(TypeError, match="times must be a floating-point"):
        Spikes.from_padded(units, units, dt=0.1)
    with pytest.raises(ValueError, match="times must have 2 dimensions"):
        Spikes.from_padded(times[0], units[0], dt=0.1)
    with pytest.raises(ValueError, match="times contains a non-finite"):
        Spikes.from_padded(f64([[-math.inf, 0.1]]), torch.tensor([[0, 0]]), dt=0.1)
    with pytest.raises(ValueError, match="values must have shape"):
        Spikes.from_padded(times, units, dt=0.1, values=f64([1.0]))


def test_from_raster_errors():
    r = torch.zeros(T, B, N)
    r[2, 1, 3] = 1.0
    off = torch.full((T, B, N), 0.05)
    with pytest.raises(TypeError, match="raster must be a torch.Tensor"):
        Spikes.from_raster(r.tolist(), 0.1)
    with pytest.raises(ValueError, match="raster must have 3 dimensions"):
        Spikes.from_raster(r[0], 0.1)
    with pytest.raises(ValueError, match="raster contains a non-finite"):
        Spikes.from_raster(torch.full((T, B, N), math.nan), 0.1)
    with pytest.raises(ValueError, match=r"offsets must have shape \[5, 3, 4\]"):
        Spikes.from_raster(r, 0.1, off[1:])
    with pytest.raises(TypeError, match="offsets must be a floating-point"):
        Spikes.from_raster(r, 0.1, torch.ones(T, B, N, dtype=torch.long))
    with pytest.raises(ValueError, match="dt must be positive"):
        Spikes.from_raster(r, -0.1)
    for bad in (0.2, -0.01, 0.0, math.nan):
        o = off.clone()
        o[2, 1, 3] = bad
        with pytest.raises(ValueError, match=r"offsets must lie in \(0, dt\].*index \(2, 1, 3\)"):
            Spikes.from_raster(r, 0.1, o)
        with pytest.raises(ValueError, match=r"offsets must lie .*index \(1, 2, 3\)"):
            Spikes.from_raster(r.transpose(0, 1), 0.1, o.transpose(0, 1), batch_first=True)
    o = off.clone()
    o[2, 1, 3] = 0.1  # exactly dt: allowed
    assert Spikes.from_raster(r, 0.1, o).step.tolist() == [2]


def test_method_errors():
    s = hand_made()
    with pytest.raises(ValueError, match=r"batch_indices contains 2 at position 1"):
        s.select([0, 2])
    with pytest.raises(ValueError, match="batch_indices contains -1"):
        s.select([-1])
    with pytest.raises(TypeError, match="batch_indices must have an integer dtype"):
        s.select([0.0])
    with pytest.raises(ValueError, match=r"batch_indices must have shape \[2\]"):
        s.select(torch.tensor([True, False, True]))
    with pytest.raises(ValueError, match="delay must be non-negative"):
        s.shift(-0.1)
    with pytest.raises(ValueError, match="delay must be non-negative"):
        s.shift(f64([0.0, -0.1, 0.0]))
    with pytest.raises(ValueError, match=r"delay must have shape \[3\]"):
        s.shift(f64([0.0, 0.1]))
    with pytest.raises(ValueError, match="delay must be finite"):
        s.shift(math.inf, extend=True)
    with pytest.raises(ValueError, match="times contains a value .* beyond"):
        s.rebin(0.5, n_steps=3)
    with pytest.raises(ValueError, match="dt must be positive"):
        s.rebin(0.0)
    with pytest.raises(ValueError, match="spikes must be a non-empty"):
        Spikes.concat([])
    with pytest.raises(TypeError, match=r"spikes\[1\] must be a Spikes"):
        Spikes.concat([s, 3])
    with pytest.raises(ValueError, match="dt differs"):
        Spikes.concat([s, s.rebin(0.25)])
    other = Spikes.empty(dt=0.5, n_steps=4, batch_size=1, n_units=5)
    with pytest.raises(ValueError, match="n_units differs"):
        Spikes.concat([s, other])
    with pytest.raises(TypeError, match="dtype must be a floating-point"):
        s.to(dtype=torch.int64)
    with pytest.raises(TypeError, match="dtype must be a floating-point"):
        Spikes.empty(dt=0.1, n_steps=1, batch_size=1, n_units=1, dtype=torch.int32)
    with pytest.raises(ValueError, match="batch_size must be >= 0"):
        Spikes.empty(dt=0.1, n_steps=1, batch_size=-1, n_units=1)


# ----------------------------------------------------------------------------------------------
# property tests
# ----------------------------------------------------------------------------------------------


@st.composite
def random_spikes(draw) -> Spikes:
    n_batch = draw(st.integers(1, 4))
    n_units = draw(st.integers(1, 5))
    n_steps = draw(st.integers(1, 8))
    dt = draw(st.sampled_from(DTS))
    n_ev = draw(st.integers(0, 20))
    end = n_steps * dt
    time = st.one_of(
        st.floats(0.0, end, allow_nan=False),
        st.integers(0, n_steps).map(lambda k: k * dt),  # grid points
    )
    times = draw(st.lists(time, min_size=n_ev, max_size=n_ev))
    units = draw(st.lists(st.integers(0, n_units - 1), min_size=n_ev, max_size=n_ev))
    batch = draw(st.lists(st.integers(0, n_batch - 1), min_size=n_ev, max_size=n_ev))
    values = draw(st.lists(st.sampled_from([1.0, 2.0, 0.5, -1.5]), min_size=n_ev, max_size=n_ev))
    return Spikes.from_events(
        f64(times),
        torch.tensor(units, dtype=torch.long),
        torch.tensor(batch, dtype=torch.long),
        dt=dt,
        n_steps=n_steps,
        batch_size=n_batch,
        n_units=n_units,
        values=f64(values),
    )


FAST = settings(max_examples=60, deadline=None)


@FAST
@given(random_spikes())
def test_prop_raster_conserves_values(s):
    r = s.raster()
    assert r.shape == (s.n_steps, s.batch_size, s.n_units)
    assert math.isclose(r.sum().item(), s.values.sum().item(), abs_tol=1e-9)
    assert torch.allclose(
        r.sum(0), torch.zeros_like(r[0]).index_put((s.batch, s.units), s.values, accumulate=True)
    )
    assert int(s.count().sum()) == len(s)


@FAST
@given(random_spikes())
def test_prop_step_and_offset(s):
    step, off = s.step, s.offset
    assert ((step >= 0) & (step < s.n_steps)).all()
    assert torch.allclose(step.double() * s.dt + off, s.times, rtol=0, atol=1e-12)
    zero = s.times == 0
    assert (off[zero] == 0).all()
    assert ((off[~zero] > 0) & (off[~zero] <= s.dt)).all()
    # membership against the float grid: fl(n*dt) < t <= fl((n+1)*dt)
    lo, hi = step.double() * s.dt, (step + 1).double() * s.dt
    assert ((lo < s.times) | zero).all() and (s.times <= hi).all()
    # sorted by (batch, time, unit)
    key = list(zip(s.batch.tolist(), s.times.tolist(), s.units.tolist(), strict=True))
    assert key == sorted(key)


@FAST
@given(random_spikes())
def test_prop_padded_round_trip(s):
    times, units, values = s.to_padded(return_values=True)
    assert times.shape[0] == s.batch_size
    assert times.shape[1] == (int(s.count().sum(1).max()) if len(s) else 0)
    assert torch.equal(torch.isinf(times), units == -1)
    back = Spikes.from_padded(
        times, units, dt=s.dt, n_steps=s.n_steps, n_units=s.n_units, values=values
    )
    same_events(back, s)


@FAST
@given(random_spikes(), st.data())
def test_prop_select_concat(s, data):
    idx = data.draw(st.lists(st.integers(0, s.batch_size - 1), max_size=5))
    sel = s.select(idx)
    assert sel.batch_size == len(idx)
    assert torch.equal(sel.raster(), s.raster()[:, idx])
    assert torch.equal(sel.count(), s.count()[idx])
    same_events(Spikes.concat([s.select([b]) for b in range(s.batch_size)]), s)


@FAST
@given(random_spikes(), st.sampled_from(DTS))
def test_prop_rebin_and_raster_round_trip(s, new_dt):
    r = s.rebin(new_dt)
    assert torch.equal(r.times, s.times)
    assert r.n_steps * new_dt >= s.n_steps * s.dt - 1e-12
    back = r.rebin(s.dt, s.n_steps)
    same_events(back, s)
    assert torch.equal(back.step, s.step) and torch.equal(back.offset, s.offset)
    # raster -> Spikes -> raster (values of a cell are merged into one event)
    rast = s.raster()
    assert torch.equal(Spikes.from_raster(rast, s.dt, s.first_offsets()).raster(), rast)


@FAST
@given(random_spikes())
def test_prop_dtype_conversion_keeps_steps(s):
    f = s.to(dtype=torch.float32)
    assert f.dtype == torch.float32 and f.values.dtype == torch.float32
    assert torch.equal(f.raster(), s.raster().float())
    assert torch.allclose(f.offset.double(), s.offset, rtol=0, atol=1e-6)
    back = f.to(dtype=F64)
    assert torch.equal(back.raster(), f.raster().double())
    assert torch.equal(back.step, s.step)


def test_first_times_and_their_gradient():
    times = torch.tensor([0.004, 0.002, 0.003, 0.009], dtype=torch.float64, requires_grad=True)
    s = Spikes.from_events(times, [1, 1, 0, 1], [0, 0, 1, 1], dt=1e-3, n_steps=10,
                           batch_size=2, n_units=3)
    first = s.first_times()
    assert first.tolist() == [[0.01, 0.002, 0.01], [0.003, 0.009, 0.01]]
    first[0, 1].backward()
    assert times.grad.tolist() == [0.0, 1.0, 0.0, 0.0]
    assert s.first_times(fill=float("inf"))[0, 0] == float("inf")


def test_first_times_fill_only_where_a_unit_is_silent():
    """Regression: a NaN (or early) fill took part in the minimum and replaced real times."""
    s = Spikes.from_events(torch.tensor([0.004, 0.002, 0.003], dtype=torch.float64),
                           torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1]), dt=1e-3,
                           n_steps=5, batch_size=2, n_units=2)
    for fill in (float("nan"), 0.0):
        out = s.first_times(fill=fill)
        assert out[0, 0].item() == 0.002 and out[1, 1].item() == 0.003
        silent = out[[0, 1], [1, 0]]
        assert (silent.isnan() if math.isnan(fill) else silent == fill).all()
