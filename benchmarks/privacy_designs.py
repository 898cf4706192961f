"""Screen leak-check score designs on the privacy benchmark's tuning parts, in seconds per design.

    python benchmarks/privacy_designs.py --part tuning|tuning_espeak|tuning_made|tuning_made2 [--out DIR]
                                         [--design NAME ...] [--nap-directions N[,N...]] [--encoder NAME]
                                         [--cohort-cut COSINE] [--jackknife] [--json FILE]

A design that changes only how embeddings are compared (the margin over the cohort, which centroids count, a trained
backend, condition offsets) needs no new embedding. This tool embeds one part once — the raw window embeddings of
every calibration trial (reference utterances left out of their speaker's centroids, cohort utterances, music and
noise alone, under every calibration condition) and of every benchmark clip, as the pipeline's encoder gives them —
and keeps them (`DIR/<part>/designs-windows-<key>.npz`, keyed by the index's fingerprint, the calibration
conditions' code and the part's clip list). Each design then calibrates and judges exactly as a run does: the
threshold is the lowest that holds `max_fpr` for every impostor kind (`calibration.calibrate`, with condition
offsets where the design detects conditions), and a clip is flagged when its best speaker's score reaches it. The
landed design (`landed`) reproduces `benchmarks/privacy.py --part P`'s recall. The nuisance projection's direction
count is screened the same way (`--nap-directions`: the stored windows are raw, so only the index is rebuilt, from
cached embeddings). `--encoder` embeds with another of the pipeline's encoders (resemblyzer's own weights, for
comparison); `--cohort-cut` moves the cohort's lookalike cut, so that encoders whose clean embeddings put a
cohort voice on either side of it are compared on one cohort; a design that needs other new embeddings (other
enrolment variants, cutting signals) is measured with `benchmarks/privacy.py` instead.

Held-out parts are refused: designs are chosen on the tuning parts only, and the held-out parts report a design
already chosen (`benchmarks/PRIVACY.md`). Printed per design: the threshold and the impostor kinds that set it,
calibration recall, the part's recall over its leaks, the share of other voices' clips flagged (pooled over their
transformations: a design that raises recall by flagging more impostors shows it here), the worst non-leak row, and
two figures that do not depend on where calibration puts the threshold: the chance that a leak outscores another
voice's clip (AUC) and the recall at the threshold that flags 5% of the other voices' clips; and where the AUC is
lost: the leak / other-voice pairs in the wrong order, and the other-voice row that holds most of them (every row's
count, leak rows too, in `--json`). `--jackknife` also
calibrates once without each cohort voice's trials and prints the range of the calibrated figures: a few cohort
voices set the threshold, so a design that moves them moves the figures by this much without separating voices any
better. `--json` writes every row's figures.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from privacy_corpus import split_parts  # noqa: E402 - benchmarks/ is on the path now

TUNING_PARTS = tuple(part for part in split_parts() if part.startswith("tuning"))


@dataclass
class Trials:
    """Raw window embeddings of a part's trials, flattened: trial i owns windows[bounds[i]:bounds[i + 1]]
    (none: the encoder heard no voice). `group`: "genuine" (a calibration trial of reference file `loo`, scored
    against centroids without it), "impostor" (a calibration impostor; `exclude` names its cohort voice, left out
    of the bank while it is the probe) or "clip" (a benchmark clip; `kind` is its row, e.g. "leak: music 0 dB")."""

    windows: np.ndarray  # (total windows, dim)
    bounds: np.ndarray  # (trials + 1,)
    group: np.ndarray  # (trials,) str
    kind: np.ndarray  # (trials,) str
    loo: np.ndarray  # (trials,) int, -1 where not a genuine trial
    exclude: np.ndarray  # (trials,) str, "" where no cohort voice is left out

    def of(self, i: int) -> np.ndarray | None:
        return None if self.bounds[i] == self.bounds[i + 1] else self.windows[self.bounds[i]:self.bounds[i + 1]]

    def save(self, path: Path) -> None:
        from pipeline.files import atomic_path

        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **self.__dict__)

    @classmethod
    def load(cls, path: Path) -> "Trials":
        with np.load(path) as stored:
            return cls(**{name: stored[name] for name in stored.files})


def _embed_clip(encoder, path: str) -> np.ndarray | None:
    import soundfile as sf

    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    return encoder.embed_windows(audio.mean(axis=1), rate)


def collect(index, encoder, cache: Path, folder: Path, workers: int = 0) -> Trials:
    """Every calibration trial's and benchmark clip's raw windows (see `Trials`), as `calibration_trials` and
    `benchmarks/privacy.py` embed them."""
    from pipeline.parallel import ordered_map
    from pipeline.privacy.calibration import trial_windows
    from pipeline.privacy.encoder import load_encoder
    from pipeline.progress import progress

    found: list[tuple[np.ndarray | None, str, str, int, str]] = [
        (trial.windows, trial.group, trial.name, trial.enrolled, trial.exclude_voice or "")
        for trial in trial_windows(index, encoder, cache)]
    rows = list(csv.DictReader(open(folder / "clips.csv")))
    paths = [str(folder / row["path"]) for row in rows]
    embedded = ordered_map(_embed_clip, paths, workers, state=(load_encoder, (encoder.name,)), local_state=encoder)
    for row, windows in zip(rows, progress(embedded, total=len(rows), desc="embedding clips", unit="clip")):
        found.append((windows, "clip", f"{row['kind']}: {row['transform']}", -1, ""))
    counts = [0 if windows is None else len(windows) for windows, *_ in found]
    stacked = [windows for windows, *_ in found if windows is not None]
    return Trials(np.concatenate(stacked).astype(np.float32), np.concatenate([[0], np.cumsum(counts)]),
                  np.array([g for _, g, *_ in found]), np.array([k for _, _, k, *_ in found]),
                  np.array([n for *_, n, _ in found]), np.array([e for *_, e in found]))


@dataclass(frozen=True)
class Probe:
    """What a trial is scored against: `centroids` (the index's, or its speaker's re-enrolled without the trial's
    file), the enrolled file number left out (`leave_out`, genuine trials), the cohort voice left out of the bank."""

    centroids: np.ndarray
    leave_out: int | None = None
    exclude: str | None = None


# A design: design(index, raw windows (windows, dim), probe) -> (each speaker's score (speakers,), the detected
# condition or None: no condition offsets). A design with `fit(index, trials, probes)` is trained on the calibration
# trials (never on benchmark clips) before it scores anything.


def landed(index, windows, probe: Probe):
    """The pipeline's own score (`ReferenceIndex.speaker_scores`) and condition (`ReferenceIndex.condition`)."""
    return index.speaker_scores(windows, probe.centroids, probe.exclude), index.condition(windows)


