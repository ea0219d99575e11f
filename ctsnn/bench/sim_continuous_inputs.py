"""Inputs of benchmark workload W5 ``sim-continuous``.

W5 is 1000 LIF neurons (tau 10 ms, threshold 1, reset 0, no refractory period)
driven by 140 Poisson inputs at 20 Hz through dense 140 x 1000 synapses with
``v += w``, ``w ~ U[0, 0.1)`` and delays ``~ U[0, 25 ms]``, 1 s simulated.

:func:`make_w5_inputs` draws everything both sides of the comparison need, as
plain numpy arrays, so that ``ctsnn`` and the Brian2 reference (which runs in a
separate environment, see ``ctsnn/bench/sim_continuous_brian2.py``) see exactly the same
input. Input spike times are an exact Poisson process in continuous time: they
are *not* aligned to any time grid (Brian2 rounds them to its grid itself).

Random streams: one :class:`numpy.random.SeedSequence` per seed is split into
one child for the synapses and one child per batch sample, so the synapses and
sample ``b`` do not depend on ``batch``.

The returned dict (also the layout of the ``.npz`` file) holds:

``times``
    float64 ``[n_spikes]``, input spike times in seconds, sorted by
    ``(sample, time, index)``.
``indices``
    int64 ``[n_spikes]``, input neuron of each spike, in ``[0, n_in)``.
``sample``
    int64 ``[n_spikes]``, batch sample of each spike, in ``[0, batch)``.
``weights``
    float32 ``[n_out, n_in]``, ``weights[j, i]`` is the synapse from input
    ``i`` to neuron ``j``.
``delays``
    float64 ``[n_out, n_in]``, synaptic delays in seconds, same layout.
``seed``, ``n_in``, ``n_out``, ``batch`` (int64 scalars), ``rate``,
``duration``, ``tau``, ``v_threshold``, ``v_reset`` (float64 scalars)
    The parameters, stored as 0-d arrays so the file is self-describing.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["make_w5_inputs", "sample_spikes", "save_npz", "load_npz"]

#: Neuron parameters of W5 (seconds and dimensionless voltages).
W5_TAU = 0.010
W5_V_THRESHOLD = 1.0
W5_V_RESET = 0.0

_ARRAY_KEYS = ("times", "indices", "sample", "weights", "delays")
_INT_KEYS = ("seed", "n_in", "n_out", "batch")
_FLOAT_KEYS = ("rate", "duration", "tau", "v_threshold", "v_reset")


def _poisson_train(
    rng: np.random.Generator, n: int, rate: float, duration: float
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` independent homogeneous Poisson trains on ``[0, duration)``.

    Uses the order-statistics construction (count ~ Poisson(rate * duration),
    then that many i.i.d. uniform times), which is exact. Returns ``(times,
    indices)`` sorted by time, ties broken by index.
    """
    counts = rng.poisson(rate * duration, size=n)
    indices = np.repeat(np.arange(n, dtype=np.int64), counts)
    times = rng.uniform(0.0, duration, size=int(counts.sum()))
    order = np.lexsort((indices, times))
    return times[order], indices[order]


def make_w5_inputs(
    seed: int = 0,
    n_in: int = 140,
    n_out: int = 1000,
    rate: float = 20.0,
    duration: float = 1.0,
    w_max: float = 0.1,
    d_max: float = 0.025,
    batch: int = 1,
) -> dict[str, np.ndarray]:
    """Draw the inputs, weights and delays of W5.

    Args:
        seed: Seed of the whole draw; equal seeds give identical arrays.
        n_in: Number of Poisson input neurons.
        n_out: Number of LIF neurons.
        rate: Poisson rate of each input, in Hz.
        duration: Simulated time, in seconds; spikes lie in ``[0, duration)``.
        w_max: Weights are ``U[0, w_max)``.
        d_max: Delays are ``U[0, d_max)`` seconds.
        batch: Number of independent input samples sharing the synapses.

    Returns:
        The arrays described in the module docstring.
    """
    if n_in < 1 or n_out < 1 or batch < 1:
        raise ValueError(f"n_in, n_out and batch must be >= 1, got {n_in}, {n_out}, {batch}")
    for name, value in (("rate", rate), ("duration", duration), ("w_max", w_max)):
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be positive and finite, got {value!r}")
    if not np.isfinite(d_max) or d_max < 0:
        raise ValueError(f"d_max must be non-negative and finite, got {d_max!r}")

    syn_seq, *sample_seqs = np.random.SeedSequence(seed).spawn(batch + 1)
    syn_rng = np.random.default_rng(syn_seq)
    weights = syn_rng.uniform(0.0, w_max, size=(n_out, n_in)).astype(np.float32)
    # float32 rounding can reach w_max itself; keep the half-open interval.
    weights = np.minimum(weights, np.nextafter(np.float32(w_max), np.float32(0)))
    delays = syn_rng.uniform(0.0, d_max, size=(n_out, n_in))

    times_l, indices_l, sample_l = [], [], []
    for b, seq in enumerate(sample_seqs):
        t, i = _poisson_train(np.random.default_rng(seq), n_in, rate, duration)
        times_l.append(t)
        indices_l.append(i)
        sample_l.append(np.full(t.shape, b, dtype=np.int64))

    return {
        "times": np.concatenate(times_l),
        "indices": np.concatenate(indices_l),
        "sample": np.concatenate(sample_l),
        "weights": weights,
        "delays": delays,
        "seed": np.asarray(seed, dtype=np.int64),
        "n_in": np.asarray(n_in, dtype=np.int64),
        "n_out": np.asarray(n_out, dtype=np.int64),
        "batch": np.asarray(batch, dtype=np.int64),
        "rate": np.asarray(rate, dtype=np.float64),
        "duration": np.asarray(duration, dtype=np.float64),
        "tau": np.asarray(W5_TAU, dtype=np.float64),
        "v_threshold": np.asarray(W5_V_THRESHOLD, dtype=np.float64),
        "v_reset": np.asarray(W5_V_RESET, dtype=np.float64),
    }


def sample_spikes(inputs: dict[str, np.ndarray], b: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(times, indices)`` of batch sample ``b``, sorted by time."""
    mask = inputs["sample"] == b
    return inputs["times"][mask], inputs["indices"][mask]


def save_npz(path: str | os.PathLike[str], inputs: dict[str, Any]) -> None:
    """Write ``inputs`` (as returned by :func:`make_w5_inputs`) to an uncompressed npz."""
    missing = [k for k in _ARRAY_KEYS + _INT_KEYS + _FLOAT_KEYS if k not in inputs]
    if missing:
        raise KeyError(f"inputs lacks keys {missing}")
    np.savez(path, **{k: np.asarray(v) for k, v in inputs.items()})


def load_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a file written by :func:`save_npz` back into a dict of arrays."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
