"""The `leakcheck` stage: score every clip of a shard against the reference speakers; fail closed.

A clip is embedded in overlapping windows (so a few seconds of a leaked voice inside a long clip are
not averaged away); each window is scored against every speaker's centroids, one per enrolment
variant (clean, pitch-shifted, band-limited, under accompaniment), as a margin over the window's nearest
embeddings of the synthesised impostor cohort (`ReferenceIndex.speaker_scores`); the clip's score is the
maximum over windows and speakers, less the calibrated offset of the condition its voice is detected under
(`ReferenceIndex.clip_scores`: a reverberant clip is judged against what reverberant impostors score).
Verdicts: `pass`, `leak` (score >= threshold) or `unscorable` (the clip could not be decoded or
embedded), which export treats as a leak. A clip with no voiced speech passes with `no_voice`.

The threshold is calibrated (`calibration.py`) on trials enrolment never saw — reference utterances
under other conditions and implementations, against the synthesised impostor cohort, music and noise —
as the lowest one that keeps every impostor condition's false-positive rate within
`privacy.max_fpr`, unless the config fixes it; a detector that cannot reach `privacy.target_recall` there
fails the run (or, with `on_recall_shortfall: warn`, says so in the release). Before any clip is
trusted, canaries made from held-out utterances (pitch-shifted a semitone, mixed at 0 dB under one of
this shard's generated clips that holds no voice of its own, or under a tone chord, band-limited) are
scored, judged as a sample: more misses than a detector at the target recall would show by chance
(binomial, p < 0.001) fail the run: the detector proves itself on every run.

The per-clip audit (score, nearest speaker) stays in the workspace; it never reaches a release.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

from pipeline.errors import BadInput, LeakCheckFailed
from pipeline.parallel import ordered_map
from pipeline.privacy.calibration import Calibration, calibrate_index, recall_shortfall
from pipeline.privacy.copycheck import RATE as COPY_RATE, CopyBaseline, baseline_key, build_baseline, clip_dcr
from pipeline.privacy.encoder import DEFAULT_ENCODER, SpeakerEncoder, encoder_version, load_encoder
from pipeline.privacy.fingerprint import MAX_BER as FINGERPRINT_MAX_BER
from pipeline.privacy.reference import BANK_TOP_N, ReferenceIndex, build_index, reference_files_fingerprint
from pipeline.privacy.transforms import canaries
from pipeline.progress import progress
from pipeline.storage import synced_stage
from pipeline.workspace import RunContext, run_once, write_json_atomic, write_table_atomic

VERDICTS = ("pass", "leak", "unscorable", "copy")  # copy: the copy check's (copycheck.py), on a voice pass
CANARY_ALPHA = 0.001  # a healthy detector fails a run's canary self-test by chance at most this often
log = logging.getLogger("synthaudio.privacy")

AUDIT_SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("verdict", pa.string(), nullable=False),
        pa.field("no_voice", pa.bool_(), nullable=False),
        pa.field("max_similarity", pa.float64()),  # the clip's leak score; null when unscorable or no voice
        pa.field("nearest_speaker", pa.string()),  # audit only: never exported
        pa.field("windows", pa.int64()),  # embeddings scored (whole voiced part + windows)
        pa.field("error", pa.string()),
        pa.field("attempts", pa.int64(), nullable=False),  # regenerations (on_leak/on_copy: regenerate); 0 = first
        pa.field("copy_dcr", pa.float64()),  # distance to the closest training recording; null: not checked / silent
        pa.field("copy_ber", pa.float64()),  # fingerprint distance to the closest corpus recording; null: too short
        pa.field("condition", pa.string()),  # the condition detected (reverberant / other); null when not scored
    ]
)


@dataclass(frozen=True)
class ClipVerdict:
    verdict: str
    no_voice: bool = False
    score: float | None = None
    nearest_speaker: str | None = None
    windows: int | None = None
    error: str | None = None
    condition: str | None = None  # the condition detected (conditions.ConditionDetector), whose offset applied


def score_clip(audio: np.ndarray, rate: int, encoder: SpeakerEncoder, index: ReferenceIndex, threshold: float) -> ClipVerdict:
    """Verdict for one decoded clip; any failure to embed or score is `unscorable` (a leak), never a pass."""
    try:
        windows = encoder.embed_windows(audio, rate)  # (windows, dim) or None
    except Exception as exc:  # noqa: BLE001 - fail closed on anything the encoder cannot handle
        return ClipVerdict("unscorable", error=f"{type(exc).__name__}: {exc}")
    if windows is None:
        return ClipVerdict("pass", no_voice=True)
    scores, condition = index.clip_scores(windows)  # (speakers,), offset for the detected condition
    if not np.all(np.isfinite(scores)):
        return ClipVerdict("unscorable", error="non-finite similarity")
    best = int(np.argmax(scores))
    verdict = "leak" if scores[best] >= threshold else "pass"
    return ClipVerdict(verdict, score=float(scores[best]), nearest_speaker=index.speakers[best], windows=len(windows),
                       condition=condition)


def score_file(path, encoder: SpeakerEncoder, index: ReferenceIndex, threshold: float) -> ClipVerdict:
    """Verdict for an audio file (channels averaged); a file that cannot be decoded is `unscorable`."""
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)  # (samples, channels)
    except Exception as exc:  # noqa: BLE001 - unreadable audio is unscorable, i.e. a leak
        return ClipVerdict("unscorable", error=f"{type(exc).__name__}: {exc}")
    return score_clip(audio.mean(axis=1), rate, encoder, index, threshold)


def resolve_threshold(privacy, index: ReferenceIndex, encoder: SpeakerEncoder,
                      cache_dir: Path) -> tuple[float, Calibration, ReferenceIndex]:
    """The threshold to use (calibrated when `privacy.threshold` is "auto"), the calibration figures, and the index
    with the calibration's condition offsets (a configured threshold applies to offset scores too)."""
    configured = None if privacy.threshold == "auto" else float(privacy.threshold)
    calibration = calibrate_index(index, encoder, cache_dir, privacy.target_recall, privacy.max_fpr,
                                  canaries_per_speaker=privacy.canaries_per_speaker, threshold=configured)
    return calibration.threshold, calibration, index.calibrated(calibration.condition_offsets)


