"""The `leakcheck` stage: score every clip of a shard against the reference speakers; fail closed.

Verdicts: `pass`, `leak` (max cosine similarity to a reference speaker >= threshold) or
`unscorable` (the clip could not be decoded or embedded), which export treats as a leak. A clip
with no voiced speech passes with `no_voice`. Before any clip is trusted, the held-out canaries
(known positives) are scored and must all be caught, or the run fails: the detector proves itself.

The per-clip audit (score, nearest speaker) stays in the workspace; it never reaches a release.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

from pipeline.errors import LeakCheckFailed
from pipeline.privacy.encoder import SpeakerEncoder, load_encoder
from pipeline.privacy.reference import ReferenceIndex, build_index
from pipeline.progress import progress
from pipeline.workspace import RunContext, run_once, write_json_atomic, write_table_atomic

VERDICTS = ("pass", "leak", "unscorable")

AUDIT_SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("verdict", pa.string(), nullable=False),
        pa.field("no_voice", pa.bool_(), nullable=False),
        pa.field("max_similarity", pa.float64()),  # null when unscorable or no voice
        pa.field("nearest_speaker", pa.string()),  # audit only: never exported
        pa.field("error", pa.string()),
    ]
)


@dataclass(frozen=True)
class ClipVerdict:
    verdict: str
    no_voice: bool = False
    score: float | None = None
    nearest_speaker: str | None = None
    error: str | None = None


def score_clip(audio: np.ndarray, rate: int, encoder: SpeakerEncoder, index: ReferenceIndex, threshold: float) -> ClipVerdict:
    """Verdict for one decoded clip; any failure to embed is `unscorable` (a leak), never a pass."""
    try:
        embedding = encoder.embed(audio, rate)
    except Exception as exc:  # noqa: BLE001 - fail closed on anything the encoder cannot handle
        return ClipVerdict("unscorable", error=f"{type(exc).__name__}: {exc}")
    if embedding is None:
        return ClipVerdict("pass", no_voice=True)
    scores = index.scores(embedding)  # (speakers,)
    if not np.all(np.isfinite(scores)):
        return ClipVerdict("unscorable", error="non-finite similarity")
    best = int(np.argmax(scores))
    verdict = "leak" if scores[best] >= threshold else "pass"
    return ClipVerdict(verdict, score=float(scores[best]), nearest_speaker=index.speakers[best])


def score_file(path, encoder: SpeakerEncoder, index: ReferenceIndex, threshold: float) -> ClipVerdict:
    """Verdict for an audio file (channels averaged); a file that cannot be decoded is `unscorable`."""
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)  # (samples, channels)
    except Exception as exc:  # noqa: BLE001 - unreadable audio is unscorable, i.e. a leak
        return ClipVerdict("unscorable", error=f"{type(exc).__name__}: {exc}")
    return score_clip(audio.mean(axis=1), rate, encoder, index, threshold)


def self_test(encoder: SpeakerEncoder, index: ReferenceIndex, threshold: float) -> dict:
    """Score the canaries; raise LeakCheckFailed unless every one is flagged as a leak."""
    missed = 0
    for _, audio in index.canaries:
        if score_clip(audio, index.canary_rate, encoder, index, threshold).verdict == "pass":
            missed += 1
    result = {"canaries": len(index.canaries), "caught": len(index.canaries) - missed}
    if missed:
        raise LeakCheckFailed(
            f"detector self-test failed: {missed} of {len(index.canaries)} known-positive canaries scored below "
            f"the leak threshold {threshold}; the check cannot be trusted, so nothing is published. "
            "Lower privacy.threshold or review the reference set."
        )
    return result


def leakcheck(ctx: RunContext, shard: int, encoder: SpeakerEncoder | None = None) -> None:
    """Write the shard's verdicts (audit parquet) and summary; skipped if already done on the same inputs."""
    privacy = ctx.config.privacy
    gen_dir = ctx.shard_dir("generate", shard)
    out_dir = ctx.shard_dir("leakcheck", shard)
    encoder = encoder or load_encoder()
    index = build_index(ctx.loaded.reference_dir, encoder, ctx.reference_cache, privacy.canaries_per_speaker)
    inputs = {
        "generate": ctx.output_fingerprint("generate", shard), "privacy": privacy.model_dump(),
        "reference": index.fingerprint, "encoder": encoder.version,
    }

    def body():
        canaries = self_test(encoder, index, privacy.threshold)
        records = pq.read_table(gen_dir / "generation.parquet", columns=["clip_id", "audio_file"]).to_pylist()
        rows = []
        for record in progress(records, desc=f"leakcheck shard {shard}", quiet=ctx.quiet, unit="clip"):
            verdict = score_file(gen_dir / record["audio_file"], encoder, index, privacy.threshold)
            rows.append({"clip_id": record["clip_id"], "verdict": verdict.verdict, "no_voice": verdict.no_voice,
                         "max_similarity": verdict.score, "nearest_speaker": verdict.nearest_speaker,
                         "error": verdict.error})
        audit = out_dir / "audit.parquet"
        write_table_atomic(audit, pa.Table.from_pylist(rows, schema=AUDIT_SCHEMA))
        summary = out_dir / "summary.json"
        write_json_atomic(summary, {
            "counts": {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS},
            "no_voice": sum(r["no_voice"] for r in rows),
            "scores": [r["max_similarity"] for r in rows if r["max_similarity"] is not None],
            "self_test": canaries, "threshold": privacy.threshold,
            "reference_fingerprint": index.fingerprint, "encoder": encoder.version,
        })
        return [audit, summary]

    run_once(ctx, "leakcheck", shard, inputs, body)
