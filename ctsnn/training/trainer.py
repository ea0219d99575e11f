"""The trainer: epochs, validation, checkpoints that survive SIGKILL, logs, data parallelism.

::

    from ctsnn.training import Trainer, TrainerConfig
    cfg = TrainerConfig(epochs=30, batch_size=64, lr=5e-3, lr_delay=0.1, schedule="one_cycle",
                        delay_schedule="cosine", val_fraction=0.1, early_stopping=10)
    metrics = Trainer(model, train_set, cfg, out_dir="runs/a", test_set=test_set).fit()

What :meth:`Trainer.fit` does, in this order, every batch: zero the gradients, ``model(x)``,
loss (+ the spike penalty), ``backward`` (scaled by the process's share of the global batch),
all-reduce the gradients (distributed), clip, step the weight and delay optimisers, project the
delays into their range (:func:`ctsnn.clamp_delays_`), step the per-batch schedule (ease-in);
every epoch: the kernel-width schedule, the per-epoch learning-rate schedules, evaluation on the
validation data (model selection and early stopping on it), a log row, ``best.pt`` when the
validation accuracy improved, ``last.pt``. At the end: the test set with the best (validation)
weights, ``final.json``.

Files in ``out_dir`` (all written atomically: temporary file + ``os.replace``):
``run.json`` (config, metadata, architecture), ``last.pt`` (everything needed to continue:
model, optimisers, schedulers, RNG states of every rank, epoch and batch position, running
metric sums, history, best so far), ``best.pt`` (model weights at the best validation
accuracy), ``log.csv`` / ``log.jsonl`` (one row per epoch), ``final.json``.

Resuming: ``fit`` continues from ``last.pt`` when present (mid-epoch too: the data order of an
epoch is a function of the seed and the epoch, so the remaining batches are the same); a run
killed at any instant (SIGKILL) resumes to bit-identical weights on CPU (tested). A finished
run is refused (pass ``resume=True`` to get its final metrics back without training), and a
directory holding another run's files, another architecture or another config is refused
with a message saying what differs.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ..data.heidelberg import speaker_split
from ..engine import SimulationResult
from ..network import clamp_delays_, delay_parameters
from ..spikes import Spikes
from .checkpoint import (
    CHECKPOINT_FORMAT,
    atomic_save,
    atomic_write_text,
    check_fingerprint,
    fingerprint,
    load_checkpoint,
    remove_stale_temporaries,
    rng_state,
    seed_everything,
    set_rng_state,
)
from .distributed import (
    DistContext,
    all_gather_objects,
    all_reduce_gradients,
    all_reduce_sums,
    barrier,
    init_distributed,
    shard,
)
from .logs import RunLog
from .metrics import LossFn, PredictFn, SpikeMonitor, resolve_heads
from .optimisers import OPTIMISERS, WeightDelayOptimiser, WeightDelayRecipe
from .parameters import weight_groups
from .schedules import DCLSSigmaSchedule, DelRecSigmaSchedule, ease_in
from .trainer_config import OPTIMISER_FIELDS, TrainerConfig

RecipeFn = Callable[[nn.Module, int], WeightDelayOptimiser]
#: Optimisers by name: the recipe's, and plain SGD.
TRAINER_OPTIMISERS: dict[str, type[torch.optim.Optimizer]] = {**OPTIMISERS,
                                                              "sgd": torch.optim.SGD}
RUN_FILES = ("run.json", "last.pt", "best.pt", "final.json", "log.csv", "log.jsonl")
_ORDER, _VAL_SPLIT, _LOADER, _EVAL = 1, 2, 3, 4  # purposes of derived seeds


def derived_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed derived from ``seed`` and ``keys`` (numpy ``SeedSequence``)."""
    a, b = np.random.SeedSequence([seed, *keys]).generate_state(2)
    return int((int(a) << 31) ^ int(b)) & (2**63 - 1)


