"""DelRec architectures, losses, counts and recipe (SEEDS B1.5-B1.7, B2, F2.16, F2.19)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ctsnn
from ctsnn.losses import mean_square_spike_penalty
from ctsnn.papers.delrec import (
    DelRecConfig,
    DelRecNet,
    delrec_optimisers,
)
from ctsnn.synapses import LinearSynapse, RecurrentDense
from ctsnn.training import DelRecSigmaSchedule, count_parameters

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("float64_one_thread")


@pytest.fixture(autouse=True)
def _seed():
    # float64 at construction (the shared fixture): a float32 tau converted later is not
    # 1.05 dt exactly
    torch.manual_seed(0)


def tiny(kind: str, **changes) -> DelRecNet:
    small = dict(hidden=(12, 10) if kind == "shd" else (8, 10, 9))
    if kind != "psmnist":
        small["n_in"] = 14
    small.update(changes)
    cfg = getattr(DelRecConfig, kind)(**small)
    return DelRecNet(cfg)


def spikes_in(t=25, b=3, n=14, seed=0, rate=0.3):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(t, b, n, generator=g) < rate).to(F64)


# --------------------------------------------------------------------------- F2.19
@pytest.mark.parametrize(("kind", "count"), [("shd", 173_844), ("ssc", 374_819),
                                             ("psmnist", 156_154)])
def test_parameter_counts(kind, count):
    model = DelRecNet(getattr(DelRecConfig, kind)())
    assert count_parameters(model) == count


def test_what_is_counted():
    model = DelRecNet(DelRecConfig.shd())
    names = {name: p.numel() for name, p in model.named_parameters()}
    assert names["layers.1.recurrent.weight"] == 256 * 256
    assert names["layers.1.recurrent.delay_steps"] == 256
    assert names["layers.0.synapse.norm.weight"] == names["layers.0.synapse.norm.bias"] == 256
    assert "layers.0.recurrent.weight" not in names  # no recurrence in the first SHD layer
    buffers = dict(model.named_buffers())
    assert "layers.1.recurrent.sigma" in buffers and "layers.0.synapse.norm.running_mean" in buffers
    ssc = DelRecNet(DelRecConfig.ssc())
    assert all(m.p_spread is not None for m in ssc.recurrent_modules())
    assert len(ssc.recurrent_modules()) == 3
    # without p_spread SSC would have 3 * 256 fewer
    no_p = DelRecNet(DelRecConfig.ssc(learn_width=False))
    assert count_parameters(ssc) - count_parameters(no_p) == 3 * 256


# --------------------------------------------------------------------------- architecture
def test_shd_structure_and_readout_membrane():
    model = tiny("shd")
    cfg = model.config
    assert cfg.tau_steps == 1.05 and cfg.reset == "zero" and cfg.detach_reset
    l0, l1 = model.layers
    assert l0.recurrent is None and isinstance(l1.recurrent, RecurrentDense)
    assert l0.synapse.input_dropout.p == 0.0 and l1.synapse.input_dropout.p == 0.4
    assert model.readout.input_dropout.p == 0.4 and l1.recurrent.dropout == 0.2
    d = l1.recurrent.delay_steps.detach()
    assert 10.0 - 1e-9 <= float(d.min()) and float(d.max()) <= 30.0 + 1e-9
    assert type(l0.model) is ctsnn.LIF
    model.eval()
    x = spikes_in()
    out, spikes = model.forward_with_spikes(x)
    assert out.shape == (25, 3, 20) and [s.shape for s in spikes] == [(25, 3, 12), (25, 3, 10)]
    # readout: u[t] = (1 - 1/1.05) u[t-1] + z[t], never fires (threshold 1e8)
    z = model.readout.jumps(spikes[-1])
    u, trace = torch.zeros(3, 20, dtype=F64), []
    for t in range(25):
        u = (1 - 1 / 1.05) * u + z[t]
        trace.append(u)
    torch.testing.assert_close(out, torch.stack(trace), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model(x), out, rtol=0, atol=0)  # eval is deterministic


@pytest.mark.parametrize("kind", ["ssc", "psmnist"])
def test_ssc_and_psmnist_structure(kind):
    model = tiny(kind)
    cfg = model.config
    assert cfg.reset == "subtract" and cfg.tau_steps == 2.0 and not cfg.detach_reset
    assert all(layer.model.reset_mode == "subtract" for layer in model.layers)
    assert all(layer.synapse.norm is None and layer.synapse.output_dropout.p == 0.1
               for layer in model.layers)
    assert model.readout_neurons is None and model.readout.input_dropout.p == 0.0
    n_in = 14 if kind == "ssc" else 1
    if kind == "psmnist":
        g = torch.Generator().manual_seed(1)
        x = torch.rand(30, 2, 1, generator=g, dtype=F64)  # real-valued pixels
    else:
        x = spikes_in(t=30, b=2, n=n_in)
    out = model(x)
    assert out.shape == (30, 2, cfg.n_out)
    z = model.readout.jumps(model.forward_with_spikes(x)[1][-1])
    assert z.shape == out.shape


def test_linear_synapse_batchnorm():
    torch.manual_seed(0)
    syn = LinearSynapse(5, 3, batch_norm=True)
    out = syn.jumps(torch.randn(40, 6, 5) * 3 + 1)
    flat = out.reshape(-1, 3)  # statistics over T x B
    torch.testing.assert_close(flat.mean(0), torch.zeros(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(flat.var(0, unbiased=False), torch.ones(3), rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match="channels"):
        syn.jumps(torch.zeros(2, 2, 4))


# --------------------------------------------------------------------------- losses
def test_model_loss_and_predict_match_the_readout():
    g = torch.Generator().manual_seed(2)
    v = torch.randn(7, 4, 5, generator=g, dtype=F64)
    y = torch.tensor([0, 3, 4, 1])
    model = tiny("shd")
    assert model.loss(v[:, :, :5], y).shape == ()
    y_hat = torch.stack([F.softmax(v[t], -1) for t in range(7)]).sum(0)
    assert torch.equal(model.predict(v), y_hat.argmax(-1))
    assert torch.equal(tiny("ssc").predict(v), v.sum(0).argmax(-1))


# --------------------------------------------------------------------------- recipe
def test_sigma_schedule_reaches_every_recurrent_layer():
    model = tiny("ssc", epochs=30)
    assert all(float(m.sigma) == 10.0 for m in model.recurrent_modules())
    sigma = model.start_epoch(29)
    assert sigma == pytest.approx(DelRecSigmaSchedule(30).sigma(29)) and round(sigma, 3) == 0.070
    assert all(float(m.sigma) == pytest.approx(sigma) for m in model.recurrent_modules())
    for m in model.recurrent_modules():  # p_spread = 0 at init: s = 1 + sigma
        torch.testing.assert_close(m.width().detach(), torch.full((m.n,), 1 + sigma, dtype=F64))


def test_training_step_reaches_every_parameter_and_clamps():
    torch.manual_seed(0)
    model = tiny("shd", epochs=4)
    with torch.no_grad():
        model.layers[1].recurrent.delay_steps[:3] = torch.tensor([0.05, 1.5, 2.5])
    opt = delrec_optimisers(model)
    assert opt.weights.param_groups[0]["lr"] == pytest.approx(5e-3 / 25)  # OneCycle start
    assert opt.weights.param_groups[1]["weight_decay"] == 0.0  # BatchNorm
    assert opt.delays.param_groups[0]["lr"] == pytest.approx(5e-2)  # cosine starts at lr
    delay_ids = {id(p) for p in ctsnn.delay_parameters(model)}
    weight_ids = {id(p) for p in ctsnn.weight_parameters(model)}
    assert delay_ids.isdisjoint(weight_ids)
    assert delay_ids | weight_ids == {id(p) for p in model.parameters()}
    opt.start_epoch(0)
    model.train()
    x, y = spikes_in(t=20, b=4, rate=0.5), torch.tensor([0, 1, 2, 3])
    out, spikes = model.forward_with_spikes(x)
    loss = model.loss(out, y) + mean_square_spike_penalty(spikes, 1e-3)
    opt.zero_grad()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert float(model.layers[1].recurrent.delay_steps.grad.abs().sum()) > 0
    with torch.no_grad():  # force a negative delay: SHD clamps after every step
        model.layers[1].recurrent.delay_steps.grad[0] = 1e3
    opt.step()
    assert float(model.layers[1].recurrent.delay_steps.detach().min()) >= 0.0
    opt.end_epoch()
    assert opt.delays.param_groups[0]["lr"] < 5e-2


def test_ssc_recipe_projects_delays_and_uses_onecycle_for_delays():
    model = tiny("ssc", epochs=3)
    opt = delrec_optimisers(model)
    assert isinstance(opt.delay_scheduler, torch.optim.lr_scheduler.OneCycleLR)
    assert isinstance(opt.weights, torch.optim.Adam)
    assert len(opt.delays.param_groups[0]["params"]) == 6  # 3 delays + 3 p_spread
    rec = model.recurrent_modules()[0]
    with torch.no_grad():
        rec.delay_steps[0] = 0.1
    opt.zero_grad()
    model.loss(model(spikes_in(t=10, b=2)), torch.tensor([0, 1])).backward()
    with torch.no_grad():  # a step that would make the delay negative
        rec.delay_steps.grad[0] = 1e3
    opt.step()
    # the reference SSC/PS-MNIST trainers do not clamp; here every preset projects (a negative
    # recurrent delay is refused by the forward)
    assert float(rec.delay_steps.detach().min()) >= 0
    model(spikes_in(t=10, b=2))  # the next forward accepts the projected delays
    with pytest.raises(ValueError, match="clamp_delays=False with rec_delays='learned'"):
        DelRecConfig.ssc(clamp_delays=False)
    # nothing learned: fine
    DelRecConfig.ssc(clamp_delays=False, rec_delays="fixed_random", learn_width=False)


def test_eval_modes_through_the_network():
    model = tiny("shd", eval_mode="reference")
    rec = model.layers[1].recurrent
    with torch.no_grad():
        rec.delay_steps[:2] = torch.tensor([11.4, 12.6])
    model.eval()
    assert rec.delay_steps.detach()[:2].tolist() == [11.0, 13.0]  # rounded in place
    paper = tiny("shd")
    rec = paper.layers[1].recurrent
    with torch.no_grad():
        rec.delay_steps[:2] = torch.tensor([11.4, 12.6])
    paper.eval()
    assert rec.delay_steps.detach()[:2].tolist() == [11.4, 12.6]
    assert rec.effective_delay()[:2].tolist() == [11.0, 13.0]


def test_config_errors():
    with pytest.raises(ValueError, match="recurrent"):
        DelRecConfig.shd(hidden=(4, 4, 4))
    with pytest.raises(ValueError, match="reset"):
        DelRecConfig.shd(reset="soft")
    with pytest.raises(ValueError, match="delay_init"):
        DelRecConfig.shd(delay_init_args=(3.0,))
    with pytest.raises(ValueError, match="ff_dropout"):
        DelRecConfig.ssc(ff_dropout=1.0)
    with pytest.raises(ValueError, match="channels"):
        tiny("shd")(torch.zeros(5, 2, 3, dtype=F64))
