"""Transformations of reference audio: the vectorised plucked string is the textbook recurrence, bit for bit."""

import numpy as np
import pytest

from pipeline.privacy.transforms import plucked_string


def _circular_buffer_string(string: np.ndarray, n_samples: int) -> np.ndarray:
    """Karplus-Strong as usually written: read the buffer, then average the sample with the next one."""
    string, period, note = string.copy(), string.size, np.empty(n_samples)
    for i in range(n_samples):
        note[i] = string[i % period]
        string[i % period] = 0.498 * (string[i % period] + string[(i + 1) % period])
    return note


@pytest.mark.parametrize("period, n_samples", [(2, 40), (50, 5000), (163, 163), (163, 164), (400, 120), (401, 9000)])
def test_the_plucked_string_equals_the_circular_buffer_recurrence_exactly(period, n_samples):
    string = np.random.default_rng(period).uniform(-1, 1, period)
    assert np.array_equal(plucked_string(string, n_samples), _circular_buffer_string(string, n_samples))


@pytest.mark.parametrize("rt60_s", [0.5, 1.0])
def test_the_image_source_room_decays_at_its_rt60_from_a_direct_path_at_time_zero(rt60_s):
    """Schroeder's backward integration of the response: the energy falls 30 dB in about half the RT60 asked for
    (T30 x 2 within 20%), and the first sample is the direct path, the loudest; the same seed gives the same room."""
    from pipeline.privacy.transforms import RATE, shoebox_impulse

    response = shoebox_impulse(31, rt60_s)
    assert response.size == int(rt60_s * RATE) and np.argmax(np.abs(response)) == 0 and response[0] == 1.0
    energy = np.cumsum(response[::-1].astype(np.float64) ** 2)[::-1]
    decay_db = 10 * np.log10(energy / energy[0])
    t30 = (np.argmax(decay_db < -35) - np.argmax(decay_db < -5)) / RATE
    assert 2 * t30 == pytest.approx(rt60_s, rel=0.2)
    np.testing.assert_array_equal(response, shoebox_impulse(31, rt60_s))
    assert not np.array_equal(response, shoebox_impulse(32, rt60_s))
