"""Speaker encoders behind one small interface; scoring never depends on which one is used."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class SpeakerEncoder(Protocol):
    name: str
    version: str
    embedding_size: int
    sample_rate: int

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        """Unit-norm embedding (embedding_size,) of a mono signal, or None if it holds no voiced speech."""


class ResemblyzerEncoder:
    """resemblyzer's GE2E voice encoder; its weights ship inside the package (nothing is downloaded)."""

    name = "resemblyzer-ge2e"
    embedding_size = 256
    sample_rate = 16_000
    min_voiced_s = 0.3  # less voiced speech than this after VAD trimming: no voice to compare

    def __init__(self, device: str = "cpu"):
        import resemblyzer
        from resemblyzer import VoiceEncoder

        self.version = f"resemblyzer-{getattr(resemblyzer, '__version__', '0.1.4')}"
        self._encoder = VoiceEncoder(device, verbose=False)

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        from resemblyzer import preprocess_wav

        audio = np.asarray(audio, dtype=np.float32)  # (samples,) @ sample_rate
        if audio.ndim != 1 or audio.size == 0 or not np.all(np.isfinite(audio)):
            raise ValueError(f"cannot embed: expected a finite, non-empty mono signal, got shape {audio.shape}")
        if np.max(np.abs(audio)) == 0:
            return None
        speech = preprocess_wav(audio, source_sr=sample_rate)  # (samples,) @ 16 kHz, silences trimmed
        if speech.size < self.min_voiced_s * self.sample_rate:
            return None
        embedding = self._encoder.embed_utterance(speech)  # (256,), unit norm
        return embedding.astype(np.float32)


def load_encoder(name: str = "resemblyzer-ge2e") -> SpeakerEncoder:
    if name != ResemblyzerEncoder.name:
        raise ValueError(f"unknown speaker encoder {name!r}; known: {ResemblyzerEncoder.name}")
    return ResemblyzerEncoder()
