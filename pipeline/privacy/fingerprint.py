"""Exact and near-copy detection with audio fingerprints (Chromaprint, the AcoustID fingerprint).

Chromaprint turns audio into 32-bit items, about 8 a second, each coding how the 12 pitch-class energies change
over a short span; a recording re-encoded, resampled, mixed under noise, slightly re-timed or spliced into other
audio keeps most of its bits. Two fingerprints are compared at every alignment: the share of differing bits (bit
error rate, BER) over each WINDOW_ITEMS (about 2 s) of overlapping items, and the lowest is the pair's distance.
Unrelated audio sits near 0.5. Measured on the test voices (16 recordings of 7-8 s, three sentences each; tuning
data): mp3 64 kbit/s, sox tempo x0.95, white noise at 20 dB and 4 s spliced into other speech at most 0.086, a new
recording of the same voice at least 0.182, another voice at least 0.314. Hence MAX_BER 0.13. Moving the pitch
(sox pitch or speed, a phase vocoder) moves the chroma and escapes it (0.145-0.35 on the copy benchmark's tuning
part): those copies are the log-mel distance's (copycheck.py).

Chromaprint's first item comes after about 2.6 s of audio, so a clip or recording shorter than MIN_SECONDS has no
window of items to compare: the check does not apply to it (the log-mel copy check still does), and the run
reports how many clips were fingerprinted.

The library is Debian's libchromaprint1, through pyacoustid's ctypes binding (nothing is looked up online).
"""

from __future__ import annotations

import numpy as np

WINDOW_ITEMS = 16  # items compared at once: about 2 s
MAX_BER = 0.13  # a clip this close (bit error rate) to a corpus recording over WINDOW_ITEMS is a near copy
MIN_SECONDS = 2.6 + WINDOW_ITEMS / 8  # audio before chromaprint's first item, plus one window of items


def fingerprint(audio: np.ndarray, rate: int) -> np.ndarray:
    """Chromaprint's raw fingerprint of mono float audio in [-1, 1]: (items,) uint32, empty for short audio."""
    import chromaprint

    pcm = (np.clip(np.asarray(audio, dtype=np.float64), -1.0, 1.0) * 32767).astype("<i2")
    printer = chromaprint.Fingerprinter()
    printer.start(int(rate), 1)
    printer.feed(pcm.tobytes())
    raw, _ = chromaprint.decode_fingerprint(printer.finish())
    return np.asarray(raw, dtype=np.int64).astype(np.uint32)  # the binding decodes items as signed ints


def bit_errors(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Differing bits of each pair of items (equal lengths, uint32): (items,) uint8."""
    return np.bitwise_count(np.bitwise_xor(a, b))


def distance(clip: np.ndarray, record: np.ndarray, window: int = WINDOW_ITEMS) -> float | None:
    """The lowest bit error rate over any `window` items of `clip` aligned with `record` at any offset; None when
    either has fewer than `window` items (nothing to compare)."""
    if len(clip) < window or len(record) < window:
        return None
    kernel = np.full(window, 1 / (32 * window))
    best = 1.0
    for offset in range(-(len(clip) - window), len(record) - window + 1):
        i, j = max(0, -offset), max(0, offset)
        n = min(len(clip) - i, len(record) - j)
        errors = bit_errors(clip[i: i + n], record[j: j + n])
        best = min(best, float(np.convolve(errors, kernel, mode="valid").min()))
    return best


def closest(clip: np.ndarray, records: list[np.ndarray]) -> float | None:
    """The clip's distance to its closest record (None when the clip, or every record, is too short)."""
    found = [d for d in (distance(clip, record) for record in records) if d is not None]
    return min(found) if found else None
