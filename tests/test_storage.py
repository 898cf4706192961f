"""The storage layer: a run whose workspace and releases are an fsspec URL, each task on its own disk."""

import json
import os

from fsspec.implementations.memory import MemoryFileSystem
import pytest

from pipeline.storage import filesystem, is_url, push
from pipeline.testing import run_cli, write_config


def test_urls_and_paths_are_told_apart():
    assert is_url("s3://bucket/runs") and is_url("file:///tmp/x") and is_url("memory://x")
    assert not is_url("../var/runs") and not is_url("/abs/path") and not is_url("C:relative")


def test_push_writes_completion_records_last(tmp_path):
    (tmp_path / "_done").mkdir()
    (tmp_path / "_done" / "generate-00000.json").write_text("{}")
    (tmp_path / "generate" / "shard-00000" / "audio").mkdir(parents=True)
    for name in ("a.flac", "b.flac"):
        (tmp_path / "generate" / "shard-00000" / "audio" / name).write_bytes(b"x")
    (tmp_path / "generate" / "shard-00000" / ".half.tmp-123").write_bytes(b"partial")  # never pushed
    order = []

    class Recording(MemoryFileSystem):
        def put_file(self, lpath, rpath, **kwargs):
            order.append(rpath.split("/run/", 1)[1])
            return super().put_file(lpath, rpath, **kwargs)

    fs = Recording()
    assert push(fs, tmp_path, "/run", ["_done/generate-00000.json", "generate/shard-00000/"]) == 3
    assert order == ["generate/shard-00000/audio/a.flac", "generate/shard-00000/audio/b.flac",
                     "_done/generate-00000.json"]


@pytest.mark.slow
def test_tasks_on_separate_disks_build_the_cli_release_through_the_store(tmp_path, cli_release, reference_dir,
                                                                         reference_cache):
    store = tmp_path / "store"
    config = write_config(tmp_path, reference_dir, **{
        "storage.workspace": f"file://{store}/runs", "storage.releases": f"file://{store}/releases",
        "storage.reference_cache": str(reference_cache)})
    tasks = [("plan",), ("generate", "--shard", "0"), ("generate", "--shard", "1"), ("features", "--shard", "0"),
             ("features", "--shard", "1"), ("leakcheck", "--shard", "0"), ("leakcheck", "--shard", "1"), ("export",)]
    for number, (stage, *rest) in enumerate(tasks):
        scratch = tmp_path / f"machine-{number}"  # every task on a disk of its own
        result = run_cli(stage, str(config), "--version", "2026-01-01", "--quiet", *rest,
                         env={"SYNTHAUDIO_SCRATCH": str(scratch)})
        assert result.returncode == 0, (stage, result.stderr[-3000:])
        if stage == "features" and rest[-1] == "1":
            local = next(scratch.glob("*/runs/default/2026-01-01"))
            assert not (local / "generate" / "shard-00000").exists()  # it pulled only its own shard's inputs
    release = store / "releases" / "default" / "2026-01-01"
    manifest = json.loads((release / "manifest.json").read_text())
    assert manifest["content_sha256"] == json.loads((cli_release / "manifest.json").read_text())["content_sha256"]
    assert sorted(os.listdir(release / "audio")) == sorted(os.listdir(cli_release / "audio"))
    assert json.loads((store / "releases" / "default" / "catalog.json").read_text())["latest"] == "2026-01-01"
    fs, root = filesystem(f"file://{store}/runs")
    assert fs.isfile(f"{root}/default/2026-01-01/leakcheck/shard-00001/audit.parquet")  # the audit lives in the store
    assert fs.isfile(f"{root}/default/2026-01-01/_done/leakcheck-00001.json")
