"""The private reference set: files, cached embeddings, per-speaker centroids, canaries, cohort.

Layout: `<reference_dir>/<speaker_id>/<file>.{wav,flac}`, or a CSV manifest `speaker_id,path`. Each file is decoded, resampled to the
encoder's rate, VAD-trimmed and embedded under every enrolment variant (clean, pitch-shifted,
band-limited, under accompaniment; see `transforms.py`); the embeddings are cached in the
workspace keyed by the file's sha256, the encoder version and the variant list, so adding one
speaker embeds only that speaker. The last `canaries_per_speaker` files of each speaker (in name
order) are held out of the centroids and become the run's canaries. The impostor cohort
(`cohort.py`: voices synthesised offline, plus `privacy.cohort_dir` if given) is embedded the same way
and under the calibration conditions (`conditions.py`); its embeddings form the `bank` that scores are
normalised against.

Nuisance attribute projection (NAP): music, rooms and pitch move a GE2E embedding along a few directions
that barely depend on who speaks (music pulls every voice the same way). Those directions are estimated
from how far utterances move from their clean embedding — every cohort and reference utterance under the
enrolment variants, and every *cohort* utterance under the calibration conditions (rooms, other music,
tape pitch, a phone band) — the top `NAP_DIRECTIONS` eigenvectors of the scatter of (moved − clean); they
are projected out of every embedding before anything is compared: enrolment, cohort bank, calibration
trials and clips alike. The reference speakers' own utterances under the calibration conditions never
train it (they are calibration's genuine trials), and neither enrolment nor the projection ever sees the
benchmark's implementations. Measured with `benchmarks/privacy.py` at the threshold the pipeline picks
(FPR bound 0.05 kept): enrolment variants alone took the held-out part from 0.78 to 0.88; with the
cohort's condition moves, ten directions and the margin scaled by (1 - near) instead of its square, the
tuning part's third family of implementations (a Schroeder reverberator, FM-synth music) went from
0.93 to 0.96, and the held-out part from 0.88 to 0.92.
The cohort's raw embeddings, labelled by what made them, also train the condition detector
(`conditions.ConditionDetector`) whose calibrated offsets `clip_scores` applies.
None of this ever reaches a release: only `fingerprint` and aggregate figures do.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.errors import BadInput
from pipeline.privacy.conditions import DEFAULT_CONDITION, DETECTOR_VERSION, ConditionDetector, fit_detector
from pipeline.privacy.encoder import SpeakerEncoder
from pipeline.privacy.transforms import ENROLMENT_VARIANTS
from pipeline.files import atomic_path, exclusive

AUDIO_SUFFIXES = (".wav", ".flac")
MIN_SPEAKER_SPEECH_S = 5.0  # less voiced speech than this per speaker makes a noisy centroid: warned about
BANK_TOP_N = 20  # a window is compared with the mean of its 20 nearest cohort embeddings
NAP_DIRECTIONS = 10  # nuisance directions projected out (swept on the tuning parts: benchmarks/PRIVACY.md)


def nap_version(directions: int = NAP_DIRECTIONS) -> str:
    """The NAP's part of every fingerprint of the index: what it learns from, and how many directions it removes."""
    return f"nap{directions}-variants-and-cohort-conditions-v2"


