"""Google Speech Commands v0.02 (35 words) from the directory a user already has.

Layout (as distributed, and as torchaudio's ``SPEECHCOMMANDS`` unpacks it under
``<root>/SpeechCommands/speech_commands_v0.02``)::

    <root>/validation_list.txt   relative paths, one per line: "right/bb05582b_nohash_3.wav"
    <root>/testing_list.txt
    <root>/<word>/<speaker>_nohash_<k>.wav     16-bit PCM mono, 16 kHz, <= 1 s
    <root>/_background_noise_/...              ignored

Splits (the official ones): ``"validation"`` and ``"testing"`` are the files of their lists in
list order; ``"training"`` is every ``*/*_nohash_*.wav`` in neither list, sorted by path.
Labels are indices into :data:`WORDS` (the 35 words, alphabetical). Nothing is downloaded.

Items are ``(features [T, n_mels] float32, label)`` with the DCLS log-mel recipe
(:class:`~ctsnn.data.audio.MelRecipe`; ``T = 101`` frames of 10 ms, 140 mel bins), or
``(waveform [16000], label)`` with ``features=False``. Batch them with
:class:`~ctsnn.data.PaddedCollate` (time-first ``[T, B, C]``). With ``cache_dir`` the features
of the whole split are computed once into a ``.npy`` file whose name carries a key of the
recipe and of the files (paths, sizes, modification times), so a changed recipe or tree never
reads stale features.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .audio import MelRecipe, fit_length, read_wav

__all__ = ["SPLITS", "WORDS", "SpeechCommands", "SpeechCommandsLayoutError", "find_root"]

#: The 35 words of v0.02, alphabetical: label ``k`` is ``WORDS[k]``.
WORDS: tuple[str, ...] = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward",
    "four", "go", "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one",
    "right", "seven", "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow",
    "yes", "zero",
)
SPLITS = ("training", "validation", "testing")
_LISTS = {"validation": "validation_list.txt", "testing": "testing_list.txt"}
_CACHE_FORMAT = 1


class SpeechCommandsLayoutError(ValueError):
    """The directory is not a Speech Commands tree (the message names the file or folder)."""


def find_root(root: str | os.PathLike) -> Path:
    """The folder holding the word folders and split lists: ``root`` itself or torchaudio's
    ``root/SpeechCommands/speech_commands_v0.02``."""
    root = Path(root)
    for cand in (root, root / "SpeechCommands" / "speech_commands_v0.02"):
        if (cand / _LISTS["testing"]).is_file() or (cand / _LISTS["validation"]).is_file():
            return cand
    if not root.is_dir():
        raise SpeechCommandsLayoutError(f"{root}: no such directory")
    raise SpeechCommandsLayoutError(
        f"{root}: no {_LISTS['validation']} / {_LISTS['testing']} here or in "
        f"{root / 'SpeechCommands' / 'speech_commands_v0.02'} (not a Speech Commands tree)")


def _read_list(root: Path, split: str) -> list[str]:
    path = root / _LISTS[split]
    if not path.is_file():
        raise SpeechCommandsLayoutError(f"{path}: split list missing")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        rel = line.strip()
        if not rel:
            continue
        if not (root / rel).is_file():
            raise SpeechCommandsLayoutError(f"{path}, line {n}: {rel!r} is not a file under "
                                            f"{root}")
        out.append(Path(rel).as_posix())
    return out


def _split_files(root: Path, split: str) -> list[str]:
    if split in _LISTS:
        return _read_list(root, split)
    excluded = set(_read_list(root, "validation")) | set(_read_list(root, "testing"))
    return sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.wav")
                  if "_nohash_" in p.name and p.relative_to(root).as_posix() not in excluded)


class SpeechCommands(Dataset):
    """One official split of Google Speech Commands v0.02.

    Args:
        root: the tree (see the module doc); torchaudio's layout under it is found too.
        split: ``"training"``, ``"validation"`` or ``"testing"``.
        recipe: waveform -> features (default ``MelRecipe()``, the DCLS log-mel chain).
        cache_dir: folder for the split's features; built on construction.
        words: the label set (default :data:`WORDS`); a file under another folder is an error.
        features: ``False`` returns waveforms ``[16000]`` instead of features (no recipe, no
            cache).

    Attributes:
        files: relative paths of the split, in item order.
        labels: int64 numpy ``[len]``; ``speakers``: the speaker id of each file (its name up to
        ``_nohash_``); ``cache_status``: ``None``, ``"hit"`` or ``"built"``.
    """

    def __init__(self, root: str | os.PathLike, split: str = "training", *,
                 recipe: MelRecipe | None = None, cache_dir: str | os.PathLike | None = None,
                 words: tuple[str, ...] = WORDS, features: bool = True) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not isinstance(features, bool):
            raise TypeError(f"features must be a bool, got {type(features).__name__}")
        if recipe is not None and not features:
            raise ValueError("recipe given with features=False: pass one or the other")
        self.recipe = (MelRecipe() if recipe is None else recipe) if features else None
        if cache_dir is not None and self.recipe is None:
            raise ValueError("cache_dir needs features (waveforms are not cached)")
        self.root = find_root(root)
        self.split = split
        self.files = _split_files(self.root, split)
        index = {w: k for k, w in enumerate(words)}
        labels = []
        for rel in self.files:
            word = rel.split("/")[0]
            if word not in index:
                raise SpeechCommandsLayoutError(f"{self.root / rel}: folder {word!r} is not one "
                                                f"of the {len(words)} words")
            labels.append(index[word])
        self.labels = np.asarray(labels, dtype=np.int64)
        self.speakers = [Path(rel).name.split("_nohash_")[0] for rel in self.files]
        self.cache_status: str | None = None
        self.cache_path: Path | None = None
        self._cache: np.ndarray | None = None
        if cache_dir is not None:
            self._load_or_build_cache(Path(cache_dir))

    def __len__(self) -> int:
        return len(self.files)

    def waveform(self, j: int) -> Tensor:
        """File ``j`` as float32 ``[16000]`` at 16 kHz (errors name the file)."""
        rate = 16_000 if self.recipe is None else self.recipe.orig_rate
        length = 16_000 if self.recipe is None else self.recipe.length
        return fit_length(read_wav(self.root / self.files[j], sample_rate=rate), length)

    def __getitem__(self, j: int) -> tuple[Tensor, int]:
        label = int(self.labels[j])
        if self._cache is not None:
            return torch.from_numpy(np.array(self._cache[j])), label
        x = self.waveform(j)
        return (x if self.recipe is None else self.recipe(x)), label

    def cache_key(self) -> str:
        """SHA-256 of the recipe, the split and every file's path, size and mtime."""
        files = []
        for rel in self.files:
            st = (self.root / rel).stat()
            files.append([rel, st.st_size, st.st_mtime_ns])
        blob = {"format": _CACHE_FORMAT, "recipe": self.recipe.params(), "split": self.split,
                "root": str(self.root.resolve()), "files": files}
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()

    def _load_or_build_cache(self, cache_dir: Path) -> None:
        target = cache_dir / f"gsc-{self.split}-{self.recipe.name}-{self.cache_key()[:24]}.npy"
        self.cache_path = target
        if not target.is_file():
            cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=cache_dir)
            os.close(fd)
            try:
                shape = (len(self), self.recipe.n_frames, self.recipe.n_mels)
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
                for j in range(len(self)):
                    out[j] = self.recipe(self.waveform(j)).numpy()
                out.flush()
                del out
                os.replace(tmp, target)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            self.cache_status = "built"
        else:
            self.cache_status = "hit"
        self._cache = np.load(target, mmap_mode="r")
