"""Dropout on time-first sequences: one mask shared over time, or one per step."""

from __future__ import annotations

import pytest
import torch

from ctsnn.dropout import SequenceDropout


def test_mask_is_shared_over_time():
    torch.manual_seed(0)
    drop = SequenceDropout(0.4)
    x = torch.ones(30, 16, 8)
    y = drop(x)
    kept = y[0] != 0
    assert torch.equal(y != 0, kept.expand_as(y))
    assert torch.allclose(y[:, kept], torch.full_like(y[:, kept], 1 / 0.6))
    assert 0 < kept.sum() < kept.numel()
    assert torch.equal(drop.eval()(x), x)


def test_per_step_masks_and_eval_identity():
    torch.manual_seed(0)
    drop = SequenceDropout(0.5, shared=True)
    x = torch.ones(20, 4, 30)
    y = drop(x)
    assert torch.equal(y, y[:1].expand_as(y)) and set(y.unique().tolist()) <= {0.0, 2.0}
    y = SequenceDropout(0.5, shared=False)(x)
    assert not torch.equal(y, y[:1].expand_as(y))
    drop.eval()
    assert drop(x) is x
    assert SequenceDropout(0.0)(x) is x


def test_rejects_bad_probability():
    for p in (1.0, -0.1):
        with pytest.raises(ValueError, match="dropout"):
            SequenceDropout(p)


def test_shared_mask_is_the_forward_mask():
    drop = SequenceDropout(0.4)
    x = torch.rand(7, 5, 9)
    torch.manual_seed(3)
    y = drop(x)
    torch.manual_seed(3)
    keep = drop.shared_mask(x)
    assert keep.shape == (5, 9) and keep.dtype == x.dtype
    assert torch.equal(x * keep / (1.0 - 0.4), y)
    assert drop.eval().shared_mask(x) is None
    assert SequenceDropout(0.0).shared_mask(x) is None
    with pytest.raises(ValueError, match="shared=False"):
        SequenceDropout(0.4, shared=False).shared_mask(x)
