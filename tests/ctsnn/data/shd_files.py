"""Writer of tiny SHD-layout HDF5 files for the SHD/SSC tests (not a test module)."""

from __future__ import annotations

import h5py
import numpy as np

# per sample: (times in s, units, label, speaker); chosen to hit the recipes' edge cases:
# a last spike exactly 2 frames after the first (clipped into the last frame), spikes beyond
# 1 s (EventProp drops them) and beyond 1.4 s (DelRec-SSC drops them), two spikes in one 1 ms
# cell (binary, not counts), a single-spike sample and an empty sample.
SAMPLES = [
    ([0.0021, 0.0052, 0.0099, 0.0126, 0.0221, 0.0221], [3, 4, 699, 3, 10, 10], 0, 7),
    ([0.010, 0.015, 0.030], [0, 5, 9], 1, 7),
    ([0.3, 0.3004, 0.95, 1.02, 1.39, 1.45], [100, 100, 101, 102, 103, 104], 0, 3),
    ([0.5], [42], 2, 3),
    ([], [], 1, 11),
    ([0.0, 0.25, 0.2501, 0.7, 0.999], [0, 695, 696, 697, 699], 2, 5),
]


def write_shd(path, samples=SAMPLES, *, times_dtype=np.float16, units_dtype=np.uint16,
              labels_dtype=np.uint16, drop=(), keys=("zero", "one", "two")):
    """Write ``samples`` in the SHD layout; ``drop`` names keys to leave out."""
    vt = h5py.vlen_dtype(np.dtype(times_dtype))
    vu = h5py.vlen_dtype(np.dtype(units_dtype))
    with h5py.File(path, "w") as f:
        if "spikes/times" not in drop:
            d = f.create_dataset("spikes/times", (len(samples),), dtype=vt)
            for i, s in enumerate(samples):
                d[i] = np.asarray(s[0], dtype=times_dtype)
        if "spikes/units" not in drop:
            d = f.create_dataset("spikes/units", (len(samples),), dtype=vu)
            for i, s in enumerate(samples):
                d[i] = np.asarray(s[1], dtype=units_dtype)
        if "labels" not in drop:
            f["labels"] = np.asarray([s[2] for s in samples], dtype=labels_dtype)
        if "extra/speaker" not in drop:
            f["extra/speaker"] = np.asarray([s[3] for s in samples], dtype=np.uint16)
        f["extra/keys"] = np.asarray([k.encode() for k in keys])
    return path
