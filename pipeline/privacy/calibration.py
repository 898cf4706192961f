"""Calibrating the leak threshold on trials that enrolment never saw, against a false-positive bound.

Genuine trials: each enrolled reference utterance under every calibration condition (`conditions.py`:
implementations and conditions that enrolment does not use), scored as a clip against the index with its
own speaker re-enrolled without it (leave one out). Impostor trials, per condition: the impostor cohort's
utterances (voices outside the reference set; each cohort voice left out of the normalisation bank while
it is the probe); plus clips with no voice at all (synthetic music, noise). A reference utterance scored
against the *other* reference speakers is no impostor trial: a clip that close to another protected
speaker is flagged as that speaker's leak, which is right.

Condition-aware: every trial's clip is also put through the index's condition detector (`conditions.py`), and
each detected condition gets an offset subtracted from its clips' scores: the lowest score that keeps each
impostor kind's trials detected under that condition within `max_fpr`, less the same for the clips detected
under no condition (`condition_offsets`). A reverberant clip is then judged against what reverberant impostors
score, not against the clean and phone-band impostors that set one shared threshold. Measured on the privacy
benchmark's tuning parts (`benchmarks/privacy.py`; the parts designs may be chosen on): on `tuning_espeak`
the offset came out at -0.097 and recall in its five rooms went from 0.17-0.79 to 0.48-0.94 (overall 0.79 ->
0.86 of 720), other voices in those rooms flagged 0.11-0.36 (0.00-0.31 before; that part's impostors are
flagged 0.28 clean: variants of the reference voices' own synthesiser); on `tuning` the offset came out at
-0.0004 and nothing changed (overall 0.970).
The threshold is the lowest one at which, in *every* impostor condition, at most `max_fpr` of the trials
score (offset) at or above it: the most recall that the false-positive bound allows. The kinds whose own bound
it is are named (`threshold_set_by`): they are what holds it up. Recall at that threshold
(pooled and per condition, with Wilson 95% intervals), the equal error rate and recall at 1% and 0.1% FPR
are reported. A reference set too small to show the target recall, or a detector that cannot reach it
within the bound, fails with a message that says what to add — a threshold is never picked silently.

A calibration is a pure function of the enrolled and cohort files, the settings and the leak check's code,
so it is cached in the reference cache under a key made of exactly those (`calibration_key`): the shards
of a run, and the next runs on the same reference set, reuse it instead of scoring a thousand trials again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.aggregates import min_count_histogram
from pipeline.files import read_json, write_json_atomic

NO_VOICE_CLIPS = 12  # per kind (music only, noise only)


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% by default); (0, 1) when there are no trials."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_entry(hits: int, trials: int) -> dict:
    low, high = wilson_interval(hits, trials)
    return {"rate": round(hits / trials, 4) if trials else None, "hits": hits, "trials": trials,
            "ci95": [round(low, 4), round(high, 4)]}


@dataclass(frozen=True)
class Calibration:
    threshold: float
    target_recall: float
    max_fpr: float
    recall: float  # pooled share of genuine trials at or above the threshold
    false_positive_rate: float  # pooled share of impostor trials at or above the threshold
    equal_error_rate: float
    recall_at_fpr_1pct: float
    recall_at_fpr_01pct: float
    genuine_trials: int
    impostor_trials: int
    recall_by_condition: dict = field(default_factory=dict)  # condition -> rate_entry
    fpr_by_kind: dict = field(default_factory=dict)  # impostor kind -> rate_entry
    # pooled genuine / impostor scores, every bin >= 5 trials (pipeline.aggregates): safe to publish
    score_histograms: dict = field(default_factory=dict)
    condition_offsets: dict = field(default_factory=dict)  # detected condition -> offset subtracted from its scores
    # calibration condition -> share of its genuine trials detected under each condition ({} without a detector)
    detected_conditions: dict = field(default_factory=dict)
    # the impostor kinds whose own false-positive bound is the threshold (the ones holding it up); [] if configured
    threshold_set_by: list = field(default_factory=list)
    # calibrated again without each cohort voice's impostor trials in turn: how far the threshold and calibration
    # recall move with which voices the cohort holds ({} if configured or fewer than two cohort voices)
    cohort_jackknife: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """The error rate where misses (genuine below t) equal false alarms (impostor at or above t)."""
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    thresholds = thresholds[np.isfinite(thresholds)]
    if thresholds.size == 0:
        return 0.5
    miss = np.array([np.mean(genuine < t) for t in thresholds])
    false_alarm = np.array([np.mean(impostor >= t) for t in thresholds])
    best = int(np.argmin(np.abs(miss - false_alarm)))
    return float((miss[best] + false_alarm[best]) / 2)


def threshold_for_fpr(impostor: np.ndarray, max_fpr: float) -> float:
    """The lowest threshold t with mean(impostor >= t) <= max_fpr (-inf scores never count)."""
    ranked = np.sort(np.asarray(impostor, dtype=np.float64))[::-1]
    allowed = int(np.floor(max_fpr * ranked.size + 1e-9))  # impostor trials allowed at or above t
    if allowed >= ranked.size or not np.isfinite(ranked[allowed]):
        return -np.inf
    return float(np.nextafter(ranked[allowed], np.inf))  # just above the first trial that must stay below


def recall_at_fpr(genuine: np.ndarray, impostor: np.ndarray, fpr: float) -> float:
    return float(np.mean(genuine >= threshold_for_fpr(impostor, fpr)))


def condition_offsets(impostor: dict[str, np.ndarray], detected: dict[str, np.ndarray], max_fpr: float) -> dict:
    """Detected condition -> the offset its clips' scores get (see the module docstring): per condition, the lowest
    score keeping every impostor kind's trials detected under it within `max_fpr`, less the same for the default
    condition. A condition no impostor trial was detected under gets none (it keeps the shared threshold)."""
    from pipeline.privacy.conditions import DEFAULT_CONDITION

    lowest = {}
    for condition in sorted({c for labels in detected.values() for c in labels}):
        cells = [scores[detected[kind] == condition] for kind, scores in impostor.items()]
        found = [threshold_for_fpr(cell, max_fpr) for cell in cells if cell.size]
        lowest[condition] = max(found) if found else -np.inf
    base = lowest.get(DEFAULT_CONDITION, -np.inf)
    if not np.isfinite(base):
        return {}
    return {c: round(t - base, 6) for c, t in lowest.items() if c != DEFAULT_CONDITION and np.isfinite(t)}


def calibrate(genuine: dict[str, np.ndarray], impostor: dict[str, np.ndarray], target_recall: float = 0.95,
              max_fpr: float = 0.05, threshold: float | None = None,
              detected: dict[str, list[str]] | None = None) -> Calibration:
    """The threshold for `max_fpr` in every impostor kind (or the given `threshold`), and the figures at it
    (see the module docstring). `detected`: the condition detected for each trial of `genuine` and `impostor`
    (same names, same order); with it, scores are offset per detected condition (`condition_offsets`) first."""
    genuine = {k: np.asarray(v, dtype=np.float64) for k, v in genuine.items() if len(v)}
    impostor = {k: np.asarray(v, dtype=np.float64) for k, v in impostor.items() if len(v)}
    if not genuine or not impostor:
        raise ValueError("calibration needs genuine trials (a speaker with two files or more) and impostor trials")
    offsets, shares = {}, {}
    if detected is not None:
        labels = {k: np.asarray(detected[k]) for k in [*genuine, *impostor]}
        offsets = condition_offsets(impostor, {k: labels[k] for k in impostor}, max_fpr)
        shift = {k: np.array([offsets.get(c, 0.0) for c in labels[k]]) for k in labels}
        genuine = {k: v - shift[k] for k, v in genuine.items()}
        impostor = {k: v - shift[k] for k, v in impostor.items()}
        shares = {k: {c: round(float(np.mean(labels[k] == c)), 4) for c in sorted(set(labels[k]))} for k in genuine}
    set_by = []
    if threshold is None:
        bounds = {kind: threshold_for_fpr(scores, max_fpr) for kind, scores in impostor.items()}
        threshold = max(bounds.values())
        set_by = sorted(kind for kind, bound in bounds.items() if bound == threshold)
    pooled_genuine, pooled_impostor = np.concatenate(list(genuine.values())), np.concatenate(list(impostor.values()))
    return Calibration(
        threshold=threshold, target_recall=target_recall, max_fpr=max_fpr,
        recall=float(np.mean(pooled_genuine >= threshold)),
        false_positive_rate=float(np.mean(pooled_impostor >= threshold)),
        equal_error_rate=equal_error_rate(pooled_genuine, pooled_impostor),
        recall_at_fpr_1pct=recall_at_fpr(pooled_genuine, pooled_impostor, 0.01),
        recall_at_fpr_01pct=recall_at_fpr(pooled_genuine, pooled_impostor, 0.001),
        genuine_trials=int(pooled_genuine.size), impostor_trials=int(pooled_impostor.size),
        recall_by_condition={k: rate_entry(int(np.sum(v >= threshold)), v.size) for k, v in genuine.items()},
        fpr_by_kind={k: rate_entry(int(np.sum(v >= threshold)), v.size) for k, v in impostor.items()},
        score_histograms={"genuine": min_count_histogram(pooled_genuine),
                          "impostor": min_count_histogram(pooled_impostor)},
        condition_offsets=offsets, detected_conditions=shares, threshold_set_by=set_by,
    )


class LeaveOneOut:
    """The index's centroids with the speaker of one enrolled file re-enrolled without it: `without(number)` for
    file `number` of `index.enrolled_files`, or None when it is its speaker's only file (no centroid is left to
    score it against, so it makes no genuine trial)."""

    def __init__(self, index):
        self.index = index
        self.sums = np.zeros(index.centroids.shape, dtype=np.float64)  # (speakers, variants, dim)
        self.counts = np.zeros(len(index.speakers), dtype=int)
        for speaker, embeddings in index.enrolled:
            self.sums[speaker] += embeddings
            self.counts[speaker] += 1
        self._last: tuple[int, np.ndarray | None] | None = None  # a file's trials come one after another

    def without(self, number: int) -> np.ndarray | None:
        if self._last is None or self._last[0] != number:
            speaker, embeddings = self.index.enrolled[number]
            centroids = None
            if self.counts[speaker] > 1:
                others = self.sums[speaker] - embeddings  # (variants, dim)
                centroids = self.index.centroids.copy()
                centroids[speaker] = others / np.linalg.norm(others, axis=-1, keepdims=True)
            self._last = (number, centroids)
        return self._last[1]


@dataclass(frozen=True)
class Trial:
    """One calibration trial before it is scored: `group` "genuine" (enrolled file `enrolled`, to be scored against
    its speaker's centroids without it) or "impostor" (`exclude_voice`: the cohort voice to leave out of the
    normalisation bank while its own utterance is the probe); `name` its condition or impostor kind; `windows` the
    encoder's (windows, dim) embeddings, None where it heard no voice."""

    group: str
    name: str
    windows: np.ndarray | None
    enrolled: int = -1
    exclude_voice: str | None = None


