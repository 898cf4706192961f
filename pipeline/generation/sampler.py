"""Ancestral sampling through Jukebox's priors, one level at a time, then the VQ-VAE decoder.

This module drives the windows of a level (transformers' `JukeboxModel._sample` pads a short clip's
upper-level conditioning with a batch of one, a shape error for batches > 1, and never cuts it to the
window). Each window is sampled by one of two samplers over the same weights:

- `fast` (default): our loop in `fast.py` (static caches, CUDA-graph steps, per-clip random streams: a
  clip's tokens do not depend on the batch it is sampled in);
- `reference`: transformers' own `JukeboxPrior.sample`, seeded once per batch, kept for comparison.

Levels are indexed as the priors are: 0 = top (128 samples/token), 1 = middle (32), 2 = bottom (8).
"""

from __future__ import annotations

import weakref

import numpy as np

from pipeline.generation.presets import HOP_LENGTHS, SAMPLE_RATE_HZ

SAMPLERS = ("fast", "reference")
KERNELS = ("auto", "triton", "torch")  # the fast sampler's GPU step (FastPrior.kernels)
_FAST_PRIORS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def total_samples(duration_s: float) -> int:
    """Raw samples of a clip, rounded down to whole top-level tokens (128 samples)."""
    return int(duration_s * SAMPLE_RATE_HZ) // HOP_LENGTHS[0] * HOP_LENGTHS[0]


def window_starts(n_tokens: int, n_ctx: int, hop: int) -> list[int]:
    """Window starts covering `n_tokens`; the last window ends exactly at `n_tokens`."""
    if n_tokens <= n_ctx:
        return [0]
    starts = list(range(0, n_tokens - n_ctx, hop))
    return starts + [n_tokens - n_ctx]


def encode_labels(tokenizer, artist: str, genre: str, lyrics: str):
    """Tokenizer output: one (1, labels) LongTensor per level."""
    return tokenizer(artist, genre, lyrics)["input_ids"]


