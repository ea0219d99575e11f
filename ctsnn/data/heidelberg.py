"""SHD and SSC (Cramer et al. 2022) from their HDF5 files, as PyTorch datasets.

File layout (SEEDS.md D1): ``spikes/times`` (variable-length float arrays, seconds),
``spikes/units`` (variable-length unsigned integer arrays, channels ``0..699``), ``labels``
(one integer per sample), optional ``extra/speaker`` (speaker id per sample) and ``extra/keys``
(class names).  Nothing is ever downloaded: bring the files.

Reading is lazy: the constructor checks the layout (keys, dtypes, lengths; errors name the file
and the key) and reads only labels and speakers; each worker process opens the file on its first
item (the handle is never pickled).  Spike contents are checked per sample as they are read
(``times`` finite and >= 0, ``units`` in range), or all at once with ``check="full"``.

Items: with ``recipe=None`` (the exact event path) ``(times [E] float32 s, units [E] int64,
label)`` with the file's times unchanged (float16 -> float32 is exact) and absolute (no
re-alignment); with a recipe of :mod:`ctsnn.data.binning` ``(raster [T, C], label)``.  Collate
with :class:`EventCollate` (a :class:`~ctsnn.Spikes` batch) or :class:`PaddedCollate`
(time-first ``[T, B, C]``).  Binned tensors can be cached on disk (``cache_dir``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..spikes import Spikes

__all__ = [
    "EventCollate", "PaddedCollate", "SHD", "SSC", "SpikingAudioH5", "speaker_split",
    "speaker_split_indices",
]

_CACHE_FORMAT = 1


def _h5py():
    import h5py

    return h5py


class SpikingAudioH5(Dataset):
    """Samples of one SHD/SSC-layout HDF5 file.

    Args:
        path: the ``.h5`` file.
        recipe: a binning recipe (:mod:`ctsnn.data.binning`) or ``None`` for exact events.
        n_units: input channels (700); ``spikes/units`` must lie in ``[0, n_units)``.
        n_classes: if given, ``labels`` must lie in ``[0, n_classes)``.
        cache_dir: folder for cached binned tensors (needs a recipe); built on construction
            when missing, reused when the recipe and the file (size, mtime; or content hash with
            ``identity="content"``) are unchanged.  ``cache_status`` says ``"hit"``/``"built"``.
        identity: ``"stat"`` (size + mtime, cheap) or ``"content"`` (SHA-256 of the file).
        check: ``"lazy"`` (check each sample when read) or ``"full"`` (all at construction).
        dtype: dtype of binned rasters (float32).

    Attributes:
        labels: int64 numpy [len] labels of the selected samples.
        speakers: int64 numpy [len] speaker ids (``extra/speaker``), or None if absent.
        class_names: list of str from ``extra/keys``, or None.
    """

    n_classes_default: int | None = None

    def __init__(
        self,
        path: str | os.PathLike,
        recipe: Any = None,
        *,
        n_units: int = 700,
        n_classes: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        identity: str = "stat",
        check: str = "lazy",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.path = Path(path)
        self.recipe = recipe
        self.n_units = int(n_units)
        self.n_classes = n_classes if n_classes is not None else self.n_classes_default
        self.dtype = dtype
        if identity not in ("stat", "content"):
            raise ValueError(f"identity must be 'stat' or 'content', got {identity!r}")
        if check not in ("lazy", "full"):
            raise ValueError(f"check must be 'lazy' or 'full', got {check!r}")
        if cache_dir is not None and recipe is None:
            raise ValueError("cache_dir needs a binning recipe (exact events are not cached)")
        self._h5: Any = None
        self._pid: int | None = None
        self._cache: dict[str, np.ndarray] | None = None
        self.cache_status: str | None = None
        self.cache_path: Path | None = None
        self._read_layout()
        self.indices = np.arange(self._n_file, dtype=np.int64)
        if check == "full":
            for j in range(self._n_file):
                self._events(j)
        if cache_dir is not None:
            self._load_or_build_cache(Path(cache_dir), identity)

    # ------------------------------------------------------------------------------------------
    # layout and lazy file access
    # ------------------------------------------------------------------------------------------

    def _err(self, key: str, msg: str) -> ValueError:
        return ValueError(f"{self.path}: '{key}': {msg}")

    def _read_layout(self) -> None:
        h5py = _h5py()
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such file (SHD/SSC files are never "
                                    "downloaded; pass the path of a local .h5 file)")
        try:
            f = h5py.File(self.path, "r")
        except OSError as e:
            raise ValueError(f"{self.path}: not a readable HDF5 file ({e})") from None
        with f:
            ds = {}
            for key in ("spikes/times", "spikes/units", "labels"):
                if key not in f or not isinstance(f[key], h5py.Dataset):
                    raise self._err(key, "missing dataset (SHD layout: spikes/times, "
                                         "spikes/units, labels, extra/...)")
                ds[key] = f[key]
            for key, kind in (("spikes/times", "f"), ("spikes/units", "iu")):
                base = h5py.check_vlen_dtype(ds[key].dtype)
                if base is None or np.dtype(base).kind not in kind:
                    want = "floating" if kind == "f" else "integer"
                    raise self._err(key, f"must hold variable-length {want} arrays, got dtype "
                                         f"{ds[key].dtype} (base {base})")
            if ds["labels"].dtype.kind not in "iu" or ds["labels"].ndim != 1:
                raise self._err("labels", f"must be a 1-D integer dataset, got dtype "
                                          f"{ds['labels'].dtype}, shape {ds['labels'].shape}")
            n = ds["labels"].shape[0]
            for key in ("spikes/times", "spikes/units"):
                if ds[key].shape != (n,):
                    raise self._err(key, f"has shape {ds[key].shape}, expected ({n},) like "
                                         "'labels'")
            labels = ds["labels"][()].astype(np.int64)
            hi = self.n_classes if self.n_classes is not None else np.iinfo(np.int64).max
            bad = np.flatnonzero((labels < 0) | (labels >= hi))
            if bad.size:
                raise self._err("labels", f"value {labels[bad[0]]} at sample {bad[0]} outside "
                                          f"[0, {self.n_classes})")
            self._labels = labels
            self._speakers = None
            if "extra/speaker" in f:
                sp = f["extra/speaker"]
                if sp.dtype.kind not in "iu" or sp.shape != (n,):
                    raise self._err("extra/speaker", f"must be {n} integers, got dtype "
                                                     f"{sp.dtype}, shape {sp.shape}")
                self._speakers = sp[()].astype(np.int64)
            self.class_names = None
            if "extra/keys" in f:
                self.class_names = [k.decode() if isinstance(k, bytes) else str(k)
                                    for k in f["extra/keys"][()]]
            self._n_file = n

    def _file(self) -> Any:
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = _h5py().File(self.path, "r")
            self._pid = os.getpid()
        return self._h5

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_h5"] = None
        state["_pid"] = None
        return state

    def _events(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Checked spikes of file sample ``j``: times [E] (file dtype, s), units [E] int64."""
        f = self._file()
        times = np.asarray(f["spikes/times"][j])
        units = np.asarray(f["spikes/units"][j]).astype(np.int64)
        if times.shape != units.shape or times.ndim != 1:
            raise self._err("spikes/times", f"sample {j}: {times.shape} times but "
                                            f"{units.shape} units in 'spikes/units'")
        bad = np.flatnonzero(~np.isfinite(times) | (times < 0))
        if bad.size:
            raise self._err("spikes/times", f"sample {j}: time {times[bad[0]]!r} at index "
                                            f"{bad[0]} (times must be finite and >= 0 s)")
        bad = np.flatnonzero((units < 0) | (units >= self.n_units))
        if bad.size:
            raise self._err("spikes/units", f"sample {j}: unit {units[bad[0]]} at index "
                                            f"{bad[0]} outside [0, {self.n_units})")
        return times, units

    # ------------------------------------------------------------------------------------------
    # cache of binned tensors (sparse: bin, channel, count per non-zero cell)
    # ------------------------------------------------------------------------------------------

    def cache_key(self, identity: str = "stat") -> str:
        """SHA-256 of the recipe parameters, the file identity, ``n_units`` and the format."""
        st = self.path.stat()
        if identity == "content":
            h = hashlib.sha256()
            with open(self.path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            ident: dict[str, Any] = {"size": st.st_size, "sha256": h.hexdigest()}
        else:
            ident = {"path": str(self.path.resolve()), "size": st.st_size,
                     "mtime_ns": st.st_mtime_ns}
        blob = {"format": _CACHE_FORMAT, "recipe": self.recipe.params(), "file": ident,
                "n_units": self.n_units}
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()

    def _load_or_build_cache(self, cache_dir: Path, identity: str) -> None:
        key = self.cache_key(identity)
        target = cache_dir / f"{self.path.stem}-{self.recipe.name}-{key[:24]}.npz"
        self.cache_path = target
        if target.is_file():
            with np.load(target) as z:
                self._cache = {k: z[k] for k in z.files}
            self.cache_status = "hit"
            return
        n_bins = np.zeros(self._n_file, dtype=np.int64)
        offsets = np.zeros(self._n_file + 1, dtype=np.int64)
        parts: list[np.ndarray] = []
        for j in range(self._n_file):
            n_bins[j], b, c, v = self.recipe.cells(*self._events(j), self.n_units)
            parts.append(np.stack([b, c, v]))
            offsets[j + 1] = offsets[j] + b.size
        cells = np.concatenate(parts, axis=1) if parts else np.zeros((3, 0), np.int64)
        cache = {"n_bins": n_bins, "offsets": offsets, "cells": cells.astype(np.int32),
                 "n_channels": np.array(self.recipe.n_channels(self.n_units))}
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=cache_dir)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **cache)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self._cache = cache
        self.cache_status = "built"

    def _raster(self, j: int) -> Tensor:
        """Binned file sample ``j`` as a [T, C] tensor of ``self.dtype`` (cache or recipe)."""
        c = self._cache
        if c is None:
            n_bins, b, ch, v = self.recipe.cells(*self._events(j), self.n_units)
            n_ch = self.recipe.n_channels(self.n_units)
        else:
            n_bins, n_ch = int(c["n_bins"][j]), int(c["n_channels"])
            b, ch, v = c["cells"][:, c["offsets"][j]:c["offsets"][j + 1]]
        out = torch.zeros(int(n_bins), n_ch, dtype=self.dtype)
        out[torch.from_numpy(np.asarray(b, dtype=np.int64)),
            torch.from_numpy(np.asarray(ch, dtype=np.int64))] = torch.from_numpy(
                np.asarray(v)).to(self.dtype)
        return out

    # ------------------------------------------------------------------------------------------
    # Dataset API
    # ------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    @property
    def labels(self) -> np.ndarray:
        """int64 [len]: labels of the selected samples."""
        return self._labels[self.indices]

    @property
    def speakers(self) -> np.ndarray | None:
        """int64 [len]: speaker of each selected sample (``extra/speaker``), or None."""
        return None if self._speakers is None else self._speakers[self.indices]

    def events(self, i: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Exact spikes of item ``i``: times [E] (file dtype, s), units [E] int64, label."""
        j = int(self.indices[i])
        return (*self._events(j), int(self._labels[j]))

    def __getitem__(self, i: int) -> tuple[Tensor, ...]:
        """``(times [E] float32 s, units [E] int64, label)`` without a recipe, else
        ``(raster [T, C] dtype, label)``."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples of {self.path}")
        j = int(self.indices[i])
        label = int(self._labels[j])
        if self.recipe is None:
            times, units = self._events(j)
            return torch.from_numpy(times.astype(np.float32)), torch.from_numpy(units), label
        return self._raster(j), label

    def subset(self, indices: Sequence[int] | np.ndarray) -> SpikingAudioH5:
        """A view on the items ``indices`` (positions in this dataset); shares file and cache."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"subset indices must lie in [0, {len(self)})")
        out = copy.copy(self)
        out._h5, out._pid = None, None
        out.indices = self.indices[idx]
        return out


class SHD(SpikingAudioH5):
    """Spiking Heidelberg Digits file (``shd_train.h5`` / ``shd_test.h5``): 20 classes."""

    n_classes_default = 20


class SSC(SpikingAudioH5):
    """Spiking Speech Commands file (``ssc_{train,valid,test}.h5``): 35 classes."""

    n_classes_default = 35


# ----------------------------------------------------------------------------------------------
# validation split by speaker
# ----------------------------------------------------------------------------------------------


def speaker_split_indices(
    speakers: Sequence[int] | np.ndarray, fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split positions so that no speaker is in both parts.

    ``round(fraction * n_speakers)`` speakers (at least 1, at most all but one), drawn with
    ``numpy.random.default_rng(seed)`` from the sorted unique ids, go to validation.

    Returns:
        (train, validation): sorted int64 position arrays.
    """
    sp = np.asarray(speakers)
    uniq = np.unique(sp)
    if uniq.size < 2:
        raise ValueError(f"speaker split needs at least 2 speakers, got {uniq.size}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    n_val = min(max(1, round(fraction * uniq.size)), uniq.size - 1)
    val_speakers = np.random.default_rng(seed).permutation(uniq)[:n_val]
    is_val = np.isin(sp, val_speakers)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def speaker_split(
    dataset: SpikingAudioH5, fraction: float = 0.2, seed: int = 0
) -> tuple[SpikingAudioH5, SpikingAudioH5]:
    """Carve a validation set from ``dataset`` by speaker (``extra/speaker``), seeded.

    Returns ``(train, validation)`` views (see :func:`speaker_split_indices`).
    """
    if dataset.speakers is None:
        raise ValueError(f"{dataset.path}: 'extra/speaker': missing, cannot split by speaker")
    tr, va = speaker_split_indices(dataset.speakers, fraction, seed)
    return dataset.subset(tr), dataset.subset(va)


# ----------------------------------------------------------------------------------------------
# collate functions
# ----------------------------------------------------------------------------------------------


class PaddedCollate:
    """Stack ``(raster [T_i, C], label)`` items into time-first ``[T, B, C]``.

    Right zero-padding to the longest item, or to ``n_steps`` if given (an item longer than
    ``n_steps`` is an error).  Returns ``(x [T, B, C], labels int64 [B], lengths int64 [B])``.
    """

    def __init__(self, n_steps: int | None = None) -> None:
        self.n_steps = n_steps

    def __call__(self, batch: Sequence[tuple[Tensor, int]]) -> tuple[Tensor, Tensor, Tensor]:
        lengths = torch.tensor([x.shape[0] for x, _ in batch], dtype=torch.int64)
        t = int(lengths.max()) if len(batch) else 0
        if self.n_steps is not None:
            if t > self.n_steps:
                i = int(torch.argmax(lengths))
                raise ValueError(f"item {i} of the batch has {t} steps > n_steps={self.n_steps}")
            t = self.n_steps
        c = batch[0][0].shape[1] if len(batch) else 0
        dtype = batch[0][0].dtype if len(batch) else torch.float32
        out = torch.zeros(t, len(batch), c, dtype=dtype)
        for b, (x, _) in enumerate(batch):
            out[: x.shape[0], b] = x
        labels = torch.tensor([int(y) for _, y in batch], dtype=torch.int64)
        return out, labels, lengths


class EventCollate:
    """Gather exact-event items ``(times [E] s, units [E], label)`` into one :class:`Spikes`.

    Args:
        n_units: channels of the batch (700).
        dt: grid step of the :class:`Spikes` metadata in seconds (the times stay exact).
        t_max: if given, the grid covers ``[0, t_max]`` (``n_steps = ceil(t_max/dt)``); events
            later than that are an error.  Default: up to the last event of the batch.

    Returns ``(spikes, labels int64 [B])``.
    """

    def __init__(self, n_units: int = 700, dt: float = 1e-3, t_max: float | None = None) -> None:
        self.n_units, self.dt, self.t_max = n_units, dt, t_max

    def __call__(self, batch: Sequence[tuple[Tensor, Tensor, int]]) -> tuple[Spikes, Tensor]:
        times = torch.cat([t for t, _, _ in batch]) if batch else torch.zeros(0)
        units = torch.cat([u for _, u, _ in batch]) if batch else torch.zeros(0, dtype=torch.int64)
        which = torch.cat([torch.full((t.shape[0],), b, dtype=torch.int64)
                           for b, (t, _, _) in enumerate(batch)]) if batch else units
        n_steps = None if self.t_max is None else max(1, math.ceil(self.t_max / self.dt))
        spikes = Spikes.from_events(times, units, which, dt=self.dt, n_steps=n_steps,
                                    batch_size=len(batch), n_units=self.n_units)
        labels = torch.tensor([int(y) for _, _, y in batch], dtype=torch.int64)
        return spikes, labels
