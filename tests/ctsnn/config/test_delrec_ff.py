"""DelRec's feed-forward delays (DCLS 'v1': linear interpolation) against a loop reference."""

from __future__ import annotations

import math

import pytest
import torch

from ctsnn.config import ConfigError, build_model, validate_config
from ctsnn.config.delrec_ff import DelayedLinearSynapse, add_feedforward_delays
from ctsnn.papers.delrec import DelRecConfig, DelRecNet
from ctsnn.synapses import LinearSynapse


def _reference(x, w, b, d):
    """``y[t, :, i] = b_i + sum_j w_ij ((1 - f) x[t - n, j] + f x[t - n - 1, j])`` with
    ``d_ij = n + f``; zero before the start."""
    t_len, batch, n_in = x.shape
    y = torch.zeros(t_len, batch, w.shape[0], dtype=x.dtype)
    for i in range(w.shape[0]):
        for j in range(n_in):
            n, f = math.floor(float(d[i, j])), float(d[i, j]) - math.floor(float(d[i, j]))
            for t in range(t_len):
                for lag, share in ((n, 1 - f), (n + 1, f)):
                    if 0 <= t - lag:
                        y[t, :, i] += w[i, j] * share * x[t - lag, :, j]
        y[:, :, i] += b[i]
    return y


def test_delayed_synapse_is_linear_interpolation_of_shifted_inputs(float64):
    torch.manual_seed(0)
    lin = LinearSynapse(3, 2, bias=True)
    syn = DelayedLinearSynapse(lin, max_delay=0.006, dt=0.001)   # window 7 taps: 0..6 steps
    torch.testing.assert_close(syn.weight.detach(), lin.linear.weight.detach(), rtol=0, atol=0)
    d = torch.tensor([[0.0, 2.3, 5.75], [6.0, 1.5, 0.2]])
    with torch.no_grad():
        syn.dense.delay_steps.copy_(d)
    x = torch.rand(12, 2, 3)
    w, b = lin.linear.weight.detach(), lin.linear.bias.detach()
    syn.train()
    torch.testing.assert_close(syn.jumps(x), _reference(x, w, b, d), rtol=1e-12, atol=1e-12)
    syn.eval()                                    # rounded one-tap delays (ties to even)
    torch.testing.assert_close(syn.jumps(x), _reference(x, w, b, torch.round(d)), rtol=1e-12,
                               atol=1e-12)


def test_delay_gradient_matches_finite_differences(float64):
    torch.manual_seed(1)
    syn = DelayedLinearSynapse(LinearSynapse(2, 2, bias=False), max_delay=0.005, dt=0.001)
    with torch.no_grad():
        syn.dense.delay_steps.copy_(torch.tensor([[0.3, 1.6], [2.45, 3.8]]))
    x = torch.rand(10, 3, 2)
    d0 = syn.dense.delay_steps.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda d: _plain(syn, d, x), (d0,))


def _plain(syn, d, x):
    """Output as a function of the delays (the parameter replaced by ``d``)."""
    dense = syn.dense
    saved = dense.delay_steps
    try:
        del dense._parameters["delay_steps"]
        dense.delay_steps = d
        return syn.jumps(x)
    finally:
        del dense.delay_steps
        dense._parameters["delay_steps"] = saved


def test_config_adds_delays_to_the_named_layers():
    raw = {"experiment": {"name": "x", "paper": "delrec"},
           "data": {"kind": "shd", "recipe": "delrec_shd"},
           "model": {"kind": "delrec", "preset": "shd", "ff_delays": [1]}}
    cfg = validate_config(raw)
    assert cfg.to_dict()["model"]["ff_delays"] == [1]
    net = build_model(cfg)
    assert isinstance(net.layers[1].synapse, DelayedLinearSynapse)
    assert isinstance(net.layers[0].synapse, LinearSynapse)
    assert net.layers[1].synapse.dense.kernel_size == 25           # 0.25 s at 10 ms
    for bad in ([2], [1, 1], [-1]):
        raw["model"]["ff_delays"] = bad
        with pytest.raises(ConfigError, match="model.ff_delays"):
            validate_config(raw, "c.yaml")
    raw["model"].update(ff_delays=[1], ff_max_delay_steps=0)
    with pytest.raises(ConfigError, match="model.ff_max_delay_steps"):
        validate_config(raw, "c.yaml")


def test_add_feedforward_delays_checks_the_index():
    net = DelRecNet(DelRecConfig.shd(hidden=(4, 4)))
    with pytest.raises(ValueError, match="not a hidden layer"):
        add_feedforward_delays(net, [5], 0.05)
