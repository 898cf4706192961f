import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.errors import LeakCheckFailed
from pipeline.privacy.calibration import (calibrate, calibrate_index, equal_error_rate, genuine_trial_count,
                                          recall_shortfall, required_trials, threshold_for_fpr, wilson_interval)
from pipeline.privacy.conditions import CALIBRATION_CONDITIONS
from pipeline.privacy.reference import speaker_centroids
from pipeline.testing import run_cli


def test_threshold_for_fpr_is_the_lowest_that_keeps_the_bound():
    rng = np.random.default_rng(0)
    for size in (20, 37, 100, 1000):
        impostor = rng.normal(size=size)
        for fpr in (0.01, 0.05, 0.2):
            t = threshold_for_fpr(impostor, fpr)
            assert np.mean(impostor >= t) <= fpr
            lower = np.max(impostor[impostor < t])  # the next lower candidate breaks the bound
            assert np.mean(impostor >= lower) > fpr
    assert threshold_for_fpr(np.array([-np.inf] * 10 + [0.5]), 0.1) == -np.inf  # only no-voice trials below


def test_calibrate_bounds_every_impostor_kind_and_reports_recall_per_condition():
    genuine = {"clean": np.linspace(0.8, 1.0, 40), "room": np.linspace(0.3, 0.9, 40)}
    impostor = {"other voices, clean": np.linspace(0.0, 0.5, 100), "music only": np.linspace(0.0, 0.7, 100)}
    result = calibrate(genuine, impostor, target_recall=0.95, max_fpr=0.05)
    assert result.fpr_by_kind["music only"]["rate"] <= 0.05 and result.fpr_by_kind["other voices, clean"]["rate"] == 0
    assert result.threshold == threshold_for_fpr(impostor["music only"], 0.05)  # the stricter kind decides
    assert result.threshold_set_by == ["music only"]  # and is named
    tied = calibrate(genuine, {**impostor, "noise only": impostor["music only"].copy()}, 0.95, 0.05)
    assert tied.threshold_set_by == ["music only", "noise only"]
    room = genuine["room"]
    assert result.recall_by_condition["room"]["rate"] == pytest.approx(np.mean(room >= result.threshold), abs=1e-4)
    assert result.recall_by_condition["clean"]["rate"] == 1.0
    assert result.recall == pytest.approx(np.mean(np.concatenate([genuine["clean"], room]) >= result.threshold))
    few, enough = recall_shortfall(result, 3), recall_shortfall(result, 5)
    assert "(weakest: room" in few and "about 7 utterances" in few  # too little speech: how much more to give
    assert "about" not in enough and "at its limit under room" in enough  # more speech did not help past 5
    assert "because of the impostor trials of 'music only'." in enough  # what holds the bar up
    fixed = calibrate(genuine, impostor, 0.95, 0.05, threshold=0.2)
    assert fixed.threshold == 0.2 and fixed.recall == 1.0 and recall_shortfall(fixed, 5) is None
    assert fixed.threshold_set_by == []  # configured: no impostor kind set it


