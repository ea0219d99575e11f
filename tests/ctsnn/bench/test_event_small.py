"""W7 ``event-small`` on tiny sizes: setup and accuracy plumbing (nothing is timed here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ctsnn.bench import event_small as w7
from ctsnn.bench.event_small_inputs import events_of, load_npz, make_w7_inputs, save_npz

TINY = {"n_in": 4, "n_hidden": 6, "n_out": 2, "duration": 0.05, "rate": 200.0}


def test_both_sides_get_the_same_spikes_and_parameters(tmp_path: Path) -> None:
    """Our Spikes hold exactly the events the eventax script reads from the file."""
    inputs = make_w7_inputs(seed=0, batch=3, **TINY)
    save_npz(tmp_path / "in.npz", inputs)
    theirs = events_of(load_npz(tmp_path / "in.npz"))
    spikes = w7.make_spikes(inputs, w7.DT, torch.float32)
    ours = (spikes.times.double().numpy(), spikes.units.numpy(), spikes.batch.numpy())
    key = [np.lexsort((t, u, b)) for t, u, b in (ours, theirs)]
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a[key[0]], b[key[1]])
    layers = w7.make_layers(inputs, torch.float32, train=True)
    np.testing.assert_array_equal(layers[0].synapse.weight.detach().numpy(), inputs["w_in"])
    np.testing.assert_array_equal(layers[0].synapse.delay.detach().numpy(), inputs["d_in"])
    np.testing.assert_array_equal(layers[1].synapse.weight.detach().numpy(), inputs["w_out"])


def test_our_float64_run_matches_the_exact_reference() -> None:
    inputs = make_w7_inputs(seed=1, batch=2, **TINY)
    ref = w7.reference_events(inputs)
    ours = w7.run_forward(inputs, torch.float64, w7.DT)
    assert ref[0].size > 0
    acc = w7.spike_accuracy(ours, ref, TINY["n_hidden"])
    assert acc["n_ours"] == acc["n_ref"] and acc["n_units_count_mismatch"] == 0
    assert acc["max_abs_dt_s"] <= 1e-12


def test_training_step_gives_weight_and_delay_gradients() -> None:
    inputs = make_w7_inputs(seed=0, batch=2, **TINY)
    layers = w7.make_layers(inputs, torch.float32, train=True)
    step = w7.train_call(layers, w7.make_spikes(inputs, w7.DT, torch.float32),
                         torch.as_tensor(inputs["labels"]))
    loss = step()
    assert np.isfinite(loss)
    for layer in layers:
        assert layer.synapse.weight.grad is not None and layer.synapse.delay.grad is not None


def test_eventax_record_parsing_and_best_strategy() -> None:
    rec = {"result": {"times": [0.01, 0.02], "units": [3, 1], "batch": [0, 1]}}
    t, u, b = w7.eventax_events(rec)
    assert t.dtype == np.float64 and list(u) == [3, 1] and list(b) == [0, 1]
    fields = {"min_s": 1.0, "max_s": 9.0, "first_call_s": 20.0, "cpu_per_wall": 1.0,
              "protocol": {}}
    ref = w7.reference_record({"vmap": {"median_s": 8.0, **fields},
                             "loop": {"median_s": 2.0, **fields}})
    assert ref is not None and ref["best_strategy"] == "loop" and ref["median_s"] == 2.0
    ours: dict[str, Any] = {"median_s": 0.5}
    w7.add_speedups(ours, ref)
    assert ours["speedup_vs_best"] == 4.0 and ours["speedup_vs_vmap"] == 16.0
    assert w7.reference_record({}) is None


def test_main_without_the_peer_prints_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    code = w7.main(reference=False, batches=(2,), train_batch=2, sizes=TINY, repeats=1,
                   warmup=0)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert [ln["config"].get("task") for ln in lines] == ["forward", "train", None]
    forward = lines[0]
    assert forward["reference"] is None
    assert forward["ours"]["accuracy_float64"]["max_abs_dt_s"] <= 1e-9
    assert lines[-1]["ours"]["float64_within_1e-9_s"] is True


def test_main_can_run_the_training_step_alone(capsys: pytest.CaptureFixture[str]) -> None:
    assert w7.main(reference=False, batches=(), train_batch=2, sizes=TINY, repeats=1,
                   warmup=0) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [ln["config"].get("task") for ln in lines] == ["train", None]
    assert lines[-1]["ours"]["forward_target_met"] is None
