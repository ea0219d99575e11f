"""The trainer: files, refusals, resume, validation split, evaluation, schedules, metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

import ctsnn
from ctsnn.losses import mean_square_spike_penalty
from ctsnn.surrogate import atan
from ctsnn.synapses import Dense
from ctsnn.training import (
    DCLSSigmaSchedule,
    SpikeMonitor,
    Trainer,
    TrainerConfig,
    WeightDelayRecipe,
    fit,
    load_checkpoint,
)
from ctsnn.training.trainer import epoch_batches

FAST = dict(progress=False, batch_size=16)


def toy_data(n: int = 64, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    return TensorDataset(x, (x[:, 0] + x[:, 1] > 0).long())


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(8, 2))


class SpikingNet(nn.Module):
    """Discrete-time LIF layer with a fan-in mask and learnable delays -> linear readout."""

    def __init__(self, n_in: int = 6, n: int = 8, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        syn = Dense(n_in, n, kernel="gaussian", max_delay=0.004, dt=1e-3, learn_delay=True,
                    fan_in=3)
        self.layer = ctsnn.Layer(ctsnn.LIF(n, tau_mem=0.02), syn, surrogate=atan(5.0))
        self.out = nn.Linear(n, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spikes, _ = self.layer(x, dt=1e-3, input_as="jump")
        return self.out(spikes.raster().sum(0))


class RasterData(Dataset):
    def __init__(self, n: int = 32, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 2, (n,), generator=g)
        self.x = (torch.rand(n, 12, 6, generator=g) < 0.2 + 0.4 * self.y[:, None, None]).float()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]

    @staticmethod
    def collate(items):
        return (torch.stack([x for x, _ in items], 1), torch.stack([y for _, y in items]))


def test_fit_writes_the_run_files_and_one_log_row_per_epoch(tmp_path):
    cfg = TrainerConfig(epochs=3, lr=1e-2, val_fraction=0.25, log="jsonl", **FAST)
    final = fit(mlp(), toy_data(), cfg, out_dir=tmp_path, test_set=toy_data(32, 1),
                metadata={"note": "toy"})
    assert {p.name for p in tmp_path.iterdir()} == {"run.json", "last.pt", "best.pt",
                                                   "final.json", "log.jsonl"}
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"} <= set(rows[0])
    assert json.loads((tmp_path / "final.json").read_text()) == final
    assert 0 <= final["test"]["accuracy"] <= 1 and final["test"]["samples"] == 32
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == final["best"]["epoch"]
    assert best["metrics"]["val_accuracy"] == max(r["val_accuracy"] for r in rows)
    assert json.loads((tmp_path / "run.json").read_text())["metadata"] == {"note": "toy"}


def test_refusals_finished_run_other_architecture_other_config(tmp_path):
    cfg = TrainerConfig(epochs=1, **FAST)
    final = fit(mlp(), toy_data(), cfg, out_dir=tmp_path)
    with pytest.raises(FileExistsError, match="finished"):
        fit(mlp(), toy_data(), cfg, out_dir=tmp_path)
    assert fit(mlp(), toy_data(), cfg, out_dir=tmp_path, resume=True) == final
    with pytest.raises(FileExistsError, match="already holds a run"):
        fit(mlp(), toy_data(), cfg, out_dir=tmp_path, resume=False)
    other = nn.Sequential(nn.Linear(5, 9), nn.BatchNorm1d(9), nn.ReLU(), nn.Dropout(0.2),
                          nn.Linear(9, 2))
    with pytest.raises(ValueError, match=r"another architecture.*0\.weight: shape \[8, 5\]"):
        fit(other, toy_data(), cfg, out_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match=r"another config \(lr: 0\.001 in the checkpoint"):
        fit(mlp(), toy_data(), TrainerConfig(epochs=1, lr=0.5, **FAST), out_dir=tmp_path,
            resume=True)
    with pytest.raises(FileNotFoundError, match="no run to resume"):
        fit(mlp(), toy_data(), cfg, out_dir=tmp_path / "new", resume=True)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "log.csv").write_text("something else\n")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        fit(mlp(), toy_data(), cfg, out_dir=foreign)


def test_resume_mid_run_equals_uninterrupted(tmp_path, monkeypatch):
    cfg = TrainerConfig(epochs=3, lr=1e-2, val_fraction=0.25, checkpoint_every=2, **FAST)
    ref = fit(mlp(), toy_data(), cfg, out_dir=tmp_path / "a")
    import ctsnn.training.trainer as module

    calls, real = [0], module.atomic_save

    def crash_after_sixth(obj, path):
        real(obj, path)
        calls[0] += 1
        if calls[0] == 6:
            raise KeyboardInterrupt  # like a kill right after a checkpoint

    monkeypatch.setattr(module, "atomic_save", crash_after_sixth)
    with pytest.raises(KeyboardInterrupt):
        fit(mlp(), toy_data(), cfg, out_dir=tmp_path / "b")
    monkeypatch.setattr(module, "atomic_save", real)
    ckpt = load_checkpoint(tmp_path / "b" / "last.pt")
    assert not ckpt["finished"]
    torch.manual_seed(123)  # the resumed run restores every RNG from the checkpoint
    again = fit(mlp(seed=7), toy_data(), cfg, out_dir=tmp_path / "b")
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert ref["best"] == again["best"]


def test_evaluate_leaves_the_training_state_untouched(tmp_path):
    model = SpikingNet()
    trainer = Trainer(model, RasterData(), TrainerConfig(epochs=1, **FAST), out_dir=tmp_path)
    trainer.fit()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(3)
    rng = torch.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    rounded = trainer.evaluate(RasterData(16, 1), rounded_delays=True)
    exact = trainer.evaluate(RasterData(16, 1), rounded_delays=False)
    assert model.training and model.layer.synapse.round_in_eval is True
    assert torch.equal(torch.get_rng_state(), rng)
    assert np.array_equal(np.random.get_state()[1], np_state)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert {"loss", "accuracy", "spikes/layer", "synops", "samples"} <= set(rounded)
    assert rounded["samples"] == exact["samples"] == 16
    with pytest.raises(ValueError, match="no synapse that rounds"):
        Trainer(mlp(), toy_data(), TrainerConfig(epochs=1, **FAST),
                out_dir=tmp_path / "m").evaluate(toy_data(), rounded_delays=True)


def test_delays_are_projected_and_have_their_own_learning_rate(tmp_path):
    model = SpikingNet()
    cfg = TrainerConfig(epochs=2, lr=1e-2, lr_delay=50.0, **FAST)
    trainer = Trainer(model, RasterData(), cfg, out_dir=tmp_path)
    before = model.layer.synapse.delay_steps.detach().clone()
    opt = trainer.optimiser
    assert opt.delays.param_groups[0]["lr"] == 50.0 and opt.weights.param_groups[0]["lr"] == 1e-2
    delay_ids = {id(p) for p in opt.delays.param_groups[0]["params"]}
    assert delay_ids == {id(p) for p in ctsnn.delay_parameters(model)}
    assert not delay_ids & {id(p) for g in opt.weights.param_groups for p in g["params"]}
    trainer.fit()
    d = model.layer.synapse.delay_steps.detach()
    assert float(d.min()) >= 0 and float(d.max()) <= 4
    hit = (d == 0) | (d == 4)  # a huge delay rate pushes many delays to the window's ends
    assert int(hit.sum()) > int(((before == 0) | (before == 4)).sum())


def test_one_cycle_uses_the_weight_delay_recipe_and_recipes_replace_config(tmp_path):
    cfg = TrainerConfig(epochs=4, lr=1e-3, max_lr=5e-3, schedule="one_cycle",
                        delay_schedule="cosine", lr_delay=0.1, **FAST)
    t = Trainer(SpikingNet(), RasterData(), cfg, out_dir=tmp_path / "a")
    assert isinstance(t.optimiser.weight_scheduler, torch.optim.lr_scheduler.OneCycleLR)
    assert isinstance(t.optimiser.delay_scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)
    recipe = WeightDelayRecipe(lr=1e-3, lr_delay=0.1)
    with pytest.raises(ValueError, match=r"\['lr_delay', 'max_lr', 'schedule', 'delay_schedule'\]"):
        Trainer(SpikingNet(), RasterData(), cfg, out_dir=tmp_path / "b", optimiser_recipe=recipe)
    t = Trainer(SpikingNet(), RasterData(), TrainerConfig(epochs=2, **FAST),
                out_dir=tmp_path / "c", optimiser_recipe=recipe)
    assert t.optimiser.delays.param_groups[0]["lr"] == 0.1


def test_ease_in_steps_every_batch(tmp_path):
    cfg = TrainerConfig(epochs=1, lr=1e-2, schedule="ease_in", ease_in_factor=0.01,
                        ease_in_multiplier=2.0, **FAST)
    t = Trainer(mlp(), toy_data(), cfg, out_dir=tmp_path)
    assert t.optimiser.weights.param_groups[0]["lr"] == pytest.approx(1e-4)
    t.fit()  # 4 batches: 0.01 * 2**4 < 1
    assert t.optimiser.weights.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.16)


def test_dcls_sigma_schedule_is_applied_per_epoch(tmp_path):
    from ctsnn.papers.dcls import DCLSConfig, DCLSNet

    net = DCLSNet(DCLSConfig(n_in=6, n_hidden=4, n_layers=1, n_out=2, dt=0.01, max_delay=0.09,
                             dropout=0.0, epochs=8))
    cfg = TrainerConfig(epochs=8, sigma_schedule="dcls", **FAST)
    t = Trainer(net, RasterData(8), cfg, out_dir=tmp_path, loss_fn="summed_softmax",
                collate_fn=RasterData.collate)
    t.fit()
    rows = t.log.read()
    expected = DCLSSigmaSchedule.for_run(9, 8)
    assert [float(r["sigma"]) for r in rows] == pytest.approx([expected(e) for e in range(8)])
    assert float(net.delayed()[0].sigma) == pytest.approx(expected(8))


def test_validation_split_random_and_by_speaker(tmp_path):
    data = toy_data(40)
    t = Trainer(mlp(), data, TrainerConfig(val_fraction=0.25, **FAST), out_dir=tmp_path / "a")
    tr, va = set(t.train_set.indices), set(t.val_set.indices)
    assert len(va) == 10 and not tr & va and tr | va == set(range(40))

    class Speakers(Dataset):
        def __init__(self, idx=None):
            self.idx = np.arange(40) if idx is None else np.asarray(idx)
            self.speakers = self.idx % 5

        def __len__(self):
            return len(self.idx)

        def __getitem__(self, i):
            return data[int(self.idx[i])]

        def subset(self, positions):
            return Speakers(self.idx[np.asarray(positions)])

    t = Trainer(mlp(), Speakers(), TrainerConfig(val_fraction=0.4, **FAST),
                out_dir=tmp_path / "b")
    assert not set(t.train_set.speakers) & set(t.val_set.speakers)
    assert len(set(t.val_set.speakers)) == 2
    with pytest.raises(ValueError, match="use one or the other"):
        Trainer(mlp(), data, TrainerConfig(val_fraction=0.2, val_split="random", **FAST),
                out_dir=tmp_path / "c", val_set=data)
    with pytest.raises(ValueError, match="speakers"):
        Trainer(mlp(), data, TrainerConfig(val_fraction=0.2, val_split="speaker", **FAST),
                out_dir=tmp_path / "d")


def test_early_stopping_counts_epochs_without_improvement(tmp_path):
    cfg = TrainerConfig(epochs=20, lr=1e-12, val_fraction=0.25, early_stopping=2, **FAST)
    torch.manual_seed(0)  # no batch norm or dropout: the accuracy cannot change at lr 1e-12
    final = fit(nn.Linear(5, 2), toy_data(), cfg, out_dir=tmp_path)
    assert final["stopped_early"] and final["epochs_run"] == 3 and final["best"]["epoch"] == 1


def test_data_order_is_a_function_of_seed_and_epoch():
    a = epoch_batches(50, 16, 3, 2)
    assert a == epoch_batches(50, 16, 3, 2) and a != epoch_batches(50, 16, 3, 1)
    assert [len(b) for b in a] == [16, 16, 16, 2]
    assert sorted(i for b in a for i in b) == list(range(50))


def test_spike_regularisation_and_synaptic_operations(tmp_path):
    model = SpikingNet()
    x = RasterData(4, 2).collate([RasterData(4, 2)[i] for i in range(4)])[0]
    with SpikeMonitor(model, keep_rasters=True) as mon:
        spikes, _ = model.layer(x, dt=1e-3, input_as="jump")
    fan_out = (model.layer.synapse.effective_weight != 0).sum(0).double()
    assert mon.synops == pytest.approx(float((x.sum((0, 1)).double() * fan_out).sum()))
    assert mon.spikes == {"layer": float(spikes.raster().detach().sum())}
    assert torch.equal(mon.penalty(0.5), mean_square_spike_penalty([spikes.raster()], 0.5))
    cfg = TrainerConfig(epochs=1, spike_reg=0.1, **FAST)
    t = Trainer(SpikingNet(), RasterData(), cfg, out_dir=tmp_path / "a")
    t.fit()
    assert float(t.log.read()[0]["train_spike_penalty"]) >= 0
    with pytest.raises(ValueError, match=r"no learnable delay.*\['lr_delay'\]"):
        Trainer(mlp(), toy_data(), TrainerConfig(lr_delay=0.1, **FAST), out_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="rounded_eval=True but the model"):
        Trainer(mlp(), toy_data(), TrainerConfig(rounded_eval=True, **FAST),
                out_dir=tmp_path / "d")
    with pytest.raises(ValueError, match="spike_reg needs the spikes"):
        fit(mlp(), toy_data(), cfg, out_dir=tmp_path / "b")


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="TrainerConfig.optimiser"):
        TrainerConfig(optimiser="rmsprop")
    with pytest.raises(TypeError, match="TrainerConfig.epochs"):
        TrainerConfig(epochs=2.0)
    with pytest.raises(ValueError, match="max_lr"):
        TrainerConfig(max_lr=1.0)
    with pytest.raises(ValueError, match="lr_decay is set but not used"):
        TrainerConfig(lr_decay=0.5)
    with pytest.raises(ValueError, match="ease_in_factor is set but not used"):
        TrainerConfig(ease_in_factor=0.5, schedule="cosine")
    with pytest.raises(ValueError, match=r"unknown TrainerConfig field\(s\) \['lrr'\]"):
        TrainerConfig.from_dict({"lrr": 1})
    cfg = TrainerConfig(epochs=3, lr=0.1)
    assert TrainerConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.differences(TrainerConfig(epochs=3, lr=0.2, progress=False)) == {
        "lr": (0.1, 0.2)}


def test_delays_alone_train_when_the_weights_are_fixed(tmp_path):
    model = SpikingNet()
    model.layer.synapse.weight.requires_grad_(False)
    model.out.requires_grad_(False)
    before = model.layer.synapse.delay_steps.detach().clone()
    weights = [p.detach().clone() for p in model.out.parameters()]
    t = Trainer(model, RasterData(), TrainerConfig(epochs=1, lr=1.0, **FAST), out_dir=tmp_path)
    assert t.optimiser.weights is None and t.optimiser.delays is not None
    with pytest.raises(ValueError, match="no learnable weight"):
        Trainer(model, RasterData(), TrainerConfig(schedule="cosine", **FAST),
                out_dir=tmp_path / "b")
    t.fit()
    assert not torch.equal(model.layer.synapse.delay_steps.detach(), before)
    assert all(torch.equal(a, b) for a, b in zip(weights, model.out.parameters(), strict=True))


def test_a_run_killed_before_its_first_checkpoint_starts_over(tmp_path, monkeypatch):
    import ctsnn.training.trainer as module

    cfg = TrainerConfig(epochs=1, val_fraction=0.25, **FAST)
    real = module.atomic_save

    def crash_after_best(obj, path):
        real(obj, path)
        if path.name == "best.pt":
            raise KeyboardInterrupt  # best.pt of epoch 1 written, last.pt not yet

    monkeypatch.setattr(module, "atomic_save", crash_after_best)
    with pytest.raises(KeyboardInterrupt):
        fit(mlp(), toy_data(), cfg, out_dir=tmp_path)
    monkeypatch.setattr(module, "atomic_save", real)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "run.json"]
    with pytest.raises(FileExistsError, match="refusing to overwrite"):  # another config
        fit(mlp(), toy_data(), TrainerConfig(epochs=2, val_fraction=0.25, **FAST),
            out_dir=tmp_path)
    assert fit(mlp(), toy_data(), cfg, out_dir=tmp_path)["epochs_run"] == 1


def test_monitor_counts_models_that_call_simulate_themselves(tmp_path):
    """A model that runs ``ctsnn.simulate(layers, x)`` (as EventPropNet does) has its spikes
    counted once per layer; a Layer called directly is counted once, not twice."""
    from ctsnn.config import build_model, load_config
    cfg = load_config("eventprop_yinyang", ["model.hidden=[6]"])
    model = build_model(cfg)
    x = ctsnn.Spikes.from_events(torch.tensor([0.005, 0.01, 0.005, 0.01]),
                                 torch.tensor([0, 1, 2, 3]), dt=cfg.model.dt,
                                 n_steps=20, n_units=cfg.model.n_in)
    with SpikeMonitor(model) as mon:
        out = model(x)
    result = ctsnn.simulate(list(model.layers), x, readout=cfg.model.readout)
    torch.testing.assert_close(out, result.output)
    names = [name for name, _ in mon.layers]
    assert len(names) == 2 and mon.seen == 2
    for name, r in zip(names, result.layers, strict=True):
        assert mon.spikes[name] == float(len(r.spikes))
    assert mon.spikes[names[0]] > 0  # the hidden layer fired, so the check could fail
    net = SpikingNet()
    xr = RasterData(4, 2).collate([RasterData(4, 2)[i] for i in range(4)])[0]
    with SpikeMonitor(net) as mon2:
        spikes, _ = net.layer(xr, dt=1e-3, input_as="jump")
    assert mon2.seen == 1 and mon2.spikes == {"layer": float(spikes.raster().sum())}
    ctsnn.simulate(net.layer, xr, dt=1e-3, input_as="jump")  # outside the block: not counted
    assert mon2.seen == 1
