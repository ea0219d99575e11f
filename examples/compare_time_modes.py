"""Compare discrete and continuous time on one network (the `ctsnn demo` job).

Poisson input -> 30 CubaLIF -> 8 user-defined exponential IF neurons; prints spike counts
and timing errors per mode and grid step, and writes ``compare_time_modes.png``.

Run: ``python examples/compare_time_modes.py [--duration 0.5]``.
"""

from __future__ import annotations

import argparse

from ctsnn.demos.two_modes import run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=0.5)
    parser.add_argument("--out", default="compare_time_modes.png")
    args = parser.parse_args()
    run(out=args.out, duration=args.duration)