NAP_VERSION = nap_version()

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
    # (speaker index, (variants, dim)) per enrolled file, projected like everything compared; for calibration
    enrolled: list[tuple[int, np.ndarray]]
    canaries: list[tuple[str, np.ndarray]]  # (speaker, (samples,) float32 @ canary_rate), held out
    canary_rate: int
    fingerprint: str  # sha256 over (speaker, file sha256) pairs, encoder version, variants and cohort
    bank: np.ndarray | None = None  # (entries, dim) cohort embeddings (every variant and condition), unit norm
    bank_voices: np.ndarray | None = None  # (entries,) the cohort voice of each bank entry
    speech_s: dict[str, float] = field(default_factory=dict)  # voiced seconds per speaker
    enrolled_files: list[ReferenceFile] = field(default_factory=list)  # parallel to `enrolled`
    cohort: list = field(default_factory=list)  # CohortVoice of every bank voice
    # (dim, dim) nuisance projection applied to every embedding compared (None: raw embeddings, no cohort)
    projection: np.ndarray | None = None
    detector: ConditionDetector | None = None  # the condition a clip's voice reached it under (None: no cohort)
    # detected condition -> offset subtracted from a clip's scores (from calibration: `calibrated`); None before
    offsets: dict[str, float] | None = None

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        """Embeddings (..., dim) with the nuisance directions removed, unit norm again (as is without NAP)."""
        if self.projection is None:
            return embeddings
        projected = embeddings @ self.projection
        return (projected / np.maximum(np.linalg.norm(projected, axis=-1, keepdims=True), 1e-12)).astype(np.float32)

    def speaker_scores(self, windows: np.ndarray, centroids: np.ndarray | None = None,
                       exclude_voice: str | None = None) -> np.ndarray:
        """Each speaker's score for a clip (speakers,), the best over the clip's windows.

        Per window: `raw`, the best cosine similarity to the speaker's variant centroids, and `near`, the
        mean similarity to the window's BANK_TOP_N nearest cohort embeddings. The score is the margin
        over the cohort as a share of the room left above it: (raw - near) / (1 - near). A distorted or
        generic window (under music, in a room) sits close to many cohort voices, so `near` is high and
        every raw similarity is inflated; a margin there means more than the same margin on a clean
        window. (The square of the room, used before, over-rewarded phone-band impostors, whose `near` is
        high: on the held-out reference set they alone set the threshold, at 1.6 times the next condition's.)
        `exclude_voice` leaves one cohort voice out of the bank (when it is itself the probe).
        `windows` are raw encoder embeddings; the index projects them as it projected its own (NAP)."""
        centroids = self.centroids if centroids is None else centroids
        windows = self.project(windows)
        raw = np.einsum("wd,svd->wsv", windows, centroids).max(axis=2)  # (windows, speakers)
        if self.bank is not None:
            raw = cohort_margin(raw, self.cohort_near(windows, exclude_voice))
        return raw.max(axis=0)

    def cohort_near(self, projected: np.ndarray, exclude_voice: str | None = None) -> np.ndarray:
        """(n, 1): each projected embedding's mean similarity to its BANK_TOP_N nearest cohort embeddings (those of
        `exclude_voice` left out)."""
        bank = self.bank if exclude_voice is None else self.bank[self.bank_voices != exclude_voice]
        return np.sort(projected @ bank.T, axis=1)[:, -BANK_TOP_N:].mean(axis=1, keepdims=True)

    def condition(self, windows: np.ndarray) -> str:
        """The condition a clip's voice reached it under, detected from its raw whole-clip embedding (windows[0])."""
        return DEFAULT_CONDITION if self.detector is None else self.detector.detect(windows[0])

    def clip_scores(self, windows: np.ndarray) -> tuple[np.ndarray, str]:
        """(each speaker's leak score (speakers,), the detected condition): `speaker_scores` less the calibrated
        offset of the clip's condition, so that one threshold serves every condition."""
        if self.detector is not None and self.offsets is None:
            raise RuntimeError("clip_scores on an index not calibrated yet: score clips with index.calibrated(...)")
        condition = self.condition(windows)
        return self.speaker_scores(windows) - (self.offsets or {}).get(condition, 0.0), condition

    def calibrated(self, offsets: dict[str, float]) -> "ReferenceIndex":
        """This index with the calibration's condition offsets (`Calibration.condition_offsets`)."""
        return replace(self, offsets=dict(offsets))


def cohort_margin(raw: np.ndarray, near: np.ndarray) -> np.ndarray:
    """The margin of raw similarities over the cohort's `near` as a share of the room left above it (see
    `ReferenceIndex.speaker_scores`); arrays broadcast."""
    return (raw - near) / np.maximum(1.0 - near, 1e-3)


