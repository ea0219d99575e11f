"""Smoke tests of W1 dcls-shd (``ctsnn bench w1``) on tiny shapes (the reference skipped when
DCLS or SpikingJelly is absent)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from ctsnn.bench import dcls_shd
from ctsnn.data import bernoulli_input
from ctsnn.papers.dcls import DCLSConfig


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


needs_dcls = pytest.mark.skipif(not (_has("DCLS") and _has("spikingjelly")),
                                reason="dcls / spikingjelly not installed")


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("state", list(dcls_shd.OURS_STATES))
def test_ours_states_run(state: str) -> None:
    net, step = dcls_shd.build_ours(state, 2, n_steps=4)
    step()
    assert net.training == dcls_shd.OURS_STATES[state][2]
    if state == "final_width":
        assert float(net.delayed()[0].sigma) == pytest.approx(0.5)


def test_layer_shapes_and_parameters() -> None:
    assert dcls_shd.layer_shapes(100) == [(140, 256, 112), (256, 256, 124), (256, 20, 136)]
    from ctsnn.training import count_parameters

    net, _ = dcls_shd.build_ours("initial_width", 1, n_steps=2, config=DCLSConfig.shd())
    assert count_parameters(net) == 214_016


@needs_dcls
def test_reference_matches_shapes_and_count() -> None:
    net, step = dcls_shd.build_reference("train", 2, n_steps=4)
    assert net.count_parameters() == 214_016
    step()
    x, _ = bernoulli_input(4, 2, 140, 0.03, seed=0)
    with torch.no_grad():
        assert net(x).shape == (4 + 3 * 12, 2, 20)
    net.reset_states()
    ref_eval, fwd = dcls_shd.build_reference("eval", 2, n_steps=4)
    fwd()
    assert not ref_eval.training


def test_main_json(capsys: pytest.CaptureFixture[str]) -> None:
    dcls_shd.main(batches=(2,), n_steps=4, states=["initial_width", "eval_rounded"], repeats=1,
            warmup=1, memory=False, roofline=True, reference=_has("DCLS"))
    lines = _lines(capsys.readouterr().out)
    states = [ln["config"].get("state") for ln in lines if ln["workload"] == dcls_shd.WORKLOAD]
    assert states[:2] == ["initial_width", "eval_rounded"]
    roof = next(ln for ln in lines if ln["workload"] == "W6 roofline")
    assert roof["ours"]["matmul_peak_gflops"] > 0
    assert lines[-1]["config"]["summary"] is True
