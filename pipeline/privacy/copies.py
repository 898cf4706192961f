"""Is any stretch of a clip a copy of corpus audio? Normalised cross-correlation, chunk by chunk.

A clip is cut into chunks (0.25 s); each chunk slides over every corpus recording and the largest
normalised cross-correlation (1: the chunk is, up to gain, that stretch of the recording) is the clip's
overlap with the corpus. It finds sample-aligned copies: a prime left in a continuation, a corpus excerpt
spliced into a clip. It does not find resynthesised copies (same words and voice, other samples): those are
the embedding and fingerprint checks' job.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

CHUNK_S = 0.25
QUIET_RMS = 1e-4  # chunks quieter than this are skipped: silence correlates with nothing


def sliding_energy(x: np.ndarray, width: int) -> np.ndarray:
    """sqrt of the energy of every window of `width` consecutive samples of x."""
    c = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    return np.sqrt(np.maximum(c[width:] - c[:-width], 0.0))


def chunk_overlap(chunk: np.ndarray, recording: np.ndarray) -> float:
    """Largest |normalised cross-correlation| of `chunk` with any equally long stretch of `recording`."""
    if len(recording) < len(chunk):
        recording = np.pad(recording, (0, len(chunk) - len(recording)))
    chunk = chunk.astype(np.float64)
    correlation = signal.fftconvolve(recording.astype(np.float64), chunk[::-1], mode="valid")
    norms = sliding_energy(recording, len(chunk)) * np.linalg.norm(chunk)
    valid = norms > 1e-9
    if not valid.any():
        return 0.0
    return float(np.max(np.abs(correlation[valid]) / norms[valid]))


def corpus_overlap(clip: np.ndarray, recordings: list[np.ndarray], rate: int = 44_100, chunk_s: float = CHUNK_S) -> float:
    """The clip's largest chunk overlap with any recording (same rate as the clip); 0 for a silent clip."""
    width = max(1, int(chunk_s * rate))
    best = 0.0
    for start in range(0, max(1, len(clip) - width + 1), width):
        chunk = clip[start: start + width]
        if len(chunk) < width // 2 or np.sqrt(np.mean(chunk.astype(np.float64) ** 2)) < QUIET_RMS:
            continue
        for recording in recordings:
            best = max(best, chunk_overlap(chunk, recording))
    return best