def list_reference_files(reference: Path, what: str = "privacy.reference_dir") -> list[ReferenceFile]:
    """Files of a reference set: a folder of `<speaker_id>/<file>.wav|flac`, or a CSV manifest with
    columns `speaker_id,path` (paths relative to the manifest's folder): the corpus's layouts."""
    from pipeline.training.corpus import list_corpus

    files = list_corpus(reference, what, empty="; a leak check without reference voices would pass everything")
    return [ReferenceFile(f.speaker, f.path, f.sha256) for f in files]


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
    """Cache key of an embedding set: the encoder version, the enrolment variants (names and code: ENROLMENT_CODE)
    and how they are embedded (a file's variants in one batch, whose float sums differ in the last bits from one
    variant at a time)."""
    names = ",".join(ENROLMENT_VARIANTS) + "|one-batch-per-file"
    return f"{encoder.version}-{hashlib.sha256(names.encode() + source(*ENROLMENT_CODE)).hexdigest()[:8]}"


# The modules whose code decides a file's cached embeddings: its enrolment variants, and its calibration conditions'
# windows (`condition_windows`). Part of their cache keys, so a changed transformation, condition or way of cutting
# and embedding a signal is never served embeddings made the old way (a name alone does not change with its code).
ENROLMENT_CODE = ("transforms.py", "music.py", "encoder.py")
CONDITIONS_CODE = ("conditions.py", "transforms.py", "music.py", "encoder.py")


@functools.lru_cache(maxsize=None)
def source(*modules: str) -> bytes:
    """The source of these modules of `pipeline/privacy/`, concatenated (read once per process: every cache lookup
    of every reference and cohort file asks for its key)."""
    return b"".join((Path(__file__).parent / module).read_bytes() for module in modules)


def embed_variants(encoder: SpeakerEncoder, file: ReferenceFile, cache_dir: Path) -> tuple[np.ndarray, float]:
    """((variants, dim) embeddings, voiced seconds) of one reference file, from the cache when present."""
    cache = _variants_cache(encoder, file, cache_dir)
    if cache.is_file():
        with np.load(cache) as stored:
            return stored["embeddings"], float(stored["speech_s"])
    audio = read_voice(file.path, encoder.sample_rate)
    speech = encoder.voiced(audio, encoder.sample_rate)
    if speech is None:
        raise BadInput(f"{file.path}: holds no voiced speech (under {encoder.min_voiced_s} s after VAD)")
    embeddings = encoder.embed_many([transform(speech) for transform in ENROLMENT_VARIANTS.values()],
                                    encoder.sample_rate, known_speech=True)
    for name, embedding in zip(ENROLMENT_VARIANTS, embeddings):
        if embedding is None:
            raise BadInput(f"{file.path}: its {name} variant holds no voiced speech")
    stacked, speech_s = np.stack(embeddings), speech.size / encoder.sample_rate  # (variants, dim)
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, embeddings=stacked, speech_s=speech_s)
    return stacked, speech_s


def _variants_cache(encoder: SpeakerEncoder, file: ReferenceFile, cache_dir: Path) -> Path:
    return cache_dir / variants_key(encoder) / f"{file.sha256}.npz"


