"""Consent that can be withdrawn: what a person's recordings went into, and taking it back.

`lineage` answers "which models and releases were built from data that included this speaker (or this corpus)?":
a model learned from the speaker when its private `corpus.json` lists them (or holds one of their files' sha256);
a release was built from such a model when its manifest's `lineage` names it. `withdraw` then

- marks those releases withdrawn in `<releases>/<dataset>/withdrawn.json` (public: version, reason, time; never
  the speaker): the catalog, `LATEST`, `releases list / show / open` follow it; release folders stay immutable;
- deletes the private artefacts derived from the person's audio: the models, the runs of the withdrawn releases
  (tokens, primes, audits), the training checkpoints of the dataset, the cached embeddings of their files and the
  copy check's baselines;
- says how to rebuild without them.

The speaker id is private: it is never written to a public file, and a reason that contains it is refused.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import LoadedConfig
from pipeline.errors import BadInput
from pipeline.files import write_json_atomic

WITHDRAWN_FILE = "withdrawn.json"


@dataclass
class Lineage:
    """What was built from a speaker's (or a corpus's) data, and the private artefacts derived from it."""

    models: list[dict] = field(default_factory=list)  # {"version", "path", "corpus_fingerprint"}
    releases: list[dict] = field(default_factory=list)  # {"version", "path", "model_version"}
    speaker_files: list[str] = field(default_factory=list)  # sha256 of the speaker's files (corpus, reference set)

    def as_dict(self) -> dict:
        return {"models": self.models, "releases": self.releases, "speaker_files": len(self.speaker_files)}


def _speaker_files(loaded: LoadedConfig, speaker: str) -> list[str]:
    from pipeline.training.corpus import private_recordings

    return sorted({f.sha256 for f in private_recordings(loaded) if f.speaker == speaker})


def find_lineage(loaded: LoadedConfig, speaker: str | None = None, corpus_fingerprint: str | None = None) -> Lineage:
    """The models and releases of the config's dataset built from `speaker`'s data (or from the corpus with
    `corpus_fingerprint`). Raises BadInput when neither is given."""
    from pipeline.export.publish import published_versions
    from pipeline.training.stage import MODEL_FILE

    if (speaker is None) == (corpus_fingerprint is None):
        raise BadInput("lineage: give exactly one of --speaker ID or --corpus-fingerprint SHA256")
    dataset = loaded.config.dataset
    found = Lineage(speaker_files=_speaker_files(loaded, speaker) if speaker else [])
    files = set(found.speaker_files)
    models_dir = (loaded.models_root / dataset) if loaded.models_root else None
    for folder in sorted(models_dir.iterdir()) if models_dir and models_dir.is_dir() else []:
        if not (folder / MODEL_FILE).is_file() or not (folder / "corpus.json").is_file():
            continue
        corpus = json.loads((folder / "corpus.json").read_text())
        meta = json.loads((folder / MODEL_FILE).read_text())
        if speaker is not None:
            used = speaker in corpus.get("speakers", []) or bool(files & set(corpus["train_sha256"] + corpus["holdout_sha256"]))
        else:
            used = corpus["fingerprint"] == corpus_fingerprint
        if used:
            found.models.append({"version": meta["version"], "path": str(folder),
                                 "corpus_fingerprint": corpus["fingerprint"]})
    versions = {m["version"] for m in found.models}
    fingerprints = {m["corpus_fingerprint"] for m in found.models} | ({corpus_fingerprint} if corpus_fingerprint else set())
    for release in published_versions(loaded.releases_root / dataset):
        lineage = json.loads((release / "manifest.json").read_text()).get("lineage") or {}
        if lineage.get("model_version") in versions or lineage.get("corpus_fingerprint") in fingerprints:
            found.releases.append({"version": release.name, "path": str(release),
                                   "model_version": lineage.get("model_version")})
    return found


def withdrawn(dataset_dir: Path) -> dict[str, dict]:
    """version -> {"reason", "withdrawn_at"} of a dataset's withdrawn releases."""
    path = dataset_dir / WITHDRAWN_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def withdraw(loaded: LoadedConfig, reason: str, speaker: str | None = None, corpus_fingerprint: str | None = None,
             dry_run: bool = False) -> dict:
    """Withdraw what was built from `speaker`'s data (or the corpus `corpus_fingerprint`): returns what was (or,
    with `dry_run`, would be) marked and deleted, and how to rebuild."""
    from pipeline.export.publish import update_catalog

    if not reason.strip():
        raise BadInput("withdraw: --reason is required (one line, public: it is shown beside each withdrawn release)")
    if speaker and speaker.lower() in reason.lower():
        raise BadInput("withdraw: --reason must not contain the speaker id (the reason is public, the id is private)")
    found = find_lineage(loaded, speaker, corpus_fingerprint)
    dataset, cache = loaded.config.dataset, loaded.reference_cache_dir
    deleted = [m["path"] for m in found.models]
    deleted += [str(loaded.workspace_root / dataset / r["version"]) for r in found.releases]
    deleted += [str(loaded.workspace_root / "_training" / dataset)]
    deleted += [str(p) for sha in found.speaker_files for p in cache.glob(f"*/{sha}.npz")]
    deleted += [str(cache / "copycheck"), str(cache / "calibrations")]  # both derived from every reference voice
    deleted = [p for p in deleted if Path(p).exists()]
    result = {"withdrawn_releases": [r["version"] for r in found.releases],
              "models": [m["version"] for m in found.models], "deleted": deleted, "dry_run": dry_run}
    if not dry_run:
        dataset_dir = loaded.releases_root / dataset
        if found.releases:
            marks = withdrawn(dataset_dir)
            now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            for release in found.releases:
                marks.setdefault(release["version"], {"reason": reason.strip().splitlines()[0], "withdrawn_at": now})
            write_json_atomic(dataset_dir / WITHDRAWN_FILE, marks)
            update_catalog(dataset_dir)
        for path in map(Path, deleted):
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    result["rebuild"] = (
        "Remove the person's recordings from source.corpus (and privacy.reference_dir), then train a new model "
        f"(`python -m pipeline train {loaded.path}`) and build a new version (`python -m pipeline run {loaded.path} "
        "--version NEW`); withdrawn versions are never rebuilt under the same name.")
    return result
