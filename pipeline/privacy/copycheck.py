"""The copy check: does a clip reproduce a recording its model trained on?

A model trained long enough on a small corpus copies it, and a copy of a recording is private whether or not its
voice is recognisable. The check measures each clip's distance to the closest record (DCR, as tabular
synthetic-data tools report it) among the training recordings, in a log-mel spectrogram (64 bands, 11.6 ms frames:
the representation the features stage's MFCCs start from). Each WINDOW_S window is taken relative to its own
loudest band (in dB, clipped DYNAMIC_DB below it), so a copy played louder or softer, or spliced into other audio,
is still a copy, then smoothed over about a frame and a band (`BLUR`), so a copy moved a little in pitch or time
still meets its source; the distance is the RMS difference in dB over the window. Each clip window's distance is
to its closest training window (every training window, one frame apart, so a copied stretch meets one within half a
frame wherever it starts); silent windows are skipped (silence is close to every silence). Two distances per
clip, each with its own yardstick (how close the held-out recordings came the same way), and a clip is a copy when
either comes closer than `ratio` x its yardstick:
- the stretch: those distances averaged over the clip's closest STRETCH_S (1.5 s) of consecutive windows. A copy
  moved in pitch or time stays uniformly close while new speech does not, and one window that a voice says alike in
  two sentences is averaged away. With the closest single window alone, one held-out recording whose sentence began
  as a training one did (0.23 dB apart in one window, 1.1 dB and more in every other) set the yardstick, and copies
  moved by rubberband in pitch or time were all missed (`benchmarks/copies.py`, first held-out part: 105 of 342
  copies caught);
- the closest single window: a model that memorised its corpus may copy it in pieces shorter than the stretch (the
  memorisation test's model: one clip at 0.84 of the stretch yardstick but 0.66 of the window one). When a shared
  window collapses this yardstick, this half grows stricter (judges fewer clips copies), never looser.
`dcr` reports the smaller of the two in the stretch's scale. On the copy benchmark's tuning part, copies sat at most
at 0.64 of the yardstick and new recordings at least at 0.74: hence the default ratio 0.7. A magnitude
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

Beside the distance, an exact/near-copy detector (fingerprint.py): each clip's Chromaprint fingerprint against
every corpus recording's, training and held-out alike (a continuation or re-rendering may start from either, and
both are private); a clip within fingerprint.MAX_BER of one over about 2 s is a copy too. It needs about 4.6 s of
audio on both sides, so short clips and recordings are the distance's alone.

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
STRETCH_S = 1.5  # a copy is a stretch this long every window of which is close (shorter clips: all of it)
FRAME_SAMPLES = 512  # spectrogram hop: 11.6 ms at 44.1 kHz
N_MELS = 64
DYNAMIC_DB = 40.0  # a window's bands are compared down to this far under its loudest
BLUR = (1.0, 1.0)  # Gaussian sigma over (frames, bands): a copy moved a little in pitch or time still meets it
QUIET_DBFS = -50.0  # windows of quieter audio are skipped
RATE = 44_100
VERSION = 5  # of the representation and records (a cached baseline of another version is rebuilt)


def stretch_windows() -> int:
    """Clip windows (every HOP_S) that a STRETCH_S stretch holds; 1 when STRETCH_S is no longer than a window."""
    return max(1, round((STRETCH_S - WINDOW_S) / HOP_S) + 1)


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
    """What a clip is compared with: the training recordings' windows and how close held-out recordings come, over a
    stretch and in their closest single window."""

    train: np.ndarray  # (windows, width * N_MELS)
    holdout_dcr: np.ndarray  # (held-out recordings with a loud window,): their stretch distances
    ratio: float
    holdout_window_dcr: np.ndarray  # (held-out recordings with a loud window,): their closest single windows
    fingerprints: list[np.ndarray]  # every corpus recording long enough to have one (uint32 items); may be none

    @property
    def threshold(self) -> float:
        """A clip whose DCR is below this is a copy: `ratio` x the closest any held-out recording came."""
        return float(self.ratio * np.min(self.holdout_dcr))

    def distances(self, clip_windows: np.ndarray) -> tuple[float, float] | None:
        """(stretch, window): each clip window's RMS dB difference to its closest training window, averaged over the
        clip's closest STRETCH_S of consecutive windows, and the smallest of them; None without a loud window."""
        if len(clip_windows) == 0:
            return None
        a, b = clip_windows.astype(np.float64), self.train.astype(np.float64)
        squared = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T  # (clip, train windows)
        nearest = np.sqrt(np.maximum(squared.min(axis=1), 0.0) / a.shape[1])  # (clip windows,)
        run = min(len(nearest), stretch_windows())
        return float(np.convolve(nearest, np.full(run, 1 / run), mode="valid").min()), float(nearest.min())

    def dcr(self, clip_windows: np.ndarray) -> float | None:
        """The clip's DCR in the stretch's scale: its stretch distance, or its closest window's distance scaled by
        how the two yardsticks compare (closest held-out stretch / closest held-out window), whichever is smaller;
        so the clip is a copy when either comes closer than `ratio` x its own yardstick. None without a loud
        window."""
        found = self.distances(clip_windows)
        if found is None:
            return None
        stretch, window = found
        window_yardstick = float(np.min(self.holdout_window_dcr))
        if window_yardstick == 0:  # a held-out window met a training one exactly: this half judges nothing
            return stretch
        return min(stretch, window * float(np.min(self.holdout_dcr)) / window_yardstick)

    def near_copy_ber(self, audio: np.ndarray) -> float | None:
        """The clip's fingerprint distance (bit error rate) to its closest corpus recording; None when the clip or
        every recording is too short to fingerprint."""
        from pipeline.privacy.fingerprint import closest, fingerprint

        return closest(fingerprint(audio, RATE), self.fingerprints) if self.fingerprints else None

    def save(self, path: Path) -> None:
        bounds = np.cumsum([0] + [len(f) for f in self.fingerprints])
        items = np.concatenate(self.fingerprints) if self.fingerprints else np.zeros(0, np.uint32)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, train=self.train, holdout_dcr=self.holdout_dcr, ratio=self.ratio,
                         holdout_window_dcr=self.holdout_window_dcr, fingerprint_items=items,
                         fingerprint_bounds=bounds)

    @classmethod
    def load(cls, path: Path) -> "CopyBaseline":
        with np.load(path) as stored:
            items, bounds = stored["fingerprint_items"], stored["fingerprint_bounds"]
            return cls(stored["train"], stored["holdout_dcr"], float(stored["ratio"]), stored["holdout_window_dcr"],
                       [items[a:b] for a, b in zip(bounds[:-1], bounds[1:])])


