"""Test helpers shipped with the package: seeded signals and throw-away build configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"


def sine(freq_hz: float, seconds: float, rate: int = 44_100, dbfs: float = -6.0) -> np.ndarray:
    """A sine of peak `dbfs`: (samples,) float32."""
    t = np.arange(int(seconds * rate)) / rate
    return (10 ** (dbfs / 20) * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def white_noise(seconds: float, rate: int = 44_100, seed: int = 0, dbfs: float = -12.0) -> np.ndarray:
    """Gaussian white noise of RMS `dbfs`: (samples,) float32."""
    rng = np.random.default_rng(seed)
    return (10 ** (dbfs / 20) * rng.standard_normal(int(seconds * rate))).astype(np.float32)


def click_track(bpm: float, seconds: float, rate: int = 44_100) -> np.ndarray:
    """Decaying 2 kHz clicks (20 ms) on every beat at `bpm`: (samples,) float32."""
    audio = np.zeros(int(seconds * rate), dtype=np.float32)
    n = int(0.02 * rate)
    click = (0.8 * np.exp(-np.arange(n) / (0.003 * rate)) * np.sin(2 * np.pi * 2000 * np.arange(n) / rate))
    for start in (np.arange(0.0, seconds, 60.0 / bpm) * rate).astype(int):
        audio[start:start + n] = click[: audio.size - start]
    return audio


def write_config(folder: Path, reference_dir: Path, *, base: Path = DEFAULT_CONFIG, name: str = "build.yaml",
                 **overrides) -> Path:
    """A copy of `base` whose storage lives in `folder`, with top-level or `section.key` overrides.

    write_config(tmp, voices, n_clips=2, **{"prompts.duration_s": 0.5})
    """
    data = yaml.safe_load(base.read_text())
    data["storage"] = {"workspace": str(folder / "runs"), "releases": str(folder / "releases")}
    data["privacy"]["reference_dir"] = str(reference_dir)
    lyrics = data.get("prompts", {}).get("lyrics", {})
    if isinstance(lyrics, dict) and lyrics.get("file"):
        lyrics["file"] = str((base.parent / lyrics["file"]).resolve())
    for key, value in overrides.items():
        target = data
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_cli(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """`python -m pipeline ARGS` in a subprocess, from the repository root; output captured as text."""
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
