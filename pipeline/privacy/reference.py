"""The private reference set: files, cached embeddings, per-speaker centroids, canaries, cohort.

Layout: `<reference_dir>/<speaker_id>/<file>.{wav,flac}`, or a CSV manifest `speaker_id,path`. Each file is decoded, resampled to the
encoder's rate, VAD-trimmed and embedded under every enrolment variant (clean, pitch-shifted,
band-limited, under accompaniment; see `transforms.py`); the embeddings are cached in the
workspace keyed by the file's sha256, the encoder version and the variant list, so adding one
speaker embeds only that speaker. The last `canaries_per_speaker` files of each speaker (in name
order) are held out of the centroids and become the run's canaries. An optional impostor cohort
(voices that are *not* in the reference set, same layout) enables s-norm score normalisation.
None of this ever reaches a release: only `fingerprint` and aggregate figures do.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.errors import BadInput
from pipeline.privacy.encoder import SpeakerEncoder
from pipeline.privacy.transforms import ENROLMENT_VARIANTS
from pipeline.workspace import atomic_path, sha256_file

AUDIO_SUFFIXES = (".wav", ".flac")
MIN_SPEAKER_SPEECH_S = 5.0  # less voiced speech than this per speaker makes a noisy centroid: warned about
COHORT_TOP_N = 20  # adaptive s-norm: statistics of the N closest cohort voices
log = logging.getLogger("synthaudio.privacy")


@dataclass(frozen=True)
class ReferenceFile:
    speaker: str
    path: Path
    sha256: str


@dataclass
class ReferenceIndex:
    speakers: list[str]
    variants: tuple[str, ...]
    centroids: np.ndarray  # (speakers, variants, dim), unit norm
    enrolled: list[tuple[int, np.ndarray]]  # (speaker index, (variants, dim)) per enrolled file, for calibration
    canaries: list[tuple[str, np.ndarray]]  # (speaker, (samples,) float32 @ canary_rate), held out
    canary_rate: int
    fingerprint: str  # sha256 over (speaker, file sha256) pairs, encoder version and variants
    cohort: np.ndarray | None = None  # (variants, cohort files, dim): s-norm impostor cohort
    speech_s: dict[str, float] = field(default_factory=dict)  # voiced seconds per speaker

    def speaker_scores(self, windows: np.ndarray, centroids: np.ndarray | None = None) -> np.ndarray:
        """Each speaker's score for a clip: the max over its windows and the speaker's variant centroids
        of the cosine similarity, s-normalised against the cohort when there is one. (speakers,)"""
        centroids = self.centroids if centroids is None else centroids
        raw = np.einsum("wd,svd->wsv", windows, centroids)  # (windows, speakers, variants)
        if self.cohort is not None:
            z_mean, z_std = _top_stats(np.einsum("vnd,svd->svn", self.cohort, centroids))  # (speakers, variants)
            t_mean, t_std = _top_stats(windows @ self.cohort.reshape(-1, self.cohort.shape[-1]).T)  # (windows,)
            raw = 0.5 * ((raw - z_mean) / z_std + (raw - t_mean[:, None, None]) / t_std[:, None, None])
        return raw.max(axis=(0, 2))


def _top_stats(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the COHORT_TOP_N highest scores along the last axis."""
    top = np.sort(scores, axis=-1)[..., ::-1][..., :COHORT_TOP_N]
    return top.mean(axis=-1), np.maximum(top.std(axis=-1), 1e-6)


def list_reference_files(reference: Path, what: str = "privacy.reference_dir") -> list[ReferenceFile]:
    """Files of a reference set: a folder of `<speaker_id>/<file>.wav|flac`, or a CSV manifest with
    columns `speaker_id,path` (paths relative to the manifest's folder)."""
    if reference.is_file() and reference.suffix.lower() == ".csv":
        return _manifest_files(reference, what)
    if not reference.is_dir():
        raise BadInput(f"{what}: {reference} is neither a folder of <speaker_id>/<file>.wav|flac "
                       "nor a .csv manifest with columns speaker_id,path")
    files = []
    for speaker_dir in sorted(p for p in reference.iterdir() if p.is_dir()):
        for path in sorted(speaker_dir.iterdir()):
            if path.suffix.lower() in AUDIO_SUFFIXES:
                files.append(ReferenceFile(speaker_dir.name, path, sha256_file(path)))
    if not files:
        raise BadInput(
            f"{what}: {reference} holds no <speaker_id>/<file>.wav|flac files; "
            "a leak check without reference voices would pass everything"
        )
    return files


def _manifest_files(manifest: Path, what: str) -> list[ReferenceFile]:
    import csv

    with open(manifest, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"speaker_id", "path"} <= set(reader.fieldnames):
            raise BadInput(f"{what}: {manifest} must have a header with columns speaker_id,path "
                           f"(found {reader.fieldnames})")
        rows = list(reader)
    files = []
    for line, row in enumerate(rows, start=2):
        speaker, relative = (row["speaker_id"] or "").strip(), (row["path"] or "").strip()
        path = (manifest.parent / relative).resolve()
        if not speaker or not relative:
            raise BadInput(f"{what}: {manifest} line {line}: speaker_id and path are both required")
        if path.suffix.lower() not in AUDIO_SUFFIXES or not path.is_file():
            raise BadInput(f"{what}: {manifest} line {line}: {path} is not a .wav or .flac file")
        files.append(ReferenceFile(speaker, path, sha256_file(path)))
    if not files:
        raise BadInput(f"{what}: {manifest} lists no files; a leak check without reference voices would pass everything")
    return sorted(files, key=lambda f: (f.speaker, f.path.name))


