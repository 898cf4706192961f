"""Seeded prompt sampling: one row per clip with the structured Jukebox conditioning and a caption.

Each clip's choices derive from (run seed, clip index) alone, so prompts are the same on every
machine and raising `n_clips` keeps the earlier prompts unchanged (prefix-stable). A clip's split
derives from its id alone, so it never changes when the dataset grows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.workspace import derive_seed

PROMPT_SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("clip_index", pa.int64(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("genre", pa.string(), nullable=False),
        pa.field("artist", pa.string(), nullable=False),
        pa.field("lyrics", pa.string(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("temperature", pa.float64(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
    ]
)


@dataclass(frozen=True)
class PromptSpec:
    """Plain typed inputs of the sampler (taken from the `prompts` section of a build config)."""

    dataset: str
    version: str
    genres: dict[str, float]
    artists: dict[str, float]
    lyrics: tuple[str, ...]
    duration_s: float
    temperature: float
    splits: dict[str, float]


def clip_id(dataset: str, version: str, index: int) -> str:
    """Stable, readable clip id: `<dataset>-<version>-<index:06d>`."""
    return f"{dataset}-{version}-{index:06d}"


def assign_split(clip: str, splits: dict[str, float]) -> str:
    """Split from the sha256 of the clip id: uniform in [0, 1), compared with cumulative fractions."""
    u = int.from_bytes(hashlib.sha256(clip.encode()).digest()[:8], "big") / 2**64
    cumulative = 0.0
    names = [name for name in ("train", "validation", "test") if splits.get(name, 0) > 0]
    for name in names:
        cumulative += splits[name]
        if u < cumulative:
            return name
    return names[-1]


def _choose(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = sorted(weights)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def caption_for(genre: str, artist: str, lyrics: str, duration_s: float) -> str:
    style = artist.replace("_", " ")
    vocal = "with sung lyrics" if lyrics else "instrumental"
    return f"a {genre.replace('_', ' ')} piece in the style of {style}, {vocal}, {duration_s:g} seconds"


def sample_prompts(spec: PromptSpec, run_seed: int, n_clips: int) -> pa.Table:
    """`n_clips` prompts; row i depends only on (run_seed, i) and the spec."""
    rows = {name: [] for name in PROMPT_SCHEMA.names}
    for index in range(n_clips):
        seed = derive_seed(run_seed, "prompt", index)
        rng = np.random.default_rng(seed)
        genre = _choose(rng, spec.genres)
        artist = _choose(rng, spec.artists)
        lyrics = spec.lyrics[int(rng.integers(len(spec.lyrics)))] if spec.lyrics else ""
        cid = clip_id(spec.dataset, spec.version, index)
        for name, value in (
            ("clip_id", cid), ("clip_index", index), ("split", assign_split(cid, spec.splits)),
            ("genre", genre), ("artist", artist), ("lyrics", lyrics), ("duration_s", spec.duration_s),
            ("temperature", spec.temperature), ("caption", caption_for(genre, artist, lyrics, spec.duration_s)),
            ("seed", seed),
        ):
            rows[name].append(value)
    return pa.Table.from_pydict(rows, schema=PROMPT_SCHEMA)
