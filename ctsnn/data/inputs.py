"""Random spike inputs: Poisson trains at exact times, Bernoulli rasters on a grid.

Every generator is seeded: pass ``seed`` (a fresh ``torch.Generator`` is seeded with it) or a
``generator`` of your own (consumed in place, so successive calls draw different samples);
with neither, torch's global generator is used, as torch's own samplers do. Times are in
seconds, rates in Hz.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..spikes import Spikes


def make_generator(seed: int | None = None,
                   generator: torch.Generator | None = None) -> torch.Generator:
    """The generator a data function draws from: ``generator``, else one seeded with ``seed``,
    else torch's global default generator."""
    if generator is not None and seed is not None:
        raise ValueError("give a seed or a generator, not both")
    if generator is not None:
        return generator
    if seed is not None:
        return torch.Generator().manual_seed(seed)
    return torch.default_generator


def poisson_spikes(n_in: int, rate: float, duration: float, *, batch: int = 1,
                   dt: float = 1e-3, seed: int | None = None,
                   generator: torch.Generator | None = None) -> Spikes:
    """Homogeneous Poisson spike trains at exact (off-grid) times.

    Each of the ``batch x n_in`` trains draws its spike count from ``Poisson(rate * duration)``
    and places the spikes uniformly in ``[0, duration)`` (float64 times), which is a Poisson
    process of rate ``rate``.

    Args:
        n_in: number of input channels N.
        rate: firing rate of every train (Hz).
        duration: length of each sample (s); the grid has ``round(duration / dt)`` steps.
        batch: number of samples B.
        dt: grid step of the returned :class:`~ctsnn.Spikes` (s); spike times stay exact.
        seed, generator: see the module docstring.

    Returns:
        :class:`~ctsnn.Spikes` with ``batch_size = batch`` and ``n_units = n_in``.
    """
    if rate < 0 or duration <= 0:
        raise ValueError(f"poisson_spikes needs rate >= 0 (Hz) and duration > 0 (s), got "
                         f"rate={rate!r}, duration={duration!r}")
    gen = make_generator(seed, generator)
    mean = torch.full((batch, n_in), rate * duration, dtype=torch.float64)
    counts = torch.poisson(mean, generator=gen).long()
    times = torch.rand(int(counts.sum()), generator=gen, dtype=torch.float64) * duration
    flat = torch.repeat_interleave(torch.arange(batch * n_in), counts.flatten())
    return Spikes.from_events(times, flat % n_in, flat // n_in, dt=dt,
                              n_steps=int(round(duration / dt)), batch_size=batch, n_units=n_in)


def bernoulli_input(n_steps: int, batch: int, n_in: int, p: float, *, seed: int | None = None,
                    generator: torch.Generator | None = None, n_classes: int = 20,
                    dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """A random classification batch: Bernoulli spike rasters and uniform labels.

    Every entry of the raster spikes independently with probability ``p`` per step (a rate of
    ``p / dt`` Hz on a grid of step ``dt``); the labels carry no information (for timing and
    memory benchmarks, not for learning).

    Args:
        n_steps, batch, n_in: raster shape ``[T, B, N]`` (time-first).
        p: spike probability per step and channel, in ``[0, 1]``.
        seed, generator: see the module docstring (the raster is drawn first, then the labels).
        n_classes: labels are uniform in ``[0, n_classes)``.
        dtype: dtype of the raster.

    Returns:
        ``(x [T, B, N] of 0/1, y [B] int64)``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    gen = make_generator(seed, generator)
    x = (torch.rand(n_steps, batch, n_in, generator=gen) < p).to(dtype)
    y = torch.randint(0, n_classes, (batch,), generator=gen)
    return x, y


__all__ = ["bernoulli_input", "make_generator", "poisson_spikes"]
