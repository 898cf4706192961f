"""The default DAG end to end with dag.test() on SQLite: its release equals the CLI's for the same version."""

import email
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from pipeline.testing import REPO_ROOT, smtp_sink, write_config

RUN = textwrap.dedent("""
    import sys
    from datetime import datetime, timezone
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[1])
    assert not bag.import_errors, bag.import_errors
    for dag_id, day in zip(sys.argv[2].split(","), sys.argv[3].split(",")):
        run = bag.get_dag(dag_id).test(logical_date=datetime.fromisoformat(day).replace(tzinfo=timezone.utc))
        print("STATE", run.state)
    import json
    from sqlalchemy import select
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    with create_session() as session:
        print("EVENTS", json.dumps([event.extra for event in session.scalars(select(AssetEvent))]))
""")


def run_dags(tmp_path, configs, dag_ids: list[str], days: list[str], states: list[str] | None = None
             ) -> subprocess.CompletedProcess:
    """`dag.test()` of each DAG in turn, in a fresh Airflow home on SQLite; prints STATE and the Asset events.
    Every run must end in its expected state (default: success)."""
    home = tmp_path / "airflow_home"
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "SYNTHAUDIO_CONFIG_DIR": str(configs),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
           "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(tmp_path / "lineage.jsonl"),
                                                          "append": True}),
           "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    home.mkdir()
    migrate = subprocess.run(["airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    result = subprocess.run([sys.executable, "-c", RUN, str(REPO_ROOT / "dags"), ",".join(dag_ids), ",".join(days)],
                            env=env, capture_output=True, text=True, timeout=1200)
    ended = [line for line in result.stdout.splitlines() if line.startswith("STATE")]
    expected = [f"STATE {state}" for state in (states or ["success"] * len(dag_ids))]
    assert result.returncode == 0 and ended == expected, (result.stdout + result.stderr)[-4000:]
    return result


def _html(mail: str) -> str:
    import base64

    part = next(p for p in email.message_from_string(mail).walk() if p.get_content_type() == "text/html")
    return base64.b64decode(part.get_payload()).decode()


def lineage_events(tmp_path) -> list[dict]:
    """The OpenLineage events the provider wrote (file transport: one JSON event per line)."""
    path = tmp_path / "lineage.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def datasets(events: list[dict], task: str, side: str) -> list[str]:
    """`namespace/name` of a task's COMPLETE event's inputs or outputs."""
    complete = [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith(f".{task}")]
    assert complete, sorted({(e["job"]["name"], e["eventType"]) for e in events})
    return sorted(f"{d['namespace']}/{d['name']}" for d in complete[-1].get(side, []))


def asset_events(result) -> list[dict]:
    return json.loads(next(line for line in result.stdout.splitlines() if line.startswith("EVENTS"))[7:])


@pytest.mark.slow
def test_dag_test_builds_the_same_release_as_the_cli(two_shard_release, tmp_path, reference_dir, reference_cache):
    from tests.conftest import TWO_SHARD_BUILD

    cli_release = two_shard_release
    configs = tmp_path / "configs"
    alerts = {"alerts.email": ["owner@example.org"], "alerts.smtp_conn_id": "smtp_test"}
    write_config(tmp_path, reference_dir, name="configs/default.yaml",
                 **{**TWO_SHARD_BUILD, "storage.reference_cache": str(reference_cache), **alerts})
    with smtp_sink() as mails:  # the export's success notifier, through the SMTP provider (tests/test_alerts.py: all)
        result = run_dags(tmp_path, configs, ["synthaudio__default"], ["2026-01-01"])
    assert [email.message_from_string(mail)["Subject"] for mail in mails] == [
        "[synthaudio] default 2026-01-01: release published"]
    assert f"{TWO_SHARD_BUILD['n_clips']} clips" in _html(mails[0])

    release = tmp_path / "releases" / "default" / "2026-01-01"
    dag_manifest = json.loads((release / "manifest.json").read_text())
    cli_manifest = json.loads((cli_release / "manifest.json").read_text())
    assert dag_manifest["content_sha256"] == cli_manifest["content_sha256"]
    assert dag_manifest["counts"] == cli_manifest["counts"]
    assert asset_events(result) == [{"dataset": "default", "version": "2026-01-01",
                                     "content_sha256": dag_manifest["content_sha256"]}]


@pytest.mark.slow
def test_the_training_dag_announces_its_model_and_the_build_continues_corpus_clips_with_it(
        corpus_runs, tmp_path, reference_dir, reference_cache):
    """The train DAG (its model already trained by the CLI on the same inputs: found, not trained again) emits the
    model Asset; the build DAG in `continue` mode pins that model and publishes the CLI's release, byte for byte."""
    from tests.conftest import CORPUS_MODES, CORPUS_VERSIONS, corpus_build_overrides

    model, releases, folder = corpus_runs
    configs = tmp_path / "configs"
    write_config(tmp_path, reference_dir, corpus=True, name="configs/default.yaml", **{
        **corpus_build_overrides(reference_cache), "generation.mode": "continue", **CORPUS_MODES["continue"],
        "storage.models": str(folder / "models")})
    result = run_dags(tmp_path, configs, ["synthaudio_train__default", "synthaudio__default"],
                      ["2026-02-01", CORPUS_VERSIONS["continue"]])
    manifest = json.loads((tmp_path / "releases" / "default" / CORPUS_VERSIONS["continue"] / "manifest.json").read_text())
    cli = json.loads((releases["continue"] / "manifest.json").read_text())
    assert manifest["content_sha256"] == cli["content_sha256"] and manifest["lineage"]["model_version"] == model["version"]
    # OpenLineage (the provider, file transport): corpus -> model (train), corpus + model -> release (export)
    events = lineage_events(tmp_path)
    corpus = f"synthaudio-corpus://default/{model['corpus_fingerprint']}"
    trained = f"synthaudio-model://default/{model['version']}"
    assert datasets(events, "train", "inputs") == [corpus] and datasets(events, "train", "outputs") == [trained]
    # dag.test() runs every task in one process, whose hook-lineage collector keeps what earlier tasks reported
    # (the train task's model output); a deployed task runs in a process of its own.
    assert {corpus, trained} <= set(datasets(events, "export", "inputs"))
    assert f"synthaudio://default/{CORPUS_VERSIONS['continue']}" in datasets(events, "export", "outputs")
    assert asset_events(result) == [
        {"dataset": "default", "model_version": model["version"], "model_sha256": model["weights_sha256"],
         "corpus_fingerprint": model["corpus_fingerprint"]},
        {"dataset": "default", "version": CORPUS_VERSIONS["continue"], "content_sha256": manifest["content_sha256"]}]


def _dag_module(tmp_path):
    os.environ["SYNTHAUDIO_CONFIG_DIR"] = str(tmp_path)  # no configs: only the helpers are wanted
    try:
        spec = importlib.util.spec_from_file_location("build_dataset_under_test", REPO_ROOT / "dags" / "build_dataset.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        del os.environ["SYNTHAUDIO_CONFIG_DIR"]
    return module


def test_version_comes_from_param_then_logical_date_then_run_after(tmp_path):
    resolve = _dag_module(tmp_path).resolve_version
    run = SimpleNamespace(run_after=datetime(2026, 3, 4, 10, 30, tzinfo=timezone.utc))
    logical = datetime(2026, 2, 1, tzinfo=timezone.utc)
    assert resolve({"version": "v7"}, {"logical_date": logical, "dag_run": run}) == "v7"
    assert resolve({"version": None}, {"logical_date": logical, "dag_run": run}) == "2026-02-01"
    assert resolve({}, {"logical_date": None, "dag_run": run}) == "2026-03-04"  # manual trigger
