"""The pipeline's stages, in order, written once: the runner, the CLI, the storage sync and the DAG loop
over `STAGES`.

Each stage names its function lazily (module and attribute), so importing this registry imports no
stage and no heavy library: the DAG file can read it at parse time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    function: str  # "module:attribute" of `f(ctx)` (run once) or `f(ctx, shard)` (sharded)
    sharded: bool
    help: str  # one line: what the stage does (CLI help, DAG task doc)
    reads: tuple[str, ...]  # files and folders ('/') it reads, relative to the run folder; {s}: the shard
    writes: tuple[str, ...]  # what it writes, same notation
    queue: str = "default"  # where the DAG sends its tasks (generation: a GPU queue)

    def load(self) -> Callable:
        module, attribute = self.function.split(":")
        return getattr(importlib.import_module(module), attribute)


STAGES: tuple[Stage, ...] = (
    Stage("plan", "pipeline.prompts.stage:plan", False,
          "sample prompts and plan shards (plan.json, prompts.parquet)",
          reads=("plan.json", "prompts.parquet", "sources.json", "_done/plan.json"),
          writes=("plan.json", "prompts.parquet", "sources.json", "_done/plan.json")),
    Stage("generate", "pipeline.generation.stage:generate", True,
          "generate one shard's audio with Jukebox (resumes at the first unfinished level)",
          reads=("plan.json", "prompts.parquet", "sources.json", "_done/plan.json", "generate/shard-{s}/",
                 "_done/generate-{s}.json"),
          writes=("generate/shard-{s}/", "_done/generate-{s}.json"), queue="generation"),
    Stage("features", "pipeline.features.stage:features", True,
          "extract one shard's audio features",
          reads=("plan.json", "_done/generate-{s}.json", "generate/shard-{s}/generation.parquet",
                 "generate/shard-{s}/audio/", "features/shard-{s}/", "_done/features-{s}.json"),
          writes=("features/shard-{s}/", "_done/features-{s}.json")),
    Stage("leakcheck", "pipeline.privacy.leakcheck:leakcheck", True,
          "leak-check one shard against the reference voices (unscorable counts as a leak)",
          reads=("plan.json", "prompts.parquet", "sources.json", "_done/generate-{s}.json",
                 "generate/shard-{s}/generation.parquet", "generate/shard-{s}/audio/", "leakcheck/shard-{s}/",
                 "_done/leakcheck-{s}.json"),
          writes=("leakcheck/shard-{s}/", "_done/leakcheck-{s}.json")),
    Stage("export", "pipeline.export.release:export", False,
          "publish the release from finished shards (one atomic rename)",
          reads=("plan.json", "prompts.parquet", "_done/", "generate/", "features/", "leakcheck/"),
          writes=()),
)
SHARDED: tuple[Stage, ...] = tuple(stage for stage in STAGES if stage.sharded)


def stage(name: str) -> Stage:
    """The stage called `name`; ValueError naming the known ones otherwise."""
    for candidate in STAGES:
        if candidate.name == name:
            return candidate
    raise ValueError(f"unknown stage {name!r}; stages: {', '.join(s.name for s in STAGES)}")