def one_threshold(index, windows, probe: Probe):
    """The landed score without condition offsets: one threshold for every clip."""
    return index.speaker_scores(windows, probe.centroids, probe.exclude), None


def _margin(index, projected: np.ndarray, raw: np.ndarray, exclude: str | None) -> np.ndarray:
    """The landed margin (windows, speakers) of raw similarities (windows, speakers) over the cohort bank."""
    from pipeline.privacy.reference import cohort_margin

    return cohort_margin(raw, index.cohort_near(projected, exclude))


def without_variant(name: str):
    """The landed design with one enrolment variant's centroids left out of every speaker's best match."""

    def design(index, windows, probe: Probe):
        keep = [i for i, variant in enumerate(index.variants) if variant != name]
        projected = index.project(windows)
        raw = np.einsum("wd,svd->wsv", projected, probe.centroids[:, keep]).max(axis=2)
        return _margin(index, projected, raw, probe.exclude).max(axis=0), index.condition(windows)

    return design


def nearest_utterances(k: int):
    """A speaker's raw similarity is the mean of its k most similar enrolled utterances (each at its best variant),
    instead of the best variant centroid; margin and offsets as landed."""

    def design(index, windows, probe: Probe):
        projected = index.project(windows)
        similar = np.stack([(projected @ embeddings.T).max(axis=1) for _, embeddings in index.enrolled], axis=1)
        owners = np.array([speaker for speaker, _ in index.enrolled])
        raw = np.empty((len(projected), len(index.speakers)))
        for speaker in range(len(index.speakers)):
            mine = (owners == speaker) & (np.arange(len(owners)) != (-1 if probe.leave_out is None else probe.leave_out))
            column = np.sort(similar[:, mine], axis=1)
            raw[:, speaker] = column[:, -min(k, column.shape[1]):].mean(axis=1)
        return _margin(index, projected, raw, probe.exclude).max(axis=0), index.condition(windows)

    return design


