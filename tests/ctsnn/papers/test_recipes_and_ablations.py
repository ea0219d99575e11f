"""Paper recipes do what they say (issue 9, item 7) and their configs name the wrong field
(item 6): one ``epochs`` everywhere, the model's own ``sig_end``, ablations as config options that
train and evaluate the same model (SEEDS A1.5, A3, B1.5, B3)."""

from __future__ import annotations

import math
import runpy
from pathlib import Path

import pytest
import torch

from ctsnn.papers.dcls import DCLSConfig, DCLSNet, dcls_optimisers
from ctsnn.papers.delrec import DelRecConfig, DelRecNet, delrec_optimisers
from ctsnn.synapses import Dense, Gaussian
from ctsnn.training import count_parameters

pytestmark = pytest.mark.usefixtures("float64_one_thread")
F64 = torch.float64


def dcls_tiny(**changes) -> DCLSNet:
    base = dict(n_in=5, n_hidden=6, n_layers=2, n_out=3, max_delay=0.06, dropout=0.0, epochs=8)
    return DCLSNet(DCLSConfig.shd(**(base | changes)), generator=torch.Generator().manual_seed(0))


def delrec_tiny(kind: str = "shd", **changes) -> DelRecNet:
    torch.manual_seed(0)
    small = dict(hidden=(12, 10) if kind == "shd" else (8, 10, 9), n_in=14,
                 ff_dropout=0.0, rec_dropout=0.0, delay_init_args=(1.0, 3.0), batch_norm=False)
    model = DelRecNet(getattr(DelRecConfig, kind)(**(small | changes)))
    with torch.no_grad():  # busy layers, strong recurrence: the recurrent kernel matters
        for layer in model.layers:
            for name, p in layer.synapse.named_parameters():
                if name.endswith("weight"):
                    p.mul_(3.0)
        for rec in model.recurrent_modules():
            rec.weight.mul_(3.0)
    return model


def counts(t, b, n, seed=0, p=0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(t, b, n, generator=g) < p).to(F64) * torch.randint(1, 3, (t, b, n),
                                                                           generator=g)


