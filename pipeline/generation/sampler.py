"""Ancestral sampling through Jukebox's priors, one level at a time, then the VQ-VAE decoder.

Each window is sampled by transformers' own `JukeboxPrior.sample` (its key/value-cached loop);
this module only drives the windows, because `JukeboxModel._sample` pads a short clip's upper-level
conditioning with a batch of one (a shape error for batches > 1) and never cuts it to the window.
Levels are indexed as the priors are: 0 = top (128 samples/token), 1 = middle (32), 2 = bottom (8).
"""

from __future__ import annotations

import numpy as np

from pipeline.generation.presets import HOP_LENGTHS, SAMPLE_RATE_HZ


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


def sample_level(model, level: int, upper_tokens, labels: list, n_samples: int, length: int, *,
                 temperature: float, top_k: int = 0, top_p: float = 0.0, chunk_size: int = 32, prime=None):
    """Sample all tokens of `level` for clips of `length` raw samples.

    upper_tokens: (batch, tokens) LongTensor of level - 1 (None for the top level).
    labels: per clip, the (1, labels) LongTensor from the tokenizer for this level.
    prime: optional (batch, k) LongTensor of this level's first k tokens (primed sampling): kept
        as they are, sampling continues after them.
    Returns (batch, length // hop) LongTensor.
    """
    import torch

    _silence_transformers_progress()
    prior = model.priors[level]
    n_tokens = length // prior.raw_to_tokens
    n_ctx = prior.n_ctx
    hop = max(1, int(model.config.hop_fraction[level] * n_ctx))
    device = labels[0].device
    tokens = torch.zeros(n_samples, 0, dtype=torch.long, device=device)
    if prime is not None:
        tokens = prime[:, :n_tokens].to(device)
    for start in window_starts(n_tokens, n_ctx, hop):
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
        window = prior.sample(
            n_samples=n_samples, music_tokens=previous, music_tokens_conds=conds, metadata=metadata,
            temp=temperature, top_k=top_k, top_p=top_p, chunk_size=chunk_size, sample_tokens=end - start,
        )
        tokens = torch.cat([tokens, window[:, previous.shape[1]:]], dim=1)
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