def embed_files(encoder, files, cache_dir, skip_bad: bool, what: str) -> list[tuple[ReferenceFile, np.ndarray, float]]:
    """Embed every file; bad files are all listed in one error, or skipped with a warning if allowed. A missing
    tool that enrolment needs (FluidSynth: `music.py`) fails once, before any file, not as every file being bad
    (or, where bad files are skipped, as every file left out)."""
    from pipeline.privacy.music import require_fluidsynth

    if any(not _variants_cache(encoder, file, cache_dir).is_file() for file in files):
        require_fluidsynth()
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
                cohort_dir: Path | None = None, skip_bad: bool = False, with_cohort: bool = True,
                nap_directions: int = NAP_DIRECTIONS, same_voice_cosine: float | None = None) -> ReferenceIndex:
    """Embed (or load cached embeddings of) every reference file; hold out canaries per speaker; embed the
    impostor cohort into the score-normalisation bank (`with_cohort=False`: raw cosine, for tests).
    `nap_directions`: the nuisance directions projected out; `same_voice_cosine`: the cohort's lookalike cut
    (default `cohort.SAME_VOICE_COSINE`). Other values only to screen them: benchmarks."""
    files = list_reference_files(reference_dir)
    if with_cohort:  # a run calibrates too: embed variants and conditions of every file in parallel first
        warm_embedding_cache(encoder, files, cache_dir)
    by_speaker: dict[str, list[tuple[ReferenceFile, np.ndarray, float]]] = {}
    for item in embed_files(encoder, files, cache_dir, skip_bad, "privacy.reference_dir"):
        by_speaker.setdefault(item[0].speaker, []).append(item)
    speakers, enrolled, canaries, speech_s, enrolled_files = [], [], [], {}, []
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
        enrolled += [(len(speakers), embeddings) for _, embeddings, _ in items[:split]]
        enrolled_files += [file for file, _, _ in items[:split]]
        canaries += [(speaker, read_voice(file.path, encoder.sample_rate)) for file, _, _ in items[split:]]
        speakers.append(speaker)
    digest = hashlib.sha256(variants_key(encoder).encode())
    if with_cohort:
        digest.update(f"{nap_version(nap_directions)}|{DETECTOR_VERSION}".encode())
    for file in files:
        digest.update(f"{file.speaker}\x1f{file.sha256}\n".encode())
    index = ReferenceIndex(speakers, tuple(ENROLMENT_VARIANTS), speaker_centroids(enrolled, len(speakers)),
                           enrolled, canaries, encoder.sample_rate, "", speech_s=speech_s,
                           enrolled_files=enrolled_files)
    if with_cohort:
        _add_cohort(index, encoder, cache_dir, cohort_dir, digest, nap_directions, same_voice_cosine)
    index.fingerprint = digest.hexdigest()
    return index


def _add_cohort(index: ReferenceIndex, encoder: SpeakerEncoder, cache_dir: Path, cohort_dir: Path | None,
                digest, nap_directions: int = NAP_DIRECTIONS, same_voice_cosine: float | None = None) -> None:
    """Embed the impostor cohort (every variant and calibration condition) into `index.bank`."""
    from pipeline.privacy.cohort import SAME_VOICE_COSINE, CohortVoice, drop_reference_lookalikes, synthesise_cohort

    voices = synthesise_cohort(cache_dir)
    if cohort_dir is not None:
        extra: dict[str, list[ReferenceFile]] = {}
        for file in list_reference_files(cohort_dir, "privacy.cohort_dir"):
            extra.setdefault(file.speaker, []).append(file)
        voices += [CohortVoice(f"user_{name}", tuple(files)) for name, files in extra.items()]
    warm_embedding_cache(encoder, [file for voice in voices for file in voice.files], cache_dir, what="cohort")
    embedded = []
    for voice in voices:
        done = embed_files(encoder, list(voice.files), cache_dir, True, "impostor cohort")
        if done:
            voice = CohortVoice(voice.voice, tuple(file for file, _, _ in done))
            embedded.append((voice, np.stack([embeddings for _, embeddings, _ in done])))  # (files, variants, dim)
    cut = SAME_VOICE_COSINE if same_voice_cosine is None else same_voice_cosine
    kept = drop_reference_lookalikes(embedded, index.centroids, same_voice_cosine=cut)
    rows, owners, made_under = [], [], []
    moves = [_variant_moves(embeddings) for _, embeddings in kept]  # (files * (variants - 1), dim) each
    moves += [_variant_moves(embeddings[None]) for _, embeddings in index.enrolled]
    for voice, embeddings in kept:
        rows.append(embeddings.reshape(-1, embeddings.shape[-1]))  # (files * variants, dim)
        owners += [voice.voice] * (embeddings.shape[0] * embeddings.shape[1])
        made_under += list(index.variants) * embeddings.shape[0]
        for file, clean in zip(voice.files, embeddings[:, 0], strict=True):
            for name, windows in condition_windows(encoder, file, cache_dir).items():
                if windows is not None:
                    rows.append(windows[:1])  # the whole clip's embedding
                    owners.append(voice.voice)
                    made_under.append(name)
                    moves.append(windows[:1] - clean)
            digest.update(f"cohort\x1f{file.sha256}\n".encode())
    index.bank = np.concatenate(rows).astype(np.float32)
    index.bank_voices = np.array(owners)
    index.detector = fit_detector(index.bank, made_under)  # raw embeddings: NAP removes what it looks at
    index.cohort = [voice for voice, _ in kept]
    _apply_projection(index, nap_projection(np.concatenate(moves), nap_directions))


