"""The configs shipped with ctsnn (package data ``ctsnn/configs/*.yaml``)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path


def configs_dir() -> Path:
    """Folder of the shipped configs."""
    return Path(str(resources.files("ctsnn") / "configs"))


def shipped_configs() -> dict[str, Path]:
    """Name (file stem) -> path of every shipped config, sorted by name."""
    return {p.stem: p for p in sorted(configs_dir().glob("*.yaml"))}


def resolve_config_path(name: str | os.PathLike) -> Path:
    """An existing file path as is; else the shipped config of that name (with or without
    ``.yaml``); else the path (reading it reports the missing file)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = shipped_configs()
    stem = path.name[:-5] if path.name.endswith(".yaml") else path.name
    if path.parent == Path(".") and stem in shipped:
        return shipped[stem]
    return path


__all__ = ["configs_dir", "resolve_config_path", "shipped_configs"]