def test_condition_offsets_judge_reverberant_clips_against_reverberant_impostors():
    """Rooms lower every score; impostors detected as reverberant score lower than clean ones, so reverberant
    clips get their own (lower) bar, while every impostor kind stays within the bound."""
    rng = np.random.default_rng(1)
    genuine = {"clean": rng.uniform(0.5, 0.9, 60), "room": rng.uniform(0.15, 0.5, 60)}
    impostor = {"other voices, clean": rng.uniform(0.0, 0.4, 100), "other voices, room": rng.uniform(-0.2, 0.2, 100)}
    detected = {"clean": ["other"] * 60, "room": ["reverberant"] * 50 + ["other"] * 10,
                "other voices, clean": ["other"] * 100, "other voices, room": ["reverberant"] * 90 + ["other"] * 10}
    plain = calibrate(genuine, impostor, 0.95, 0.05)
    aware = calibrate(genuine, impostor, 0.95, 0.05, detected=detected)
    labels = {k: np.array(v) for k, v in detected.items()}
    reverberant = impostor["other voices, room"][labels["other voices, room"] == "reverberant"]
    room_other = impostor["other voices, room"][labels["other voices, room"] == "other"]
    # per condition, the strictest kind's bar among the trials detected under it; the offset is the difference
    expected = threshold_for_fpr(reverberant, 0.05) - max(threshold_for_fpr(impostor["other voices, clean"], 0.05),
                                                          threshold_for_fpr(room_other, 0.05))
    assert aware.condition_offsets == {"reverberant": pytest.approx(expected, abs=1e-6)} and expected < -0.1
    assert aware.recall_by_condition["room"]["rate"] > plain.recall_by_condition["room"]["rate"] + 0.2
    assert all(entry["rate"] <= 0.05 for entry in aware.fpr_by_kind.values())  # the bound holds per kind
    assert aware.detected_conditions["room"] == {"other": pytest.approx(10 / 60, abs=1e-4),
                                                 "reverberant": pytest.approx(50 / 60, abs=1e-4)}
    # the offset is applied to the scores before the threshold: a reverberant genuine trial at t + offset is a hit
    shift = {k: np.where(labels[k] == "reverberant", aware.condition_offsets["reverberant"], 0.0) for k in labels}
    hits = np.mean(genuine["room"] - shift["room"] >= aware.threshold)
    assert aware.recall_by_condition["room"]["rate"] == pytest.approx(hits, abs=1e-4)
    # a condition no impostor trial was detected under keeps the shared threshold
    none = calibrate(genuine, impostor, 0.95, 0.05, detected={**detected, "other voices, room": ["other"] * 100})
    assert none.condition_offsets == {} and none.threshold == plain.threshold


def test_wilson_interval_matches_known_values():
    low, high = wilson_interval(36, 36)
    assert low == pytest.approx(0.9036, abs=1e-3) and high == 1.0
    low, high = wilson_interval(0, 36)
    assert low == 0.0 and high == pytest.approx(0.0964, abs=1e-3)
    low, high = wilson_interval(18, 36)
    assert low == pytest.approx(0.3446, abs=1e-3) and high == pytest.approx(0.6554, abs=1e-3)


def test_equal_error_rate_of_separated_and_identical_scores():
    assert equal_error_rate(np.array([0.9, 0.95]), np.array([0.1, 0.2])) == 0.0
    same = np.linspace(0, 1, 101)
    assert equal_error_rate(same, same) == pytest.approx(0.5, abs=0.02)


def test_a_reference_set_too_small_to_show_the_target_recall_is_refused(reference_dir, reference_cache, tmp_path):
    import shutil

    from pipeline.privacy.encoder import load_encoder
    from pipeline.privacy.reference import build_index

    refs = tmp_path / "refs"
    for speaker in ("spk_awb", "spk_rms"):
        (refs / speaker).mkdir(parents=True)
        for name in ("00.wav", "01.wav", "02.wav"):
            shutil.copy(reference_dir / speaker / name, refs / speaker / name)
    encoder = load_encoder()
    # 2 speakers x 2 enrolled x 8 conditions = 32 trials; judged before any cohort or condition is embedded
    index = build_index(refs, encoder, reference_cache, 1, with_cohort=False)
    with pytest.raises(LeakCheckFailed, match=r"too small .* needs (\d+) utterances \(3-5 s\) per speaker") as err:
        calibrate_index(index, encoder, reference_cache, target_recall=0.95, canaries_per_speaker=1)
    needed = int(str(err.value).split(" needs ")[1].split()[0])
    assert needed == math.ceil(60 / (2 * len(CALIBRATION_CONDITIONS))) + 2  # rule of three, leave one out, canary
    assert genuine_trial_count(index) == 32 >= required_trials(0.9)


