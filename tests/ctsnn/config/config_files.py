"""Tiny synthetic data and configs for the config/CLI tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import yaml


def write_synthetic_shd(root: Path, *, n_per_class: int = 2, n_classes: int = 20,
                        n_speakers: int = 5, seed: int = 0, splits=("train", "test"),
                        prefix: str = "shd") -> Path:
    """SHD-layout files ``{prefix}_{split}.h5`` in ``root``: per sample ~40 random spikes
    in the first 0.2 s whose channels depend on the class (so the task is learnable)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    vt, vu = h5py.vlen_dtype(np.dtype(np.float16)), h5py.vlen_dtype(np.dtype(np.uint16))
    for k, split in enumerate(splits):
        n = n_per_class * n_classes
        labels = np.repeat(np.arange(n_classes), n_per_class)
        with h5py.File(root / f"{prefix}_{split}.h5", "w") as f:
            times = f.create_dataset("spikes/times", (n,), dtype=vt)
            units = f.create_dataset("spikes/units", (n,), dtype=vu)
            for i, y in enumerate(labels):
                t = np.sort(rng.uniform(0.0, 0.2, 40)).astype(np.float16)
                u = (35 * y + rng.integers(0, 35, 40)) % 700
                times[i], units[i] = t, u.astype(np.uint16)
            f["labels"] = labels.astype(np.uint16)
            f["extra/speaker"] = (np.arange(n) % n_speakers + 10 * k).astype(np.uint16)
            f["extra/keys"] = np.asarray([f"c{c}".encode() for c in range(n_classes)])
    return root


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def tiny_dcls(root: Path | None, **train) -> dict:
    """A DCLS config that trains in about a second on the synthetic SHD files."""
    return {
        "experiment": {"name": "tiny_dcls", "paper": "dcls",
                       "target": {"value": 95.07, "std": 0.24, "source": "Table 2"}},
        "data": {"kind": "shd", "root": None if root is None else str(root), "recipe": "dcls",
                 "validation": "train_split", "val_fraction": 0.2},
        "model": {"kind": "dcls", "preset": "shd", "n_hidden": 8, "n_layers": 1,
                  "max_delay": 0.05},
        "train": {"epochs": 1, "batch_size": 16, "progress": False, **train},
    }
