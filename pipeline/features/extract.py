"""The `basic` feature set: levels, spectral shape and a silence flag per clip, units in the names.

`FEATURE_COLUMNS` documents every column in one place (the dataset card reuses it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

SILENCE_DBFS = -60.0  # a frame quieter than this (RMS) counts as silent
FRAME_LENGTH = 2048  # samples per analysis frame (46 ms @ 44.1 kHz)
HOP_LENGTH = 512  # samples between frames (11.6 ms @ 44.1 kHz)

# name -> (unit, how it is computed)
FEATURE_COLUMNS: dict[str, tuple[str, str]] = {
    "duration_s": ("s", "number of samples / sample rate"),
    "sample_rate_hz": ("Hz", "sample rate of the FLAC file"),
    "peak_dbfs": ("dBFS", "20 log10 of the largest absolute sample (-inf for digital silence)"),
    "rms_dbfs": ("dBFS", "20 log10 of the root mean square of all samples"),
    "dc_offset": ("full scale", "mean sample value"),
    "silence_ratio": ("fraction", f"share of {FRAME_LENGTH}-sample frames with RMS below {SILENCE_DBFS} dBFS"),
    "zero_crossing_rate": ("crossings/sample", "mean librosa zero-crossing rate over frames"),
    "spectral_centroid_hz_mean": ("Hz", "mean over frames of the magnitude-weighted mean frequency"),
    "spectral_centroid_hz_std": ("Hz", "standard deviation over frames of the spectral centroid"),
    "spectral_flatness_mean": ("ratio 0-1", "mean over frames of geometric / arithmetic mean of the power spectrum"),
    "is_silent": ("flag", f"true when rms_dbfs < {SILENCE_DBFS} dBFS"),
}

FEATURE_SCHEMA = pa.schema(
    [pa.field("clip_id", pa.string(), nullable=False)]
    + [pa.field(name, pa.bool_() if unit == "flag" else pa.float64(), nullable=False)
       for name, (unit, _) in FEATURE_COLUMNS.items()]
)


def _db(value: float) -> float:
    return float(20.0 * np.log10(value)) if value > 0 else float("-inf")


@dataclass(frozen=True)
class BasicFeatures:
    """The `basic` set; `extract` takes a mono signal and returns one row of FEATURE_COLUMNS."""

    name: str = "basic"

    def extract(self, audio: np.ndarray, sample_rate: int) -> dict[str, float | bool]:
        import librosa

        audio = np.asarray(audio, dtype=np.float32)  # (samples,) in [-1, 1]
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError(f"expected a non-empty mono signal, got shape {audio.shape}")
        frames_rms = librosa.feature.rms(y=audio, frame_length=FRAME_LENGTH, hop_length=HOP_LENGTH)[0]  # (frames,)
        centroid = librosa.feature.spectral_centroid(
            y=audio, sr=sample_rate, n_fft=FRAME_LENGTH, hop_length=HOP_LENGTH)[0]  # (frames,) Hz
        flatness = librosa.feature.spectral_flatness(y=audio, n_fft=FRAME_LENGTH, hop_length=HOP_LENGTH)[0]
        zcr = librosa.feature.zero_crossing_rate(audio, frame_length=FRAME_LENGTH, hop_length=HOP_LENGTH)[0]
        rms_dbfs = _db(float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))))
        silent_frames = frames_rms < 10 ** (SILENCE_DBFS / 20)
        return {
            "duration_s": audio.size / sample_rate,
            "sample_rate_hz": float(sample_rate),
            "peak_dbfs": _db(float(np.max(np.abs(audio)))),
            "rms_dbfs": rms_dbfs,
            "dc_offset": float(np.mean(audio)),
            "silence_ratio": float(np.mean(silent_frames)),
            "zero_crossing_rate": float(np.mean(zcr)),
            "spectral_centroid_hz_mean": float(np.mean(centroid)),
            "spectral_centroid_hz_std": float(np.std(centroid)),
            "spectral_flatness_mean": float(np.mean(flatness)),
            "is_silent": bool(rms_dbfs < SILENCE_DBFS),
        }


FEATURE_SETS = {"basic": BasicFeatures()}
