"""The config format: shipped configs, validation errors (key path and file), overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from config_files import tiny_dcls, write_config
from hypothesis import given, settings
from hypothesis import strategies as st

from ctsnn.config import (
    ConfigError,
    build_data,
    build_model,
    config_from_dict,
    load_config,
    shipped_configs,
    validate_config,
)
from ctsnn.config.schema import apply_overrides, parse_overrides
from ctsnn.papers.dcls import DCLSConfig
from ctsnn.papers.delrec import DelRecConfig
from ctsnn.training import TrainerConfig, count_parameters

SHIPPED = shipped_configs()

#: SEEDS A1.3 / F1.11 (DCLS, weights + positions + BatchNorm) and B3 / F2.19 (DelRec)
PAPER_COUNTS = {
    "dcls_shd_2l": 214_016,
    "dcls_ssc_2l": 705_536,
    "dcls_ssc_3l": 1_230_848,
    "delrec_shd": 173_844,
    "delrec_ssc": 374_819,
    "delrec_psmnist": 156_154,
}


def test_every_paper_experiment_is_shipped():
    names = set(SHIPPED)
    dcls = {f"dcls_{d}_{v}" for d in ("shd", "ssc") for v in (
        "nodelay", "fixed_random", "constant_sigma", "fixed_weights", "sparse10_learned",
        "sparse10_nodelay", "sparse10_fixed_random", "sparse10_constant_sigma",
        "sparse10_fixed_weights")} | {"dcls_shd_2l", "dcls_ssc_2l", "dcls_ssc_3l"}
    delrec = {"delrec_shd", "delrec_shd_rec_ff", "delrec_ssc", "delrec_psmnist",
              "delrec_shd_small_rec", "delrec_shd_small_fixed_rec", "delrec_shd_small_rsnn",
              "delrec_shd_small_snn", "delrec_shd_small_ff", "delrec_shd_small_rec_ff"}
    eventprop = {"eventprop_sequence", "eventprop_yinyang", "eventprop_shd_rec",
                 "eventprop_shd_ff", "eventprop_ssc_ff", "eventprop_braille_ff",
                 "eventprop_braille_ff256"}
    assert dcls | delrec | eventprop <= names


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_config_validates_and_builds(name):
    cfg = load_config(name)
    assert cfg.experiment.name == name
    target = cfg.experiment.target
    assert target is not None and target.source
    assert target.value is not None or target.note       # a number, or why there is none
    model = build_model(cfg)
    assert count_parameters(model) > 0
    if name in PAPER_COUNTS:
        assert count_parameters(model) == PAPER_COUNTS[name]
    # the resolved form reads back to the same config
    again = config_from_dict(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict()
    assert again.model == cfg.model and again.train == cfg.train


def test_presets_are_the_papers_settings():
    assert load_config("dcls_ssc_2l").model == DCLSConfig.ssc(n_layers=2, epochs=60,
                                                               batch_size=128)
    assert load_config("dcls_shd_2l").model == DCLSConfig.shd()
    assert load_config("delrec_ssc").model == DelRecConfig.ssc()
    assert load_config("delrec_psmnist").model == DelRecConfig.psmnist()


@pytest.mark.parametrize("dataset", ["shd", "ssc"])
@pytest.mark.parametrize("sparse", [False, True])
def test_dcls_no_delay_ablation_has_the_full_models_parameter_count(dataset, sparse):
    mid = "sparse10_" if sparse else ""
    full = "sparse10_learned" if sparse else {"shd": "2l", "ssc": "2l"}[dataset]
    n_full = count_parameters(build_model(load_config(f"dcls_{dataset}_{full}")),
                              active_only=True)
    n_none = count_parameters(build_model(load_config(f"dcls_{dataset}_{mid}nodelay")),
                              active_only=True)
    assert abs(n_none - n_full) / n_full < 2e-3


def test_delrec_rec_ff_has_the_papers_size():
    # DelRec Table 2: rec + ff 0.24 M = rec-only 173,844 + 256 x 256 feed-forward delays
    assert count_parameters(build_model(load_config("delrec_shd_rec_ff"))) == 173_844 + 256 * 256


def test_delrec_equal_budget_configs_have_about_10k_parameters():
    for key in ("rec", "fixed_rec", "rsnn", "ff", "rec_ff"):
        assert 9_500 < count_parameters(build_model(load_config(f"delrec_shd_small_{key}"))) \
            < 10_500
    assert 10_500 < count_parameters(build_model(load_config("delrec_shd_small_snn"))) < 11_500


def _errors(tmp_path: Path, data: dict, overrides=()) -> str:
    path = write_config(tmp_path / "c.yaml", data)
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides)
    msg = str(err.value)
    assert str(path) in msg
    return msg


@pytest.mark.parametrize("section,key", [("model", "n_hiden"), ("train", "epoch"),
                                         ("data", "rot"), ("experiment", "titel")])
def test_unknown_key_names_file_and_key_path(tmp_path, section, key):
    data = tiny_dcls(None)
    data[section][key] = 1
    assert f"{section}.{key}" in _errors(tmp_path, data)


@pytest.mark.parametrize("section,key,value", [
    ("model", "n_hidden", "many"), ("train", "epochs", "abc"), ("train", "progress", "maybe"),
    ("data", "val_fraction", "x"), ("model", "dropout", 3.0), ("model", "n_layers", 0),
    ("train", "lr_delay", -1.0),
])
def test_wrong_type_or_value_names_file_and_key_path(tmp_path, section, key, value):
    data = tiny_dcls(None)
    data[section][key] = value
    assert f"{section}.{key}" in _errors(tmp_path, data)


def test_override_errors_name_the_override(tmp_path):
    msg = _errors(tmp_path, tiny_dcls(None), ["train.epochs=abc"])
    assert "train.epochs" in msg and "override 'train.epochs=abc'" in msg
    msg = _errors(tmp_path, tiny_dcls(None), ["model.n_hiden=3"])
    assert "model.n_hiden" in msg and "override" in msg


def test_overrides_are_applied_and_validated(tmp_path):
    path = write_config(tmp_path / "c.yaml", tiny_dcls(None))
    cfg = load_config(path, ["train.epochs=3", "model.n_hidden=128", "data.root=/x"])
    assert cfg.train.epochs == 3 and cfg.model.epochs == 3
    assert cfg.model.n_hidden == 128 and cfg.data.root == "/x"
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_overrides(["train.epochs"])
    with pytest.raises(ConfigError, match="unknown section 'trian'"):
        parse_overrides(["trian.epochs=3"])


def test_an_override_key_given_twice_is_an_error(tmp_path):
    path = write_config(tmp_path / "c.yaml", tiny_dcls(None))
    with pytest.raises(ConfigError, match="'model.n_hidden=64' and 'model.n_hidden=107' both "
                                          "set 'model.n_hidden'"):
        load_config(path, ["model.n_hidden=64", "train.epochs=2", "model.n_hidden=107"])
    # the same value twice is still two settings of one key
    with pytest.raises(ConfigError, match="both set 'train.epochs'"):
        parse_overrides(["train.epochs=2", "train.epochs=2"])


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 10_000), st.floats(0.0, 0.99, allow_nan=False))
def test_override_values_round_trip(n, p):
    raw = apply_overrides(tiny_dcls(None), parse_overrides(
        [f"model.n_hidden={n}", f"model.dropout={p!r}"]))
    cfg = validate_config(raw, "mem.yaml")
    assert cfg.model.n_hidden == n and cfg.model.dropout == p


def test_conflicts_are_errors(tmp_path):
    data = tiny_dcls(None)
    data["train"]["lr"] = 0.5          # the DCLS recipe decides the optimisers
    assert "train.lr" in _errors(tmp_path, data)
    data = tiny_dcls(None)
    data["model"]["epochs"] = 5        # the run length lives in train
    assert "model.epochs" in _errors(tmp_path, data)
    data = tiny_dcls(None)
    data["train"]["val_fraction"] = 0.1  # validation is the data section's
    assert "train.val_fraction" in _errors(tmp_path, data)
    data = tiny_dcls(None)
    data["model"]["n_in"] = 700        # the dcls recipe pools 700 -> 140 channels
    assert "model.n_in" in _errors(tmp_path, data)
    data = tiny_dcls(None)
    data["data"]["recipe"] = None      # DCLS takes rasters
    assert "data.recipe" in _errors(tmp_path, data)
    data = tiny_dcls(None)
    data["model"]["preset"] = "psmnist"  # not a DCLS preset
    assert "model.preset" in _errors(tmp_path, data)


def test_train_section_is_the_trainer_config():
    cfg = load_config("eventprop_shd_rec")
    assert isinstance(cfg.train, TrainerConfig)
    raw = yaml.safe_load(Path(SHIPPED["eventprop_shd_rec"]).read_text())
    assert cfg.train == TrainerConfig(**raw["train"])
    assert {f.name for f in dataclasses.fields(TrainerConfig)} == set(cfg.to_dict()["train"])


def test_data_needing_user_files_is_built_lazily(tmp_path):
    cfg = load_config("dcls_shd_2l")   # validates and builds the model without data
    build_model(cfg)
    with pytest.raises(ConfigError, match="data.root"):
        build_data(cfg)
    with pytest.raises(ConfigError, match="shd_train.h5"):
        build_data(cfg, tmp_path)


def test_bad_yaml_and_missing_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("experiment: [\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="nope.yaml: cannot read"):
        load_config(tmp_path / "nope.yaml")
