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
from pipeline.export.release import clean_stale_staging, export
from pipeline.export.schema import AUDIO_STORAGE_TYPE, release_schema
from pipeline.privacy.encoder import load_encoder
from pipeline.runner import make_context
from pipeline.schemas import MANIFEST_JSON_SCHEMA


def test_release_layout_and_rows(cli_release):
    names = sorted(str(p.relative_to(cli_release)) for p in cli_release.rglob("*") if p.is_file())
    assert {"README.md", "SHA256SUMS", "manifest.json", "privacy_report.json"} <= set(names)
    df = pd.read_parquet(cli_release / "data")
    assert len(df) == 8 and df.clip_id.is_unique
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
    assert sum(n for _, n in counts) == table.num_rows == 8
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
    assert manifest["leak_check"]["threshold"] == 0.75


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
    assert report["counts"]["clips"] == 8 and report["counts"]["pass"] == 8
    assert report["detector_self_test"] == {"canaries_caught": 8, "canaries_scored": 8}
    assert "spk_" not in json.dumps(report)


def test_dataset_card_documents_every_field(cli_release):
    card = (cli_release / "README.md").read_text()
    for name in release_schema().names:
        assert f"`{name}`" in card
    assert "load_dataset" in card and "duckdb" in card and "smoke-test model" in card


def test_reexport_is_a_no_op_and_different_content_is_refused(cli_release, tmp_path):
    # A copy of the run's workspace and release, so the session's release stays untouched.
    root = cli_release.parents[2]
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    config = copy / "build.yaml"
    config.write_text(config.read_text().replace(str(root), str(copy)))
    ctx = make_context(config, "2026-01-01")
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
