"""Multi-seed sweeps: the same config over several seeds, aggregated as mean ± std.

:func:`seed_sweep` trains one run per seed in ``out_dir/seed<k>`` (each an ordinary trainer
run: resumable, refused if it belongs to another config), then writes ``out_dir/sweep.json``
with every run's final metrics and their aggregate. Running it again continues unfinished
seeds and reuses finished ones. :func:`aggregate` does the statistics: for every numeric leaf
of the final metrics (flattened with dots, e.g. ``test.accuracy``) the mean, the sample
standard deviation (``ddof = 1``; 0 for one run), the standard error and the values per seed.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from .checkpoint import atomic_write_text
from .distributed import init_distributed
from .trainer import Trainer
from .trainer_config import TrainerConfig


def flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested dicts as ``{"a.b": value}`` (bools and strings left out)."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def aggregate(results: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{metric: {"mean", "std", "sem", "n", "values"}}`` over runs (metrics all runs have)."""
    if not results:
        raise ValueError("aggregate needs at least one run's metrics")
    flat = [flatten(r) for r in results]
    common = [k for k in flat[0] if all(k in f for f in flat[1:])]
    out = {}
    for k in common:
        values = [f[k] for f in flat]
        n = len(values)
        mean = sum(values) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
        out[k] = {"mean": mean, "std": std, "sem": std / math.sqrt(n), "n": n,
                  "values": values}
    return out


def format_mean_std(stats: Mapping[str, Any], scale: float = 100.0, digits: int = 2) -> str:
    """``"mean ± std (n = k)"`` of one :func:`aggregate` entry (``scale`` 100: percent)."""
    return (f"{stats['mean'] * scale:.{digits}f} ± {stats['std'] * scale:.{digits}f} "
            f"(n = {stats['n']})")


def seed_sweep(
    model_fn: Callable[[int], nn.Module],
    train_set: Dataset,
    config: TrainerConfig,
    seeds: Sequence[int],
    *,
    out_dir: str | Path,
    **trainer_kwargs: Any,
) -> dict[str, Any]:
    """Train ``model_fn(seed)`` with ``config`` (its ``seed`` replaced) for every seed.

    Args:
        model_fn: builds a fresh model for a seed (seed its initialisation with it).
        train_set, config: as for :class:`Trainer`; ``config.seed`` is replaced per run.
        seeds: distinct non-negative ints.
        out_dir: sweep directory; run ``k`` lives in ``out_dir/seed<k>``.
        trainer_kwargs: passed to every :class:`Trainer` (``val_set``, ``test_set``,
            ``loss_fn``, ...; not ``out_dir`` or ``resume``).

    Returns:
        ``{"seeds": [...], "runs": {seed: final metrics}, "aggregate": aggregate(...)}``, also
        written to ``out_dir/sweep.json``.
    """
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct ints, got {seeds}")
    for bad in ("out_dir", "resume"):
        if bad in trainer_kwargs:
            raise TypeError(f"seed_sweep sets {bad} itself (one directory per seed)")
    out = Path(out_dir)
    runs: dict[int, dict] = {}
    for seed in seeds:
        run_dir = out / f"seed{seed}"
        resume = True if (run_dir / "last.pt").exists() else None
        cfg = dataclasses.replace(config, seed=seed)
        runs[seed] = Trainer(model_fn(seed), train_set, cfg, out_dir=run_dir, resume=resume,
                             **trainer_kwargs).fit()
    result = {"seeds": seeds, "runs": {str(s): r for s, r in runs.items()},
              "aggregate": aggregate([runs[s] for s in seeds])}
    if init_distributed(config.device).is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps(result, indent=1), out / "sweep.json")
    return result


__all__ = ["aggregate", "flatten", "format_mean_std", "seed_sweep"]
