"""The `generate` stage: sample a shard's clips with Jukebox and write one FLAC per clip.

Prompts are grouped into batches of equal duration (at most `max_batch_size`; `auto` sizes it from the
GPU's free memory). The tokens of each level are saved as soon as the level finishes, so a retried task
resumes at the first unfinished level instead of resampling what it had. Every random draw derives from
the run seed: with the fast sampler (default) each clip has its own stream, derived from its clip id, so a
clip's tokens are the same whatever batch it is sampled in and however often it is retried; the reference
sampler (transformers') draws one stream per batch, from the batch's first clip.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import soundfile as sf

from pipeline.config import MAX_TEMPERATURE
from pipeline.errors import BadInput, PipelineFailure
from pipeline.generation.presets import HOP_LENGTHS, SAMPLE_RATE_HZ, load_preset
from pipeline.generation.sampler import auto_batch_size, decode, encode_labels, sample_level, total_samples
from pipeline.progress import progress
from pipeline.prompts.stage import shard_prompts
from pipeline.parallel import torch_threads
from pipeline.storage import push_files, synced_stage
from pipeline.workspace import (
    RunContext, atomic_path, derive_seed, fingerprint, read_json, run_once, write_bytes_atomic, write_table_atomic,
)

TOP_HOP = HOP_LENGTHS[0]
GENERATION_SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("audio_file", pa.string(), nullable=False),  # relative to the shard folder
        pa.field("model_preset", pa.string(), nullable=False),
        pa.field("model_weights_sha256", pa.string(), nullable=False),
        pa.field("levels_sampled", pa.int64(), nullable=False),
        pa.field("temperature", pa.float64(), nullable=False),
        pa.field("level_temperatures", pa.list_(pa.float64()), nullable=False),
        pa.field("top_k", pa.int64(), nullable=False),
        pa.field("top_p", pa.float64(), nullable=False),
        pa.field("sampling_seed", pa.int64(), nullable=False),
        pa.field("sample_rate_hz", pa.int64(), nullable=False),
        pa.field("num_samples", pa.int64(), nullable=False),
        pa.field("batch_size", pa.int64(), nullable=False),
        pa.field("tokens_per_s", pa.list_(pa.float64()), nullable=False),  # per level sampled, this batch
        pa.field("generation_wall_s", pa.float64(), nullable=False),  # this batch, all levels + decode
        pa.field("generation_mode", pa.string(), nullable=False),  # prompt, continue or rerender
    ]
)


def flac_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """16-bit FLAC of a mono float signal in [-1, 1] (clipped)."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def batches(prompts: pa.Table, max_batch_size: int) -> list[list[int]]:
    """Row indices grouped by (duration, temperature) in row order, cut into batches of at most max_batch_size."""
    groups: dict[tuple[float, float], list[int]] = {}
    keys = zip(prompts.column("duration_s").to_pylist(), prompts.column("temperature").to_pylist())
    for row, key in enumerate(keys):
        groups.setdefault(key, []).append(row)
    return [rows[i:i + max_batch_size] for rows in groups.values() for i in range(0, len(rows), max_batch_size)]


def _device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


@synced_stage("generate")
def generate(ctx: RunContext, shard: int) -> None:
    """Generate the clips of `shard` (skipped if it already ran on the same inputs)."""
    gen = ctx.config.generation
    inputs = {
        "plan": ctx.output_fingerprint("plan", None), "shard": shard,
        "generation": gen.model_dump(), "weights_dir": str(ctx.loaded.weights_dir),
    }
    out_dir = ctx.shard_dir("generate", shard)

    def body() -> list[Path]:
        # One torch thread, scoped to this call: the tiny model samples ~10x slower on 2 threads (per-step
        # overhead), and shards run in parallel tasks anyway.
        with torch_threads(1):
            return _generate_shard(ctx, shard, inputs, out_dir)

    run_once(ctx, "generate", shard, inputs, body)


def _generate_shard(ctx: RunContext, shard: int, inputs: dict, out_dir: Path) -> list[Path]:
    """Every batch of the shard's prompts, then the generation table; returns the files written."""
    prompts = shard_prompts(ctx, shard)
    generator = _load_model(ctx)
    sampling = SamplingParams.from_config(ctx.config.generation, ctx.seed)
    token_dir = out_dir / "tokens" / fingerprint(inputs)[:16]
    rows: list[dict] = []
    groups = batches(prompts, resolve_batch_size(ctx.config.generation.max_batch_size, generator))
    sources = corpus_sources(ctx, prompts)
    for group in progress(groups, desc=f"generate shard {shard}", quiet=ctx.quiet, unit="batch"):
        # on a shared store, a retry on another worker resumes after the last finished level
        rows += generate_with_oom_policy(generator, prompts.take(group), sampling, token_dir, out_dir,
                                         lambda path: push_files(ctx, [path]), sources)
    table_path = out_dir / "generation.parquet"
    write_table_atomic(table_path, pa.Table.from_pylist(rows, schema=GENERATION_SCHEMA))
    return [out_dir / row["audio_file"] for row in rows] + [table_path]


