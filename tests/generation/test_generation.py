import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

from pipeline.errors import BadInput
from pipeline.generation.presets import (
    build_tiny, check_vocabulary, known_vocabulary, load_from_folder, load_preset, state_dict_sha256,
)
from pipeline.generation.sampler import decode, encode_labels, sample_level, total_samples, window_metadata, window_starts
from pipeline.generation.stage import generate
from pipeline.parallel import torch_threads
from pipeline.prompts.stage import plan, shard_prompts
from pipeline.runner import make_context


@pytest.fixture(scope="module")
def tiny():
    with torch_threads(1):  # restored after the module: later tests see the process's own setting
        yield load_preset("tiny")


def _sample(tiny, seed: int, seconds: float = 0.25, levels: int = 3, lyrics=("la la", "hold on")):
    labels = [encode_labels(tiny.tokenizer, "aurora_lane", "pop", text) for text in lyrics]
    length = total_samples(seconds)
    torch.manual_seed(seed)
    tokens = []
    for level in range(levels):
        tokens.append(sample_level(tiny.model, level, tokens[-1] if tokens else None,
                                   [clip[level] for clip in labels], len(lyrics), length, temperature=0.98))
    return tokens, decode(tiny.model, tokens)


def test_window_starts_cover_the_sequence():
    assert window_starts(100, 256, 64) == [0]
    starts = window_starts(1000, 256, 64)
    assert starts[0] == 0 and starts[-1] == 1000 - 256 and all(b - a <= 64 for a, b in zip(starts, starts[1:]))


def test_tiny_weights_do_not_depend_on_uninitialised_memory():
    """transformers leaves some Jukebox weights as torch.empty; with NaN-filled allocations they must still be set."""
    reference = state_dict_sha256(build_tiny())
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    try:
        model = build_tiny()
    finally:
        torch.use_deterministic_algorithms(False)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert state_dict_sha256(model) == reference


