"""The `export` stage: gather every shard, apply the leak-check gate and publish an immutable release.

The release is written completely into a staging folder beside its target and published with one
rename. A version that already exists is never rewritten: the same content is a no-op success,
different content is a `ReleaseConflict`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import __version__
from pipeline.errors import LeakCheckFailed, ReleaseConflict
from pipeline.export.card import dataset_card
from pipeline.export.schema import release_schema
from pipeline.workspace import RunContext, read_json, sha256_file, write_json_atomic

SPLITS = ("train", "validation", "test")
CONTENT_EXCLUDED = {"manifest.json", "SHA256SUMS"}  # files that carry created_at / hashes of the rest


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parents[2],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _read_shards(ctx: RunContext, n_shards: int, stage: str, file: str) -> pa.Table:
    return pa.concat_tables([pq.read_table(ctx.shard_dir(stage, s) / file) for s in range(n_shards)])


def gather(ctx: RunContext) -> tuple[list[dict], dict]:
    """Rows of every clip that passed the leak check, and the privacy report; raises if the gate fails."""
    plan = read_json(ctx.root / "plan.json")
    n_shards = len(plan["shards"])
    prompts = {r["clip_id"]: r for r in pq.read_table(ctx.root / "prompts.parquet").to_pylist()}
    generation = {r["clip_id"]: r for r in _read_shards(ctx, n_shards, "generate", "generation.parquet").to_pylist()}
    features = {r["clip_id"]: r for r in _read_shards(ctx, n_shards, "features", "features.parquet").to_pylist()}
    audit = _read_shards(ctx, n_shards, "leakcheck", "audit.parquet").to_pylist()
    summaries = [read_json(ctx.shard_dir("leakcheck", s) / "summary.json") for s in range(n_shards)]
    if set(generation) != set(prompts) or set(features) != set(prompts) or {a["clip_id"] for a in audit} != set(prompts):
        raise LeakCheckFailed("export: the shards' outputs do not cover exactly the planned clips; rerun the run")

    report = privacy_report(ctx, audit, summaries)
    if report["rejection_rate"] > ctx.config.privacy.max_reject_rate:
        raise LeakCheckFailed(
            f"leak check rejected {report['counts']['rejected']} of {report['counts']['clips']} clips "
            f"(rate {report['rejection_rate']:.3f} > privacy.max_reject_rate {ctx.config.privacy.max_reject_rate}): "
            "the model may be reproducing protected voices, so nothing is published"
        )
    rows = []
    for verdict in sorted(audit, key=lambda a: a["clip_id"]):
        if verdict["verdict"] != "pass":
            continue  # leak or unscorable: fail closed, never exported
        cid = verdict["clip_id"]
        p, g, f = prompts[cid], generation[cid], features[cid]
        rows.append({
            "clip_id": cid, "split": p["split"], "caption": p["caption"], "genre": p["genre"], "artist": p["artist"],
            "lyrics": p["lyrics"], "vocals": p["vocals"], "requested_duration_s": p["duration_s"], "model_preset": g["model_preset"],
            "model_weights_sha256": g["model_weights_sha256"], "levels_sampled": g["levels_sampled"],
            "temperature": g["temperature"], "sampling_seed": g["sampling_seed"], "num_samples": g["num_samples"],
            "leak_check": "pass", "leak_check_no_voice": verdict["no_voice"],
            **{k: v for k, v in f.items() if k != "clip_id"},
            "_source": ctx.shard_dir("generate", _shard_of(plan, p["clip_index"])) / g["audio_file"],
        })
    return rows, report


def _shard_of(plan: dict, clip_index: int) -> int:
    return next(s for s, (start, stop) in enumerate(plan["shards"]) if start <= clip_index < stop)


def privacy_report(ctx: RunContext, audit: list[dict], summaries: list[dict]) -> dict:
    """Aggregate figures only: nothing that names or describes a reference speaker."""
    counts = {v: sum(a["verdict"] == v for a in audit) for v in ("pass", "leak", "unscorable")}
    rejected = counts["leak"] + counts["unscorable"]
    scores = [s for summary in summaries for s in summary["scores"]]
    histogram, edges = np.histogram(scores, bins=10, range=(-1.0, 1.0))
    return {
        "counts": {"clips": len(audit), **counts, "rejected": rejected, "no_voice": sum(a["no_voice"] for a in audit)},
        "rejection_rate": rejected / len(audit) if audit else 0.0,
        "max_reject_rate": ctx.config.privacy.max_reject_rate,
        "threshold": ctx.config.privacy.threshold,
        "unscorable_policy": "treated as a leak (never exported)",
        "detector_self_test": {
            "canaries_scored": sum(s["self_test"]["canaries"] for s in summaries),
            "canaries_caught": sum(s["self_test"]["caught"] for s in summaries),
        },
        "speaker_encoder": summaries[0]["encoder"] if summaries else None,
        "score_histogram": {"bin_edges": [round(e, 3) for e in edges.tolist()], "counts": histogram.tolist()},
    }


def _write_parquet(rows: list[dict], path: Path, embed_audio: bool) -> None:
    schema = release_schema()
    records = []
    for row in rows:
        source = row["_source"]
        audio = {"bytes": source.read_bytes() if embed_audio else None, "path": f"audio/{row['clip_id']}.flac"}
        records.append({**{k: v for k, v in row.items() if k != "_source"}, "audio": audio})
    pq.write_table(pa.Table.from_pylist(records, schema=schema), path, compression="zstd")


def build_release(ctx: RunContext, rows: list[dict], report: dict, staging: Path) -> dict:
    """Write every file of the release into `staging`; returns the manifest."""
    (staging / "data").mkdir(parents=True)
    (staging / "audio").mkdir()
    counts = {}
    for split in SPLITS:
        split_rows = [r for r in rows if r["split"] == split]
        counts[split] = len(split_rows)
        if split_rows:
            _write_parquet(split_rows, staging / "data" / f"{split}-00000-of-00001.parquet", ctx.config.export.embed_audio)
    for row in rows:
        shutil.copyfile(row["_source"], staging / "audio" / f"{row['clip_id']}.flac")
    (staging / "privacy_report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    first = rows[0] if rows else {}
    summary = {
        "dataset": ctx.dataset, "version": ctx.version, "description": ctx.config.description, "counts": counts,
        "model_preset": ctx.config.generation.preset, "model_weights_sha256": first.get("model_weights_sha256"),
        "feature_set": ctx.config.features.feature_set,
    }
    (staging / "README.md").write_text(dataset_card(summary, report))

    files = sorted(p for p in staging.rglob("*") if p.is_file())
    entries = [{"path": str(p.relative_to(staging)), "size": p.stat().st_size, "sha256": sha256_file(p)} for p in files]
    content = "".join(f"{e['sha256']}  {e['path']}\n" for e in entries if e["path"] not in CONTENT_EXCLUDED)
    config = ctx.config.model_dump()
    config["storage"] = "(local paths, not part of the release)"
    config["privacy"]["reference_dir"] = "(private, not part of the release)"
    config["generation"]["weights_dir"] = None if config["generation"]["weights_dir"] is None else "(local path)"
    manifest = {
        **summary, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code_version": {"package": __version__, "git_commit": _git_commit()},
        "config": config, "config_sha256": ctx.config.fingerprint(),
        "speaker_encoder": report["speaker_encoder"],
        "reference_set_fingerprint": read_json(ctx.shard_dir("leakcheck", 0) / "summary.json")["reference_fingerprint"],
        "leak_check": {k: report[k] for k in ("threshold", "rejection_rate", "max_reject_rate")},
        "content_sha256": hashlib.sha256(content.encode()).hexdigest(),
        "files": entries,
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    sums = [(sha256_file(p), str(p.relative_to(staging))) for p in sorted(staging.rglob("*")) if p.is_file()]
    (staging / "SHA256SUMS").write_text("".join(f"{h}  {p}\n" for h, p in sums))
    return manifest


def _host() -> str:
    return socket.gethostname().replace("-", "_")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_staging(dataset_dir: Path, version: str) -> None:
    """Remove staging folders of `version` left by killed exports on this host (their process is gone)."""
    host = _host()
    for path in dataset_dir.glob(f".staging-{version}-*"):
        parts = path.name.split("-")
        with contextlib.suppress(ValueError, IndexError):
            owner_host, pid = parts[-3], int(parts[-2])
            if owner_host == host and not _pid_alive(pid):
                shutil.rmtree(path, ignore_errors=True)


def export(ctx: RunContext) -> Path:
    """Publish the run's release; returns its folder. Idempotent for identical content."""
    target = ctx.release_dir
    rows, report = gather(ctx)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(target.parent, ctx.version)
    host = _host()
    staging = target.parent / f".staging-{ctx.version}-{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        manifest = build_release(ctx, rows, report, staging)
        try:
            os.rename(staging, target)  # atomic publish; fails if target exists and is not empty
        except OSError:
            if not (target / "manifest.json").is_file():
                raise
            existing = read_json(target / "manifest.json")
            if existing.get("content_sha256") != manifest["content_sha256"]:
                raise ReleaseConflict(
                    f"release {target} already exists with different content (content_sha256 "
                    f"{existing.get('content_sha256', '?')[:12]} vs {manifest['content_sha256'][:12]}); published "
                    "releases are never rewritten: use a new --version"
                ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