def symmetric_normalisation(weight: float):
    """The landed margin mixed with one over the *speaker's* cohort neighbourhood (adaptive s-norm's enrolment side):
    (1 - weight) * margin over the window's top cohort similarity + weight * margin over the matched centroid's."""
    from pipeline.privacy.reference import cohort_margin

    def design(index, windows, probe: Probe):
        projected = index.project(windows)
        similar = np.einsum("wd,svd->wsv", projected, probe.centroids)
        best = similar.argmax(axis=2)  # (windows, speakers): the variant each window meets best
        raw = similar.max(axis=2)
        speakers, variants, dim = probe.centroids.shape
        # (speakers, variants): each centroid's own mean similarity to its nearest cohort embeddings
        crowd = index.cohort_near(probe.centroids.reshape(-1, dim), probe.exclude).reshape(speakers, variants)
        near = crowd[np.arange(speakers)[None, :], best]  # (windows, speakers)
        mixed = (1 - weight) * _margin(index, projected, raw, probe.exclude) + weight * cohort_margin(raw, near)
        return mixed.max(axis=0), index.condition(windows)

    return design


def score_features(index, windows, probe: Probe) -> np.ndarray:
    """(speakers, 3) features of a clip for a trained backend: the landed margin, the cohort similarity `near` of
    the window where the margin peaks, and the condition detector's logit on the whole clip's raw embedding."""
    from pipeline.privacy.reference import cohort_margin

    projected = index.project(windows)
    raw = np.einsum("wd,svd->wsv", projected, probe.centroids).max(axis=2)  # (windows, speakers)
    near = index.cohort_near(projected, probe.exclude)
    margin = cohort_margin(raw, near)
    peak = margin.argmax(axis=0)
    logit = float(windows[0] @ index.detector.weights + index.detector.bias)
    return np.stack([margin.max(axis=0), near[peak, 0], np.full(raw.shape[1], logit)], axis=1)


@dataclass
class LogisticFusion:
    """A logistic-regression backend over `score_features` (standardised; L2, C), trained on the calibration trials
    (genuine against impostor, each trial kind weighted equally) of the speaker with the best landed margin; its
    log-odds are the score. No condition offsets: the detector's logit is a feature instead."""

    C: float = 0.1
    model: object = None

    def fit(self, index, trials: Trials, probes: dict[int, Probe | None]) -> "LogisticFusion":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        rows, labels, kinds = [], [], []
        for i in np.flatnonzero(np.isin(trials.group, ("genuine", "impostor"))):
            windows, probe = trials.of(i), probes.get(i)
            if windows is None or probe is None:
                continue
            features = score_features(index, windows, probe)
            rows.append(features[features[:, 0].argmax()])
            labels.append(trials.group[i] == "genuine")
            kinds.append(f"{trials.group[i]}|{trials.kind[i]}")
        kinds, labels = np.array(kinds), np.array(labels)
        weights = np.array([1.0 / np.sum(kinds == kind) for kind in kinds])
        weights[labels] *= weights[~labels].sum() / weights[labels].sum()
        self.model = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=5000))
        self.model.fit(np.array(rows), labels, logisticregression__sample_weight=weights / weights.mean())
        return self

    def __call__(self, index, windows, probe: Probe):
        features = score_features(index, windows, probe)
        scores = np.full(len(features), -np.inf)
        best = int(features[:, 0].argmax())
        scores[best] = self.model.decision_function(features[best:best + 1])[0]
        return scores, None


