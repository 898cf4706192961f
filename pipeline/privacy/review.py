"""Reviewer tools on any folder of audio: `python -m pipeline privacy score|calibrate`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow as pa

from pipeline.errors import BadInput
from pipeline.privacy.calibration import calibrate, embed_folder, reference_trials
from pipeline.privacy.encoder import load_encoder
from pipeline.privacy.leakcheck import score_file
from pipeline.privacy.reference import AUDIO_SUFFIXES, build_index

SCORES_SCHEMA = pa.schema([
    pa.field("file", pa.string(), nullable=False),
    pa.field("score", pa.float64()),  # max cosine similarity to a reference speaker; null: no voice / unscorable
    pa.field("verdict", pa.string(), nullable=False),
    pa.field("no_voice", pa.bool_(), nullable=False),
])


def _folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise BadInput(f"{what}: {path} is not a folder")
    return path


def score_folder(reference: Path, clips: Path, threshold: float, cache: Path | None = None) -> pa.Table:
    """One row per audio file under `clips`: file name (relative), score, verdict (fail closed)."""
    encoder = load_encoder()
    with tempfile.TemporaryDirectory() as scratch:
        index = build_index(_folder(reference, "--reference"), encoder, cache or Path(scratch), canaries_per_speaker=0)
        files = sorted(p for p in _folder(clips, "--clips").rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise BadInput(f"--clips: no .wav or .flac files under {clips}")
        rows = []
        for path in files:
            verdict = score_file(path, encoder, index, threshold)
            rows.append({"file": str(path.relative_to(clips)), "score": verdict.score, "verdict": verdict.verdict,
                         "no_voice": verdict.no_voice})
    return pa.Table.from_pylist(rows, schema=SCORES_SCHEMA)


def calibrate_reference(reference: Path, impostors: Path | None, target_recall: float, cache: Path | None = None):
    """Leave-one-out calibration on the reference set (plus outsiders' voices if given)."""
    encoder = load_encoder()
    with tempfile.TemporaryDirectory() as scratch:
        cache_dir = cache or Path(scratch)
        embeddings = embed_folder(_folder(reference, "--reference"), encoder, cache_dir)
        outsiders = []
        if impostors is not None:
            outsiders = [e for per in embed_folder(_folder(impostors, "--impostors"), encoder, cache_dir).values()
                         for e in per]
    genuine, impostor = reference_trials(embeddings, outsiders)
    return calibrate(genuine, impostor, target_recall)
