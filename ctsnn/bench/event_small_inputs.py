"""Inputs of benchmark workload W7 ``event-small``, shared with the eventax side.

W7: 20 Poisson inputs at 50 Hz -> 100 CubaLIF (tau_mem 20 ms, tau_syn 5 ms, threshold 1,
reset 0), dense input weights ``U[0, 0.8]``, per-synapse delays ``U[0, 10 ms]``, 100 ms, float32;
the training variant adds 3 spiking CubaLIF outputs (weights ``U[0.01, 0.05]``, delays
``U[0, 10 ms]``) scored by a cross-entropy on their first-spike times.

:func:`make_w7_inputs` draws everything both sides need as numpy arrays; :func:`save_npz` writes
them to one file that ``event_small_eventax.py`` (numpy + JAX + eventax only) reads with
``numpy.load``, so both sides see exactly the same input spikes and parameters. Every float is
float32-representable (drawn, then rounded to float32 and stored as float64 where noted): the
float32 runs of both sides and the float64 reference start from the same numbers.

Layout (keys of the dict and of the ``.npz``):

``in_times``
    float64 ``[B, n_in, K]`` input spike times (s) per sample and input channel, ascending,
    padded with ``inf`` (eventax's input layout).
``w_in``, ``d_in``
    float32 ``[n_hidden, n_in]``: weight and delay (s) of the synapse from input ``i`` to hidden
    neuron ``j`` at ``[j, i]``.
``w_out``, ``d_out``
    float32 ``[n_out, n_hidden]``, the output synapses, same layout.
``labels``
    int64 ``[B]`` class of each sample (random, for the training step).
``seed``, ``batch``, ``n_in``, ``n_hidden``, ``n_out`` (int64), ``rate``, ``duration``,
``tau_mem``, ``tau_syn``, ``v_threshold``, ``v_reset``, ``tau_ce`` (float64), 0-d arrays.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["TAU_CE", "events_of", "load_npz", "make_w7_inputs", "save_npz"]

#: Time scale of the first-spike cross-entropy: logits are ``-t_first / TAU_CE`` (s).
TAU_CE = 0.01

_ARRAYS = ("in_times", "w_in", "d_in", "w_out", "d_out", "labels")
_INTS = ("seed", "batch", "n_in", "n_hidden", "n_out")
_FLOATS = ("rate", "duration", "tau_mem", "tau_syn", "v_threshold", "v_reset", "tau_ce")


def make_w7_inputs(*, seed: int = 0, batch: int = 1, n_in: int = 20, n_hidden: int = 100,
                   n_out: int = 3, rate: float = 50.0, duration: float = 0.1
                   ) -> dict[str, Any]:
    """Draw W7's input spikes (exact Poisson, not on any grid) and parameters.

    Streams: one :class:`numpy.random.SeedSequence` per seed, split into the synapses, the labels
    and one child per sample, so sample ``b`` does not depend on ``batch``.

    Args:
        seed: random seed.
        batch: samples ``B`` (>= 1).
        n_in, n_hidden, n_out: layer sizes (the W7 sizes by default; smaller ones for tests).
        rate: input rate (Hz); duration: simulated time (s).

    Returns:
        The dict described in the module docstring.
    """
    for name, v in (("batch", batch), ("n_in", n_in), ("n_hidden", n_hidden), ("n_out", n_out)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if not (rate > 0 and duration > 0):
        raise ValueError(f"rate (Hz) and duration (s) must be > 0, got {rate!r}, {duration!r}")
    root = np.random.SeedSequence(seed)
    syn, lab, *samples = root.spawn(2 + batch)
    g = np.random.default_rng(syn)
    f32 = np.float32
    w_in = g.uniform(0.0, 0.8, (n_hidden, n_in)).astype(f32)
    d_in = g.uniform(0.0, 0.01, (n_hidden, n_in)).astype(f32)
    w_out = g.uniform(0.01, 0.05, (n_out, n_hidden)).astype(f32)
    d_out = g.uniform(0.0, 0.01, (n_out, n_hidden)).astype(f32)
    labels = np.random.default_rng(lab).integers(0, n_out, batch).astype(np.int64)
    per_sample: list[list[np.ndarray]] = []
    for ss in samples:
        gs = np.random.default_rng(ss)
        chans = []
        for _ in range(n_in):
            n = gs.poisson(rate * duration)
            t = np.sort(gs.uniform(0.0, duration, n)).astype(f32).astype(np.float64)
            chans.append(t)
        per_sample.append(chans)
    k = max(1, max(len(t) for chans in per_sample for t in chans))
    in_times = np.full((batch, n_in, k), np.inf)
    for b, chans in enumerate(per_sample):
        for i, t in enumerate(chans):
            in_times[b, i, :len(t)] = t
    return {
        "in_times": in_times, "w_in": w_in, "d_in": d_in, "w_out": w_out, "d_out": d_out,
        "labels": labels, "seed": np.int64(seed), "batch": np.int64(batch),
        "n_in": np.int64(n_in), "n_hidden": np.int64(n_hidden), "n_out": np.int64(n_out),
        "rate": np.float64(rate), "duration": np.float64(duration), "tau_mem": np.float64(0.02),
        "tau_syn": np.float64(0.005), "v_threshold": np.float64(1.0), "v_reset": np.float64(0.0),
        "tau_ce": np.float64(TAU_CE),
    }


def events_of(inputs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The input spikes as flat ``(times float64, channel int64, sample int64)`` arrays,
    sorted by ``(sample, channel, time)``."""
    t = np.asarray(inputs["in_times"])
    b, i, k = np.nonzero(np.isfinite(t))
    return t[b, i, k], i.astype(np.int64), b.astype(np.int64)


def save_npz(path: str | os.PathLike[str], inputs: dict[str, Any]) -> None:
    """Write ``inputs`` (from :func:`make_w7_inputs`) to an uncompressed ``.npz``."""
    missing = [k for k in _ARRAYS + _INTS + _FLOATS if k not in inputs]
    if missing:
        raise KeyError(f"W7 inputs lack keys {missing}")
    np.savez(path, **{k: np.asarray(inputs[k]) for k in _ARRAYS + _INTS + _FLOATS})


def load_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a file written by :func:`save_npz` back into a dict of arrays."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
