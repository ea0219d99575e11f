"""Smoke tests of W2 eventprop-long (``ctsnn bench w2``) on tiny shapes."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

import ctsnn
from ctsnn.bench import eventprop_long


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


needs_dcls = pytest.mark.skipif(not (_has("DCLS") and _has("spikingjelly")),
                                reason="dcls / spikingjelly not installed")

#: a tiny configuration whose hidden layers do spike (T = 60 steps, max delay 8, batch 2)
TINY = (60, 8, 2)


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_configurations_are_the_specified_ones() -> None:
    assert set(eventprop_long.CONFIGS) == {(t, d) for t in (250, 500, 1000) for d in (64, 256)}
    assert set(eventprop_long.QUICK_CONFIGS) <= set(eventprop_long.CONFIGS)
    assert eventprop_long.BATCH == 32 and eventprop_long.DT == 1e-3
    assert eventprop_long.P_INPUT == 0.003
    assert eventprop_long.SIZES == (140, 256, 256, 20)


def test_init_parameters_shapes_and_delay_range() -> None:
    params = eventprop_long.init_parameters(256, seed=0)
    assert [tuple(w.shape) for w, _ in params] == [(256, 140), (256, 256), (20, 256)]
    assert all(d.shape == w.shape for w, d in params)
    for _, d in params:
        assert float(d.min()) >= 0.0 and float(d.max()) <= 256 * eventprop_long.DT
        assert float(d.max()) > 0.9 * 256 * eventprop_long.DT  # spread over the whole range
    again = eventprop_long.init_parameters(256, seed=0)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
               for a, b in zip(params, again, strict=True))


def test_build_ours_network_and_one_step() -> None:
    n_steps, max_delay, batch = TINY
    net, step = eventprop_long.build_ours(n_steps, max_delay, batch)
    layers = list(net)
    assert [type(x.model) for x in layers] == [ctsnn.CubaLIF, ctsnn.CubaLIF, ctsnn.CubaLI]
    assert [tuple(x.synapse.weight.shape) for x in layers] == [(256, 140), (256, 256), (20, 256)]
    for x in layers:
        syn = x.synapse
        assert isinstance(syn.delay, torch.nn.Parameter) and syn.delay.shape == syn.weight.shape
        assert syn.max_delay == pytest.approx(max_delay * eventprop_long.DT)
        assert x.gradient.name == "adjoint" and x.time == "continuous"
        assert float(x.model.tau_mem.reshape(-1)[0]) == pytest.approx(0.02)
        assert float(x.model.tau_syn.reshape(-1)[0]) == pytest.approx(0.005)
    assert float(layers[0].model.v_threshold.reshape(-1)[0]) == pytest.approx(1.0)
    assert step.x.dt == pytest.approx(1e-3) and step.x.n_steps == n_steps
    before = [p.detach().clone() for p in net.parameters()]
    step()
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert step.counts["hidden1"] > 0 and step.counts["hidden2"] > 0
    for x in layers:
        d = x.synapse.delay.detach()
        assert float(d.min()) >= 0.0
        assert float(d.max()) <= max_delay * eventprop_long.DT * (1 + 1e-6)


@needs_dcls
def test_build_reference_kernel_and_step() -> None:
    net, step = eventprop_long.build_reference(20, 8, 2)
    assert net.kernel == 9 and net.count_parameters() == 214_016
    assert float(net.dcls_modules()[0].SIG.reshape(-1)[0]) == pytest.approx(eventprop_long.REF_SIG)
    step()


def test_main_json_fields(capsys: pytest.CaptureFixture[str]) -> None:
    n_steps, max_delay, batch = TINY
    eventprop_long.main(configs=[(n_steps, max_delay)], batch=batch, repeats=1, warmup=1,
                        memory=False, reference=False, profile=False, budget_s=None)
    lines = _lines(capsys.readouterr().out)
    first, summary = lines[0], lines[-1]
    assert first["workload"] == eventprop_long.WORKLOAD
    assert first["config"]["max_delay_steps"] == max_delay
    assert first["ours"]["median_s"] > 0 and first["ours"]["parameters"] == 212_992
    counts = first["ours"]["spikes_per_neuron_per_trial"]
    assert set(counts) == {"input", "hidden1", "hidden2"}
    assert first["ours"]["hidden_spikes_per_step"] == round(
        (counts["hidden1"] + counts["hidden2"]) * 256 * batch)
    assert first["reference"] is None
    assert summary["config"]["summary"] is True
    targets = summary["ours"]["targets"]
    assert {"time_target_ge_26x_faster", "memory_target_le_0p35",
            "memory_growth_target_le_1p5", "met", "not_met",
            "ours_hidden_spikes_T1000_over_T250"} <= set(targets)


def test_summary_relates_memory_to_spikes() -> None:
    ours = {(250, 64): {"peak_rss_mib": 10.0, "hidden_spikes_per_step": 1000},
            (1000, 64): {"peak_rss_mib": 30.0, "hidden_spikes_per_step": 8000},
            (1000, 256): {"peak_rss_mib": 40.0, "hidden_spikes_per_step": 0}}
    per_config, targets = eventprop_long._summary(ours, {})
    assert targets["ours_memory_T1000_over_T250"] == {"D64": 3.0}
    assert targets["ours_hidden_spikes_T1000_over_T250"] == {"D64": 8.0}
    assert targets["memory_growth_target_le_1p5"] is False
    assert per_config["T250_D64"]["ours_peak_rss_bytes_per_hidden_spike"] == 10 * 2**20 / 1000
    assert per_config["T1000_D256"]["ours_peak_rss_bytes_per_hidden_spike"] is None  # no spikes


def test_cli_knows_w2() -> None:
    from ctsnn import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "w2", "--help"])
    assert exc.value.code == 0
