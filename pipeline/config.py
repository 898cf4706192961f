"""The one place that reads a build config (YAML) and validates it.

Stages never see YAML or this module's error handling: they take the typed `BuildConfig` (or plain
values taken from it). Relative paths in a config are resolved against the config file's folder,
so a config means the same thing whatever the current directory is.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline import alert_defaults
from pipeline.errors import ConfigError
from pipeline.files import canonical_json

DATASET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


# Privacy is declared here, once per field: a field built with `private=True` never leaves the
# workspace. `public_view` derives the published config from these marks; `PRIVATE_FIELDS` lists them
# (pinned by a test, so a new private-looking field cannot slip into releases unnoticed).
PRIVATE = {"private": True}
REDACTED = "(private)"


def private(default=..., **kwargs):
    """A `Field` whose value is private: replaced by REDACTED in every published view of the config."""
    return Field(default, json_schema_extra=PRIVATE, **kwargs)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageConfig(_Strict):
    workspace: str = private("../var/runs", description="Root of run workspaces (runs/<dataset>/<version>/...): a folder, "
                                                      "or an fsspec URL such as s3://bucket/runs (tasks then share no disk).")
    releases: str = private("../var/releases", description="Root of published releases: a folder or an fsspec URL.")
    reference_cache: str | None = private(
        None, description="Cached reference-voice embeddings (private, never released); null: <workspace>/_reference_cache.")
    models: str = private("../var/models", description="Root of trained models (models/<dataset>/<version>/): private "
                                                     "like the corpus they learned from, never published.")
    retention_days: int = Field(
        30, ge=0, le=3650, description="`python -m pipeline gc` removes the private leftovers (tokens, primes, per-clip "
                                       "audits, generated audio, training checkpoints, stale cached embeddings) of runs "
                                       "whose release was published this many days ago or more.")


MAX_TEMPERATURE = 2.0  # the hottest any prior level is sampled (prompts, upsamplers, regenerations)
CAPTION_FIELDS = ("genre", "artist", "vocals", "duration_s", "temperature", "lyrics")


class LyricsConfig(_Strict):
    source: Literal["instrumental", "lines", "file", "templates"] = Field(
        "instrumental", description="Where lyrics come from: none, `lines`, a UTF-8 `file` of lines, or `templates`."
    )
    lines: list[str] = Field(default_factory=list, description="Lyric lines (source: lines).")
    file: str | None = private(None, description="Text file, one lyric line per line (source: file); relative to the config.")
    templates: list[str] = Field(default_factory=list, description="Lines with {slot} fields (source: templates).")
    slots: dict[str, list[str]] = Field(default_factory=dict, description="Slot -> values filled into templates.")
    non_ascii: Literal["transliterate", "drop", "refuse"] = Field(
        "transliterate", description="Characters outside the model's lyric vocabulary: transliterate to ASCII "
        "(then drop what remains), drop them, or refuse the line."
    )
    on_sensitive: Literal["refuse", "drop"] = Field(
        "refuse", description="A line naming a protected person or holding an e-mail address or phone number: "
        "refuse the config, or drop the line (counted in the run report)."
    )

    @model_validator(mode="after")
    def _source_has_its_data(self) -> "LyricsConfig":
        needs = {"lines": self.lines, "file": self.file, "templates": self.templates}
        if self.source in needs and not needs[self.source]:
            raise ValueError(f"source {self.source!r} needs a non-empty `{self.source}` key")
        import string

        for template in self.templates:
            for _, field, _, _ in string.Formatter().parse(template):
                if field is not None and field not in self.slots:
                    raise ValueError(f"template {template!r} uses slot {{{field}}}, not defined in `slots` "
                                     f"(defined: {sorted(self.slots)})")
        return self


class PromptConfig(_Strict):
    genres: dict[str, float] = Field(..., min_length=1, description="Genre -> weight; counts follow weights exactly.")
    artists: dict[str, float] = Field(..., min_length=1, description="Artist style token -> sampling weight.")
    lyrics: LyricsConfig = LyricsConfig()
    duration_s: float | list[float] = Field(
        2.0, description="Clip duration in seconds, or a list to choose from uniformly (equal lengths batch together)."
    )
    temperature: float | list[float] = Field(0.98, description="Sampling temperature, or a list to choose from.")
    caption_template: str = Field(
        "a {genre} piece in the style of {artist}, {vocals}, {duration_s:g} seconds",
        description=f"Caption per clip; fields: {', '.join(CAPTION_FIELDS)} (temperature: the prompt's; a clip "
        "regenerated by the privacy gates is sampled hotter, which the release's temperature column says).",
    )
    protected_names: list[str] = private(
        default_factory=list, description="People who must never be an artist token or appear in lyrics "
        "(the reference set's speaker ids are always added)."
    )
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

    @field_validator("duration_s", "temperature")
    @classmethod
    def _one_or_more_in_range(cls, value, info):
        high = {"duration_s": 600, "temperature": MAX_TEMPERATURE}[info.field_name]
        values = value if isinstance(value, list) else [value]
        if not values or any(not 0 < v <= high for v in values):
            raise ValueError(f"{info.field_name} values must be in (0, {high:g}], got {value}")
        return value

    @field_validator("caption_template")
    @classmethod
    def _caption_fields(cls, template: str) -> str:
        import string

        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError as exc:
            raise ValueError(f"caption_template is not a valid format string: {exc}") from None
        unknown = [f for f in fields if f not in CAPTION_FIELDS]
        if unknown:
            raise ValueError(f"caption_template uses unknown fields {unknown}; allowed: {', '.join(CAPTION_FIELDS)}")
        return template

    @field_validator("splits")
    @classmethod
    def _fractions_sum_to_one(cls, splits: dict[str, float]) -> dict[str, float]:
        if any(v < 0 for v in splits.values()) or abs(sum(splits.values()) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {splits}")
        return splits

    def durations(self) -> list[float]:
        return self.duration_s if isinstance(self.duration_s, list) else [self.duration_s]

    def temperatures(self) -> list[float]:
        return self.temperature if isinstance(self.temperature, list) else [self.temperature]


class GenerationConfig(_Strict):
    preset: Literal["tiny", "jukebox-1b-lyrics", "jukebox-5b-lyrics"] = Field(
        "tiny", description="Model preset; `tiny` is embedded (random weights from the seed: a smoke model, not music)."
    )
    weights_dir: str | None = private(None, description="Local folder of real weights (save_pretrained layout).")
    model: str | None = Field(
        None, pattern=r"^(latest|\d{8}T\d{6}Z-[0-9a-f]{8})$",
        description="A model trained on the private corpus (`python -m pipeline train`): `latest` (the newest at plan "
                    "time, pinned in the run's plan) or a model version; null: the preset's own weights.")
    max_batch_size: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = Field(
        4, description="Clips sampled together (1-256); `auto`: as many as the GPU's free memory holds (4 on CPU).")
    sampler: Literal["fast", "reference"] = Field(
        "fast", description="`fast`: our sampling loop (static caches, CUDA graphs, a random stream per clip, so a "
                            "clip's audio does not depend on its batch); `reference`: transformers' "
                            "JukeboxPrior.sample, one random stream per batch (for comparison).")
    kernels: Literal["auto", "triton", "torch"] = Field(
        "auto", description="The fast sampler's decode step on a GPU: `triton` (fused kernels, five per layer), "
                            "`torch` (torch operations, ~15 per layer), `auto` (triton where Triton is installed and "
                            "the model's layers are ones the kernels compute). The CPU always runs its own step.")
    levels: int = Field(3, ge=1, le=3, description="Prior levels sampled: 3 = full quality, 1 = top-level preview.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="Weights and activations on GPU (CPU always runs float32).")
    upsampler_temperatures: list[float] | None = Field(
        None, min_length=2, max_length=2,
        description="Temperatures of the middle and bottom priors, each in (0, 2]; null: the prompt's temperature at "
                    "every level.")
    top_k: int = Field(0, ge=0, description="Sample among the k most likely tokens (0: no limit).")
    top_p: float = Field(0.0, ge=0, le=1, description="Nucleus sampling mass (0: off).")
    on_oom: Literal["fail", "halve"] = Field(
        "fail", description="Out of GPU memory: fail with the batch size to try, or halve the batch and retry.")
    mode: Literal["prompt", "continue", "rerender"] = Field(
        "prompt", description="`prompt`: new audio from the prompt; `continue`: prime with the first prime_seconds of "
                              "a corpus clip and sample what follows (the prime is cut, never exported); `rerender`: "
                              "keep a corpus clip's top-level codes (all but resample_top_fraction of them) and "
                              "sample the middle and bottom levels anew, so its words and melody stay and its voice "
                              "does not. Both need source.corpus.")
    prime_seconds: float = Field(1.0, gt=0, le=60, description="continue: seconds of the corpus clip used as the "
                                                               "prime (halved at each regeneration of a rejected clip).")
    resample_top_fraction: float = Field(
        0.0, ge=0, le=1, description="rerender: share of the top-level codes resampled (the end of the clip); each "
                                     "regeneration of a rejected clip resamples a quarter more.")

    @field_validator("upsampler_temperatures")
    @classmethod
    def _temperatures_in_range(cls, value):
        if value is not None and any(not 0 < t <= MAX_TEMPERATURE for t in value):
            raise ValueError(f"each temperature must be in (0, {MAX_TEMPERATURE:g}] (as prompts.temperature), "
                             f"got {value}")
        return value


class QualityGates(_Strict):
    """Per quality flag: `drop` keeps a flagged clip out of the release, `keep` exports it with the flag."""

    silent: Literal["drop", "keep"] = "drop"
    clipped: Literal["drop", "keep"] = "keep"
    too_short: Literal["drop", "keep"] = "drop"
    non_finite: Literal["drop", "keep"] = "drop"


class FeatureConfig(_Strict):
    feature_set: Literal["basic", "full"] = Field(
        "basic", description="Named set of features: `basic` (everything but pitch) or `full` (adds pitch tracking).")
    workers: int = Field(0, ge=0, le=256, description="Processes extracting clips in parallel; 0 = one per CPU core "
                                                      "(the shard's share of them when `run` runs shards in parallel).")
    silence_dbfs: float = Field(-60.0, lt=0, description="A clip whose RMS level is below this (dBFS) is `silent`.")
    max_clipping_ratio: float = Field(
        0.001, ge=0, le=1, description="A clip with more than this share of samples at full scale is `clipped`.")
    min_duration_s: float = Field(0.25, ge=0, description="A clip shorter than this (seconds) is `too_short`.")
    gates: QualityGates = Field(QualityGates(), description="What happens to a clip with each quality flag.")


class PrivacyConfig(_Strict):
    reference_dir: str | None = private(
        None, description="Private reference voices: a folder of <speaker_id>/<file>.{wav,flac}, or a .csv manifest "
                          "with columns speaker_id,path; null: the corpus (`source.corpus`), whose every speaker is "
                          "protected.")
    threshold: float | Literal["auto"] = Field(
        "auto", description="Leak score (less its detected condition's calibrated offset) at or above which a clip "
                            "is a leak; `auto`: the lowest threshold that keeps the false-positive rate within max_fpr "
                            "for every impostor condition, on calibration trials that enrolment never saw (see "
                            "pipeline/privacy/calibration.py).")
    target_recall: float = Field(
        0.95, gt=0, lt=1, description="Share of held-out genuine calibration trials the threshold must flag; a run "
                                      "whose detector cannot reach it within max_fpr fails. Also judges the canaries.")
    max_fpr: float = Field(
        0.05, gt=0, lt=1, description="False-positive bound for `auto`: share of impostor trials (other voices under "
                                      "each condition, music, noise) allowed at or above the threshold, per condition.")
    on_recall_shortfall: Literal["fail", "warn"] = Field(
        "fail", description="The calibrated detector cannot reach target_recall within max_fpr: `fail` the run "
                            "(nothing is published), or `warn` and publish with the shortfall stated in the privacy "
                            "report and the card.")
    max_reject_rate: float = Field(0.05, ge=0, le=1, description="A run rejecting more clips than this fails.")
    canaries_per_speaker: int = Field(1, ge=1, le=10, description="Held-out utterances per speaker turned into canaries.")
    cohort_dir: str | None = private(
        None, description="More voices NOT in the reference set (<id>/<file>), added to the synthesised impostor "
                          "cohort that scores are normalised and calibrated against.")
    skip_bad_reference_files: bool = Field(
        False, description="Leave out unreadable, empty or unvoiced reference files (listed in a warning) "
                           "instead of failing the run.")
    workers: int = Field(0, ge=0, le=256, description="Processes scoring clips in parallel; 0 = one per CPU core "
                                                      "(the shard's share of them when `run` runs shards in parallel).")
    on_leak: Literal["drop", "regenerate"] = Field(
        "drop", description="A rejected clip: drop it, or generate it again with a new seed, each time "
                            "regenerate_temperature_step hotter (up to max_regenerations times), to keep the requested "
                            "count.")
    max_regenerations: int = Field(3, ge=1, le=20, description="Attempts per rejected clip when on_leak or on_copy "
                                                                "is regenerate.")
    regenerate_temperature_step: float = Field(
        0.2, ge=0, le=1, description="Each regeneration samples every prior level this much hotter than the last "
                                     "(up to 2.0): a model that learned its corpus well enough to copy it strays from "
                                     "it only when sampled hotter, so each attempt trades some closeness for privacy. "
                                     "0: only the seed changes. The release's temperature column says what each clip's "
                                     "top level was sampled at.")
    copy_ratio: float = Field(
        0.7, gt=0, le=1, description="Copy check (runs whose model learned from source.corpus): a clip closer to a "
                                     "training recording (or the model's rendition of one) than this share of the "
                                     "closest held-out recording's distance is a copy of the corpus (distance to "
                                     "closest record in a log-mel spectrogram, over 1.5 s or in one window, each against "
                                     "its own held-out yardstick). On the copy benchmark's tuning part, copies "
                                     "moved in pitch or time sat at most at 0.64 of that distance and new "
                                     "recordings at least at 0.74.")
    on_copy: Literal["drop", "regenerate"] = Field(
        "drop", description="A clip the copy check rejects: drop it, or generate it again with a new seed, "
                            "each time regenerate_temperature_step hotter (up to max_regenerations times).")


class AlertsConfig(_Strict):
    email: list[str] = private(
        ..., min_length=1, description="Addresses notified (private: never published) through Airflow's SMTP "
                                       "notifier when a build fails, a gate trips or a release is published.")
    from_email: str = private(alert_defaults.FROM_EMAIL, description="Sender address of the notifications.")
    smtp_conn_id: str = Field(alert_defaults.SMTP_CONN_ID, description="Airflow connection of the SMTP server.")
    events: list[Literal["failure", "gate", "published"]] = Field(
        list(alert_defaults.EVENTS), description="Which events notify: a failed task (after its retries), a "
                                                      "tripped gate (reject rate, detector self-test, copy check, "
                                                      "private data), a published release.")


class ExportConfig(_Strict):
    embed_audio: bool = Field(False, description="Embed FLAC bytes in Parquet instead of referencing audio/.")
    max_shard_mb: float = Field(256, gt=0, le=16_384, description="Parquet files are split to stay under this size (MiB).")
    fidelity_embedding: str = Field(
        "features", pattern=r"^(features|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$",
        description="Vectors the fidelity report's Fréchet distance compares: `features` (the pipeline's headline "
                    "features, no download) or `module:function` mapping (mono float32 audio, sample rate) to a "
                    "1-D vector, e.g. a learned embedding from weights on your disk.")


class SourceConfig(_Strict):
    corpus: str = private(..., description="The private corpus: a folder of <speaker_id>/<file>.{wav,flac}, or a .csv "
                                           "manifest speaker_id,path[,lyrics,genre,artist]. Every speaker in it is "
                                           "protected by the leak check; none of it is ever published.")
    holdout_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of the corpus's files that training never sees (at least one): the "
                                     "baseline of the copy check and of the fidelity comparison.")
    min_sample_rate_hz: int = Field(16_000, ge=8_000, le=192_000,
                                    description="Corpus files recorded below this rate are refused (listed together).")


class TrainingConfig(_Strict):
    """`python -m pipeline train`: the tiny preset learns its VQ-VAE and priors from scratch on the corpus; real
    presets fine-tune their priors (top first) from `generation.weights_dir`."""

    vqvae_steps: int = Field(200, ge=0, le=1_000_000, description="VQ-VAE optimiser steps (tiny preset only).")
    prior_steps: Annotated[int, Field(ge=0, le=1_000_000)] | Annotated[list[Annotated[int, Field(ge=0, le=1_000_000)]], Field(min_length=3, max_length=3)] = Field(
        150, description="Optimiser steps per prior: one number for all, or [top, middle, bottom].")
    batch_size: int = Field(4, ge=1, le=1024, description="Examples per step.")
    learning_rate: float = Field(3e-4, gt=0, le=1, description="Peak learning rate of the priors (Adam, linear "
                                                             "warm-up, cosine decay).")
    vqvae_learning_rate: float = Field(3e-3, gt=0, le=1, description="Peak learning rate of the VQ-VAE (tiny preset).")
    warmup_steps: int = Field(20, ge=0, description="Steps of linear learning-rate warm-up.")
    checkpoint_every: int = Field(25, ge=1, description="Steps between checkpoints (a killed run resumes at the last).")
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto", description="Recompute each transformer layer in the backward pass (less memory, ~30% slower); "
                            "`auto`: on for real presets, off for tiny.")
    dtype: Literal["float32", "bfloat16"] = Field(
        "bfloat16", description="Autocast dtype on GPU (weights and optimiser stay float32); CPU trains in float32.")
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def steps_of_prior(self, level: int) -> int:
        return self.prior_steps[level] if isinstance(self.prior_steps, list) else self.prior_steps


# The config layout's version. 1: configs written before the key existed (they load as they are: every key added
# since has a default); 2: this one. A key that moved or went away is listed in MOVED_KEYS, so loading an older
# config says what changed instead of only "unknown key".
CONFIG_VERSION = 2
MOVED_KEYS: dict[str, str] = {}  # old dotted key -> what became of it (e.g. "renamed to privacy.x in version 3")


class BuildConfig(_Strict):
    config_version: int = Field(CONFIG_VERSION, ge=1, le=CONFIG_VERSION, description="Layout version of this config (default: the "
                                                                   "current one); older configs load unchanged.")
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
    source: SourceConfig | None = Field(None, description="The private corpus a model learns from; null: none.")
    alerts: AlertsConfig | None = Field(None, description="Email notifications of the Airflow DAGs; null: none.")
    training: TrainingConfig = TrainingConfig()

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

    @model_validator(mode="after")
    def _someone_is_protected(self) -> "BuildConfig":
        if self.privacy.reference_dir is None and self.source is None:
            raise ValueError("privacy.reference_dir: required when there is no source.corpus (the leak check needs "
                             "the voices it protects)")
        if self.privacy.reference_dir is not None and self.source is not None:
            # One reference set per run today: protecting only reference_dir would leave the corpus's speakers out.
            raise ValueError("privacy.reference_dir and source.corpus together are not supported yet: the corpus's "
                             "speakers must be protected too. Leave privacy.reference_dir out (the corpus is then the "
                             "reference set) and add the extra people to the corpus manifest")
        if self.generation.mode != "prompt" and self.source is None:
            raise ValueError(f"generation.mode: {self.generation.mode!r} starts from corpus clips and needs source.corpus")
        if self.generation.model is not None and self.source is None:
            raise ValueError("generation.model: a trained model needs source.corpus (the corpus it learned from is "
                             "the reference set that protects its speakers)")
        return self

    def with_overrides(self, **values) -> "BuildConfig":
        """A validated copy with top-level values replaced (e.g. n_clips from the CLI or a DAG param)."""
        data = self.model_dump()
        data.update({k: v for k, v in values.items() if v is not None})
        return BuildConfig.model_validate(data)

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of this config (paths as written, before resolution). Private:
        it is a hash of private values too, so it identifies stage inputs but is never published."""
        return hashlib.sha256(canonical_json(self.model_dump()).encode()).hexdigest()

    def public_view(self) -> dict:
        """The config as it may be published: every field marked private replaced by REDACTED (an unset
        private value stays null or empty, so a reader sees that it was not set)."""
        return _redact(self, self.model_dump())

    def public_fingerprint(self) -> str:
        """sha256 of the canonical JSON of `public_view()`: the config hash a release publishes."""
        return hashlib.sha256(canonical_json(self.public_view()).encode()).hexdigest()

    def private_values(self) -> dict[str, list[str]]:
        """Dotted field path -> the non-empty strings it holds, for every private field (what must never be
        found in a release)."""
        found: dict[str, list[str]] = {}
        for path in PRIVATE_FIELDS:
            value = self
            for part in path.split("."):
                value = getattr(value, part, None)  # an optional section that is not set holds nothing
            strings = [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str) and v.strip()]
            if strings:
                found[path] = strings
        return found


