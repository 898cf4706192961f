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


def test_leave_one_out_trials():
    rng = np.random.default_rng(0)
    speakers = {name: [v / np.linalg.norm(v) for v in base + 0.1 * rng.standard_normal((3, 16))]
                for name, base in (("a", rng.standard_normal(16)), ("b", rng.standard_normal(16)))}
    genuine, impostor = reference_trials(speakers, outsiders=[speakers["a"][0]])
    assert genuine.shape == (6,) and impostor.shape == (7,)
    assert genuine.min() > np.sort(impostor)[:-1].max()  # the outsider copy of "a" is the one strong impostor


def test_calibrate_cli_on_the_test_voices(voices_root):
    result = run_cli("privacy", "calibrate", "--reference", str(voices_root / "reference"),
                     "--impostors", str(voices_root / "non_reference"))
    assert result.returncode == 0, result.stderr[-2000:]
    import json

    figures = json.loads(result.stdout)
    assert figures["genuine_trials"] == 16 and figures["impostor_trials"] == 20
    assert figures["recall"] >= 0.99 and 0 <= figures["false_positive_rate"] <= 1


def test_score_cli_fails_closed_on_any_folder(voices_root, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "ked.wav").write_bytes((voices_root / "non_reference" / "spk_ked" / "00.wav").read_bytes())
    (clips / "rms.wav").write_bytes((voices_root / "reference" / "spk_rms" / "03.wav").read_bytes())
    (clips / "broken.flac").write_bytes(b"not audio")
    out = tmp_path / "scores.parquet"
    result = run_cli("privacy", "score", "--reference", str(voices_root / "reference"), "--clips", str(clips),
                     "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {r["file"]: r for r in pq.read_table(out).to_pylist()}
    assert rows["rms.wav"]["verdict"] == "leak" and rows["ked.wav"]["verdict"] == "pass"
    assert rows["broken.flac"]["verdict"] == "unscorable" and rows["broken.flac"]["score"] is None
    assert "1 pass, 1 leak, 1 unscorable" in result.stdout
    missing = run_cli("privacy", "score", "--reference", str(tmp_path / "nope"), "--clips", str(clips), "--out", str(out))
    assert missing.returncode == 2 and "--reference" in missing.stderr
