"""Run a shipped experiment config from Python: what `ctsnn train` / `ctsnn eval` do.

The EventProp sequence-detection task (SEEDS D5) needs no data files: two inputs, two leaky
integrators, weights fixed at 1, only the delays learn. The config is read, overridden and
validated like on the command line, trained into a run directory, and its checkpoint evaluated.

    python examples/config_experiment.py [--epochs 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from ctsnn.config import build_model, evaluate_checkpoint, load_config, train_experiment
from ctsnn.training import count_parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", help="run directory (default: a temporary one)")
    args = parser.parse_args()

    cfg = load_config("eventprop_sequence", [f"train.epochs={args.epochs}",
                                             "train.progress=false"])
    target = cfg.experiment.target
    print(f"{cfg.experiment.name}: {cfg.experiment.description}")
    print(f"paper: {target.value} % ({target.source}); "
          f"{count_parameters(build_model(cfg))} parameters (fixed weights, learned delays)")
    print("model:", json.dumps(cfg.to_dict()["model"]))

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "run"
        final = train_experiment(cfg, out)
        print(f"trained {final['epochs_run']} epochs: test accuracy "
              f"{100 * final['test']['accuracy']:.0f} %")
        result = evaluate_checkpoint(out / "best.pt", split="test")
        print(f"ctsnn eval {out / 'best.pt'}: accuracy "
              f"{100 * result['metrics']['accuracy']:.0f} % on {result['metrics']['samples']} "
              "trials")


if __name__ == "__main__":
    main()
