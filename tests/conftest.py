"""Shared fixtures: synthesised reference voices, throw-away configs, one end-to-end CLI release."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.testing import run_cli, write_config

os.environ.setdefault("SYNTHAUDIO_QUIET", "1")
VERSION = "2026-01-01"
# Fixtures that build a whole release: a test using one is marked `slow` (make test-fast leaves it out).
RELEASE_FIXTURES = {"cli_release", "private_release", "prepared_run", "corpus_runs"}
CORPUS_VERSIONS = {"continue": "2026-02-01", "rerender": "2026-02-02"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if RELEASE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


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
    root = tmp_path_factory.getbasetemp().parent / f"synthaudio-test-voices-{key}"
    if not (root / ".complete").is_file():
        building = root.with_name(f"{root.name}.building-{os.getpid()}")
        test_voices.synthesise(building)
        (building / ".complete").touch()
        try:
            building.rename(root)
        except OSError:  # another session finished first: use its copy
            import shutil

            shutil.rmtree(building, ignore_errors=True)
    return root


@pytest.fixture(scope="session")
def reference_dir(voices_root) -> Path:
    return voices_root / "reference"


@pytest.fixture(scope="session")
def reference_cache(tmp_path_factory) -> Path:
    """One embedding cache shared by test sessions: the reference voices and the synthesised impostor cohort
    are embedded (every variant and condition) once. Entries are keyed by file sha256, encoder version and
    variant list, so reuse is safe; it lives beside pytest's own temporary folders, outside the repository."""
    folder = tmp_path_factory.getbasetemp().parent / "synthaudio-reference-cache"
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