def _variant_moves(embeddings: np.ndarray) -> np.ndarray:
    """(utterances * (variants - 1), dim): each variant's embedding minus its utterance's clean one, from
    (utterances, variants, dim) embeddings with the clean variant first."""
    return (embeddings[:, 1:] - embeddings[:, :1]).reshape(-1, embeddings.shape[-1])


def nap_projection(moves: np.ndarray, directions: int = NAP_DIRECTIONS) -> np.ndarray:
    """(dim, dim) projection that removes the `directions` along which nuisances move embeddings most:
    `moves` is (n, dim), each row an utterance's embedding under a nuisance minus its clean embedding; the
    directions are the top eigenvectors of their scatter."""
    moves = moves.astype(np.float64)
    _, vectors = np.linalg.eigh(moves.T @ moves)  # ascending eigenvalues
    nuisance = vectors[:, -directions:]  # (dim, directions)
    return np.eye(moves.shape[1]) - nuisance @ nuisance.T


def speaker_centroids(enrolled: list[tuple[int, np.ndarray]], speakers: int) -> np.ndarray:
    """(speakers, variants, dim) unit-norm centroids: the mean of each speaker's enrolled (variants, dim)
    embeddings, in enrolment order."""
    centroids = []
    for speaker in range(speakers):
        mean = np.mean([embeddings for owner, embeddings in enrolled if owner == speaker], axis=0)
        centroids.append(mean / np.linalg.norm(mean, axis=-1, keepdims=True))
    return np.stack(centroids).astype(np.float32)


def _apply_projection(index: ReferenceIndex, projection: np.ndarray) -> None:
    """Project the index's enrolment embeddings and cohort bank; recompute the centroids from them."""
    index.projection = projection.astype(np.float32)
    index.enrolled = [(speaker, index.project(embeddings)) for speaker, embeddings in index.enrolled]
    index.centroids = speaker_centroids(index.enrolled, len(index.speakers))
    index.bank = index.project(index.bank)


def _is_cached(encoder: SpeakerEncoder, file: ReferenceFile, cache_dir: Path) -> bool:
    return _variants_cache(encoder, file, cache_dir).is_file() and _conditions_cache(encoder, file, cache_dir).is_file()


def _cache_embeddings(encoder: SpeakerEncoder, job: tuple[ReferenceFile, Path]) -> None:
    file, cache_dir = job
    try:
        embed_variants(encoder, file, cache_dir)
        condition_windows(encoder, file, cache_dir)
    except BadInput:
        pass  # reported by embed_files, with every other bad file


def warm_embedding_cache(encoder: SpeakerEncoder, files: list[ReferenceFile], cache_dir: Path,
                         workers: int = 0, what: str = "reference") -> None:
    """Embed the files not cached yet (every variant and calibration condition) over a process pool (one
    worker per core by default, each loading its own encoder of the same name); the sequential readers then hit the
    cache. The first run on a reference set spends its minutes here, so it shows a progress bar (`what` names the
    files)."""
    from pipeline.parallel import ordered_map
    from pipeline.privacy.encoder import load_encoder
    from pipeline.progress import progress

    if all(_is_cached(encoder, file, cache_dir) for file in files):
        return
    with exclusive(cache_dir / ".embedding.lock"):  # concurrent leak checks sharing a cache embed each file once
        pending = [(file, cache_dir) for file in files if not _is_cached(encoder, file, cache_dir)]
        embedded = ordered_map(_cache_embeddings, pending, workers, state=(load_encoder, (encoder.name,)),
                               local_state=encoder)
        for _ in progress(embedded, total=len(pending), desc=f"embedding {what} audio", unit="file"):
            pass


