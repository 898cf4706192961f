"""Calibrating the leak threshold on the reference set itself.

Genuine trials: each enrolled reference utterance, under every enrolment variant (clean, pitch-shifted,
band-limited, under accompaniment), scored as if it were a generated clip that leaked it, against its
own speaker's centroids enrolled on the speaker's *other* utterances (leave one out). Impostor trials:
each utterance against the other speakers only, and voices outside the reference set if given. The threshold is the highest one that still flags the target
share of genuine trials; the equal error rate and the impostor false-positive rate at that threshold
say how well the encoder separates these voices.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Calibration:
    threshold: float
    target_recall: float
    recall: float  # share of genuine trials at or above the threshold
    false_positive_rate: float  # share of impostor trials at or above the threshold
    equal_error_rate: float
    genuine_trials: int
    impostor_trials: int

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """The error rate where misses (genuine below t) equal false alarms (impostor at or above t)."""
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    miss = np.array([np.mean(genuine < t) for t in thresholds])
    false_alarm = np.array([np.mean(impostor >= t) for t in thresholds])
    best = int(np.argmin(np.abs(miss - false_alarm)))
    return float((miss[best] + false_alarm[best]) / 2)


def calibrate(genuine: np.ndarray, impostor: np.ndarray, target_recall: float = 0.99) -> Calibration:
    """Threshold = the largest score that keeps recall on genuine trials >= target_recall."""
    genuine, impostor = np.sort(np.asarray(genuine, dtype=np.float64)), np.asarray(impostor, dtype=np.float64)
    if genuine.size == 0 or impostor.size == 0:
        raise ValueError("calibration needs genuine and impostor trials: at least two speakers with two files each")
    misses_allowed = int(np.floor((1 - target_recall) * genuine.size + 1e-9))
    threshold = float(genuine[misses_allowed])
    return Calibration(
        threshold=threshold, target_recall=target_recall, recall=float(np.mean(genuine >= threshold)),
        false_positive_rate=float(np.mean(impostor >= threshold)),
        equal_error_rate=equal_error_rate(genuine, impostor),
        genuine_trials=int(genuine.size), impostor_trials=int(impostor.size),
    )


def leave_one_out(index) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """For each enrolled file, in order: (speaker, its (variants, dim) embeddings, the index's centroids
    with that speaker re-enrolled without the file), or None for centroids when it is the speaker's only file."""
    sums = np.zeros(index.centroids.shape, dtype=np.float64)  # (speakers, variants, dim)
    counts = np.zeros(len(index.speakers), dtype=int)
    for speaker, embeddings in index.enrolled:
        sums[speaker] += embeddings
        counts[speaker] += 1
    for speaker, embeddings in index.enrolled:
        centroids = None
        if counts[speaker] > 1:
            others = sums[speaker] - embeddings  # (variants, dim)
            centroids = index.centroids.copy()
            centroids[speaker] = others / np.linalg.norm(others, axis=-1, keepdims=True)
        yield speaker, embeddings, centroids


def reference_trials(index, outsiders: list[np.ndarray] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) clip scores from the reference index's own enrolled files, every variant.

    Genuine: each enrolled file, under each enrolment variant, scored as a clip against the index with
    its own speaker's centroids re-enrolled without it (leave one out): the score that decides whether
    it would be flagged. Impostor: the same file against the *other* speakers only, and every outsider
    embedding ((variants, dim) per file) against every speaker.
    """
    genuine, impostor = [], []
    for speaker, embeddings, centroids in leave_one_out(index):
        for probe in embeddings:  # one trial per variant
            scores = index.speaker_scores(probe[None], centroids)  # (speakers,)
            if centroids is not None:
                genuine.append(float(scores.max()))
            if len(index.speakers) > 1:
                impostor.append(float(np.delete(scores, speaker).max()))
    for embeddings in outsiders:
        impostor += [float(index.speaker_scores(probe[None]).max()) for probe in embeddings]
    return np.array(genuine), np.array(impostor)


def calibrate_index(index, target_recall: float, outsiders: list[np.ndarray] = ()) -> Calibration:
    """Leave-one-out calibration of a reference index (see `reference_trials`)."""
    genuine, impostor = reference_trials(index, outsiders)
    return calibrate(genuine, impostor, target_recall)
