"""Every DAG file parses with no import errors and touches no database or connection at parse time."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from pipeline.testing import DEFAULT_CONFIG, REPO_ROOT

PARSE = textwrap.dedent("""
    import json, os, sys, warnings
    from airflow.dag_processing.dagbag import DagBag
    for config_dir in sys.argv[2:]:  # "-": the repository's configs; the first parse sees a fresh interpreter
        if config_dir != "-":
            os.environ["SYNTHAUDIO_CONFIG_DIR"] = config_dir
        before = set(sys.modules)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            bag = DagBag(dag_folder=sys.argv[1])
        print("PARSED", json.dumps({
            "imported": sorted(set(sys.modules) - before),
            "deprecations": [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught
                             if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning))
                             or "Deprecat" in w.category.__name__],
            "errors": {k: str(v)[-500:] for k, v in bag.import_errors.items()},
            "dags": {d.dag_id: {"tasks": sorted(d.task_dict), "schedule": str(d.schedule),
                                "params": sorted(d.params), "doc": bool(d.doc_md),
                                "outlets": [str(getattr(a, "uri", a)) for t in ("export", "train") if t in d.task_dict
                                            for a in d.task_dict[t].outlets],
                                "schedule_assets": [str(getattr(a, "uri", a)) for a in
                                                    getattr(getattr(d.timetable, "asset_condition", None), "objects",
                                                            None) or []],
                                "timetable": type(d.timetable).__name__,
                                "pool": d.task_dict["shard.generate"].pool if "shard.generate" in d.task_dict else None,
                                "retries": d.task_dict["shard.generate"].retries if "shard.generate" in d.task_dict
                                else None,
                                "upstream": {t: sorted(d.task_dict[t].upstream_task_ids) for t in d.task_dict},
                                "doc_md": d.doc_md or "",
                                "failure_callbacks": len(d.default_args.get("on_failure_callback") or []),
                                "success_callbacks": len(d.task_dict["export"].on_success_callback or [])
                                if "export" in d.task_dict else None}
                     for d in bag.dags.values()},
        }))
