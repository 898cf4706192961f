"""The default DAG on the CeleryExecutor deployment (`pipeline.deploy`): real scheduler, dag-processor,
api-server, triggerer and two Celery workers, Postgres metadata, Redis broker.

Run with `make test-celery` (needs `make install-celery`, Postgres on 127.0.0.1:5432, Redis on 6379).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.testing import default_n_clips, run_cli, write_config

pytestmark = [pytest.mark.celery, pytest.mark.slow]
DATABASE = "synthaudio_airflow_test"
API_PORT = 8090
DAG_ID = "synthaudio__default"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, reference_dir, reference_cache):
    from pipeline import deploy

    home = tmp_path_factory.mktemp("celery")
    config = write_config(home, reference_dir, name="configs/default.yaml",
                          **{"storage.reference_cache": str(reference_cache)})
    env = deploy.deployment_env(home, DATABASE, redis_db=5, api_port=API_PORT, config_dir=config.parent)
    deploy.ensure_services()
    deploy.create_database(DATABASE, fresh=True)
    subprocess.run(["redis-cli", "-n", "5", "FLUSHDB"], check=False, capture_output=True)
    try:
        deploy.start(home, env)
        airflow(env, "dags", "reserialize")
        airflow(env, "dags", "unpause", DAG_ID)  # schedule @daily, no catchup: the next run is tomorrow
        yield home, env
    finally:
        deploy.stop(home)
        assert deploy.running(home) == {}


def airflow(env: dict, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(["airflow", *args], env={**os.environ, **env, "PYTHONWARNINGS": "ignore"},
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"airflow {' '.join(args)}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def json_output(result: subprocess.CompletedProcess) -> list[dict]:
    """The JSON list an `airflow ... --output json` command printed (after any log lines)."""
    return json.loads([line for line in result.stdout.splitlines() if line.startswith("[")][-1])


def dag_runs(env: dict) -> list[dict]:
    return json_output(airflow(env, "dags", "list-runs", DAG_ID, "--output", "json"))


def wait_for_runs(env: dict, run_ids: list[str] | None = None, count: int | None = None, timeout: int = 900) -> list:
    """Poll the DAG's runs until the given ones (or `count` runs) have finished; returns them."""
    deadline = time.time() + timeout
    runs = []
    while time.time() < deadline:
        runs = dag_runs(env)
        chosen = [r for r in runs if run_ids is None or r["run_id"] in run_ids]
        if (count is None or len(chosen) >= count) and chosen and all(
                r["state"] in ("success", "failed") for r in chosen):
            return chosen
        time.sleep(5)
    raise AssertionError(f"runs did not finish in {timeout} s: {runs}")


def content(release: Path) -> str:
    return json.loads((release / "manifest.json").read_text())["content_sha256"]


def cli_release_of(tmp_path: Path, reference_dir: Path, reference_cache: Path, version: str) -> Path:
    config = write_config(tmp_path / version, reference_dir, **{"storage.reference_cache": str(reference_cache)})
    result = run_cli("run", str(config), "--version", version, "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(result.stdout.strip().splitlines()[-1])


def test_a_triggered_run_on_celery_gives_the_cli_release(deployment, cli_release):
    home, env = deployment
    run_id = "celery-2026-01-01"
    started = time.time()
    airflow(env, "dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", json.dumps({"version": "2026-01-01"}))
    [run] = wait_for_runs(env, [run_id])
    print(f"celery run wall time: {time.time() - started:.1f} s")
    assert run["state"] == "success"
    release = home / "releases" / "default" / "2026-01-01"
    assert content(release) == content(cli_release)


def test_backfill_of_three_dates_gives_three_cli_releases(deployment, tmp_path, reference_dir, reference_cache):
    home, env = deployment
    dates = ["2026-03-01", "2026-03-02", "2026-03-03"]
    airflow(env, "backfill", "create", "--dag-id", DAG_ID, "--from-date", dates[0], "--to-date", dates[-1])
    deadline = time.time() + 1200
    while time.time() < deadline:
        runs = [r for r in dag_runs(env) if r["run_id"].startswith("backfill__")]
        if len(runs) == 3 and all(r["state"] in ("success", "failed") for r in runs):
            break
        time.sleep(5)
    assert sorted(r["state"] for r in runs) == ["success"] * 3, runs
    for date in dates:
        release = home / "releases" / "default" / date
        assert content(release) == content(cli_release_of(tmp_path, reference_dir, reference_cache, date)), date


def test_a_worker_killed_during_generation_is_retried_and_the_release_is_unchanged(
        deployment, tmp_path, reference_dir, reference_cache):
    from pipeline import deploy

    home, env = deployment
    version = "2026-04-01"
    run_id = f"killed-{version}"
    airflow(env, "dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", json.dumps({"version": version}))
    tokens = home / "runs" / "default" / version / "generate"
    deadline = time.time() + 600
    while time.time() < deadline and not list(tokens.rglob("*-level0.npy")):
        time.sleep(0.2)
    assert list(tokens.rglob("*-level0.npy")), "generation never started"
    worker = deploy.running(home)["worker-generation"]
    os.killpg(worker, signal.SIGKILL)  # the worker, its pool and the task process: no clean-up at all
    deadline = time.time() + 30
    while time.time() < deadline and "worker-generation" in deploy.running(home):
        time.sleep(0.2)
    assert "worker-generation" not in deploy.running(home)
    deploy.start(home, env, only=["worker-generation"])  # as an operator (or a supervisor) would
    [run] = wait_for_runs(env, [run_id], timeout=1200)
    assert run["state"] == "success"
    tries = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", DATABASE, "-tAc",
         f"SELECT map_index, try_number, state FROM task_instance WHERE run_id = '{run_id}' AND task_id = 'shard.generate'"],
        capture_output=True, text=True, check=True).stdout.split()
    assert tries and all(t.endswith("|success") for t in tries), tries
    assert any(int(t.split("|")[1]) >= 2 for t in tries), tries  # the killed generation task ran again
    release = home / "releases" / "default" / version
    audio = sorted(p.name for p in (release / "audio").iterdir())
    assert len(audio) == len(set(audio)) == default_n_clips()
    assert content(release) == content(cli_release_of(tmp_path, reference_dir, reference_cache, version))
