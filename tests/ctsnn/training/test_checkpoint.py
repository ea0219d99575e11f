"""Atomic writes, RNG round trips, architecture fingerprints, append-safe logs."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from ctsnn.training.checkpoint import (
    atomic_save,
    atomic_write_text,
    check_fingerprint,
    fingerprint,
    load_checkpoint,
    remove_stale_temporaries,
    restore_model,
    rng_state,
    set_rng_state,
)
from ctsnn.training.logs import RunLog


def test_atomic_save_replaces_whole_files_and_leaves_no_temporaries(tmp_path, monkeypatch):
    path = tmp_path / "x.pt"
    atomic_save({"format": "ctsnn-trainer-1", "v": 1}, path)
    assert load_checkpoint(path)["v"] == 1 and sorted(tmp_path.iterdir()) == [path]

    def torn(obj, f):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"v": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["v"] == 1 and sorted(tmp_path.iterdir()) == [path]
    (tmp_path / ".x.pt.tmp-999").write_bytes(b"torn")  # what a SIGKILL mid-write leaves
    assert [p.name for p in remove_stale_temporaries(tmp_path)] == [".x.pt.tmp-999"]
    atomic_write_text("hello", tmp_path / "t.txt")
    assert (tmp_path / "t.txt").read_text() == "hello"
    torch.save([1], tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a ctsnn trainer checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_rng_state_round_trip():
    state = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_fingerprint_says_what_differs():
    a = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    check_fingerprint(fingerprint(a), nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)), "f")
    with pytest.raises(ValueError, match=r"0\.weight: shape \[4, 3\] torch\.float32 in the "
                                         r"checkpoint, \[4, 5\]"):
        check_fingerprint(fingerprint(a), nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4)), "f")
    with pytest.raises(ValueError, match=r"entries only in the checkpoint: \['1\.weight'"):
        check_fingerprint(fingerprint(a), nn.Sequential(nn.Linear(3, 4)), "f")
    with pytest.raises(ValueError, match="float64"):
        check_fingerprint(fingerprint(a), a.double(), "f")


def test_restore_model_checks_the_architecture(tmp_path):
    a = nn.Linear(3, 2)
    atomic_save({"format": "ctsnn-trainer-1", "fingerprint": fingerprint(a),
                 "model": a.state_dict()}, tmp_path / "best.pt")
    b = nn.Linear(3, 2)
    restore_model(b, tmp_path / "best.pt")
    assert torch.equal(a.weight, b.weight)
    with pytest.raises(ValueError, match="another architecture"):
        restore_model(nn.Linear(4, 2), tmp_path / "best.pt")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_log_rewrite_and_append(tmp_path, fmt):
    log = RunLog(tmp_path, fmt)
    log.append({"epoch": 1, "loss": 0.5})
    log.append({"epoch": 2, "loss": 0.25})
    log.rewrite(log.rows[:1])  # resume from after epoch 1: epoch 2 is re-run
    log.append({"epoch": 2, "loss": 0.25, "extra": 3})  # a new column
    rows = log.read()
    assert [str(r["epoch"]) for r in rows] == ["1", "2"]
    assert str(rows[1]["extra"]) == "3" and rows[0].get("extra") in ("", None)
