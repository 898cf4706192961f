"""Export throughput: build a release of about 1 GB of FLAC and compare with a plain sequential write.

    python benchmarks/export.py [--gb 1.0] [--embed-audio]

It fabricates a finished run (prompts, generation records, features, leak-check verdicts) around
synthetic FLAC files, times `export` (copy + sha256 + Parquet + manifest + atomic publish) and a
plain write of the same bytes in the same run, and reports the peak resident memory of each.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fabricate(root: Path, gb: float) -> tuple[Path, int]:
    """A finished run of clips of ~1 MB each (white noise FLAC, 12 s @ 44.1 kHz)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import soundfile as sf

    from pipeline.features.extract import FEATURE_COLUMNS, FEATURE_SCHEMA
    from pipeline.generation.stage import GENERATION_SCHEMA, flac_bytes
    from pipeline.privacy.leakcheck import AUDIT_SCHEMA
    from pipeline.prompts.sampler import PromptSpec, sample_prompts
    from pipeline.testing import tone_voices, write_config
    from pipeline.workspace import write_json_atomic

    rng = np.random.default_rng(0)
    clip = flac_bytes((0.1 * rng.standard_normal(12 * 44_100)).astype(np.float32), 44_100)
    n = max(1, int(gb * 1e9 / len(clip)))
    refs = tone_voices(root / "refs")  # export lists the reference set to scan the release for its names
    config = write_config(root, refs, n_clips=n, n_shards=1)
    from pipeline.runner import make_context

    ctx = make_context(config, "2026-01-01")
    spec = PromptSpec("default", "2026-01-01", {"pop": 1}, {"aurora_lane": 1}, ("la",), (12.0,), (0.98,),
                      {"train": 0.8, "validation": 0.1, "test": 0.1})
    prompts = sample_prompts(spec, 0, n)
    ctx.root.mkdir(parents=True)
    pq.write_table(prompts, ctx.root / "prompts.parquet")
    write_json_atomic(ctx.root / "plan.json", {"shards": [[0, n]]})
    ids = prompts.column("clip_id").to_pylist()
    gen = ctx.shard_dir("generate", 0)
    (gen / "audio").mkdir(parents=True)
    for cid in ids:
        (gen / "audio" / f"{cid}.flac").write_bytes(clip)
    frames = sf.info(gen / "audio" / f"{ids[0]}.flac").frames
    pq.write_table(pa.Table.from_pylist([{
        "clip_id": c, "audio_file": f"audio/{c}.flac", "model_preset": "tiny", "model_weights_sha256": "0" * 64,
        "levels_sampled": 3, "temperature": 0.98, "sampling_seed": 1, "sample_rate_hz": 44_100, "num_samples": frames,
        "level_temperatures": [0.98], "top_k": 0, "top_p": 0.0, "batch_size": 1, "tokens_per_s": [1.0], "generation_wall_s": 1.0} for c in ids], schema=GENERATION_SCHEMA),
        gen / "generation.parquet")
    feats = ctx.shard_dir("features", 0)
    feats.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"clip_id": c, **{k: (False if u == "flag" else 0.0)
                                                           for k, (u, _) in FEATURE_COLUMNS.items()}} for c in ids],
                                        schema=FEATURE_SCHEMA), feats / "features.parquet")
    check = ctx.shard_dir("leakcheck", 0)
    check.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"clip_id": c, "verdict": "pass", "no_voice": True, "max_similarity": None,
                                          "nearest_speaker": None, "windows": None, "error": None, "attempts": 0} for c in ids],
                                         schema=AUDIT_SCHEMA),
                   check / "audit.parquet")
    write_json_atomic(check / "summary.json", {
        "scores": [], "first_pass_counts": {"pass": n, "leak": 0, "unscorable": 0}, "regenerated": 0,
        "self_test": {"canaries": 1, "caught": 1, "allowed_misses": 0, "by_transform": {}},
        "threshold": 1.0, "threshold_source": "configured", "calibration": {}, "recall_shortfall": None,
        "score_normalisation": "none", "enrolment_variants": ["clean"], "encoder": "resemblyzer-0.1.4",
        "reference_fingerprint": "0" * 64})
    return config, n * len(clip)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--embed-audio", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    parser.add_argument("--child", choices=["export", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "plain":  # write the same bytes sequentially, one file per clip
        sources = sorted((args.root / "runs" / "default" / "2026-01-01" / "generate").rglob("*.flac"))
        out = args.root / "plain"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        t = time.perf_counter()
        for source in sources:
            data = source.read_bytes()
            with open(out / source.name, "wb") as handle:
                handle.write(data)
        os.sync()
        print(json.dumps({"seconds": time.perf_counter() - t, "peak_mb": peak_mb()}))
        return
    if args.child == "export":
        from pipeline.export.release import export
        from pipeline.runner import make_context

        import pyarrow.dataset  # noqa: F401 - library imports are start-up cost, not throughput
        import pandas  # noqa: F401

        ctx = make_context(args.root / "build.yaml", "2026-01-01", quiet=True)
        shutil.rmtree(ctx.release_dir.parent, ignore_errors=True)
        t = time.perf_counter()
        if os.environ.get("PROFILE"):
            import cProfile
            cProfile.runctx("export(ctx)", globals(), locals(), "/tmp/export.prof")
        else:
            export(ctx)
        os.sync()
        print(json.dumps({"seconds": time.perf_counter() - t, "peak_mb": peak_mb()}))
        return

    with tempfile.TemporaryDirectory(dir=REPO / "var" if (REPO / "var").is_dir() else None) as tmp:
        root = Path(tmp)
        config, total = fabricate(root, args.gb)
        if args.embed_audio:
            config.write_text(config.read_text().replace("embed_audio: false", "embed_audio: true"))
        os.sync()
        runs = {"plain": [], "export": []}
        for _ in range(args.rounds):
            for child in ("plain", "export"):
                out = subprocess.run([sys.executable, __file__, "--child", child, "--root", str(root)],
                                     capture_output=True, text=True, check=True)
                runs[child].append(json.loads(out.stdout.strip().splitlines()[-1]))
        mb = total / 1e6
        seconds = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
        print(json.dumps({
            "audio_mb": round(mb), "embed_audio": args.embed_audio, "rounds": args.rounds,
            "plain_write_mb_s": round(mb / seconds["plain"], 1), "export_mb_s": round(mb / seconds["export"], 1),
            "export_vs_plain": round(seconds["plain"] / seconds["export"], 2),
            "plain_peak_mb": round(max(r["peak_mb"] for r in runs["plain"])),
            "export_peak_mb": round(max(r["peak_mb"] for r in runs["export"])),
        }))


if __name__ == "__main__":
    main()
