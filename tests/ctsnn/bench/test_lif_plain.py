"""Smoke tests of W4 lif-plain (``ctsnn bench w4``) on tiny shapes (peer parts skipped when
absent)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from ctsnn.bench import lif_plain, peers
from ctsnn.data import bernoulli_input


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_ours_trains_and_fires() -> None:
    x, y = bernoulli_input(10, 4, 140, 0.05, seed=0)
    net, run = lif_plain.build("ours", peers.plain_weights(lif_plain.SIZES, seed=0))
    counts = lif_plain.layer_spike_counts(net, run, "ours", x)
    assert len(counts) == 3 and counts[0] > 0
    before = [p.detach().clone() for p in net.parameters()]
    lif_plain.train_step(net, run, x, y)()
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


@pytest.mark.parametrize("peer", ["spikingjelly", "snntorch", "norse"])
def test_peers_simulate_the_same_network(peer: str) -> None:
    if not _has(peer):
        pytest.skip(f"{peer} not installed")
    x, _ = bernoulli_input(20, 4, 140, 0.05, seed=0)
    ws = peers.plain_weights(lif_plain.SIZES, seed=0)
    ours = lif_plain.layer_spike_counts(*lif_plain.build("ours", ws), "ours", x)
    theirs = lif_plain.layer_spike_counts(*lif_plain.build(peer, ws), peer, x)
    assert ours[-len(theirs):] == theirs


def test_main_json(capsys: pytest.CaptureFixture[str]) -> None:
    lif_plain.main(batch=2, n_steps=5, repeats=1, warmup=1, roofline=False,
            reference=_has("spikingjelly"), peers=["spikingjelly"])
    lines = _lines(capsys.readouterr().out)
    assert lines[-1]["config"]["summary"] is True
    first = lines[0]
    assert first["ours"]["median_s"] > 0 and first["ours"]["saved_mib"] > 0
    if _has("spikingjelly"):
        assert first["ratio"]["median_s"] > 0
        assert "target_time_le_1x_spikingjelly" in lines[-1]["ours"]
