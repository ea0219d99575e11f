"""End to end: ctsnn train on tiny synthetic SHD files, ctsnn eval on its checkpoint, and the
refusals (unknown key, wrong type, another architecture, another run directory)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from config_files import tiny_dcls, write_config, write_synthetic_shd

from ctsnn.cli import main
from ctsnn.config import ConfigError, build_data, load_config


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def shd_root(tmp_path_factory):
    return write_synthetic_shd(tmp_path_factory.mktemp("shd"))


@pytest.fixture(scope="module")
def dcls_run(shd_root, tmp_path_factory):
    """One finished tiny DCLS run: (config path, run directory, final metrics)."""
    base = tmp_path_factory.mktemp("run")
    config = write_config(base / "tiny.yaml", tiny_dcls(shd_root))
    out = base / "out"
    assert main(["train", str(config), "--out", str(out)]) == 0
    final = json.loads((out / "final.json").read_text())
    return config, out, final


def test_train_writes_a_run_and_eval_reproduces_its_test_metrics(dcls_run, capsys):
    config, out, final = dcls_run
    assert {"experiment.json", "run.json", "last.pt", "best.pt", "final.json"} <= set(
        p.name for p in out.iterdir())
    record = json.loads((out / "experiment.json").read_text())
    assert record["model"]["n_hidden"] == 8 and record["train"]["epochs"] == 1
    assert main(["eval", str(out / "best.pt")]) == 0
    result = json.loads(capsys.readouterr().out)
    # the trainer tested the best-validation weights: eval of best.pt gives the same numbers
    assert result["metrics"]["samples"] == final["test"]["samples"] == 40
    assert result["metrics"]["accuracy"] == pytest.approx(final["test"]["accuracy"], abs=1e-12)
    assert result["metrics"]["loss"] == pytest.approx(final["test"]["loss"], rel=1e-6)
    assert result["target"]["value"] == 95.07
    # another split and a moved data folder
    assert main(["eval", str(out / "last.pt"), "--split", "valid",
                 "--data", record["data"]["root"]]) == 0
    valid = json.loads(capsys.readouterr().out)
    assert valid["split"] == "valid" and valid["metrics"]["samples"] > 0


def test_eval_refuses_another_architecture(dcls_run, tmp_path, capsys):
    config, out, _ = dcls_run
    other = tiny_dcls(Path(json.loads((out / "experiment.json").read_text())["data"]["root"]))
    other["model"]["n_hidden"] = 16
    other_path = write_config(tmp_path / "other.yaml", other)
    assert main(["eval", str(out / "best.pt"), "--config", str(other_path)]) == 2
    err = capsys.readouterr().err
    assert "model.n_hidden: 8 -> 16" in err and str(other_path) in err
    assert str(out / "best.pt") in err
    assert main(["eval", str(out / "best.pt"), "model.n_layers=2"]) == 2
    assert "model.n_layers: 1 -> 2" in capsys.readouterr().err


def test_eval_refuses_tensors_of_another_architecture(dcls_run, tmp_path, capsys):
    """A checkpoint whose stored config does not describe its tensors (here: edited) is
    refused by the architecture fingerprint, naming the tensors that differ."""
    _, out, _ = dcls_run
    ckpt = torch.load(out / "best.pt", weights_only=False)
    ckpt["metadata"]["experiment"]["model"]["n_hidden"] = 16
    forged = tmp_path / "forged.pt"
    torch.save(ckpt, forged)
    assert main(["eval", str(forged)]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {forged} was written by another architecture" in err
    assert "shape [8, 140] torch.float32 in the checkpoint, [16, 140] torch.float32 here" in err


def test_train_refuses_a_run_dir_of_another_config_and_overwrites_nothing(dcls_run, capsys):
    config, out, _ = dcls_run
    before = _files(out)
    assert main(["train", str(config), "--out", str(out), "train.epochs=2"]) == 2
    err = capsys.readouterr().err
    assert "train.epochs: 1 -> 2" in err and str(out / "experiment.json") in err
    # the same config: the trainer says the run has finished
    assert main(["train", str(config), "--out", str(out)]) == 2
    assert "has finished" in capsys.readouterr().err
    assert _files(out) == before


def test_train_refuses_a_foreign_directory(dcls_run, tmp_path, capsys):
    config, _, _ = dcls_run
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["train", str(config), "--out", str(foreign)]) == 2
    assert "not a ctsnn train run directory" in capsys.readouterr().err
    assert _files(foreign) == {"notes.txt": b"mine"}


def test_cli_reports_config_errors_with_file_and_key(shd_root, tmp_path, capsys):
    data = tiny_dcls(shd_root)
    data["model"]["n_hiden"] = 3
    path = write_config(tmp_path / "typo.yaml", data)
    assert main(["train", str(path), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert f"{path}: model.n_hiden: Extra inputs are not permitted" in err
    good = write_config(tmp_path / "good.yaml", tiny_dcls(shd_root))
    assert main(["train", str(good), "train.epochs=abc", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert f"{good}: train.epochs:" in err and "override 'train.epochs=abc'" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_trainer_refusal_leaves_no_run_directory(tmp_path, capsys):
    out = tmp_path / "refused"
    # the sequence task learns delays only: a weight schedule is refused by the trainer
    assert main(["train", "eventprop_sequence", "train.schedule=one_cycle", "--out",
                 str(out)]) == 2
    assert "no learnable weight" in capsys.readouterr().err
    assert not out.exists()


def test_train_list_and_help(capsys):
    assert main(["train", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("dcls_shd_2l", "delrec_ssc", "eventprop_braille_ff"):
        assert name in out
    for command in ("train", "eval", "bench", "demo"):
        with pytest.raises(SystemExit):
            main([command, "-h"])
        assert "``" not in capsys.readouterr().out


def test_shipped_sequence_task_reaches_the_papers_result(tmp_path, capsys):
    """SEEDS C3.1: from the worst initialisation, delays only, 100 % after each example was
    seen at most 6 times (3 epochs of the four trials [0, 1, 0, 1])."""
    out = tmp_path / "seq"
    assert main(["train", "eventprop_sequence", "--out", str(out), "train.epochs=3",
                 "train.progress=false"]) == 0
    capsys.readouterr()
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert float(rows[0]["train_accuracy"]) == 0.0       # the worst initialisation
    assert float(rows[-1]["val_accuracy"]) == 1.0
    assert main(["eval", str(out / "last.pt")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["experiment"] == "eventprop_sequence" and result["metrics"]["samples"] == 4
    assert result["metrics"]["accuracy"] == 1.0


@pytest.mark.parametrize("model", [
    {"kind": "delrec", "preset": "shd", "hidden": [4, 4]},
    {"kind": "eventprop", "n_in": 700, "hidden": [4], "n_out": 20, "recurrent": False,
     "time": "discrete", "max_delay": 0.02, "delay_init": [0.0, 0.02],
     "in_weight": [0.3, 0.1]},
])
def test_other_models_train_on_the_same_files(shd_root, tmp_path, model):
    data = tiny_dcls(shd_root)
    data["experiment"]["paper"] = model["kind"]
    data["model"] = model
    if model["kind"] == "delrec":
        data["data"].update(recipe="delrec_shd", augment="delrec", max_shift=5)
        data["train"].update(batch_size=64)
    else:
        data["data"].update(recipe=None, t_max=0.25)
        data["train"].update(lr_delay=1e-3)
    path = write_config(tmp_path / "m.yaml", data)
    out = tmp_path / "out"
    assert main(["train", str(path), "--out", str(out)]) == 0
    assert main(["eval", str(out / "best.pt")]) == 0


def test_file_names_and_validation_file_are_configurable(tmp_path):
    root = write_synthetic_shd(tmp_path / "sd", splits=("train", "valid", "test"),
                               prefix="digits", n_per_class=1)
    data = tiny_dcls(root)
    data["data"].update(train_file="digits_train.h5", test_file="digits_test.h5",
                        valid_file="digits_valid.h5", validation="official")
    cfg = load_config(write_config(tmp_path / "c.yaml", data))
    sets = build_data(cfg)
    assert len(sets.train) == len(sets.valid) == len(sets.test) == 20
    assert str(sets.valid.path).endswith("digits_valid.h5")
    data["data"].update(valid_file=None)
    with pytest.raises(ConfigError, match="data.validation"):
        load_config(write_config(tmp_path / "d.yaml", data))


def test_seed_sweep_trains_one_run_per_seed(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["train", "eventprop_sequence", "--seeds", "3,4", "--out", str(out),
                 "train.epochs=1", "train.progress=false"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    finals = [json.loads((out / f"seed{s}" / "final.json").read_text()) for s in (3, 4)]
    acc = [f["test"]["accuracy"] for f in finals]
    stats = summary["aggregate"]["test.accuracy"]
    assert summary["seeds"] == [3, 4] and stats["n"] == 2 and stats["values"] == acc
    assert stats["mean"] == pytest.approx(sum(acc) / 2)
    assert stats["std"] == pytest.approx(abs(acc[0] - acc[1]) / 2 ** 0.5)
    assert json.loads((out / "sweep.json").read_text()) == summary
    assert "test accuracy over seeds [3, 4]: " in captured.err and "paper: 100.0 %" in captured.err
    # again: the finished runs are reused, nothing is retrained or rewritten
    before = {s: _files(out / f"seed{s}") for s in (3, 4)}
    assert main(["train", "eventprop_sequence", "--seeds", "3,4", "--out", str(out),
                 "train.epochs=1", "train.progress=false"]) == 0
    assert json.loads(capsys.readouterr().out) == summary
    assert {s: _files(out / f"seed{s}") for s in (3, 4)} == before
    seeds = [json.loads((out / f"seed{s}" / "experiment.json").read_text())["train"]["seed"]
             for s in (3, 4)]
    assert seeds == [3, 4]
    assert main(["train", "eventprop_sequence", "--seeds", "1", "train.seed=2",
                 "--out", str(tmp_path / "x")]) == 2
    assert "conflict" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
