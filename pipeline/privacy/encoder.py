"""Speaker encoders behind one small interface; scoring never depends on which one is used."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from pipeline.parallel import single_thread


WINDOW_S = 3.0  # a leaked voice lasting this long inside a longer clip is scored on its own
WINDOW_HOP_S = 1.5


class SpeakerEncoder(Protocol):
    name: str
    version: str
    embedding_size: int
    sample_rate: int

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        """Unit-norm embedding (embedding_size,) of a mono signal, or None if it holds no voiced speech."""

    def embed_windows(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        """Unit-norm embeddings (windows, embedding_size): the whole voiced part first, then overlapping
        windows of it when it is longer than one window; None if the signal holds no voiced speech."""


class ResemblyzerEncoder:
    """resemblyzer's GE2E voice encoder; its weights ship inside the package (nothing is downloaded)."""

    name = "resemblyzer-ge2e"
    embedding_size = 256
    sample_rate = 16_000
    min_voiced_s = 0.3  # less voiced speech than this after VAD trimming: no voice to compare

    def __init__(self, device: str = "cpu"):
        from resemblyzer import VoiceEncoder

        self.version = encoder_version(self.name)
        self._encoder = VoiceEncoder(device, verbose=False)

    def voiced(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        """The voiced part at 16 kHz (VAD-trimmed, volume-normalised), or None when under min_voiced_s."""
        from resemblyzer import preprocess_wav

        audio = np.asarray(audio, dtype=np.float32)  # (samples,) @ sample_rate
        if audio.ndim != 1 or audio.size == 0 or not np.all(np.isfinite(audio)):
            raise ValueError(f"cannot embed: expected a finite, non-empty mono signal, got shape {audio.shape}")
        if np.max(np.abs(audio)) == 0:
            return None
        speech = preprocess_wav(audio, source_sr=sample_rate)  # (samples,) @ 16 kHz, silences trimmed
        return speech if speech.size >= self.min_voiced_s * self.sample_rate else None

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        speech = self.voiced(audio, sample_rate)
        if speech is None:
            return None
        with single_thread():  # the same float sums whatever the thread settings
            return self._encoder.embed_utterance(speech).astype(np.float32)  # (256,)

    def embed_windows(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        speech = self.voiced(audio, sample_rate)
        if speech is None:
            return None
        with single_thread():  # the same float sums whatever the thread settings
            whole, partials, slices = self._encoder.embed_utterance(speech, return_partials=True)  # (256,), (n, 256)
        windows = [whole]
        window, hop = int(WINDOW_S * self.sample_rate), int(WINDOW_HOP_S * self.sample_rate)
        if speech.size > window:
            starts = list(range(0, speech.size - window + 1, hop))
            if starts[-1] + window < speech.size:
                starts.append(speech.size - window)
            for start in starts:
                inside = [i for i, s in enumerate(slices) if s.start >= start and s.stop <= start + window]
                if inside:
                    mean = partials[inside].mean(axis=0)
                    windows.append(mean / np.linalg.norm(mean))
        return np.stack(windows).astype(np.float32)  # (windows, 256)


def encoder_version(name: str = "resemblyzer-ge2e") -> str:
    """The encoder's version (its package's), read without loading the package or its weights."""
    from importlib.metadata import PackageNotFoundError, version

    if name != ResemblyzerEncoder.name:
        raise ValueError(f"unknown speaker encoder {name!r}; known: {ResemblyzerEncoder.name}")
    try:
        return f"resemblyzer-{version('resemblyzer')}"
    except PackageNotFoundError:
        return "resemblyzer-unknown"


def load_encoder(name: str = "resemblyzer-ge2e") -> SpeakerEncoder:
    if name != ResemblyzerEncoder.name:
        raise ValueError(f"unknown speaker encoder {name!r}; known: {ResemblyzerEncoder.name}")
    return ResemblyzerEncoder()
