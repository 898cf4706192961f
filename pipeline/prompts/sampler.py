"""Seeded, stratified prompt sampling: one row per clip with its Jukebox conditioning and a caption.

- **Deterministic and prefix-stable**: every random choice of clip i is a counter-based hash of
  (run seed, field, i), so prompts are the same on every machine and raising `n_clips` keeps the
  earlier prompts unchanged.
- **Stratified**: genres follow their weights exactly, not in expectation. The genre sequence is
  built by Balinski & Young's quota method: after any number n of clips, every genre's count is
  its exact share w*n rounded down or up (within quota), and no count ever decreases as n grows.
  (A strict largest-remainder apportionment for each n cannot be prefix-stable: it suffers the
  Alabama paradox.) The final count of every genre is a largest-remainder-style quota of n_clips.
- **Splits** derive from the clip id alone, so a clip keeps its split when the dataset grows.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from fractions import Fraction

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
        pa.field("vocals", pa.string(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("temperature", pa.float64(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
    ]
)
SPLIT_ORDER = ("train", "validation", "test")
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class PromptSpec:
    """Plain typed inputs of the sampler (from the `prompts` section, lyrics already screened)."""

    dataset: str
    version: str
    genres: dict[str, float]
    artists: dict[str, float]
    lyrics: tuple[str, ...]  # empty: instrumental
    durations: tuple[float, ...]
    temperatures: tuple[float, ...]
    splits: dict[str, float]
    caption_template: str = "a {genre} piece in the style of {artist}, {vocals}, {duration_s:g} seconds"


def clip_id(dataset: str, version: str, index: int) -> str:
    """Stable, readable clip id: `<dataset>-<version>-<index:06d>`."""
    return f"{dataset}-{version}-{index:06d}"


def assign_splits(dataset: str, version: str, indices: np.ndarray, splits: dict[str, float]) -> np.ndarray:
    """Split of each clip id (dataset, version, index): a hash of the id compared with cumulative fractions.

    Depends on nothing but the id and the fractions, so a clip keeps its split as the dataset grows.
    """
    names = [name for name in SPLIT_ORDER if splits.get(name, 0) > 0]
    cumulative = np.cumsum([splits[name] for name in names])
    u = _unit_floats(_hash_bits(derive_seed("split", dataset, version), indices))
    return np.array(names, dtype=object)[np.minimum(np.searchsorted(cumulative, u, side="right"), len(names) - 1)]


def assign_split(dataset: str, version: str, index: int, splits: dict[str, float]) -> str:
    """The split of one clip id."""
    return str(assign_splits(dataset, version, np.array([index]), splits)[0])


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _hash_bits(key: int, indices: np.ndarray) -> np.ndarray:
    """64 hashed bits per index: SplitMix64 of (key, index); each index's bits ignore every other index."""
    with np.errstate(over="ignore"):
        return _splitmix64(np.uint64(key) ^ (np.asarray(indices, dtype=np.uint64) * _GOLDEN))


