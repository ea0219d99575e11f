"""Command line: ctsnn demo and ctsnn bench <workload>."""

from __future__ import annotations

import argparse
import importlib
import sys

from .bench import WORKLOADS, find_workload, workload_ids


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ctsnn`` command."""
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
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
