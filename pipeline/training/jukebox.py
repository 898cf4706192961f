"""Jukebox training objectives on a corpus, through transformers' own modules (no fork of the model code).

- VQ-VAE (tiny preset, from scratch): `JukeboxVQVAE.forward` gives each level's reconstruction and the
  commitment loss; we add openai/jukebox's reconstruction terms (L2 on the waveform, and the
  multi-resolution spectral distance its `multispectral_loss` uses). Codebooks follow the VQ-VAE's own
  EMA updates; their running statistics are not in its state_dict, so checkpoints carry them.
- Priors: `JukeboxPrior.forward_tokens` on windows of the corpus's VQ-VAE codes (a prior's next-token loss,
  plus the lyric encoder's when the prior reads lyrics), conditioned on the upper level's codes of the same
  window and on the clip's metadata (artist, genre, lyrics, timing), exactly as sampling conditions it.

Gradient checkpointing wraps each transformer block's forward; on GPU the forward runs under bf16
autocast with float32 weights and optimiser state.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import numpy as np

from pipeline.generation.presets import HOP_LENGTHS

TOP_HOP = HOP_LENGTHS[0]
SPECTRAL_RESOLUTIONS = ((2048, 240, 1200), (1024, 120, 600), (512, 50, 240))  # (n_fft, hop, window): openai/jukebox


@dataclass
class TrainingAudio:
    """The corpus's training files as Jukebox sees them: mono float32 at 44.1 kHz, with their labels."""

    clips: list[np.ndarray]
    labels: list[list]  # per clip: per prior level, the tokenizer's (1, n) LongTensor

    def crop_batch(self, rng: np.random.Generator, batch: int, length: int) -> tuple[np.ndarray, list[int]]:
        """(batch, length) random crops (zero-padded at the end when a clip is shorter), and their clips."""
        out = np.zeros((batch, length), np.float32)
        chosen = []
        for b in range(batch):
            i = int(rng.integers(len(self.clips)))
            clip = self.clips[i]
            offset = int(rng.integers(max(1, len(clip) - length + 1)))
            piece = clip[offset: offset + length]
            out[b, : len(piece)] = piece
            chosen.append(i)
        return out, chosen


def autocast(device: str, dtype: str):
    """bf16 (or fp16) autocast on CUDA; nothing on CPU."""
    import torch

    if device == "cuda" and dtype != "float32":
        return torch.autocast("cuda", dtype=getattr(torch, dtype))
    return contextlib.nullcontext()


def enable_gradient_checkpointing(prior) -> None:
    """Recompute each transformer block of `prior` (decoder and lyric encoder) in the backward pass."""
    from torch.utils.checkpoint import checkpoint

    for module in prior.modules():
        if type(module).__name__ == "JukeboxBlock" and not getattr(module, "_synthaudio_checkpointed", False):
            forward = module.forward

            @functools.wraps(forward)
            def checkpointed(*args, _forward=forward, **kwargs):
                import torch

                if not torch.is_grad_enabled():
                    return _forward(*args, **kwargs)
                return checkpoint(_forward, *args, use_reentrant=False, **kwargs)

            module.forward = checkpointed
            module._synthaudio_checkpointed = True


def disable_gradient_checkpointing(prior) -> None:
    for module in prior.modules():
        if getattr(module, "_synthaudio_checkpointed", False):
            del module.forward
            module._synthaudio_checkpointed = False


# --- VQ-VAE ---------------------------------------------------------------------------------------------------

def multispectral_loss(out, target):
    """Mean over resolutions of ||(|STFT(out)| - |STFT(target)|)|| / sqrt(numel): openai/jukebox's multispectral term."""
    import torch

    total = 0.0
    for n_fft, hop, win in SPECTRAL_RESOLUTIONS:
        window = torch.hann_window(win, device=out.device)
        spec = [torch.stft(x, n_fft, hop, win, window, return_complex=True).abs() for x in (out, target)]
        total = total + torch.linalg.norm(spec[0] - spec[1]) / (spec[0].numel() ** 0.5)
    return total / len(SPECTRAL_RESOLUTIONS)


def vqvae_state(vqvae) -> dict:
    """The codebooks' EMA statistics, which the VQ-VAE's state_dict leaves out."""
    blocks = vqvae.bottleneck.level_blocks
    return {"init": [b.init for b in blocks],
            "codebook_sum": [None if b.codebook_sum is None else b.codebook_sum.detach().clone() for b in blocks],
            "codebook_elem": [None if b.codebook_elem is None else b.codebook_elem.detach().clone() for b in blocks]}


def restore_vqvae_state(vqvae, state: dict) -> None:
    for block, init, total, elem in zip(vqvae.bottleneck.level_blocks, state["init"], state["codebook_sum"],
                                        state["codebook_elem"]):
        block.init, block.codebook_sum, block.codebook_elem = init, total, elem


def vqvae_forward(vqvae, x):
    """Each level's reconstruction of `x` (batch, samples, 1) and the weighted commitment loss, every level
    quantised by its own codebook, as openai/jukebox's `Bottleneck.forward` does.

    transformers' `JukeboxVQVAE.forward` (4.57.6) quantises level `l` with codebook `levels - 1 - l`, while its
    `encode`/`decode` (what sampling, primes and renditions use) take codebook `l`: trained through it, the bottom
    and top levels learn one codebook and are read with another (the tiny preset's bottom level, which every clip
    is decoded from, then rendered a training recording at 0 dB SNR and a tenth of its level after 1,500 steps).
    """
    audio = x.permute(0, 2, 1).float()
    outputs, commit = [], 0.0
    for level in range(vqvae.levels):
        latent = vqvae.encoders[level](audio)[-1]
        _, quantised, commit_loss, _ = vqvae.bottleneck.level_blocks[level](latent, update_codebook=vqvae.training)
        outputs.append(vqvae.decoders[level]([quantised], all_levels=False).permute(0, 2, 1))
        commit = commit + commit_loss
    return outputs, vqvae.commit * commit


