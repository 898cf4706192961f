"""The storage layer: a run whose workspace and releases are an fsspec URL, each task on its own disk."""

import json
import os
from concurrent.futures import ThreadPoolExecutor

from fsspec.implementations.memory import MemoryFileSystem
import pytest

from pipeline.parallel import CPU_SHARE_ENV
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
def test_tasks_on_separate_disks_build_the_cli_release_through_the_store(tmp_path, two_shard_release, reference_dir,
                                                                         reference_cache):
    from tests.conftest import TWO_SHARD_BUILD

    cli_release = two_shard_release
    store = tmp_path / "store"
    config = write_config(tmp_path, reference_dir, **{**TWO_SHARD_BUILD,
        "storage.workspace": f"file://{store}/runs", "storage.releases": f"file://{store}/releases",
        "storage.reference_cache": str(reference_cache)})
    # Every task on a disk of its own; the two shards of a stage at the same time, as two machines run them.
    sharded = [[(stage, "--shard", "0"), (stage, "--shard", "1")] for stage in ("generate", "features", "leakcheck")]
    steps = [[("plan",)], *sharded, [("export",)]]
    number = 0
    for step in steps:
        with ThreadPoolExecutor(len(step)) as pool:
            futures = []
            for stage, *rest in step:
                number += 1
                scratch = tmp_path / f"machine-{number}"
                futures.append((stage, rest, scratch, pool.submit(
                    run_cli, stage, str(config), "--version", "2026-01-01", "--quiet", *rest,
                    env={"SYNTHAUDIO_SCRATCH": str(scratch), CPU_SHARE_ENV: "1"})))
        for stage, rest, scratch, future in futures:
            result = future.result()
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


def _ctx(tmp_path, **urls):
    from types import SimpleNamespace

    loaded = SimpleNamespace(workspace_url=urls.get("workspace"), releases_url=urls.get("releases"))
    return SimpleNamespace(loaded=loaded, root=tmp_path / "run", dataset="demo", version="v1")


def _release(folder, content: str):
    (folder / "audio").mkdir(parents=True)
    (folder / "audio" / "a.flac").write_bytes(content.encode())
    (folder / "manifest.json").write_text(json.dumps({"content_sha256": content * 8, "version": "v1",
                                                      "created_at": "2026-01-01T00:00:00+00:00",
                                                      "counts": {"train": 1}}))
    return folder


def test_two_exporters_of_one_version_with_different_content_cannot_both_publish(tmp_path):
    from pipeline.errors import ReleaseConflict
    from pipeline.export.publish import claim_remote_version, publish_remote

    store = tmp_path / "store"
    ctx = _ctx(tmp_path, releases=f"file://{store}")
    first = _release(tmp_path / "a" / "demo" / "v1", "aaaaaaaa")
    second = _release(tmp_path / "b" / "demo" / "v1", "bbbbbbbb")
    publish_remote(ctx, first)
    with pytest.raises(ReleaseConflict, match="claimed for different content"):
        publish_remote(ctx, second)
    assert (store / "demo" / "v1" / "audio" / "a.flac").read_bytes() == b"aaaaaaaa"  # nothing of the loser
    assert json.loads((store / "demo" / "catalog.json").read_text())["latest"] == "v1"
    publish_remote(ctx, first)  # the same content again: a no-op, not a conflict
    fs, root = filesystem(f"file://{store}")
    # A claim is exclusive: the first claimant's content stands, whoever asks later.
    assert claim_remote_version(fs, f"{root}/demo/.v2.claim", "x" * 64) == "x" * 64
    assert claim_remote_version(fs, f"{root}/demo/.v2.claim", "y" * 64) == "x" * 64


def test_a_claimed_but_unfinished_release_is_completed_by_a_retry_with_the_same_content(tmp_path):
    from pipeline.export.publish import claim_remote_version, publish_remote

    store = tmp_path / "store"
    ctx = _ctx(tmp_path, releases=f"file://{store}")
    release = _release(tmp_path / "a" / "demo" / "v1", "aaaaaaaa")
    fs, root = filesystem(f"file://{store}")
    fs.makedirs(f"{root}/demo", exist_ok=True)
    claim_remote_version(fs, f"{root}/demo/.v1.claim", "aaaaaaaa" * 8)  # an exporter that died after claiming
    publish_remote(ctx, release)
    assert (store / "demo" / "v1" / "manifest.json").is_file()


def test_push_files_sends_a_finished_part_of_a_stage_at_once(tmp_path):
    from pipeline.storage import push_files

    ctx = _ctx(tmp_path, workspace="memory://shared/runs")
    tokens = ctx.root / "generate" / "shard-00000" / "tokens" / "abc" / "clip-x2-level0.npy"
    tokens.parent.mkdir(parents=True)
    tokens.write_bytes(b"level 0 tokens")
    push_files(ctx, [tokens])
    fs, root = filesystem("memory://shared/runs")
    assert fs.cat_file(f"{root}/demo/v1/generate/shard-00000/tokens/abc/clip-x2-level0.npy") == b"level 0 tokens"
    push_files(_ctx(tmp_path), [tokens])  # a local workspace: nothing to do
