"""Reviewer tools on any folder of audio: `python -m pipeline privacy score|calibrate`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow as pa

from pipeline.errors import BadInput
from pipeline.privacy.calibration import Calibration, calibrate_index
from pipeline.privacy.encoder import load_encoder
from pipeline.privacy.leakcheck import score_file
from pipeline.privacy.reference import AUDIO_SUFFIXES, build_index, list_reference_files
from pipeline.progress import progress

SCORES_SCHEMA = pa.schema([
    pa.field("file", pa.string(), nullable=False),
    pa.field("score", pa.float64()),  # the clip's leak score; null: no voice / unscorable
    pa.field("verdict", pa.string(), nullable=False),
    pa.field("no_voice", pa.bool_(), nullable=False),
])


def _folder(path: Path | None, what: str) -> Path | None:
    if path is not None and not path.is_dir():
        raise BadInput(f"{what}: {path} is not a folder")
    return path


def score_folder(reference: Path, clips: Path, threshold: float | None, target_recall: float = 0.95,
                 cache: Path | None = None, cohort: Path | None = None, max_fpr: float = 0.05) -> tuple[pa.Table, float]:
    """One row per audio file under `clips`: file name (relative), score, verdict (fail closed); and the
    threshold used (calibrated as a run calibrates when `threshold` is None; the condition offsets always are)."""
    encoder = load_encoder()
    with tempfile.TemporaryDirectory() as scratch:
        cache_dir = cache or Path(scratch)
        index = build_index(_folder(reference, "--reference"), encoder, cache_dir, canaries_per_speaker=0,
                            cohort_dir=_folder(cohort, "--cohort"))
        # a given threshold is applied as a run applies a configured one: to scores offset per detected condition
        calibration = calibrate_index(index, encoder, cache_dir, target_recall, max_fpr, threshold=threshold)
        threshold, index = calibration.threshold, index.calibrated(calibration.condition_offsets)
        files = sorted(p for p in _folder(clips, "--clips").rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise BadInput(f"--clips: no .wav or .flac files under {clips}")
        rows = []
        for path in progress(files, desc="scoring clips", unit="clip"):
            verdict = score_file(path, encoder, index, threshold)
            rows.append({"file": str(path.relative_to(clips)), "score": verdict.score, "verdict": verdict.verdict,
                         "no_voice": verdict.no_voice})
    return pa.Table.from_pylist(rows, schema=SCORES_SCHEMA), threshold


def calibrate_reference(reference: Path, impostors: Path | None, target_recall: float, cache: Path | None = None,
                        cohort: Path | None = None, max_fpr: float = 0.05) -> Calibration:
    """Calibration as a run does it (held-out conditions, cohort impostors, the FPR bound), with the voices
    under `impostors` (known not to be in the reference set) as more impostor trials under every condition."""
    encoder = load_encoder()
    with tempfile.TemporaryDirectory() as scratch:
        cache_dir = cache or Path(scratch)
        index = build_index(_folder(reference, "--reference"), encoder, cache_dir, canaries_per_speaker=0,
                            cohort_dir=_folder(cohort, "--cohort"))
        outsiders = []
        if _folder(impostors, "--impostors") is not None:
            outsiders = list_reference_files(impostors, "--impostors")
        return calibrate_index(index, encoder, cache_dir, target_recall, max_fpr, outsiders=outsiders)
