import hashlib
import json
import os
import shutil
import subprocess

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipeline.errors import ReleaseConflict
from pipeline.export.publish import clean_stale_staging
from pipeline.export.release import export
from pipeline.export.schema import AUDIO_STORAGE_TYPE, release_schema
from pipeline.privacy.encoder import load_encoder
from pipeline.runner import make_context
from pipeline.schemas import MANIFEST_JSON_SCHEMA
from pipeline.testing import default_n_clips, run_cli


def test_release_layout_and_rows(cli_release):
    names = sorted(str(p.relative_to(cli_release)) for p in cli_release.rglob("*") if p.is_file())
    assert {"README.md", "SHA256SUMS", "manifest.json", "privacy_report.json"} <= set(names)
    df = pd.read_parquet(cli_release / "data")
    assert len(df) == default_n_clips() and df.clip_id.is_unique
    assert set(df.split) <= {"train", "validation", "test"}
    assert sorted(n for n in names if n.startswith("audio/")) == sorted(f"audio/{c}.flac" for c in df.clip_id)
    assert (df.leak_check == "pass").all() and (df.levels_sampled == 3).all() and (df.model_preset == "tiny").all()
    for row in df.itertuples():
        audio, rate = sf.read(cli_release / row.audio["path"])
        assert rate == 44_100 and audio.shape == (row.num_samples,)
        assert row.duration_s == pytest.approx(row.num_samples / 44_100)


def test_parquet_schema_and_hf_audio_storage_type_are_pinned(cli_release):
    schema = pq.read_schema(next((cli_release / "data").glob("*.parquet")))
    assert schema.remove_metadata().equals(release_schema())
    assert schema.field("audio").type == pa.struct([("bytes", pa.binary()), ("path", pa.string())]) == AUDIO_STORAGE_TYPE
    assert pq.ParquetFile(next((cli_release / "data").glob("*.parquet"))).metadata.row_group(0).column(0).compression == "ZSTD"


def test_pyarrow_dataset_and_duckdb_read_it(cli_release):
    table = ds.dataset(cli_release / "data", format="parquet").to_table()
    counts = duckdb.sql(f"SELECT split, count(*) AS n FROM '{cli_release}/data/*.parquet' GROUP BY split").fetchall()
    assert sum(n for _, n in counts) == table.num_rows == default_n_clips()
    manifest = json.loads((cli_release / "manifest.json").read_text())
    assert {s: n for s, n in counts} == {s: n for s, n in manifest["counts"].items() if n}


