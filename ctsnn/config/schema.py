"""The experiment config format: YAML files validated with pydantic.

A config has four sections (docs/configs.md has the reference):

* ``experiment`` — ``name``, ``paper`` (``dcls`` / ``delrec`` / ``eventprop``), ``description``
  and ``target``: the paper's reported number (``value``, ``std``, ``metric``, ``source`` such as
  "Table 2", ``n_seeds``, ``note``).
* ``data`` — one of the dataset kinds (``shd``, ``ssc``, ``gsc``, ``yinyang``, ``psmnist``,
  ``braille``, ``sequence``) with its options (root folder, binning recipe, validation,
  augmentation).
* ``model`` — ``kind`` (``dcls``, ``delrec``, ``eventprop``), an optional ``preset`` (the
  paper's settings: ``DCLSConfig.shd()`` ...), and any field of the matching dataclass
  (:class:`~ctsnn.papers.dcls.DCLSConfig`, :class:`~ctsnn.papers.delrec.DelRecConfig`,
  :class:`~ctsnn.config.eventprop.EventPropConfig`) — the fields are read from the dataclass,
  so there is one definition of each. ``epochs`` and ``batch_size`` come from ``train``.
* ``train`` — validated as :class:`ctsnn.training.TrainerConfig` (unknown keys and wrong types
  are errors).

Every error is a :class:`ConfigError` whose message starts with the file and names the key
path (``shd.yaml: model.n_hidden: Input should be a valid integer``). Command-line overrides
``section.key=value`` (values parsed as YAML) are applied before validation and reported as
such in errors.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from ..data import RECIPES
from ..papers.dcls import DCLSConfig
from ..papers.delrec import DelRecConfig
from ..training import TrainerConfig
from ..training.trainer_config import OPTIMISER_FIELDS
from .eventprop import EventPropConfig
from .shipped import resolve_config_path

SECTIONS = ("experiment", "data", "model", "train")


class ConfigError(ValueError):
    """An invalid config: the message names the file (or override) and the key path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- experiment
class Target(_Strict):
    """The paper's number a config reproduces."""

    value: float | None = Field(None, description="reported value (percent), None if only "
                                                  "plotted")
    std: float | None = None
    metric: str = "test_accuracy"
    source: str = Field(..., description="where the paper reports it, e.g. 'Table 2'")
    n_seeds: int | None = None
    note: str = ""


class ExperimentSection(_Strict):
    name: str
    paper: Literal["dcls", "delrec", "eventprop", "none"]
    description: str = ""
    target: Target | None = None


# --------------------------------------------------------------------------- data
class HeidelbergData(_Strict):
    """SHD / SSC HDF5 files ``{shd,ssc}_{train,valid,test}.h5`` in ``root``."""

    kind: Literal["shd", "ssc"]
    root: str | None = None
    recipe: str | None = Field(None, description="binning recipe (ctsnn.data.RECIPES) for "
                                                 "raster models; None: exact events")
    validation: Literal["train_split", "official", "test"] = "train_split"
    val_fraction: float = Field(0.2, gt=0, lt=1, description="train_split: share of the "
                                "speakers held out")
    augment: Literal["none", "delrec", "eventprop"] = "none"
    max_shift: int | None = None
    n_blend: int = 0
    blend_p: float = 0.5
    t_max: float | None = Field(None, description="exact events: grid end (s); later events "
                                                  "are dropped")
    cache_dir: str | None = None
    train_file: str | None = Field(None, description="file names in root (default: "
                                   "{kind}_train.h5, {kind}_valid.h5, {kind}_test.h5)")
    valid_file: str | None = None
    test_file: str | None = None


class YinYangData(_Strict):
    kind: Literal["yinyang"]
    t_early: float = 1.5e-3
    t_late: float = 20e-3
    n_steps: int | None = 30
    dt: float = 1e-3


class PSMNISTData(_Strict):
    kind: Literal["psmnist"]
    root: str | None = None
    protocol: Literal["auto", "full", "reduced"] = "auto"
    valid_fraction: float = 0.17
    seed: int = 0


class BrailleData(_Strict):
    kind: Literal["braille"]
    root: str | None = Field(None, description="the Braille event pickle (or a folder "
                                               "holding `file`)")
    file: str = "data_braille_letters_th1.pkl"
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0
    dt: float = 1e-3
    max_time: float | None = None


class SequenceData(_Strict):
    """SEEDS D5: four trials ``labels``, ``gap`` s between the two input spikes."""

    kind: Literal["sequence"]
    labels: tuple[int, ...] = (0, 1, 0, 1)
    gap: float = 0.010
    dt: float = 1e-3
    n_steps: int = 25


