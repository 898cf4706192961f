"""A local CeleryExecutor deployment of Airflow 3 for the Synthaudio DAGs: Postgres metadata, Redis broker.

    python -m pipeline.deploy start [--home var/celery]   # db migrate, then every component below
    python -m pipeline.deploy status
    python -m pipeline.deploy stop                        # stops exactly what `start` started
    python -m pipeline.deploy env                         # the environment, as shell exports

Components, all on loopback, each in its own process group with a pid file and a log under HOME:
scheduler, dag-processor, api-server (UI and execution API), triggerer, and two Celery workers:
`worker-default` (queue `default`) and `worker-generation` (queues `default` and `generation`; the
DAG's generate tasks go to `generation`, where GPU workers would serve). `start` is idempotent: it
starts only the components that are not running, so it also restarts a worker that died.

Services it expects (the machine's own): Postgres on 127.0.0.1:5432 with trust auth and Redis on
127.0.0.1:6379; `ensure_services()` starts them with the commands this machine documents when they
are down. Nothing here is needed by `make run`, which uses SQLite and `airflow dags test`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_HOME = REPO / "var" / "celery"
PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/{database}"
REDIS_URL = "redis://127.0.0.1:6379/{db}"
API_PORT = 8080

COMPONENTS: dict[str, list[str]] = {
    "api-server": ["api-server", "--host", "127.0.0.1", "--port", "{api_port}"],
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer"],
    "worker-default": ["celery", "worker", "--queues", "default", "--concurrency", "2",
                       "--celery-hostname", "default@%h"],
    "worker-generation": ["celery", "worker", "--queues", "default,generation", "--concurrency", "2",
                          "--celery-hostname", "generation@%h"],
}
LOG_SERVER_PORTS = {"worker-default": 8793, "worker-generation": 8794, "triggerer": 8795}


class DeployError(RuntimeError):
    pass


def deployment_env(home: Path, database: str = "synthaudio_airflow", redis_db: int = 0, api_port: int = API_PORT,
                   config_dir: Path | None = None) -> dict[str, str]:
    """The Airflow settings of the deployment (environment variables; no airflow.cfg edits)."""
    home.mkdir(parents=True, exist_ok=True)
    secret_file = home / "secret"
    if not secret_file.is_file():  # one secret shared by every component: JWTs between workers and the API
        secret_file.write_text(secrets.token_urlsafe(32))
    secret = secret_file.read_text().strip()
    env = {
        "AIRFLOW_HOME": str(home / "airflow_home"),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # loopback only: no login for the UI
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": PG_URL.format(database=database),
        "AIRFLOW__CELERY__BROKER_URL": REDIS_URL.format(db=redis_db),
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + PG_URL.format(database=database).replace("+psycopg2", ""),
        "AIRFLOW__API__SECRET_KEY": secret,
        "AIRFLOW__API_AUTH__JWT_SECRET": secret,
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",  # a killed worker's task is retried soon
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "SYNTHAUDIO_GENERATION_QUEUE": "generation",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    if config_dir is not None:
        env["SYNTHAUDIO_CONFIG_DIR"] = str(config_dir)
    return env


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def ensure_services(timeout_s: float = 30) -> None:
    """Start Postgres and Redis with this machine's documented commands if they are not answering."""
    if not _port_open(5432):
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False)
    if not _port_open(6379):
        subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
                        "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
                        "--logfile", "/var/log/redis/ci.log"], check=False)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if _port_open(5432) and _port_open(6379):
            return
        time.sleep(0.5)
    raise DeployError("Postgres (127.0.0.1:5432) or Redis (127.0.0.1:6379) is not answering; start them "
                      "(see README: Scale-out) and retry")


def create_database(database: str, *, fresh: bool = False) -> None:
    """Create the metadata database (dropped first when `fresh`)."""
    def psql(sql: str) -> subprocess.CompletedProcess:
        return subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-tAc", sql],
                              capture_output=True, text=True)

    if fresh:
        psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    if psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}'").stdout.strip() != "1":
        result = psql(f'CREATE DATABASE "{database}"')
        if result.returncode != 0:
            raise DeployError(f"cannot create database {database}: {result.stderr.strip()}")


def _pid_file(home: Path, name: str) -> Path:
    return home / "pids" / f"{name}.pid"


