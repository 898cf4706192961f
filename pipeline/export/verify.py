"""Verify a published release, and read the catalog: what `python -m pipeline verify|releases` run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import soundfile as sf

from pipeline.export.schema import RELEASE_SCHEMA_VERSION, release_schema
from pipeline.workspace import sha256_file


def verify_release(release: Path) -> list[str]:
    """Every problem found in `release` (empty list: it verifies). Checks checksums, manifest schema,
    Parquet schema, counts per split, and that every clip's audio decodes to its recorded length."""
    import jsonschema

    from pipeline.schemas import MANIFEST_JSON_SCHEMA

    problems: list[str] = []
    manifest_path, sums_path = release / "manifest.json", release / "SHA256SUMS"
    if not manifest_path.is_file() or not sums_path.is_file():
        return [f"{release}: not a release (manifest.json or SHA256SUMS missing)"]
    try:
        manifest = json.loads(manifest_path.read_text())
        jsonschema.validate(manifest, MANIFEST_JSON_SCHEMA)
    except (ValueError, jsonschema.ValidationError) as exc:
        return [f"manifest.json: invalid ({str(exc).splitlines()[0]})"]

    listed = {}
    for line in sums_path.read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    on_disk = {str(p.relative_to(release)) for p in release.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    problems += [f"{name}: listed in SHA256SUMS but missing" for name in sorted(set(listed) - on_disk)]
    problems += [f"{name}: present but not listed in SHA256SUMS" for name in sorted(on_disk - set(listed))]
    for name in sorted(set(listed) & on_disk):
        if sha256_file(release / name) != listed[name]:
            problems.append(f"{name}: sha256 does not match SHA256SUMS (file changed or corrupted)")
    for entry in manifest["files"]:
        if entry["path"] in listed and listed[entry["path"]] != entry["sha256"]:
            problems.append(f"{entry['path']}: sha256 in manifest.json differs from SHA256SUMS")

    layout = manifest.get("schema_version", 1)
    if layout > RELEASE_SCHEMA_VERSION:
        return problems + [f"manifest.json: schema_version {layout} is newer than this synthaudio reads "
                           f"({RELEASE_SCHEMA_VERSION}); upgrade synthaudio to verify it"]
    counts: dict[str, int] = {}
    schema = release_schema(layout)
    labelled = layout >= 2  # the synthetic label: the ai_generated column and the FLAC tags
    columns = ["clip_id", "split", "num_samples", "audio", *(["ai_generated"] if labelled else [])]
    for shard in sorted((release / "data").glob("*.parquet")):
        try:
            table = pq.read_table(shard)
        except Exception as exc:  # noqa: BLE001 - a broken file is a problem to report, not a crash
            problems.append(f"data/{shard.name}: unreadable Parquet ({exc})")
            continue
        if not table.schema.remove_metadata().equals(schema):
            problems.append(f"data/{shard.name}: schema differs from schemas/release.arrow.json")
            continue
        for row in table.select(columns).to_pylist():
            counts[row["split"]] = counts.get(row["split"], 0) + 1
            problems += _check_audio(release, row)
            if labelled:
                problems += _check_label(release, row, manifest)
    expected = {k: v for k, v in manifest["counts"].items() if v}
    if counts != expected:
        problems.append(f"row counts per split {counts} differ from manifest counts {expected}")
    return problems


def _check_audio(release: Path, row: dict) -> list[str]:
    audio = row["audio"]
    source = io.BytesIO(audio["bytes"]) if audio["bytes"] is not None else release / audio["path"]
    try:
        info = sf.info(source)
        if audio["bytes"] is None:
            sf.read(source, dtype="float32")  # decodes every frame, not just the header
    except Exception as exc:  # noqa: BLE001
        return [f"{audio['path']}: clip {row['clip_id']} does not decode ({type(exc).__name__}: {exc})"]
    if info.frames != row["num_samples"]:
        return [f"{audio['path']}: {info.frames} samples, the row says {row['num_samples']}"]
    return []


def _check_label(release: Path, row: dict, manifest: dict) -> list[str]:
    """A labelled release (layout 2+): the row says ai_generated, and the FLAC's tags say AI-generated and name
    this dataset, version and clip."""
    from pipeline.export.flac_tags import IPTC_TRAINED_ALGORITHMIC_MEDIA, read_tags

    audio = row["audio"]
    problems = [] if row["ai_generated"] is True else [f"data: clip {row['clip_id']} is not marked ai_generated"]
    try:
        tags = read_tags(audio["bytes"] if audio["bytes"] is not None else (release / audio["path"]).read_bytes())
    except (OSError, ValueError) as exc:
        return problems + [f"{audio['path']}: FLAC tags unreadable ({exc})"]
    expected = {"AI_GENERATED": "true", "DIGITAL_SOURCE_TYPE": IPTC_TRAINED_ALGORITHMIC_MEDIA,
                "DATASET": manifest["dataset"], "DATASET_VERSION": manifest["version"], "CLIP_ID": row["clip_id"]}
    wrong = [key for key, value in expected.items() if tags.get(key) != value]
    if wrong:
        problems.append(f"{audio['path']}: FLAC tags do not label it as this release's AI-generated clip "
                        f"({', '.join(wrong)} missing or different)")
    return problems


def diff_releases(a: dict, b: dict) -> list[str]:
    """Human-readable config and count changes between two manifests."""

    def flatten(value, prefix=""):
        if isinstance(value, dict):
            for key, inner in value.items():
                yield from flatten(inner, f"{prefix}{key}.")
        else:
            yield prefix.rstrip("."), value

    lines = []
    config_a, config_b = dict(flatten(a["config"])), dict(flatten(b["config"]))
    for key in sorted(set(config_a) | set(config_b)):
        if config_a.get(key) != config_b.get(key):
            lines.append(f"config {key}: {config_a.get(key)!r} -> {config_b.get(key)!r}")
    for split in sorted(set(a["counts"]) | set(b["counts"])):
        before, after = a["counts"].get(split, 0), b["counts"].get(split, 0)
        if before != after:
            lines.append(f"count {split}: {before} -> {after} ({after - before:+d})")
    for key in ("model_weights_sha256", "reference_set_fingerprint", "speaker_encoder"):
        if a.get(key) != b.get(key):
            lines.append(f"{key}: {a.get(key)} -> {b.get(key)}")
    rate_a, rate_b = a["leak_check"]["rejection_rate"], b["leak_check"]["rejection_rate"]
    if rate_a != rate_b:
        lines.append(f"leak-check rejection rate: {rate_a:.3f} -> {rate_b:.3f}")
    return lines
