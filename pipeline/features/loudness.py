"""Integrated loudness after ITU-R BS.1770-4 (LUFS), for mono signals at any sample rate.

K-weighting is the standard's two biquads (a high shelf of about +4 dB above 1.5 kHz, then a
high-pass near 38 Hz). The standard gives their coefficients at 48 kHz; here they are derived for
the signal's rate from the analogue prototypes, as libebur128 does. Gating: 400 ms blocks with 75 %
overlap, an absolute gate at -70 LUFS, then a relative gate 10 LU below the absolute-gated loudness.
"""

from __future__ import annotations

import math

import numpy as np

BLOCK_S = 0.4  # gating block length (BS.1770-4 §2.8)
OVERLAP = 0.75  # block overlap
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0


def k_weighting(rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(b, a) coefficients of the two K-weighting biquads at `rate` Hz."""
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196  # stage 1: high shelf
    k = math.tan(math.pi * f0 / rate)
    vh = 10 ** (gain_db / 20)
    vb = vh ** 0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf_b = np.array([(vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0])
    shelf_a = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    f0, q = 38.13547087602444, 0.5003270373238773  # stage 2: RLB high-pass
    k = math.tan(math.pi * f0 / rate)
    a0 = 1 + k / q + k * k
    highpass_b = np.array([1.0, -2.0, 1.0])
    highpass_a = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    return [(shelf_b, shelf_a), (highpass_b, highpass_a)]


def integrated_loudness(audio: np.ndarray, rate: int) -> float | None:
    """Gated loudness in LUFS of a mono signal; -inf when every block is below the absolute gate,
    None when the signal is shorter than one 400 ms block (the standard does not define it)."""
    from scipy.signal import lfilter

    block = int(round(BLOCK_S * rate))
    if audio.size < block:
        return None
    weighted = np.asarray(audio, dtype=np.float64)
    for b, a in k_weighting(rate):
        weighted = lfilter(b, a, weighted)
    step = int(round(block * (1 - OVERLAP)))
    n_blocks = 1 + (weighted.size - block) // step
    cumulative = np.concatenate([[0.0], np.cumsum(weighted**2)])  # (samples + 1,)
    starts = np.arange(n_blocks) * step
    power = (cumulative[starts + block] - cumulative[starts]) / block  # (blocks,) mean square per block
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10 * np.log10(power)
    gated = power[block_lufs > ABSOLUTE_GATE_LUFS]
    if gated.size == 0:
        return float("-inf")
    relative_gate = -0.691 + 10 * np.log10(gated.mean()) + RELATIVE_GATE_LU
    gated = power[(block_lufs > ABSOLUTE_GATE_LUFS) & (block_lufs > relative_gate)]
    return float(-0.691 + 10 * np.log10(gated.mean()))