def read_voice(path: Path, rate: int) -> np.ndarray:
    """A reference file as mono float32 at `rate`; BadInput naming the file when it cannot be used."""
    try:
        audio, file_rate = sf.read(path, dtype="float32", always_2d=True)  # (samples, channels)
    except Exception as exc:  # noqa: BLE001 - any decoder error is reported with the path
        raise BadInput(f"{path}: cannot be decoded ({exc})") from None
    if audio.shape[0] == 0:
        raise BadInput(f"{path}: is empty")
    audio = audio.mean(axis=1)
    if file_rate != rate:
        import librosa

        audio = librosa.resample(audio, orig_sr=file_rate, target_sr=rate)
    return audio.astype(np.float32)


def variants_key(encoder: SpeakerEncoder) -> str:
    """Cache key of an embedding set: the encoder version and the enrolment variants."""
    names = ",".join(ENROLMENT_VARIANTS)
    return f"{encoder.version}-{hashlib.sha256(names.encode()).hexdigest()[:8]}"


def embed_variants(encoder: SpeakerEncoder, file: ReferenceFile, cache_dir: Path) -> tuple[np.ndarray, float]:
    """((variants, dim) embeddings, voiced seconds) of one reference file, from the cache when present."""
    cache = cache_dir / variants_key(encoder) / f"{file.sha256}.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            return stored["embeddings"], float(stored["speech_s"])
    audio = read_voice(file.path, encoder.sample_rate)
    speech = encoder.voiced(audio, encoder.sample_rate)
    if speech is None:
        raise BadInput(f"{file.path}: holds no voiced speech (under {encoder.min_voiced_s} s after VAD)")
    embeddings = []
    for name, transform in ENROLMENT_VARIANTS.items():
        embedding = encoder.embed(transform(speech), encoder.sample_rate)
        if embedding is None:
            raise BadInput(f"{file.path}: its {name} variant holds no voiced speech")
        embeddings.append(embedding)
    stacked, speech_s = np.stack(embeddings), speech.size / encoder.sample_rate  # (variants, dim)
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, embeddings=stacked, speech_s=speech_s)
    return stacked, speech_s


def embed_files(encoder, files, cache_dir, skip_bad: bool, what: str) -> list[tuple[ReferenceFile, np.ndarray, float]]:
    """Embed every file; bad files are all listed in one error, or skipped with a warning if allowed."""
    done, problems = [], []
    for file in files:
        try:
            done.append((file, *embed_variants(encoder, file, cache_dir)))
        except BadInput as exc:
            problems.append(str(exc))
    if problems and not skip_bad:
        listed = "\n  ".join(problems)
        raise BadInput(f"{what}: {len(problems)} unusable file(s):\n  {listed}\n"
                       "Fix or remove them, or set privacy.skip_bad_reference_files: true to leave them out.")
    for problem in problems:
        log.warning("skipping unusable reference file %s", problem)
    return done


def build_index(reference_dir: Path, encoder: SpeakerEncoder, cache_dir: Path, canaries_per_speaker: int, *,
                cohort_dir: Path | None = None, skip_bad: bool = False) -> ReferenceIndex:
    """Embed (or load cached embeddings of) every reference file; hold out canaries per speaker."""
    files = list_reference_files(reference_dir)
    by_speaker: dict[str, list[tuple[ReferenceFile, np.ndarray, float]]] = {}
    for item in embed_files(encoder, files, cache_dir, skip_bad, "privacy.reference_dir"):
        by_speaker.setdefault(item[0].speaker, []).append(item)
    speakers, centroids, enrolled, canaries, speech_s = [], [], [], [], {}
    for speaker, items in by_speaker.items():
        if len(items) <= canaries_per_speaker:
            raise BadInput(
                f"privacy.reference_dir: speaker {speaker} of {reference_dir} has {len(items)} usable file(s); "
                f"it needs more than privacy.canaries_per_speaker ({canaries_per_speaker}) to enrol and self-test"
            )
        split = len(items) - canaries_per_speaker
        speech_s[speaker] = round(sum(seconds for _, _, seconds in items), 2)
        if speech_s[speaker] < MIN_SPEAKER_SPEECH_S:
            log.warning("reference speaker %s of %s has only %.1f s of voiced speech (%.0f s or more recommended)",
                        speaker, reference_dir, speech_s[speaker], MIN_SPEAKER_SPEECH_S)
        mean = np.mean([embeddings for _, embeddings, _ in items[:split]], axis=0)  # (variants, dim)
        centroids.append(mean / np.linalg.norm(mean, axis=-1, keepdims=True))
        enrolled += [(len(speakers), embeddings) for _, embeddings, _ in items[:split]]
        canaries += [(speaker, read_voice(file.path, encoder.sample_rate)) for file, _, _ in items[split:]]
        speakers.append(speaker)
    digest = hashlib.sha256(variants_key(encoder).encode())
    for file in files:
        digest.update(f"{file.speaker}\x1f{file.sha256}\n".encode())
    cohort = None
    if cohort_dir is not None:
        members = embed_files(encoder, list_reference_files(cohort_dir, "privacy.cohort_dir"), cache_dir, skip_bad,
                             "privacy.cohort_dir")
        cohort = np.stack([embeddings for _, embeddings, _ in members], axis=1)  # (variants, files, dim)
        for file, _, _ in members:
            digest.update(f"cohort\x1f{file.sha256}\n".encode())
    return ReferenceIndex(speakers, tuple(ENROLMENT_VARIANTS), np.stack(centroids), enrolled, canaries,
                          encoder.sample_rate, digest.hexdigest(), cohort, speech_s)
