"""Smoke tests of W3 delrec-shd (``ctsnn bench w3``) on tiny shapes (the yardstick skipped when
SpikingJelly is absent)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from ctsnn.bench import delrec_shd


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


needs_sj = pytest.mark.skipif(not _has("spikingjelly"), reason="spikingjelly not installed")


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_ours_step_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    net, step = delrec_shd.build_ours(2, 6)
    assert float(net.recurrent_modules()[0].sigma) == 10.0
    step()
    delrec_shd.main(configs=[(2, 6)], repeats=1, warmup=1, memory=False, reference=False)
    lines = _lines(capsys.readouterr().out)
    assert lines[0]["ours"]["parameters"] == 173_844
    assert lines[0]["ours"]["saved_mib"] > 0
    assert lines[-1]["config"]["summary"] is True


@needs_sj
def test_yardstick_runs() -> None:
    out = delrec_shd._yardstick(2, 5, 0.05, seed=0, repeats=1, warmup=1, budget_s=None)
    assert out["median_s"] > 0 and out["saved_mib"] > 0
