"""Feature-extraction throughput: audio-seconds analysed per wall-second, per feature set.

    python benchmarks/features.py [--minutes 10] [--full-minutes 1] [--clip-s 10] [--workers 0]

It writes synthetic music-like FLAC clips (a chord, a click track and noise, 44.1 kHz mono),
then runs the features stage's own path (`extract_rows` -> `write_feature_rows`: decode, analyse,
stream to Parquet) with a process pool sized to the machine, for `basic` and for `full`.
Peak memory is the largest resident set of this process and of any worker.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RATE = 44_100


def write_clips(folder: Path, total_s: float, clip_s: float) -> list[tuple[str, Path]]:
    import soundfile as sf

    from pipeline.testing import click_track, sine, white_noise

    clips = []
    for i in range(max(1, int(total_s // clip_s))):
        chord = sum(sine(f * (1 + 0.01 * i), clip_s, dbfs=-18) for f in (220.0, 277.2, 329.6))
        audio = chord + 0.5 * click_track(100 + i % 60, clip_s) + white_noise(clip_s, seed=i, dbfs=-36)
        path = folder / f"clip-{i:05d}.flac"
        sf.write(path, audio, RATE, format="FLAC")
        clips.append((path.stem, path))
    return clips


def measure(name: str, clips: list[tuple[str, Path]], clip_s: float, workers: int, out: Path) -> dict:
    from pipeline.features.extract import feature_set
    from pipeline.features.stage import extract_rows, write_feature_rows

    start = time.perf_counter()
    n = write_feature_rows(extract_rows(feature_set(name), clips, workers), out / f"{name}.parquet")
    wall = time.perf_counter() - start
    return {"feature_set": name, "clips": n, "audio_s": n * clip_s, "wall_s": round(wall, 2),
            "x_real_time": round(n * clip_s / wall, 1), "workers": workers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="audio analysed with `basic` (default 10)")
    parser.add_argument("--full-minutes", type=float, default=1.0, help="audio analysed with `full` (default 1)")
    parser.add_argument("--clip-s", type=float, default=10.0, help="clip length in seconds (default 10)")
    parser.add_argument("--workers", type=int, default=0, help="processes; 0 = one per core (default)")
    args = parser.parse_args()
    workers = args.workers or os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clips = write_clips(folder, max(args.minutes, args.full_minutes) * 60, args.clip_s)
        n_full = max(1, int(args.full_minutes * 60 // args.clip_s))
        results = [measure("basic", clips[: int(args.minutes * 60 // args.clip_s)], args.clip_s, workers, folder),
                   measure("basic", clips[: max(4, n_full)], args.clip_s, 1, folder),
                   measure("full", clips[:n_full], args.clip_s, workers, folder)]
    peak_mb = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024
    print(f"{'set':6} {'workers':>7} {'clips':>6} {'audio s':>8} {'wall s':>7} {'x real time':>11}")
    for r in results:
        print(f"{r['feature_set']:6} {r['workers']:>7} {r['clips']:>6} {r['audio_s']:>8.0f} {r['wall_s']:>7.2f} "
              f"{r['x_real_time']:>11.1f}")
    print(f"peak resident memory (largest process): {peak_mb:.0f} MB; cores: {os.cpu_count()}")
    print(json.dumps({"results": results, "peak_rss_mb": round(peak_mb), "cpu_count": os.cpu_count()}))


if __name__ == "__main__":
    main()
