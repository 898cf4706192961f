"""Private leftovers expire: `python -m pipeline gc` removes what finished runs keep privately.

A published run's workspace still holds private material the release never needed: the clips' tokens, the primes'
sources (`sources.json`), generated audio (rejected clips included: leaked voices), per-clip audits, features and
regenerations. Once its release is `older_than` (default `storage.retention_days`), gc deletes that run folder
except its `plan.json` (the pinned model and shard layout: the release and its reports hold every aggregate). It
also removes the dataset's training checkpoints older than that (the finished model is published), cached
embeddings older than that whose recordings are no longer in the reference set or corpus (those still in it are
only a cache: kept), and copy-check baselines and leak-check calibrations older than that (caches, remade when
needed). Unpublished runs are never touched: they may be resuming.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from pathlib import Path

from pipeline.config import LoadedConfig
from pipeline.errors import BadInput

KEEP = ("plan.json",)


def parse_age(text: str) -> float:
    """Seconds of an age such as 30d, 12h or 90m."""
    units = {"d": 86_400, "h": 3_600, "m": 60}
    try:
        value, unit = float(text[:-1]), units[text[-1]]
    except (KeyError, ValueError, IndexError):
        raise BadInput(f"--older-than {text!r}: expected a number and a unit (d, h or m), e.g. 30d") from None
    if value < 0:
        raise BadInput(f"--older-than {text!r}: must not be negative")
    return value * unit


def _age_s(path: Path, now: float) -> float:
    return now - path.stat().st_mtime


def collect(loaded: LoadedConfig, older_than_s: float | None = None, now: float | None = None) -> list[Path]:
    """What gc would delete for the config's dataset (paths, deepest first)."""
    from pipeline.export.publish import published_versions
    from pipeline.training.corpus import private_recordings

    now = time.time() if now is None else now
    limit = loaded.config.storage.retention_days * 86_400.0 if older_than_s is None else older_than_s
    dataset = loaded.config.dataset
    doomed: list[Path] = []
    for release in published_versions(loaded.releases_root / dataset):
        created = dt.datetime.fromisoformat(json.loads((release / "manifest.json").read_text())["created_at"])
        if now - created.timestamp() < limit:
            continue
        run = loaded.workspace_root / dataset / release.name
        if run.is_dir():
            doomed += [p for p in sorted(run.iterdir()) if p.name not in KEEP]
    training = loaded.workspace_root / "_training" / dataset
    if training.is_dir():
        doomed += [p for p in sorted(training.iterdir()) if _age_s(p, now) >= limit]
    cache = loaded.reference_cache_dir
    current = {f.sha256 for f in private_recordings(loaded)}
    if cache.is_dir():
        doomed += [p for p in sorted(cache.glob("*/*.npz"))
                   if p.parent.name != "copycheck" and p.stem not in current and _age_s(p, now) >= limit]
        doomed += [p for p in sorted(cache.glob("copycheck/*.npz")) if _age_s(p, now) >= limit]
        doomed += [p for p in sorted(cache.glob("calibrations/*.json")) if _age_s(p, now) >= limit]
    return doomed


def gc(loaded: LoadedConfig, older_than_s: float | None = None, dry_run: bool = False) -> dict:
    """Delete (or with `dry_run` list) the expired private leftovers; returns what and how many bytes."""
    doomed = collect(loaded, older_than_s)
    size = sum(f.stat().st_size for p in doomed for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())
    if not dry_run:
        for path in doomed:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    return {"dry_run": dry_run, "removed" if not dry_run else "would_remove": [str(p) for p in doomed],
            "bytes": size}
