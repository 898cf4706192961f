"""Per-clip audio features and quality flags, units in the column names.

`FEATURE_COLUMNS` documents every column in one place (the dataset card reuses it). Feature sets
are named, not coded: `basic` computes everything but pitch, `full` adds a pitch summary of voiced
frames (probabilistic YIN, the costly part). A column a set does not compute is null.

All spectral features share one STFT of the clip: 2048-sample frames (46 ms at 44.1 kHz), hop 512.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.features.loudness import integrated_loudness

FRAME_LENGTH = 2048  # samples per analysis frame (46 ms @ 44.1 kHz)
HOP_LENGTH = 512  # samples between frames (11.6 ms @ 44.1 kHz)
FULL_SCALE = 0.999  # a sample at or above this magnitude counts as clipped (16-bit full scale is 0.99997)
N_MFCC = 20
PITCH_CLASSES = ("c", "c_sharp", "d", "d_sharp", "e", "f", "f_sharp", "g", "g_sharp", "a", "a_sharp", "b")
PITCH_RATE = 16_000  # pitch is tracked on a 16 kHz copy: voices and melodies lie far below 8 kHz
PITCH_FMIN_HZ, PITCH_FMAX_HZ = 65.0, 1047.0  # C2 .. C6

# Columns a flag check reads, and every column's (unit, how it is computed).
FEATURE_COLUMNS: dict[str, tuple[str, str]] = {
    "duration_s": ("s", "number of samples / sample rate"),
    "sample_rate_hz": ("Hz", "sample rate of the FLAC file"),
    "peak_dbfs": ("dBFS", "20 log10 of the largest absolute sample (-inf for digital silence)"),
    "rms_dbfs": ("dBFS", "20 log10 of the root mean square of all samples (-inf for digital silence)"),
    "loudness_lufs": ("LUFS", "integrated loudness, ITU-R BS.1770-4 (K-weighted, gated 400 ms blocks); "
                              "null below 0.4 s, -inf when every block is under the -70 LUFS gate"),
    "dc_offset": ("full scale", "mean sample value"),
    "clipping_ratio": ("fraction", f"share of samples whose magnitude is at least {FULL_SCALE} of full scale"),
    "silence_ratio": ("fraction", f"share of {FRAME_LENGTH}-sample frames whose RMS is below the silence level "
                                  "(features.silence_dbfs, default -60 dBFS)"),
    "zero_crossing_rate": ("crossings/sample", "mean over frames of the share of sign changes between samples"),
}
for _name, _unit, _how in (
    ("spectral_centroid_hz", "Hz", "magnitude-weighted mean frequency of a frame"),
    ("spectral_bandwidth_hz", "Hz", "magnitude-weighted standard deviation of frequency around the centroid"),
    ("spectral_rolloff_hz", "Hz", "frequency below which 85 % of a frame's magnitude lies"),
    ("spectral_flatness", "ratio 0-1", "geometric / arithmetic mean of a frame's power spectrum (1 = white noise)"),
):
    FEATURE_COLUMNS[f"{_name}_mean"] = (_unit, f"mean over frames of the {_how}")
    FEATURE_COLUMNS[f"{_name}_std"] = (_unit, f"standard deviation over frames of the {_how}")
for _i in range(1, N_MFCC + 1):
    FEATURE_COLUMNS[f"mfcc_{_i:02d}_mean"] = ("dB (cepstral)", f"mean over frames of MFCC {_i} (128 mel bands, DCT-II)")
for _i in range(1, N_MFCC + 1):
    FEATURE_COLUMNS[f"mfcc_{_i:02d}_std"] = ("dB (cepstral)", f"standard deviation over frames of MFCC {_i}")
for _pc in PITCH_CLASSES:
    FEATURE_COLUMNS[f"chroma_{_pc}_mean"] = (
        "ratio 0-1", f"mean over frames of the energy of pitch class {_pc.replace('_sharp', '#').upper()} "
                     "relative to the frame's strongest class (STFT chroma)")
FEATURE_COLUMNS.update({
    "tempo_bpm": ("beats/min", "global tempo from the autocorrelation of the onset-strength envelope "
                               "(librosa); null when no onset is found"),
    "onset_rate_per_s": ("onsets/s", "detected onsets (spectral-flux peaks) / duration"),
    "pitch_median_hz": ("Hz", f"median f0 of voiced frames, pYIN on a 16 kHz copy ({PITCH_FMIN_HZ:g}-{PITCH_FMAX_HZ:g}"
                              " Hz); feature set `full` only, null when no frame is voiced"),
    "pitch_range_hz": ("Hz", "5th to 95th percentile span of the voiced frames' f0; `full` only, null when unvoiced"),
    "voiced_ratio": ("fraction", "share of frames pYIN finds voiced; `full` only"),
    "is_silent": ("flag", "rms_dbfs below features.silence_dbfs"),
    "is_clipped": ("flag", "clipping_ratio above features.max_clipping_ratio"),
    "is_too_short": ("flag", "duration_s below features.min_duration_s"),
    "is_non_finite": ("flag", "the decoded audio held NaN or infinite samples (analysed as zeros) "
                              "or a feature came out NaN"),
})
QUALITY_FLAGS = {"silent": "is_silent", "clipped": "is_clipped", "too_short": "is_too_short",
                 "non_finite": "is_non_finite"}
PITCH_COLUMNS = ("pitch_median_hz", "pitch_range_hz", "voiced_ratio")

FEATURE_SCHEMA = pa.schema(
    [pa.field("clip_id", pa.string(), nullable=False)]
    + [pa.field(name, pa.bool_() if unit == "flag" else pa.float64(), nullable=unit != "flag")
       for name, (unit, _) in FEATURE_COLUMNS.items()]
)


@dataclass(frozen=True)
class QualityThresholds:
    """Where the quality flags trip (the config's `features` section supplies them)."""

    silence_dbfs: float = -60.0  # quieter than this (RMS) is silence: far below any mastered audio
    max_clipping_ratio: float = 0.001  # more than 0.1 % of samples at full scale is audible distortion
    min_duration_s: float = 0.25  # shorter than this is too short to be a usable clip


@dataclass(frozen=True)
class FeatureSet:
    """A named selection of features; `extract` returns one row of FEATURE_COLUMNS for a mono clip."""

    name: str
    pitch: bool  # track pitch (pYIN): about 10x the cost of everything else together
    quality: QualityThresholds = QualityThresholds()

    def extract(self, audio: np.ndarray, sample_rate: int) -> dict[str, float | bool | None]:
        audio = np.asarray(audio, dtype=np.float32)  # (samples,) in [-1, 1]
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError(f"expected a non-empty mono signal, got shape {audio.shape}")
        finite = np.isfinite(audio)
        non_finite_input = not bool(finite.all())
        if non_finite_input:
            audio = np.where(finite, audio, 0.0).astype(np.float32)
        row: dict[str, float | bool | None] = {}
        row.update(_levels(audio, sample_rate, self.quality.silence_dbfs))
        row.update(_spectral(audio, sample_rate))
        row.update(_pitch(audio, sample_rate) if self.pitch else dict.fromkeys(PITCH_COLUMNS))
        computed_nan = any(isinstance(v, float) and np.isnan(v) for v in row.values())
        row.update({
            "is_silent": bool(row["rms_dbfs"] < self.quality.silence_dbfs),
            "is_clipped": bool(row["clipping_ratio"] > self.quality.max_clipping_ratio),
            "is_too_short": bool(row["duration_s"] < self.quality.min_duration_s),
            "is_non_finite": non_finite_input or computed_nan,
        })
        return {name: row[name] for name in FEATURE_COLUMNS}


def _db(value: float) -> float:
    return float(20.0 * np.log10(value)) if value > 0 else float("-inf")


def _levels(audio: np.ndarray, rate: int, silence_dbfs: float) -> dict:
    import librosa

    frames_rms = librosa.feature.rms(y=audio, frame_length=FRAME_LENGTH, hop_length=HOP_LENGTH)[0]  # (frames,)
    zcr = librosa.feature.zero_crossing_rate(audio, frame_length=FRAME_LENGTH, hop_length=HOP_LENGTH)[0]
    magnitude = np.abs(audio)
    return {
        "duration_s": audio.size / rate,
        "sample_rate_hz": float(rate),
        "peak_dbfs": _db(float(magnitude.max())),
        "rms_dbfs": _db(float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))),
        "loudness_lufs": integrated_loudness(audio, rate),
        "dc_offset": float(np.mean(audio, dtype=np.float64)),
        "clipping_ratio": float(np.mean(magnitude >= FULL_SCALE)),
        "silence_ratio": float(np.mean(frames_rms < 10 ** (silence_dbfs / 20))),
        "zero_crossing_rate": float(np.mean(zcr)),
    }


