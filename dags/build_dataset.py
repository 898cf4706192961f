"""One Airflow DAG per build config in `configs/*.yaml`: `synthaudio__<dataset>`; a config with a private
corpus (`source:`) adds `synthaudio_train__<dataset>`, whose model is an Asset the build is scheduled on.

plan -> shard[n]: (generate -> features -> leakcheck) -> export, a mapped task group per shard, so each
shard's CPU stages start as soon as its own (GPU) generation ends. Task bodies are a few
lines that call `pipeline`; heavy libraries are imported inside the tasks, and parsing this file
only reads the YAML files (no database, connection or model access).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import yaml
from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task, task_group

from pipeline import alert_defaults  # constants only
from pipeline.alerts import BuildNotifier  # Airflow's SDK only
from pipeline.stages import SHARDED  # the registry only: it imports no stage and no heavy library

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


TRAIN_DOC = """
### Synthaudio training: `{dataset}`

Trains the model of `{config}` on its private corpus (`source.corpus`): the tiny preset learns its VQ-VAE and
priors from scratch, real presets fine-tune their priors. A killed or retried task resumes at its last
checkpoint. The finished model is published privately under `storage.models` and announced as the Asset
`synthaudio-model://{dataset}`, which the build DAG `synthaudio__{dataset}` is scheduled on (it pins the newest
model in its plan). Nothing here is ever part of a release.
"""


def model_asset(dataset: str) -> Asset:
    return Asset(f"synthaudio-model://{dataset}")


def build_schedule(dataset: str, schedule: str | None, trained_model: bool):
    """The build's schedule: its cron (or none), and with `generation.model: latest` also every new model."""
    if not trained_model:
        return schedule
    if schedule is None:
        return [model_asset(dataset)]
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(schedule, timezone="UTC"), assets=[model_asset(dataset)])


def notifier(dataset: str, alerts: dict | None) -> BuildNotifier | None:
    """The config's `alerts:` as a notifier (None without alerts)."""
    if not alerts:
        return None
    return BuildNotifier(dataset, alerts["email"], alerts.get("from_email", alert_defaults.FROM_EMAIL),
                         alerts.get("smtp_conn_id", alert_defaults.SMTP_CONN_ID),
                         alerts.get("events", list(alert_defaults.EVENTS)))


def task_defaults(alerts: BuildNotifier | None) -> dict:
    """Retries, and the failure notification (a task that failed after its retries, or a gate)."""
    return {**RETRIES, **({"on_failure_callback": [alerts]} if alerts else {})}


def build_train_dag(config_path: Path, dataset: str, alerts: BuildNotifier | None = None):
    config = str(config_path)
    asset = model_asset(dataset)

    @dag(dag_id=f"synthaudio_train__{dataset}", schedule=None, catchup=False, max_active_runs=1,
         tags=["synthaudio", "training"], doc_md=TRAIN_DOC.format(dataset=dataset, config=config_path.name),
         default_args=task_defaults(alerts))
    def training():
        @task(outlets=[asset])
        def train(**context) -> str:
            """Train (or resume, or find already trained) the corpus's model; the Asset event names it."""
            from pipeline.config import load_config
            from pipeline.orchestration import fail_without_retry
            from pipeline.training.stage import train as train_stage

            with fail_without_retry():
                model = train_stage(load_config(config), quiet=True)
            from pipeline import lineage

            lineage.report(inputs=[(lineage.corpus_uri(dataset, model.corpus_fingerprint), {})],
                           outputs=[(lineage.model_uri(dataset, model.version), {"sha256": model.weights_sha256})])
            context["outlet_events"][asset].extra = {
                "dataset": dataset, "model_version": model.version, "model_sha256": model.weights_sha256,
                "corpus_fingerprint": model.corpus_fingerprint}
            return model.version

        train()

    return training()


