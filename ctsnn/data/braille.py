"""Event-based Braille reading (Müller-Cleve et al. 2022; SEEDS C4/D6) from its pickle files.

File format (assumed; SEEDS names it only "pickle from Müller-Cleve et al., threshold-specific
file"): the published ``data_braille_letters_th_{threshold}.pkl`` holds 27 letter classes
(``"Space"``, ``"A"``..``"Z"``) recorded by 12 taxels of an iCub fingertip and converted to
ON/OFF events. Every sample has

* ``letter``: the class name (``"Space"`` or one capital letter), and
* ``events``: a sequence of 12 taxels, each a pair ``(on_times, off_times)`` of event times in
  **seconds** (the published readers multiply by 1000 to get ms).

Containers accepted (whatever :func:`pickle.load` returns): a list of per-sample mappings
``{"letter": ..., "events": ...}`` (the layout the conversion script writes), or one object
indexable by ``"letter"`` and ``"events"`` giving per-sample sequences (a dict of lists, or the
pandas ``DataFrame`` the published readers open with ``pandas.read_pickle``; unpickling that
needs pandas installed). Channel of an event: ``2 * taxel + polarity`` (ON = 0, OFF = 1), so
24 input channels. Taxel counts other than 12 are accepted if constant across the file.

Pickle files can run code when loaded: only read files you trust.

Splits: stratified by class with a seeded shuffle, 70 % train / 10 % validation / 20 % test
(the EventProp-with-delays paper's 70:10:20); not bit-identical to the scikit-learn
``train_test_split`` calls of the reference code.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..spikes import Spikes
from .events import collate_events

BRAILLE_LETTERS = ("Space",) + tuple(chr(ord("A") + i) for i in range(26))
_LETTER_INDEX = {name.upper(): i for i, name in enumerate(BRAILLE_LETTERS)}


class BrailleFormatError(ValueError):
    """A Braille pickle whose content does not follow the format (the message names the file,
    the sample and the field)."""


def _samples_of(obj: Any, path: str) -> tuple[list[Any], list[Any]]:
    """(letters, events) per sample from the unpickled object."""
    if isinstance(obj, (list, tuple)):
        letters, events = [], []
        for i, s in enumerate(obj):
            try:
                letters.append(s["letter"])
                events.append(s["events"])
            except (KeyError, TypeError, IndexError) as e:
                raise BrailleFormatError(
                    f"{path}: sample {i} lacks the field {e!s} (each sample must be a mapping "
                    "with 'letter' and 'events')") from e
        return letters, events
    try:
        letters, events = list(obj["letter"]), list(obj["events"])
    except (KeyError, TypeError, IndexError) as e:
        raise BrailleFormatError(
            f"{path}: expected a list of samples or an object with 'letter' and 'events' "
            f"columns; got {type(obj).__name__} (missing field {e!s})") from e
    if len(letters) != len(events):
        raise BrailleFormatError(f"{path}: {len(letters)} letters but {len(events)} events")
    return letters, events


def load_braille(path: str | os.PathLike) -> tuple[list[tuple[np.ndarray, np.ndarray]],
                                                   np.ndarray, int]:
    """Read a Braille event pickle.

    Returns:
        ``(samples, labels, n_channels)``: per sample ``(times float64 [E] s, channels int64
        [E])`` sorted by time, the labels int64 ``[S]`` (index into :data:`BRAILLE_LETTERS`)
        and the number of channels (2 x taxels).

    Raises:
        BrailleFormatError: naming the file, sample and field, when the content is malformed.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="latin1")
    except ModuleNotFoundError as e:
        raise BrailleFormatError(f"{path}: unpickling needs the module {e.name!r} "
                                 "(a pandas DataFrame needs pandas installed)") from e
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, ImportError) as e:
        raise BrailleFormatError(f"{path}: not a readable pickle ({e})") from e
    letters, events = _samples_of(obj, path)
    samples, labels, n_taxels = [], [], None
    for i, (letter, ev) in enumerate(zip(letters, events, strict=True)):
        key = str(letter).strip().upper()
        if key not in _LETTER_INDEX:
            raise BrailleFormatError(f"{path}: sample {i} field 'letter' is {letter!r}; "
                                     f"expected one of {', '.join(BRAILLE_LETTERS)}")
        labels.append(_LETTER_INDEX[key])
        try:
            taxels = list(ev)
            pairs = [list(tx) for tx in taxels]
        except TypeError as e:
            raise BrailleFormatError(f"{path}: sample {i} field 'events' must be a sequence of "
                                     "taxels, each a pair (on_times, off_times)") from e
        if n_taxels is None:
            n_taxels = len(pairs)
        if len(pairs) != n_taxels or any(len(p) != 2 for p in pairs):
            raise BrailleFormatError(
                f"{path}: sample {i} field 'events' must hold {n_taxels} taxels, each a pair "
                f"(on_times, off_times); got {len(pairs)} taxels with "
                f"{sorted({len(p) for p in pairs})} entries")
        times, chans = [], []
        for t, pair in enumerate(pairs):
            for pol, ts in enumerate(pair):
                arr = np.asarray(ts if ts is not None else [], dtype=np.float64).reshape(-1)
                times.append(arr)
                chans.append(np.full(arr.shape, 2 * t + pol, dtype=np.int64))
        tt, cc = np.concatenate(times), np.concatenate(chans)
        if tt.size and not (np.isfinite(tt).all() and (tt >= 0).all()):
            raise BrailleFormatError(f"{path}: sample {i} field 'events' has negative or "
                                     "non-finite times (seconds expected)")
        order = np.argsort(tt, kind="stable")
        samples.append((tt[order], cc[order]))
    return samples, np.asarray(labels, dtype=np.int64), 2 * (n_taxels or 0)