def corpus_sources(ctx: RunContext, prompts: pa.Table) -> dict | None:
    """continue / rerender: each prompt's source audio from the private corpus (None in prompt mode)."""
    if ctx.config.generation.mode == "prompt":
        return None
    from pipeline.generation.sources import source_audio

    return source_audio(ctx, prompts.column("clip_id").to_pylist())


def resolve_batch_size(max_batch_size: int | str, generator: "Generator") -> int:
    """The configured batch size, or for `auto` what the device's free memory holds."""
    if max_batch_size == "auto":
        return auto_batch_size(generator.model, generator.device)
    return int(max_batch_size)


def load_pinned_model(ctx: RunContext, pinned: dict):
    """The trained model the run's plan pinned (`plan.json`'s "model"), on the CPU, checked against the weights
    hash the plan recorded; BadInput when its folder is gone or changed."""
    from pipeline.generation.presets import load_from_folder
    from pipeline.training.stage import model_folder

    folder = model_folder(ctx.loaded.models_root, ctx.config.dataset, pinned["version"])
    if not folder.is_dir():
        raise BadInput(f"generation.model: this run's plan pinned model {pinned['version']}, and {folder} is gone; "
                       "a run reproduces its plan's model, so restore it or build a new version")
    loaded = load_from_folder(ctx.config.generation.preset, folder)
    if loaded.weights_sha256 != pinned["weights_sha256"]:
        raise BadInput(f"generation.model: {folder} changed since the plan pinned it (weights sha256 "
                       f"{loaded.weights_sha256[:12]}, plan {pinned['weights_sha256'][:12]}); models are immutable")
    return loaded


def _load_model(ctx: RunContext) -> Generator:
    """The config's preset loaded, on its device and dtype."""
    import torch

    gen = ctx.config.generation
    pinned = read_json(ctx.root / "plan.json").get("model")
    loaded = load_preset(gen.preset, ctx.loaded.weights_dir) if pinned is None else load_pinned_model(ctx, pinned)
    device = _device(gen.device)
    model = loaded.model.to(device)
    if device == "cuda" and gen.dtype != "float32":
        model = model.to(getattr(torch, gen.dtype))
    return Generator(loaded, model, device)


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _attempt(attempt: int) -> tuple:
    return ("attempt", attempt) if attempt else ()  # attempt 0 keeps the seeds of the first generation


@dataclass(frozen=True)
class SamplingParams:
    """How a batch is sampled, built once from the config (and the run's seed): batch functions take this,
    never the run context."""

    levels: int
    upsampler_temperatures: tuple[float, ...] | None
    top_k: int
    top_p: float
    on_oom: str
    run_seed: int
    attempt: int = 0  # 0: the first sample of a prompt; n: its n-th regeneration (new seeds)
    sampler: str = "fast"  # "fast" (a stream per clip) or "reference" (transformers', a stream per batch)
    kernels: str = "auto"  # the fast sampler's GPU step: "auto", "triton" or "torch" (generation.kernels)
    mode: str = "prompt"  # "prompt", "continue" or "rerender" (generation.mode)
    prime_seconds: float = 1.0  # continue: the configured prime
    resample_top_fraction: float = 0.0  # rerender: the configured share of top-level codes resampled
    temperature_step: float = 0.0  # every level's temperature is raised this much at each regeneration

    @classmethod
    def from_config(cls, generation, run_seed: int, attempt: int = 0, temperature_step: float = 0.0) -> "SamplingParams":
        temperatures = generation.upsampler_temperatures
        return cls(generation.levels, tuple(temperatures) if temperatures else None, generation.top_k,
                   generation.top_p, generation.on_oom, run_seed, attempt, generation.sampler, generation.kernels,
                   generation.mode, generation.prime_seconds, generation.resample_top_fraction, temperature_step)

    def temperatures(self, prompt_temperature: float) -> list[float]:
        """Every level's temperature (`level_temperatures`), raised by temperature_step at each regeneration (a
        hotter sample strays further from what the model learned), up to the config's MAX_TEMPERATURE."""
        raise_by = self.temperature_step * self.attempt
        return [min(t + raise_by, MAX_TEMPERATURE)
                for t in level_temperatures(prompt_temperature, self.upsampler_temperatures)]

    def prime_samples(self) -> int:
        """continue: samples of the source used as the prime, whole top-level tokens; halved at each regeneration
        (a shorter prime keeps less of the source), at least one token."""
        seconds = self.prime_seconds * 0.5 ** self.attempt
        return max(1, round(seconds * SAMPLE_RATE_HZ / TOP_HOP)) * TOP_HOP

    def top_resampled(self) -> float:
        """rerender: share of the source's top-level codes sampled anew; a quarter more at each regeneration."""
        return min(1.0, self.resample_top_fraction + 0.25 * self.attempt)

    def clip_seed(self, clip_ids: list[str], i: int, level: int) -> int:
        """The seed clip `i` of a batch is sampled with: its own (fast) or the batch's first clip's (reference)."""
        return self.seed(clip_ids[i] if self.sampler == "fast" else clip_ids[0], level)

    def seed(self, clip_id: str, level: int) -> int:
        return derive_seed(self.run_seed, "sample", clip_id, level, *_attempt(self.attempt))