def trial_windows(index, encoder, cache_dir, outsiders=()) -> Iterator[Trial]:
    """Every calibration trial's windows, in a fixed order (see the module docstring): each enrolled file under
    every calibration condition, then each cohort and outsider file under every condition, then the clips of music
    and noise alone. `calibration_trials` scores them; the design-screening benchmark keeps them."""
    from pipeline.privacy.conditions import RATE, no_voice_clips
    from pipeline.privacy.reference import condition_windows

    for number, file in enumerate(index.enrolled_files):
        for name, windows in condition_windows(encoder, file, cache_dir).items():
            yield Trial("genuine", name, windows, enrolled=number)
    # Not an impostor trial: a reference utterance close to *another* reference speaker is flagged as that
    # speaker's leak, rightly. Impostors are voices outside the reference set: the cohort's, and `outsiders`.
    probes = [(voice.voice, file) for voice in index.cohort for file in voice.files]
    probes += [(None, file) for file in outsiders]
    for voice, file in probes:
        for name, windows in condition_windows(encoder, file, cache_dir).items():
            yield Trial("impostor", f"other voices, {name}", windows, exclude_voice=voice)
    for kind, clips in no_voice_clips(NO_VOICE_CLIPS, seed=7).items():
        for clip in clips:
            yield Trial("impostor", kind, encoder.embed_windows(clip, RATE))


