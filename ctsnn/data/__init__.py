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

* :mod:`ctsnn.data.yinyang` — the Yin-Yang data set by its published rule (:class:`YinYang`,
  :func:`yinyang_arrays`) and its latency encoding (:func:`latency_encode`).
* :mod:`ctsnn.data.sequence_task` — a harder parametric sequence-detection task
  (:func:`sequence_detection_task`: channels, sequence length, classes, jitter, distractors).
* :mod:`ctsnn.data.idx`, :mod:`ctsnn.data.psmnist` — IDX files (:func:`read_idx`) and permuted
  sequential MNIST (:class:`PermutedSequentialMNIST`, DelRec protocol, full or reduced split).
* :mod:`ctsnn.data.braille` — Braille reading from its event pickle (:class:`Braille`).
* :mod:`ctsnn.data.events` — :func:`collate_events` (exact-time batches) and
  :class:`SpikesDataset` (a dataset over a generated :class:`~ctsnn.Spikes` batch).

* :mod:`ctsnn.data.speech_commands` — Google Speech Commands v0.02 (:class:`SpeechCommands`,
  official splits) with the DCLS log-mel features of :mod:`ctsnn.data.audio`
  (:class:`MelRecipe`: resampling, STFT, HTK mel filters, dB), cached on disk.

What will live here: readers for Tonic datasets, encoders.
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

# isort: split
# Yin-Yang, parametric sequence detection, psMNIST (IDX), Braille
from .braille import BRAILLE_LETTERS, Braille, BrailleFormatError, load_braille
from .events import SpikesDataset, collate_events
from .idx import IDXError, read_idx, write_idx
from .psmnist import PermutedSequentialMNIST, collate_sequences, pixel_permutation, psmnist_arrays
from .sequence_task import sequence_detection_task, sequence_templates
from .yinyang import YINYANG_SPLITS, YinYang, latency_encode, yinyang_arrays

# isort: split
# Google Speech Commands (audio -> log-mel features)
from .audio import MelRecipe, WavFormatError, read_wav
from .speech_commands import WORDS, SpeechCommands, SpeechCommandsLayoutError

__all__ = [
    "bernoulli_input", "make_generator", "poisson_spikes", "sequence_detection",
    "spike_template_task",
    # SHD/SSC
    "BinaryBins", "DelRecAugmented", "DigitizedBins", "EventCollate", "EventPropAugmented",
    "FirstSpikeFrames", "PaddedCollate", "RECIPES", "SHD", "SSC", "SpikingAudioH5",
    "delrec_blend", "delrec_time_shift", "eventprop_blend", "eventprop_channel_shift",
    "pool_channels", "speaker_split", "speaker_split_indices",
    # Yin-Yang, parametric sequence detection, psMNIST (IDX), Braille
    "BRAILLE_LETTERS", "Braille", "BrailleFormatError", "IDXError", "PermutedSequentialMNIST",
    "SpikesDataset", "YINYANG_SPLITS", "YinYang", "collate_events", "collate_sequences",
    "latency_encode", "load_braille", "pixel_permutation", "psmnist_arrays", "read_idx",
    "sequence_detection_task", "sequence_templates", "write_idx", "yinyang_arrays",
    # Google Speech Commands
    "MelRecipe", "SpeechCommands", "SpeechCommandsLayoutError", "WORDS", "WavFormatError",
    "read_wav",
]
