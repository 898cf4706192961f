"""The corpus in the loop, end to end from the CLI: train on the corpus, then `continue` and `rerender` releases
that hold no corpus audio, no prime, and nothing that points back to a corpus clip; lineage in the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from pipeline.privacy.copies import corpus_overlap
from pipeline.training.corpus import list_corpus, read_audio

COPY = 0.8  # a chunk this correlated with a corpus stretch is that stretch (a splice measures ~1.0)


@pytest.mark.slow
def test_corpus_derived_releases_name_their_model_and_mode_and_nothing_of_the_source(corpus_runs, reference_dir):
    model, releases, folder = corpus_runs
    corpus = list_corpus(reference_dir)
    for mode, release in releases.items():
        manifest = json.loads((release / "manifest.json").read_text())
        assert manifest["lineage"] == {"model_version": model["version"], "model_sha256": model["weights_sha256"],
                                       "corpus_fingerprint": model["corpus_fingerprint"]}
        rows = pd.read_parquet(release / "data")
        assert set(rows.generation_mode) == {mode} and (rows.regenerations >= 0).all()
        assert (rows.num_samples == 1.0 * 44_100 // 128 * 128).all()  # the prime was cut: only the clip remains
        text = (release / "README.md").read_text()
        assert model["version"] in text and "private corpus" in text
        everything = b"".join(p.read_bytes() for p in release.rglob("*") if p.is_file() and p.suffix != ".flac")
        for file in corpus:  # no speaker id, file name or corpus path anywhere in the release
            assert file.speaker.encode() not in everything and file.path.name.encode() not in everything
        run = folder / "runs" / "default" / manifest["version"]
        sources = json.loads((run / "sources.json").read_text())  # private: stays in the workspace
        assert set(sources) == set(rows.clip_id) and not any(sha.encode() in everything for sha in sources.values())
        # The model learned from the corpus, so the copy check judged every clip against its held-out part; a model
        # trained for a few steps copies nothing: every clip is far further than the closest held-out recording.
        copy = json.loads((release / "privacy_report.json").read_text())["copy_check"]
        assert copy["applies"] and copy["clips_judged"] == len(rows) and copy["rejected_first_pass"] == 0
        assert copy["held_out_recordings"] == len(json.loads((Path(model["path"]) / "corpus.json").read_text())["holdout_sha256"])
        assert copy["relative_distance_quantiles"]["0.05"] > 1.0
        # the fingerprint detector needs about 4.6 s on both sides: the 1 s clips and 2.0-3.2 s recordings have none
        assert copy["near_copy_detector"]["clips_fingerprinted"] == 0
        assert copy["near_copy_detector"]["corpus_recordings_fingerprinted"] == 0
        assert "checked for copies of it" in text


@pytest.mark.slow
def test_no_released_clip_contains_corpus_audio_or_its_prime(corpus_runs, reference_dir):
    _, releases, _ = corpus_runs
    recordings = [read_audio(f.path) for f in list_corpus(reference_dir)]
    for mode, release in releases.items():
        for path in sorted((release / "audio").glob("*.flac")):
            clip, rate = sf.read(path, dtype="float32")
            assert rate == 44_100
            overlap = corpus_overlap(clip, recordings)
            assert overlap < COPY, f"{mode} {path.name}: overlap {overlap:.2f} with a corpus recording"
    # the same search finds corpus audio where it is: a clip with 0.3 s of a recording spliced in
    clip = sf.read(next((releases["continue"] / "audio").glob("*.flac")), dtype="float32")[0].copy()
    clip[10_000:10_000 + 13_230] = recordings[3][5_000:5_000 + 13_230]
    assert corpus_overlap(clip, recordings) > 0.95


def test_overlap_of_unrelated_audio_is_low_and_of_a_gain_scaled_copy_is_one():
    rng = np.random.default_rng(0)
    recording = rng.standard_normal(44_100 * 2).astype(np.float32)
    other = rng.standard_normal(44_100).astype(np.float32)
    assert corpus_overlap(other, [recording]) < 0.2
    assert corpus_overlap(0.3 * recording[20_000:64_100], [recording]) == pytest.approx(1.0, abs=1e-6)
    assert corpus_overlap(np.zeros(44_100, np.float32), [recording]) == 0.0


@pytest.mark.slow  # samples three batches through the tiny model
def test_rerender_keeps_the_source_top_codes_and_continue_samples_after_its_prime(tmp_path):
    import pyarrow as pa
    import torch

    from pipeline.generation.presets import load_preset
    from pipeline.generation.sampler import encode_prime
    from pipeline.generation.stage import Generator, SamplingParams, generate_batch

    loaded = load_preset("tiny")
    generator = Generator(loaded, loaded.model, "cpu")
    rng = np.random.default_rng(1)
    sources = {"c0": (0.1 * rng.standard_normal(30_000)).astype(np.float32),
               "c1": (0.1 * rng.standard_normal(9_000)).astype(np.float32)}  # shorter than the clip: zero-padded
    batch = pa.table({"clip_id": ["c0", "c1"], "duration_s": [0.5, 0.5], "temperature": [2.0, 2.0],
                      "artist": ["aurora_lane"] * 2, "genre": ["pop"] * 2, "lyrics": ["", ""]})
    length = 22_016  # 0.5 s in whole top-level tokens
    source = np.zeros((2, length), np.float32)
    for i, cid in enumerate(("c0", "c1")):
        source[i, : min(length, len(sources[cid]))] = sources[cid][:length]
    top = encode_prime(loaded.model, torch.from_numpy(source))[0]

    def run(mode: str, **knobs):
        sampling = SamplingParams(3, None, 0, 0.0, "fail", 7, mode=mode, **knobs)
        out = tmp_path / f"{mode}-{knobs}"
        rows = generate_batch(generator, batch, sampling, out / "tokens", out, sources=sources)
        return rows, np.load(out / "tokens" / "c0-x2-level0.npy")

    rows, kept = run("rerender", resample_top_fraction=0.0)
    assert np.array_equal(kept, top.numpy()) and rows[0]["generation_mode"] == "rerender"
    _, half = run("rerender", resample_top_fraction=0.5)
    assert np.array_equal(half[:, :86], top.numpy()[:, :86]) and not np.array_equal(half[:, 86:], top.numpy()[:, 86:])
    rows, primed = run("continue", prime_seconds=0.1)
    prime = encode_prime(loaded.model, torch.from_numpy(source[:, :4352]))[0]  # 0.1 s -> 34 top tokens
    assert primed.shape == (2, 34 + 172) and np.array_equal(primed[:, :34], prime.numpy())
    assert all(row["num_samples"] == length for row in rows)  # the prime's audio is cut
    assert SamplingParams(3, None, 0, 0.0, "fail", 7, attempt=2, mode="continue", prime_seconds=0.1).prime_samples() \
        == 128 * round(0.025 * 44_100 / 128)  # each regeneration halves the prime


def test_on_copy_regenerate_samples_a_copied_clip_again(corpus_runs, reference_dir, reference_cache, monkeypatch):
    """`privacy.on_copy: regenerate` moves a clip the copy gate rejects along, as on_leak does a leak: sampled
    again with a new seed and judged again. The tiny model copies nothing, so the copy is planted: the gate's
    measure reports distance 0 for the first pass of one clip (whatever its audio), the real measure otherwise."""
    import pyarrow.parquet as pq

    import pipeline.privacy.leakcheck as stage
    from pipeline.export.release import export
    from pipeline.features.stage import features
    from pipeline.generation.stage import generate
    from pipeline.prompts.stage import plan
    from pipeline.runner import make_context
    from pipeline.testing import write_config
    from tests.conftest import corpus_build_overrides

    _, _, folder = corpus_runs
    config = write_config(folder, reference_dir, corpus=True, name="copy.yaml", **{
        **corpus_build_overrides(reference_cache), "n_clips": 2, "privacy.on_copy": "regenerate",
        "privacy.max_reject_rate": 1.0, "privacy.workers": 1})  # the gate counts first-pass rejections
    ctx = make_context(config, "2026-02-03")
    plan(ctx)
    generate(ctx, 0)
    features(ctx, 0)
    first = pq.read_table(ctx.shard_dir("generate", 0) / "generation.parquet").to_pylist()
    planted = sf.read(ctx.shard_dir("generate", 0) / first[1]["audio_file"], dtype="float32", always_2d=True)[0]
    planted = planted.mean(axis=1)  # as the gate reads a clip
    real_dcr = stage.clip_dcr

    def dcr(baseline, audio):
        measured = real_dcr(baseline, audio)
        return 0.0 if audio.shape == planted.shape and np.array_equal(audio, planted) else measured

    monkeypatch.setattr(stage, "clip_dcr", dcr)
    stage.leakcheck(ctx, 0)
    audit = {r["clip_id"]: r for r in pq.read_table(ctx.shard_dir("leakcheck", 0) / "audit.parquet").to_pylist()}
    copied = first[1]["clip_id"]
    assert audit[copied]["attempts"] == 1 and audit[copied]["verdict"] == "pass" and audit[copied]["copy_dcr"] != 0.0
    assert all(row["attempts"] == 0 for clip, row in audit.items() if clip != copied)
    release = export(ctx)
    rows = {r["clip_id"]: r for r in pq.read_table(release / "data").to_pylist()}
    assert sorted(rows) == sorted(r["clip_id"] for r in first)  # the requested count is kept
    assert rows[copied]["sampling_seed"] != first[1]["sampling_seed"] and rows[copied]["regenerations"] == 1
    report = json.loads((release / "privacy_report.json").read_text())
    assert report["counts"]["regenerated"] == 1 and report["copy_check"]["rejected_first_pass"] == 1


def test_the_copy_check_knows_the_models_renditions_of_its_training_recordings(corpus_runs, reference_dir,
                                                                                reference_cache):
    """A model that memorised a recording outputs its own VQ-VAE's rendition of it, which can sit far from the
    recording itself; the copy gate compares clips with those renditions too. The pinned model's rendition of a
    training recording (what perfect memorisation would sample) is a copy; held-out recordings and their
    renditions are not; a baseline of the raw recordings alone (the check before renditions) misses the copy."""
    from pipeline.generation.presets import load_from_folder
    from pipeline.generation.sampler import rendition
    from pipeline.privacy.copycheck import build_baseline, clip_dcr
    from pipeline.privacy.leakcheck import copy_checker
    from pipeline.prompts.stage import plan
    from pipeline.runner import make_context
    from pipeline.testing import write_config
    from pipeline.training.corpus import list_corpus, read_audio
    from pipeline.training.stage import model_folder
    from pipeline.workspace import read_json
    from tests.conftest import corpus_build_overrides

    _, _, folder = corpus_runs
    config = write_config(folder, reference_dir, corpus=True, name="renditions.yaml",
                          **corpus_build_overrides(reference_cache))
    ctx = make_context(config, "2026-02-04")
    plan(ctx)
    pinned = read_json(ctx.root / "plan.json")["model"]
    model_dir = model_folder(ctx.loaded.models_root, ctx.dataset, pinned["version"])
    split = read_json(model_dir / "corpus.json")
    by_sha = {f.sha256: f.path for f in list_corpus(reference_dir)}
    train = [read_audio(by_sha[sha]) for sha in split["train_sha256"]]
    held_out = [read_audio(by_sha[sha]) for sha in split["holdout_sha256"]]
    model = load_from_folder("tiny", model_dir).model
    checker = copy_checker(ctx)
    row = lambda: {"verdict": "pass", "copy_dcr": None, "error": None}  # noqa: E731
    memorised = rendition(model, train[0])
    judged = checker.check_audio(row(), memorised, 44_100)
    assert judged["verdict"] == "copy" and judged["copy_dcr"] < 1e-3  # dB: float rounding of the same audio
    for audio in held_out:
        for version in (audio, rendition(model, audio)):
            assert checker.check_audio(row(), version, 44_100)["verdict"] == "pass"
    raw_only = build_baseline(train, held_out, ctx.config.privacy.copy_ratio)
    assert clip_dcr(raw_only, memorised) >= raw_only.threshold
