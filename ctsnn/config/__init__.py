"""Experiment configs: YAML files validated with pydantic, built into runs of the trainer.

* :mod:`ctsnn.config.schema` — the format (:func:`load_config`, :func:`validate_config`,
  :class:`ExperimentConfig`, :class:`ConfigError`), command-line overrides.
* :mod:`ctsnn.config.build` — config -> model, data sets, collate, loss, optimiser recipe.
* :mod:`ctsnn.config.run` — :func:`train_experiment` (``ctsnn train``), :func:`train_seeds`
  (``ctsnn train --seeds``) and
  :func:`evaluate_checkpoint` (``ctsnn eval``).
* :mod:`ctsnn.config.eventprop` — the EventProp-with-delays networks
  (:class:`EventPropConfig`, :class:`EventPropNet`).
* :mod:`ctsnn.config.shipped` — the configs of the three papers shipped in ``ctsnn/configs``.

docs/configs.md lists the shipped configs and documents every key.
"""

from .build import DataSets, build_data, build_model, loss_and_prediction, optimiser_recipe
from .eventprop import EventPropConfig, EventPropNet
from .run import config_differences, evaluate_checkpoint, train_experiment, train_seeds
from .schema import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    load_config,
    parse_overrides,
    validate_config,
)
from .shipped import configs_dir, resolve_config_path, shipped_configs

__all__ = [
    "ConfigError", "DataSets", "EventPropConfig", "EventPropNet", "ExperimentConfig",
    "apply_overrides", "build_data", "build_model", "config_differences", "config_from_dict",
    "configs_dir", "evaluate_checkpoint", "load_config", "loss_and_prediction",
    "optimiser_recipe", "parse_overrides", "resolve_config_path", "shipped_configs",
    "train_experiment", "train_seeds", "validate_config",
]
