"""Generation throughput (run on demand, not part of the test suite).

    python benchmarks/generation.py [--preset tiny | --random-1b] [--device cpu|cuda] [--dtype float32]
                                    [--threads 1] [--sampler fast|reference] [--batch 4] [--seconds 2]
    python benchmarks/generation.py --compare [--batches 1,4] [--levels 0,1,2] [--tokens 256] [--rounds 3]
    python benchmarks/generation.py --random-1b --device cuda --dtype bfloat16 --compare --batches 1,16 \\
                                    --logit-check --kernels torch,triton

Default: one clip batch through every level with one sampler (tokens/s per level, audio-s per wall-s).

--compare: per level and batch, one window of `--tokens` tokens sampled by transformers' `JukeboxPrior.sample`
and by ours (`pipeline/generation/fast.py`), in this process, on the same shapes, conditioning, threads and
temperature, progress bars off for both; `--rounds` interleaved rounds, the median time of each. One JSON line
per (level, batch) with both rates and "ratio" (tokens/s ours / reference), the peak GPU memory of each, and
our one-off graph-capture time (excluded from the rate: a process captures once per batch shape).

--kernels (CUDA): the layers of our captured step, each timed as its own variant against the same reference
rates: `torch` (`FastPrior.step_static`), `triton` (the fused kernels of `pipeline/generation/kernels.py`).
`--matmul-blocks` / `--attend-blocks` (JSON) override the kernels' block shapes.

--logit-check (CUDA): per level and --kernels variant, the largest difference between transformers' float32
teacher-forced logits and ours in float32 and at the benchmark dtype (prefill of a window's first part, then
decode steps).

--random-1b: random weights with the real openai/jukebox-1b-lyrics shapes (~12 GB in float32).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from pipeline.generation.fast import reference_window_logits
from pipeline.generation.presets import load_preset
from pipeline.generation.sampler import (
    decode, encode_labels, fast_prior, sample_level, total_samples, window_metadata,
)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _peak_gb(device: str):
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None


def _reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def window_setup(model, level: int, labels, batch: int, device: str):
    """Metadata and upper-level conditioning for one window at the start of a clip."""
    prior = model.priors[level]
    clip_labels = [labels[level].to(device)] * batch
    metadata = window_metadata(prior, clip_labels, 0, int(prior.sample_length))
    conds = None
    if level > 0:
        generator = torch.Generator().manual_seed(level)
        conds = [torch.randint(0, prior.conditioner_blocks.embed_tokens.num_embeddings,
                               (batch, prior.n_ctx // prior.cond_downsample), generator=generator).to(device)]
    return prior, metadata, conds


def time_window(sampler: str, model, level: int, labels, batch: int, tokens: int, device: str) -> float:
    prior, metadata, conds = window_setup(model, level, labels, batch, device)
    _sync(device)
    started = time.perf_counter()
    with torch.no_grad():
        if sampler == "reference":
            prior.sample(n_samples=batch, music_tokens=None, music_tokens_conds=conds, metadata=metadata,
                         temp=0.98, chunk_size=32, sample_tokens=tokens)
        else:
            fast_prior(prior).sample_window(batch, None, conds, metadata, list(range(batch)), temperature=0.98,
                                            sample_tokens=tokens)
    _sync(device)
    return time.perf_counter() - started


def compare(model, labels, args, reference_rates: dict | None = None, variant: str = "fast") -> dict:
    """Both samplers per level and batch; with `reference_rates` (from an earlier pass in this process) only
    ours is timed again (e.g. the compiled variant) and the ratio uses those rates. Returns the reference rates."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    samplers = ("fast",) if reference_rates else ("reference", "fast")
    reference_rates = dict(reference_rates or {})
    for level in [int(x) for x in args.levels.split(",")]:
        for batch in [int(x) for x in args.batches.split(",")]:
            peaks, warm = {}, {}
            for sampler in samplers:  # warm-up: kernels, allocator, our graph capture (and compilation)
                _reset_peak(args.device)
                warm[sampler] = time_window(sampler, model, level, labels, batch, 8, args.device)
            times = {sampler: [] for sampler in samplers}
            for _ in range(args.rounds):
                for sampler in samplers:
                    _reset_peak(args.device)
                    times[sampler].append(time_window(sampler, model, level, labels, batch, args.tokens, args.device))
                    peaks[sampler] = _peak_gb(args.device)
            rate = {s: batch * args.tokens / statistics.median(t) for s, t in times.items()}
            reference_rates.setdefault((level, batch), rate.get("reference"))
            reference = reference_rates[(level, batch)]
            print(json.dumps({
                "variant": variant, "level": level, "batch": batch, "tokens": args.tokens, "rounds": args.rounds,
                "reference_tokens_per_s": round(reference, 1), "fast_tokens_per_s": round(rate["fast"], 1),
                "ratio": round(rate["fast"] / reference, 2),
                "reference_peak_gb": peaks.get("reference"), "fast_peak_gb": peaks["fast"],
                "fast_warmup_s": round(warm["fast"], 2),
            }), flush=True)
    return reference_rates


