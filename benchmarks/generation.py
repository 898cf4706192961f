"""Generation throughput: tokens/s per level and audio-seconds per wall-second (run on demand).

    python benchmarks/generation.py [--preset tiny] [--weights-dir DIR] [--batch 4] [--seconds 2]
                                    [--threads 1] [--device cpu]

Prints one JSON line per level and a summary line. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pipeline.generation.presets import load_preset
from pipeline.generation.sampler import decode, encode_labels, sample_level, total_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--random-1b", action="store_true",
                        help="random weights with the real jukebox-1b-lyrics shapes (GPU; ~12 GB in float32)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--weights-dir", type=Path)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--artist", default="aurora_lane")
    parser.add_argument("--genre", default="pop")
    parser.add_argument("--compare", action="store_true",
                        help="also time transformers' own JukeboxModel._sample on the same levels (batch 1 only: "
                             "its partial-window padding fails for batches > 1)")
    args = parser.parse_args()
    if args.compare and args.batch != 1:
        parser.error("--compare needs --batch 1")

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    loaded = load_preset("tiny" if args.random_1b else args.preset, args.weights_dir)
    if args.random_1b:  # real shapes, random weights; the tiny tokenizer's ids fit its vocabulary
        from pipeline.generation.presets import build_tiny, jukebox_1b_lyrics_config

        loaded.model = build_tiny(jukebox_1b_lyrics_config())  # every weight initialised, none left as torch.empty
    model = loaded.model.to(args.device, getattr(torch, args.dtype))
    print(json.dumps({"load_s": round(time.perf_counter() - t0, 2), "preset": args.preset}), flush=True)
    labels = [encode_labels(loaded.tokenizer, args.artist, args.genre, "la la la") for _ in range(args.batch)]
    length = total_samples(args.seconds)
    torch.manual_seed(0)
    tokens, started = [], time.perf_counter()
    for level in range(len(model.priors)):
        t = time.perf_counter()
        with torch.no_grad():
            out = sample_level(model, level, tokens[-1] if tokens else None,
                               [clip[level].to(args.device) for clip in labels], args.batch, length, temperature=0.98)
        seconds = time.perf_counter() - t
        tokens.append(out)
        print(json.dumps({"level": level, "tokens": out.numel(), "seconds": round(seconds, 2),
                          "tokens_per_s": round(out.numel() / seconds, 1)}), flush=True)
    t = time.perf_counter()
    audio = decode(model, tokens)
    decode_s = time.perf_counter() - t
    wall = time.perf_counter() - started
    if args.compare:
        from transformers.utils import logging

        logging.disable_progress_bar()
        zs = [torch.zeros(1, 0, dtype=torch.long, device=args.device) for _ in model.priors]
        labels_hf = [x.to(args.device) for x in labels[0]]
        torch.manual_seed(0)
        for level in range(len(model.priors)):
            t = time.perf_counter()
            with torch.no_grad():
                zs = model._sample(zs, labels_hf, [level], sample_length=length, save_results=False,
                                   max_batch_size=1, lower_batch_size=1)
            seconds = time.perf_counter() - t
            print(json.dumps({"transformers_level": level, "tokens": zs[level].numel(), "seconds": round(seconds, 2),
                              "tokens_per_s": round(zs[level].numel() / seconds, 1)}), flush=True)
    print(json.dumps({"batch": args.batch, "clip_seconds": args.seconds, "threads": args.threads,
                      "decode_s": round(decode_s, 3), "wall_s": round(wall, 2),
                      "audio_s_per_wall_s": round(audio.shape[0] * audio.shape[1] / 44_100 / wall, 4)}))


if __name__ == "__main__":
    main()
