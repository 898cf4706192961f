"""Where one decode step of our Jukebox sampler spends GPU time (run on demand, CUDA only).

    python benchmarks/generation_step_profile.py [--batch 1] [--level 1] [--kernels torch|triton]
    python benchmarks/generation_step_profile.py --kernels triton --sweep --batches 1,16 [--best-out F]

Random jukebox-1b-lyrics weights in bfloat16. Prints (1) the GPU time per kernel family of one uncaptured
tensor-position step (torch.profiler), (2) the replay time of the captured step, and (3) the four matrix
products of one layer timed alone in a CUDA graph, with the weight as transformers stores it (in, out) and
transposed (out, in), to see whether the products or the launches cost.

--sweep (triton): the captured step's replay time per batch under the settings of `STAGES` (attention's key
splits, the layer norm's pass, block shapes), searched greedily stage by stage (least summed time
over the batches, among candidates whose replays agree bit for bit and whose output agrees with the default
kernels'); writes the best as JSON to --best-out (the arguments of `benchmarks/generation.py
--matmul-blocks/--attend-blocks`).
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
    parser.add_argument("--budget-s", type=float, default=150, help="--sweep: try no new candidate after this")
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


# Greedy stages: each stage's candidates ({"matmul": kernels.MATMUL_BLOCKS overrides, "attend":
# kernels.ATTEND_BLOCKS overrides}) are tried on top of the best settings so far, the first ({}) being those
# settings themselves. (Earlier stages, measured: key splits 4/8/16 and block_keys 8, norm_block 512/1024,
# block_k 128/512 with 4 or 8 warps, 2 warps, 4 stages, block_n 32, programmatic dependent launch and
# producers handing the layer norm row statistics;
# benchmarks/results/generation-step-sweep-h200-2026-12-04*.jsonl.)
STAGES = [
    [{}, {"attend": {"key_splits": 4}}, {"attend": {"key_splits": 16}}],
    [{}, {"matmul": {"norm_block": 1024}}, {"matmul": {"block_n": 32}}],
]
AGREEMENT = 0.05  # a candidate's step output may differ from the defaults' by this much of their largest value


def sweep(fast, args) -> None:
    """Greedy search over STAGES at every batch size; a candidate counts only if two replays give the same bits
    (no race in the split attention's hand-over) and its output agrees with the default kernels' (bf16
    summation order moves the last bits, a wrong kernel moves far more)."""
    from pipeline.generation import kernels

    defaults = (dict(kernels.MATMUL_BLOCKS), dict(kernels.ATTEND_BLOCKS))
    best = {"matmul": dict(defaults[0]), "attend": dict(defaults[1])}
    batches = [int(b) for b in (args.batches or str(args.batch)).split(",")]
    device, dtype = fast.layers[0].attn_w.device, fast.layers[0].attn_w.dtype
    inputs = {}
    for batch in batches:
        generator = torch.Generator(device=device).manual_seed(batch)
        x = torch.randn(batch, fast.width, device=device, dtype=dtype, generator=generator)
        caches = fast.new_caches(batch)
        for _, _, joint in caches:
            joint.normal_(generator=generator)
        inputs[batch] = (x, torch.tensor([fast.n_ctx // 2 + 3], device=device), caches)

    def apply(matmul: dict, attend: dict) -> None:
        for blocks, values in ((kernels.MATMUL_BLOCKS, matmul), (kernels.ATTEND_BLOCKS, attend)):
            blocks.clear()
            blocks.update(values)

    def measure(settings) -> dict:
        apply(settings["matmul"], settings["attend"])
        times = {}
        for batch, (x, position, caches) in inputs.items():
            try:
                first = fast.step_fused(x, position, caches).float()
                second = fast.step_fused(x, position, caches).float()
                step_ms = graph_time(lambda: fast.step_fused(x, position, caches), replays=50) * 1e3
            except Exception as exc:  # a shape the compiler refuses is a finding, not the end of the sweep
                return {"error": repr(exc)[:300]}
            if reference.get(batch) is None:
                reference[batch] = first
            scale = float(reference[batch].abs().max())
            times[batch] = {"step_ms": round(step_ms, 3), "tokens_per_s": round(batch / step_ms * 1e3, 1),
                            "replays_equal": bool(torch.equal(first, second)),
                            "max_diff_to_defaults": round(float((first - reference[batch]).abs().max()) / scale, 5)}
        return times

    reference = {}
    started = time.perf_counter()
    for candidates in STAGES:
        stage_best, stage_time = None, None
        for candidate in candidates:
            if time.perf_counter() - started > args.budget_s:
                print(json.dumps({"budget_s": args.budget_s, "stopped_before": candidate}), flush=True)
                break
            settings = {kind: {**best[kind], **candidate.get(kind, {})} for kind in ("matmul", "attend")}
            times = measure(settings)
            print(json.dumps({"settings": settings, "batches": times}), flush=True)
            if "error" in times:
                continue
            good = all(t["replays_equal"] and t["max_diff_to_defaults"] <= AGREEMENT for t in times.values())
            total = sum(t["step_ms"] for t in times.values())
            if good and (stage_time is None or total < stage_time):
                stage_best, stage_time = settings, total
        if stage_best is not None:
            best = stage_best
    apply(*defaults)
    print(json.dumps({"best": best, "sweep_s": round(time.perf_counter() - started, 1)}), flush=True)
    if args.best_out:
        with open(args.best_out, "w") as handle:
            json.dump(best, handle)


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
