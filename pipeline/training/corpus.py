"""The private corpus a model learns from: listed, validated, fingerprinted, split, loaded.

Layout: a folder of `<speaker_id>/<file>.{wav,flac}`, or a CSV manifest `speaker_id,path[,lyrics,genre,artist]`
(paths relative to the manifest's folder). Every file is checked before anything is trained, and every
problem (unreadable, empty, recorded below `source.min_sample_rate_hz`) is reported in one error, path and
reason per line. A fixed share of the files (`source.holdout_fraction`, chosen by file hash, at least one)
is held out: training never reads it.

The corpus is private: its audio, file names, speaker ids and lyrics stay in the workspace and in the
(private) model folder; a release carries only the fingerprint's hash-of-hashes.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.errors import BadInput
from pipeline.files import sha256_file

AUDIO_SUFFIXES = (".wav", ".flac")
SAMPLE_RATE_HZ = 44_100


@dataclass(frozen=True)
class CorpusFile:
    speaker: str
    path: Path
    sha256: str
    lyrics: str = ""
    genre: str = "unknown"
    artist: str = "unknown"


@dataclass(frozen=True)
class Corpus:
    files: tuple[CorpusFile, ...]
    train: tuple[CorpusFile, ...]
    holdout: tuple[CorpusFile, ...]
    fingerprint: str  # sha256 over (speaker, file sha256, lyrics, genre, artist) in order: the corpus's identity

    @property
    def speakers(self) -> list[str]:
        return sorted({f.speaker for f in self.files})


def list_corpus(location: Path, what: str = "source.corpus", empty: str = "") -> list[CorpusFile]:
    """The files of a set of recordings (the corpus, or a reference set: the same layouts), in (speaker, name)
    order; BadInput naming `what` when there is none (`empty`: why that matters, appended)."""
    if location.is_file() and location.suffix.lower() == ".csv":
        files = _manifest(location, what)
    elif location.is_dir():
        files = [CorpusFile(speaker.name, path, sha256_file(path))
                 for speaker in sorted(p for p in location.iterdir() if p.is_dir())
                 for path in sorted(speaker.iterdir()) if path.suffix.lower() in AUDIO_SUFFIXES]
    else:
        raise BadInput(f"{what}: {location} is neither a folder of <speaker_id>/<file>.wav|flac nor a .csv manifest "
                       "with columns speaker_id,path[,lyrics,genre,artist]")
    if not files:
        raise BadInput(f"{what}: {location} holds no <speaker_id>/<file>.wav|flac files{empty}")
    return sorted(files, key=lambda f: (f.speaker, f.path.name))


def _manifest(manifest: Path, what: str) -> list[CorpusFile]:
    with open(manifest, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"speaker_id", "path"} <= set(reader.fieldnames):
            raise BadInput(f"{what}: {manifest} must have a header with columns speaker_id,path"
                           f"[,lyrics,genre,artist] (found {reader.fieldnames})")
        rows = list(reader)
    files, problems = [], []
    for line, row in enumerate(rows, start=2):
        speaker, relative = (row.get("speaker_id") or "").strip(), (row.get("path") or "").strip()
        path = (manifest.parent / relative).resolve()
        if not speaker or not relative:
            problems.append(f"{manifest} line {line}: speaker_id and path are both required")
        elif path.suffix.lower() not in AUDIO_SUFFIXES or not path.is_file():
            problems.append(f"{manifest} line {line}: {path} is not a .wav or .flac file")
        else:
            files.append(CorpusFile(speaker, path, sha256_file(path), (row.get("lyrics") or "").strip(),
                                    (row.get("genre") or "").strip() or "unknown",
                                    (row.get("artist") or "").strip() or "unknown"))
    if problems:
        raise BadInput(f"{what}: {len(problems)} bad row(s):\n  " + "\n  ".join(problems))
    return files


def validate(files: list[CorpusFile], min_rate_hz: int, what: str = "source.corpus") -> None:
    """Every file readable, non-empty and recorded at `min_rate_hz` or more; one BadInput listing all that are not."""
    problems = []
    for file in files:
        try:
            info = sf.info(str(file.path))
        except Exception as exc:  # noqa: BLE001 - any decoder error is reported with the path
            problems.append(f"{file.path}: unreadable ({str(exc).splitlines()[0][:120]})")
            continue
        if info.frames == 0:
            problems.append(f"{file.path}: empty (no samples)")
        elif info.samplerate < min_rate_hz:
            problems.append(f"{file.path}: recorded at {info.samplerate} Hz; source.min_sample_rate_hz is {min_rate_hz}")
    if problems:
        raise BadInput(f"{what}: {len(problems)} of {len(files)} file(s) cannot be used:\n  " + "\n  ".join(problems)
                       + "\nFix or remove them (or lower source.min_sample_rate_hz), then rerun.")


def fingerprint(files: list[CorpusFile]) -> str:
    digest = hashlib.sha256()
    for f in files:
        digest.update("\x1f".join([f.speaker, f.sha256, f.lyrics, f.genre, f.artist]).encode() + b"\x1e")
    return digest.hexdigest()


def split(files: list[CorpusFile], holdout_fraction: float) -> tuple[list[CorpusFile], list[CorpusFile]]:
    """(train, holdout): the holdout is the `holdout_fraction` of files with the smallest hash of their contents
    (at least one, never all), so adding a file does not reshuffle the rest."""
    if len(files) < 2:
        raise BadInput(f"source.corpus: {len(files)} file(s); training needs at least 2 (one is held out)")
    n_holdout = min(len(files) - 1, max(1, round(len(files) * holdout_fraction)))
    order = sorted(files, key=lambda f: hashlib.sha256(f"holdout:{f.sha256}".encode()).hexdigest())
    held = {id(f) for f in order[:n_holdout]}
    return [f for f in files if id(f) not in held], [f for f in files if id(f) in held]


def load_corpus(location: Path, holdout_fraction: float, min_rate_hz: int) -> Corpus:
    files = list_corpus(location)
    validate(files, min_rate_hz)
    train, holdout = split(files, holdout_fraction)
    return Corpus(tuple(files), tuple(train), tuple(holdout), fingerprint(files))


def read_audio(path: Path, rate: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """A corpus file as mono float32 at `rate` (44.1 kHz: Jukebox's rate)."""
    audio, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if file_rate != rate:
        import librosa

        audio = librosa.resample(audio, orig_sr=file_rate, target_sr=rate)
    return np.ascontiguousarray(audio, dtype=np.float32)


def private_recordings(loaded) -> list[CorpusFile]:
    """Every recording of a loaded config's corpus and reference set (one listing when the reference set is the
    corpus); a location that no longer exists contributes nothing."""
    locations = {p for p in (loaded.corpus, loaded.reference_dir) if p is not None and p.exists()}
    return [f for location in sorted(locations) for f in list_corpus(location)]
