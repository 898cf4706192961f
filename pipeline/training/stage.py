"""`train`: a Jukebox model that learned from the private corpus, published as a private, versioned model.

The tiny preset learns everything (VQ-VAE, then the top, middle and bottom priors) from scratch, starting
from the preset's seeded weights; a real preset keeps its VQ-VAE and fine-tunes its priors, top first,
from `generation.weights_dir`. Work happens in `<workspace>/_training/<dataset>/<inputs>/` (checkpoints: a
killed run resumes there) and the finished model is renamed into
`<storage.models>/<dataset>/<version>/` in one step, where `version` is `<UTC time>-<inputs hash>`:

    config.json, model.safetensors, artists.json, genres.json, lyrics.json, tokenizer_config.json  (from_pretrained)
    model.json     what it is: sha256 of the weights, corpus fingerprint, preset, training settings, loss curves,
                   code version, created_at (private like the weights)
    corpus.json    which corpus files it learned from and which it never saw (the holdout), by sha256

A model can reproduce what it learned from, so it is as private as the corpus: it is never published with
a release (a release names only its sha256 and the corpus fingerprint). Training the same inputs again
returns the model already published.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline import __version__
from pipeline.config import LoadedConfig
from pipeline.errors import BadInput
from pipeline.files import fingerprint, write_json_atomic
from pipeline.training.corpus import Corpus, load_corpus, read_audio

log = logging.getLogger("synthaudio.training")
VQVAE_CROP_SAMPLES = 8 * 1024  # 0.19 s per VQ-VAE example: on 2 CPU cores, more steps on short crops learned
# the corpus's spectrum faster than fewer on long ones (the three 44.1 kHz decoders dominate a step)
MODEL_FILE = "model.json"
MIN_TRAIN_SECONDS = {"tiny": 4.0}  # the tiny priors' window is 2.97 s: less audio than this and they learn padding
# Part of the inputs' fingerprint: a change to what training computes must not find (and return, or resume) a model or
# checkpoint made the old way. v2: each VQ-VAE level quantised with its own codebook (jukebox.vqvae_forward).
TRAINING_RECIPE = "v2-own-codebooks"


@dataclass(frozen=True)
class TrainedModel:
    version: str
    path: Path
    weights_sha256: str
    corpus_fingerprint: str

    @classmethod
    def read(cls, path: Path) -> "TrainedModel":
        meta = json.loads((path / MODEL_FILE).read_text())
        return cls(meta["version"], path, meta["weights_sha256"], meta["corpus_fingerprint"])


def device_for(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise BadInput("training.device: cuda requested but no CUDA device is visible; use auto or cpu")
    return requested


def inputs_fingerprint(loaded: LoadedConfig, corpus: Corpus, base_weights_sha256: str) -> str:
    config = loaded.config
    return fingerprint({"corpus": corpus.fingerprint, "preset": config.generation.preset, "base": base_weights_sha256,
                        "training": config.training.model_dump(), "holdout": config.source.holdout_fraction,
                        "seed": config.seed, "code": __version__, "recipe": TRAINING_RECIPE})


def model_folder(models_root: Path, dataset: str, version: str) -> Path:
    """Where a model version of a dataset lives: `<storage.models>/<dataset>/<version>/`."""
    return models_root / dataset / version


def published_models(models_root: Path, dataset: str) -> list[TrainedModel]:
    """Finished models of a dataset, oldest first (their versions sort by time)."""
    folder = models_root / dataset
    if not folder.is_dir():
        return []
    return [TrainedModel.read(p) for p in sorted(folder.iterdir())
            if p.is_dir() and not p.name.startswith(".") and (p / MODEL_FILE).is_file()]


def resolve_model(models_root: Path, dataset: str, wanted: str) -> TrainedModel:
    """`latest` or a version -> the published model; BadInput saying how to train one otherwise."""
    models = published_models(models_root, dataset)
    if wanted == "latest":
        if not models:
            raise BadInput(f"generation.model: latest: no trained model for dataset {dataset!r} under {models_root}; "
                           "train one first: python -m pipeline train CONFIG")
        return models[-1]
    for model in models:
        if model.version == wanted:
            return model
    raise BadInput(f"generation.model: {wanted!r} is not a trained model of {dataset!r} "
                   f"(known: {', '.join(m.version for m in models) or 'none'})")


def train(loaded: LoadedConfig, *, quiet: bool = False) -> TrainedModel:
    """Train (or resume, or find already published) the model of `loaded`'s corpus; returns it."""
    from pipeline.generation.presets import load_preset
    from pipeline.training import jukebox
    from pipeline.training.loop import Schedule, fit

    config = loaded.config
    if config.source is None or loaded.corpus is None:
        raise BadInput(f"{loaded.path}: source.corpus is not set; training needs the private corpus to learn from")
    corpus = load_corpus(loaded.corpus, config.source.holdout_fraction, config.source.min_sample_rate_hz)
    preset = config.generation.preset
    loaded_model = load_preset(preset, loaded.weights_dir)
    key = inputs_fingerprint(loaded, corpus, loaded_model.weights_sha256)
    for existing in published_models(loaded.models_root, config.dataset):
        if existing.version.endswith(key[:8]):
            log.info("model %s already trained on these inputs", existing.version)
            return existing

    settings = config.training
    device = device_for(settings.device)
    from_scratch = preset == "tiny" and loaded.weights_dir is None
    checkpointing = settings.gradient_checkpointing
    if checkpointing == "auto":
        checkpointing = not from_scratch
    work = loaded.workspace_root / "_training" / config.dataset / key[:16]
    work.mkdir(parents=True, exist_ok=True)

    clips = [read_audio(f.path) for f in corpus.train]
    seconds = sum(len(c) for c in clips) / 44_100
    needed = MIN_TRAIN_SECONDS.get(preset, 60.0)
    if seconds < needed:
        raise BadInput(f"source.corpus: {seconds:.1f} s of training audio ({len(corpus.train)} files after the "
                       f"holdout); preset {preset!r} needs at least {needed:g} s. Add recordings to the corpus.")
    model, tokenizer = loaded_model.model.to(device), loaded_model.tokenizer
    labels = [[level.to(device) for level in tokenizer(f.artist, f.genre, f.lyrics)["input_ids"]] for f in corpus.train]
    audio = jukebox.TrainingAudio(clips, labels)

    def schedule(steps: int, salt: int, learning_rate: float = settings.learning_rate) -> Schedule:
        return Schedule(steps=steps, learning_rate=learning_rate, warmup_steps=min(settings.warmup_steps, steps),
                        checkpoint_every=settings.checkpoint_every, seed=config.seed * 1000 + salt)

    curves = {}
    if from_scratch and settings.vqvae_steps:
        fitted = fit("vqvae", model.vqvae,
                     jukebox.vqvae_loss_fn(model.vqvae, audio, settings.batch_size, VQVAE_CROP_SAMPLES, device),
                     schedule(settings.vqvae_steps, 0, settings.vqvae_learning_rate), work / "vqvae.pt",
                     extra_state=(lambda: jukebox.vqvae_state(model.vqvae),
                                  lambda s: jukebox.restore_vqvae_state(model.vqvae, s)), quiet=quiet)
        curves["vqvae"] = fitted.curve
    model.eval()
    window = max(p.n_ctx * int(p.raw_to_tokens) for p in model.priors)
    codes = jukebox.encode_corpus(model, clips, device, window)
    for level, prior in enumerate(model.priors):
        if not settings.steps_of_prior(level):
            continue
        if checkpointing:
            jukebox.enable_gradient_checkpointing(prior)
        try:
            fitted = fit(f"prior{level}", prior,
                         jukebox.prior_loss_fn(prior, level, audio, codes, settings.batch_size, device, settings.dtype),
                         schedule(settings.steps_of_prior(level), 1 + level), work / f"prior{level}.pt", quiet=quiet)
        finally:
            jukebox.disable_gradient_checkpointing(prior)
        curves[f"prior{level}"] = fitted.curve
    return _publish(loaded, model.to("cpu"), tokenizer, corpus, key, curves, checkpointing, device)


