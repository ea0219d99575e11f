"""Data: input generators and tasks, time-first and in seconds.

What lives here today:

* :mod:`ctsnn.data.inputs` — seeded random inputs: :func:`poisson_spikes` (exact-time Poisson
  trains as :class:`~ctsnn.Spikes`), :func:`bernoulli_input` (Bernoulli rasters ``[T, B, N]``
  with random labels, the benchmarks' input), :func:`make_generator`.
* :mod:`ctsnn.data.tasks` — synthetic tasks that need delays: :func:`spike_template_task` (the
  ``ctsnn demo`` task) and :func:`sequence_detection` (SEEDS D5).
* :mod:`ctsnn.data.heidelberg` — SHD/SSC HDF5 files as lazy datasets (exact events or binned),
  speaker split, collate functions (:class:`EventCollate` -> ``Spikes``, :class:`PaddedCollate`
  -> ``[T, B, C]``); :mod:`ctsnn.data.binning` — the D1 recipes; :mod:`ctsnn.data.augment` —
  DelRec and EventProp augmentations.

What will live here: readers for Tonic datasets, Yin-Yang, permuted sequential MNIST, Braille,
encoders.
"""

from .augment import (
    DelRecAugmented,
    EventPropAugmented,
    delrec_blend,
    delrec_time_shift,
    eventprop_blend,
    eventprop_channel_shift,
)
from .binning import RECIPES, BinaryBins, DigitizedBins, FirstSpikeFrames, pool_channels
from .heidelberg import (
    SHD,
    SSC,
    EventCollate,
    PaddedCollate,
    SpikingAudioH5,
    speaker_split,
    speaker_split_indices,
)
from .inputs import bernoulli_input, make_generator, poisson_spikes
from .tasks import sequence_detection, spike_template_task

__all__ = [
    "bernoulli_input", "make_generator", "poisson_spikes", "sequence_detection",
    "spike_template_task",
    # SHD/SSC
    "BinaryBins", "DelRecAugmented", "DigitizedBins", "EventCollate", "EventPropAugmented",
    "FirstSpikeFrames", "PaddedCollate", "RECIPES", "SHD", "SSC", "SpikingAudioH5",
    "delrec_blend", "delrec_time_shift", "eventprop_blend", "eventprop_channel_shift",
    "pool_channels", "speaker_split", "speaker_split_indices",
]
