"""The `features` stage: one row of features and quality flags per generated clip (features.parquet).

Clips are spread over a process pool (one worker per core unless `features.workers` says otherwise);
each worker decodes and analyses one clip at a time, and rows are written in row groups as they
arrive, so memory does not grow with the shard. Rows keep the shard's clip order: the output does
not depend on the number of workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.features.extract import FEATURE_SCHEMA, FeatureSet, QualityThresholds, feature_set
from pipeline.parallel import ordered_map
from pipeline.progress import progress
from pipeline.storage import synced_stage
from pipeline.workspace import RunContext, atomic_path, run_once

ROW_GROUP = 1024  # rows per Parquet row group (about 0.8 MB of features)


def feature_set_of(config) -> FeatureSet:
    """The configured feature set with its quality thresholds (config: the `features` section)."""
    return feature_set(config.feature_set, QualityThresholds(
        silence_dbfs=config.silence_dbfs, max_clipping_ratio=config.max_clipping_ratio,
        min_duration_s=config.min_duration_s))


def _extract_file(extractor: FeatureSet, clip_id: str, path: Path) -> dict:
    import soundfile as sf

    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)  # (samples, channels)
    except (OSError, RuntimeError) as error:  # soundfile raises LibsndfileError, a RuntimeError
        raise RuntimeError(f"features: cannot decode {path} ({error}); rerun the generate stage of this shard") from None
    return {"clip_id": clip_id, **extractor.extract(audio.mean(axis=1), rate)}


def _extract_job(job: tuple[FeatureSet, str, str]) -> dict:
    extractor, clip_id, path = job
    return _extract_file(extractor, clip_id, Path(path))


def extract_rows(extractor: FeatureSet, clips: list[tuple[str, Path]], workers: int) -> Iterator[dict]:
    """Feature rows of `clips` ((clip_id, audio path) pairs), in order, from up to `workers` processes."""
    return ordered_map(_extract_job, [(extractor, clip_id, str(path)) for clip_id, path in clips], workers)


def write_feature_rows(rows: Iterator[dict], path: Path) -> int:
    """Stream `rows` into `path` (atomically) in row groups; returns the number of rows."""
    count = 0
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, FEATURE_SCHEMA) as writer:
        batch: list[dict] = []
        for row in rows:
            batch.append(row)
            if len(batch) == ROW_GROUP:
                writer.write_table(pa.Table.from_pylist(batch, schema=FEATURE_SCHEMA))
                count += len(batch)
                batch = []
        if batch or count == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=FEATURE_SCHEMA))
            count += len(batch)
    return count


@synced_stage("features")
def features(ctx: RunContext, shard: int) -> None:
    """Extract the configured feature set for every clip of `shard` (skipped if already done)."""
    config = ctx.config.features
    extractor = feature_set_of(config)
    gen_dir = ctx.shard_dir("generate", shard)
    inputs = {"generate": ctx.output_fingerprint("generate", shard),
              "features": config.model_dump(exclude={"workers", "gates"})}  # gates act at export

    def body():
        records = pq.read_table(gen_dir / "generation.parquet", columns=["clip_id", "audio_file"]).to_pylist()
        clips = [(r["clip_id"], gen_dir / r["audio_file"]) for r in records]
        rows = progress(extract_rows(extractor, clips, config.workers), desc=f"features shard {shard}", quiet=ctx.quiet,
                        unit="clip", total=len(clips))
        path = ctx.shard_dir("features", shard) / "features.parquet"
        write_feature_rows(rows, path)
        return [path]

    run_once(ctx, "features", shard, inputs, body)
