"""The `plan` stage: resolve the run's shards and sample its prompts (plan.json, prompts.parquet)."""

from __future__ import annotations

import pyarrow.parquet as pq

from pipeline import __version__
from pipeline.generation.presets import TINY_MAX_SECONDS, check_vocabulary, known_vocabulary
from pipeline.errors import BadInput
from pipeline.prompts.sampler import PromptSpec, sample_prompts
from pipeline.workspace import RunContext, read_json, run_once, write_json_atomic, write_table_atomic


def shard_bounds(n_clips: int, n_shards: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) clip ranges, sizes differing by at most one."""
    base, extra = divmod(n_clips, n_shards)
    bounds, start = [], 0
    for shard in range(n_shards):
        stop = start + base + (1 if shard < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def validate_against_model(ctx: RunContext) -> None:
    cfg = ctx.config
    artists, genres = known_vocabulary(cfg.generation.preset, ctx.loaded.weights_dir)
    check_vocabulary("artists", sorted(cfg.prompts.artists), artists)
    check_vocabulary("genres", sorted(cfg.prompts.genres), genres)
    if cfg.generation.preset == "tiny" and cfg.prompts.duration_s > TINY_MAX_SECONDS:
        raise BadInput(
            f"{ctx.loaded.path}: prompts.duration_s: {cfg.prompts.duration_s} s is longer than the tiny preset's "
            f"context ({TINY_MAX_SECONDS} s); use a shorter duration or a real preset"
        )


def plan(ctx: RunContext) -> list[int]:
    """Write plan.json and prompts.parquet; return the shard numbers to fan out over."""
    cfg = ctx.config
    validate_against_model(ctx)
    inputs = {"config": cfg.fingerprint(), "version": ctx.version, "code": __version__}

    def body():
        spec = PromptSpec(
            dataset=cfg.dataset, version=ctx.version, genres=dict(cfg.prompts.genres),
            artists=dict(cfg.prompts.artists), lyrics=tuple(cfg.prompts.lyrics),
            duration_s=cfg.prompts.duration_s, temperature=cfg.prompts.temperature, splits=dict(cfg.prompts.splits),
        )
        prompts_path = ctx.root / "prompts.parquet"
        write_table_atomic(prompts_path, sample_prompts(spec, ctx.seed, cfg.n_clips))
        plan_path = ctx.root / "plan.json"
        write_json_atomic(plan_path, {
            "dataset": cfg.dataset, "version": ctx.version, "run_seed": ctx.seed, "n_clips": cfg.n_clips,
            "shards": [list(b) for b in shard_bounds(cfg.n_clips, cfg.n_shards)],
            "config_sha256": cfg.fingerprint(), "config": cfg.model_dump(),
        })
        return [prompts_path, plan_path]

    run_once(ctx, "plan", None, inputs, body)
    return list(range(len(read_json(ctx.root / "plan.json")["shards"])))


def shard_prompts(ctx: RunContext, shard: int):
    """The prompts of one shard, as an Arrow table."""
    bounds = read_json(ctx.root / "plan.json")["shards"]
    if not 0 <= shard < len(bounds):
        raise BadInput(f"--shard {shard}: this run has shards 0..{len(bounds) - 1}")
    start, stop = bounds[shard]
    return pq.read_table(ctx.root / "prompts.parquet").slice(start, stop - start)
