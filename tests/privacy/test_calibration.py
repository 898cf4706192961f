import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.privacy.calibration import calibrate, equal_error_rate, reference_trials
from pipeline.testing import run_cli


def test_threshold_keeps_the_target_recall():
    genuine = np.linspace(0.6, 0.99, 100)  # 100 genuine trials
    impostor = np.linspace(0.1, 0.7, 50)
    result = calibrate(genuine, impostor, target_recall=0.95)
    assert result.recall >= 0.95 and np.mean(genuine >= result.threshold + 1e-9) < 0.95  # the highest such threshold
    assert result.false_positive_rate == pytest.approx(np.mean(impostor >= result.threshold))
    assert calibrate(genuine, impostor, 1.0).threshold == pytest.approx(0.6)


def test_equal_error_rate_of_separated_and_identical_scores():
    assert equal_error_rate(np.array([0.9, 0.95]), np.array([0.1, 0.2])) == 0.0
    same = np.linspace(0, 1, 101)
    assert equal_error_rate(same, same) == pytest.approx(0.5, abs=0.02)


def _index(rng, speakers=2, files=3, variants=2, dim=16):
    from pipeline.privacy.reference import ReferenceIndex

    bases = rng.standard_normal((speakers, dim))
    enrolled = []
    for s in range(speakers):
        for _ in range(files):
            e = bases[s] + 0.1 * rng.standard_normal((variants, dim))
            enrolled.append((s, e / np.linalg.norm(e, axis=-1, keepdims=True)))
    centroids = np.stack([np.mean([e for s2, e in enrolled if s2 == s], axis=0) for s in range(speakers)])
    centroids /= np.linalg.norm(centroids, axis=-1, keepdims=True)
    return ReferenceIndex([f"s{i}" for i in range(speakers)], tuple(f"v{i}" for i in range(variants)), centroids,
                          enrolled, [], 16000, "x")


def test_leave_one_out_trials_cover_every_file_and_variant():
    rng = np.random.default_rng(0)
    index = _index(rng)
    outsider = index.enrolled[0][1]  # a copy of speaker 0's first file, as an "outsider"
    genuine, impostor = reference_trials(index, outsiders=[outsider])
    assert genuine.shape == (2 * 3 * 2,) and impostor.shape == (2 * 3 * 2 + 2,)
    assert genuine.min() > np.sort(impostor)[:-2].max()  # only the copied outsider scores like a genuine trial
    own = index.enrolled[0][1][0]
    loo = np.mean([e for _, e in index.enrolled[1:3]], axis=0)  # (variants, dim): speaker 0 without file 0
    expected = max(float(own @ (c / np.linalg.norm(c))) for c in loo)  # best of the speaker's variant centroids
    assert genuine[0] == pytest.approx(expected, rel=1e-6)


def test_calibrate_cli_on_the_test_voices(voices_root, reference_cache):
    result = run_cli("privacy", "calibrate", "--reference", str(voices_root / "reference"),
                     "--impostors", str(voices_root / "non_reference"), "--cache", str(reference_cache))
    assert result.returncode == 0, result.stderr[-2000:]
    import json

    from pipeline.privacy.transforms import ENROLMENT_VARIANTS

    figures = json.loads(result.stdout)
    outsiders = len(list((voices_root / "non_reference").rglob("*.wav")))
    assert figures["genuine_trials"] == 4 * 12 * len(ENROLMENT_VARIANTS)
    assert figures["impostor_trials"] == (4 * 12 + outsiders) * len(ENROLMENT_VARIANTS)
    assert figures["recall"] >= 0.99 and 0 <= figures["false_positive_rate"] <= 0.2


def test_score_cli_fails_closed_on_any_folder(voices_root, tmp_path, reference_cache):
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "ked.wav").write_bytes((voices_root / "non_reference" / "spk_ked" / "00.wav").read_bytes())
    (clips / "rms.wav").write_bytes((voices_root / "reference" / "spk_rms" / "03.wav").read_bytes())
    (clips / "broken.flac").write_bytes(b"not audio")
    out = tmp_path / "scores.parquet"
    result = run_cli("privacy", "score", "--reference", str(voices_root / "reference"), "--clips", str(clips),
                     "--out", str(out), "--cache", str(reference_cache))
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {r["file"]: r for r in pq.read_table(out).to_pylist()}
    assert rows["rms.wav"]["verdict"] == "leak" and rows["ked.wav"]["verdict"] == "pass"
    assert rows["broken.flac"]["verdict"] == "unscorable" and rows["broken.flac"]["score"] is None
    assert "1 pass, 1 leak, 1 unscorable" in result.stdout
    missing = run_cli("privacy", "score", "--reference", str(tmp_path / "nope"), "--clips", str(clips), "--out", str(out))
    assert missing.returncode == 2 and "--reference" in missing.stderr