""")


def parse_dags(tmp_path, *config_dirs) -> list[dict]:
    """Parse dags/ in a fresh interpreter whose metadata database cannot be opened, once per config folder (None:
    the repository's configs), in turn."""
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow_home"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/no/such/dir/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
    env.pop("SYNTHAUDIO_CONFIG_DIR", None)
    folders = [str(folder) if folder else "-" for folder in config_dirs or (None,)]
    result = subprocess.run([sys.executable, "-c", PARSE, str(REPO_ROOT / "dags"), *folders], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "no").exists()  # nothing created the database's folder
    parsed = [json.loads(line[7:]) for line in result.stdout.splitlines() if line.startswith("PARSED ")]
    assert len(parsed) == len(folders), result.stdout[-3000:]
    return parsed


@pytest.fixture(scope="module")
def parses(tmp_path_factory) -> tuple[dict, dict]:
    """dags/ parsed in one interpreter: first with the repository's configs, then over a config folder of two good
    datasets (one with a corpus and alerts, one without) and two broken files."""
    tmp_path = tmp_path_factory.mktemp("parses")
    configs = tmp_path / "configs"
    configs.mkdir()
    for name, schedule in (("alpha", None), ("beta", "0 3 * * *")):
        data = yaml.safe_load(DEFAULT_CONFIG.read_text())
        data.update(dataset=name, schedule=schedule)
        if name == "beta":  # no corpus: no training DAG, the plain cron schedule
            del data["source"], data["generation"]["model"]
            data["privacy"]["reference_dir"] = "voices"
        else:  # alerts by mail: every task's failure, and the export's success
            data["alerts"] = {"email": ["data-owner@example.org"]}
        (configs / f"{name}.yaml").write_text(yaml.safe_dump(data))
    (configs / "broken.yaml").write_text("dataset: [unclosed\n")
    (configs / "nameless.yaml").write_text("n_clips: 3\n")
    default, configured = parse_dags(tmp_path, None, configs)
    return default, configured


@pytest.fixture(scope="module")
def default_parse(parses) -> dict:
    return parses[0]


@pytest.fixture(scope="module")
def configs_parse(parses) -> dict:
    return parses[1]


def test_one_dag_per_config(configs_parse):
    parsed = configs_parse
    assert parsed["errors"] == {}
    assert sorted(parsed["dags"]) == ["synthaudio__alpha", "synthaudio__beta", "synthaudio__invalid__broken",
                                      "synthaudio__invalid__nameless", "synthaudio_train__alpha"]
    assert parsed["dags"]["synthaudio__beta"]["schedule"] == "0 3 * * *"
    alpha, beta = parsed["dags"]["synthaudio__alpha"], parsed["dags"]["synthaudio__beta"]
    assert (alpha["failure_callbacks"], alpha["success_callbacks"]) == (1, 1)
    assert parsed["dags"]["synthaudio_train__alpha"]["failure_callbacks"] == 1
    assert (beta["failure_callbacks"], beta["success_callbacks"]) == (0, 0)
    # no cron: the build runs on each new model alone
    assert parsed["dags"]["synthaudio__alpha"]["timetable"] == "AssetTriggeredTimetable"


def test_a_broken_config_hides_no_other_dag_and_shows_its_error(configs_parse):
    parsed = configs_parse
    assert parsed["errors"] == {}  # the two broken files hide neither alpha nor beta
    broken = parsed["dags"]["synthaudio__invalid__broken"]
    assert broken["tasks"] == ["report_invalid_config"] and "not readable YAML" in broken["doc_md"]
    assert "`dataset` name" in parsed["dags"]["synthaudio__invalid__nameless"]["doc_md"]
    assert parsed["dags"]["synthaudio__alpha"]["tasks"] == ["export", "plan", "shard.features", "shard.generate",
                                                             "shard.leakcheck"]


def test_default_dag_parses_without_errors_or_database(default_parse):
    parsed = default_parse
    assert parsed["errors"] == {}
    dag = parsed["dags"]["synthaudio__default"]
    assert dag["tasks"] == ["export", "plan", "shard.features", "shard.generate", "shard.leakcheck"]
    # One mapped group per shard: a shard's features wait for its own generation only.
    assert dag["upstream"]["shard.features"] == ["shard.generate"]
    assert dag["upstream"]["shard.leakcheck"] == ["shard.features"]
    assert dag["upstream"]["export"] == ["plan", "shard.leakcheck"]
    assert dag["params"] == ["n_clips", "version"]
    assert dag["doc"] and dag["retries"] == 2 and dag["pool"] == "default_pool"
    assert [uri.rstrip("/") for uri in dag["outlets"]] == ["synthaudio://default"]  # Airflow appends "/"
    # daily, and whenever the training DAG publishes a new model (the default generates with the newest)
    assert dag["timetable"] == "AssetOrTimeSchedule"
    assert [uri.rstrip("/") for uri in dag["schedule_assets"]] == ["synthaudio-model://default"]
    train = parsed["dags"]["synthaudio_train__default"]
    assert train["tasks"] == ["train"] and train["doc"] and train["schedule"] == "None"
    assert [uri.rstrip("/") for uri in train["outlets"]] == ["synthaudio-model://default"]


def test_parsing_imports_nothing_heavy_and_warns_of_no_deprecation(default_parse):
    parsed = default_parse
    heavy = ("torch", "transformers", "librosa", "resemblyzer", "numba", "pyarrow", "soundfile", "pydantic")
    loaded = [m for m in parsed["imported"] if m.split(".")[0] in heavy]
    assert loaded == [], f"parsing the DAG files imported {loaded[:10]}"
    # Of the pipeline, only the stage registry (the flow written once), which imports no stage, the alerts'
    # notifier (Airflow's SDK only) and their defaults (constants); `pipeline` itself may already be loaded by
    # Airflow's provider discovery (pipeline.airflow_provider registers our asset URI schemes, pipeline.lineage
    # names them for OpenLineage).
    ours = {m for m in parsed["imported"] if m.split(".")[0] == "pipeline"}
    assert {"pipeline.alerts", "pipeline.alert_defaults", "pipeline.stages"} <= ours <= {
        "pipeline", "pipeline.airflow_provider", "pipeline.lineage", "pipeline.alerts", "pipeline.alert_defaults",
        "pipeline.stages"}, sorted(ours)
    assert parsed["deprecations"] == []
