"""The default DAG end to end with dag.test() on SQLite: its release equals the CLI's for the same version."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from pipeline.testing import REPO_ROOT, write_config

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


def run_dags(tmp_path, configs, dag_ids: list[str], days: list[str]) -> subprocess.CompletedProcess:
    """`dag.test()` of each DAG in turn, in a fresh Airflow home on SQLite; prints STATE and the Asset events."""
    home = tmp_path / "airflow_home"
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "SYNTHAUDIO_CONFIG_DIR": str(configs),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
           "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    home.mkdir()
    migrate = subprocess.run(["airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    result = subprocess.run([sys.executable, "-c", RUN, str(REPO_ROOT / "dags"), ",".join(dag_ids), ",".join(days)],
                            env=env, capture_output=True, text=True, timeout=1200)
    states = [line for line in result.stdout.splitlines() if line.startswith("STATE")]
    assert result.returncode == 0 and states == ["STATE success"] * len(dag_ids), (result.stdout + result.stderr)[-4000:]
    return result


def asset_events(result) -> list[dict]:
    return json.loads(next(line for line in result.stdout.splitlines() if line.startswith("EVENTS"))[7:])


@pytest.mark.slow
def test_dag_test_builds_the_same_release_as_the_cli(two_shard_release, tmp_path, reference_dir, reference_cache):
    from tests.conftest import TWO_SHARD_BUILD

    cli_release = two_shard_release
    configs = tmp_path / "configs"
    write_config(tmp_path, reference_dir, name="configs/default.yaml",
                 **{**TWO_SHARD_BUILD, "storage.reference_cache": str(reference_cache)})
    result = run_dags(tmp_path, configs, ["synthaudio__default"], ["2026-01-01"])

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
