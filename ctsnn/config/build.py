"""From a validated config to the pieces a run needs.

:func:`build_model` makes the network (no data needed); :func:`build_data` opens the data sets
(lazily: only when called, so configs that need the user's files validate and build their
models without them); :func:`build_experiment` gathers everything the
:class:`~ctsnn.training.Trainer` takes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..data import (
    RECIPES,
    SHD,
    SSC,
    Braille,
    DelRecAugmented,
    EventCollate,
    EventPropAugmented,
    MelRecipe,
    PaddedCollate,
    PermutedSequentialMNIST,
    SpeechCommands,
    SpikesDataset,
    YinYang,
    collate_sequences,
    sequence_detection,
    speaker_split,
)
from ..data.events import collate_events
from ..losses import summed_softmax_cross_entropy, summed_softmax_prediction
from ..papers.dcls import DCLSNet, dcls_optimisers
from ..papers.delrec import DelRecNet, delrec_optimisers
from ..training import WeightDelayOptimiser
from .delrec_ff import add_feedforward_delays
from .eventprop import EventPropNet
from .schema import ConfigError, ExperimentConfig

#: the files of each HDF5 data set, by split
H5_FILES = {
    "shd": {"train": "shd_train.h5", "test": "shd_test.h5"},
    "ssc": {"train": "ssc_train.h5", "valid": "ssc_valid.h5", "test": "ssc_test.h5"},
}
SPLITS = ("train", "valid", "test")


# --------------------------------------------------------------------------- model
def build_model(cfg: ExperimentConfig, *, seed: int | None = None) -> nn.Module:
    """The network of ``cfg`` (parameters drawn from ``seed``, default ``cfg.train.seed``)."""
    seed = cfg.train.seed if seed is None else seed
    gen = torch.Generator().manual_seed(seed)
    if cfg.model_kind == "dcls":
        return DCLSNet(cfg.model, generator=gen)
    if cfg.model_kind == "delrec":
        torch.manual_seed(seed)           # DelRecNet draws from the global generator
        net = DelRecNet(cfg.model)
        ff = cfg.model_extra.get("ff_delays", ())
        if ff:
            max_delay = cfg.model_extra["ff_max_delay_steps"] * cfg.model.dt
            add_feedforward_delays(net, ff, max_delay, generator=gen)
        return net
    return EventPropNet(cfg.model, generator=gen)


def loss_and_prediction(cfg: ExperimentConfig, model: nn.Module) -> tuple[
        Callable[[Tensor, Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """``(loss(output, labels), predict(output) -> classes [B])`` of the model's readout."""
    if cfg.model_kind == "dcls":
        return summed_softmax_cross_entropy, summed_softmax_prediction
    return model.loss, model.predict


def optimiser_recipe(cfg: ExperimentConfig) -> Callable[[nn.Module, int],
                                                         WeightDelayOptimiser] | None:
    """The paper's optimisers and schedules as ``recipe(model, epochs)``, or ``None`` (the
    trainer's own, from the ``train`` section: EventProp)."""
    m = cfg.model
    if cfg.model_kind == "dcls":
        def dcls(model: nn.Module, epochs: int) -> WeightDelayOptimiser:
            return dcls_optimisers(model, epochs, lr=m.lr, weight_decay=m.weight_decay,
                                   max_lr=m.max_lr, lr_delay=m.lr_delay)
        return dcls
    if cfg.model_kind == "delrec":
        def delrec(model: nn.Module, epochs: int) -> WeightDelayOptimiser:
            return delrec_optimisers(model, epochs)
        return delrec
    return None


# --------------------------------------------------------------------------- collate
class RasterCollate:
    """``(raster [T_i, C], label)`` items -> ``(x [T, B, C], labels [B])`` (right zero-padding
    to the longest item, :class:`~ctsnn.data.PaddedCollate`)."""

    def __init__(self) -> None:
        self._pad = PaddedCollate()

    def __call__(self, batch: Sequence[tuple[Tensor, int]]) -> tuple[Tensor, Tensor]:
        x, y, _ = self._pad(batch)
        return x, y


class ClippedEventCollate:
    """Exact-event items ``(times [E] s, units [E], label)`` -> ``(Spikes, labels [B])`` on a
    grid of step ``dt`` up to ``t_max`` (events at ``t >= t_max`` dropped; ``None``: up to the
    batch's last event)."""

    def __init__(self, n_units: int, dt: float, t_max: float | None) -> None:
        self.t_max = t_max
        self._collate = EventCollate(n_units=n_units, dt=dt, t_max=t_max)

    def __call__(self, batch: Sequence[tuple[Tensor, Tensor, Any]]) -> tuple[Any, Tensor]:
        if self.t_max is not None:
            batch = [(t[t < self.t_max], u[t < self.t_max], y) for t, u, y in batch]
        return self._collate(batch)


class EventGridCollate:
    """Exact-event items on a fixed grid (``dt``, ``n_steps``, ``n_units``), times kept."""

    def __init__(self, dt: float, n_steps: int, n_units: int,
                 dtype: torch.dtype | None = None) -> None:
        self.dt, self.n_steps, self.n_units = dt, n_steps, n_units
        self.dtype = dtype or torch.get_default_dtype()

    def __call__(self, items: Sequence[tuple[Tensor, Tensor, Any]]) -> tuple[Any, Tensor]:
        items = [(torch.as_tensor(t).to(self.dtype), u, y) for t, u, y in items]
        return collate_events(items, dt=self.dt, n_steps=self.n_steps, n_units=self.n_units)