def _publish(loaded: LoadedConfig, model, tokenizer, corpus: Corpus, key: str, curves: dict, checkpointing: bool,
             device: str) -> TrainedModel:
    from pipeline.generation.presets import weight_files_sha256

    config = loaded.config
    created = dt.datetime.now(dt.timezone.utc)
    version = f"{created:%Y%m%dT%H%M%SZ}-{key[:8]}"
    final = model_folder(loaded.models_root, config.dataset, version)
    staging = final.with_name(f".{version}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        weights = weight_files_sha256(staging)
        write_json_atomic(staging / "corpus.json", {
            "fingerprint": corpus.fingerprint, "speakers": corpus.speakers,
            "train_sha256": [f.sha256 for f in corpus.train], "holdout_sha256": [f.sha256 for f in corpus.holdout]})
        write_json_atomic(staging / MODEL_FILE, {
            "version": version, "dataset": config.dataset, "created_at": created.isoformat(timespec="seconds"),
            "preset": config.generation.preset, "weights_sha256": weights, "corpus_fingerprint": corpus.fingerprint,
            "inputs_sha256": key, "training": config.training.model_dump(), "device": device,
            "gradient_checkpointing": checkpointing, "files": {"train": len(corpus.train), "holdout": len(corpus.holdout)},
            "final_loss": {name: curve[-1]["loss"] for name, curve in curves.items() if curve},
            "loss_curves": curves, "code_version": {"package": __version__, "training_recipe": TRAINING_RECIPE},
        })
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("trained model %s -> %s", version, final)
    return TrainedModel(version, final, weights, corpus.fingerprint)