def train_and_eval_outputs(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Output in training mode (BatchNorm on its running statistics, dropout 0, so that only the
    delay kernels differ between the modes) and in ``eval()``."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    with torch.no_grad():
        train = model(x)
    model.eval()
    with torch.no_grad():
        evaluated = model(x)
    model.train()
    return train, evaluated


# --------------------------------------------------------------------------- one epochs value
def test_delrec_optimisers_sigma_follows_the_given_epochs():
    model = delrec_tiny()
    assert model.config.epochs == 150
    opt = delrec_optimisers(model, epochs=20)
    sigma = opt.start_epoch(19)
    assert math.isclose(sigma, 10 * 0.95 ** 95, rel_tol=1e-12)       # 0.0765, not 5.22
    assert all(math.isclose(float(m.sigma), sigma) for m in model.recurrent_modules())
    assert opt.weight_scheduler.total_steps == 20
    assert opt.delay_scheduler.T_max == 20
    with pytest.raises(ValueError, match="epochs"):
        delrec_optimisers(model, epochs=0)


def test_dcls_optimisers_keeps_the_models_sig_end_for_other_epochs():
    model = dcls_tiny(sig_end=0.5)                  # K = 7: SIG 3 -> 0.5
    opt = dcls_optimisers(model, 40)                # config.epochs = 8
    assert (opt.sigma.sig_init, opt.sigma.decay_epochs, opt.sigma.sig_end) == (3.0, 10, 0.5)
    for _ in range(40):
        opt.end_epoch()
    assert all(math.isclose(m.sigma.item(), 0.5 + 0.27) for m in model.delayed())
    # the same epochs as the config: unchanged
    same = dcls_optimisers(dcls_tiny(sig_end=0.5), 8)
    assert (same.sigma.decay_epochs, same.sigma.sig_end) == (2, 0.5)


# --------------------------------------------------------------------------- DCLS ablations
def test_dcls_no_delays_is_a_plain_linear_synapse_in_train_and_eval():
    model = dcls_tiny(delays="none")
    syns = [b.layer.synapse.synapse for b in model.blocks] + [model.readout]
    assert all(isinstance(s, Dense) and s.delay is None and s.sigma is None for s in syns)
    assert model.delayed() == []
    x = counts(12, 3, 5)
    train, evaluated = train_and_eval_outputs(model, x)
    assert torch.equal(train, evaluated)
    assert train.shape[0] == model.output_steps(12)
    # a plain synapse: the input of a step reaches the neurons in that very step
    syn = syns[0]
    assert torch.equal(syn.jumps(x), x @ syn.weight.t())
    opt = dcls_optimisers(model, 4)                 # trains: no delays, no sigma
    assert opt.delays is None and opt.sigma is None


def test_dcls_fixed_random_delays_are_one_tap_in_train_and_eval():
    model = dcls_tiny(delays="fixed_random")
    delayed = model.delayed()
    assert delayed and all(not d.delay_steps.requires_grad for d in delayed)
    assert all(torch.equal(d.delay_steps, torch.round(d.delay_steps)) for d in delayed)
    assert all(not isinstance(d.kernel, Gaussian) and d.sigma is None for d in delayed)
    x = counts(12, 3, 5)
    train, evaluated = train_and_eval_outputs(model, x)
    assert torch.equal(train, evaluated)
    opt = dcls_optimisers(model, 4)
    assert opt.delays is None
    # the delays are random (not all equal) and stay put
    steps = delayed[0].delay_steps.clone()
    assert steps.unique().numel() > 1
    opt.step()
    assert torch.equal(delayed[0].delay_steps, steps)


def test_dcls_learned_delays_differ_between_train_and_eval():
    # the full method: Gaussian in training, rounded one tap in evaluation (as in the paper)
    train, evaluated = train_and_eval_outputs(dcls_tiny(), counts(12, 3, 5))
    assert not torch.equal(train, evaluated)


def test_dcls_constant_sigma_has_no_schedule():
    model = dcls_tiny(delays="constant_sigma")
    assert all(math.isclose(m.sigma.item(), 0.5) for m in model.delayed())   # at construction
    assert all(m.delay_steps.requires_grad for m in model.delayed())
    opt = dcls_optimisers(model, 12)
    for _ in range(12):
        assert all(math.isclose(m.sigma.item(), 0.5) for m in model.delayed())
        opt.end_epoch()
    assert model.config.sigma_schedule().decay_epochs == 0
    with pytest.raises(ValueError, match="constant_sigma.*kernel"):
        DCLSConfig.shd(delays="constant_sigma", kernel="triangle")


def test_dcls_ablation_parameter_counts():
    # SEEDS A1.3: positions count (fixed or not); no delays: weights + BatchNorm only.
    assert count_parameters(DCLSNet(DCLSConfig.shd(delays="fixed_random"),
                                    dtype=torch.float32)) == 214_016
    assert count_parameters(DCLSNet(DCLSConfig.shd(delays="constant_sigma"),
                                    dtype=torch.float32)) == 214_016
    none = DCLSNet(DCLSConfig.shd(delays="none"), dtype=torch.float32)
    assert count_parameters(none) == 140 * 256 + 256 * 256 + 256 * 20 + 4 * 256   # 107,520


def test_dcls_fixed_gaussian_delays_are_refused():
    # learn_delay=False with the Gaussian kernel trains a smeared model and evaluates another
    with pytest.raises(ValueError, match="learn_delay.*delays="):
        DCLSConfig.shd(learn_delay=False)
    DCLSConfig.shd(learn_delay=False, kernel="rounded")         # same kernel in train and eval


def test_example_uses_the_no_delay_option():
    example = runpy.run_path(str(Path(__file__).parents[3] / "examples" / "dcls_delays.py"))
    assert example["make_config"](learn_delay=False, epochs=3).delays == "none"
    assert example["make_config"](learn_delay=True, epochs=3).delays == "learned"


# --------------------------------------------------------------------------- DelRec ablations
@pytest.mark.parametrize("mode", ["fixed_random", "none"])
def test_delrec_ablations_train_and_evaluate_the_same_model(mode):
    model = delrec_tiny(rec_delays=mode)
    rec = model.layers[1].recurrent
    assert not rec.delay_steps.requires_grad and float(rec.sigma) == 0.0
    assert torch.equal(rec.delay_steps, torch.round(rec.delay_steps))
    if mode == "none":
        assert torch.equal(rec.delay_steps, torch.zeros_like(rec.delay_steps))  # lag 1: RSNN
    else:
        assert rec.delay_steps.min() >= 1 and rec.delay_steps.unique().numel() > 1
    x = counts(40, 3, 14, p=0.4)
    train, evaluated = train_and_eval_outputs(model, x)
    assert torch.equal(train, evaluated)
    opt = delrec_optimisers(model, 5)
    assert opt.delays is None
    for e in range(5):
        opt.start_epoch(e)
        assert float(rec.sigma) == 0.0


def test_delrec_learned_delays_differ_between_train_and_eval():
    train, evaluated = train_and_eval_outputs(delrec_tiny(), counts(40, 3, 14, p=0.4))
    assert not torch.equal(train, evaluated)


def test_delrec_ablation_parameter_counts():
    full = DelRecNet(DelRecConfig.shd())
    for mode in ("fixed_random", "none"):
        # fixed delays are buffers: only the 256 learned delays of the full model go
        assert count_parameters(DelRecNet(DelRecConfig.shd(rec_delays=mode))) == 173_844 - 256
    assert count_parameters(full) == 173_844


# --------------------------------------------------------------------------- config fields
DCLS_BAD = [
    ("n_hidden", 8.5), ("n_in", 0), ("n_layers", 1.0), ("n_out", "3"), ("epochs", True),
    ("batch_size", -1), ("fan_in", 0), ("fan_in", 2.5), ("dt", 0.0), ("dt", float("nan")),
    ("tau", -1.0), ("max_delay", "x"), ("max_delay", 0.055), ("dropout", 1.0),
    ("dropout", -0.1), ("pad", 1), ("learn_weight", "yes"), ("learn_delay", None),
    ("delay_init", "normal"), ("delay_init", -1.0), ("delay_init", float("inf")),
    ("lr", 0.0), ("weight_decay", -1e-5), ("max_lr", float("inf")), ("lr_delay", "0.1"),
    ("sig_end", 0.0), ("surrogate_alpha", -5.0), ("threshold", 0.0),
    ("readout_threshold", float("nan")), ("kernel", 3), ("delays", "some"),
    ("kernel", "mexican_hat"),
]


@pytest.mark.parametrize(("field", "value"), DCLS_BAD)
def test_dcls_config_names_the_wrong_field(field, value):
    with pytest.raises((ValueError, TypeError), match=rf"\b{field}\b"):
        DCLSConfig.shd(**{field: value})


DELREC_BAD = [
    ("n_in", 8.5), ("n_out", 0), ("hidden", (256, 8.5)), ("hidden", 256), ("hidden", ()),
    ("recurrent", (False, 1)), ("recurrent", True), ("dt", -0.01), ("tau_steps", 0.0),
    ("reset", 0), ("batch_norm", "no"), ("bias", 1), ("ff_dropout", 1.5),
    ("dropout_position", "middle"), ("shared_dropout", None), ("rec_dropout", -0.2),
    ("readout", "spikes"), ("readout_threshold", 0.0), ("surrogate", "sigmoid"),
    ("surrogate_scale", float("nan")), ("detach_reset", 0), ("learn_width", "x"),
    ("delay_init", "normal"), ("delay_init_args", (30.0, 10.0)), ("delay_init_args", (-1.0, 3.0)),
    ("delay_init_args", ("a", 3.0)), ("sigma_init", -1.0), ("eval_mode", "exact"),
    ("clamp_delays", "yes"), ("epochs", 2.5), ("batch_size", 0), ("optimiser", "sgd"),
    ("lr", 0.0), ("weight_decay", -1.0), ("bn_weight_decay", float("nan")),
    ("delay_optimiser", "sgd"), ("lr_delay", -5e-2), ("delay_scheduler", "step"),
    ("rec_delays", "random"),
]


@pytest.mark.parametrize(("field", "value"), DELREC_BAD)
def test_delrec_config_names_the_wrong_field(field, value):
    with pytest.raises((ValueError, TypeError), match=rf"\b{field}\b"):
        DelRecConfig.shd(**{field: value})


def test_valid_configs_still_build():
    for cfg in (DCLSConfig.shd(), DCLSConfig.ssc(), DCLSConfig.gsc(n_layers=2),
                DCLSConfig.shd(fan_in=10, delay_init=0.03), DCLSConfig.shd(threshold=1)):
        assert cfg.kernel_size % 2 == 1
    for cfg in (DelRecConfig.shd(), DelRecConfig.ssc(), DelRecConfig.psmnist()):
        assert cfg.hidden
