"""Atomic, immutable publishing of a release folder, and the per-dataset catalog.

A release is built completely in `<dataset>/.staging-<version>-<host>-<pid>-<id>/` and published
with one rename. A version that exists is never rewritten: identical content is a success that
writes nothing, different content is a `ReleaseConflict`. Of two exports racing for one version,
the rename of one wins and the other finds the winner's content (and says so).

The catalog (`<dataset>/catalog.json`) and the `LATEST` pointer are rebuilt from the published
manifests under a lock, each written atomically, so they never lose a version to a race.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import Iterator

from pipeline.errors import ReleaseConflict
from pipeline.files import exclusive, read_json, write_bytes_atomic, write_json_atomic

STAGING_PREFIX = ".staging-"


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


def clean_stale_staging(dataset_dir: Path, version: str) -> list[Path]:
    """Remove staging folders of `version` left by killed exports on this host (their process is gone)."""
    removed = []
    host = _host()
    for path in dataset_dir.glob(f"{STAGING_PREFIX}{version}-*"):
        parts = path.name.split("-")
        with contextlib.suppress(ValueError, IndexError):
            owner_host, pid = parts[-3], int(parts[-2])
            if owner_host == host and not _pid_alive(pid):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


@contextlib.contextmanager
def staging_folder(dataset_dir: Path, version: str) -> Iterator[Path]:
    """A fresh staging folder beside the target; always removed afterwards (published or not)."""
    dataset_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(dataset_dir, version)
    staging = dataset_dir / f"{STAGING_PREFIX}{version}-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(staging: Path, target: Path, content_sha256: str) -> bool:
    """Rename `staging` to `target`. True if this call published; False if identical content was already there."""
    try:
        os.rename(staging, target)  # atomic; fails when target exists and is not empty
        return True
    except OSError:
        manifest = target / "manifest.json"
        if not manifest.is_file():
            raise
    existing = read_json(manifest).get("content_sha256", "?")
    if existing != content_sha256:
        raise ReleaseConflict(
            f"release {target} already exists with different content (content_sha256 {existing[:12]} vs "
            f"{content_sha256[:12]}); published releases are never rewritten: use a new --version"
        )
    return False


def published_versions(dataset_dir: Path) -> list[Path]:
    """Release folders of a dataset (those with a manifest), oldest version name first."""
    if not dataset_dir.is_dir():
        return []
    return sorted(p for p in dataset_dir.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / "manifest.json").is_file())


def update_catalog(dataset_dir: Path) -> dict:
    """Rebuild `catalog.json` and `LATEST` from the published manifests and `withdrawn.json` (under a lock):
    `LATEST` names the newest release not withdrawn (removed when every release is)."""
    from pipeline.consent import withdrawn

    with exclusive(dataset_dir / ".catalog.lock"):
        marks = withdrawn(dataset_dir)
        versions = []
        for release in published_versions(dataset_dir):
            raw = (release / "manifest.json").read_bytes()
            manifest = read_json(release / "manifest.json")
            versions.append({
                "version": manifest["version"], "created_at": manifest["created_at"],
                "counts": manifest["counts"], "content_sha256": manifest["content_sha256"],
                "manifest_sha256": hashlib.sha256(raw).hexdigest(),
                **({"withdrawn": marks[manifest["version"]]} if manifest["version"] in marks else {}),
            })
        valid = [v for v in versions if "withdrawn" not in v]
        latest = max(valid, key=lambda v: (v["created_at"], v["version"]))["version"] if valid else None
        catalog = {"dataset": dataset_dir.name, "latest": latest, "versions": versions}
        write_json_atomic(dataset_dir / "catalog.json", catalog)
        if latest:
            write_bytes_atomic(dataset_dir / "LATEST", f"{latest}\n".encode())
        else:
            (dataset_dir / "LATEST").unlink(missing_ok=True)
    return catalog


def claim_remote_version(fs, claim: str, content_sha256: str) -> str:
    """Claim a version on a store for `content_sha256` by creating the object `claim` exclusively; returns the
    content_sha256 the version is claimed for (ours, or the first claimant's). Where the store cannot create
    exclusively, the claim is written if absent and read back (the last writer of a race wins there)."""
    try:
        with fs.open(claim, "xb") as handle:
            handle.write(content_sha256.encode())
        return content_sha256
    except FileExistsError:
        pass
    except (ValueError, NotImplementedError, TypeError):  # no exclusive create on this filesystem
        if not fs.exists(claim):
            with fs.open(claim, "wb") as handle:
                handle.write(content_sha256.encode())
    with fs.open(claim, "rb") as handle:
        return handle.read().decode().strip()


def publish_remote(ctx, release: Path) -> None:
    """Push a locally built release to `storage.releases` (a URL), manifest.json last; then the dataset's
    catalog. The version is claimed first (`claim_remote_version`): of two exporters with different content
    only the first pushes anything, the other gets ReleaseConflict; exporters with the same content push the
    same bytes, so a retried export completes a half-pushed release. An existing release is never rewritten."""
    from pipeline.storage import _get, filesystem, push

    url = ctx.loaded.releases_url
    if url is None:
        return
    fs, root = filesystem(url)
    remote = f"{root}/{ctx.dataset}/{ctx.version}"
    content = read_json(release / "manifest.json")["content_sha256"]
    fs.makedirs(f"{root}/{ctx.dataset}", exist_ok=True)
    claimed = claim_remote_version(fs, f"{root}/{ctx.dataset}/.{ctx.version}.claim", content)
    if claimed != content:
        raise ReleaseConflict(
            f"{remote} is claimed for different content ({claimed[:12]} vs {content[:12]}); releases are "
            f"immutable: publish a new version (if no manifest.json was ever pushed there, delete "
            f"{root}/{ctx.dataset}/.{ctx.version}.claim to free the version)")
    if fs.isfile(f"{remote}/manifest.json"):
        return  # published already (by us or by an exporter of the same content)
    entries = sorted(p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file())
    push(fs, release, remote, [e for e in entries if e != "manifest.json"])
    push(fs, release, remote, ["manifest.json"])
    # the catalog: every published manifest of the dataset, rebuilt locally and pushed
    local_dataset = release.parent
    for path in fs.glob(f"{root}/{ctx.dataset}/*/manifest.json"):
        version = path.rstrip("/").split("/")[-2]
        target = local_dataset / version / "manifest.json"
        if not target.is_file():
            _get(fs, path, target)
    update_catalog(local_dataset)
    push(fs, local_dataset, f"{root}/{ctx.dataset}", ["catalog.json", "LATEST"])