@dataclass(frozen=True)
class Generator:
    """A loaded preset, its model on the device it samples on."""

    loaded: object  # presets.LoadedModel
    model: object  # JukeboxModel on `device`
    device: str


def generate_with_oom_policy(generator: Generator, batch: pa.Table, sampling: SamplingParams, token_dir: Path,
                             out_dir: Path, on_level_done: Callable[[Path], None] = lambda path: None,
                             sources: dict | None = None) -> list[dict]:
    """`generate_batch`; out of memory, halve the batch (on_oom: halve) or fail naming the batch size to try."""
    try:
        return generate_batch(generator, batch, sampling, token_dir, out_dir, on_level_done, sources)
    except (RuntimeError, MemoryError) as exc:
        if not _is_out_of_memory(exc):
            raise
        if generator.device == "cuda":
            import torch

            torch.cuda.empty_cache()
        size = batch.num_rows
        if sampling.on_oom == "halve" and size > 1:
            half = size // 2
            return (generate_with_oom_policy(generator, batch.slice(0, half), sampling, token_dir, out_dir,
                                             on_level_done, sources)
                    + generate_with_oom_policy(generator, batch.slice(half), sampling, token_dir, out_dir,
                                               on_level_done, sources))
        raise PipelineFailure(
            f"out of memory generating a batch of {size} clip(s) on {generator.device}: set "
            f"generation.max_batch_size to {max(1, size // 2)} (or generation.on_oom: halve to do that automatically)"
        ) from None


def level_temperatures(prompt_temperature: float, upsampler_temperatures) -> list[float]:
    """Temperature of each prior level: the prompt's for the top, the configured ones for the upsamplers."""
    return [prompt_temperature, *(upsampler_temperatures or [prompt_temperature] * 2)]


def regenerate(ctx: RunContext, prompts: pa.Table, attempt: int, out_dir: Path) -> pa.Table:
    """Generate `prompts` again, one clip per batch, with seeds drawn for `attempt` (>= 1) and every level
    `privacy.regenerate_temperature_step` x attempt hotter (`SamplingParams.temperatures`): a new sample of the
    same prompt, further from what the model learned. Writes `out_dir/audio/<clip_id>.flac`; returns their
    GENERATION_SCHEMA rows."""
    sampling = SamplingParams.from_config(ctx.config.generation, ctx.seed, attempt,
                                          ctx.config.privacy.regenerate_temperature_step)
    sources = corpus_sources(ctx, prompts)
    rows: list[dict] = []
    with torch_threads(1):
        generator = _load_model(ctx)
        for i in range(prompts.num_rows):
            rows += generate_with_oom_policy(generator, prompts.slice(i, 1), sampling, out_dir / "tokens", out_dir,
                                             lambda path: push_files(ctx, [path]), sources)
    return pa.Table.from_pylist(rows, schema=GENERATION_SCHEMA)


def start_codes(model, sampling: SamplingParams, clip_ids: list[str], sources: dict, length: int, device: str):
    """(codes, cut, total length) of a corpus-derived batch: the VQ-VAE codes [top, middle, bottom] that sampling
    starts from, the samples to cut from the front of the decoded audio, and the length sampled.

    continue: the first `prime_samples` of each source (zero-padded if shorter) are the prime; the clip is
    sampled after it and the prime is cut. rerender: the source cut or padded to the clip's length."""
    import torch

    from pipeline.generation.sampler import encode_prime

    span = sampling.prime_samples() if sampling.mode == "continue" else length
    audio = np.zeros((len(clip_ids), span), np.float32)
    for i, cid in enumerate(clip_ids):
        piece = sources[cid][:span]
        audio[i, : len(piece)] = piece
    codes = encode_prime(model, torch.from_numpy(audio).to(device))
    if sampling.mode == "continue":
        return codes, span, span + length
    return codes, 0, length


