"""The DCLS SHD/SSC/GSC network, counts and training recipe (SEEDS A1-A2, F1.9, F1.11, F1.12)."""

from __future__ import annotations

import math
import runpy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ctsnn.losses import summed_softmax_cross_entropy
from ctsnn.papers.dcls import DCLSConfig, DCLSNet, dcls_optimisers
from ctsnn.synapses import Dense
from ctsnn.training import count_parameters


@pytest.fixture(autouse=True)
def _float64_one_thread():
    old, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(old)
    torch.set_num_threads(threads)


def tiny(**changes) -> DCLSConfig:
    base = dict(n_in=5, n_hidden=6, n_layers=2, n_out=3, max_delay=0.06, dropout=0.0,
                epochs=8)
    return DCLSConfig.shd(**(base | changes))


def net(config: DCLSConfig, seed: int = 0) -> DCLSNet:
    return DCLSNet(config, generator=torch.Generator().manual_seed(seed))


def counts(t, b, n, seed=0, p=0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(t, b, n, generator=g) < p).double() * torch.randint(1, 3, (t, b, n),
                                                                             generator=g)


# --------------------------------------------------------------------------- F1.11 counts
@pytest.mark.parametrize("config, expected", [
    (DCLSConfig.shd(), 214_016),
    (DCLSConfig.ssc(n_layers=2), 705_536),
    (DCLSConfig.ssc(n_layers=3), 1_230_848),
    (DCLSConfig.gsc(n_layers=2), 705_536),
])
def test_parameter_counts(config, expected):
    model = DCLSNet(config, dtype=torch.float32)
    assert count_parameters(model) == expected
    # sigma is a buffer and not counted; fixed delays still count as "positions".
    fixed = DCLSNet(DCLSConfig.shd(delays="fixed_random"), dtype=torch.float32)
    assert count_parameters(fixed) == 214_016


def test_sparse_parameter_count():
    model = DCLSNet(DCLSConfig.shd(fan_in=10), dtype=torch.float32)
    assert count_parameters(model) == 214_016
    # 10 synapses per neuron: 2 x 10 x (256 + 256 + 20) + BatchNorm 2 x 2 x 256.
    assert count_parameters(model, active_only=True) == 2 * 10 * 532 + 1024


def test_configs():
    shd, ssc, gsc = DCLSConfig.shd(), DCLSConfig.ssc(), DCLSConfig.gsc()
    assert (shd.kernel_size, shd.pad_steps, shd.n_out, shd.dropout) == (25, 12, 20, 0.4)
    assert (ssc.kernel_size, ssc.pad_steps, ssc.n_out, ssc.n_layers) == (31, 15, 35, 3)
    assert math.isclose(shd.tau_steps, 1.005) and math.isclose(ssc.tau_steps, 1.5)
    assert (gsc.epochs, ssc.epochs, shd.epochs) == (100, 60, 150)
    sched = shd.sigma_schedule()
    assert (sched.sig_init, sched.decay_epochs) == (12.0, 37)
    assert ssc.sigma_schedule().decay_epochs == 15


