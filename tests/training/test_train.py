"""Training on the corpus: deterministic resume after SIGKILL, a private published model, fine-tuning, checkpointing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pipeline.config import load_config
from pipeline.generation.presets import load_from_folder, state_dict_sha256
from pipeline.testing import REPO_ROOT, run_cli, tone_voices, write_config
from pipeline.training.stage import published_models, train

QUICK = {"training.vqvae_steps": 6, "training.prior_steps": [4, 2, 2], "training.checkpoint_every": 2,
         "training.batch_size": 2, "training.warmup_steps": 2}


def corpus(folder: Path) -> Path:
    return tone_voices(folder, files=6)  # 12 files of 0.5 s: 5 s to train on after the holdout


@pytest.mark.slow  # trains a model (tens of seconds)
def test_training_resumes_after_sigkill_with_the_weights_of_an_undisturbed_run(tmp_path):
    voices = corpus(tmp_path / "corpus")
    # Both runs in fresh processes: the same torch thread count (a float reduction split differently would
    # differ in its last bits whatever the resume does).
    undisturbed = json.loads(run_cli("train", str(write_config(tmp_path / "a", voices, corpus=True, **QUICK)),
                                     "--quiet").stdout.strip().splitlines()[-1])

    config = write_config(tmp_path / "b", voices, corpus=True, **QUICK)
    process = subprocess.Popen([sys.executable, "-m", "pipeline", "train", str(config), "--quiet"], cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    checkpoints = tmp_path / "b" / "runs" / "_training" / "default"
    while not list(checkpoints.glob("*/vqvae.pt")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    [checkpoint] = list(checkpoints.glob("*/vqvae.pt"))
    killed_at = torch.load(checkpoint, weights_only=False)["step"]
    assert 0 < killed_at < 6, "the kill must land inside training for the resume to be tested"
    assert not (tmp_path / "b" / "models" / "default").exists() or not published_models(tmp_path / "b" / "models",
                                                                                         "default")

    resumed = json.loads(run_cli("train", str(config), "--quiet").stdout.strip().splitlines()[-1])
    assert resumed["weights_sha256"] == undisturbed["weights_sha256"]
    a, b = (json.loads((Path(m["path"]) / "model.json").read_text())["loss_curves"] for m in (undisturbed, resumed))
    assert a == b


@pytest.mark.slow  # trains a model (tens of seconds)
def test_the_published_model_is_private_loadable_and_not_trained_twice(tmp_path):
    voices = corpus(tmp_path / "corpus")
    config = write_config(tmp_path, voices, corpus=True, **QUICK)
    model = train(load_config(config), quiet=True)
    assert model.path.parent == tmp_path / "models" / "default"
    meta = json.loads((model.path / "model.json").read_text())
    assert meta["weights_sha256"] == model.weights_sha256 and meta["files"] == {"train": 10, "holdout": 2}
    assert set(meta["loss_curves"]) == {"vqvae", "prior0", "prior1", "prior2"}
    assert [len(meta["loss_curves"][k]) for k in ("vqvae", "prior0", "prior1", "prior2")] == [6, 4, 2, 2]
    held = json.loads((model.path / "corpus.json").read_text())["holdout_sha256"]
    assert len(held) == 2
    loaded = load_from_folder("tiny", model.path)
    assert loaded.weights_sha256 == model.weights_sha256
    assert train(load_config(config), quiet=True).version == model.version
    assert len(published_models(tmp_path / "models", "default")) == 1


@pytest.mark.slow  # trains a model (tens of seconds)
def test_the_top_prior_learns_the_corpus(tmp_path):
    voices = corpus(tmp_path / "corpus")
    config = write_config(tmp_path, voices, corpus=True, **{**QUICK, "training.vqvae_steps": 0,
                                                             "training.prior_steps": [60, 0, 0], "training.learning_rate": 1e-3})
    curve = json.loads((train(load_config(config), quiet=True).path / "model.json").read_text())["loss_curves"]["prior0"]
    first, last = (sum(p["loss"] for p in part) / 5 for part in (curve[:5], curve[-5:]))
    assert last < first - 1.0, (first, last)  # bits per token


@pytest.mark.slow  # trains a model (tens of seconds)
def test_fine_tuning_a_saved_model_keeps_its_vqvae_and_trains_its_priors_with_checkpointing(tmp_path):
    from pipeline.generation.presets import build_tiny, _tiny_tokenizer

    base = tmp_path / "base"
    model = build_tiny()
    model.save_pretrained(str(base))
    _tiny_tokenizer().save_pretrained(str(base))
    voices = corpus(tmp_path / "corpus")
    config = write_config(tmp_path, voices, corpus=True, **{**QUICK, "generation.weights_dir": str(base),
                                                             "training.prior_steps": [2, 2, 1]})
    trained = train(load_config(config), quiet=True)
    meta = json.loads((trained.path / "model.json").read_text())
    assert meta["gradient_checkpointing"] is True and "vqvae" not in meta["loss_curves"]
    tuned = load_from_folder("tiny", trained.path).model
    assert state_dict_sha256(tuned.vqvae) == state_dict_sha256(model.vqvae)
    for level in range(3):
        assert state_dict_sha256(tuned.priors[level]) != state_dict_sha256(model.priors[level])


@pytest.mark.slow
def test_gradient_checkpointing_gives_the_same_gradients_on_1b_shaped_layers():
    """The real jukebox-1b-lyrics top prior's layer shapes (width 2048, 6,144 music + 384 lyric tokens, two heads),
    one layer deep: checkpointed and plain backward passes give the same loss and gradients."""
    from benchmarks.training import random_batch
    from pipeline.generation.presets import jukebox_1b_lyrics_config
    from pipeline.training.jukebox import (build_prior, disable_gradient_checkpointing, enable_gradient_checkpointing,
                                           prior_loss)

    config = jukebox_1b_lyrics_config()
    config.prior_configs[0].num_layers = 1  # one layer of the real width and context: checkpointing is per layer
    torch.manual_seed(0)
    prior = build_prior(config, 0).train()
    assert prior.config.hidden_size == 2048 and prior.n_ctx == 6144 and prior.nb_relevant_lyric_tokens == 384
    tokens, conds, metadata = random_batch(prior, 0, 1, "cpu")
    results = []
    for checkpointed in (False, True):
        (enable_gradient_checkpointing if checkpointed else disable_gradient_checkpointing)(prior)
        prior.zero_grad(set_to_none=True)
        loss, _, _ = prior_loss(prior, tokens, conds, metadata)
        loss.backward()
        results.append((loss.item(), {n: p.grad.clone() for n, p in prior.named_parameters() if p.grad is not None}))
    disable_gradient_checkpointing(prior)
    (plain_loss, plain), (ckpt_loss, ckpt) = results
    assert plain_loss == pytest.approx(ckpt_loss, rel=1e-6)
    assert plain.keys() == ckpt.keys() and len(plain) >= 20  # embeddings, the layer, the lyric encoder, the head
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-4, atol=1e-7, msg=name)


def test_vqvae_training_quantises_each_level_with_the_codebook_that_sampling_reads():
    """transformers' `JukeboxVQVAE.forward` quantises level l with codebook (levels - 1 - l), while `encode`/`decode`
    (sampling, primes, renditions) read codebook l: a VQ-VAE trained through it decodes its bottom level (every clip's
    audio) from a codebook it never learned. Ours matches what sampling does, level by level; transformers' does not."""
    from pipeline.generation.presets import build_tiny
    from pipeline.training.jukebox import vqvae_forward

    vqvae = build_tiny().vqvae.eval()
    torch.manual_seed(0)
    x = 0.3 * torch.randn(1, 4096, 1)
    with torch.no_grad():
        ours, _ = vqvae_forward(vqvae, x)
        theirs, _ = vqvae(x)
        codes = vqvae.encode(x, start_level=0, end_level=3)
        sampled = [vqvae.decode(codes[level:level + 1], start_level=level, end_level=level + 1) for level in range(3)]
    for level in range(3):
        torch.testing.assert_close(ours[level], sampled[level], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(theirs[0], sampled[0], atol=1e-3)  # the bottom level, through the other codebook


@pytest.mark.slow  # trains the tiny VQ-VAE (about 45 s)
def test_the_trained_vqvae_renders_a_voice_that_the_leak_check_recognises(tmp_path, reference_dir, reference_cache):
    """Four recordings of one voice, 500 VQ-VAE steps: its bottom level's rendition of a recording it never saw
    (what a clip of a model that memorised that voice sounds like) scores as that voice, above the calibrated threshold.
    Trained with transformers' forward instead, the bottom level rendered 0 dB SNR at a tenth of the level, and the
    leak check heard no voice in it."""
    import numpy as np
    import soundfile as sf

    from pipeline.generation.presets import build_tiny
    from pipeline.generation.sampler import rendition
    from pipeline.privacy.review import score_folder
    from pipeline.training import jukebox
    from pipeline.training.corpus import read_audio
    from pipeline.training.loop import Schedule, fit
    from pipeline.training.stage import VQVAE_CROP_SAMPLES

    voice = reference_dir / "spk_awb"
    clips = [read_audio(voice / f"{name}.wav") for name in ("00", "01", "02", "03")]
    model = build_tiny()
    audio = jukebox.TrainingAudio(clips, [[None] * 3] * len(clips))
    fit("vqvae", model.vqvae, jukebox.vqvae_loss_fn(model.vqvae, audio, 2, VQVAE_CROP_SAMPLES, "cpu"),
        Schedule(steps=500, learning_rate=3e-3, warmup_steps=10, checkpoint_every=10**6, seed=1),
        tmp_path / "vqvae.pt", quiet=True)
    model.eval()
    unseen = read_audio(voice / "04.wav")
    rendered = rendition(model, unseen)
    clips_dir = tmp_path / "clips"
    clips_dir.mkdir()
    sf.write(clips_dir / "rendition.wav", rendered, 44_100)
    level = float(np.sqrt(np.mean(rendered ** 2)) / np.sqrt(np.mean(unseen ** 2)))
    assert 0.5 < level < 2.0, level  # the bottom level learned the recording's level
    scores, threshold = score_folder(reference_dir, clips_dir, None, target_recall=0.5, cache=reference_cache)
    [row] = scores.to_pylist()
    assert not row["no_voice"] and row["verdict"] == "leak" and row["score"] > threshold, (row, threshold)
