"""Calibration conditions: how a leaked voice may reach a clip, done by other means than enrolment.

Enrolment (`transforms.ENROLMENT_VARIANTS`) gives every speaker centroids under librosa's phase-vocoder
pitch shifts, an 8 kHz resample, steady tone chords and white noise. A threshold calibrated on those
same variants flatters itself: its genuine trials meet a centroid made the same way. The calibration
trials here use *other* implementations and *other* conditions — tape-style pitch change (resampling),
rooms (synthetic impulse responses), synthetic music with drums and a bass line, a telephone band-pass,
a few seconds of voice inside a longer music clip — for genuine trials (reference utterances, leave
one out) and impostor trials (the cohort's voices, and music or noise with no voice) alike.

Every condition is a deterministic function of (audio, seed): (samples,) float32 @ 16 kHz in and out.

Condition-aware scoring: a room lowers a leaked voice's score far more than it lowers an impostor's (on the
privacy benchmark's tuning part of espeak-ng voices, genuine trials in the calibration room scored a median 0.33
against 0.60 clean, while the room's impostors stayed under the clean impostors' threshold). One threshold for
every clip is then set by the clean and phone-band impostors and misses voices in rooms. `ConditionDetector`
tells a reverberant clip from the rest by its (raw) speaker embedding — a linear classifier trained on the
impostor cohort's embeddings, labelled by the calibration condition that made them (`DETECTED_CONDITIONS`) —
and calibration gives each detected condition its own offset (`calibration.condition_offsets`). Trained on
the calibration room alone, it also found the tuning parts' feedback-delay-network halls and Schroeder
reverberators (67-98% of a row's clips on the espeak-ng tuning part, 16-100% on `tuning`), and none of the
clean, pitched, band-limited or music clips; but only 12-42% of the held-out parts' sox-reverb leaks, which
therefore mostly kept the shared threshold. A second, long and wet calibration room taught it more (92-98% on
the espeak-ng tuning part) but its impostors score high, so the offset turned positive and rooms lost recall on
`tuning` (README): not kept. With the fine-tuned encoder (`robust_encoder.py`), taught to embed a voice in a room
where it embeds clean, the embeddings say less about rooms: the detector calls 0-8% of the held-out parts' sox and
large pyroomacoustics rooms reverberant (about 40% of the small and medium ones), the offsets come out near zero
(-0.002 and -0.009 on the festival held-out parts), and the rooms are caught by the encoder instead (0.88-1.00).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.privacy.transforms import mix_at_snr

RATE = 16_000

Condition = Callable[[np.ndarray, int], np.ndarray]


def resample_pitch(audio: np.ndarray, semitones: float) -> np.ndarray:
    """Tape-style pitch change: resample so that played at RATE the pitch (and tempo) move by `semitones`."""
    from scipy.signal import resample_poly

    factor = 2 ** (semitones / 12)  # > 1: higher and shorter
    up, down = 1000, int(round(1000 * factor))
    return resample_poly(audio.astype(np.float64), up, down).astype(np.float32)


def room_impulse(seed: int, rt60_s: float | None = None) -> np.ndarray:
    """A synthetic room impulse response: direct path, a few early reflections and an exponentially
    decaying noise tail of a seeded RT60 between 0.3 and 0.9 s. (samples,) float32, peak 1."""
    rng = np.random.default_rng(seed)
    rt60 = rt60_s if rt60_s is not None else rng.uniform(0.3, 0.9)
    n = int(rt60 * RATE)
    t = np.arange(n) / RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    tail[: int(0.005 * RATE)] = 0.0
    response = 0.5 * tail / np.max(np.abs(tail))
    response[0] = 1.0
    for delay_ms in rng.uniform(3, 25, size=4):  # early reflections
        response[int(delay_ms * RATE / 1000)] += rng.uniform(0.3, 0.7) * rng.choice([-1, 1])
    return (response / np.max(np.abs(response))).astype(np.float32)


def reverberate(audio: np.ndarray, seed: int) -> np.ndarray:
    from scipy.signal import fftconvolve

    wet = fftconvolve(audio.astype(np.float64), room_impulse(seed))[: audio.size]
    peak = np.max(np.abs(wet))
    return (wet / peak * 0.9 if peak > 0 else wet).astype(np.float32)


def synthetic_music(n_samples: int, seed: int) -> np.ndarray:
    """Seeded music with no voice: a chord progression of harmonic tones with note envelopes, a bass line,
    kick and hi-hat on a seeded tempo. (n_samples,) float32, peak about 0.9."""
    rng = np.random.default_rng(seed)
    bpm = rng.uniform(80, 150)
    beat = int(60 / bpm * RATE)
    root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
    progression = rng.choice([0, 3, 5, 7, 8, 10], size=4)
    music = np.zeros(n_samples)
    t = np.arange(beat * 4) / RATE
    envelope = np.exp(-t * rng.uniform(1.0, 4.0))
    harmonics = rng.uniform(0.2, 0.8, size=6) ** np.arange(1, 7)
    for bar_start in range(0, n_samples, beat * 4):
        degree = progression[(bar_start // (beat * 4)) % 4]
        chord = [root * 2 ** ((degree + interval) / 12) * 2 for interval in (0, 4, 7)]
        tone = sum(h * np.sin(2 * np.pi * f * (k + 1) * t + rng.uniform(0, 6.28))
                   for f in chord for k, h in enumerate(harmonics))
        bass = np.sign(np.sin(2 * np.pi * root * 2 ** (degree / 12) / 2 * t)) * 0.6
        segment = (tone / 3 + bass) * envelope
        end = min(n_samples, bar_start + segment.size)
        music[bar_start:end] += segment[: end - bar_start]
    kick_t = np.arange(int(0.12 * RATE)) / RATE
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-kick_t * 30)) * kick_t) * np.exp(-kick_t * 25) * 3
    hat = rng.standard_normal(int(0.03 * RATE)) * np.exp(-np.arange(int(0.03 * RATE)) / (0.005 * RATE))
    for start in range(0, n_samples, beat):
        for hit, offset in ((kick, 0), (hat, beat // 2)):
            begin = start + offset
            end = min(n_samples, begin + hit.size)
            if begin < n_samples:
                music[begin:end] += hit[: end - begin]
    peak = np.max(np.abs(music))
    return (music / peak * 0.9 if peak > 0 else music).astype(np.float32)


def telephone(audio: np.ndarray, seed: int = 0) -> np.ndarray:
    """300-3400 Hz band-pass (4th-order Butterworth), as a phone line passes speech."""
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, [300, 3400], btype="bandpass", fs=RATE, output="sos")
    return sosfiltfilt(sos, audio.astype(np.float64)).astype(np.float32)


def voice_inside_music(audio: np.ndarray, seed: int, voice_s: float = 3.0, clip_s: float = 10.0,
                       snr_db: float = 3.0) -> np.ndarray:
    """`voice_s` seconds of the voice placed at a seeded offset inside `clip_s` seconds of music."""
    rng = np.random.default_rng(seed)
    voice = audio[: int(voice_s * RATE)]
    music = synthetic_music(int(clip_s * RATE), seed + 1)
    start = int(rng.integers(0, music.size - voice.size + 1))
    padded = np.zeros(music.size, dtype=np.float32)
    padded[start:start + voice.size] = voice
    voice_rms = np.sqrt(np.mean(voice.astype(np.float64) ** 2))
    music_rms = np.sqrt(np.mean(music[start:start + voice.size].astype(np.float64) ** 2))
    gain = 0.0 if music_rms == 0 else voice_rms / music_rms * 10 ** (-snr_db / 20)
    mixed = padded + music * gain
    peak = np.max(np.abs(mixed))
    return (mixed / peak * 0.9 if peak > 0.9 else mixed).astype(np.float32)


# name -> condition(audio, seed). A voice reaching a clip under each of these is a leak to catch.
CALIBRATION_CONDITIONS: dict[str, Condition] = {
    "clean": lambda audio, seed: audio.astype(np.float32),
    "pitch+2 (resampled)": lambda audio, seed: resample_pitch(audio, 2.0),
    "pitch-2 (resampled)": lambda audio, seed: resample_pitch(audio, -2.0),
    "room": reverberate,
    "music 0 dB": lambda audio, seed: mix_at_snr(audio, synthetic_music(audio.size, seed), 0.0),
    "music 6 dB": lambda audio, seed: mix_at_snr(audio, synthetic_music(audio.size, seed), 6.0),
    "telephone": telephone,
    "3 s in 10 s of music": voice_inside_music,
}


def no_voice_clips(count: int, seed: int, seconds: float = 6.0) -> dict[str, list[np.ndarray]]:
    """Impostor clips that hold no voice at all: synthetic music and coloured noise."""
    rng = np.random.default_rng(seed)
    music = [synthetic_music(int(seconds * RATE), seed + i) for i in range(count)]
    noise = []
    for _ in range(count):
        white = rng.standard_normal(int(seconds * RATE))
        tilt = rng.uniform(0.0, 0.98)  # from white to brown-ish
        from scipy.signal import lfilter

        coloured = lfilter([1.0], [1.0, -tilt], white)
        noise.append((0.3 * coloured / np.max(np.abs(coloured))).astype(np.float32))
    return {"music only": music, "noise only": noise}


DEFAULT_CONDITION = "other"
# detected condition -> the calibration conditions whose embeddings teach the detector what it looks like
DETECTED_CONDITIONS: dict[str, tuple[str, ...]] = {"reverberant": ("room",)}
DETECTOR_VERSION = "reverberant-logistic-v1"  # part of the index's fingerprint


@dataclass(frozen=True)
class ConditionDetector:
    """Which condition a clip's voice reached it under, from its raw (not NAP-projected) speaker embedding:
    `condition` if the logistic score `embedding @ weights + bias` is positive, else DEFAULT_CONDITION."""

    condition: str
    weights: np.ndarray  # (dim,)
    bias: float

    def detect(self, embedding: np.ndarray) -> str:
        return self.condition if float(embedding @ self.weights) + self.bias > 0 else DEFAULT_CONDITION


def fit_detector(embeddings: np.ndarray, made_under: list[str], condition: str = "reverberant") -> ConditionDetector:
    """A detector of `condition` from raw embeddings (n, dim) and the calibration condition (or enrolment variant)
    each was made under: L2-regularised logistic regression, the classes weighted equally (lbfgs: deterministic)."""
    from sklearn.linear_model import LogisticRegression

    labels = np.array([name in DETECTED_CONDITIONS[condition] for name in made_under])
    if labels.all() or not labels.any():
        raise ValueError(f"fitting the {condition} detector needs embeddings made under it and others")
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000)
    model.fit(embeddings.astype(np.float64), labels)
    return ConditionDetector(condition, model.coef_[0].astype(np.float32), float(model.intercept_[0]))
