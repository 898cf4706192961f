import copy
import json
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
from pipeline.privacy.reference import NAP_DIRECTIONS, build_index, nap_projection
from pipeline.prompts.stage import plan
from pipeline.runner import make_context

from pipeline.privacy.calibration import calibrate_index, calibration_key
from pipeline.privacy.conditions import CALIBRATION_CONDITIONS
from pipeline.privacy.leakcheck import allowed_canary_misses
from pipeline.privacy.transforms import ENROLMENT_VARIANTS


class CountingEncoder:
    """The real encoder, counting the embeddings it computes."""

    def __init__(self, encoder):
        self._encoder, self.calls = encoder, 0
        self.name, self.version, self.sample_rate = encoder.name, encoder.version, encoder.sample_rate
        self.min_voiced_s = encoder.min_voiced_s

    def voiced(self, audio, rate):
        return self._encoder.voiced(audio, rate)

    def embed(self, audio, rate):
        self.calls += 1
        return self._encoder.embed(audio, rate)

    def embed_windows(self, audio, rate):
        self.calls += 1
        return self._encoder.embed_windows(audio, rate)

    def embed_many(self, signals, rate, known_speech=False):
        self.calls += len(signals)
        return self._encoder.embed_many(signals, rate, known_speech)

    def embed_windows_many(self, signals, rate):
        self.calls += len(signals)
        return self._encoder.embed_windows_many(signals, rate)


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


@pytest.fixture(scope="module")
def index(reference_dir, encoder, reference_cache):
    return build_index(reference_dir, encoder, reference_cache, canaries_per_speaker=1)


@pytest.fixture(scope="module")
def calibration(index, encoder, reference_cache):
    return calibrate_index(index, encoder, reference_cache)


@pytest.fixture(scope="module")
def threshold(calibration):
    return calibration.threshold


@pytest.fixture(scope="module")
def scoring(index, calibration):
    """The index clips are scored with: its calibration's condition offsets applied."""
    return index.calibrated(calibration.condition_offsets)


def _few_files(reference_dir, folder, per_speaker=3):
    for speaker in sorted(p for p in reference_dir.iterdir() if p.is_dir()):
        (folder / speaker.name).mkdir(parents=True)
        for path in sorted(speaker.iterdir())[:per_speaker]:
            shutil.copy(path, folder / speaker.name / path.name)
    return folder


def test_index_holds_a_centroid_per_speaker_and_variant_and_held_out_canaries(index):
    assert index.speakers == ["spk_awb", "spk_kal16", "spk_rms", "spk_slt"]
    assert index.centroids.shape == (4, len(ENROLMENT_VARIANTS), 256)
    np.testing.assert_allclose(np.linalg.norm(index.centroids, axis=-1), 1.0, rtol=1e-5)
    assert [speaker for speaker, _ in index.canaries] == index.speakers
    assert len(index.enrolled) == 4 * 11 and all(s > 5 for s in index.speech_s.values())


def test_nap_removes_the_directions_variants_move_along_and_keeps_the_rest():
    rng = np.random.default_rng(0)
    dim, utterances = 32, 40
    nuisance = np.linalg.qr(rng.standard_normal((dim, 2)))[0]  # two orthonormal directions, (dim, 2)
    moves = rng.standard_normal((utterances, 5, 2)) * 3 @ nuisance.T + rng.standard_normal((utterances, 5, dim)) * 0.01
    projection = nap_projection(moves.reshape(-1, dim), directions=2)
    np.testing.assert_allclose(projection, projection.T, atol=1e-12)
    np.testing.assert_allclose(projection @ projection, projection, atol=1e-10)  # a projection
    np.testing.assert_allclose(projection @ nuisance, 0.0, atol=1e-2)  # the nuisance is gone
    speaker = np.linalg.qr(np.concatenate([nuisance, rng.standard_normal((dim, 1))], axis=1))[0][:, 2]
    np.testing.assert_allclose(projection @ speaker, speaker, atol=1e-2)  # what is orthogonal to it stays
    assert np.trace(projection) == pytest.approx(dim - 2)


