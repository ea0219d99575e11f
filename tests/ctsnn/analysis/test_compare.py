"""compare_time_modes / work_precision: exact errors where the answer is known, convergence as
dt -> 0, and shapes checked before anything runs."""

from __future__ import annotations

import math

import pytest
import torch

import ctsnn
from ctsnn.analysis import compare_time_modes, fitted_order, work_precision
from ctsnn.analysis import time_modes as time_modes_module
from ctsnn.data import poisson_spikes

pytestmark = pytest.mark.usefixtures("float64")

TAU_MEM = 0.03
T_STAR = TAU_MEM * math.log(2.0)  # LIF, v(0) = 0, r I = 2, threshold 1: first spike time


def one_spike_lif():
    """One LIF neuron under a constant current: a single spike at T_STAR in a 40 ms window."""
    lif = ctsnn.LIF(1, tau_mem=TAU_MEM, v_threshold=1.0, v_reset=0.0)
    return ctsnn.Layer(lif), torch.full((20, 1, 1), 2.0)  # 20 steps of 2 ms


def test_known_answer_single_spike():
    layer, current = one_spike_lif()
    dts = [2e-3, 1e-3, 4e-4]
    tau = 0.01
    cmp = compare_time_modes(layer, current, dts, input_dt=2e-3, tau=tau,
                             readout="first_spike", labels=torch.tensor([0]))
    assert [r.setting for r in cmp.runs] == [("continuous", dt, None) for dt in dts] + [
        ("discrete", dt, None) for dt in dts]
    assert cmp.reference.setting == ("continuous", 4e-4, None)
    for dt in dts:
        cont = cmp.get("continuous", dt)
        assert cont.layers[0].n_spikes == 1 and cont.layers[0].time_error < 1e-12
        disc = cmp.get("discrete", dt)
        err = math.ceil(T_STAR / dt) * dt - T_STAR  # a grid spike sits at the end of its step
        (d,) = disc.layers
        assert (d.n_spikes, d.n_reference, d.count_difference, d.abs_count_difference) == (
            1, 1, 0, 0)
        assert d.time_error == pytest.approx(err, rel=1e-9)
        assert d.distance == pytest.approx(math.sqrt(2 * (1 - math.exp(-err / tau))), rel=1e-6)
        assert disc.output_difference == pytest.approx(err, rel=1e-9)
        assert disc.accuracy == 1.0 and disc.accuracy_difference == 0.0
        assert disc.wall_s > 0
    assert "| discrete | 2 | default |" in cmp.table()
    assert math.isnan(cmp.order("continuous"))  # exact flow: rounding noise has no order
    assert cmp.order("discrete") == pytest.approx(fitted_order(
        dts, [math.ceil(T_STAR / dt) * dt - T_STAR for dt in dts]), rel=1e-6)
    assert set(cmp.simulations) == {r.setting for r in cmp.runs}
    with pytest.raises(KeyError, match="no run"):
        cmp.get("discrete", 3e-3)


def network():
    gen = torch.Generator().manual_seed(0)
    w1 = torch.rand(8, 10, generator=gen) * 0.9
    w2 = torch.rand(3, 8, generator=gen) * 1.5
    return [ctsnn.Layer(ctsnn.CubaLIF(8, tau_mem=0.02, tau_syn=0.005), w1),
            ctsnn.Layer(ctsnn.CubaLIF(3, tau_mem=0.02, tau_syn=0.005), w2)]


def test_discrete_converges_at_first_order_continuous_is_exact():
    x = poisson_spikes(10, 60.0, 0.1, batch=2, seed=0)
    dts = [2e-4, 1e-4, 5e-5, 2.5e-5]  # fine enough that every neuron fires as often as in
    cmp = compare_time_modes(network(), x, dts, modes=("discrete",),  # the reference
                             reference=("continuous", 1e-3))
    for layer in (0, 1):
        diffs = [cmp.get("discrete", dt).layers[layer] for dt in dts]
        assert all(d.abs_count_difference == 0 and d.n_spikes > 0 for d in diffs)
        errors = [d.time_error for d in diffs]
        assert all(a > b for a, b in zip(errors, errors[1:], strict=False))
        assert 0.8 < cmp.order("discrete", layer=layer) < 1.4  # first order (measured 1.24, 0.97)
        assert cmp.order("discrete", layer=layer, metric="distance") > 0
    # the reference (a closed-form flow) is not among the settings: it ran once more
    assert cmp.reference.layers[0].time_error == 0.0
    assert [r.time for r in cmp.runs] == ["discrete"] * 4
    with pytest.raises(KeyError, match="no runs"):
        cmp.order("continuous")


