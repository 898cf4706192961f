"""A model trained to memorisation on purpose: its clips are copies, and the gates keep them out of a release.

Nothing is injected: the tiny preset learns four recordings of one voice (each shorter than the priors' window, so
every step shows the priors one of four whole sequences) until every prior predicts its next token with under 0.2
bits, then the build samples from it as any build does, with prompts as the corpus is labelled. Its clips come
back close to its VQ-VAE's renditions of what it learned (0.32 and 0.66 of the closest held-out recording's distance
on this machine; one of them copies in pieces shorter than the check's 1.5 s stretch and is caught by its closest
window), so the copy check (which knows those renditions) rejects them, the build fails closed on the reject rate,
and no copy reaches a release. Regeneration cannot help such a model (every seed copies): it is not tried here.
"""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from pipeline.testing import write_config

MEMORISE = {"training.vqvae_steps": 100, "training.prior_steps": [200, 1000, 400], "training.learning_rate": 3e-3,
            "training.batch_size": 2, "training.warmup_steps": 10, "training.checkpoint_every": 100}


@pytest.mark.slow  # trains a model to memorisation (about two minutes): make test-memorisation, run by CI
@pytest.mark.memorisation
def test_a_model_trained_to_memorise_its_corpus_has_its_copies_rejected(tmp_path, reference_dir, reference_cache):
    from pipeline.errors import LeakCheckFailed
    from pipeline.export.release import export
    from pipeline.features.stage import features
    from pipeline.generation.stage import generate
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
        "privacy.target_recall": 0.8,  # one speaker's five recordings calibrate no more (this test is the copy gate's)
        # prompts as the corpus is labelled: what a user asking for "more like my recordings" would sample
        "prompts.artists": {"aurora_lane": 1}, "prompts.genres": {"pop": 1}, "prompts.lyrics": {"source": "instrumental"},
        "storage.reference_cache": str(reference_cache)})
    ctx = make_context(config, "2026-03-01")
    model = train(ctx.loaded, quiet=True)
    curves = json.loads((model.path / "model.json").read_text())["loss_curves"]
    final_bits = [curves[f"prior{level}"][-1]["bits_per_token"] for level in range(3)]
    # memorised: every prior predicts what it learned almost surely (the bottom prior ends at 0.03 bits on one machine,
    # 0.105 on another: CPU kernels differ, and with them the VQ-VAE's codes)
    assert max(final_bits) < 0.2, final_bits
    plan(ctx)
    generate(ctx, 0)
    features(ctx, 0)
    leakcheck(ctx, 0)
    audit = pq.read_table(ctx.shard_dir("leakcheck", 0) / "audit.parquet").to_pylist()
    baseline = copy_checker(ctx).baseline
    assert [row["verdict"] for row in audit] == ["copy", "copy"]
    # closer to what the model learned than any recording it never saw came: the copies the gate is for
    assert all(row["copy_dcr"] < baseline.threshold < min(baseline.holdout_dcr) for row in audit)
    with pytest.raises(LeakCheckFailed, match="max_reject_rate"):
        export(ctx)
    assert not list(ctx.loaded.releases_root.rglob("*.flac"))  # no copy reached a release
