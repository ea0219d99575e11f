"""Learning curves from CSV/JSONL logs, delay distributions, DCLS kernel evolution."""

from __future__ import annotations

import json

import pytest
import torch

from ctsnn.plot import delay_distributions, kernel_evolution, learning_curves, read_training_log
from ctsnn.synapses.kernels import gaussian_kernel

ROWS = [{"epoch": 1, "train_loss": 2.0, "val_loss": 2.5, "train_acc": 0.3, "val_acc": 0.25},
        {"epoch": 2, "train_loss": 1.0, "val_loss": 1.5, "train_acc": 0.6, "val_acc": 0.5},
        {"epoch": 3, "train_loss": 0.5, "val_loss": None, "train_acc": 0.8, "val_acc": None}]


def write_csv(path, rows):
    cols = list(rows[0])
    lines = [",".join(cols)] + [",".join("" if r[c] is None else str(r[c]) for c in cols)
                                for r in rows]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_learning_curves_from_a_log_file(tmp_path, fmt):
    path = tmp_path / f"log.{fmt}"
    if fmt == "csv":
        write_csv(path, ROWS)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    assert len(read_training_log(tmp_path)) == 3  # a run directory works too
    fig = learning_curves(path)
    loss, acc = fig.get_axes()
    assert (loss.get_title(), loss.get_xlabel(), loss.get_ylabel()) == ("loss", "epoch", "loss")
    assert (acc.get_title(), acc.get_ylabel()) == ("accuracy", "accuracy (%)")
    train, val = loss.get_lines()
    assert list(train.get_ydata()) == [2.0, 1.0, 0.5]
    assert list(val.get_xdata()) == [1.0, 2.0]  # the missing cell is skipped
    assert list(acc.get_lines()[0].get_ydata()) == pytest.approx([30.0, 60.0, 80.0])
    assert [t.get_text() for t in loss.get_legend().get_texts()] == ["train", "validation"]
    fig.savefig(tmp_path / "lc.png", dpi=50)


def test_learning_curves_tolerate_missing_columns_and_trainer_names():
    rows = [{"train_loss": 1.0, "val_accuracy": 0.5}, {"train_loss": 0.5, "val_accuracy": 0.7}]
    loss, acc = learning_curves(rows).get_axes()
    assert list(loss.get_lines()[0].get_xdata()) == [1, 2]  # no epoch column: row number
    assert list(acc.get_lines()[0].get_ydata()) == pytest.approx([50.0, 70.0])
    only_loss = learning_curves([{"epoch": 1, "train_loss": 1.0}])
    assert [ax.get_title() for ax in only_loss.get_axes()] == ["loss"]
    with pytest.raises(ValueError, match="none of the columns"):
        learning_curves([{"epoch": 1, "lr": 0.1}])
    with pytest.raises(ValueError, match="no rows"):
        learning_curves([])


def test_read_training_log_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no log.jsonl or log.csv"):
        read_training_log(tmp_path)
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"epoch": 1}\nnot json\n')
    with pytest.raises(ValueError, match="line 2"):
        read_training_log(bad)
    other = tmp_path / "x.txt"
    other.write_text("epoch\n1\n")
    with pytest.raises(ValueError, match=".csv or .jsonl"):
        read_training_log(other)


def test_delay_distributions(tmp_path):
    before = torch.linspace(0.0, 0.02, 50)
    after = torch.full((50,), 0.01)
    fig = delay_distributions({"before": before, "after": after}, bins=10)
    (ax,) = fig.get_axes()
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == (
        "delay (ms)", "synapses", "Delay distribution")
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[0] == "before (mean 10 ms, n = 50)" and texts[1].startswith("after (mean 10 ms")
    heights = [p.get_path().vertices[:, 1].max() for p in ax.patches]
    assert heights[1] == 50  # every 'after' delay in one bin
    fig.savefig(tmp_path / "d.png", dpi=50)
    with pytest.raises(ValueError, match="unit"):
        delay_distributions({"a": before}, unit="us")
    with pytest.raises(ValueError, match="not finite"):
        delay_distributions({"a": torch.tensor([float("nan")])})


def test_kernel_evolution(tmp_path):
    epochs = [1, 2, 3]
    delays = torch.tensor([[0.005, 0.010], [0.007, 0.009], [0.008, 0.008]], dtype=torch.float64)
    sigmas = torch.tensor([0.004, 0.002, 0.001], dtype=torch.float64)
    fig = kernel_evolution(epochs, delays, sigmas, dt=1e-3, max_delay=0.02)
    left, right = fig.get_axes()
    assert (left.get_xlabel(), left.get_ylabel()) == ("epoch", "delay (ms)")
    assert (right.get_xlabel(), right.get_ylabel()) == ("delay (ms)", "kernel tap (unit mass)")
    assert left.get_title() and right.get_title() and fig.get_suptitle()
    assert list(left.get_lines()[0].get_ydata()) == pytest.approx([5.0, 7.0, 8.0])
    last = right.get_lines()[-1].get_ydata()
    expected = gaussian_kernel(torch.tensor(8.0, dtype=torch.float64),
                               torch.tensor(1.0, dtype=torch.float64), 21)
    assert list(last) == pytest.approx(expected.tolist())
    fig.savefig(tmp_path / "k.png", dpi=50)
    with pytest.raises(ValueError, match=r"\[E, S\]"):
        kernel_evolution(epochs, delays[:2], sigmas, dt=1e-3, max_delay=0.02)
    with pytest.raises(ValueError, match="sigmas"):
        kernel_evolution(epochs, delays, sigmas[:2], dt=1e-3, max_delay=0.02)
    with pytest.raises(ValueError, match="synapse 5"):
        kernel_evolution(epochs, delays, sigmas, dt=1e-3, max_delay=0.02, synapses=[5])
