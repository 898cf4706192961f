import numpy as np
import pytest

from pipeline.features.extract import FEATURE_COLUMNS, FEATURE_SCHEMA, BasicFeatures
from pipeline.testing import sine, white_noise

RATE = 44_100
basic = BasicFeatures()


def test_sine_440_hz_has_its_centroid_near_440_hz():
    row = basic.extract(sine(440, 2.0), RATE)
    assert row["spectral_centroid_hz_mean"] == pytest.approx(440, rel=0.05)
    assert row["duration_s"] == pytest.approx(2.0) and row["sample_rate_hz"] == RATE
    assert row["zero_crossing_rate"] == pytest.approx(2 * 440 / RATE, rel=0.05)
    assert not row["is_silent"] and row["silence_ratio"] == 0.0


def test_levels_of_a_minus_20_dbfs_sine():
    row = basic.extract(sine(1000, 1.0, dbfs=-20.0), RATE)
    assert row["peak_dbfs"] == pytest.approx(-20.0, abs=0.05)
    assert row["rms_dbfs"] == pytest.approx(-20.0 - 3.01, abs=0.05)  # RMS of a sine is peak / sqrt(2)
    assert row["dc_offset"] == pytest.approx(0.0, abs=1e-3)


def test_silence_is_flagged():
    row = basic.extract(np.zeros(RATE, dtype=np.float32), RATE)
    assert row["is_silent"] and row["silence_ratio"] == 1.0 and row["peak_dbfs"] == float("-inf")


def test_white_noise_is_flat_and_a_sine_is_not():
    assert basic.extract(white_noise(1.0), RATE)["spectral_flatness_mean"] > 0.3
    assert basic.extract(sine(440, 1.0), RATE)["spectral_flatness_mean"] < 0.01


def test_dc_offset_is_measured():
    assert basic.extract(sine(440, 1.0, dbfs=-20) + 0.25, RATE)["dc_offset"] == pytest.approx(0.25, abs=1e-3)


def test_every_column_is_documented_with_a_unit():
    assert FEATURE_SCHEMA.names == ["clip_id", *FEATURE_COLUMNS]
    assert all(unit and how for unit, how in FEATURE_COLUMNS.values())


def test_empty_audio_is_refused():
    with pytest.raises(ValueError, match="non-empty mono"):
        basic.extract(np.zeros(0, dtype=np.float32), RATE)
