"""The benchmark workloads behind ``ctsnn bench``, one module each, named after the workload.

:data:`WORKLOADS` is the one table from the workload ids of the benchmark doc (``w1`` ..
``w5``, ``w7``, ``y1``) to the descriptive ids (``dcls-shd`` ...) and the modules that run them;
every module has ``main(quick=False, reference=True, ...)`` printing JSON lines.

Modules:

* :mod:`~ctsnn.bench.dcls_shd` (W1), :mod:`~ctsnn.bench.eventprop_long` (W2),
  :mod:`~ctsnn.bench.delrec_shd` (W3), :mod:`~ctsnn.bench.lif_plain` (W4),
  :mod:`~ctsnn.bench.sim_continuous` (W5), :mod:`~ctsnn.bench.event_small` (W7),
  :mod:`~ctsnn.bench.yinyang_epoch` (Y1) — the workloads;
* :mod:`~ctsnn.bench.harness` — the measurement protocol (timing, peak RSS, JSON lines);
* :mod:`~ctsnn.bench.peers` — the reference implementations built from their packages;
* :mod:`~ctsnn.bench.sim_continuous_inputs` — W5's input draw, shared with the Brian2 side;
* :mod:`~ctsnn.bench.brian2_side` — runs W5 in Brian2's own environment and reads its JSON;
  ``sim_continuous_brian2.py`` is the script it runs there (numpy + Brian2 only, never
  imported here) and ``brian2_env.sh`` makes that environment;
* :mod:`~ctsnn.bench.event_small_inputs` — W7's input draw, one ``.npz`` both sides read;
  :mod:`~ctsnn.bench.eventax_side` runs ``event_small_eventax.py`` (numpy + JAX + eventax only)
  in the environment made by ``eventax_env.sh``;
* :mod:`~ctsnn.bench.adex_overhead` — the continuous engine's per-step overhead on a generic
  model (AdEx), counted in torch calls (``python -m ctsnn.bench.adex_overhead``).

The convergence-order study of spike times is a study tool:
:mod:`ctsnn.analysis.convergence_orders`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WORKLOADS", "Workload", "find_workload", "workload_ids"]


@dataclass(frozen=True)
class Workload:
    """One benchmark workload: its id in the benchmark doc, descriptive id and module."""

    doc_id: str
    """Id of the benchmark doc, e.g. ``"w1"``."""
    name: str
    """Descriptive id, e.g. ``"dcls-shd"``."""
    summary: str
    """What it runs against what (plain text: the command line shows it)."""

    @property
    def module(self) -> str:
        """Full name of the module whose ``main`` runs it, e.g. ``"ctsnn.bench.dcls_shd"``."""
        return f"{__name__}.{self.name.replace('-', '_')}"


#: The workloads in the order of the benchmark doc.
WORKLOADS: tuple[Workload, ...] = (
    Workload("w1", "dcls-shd", "DCLS's SHD network vs DCLS + SpikingJelly, with its W6 roofline"),
    Workload("w2", "eventprop-long", "EventProp gradients on long sequences vs DCLS"),
    Workload("w3", "delrec-shd", "DelRec's SHD network, SpikingJelly as the yardstick"),
    Workload("w4", "lif-plain",
             "plain LIF vs SpikingJelly, snnTorch and Norse, with its W6 roofline"),
    Workload("w5", "sim-continuous", "simulation with heterogeneous delays vs Brian2"),
    Workload("w7", "event-small", "exact continuous time vs eventax (vmap and loop)"),
    Workload("y1", "yinyang-epoch", "one Yin-Yang epoch with exact gradients"),
)


def workload_ids() -> list[str]:
    """Every id :func:`find_workload` accepts: the doc ids, then the descriptive ids."""
    return [w.doc_id for w in WORKLOADS] + [w.name for w in WORKLOADS]


def find_workload(workload_id: str) -> Workload:
    """The workload of a doc id (``"w1"``) or descriptive id (``"dcls-shd"``).

    Raises:
        KeyError: No workload has that id.
    """
    for w in WORKLOADS:
        if workload_id in (w.doc_id, w.name):
            return w
    raise KeyError(f"unknown workload {workload_id!r}; known: {', '.join(workload_ids())}")