@pytest.mark.slow  # the reviewer CLI end to end: a fresh interpreter loads the encoder and the cohort
def test_calibrate_cli_on_the_test_voices(voices_root, reference_cache):
    result = run_cli("privacy", "calibrate", "--reference", str(voices_root / "reference"),
                     "--impostors", str(voices_root / "non_reference"), "--cache", str(reference_cache))
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout)
    assert figures["genuine_trials"] == 4 * 12 * len(CALIBRATION_CONDITIONS)
    assert figures["max_fpr"] == 0.05 and all(e["rate"] <= 0.05 for e in figures["fpr_by_kind"].values())
    assert figures["recall_by_condition"]["clean"]["rate"] >= 0.95


@pytest.mark.slow  # the reviewer CLI end to end
def test_score_cli_fails_closed_on_any_folder(voices_root, tmp_path, reference_cache):
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "ked.wav").write_bytes((voices_root / "non_reference" / "spk_ked" / "00.wav").read_bytes())
    (clips / "rms.wav").write_bytes((voices_root / "reference" / "spk_rms" / "03.wav").read_bytes())
    (clips / "broken.flac").write_bytes(b"not audio")
    out = tmp_path / "scores.parquet"
    result = run_cli("privacy", "score", "--reference", str(voices_root / "reference"), "--clips", str(clips),
                     "--out", str(out), "--cache", str(reference_cache), env={"SYNTHAUDIO_QUIET": "0"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "scoring clips" in result.stderr and "/3 [" in result.stderr  # a long folder shows how far it got
    rows = {r["file"]: r for r in pq.read_table(out).to_pylist()}
    assert rows["rms.wav"]["verdict"] == "leak" and rows["ked.wav"]["verdict"] == "pass"
    assert rows["broken.flac"]["verdict"] == "unscorable" and rows["broken.flac"]["score"] is None
    assert "1 pass, 1 leak, 1 unscorable" in result.stdout
    missing = run_cli("privacy", "score", "--reference", str(tmp_path / "nope"), "--clips", str(clips), "--out", str(out))
    assert missing.returncode == 2 and "--reference" in missing.stderr


class _TrialIndex:
    """Just what `calibration_trials` reads of a ReferenceIndex: two enrolled files of speaker 0, one of speaker 1,
    and a score that is each speaker's best cosine to its first variant centroid."""

    def __init__(self):
        rng = np.random.default_rng(3)
        unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)  # noqa: E731
        self.speakers = ["a", "b"]
        self.enrolled = [(0, unit(rng.normal(size=(2, 4)))), (0, unit(rng.normal(size=(2, 4)))),
                         (1, unit(rng.normal(size=(2, 4))))]
        self.enrolled_files = ["a1", "a2", "b1"]
        self.centroids = speaker_centroids(self.enrolled, len(self.speakers))
        self.cohort = []

    def speaker_scores(self, windows, centroids=None, exclude_voice=None):
        centroids = self.centroids if centroids is None else centroids
        return np.einsum("wd,sd->ws", windows, centroids[:, 0]).max(axis=0)

    def condition(self, windows):
        return "other"


def test_calibration_trials_score_each_file_without_itself_and_skip_a_speakers_only_file(monkeypatch):
    """A file is scored against its speaker re-enrolled without it; a speaker's only file makes no genuine trial,
    even where its condition left no voice to hear (it used to be counted as a miss, which made the trial count
    disagree with `genuine_trial_count` and failed the calibration)."""
    from pipeline.privacy import calibration, conditions, reference

    index = _TrialIndex()
    heard = {"a1": np.array([[1.0, 0, 0, 0]]), "a2": np.array([[0, 1.0, 0, 0]]), "b1": np.array([[0, 0, 1.0, 0]])}
    clean, *others, unheard = CALIBRATION_CONDITIONS  # the last condition leaves no voice to hear
    monkeypatch.setattr(reference, "condition_windows", lambda encoder, file, cache: {
        **{name: heard[file] for name in (clean, *others)}, unheard: None})
    monkeypatch.setattr(conditions, "no_voice_clips", lambda count, seed: {})
    genuine, impostor, detected, voices = calibration.calibration_trials(index, encoder=None, cache_dir=None)

    assert sum(len(scores) for scores in genuine.values()) == genuine_trial_count(index) \
        == 2 * len(CALIBRATION_CONDITIONS)
    assert genuine[unheard] == [-np.inf, -np.inf]  # no voice heard: a miss
    alone = [index.enrolled[1][1][0] / np.linalg.norm(index.enrolled[1][1][0]),  # a1 against a2 alone, and back
             index.enrolled[0][1][0] / np.linalg.norm(index.enrolled[0][1][0])]
    expected = [max(heard["a1"][0] @ alone[0], heard["a1"][0] @ index.centroids[1, 0]),
                max(heard["a2"][0] @ alone[1], heard["a2"][0] @ index.centroids[1, 0])]
    np.testing.assert_allclose(genuine[clean], expected)
    assert impostor == {} and voices == {} and detected[clean] == ["other", "other"]
    assert calibration.LeaveOneOut(index).without(2) is None


def test_cohort_lookalike_cut_leaves_out_voices_at_or_above_it_and_can_be_moved():
    from pipeline.privacy.cohort import SAME_VOICE_COSINE, CohortVoice, drop_reference_lookalikes

    def unit(vector):
        return np.asarray(vector, dtype=np.float32) / np.linalg.norm(vector)

    speaker = unit([1.0, 0.0, 0.0])
    centroids = np.stack([speaker, unit([0.0, 0.0, 1.0])])[:, None]  # (speakers, variants = 1, dim)

    def voice(name, cosine):  # two utterances whose clean mean sits at `cosine` to the first speaker
        direction = unit([cosine, math.sqrt(1 - cosine ** 2), 0.0])
        return CohortVoice(name, ()), np.stack([direction, direction])[:, None]

    assert 0.84 < SAME_VOICE_COSINE < 0.86
    cohort = [voice("far", 0.70), voice("near", 0.84), voice("twin", 0.86)]
    kept = [v.voice for v, _ in drop_reference_lookalikes(cohort, centroids)]
    assert kept == ["far", "near"]  # the shipped cut
    kept = [v.voice for v, _ in drop_reference_lookalikes(cohort, centroids, same_voice_cosine=0.833)]
    assert kept == ["far"]
    kept = [v.voice for v, _ in drop_reference_lookalikes(cohort, centroids, same_voice_cosine=0.99)]
    assert kept == ["far", "near", "twin"]


def test_cohort_jackknife_shows_a_threshold_held_up_by_one_voice():
    from pipeline.privacy.calibration import cohort_jackknife

    rng = np.random.default_rng(3)
    genuine = {"clean": rng.uniform(0.5, 1.0, 60)}
    # 10 cohort voices, 10 trials each; the lookalike's scores are the top tenth: it alone holds the bound up
    scores = {f"voice{v}": rng.uniform(0.0, 0.3, 10) for v in range(9)} | {"lookalike": rng.uniform(0.6, 0.7, 10)}
    impostor = {"other voices, clean": np.concatenate(list(scores.values()))}
    voices = {"other voices, clean": [name for name, found in scores.items() for _ in found]}
    full = calibrate(genuine, impostor, 0.95, 0.05)
    assert full.threshold > 0.6
    spread = cohort_jackknife(genuine, impostor, voices, 0.95, 0.05)
    assert spread["cohort_voices"] == 10
    without_lookalike = calibrate(genuine, {"other voices, clean": np.concatenate(
        [found for name, found in scores.items() if name != "lookalike"])}, 0.95, 0.05)
    assert spread["threshold"][0] == round(without_lookalike.threshold, 4)
    assert spread["threshold"][1] >= round(full.threshold, 4)  # without another voice, the lookalike weighs more
    assert spread["threshold"][0] < 0.3 and spread["recall"][1] == 1.0 > spread["recall"][0]
    # trials of no cohort voice (music, noise, an outsider) are never left out, and one voice gives no range
    assert cohort_jackknife(genuine, impostor, {"other voices, clean": [""] * 100}, 0.95, 0.05) == {}