def level_prime(sampling: SamplingParams, codes: list | None, level: int):
    """The tokens a level keeps from the source before sampling (None: sampled entirely)."""
    if codes is None:
        return None
    if sampling.mode == "continue":
        return codes[level]
    if level > 0:  # rerender: the middle and bottom levels are always sampled anew
        return None
    top = codes[0]
    keep = top.shape[1] - round(sampling.top_resampled() * top.shape[1])
    return top[:, :keep] if keep > 0 else None


def generate_batch(generator: Generator, batch: pa.Table, sampling: SamplingParams, token_dir: Path, out_dir: Path,
                   on_level_done: Callable[[Path], None] = lambda path: None,
                   sources: dict[str, np.ndarray] | None = None) -> list[dict]:
    """Sample one batch of prompts (equal duration and temperature) through every level, decode it, write
    `out_dir/audio/<clip_id>.flac`; returns one GENERATION_SCHEMA row per clip. Each level's tokens are
    saved under `token_dir` when the level finishes (and handed to `on_level_done`), so a retry resumes there.

    `continue` and `rerender` (sampling.mode) start from `sources` (clip_id -> corpus audio): see `start_codes`."""
    import torch

    loaded, model, device = generator.loaded, generator.model, generator.device
    clip_ids = batch.column("clip_id").to_pylist()
    n = len(clip_ids)
    length = total_samples(batch.column("duration_s")[0].as_py())
    temperature = batch.column("temperature")[0].as_py()
    temperatures = sampling.temperatures(temperature)
    labels_per_clip = [
        encode_labels(loaded.tokenizer, a, g, l)
        for a, g, l in zip(batch.column("artist").to_pylist(), batch.column("genre").to_pylist(),
                           batch.column("lyrics").to_pylist())
    ]
    started = time.perf_counter()
    codes, cut, sampled_length = None, 0, length
    if sampling.mode != "prompt":
        codes, cut, sampled_length = start_codes(model, sampling, clip_ids, sources, length, device)
    tokens, rates = [], []
    for level in range(sampling.levels):
        path = token_dir / f"{clip_ids[0]}-x{n}-level{level}.npy"
        if path.is_file():  # resume: this level finished in an earlier attempt
            tokens.append(torch.from_numpy(np.load(path)).to(device))
            rates.append(float("nan"))
            continue
        labels = [per_clip[level].to(device) for per_clip in labels_per_clip]  # per clip: (1, labels)
        torch.manual_seed(sampling.seed(clip_ids[0], level))  # the reference sampler's stream (one per batch)
        t0 = time.perf_counter()
        with torch.no_grad():
            level_tokens = sample_level(
                model, level, tokens[-1] if tokens else None, labels, n, sampled_length,
                temperature=temperatures[level], top_k=sampling.top_k, top_p=sampling.top_p,
                sampler=sampling.sampler, kernels=sampling.kernels,
                seeds=[sampling.seed(cid, level) for cid in clip_ids],
                prime=level_prime(sampling, codes, level),
            )  # (batch, sampled_length // hop)
        rates.append(level_tokens.numel() / (time.perf_counter() - t0))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, level_tokens.cpu().numpy())
        on_level_done(path)
        tokens.append(level_tokens)
    audio = decode(model, tokens)[:, cut: cut + length]  # (batch, samples) @ 44.1 kHz; a prime is cut here
    wall = time.perf_counter() - started
    rows = []
    for i, cid in enumerate(clip_ids):
        write_bytes_atomic(out_dir / "audio" / f"{cid}.flac", flac_bytes(audio[i], SAMPLE_RATE_HZ))
        rows.append({
            "clip_id": cid, "audio_file": f"audio/{cid}.flac", "model_preset": loaded.preset,
            "model_weights_sha256": loaded.weights_sha256, "levels_sampled": sampling.levels,
            "temperature": temperature, "level_temperatures": temperatures[:sampling.levels],
            "top_k": sampling.top_k, "top_p": sampling.top_p, "sampling_seed": sampling.clip_seed(clip_ids, i, 0),
            "sample_rate_hz": SAMPLE_RATE_HZ, "num_samples": int(audio.shape[1]), "batch_size": n,
            "tokens_per_s": rates, "generation_wall_s": wall, "generation_mode": sampling.mode,
        })
    return rows