def allowed_canary_misses(canaries: int, target_recall: float, alpha: float = CANARY_ALPHA) -> int:
    """The most canary misses a detector at `target_recall` shows with probability >= `alpha`: more misses
    than this mean the detector is worse than its target (binomial tail below alpha), so the run fails."""
    from scipy.stats import binom

    miss_rate = 1 - target_recall
    misses = 0
    while misses < canaries and binom.sf(misses, canaries, miss_rate) >= alpha:  # P(X >= misses + 1)
        misses += 1
    return misses


def self_test(encoder: SpeakerEncoder, index: ReferenceIndex, threshold: float,
              accompaniment: np.ndarray | None = None, target_recall: float = 0.95) -> dict:
    """Score the canaries (each held-out utterance pitch-shifted, mixed under `accompaniment` at 0 dB,
    band-limited), judged as a sample: raise LeakCheckFailed when more are missed than a detector at
    `target_recall` would miss by chance (`allowed_canary_misses`)."""
    caught: dict[str, list[int]] = {}
    scores = []
    for number, (_, audio) in enumerate(index.canaries):
        for name, canary in canaries(audio, number, accompaniment).items():
            verdict = score_clip(canary, index.canary_rate, encoder, index, threshold)
            caught.setdefault(name, [0, 0])
            caught[name][0] += verdict.verdict == "leak"
            caught[name][1] += 1
            if verdict.score is not None:
                scores.append(verdict.score)
    total, flagged = sum(n for _, n in caught.values()), sum(c for c, _ in caught.values())
    allowed = allowed_canary_misses(total, target_recall)
    result = {"canaries": total, "caught": flagged, "allowed_misses": allowed,
              "by_transform": {k: {"caught": c, "scored": n} for k, (c, n) in caught.items()},
              "lowest_score": round(min(scores), 4) if scores else None}
    if total - flagged > allowed:
        missed = ", ".join(f"{k} {n - c} of {n}" for k, (c, n) in caught.items() if c < n)
        raise LeakCheckFailed(
            f"detector self-test failed: {total - flagged} of {total} known-positive canaries scored below "
            f"the leak threshold {threshold:.4f} (missed: {missed}); a detector at recall {target_recall} misses "
            f"more than {allowed} with probability under {CANARY_ALPHA}, so the check cannot be trusted and nothing "
            "is published. Review the reference set (more, longer utterances per speaker) or set privacy.threshold "
            "to auto."
        )
    return result


@dataclass(frozen=True)
class Scorer:
    """What judging a clip needs; one per worker process (see `parallel.ordered_map`'s state)."""

    encoder: SpeakerEncoder
    index: ReferenceIndex
    threshold: float
    copies: CopyChecker | None = None  # the copy check, when the run's model learned from the corpus