def _spectral(audio: np.ndarray, rate: int) -> dict:
    import librosa

    magnitude = np.abs(librosa.stft(audio, n_fft=FRAME_LENGTH, hop_length=HOP_LENGTH))  # (1 + n_fft/2, frames)
    power = magnitude**2
    centroid = librosa.feature.spectral_centroid(S=magnitude, sr=rate)  # (1, frames) Hz
    per_frame = {
        "spectral_centroid_hz": centroid[0],
        "spectral_bandwidth_hz": librosa.feature.spectral_bandwidth(S=magnitude, sr=rate, centroid=centroid)[0],
        "spectral_rolloff_hz": librosa.feature.spectral_rolloff(S=magnitude, sr=rate, roll_percent=0.85)[0],
        "spectral_flatness": librosa.feature.spectral_flatness(S=magnitude, power=2.0)[0],
    }
    row = {}
    for name, values in per_frame.items():
        row[f"{name}_mean"] = float(np.mean(values))
        row[f"{name}_std"] = float(np.std(values))
    mel_db = librosa.power_to_db(librosa.feature.melspectrogram(S=power, sr=rate, n_mels=128))  # (128, frames)
    mfcc = librosa.feature.mfcc(S=mel_db, n_mfcc=N_MFCC)  # (20, frames)
    for i in range(N_MFCC):
        row[f"mfcc_{i + 1:02d}_mean"] = float(mfcc[i].mean())
        row[f"mfcc_{i + 1:02d}_std"] = float(mfcc[i].std())
    chroma = librosa.feature.chroma_stft(S=power, sr=rate, tuning=0.0)  # (12, frames), C first
    for pc, values in zip(PITCH_CLASSES, chroma, strict=True):
        row[f"chroma_{pc}_mean"] = float(values.mean())
    envelope = librosa.onset.onset_strength(S=mel_db, sr=rate, hop_length=HOP_LENGTH)  # (frames,)
    onsets = librosa.onset.onset_detect(onset_envelope=envelope, sr=rate, hop_length=HOP_LENGTH)
    duration = audio.size / rate
    row["onset_rate_per_s"] = len(onsets) / duration
    tempo = librosa.feature.tempo(onset_envelope=envelope, sr=rate, hop_length=HOP_LENGTH)[0] if len(onsets) else 0.0
    row["tempo_bpm"] = float(tempo) if tempo > 0 else None
    return row


