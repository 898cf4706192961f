"""The flow written once: the registry's order is the order the runner, the CLI and the DAG use."""

import inspect

import pytest

from pipeline.cli import build_parser
from pipeline.stages import SHARDED, STAGES, stage


def test_the_registry_holds_the_flow_in_order_and_every_function_loads():
    assert [s.name for s in STAGES] == ["plan", "generate", "features", "leakcheck", "export"]
    assert [s.name for s in SHARDED] == ["generate", "features", "leakcheck"]
    for step in STAGES:
        parameters = list(inspect.signature(step.load()).parameters)
        assert parameters[0] == "ctx" and (parameters[1:2] == ["shard"]) == step.sharded, step.name
    assert stage("generate").queue == "generation" and stage("features").queue == "default"
    with pytest.raises(ValueError, match="stages: plan, generate"):
        stage("mix")


def test_every_sharded_stage_is_a_cli_command_with_a_shard_flag():
    parser = build_parser()
    for step in SHARDED:
        args = parser.parse_args([step.name, "configs/default.yaml", "--shard", "3"])
        assert args.command == step.name and args.shard == 3


def test_each_stage_reads_what_the_stage_before_it_writes():
    written = set()
    for step in STAGES:
        if step.name != "plan":
            produced_before = {w.split("/")[0] for w in written}
            assert {r.split("/")[0] for r in step.reads if not r.startswith(step.name)} <= produced_before | {"_done"}
        written |= set(step.writes)