def make_scorer(index: ReferenceIndex, threshold: float, copies: CopyChecker | None = None,
                encoder_name: str = DEFAULT_ENCODER) -> Scorer:
    """A worker's scorer: loads its own encoder, the one the index was built with (`encoder_name`; the index,
    threshold and copy check come from the parent)."""
    return Scorer(load_encoder(encoder_name), index, threshold, copies)


def _audit_row(clip_id: str, verdict: ClipVerdict, attempts: int) -> dict:
    """One AUDIT_SCHEMA row (the copy check, when it applies, fills copy_dcr and copy_ber and may turn a pass into
    a copy)."""
    return {"clip_id": clip_id, "verdict": verdict.verdict, "no_voice": verdict.no_voice,
            "max_similarity": verdict.score, "nearest_speaker": verdict.nearest_speaker,
            "windows": verdict.windows, "error": verdict.error, "attempts": attempts, "copy_dcr": None,
            "copy_ber": None, "condition": verdict.condition}


def judge_file(scorer: Scorer, clip_id: str, path: Path, attempts: int) -> dict:
    """The audit row of one clip file, decoded once: the voice check, then the copy check when the run has one.
    A file that cannot be decoded is `unscorable`."""
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)  # (samples, channels)
    except Exception as exc:  # noqa: BLE001 - unreadable audio is unscorable, i.e. a leak
        return _audit_row(clip_id, ClipVerdict("unscorable", error=f"{type(exc).__name__}: {exc}"), attempts)
    mono = audio.mean(axis=1)
    row = _audit_row(clip_id, score_clip(mono, rate, scorer.encoder, scorer.index, scorer.threshold), attempts)
    return row if scorer.copies is None else scorer.copies.check_audio(row, mono, rate)


def score_job(scorer: Scorer, job: tuple[str, str]) -> dict:
    """The audit row of one (clip_id, audio path)."""
    clip_id, path = job
    return judge_file(scorer, clip_id, Path(path), attempts=0)


@dataclass(frozen=True)
class CopyChecker:
    """The copy check of a run whose model learned from the corpus (copycheck.py)."""

    baseline: CopyBaseline

    def check_audio(self, row: dict, audio: np.ndarray, rate: int) -> dict:
        """Fill `row`'s copy_dcr and copy_ber from mono audio; a voice pass closer to a training recording than the
        baseline allows, or whose fingerprint meets a corpus recording's (fingerprint.MAX_BER), is a copy. Audio
        the check cannot measure is unscorable (fail closed)."""
        try:
            if rate != COPY_RATE:
                raise ValueError(f"sample rate {rate} Hz, the check compares at {COPY_RATE}")
            row["copy_dcr"] = clip_dcr(self.baseline, audio)
            row["copy_ber"] = self.baseline.near_copy_ber(audio)
        except Exception as exc:  # noqa: BLE001 - what the copy check cannot measure is not known to be new
            return self._unscorable(row, exc)
        close = row["copy_dcr"] is not None and row["copy_dcr"] < self.baseline.threshold
        printed = row["copy_ber"] is not None and row["copy_ber"] < FINGERPRINT_MAX_BER
        if row["verdict"] == "pass" and (close or printed):
            row["verdict"] = "copy"
        return row

    @staticmethod
    def _unscorable(row: dict, exc: Exception) -> dict:
        row.update(verdict="unscorable", error=f"copy check: {type(exc).__name__}: {exc}")
        return row


def copy_checker(ctx: RunContext) -> CopyChecker | None:
    """The run's copy check, or None when its model did not learn from the corpus (nothing it could copy). The
    baseline (training windows and the model's renditions of them, held-out distances) is cached per split and
    model in the private reference cache."""
    from pipeline.training.corpus import list_corpus, read_audio
    from pipeline.training.stage import model_folder
    from pipeline.workspace import read_json

    pinned = read_json(ctx.root / "plan.json").get("model")
    if pinned is None or ctx.loaded.corpus is None:
        return None
    folder = model_folder(ctx.loaded.models_root, ctx.dataset, pinned["version"])
    split = read_json(folder / "corpus.json")
    ratio = ctx.config.privacy.copy_ratio
    cache = ctx.reference_cache / "copycheck" / (
        baseline_key(split["train_sha256"], split["holdout_sha256"], ratio, pinned["weights_sha256"]) + ".npz")
    if cache.is_file():
        return CopyChecker(CopyBaseline.load(cache))
    by_sha = {f.sha256: f.path for f in list_corpus(ctx.loaded.corpus)}
    missing = [sha for sha in split["train_sha256"] + split["holdout_sha256"] if sha not in by_sha]
    if missing:
        raise LeakCheckFailed(f"copy check: {len(missing)} recording(s) model {pinned['version']} was trained or "
                              "held out on are no longer in source.corpus; the check needs them to know what a copy "
                              "is, so nothing is published. Restore them or train a new model.")
    from pipeline.generation.sampler import rendition
    from pipeline.generation.stage import load_pinned_model

    try:
        model = load_pinned_model(ctx, pinned)
    except BadInput as exc:
        raise LeakCheckFailed(f"copy check: {exc}; nothing is published") from exc
    try:
        baseline = build_baseline([read_audio(by_sha[sha]) for sha in split["train_sha256"]],
                                  [read_audio(by_sha[sha]) for sha in split["holdout_sha256"]], ratio,
                                  render=lambda audio: rendition(model.model, audio))
    except ValueError as exc:
        raise LeakCheckFailed(f"copy check: {exc}; nothing is published") from exc
    baseline.save(cache)
    return CopyChecker(baseline)