def build_baseline(train_audio: list[np.ndarray], holdout_audio: list[np.ndarray], ratio: float,
                   render: Callable[[np.ndarray], np.ndarray] | None = None) -> CopyBaseline:
    """The baseline from a model's training and held-out recordings (mono, 44.1 kHz); `render` (audio -> the
    model's VQ-VAE rendition of it, same length) adds the model's renditions to the records and to the
    yardstick. Every recording long enough is fingerprinted for the near-copy detector. Raises ValueError when no
    training or no held-out recording has a loud window (the check could not judge anything)."""
    sources = list(train_audio) + ([render(audio) for audio in train_audio] if render is not None else [])
    train = [w for w in (windows(audio, dense=True) for audio in sources) if len(w)]
    if not train:
        raise ValueError(f"no training recording holds a loud window of {WINDOW_S} s: the copy check has nothing "
                         "to compare with")
    baseline = CopyBaseline(np.concatenate(train), np.zeros(0), ratio, np.zeros(0), [])
    held = []
    for audio in holdout_audio:
        found = [d for d in (baseline.distances(windows(version)) for version in
                             ([audio, render(audio)] if render is not None else [audio])) if d is not None]
        if found:
            held.append((min(stretch for stretch, _ in found), min(window for _, window in found)))
    if not held:
        raise ValueError(f"no held-out recording holds a loud window of {WINDOW_S} s: the copy check has no yardstick")
    baseline.holdout_dcr = np.array([stretch for stretch, _ in held])
    baseline.holdout_window_dcr = np.array([window for _, window in held])
    from pipeline.privacy.fingerprint import WINDOW_ITEMS, fingerprint

    printed = (fingerprint(audio, RATE) for audio in list(train_audio) + list(holdout_audio))
    baseline.fingerprints = [items for items in printed if len(items) >= WINDOW_ITEMS]  # shorter ones match nothing
    return baseline


def clip_dcr(baseline: CopyBaseline, audio: np.ndarray) -> float | None:
    """A clip's DCR (mono, 44.1 kHz); None when it holds no loud window (nothing to copy)."""
    return baseline.dcr(windows(audio))


def baseline_key(train: list[str], holdout: list[str], ratio: float, model_sha256: str = "") -> str:
    """Cache name of a baseline: the recordings (sha256), the representation and the model that renders them."""
    digest = hashlib.sha256(
        f"v{VERSION}|{WINDOW_S}|{HOP_S}|{STRETCH_S}|{FRAME_SAMPLES}|{N_MELS}|{DYNAMIC_DB}|{BLUR}|{QUIET_DBFS}|{ratio}|"
        f"{model_sha256}".encode())
    for sha in sorted(train) + ["|"] + sorted(holdout):
        digest.update(sha.encode())
    return digest.hexdigest()[:24]
