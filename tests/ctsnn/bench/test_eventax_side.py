"""The eventax side of W7 without running JAX: locating its environment, checking arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctsnn.bench import eventax_side
from ctsnn.bench.event_small_inputs import make_w7_inputs


def test_script_and_env_maker_are_next_to_the_module() -> None:
    assert eventax_side.SCRIPT.is_file()
    assert eventax_side.SCRIPT.with_name("eventax_env.sh").is_file()
    # the script runs in another environment: it must not import torch or ctsnn
    text = eventax_side.SCRIPT.read_text()
    assert "import torch" not in text and "ctsnn" not in text.split('"""')[2]


def test_missing_environment_gives_no_reference(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setenv(eventax_side.ENV_VAR, str(tmp_path / "no-python"))
    assert eventax_side.eventax_python() is None
    inputs = make_w7_inputs(batch=1, n_in=2, n_hidden=2)
    assert eventax_side.run_eventax(inputs, task="forward", strategy="vmap") is None


def test_bad_task_or_strategy_is_refused() -> None:
    inputs = make_w7_inputs(batch=1, n_in=2, n_hidden=2)
    with pytest.raises(ValueError, match="task"):
        eventax_side.run_eventax(inputs, task="backward", strategy="vmap")
    with pytest.raises(ValueError, match="strategy"):
        eventax_side.run_eventax(inputs, task="forward", strategy="pmap")