def test_three_level_sampling_gives_audio_of_the_requested_length(tiny):
    tokens, audio = _sample(tiny, seed=1)
    length = total_samples(0.25)
    assert [t.shape[1] for t in tokens] == [length // 128, length // 32, length // 8]
    assert audio.shape == (2, length)
    assert np.all(np.isfinite(audio)) and np.abs(audio).max() > 1e-3
    assert not np.allclose(audio[0], audio[1])  # the VQ-VAE codebook is initialised: tokens matter


def test_sampling_is_deterministic_for_a_seed(tiny):
    _, a = _sample(tiny, seed=3)
    _, b = _sample(tiny, seed=3)
    _, c = _sample(tiny, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_top_level_preview_decodes_from_the_top_codebook(tiny):
    tokens, audio = _sample(tiny, seed=1, levels=1)
    assert audio.shape == (2, total_samples(0.25))


def test_each_clip_of_a_batch_keeps_its_own_lyrics(tiny):
    prior = tiny.model.priors[0]
    labels = [encode_labels(tiny.tokenizer, "aurora_lane", "pop", text)[0] for text in ("aaaa", "zzzzzzzz")]
    metadata = window_metadata(prior, labels, 0, total_samples(1.0))
    lyric_a, lyric_b = metadata[0, 5:], metadata[1, 5:]  # after 4 timing/artist fields and 1 genre
    assert not torch.equal(lyric_a, lyric_b)
    assert set(lyric_a[lyric_a > 0].tolist()) == {tiny.tokenizer.lyrics_encoder["a"]}


def test_unknown_genre_gets_suggestions():
    artists, genres = known_vocabulary("tiny", None)
    assert "aurora_lane" in artists and "pop" in genres
    with pytest.raises(BadInput, match=r"'popp' \(closest: pop"):
        check_vocabulary("genres", ["popp"], genres)


def test_real_preset_without_weights_says_what_to_fetch(tmp_path):
    with pytest.raises(BadInput, match=r"needs its weights in a local folder.*config.json.*--local-dir"):
        load_preset("jukebox-1b-lyrics", None)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(BadInput, match=r"lacks artists.json, genres.json, lyrics.json, model.safetensors"):
        load_preset("jukebox-1b-lyrics", tmp_path)


def test_a_real_preset_in_the_local_cache_is_checked_against_its_own_vocabulary_without_loading(tmp_path,
                                                                                                monkeypatch):
    import json

    import pipeline.generation.presets as presets

    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"not a model: loading it would fail")
    (snapshot / "artists.json").write_text(json.dumps({"unknown": 0, "the_beatles": 1, "adele": 2}))
    (snapshot / "genres.json").write_text(json.dumps({"unknown": 0, "rock": 1, "soul": 2}))
    (snapshot / "lyrics.json").write_text(json.dumps({"a": 1, "b": 2, " ": 3}))
    monkeypatch.setattr(presets, "cached_snapshot", lambda preset: snapshot)
    artists, genres = known_vocabulary("jukebox-1b-lyrics", None)
    assert artists == {"the_beatles", "adele"} and genres == {"rock", "soul"}  # not the tiny preset's lists
    assert presets.lyric_vocabulary("jukebox-1b-lyrics", None) == {"a", "b", " "}
    with pytest.raises(BadInput, match=r"'aurora_lane' \(closest"):
        check_vocabulary("artists", ["aurora_lane"], artists)


def test_a_model_saved_with_save_pretrained_loads_by_path(tiny, tmp_path):
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    loaded = load_from_folder("tiny", tmp_path)
    assert state_dict_sha256(loaded.model) == state_dict_sha256(tiny.model)
    assert len(loaded.weights_sha256) == 64
    labels = encode_labels(loaded.tokenizer, "aurora_lane", "pop", "la")
    assert all(torch.equal(a, b) for a, b in zip(labels, encode_labels(tiny.tokenizer, "aurora_lane", "pop", "la")))


def test_generate_stage_writes_flac_and_records_and_resumes_after_the_top_level(small_config, monkeypatch):
    ctx = make_context(small_config(**{"generation.max_batch_size": 2}), "2026-01-01")
    plan(ctx)
    generate(ctx, 0)
    shard = ctx.shard_dir("generate", 0)
    records = pq.read_table(shard / "generation.parquet").to_pylist()
    assert [r["clip_id"] for r in records] == ["default-2026-01-01-000000", "default-2026-01-01-000001"]
    audio, rate = sf.read(shard / records[0]["audio_file"])
    assert rate == 44_100 and audio.shape == (total_samples(0.5),)
    first_bytes = (shard / records[0]["audio_file"]).read_bytes()

    # Simulate a task killed after the top level: drop the lower levels' tokens, the audio and the record.
    token_files = sorted((shard / "tokens").rglob("*.npy"))
    assert [p.name.rsplit("-", 1)[1] for p in token_files] == ["level0.npy", "level1.npy", "level2.npy"]
    assert all("-x2-" in p.name for p in token_files)  # keyed by first clip and batch size
    for path in token_files[1:] + [shard / "generation.parquet"]:
        path.unlink()
    top_level = token_files[0].read_bytes()
    sampled_levels = []
    import pipeline.generation.stage as stage

    real = stage.sample_level
    monkeypatch.setattr(stage, "sample_level", lambda model, level, *a, **k: sampled_levels.append(level) or real(model, level, *a, **k))
    generate(ctx, 0)
    assert sampled_levels == [1, 2]  # the top level was resumed from disk, not resampled
    assert token_files[0].read_bytes() == top_level
    assert (shard / records[0]["audio_file"]).read_bytes() == first_bytes


def test_decode_reverses_the_sampled_levels(tiny):
    """transformers' decode wants the finest level first; decoding the sampled order gives the wrong audio."""
    tokens, audio = _sample(tiny, seed=2)
    length = total_samples(0.25)
    with torch.no_grad():
        as_sampled = tiny.model.decode(tokens, start_level=0)  # [top, middle, bottom]: the trap
    assert as_sampled.shape[1] != length == audio.shape[1]


def test_primed_sampling_keeps_the_prime_and_continues_it(tiny):
    from pipeline.generation.sampler import encode_prime

    _, reference = _sample(tiny, seed=5, seconds=0.5)
    primes = encode_prime(tiny.model, torch.from_numpy(reference))  # [top, middle, bottom]
    length = total_samples(0.5)
    assert [p.shape[1] for p in primes] == [length // 128, length // 32, length // 8]
    labels = [encode_labels(tiny.tokenizer, "aurora_lane", "pop", t) for t in ("la la", "hold on")]
    keep = length // 128 // 2  # the first half of the top level
    torch.manual_seed(0)
    top = sample_level(tiny.model, 0, None, [c[0] for c in labels], 2, length, temperature=0.98,
                       prime=primes[0][:, :keep])
    assert top.shape == (2, length // 128)
    assert torch.equal(top[:, :keep], primes[0][:, :keep])
    middle = sample_level(tiny.model, 1, top, [c[1] for c in labels], 2, length, temperature=0.98)
    assert middle.shape == (2, length // 32)


def test_each_regeneration_samples_every_level_hotter_up_to_the_cap(small_config):
    from pipeline.config import MAX_TEMPERATURE, load_config
    from pipeline.generation.stage import SamplingParams

    generation = load_config(small_config(**{"generation.upsampler_temperatures": [0.9, 1.9]})).config.generation
    first = SamplingParams.from_config(generation, run_seed=7, attempt=0, temperature_step=0.3)
    assert first.temperatures(0.98) == [0.98, 0.9, 1.9]  # the first sample: as configured
    second = SamplingParams.from_config(generation, run_seed=7, attempt=2, temperature_step=0.3)
    assert second.temperatures(0.98) == pytest.approx([1.58, 1.5, MAX_TEMPERATURE])  # 2 x 0.3 hotter
    assert SamplingParams.from_config(generation, run_seed=7, attempt=9, temperature_step=0.3).temperatures(0.98) == [
        MAX_TEMPERATURE] * 3
    assert SamplingParams.from_config(generation, run_seed=7, attempt=2).temperatures(0.98) == [0.98, 0.9, 1.9]


def test_level_temperatures_and_sampling_limits_are_recorded(small_config):
    from pipeline.generation.stage import level_temperatures

    assert level_temperatures(0.9, None) == [0.9, 0.9, 0.9]
    assert level_temperatures(0.9, [0.97, 0.99]) == [0.9, 0.97, 0.99]
    ctx = make_context(small_config(n_clips=1, **{"generation.upsampler_temperatures": [0.97, 0.99],
                                                  "generation.top_k": 50, "generation.levels": 2}), "2026-01-01")
    plan(ctx)
    generate(ctx, 0)
    record = pq.read_table(ctx.shard_dir("generate", 0) / "generation.parquet").to_pylist()[0]
    assert record["level_temperatures"] == [0.98, 0.97] and record["top_k"] == 50 and record["levels_sampled"] == 2
    audio, _ = sf.read(ctx.shard_dir("generate", 0) / record["audio_file"])
    assert audio.shape == (total_samples(0.5),)


@pytest.mark.parametrize("policy", ["fail", "halve"])
def test_out_of_memory_names_the_batch_size_or_halves_it(small_config, monkeypatch, policy):
    import pipeline.generation.stage as stage
    from pipeline.errors import PipelineFailure

    ctx = make_context(small_config(n_clips=4, **{"generation.max_batch_size": 4, "generation.on_oom": policy,
                                                  "generation.levels": 1}), "2026-01-01")
    plan(ctx)
    real, sizes = stage.generate_batch, []

    def small_memory(generator, batch, *args):
        sizes.append(batch.num_rows)
        if batch.num_rows > 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(generator, batch, *args)

    monkeypatch.setattr(stage, "generate_batch", small_memory)
    if policy == "fail":
        with pytest.raises(PipelineFailure, match="batch of 4 clip.*set generation.max_batch_size to 2"):
            generate(ctx, 0)
        return
    generate(ctx, 0)
    assert sizes == [4, 2, 1, 1, 2, 1, 1]
    records = pq.read_table(ctx.shard_dir("generate", 0) / "generation.parquet").to_pylist()
    assert [r["clip_id"][-1] for r in records] == ["0", "1", "2", "3"] and {r["batch_size"] for r in records} == {1}


def test_a_batch_takes_its_sampling_parameters_not_the_run(small_config, tmp_path):
    import pipeline.generation.stage as stage

    ctx = make_context(small_config(n_clips=2, **{"generation.levels": 1}), "2026-01-01")
    plan(ctx)
    prompts = shard_prompts(ctx, 0)
    sampling = stage.SamplingParams.from_config(ctx.config.generation, run_seed=7)
    generator = stage._load_model(ctx)
    done = []
    rows = stage.generate_batch(generator, prompts, sampling, tmp_path / "tokens", tmp_path, done.append)
    again = stage.generate_batch(generator, prompts, sampling, tmp_path / "tokens2", tmp_path / "b")
    assert [r["clip_id"] for r in rows] == prompts.column("clip_id").to_pylist() and len(done) == 1
    assert (tmp_path / rows[0]["audio_file"]).read_bytes() == (tmp_path / "b" / rows[0]["audio_file"]).read_bytes()
    assert [r["sampling_seed"] for r in again] == [r["sampling_seed"] for r in rows]
    other = stage.generate_batch(generator, prompts, stage.SamplingParams.from_config(
        ctx.config.generation, run_seed=8), tmp_path / "tokens3", tmp_path / "c")
    assert (tmp_path / rows[0]["audio_file"]).read_bytes() != (tmp_path / "c" / other[0]["audio_file"]).read_bytes()
    assert rows[0]["sampling_seed"] == sampling.seed(rows[0]["clip_id"], 0) != other[0]["sampling_seed"]


def test_generation_makes_no_network_connection(small_config, monkeypatch, tmp_path):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network connection attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    ctx = make_context(small_config(n_clips=1), "2026-01-01")
    plan(ctx)
    generate(ctx, 0)
    saved = tmp_path / "saved"
    tiny = load_preset("tiny")
    tiny.model.save_pretrained(saved)
    tiny.tokenizer.save_pretrained(saved)
    assert load_from_folder("tiny", saved).weights_sha256  # from_pretrained of a local folder, offline
    assert (ctx.shard_dir("generate", 0) / "generation.parquet").is_file()


def test_1b_lyrics_shapes_differ_per_level_unlike_the_default_config():
    from transformers.models.deprecated.jukebox import JukeboxConfig

    from pipeline.generation.presets import jukebox_1b_lyrics_config

    config = jukebox_1b_lyrics_config()
    top, middle, bottom = config.prior_configs
    assert (top.hidden_size, top.num_layers, top.n_ctx, top.is_encoder_decoder) == (2048, 72, 6144, True)
    assert (middle.hidden_size, middle.n_ctx, middle.is_encoder_decoder) == (1920, 8192, False)
    assert bottom.level == 2 and bottom.attention_pattern == "raw_column_previous_row_attention"
    default = JukeboxConfig().prior_configs
    assert default[1].hidden_size == default[0].hidden_size  # the trap: every prior shaped like the top one


def test_sampling_beyond_one_context_window_cuts_conditioning_to_each_window():
    """A tiny model whose contexts are shorter than the clip: several windows per level."""
    from pipeline.generation.presets import _tiny_tokenizer, tiny_config

    config = tiny_config()
    for prior, n_ctx, blocks in zip(config.prior_configs, (64, 256, 1024), (8, 16, 32)):
        prior.n_ctx, prior.blocks = n_ctx, blocks
    model = build_tiny(config)
    tokenizer = _tiny_tokenizer()
    labels = [encode_labels(tokenizer, "aurora_lane", "pop", text) for text in ("la", "hey")]
    length = total_samples(0.5)  # 172 top tokens > 64
    assert len(window_starts(length // 128, 64, int(config.hop_fraction[0] * 64))) > 1
    tokens = []
    for level in range(3):
        tokens.append(sample_level(model, level, tokens[-1] if tokens else None, [c[level] for c in labels], 2,
                                   length, temperature=0.98))
    assert [t.shape for t in tokens] == [(2, length // 128), (2, length // 32), (2, length // 8)]
    assert decode(model, tokens).shape == (2, length)


def test_tokenizer_and_model_agree_on_the_number_of_genre_slots(tiny):
    prior = tiny.model.priors[0]
    assert tiny.tokenizer.n_genres == prior.metadata_embedding.max_nb_genres
    shapes = {prior.get_metadata(encode_labels(tiny.tokenizer, "aurora_lane", "pop", text)[0], 0, 88_192, 0).shape
              for text in ("", "a", "a much longer line of lyrics")}
    assert shapes == {(1, 4 + 1 + prior.nb_relevant_lyric_tokens)}


def test_real_preset_is_found_in_the_local_hugging_face_cache(tiny, tmp_path, monkeypatch):
    """A snapshot laid out as huggingface_hub caches it is loaded without weights_dir and without network."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import importlib

    import huggingface_hub.constants

    importlib.reload(huggingface_hub.constants)
    try:
        repo = tmp_path / "hub" / "models--openai--jukebox-1b-lyrics"
        snapshot = repo / "snapshots" / ("0" * 40)
        tiny.model.save_pretrained(snapshot)
        tiny.tokenizer.save_pretrained(snapshot)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("0" * 40)
        loaded = load_preset("jukebox-1b-lyrics", None)
        assert state_dict_sha256(loaded.model) == state_dict_sha256(tiny.model)
    finally:
        monkeypatch.undo()
        importlib.reload(huggingface_hub.constants)


@pytest.mark.slow  # the generate stage, twice (the sampler's own batch test is a unit test)
def test_a_clips_audio_does_not_depend_on_its_batch_and_the_reference_sampler_is_selectable(small_config, tmp_path):
    import pipeline.generation.stage as stage

    ctx = make_context(small_config(n_clips=3, **{"prompts.temperature": 0.98}), "2026-01-01")
    plan(ctx)
    prompts = shard_prompts(ctx, 0)
    generator = stage._load_model(ctx)
    sampling = stage.SamplingParams.from_config(ctx.config.generation, run_seed=7)
    assert sampling.sampler == "fast"
    together = stage.generate_batch(generator, prompts, sampling, tmp_path / "t", tmp_path / "together")
    alone = stage.generate_batch(generator, prompts.slice(1, 1), sampling, tmp_path / "t1", tmp_path / "alone")
    clip = together[1]["audio_file"]
    assert alone[0]["clip_id"] == together[1]["clip_id"] and alone[0]["sampling_seed"] == together[1]["sampling_seed"]
    for level in range(3):
        batch_tokens = np.load(tmp_path / "t" / f"{prompts['clip_id'][0]}-x3-level{level}.npy")
        own_tokens = np.load(tmp_path / "t1" / f"{prompts['clip_id'][1]}-x1-level{level}.npy")
        assert np.array_equal(batch_tokens[1], own_tokens[0])
    in_batch, _ = sf.read(tmp_path / "together" / clip)
    by_itself, _ = sf.read(tmp_path / "alone" / clip)
    assert np.abs(in_batch - by_itself).max() <= 2 / 32768  # the same tokens; the decoder's batch rounding only
    assert len({row["sampling_seed"] for row in together}) == 3

    reference = stage.SamplingParams.from_config(
        ctx.config.generation.model_copy(update={"sampler": "reference"}), run_seed=7)
    rows = stage.generate_batch(generator, prompts, reference, tmp_path / "r", tmp_path / "reference")
    assert {row["sampling_seed"] for row in rows} == {reference.seed(prompts["clip_id"][0].as_py(), 0)}
    assert (tmp_path / "reference" / clip).read_bytes() != (tmp_path / "together" / clip).read_bytes()


def test_max_batch_size_auto_sizes_from_the_device(tiny):
    import pipeline.generation.stage as stage
    from pipeline.generation.sampler import auto_batch_size, fast_prior

    generator = stage.Generator(tiny, tiny.model, "cpu")
    assert stage.resolve_batch_size("auto", generator) == 4 and stage.resolve_batch_size(3, generator) == 3
    per_clip = sum(fast_prior(prior).bytes_per_clip() for prior in tiny.model.priors)
    assert 0 < per_clip < 64 * 2**20  # the tiny model's sampling state: a few MiB per clip
    assert auto_batch_size(tiny.model, "cpu", cpu_default=7) == 7
