"""The private reference set: files, their cached embeddings, speaker centroids and canaries.

Layout: `<reference_dir>/<speaker_id>/<file>.{wav,flac}`. Each file is embedded once per encoder
version and cached under the workspace's reference cache, keyed by the file's sha256. The last
`canaries_per_speaker` files of each speaker (in name order) are held out of the centroid and
scored on every run as known leaks. None of this ever reaches a release: only `fingerprint`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.errors import BadInput
from pipeline.privacy.encoder import SpeakerEncoder
from pipeline.workspace import atomic_path, sha256_file

AUDIO_SUFFIXES = (".wav", ".flac")


@dataclass(frozen=True)
class ReferenceFile:
    speaker: str
    path: Path
    sha256: str


@dataclass
class ReferenceIndex:
    speakers: list[str]
    centroids: np.ndarray  # (speakers, embedding_size), unit norm
    canaries: list[tuple[str, np.ndarray]]  # (speaker, (samples,) float32 @ encoder rate)
    canary_rate: int
    fingerprint: str  # sha256 over (speaker, file sha256) pairs and the encoder version

    def scores(self, embedding: np.ndarray) -> np.ndarray:
        """Cosine similarity of one unit-norm embedding to every speaker centroid: (speakers,)."""
        return self.centroids @ embedding


def list_reference_files(reference_dir: Path) -> list[ReferenceFile]:
    files = []
    for speaker_dir in sorted(p for p in reference_dir.iterdir() if p.is_dir()):
        for path in sorted(speaker_dir.iterdir()):
            if path.suffix.lower() in AUDIO_SUFFIXES:
                files.append(ReferenceFile(speaker_dir.name, path, sha256_file(path)))
    if not files:
        raise BadInput(
            f"privacy.reference_dir: {reference_dir} holds no <speaker_id>/<file>.wav|flac files; "
            "a leak check without reference voices would pass everything"
        )
    return files


def _read_mono(path: Path) -> tuple[np.ndarray, int]:
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)  # (samples, channels)
    except Exception as exc:  # noqa: BLE001 - any decoder error is reported with the path
        raise BadInput(f"reference file {path} cannot be decoded ({exc}); fix or remove it") from None
    if audio.shape[0] == 0:
        raise BadInput(f"reference file {path} is empty; fix or remove it")
    return audio.mean(axis=1), rate


def embed_cached(encoder: SpeakerEncoder, file: ReferenceFile, cache_dir: Path) -> np.ndarray:
    cache = cache_dir / encoder.version / f"{file.sha256}.npy"
    if cache.is_file():
        return np.load(cache)
    audio, rate = _read_mono(file.path)
    embedding = encoder.embed(audio, rate)
    if embedding is None:
        raise BadInput(f"reference file {file.path} holds no voiced speech; fix or remove it")
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, embedding)
    return embedding


def build_index(reference_dir: Path, encoder: SpeakerEncoder, cache_dir: Path, canaries_per_speaker: int) -> ReferenceIndex:
    """Embed (or load cached embeddings of) every reference file; hold out canaries per speaker."""
    files = list_reference_files(reference_dir)
    by_speaker: dict[str, list[ReferenceFile]] = {}
    for file in files:
        by_speaker.setdefault(file.speaker, []).append(file)
    speakers, centroids, canaries = [], [], []
    for speaker, speaker_files in by_speaker.items():
        if len(speaker_files) <= canaries_per_speaker:
            raise BadInput(
                f"privacy.reference_dir: speaker folder {reference_dir / speaker} has {len(speaker_files)} file(s); "
                f"it needs more than privacy.canaries_per_speaker ({canaries_per_speaker}) to enrol and self-test"
            )
        split = len(speaker_files) - canaries_per_speaker
        enrol, held_out = speaker_files[:split], speaker_files[split:]
        mean = np.mean([embed_cached(encoder, f, cache_dir) for f in enrol], axis=0)
        speakers.append(speaker)
        centroids.append(mean / np.linalg.norm(mean))
        for file in held_out:
            audio, rate = _read_mono(file.path)
            canaries.append((speaker, audio if rate == encoder.sample_rate else _resample(audio, rate, encoder.sample_rate)))
    digest = hashlib.sha256(encoder.version.encode())
    for file in files:
        digest.update(f"{file.speaker}\x1f{file.sha256}\n".encode())
    return ReferenceIndex(speakers, np.stack(centroids), canaries, encoder.sample_rate, digest.hexdigest())


def _resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    import librosa

    return librosa.resample(audio, orig_sr=rate, target_sr=target).astype(np.float32)
