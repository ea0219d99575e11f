"""build_data for every data kind: splits, collate output, and one forward of the config's
model (small files in the published layouts, written here)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from ctsnn.config import build_data, build_model, load_config
from ctsnn.data import YinYang, write_idx
from ctsnn.spikes import Spikes


def _batch(sets, split, n=4):
    ds = getattr(sets, split)
    return sets.collate([ds[i] for i in range(min(n, len(ds)))])


def test_yinyang_is_generated_and_latency_encoded():
    cfg = load_config("eventprop_yinyang", ["model.hidden=[4]"])
    sets = build_data(cfg)
    assert (len(sets.train), len(sets.valid), len(sets.test)) == (5000, 1000, 1000)
    x, y = _batch(sets, "test")
    assert isinstance(x, Spikes) and x.n_units == 4 and x.times.dtype == torch.float32
    features = torch.stack([YinYang("test")[i][0] for i in range(4)]).float()
    torch.testing.assert_close(x.first_times(), 1.5e-3 + features * 18.5e-3)
    out = build_model(cfg)(x)
    assert out.shape == (4, 3) and y.tolist() == YinYang("test").labels[:4].tolist()


def test_psmnist_from_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train5k", 30), ("t10k", 20)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte",
                  (np.arange(n) % 10).astype(np.uint8))
    cfg = load_config("delrec_psmnist", ["data.protocol=reduced", "model.hidden=[4,4,4]"])
    sets = build_data(cfg, tmp_path)
    assert len(sets.test) == 10 and len(sets.train) + len(sets.valid) == 40
    x, y = _batch(sets, "train", 2)
    assert x.shape == (784, 2, 1) and 0 <= float(x.min()) and float(x.max()) <= 1
    out = build_model(cfg)(x)
    assert out.shape == (784, 2, 10)


def test_braille_from_its_pickle(tmp_path):
    rng = np.random.default_rng(1)
    samples = [{"letter": letter, "events": [[sorted(rng.uniform(0, 0.5, 3).tolist()),
                                              sorted(rng.uniform(0, 0.5, 2).tolist())]
                                             for _ in range(12)]}
               for letter in ("Space", "A", "B") for _ in range(10)]
    with open(tmp_path / "data_braille_letters_th1.pkl", "wb") as f:
        pickle.dump(samples, f)
    cfg = load_config("eventprop_braille_ff256", ["model.hidden=[4,4]"])
    sets = build_data(cfg, tmp_path)          # a folder: the config's file name in it
    assert len(sets.train) + len(sets.valid) + len(sets.test) == 30
    x, y = _batch(sets, "valid", 3)
    assert isinstance(x, Spikes) and x.n_units == 24 and x.dt == pytest.approx(1e-3)
    assert len(x) == 3 * 12 * 5                # every event of the three samples, times kept
    assert build_model(cfg)(x).shape == (3, 27)


def test_sequence_task_and_missing_files(tmp_path):
    sets = build_data(load_config("eventprop_sequence"))
    x, y = _batch(sets, "train")
    assert y.tolist() == [0, 1, 0, 1] and x.n_units == 2
    with pytest.raises(Exception, match="does not exist"):
        build_data(load_config("delrec_psmnist"), tmp_path / "nowhere")