def test_another_nap_direction_count_projects_that_many_out_under_another_fingerprint(index, encoder, reference_dir,
                                                                                      reference_cache):
    """The benchmark screens other counts (`benchmarks/privacy_designs.py --nap-directions`): the index then removes
    that many directions, and its fingerprint (which keys calibrations) is not the default index's."""
    assert np.trace(np.eye(256) - index.projection) == pytest.approx(NAP_DIRECTIONS, abs=1e-3)
    other = build_index(reference_dir, encoder, reference_cache, canaries_per_speaker=1, nap_directions=4)
    assert np.trace(np.eye(256) - other.projection) == pytest.approx(4, abs=1e-3)
    assert other.fingerprint != index.fingerprint
    np.testing.assert_array_equal(other.bank_voices, index.bank_voices)  # the same cohort, projected otherwise


def test_the_index_compares_projected_embeddings_everywhere(index, encoder, reference_dir):
    """Enrolment, bank and a scored clip all live in the projected space: nothing a clip is compared with
    has a component along the removed directions, and a clip's score is the same whether its windows are
    projected by the caller or by the index (the index projects raw windows itself)."""
    assert index.projection is not None
    removed = np.linalg.eigh(np.eye(256) - index.projection)[1][:, -NAP_DIRECTIONS:]  # (256, directions)
    assert np.abs(index.centroids @ removed).max() < 1e-4
    assert np.abs(index.bank @ removed).max() < 1e-4
    audio, rate = sf.read(sorted((reference_dir / "spk_slt").iterdir())[-1], dtype="float32")
    windows = encoder.embed_windows(audio, rate)
    np.testing.assert_allclose(index.speaker_scores(windows), index.speaker_scores(index.project(windows)), atol=1e-5)


def test_calibrated_threshold_keeps_every_impostor_condition_within_the_fpr_bound(index, calibration):
    assert set(calibration.recall_by_condition) == set(CALIBRATION_CONDITIONS)
    assert {f"other voices, {name}" for name in CALIBRATION_CONDITIONS} | {"music only", "noise only"} \
        == set(calibration.fpr_by_kind)
    assert all(entry["rate"] <= 0.05 for entry in calibration.fpr_by_kind.values())
    assert calibration.genuine_trials == 4 * 11 * len(CALIBRATION_CONDITIONS)
    assert calibration.recall_by_condition["clean"]["rate"] >= 0.95  # the clean voice is never the weak point
    assert 0 <= calibration.equal_error_rate < 0.2 and calibration.recall_at_fpr_01pct <= calibration.recall_at_fpr_1pct
    entry = calibration.recall_by_condition["room"]
    assert entry["ci95"][0] <= entry["rate"] <= entry["ci95"][1] and entry["trials"] == 44


def test_the_condition_detector_finds_rooms_and_nothing_else_and_clips_need_a_calibrated_index(
        index, calibration, encoder, reference_dir):
    """Trained on the cohort alone, the detector tells the reference voices' calibration rooms (a trial set it
    never saw) from their clean, pitched, phone-band and music trials. The fine-tuned encoder was taught to embed a
    voice in a room where it embeds clean, so its embeddings say less about the room than resemblyzer's did: the
    detector finds about a quarter of these rooms (0.27; 0.6 and more with resemblyzer's weights), and still
    nothing else."""
    shares = calibration.detected_conditions
    assert shares["room"].get("reverberant", 0) >= 0.2
    for name in ("clean", "pitch+2 (resampled)", "telephone", "music 0 dB"):
        assert shares[name].get("reverberant", 0) <= 0.05, name
    assert set(calibration.condition_offsets) <= {"reverberant"}
    audio, rate = sf.read(sorted((reference_dir / "spk_slt").iterdir())[-1], dtype="float32")
    windows = encoder.embed_windows(audio, rate)
    with pytest.raises(RuntimeError, match="not calibrated"):
        index.clip_scores(windows)  # offsets unknown: scoring would apply a threshold to the wrong scale
    scored, condition = index.calibrated({"reverberant": -0.5, "other": 0.25}).clip_scores(windows)
    assert condition == "other"  # a clean utterance; "other" never gets an offset from calibration, here forced
    np.testing.assert_allclose(scored, index.speaker_scores(windows) - 0.25, atol=1e-6)