def regenerate_rejected(ctx: RunContext, shard: int, rows: list[dict], scorer: Scorer) -> list[Path]:
    """on_leak / on_copy: regenerate. Sample every clip rejected for that reason again with a new seed, each attempt
    hotter (privacy.regenerate_temperature_step; in continue and rerender also with a shorter prime or more top-level
    codes resampled: `SamplingParams`), up to max_regenerations times, until it passes both checks; `rows` (the
    audit) are updated in place. Passing replacements are written under `regenerated/` with their generation rows
    (regenerated.parquet) and features (regenerated_features.parquet), which export uses instead of the originals.
    Returns the files written."""
    from pipeline.features.stage import extract_rows, feature_set_of, write_feature_rows
    from pipeline.generation.stage import GENERATION_SCHEMA, regenerate
    from pipeline.prompts.stage import shard_prompts

    privacy = ctx.config.privacy
    again = {"leak": privacy.on_leak, "unscorable": privacy.on_leak, "copy": privacy.on_copy}
    out_dir = ctx.shard_dir("leakcheck", shard)
    by_id = {row["clip_id"]: row for row in rows}
    prompts = shard_prompts(ctx, shard)
    pending = [row["clip_id"] for row in rows if again.get(row["verdict"]) == "regenerate"]
    replacements: list[dict] = []
    for attempt in range(1, ctx.config.privacy.max_regenerations + 1):
        if not pending:
            break
        folder = out_dir / "regenerated" / f"attempt-{attempt}"
        rejected = set(pending)
        mask = pa.array([cid in rejected for cid in prompts.column("clip_id").to_pylist()])
        generated = regenerate(ctx, prompts.filter(mask), attempt, folder)
        still = []
        for record in generated.to_pylist():
            row = by_id[record["clip_id"]]
            row.update(judge_file(scorer, record["clip_id"], folder / record["audio_file"], attempts=attempt))
            if row["verdict"] == "pass":
                replacements.append({**record, "audio_file": f"regenerated/attempt-{attempt}/{record['audio_file']}"})
            else:
                still.append(record["clip_id"])
        log.info("leakcheck shard %d: regeneration attempt %d replaced %d of %d rejected clip(s)",
                 shard, attempt, len(pending) - len(still), len(pending))
        pending = still
    replacements.sort(key=lambda r: r["clip_id"])
    table_path, features_path = out_dir / "regenerated.parquet", out_dir / "regenerated_features.parquet"
    write_table_atomic(table_path, pa.Table.from_pylist(replacements, schema=GENERATION_SCHEMA))
    clips = [(r["clip_id"], out_dir / r["audio_file"]) for r in replacements]
    write_feature_rows(extract_rows(feature_set_of(ctx.config.features), clips, 1), features_path)
    return [table_path, features_path, *(path for _, path in clips)]


def _accompaniment(paths: list[Path], encoder: SpeakerEncoder, tries: int = 8) -> np.ndarray | None:
    """What canaries are mixed under: the first of the shard's generated clips (up to `tries`) with no voice
    of its own, at the encoder's rate; None (a tone chord is used) when every clip tried holds a voice."""
    import librosa

    for path in paths[:tries]:
        try:
            audio, file_rate = sf.read(path, dtype="float32", always_2d=True)
            audio = librosa.resample(audio.mean(axis=1), orig_sr=file_rate, target_sr=encoder.sample_rate)
            if encoder.voiced(audio, encoder.sample_rate) is None and np.any(audio):
                return audio
        except Exception:  # noqa: BLE001 - an unreadable clip is scored (unscorable) later
            continue
    return None


