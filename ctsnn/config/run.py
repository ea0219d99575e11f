"""Run a validated config with the :class:`~ctsnn.training.Trainer`, and evaluate its
checkpoints (``ctsnn train`` / ``ctsnn eval``).

A run directory holds the trainer's files (``run.json``, ``last.pt``, ``best.pt``, logs,
``final.json``) and ``experiment.json``: the fully resolved config. Training into a directory
that already holds a run continues it only if its config is the same (apart from settings that
do not change the result: progress bar, device, checkpoint interval, data workers, data
location); anything else is an error listing the differences. Nothing already written is
overwritten.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from ..training import Trainer, TrainerConfig, aggregate
from ..training.checkpoint import atomic_write_text, check_fingerprint, load_checkpoint
from ..training.trainer_config import RESUMABLE_CHANGES
from .build import build_data, build_model, loss_and_prediction, optimiser_recipe
from .schema import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    load_config,
    parse_overrides,
)

#: the resolved config of a run directory
EXPERIMENT_FILE = "experiment.json"
#: keys that may differ when a run is continued (where the data is; how the run is shown)
RESUMABLE_KEYS = (("data", "root"), ("data", "cache_dir"),
                  *(("train", k) for k in RESUMABLE_CHANGES))


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def config_differences(old: dict[str, Any], new: dict[str, Any], *,
                       ignore: tuple[tuple[str, ...], ...] = ()) -> list[str]:
    """``"key: old value -> new value"`` for every differing key of two resolved configs."""
    a, b = _flatten(old), _flatten(new)
    skip = {".".join(k) for k in ignore}
    missing = object()
    return [f"{k}: {a.get(k, missing)!r} -> {b.get(k, missing)!r}".replace(
                repr(missing), "(absent)")
            for k in sorted(set(a) | set(b)) if k not in skip and a.get(k, missing) !=
            b.get(k, missing)]


def _check_run_dir(out: Path, record: dict[str, Any]) -> bool:
    """``True`` if ``out`` holds this experiment's run (continue it), ``False`` if it is new or
    empty; an error for another run or foreign files."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory")
    path = out / EXPERIMENT_FILE
    if path.is_file():
        saved = json.loads(path.read_text())
        diff = config_differences(saved, record, ignore=RESUMABLE_KEYS)
        if diff:
            raise ConfigError(f"{out} holds a run of another config ({path}); choose a new "
                              "--out or use the same config. Differences (run -> now):\n  "
                              + "\n  ".join(diff))
        return True
    if any(out.iterdir()):
        raise ConfigError(f"{out} is not empty and holds no {EXPERIMENT_FILE}: not a ctsnn "
                          "train run directory; refusing to write into it")
    return False


def train_experiment(cfg: ExperimentConfig, out_dir: str | os.PathLike | None = None, *,
                     data_root: str | os.PathLike | None = None,
                     resume: bool | None = None) -> dict[str, Any]:
    """Train ``cfg`` into ``out_dir`` (default ``runs/<experiment name>``), or continue the run
    there; returns the trainer's final metrics. ``resume``: as for
    :class:`~ctsnn.training.Trainer` (``True`` also returns a finished run's metrics)."""
    out = Path(out_dir) if out_dir is not None else Path("runs") / cfg.experiment.name
    record = cfg.to_dict()
    if data_root is not None:
        record["data"]["root"] = os.fspath(data_root)
    resuming = _check_run_dir(out, record)
    data = build_data(cfg, data_root)           # errors about the data before writing
    model = build_model(cfg)
    loss_fn, predict_fn = loss_and_prediction(cfg, model)
    trainer = Trainer(model, data.train, cfg.train, out_dir=out, val_set=data.valid,
                      test_set=data.test, collate_fn=data.collate, loss_fn=loss_fn,
                      predict_fn=predict_fn, optimiser_recipe=optimiser_recipe(cfg),
                      metadata={"experiment": record}, resume=resume)  # writes nothing yet
    if not resuming:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps(record, indent=1), out / EXPERIMENT_FILE)
    return trainer.fit()