# name -> a new design. Besides the landed one, designs tried and not kept (benchmarks/PRIVACY.md, 2026-12-07).
DESIGNS: dict[str, Callable[[], object]] = {
    "landed": lambda: landed,
    "one-threshold": lambda: one_threshold,
    "logistic-fusion": LogisticFusion,
    "nearest-3-utterances": lambda: nearest_utterances(3),
    "nearest-5-utterances": lambda: nearest_utterances(5),
    "symmetric-norm-0.25": lambda: symmetric_normalisation(0.25),
    "without-noise0db": lambda: without_variant("noise0db"),
}


def probes(index, trials: Trials) -> dict[int, Probe | None]:
    """Trial number -> what it is scored against; None for a genuine trial of a speaker's only enrolled file (no
    centroid to score it against, as in `calibration_trials`)."""
    from pipeline.privacy.calibration import LeaveOneOut

    left_out = LeaveOneOut(index)
    found = {}
    for i, (group, number, exclude) in enumerate(zip(trials.group, trials.loo, trials.exclude)):
        if group == "genuine":
            centroids = left_out.without(int(number))
            found[i] = None if centroids is None else Probe(centroids, int(number))
        else:
            found[i] = Probe(index.centroids, exclude=str(exclude) or None)
    return found


def flagged_by_voice(speakers: list[str], kinds: list[str], scores: list[float], threshold: float) -> dict:
    """Each voice's share of its clips (clips.csv's speaker and kind columns, in its order) at or above `threshold`:
    {"other_voice": {voice: rate}, "leak": {voice: rate}}, most flagged first (other voices) and fewest caught first
    (leaks): whether a few voices or all of them make a false-positive rate, or a recall."""
    counts: dict[str, dict[str, list[int]]] = {"other_voice": {}, "leak": {}}
    for speaker, kind, score in zip(speakers, kinds, scores):
        if kind in counts:
            tally = counts[kind].setdefault(speaker, [0, 0])
            tally[0] += score >= threshold
            tally[1] += 1
    rates = {kind: {voice: round(hit / total, 4) for voice, (hit, total) in voices.items()}
             for kind, voices in counts.items()}
    return {"other_voice": dict(sorted(rates["other_voice"].items(), key=lambda kv: (-kv[1], kv[0]))),
            "leak": dict(sorted(rates["leak"].items(), key=lambda kv: (kv[1], kv[0])))}


def separation(leaks: np.ndarray, others: np.ndarray, flagged: float = 0.05, leak_rows: np.ndarray | None = None,
               other_rows: np.ndarray | None = None) -> dict:
    """How far a design's scores keep the part's leaks from its other voices, wherever calibration puts the
    threshold: the chance that a leak outscores another voice's clip (ties count half), and the share of leaks
    caught at the lowest threshold that flags at most `flagged` of the other voices' clips. A design that moves
    only along the recall / false-positive line leaves both where they were. With each clip's row (`leak_rows`,
    `other_rows`, aligned with the scores), also where the AUC is lost: the discordant pairs (a leak scoring under
    another voice's clip; ties half) counted by leak row and by other-voice row, most first, rows with none left
    out. One row can hold nearly all of them (benchmarks/PRIVACY.md, 2026-12-07, seventh session). And each leak
    row's share caught at that same threshold: which transformations the scores separate, whatever calibration does
    (benchmarks/PRIVACY.md, ninth session: an encoder whose calibrated threshold collapsed)."""
    if leaks.size == 0 or others.size == 0:
        return {"auc": None, f"recall_at_{flagged:g}_other_voices": None}
    discordant = (leaks[:, None] < others[None, :]) + 0.5 * (leaks[:, None] == others[None, :])  # (leaks, others)
    ranked = np.sort(others)[::-1]
    allowed = int(np.floor(flagged * others.size))  # other voices' clips that may score at or above the threshold
    cut = ranked[allowed] if allowed < others.size else -np.inf  # the threshold lies just above this clip's score
    found = {"auc": round(float(1 - discordant.mean()), 4),
             f"recall_at_{flagged:g}_other_voices": round(float(np.mean(leaks > cut)), 4)}
    if leak_rows is not None and other_rows is not None:
        def by_row(rows: np.ndarray, axis: int) -> dict[str, float]:
            per_clip = discordant.sum(axis=axis)  # each clip's pairs in the wrong order
            counts = {str(row): float(per_clip[rows == row].sum()) for row in np.unique(rows)}
            return dict(sorted(((row, n) for row, n in counts.items() if n), key=lambda kv: (-kv[1], kv[0])))

        found["discordant_pairs"] = {"total": float(discordant.sum()), "by_leak_row": by_row(leak_rows, 1),
                                     "by_other_row": by_row(other_rows, 0)}
        found[f"recall_at_{flagged:g}_other_voices_by_leak_row"] = {
            str(row): round(float(np.mean(leaks[leak_rows == row] > cut)), 4) for row in np.unique(leak_rows)}
    return found


