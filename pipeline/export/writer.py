"""Streaming writers of a release's files: audio copies (labelled AI-generated) hashed in one pass, Parquet shards by split and size.

Memory stays flat whatever the release size: audio is copied in 1 MiB chunks, and Parquet rows are
written in row groups of at most `ROWS_PER_GROUP` clips (with embedded audio, only that group's
FLAC bytes are in memory at once).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.export.schema import release_schema

CHUNK_BYTES = 1 << 20
ROWS_PER_GROUP = 64
ROW_OVERHEAD_BYTES = 1024  # estimated Parquet bytes of a row without embedded audio


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the release folder
    size: int
    sha256: str


def copy_labelled(source: Path, target: Path, tags: dict[str, str]) -> tuple[int, str]:
    """Copy the FLAC `source` to `target` with its Vorbis comments replaced by `tags` (flac_tags.write_tags: the
    metadata is rewritten, the audio frames streamed in chunks), hashing as it goes: (size, sha256)."""
    from pipeline.export.flac_tags import read_metadata, write_tags

    digest = hashlib.sha256()
    with open(source, "rb") as src, open(target, "wb") as dst:
        metadata = read_metadata(src)
        if metadata is None:
            raise ValueError(f"{source}: not a FLAC stream (no fLaC marker)")
        head = write_tags(metadata, tags)
        digest.update(head)
        dst.write(head)
        written = len(head)
        while chunk := src.read(CHUNK_BYTES):
            digest.update(chunk)
            dst.write(chunk)
            written += len(chunk)
    return written, digest.hexdigest()


def plan_shards(rows: list[dict], max_shard_bytes: int, embed_audio: bool) -> dict[str, list[list[dict]]]:
    """Rows per split, cut into shards whose estimated Parquet size stays under `max_shard_bytes`."""
    shards: dict[str, list[list[dict]]] = {}
    filled: dict[str, int] = {}  # estimated bytes of each split's last shard
    for row in rows:
        split_shards = shards.setdefault(row["split"], [[]])
        estimate = ROW_OVERHEAD_BYTES + (row["_source"].stat().st_size if embed_audio else 0)
        if split_shards[-1] and filled[row["split"]] + estimate > max_shard_bytes:
            split_shards.append([])
            filled[row["split"]] = 0
        split_shards[-1].append(row)
        filled[row["split"]] = filled.get(row["split"], 0) + estimate
    return shards


def write_parquet_shard(rows: list[dict], path: Path, embed_audio: bool) -> None:
    """One Parquet file (zstd), written a row group at a time."""
    schema = release_schema()
    columns = [name for name in schema.names if name != "audio"] + ["audio.bytes", "audio.path"]
    scalar = [c for c in columns if c != "audio.bytes"]
    # FLAC is already compressed: zstd, dictionaries and min/max statistics on its bytes only cost time.
    with pq.ParquetWriter(path, schema, compression={c: ("none" if c == "audio.bytes" else "zstd") for c in columns},
                          use_dictionary=scalar, write_statistics=scalar) as writer:
        for start in range(0, len(rows), ROWS_PER_GROUP):
            records = []
            for row in rows[start:start + ROWS_PER_GROUP]:
                audio = {"bytes": row["_source"].read_bytes() if embed_audio else None,
                         "path": f"audio/{row['clip_id']}.flac"}
                records.append({**{k: v for k, v in row.items() if not k.startswith("_")}, "audio": audio})
            writer.write_table(pa.Table.from_pylist(records, schema=schema))


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.parquet"