class GSCData(_Strict):
    """Google Speech Commands v0.02 (SEEDS D2): the word folders and split lists in ``root``,
    DCLS's log-mel features (:class:`~ctsnn.data.MelRecipe`)."""

    kind: Literal["gsc"]
    root: str | None = None
    f_max: Literal["reference", "nyquist"] = Field(
        "reference", description="mel range top: the reference's 14 kHz (above the 4 kHz "
                                 "Nyquist frequency, as DCLS) or 4 kHz")
    cache_dir: str | None = None


DataSection = typing.Annotated[
    HeidelbergData | YinYangData | PSMNISTData | BrailleData | SequenceData | GSCData,
    Field(discriminator="kind"),
]


class _Top(_Strict):
    experiment: ExperimentSection
    data: DataSection
    model: dict[str, Any]
    train: TrainerConfig = Field(default_factory=TrainerConfig)


# --------------------------------------------------------------------------- model sections
#: model kind -> (config dataclass, presets)
MODEL_KINDS: dict[str, tuple[type, dict[str, Callable[..., Any]]]] = {
    "dcls": (DCLSConfig, {"shd": DCLSConfig.shd, "ssc": DCLSConfig.ssc,
                          "ssc2": lambda: DCLSConfig.ssc(n_layers=2), "gsc": DCLSConfig.gsc}),
    "delrec": (DelRecConfig, {"shd": DelRecConfig.shd, "ssc": DelRecConfig.ssc,
                              "psmnist": DelRecConfig.psmnist}),
    "eventprop": (EventPropConfig, {}),
}
#: model keys beyond the dataclass fields: name -> (type, default). DelRec's feed-forward
#: delays (:mod:`ctsnn.config.delrec_ff`): hidden layers whose input synapse gets learnable
#: delays, and their longest delay in steps (DelRec's code: kernel 25 taps, delays 0..24).
MODEL_EXTRAS: dict[str, dict[str, tuple[Any, Any]]] = {
    "delrec": {"ff_delays": (tuple[int, ...], ()), "ff_max_delay_steps": (int, 24)},
}
#: fields owned by the ``train`` section (the run length), never set in ``model``
FROM_TRAIN = ("epochs", "batch_size")
#: trainer fields the data section decides (validation data)
FROM_DATA = ("val_fraction", "val_split")


def _model_schema(kind: str) -> type[BaseModel]:
    cls, presets = MODEL_KINDS[kind]
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {
        f.name: (hints[f.name], None) for f in dataclasses.fields(cls)
        if f.name not in FROM_TRAIN
    }
    for name, (hint, _) in MODEL_EXTRAS.get(kind, {}).items():
        fields[name] = (hint, None)
    fields["kind"] = (Literal[kind], ...)
    if presets:
        fields["preset"] = (Literal[tuple(presets)] | None, None)  # type: ignore[valid-type]
    return create_model(f"{cls.__name__}Section", __config__=ConfigDict(extra="forbid"),
                        **fields)


_MODEL_SCHEMAS = {kind: _model_schema(kind) for kind in MODEL_KINDS}


# --------------------------------------------------------------------------- resolved config
@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A validated config.

    Attributes:
        experiment, data: the validated sections.
        model_kind: ``"dcls"``, ``"delrec"`` or ``"eventprop"``.
        model: the model's config dataclass, run length from ``train``.
        model_extra: the model keys beyond the dataclass (:data:`MODEL_EXTRAS`), resolved.
        train: the :class:`ctsnn.training.TrainerConfig`.
        source: where it came from (file name, or ``"<checkpoint>"``).
    """

    experiment: ExperimentSection
    data: HeidelbergData | YinYangData | PSMNISTData | BrailleData | SequenceData
    model_kind: str
    model: Any
    train: TrainerConfig
    source: str = "<config>"
    model_extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Fully resolved, JSON-compatible form (what a run directory and a checkpoint store;
        :func:`config_from_dict` reads it back)."""
        model = {"kind": self.model_kind}
        model.update({k: v for k, v in dataclasses.asdict(self.model).items()
                      if k not in FROM_TRAIN})
        model.update(self.model_extra)
        return json.loads(json.dumps({
            "experiment": self.experiment.model_dump(mode="json"),
            "data": self.data.model_dump(mode="json"),
            "model": model,
            "train": dataclasses.asdict(self.train),
        }))


def _loc(loc: Sequence[Any], data_kind: Any) -> str:
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] == "data" and parts[1] == str(data_kind):
        del parts[1]                      # pydantic's discriminator tag
    return ".".join(parts) or "<top>"


def _field_error(key: str, msg: str) -> tuple[str, str]:
    """Point a whole-section error of a dataclass check (``TrainerConfig.lr must ...``) at its
    field."""
    msg = msg.removeprefix("Value error, ")
    m = re.search(r"\bTrainerConfig\.(\w+)", msg)
    if key == "train" and m and m.group(1) in {f.name for f in dataclasses.fields(TrainerConfig)}:
        key = f"train.{m.group(1)}"
    return key, msg