def evaluate(index, trials: Trials, design, max_fpr: float, target_recall: float, jackknife: bool = False) -> dict:
    """Calibrate `design` on the calibration trials as a run does, then judge the benchmark clips at its threshold.
    `jackknife`: also calibrate once without each cohort voice's impostor trials (the clips' scores unchanged) and
    give the range of the figures: how far the calibrated figures move with which voices the cohort happens to hold
    (`calibration.without_each_cohort_voice`, as a run's `cohort_jackknife` leaves them out)."""
    from pipeline.privacy.calibration import without_each_cohort_voice
    from pipeline.privacy.conditions import DEFAULT_CONDITION

    against = probes(index, trials)
    if hasattr(design, "fit"):
        design = design.fit(index, trials, against)
    genuine, impostor, detected, voices = {}, {}, {}, {}
    clips: list[tuple[str, float, str | None]] = []
    for i in range(len(trials.group)):
        group, kind, windows = trials.group[i], str(trials.kind[i]), trials.of(i)
        if against[i] is None:
            continue
        if windows is None:
            score, condition = -np.inf, DEFAULT_CONDITION
        else:
            scores, condition = design(index, windows, against[i])
            score = float(np.max(scores))
        if group == "clip":
            clips.append((kind, score, condition))
            continue
        (genuine if group == "genuine" else impostor).setdefault(kind, []).append(score)
        detected.setdefault(kind, []).append(condition or DEFAULT_CONDITION)
        if group != "genuine":
            voices.setdefault(kind, []).append(str(trials.exclude[i]))
    uses_conditions = any(c != DEFAULT_CONDITION for labels in detected.values() for c in labels)
    detected = detected if uses_conditions else None
    result = _judge(genuine, impostor, detected, clips, max_fpr, target_recall)
    runs = [_judge(genuine, without, labels, clips, max_fpr, target_recall)
            for without, labels in without_each_cohort_voice(impostor, voices, detected)] if jackknife else []
    if runs:  # none with fewer than two cohort voices
        def spread(figure) -> list[float]:
            return [round(min(map(figure, runs)), 4), round(max(map(figure, runs)), 4)]

        result["jackknife"] = {"cohort_voices": len(runs), "threshold": spread(lambda r: r["threshold"]),
                               "recall": spread(lambda r: r["overall_recall"]["rate"]),
                               "other_voices_flagged": spread(lambda r: r["other_voices_flagged"]["rate"])}
    return result