def test_checksums_verify_with_sha256sum(cli_release):
    result = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=cli_release, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    listed = {line.split("  ", 1)[1] for line in (cli_release / "SHA256SUMS").read_text().splitlines()}
    files = {str(p.relative_to(cli_release)) for p in cli_release.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    assert listed == files


def test_manifest_matches_its_schema_and_files(cli_release):
    import jsonschema

    manifest = json.loads((cli_release / "manifest.json").read_text())
    jsonschema.validate(manifest, MANIFEST_JSON_SCHEMA)
    assert manifest["version"] == "2026-01-01" and manifest["dataset"] == "default"
    for entry in manifest["files"]:
        data = (cli_release / entry["path"]).read_bytes()
        if entry["path"] != "manifest.json":
            assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["size"]
    check = manifest["leak_check"]
    summary = json.loads((cli_release.parents[2] / "runs" / "default" / "2026-01-01" / "leakcheck" / "shard-00000"
                          / "summary.json").read_text())
    assert check["threshold_source"] == "calibrated" and check["threshold"] == summary["threshold"]
    assert check["target_recall"] == 0.95 and check["reference_eer"] == summary["calibration"]["equal_error_rate"]
    assert check["max_fpr"] == 0.05 and check["calibration_recall"] == summary["calibration"]["recall"]
    assert check["recall_target_met"] == (summary["recall_shortfall"] is None)
    allowed = summary["self_test"]["allowed_misses"]
    assert check["canaries_scored"] == 24 and check["canaries_caught"] >= 24 - 2 * allowed


def test_release_holds_nothing_from_the_reference_set(cli_release, reference_dir, tmp_path):
    needles = [p.name.encode() for p in reference_dir.iterdir()]  # speaker ids
    needles += [str(p.relative_to(reference_dir)).encode() for p in reference_dir.rglob("*.wav")]  # file names
    needles += [str(reference_dir).encode(), b"reference_voices"]
    encoder = load_encoder()
    embeddings = []
    for path in sorted(reference_dir.rglob("*.wav")):
        audio, rate = sf.read(path, dtype="float32")
        embeddings.append(encoder.embed(audio, rate))
        needles.append(path.read_bytes()[44:1044])  # raw audio bytes
    for file in (p for p in cli_release.rglob("*") if p.is_file()):
        blob = file.read_bytes()
        for needle in needles:
            assert needle not in blob, f"{file} contains reference data {needle[:40]!r}"
        for embedding in embeddings:
            assert embedding[:8].tobytes() not in blob and embedding[:8].astype(np.float64).tobytes() not in blob


def test_privacy_report_holds_figures_only(cli_release):
    report = json.loads((cli_release / "privacy_report.json").read_text())
    assert report["counts"]["clips"] == default_n_clips() == report["counts"]["pass"]
    test = report["detector_self_test"]
    assert test["canaries_scored"] == 24  # 2 shards x 4 speakers x 3 transformations
    assert {name: entry["scored"] for name, entry in test["by_transform"].items()} == \
        {"pitch±1": 8, "mixed0db": 8, "band8k": 8}
    assert test["canaries_caught"] == sum(entry["caught"] for entry in test["by_transform"].values())
    assert test["canaries_caught"] >= 24 - 2 * test["allowed_misses_per_shard"]
    calibration = report["calibration"]
    assert report["threshold_source"] == "calibrated" and report["max_fpr"] == 0.05
    assert all(entry["rate"] <= 0.05 for entry in calibration["fpr_by_kind"].values())
    # the impostor kinds named as setting the threshold are kinds that were scored
    assert calibration["threshold_set_by"] and set(calibration["threshold_set_by"]) <= set(calibration["fpr_by_kind"])
    assert calibration["recall_by_condition"]["clean"]["rate"] >= 0.95
    # calibrated again without each cohort voice in turn: ranges of figures, no voice named
    spread = calibration["cohort_jackknife"]
    assert set(spread) == {"cohort_voices", "threshold", "recall"} and spread["cohort_voices"] >= 2
    assert -1 < spread["threshold"][0] <= spread["threshold"][1] < 1
    assert 0 <= spread["recall"][0] <= spread["recall"][1] <= 1
    assert report["recall_target_met"] == (calibration["recall"] >= 0.95)
    counts = report["counts"]
    assert sum(report["score_histogram"]["counts"]) == counts["clips"] - counts["no_voice"] - counts["unscorable"]
    # every scored clip was put through the condition detector; the cohort's rooms gave reverberant clips an offset
    assert sum(report["clips_by_detected_condition"].values()) == sum(report["score_histogram"]["counts"])
    assert set(calibration["condition_offsets"]) == {"reverberant"}
    assert calibration["detected_conditions"]["clean"].get("reverberant", 0) <= 0.05
    manifest = json.loads((cli_release / "manifest.json").read_text())
    assert manifest["leak_check"]["condition_offsets"] == calibration["condition_offsets"]
    offset = calibration["condition_offsets"]["reverberant"]
    assert f"reverberant: offset {offset:+.4f}" in (cli_release / "README.md").read_text()
    assert "spk_" not in json.dumps(report)


def test_dataset_card_documents_every_field(cli_release):
    card = (cli_release / "README.md").read_text()
    for name in release_schema().names:
        assert f"`{name}`" in card
    assert "load_dataset" in card and "duckdb" in card and "smoke-test model" in card


def _copy_run(cli_release, tmp_path):
    """A copy of the session's run (workspace + releases) whose config points at the copy."""
    root = cli_release.parents[2]
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    config = copy / "build.yaml"
    config.write_text(config.read_text().replace(str(root), str(copy)))
    return config


def test_reexport_is_a_no_op_and_different_content_is_refused(cli_release, tmp_path):
    ctx = make_context(_copy_run(cli_release, tmp_path), "2026-01-01")
    before = {p: p.stat().st_mtime_ns for p in ctx.release_dir.rglob("*")}
    assert export(ctx) == ctx.release_dir
    assert {p: p.stat().st_mtime_ns for p in ctx.release_dir.rglob("*")} == before
    assert not list(ctx.release_dir.parent.glob(".staging-*"))

    feature_file = ctx.shard_dir("features", 0) / "features.parquet"
    table = pq.read_table(feature_file)
    index = table.schema.get_field_index("rms_dbfs")
    pq.write_table(table.set_column(index, table.schema.field(index), pa.array([0.0] * table.num_rows)), feature_file)
    with pytest.raises(ReleaseConflict, match="already exists with different content"):
        export(ctx)
    assert {p: p.stat().st_mtime_ns for p in ctx.release_dir.rglob("*")} == before


def test_stale_staging_of_a_dead_process_is_removed(tmp_path):
    import socket

    host = socket.gethostname().replace("-", "_")
    finished = subprocess.Popen(["true"])
    finished.wait()  # reaped: its pid names no live process
    dead = finished.pid
    stale = tmp_path / f".staging-v1-{host}-{dead}-abcd1234"
    live = tmp_path / f".staging-v1-{host}-{os.getpid()}-abcd1234"
    stale.mkdir(), live.mkdir()
    clean_stale_staging(tmp_path, "v1")
    assert not stale.exists() and live.exists()


def test_verify_passes_a_release_and_lists_every_corruption(cli_release, tmp_path):
    from pipeline.export.verify import verify_release

    assert verify_release(cli_release) == []
    release = tmp_path / "release"
    shutil.copytree(cli_release, release)
    flac = sorted((release / "audio").iterdir())[0]
    flac.write_bytes(flac.read_bytes()[:200])  # truncated audio
    (release / "README.md").write_text("edited")
    (release / "extra.txt").write_text("x")
    problems = verify_release(release)
    assert f"audio/{flac.name}: sha256 does not match SHA256SUMS (file changed or corrupted)" in problems
    assert "README.md: sha256 does not match SHA256SUMS (file changed or corrupted)" in problems
    assert "extra.txt: present but not listed in SHA256SUMS" in problems
    assert any(p.startswith(f"audio/{flac.name}: clip") and "does not decode" in p for p in problems)
    result = run_cli("verify", str(release))
    assert result.returncode == 1 and "problem(s)" in result.stdout


def test_catalog_lists_versions_and_latest_and_diff_shows_changes(cli_release, tmp_path):
    from pipeline.testing import fake_finished_run

    config = _copy_run(cli_release, tmp_path)
    ctx = make_context(config, "2026-01-01")
    catalog = json.loads((ctx.release_dir.parent / "catalog.json").read_text())
    assert [v["version"] for v in catalog["versions"]] == ["2026-01-01"] and catalog["latest"] == "2026-01-01"
    shutil.rmtree(ctx.release_dir.parent / "catalog.json", ignore_errors=True)
    # a second version of 3 clips published into the same releases root (its shards written directly: seconds)
    export(fake_finished_run(tmp_path / "copy", n_clips=3, version="2026-01-02"))
    catalog = json.loads((ctx.release_dir.parent / "catalog.json").read_text())
    assert [v["version"] for v in catalog["versions"]] == ["2026-01-01", "2026-01-02"]
    assert catalog["latest"] == "2026-01-02" == (ctx.release_dir.parent / "LATEST").read_text().strip()
    listed = run_cli("releases", "--config", str(config), "list", "default")
    assert listed.returncode == 0 and "2026-01-02" in listed.stdout and "(latest)" in listed.stdout
    diff = run_cli("releases", "--config", str(config), "diff", "default", "2026-01-01", "2026-01-02")
    assert f"config n_clips: {default_n_clips()} -> 3" in diff.stdout and "count train:" in diff.stdout
    missing = run_cli("releases", "--config", str(config), "show", "default", "1999-01-01")
    assert missing.returncode == 2 and "published: 2026-01-01, 2026-01-02" in missing.stderr


def test_a_write_error_mid_export_leaves_no_partial_release(cli_release, tmp_path, monkeypatch):
    import errno

    import pipeline.export.writer as writer

    config = _copy_run(cli_release, tmp_path)
    ctx = make_context(config, "2026-01-09")
    shutil.copytree(ctx.loaded.workspace_root / "default" / "2026-01-01", ctx.root)  # reuse the finished shards
    real, calls = writer.copy_labelled, []

    def disk_full_on_third(source, target, tags):
        calls.append(source)
        if len(calls) == 3:
            target.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(source, target, tags)

    monkeypatch.setattr(writer, "copy_labelled", disk_full_on_third)
    with pytest.raises(OSError, match="No space left"):
        export(ctx)
    assert not ctx.release_dir.exists()
    assert not list(ctx.release_dir.parent.glob(".staging-*"))
    monkeypatch.setattr(writer, "copy_labelled", real)
    assert export(ctx) == ctx.release_dir and run_cli("verify", str(ctx.release_dir)).returncode == 0


def test_a_kill_during_export_leaves_no_version_and_the_next_export_completes(cli_release, tmp_path):
    import signal
    import sys
    import textwrap
    import time

    config = _copy_run(cli_release, tmp_path)
    ctx = make_context(config, "2026-01-08")
    shutil.copytree(ctx.loaded.workspace_root / "default" / "2026-01-01", ctx.root)
    script = textwrap.dedent(f"""
        import time
        import pipeline.export.writer as writer
        real = writer.copy_labelled
        def slow(source, target, tags):
            time.sleep(0.5)
            return real(source, target, tags)
        writer.copy_labelled = slow
        from pipeline.export.release import export
        from pipeline.runner import make_context
        export(make_context({str(config)!r}, "2026-01-08"))
    """)
    process = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 120
    while time.time() < deadline and not list(ctx.release_dir.parent.glob(".staging-2026-01-08-*/audio/*.flac")):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert list(ctx.release_dir.parent.glob(".staging-2026-01-08-*")), "the kill came after the export finished"
    assert not ctx.release_dir.exists()
    assert export(ctx) == ctx.release_dir
    assert not list(ctx.release_dir.parent.glob(".staging-*"))  # the dead export's staging was cleaned up
    assert run_cli("verify", str(ctx.release_dir)).returncode == 0


def test_parquet_is_sharded_by_size_and_can_embed_audio(cli_release, tmp_path):
    config = _copy_run(cli_release, tmp_path)
    text = config.read_text().replace("embed_audio: false", "embed_audio: true").replace("max_shard_mb: 256", "max_shard_mb: 0.3")
    config.write_text(text)
    ctx = make_context(config, "2026-01-07")
    shutil.copytree(ctx.loaded.workspace_root / "default" / "2026-01-01", ctx.root)
    release = export(ctx)
    files = sorted(p.name for p in (release / "data").iterdir())
    train = [f for f in files if f.startswith("train-")]
    assert len(train) > 1 and all(f.endswith(f"-of-{len(train):05d}.parquet") for f in train)
    table = pq.read_table(release / "data")
    for row in table.select(["clip_id", "audio"]).to_pylist():
        assert row["audio"]["bytes"] == (release / row["audio"]["path"]).read_bytes()
    assert run_cli("verify", str(release)).returncode == 0


def test_torch_dataloader_reads_the_release(cli_release):
    import torch
    from torch.utils.data import DataLoader, Dataset

    class Clips(Dataset):
        def __init__(self, release):
            self.release, self.rows = release, pd.read_parquet(release / "data").to_dict("records")

        def __len__(self):
            return len(self.rows)

        def __getitem__(self, i):
            audio, _ = sf.read(self.release / self.rows[i]["audio"]["path"], dtype="float32")
            return torch.from_numpy(audio), self.rows[i]["genre"]

    batches = list(DataLoader(Clips(cli_release), batch_size=4))
    assert sum(len(genres) for _, genres in batches) == default_n_clips()
    assert batches[0][0].shape == (4, 88192) and torch.isfinite(batches[0][0]).all()


def test_two_exports_of_one_version_at_once_one_wins_the_other_reports_it(cli_release, tmp_path):
    import sys

    config = _copy_run(cli_release, tmp_path)
    ctx = make_context(config, "2026-01-06")
    shutil.copytree(ctx.loaded.workspace_root / "default" / "2026-01-01", ctx.root)
    command = [sys.executable, "-m", "pipeline", "export", str(config), "--version", "2026-01-06"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in processes]
    assert [code for code, _, _ in results] == [0, 0], results
    reports = [err for _, _, err in results if "already published with identical content" in err]
    # Exactly one rename wins; the other export, whether it raced or came after, finds the winner's content.
    assert len(reports) == 1
    assert run_cli("verify", str(ctx.release_dir)).returncode == 0
    assert not list(ctx.release_dir.parent.glob(".staging-*"))
