"""The copy check: does a clip reproduce a recording its model trained on?

A model trained long enough on a small corpus copies it, and a copy of a recording is private whether or not its
voice is recognisable. The check measures each clip's distance to the closest record (DCR, as tabular
synthetic-data tools report it) among the training recordings, in a log-mel spectrogram (64 bands, 11.6 ms frames:
the representation the features stage's MFCCs start from). Each WINDOW_S window is taken relative to its own
loudest band (in dB, clipped DYNAMIC_DB below it), so a copy played louder or softer, or spliced into other audio,
is still a copy, then smoothed over about a frame and a band (`BLUR`), so a copy moved a little in pitch or time
still meets its source (on the test voices, phase-vocoder copies a quarter tone up: 8 of 8 caught, 2 of 8 before
the smoothing; a whole semitone or a phase-vocoder stretch of 5% are not reliably caught); the distance is the RMS
difference in dB over the window. A clip's DCR is its closest window's
distance to any training window (every training window, one frame apart, so a copied stretch meets one within
half a frame wherever it starts); silent windows are skipped (silence is close to every silence). A magnitude
spectrogram finds copies without sample alignment (the cross-correlation of `copies.py` only finds sample-aligned
ones; the VQ-VAE's own strided encoder, tried first, moved an exact copy from distance 0 to the held-out level
under a shift of 88 samples).

The yardstick is the corpus itself: the held-out recordings (never trained on) are as new as a recording of the
same kind can be, and their DCRs to the training recordings say how close "new" comes. A clip closer to a
training recording than `ratio` times the closest held-out recording came is a copy.

A model that memorised a recording outputs its *rendition* of it: the recording's codes decoded by its own
VQ-VAE, which can be far from the recording itself (the tiny preset's VQ-VAE after 300 steps on 2.6 s of one
voice: its full-depth rendition of a training recording sat 6.2 dB from it, against 4.4-5.0 dB for held-out
recordings of the same voice, so the perfect copy passed). So when the model is known (`render`), its renditions
of the training recordings join them as records, and the yardstick takes each held-out recording as it is and as
the model renders it (a new clip is a rendition too), whichever comes closer: a memorised clip then meets its
rendition at ~0 dB, while the held-out renditions stayed 3.7-4.2 dB away and other voices' 3.0-4.5 dB.

Only aggregates leave the workspace: never a clip's nearest recording.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.files import atomic_path

WINDOW_S = 0.5
HOP_S = 0.125  # clip windows; training windows are one frame apart
FRAME_SAMPLES = 512  # spectrogram hop: 11.6 ms at 44.1 kHz
N_MELS = 64
DYNAMIC_DB = 40.0  # a window's bands are compared down to this far under its loudest
BLUR = (1.0, 1.0)  # Gaussian sigma over (frames, bands): a copy moved a little in pitch or time still meets it
QUIET_DBFS = -50.0  # windows of quieter audio are skipped
RATE = 44_100
VERSION = 3  # of the representation and records (a cached baseline of another version is rebuilt)


def log_mel(audio: np.ndarray) -> np.ndarray:
    """(frames, N_MELS): the log-mel spectrogram (dB) of mono 44.1 kHz audio."""
    import librosa

    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if audio.size < 4 * FRAME_SAMPLES:
        return np.zeros((0, N_MELS), np.float32)
    mel = librosa.feature.melspectrogram(y=audio, sr=RATE, n_fft=4 * FRAME_SAMPLES, hop_length=FRAME_SAMPLES,
                                         n_mels=N_MELS, center=False)
    return librosa.power_to_db(mel, ref=1.0, amin=1e-12).T.astype(np.float32)


def windows(audio: np.ndarray, dense: bool = False) -> np.ndarray:
    """(windows, width * N_MELS): WINDOW_S windows of the clip's log-mel spectrogram, each relative to its loudest
    band and clipped DYNAMIC_DB under it, then smoothed (`BLUR`), every HOP_S (every frame when `dense`: the training
    side); windows of audio quieter than QUIET_DBFS are left out, and a clip shorter than one window gives none."""
    from scipy.ndimage import gaussian_filter

    mel = log_mel(audio)
    width = round(WINDOW_S * RATE / FRAME_SAMPLES)
    hop = 1 if dense else round(HOP_S * RATE / FRAME_SAMPLES)
    picked = []
    for start in range(0, len(mel) - width + 1, hop):
        stretch = audio[start * FRAME_SAMPLES: (start + width) * FRAME_SAMPLES].astype(np.float64)
        if 10 * np.log10(np.mean(stretch ** 2) + 1e-20) > QUIET_DBFS:
            window = mel[start: start + width]
            relative = np.maximum(window - window.max(), -DYNAMIC_DB)
            picked.append(gaussian_filter(relative, BLUR, mode="nearest").reshape(-1))
    return np.stack(picked).astype(np.float32) if picked else np.zeros((0, width * N_MELS), np.float32)


@dataclass
class CopyBaseline:
    """What a clip is compared with: the training recordings' windows and how close held-out recordings come."""

    train: np.ndarray  # (windows, width * N_MELS)
    holdout_dcr: np.ndarray  # (held-out recordings with a loud window,)
    ratio: float

    @property
    def threshold(self) -> float:
        """A clip whose DCR is below this is a copy: `ratio` x the closest any held-out recording came."""
        return float(self.ratio * np.min(self.holdout_dcr))

    def dcr(self, clip_windows: np.ndarray) -> float | None:
        """RMS dB difference from the clip's closest window to any training window; None without a loud window."""
        if len(clip_windows) == 0:
            return None
        a, b = clip_windows.astype(np.float64), self.train.astype(np.float64)
        squared = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T  # (clip, train windows)
        return float(np.sqrt(max(float(squared.min()), 0.0) / a.shape[1]))

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, train=self.train, holdout_dcr=self.holdout_dcr, ratio=self.ratio)

    @classmethod
    def load(cls, path: Path) -> "CopyBaseline":
        with np.load(path) as stored:
            return cls(stored["train"], stored["holdout_dcr"], float(stored["ratio"]))


