"""Checkpoints that survive interruption: atomic writes, RNG states, architecture fingerprints.

* :func:`atomic_save` / :func:`atomic_write_text` write to a temporary file in the target's
  directory, flush and ``fsync`` it, then ``os.replace`` it over the target (atomic on POSIX
  and Windows): a reader, or a process killed at any instant, sees the old file or the new
  one, never a torn one. A kill during the write leaves a ``.<name>.tmp-<pid>`` file behind,
  which :func:`remove_stale_temporaries` deletes.
* :func:`rng_state` / :func:`set_rng_state` capture and restore torch (CPU and CUDA), numpy and
  Python's ``random``.
* :func:`fingerprint` describes a model's architecture (class, and name/shape/dtype of every
  state entry); :func:`check_fingerprint` refuses a checkpoint from another architecture with a
  message that says what differs.

Checkpoints are read with ``torch.load(weights_only=False)`` (they hold numpy RNG states and
the config): load only checkpoints you trust.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

CHECKPOINT_FORMAT = "ctsnn-trainer-1"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not supported (e.g. Windows): the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    _atomic(Path(path), "wb", lambda f: torch.save(obj, f))


def atomic_write_text(text: str, path: str | Path) -> None:
    """Write ``text`` to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    _atomic(Path(path), "w", lambda f: f.write(text))


def _atomic(path: Path, mode: str, write) -> None:
    """``write(file)`` into a temporary file beside ``path``, fsync, rename over ``path``."""
    tmp = _temporary(path)
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files interrupted atomic writes left in ``directory``."""
    removed = []
    for p in Path(directory).glob(".*.tmp-*"):
        p.unlink()
        removed.append(p)
    return removed


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a trainer checkpoint, checking its format tag."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a ctsnn trainer checkpoint (format "
                         f"{ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt)!r}, "
                         f"expected {CHECKPOINT_FORMAT!r})")
    return ckpt


# ----------------------------------------------------------------------------------------------
# random number generators
# ----------------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """The states of torch (CPU, and every CUDA device), numpy and Python's ``random``."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def seed_everything(seed: int) -> None:
    """Seed torch (all devices), numpy's global RNG and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# ----------------------------------------------------------------------------------------------
# architecture fingerprints
# ----------------------------------------------------------------------------------------------
def fingerprint(model: nn.Module) -> dict[str, Any]:
    """The architecture of ``model``: its class and ``{state key: [shape, dtype]}``."""
    cls = type(model)
    return {
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "state": {k: [list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()
                  if isinstance(v, torch.Tensor)},
    }


def fingerprint_differences(saved: dict[str, Any], current: dict[str, Any],
                            limit: int = 8) -> list[str]:
    """Human-readable differences between two fingerprints (empty when they match)."""
    out = []
    if saved["class"] != current["class"]:
        out.append(f"model class {saved['class']} in the checkpoint, {current['class']} here")
    a, b = saved["state"], current["state"]
    only_saved = [k for k in a if k not in b]
    only_here = [k for k in b if k not in a]
    if only_saved:
        out.append(f"{len(only_saved)} entries only in the checkpoint: {only_saved[:limit]}")
    if only_here:
        out.append(f"{len(only_here)} entries only in this model: {only_here[:limit]}")
    for k in a:
        if k in b and a[k] != b[k]:
            out.append(f"{k}: shape {a[k][0]} {a[k][1]} in the checkpoint, {b[k][0]} {b[k][1]} "
                       "here")
            if len(out) >= limit + 3:
                out.append("...")
                break
    return out


def check_fingerprint(saved: dict[str, Any], model: nn.Module, where: str | Path) -> None:
    """Raise ``ValueError`` saying what differs if ``model`` is not the saved architecture."""
    diff = fingerprint_differences(saved, fingerprint(model))
    if diff:
        raise ValueError(f"checkpoint {where} was written by another architecture: "
                         + "; ".join(diff))


def restore_model(model: nn.Module, path: str | Path,
                  map_location: str | torch.device = "cpu") -> dict:
    """Load the weights of a trainer checkpoint (``best.pt`` or ``last.pt``) into ``model``,
    refusing another architecture (the message says what differs); returns the checkpoint."""
    ckpt = load_checkpoint(path, map_location)
    check_fingerprint(ckpt["fingerprint"], model, path)
    model.load_state_dict(ckpt["model"])
    return ckpt


__all__ = ["CHECKPOINT_FORMAT", "atomic_save", "atomic_write_text", "check_fingerprint",
           "fingerprint", "fingerprint_differences", "load_checkpoint",
           "remove_stale_temporaries", "restore_model", "rng_state", "seed_everything",
           "set_rng_state"]