def _raise(errors: list[tuple[str, str]], source: str, overrides: dict[str, str]) -> None:
    lines = []
    for key, msg in errors:
        origin = next((f" (command-line override {o!r})" for k, o in overrides.items()
                       if key == k or key.startswith(k + ".")), "")
        lines.append(f"{source}: {key}: {msg}{origin}")
    raise ConfigError("\n".join(lines))


def _check_model(raw: Any, source: str, overrides: dict[str, str]) -> tuple[str, Any]:
    if not isinstance(raw, dict):
        _raise([("model", f"must be a mapping, got {type(raw).__name__}")], source, overrides)
    kind = raw.get("kind")
    if kind not in MODEL_KINDS:
        _raise([("model.kind", f"must be one of {sorted(MODEL_KINDS)}, got {kind!r}")],
               source, overrides)
    for name in FROM_TRAIN:
        if name in raw:
            _raise([(f"model.{name}", f"is set in the train section (train.{name})")],
                   source, overrides)
    try:
        section = _MODEL_SCHEMAS[kind].model_validate(raw)
    except ValidationError as err:
        _raise([("model." + _loc(e["loc"], None), e["msg"]) for e in err.errors()],
               source, overrides)
    cls, presets = MODEL_KINDS[kind]
    given = {k: getattr(section, k) for k in section.model_fields_set
             if k not in ("kind", "preset")}
    extras = MODEL_EXTRAS.get(kind, {})
    extra = {k: given.pop(k) if k in given else default for k, (_, default) in extras.items()}
    preset = getattr(section, "preset", None)
    base = presets[preset]() if preset else cls()
    return kind, (base, given, extra)


def validate_config(raw: Any, source: str = "<config>",
                    overrides: dict[str, str] | None = None) -> ExperimentConfig:
    """Validate a config mapping; errors name ``source`` and the key path."""
    overrides = overrides or {}
    if not isinstance(raw, dict):
        _raise([("<top>", f"a config is a mapping with sections {SECTIONS}, got "
                          f"{type(raw).__name__}")], source, overrides)
    raw = copy.deepcopy(raw)
    model_raw = raw.get("model")
    try:
        top = _Top.model_validate(raw)
    except ValidationError as err:
        kind = raw.get("data", {}).get("kind") if isinstance(raw.get("data"), dict) else None
        _raise([_field_error(_loc(e["loc"], kind), e["msg"]) for e in err.errors()], source,
               overrides)
    kind, (base, given, extra) = _check_model(model_raw, source, overrides)
    train = top.train
    default = TrainerConfig()
    changed = {f.name for f in dataclasses.fields(train)
               if getattr(train, f.name) != getattr(default, f.name)}
    if kind in ("dcls", "delrec"):
        owned = sorted(changed & set(OPTIMISER_FIELDS))
        if owned:
            _raise([(f"train.{owned[0]}", f"the {kind} model trains with its paper's optimiser "
                                          "recipe, which sets the optimisers and schedules; "
                                          "change them in the model section (e.g. model.lr)")],
                   source, overrides)
    for name in sorted(changed & set(FROM_DATA)):
        _raise([(f"train.{name}", "the validation data is chosen by the data section "
                                  "(data.validation, data.val_fraction)")], source, overrides)
    run = {f.name: getattr(train, f.name) for f in dataclasses.fields(base)
           if f.name in FROM_TRAIN}
    try:
        model = dataclasses.replace(base, **given, **run)
    except (TypeError, ValueError) as err:
        msg = str(err)
        field = re.split(r"[\s\[:=]", msg, maxsplit=1)[0]
        key = f"model.{field}" if field in {f.name for f in dataclasses.fields(base)} else "model"
        _raise([(key, msg)], source, overrides)
    _check_extra(kind, model, extra, source, overrides)
    _check_consistency(top.data, kind, model, source, overrides)
    return ExperimentConfig(experiment=top.experiment, data=top.data, model_kind=kind,
                            model=model, train=train, source=source, model_extra=extra)


def _check_extra(kind: str, model: Any, extra: dict[str, Any], source: str,
                 overrides: dict[str, str]) -> None:
    if kind != "delrec":
        return
    layers = extra["ff_delays"]
    bad = [k for k in layers if not 0 <= k < len(model.hidden)]
    if bad or len(set(layers)) != len(layers):
        _raise([("model.ff_delays", f"distinct hidden-layer indices in 0..{len(model.hidden) - 1}"
                                    f" expected, got {list(layers)}")], source, overrides)
    if extra["ff_max_delay_steps"] < 1:
        _raise([("model.ff_max_delay_steps", f"must be an int >= 1, got "
                                             f"{extra['ff_max_delay_steps']!r}")],
               source, overrides)