def test_a_calibration_is_cached_under_its_inputs_and_a_recomputed_one_equals_it(index, encoder, reference_cache,
                                                                                 calibration):
    cached = reference_cache / "calibrations" / f"{calibration_key(index, encoder, 0.95, 0.05, None)}.json"
    assert cached.is_file()
    cached.unlink()  # made again from the trials: the same figures, to the last bit
    counting = CountingEncoder(encoder)
    assert calibrate_index(index, counting, reference_cache) == calibration and counting.calls > 0
    made = counting.calls
    assert calibrate_index(index, counting, reference_cache) == calibration and counting.calls == made  # reused
    keys = {calibration_key(index, encoder, *settings) for settings in
            [(0.95, 0.05, None), (0.95, 0.01, None), (0.9, 0.05, None), (0.95, 0.05, 1.5)]}
    assert len(keys) == 4  # every setting is part of the key
    fewer = copy.copy(index)
    fewer.enrolled_files = index.enrolled_files[1:]  # another canary split enrols other files
    assert calibration_key(fewer, encoder, 0.95, 0.05, None) not in keys


def test_held_out_reference_utterances_are_leaks_and_their_speaker_is_nearest(scoring, encoder, threshold):
    for speaker, audio in scoring.canaries:
        verdict = score_clip(audio, scoring.canary_rate, encoder, scoring, threshold)
        assert verdict.verdict == "leak" and verdict.nearest_speaker == speaker


def test_voices_outside_the_reference_set_pass(scoring, encoder, voices_root, threshold):
    verdicts = []
    for path in sorted((voices_root / "non_reference").rglob("*.wav")):
        audio, rate = sf.read(path, dtype="float32")
        verdicts.append(score_clip(audio, rate, encoder, scoring, threshold).verdict)
    assert len(verdicts) >= 6 and np.mean([v == "leak" for v in verdicts]) <= 0.05


def test_a_few_seconds_of_a_leaked_voice_inside_a_long_clip_are_found(scoring, encoder, threshold, reference_dir):
    voice, rate = sf.read(reference_dir / "spk_rms" / "11.wav", dtype="float32")  # a held-out canary file
    rng = np.random.default_rng(0)
    clip = np.concatenate([0.05 * rng.standard_normal(8 * rate), voice, 0.05 * rng.standard_normal(8 * rate)])
    verdict = score_clip(clip.astype(np.float32), rate, encoder, scoring, threshold)
    assert verdict.verdict == "leak" and verdict.nearest_speaker == "spk_rms" and verdict.windows > 1


def test_unembeddable_audio_is_unscorable_never_a_pass(scoring, encoder, threshold):
    nan_audio = np.full(16000, np.nan, dtype=np.float32)
    assert score_clip(nan_audio, 16000, encoder, scoring, threshold).verdict == "unscorable"
    assert score_clip(np.zeros(0, dtype=np.float32), 16000, encoder, scoring, threshold).verdict == "unscorable"


def test_a_leaked_voice_under_noise_is_still_heard(scoring, encoder, threshold, reference_dir):
    from pipeline.testing import white_noise

    voice, rate = sf.read(reference_dir / "spk_rms" / "11.wav", dtype="float32")  # a held-out canary file
    noisy = voice + 0.3 * np.abs(voice).max() * white_noise(voice.size / rate, rate=rate, seed=2)[: voice.size]
    verdict = score_clip(noisy.astype(np.float32), rate, encoder, scoring, threshold)
    assert not verdict.no_voice and verdict.score is not None  # never waved through as "no voice"


def test_silence_passes_with_no_voice_flag(scoring, encoder, threshold):
    verdict = score_clip(np.zeros(32000, dtype=np.float32), 16000, encoder, scoring, threshold)
    assert verdict.verdict == "pass" and verdict.no_voice and verdict.score is None


