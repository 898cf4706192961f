"""The `features` stage: one row of features per generated clip of a shard (features.parquet)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

from pipeline.features.extract import FEATURE_SCHEMA, FEATURE_SETS
from pipeline.progress import progress
from pipeline.workspace import RunContext, run_once, write_table_atomic


def features(ctx: RunContext, shard: int) -> None:
    """Extract the configured feature set for every clip of `shard` (skipped if already done)."""
    feature_set = FEATURE_SETS[ctx.config.features.feature_set]
    gen_dir = ctx.shard_dir("generate", shard)
    inputs = {"generate": ctx.output_fingerprint("generate", shard), "feature_set": feature_set.name}

    def body():
        records = pq.read_table(gen_dir / "generation.parquet", columns=["clip_id", "audio_file"]).to_pylist()
        rows = []
        for record in progress(records, desc=f"features shard {shard}", quiet=ctx.quiet, unit="clip"):
            audio, rate = sf.read(gen_dir / record["audio_file"], dtype="float32")  # (samples,)
            rows.append({"clip_id": record["clip_id"], **feature_set.extract(audio, rate)})
        path = ctx.shard_dir("features", shard) / "features.parquet"
        write_table_atomic(path, pa.Table.from_pylist(rows, schema=FEATURE_SCHEMA))
        return [path]

    run_once(ctx, "features", shard, inputs, body)
