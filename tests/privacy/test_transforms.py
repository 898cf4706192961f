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
