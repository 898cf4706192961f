"""A model trained to memorisation on purpose: its clips are copies, and the gates keep them out of a release.

Nothing is injected: the tiny preset learns four recordings of one voice (each shorter than the priors' window, so
every step shows the priors one of four whole sequences) until every prior predicts its next token with under 0.2
bits, then the build samples from it as any build does, with prompts as the corpus is labelled. Every clip comes
back closer to the VQ-VAE's renditions of what the model learned than any recording it never saw (a new recording
of the same voice) came (0.10 and 0.19 of the held-out distance on one machine: both copies to the copy gate), and
the voice gate hears the voice it learned in them: 500 VQ-VAE steps teach the bottom level, which every clip is
decoded from, to render that voice (`test_train`). Both gates reject; the audit's verdict names the voice gate's,
which is checked first. `on_leak`/`on_copy: regenerate` samples each rejected clip again, each attempt hotter
(privacy.regenerate_temperature_step): hotter samples stray from the recordings but not from the voice, since the
VQ-VAE decodes everything in the one voice it knows, so what is still a leak or a copy after max_regenerations stays
out (both clips on that machine: still that voice at temperature 1.88) — and the build publishes nothing, because a
model whose first samples copy its corpus is the problem the gate reports (max_reject_rate counts first-pass
rejections).
"""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipeline.testing import write_config

MEMORISE = {"training.vqvae_steps": 500, "training.prior_steps": [1000, 1000, 1000], "training.learning_rate": 3e-3,
            "training.batch_size": 2, "training.warmup_steps": 10, "training.checkpoint_every": 100}


@pytest.mark.slow  # trains a model to memorisation (about four minutes): make test-memorisation, run by CI
@pytest.mark.memorisation
def test_a_model_trained_to_memorise_its_corpus_has_its_copies_rejected(tmp_path, reference_dir, reference_cache):
    from pipeline.errors import LeakCheckFailed
    from pipeline.export.release import export
    from pipeline.features.stage import features
    from pipeline.generation.stage import generate
    from pipeline.privacy.copycheck import clip_dcr
    from pipeline.privacy.leakcheck import copy_checker, leakcheck
    from pipeline.prompts.stage import plan
    from pipeline.runner import make_context
    from pipeline.training.stage import train

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rows = ["speaker_id,path,lyrics,genre,artist"]
    for name in ("00", "01", "02", "03", "04"):  # 2.4-2.7 s each; one is held out
        shutil.copy(reference_dir / "spk_awb" / f"{name}.wav", corpus / f"{name}.wav")
        rows.append(f"spk_awb,{name}.wav,,pop,aurora_lane")
    (corpus / "corpus.csv").write_text("\n".join(rows) + "\n")
    config = write_config(tmp_path, corpus / "corpus.csv", corpus=True, **{
        **MEMORISE, "n_clips": 2, "n_shards": 1, "prompts.duration_s": 2.5, "privacy.workers": 1,
        "privacy.on_copy": "regenerate", "privacy.on_leak": "regenerate",
        "privacy.regenerate_temperature_step": 0.3,  # 1.28, 1.58, 1.88
        "privacy.target_recall": 0.8,  # one speaker's five recordings calibrate no more (this test is the gates')
        # prompts as the corpus is labelled: what a user asking for "more like my recordings" would sample
        "prompts.artists": {"aurora_lane": 1}, "prompts.genres": {"pop": 1}, "prompts.lyrics": {"source": "instrumental"},
        "storage.reference_cache": str(reference_cache)})
    ctx = make_context(config, "2026-03-01")
    model = train(ctx.loaded, quiet=True)
    curves = json.loads((model.path / "model.json").read_text())["loss_curves"]
    final_bits = [curves[f"prior{level}"][-1]["bits_per_token"] for level in range(3)]
    # memorised: every prior predicts what it learned almost surely (CPU kernels differ from machine to machine, and
    # with them the VQ-VAE's codes and how fast each prior learns them)
    assert max(final_bits) < 0.2, final_bits
    plan(ctx)
    generate(ctx, 0)
    features(ctx, 0)
    leakcheck(ctx, 0)
    audit = pq.read_table(ctx.shard_dir("leakcheck", 0) / "audit.parquet").to_pylist()
    summary = json.loads((ctx.shard_dir("leakcheck", 0) / "summary.json").read_text())
    baseline = copy_checker(ctx).baseline
    first_samples = sorted((ctx.shard_dir("generate", 0) / "audio").iterdir())
    first_dcr = [clip_dcr(baseline, sf.read(path, dtype="float32")[0]) for path in first_samples]
    # closer to what the model learned than any recording it never saw came; the closest are the copy gate's copies
    assert all(dcr < min(baseline.holdout_dcr) for dcr in first_dcr), (first_dcr, baseline.holdout_dcr)
    assert sum(dcr < baseline.threshold for dcr in first_dcr) >= 1, (first_dcr, baseline.threshold)
    # and the voice gate hears the voice it learned in them: every first sample is rejected, most as that voice
    first_pass = summary["first_pass_counts"]
    assert first_pass["pass"] == 0 and first_pass["leak"] >= 1, first_pass
    # regenerate: every rejected clip sampled again, hotter, until it passed both gates or max_regenerations (3) ran
    # out. The model's VQ-VAE decodes every clip in the one voice it learned, so hotter sampling strays from the
    # recordings but not from the voice: what passes has neither the voice nor a copy's distance, the rest stays out
    regenerated = [row for row in audit if row["attempts"] > 0]
    assert len(regenerated) == 2, audit
    replaced = [row for row in regenerated if row["verdict"] == "pass"]
    assert all(row["copy_dcr"] >= baseline.threshold and row["max_similarity"] < summary["threshold"]
               for row in replaced), audit
    assert all(row["verdict"] in ("leak", "copy") and row["attempts"] == 3 for row in regenerated
               if row not in replaced), audit
    assert any(row["verdict"] == "leak" for row in regenerated if row not in replaced), audit
    replacements = pq.read_table(ctx.shard_dir("leakcheck", 0) / "regenerated.parquet").to_pylist()
    assert [r["clip_id"] for r in replacements] == sorted(row["clip_id"] for row in replaced)  # only what passed
    assert all(r["level_temperatures"][0] == pytest.approx(0.98 + 0.3 * a["attempts"])
               for r, a in zip(replacements, sorted(replaced, key=lambda row: row["clip_id"])))
    with pytest.raises(LeakCheckFailed, match="max_reject_rate"):  # the model copies: nothing is published
        export(ctx)
    assert not list(ctx.loaded.releases_root.rglob("*.flac"))  # no copy reached a release