def test_music_of_sampled_instruments_or_noise_alone_holds_no_voice(scoring, encoder, threshold):
    """resemblyzer's webrtcvad took such music for speech, and GE2E then heard a reference voice in it."""
    from pipeline.privacy.music import sampled_band
    from pipeline.testing import white_noise

    for seed in (31, 32, 33):
        verdict = score_clip(sampled_band(10 * 16_000, seed), 16_000, encoder, scoring, threshold)
        assert verdict.verdict == "pass" and verdict.no_voice, seed
    noise = white_noise(10.0, rate=16_000, seed=4, dbfs=-20.0)
    assert score_clip(noise, 16_000, encoder, scoring, threshold).no_voice


def test_enrolment_variants_are_embedded_whatever_the_speech_detector_hears(encoder, reference_dir, monkeypatch):
    voice, rate = sf.read(reference_dir / "spk_rms" / "11.wav", dtype="float32")
    assert encoder.voiced(voice, rate) is not None
    monkeypatch.setattr(encoder._speech, "hears_speech", lambda audio: False)  # a voice under loud music, say
    assert encoder.voiced(voice, rate) is None and encoder.embed_many([voice], rate) == [None]  # as a clip
    (variant,) = encoder.embed_many([voice], rate, known_speech=True)  # as an enrolled utterance's variant
    assert variant.shape == (256,) and np.linalg.norm(variant) == pytest.approx(1.0, abs=1e-5)


def test_self_test_judges_canaries_as_a_sample_and_fails_a_detector_worse_than_its_target(scoring, encoder, threshold):
    result = self_test(encoder, scoring, threshold, target_recall=0.95)
    assert result["canaries"] == 12 and result["allowed_misses"] == 4
    assert result["caught"] >= 12 - 4 and set(result["by_transform"]) == {"pitch±1", "mixed0db", "band8k"}
    with pytest.raises(LeakCheckFailed, match=r"detector self-test failed: 12 of 12 .* misses more than 4"):
        self_test(encoder, scoring, 1e9, target_recall=0.95)


def test_allowed_canary_misses_follow_the_binomial_tail():
    from scipy.stats import binom

    for canaries, recall in ((12, 0.95), (24, 0.95), (24, 0.99), (100, 0.9)):
        allowed = allowed_canary_misses(canaries, recall)
        assert binom.sf(allowed - 1, canaries, 1 - recall) >= 0.001 > binom.sf(allowed, canaries, 1 - recall)
    assert allowed_canary_misses(24, 0.95) == 5 and allowed_canary_misses(24, 0.99) == 3


def test_reference_embeddings_are_cached_and_a_new_speaker_embeds_only_its_files(reference_dir, encoder, tmp_path):
    refs = _few_files(reference_dir, tmp_path / "refs", per_speaker=2)
    slt = tmp_path / "spk_slt"
    shutil.move(refs / "spk_slt", slt)
    counting = CountingEncoder(encoder)
    build_index(refs, counting, tmp_path / "cache", 1, with_cohort=False)
    assert counting.calls == 3 * 2 * len(ENROLMENT_VARIANTS)  # 3 speakers x 2 files x every variant
    counting.calls = 0
    build_index(refs, counting, tmp_path / "cache", 1, with_cohort=False)
    assert counting.calls == 0
    shutil.move(slt, refs / "spk_slt")
    changed = build_index(refs, counting, tmp_path / "cache", 1, with_cohort=False)
    assert counting.calls == 2 * len(ENROLMENT_VARIANTS) and "spk_slt" in changed.speakers


