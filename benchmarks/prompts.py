"""Prompt sampling at scale: time and peak memory for 1,000,000 prompts (run on demand).

    python benchmarks/prompts.py [--n 1000000]

Uses the default config's prompt spec (lyrics from configs/lyrics/default.txt). Peak memory is the
process's maximum resident set size, read after sampling and writing prompts.parquet.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.config import load_config
from pipeline.generation.presets import lyric_vocabulary
from pipeline.prompts.lyrics import prepare_lyrics
from pipeline.prompts.sampler import PromptSpec, sample_prompts

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    args = parser.parse_args()
    loaded = load_config(REPO / "configs" / "default.yaml", check_paths=False)
    prompts = loaded.config.prompts
    lines, _ = prepare_lyrics(prompts.lyrics, loaded.lyrics_file, [], lyric_vocabulary("tiny", None))
    spec = PromptSpec(dataset="default", version="2026-01-01", genres=dict(prompts.genres),
                      artists=dict(prompts.artists), lyrics=tuple(lines), durations=tuple(prompts.durations()),
                      temperatures=tuple(prompts.temperatures()), splits=dict(prompts.splits))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    table = sample_prompts(spec, run_seed=12345, n_clips=args.n)
    sample_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter()
        pq.write_table(table, Path(tmp) / "prompts.parquet")
        write_s = time.perf_counter() - t1
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"prompts": table.num_rows, "sample_s": round(sample_s, 2), "write_parquet_s": round(write_s, 2),
                      "total_s": round(sample_s + write_s, 2), "peak_rss_mb": round(peak_mb),
                      "rss_before_mb": round(rss_before), "python": sys.version.split()[0]}))


if __name__ == "__main__":
    main()
