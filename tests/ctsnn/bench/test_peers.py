"""Tests of the benchmark peers' shared helpers (the peers themselves run in the workload tests)."""

from __future__ import annotations

import pytest
import torch

from ctsnn.bench import peers


def test_saved_tensor_bytes_counts_distinct_storages() -> None:
    a = torch.randn(1000, requires_grad=True)

    def forward() -> torch.Tensor:
        return (a * a).sum()  # MulBackward saves ``a`` twice: one storage

    loss, saved = peers.saved_tensor_bytes(forward)
    assert saved["saved_mib"] == pytest.approx(4000 / 1024**2)
    assert saved["saved_naive_mib"] == pytest.approx(8000 / 1024**2)
    loss.backward()
    assert torch.allclose(a.grad, 2 * a)


def test_plain_weights_are_shared_and_sized() -> None:
    ws = peers.plain_weights((140, 256, 256, 20), seed=0)
    assert [tuple(w.shape) for w in ws] == [(256, 140), (256, 256), (20, 256)]
    assert all(torch.equal(a, b) for a, b in zip(ws, peers.plain_weights((140, 256, 256, 20),
                                                                          seed=0), strict=True))