def _check_consistency(data: Any, kind: str, model: Any, source: str,
                       overrides: dict[str, str]) -> None:
    """Data and model must fit together (input form, channel count)."""
    raster_models = ("dcls", "delrec")
    if data.kind in ("shd", "ssc"):
        if kind in raster_models and data.recipe is None:
            _raise([("data.recipe", f"the {kind} model takes binned rasters: name a recipe "
                                    f"({', '.join(RECIPES)})")], source, overrides)
        if kind == "eventprop" and data.recipe is not None:
            _raise([("data.recipe", "the eventprop model takes exact events: leave the recipe "
                                    "unset (null)")], source, overrides)
        if data.recipe is not None and data.recipe not in RECIPES:
            _raise([("data.recipe", f"unknown recipe {data.recipe!r}; expected one of "
                                    f"{sorted(RECIPES)}")], source, overrides)
        if data.augment == "delrec" and data.recipe is None:
            _raise([("data.augment", "the DelRec augmentation works on rasters: name a "
                                     "recipe")], source, overrides)
        if data.validation == "official" and data.kind != "ssc" and data.valid_file is None:
            _raise([("data.validation", "only SSC has an official validation file (or name "
                                        "one: data.valid_file)")], source, overrides)
    elif data.kind in ("yinyang", "sequence", "braille") and kind != "eventprop":
        _raise([("model.kind", f"data kind {data.kind!r} gives exact-time spikes: use the "
                               "eventprop model")], source, overrides)
    elif data.kind == "gsc" and kind != "dcls":
        _raise([("model.kind", "gsc gives real-valued log-mel features: use the dcls model")],
               source, overrides)
    elif data.kind == "psmnist" and kind != "delrec":
        _raise([("model.kind", "psmnist gives real-valued sequences: use the delrec model")],
               source, overrides)
    channels = data_channels(data)
    if channels is not None and model.n_in != channels:
        _raise([("model.n_in", f"is {model.n_in} but the {data.kind} data gives {channels} "
                               "input channels")], source, overrides)
    classes = CLASSES.get(data.kind)
    if classes is not None and model.n_out != classes:
        _raise([("model.n_out", f"is {model.n_out} but the {data.kind} data has {classes} "
                                "classes")], source, overrides)


#: classes of each data kind
CLASSES = {"shd": 20, "ssc": 35, "yinyang": 3, "psmnist": 10, "braille": 27, "sequence": 2,
           "gsc": 35}


def data_channels(data: Any) -> int | None:
    """Input channels the data gives (``None``: known only from its file, Braille)."""
    if data.kind in ("shd", "ssc"):
        return 700 if data.recipe is None else RECIPES[data.recipe].n_channels(700)
    return {"yinyang": 4, "psmnist": 1, "sequence": 2, "gsc": 140}.get(data.kind)


# --------------------------------------------------------------------------- files, overrides
def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """``["train.epochs=3", ...]`` -> ``{"train.epochs": "train.epochs=3"}`` (checked form);
    a key given twice is an error (neither value silently wins)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not key or any(not p for p in key.split(".")):
            raise ConfigError(f"override {item!r}: expected section.key=value, e.g. "
                              "train.epochs=3")
        if key.split(".")[0] not in SECTIONS:
            raise ConfigError(f"override {item!r}: unknown section {key.split('.')[0]!r}; "
                              f"expected one of {SECTIONS}")
        if key in out:
            raise ConfigError(f"overrides {out[key]!r} and {item!r} both set {key!r}: give "
                              "each key once")
        out[key] = item
    return out


def apply_overrides(raw: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """Set each ``a.b.c=value`` (value parsed as YAML) in a copy of ``raw``."""
    raw = copy.deepcopy(raw)
    for key, item in overrides.items():
        value = yaml.safe_load(item.partition("=")[2])
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a section")
            node = nxt
        node[parts[-1]] = value
    return raw


def read_yaml(path: str | os.PathLike) -> Any:
    """The YAML content of ``path`` (errors name the file and line)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config: {err.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read, override and validate a config file (a path, or the name of a shipped config)."""
    path = resolve_config_path(path)
    ov = parse_overrides(overrides)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config is a mapping with sections {SECTIONS}")
    return validate_config(apply_overrides(raw, ov), str(path), ov)


def config_from_dict(data: dict[str, Any], source: str = "<checkpoint>") -> ExperimentConfig:
    """Rebuild a config from :meth:`ExperimentConfig.to_dict`."""
    return validate_config(data, source)


__all__ = [
    "ConfigError", "ExperimentConfig", "MODEL_KINDS", "Target", "apply_overrides",
    "config_from_dict", "load_config", "parse_overrides", "read_yaml", "validate_config",
]
