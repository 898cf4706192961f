import pytest

from pipeline.errors import BadInput
from pipeline.runner import make_context
from pipeline.workspace import atomic_path, derive_seed, run_once, validate_version, write_json_atomic


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert target.read_text().strip().endswith("}") and '"a": 2' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_derive_seed_is_stable_and_sensitive_to_every_part():
    assert derive_seed("a", 1) == derive_seed("a", 1)
    assert len({derive_seed("a", 1), derive_seed("a", 2), derive_seed("b", 1), derive_seed("a1")}) == 4
    assert 0 <= derive_seed("x") < 2**63


@pytest.mark.parametrize("version", ["2026-01-01", "v1.2", "nightly_3"])
def test_valid_versions(version):
    assert validate_version(version) == version


@pytest.mark.parametrize("version", ["", "../etc", "a/b", "-x", "x" * 65])
def test_invalid_versions_are_bad_input(version):
    with pytest.raises(BadInput, match="version"):
        validate_version(version)


def test_run_seed_derives_from_dataset_version_and_config_seed(small_config):
    a = make_context(small_config(), "2026-01-01")
    assert a.seed == make_context(small_config(), "2026-01-01").seed
    assert a.seed != make_context(small_config(), "2026-01-02").seed
    assert a.seed != make_context(small_config(seed=7), "2026-01-01").seed


def test_run_once_skips_same_inputs_and_reruns_changed_or_missing_outputs(small_config):
    ctx = make_context(small_config(), "2026-01-01")
    calls = []

    def body():
        calls.append(1)
        path = ctx.root / "thing.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
        return [path]

    assert run_once(ctx, "stage", 0, {"a": 1}, body) is True
    assert run_once(ctx, "stage", 0, {"a": 1}, body) is False
    assert run_once(ctx, "stage", 0, {"a": 2}, body) is True
    (ctx.root / "thing.txt").unlink()
    assert run_once(ctx, "stage", 0, {"a": 2}, body) is True
    assert len(calls) == 3