def calibration_trials(index, encoder, cache_dir, outsiders=()) -> tuple[dict, dict, dict, dict]:
    """(genuine, impostor, detected, voices): condition or kind -> scores (see the module docstring), for every
    trial of both the condition the index's detector found (DEFAULT_CONDITION for a trial with no voice: it
    scores -inf, a miss or a sure pass, whatever its offset), and for every impostor trial its cohort voice ("" for
    an outsider's file or a clip with no voice). `outsiders`: extra ReferenceFiles of voices known not to be in the
    reference set, scored under every condition too. Scores are not offset (`speaker_scores`)."""
    from pipeline.privacy.conditions import DEFAULT_CONDITION

    genuine: dict[str, list[float]] = {}
    impostor: dict[str, list[float]] = {}
    detected: dict[str, list[str]] = {}
    voices: dict[str, list[str]] = {}
    left_out = LeaveOneOut(index)
    for trial in trial_windows(index, encoder, cache_dir, outsiders):
        if trial.group == "genuine":
            trials, centroids = genuine, left_out.without(trial.enrolled)
            if centroids is None:
                continue  # its speaker's only file: no centroid to score it against (`genuine_trial_count`)
        else:
            trials, centroids = impostor, None  # the index's own centroids
            voices.setdefault(trial.name, []).append(trial.exclude_voice or "")
        # no voice heard: a leak the check would miss, an impostor it would pass
        score = -np.inf if trial.windows is None else float(
            index.speaker_scores(trial.windows, centroids, trial.exclude_voice).max())
        trials.setdefault(trial.name, []).append(score)
        detected.setdefault(trial.name, []).append(
            DEFAULT_CONDITION if trial.windows is None else index.condition(trial.windows))
    return genuine, impostor, detected, voices