class YinYangCollate:
    """Latency-encode ``(features [4], label)`` items in the model's dtype."""

    def __init__(self, dataset: YinYang, dtype: torch.dtype | None = None) -> None:
        self.dataset, self.dtype = dataset, dtype or torch.get_default_dtype()

    def __call__(self, items: Sequence[tuple[Tensor, Tensor]]) -> tuple[Any, Tensor]:
        x = torch.stack([torch.as_tensor(it[0]) for it in items]).to(self.dtype)
        y = torch.stack([torch.as_tensor(it[1]) for it in items]).to(torch.int64)
        return self.dataset.encode(x), y


# --------------------------------------------------------------------------- data
@dataclasses.dataclass
class DataSets:
    """The data of a run. ``valid`` is ``None`` when the trainer carves it from ``train``."""

    train: Dataset
    valid: Dataset | None
    test: Dataset | None
    collate: Callable[[Sequence[Any]], Any]


def _root(cfg: ExperimentConfig, root: str | os.PathLike | None) -> Path:
    value = root if root is not None else getattr(cfg.data, "root", None)
    if value is None:
        raise ConfigError(f"{cfg.source}: data.root: the {cfg.data.kind} data is not shipped; "
                          f"give its folder (data.root=DIR, or --data DIR)")
    path = Path(os.path.expanduser(os.fspath(value)))
    if not path.exists():
        raise ConfigError(f"{cfg.source}: data.root: {path} does not exist")
    return path


def _heidelberg(cfg: ExperimentConfig, root: Path) -> DataSets:
    d, kind = cfg.data, cfg.data.kind
    cls = SHD if kind == "shd" else SSC
    recipe = RECIPES[d.recipe] if d.recipe is not None else None
    files = {split: getattr(d, f"{split}_file") or name for split, name in H5_FILES[kind].items()}
    if d.valid_file is not None:
        files["valid"] = d.valid_file

    def open_split(split: str) -> Dataset:
        if split not in files:
            raise ConfigError(f"{cfg.source}: data.validation: {kind.upper()} has no official "
                              "validation file (set data.valid_file)")
        path = root / files[split]
        if not path.is_file():
            raise ConfigError(f"{cfg.source}: data.root: {root} has no {files[split]} (the "
                              f"{kind.upper()} {split} file)")
        return cls(path, recipe, cache_dir=d.cache_dir)

    train, test = open_split("train"), open_split("test")
    if d.validation == "official":
        valid = open_split("valid")
    elif d.validation == "test":
        valid = test                       # the DCLS protocol (SEEDS A3): test as validation
    else:
        train, valid = speaker_split(train, d.val_fraction, cfg.train.seed)
    if d.augment == "delrec":
        train = DelRecAugmented(train, 100 if d.max_shift is None else d.max_shift,
                                p=d.blend_p, seed=cfg.train.seed)
    elif d.augment == "eventprop":
        train = EventPropAugmented(train, None, 40 if d.max_shift is None else d.max_shift,
                                   n_blend=d.n_blend, p=d.blend_p,
                                   t_max=1.0 if d.t_max is None else d.t_max,
                                   seed=cfg.train.seed)
    if recipe is not None:
        collate: Callable = RasterCollate()
    else:
        collate = ClippedEventCollate(700, cfg.model.dt, d.t_max)
    return DataSets(train, valid, test, collate)


def _braille(cfg: ExperimentConfig, root: Path) -> DataSets:
    d = cfg.data
    path = root / d.file if root.is_dir() else root
    sets = {s: Braille(path, s, fractions=d.fractions, seed=d.seed, dt=d.dt,
                       max_time=d.max_time) for s in SPLITS}
    n_steps = max(s.n_steps for s in sets.values())
    collate = EventGridCollate(d.dt, n_steps, sets["train"].n_channels)
    return DataSets(sets["train"], sets["valid"], sets["test"], collate)


def _gsc(cfg: ExperimentConfig, root: Path) -> DataSets:
    d = cfg.data
    recipe = MelRecipe(f_max=d.f_max)
    sets = {split: SpeechCommands(root, split, recipe=recipe, cache_dir=d.cache_dir)
            for split in ("training", "validation", "testing")}
    return DataSets(sets["training"], sets["validation"], sets["testing"], RasterCollate())


def build_data(cfg: ExperimentConfig, root: str | os.PathLike | None = None) -> DataSets:
    """Open the data sets of ``cfg`` (``root`` overrides ``data.root``)."""
    d = cfg.data
    if d.kind == "gsc":
        return _gsc(cfg, _root(cfg, root))
    if d.kind in ("shd", "ssc"):
        return _heidelberg(cfg, _root(cfg, root))
    if d.kind == "braille":
        return _braille(cfg, _root(cfg, root))
    if d.kind == "psmnist":
        path = _root(cfg, root)
        sets = {s: PermutedSequentialMNIST(path, s, protocol=d.protocol, seed=d.seed,
                                           valid_fraction=d.valid_fraction) for s in SPLITS}
        return DataSets(sets["train"], sets["valid"], sets["test"], collate_sequences)
    if d.kind == "yinyang":
        kw = dict(t_early=d.t_early, t_late=d.t_late, dt=d.dt, n_steps=d.n_steps)
        train = YinYang("train", **kw)
        return DataSets(train, YinYang("validation", **kw), YinYang("test", **kw),
                        YinYangCollate(train))
    # the sequence-detection task: the four trials are training, validation and test set
    spikes, labels = sequence_detection(list(d.labels), gap=d.gap, dt=d.dt, n_steps=d.n_steps,
                                        dtype=torch.get_default_dtype())
    ds = SpikesDataset(spikes, labels)
    return DataSets(ds, ds, ds, ds.collate)


__all__ = [
    "ClippedEventCollate", "DataSets", "EventGridCollate", "H5_FILES", "RasterCollate",
    "YinYangCollate", "build_data", "build_model", "loss_and_prediction", "optimiser_recipe",
]
