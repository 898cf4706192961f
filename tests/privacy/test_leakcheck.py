import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipeline.errors import BadInput, LeakCheckFailed
from pipeline.export.release import export
from pipeline.features.stage import features
from pipeline.generation.stage import generate
from pipeline.privacy.encoder import load_encoder
from pipeline.privacy.leakcheck import leakcheck, score_clip, self_test
from pipeline.privacy.reference import build_index
from pipeline.prompts.stage import plan
from pipeline.runner import make_context

THRESHOLD = 0.75  # the default config's; measured: held-out reference >= 0.79, festival ked <= 0.71


class CountingEncoder:
    def __init__(self, encoder):
        self._encoder, self.calls = encoder, 0
        self.name, self.version, self.sample_rate = encoder.name, encoder.version, encoder.sample_rate

    def embed(self, audio, rate):
        self.calls += 1
        return self._encoder.embed(audio, rate)


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


@pytest.fixture(scope="module")
def index(reference_dir, encoder, tmp_path_factory):
    return build_index(reference_dir, encoder, tmp_path_factory.mktemp("cache"), canaries_per_speaker=1)


def test_index_holds_one_centroid_per_speaker_and_held_out_canaries(index):
    assert index.speakers == ["spk_awb", "spk_kal16", "spk_rms", "spk_slt"]
    assert index.centroids.shape == (4, 256)
    np.testing.assert_allclose(np.linalg.norm(index.centroids, axis=1), 1.0, rtol=1e-5)
    assert [speaker for speaker, _ in index.canaries] == index.speakers


def test_held_out_reference_utterances_are_leaks_and_their_speaker_is_nearest(index, encoder):
    for speaker, audio in index.canaries:
        verdict = score_clip(audio, index.canary_rate, encoder, index, THRESHOLD)
        assert verdict.verdict == "leak" and verdict.nearest_speaker == speaker


def test_a_voice_outside_the_reference_set_passes(index, encoder, voices_root):
    for path in sorted((voices_root / "non_reference").rglob("*.wav")):
        audio, rate = sf.read(path, dtype="float32")
        verdict = score_clip(audio, rate, encoder, index, THRESHOLD)
        assert verdict.verdict == "pass" and verdict.score < THRESHOLD, path


def test_unembeddable_audio_is_unscorable_never_a_pass(index, encoder):
    nan_audio = np.full(16000, np.nan, dtype=np.float32)
    assert score_clip(nan_audio, 16000, encoder, index, THRESHOLD).verdict == "unscorable"
    assert score_clip(np.zeros(0, dtype=np.float32), 16000, encoder, index, THRESHOLD).verdict == "unscorable"


def test_silence_passes_with_no_voice_flag(index, encoder):
    verdict = score_clip(np.zeros(32000, dtype=np.float32), 16000, encoder, index, THRESHOLD)
    assert verdict.verdict == "pass" and verdict.no_voice and verdict.score is None


def test_self_test_fails_the_run_when_a_canary_is_missed(index, encoder):
    assert self_test(encoder, index, THRESHOLD) == {"canaries": 4, "caught": 4}
    with pytest.raises(LeakCheckFailed, match="detector self-test failed"):
        self_test(encoder, index, 0.999)


def test_reference_embeddings_are_cached_and_a_new_speaker_embeds_only_its_files(reference_dir, encoder, tmp_path):
    refs = tmp_path / "refs"
    shutil.copytree(reference_dir, refs)
    shutil.rmtree(refs / "spk_slt")
    counting = CountingEncoder(encoder)
    build_index(refs, counting, tmp_path / "cache", 1)
    assert counting.calls == 3 * 3  # 3 speakers x 3 enrolment files
    counting.calls = 0
    build_index(refs, counting, tmp_path / "cache", 1)
    assert counting.calls == 0
    shutil.copytree(reference_dir / "spk_slt", refs / "spk_slt")
    changed = build_index(refs, counting, tmp_path / "cache", 1)
    assert counting.calls == 3 and "spk_slt" in changed.speakers


def test_unreadable_reference_file_is_named(reference_dir, encoder, tmp_path):
    refs = tmp_path / "refs"
    shutil.copytree(reference_dir, refs)
    (refs / "spk_awb" / "00.wav").write_bytes(b"not audio")
    with pytest.raises(BadInput, match=r"spk_awb/00.wav cannot be decoded"):
        build_index(refs, encoder, tmp_path / "cache", 1)


def _prepared_run(small_config, **overrides):
    ctx = make_context(small_config(**overrides), "2026-01-01")
    plan(ctx)
    generate(ctx, 0)
    return ctx


def test_leaked_and_unscorable_clips_never_reach_the_release(small_config, reference_dir):
    ctx = _prepared_run(small_config, n_clips=3, **{"privacy.max_reject_rate": 1.0})
    audio_dir = ctx.shard_dir("generate", 0) / "audio"
    leaked, broken, clean = sorted(audio_dir.iterdir())
    voice, rate = sf.read(reference_dir / "spk_rms" / "01.wav", dtype="float32")
    sf.write(leaked, voice, rate, format="FLAC")  # a generated clip that reproduces a reference voice
    broken.write_bytes(b"corrupt")  # a clip the check cannot decode
    leakcheck(ctx, 0)
    audit = {r["clip_id"]: r for r in pq.read_table(ctx.shard_dir("leakcheck", 0) / "audit.parquet").to_pylist()}
    assert audit[leaked.stem]["verdict"] == "leak" and audit[leaked.stem]["nearest_speaker"] == "spk_rms"
    assert audit[broken.stem]["verdict"] == "unscorable" and "Error" in audit[broken.stem]["error"]
    assert audit[clean.stem]["verdict"] == "pass"

    sf.write(broken, np.zeros(22050, dtype=np.float32), 44100, format="FLAC")  # features need decodable audio
    features(ctx, 0)
    release = export(ctx)
    exported = pq.read_table(release / "data").column("clip_id").to_pylist()
    assert exported == [clean.stem]
    assert sorted(p.stem for p in (release / "audio").iterdir()) == [clean.stem]


def test_a_run_rejecting_more_than_the_bound_publishes_nothing(small_config, reference_dir):
    ctx = _prepared_run(small_config, **{"privacy.max_reject_rate": 0.05})
    first = sorted((ctx.shard_dir("generate", 0) / "audio").iterdir())[0]
    voice, rate = sf.read(reference_dir / "spk_awb" / "01.wav", dtype="float32")
    sf.write(first, voice, rate, format="FLAC")
    features(ctx, 0)
    leakcheck(ctx, 0)
    with pytest.raises(LeakCheckFailed, match=r"rejected 1 of 2 clips .* nothing is published"):
        export(ctx)
    assert not ctx.release_dir.exists()
