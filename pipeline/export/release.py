"""The `export` stage: gather every shard, apply the leak-check gate, build and publish the release.

Building happens in a staging folder (see `publish.py`); every file is hashed once, as it is
written, and those hashes feed the manifest and SHA256SUMS.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import __version__
from pipeline.errors import LeakCheckFailed, PrivateDataInRelease
from pipeline.export.card import dataset_card
from pipeline.export.schema import RELEASE_SCHEMA_VERSION
from pipeline.features.extract import QUALITY_FLAGS
from pipeline.progress import progress
from pipeline.storage import synced_stage
from pipeline.workspace import RunContext, read_json, sha256_file

SPLITS = ("train", "validation", "test")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parents[2],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _read_shards(ctx: RunContext, n_shards: int, stage: str, file: str) -> pa.Table:
    return pa.concat_tables([pq.read_table(ctx.shard_dir(stage, s) / file) for s in range(n_shards)])


def gather(ctx: RunContext) -> tuple[list[dict], dict, dict]:
    """Rows of every clip that passed the leak check and the quality gates, the privacy report and the
    quality report; raises if the privacy gate fails."""
    plan = read_json(ctx.root / "plan.json")
    n_shards = len(plan["shards"])
    prompts = {r["clip_id"]: r for r in pq.read_table(ctx.root / "prompts.parquet").to_pylist()}
    generation = {}
    for shard in range(n_shards):
        shard_dir = ctx.shard_dir("generate", shard)
        for record in pq.read_table(shard_dir / "generation.parquet").to_pylist():
            generation[record["clip_id"]] = {**record, "_source": shard_dir / record["audio_file"]}
    features = {r["clip_id"]: r for r in _read_shards(ctx, n_shards, "features", "features.parquet").to_pylist()}
    for shard in range(n_shards):  # on_leak: regenerate: passing replacements stand in for rejected clips
        check_dir = ctx.shard_dir("leakcheck", shard)
        if (check_dir / "regenerated.parquet").is_file():
            for record in pq.read_table(check_dir / "regenerated.parquet").to_pylist():
                generation[record["clip_id"]] = {**record, "_source": check_dir / record["audio_file"]}
            for row in pq.read_table(check_dir / "regenerated_features.parquet").to_pylist():
                features[row["clip_id"]] = row
    audit = _read_shards(ctx, n_shards, "leakcheck", "audit.parquet").to_pylist()
    summaries = [read_json(ctx.shard_dir("leakcheck", s) / "summary.json") for s in range(n_shards)]
    if set(generation) != set(prompts) or set(features) != set(prompts) or {a["clip_id"] for a in audit} != set(prompts):
        raise LeakCheckFailed("export: the shards' outputs do not cover exactly the planned clips; rerun the run")

    report = privacy_report(ctx, audit, summaries)
    if report["rejection_rate"] > ctx.config.privacy.max_reject_rate:
        raise LeakCheckFailed(
            f"leak check rejected {report['counts']['rejected_first_pass']} of {report['counts']['clips']} clips "
            f"(rate {report['rejection_rate']:.3f} > privacy.max_reject_rate {ctx.config.privacy.max_reject_rate}): "
            "the model may be reproducing protected voices, so nothing is published"
        )
    quality = quality_report(ctx, features)
    dropping = _dropping_columns(ctx.config.features.gates)
    rows = []
    for verdict in sorted(audit, key=lambda a: a["clip_id"]):
        if verdict["verdict"] != "pass":
            continue  # leak or unscorable: fail closed, never exported
        cid = verdict["clip_id"]
        if any(features[cid][column] for column in dropping):
            continue  # a quality gate drops it
        p, g, f = prompts[cid], generation[cid], features[cid]
        rows.append({
            "clip_id": cid, "ai_generated": True, "split": p["split"], "caption": p["caption"], "genre": p["genre"], "artist": p["artist"],
            "lyrics": p["lyrics"], "vocals": p["vocals"], "requested_duration_s": p["duration_s"], "model_preset": g["model_preset"],
            "model_weights_sha256": g["model_weights_sha256"], "levels_sampled": g["levels_sampled"],
            "temperature": g["level_temperatures"][0], "sampling_seed": g["sampling_seed"],  # as sampled
            "generation_mode": g["generation_mode"], "regenerations": verdict["attempts"], "num_samples": g["num_samples"],
            "leak_check": "pass", "leak_check_no_voice": verdict["no_voice"],
            **{k: v for k, v in f.items() if k != "clip_id"},
            "_source": g["_source"],
        })
    return rows, report, quality


def _dropping_columns(gates) -> list[str]:
    """The flag columns whose quality gate is `drop`."""
    return [column for flag, column in QUALITY_FLAGS.items() if getattr(gates, flag) == "drop"]


def quality_report(ctx: RunContext, features: dict[str, dict]) -> dict:
    """Counts of each quality flag over every generated clip, the configured action and the clips dropped."""
    gates = ctx.config.features.gates
    flagged = {flag: sum(bool(f[column]) for f in features.values()) for flag, column in QUALITY_FLAGS.items()}
    dropping = _dropping_columns(gates)
    return {
        "feature_set": ctx.config.features.feature_set,
        "clips": len(features),
        "flagged": flagged,
        "action": gates.model_dump(),
        "dropped": sum(any(f[c] for c in dropping) for f in features.values()),
    }


def privacy_report(ctx: RunContext, audit: list[dict], summaries: list[dict]) -> dict:
    """Aggregate figures only: nothing that names or describes a reference speaker."""
    from pipeline.privacy.leakcheck import VERDICTS

    counts = {v: sum(a["verdict"] == v for a in audit) for v in VERDICTS}
    rejected = len(audit) - counts["pass"]  # a leak, an unscorable clip or a copy
    # The gate counts first-pass rejections: regenerating keeps the clip count, but a model that keeps
    # reproducing protected voices (or its corpus) must still stop the release.
    first_pass = sum(n for s in summaries for verdict, n in s["first_pass_counts"].items() if verdict != "pass")
    scores = [s for summary in summaries for s in summary["scores"]]
    first = summaries[0] if summaries else {}
    low = min([-1.0, *scores]) if scores else -1.0
    high = max([1.0, *scores]) if scores else 1.0
    histogram, edges = np.histogram(scores, bins=10, range=(low, high))
    by_transform: dict[str, dict[str, int]] = {}
    for summary in summaries:
        for name, result in summary["self_test"]["by_transform"].items():
            entry = by_transform.setdefault(name, {"caught": 0, "scored": 0})
            entry["caught"] += result["caught"]
            entry["scored"] += result["scored"]
    calibration = first.get("calibration", {})
    return {
        "counts": {"clips": len(audit), **counts, "rejected": rejected, "no_voice": sum(a["no_voice"] for a in audit),
                   "regenerated": sum(s["regenerated"] for s in summaries),
                   "rejected_first_pass": first_pass},
        "on_leak": ctx.config.privacy.on_leak,
        "regenerate_temperature_step": ctx.config.privacy.regenerate_temperature_step,
        "rejection_rate": first_pass / len(audit) if audit else 0.0,
        "max_reject_rate": ctx.config.privacy.max_reject_rate,
        "threshold": first.get("threshold"),
        "threshold_source": first.get("threshold_source"),
        "target_recall": ctx.config.privacy.target_recall,
        "max_fpr": ctx.config.privacy.max_fpr,
        "calibration": {k: calibration.get(k) for k in (
            "recall", "false_positive_rate", "equal_error_rate", "recall_at_fpr_1pct", "recall_at_fpr_01pct",
            "genuine_trials", "impostor_trials", "recall_by_condition", "fpr_by_kind", "score_histograms",
            "condition_offsets", "detected_conditions", "threshold_set_by", "cohort_jackknife")},
        # clips per condition their voice was detected under (whose calibrated offset applied); aggregate only
        "clips_by_detected_condition": dict(sorted(Counter(a["condition"] for a in audit if a.get("condition")).items())),
        "recall_target_met": first.get("recall_shortfall") is None,
        "recall_shortfall": first.get("recall_shortfall"),
        "score_normalisation": first.get("score_normalisation"),
        "enrolment_variants": first.get("enrolment_variants"),
        "unscorable_policy": "treated as a leak (never exported)",
        "detector_self_test": {
            "canaries_scored": sum(s["self_test"]["canaries"] for s in summaries),
            "canaries_caught": sum(s["self_test"]["caught"] for s in summaries),
            "allowed_misses_per_shard": first.get("self_test", {}).get("allowed_misses"),
            "by_transform": by_transform,
        },
        "speaker_encoder": first.get("encoder"),
        "copy_check": copy_check_report(ctx, summaries),
        "score_histogram": {"bin_edges": [round(e, 3) for e in edges.tolist()], "counts": histogram.tolist()},
    }


def copy_check_report(ctx: RunContext, summaries: list[dict]) -> dict:
    """Aggregates of the copy check: how many clips it judged and rejected, and the spread of their distance to the
    closest training recording relative to the closest held-out recording's (1: as close as a new recording
    came); nothing that points to a recording."""
    checks = [s["copy_check"] for s in summaries if s.get("copy_check")]
    if not checks:
        return {"applies": False, "why": "the model did not learn from a private corpus: there is nothing it could copy"}
    first = checks[0]
    nearest_new = min(min(c["holdout_dcr"]) for c in checks)
    relative = np.array([d / nearest_new for c in checks for d in c["dcr"]]) if nearest_new > 0 else np.zeros(0)
    return {
        "applies": True, "on_copy": ctx.config.privacy.on_copy,
        "measure": "distance to the closest training recording (RMS dB difference of 0.5 s log-mel windows, each "
                   "relative to its loudest band and smoothed over about a frame and a band; averaged over the "
                   "clip's closest 1.5 s, or its closest window against the held-out windows' own yardstick, "
                   "whichever is closer), relative to the closest held-out recording's",
        "ratio": first["ratio"], "held_out_recordings": len(first["holdout_dcr"]),
        "clips_judged": int(relative.size),
        "rejected_first_pass": sum(s["first_pass_counts"].get("copy", 0) for s in summaries),
        "relative_distance_quantiles": {q: round(float(np.quantile(relative, float(q))), 3) for q in ("0.05", "0.5")}
        if relative.size else None,
        "near_copy_detector": near_copy_report(checks),
    }


def near_copy_report(checks: list[dict]) -> dict | None:
    """Aggregates of the fingerprint near-copy detector (privacy/fingerprint.py); None for runs made before it."""
    from pipeline.privacy.fingerprint import MIN_SECONDS

    printed = [c["fingerprint"] for c in checks if c.get("fingerprint")]
    if not printed:
        return None
    ber = np.array([b for p in printed for b in p["ber"]])
    return {
        "method": "Chromaprint fingerprints: the lowest bit error rate over about 2 s of a clip aligned with any "
                  f"corpus recording, training or held-out; clips and recordings shorter than {MIN_SECONDS:.1f} s "
                  "have none",
        "min_seconds": MIN_SECONDS, "max_ber": printed[0]["max_ber"], "corpus_recordings_fingerprinted": printed[0]["recordings"],
        "clips_fingerprinted": int(ber.size),
        "lowest_ber": round(float(ber.min()), 3) if ber.size else None,
    }


def _read_mono(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    return audio.mean(axis=1), rate


def corpus_files(ctx: RunContext) -> tuple[str, list[Path]]:
    """(what the comparison corpus is, its files): the held-out part of the private corpus when the run's model
    learned from it (files it never saw), the whole corpus without a trained model, else the reference set."""
    if ctx.loaded.corpus is None:
        from pipeline.privacy.reference import list_reference_files

        return ("the private reference set (no source corpus configured)",
                [f.path for f in list_reference_files(ctx.loaded.reference_dir)])
    from pipeline.training.corpus import list_corpus
    from pipeline.training.stage import model_folder

    files = list_corpus(ctx.loaded.corpus)
    model = read_json(ctx.root / "plan.json").get("model")
    if model is None:
        return "the private corpus (no trained model)", [f.path for f in files]
    corpus = read_json(model_folder(ctx.loaded.models_root, ctx.dataset, model["version"]) / "corpus.json")
    held = set(corpus["holdout_sha256"])
    chosen = [f.path for f in files if f.sha256 in held]
    return f"the held-out part of the private corpus ({len(chosen)} files the model never trained on)", chosen


def corpus_feature_rows(ctx: RunContext, embed=None) -> tuple[str, list[dict], list | None]:
    """(what the corpus is, its feature rows, its vectors under the user's `embed` or None): the comparison
    corpus's files (`corpus_files`), each read once, through the run's feature set. Private: only aggregates of
    these may leave (pipeline.export.fidelity)."""
    from pipeline.features.stage import feature_set_of

    extractor = feature_set_of(ctx.config.features)
    name, paths = corpus_files(ctx)
    rows, vectors = [], []
    for path in paths:
        audio, rate = _read_mono(path)
        rows.append(extractor.extract(audio, rate))
        if embed is not None:
            vectors.append(_embedding_vector(embed, audio, rate))
    return name, rows, vectors if embed is not None else None


def _embedding_vector(embed, audio: np.ndarray, rate: int) -> np.ndarray:
    return np.asarray(embed(audio, rate), dtype=np.float64).ravel()


def utility_report(ctx: RunContext, rows: list[dict]) -> dict:
    """The fidelity report of the release rows against the private corpus (aggregates only)."""
    from pipeline.export.fidelity import fidelity_report, load_embedding
    from pipeline.features.extract import FEATURE_COLUMNS

    spec = ctx.config.export.fidelity_embedding
    embed = load_embedding(spec)  # None: the features themselves
    corpus_name, corpus, corpus_vectors = corpus_feature_rows(ctx, embed)
    # what a clip is made of, not what it sounds like: the corpus's own rate and lengths differ by design
    form = {"sample_rate_hz", "duration_s"}
    numeric = [name for name, (unit, _) in FEATURE_COLUMNS.items() if unit != "flag" and name not in form]
    vectors = None
    if embed is not None:  # the user's embedding, on the release's audio and the corpus's
        vectors = ([_embedding_vector(embed, *_read_mono(row["_source"])) for row in rows], corpus_vectors)
    return fidelity_report(rows, corpus, numeric, corpus_name=corpus_name, embedding=spec, seed=ctx.seed % 2**32,
                           vectors=vectors)


def build_release(ctx: RunContext, rows: list[dict], report: dict, quality: dict, staging: Path,
                  fidelity: dict | None = None) -> dict:
    """Write every file of the release into `staging`; returns the manifest."""
    from pipeline.export.page import listening_sample, release_page
    from pipeline.export.flac_tags import synthetic_tags
    from pipeline.export.writer import FileEntry, copy_labelled, plan_shards, shard_name, write_parquet_shard

    export_cfg = ctx.config.export
    (staging / "data").mkdir()
    (staging / "audio").mkdir()
    entries: list[FileEntry] = []

    def record(relative: str) -> None:
        path = staging / relative
        entries.append(FileEntry(relative, path.stat().st_size, sha256_file(path)))

    def copy(row: dict) -> FileEntry:
        """The clip's FLAC, labelled AI-generated in its tags; the row's audio is that file from now on."""
        relative = f"audio/{row['clip_id']}.flac"
        tags = synthetic_tags(dataset=ctx.dataset, version=ctx.version, clip_id=row["clip_id"],
                              model_preset=row["model_preset"], model_sha256=row["model_weights_sha256"],
                              generator=f"synthaudio {__version__}")
        entry = FileEntry(relative, *copy_labelled(row["_source"], staging / relative, tags))
        row["_source"] = staging / relative
        return entry

    # Two copies in flight: hashing and file creation of one overlap the other's writes (hashlib and
    # file I/O release the GIL).
    with ThreadPoolExecutor(max_workers=2) as pool:
        entries += progress(pool.map(copy, rows), desc="export audio", quiet=ctx.quiet, unit="clip")
    shards = plan_shards(rows, int(export_cfg.max_shard_mb * 2**20), export_cfg.embed_audio)
    counts = {split: sum(len(s) for s in shards.get(split, [])) for split in SPLITS}
    for split, split_shards in shards.items():
        for index, shard_rows in enumerate(split_shards):
            relative = f"data/{shard_name(split, index, len(split_shards))}"
            write_parquet_shard(shard_rows, staging / relative, export_cfg.embed_audio)
            record(relative)
    (staging / "privacy_report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    record("privacy_report.json")
    first = rows[0] if rows else {}
    summary = {
        "dataset": ctx.dataset, "version": ctx.version, "description": ctx.config.description, "counts": counts,
        "model_preset": ctx.config.generation.preset, "model_weights_sha256": first.get("model_weights_sha256"),
        "feature_set": ctx.config.features.feature_set, "lineage": lineage(read_json(ctx.root / "plan.json")),
    }
    (staging / "README.md").write_text(dataset_card(summary, report, quality, fidelity))
    record("README.md")
    reference_fingerprint = read_json(ctx.shard_dir("leakcheck", 0) / "summary.json")["reference_fingerprint"]
    if fidelity is not None:
        (staging / "utility_report.json").write_text(json.dumps(fidelity, indent=2, sort_keys=True) + "\n")
        record("utility_report.json")
        page_reports = {"privacy_report.json": report, "utility_report.json": fidelity,
                        "manifest.json": {**summary, "reference_set_fingerprint": reference_fingerprint}}
        (staging / "index.html").write_text(release_page({**summary}, page_reports, listening_sample(rows)))
        record("index.html")

    entries.sort(key=lambda e: e.path)
    content = "".join(f"{e.sha256}  {e.path}\n" for e in entries)
    manifest = {
        **summary, "schema_version": RELEASE_SCHEMA_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code_version": {"package": __version__, "git_commit": _git_commit()},
        # Only the public view: the config model marks each private field once (pipeline.config.PRIVATE_FIELDS).
        "config": ctx.config.public_view(), "config_sha256": ctx.config.public_fingerprint(),
        "speaker_encoder": report["speaker_encoder"],
        "reference_set_fingerprint": reference_fingerprint,
        "fidelity": None if fidelity is None else {
            "corpus": fidelity["corpus"], "column_shapes": fidelity["overall"]["column_shapes"]["mean"],
            "column_pair_trends": fidelity["overall"]["column_pair_trends"]["mean"],
            **{k: fidelity["overall"]["frechet"].get(k) for k in ("frechet_distance", "bootstrap_ci95", "insufficient")}},
        "leak_check": {**{k: report[k] for k in ("threshold", "threshold_source", "target_recall", "rejection_rate",
                                                 "max_reject_rate", "score_normalisation")},
                       "reference_eer": report["calibration"]["equal_error_rate"],
                       "false_positive_rate_at_threshold": report["calibration"]["false_positive_rate"],
                       "max_fpr": report["max_fpr"], "calibration_recall": report["calibration"]["recall"],
                       "recall_at_fpr_1pct": report["calibration"]["recall_at_fpr_1pct"],
                       "recall_at_fpr_01pct": report["calibration"]["recall_at_fpr_01pct"],
                       "condition_offsets": report["calibration"].get("condition_offsets") or {},
                       "recall_target_met": report["recall_target_met"],
                       "canaries_caught": report["detector_self_test"]["canaries_caught"],
                       "canaries_scored": report["detector_self_test"]["canaries_scored"]},
        "quality": quality,
        "content_sha256": hashlib.sha256(content.encode()).hexdigest(),
        "files": [e.__dict__ for e in entries],
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    sums = content + f"{sha256_file(staging / 'manifest.json')}  manifest.json\n"
    (staging / "SHA256SUMS").write_text("".join(sorted(sums.splitlines(keepends=True), key=lambda l: l.split("  ", 1)[1])))
    return manifest


def refuse_private_content(ctx: RunContext, staging: Path) -> None:
    """Raise PrivateDataInRelease if the staged release holds any of the run's private strings (private
    config values, reference speaker ids and file names): fail closed, nothing is published."""
    from pipeline.export.private_scan import private_needles, scan_release
    from pipeline.privacy.reference import list_reference_files

    needles = private_needles(ctx.loaded, list_reference_files(ctx.loaded.reference_dir))
    hits = scan_release(staging, needles)
    if hits:
        listed = "\n  ".join(hits)
        raise PrivateDataInRelease(
            f"export of {ctx.dataset} {ctx.version}: the staged release holds private data, so nothing is "
            f"published:\n  {listed}\nA private value reached a public field (a lyric line, a caption, an artist "
            "token, the description?): remove it there, or rename the reference file or speaker, then rerun export."
        )


def lineage(plan: dict) -> dict | None:
    """What the release's model learned from: the trained model's version and sha256 and the corpus fingerprint
    (hashes only; the model and the corpus stay private). None when the preset's own weights generated it."""
    model = plan.get("model")
    if model is None:
        return None
    return {"model_version": model["version"], "model_sha256": model["weights_sha256"],
            "corpus_fingerprint": model["corpus_fingerprint"]}


@synced_stage("export")
def export(ctx: RunContext, log=None) -> Path:
    """Publish the run's release and refresh the catalog; returns its folder. Idempotent for identical content."""
    from pipeline.export.publish import publish, publish_remote, staging_folder, update_catalog

    rows, report, quality = gather(ctx)
    fidelity = utility_report(ctx, rows)
    target = ctx.release_dir
    with staging_folder(target.parent, ctx.version) as staging:
        manifest = build_release(ctx, rows, report, quality, staging, fidelity)
        refuse_private_content(ctx, staging)
        published = publish(staging, target, manifest["content_sha256"])
    if not published and log:
        log(f"release {target} already published with identical content; nothing written")
    update_catalog(target.parent)
    publish_remote(ctx, target)  # storage.releases is a URL: push the release, manifest last
    return target