def _generator(seed: int, *keys: int) -> torch.Generator:
    return torch.Generator().manual_seed(derived_seed(seed, *keys))


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The global batches of epoch ``epoch``: a permutation of ``range(n)`` seeded by
    ``(seed, epoch)``, cut into batches of ``batch_size`` (the last may be smaller)."""
    perm = torch.randperm(n, generator=_generator(seed, _ORDER, epoch)).tolist()
    return [perm[i:i + batch_size] for i in range(0, n, batch_size)]


def _move(x: Any, device: torch.device) -> Any:
    if isinstance(x, (Tensor, Spikes)):
        return x.to(device)
    if isinstance(x, (list, tuple)):
        return type(x)(_move(v, device) for v in x)
    return x


def _split_batch(batch: Any) -> tuple[Any, Tensor]:
    if not isinstance(batch, (list, tuple)) or len(batch) not in (2, 3):
        raise ValueError("the collate function must return (inputs, targets) or (inputs, "
                         f"targets, lengths); got {type(batch).__name__}"
                         + (f" of length {len(batch)}" if isinstance(batch, (list, tuple))
                            else ""))
    return batch[0], batch[1]


def _output(out: Any) -> Any:
    """The model's output for the loss: a :class:`SimulationResult` gives its ``output``
    (the readout; its spikes were counted by the monitor when ``simulate`` ran)."""
    if isinstance(out, SimulationResult):
        if out.output is None:
            raise ValueError("the model returned a SimulationResult without output: ask "
                             "simulate(...) for a readout (e.g. readout='max')")
        return out.output
    return out


def _correct(pred: Tensor, y: Tensor) -> float:
    if not isinstance(pred, Tensor) or pred.shape != y.shape:
        shape = list(pred.shape) if isinstance(pred, Tensor) else type(pred).__name__
        raise ValueError(f"the prediction must have the targets' shape {list(y.shape)} (one "
                         f"class per sample), got {shape}: check predict_fn")
    return float((pred == y).sum())


def _accuracy_key(has_val: bool) -> str:
    return "val_accuracy" if has_val else "train_accuracy"


class Trainer:
    """Trains ``model`` on ``train_set`` as ``config`` says (see the module docstring).

    Args:
        model: any ``nn.Module``; ``model(x)`` on a collated batch's inputs.
        train_set: a map-style dataset; a validation part is carved from it when
            ``config.val_fraction > 0``.
        config: :class:`TrainerConfig`.
        out_dir: run directory (created; see the module docstring for its files).
        val_set: validation data (``config.val_split`` ``"auto"`` or ``"given"``).
        test_set: evaluated once at the end, with the best validation weights.
        collate_fn: batches items; default the dataset's ``collate`` method if it has one,
            else PyTorch's default. Must return ``(inputs, targets [B])`` or ``(inputs,
            targets, lengths)`` (lengths are not used).
        loss_fn: ``(output, targets) -> scalar`` or a name of :data:`~ctsnn.training.metrics.
            HEADS`; default the model's ``loss`` method, else cross-entropy on ``[B, C]``.
        predict_fn: ``output -> classes [B]``; default the model's ``predict`` or argmax.
        optimiser_recipe: a :class:`WeightDelayRecipe`, or a callable ``(model, epochs) ->
            WeightDelayOptimiser`` (e.g. :func:`~ctsnn.papers.dcls.dcls_optimisers`); it
            replaces the config's optimiser fields, which must then keep their defaults.
        metadata: JSON-able facts stored in ``run.json`` and the checkpoints.
        resume: ``None`` (default): continue an unfinished run in ``out_dir``, refuse a
            finished one; ``True``: also accept a finished run (``fit`` returns its final
            metrics); ``False``: refuse an ``out_dir`` that holds a run.
    """

    def __init__(
        self,
        model: nn.Module,
        train_set: Dataset,
        config: TrainerConfig,
        *,
        out_dir: str | Path,
        val_set: Dataset | None = None,
        test_set: Dataset | None = None,
        collate_fn: Callable[[list], Any] | None = None,
        loss_fn: LossFn | str | None = None,
        predict_fn: PredictFn | str | None = None,
        optimiser_recipe: WeightDelayRecipe | RecipeFn | None = None,
        metadata: dict[str, Any] | None = None,
        resume: bool | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(config, TrainerConfig):
            raise TypeError(f"config must be a TrainerConfig, got {type(config).__name__}")
        for name, ds in (("train_set", train_set), ("val_set", val_set), ("test_set", test_set)):
            if ds is not None and not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
                raise TypeError(f"{name} must be a map-style dataset (__getitem__ and __len__), "
                                f"got {type(ds).__name__}")
        if len(train_set) == 0:
            raise ValueError("train_set is empty")
        if resume is not None and not isinstance(resume, bool):
            raise TypeError(f"resume must be a bool or None, got {resume!r}")
        json.dumps(metadata or {})  # fails early (TypeError) on non-JSON-able metadata
        self.config, self.resume, self.metadata = config, resume, dict(metadata or {})
        self.dist: DistContext = init_distributed(config.device)
        self.device = self._device()
        self.model = model.to(self.device)
        self.loss_fn, self.predict_fn = resolve_heads(model, loss_fn, predict_fn)
        self.collate_fn = collate_fn if collate_fn is not None else getattr(
            train_set, "collate", None)
        self.train_set, self.val_set = self._split(train_set, val_set)
        self.test_set = test_set
        self.out_dir = Path(out_dir)
        self.optimiser = self._build_optimiser(optimiser_recipe)
        self.batch_scheduler = (ease_in(self.optimiser.weights, config.ease_in_factor,
                                        config.ease_in_multiplier)
                                if config.schedule == "ease_in" else None)
        if config.rounded_eval is not None and not any(
                isinstance(getattr(m, "round_in_eval", None), bool) for m in model.modules()):
            raise ValueError(f"TrainerConfig.rounded_eval={config.rounded_eval} but the model "
                             "has no synapse that rounds its delays in evaluation")
        self.log = RunLog(self.out_dir, config.log)
        self.monitor = SpikeMonitor(model, keep_rasters=config.spike_reg > 0)
        # progress of the run (all of it goes into last.pt)
        self.epoch, self.batch, self.global_step = 0, 0, 0
        self.running: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.since_best, self.stopped = 0, False

    # ------------------------------------------------------------------ setup
    def _device(self) -> torch.device:
        want = self.config.device
        if want == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("TrainerConfig.device='cuda' but CUDA is not available")
        if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
            return torch.device("cuda", self.dist.local_rank if self.dist.active else 0)
        return torch.device("cpu")

    def _split(self, train_set: Dataset, val_set: Dataset | None
               ) -> tuple[Dataset, Dataset | None]:
        cfg = self.config
        mode = cfg.val_split
        if mode == "auto":
            if val_set is not None:
                mode = "given"
            elif cfg.val_fraction:
                mode = "speaker" if getattr(train_set, "speakers", None) is not None else "random"
            else:
                return train_set, None
        if val_set is not None and mode != "given":
            raise ValueError(f"val_set was given but TrainerConfig.val_split={cfg.val_split!r} "
                             "carves validation from the training data: use one or the other")
        if mode == "given":
            if val_set is None:
                raise ValueError("TrainerConfig.val_split='given' needs the val_set argument")
            if cfg.val_fraction:
                raise ValueError("val_set was given: TrainerConfig.val_fraction must be 0")
            return train_set, val_set
        if mode == "speaker":
            if getattr(train_set, "speakers", None) is None or not hasattr(train_set, "subset"):
                raise ValueError("val_split='speaker' needs a dataset with speakers (SHD/SSC "
                                 f"files with extra/speaker); {type(train_set).__name__} has none")
            return speaker_split(train_set, cfg.val_fraction, cfg.seed)
        n = len(train_set)
        n_val = min(max(1, round(cfg.val_fraction * n)), n - 1)
        if n < 2:
            raise ValueError("a validation split needs at least 2 training samples")
        perm = torch.randperm(n, generator=_generator(cfg.seed, _VAL_SPLIT)).tolist()
        tr, va = sorted(perm[n_val:]), sorted(perm[:n_val])
        if callable(getattr(train_set, "subset", None)):
            return train_set.subset(tr), train_set.subset(va)
        return Subset(train_set, tr), Subset(train_set, va)

    def _sigma(self) -> tuple[Callable[[int], float] | None, Callable[[float], Any] | None, str]:
        name, model, epochs = self.config.sigma_schedule, self.model, self.config.epochs
        if name is None:
            return None, None, "epoch_end"
        widths = [m for m in model.modules() if m is not model
                  and isinstance(getattr(m, "sigma", None), Tensor)
                  and callable(getattr(m, "set_sigma", None))]
        own_set = getattr(model, "set_sigma", None)
        if not widths:
            raise ValueError(f"TrainerConfig.sigma_schedule={name!r} but the model has no "
                             "synapse with a kernel width (sigma)")

        def set_all(value: float) -> None:
            for m in widths:
                m.set_sigma(value)

        set_sigma = own_set if callable(own_set) else set_all
        if name == "dcls":
            cfg_obj = getattr(model, "config", None)
            if callable(getattr(cfg_obj, "sigma_schedule", None)):
                schedule = cfg_obj.sigma_schedule(epochs)
            else:
                taps = next((m.kernel_size for m in widths if hasattr(m, "kernel_size")), None)
                if taps is None:
                    raise ValueError("sigma_schedule='dcls' needs a grid kernel (kernel_size)")
                schedule = DCLSSigmaSchedule.for_run(int(taps), epochs)
            return schedule, (None if schedule is None else set_sigma), "epoch_end"
        own = getattr(model, "sigma_schedule", None)
        schedule = own(epochs) if callable(own) else DelRecSigmaSchedule(epochs)
        return schedule, (None if schedule is None else set_sigma), "epoch_start"

    def _build_optimiser(self, recipe: WeightDelayRecipe | RecipeFn | None
                         ) -> WeightDelayOptimiser:
        cfg, model = self.config, self.model
        clamp = partial(clamp_delays_, model)
        delays = delay_parameters(model)
        if recipe is not None:
            default = TrainerConfig()
            allowed = ("sigma_schedule",) if isinstance(recipe, WeightDelayRecipe) else ()
            changed = [f for f in OPTIMISER_FIELDS
                       if f not in allowed and getattr(cfg, f) != getattr(default, f)]
            if changed:
                raise ValueError(f"optimiser_recipe builds the optimisers, so the config fields "
                                 f"{changed} would be ignored: leave them at their defaults")
            if isinstance(recipe, WeightDelayRecipe):
                sigma, set_sigma, _ = self._sigma()
                opt = recipe.build(model, cfg.epochs, delays=delays, clamp=clamp, sigma=sigma,
                                   set_sigma=set_sigma)
            elif callable(recipe):
                opt = recipe(model, cfg.epochs)
            else:
                raise TypeError("optimiser_recipe must be a WeightDelayRecipe or a callable "
                                f"(model, epochs) -> WeightDelayOptimiser, got "
                                f"{type(recipe).__name__}")
            if not isinstance(opt, WeightDelayOptimiser):
                raise TypeError(f"optimiser_recipe returned {type(opt).__name__}, expected a "
                                "WeightDelayOptimiser")
            if cfg.schedule == "ease_in" and opt.weights is None:
                raise ValueError("schedule='ease_in' needs a weight optimiser")
            return opt
        if not delays:
            given = [f for f, v in (("lr_delay", cfg.lr_delay), ("delay_optimiser",
                     cfg.delay_optimiser)) if v is not None]
            given += ["delay_schedule"] if cfg.delay_schedule != "none" else []
            if given:
                raise ValueError(f"the model has no learnable delay, so TrainerConfig fields "
                                 f"{given} do not apply: leave them unset")
        sigma, set_sigma, update = self._sigma()
        groups = weight_groups(model, delays, weight_decay=cfg.weight_decay,
                               norm_weight_decay=cfg.norm_weight_decay)
        d_name = cfg.delay_optimiser or cfg.optimiser
        if (cfg.schedule == "one_cycle" and groups and cfg.optimiser != "sgd"
                and d_name != "sgd" and (cfg.delay_schedule in ("one_cycle", "cosine")
                                         or not delays)):
            rec = WeightDelayRecipe(
                lr=cfg.lr, lr_delay=cfg.delay_lr, optimiser=cfg.optimiser,
                weight_decay=cfg.weight_decay, norm_weight_decay=cfg.norm_weight_decay,
                max_lr=cfg.max_lr, delay_optimiser=d_name,
                delay_scheduler="onecycle" if cfg.delay_schedule == "one_cycle" else "cosine",
                sigma_update=update)
            return rec.build(model, cfg.epochs, delays=delays, clamp=clamp, sigma=sigma,
                             set_sigma=set_sigma)
        if not groups and not delays:
            raise ValueError("the model has no learnable parameter")
        if not groups and cfg.schedule != "none":
            raise ValueError(f"schedule={cfg.schedule!r} schedules the weights, but the model "
                             "has no learnable weight (only delays): use schedule='none'")
        weights = TRAINER_OPTIMISERS[cfg.optimiser](groups, lr=cfg.lr) if groups else None
        d_opt = (TRAINER_OPTIMISERS[d_name](delays, lr=cfg.delay_lr, weight_decay=0.0)
                 if delays else None)
        return WeightDelayOptimiser(
            weights, d_opt, self._epoch_scheduler(weights, cfg.schedule, cfg.max_lr or cfg.lr),
            self._epoch_scheduler(d_opt, cfg.delay_schedule, cfg.delay_lr),
            clamp=clamp, sigma=sigma, set_sigma=set_sigma, sigma_update=update)

    def _epoch_scheduler(self, opt: torch.optim.Optimizer | None, name: str, peak: float
                         ) -> torch.optim.lr_scheduler.LRScheduler | None:
        epochs, sched = self.config.epochs, torch.optim.lr_scheduler
        if opt is None or name in ("none", "ease_in"):
            return None
        if name == "one_cycle":
            return sched.OneCycleLR(opt, max_lr=peak, total_steps=epochs)
        if name == "cosine":
            return sched.CosineAnnealingLR(opt, T_max=epochs)
        return sched.ExponentialLR(opt, gamma=self.config.lr_decay)

    @property
    def parameters(self) -> list[Tensor]:
        """Every parameter the optimisers update."""
        out = []
        for opt in (self.optimiser.weights, self.optimiser.delays):
            if opt is not None:
                out += [p for g in opt.param_groups for p in g["params"]]
        return out

    # ------------------------------------------------------------------ run directory
    def _prepare(self) -> dict | None:
        """Check ``out_dir``; return the checkpoint to resume from (or ``None``)."""
        out, last = self.out_dir, self.out_dir / "last.pt"
        if last.exists():
            if self.resume is False:
                raise FileExistsError(f"{out} already holds a run (last.pt); choose a new "
                                      "out_dir, or pass resume=None to continue it")
            ckpt = load_checkpoint(last)
            check_fingerprint(ckpt["fingerprint"], self.model, last)
            diff = TrainerConfig.from_dict(ckpt["config"]).differences(self.config)
            if diff:
                what = "; ".join(f"{k}: {a!r} in the checkpoint, {b!r} now"
                                 for k, a, b in ((k, *v) for k, v in diff.items()))
                raise ValueError(f"{last} was written with another config ({what}); resume with "
                                 "the same config or choose a new out_dir")
            if ckpt["finished"] and self.resume is None:
                raise FileExistsError(f"the run in {out} has finished (final.json); choose a "
                                      "new out_dir, or pass resume=True to get its final "
                                      "metrics without training")
            if not ckpt["finished"] and len(ckpt["ranks"]) != self.dist.world:
                raise ValueError(f"{last} was written by {len(ckpt['ranks'])} process(es); "
                                 f"resume it with the same number, not {self.dist.world}")
            return ckpt
        if self.resume is True:
            raise FileNotFoundError(f"resume=True but {out} holds no run to resume (no last.pt)")
        taken = [n for n in RUN_FILES if (out / n).exists()]
        if taken and not self._same_run(out / "run.json"):
            raise FileExistsError(f"{out} already holds {taken} but no last.pt to resume "
                                  "from; refusing to overwrite them: choose a new out_dir")
        return None  # nothing, or this very run killed before its first last.pt: start over

    def _same_run(self, run_json: Path) -> bool:
        """Whether ``run.json`` describes this run (same config and architecture)."""
        if not run_json.exists():
            return False
        try:
            info = json.loads(run_json.read_text(encoding="utf-8"))
            same_config = not TrainerConfig.from_dict(info["config"]).differences(self.config)
        except (ValueError, KeyError, TypeError):
            return False
        return same_config and info.get("fingerprint") == json.loads(
            json.dumps(fingerprint(self.model)))

    def _start(self) -> dict | None:
        ckpt = None
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.out_dir)
        try:
            ckpt = self._prepare()
            error = None
        except (OSError, ValueError) as exc:  # every rank must learn about it
            error = exc
        errors = all_gather_objects(repr(error) if error else None, self.dist)
        if error is not None:
            raise error
        if any(errors):
            raise RuntimeError(f"another rank refused the run directory: {errors}")
        if ckpt is None and self.dist.is_main:
            atomic_write_text(json.dumps({
                "config": self.config.to_dict(), "metadata": self.metadata,
                "fingerprint": fingerprint(self.model), "world_size": self.dist.world,
            }, indent=1), self.out_dir / "run.json")
        barrier(self.dist)
        return ckpt

    # ------------------------------------------------------------------ checkpoints
    def _state(self, finished: bool = False, final: dict | None = None) -> dict[str, Any]:
        opt = self.optimiser

        def sd(x: Any) -> Any:
            return None if x is None else x.state_dict()

        ranks = all_gather_objects({"rng": rng_state(), "running": dict(self.running)},
                                   self.dist)
        return {
            "format": CHECKPOINT_FORMAT, "config": self.config.to_dict(),
            "fingerprint": fingerprint(self.model), "metadata": self.metadata,
            "model": self.model.state_dict(),
            "optimiser": {"weights": sd(opt.weights), "delays": sd(opt.delays),
                          "weight_scheduler": sd(opt.weight_scheduler),
                          "delay_scheduler": sd(opt.delay_scheduler), "epoch": opt.epoch},
            "batch_scheduler": sd(self.batch_scheduler),
            "epoch": self.epoch, "batch": self.batch, "global_step": self.global_step,
            "history": list(self.history), "best": self.best, "since_best": self.since_best,
            "stopped": self.stopped, "ranks": ranks, "finished": finished, "final": final,
        }

    def _save_last(self, finished: bool = False, final: dict | None = None) -> None:
        state = self._state(finished, final)
        if self.dist.is_main:
            atomic_save(state, self.out_dir / "last.pt")

    def _restore(self, ckpt: dict[str, Any]) -> None:
        opt, o = self.optimiser, ckpt["optimiser"]
        self.model.load_state_dict(ckpt["model"])
        for name in ("weights", "delays", "weight_scheduler", "delay_scheduler"):
            target = getattr(opt, name)
            if (target is None) != (o[name] is None):
                raise ValueError(f"the checkpoint's {name} does not match this trainer's")
            if target is not None:
                target.load_state_dict(o[name])
        opt.epoch = o["epoch"]
        if self.batch_scheduler is not None:
            self.batch_scheduler.load_state_dict(ckpt["batch_scheduler"])
        self.epoch, self.batch = ckpt["epoch"], ckpt["batch"]
        self.global_step = ckpt["global_step"]
        self.history, self.best = list(ckpt["history"]), ckpt["best"]
        self.since_best, self.stopped = ckpt["since_best"], ckpt["stopped"]
        mine = ckpt["ranks"][self.dist.rank]
        self.running = dict(mine["running"])
        set_rng_state(mine["rng"])
        if self.dist.is_main:
            self.log.rewrite(self.history)  # drops rows of re-run epochs, restores lost ones

    # ------------------------------------------------------------------ training
    def fit(self) -> dict[str, Any]:
        """Train (or continue the run in ``out_dir``); returns the final metrics."""
        ckpt = self._start()
        if ckpt is not None and ckpt["finished"]:
            return dict(ckpt["final"])
        if ckpt is None:
            seed_everything(self.config.seed + 1_000_003 * self.dist.rank)
        else:
            self._restore(ckpt)
        while self.epoch < self.config.epochs and not self.stopped:
            self._train_epoch()
        return self._finish()

    def _loader(self, dataset: Dataset, batches: Sequence[Sequence[int]], *keys: int
                ) -> DataLoader:
        # an own generator: creating the iterator must not draw from the global RNG
        return DataLoader(dataset, batch_sampler=[list(b) for b in batches if b],
                          collate_fn=self.collate_fn, num_workers=self.config.num_workers,
                          generator=_generator(self.config.seed, _LOADER, *keys))

    def _train_epoch(self) -> None:
        cfg, opt, e = self.config, self.optimiser, self.epoch
        opt.start_epoch(e)
        batches = epoch_batches(len(self.train_set), cfg.batch_size, cfg.seed, e)
        local = [shard(b, self.dist) for b in batches]
        start = self.batch
        if start == 0:
            self.running = {"loss": 0.0, "penalty": 0.0, "correct": 0.0, "count": 0.0,
                            "synops": 0.0, "time": 0.0}
        it = iter(self._loader(self.train_set, local[start:], e))
        self.model.train()
        bar = tqdm(total=len(batches), initial=start, desc=f"epoch {e + 1}/{cfg.epochs}",
                   disable=not (cfg.progress and self.dist.is_main), leave=False)
        for k in range(start, len(batches)):
            t0 = time.perf_counter()
            self._train_step(next(it) if local[k] else None, len(local[k]), len(batches[k]))
            self.running["time"] += time.perf_counter() - t0
            self.batch, self.global_step = k + 1, self.global_step + 1
            bar.update(1)
            if self.running["count"]:
                bar.set_postfix(loss=self.running["loss"] / self.running["count"],
                                acc=self.running["correct"] / self.running["count"])
            if cfg.checkpoint_every and (k + 1) % cfg.checkpoint_every == 0 \
                    and k + 1 < len(batches):
                self._save_last()
        bar.close()
        opt.end_epoch()
        self._end_epoch()

    def _train_step(self, batch: Any, n_local: int, n_global: int) -> None:
        cfg, opt = self.config, self.optimiser
        opt.zero_grad()
        if batch is not None:
            x, y = _split_batch(_move(batch, self.device))
            self.monitor.rasters = []
            with self.monitor:
                out = _output(self.model(x))
                loss = self.loss_fn(out, y)
                penalty = (self.monitor.penalty(cfg.spike_reg) if cfg.spike_reg
                           else torch.zeros((), device=self.device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss is {loss.item()} at epoch {self.epoch + 1}, "
                                         f"batch {self.batch + 1}")
            ((loss + penalty) * (n_local / n_global)).backward()
            self.monitor.rasters = []
            with torch.no_grad():
                pred = self.predict_fn(out.detach() if isinstance(out, Tensor) else out)
                self.running["correct"] += _correct(pred, y)
            self.running["loss"] += float(loss.detach()) * n_local
            self.running["penalty"] += float(penalty.detach()) * n_local
            self.running["count"] += n_local
        all_reduce_gradients(self.parameters, self.dist)
        if cfg.grad_clip is not None:
            if cfg.grad_clip_mode == "norm":
                nn.utils.clip_grad_norm_(self.parameters, cfg.grad_clip)
            else:
                nn.utils.clip_grad_value_(self.parameters, cfg.grad_clip)
        opt.step()
        if self.batch_scheduler is not None:
            self.batch_scheduler.step()
        # spike counts accumulate in the monitor; move them to the running sums
        self.running["synops"] += self.monitor.synops
        self.running["seen"] = self.running.get("seen", 0.0) + self.monitor.seen
        for name, count in self.monitor.spikes.items():
            key = f"spikes/{name}"
            self.running[key] = self.running.get(key, 0.0) + count
        self.monitor.reset()

    def _end_epoch(self) -> None:
        cfg = self.config
        tot = all_reduce_sums({k: v for k, v in self.running.items() if k != "time"}, self.dist)
        n = max(tot["count"], 1.0)
        row: dict[str, Any] = {"epoch": self.epoch + 1, "step": self.global_step}
        opt = self.optimiser
        if opt.weights is not None:
            row["lr"] = opt.weights.param_groups[0]["lr"]
        if opt.delays is not None:
            row["lr_delay"] = opt.delays.param_groups[0]["lr"]
        sigma = opt.sigma(self.epoch) if opt.sigma is not None else None
        if sigma is not None:
            row["sigma"] = float(sigma)
        row.update({"train_loss": tot["loss"] / n, "train_accuracy": tot["correct"] / n})
        if cfg.spike_reg:
            row["train_spike_penalty"] = tot["penalty"] / n
        row.update({k.replace("spikes/", "train_spikes/"): v / n for k, v in tot.items()
                    if k.startswith("spikes/")})
        if tot.get("seen"):
            row["train_synops"] = tot["synops"] / n
        row["train_seconds"] = self.running["time"]
        if self.val_set is not None:
            row.update({f"val_{k}": v for k, v in self.evaluate(self.val_set).items()
                        if k != "samples"})
        key = _accuracy_key(self.val_set is not None)
        improved = self.best is None or row[key] > self.best["value"]
        if improved:
            self.best = {"epoch": self.epoch + 1, "metric": key, "value": row[key]}
            self.since_best = 0
            if self.val_set is not None and self.dist.is_main:
                atomic_save({"format": CHECKPOINT_FORMAT, "fingerprint": fingerprint(self.model),
                             "config": cfg.to_dict(), "metadata": self.metadata,
                             "model": self.model.state_dict(), "epoch": self.epoch + 1,
                             "metrics": row}, self.out_dir / "best.pt")
        else:
            self.since_best += 1
        if cfg.early_stopping is not None and self.since_best >= cfg.early_stopping:
            self.stopped = True
        row["best_epoch"] = self.best["epoch"]
        self.history.append(row)
        self.epoch, self.batch, self.running = self.epoch + 1, 0, {}
        self._save_last()
        if self.dist.is_main:
            self.log.append(row)
            if not cfg.progress:
                return
            tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in row.items() if "/" not in k))

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, dataset: Dataset, *, rounded_delays: bool | None = None) -> dict:
        """Loss, accuracy, spikes per layer and synaptic operations (per sample) on
        ``dataset``, in ``eval()`` mode without gradients; the training state (parameters,
        kernel widths, batch-norm statistics, train/eval mode, RNG states) is left as it was.

        Args:
            rounded_delays: ``True``: delays rounded to whole steps (one-tap kernels),
                ``False``: as trained, ``None``: ``config.rounded_eval`` (``None`` there: each
                synapse's ``round_in_eval``). Forcing it on a model without grid-kernel
                synapses is an error.
        """
        return self._evaluate(self.model, dataset, rounded_delays)

    def _evaluate(self, model: nn.Module, dataset: Dataset, rounded: bool | None) -> dict:
        if len(dataset) == 0:
            raise ValueError("cannot evaluate on an empty dataset")
        rounded = self.config.rounded_eval if rounded is None else rounded
        switches = [m for m in model.modules() if isinstance(getattr(m, "round_in_eval", None),
                                                              bool)]
        if rounded is not None and not switches:
            raise ValueError(f"rounded_delays={rounded} but the model has no synapse that "
                             "rounds its delays in evaluation (grid-kernel synapses do)")
        saved_flags = [m.round_in_eval for m in switches]
        was_training, saved_rng = model.training, rng_state()
        bs = self.config.eval_batch_size or self.config.batch_size
        batches = [list(range(i, min(i + bs, len(dataset)))) for i in range(0, len(dataset), bs)]
        local = [shard(b, self.dist) for b in batches]
        sums = {"loss": 0.0, "correct": 0.0, "count": 0.0, "synops": 0.0}
        monitor = SpikeMonitor(model)
        try:
            for m in switches:
                m.round_in_eval = m.round_in_eval if rounded is None else rounded
            model.eval()
            with torch.no_grad(), monitor:
                for batch in self._loader(dataset, local, _EVAL):
                    x, y = _split_batch(_move(batch, self.device))
                    out = _output(model(x))
                    sums["loss"] += float(self.loss_fn(out, y)) * len(y)
                    sums["correct"] += _correct(self.predict_fn(out), y)
                    sums["count"] += len(y)
        finally:
            for m, flag in zip(switches, saved_flags, strict=True):
                m.round_in_eval = flag
            model.train(was_training)
            set_rng_state(saved_rng)
        sums["synops"], sums["seen"] = monitor.synops, monitor.seen
        sums.update({f"spikes/{k}": v for k, v in monitor.spikes.items()})
        tot = all_reduce_sums(sums, self.dist)
        n = max(tot["count"], 1.0)
        out = {"loss": tot["loss"] / n, "accuracy": tot["correct"] / n}
        out.update({k: v / n for k, v in tot.items() if k.startswith("spikes/")})
        if tot["seen"]:
            out["synops"] = tot["synops"] / n
        out["samples"] = int(tot["count"])
        return out

    def _finish(self) -> dict[str, Any]:
        final: dict[str, Any] = {"epochs_run": self.epoch, "stopped_early": self.stopped,
                                 "best": self.best}
        if self.history:
            final["last"] = self.history[-1]
        if self.test_set is not None:
            barrier(self.dist)  # rank 0 has written best.pt
            if self.val_set is not None and (self.out_dir / "best.pt").exists():
                best = copy.deepcopy(self.model)
                best.load_state_dict(load_checkpoint(self.out_dir / "best.pt")["model"])
                final["test"] = self._evaluate(best, self.test_set, None)
                final["test_last"] = self._evaluate(self.model, self.test_set, None)
            else:
                final["test"] = self._evaluate(self.model, self.test_set, None)
        final = json.loads(json.dumps(final, default=float))
        if self.dist.is_main:
            atomic_write_text(json.dumps(final, indent=1, allow_nan=True),
                              self.out_dir / "final.json")
        self._save_last(finished=True, final=final)
        barrier(self.dist)
        return final


def fit(model: nn.Module, train_set: Dataset, config: TrainerConfig, **kwargs: Any
        ) -> dict[str, Any]:
    """``Trainer(model, train_set, config, **kwargs).fit()`` (``out_dir`` is required)."""
    return Trainer(model, train_set, config, **kwargs).fit()


__all__ = ["Trainer", "derived_seed", "epoch_batches", "fit"]
