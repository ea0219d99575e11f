"""Command line: ``ctsnn demo`` and ``ctsnn bench <workload>``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ctsnn`` command."""
    parser = argparse.ArgumentParser(prog="ctsnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="compare the two time modes on a small network, then learn delays"
    )
    demo.add_argument("--out", default="ctsnn_demo.png", help="figure file (PNG)")
    demo.add_argument("--duration", type=float, default=0.3, help="simulated seconds")
    demo.add_argument("--steps", type=int, default=40, help="training steps (0: skip)")
    demo.add_argument("--seed", type=int, default=0)
    bench = sub.add_parser("bench", help="run a benchmark workload (JSON lines on stdout)")
    bench.add_argument(
        "workload",
        choices=["w1", "w2", "w3", "w4", "w5"],
        help="w1: dcls-shd vs DCLS+SpikingJelly; w2: eventprop-long (EventProp) vs DCLS; "
        "w3: delrec-shd (SpikingJelly yardstick); "
        "w4: lif-plain vs SpikingJelly/snnTorch/Norse (w1, w4: with their W6 roofline); "
        "w5: sim-continuous vs Brian2",
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
        import importlib

        workload = importlib.import_module(f".bench.{args.workload}", __package__)
        return workload.main(quick=args.quick, reference=not args.no_reference)
    return 2


if __name__ == "__main__":
    sys.exit(main())
