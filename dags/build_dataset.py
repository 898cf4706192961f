"""One Airflow DAG per build config in `configs/*.yaml`: `synthaudio__<dataset>`.

plan -> generate[shard] -> features[shard] -> leakcheck[shard] -> export. Task bodies are a few
lines that call `pipeline`; heavy libraries are imported inside the tasks, and parsing this file
only reads the YAML files (no database, connection or model access).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import yaml
from airflow.sdk import Asset, Param, dag, task

CONFIG_DIR = Path(os.environ.get("SYNTHAUDIO_CONFIG_DIR", Path(__file__).resolve().parents[1] / "configs"))
GENERATION_POOL = os.environ.get("SYNTHAUDIO_GENERATION_POOL", "default_pool")
GENERATION_QUEUE = os.environ.get("SYNTHAUDIO_GENERATION_QUEUE", "default")
RETRIES = dict(retries=2, retry_delay=timedelta(seconds=10), retry_exponential_backoff=True,
               max_retry_delay=timedelta(minutes=10))

DOC = """
### Synthaudio build: `{dataset}`

Builds a versioned, immutable release of synthetic audio from `{config}`:
sample prompts, generate audio with Jukebox per shard, extract features, leak-check every clip
against the private reference voices (fail closed), then publish Parquet + FLAC.

**Version**: the `version` param, else the run's logical date, else (manual trigger) the date of
`run_after`, as `YYYY-MM-DD`. A rerun of a version resumes; a published version is never rewritten.
**Params**: `version` (optional string), `n_clips` (optional positive integer overriding the config).
"""


def resolve_version(params: dict, context: dict) -> str:
    """The run's version: explicit param, else logical date, else run_after (manual triggers have no logical date)."""
    if params.get("version"):
        return str(params["version"])
    when = context.get("logical_date") or context["dag_run"].run_after
    return when.date().isoformat()


def build_dag(config_path: Path, dataset: str, schedule: str | None):
    config = str(config_path)

    @dag(
        dag_id=f"synthaudio__{dataset}",
        schedule=schedule,
        catchup=False,
        max_active_runs=4,
        tags=["synthaudio"],
        doc_md=DOC.format(dataset=dataset, config=config_path.name),
        params={
            "version": Param(None, type=["null", "string"], pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$",
                             description="Release version (default: logical date or run_after, YYYY-MM-DD)"),
            "n_clips": Param(None, type=["null", "integer"], minimum=1, description="Override the config's n_clips"),
        },
        default_args=RETRIES,
    )
    def build():
        @task
        def plan(params=None, **context) -> list[dict]:
            """Resolve the version, sample the prompts and plan the shards; one small dict per shard."""
            from pipeline.prompts.stage import plan as plan_stage
            from pipeline.runner import make_context

            version = resolve_version(params, context)
            ctx = make_context(config, version, n_clips=params.get("n_clips"), quiet=True)
            return [{"shard": s, "version": version, "n_clips": params.get("n_clips")} for s in plan_stage(ctx)]

        @task(pool=GENERATION_POOL, queue=GENERATION_QUEUE)
        def generate(shard: int, version: str, n_clips: int | None) -> dict:
            """Generate one shard's clips with Jukebox (resumes at the first unfinished level)."""
            from pipeline.runner import run_shard_stage

            run_shard_stage("generate", config, version, n_clips, shard, True)
            return {"shard": shard, "version": version, "n_clips": n_clips}

        @task
        def features(shard: int, version: str, n_clips: int | None) -> dict:
            """Extract one shard's audio features."""
            from pipeline.runner import run_shard_stage

            run_shard_stage("features", config, version, n_clips, shard, True)
            return {"shard": shard, "version": version, "n_clips": n_clips}

        @task
        def leakcheck(shard: int, version: str, n_clips: int | None) -> dict:
            """Leak-check one shard against the reference voices (unscorable counts as a leak)."""
            from pipeline.runner import run_shard_stage

            run_shard_stage("leakcheck", config, version, n_clips, shard, True)
            return {"shard": shard, "version": version, "n_clips": n_clips}

        @task(outlets=[Asset(f"synthaudio://{dataset}")])
        def export(checked: list[dict]) -> str:
            """Publish the release (one atomic rename); returns its folder."""
            from pipeline.export.release import export as export_stage
            from pipeline.runner import make_context

            first = next(iter(checked))
            ctx = make_context(config, first["version"], n_clips=first["n_clips"], quiet=True)
            return str(export_stage(ctx))

        shards = plan()
        generated = generate.expand_kwargs(shards)
        featured = features.expand_kwargs(generated)
        checked = leakcheck.expand_kwargs(featured)
        export(checked)

    return build()


for _path in sorted(CONFIG_DIR.glob("*.yaml")):
    _raw = yaml.safe_load(_path.read_text(encoding="utf-8")) or {}
    if isinstance(_raw, dict) and isinstance(_raw.get("dataset"), str):
        globals()[f"synthaudio__{_raw['dataset']}"] = build_dag(_path, _raw["dataset"], _raw.get("schedule"))
