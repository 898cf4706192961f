"""The one place that reads a build config (YAML) and validates it.

Stages never see YAML or this module's error handling: they take the typed `BuildConfig` (or plain
values taken from it). Relative paths in a config are resolved against the config file's folder,
so a config means the same thing whatever the current directory is.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import ConfigError

DATASET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageConfig(_Strict):
    workspace: str = Field("../var/runs", description="Root of run workspaces (runs/<dataset>/<version>/...).")
    releases: str = Field("../var/releases", description="Root of published releases.")


class PromptConfig(_Strict):
    genres: dict[str, float] = Field(..., min_length=1, description="Genre -> sampling weight.")
    artists: dict[str, float] = Field(..., min_length=1, description="Artist style token -> sampling weight.")
    lyrics: list[str] = Field(default_factory=list, description="Lyric lines; empty means instrumental.")
    duration_s: float = Field(2.0, gt=0, le=60, description="Clip duration in seconds.")
    temperature: float = Field(0.98, gt=0, le=2.0, description="Sampling temperature of every level.")
    splits: dict[Literal["train", "validation", "test"], float] = Field(
        default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1},
        description="Split -> fraction of clips; fractions sum to 1.",
    )

    @field_validator("genres", "artists")
    @classmethod
    def _positive_weights(cls, weights: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in weights.items() if not v > 0}
        if bad:
            raise ValueError(f"weights must be > 0, got {bad}")
        return weights

    @field_validator("splits")
    @classmethod
    def _fractions_sum_to_one(cls, splits: dict[str, float]) -> dict[str, float]:
        if any(v < 0 for v in splits.values()) or abs(sum(splits.values()) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {splits}")
        return splits


class GenerationConfig(_Strict):
    preset: Literal["tiny", "jukebox-1b-lyrics", "jukebox-5b-lyrics"] = Field(
        "tiny", description="Model preset; `tiny` is embedded (random weights from the seed: a smoke model, not music)."
    )
    weights_dir: str | None = Field(None, description="Local folder of real weights (save_pretrained layout).")
    max_batch_size: int = Field(4, ge=1, le=256, description="Clips sampled together.")
    levels: int = Field(3, ge=1, le=3, description="Prior levels sampled: 3 = full quality, 1 = top-level preview.")
    device: Literal["auto", "cpu", "cuda"] = "auto"


class FeatureConfig(_Strict):
    feature_set: Literal["basic"] = Field("basic", description="Named set of features to extract.")


class PrivacyConfig(_Strict):
    reference_dir: str = Field(..., description="Private reference voices: <speaker_id>/<file>.{wav,flac}.")
    threshold: float = Field(0.75, gt=0, lt=1, description="Cosine similarity at or above which a clip is a leak.")
    max_reject_rate: float = Field(0.05, ge=0, le=1, description="A run rejecting more clips than this fails.")
    canaries_per_speaker: int = Field(1, ge=1, le=10, description="Held-out utterances scored as known leaks.")


class ExportConfig(_Strict):
    embed_audio: bool = Field(False, description="Embed FLAC bytes in Parquet instead of referencing audio/.")


class BuildConfig(_Strict):
    dataset: str = Field(..., description="Dataset name: lower-case letters, digits, underscores.")
    description: str = ""
    schedule: str | None = Field(None, description="Airflow schedule (cron or preset); null = manual only.")
    seed: int = Field(0, ge=0, description="Config seed; the run seed mixes it with dataset and version.")
    n_clips: int = Field(..., ge=1, le=1_000_000)
    n_shards: int = Field(1, ge=1, le=10_000)
    storage: StorageConfig = StorageConfig()
    prompts: PromptConfig
    generation: GenerationConfig = GenerationConfig()
    features: FeatureConfig = FeatureConfig()
    privacy: PrivacyConfig
    export: ExportConfig = ExportConfig()

    @field_validator("dataset")
    @classmethod
    def _dataset_name(cls, name: str) -> str:
        if not DATASET_NAME.match(name):
            raise ValueError(f"{name!r} is not a dataset name: use lower-case letters, digits and '_'")
        return name

    @model_validator(mode="after")
    def _shards_not_more_than_clips(self) -> "BuildConfig":
        if self.n_shards > self.n_clips:
            raise ValueError(f"n_shards ({self.n_shards}) must not exceed n_clips ({self.n_clips})")
        return self

    def with_overrides(self, **values) -> "BuildConfig":
        """A validated copy with top-level values replaced (e.g. n_clips from the CLI or a DAG param)."""
        data = self.model_dump()
        data.update({k: v for k, v in values.items() if v is not None})
        return BuildConfig.model_validate(data)

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of this config (paths as written, before resolution)."""
        return hashlib.sha256(canonical_json(self.model_dump()).encode()).hexdigest()


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


class LoadedConfig(BaseModel):
    """A validated config plus where it came from and its resolved paths."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    path: Path
    config: BuildConfig
    workspace_root: Path
    releases_root: Path
    reference_dir: Path
    weights_dir: Path | None


def _describe(error: dict) -> str:
    loc = ".".join(str(p) for p in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{loc}: unknown key"
    if error["type"] == "missing":
        return f"{loc}: required key is missing"
    return f"{loc}: {error['msg']} (got {error.get('input')!r})"


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def parse_config(data: object, source: str) -> BuildConfig:
    """Validate already-parsed YAML; errors name `source`, every bad key path and what is allowed."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a build config must be a mapping of keys, got {type(data).__name__}")
    try:
        return BuildConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            line = _describe(error)
            if error["type"] == "extra_forbidden":
                line += f"; allowed keys here: {', '.join(_allowed_keys(BuildConfig, error['loc']))}"
            lines.append(line)
        raise ConfigError(
            f"{source}: invalid build config:\n  " + "\n  ".join(lines) +
            "\nFix these keys (schemas/config.schema.json documents every key), then rerun."
        ) from None


def load_config(path: str | Path, *, check_paths: bool = True, **overrides) -> LoadedConfig:
    """Read, validate and resolve a build config; raises ConfigError (exit code 2) on any problem."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; pass a YAML file such as configs/default.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    config = parse_config(data, str(path))
    if overrides:
        try:
            config = config.with_overrides(**overrides)
        except ValidationError as exc:
            raise ConfigError(f"{path}: override rejected: " + "; ".join(_describe(e) for e in exc.errors())) from None

    def resolve(value: str) -> Path:
        return (path.parent / Path(value).expanduser()).resolve()

    loaded = LoadedConfig(
        path=path,
        config=config,
        workspace_root=resolve(config.storage.workspace),
        releases_root=resolve(config.storage.releases),
        reference_dir=resolve(config.privacy.reference_dir),
        weights_dir=resolve(config.generation.weights_dir) if config.generation.weights_dir else None,
    )
    if check_paths and not loaded.reference_dir.is_dir():
        raise ConfigError(
            f"{path}: privacy.reference_dir: folder {loaded.reference_dir} does not exist. "
            "Point it at a folder of <speaker_id>/<file>.wav|flac; for the embedded default, "
            "run `make voices` (python -m pipeline.privacy.test_voices) to synthesise one."
        )
    return loaded


def config_json_schema() -> dict:
    """The JSON Schema committed as schemas/config.schema.json."""
    return BuildConfig.model_json_schema()