def _pitch(audio: np.ndarray, rate: int) -> dict:
    import librosa

    low = librosa.resample(audio, orig_sr=rate, target_sr=PITCH_RATE) if rate != PITCH_RATE else audio
    f0, voiced, _ = librosa.pyin(low, fmin=PITCH_FMIN_HZ, fmax=PITCH_FMAX_HZ, sr=PITCH_RATE,
                                 frame_length=1024, hop_length=256)  # (frames,) Hz, NaN where unvoiced
    voiced_f0 = f0[voiced & np.isfinite(f0)]
    if voiced_f0.size == 0:
        return {"pitch_median_hz": None, "pitch_range_hz": None, "voiced_ratio": 0.0}
    low_hz, high_hz = np.percentile(voiced_f0, [5, 95])
    return {"pitch_median_hz": float(np.median(voiced_f0)), "pitch_range_hz": float(high_hz - low_hz),
            "voiced_ratio": float(voiced.mean())}


FEATURE_SET_NAMES = ("basic", "full")


def feature_set(name: str, quality: QualityThresholds = QualityThresholds()) -> FeatureSet:
    """The named feature set with the given quality thresholds."""
    if name not in FEATURE_SET_NAMES:
        raise ValueError(f"unknown feature set {name!r}; choose one of {', '.join(FEATURE_SET_NAMES)}")
    return FeatureSet(name=name, pitch=name == "full", quality=quality)
