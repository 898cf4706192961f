"""Model presets: the only module that turns a preset name into a Jukebox model and tokenizer.

`tiny` is embedded: a small `JukeboxConfig` with the real 44.1 kHz sample rate and 8/32/128 hop
structure, a vocabulary of its own (tiny_vocab/) and random weights from a fixed seed. It is a
smoke model: its audio is noise-like, not music. Each level's context covers a whole clip of up
to `TINY_MAX_SECONDS`, so sampling needs one window per level.

`jukebox-1b-lyrics` / `jukebox-5b-lyrics` load real weights with transformers' `from_pretrained`
from a local folder (`generation.weights_dir`), never from the network.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import BadInput

SAMPLE_RATE_HZ = 44_100
HOP_LENGTHS = (128, 32, 8)  # raw samples per token of the top, middle and bottom prior
TINY_SEED = 20_240_601  # fixed: the tiny model's weights are part of the preset, not of a run
TINY_MAX_SECONDS = 2.9  # 1024 top tokens x 128 samples / 44.1 kHz
TINY_VOCAB_DIR = Path(__file__).parent / "tiny_vocab"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
REAL_PRESETS = {
    "jukebox-1b-lyrics": "openai/jukebox-1b-lyrics",
    "jukebox-5b-lyrics": "openai/jukebox-5b-lyrics",
}


@dataclass
class LoadedModel:
    preset: str
    model: object  # transformers JukeboxModel, eval mode
    tokenizer: object  # transformers JukeboxTokenizer
    weights_sha256: str
    max_seconds: float | None  # longest clip the preset supports; None = any


def tiny_config():
    """The embedded smoke model: ~1M parameters, two 32-wide layers per prior."""
    from transformers.models.deprecated.jukebox import JukeboxConfig

    upsampler = dict(
        hidden_size=32, num_layers=2, n_heads=1, res_conv_width=16, res_conv_depth=1,
        attention_pattern="raw_column_previous_row_attention", is_encoder_decoder=False,
        nb_relevant_lyric_tokens=0, alignment_layer=None, alignment_head=None,
        music_vocab_size=256,
        # transformers embeds every label after the artist as a genre, lyric tokens included,
        # so the genre table must cover the 80 lyric characters too.
        metadata_dims=[96, 16],
        mask=True,  # causal attention when a prime is read (transformers' default, False, lets it see ahead)
    )
    top = dict(
        level=0, hidden_size=32, num_layers=2, n_heads=1, n_ctx=1024, blocks=16, nb_relevant_lyric_tokens=32,
        alignment_layer=1, alignment_head=0, res_conv_width=16, res_conv_depth=1, music_vocab_size=256,
        metadata_dims=[96, 16], mask=True,
    )
    return JukeboxConfig(
        vqvae_config=dict(res_conv_width=16, res_conv_depth=2, embed_dim=16, nb_discrete_codes=256),
        prior_config_list=[
            top,
            dict(level=1, n_ctx=4096, blocks=32, **upsampler),  # (4096 tokens) x 32 samples = 2.97 s
            dict(level=2, n_ctx=16384, blocks=128, **upsampler),  # (16384 tokens) x 8 samples = 2.97 s
        ],
        min_duration=0,
        max_duration=600,
        max_nb_genres=1,  # must equal the tokenizer's n_genres, or lyric characters are read as genres
    )


def jukebox_1b_lyrics_config():
    """The openai/jukebox-1b-lyrics shapes (from openai/jukebox hparams.py), for random-weight benchmarks.

    `JukeboxConfig()` alone is not this model: it gives all three priors the top prior's settings.
    """
    from transformers.models.deprecated.jukebox import JukeboxConfig

    upsampler = dict(
        hidden_size=1920, num_layers=72, n_heads=1, n_ctx=8192, blocks=128, res_conv_width=1024,
        res_conv_depth=16, res_dilation_growth_rate=3, res_dilation_cycle=8, init_scale=0.4,
        attention_pattern="raw_column_previous_row_attention", is_encoder_decoder=False,
        nb_relevant_lyric_tokens=0, metadata_dims=[120, 4111], alignment_layer=None, alignment_head=None,
        mask=True,
    )
    return JukeboxConfig(
        vqvae_config={},  # JukeboxVQVAEConfig defaults are the published VQ-VAE
        # top: the JukeboxPriorConfig defaults; the priors attend causally (mask) as openai/jukebox trains them
        prior_config_list=[dict(level=0, mask=True), dict(level=1, **upsampler), dict(level=2, **upsampler)],
        min_duration=0,
    )


def _tiny_tokenizer():
    from transformers.models.deprecated.jukebox import JukeboxTokenizer

    return JukeboxTokenizer(
        artists_file=str(TINY_VOCAB_DIR / "artists.json"),
        genres_file=str(TINY_VOCAB_DIR / "genres.json"),
        lyrics_file=str(TINY_VOCAB_DIR / "lyrics.json"),
        version=["v2", "v2", "v2"],
        n_genres=1,
    )


def state_dict_sha256(model) -> str:
    """sha256 over parameter names and bytes, in name order: identifies weights built in memory."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def weight_files_sha256(folder: Path) -> str:
    """sha256 over (file name, file sha256) of every weight file in `folder`."""
    from pipeline.workspace import sha256_file

    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES):
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def build_tiny(config=None):
    """The tiny model (or another config) with every weight initialised from the preset's seed."""
    import torch
    from transformers.models.deprecated.jukebox import JukeboxModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = JukeboxModel(config or tiny_config()).eval()
        # transformers 4.57.6 leaves some Jukebox weights (positional embeddings, JukeboxConv1D) as
        # torch.empty memory when it builds a model from a config: initialise every part explicitly,
        # or the "random" model depends on whatever the allocator handed out.
        model.vqvae.apply(model.vqvae._init_weights)
        for prior in model.priors:
            prior.apply(prior._init_weights)
            for module in prior.modules():  # a lyric encoder has lm_head and start_token; _init_weights sets one
                if hasattr(module, "lm_head") and hasattr(module, "start_token"):
                    module.start_token.data.normal_(mean=0.0, std=0.01 * prior.config.init_scale)
        # The VQ-VAE codebooks are zero buffers until training initialises them from encoder
        # latents; with all-zero codes every token would decode to the same audio.
        for level in model.vqvae.bottleneck.level_blocks:
            level.codebook.normal_(mean=0.0, std=1.0)
    uninitialised = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if uninitialised:
        raise RuntimeError(f"tiny Jukebox model has non-finite weights after initialisation: {uninitialised[:5]}")
    return model


