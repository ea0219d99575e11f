"""SIGKILL at any moment, resume, and get bit-identical weights to an uninterrupted run (CPU).

The fast test kills once (mid-write) and runs the reference and the resumed part in this
process (the same script, with the same single thread); the slow one runs everything in
subprocesses and kills three times. A tiny DCLS network (Gaussian-kernel learnable delays,
batch norm, dropout, the DCLS sigma and one-cycle schedules) trains with a checkpoint after
every batch. The run is killed with SIGKILL in the middle of writing a checkpoint
(``torch.save`` is made to pause half-way through the temporary file), right after a
checkpoint, and in the middle of another write; each time it is started again and resumes.
The final weights, the best (validation) weights, the log and the test metrics must equal
those of an uninterrupted run with the same seed exactly (``torch.equal``).
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import ctsnn.training.trainer as trainer_module
from ctsnn.training import load_checkpoint

ROOT = Path(__file__).resolve().parents[3]

CHILD = textwrap.dedent('''
    import io, os, sys, time
    import torch

    torch.set_num_threads(1)
    pause_at = int(os.environ.get("PAUSE_AT_SAVE", "0"))
    calls = [0]
    original_save = torch.save

    def save(obj, f, *args, **kwargs):  # the n-th torch.save pauses half-way through its file
        calls[0] += 1
        if calls[0] != pause_at or not hasattr(f, "write"):
            return original_save(obj, f, *args, **kwargs)
        buf = io.BytesIO()
        original_save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
        print("MIDWRITE", calls[0], flush=True)
        time.sleep(120)
        f.write(data[len(data) // 2:])

    torch.save = save

    import ctsnn.training.trainer as trainer_module
    from ctsnn.data import PaddedCollate
    from ctsnn.papers.dcls import DCLSConfig, DCLSNet, dcls_optimisers
    from ctsnn.training import Trainer, TrainerConfig

    original_atomic = trainer_module.atomic_save

    def atomic_save(obj, path):
        original_atomic(obj, path)
        print("SAVED", path.name, flush=True)

    trainer_module.atomic_save = atomic_save

    class Data(torch.utils.data.Dataset):
        def __init__(self, n, seed):
            g = torch.Generator().manual_seed(seed)
            self.y = torch.randint(0, 3, (n,), generator=g)
            rate = 0.1 + 0.3 * torch.nn.functional.one_hot(self.y, 3).repeat_interleave(2, 1)
            self.x = (torch.rand(n, 10, 6, generator=g) < rate[:, None, :]).float()
        def __len__(self):
            return len(self.y)
        def __getitem__(self, i):
            return self.x[i], int(self.y[i])

    torch.manual_seed(0)
    model = DCLSNet(DCLSConfig(n_in=6, n_hidden=8, n_layers=1, n_out=3, dt=0.01,
                               max_delay=0.05, dropout=0.3, epochs=3))
    cfg = TrainerConfig(epochs=3, batch_size=8, val_fraction=0.25, seed=5, progress=False,
                        checkpoint_every=1)
    metrics = Trainer(model, Data(48, 1), cfg, out_dir=sys.argv[1], test_set=Data(16, 2),
                      collate_fn=PaddedCollate(), loss_fn="summed_softmax",
                      optimiser_recipe=dcls_optimisers).fit()
    print("DONE", metrics["test"]["accuracy"], flush=True)
''')


def _run(script: Path, out: Path, *, kill_on: str | None = None, pause_at: int = 0) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PAUSE_AT_SAVE=str(pause_at),
               OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line.strip())
        if kill_on is not None and line.startswith(kill_on) and (
                kill_on != "SAVED" or sum(s.startswith("SAVED") for s in seen) >= 3):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=120)
    err = proc.stderr.read() if proc.stderr else ""
    if kill_on is None:
        assert proc.returncode == 0, err
        assert seen[-1].startswith("DONE"), seen
    else:
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, err)
    return "\n".join(seen)


def _rows(out: Path) -> list[dict]:
    rows = (out / "log.csv").read_text().splitlines()
    header = rows[0].split(",")
    return [{k: v for k, v in zip(header, r.split(","), strict=True) if k != "train_seconds"}
            for r in rows[1:]]


def _run_here(script: Path, out: Path, monkeypatch) -> None:
    """Run the child script in this process (its patches are undone afterwards)."""
    monkeypatch.setattr(torch, "save", torch.save)
    monkeypatch.setattr(trainer_module, "atomic_save", trainer_module.atomic_save)
    monkeypatch.setattr(sys, "argv", [str(script), str(out)])
    monkeypatch.setenv("PAUSE_AT_SAVE", "0")
    threads = torch.get_num_threads()
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_sigkill_resume_is_bit_identical(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    _run(script, reference)

    # 1. killed half-way through writing its 5th file: a torn temporary file is left behind,
    #    the previous checkpoint is intact
    log = _run(script, killed, kill_on="MIDWRITE", pause_at=5)
    assert "MIDWRITE 5" in log
    assert list(killed.glob(".*.tmp-*")), "the interrupted write should have left its temp file"
    load_checkpoint(killed / "last.pt")
    # 2. resumed, then killed right after its third completed checkpoint
    _run(script, killed, kill_on="SAVED")
    # 3. resumed, killed half-way through another write
    _run(script, killed, kill_on="MIDWRITE", pause_at=9)
    # 4. resumed to the end
    _run(script, killed)
    _compare(reference, killed)


def _compare(reference: Path, killed: Path) -> None:
    assert not list(killed.glob(".*.tmp-*"))
    a, b = load_checkpoint(reference / "last.pt"), load_checkpoint(killed / "last.pt")
    assert a["finished"] and b["finished"]
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    best_a, best_b = load_checkpoint(reference / "best.pt"), load_checkpoint(killed / "best.pt")
    assert best_a["epoch"] == best_b["epoch"]
    for key in best_a["model"]:
        assert torch.equal(best_a["model"][key], best_b["model"][key]), key
    assert _rows(reference) == _rows(killed)  # every epoch logged exactly once
    assert [r["epoch"] for r in _rows(killed)] == ["1", "2", "3"]
    fa = json.loads((reference / "final.json").read_text())
    fb = json.loads((killed / "final.json").read_text())
    assert fa["test"] == fb["test"]


def test_sigkill_mid_write_then_resume_fast(tmp_path, monkeypatch, capsys):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    _run_here(script, reference, monkeypatch)
    _run(script, killed, kill_on="MIDWRITE", pause_at=7)
    assert list(killed.glob(".*.tmp-*")) and (killed / "last.pt").exists()
    _run_here(script, killed, monkeypatch)
    assert "DONE" in capsys.readouterr().out
    _compare(reference, killed)
