"""Google Speech Commands: split, labels, DCLS log-mel features against an independent
float64 computation from the formulas, cache, and the errors of a malformed tree."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from ctsnn.data import PaddedCollate
from ctsnn.data.audio import (
    MelRecipe,
    WavFormatError,
    mel_filter_bank,
    power_spectrogram,
    read_wav,
    resample,
)
from ctsnn.data.speech_commands import WORDS, SpeechCommands, SpeechCommandsLayoutError


def write_wav(path: Path, samples: np.ndarray, rate: int = 16_000, width: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())


def tone(freq: float, n: int, amp: float = 8000.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16_000
    return np.round(amp * np.sin(2 * np.pi * freq * t) + rng.normal(0, 200, n)).astype(np.int16)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "speech_commands_v0.02"
    files = {
        "yes/aa11_nohash_0.wav": tone(440, 16_000),
        "yes/bb22_nohash_0.wav": tone(660, 12_000, seed=1),      # short: padded
        "no/aa11_nohash_1.wav": tone(1000, 17_000, seed=2),      # long: truncated
        "no/cc33_nohash_0.wav": tone(250, 16_000, seed=3),
        "up/dd44_nohash_0.wav": tone(3000, 16_000, seed=4),
        "up/ee55_nohash_2.wav": tone(1500, 9_000, seed=5),
    }
    for rel, x in files.items():
        write_wav(root / rel, x)
    write_wav(root / "_background_noise_" / "white_noise.wav", tone(100, 16_000))
    (root / "validation_list.txt").write_text("no/cc33_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("up/ee55_nohash_2.wav\nyes/bb22_nohash_0.wav\n\n")
    return root


def test_official_split_and_labels(tree: Path) -> None:
    train = SpeechCommands(tree, "training", features=False)
    val = SpeechCommands(tree, "validation", features=False)
    test = SpeechCommands(tree, "testing", features=False)
    assert train.files == ["no/aa11_nohash_1.wav", "up/dd44_nohash_0.wav",
                           "yes/aa11_nohash_0.wav"]
    assert val.files == ["no/cc33_nohash_0.wav"]
    assert test.files == ["up/ee55_nohash_2.wav", "yes/bb22_nohash_0.wav"]   # list order
    assert set(train.files).isdisjoint(val.files + test.files)
    assert [WORDS[k] for k in train.labels] == ["no", "up", "yes"]
    assert train.speakers == ["aa11", "dd44", "aa11"]
    assert len(WORDS) == 35 and list(WORDS) == sorted(WORDS)
    x, y = test[1]
    assert x.shape == (16_000,) and x.dtype == torch.float32 and WORDS[y] == "yes"
    assert torch.all(x[12_000:] == 0)                       # zero-padded at the end


def test_torchaudio_layout_is_found(tree: Path) -> None:
    outer = tree.parent / "outer"
    (outer / "SpeechCommands").mkdir(parents=True)
    tree.rename(outer / "SpeechCommands" / "speech_commands_v0.02")
    assert len(SpeechCommands(outer, "training", features=False)) == 3


def test_wav_values_are_int16_over_32768(tmp_path: Path) -> None:
    samples = np.array([-32768, -1, 0, 1, 32767], dtype=np.int16)
    write_wav(tmp_path / "a.wav", samples)
    x = read_wav(tmp_path / "a.wav", sample_rate=16_000)
    assert torch.equal(x, torch.tensor(samples / 32768.0, dtype=torch.float32))


# ------------------------------------------------------------- features vs the formulas
def reference_resample(x: np.ndarray, orig: int = 2, new: int = 1, zeros: int = 6,
                       rolloff: float = 0.99) -> np.ndarray:
    """y[j] = sum_i x[i] h(i/orig - j/new), h = windowed sinc, evaluated point by point."""
    base = min(orig, new) * rolloff
    n_out = math.ceil(len(x) * new / orig)
    y = np.zeros(n_out)
    for j in range(n_out):
        i = np.arange(len(x))
        u = np.clip((i / orig - j / new) * base, -zeros, zeros)
        h = np.where(u == 0, 1.0, np.sin(np.pi * u) / np.where(u == 0, 1.0, np.pi * u))
        h *= np.cos(u * np.pi / zeros / 2) ** 2 * base / orig
        y[j] = np.sum(x * h)
    return y


def reference_filters(f_max: float) -> np.ndarray:
    """HTK triangles evaluated piecewise in float64, [129 bins, 140 filters]."""
    freqs = np.linspace(0, 4000, 129)
    mel = lambda f: 2595 * np.log10(1 + f / 700)                       # noqa: E731
    pts = 700 * (10 ** (np.linspace(mel(50.0), mel(f_max), 142) / 2595) - 1)
    fb = np.zeros((129, 140))
    for m in range(140):
        lo, c, hi = pts[m], pts[m + 1], pts[m + 2]
        for k, f in enumerate(freqs):
            if lo < f <= c:
                fb[k, m] = (f - lo) / (c - lo)
            elif c < f < hi:
                fb[k, m] = (hi - f) / (hi - c)
    return fb


def reference_power(wave16: np.ndarray) -> np.ndarray:
    """Pad/truncate, resample by the direct sum, |DFT|^2 of Hann frames: [T, 129]."""
    x = np.zeros(16_000)
    x[: min(16_000, len(wave16))] = wave16[:16_000]
    y = reference_resample(x)
    n_fft, hop = 256, 80
    padded = np.pad(y, n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)    # periodic Hann
    frames = [padded[s: s + n_fft] * window for s in range(0, len(padded) - n_fft + 1, hop)]
    return np.abs(np.fft.rfft(np.array(frames), axis=1)) ** 2


@pytest.mark.parametrize("f_max", [14_000.0, 4_000.0])
def test_filter_bank_matches_the_formula(f_max: float) -> None:
    # float32 arithmetic (the reference's) against float64: the points differ by ~1e-4 Hz.
    fb = mel_filter_bank(129, 8000, 140, 50.0, f_max).double().numpy()
    np.testing.assert_allclose(fb, reference_filters(f_max), atol=3e-5)


@pytest.mark.parametrize("f_max", ["reference", "nyquist"])
def test_features_match_the_formulas(tree: Path, f_max: str) -> None:
    data = SpeechCommands(tree, "training", recipe=MelRecipe(f_max=f_max))
    x, _ = data[0]
    assert x.shape == (101, 140) and x.dtype == torch.float32
    raw = data.waveform(0).double().numpy()
    power = reference_power(raw)
    peak = power.max()
    np.testing.assert_allclose(power_spectrogram(resample(data.waveform(0), 16_000, 8_000),
                                                 256, 80).T.double().numpy(), power,
                               rtol=1e-3, atol=1e-6 * peak)
    # The filters are checked against the formula above; here the whole chain with them (a
    # filter holding one bin near its edge amplifies their float32 rounding, ~1 % in power).
    fb = data.recipe.filters().double().numpy()
    ref = 10 * np.log10(np.maximum(power @ fb, 1e-10))
    live = ref > -60            # float32 round-off dominates far below the signal
    assert live.sum() > 1000
    np.testing.assert_allclose(x.numpy()[live], ref[live], atol=2e-3)
    assert np.all(x.numpy()[ref < -99.99] == pytest.approx(-100.0, abs=1e-3))


def test_reference_f_max_leaves_upper_filters_empty() -> None:
    fb_ref = MelRecipe().filters()
    fb_nyq = MelRecipe(f_max="nyquist").filters()
    assert fb_ref.shape == fb_nyq.shape == (129, 140)
    empty_ref = int((fb_ref.max(dim=0).values == 0).sum())
    # HTK mel of 4 kHz lies 62 % of the way from 50 Hz to 14 kHz: the filters starting above
    # 4 kHz (53 of 140) see no bin at all. With the Nyquist-correct edge 7 low filters are
    # empty instead: 140 filters below 4 kHz are narrower than the 31.25 Hz bins at the bottom.
    assert empty_ref == int((reference_filters(14_000.0).max(axis=0) == 0).sum()) == 53
    empty_nyq = fb_nyq.max(dim=0).values == 0
    assert int(empty_nyq.sum()) == int((reference_filters(4_000.0).max(axis=0) == 0).sum()) == 7
    assert bool(empty_nyq[:87].any()) and not bool(empty_nyq[40:].any())
    assert not bool((fb_ref.max(dim=0).values == 0)[:87].any())


def test_resample_matches_direct_sum_and_keeps_a_tone() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    y = resample(torch.tensor(x), 16_000, 8_000).numpy()
    np.testing.assert_allclose(y, reference_resample(x), atol=1e-12)
    t = np.arange(16_000) / 16_000
    sine = torch.tensor(np.sin(2 * np.pi * 1000 * t), dtype=torch.float32)
    down = resample(sine, 16_000, 8_000)
    expect = np.sin(2 * np.pi * 1000 * np.arange(8_000) / 8_000)
    assert np.max(np.abs(down.numpy()[100:-100] - expect[100:-100])) < 1e-3


def test_filter_bank_peaks_and_spectrogram_shape() -> None:
    fb = mel_filter_bank(129, 8000, 140, 50.0, 4000.0)
    assert torch.all(fb >= 0) and fb.dtype == torch.float32
    assert torch.all(fb.max(dim=0).values <= 1.0)
    power = power_spectrogram(torch.randn(3, 8000), 256, 80)
    assert power.shape == (3, 129, 101)


def test_cache_hit_and_key_follows_recipe(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    a = SpeechCommands(tree, "training", cache_dir=cache)
    b = SpeechCommands(tree, "training", cache_dir=cache)
    c = SpeechCommands(tree, "training", cache_dir=cache, recipe=MelRecipe(f_max="nyquist"))
    assert (a.cache_status, b.cache_status, c.cache_status) == ("built", "hit", "built")
    assert a.cache_path == b.cache_path != c.cache_path
    direct = SpeechCommands(tree, "training")
    for j in range(len(a)):
        assert torch.equal(b[j][0], direct[j][0])
    batch, labels, lengths = PaddedCollate()([b[0], b[1]])
    assert batch.shape == (101, 2, 140) and lengths.tolist() == [101, 101]


def test_malformed_trees_name_the_file(tree: Path) -> None:
    (tree / "testing_list.txt").unlink()
    with pytest.raises(SpeechCommandsLayoutError, match="testing_list.txt: split list missing"):
        SpeechCommands(tree, "training")
    (tree / "testing_list.txt").write_text("yes/missing_nohash_0.wav\n")
    with pytest.raises(SpeechCommandsLayoutError, match=r"testing_list.txt, line 1"):
        SpeechCommands(tree, "testing")
    (tree / "testing_list.txt").write_text("")
    (tree / "yes" / "zz99_nohash_0.wav").write_bytes(b"not a wav file at all")
    data = SpeechCommands(tree, "training")
    j = data.files.index("yes/zz99_nohash_0.wav")
    with pytest.raises(WavFormatError, match="zz99_nohash_0.wav: not a readable WAV"):
        data[j]
    (tree / "yes" / "zz99_nohash_0.wav").unlink()
    write_wav(tree / "no" / "slow_nohash_0.wav", tone(440, 8000), rate=8000)
    data = SpeechCommands(tree, "training")
    with pytest.raises(WavFormatError, match="slow_nohash_0.wav: sample rate 8000 Hz"):
        data[data.files.index("no/slow_nohash_0.wav")]
    write_wav(tree / "banana" / "aa11_nohash_0.wav", tone(440, 100))
    with pytest.raises(SpeechCommandsLayoutError, match="banana"):
        SpeechCommands(tree, "training")
    with pytest.raises(SpeechCommandsLayoutError, match="not a Speech Commands tree"):
        SpeechCommands(tree / "yes", "training")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="f_max"):
        MelRecipe(f_max="huge")
    with pytest.raises(ValueError, match="n_mels"):
        MelRecipe(n_mels=0)
    with pytest.raises(ValueError, match="split"):
        SpeechCommands(".", "train")
