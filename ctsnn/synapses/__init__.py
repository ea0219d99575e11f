"""Synapses: every connection type in one place, delay kernels as objects every synapse accepts.

Modules:

* :mod:`~ctsnn.synapses.kernels` — delay kernels :class:`Exact`, :class:`Rounded`,
  :class:`Triangle` ``(sigma)``, :class:`Gaussian` ``(sigma)`` (base :class:`DelayKernel`) and the
  pure kernel functions they use (DCLS Gaussian, triangle taps and spread, rounding, positions).
* :mod:`~ctsnn.synapses.dense` — :class:`Dense`, feed-forward, all-to-all or fixed fan-in.
* :mod:`~ctsnn.synapses.recurrent` — :class:`RecurrentDense`, a population's own connection.
* :mod:`~ctsnn.synapses.arrivals` — exact continuous-time arrival schedules.
* :mod:`~ctsnn.synapses.init` — default initialisers of weights, delays, fan-in masks.
* :mod:`~ctsnn.synapses.ranges` — the range of a delay: ``max_delay`` validation, the
  projection ``clamp_delays_`` applies and the check every forward applies.
* :mod:`~ctsnn.synapses.conv`, :mod:`~ctsnn.synapses.ring` — the fast paths (tap convolution,
  event-driven jumps, recurrent ring buffer with custom autograd).
* :mod:`~ctsnn.synapses.blocks` — :class:`NormalisedSynapse` (BatchNorm after a synapse),
  :class:`LinearSynapse` (dropout: :class:`ctsnn.dropout.SequenceDropout`).

Examples::

    Dense(5, 64, max_delay=0.01, learn_delay=True)            # exact delays U(0, 10 ms)
    Dense(weight=w, delay=d)                                  # explicit tensors (seconds)
    Dense(140, 256, kernel=Gaussian(), max_delay=0.25, dt=0.01, learn_delay=True)  # DCLS
    RecurrentDense(64, kernel=Triangle(10.0), dt=1e-3, per="axon", max_delay=0.03,
                   learn_delay=True)                          # DelRec
    RecurrentDense(weight=w_rec, delay=d_rec)                 # exact recurrence, both modes

The interface the network layer relies on (every synapse):

* ``n_in``, ``n_out``: sizes. ``weight [n_out, n_in]``: the weight parameter (the fan-in mask
  applied at init and by ``clamp_delays_``); ``effective_weight``: weight × mask, what every
  forward path uses. ``delay``: seconds (``[n_out, n_in]`` per synapse or ``[n_in]`` per axon)
  or ``None``; ``synapse_delay()`` expands it to ``[n_out, n_in]``. ``kernel``: the
  :class:`DelayKernel`. ``max_delay``: seconds or ``None``.
* ``clamp_delays_()``: project delays into ``[0, max_delay]`` (and re-apply the fan-in mask)
  after optimiser steps; nothing clamps silently. ``check_delays()``: raise unless every delay
  is finite and in range, naming it (every forward and ``synapse_delay()`` call it).
  ``delay_parameters()``, ``weight_parameters()``: for separate optimiser groups.
* Feed-forward (:class:`Dense`): ``check_input(x, dt=None)`` (raises a clear error for a wrong
  size or grid); discrete time ``jumps(x) -> [T + pad_right, B, n_out]`` for ``x`` a
  :class:`~ctsnn.spikes.Spikes` or a raster ``[T, B, n_in]`` (entry ``n`` = spike at the end of
  step ``n``); continuous time ``arrivals(spikes)``: a schedule, ``n -> StepArrivals | None``
  with local times in ``(0, dt]`` seconds and sizes ``[K, B, n_out]``.
* Recurrent (:class:`RecurrentDense`): ``start(batch_size, dtype=, device=, dt=, time=)``; discrete
  time ``read(n) -> [B, N]`` then ``write(n, spikes [B, N])``; continuous time
  ``arrivals(n) -> StepArrivals | None`` then ``emit(n, times, batch, units)``.

About ``dt`` (one rule): synapses whose kernel counts delays in grid steps (``Rounded``,
``Triangle``, ``Gaussian``: ``kernel.grid``) are built for one ``dt`` (constructor argument) and
raise a clear error when used with spikes (or a simulation) of another ``dt``. Exact synapses
(``Exact``) store delays in seconds and take ``dt`` from the spikes / the simulation; passing
``dt=`` to them is an error.

Where a kernel has no meaning (``kernel.supports(time)`` is false, e.g. ``Gaussian`` in
continuous time) or a synapse cannot implement it (``Gaussian`` / ``Rounded`` on recurrent
synapses), a ``ValueError`` says what to use instead. A new kernel is one subclass of
:class:`DelayKernel` in :mod:`~ctsnn.synapses.kernels` (``times``, ``grid``, ``taps`` and/or
``dense``, and ``spread`` for recurrent use).
"""

from .arrivals import (
                       Arrivals,
                       DelayedArrivals,
                       StepArrivals,
                       coalesce,
                       merge_arrivals,
                       snap_to_grid,
)
from .blocks import LinearSynapse, NormalisedSynapse
from .dense import Dense
from .init import constant_delays, half_normal_delays, uniform_delays
from .kernels import EXACT, DelayKernel, Exact, Gaussian, Rounded, Taps, Triangle
from .recurrent import RecurrentDense

__all__ = [
    "Dense", "RecurrentDense", "DelayKernel", "Exact", "EXACT", "Rounded", "Triangle",
    "Gaussian", "Taps", "Arrivals", "DelayedArrivals", "StepArrivals", "merge_arrivals",
    "coalesce",
    "snap_to_grid", "uniform_delays", "half_normal_delays", "constant_delays",
    "NormalisedSynapse", "LinearSynapse",
]
