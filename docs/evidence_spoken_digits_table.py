"""Print the tables of docs/evidence_spoken_digits.md from the runs of evidence_spoken_digits.sh.

Usage: python3 docs/evidence_spoken_digits_table.py OUT_DIR
Reads OUT_DIR/<config>/sweep.json (written by ``ctsnn train --seeds``) and each seed's
experiment.json; test accuracy is that of the best-validation weights (model selection on the
validation speakers only), mean +- sample std over the seeds that finished.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from ctsnn.config import config_from_dict
from ctsnn.config.build import build_model
from ctsnn.training.parameters import count_parameters

ORDERINGS = {
    "DCLS ablations, dense (all-to-all)": [
        ("no delays", "dcls_shd_nodelay"), ("fixed random delays", "dcls_shd_fixed_random"),
        ("learned delays (decreasing sigma)", "dcls_shd_2l")],
    "DCLS ablations, 10 synapses per neuron": [
        ("no delays", "dcls_shd_sparse10_nodelay"),
        ("fixed random delays", "dcls_shd_sparse10_fixed_random"),
        ("learned delays (decreasing sigma)", "dcls_shd_sparse10_learned")],
    "DelRec equal-budget networks": [
        ("no delays (feed-forward SNN)", "delrec_shd_small_snn"),
        ("learned feed-forward delays", "delrec_shd_small_ff"),
        ("learned recurrent delays", "delrec_shd_small_rec")],
}


def row(label: str, run_dir: Path) -> str:
    seeds = sorted(run_dir.glob("seed*/final.json"))
    if not seeds:
        return f"| {label} | `{run_dir.name}` | | | 0 | not run |  |  |"
    test = [100 * json.loads(p.read_text())["test"]["accuracy"] for p in seeds]
    val = [100 * json.loads(p.read_text())["best"]["value"] for p in seeds]
    cfg = config_from_dict(json.loads((seeds[0].parent / "experiment.json").read_text()))
    width = getattr(cfg.model, "n_hidden", None) or getattr(cfg.model, "hidden", None)
    n_par = count_parameters(build_model(cfg), active_only=True)
    sd = statistics.stdev(test) if len(test) > 1 else float("nan")
    return (f"| {label} | `{run_dir.name}` | {width} | {n_par:,} | {len(test)} | "
            f"**{statistics.mean(test):.1f} ± {sd:.1f}** | "
            f"{', '.join(f'{t:.1f}' for t in test)} | {statistics.mean(val):.1f} |")


def main(out: Path) -> None:
    for title, variants in ORDERINGS.items():
        print(f"\n#### {title}\n")
        print("| variant | config | hidden | parameters (active) | seeds | test accuracy % "
              "(mean ± std) | per seed | best validation % (mean) |")
        print("|---|---|---|---|---|---|---|---|")
        for label, name in variants:
            print(row(label, out / name))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