def reference_files_fingerprint(reference_dir: Path, cohort_dir: Path | None = None) -> str:
    """A hash of everything the leak check's index is built from, read from file hashes alone (no encoder):
    reference files (speaker, sha256), the user's cohort files, the enrolment variants and calibration conditions
    (names and code), and synthesised cohort version. Equal fingerprints give the same index."""
    from pipeline.privacy.cohort import COHORT_VERSION, COHORT_VOICES
    from pipeline.privacy.conditions import CALIBRATION_CONDITIONS

    digest = hashlib.sha256(",".join([*ENROLMENT_VARIANTS, "|", *CALIBRATION_CONDITIONS]).encode())
    digest.update(source(*sorted(set(ENROLMENT_CODE) | set(CONDITIONS_CODE))))
    digest.update(f"cohort-v{COHORT_VERSION}:{COHORT_VOICES!r}|{NAP_VERSION}|{DETECTOR_VERSION}\n".encode())
    for file in list_reference_files(reference_dir):
        digest.update(f"{file.speaker}\x1f{file.sha256}\n".encode())
    if cohort_dir is not None:
        for file in list_reference_files(cohort_dir, "privacy.cohort_dir"):
            digest.update(f"user-cohort\x1f{file.speaker}\x1f{file.sha256}\n".encode())
    return digest.hexdigest()


def conditions_key(encoder: SpeakerEncoder) -> str:
    """Cache key of a file's condition windows: the encoder version, the conditions (names and code: CONDITIONS_CODE)
    and the window layout (the windows are what is cached, so a new window length or hop must not meet windows cut
    the old way)."""
    from pipeline.privacy import encoder as encoders
    from pipeline.privacy.conditions import CALIBRATION_CONDITIONS

    layout = f"windows {encoders.WINDOW_S}/{encoders.WINDOW_HOP_S}"
    names = ",".join(CALIBRATION_CONDITIONS) + f"|one-batch-per-file|{layout}"
    return f"{encoder.version}-conditions-{hashlib.sha256(names.encode() + source(*CONDITIONS_CODE)).hexdigest()[:8]}"


def _conditions_cache(encoder: SpeakerEncoder, file: ReferenceFile, cache_dir: Path) -> Path:
    return cache_dir / conditions_key(encoder) / f"{file.sha256}.npz"


def condition_windows(encoder: SpeakerEncoder, file: ReferenceFile, cache_dir: Path) -> dict[str, np.ndarray | None]:
    """Condition name -> the file's window embeddings (windows, dim) under it, as a clip would be scored;
    None where no voice is left. Seeded by the file's sha256 and cached like enrolment embeddings."""
    from pipeline.privacy.conditions import CALIBRATION_CONDITIONS

    cache = _conditions_cache(encoder, file, cache_dir)
    names = list(CALIBRATION_CONDITIONS)
    if cache.is_file():
        with np.load(cache) as stored:
            counts, stacked = stored["counts"], stored["windows"]
        bounds = np.concatenate([[0], np.cumsum(counts)])
        return {name: (stacked[bounds[i]:bounds[i + 1]] if counts[i] else None) for i, name in enumerate(names)}
    audio = read_voice(file.path, encoder.sample_rate)
    seed = int(file.sha256[:8], 16)
    signals = [condition(audio, seed) for condition in CALIBRATION_CONDITIONS.values()]
    result = dict(zip(names, encoder.embed_windows_many(signals, encoder.sample_rate)))
    counts = np.array([0 if w is None else len(w) for w in result.values()])
    stacked = np.concatenate([w for w in result.values() if w is not None] or [np.zeros((0, 1), np.float32)])
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, counts=counts, windows=stacked)
    return result
