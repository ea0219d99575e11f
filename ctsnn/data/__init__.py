"""Data: input generators and tasks, time-first and in seconds.

What lives here today:

* :mod:`ctsnn.data.inputs` — seeded random inputs: :func:`poisson_spikes` (exact-time Poisson
  trains as :class:`~ctsnn.Spikes`), :func:`bernoulli_input` (Bernoulli rasters ``[T, B, N]``
  with random labels, the benchmarks' input), :func:`make_generator`.
* :mod:`ctsnn.data.tasks` — synthetic tasks that need delays: :func:`spike_template_task` (the
  ``ctsnn demo`` task) and :func:`sequence_detection` (SEEDS D5).

What will live here: readers for the SHD/SSC HDF5 files and Tonic datasets, the binning recipes
of the papers, Yin-Yang, permuted sequential MNIST, Braille, encoders and augmentations.
"""

from .inputs import bernoulli_input, make_generator, poisson_spikes
from .tasks import sequence_detection, spike_template_task

__all__ = [
    "bernoulli_input", "make_generator", "poisson_spikes", "sequence_detection",
    "spike_template_task",
]