def load_preset(preset: str, weights_dir: Path | None = None) -> LoadedModel:
    """Build or load a preset. Real presets need `weights_dir`; nothing is downloaded."""
    if preset == "tiny" and weights_dir is None:
        model = build_tiny()
        return LoadedModel(preset, model, _tiny_tokenizer(), state_dict_sha256(model), TINY_MAX_SECONDS)
    if preset not in REAL_PRESETS and preset != "tiny":
        raise BadInput(f"generation.preset: unknown preset {preset!r}; known: tiny, {', '.join(REAL_PRESETS)}")
    return load_from_folder(preset, weights_dir)


def cached_snapshot(preset: str) -> Path | None:
    """The preset's folder in the local Hugging Face cache, if it was downloaded before (never fetches)."""
    repo_id = REAL_PRESETS.get(preset)
    if repo_id is None:
        return None
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def weights_folder(preset: str, weights_dir: Path | None) -> Path | None:
    """The folder a preset's weights and tokenizer files come from: `weights_dir`, else (real presets) the
    local Hugging Face cache; None for the embedded tiny preset. Checks the files are there, loads nothing;
    raises BadInput naming what is missing and how to fetch it."""
    if preset == "tiny" and weights_dir is None:
        return None
    if weights_dir is None:
        weights_dir = cached_snapshot(preset)
    expected = "config.json, a weight file (model.safetensors or pytorch_model*.bin), artists.json, genres.json, lyrics.json"
    hub_id = REAL_PRESETS.get(preset, "a model saved with save_pretrained")
    if weights_dir is None or not weights_dir.is_dir():
        raise BadInput(
            f"generation.weights_dir: preset {preset!r} needs its weights in a local folder, and "
            f"{weights_dir or '(not set)'} is not one. Expected files: {expected}. Fetch them once on a machine "
            f"with network access, e.g. `huggingface-cli download {hub_id} --local-dir <folder>`, then set "
            "generation.weights_dir to that folder."
        )
    names = {p.name for p in weights_dir.iterdir()}
    missing = [n for n in ("config.json", "artists.json", "genres.json", "lyrics.json") if n not in names]
    if not any(Path(n).suffix in WEIGHT_SUFFIXES for n in names):
        missing.append("model.safetensors (or pytorch_model*.bin)")
    if missing:
        raise BadInput(
            f"generation.weights_dir: {weights_dir} lacks {', '.join(missing)}. Expected files: {expected} "
            f"(`huggingface-cli download {hub_id} --local-dir {weights_dir}` fetches them)."
        )
    return weights_dir


