"""Speaker encoders behind one small interface; scoring never depends on which one is used."""

from __future__ import annotations

from collections.abc import Sequence
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
        return self.embed_many([audio], sample_rate)[0]

    def embed_windows(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        return self.embed_windows_many([audio], sample_rate)[0]

    def embed_many(self, signals: Sequence[np.ndarray], sample_rate: int) -> list[np.ndarray | None]:
        """`embed` of each signal, their partial utterances through the network in one batch."""
        return [None if found is None else found[0] for found in self._partials(signals, sample_rate)]

    def embed_windows_many(self, signals: Sequence[np.ndarray], sample_rate: int) -> list[np.ndarray | None]:
        """`embed_windows` of each signal, their partial utterances through the network in one batch."""
        results = []
        for found in self._partials(signals, sample_rate):
            if found is None:
                results.append(None)
                continue
            whole, partials, slices, size = found
            windows = [whole]
            window, hop = int(WINDOW_S * self.sample_rate), int(WINDOW_HOP_S * self.sample_rate)
            if size > window:
                starts = list(range(0, size - window + 1, hop))
                if starts[-1] + window < size:
                    starts.append(size - window)
                for start in starts:
                    inside = [i for i, s in enumerate(slices) if s.start >= start and s.stop <= start + window]
                    if inside:
                        mean = partials[inside].mean(axis=0)
                        windows.append(mean / np.linalg.norm(mean))
            results.append(np.stack(windows).astype(np.float32))  # (windows, 256)
        return results

    def _partials(self, signals: Sequence[np.ndarray], sample_rate: int) -> list[tuple | None]:
        """Per signal: (whole embedding, partial embeddings (n, 256), their sample slices, voiced samples), or
        None without voiced speech. resemblyzer's `embed_utterance` (1.6 s partials, 1.3 per second, the last
        kept at 75% coverage), with every signal's partials in one forward pass: a batch of a few partials
        leaves the LSTM's products mostly overhead (about 3x slower per partial, measured on one core)."""
        import torch
        from resemblyzer.audio import wav_to_mel_spectrogram

        voiced = [self.voiced(audio, sample_rate) for audio in signals]
        mels, slices = [], []
        for speech in voiced:
            if speech is None:
                continue
            wav_slices, mel_slices = self._encoder.compute_partial_slices(speech.size, 1.3, 0.75)
            padded = np.pad(speech, (0, max(0, wav_slices[-1].stop - speech.size)))
            mel = wav_to_mel_spectrogram(padded)  # (frames, 40)
            mels.append(np.array([mel[s] for s in mel_slices]))  # (partials, 160, 40)
            slices.append(wav_slices)
        if not mels:
            return [None] * len(signals)
        with single_thread(), torch.no_grad():  # the same float sums whatever the thread settings
            batch = self._encoder(torch.from_numpy(np.concatenate(mels)).to(self._encoder.device)).cpu().numpy()
        bounds = np.cumsum([0] + [len(m) for m in mels])
        found = iter(range(len(mels)))
        results = []
        for speech in voiced:
            if speech is None:
                results.append(None)
                continue
            i = next(found)
            partials = batch[bounds[i]:bounds[i + 1]]
            mean = partials.mean(axis=0)
            results.append(((mean / np.linalg.norm(mean)).astype(np.float32), partials, slices[i], speech.size))
        return results


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
