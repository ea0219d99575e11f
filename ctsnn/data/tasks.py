"""Small synthetic tasks whose solution needs delays (times in seconds).

* :func:`spike_template_task` — each sample is one spike per input channel, jittered around
  its class's template of spike times (the task of ``ctsnn demo``): delays that line a
  template's spikes up make its output neuron fire first.
* :func:`sequence_detection` — two inputs fire once each, ``gap`` apart; the class is the
  order (SEEDS D5, the EventProp-with-delays paper's first experiment).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..spikes import Spikes
from .inputs import make_generator


def spike_template_task(
    n: int,
    *,
    n_in: int = 8,
    n_classes: int = 2,
    spread: float = 0.02,
    onset: float = 0.002,
    jitter: float = 0.001,
    min_time: float = 0.0005,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    template_seed: int = 1234,
    dt: float = 1e-3,
    n_steps: int = 45,
) -> tuple[Spikes, Tensor]:
    """``n`` samples of the spike-template task and their labels.

    Class ``c`` has a template of ``n_in`` spike times ``onset + U(0, spread)``, fixed by
    ``template_seed`` (the same for every call). A sample of class ``c`` (uniform) has one spike
    per channel at its template's time plus ``N(0, jitter^2)``, clipped below at ``min_time``.

    Args:
        n: number of samples B.
        n_in: input channels N. n_classes: number of classes (templates).
        spread, onset, jitter, min_time: template and noise parameters (s).
        seed, generator: draw labels and jitter (see :mod:`ctsnn.data.inputs`); different seeds
            give independent samples of the same task.
        template_seed: seed of the templates (changing it changes the task).
        dt, n_steps: grid of the returned spikes (s, steps); spike times are exact.

    Returns:
        ``(spikes, labels)``: :class:`~ctsnn.Spikes` with ``batch_size = n``, ``n_units = n_in``
        (float64 times) and int64 labels ``[n]``.
    """
    tgen = torch.Generator().manual_seed(template_seed)
    templates = torch.rand(n_classes, n_in, generator=tgen, dtype=torch.float64) * spread + onset
    gen = make_generator(seed, generator)
    labels = torch.randint(0, n_classes, (n,), generator=gen)
    times = templates[labels] + jitter * torch.randn(n, n_in, generator=gen, dtype=torch.float64)
    times = times.clamp(min=min_time)
    units = torch.arange(n_in).repeat(n)
    batch = torch.arange(n).repeat_interleave(n_in)
    spikes = Spikes.from_events(times.flatten(), units, batch, dt=dt, n_steps=n_steps,
                                batch_size=n, n_units=n_in)
    return spikes, labels


def sequence_detection(
    labels: Sequence[int] | Tensor = (0, 1, 0, 1),
    *,
    gap: float = 0.010,
    dt: float = 1e-3,
    n_steps: int = 25,
    dtype: torch.dtype = torch.float64,
) -> tuple[Spikes, Tensor]:
    """Trials of the sequence-detection task (SEEDS D5), one per label.

    Two input channels fire once each: class 0 is "input 0 at 0 s, then input 1 at ``gap``",
    class 1 the reverse. The default labels are the paper's dataset of four samples
    ``[0, 1, 0, 1]`` (trained with batch 1: pass one label at a time). The task is
    deterministic (no seed).

    Args:
        labels: class (0 or 1) of each trial, length B.
        gap: time between the two spikes (s; the paper: 10 ms).
        dt, n_steps: grid of the returned spikes (the paper: 1 ms, 25 ms trials).
        dtype: dtype of the spike times.

    Returns:
        ``(spikes, labels)``: :class:`~ctsnn.Spikes` with ``batch_size = B``, ``n_units = 2``,
        and the labels as an int64 tensor ``[B]``.
    """
    labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
    if len(labels) == 0 or bool(((labels != 0) & (labels != 1)).any()):
        raise ValueError(f"labels must be a non-empty sequence of 0/1, got {labels.tolist()}")
    if not 0 <= gap <= n_steps * dt:
        raise ValueError(f"gap ({gap} s) must lie within the trial (0 to {n_steps * dt} s)")
    b = len(labels)
    times = torch.tensor([0.0, gap], dtype=dtype).repeat(b)
    first = labels.repeat_interleave(2)  # unit firing at 0 s: class 0 -> 0, class 1 -> 1
    units = torch.where(torch.arange(2 * b) % 2 == 0, first, 1 - first)
    batch = torch.arange(b).repeat_interleave(2)
    spikes = Spikes.from_events(times, units, batch, dt=dt, n_steps=n_steps, batch_size=b,
                                n_units=2)
    return spikes, labels


__all__ = ["sequence_detection", "spike_template_task"]