def _judge(genuine: dict, impostor: dict, detected: dict | None, clips: list[tuple[str, float, str | None]],
           max_fpr: float, target_recall: float) -> dict:
    """Calibrate on the calibration trials' scores (`calibration.calibrate`'s arguments) and judge `clips` ((row,
    score, detected condition)) at the threshold and offsets it gives."""
    from pipeline.privacy.calibration import calibrate, rate_entry
    from pipeline.privacy.conditions import DEFAULT_CONDITION

    calibration = calibrate(genuine, impostor, target_recall, max_fpr, detected=detected)
    offsets = calibration.condition_offsets
    judged = [score - offsets.get(condition or DEFAULT_CONDITION, 0.0) for _, score, condition in clips]
    flags: dict[str, list[bool]] = {}
    for (kind, _, _), score in zip(clips, judged):
        flags.setdefault(kind, []).append(score >= calibration.threshold)
    others = {kind: float(np.mean(found)) for kind, found in flags.items() if not kind.startswith("leak")}
    rows, scores = np.array([kind for kind, _, _ in clips], dtype=str), np.array(judged, dtype=np.float64)
    is_leak, is_other = np.char.startswith(rows, "leak"), np.char.startswith(rows, "other_voice")
    hit = scores >= calibration.threshold
    return {"threshold": round(calibration.threshold, 4), "threshold_set_by": calibration.threshold_set_by,
            "condition_offsets": offsets, "calibration_recall": round(calibration.recall, 4),
            "overall_recall": rate_entry(int(hit[is_leak].sum()), int(is_leak.sum())),
            "other_voices_flagged": rate_entry(int(hit[is_other].sum()), int(is_other.sum())),  # pooled over rows
            "worst_false_positive_row": max(others.items(), key=lambda kv: kv[1]),
            "rows": {kind: rate_entry(sum(found), len(found)) for kind, found in sorted(flags.items())},
            "separation": separation(scores[is_leak], scores[is_other], leak_rows=rows[is_leak],
                                     other_rows=rows[is_other]),
            "clip_scores": judged}  # each clip's score as judged (offset), in clips.csv order; -inf: no voice