def vqvae_loss_fn(vqvae, audio: TrainingAudio, batch: int, length: int, device: str):
    """`loss_fn(step, rng)` for `loop.fit`: reconstruction (every level) + spectral + commitment."""
    import torch

    def loss_fn(step: int, rng: np.random.Generator):
        crops, _ = audio.crop_batch(rng, batch, length)
        x = torch.from_numpy(crops).to(device).unsqueeze(-1)
        levels, commit = vqvae_forward(vqvae, x)
        recons = sum(torch.mean((level.float() - x) ** 2) for level in levels)
        spectral = sum(multispectral_loss(level.float()[..., 0], x[..., 0]) for level in levels)
        loss = recons + spectral + commit
        return loss, {"recons": recons.detach(), "spectral": spectral.detach(), "commit": commit.detach()}

    return loss_fn


# --- priors ---------------------------------------------------------------------------------------------------

def encode_corpus(model, clips: list[np.ndarray], device: str, min_samples: int) -> list[list]:
    """Each clip's VQ-VAE codes in the priors' order [top, middle, bottom], the clip zero-padded to at least
    `min_samples` and to whole top-level tokens (so every level's window can be cut from it)."""
    import torch

    from pipeline.generation.sampler import encode_prime

    codes = []
    for clip in clips:
        length = max(len(clip), min_samples)
        length = -(-length // TOP_HOP) * TOP_HOP
        padded = np.zeros(length, np.float32)
        padded[: len(clip)] = clip
        with torch.no_grad():
            codes.append([t.cpu() for t in encode_prime(model, torch.from_numpy(padded)[None].to(device))])
    return codes


def prior_loss(prior, tokens, conds: list, metadata):
    """(loss, next-token bits, lyric-encoder bits) of one batch: `JukeboxPrior.forward_tokens`, whose lyric-free
    branch (the upsamplers) fails in transformers 4.57.6 (it reads `.device` of the absent lyric states); that
    branch's loss is computed here with the same modules and weighting."""
    import torch

    if prior.lyric_conditioning or prior.is_encoder_decoder:
        loss, metrics = prior.forward_tokens(music_tokens=tokens, music_tokens_conds=conds, metadata=metadata)
        return loss, metrics["next_token_prediction_loss"], metrics["encoder_loss"]
    audio_conditioning, metadata_conditioning, _ = prior.get_cond(conds, metadata)
    bits, _ = prior.prior(tokens, audio_conditioning, metadata_conditioning, None)
    loss = bits * prior.next_token_prediction_loss_dims / prior.total_loss_dims
    return loss, bits, torch.zeros((), device=bits.device)


def prior_loss_fn(prior, level: int, audio: TrainingAudio, codes: list[list], batch: int, device: str, dtype: str):
    """`loss_fn(step, rng)` for `loop.fit`: the prior's own loss on random windows of the corpus's codes."""
    import torch

    n_ctx, per_token = prior.n_ctx, int(prior.raw_to_tokens)
    window_samples = n_ctx * per_token

    def loss_fn(step: int, rng: np.random.Generator):
        tokens, conds, metadata = [], [], []
        for _ in range(batch):
            i = int(rng.integers(len(codes)))
            clip_samples = codes[i][0].shape[1] * TOP_HOP
            offset = int(rng.integers(max(1, (clip_samples - window_samples) // TOP_HOP + 1))) * TOP_HOP
            start = offset // per_token
            tokens.append(codes[i][level][:, start: start + n_ctx])
            if level > 0:
                down = per_token * prior.cond_downsample
                conds.append(codes[i][level - 1][:, offset // down: offset // down + n_ctx // prior.cond_downsample])
            metadata.append(prior.get_metadata(audio.labels[i][level], start, len(audio.clips[i]), 0))
        tokens = torch.cat(tokens).to(device)
        conds = [torch.cat(conds).to(device)] if level > 0 else []
        with autocast(device, dtype):
            loss, bits, lyric = prior_loss(prior, tokens, conds, torch.cat(metadata).to(device))
        return loss.float(), {"bits_per_token": bits.detach().float(), "lyric_loss": lyric.detach().float()}

    return loss_fn


def build_prior(config, level: int):
    """One prior of a `JukeboxConfig`, every weight initialised (as `presets.build_tiny` does for a whole model),
    on torch's current default device: benchmarks of a single prior's shapes need neither the VQ-VAE nor the
    other priors in memory."""
    import torch
    from transformers.models.deprecated.jukebox.modeling_jukebox import JukeboxPrior

    for prior_config in config.prior_configs:  # what JukeboxModel.set_shared_params copies into each prior
        for name in ("sampling_rate", "timing_dims", "min_duration", "max_duration", "max_nb_genres",
                     "metadata_conditioning"):
            setattr(prior_config, name, getattr(config, name))
    prior = JukeboxPrior(config.prior_configs[level], level)
    prior.apply(prior._init_weights)
    for module in prior.modules():
        if hasattr(module, "lm_head") and hasattr(module, "start_token"):
            module.start_token.data.normal_(mean=0.0, std=0.01 * prior.config.init_scale)
    if not all(torch.isfinite(p).all() for p in prior.parameters()):
        raise RuntimeError("prior has non-finite weights after initialisation")
    return prior