@synced_stage("leakcheck")
def leakcheck(ctx: RunContext, shard: int, encoder: SpeakerEncoder | None = None) -> None:
    """Write the shard's verdicts (audit parquet) and summary; skipped if already done on the same inputs."""
    privacy = ctx.config.privacy
    gen_dir = ctx.shard_dir("generate", shard)
    out_dir = ctx.shard_dir("leakcheck", shard)
    # The inputs are known from file hashes alone: a rerun on the same inputs loads no encoder, embeds nothing.
    inputs = {
        "generate": ctx.output_fingerprint("generate", shard),
        "privacy": privacy.model_dump(exclude={"workers", "reference_dir", "cohort_dir"}),
        "reference": reference_files_fingerprint(ctx.loaded.reference_dir, ctx.loaded.cohort_dir),
        "encoder": encoder.version if encoder is not None else encoder_version(),
    }

    def body():
        nonlocal encoder
        encoder = encoder or load_encoder()
        index = build_index(ctx.loaded.reference_dir, encoder, ctx.reference_cache, privacy.canaries_per_speaker,
                            cohort_dir=ctx.loaded.cohort_dir, skip_bad=privacy.skip_bad_reference_files)
        threshold, calibration, index = resolve_threshold(privacy, index, encoder, ctx.reference_cache)
        shortfall = None
        if privacy.threshold == "auto":
            shortfall = recall_shortfall(calibration, len(index.enrolled) // len(index.speakers))
        if shortfall and privacy.on_recall_shortfall == "fail":
            raise LeakCheckFailed(shortfall + " Nothing is published until the detector can be trusted "
                                  "(privacy.on_recall_shortfall: warn publishes with the shortfall stated).")
        if shortfall:
            log.warning("leakcheck shard %d: %s", shard, shortfall)
        records = pq.read_table(gen_dir / "generation.parquet", columns=["clip_id", "audio_file"]).to_pylist()
        accompaniment = _accompaniment([gen_dir / r["audio_file"] for r in records], encoder)
        canary_result = self_test(encoder, index, threshold, accompaniment, privacy.target_recall)
        jobs = [(r["clip_id"], str(gen_dir / r["audio_file"])) for r in records]
        copies = copy_checker(ctx)
        scorer = Scorer(encoder, index, threshold, copies)
        rows = list(progress(ordered_map(score_job, jobs, privacy.workers,
                                         state=(make_scorer, (index, threshold, copies, encoder.name)),
                                         local_state=scorer),
                             desc=f"leakcheck shard {shard}", quiet=ctx.quiet, unit="clip", total=len(jobs)))
        first_pass = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
        extra = []
        if "regenerate" in (privacy.on_leak, privacy.on_copy):
            extra = regenerate_rejected(ctx, shard, rows, scorer)
        audit = out_dir / "audit.parquet"
        write_table_atomic(audit, pa.Table.from_pylist(rows, schema=AUDIT_SCHEMA))
        summary = out_dir / "summary.json"
        write_json_atomic(summary, {
            "counts": {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS},
            "first_pass_counts": first_pass,
            "regenerated": sum(r["attempts"] > 0 and r["verdict"] == "pass" for r in rows),
            "no_voice": sum(r["no_voice"] for r in rows),
            "scores": [r["max_similarity"] for r in rows if r["max_similarity"] is not None],
            "self_test": canary_result, "threshold": threshold,
            "threshold_source": "calibrated" if privacy.threshold == "auto" else "configured",
            "calibration": calibration.as_dict(), "recall_shortfall": shortfall,
            "score_normalisation": f"cohort margin (raw - near) / (1 - near), near = mean cosine to the "
                                   f"{BANK_TOP_N} nearest of {len(index.bank_voices)} cohort embeddings "
                                   f"({len(index.cohort)} voices), less the offset of the detected condition",
            "enrolment_variants": list(index.variants),
            "reference_fingerprint": index.fingerprint, "encoder": encoder.version,
            "copy_check": None if copies is None else {
                "ratio": copies.baseline.ratio,
                "threshold": copies.baseline.threshold, "holdout_dcr": copies.baseline.holdout_dcr.tolist(),
                "dcr": [r["copy_dcr"] for r in rows if r["copy_dcr"] is not None],
                "fingerprint": {"max_ber": FINGERPRINT_MAX_BER, "recordings": len(copies.baseline.fingerprints),
                                "ber": [r["copy_ber"] for r in rows if r["copy_ber"] is not None]}},
        })
        return [audit, summary, *extra]

    run_once(ctx, "leakcheck", shard, inputs, body)
