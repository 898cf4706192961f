"""Where a run's workspace and the releases live: a local folder, or any fsspec URL (s3://, gs://, ...).

Stages read and write a local working copy of the run (`RunContext.root`). When `storage.workspace`
is a URL, every stage task is wrapped in `synced(ctx, stage, shard)`: it pulls exactly the files the
stage reads from the shared store into a task-local scratch folder, runs, and pushes the files it
wrote (its completion record last, so a record never points at missing outputs). So no two tasks
of a run need to share a disk: a Celery worker on another machine sees only the store. Releases
are pushed by `export.publish.publish_remote`, `manifest.json` last: a release without its manifest
is not published. Local paths need none of this and copy nothing.

S3-compatible storage: `pip install s3fs`, then `storage.workspace: s3://bucket/synthaudio/runs`,
`storage.releases: s3://bucket/synthaudio/releases`; credentials and endpoint come from the usual
AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL for MinIO and others).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pipeline.files import atomic_path

URL = re.compile(r"^[a-z][a-z0-9+.-]*://")


def is_url(value: str) -> bool:
    return bool(URL.match(value))


def scratch_root(url: str) -> Path:
    """This task's local working folder for a remote store (SYNTHAUDIO_SCRATCH, else the temp folder)."""
    base = Path(os.environ.get("SYNTHAUDIO_SCRATCH") or Path(tempfile.gettempdir()) / "synthaudio-scratch")
    return base / hashlib.sha256(url.encode()).hexdigest()[:16]


def filesystem(url: str):
    """(fsspec filesystem, root path inside it) of a store URL."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    return fs, root.rstrip("/")


def _expand(patterns: list[str], shard: int | None) -> list[str]:
    return [p.format(s=f"{shard:05d}" if shard is not None else "") for p in patterns]


def _get(fs, source: str, target: Path) -> None:
    with atomic_path(target) as tmp:  # tasks sharing a scratch folder never read a half-copied file
        fs.get_file(source, str(tmp))


def pull(fs, remote: str, local: Path, relative: list[str]) -> int:
    """Copy `relative` files and folders (ending in '/') from the store into `local`; missing ones are
    skipped (a stage that has not run yet). Returns the number of files copied."""
    copied = 0
    for item in relative:
        source = f"{remote}/{item.rstrip('/')}"
        if item.endswith("/"):
            if not fs.isdir(source):
                continue
            for path in fs.find(source):
                _get(fs, path, local / item / path[len(source) + 1:])
                copied += 1
        elif fs.isfile(source):
            _get(fs, source, local / item)
            copied += 1
    return copied


def push(fs, local: Path, remote: str, relative: list[str]) -> int:
    """Copy `relative` files and folders from `local` to the store, completion records (`_done/`) last."""
    files = []
    for item in relative:
        path = local / item.rstrip("/")
        if item.endswith("/") and path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and ".tmp-" not in p.name)
        elif path.is_file():
            files.append(path)
    files.sort(key=lambda p: p.relative_to(local).parts[0] == "_done")
    for path in files:
        key = f"{remote}/{path.relative_to(local).as_posix()}"
        fs.makedirs(key.rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(str(path), key)
    return len(files)


def synced_stage(stage: str):
    """Decorator of a stage function `f(ctx, shard)` (or `f(ctx, ...)` for plan and export): runs it `synced`."""
    def decorate(function):
        @functools.wraps(function)
        def run(ctx, *args, **kwargs):
            shard = args[0] if args and isinstance(args[0], int) else kwargs.get("shard")
            with synced(ctx, stage, shard):
                return function(ctx, *args, **kwargs)
        return run
    return decorate


@contextlib.contextmanager
def synced(ctx, stage: str, shard: int | None = None) -> Iterator[None]:
    """Run a stage against the shared store when the workspace is a URL (see the module docstring)."""
    url = ctx.loaded.workspace_url
    if url is None:
        yield
        return
    fs, root = filesystem(url)
    remote = f"{root}/{ctx.dataset}/{ctx.version}"
    from pipeline.stages import stage as registered

    pull(fs, remote, ctx.root, _expand(list(registered(stage).reads), shard))
    yield
    push(fs, ctx.root, remote, _expand(list(registered(stage).writes), shard))


def push_files(ctx, paths: list[Path]) -> None:
    """Push these files of the run to the store now (when the workspace is a URL), before the stage ends:
    a long stage's finished parts (a Jukebox level's tokens) survive a retry on another worker."""
    url = ctx.loaded.workspace_url
    if url is None:
        return
    fs, root = filesystem(url)
    push(fs, ctx.root, f"{root}/{ctx.dataset}/{ctx.version}", [p.relative_to(ctx.root).as_posix() for p in paths])
