"""Shared fixtures: synthesised reference voices, throw-away configs, one end-to-end CLI release."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.files import exclusive
from pipeline.testing import run_cli, write_config

os.environ.setdefault("SYNTHAUDIO_QUIET", "1")
VERSION = "2026-01-01"
# Fixtures that build a whole release: a test using one is marked `slow` (make test-fast leaves it out).
RELEASE_FIXTURES = {"cli_release", "two_shard_release", "private_release", "prepared_run", "corpus_runs"}
# A build small enough to repeat (6 clips of 1 s in two shards): the tests that rebuild a release another way (the
# DAG, tasks on separate disks, a killed run resumed) compare their result with this one, byte for byte.
TWO_SHARD_BUILD = {"n_clips": 6, "n_shards": 2, "prompts.duration_s": 1.0}
CORPUS_VERSIONS = {"continue": "2026-02-01", "rerender": "2026-02-02"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if RELEASE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def machine_cache(tmp_path_factory) -> Path:
    """pytest's per-user temporary root (`/tmp/pytest-of-USER`), the same for every session and xdist worker:
    where the test voices and the embedding cache are kept between sessions."""
    folder = tmp_path_factory.getbasetemp()
    while not folder.name.startswith("pytest-of-") and folder.parent != folder:
        folder = folder.parent
    return folder if folder.name.startswith("pytest-of-") else tmp_path_factory.getbasetemp().parent


@pytest.fixture(scope="module", autouse=True)
def _process_state_is_left_as_found():
    """Torch's thread count is process-wide: a module (its tests and fixtures) that changes it must restore it,
    or later tests run under settings they did not choose."""
    import torch

    before = torch.get_num_threads()
    yield
    assert torch.get_num_threads() == before, f"this module left torch's thread count at {torch.get_num_threads()}"


@pytest.fixture(scope="session")
def voices_root(tmp_path_factory) -> Path:
    """Reference and non-reference voices synthesised with flite/festival, shared by test sessions beside
    pytest's temporary folders (like the embedding cache): keyed by the voice script and the installed
    synthesiser versions, built into a temporary name and renamed when complete. Tests only read it."""
    import hashlib
    import os
    import subprocess

    from pipeline.privacy import test_voices

    versions = subprocess.run(["dpkg-query", "-W", "flite", "festival", "espeak-ng", "sox"],
                              capture_output=True, text=True).stdout
    key = hashlib.sha256(Path(test_voices.__file__).read_bytes() + versions.encode()).hexdigest()[:16]
    root = machine_cache(tmp_path_factory) / f"synthaudio-test-voices-{key}"
    with exclusive(root.with_name(f"{root.name}.lock")):  # one session (or xdist worker) builds, the others wait
        if not (root / ".complete").is_file():
            building = root.with_name(f"{root.name}.building-{os.getpid()}")
            test_voices.synthesise(building)
            (building / ".complete").touch()
            building.rename(root)
    return root


@pytest.fixture(scope="session")
def reference_dir(voices_root) -> Path:
    return voices_root / "reference"


@pytest.fixture(scope="session")
def reference_cache(tmp_path_factory) -> Path:
    """One embedding cache shared by test sessions: the reference voices and the synthesised impostor cohort
    are embedded (every variant and condition) once. Entries are keyed by file sha256, encoder version and
    variant list, so reuse is safe; it lives beside pytest's own temporary folders, outside the repository."""
    folder = machine_cache(tmp_path_factory) / "synthaudio-reference-cache"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def small_config(tmp_path, reference_dir, reference_cache):
    """A fast config: 2 clips of 0.5 s in 1 shard (override anything with keyword arguments)."""

    def make(**overrides) -> Path:
        values = {"n_clips": 2, "n_shards": 1, "prompts.duration_s": 0.5,
                  "storage.reference_cache": str(reference_cache), **overrides}
        return write_config(tmp_path, reference_dir, **values)

    return make


@pytest.fixture(scope="session")
def cli_release(tmp_path_factory, reference_dir, reference_cache) -> Path:
    """configs/default.yaml (storage moved to a temp folder) built once with `python -m pipeline run`."""
    folder = tmp_path_factory.mktemp("cli_run")
    config = write_config(folder, reference_dir, **{"storage.reference_cache": str(reference_cache)})
    result = run_cli("run", str(config), "--version", VERSION, "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    release = Path(result.stdout.strip().splitlines()[-1])
    assert release == folder / "releases" / "default" / VERSION
    return release


@pytest.fixture(scope="session")
def two_shard_release(tmp_path_factory, reference_dir, reference_cache) -> Path:
    """TWO_SHARD_BUILD (configs/default.yaml otherwise) built once with `python -m pipeline run`."""
    folder = tmp_path_factory.mktemp("two_shard_run")
    config = write_config(folder, reference_dir, **{**TWO_SHARD_BUILD, "storage.reference_cache": str(reference_cache)})
    result = run_cli("run", str(config), "--version", VERSION, "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(result.stdout.strip().splitlines()[-1])


def corpus_build_overrides(reference_cache: Path) -> dict:
    """A small corpus build: 4 clips of 1 s in one shard, a model trained for a few steps."""
    return {"n_clips": 4, "n_shards": 1, "prompts.duration_s": 1.0, "storage.reference_cache": str(reference_cache),
            "training.vqvae_steps": 10, "training.prior_steps": [6, 4, 2], "training.checkpoint_every": 5,
            "training.batch_size": 2}


CORPUS_MODES = {"continue": {"generation.prime_seconds": 0.5}, "rerender": {"generation.resample_top_fraction": 0.25}}


@pytest.fixture(scope="session")
def corpus_runs(tmp_path_factory, reference_dir, reference_cache):
    """A model trained on the test voices (a few steps), and one release per corpus-derived mode (4 clips of 1 s),
    built with `python -m pipeline`: (model as `train` printed it, {mode: release folder}, storage folder)."""
    folder = tmp_path_factory.mktemp("corpus_loop")
    base = corpus_build_overrides(reference_cache)
    trained = run_cli("train", str(write_config(folder, reference_dir, corpus=True, name="train.yaml", **base)),
                      "--quiet")
    assert trained.returncode == 0, trained.stderr[-3000:]
    releases = {}
    for mode, extra in CORPUS_MODES.items():
        config = write_config(folder, reference_dir, corpus=True, name=f"{mode}.yaml",
                              **{**base, "generation.mode": mode, **extra})
        result = run_cli("run", str(config), "--version", CORPUS_VERSIONS[mode], "--quiet")
        assert result.returncode == 0, result.stderr[-3000:]
        releases[mode] = Path(result.stdout.strip().splitlines()[-1])
    return json.loads(trained.stdout.strip().splitlines()[-1]), releases, folder
