"""Fused Triton kernels for one decode step of a Jukebox prior: five launches per layer instead of ~15.

On an H100 the captured torch step (`FastPrior.step_static`) is bound by its kernels, not by the bytes they
move: 72 layers x ~15 small kernels (layer norms, matrix-vector products, bias and residual adds, the key/value
write, an index gather, attention) of 3-12 us each, where a layer's 22 MB of bf16 weights need ~7 us at
3 TB/s (`benchmarks/results/generation-step-profile-h100-2026-11-26.jsonl`). Here a layer is:

1. `norm_matmul`: layer norm 0, then the query/key/value projection (+ bias);
2. `attend`: this position's key and value written to the pattern's cache slot, then single-query softmax
   attention over the slots the pattern reads (computed from the position on the device: graph-safe);
3. `norm_matmul`: the attention's output projection + bias + residual;
4. `norm_matmul`: layer norm 1, the MLP's first product + bias, quick GELU;
5. `norm_matmul`: the MLP's second product + bias + residual.

Measured (random jukebox-1b-lyrics weights, bf16; `benchmarks/results/`): on an H100 the captured upsampler
step took 3.5 ms at batch 1 and 3.9 ms at batch 16 against 4.5 and 4.9 ms for the torch step. On an H200
(2026-12-04), splitting attention over keys (8 programs per clip and head, ~14 -> ~7 us per layer) and
launching the products as programmatic dependents took it from 3.57 to 2.87 ms at batch 1 and from 3.96 to
3.29 ms at batch 16. The products are the cost: one program per 16 output columns walks all of K, so a
product is bound by that walk's load latency (~8.5 us where its bytes need ~2). Splitting K over more programs,
with each consumer summing the partials as it loads them, was slower (commit a67ade8), and so was handing a
layer norm its row statistics from the product that wrote the row (commit 7de26e5).

Every reduction runs in a fixed order (no atomic sums, no autotuning; the split attention's one atomic counts
arrivals, and the last split combines all of them in split order): a clip's tokens are the same on every
replay. Products accumulate in float32; their inputs are the weights' dtype, as torch's bf16 path rounds them.
The same kernels run on the CPU under Triton's interpreter (TRITON_INTERPRET=1 before the first import of
this module), which is how the equivalence tests prove them against transformers without a GPU.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

try:  # programmatic dependent launch (Hopper): a kernel starts while the one before it finishes
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait
except ImportError:  # an older Triton: launched as ordinary kernels whatever the `pdl` settings say
    gdc_launch_dependents = gdc_wait = None


@functools.cache
def _dependent_launch(device: torch.device) -> bool:
    """Whether kernels on `device` can launch as programmatic dependents: CUDA on Hopper or later (sm_90+; the
    griddepcontrol instructions), with a Triton that has them."""
    return device.type == "cuda" and gdc_wait is not None and torch.cuda.get_device_capability(device)[0] >= 9


# attention patterns, as kernel constants
DENSE, BLOCK, TRANSPOSE, PREVIOUS, PRIME, CROSS = range(6)
PATTERN_IDS = {"dense_attn": DENSE, "block_attn": BLOCK, "transpose_block_attn": TRANSPOSE,
               "prev_block_attn": PREVIOUS, "prime_attn": PRIME, "cross_attention": CROSS}
NO_ACTIVATION, QUICK_GELU = 0, 1

# Block shapes: rows of the batch, output columns and inner dimension per program, warps, pipeline stages.
# Fixed (a per-process autotuned choice would change summation order between runs); the fastest of
# `benchmarks/generation_step_profile.py --sweep` on an H100 (random 1b weights, bf16, batch 1 and 16).
# norm_block: 0 computes a layer norm's statistics in two passes of block_k columns (mean, then the variance
# around it); n > 0 in one pass of n-column chunks merged as Chan et al. do (fewer dependent loads per program;
# 1024 on an H200: 2.73 instead of 2.88 ms at batch 1, but 3.88 instead of 3.29 at batch 16).
# pdl: launched as a programmatic dependent (it waits in-kernel for the kernel before it, whose tail its launch
# overlaps). Measured on an H200 (generation-step-sweep-h200-2026-12-04-pdl.jsonl): pdl took the step from 3.06
# to 2.93 ms at batch 1 and 3.48 to 3.34 at batch 16; attention as a dependent too was slower at batch 16 (3.92
# ms). Tried and dropped: products handing a layer norm their column blocks' row statistics instead of the norm
# reading its row (4.07 ms at batch 1: slower; commit 7de26e5, generation-step-sweep-h200-2026-12-04-stats.jsonl).
MATMUL_BLOCKS = {"block_m": 16, "block_n": 16, "block_k": 256, "num_warps": 4, "num_stages": 3, "norm_block": 0,
                 "pdl": True}
# block_keys: keys per iteration (a 480-wide head is 16 x 512 per tile); key_splits: programs per clip and head,
# each over its share of the keys, the last to finish combining them (flash-decoding); 1: one program walks all.
# Measured on an H200 (benchmarks/results/generation-step-sweep-h200-2026-12-04.jsonl): 8 splits took the
# upsampler step from 3.57 to 3.07 ms at batch 1 and 3.96 to 3.49 ms at batch 16 (4 and 16 splits: 3.15-3.23).
ATTEND_BLOCKS = {"block_keys": 16, "num_warps": 8, "key_splits": 8, "pdl": False}


@triton.jit
def _norm_matmul_kernel(x_ptr, gamma_ptr, beta_ptr, w_ptr, bias_ptr, res_ptr, out_ptr,
                        M, N, K, stride_x, stride_res, stride_out, eps,
                        NORM: tl.constexpr, ACTIVATION: tl.constexpr, RESIDUAL: tl.constexpr, IEEE: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                        NORM_BLOCK: tl.constexpr, PDL: tl.constexpr):
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < M
    col_ok = cols < N
    if PDL:  # everything below reads what the kernels before wrote
        gdc_wait()
        gdc_launch_dependents()
    if NORM:
        if NORM_BLOCK == 0:  # mean, then the variance around it (two passes over the rows: K * BLOCK_M elements)
            total = tl.zeros([BLOCK_M], dtype=tl.float32)
            for k0 in range(0, K, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                ok = row_ok[:, None] & (ks < K)[None, :]
                total += tl.sum(tl.load(x_ptr + rows[:, None] * stride_x + ks[None, :], mask=ok, other=0.0)
                                .to(tl.float32), axis=1)
            mean = total / K
            squares = tl.zeros([BLOCK_M], dtype=tl.float32)
            for k0 in range(0, K, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                ok = row_ok[:, None] & (ks < K)[None, :]
                x = tl.load(x_ptr + rows[:, None] * stride_x + ks[None, :], mask=ok, other=0.0).to(tl.float32)
                centred = tl.where(ok, x - mean[:, None], 0.0)
                squares += tl.sum(centred * centred, axis=1)
        else:  # one pass: each chunk's mean and squared deviations, merged into the running ones (Chan et al.)
            count = tl.zeros([BLOCK_M], dtype=tl.float32)
            mean = tl.zeros([BLOCK_M], dtype=tl.float32)
            squares = tl.zeros([BLOCK_M], dtype=tl.float32)
            for k0 in range(0, K, NORM_BLOCK):
                ks = k0 + tl.arange(0, NORM_BLOCK)
                ok = row_ok[:, None] & (ks < K)[None, :]
                x = tl.load(x_ptr + rows[:, None] * stride_x + ks[None, :], mask=ok, other=0.0).to(tl.float32)
                chunk = tl.sum((ks < K).to(tl.float32), axis=0)
                chunk_mean = tl.sum(x, axis=1) / chunk
                centred = tl.where(ok, x - chunk_mean[:, None], 0.0)
                merged = count + chunk
                delta = chunk_mean - mean
                mean += delta * chunk / merged
                squares += tl.sum(centred * centred, axis=1) + delta * delta * count * chunk / merged
                count = merged
        rstd = 1.0 / tl.sqrt(squares / K + eps)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < K
        ok = row_ok[:, None] & k_ok[None, :]
        a = tl.load(x_ptr + rows[:, None] * stride_x + ks[None, :], mask=ok, other=0.0)
        if NORM:
            gamma = tl.load(gamma_ptr + ks, mask=k_ok, other=0.0).to(tl.float32)
            beta = tl.load(beta_ptr + ks, mask=k_ok, other=0.0).to(tl.float32)
            a = (a.to(tl.float32) - mean[:, None]) * rstd[:, None] * gamma[None, :] + beta[None, :]
            a = tl.where(ok, a, 0.0)
        w = tl.load(w_ptr + ks[:, None] * N + cols[None, :], mask=k_ok[:, None] & col_ok[None, :], other=0.0)
        a = a.to(w.dtype)
        if IEEE:
            acc += tl.dot(a, w, input_precision="ieee")
        else:
            acc += tl.dot(a, w)
    acc += tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    if ACTIVATION == 1:  # quick GELU: m * sigmoid(1.702 m)
        acc = acc * tl.sigmoid(1.702 * acc)
    ok = row_ok[:, None] & col_ok[None, :]
    if RESIDUAL:
        acc += tl.load(res_ptr + rows[:, None] * stride_res + cols[None, :], mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + rows[:, None] * stride_out + cols[None, :], acc.to(out_ptr.dtype.element_ty), mask=ok)


def norm_matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, norm=None, activation: int = 0,
                residual: torch.Tensor | None = None) -> torch.Tensor:
    """act(layer_norm(x) @ weight + bias) + residual for x (M, K) rows and weight (K, N) (JukeboxConv1D's
    layout); norm = (gamma, beta, eps) or None, activation NO_ACTIVATION or QUICK_GELU."""
    m, k = x.shape
    n = weight.shape[1]
    out = torch.empty(m, n, dtype=weight.dtype, device=x.device)
    gamma, beta, eps = norm if norm is not None else (bias, bias, 0.0)
    res = residual if residual is not None else out
    blocks = MATMUL_BLOCKS
    grid = (triton.cdiv(n, blocks["block_n"]), triton.cdiv(m, blocks["block_m"]))
    pdl = bool(blocks.get("pdl", False)) and _dependent_launch(x.device)  # (the interpreter's CPU tensors: no)
    _norm_matmul_kernel[grid](
        x, gamma, beta, weight, bias, res, out, m, n, k, x.stride(0), res.stride(0), out.stride(0), eps,
        NORM=norm is not None, ACTIVATION=activation, RESIDUAL=residual is not None,
        IEEE=weight.dtype == torch.float32, BLOCK_M=blocks["block_m"], BLOCK_N=blocks["block_n"],
        BLOCK_K=blocks["block_k"], NORM_BLOCK=blocks.get("norm_block", 0), PDL=pdl, num_warps=blocks["num_warps"],
        num_stages=blocks["num_stages"], **({"launch_pdl": True} if pdl else {}))
    return out


@triton.jit
def _attend_kernel(q_ptr, stride_qb, new_ptr, stride_nb, cache_ptr, stride_cb, stride_ckv, stride_ch, stride_cs,
                   out_ptr, stride_ob, position_ptr, head_dim, scale, cross_keys, ml_ptr, part_ptr, counter_ptr,
                   PATTERN: tl.constexpr, BLOCK_CTX: tl.constexpr, PRIME_LEN: tl.constexpr,
                   BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr, SPLITS: tl.constexpr, BLOCK_S: tl.constexpr,
                   PDL: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    split = tl.program_id(2)
    heads = tl.num_programs(1)
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
    position = tl.load(position_ptr)
    d = tl.arange(0, BLOCK_D)
    d_ok = d < head_dim
    q = tl.load(q_ptr + b * stride_qb + h * head_dim + d, mask=d_ok, other=0.0).to(tl.float32) * scale
    # which slot this position's key and value go to, and the slots it reads: first + r * stride, r < n
    first = position * 0
    stride = 1
    if PATTERN == 0:  # dense
        write = position
        n = position + 1
    elif PATTERN == 1:  # block: a ring of one block
        write = position % BLOCK_CTX
        n = position % BLOCK_CTX + 1
    elif PATTERN == 2:  # transpose block: this column of every block so far
        write = position
        first = position % BLOCK_CTX
        stride = BLOCK_CTX
        n = position // BLOCK_CTX + 1
    elif PATTERN == 3:  # previous block: a ring of two blocks; nothing before the second block
        write = position % (2 * BLOCK_CTX)
        previous = position // BLOCK_CTX - 1
        first = tl.where(previous >= 0, (previous % 2) * BLOCK_CTX, 0)
        n = tl.where(previous >= 0, BLOCK_CTX, 0)
    elif PATTERN == 4:  # prime: the lyric prefix; later positions write to a spare slot nobody reads
        write = tl.minimum(position, PRIME_LEN)
        n = tl.minimum(position + 1, PRIME_LEN)
    else:  # cross-attention: the lyric encoder's states, nothing written
        write = position * 0 - 1
        n = position * 0 + cross_keys
    kv = cache_ptr + b * stride_cb + h * stride_ch
    if PATTERN != 5:
        k_new = tl.load(new_ptr + b * stride_nb + h * head_dim + d, mask=d_ok, other=0.0)
        v_new = tl.load(new_ptr + b * stride_nb + (heads + h) * head_dim + d, mask=d_ok, other=0.0)
        if split == 0:
            tl.store(kv + write * stride_cs + d, k_new, mask=d_ok)
            tl.store(kv + stride_ckv + write * stride_cs + d, v_new, mask=d_ok)
    # this program's share of the keys: [r_begin, r_end), whole key blocks
    per_split = tl.cdiv(tl.cdiv(n, SPLITS), BLOCK_R) * BLOCK_R
    r_begin = split * per_split
    r_end = tl.minimum(r_begin + per_split, n)
    m_i = tl.max(tl.full([BLOCK_R], float("-inf"), tl.float32), axis=0)
    l_i = tl.sum(tl.zeros([BLOCK_R], tl.float32), axis=0)
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for r0 in range(r_begin, r_end, BLOCK_R):
        r = r0 + tl.arange(0, BLOCK_R)
        r_ok = r < r_end
        slots = first + r * stride
        ok = r_ok[:, None] & d_ok[None, :]
        k = tl.load(kv + slots[:, None] * stride_cs + d[None, :], mask=ok, other=0.0)
        v = tl.load(kv + stride_ckv + slots[:, None] * stride_cs + d[None, :], mask=ok, other=0.0)
        if PATTERN != 5:  # the slot written above, read from registers (no ordering between the store and a load)
            fresh = (slots == write)[:, None]
            k = tl.where(fresh, k_new[None, :], k)
            v = tl.where(fresh, v_new[None, :], v)
        scores = tl.where(r_ok, tl.sum(k.to(tl.float32) * q[None, :], axis=1), float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, axis=0))
        p = tl.exp(scores - m_new)
        alpha = tl.exp(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, axis=0)
        acc = acc * alpha + tl.sum(p[:, None] * v.to(tl.float32), axis=0)
        m_i = m_new
    if SPLITS == 1:
        context = tl.where(n > 0, acc / tl.maximum(l_i, 1e-30), 0.0)  # no keys (first previous block): 0
        tl.store(out_ptr + b * stride_ob + h * head_dim + d, context.to(out_ptr.dtype.element_ty), mask=d_ok)
    else:
        # publish this split's running max, sum and weighted values; the last of the (clip, head)'s splits to
        # arrive combines all of them in split order (a fixed order: the same bits whichever arrives last)
        cell = b * heads + h
        tl.store(ml_ptr + (cell * SPLITS + split) * 2, m_i)
        tl.store(ml_ptr + (cell * SPLITS + split) * 2 + 1, l_i)
        tl.store(part_ptr + (cell * SPLITS + split) * BLOCK_D + d, acc)
        tl.debug_barrier()  # every thread's stores issued before the release below
        arrived = tl.atomic_add(counter_ptr + cell, 1, sem="acq_rel", scope="gpu")
        if arrived == SPLITS - 1:
            tl.debug_barrier()
            splits = tl.arange(0, BLOCK_S)
            s_ok = splits < SPLITS
            ms = tl.load(ml_ptr + (cell * SPLITS + splits) * 2, mask=s_ok, other=float("-inf"), cache_modifier=".cg")
            ls = tl.load(ml_ptr + (cell * SPLITS + splits) * 2 + 1, mask=s_ok, other=0.0, cache_modifier=".cg")
            parts = tl.load(part_ptr + (cell * SPLITS + splits)[:, None] * BLOCK_D + d[None, :],
                            mask=s_ok[:, None], other=0.0, cache_modifier=".cg")
            top = tl.max(ms, axis=0)
            top = tl.where(top == float("-inf"), 0.0, top)
            weights = tl.exp(ms - top)  # a split without keys (max -inf) weighs 0
            total = tl.sum(weights * ls, axis=0)
            context = tl.sum(weights[:, None] * parts, axis=0) / tl.maximum(total, 1e-30)
            context = tl.where(n > 0, context, 0.0)
            tl.store(out_ptr + b * stride_ob + h * head_dim + d, context.to(out_ptr.dtype.element_ty), mask=d_ok)
            tl.atomic_xchg(counter_ptr + cell, 0, sem="relaxed", scope="gpu")  # ready for the next replay


def attend(pattern: int, q: torch.Tensor, new: torch.Tensor | None, joint: torch.Tensor, position: torch.Tensor,
           heads: int, head_dim: int, block_ctx: int, prime_len: int,
           counters: torch.Tensor | None = None) -> torch.Tensor:
    """Single-query attention of q (B, heads * head_dim) rows for the position in `position` (a 1-element
    long tensor). new: (B, 2 * heads * head_dim) this position's keys then values (None for cross-attention);
    joint: the layer's cache (B, 2, heads, slots, head_dim). Returns the context (B, heads * head_dim).
    With ATTEND_BLOCKS["key_splits"] > 1, `counters` is B * heads zeroed int32 (allocated here when None;
    the kernel leaves them zero again), one per (clip, head), counting the splits that have finished."""
    batch = q.shape[0]
    out = torch.empty(batch, heads * head_dim, dtype=q.dtype, device=q.device)
    new_rows = new if new is not None else q
    splits = int(ATTEND_BLOCKS.get("key_splits", 1))
    pdl = bool(ATTEND_BLOCKS.get("pdl", False)) and _dependent_launch(q.device)
    block_d = triton.next_power_of_2(head_dim)
    if splits > 1:
        ml = torch.empty(batch * heads * splits * 2, dtype=torch.float32, device=q.device)
        parts = torch.empty(batch * heads * splits * block_d, dtype=torch.float32, device=q.device)
        if counters is None:
            counters = torch.zeros(batch * heads, dtype=torch.int32, device=q.device)
    else:
        ml = parts = counters = out  # not read
    _attend_kernel[(batch, heads, splits)](
        q, q.stride(0), new_rows, new_rows.stride(0), joint, joint.stride(0), joint.stride(1), joint.stride(2),
        joint.stride(3), out, out.stride(0), position, head_dim, head_dim ** -0.5, joint.shape[3], ml, parts,
        counters, PATTERN=pattern, BLOCK_CTX=max(int(block_ctx or 1), 1), PRIME_LEN=max(int(prime_len), 1),
        BLOCK_D=block_d, BLOCK_R=ATTEND_BLOCKS["block_keys"], SPLITS=splits,
        BLOCK_S=triton.next_power_of_2(splits), PDL=pdl, num_warps=ATTEND_BLOCKS["num_warps"],
        **({"launch_pdl": True} if pdl else {}))
    return out