def load_from_folder(preset: str, weights_dir: Path | None) -> LoadedModel:
    """Load `JukeboxModel` / `JukeboxTokenizer` with `from_pretrained` from a local folder, offline.

    Without `weights_dir`, a real preset is looked up in the local Hugging Face cache.
    """
    weights_dir = weights_folder(preset, weights_dir)
    if weights_dir is None:  # tiny without a folder: the embedded preset
        return load_preset(preset)
    from transformers.models.deprecated.jukebox import JukeboxModel, JukeboxTokenizer

    model = JukeboxModel.from_pretrained(str(weights_dir), local_files_only=True, min_duration=0).eval()
    tokenizer = JukeboxTokenizer.from_pretrained(str(weights_dir), local_files_only=True)
    max_seconds = TINY_MAX_SECONDS if preset == "tiny" else None
    return LoadedModel(preset, model, tokenizer, weight_files_sha256(weights_dir), max_seconds)


def known_vocabulary(preset: str, weights_dir: Path | None) -> tuple[set[str], set[str]]:
    """Artist and genre names the preset's tokenizer knows (read from its JSON files, no model load)."""
    import json

    folder = weights_folder(preset, weights_dir) or TINY_VOCAB_DIR  # a real preset's own lists, never tiny's

    def names(file: str) -> set[str]:
        path = folder / file
        if not path.is_file():
            raise BadInput(f"generation.weights_dir: {path} is missing; the tokenizer vocabulary is needed")
        return {k.removesuffix(".v2") for k in json.loads(path.read_text()) if k != "unknown"}

    return names("artists.json"), names("genres.json")


V2_LYRIC_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.,:;!?-+'\"()[] \t\n"


def lyric_vocabulary(preset: str, weights_dir: Path | None) -> set[str]:
    """Characters the preset's lyric tokenizer keeps (transformers' v2 set unless lyrics.json lists others)."""
    import json

    folder = weights_folder(preset, weights_dir)
    path = None if folder is None else folder / "lyrics.json"
    if path is not None and path.is_file():
        chars = {k for k in json.loads(path.read_text()) if len(k) == 1}
        if chars:
            return chars
    return set(V2_LYRIC_CHARACTERS)


def check_vocabulary(kind: str, requested: list[str], known: set[str]) -> None:
    """Raise BadInput naming every requested value the model does not know, with the closest known ones."""
    import difflib

    unknown = [name for name in requested if name not in known]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.5)
            hints.append(f"{name!r} (closest: {', '.join(close) if close else 'none'})")
        raise BadInput(
            f"prompts.{kind}: not in the model's vocabulary: {'; '.join(hints)}. "
            f"Use names from the preset's {kind}.json ({len(known)} known)."
        )
