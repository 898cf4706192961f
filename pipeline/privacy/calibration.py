"""Calibrating the leak threshold on the reference set itself.

Genuine trials: each reference utterance scored against its own speaker's centroid enrolled on the
speaker's *other* utterances (leave one out), as if it were a generated clip that leaked it.
Impostor trials: each utterance against the other speakers' centroids, and voices outside the
reference set against every centroid. The threshold is the highest one that still flags the target
share of genuine trials; the equal error rate and the impostor false-positive rate at that threshold
say how well the encoder separates these voices.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


def reference_trials(embeddings: dict[str, list[np.ndarray]], outsiders: list[np.ndarray] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) cosine scores from per-speaker utterance embeddings (unit norm).

    Genuine: leave-one-out centroid of the utterance's own speaker. Impostor: the best other
    speaker's centroid (all utterances), and every outsider against every centroid.
    """
    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v)

    centroids = {s: unit(np.mean(e, axis=0)) for s, e in embeddings.items()}
    genuine, impostor = [], []
    for speaker, utterances in embeddings.items():
        for i, utterance in enumerate(utterances):
            others = [u for j, u in enumerate(utterances) if j != i]
            if others:
                genuine.append(float(unit(np.mean(others, axis=0)) @ utterance))
            rivals = [float(c @ utterance) for s, c in centroids.items() if s != speaker]
            if rivals:
                impostor.append(max(rivals))
    for outsider in outsiders:
        impostor.append(max(float(c @ outsider) for c in centroids.values()))
    return np.array(genuine), np.array(impostor)


def embed_folder(folder: Path, encoder, cache_dir: Path) -> dict[str, list[np.ndarray]]:
    """Embeddings of every `<speaker>/<file>` under folder (cached by content hash and encoder version)."""
    from pipeline.privacy.reference import embed_cached, list_reference_files

    out: dict[str, list[np.ndarray]] = {}
    for file in list_reference_files(folder):
        out.setdefault(file.speaker, []).append(embed_cached(encoder, file, cache_dir))
    return out
