import numpy as np
import pytest

from pipeline.features.extract import FEATURE_COLUMNS, FEATURE_SCHEMA, PITCH_COLUMNS, QualityThresholds, feature_set
from pipeline.features.loudness import integrated_loudness
from pipeline.testing import click_track, sine, white_noise

RATE = 44_100
basic = feature_set("basic")
full = feature_set("full")


def test_sine_440_hz_has_its_centroid_and_pitch_near_440_hz():
    row = full.extract(sine(440, 2.0), RATE)
    assert row["spectral_centroid_hz_mean"] == pytest.approx(440, rel=0.05)
    assert row["pitch_median_hz"] == pytest.approx(440, rel=0.01)
    assert row["pitch_range_hz"] < 5 and row["voiced_ratio"] > 0.9
    assert row["duration_s"] == pytest.approx(2.0) and row["sample_rate_hz"] == RATE
    assert row["zero_crossing_rate"] == pytest.approx(2 * 440 / RATE, rel=0.05)
    assert row["chroma_a_mean"] == 1.0 and row["chroma_c_mean"] < 0.2  # A4 is pitch class A
    assert not row["is_silent"] and row["silence_ratio"] == 0.0


def test_pitch_follows_a_glide_and_reports_its_range():
    t = np.arange(2 * RATE) / RATE
    freq = np.linspace(200, 400, t.size)  # Hz
    glide = (0.5 * np.sin(2 * np.pi * np.cumsum(freq) / RATE)).astype(np.float32)
    row = full.extract(glide, RATE)
    assert row["pitch_median_hz"] == pytest.approx(300, rel=0.03)
    assert row["pitch_range_hz"] == pytest.approx(0.9 * 200, rel=0.08)  # 5th..95th percentile of 200..400 Hz


def test_basic_set_leaves_pitch_null():
    row = basic.extract(sine(440, 1.0), RATE)
    assert all(row[c] is None for c in PITCH_COLUMNS)


def test_levels_and_loudness_of_a_minus_20_dbfs_sine():
    # BS.1770: a 997 Hz sine at 0 dBFS peak reads -3.01 LUFS, so -20 dBFS peak reads -23.01 LUFS.
    row = basic.extract(sine(997, 3.0, dbfs=-20.0), RATE)
    assert row["loudness_lufs"] == pytest.approx(-23.01, abs=0.5)
    assert row["loudness_lufs"] == pytest.approx(-23.01, abs=0.05)  # and in fact much closer
    assert row["peak_dbfs"] == pytest.approx(-20.0, abs=0.05)
    assert row["rms_dbfs"] == pytest.approx(-20.0 - 3.01, abs=0.05)  # RMS of a sine is peak / sqrt(2)
    assert row["dc_offset"] == pytest.approx(0.0, abs=1e-3)


@pytest.mark.parametrize("rate", [16_000, 22_050, 48_000])
def test_loudness_does_not_depend_on_the_sample_rate(rate):
    assert integrated_loudness(sine(997, 2.0, rate=rate, dbfs=-20.0), rate) == pytest.approx(-23.01, abs=0.05)