def stratified_split(labels: np.ndarray, fractions: Sequence[float] = (0.7, 0.1, 0.2), *,
                     seed: int = 0) -> list[np.ndarray]:
    """Indices of each part of a class-stratified split: per class, a seeded shuffle
    (``torch.Generator().manual_seed(seed)``) cut at the rounded cumulative fractions."""
    if any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {tuple(fractions)}")
    gen = torch.Generator().manual_seed(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    cum = np.cumsum([0.0, *fractions])
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[torch.randperm(len(idx), generator=gen).numpy()]
        cuts = np.round(cum * len(idx)).astype(int)
        for k in range(len(fractions)):
            parts[k].extend(idx[cuts[k]:cuts[k + 1]].tolist())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


class Braille(Dataset):
    """A split of the Braille reading data set as a PyTorch dataset of exact events.

    Item ``i`` is ``(times, units, label)``: float64 ``[E]`` event times (s), int64 ``[E]``
    channels in ``[0, n_channels)``, int64 scalar label (index into :data:`BRAILLE_LETTERS`).
    :meth:`collate` makes ``(Spikes, labels [B])`` batches; ``spikes.raster()`` gives
    ``[T, B, N]`` (EventProp bins at ``dt = 1 ms``).

    Args:
        path: the pickle file (see the module docstring for the format).
        split: "train", "valid", "test" or "all".
        fractions: train / validation / test shares (stratified by class).
        seed: seed of the split.
        dt: grid step of the collated spikes (s).
        max_time: drop events later than this (s); default keep all.
    """

    def __init__(self, path: str | os.PathLike, split: str = "train", *,
                 fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0,
                 dt: float = 1e-3, max_time: float | None = None) -> None:
        split = "valid" if split == "validation" else split
        names = ("train", "valid", "test")
        if split not in (*names, "all"):
            raise ValueError(f"split must be one of {names + ('all',)}, got {split!r}")
        samples, labels, self.n_channels = load_braille(path)
        if max_time is not None:
            samples = [(t[t <= max_time], c[t <= max_time]) for t, c in samples]
        if split == "all":
            idx = np.arange(len(labels))
        else:
            idx = stratified_split(labels, fractions, seed=seed)[names.index(split)]
        self.samples = [samples[i] for i in idx]
        self.labels = torch.from_numpy(labels[idx])
        t_last = max((float(t[-1]) for t, _ in samples if t.size), default=0.0)
        self.duration = t_last if max_time is None else max(max_time, 0.0)
        self.dt = dt
        self.n_steps = max(1, math.ceil(self.duration / dt - 1e-9))
        self.split = split

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        t, c = self.samples[i]
        return torch.from_numpy(t), torch.from_numpy(c), self.labels[i]

    def collate(self, items: Sequence[tuple[Tensor, Tensor, Tensor]]) -> tuple[Spikes, Tensor]:
        """``DataLoader`` collate function: ``(Spikes, labels [B])`` with exact times, grid
        ``dt`` and ``n_steps`` covering the longest sample of the file."""
        return collate_events(items, dt=self.dt, n_steps=self.n_steps, n_units=self.n_channels)


__all__ = ["BRAILLE_LETTERS", "Braille", "BrailleFormatError", "load_braille",
           "stratified_split"]
