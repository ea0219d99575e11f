"""IDX parsing (hand-written tiny files, plain and gzip, malformed ones) and permuted sequential
MNIST (DelRec protocol; full and reduced splits)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ctsnn.data import (
    IDXError,
    PermutedSequentialMNIST,
    collate_sequences,
    pixel_permutation,
    psmnist_arrays,
    read_idx,
    write_idx,
)

ROOT = Path(__file__).resolve().parents[3]


def _idx_bytes(code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


def test_read_hand_written_idx_plain_and_gz(tmp_path):
    data = bytes(range(12))
    p = tmp_path / "tiny-images-idx3-ubyte"
    p.write_bytes(_idx_bytes(0x08, (2, 2, 3), data))
    a = read_idx(p)
    assert a.dtype == np.uint8 and a.shape == (2, 2, 3)
    assert a.reshape(-1).tolist() == list(range(12))
    g = tmp_path / "tiny-images-idx3-ubyte.gz"
    g.write_bytes(gzip.compress(p.read_bytes()))
    assert np.array_equal(read_idx(g), a)
    # big-endian multi-byte types
    q = tmp_path / "ints.idx"
    q.write_bytes(_idx_bytes(0x0C, (3,), struct.pack(">3i", -1, 2, 70000)))
    assert read_idx(q).tolist() == [-1, 2, 70000]
    f = tmp_path / "f.idx"
    f.write_bytes(_idx_bytes(0x0D, (2,), struct.pack(">2f", 0.5, -2.0)))
    assert read_idx(f).tolist() == [0.5, -2.0]
    for arr in (np.arange(6, dtype=np.int16).reshape(2, 3), np.array([1.25, -3.0])):
        w = tmp_path / f"w{arr.dtype}.idx.gz"
        write_idx(w, arr)
        assert np.array_equal(read_idx(w), arr) and read_idx(w).dtype == arr.dtype


@pytest.mark.parametrize("content, message", [
    (b"\x00\x00", "too short"),
    (b"\x01\x02\x08\x01" + struct.pack(">I", 1) + b"\x00", "not an IDX file"),
    (_idx_bytes(0x07, (1,), b"\x00"), "unknown IDX data type 0x07"),
    (b"\x00\x00\x08\x00", "0 dimensions"),
    (b"\x00\x00\x08\x03" + struct.pack(">I", 5), "truncated IDX header"),
    (_idx_bytes(0x08, (2, 28, 28), bytes(100)), r"shape \(2, 28, 28\)"),
    (_idx_bytes(0x08, (3,), bytes(4)), "holds 4 data bytes"),
    (b"\x1f\x8b\x08\x00garbage", "corrupt gzip"),
])
def test_malformed_idx_errors_name_the_file(tmp_path, content, message):
    p = tmp_path / "bad-file-idx1-ubyte"
    p.write_bytes(content)
    with pytest.raises(IDXError, match=message) as err:
        read_idx(p)
    assert str(p) in str(err.value)


def _mnist_folder(folder: Path, n_train: int, n_test: int, *, prefix: str = "train",
                  gz: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ext = ".gz" if gz else ""
    out = {}
    for pre, n in ((prefix, n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{pre}-images-idx3-ubyte{ext}", x)
        write_idx(folder / f"{pre}-labels-idx1-ubyte{ext}", y)
        out[pre] = x
        out[pre + "_labels"] = y
    return out


def test_full_protocol_split_sizes_and_permuted_pixels(tmp_path):
    raw = _mnist_folder(tmp_path, 100, 20, gz=False)
    protocol, splits = psmnist_arrays(tmp_path, seed=3)
    assert protocol == "full"
    assert [len(splits[k][1]) for k in ("train", "valid", "test")] == [83, 17, 20]
    assert np.array_equal(splits["test"][0], raw["t10k"])
    both = np.concatenate([splits["train"][0], splits["valid"][0]])  # a partition of the pool
    assert sorted(map(bytes, both)) == sorted(map(bytes, raw["train"]))
    ds = PermutedSequentialMNIST(tmp_path, "test", seed=3)
    x, y = ds[4]
    perm = pixel_permutation(3)
    assert x.shape == (784, 1) and x.dtype == torch.float32 and y.dtype == torch.int64
    flat = torch.from_numpy(raw["t10k"][4].reshape(-1)).float() / 255  # row-major pixels
    assert torch.equal(x[:, 0], flat[perm]) and int(y) == 4
    assert sorted(perm.tolist()) == list(range(784)) and not torch.equal(perm, torch.arange(784))
    plain = PermutedSequentialMNIST(tmp_path, "test", permute=False)
    assert torch.equal(plain[4][0][:, 0], flat)
    norm = PermutedSequentialMNIST(tmp_path, "test", seed=3, normalize=(0.5, 0.25))
    assert torch.allclose(norm[4][0], (x - 0.5) / 0.25)


def test_reduced_protocol_and_determinism(tmp_path):
    raw = _mnist_folder(tmp_path, 30, 20, prefix="train5k")
    protocol, splits = psmnist_arrays(tmp_path, seed=0)
    assert protocol == "reduced"
    assert [len(splits[k][1]) for k in ("train", "valid", "test")] == [33, 7, 10]  # 40 pooled
    assert np.array_equal(splits["test"][0], raw["t10k"][10:])  # the last half of t10k
    pool = np.concatenate([splits["train"][0], splits["valid"][0]])
    expected = np.concatenate([raw["train5k"], raw["t10k"][:10]])
    assert sorted(map(bytes, pool)) == sorted(map(bytes, expected))
    _, again = psmnist_arrays(tmp_path, seed=0)
    _, other = psmnist_arrays(tmp_path, seed=1)
    assert np.array_equal(again["train"][0], splits["train"][0])
    assert not np.array_equal(other["train"][0], splits["train"][0])
    assert torch.equal(pixel_permutation(0), pixel_permutation(0))
    assert not torch.equal(pixel_permutation(0), pixel_permutation(1))
    with pytest.raises(FileNotFoundError, match="full MNIST training"):
        psmnist_arrays(tmp_path, protocol="full")
    ds = PermutedSequentialMNIST(tmp_path, "train")
    x, y = next(iter(DataLoader(ds, batch_size=5, collate_fn=collate_sequences)))
    assert x.shape == (784, 5, 1) and y.shape == (5,)  # time-first


def test_mnist_file_errors_name_the_file(tmp_path):
    _mnist_folder(tmp_path, 10, 10)
    lab = tmp_path / "train-labels-idx1-ubyte.gz"
    write_idx(lab, np.zeros(9, dtype=np.uint8))  # 9 labels for 10 images
    with pytest.raises(IDXError, match="9 labels for 10 images") as err:
        psmnist_arrays(tmp_path)
    assert str(lab) in str(err.value)
    write_idx(lab, np.full(10, 12, dtype=np.uint8))
    with pytest.raises(IDXError, match="label 12"):
        psmnist_arrays(tmp_path)
    img = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(img, np.zeros((10, 7, 7), dtype=np.uint8))
    with pytest.raises(IDXError, match=r"\[N, 28, 28\]") as err:
        psmnist_arrays(tmp_path)
    assert str(img) in str(err.value)
    lab.unlink()
    with pytest.raises(FileNotFoundError, match="no matching train labels"):
        psmnist_arrays(tmp_path)
    with pytest.raises(FileNotFoundError, match="t10k"):
        psmnist_arrays(tmp_path / "nowhere")


def test_shared_reduced_mnist():
    folder = next((p for p in (ROOT.parent / "shared" / "data" / "mnist",
                               Path("/work/shared/data/mnist"))
                   if (p / "train5k-images-idx3-ubyte.gz").is_file()), None)
    if folder is None:
        pytest.skip("shared MNIST subset not available")
    sizes = {s: len(PermutedSequentialMNIST(folder, s)) for s in ("train", "valid", "test")}
    assert sizes == {"train": 8300, "valid": 1700, "test": 5000}
    assert PermutedSequentialMNIST(folder, "test").protocol == "reduced"


def test_full_size_split_is_delrec_49800_10200_10000(tmp_path):
    for pre, n in (("train", 60000), ("t10k", 10000)):
        write_idx(tmp_path / f"{pre}-images-idx3-ubyte.gz", np.zeros((n, 28, 28), np.uint8))
        write_idx(tmp_path / f"{pre}-labels-idx1-ubyte.gz", np.zeros(n, np.uint8))
    protocol, splits = psmnist_arrays(tmp_path, seed=0)
    assert protocol == "full"
    assert [len(splits[k][1]) for k in ("train", "valid", "test")] == [49800, 10200, 10000]
