"""Leak-check measurements (run on demand): robustness, throughput of the scoring path, scoring scale.

    python benchmarks/privacy.py [--voices var/reference_voices_bench] [--sentences 12] [--cohort]

1. Robustness, with the pipeline's own index, calibration and scoring: for each reference speaker
   and each enrolled utterance, the speaker is re-enrolled without that utterance (leave one out) and
   the utterance is scored as a generated clip, clean and transformed: pitch-shifted +-2 semitones,
   mixed with a tone chord at 0 dB SNR (a random root per utterance, not one of the enrolled ones),
   band-limited to 8 kHz sampling (and, for information, pitch-shifted +-3 semitones, which the
   enrolment does not cover). The threshold is the one a run would use (calibrated for recall
   0.99). False positives: every utterance of the voices outside the reference set (never part of the
   cohort), under the same transformations. Issue 6 targets: recall >= 0.95 each, FPR <= 0.05.
2. Throughput of the whole scoring path (decode -> resample -> VAD -> windowed GE2E -> scores) over
   the stage's process pool, in audio-seconds per wall-second, on clips of concatenated speech.
3. Scoring time of 100,000 clip windows against 10,000 reference utterances (cosine, blocked matmul).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def probe_transforms() -> dict:
    from pipeline.privacy.transforms import RATE, band_limit, mix_at_snr, pitch_shift, tone_chord

    return {
        "clean": lambda a, i: a,
        "pitch +2 st": lambda a, i: pitch_shift(a, 2.0),
        "pitch -2 st": lambda a, i: pitch_shift(a, -2.0),
        "tones 0 dB": lambda a, i: mix_at_snr(a, tone_chord(a.size, seed=1000 + i), 0.0),
        "8 kHz band-limit": lambda a, i: band_limit(a),
        "pitch +3 st (not enrolled)": lambda a, i: pitch_shift(a, 3.0),
        "pitch -3 st (not enrolled)": lambda a, i: pitch_shift(a, -3.0),
    }, RATE


def robustness(voices: Path, cache: Path, cohort: Path | None) -> dict:
    from pipeline.privacy.calibration import calibrate_index, leave_one_out
    from pipeline.privacy.encoder import load_encoder
    from pipeline.privacy.reference import build_index, list_reference_files, read_voice

    encoder = load_encoder()
    t = time.perf_counter()
    index = build_index(voices / "reference", encoder, cache, canaries_per_speaker=0, cohort_dir=cohort)
    calibration = calibrate_index(index, 0.99)
    threshold = calibration.threshold
    files = list_reference_files(voices / "reference")
    outsiders = list_reference_files(voices / "non_reference", "non_reference")
    transforms, rate = probe_transforms()
    table = {"threshold": round(threshold, 4), "reference_eer": round(calibration.equal_error_rate, 4),
             "score_normalisation": "s-norm" if cohort else "none", "rows": {}}
    genuine = {name: [] for name in transforms}
    impostor = {name: [] for name in transforms}
    for number, (file, (_, _, centroids)) in enumerate(zip(files, leave_one_out(index), strict=True)):
        audio = read_voice(file.path, rate)
        for name, transform in transforms.items():
            windows = encoder.embed_windows(transform(audio, number), rate)
            genuine[name].append(-np.inf if windows is None else float(index.speaker_scores(windows, centroids).max()))
    for number, file in enumerate(outsiders):
        audio = read_voice(file.path, rate)
        for name, transform in transforms.items():
            windows = encoder.embed_windows(transform(audio, number), rate)
            impostor[name].append(-np.inf if windows is None else float(index.speaker_scores(windows).max()))
    for name in transforms:
        g, i = np.array(genuine[name]), np.array(impostor[name])
        table["rows"][name] = {"recall": round(float(np.mean(g >= threshold)), 3),
                               "fpr": round(float(np.mean(i >= threshold)), 3),
                               "genuine_p05": round(float(np.percentile(g, 5)), 3),
                               "impostor_max": round(float(i.max()), 3)}
    table["trials"] = {"genuine_per_transform": len(files), "impostor_per_transform": len(outsiders),
                       "outsider_voices": len({f.speaker for f in outsiders})}
    table["seconds"] = round(time.perf_counter() - t, 1)
    return table


def throughput(voices: Path, cache: Path, clip_s: float, minutes: float, workers: int) -> dict:
    import soundfile as sf

    from pipeline.parallel import ordered_map
    from pipeline.privacy import leakcheck
    from pipeline.privacy.calibration import calibrate_index
    from pipeline.privacy.encoder import load_encoder
    from pipeline.privacy.reference import build_index

    encoder = load_encoder()
    index = build_index(voices / "reference", encoder, cache, canaries_per_speaker=1)
    threshold = calibrate_index(index, 0.99).threshold
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
        leakcheck._worker.update(encoder=encoder, index=index, threshold=threshold)
        t = time.perf_counter()
        rows = list(ordered_map(leakcheck._score_job, jobs, workers, initializer=leakcheck._start_worker,
                                initargs=(index, threshold)))
        wall = time.perf_counter() - t
    windows = sum(r["windows"] or 0 for r in rows)
    return {"clips": n, "clip_s": clip_s, "audio_s": n * clip_s, "wall_s": round(wall, 2),
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
    from pipeline.privacy.test_voices import synthesise

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voices", type=Path, default=REPO / "var" / "reference_voices_bench")
    parser.add_argument("--sentences", type=int, default=12, help="utterances per reference speaker (default 12)")
    parser.add_argument("--cohort", action="store_true", help="also measure with s-norm against the cohort voices")
    parser.add_argument("--minutes", type=float, default=5.0, help="audio for the throughput test (default 5)")
    parser.add_argument("--clip-s", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=0, help="scoring processes; 0 = one per core")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: robustness,throughput,scale")
    args = parser.parse_args()
    synthesise(args.voices, sentences=args.sentences, seed=1, cohort=args.cohort)
    cache = args.voices / "_cache"
    skip = set(args.skip.split(","))
    if "robustness" not in skip:
        for cohort in [None] + ([args.voices / "cohort"] if args.cohort else []):
            table = robustness(args.voices, cache, cohort)
            print(f"normalisation {table['score_normalisation']}: threshold {table['threshold']} "
                  f"(calibrated, recall 0.99), reference EER {table['reference_eer']}")
            print(f"  {'transformation':28} {'recall':>6} {'FPR':>6} {'genuine p05':>11} {'impostor max':>12}")
            for name, row in table["rows"].items():
                print(f"  {name:28} {row['recall']:>6.3f} {row['fpr']:>6.3f} {row['genuine_p05']:>11.3f} "
                      f"{row['impostor_max']:>12.3f}")
            print(json.dumps(table), flush=True)
    if "throughput" not in skip:
        print(json.dumps(throughput(args.voices, cache, args.clip_s, args.minutes, args.workers)), flush=True)
    if "scale" not in skip:
        print(json.dumps(scoring_scale()), flush=True)


if __name__ == "__main__":
    main()
