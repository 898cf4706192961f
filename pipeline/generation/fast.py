"""Our sampling loop for one window of a Jukebox prior: the weights of transformers' `JukeboxPrior`, our own decode.

transformers' `JukeboxPrior.sample` pays for every token: it grows each layer's key/value cache with
`torch.cat`, re-slices it, builds the embedding and a progress bar in Python, and filters logits with
boolean indexing (a host sync). Here a window costs, once: the conditioning (metadata, lyrics, upper-level
tokens, through the prior's own modules), one masked forward over the prime (lyrics and earlier tokens),
and the noise for the next `NOISE_CHUNK` steps of each clip. Each step is then a fixed sequence of small
tensor operations over pre-allocated caches:

- a key/value cache per attention pattern, sized by what the pattern reads: `block_attn` a ring of one
  block, `prev_block_attn` a ring of two, `transpose_block_attn` and `dense_attn` the whole context,
  `prime_attn` the lyric prefix, `cross_attention` the lyric encoder's states (computed once per window);
- sampling by the Gumbel-max trick over the filtered logits (temperature, top-k, top-p as transformers'
  `filter_logits` defines them) with noise drawn ahead from each clip's own generator, so a clip's tokens
  never depend on the batch it is sampled in.

Two forms of the step share the layer arithmetic: on the CPU the position is a Python int and caches are
read through slices (fewest operations); on CUDA the position is a device tensor, caches are read through
index tensors and masks, and the whole step (position increment included) is captured once in a CUDA
graph and replayed. Weights stay in the model's dtype (bfloat16 on GPU); logits are computed in float32.

Semantics are those of the priors' causal attention: a prime is read causally, however it is chunked, as
openai/jukebox does (its `ConditionalAutoregressive2D` defaults to `mask=True` and checks that sampled logits
equal the training forward's). transformers' `JukeboxPriorConfig` defaults to `mask=False`, with which its
prefill chunks see their own later positions; the presets set `mask=True`.

`tests/generation/test_fast_sampler.py` proves the two halves of equivalence: teacher-forced logits equal
transformers' training forward (`reference_window_logits`) within 1e-4 across windows, and the filtered
distribution equals `filter_logits`' within 1e-6, its draws passing a chi-square test.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

NOISE_CHUNK = 256  # sampling steps of noise drawn at a time per clip (fixed: a clip's draws never depend on batching)
PATTERNS = ("block_attn", "transpose_block_attn", "prev_block_attn", "dense_attn", "prime_attn", "cross_attention")


def filtered_logits(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 0.0) -> torch.Tensor:
    """Logits / temperature with top-k and nucleus filtering exactly as transformers' `filter_logits` does
    (ties at the k-th value kept; the first token over `top_p` kept), written with `masked_fill` so that it
    never syncs with the host and can run inside a CUDA graph. Removed entries are -inf."""
    logits = logits / temperature
    top_k = min(top_k, logits.size(-1))
    if top_k > 0:
        kth = torch.topk(logits, top_k, dim=-1)[0][..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p > 0.0:
        sorted_logits, sorted_indices = torch.sort(logits, descending=True, dim=-1)
        cumulative = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
        remove_sorted = cumulative > top_p
        remove_sorted = torch.cat([torch.zeros_like(remove_sorted[..., :1]), remove_sorted[..., :-1]], dim=-1)
        remove = torch.zeros_like(remove_sorted).scatter(-1, sorted_indices, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


def draw(logits: torch.Tensor, gumbel: torch.Tensor, temperature: float, top_k: int = 0,
         top_p: float = 0.0) -> torch.Tensor:
    """One token per row: argmax of the filtered logits plus Gumbel noise, a draw from their softmax."""
    return torch.argmax(filtered_logits(logits, temperature, top_k, top_p) + gumbel, dim=-1)


def draw_scaled(logits: torch.Tensor, scaled_gumbel: torch.Tensor) -> torch.Tensor:
    """`draw` without filtering, with the noise already multiplied by the temperature (T g): argmax(l + T g)
    = argmax(l / T + g). Adds in place into `logits` (the CPU step's fast path: one operation fewer)."""
    return torch.argmax(logits.add_(scaled_gumbel), dim=-1)


def gumbel_(noise: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) draws turned into standard Gumbel noise, in place: argmax(logits + g) ~ softmax(logits)."""
    return noise.clamp_(min=torch.finfo(noise.dtype).tiny).log_().neg_().log_().neg_()


class ClipNoise:
    """Gumbel noise for each clip of a batch, from the clip's own generator, `NOISE_CHUNK` steps at a time.

    seeds: one int per clip; the same seed gives the same draws in any batch, at any batch position."""

    def __init__(self, seeds: list[int], vocab: int, device, buffer: torch.Tensor | None = None):
        self.generators = []
        for seed in seeds:
            generator = torch.Generator(device=device)
            generator.manual_seed(int(seed))
            self.generators.append(generator)
        self.buffer = torch.empty(NOISE_CHUNK, len(seeds), vocab, device=device) if buffer is None else buffer

    def refill(self) -> torch.Tensor:
        for i, generator in enumerate(self.generators):
            self.buffer[:, i].copy_(torch.rand(NOISE_CHUNK, self.buffer.shape[-1], generator=generator,
                                               device=self.buffer.device))
        return gumbel_(self.buffer)


class _Layer:
    """One transformer block's weights, read from transformers' `JukeboxBlock` (same tensors, no copy)."""

    def __init__(self, block):
        attn, mlp = block.attn, block.mlp
        self.func = block.attn_func
        self.heads, self.head_dim = attn.n_heads, attn.head_dim
        self.res_scale = block.res_scale
        self.norm0 = (block.layer_norm_0.normalized_shape, block.layer_norm_0.weight, block.layer_norm_0.bias,
                      block.layer_norm_0.eps)
        self.norm1 = (block.layer_norm_1.normalized_shape, block.layer_norm_1.weight, block.layer_norm_1.bias,
                      block.layer_norm_1.eps)
        self.attn_w, self.attn_b = attn.c_attn.weight, attn.c_attn.bias  # (in, out): x @ w + b
        self.proj_w, self.proj_b = attn.c_proj.weight, attn.c_proj.bias
        self.enc_kv = attn.c_enc_kv if self.func == "cross_attention" else None
        self.fc_w, self.fc_b = mlp.c_fc.weight, mlp.c_fc.bias
        self.out_w, self.out_b = mlp.c_proj.weight, mlp.c_proj.bias
        act = type(mlp.act).__name__
        self.quick_gelu = act == "QuickGELUActivation"
        self.act = mlp.act
        self.fusable = self.quick_gelu and self.res_scale == 1.0  # what the fused kernels (kernels.py) compute

    @staticmethod
    def linear(x, weight, bias):
        """JukeboxConv1D: x (..., in) @ weight (in, out) + bias."""
        if x.dim() == 2:
            return torch.addmm(bias, x, weight)
        return torch.addmm(bias, x.reshape(-1, x.shape[-1]), weight).view(*x.shape[:-1], weight.shape[1])

    def activation(self, x):
        return x * torch.sigmoid(1.702 * x) if self.quick_gelu else self.act(x)

    def project(self, x):
        """Layer norm and the query/key/value projection of (B, W) rows: q (B, heads, 1, d) and qkv
        (B, 3, heads, d), or (q, None) for cross-attention (its keys and values come from the lyric encoder)."""
        batch = x.shape[0]
        h = torch.layer_norm(x, *self.norm0)
        if self.func == "cross_attention":
            return torch.addmm(self.attn_b, h, self.attn_w).view(batch, self.heads, 1, self.head_dim), None
        qkv = torch.addmm(self.attn_b, h, self.attn_w).view(batch, 3, self.heads, self.head_dim)
        return qkv[:, 0].unsqueeze(2), qkv

    def finish_2d(self, residual, context):
        """`finish` for (B, W) rows, written out: the CPU step's hot path."""
        if self.res_scale != 1.0 or not self.quick_gelu:
            return self.finish(residual, context)
        hidden = torch.addmm(residual, context, self.proj_w).add_(self.proj_b)
        # quick_gelu(m) = m * sigmoid(1.702 m) = silu(1.702 m) / 1.702: the two scales ride on the matmuls
        mlp = torch.addmm(self.fc_b, torch.layer_norm(hidden, *self.norm1), self.fc_w, beta=1.702, alpha=1.702)
        return torch.addmm(hidden, F.silu(mlp), self.out_w, alpha=1 / 1.702).add_(self.out_b)

    def finish(self, residual, context):
        """c_proj of the attention context, then the block's residuals and MLP, as `JukeboxBlock.forward`."""
        attended = self.linear(context, self.proj_w, self.proj_b)
        mlp_in = F.layer_norm(residual + attended, *self.norm1)
        mlp = self.linear(self.activation(self.linear(mlp_in, self.fc_w, self.fc_b)), self.out_w, self.out_b)
        if self.res_scale == 1.0:
            return residual + attended + mlp
        return residual + self.res_scale * (attended + mlp)


class _StepState:
    """What one tensor-position step reads and writes, in buffers that outlive a window: a captured CUDA graph
    replays on the same addresses, so every window of the same batch size and sampling settings reuses it."""

    def __init__(self, fast: "FastPrior", batch: int, cond_positions: int, encoder_states):
        weight = fast.autoregressive.embed_tokens.weight
        device, dtype = weight.device, weight.dtype
        self.out = torch.zeros(batch, fast.n_ctx, dtype=torch.long, device=device)
        self.base = torch.zeros(batch, fast.n_ctx, fast.width, dtype=dtype, device=device)
        self.cond = torch.zeros(batch, cond_positions, fast.width, dtype=dtype, device=device)
        self.start = torch.zeros(batch, fast.width, dtype=dtype, device=device)
        self.caches = fast.new_caches(batch, encoder_states)
        self.noise = torch.empty(NOISE_CHUNK, batch, fast.vocab, device=device)
        self.position = torch.zeros(1, dtype=torch.long, device=device)
        self.noise_origin = torch.zeros(1, dtype=torch.long, device=device)
        self.graph = None

    def load(self, fast: "FastPrior", sequence, base, cond, start, encoder_states) -> None:
        self.out[:, : sequence.shape[1]] = sequence
        self.base[:, : base.shape[1]] = base
        self.cond[:, : cond.shape[1]] = cond
        self.start.copy_(start)
        fast.load_cross(self.caches, encoder_states)


class FastPrior:
    """Samples windows of one `JukeboxPrior` (transformers' module, eval mode, any dtype)."""

    def __init__(self, prior):
        self.prior = prior
        autoregressive = prior.prior
        self.autoregressive = autoregressive
        self.transformer = autoregressive.transformer
        self.n_ctx = autoregressive.n_ctx  # lyrics + music for a merged (encoder-decoder) prior
        self.width = autoregressive.width
        self.merged = bool(prior.is_encoder_decoder)
        self.n_lyrics = prior.nb_relevant_lyric_tokens if self.merged else 0
        self.shift = int(prior.embed_dim_shift[1]) if self.merged else 0
        self.blocks = self.transformer.blocks
        self.block_ctx = self.n_ctx // self.blocks if self.blocks else None
        self.layers = []
        for block in self.transformer._attn_mods:
            if block.attn_func not in PATTERNS:
                raise ValueError(f"attention pattern {block.attn_func!r} is not supported by the fast sampler")
            self.layers.append(_Layer(block))
        prime = [block.attn for block in self.transformer._attn_mods if block.attn_func == "prime_attn"]
        self.prime_len = prime[0]._encoder_len if prime else 0
        self.fusable = all(layer.fusable for layer in self.layers)  # every layer one the fused kernels compute
        self.vocab = autoregressive.embed_dim
        self._states: dict = {}  # (step, batch, conditioning shape, sampling settings) -> _StepState (+ graph)
        self.compile_step = False  # torch.compile the tensor-position step (CUDA benchmark option)
        # the tensor-position step's layers: "triton" (fused kernels, kernels.py), "torch" (step_static) or
        # "auto" (triton on CUDA where Triton is installed and every layer is one the kernels compute)
        self.kernels = "auto"
        self._compiled = None
        self._out_source = None
        self.out_weight_t = None
        self._refresh()

    def _refresh(self) -> None:
        """The float32 output projection (logits in float32 whatever the weights' dtype), re-read when the
        model moved or changed dtype (the layers hold the model's own parameters and follow it)."""
        weight = self.autoregressive.fc_proj_out.weight
        source = (weight.data_ptr(), weight.device, weight.dtype)
        if source != self._out_source:
            self.out_weight_t = weight.detach().float().t().contiguous()
            self._out_source = source
            self._states.clear()  # buffers of the old device or dtype

    def bytes_per_clip(self) -> int:
        """Device memory one clip of a batch holds while this prior samples: its caches, conditioning, output
        and noise buffers, and the prefill's activations (a bound for choosing a batch size)."""
        element = self.autoregressive.embed_tokens.weight.element_size()
        caches = sum(2 * layer.heads * self._cache_len(layer.func, self.n_ctx) * layer.head_dim
                     for layer in self.layers if layer.func != "cross_attention")
        activations = 8 * self.n_ctx * self.width  # base, cond, prefill's hidden states and its q/k/v
        return (caches + activations) * element + NOISE_CHUNK * self.vocab * 4 + self.n_ctx * 8

    # ---- conditioning, once per window -------------------------------------------------------------------

    def window_inputs(self, prime, music_tokens_conds, metadata, length: int | None = None):
        """(sequence prime (B, p) in the prior's vocabulary, base (B, length, W), cond (B, length|1, W),
        start (B, W), encoder states or None) for the first `length` positions of a window (default: all):
        the prior's own conditioning modules."""
        prior, ar = self.prior, self.autoregressive
        audio_cond, metadata_cond, lyric_tokens = prior.get_cond(music_tokens_conds, metadata)
        batch = metadata.shape[0] if metadata is not None else prime.shape[0]
        dtype = ar.embed_tokens.weight.dtype
        device = ar.embed_tokens.weight.device
        encoder_states = None
        if self.merged:
            parts = [lyric_tokens] + ([prime + self.shift] if prime is not None and prime.shape[1] else [])
            sequence = torch.cat(parts, dim=1).long()
            zeros = torch.zeros(batch, self.n_lyrics, self.width, dtype=audio_cond.dtype, device=device)
            cond = torch.cat([zeros, audio_cond], dim=1)
        else:
            encoder_states = prior.get_encoder_states(lyric_tokens, sample=True)
            sequence = prime if prime is not None else torch.zeros(batch, 0, dtype=torch.long, device=device)
            cond = audio_cond
        if not ar.audio_conditioning or cond is None:
            cond = torch.zeros(batch, 1, self.width, dtype=dtype, device=device)
        length = self.n_ctx if length is None else length
        cond = cond.to(dtype)
        if cond.shape[1] != 1:
            cond = cond[:, :length]
        base = ar.pos_emb()[:length].unsqueeze(0) + cond  # (B, length, W), or broadcast over positions
        if ar.metadata_conditioning:
            start = metadata_cond.view(batch, self.width).to(dtype)
        else:
            start = ar.start_token.expand(batch, self.width).to(dtype)
        return sequence, base.expand(batch, length, self.width), cond, start, encoder_states

    # ---- caches ------------------------------------------------------------------------------------------

    def _cache_len(self, func: str, length: int) -> int:
        """Slots a pattern needs for positions [0, length)."""
        bc = self.block_ctx
        return {"block_attn": bc, "prev_block_attn": 2 * (bc or 0),
                "transpose_block_attn": -(-length // bc) * bc if bc else length, "dense_attn": length,
                "prime_attn": self.prime_len + 1}[func]  # prime: one spare slot that later positions write to

    def new_caches(self, batch: int, encoder_states=None, length: int | None = None, fill=torch.zeros) -> list:
        """Key/value caches for positions [0, length) (default: the whole context). fill=torch.empty is for the
        sliced step, which reads only what was written; masked steps need finite (zero) memory."""
        length = self.n_ctx if length is None else length
        caches = []
        for layer in self.layers:
            # keys and values in one buffer (B, 2, heads, slots, head_dim): a step writes both with one copy;
            # cross-attention's slots are the lyric encoder's states, filled by load_cross
            slots = (encoder_states.shape[1] if layer.func == "cross_attention"
                     else self._cache_len(layer.func, length))
            joint = fill((batch, 2, layer.heads, slots, layer.head_dim), dtype=layer.attn_w.dtype,
                         device=layer.attn_w.device)
            caches.append((joint[:, 0], joint[:, 1], joint))
        self.load_cross(caches, encoder_states)
        return caches

    def load_cross(self, caches: list, encoder_states) -> None:
        """Cross-attention keys and values of a window's lyric encoder states, into existing caches."""
        for layer, (key_cache, value_cache, joint) in zip(self.layers, caches):
            if layer.func == "cross_attention":
                key, value = layer.enc_kv(encoder_states.type_as(layer.enc_kv.weight)).chunk(2, dim=2)
                key_cache.copy_(self._heads(key, layer))
                value_cache.copy_(self._heads(value, layer))

    @staticmethod
    def _heads(states: torch.Tensor, layer: _Layer) -> torch.Tensor:
        """(B, T, heads * head_dim) -> (B, heads, T, head_dim)."""
        batch, length, _ = states.shape
        return states.view(batch, length, layer.heads, layer.head_dim).transpose(1, 2)

    def _slot(self, func: str, position: int) -> int:
        if func == "block_attn":
            return position % self.block_ctx
        if func == "prev_block_attn":
            return position % (2 * self.block_ctx)
        if func == "prime_attn":
            return min(position, self.prime_len)
        return position

    # ---- the prime: one causal forward over every known position -----------------------------------------

    def _allowed(self, func: str, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """(Q, K) bool: which key positions a query position reads, as the sampling caches do."""
        i, j = queries[:, None], keys[None, :]
        bc = self.block_ctx
        if func == "dense_attn":
            return j <= i
        if func == "block_attn":
            return (j <= i) & (j // bc == i // bc)
        if func == "transpose_block_attn":
            return (j <= i) & (j % bc == i % bc)
        if func == "prev_block_attn":
            return j // bc == i // bc - 1
        if func == "prime_attn":
            return (j <= i) & (j < self.prime_len)
        raise ValueError(func)

    def prefill(self, sequence: torch.Tensor, base: torch.Tensor, cond: torch.Tensor, start: torch.Tensor,
                caches: list, chunk: int = 1024) -> torch.Tensor:
        """Run positions [0, P) teacher-forced (inputs: start, sequence[:, :P-1]), filling the caches;
        returns their logits (B, P, vocab) in float32."""
        batch, length = sequence.shape
        ar = self.autoregressive
        x = torch.cat([start.unsqueeze(1), ar.embed_tokens(sequence[:, :-1])], dim=1) + base[:, :length]
        device = x.device
        positions = torch.arange(length, device=device)
        for layer, (key_cache, value_cache, joint) in zip(self.layers, caches):
            h = F.layer_norm(x, *layer.norm0)
            if layer.func == "cross_attention":
                q = self._heads(layer.linear(h, layer.attn_w, layer.attn_b), layer)
                context = F.scaled_dot_product_attention(q, key_cache, value_cache)
            else:
                q, k, v = (self._heads(t, layer) for t in layer.linear(h, layer.attn_w, layer.attn_b).chunk(3, dim=2))
                self._write_prefix(layer.func, key_cache, value_cache, k, v)
                context = torch.empty_like(q)
                for begin in range(0, length, chunk):  # bounded memory: queries in chunks, keys up to the chunk's end
                    end = min(begin + chunk, length)
                    mask = self._allowed(layer.func, positions[begin:end], positions[:end])
                    rows = mask.any(dim=1)  # prev_block_attn's first block reads nothing: output 0 (as zero keys give)
                    out = F.scaled_dot_product_attention(q[:, :, begin:end], k[:, :, :end], v[:, :, :end],
                                                         attn_mask=mask | ~rows[:, None])
                    context[:, :, begin:end] = out * rows[:, None].to(out.dtype)
            x = layer.finish(x, context.transpose(1, 2).reshape(batch, length, -1))
        return self._logits(x, self._cond_rows(cond, 0, length))

    def _write_prefix(self, func: str, key_cache, value_cache, k, v) -> None:
        length = k.shape[2]
        if func == "prime_attn":
            n = min(length, self.prime_len)
            key_cache[:, :, :n] = k[:, :, :n]
            value_cache[:, :, :n] = v[:, :, :n]
            return
        keep = key_cache.shape[2] if func in ("block_attn", "prev_block_attn") else length
        first = max(0, length - keep)
        slots = torch.tensor([self._slot(func, p) for p in range(first, length)], device=k.device)
        key_cache.index_copy_(2, slots, k[:, :, first:])
        value_cache.index_copy_(2, slots, v[:, :, first:])

    # ---- one step on the CPU: Python positions, sliced caches --------------------------------------------

    def step_eager(self, x: torch.Tensor, position: int, caches: list) -> torch.Tensor:
        """x: (B, W) input at `position` -> (B, W) last hidden state; writes this position's keys/values.
        Caches are read through slices: no masks, fewest operations (the CPU's cost is per operation)."""
        batch = x.shape[0]
        bc = self.block_ctx
        for layer, (key_cache, value_cache, joint) in zip(self.layers, caches):
            func = layer.func
            heads, head_dim = layer.heads, layer.head_dim
            q, qkv = layer.project(x)
            if qkv is None:  # cross-attention: keys and values of the lyric encoder's states
                keys, values = key_cache, value_cache
            else:
                if func != "prime_attn" or position < self.prime_len:
                    joint.select(3, self._slot(func, position)).copy_(qkv[:, 1:])
                if func == "block_attn":
                    n = position % bc + 1
                    keys, values = key_cache.narrow(2, 0, n), value_cache.narrow(2, 0, n)
                elif func == "transpose_block_attn":
                    row, column = divmod(position, bc)
                    shape = (batch, heads, key_cache.shape[2] // bc, bc, head_dim)
                    keys = key_cache.view(shape).select(3, column).narrow(2, 0, row + 1)
                    values = value_cache.view(shape).select(3, column).narrow(2, 0, row + 1)
                elif func == "prev_block_attn":
                    previous = position // bc - 1
                    if previous < 0:
                        keys = None
                    else:
                        first = (previous % 2) * bc
                        keys, values = key_cache.narrow(2, first, bc), value_cache.narrow(2, first, bc)
                else:  # dense_attn, prime_attn
                    n = position + 1 if func == "dense_attn" else min(position + 1, self.prime_len)
                    keys, values = key_cache.narrow(2, 0, n), value_cache.narrow(2, 0, n)
            if keys is None:  # transformers attends to zero keys and values: the context is 0
                context = x.new_zeros(batch, heads * head_dim)
            else:
                context = F.scaled_dot_product_attention(q, keys, values).view(batch, heads * head_dim)
            x = layer.finish_2d(x, context)
        return x

    # ---- one step on CUDA: tensor positions, masks, graph-capturable -------------------------------------

    def step_static(self, x: torch.Tensor, position: torch.Tensor, caches: list) -> torch.Tensor:
        """As `step_eager`, with `position` a 1-element long tensor: no host sync, fixed shapes, few kernels
        (one key/value write and at most one gather per layer; masks and gather indices built once per step
        and shared by every layer of a pattern)."""
        batch = x.shape[0]
        bc = self.block_ctx
        device = x.device
        dtype = x.dtype
        reads = {}  # per pattern: (slot, gather index or None, additive mask or None, 0/1 context scale or None)

        def additive(allowed):
            mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, float("-inf"))
            return mask.view(1, 1, 1, -1)

        def plan(func):
            if func in reads:
                return reads[func]
            if func == "block_attn":
                slot = position % bc
                entry = (slot, None, additive(torch.arange(bc, device=device) <= slot), None)
            elif func == "prev_block_attn":
                previous = position // bc - 1
                index = (previous.clamp(min=0) % 2) * bc + torch.arange(bc, device=device)
                entry = (position % (2 * bc), index, None, (previous >= 0).to(dtype))
            elif func == "transpose_block_attn":
                allowed = torch.arange(self.blocks, device=device) <= position // bc
                entry = (position, position % bc, additive(allowed), None)
            elif func == "dense_attn":
                entry = (position, None, additive(torch.arange(self.n_ctx, device=device) <= position), None)
            else:  # prime_attn: positions past the prefix write to the spare slot
                entry = (position.clamp(max=self.prime_len), None,
                         additive(torch.arange(self.prime_len, device=device) <= position), None)
            reads[func] = entry
            return entry

        for layer, (key_cache, value_cache, joint) in zip(self.layers, caches):
            func = layer.func
            heads, head_dim = layer.heads, layer.head_dim
            mask = scale = None
            q, qkv = layer.project(x)
            if qkv is None:
                keys, values = key_cache, value_cache
            else:
                slot, index, mask, scale = plan(func)
                joint.index_copy_(3, slot, qkv[:, 1:].unsqueeze(3))
                if func == "transpose_block_attn":
                    rows = joint.shape[3] // bc
                    gathered = joint.view(batch, 2, heads, rows, bc, head_dim).index_select(4, index).squeeze(4)
                    keys, values = gathered[:, 0], gathered[:, 1]
                elif func == "prev_block_attn":
                    gathered = joint.index_select(3, index)
                    keys, values = gathered[:, 0], gathered[:, 1]
                elif func == "prime_attn":
                    keys, values = key_cache.narrow(2, 0, self.prime_len), value_cache.narrow(2, 0, self.prime_len)
                else:
                    keys, values = key_cache, value_cache
            context = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
            if scale is not None:  # prev_block_attn in the first block: zero keys and values give 0
                context = context * scale
            x = layer.finish_2d(x, context.view(batch, heads * head_dim))  # (B, heads, 1, d) is head-major
        return x

    def step_fused(self, x: torch.Tensor, position: torch.Tensor, caches: list) -> torch.Tensor:
        """As `step_static`, in five fused Triton kernels per layer (`kernels.py`): layer norm + query/key/value
        product; key/value write + attention over the pattern's slots; output product + residual; layer norm +
        MLP product + quick GELU; MLP product + residual."""
        from pipeline.generation import kernels

        counters = None  # attention split over keys: every layer's finished-split counts, zeroed once per step
        if kernels.ATTEND_BLOCKS.get("key_splits", 1) > 1:
            counters = torch.zeros(len(self.layers), x.shape[0] * max(layer.heads for layer in self.layers),
                                   dtype=torch.int32, device=x.device)
        for index, (layer, (_, _, joint)) in enumerate(zip(self.layers, caches)):
            width = layer.heads * layer.head_dim
            projected = kernels.norm_matmul(x, layer.attn_w, layer.attn_b, norm=layer.norm0[1:])
            cross = layer.func == "cross_attention"  # its keys and values are the lyric encoder's, in the cache
            q, new = (projected, None) if cross else (projected[:, :width], projected[:, width:])
            context = kernels.attend(kernels.PATTERN_IDS[layer.func], q, new, joint, position, layer.heads,
                                     layer.head_dim, self.block_ctx, self.prime_len,
                                     None if counters is None else counters[index])
            hidden = kernels.norm_matmul(context, layer.proj_w, layer.proj_b, residual=x)
            mlp = kernels.norm_matmul(hidden, layer.fc_w, layer.fc_b, norm=layer.norm1[1:],
                                      activation=kernels.QUICK_GELU)
            x = kernels.norm_matmul(mlp, layer.out_w, layer.out_b, residual=hidden)
        return x

    def tensor_step(self):
        """The tensor-position step this prior's `kernels` setting selects: `step_fused` or `step_static`."""
        from pipeline.generation.sampler import KERNELS

        if self.kernels not in KERNELS:
            raise ValueError(f"kernels {self.kernels!r}: expected one of {KERNELS}")
        if self.kernels == "triton":
            if not self.fusable:
                raise ValueError("the fused kernels compute quick-GELU layers without residual scaling only")
            return self.step_fused
        if self.kernels == "auto" and self.fusable and self.out_weight_t.device.type == "cuda" and _triton_available():
            return self.step_fused
        return self.step_static

    # ---- a window -------------------------------------------------------------------------------------------

    def sample_window(self, n_samples: int, prime, music_tokens_conds, metadata, seeds: list[int], *,
                      temperature: float, top_k: int = 0, top_p: float = 0.0, sample_tokens: int | None = None,
                      step: str | None = None):
        """As `JukeboxPrior.sample`: the window's music tokens (B, prime + sampled), sampled after `prime`
        ((B, p) music tokens or None) up to `sample_tokens` music tokens (default: the whole context).
        step: "eager" (Python positions), "static" (tensor positions, uncaptured) or "graph" (captured in
        a CUDA graph); default graph on CUDA, eager elsewhere."""
        self._refresh()
        if step is None:
            step = "graph" if self.out_weight_t.device.type == "cuda" else "eager"
        if step not in ("eager", "static", "graph"):
            raise ValueError(f"step {step!r}: expected eager, static or graph")
        with torch.inference_mode():
            music = self._sample_window(n_samples, prime, music_tokens_conds, metadata, seeds, temperature, top_k,
                                        top_p, sample_tokens, step)
        return music.clone()  # a normal tensor outside inference mode

    def _sample_window(self, n_samples, prime, music_tokens_conds, metadata, seeds, temperature, top_k, top_p,
                       sample_tokens, step):
        total = self.n_ctx if sample_tokens is None else sample_tokens + self.n_lyrics
        sequence, base, cond, start, encoder_states = self.window_inputs(prime, music_tokens_conds, metadata, total)
        known = sequence.shape[1]
        if step == "eager":
            out = torch.zeros(n_samples, total, dtype=torch.long, device=base.device)
            out[:, :known] = sequence
            caches = self.new_caches(n_samples, encoder_states, total, fill=torch.empty)
        else:
            cond_positions = 1 if cond.shape[1] == 1 else self.n_ctx
            key = (step, self.compile_step, self.tensor_step().__name__, n_samples, cond_positions, temperature,
                   top_k, top_p)
            state = self._states.get(key)
            if state is None:  # kept: the next window of this shape reuses buffers (and graph) with stale caches
                state = self._states[key] = _StepState(self, n_samples, cond_positions, encoder_states)
            state.load(self, sequence, base, cond, start, encoder_states)
            out, caches, base, cond, start = state.out, state.caches, state.base, state.cond, state.start
        if known < total:
            if known:
                self.prefill(sequence, base, cond, start, caches)
            if step == "eager":
                noise = ClipNoise(seeds, self.vocab, base.device)
                self._run_eager(out, known, total, base, cond, start, caches, noise, temperature, top_k, top_p)
            else:
                noise = ClipNoise(seeds, self.vocab, base.device, buffer=state.noise)
                self._run_static(state, known, total, noise, temperature, top_k, top_p, capture=step == "graph")
        music = out[:, self.n_lyrics: total]
        if self.merged:  # a lyric id sampled at a music position becomes code 0, as transformers does
            music = (music - self.shift).clamp(min=0)
        return music

    def teacher_forced(self, sequence, music_tokens_conds, metadata, known: int, static: bool = False):
        """Logits (B, T - known, vocab) of positions [known, T) of `sequence` ((B, T) music tokens, T <= the
        music context) given every earlier token: a prime of `known` tokens, then one decode step per position.
        The proof harness of the equivalence tests; sampling uses the same steps."""
        self._refresh()
        with torch.inference_mode():
            inputs, base, cond, start, encoder_states = self.window_inputs(sequence, music_tokens_conds, metadata)
            known += self.n_lyrics
            caches = self.new_caches(inputs.shape[0], encoder_states)
            if known:
                self.prefill(inputs[:, :known], base, cond, start, caches)
            logits = []
            tensor_step = self.tensor_step()
            for position in range(known, inputs.shape[1]):
                x = start.unsqueeze(1) if position == 0 else self.autoregressive.embed_tokens(
                    inputs[:, position - 1: position])
                x = x + base[:, position: position + 1]
                if static:
                    x = tensor_step(x[:, 0], torch.tensor([position], device=x.device), caches).unsqueeze(1)
                else:
                    x = self.step_eager(x[:, 0], position, caches).unsqueeze(1)
                logits.append(self._logits(x, self._cond_rows(cond, position, position + 1)))
            result = torch.cat(logits, dim=1)
        return result.clone()  # a normal tensor outside inference mode

    @staticmethod
    def _cond_rows(cond, start: int, stop: int):
        """Positions [start, stop) of per-position conditioning, or the one row that every position shares."""
        return cond[:, start:stop] if cond.shape[1] != 1 else cond

    def _logits(self, x, cond_at):
        """(B, ..., W) last hidden states -> float32 logits."""
        if self.autoregressive.add_cond_after_transformer:
            x = x + cond_at
        return torch.matmul(x.float(), self.out_weight_t)

    def _run_eager(self, out, known, total, base, cond, start, caches, noise, temperature, top_k, top_p):
        embed = self.autoregressive.embed_tokens.weight
        base = base.transpose(0, 1)  # (positions, B, W): a position's rows are one select away
        cond_by_position = cond.transpose(0, 1) if cond.shape[1] != 1 else None
        cond_all = cond[:, 0]
        unfiltered = top_k == 0 and top_p == 0.0
        gumbel = None
        for position in range(known, total):
            step = position - known
            if step % NOISE_CHUNK == 0:
                gumbel = noise.refill()
                if unfiltered:  # argmax(l / T + g) = argmax(l + T g): one operation fewer per step
                    gumbel.mul_(temperature)
            if position == 0:
                x = start + base[0]
            else:
                x = F.embedding(out.select(1, position - 1), embed).add_(base[position])
            x = self.step_eager(x, position, caches)
            logits = self._logits(x, cond_all if cond_by_position is None else cond_by_position[position])
            if unfiltered:
                token = draw_scaled(logits, gumbel[step % NOISE_CHUNK])
            else:
                token = draw(logits, gumbel[step % NOISE_CHUNK], temperature, top_k, top_p)
            out.select(1, position).copy_(token)

    def _run_static(self, state: _StepState, known, total, noise, temperature, top_k, top_p, capture: bool = True):
        """The step with tensor positions (input embedding, layers, draw, position + 1) over `state`'s buffers,
        captured once per state in a CUDA graph and replayed (capture=False: called as is, as tests do on the CPU)."""
        out, base, cond, start, caches = state.out, state.base, state.cond, state.start, state.caches
        position, noise_origin, gumbel = state.position, state.noise_origin, state.noise
        embed = self.autoregressive.embed_tokens.weight
        per_position_cond = cond.shape[1] != 1
        step_fn = self.tensor_step()
        if self.compile_step:  # fuse the step's small kernels (inductor) before the graph captures them
            step_fn = self._compiled = self._compiled or torch.compile(self.step_static, dynamic=False)

        def step():
            previous = out.index_select(1, (position - 1).clamp(min=0)).squeeze(1)
            x = torch.where(position == 0, start, F.embedding(previous, embed)) + base.index_select(1, position)[:, 0]
            x = step_fn(x, position, caches)
            cond_at = (cond.index_select(1, position) if per_position_cond else cond)[:, 0]
            token = draw(self._logits(x, cond_at), gumbel.index_select(0, position - noise_origin)[0],
                         temperature, top_k, top_p)
            out.index_copy_(1, position, token.unsqueeze(1))
            position.add_(1)

        noise.refill()
        position.fill_(known)
        noise_origin.fill_(known)
        if capture and state.graph is None:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):  # warm-up outside the capture; it writes only what step `known` rewrites
                step()
            torch.cuda.current_stream().wait_stream(stream)
            position.fill_(known)
            state.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(state.graph):
                step()
            position.fill_(known)
        replay = state.graph.replay if capture else step
        for done in range(total - known):
            if done and done % NOISE_CHUNK == 0:
                noise.refill()
                noise_origin.fill_(known + done)
            replay()


@functools.cache
def _triton_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("triton") is not None  # ships with torch's CUDA wheels


def reference_window_logits(prior, tokens, music_tokens_conds, metadata) -> torch.Tensor:
    """transformers' teacher-forced logits (B, n_ctx, vocab) of one full window of music `tokens` (B, n_ctx):
    `JukeboxPrior`'s own conditioning and its training forward (`get_preds`), lyric positions dropped.
    (`forward_tokens` itself fails for priors without lyrics, in its encoder loss; this calls what it calls.)"""
    with torch.no_grad():
        audio_cond, metadata_cond, lyric_tokens = prior.get_cond(music_tokens_conds, metadata)
        if prior.is_encoder_decoder:
            sequence, audio_cond = prior.prior_preprocess([lyric_tokens, tokens], [None, audio_cond])
            preds = prior.prior(sequence, audio_cond, metadata_cond, get_preds=True)[1]
            return preds[:, prior.nb_relevant_lyric_tokens:].float()
        encoder_states = prior.get_encoder_states(lyric_tokens.contiguous()) if lyric_tokens is not None else None
        return prior.prior(tokens.contiguous(), audio_cond, metadata_cond, encoder_states, get_preds=True)[1].float()
