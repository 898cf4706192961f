"""The run workspace: `<workspace_root>/<dataset>/<version>/...`, atomic writes and stage completion records.

Every file a stage produces is written under a temporary name in the same folder and renamed into
place, so a killed task never leaves a partial file. A stage that finished records the fingerprint
of its inputs in `_done/<stage>-<shard>.json`; rerun with the same inputs, it is skipped.
Nothing here assumes that two tasks of a run share a machine: all state is in files.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import LoadedConfig
from pipeline.errors import BadInput
from pipeline.files import (  # noqa: F401 - re-exported: stages take their file helpers from here
    atomic_path, fingerprint, read_json, sha256_file, write_bytes_atomic, write_json_atomic, write_table_atomic,
)

VERSION_PATTERN = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")


def validate_version(version: str) -> str:
    """A version names a release folder: a date `YYYY-MM-DD` or a token of letters, digits, `.`, `_`, `-`."""
    if not VERSION_PATTERN.match(version or ""):
        raise BadInput(
            f"version {version!r} is not allowed: use a date like 2026-01-01 or letters, digits, '.', '_', '-' "
            "(at most 64 characters, no '/')"
        )
    return version


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from the sha256 of the parts: the same on every machine and Python run."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(frozen=True)
class RunContext:
    """What every stage receives: the validated config, the run's version, seed and workspace."""

    loaded: LoadedConfig
    version: str
    quiet: bool = False

    @property
    def config(self):
        return self.loaded.config

    @property
    def dataset(self) -> str:
        return self.config.dataset

    @property
    def seed(self) -> int:
        """The run seed: derived from (dataset, version, config seed), so a backfill reproduces its date."""
        return derive_seed("synthaudio-run", self.dataset, self.version, self.config.seed)

    @property
    def root(self) -> Path:
        return self.loaded.workspace_root / self.dataset / self.version

    @property
    def release_dir(self) -> Path:
        return self.loaded.releases_root / self.dataset / self.version

    @property
    def reference_cache(self) -> Path:
        """Embeddings of reference files, shared by the runs of one workspace root (never released)."""
        return self.loaded.reference_cache_dir

    def shard_dir(self, stage: str, shard: int) -> Path:
        return self.root / stage / f"shard-{shard:05d}"

    # -- completion records -------------------------------------------------------------------
    def _record_path(self, stage: str, shard: int | None) -> Path:
        name = stage if shard is None else f"{stage}-{shard:05d}"
        return self.root / "_done" / f"{name}.json"

    def is_done(self, stage: str, shard: int | None, inputs_fingerprint: str) -> bool:
        """True if the stage finished before with inputs of this fingerprint and its outputs still exist."""
        path = self._record_path(stage, shard)
        if not path.is_file():
            return False
        record = read_json(path)
        return record.get("inputs") == inputs_fingerprint and all(
            (self.root / rel).exists() for rel in record.get("outputs", [])
        )

    def mark_done(self, stage: str, shard: int | None, inputs_fingerprint: str, outputs: list[Path]) -> None:
        write_json_atomic(
            self._record_path(stage, shard),
            {"stage": stage, "shard": shard, "inputs": inputs_fingerprint,
             "outputs": sorted(str(p.relative_to(self.root)) for p in outputs)},
        )

    def output_fingerprint(self, stage: str, shard: int | None) -> str:
        """The completion record's own hash: a downstream stage's inputs include it."""
        path = self._record_path(stage, shard)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: stage {stage!r}"
                + ("" if shard is None else f" shard {shard}")
                + " has not completed; run it first (python -m pipeline run ... runs every stage in order)"
            )
        return hashlib.sha256(path.read_bytes()).hexdigest()


def run_once(ctx: RunContext, stage: str, shard: int | None, inputs: dict, body) -> bool:
    """Run `body()` (which returns the output paths) unless the stage already ran on these inputs.

    Returns True if the body ran, False if it was skipped.
    """
    inputs_fingerprint = fingerprint(inputs)
    if ctx.is_done(stage, shard, inputs_fingerprint):
        return False
    outputs = body()
    ctx.mark_done(stage, shard, inputs_fingerprint, outputs)
    return True
