"""Every DAG file parses with no import errors and touches no database or connection at parse time."""

import json
import os
import subprocess
import sys
import textwrap

import yaml

from pipeline.testing import DEFAULT_CONFIG, REPO_ROOT

PARSE = textwrap.dedent("""
    import json, sys
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[1])
    print(json.dumps({
        "errors": {k: str(v)[-500:] for k, v in bag.import_errors.items()},
        "dags": {d.dag_id: {"tasks": sorted(d.task_dict), "schedule": str(d.schedule),
                            "params": sorted(d.params), "doc": bool(d.doc_md),
                            "outlets": [str(getattr(a, "uri", a)) for a in d.task_dict["export"].outlets],
                            "pool": d.task_dict["generate"].pool, "retries": d.task_dict["generate"].retries}
                 for d in bag.dags.values()},
    }))
""")


def parse_dags(tmp_path, config_dir=None) -> dict:
    """Parse dags/ in a fresh interpreter whose metadata database cannot be opened."""
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow_home"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/no/such/dir/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
    if config_dir:
        env["SYNTHAUDIO_CONFIG_DIR"] = str(config_dir)
    result = subprocess.run([sys.executable, "-c", PARSE, str(REPO_ROOT / "dags")], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "no").exists()  # nothing created the database's folder
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_default_dag_parses_without_errors_or_database(tmp_path):
    parsed = parse_dags(tmp_path)
    assert parsed["errors"] == {}
    dag = parsed["dags"]["synthaudio__default"]
    assert dag["tasks"] == ["export", "features", "generate", "leakcheck", "plan"]
    assert dag["params"] == ["n_clips", "version"]
    assert dag["doc"] and dag["retries"] == 2 and dag["pool"] == "default_pool"
    assert [uri.rstrip("/") for uri in dag["outlets"]] == ["synthaudio://default"]  # Airflow appends "/"
    assert dag["schedule"] == "@daily"


def test_one_dag_per_config(tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    for name, schedule in (("alpha", None), ("beta", "0 3 * * *")):
        data = yaml.safe_load(DEFAULT_CONFIG.read_text())
        data.update(dataset=name, schedule=schedule)
        (configs / f"{name}.yaml").write_text(yaml.safe_dump(data))
    parsed = parse_dags(tmp_path, configs)
    assert parsed["errors"] == {}
    assert sorted(parsed["dags"]) == ["synthaudio__alpha", "synthaudio__beta"]
    assert parsed["dags"]["synthaudio__beta"]["schedule"] == "0 3 * * *"


def test_dag_file_imports_nothing_heavy_at_module_level():
    source = (REPO_ROOT / "dags" / "build_dataset.py").read_text()
    top_level = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert not [line for line in top_level if any(m in line for m in ("torch", "transformers", "pipeline", "librosa"))]
