import json

import pytest
import yaml

from pipeline.config import config_json_schema, load_config
from pipeline.errors import ConfigError
from pipeline.schemas import SCHEMA_DIR, generated_schemas, render
from pipeline.testing import DEFAULT_CONFIG, run_cli, write_config


def test_default_config_is_valid_and_paths_resolve_against_its_folder(reference_dir, tmp_path):
    loaded = load_config(DEFAULT_CONFIG, check_paths=False)
    assert loaded.config.dataset == "default"
    assert loaded.config.generation.preset == "tiny"
    assert (loaded.config.n_clips, loaded.config.n_shards, loaded.config.prompts.duration_s) == (24, 2, 2.0)
    assert loaded.workspace_root == (DEFAULT_CONFIG.parent / "../var/runs").resolve()


def test_unknown_key_names_file_key_path_and_allowed_keys(tmp_path, reference_dir):
    path = write_config(tmp_path, reference_dir, **{"prompts.genre": {"pop": 1}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message
    assert "prompts.genre: unknown key" in message
    assert "allowed keys here:" in message and "genres" in message


def test_bad_value_names_key_and_value(tmp_path, reference_dir):
    path = write_config(tmp_path, reference_dir, n_clips=-1)
    with pytest.raises(ConfigError, match=r"n_clips: .*greater than or equal to 1.*got -1"):
        load_config(path)


def test_upsampler_temperatures_are_bounded_like_the_prompts(tmp_path, reference_dir):
    for bad in ([0.9, 0.0], [-0.5, 0.9], [0.9, 2.5]):
        path = write_config(tmp_path, reference_dir, **{"generation.upsampler_temperatures": bad})
        with pytest.raises(ConfigError, match=r"generation.upsampler_temperatures: .*in \(0, 2\]"):
            load_config(path)
    path = write_config(tmp_path, reference_dir, **{"generation.upsampler_temperatures": [0.5, 2.0]})
    assert load_config(path).config.generation.upsampler_temperatures == [0.5, 2.0]


def test_the_gpu_step_is_chosen_by_name(tmp_path, reference_dir):
    path = write_config(tmp_path, reference_dir, **{"generation.kernels": "torch"})
    assert load_config(path).config.generation.kernels == "torch"
    assert load_config(write_config(tmp_path, reference_dir, name="d.yaml")).config.generation.kernels == "auto"
    path = write_config(tmp_path, reference_dir, name="bad.yaml", **{"generation.kernels": "cuda"})
    with pytest.raises(ConfigError, match=r"generation.kernels: .*'auto', 'triton' or 'torch'.*cuda"):
        load_config(path)


def test_missing_reference_folder_is_a_config_error(tmp_path):
    path = write_config(tmp_path, tmp_path / "no-such-folder")
    with pytest.raises(ConfigError, match=r"privacy.reference_dir: folder .*no-such-folder does not exist"):
        load_config(path)


def test_split_fractions_must_sum_to_one(tmp_path, reference_dir):
    path = write_config(tmp_path, reference_dir, **{"prompts.splits": {"train": 0.5, "test": 0.2}})
    with pytest.raises(ConfigError, match="prompts.splits"):
        load_config(path)


def test_overrides_are_validated(tmp_path, reference_dir):
    path = write_config(tmp_path, reference_dir)
    assert load_config(path, n_clips=3).config.n_clips == 3
    with pytest.raises(ConfigError, match="override rejected: n_clips"):
        load_config(path, n_clips=0)


def test_fingerprint_changes_with_content(tmp_path, reference_dir):
    a = load_config(write_config(tmp_path, reference_dir, name="a.yaml")).config
    b = load_config(write_config(tmp_path, reference_dir, name="b.yaml", seed=1)).config
    assert a.fingerprint() == load_config(tmp_path / "a.yaml").config.fingerprint()
    assert a.fingerprint() != b.fingerprint()


@pytest.mark.parametrize("override, key", [
    ({"colour": "blue"}, "colour: unknown key"),
    ({"n_clips": -1}, "n_clips"),
])
def test_validate_config_cli_exits_2_and_names_file_and_key(tmp_path, reference_dir, override, key):
    path = write_config(tmp_path, reference_dir, **override)
    result = run_cli("validate-config", str(path))
    assert result.returncode == 2
    assert str(path) in result.stderr and key in result.stderr


def test_committed_schemas_match_the_code():
    for name, content in generated_schemas().items():
        committed = (SCHEMA_DIR / name).read_text()
        assert committed == render(content), f"schemas/{name} is stale: run `make schemas`"
    assert json.loads((SCHEMA_DIR / "config.schema.json").read_text()) == config_json_schema()


def test_config_json_schema_accepts_the_default_and_rejects_unknown_keys():
    import jsonschema

    schema = config_json_schema()
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    jsonschema.validate(data, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**data, "colour": "blue"}, schema)


def test_an_older_config_loads_and_a_newer_or_changed_one_says_what_changed(tmp_path, reference_dir, monkeypatch):
    import pipeline.config as config_module

    older = write_config(tmp_path, reference_dir, name="older.yaml")  # written before config_version existed
    assert "config_version" not in yaml.safe_load(older.read_text())
    assert load_config(older).config.config_version == config_module.CONFIG_VERSION
    newer = write_config(tmp_path, reference_dir, name="newer.yaml", config_version=config_module.CONFIG_VERSION + 1)
    with pytest.raises(ConfigError, match="config_version: 3 is newer than this synthaudio reads \\(2\\); upgrade"):
        load_config(newer)
    monkeypatch.setitem(config_module.MOVED_KEYS, "privacy.max_reject", "renamed to privacy.max_reject_rate")
    moved = write_config(tmp_path, reference_dir, name="moved.yaml", **{"privacy.max_reject": 0.1})
    with pytest.raises(ConfigError, match="privacy.max_reject: renamed to privacy.max_reject_rate \\(this config "
                                          "predates config_version 2\\)"):
        load_config(moved)