def _unit_floats(bits: np.ndarray) -> np.ndarray:
    """The top 53 bits as floats in [0, 1)."""
    return (bits >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def uniforms(run_seed: int, stream: str, n: int) -> np.ndarray:
    """u[i] in [0, 1) for i < n: a hash of (run_seed, stream, i), so any prefix is the same for every n."""
    return _unit_floats(_hash_bits(derive_seed(run_seed, stream), np.arange(n)))


def seeds(run_seed: int, stream: str, n: int) -> np.ndarray:
    """63-bit per-clip seeds, prefix-stable like `uniforms`."""
    return (_hash_bits(derive_seed(run_seed, stream), np.arange(n)) >> np.uint64(1)).astype(np.int64)


def _weighted_pick(u: np.ndarray, weights: dict[str, float]) -> np.ndarray:
    names = sorted(weights)
    cumulative = np.cumsum([weights[n] for n in names], dtype=np.float64)
    return np.minimum(np.searchsorted(cumulative / cumulative[-1], u, side="right"), len(names) - 1)


def quota_sequence(weights: dict[str, float], n: int, tie_break_seed: int = 0) -> list[str]:
    """The genre of each of n clips, by the quota method (within quota and house-monotone for every prefix).

    At step h (giving the h-th clip) the eligible genres are those still below their upper quota
    (count < w * h / W); among them the one with the largest w / (count + 1) wins; ties go by a
    seeded order. Weights are made exact rationals, so the quotas are exact.
    """
    names = sorted(weights)
    order = np.random.default_rng(tie_break_seed).permutation(len(names))  # tie-break rank per genre
    exact = [Fraction(weights[name]).limit_denominator(10**6) for name in names]
    scale = math.lcm(*(f.denominator for f in exact))  # Python ints: no overflow
    w = [int(f * scale) for f in exact]  # integer weights
    total = sum(w)
    counts = [0] * len(names)
    # heap of (-priority, rank, genre); priority w/(count+1). Division is correctly rounded, so equal
    # ratios give equal floats and ties fall to the seeded rank.
    heap = [(-float(w[g]), int(order[g]), g) for g in range(len(names))]
    heapq.heapify(heap)
    out = []
    for h in range(1, n + 1):
        skipped = []
        while True:
            entry = heapq.heappop(heap)
            g = entry[2]
            if counts[g] * total < w[g] * h:  # below upper quota at h
                break
            skipped.append(entry)
        counts[g] += 1
        out.append(names[g])
        heapq.heappush(heap, (-(w[g] / (counts[g] + 1)), int(order[g]), g))
        for entry in skipped:
            heapq.heappush(heap, entry)
    return out


def _pick(run_seed: int, stream: str, n: int, choices: int) -> np.ndarray:
    """Uniform choice index in [0, choices) per clip, prefix-stable."""
    return np.minimum((uniforms(run_seed, stream, n) * choices).astype(np.int64), choices - 1)


def sample_prompts(spec: PromptSpec, run_seed: int, n_clips: int) -> pa.Table:
    """`n_clips` prompts; row i depends only on (run_seed, i) and the spec.

    Every field is drawn as an index into its list of values; captions are formatted once per
    distinct combination of indices (there are few) and shared between rows, which keeps a
    million prompts to seconds and well under a gigabyte.
    """
    index = np.arange(n_clips, dtype=np.int64)
    genres, artists = sorted(spec.genres), sorted(spec.artists)
    position = {name: i for i, name in enumerate(genres)}
    genre_idx = np.array([position[g] for g in quota_sequence(spec.genres, n_clips, derive_seed(run_seed, "genre-ties"))],
                         dtype=np.int64)
    artist_idx = _weighted_pick(uniforms(run_seed, "artist", n_clips), spec.artists)
    lyrics_values = list(spec.lyrics) or [""]
    lyric_idx = _pick(run_seed, "lyrics", n_clips, len(lyrics_values))
    duration_idx = _pick(run_seed, "duration", n_clips, len(spec.durations))
    temperature_idx = _pick(run_seed, "temperature", n_clips, len(spec.temperatures))

    # (genre, artist, lyric, duration, temperature) -> one combination code per row
    sizes = [len(genres), len(artists), len(lyrics_values), len(spec.durations), len(spec.temperatures)]
    codes = np.ravel_multi_index((genre_idx, artist_idx, lyric_idx, duration_idx, temperature_idx), sizes)
    unique_codes, row_combination = np.unique(codes, return_inverse=True)
    captions = []
    for g, a, l, d, t in zip(*np.unravel_index(unique_codes, sizes)):
        lyric = lyrics_values[l]
        captions.append(spec.caption_template.format(
            genre=genres[g].replace("_", " "), artist=artists[a].replace("_", " "),
            vocals="with sung lyrics" if lyric else "instrumental", duration_s=spec.durations[d],
            temperature=spec.temperatures[t], lyrics=lyric))

    def strings(values: list[str], idx: np.ndarray) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array(idx, pa.int32()), pa.array(values, pa.string())).cast(pa.string())

    vocals = ["with sung lyrics" if lyric else "instrumental" for lyric in lyrics_values]
    columns = {
        "clip_id": pa.array(f"{spec.dataset}-{spec.version}-{i:06d}" for i in range(n_clips)),
        "clip_index": index,
        "split": pa.array(assign_splits(spec.dataset, spec.version, index, spec.splits), pa.string()),
        "genre": strings(genres, genre_idx), "artist": strings(artists, artist_idx),
        "lyrics": strings(lyrics_values, lyric_idx), "vocals": strings(vocals, lyric_idx),
        "duration_s": np.asarray(spec.durations, dtype=np.float64)[duration_idx],
        "temperature": np.asarray(spec.temperatures, dtype=np.float64)[temperature_idx],
        "caption": strings(captions, row_combination.reshape(-1)),
        "seed": seeds(run_seed, "clip-seed", n_clips),
    }
    return pa.Table.from_pydict(columns, schema=PROMPT_SCHEMA)