def main() -> None:
    from pipeline.privacy.encoder import DEFAULT_ENCODER, ROBUST, SHIPPED

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=TUNING_PARTS, required=True,
                        help="a tuning part (held-out parts only report a design already chosen: benchmarks/privacy.py)")
    parser.add_argument("--out", type=Path, default=REPO / "var" / "privacy_bench", help="benchmark audio and caches")
    parser.add_argument("--design", action="append", choices=sorted(DESIGNS),
                        help=f"a design to measure (repeatable; default: all of {', '.join(DESIGNS)})")
    parser.add_argument("--nap-directions", type=lambda text: [int(n) for n in text.split(",")], default=None,
                        metavar="N[,N...]", help="judge each design with the index's nuisance projection removing N "
                                                 "directions (default: the pipeline's); designs are named '<design>, "
                                                 "NAP N' for any other count")
    parser.add_argument("--cohort-cut", type=float, default=None, metavar="COSINE",
                        help="leave out cohort voices whose clean centroid is this close to a reference speaker's "
                             "(default: the pipeline's cohort.SAME_VOICE_COSINE); compares encoders on one cohort")
    parser.add_argument("--workers", type=int, default=0, help="embedding processes; 0 = one per core")
    parser.add_argument("--json", type=Path, help="write every design's figures here")
    parser.add_argument("--jackknife", action="store_true",
                        help="also calibrate without each cohort voice in turn and print the figures' range: "
                             "differences between designs inside it are the cohort's luck, not the design's")
    parser.add_argument("--encoder", choices=(ROBUST, SHIPPED), default=DEFAULT_ENCODER,
                        help=f"speaker encoder (default {DEFAULT_ENCODER}, the pipeline's; {SHIPPED}: resemblyzer's "
                             "own weights)")
    args = parser.parse_args()

    from privacy_corpus import build

    from pipeline.config import PrivacyConfig
    from pipeline.privacy.encoder import load_encoder
    from pipeline.privacy.calibration import NO_VOICE_CLIPS
    from pipeline.privacy.reference import NAP_DIRECTIONS, build_index, conditions_key

    folder = build(args.out, args.part)
    defaults = PrivacyConfig(reference_dir=str(folder / "reference"))
    encoder, cache = load_encoder(args.encoder), args.out / "_cache"
    index = build_index(folder / "reference", encoder, cache, defaults.canaries_per_speaker,
                        same_voice_cosine=args.cohort_cut)
    # the index (reference and cohort files, enrolment code, encoder), how calibration trials are made, the clips
    key = hashlib.sha256(f"{index.fingerprint}|{conditions_key(encoder)}|{NO_VOICE_CLIPS}".encode()
                         + (folder / "clips.csv").read_bytes()).hexdigest()[:12]
    stored = folder / f"designs-windows-{key}.npz"
    if stored.is_file():
        trials = Trials.load(stored)
    else:
        trials = collect(index, encoder, cache, folder, args.workers)
        trials.save(stored)
    table = list(csv.DictReader(open(folder / "clips.csv")))
    speakers, kinds = [row["speaker"] for row in table], [row["kind"] for row in table]
    results = {}
    for directions in args.nap_directions or [NAP_DIRECTIONS]:
        # the stored windows are raw: another direction count rebuilds only the index (from cached embeddings)
        judged = index if directions == NAP_DIRECTIONS else build_index(
            folder / "reference", encoder, cache, defaults.canaries_per_speaker, nap_directions=directions,
            same_voice_cosine=args.cohort_cut)
        for design in args.design or list(DESIGNS):
            name = design if directions == NAP_DIRECTIONS else f"{design}, NAP {directions}"
            result = evaluate(judged, trials, DESIGNS[design](), defaults.max_fpr, defaults.target_recall,
                              jackknife=args.jackknife)
            result["flagged_by_voice"] = flagged_by_voice(speakers, kinds, result["clip_scores"], result["threshold"])
            results[name] = {key: value for key, value in result.items() if key != "clip_scores"}
            worst_kind, worst_rate = result["worst_false_positive_row"]
            print(f"{args.part} {args.encoder} {name:20s} recall {result['overall_recall']['rate']:.3f} of "
                  f"{result['overall_recall']['trials']}  threshold {result['threshold']:.4f} "
                  f"(set by {', '.join(result['threshold_set_by'])})  calibration recall "
                  f"{result['calibration_recall']:.3f}  other voices flagged "
                  f"{result['other_voices_flagged']['rate']:.3f}  worst non-leak row {worst_rate:.2f} ({worst_kind})"
                  f"  separation: AUC {result['separation']['auc']}, recall at 0.05 of other voices flagged "
                  f"{result['separation']['recall_at_0.05_other_voices']}", flush=True)
            pairs = result["separation"].get("discordant_pairs")
            if pairs and pairs["total"]:
                row, count = next(iter(pairs["by_other_row"].items()))
                print(f"    discordant leak / other-voice pairs: {pairs['total']:g}, {count:g} of them against "
                      f"'{row}'", flush=True)
            by_row = result["separation"].get("recall_at_0.05_other_voices_by_leak_row", {})
            if by_row:
                lowest = sorted(by_row.items(), key=lambda kv: (kv[1], kv[0]))[:4]
                print("    leak rows caught least at that 5%: " + ", ".join(
                    f"{row.removeprefix('leak: ')} {rate:.2f}" for row, rate in lowest), flush=True)
            voices = result["flagged_by_voice"]
            print("    other voices flagged, by voice: " + ", ".join(
                f"{voice} {rate:.2f}" for voice, rate in voices["other_voice"].items()) + "; leaks caught, fewest: "
                + ", ".join(f"{voice} {rate:.2f}" for voice, rate in list(voices["leak"].items())[:3]), flush=True)
            if "jackknife" in result:
                spread = result["jackknife"]
                print(f"    without one of {spread['cohort_voices']} cohort voices: threshold {spread['threshold']}, "
                      f"recall {spread['recall']}, other voices flagged {spread['other_voices_flagged']}", flush=True)
    if args.json:
        figures = {"part": args.part, "encoder": encoder.version, "designs": results}
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