def test_loudness_gates_out_silence_and_weights_low_frequencies_down():
    tone = sine(997, 2.0, dbfs=-20.0)
    with_silence = np.concatenate([tone, np.zeros(4 * RATE, dtype=np.float32)])  # 4 s of silence after 2 s of tone
    # Ungated, the mean power would fall by a third: -27.8 LUFS. Gated, only blocks straddling the edge count.
    assert integrated_loudness(with_silence, RATE) == pytest.approx(-23.01, abs=0.5)
    assert integrated_loudness(sine(30, 2.0, dbfs=-20.0), RATE) < -23.01 - 3  # K-weighting's high-pass
    assert integrated_loudness(np.zeros(RATE, dtype=np.float32), RATE) == float("-inf")
    assert integrated_loudness(tone[: RATE // 10], RATE) is None  # shorter than one 400 ms block


def test_silence_is_flagged_silent():
    row = basic.extract(np.zeros(RATE, dtype=np.float32), RATE)
    assert row["is_silent"] and row["silence_ratio"] == 1.0 and row["peak_dbfs"] == float("-inf")
    assert row["tempo_bpm"] is None and row["onset_rate_per_s"] == 0.0


def test_a_clipped_sine_is_flagged_clipped_and_a_clean_one_is_not():
    clipped = np.clip(sine(440, 1.0, dbfs=0.0) * 2, -1, 1)  # a sine driven 6 dB past full scale
    row = basic.extract(clipped, RATE)
    assert row["is_clipped"] and row["clipping_ratio"] == pytest.approx(2 / 3, abs=0.01)
    assert not basic.extract(sine(440, 1.0, dbfs=-1.0), RATE)["is_clipped"]


def test_white_noise_is_flat_and_a_sine_is_not():
    noise = basic.extract(white_noise(1.0), RATE)
    assert noise["spectral_flatness_mean"] > 0.5
    assert noise["spectral_centroid_hz_mean"] == pytest.approx(RATE / 4, rel=0.05)  # flat up to Nyquist
    assert noise["spectral_rolloff_hz_mean"] == pytest.approx(0.85 * RATE / 2, rel=0.03)
    assert basic.extract(sine(440, 1.0), RATE)["spectral_flatness_mean"] < 0.01


@pytest.mark.parametrize("bpm", [90, 120, 140])
def test_click_track_tempo_within_two_percent(bpm):
    row = basic.extract(click_track(bpm, 10.0), RATE)
    assert row["tempo_bpm"] == pytest.approx(bpm, rel=0.02)
    assert row["onset_rate_per_s"] == pytest.approx(bpm / 60, rel=0.1)


def test_short_and_non_finite_clips_are_flagged():
    assert basic.extract(sine(440, 0.1), RATE)["is_too_short"]
    assert not basic.extract(sine(440, 0.5), RATE)["is_too_short"]
    broken = sine(440, 1.0)
    broken[100:200] = np.nan
    row = basic.extract(broken, RATE)
    assert row["is_non_finite"] and np.isfinite(row["rms_dbfs"])  # analysed with the bad samples as zeros
    assert not basic.extract(sine(440, 1.0), RATE)["is_non_finite"]


def test_thresholds_come_from_the_configuration():
    strict = feature_set("basic", QualityThresholds(silence_dbfs=-10.0, min_duration_s=2.0))
    row = strict.extract(sine(440, 1.0, dbfs=-12.0), RATE)
    assert row["is_silent"] and row["is_too_short"]


def test_dc_offset_is_measured():
    assert basic.extract(sine(440, 1.0, dbfs=-20) + 0.25, RATE)["dc_offset"] == pytest.approx(0.25, abs=1e-3)


def test_mfcc_tell_noise_from_a_tone():
    noise, tone = basic.extract(white_noise(1.0), RATE), basic.extract(sine(440, 1.0), RATE)
    assert noise["mfcc_01_mean"] > tone["mfcc_01_mean"]  # more broadband energy
    assert noise["mfcc_02_mean"] < tone["mfcc_02_mean"]  # a tilt towards highs lowers the second coefficient


def test_every_column_is_documented_with_a_unit_and_units_are_in_names():
    assert FEATURE_SCHEMA.names == ["clip_id", *FEATURE_COLUMNS]
    assert all(unit and how for unit, how in FEATURE_COLUMNS.values())
    for name, (unit, _) in FEATURE_COLUMNS.items():
        suffix = {"Hz": "_hz", "dBFS": "_dbfs", "LUFS": "_lufs", "s": "_s", "beats/min": "_bpm"}.get(unit)
        assert suffix is None or name.removesuffix("_mean").removesuffix("_std").endswith(suffix), name


def test_unknown_feature_set_and_empty_audio_are_refused():
    with pytest.raises(ValueError, match="choose one of basic, full"):
        feature_set("fancy")
    with pytest.raises(ValueError, match="non-empty mono"):
        basic.extract(np.zeros(0, dtype=np.float32), RATE)