# --------------------------------------------------------------------------- forward
def manual_forward(model: DCLSNet, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Independent re-implementation: pad, delayed synapse, batch statistics, DCLS LIF loop."""
    cfg = model.config
    decay = 1 - 1 / cfg.tau_steps
    pad = cfg.pad_steps
    spikes_per_layer = []
    h = x
    for block in model.blocks:
        syn = block.layer.synapse
        h = torch.cat([h, h.new_zeros(pad, *h.shape[1:])])
        y = syn.synapse.jumps(h)
        mean = y.mean(dim=(0, 1))
        var = y.var(dim=(0, 1), unbiased=False)
        y = (y - mean) / torch.sqrt(var + syn.norm.eps) * syn.norm.weight + syn.norm.bias
        u = torch.zeros_like(y[0])
        out = []
        for t in range(y.shape[0]):
            u = decay * u + y[t]
            s = (u >= cfg.threshold).double()
            u = u * (1 - s)                       # hard reset to 0
            out.append(s)
        h = torch.stack(out)
        spikes_per_layer.append(h)
    h = torch.cat([h, h.new_zeros(pad, *h.shape[1:])])
    y = model.readout.jumps(h)
    u = torch.zeros_like(y[0])
    trace = []
    for t in range(y.shape[0]):
        u = decay * u + y[t]
        trace.append(u)
    return spikes_per_layer, torch.stack(trace)


def test_forward_matches_the_dcls_equations():
    cfg = tiny(tau=0.015)
    model = net(cfg)
    for m in model.delayed():
        m.set_sigma(1.5)
        with torch.no_grad():
            m.weight.mul_(3)
    x = counts(14, 4, 5)
    membrane = model(x)
    _, ref = manual_forward(model, x)
    # F1.12: every layer's padding adds (K - 1) // 2 = 3 steps (2 hidden + readout).
    assert membrane.shape == (14 + 3 * 3, 4, 3) == ref.shape
    assert model.output_steps(14) == 23
    torch.testing.assert_close(membrane, ref, rtol=1e-12, atol=1e-12)
    # Hidden spikes exist (the comparison is not trivial).
    h = model.blocks[0].layer(torch.cat([x, x.new_zeros(3, 4, 5)]), dt=cfg.dt,
                              input_as="jump")[0].raster()
    assert 0 < h.sum() < h.numel()


def test_surrogate_gradients_match_spikingjelly_semantics():
    """atan(alpha = 5) surrogate with detach_reset: gradients equal a hand-written BPTT."""
    cfg = tiny(n_layers=1, tau=0.02)
    model = net(cfg, seed=1)
    for m in model.delayed():
        m.set_sigma(1.0)
        with torch.no_grad():
            m.weight.mul_(3)
    x = counts(10, 3, 5, seed=1)
    target = torch.tensor([0, 2, 1])
    loss = summed_softmax_cross_entropy(model(x), target)
    params = [p for p in model.parameters()]
    grads = torch.autograd.grad(loss, params)

    alpha = 5.0

    class Atan(torch.autograd.Function):
        @staticmethod
        def forward(ctx, v):
            ctx.save_for_backward(v)
            return (v >= 0).double()

        @staticmethod
        def backward(ctx, g):
            (v,) = ctx.saved_tensors
            return g * (alpha / 2) / (1 + (math.pi / 2 * alpha * v) ** 2)

    block = model.blocks[0]
    syn = block.layer.synapse
    pad = cfg.pad_steps
    h = torch.cat([x, x.new_zeros(pad, 3, 5)])
    y = syn.norm(syn.synapse.jumps(h).reshape(-1, 6)).view(-1, 3, 6)
    u = torch.zeros_like(y[0])
    out = []
    for t in range(y.shape[0]):
        u = (1 - 1 / cfg.tau_steps) * u + y[t]
        s = Atan.apply(u - 1.0)
        u = u * (1 - s.detach())
        out.append(s)
    hs = torch.stack(out)
    hs = torch.cat([hs, hs.new_zeros(pad, 3, 6)])
    z = model.readout.jumps(hs)
    u = torch.zeros_like(z[0])
    trace = []
    for t in range(z.shape[0]):
        u = (1 - 1 / cfg.tau_steps) * u + z[t]
        trace.append(u)
    ref_loss = F.cross_entropy(F.softmax(torch.stack(trace), -1).sum(0), target)
    ref_grads = torch.autograd.grad(ref_loss, params)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=0)
    assert grads[1].abs().sum() > 0                     # delays of the hidden layer learn
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_eval_uses_rounded_delays_and_restores_training():
    model = net(tiny(dropout=0.25))
    x = counts(12, 3, 5)
    before = {k: v.clone() for k, v in model.state_dict().items()
              if "running" not in k and "num_batches" not in k}
    model.eval()
    with torch.no_grad():
        model(x)
    assert all(not m.training for m in model.delayed())
    model.train()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_input_errors():
    model = net(tiny())
    with pytest.raises(ValueError, match="expects n_in = 5"):
        model(torch.zeros(10, 2, 4))
    with pytest.raises(ValueError, match="3 dimensions"):
        model(torch.zeros(10, 5))
    with pytest.raises(ValueError, match="kernel"):
        DCLSNet(tiny(kernel="box"))


# --------------------------------------------------------------------------- recipe
def test_optimiser_recipe():
    epochs = 8
    model = net(tiny(epochs=epochs))
    opt = dcls_optimisers(model, epochs)
    groups = opt.weights.param_groups
    assert [g["weight_decay"] for g in groups] == [1e-5, 0.0]
    weights = {id(m.weight) for m in model.delayed()}
    assert {id(p) for p in groups[0]["params"]} == weights
    bn = {id(p) for b in model.blocks for p in b.layer.synapse.norm.parameters()}
    assert {id(p) for p in groups[1]["params"]} == bn
    (dg,) = opt.delays.param_groups
    assert {id(p) for p in dg["params"]} == {id(m.delay_steps) for m in model.delayed()}
    assert dg["weight_decay"] == 0.0 and dg["lr"] == 0.1
    assert math.isclose(groups[0]["lr"], 5e-3 / 25)       # OneCycle starts at max_lr / 25
    # sigma: K = 7 -> SIG 3 -> 0.23 over 8 // 4 = 2 epochs.
    assert all(m.sigma.item() == 3.27 for m in model.delayed())
    x, y = counts(10, 4, 5), torch.tensor([0, 1, 2, 0])
    lrs = []
    for _ in range(epochs):
        opt.zero_grad()
        summed_softmax_cross_entropy(model(x), y).backward()
        with torch.no_grad():
            model.delayed()[0].delay_steps.add_(100.0)  # the clamp must pull it back
        opt.step()
        assert all(m.delay_steps.max() <= 6 and m.delay_steps.min() >= 0
                   for m in model.delayed())
        lrs.append((groups[0]["lr"], dg["lr"]))
        opt.end_epoch()
        expected_sigma = opt.sigma.sigma_eff(opt.epoch)
        assert all(math.isclose(m.sigma.item(), expected_sigma) for m in model.delayed())
    assert math.isclose(model.readout.sigma.item(), 0.5)
    peak = max(range(epochs), key=lambda e: lrs[e][0])
    assert 0 < peak < epochs - 1 and math.isclose(lrs[peak][0], 5e-3, rel_tol=0.2)
    assert lrs[-1][1] < 0.1 * 0.1                      # cosine annealing of the delay lr


def test_recipe_errors_and_fixed_delays():
    model = net(tiny(delays="fixed_random"))
    opt = dcls_optimisers(model, 4)
    assert opt.delays is None and opt.delay_scheduler is None
    with pytest.raises(ValueError, match="grid-kernel Dense"):
        dcls_optimisers(torch.nn.Linear(2, 2), 3)
    with pytest.raises(ValueError, match="epochs"):
        dcls_optimisers(model, 0)


def test_training_reduces_the_loss():
    model = net(tiny(epochs=6), seed=3)
    opt = dcls_optimisers(model, 6, max_lr=3e-2)
    x, y = counts(12, 16, 5, seed=4), torch.randint(0, 3, (16,),
                                                       generator=torch.Generator().manual_seed(0))
    first = None
    for _ in range(6):
        for _ in range(3):
            opt.zero_grad()
            loss = summed_softmax_cross_entropy(model(x), y)
            first = loss.item() if first is None else first
            loss.backward()
            opt.step()
        opt.end_epoch()
    assert summed_softmax_cross_entropy(model(x), y).item() < first
    assert isinstance(model.readout, Dense)


@pytest.mark.slow
def test_example_learns_delays(capsys):
    path = Path(__file__).parents[3] / "examples" / "dcls_delays.py"
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert "learned delays" in out and "100.0% after" in out