def test_unusable_reference_files_are_all_named_and_can_be_skipped(reference_dir, encoder, reference_cache, tmp_path):
    refs = tmp_path / "refs"
    shutil.copytree(reference_dir, refs)
    (refs / "spk_awb" / "00.wav").write_bytes(b"not audio")
    sf.write(refs / "spk_rms" / "00.wav", np.zeros(0, dtype=np.float32), 16000)
    sf.write(refs / "spk_slt" / "00.wav", np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(BadInput) as error:
        build_index(refs, encoder, reference_cache, 1)
    message = str(error.value)
    assert "3 unusable file(s)" in message and "skip_bad_reference_files" in message
    assert "spk_awb/00.wav: cannot be decoded" in message and "spk_rms/00.wav: is empty" in message
    assert "spk_slt/00.wav: holds no voiced speech" in message
    skipped = build_index(refs, encoder, reference_cache, 1, skip_bad=True)
    assert len(skipped.enrolled) == 4 * 11 - 3


@pytest.fixture
def prepared_run(small_config):
    """A run planned and generated for real (tiny Jukebox), ready for the leak check: a release-building
    fixture, so its tests are `slow` (conftest.RELEASE_FIXTURES)."""

    def make(**overrides):
        ctx = make_context(small_config(**overrides), "2026-01-01")
        plan(ctx)
        generate(ctx, 0)
        return ctx

    return make


def test_leaked_and_unscorable_clips_never_reach_the_release(prepared_run, reference_dir):
    ctx = prepared_run(n_clips=3, **{"privacy.max_reject_rate": 1.0})
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


def test_a_run_rejecting_more_than_the_bound_publishes_nothing(prepared_run, reference_dir):
    ctx = prepared_run(**{"privacy.max_reject_rate": 0.05})
    first = sorted((ctx.shard_dir("generate", 0) / "audio").iterdir())[0]
    voice, rate = sf.read(reference_dir / "spk_awb" / "01.wav", dtype="float32")
    sf.write(first, voice, rate, format="FLAC")
    features(ctx, 0)
    leakcheck(ctx, 0)

    def must_not_run(*args, **kwargs):
        raise AssertionError("a rerun on the same inputs loaded the encoder or rebuilt the index")

    import pipeline.privacy.leakcheck as stage

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stage, "load_encoder", must_not_run)
        patch.setattr(stage, "build_index", must_not_run)
        leakcheck(ctx, 0)  # skipped: its inputs are known from file hashes alone
    with pytest.raises(LeakCheckFailed, match=r"rejected 1 of 2 clips .* nothing is published"):
        export(ctx)
    assert not ctx.release_dir.exists()


def test_on_leak_regenerate_replaces_rejected_clips_with_new_samples(prepared_run, reference_dir, scoring, threshold):
    ctx = prepared_run(n_clips=3, **{"privacy.max_reject_rate": 1.0, "privacy.on_leak": "regenerate"})
    audio_dir = ctx.shard_dir("generate", 0) / "audio"
    leaked, broken, clean = sorted(audio_dir.iterdir())
    original = pq.read_table(ctx.shard_dir("generate", 0) / "generation.parquet").to_pylist()
    voice, rate = sf.read(reference_dir / "spk_rms" / "01.wav", dtype="float32")
    sf.write(leaked, voice, rate, format="FLAC")
    broken.write_bytes(b"corrupt")
    features_done = ctx.shard_dir("features", 0)
    sf.write(broken, np.zeros(22050, dtype=np.float32), 44100, format="FLAC")
    features(ctx, 0)
    broken.write_bytes(b"corrupt")  # corrupt again after features: the leak check must reject it
    leakcheck(ctx, 0)
    audit = {r["clip_id"]: r for r in pq.read_table(ctx.shard_dir("leakcheck", 0) / "audit.parquet").to_pylist()}
    assert audit[leaked.stem]["attempts"] == 1 and audit[leaked.stem]["verdict"] == "pass"
    assert audit[broken.stem]["attempts"] == 1 and audit[broken.stem]["verdict"] == "pass"
    assert audit[clean.stem]["attempts"] == 0
    release = export(ctx)
    rows = {r["clip_id"]: r for r in pq.read_table(release / "data").to_pylist()}
    assert sorted(rows) == sorted([leaked.stem, broken.stem, clean.stem])  # the requested count is kept
    seeds = {r["clip_id"]: r["sampling_seed"] for r in original}
    assert rows[leaked.stem]["sampling_seed"] != seeds[leaked.stem]  # a new sample, not the leaked one
    assert rows[clean.stem]["sampling_seed"] == seeds[clean.stem]
    # sampled hotter (privacy.regenerate_temperature_step, 0.2 by default), and the release says so
    temperatures = {r["clip_id"]: r["temperature"] for r in original}
    assert rows[leaked.stem]["temperature"] == pytest.approx(temperatures[leaked.stem] + 0.2)
    assert rows[clean.stem]["temperature"] == temperatures[clean.stem]
    exported, exported_rate = sf.read(release / "audio" / f"{leaked.stem}.flac", dtype="float32")
    assert (release / "audio" / f"{leaked.stem}.flac").read_bytes() != leaked.read_bytes()
    assert exported_rate == 44_100 and exported.size == rows[leaked.stem]["num_samples"]
    rescored = score_clip(exported, exported_rate, load_encoder(), scoring, threshold)
    assert rescored.verdict == "pass"  # the replacement carries no protected voice
    assert not rows[broken.stem]["is_silent"]  # features of the replacement, not of the silent stand-in
    report = json.loads((release / "privacy_report.json").read_text())
    assert report["counts"]["regenerated"] == 2 and report["counts"]["rejected_first_pass"] == 2
    assert report["rejection_rate"] == pytest.approx(2 / 3) and features_done.is_dir()


