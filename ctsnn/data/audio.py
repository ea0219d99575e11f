"""Audio features for spiking networks fed with spectrograms (DCLS's Google Speech Commands).

The DCLS reference turns each 1 s clip into log-mel features with torchaudio (SEEDS.md A4):
pad/truncate to 16,000 samples, resample 16 -> 8 kHz (windowed-sinc, Hann, 6 zero crossings,
roll-off 0.99), STFT (n_fft 256, hop 80, periodic Hann window, centred with reflection
padding), power 2, 140 HTK mel filters from 50 Hz to ``f_max`` without normalisation, then
``10 log10(max(x, 1e-10))``. torchaudio's current release pins an older torch than ours, so the
same formulas are written here on ``torch`` and the standard library alone:

* :func:`read_wav` — 16-bit PCM mono WAV via :mod:`wave` (values ``int16 / 32768``, as
  torchaudio's loader normalises); errors name the file.
* :func:`fit_length`, :func:`resample`, :func:`power_spectrogram`, :func:`mel_filter_bank`,
  :func:`power_to_db` — one formula each.
* :class:`MelRecipe` — the whole chain with its parameters (the cache key of the features).

``f_max``: the reference asks for 14 kHz although the Nyquist frequency after resampling is
4 kHz. With the HTK scale the mel points above 4 kHz then fall outside the spectrum: the 53
filters that start above 4 kHz see no bin and give a constant -100 dB channel; the other 87
cover 50 Hz - 4 kHz. ``MelRecipe(f_max="reference")`` reproduces that; ``f_max="nyquist"``
uses 4 kHz instead, spreading all 140 filters below 4 kHz, where 7 low ones (below 1 kHz) fall
between the 31.25 Hz bins and stay empty. See docs/gsc.md.
"""

from __future__ import annotations

import dataclasses
import math
import os
import wave
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "MelRecipe", "WavFormatError", "fit_length", "mel_filter_bank", "power_spectrogram",
    "power_to_db", "read_wav", "resample",
]


class WavFormatError(ValueError):
    """A WAV file that cannot be read as the data set requires (names the file)."""


def read_wav(path: str | os.PathLike, *, sample_rate: int | None = None) -> Tensor:
    """Read a 16-bit PCM mono WAV file as float32 ``[L]`` in ``[-1, 1)`` (``int16 / 32768``).

    Args:
        path: the file.
        sample_rate: if given, the file's rate must equal it (Hz).

    Raises:
        WavFormatError: unreadable file, not mono, not 16-bit PCM or another sample rate; the
            message names the file.
    """
    try:
        with wave.open(os.fspath(path), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError, OSError) as exc:
        raise WavFormatError(f"{path}: not a readable WAV file ({exc})") from exc
    if channels != 1:
        raise WavFormatError(f"{path}: {channels} channels, expected mono")
    if width != 2:
        raise WavFormatError(f"{path}: {8 * width}-bit samples, expected 16-bit PCM")
    if sample_rate is not None and rate != sample_rate:
        raise WavFormatError(f"{path}: sample rate {rate} Hz, expected {sample_rate} Hz")
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / np.float32(32768.0)
    return torch.from_numpy(samples.copy())


def fit_length(x: Tensor, length: int) -> Tensor:
    """Truncate ``x [..., L]`` to ``length`` samples or zero-pad it at the end."""
    n = x.shape[-1]
    if n >= length:
        return x[..., :length]
    return torch.nn.functional.pad(x, (0, length - n))