def _alive(pid: int) -> bool:
    """Whether any process of the group `pid` still runs (reaping the leader if it is our exited child)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.killpg(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def running(home: Path) -> dict[str, int]:
    """Components started from `home` that are still alive: name -> process group id."""
    out = {}
    for name in COMPONENTS:
        path = _pid_file(home, name)
        if path.is_file() and _alive(int(path.read_text())):
            out[name] = int(path.read_text())
    return out


def start(home: Path, env: dict[str, str], only: list[str] | None = None, wait_s: float = 180) -> dict[str, int]:
    """Migrate the database and start every component that is not running; wait for the API's health."""
    if shutil.which("airflow", path=env["PATH"]) is None:
        raise DeployError("airflow is not on PATH; run `make install-celery` first")
    full_env = {**os.environ, **env}
    check = subprocess.run(["airflow", "celery", "--help"], env=full_env, capture_output=True, text=True)
    if check.returncode != 0:
        raise DeployError("the Celery provider is not installed: run `make install-celery` "
                          "(apache-airflow[celery,postgres]==3.3.2)")
    migrate = subprocess.run(["airflow", "db", "migrate"], env=full_env, capture_output=True, text=True)
    if migrate.returncode != 0:
        raise DeployError(f"airflow db migrate failed:\n{migrate.stderr[-2000:]}")
    (home / "pids").mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    alive = running(home)
    api_port = int(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].rsplit(":", 1)[1].split("/")[0])
    for name, args in COMPONENTS.items():
        if name in alive or (only and name not in only):
            continue
        component_env = dict(full_env)
        if name in LOG_SERVER_PORTS:
            component_env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(LOG_SERVER_PORTS[name] + api_port - API_PORT)
            component_env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(LOG_SERVER_PORTS[name] + api_port - API_PORT)
        command = ["airflow", *[a.format(api_port=api_port) for a in args]]
        with open(home / "logs" / f"{name}.log", "ab") as log:
            process = subprocess.Popen(command, env=component_env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True, cwd=REPO)
        _pid_file(home, name).write_text(str(process.pid))
        alive[name] = process.pid
    _wait_healthy(api_port, wait_s)
    return alive


def _wait_healthy(api_port: int, wait_s: float) -> dict:
    deadline = time.time() + wait_s
    last = None
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/v2/monitor/health", timeout=2) as response:
                health = json.load(response)
            last = health
            if health.get("scheduler", {}).get("status") == "healthy":
                return health
        except OSError:
            pass
        time.sleep(1)
    raise DeployError(f"the deployment did not become healthy within {wait_s:.0f} s (last health: {last}); "
                      "see the logs under the deployment's logs/ folder")


def stop(home: Path, names: list[str] | None = None, grace_s: float = 20) -> list[str]:
    """SIGTERM each started component's process group, SIGKILL what is left after `grace_s`; returns names."""
    stopped = []
    targets = {n: pid for n, pid in running(home).items() if not names or n in names}
    for pid in targets.values():
        os.killpg(pid, signal.SIGTERM)
    deadline = time.time() + grace_s
    while time.time() < deadline and any(_alive(pid) for pid in targets.values()):
        time.sleep(0.2)
    for name, pid in targets.items():
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
        stopped.append(name)
    for name in COMPONENTS:
        if not names or name in names:
            _pid_file(home, name).unlink(missing_ok=True)
    return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.deploy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "status", "env"])
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help="pids, logs, AIRFLOW_HOME (default var/celery)")
    parser.add_argument("--database", default="synthaudio_airflow", help="Postgres database for Airflow's metadata")
    parser.add_argument("--api-port", type=int, default=API_PORT)
    parser.add_argument("--only", nargs="*", choices=list(COMPONENTS), help="start or stop only these components")
    args = parser.parse_args(argv)
    home = args.home.resolve()
    env = deployment_env(home, args.database, api_port=args.api_port)
    try:
        if args.action == "env":
            print("\n".join(f"export {k}={v!r}" for k, v in env.items()))
        elif args.action == "status":
            alive = running(home)
            for name in COMPONENTS:
                print(f"{name:18} {'running pid ' + str(alive[name]) if name in alive else 'stopped'}")
        elif args.action == "start":
            ensure_services()
            create_database(args.database)
            started = start(home, env, args.only)
            print(f"running: {', '.join(started)}; UI and API on http://127.0.0.1:{args.api_port}")
        else:
            print(f"stopped: {', '.join(stop(home, args.only)) or 'nothing was running'}")
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
