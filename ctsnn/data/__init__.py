"""Data: input generators and tasks, time-first and in seconds.

What lives here today:

* :mod:`ctsnn.data.inputs` — seeded random inputs: :func:`poisson_spikes` (exact-time Poisson
  trains as :class:`~ctsnn.Spikes`), :func:`bernoulli_input` (Bernoulli rasters ``[T, B, N]``
  with random labels, the benchmarks' input), :func:`make_generator`.
* :mod:`ctsnn.data.tasks` — synthetic tasks that need delays: :func:`spike_template_task` (the
  ``ctsnn demo`` task) and :func:`sequence_detection` (SEEDS D5).

* :mod:`ctsnn.data.yinyang` — the Yin-Yang data set by its published rule (:class:`YinYang`,
  :func:`yinyang_arrays`) and its latency encoding (:func:`latency_encode`).
* :mod:`ctsnn.data.sequence_task` — a harder parametric sequence-detection task
  (:func:`sequence_detection_task`: channels, sequence length, classes, jitter, distractors).
* :mod:`ctsnn.data.idx`, :mod:`ctsnn.data.psmnist` — IDX files (:func:`read_idx`) and permuted
  sequential MNIST (:class:`PermutedSequentialMNIST`, DelRec protocol, full or reduced split).
* :mod:`ctsnn.data.braille` — Braille reading from its event pickle (:class:`Braille`).
* :mod:`ctsnn.data.events` — :func:`collate_events` (exact-time batches) and
  :class:`SpikesDataset` (a dataset over a generated :class:`~ctsnn.Spikes` batch).

What will live here: readers for the SHD/SSC HDF5 files and Tonic datasets, the binning recipes
of the papers, encoders and augmentations.
"""

from .inputs import bernoulli_input, make_generator, poisson_spikes
from .tasks import sequence_detection, spike_template_task

# isort: split
# Yin-Yang, parametric sequence detection, psMNIST (IDX), Braille
from .braille import BRAILLE_LETTERS, Braille, BrailleFormatError, load_braille
from .events import SpikesDataset, collate_events
from .idx import IDXError, read_idx, write_idx
from .psmnist import PermutedSequentialMNIST, collate_sequences, pixel_permutation, psmnist_arrays
from .sequence_task import sequence_detection_task, sequence_templates
from .yinyang import YINYANG_SPLITS, YinYang, latency_encode, yinyang_arrays

__all__ = [
    "bernoulli_input", "make_generator", "poisson_spikes", "sequence_detection",
    "spike_template_task",
    # Yin-Yang, parametric sequence detection, psMNIST (IDX), Braille
    "BRAILLE_LETTERS", "Braille", "BrailleFormatError", "IDXError", "PermutedSequentialMNIST",
    "SpikesDataset", "YINYANG_SPLITS", "YinYang", "collate_events", "collate_sequences",
    "latency_encode", "load_braille", "pixel_permutation", "psmnist_arrays", "read_idx",
    "sequence_detection_task", "sequence_templates", "write_idx", "yinyang_arrays",
]