def without_each_cohort_voice(impostor: dict, voices: dict, detected: dict | None = None,
                              ) -> Iterator[tuple[dict, dict | None]]:
    """For each cohort voice named in `voices` (see `calibration_trials`), in name order: the impostor trials without
    that voice's, and `detected` without their labels (None stays None). Nothing with fewer than two cohort voices."""
    names = sorted({voice for kind in voices.values() for voice in kind if voice})
    if len(names) < 2:
        return
    for name in names:
        keep = {kind: np.array([voice != name for voice in voices[kind]], dtype=bool) for kind in impostor}
        without = {kind: np.asarray(scores, dtype=np.float64)[keep[kind]] for kind, scores in impostor.items()}
        labels = None if detected is None else {
            **detected, **{kind: list(np.asarray(detected[kind])[keep[kind]]) for kind in impostor}}
        yield without, labels


def cohort_jackknife(genuine: dict, impostor: dict, voices: dict, target_recall: float, max_fpr: float,
                     detected: dict | None = None) -> dict:
    """Calibrate again without each cohort voice's impostor trials in turn (`without_each_cohort_voice`); the range
    of the thresholds and calibration recalls that gives. A few cohort voices hold the threshold up (the ones nearest
    a reference speaker), so it moves with which voices the cohort happens to hold: on the privacy benchmark's
    `tuning_espeak` part, leaving out one of its 9 voices moved it from 0.366 to as low as 0.230. {} with fewer than
    two cohort voices."""
    runs = [calibrate(genuine, without, target_recall, max_fpr, detected=labels)
            for without, labels in without_each_cohort_voice(impostor, voices, detected)]
    if not runs:
        return {}
    thresholds, recalls = [run.threshold for run in runs], [run.recall for run in runs]
    return {"cohort_voices": len(runs), "threshold": [round(min(thresholds), 4), round(max(thresholds), 4)],
            "recall": [round(min(recalls), 4), round(max(recalls), 4)]}


def genuine_trial_count(index) -> int:
    """Genuine trials `calibration_trials` will score, known before any audio is embedded: every enrolled
    file of a speaker with another file to re-enrol without it, under every calibration condition."""
    from pipeline.privacy.conditions import CALIBRATION_CONDITIONS

    counts: dict[int, int] = {}
    for speaker, _ in index.enrolled:
        counts[speaker] = counts.get(speaker, 0) + 1
    return sum(n for n in counts.values() if n > 1) * len(CALIBRATION_CONDITIONS)


def required_trials(target_recall: float) -> int:
    """Genuine trials needed to show `target_recall` at all: with no miss, n trials bound the miss rate by
    3/n (95%, rule of three), so n >= 3 / (1 - target_recall)."""
    return math.ceil(3 / max(1e-9, 1 - target_recall))


def required_utterances(speakers: int, conditions: int, target_recall: float, canaries: int) -> int:
    """Utterances per speaker that give `required_trials` over `conditions`, plus the one left out and the
    canaries held out."""
    return math.ceil(required_trials(target_recall) / max(1, speakers * conditions)) + 1 + canaries


# Enrolled utterances per speaker past which more speech stopped raising calibration recall: on the privacy
# benchmark's tuning reference voices (4 speakers, 2.4-2.7 s utterances, one held out as canary), recall was 0.90
# with 3 enrolled, 0.95 with 5, 0.97 with 7, 0.95 with 9 and 11 (the threshold rises with the centroids' sharpness).
ENOUGH_ENROLLED = 5

# The modules whose code decides a calibration's figures: any change to them makes a new cache key.
_CALIBRATION_CODE = ("calibration.py", "conditions.py", "reference.py", "transforms.py", "cohort.py", "encoder.py",
                     "music.py")


