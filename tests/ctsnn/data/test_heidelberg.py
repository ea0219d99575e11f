"""SHD/SSC HDF5 datasets: exact path, collate, speaker split, caching, malformed files, and the
spoken-digits development file when present."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from shd_files import SAMPLES, write_shd

from ctsnn import Spikes
from ctsnn.data import (
    SHD,
    SSC,
    BinaryBins,
    EventCollate,
    FirstSpikeFrames,
    PaddedCollate,
    speaker_split,
    speaker_split_indices,
)
from ctsnn.data import binning as binning_module


@pytest.fixture
def shd_file(tmp_path):
    return write_shd(tmp_path / "tiny.h5")


def test_layout_metadata_and_lengths(shd_file):
    ds = SHD(shd_file)
    assert len(ds) == len(SAMPLES)
    assert ds.labels.tolist() == [s[2] for s in SAMPLES]
    assert ds.speakers.tolist() == [s[3] for s in SAMPLES]
    assert ds.class_names == ["zero", "one", "two"]
    assert ds._h5 is None  # nothing kept open by the constructor


def test_exact_path_times_equal_file_times(shd_file):
    ds = SHD(shd_file)
    with h5py.File(shd_file, "r") as f:
        for i in range(len(ds)):
            times, units, label = ds[i]
            assert times.dtype == torch.float32 and units.dtype == torch.int64
            np.testing.assert_array_equal(times.numpy(), f["spikes/times"][i].astype(np.float32))
            np.testing.assert_array_equal(units.numpy(), f["spikes/units"][i])
            assert label == f["labels"][i]


def test_event_collate_builds_spikes_with_exact_times(shd_file):
    ds = SHD(shd_file)
    items = [ds[i] for i in range(len(ds))]
    spikes, labels = EventCollate(n_units=700, dt=1e-3, t_max=1.5)(items)
    assert isinstance(spikes, Spikes)
    assert (spikes.batch_size, spikes.n_units, spikes.n_steps) == (6, 700, 1500)
    assert labels.tolist() == [s[2] for s in SAMPLES]
    for b, (t, u, _) in enumerate(items):
        sel = spikes.batch == b
        got = sorted(zip(spikes.times[sel].tolist(), spikes.units[sel].tolist(), strict=True))
        assert got == sorted(zip(t.tolist(), u.tolist(), strict=True))


def test_padded_collate_time_first(shd_file):
    ds = SHD(shd_file, FirstSpikeFrames(10.0, pool=5))
    items = [ds[i] for i in range(len(ds))]
    x, labels, lengths = PaddedCollate()(items)
    assert x.shape == (115, 6, 140) and lengths.tolist() == [2, 2, 115, 1, 0, 100]
    for b, (r, _) in enumerate(items):
        assert torch.equal(x[: r.shape[0], b], r) and x[r.shape[0]:, b].abs().sum() == 0
    assert PaddedCollate(n_steps=120)(items)[0].shape == (120, 6, 140)
    with pytest.raises(ValueError, match="n_steps"):
        PaddedCollate(n_steps=50)(items)


def test_dataloader_workers_open_their_own_file(shd_file):
    ds = SHD(shd_file, FirstSpikeFrames(10.0))
    ds[0]  # opens the file in this process
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._h5 is None and torch.equal(clone[5][0], ds[5][0])
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2,
                                         collate_fn=PaddedCollate())
    assert sum(int(b[1].numel()) for b in loader) == 6


def test_speaker_split_is_disjoint_and_seeded(shd_file):
    ds = SHD(shd_file)
    train, val = speaker_split(ds, fraction=0.25, seed=3)
    assert len(train) + len(val) == len(ds) and len(val) > 0 and len(train) > 0
    assert not set(train.speakers.tolist()) & set(val.speakers.tolist())
    train2, val2 = speaker_split(ds, fraction=0.25, seed=3)
    assert np.array_equal(val.indices, val2.indices)
    speakers = np.repeat(np.arange(40), 5)
    parts = {tuple(speaker_split_indices(speakers, 0.2, s)[1]) for s in range(5)}
    assert len(parts) > 1  # the seed matters
    tr, va = speaker_split_indices(speakers, 0.2, 0)
    assert len(np.unique(speakers[va])) == 8 and not set(speakers[tr]) & set(speakers[va])
    with pytest.raises(ValueError, match="extra/speaker"):
        speaker_split(SHD(write_shd(Path(shd_file).with_name("ns.h5"), drop=("extra/speaker",))))


def test_cache_hits_and_invalidates(shd_file, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    recipe = FirstSpikeFrames(10.0, pool=5)
    plain = [SHD(shd_file, recipe)[i] for i in range(len(SAMPLES))]
    first = SHD(shd_file, recipe, cache_dir=cache)
    assert first.cache_status == "built" and first.cache_path.is_file()
    assert [p.suffix for p in cache.iterdir()] == [".npz"]  # no temp file left behind

    def fail(*args, **kwargs):
        raise AssertionError("binned although the cache should hit")

    with monkeypatch.context() as m:
        m.setattr(binning_module.FirstSpikeFrames, "_events", fail)
        again = SHD(shd_file, recipe, cache_dir=cache)
        assert again.cache_status == "hit" and again.cache_path == first.cache_path
        for i in range(len(plain)):
            assert torch.equal(again[i][0], plain[i][0])
            assert again[i][1] == plain[i][1]

    other = SHD(shd_file, FirstSpikeFrames(20.0, pool=5), cache_dir=cache)
    assert other.cache_status == "built" and other.cache_path != first.cache_path
    assert torch.equal(other[2][0], SHD(shd_file, FirstSpikeFrames(20.0, pool=5))[2][0])

    st = os.stat(shd_file)  # a rewritten file (new mtime) gets a new key
    os.utime(shd_file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert SHD(shd_file, recipe, cache_dir=cache).cache_status == "built"
    c1 = SHD(shd_file, recipe, cache_dir=cache, identity="content")
    os.utime(shd_file, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    c2 = SHD(shd_file, recipe, cache_dir=cache, identity="content")
    assert (c1.cache_status, c2.cache_status) == ("built", "hit")  # content unchanged


def _error(path, key, **kw):
    with pytest.raises(ValueError) as info:
        ds = SHD(path, check="full", **kw)
        ds[0]
    msg = str(info.value)
    assert str(path) in msg and f"'{key}'" in msg, msg


@pytest.mark.parametrize("key", ["spikes/times", "spikes/units", "labels"])
def test_missing_key(tmp_path, key):
    _error(write_shd(tmp_path / "m.h5", drop=(key,)), key)


def test_wrong_dtypes(tmp_path):
    _error(write_shd(tmp_path / "a.h5", times_dtype=np.int32), "spikes/times")
    _error(write_shd(tmp_path / "b.h5", units_dtype=np.float32), "spikes/units")
    _error(write_shd(tmp_path / "c.h5", labels_dtype=np.float32), "labels")


@pytest.mark.parametrize("check", ["full", "lazy"])
def test_bad_contents(tmp_path, check):
    def sample(times, units):
        return [SAMPLES[0], (times, units, 0, 1)]

    cases = [
        (sample([0.1, 0.2], [3, 700]), "spikes/units"),  # out of range
        (sample([-0.1, 0.2], [3, 4]), "spikes/times"),  # negative
        (sample([0.1, float("nan")], [3, 4]), "spikes/times"),
        (sample([0.1, 0.2], [3]), "spikes/times"),  # lengths differ
    ]
    for k, (samples, key) in enumerate(cases):
        path = write_shd(tmp_path / f"bad{k}.h5", samples)
        with pytest.raises(ValueError) as info:
            ds = SHD(path, FirstSpikeFrames(10.0), check=check)
            ds[0]  # the good sample reads fine lazily
            ds[1]
        assert str(path) in str(info.value) and f"'{key}'" in str(info.value)
    path = write_shd(tmp_path / "lab.h5", [(SAMPLES[0][0], SAMPLES[0][1], 35, 0)])
    SHD(path, n_classes=36)
    _error(path, "labels")  # SHD: 20 classes
    with pytest.raises(ValueError, match="labels"):
        SSC(path)


def test_not_a_file_and_not_hdf5(tmp_path):
    with pytest.raises(FileNotFoundError, match="never"):
        SHD(tmp_path / "absent.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="junk.h5"):
        SHD(junk)


def _shared_data() -> Path | None:
    root = Path(__file__).resolve().parents[3]
    for cand in (root.parent / "shared" / "data", Path("/work/shared/data")):
        if (cand / "spoken_digits" / "test.h5").is_file():
            return cand
    return None


def test_spoken_digits_test_file():
    data = _shared_data()
    if data is None:
        pytest.skip("shared spoken_digits data not present")
    ds = SHD(data / "spoken_digits" / "test.h5")
    assert len(ds) == 480 and len(np.unique(ds.labels)) == 20
    assert np.bincount(ds.labels).tolist() == [24] * 20
    times, units, _ = ds[0]
    assert times.numel() == units.numel() > 0
    binned = SHD(data / "spoken_digits" / "test.h5", BinaryBins())
    assert binned[0][0].shape == (1000, 700)