def test_work_precision_over_methods():
    layer, current = one_spike_lif()
    settings = [("discrete", 1e-3, "euler"), ("discrete", 1e-3, "exact"),
                ("continuous", 1e-3, "exact"), ("continuous", 1e-3, "rk4")]
    cmp = work_precision(layer, current, settings, reference=("continuous", 2e-4, "exact"),
                         input_dt=2e-3, repeats=2, record=("v",))
    assert cmp.simulations[("discrete", 1e-3, "euler")].states["v"].shape == (40, 1, 1)
    assert [r.setting for r in cmp.runs] == settings
    assert cmp.get("continuous", 1e-3, "exact").layers[0].time_error < 1e-12
    assert cmp.get("continuous", 1e-3, "rk4").layers[0].time_error < 1e-7
    assert cmp.get("discrete", 1e-3, "exact").layers[0].time_error == pytest.approx(
        math.ceil(T_STAR / 1e-3) * 1e-3 - T_STAR, rel=1e-9)
    assert all(r.wall_s > 0 for r in cmp.runs)


def test_bad_input_raises_before_any_simulation(monkeypatch):
    def no_simulation(*args, **kwargs):
        raise AssertionError("simulate ran")

    monkeypatch.setattr(time_modes_module, "simulate", no_simulation)
    net = network()
    x = poisson_spikes(10, 60.0, 0.05, batch=2, seed=0)
    with pytest.raises(ValueError, match="inputs have 7 channels but layer 0 takes 10"):
        compare_time_modes(net, poisson_spikes(7, 60.0, 0.05, seed=0), [1e-3])
    bad = [net[0], ctsnn.Layer(ctsnn.LIF(3), torch.rand(3, 5))]
    with pytest.raises(ValueError, match="layer 1 takes 5 inputs but layer 0 has 8 neurons"):
        compare_time_modes(bad, x, [1e-3])
    with pytest.raises(ValueError, match="labels"):
        compare_time_modes(net, x, [1e-3], labels=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="input_dt"):
        compare_time_modes(net, torch.rand(10, 2, 10), [1e-3])
    with pytest.raises(ValueError, match="does not divide"):
        compare_time_modes(net, torch.rand(10, 2, 10), [3e-4], input_dt=1e-3)
    with pytest.raises(ValueError, match="drop input_dt"):
        compare_time_modes(net, x, [1e-3], input_dt=1e-3)
    with pytest.raises(ValueError, match="unknown time mode"):
        compare_time_modes(net, x, [1e-3], modes=("analog",))
    with pytest.raises(ValueError, match="reference"):
        compare_time_modes(net, x, [1e-3], reference=("continuous",))
    with pytest.raises(ValueError, match="dt"):
        compare_time_modes(net, x, [-1e-3])
    with pytest.raises(TypeError, match="sequence"):
        compare_time_modes(net, x, 1e-3)
    with pytest.raises(ValueError, match="predict"):
        compare_time_modes(net, x, [1e-3], predict="vote")


def test_predictions_for_the_accuracy():
    """Three samples whose first spikes and counts are known: sample b gets current 2 + b on
    neuron b % 2 and 1.5 on the other; a stronger drive fires first and more often."""
    lif = ctsnn.LIF(2, tau_mem=TAU_MEM, v_threshold=1.0, v_reset=0.0)
    current = torch.full((20, 3, 2), 1.5)
    for b in range(3):
        current[:, b, b % 2] = 2.0 + b
    labels = torch.tensor([0, 1, 1])  # the last sample is predicted 0: accuracy 2/3
    for predict in ("first_spike", "argmax", lambda res: res.spikes.count().argmax(dim=1)):
        cmp = compare_time_modes(ctsnn.Layer(lif), current, [2e-3], input_dt=2e-3,
                                 labels=labels, predict=predict)
        assert cmp.reference.accuracy == pytest.approx(2 / 3)
        assert cmp.get("discrete", 2e-3).accuracy_difference == 0.0
    with pytest.raises(ValueError, match="predict returned shape"):
        compare_time_modes(ctsnn.Layer(lif), current, [2e-3], input_dt=2e-3, labels=labels,
                           predict=lambda res: torch.zeros(2))