def build_dag(config_path: Path, dataset: str, schedule: str | None, trained_model: bool = False,
              alerts: BuildNotifier | None = None):
    config = str(config_path)

    @dag(
        dag_id=f"synthaudio__{dataset}",
        schedule=build_schedule(dataset, schedule, trained_model),
        catchup=False,
        max_active_runs=4,
        tags=["synthaudio"],
        doc_md=DOC.format(dataset=dataset, config=config_path.name),
        params={
            "version": Param(None, type=["null", "string"], pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$",
                             description="Release version (default: logical date or run_after, YYYY-MM-DD)"),
            "n_clips": Param(None, type=["null", "integer"], minimum=1, description="Override the config's n_clips"),
        },
        default_args=task_defaults(alerts),
    )
    def build():
        @task
        def plan(params=None, **context) -> list[dict]:
            """Resolve the version, sample the prompts and plan the shards; one small dict per shard."""
            from pipeline.orchestration import fail_without_retry
            from pipeline.prompts.stage import plan as plan_stage
            from pipeline.runner import make_context

            version = resolve_version(params, context)
            with fail_without_retry():
                ctx = make_context(config, version, n_clips=params.get("n_clips"), quiet=True)
                shards = plan_stage(ctx)
            return [{"shard": s, "version": version, "n_clips": params.get("n_clips")} for s in shards]

        def shard_task(step):
            """The task of one sharded stage of the registry (pipeline.stages)."""
            on_gpu = step.queue == "generation"

            @task(task_id=step.name, doc_md=step.help, pool=GENERATION_POOL if on_gpu else "default_pool",
                  queue=GENERATION_QUEUE if on_gpu else "default")
            def run(job: dict) -> dict:
                from pipeline.orchestration import fail_without_retry
                from pipeline.runner import run_shard_stage

                with fail_without_retry():
                    run_shard_stage(step.name, config, job["version"], job["n_clips"], job["shard"], True)
                return job

            return run

        release_asset = Asset(f"synthaudio://{dataset}")

        @task(outlets=[release_asset], on_success_callback=[alerts] if alerts else None)
        def export(planned: list[dict], checked: list[dict], **context) -> str:
            """Publish the release (one atomic rename) of the version `plan` resolved; returns its folder. The
            Asset event carries the version and content_sha256, so a DAG scheduled on it knows which release."""
            import json

            from pipeline.export.release import export as export_stage
            from pipeline.orchestration import fail_without_retry
            from pipeline.runner import make_context

            first = planned[0]
            # the mapped group's results: a list per shard, but Airflow hands a single shard's result over bare
            checked = [checked] if isinstance(checked, dict) else list(checked)
            if sorted(c["shard"] for c in checked) != sorted(p["shard"] for p in planned):
                raise RuntimeError(f"leak check covered shards {sorted(c['shard'] for c in checked)}, planned "
                                   f"{sorted(p['shard'] for p in planned)}")
            with fail_without_retry():
                ctx = make_context(config, first["version"], n_clips=first["n_clips"], quiet=True)
                release = export_stage(ctx)
            manifest = json.loads((release / "manifest.json").read_text())
            from pipeline import lineage

            made_from = manifest.get("lineage") or {}
            inputs = [(lineage.corpus_uri(dataset, made_from["corpus_fingerprint"]), {}),
                      (lineage.model_uri(dataset, made_from["model_version"]), {"sha256": made_from["model_sha256"]})
                      ] if made_from else []
            lineage.report(inputs=inputs, outputs=[(lineage.release_uri(dataset, first["version"]),
                                                    {"content_sha256": manifest["content_sha256"]})])
            context["outlet_events"][release_asset].extra = {
                "dataset": dataset, "version": first["version"], "content_sha256": manifest["content_sha256"]}
            return str(release)

        @task_group
        def shard(job: dict):
            """One shard flows on its own through the sharded stages: its features and leak check start when
            its own generation ends."""
            for step in SHARDED:
                job = shard_task(step)(job)
            return job

        shards = plan()
        checked = shard.expand(job=shards)
        export(shards, checked)

    return build()


def invalid_config_dag(config_path: Path, problem: str):
    """A stand-in for a config that cannot be read: it shows the problem in the UI (its doc) and its one task
    fails with it. Airflow drops every DAG of a file that raises, so one broken YAML must not raise here."""
    dag_id = "synthaudio__invalid__" + "".join(c if c.isalnum() else "_" for c in config_path.stem)

    @dag(dag_id=dag_id, schedule=None, catchup=False, tags=["synthaudio", "invalid-config"],
         doc_md=f"### Invalid build config `{config_path.name}`\n\n```\n{problem}\n```\n\nFix the file; this DAG "
                "then becomes `synthaudio__<dataset>`.")
    def invalid():
        @task
        def report_invalid_config() -> None:
            """Fail with the config's problem (never retried: the file must be fixed)."""
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{config_path}: {problem}")

        report_invalid_config()

    return invalid()


def _read_config(path: Path) -> tuple[str, str | None, bool, bool, dict | None]:
    """(dataset, schedule, has a corpus, generates with its newest model, alerts) of a config file; ValueError with
    what is wrong (full validation runs in `plan` and `train`)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"not readable YAML: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("dataset"), str):
        raise ValueError("a build config is a mapping with a `dataset` name (see configs/default.yaml)")
    schedule = raw.get("schedule")
    if schedule is not None and not isinstance(schedule, str):
        raise ValueError(f"schedule: expected a cron string or preset, got {schedule!r}")
    generation = raw.get("generation") if isinstance(raw.get("generation"), dict) else {}
    alerts = raw.get("alerts")
    if alerts is not None and not (isinstance(alerts, dict) and isinstance(alerts.get("email"), list) and alerts["email"]
                                   and all(isinstance(a, str) for a in alerts["email"])):
        raise ValueError("alerts: expected a mapping with `email`, a list of addresses (see README, Alerts)")
    return raw["dataset"], schedule, bool(raw.get("source")), generation.get("model") == "latest", alerts


for _path in sorted(CONFIG_DIR.glob("*.yaml")):
    try:
        _dataset, _schedule, _corpus, _latest, _alerts = _read_config(_path)
        _notifier = notifier(_dataset, _alerts)
        if _corpus:
            globals()[f"synthaudio_train__{_dataset}"] = build_train_dag(_path, _dataset, _notifier)
        globals()[f"synthaudio__{_dataset}"] = build_dag(_path, _dataset, _schedule, _corpus and _latest, _notifier)
    except Exception as _exc:  # noqa: BLE001 - one broken config must not hide the others
        _dag = invalid_config_dag(_path, f"{type(_exc).__name__}: {_exc}")
        globals()[_dag.dag_id] = _dag
