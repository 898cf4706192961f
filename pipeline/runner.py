"""Run contexts and whole-run orchestration for the CLI (the DAG fans the same stages out itself)."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

from pipeline.config import load_config
from pipeline.stages import SHARDED
from pipeline.workspace import RunContext, validate_version

def make_context(config_path: str | Path, version: str | None = None, *, n_clips: int | None = None,
                 quiet: bool = False) -> RunContext:
    """Validated context of one run; version defaults to today's date (UTC)."""
    loaded = load_config(config_path, n_clips=n_clips)
    return RunContext(loaded, validate_version(version or date.today().isoformat()), quiet=quiet)


def run_shard_stage(stage: str, config_path: str, version: str, n_clips: int | None, shard: int, quiet: bool) -> None:
    """One shard of one stage, in this process (also the entry point of worker processes)."""
    from pipeline.stages import stage as registered

    step = registered(stage)
    if not step.sharded:
        raise ValueError(f"{stage!r} is not a sharded stage")
    step.load()(make_context(config_path, version, n_clips=n_clips, quiet=quiet), shard)


def run_all(ctx: RunContext, n_clips: int | None = None, workers: int | None = None, log=print) -> Path:
    """Every stage of `pipeline.stages.STAGES` in order (sharded ones per shard); returns the release folder.

    Shards of a stage run in parallel worker processes (one per core by default), each with its share of
    the cores for its own pools (`parallel.share_cpus`); every stage is skipped where it already ran on the
    same inputs, so a rerun after a crash resumes.
    """
    from pipeline.parallel import share_cpus
    from pipeline.export.release import export
    from pipeline.prompts.stage import plan

    shards = plan(ctx)
    log(f"planned {ctx.config.n_clips} clips in {len(shards)} shard(s); workspace {ctx.root}")
    workers = workers or min(len(shards), os.cpu_count() or 1)
    for stage in (step.name for step in SHARDED):
        log(f"{stage}: {len(shards)} shard(s)")
        args = [(stage, str(ctx.loaded.path), ctx.version, n_clips, s, ctx.quiet) for s in shards]
        if workers > 1 and len(shards) > 1:
            import multiprocessing

            share = max(1, (os.cpu_count() or 1) // workers)
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=share_cpus, initargs=(share,)) as pool:
                for future in [pool.submit(run_shard_stage, *a) for a in args]:
                    future.result()
        else:
            for a in args:
                run_shard_stage(*a)
    release = export(ctx, log=log)
    log(f"release: {release}")
    return release
