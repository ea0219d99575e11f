"""The DCLS GSC-35 configs: parameter counts of the paper, and ctsnn train / eval end to end on
a tiny Speech Commands tree the test writes (same layout, tones as words)."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from ctsnn.cli import main
from ctsnn.config import ConfigError, build_data, build_model, load_config, validate_config
from ctsnn.training import count_parameters

WORDS = ("yes", "no", "up")


def _wav(path: Path, freq: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(16_000) / 16_000
    x = np.round(6000 * np.sin(2 * np.pi * freq * t) + rng.normal(0, 300, t.size))
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(x.astype("<i2").tobytes())


@pytest.fixture(scope="module")
def gsc_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gsc") / "speech_commands_v0.02"
    lists: dict[str, list[str]] = {"validation": [], "testing": []}
    for w, word in enumerate(WORDS):
        for k in range(6):
            rel = f"{word}/s{k}_nohash_0.wav"
            _wav(root / rel, 300.0 * (w + 1) + 20 * k, seed=10 * w + k)
            if k == 4:
                lists["validation"].append(rel)
            elif k == 5:
                lists["testing"].append(rel)
    for split, files in lists.items():
        (root / f"{split}_list.txt").write_text("\n".join(files) + "\n")
    return root


@pytest.mark.parametrize("name, count", [("dcls_gsc_2l", 705_536), ("dcls_gsc_3l", 1_230_848)])
def test_gsc_configs_have_the_papers_parameter_counts(name: str, count: int) -> None:
    cfg = load_config(name)                    # SEEDS A3: 0.7 M (2 layers) and 1.2 M (3 layers)
    assert count_parameters(build_model(cfg)) == count
    assert cfg.model.n_in == 140 and cfg.model.n_out == 35 and cfg.data.f_max == "reference"
    assert cfg.experiment.target.value == (94.91 if name.endswith("2l") else 95.29)


def test_gsc_data_from_a_config(gsc_root: Path, tmp_path: Path) -> None:
    cfg = load_config("dcls_gsc_2l", [f"data.root={gsc_root}", f"data.cache_dir={tmp_path}"])
    sets = build_data(cfg)
    assert (len(sets.train), len(sets.valid), len(sets.test)) == (12, 3, 3)
    x, y = sets.collate([sets.train[0], sets.train[4]])
    # sorted by path: "no" (word 18 of the 35), then "up" (30)
    assert x.shape == (101, 2, 140) and y.tolist() == [18, 30]
    raw = {"experiment": {"name": "x", "paper": "none"},
           "data": {"kind": "gsc", "root": str(gsc_root)}, "model": {"kind": "delrec"}}
    with pytest.raises(ConfigError, match="model.kind: gsc gives real-valued log-mel features"):
        validate_config(raw, "x.yaml")
    with pytest.raises(ConfigError, match="x.yaml: data.recipe: Extra inputs"):
        validate_config({**raw, "data": {**raw["data"], "recipe": "dcls"}}, "x.yaml")


def test_train_and_eval_gsc_end_to_end(gsc_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", "dcls_gsc_2l", "--out", str(out), f"data.root={gsc_root}",
            "model.n_hidden=8", "model.n_layers=1", "train.epochs=1", "train.batch_size=6",
            "train.progress=false"]
    assert main(args) == 0
    final = json.loads((out / "final.json").read_text())
    assert final["test"]["samples"] == 3
    capsys.readouterr()
    assert main(["eval", str(out / "best.pt")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["metrics"]["accuracy"] == pytest.approx(final["test"]["accuracy"], abs=1e-12)
    assert result["target"]["value"] == 94.91