def calibration_key(index, encoder, target_recall: float, max_fpr: float, threshold: float | None,
                    outsiders=()) -> str:
    """The identity of a calibration: the index (files, encoder, variants, cohort, projection), which files are
    enrolled (the canary split), the outsiders, the settings, and the source of the code that scores trials."""
    digest = hashlib.sha256(json.dumps([index.fingerprint, encoder.version, target_recall, max_fpr, threshold,
                                        NO_VOICE_CLIPS]).encode())
    for file in [*index.enrolled_files, *outsiders]:
        digest.update(f"{file.speaker}\x1f{file.sha256}\n".encode())
    for name in _CALIBRATION_CODE:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()


def calibrate_index(index, encoder, cache_dir, target_recall: float = 0.95, max_fpr: float = 0.05,
                    outsiders=(), canaries_per_speaker: int = 0, threshold: float | None = None) -> Calibration:
    """Calibrate `index` (see the module docstring): the threshold for `max_fpr` (or the given `threshold`,
    configured by hand) and its figures, from `cache_dir` when this calibration was made before. Raises
    LeakCheckFailed when the reference set is too small to show `target_recall` at all (`recall_shortfall`
    judges the recall reached)."""
    from pipeline.errors import LeakCheckFailed
    from pipeline.privacy.conditions import CALIBRATION_CONDITIONS

    trials = genuine_trial_count(index)  # judged before minutes of embedding, not after
    if trials < required_trials(target_recall):
        per_speaker = required_utterances(len(index.speakers), len(CALIBRATION_CONDITIONS), target_recall,
                                          canaries_per_speaker)
        raise LeakCheckFailed(
            f"the reference set is too small to calibrate the leak check: {len(index.speakers)} speaker(s), "
            f"{trials} genuine trial(s); showing recall {target_recall} needs {per_speaker} utterances (3-5 s) "
            "per speaker. Add utterances, or lower privacy.target_recall.")
    key = calibration_key(index, encoder, target_recall, max_fpr, threshold, outsiders)
    cached = Path(cache_dir) / "calibrations" / f"{key}.json"
    if cached.is_file():
        return Calibration(**read_json(cached))
    genuine, impostor, detected, voices = calibration_trials(index, encoder, cache_dir, outsiders)
    if sum(len(v) for v in genuine.values()) != trials:
        raise RuntimeError("genuine_trial_count disagrees with calibration_trials: fix one to match the other")
    labels = detected if index.detector is not None else None
    calibration = calibrate(genuine, impostor, target_recall, max_fpr, threshold, labels)
    if threshold is None:
        calibration = dataclasses.replace(calibration, cohort_jackknife=cohort_jackknife(
            genuine, impostor, voices, target_recall, max_fpr, labels))
    write_json_atomic(cached, dataclasses.asdict(calibration))
    return calibration


def recall_shortfall(calibration: Calibration, enrolled_per_speaker: int) -> str | None:
    """None when the calibration reaches its target recall; else what is wrong and what to do. More enrolment
    speech is advised only below ENOUGH_ENROLLED utterances per speaker: past that, more speech did not raise recall
    (see ENOUGH_ENROLLED), and the message says the detector is at its limit under its weakest condition."""
    if calibration.recall >= calibration.target_recall:
        return None
    worst = min(calibration.recall_by_condition.items(), key=lambda kv: kv[1]["rate"])
    if enrolled_per_speaker < ENOUGH_ENROLLED:
        advice = (f"More enrolment speech sharpens every speaker's centroids: give each speaker about "
                  f"{2 * enrolled_per_speaker + 1} utterances of 3-5 s (now {enrolled_per_speaker} enrolled)")
    else:
        advice = (f"More enrolment speech is unlikely to help ({enrolled_per_speaker} utterances per speaker are "
                  f"enrolled; on the privacy benchmark's tuning voices recall stopped rising at {ENOUGH_ENROLLED}): "
                  f"the detector is at its limit under {worst[0]}. Judge that condition's risk for this data")
    held_up = ("" if not calibration.threshold_set_by else " The threshold is where it is because of the impostor "
               f"trials of {', '.join(repr(kind) for kind in calibration.threshold_set_by)}.")
    return (f"the leak check reaches recall {calibration.recall:.3f} (target {calibration.target_recall}) within "
            f"max_fpr {calibration.max_fpr}: at threshold {calibration.threshold:.4f} it flags "
            f"{calibration.recall:.3f} of {calibration.genuine_trials} held-out genuine trials (weakest: {worst[0]}, "
            f"{worst[1]['rate']:.2f}).{held_up} {advice}, or raise privacy.max_fpr / lower privacy.target_recall "
            "knowingly.")