def test_a_csv_manifest_is_a_reference_set_like_the_folder(reference_dir, encoder, reference_cache, tmp_path):
    folder = _few_files(reference_dir, tmp_path / "refs")
    manifest = tmp_path / "voices.csv"
    lines = ["speaker_id,path"] + [f"{p.parent.name},refs/{p.parent.name}/{p.name}" for p in sorted(folder.rglob("*.wav"))]
    manifest.write_text("\n".join(lines) + "\n")
    from_manifest = build_index(manifest, encoder, reference_cache, 1)
    from_folder = build_index(folder, encoder, reference_cache, 1)
    assert from_manifest.speakers == from_folder.speakers and from_manifest.fingerprint == from_folder.fingerprint
    np.testing.assert_array_equal(from_manifest.centroids, from_folder.centroids)
    manifest.write_text("speaker_id,path\nspk_awb,refs/spk_awb/missing.wav\n")
    with pytest.raises(BadInput, match=r"voices.csv line 2: .*missing.wav is not a .wav or .flac file"):
        build_index(manifest, encoder, reference_cache, 1)


def test_embedding_signals_together_gives_each_ones_embedding(reference_dir, encoder):
    """One batch through the network for several signals: each result is resemblyzer's own `embed_utterance`
    of that signal (up to float sums), a silent signal stays None, and long signals keep their windows."""
    from resemblyzer import preprocess_wav

    files = sorted(reference_dir.glob("*/*.wav"))[:3]
    signals = [sf.read(path, dtype="float32")[0] for path in files]
    signals.insert(1, np.zeros(16_000, dtype=np.float32))
    signals.append(np.concatenate(signals[2:4]))  # longer than one 3 s window
    together = encoder.embed_many(signals, 16_000)
    assert together[1] is None and all(e is not None for i, e in enumerate(together) if i != 1)
    for signal, embedding in zip(signals, together):
        if embedding is not None:
            expected = encoder._encoder.embed_utterance(preprocess_wav(signal, source_sr=16_000))
            np.testing.assert_allclose(embedding, expected, atol=2e-6)
            assert np.array_equal(encoder.embed(signal, 16_000), encoder.embed_many([signal], 16_000)[0])
    windows = encoder.embed_windows_many(signals, 16_000)
    assert windows[1] is None and len(windows[-1]) > 1
    for signal, each in zip(signals, windows):
        if each is not None:
            np.testing.assert_allclose(each, encoder.embed_windows(signal, 16_000), atol=2e-6)
            np.testing.assert_allclose(np.linalg.norm(each, axis=1), 1.0, rtol=1e-5)


def test_cached_condition_windows_are_keyed_by_the_window_layout(encoder, monkeypatch):
    """Calibration reads each file's condition windows from the cache: windows cut with another length or hop must
    not be reused when those constants change."""
    from pipeline.privacy import encoder as encoders
    from pipeline.privacy.reference import conditions_key

    before = conditions_key(encoder)
    monkeypatch.setattr(encoders, "WINDOW_HOP_S", encoders.WINDOW_HOP_S / 3)
    assert conditions_key(encoder) != before
    monkeypatch.undo()
    monkeypatch.setattr(encoders, "WINDOW_S", encoders.WINDOW_S * 2)
    assert conditions_key(encoder) != before