def train_seeds(cfg: ExperimentConfig, seeds: list[int] | tuple[int, ...],
                out_dir: str | os.PathLike | None = None, *,
                data_root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train ``cfg`` once per seed (``train.seed``; data split and augmentation follow it)
    into ``<out_dir>/seed<k>`` (default ``runs/<experiment name>``): each an ordinary run
    (continued if interrupted, reused if finished). Like
    :func:`ctsnn.training.seed_sweep`, returns and writes to ``<out_dir>/sweep.json``
    ``{"seeds", "runs": {seed: final metrics}, "aggregate"}`` (:func:`ctsnn.training.aggregate`:
    mean, sample std, sem per metric).
    """
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct, got {seeds!r}")
    base = Path(out_dir) if out_dir is not None else Path("runs") / cfg.experiment.name
    runs: dict[int, dict[str, Any]] = {}
    for seed in seeds:
        one = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))
        run_dir = base / f"seed{seed}"
        resume = True if (run_dir / "last.pt").exists() else None
        runs[seed] = train_experiment(one, run_dir, data_root=data_root, resume=resume)
    result = {"seeds": seeds, "runs": {str(s): r for s, r in runs.items()},
              "aggregate": aggregate([runs[s] for s in seeds])}
    atomic_write_text(json.dumps(result, indent=1), base / "sweep.json")
    return result


def _saved_config(ckpt: dict[str, Any], path: Path) -> dict[str, Any]:
    record = (ckpt.get("metadata") or {}).get("experiment")
    if not isinstance(record, dict):
        raise ConfigError(f"{path}: the checkpoint holds no experiment config (it was not "
                          "written by ctsnn train)")
    return record


def evaluate_checkpoint(path: str | os.PathLike, *, split: str = "test",
                        data_root: str | os.PathLike | None = None,
                        config: str | os.PathLike | None = None,
                        overrides: tuple[str, ...] | list[str] = (),
                        device: str = "cpu") -> dict[str, Any]:
    """Evaluate a ``ctsnn train`` checkpoint (``best.pt`` / ``last.pt``) on a split.

    The model is rebuilt from the config stored in the checkpoint. ``config`` (a file or a
    shipped name) and ``overrides`` may change the data (another root, a different split
    setting) but not the model: a different architecture is refused with the differences.
    """
    path = Path(path)
    if split not in ("train", "valid", "test"):
        raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
    ckpt = load_checkpoint(path)
    saved = _saved_config(ckpt, path)
    if config is not None:
        cfg = load_config(config, overrides)
        where = cfg.source
    else:
        ov = parse_overrides(overrides)
        cfg = config_from_dict(apply_overrides(copy.deepcopy(saved), ov), str(path))
        where = "the overrides"
    diff = config_differences({"model": saved["model"]}, {"model": cfg.to_dict()["model"]})
    if diff:
        raise ConfigError(f"{path} holds a {saved['model']['kind']} model of another "
                          f"architecture (model config) than {where}; differences "
                          f"(checkpoint -> {where}):\n  " + "\n  ".join(diff))
    model = build_model(cfg)
    check_fingerprint(ckpt["fingerprint"], model, path)
    model.load_state_dict(ckpt["model"])
    data = build_data(cfg, data_root)
    dataset = {"train": data.train, "valid": data.valid, "test": data.test}[split]
    if dataset is None:
        raise ConfigError(f"{cfg.source}: the {split} split is not available for this data")
    loss_fn, predict_fn = loss_and_prediction(cfg, model)
    tcfg = cfg.train
    settings = TrainerConfig(batch_size=tcfg.batch_size, eval_batch_size=tcfg.eval_batch_size,
                             rounded_eval=tcfg.rounded_eval, progress=False, device=device)
    trainer = Trainer(model, dataset, settings, out_dir=path.parent, collate_fn=data.collate,
                      loss_fn=loss_fn, predict_fn=predict_fn)     # writes nothing
    metrics = trainer.evaluate(dataset)
    return {"checkpoint": str(path), "experiment": saved["experiment"]["name"], "split": split,
            "epoch": ckpt.get("epoch"), "metrics": metrics,
            "target": saved["experiment"].get("target")}


__all__ = ["EXPERIMENT_FILE", "config_differences", "evaluate_checkpoint", "train_experiment",
           "train_seeds"]
