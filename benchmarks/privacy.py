"""Leak-check measurements (run on demand): recall and false positives on a frozen held-out split,
throughput of the scoring path, scoring scale.

    python benchmarks/privacy.py [--part held_out|held_out_espeak|held_out_espeak2|held_out_tools|tuning|tuning_espeak|
                                        tuning_made|tuning_made2] [--out DIR] [--skip robustness,throughput,scale]
                                        [--encoder NAME]

1. Robustness, on one part of the frozen split (`benchmarks/privacy_split.json`, audio built by
   `benchmarks/privacy_corpus.py`): the part's reference set (6 utterances per speaker, 16 kHz) is
   enrolled and calibrated exactly as a run does it (`privacy.threshold: auto` with the config defaults:
   the threshold the pipeline chooses by itself), then every clip (44.1 kHz) is scored through the
   run's own path (decode, resample, VAD, windows, normalised scores). Leaks: the reference speakers'
   other utterances under each transformation; non-leaks: other voices under the same transformations,
   music only, noise only. Printed per transformation: recall or FPR with Wilson 95% intervals, and the share
   of its clips the condition detector called reverberant (their scores got the calibrated room offset).
   `held_out` (the reported figure: voices and sox implementations never used for tuning) is the
   default; `held_out_espeak` is a second held-out part (espeak-ng voices of other languages, the same sox
   transformations), added when the benchmark was found to hold no espeak-ng voice; `held_out_tools` a third
   (the held-out voices through rubberband, pyroomacoustics rooms, FluidSynth General MIDI music and a GSM
   codec: tools nothing else here uses; `make bench-deps`); `held_out_espeak2` a fourth (espeak-ng voices whose
   variants no other part, the cohort or the encoder's training uses: an espeak-ng voice is mostly its variant, and
   `held_out_espeak` shares variants with `tuning_espeak`); `tuning` is the part
   designs may be chosen on, and `tuning_espeak` (English espeak-ng variants, the tuning transformations)
   another; `tuning_made` a third (espeak-ng variants made from seeds, which no synthesiser ships, so neither the
   encoder's training nor calibration's cohort has heard them: where a false-positive bound that does not transfer
   to unheard voices can show before a held-out part is measured); `tuning_made2` a fourth (made voices all under
   the pipeline's own same-voice cut of each other, twelve impostors of three utterances: whether the bound holds for
   other voices that are not lookalikes).
2. Throughput of the whole scoring path (decode -> resample -> VAD -> windowed GE2E -> scores) over
   the stage's process pool, in audio-seconds per wall-second, on clips of concatenated speech.
3. Scoring time of 100,000 clip windows against 10,000 reference utterances (cosine, blocked matmul).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def robustness(root: Path, part: str, cache: Path, encoder_name: str) -> dict:
    from privacy_corpus import SPLIT_FILE, build

    from pipeline.config import PrivacyConfig
    from pipeline.errors import LeakCheckFailed
    from pipeline.privacy.calibration import calibrate_index, rate_entry
    from pipeline.privacy.encoder import load_encoder
    from pipeline.privacy.leakcheck import score_file
    from pipeline.privacy.reference import build_index
    from pipeline.progress import progress

    folder = build(root, part)
    defaults = PrivacyConfig(reference_dir=str(folder / "reference"))
    encoder = load_encoder(encoder_name)
    t = time.perf_counter()
    index = build_index(folder / "reference", encoder, cache, defaults.canaries_per_speaker)
    result = {"part": part, "split_sha256": hashlib.sha256(SPLIT_FILE.read_bytes()).hexdigest(),
              "encoder": encoder.version,
              "target_recall": defaults.target_recall, "max_fpr": defaults.max_fpr, "speakers": len(index.speakers),
              "cohort_voices": [v.voice for v in index.cohort]}
    try:
        calibration = calibrate_index(index, encoder, cache, defaults.target_recall, defaults.max_fpr,
                                      canaries_per_speaker=defaults.canaries_per_speaker)
    except LeakCheckFailed as exc:
        result["calibration_failed"] = str(exc)
        return result
    from pipeline.privacy.calibration import recall_shortfall

    threshold, index = calibration.threshold, index.calibrated(calibration.condition_offsets)
    result["threshold"] = round(threshold, 4)
    result["condition_offsets"] = calibration.condition_offsets
    result["recall_shortfall"] = recall_shortfall(calibration, len(index.enrolled) // len(index.speakers))
    result["calibration"] = {k: v for k, v in calibration.as_dict().items()
                             if k not in ("recall_by_condition", "fpr_by_kind")}
    rows = list(csv.DictReader(open(folder / "clips.csv")))
    verdicts: dict[tuple[str, str], list] = {}
    for row in progress(rows, desc=f"scoring {part} clips", unit="clip"):
        verdicts.setdefault((row["kind"], row["transform"]), []).append(score_file(folder / row["path"], encoder, index,
                                                                                   threshold))
    groups = {key: [v.verdict != "pass" for v in found] for key, found in sorted(verdicts.items())}
    result["rows"] = {f"{kind}: {name}": rate_entry(sum(flags), len(flags)) for (kind, name), flags in groups.items()}
    # share of each row's clips the condition detector called reverberant (their score got that offset)
    result["detected_reverberant"] = {
        f"{kind}: {name}": round(float(np.mean([v.condition == "reverberant" for v in found])), 3)
        for (kind, name), found in sorted(verdicts.items())}
    leaks = [f for (kind, _), flags in groups.items() if kind == "leak" for f in flags]
    result["overall_recall"] = rate_entry(sum(leaks), len(leaks))
    result["seconds"] = round(time.perf_counter() - t, 1)
    return result


def print_table(result: dict) -> None:
    print(f"part {result['part']} (split sha256 {result['split_sha256'][:12]}), {result['speakers']} reference speakers, "
          f"cohort {len(result['cohort_voices'])} voices, encoder {result['encoder']}")
    if "calibration_failed" in result:
        print(f"  calibration refused: {result['calibration_failed']}")
        return
    cal = result["calibration"]
    print(f"  threshold {result['threshold']} chosen by the pipeline: lowest with FPR <= {result['max_fpr']} in every "
          f"impostor condition of its calibration (calibration recall {cal['recall']}, EER {cal['equal_error_rate']}); "
          f"set by {', '.join(cal['threshold_set_by'])}")
    if cal.get("cohort_jackknife"):
        spread = cal["cohort_jackknife"]
        print(f"  calibrated without one of its {spread['cohort_voices']} cohort voices in turn: threshold "
              f"{spread['threshold'][0]}-{spread['threshold'][1]}, calibration recall "
              f"{spread['recall'][0]}-{spread['recall'][1]}")
    if result.get("recall_shortfall"):
        print(f"  a run would fail here (on_recall_shortfall: fail) or warn: {result['recall_shortfall']}")
    print(f"  {'clips':58} {'rate':>6} {'95% CI':>15} {'n':>4} {'reverberant':>11}")
    for name, entry in result["rows"].items():
        label = ("recall " if name.startswith("leak") else "FPR    ") + name
        print(f"  {label:58} {entry['rate']:>6.3f} [{entry['ci95'][0]:.3f}, {entry['ci95'][1]:.3f}] {entry['trials']:>4} "
              f"{result['detected_reverberant'].get(name, 0):>11.2f}")
    overall = result["overall_recall"]
    print(f"  overall recall {overall['rate']:.3f} [{overall['ci95'][0]:.3f}, {overall['ci95'][1]:.3f}] of {overall['trials']}")


def throughput(voices: Path, cache: Path, clip_s: float, minutes: float, workers: int, encoder_name: str) -> dict:
    import soundfile as sf

    from pipeline.parallel import ordered_map
    from pipeline.privacy import leakcheck
    from pipeline.privacy.calibration import calibrate_index
    from pipeline.privacy.encoder import load_encoder
    from pipeline.privacy.reference import build_index

    encoder = load_encoder(encoder_name)
    index = build_index(voices / "reference", encoder, cache, canaries_per_speaker=1)
    calibration = calibrate_index(index, encoder, cache)
    threshold, index = calibration.threshold, index.calibrated(calibration.condition_offsets)
    speech = np.concatenate([sf.read(p, dtype="float32")[0] for p in sorted((voices / "non_reference").rglob("*.wav"))])
    rate = sf.info(next((voices / "non_reference").rglob("*.wav"))).samplerate
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        n = max(1, int(minutes * 60 // clip_s))
        for i in range(n):
            start = (i * int(clip_s * rate)) % max(1, speech.size - int(clip_s * rate))
            path = Path(tmp) / f"clip-{i:04d}.flac"
            sf.write(path, speech[start:start + int(clip_s * rate)], rate, format="FLAC")
            jobs.append((path.stem, str(path)))
        t = time.perf_counter()
        worker_state = (leakcheck.make_scorer, (index, threshold, None, encoder_name))  # the encoder measured
        rows = list(ordered_map(leakcheck.score_job, jobs, workers, state=worker_state,
                                local_state=leakcheck.Scorer(encoder, index, threshold)))
        wall = time.perf_counter() - t
    windows = sum(r["windows"] or 0 for r in rows)
    return {"encoder": encoder.version, "clips": n, "clip_s": clip_s, "audio_s": n * clip_s, "wall_s": round(wall, 2),
            "audio_s_per_wall_s": round(n * clip_s / wall, 1), "windows": windows,
            "workers": workers or os.cpu_count()}


def scoring_scale() -> dict:
    rng = np.random.default_rng(0)
    windows = rng.standard_normal((100_000, 256)).astype(np.float32)
    refs = rng.standard_normal((10_000, 256)).astype(np.float32)
    windows /= np.linalg.norm(windows, axis=1, keepdims=True)
    refs /= np.linalg.norm(refs, axis=1, keepdims=True)
    t = time.perf_counter()
    best = np.empty(windows.shape[0], dtype=np.float32)
    for start in range(0, windows.shape[0], 10_000):  # (10k, 10k) blocks: 400 MB at most
        best[start:start + 10_000] = (windows[start:start + 10_000] @ refs.T).max(axis=1)
    return {"scoring_windows": 100_000, "reference_utterances": 10_000, "seconds": round(time.perf_counter() - t, 2)}


def main() -> None:
    from privacy_corpus import split_parts

    from pipeline.privacy.encoder import DEFAULT_ENCODER, ROBUST, SHIPPED
    from pipeline.privacy.test_voices import synthesise

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=split_parts(), default="held_out",
                        help="which part of the frozen split to measure (default held_out: the reported figure)")
    parser.add_argument("--out", type=Path, default=REPO / "var" / "privacy_bench", help="benchmark audio and caches")
    parser.add_argument("--voices", type=Path, default=REPO / "var" / "reference_voices_bench",
                        help="voices for the throughput test")
    parser.add_argument("--minutes", type=float, default=5.0, help="audio for the throughput test (default 5)")
    parser.add_argument("--clip-s", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=0, help="scoring processes; 0 = one per core")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: robustness,throughput,scale")
    parser.add_argument("--encoder", choices=(ROBUST, SHIPPED), default=DEFAULT_ENCODER,
                        help=f"speaker encoder of the robustness and throughput measurements (default "
                             f"{DEFAULT_ENCODER}, the pipeline's; {SHIPPED}: resemblyzer's own weights, to "
                             "compare)")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    cache = args.out / "_cache"
    if "robustness" not in skip:
        result = robustness(args.out, args.part, cache, args.encoder)
        print_table(result)
        print(json.dumps(result), flush=True)
    if "throughput" not in skip:
        synthesise(args.voices, sentences=12, seed=1)
        measured = throughput(args.voices, cache, args.clip_s, args.minutes, args.workers, args.encoder)
        print(json.dumps(measured), flush=True)
    if "scale" not in skip:
        print(json.dumps(scoring_scale()), flush=True)


if __name__ == "__main__":
    main()
