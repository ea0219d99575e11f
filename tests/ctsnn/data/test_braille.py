"""Braille reading from its event pickle: a small file written in the published layout
(list of {'letter', 'events'} samples; 12 taxels x (ON, OFF) event times in seconds)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ctsnn.data import BRAILLE_LETTERS, Braille, BrailleFormatError, load_braille
from ctsnn.data.braille import stratified_split


def _sample(rng: np.random.Generator, letter: str) -> dict:
    events = []
    for _ in range(12):
        on = sorted(rng.uniform(0, 1.2, rng.integers(0, 4)).tolist())
        off = sorted(rng.uniform(0, 1.2, rng.integers(0, 3)).tolist())
        events.append([on, off])
    return {"letter": letter, "events": events}


def _write(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return path


@pytest.fixture
def braille_file(tmp_path):
    rng = np.random.default_rng(0)
    samples = [_sample(rng, letter) for letter in ("Space", "A", "Z") for _ in range(10)]
    return _write(tmp_path / "data_braille_letters_th_1.pkl", samples), samples


def test_reads_events_channels_and_labels(braille_file):
    path, raw = braille_file
    samples, labels, n_channels = load_braille(path)
    assert n_channels == 24 and len(samples) == 30
    assert labels.tolist() == [0] * 10 + [1] * 10 + [26] * 10
    assert BRAILLE_LETTERS[0] == "Space" and BRAILLE_LETTERS[26] == "Z"
    times, chans = samples[3]
    assert np.all(np.diff(times) >= 0)  # time-sorted
    for taxel in range(12):
        for pol in range(2):
            got = np.sort(times[chans == 2 * taxel + pol])
            assert np.array_equal(got, np.sort(raw[3]["events"][taxel][pol]))


def test_dict_of_columns_layout_is_equivalent(braille_file, tmp_path):
    path, raw = braille_file
    cols = {"letter": [s["letter"] for s in raw], "events": [s["events"] for s in raw]}
    other = _write(tmp_path / "columns.pkl", cols)
    a, la, _ = load_braille(path)
    b, lb, _ = load_braille(other)
    assert np.array_equal(la, lb)
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1])
               for x, y in zip(a, b, strict=True))


def test_stratified_splits_and_collate(braille_file):
    path, _ = braille_file
    parts = {s: Braille(path, s, seed=1) for s in ("train", "valid", "test")}
    assert {s: len(d) for s, d in parts.items()} == {"train": 21, "valid": 3, "test": 6}
    for d in parts.values():
        counts = torch.bincount(d.labels, minlength=27)
        assert set(counts[[0, 1, 26]].tolist()) == {len(d) // 3}  # stratified
    ids = np.concatenate(stratified_split(load_braille(path)[1], seed=1))
    assert sorted(ids.tolist()) == list(range(30))  # a partition
    again = Braille(path, "train", seed=1)
    assert torch.equal(again.labels, parts["train"].labels)
    assert any(not np.array_equal(x[0], y[0]) for x, y in
               zip(Braille(path, "train", seed=2).samples, again.samples, strict=True))
    ds = parts["train"]
    spikes, y = next(iter(DataLoader(ds, batch_size=4, collate_fn=ds.collate)))
    assert (spikes.batch_size, spikes.n_units, spikes.dt) == (4, 24, 1e-3)
    assert spikes.n_steps * spikes.dt >= max(float(t[-1]) for t, _ in ds.samples if len(t))
    assert torch.equal(y, ds.labels[:4]) and spikes.times.dtype == torch.float64
    t0, u0, _ = ds[0]
    assert torch.equal(spikes.select([0]).times, t0)
    assert spikes.raster().shape == (spikes.n_steps, 4, 24)  # time-first [T, B, N]
    short = Braille(path, "all", max_time=0.5)
    assert len(short) == 30 and max(float(t.max()) for t, _ in short.samples if len(t)) <= 0.5


@pytest.mark.parametrize("obj, message", [
    ([{"letter": "A"}], r"sample 0 lacks the field 'events'"),
    ([{"letter": "AB", "events": [[[], []]] * 12}], "sample 0 field 'letter' is 'AB'"),
    ([{"letter": "A", "events": [[[0.1]]] * 12}], "sample 0 field 'events' must hold 12"),
    ([{"letter": "A", "events": [[[], []]] * 12}, {"letter": "B", "events": [[[], []]] * 11}],
     "sample 1 field 'events' must hold 12"),
    ([{"letter": "A", "events": [[[-0.1], []]] * 12}], "negative or non-finite"),
    ({"events": []}, "missing field 'letter'"),
    (42, "expected a list of samples"),
])
def test_malformed_files_name_file_sample_and_field(tmp_path, obj, message):
    path = _write(tmp_path / "bad.pkl", obj)
    with pytest.raises(BrailleFormatError, match=message) as err:
        load_braille(path)
    assert str(path) in str(err.value)


def test_not_a_pickle(tmp_path):
    path = tmp_path / "junk.pkl"
    path.write_bytes(b"this is not a pickle")
    with pytest.raises(BrailleFormatError, match="not a readable pickle") as err:
        load_braille(path)
    assert str(path) in str(err.value)