def _sinc_kernel(orig: int, new: int, zeros: int, rolloff: float,
                 dtype: torch.dtype) -> tuple[Tensor, int]:
    """Windowed-sinc polyphase filters ``[new, 1, 2 width + orig]`` for reduced rates."""
    base = min(orig, new) * rolloff
    width = math.ceil(zeros * orig / base)
    # Filter taps in input samples (float64, as the reference), phases of the output samples.
    taps = torch.arange(-width, width + orig, dtype=torch.float64) / orig
    phase = torch.arange(0, -new, -1, dtype=torch.float64)[:, None, None] / new
    t = ((phase + taps[None, None]) * base).clamp(-zeros, zeros)
    window = torch.cos(t * math.pi / zeros / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    return (sinc * window * (base / orig)).to(dtype), width


def resample(x: Tensor, orig_freq: int, new_freq: int, *, zero_crossings: int = 6,
             rolloff: float = 0.99) -> Tensor:
    """Band-limited resampling by windowed-sinc interpolation (Hann window).

    ``y[j] = sum_i x[i] h(i/orig - j/new)`` with ``h`` a sinc cut at ``rolloff`` times the
    lower Nyquist frequency, windowed over ``zero_crossings`` zero crossings each side; the
    filters are built in float64 and applied in ``x``'s dtype by a strided convolution.

    Args:
        x: ``[..., L]`` floating waveform.
        orig_freq, new_freq: integer rates (Hz).

    Returns:
        ``[..., ceil(L new / orig)]``.
    """
    if not x.is_floating_point():
        raise TypeError(f"resample needs a floating waveform, got {x.dtype}")
    for name, f in (("orig_freq", orig_freq), ("new_freq", new_freq)):
        if not isinstance(f, int) or f <= 0:
            raise ValueError(f"{name} must be a positive integer (Hz), got {f!r}")
    if orig_freq == new_freq:
        return x
    g = math.gcd(orig_freq, new_freq)
    orig, new = orig_freq // g, new_freq // g
    kernel, width = _sinc_kernel(orig, new, zero_crossings, rolloff, x.dtype)
    shape = x.shape
    flat = torch.nn.functional.pad(x.reshape(-1, shape[-1]), (width, width + orig))
    y = torch.nn.functional.conv1d(flat[:, None], kernel.to(x.device), stride=orig)
    y = y.transpose(1, 2).reshape(flat.shape[0], -1)[..., : math.ceil(new * shape[-1] / orig)]
    return y.reshape(*shape[:-1], y.shape[-1])


def power_spectrogram(x: Tensor, n_fft: int, hop: int) -> Tensor:
    """``|STFT|^2`` with a periodic Hann window of ``n_fft``, centred (reflection padding).

    Args:
        x: ``[..., L]`` waveform.

    Returns:
        ``[..., n_fft // 2 + 1, 1 + L // hop]`` power per frequency bin and frame.
    """
    shape = x.shape
    window = torch.hann_window(n_fft, dtype=x.dtype, device=x.device)
    spec = torch.stft(x.reshape(-1, shape[-1]), n_fft=n_fft, hop_length=hop, win_length=n_fft,
                      window=window, center=True, pad_mode="reflect", normalized=False,
                      onesided=True, return_complex=True)
    power = spec.abs().pow(2.0)
    return power.reshape(*shape[:-1], *power.shape[-2:])


def _hz_to_mel(f: float) -> float:
    return 2595.0 * math.log10(1.0 + f / 700.0)


def mel_filter_bank(n_freqs: int, sample_rate: int, n_mels: int, f_min: float,
                    f_max: float) -> Tensor:
    """Triangular HTK mel filters, unnormalised, float32 ``[n_freqs, n_mels]``.

    Filter ``m`` rises linearly from mel point ``m`` to ``m + 1`` and falls to ``m + 2``; the
    ``n_mels + 2`` points are equally spaced in ``mel = 2595 log10(1 + f/700)`` from
    ``f_min`` to ``f_max``; the bins are ``n_freqs`` frequencies equally spaced from 0 to
    ``sample_rate // 2``. Filters whose support lies above the last bin are all zero.
    """
    # float32 throughout, whatever the default dtype: the reference's arithmetic.
    freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float32)
    mels = torch.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2, dtype=torch.float32)
    points = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    widths = points[1:] - points[:-1]
    slopes = points[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    return torch.maximum(torch.zeros(1), torch.minimum(down, up))


def power_to_db(x: Tensor, amin: float = 1e-10) -> Tensor:
    """``10 log10(max(x, amin))`` (reference power 1, no dynamic-range clip)."""
    return 10.0 * torch.log10(torch.clamp(x, min=amin))


@dataclass(frozen=True)
class MelRecipe:
    """Waveform -> log-mel features, the DCLS GSC preprocessing by default.

    Fields are the chain's parameters; :meth:`params` is the recipe part of a cache key.
    ``f_max``: ``"reference"`` (14 kHz, as the DCLS code asks, above the 4 kHz Nyquist
    frequency), ``"nyquist"`` (``target_rate / 2``) or a number of Hz.
    """

    length: int = 16_000
    orig_rate: int = 16_000
    target_rate: int = 8_000
    n_fft: int = 256
    hop: int = 80
    n_mels: int = 140
    f_min: float = 50.0
    f_max: float | str = "reference"

    name = "dcls-gsc-logmel"
    REFERENCE_F_MAX = 14_000.0

    def __post_init__(self) -> None:
        for f in ("length", "orig_rate", "target_rate", "n_fft", "hop", "n_mels"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"MelRecipe.{f} must be a positive integer, got {v!r}")
        if isinstance(self.f_max, str) and self.f_max not in ("reference", "nyquist"):
            raise ValueError(f"MelRecipe.f_max must be 'reference', 'nyquist' or Hz, got "
                             f"{self.f_max!r}")
        if not 0 <= self.f_min < self.f_max_hz:
            raise ValueError(f"MelRecipe: need 0 <= f_min < f_max, got f_min={self.f_min!r}, "
                             f"f_max={self.f_max_hz!r}")

    @property
    def f_max_hz(self) -> float:
        """Upper edge of the mel range in Hz."""
        if self.f_max == "reference":
            return self.REFERENCE_F_MAX
        if self.f_max == "nyquist":
            return self.target_rate / 2
        return float(self.f_max)

    @property
    def n_frames(self) -> int:
        """Frames T of one clip: ``1 + resampled length // hop`` (101 for GSC)."""
        return 1 + math.ceil(self.length * self.target_rate / self.orig_rate) // self.hop

    def params(self) -> dict[str, Any]:
        """Name and fields (JSON-serialisable)."""
        return {"recipe": self.name, **dataclasses.asdict(self)}

    def filters(self) -> Tensor:
        """The mel filter bank ``[n_fft // 2 + 1, n_mels]``."""
        return mel_filter_bank(self.n_fft // 2 + 1, self.target_rate, self.n_mels, self.f_min,
                               self.f_max_hz)

    def __call__(self, waveform: Tensor) -> Tensor:
        """Features of ``waveform [L]`` (float32 at ``orig_rate``): time-first ``[T, n_mels]``
        in dB."""
        x = fit_length(waveform, self.length)
        x = resample(x, self.orig_rate, self.target_rate)
        power = power_spectrogram(x, self.n_fft, self.hop)          # [F, T]
        mel = torch.matmul(power.transpose(-1, -2), self.filters())  # [T, n_mels]
        return power_to_db(mel)
