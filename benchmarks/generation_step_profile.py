"""Where one decode step of our Jukebox sampler spends GPU time (run on demand, CUDA only).

    python benchmarks/generation_step_profile.py [--batch 1] [--level 1] [--kernels torch|triton]
    python benchmarks/generation_step_profile.py --kernels triton --sweep --batches 1,16 [--best-out F]

Random jukebox-1b-lyrics weights in bfloat16. Prints (1) the GPU time per kernel family of one uncaptured
tensor-position step (torch.profiler), (2) the replay time of the captured step, and (3) the four matrix
products of one layer timed alone in a CUDA graph, with the weight as transformers stores it (in, out) and
transposed (out, in), to see whether the products or the launches cost.

--sweep (triton): the captured step's replay time under each block shape of `SWEEP` (the fused products'
and the attention's), per batch; prints the fastest over all batches (least summed time), and writes it as
JSON to --best-out (the arguments of `benchmarks/generation.py --matmul-blocks/--attend-blocks`).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import torch
import torch.nn.functional as F


def graph_time(fn, replays: int = 200) -> float:
    """Seconds per call of `fn` captured in a CUDA graph (median of 5 timings)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    times = []
    for _ in range(5):
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(replays):
            graph.replay()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) / replays)
    return sorted(times)[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--batches", help="--sweep: batch sizes (default: --batch)")
    parser.add_argument("--kernels", default="torch", choices=["torch", "triton"], help="the step's layers")
    parser.add_argument("--sweep", action="store_true", help="time the fused step under each block shape")
    parser.add_argument("--best-out", help="--sweep: write the fastest shapes (JSON) here")
    parser.add_argument("--level", type=int, default=1)
    parser.add_argument("--sdpa", default="default", choices=["default", "math", "efficient"],
                        help="attention backend for the single-query step")
    args = parser.parse_args()
    if args.sdpa != "default":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backend = {"math": SDPBackend.MATH, "efficient": SDPBackend.EFFICIENT_ATTENTION}[args.sdpa]
        with sdpa_kernel(backend):
            return run(args)
    return run(args)


# (matmul blocks, attend blocks): kernels.MATMUL_BLOCKS / ATTEND_BLOCKS overrides, the first the default
SWEEP = [
    ({}, {}),
    ({"block_n": 32}, {}),
    ({"block_k": 128}, {}),
    ({"block_n": 32, "block_k": 128}, {}),
    ({"block_n": 32, "block_k": 64, "num_stages": 4}, {}),
    ({"block_n": 64, "block_k": 128}, {}),
    ({"block_k": 128, "num_warps": 2, "num_stages": 4}, {}),
    ({"block_n": 32, "block_k": 128, "num_warps": 8}, {}),
    ({}, {"block_keys": 32}),
    ({}, {"block_keys": 8, "num_warps": 4}),
]


def sweep(fast, args) -> None:
    from pipeline.generation import kernels

    defaults = (dict(kernels.MATMUL_BLOCKS), dict(kernels.ATTEND_BLOCKS))
    times = {}  # sweep index -> {batch: step ms}
    batches = [int(b) for b in (args.batches or str(args.batch)).split(",")]
    for batch in batches:
        caches = fast.new_caches(batch)
        x = torch.randn(batch, fast.width, device="cuda", dtype=torch.bfloat16)
        position = torch.tensor([fast.n_ctx // 2 + 3], device="cuda")
        for index, (matmul, attend) in enumerate(SWEEP):
            kernels.MATMUL_BLOCKS.update(defaults[0], **matmul)
            kernels.ATTEND_BLOCKS.update(defaults[1], **attend)
            try:
                step_ms = graph_time(lambda: fast.step_fused(x, position, caches), replays=50) * 1e3
            except Exception as exc:  # a shape the compiler refuses is a finding, not the end of the sweep
                print(json.dumps({"batch": batch, "matmul": matmul, "attend": attend, "error": repr(exc)[:300]}),
                      flush=True)
                continue
            times.setdefault(index, {})[batch] = step_ms
            print(json.dumps({"batch": batch, "matmul": matmul, "attend": attend, "graph_step_ms": round(step_ms, 3),
                              "tokens_per_s": round(batch / step_ms * 1e3, 1)}), flush=True)
    kernels.MATMUL_BLOCKS.update(defaults[0])
    kernels.ATTEND_BLOCKS.update(defaults[1])
    complete = {i: t for i, t in times.items() if len(t) == len(batches)}
    if not complete:
        return
    best = min(complete, key=lambda i: sum(complete[i].values()))  # one setting serves every batch
    matmul, attend = SWEEP[best]
    print(json.dumps({"best": {"matmul": matmul, "attend": attend,
                               "step_ms": {b: round(t, 3) for b, t in complete[best].items()}}}), flush=True)
    if args.best_out:
        with open(args.best_out, "w") as handle:
            json.dump({"matmul": {**defaults[0], **matmul}, "attend": {**defaults[1], **attend}}, handle)


def run(args) -> None:
    from pipeline.generation.presets import build_tiny, jukebox_1b_lyrics_config
    from pipeline.generation.sampler import fast_prior

    with torch.device("cuda"):
        model = build_tiny(jukebox_1b_lyrics_config())
    prior = model.priors[args.level].to(torch.bfloat16)
    fast = fast_prior(prior)
    fast.kernels = args.kernels
    step_fn = fast.tensor_step()
    batch = args.batch
    caches = fast.new_caches(batch)
    x = torch.randn(batch, fast.width, device="cuda", dtype=torch.bfloat16)
    position = torch.tensor([fast.n_ctx // 2 + 3], device="cuda")
    with torch.inference_mode():
        for _ in range(3):
            step_fn(x, position, caches)
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            step_fn(x, position, caches)
            torch.cuda.synchronize()
        families = defaultdict(lambda: [0, 0.0])
        for event in prof.events():
            if event.device_type == torch.autograd.DeviceType.CUDA:
                name = event.name.split("<")[0][:60]
                families[name][0] += 1
                families[name][1] += event.device_time_total
        total = sum(t for _, t in families.values())
        top = sorted(families.items(), key=lambda kv: -kv[1][1])[:12]
        print(json.dumps({"level": args.level, "batch": batch, "kernels": args.kernels,
                          "kernels_per_step": sum(n for n, _ in families.values()),
                          "gpu_us_per_step": round(total, 1),
                          "top": [(name, n, round(t, 1)) for name, (n, t) in top]}), flush=True)
        step_s = graph_time(lambda: step_fn(x, position, caches), replays=50)
        if args.sweep:
            sweep(fast, args)
        layer = fast.layers[0]
        h = torch.randn(batch, fast.width, device="cuda", dtype=torch.bfloat16)
        mlp_in = torch.randn(batch, layer.fc_w.shape[1], device="cuda", dtype=torch.bfloat16)
        ctx = torch.randn(batch, layer.proj_w.shape[0], device="cuda", dtype=torch.bfloat16)
        weights = [(h, layer.attn_w, layer.attn_b), (ctx, layer.proj_w, layer.proj_b), (h, layer.fc_w, layer.fc_b),
                   (mlp_in, layer.out_w, layer.out_b)]
        transposed = [(a, w.t().contiguous(), b) for a, w, b in weights]
        as_stored = graph_time(lambda: [torch.addmm(b, a, w) for a, w, b in weights])
        out_in = graph_time(lambda: [F.linear(a, w, b) for a, w, b in transposed])
        weight_bytes = sum(w.numel() * w.element_size() for _, w, _ in weights)
        print(json.dumps({"sdpa": args.sdpa, "kernels": args.kernels, "graph_step_ms": round(step_s * 1e3, 3),
                          "layers": len(fast.layers),
                          "layer_products_us_in_out": round(as_stored * 1e6, 1),
                          "layer_products_us_out_in": round(out_in * 1e6, 1),
                          "layer_weight_mb": round(weight_bytes / 1e6, 1),
                          "bandwidth_floor_us_at_3TBps": round(weight_bytes / 3e12 * 1e6, 1)}), flush=True)


if __name__ == "__main__":
    main()
