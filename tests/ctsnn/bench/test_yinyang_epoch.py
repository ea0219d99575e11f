"""Y1 ``yinyang-epoch`` on a tiny set: the loader, the network and the extrapolation."""

from __future__ import annotations

import json

import pytest
import torch

from ctsnn.bench import yinyang_epoch as y1


def test_loader_gives_float32_latency_spikes_with_a_bias() -> None:
    loader = y1.make_loader(batch=8, size=20)
    spikes, labels = next(iter(loader))
    assert spikes.times.dtype == torch.float32 and spikes.n_units == 5
    assert spikes.batch_size == 8 and labels.shape == (8,)
    assert len(spikes) == 8 * 5  # one spike per feature and one bias spike
    assert float(spikes.times.max()) <= 0.03 and float(spikes.times.min()) >= 0.0
    assert bool((spikes.times[spikes.units == 4] == 0.0).all())
    assert len(loader) == 3


def test_network_has_learnable_bounded_delays() -> None:
    hidden, readout = y1.build_network(n_hidden=8)
    assert hidden.synapse.delay.requires_grad
    assert float(hidden.synapse.delay.detach().max()) <= y1.MAX_DELAY
    assert readout.model.n == 3 and hidden.gradient.name == readout.gradient.name


def test_epoch_estimate_counts_the_first_batch_once() -> None:
    assert y1.epoch_estimate([2.0, 1.0, 3.0], 3) == (6.0, False)
    assert y1.epoch_estimate([2.0, 1.0, 3.0], 11) == (2.0 + 2.0 * 10, True)
    assert y1.epoch_estimate([4.0], 5) == (4.0 + 4.0 * 4, True)
    with pytest.raises(ValueError, match="batch times"):
        y1.epoch_estimate([], 3)
    with pytest.raises(ValueError, match="batch times"):
        y1.epoch_estimate([1.0, 1.0], 1)


@pytest.mark.slow  # the first torch.optim optimiser imports torch._dynamo: ~10-50 s when loaded
def test_quick_run_extrapolates_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    code = y1.main(size=48, batch=16, n_hidden=8, max_batches=2)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    ours = lines[0]["ours"]
    assert ours["extrapolated"] is True and ours["batches_run"] == 2
    assert ours["batches_per_epoch"] == 3
    assert ours["epoch_s"] >= ours["wall_s"]
    assert lines[-1]["ours"]["extrapolated"] is True