def _silence_transformers_progress() -> None:
    """transformers' Jukebox draws a tqdm bar per window and redraws it every token; ours replaces it."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def window_metadata(prior, labels: list, start: int, length: int):
    """(batch, 4 + genres + lyric window) metadata, built clip by clip.

    transformers' `set_metadata_lyric_tokens` picks the lyric window of the batch's first clip for
    every clip, and clips' label rows differ in length: one clip at a time avoids both.
    """
    import torch

    return torch.cat([prior.get_metadata(clip_labels, start, length, 0) for clip_labels in labels], dim=0)


def fast_prior(prior):
    """Our sampler for `prior`, built once per prior module."""
    from pipeline.generation.fast import FastPrior

    if prior not in _FAST_PRIORS:
        _FAST_PRIORS[prior] = FastPrior(prior)
    return _FAST_PRIORS[prior]


def auto_batch_size(model, device: str, cap: int = 64, cpu_default: int = 4, headroom: float = 0.7) -> int:
    """`generation.max_batch_size: auto`: on CUDA, as many clips as `headroom` of the free memory holds with
    every prior's sampling state resident (the fast sampler keeps them between batches); `cpu_default` on CPU."""
    if device != "cuda":
        return cpu_default
    import torch

    free, _total = torch.cuda.mem_get_info()
    per_clip = sum(fast_prior(prior).bytes_per_clip() for prior in model.priors)
    return max(1, min(cap, int(free * headroom // per_clip)))


def window_seed(clip_seed: int, window: int) -> int:
    """The random stream of one window of one clip: a function of the clip's seed and the window's index only."""
    return int(np.random.SeedSequence([int(clip_seed) % 2**63, window]).generate_state(1, np.uint64)[0] >> 1)


def sample_level(model, level: int, upper_tokens, labels: list, n_samples: int, length: int, *,
                 temperature: float, top_k: int = 0, top_p: float = 0.0, chunk_size: int = 32, prime=None,
                 sampler: str = "fast", kernels: str = "auto", seeds: list[int] | None = None):
    """Sample all tokens of `level` for clips of `length` raw samples.

    upper_tokens: (batch, tokens) LongTensor of level - 1 (None for the top level).
    labels: per clip, the (1, labels) LongTensor from the tokenizer for this level.
    prime: optional (batch, k) LongTensor of this level's first k tokens (primed sampling): kept
        as they are, sampling continues after them.
    sampler: "fast" or "reference" (module docstring).
    kernels: the fast sampler's decode step on a GPU: "triton" (fused kernels), "torch" or "auto".
    seeds: the fast sampler's per-clip seeds (default: drawn from torch's global generator); the
        reference sampler draws from torch's global generator.
    Returns (batch, length // hop) LongTensor.
    """
    import torch

    if sampler not in SAMPLERS:
        raise ValueError(f"sampler {sampler!r}: expected one of {SAMPLERS}")
    if kernels not in KERNELS:
        raise ValueError(f"kernels {kernels!r}: expected one of {KERNELS}")
    if seeds is None:
        seeds = torch.randint(0, 2**62, (n_samples,)).tolist()
    _silence_transformers_progress()
    prior = model.priors[level]
    n_tokens = length // prior.raw_to_tokens
    n_ctx = prior.n_ctx
    hop = max(1, int(model.config.hop_fraction[level] * n_ctx))
    device = labels[0].device
    tokens = torch.zeros(n_samples, 0, dtype=torch.long, device=device)
    if prime is not None:
        tokens = prime[:, :n_tokens].to(device)
    for window, start in enumerate(window_starts(n_tokens, n_ctx, hop)):
        end = min(start + n_ctx, n_tokens)
        previous = tokens[:, start:end]
        if previous.shape[1] == end - start:
            continue  # the prime already covers this window
        conds = None
        if level > 0:
            down = prior.cond_downsample
            cond = upper_tokens[:, start // down: end // down]
            missing = n_ctx // down - cond.shape[1]
            if missing > 0:  # pad to the window the conditioner expects, per clip of the batch
                cond = torch.cat([cond, torch.zeros(n_samples, missing, dtype=torch.long, device=device)], dim=1)
            conds = [cond]
        metadata = window_metadata(prior, labels, start, length)
        if sampler == "fast":
            fast = fast_prior(prior)
            fast.kernels = kernels
            sampled = fast.sample_window(
                n_samples, previous, conds, metadata, [window_seed(seed, window) for seed in seeds],
                temperature=temperature, top_k=top_k, top_p=top_p, sample_tokens=end - start,
            )
        else:
            sampled = prior.sample(
                n_samples=n_samples, music_tokens=previous, music_tokens_conds=conds, metadata=metadata,
                temp=temperature, top_k=top_k, top_p=top_p, chunk_size=chunk_size, sample_tokens=end - start,
            )
        tokens = torch.cat([tokens, sampled[:, previous.shape[1]:]], dim=1)
    return tokens


def decode(model, level_tokens: list) -> np.ndarray:
    """VQ-VAE decode of the sampled levels [top, (middle, (bottom))] -> (batch, samples) float32 @ 44.1 kHz.

    The VQ-VAE orders levels finest first, the priors coarsest first: reverse (decoding the
    sampled order as is would silently decode the wrong level).
    """
    import torch

    n = len(level_tokens)
    with torch.no_grad():
        audio = model.vqvae.decode(level_tokens[::-1], start_level=len(model.priors) - n, end_level=None)
    return audio[..., 0].float().cpu().numpy()  # (batch, samples, 1) -> (batch, samples)


def encode_prime(model, audio) -> list:
    """VQ-VAE tokens of raw audio, in the priors' order [top, middle, bottom].

    audio: (batch, samples) float tensor @ 44.1 kHz. The VQ-VAE returns its levels finest first;
    transformers' `primed_sample` passes that order to the priors as is (and fails): reverse it.
    """
    import torch

    with torch.no_grad():
        fine_first = model.vqvae.encode(audio.unsqueeze(-1).float(), start_level=0, end_level=len(model.priors))
    return fine_first[::-1]


def rendition(model, audio: np.ndarray) -> np.ndarray:
    """What the model outputs for audio it reproduces exactly: mono 44.1 kHz `audio` encoded by its VQ-VAE at every
    level and decoded from the finest, as a clip sampled at every level is (same length as `audio`)."""
    import torch

    hop = int(max(model.vqvae.hop_lengths))
    padded = np.zeros(-(-max(len(audio), 1) // hop) * hop, np.float32)
    padded[: len(audio)] = audio
    device = next(model.vqvae.parameters()).device
    codes = encode_prime(model, torch.from_numpy(padded)[None].to(device))
    return decode(model, codes)[0][: len(audio)]
