"""Permuted sequential MNIST from IDX files (the DelRec protocol, SEEDS B4/D3).

Protocol: each 28x28 image is flattened row by row (pixel ``28 * row + col``), scaled to
``[0, 1]`` (``value / 255``, no further normalisation unless asked), and reordered by one fixed
permutation of the 784 pixels drawn from ``torch.Generator().manual_seed(seed)``; the same
permutation serves every split (``permute=False`` gives plain sequential MNIST). A sample is a
784-step sequence with one input channel: one pixel per time step. The network sees
``[T=784, B, 1]`` (time-first, see :func:`collate_sequences`).

Splits (``protocol``):

* ``"full"`` — the standard files: the 60,000 training images are split by a seeded random
  permutation into 83 % train / 17 % validation (49,800 / 10,200, as DelRec's
  ``random_split``), the 10,000 ``t10k`` images are the test set.
* ``"reduced"`` — for a partial MNIST (e.g. a ``train5k`` subset of the training images beside
  the full ``t10k`` files): the pool is ``train5k`` plus the **first** 5,000 ``t10k`` digits,
  split 83 / 17 into train / validation (8,300 / 1,700 for 10,000); the test set is the
  **last** 5,000 ``t10k`` digits, which training never sees. Numbers obtained this way are not
  comparable to published psMNIST results.
* ``"auto"`` (default) — ``"full"`` if the full training files are present, else
  ``"reduced"`` if ``train5k`` files are.

Files are found in ``root`` under their standard names (``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-...``, ``train5k-...``), optionally with ``.gz``. Nothing
is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .idx import IDXError, read_idx

N_PIXELS = 784
_PREFIXES = {"train": "train", "train5k": "train5k", "test": "t10k"}


def find_mnist_file(root: str | os.PathLike, prefix: str, kind: str) -> str | None:
    """Path of ``{prefix}-{kind}-idx{3|1}-ubyte[.gz]`` in ``root`` (also ``{kind}.idx``
    spelling), or None. ``kind`` is "images" or "labels"."""
    d = 3 if kind == "images" else 1
    for name in (f"{prefix}-{kind}-idx{d}-ubyte", f"{prefix}-{kind}.idx{d}-ubyte"):
        for ext in ("", ".gz"):
            p = os.path.join(os.fspath(root), name + ext)
            if os.path.isfile(p):
                return p
    return None


def load_mnist_pair(images_path: str | os.PathLike,
                    labels_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Images ``uint8 [N, 28, 28]`` and labels ``int64 [N]`` from two IDX files, validated
    (shapes, matching counts, labels 0..9); errors name the offending file."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise IDXError(f"{os.fspath(images_path)}: expected uint8 images [N, 28, 28], got "
                       f"{images.dtype.name} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise IDXError(f"{os.fspath(labels_path)}: expected uint8 labels [N], got "
                       f"{labels.dtype.name} {labels.shape}")
    if len(images) != len(labels):
        raise IDXError(f"{os.fspath(labels_path)}: {len(labels)} labels for {len(images)} "
                       f"images in {os.fspath(images_path)}")
    if len(labels) and int(labels.max()) > 9:
        raise IDXError(f"{os.fspath(labels_path)}: label {int(labels.max())} outside 0..9")
    return images, labels.astype(np.int64)


def _load(root: str, prefix: str) -> tuple[np.ndarray, np.ndarray] | None:
    img, lab = find_mnist_file(root, prefix, "images"), find_mnist_file(root, prefix, "labels")
    if img is None and lab is None:
        return None
    if img is None or lab is None:
        have, miss = (img, "labels") if lab is None else (lab, "images")
        raise FileNotFoundError(f"{root}: found {have} but no matching {prefix} {miss} file")
    return load_mnist_pair(img, lab)


def psmnist_arrays(root: str | os.PathLike, *, protocol: str = "auto", seed: int = 0,
                   valid_fraction: float = 0.17) -> tuple[str, dict[str, tuple[np.ndarray,
                                                                             np.ndarray]]]:
    """The protocol used and its ``{"train", "valid", "test"}`` splits as
    ``(images uint8 [N, 28, 28], labels int64 [N])`` (see the module docstring).

    ``seed`` seeds the train/validation split (a ``torch.Generator``); ``valid_fraction = 0``
    gives an empty validation set.
    """
    root = os.fspath(root)
    if protocol not in ("auto", "full", "reduced"):
        raise ValueError(f"protocol must be 'auto', 'full' or 'reduced', got {protocol!r}")
    if not 0 <= valid_fraction < 1:
        raise ValueError(f"valid_fraction must lie in [0, 1), got {valid_fraction!r}")
    test = _load(root, "t10k")
    if test is None:
        raise FileNotFoundError(f"{root}: no MNIST test files (t10k-images-idx3-ubyte[.gz], "
                                "t10k-labels-idx1-ubyte[.gz])")
    full = _load(root, "train") if protocol in ("auto", "full") else None
    if full is not None:
        protocol, pool = "full", full
    else:
        if protocol == "full":
            raise FileNotFoundError(f"{root}: no full MNIST training files "
                                    "(train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz])")
        part = _load(root, "train5k")
        if part is None:
            raise FileNotFoundError(f"{root}: no MNIST training files (train-* or train5k-*)")
        half = len(test[0]) // 2
        protocol = "reduced"
        pool = (np.concatenate([part[0], test[0][:half]]),
                np.concatenate([part[1], test[1][:half]]))
        test = (test[0][half:], test[1][half:])
    n = len(pool[1])
    n_valid = int(round(valid_fraction * n))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    tr, va = order[: n - n_valid], order[n - n_valid:]
    return protocol, {"train": (pool[0][tr], pool[1][tr]), "valid": (pool[0][va], pool[1][va]),
                      "test": test}


def pixel_permutation(seed: int = 0) -> Tensor:
    """The fixed pixel order: int64 ``[784]``, ``torch.randperm(784)`` from a generator seeded
    with ``seed``; time step ``t`` shows pixel ``perm[t]`` of the row-major image."""
    return torch.randperm(N_PIXELS, generator=torch.Generator().manual_seed(seed))


class PermutedSequentialMNIST(Dataset):
    """Permuted sequential MNIST split as a PyTorch dataset.

    Item ``i`` is ``(x, y)``: ``x`` float ``[784, 1]`` (time, channel: pixel intensities in
    ``[0, 1]`` in permuted order), ``y`` an int64 scalar tensor. Use :func:`collate_sequences`
    for time-first batches ``[784, B, 1]``.

    Args:
        root: folder with the IDX files.
        split: "train", "valid" or "test".
        protocol: "auto", "full" or "reduced" (module docstring); the one used is
            ``self.protocol``.
        seed: seeds the pixel permutation and the train/validation split.
        permute: False for plain sequential MNIST (row-major order).
        valid_fraction: share of the training pool held out for validation (DelRec: 0.17).
        normalize: optional ``(mean, std)`` applied after scaling to ``[0, 1]``.
        dtype: dtype of ``x``.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", *,
                 protocol: str = "auto", seed: int = 0, permute: bool = True,
                 valid_fraction: float = 0.17,
                 normalize: tuple[float, float] | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        split = "valid" if split == "validation" else split
        if split not in ("train", "valid", "test"):
            raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
        self.protocol, splits = psmnist_arrays(root, protocol=protocol, seed=seed,
                                               valid_fraction=valid_fraction)
        images, labels = splits[split]
        self.split = split
        self.images = torch.from_numpy(np.ascontiguousarray(images).reshape(-1, N_PIXELS))
        self.labels = torch.from_numpy(labels)
        self.permutation = pixel_permutation(seed) if permute else torch.arange(N_PIXELS)
        self.normalize = normalize
        self.dtype = dtype

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x = self.images[i, self.permutation].to(self.dtype) / 255.0
        if self.normalize is not None:
            x = (x - self.normalize[0]) / self.normalize[1]
        return x.unsqueeze(-1), self.labels[i]


def collate_sequences(items: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """``DataLoader`` collate function: items ``(x [T, C], y)`` -> ``(x [T, B, C], y [B])``."""
    x = torch.stack([it[0] for it in items], dim=1)
    y = torch.stack([torch.as_tensor(it[1]) for it in items]).to(torch.int64)
    return x, y


__all__ = ["N_PIXELS", "PermutedSequentialMNIST", "collate_sequences", "find_mnist_file",
           "load_mnist_pair", "pixel_permutation", "psmnist_arrays"]