def build_baseline(train_audio: list[np.ndarray], holdout_audio: list[np.ndarray], ratio: float,
                   render: Callable[[np.ndarray], np.ndarray] | None = None) -> CopyBaseline:
    """The baseline from a model's training and held-out recordings (mono, 44.1 kHz); `render` (audio -> the
    model's VQ-VAE rendition of it, same length) adds the model's renditions to the records and to the
    yardstick. Raises ValueError when no training or no held-out recording has a loud window (the check could
    not judge anything)."""
    sources = list(train_audio) + ([render(audio) for audio in train_audio] if render is not None else [])
    train = [w for w in (windows(audio, dense=True) for audio in sources) if len(w)]
    if not train:
        raise ValueError(f"no training recording holds a loud window of {WINDOW_S} s: the copy check has nothing "
                         "to compare with")
    baseline = CopyBaseline(np.concatenate(train), np.zeros(0), ratio)
    held = []
    for audio in holdout_audio:
        distances = [d for d in (baseline.dcr(windows(version)) for version in
                                 ([audio, render(audio)] if render is not None else [audio])) if d is not None]
        if distances:
            held.append(min(distances))
    if not held:
        raise ValueError(f"no held-out recording holds a loud window of {WINDOW_S} s: the copy check has no yardstick")
    baseline.holdout_dcr = np.array(held)
    return baseline


def clip_dcr(baseline: CopyBaseline, audio: np.ndarray) -> float | None:
    """A clip's DCR (mono, 44.1 kHz); None when it holds no loud window (nothing to copy)."""
    return baseline.dcr(windows(audio))


def baseline_key(train: list[str], holdout: list[str], ratio: float, model_sha256: str = "") -> str:
    """Cache name of a baseline: the recordings (sha256), the representation and the model that renders them."""
    digest = hashlib.sha256(
        f"v{VERSION}|{WINDOW_S}|{HOP_S}|{FRAME_SAMPLES}|{N_MELS}|{DYNAMIC_DB}|{BLUR}|{QUIET_DBFS}|{ratio}|"
        f"{model_sha256}".encode())
    for sha in sorted(train) + ["|"] + sorted(holdout):
        digest.update(sha.encode())
    return digest.hexdigest()[:24]
