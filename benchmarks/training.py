"""Fine-tuning speed of one Jukebox prior: optimiser step time and peak memory.

    python benchmarks/training.py --random-1b --level 0 --device cuda --dtype bfloat16 --batches 1,2
    python benchmarks/training.py --random-1b --level 0 --layers 2 --device cpu --dtype float32 --steps 2

--random-1b: random weights with the real openai/jukebox-1b-lyrics shapes of the chosen prior (level 0: the
top prior, 72 layers of width 2048 over 384 lyric + 6144 music tokens); --layers cuts the depth (same layer
shapes). Each step is what `pipeline.training` runs: the prior's own loss (`prior_loss`) on a batch of
random tokens and metadata, under autocast in --dtype with float32 weights, gradient clipping and an Adam
step; with and without gradient checkpointing. Prints one JSON line per configuration.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from pipeline.generation.presets import jukebox_1b_lyrics_config, tiny_config
from pipeline.training.jukebox import (autocast, build_prior, disable_gradient_checkpointing,
                                       enable_gradient_checkpointing, prior_loss)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def random_batch(prior, level: int, batch: int, device: str):
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, prior.config.music_vocab_size, (batch, prior.n_ctx), generator=g).to(device)
    conds = []
    if level > 0:
        conds = [torch.randint(0, prior.config.music_vocab_size, (batch, prior.n_ctx // prior.cond_downsample),
                               generator=g).to(device)]
    n_genres = prior.metadata_embedding.max_nb_genres
    labels = torch.zeros(batch, 4 + n_genres + prior.nb_relevant_lyric_tokens, dtype=torch.long)
    labels[:, 0] = prior.sample_length * 2
    labels[:, 2] = prior.sample_length
    labels[:, 3] = 1  # artist
    labels[:, 4: 4 + n_genres] = 1
    if prior.nb_relevant_lyric_tokens:
        labels[:, 4 + n_genres:] = torch.randint(1, prior.config.lyric_vocab_size, (batch, prior.nb_relevant_lyric_tokens),
                                                 generator=g)
    return tokens, conds, labels.to(device)


def run(prior, level: int, batch: int, steps: int, device: str, dtype: str, checkpointing: bool) -> dict:
    params = [p for p in prior.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=1e-5, betas=(0.9, 0.95))
    (enable_gradient_checkpointing if checkpointing else disable_gradient_checkpointing)(prior)
    prior.train()
    tokens, conds, metadata = random_batch(prior, level, batch, device)
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    try:
        for _ in range(steps):
            _sync(device)
            t0 = time.perf_counter()
            with autocast(device, dtype):
                loss, _bits, _lyric = prior_loss(prior, tokens, conds, metadata)
            optimiser.zero_grad(set_to_none=True)
            loss.float().backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimiser.step()
            losses.append(round(float(loss.detach()), 4))
            _sync(device)
            times.append(time.perf_counter() - t0)
    except torch.OutOfMemoryError:
        return {"level": level, "batch": batch, "checkpointing": checkpointing, "error": "out of memory"}
    finally:
        del optimiser
        disable_gradient_checkpointing(prior)
        prior.zero_grad(set_to_none=True)
    measured = times[1:] or times  # the first step allocates the optimiser state and warms the kernels
    step_s = sum(measured) / len(measured)
    return {"level": level, "batch": batch, "checkpointing": checkpointing, "dtype": dtype, "steps": steps,
            "step_s": round(step_s, 3), "first_step_s": round(times[0], 3),
            "tokens_per_s": round(batch * prior.n_ctx / step_s, 1), "losses": losses,
            "peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--random-1b", action="store_true", help="jukebox-1b-lyrics shapes (default: the tiny preset)")
    parser.add_argument("--level", type=int, default=0, help="prior level: 0 top, 1 middle, 2 bottom")
    parser.add_argument("--layers", type=int, help="transformer depth (default: the preset's)")
    parser.add_argument("--batches", default="1", help="comma-separated batch sizes")
    parser.add_argument("--steps", type=int, default=4, help="optimiser steps per configuration (first is warm-up)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--checkpointing", default="on,off", help="gradient checkpointing settings to time: on,off")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = jukebox_1b_lyrics_config() if args.random_1b else tiny_config()
    if args.layers:
        config.prior_configs[args.level].num_layers = args.layers
    t0 = time.perf_counter()
    with torch.device(args.device):
        prior = build_prior(config, args.level)
    info = {"preset": "random-1b" if args.random_1b else "tiny", "level": args.level,
            "layers": config.prior_configs[args.level].num_layers, "n_ctx": prior.n_ctx,
            "parameters_m": round(sum(p.numel() for p in prior.parameters()) / 1e6, 1),
            "build_s": round(time.perf_counter() - t0, 1), "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu", "threads": args.threads}
    print(json.dumps(info), flush=True)
    for checkpointing in [c.strip() == "on" for c in args.checkpointing.split(",")]:
        for batch in [int(b) for b in args.batches.split(",")]:
            print(json.dumps(run(prior, args.level, batch, args.steps, args.device, args.dtype, checkpointing)),
                  flush=True)


if __name__ == "__main__":
    main()
