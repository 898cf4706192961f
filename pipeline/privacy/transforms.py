"""Transformations a leaked voice may have gone through, applied to reference audio (16 kHz mono).

The leak check enrols every reference speaker under each of `ENROLMENT_VARIANTS`, so a clip that
reproduces a voice pitch-shifted, band-limited or buried under accompaniment still meets a
centroid made the same way; canaries are built from held-out utterances with `CANARY_TRANSFORMS`.
Every transformation is deterministic (seeded), so embeddings can be cached.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

RATE = 16_000  # the speaker encoder's rate; every function here works at it


def pitch_shift(audio: np.ndarray, semitones: float) -> np.ndarray:
    """Phase-vocoder pitch shift (formants move with the pitch), duration kept."""
    import librosa

    return librosa.effects.pitch_shift(audio, sr=RATE, n_steps=semitones).astype(np.float32)


def band_limit(audio: np.ndarray, rate: int = 8_000) -> np.ndarray:
    """Down to `rate` and back: nothing above rate / 2 survives (telephone-like)."""
    import librosa

    low = librosa.resample(audio, orig_sr=RATE, target_sr=rate)
    return librosa.resample(low, orig_sr=rate, target_sr=RATE, )[: audio.size].astype(np.float32)


def tone_chord(n_samples: int, seed: int | None = None, root_hz: float | None = None) -> np.ndarray:
    """A steady major triad on `root_hz` (or a seeded root between 150 and 400 Hz): (n_samples,) float32."""
    root = root_hz if root_hz is not None else np.random.default_rng(seed).uniform(150.0, 400.0)
    t = np.arange(n_samples) / RATE
    return sum(np.sin(2 * np.pi * root * ratio * t) for ratio in (1.0, 1.26, 1.5)).astype(np.float32)


def mix_at_snr(voice: np.ndarray, other: np.ndarray, snr_db: float = 0.0) -> np.ndarray:
    """`voice` with `other` (looped or cut to its length) added at `snr_db` (RMS ratio), peak kept below 1."""
    other = np.resize(other, voice.size).astype(np.float64)
    voice_rms, other_rms = np.sqrt(np.mean(voice.astype(np.float64) ** 2)), np.sqrt(np.mean(other ** 2))
    if voice_rms == 0 or other_rms == 0:
        return voice.astype(np.float32)
    mixed = voice + other * (voice_rms / other_rms) * 10 ** (-snr_db / 20)
    peak = np.max(np.abs(mixed))
    return (mixed / peak * 0.9 if peak > 0.9 else mixed).astype(np.float32)


def band_pass_fft(audio: np.ndarray, low_hz: float = 250.0, high_hz: float = 3_600.0) -> np.ndarray:
    """Brick-wall band-pass in the frequency domain: a phone-like band, by another method than a filter."""
    spectrum = np.fft.rfft(audio.astype(np.float64))
    freqs = np.fft.rfftfreq(audio.size, 1 / RATE)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0
    return np.fft.irfft(spectrum, n=audio.size).astype(np.float32)


def arpeggio_band(n_samples: int, seed: int) -> np.ndarray:
    """Accompaniment for enrolment: sawtooth arpeggios over a minor/major progression with a kick on every
    beat (another generator than the calibration music of `conditions.py`). (n_samples,) float32."""
    rng = np.random.default_rng(seed)
    step = int(RATE * rng.uniform(0.12, 0.2))  # one arpeggio note
    root = 130.8 * 2 ** (rng.integers(0, 12) / 12)
    t = np.arange(step) / RATE
    band = np.zeros(n_samples)
    for number, start in enumerate(range(0, n_samples, step)):
        chord = (0, 3, 7, 12) if (number // 16) % 2 else (0, 4, 7, 12)
        freq = root * 2 ** ((chord[number % 4] + 5 * ((number // 8) % 2)) / 12)
        note = 2 * ((freq * t) % 1.0) - 1.0  # sawtooth
        note *= np.exp(-t * 8)
        end = min(n_samples, start + step)
        band[start:end] += note[: end - start]
        if number % 4 == 0:
            kick = np.sin(2 * np.pi * 60 * t) * np.exp(-t * 30) * 1.5
            band[start:end] += kick[: end - start]
    return (band / max(np.max(np.abs(band)), 1e-9) * 0.9).astype(np.float32)


def tape_speed(audio: np.ndarray, semitones: float) -> np.ndarray:
    """Tape-style change: pitch, formants and tempo move together (resampled with soxr, via librosa)."""
    import librosa

    return librosa.resample(audio, orig_sr=RATE * 2 ** (semitones / 12), target_sr=RATE).astype(np.float32)


def plucked_string(string: np.ndarray, n_samples: int) -> np.ndarray:
    """Karplus-Strong: the string's samples, then note[i] = 0.498 * (note[i - p] + note[i - p + 1]) for a period
    p. Each stretch of p - 1 samples depends only on earlier ones, so it is computed at once (the same sums, in
    the same order, as a sample-by-sample loop over a circular buffer). (n_samples,) float64."""
    period = string.size
    note = np.empty(n_samples)
    note[: min(period, n_samples)] = string[: min(period, n_samples)]
    step = max(1, period - 1)
    for begin in range(period, n_samples, step):
        end = min(n_samples, begin + step)
        note[begin:end] = 0.498 * (note[begin - period:end - period] + note[begin - period + 1:end - period + 1])
    return note


def plucked_band(n_samples: int, seed: int) -> np.ndarray:
    """Accompaniment for enrolment: Karplus-Strong plucked chords and noise-burst drums. (n_samples,) float32."""
    rng = np.random.default_rng(seed)
    band = np.zeros(n_samples)
    bar = int(RATE * rng.uniform(1.0, 2.0))
    for start in range(0, n_samples, bar):
        root = 98.0 * 2 ** (rng.integers(0, 12) / 12)
        for interval in (0, 4, 7, 12):
            period = int(RATE / (root * 2 ** (interval / 12)))
            band[start:start + min(bar, n_samples - start)] += plucked_string(rng.uniform(-1, 1, period),
                                                                             min(bar, n_samples - start))
        for beat in range(4):
            hit = start + beat * bar // 4
            burst = rng.standard_normal(int(0.05 * RATE)) * np.exp(-np.arange(int(0.05 * RATE)) / (0.01 * RATE))
            end = min(n_samples, hit + burst.size)
            if hit < n_samples:
                band[hit:end] += 2 * burst[: end - hit]
    return (band / max(np.max(np.abs(band)), 1e-9) * 0.9).astype(np.float32)


def _tones(root_hz: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda audio: mix_at_snr(audio, tone_chord(audio.size, root_hz=root_hz), 0.0)


@functools.lru_cache(maxsize=8)  # enrolment's two seeds; the encoder training's eight (robust_encoder.py)
def _sampled_piece(seed: int) -> np.ndarray:
    from pipeline.privacy.music import sampled_band

    return sampled_band(60 * RATE, seed)  # rendered once per process: one FluidSynth call, not one per utterance


def _sampled(n_samples: int, seed: int) -> np.ndarray:
    """The first `n_samples` of a minute of enrolment music (repeated for a longer signal)."""
    return np.resize(_sampled_piece(seed), n_samples)


def _noise(audio: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(11)
    return mix_at_snr(audio, rng.standard_normal(audio.size).astype(np.float32), 0.0)


# name -> transformation; "clean" first. Each adds one centroid per speaker.
ENROLMENT_VARIANTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "clean": lambda audio: audio,
    "pitch+1": lambda audio: pitch_shift(audio, 1.0),
    "pitch-1": lambda audio: pitch_shift(audio, -1.0),
    "pitch+2": lambda audio: pitch_shift(audio, 2.0),
    "pitch-2": lambda audio: pitch_shift(audio, -2.0),
    "band8k": band_limit,
    # A steady chord masks different parts of a voice depending on where it sits: five registers,
    # a major third apart, cover roots from 150 to 400 Hz.
    "tones0db-150hz": _tones(150.0),
    "tones0db-190hz": _tones(190.0),
    "tones0db-240hz": _tones(240.0),
    "tones0db-300hz": _tones(300.0),
    "tones0db-380hz": _tones(380.0),
    "noise0db": _noise,
    # A band of instruments under the voice, a phone-like band, tape-speed changes: conditions that move a
    # GE2E embedding far from the clean one. No room variants: reverberant centroids of every speaker look
    # alike, so reverberant impostors met them as closely as leaks did (measured on the benchmark's tuning
    # part: overall recall 0.91 with three room variants, 0.95 without, at the same FPR bound).
    "band0db": lambda audio: mix_at_snr(audio, arpeggio_band(audio.size, 21), 0.0),
    "band6db": lambda audio: mix_at_snr(audio, arpeggio_band(audio.size, 22), 6.0),
    "phone-band": band_pass_fft,
    "tape+1.5": lambda audio: tape_speed(audio, 1.5),
    "tape-1.5": lambda audio: tape_speed(audio, -1.5),
    "plucked0db": lambda audio: mix_at_snr(audio, plucked_band(audio.size, 23), 0.0),
    # Sampled instruments (FluidSynth, TimGM6mb: `music.py`) mask a voice as no synthetic accompaniment above
    # does (the privacy benchmark's tuning parts: espeak-ng voices under csound's GM bank at 0 dB 0.50 -> 0.73,
    # at 6 dB 0.85 -> 0.96; overall 0.833 -> 0.868 and, on flite voices, 0.963 -> 0.981).
    "sampled0db": lambda audio: mix_at_snr(audio, _sampled(audio.size, 24), 0.0),
    "sampled6db": lambda audio: mix_at_snr(audio, _sampled(audio.size, 25), 6.0),
}


def canaries(audio: np.ndarray, index: int, accompaniment: np.ndarray | None) -> dict[str, np.ndarray]:
    """Known positives from one held-out utterance: pitch-shifted one semitone (up for even `index`,
    down for odd), mixed under `accompaniment` (generated audio; a tone chord if None) at 0 dB SNR,
    and band-limited to 8 kHz sampling."""
    under = accompaniment if accompaniment is not None and np.any(accompaniment) else tone_chord(audio.size, index)
    return {
        "pitch±1": pitch_shift(audio, 1.0 if index % 2 == 0 else -1.0),
        "mixed0db": mix_at_snr(audio, under, 0.0),
        "band8k": band_limit(audio),
    }