def logit_check(model, labels, args, known_fraction: float = 0.75, steps: int = 48) -> None:
    """transformers' float32 logits vs ours in float32 and at args.dtype, teacher-forced over one window per
    level, for each --kernels variant."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dtype = getattr(torch, args.dtype)
    variants = args.kernels.split(",")
    for level in range(len(model.priors)):
        prior, metadata, conds = window_setup(model, level, labels, 1, args.device)
        music_ctx = prior.n_ctx
        tokens = torch.randint(0, prior.prior.embed_dim - (prior.embed_dim_shift[1] if prior.is_encoder_decoder else 0),
                               (1, music_ctx), generator=torch.Generator().manual_seed(7)).to(args.device)
        prior.float()
        reference = reference_window_logits(prior, tokens, conds, metadata)
        known = int(music_ctx * known_fraction)
        end = known + steps
        fast = fast_prior(prior)
        ours32 = {}
        for kernels in variants:
            fast.kernels = kernels
            ours32[kernels] = fast.teacher_forced(tokens[:, :end], conds, metadata, known, static=True)
        prior.to(dtype)
        ref = reference[:, known:end]
        for kernels in variants:
            fast.kernels = kernels
            ours = fast.teacher_forced(tokens[:, :end], conds, metadata, known, static=True)
            print(json.dumps({
                "level": level, "kernels": kernels, "positions": steps, "prefill": known,
                "max_abs_logit_diff_float32": float((ours32[kernels] - ref).abs().max()),
                f"max_abs_logit_diff_{args.dtype}": float((ours - ref).abs().max()),
                "reference_logit_abs_max": float(ref.abs().max()),
                f"argmax_agreement_{args.dtype}": float((ours.argmax(-1) == ref.argmax(-1)).float().mean()),
            }), flush=True)


def clip(model, labels, args) -> None:
    length = total_samples(args.seconds)
    torch.manual_seed(0)
    tokens, started = [], time.perf_counter()
    for level in range(len(model.priors)):
        t = time.perf_counter()
        with torch.no_grad():
            out = sample_level(model, level, tokens[-1] if tokens else None,
                               [labels[level].to(args.device)] * args.batch, args.batch, length, temperature=0.98,
                               sampler=args.sampler)
        _sync(args.device)
        seconds = time.perf_counter() - t
        tokens.append(out)
        print(json.dumps({"level": level, "sampler": args.sampler, "tokens": out.numel(), "seconds": round(seconds, 2),
                          "tokens_per_s": round(out.numel() / seconds, 1)}), flush=True)
    t = time.perf_counter()
    audio = decode(model, tokens)
    decode_s = time.perf_counter() - t
    wall = time.perf_counter() - started
    print(json.dumps({"batch": args.batch, "clip_seconds": args.seconds, "threads": args.threads,
                      "decode_s": round(decode_s, 3), "wall_s": round(wall, 2),
                      "audio_s_per_wall_s": round(audio.shape[0] * audio.shape[1] / 44_100 / wall, 4)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--random-1b", action="store_true",
                        help="random weights with the real jukebox-1b-lyrics shapes (GPU; ~12 GB in float32)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--weights-dir", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sampler", default="fast", choices=["fast", "reference"], help="clip mode's sampler")
    parser.add_argument("--batch", type=int, default=4, help="clip mode's batch")
    parser.add_argument("--seconds", type=float, default=2.0, help="clip mode's clip length")
    parser.add_argument("--compare", action="store_true", help="time both samplers per level and batch")
    parser.add_argument("--batches", default="1,4", help="--compare: batch sizes")
    parser.add_argument("--levels", default="0,1,2", help="--compare: prior levels (0 = top)")
    parser.add_argument("--tokens", type=int, default=1024, help="--compare: tokens per window")
    parser.add_argument("--rounds", type=int, default=3, help="--compare: interleaved rounds (median)")
    parser.add_argument("--logit-check", action="store_true", help="float32 reference vs our --dtype logits")
    parser.add_argument("--kernels", default="auto",
                        help="our step's layers, comma-separated variants: auto, torch, triton (CUDA)")
    parser.add_argument("--matmul-blocks", type=json.loads, help="JSON overriding kernels.MATMUL_BLOCKS")
    parser.add_argument("--attend-blocks", type=json.loads, help="JSON overriding kernels.ATTEND_BLOCKS")
    parser.add_argument("--compile", action="store_true",
                        help="--compare: also time ours with the CUDA step compiled by torch.compile")
    parser.add_argument("--compile-levels", help="--compile: levels to compile (default: --levels)")
    parser.add_argument("--artist", default="aurora_lane")
    parser.add_argument("--genre", default="pop")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.matmul_blocks or args.attend_blocks:
        from pipeline.generation import kernels as fused

        fused.MATMUL_BLOCKS.update(args.matmul_blocks or {})
        fused.ATTEND_BLOCKS.update(args.attend_blocks or {})
    t0 = time.perf_counter()
    loaded = load_preset("tiny" if args.random_1b else args.preset, args.weights_dir)
    if args.random_1b:  # real shapes, random weights; the tiny tokenizer's ids fit its vocabulary
        from pipeline.generation.presets import build_tiny, jukebox_1b_lyrics_config

        with torch.device(args.device):  # initialised where it runs: seconds on a GPU instead of a minute on the CPU
            loaded.model = build_tiny(jukebox_1b_lyrics_config())  # every weight initialised, none left as torch.empty
    model = loaded.model.to(args.device)
    info = {"load_s": round(time.perf_counter() - t0, 2), "preset": "random-1b" if args.random_1b else args.preset,
            "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu", "dtype": args.dtype,
            "threads": args.threads, "torch": torch.__version__}
    print(json.dumps(info), flush=True)
    labels = encode_labels(loaded.tokenizer, args.artist, args.genre, "la la la, the night is young " * 8)
    if args.logit_check:
        try:
            logit_check(model, labels, args)  # leaves the model at args.dtype
        except Exception as exc:
            print(json.dumps({"logit_check": "failed", "error": repr(exc)[:500]}), flush=True)
    model = model.to(getattr(torch, args.dtype))
    if args.compare:
        reference_rates = None
        for kernels in args.kernels.split(","):
            for prior in model.priors:
                fast_prior(prior).kernels = kernels
            try:
                reference_rates = compare(model, labels, args, reference_rates, variant=f"fast[{kernels}]")
            except Exception as exc:  # one variant failing (a kernel the compiler refuses) leaves the others' figures
                print(json.dumps({"variant": f"fast[{kernels}]", "error": repr(exc)[:500]}), flush=True)
        if args.compile:
            for prior in model.priors:
                fast_prior(prior).kernels = "torch"
                fast_prior(prior).compile_step = True
            try:
                args.levels = args.compile_levels or args.levels
                compare(model, labels, args, reference_rates, variant="fast+torch.compile")
            except Exception as exc:  # a compiler failure is a finding, not a crash of the benchmark
                print(json.dumps({"variant": "fast+torch.compile", "error": repr(exc)[:500]}), flush=True)
    else:
        clip(model, labels, args)


if __name__ == "__main__":
    main()
