"""Smoke tests of the W1/W3/W4 benchmarks on tiny shapes (peer parts skipped when absent)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from ctsnn.bench import peers, w1, w4
from ctsnn.data import bernoulli_input
from ctsnn.papers.dcls import DCLSConfig
from ctsnn.training import count_parameters


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


needs_sj = pytest.mark.skipif(not _has("spikingjelly"), reason="spikingjelly not installed")
needs_dcls = pytest.mark.skipif(not (_has("DCLS") and _has("spikingjelly")),
                                reason="dcls / spikingjelly not installed")


def _w3():
    """``ctsnn.bench.w3``; skipped where the DelRec module (``ctsnn.papers.delrec``) is absent."""
    pytest.importorskip("ctsnn.papers.delrec")
    from ctsnn.bench import w3

    return w3


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


# --------------------------------------------------------------------------- helpers
def test_saved_tensor_bytes_counts_distinct_storages() -> None:
    a = torch.randn(1000, requires_grad=True)

    def forward() -> torch.Tensor:
        return (a * a).sum()  # MulBackward saves ``a`` twice: one storage

    loss, saved = peers.saved_tensor_bytes(forward)
    assert saved["saved_mib"] == pytest.approx(4000 / 1024**2)
    assert saved["saved_naive_mib"] == pytest.approx(8000 / 1024**2)
    loss.backward()
    assert torch.allclose(a.grad, 2 * a)


def test_timed_cuts_repeats_over_budget() -> None:
    calls = []
    stats = peers.timed(lambda: calls.append(1), repeats=5, warmup=2, budget_s=None)
    assert len(calls) == 7 and not stats["reduced"]
    calls.clear()
    stats = peers.timed(lambda: (calls.append(1), torch.randn(200, 200) @ torch.randn(200, 200)),
                        repeats=1000, warmup=2, budget_s=1e-9)
    assert stats["reduced"] and stats["repeats"] == 1 and len(calls) == 2


def test_plain_weights_are_shared_and_sized() -> None:
    ws = peers.plain_weights((140, 256, 256, 20), seed=0)
    assert [tuple(w.shape) for w in ws] == [(256, 140), (256, 256), (20, 256)]
    assert all(torch.equal(a, b) for a, b in zip(ws, peers.plain_weights((140, 256, 256, 20),
                                                                          seed=0), strict=True))


# --------------------------------------------------------------------------- W4
def test_w4_ours_trains_and_fires() -> None:
    x, y = bernoulli_input(10, 4, 140, 0.05, seed=0)
    net, run = w4.build("ours", peers.plain_weights(w4.SIZES, seed=0))
    counts = w4.layer_spike_counts(net, run, "ours", x)
    assert len(counts) == 3 and counts[0] > 0
    before = [p.detach().clone() for p in net.parameters()]
    w4.train_step(net, run, x, y)()
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


@pytest.mark.parametrize("peer", ["spikingjelly", "snntorch", "norse"])
def test_w4_peers_simulate_the_same_network(peer: str) -> None:
    if not _has(peer):
        pytest.skip(f"{peer} not installed")
    x, _ = bernoulli_input(20, 4, 140, 0.05, seed=0)
    ws = peers.plain_weights(w4.SIZES, seed=0)
    ours = w4.layer_spike_counts(*w4.build("ours", ws), "ours", x)
    theirs = w4.layer_spike_counts(*w4.build(peer, ws), peer, x)
    assert ours[-len(theirs):] == theirs


def test_w4_main_json(capsys: pytest.CaptureFixture[str]) -> None:
    w4.main(batch=2, n_steps=5, repeats=1, warmup=1, roofline=False,
            reference=_has("spikingjelly"), peers=["spikingjelly"])
    lines = _lines(capsys.readouterr().out)
    assert lines[-1]["config"]["summary"] is True
    first = lines[0]
    assert first["ours"]["median_s"] > 0 and first["ours"]["saved_mib"] > 0
    if _has("spikingjelly"):
        assert first["ratio"]["median_s"] > 0
        assert "target_time_le_1x_spikingjelly" in lines[-1]["ours"]


# --------------------------------------------------------------------------- W1
@pytest.mark.parametrize("state", list(w1.OURS_STATES))
def test_w1_ours_states_run(state: str) -> None:
    net, step = w1.build_ours(state, 2, n_steps=4)
    step()
    assert net.training == w1.OURS_STATES[state][2]
    if state == "final_width":
        assert float(net.delayed()[0].sigma) == pytest.approx(0.5)


def test_w1_layer_shapes_and_parameters() -> None:
    assert w1.layer_shapes(100) == [(140, 256, 112), (256, 256, 124), (256, 20, 136)]
    net, _ = w1.build_ours("initial_width", 1, n_steps=2, config=DCLSConfig.shd())
    assert count_parameters(net) == 214_016


@needs_dcls
def test_w1_reference_matches_shapes_and_count() -> None:
    net, step = w1.build_reference("train", 2, n_steps=4)
    assert net.count_parameters() == 214_016
    step()
    x, _ = bernoulli_input(4, 2, 140, 0.03, seed=0)
    with torch.no_grad():
        assert net(x).shape == (4 + 3 * 12, 2, 20)
    net.reset_states()
    ref_eval, fwd = w1.build_reference("eval", 2, n_steps=4)
    fwd()
    assert not ref_eval.training


def test_w1_main_json(capsys: pytest.CaptureFixture[str]) -> None:
    w1.main(batches=(2,), n_steps=4, states=["initial_width", "eval_rounded"], repeats=1,
            warmup=1, memory=False, roofline=True, reference=_has("DCLS"))
    lines = _lines(capsys.readouterr().out)
    states = [ln["config"].get("state") for ln in lines if ln["workload"] == w1.WORKLOAD]
    assert states[:2] == ["initial_width", "eval_rounded"]
    roof = next(ln for ln in lines if ln["workload"] == "W6 roofline")
    assert roof["ours"]["matmul_peak_gflops"] > 0
    assert lines[-1]["config"]["summary"] is True


# --------------------------------------------------------------------------- W3
def test_w3_ours_step_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    w3 = _w3()
    net, step = w3.build_ours(2, 6)
    assert float(net.recurrent_modules()[0].sigma) == 10.0
    step()
    w3.main(configs=[(2, 6)], repeats=1, warmup=1, memory=False, reference=False)
    lines = _lines(capsys.readouterr().out)
    assert lines[0]["ours"]["parameters"] == 173_844
    assert lines[0]["ours"]["saved_mib"] > 0
    assert lines[-1]["config"]["summary"] is True


@needs_sj
def test_w3_yardstick_runs() -> None:
    out = _w3()._yardstick(2, 5, 0.05, seed=0, repeats=1, warmup=1, budget_s=None)
    assert out["median_s"] > 0 and out["saved_mib"] > 0


def test_cli_knows_the_workloads() -> None:
    from ctsnn import cli

    with pytest.raises(SystemExit):
        cli.main(["bench", "w9"])
