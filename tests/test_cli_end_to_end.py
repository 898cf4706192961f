"""End-to-end runs of `python -m pipeline` (storage moved to temp folders): a killed run resumed, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from pipeline.testing import REPO_ROOT, run_cli, write_config
from tests.conftest import TWO_SHARD_BUILD

pytestmark = pytest.mark.slow
VERSION = "2026-01-01"


def _release_content(release):
    rows = pq.read_table(release / "data").sort_by("clip_id")
    audio = {p.name: p.read_bytes() for p in sorted((release / "audio").iterdir())}
    return rows, audio


def test_a_run_killed_mid_generation_then_rerun_with_other_workers_gives_the_undisturbed_release(
        two_shard_release, tmp_path, reference_dir, reference_cache):
    """SIGKILL mid-generation, rerun with one worker in that workspace: no duplicates, no leftovers, and rows and
    audio equal to the undisturbed build's (made in another workspace with the default workers)."""
    config = write_config(tmp_path, reference_dir, **{**TWO_SHARD_BUILD, "storage.reference_cache": str(reference_cache)})
    command = [sys.executable, "-m", "pipeline", "run", str(config), "--version", VERSION, "--quiet"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tokens = tmp_path / "runs" / "default" / VERSION / "generate"
    deadline = time.time() + 300
    while time.time() < deadline and not list(tokens.rglob("*-level1.npy")):
        time.sleep(0.05)
    assert list(tokens.rglob("*-level1.npy")), "generation never reached the middle level"
    os.killpg(process.pid, signal.SIGKILL)  # the run and its worker processes, mid-generation
    process.wait()
    assert not (tmp_path / "releases" / "default" / VERSION).exists()
    assert len(list((tokens.parent / "_done").glob("generate-*.json"))) < 2  # killed before generation finished

    result = run_cli("run", str(config), "--version", VERSION, "--quiet", "--workers", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    release = tmp_path / "releases" / "default" / VERSION
    rows, audio = _release_content(release)
    ids = rows.column("clip_id").to_pylist()
    assert len(ids) == len(set(ids)) == TWO_SHARD_BUILD["n_clips"] and sorted(audio) == sorted(f"{i}.flac" for i in ids)
    assert not list(tmp_path.rglob(".*.tmp-*")) and not list((release.parent).glob(".staging-*"))
    undisturbed_rows, undisturbed_audio = _release_content(two_shard_release)
    assert rows.equals(undisturbed_rows) and audio == undisturbed_audio
    manifests = [json.loads((r / "manifest.json").read_text()) for r in (two_shard_release, release)]
    assert manifests[0]["content_sha256"] == manifests[1]["content_sha256"]


@pytest.mark.parametrize("override, needle", [
    ({"colour": "blue"}, "colour: unknown key"),
    ({"n_clips": -1}, "n_clips"),
    ({"privacy.reference_dir": "/no/such/folder"}, "privacy.reference_dir"),
])
def test_bad_config_exits_2_and_writes_no_release(tmp_path, reference_dir, override, needle):
    config = write_config(tmp_path, reference_dir, **override)
    result = run_cli("run", str(config), "--version", VERSION)
    assert result.returncode == 2
    assert str(config) in result.stderr and needle in result.stderr
    assert not (tmp_path / "releases").exists() and not (tmp_path / "runs").exists()


def test_bad_version_exits_2(tmp_path, reference_dir):
    result = run_cli("run", str(write_config(tmp_path, reference_dir)), "--version", "../escape")
    assert result.returncode == 2 and "version '../escape' is not allowed" in result.stderr


def test_help_explains_every_command():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("run", "validate-config", "plan", "generate", "features", "leakcheck", "export"):
        assert command in result.stdout
    shard_help = run_cli("generate", "--help").stdout
    assert "--shard" in shard_help and "--version" in shard_help
