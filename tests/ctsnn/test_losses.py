"""Readouts and losses on time-first [T, B, C] outputs (SEEDS A1.7, B1.7)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ctsnn.losses import (
    mean_square_spike_penalty,
    summed_logits_cross_entropy,
    summed_logits_prediction,
    summed_softmax_cross_entropy,
    summed_softmax_prediction,
    time_invariant_mse,
)

F64 = torch.float64


def test_summed_softmax_is_ce_of_time_summed_softmax_over_all_steps():
    membrane = torch.randn(7, 4, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([2, 0, 1, 1])
    y_hat = torch.stack([F.softmax(membrane[t], -1) for t in range(7)]).sum(0)
    expected = -(torch.log_softmax(y_hat, -1)[torch.arange(4), target]).mean()
    torch.testing.assert_close(summed_softmax_cross_entropy(membrane, target), expected)
    assert torch.equal(summed_softmax_prediction(membrane), y_hat.argmax(-1))
    with pytest.raises(ValueError, match="target"):
        summed_softmax_cross_entropy(membrane, target[:2])


def test_summed_softmax_second_log_softmax():
    g = torch.Generator().manual_seed(2)
    v = torch.randn(7, 4, 5, generator=g, dtype=F64)
    y = torch.tensor([0, 3, 4, 1])
    y_hat = torch.stack([F.softmax(v[t], -1) for t in range(7)]).sum(0)
    logp = y_hat - torch.logsumexp(y_hat, -1, keepdim=True)  # the second log-softmax
    assert float(summed_softmax_cross_entropy(v, y)) == pytest.approx(
        float(-logp[range(4), y].mean()), rel=1e-12)


def test_summed_logits():
    g = torch.Generator().manual_seed(2)
    v = torch.randn(7, 4, 5, generator=g, dtype=F64)
    y = torch.tensor([0, 3, 4, 1])
    z = v.sum(0)
    ref = -(z - torch.logsumexp(z, -1, keepdim=True))[range(4), y].mean()
    assert float(summed_logits_cross_entropy(v, y)) == pytest.approx(float(ref), rel=1e-12)
    assert torch.equal(summed_logits_prediction(v), z.argmax(-1))
    with pytest.raises(ValueError):
        summed_logits_cross_entropy(v[0], y)
    with pytest.raises(ValueError, match="3 dimensions"):
        summed_logits_prediction(v[0])


def test_mean_square_spike_penalty():
    g = torch.Generator().manual_seed(2)
    s1 = (torch.rand(7, 4, 5, generator=g) < 0.3).to(F64)
    s2 = (torch.rand(7, 4, 3, generator=g) < 0.3).to(F64)
    pen = mean_square_spike_penalty([s1, s2], 0.1)
    expect = 0.1 * (s1.sum() / (2 * 7 * 4 * 5) + s2.sum() / (2 * 7 * 4 * 3))
    assert float(pen) == pytest.approx(float(expect), rel=1e-12)
    assert float(mean_square_spike_penalty(s1, 1.0)) == pytest.approx(float(s1.sum() / 280),
                                                                       rel=1e-12)
    with pytest.raises(ValueError, match="at least one"):
        mean_square_spike_penalty([], 1.0)


# --------------------------------------------------------------------------- labels (issue 9)
LOSSES = [summed_softmax_cross_entropy, summed_logits_cross_entropy]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("bad", [-100, -1, 4])
def test_labels_outside_the_classes_are_refused(loss, bad):
    out = torch.randn(3, 3, 4, dtype=F64)
    with pytest.raises(ValueError, match=rf"target\[2\] = {bad}.*\[0, 4\)"):
        loss(out, torch.tensor([1, 0, bad]))


@pytest.mark.parametrize("loss", LOSSES)
def test_label_types_are_checked(loss):
    out = torch.randn(3, 2, 4, dtype=F64)
    with pytest.raises(TypeError, match="target.*integer"):
        loss(out, torch.tensor([1.0, 0.0]))
    with pytest.raises(TypeError, match="target"):
        loss(out, [1, 0])


@pytest.mark.parametrize("loss", LOSSES)
def test_ignoring_a_label_is_an_explicit_option(loss):
    out = torch.randn(3, 3, 4, dtype=F64)
    target = torch.tensor([1, -100, 2])
    kept = loss(out[:, [0, 2]], target[[0, 2]])
    torch.testing.assert_close(loss(out, target, ignore_index=-100), kept, rtol=0, atol=0)
    # the ignored value is the only exception
    with pytest.raises(ValueError, match=r"target\[1\] = -7"):
        loss(out, torch.tensor([1, -7, 2]), ignore_index=-100)
    with pytest.raises(ValueError, match="ignore_index"):
        loss(out, target, ignore_index=2)       # a real class cannot be ignored


def test_time_invariant_mse_refuses_bad_labels():
    with pytest.raises(ValueError, match=r"labels\[0\] = -100"):
        time_invariant_mse(torch.rand(2, 3, dtype=F64), torch.tensor([-100, 1]), 0.001)
