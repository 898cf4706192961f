"""Fused Triton kernels for one decode step of a Jukebox prior: five launches per layer instead of ~15.

On an H100 the captured torch step (`FastPrior.step_static`) is bound by its kernels, not by the bytes they
move: 72 layers x ~15 small kernels of 3-12 us each, where a layer's 22 MB of bf16 weights need ~7 us at
3 TB/s (`benchmarks/results/generation-step-profile-h100-2026-11-26.jsonl`). A first fused version (one
program per 32 output columns walking all of K) was latency-bound instead: 60 programs, each waiting on 15
loads in a row, 15 us per product (`benchmarks/results/generation-step-sweep-h100-2026-11-27.jsonl`). So
here every product is split along K as well as N, to put most of a layer's weights in flight at once, and
every kernel writes partial results that its consumer sums as it loads them (no extra launch, no atomics):

1. `product`: the residual stream assembled (previous layer's hidden + MLP bias + MLP partials) and written
   out, layer norm 0, the query/key/value product -> partials;
2. `attend`: query, key and value assembled (bias + partials), this position's key and value written to the
   pattern's cache slot, single-query attention over the slots the pattern reads, split over keys
   (flash-decoding) -> per-split (max, sum, weighted values);
3. `product`: the splits combined, the attention's output product -> partials;
4. `product`: hidden = residual + bias + partials, written out; layer norm 1, the MLP's first product -> partials;
5. `product`: quick GELU of (bias + partials), the MLP's second product -> partials (summed by the next layer).

Slots are computed from the position on the device, so the step is graph-safe. Every sum runs in a fixed order
(no atomics, no autotuning): a clip's tokens are the same on every replay. The residual stream and partials
are float32; products take the weights' dtype. The same kernels run on the CPU under Triton's interpreter
(TRITON_INTERPRET=1 before this module is first imported): the equivalence tests prove them against
transformers without a GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# attention patterns, as kernel constants
DENSE, BLOCK, TRANSPOSE, PREVIOUS, PRIME, CROSS = range(6)
PATTERN_IDS = {"dense_attn": DENSE, "block_attn": BLOCK, "transpose_block_attn": TRANSPOSE,
               "prev_block_attn": PREVIOUS, "prime_attn": PRIME, "cross_attention": CROSS}

# Block shapes: fixed per process (a per-run autotuned choice would change summation order between runs);
# `benchmarks/generation_step_profile.py --sweep` times alternatives. `programs`: how many programs a
# product aims for (K is split until its output tiles times the splits reach it), about 2 per H100 SM.
MATMUL_BLOCKS = {"block_m": 16, "block_n": 32, "block_k": 128, "num_warps": 4, "num_stages": 2, "programs": 264,
                 "norm_block": 512}  # norm_block: columns per step of the layer norm's statistics pass
ATTEND_BLOCKS = {"key_splits": 8, "block_keys": 16, "num_warps": 4}


@triton.jit
def _quick_gelu(v):
    return v * tl.sigmoid(1.702 * v)


@triton.jit
def _assemble(rows, ks, row_ok, k_ok, M, K, base_ptr, stride_base, bias_ptr, parts_ptr,
              HAS_BASE: tl.constexpr, HAS_BIAS: tl.constexpr, PARTS: tl.constexpr, GELU: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    """Input rows [BLOCK_M, BLOCK_K] at columns ks: base + bias + the sum of PARTS partials [PARTS, M, K],
    then quick GELU if asked; 0 outside the matrix."""
    ok = row_ok[:, None] & k_ok[None, :]
    value = tl.zeros([BLOCK_M, BLOCK_K], dtype=tl.float32)
    if HAS_BASE:
        value += tl.load(base_ptr + rows[:, None] * stride_base + ks[None, :], mask=ok, other=0.0).to(tl.float32)
    if HAS_BIAS:
        value += tl.load(bias_ptr + ks, mask=k_ok, other=0.0).to(tl.float32)[None, :]
    for s in tl.static_range(PARTS):
        value += tl.load(parts_ptr + (s * M + rows[:, None]) * K + ks[None, :], mask=ok, other=0.0)
    if GELU:
        value = _quick_gelu(value)
    return tl.where(ok, value, 0.0)


@triton.jit
def _combine(rows, ks, row_ok, k_ok, ml_ptr, acc_ptr, HEADS, HEAD_DIM, SPLITS: tl.constexpr,
             BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    """The attention context [BLOCK_M, BLOCK_K] at columns ks (head-major) from the key splits' (max, sum)
    [B, heads, SPLITS, 2] and weighted values [B, heads, SPLITS, head_dim]; 0 where no split read a key."""
    ok = row_ok[:, None] & k_ok[None, :]
    head = ks // HEAD_DIM
    d = ks % HEAD_DIM
    cell = rows[:, None] * HEADS + head[None, :]  # (b, h)
    top = tl.full([BLOCK_M, BLOCK_K], float("-inf"), dtype=tl.float32)
    for s in tl.static_range(SPLITS):
        top = tl.maximum(top, tl.load(ml_ptr + (cell * SPLITS + s) * 2, mask=ok, other=float("-inf")))
    top = tl.where(top == float("-inf"), 0.0, top)
    numerator = tl.zeros([BLOCK_M, BLOCK_K], dtype=tl.float32)
    denominator = tl.zeros([BLOCK_M, BLOCK_K], dtype=tl.float32)
    for s in tl.static_range(SPLITS):
        weight = tl.exp(tl.load(ml_ptr + (cell * SPLITS + s) * 2, mask=ok, other=float("-inf")) - top)
        denominator += weight * tl.load(ml_ptr + (cell * SPLITS + s) * 2 + 1, mask=ok, other=0.0)
        numerator += weight * tl.load(acc_ptr + (cell * SPLITS + s) * HEAD_DIM + d[None, :], mask=ok, other=0.0)
    return tl.where(ok & (denominator > 0), numerator / tl.maximum(denominator, 1e-30), 0.0)


@triton.jit(do_not_specialize=["HEADS"])  # Triton 3.6 fails to lower _combine with HEADS specialised to 1
def _product_kernel(base_ptr, stride_base, bias_ptr, parts_ptr, ml_ptr, acc_ptr, HEADS, HEAD_DIM,
                    gamma_ptr, beta_ptr, eps, w_ptr, out_ptr, written_ptr, M, N, K, K_PER_SPLIT,
                    COMBINE: tl.constexpr, HAS_BASE: tl.constexpr, HAS_BIAS: tl.constexpr, PARTS: tl.constexpr,
                    GELU: tl.constexpr, NORM: tl.constexpr, WRITE_INPUT: tl.constexpr, IEEE: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, NORM_BLOCK: tl.constexpr):
    pid_n = tl.program_id(0)
    split = tl.program_id(1)
    rows = tl.program_id(2) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < M
    col_ok = cols < N
    if NORM:  # mean and variance of the whole assembled row, in one pass: chunks merged as Chan et al. do
        count = tl.zeros([BLOCK_M], dtype=tl.float32)
        mean = tl.zeros([BLOCK_M], dtype=tl.float32)
        m2 = tl.zeros([BLOCK_M], dtype=tl.float32)
        for k0 in range(0, K, NORM_BLOCK):
            ks = k0 + tl.arange(0, NORM_BLOCK)
            ok = row_ok[:, None] & (ks < K)[None, :]
            value = _assemble(rows, ks, row_ok, ks < K, M, K, base_ptr, stride_base, bias_ptr, parts_ptr,
                              HAS_BASE, HAS_BIAS, PARTS, GELU, BLOCK_M, NORM_BLOCK)
            chunk = tl.sum((ks < K).to(tl.float32), axis=0)
            chunk_mean = tl.sum(value, axis=1) / chunk
            centred = tl.where(ok, value - chunk_mean[:, None], 0.0)
            chunk_m2 = tl.sum(centred * centred, axis=1)
            merged = count + chunk
            delta = chunk_mean - mean
            mean += delta * chunk / merged
            m2 += chunk_m2 + delta * delta * count * chunk / merged
            count = merged
        rstd = 1.0 / tl.sqrt(m2 / K + eps)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    k_begin = split * K_PER_SPLIT
    for k0 in range(k_begin, k_begin + K_PER_SPLIT, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < K
        if COMBINE:
            a = _combine(rows, ks, row_ok, k_ok, ml_ptr, acc_ptr, HEADS, HEAD_DIM, PARTS, BLOCK_M, BLOCK_K)
        else:
            a = _assemble(rows, ks, row_ok, k_ok, M, K, base_ptr, stride_base, bias_ptr, parts_ptr,
                          HAS_BASE, HAS_BIAS, PARTS, GELU, BLOCK_M, BLOCK_K)
        if WRITE_INPUT:  # the assembled rows, for a later residual: the first column of programs writes them
            if pid_n == 0:
                tl.store(written_ptr + rows[:, None] * K + ks[None, :], a, mask=row_ok[:, None] & k_ok[None, :])
        if NORM:
            gamma = tl.load(gamma_ptr + ks, mask=k_ok, other=0.0).to(tl.float32)
            beta = tl.load(beta_ptr + ks, mask=k_ok, other=0.0).to(tl.float32)
            a = tl.where(row_ok[:, None] & k_ok[None, :],
                         (a - mean[:, None]) * rstd[:, None] * gamma[None, :] + beta[None, :], 0.0)
        w = tl.load(w_ptr + ks[:, None] * N + cols[None, :], mask=k_ok[:, None] & col_ok[None, :], other=0.0)
        if IEEE:
            acc += tl.dot(a.to(w.dtype), w, input_precision="ieee")
        elif COMBINE:  # Triton 3.6 fails to lower the combined context as a tensor-core operand (an assertion
            acc += tl.dot(a, w.to(tl.float32), input_precision="ieee")  # in applyLinearLayout): float32 FMAs
        else:
            acc += tl.dot(a.to(w.dtype), w)
    tl.store(out_ptr + (split * M + rows[:, None]) * N + cols[None, :], acc,
             mask=row_ok[:, None] & col_ok[None, :])


class Rows:
    """A (M, K) float32 input the consumer assembles as it loads: base + bias + the sum of partials
    (S, M, K), then quick GELU if `gelu`. Or, with `attention` = (max/sum, weighted values, heads, head_dim),
    the combined key splits of `attend`."""

    def __init__(self, base=None, bias=None, parts=None, gelu=False, attention=None):
        self.base, self.bias, self.parts, self.gelu, self.attention = base, bias, parts, gelu, attention

    def materialise(self) -> torch.Tensor:
        """The rows as one float32 tensor (torch operations: the step's last layer, tests)."""
        if self.attention is not None:
            ml, acc, heads, head_dim = self.attention
            top = ml[..., 0].amax(dim=-1, keepdim=True)
            top = torch.where(torch.isinf(top), torch.zeros_like(top), top)
            weight = torch.exp(ml[..., 0] - top)
            denominator = (weight * ml[..., 1]).sum(-1)
            numerator = (weight.unsqueeze(-1) * acc).sum(-2)
            context = torch.where(denominator.unsqueeze(-1) > 0,
                                  numerator / denominator.clamp(min=1e-30).unsqueeze(-1), torch.zeros_like(numerator))
            return context.reshape(context.shape[0], heads * head_dim)
        value = self.parts.sum(0) if self.parts is not None else 0
        if self.bias is not None:
            value = value + self.bias.float()
        if self.base is not None:
            value = value + self.base.float()
        return value * torch.sigmoid(1.702 * value) if self.gelu else value


def _splits(k: int, tiles: int, blocks: dict) -> tuple[int, int]:
    """(splits, K per split): K cut into multiples of block_k until tiles x splits reaches blocks["programs"]."""
    chunks = triton.cdiv(k, blocks["block_k"])
    splits = max(1, min(chunks, triton.cdiv(blocks["programs"], tiles)))
    per_split = triton.cdiv(chunks, splits) * blocks["block_k"]
    return triton.cdiv(k, per_split), per_split


def product(rows: Rows, weight: torch.Tensor, m: int, norm=None, write_input: torch.Tensor | None = None):
    """Partials (S, M, N) float32 of rows(M, K) [layer-normed with norm = (gamma, beta, eps)] @ weight (K, N),
    K split S ways; write_input (M, K) float32 receives the assembled rows (before the norm)."""
    k, n = weight.shape
    blocks = MATMUL_BLOCKS
    tiles = triton.cdiv(n, blocks["block_n"]) * triton.cdiv(m, blocks["block_m"])
    splits, per_split = _splits(k, tiles, blocks)
    out = torch.empty(splits, m, n, dtype=torch.float32, device=weight.device)
    combine = rows.attention is not None
    ml, acc, heads, head_dim = rows.attention if combine else (out, out, 1, 1)
    parts = ml.shape[2] if combine else (rows.parts.shape[0] if rows.parts is not None else 0)
    base = rows.base if rows.base is not None else out
    bias = rows.bias if rows.bias is not None else out
    gamma, beta, eps = norm if norm is not None else (out, out, 0.0)
    grid = (triton.cdiv(n, blocks["block_n"]), splits, triton.cdiv(m, blocks["block_m"]))
    _product_kernel[grid](
        base, base.stride(0), bias, rows.parts if rows.parts is not None else out, ml, acc, heads, head_dim,
        gamma, beta, eps, weight, out, write_input if write_input is not None else out, m, n, k, per_split,
        COMBINE=combine, HAS_BASE=rows.base is not None, HAS_BIAS=rows.bias is not None, PARTS=parts,
        GELU=rows.gelu, NORM=norm is not None, WRITE_INPUT=write_input is not None,
        IEEE=weight.dtype == torch.float32, BLOCK_M=blocks["block_m"], BLOCK_N=blocks["block_n"],
        BLOCK_K=blocks["block_k"], NORM_BLOCK=min(blocks["norm_block"], triton.next_power_of_2(k)),
        num_warps=blocks["num_warps"], num_stages=1 if combine else blocks["num_stages"])  # combine: shared memory
    return out


@triton.jit
def _attend_kernel(parts_ptr, bias_ptr, M, WIDTH, cache_ptr, stride_cb, stride_ckv, stride_ch, stride_cs,
                   ml_ptr, acc_ptr, position_ptr, head_dim, scale, cross_keys,
                   PARTS: tl.constexpr, PATTERN: tl.constexpr, BLOCK_CTX: tl.constexpr, PRIME_LEN: tl.constexpr,
                   SPLITS: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    split = tl.program_id(2)
    heads = tl.num_programs(1)
    position = tl.load(position_ptr)
    d = tl.arange(0, BLOCK_D)
    d_ok = d < head_dim
    # query, key and value of this position: bias + partials of the projection (B, WIDTH), WIDTH = (1 or 3) x heads x d
    q = tl.load(bias_ptr + h * head_dim + d, mask=d_ok, other=0.0).to(tl.float32)
    if PATTERN != 5:
        k_new = tl.load(bias_ptr + (heads + h) * head_dim + d, mask=d_ok, other=0.0).to(tl.float32)
        v_new = tl.load(bias_ptr + (2 * heads + h) * head_dim + d, mask=d_ok, other=0.0).to(tl.float32)
    else:
        k_new = tl.zeros([BLOCK_D], dtype=tl.float32)
        v_new = tl.zeros([BLOCK_D], dtype=tl.float32)
    for s in tl.static_range(PARTS):
        row = parts_ptr + (s * M + b) * WIDTH
        q += tl.load(row + h * head_dim + d, mask=d_ok, other=0.0)
        if PATTERN != 5:
            k_new += tl.load(row + (heads + h) * head_dim + d, mask=d_ok, other=0.0)
            v_new += tl.load(row + (2 * heads + h) * head_dim + d, mask=d_ok, other=0.0)
    q = q * scale
    k_new = k_new.to(cache_ptr.dtype.element_ty)
    v_new = v_new.to(cache_ptr.dtype.element_ty)
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
        if split == 0:
            tl.store(kv + write * stride_cs + d, k_new, mask=d_ok)
            tl.store(kv + stride_ckv + write * stride_cs + d, v_new, mask=d_ok)
    per_split = (n + SPLITS - 1) // SPLITS
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
        if PATTERN != 5:  # the slot written above, from registers (no ordering between that store and a load)
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
    cell = (b * heads + h) * SPLITS + split
    tl.store(ml_ptr + cell * 2, m_i)
    tl.store(ml_ptr + cell * 2 + 1, l_i)
    tl.store(acc_ptr + cell * head_dim + d, acc, mask=d_ok)


def attend(pattern: int, projected: torch.Tensor, bias: torch.Tensor, joint: torch.Tensor, position: torch.Tensor,
           heads: int, head_dim: int, block_ctx: int, prime_len: int) -> Rows:
    """Single-query attention at the position in `position` (a 1-element long tensor on the device).
    projected: partials (S, B, width) of the query [, key, value] product, bias its bias; joint: the layer's
    cache (B, 2, heads, slots, head_dim), where this position's key and value are written. Returns the
    context as `Rows` for the output product to combine."""
    parts, batch, width = projected.shape
    splits = ATTEND_BLOCKS["key_splits"]
    ml = torch.empty(batch, heads, splits, 2, dtype=torch.float32, device=joint.device)
    acc = torch.empty(batch, heads, splits, head_dim, dtype=torch.float32, device=joint.device)
    _attend_kernel[(batch, heads, splits)](
        projected, bias, batch, width, joint, joint.stride(0), joint.stride(1), joint.stride(2), joint.stride(3),
        ml, acc, position, head_dim, head_dim ** -0.5, joint.shape[3],
        PARTS=parts, PATTERN=pattern, BLOCK_CTX=max(int(block_ctx or 1), 1), PRIME_LEN=max(int(prime_len), 1),
        SPLITS=splits, BLOCK_D=triton.next_power_of_2(head_dim), BLOCK_R=ATTEND_BLOCKS["block_keys"],
        num_warps=ATTEND_BLOCKS["num_warps"])
    return Rows(attention=(ml, acc, heads, head_dim))