def _is_private(field) -> bool:
    extra = field.json_schema_extra
    return isinstance(extra, dict) and extra.get("private") is True


def _redact(model: BaseModel, data: dict) -> dict:
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if _is_private(field):
            data[name] = REDACTED if value not in (None, "", [], {}) else data[name]
        elif isinstance(value, BaseModel):
            data[name] = _redact(value, data[name])
    return data


def _submodel(annotation) -> type[BaseModel] | None:
    """The config section a field holds: its annotation, or the model inside `Section | None`."""
    import typing

    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _private_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        if _is_private(field):
            paths.append(prefix + name)
        elif (section := _submodel(field.annotation)) is not None:
            paths += _private_paths(section, f"{prefix}{name}.")
    return paths


PRIVATE_FIELDS: tuple[str, ...] = tuple(_private_paths(BuildConfig))


class LoadedConfig(BaseModel):
    """A validated config plus where it came from and its resolved paths."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    path: Path
    config: BuildConfig
    workspace_root: Path
    releases_root: Path
    reference_dir: Path
    weights_dir: Path | None
    corpus: Path | None = None
    models_root: Path | None = None
    lyrics_file: Path | None = None
    cohort_dir: Path | None = None
    reference_cache: Path | None = None
    workspace_url: str | None = None  # storage.workspace when it is a URL; workspace_root is then local scratch
    releases_url: str | None = None

    @property
    def reference_cache_dir(self) -> Path:
        """Where embeddings of reference files are cached: storage.reference_cache, else <workspace>/_reference_cache
        (shared by the runs of one workspace root; never released)."""
        return self.reference_cache or self.workspace_root / "_reference_cache"


def _describe(error: dict) -> str:
    loc = ".".join(str(p) for p in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        if loc in MOVED_KEYS:
            return f"{loc}: {MOVED_KEYS[loc]} (this config predates config_version {CONFIG_VERSION})"
        return f"{loc}: unknown key"
    if error["loc"] == ("config_version",) and error["type"] == "less_than_equal":
        return (f"config_version: {error.get('input')!r} is newer than this synthaudio reads ({CONFIG_VERSION}); "
                "upgrade synthaudio, or write the config for this version")
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

    from pipeline.storage import is_url, scratch_root

    workspace, releases = config.storage.workspace, config.storage.releases
    loaded = LoadedConfig(
        path=path,
        config=config,
        workspace_root=scratch_root(workspace) / "runs" if is_url(workspace) else resolve(workspace),
        releases_root=scratch_root(releases) / "releases" if is_url(releases) else resolve(releases),
        workspace_url=workspace if is_url(workspace) else None,
        releases_url=releases if is_url(releases) else None,
        reference_dir=resolve(config.privacy.reference_dir or config.source.corpus),
        corpus=resolve(config.source.corpus) if config.source else None,
        models_root=resolve(config.storage.models),
        weights_dir=resolve(config.generation.weights_dir) if config.generation.weights_dir else None,
        lyrics_file=resolve(config.prompts.lyrics.file) if config.prompts.lyrics.file else None,
        cohort_dir=resolve(config.privacy.cohort_dir) if config.privacy.cohort_dir else None,
        reference_cache=resolve(config.storage.reference_cache) if config.storage.reference_cache else None,
    )
    if loaded.lyrics_file is not None and not loaded.lyrics_file.is_file():
        raise ConfigError(f"{path}: prompts.lyrics.file: {loaded.lyrics_file} does not exist; "
                          "give a UTF-8 text file with one lyric line per line")
    if check_paths and not (loaded.reference_dir.is_dir() or loaded.reference_dir.suffix.lower() == ".csv"
                            and loaded.reference_dir.is_file()):
        raise ConfigError(
            f"{path}: {'privacy.reference_dir' if config.privacy.reference_dir else 'source.corpus'}: "
            f"folder {loaded.reference_dir} does not exist. "
            "Point it at a folder of <speaker_id>/<file>.wav|flac; for the embedded default, "
            "run `make voices` (python -m pipeline.privacy.test_voices) to synthesise one."
        )
    if check_paths and loaded.cohort_dir is not None and not loaded.cohort_dir.is_dir():
        raise ConfigError(f"{path}: privacy.cohort_dir: folder {loaded.cohort_dir} does not exist; give a folder of "
                          "<voice_id>/<file>.wav|flac of voices that are not in the reference set, or null")
    return loaded


def config_json_schema() -> dict:
    """The JSON Schema committed as schemas/config.schema.json."""
    return BuildConfig.model_json_schema()
