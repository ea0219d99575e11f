"""Command line: ctsnn demo, ctsnn bench <workload>, ctsnn train CONFIG, ctsnn eval CHECKPOINT."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from .bench import WORKLOADS, find_workload, workload_ids
from .config import (
    ConfigError,
    evaluate_checkpoint,
    load_config,
    shipped_configs,
    train_experiment,
    train_seeds,
)
from .config.schema import read_yaml
from .training import format_mean_std

TRAIN_HELP = """Train an experiment config (a YAML file, or the name of a shipped config).

Overrides are section.key=value pairs, values read as YAML, validated like the file:
  ctsnn train dcls_shd_2l data.root=~/data/shd train.epochs=3 model.n_hidden=128

The run directory (default runs/<experiment name>) gets experiment.json (the resolved config),
the trainer's checkpoints (last.pt, best.pt), logs and final.json. Running the same config
again continues an interrupted run; a directory holding another config is refused.
--seeds 0,1,2 trains one run per seed (OUT/seed0, ...) and prints mean and std.
ctsnn train --list shows the shipped configs of the three papers (docs/configs.md)."""

EVAL_HELP = """Evaluate a checkpoint of ctsnn train (best.pt or last.pt) on a split.

The model is rebuilt from the config stored in the checkpoint. --data points at the data
folder if it moved; --config and overrides may change the data settings, not the model (a
checkpoint of another architecture is refused with the differences)."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ctsnn`` command."""
    try:
        return _run(argv)
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early: not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's exit-time flush must not raise again
        return 0


def _run(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="ctsnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="compare the two time modes on a small network, then learn delays",
        description="1. One network (CubaLIF -> a user-defined exponential IF) in discrete and "
        "continuous time at several grid steps: a table of spike counts and spike-time errors, "
        "and a figure (rasters of both modes zoomed on 100 ms, membrane traces). 2. Learning "
        "delays and weights with exact gradients in continuous time (progress bar).",
    )
    demo.add_argument("--out", default="ctsnn_demo.png", help="figure file (PNG)")
    demo.add_argument("--duration", type=float, default=0.3, help="simulated seconds")
    demo.add_argument("--steps", type=int, default=40, help="training steps (0: skip)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the network and the inputs")
    bench = sub.add_parser(
        "bench",
        help="run a benchmark workload (JSON lines on stdout)",
        description="Run a benchmark workload: JSON lines on stdout, progress on stderr "
        "(docs/benchmarks.md).\n\nworkloads:\n"
        + "\n".join(f"  {w.doc_id}, {w.name:<16} {w.summary}" for w in WORKLOADS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument(
        "workload", choices=workload_ids(), metavar="workload", help="a workload id, see above"
    )
    bench.add_argument("--quick", action="store_true", help="fewer configurations and repeats")
    bench.add_argument("--no-reference", action="store_true", help="skip the peers")
    train = sub.add_parser("train", help="train an experiment config (YAML)",
                           description=TRAIN_HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("config", nargs="?", help="config file or shipped config name")
    train.add_argument("overrides", nargs="*", help="section.key=value overrides (anywhere "
                       "on the line)")
    train.add_argument("--out", help="run directory (default: runs/<experiment name>)")
    train.add_argument("--data", help="data folder (sets data.root)")
    train.add_argument("--seeds", type=_seed_list, metavar="S1,S2,...",
                       help="one run per seed in OUT/seed<k>; prints mean and std")
    train.add_argument("--list", action="store_true", help="list the shipped configs")
    ev = sub.add_parser("eval", help="evaluate a ctsnn train checkpoint",
                        description=EVAL_HELP,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("checkpoint", help="best.pt or last.pt of a run directory")
    ev.add_argument("overrides", nargs="*", help="section.key=value overrides (data only; "
                    "anywhere on the line)")
    ev.add_argument("--data", help="data folder (overrides the stored data.root)")
    ev.add_argument("--split", default="test", choices=("train", "valid", "test"))
    ev.add_argument("--config", help="take the data settings from this config instead")
    ev.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args, extra = parser.parse_known_args(argv)
    if extra:  # overrides after an option (argparse reads positionals in one run)
        bad = [a for a in extra if a.startswith("-") or "=" not in a
               or args.command not in ("train", "eval")]
        if bad:
            parser.error(f"unrecognized arguments: {' '.join(bad)}")
        args.overrides = [*args.overrides, *extra]
    if args.command == "train":
        return _train(parser, args)
    if args.command == "eval":
        return _eval(args)
    if args.command == "demo":
        from .demos import delay_learning, two_modes

        print("== 1. One network, two time modes ==")
        two_modes.run(out=args.out, duration=args.duration, seed=args.seed)
        if args.steps > 0:
            print("\n== 2. Learning delays and weights with exact gradients (continuous time) ==")
            delay_learning.run(steps=args.steps, seed=args.seed)
        return 0
    if args.command == "bench":
        workload = importlib.import_module(find_workload(args.workload).module)
        return workload.main(quick=args.quick, reference=not args.no_reference)
    return 2


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from None
    if not seeds:
        raise argparse.ArgumentTypeError("expected at least one seed")
    return seeds


def _paper_text(target: dict | None) -> str:
    """``"paper: 95.07 +- 0.24 %; <source>"`` (or that there is no number)."""
    if not target:
        return "no paper number"
    if target.get("value") is None:
        return f"paper: plotted only; {target['source']}"
    std = f" +- {target['std']}" if target.get("std") is not None else ""
    return f"paper: {target['value']}{std} %; {target['source']}"


def _list_configs() -> int:
    for name, path in shipped_configs().items():
        exp = (read_yaml(path) or {}).get("experiment", {})
        target = exp.get("target") or {}
        value = "-" if target.get("value") is None else f"{target['value']}"
        print(f"{name:<34} {value:>7}  {exp.get('description', '')}")
    return 0


def _train(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.list:
        if args.config or args.overrides or args.out or args.data or args.seeds:
            parser.error("train --list takes no config, overrides, --out, --data or --seeds")
        return _list_configs()
    if not args.config:
        parser.error("train needs a CONFIG (a file or a shipped name; see ctsnn train --list)")
    try:
        cfg = load_config(args.config, args.overrides)
        if args.seeds and any(o.startswith("train.seed=") for o in args.overrides):
            raise ConfigError("train.seed and --seeds conflict: give one of them")
        if args.seeds:
            final = train_seeds(cfg, args.seeds, args.out, data_root=args.data)
        else:
            final = train_experiment(cfg, args.out, data_root=args.data)
    except (ConfigError, FileExistsError, FileNotFoundError, ValueError) as err:
        # ValueError: what the trainer refuses at construction (before writing anything)
        print(f"ctsnn train: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(final, indent=1, default=float))
    target = cfg.to_dict()["experiment"].get("target")
    if args.seeds:
        stats = final["aggregate"].get("test.accuracy")
        got = "n/a" if stats is None else f"{format_mean_std(stats)} %"
        print(f"test accuracy over seeds {args.seeds}: {got} ({_paper_text(target)})",
              file=sys.stderr)
    else:
        acc = (final.get("test") or {}).get("accuracy")
        got = "n/a" if acc is None else f"{100 * acc:.2f} %"
        print(f"test accuracy {got} ({_paper_text(target)})", file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace) -> int:
    try:
        out = evaluate_checkpoint(args.checkpoint, split=args.split, data_root=args.data,
                                  config=args.config, overrides=args.overrides,
                                  device=args.device)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        # ValueError: e.g. another architecture (the trainer's fingerprint check)
        print(f"ctsnn eval: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
